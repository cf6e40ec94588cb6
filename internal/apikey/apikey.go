// Package apikey is the domain of API keys: machine access to a tenant's data through Hasura,
// without a user's session. A member holding api_keys:manage creates a key with scopes (grants of
// the role table, never more than the creator holds); the key is shown once and stored only as a
// digest; POST /auth/token exchanges it for a short-lived JWT that Hasura accepts as a second
// issuer, with role api_client. What a key allows at any moment is its scopes intersected with
// what its creator's membership allows at that moment (Allows, Effective): the database's
// row-level security (tenantkit.api_key_tenants) and Hasura's api_client permissions apply the
// same rule on every statement, so a revoked key, or a demoted or removed creator, loses its
// rights at once, even for tokens already issued.
package apikey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/team"
)

// The Hasura side of a token.
const (
	// Role is the Hasura role of API clients: x-hasura-default-role and the only allowed role.
	Role = "api_client"
	// ClaimsNamespace holds the x-hasura-* claims (Hasura's default claims_namespace).
	ClaimsNamespace = "https://hasura.io/jwt/claims"
	// Session variables of an API-client session (values are strings, as Hasura requires).
	VarTenantID  = "x-hasura-tenant-id"
	VarKeyID     = "x-hasura-api-key-id"
	VarCreatorID = "x-hasura-api-key-creator-id" // presets owner columns (projects.owner_id)
	VarScopes    = "x-hasura-scopes"             // a PostgreSQL array literal: {projects:read,users:invite}
	// ManagePermission lets a member create, revoke and list the tenant's keys.
	ManagePermission = "api_keys:manage"
)

// Error codes of the exchange, on top of tenantkit's. The three 401s are told apart only once the
// secret matched: a malformed, unknown or wrong key all get InvalidKey.
const (
	InvalidKey = "invalid_api_key" // 401: no key with that prefix and secret
	KeyRevoked = "api_key_revoked" // 401
	KeyExpired = "api_key_expired" // 401
	// RateLimited: too many exchanges from one address or failures on one key (429, Retry-After).
	RateLimited = team.RateLimited
)

// Outcomes of an exchange, for the metrics (tenantkit_api_key_exchanges_total{outcome}).
const (
	Issued    = "issued"
	Malformed = "malformed"
	Unknown   = "unknown"  // no key has the prefix
	Mismatch  = "mismatch" // the prefix exists, the secret is wrong
	Revoked   = "revoked"
	Expired   = "expired"
	Inactive  = "inactive" // the creator left, or holds none of the scopes any more
	Throttled = "throttled"
	Failed    = "error" // the database or the signer failed
)

// Outcomes lists every outcome, for initialising counters.
var Outcomes = []string{Issued, Malformed, Unknown, Mismatch, Revoked, Expired, Inactive, Throttled, Failed}

