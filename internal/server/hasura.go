package server

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

// SecretHeader is the header Hasura sends on every call to tenantkit (configured in the metadata
// from an environment variable); its value must equal TENANTKIT_SECRET.
const SecretHeader = "X-Tenantkit-Secret"

// maxHasuraBody bounds what Hasura may send in one request; a larger body gets 413 (code invalid).
const maxHasuraBody = 1 << 20

// fromHasura guards a route Hasura calls: without the shared secret it answers 401 and does
// nothing. Behind the secret, the X-Hasura-* headers (how Hasura forwards the session to a remote
// schema) become the request's session; action and event handlers read theirs from the payload.
func (s *Server) fromHasura(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get(SecretHeader)
		if s.Secret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.Secret)) != 1 {
			zerolog.Ctx(r.Context()).Warn().Bool("secret_present", got != "").Msg("rejected: bad shared secret")
			WriteError(w, r, http.StatusUnauthorized, "unauthorized", "missing or wrong "+SecretHeader)
			return
		}
		// The whole body, read here so that the limit holds for every route alike: a larger body is
		// refused before any handler runs (a JSON decoder would otherwise stop at the first value
		// and gqlgen would answer 200).
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHasuraBody))
		if err != nil {
			status, msg := http.StatusBadRequest, "could not read the request body"
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				status, msg = http.StatusRequestEntityTooLarge, "request body larger than 1 MiB"
			}
			zerolog.Ctx(r.Context()).Warn().Err(err).Msg("rejected: request body")
			WriteError(w, r, status, tenantkit.Invalid, msg)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		vars := map[string]string{}
		for name, values := range r.Header {
			if n := strings.ToLower(name); strings.HasPrefix(n, "x-hasura-") && len(values) > 0 {
				vars[n] = values[0]
			}
		}
		session := tenantkit.NewSession(vars)
		if session.UserID() != "" {
			zerolog.Ctx(r.Context()).UpdateContext(func(c zerolog.Context) zerolog.Context {
				return c.Str("user_id", session.UserID())
			})
		}
		next.ServeHTTP(w, r.WithContext(tenantkit.WithSession(r.Context(), session)))
	})
}

// WriteError is the one writer of tenantkit's error body, the shape Hasura expects from an action
// or event webhook and passes on to the client: {"message": …, "extensions": {"code": …}}. It also
// records code as the request's code label on /metrics.
func WriteError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	SetCode(r.Context(), code)
	writeJSON(w, status, map[string]any{"message": message, "extensions": map[string]string{"code": code}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
