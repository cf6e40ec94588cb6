package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
)

// wrappers are the ways to record the metrics: Server.Handler's wrapper, which records them
// together with the request log.
var wrappers = map[string]func(m *Metrics, mux http.Handler) http.Handler{
	"logRequests": func(m *Metrics, mux http.Handler) http.Handler {
		return (&Server{Metrics: m, Log: zerolog.Nop()}).logRequests(mux)
	},
}

// newMetricsServer serves a mux wired as in production: routes with {name} and {trigger}, and GET
// /metrics, all behind wrap. GET /slow blocks until release is closed.
func newMetricsServer(t *testing.T, wrap func(*Metrics, http.Handler) http.Handler) (ts *httptest.Server, started, release chan struct{}) {
	t.Helper()
	m := NewMetrics([]string{"createTenant", "invitation_email"})
	started, release = make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /actions/{name}", func(w http.ResponseWriter, r *http.Request) {
		if code := r.Header.Get("X-Test-Code"); code != "" {
			SetCode(r.Context(), code)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte("{}"))
	})
	mux.HandleFunc("POST /events/{trigger}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	mux.Handle("GET /metrics", m.Handler())
	ts = httptest.NewServer(wrap(m, mux))
	t.Cleanup(ts.Close)
	return ts, started, release
}

func do(t *testing.T, ts *httptest.Server, method, path string, header ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func scrape(t *testing.T, ts *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := ts.Client().Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// find returns the metric of the family whose labels are exactly labels, or nil.
func find(families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

func counter(families map[string]*dto.MetricFamily, labels map[string]string) float64 {
	return find(families, "tenantkit_http_requests_total", labels).GetCounter().GetValue()
}

func TestMetricsLabels(t *testing.T) {
	for name, wrap := range wrappers {
		t.Run(name, func(t *testing.T) { testMetricsLabels(t, wrap) })
	}
}

func testMetricsLabels(t *testing.T, wrap func(*Metrics, http.Handler) http.Handler) {
	ts, _, _ := newMetricsServer(t, wrap)
	do(t, ts, "POST", "/actions/createTenant")
	do(t, ts, "POST", "/actions/createTenant")
	do(t, ts, "POST", "/actions/createTenant", "X-Test-Code", "forbidden")
	do(t, ts, "POST", "/actions/dropAllTables")
	do(t, ts, "POST", "/events/invitation_email")
	do(t, ts, "POST", "/events/garbage-trigger-123")
	if got := do(t, ts, "GET", "/no/such/path-42"); got != http.StatusNotFound {
		t.Fatalf("GET /no/such/path-42: %d", got)
	}
	if got := do(t, ts, "GET", "/actions/createTenant"); got != http.StatusMethodNotAllowed {
		t.Fatalf("GET /actions/createTenant: %d", got)
	}
	f := scrape(t, ts)

	action := "POST /actions/{name}"
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"route": action, "name": "createTenant", "code": "", "status": "200"}, 2},
		{map[string]string{"route": action, "name": "createTenant", "code": "forbidden", "status": "403"}, 1},
		{map[string]string{"route": action, "name": "other", "code": "", "status": "200"}, 1},
		{map[string]string{"route": "POST /events/{trigger}", "name": "invitation_email", "code": "", "status": "200"}, 1},
		{map[string]string{"route": "POST /events/{trigger}", "name": "other", "code": "", "status": "200"}, 1},
		{map[string]string{"route": "unmatched", "name": "", "code": "", "status": "404"}, 1},
		{map[string]string{"route": "unmatched", "name": "", "code": "", "status": "405"}, 1},
	} {
		if got := counter(f, c.labels); got != c.want {
			t.Errorf("requests_total%v = %v, want %v", c.labels, got, c.want)
		}
	}

	// The histogram counts the same requests as the counter, per route and name.
	for _, c := range []struct {
		route, name string
		want        uint64
	}{
		{action, "createTenant", 3},
		{action, "other", 1},
		{"unmatched", "", 2},
	} {
		h := find(f, "tenantkit_http_request_duration_seconds", map[string]string{"route": c.route, "name": c.name}).GetHistogram()
		if h.GetSampleCount() != c.want {
			t.Errorf("duration{%s, %q} count = %d, want %d", c.route, c.name, h.GetSampleCount(), c.want)
		}
		if len(h.GetBucket()) == 0 || h.GetBucket()[0].GetUpperBound() != 0.0005 {
			t.Errorf("duration{%s, %q} buckets = %v, want from 0.0005", c.route, c.name, h.GetBucket())
		}
	}

	// No raw path and no unlisted name becomes a label value.
	for name, fam := range f {
		if !strings.HasPrefix(name, "tenantkit_") {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if strings.HasPrefix(v, "/") || strings.Contains(v, "/no/such") || strings.Contains(v, "dropAllTables") || strings.Contains(v, "garbage") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), v)
				}
			}
		}
	}
	if f["go_goroutines"] == nil || f["process_cpu_seconds_total"] == nil {
		t.Error("Go runtime or process collectors missing")
	}
}

func TestMetricsInFlight(t *testing.T) {
	for name, wrap := range wrappers {
		t.Run(name, func(t *testing.T) { testMetricsInFlight(t, wrap) })
	}
}