// Key is an API key as listed: never its secret.
type Key struct {
	ID         string
	TenantID   string
	Name       string
	Prefix     string
	Scopes     []string
	CreatedBy  string // "" once the creator's account is gone
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// Status is active, revoked or expired, at now.
func (k Key) Status(now time.Time) string {
	switch {
	case k.RevokedAt != nil:
		return "revoked"
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return "expired"
	}
	return "active"
}

// NewKey is what CreateKey stores.
type NewKey struct {
	TenantID  string
	Name      string
	Prefix    string
	Hash      []byte
	Scopes    []string
	CreatedBy string
	ExpiresAt *time.Time
}

// Credential is what an exchange reads about the key a prefix names: the key, its digest, and its
// creator's current membership of the key's tenant (CreatorRole "" when there is none).
type Credential struct {
	Key
	Hash          []byte
	CreatorRole   tenantkit.Role
	CreatorGrants []string
}

// Store persists keys. Methods taking a session run as that caller under row-level security;
// Credential and Touch are the exchange's system path. Errors are tenantkit errors.
type Store interface {
	// Membership is the caller's own membership of the tenant (team.Store's); not_found when none.
	Membership(ctx context.Context, s tenantkit.Session, tenantID string) (team.Membership, error)
	// CreateKey stores a key; conflict when its prefix is taken.
	CreateKey(ctx context.Context, s tenantkit.Session, k NewKey) (Key, error)
	// RevokeKey marks the key revoked now by the caller, or returns it unchanged when it already
	// is; not_found when the caller may not manage it.
	RevokeKey(ctx context.Context, s tenantkit.Session, keyID string) (Key, error)
	// ListKeys returns the tenant's keys, newest first, as far as the caller may see them.
	ListKeys(ctx context.Context, s tenantkit.Session, tenantID string) ([]Key, error)
	// Credentials reads the keys with this prefix: none, or (but for a 2^-80 chance) one.
	Credentials(ctx context.Context, prefix string) ([]Credential, error)
	// Touch sets the key's last use to now unless it was set within the last minute.
	Touch(ctx context.Context, tenantID, keyID string) error
}

// Service implements API keys. Signer nil turns the exchange off (ErrNoSigner).
type Service struct {
	Store    Store
	Signer   *Signer
	Issuer   string        // the tokens' iss: the issuer of Hasura's jwt_secrets entry
	Audience string        // the tokens' aud: the audience of that entry
	TTL      time.Duration // a token's life (0: DefaultTTL); never past the key's expiry
	Now      func() time.Time
}

// DefaultTTL is how long an issued token lives unless API_TOKEN_TTL says otherwise.
const DefaultTTL = 5 * time.Minute

// touchEvery is how stale last_used_at may get: an exchange writes it at most once a minute.
const touchEvery = time.Minute

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// caller returns the signed-in user. Errors: unauthenticated (API clients create no keys).
func caller(sess tenantkit.Session) (string, error) {
	if sess.Role() == Role || team.ValidateID("x-hasura-user-id", sess.UserID()) != nil {
		return "", tenantkit.Errorf(tenantkit.Unauthenticated, "sign in first")
	}
	return sess.UserID(), nil
}

// manager returns the caller's membership when it holds api_keys:manage. Errors: invalid,
// not_found (not a member, whether or not the tenant exists), forbidden.
func (s *Service) manager(ctx context.Context, sess tenantkit.Session, tenantID string) (team.Membership, error) {
	return team.Require(ctx, s.Store, sess, tenantID, ManagePermission)
}

// ValidateName trims a key's name and checks it: 1 to 100 characters, no control characters, not a
// key (a secret pasted into the name would be shown to every manager). Errors: invalid.
func ValidateName(name string) (string, error) {
	name = strings.TrimSpace(name)
	n := len([]rune(name))
	switch {
	case n == 0 || n > 100:
		return "", tenantkit.Errorf(tenantkit.Invalid, "name must be 1 to 100 characters")
	case strings.ContainsFunc(name, unicode.IsControl):
		return "", tenantkit.Errorf(tenantkit.Invalid, "name must not contain control characters")
	case strings.Contains(name, Prefix):
		return "", tenantkit.Errorf(tenantkit.Invalid, "name must not contain an API key")
	}
	return name, nil
}

// MaxLifetime bounds a key's expiry.
const MaxLifetime = 5 * 366 * 24 * time.Hour

// Create makes a key for the tenant and returns it with its secret, which is never shown again.
// The caller needs api_keys:manage, and every scope must be covered by the caller's own grants.
// expiresAt, when given, must be in the future and within MaxLifetime. Errors: unauthenticated,
// invalid, not_found, forbidden.
func (s *Service) Create(ctx context.Context, sess tenantkit.Session, tenantID, name string, scopes []string, expiresAt *time.Time) (Key, string, error) {
	uid, err := caller(sess)
	if err != nil {
		return Key{}, "", err
	}
	if name, err = ValidateName(name); err != nil {
		return Key{}, "", err
	}
	if scopes, err = ValidateScopes(scopes); err != nil {
		return Key{}, "", err
	}
	now := s.now()
	if expiresAt != nil {
		switch {
		case !expiresAt.After(now):
			return Key{}, "", tenantkit.Errorf(tenantkit.Invalid, "expiresAt must be in the future")
		case expiresAt.Sub(now) > MaxLifetime:
			return Key{}, "", tenantkit.Errorf(tenantkit.Invalid, "expiresAt must be within 5 years")
		}
	}
	m, err := s.manager(ctx, sess, tenantID)
	if err != nil {
		return Key{}, "", err
	}
	if over := Exceeding(scopes, m.Role, m.Permissions); len(over) > 0 {
		return Key{}, "", tenantkit.Errorf(tenantkit.Forbidden, "you cannot give a key %s, which you do not hold", strings.Join(over, ", "))
	}
	for attempt := 0; ; attempt++ {
		sec, err := NewSecret()
		if err != nil {
			return Key{}, "", err
		}
		k, err := s.Store.CreateKey(ctx, sess, NewKey{TenantID: tenantID, Name: name, Prefix: sec.Prefix, Hash: sec.Hash,
			Scopes: scopes, CreatedBy: uid, ExpiresAt: expiresAt})
		if tenantkit.ErrorCode(err) == tenantkit.Conflict && attempt < 2 {
			continue // a prefix taken already (80 random bits: practically never)
		}
		if err != nil {
			return Key{}, "", err
		}
		return k, sec.Key, nil
	}
}

// Revoke ends a key: the next exchange is refused, and the database and Hasura's rules stop
// honouring tokens already issued for it. Revoking a revoked key again succeeds and changes
// nothing. Errors: unauthenticated, invalid, not_found (no such key, or the caller may not
// manage the tenant's keys).
func (s *Service) Revoke(ctx context.Context, sess tenantkit.Session, keyID string) (Key, error) {
	if _, err := caller(sess); err != nil {
		return Key{}, err
	}
	if err := team.ValidateID("keyId", keyID); err != nil {
		return Key{}, err
	}
	k, err := s.Store.RevokeKey(ctx, sess, keyID)
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return k, tenantkit.Errorf(tenantkit.NotFound, "API key not found")
	}
	return k, err
}

