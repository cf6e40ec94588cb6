// Package actions holds the HTTP handlers Hasura calls: actions (POST /actions/{name}) and event
// triggers (POST /events/{trigger}). Each handler decodes Hasura's payload into a typed input,
// takes the caller from session_variables, calls one domain function and writes the bare output
// object, or an error in Hasura's shape with a 4xx status (Hasura hides the body of a 5xx).
//
// The routes are mounted behind the shared-secret guard (internal/server), so session variables
// are trusted here.
package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/apikey"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/export"
	"github.com/tenantkit/tenantkit/internal/server"
	"github.com/tenantkit/tenantkit/internal/team"
)

// Handler serves actions and event triggers.
type Handler struct {
	Team    *team.Service
	Billing *billing.Service
	Meter   *billing.Meter // counts successful actions per tenant (api_calls); nil counts nothing
	Events  tenantkit.EventLog
	Keys    *apikey.Service
	Domains *team.Domains
	Exports *export.Service // exportTenant; nil: exports are off

	routes sync.Once // builds the two tables below once, not on every request
	acts   map[string]action
	trigs  map[string]trigger
}

// tables returns the action and trigger tables, built on first use.
func (h *Handler) tables() (map[string]action, map[string]trigger) {
	h.routes.Do(func() { h.acts, h.trigs = h.actions(), h.triggers() })
	return h.acts, h.trigs
}

// payload is what Hasura POSTs for an action.
type payload struct {
	Action struct {
		Name string `json:"name"`
	} `json:"action"`
	Input            json.RawMessage   `json:"input"`
	SessionVariables map[string]string `json:"session_variables"`
	// RequestQuery, the client's GraphQL operation, is not read; it must be a string or null.
	RequestQuery stringOrNull `json:"request_query"`
}

// stringOrNull accepts a JSON string or null and keeps nothing of it; any other value is refused
// as encoding/json refuses it for a string.
type stringOrNull struct{}

func (*stringOrNull) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' || string(b) == "null" {
		return nil
	}
	return &json.UnmarshalTypeError{Value: "non-string", Type: reflect.TypeFor[string]()}
}

// action is one action: its input decoded, its output a JSON-encodable value, and the tenant the
// input names ("" if none), for the logs and the api_calls meter.
type action struct {
	run func(ctx context.Context, s tenantkit.Session, input json.RawMessage) (out any, tenant tenantkit.ID, err error)
	sig Signature
}

// Signature is the Go types an action's handler decodes and answers. The metadata consistency
// test compares them field by field with the action's arguments and output type in
// hasura/metadata/actions.graphql.
type Signature struct {
	Input  reflect.Type // a struct: one field per argument
	Output reflect.Type // a struct: one field per field of the output type
}

// typed adapts a domain call taking a decoded input and answering a typed output. Unknown input
// fields are refused: they mean the metadata and the handler disagree about the action's arguments.
// Ids are tenantkit.ID fields, canonicalised by decoding (a UUID in either case comes out in lower
// case; any other spelling is refused with invalid), so fn and the meter see one spelling per id. An input's TenantID field, if it has one,
// is the tenant the call is about: it is added to the request's log context before fn runs.
func typed[In, Out any](fn func(ctx context.Context, s tenantkit.Session, in In) (Out, error)) action {
	tenantField, scoped := reflect.TypeFor[In]().FieldByName("TenantID")
	if scoped && tenantField.Type != reflect.TypeFor[tenantkit.ID]() {
		panic(reflect.TypeFor[In]().String() + ".TenantID must be a tenantkit.ID")
	}
	run := func(ctx context.Context, s tenantkit.Session, raw json.RawMessage) (any, tenantkit.ID, error) {
		var in In
		if f, ok := any(&in).(plainDecoder); !ok || !f.decodePlain(raw) {
			var zero In
			in = zero
			if err := decodeInput(raw, &in); err != nil {
				return nil, "", err
			}
		}
		var tenant tenantkit.ID
		if scoped {
			tenant = reflect.ValueOf(&in).Elem().FieldByIndex(tenantField.Index).Interface().(tenantkit.ID)
			zerolog.Ctx(ctx).UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("tenant_id", string(tenant)) })
		}
		out, err := fn(ctx, s, in)
		if err != nil {
			return nil, tenant, err
		}
		return out, tenant, nil
	}
	return action{run: run, sig: Signature{Input: reflect.TypeFor[In](), Output: reflect.TypeFor[Out]()}}
}

