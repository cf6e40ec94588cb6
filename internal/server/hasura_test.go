package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

var hasuraNames = []string{
	"X-Hasura-Role", "x-hasura-user-id", "X-HASURA-ORG", "X-Hasura-", "X-Hasura", "x-hasur", "", "X-Tenantkit-Secret",
	"Content-Type", "X-Hasura_Role", "Y-Hasura-Role", "X-Ha\u017fura-Role", "X-Ha\u212aura-Role", "\u212a-Hasura-Role",
	"X-H\u0130sura-Role", "X-Hasura-R\u00f6le", "X-Hasura-\xff", "x-hasura-" + strings.Repeat("a", 300),
}

// TestHasuraPrefix: the header names taken as session variables are those whose lower-case form
// starts with x-hasura-, as before the lower-casing was saved.
func TestHasuraPrefix(t *testing.T) {
	t.Parallel()
	for _, name := range hasuraNames {
		checkHasuraPrefix(t, name)
	}
}

func FuzzHasuraPrefix(f *testing.F) {
	for _, name := range hasuraNames {
		f.Add(name)
	}
	f.Fuzz(checkHasuraPrefix)
}

func checkHasuraPrefix(t *testing.T, name string) {
	if got, want := hasHasuraPrefix(name), strings.HasPrefix(strings.ToLower(name), hasuraPrefix); got != want {
		t.Fatalf("hasHasuraPrefix(%q) = %t, want %t", name, got, want)
	}
}

// TestReadAll: readAll reads what io.ReadAll reads, errors included, whatever the Content-Length
// says (right, too small, too large, unknown) and over the body limit.
func TestReadAll(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 511, 512, 513, 4096, maxHasuraBody, maxHasuraBody + 1} {
		body := bytes.Repeat([]byte("x"), n)
		for _, size := range []int64{int64(n), -1, 0, int64(n) / 2, int64(n) + 10, maxHasuraBody + 5} {
			for name, reader := range map[string]func() io.Reader{
				"whole":    func() io.Reader { return bytes.NewReader(body) },
				"bytewise": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(body)) },
				"failing":  func() io.Reader { return io.MultiReader(bytes.NewReader(body), iotest.ErrReader(errors.New("boom"))) },
			} {
				limited := func() io.Reader {
					return http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(reader()), maxHasuraBody)
				}
				want, wantErr := io.ReadAll(limited())
				got, gotErr := readAll(limited(), size)
				if !bytes.Equal(got, want) || (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
					t.Fatalf("%d bytes, %s, size %d: %d bytes (%v), io.ReadAll %d bytes (%v)", n, name, size, len(got), gotErr, len(want), wantErr)
				}
			}
		}
	}
}

// TestRequestIDs: a request without X-Request-Id gets 16 hexadecimal digits, another each time; one
// with it keeps it (up to 64 characters).
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	h := (&Server{Metrics: NewMetrics(nil)}).Handler()
	id := func(sent string) string {
		r := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		if sent != "" {
			r.Header.Set("X-Request-Id", sent)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Header().Get("X-Request-Id")
	}
	seen := map[string]bool{}
	for range 1000 {
		got := id("")
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(got) || seen[got] {
			t.Fatalf("request id %q: not 16 hex digits, or seen before", got)
		}
		seen[got] = true
	}
	if got := id("abc-123"); got != "abc-123" {
		t.Errorf("sent id: %q", got)
	}
	if got := id(strings.Repeat("a", 65)); len(got) != 16 {
		t.Errorf("65-character id kept: %q", got)
	}
}
