package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"
)

// startPprof serves Go's profiles (net/http/pprof) at /debug/pprof/ on a listener of their own at
// addr (PPROF_ADDR, a loopback address), apart from the service's routes: nothing of it is
// reachable through LISTEN_ADDR, and nothing is mounted on http.DefaultServeMux.
// It returns the server and the address it listens on.
func startPprof(addr string, log zerolog.Logger) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("pprof listener stopped")
		}
	}()
	log.Warn().Str("addr", ln.Addr().String()).Msg("PPROF_ADDR is set: Go's profiles are served at /debug/pprof/ on this address")
	return srv, ln.Addr().String(), nil
}
