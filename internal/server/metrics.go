package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the service's Prometheus collectors on their own registry (plus Go runtime and
// process collectors).
type Metrics struct {
	registry *prometheus.Registry
	names    map[string]bool
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	billing  *prometheus.CounterVec
	// The usage fold's runs in this process (UsageFold).
	folded, foldErrors prometheus.Counter
	foldedAt           prometheus.Gauge
	// series caches the children of requests and duration by label values (seriesKey → series):
	// the label sets are few (route patterns, allowed names, error codes, statuses), and looking a
	// child up in its vector hashes and checks every label value on every request.
	series sync.Map
}

type seriesKey struct {
	route, name, code string
	status            int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// counted are the names Count accepts; any other is counted as "other".
var counted = map[string]bool{
	"stripe_event_applied": true, "stripe_event_stale": true, "stripe_event_not_current": true,
	"stripe_event_not_ours": true, "stripe_event_ignored": true, "stripe_event_duplicate": true,
	"stripe_unknown_price": true, "stripe_event_tenant_deleted": true,
}

// Queued Stripe writes by kind and outcome (internal/billing, StripeOutbox).
func init() {
	for _, kind := range []string{"cancel_subscription", "sync_seats"} {
		for _, outcome := range []string{"sent", "already_done", "skipped", "retrying", "failed"} {
			counted["stripe_write_"+kind+"_"+outcome] = true
		}
	}
}

// Count adds one to tenantkit_billing_total{what}: Stripe events by what billing did with them
// (stripe_event_applied, _stale, _not_current, _not_ours, _ignored, _duplicate, _tenant_deleted)
// and subscriptions
// billed at a price no plan is linked to (stripe_unknown_price), and queued Stripe writes by kind
// and outcome (stripe_write_<kind>_<outcome>, e.g. stripe_write_cancel_subscription_failed).
func (m *Metrics) Count(name string) {
	if !counted[name] {
		name = "other"
	}
	m.billing.WithLabelValues(name).Inc()
}

// UsageFold records one run of the usage fold: the events it added, or its failure.
func (m *Metrics) UsageFold(folded int64, err error) {
	if err != nil {
		m.foldErrors.Inc()
		return
	}
	m.folded.Add(float64(folded))
	m.foldedAt.SetToCurrentTime()
}

// MembershipReads exports the membership reads of the process and the statements that answered
// them (stats, read at each scrape): tenantkit_membership_reads_total and
// tenantkit_membership_statements_total. Their ratio is how many reads a statement carries.
func (m *Metrics) MembershipReads(stats func() (reads, statements uint64)) {
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tenantkit_membership_reads_total",
			Help: "Membership reads (checkPermission, API keys, the team actions' pre-checks) of this process.",
		}, func() float64 { r, _ := stats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tenantkit_membership_statements_total",
			Help: "Statements that answered them: concurrent reads are sent together, so under load fewer than the reads.",
		}, func() float64 { _, n := stats(); return float64(n) }),
	)
}

// NewMetrics creates the collectors and their registry. names is the allow-list of action and
// trigger names that may appear in the name label; any other name is recorded as "other".
func NewMetrics(names []string) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		names:    make(map[string]bool, len(names)),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantkit_http_requests_total",
			Help: "HTTP requests served, by route pattern, action or trigger name, application error code and status.",
		}, []string{"route", "name", "code", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tenantkit_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern and action or trigger name.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"route", "name"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantkit_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
	m.billing = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantkit_billing_total",
		Help: "Billing occurrences: Stripe events by outcome, subscriptions at a price no plan knows, queued Stripe writes by kind and outcome.",
	}, []string{"what"})
	m.folded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tenantkit_usage_folded_events_total",
		Help: "Usage events this process's fold added to billing_usage.",
	})
	m.foldErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tenantkit_usage_fold_errors_total",
		Help: "Runs of this process's usage fold that failed (the events wait for the next run).",
	})
	m.foldedAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tenantkit_usage_fold_last_success_timestamp_seconds",
		Help: "When this process's usage fold last ran without error (Unix time; 0 before the first).",
	})
	for _, n := range names {
		m.names[n] = true
	}
	m.registry.MustRegister(
		m.requests, m.duration, m.inFlight, m.billing, m.folded, m.foldErrors, m.foldedAt,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves GET /metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// record counts a request served (r as the mux saw it, with its pattern and path values):
// tenantkit_http_requests_total{route, name, code, status} and
// tenantkit_http_request_duration_seconds{route, name}. Server.logRequests calls it for every
// request and keeps tenantkit_http_requests_in_flight.
//
// route is the mux pattern that matched ("POST /actions/{name}"; "unmatched" for 404s and 405s),
// never the raw path. name is the {name} or {trigger} path value when it is in the allow-list,
// "other" when it is not, "" on routes without either. code is what the handler passed to SetCode.
func (m *Metrics) record(r *http.Request, code string, status int, took time.Duration) {
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	name := r.PathValue("name")
	if name == "" {
		name = r.PathValue("trigger")
	}
	if name != "" && !m.names[name] {
		name = "other"
	}
	key := seriesKey{route, name, code, status}
	v, ok := m.series.Load(key)
	if !ok {
		v, _ = m.series.LoadOrStore(key, series{
			requests: m.requests.WithLabelValues(route, name, code, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(route, name),
		})
	}
	c := v.(series)
	c.requests.Inc()
	c.duration.Observe(took.Seconds())
}

// requestState is what a handler reports to logRequests through the request context.
type requestState struct {
	code string
}

type requestStateKey struct{}

// SetCode reports the application error code of the request in ctx (the code label of
// tenantkit_http_requests_total). Call it from the handler's goroutine; it does nothing when ctx
// did not come through logRequests.
func SetCode(ctx context.Context, code string) {
	if st, ok := ctx.Value(requestStateKey{}).(*requestState); ok {
		st.code = code
	}
}
