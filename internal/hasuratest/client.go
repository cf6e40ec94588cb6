package hasuratest

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
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	gqlast "github.com/vektah/gqlparser/v2/ast"
	gqlparser "github.com/vektah/gqlparser/v2/parser"
)

// UserAgent is the User-Agent this client sends; Hasura sends "hasura-graphql-engine/<version>"
// (Hasura.HTTP.defaultHeaders).
const UserAgent = "hasura-graphql-engine/v2-hasuratest"

// CreatedAtFormat is how Hasura v2 renders an event's created_at: the event_log column is a
// timestamp without time zone, serialised as an aeson LocalTime, so there is no zone suffix and
// trailing zeros of the fraction are dropped ("2024-05-01T10:20:30.123456"). Hasura's own docs
// still show an older form with a "Z"; handlers should accept both.
const CreatedAtFormat = "2006-01-02T15:04:05.999999"

// ErrRejected wraps every error for a call that Hasura itself would refuse before contacting
// the service (unknown action, undeclared or missing argument, role without permission,
// operation not enabled on the trigger, …). Nothing is sent in that case.
var ErrRejected = errors.New("hasura would reject this call")

// ErrNotDelivered is returned (wrapped in ErrRejected) by Event for an UPDATE that Hasura would
// not turn into an event, because none of the columns the trigger listens to changed.
var ErrNotDelivered = errors.New("hasura would not deliver this event")

func rejected(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRejected}, args...)...)
}

// Client calls tenantkit the way Hasura does, from the metadata.
type Client struct {
	Meta *Metadata
	// Env holds the values of the environment variables the metadata refers to ({{VAR}}
	// templates, value_from_env, webhook_from_env, url_from_env). A variable missing from Env
	// is an error, as it is for Hasura.
	Env map[string]string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// ClientHeaders are the headers of the GraphQL request Hasura is (notionally) serving. They
	// are forwarded, filtered as Hasura filters them, only to actions and remote schemas whose
	// metadata sets forward_client_headers.
	ClientHeaders http.Header
}

// NewClient returns a client for meta that resolves environment variables from env.
func NewClient(meta *Metadata, env map[string]string) *Client {
	return &Client{Meta: meta, Env: env}
}

// Response is what the service answered.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// HasuraError, for an action, is what Hasura would report to the GraphQL client instead of
	// the action's result because the response breaks the action contract: a 2xx body that does
	// not fit the output type (missing non-null field, field the type does not declare, object
	// where a list is expected or the reverse), a 4xx body without a string "message", or any
	// status other than 2xx and 4xx (Hasura turns those into an opaque "internal error"). It is
	// nil when Hasura would accept the response; a well-formed 4xx is accepted (Hasura passes it
	// on as a GraphQL error, see ActionError). Always nil for events and remote schemas.
	HasuraError error
}

// JSON decodes the body into v.
func (r *Response) JSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("hasuratest: decoding %d response %q: %w", r.Status, truncate(r.Body), err)
	}
	return nil
}

// ActionError is an action handler's error response as Hasura reads it:
// {"message": "...", "extensions": {"code": "...", ...}}; a top-level "code" is the older form.
type ActionError struct {
	Message    string
	Code       string // extensions.code, else the top-level code
	Extensions map[string]any
}

// ActionError decodes the body as an action error; it fails when the status is not 4xx or the
// body is not an error Hasura would accept.
func (r *Response) ActionError() (*ActionError, error) {
	if r.Status < 400 || r.Status > 499 {
		return nil, fmt.Errorf("hasuratest: status %d is not an action error (Hasura reads errors only from 4xx): %s", r.Status, truncate(r.Body))
	}
	return decodeActionError(r.Body)
}

