package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// hasuraJWTMode verifies a token as Hasura's JWT mode does, written from Hasura's source
// independently of devjwt.go (hasura/graphql-engine server/src-lib/Hasura/Server/Auth/JWT.hs:
// instance FromJSON JWTConfig, processJwt_, parseClaimsMap, parseHasuraClaims; JWT/Internal.hs
// parseHmacKey; jose's verifyClaimsAt with Hasura's defaults: no skew): the secret's key must be
// long enough for its HMAC; the JWS must be compact with the header's alg the secret's type and a
// valid signature; exp and nbf must hold now; the claims are the object (claims_format json) or
// the JSON string (stringified_json) under claims_namespace (default https://hasura.io/jwt/claims);
// of them only x-hasura-* keys count (case-insensitively); x-hasura-allowed-roles must be a list
// of role names, x-hasura-default-role a role name among them (no X-Hasura-Role header is sent),
// and every other x-hasura-* value a string. It returns the session variables.
func hasuraJWTMode(secretJSON, token string, now time.Time) (map[string]string, error) {
	var conf map[string]any
	if err := json.Unmarshal([]byte(secretJSON), &conf); err != nil {
		return nil, err
	}
	typ, _ := conf["type"].(string)
	key, _ := conf["key"].(string)
	var h func() hash.Hash
	var bits int
	switch typ {
	case "HS256":
		h, bits = sha256.New, 256
	case "HS384":
		h, bits = sha512.New384, 384
	case "HS512":
		h, bits = sha512.New, 512
	default:
		return nil, errors.New("key type not emulated here")
	}
	if len(key) < bits/8 {
		return nil, errors.New("Key size too small")
	}
	ns := "https://hasura.io/jwt/claims"
	if v, ok := conf["claims_namespace"].(string); ok {
		ns = v
	}
	format, _ := conf["claims_format"].(string)

	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("CompactDecodeError")
	}
	dec := base64.RawURLEncoding
	var header map[string]any
	if b, err := dec.DecodeString(parts[0]); err != nil || json.Unmarshal(b, &header) != nil {
		return nil, errors.New("bad header")
	}
	if header["alg"] != typ {
		return nil, errors.New("JWSInvalidSignature (alg)")
	}
	mac := hmac.New(h, []byte(key))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := dec.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, errors.New("JWSInvalidSignature")
	}
	var claims map[string]any
	b, err := dec.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&claims); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name string
		ok   func(t int64) bool
	}{{"exp", func(t int64) bool { return now.Unix() < t }}, {"nbf", func(t int64) bool { return now.Unix() >= t }}} {
		if v, present := claims[c.name]; present {
			n, ok := v.(json.Number)
			i, err := n.Int64()
			if !ok || err != nil || !c.ok(i) {
				return nil, errors.New(c.name + " fails")
			}
		}
	}
	raw, ok := claims[ns]
	if !ok {
		return nil, errors.New("claims key not found")
	}
	var obj map[string]any
	switch format {
	case "", "json":
		if obj, ok = raw.(map[string]any); !ok {
			return nil, errors.New("expecting a json object")
		}
	case "stringified_json":
		s, ok := raw.(string)
		if !ok || json.Unmarshal([]byte(s), &obj) != nil {
			return nil, errors.New("expecting stringified json")
		}
	}
	session := map[string]string{}
	var allowed []string
	def := ""
	for k, v := range obj {
		switch lk := strings.ToLower(k); {
		case !strings.HasPrefix(lk, "x-hasura-"):
		case lk == "x-hasura-allowed-roles":
			list, ok := v.([]any)
			if !ok {
				return nil, errors.New("allowed roles not a list")
			}
			for _, r := range list {
				s, ok := r.(string)
				if !ok || s == "" {
					return nil, errors.New("allowed role not a role name")
				}
				allowed = append(allowed, s)
			}
		case lk == "x-hasura-default-role":
			if def, ok = v.(string); !ok || def == "" {
				return nil, errors.New("default role not a role name")
			}
		default:
			s, ok := v.(string)
			if !ok {
				return nil, errors.New(lk + " is not a string")
			}
			session[lk] = s
		}
	}
	if allowed == nil || def == "" || !slices.Contains(allowed, def) {
		return nil, errors.New("role claims missing or default role not allowed")
	}
	session["x-hasura-role"] = def
	return session, nil
}

