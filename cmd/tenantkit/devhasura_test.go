package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

// syncBuffer is a bytes.Buffer safe for the service's goroutines and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevStandsInForHasuraEvents runs what `tenantkit dev` runs on a database Hasura never saw:
// after inviteMember, the email with its link on a line of its own is in the output within 2
// seconds, and nothing of the stand-in is left once dev stops.
func TestDevStandsInForHasuraEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	admin := connect(t, url)
	if _, err := admin.Exec(ctx, `DROP SCHEMA hdb_catalog CASCADE`); err != nil { // no Hasura here
		t.Fatal(err)
	}
	var out syncBuffer
	events, err := startDevEvents(ctx, url, "../../hasura/metadata", &out)
	if err != nil || events == nil {
		t.Fatalf("stand-in not started: %v\n%s", err, out.String())
	}
	// As dev does: user work connects as the login role dev makes (twice: it is idempotent).
	appURL, err := ensureDevAppLogin(ctx, url)
	if err == nil {
		appURL, err = ensureDevAppLogin(ctx, url)
	}
	if err != nil {
		t.Fatalf("dev's login role for user work: %v", err)
	}
	env := map[string]string{"DATABASE_URL": url, "APP_DATABASE_URL": appURL, "TENANTKIT_SECRET": testSecret, "APP_URL": "http://app.test", "LISTEN_ADDR": "127.0.0.1:0"}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serveWith(runCtx, cfg, &out, &devMode{events: events}) }()
	base := ""
	for deadline := time.Now().Add(10 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := regexp.MustCompile(`"addr":"(http://[^"]+)"`).FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		t.Fatalf("the service did not start:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "standing in for Hasura's event delivery") {
		t.Errorf("dev does not say it stands in for Hasura:\n%s", out.String())
	}

	owner := uuid.NewString()
	if _, err := admin.Exec(ctx, `INSERT INTO auth.users (id, email) VALUES ($1, 'owner@example.com')`, owner); err != nil {
		t.Fatal(err)
	}
	action := func(name string, input map[string]any) map[string]any {
		body, _ := json.Marshal(map[string]any{"action": map[string]any{"name": name}, "input": input,
			"session_variables": map[string]string{"x-hasura-role": "user", "x-hasura-user-id": owner}})
		req, _ := http.NewRequest(http.MethodPost, base+"/actions/"+name, bytes.NewReader(body))
		req.Header.Set("X-Tenantkit-Secret", testSecret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var o map[string]any
		_ = json.NewDecoder(res.Body).Decode(&o)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", name, res.StatusCode, o)
		}
		return o
	}
	tenant := action("createTenant", map[string]any{"name": "Acme", "slug": "acme-dev"})["tenantId"]
	invited := time.Now()
	action("inviteMember", map[string]any{"tenantId": tenant, "email": "kim@example.com", "role": "member"})
	link := regexp.MustCompile(`(?m)^http://app\.test/invitations/accept\?token=[A-Za-z0-9_-]+$`)
	for !link.MatchString(out.String()) && time.Since(invited) < 2*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	if !link.MatchString(out.String()) {
		t.Errorf("no invitation link on a line of its own within 2 s:\n%s", out.String())
	}
	// tenant_created was delivered too (billing is off: nothing to do, but answered 200); an event
	// is marked delivered once the service has answered, just after the email was written. (The
	// users' sign-ups also raise domain_join events, not counted here.)
	var delivered int
	for deadline := time.Now().Add(5 * time.Second); delivered != 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM `+devEventSchema+`.event_log
			WHERE delivered AND trigger_name IN ('tenant_created', 'invitation_email')`).Scan(&delivered); err != nil {
			t.Fatal(err)
		}
	}
	if delivered != 2 {
		t.Errorf("%d events delivered, want 2 (tenant_created, invitation_email)", delivered)
	}

	stop()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if err := events.close(); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1)
		+ (SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%notify_hasura%')
		+ (SELECT count(*) FROM pg_proc WHERE proname LIKE '%notify_hasura%')`, devEventSchema).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d objects of the stand-in left after dev stopped (%v)", left, err)
	}
}

func TestDevLeavesHasuraToHasura(t *testing.T) {
	t.Parallel()
	// The test database carries Hasura's own event catalog: dev must not stand in.
	var out bytes.Buffer
	events, err := startDevEvents(context.Background(), pgtest.NewDB(t), "../../hasura/metadata", &out)
	if err != nil || events != nil {
		t.Errorf("stand-in %v, %v; want none", events, err)
	}
	if !strings.Contains(out.String(), "its Hasura delivers the events") {
		t.Errorf("output: %s", out.String())
	}
}
