package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

func TestMain(m *testing.M) {
	// Every test database carries Hasura's event catalog and triggers, installed by Hasura's own
	// role, with the grants `tenantkit hasura grant` gives.
	pgtest.Migrate, pgtest.TemplateKey = hasuratest.WithEventTriggers("../../hasura/metadata", postgres.HasuraGrants,
		postgres.MigrateUp, postgres.MigrationsKey())
	pgtest.Main(m)
}

// setup returns a fresh migrated database: the service's DB, whose user pool connects as
// pgtest.AppLogin (a member of tenantkit_app only) as in production, and a superuser pool for
// arranging fixtures and inspecting rows behind RLS's back.
func setup(t testing.TB) (*postgres.DB, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDB(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, url, pgtest.AppURL(t, url))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(db.Close)
	admin, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("admin pool: %v", err)
	}
	t.Cleanup(admin.Close)
	return db, admin
}
