package apikey

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

func TestSecret(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		prefix, ok := ParseKey(s.Key)
		if !ok || prefix != s.Prefix || !strings.HasPrefix(s.Key, s.Prefix+"_") || len(s.Key) != len(Prefix)+16+1+52 {
			t.Fatalf("key %q: prefix %q (%v), want %q", s.Key, prefix, ok, s.Prefix)
		}
		if seen[s.Prefix] {
			t.Fatalf("prefix %s twice", s.Prefix)
		}
		seen[s.Prefix] = true
		flipped := s.Key[:len(s.Key)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(s.Key, "a")]
		if !Matches(s.Key, s.Hash) || Matches(s.Key+"x", s.Hash) || Matches(flipped, s.Hash) {
			t.Fatalf("Matches is wrong for %q", s.Key)
		}
		if strings.Contains(string(s.Hash), s.Key) || len(s.Hash) != 32 {
			t.Fatal("the hash is not a 32-byte digest")
		}
	}
	for _, bad := range []string{
		"", "tk_live_", "tk_test_abcdefghijklmnop_" + strings.Repeat("a", 52),
		"tk_live_abcdefghijklmnop_" + strings.Repeat("a", 51),
		"tk_live_abcdefghijklmnop_" + strings.Repeat("a", 53),
		"tk_live_ABCDEFGHIJKLMNOP_" + strings.Repeat("a", 52),
		"tk_live_abcdefghijklmno1_" + strings.Repeat("a", 52), // 1 is not base32
		" tk_live_abcdefghijklmnop_" + strings.Repeat("a", 52),
		"tk_live_abcdefghijklmnop_" + strings.Repeat("a", 52) + "\n",
	} {
		if _, ok := ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// grantVocabulary mixes roles' grants, wildcards and permissions no role has.
var grantVocabulary = []string{
	"*", "projects:*", "projects:read", "projects:write", "projects:delete", "users:*", "users:invite",
	"users:write", "settings:read", "settings:write", "settings:*", "billing:*", "billing:read",
	"api_keys:manage", "api_keys:*", "tenants:delete", "reports:read",
}

// TestEffectiveIsTheIntersection: for random scopes, roles and custom grants, a permission is
// covered by Effective's result exactly when Allows says the key allows it — the rule the
// database and Hasura apply — and Effective never grants what the creator does not hold.
func TestEffectiveIsTheIntersection(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(1, 2))
	perms := append(slices.Clone(grantVocabulary), "projects:export", "users:read", "unknown:thing")
	pick := func(n int) []string {
		var out []string
		for range n {
			out = append(out, grantVocabulary[rng.IntN(len(grantVocabulary))])
		}
		return out
	}
	for range 3000 {
		scopes, custom := pick(1+rng.IntN(3)), pick(rng.IntN(3))
		role := append(slices.Clone(tenantkit.Roles), "")[rng.IntN(len(tenantkit.Roles)+1)]
		eff := Effective(scopes, role, custom)
		for _, p := range perms {
			want := Allows(scopes, role, custom, p)
			got := slices.ContainsFunc(eff, func(g string) bool { return tenantkit.GrantMatches(g, p) })
			if got != want {
				t.Fatalf("scopes %v, role %q, custom %v: Effective %v covers %s = %v, Allows = %v", scopes, role, custom, eff, p, got, want)
			}
			if got && !tenantkit.Allows(role, custom, p) {
				t.Fatalf("Effective %v grants %s beyond the creator's grants", eff, p)
			}
		}
		if len(Exceeding(eff, role, custom)) > 0 && role.Valid() {
			t.Fatalf("Effective %v exceeds the creator's grants (role %s, custom %v)", eff, role, custom)
		}
	}
	// the examples of the README
	if got := Effective([]string{"projects:*"}, tenantkit.Member, nil); !slices.Equal(got, []string{"projects:read", "projects:write"}) {
		t.Errorf("projects:* for a member: %v", got)
	}
	if got := Effective([]string{"projects:*", "users:invite"}, tenantkit.Admin, nil); !slices.Equal(got, []string{"projects:*", "users:invite"}) {
		t.Errorf("admin: %v", got)
	}
	if got := Effective([]string{"*"}, tenantkit.Guest, []string{"users:invite"}); !slices.Equal(got, []string{"projects:read", "users:invite"}) {
		t.Errorf("* for a guest with users:invite: %v", got)
	}
	if got := Effective([]string{"projects:read"}, "", nil); len(got) != 0 {
		t.Errorf("a creator who left: %v", got)
	}
}

