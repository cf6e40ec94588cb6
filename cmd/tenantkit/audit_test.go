package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// TestAuditLogRecordsHasuraDeletes: the README's promise end to end — an invitation invited
// through the action and deleted through Hasura's delete permission on tenant_invitations (its
// filter compiled from hasura/metadata, run as Hasura runs a mutation) shows in auditLog, by the
// caller. Every other permission is walked in internal/postgres (TestHasuraPermissionsAreAudited).
func TestAuditLogRecordsHasuraDeletes(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	tenant, owner := s.tenant(t)
	inv := s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "deleted@example.com", "role": "member"}, owner)["invitationId"].(string)

	meta, cat, rules := s.hasuraRules(t, "user")
	var del *hasuratest.Rule
	for i, r := range rules {
		if r.Table == "tenant_invitations" && r.Command == "delete" && r.Allowed {
			del = &rules[i]
		}
	}
	if del == nil {
		t.Fatal("Hasura's user role may not delete invitations: this test has nothing to show")
	}
	sess := session(owner)
	filter, args, err := meta.SQL("public", "tenant_invitations", "t", del.Filter, sess, 2, cat)
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := json.Marshal(sess)
	var deleted int64
	err = pgx.BeginFunc(ctx, s.admin, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('hasura.user', $1, true)`, string(claims)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM public.tenant_invitations t WHERE t.id = $1 AND (`+filter+`)`, append([]any{inv}, args...)...)
		deleted = tag.RowsAffected()
		return err
	})
	if err != nil || deleted != 1 {
		t.Fatalf("Hasura's delete as the owner: %d rows, %v", deleted, err)
	}

	data, code := s.graph(t, `query($t: ID!) { auditLog(tenantId: $t, limit: 5) { actorId action subject details } }`, map[string]any{"t": tenant}, session(owner))
	if code != "" {
		t.Fatalf("auditLog: %s", code)
	}
	entries := data["auditLog"].([]any)
	if len(entries) == 0 {
		t.Fatal("empty audit log")
	}
	latest := entries[0].(map[string]any)
	if latest["action"] != "invitation.deleted" || latest["subject"] != "deleted@example.com" || latest["actorId"] != owner ||
		!strings.Contains(latest["details"].(string), inv) {
		t.Errorf("latest entry %v, want invitation.deleted of deleted@example.com by the owner", latest)
	}
}
