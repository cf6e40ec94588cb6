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

// TestCurrentUserIDFastPath: tenantkit.current_user_id() answers every session string exactly as
// its general path does (the function of 00001, before the fast path of 00023): the sessions Hasura
// and tenantkit write, the edge cases of the fast path's shape, and thousands of seeded mutations
// of them (one or two characters inserted, replaced or removed anywhere).
func TestCurrentUserIDFastPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := connect(t, pgtest.NewDB(t))

	// The general path, as a function of its own: 00001's definition under another name.
	src, err := migrations.FS.ReadFile("00001_roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	def := regexp.MustCompile(`(?s)CREATE FUNCTION tenantkit\.current_user_id\(\).*?END \$\$;`).Find(src)
	if def == nil {
		t.Fatal("00001_roles.sql: no definition of tenantkit.current_user_id()")
	}
	reference := strings.Replace(string(def), "tenantkit.current_user_id()", "tenantkit.reference_user_id()", 1)
	if _, err := pool.Exec(ctx, reference); err != nil {
		t.Fatal(err)
	}

	id, other := uuid.NewString(), uuid.NewString()
	upper := strings.ToUpper(id)
	bases := []string{
		`{"x-hasura-role":"user","x-hasura-user-id":"` + id + `"}`, // tenantkit (encoding/json)
		`{"x-hasura-user-id":"` + id + `","x-hasura-role":"user"}`,
		`{"x-hasura-role":"user","x-hasura-user-id":"` + id + `","x-hasura-org":"Acme [EU] #a ~ b-c_d"}`,
		`{"x-hasura-role":"api_client","x-hasura-api-key-id":"` + other + `"}`,
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
	for range 3000 {
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
		batch.Queue(`SELECT tenantkit.current_user_id()::text, tenantkit.reference_user_id()::text`)
	}
	results := tx.SendBatch(ctx, &batch)
	users := 0
	for _, c := range claims {
		if _, err := results.Exec(); err != nil {
			t.Fatal(err)
		}
		var got, want *string
		if err := results.QueryRow().Scan(&got, &want); err != nil {
			t.Fatalf("%q: %v", c, err)
		}
		if (got == nil) != (want == nil) || (got != nil && *got != *want) {
			t.Errorf("hasura.user %q: current_user_id() = %s, the general path says %s", c, show(got), show(want))
		}
		if want != nil {
			users++
		}
	}
	if err := results.Close(); err != nil {
		t.Fatal(err)
	}
	if users < 300 {
		t.Fatalf("only %d of %d sessions name a user: the mutations test too little", users, len(claims))
	}
}

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