func TestValidateScopes(t *testing.T) {
	t.Parallel()
	got, err := ValidateScopes([]string{"users:invite", "projects:read", "users:invite"})
	if err != nil || !slices.Equal(got, []string{"projects:read", "users:invite"}) {
		t.Errorf("got %v, %v", got, err)
	}
	many := []string{}
	for i := range MaxScopes + 1 {
		many = append(many, "r"+strings.Repeat("x", i%60)+":read"+strings.Repeat("y", i/60))
	}
	for _, bad := range [][]string{nil, {}, {"projects"}, {"Projects:read"}, {"projects:read", ""}, {"*:*"}, many} {
		if _, err := ValidateScopes(bad); tenantkit.ErrorCode(err) != tenantkit.Invalid {
			t.Errorf("ValidateScopes(%d scopes %.40v) = %v, want invalid", len(bad), bad, err)
		}
	}
	if over := Exceeding([]string{"projects:*", "users:invite", "projects:read"}, tenantkit.Member, []string{"users:invite"}); !slices.Equal(over, []string{"projects:*"}) {
		t.Errorf("Exceeding for a member with users:invite: %v", over)
	}
	if over := Exceeding([]string{"*"}, tenantkit.Admin, nil); !slices.Equal(over, []string{"*"}) {
		t.Errorf("an admin may not give *: %v", over)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	if n, err := ValidateName("  CI deploy  "); err != nil || n != "CI deploy" {
		t.Errorf("got %q, %v", n, err)
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 101), "a\nb", "my tk_live_abc key"} {
		if _, err := ValidateName(bad); tenantkit.ErrorCode(err) != tenantkit.Invalid {
			t.Errorf("ValidateName(%q) = %v, want invalid", bad, err)
		}
	}
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	th := &Throttle{PerAddress: 3, FailuresPerKey: 2, Now: func() time.Time { return now }}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if ok, _ := th.Admit(a, ""); !ok {
			t.Fatalf("exchange %d of 3 refused", i+1)
		}
	}
	ok, wait := th.Admit(a, "")
	if ok || wait != 20*time.Second {
		t.Fatalf("4th exchange in a minute: %v, retry after %v; want refused, 20s", ok, wait)
	}
	if ok, _ := th.Admit(b, ""); !ok {
		t.Fatal("another address was throttled")
	}
	now = now.Add(20 * time.Second)
	if ok, _ := th.Admit(a, ""); !ok {
		t.Fatal("still refused after Retry-After")
	}
	// failures per key prefix, from any address
	th.Failed("tk_live_aaaaaaaaaaaaaaaa")
	th.Failed("tk_live_aaaaaaaaaaaaaaaa")
	ok, wait = th.Admit(netip.MustParseAddr("198.51.100.7"), "tk_live_aaaaaaaaaaaaaaaa")
	if ok || wait != 30*time.Minute {
		t.Fatalf("third try on a prefix after two failures: %v, %v; want refused, 30m", ok, wait)
	}
	if ok, _ := th.Admit(netip.MustParseAddr("198.51.100.8"), "tk_live_bbbbbbbbbbbbbbbb"); !ok {
		t.Fatal("another prefix was throttled")
	}
	// IPv6 addresses count per /64
	v6 := &Throttle{PerAddress: 1, Now: func() time.Time { return now }}
	if ok, _ := v6.Admit(netip.MustParseAddr("2001:db8::1"), ""); !ok {
		t.Fatal("first v6 exchange refused")
	}
	if ok, _ := v6.Admit(netip.MustParseAddr("2001:db8::ffff:2"), ""); ok {
		t.Fatal("a second address of the same /64 was not throttled")
	}
	if ok, _ := v6.Admit(netip.MustParseAddr("2001:db8:0:1::1"), ""); !ok {
		t.Fatal("another /64 was throttled")
	}
}

func TestThrottleMemoryIsBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	th := &Throttle{PerAddress: 5, Now: func() time.Time { return now }}
	for i := range maxThrottleEntries + 5000 {
		th.Admit(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "")
	}
	if n := len(th.addr.m); n > maxThrottleEntries {
		t.Fatalf("%d addresses remembered, at most %d", n, maxThrottleEntries)
	}
}

// TestSignerTokens: tokens of both key types verify, through the JWKS served over HTTP, by the
// emulation of Hasura's jwt_secrets entry, and carry the API client's session.
func TestSignerTokens(t *testing.T) {
	t.Parallel()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []crypto.PrivateKey{ed, rsaKey} {
		signer, err := NewSigner(key)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(signer.JWKS()) }))
		defer srv.Close()
		now := time.Now()
		svc := &Service{Signer: signer, Issuer: "https://tenantkit.test", Audience: "hasura", TTL: 2 * time.Minute}
		expires := now.Add(time.Minute)
		k := Key{ID: "4b3f1c2e-9a8d-4e7f-8b6a-5c4d3e2f1a0b", TenantID: "9f8e7d6c-5b4a-4392-8a1b-0c9d8e7f6a5b", CreatedBy: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", ExpiresAt: &expires}
		tok, err := svc.issue(k, []string{"projects:read", "users:invite"}, now)
		if err != nil {
			t.Fatal(err)
		}
		if !tok.ExpiresAt.Equal(expires.Truncate(time.Second)) {
			t.Errorf("%s: token expires %v, after its key (%v)", signer.Alg(), tok.ExpiresAt, expires)
		}
		secrets, err := hasuratest.ParseJWTSecrets(`[{"jwk_url":"` + srv.URL + `","issuer":"https://tenantkit.test","audience":"hasura",
			"claims_namespace":"https://hasura.io/jwt/claims","claims_format":"json"}]`)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{"Authorization": {"Bearer " + tok.Value}}
		session, err := (&hasuratest.JWTAuth{Secrets: secrets}).Session(context.Background(), h)
		if err != nil {
			t.Fatalf("%s: Hasura would refuse the token: %v", signer.Alg(), err)
		}
		want := map[string]string{"x-hasura-role": Role, VarTenantID: k.TenantID, VarKeyID: k.ID, VarCreatorID: k.CreatedBy,
			VarScopes: "{projects:read,users:invite}"}
		if len(session) != len(want) {
			t.Errorf("%s: session %v, want %v", signer.Alg(), session, want)
		}
		for name, v := range want {
			if session[name] != v {
				t.Errorf("%s: %s = %q, want %q", signer.Alg(), name, session[name], v)
			}
		}
		// a token of a previous key stays verifiable while the JWKS lists it
		_, nextPriv, _ := ed25519.GenerateKey(rand.Reader)
		rotated, err := NewSigner(nextPriv, signer.key.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rotated.JWKS()), signer.KeyID()) || !strings.Contains(string(rotated.JWKS()), rotated.KeyID()) {
			t.Errorf("the rotated JWKS lacks a key: %s", rotated.JWKS())
		}
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ed)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	k, err := ParsePrivateKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigner(k); err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(ed.Public())
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})); err != nil {
		t.Errorf("public key: %v", err)
	}
	if _, err := ParsePublicKey(pemKey); err != nil {
		t.Errorf("public half of a private key: %v", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := NewSigner(small); err == nil || !strings.Contains(err.Error(), "2048") {
		t.Errorf("a 1024-bit RSA key: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("not pem"), append(pemKey, pemKey...),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})} {
		if _, err := ParsePrivateKey(bad); err == nil {
			t.Errorf("ParsePrivateKey accepted %.30q", bad)
		} else if strings.Contains(err.Error(), string(der[:8])) {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
}
