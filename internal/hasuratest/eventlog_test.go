package hasuratest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// webhook is a fake tenantkit event endpoint: it records what it receives and answers with reply.
type webhook struct {
	*httptest.Server
	mu    sync.Mutex
	got   []recorded
	reply func(w http.ResponseWriter, r recorded)
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	h := &webhook{reply: func(w http.ResponseWriter, _ recorded) { w.WriteHeader(200) }}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: b}
		h.mu.Lock()
		h.got = append(h.got, rec)
		reply := h.reply
		h.mu.Unlock()
		reply(w, rec)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *webhook) setReply(f func(w http.ResponseWriter, r recorded)) {
	h.mu.Lock()
	h.reply = f
	h.mu.Unlock()
}

func (h *webhook) requests() []recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recorded(nil), h.got...)
}

func status(code int, headers ...string) func(http.ResponseWriter, recorded) {
	return func(w http.ResponseWriter, _ recorded) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"status":%d}`, code)
	}
}

func deliver(t *testing.T, c *Client, pool *pgxpool.Pool) []Delivered {
	t.Helper()
	res, err := c.DeliverEvents(t.Context(), pool, HasuraCatalogSchema)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// invocation is one hdb_catalog.event_invocation_logs row.
type invocation struct {
	EventID, Trigger  string
	Status            *int
	Request, Response map[string]any
	RequestText       string
}

func invocations(t *testing.T, db Querier) []invocation {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT event_id, trigger_name, status, request::text, response::text
		FROM hdb_catalog.event_invocation_logs ORDER BY created_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []invocation
	var i invocation
	var resp string
	if _, err := pgx.ForEachRow(rows, []any{&i.EventID, &i.Trigger, &i.Status, &i.RequestText, &resp}, func() error {
		i.Request, i.Response = decodeJSON(t, []byte(i.RequestText)), decodeJSON(t, []byte(resp))
		out = append(out, i)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeliverEvents(t *testing.T) {
	t.Parallel()

	t.Run("payload and headers are Hasura's, and a delivered event is not delivered again", func(t *testing.T) {
		t.Parallel()
		meta := loadRepoMetadata(t)
		pool := eventDB(t, meta, "")
		hook := newWebhook(t)
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL, "TENANTKIT_SECRET": secret})
		session := `{"x-hasura-role":"user","x-hasura-user-id":"6a3c5f0e-8a41-4c59-9d2e-2f1f2b7f4d10"}`
		tenant, err := writeAs(t.Context(), pool, hasuraRole, session, `INSERT INTO tenants (slug, name) VALUES ('acme', 'Acme <&> Co') RETURNING id`)
		if err != nil {
			t.Fatal(err)
		}
		var id, createdAt string
		if err := pool.QueryRow(t.Context(), `SELECT id, rtrim(rtrim(to_char(created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.')
			FROM hdb_catalog.event_log`).Scan(&id, &createdAt); err != nil {
			t.Fatal(err)
		}

		res := deliver(t, c, pool)
		if len(res) != 1 {
			t.Fatalf("%d results, want 1", len(res))
		}
		d := res[0]
		if d.EventID != id || d.Trigger != "tenant_created" || d.Schema != "public" || d.Table != "tenants" || d.Op != "INSERT" ||
			d.Try != 0 || d.Status != 200 || d.Result != EventDelivered || d.Err != nil || !d.NextRetryAt.IsZero() {
			t.Fatalf("result %+v", d)
		}
		reqs := hook.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests, want 1", len(reqs))
		}
		got := reqs[0]
		if got.Method != http.MethodPost || got.Path != "/events/tenant_created" {
			t.Fatalf("%s %s", got.Method, got.Path)
		}
		for name, want := range map[string]string{"Content-Type": "application/json", "User-Agent": UserAgent, "X-Tenantkit-Secret": secret} {
			if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
				t.Errorf("header %s: %q, want %q", name, v, want)
			}
		}
		if string(got.Body) != string(d.Body) {
			t.Fatalf("Delivered.Body differs from what was sent:\n%s\n%s", d.Body, got.Body)
		}
		row, err := json.Marshal(rowJSON(t, pool, "tenants", tenant))
		if err != nil {
			t.Fatal(err)
		}
		jsonEq(t, got.Body, `{
			"created_at": "`+createdAt+`",
			"delivery_info": {"current_retry": 0, "max_retries": 20},
			"event": {
				"data": {"new": `+string(row)+`, "old": null},
				"op": "INSERT",
				"session_variables": `+session+`,
				"trace_context": null
			},
			"id": "`+id+`",
			"table": {"name": "tenants", "schema": "public"},
			"trigger": {"name": "tenant_created"}
		}`)
		// aeson's encoding: keys in order, nothing HTML-escaped.
		if !strings.HasPrefix(string(got.Body), `{"created_at":"`+createdAt+`","delivery_info":{"current_retry":0,"max_retries":20},"event":{"data":{"new":{`) ||
			!strings.Contains(string(got.Body), `"Acme <&> Co"`) || strings.Contains(createdAt, "Z") {
			t.Fatalf("body %s", got.Body)
		}

		// Client.Event, given the same row, builds the same payload.
		var rowMap map[string]any
		_ = json.Unmarshal(row, &rowMap)
		created, err := time.Parse(CreatedAtFormat, createdAt)
		if err != nil {
			t.Fatal(err)
		}
		var sess map[string]string
		_ = json.Unmarshal([]byte(session), &sess)
		if _, err := c.Event(t.Context(), "tenant_created", "INSERT", nil, rowMap, EventOptions{ID: id, CreatedAt: created, Session: sess}); err != nil {
			t.Fatal(err)
		}
		jsonEq(t, hook.requests()[1].Body, string(got.Body))

		log := eventLog(t, pool, HasuraCatalogSchema)
		if len(log) != 1 || !log[0].Delivered || log[0].Error || log[0].Locked || log[0].Tries != 1 || log[0].NextRetryAt != nil {
			t.Fatalf("event row %+v", log)
		}
		inv := invocations(t, pool)
		if len(inv) != 1 || inv[0].EventID != id || inv[0].Trigger != "tenant_created" || inv[0].Status == nil || *inv[0].Status != 200 {
			t.Fatalf("invocations %+v", inv)
		}
		wantReq := map[string]any{
			"headers": []any{
				map[string]any{"name": "Content-Type", "value": "application/json"},
				map[string]any{"name": "User-Agent", "value": UserAgent},
				map[string]any{"name": "X-Tenantkit-Secret", "value_from_env": "TENANTKIT_SECRET"},
			},
			"payload": decodeJSON(t, got.Body),
			"version": "2",
		}
		if !reflect.DeepEqual(inv[0].Request, wantReq) || strings.Contains(inv[0].RequestText, secret) {
			t.Fatalf("invocation request %s", inv[0].RequestText)
		}
		if inv[0].Response["type"] != "webhook_response" || inv[0].Response["version"] != "2" {
			t.Fatalf("invocation response %v", inv[0].Response)
		}
		data, _ := inv[0].Response["data"].(map[string]any)
		if data["status"] != json.Number("200") || data["body"] != "" {
			t.Fatalf("invocation response data %v", data)
		}

		if res := deliver(t, c, pool); len(res) != 0 {
			t.Fatalf("a delivered event came back: %+v", res)
		}
		if n := len(hook.requests()); n != 2 {
			t.Fatalf("%d requests, want 2 (one delivery, one Client.Event)", n)
		}
	})

	t.Run("a 500 is retried after interval_sec, then a 200 delivers", func(t *testing.T) {
		t.Parallel()
		meta := loadRepoMetadata(t) // tenant_created: interval_sec 60, num_retries 20
		pool := eventDB(t, meta, "")
		hook := newWebhook(t)
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL, "TENANTKIT_SECRET": secret})
		if _, err := writeAs(t.Context(), pool, hasuraRole, "", insertTenant, "acme"); err != nil {
			t.Fatal(err)
		}
		hook.setReply(status(500))
		before := time.Now()
		res := deliver(t, c, pool)
		if len(res) != 1 || res[0].Result != EventRetrying || res[0].Status != 500 || res[0].Try != 0 || res[0].Err != nil {
			t.Fatalf("first attempt %+v", res)
		}
		if wait := res[0].NextRetryAt.Sub(before); wait < 55*time.Second || wait > 65*time.Second {
			t.Fatalf("next retry in %v, want about 60s", wait)
		}
		log := eventLog(t, pool, HasuraCatalogSchema)
		if log[0].Tries != 1 || log[0].Delivered || log[0].Error || log[0].Locked || log[0].NextRetryAt == nil {
			t.Fatalf("event row %+v", log[0])
		}
		inv := invocations(t, pool)
		if len(inv) != 1 || inv[0].Status == nil || *inv[0].Status != 500 ||
			!reflect.DeepEqual(inv[0].Response, map[string]any{"data": map[string]any{"message": `{"status":500}`}, "type": "client_error", "version": "2"}) {
			t.Fatalf("invocation %+v", inv)
		}
		if res := deliver(t, c, pool); len(res) != 0 {
			t.Fatalf("retried before next_retry_at: %+v", res)
		}

		mustExec(t, pool, `UPDATE hdb_catalog.event_log SET next_retry_at = now() - interval '1 second'`)
		hook.setReply(status(200))
		res = deliver(t, c, pool)
		if len(res) != 1 || res[0].Result != EventDelivered || res[0].Try != 1 {
			t.Fatalf("second attempt %+v", res)
		}
		var p eventBody
		if err := json.Unmarshal(hook.requests()[1].Body, &p); err != nil || p.DeliveryInfo.CurrentRetry != 1 || p.DeliveryInfo.MaxRetries != 20 || p.ID != res[0].EventID {
			t.Fatalf("second payload %+v, %v", p, err)
		}
		if log := eventLog(t, pool, HasuraCatalogSchema); !log[0].Delivered || log[0].Tries != 2 || log[0].NextRetryAt != nil {
			t.Fatalf("event row %+v", log[0])
		}
	})

	t.Run("error is set once num_retries retries have failed", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{NumRetries: 2, IntervalSec: 0, TimeoutSec: 5})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		hook.setReply(status(500))
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('w')`)
		for try, want := range []EventDelivery{EventRetrying, EventRetrying, EventFailed} {
			res := deliver(t, c, pool)
			if len(res) != 1 || res[0].Try != try || res[0].Result != want {
				t.Fatalf("attempt %d: %+v, want %s", try, res, want)
			}
		}
		if res := deliver(t, c, pool); len(res) != 0 {
			t.Fatalf("a failed event came back: %+v", res)
		}
		log := eventLog(t, pool, HasuraCatalogSchema)
		if !log[0].Error || log[0].Delivered || log[0].Tries != 3 || log[0].NextRetryAt != nil || log[0].Locked {
			t.Fatalf("event row %+v", log[0])
		}
		var tries []int
		for _, r := range hook.requests() {
			var p eventBody
			_ = json.Unmarshal(r.Body, &p)
			tries = append(tries, p.DeliveryInfo.CurrentRetry)
			if p.DeliveryInfo.MaxRetries != 2 {
				t.Fatalf("max_retries %d", p.DeliveryInfo.MaxRetries)
			}
		}
		if !reflect.DeepEqual(tries, []int{0, 1, 2}) {
			t.Fatalf("current_retry sent %v", tries)
		}
		if n := len(invocations(t, pool)); n != 3 {
			t.Fatalf("%d invocations, want 3", n)
		}
	})

	t.Run("Retry-After decides the delay and outlasts num_retries", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{NumRetries: 0, IntervalSec: 10, TimeoutSec: 5})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('w')`)
		hook.setReply(status(503, "Retry-After", "120"))
		before := time.Now()
		res := deliver(t, c, pool)
		if len(res) != 1 || res[0].Result != EventRetrying || res[0].Status != 503 {
			t.Fatalf("with Retry-After: %+v", res)
		}
		if wait := res[0].NextRetryAt.Sub(before); wait < 115*time.Second || wait > 125*time.Second {
			t.Fatalf("next retry in %v, want about 120s", wait)
		}
		// A Retry-After that is not a positive number of seconds counts as none.
		for i, v := range []string{"0", "-3", "Wed, 21 Oct 2015 07:28:00 GMT", "+5"} {
			mustExec(t, pool, `INSERT INTO widgets (name) VALUES ($1)`, v)
			mustExec(t, pool, `UPDATE hdb_catalog.event_log SET next_retry_at = now() + interval '1 hour' WHERE tries > 0`)
			hook.setReply(status(429, "Retry-After", v))
			res := deliver(t, c, pool)
			if len(res) != 1 || res[0].Result != EventFailed {
				t.Fatalf("case %d, Retry-After %q: %+v", i, v, res)
			}
		}
	})

	t.Run("no answer is an invocation without status", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{NumRetries: 1, IntervalSec: 0, TimeoutSec: 1})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		hook.setReply(func(w http.ResponseWriter, _ recorded) { time.Sleep(1500 * time.Millisecond) })
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('w')`)
		res := deliver(t, c, pool)
		if len(res) != 1 || res[0].Result != EventRetrying || res[0].Status != 0 || !errors.Is(res[0].Err, context.DeadlineExceeded) {
			t.Fatalf("timed out attempt %+v", res)
		}
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close()
		c.Env["TENANTKIT_URL"] = closed.URL
		res = deliver(t, c, pool)
		if len(res) != 1 || res[0].Result != EventFailed || res[0].Status != 0 || res[0].Err == nil {
			t.Fatalf("refused attempt %+v", res)
		}
		for _, inv := range invocations(t, pool) {
			if inv.Status != nil || inv.Response["type"] != "client_error" {
				t.Fatalf("invocation %+v", inv)
			}
		}
	})

	t.Run("an event whose trigger is not on its table is put off for a minute", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{TimeoutSec: 5})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})
		mustExec(t, pool, `SELECT hdb_catalog.insert_event_log('public', 'gadgets', 'widget_changed', 'INSERT', '{"old":null,"new":{}}')`)
		before := time.Now()
		res := deliver(t, c, pool)
		if len(res) != 1 || res[0].Result != EventRetrying || res[0].Err == nil || res[0].Body != nil {
			t.Fatalf("%+v", res)
		}
		if wait := res[0].NextRetryAt.Sub(before); wait < 55*time.Second || wait > 65*time.Second {
			t.Fatalf("next retry in %v", wait)
		}
		if log := eventLog(t, pool, HasuraCatalogSchema); log[0].Tries != 0 || log[0].Locked || len(hook.requests()) != 0 || len(invocations(t, pool)) != 0 {
			t.Fatalf("event row %+v", log[0])
		}
	})

	t.Run("missing environment variables fail before anything is claimed", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{TimeoutSec: 5}, Header{Name: "X-Secret", ValueFromEnv: "NOPE"})
		pool := eventDB(t, meta, widgetsTable)
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": "http://127.0.0.1:1"})
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('w')`)
		if _, err := c.DeliverEvents(t.Context(), pool, HasuraCatalogSchema); err == nil || !strings.Contains(err.Error(), "NOPE") {
			t.Fatalf("error %v", err)
		}
		if log := eventLog(t, pool, HasuraCatalogSchema); log[0].Locked || log[0].Tries != 0 {
			t.Fatalf("event row %+v", log[0])
		}
	})

	t.Run("an ended context unlocks what was claimed", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{TimeoutSec: 30})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		hook.setReply(func(w http.ResponseWriter, _ recorded) { time.Sleep(time.Second) })
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('a'), ('b')`)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		res, err := c.DeliverEvents(ctx, pool, HasuraCatalogSchema)
		if !errors.Is(err, context.DeadlineExceeded) || len(res) != 0 {
			t.Fatalf("%+v, %v", res, err)
		}
		for _, e := range eventLog(t, pool, HasuraCatalogSchema) {
			if e.Locked || e.Tries != 0 {
				t.Fatalf("event row %+v", e)
			}
		}
		if n := len(invocations(t, pool)); n != 0 {
			t.Fatalf("%d invocations", n)
		}
	})

	t.Run("rows another claimer holds are skipped, stale locks are taken over", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{TimeoutSec: 5})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('held'), ('claimed'), ('stale'), ('free')`)
		ids := map[string]string{}
		for _, e := range eventLog(t, pool, HasuraCatalogSchema) {
			ids[e.Payload["data"].(map[string]any)["new"].(map[string]any)["name"].(string)] = e.ID
		}
		mustExec(t, pool, `UPDATE hdb_catalog.event_log SET locked = now() WHERE id = $1`, ids["claimed"])
		mustExec(t, pool, `UPDATE hdb_catalog.event_log SET locked = now() - interval '31 minutes' WHERE id = $1`, ids["stale"])
		tx, err := pool.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(t.Context()) //nolint:errcheck
		mustExec(t, tx, `SELECT 1 FROM hdb_catalog.event_log WHERE id = $1 FOR UPDATE`, ids["held"])

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		res, err := c.DeliverEvents(ctx, pool, HasuraCatalogSchema)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, d := range res {
			got[d.EventID] = true
		}
		if !reflect.DeepEqual(got, map[string]bool{ids["stale"]: true, ids["free"]: true}) {
			t.Fatalf("delivered %v; ids %v", got, ids)
		}
		if err := tx.Rollback(t.Context()); err != nil {
			t.Fatal(err)
		}
		if res := deliver(t, c, pool); len(res) != 1 || res[0].EventID != ids["held"] {
			t.Fatalf("after the holder let go: %+v", res)
		}
	})

	t.Run("concurrent rounds never deliver an event twice", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{TimeoutSec: 5})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		hook.setReply(func(w http.ResponseWriter, _ recorded) { time.Sleep(2 * time.Millisecond) })
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})

		const events, workers = 150, 4
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var mu sync.Mutex
		var results []Delivered
		busy := map[int]bool{} // workers that delivered something
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					res, err := c.DeliverEvents(ctx, pool, HasuraCatalogSchema)
					if err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						return
					}
					mu.Lock()
					results = append(results, res...)
					n := len(results)
					if len(res) > 0 {
						busy[w] = true
					}
					mu.Unlock()
					if n >= events {
						return
					}
					if len(res) == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		for range events / 10 {
			mustExec(t, pool, `INSERT INTO widgets (name) SELECT 'w' || g FROM generate_series(1, 10) g`)
		}
		wg.Wait()
		t.Logf("%d of %d workers delivered events", len(busy), workers)

		seen := map[string]int{}
		for _, r := range hook.requests() {
			var p eventBody
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Fatal(err)
			}
			seen[p.ID]++
		}
		if len(seen) != events || len(results) != events {
			t.Fatalf("%d distinct events posted, %d results; want %d", len(seen), len(results), events)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("event %s posted %d times", id, n)
			}
		}
		for _, e := range eventLog(t, pool, HasuraCatalogSchema) {
			if !e.Delivered || e.Tries != 1 {
				t.Errorf("event row %+v", e)
			}
		}
	})

	t.Run("RunEventDelivery delivers until the context ends", func(t *testing.T) {
		t.Parallel()
		meta := widgetMetadata(RetryConf{TimeoutSec: 5})
		pool := eventDB(t, meta, widgetsTable)
		hook := newWebhook(t)
		c := NewClient(meta, map[string]string{"TENANTKIT_URL": hook.URL})
		ctx, cancel := context.WithCancel(t.Context())
		got := make(chan Delivered, 10)
		stopped := make(chan struct{})
		go func() {
			c.RunEventDelivery(ctx, pool, HasuraCatalogSchema, 20*time.Millisecond, func(d Delivered) { got <- d })
			close(stopped)
		}()
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('a')`)
		mustExec(t, pool, `INSERT INTO widgets (name) VALUES ('b')`)
		for range 2 {
			select {
			case d := <-got:
				if d.Result != EventDelivered {
					t.Fatalf("%+v", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no delivery within 10s")
			}
		}
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("RunEventDelivery did not return after the context ended")
		}
	})
}
