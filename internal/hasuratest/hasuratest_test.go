package hasuratest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const fixture = "testdata/metadata"

// recorded is one request the fake service received.
type recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// recorder is an httptest server that records every request and answers with reply.
type recorder struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []recorded
	reply func(r recorded) (int, string)
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{reply: func(recorded) (int, string) { return 200, `{}` }}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got := recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: b}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, got)
		reply := rec.reply
		rec.mu.Unlock()
		status, body := reply(got)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func (r *recorder) setReply(f func(recorded) (int, string)) {
	r.mu.Lock()
	r.reply = f
	r.mu.Unlock()
}

func (r *recorder) last(t *testing.T) recorded {
	t.Helper()
	reqs := r.requests()
	if len(reqs) == 0 {
		t.Fatal("the service received no request")
	}
	return reqs[len(reqs)-1]
}

const secret = "s3cret"

func setup(t *testing.T) (*Client, *recorder) {
	t.Helper()
	meta, err := Load(fixture)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	rec := newRecorder(t)
	c := NewClient(meta, map[string]string{
		"TENANTKIT_URL":         rec.URL,
		"TENANTKIT_SECRET":      secret,
		"TENANTKIT_GRAPHQL_URL": rec.URL + "/graphql",
		"AUDIT_WEBHOOK_URL":     rec.URL + "/events/audit_slim",
	})
	return c, rec
}

// jsonEq fails unless got (raw JSON) equals want (JSON text) structurally.
func jsonEq(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
}

func TestListActions(t *testing.T) {
	meta, err := Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	want := []ActionInfo{
		{Name: "createThing", Kind: "synchronous", Type: "mutation", HandlerPath: "/actions/createThing",
			Arguments:  []Arg{{Name: "name", Type: "String!", Required: true}, {Name: "size", Type: "Int"}},
			OutputType: "CreateThingOutput", Roles: []string{"user"}},
		{Name: "thingStats", Kind: "synchronous", Type: "query", HandlerPath: "/actions/thingStats",
			Arguments:  []Arg{{Name: "filter", Type: "ThingFilter"}},
			OutputType: "ThingStatsOutput!", Roles: []string{"user", "manager"}},
		{Name: "importThings", Kind: "asynchronous", Type: "mutation", HandlerPath: "/actions/importThings",
			Arguments:  []Arg{{Name: "ids", Type: "[uuid!]!", Required: true}},
			OutputType: "ImportThingsOutput", Roles: []string{"user"}},
		{Name: "legacyHook", Kind: "synchronous", Type: "mutation", HandlerPath: "/actions/legacyHook",
			Arguments:  []Arg{{Name: "n", Type: "Int!", Required: true}},
			OutputType: "ImportThingsOutput", Roles: []string{"user"}},
	}
	if got := meta.ListActions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ListActions\n got %+v\nwant %+v", got, want)
	}
	a := meta.Action("createThing")
	if a.TimeoutSeconds != 10 || a.Comment != "Create a thing" || len(a.Headers) != 1 ||
		a.Headers[0] != (Header{Name: "X-Tenantkit-Secret", ValueFromEnv: "TENANTKIT_SECRET"}) {
		t.Fatalf("createThing parsed as %+v", a)
	}
	if meta.Action("thingStats").TimeoutSeconds != 30 {
		t.Fatal("default action timeout is not 30s")
	}
}

func TestListEventTriggers(t *testing.T) {
	meta, err := Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	secretHeader := Header{Name: "X-Tenantkit-Secret", ValueFromEnv: "TENANTKIT_SECRET"}
	want := []TriggerInfo{
		{
			Name: "thing_changed", Source: "default", Schema: "public", Table: "things",
			WebhookPath: "/events/thing_changed",
			Ops:         []string{"INSERT", "UPDATE", "DELETE", "MANUAL"},
			Columns:     map[string][]string{"INSERT": {"*"}, "UPDATE": {"a", "b"}, "DELETE": {"*"}},
			Payload:     map[string][]string{"INSERT": {"*"}, "UPDATE": {"*"}, "DELETE": {"*"}},
			Headers:     []Header{secretHeader},
			Retry:       RetryConf{NumRetries: 5, IntervalSec: 10, TimeoutSec: 60},
		},
		{
			Name: "audit_slim", Source: "default", Schema: "public", Table: "audit",
			WebhookFromEnv: "AUDIT_WEBHOOK_URL",
			Ops:            []string{"INSERT", "UPDATE"},
			Columns:        map[string][]string{"INSERT": {"*"}, "UPDATE": {"b"}},
			Payload:        map[string][]string{"INSERT": {"id", "a"}, "UPDATE": {"id", "b"}},
			Headers:        []Header{secretHeader, {Name: "X-Source", Value: "audit"}},
			Retry:          RetryConf{NumRetries: 0, IntervalSec: 5, TimeoutSec: 30},
		},
	}
	if got := meta.ListEventTriggers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ListEventTriggers\n got %+v\nwant %+v", got, want)
	}
}

