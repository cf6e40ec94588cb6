package main

import (
	"crypto"
	"crypto/hmac"
	_ "crypto/sha256" // HS256
	_ "crypto/sha512" // HS384, HS512
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Development JWTs: what Hasura's JWT mode accepts (https://hasura.io/docs/latest/auth/authentication/jwt/;
// hasura/graphql-engine server/src-lib/Hasura/Server/Auth/JWT.hs), for the compose stack's
// HASURA_GRAPHQL_JWT_SECRET and for tenantkit dev's stand-in for Hasura.

// devJWTSecret is docker-compose.yml's default HASURA_GRAPHQL_JWT_SECRET (a published development
// value: see publishedSecrets).
const devJWTSecret = `{"type":"HS256","key":"dev-jwt-key-change-me-0123456789abcdef"}`

// devAdminSecret is docker-compose.yml's default HASURA_GRAPHQL_ADMIN_SECRET (published too).
const devAdminSecret = "dev-admin-secret-change-me"

// hasuraClaimsNamespace is where Hasura looks for its claims unless the secret says otherwise
// (defaultClaimsNamespace in JWT.hs).
const hasuraClaimsNamespace = "https://hasura.io/jwt/claims"

// jwtSecret is the part of HASURA_GRAPHQL_JWT_SECRET a development token needs: an HMAC key, the
// claims' namespace and format.
type jwtSecret struct {
	alg       string // HS256, HS384 or HS512
	hash      crypto.Hash
	key       []byte
	namespace string
	// stringified: claims_format stringified_json (the claims object is a JSON string)
	stringified bool
	issuer      string
	audience    []string
}

// parseJWTSecret reads HASURA_GRAPHQL_JWT_SECRET as Hasura does (instance FromJSON JWTConfig): the
// key types tenantkit can sign with are HS256, HS384 and HS512, whose key must have at least 32,
// 48 and 64 bytes (parseHmacKey). jwk_url, RSA and Ed25519 keys, claims_map and
// claims_namespace_path are refused: a development token cannot be signed or placed for them.
func parseJWTSecret(raw string) (*jwtSecret, error) {
	var c struct {
		Type                string          `json:"type"`
		Key                 string          `json:"key"`
		JWKURL              string          `json:"jwk_url"`
		ClaimsNamespace     string          `json:"claims_namespace"`
		ClaimsNamespacePath string          `json:"claims_namespace_path"`
		ClaimsFormat        string          `json:"claims_format"`
		ClaimsMap           json.RawMessage `json:"claims_map"`
		Audience            json.RawMessage `json:"audience"`
		Issuer              string          `json:"issuer"`
		AllowedSkew         json.RawMessage `json:"allowed_skew"`
		Header              json.RawMessage `json:"header"`
	}
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, errors.New(`HASURA_GRAPHQL_JWT_SECRET must be Hasura's JSON, e.g. {"type":"HS256","key":"<32+ characters>"}`)
	}
	s := &jwtSecret{alg: c.Type, namespace: hasuraClaimsNamespace, issuer: c.Issuer}
	switch c.Type {
	case "HS256":
		s.hash = crypto.SHA256
	case "HS384":
		s.hash = crypto.SHA384
	case "HS512":
		s.hash = crypto.SHA512
	default:
		return nil, fmt.Errorf("HASURA_GRAPHQL_JWT_SECRET: type %q: development tokens are signed with HS256, HS384 or HS512 only", c.Type)
	}
	switch {
	case c.JWKURL != "":
		return nil, errors.New("HASURA_GRAPHQL_JWT_SECRET: jwk_url is set: a development token needs the key itself")
	case len(c.ClaimsMap) > 0 && string(c.ClaimsMap) != "null":
		return nil, errors.New("HASURA_GRAPHQL_JWT_SECRET: claims_map is not supported by development tokens")
	case c.ClaimsNamespacePath != "":
		return nil, errors.New("HASURA_GRAPHQL_JWT_SECRET: claims_namespace_path is not supported by development tokens")
	}
	if min := s.hash.Size(); len(c.Key) < min {
		return nil, fmt.Errorf("HASURA_GRAPHQL_JWT_SECRET: an %s key must have at least %d characters (Hasura refuses a shorter one)", c.Type, min)
	}
	s.key = []byte(c.Key)
	if c.ClaimsNamespace != "" {
		s.namespace = c.ClaimsNamespace
	}
	switch c.ClaimsFormat {
	case "", "json":
	case "stringified_json":
		s.stringified = true
	default:
		return nil, fmt.Errorf("HASURA_GRAPHQL_JWT_SECRET: claims_format %q must be json or stringified_json", c.ClaimsFormat)
	}
	if len(c.Audience) > 0 && string(c.Audience) != "null" {
		var one string
		if json.Unmarshal(c.Audience, &one) == nil {
			s.audience = []string{one}
		} else if err := json.Unmarshal(c.Audience, &s.audience); err != nil {
			return nil, errors.New("HASURA_GRAPHQL_JWT_SECRET: audience must be a string or a list of strings")
		}
	}
	return s, nil
}

var b64 = base64.RawURLEncoding

func (s *jwtSecret) sign(signingInput string) string {
	mac := hmac.New(s.hash.New, s.key)
	mac.Write([]byte(signingInput))
	return b64.EncodeToString(mac.Sum(nil))
}

