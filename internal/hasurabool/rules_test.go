package hasurabool_test

import (
	"context"
	"slices"
	"testing"

	"github.com/tenantkit/tenantkit/internal/hasurabool"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// TestMetadataRules compiles every permission of internal/hasuratest's fixture metadata with the
// fixture's relationships (hasuratest.Metadata.SQL, the compiler behind it) and runs it against
// testdata/schema.sql, per user.
func TestMetadataRules(t *testing.T) {
	conn := testDB(t)
	m, err := hasuratest.Load("../hasuratest/testdata/permissions/metadata")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := hasurabool.LoadCatalog(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}

	{
		type key struct{ role, table, command, part string }
		// Rows each rule's filter or check selects, per user (a, b, c, d); "*" = same for all.
		want := map[key]map[string][]string{
			{"user", "tenants", "select", "filter"}: {"a": {"t1"}, "b": {"t1", "t2"}, "c": {"t2", "t3"}, "d": {}},
			{"user", "tenants", "update", "filter"}: {"a": {"t1"}, "b": {"t2"}, "c": {}, "d": {}},
			{"user", "tenants", "update", "check"}:  {"*": {"t1", "t2", "t3"}},
			{"user", "tenants", "delete", "filter"}: {"a": {"t1"}, "b": {}, "c": {}, "d": {}},

			{"user", "members", "select", "filter"}: {"a": {"t1/a", "t1/b"}, "b": {"t1/a", "t1/b", "t2/b", "t2/c"}, "c": {"t2/b", "t2/c", "t3/c"}, "d": {}},
			{"user", "members", "insert", "check"}:  {"a": {"t1/a", "t1/b"}, "b": {"t2/b", "t2/c"}, "c": {}, "d": {}},
			{"user", "members", "update", "filter"}: {"a": {"t1/a"}, "b": {"t1/b", "t2/b"}, "c": {"t2/c", "t3/c"}, "d": {}},
			{"user", "members", "update", "check"}:  {"*": {"t1/b", "t2/b", "t3/c"}},
			{"user", "members", "delete", "filter"}: {"a": {"t1/a", "t1/b"}, "b": {"t1/b", "t2/b"}, "c": {"t2/c", "t3/c"}, "d": {}},

			{"user", "projects", "select", "filter"}: {"a": {"1", "2", "3", "7"}, "b": {"1", "2", "4", "5", "7"}, "c": {"1", "5", "6", "7"}, "d": {"1", "7"}},
			{"user", "projects", "insert", "check"}:  {"a": {"1"}, "b": {}, "c": {"5", "6"}, "d": {}},
			{"user", "projects", "update", "filter"}: {"a": {"1"}, "b": {"2", "4"}, "c": {"5", "6"}, "d": {}},
			{"user", "projects", "update", "check"}:  {"*": {"1", "3", "5", "6"}},
			{"user", "projects", "delete", "filter"}: {"a": {"1"}, "b": {"2", "4"}, "c": {}, "d": {}},

			{"auditor", "tenants", "select", "filter"}: {"*": {"t1"}},
			{"auditor", "tenants", "update", "filter"}: {"*": {}},
			{"auditor", "tenants", "delete", "filter"}: {"a": {"t1"}, "b": {"t1", "t2"}, "c": {"t2", "t3"}, "d": {}},

			{"auditor", "members", "select", "filter"}: {"*": {"t1/b", "t2/b"}},
			{"auditor", "members", "insert", "check"}:  {"*": {"t2/c", "t3/c"}},
			{"auditor", "members", "update", "filter"}: {"*": {"t1/a", "t3/c"}},
			{"auditor", "members", "delete", "filter"}: {"*": {"t1/a"}},

			{"auditor", "projects", "select", "filter"}: {"*": {"1", "4", "5"}},
			{"auditor", "projects", "insert", "check"}:  {"*": {"1", "7"}},
			{"auditor", "projects", "update", "filter"}: {"*": {"1"}},
			{"auditor", "projects", "update", "check"}:  {"*": {"1", "2", "6"}},
			{"auditor", "projects", "delete", "filter"}: {"*": {"3"}},
		}
		seen := map[key]bool{}
		for _, role := range []string{"user", "auditor"} {
			rules, err := m.Rules(role)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				for _, part := range []struct {
					name string
					expr map[string]any
				}{{"filter", r.Filter}, {"check", r.Check}} {
					if part.expr == nil {
						continue
					}
					k := key{role, r.Table, r.Command, part.name}
					perUser, ok := want[k]
					if !ok {
						t.Errorf("no expectation for %+v", k)
						continue
					}
					seen[k] = true
					for _, u := range []string{"a", "b", "c", "d"} {
						session := map[string]string{
							"X-Hasura-User-Id":     users[u],
							"x-hasura-keys":        "{k,x}",
							"X-HASURA-ALLOWED-IDS": "{1,2,7}",
						}
						got, err := selectWhere(t, conn, r.Schema, r.Table, func(firstParam int) (string, []any, error) {
							return m.SQL(r.Schema, r.Table, "p", part.expr, session, firstParam, cat)
						})
						if err != nil {
							t.Errorf("%+v: %v", k, err)
							continue
						}
						w, ok := perUser[u]
						if !ok {
							w = perUser["*"]
						}
						w = slices.Sorted(slices.Values(w))
						if !slices.Equal(got, w) {
							t.Errorf("%+v for user %s: selected %v, want %v", k, u, got, w)
						}
					}
				}
			}
		}
		for k := range want {
			if !seen[k] {
				t.Errorf("%+v: no such rule in the fixture", k)
			}
		}
	}
}