// List returns the tenant's keys, newest first, without their secrets. Errors: unauthenticated,
// invalid, not_found, forbidden.
func (s *Service) List(ctx context.Context, sess tenantkit.Session, tenantID string) ([]Key, error) {
	if _, err := caller(sess); err != nil {
		return nil, err
	}
	if _, err := s.manager(ctx, sess, tenantID); err != nil {
		return nil, err
	}
	return s.Store.ListKeys(ctx, sess, tenantID)
}

// Token is an issued access token and what it carries.
type Token struct {
	Value     string
	ExpiresAt time.Time
	TenantID  string
	KeyID     string
	Scopes    []string // what the key allows at issue (Effective)
}

// dummyHash is compared against when no key has the prefix, so that an unknown prefix costs what
// a wrong secret costs.
var dummyHash = Hash(Prefix + "0000000000000000_" + strings.Repeat("0", secretChars))

// Exchange returns a token for key, and the outcome for the metrics. A token lives TTL, never past
// the key's expiry; it carries the key's effective scopes at issue, for the client's information:
// what the key may do is decided again, from the database, on every statement. Errors:
// invalid_api_key (malformed, unknown, or wrong secret), api_key_revoked, api_key_expired,
// forbidden (the creator is no longer a member, or holds none of the key's scopes), unavailable.
func (s *Service) Exchange(ctx context.Context, key string) (Token, string, error) {
	invalid := tenantkit.Errorf(InvalidKey, "invalid API key")
	prefix, ok := ParseKey(key)
	if !ok {
		return Token{}, Malformed, invalid
	}
	creds, err := s.Store.Credentials(ctx, prefix)
	if err != nil {
		return Token{}, Failed, err
	}
	if len(creds) == 0 {
		Matches(key, dummyHash)
		return Token{}, Unknown, invalid
	}
	i := slices.IndexFunc(creds, func(c Credential) bool { return Matches(key, c.Hash) })
	if i < 0 {
		return Token{}, Mismatch, invalid
	}
	cred := creds[i]
	now := s.now()
	switch cred.Status(now) {
	case "revoked":
		return Token{}, Revoked, tenantkit.Errorf(KeyRevoked, "the API key was revoked")
	case "expired":
		return Token{}, Expired, tenantkit.Errorf(KeyExpired, "the API key expired")
	}
	scopes := Effective(cred.Scopes, cred.CreatorRole, cred.CreatorGrants)
	if len(scopes) == 0 {
		return Token{}, Inactive, tenantkit.Errorf(tenantkit.Forbidden,
			"the key's creator is no longer a member of the tenant or no longer holds any of its scopes: create a new key")
	}
	if cred.LastUsedAt == nil || now.Sub(*cred.LastUsedAt) >= touchEvery {
		if err := s.Store.Touch(ctx, cred.TenantID, cred.ID); err != nil {
			return Token{}, Failed, err
		}
	}
	tok, err := s.issue(cred.Key, scopes, now)
	if err != nil {
		return Token{}, Failed, err
	}
	return tok, Issued, nil
}

// issue signs the token of key k with scopes at now.
func (s *Service) issue(k Key, scopes []string, now time.Time) (Token, error) {
	if s.Signer == nil {
		return Token{}, tenantkit.Errorf(tenantkit.Unavailable, "API tokens are not configured on this service")
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	exp := now.Add(ttl)
	if k.ExpiresAt != nil && k.ExpiresAt.Before(exp) {
		exp = *k.ExpiresAt
	}
	exp = exp.Truncate(time.Second) // NumericDate: whole seconds, never past the key's expiry
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return Token{}, err
	}
	claims := map[string]any{
		"iss": s.Issuer,
		"aud": s.Audience,
		"sub": "api_key:" + k.ID,
		"iat": now.Unix(),
		"exp": exp.Unix(),
		"jti": hex.EncodeToString(jti),
		ClaimsNamespace: map[string]any{
			"x-hasura-default-role":  Role,
			"x-hasura-allowed-roles": []string{Role},
			VarTenantID:              k.TenantID,
			VarKeyID:                 k.ID,
			VarCreatorID:             k.CreatedBy,
			VarScopes:                "{" + strings.Join(scopes, ",") + "}",
		},
	}
	value, err := s.Signer.Sign(claims)
	if err != nil {
		return Token{}, err
	}
	return Token{Value: value, ExpiresAt: exp, TenantID: k.TenantID, KeyID: k.ID, Scopes: scopes}, nil
}
