// Package server is tenantkit's HTTP surface: it mounts the routes of the README's "HTTP routes", logs every
// request, limits bodies and time, and shuts down gracefully. Handlers for Hasura actions, events,
// the remote schema and Stripe webhooks live in their own packages and are mounted here.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Pinger reports whether a dependency answers; /readyz calls it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Server serves tenantkit's routes on one listener.
type Server struct {
	Addr   string
	Secret string // TENANTKIT_SECRET
	DB     Pinger // for /readyz
	// Problems, when set, reports a misconfiguration an operator must fix ("" when none), e.g.
	// Hasura event triggers tenantkit's roles cannot run; /readyz answers 503 with it.
	Problems func(ctx context.Context) (string, error)
	Graph    http.Handler // the remote schema, mounted at POST /graphql
	Action   http.Handler // Hasura actions, POST /actions/{name}
	Event    http.Handler // Hasura event triggers, POST /events/{trigger}
	Metrics  *Metrics     // GET /metrics, and the request counters
	// MetricsToken (METRICS_TOKEN), when set, is the bearer token GET /metrics requires.
	MetricsToken string
	Stripe       http.Handler // Stripe webhooks, POST /webhooks/stripe (its own signature, not the Hasura secret)
	// Tokens, when set, serve POST /auth/token and GET /.well-known/jwks.json (API keys; no secret).
	Tokens *TokenRoutes
	// Export serves the export download links, GET /exports/{id} (its own signature, not the
	// Hasura secret: browsers follow the link).
	Export   http.Handler
	Log      zerolog.Logger
	server   *http.Server
	listener net.Listener
}

// Handler returns every route, wrapped in request logging.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.Stripe != nil {
		mux.Handle("POST /webhooks/stripe", s.Stripe)
	}
	if s.Tokens != nil {
		mux.HandleFunc("POST /auth/token", s.Tokens.ServeToken)
		mux.HandleFunc("GET /.well-known/jwks.json", s.Tokens.ServeJWKS)
	}
	if s.Export != nil {
		mux.Handle("GET /exports/{id}", s.Export)
	}
	for pattern, h := range map[string]http.Handler{
		"POST /graphql":          s.Graph,
		"POST /actions/{name}":   s.Action,
		"POST /events/{trigger}": s.Event,
	} {
		if h != nil {
			mux.Handle(pattern, s.fromHasura(h))
		}
	}
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.bearer(s.MetricsToken, s.Metrics.Handler()))
	}
	// logRequests also records the metrics, in the same wrapper: it hands the mux the request the
	// mux records the matched pattern on.
	return s.logRequests(mux)
}

// bearer guards a route with a bearer token (RFC 6750) when token is set: a request without
// "Authorization: Bearer <token>" gets 401 with a WWW-Authenticate challenge and reaches nothing.
// The comparison is of SHA-256 digests in constant time, so the timing reveals neither the token
// nor its length; the token is never logged.
func (s *Server) bearer(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The scheme is case-insensitive (RFC 7235 section 2.1).
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		digest := sha256.Sum256([]byte(strings.TrimLeft(got, " ")))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(digest[:], want[:]) != 1 {
			zerolog.Ctx(r.Context()).Warn().Bool("authorization_present", r.Header.Get("Authorization") != "").
				Msg("rejected: missing or wrong bearer token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="tenantkit"`)
			WriteError(w, r, http.StatusUnauthorized, "unauthorized", "missing or wrong Authorization: Bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	if err := s.DB.Ping(ctx); err != nil {
		zerolog.Ctx(r.Context()).Warn().Err(err).Msg("not ready: database")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"unavailable","database":"unreachable"}`))
		return
	}
	if s.Problems != nil {
		problem, err := s.Problems(ctx)
		if err != nil {
			zerolog.Ctx(r.Context()).Warn().Err(err).Msg("not ready: configuration check failed")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"unavailable","database":"ok","problem":"the configuration check failed"}`))
			return
		}
		if problem != "" {
			zerolog.Ctx(r.Context()).Warn().Str("problem", problem).Msg("not ready: misconfigured")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "misconfigured", "database": "ok", "problem": problem})
			return
		}
	}
	_, _ = w.Write([]byte(`{"status":"ok","database":"ok"}`))
}

// Open starts listening on Addr (":0" picks a free port; see URL).
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	s.listener = ln
	s.server = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	go func() {
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Error().Err(err).Msg("http server stopped")
		}
	}()
	return nil
}

// URL is the base URL the server listens on, e.g. "http://127.0.0.1:8081".
func (s *Server) URL() string {
	addr := s.listener.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// Close stops accepting requests and waits for those in flight until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	if s.server == nil {
		return nil
	}
	return s.server.Shutdown(ctx)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// served is what logRequests keeps of one request, in one allocation: the status written and the
// code reported (SetCode).
type served struct {
	statusRecorder
	state requestState
}

// logRequests gives each request an id (X-Request-Id when the caller sent one) and a logger in its
// context, and logs one line when it ends (aborted true when the handler panicked, as
// http.ErrAbortHandler does to cut the connection). Handlers add fields (action, tenant, user) to that logger.
// With s.Metrics set it records the request's metrics (Metrics.record). next must then be the
// *http.ServeMux itself, or pass it the same *http.Request: the mux records the pattern and path
// values on the request it is given, and a copy (r.WithContext) would hide them.
func (s *Server) logRequests(next http.Handler) http.Handler {
	m := s.Metrics
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if m != nil {
			m.inFlight.Inc()
			defer m.inFlight.Dec()
		}
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 64 {
			id = newRequestID()
		}
		log := s.Log.With().Str("request_id", id).Logger()
		ctx := log.WithContext(r.Context())
		rec := &served{statusRecorder: statusRecorder{ResponseWriter: w, status: http.StatusOK}}
		if m != nil {
			ctx = context.WithValue(ctx, requestStateKey{}, &rec.state)
		}
		w.Header()["X-Request-Id"] = []string{id}
		r = r.WithContext(ctx)
		// Deferred: a handler that cuts the connection (panic(http.ErrAbortHandler), an export
		// interrupted mid-stream) is logged and counted too, with the code it reported.
		aborted := true
		defer func() {
			took := time.Since(start)
			if m != nil {
				m.record(r, rec.state.code, rec.status, took)
			}
			l := zerolog.Ctx(ctx)
			ev := l.Info()
			switch {
			case rec.status >= 500:
				ev = l.Error()
			case aborted:
				ev = l.Warn()
			}
			if aborted {
				ev = ev.Bool("aborted", true)
			}
			ev.Str("method", r.Method).Str("route", r.URL.Path).Int("status", rec.status).
				Dur("latency", took).Msg("request")
		}()
		next.ServeHTTP(&rec.statusRecorder, r)
		aborted = false
	})
}

// newRequestID is 16 hexadecimal digits, random: an id to find a request's lines by, not a secret
// (math/rand/v2's generator, which needs no system call).
func newRequestID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}
