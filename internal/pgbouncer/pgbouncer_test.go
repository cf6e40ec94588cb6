package pgbouncer_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/pgbouncer"
	"github.com/tenantkit/tenantkit/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestTransactionPooling: clients reach their own database through the bouncer, and with one server
// connection per pool, two clients' transactions run on the same PostgreSQL session one after the
// other, which is what the pooler tests elsewhere rely on.
func TestTransactionPooling(t *testing.T) {
	t.Parallel()
	b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{PoolSize: 1})
	dbURL := pgtest.NewDB(t)
	ctx := context.Background()
	var pids [2]int32
	var names [2]string
	for i := range pids {
		conn, err := pgx.Connect(ctx, b.URL(dbURL)+"&default_query_exec_mode=exec")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, `SELECT pg_backend_pid(), current_database()`).Scan(&pids[i], &names[i]); err != nil {
			t.Fatal(err)
		}
	}
	if pids[0] != pids[1] {
		t.Errorf("two clients of a pool of one ran on backends %d and %d", pids[0], pids[1])
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimPrefix(u.Path, "/"); names[0] != want || names[1] != want {
		t.Errorf("clients reached databases %v, want the one of %s", names, dbURL)
	}
	pools, err := b.Admin(ctx, "SHOW POOLS")
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	for _, p := range pools {
		if p["database"] == names[0] {
			mode = p["pool_mode"]
		}
	}
	if mode != "transaction" {
		t.Errorf("pool of %s: mode %q, want transaction (SHOW POOLS: %v)", names[0], mode, pools)
	}
}