// composeJWTSecret is docker-compose.yml's default HASURA_GRAPHQL_JWT_SECRET.
func composeJWTSecret(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`HASURA_GRAPHQL_JWT_SECRET: \$\{HASURA_GRAPHQL_JWT_SECRET:-(\{.*\})\}`).FindSubmatch(b)
	if m == nil {
		t.Fatal("docker-compose.yml has no default HASURA_GRAPHQL_JWT_SECRET")
	}
	return string(m[1])
}

// TestDevTokenIsAcceptedByHasura: tenantkit dev token prints a token that Hasura's JWT mode, with
// docker-compose.yml's secret, accepts as the given user and role; other secrets' namespaces and
// formats are followed; what Hasura could not accept is refused.
func TestDevTokenIsAcceptedByHasura(t *testing.T) {
	compose := composeJWTSecret(t)
	if compose != devJWTSecret {
		t.Fatalf("dev token's default secret %s is not docker-compose.yml's %s", devJWTSecret, compose)
	}
	user := uuid.NewString()
	token := func(t *testing.T, secret string, args ...string) (string, error) {
		t.Helper()
		t.Setenv("HASURA_GRAPHQL_JWT_SECRET", secret)
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"dev", "token"}, args...), &out)
		return strings.TrimSuffix(out.String(), "\n"), err
	}
	for _, c := range []struct {
		name, secret string
		args         []string
		role         string
	}{
		{"the compose secret, role user", "", []string{"--user", user}, "user"},
		{"role service", "", []string{"--user", user, "--role", "service"}, "service"},
		{"another namespace, stringified", `{"type":"HS512","key":"` + strings.Repeat("k", 64) + `","claims_namespace":"claims.example","claims_format":"stringified_json"}`,
			[]string{"--user", user, "--ttl", "5m"}, "user"},
		{"HS384", `{"type":"HS384","key":"` + strings.Repeat("x", 48) + `"}`, []string{"--user", strings.ToUpper(user)}, "user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := token(t, c.secret, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			secret := c.secret
			if secret == "" {
				secret = compose
			}
			session, err := hasuraJWTMode(secret, tok, time.Now())
			if err != nil {
				t.Fatalf("Hasura refuses %s: %v", tok, err)
			}
			want := map[string]string{"x-hasura-role": c.role, "x-hasura-user-id": user}
			if !mapsEqual(session, want) {
				t.Errorf("session %v, want %v", session, want)
			}
			// stand-in for Hasura in dev reads it the same way
			s, err := parseJWTSecret(secret)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := verifyDev(s, tok, "", time.Now()); err != nil || !mapsEqual(got, want) {
				t.Errorf("dev's stand-in: %v, %v", got, err)
			}
			// and it expires
			if _, err := hasuraJWTMode(secret, tok, time.Now().Add(13*time.Hour)); err == nil {
				t.Error("the token does not expire")
			}
		})
	}
	for name, c := range map[string]struct {
		secret string
		args   []string
		want   string
	}{
		"no user":          {"", nil, "--user must be a user's id"},
		"not a uuid":       {"", []string{"--user", "alice"}, "--user must be a user's id"},
		"unknown flag":     {"", []string{"--user", user, "--admin"}, "flag provided but not defined"},
		"short key":        {`{"type":"HS256","key":"short"}`, []string{"--user", user}, "at least 32 characters"},
		"RSA":              {`{"type":"RS256","key":"-----BEGIN PUBLIC KEY-----"}`, []string{"--user", user}, "HS256, HS384 or HS512"},
		"jwk_url":          {`{"type":"HS256","jwk_url":"https://x"}`, []string{"--user", user}, ""},
		"not JSON":         {`HS256:abc`, []string{"--user", user}, "must be Hasura's JSON"},
		"negative ttl":     {"", []string{"--user", user, "--ttl", "-1h"}, "--ttl must be positive"},
		"extra argument":   {"", []string{"--user", user, "more"}, "unexpected argument"},
		"claims_map":       {`{"type":"HS256","key":"` + strings.Repeat("k", 32) + `","claims_map":{}}`, []string{"--user", user}, "claims_map"},
		"a role with tabs": {"", []string{"--user", user, "--role", "a\tb"}, "--role"},
	} {
		t.Run("refused: "+name, func(t *testing.T) {
			tok, err := token(t, c.secret, c.args...)
			if err == nil || tok != "" || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %q, %v; want an error containing %q and no token", tok, err, c.want)
			}
		})
	}
}

