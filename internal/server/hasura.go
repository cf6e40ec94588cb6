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
		body, err := readAll(http.MaxBytesReader(w, r.Body, maxHasuraBody), r.ContentLength)
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
		r.Body = &readBody{Reader: bytes.NewReader(body), body: body}
		vars := map[string]string{}
		for name, values := range r.Header {
			// Only X-Hasura-* names are lower-cased (an allocation each); the others are skipped.
			if hasHasuraPrefix(name) && len(values) > 0 {
				vars[strings.ToLower(name)] = values[0]
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

const hasuraPrefix = "x-hasura-"

// hasHasuraPrefix reports strings.HasPrefix(strings.ToLower(name), hasuraPrefix) without lower-casing
// name: only ASCII letters fold to the prefix's (no other character lower-cases to x, h, a, s, u
// or r).
func hasHasuraPrefix(name string) bool {
	if len(name) < len(hasuraPrefix) {
		return false
	}
	for i := range len(hasuraPrefix) {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != hasuraPrefix[i] {
			return false
		}
	}
	return true
}

// readAll is io.ReadAll with room for size bytes (a request's Content-Length; -1 when unknown)
// from the start.
func readAll(r io.Reader, size int64) ([]byte, error) {
	if size < 0 || size > maxHasuraBody {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, size+1) // +1: the read that meets the end needs no growth
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
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

// readBody is a request body fromHasura read in full: a reader over it, and the bytes themselves
// for RequestBody.
type readBody struct {
	*bytes.Reader
	body []byte
}

func (*readBody) Close() error { return nil }

// RequestBody returns the whole body of a request that came through the shared-secret guard,
// which read it already (ok false for any other request: read r.Body). The bytes are shared: do
// not modify them.
func RequestBody(r *http.Request) (body []byte, ok bool) {
	b, ok := r.Body.(*readBody)
	if !ok {
		return nil, false
	}
	return b.body, true
}
