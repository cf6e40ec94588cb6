package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/apikey"
)

// Exchanger is the domain's token exchange (apikey.Service.Exchange).
type Exchanger interface {
	Exchange(ctx context.Context, key string) (apikey.Token, string, error)
}

// TokenRoutes serve the API-key exchange to clients and the signing keys to Hasura:
//
//	POST /auth/token              Authorization: Bearer <key> (or {"api_key": "<key>"})
//	GET  /.well-known/jwks.json   the public keys Hasura verifies tokens with (jwk_url)
//
// They are the only routes meant to be reachable from outside (through your ingress); neither takes
// the shared secret.
type TokenRoutes struct {
	Keys     Exchanger
	Throttle *apikey.Throttle
	JWKS     []byte
	// TrustedProxies are the proxies whose X-Forwarded-For names the client: the client is the
	// right-most address of that header that is not a trusted proxy. Empty: the connection's peer.
	TrustedProxies []netip.Prefix
	exchanges      *prometheus.CounterVec
}

// NewTokenRoutes returns the routes, counting exchanges on m (nil: not counted).
func NewTokenRoutes(keys Exchanger, throttle *apikey.Throttle, jwks []byte, trusted []netip.Prefix, m *Metrics) *TokenRoutes {
	t := &TokenRoutes{Keys: keys, Throttle: throttle, JWKS: jwks, TrustedProxies: trusted}
	t.exchanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantkit_api_key_exchanges_total",
		Help: "API key exchanges at POST /auth/token, by outcome: issued, malformed, unknown, mismatch, revoked, expired, inactive, throttled, error.",
	}, []string{"outcome"})
	for _, o := range apikey.Outcomes {
		t.exchanges.WithLabelValues(o)
	}
	if m != nil {
		m.registry.MustRegister(t.exchanges)
	}
	return t
}

// maxTokenBody bounds a token request's body.
const maxTokenBody = 4 << 10

// ServeToken answers POST /auth/token. A success is 200 with an OAuth 2.0-style body (RFC 6749
// section 5.1): access_token, token_type Bearer, expires_in, plus expires_at, tenant_id,
// api_key_id and scopes; never cached. Errors have the shape of every other route's
// ({"message", "extensions": {"code"}}): 401 invalid_api_key, api_key_revoked, api_key_expired
// (with WWW-Authenticate), 403 forbidden, 400 invalid, 429 rate_limited (with Retry-After), 503
// unavailable. The key is never logged; its prefix is.
func (t *TokenRoutes) ServeToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := zerolog.Ctx(ctx)
	key, err := tokenRequestKey(w, r)
	if err != nil {
		t.count(apikey.Malformed)
		writeTokenError(w, r, err)
		return
	}
	prefix, _ := apikey.ParseKey(key)
	addr := t.client(r)
	log.UpdateContext(func(c zerolog.Context) zerolog.Context {
		return c.Str("client", addr.String()).Str("key_prefix", prefix)
	})
	if ok, wait := t.Throttle.Admit(addr, prefix); !ok {
		t.count(apikey.Throttled)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		writeTokenError(w, r, tenantkit.Errorf(apikey.RateLimited, "too many token requests: try again in %d s", int(wait/time.Second)))
		return
	}
	tok, outcome, err := t.Keys.Exchange(ctx, key)
	t.count(outcome)
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("outcome", outcome) })
	if outcome == apikey.Unknown || outcome == apikey.Mismatch {
		t.Throttle.Failed(prefix)
	}
	if err != nil {
		writeTokenError(w, r, err)
		return
	}
	log.UpdateContext(func(c zerolog.Context) zerolog.Context {
		return c.Str("tenant_id", tok.TenantID).Str("api_key_id", tok.KeyID)
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok.Value,
		"token_type":   "Bearer",
		"expires_in":   int(time.Until(tok.ExpiresAt).Round(time.Second) / time.Second),
		"expires_at":   tok.ExpiresAt.UTC().Format(time.RFC3339),
		"tenant_id":    tok.TenantID,
		"api_key_id":   tok.KeyID,
		"scopes":       tok.Scopes,
	})
}

// ServeJWKS answers GET /.well-known/jwks.json; Hasura refreshes it as Cache-Control says.
func (t *TokenRoutes) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(t.JWKS)
}

func (t *TokenRoutes) count(outcome string) {
	if t.exchanges != nil {
		t.exchanges.WithLabelValues(outcome).Inc()
	}
}

// tokenRequestKey reads the key from "Authorization: Bearer <key>" or a JSON body {"api_key"}.
// Errors: invalid (no key, two different ones, a malformed body).
func tokenRequestKey(w http.ResponseWriter, r *http.Request) (string, error) {
	var fromHeader string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", tenantkit.Errorf(tenantkit.Invalid, "Authorization must be: Bearer <API key>")
		}
		fromHeader = strings.TrimSpace(rest)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenBody))
	if err != nil {
		return "", tenantkit.Errorf(tenantkit.Invalid, "the request body is too large or unreadable")
	}
	var fromBody string
	if len(strings.TrimSpace(string(body))) > 0 {
		var in struct {
			APIKey string `json:"api_key"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return "", tenantkit.Errorf(tenantkit.Invalid, `the body must be {"api_key": "<API key>"} or empty`)
		}
		fromBody = in.APIKey
	}
	switch {
	case fromHeader == "" && fromBody == "":
		return "", tenantkit.Errorf(tenantkit.Invalid, "send the API key as Authorization: Bearer <API key>")
	case fromHeader != "" && fromBody != "" && fromHeader != fromBody:
		return "", tenantkit.Errorf(tenantkit.Invalid, "two different API keys in one request")
	case fromHeader != "":
		return fromHeader, nil
	}
	return fromBody, nil
}

// client is the address a request comes from: the connection's peer, or, when that peer is a
// trusted proxy, the right-most X-Forwarded-For address that is not.
func (t *TokenRoutes) client(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	trusted := func(a netip.Addr) bool {
		for _, p := range t.TrustedProxies {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !trusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a garbled header: the proxy is all we know
		}
		if a = a.Unmap(); !trusted(a) {
			return a
		}
	}
	return peer
}

// tokenStatus is the HTTP status of an exchange's error code.
func tokenStatus(code string) int {
	switch code {
	case apikey.InvalidKey, apikey.KeyRevoked, apikey.KeyExpired:
		return http.StatusUnauthorized
	case tenantkit.Forbidden:
		return http.StatusForbidden
	case tenantkit.Invalid:
		return http.StatusBadRequest
	case apikey.RateLimited:
		return http.StatusTooManyRequests
	case tenantkit.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeTokenError(w http.ResponseWriter, r *http.Request, err error) {
	code := tenantkit.ErrorCode(err)
	log := zerolog.Ctx(r.Context())
	switch code {
	case tenantkit.Internal:
		log.Error().Err(err).Msg("token exchange failed")
	case tenantkit.Unavailable:
		log.Warn().Err(err).Msg("token exchange unavailable")
	}
	var te *tenantkit.Error
	if !errors.As(err, &te) {
		code = tenantkit.Internal
	}
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("code", code) })
	status := tokenStatus(code)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tenantkit", error="invalid_token"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	WriteError(w, r, status, code, tenantkit.ErrorMessage(err))
}
