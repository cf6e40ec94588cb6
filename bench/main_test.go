package bench_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

func TestMain(m *testing.M) {
	// TENANTKIT_BENCH_SQL names an SQL file applied (as the superuser) after the migrations: a way
	// to measure a schema change before writing it as a migration. It gets its own template database.
	if path := os.Getenv("TENANTKIT_BENCH_SQL"); path != "" {
		extra, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "TENANTKIT_BENCH_SQL: %v\n", err)
			os.Exit(2)
		}
		pgtest.TemplateKey = postgres.MigrationsKey() + "\x00TENANTKIT_BENCH_SQL\x00" + string(extra)
		pgtest.Migrate = func(ctx context.Context, databaseURL string) error {
			if err := postgres.MigrateUp(ctx, databaseURL); err != nil {
				return err
			}
			conn, err := pgx.Connect(ctx, databaseURL)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(ctx, string(extra)); err != nil { // no arguments: simple protocol, many statements
				return fmt.Errorf("TENANTKIT_BENCH_SQL %s: %w", path, err)
			}
			return nil
		}
	}
	pgtest.Main(m)
}
