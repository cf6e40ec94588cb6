-- The data model: the guide's seven tables (corrected) plus auth.users when absent and the
-- append-only usage_events. Every tenant-owned row carries tenant_id, and tenant_id leads every key
-- that identifies a tenant row, so the schema can later be distributed by tenant without redesign.
-- See docs/schema.md for what changed from the guide and why.

-- +goose Up

-- auth.users belongs to nhost's hasura-auth. Run hasura-auth's migrations first when you use it; this
-- creates a compatible subset only when the table is absent (and marks it, so `down` drops only its own).
CREATE SCHEMA IF NOT EXISTS auth;
-- +goose StatementBegin
DO $$
BEGIN
  IF to_regclass('auth.users') IS NULL THEN
    CREATE TABLE auth.users (
      id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      created_at     timestamptz NOT NULL DEFAULT now(),
      updated_at     timestamptz NOT NULL DEFAULT now(),
      last_seen      timestamptz,
      disabled       boolean NOT NULL DEFAULT false,
      display_name   text NOT NULL DEFAULT '',
      avatar_url     text NOT NULL DEFAULT '',
      locale         varchar(2) NOT NULL DEFAULT 'en',
      email          text UNIQUE,
      email_verified boolean NOT NULL DEFAULT false,
      default_role   text NOT NULL DEFAULT 'user',
      is_anonymous   boolean NOT NULL DEFAULT false,
      metadata       jsonb
    );
    COMMENT ON TABLE auth.users IS 'created by tenantkit (hasura-auth compatible subset)';
  END IF;
END $$;
-- +goose StatementEnd
GRANT USAGE ON SCHEMA auth TO tenantkit_system;
GRANT SELECT ON auth.users TO tenantkit_system;

-- Ordered from least to most: comparisons (role <= 'admin') follow the hierarchy.
CREATE TYPE tenant_role AS ENUM ('guest', 'member', 'admin', 'owner');
CREATE TYPE invitation_status AS ENUM ('pending', 'accepted', 'revoked', 'expired');
-- Stripe's subscription statuses, verbatim.
CREATE TYPE subscription_status AS ENUM (
  'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'incomplete', 'incomplete_expired', 'paused');

-- The permission vocabulary. A permission is "resource:action"; a grant is a permission, "resource:*"
-- (every action on that resource) or "*" (everything). The same table lives in Go
-- (tenantkit.RolePermissions); a test keeps the two equal.
-- +goose StatementBegin
-- role_grants and grant_matches are on the policies' path: SQL-standard bodies (names bound at
-- creation, so no search_path is consulted at run time) without a SET clause, so that the planner
-- inlines them.
CREATE FUNCTION tenantkit.role_grants(r tenant_role) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE r
    WHEN 'owner'  THEN ARRAY['*']
    WHEN 'admin'  THEN ARRAY['users:*', 'projects:*', 'settings:read', 'settings:write', 'billing:*']
    WHEN 'member' THEN ARRAY['projects:read', 'projects:write']
    WHEN 'guest'  THEN ARRAY['projects:read']
  END;