func TestEnvVarsReferenced(t *testing.T) {
	meta, err := Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	got := meta.EnvVarsReferenced()
	// {{$body.input.n}} in legacyHook's request_transform is Kriti, not an environment variable.
	want := []string{"AUDIT_WEBHOOK_URL", "HASURA_GRAPHQL_DATABASE_URL", "TENANTKIT_GRAPHQL_URL", "TENANTKIT_SECRET", "TENANTKIT_URL"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("EnvVarsReferenced = %v, want %v", got, want)
	}
}

func TestActionPayloadAndHeaders(t *testing.T) {
	c, rec := setup(t)
	rec.setReply(func(recorded) (int, string) {
		return 200, `{"id":"7b0c2a59-4d0e-4b8e-9a53-0d3c1f2f7f11","name":"box","size":3}`
	})
	resp, err := c.Action(context.Background(), "createThing",
		map[string]any{"name": "box", "size": 3},
		map[string]string{"X-Hasura-User-Id": "u-1", "X-Hasura-Tenant-Id": "t-9"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.HasuraError != nil {
		t.Fatalf("status %d, HasuraError %v", resp.Status, resp.HasuraError)
	}
	var out struct{ ID, Name string }
	if err := resp.JSON(&out); err != nil || out.Name != "box" {
		t.Fatalf("JSON: %+v %v", out, err)
	}
	got := rec.last(t)
	if got.Method != http.MethodPost || got.Path != "/actions/createThing" {
		t.Fatalf("%s %s", got.Method, got.Path)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if s := got.Header.Get("X-Tenantkit-Secret"); s != secret {
		t.Fatalf("X-Tenantkit-Secret %q", s)
	}
	if got.Header.Get("X-Hasura-User-Id") != "" || got.Header.Get("X-Hasura-Role") != "" {
		t.Fatal("Hasura does not send session variables as headers to action handlers")
	}
	jsonEq(t, got.Body, `{
		"action": {"name": "createThing"},
		"input": {"name": "box", "size": 3},
		"session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "u-1", "x-hasura-tenant-id": "t-9"},
		"request_query": "mutation createThing($name: String!, $size: Int) { createThing(name: $name, size: $size) { id name size } }"
	}`)

	// An omitted optional argument is absent from input, an explicit null is sent as null; the
	// role, when given, is kept (lower-cased name).
	if _, err := c.Action(context.Background(), "createThing", map[string]any{"name": "b"},
		map[string]string{"X-HASURA-ROLE": "user", "x-hasura-user-id": "u-2"}); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, rec.last(t).Body, `{
		"action": {"name": "createThing"},
		"input": {"name": "b"},
		"session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "u-2"},
		"request_query": "mutation createThing($name: String!) { createThing(name: $name) { id name size } }"
	}`)
	if _, err := c.Action(context.Background(), "createThing", map[string]any{"name": "b", "size": nil}, nil); err != nil {
		t.Fatal(err)
	}
	var body struct{ Input map[string]any }
	_ = json.Unmarshal(rec.last(t).Body, &body)
	if v, ok := body.Input["size"]; !ok || v != nil {
		t.Fatalf("explicit null: input = %v", body.Input)
	}
}

func TestActionRejectedBeforeSending(t *testing.T) {
	c, rec := setup(t)
	user := map[string]string{"x-hasura-user-id": "u-1"}
	cases := []struct {
		name    string
		action  string
		input   map[string]any
		session map[string]string
		want    string
	}{
		{"unknown action", "createThang", map[string]any{"name": "x"}, user, "not in the metadata"},
		{"undeclared argument", "createThing", map[string]any{"name": "x", "colour": "red"}, user, "no argument colour"},
		{"misspelt argument", "createThing", map[string]any{"nme": "x"}, user, "no argument nme"},
		{"missing required argument", "createThing", map[string]any{"size": 1}, user, "missing required argument name"},
		{"null for non-null", "createThing", map[string]any{"name": nil}, user, "null for non-null"},
		{"string for Int", "createThing", map[string]any{"name": "x", "size": "3"}, user, "Int expected"},
		{"Int out of range", "createThing", map[string]any{"name": "x", "size": 1 << 40}, user, "32-bit"},
		{"fraction for Int", "createThing", map[string]any{"name": "x", "size": 1.5}, user, "32-bit"},
		{"role without permission", "createThing", map[string]any{"name": "x"}, map[string]string{"x-hasura-role": "guest"}, `role "guest" has no permission`},
		{"default role without permission", "thingStats", nil, map[string]string{"x-hasura-role": "member"}, "no permission"},
		{"non-session variable", "createThing", map[string]any{"name": "x"}, map[string]string{"user-id": "u"}, "x-hasura-*"},
		{"enum value", "thingStats", map[string]any{"filter": map[string]any{"color": "BLUE"}}, user, "one of RED, GREEN"},
		{"input object field", "thingStats", map[string]any{"filter": map[string]any{"size": 2}}, user, "has no field size"},
		{"list expected", "importThings", map[string]any{"ids": "x"}, user, "expects a list"},
		{"null list item", "importThings", map[string]any{"ids": []any{nil}}, user, "null for non-null"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Action(context.Background(), tc.action, tc.input, tc.session)
			if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrRejected mentioning %q", err, tc.want)
			}
		})
	}
	if n := len(rec.requests()); n != 0 {
		t.Fatalf("%d requests reached the service", n)
	}

	// admin may call any action; a request transform is refused rather than sent untransformed.
	if _, err := c.Action(context.Background(), "createThing", map[string]any{"name": "x"},
		map[string]string{"x-hasura-role": "admin"}); err != nil {
		t.Fatalf("admin: %v", err)
	}
	if _, err := c.Action(context.Background(), "legacyHook", map[string]any{"n": 1}, user); err == nil || !strings.Contains(err.Error(), "transform") {
		t.Fatalf("legacyHook: %v", err)
	}
	// A variable missing from Env is an error, as it is for Hasura.
	c.Env = map[string]string{"TENANTKIT_URL": rec.URL}
	if _, err := c.Action(context.Background(), "createThing", map[string]any{"name": "x"}, user); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "TENANTKIT_SECRET") {
		t.Fatalf("missing secret variable: %v", err)
	}
	c.Env = nil
	if _, err := c.Action(context.Background(), "createThing", map[string]any{"name": "x"}, user); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "TENANTKIT_URL") {
		t.Fatalf("missing URL variable: %v", err)
	}
	if n := len(rec.requests()); n != 1 {
		t.Fatalf("%d requests reached the service, want only admin's", n)
	}
}

