package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/mail/mailtest"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// stack is the service as Hasura sees it: started on a fresh database, with an SMTP peer, and a
// client that builds every call from hasura/metadata the way Hasura would.
type stack struct {
	m      *Main
	admin  *pgxpool.Pool
	hasura *hasuratest.Client
	smtp   *mailtest.Server
}

var metadata = func() func(t *testing.T) *hasuratest.Metadata {
	return func(t *testing.T) *hasuratest.Metadata {
		t.Helper()
		meta, err := hasuratest.Load("../../hasura/metadata")
		if err != nil {
			t.Fatalf("load hasura/metadata: %v", err)
		}
		return meta
	}
}()

// stripeMock is one stripe-mock for the test process, started on first use (the kernel stops it
// with the process).
var stripeMock = sync.OnceValues(func() (*stripetest.Server, error) {
	return stripetest.Start(context.Background())
})

// withStripe is the environment of a stack billing through stripe-mock.
func withStripe(t *testing.T) []string {
	t.Helper()
	sm, err := stripeMock()
	if err != nil {
		t.Fatalf("stripe-mock: %v", err)
	}
	return []string{"STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", sm.URL, "STRIPE_WEBHOOK_SECRET", testWebhookSecret}
}

const testWebhookSecret = "whsec_test_0123456789"

func newStack(t *testing.T, env ...string) *stack {
	t.Helper()
	smtp := mailtest.Start(t)
	m := start(t, append([]string{"SMTP_URL", smtp.URL()}, env...)...)
	return stackOn(t, m, smtp)
}