CREATE FUNCTION tenantkit.grant_matches(g text, wanted text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN g = '*' OR g = wanted
    OR (right(g, 2) = ':*' AND length(wanted) >= length(g) AND left(wanted, length(g) - 1) = left(g, length(g) - 1));

-- Does a member with role r and custom grants allow perm? (NULL perm: membership alone suffices.)
-- Given the grammar of grants ("*", "resource:*", "resource:action"), a grant covers perm exactly
-- when it is "*", perm itself, or perm's "resource:*": two overlap tests, no sub-select, so the
-- function inlines into the policy helpers' queries.
CREATE FUNCTION tenantkit.allows(r tenant_role, custom jsonb, perm text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN perm IS NULL
    OR tenantkit.role_grants(r) && ARRAY['*', perm, CASE WHEN perm ~ '^[^:]+:.' THEN split_part(perm, ':', 1) || ':*' END]
    OR custom ?| ARRAY['*', perm, CASE WHEN perm ~ '^[^:]+:.' THEN split_part(perm, ':', 1) || ':*' END];

CREATE FUNCTION tenantkit.valid_permissions(p jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_typeof(p) = 'array' AND jsonb_array_length(p) <= 100 AND NOT EXISTS (
    SELECT 1 FROM jsonb_array_elements(p) e
    WHERE jsonb_typeof(e) <> 'string'
       OR (e #>> '{}') !~ '^(\*|[a-z][a-z0-9_]{0,62}:(\*|[a-z][a-z0-9_]{0,62}))$')
$$;

CREATE FUNCTION tenantkit.valid_limits(l jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_typeof(l) = 'object' AND NOT EXISTS (
    SELECT 1 FROM jsonb_each(l) e
    WHERE jsonb_typeof(e.value) <> 'number'
       OR (e.value #>> '{}') !~ '^-?[0-9]{1,18}$'
       OR e.value::numeric < -1)
$$;
-- +goose StatementEnd
GRANT EXECUTE ON FUNCTION tenantkit.role_grants(tenant_role), tenantkit.grant_matches(text, text),
  tenantkit.allows(tenant_role, jsonb, text)
  TO tenantkit_app, tenantkit_system;

CREATE TABLE tenants (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- a DNS label: lowercase letters, digits and inner hyphens, 3 to 63 characters
  slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
  name       text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
  settings   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
  metadata   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenants IS 'Organizations using the platform';

CREATE TABLE tenant_users (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  user_id     uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  role        tenant_role NOT NULL DEFAULT 'member',
  -- custom permissions on top of the role's, e.g. ["users:invite"]
  permissions jsonb NOT NULL DEFAULT '[]' CHECK (tenantkit.valid_permissions(permissions)),
  invited_by  uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  joined_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX tenant_users_user_id_idx ON tenant_users (user_id, tenant_id);
CREATE INDEX tenant_users_invited_by_idx ON tenant_users (invited_by);
COMMENT ON TABLE tenant_users IS 'Memberships: users belonging to tenants with a role';

CREATE TABLE tenant_invitations (
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  email       text NOT NULL CHECK (email = lower(btrim(email)) AND email LIKE '_%@_%'),
  role        tenant_role NOT NULL DEFAULT 'member',
  invited_by  uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  status      invitation_status NOT NULL DEFAULT 'pending',
  -- sha256 of the token; the token itself is never stored
  token_hash  bytea NOT NULL CHECK (length(token_hash) = 32),
  expires_at  timestamptz NOT NULL DEFAULT now() + interval '7 days',
  accepted_by uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  accepted_at timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
-- one pending invitation per address and tenant; revoked, expired and accepted ones may be re-sent
CREATE UNIQUE INDEX tenant_invitations_pending_email_key ON tenant_invitations (tenant_id, email) WHERE status = 'pending';
CREATE INDEX tenant_invitations_token_hash_idx ON tenant_invitations (token_hash);
CREATE INDEX tenant_invitations_email_idx ON tenant_invitations (email);
CREATE INDEX tenant_invitations_invited_by_idx ON tenant_invitations (invited_by);
CREATE INDEX tenant_invitations_accepted_by_idx ON tenant_invitations (accepted_by);
COMMENT ON TABLE tenant_invitations IS 'Invitations to join a tenant';

CREATE TABLE subscription_plans (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- stable key used to find the plan again (plans sync, Stripe lookup keys)
  key               text NOT NULL UNIQUE CHECK (key ~ '^[a-z0-9_-]{1,64}$'),
  name              text NOT NULL UNIQUE,
  description       text NOT NULL DEFAULT '',
  stripe_product_id text UNIQUE,
  stripe_price_id   text UNIQUE,
  -- in the currency's smallest unit, as Stripe's unit_amount
  unit_amount       bigint NOT NULL CHECK (unit_amount >= 0),
  currency          text NOT NULL DEFAULT 'usd' CHECK (currency ~ '^[a-z]{3}$'),
  "interval"        text NOT NULL DEFAULT 'month' CHECK ("interval" IN ('month', 'year')),
  features          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(features) = 'array'),
  -- {"users": 5, "projects": 10, "storage_gb": 5}; -1 means unlimited, a missing key too
  limits            jsonb NOT NULL DEFAULT '{}' CHECK (tenantkit.valid_limits(limits)),
  is_active         boolean NOT NULL DEFAULT true,
  is_default        boolean NOT NULL DEFAULT false,
  sort_order        integer NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX subscription_plans_one_default_key ON subscription_plans (is_default) WHERE is_default;
CREATE INDEX subscription_plans_active_idx ON subscription_plans (is_active, sort_order);
COMMENT ON TABLE subscription_plans IS 'Available subscription plans';

CREATE TABLE tenant_subscriptions (
  tenant_id                   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  plan_id                     uuid NOT NULL REFERENCES subscription_plans (id),
  status                      subscription_status NOT NULL DEFAULT 'trialing',
  stripe_customer_id          text,
  stripe_subscription_id      text,
  trial_ends_at               timestamptz,
  current_period_start        timestamptz,
  current_period_end          timestamptz,
  cancel_at_period_end        boolean NOT NULL DEFAULT false,
  cancel_at                   timestamptz,
  canceled_at                 timestamptz,
  created_at                  timestamptz NOT NULL DEFAULT now(),
  updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_subscriptions_plan_id_idx ON tenant_subscriptions (plan_id);
CREATE INDEX tenant_subscriptions_status_idx ON tenant_subscriptions (status);
CREATE INDEX tenant_subscriptions_stripe_subscription_id_idx ON tenant_subscriptions (stripe_subscription_id);
CREATE INDEX tenant_subscriptions_stripe_customer_id_idx ON tenant_subscriptions (stripe_customer_id);
COMMENT ON TABLE tenant_subscriptions IS 'The current subscription of each tenant (one row per tenant)';

-- Usage: every event is appended to usage_events (its key makes a retry a no-op) and added to a
-- counter row in billing_usage chosen among a few slots, so concurrent writers of one tenant, metric
-- and hour do not queue on one row. The exact total of a period is the sum over its slots.
CREATE TABLE billing_usage (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  metric       text NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]{0,63}$'),
  period_start timestamptz NOT NULL,
  period_end   timestamptz NOT NULL,
  slot         smallint NOT NULL DEFAULT 0 CHECK (slot BETWEEN 0 AND 63),
  quantity     numeric(20, 4) NOT NULL DEFAULT 0,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, metric, period_start, slot),
  CHECK (period_end > period_start)
) WITH (fillfactor = 70); -- counters are updated in place: room on the page makes those updates HOT
COMMENT ON TABLE billing_usage IS 'Metered usage per tenant, metric and period (sum over slot)';

CREATE TABLE tenantkit.usage_events (
  tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  metric          text NOT NULL,
  quantity        numeric(20, 4) NOT NULL,
  occurred_at     timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, idempotency_key)
);
COMMENT ON TABLE tenantkit.usage_events IS 'Every usage event once, by its idempotency key (system only)';

CREATE TABLE projects (
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
  description text,
  owner_id    uuid NOT NULL REFERENCES auth.users (id),
  settings    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX projects_tenant_created_idx ON projects (tenant_id, created_at DESC);
CREATE INDEX projects_owner_id_idx ON projects (owner_id);
COMMENT ON TABLE projects IS 'Example of tenant-owned business data';

-- +goose StatementBegin
CREATE FUNCTION tenantkit.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON tenants FOR EACH ROW EXECUTE FUNCTION tenantkit.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON tenant_invitations FOR EACH ROW EXECUTE FUNCTION tenantkit.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON subscription_plans FOR EACH ROW EXECUTE FUNCTION tenantkit.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON tenant_subscriptions FOR EACH ROW EXECUTE FUNCTION tenantkit.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON projects FOR EACH ROW EXECUTE FUNCTION tenantkit.touch_updated_at();

-- +goose Down
DROP TABLE projects, tenantkit.usage_events, billing_usage, tenant_subscriptions, subscription_plans,
  tenant_invitations, tenant_users, tenants;
DROP FUNCTION tenantkit.touch_updated_at(), tenantkit.role_grants(tenant_role), tenantkit.grant_matches(text, text),
  tenantkit.allows(tenant_role, jsonb, text), tenantkit.valid_permissions(jsonb), tenantkit.valid_limits(jsonb);
DROP TYPE subscription_status, invitation_status, tenant_role;
-- +goose StatementBegin
DO $$
BEGIN
  IF obj_description('auth.users'::regclass, 'pg_class') = 'created by tenantkit (hasura-auth compatible subset)' THEN
    DROP TABLE auth.users;
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = 'auth'::regnamespace) THEN
      DROP SCHEMA auth;
    END IF;
  ELSE
    REVOKE ALL ON auth.users FROM tenantkit_system;
    REVOKE ALL ON SCHEMA auth FROM tenantkit_system;
  END IF;
END $$;
-- +goose StatementEnd
