package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/migrations"
)

// Migrate applies the embedded migrations to databaseURL. command is "up" (all pending), "down"
// (the last one), "reset" (all of them, newest first) or "status"; progress goes to out.
// Concurrent runs against one database wait for each other (a session advisory lock).
func Migrate(ctx context.Context, databaseURL, command string, out io.Writer) error {
	cfg, err := ConnConfig(databaseURL)
	if err != nil {
		return tenantkit.Errorf(tenantkit.Invalid, "DATABASE_URL is malformed: %s", redact(err))
	}
	if err := Reachable(ctx, "DATABASE_URL", databaseURL); err != nil {
		return err
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return err
	}
	var results []*goose.MigrationResult
	switch command {
	case "up":
		results, err = p.Up(ctx)
	case "down":
		var r *goose.MigrationResult
		r, err = p.Down(ctx)
		if r != nil {
			results = append(results, r)
		}
	case "reset":
		results, err = p.DownTo(ctx, 0)
	case "status":
		var st []*goose.MigrationStatus
		st, err = p.Status(ctx)
		for _, s := range st {
			applied := "pending"
			if s.State == goose.StateApplied {
				applied = "applied " + s.AppliedAt.Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(out, "%-30s %s\n", s.Source.Path, applied)
		}
	default:
		return fmt.Errorf("unknown migrate command %q (want up, down, reset or status)", command)
	}
	for _, r := range results {
		fmt.Fprintf(out, "%-5s %-30s %s\n", r.Direction, r.Source.Path, r.Duration.Round(1e6))
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", command, err)
	}
	return nil
}

// MigrateUp applies every pending migration, quietly.
func MigrateUp(ctx context.Context, databaseURL string) error {
	return Migrate(ctx, databaseURL, "up", io.Discard)
}

// MigrationsKey identifies the embedded migration set (its files' names and contents) and the
// current UTC month, e.g. to name a template database built from it: the migrations create the
// usage_events partitions of the month they run in and the next two (00022), so a database
// migrated in an earlier month has other partitions.
func MigrationsKey() string {
	entries, _ := migrations.FS.ReadDir(".")
	key := []byte(time.Now().UTC().Format("2006-01") + "\x00")
	for _, e := range entries {
		b, _ := migrations.FS.ReadFile(e.Name())
		key = append(append(append(key, e.Name()...), 0), b...)
	}
	return string(key)
}

func provider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
}
