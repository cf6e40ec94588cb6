package actions

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/server"
)

// event is what Hasura POSTs for an event trigger.
type event struct {
	Event struct {
		Op   string `json:"op"`
		Data struct {
			Old json.RawMessage `json:"old"`
			New json.RawMessage `json:"new"`
		} `json:"data"`
		SessionVariables map[string]string `json:"session_variables"`
		TraceContext     json.RawMessage   `json:"trace_context"`
	} `json:"event"`
	ID           tenantkit.ID `json:"id"` // canonical, as every id decoded here
	CreatedAt    string       `json:"created_at"`
	DeliveryInfo struct {
		MaxRetries   int `json:"max_retries"`
		CurrentRetry int `json:"current_retry"`
	} `json:"delivery_info"`
	Trigger struct {
		Name string `json:"name"`
	} `json:"trigger"`
	Table struct {
		Schema string `json:"schema"`
		Name   string `json:"name"`
	} `json:"table"`
}

// eventLease bounds how long one delivery may hold an event before a retry may take it over; it
// must exceed the slowest handler (an SMTP send has a 30 s deadline).
const eventLease = 2 * time.Minute

// trigger is one event trigger: the table its events must come from, and its handler.
type trigger struct {
	table string
	fn    func(context.Context, *event) error
}

// triggers lists every event trigger by name.
func (h *Handler) triggers() map[string]trigger {
	return map[string]trigger{
		"invitation_email": {"public.tenant_invitations", h.invitationEmail},
		"tenant_created":   {"public.tenants", h.tenantCreated},
		"domain_join":      {"auth.users", h.domainJoin},
	}
}

// ServeEvent answers POST /events/{trigger}: 2xx only once the work is durably done (or was done
// by an earlier delivery of the same event id); any failure is non-2xx so Hasura retries. A
// concurrent duplicate delivery gets 409 and is retried later.
func (h *Handler) ServeEvent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("trigger")
	log := zerolog.Ctx(ctx)
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("trigger", name) })
	_, trigs := h.tables()
	tr, ok := trigs[name]
	if !ok {
		writeError(w, r, tenantkit.Errorf(tenantkit.NotFound, "unknown event trigger %q", name))
		return
	}
	var ev event
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.ID == "" {
		writeError(w, r, tenantkit.Errorf(tenantkit.Invalid, "malformed event payload"))
		return
	}
	if ev.Trigger.Name != name || ev.Table.Schema+"."+ev.Table.Name != tr.table {
		writeError(w, r, tenantkit.Errorf(tenantkit.Invalid, "event of trigger %q on %s.%s sent to %q", ev.Trigger.Name, ev.Table.Schema, ev.Table.Name, name))
		return
	}
	log.UpdateContext(func(c zerolog.Context) zerolog.Context {
		return c.Str("event_id", string(ev.ID)).Str("op", ev.Event.Op).Int("retry", ev.DeliveryInfo.CurrentRetry)
	})
	claimed := time.Now()
	claim, err := h.Events.ClaimEvent(ctx, string(ev.ID), name, eventLease)
	switch {
	case err != nil:
		writeEventError(w, r, err)
		return
	case claim == tenantkit.AlreadyDone:
		writeJSON(w, http.StatusOK, map[string]string{"status": "duplicate"})
		return
	case claim == tenantkit.InProgress:
		writeEventError(w, r, tenantkit.Errorf(tenantkit.Conflict, "event %s is being processed by another delivery", ev.ID))
		return
	}
	if err := tr.fn(ctx, &ev); err != nil {
		if rerr := settle(ctx, claimed, "release", func(ctx context.Context) error { return h.Events.ReleaseEvent(ctx, string(ev.ID)) }); rerr != nil {
			log.Error().Err(rerr).Msg("release event claim")
		}
		writeEventError(w, r, err)
		return
	}
	if err := settle(ctx, claimed, "finish", func(ctx context.Context) error { return h.Events.FinishEvent(ctx, string(ev.ID)) }); err != nil {
		// The work is done but not recorded yet: a retry may repeat it. Handlers are idempotent on
		// their own state (e.g. the invitation outbox), so the repeat finds nothing left to do.
		writeEventError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "processed"})
}

// settleWithin bounds, from the claim, how long settle keeps trying: well inside the lease, so
// that a late release never frees a claim that a later delivery took after the lease ran out.
const settleWithin = eventLease * 3 / 4

// settleEvery is the longest wait between two of settle's attempts: a claim is settled within
// about a second of the database's return (each attempt against a database that is down fails at
// once), where a wait of 5 s left redeliveries refused for up to 5 s more.
const settleEvery = time.Second

