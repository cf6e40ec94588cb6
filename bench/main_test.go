package bench_test

import (
	"testing"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

func TestMain(m *testing.M) {
	pgtest.Migrate = postgres.MigrateUp
	pgtest.TemplateKey = postgres.MigrationsKey()
	pgtest.Main(m)
}