func decodeActionError(body []byte) (*ActionError, error) {
	var raw struct {
		Message    *string         `json:"message"`
		Code       json.RawMessage `json:"code"`
		Extensions json.RawMessage `json:"extensions"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("hasuratest: action error body is not a JSON object: %w: %s", err, truncate(body))
	}
	if raw.Message == nil {
		return nil, fmt.Errorf("hasuratest: action error body has no string \"message\": %s", truncate(body))
	}
	ae := &ActionError{Message: *raw.Message}
	if len(raw.Code) > 0 && string(raw.Code) != "null" {
		if err := json.Unmarshal(raw.Code, &ae.Code); err != nil {
			return nil, fmt.Errorf("hasuratest: action error \"code\" is not a string: %s", truncate(body))
		}
	}
	if len(raw.Extensions) > 0 && string(raw.Extensions) != "null" {
		if err := json.Unmarshal(raw.Extensions, &ae.Extensions); err != nil {
			return nil, fmt.Errorf("hasuratest: action error \"extensions\" is not an object: %s", truncate(body))
		}
		if c, ok := ae.Extensions["code"].(string); ok {
			ae.Code = c
		}
	}
	return ae, nil
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// ---- session variables ----

// hasuraSession normalises session variables the way Hasura builds them for a request: names
// lower-cased (Hasura.Session.sessionVariableToText), every name an x-hasura-* name, the admin
// secret removed, and x-hasura-role set (mkUserInfo inserts it; "user" here when absent or empty,
// standing in for the JWT's default role).
func hasuraSession(session map[string]string) (map[string]string, error) {
	out, err := lowerSession(session)
	if err != nil {
		return nil, err
	}
	delete(out, "x-hasura-admin-secret")
	delete(out, "x-hasura-access-key")
	if out["x-hasura-role"] == "" {
		out["x-hasura-role"] = "user"
	}
	return out, nil
}

func lowerSession(session map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(session)+1)
	for k, v := range session {
		lk := strings.ToLower(k)
		if !strings.HasPrefix(lk, "x-hasura-") {
			return nil, rejected("session variable %q: Hasura session variables are x-hasura-* names", k)
		}
		if _, dup := out[lk]; dup {
			return nil, rejected("session variable %q given twice (names are case-insensitive)", lk)
		}
		out[lk] = v
	}
	return out, nil
}

// ---- environment ----

func (c *Client) env(name string) (string, bool) {
	v, ok := c.Env[name]
	return v, ok
}

type templateItem struct {
	text     string
	variable bool
}

// parseTemplate splits a Hasura URL template: {{VAR}} anywhere in the string is replaced by the
// value of the environment variable VAR (Data.URL.Template).
func parseTemplate(s string) ([]templateItem, error) {
	var items []templateItem
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			items = append(items, templateItem{text: s})
			break
		}
		if i > 0 {
			items = append(items, templateItem{text: s[:i]})
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", s)
		}
		items = append(items, templateItem{text: s[i+2 : i+2+j], variable: true})
		s = s[i+2+j+2:]
	}
	return items, nil
}

func (c *Client) renderTemplate(s string) (string, error) {
	items, err := parseTemplate(s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	var missing []string
	for _, it := range items {
		if !it.variable {
			b.WriteString(it.text)
			continue
		}
		v, ok := c.env(it.text)
		if !ok {
			missing = append(missing, it.text)
			continue
		}
		b.WriteString(v)
	}
	if len(missing) > 0 {
		return "", rejected("Value for environment variables not found: %s", strings.Join(missing, ", "))
	}
	return b.String(), nil
}

// headerList resolves configured headers (Hasura.RQL.DDL.Headers.makeHeadersFromConf).
func (c *Client) headerList(hs []Header) ([][2]string, error) {
	out := make([][2]string, 0, len(hs))
	for _, h := range hs {
		v := h.Value
		if h.ValueFromEnv != "" {
			var ok bool
			if v, ok = c.env(h.ValueFromEnv); !ok {
				return nil, rejected("header %s: environment variable %q not set", h.Name, h.ValueFromEnv)
			}
		}
		out = append(out, [2]string{h.Name, v})
	}
	return out, nil
}

// ignoredClientHeaders are the client request headers Hasura never forwards
// (Hasura.Server.Utils.commonClientHeadersIgnored).
var ignoredClientHeaders = []string{
	"Content-Length", "Content-MD5", "User-Agent", "Host", "Origin", "Referer", "Accept",
	"Accept-Encoding", "Accept-Language", "Accept-Datetime", "Cache-Control", "Connection", "DNT",
	"Content-Type",
}

// forwardedClientHeaders mirrors mkClientHeadersForward: the X-Forwarded-* copies of Host,
// User-Agent and Origin, then every other client header except the ignored ones and x-hasura-*.
func (c *Client) forwardedClientHeaders() [][2]string {
	var out [][2]string
	names := make([]string, 0, len(c.ClientHeaders))
	for k := range c.ClientHeaders {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		ck := http.CanonicalHeaderKey(k)
		switch ck {
		case "Host", "User-Agent", "Origin":
			for _, v := range c.ClientHeaders[k] {
				out = append(out, [2]string{"X-Forwarded-" + ck, v})
			}
		}
	}
	for _, k := range names {
		ck := http.CanonicalHeaderKey(k)
		if slices.Contains(ignoredClientHeaders, ck) || strings.HasPrefix(strings.ToLower(k), "x-hasura-") {
			continue
		}
		for _, v := range c.ClientHeaders[k] {
			out = append(out, [2]string{ck, v})
		}
	}
	return out
}

// post sends a JSON POST with the given headers (later entries replace earlier ones of the same
// name) and reads the whole answer.
func (c *Client) post(ctx context.Context, url string, timeout time.Duration, headers [][2]string, body any) (*Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: encoding the payload: %w", err)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, rejected("handler URL %q: %v", url, err)
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("hasuratest: reading the answer of POST %s: %w", url, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: rb}, nil
}

// ---- actions ----

// actionPayload is the body of an action call (Hasura.GraphQL.Execute.Action.Types
// ActionWebhookPayload; request_query is null for asynchronous actions).
type actionPayload struct {
	Action struct {
		Name string `json:"name"`
	} `json:"action"`
	Input            map[string]any    `json:"input"`
	SessionVariables map[string]string `json:"session_variables"`
	RequestQuery     *string           `json:"request_query"`
}

// Action calls the action exactly as Hasura would. It resolves the handler URL template with
// Env, sets Content-Type and the configured headers (value or value_from_env; plus the filtered
// client headers when forward_client_headers is set), and POSTs
// {"action":{"name"},"input","session_variables","request_query"}, where input holds the given
// arguments (type-checked against actions.graphql; omitted optional arguments stay absent) and
// session_variables the session, lower-cased, with x-hasura-role defaulting to "user".
//
// It returns an error wrapping ErrRejected, without sending anything, when Hasura would refuse
// the request: the action is not in the metadata, an input key is not an argument declared in
// actions.graphql, a non-null argument is missing or null, a value does not fit its type, or
// the session's role has no permission entry for the action (role "admin" always may). The
// response's HasuraError tells whether Hasura would accept what the service answered.
func (c *Client) Action(ctx context.Context, name string, input map[string]any, session map[string]string) (*Response, error) {
	req, err := c.ActionRequest(name, input, session)
	if err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, req.URL, req.Timeout, req.Headers, json.RawMessage(req.Body))
	if err != nil {
		return nil, err
	}
	resp.HasuraError = c.Meta.checkActionResponse(req.action, resp)
	return resp, nil
}

// Request is an HTTP request as Hasura would send it, built but not sent.
type Request struct {
	URL     string
	Headers [][2]string // in Hasura's order
	Body    []byte      // the JSON payload
	Timeout time.Duration

	action *Action
}

// ActionRequest builds the request Action would send, without sending it: for a load generator
// that sends the very same bytes many times. Errors as Action's.
func (c *Client) ActionRequest(name string, input map[string]any, session map[string]string) (*Request, error) {
	a := c.Meta.Action(name)
	if a == nil {
		return nil, rejected("action %q is not in the metadata (Hasura: field %q not found in type: 'mutation_root'/'query_root')", name, name)
	}
	if a.Transformed {
		return nil, fmt.Errorf("hasuratest: action %q has a request or response transform, which this client does not emulate", name)
	}
	sess, err := hasuraSession(session)
	if err != nil {
		return nil, err
	}
	role := sess["x-hasura-role"]
	if role != "admin" && !slices.Contains(a.Roles, role) {
		return nil, rejected("role %q has no permission for action %q (Hasura: field %q not found in type: '%s_root')", role, name, name, a.Type)
	}
	in, err := c.Meta.coerceArguments(a, input)
	if err != nil {
		return nil, err
	}
	url, err := c.renderTemplate(a.Handler)
	if err != nil {
		return nil, fmt.Errorf("action %s handler: %w", name, err)
	}
	conf, err := c.headerList(a.Headers)
	if err != nil {
		return nil, err
	}
	// Hasura builds the header list as HashMap.fromList (configuration ++ client): for a name in
	// both, the later (client) entry wins. Content-Type always comes first.
	headers := append([][2]string{{"Content-Type", "application/json"}, {"User-Agent", UserAgent}}, conf...)
	if a.ForwardClientHeaders {
		headers = append(headers, c.forwardedClientHeaders()...)
	}
	var payload actionPayload
	payload.Action.Name = a.Name
	payload.Input = in
	payload.SessionVariables = sess
	if a.Kind == "synchronous" {
		q := c.Meta.requestQuery(a, in)
		payload.RequestQuery = &q
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return &Request{URL: url, Headers: headers, Body: body, Timeout: time.Duration(a.TimeoutSeconds) * time.Second,
		action: a}, nil
}

// requestQuery renders the GraphQL operation a client would have sent for this call: the
// action's field with the given arguments as variables and the output type's fields selected.
func (m *Metadata) requestQuery(a *Action, in map[string]any) string {
	var vars, args []string
	for _, arg := range a.Field.Arguments {
		if _, ok := in[arg.Name]; !ok {
			continue
		}
		vars = append(vars, "$"+arg.Name+": "+arg.Type.String())
		args = append(args, arg.Name+": $"+arg.Name)
	}
	var b strings.Builder
	b.WriteString(a.Type + " " + a.Name)
	if len(vars) > 0 {
		b.WriteString("(" + strings.Join(vars, ", ") + ")")
	}
	b.WriteString(" { " + a.Name)
	if len(args) > 0 {
		b.WriteString("(" + strings.Join(args, ", ") + ")")
	}
	b.WriteString(m.selection(a.Field.Type.Name(), 0))
	b.WriteString(" }")
	return b.String()
}

func (m *Metadata) selection(typeName string, depth int) string {
	def := m.Types[typeName]
	if def == nil || def.Kind != gqlast.Object || depth > 3 {
		return ""
	}
	var fields []string
	for _, f := range def.Fields {
		sub := m.selection(f.Type.Name(), depth+1)
		if ref := m.Types[f.Type.Name()]; ref != nil && ref.Kind == gqlast.Object && sub == "" {
			continue
		}
		fields = append(fields, f.Name+sub)
	}
	if len(fields) == 0 {
		return ""
	}
	return " { " + strings.Join(fields, " ") + " }"
}

// checkActionResponse applies the checks of Hasura's callWebhook to what the handler answered.
func (m *Metadata) checkActionResponse(a *Action, r *Response) error {
	switch {
	case r.Status >= 200 && r.Status <= 299:
		var v any
		dec := json.NewDecoder(bytes.NewReader(r.Body))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("not a valid json response from webhook: %v", err)
		}
		def := m.Types[a.Field.Type.Name()]
		if def == nil || def.Kind != gqlast.Object {
			return nil // scalar output: passed through as is
		}
		list := a.Field.Type.Elem != nil
		switch v := v.(type) {
		case []any:
			if !list {
				return errors.New("expecting object for action webhook response but got array")
			}
			for _, item := range v {
				obj, ok := item.(map[string]any)
				if !ok {
					return errors.New("expecting array of objects for action webhook response")
				}
				if err := checkOutputObject(def, obj); err != nil {
					return err
				}
			}
			return nil
		case map[string]any:
			if list {
				return errors.New("expecting array for action webhook response but got object")
			}
			return checkOutputObject(def, v)
		case nil:
			if a.Field.Type.NonNull {
				return errors.New("webhook returned null for a non-null output type")
			}
			return nil
		default:
			return fmt.Errorf("expecting object or array for action webhook response, got %s", truncate(r.Body))
		}
	case r.Status >= 400 && r.Status <= 499:
		_, err := decodeActionError(r.Body)
		return err
	default:
		return fmt.Errorf("internal error: expecting 2xx or 4xx status code, but found %d", r.Status)
	}
}

func checkOutputObject(def *gqlast.Definition, obj map[string]any) error {
	var extra []string
	for k := range obj {
		if def.Fields.ForName(k) == nil {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("unexpected fields in webhook response: %s", strings.Join(extra, ", "))
	}
	for _, f := range def.Fields {
		if !f.Type.NonNull {
			continue
		}
		v, ok := obj[f.Name]
		if !ok {
			return fmt.Errorf("field %q expected in webhook response, but not found", f.Name)
		}
		if v == nil {
			return fmt.Errorf("expecting not null value for field %q", f.Name)
		}
	}
	return nil
}

// ---- events ----

// EventOptions are the parts of an event delivery that are not in the metadata.
type EventOptions struct {
	// ID is the event id; empty means a fresh random UUID. Redeliveries reuse the id.
	ID string
	// CurrentRetry is delivery_info.current_retry: 0 on the first delivery.
	CurrentRetry int
	// Session is event.session_variables: the hasura.user setting of the transaction that wrote
	// the row (names lower-cased), or nil (JSON null) for a write made outside a Hasura mutation
	// that did not set it.
	Session map[string]string
	// CreatedAt is created_at; zero means now. It is rendered in UTC with CreatedAtLayout.
	CreatedAt time.Time
	// CreatedAtLayout overrides CreatedAtFormat (e.g. to test a handler with the "Z" form).
	CreatedAtLayout string
	// TraceID and SpanID fill event.trace_context; when both are empty it is null.
	TraceID, SpanID string
}

// eventPayload is Hasura's EventPayload (Hasura.Eventing.EventTrigger), fields in the order
// aeson writes them.
type eventPayload struct {
	CreatedAt    string `json:"created_at"`
	DeliveryInfo struct {
		CurrentRetry int `json:"current_retry"`
		MaxRetries   int `json:"max_retries"`
	} `json:"delivery_info"`
	Event struct {
		Data struct {
			New map[string]any `json:"new"`
			Old map[string]any `json:"old"`
		} `json:"data"`
		Op               string            `json:"op"`
		SessionVariables map[string]string `json:"session_variables"`
		TraceContext     *traceContext     `json:"trace_context"`
	} `json:"event"`
	ID    string `json:"id"`
	Table struct {
		Name   string `json:"name"`
		Schema string `json:"schema"`
	} `json:"table"`
	Trigger struct {
		Name string `json:"name"`
	} `json:"trigger"`
}

type traceContext struct {
	SpanID  string `json:"span_id"`
	TraceID string `json:"trace_id"`
}

// Event delivers an event trigger payload as Hasura would. It finds the trigger by name in the
// table files, resolves webhook / webhook_from_env and the headers, and POSTs
// {"event":{"op","data":{"old","new"},"session_variables","trace_context"},"created_at","id",
// "delivery_info":{"max_retries","current_retry"},"trigger":{"name"},"table":{"schema","name"}}.
//
// op is INSERT, UPDATE, DELETE or MANUAL; oldRow and newRow are the full rows (nil where Hasura
// sends null: old for INSERT and MANUAL, new for DELETE). data.old/data.new carry the columns
// of the trigger's "payload" spec for that op (all columns when it has none, the usual case):
// the "columns" spec does not filter the payload, it names the columns the trigger listens to,
// so an UPDATE in which none of them changed produces no event and Event returns ErrNotDelivered.
// It returns an ErrRejected error, sending nothing, for an unknown trigger, an op the trigger
// does not enable, rows that do not fit the op, or a row missing a column the spec names.
func (c *Client) Event(ctx context.Context, trigger string, op string, oldRow, newRow map[string]any, opts EventOptions) (*Response, error) {
	et, err := c.Meta.EventTrigger(trigger)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if et.Transformed {
		return nil, fmt.Errorf("hasuratest: event trigger %q has a request or response transform, which this client does not emulate", trigger)
	}
	op = strings.ToUpper(op)
	var spec *OperationSpec
	switch op {
	case "INSERT":
		spec = et.Insert
	case "UPDATE":
		spec = et.Update
	case "DELETE":
		spec = et.Delete
	case "MANUAL":
		if !et.EnableManual {
			return nil, rejected("event trigger %q does not enable manual invocation", trigger)
		}
	default:
		return nil, rejected("op %q, want INSERT, UPDATE, DELETE or MANUAL", op)
	}
	if op != "MANUAL" && spec == nil {
		return nil, rejected("event trigger %q is not enabled for %s", trigger, op)
	}
	needOld, needNew := op == "UPDATE" || op == "DELETE", op != "DELETE"
	if (oldRow != nil) != needOld || (newRow != nil) != needNew {
		return nil, rejected("%s takes old row %s and new row %s", op, presence(needOld), presence(needNew))
	}
	oldN, err := normaliseRow(oldRow)
	if err != nil {
		return nil, err
	}
	newN, err := normaliseRow(newRow)
	if err != nil {
		return nil, err
	}
	var oldOut, newOut map[string]any
	if spec != nil {
		for _, row := range []map[string]any{oldN, newN} {
			if row == nil {
				continue
			}
			for _, cols := range []Columns{spec.Columns, spec.Payload} {
				for _, col := range cols.Names {
					if _, ok := row[col]; !ok {
						return nil, rejected("event trigger %q names column %q, which the row you passed does not have (pass full rows)", trigger, col)
					}
				}
			}
		}
		if op == "UPDATE" && !listenedChange(spec.Columns, oldN, newN) {
			return nil, fmt.Errorf("%w: %w: UPDATE of %s.%s changed none of the columns trigger %q listens to (%s)",
				ErrRejected, ErrNotDelivered, et.Schema, et.Table, trigger, strings.Join(spec.Columns.List(), ", "))
		}
		oldOut, newOut = project(oldN, spec.Payload), project(newN, spec.Payload)
	} else {
		newOut = newN // MANUAL: the current row, all columns
	}

	var p eventPayload
	created := opts.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	layout := opts.CreatedAtLayout
	if layout == "" {
		layout = CreatedAtFormat
	}
	p.CreatedAt = created.UTC().Format(layout)
	p.DeliveryInfo.CurrentRetry = opts.CurrentRetry
	p.DeliveryInfo.MaxRetries = et.Retry.NumRetries
	p.Event.Data.Old, p.Event.Data.New = oldOut, newOut
	p.Event.Op = op
	if opts.Session != nil {
		if p.Event.SessionVariables, err = lowerSession(opts.Session); err != nil {
			return nil, err
		}
	}
	if opts.TraceID != "" || opts.SpanID != "" {
		p.Event.TraceContext = &traceContext{TraceID: opts.TraceID, SpanID: opts.SpanID}
	}
	p.ID = opts.ID
	if p.ID == "" {
		p.ID = uuid.NewString()
	}
	p.Table.Name, p.Table.Schema = et.Table, et.Schema
	p.Trigger.Name = et.Name
	if opts.CurrentRetry < 0 {
		return nil, rejected("negative current_retry")
	}

	var url string
	if et.WebhookFromEnv != "" {
		v, ok := c.env(et.WebhookFromEnv)
		if !ok {
			return nil, rejected("webhook_from_env: environment variable %q not set", et.WebhookFromEnv)
		}
		url = v
	} else if url, err = c.renderTemplate(et.Webhook); err != nil {
		return nil, fmt.Errorf("event trigger %s webhook: %w", trigger, err)
	}
	conf, err := c.headerList(et.Headers)
	if err != nil {
		return nil, err
	}
	// Hasura.HTTP.addDefaultHeaders: Content-Type and User-Agent replace configured ones.
	headers := append(conf, [2]string{"Content-Type", "application/json"}, [2]string{"User-Agent", UserAgent})
	return c.post(ctx, url, time.Duration(et.Retry.TimeoutSec)*time.Second, headers, p)
}

func presence(b bool) string {
	if b {
		return "non-nil"
	}
	return "nil"
}

// normaliseRow passes a row through JSON so that values compare the way their JSON does.
func normaliseRow(row map[string]any) (map[string]any, error) {
	if row == nil {
		return nil, nil
	}
	b, err := json.Marshal(row)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: row is not JSON: %w", err)
	}
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// listenedChange reports whether an UPDATE fires the trigger: Hasura's trigger function compares
// row(OLD.<listened columns>) and row(NEW.<…>) held in record variables with <>, a composite
// comparison in which NULL equals NULL and differs from any value (src-rsr/trigger.sql.shakespeare;
// PostgreSQL "Composite Type Comparison").
func listenedChange(cols Columns, oldRow, newRow map[string]any) bool {
	names := cols.Names
	if cols.All {
		seen := map[string]bool{}
		for _, r := range []map[string]any{oldRow, newRow} {
			for k := range r {
				if !seen[k] {
					seen[k] = true
					names = append(names, k)
				}
			}
		}
	}
	for _, n := range names {
		if !jsonEqual(oldRow[n], newRow[n]) {
			return true
		}
	}
	return false
}

func jsonEqual(a, b any) bool {
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	if bytes.Equal(ab, bb) {
		return true
	}
	// Numbers written differently (1 vs 1.0) are equal in SQL.
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		af, e1 := an.Float64()
		bf, e2 := bn.Float64()
		return e1 == nil && e2 == nil && af == bf
	}
	return false
}

func project(row map[string]any, cols Columns) map[string]any {
	if row == nil || cols.All {
		return row
	}
	out := make(map[string]any, len(cols.Names))
	for _, n := range cols.Names {
		out[n] = row[n]
	}
	return out
}

// ---- remote schemas ----

// RemoteSchema posts a GraphQL request to the remote schema named name in remote_schemas.yaml,
// with its configured headers, the session as x-hasura-* headers (lower-cased names,
// x-hasura-role defaulting to "user") and, when forward_client_headers is set, the filtered
// client headers; configured headers win over session headers, which win over client headers
// (Hasura.GraphQL.RemoteServer.execRemoteGQ). It rejects a query that does not parse and a
// subscription, which Hasura does not send to remote schemas. Unlike Hasura, it sends the query
// as given: Hasura re-renders the part of the client's query that belongs to the remote schema.
func (c *Client) RemoteSchema(ctx context.Context, name, query string, variables map[string]any, session map[string]string) (*Response, error) {
	rs := c.Meta.RemoteSchema(name)
	if rs == nil {
		return nil, rejected("remote schema %q is not in the metadata", name)
	}
	doc, err := gqlparser.ParseQuery(&gqlast.Source{Name: "query", Input: query})
	if err != nil {
		return nil, rejected("query does not parse: %v", err)
	}
	for _, op := range doc.Operations {
		if op.Operation == gqlast.Subscription {
			return nil, rejected("subscription to remote server is not supported")
		}
	}
	sess, err := hasuraSession(session)
	if err != nil {
		return nil, err
	}
	var url string
	if rs.URLFromEnv != "" {
		v, ok := c.env(rs.URLFromEnv)
		if !ok {
			return nil, rejected("url_from_env: environment variable %q not set", rs.URLFromEnv)
		}
		url = v
	} else if url, err = c.renderTemplate(rs.URL); err != nil {
		return nil, fmt.Errorf("remote schema %s url: %w", name, err)
	}
	conf, err := c.headerList(rs.Headers)
	if err != nil {
		return nil, err
	}
	// Lowest priority first: post sets them in order, so later ones win.
	var headers [][2]string
	if rs.ForwardClientHeaders {
		headers = append(headers, c.forwardedClientHeaders()...)
	}
	for _, k := range slices.Sorted(maps.Keys(sess)) {
		headers = append(headers, [2]string{k, sess[k]})
	}
	headers = append(headers, conf...)
	headers = append(headers, [2]string{"Content-Type", "application/json"}, [2]string{"User-Agent", UserAgent})
	body := map[string]any{"query": query}
	if variables != nil {
		body["variables"] = variables
	}
	return c.post(ctx, url, time.Duration(rs.TimeoutSeconds)*time.Second, headers, body)
}
