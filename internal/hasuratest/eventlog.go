package hasuratest

// Hasura's event processor, for the event_log that InstallEventCatalog and InstallEventTriggers
// fill. Sources (hasura/graphql-engine):
//
//   - server/src-lib/Hasura/Backends/Postgres/DDL/EventTrigger.hs @
//     3f773fa686d9c2fd78af43c9a8c90cd594f4a3ee: fetchEvents (the claim below, word for word but
//     for the schema), insertInvocation (every attempt, successful or not, adds an
//     event_invocation_logs row and increments tries), setSuccessTx, setErrorTx, setRetryTx,
//     unlockEventsTx;
//   - server/src-lib/Hasura/Eventing/EventTrigger.hs (current master: processEventQueue,
//     processEvent, createEventPayload, processSuccess, processError, retryOrSetError,
//     mkInvocation);
//   - server/src-lib/Hasura/Eventing/HTTP.hs (current master: anyBodyParser — 2xx is success —,
//     prepareHeaders, getRetryAfterHeaderFromResp, parseRetryHeaderValue) and
//     server/src-lib/Hasura/HTTP.hs addDefaultHeaders;
//   - server/src-lib/Hasura/RQL/Types/Eventing.hs @ 0cd894231c82a7a215de73cc520812352d22938b
//     (the JSON of invocation requests and responses, invocation version "2").
//
// Not emulated: request and response transforms (events of such triggers are never claimed, as
// if their trigger were unknown), Hasura's trace headers, concurrent delivery within a batch
// (events of a batch are posted one after the other), maintenance mode, the cleanup of old
// events (hdb_event_log_cleanups), and archived events (nothing here archives).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// eventFetchBatchSize is HASURA_GRAPHQL_EVENTS_FETCH_BATCH_SIZE's default.
const eventFetchBatchSize = 100

// eventInvocationVersion is Hasura's invocationVersionET.
const eventInvocationVersion = "2"

// EventDelivery is what became of an event after one delivery attempt.
type EventDelivery string

const (
	// EventDelivered: the webhook answered 2xx; event_log.delivered is true.
	EventDelivered EventDelivery = "delivered"
	// EventRetrying: the attempt failed and next_retry_at is set; the event is due again then.
	EventRetrying EventDelivery = "retrying"
	// EventFailed: the attempt failed and the retries are spent; event_log.error is true.
	EventFailed EventDelivery = "failed"
)

// Delivered reports one event DeliverEvents handled.
type Delivered struct {
	EventID string
	Trigger string
	Schema  string // of the table the event is about
	Table   string
	Op      string // INSERT, UPDATE, DELETE or MANUAL
	// Try is the delivery_info.current_retry sent: the number of earlier attempts.
	Try int
	// Status is the webhook's HTTP status, 0 when there was no answer (connection error,
	// timeout) or no attempt.
	Status int
	Result EventDelivery
	// NextRetryAt is when the event is due again (EventRetrying only).
	NextRetryAt time.Time
	// Body is the payload posted; nil when nothing was posted.
	Body []byte
	// Err is why the attempt failed without an HTTP answer, or why none was made (the event's
	// trigger is not on its table in the metadata: retried in 60 seconds, as Hasura does). From
	// RunEventDelivery, a Delivered with only Err set reports a failure to claim or record.
	Err error
}

// eventTarget is an event trigger with its webhook and headers resolved.
type eventTarget struct {
	et      *EventTrigger
	url     string
	headers [][2]string  // as sent
	logged  []headerConf // as event_invocation_logs.request.headers records them
}

type targetKey struct{ schema, table, trigger string }

// headerConf is Hasura's HeaderConf as JSON: {"name","value"} or {"name","value_from_env"}.
type headerConf struct {
	Name         string  `json:"name"`
	Value        *string `json:"value,omitempty"`
	ValueFromEnv *string `json:"value_from_env,omitempty"`
}

