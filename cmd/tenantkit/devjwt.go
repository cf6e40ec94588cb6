package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// Development JWTs: what Hasura's JWT mode accepts (https://hasura.io/docs/latest/auth/authentication/jwt/;
// hasura/graphql-engine server/src-lib/Hasura/Server/Auth/JWT.hs), for the compose stack's
// HASURA_GRAPHQL_JWT_SECRET and for tenantkit dev's stand-in for Hasura.

// devJWTSecret is docker-compose.yml's default HASURA_GRAPHQL_JWT_SECRET (a published development
// value: see publishedSecrets).
const devJWTSecret = `{"type":"HS256","key":"dev-jwt-key-change-me-0123456789abcdef"}`

// devAdminSecret is docker-compose.yml's default HASURA_GRAPHQL_ADMIN_SECRET (published too).
const devAdminSecret = "dev-admin-secret-change-me"

// jwtSecret is HASURA_GRAPHQL_JWT_SECRET as Hasura reads it (hasuratest.ParseJWTSecret), with an
// inline HMAC key a development token can be signed with.
type jwtSecret struct{ hasuratest.JWTSecret }

// parseJWTSecret reads HASURA_GRAPHQL_JWT_SECRET with hasuratest.ParseJWTSecret (Hasura's rules:
// an HS256, HS384 or HS512 key has at least 32, 48 or 64 characters; claims_map and
// claims_namespace_path are refused) and keeps the key types tenantkit can sign with: jwk_url,
// RSA and Ed25519 keys are refused, a development token cannot be signed for them.
func parseJWTSecret(raw string) (jwtSecret, error) {
	if !json.Valid([]byte(raw)) {
		return jwtSecret{}, errors.New(`HASURA_GRAPHQL_JWT_SECRET must be Hasura's JSON, e.g. {"type":"HS256","key":"<32+ characters>"}`)
	}
	s, err := hasuratest.ParseJWTSecret(raw)
	if err != nil {
		return jwtSecret{}, fmt.Errorf("HASURA_GRAPHQL_JWT_SECRET: %w", err)
	}
	if s.JWKURL != "" {
		return jwtSecret{}, errors.New("HASURA_GRAPHQL_JWT_SECRET: jwk_url is set: a development token needs the key itself")
	}
	if _, err := s.SignHMAC(""); err != nil {
		return jwtSecret{}, fmt.Errorf("HASURA_GRAPHQL_JWT_SECRET: type %q: development tokens are signed with HS256, HS384 or HS512 only", s.Type)
	}
	return jwtSecret{s}, nil
}

var b64 = base64.RawURLEncoding

func (s jwtSecret) sign(signingInput string) string {
	sig, _ := s.SignHMAC(signingInput) // parseJWTSecret checked the key
	return sig
}

// auth verifies tokens signed with the secret as Hasura's JWT mode does.
func (s jwtSecret) auth() *hasuratest.JWTAuth {
	return &hasuratest.JWTAuth{Secrets: []hasuratest.JWTSecret{s.JWTSecret}}
}

// mintToken returns a signed JWT for user with Hasura's claims: x-hasura-default-role role,
// x-hasura-allowed-roles [role], x-hasura-user-id user; sub is the user, iat now, exp now+ttl.
func (s jwtSecret) mintToken(user, role string, now time.Time, ttl time.Duration) (string, error) {
	claims := map[string]any{
		"x-hasura-default-role":  role,
		"x-hasura-allowed-roles": []string{role},
		"x-hasura-user-id":       user,
	}
	var ns any = claims
	if s.ClaimsFormat == "stringified_json" {
		b, err := json.Marshal(claims)
		if err != nil {
			return "", err
		}
		ns = string(b)
	}
	payload := map[string]any{"sub": user, "iat": now.Unix(), "exp": now.Add(ttl).Unix(), s.ClaimsNamespace: ns}
	if s.Issuer != "" {
		payload["iss"] = s.Issuer
	}
	if auds, _ := s.Audiences(); len(auds) > 0 { // ParseJWTSecret checked it
		payload["aud"] = auds[0]
	}
	header, err := json.Marshal(map[string]string{"alg": s.Type, "typ": "JWT"})
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
