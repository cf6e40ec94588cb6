package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/apikey"
)

// exchangeFunc adapts a function to Exchanger: the HTTP translation is tested here, the exchange
// itself in internal/apikey and end to end in cmd/tenantkit.
type exchangeFunc func(ctx context.Context, key string) (apikey.Token, string, error)

func (f exchangeFunc) Exchange(ctx context.Context, key string) (apikey.Token, string, error) {
	return f(ctx, key)
}

func TestTokenClientAddress(t *testing.T) {
	t.Parallel()
	routes := &TokenRoutes{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	for _, c := range []struct{ peer, xff, want string }{
		{"192.0.2.7:1234", "", "192.0.2.7"},
		{"192.0.2.7:1234", "203.0.113.9", "192.0.2.7"},                // an untrusted peer's header is ignored
		{"10.1.2.3:1234", "203.0.113.9", "203.0.113.9"},               // a trusted proxy's is read
		{"10.1.2.3:1234", "198.51.100.1, 203.0.113.9", "203.0.113.9"}, // the right-most untrusted hop
		{"10.1.2.3:1234", "203.0.113.9, 10.9.9.9", "203.0.113.9"},     // past further trusted proxies
		{"10.1.2.3:1234", "garbage", "10.1.2.3"},
		{"10.1.2.3:1234", "", "10.1.2.3"},
		{"[::1]:80", "2001:db8::5", "2001:db8::5"},
		{"[::ffff:192.0.2.7]:80", "", "192.0.2.7"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/auth/token", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := routes.client(r); got.String() != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

func TestTokenRequests(t *testing.T) {
	t.Parallel()
	var got []string
	routes := NewTokenRoutes(exchangeFunc(func(ctx context.Context, key string) (apikey.Token, string, error) {
		got = append(got, key)
		return apikey.Token{}, apikey.Revoked, tenantkit.Errorf(apikey.KeyRevoked, "revoked")
	}), &apikey.Throttle{}, []byte(`{"keys":[]}`), nil, nil)
	for _, c := range []struct {
		auth, body string
		status     int
		code       string
	}{
		{"Bearer k1", "", 401, apikey.KeyRevoked},
		{"bearer k2", "", 401, apikey.KeyRevoked},
		{"", `{"api_key":"k3"}`, 401, apikey.KeyRevoked},
		{"Bearer k4", `{"api_key":"k4"}`, 401, apikey.KeyRevoked},
		{"Bearer k5", `{"api_key":"other"}`, 400, tenantkit.Invalid},
		{"Basic abc", "", 400, tenantkit.Invalid},
		{"", `{"key":"k6"}`, 400, tenantkit.Invalid},
		{"", "", 400, tenantkit.Invalid},
		{"", `{"api_key":"` + strings.Repeat("x", 5000) + `"}`, 400, tenantkit.Invalid},
	} {
		r := httptest.NewRequest(http.MethodPost, "/auth/token", strings.NewReader(c.body))
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		routes.ServeToken(w, r)
		if w.Code != c.status || !strings.Contains(w.Body.String(), `"code":"`+c.code+`"`) || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%q %q: %d %s", c.auth, c.body, w.Code, w.Body)
		}
		if w.Code == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%q: 401 without WWW-Authenticate", c.auth)
		}
	}
	if strings.Join(got, ",") != "k1,k2,k3,k4" {
		t.Errorf("exchanged %v", got)
	}
	w := httptest.NewRecorder()
	routes.ServeJWKS(w, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if w.Body.String() != `{"keys":[]}` || !strings.Contains(w.Header().Get("Cache-Control"), "max-age=") {
		t.Errorf("JWKS: %s %v", w.Body, w.Header())
	}
}
