package postgres

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/export"
)

var _ export.Store = (*DB)(nil)

// exportRetention is how long an export's record (who asked, when, when used) is kept after its
// link expired; older records are deleted when the next export is requested.
const exportRetention = "90 days"

// CreateExport implements export.Store on the system path (tenantkit.tenant_exports is system
// only; the service checked the caller is an owner).
func (db *DB) CreateExport(ctx context.Context, tenantID, userID string, ttl time.Duration) (export.Export, error) {
	e := export.Export{TenantID: tenantID, UserID: userID}
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM tenantkit.tenant_exports WHERE expires_at < now() - $1::interval`, exportRetention); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `
			INSERT INTO tenantkit.tenant_exports (tenant_id, user_id, expires_at)
			VALUES ($1, $2, date_trunc('second', now()) + make_interval(secs => $3))
			RETURNING id::text, created_at, expires_at`, tenantID, userID, ttl.Seconds()).Scan(&e.ID, &e.CreatedAt, &e.ExpiresAt)
	})
	return e, err
}

// Export implements export.Store.
func (db *DB) Export(ctx context.Context, id string) (export.Export, error) {
	var e export.Export
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id::text, tenant_id::text, user_id::text, created_at, expires_at, downloaded_at
			FROM tenantkit.tenant_exports WHERE id = $1`, id).Scan(&e.ID, &e.TenantID, &e.UserID, &e.CreatedAt, &e.ExpiresAt, &e.DownloadedAt)
	})
	return e, err
}