// decodeInput decodes an action's input into in (a pointer), refusing unknown fields. Every
// tenantkit.ID in it comes out canonical; an id in any other spelling is refused. Errors: invalid.
func decodeInput(raw json.RawMessage, in any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(in); err != nil {
		return tenantkit.Errorf(tenantkit.Invalid, "malformed input: %s", decodeProblem(err))
	}
	return nil
}

// plainDecoder is an action input with a fast path (plainjson.go): decodePlain decodes raw as
// decodeInput would and reports true, or reports false and decodeInput decides.
type plainDecoder interface {
	decodePlain(raw []byte) bool
}

// Signatures returns every action's input and output types.
func (h *Handler) Signatures() map[string]Signature {
	out := map[string]Signature{}
	acts, _ := h.tables()
	for name, a := range acts {
		out[name] = a.sig
	}
	return out
}

// Triggers returns, for every event trigger, the table ("schema.name") it must come from.
func (h *Handler) Triggers() map[string]string {
	out := map[string]string{}
	_, trigs := h.tables()
	for name, t := range trigs {
		out[name] = t.table
	}
	return out
}

// decodeProblem describes a JSON decoding error without echoing the input.
func decodeProblem(err error) string {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Type == reflect.TypeFor[tenantkit.ID]():
		return "field " + te.Field + " must be a UUID"
	case errors.As(err, &te):
		return "field " + te.Field + " must be " + te.Type.String()
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.EOF):
		return "empty input"
	}
	return "not a JSON object"
}

// actions lists every action by its Hasura name.
func (h *Handler) actions() map[string]action {
	return map[string]action{
		"createTenant":      typed(h.createTenant),
		"inviteMember":      typed(h.inviteMember),
		"acceptInvitation":  typed(h.acceptInvitation),
		"revokeInvitation":  typed(h.revokeInvitation),
		"resendInvitation":  typed(h.resendInvitation),
		"changeMemberRole":  typed(h.changeMemberRole),
		"removeMember":      typed(h.removeMember),
		"transferOwnership": typed(h.transferOwnership),
		"checkPermission":   typed(h.checkPermission),
		"recordUsage":       typed(h.recordUsage),

		"createCheckoutSession":      typed(h.createCheckoutSession),
		"createBillingPortalSession": typed(h.createBillingPortalSession),
		"cancelSubscription":         typed(h.cancelSubscription),
		"resumeSubscription":         typed(h.resumeSubscription),
		"changePlan":                 typed(h.changePlan),

		"createApiKey": typed(h.createAPIKey),
		"revokeApiKey": typed(h.revokeAPIKey),

		"addDomain":         typed(h.addDomain),
		"verifyDomain":      typed(h.verifyDomain),
		"setDomainPolicy":   typed(h.setDomainPolicy),
		"removeDomain":      typed(h.removeDomain),
		"acceptDomainOffer": typed(h.acceptDomainOffer),
		"previewPlanChange": typed(h.previewPlanChange),

		"exportTenant": typed(h.exportTenant),

		"deleteTenant":  typed(h.deleteTenant),
		"restoreTenant": typed(h.restoreTenant),
	}
}

// Names returns the names of every action and event trigger served.
func (h *Handler) Names() []string {
	var names []string
	acts, trigs := h.tables()
	for n := range acts {
		names = append(names, n)
	}
	for n := range trigs {
		names = append(names, n)
	}
	return names
}

