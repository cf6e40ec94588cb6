package hasuratest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// RFC 8037, Appendix A.1 and A.4: an Ed25519 key and a JWS it signed.
const (
	rfc8037X   = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfc8037JWS = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc." +
		"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)

func TestVerifySignatureRFC8037(t *testing.T) {
	t.Parallel()
	key := JWK{Kty: "OKP", Crv: "Ed25519", X: rfc8037X}
	payload, err := verifySignature(rfc8037JWS, []JWK{key})
	if err != nil || string(payload) != "Example of Ed25519 signing" {
		t.Fatalf("RFC 8037 A.4: %q, %v", payload, err)
	}
	parts := strings.Split(rfc8037JWS, ".")
	tampered := parts[0] + "." + rawURL.EncodeToString([]byte("Example of Ed25519 signinG")) + "." + parts[2]
	if _, err := verifySignature(tampered, []JWK{key}); err == nil {
		t.Error("a changed payload verified")
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := verifySignature(rfc8037JWS, []JWK{{Kty: "OKP", Crv: "Ed25519", X: rawURL.EncodeToString(other)}}); err == nil {
		t.Error("another key verified")
	}
	if _, err := verifySignature(rfc8037JWS, []JWK{{Kty: "OKP", Crv: "Ed25519", X: rfc8037X, Alg: "RS256"}}); err == nil {
		t.Error("a key for another algorithm verified")
	}
}

// testIssuer signs tokens for the JWTAuth tests with a fresh Ed25519 key and serves its JWKS.
type testIssuer struct {
	priv ed25519.PrivateKey
	url  string
}

func newTestIssuer(t *testing.T) *testIssuer {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks, _ := json.Marshal(map[string][]JWK{"keys": {{Kty: "OKP", Crv: "Ed25519", X: rawURL.EncodeToString(pub), Kid: "k1", Alg: "EdDSA", Use: "sig"}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(srv.Close)
	return &testIssuer{priv: priv, url: srv.URL}
}

func (i *testIssuer) sign(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "kid": "k1", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	input := rawURL.EncodeToString(h) + "." + rawURL.EncodeToString(p)
	return input + "." + rawURL.EncodeToString(ed25519.Sign(i.priv, []byte(input)))
}

func TestJWTAuthSession(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	entry := `{"jwk_url":"` + iss.url + `","issuer":"tk","audience":"hasura","claims_format":"json"}`
	other := `{"jwk_url":"` + iss.url + `","issuer":"hasura-auth"}`
	secrets, err := ParseJWTSecrets("[" + entry + "," + other + "]")
	if err != nil {
		t.Fatal(err)
	}
	auth := &JWTAuth{Secrets: secrets, Now: func() time.Time { return now }}
	good := func() map[string]any {
		return map[string]any{"iss": "tk", "aud": "hasura", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
			DefaultClaimsNamespace: map[string]any{"x-hasura-default-role": "api_client", "x-hasura-allowed-roles": []string{"api_client"},
				"X-Hasura-Tenant-Id": "t1", "x-hasura-scopes": "{a:b}", "other": 1}}
	}
	session := func(claims map[string]any, role string) (map[string]string, error) {
		h := http.Header{}
		h.Set("Authorization", "Bearer "+iss.sign(claims))
		if role != "" {
			h.Set("X-Hasura-Role", role)
		}
		return auth.Session(context.Background(), h)
	}
	got, err := session(good(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["x-hasura-role"] != "api_client" || got["x-hasura-tenant-id"] != "t1" || got["x-hasura-scopes"] != "{a:b}" {
		t.Errorf("session %v", got)
	}
	refused := map[string]func(c map[string]any) (role string){
		"expired":          func(c map[string]any) string { c["exp"] = now.Add(-time.Second).Unix(); return "" },
		"expires now":      func(c map[string]any) string { c["exp"] = now.Unix(); return "" },
		"issued in future": func(c map[string]any) string { c["iat"] = now.Add(time.Second).Unix(); return "" },
		"not yet valid":    func(c map[string]any) string { c["nbf"] = now.Add(time.Second).Unix(); return "" },
		"other audience":   func(c map[string]any) string { c["aud"] = "someone-else"; return "" },
		"role not allowed": func(c map[string]any) string { return "user" },
		"no namespace":     func(c map[string]any) string { delete(c, DefaultClaimsNamespace); return "" },
		"stringified claims": func(c map[string]any) string {
			b, _ := json.Marshal(c[DefaultClaimsNamespace])
			c[DefaultClaimsNamespace] = string(b)
			return ""
		},
		"non-string claim": func(c map[string]any) string {
			c[DefaultClaimsNamespace].(map[string]any)["X-Hasura-Tenant-Id"] = 7
			return ""
		},
		"no allowed roles": func(c map[string]any) string {
			delete(c[DefaultClaimsNamespace].(map[string]any), "x-hasura-allowed-roles")
			return ""
		},
	}
	for name, change := range refused {
		c := good()
		role := change(c)
		if s, err := session(c, role); err == nil {
			t.Errorf("%s: accepted as %v", name, s)
		}
	}
	// an issuer no entry names, and no issuer at all while two entries name one
	c := good()
	c["iss"] = "stranger"
	if _, err := session(c, ""); !errors.Is(err, ErrNoMatchingSecret) {
		t.Errorf("unknown issuer: %v, want no matching secret", err)
	}
	c = good()
	delete(c, "iss")
	if _, err := session(c, ""); err == nil || !strings.Contains(err.Error(), "Multiple") {
		t.Errorf("no issuer with two entries: %v, want ambiguous", err)
	}
	// a token signed by another key
	stranger := newTestIssuer(t)
	h := http.Header{}
	h.Set("Authorization", "Bearer "+stranger.sign(good()))
	if _, err := auth.Session(context.Background(), h); err == nil {
		t.Error("a token signed by another key was accepted")
	}
	// a lower-case scheme is a malformed header for Hasura
	h.Set("Authorization", "bearer "+iss.sign(good()))
	if _, err := auth.Session(context.Background(), h); err == nil {
		t.Error(`"bearer" accepted`)
	}
	// the skew allowance
	skewed, err := ParseJWTSecrets(`[{"jwk_url":"` + iss.url + `","issuer":"tk","allowed_skew":5}]`)
	if err != nil {
		t.Fatal(err)
	}
	c = good()
	c["iat"] = now.Add(3 * time.Second).Unix()
	h.Set("Authorization", "Bearer "+iss.sign(c))
	if _, err := (&JWTAuth{Secrets: skewed, Now: func() time.Time { return now }}).Session(context.Background(), h); err != nil {
		t.Errorf("iat 3 s ahead with allowed_skew 5: %v", err)
	}
}

func TestParseJWTSecret(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		`{}`,
		`{"key":"k","type":"RS256","jwk_url":"http://x"}`,
		`{"jwk_url":"http://x","claims_namespace":"a","claims_namespace_path":"$.b"}`,
		`{"jwk_url":"http://x","claims_format":"yaml"}`,
		`{"jwk_url":"http://x","audience":7}`,
	} {
		if _, err := ParseJWTSecret(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	s, err := ParseJWTSecret(`{"jwk_url":"http://x"}`)
	if err != nil || s.ClaimsNamespace != DefaultClaimsNamespace || s.ClaimsFormat != "json" {
		t.Errorf("defaults: %+v, %v", s, err)
	}
}

// TestJWTAuthHMAC: an inline HS key (Hasura's {"type":"HS256","key":"…"}) verifies tokens signed
// with it and the entry's alg only; short keys and other inline key types are refused.
func TestJWTAuthHMAC(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s, err := ParseJWTSecret(`{"type":"HS384","key":"` + strings.Repeat("k", 48) + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseJWTSecret(`{"type":"HS384","key":"` + strings.Repeat("o", 48) + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	auth := &JWTAuth{Secrets: []JWTSecret{s}, Now: func() time.Time { return now }}
	claims, _ := json.Marshal(map[string]any{"exp": now.Add(time.Minute).Unix(),
		DefaultClaimsNamespace: map[string]any{"x-hasura-default-role": "user", "x-hasura-allowed-roles": []string{"user"}, "x-hasura-user-id": "u1"}})
	token := func(alg string, key JWTSecret) string {
		h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
		in := rawURL.EncodeToString(h) + "." + rawURL.EncodeToString(claims)
		sig, err := key.SignHMAC(in)
		if err != nil {
			t.Fatal(err)
		}
		return in + "." + sig
	}
	session := func(tok string) (map[string]string, error) {
		h := http.Header{}
		h.Set("Authorization", "Bearer "+tok)
		return auth.Session(context.Background(), h)
	}
	got, err := session(token("HS384", s))
	if err != nil || len(got) != 2 || got["x-hasura-role"] != "user" || got["x-hasura-user-id"] != "u1" {
		t.Fatalf("HS384 token: %v, %v", got, err)
	}
	for name, tok := range map[string]string{"another key": token("HS384", other), "alg HS256": token("HS256", s), "alg none": token("none", s)} {
		if got, err := session(tok); err == nil {
			t.Errorf("%s: accepted as %v", name, got)
		}
	}
	for _, bad := range []string{
		`{"type":"HS256","key":"` + strings.Repeat("k", 31) + `"}`,
		`{"type":"HS512","key":"` + strings.Repeat("k", 63) + `"}`,
		`{"type":"RS384","key":"-----BEGIN PUBLIC KEY-----"}`,
		`{"type":"ES256","key":"k"}`,
	} {
		if _, err := ParseJWTSecret(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, err := (JWTSecret{Type: "RS256", Key: "k"}).SignHMAC("x.y"); err == nil {
		t.Error("SignHMAC with an RS256 key")
	}
}