// eventTargets resolves every event trigger that DeliverEvents serves.
func (c *Client) eventTargets() (map[targetKey]*eventTarget, []string, error) {
	targets := map[targetKey]*eventTarget{}
	var names []string
	for _, src := range c.Meta.Sources {
		for _, tbl := range src.Tables {
			for _, et := range tbl.EventTriggers {
				if et.Transformed {
					continue
				}
				t, err := c.eventTarget(et)
				if err != nil {
					return nil, nil, fmt.Errorf("hasuratest: event trigger %s: %w", et.Name, err)
				}
				targets[targetKey{et.Schema, et.Table, et.Name}] = t
				if !slices.Contains(names, et.Name) {
					names = append(names, et.Name)
				}
			}
		}
	}
	return targets, names, nil
}

func (c *Client) eventTarget(et *EventTrigger) (*eventTarget, error) {
	t := &eventTarget{et: et}
	if et.WebhookFromEnv != "" {
		v, ok := c.env(et.WebhookFromEnv)
		if !ok {
			return nil, fmt.Errorf("webhook_from_env: environment variable %q not set", et.WebhookFromEnv)
		}
		t.url = v
	} else {
		u, err := c.renderTemplate(et.Webhook)
		if err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		t.url = u
	}
	conf, err := c.headerList(et.Headers)
	if err != nil {
		return nil, err
	}
	// addDefaultHeaders: Content-Type and User-Agent first, configured ones of those names dropped
	// (header names compare case-insensitively).
	t.headers = [][2]string{{"Content-Type", "application/json"}, {"User-Agent", UserAgent}}
	for _, h := range conf {
		if !strings.EqualFold(h[0], "Content-Type") && !strings.EqualFold(h[0], "User-Agent") {
			t.headers = append(t.headers, h)
		}
	}
	// prepareHeaders/decodeHeader: a sent header whose name is exactly a configured one is logged
	// as configured (so value_from_env logs the variable's name, not the secret).
	for _, h := range t.headers {
		logged := headerConf{Name: h[0], Value: &h[1]}
		for _, hc := range et.Headers {
			if hc.Name == h[0] {
				logged = headerConf{Name: hc.Name}
				if hc.ValueFromEnv != "" {
					logged.ValueFromEnv = &hc.ValueFromEnv
				} else {
					logged.Value = &hc.Value
				}
			}
		}
		t.logged = append(t.logged, logged)
	}
	return t, nil
}

// claimedEvent is a row fetchEvents returned.
type claimedEvent struct {
	id, schema, table, trigger string
	payload                    []byte
	tries                      int
	createdAt                  time.Time
}

// DeliverEvents does one round of Hasura's event processor on the event catalog in schema: it
// claims up to 100 due events of the metadata's triggers exactly as fetchEvents does (undelivered,
// not in error, not archived, unlocked or locked more than 30 minutes ago, next_retry_at unset or
// past; ordered by locked, next_retry_at, created_at; FOR UPDATE SKIP LOCKED; locked set to now),
// so that concurrent callers never claim the same event, and delivers each in turn.
//
// Each delivery POSTs Hasura's payload {"created_at","delivery_info":{"current_retry":tries,
// "max_retries":num_retries},"event":<the payload insert_event_log wrote>,"id","table":{"name",
// "schema"},"trigger":{"name"}} (keys sorted and no HTML escaping, as aeson writes it;
// created_at as CreatedAtFormat) to the trigger's webhook with Content-Type, User-Agent and the
// configured headers, within retry_conf.timeout_sec. Then, in one statement, it records an
// event_invocation_logs row, increments tries and unlocks the event: a 2xx answer marks it
// delivered; otherwise, when tries before this attempt had reached num_retries and the answer
// has no Retry-After of a positive number of seconds, it sets error; else next_retry_at becomes
// now plus Retry-After's seconds, or interval_sec without one (retryOrSetError: so a webhook
// that keeps sending Retry-After is retried forever).
//
// Webhook URLs and header values come from the Client's Env; a trigger whose variables are
// missing (Hasura would hold the metadata inconsistent) is an error before anything is claimed.
// When ctx ends, the events claimed but not yet recorded are unlocked (unlockEventsTx) and the
// results so far are returned with ctx's error. db should be a pool or a connection: in a
// transaction the claim's locks last until the caller commits.
func (c *Client) DeliverEvents(ctx context.Context, db Querier, schema string) ([]Delivered, error) {
	targets, names, err := c.eventTargets()
	if err != nil || len(names) == 0 {
		return nil, err
	}
	s := schemaSQL(schema)
	claimed, err := claimEvents(ctx, db, s, names)
	if err != nil {
		return nil, err
	}
	var out []Delivered
	for i, ev := range claimed {
		if ctx.Err() != nil {
			return out, errors.Join(ctx.Err(), unlockEvents(ctx, db, s, claimed[i:]))
		}
		d, err := c.deliverEvent(ctx, db, s, targets, ev)
		if err != nil {
			return out, errors.Join(err, unlockEvents(ctx, db, s, claimed[i:]))
		}
		out = append(out, d)
	}
	return out, nil
}

