package billing

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

// Meter counts tenantkit's own API calls per tenant ("api_calls") in memory and records them in
// batches, so counting costs a map increment on the request path. A batch keeps the idempotency
// keys it was given until it is recorded, so a failed flush retried later never counts twice.
// Counts not yet flushed are lost if the process dies (at most one interval's worth).
//
// Counts are keyed by the tenant's canonical id (tenantkit.ID), the spelling the store answers
// KnownTenants with: a tenant named in another spelling would otherwise be counted under a key no
// known tenant matches, and its calls dropped at the flush.
type Meter struct {
	Store    Store
	Interval time.Duration // default 1 s
	Log      zerolog.Logger
	Now      func() time.Time
	// Alerts, when set, checks the usage alerts of each batch once recorded
	// (Service.UsageAlerts); a failure is logged.
	Alerts func(ctx context.Context, events []UsageEvent) (int, error)

	flushing sync.Mutex // one flush at a time
	mu       sync.Mutex // guards counts and pending
	counts   map[tenantkit.ID]float64
	pending  []UsageEvent // formed, not yet recorded
}

// Count adds one API call for the tenant; the zero ID counts nothing.
func (m *Meter) Count(tenant tenantkit.ID) {
	if tenant == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[tenantkit.ID]float64{}
	}
	m.counts[tenant]++
}

// Flush records what was counted so far. Calls for tenants that do not exist are dropped.
func (m *Meter) Flush(ctx context.Context) error {
	m.flushing.Lock()
	defer m.flushing.Unlock()
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	m.mu.Lock()
	for tenant, n := range m.counts {
		m.pending = append(m.pending, UsageEvent{TenantID: string(tenant), Metric: "api_calls", Quantity: n,
			IdempotencyKey: "api_calls-" + uuid.NewString(), OccurredAt: now()})
	}
	m.counts = nil
	batch := m.pending
	m.mu.Unlock()
	for len(batch) > 0 {
		n := min(len(batch), MaxBatch)
		known, err := m.Store.KnownTenants(ctx, tenantsOf(batch[:n]))
		var recorded []UsageEvent
		var limited []string
		if err == nil {
			recorded = filter(batch[:n], known)
			_, limited, err = m.Store.RecordUsage(ctx, recorded)
		}
		if err != nil {
			return err // the rest stays pending with its keys
		}
		if limitedEvents := ofMetrics(recorded, limited); m.Alerts != nil && len(limitedEvents) > 0 {
			if _, err := m.Alerts(ctx, limitedEvents); err != nil {
				m.Log.Warn().Err(err).Msg("api_calls meter: usage alerts not checked; the next flush checks again")
			}
		}
		m.mu.Lock()
		m.pending = m.pending[n:]
		batch = m.pending
		m.mu.Unlock()
	}
	return nil
}

// Run flushes every Interval until ctx ends, then once more.
func (m *Meter) Run(ctx context.Context) {
	interval := m.Interval
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := m.Flush(fctx); err != nil {
				m.Log.Error().Err(err).Msg("api_calls meter: final flush failed; counts lost")
			}
			cancel()
			return
		case <-tick.C:
			if err := m.Flush(ctx); err != nil {
				m.Log.Warn().Err(err).Msg("api_calls meter: flush failed; will retry")
			}
		}
	}
}

func tenantsOf(events []UsageEvent) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.TenantID
	}
	return ids
}

func filter(events []UsageEvent, known map[string]bool) []UsageEvent {
	var out []UsageEvent
	for _, e := range events {
		if known[e.TenantID] {
			out = append(out, e)
		}
	}
	return out
}