// verifyDev verifies token as dev's stand-in for Hasura does (devGraphQL.session) at now, with
// X-Hasura-Role role unless it is empty.
func verifyDev(s jwtSecret, token, role string, now time.Time) (map[string]string, error) {
	a := s.auth()
	a.Now = func() time.Time { return now }
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	if role != "" {
		h.Set("X-Hasura-Role", role)
	}
	return a.Session(context.Background(), h)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestDevStandInVerifiesLikeHasura: on tokens Hasura accepts and refuses, dev's stand-in agrees
// with hasuraJWTMode, and it honours X-Hasura-Role only among the allowed roles.
func TestDevStandInVerifiesLikeHasura(t *testing.T) {
	t.Parallel()
	s, err := parseJWTSecret(devJWTSecret)
	if err != nil {
		t.Fatal(err)
	}
	other, err := parseJWTSecret(`{"type":"HS256","key":"` + strings.Repeat("o", 32) + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	user := uuid.NewString()
	good, _ := s.mintToken(user, "user", now, time.Hour)
	expired, _ := s.mintToken(user, "user", now.Add(-2*time.Hour), time.Hour)
	foreign, _ := other.mintToken(user, "user", now, time.Hour)
	parts := strings.Split(good, ".")
	sign := func(payload map[string]any, alg string) string {
		h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
		p, _ := json.Marshal(payload)
		in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
		return in + "." + s.sign(in)
	}
	ns := "https://hasura.io/jwt/claims"
	tokens := map[string]string{
		"good":             good,
		"expired":          expired,
		"another key":      foreign,
		"tampered payload": parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "." + parts[2],
		"two parts":        parts[0] + "." + parts[1],
		"alg none":         sign(map[string]any{ns: map[string]any{"x-hasura-default-role": "user", "x-hasura-allowed-roles": []string{"user"}}}, "none"),
		"no namespace":     sign(map[string]any{"x-hasura-default-role": "user"}, "HS256"),
		"default not allowed": sign(map[string]any{ns: map[string]any{"x-hasura-default-role": "admin",
			"x-hasura-allowed-roles": []string{"user"}}}, "HS256"),
		"not yet valid": sign(map[string]any{"nbf": now.Add(time.Hour).Unix(), ns: map[string]any{"x-hasura-default-role": "user",
			"x-hasura-allowed-roles": []string{"user"}}}, "HS256"),
		"numeric user id": sign(map[string]any{ns: map[string]any{"x-hasura-default-role": "user",
			"x-hasura-allowed-roles": []string{"user"}, "x-hasura-user-id": 7}}, "HS256"),
		"upper-case claim names": sign(map[string]any{ns: map[string]any{"X-Hasura-Default-Role": "user",
			"X-Hasura-Allowed-Roles": []string{"user", "service"}, "X-Hasura-User-Id": user, "other": "ignored"}}, "HS256"),
	}
	for name, tok := range tokens {
		want, wantErr := hasuraJWTMode(devJWTSecret, tok, now)
		got, err := verifyDev(s, tok, "", now)
		if (err == nil) != (wantErr == nil) || (err == nil && !mapsEqual(got, want)) {
			t.Errorf("%s: stand-in %v, %v; Hasura %v, %v", name, got, err, want, wantErr)
		}
	}
	multi := tokens["upper-case claim names"]
	if got, err := verifyDev(s, multi, "service", now); err != nil || got["x-hasura-role"] != "service" {
		t.Errorf("X-Hasura-Role service: %v, %v", got, err)
	}
	if _, err := verifyDev(s, multi, "admin", now); err == nil {
		t.Error("X-Hasura-Role admin, not among the allowed roles: accepted")
	}
}
