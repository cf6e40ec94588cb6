package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/team"
)

var _ team.DomainStore = (*DB)(nil)

const domainColumns = `id::text, tenant_id::text, domain, token, policy, default_role, verified_at, created_at`

func scanDomain(row pgx.Row) (team.Domain, error) {
	var d team.Domain
	err := row.Scan(&d.ID, &d.TenantID, &d.Domain, &d.Token, &d.Policy, &d.DefaultRole, &d.VerifiedAt, &d.CreatedAt)
	return d, err
}

// AddDomain implements team.DomainStore under RLS (settings:write, created_by the caller).
func (db *DB) AddDomain(ctx context.Context, s tenantkit.Session, nd team.NewDomain) (team.Domain, error) {
	var d team.Domain
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		d, err = scanDomain(tx.QueryRow(ctx, `
			INSERT INTO tenant_domains (tenant_id, domain, token, policy, default_role, created_by)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+domainColumns,
			nd.TenantID, nd.Domain, nd.Token, nd.Policy, nd.DefaultRole, nd.CreatedBy))
		return err
	})
	return d, err
}

// Domain implements team.DomainStore under RLS (settings:read).
func (db *DB) Domain(ctx context.Context, s tenantkit.Session, domainID string) (team.Domain, error) {
	var d team.Domain
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		d, err = scanDomain(tx.QueryRow(ctx, `SELECT `+domainColumns+` FROM tenant_domains WHERE id = $1`, domainID))
		return err
	})
	return d, err
}

// DomainVerifiedElsewhere implements team.DomainStore on the system path: whether any other
// tenant verified the domain (nothing else is read).
func (db *DB) DomainVerifiedElsewhere(ctx context.Context, domain, tenantID string) (bool, error) {
	var taken bool
	err := db.QueryRowAsSystem(ctx, func(row pgx.Row) error { return row.Scan(&taken) },
		`SELECT EXISTS (SELECT 1 FROM tenant_domains WHERE domain = $1 AND verified_at IS NOT NULL AND tenant_id <> $2)`, domain, tenantID)
	return taken, err
}

// MarkDomainVerified implements team.DomainStore under RLS; the unique index on verified domains
// makes a second tenant's verification a conflict.
func (db *DB) MarkDomainVerified(ctx context.Context, s tenantkit.Session, domainID string) (team.Domain, error) {
	var d team.Domain
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		d, err = scanDomain(tx.QueryRow(ctx, `UPDATE tenant_domains SET verified_at = coalesce(verified_at, now())
			WHERE id = $1 RETURNING `+domainColumns, domainID))
		return err
	})
	return d, err
}

// SetDomainPolicy implements team.DomainStore under RLS.
func (db *DB) SetDomainPolicy(ctx context.Context, s tenantkit.Session, domainID, policy string, role tenantkit.Role) (team.Domain, error) {
	var d team.Domain
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		d, err = scanDomain(tx.QueryRow(ctx, `UPDATE tenant_domains SET policy = $2, default_role = $3
			WHERE id = $1 RETURNING `+domainColumns, domainID, policy, role))
		return err
	})
	return d, err
}

// RemoveDomain implements team.DomainStore under RLS; the domain's offers go with it.
func (db *DB) RemoveDomain(ctx context.Context, s tenantkit.Session, domainID string) (team.Domain, error) {
	var d team.Domain
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		d, err = scanDomain(tx.QueryRow(ctx, `DELETE FROM tenant_domains WHERE id = $1 RETURNING `+domainColumns, domainID))
		return err
	})
	return d, err
}

// ListDomains implements team.DomainStore under RLS.
func (db *DB) ListDomains(ctx context.Context, s tenantkit.Session, tenantID string) ([]team.Domain, error) {
	var out []team.Domain
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+domainColumns+` FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain`, tenantID)
		var err error
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (team.Domain, error) { return scanDomain(r) })
		return err
	})
	return out, err
}

// SignUpUser implements team.DomainStore: the user's auth row, on the system path.
func (db *DB) SignUpUser(ctx context.Context, userID string) (team.SignUp, error) {
	u := team.SignUp{UserID: userID}
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		var err error
		u, err = signUp(ctx, tx, userID)
		return err
	})
	return u, err
}

// signUp reads the user's email and whether it is verified, as committed now (tenantkit_system
// may only read auth.users, so the row is not locked: an email changed during a join is seen by
// the event its change causes).
func signUp(ctx context.Context, tx pgx.Tx, userID string) (team.SignUp, error) {
	u := team.SignUp{UserID: userID}
	var email *string
	err := tx.QueryRow(ctx, `SELECT email, coalesce(email_verified, false) FROM auth.users WHERE id = $1`, userID).Scan(&email, &u.EmailVerified)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, nil
	}
	if err != nil {
		return u, err
	}
	u.Known = true
	if email != nil {
		u.Email = *email
	}
	return u, nil
}

// VerifiedDomain implements team.DomainStore on the system path.
func (db *DB) VerifiedDomain(ctx context.Context, domain string) (team.Domain, bool, error) {
	var d team.Domain
	err := db.QueryRowAsSystem(ctx, func(row pgx.Row) error {
		var err error
		d, err = scanDomain(row)
		return err
	}, `SELECT `+domainColumns+` FROM tenant_domains WHERE domain = $1 AND verified_at IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = tenant_id AND t.deleted_at IS NOT NULL)`, domain)
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return d, false, nil
	}
	return d, err == nil, err
}

// JoinByDomain implements team.DomainStore on the system path. The domain row is locked (FOR
// SHARE) for the transaction, so a concurrent removal waits for the join and no join starts
// after it. The plan_limit trigger
// on tenant_users takes the tenant's lock, so concurrent joins are counted one after another.
func (db *DB) JoinByDomain(ctx context.Context, d team.Domain, userID, email string) (string, error) {
	outcome := team.NoLongerValid
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		var role tenantkit.Role
		err := tx.QueryRow(ctx, `SELECT default_role FROM tenant_domains
			WHERE tenant_id = $1 AND id = $2 AND verified_at IS NOT NULL AND policy = 'auto_join'
			  AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = tenant_id AND t.deleted_at IS NOT NULL) FOR SHARE`, d.TenantID, d.ID).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		u, err := signUp(ctx, tx, userID)
		if err != nil || !u.Known || !u.EmailVerified || u.Email != email {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, user_id) DO NOTHING`, d.TenantID, userID, role)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			outcome = team.AlreadyMember
			return nil
		}
		outcome = team.Joined
		if _, err := tx.Exec(ctx, `DELETE FROM tenantkit.domain_offers WHERE tenant_id = $1 AND user_id = $2`, d.TenantID, userID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT tenantkit.audit($1, 'domain.joined', $2, jsonb_build_object('domain', $3::text, 'domain_id', $4::text, 'role', $5::text))`,
			d.TenantID, userID, d.Domain, d.ID, role)
		return err
	})
	return outcome, err
}

// Offer implements team.DomainStore on the system path.
func (db *DB) Offer(ctx context.Context, d team.Domain, userID, reason string) (bool, error) {
	var offered bool
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO tenantkit.domain_offers (tenant_id, user_id, domain_id)
			SELECT d.tenant_id, $3, d.id FROM tenant_domains d
			WHERE d.tenant_id = $1 AND d.id = $2 AND d.verified_at IS NOT NULL
			  AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = d.tenant_id AND t.deleted_at IS NOT NULL)
			  AND NOT EXISTS (SELECT 1 FROM tenant_users m WHERE m.tenant_id = d.tenant_id AND m.user_id = $3)
			ON CONFLICT (tenant_id, user_id) DO NOTHING`, d.TenantID, d.ID, userID)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		offered = true
		_, err = tx.Exec(ctx, `SELECT tenantkit.audit($1, 'domain.offered', $2, jsonb_build_object('domain', $3::text, 'domain_id', $4::text, 'reason', $5::text))`,
			d.TenantID, userID, d.Domain, d.ID, reason)
		return err
	})
	return offered, err
}