// settle records how a claimed delivery ended: finished, or released for the next delivery. Both
// need the database, and its absence is the usual reason a delivery fails. If it is unavailable,
// settle returns that error at once (the delivery is answered 5xx) and keeps trying in the
// background, with back-off up to settleEvery, until the database answers or settleWithin of the
// claim has passed: otherwise a database outage of a second would leave the event leased, and
// every redelivery refused with 409, for the whole lease.
func settle(ctx context.Context, claimed time.Time, what string, fn func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	err := tenantkit.RetryUnavailable(ctx, time.Now(), 0, 0, fn) // one call
	if tenantkit.ErrorCode(err) != tenantkit.Unavailable {
		return err
	}
	log := *zerolog.Ctx(ctx) // a copy: the request's logger is updated after this returns
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := tenantkit.RetryUnavailable(ctx, claimed.Add(settleWithin), 100*time.Millisecond, settleEvery, fn); err != nil {
			log.Error().Err(err).Str("settle", what).Msg("event claim not settled: it stays leased until the lease ends")
			return
		}
		log.Info().Str("settle", what).Msg("event claim settled after the database came back")
	}()
	return err
}

// writeEventError answers a failed delivery: 5xx for what a retry may fix, 4xx for the rest;
// Hasura retries both until retry_conf is spent.
func writeEventError(w http.ResponseWriter, r *http.Request, err error) {
	code := tenantkit.ErrorCode(err)
	if code == tenantkit.Unavailable || code == tenantkit.Internal {
		zerolog.Ctx(r.Context()).Error().Err(err).Str("code", code).Msg("event failed; Hasura will retry")
		server.WriteError(w, r, http.StatusServiceUnavailable, code, tenantkit.ErrorMessage(err))
		return
	}
	zerolog.Ctx(r.Context()).Warn().Err(err).Str("code", code).Msg("event refused")
	writeError(w, r, err)
}

// invitationRow is the part of a tenant_invitations row the email needs.
type invitationRow struct {
	ID        tenantkit.ID `json:"id"`
	TenantID  tenantkit.ID `json:"tenant_id"`
	Status    string       `json:"status"`
	TokenHash string       `json:"token_hash"` // bytea as Hasura sends it: "\\x" + hex
}

// invitationEmail sends the link of a new or re-sent invitation.
func (h *Handler) invitationEmail(ctx context.Context, ev *event) error {
	var newRow invitationRow
	var oldRow struct {
		TokenHash string `json:"token_hash"` // all the old row is read for: its ids are not used
	}
	if err := json.Unmarshal(ev.Event.Data.New, &newRow); err != nil || newRow.ID == "" || newRow.TenantID == "" {
		return tenantkit.Errorf(tenantkit.Invalid, "event has no new invitation row")
	}
	if len(ev.Event.Data.Old) > 0 && string(ev.Event.Data.Old) != "null" {
		_ = json.Unmarshal(ev.Event.Data.Old, &oldRow)
	}
	if newRow.Status != "pending" || (ev.Event.Op == "UPDATE" && oldRow.TokenHash == newRow.TokenHash) {
		return nil // not a new token: nothing to send
	}
	hash, err := hex.DecodeString(strings.TrimPrefix(newRow.TokenHash, `\x`))
	if err != nil || len(hash) != 32 {
		return tenantkit.Errorf(tenantkit.Invalid, "event has a malformed token_hash")
	}
	zerolog.Ctx(ctx).UpdateContext(func(c zerolog.Context) zerolog.Context {
		return c.Str("tenant_id", string(newRow.TenantID)).Str("invitation_id", string(newRow.ID))
	})
	return h.Team.SendInvitationEmail(ctx, string(newRow.TenantID), string(newRow.ID), hash)
}

// tenantCreated gives a new tenant its Stripe customer (a no-op while billing is off).
func (h *Handler) tenantCreated(ctx context.Context, ev *event) error {
	var row struct {
		ID tenantkit.ID `json:"id"`
	}
	if err := json.Unmarshal(ev.Event.Data.New, &row); err != nil || row.ID == "" {
		return tenantkit.Errorf(tenantkit.Invalid, "event has no new tenant row")
	}
	zerolog.Ctx(ctx).UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("tenant_id", string(row.ID)) })
	_, err := h.Billing.EnsureCustomer(ctx, string(row.ID))
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return nil // the tenant was deleted before the event arrived: nothing to bill
	}
	return err
}
