package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// TestHasuraEventGrants: the test database carries Hasura's event triggers (installed by Hasura's
// own role, see TestMain). Without the grants, writes to their tables are an operator problem,
// reported as such; `tenantkit hasura grant` fixes it.
func TestHasuraEventGrants(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	// Hasura upgraded and recreated its catalog's privileges: tenantkit's grants are gone.
	exec(t, s, `SET ROLE `+hasuratest.HasuraRole+`;
		REVOKE USAGE ON SCHEMA hdb_catalog FROM tenantkit_app, tenantkit_system;
		REVOKE INSERT ON hdb_catalog.event_log FROM tenantkit_app, tenantkit_system;
		RESET ROLE`)

	readyz := func() (int, map[string]string) {
		res, err := http.Get(s.m.HTTP.URL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		var out map[string]string
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("/readyz: %v: %s", err, body)
		}
		return res.StatusCode, out
	}
	st, body := readyz()
	if st != http.StatusServiceUnavailable || body["status"] != "misconfigured" ||
		!strings.Contains(body["problem"], "tenant_invitations, tenants") ||
		!strings.Contains(body["problem"], "tenantkit_app and tenantkit_system") ||
		!strings.Contains(body["problem"], "tenantkit hasura grant") {
		t.Errorf("/readyz without the grants: %d %v", st, body)
	}

	owner := s.user(t, "")
	r := s.action(t, "createTenant", map[string]any{"name": "Acme", "slug": "acme-nogrant"}, owner)
	if r.code != tenantkit.Unavailable || !strings.Contains(r.msg, "misconfigured") {
		t.Errorf("createTenant without the grants answered %d %s %q; want unavailable (the operator's problem, not forbidden)", r.status, r.code, r.msg)
	}
	if n := s.count(t, `SELECT count(*) FROM tenants WHERE slug = 'acme-nogrant'`); n != 0 {
		t.Errorf("the tenant was created anyway")
	}

	if err := postgres.GrantHasura(ctx, s.m.Config.DatabaseURL); err != nil {
		t.Fatalf("hasura grant: %v", err)
	}
	if err := postgres.GrantHasura(ctx, s.m.Config.DatabaseURL); err != nil {
		t.Fatalf("hasura grant, again: %v", err)
	}
	if st, body := readyz(); st != http.StatusOK || body["status"] != "ok" {
		t.Errorf("/readyz after the grants: %d %v", st, body)
	}
	out := s.ok(t, "createTenant", map[string]any{"name": "Acme", "slug": "acme-granted"}, owner)
	if n := s.count(t, `SELECT count(*) FROM hdb_catalog.event_log WHERE trigger_name = 'tenant_created'
		AND payload->'data'->'new'->>'id' = $1`, out["tenantId"]); n != 1 {
		t.Errorf("Hasura's trigger logged %d events for the new tenant, want 1", n)
	}

	// Hasura re-applies its metadata (trigger functions replaced): the grants still hold.
	meta, err := hasuratest.Load("../../hasura/metadata")
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, directURL(s.m))
	if err := hasuratest.InstallAsHasura(ctx, conn, meta, ""); err != nil {
		t.Fatal(err)
	}
	if st, body := readyz(); st != http.StatusOK {
		t.Errorf("/readyz after Hasura re-applied its metadata: %d %v", st, body)
	}
	s.ok(t, "createTenant", map[string]any{"name": "Acme", "slug": "acme-reapplied"}, owner)
}

func TestGrantHasuraBeforeHasura(t *testing.T) {
	t.Parallel()
	// A database Hasura has not started on yet: nothing to grant, said so.
	m := start(t)
	url := m.Config.DatabaseURL
	conn := connect(t, directURL(m))
	if _, err := conn.Exec(context.Background(), `DROP SCHEMA hdb_catalog CASCADE`); err != nil {
		t.Fatal(err)
	}
	if err := postgres.GrantHasura(context.Background(), url); err != postgres.ErrNoHasuraCatalog {
		t.Errorf("GrantHasura without hdb_catalog: %v, want ErrNoHasuraCatalog", err)
	}
	problem, err := m.DB.HasuraEventProblem(context.Background())
	if err != nil || problem != "" {
		t.Errorf("no Hasura yet: problem %q, %v; want none", problem, err)
	}
}