// Offers implements team.DomainStore on the system path: the user's own offers.
func (db *DB) Offers(ctx context.Context, userID string) ([]team.DomainOffer, error) {
	var out []team.DomainOffer
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT o.tenant_id::text, t.name, d.domain, d.default_role, o.created_at
			FROM tenantkit.domain_offers o
			JOIN tenant_domains d ON d.tenant_id = o.tenant_id AND d.id = o.domain_id
			JOIN tenants t ON t.id = o.tenant_id
			WHERE o.user_id = $1 AND d.verified_at IS NOT NULL
			ORDER BY o.created_at, o.tenant_id`, userID)
		var err error
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (team.DomainOffer, error) {
			var o team.DomainOffer
			return o, r.Scan(&o.TenantID, &o.TenantName, &o.Domain, &o.Role, &o.CreatedAt)
		})
		return err
	})
	return out, err
}

// AcceptOffer implements team.DomainStore on the system path, recording the caller as the actor.
func (db *DB) AcceptOffer(ctx context.Context, s tenantkit.Session, tenantID string, decide func(team.Domain, team.SignUp) error) (team.Membership, error) {
	m := team.Membership{TenantID: tenantID, UserID: s.UserID()}
	err := db.WithSystemAs(ctx, s, func(tx pgx.Tx) error {
		d, err := scanDomain(tx.QueryRow(ctx, `
			SELECT d.id::text, d.tenant_id::text, d.domain, d.token, d.policy, d.default_role, d.verified_at, d.created_at
			FROM tenantkit.domain_offers o JOIN tenant_domains d ON d.tenant_id = o.tenant_id AND d.id = o.domain_id
			WHERE o.tenant_id = $1 AND o.user_id = $2 FOR UPDATE OF o FOR SHARE OF d`, tenantID, s.UserID()))
		if errors.Is(err, pgx.ErrNoRows) {
			return tenantkit.Errorf(tenantkit.NotFound, "no offer to join this tenant")
		}
		if err != nil {
			return err
		}
		u, err := signUp(ctx, tx, s.UserID())
		if err != nil {
			return err
		}
		if err := decide(d, u); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, user_id) DO NOTHING`, tenantID, s.UserID(), d.DefaultRole); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tenantkit.domain_offers WHERE tenant_id = $1 AND user_id = $2`, tenantID, s.UserID()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT tenantkit.audit($1, 'domain.joined', $2, jsonb_build_object('domain', $3::text, 'domain_id', $4::text, 'role', $5::text))`,
			tenantID, s.UserID(), d.Domain, d.ID, d.DefaultRole); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT role, permissions FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenantID, s.UserID()).
			Scan(&m.Role, &m.Permissions)
	})
	return m, err
}