func claimEvents(ctx context.Context, db Querier, s string, triggers []string) ([]claimedEvent, error) {
	rows, err := db.Query(ctx, `
      UPDATE `+s+`.event_log
      SET locked = NOW()
      WHERE id IN ( SELECT l.id
                    FROM `+s+`.event_log l
                    WHERE l.delivered = 'f' and l.error = 'f'
                          and (l.locked IS NULL or l.locked < (NOW() - interval '30 minute'))
                          and (l.next_retry_at is NULL or l.next_retry_at <= now())
                          and l.archived = 'f'
                          and l.trigger_name = ANY($2)
                    ORDER BY locked NULLS FIRST, next_retry_at NULLS FIRST, created_at
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED )
      RETURNING id, schema_name, table_name, trigger_name, payload::text, tries, created_at`,
		eventFetchBatchSize, triggers)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: claiming events: %w", err)
	}
	var out []claimedEvent
	var e claimedEvent
	var payload string
	if _, err := pgx.ForEachRow(rows, []any{&e.id, &e.schema, &e.table, &e.trigger, &payload, &e.tries, &e.createdAt}, func() error {
		e.payload = []byte(payload)
		out = append(out, e)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasuratest: claiming events: %w", err)
	}
	// RETURNING has no order; deliver in the order they were claimed by.
	slices.SortStableFunc(out, func(a, b claimedEvent) int {
		if c := a.createdAt.Compare(b.createdAt); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return out, nil
}

// unlockEvents releases claimed events that were not recorded, even when ctx has ended.
func unlockEvents(ctx context.Context, db Querier, s string, evs []claimedEvent) error {
	if len(evs) == 0 {
		return nil
	}
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.id
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := db.Exec(ctx, `UPDATE `+s+`.event_log SET locked = NULL WHERE id = ANY($1::text[]) AND locked IS NOT NULL`, ids)
	if err != nil {
		return fmt.Errorf("hasuratest: unlocking events: %w", err)
	}
	return nil
}

// eventBody is Hasura's EventPayload, fields in aeson's (sorted) order.
type eventBody struct {
	CreatedAt    string `json:"created_at"`
	DeliveryInfo struct {
		CurrentRetry int `json:"current_retry"`
		MaxRetries   int `json:"max_retries"`
	} `json:"delivery_info"`
	Event any    `json:"event"`
	ID    string `json:"id"`
	Table struct {
		Name   string `json:"name"`
		Schema string `json:"schema"`
	} `json:"table"`
	Trigger struct {
		Name string `json:"name"`
	} `json:"trigger"`
}

// encodeJSON encodes like aeson: object keys sorted, no HTML escaping, no trailing newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// deliverEvent posts one claimed event and records the outcome. An error means the outcome
// could not be recorded (or ctx ended before it was): the caller unlocks the event.
func (c *Client) deliverEvent(ctx context.Context, db Querier, s string, targets map[targetKey]*eventTarget, ev claimedEvent) (Delivered, error) {
	d := Delivered{EventID: ev.id, Trigger: ev.trigger, Schema: ev.schema, Table: ev.table, Try: ev.tries}
	var event map[string]any
	dec := json.NewDecoder(bytes.NewReader(ev.payload))
	dec.UseNumber()
	if err := dec.Decode(&event); err != nil {
		return d, fmt.Errorf("hasuratest: event %s: payload: %w", ev.id, err)
	}
	d.Op, _ = event["op"].(string)

	t := targets[targetKey{ev.schema, ev.table, ev.trigger}]
	if t == nil {
		// getEventTriggerInfoFromEvent failed: unlock and look again in a minute.
		d.Result = EventRetrying
		d.Err = fmt.Errorf("event trigger %q on table %s.%s not found in the metadata", ev.trigger, ev.schema, ev.table)
		err := db.QueryRow(ctx, `UPDATE `+s+`.event_log SET next_retry_at = now() + interval '60 seconds', locked = NULL
			WHERE id = $1 RETURNING next_retry_at AT TIME ZONE current_setting('TIMEZONE')`, ev.id).Scan(&d.NextRetryAt)
		return d, err
	}

	var p eventBody
	p.CreatedAt = ev.createdAt.Format(CreatedAtFormat)
	p.DeliveryInfo.CurrentRetry = ev.tries
	p.DeliveryInfo.MaxRetries = t.et.Retry.NumRetries
	p.Event = event
	p.ID = ev.id
	p.Table.Name, p.Table.Schema = ev.table, ev.schema
	p.Trigger.Name = ev.trigger
	body, err := encodeJSON(p)
	if err != nil {
		return d, fmt.Errorf("hasuratest: event %s: %w", ev.id, err)
	}
	d.Body = body

	status, header, respBody, postErr := c.postEvent(ctx, t, body)
	if ctx.Err() != nil {
		return d, ctx.Err()
	}
	d.Status, d.Err = status, postErr

	// mkInvocation: a 2xx answer is logged as a webhook_response, anything else as a client_error.
	type invocationResponse struct {
		Data    any    `json:"data"`
		Type    string `json:"type"`
		Version string `json:"version"`
	}
	type clientError struct {
		Message string `json:"message"`
	}
	resp := invocationResponse{Type: "client_error", Version: eventInvocationVersion}
	var invStatus *int
	switch {
	case postErr != nil:
		resp.Data = clientError{Message: postErr.Error()}
	case status >= 200 && status < 300:
		invStatus = &status
		hs := []headerConf{}
		for _, name := range slices.Sorted(maps.Keys(header)) {
			for _, v := range header[name] {
				hs = append(hs, headerConf{Name: name, Value: &v})
			}
		}
		resp.Type = "webhook_response"
		resp.Data = struct {
			Body    string       `json:"body"`
			Headers []headerConf `json:"headers"`
			Status  int          `json:"status"`
		}{string(respBody), hs, status}
	default:
		invStatus = &status
		resp.Data = clientError{Message: string(respBody)}
	}
	request, err := encodeJSON(struct {
		Headers []headerConf    `json:"headers"`
		Payload json.RawMessage `json:"payload"`
		Version string          `json:"version"`
	}{t.logged, body, eventInvocationVersion})
	if err != nil {
		return d, err
	}
	response, err := encodeJSON(resp)
	if err != nil {
		return d, err
	}

	// retryOrSetError.
	var set string
	var args []any
	switch {
	case postErr == nil && status >= 200 && status < 300:
		d.Result = EventDelivered
		set = `delivered = 't', next_retry_at = NULL`
	default:
		retryAfter := 0
		if postErr == nil {
			retryAfter = parseRetryAfter(header)
		}
		if ev.tries >= t.et.Retry.NumRetries && retryAfter == 0 {
			d.Result = EventFailed
			set = `error = 't', next_retry_at = NULL`
		} else {
			d.Result = EventRetrying
			delay := t.et.Retry.IntervalSec
			if retryAfter > 0 {
				delay = retryAfter
			}
			set = `next_retry_at = now() + make_interval(secs => $6)`
			args = append(args, delay)
		}
	}
	var next *time.Time
	err = db.QueryRow(ctx, `
		WITH invocation AS (
		  INSERT INTO `+s+`.event_invocation_logs (event_id, trigger_name, status, request, response)
		  VALUES ($1, $2, $3, $4::text::json, $5::text::json)
		)
		UPDATE `+s+`.event_log
		SET tries = tries + 1, `+set+`, locked = NULL
		WHERE id = $1
		RETURNING next_retry_at AT TIME ZONE current_setting('TIMEZONE')`,
		append([]any{ev.id, ev.trigger, invStatus, string(request), string(response)}, args...)...).Scan(&next)
	if err != nil {
		return d, fmt.Errorf("hasuratest: recording the delivery of event %s: %w", ev.id, err)
	}
	if next != nil {
		d.NextRetryAt = *next
	}
	return d, nil
}

// postEvent sends the payload. A transport error (connection refused, timeout) is returned as
// err with status 0.
func (c *Client) postEvent(ctx context.Context, t *eventTarget, body []byte) (status int, header http.Header, respBody []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.et.Retry.TimeoutSec)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for _, h := range t.headers {
		req.Header.Set(h[0], h[1])
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, respBody, nil
}

// parseRetryAfter is parseRetryHeaderValue: the first Retry-After header read as a decimal
// number of seconds (Haskell's readMaybe: surrounding spaces allowed, no "+"), kept only when
// positive; 0 means none. An HTTP date is not a number, so it counts as no header.
func parseRetryAfter(h http.Header) int {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if strings.HasPrefix(v, "+") {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// RunEventDelivery calls DeliverEvents until ctx ends, as Hasura's event loop does: again at once
// after a full batch, else after waiting every (Hasura's default fetch interval, one second, when
// every is not positive). It reports each handled event to onResult, and a failure to claim or
// record as a Delivered with only Err set; it returns when ctx ends.
func (c *Client) RunEventDelivery(ctx context.Context, db Querier, schema string, every time.Duration, onResult func(Delivered)) {
	if every <= 0 {
		every = time.Second
	}
	for {
		res, err := c.DeliverEvents(ctx, db, schema)
		for _, d := range res {
			onResult(d)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			onResult(Delivered{Err: err})
		}
		if len(res) == eventFetchBatchSize {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// RedeliverEvent posts the logged event eventID again, whatever its state, and records the outcome
// as DeliverEvents does: what Hasura does when a delivery's answer was lost (a timeout after the
// service had done the work), so that tests can deliver one event twice, or an old event late.
func (c *Client) RedeliverEvent(ctx context.Context, db Querier, schema, eventID string) (Delivered, error) {
	targets, _, err := c.eventTargets()
	if err != nil {
		return Delivered{}, err
	}
	s := schemaSQL(schema)
	var ev claimedEvent
	var payload string
	err = db.QueryRow(ctx, `UPDATE `+s+`.event_log SET locked = NOW() WHERE id = $1
		RETURNING id, schema_name, table_name, trigger_name, payload::text, tries, created_at`, eventID).
		Scan(&ev.id, &ev.schema, &ev.table, &ev.trigger, &payload, &ev.tries, &ev.createdAt)
	if err != nil {
		return Delivered{}, fmt.Errorf("hasuratest: event %s: %w", eventID, err)
	}
	ev.payload = []byte(payload)
	d, err := c.deliverEvent(ctx, db, s, targets, ev)
	if err != nil {
		return d, errors.Join(err, unlockEvents(ctx, db, s, []claimedEvent{ev}))
	}
	return d, nil
}
