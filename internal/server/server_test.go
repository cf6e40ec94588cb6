package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// syncBuffer is a log sink the server's goroutines may write to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const metricsToken = "scrape-0123456789abcdef"

func TestMetricsToken(t *testing.T) {
	t.Parallel()
	// setup serves every route as production does, with token as METRICS_TOKEN; log receives the
	// request logs.
	setup := func(t *testing.T, token string) (ts *httptest.Server, log *syncBuffer) {
		t.Helper()
		log = &syncBuffer{}
		s := &Server{Metrics: NewMetrics(nil), MetricsToken: token, Log: zerolog.New(log)}
		ts = httptest.NewServer(s.Handler())
		t.Cleanup(ts.Close)
		return ts, log
	}
	get := func(t *testing.T, ts *httptest.Server, authorization string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, string(body)
	}

	t.Run("without a token configured anyone may scrape", func(t *testing.T) {
		t.Parallel()
		ts, _ := setup(t, "")
		res, body := get(t, ts, "")
		if res.StatusCode != http.StatusOK || !strings.Contains(body, "tenantkit_http_requests_in_flight") {
			t.Errorf("GET /metrics = %d %.200s", res.StatusCode, body)
		}
	})

	t.Run("the right bearer token scrapes", func(t *testing.T) {
		t.Parallel()
		ts, _ := setup(t, metricsToken)
		for _, auth := range []string{"Bearer " + metricsToken, "bearer " + metricsToken, "BEARER  " + metricsToken} {
			res, body := get(t, ts, auth)
			if res.StatusCode != http.StatusOK || !strings.Contains(body, "tenantkit_http_requests_in_flight") {
				t.Errorf("Authorization %q: %d %.200s", auth, res.StatusCode, body)
			}
		}
	})

	t.Run("anything else gets 401 with a Bearer challenge and no metrics", func(t *testing.T) {
		t.Parallel()
		ts, log := setup(t, metricsToken)
		for _, auth := range []string{
			"",
			"Bearer",
			"Bearer ",
			"Bearer wrong-token-0123456789",
			"Bearer " + metricsToken + "x",
			"Bearer " + metricsToken[:len(metricsToken)-1],
			"Bearer " + strings.ToUpper(metricsToken),
			"Basic " + metricsToken,
			metricsToken,
			"Token " + metricsToken,
			"Bearer" + metricsToken,
		} {
			res, body := get(t, ts, auth)
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("Authorization %q: %d, want 401", auth, res.StatusCode)
			}
			if ch := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
				t.Errorf("Authorization %q: WWW-Authenticate %q, want a Bearer challenge", auth, ch)
			}
			if strings.Contains(body, "tenantkit_") {
				t.Errorf("Authorization %q: the metrics were served: %.200s", auth, body)
			}
		}
		if strings.Contains(log.String(), metricsToken[:12]) {
			t.Errorf("the token is in the log:\n%s", log)
		}
	})

	t.Run("the token is never logged", func(t *testing.T) {
		t.Parallel()
		ts, log := setup(t, metricsToken)
		get(t, ts, "Bearer "+metricsToken)
		get(t, ts, "Bearer "+metricsToken+"-close-but-wrong")
		if !strings.Contains(log.String(), `"route":"/metrics"`) {
			t.Fatalf("no request logged:\n%s", log)
		}
		if strings.Contains(log.String(), metricsToken[:12]) {
			t.Errorf("the token is in the log:\n%s", log)
		}
	})

	t.Run("other routes need no token", func(t *testing.T) {
		t.Parallel()
		ts, _ := setup(t, metricsToken)
		res, err := ts.Client().Get(ts.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz = %d", res.StatusCode)
		}
	})
}