func testMetricsInFlight(t *testing.T, wrap func(*Metrics, http.Handler) http.Handler) {
	ts, started, release := newMetricsServer(t, wrap)
	inFlight := func() float64 {
		return find(scrape(t, ts), "tenantkit_http_requests_in_flight", map[string]string{}).GetGauge().GetValue()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := ts.Client().Get(ts.URL + "/slow")
		if err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-started
	// The scrape is itself in flight.
	if got := inFlight(); got != 2 {
		t.Errorf("in flight during /slow = %v, want 2", got)
	}
	close(release)
	<-done
	if got := inFlight(); got != 1 {
		t.Errorf("in flight after /slow = %v, want 1 (the scrape)", got)
	}
	if got := counter(scrape(t, ts), map[string]string{"route": "GET /slow", "name": "", "code": "", "status": "200"}); got != 1 {
		t.Errorf("requests_total{GET /slow} = %v, want 1", got)
	}
}

type testKey struct{}

// SetCode reaches the request's counter through contexts derived from the request's (handlers
// add deadlines), and a call outside the middleware changes no counter.
func TestSetCodeThroughDerivedContexts(t *testing.T) {
	for name, wrap := range wrappers {
		t.Run(name, func(t *testing.T) { testSetCodeThroughDerivedContexts(t, wrap) })
	}
}

func testSetCodeThroughDerivedContexts(t *testing.T, wrap func(*Metrics, http.Handler) http.Handler) {
	m := NewMetrics([]string{"createTenant"})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /actions/{name}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		SetCode(context.WithValue(ctx, testKey{}, 1), "conflict")
		w.WriteHeader(http.StatusConflict)
	})
	mux.Handle("GET /metrics", m.Handler())
	ts := httptest.NewServer(wrap(m, mux))
	t.Cleanup(ts.Close)
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetCode(r.Context(), "internal")
	}))
	t.Cleanup(outside.Close)

	do(t, ts, "POST", "/actions/createTenant")
	if got := do(t, outside, "POST", "/actions/createTenant"); got != http.StatusOK {
		t.Fatalf("outside the middleware: %d", got)
	}
	f := scrape(t, ts)
	action := "POST /actions/{name}"
	if got := counter(f, map[string]string{"route": action, "name": "createTenant", "code": "conflict", "status": "409"}); got != 1 {
		t.Errorf("requests_total{code=conflict} = %v, want 1", got)
	}
	total := 0.0
	for _, m := range f["tenantkit_http_requests_total"].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	if total != 1 {
		t.Errorf("requests_total over all labels = %v, want 1 (the call outside the middleware counts nothing)", total)
	}
}

// TestAbortedRequestRecorded: a handler that cuts the connection (panic(http.ErrAbortHandler), as
// an export interrupted mid-stream does) still gets its request line and its metrics, with the
// code it reported (SetCode) before aborting.
func TestAbortedRequestRecorded(t *testing.T) {
	m := NewMetrics(nil)
	sink := &syncBuffer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /abort", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("half"))
		SetCode(r.Context(), "cut_short")
		panic(http.ErrAbortHandler)
	})
	mux.Handle("GET /metrics", m.Handler())
	ts := httptest.NewServer((&Server{Metrics: m, Log: zerolog.New(sink)}).logRequests(mux))
	t.Cleanup(ts.Close)
	if res, err := ts.Client().Get(ts.URL + "/abort"); err == nil {
		_, err = io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err == nil {
			t.Error("an aborted answer read as whole")
		}
	}
	log := requestLogged(t, sink)
	if !strings.Contains(log, `"message":"request"`) || !strings.Contains(log, `"route":"/abort"`) || !strings.Contains(log, `"aborted":true`) {
		t.Errorf("request log of an aborted request: %s", log)
	}
	families := scrape(t, ts)
	if n := counter(families, map[string]string{"route": "GET /abort", "name": "", "code": "cut_short", "status": "200"}); n != 1 {
		t.Errorf("aborted request counted %v times with its code", n)
	}
	if g := families["tenantkit_http_requests_in_flight"].GetMetric()[0].GetGauge().GetValue(); g != 1 { // the scrape itself
		t.Errorf("in flight after the aborted request: %v", g)
	}
}

// TestMembershipReadsMetrics: the membership counters are read from the database layer at each
// scrape.
func TestMembershipReadsMetrics(t *testing.T) {
	m := NewMetrics(nil)
	var reads, statements uint64 = 10, 3
	m.MembershipReads(func() (uint64, uint64) { return reads, statements })
	ts := httptest.NewServer(m.Handler())
	t.Cleanup(ts.Close)
	for _, want := range [][2]uint64{{10, 3}, {25, 4}} {
		reads, statements = want[0], want[1]
		families := scrape(t, ts)
		r := find(families, "tenantkit_membership_reads_total", map[string]string{}).GetCounter().GetValue()
		n := find(families, "tenantkit_membership_statements_total", map[string]string{}).GetCounter().GetValue()
		if r != float64(want[0]) || n != float64(want[1]) {
			t.Errorf("scraped %v reads, %v statements; want %v, %v", r, n, want[0], want[1])
		}
	}
}