// ConsumeExport implements export.Store: one UPDATE marks the export used unless it was or has
// expired, so of concurrent downloads exactly one gets it. Why the others lost is read by a second
// statement: under READ COMMITTED it sees the winner's commit, which the UPDATE waited for (a
// single statement with a CTE would read the row as of its own start, before that commit, and
// take a used link for an expired one).
func (db *DB) ConsumeExport(ctx context.Context, id string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE tenantkit.tenant_exports SET downloaded_at = now()
			WHERE id = $1 AND downloaded_at IS NULL AND expires_at > now()`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		var used bool
		err = tx.QueryRow(ctx, `SELECT downloaded_at IS NOT NULL FROM tenantkit.tenant_exports WHERE id = $1`, id).Scan(&used)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return tenantkit.Errorf(export.LinkInvalid, "this export link is not valid: ask for a new export")
		case err != nil:
			return err
		case used:
			return tenantkit.Errorf(export.LinkUsed, "this export link was used already: ask for a new export")
		}
		return tenantkit.Errorf(export.LinkExpired, "this export link has expired: ask for a new export")
	})
}

// archiveSection is one part of the archive: a JSON object (one row, or null) or an array of
// rows, each row a JSON text the query makes. Queries take the tenant id as $1, run as the owner
// under RLS, and order rows by a key, so that two exports of unchanged data are byte for byte
// equal.
type archiveSection struct {
	name  string
	table string // the table the rows come from (TestExportCoversEveryTenantTable)
	array bool
	sql   string
}

// archiveSections are the archive's parts, in order (docs/export.md describes each).
var archiveSections = []archiveSection{
	{"tenant", "public.tenants", false, `SELECT to_jsonb(t)::text FROM tenants t WHERE t.id = $1`},
	{"members", "public.tenant_users", true, `
		SELECT (to_jsonb(m) || jsonb_build_object('email', e.email))::text
		FROM tenant_users m LEFT JOIN tenantkit.export_member_emails($1) e ON e.user_id = m.user_id
		WHERE m.tenant_id = $1 ORDER BY m.user_id`},
	// token_hash is token material: the archive never holds it.
	{"invitations", "public.tenant_invitations", true, `
		SELECT (to_jsonb(i) - 'token_hash')::text FROM tenant_invitations i WHERE i.tenant_id = $1 ORDER BY i.created_at, i.id`},
	{"invitationSends", "tenantkit.invitation_sends", true, `
		SELECT to_jsonb(x)::text FROM tenantkit.invitation_sends x WHERE x.tenant_id = $1 ORDER BY x.id`},
	{"projects", "public.projects", true, `
		SELECT to_jsonb(p)::text FROM projects p WHERE p.tenant_id = $1 ORDER BY p.created_at, p.id`},
	// Hourly totals per metric (the counter slots summed, with the events not folded into them yet;
	// a gauge has one slot).
	{"usage", "public.billing_usage", true, `
		SELECT jsonb_build_object('metric', u.metric, 'period_start', u.period_start, 'period_end', max(u.period_end),
		         'quantity', sum(u.quantity), 'observed_at', max(u.observed_at))::text
		FROM ` + callerUsageHours + ` u
		GROUP BY u.metric, u.period_start ORDER BY u.metric, u.period_start`},
	{"usageEvents", "tenantkit.usage_events", true, `
		SELECT (to_jsonb(u) - 'xact')::text FROM tenantkit.usage_events u WHERE u.tenant_id = $1 ORDER BY u.idempotency_key, u.recorded_month`},
	{"auditLog", "public.audit_log", true, `
		SELECT to_jsonb(a)::text FROM audit_log a WHERE a.tenant_id = $1 ORDER BY a.seq`},
	{"subscription", "public.tenant_subscriptions", false, `
		SELECT to_jsonb(s)::text FROM tenant_subscriptions s WHERE s.tenant_id = $1`},
	{"stripeSubscriptions", "tenantkit.stripe_subscriptions", true, `
		SELECT to_jsonb(s)::text FROM tenantkit.stripe_subscriptions s WHERE s.tenant_id = $1 ORDER BY s.created, s.id`},
	// key_hash is key material: the archive never holds it (tenantkit_app cannot even read it).
	{"apiKeys", "public.api_keys", true, `
		SELECT jsonb_build_object('id', k.id, 'tenant_id', k.tenant_id, 'name', k.name, 'prefix', k.prefix,
		         'scopes', k.scopes, 'created_by', k.created_by, 'created_at', k.created_at, 'expires_at', k.expires_at,
		         'revoked_at', k.revoked_at, 'revoked_by', k.revoked_by, 'last_used_at', k.last_used_at)::text
		FROM api_keys k WHERE k.tenant_id = $1 ORDER BY k.created_at, k.id`},
	{"domains", "public.tenant_domains", true, `
		SELECT to_jsonb(d)::text FROM tenant_domains d WHERE d.tenant_id = $1 ORDER BY d.domain`},
	{"emails", "tenantkit.email_outbox", true, `
		SELECT jsonb_build_object('id', o.id, 'to', o.to_email, 'subject', o.subject, 'body', o.body,
		         'created_at', o.created_at, 'sent_at', o.sent_at)::text
		FROM tenantkit.email_outbox o WHERE o.tenant_id = $1 ORDER BY o.created_at, o.id`},
}

// notExported are the tables that hold a tenant_id but are not in the archive, and why
// (TestExportCoversEveryTenantTable keeps every tenant table in one list or the other).
var notExported = map[string]string{
	"tenantkit.invitation_outbox":   "token material: the sealed invitation token, kept only until its email is sent",
	"tenantkit.tenant_deletions":    "the record of a deleted tenant, which can no longer be exported",
	"tenantkit.tenant_exports":      "the export links themselves: an archive listing them would differ from one export to the next",
	"tenantkit.stripe_outbox":       "Stripe writes queued for the tenant's subscription (a cancellation, a seat count): operations, not the tenant's data",
	"tenantkit.retained_audit_log":  "what a purged tenant's audit log keeps, without personal data: only for tenants that no longer exist",
	"tenantkit.domain_offers":       "offers to people outside the tenant (not members) to join it: their data, not the tenant's",
	"tenantkit.usage_reports":       "what was reported to Stripe per period: derived from the usage the archive holds, and Stripe's invoices",
	"tenantkit.usage_cuts":          "a cache of boundary-hour usage totals, derived from the usage events the archive holds",
	"tenantkit.usage_boundary_keys": "usage idempotency keys claimed for a day near a month's end: the events themselves are in the archive",
}

// ExportTables returns the tables the archive reads (schema.table) and those holding tenant rows
// it leaves out, with the reason.
func ExportTables() (exported []string, excluded map[string]string) {
	for _, sec := range archiveSections {
		exported = append(exported, sec.table)
	}
	return exported, maps.Clone(notExported)
}

// fetchRows is how many rows one FETCH of a section's cursor brings: memory is bounded by a
// batch, and each FETCH is a statement of its own, so statement_timeout bounds a batch, not the
// whole export.
const fetchRows = 1000

// WriteArchive implements export.Store: one REPEATABLE READ, READ ONLY transaction as
// tenantkit_app with the owner's session (RLS applies to every row read), TimeZone UTC so that
// timestamps render alike in every export. Each section is read through a cursor, FETCH by FETCH,
// and each row's JSON text, made by the database, is copied to the writer as it arrives: the
// process holds one batch of rows and a write buffer, whatever the tenant's size.
func (db *DB) WriteArchive(ctx context.Context, s tenantkit.Session, e export.Export, start func() (io.Writer, error)) error {
	claims, err := claimsOf(s)
	if err != nil {
		return err
	}
	begin := "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT set_config('role', " + quoteLiteral(AppRole) +
		", true), set_config('hasura.user', " + quoteLiteral(claims) + ", true), set_config('TimeZone', 'UTC', true)"
	return translate(pgx.BeginTxFunc(ctx, db.app(), pgx.TxOptions{BeginQuery: begin}, func(tx pgx.Tx) error {
		var owner bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM tenant_users m JOIN tenants t ON t.id = m.tenant_id
			WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.role = 'owner')`, e.TenantID, e.UserID).Scan(&owner)
		if err != nil {
			return err
		}
		if !owner {
			return tenantkit.Errorf(tenantkit.Forbidden, "only an owner of the tenant may download its export")
		}
		out, err := start()
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(out, 32<<10)
		header, err := json.Marshal(map[string]any{"format": export.Format, "id": e.ID, "tenant_id": e.TenantID,
			"requested_by": e.UserID, "requested_at": e.CreatedAt.UTC()})
		if err != nil {
			return err
		}
		w.WriteString(`{"export":`)
		w.Write(header)
		for _, sec := range archiveSections {
			w.WriteString(",\n" + `"` + sec.name + `":`)
			if err := writeSection(ctx, tx, w, sec, e.TenantID); err != nil {
				return err
			}
		}
		w.WriteString("\n}\n")
		return w.Flush()
	}))
}

// writeSection writes one section through a cursor: an array of its rows, or its one row (null
// when none).
func writeSection(ctx context.Context, tx pgx.Tx, w *bufio.Writer, sec archiveSection, tenant string) error {
	if _, err := tx.Exec(ctx, `DECLARE export_rows NO SCROLL CURSOR FOR `+sec.sql, tenant); err != nil {
		return err
	}
	n := 0
	if sec.array {
		w.WriteString("[")
	}
	for {
		rows, err := tx.Query(ctx, `FETCH `+itoa(fetchRows)+` FROM export_rows`)
		if err != nil {
			return err
		}
		batch := 0
		for rows.Next() {
			batch++
			if n > 0 {
				w.WriteString(",")
			}
			if sec.array {
				w.WriteString("\n")
			}
			w.Write(rows.RawValues()[0]) // the row's JSON text, as the database sent it
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if w.Buffered() > 0 && w.Available() < 4096 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if batch < fetchRows {
			break
		}
	}
	switch {
	case sec.array:
		w.WriteString("]")
	case n == 0:
		w.WriteString("null")
	}
	_, err := tx.Exec(ctx, `CLOSE export_rows`)
	return err
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