// ServeAction answers POST /actions/{name}.
func (h *Handler) ServeAction(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	log := zerolog.Ctx(ctx)
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("action", name) })
	acts, _ := h.tables()
	fn, ok := acts[name]
	if !ok {
		writeError(w, r, tenantkit.Errorf(tenantkit.NotFound, "unknown action %q", name))
		return
	}
	var p payload
	var err error
	if body, ok := server.RequestBody(r); ok {
		err = decodePayload(body, &p)
	} else {
		err = json.NewDecoder(r.Body).Decode(&p)
	}
	if err != nil {
		writeError(w, r, tenantkit.Errorf(tenantkit.Invalid, "malformed action payload"))
		return
	}
	if p.Action.Name != name {
		writeError(w, r, tenantkit.Errorf(tenantkit.Invalid, "payload action %q does not match the route", p.Action.Name))
		return
	}
	session := tenantkit.NewSession(p.SessionVariables)
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("user_id", session.UserID()) })
	out, tenant, err := fn.run(tenantkit.WithSession(ctx, session), session, p.Input)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if h.Meter != nil && tenant != "" && !unmetered(out) {
		h.Meter.Count(tenant)
	}
	writeJSON(w, http.StatusOK, out)
}

// unmetered reports an answer whose call is not counted as the tenant's api_call: a data export,
// or an answer to a caller who is not a member of the tenant named in the input (a tenant's
// api_calls are its members' calls, so nobody can run up another tenant's bill by naming it).
func unmetered(out any) bool {
	o, ok := out.(interface{ unmetered() bool })
	return ok && o.unmetered()
}

// statusOf is the one table from error code to HTTP status for Hasura. Everything the caller can
// act on is a 4xx so Hasura passes message and code through; unavailable is 4xx too (424) so the
// client sees "try again" instead of Hasura's opaque "internal error".
func statusOf(code string) int {
	switch code {
	case tenantkit.Invalid:
		return http.StatusBadRequest
	case tenantkit.Unauthenticated:
		return http.StatusUnauthorized
	case tenantkit.Forbidden, team.InvitationEmailMismatch, team.EmailUnverified:
		return http.StatusForbidden
	case tenantkit.NotFound, team.InvitationNotFound:
		return http.StatusNotFound
	case tenantkit.Conflict, team.SlugTaken, team.InvitationUsed, tenantkit.LastOwner, team.DomainTaken, team.DomainUnverified, billing.PreviewExpired:
		return http.StatusConflict
	case team.InvitationExpired, team.InvitationRevoked, team.RestoreExpired:
		return http.StatusGone
	case tenantkit.PlanLimit:
		return http.StatusPaymentRequired
	case team.RateLimited:
		return http.StatusTooManyRequests
	case tenantkit.Unavailable, billing.BillingUnavailable:
		return http.StatusFailedDependency
	case tenantkit.Internal:
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// writeError writes err in Hasura's action error shape. Uncoded errors are logged in full and shown
// as "internal error"; unavailable ones are logged with their cause.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := tenantkit.ErrorCode(err)
	log := zerolog.Ctx(r.Context())
	switch code {
	case tenantkit.Internal:
		log.Error().Err(err).Msg("internal error")
	case tenantkit.Unavailable, billing.BillingUnavailable:
		// the cause (a database outage, a missing privilege, Stripe down) is for the operator
		log.Warn().Err(err).Msg("unavailable")
	}
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("code", code) })
	server.WriteError(w, r, statusOf(code), code, tenantkit.ErrorMessage(err))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if e, ok := v.(plainEncoder); ok {
		if b, ok := e.appendJSON(make([]byte, 0, 64)); ok {
			_, _ = w.Write(b)
			return
		}
	}
	_ = json.NewEncoder(w).Encode(v)
}

// plainEncoder is an output with a fast path: appendJSON appends exactly what json.Encoder.Encode
// writes for it (newline included) and reports true, or reports false and encoding/json writes it.
type plainEncoder interface {
	appendJSON(b []byte) ([]byte, bool)
}