func TestActionResponseContract(t *testing.T) {
	c, rec := setup(t)
	call := func(status int, body string) *Response {
		t.Helper()
		rec.setReply(func(recorded) (int, string) { return status, body })
		resp, err := c.Action(context.Background(), "createThing", map[string]any{"name": "x"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, tc := range []struct {
		status int
		body   string
		want   string // "" = accepted
	}{
		{200, `{"id":"i","name":"x"}`, ""},
		{201, `{"id":"i","name":"x","size":null}`, ""},
		{200, `{"id":"i","name":"x","extra":1}`, "unexpected fields in webhook response: extra"},
		{200, `{"id":"i"}`, `field "name" expected`},
		{200, `{"id":"i","name":null}`, "expecting not null value"},
		{200, `[{"id":"i","name":"x"}]`, "got array"},
		{200, `not json`, "not a valid json"},
		{400, `{"message":"nope","extensions":{"code":"bad-input"}}`, ""},
		{422, `{"message":"old style","code":"legacy"}`, ""},
		{400, `{"error":"nope"}`, `no string "message"`},
		{500, `{"message":"boom"}`, "expecting 2xx or 4xx"},
		{302, ``, "expecting 2xx or 4xx"},
	} {
		resp := call(tc.status, tc.body)
		if tc.want == "" && resp.HasuraError != nil {
			t.Errorf("%d %s: HasuraError %v, want accepted", tc.status, tc.body, resp.HasuraError)
		}
		if tc.want != "" && (resp.HasuraError == nil || !strings.Contains(resp.HasuraError.Error(), tc.want)) {
			t.Errorf("%d %s: HasuraError %v, want %q", tc.status, tc.body, resp.HasuraError, tc.want)
		}
	}
	ae, err := call(400, `{"message":"nope","extensions":{"code":"bad-input","field":"name"}}`).ActionError()
	if err != nil || ae.Message != "nope" || ae.Code != "bad-input" || ae.Extensions["field"] != "name" {
		t.Fatalf("ActionError = %+v, %v", ae, err)
	}
	if ae, err := call(422, `{"message":"m","code":"legacy"}`).ActionError(); err != nil || ae.Code != "legacy" {
		t.Fatalf("legacy code: %+v, %v", ae, err)
	}
	if _, err := call(200, `{"id":"i","name":"x"}`).ActionError(); err == nil {
		t.Fatal("ActionError on a 200")
	}
}

func TestQueryActionHeadersAndForwarding(t *testing.T) {
	c, rec := setup(t)
	rec.setReply(func(recorded) (int, string) { return 200, `{"count":2}` })
	c.ClientHeaders = http.Header{
		"Authorization":      {"Bearer jwt"},
		"User-Agent":         {"browser/1"},
		"X-Hasura-Role":      {"admin"},
		"Content-Length":     {"12"},
		"X-Tenantkit-Secret": {"guess"},
	}
	resp, err := c.Action(context.Background(), "thingStats",
		map[string]any{"filter": map[string]any{"color": "RED", "minSize": 2}},
		map[string]string{"x-hasura-role": "manager", "x-hasura-user-id": "u-3"})
	if err != nil || resp.HasuraError != nil {
		t.Fatalf("%v %v", err, resp.HasuraError)
	}
	got := rec.last(t)
	jsonEq(t, got.Body, `{
		"action": {"name": "thingStats"},
		"input": {"filter": {"color": "RED", "minSize": 2}},
		"session_variables": {"x-hasura-role": "manager", "x-hasura-user-id": "u-3"},
		"request_query": "query thingStats($filter: ThingFilter) { thingStats(filter: $filter) { count } }"
	}`)
	h := got.Header
	if h.Get("X-Static") != "fixed" || h.Get("Authorization") != "Bearer jwt" || h.Get("X-Forwarded-User-Agent") != "browser/1" {
		t.Fatalf("headers %v", h)
	}
	if h.Get("X-Hasura-Role") != "" {
		t.Fatal("x-hasura-* client headers must not be forwarded")
	}
	// Hasura merges configuration and client headers with HashMap.fromList, so a client header
	// replaces a configured one of the same name on an action with forward_client_headers.
	if h.Get("X-Tenantkit-Secret") != "guess" {
		t.Fatalf("X-Tenantkit-Secret = %q", h.Get("X-Tenantkit-Secret"))
	}
	// createThing does not forward client headers.
	if _, err := c.Action(context.Background(), "createThing", map[string]any{"name": "x"}, nil); err != nil {
		t.Fatal(err)
	}
	if h := rec.last(t).Header; h.Get("Authorization") != "" || h.Get("X-Tenantkit-Secret") != secret {
		t.Fatalf("createThing headers %v", h)
	}
}

func TestAsyncActionHasNullRequestQuery(t *testing.T) {
	c, rec := setup(t)
	rec.setReply(func(recorded) (int, string) { return 200, `{"imported":1}` })
	resp, err := c.Action(context.Background(), "importThings",
		map[string]any{"ids": []string{"2c5ea4c0-4067-11e9-8bad-9b1deb4d3b7d"}}, nil)
	if err != nil || resp.HasuraError != nil {
		t.Fatalf("%v %v", err, resp.HasuraError)
	}
	jsonEq(t, rec.last(t).Body, `{
		"action": {"name": "importThings"},
		"input": {"ids": ["2c5ea4c0-4067-11e9-8bad-9b1deb4d3b7d"]},
		"session_variables": {"x-hasura-role": "user"},
		"request_query": null
	}`)
}

func TestEventPayloads(t *testing.T) {
	c, rec := setup(t)
	ctx := context.Background()
	created := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	row := map[string]any{"id": 1, "a": "x", "b": 2, "c": nil}

	resp, err := c.Event(ctx, "thing_changed", "INSERT", nil, row, EventOptions{
		ID: "evt-1", CreatedAt: created, Session: map[string]string{"X-Hasura-Role": "user", "x-hasura-user-id": "u-1"},
	})
	if err != nil || resp.Status != 200 {
		t.Fatalf("%v %+v", err, resp)
	}
	got := rec.last(t)
	if got.Path != "/events/thing_changed" || got.Header.Get("X-Tenantkit-Secret") != secret ||
		got.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(got.Header.Get("User-Agent"), "hasura-graphql-engine/") {
		t.Fatalf("%s %v", got.Path, got.Header)
	}
	jsonEq(t, got.Body, `{
		"created_at": "2025-03-04T05:06:07.123456",
		"delivery_info": {"current_retry": 0, "max_retries": 5},
		"event": {
			"data": {"new": {"id": 1, "a": "x", "b": 2, "c": null}, "old": null},
			"op": "INSERT",
			"session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "u-1"},
			"trace_context": null
		},
		"id": "evt-1",
		"table": {"name": "things", "schema": "public"},
		"trigger": {"name": "thing_changed"}
	}`)

	// UPDATE: columns [a, b] are what the trigger listens to; the payload still has every column.
	newRow := map[string]any{"id": 1, "a": "y", "b": 2, "c": "changed too"}
	if _, err := c.Event(ctx, "thing_changed", "update", row, newRow, EventOptions{ID: "evt-2", CreatedAt: created}); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, rec.last(t).Body, `{
		"created_at": "2025-03-04T05:06:07.123456",
		"delivery_info": {"current_retry": 0, "max_retries": 5},
		"event": {
			"data": {"old": {"id": 1, "a": "x", "b": 2, "c": null}, "new": {"id": 1, "a": "y", "b": 2, "c": "changed too"}},
			"op": "UPDATE", "session_variables": null, "trace_context": null
		},
		"id": "evt-2",
		"table": {"name": "things", "schema": "public"},
		"trigger": {"name": "thing_changed"}
	}`)

	// Redelivery: same id, current_retry passed through, trace context when given.
	for retry := 1; retry <= 2; retry++ {
		if _, err := c.Event(ctx, "thing_changed", "UPDATE", row, newRow, EventOptions{
			ID: "evt-2", CurrentRetry: retry, CreatedAt: created, TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		}); err != nil {
			t.Fatal(err)
		}
		var p struct {
			ID           string
			DeliveryInfo struct {
				CurrentRetry int `json:"current_retry"`
				MaxRetries   int `json:"max_retries"`
			} `json:"delivery_info"`
			Event struct {
				TraceContext map[string]string `json:"trace_context"`
			}
		}
		if err := json.Unmarshal(rec.last(t).Body, &p); err != nil {
			t.Fatal(err)
		}
		if p.ID != "evt-2" || p.DeliveryInfo.CurrentRetry != retry || p.DeliveryInfo.MaxRetries != 5 ||
			p.Event.TraceContext["trace_id"] != "0af7651916cd43dd8448eb211c80319c" || p.Event.TraceContext["span_id"] != "b7ad6b7169203331" {
			t.Fatalf("redelivery %d: %+v", retry, p)
		}
	}

	// A NULL → value change of a listened column fires (composite comparison, NULL-safe).
	if _, err := c.Event(ctx, "thing_changed", "UPDATE",
		map[string]any{"id": 1, "a": nil, "b": 2, "c": nil}, map[string]any{"id": 1, "a": "now", "b": 2, "c": nil},
		EventOptions{}); err != nil {
		t.Fatal(err)
	}

	// DELETE: new is null.
	if _, err := c.Event(ctx, "thing_changed", "DELETE", row, nil, EventOptions{ID: "evt-3", CreatedAt: created}); err != nil {
		t.Fatal(err)
	}
	var del struct {
		Event struct {
			Op   string
			Data struct{ Old, New map[string]any }
		}
	}
	_ = json.Unmarshal(rec.last(t).Body, &del)
	if del.Event.Op != "DELETE" || del.Event.Data.New != nil || del.Event.Data.Old["a"] != "x" || !strings.Contains(string(rec.last(t).Body), `"new":null`) {
		t.Fatalf("DELETE payload %s", rec.last(t).Body)
	}

	// MANUAL (enable_manual: true): old null, new the row.
	if _, err := c.Event(ctx, "thing_changed", "MANUAL", nil, row, EventOptions{ID: "evt-4"}); err != nil {
		t.Fatal(err)
	}
	if b := string(rec.last(t).Body); !strings.Contains(b, `"op":"MANUAL"`) || !strings.Contains(b, `"old":null`) {
		t.Fatalf("MANUAL payload %s", b)
	}

	// Without an id, each delivery gets a fresh UUID; created_at defaults to now.
	if _, err := c.Event(ctx, "thing_changed", "INSERT", nil, row, EventOptions{}); err != nil {
		t.Fatal(err)
	}
	var fresh struct {
		ID        string
		CreatedAt string `json:"created_at"`
	}
	_ = json.Unmarshal(rec.last(t).Body, &fresh)
	if len(fresh.ID) != 36 || strings.HasSuffix(fresh.CreatedAt, "Z") {
		t.Fatalf("fresh id %q created_at %q", fresh.ID, fresh.CreatedAt)
	}
	if _, err := time.Parse(CreatedAtFormat, fresh.CreatedAt); err != nil {
		t.Fatalf("created_at %q: %v", fresh.CreatedAt, err)
	}
}

func TestEventPayloadColumnsAndWebhookFromEnv(t *testing.T) {
	c, rec := setup(t)
	ctx := context.Background()
	oldRow := map[string]any{"id": 7, "a": "x", "b": 1, "secret": "s"}
	newRow := map[string]any{"id": 7, "a": "x", "b": 2, "secret": "t"}

	if _, err := c.Event(ctx, "audit_slim", "INSERT", nil, oldRow, EventOptions{ID: "e1"}); err != nil {
		t.Fatal(err)
	}
	got := rec.last(t)
	if got.Path != "/events/audit_slim" || got.Header.Get("X-Source") != "audit" || got.Header.Get("X-Tenantkit-Secret") != secret {
		t.Fatalf("%s %v", got.Path, got.Header)
	}
	var p struct {
		Event struct {
			Data struct{ Old, New map[string]any }
		}
		DeliveryInfo struct {
			MaxRetries int `json:"max_retries"`
		} `json:"delivery_info"`
	}
	_ = json.Unmarshal(got.Body, &p)
	if !reflect.DeepEqual(p.Event.Data.New, map[string]any{"id": 7.0, "a": "x"}) || p.Event.Data.Old != nil || p.DeliveryInfo.MaxRetries != 0 {
		t.Fatalf("INSERT with payload [id, a]: %s", got.Body)
	}
	if _, err := c.Event(ctx, "audit_slim", "UPDATE", oldRow, newRow, EventOptions{ID: "e2"}); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, []byte(mustField(t, rec.last(t).Body, "event", "data")), `{"old": {"id": 7, "b": 1}, "new": {"id": 7, "b": 2}}`)
}

func mustField(t *testing.T, body []byte, path ...string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	for _, p := range path {
		v = v.(map[string]any)[p]
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestEventRejectedBeforeSending(t *testing.T) {
	c, rec := setup(t)
	ctx := context.Background()
	row := map[string]any{"id": 1, "a": "x", "b": 2}
	cases := []struct {
		name     string
		trigger  string
		op       string
		old, new map[string]any
		want     string
	}{
		{"unknown trigger", "thing_changd", "INSERT", nil, row, "no event trigger"},
		{"op not enabled", "audit_slim", "DELETE", row, nil, "not enabled for DELETE"},
		{"manual not enabled", "audit_slim", "MANUAL", nil, row, "manual"},
		{"bad op", "thing_changed", "UPSERT", nil, row, "want INSERT"},
		{"insert with old", "thing_changed", "INSERT", row, row, "old row nil"},
		{"delete with new", "thing_changed", "DELETE", row, row, "new row nil"},
		{"update without old", "thing_changed", "UPDATE", nil, row, "old row non-nil"},
		{"row lacks listened column", "thing_changed", "UPDATE", map[string]any{"id": 1, "a": "x"}, map[string]any{"id": 1, "a": "y"}, `column "b"`},
		{"row lacks payload column", "audit_slim", "INSERT", nil, map[string]any{"a": "x", "b": 1}, `column "id"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Event(ctx, tc.trigger, tc.op, tc.old, tc.new, EventOptions{})
			if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrRejected mentioning %q", err, tc.want)
			}
		})
	}
	// An UPDATE that changes no listened column produces no event.
	for _, tc := range []struct {
		old, new map[string]any
	}{
		{map[string]any{"id": 1, "a": "x", "b": 2, "c": 1}, map[string]any{"id": 1, "a": "x", "b": 2, "c": 2}},
		{map[string]any{"id": 1, "a": nil, "b": 2.0}, map[string]any{"id": 1, "a": nil, "b": 2}},
	} {
		if _, err := c.Event(ctx, "thing_changed", "UPDATE", tc.old, tc.new, EventOptions{}); !errors.Is(err, ErrNotDelivered) {
			t.Fatalf("unchanged listened columns: err = %v, want ErrNotDelivered", err)
		}
	}
	c.Env = map[string]string{"TENANTKIT_URL": rec.URL, "TENANTKIT_SECRET": secret}
	if _, err := c.Event(ctx, "audit_slim", "INSERT", nil, row, EventOptions{}); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "AUDIT_WEBHOOK_URL") {
		t.Fatalf("webhook_from_env unset: %v", err)
	}
	if n := len(rec.requests()); n != 0 {
		t.Fatalf("%d requests reached the service", n)
	}
}

func TestRemoteSchema(t *testing.T) {
	c, rec := setup(t)
	ctx := context.Background()
	rec.setReply(func(recorded) (int, string) { return 200, `{"data":{"plans":[]}}` })
	resp, err := c.RemoteSchema(ctx, "tenantkit", `query Plans($n: Int) { plans(first: $n) { id } }`,
		map[string]any{"n": 2}, map[string]string{"X-Hasura-User-Id": "u-1"})
	if err != nil || resp.Status != 200 {
		t.Fatalf("%v %+v", err, resp)
	}
	got := rec.last(t)
	if got.Path != "/graphql" || got.Header.Get("X-Hasura-Role") != "user" || got.Header.Get("X-Hasura-User-Id") != "u-1" ||
		got.Header.Get("X-Tenantkit-Secret") != secret || got.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %v", got.Path, got.Header)
	}
	jsonEq(t, got.Body, `{"query": "query Plans($n: Int) { plans(first: $n) { id } }", "variables": {"n": 2}}`)
	var out struct{ Data map[string]any }
	if err := resp.JSON(&out); err != nil || out.Data == nil {
		t.Fatalf("%v %v", out, err)
	}

	// Configuration headers beat session variables, which beat forwarded client headers.
	c.ClientHeaders = http.Header{"X-Hasura-User-Id": {"spoofed"}, "Authorization": {"Bearer jwt"}, "Origin": {"https://app"}}
	if _, err := c.RemoteSchema(ctx, "pinned", `{ plans { id } }`, nil,
		map[string]string{"x-hasura-role": "admin", "x-hasura-user-id": "u-2"}); err != nil {
		t.Fatal(err)
	}
	got = rec.last(t)
	if got.Header.Get("X-Hasura-Role") != "service" || got.Header.Get("X-Hasura-User-Id") != "u-2" ||
		got.Header.Get("Authorization") != "Bearer jwt" || got.Header.Get("X-Forwarded-Origin") != "https://app" {
		t.Fatalf("pinned headers %v", got.Header)
	}
	jsonEq(t, got.Body, `{"query": "{ plans { id } }"}`)

	before := len(rec.requests())
	for _, tc := range []struct{ schema, query, want string }{
		{"nope", `{ plans { id } }`, "not in the metadata"},
		{"tenantkit", `subscription { plans { id } }`, "subscription"},
		{"tenantkit", `{ plans { id }`, "does not parse"},
	} {
		if _, err := c.RemoteSchema(ctx, tc.schema, tc.query, nil, nil); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s %q: %v", tc.schema, tc.query, err)
		}
	}
	if len(rec.requests()) != before {
		t.Fatal("a rejected remote schema call reached the service")
	}
}

// copyFixture copies the fixture metadata to a temporary directory and applies edits
// (file → new content; "" deletes the file).
func copyFixture(t *testing.T, edits map[string]string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(fixture, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(fixture, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range edits {
		p := filepath.Join(dst, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoadRejectsBrokenMetadata(t *testing.T) {
	actionsYAML := readFixture(t, "actions.yaml")
	actionsGQL := readFixture(t, "actions.graphql")
	things := readFixture(t, "databases/default/tables/public_things.yaml")
	remote := readFixture(t, "remote_schemas.yaml")
	replace := func(s, old, new string) string {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("fixture has no %q", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	cases := []struct {
		name  string
		edits map[string]string
		want  string
	}{
		{"action missing from graphql", map[string]string{"actions.graphql": replace(actionsGQL, "createThing(", "createThings(")}, "no Query or Mutation field"},
		{"graphql field missing from yaml", map[string]string{"actions.yaml": actionsYAML[:strings.Index(actionsYAML, "  - name: legacyHook")] + actionsYAML[strings.Index(actionsYAML, "custom_types:"):]}, `field "legacyHook" has no entry in actions.yaml`},
		{"misspelt definition key", map[string]string{"actions.yaml": replace(actionsYAML, "forward_client_headers: false", "forward_client_header: false")}, "forward_client_header"},
		{"header with value and value_from_env", map[string]string{"actions.yaml": replace(actionsYAML, "value: fixed", "value: fixed\n          value_from_env: X")}, "exactly one of value and value_from_env"},
		{"bad kind", map[string]string{"actions.yaml": replace(actionsYAML, "kind: asynchronous", "kind: async")}, "kind"},
		{"async query", map[string]string{"actions.graphql": replace(replace(actionsGQL, "type Query {\n  thingStats", "type Mutation {\n  thingStats"), "type Mutation {\n  importThings", "type Query {\n  importThings")}, "asynchronous action must be a mutation"},
		{"yaml type disagrees", map[string]string{"actions.yaml": replace(actionsYAML, "kind: synchronous\n      handler: '{{TENANTKIT_URL}}/actions/thingStats'", "kind: synchronous\n      type: mutation\n      handler: '{{TENANTKIT_URL}}/actions/thingStats'")}, "type mutation"},
		{"custom type not defined", map[string]string{"actions.yaml": replace(actionsYAML, "- name: ThingStatsOutput", "- name: ThingStatOutput")}, "ThingStatOutput"},
		{"argument default", map[string]string{"actions.graphql": replace(actionsGQL, "size: Int\n", "size: Int = 3\n")}, "default value"},
		{"graphql syntax", map[string]string{"actions.graphql": actionsGQL + "\ntype {"}, "actions.graphql"},
		{"unclosed template", map[string]string{"actions.yaml": replace(actionsYAML, "'{{TENANTKIT_URL}}/actions/createThing'", "'{{TENANTKIT_URL/actions/createThing'")}, "unclosed"},
		{"trigger with webhook and webhook_from_env", map[string]string{"databases/default/tables/public_things.yaml": replace(things, "    webhook: ", "    webhook_from_env: X\n    webhook: ")}, "exactly one of webhook"},
		{"misspelt retry key", map[string]string{"databases/default/tables/public_things.yaml": replace(things, "num_retries", "num_retry")}, "num_retry"},
		{"misspelt columns", map[string]string{"databases/default/tables/public_things.yaml": replace(things, "columns:\n          - a", "colums:\n          - a")}, "colums"},
		{"bad columns", map[string]string{"databases/default/tables/public_things.yaml": replace(things, `columns: "*"`, `columns: all`)}, `"*" or a list`},
		{"duplicate trigger", map[string]string{"databases/default/tables/public_audit.yaml": replace(readFixture(t, "databases/default/tables/public_audit.yaml"), "name: audit_slim", "name: thing_changed")}, "defined twice"},
		{"missing include", map[string]string{"databases/default/tables/public_audit.yaml": ""}, "public_audit.yaml"},
		{"remote schema url twice", map[string]string{"remote_schemas.yaml": replace(remote, "url_from_env: TENANTKIT_GRAPHQL_URL", "url_from_env: TENANTKIT_GRAPHQL_URL\n    url: http://x")}, "exactly one of url"},
		{"wrong version", map[string]string{"version.yaml": "version: 2\n"}, "version 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(copyFixture(t, tc.edits))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLoadMissingFilesAreEmpty(t *testing.T) {
	meta, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Actions)+len(meta.Sources)+len(meta.RemoteSchemas) != 0 {
		t.Fatalf("%+v", meta)
	}
}

// TestRepositoryMetadataLoads checks that the service's own metadata parses and is consistent.
func TestRepositoryMetadataLoads(t *testing.T) {
	meta, err := Load("../../hasura/metadata")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("environment variables the metadata refers to: %v", meta.EnvVarsReferenced())
}