// stackOn is the stack of a service already started (with SMTP_URL smtp's).
func stackOn(t *testing.T, m *Main, smtp *mailtest.Server) *stack {
	t.Helper()
	admin, err := pgxpool.New(context.Background(), directURL(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	client := hasuratest.NewClient(metadata(t), map[string]string{
		"TENANTKIT_URL":         m.HTTP.URL(),
		"TENANTKIT_SECRET":      testSecret,
		"TENANTKIT_GRAPHQL_URL": m.HTTP.URL() + "/graphql",
	})
	return &stack{m: m, admin: admin, hasura: client, smtp: smtp}
}

var userSeq atomic.Int64

// user creates a signed-up user whose email is verified (as hasura-auth would after the
// verification link) and returns its id.
func (s *stack) user(t *testing.T, email string) string {
	t.Helper()
	if email == "" {
		email = fmt.Sprintf("user%d@example.com", userSeq.Add(1))
	}
	var id string
	if err := s.admin.QueryRow(context.Background(), `INSERT INTO auth.users (email, display_name, email_verified) VALUES ($1, $2, true) RETURNING id::text`,
		email, strings.Split(email, "@")[0]).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func session(userID string) map[string]string {
	if userID == "" {
		return map[string]string{"x-hasura-role": "user"}
	}
	return map[string]string{"x-hasura-role": "user", "x-hasura-user-id": userID}
}

// result is an action's answer: the output on success, else the error code.
type result struct {
	status int
	out    map[string]any
	code   string
	msg    string
}

// action calls an action as userID through the metadata. A response Hasura itself would reject
// (output not matching the declared type, a 5xx) fails the test.
func (s *stack) action(t *testing.T, name string, input map[string]any, userID string) result {
	t.Helper()
	res, err := s.hasura.Action(context.Background(), name, input, session(userID))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if res.HasuraError != nil {
		t.Fatalf("%s: Hasura would reject the answer: %v", name, res.HasuraError)
	}
	r := result{status: res.Status}
	if res.Status >= 400 {
		ae, err := res.ActionError()
		if err != nil {
			t.Fatal(err)
		}
		r.code, r.msg = ae.Code, ae.Message
		return r
	}
	if err := res.JSON(&r.out); err != nil {
		t.Fatal(err)
	}
	return r
}

// ok calls an action that must succeed and returns its output.
func (s *stack) ok(t *testing.T, name string, input map[string]any, userID string) map[string]any {
	t.Helper()
	r := s.action(t, name, input, userID)
	if r.status != 200 {
		t.Fatalf("%s(%v) as %s: %d %s %q", name, input, userID, r.status, r.code, r.msg)
	}
	return r.out
}

// fails calls an action that must fail with code and returns the message.
func (s *stack) fails(t *testing.T, code, name string, input map[string]any, userID string) string {
	t.Helper()
	r := s.action(t, name, input, userID)
	if r.code != code {
		t.Fatalf("%s(%v) as %s: got %d %q (%s), want code %s", name, input, userID, r.status, r.code, r.msg, code)
	}
	return r.msg
}

// tenant creates a tenant owned by a new user and returns both ids.
func (s *stack) tenant(t *testing.T) (tenantID, ownerID string) {
	t.Helper()
	ownerID = s.user(t, "")
	out := s.ok(t, "createTenant", map[string]any{"name": "Acme", "slug": "acme-" + uuid.NewString()[:8]}, ownerID)
	return out["tenantId"].(string), ownerID
}

// row returns a row as Hasura's event trigger captures it (row_to_json).
func (s *stack) row(t *testing.T, table, where string, args ...any) map[string]any {
	t.Helper()
	var raw []byte
	if err := s.admin.QueryRow(context.Background(), "SELECT row_to_json(t) FROM "+table+" t WHERE "+where, args...).Scan(&raw); err != nil {
		t.Fatalf("row of %s: %v", table, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// deliver delivers, as Hasura's event processor would, the latest event Hasura's own trigger
// logged (hdb_catalog.event_log) for op on the row rowID of trigger's table, and returns the HTTP
// status. Delivering it again posts the same event (same id) again, as Hasura does when an answer
// was lost.
func (s *stack) deliver(t *testing.T, trigger, op string, rowID any) int {
	t.Helper()
	ctx := context.Background()
	var eventID string
	err := s.admin.QueryRow(ctx, `SELECT id FROM hdb_catalog.event_log
		WHERE trigger_name = $1 AND payload->>'op' = $2 AND payload->'data'->'new'->>'id' = $3::text
		ORDER BY created_at DESC, id LIMIT 1`, trigger, op, rowID).Scan(&eventID)
	if err != nil {
		t.Fatalf("no %s event of %s logged for row %v by Hasura's trigger: %v", op, trigger, rowID, err)
	}
	d, err := s.hasura.RedeliverEvent(ctx, s.admin, hasuratest.HasuraCatalogSchema, eventID)
	if err != nil {
		t.Fatalf("event %s: %v", eventID, err)
	}
	return d.Status
}

// connect opens a connection to url as the test's superuser, closed when the test ends.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// manualEvent invokes trigger by hand on row, as Hasura's console or API does (no SQL trigger
// involved), and returns the HTTP status.
func (s *stack) manualEvent(t *testing.T, trigger string, row map[string]any) int {
	t.Helper()
	res, err := s.hasura.Event(context.Background(), trigger, "MANUAL", nil, row, hasuratest.EventOptions{})
	if err != nil {
		t.Fatalf("event %s: %v", trigger, err)
	}
	return res.Status
}

var linkPattern = regexp.MustCompile(`http://app\.test/invitations/accept\?token=([A-Za-z0-9_%-]+)`)

// links returns the invitation links emailed to addr so far, in order.
func (s *stack) links(t *testing.T, addr string) []string {
	t.Helper()
	var tokens []string
	for _, m := range s.smtp.Messages() {
		if len(m.To) != 1 || m.To[0] != addr {
			continue
		}
		d, err := m.Decode()
		if err != nil {
			t.Fatal(err)
		}
		match := linkPattern.FindStringSubmatch(d.Text)
		if match == nil {
			t.Fatalf("no invitation link in email to %s:\n%s", addr, d.Text)
		}
		tok, _ := url.QueryUnescape(match[1])
		tokens = append(tokens, tok)
	}
	return tokens
}

func (s *stack) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.admin.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// hasuraRules loads what Hasura knows to compile role's permission rules: the metadata, the
// database's catalog and the role's rules.
func (s *stack) hasuraRules(t *testing.T, role string) (*hasuratest.Metadata, *hasuratest.PGCatalog, []hasuratest.Rule) {
	t.Helper()
	meta := metadata(t)
	cat, err := hasuratest.LoadCatalog(context.Background(), s.admin)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := meta.Rules(role)
	if err != nil {
		t.Fatal(err)
	}
	return meta, cat, rules
}
