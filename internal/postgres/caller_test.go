package postgres_test

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/migrations"
)

// TestCallerFastPath: tenantkit.current_user_id() and tenantkit.current_api_key() answer every
// session string exactly as their general paths do (their definitions of 00001 and 00018, before
// the fast path of 00023): the sessions Hasura and tenantkit write, the edge cases of the fast
// path's shape, and thousands of seeded mutations of them (one or two characters inserted, replaced
// or removed anywhere).
func TestCallerFastPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := connect(t, pgtest.NewDB(t))

	// The general paths, as functions of their own: the first definitions under other names.
	for _, f := range []struct{ file, name, as string }{
		{"00001_roles.sql", "current_user_id", "reference_user_id"},
		{"00018_api_keys_and_domains.sql", "current_api_key", "reference_api_key"},
	} {
		src, err := migrations.FS.ReadFile(f.file)
		if err != nil {
			t.Fatal(err)
		}
		def := regexp.MustCompile(`(?s)CREATE FUNCTION tenantkit\.` + f.name + `\(\).*?END \$\$;`).Find(src)
		if def == nil {
			t.Fatalf("%s: no definition of tenantkit.%s()", f.file, f.name)
		}
		reference := strings.Replace(string(def), "tenantkit."+f.name+"()", "tenantkit."+f.as+"()", 1)
		if _, err := pool.Exec(ctx, reference); err != nil {
			t.Fatal(err)
		}
	}

	id, other := uuid.NewString(), uuid.NewString()
	upper := strings.ToUpper(id)
	bases := []string{
		`{"x-hasura-role":"user","x-hasura-user-id":"` + id + `"}`, // tenantkit (encoding/json)
		`{"x-hasura-user-id":"` + id + `","x-hasura-role":"user"}`,
		`{"x-hasura-role":"user","x-hasura-user-id":"` + id + `","x-hasura-org":"Acme [EU] #a ~ b-c_d"}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + other + `"}`, // POST /auth/token
		`{"x-hasura-api-key-id":"` + other + `","x-hasura-role":"api_client","x-hasura-tenant-id":"` + id + `"}`,
		`{"x-hasura-role":"user"}`,
	}
	claims := append([]string{
		"", " ", "{}", "[]", "null", `"` + id + `"`, "{", `{"a":}`,
		`{"x-hasura-user-id":"` + upper + `"}`,
		`{"x-hasura-user-id":"` + strings.ReplaceAll(id, "-", "") + `"}`,
		`{"x-hasura-user-id":"{` + id + `}"}`,
		`{"x-hasura-user-id":"` + id[:35] + `"}`,
		`{"x-hasura-user-id":"` + id + `0"}`,
		`{"x-hasura-user-id":"` + id[:8] + id[9:13] + "-" + id[13:] + `"}`,
		`{"x-hasura-user-id":"-` + id[1:] + `"}`,
		`{"x-hasura-user-id":"` + id + `","X-Hasura-User-Id":"` + other + `"}`,
		`{"X-HASURA-USER-ID":"` + id + `"}`,
		`{"x-hasura-user-id":"` + id + `","x-hasura-user-id":"` + other + `"}`,
		`{"x-hasura-user-id":"` + id + `","x-hasura-user-id":"not-a-uuid"}`,
		`{"x-hasura-user-id":"not-a-uuid","x-hasura-user-id":"` + id + `"}`,
		`{"x-hasura-user-\u0069d":"` + id + `"}`,
		`{"x-hasura-role":"us\"er","x-hasura-user-id":"` + id + `"}`,
		`{"x-hasura-role":"us\\er","x-hasura-user-id":"` + id + `"}`,
		`{"x-hasura-org":"Ä","x-hasura-user-id":"` + id + `"}`,
		"{\"x-hasura-org\":\"a\tb\",\"x-hasura-user-id\":\"" + id + "\"}",
		` {"x-hasura-user-id":"` + id + `"} `,
		`{"x-hasura-user-id": "` + id + `"}`,
		`{"x-hasura-user-id":"` + id + `",}`,
		`{"":"","x-hasura-user-id":"` + id + `"}`,
		`{"x-hasura-user-id":["` + id + `"]}`,
		`{"x-hasura-user-id":null}`,
		`{"x-hasura-user-id":""}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + upper + `"}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + other + `","X-Hasura-Api-Key-Id":"` + id + `"}`,
		`{"x-hasura-role":"api_client","X-Hasura-Role":"user","x-hasura-api-key-id":"` + other + `"}`,
		`{"X-Hasura-Role":"api_client","x-hasura-api-key-id":"` + other + `"}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + other + `","x-hasura-user-id":"` + id + `"}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + other + `","X-Hasura-User-Id":"` + id + `"}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + other + `","x-hasura-user-id":""}`,
		`{"x-hasura-role":"Api_Client","x-hasura-api-key-id":"` + other + `"}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":null}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + other + `x"}`,
	}, bases...)
	rng := rand.New(rand.NewPCG(23, 23))
	const alphabet = " \"\\{}:,-aAfFgz09_[]~#\té"
	mutate := func(s string) string {
		r := []rune(s)
		at := rng.IntN(len(r) + 1)
		c := []rune(alphabet)[rng.IntN(len([]rune(alphabet)))]
		switch rng.IntN(3) {
		case 0: // insert
			return string(r[:at]) + string(c) + string(r[at:])
		case 1: // replace
			if at < len(r) {
				r[at] = c
			}
			return string(r)
		default: // remove
			if at < len(r) {
				return string(r[:at]) + string(r[at+1:])
			}
			return string(r)
		}
	}
	for range 6000 {
		s := bases[rng.IntN(len(bases))]
		for range 1 + rng.IntN(2) {
			s = mutate(s)
		}
		claims = append(claims, s)
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var batch pgx.Batch
	for _, c := range claims {
		batch.Queue(`SELECT set_config('hasura.user', $1, true)`, c)
		batch.Queue(`SELECT tenantkit.current_user_id()::text, tenantkit.reference_user_id()::text,
		                    tenantkit.current_api_key()::text, tenantkit.reference_api_key()::text`)
	}
	results := tx.SendBatch(ctx, &batch)
	users, keys := 0, 0
	for _, c := range claims {
		if _, err := results.Exec(); err != nil {
			t.Fatal(err)
		}
		var user, wantUser, key, wantKey *string
		if err := results.QueryRow().Scan(&user, &wantUser, &key, &wantKey); err != nil {
			t.Fatalf("%q: %v", c, err)
		}
		if !sameText(user, wantUser) {
			t.Errorf("hasura.user %q: current_user_id() = %s, the general path says %s", c, show(user), show(wantUser))
		}
		if !sameText(key, wantKey) {
			t.Errorf("hasura.user %q: current_api_key() = %s, the general path says %s", c, show(key), show(wantKey))
		}
		if wantUser != nil {
			users++
		}
		if wantKey != nil {
			keys++
		}
	}
	if err := results.Close(); err != nil {
		t.Fatal(err)
	}
	if users < 200 || keys < 200 {
		t.Fatalf("only %d and %d of %d sessions name a user and a key: the mutations test too little", users, keys, len(claims))
	}
}

func sameText(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
