package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/apikey"
)

var _ apikey.Store = (*DB)(nil)

const apiKeyColumns = `id::text, tenant_id::text, name, prefix, scopes, coalesce(created_by::text, ''), created_at, expires_at, revoked_at, last_used_at`

func scanAPIKey(row pgx.Row, extra ...any) (apikey.Key, error) {
	var k apikey.Key
	err := row.Scan(append([]any{&k.ID, &k.TenantID, &k.Name, &k.Prefix, &k.Scopes, &k.CreatedBy, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt}, extra...)...)
	return k, err
}

// CreateKey implements apikey.Store, as the caller under RLS (app_insert: api_keys:manage, and
// created_by is the caller). A taken prefix is a conflict.
func (db *DB) CreateKey(ctx context.Context, s tenantkit.Session, nk apikey.NewKey) (apikey.Key, error) {
	var k apikey.Key
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		k, err = scanAPIKey(tx.QueryRow(ctx, `
			INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes, created_by, expires_at)
			VALUES ($1, $2, $3, $4, to_jsonb($5::text[]), $6, $7)
			RETURNING `+apiKeyColumns, nk.TenantID, nk.Name, nk.Prefix, nk.Hash, nk.Scopes, nk.CreatedBy, nk.ExpiresAt))
		return err
	})
	return k, err
}

// RevokeKey implements apikey.Store under RLS: a key the caller may not manage is not_found.
func (db *DB) RevokeKey(ctx context.Context, s tenantkit.Session, keyID string) (apikey.Key, error) {
	var k apikey.Key
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		k, err = scanAPIKey(tx.QueryRow(ctx, `
			UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE id = $1 AND revoked_at IS NULL
			RETURNING `+apiKeyColumns, keyID, s.UserID()))
		if errors.Is(err, pgx.ErrNoRows) {
			// revoked already (nothing to do), or not the caller's to see
			k, err = scanAPIKey(tx.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, keyID))
		}
		return err
	})
	return k, err
}

// ListKeys implements apikey.Store under RLS.
func (db *DB) ListKeys(ctx context.Context, s tenantkit.Session, tenantID string) ([]apikey.Key, error) {
	var keys []apikey.Key
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id`, tenantID)
		var err error
		keys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (apikey.Key, error) { return scanAPIKey(r) })
		return err
	})
	return keys, err
}

// Credentials implements apikey.Store on the system path (the exchange has no caller): the keys
// with this prefix, their digests, and their creators' current memberships of the keys' tenants,
// read in one statement.
func (db *DB) Credentials(ctx context.Context, prefix string) ([]apikey.Credential, error) {
	var out []apikey.Credential
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT k.id::text, k.tenant_id::text, k.name, k.prefix, k.scopes, coalesce(k.created_by::text, ''), k.created_at,
			       k.expires_at, k.revoked_at, k.last_used_at, k.key_hash, m.role::text, coalesce(m.permissions, '[]')
			FROM api_keys k
			JOIN tenants t ON t.id = k.tenant_id AND t.deleted_at IS NULL -- a deleted tenant's keys are nobody's
			LEFT JOIN tenant_users m ON m.tenant_id = k.tenant_id AND m.user_id = k.created_by
			WHERE k.prefix = $1`, prefix)
		var err error
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (apikey.Credential, error) {
			var c apikey.Credential
			var role *string
			var err error
			c.Key, err = scanAPIKey(r, &c.Hash, &role, &c.CreatorGrants)
			if role != nil {
				c.CreatorRole = tenantkit.Role(*role)
			}
			return c, err
		})
		return err
	})
	return out, err
}

// Touch implements apikey.Store: last_used_at is written at most once a minute per key, so a
// client exchanging often costs no write per exchange.
func (db *DB) Touch(ctx context.Context, tenantID, keyID string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE api_keys SET last_used_at = now()
			WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, tenantID, keyID)
		return err
	})
}