// mintToken returns a signed JWT for user with Hasura's claims: x-hasura-default-role role,
// x-hasura-allowed-roles [role], x-hasura-user-id user; sub is the user, iat now, exp now+ttl.
func (s *jwtSecret) mintToken(user, role string, now time.Time, ttl time.Duration) (string, error) {
	claims := map[string]any{
		"x-hasura-default-role":  role,
		"x-hasura-allowed-roles": []string{role},
		"x-hasura-user-id":       user,
	}
	var ns any = claims
	if s.stringified {
		b, err := json.Marshal(claims)
		if err != nil {
			return "", err
		}
		ns = string(b)
	}
	payload := map[string]any{"sub": user, "iat": now.Unix(), "exp": now.Add(ttl).Unix(), s.namespace: ns}
	if s.issuer != "" {
		payload["iss"] = s.issuer
	}
	if len(s.audience) > 0 {
		payload["aud"] = s.audience[0]
	}
	header, err := json.Marshal(map[string]string{"alg": s.alg, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	in := b64.EncodeToString(header) + "." + b64.EncodeToString(body)
	return in + "." + s.sign(in), nil
}

// verifyToken checks a token as Hasura's JWT mode does for the keys parseJWTSecret accepts and
// returns the session variables for the request: the signature with the configured algorithm,
// exp and nbf (no skew), iss and aud when configured, the claims object at the namespace with
// x-hasura-allowed-roles (a list) and x-hasura-default-role, the requested role (X-Hasura-Role,
// else the default) among the allowed ones, and every other x-hasura-* claim a string.
func (s *jwtSecret) verifyToken(token, requestedRole string, now time.Time) (map[string]string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("could not verify JWT: JWSError CompactDecodeError Invalid number of parts")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &header) != nil {
		return nil, errors.New("could not verify JWT: malformed header")
	}
	sig, err := b64.DecodeString(parts[2])
	want, _ := b64.DecodeString(s.sign(parts[0] + "." + parts[1]))
	if header.Alg != s.alg || err != nil || !hmac.Equal(sig, want) {
		return nil, errors.New("could not verify JWT: JWSError JWSInvalidSignature")
	}
	pb, err := b64.DecodeString(parts[1])
	var payload map[string]json.RawMessage
	if err != nil || json.Unmarshal(pb, &payload) != nil {
		return nil, errors.New("could not verify JWT: malformed claims")
	}
	numeric := func(name string) (int64, bool, error) {
		raw, ok := payload[name]
		if !ok {
			return 0, false, nil
		}
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return 0, true, fmt.Errorf("could not verify JWT: %s is not a NumericDate", name)
		}
		return int64(f), true, nil
	}
	if exp, ok, err := numeric("exp"); err != nil {
		return nil, err
	} else if ok && now.Unix() >= exp {
		return nil, errors.New("could not verify JWT: JWTExpired")
	}
	if nbf, ok, err := numeric("nbf"); err != nil {
		return nil, err
	} else if ok && now.Unix() < nbf {
		return nil, errors.New("could not verify JWT: JWTNotYetValid")
	}
	if s.issuer != "" {
		var iss string
		if json.Unmarshal(payload["iss"], &iss) != nil || iss != s.issuer {
			return nil, errors.New("could not verify JWT: JWTNotInIssuer")
		}
	}
	if len(s.audience) > 0 {
		var auds []string
		var one string
		if json.Unmarshal(payload["aud"], &one) == nil {
			auds = []string{one}
		} else {
			_ = json.Unmarshal(payload["aud"], &auds)
		}
		if !slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(s.audience, a) }) {
			return nil, errors.New("could not verify JWT: JWTNotInAudience")
		}
	}
	raw, ok := payload[s.namespace]
	if !ok {
		return nil, fmt.Errorf("claims key: '%s' not found", s.namespace)
	}
	if s.stringified {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			return nil, errors.New("expecting a string when claims_format is stringified_json")
		}
		raw = json.RawMessage(str)
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(raw, &claims) != nil {
		return nil, errors.New("expecting a json object when claims_format is json")
	}
	lower := map[string]json.RawMessage{}
	for k, v := range claims {
		if strings.HasPrefix(strings.ToLower(k), "x-hasura-") {
			lower[strings.ToLower(k)] = v
		}
	}
	var allowed []string
	if _, ok := lower["x-hasura-allowed-roles"]; !ok {
		return nil, errors.New("jwt claim does not contain x-hasura-allowed-roles")
	}
	if json.Unmarshal(lower["x-hasura-allowed-roles"], &allowed) != nil {
		return nil, errors.New("invalid x-hasura-allowed-roles; should be a list of roles")
	}
	var def string
	if _, ok := lower["x-hasura-default-role"]; !ok {
		return nil, errors.New("jwt claim does not contain x-hasura-default-role")
	}
	if json.Unmarshal(lower["x-hasura-default-role"], &def) != nil {
		return nil, errors.New("invalid x-hasura-default-role; should be a single role name")
	}
	role := def
	if requestedRole != "" {
		role = requestedRole
	}
	if !slices.Contains(allowed, role) {
		return nil, errors.New("your requested role is not in allowed roles")
	}
	session := map[string]string{"x-hasura-role": role}
	for k, v := range lower {
		if k == "x-hasura-allowed-roles" || k == "x-hasura-default-role" {
			continue
		}
		var str string
		if json.Unmarshal(v, &str) != nil {
			return nil, fmt.Errorf("invalid x-hasura-* claims: %s is not a string", k)
		}
		session[k] = str
	}
	return session, nil
}
