package postgres_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/apikey"
)

// TestAPIKeySessions: which hasura.user is an API client, and which is nobody. Only a session whose
// role is api_client, with one API key id and no user id, is the key; every other one gets nothing
// through the keys' policies (and, without a user id, nothing through the members' either).
func TestAPIKeySessions(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	tn := fxTenant(t, admin)
	fxProjects(t, admin, tn.id, tn.owner, 2)
	key := uuid.NewString()
	fxExec(t, admin, `INSERT INTO api_keys (tenant_id, id, name, prefix, key_hash, scopes, created_by)
		VALUES ($1, $2, 'k', 'tk_live_aaaaaaaaaaaaaaaa', sha256('k'), '["projects:read"]', $3)`, tn.id, key, tn.owner)
	for _, c := range []struct {
		name string
		raw  string
		key  bool
	}{
		{"the key", `{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + key + `"}`, true},
		{"names in another case", `{"X-Hasura-Role":"api_client","X-HASURA-API-KEY-ID":"` + key + `"}`, true},
		{"with its other variables", `{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + key + `","x-hasura-tenant-id":"` + tn.id + `","x-hasura-scopes":"{projects:read}"}`, true},
		{"escapes in the JSON", "{\"x-hasura-role\":\"api\\u005fclient\",\"x-hasura-api-key-id\":\"" + key + "\"}", true},
		{"role user", `{"x-hasura-role":"user","x-hasura-api-key-id":"` + key + `"}`, false},
		{"no role", `{"x-hasura-api-key-id":"` + key + `"}`, false},
		{"role in another case", `{"x-hasura-role":"API_CLIENT","x-hasura-api-key-id":"` + key + `"}`, false},
		{"two roles", `{"x-hasura-role":"api_client","X-Hasura-Role":"api_client","x-hasura-api-key-id":"` + key + `"}`, false},
		{"two key ids", `{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + key + `","X-Hasura-Api-Key-Id":"` + key + `"}`, false},
		{"a user id too", `{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + key + `","x-hasura-user-id":"` + tn.owner + `"}`, false},
		{"a key id that is no UUID", `{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + key + `x"}`, false},
		{"a numeric key id", `{"x-hasura-role":"api_client","x-hasura-api-key-id":7}`, false},
		{"the key id in an array", `{"x-hasura-role":"api_client","x-hasura-api-key-id":["` + key + `"]}`, false},
		{"nested", `{"s":{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + key + `"}}`, false},
		{"malformed", `{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + key + `"`, false},
		{"an unknown key", `{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + uuid.NewString() + `"}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fxRaw(t, admin, true, c.raw, func(tx pgx.Tx) {
				var got *string
				fxTxRow(t, tx, "SELECT tenantkit.current_api_key()::text").Scan(&got)
				var who *string
				fxTxRow(t, tx, "SELECT tenantkit.current_user_id()::text").Scan(&who)
				n := fxTxCount(t, tx, "SELECT count(*) FROM projects")
				switch {
				case c.key && (got == nil || *got != key || n != 2):
					t.Errorf("current_api_key() = %v, sees %d projects; want the key and 2", got, n)
				case !c.key && c.name != "an unknown key" && got != nil:
					t.Errorf("current_api_key() = %s, want NULL", *got)
				case !c.key && n != 0 && who == nil:
					t.Errorf("sees %d projects", n)
				}
			})
		})
	}
}

// TestAPIKeyStore: the store's writes under RLS. Only members holding api_keys:manage create keys,
// and only as themselves; only they revoke; tenantkit_app never reads a digest; an API client
// changes data in its creator's name, with the key in the audit entry.
func TestAPIKeyStore(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin, fxPlanKey("enterprise"))
	adm := fxMember(t, admin, tn.id, tenantkit.Admin)
	mem := fxMember(t, admin, tn.id, tenantkit.Member)
	nk := func(creator string) apikey.NewKey {
		s, err := apikey.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		return apikey.NewKey{TenantID: tn.id, Name: "k", Prefix: s.Prefix, Hash: s.Hash, Scopes: []string{"users:invite"}, CreatedBy: creator}
	}
	if _, err := db.CreateKey(ctx, tenantkit.UserSession(mem), nk(mem)); tenantkit.ErrorCode(err) != tenantkit.Forbidden {
		t.Errorf("a member without api_keys:manage stored a key: %v", err)
	}
	if _, err := db.CreateKey(ctx, tenantkit.UserSession(adm), nk(tn.owner)); tenantkit.ErrorCode(err) != tenantkit.Forbidden {
		t.Errorf("an admin stored a key in the owner's name: %v", err)
	}
	k, err := db.CreateKey(ctx, tenantkit.UserSession(adm), nk(adm))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeKey(ctx, tenantkit.UserSession(mem), k.ID); tenantkit.ErrorCode(err) != tenantkit.NotFound {
		t.Errorf("a member revoked a key: %v", err)
	}
	err = db.WithUser(ctx, tenantkit.UserSession(adm), func(tx pgx.Tx) error {
		var h []byte
		return tx.QueryRow(ctx, "SELECT key_hash FROM api_keys WHERE id = $1", k.ID).Scan(&h)
	})
	if tenantkit.ErrorCode(err) == "" {
		t.Error("tenantkit_app read a key's digest")
	}
	creds, err := db.Credentials(ctx, k.Prefix)
	if err != nil || len(creds) != 1 || creds[0].CreatorRole != tenantkit.Admin || len(creds[0].Hash) != 32 {
		t.Fatalf("credentials %+v, %v", creds, err)
	}

	// the API client deletes an invitation through RLS: audited as its creator's, with the key
	inv := fxInvite(t, admin, tn.id, "pending", 3600e9)
	sess := tenantkit.NewSession(map[string]string{"x-hasura-role": apikey.Role, apikey.VarKeyID: k.ID})
	err = db.WithUser(ctx, sess, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM tenant_invitations WHERE id = $1", inv)
		if err == nil && tag.RowsAffected() != 1 {
			t.Errorf("the API client deleted %d invitations, want 1 (users:invite)", tag.RowsAffected())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var actor, details string
	fxQueryRow(t, admin, `SELECT coalesce(actor_id::text, ''), details::text FROM audit_log
		WHERE tenant_id = $1 AND action = 'invitation.deleted'`, tn.id).Scan(&actor, &details)
	var d map[string]any
	_ = json.Unmarshal([]byte(details), &d)
	if actor != adm || d["api_key_id"] != k.ID {
		t.Errorf("invitation.deleted by %q with details %s, want the key's creator %s and api_key_id %s", actor, details, adm, k.ID)
	}
	// a person's change carries no key
	if _, err := db.RevokeKey(ctx, tenantkit.UserSession(tn.owner), k.ID); err != nil {
		t.Fatal(err)
	}
	fxQueryRow(t, admin, `SELECT coalesce(actor_id::text, ''), details::text FROM audit_log
		WHERE tenant_id = $1 AND action = 'api_key.revoked'`, tn.id).Scan(&actor, &details)
	d = nil
	if actor != tn.owner || json.Unmarshal([]byte(details), &d) != nil || d["api_key_id"] != nil || d["key_id"] != k.ID {
		t.Errorf("api_key.revoked by %q with %s", actor, details)
	}
	// revoked: the key allows nothing any more
	err = db.WithUser(ctx, sess, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM tenant_invitations").Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			t.Errorf("a revoked key reads %d invitations", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAPIKeyPoliciesCostMembersNothing: a member reading their own tenant's rows never runs the
// API-client policy's helper. PostgreSQL ORs a table's permissive policies in reverse order of
// their names, so app_select (the members') is tested first and, true for every row, leaves the
// InitPlan of api_select unexecuted. The names are chosen for that ("api_" sorts before "app_").
func TestAPIKeyPoliciesCostMembersNothing(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	fxProjects(t, admin, tn.id, tn.owner, 3)
	var raw []byte
	err := pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenantkit_app"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('hasura.user', $1, true)", `{"x-hasura-role":"user","x-hasura-user-id":"`+tn.owner+`"}`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON, COSTS OFF, TIMING OFF) SELECT count(*) FROM projects WHERE tenant_id = $1", tn.id).Scan(&raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	var plan []map[string]any
	if err := json.Unmarshal(raw, &plan); err != nil {
		t.Fatal(err)
	}
	var initPlans, unexecuted int
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if n["Parent Relationship"] == "InitPlan" {
			initPlans++
			if loops, _ := n["Actual Loops"].(float64); loops == 0 {
				unexecuted++
			}
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			walk(k.(map[string]any))
		}
	}
	walk(plan[0]["Plan"].(map[string]any))
	if initPlans != 2 || unexecuted != 1 {
		t.Errorf("%d InitPlans, %d never executed; want the members' run and the API clients' not:\n%s", initPlans, unexecuted, raw)
	}
}
