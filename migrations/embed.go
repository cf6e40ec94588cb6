// Package migrations holds tenantkit's schema as plain SQL files applied in order by goose.
//
// Files are named NNNNN_topic.sql and contain a `-- +goose Up` and a `-- +goose Down` section.
// They are embedded in the binary; `tenantkit migrate up|down|status` applies them. See
// docs/schema.md for the design they implement.
package migrations

import "embed"

// FS contains every migration file.
//
//go:embed *.sql
var FS embed.FS
