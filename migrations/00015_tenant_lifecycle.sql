-- The writes to Stripe that must follow a committed change, and the tenant lifecycle around them.
--
-- tenantkit.stripe_outbox holds every such write, queued in the transaction of the change that
-- makes it necessary and sent after commit by the service's Stripe outbox sender
-- (internal/billing, StripeOutbox): claimed for a lease (SKIP LOCKED, leased_until) so that two
-- replicas never send one row at once, retried with back-off until Stripe confirms, finished with
-- an outcome (sent, already_done, skipped). A refusal that retrying cannot fix is recorded
-- (outcome failed, last_error) and tried again a day later, never in a loop. Kinds:
--   cancel_subscription  end a subscription at once (a deleted tenant's, see below); one row per
--                        idempotency key, which names the tenant, the deletion and the subscription.
--   sync_seats           set the licensed quantity of a per-seat plan's subscription to the
--                        number of members; one row per tenant, coalesced: version counts the
--                        membership changes (and re-syncs) and only the latest is sent.
-- tenant_id has no foreign key: a cancellation still queued when its tenant is purged must go out.
--
-- Tenant deletion is soft, then purged:
-- * deleteTenant marks the tenant deleted (tenants.deleted_at, deleted_by), records the deletion
--   in tenantkit.tenant_deletions (with the date until which it may be restored) and queues the
--   cancellation of every live Stripe subscription of the tenant, in one transaction.
-- * A deleted tenant is nobody's: the membership helpers (member_tenants, manageable_roles) skip
--   it, so every policy that asks them hides it and its rows at once; a member may no longer leave
--   it either (tenant_users' delete policy asks the helper too). Hasura's rules say the same
--   (scripts/hasura-permissions.py).
-- * tenantkit_app may no longer delete tenants, nor set any column but those a member edits:
--   deletion goes through the action.
-- * restoreTenant clears the mark within the window; afterwards tenantkit.purge_tenant removes the
--   tenant and, by cascade, every row it owns, keeping what legal retention needs without personal
--   data: the deletion record (tenant id, dates, Stripe customer and subscription ids; slug, name
--   and actors erased) and the audit log's actions and dates (tenantkit.retained_audit_log).
-- * The audit log says tenant.deleted and tenant.restored; a hard DELETE of a tenant that was never
--   soft-deleted is still recorded in tenant_deletions as before.
--
-- Seats: a plan may be per-seat (subscription_plans.per_seat). Every change of a tenant's
-- memberships (any path: the team actions, Hasura's delete permission, plain SQL) bumps the
-- version of the tenant's sync_seats row in the same transaction, when its current subscription is
-- a Stripe one on a per-seat plan (tenantkit.bump_seats, also called by a Stripe event whose
-- subscription's quantity is not the number of members). The outbox sender reads the members and
-- the version in one snapshot and sets the licensed quantity (internal/billing, seats.go).
-- Pending invitations are not seats: only members are.

-- +goose Up
CREATE TABLE tenantkit.stripe_outbox (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind            text NOT NULL CHECK (kind IN ('cancel_subscription', 'sync_seats')),
  tenant_id       uuid NOT NULL,
  subscription_id text,
  idempotency_key text,
  version         bigint NOT NULL DEFAULT 1,
  attempts        integer NOT NULL DEFAULT 0,
  next_at         timestamptz NOT NULL DEFAULT now(),
  leased_until    timestamptz,
  done_at         timestamptz,
  outcome         text CHECK (outcome IN ('sent', 'already_done', 'skipped', 'retrying', 'failed')),
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (kind <> 'cancel_subscription' OR (subscription_id IS NOT NULL AND idempotency_key IS NOT NULL))
);
CREATE UNIQUE INDEX stripe_outbox_key ON tenantkit.stripe_outbox (idempotency_key) WHERE kind = 'cancel_subscription';
CREATE UNIQUE INDEX stripe_outbox_seats ON tenantkit.stripe_outbox (tenant_id) WHERE kind = 'sync_seats';
CREATE INDEX stripe_outbox_due ON tenantkit.stripe_outbox (next_at) WHERE done_at IS NULL;
CREATE INDEX stripe_outbox_tenant_id_idx ON tenantkit.stripe_outbox (tenant_id);
COMMENT ON TABLE tenantkit.stripe_outbox IS 'Stripe writes queued with the change that needs them, sent after commit (system only)';
ALTER TABLE tenantkit.stripe_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.stripe_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.stripe_outbox TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.stripe_outbox TO tenantkit_system;

-- Soft deletion.
ALTER TABLE tenants
  ADD COLUMN deleted_at timestamptz,
  ADD COLUMN deleted_by uuid REFERENCES auth.users (id) ON DELETE SET NULL;
CREATE INDEX tenants_deleted_by_idx ON tenants (deleted_by);
-- Only deleted tenants: the membership helpers probe it for each membership of the caller, and
-- while few tenants are deleted each probe finds (almost) nothing at once.
CREATE INDEX tenants_deleted_idx ON tenants (id) WHERE deleted_at IS NOT NULL;
COMMENT ON COLUMN tenants.deleted_at IS 'set by deleteTenant: the tenant is hidden from everyone until restored or purged';

ALTER TABLE tenantkit.tenant_deletions
  ALTER COLUMN slug DROP NOT NULL,
  ALTER COLUMN name DROP NOT NULL,
  ADD COLUMN restore_until timestamptz,
  ADD COLUMN restored_at timestamptz,
  ADD COLUMN restored_by uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  ADD COLUMN purged_at timestamptz,
  ADD COLUMN stripe_customer_id text,
  ADD COLUMN stripe_subscription_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX tenant_deletions_restored_by_idx ON tenantkit.tenant_deletions (restored_by);
CREATE INDEX tenant_deletions_open_idx ON tenantkit.tenant_deletions (restore_until)
  WHERE restored_at IS NULL AND purged_at IS NULL;
COMMENT ON TABLE tenantkit.tenant_deletions IS 'Deleted tenants: which, by whom, when, until when restorable, when restored or purged, their Stripe ids (system only; slug, name and actors erased at the purge)';

-- What outlives a purged tenant of its audit log: which action, when, and only the details that
-- name no one (a role, an invitation status). No actor, no subject.
CREATE TABLE tenantkit.retained_audit_log (
  tenant_id  uuid NOT NULL, -- no foreign key: the tenant is gone
  seq        bigint NOT NULL,
  action     text NOT NULL,
  details    jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, seq)
);
COMMENT ON TABLE tenantkit.retained_audit_log IS 'Audit log of purged tenants, without personal data (system only)';
ALTER TABLE tenantkit.retained_audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.retained_audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.retained_audit_log TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.retained_audit_log TO tenantkit_system;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.member_tenants(perm text DEFAULT NULL) RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  uid uuid := tenantkit.current_user_id();
  result uuid[];
BEGIN
  IF uid IS NULL THEN
    RETURN '{}';
  END IF;
  -- Two statements rather than one "perm IS NULL OR …", so each keeps one generic cached plan.
  -- A deleted tenant is nobody's: NOT EXISTS probes tenants_deleted_idx, which holds only deleted
  -- tenants, so it costs next to nothing while few are (a join with tenants cost a lookup of each
  -- membership's tenant, about a third more per call).
  IF perm IS NULL THEN
    SELECT coalesce(array_agg(m.tenant_id), '{}') INTO result
    FROM public.tenant_users m
    WHERE m.user_id = uid
      AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL);
  ELSE
    SELECT coalesce(array_agg(m.tenant_id), '{}') INTO result
    FROM public.tenant_users m
    WHERE m.user_id = uid
      AND tenantkit.allows(m.role, m.permissions, perm)
      AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL);
  END IF;
  RETURN result;
END $$;

CREATE OR REPLACE FUNCTION tenantkit.manageable_roles(perm text) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  uid uuid := tenantkit.current_user_id();
  result text[];
BEGIN
  IF uid IS NULL THEN
    RETURN '{}';
  END IF;
  SELECT coalesce(array_agg(m.tenant_id::text || '/' || r::text), '{}') INTO result
  FROM public.tenant_users m
  CROSS JOIN unnest(enum_range(NULL::public.tenant_role)) r
  WHERE m.user_id = uid
    AND r <= m.role
    AND tenantkit.allows(m.role, m.permissions, perm)
    AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL);
  RETURN result;
END $$;
-- +goose StatementEnd

-- Deletion goes through deleteTenant; a member edits only these columns.
DROP POLICY app_delete ON tenants;
REVOKE DELETE, UPDATE ON tenants FROM tenantkit_app;
GRANT UPDATE (slug, name, settings, metadata) ON tenants TO tenantkit_app;
-- Leaving a tenant, like everything else in it, needs it not to be deleted.
DROP POLICY app_delete ON tenant_users;
CREATE POLICY app_delete ON tenant_users FOR DELETE TO tenantkit_app
  USING ((user_id = (SELECT tenantkit.current_user_id())
          AND array_position((SELECT tenantkit.member_tenants()), tenant_id) IS NOT NULL)
    OR (array_position((SELECT tenantkit.manageable_roles('users:write')), tenant_id::text || '/' || role::text) IS NOT NULL));

-- +goose StatementBegin
-- 00012's audit_change, and: a tenant whose deleted_at is set or cleared is tenant.deleted or
-- tenant.restored (not tenant.updated); the hard DELETE of a soft-deleted tenant (the purge)
-- adds no second deletion record, its own is already there.
CREATE OR REPLACE FUNCTION tenantkit.audit_change(tbl text, op text, o jsonb, n jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r jsonb := coalesce(n, o);
  tenant uuid := CASE WHEN tbl = 'tenants' THEN (r->>'id')::uuid ELSE (r->>'tenant_id')::uuid END;
  changed text[];
  changes jsonb;
BEGIN
  IF op = 'UPDATE' THEN
    SELECT coalesce(array_agg(k ORDER BY k), '{}') INTO changed
    FROM jsonb_object_keys(n) k
    WHERE k <> 'updated_at' AND o->k IS DISTINCT FROM n->k;
    IF cardinality(changed) = 0 THEN
      RETURN;
    END IF;
    SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('from', o->k, 'to', n->k)), '{}') INTO changes
    FROM unnest(changed) k
    WHERE k <> 'token_hash';
  END IF;

  IF tbl = 'tenants' THEN
    IF op = 'INSERT' THEN
      PERFORM tenantkit.audit(tenant, 'tenant.created', r->>'slug', jsonb_build_object('name', r->'name'));
    ELSIF op = 'UPDATE' AND 'deleted_at' = ANY (changed) THEN
      PERFORM tenantkit.audit(tenant, CASE WHEN n->>'deleted_at' IS NULL THEN 'tenant.restored' ELSE 'tenant.deleted' END,
        r->>'slug', '{}');
    ELSIF op = 'UPDATE' THEN
      PERFORM tenantkit.audit(tenant, 'tenant.updated', r->>'slug', jsonb_build_object('changes', changes));
    ELSIF o->>'deleted_at' IS NULL THEN
      INSERT INTO tenantkit.tenant_deletions (tenant_id, slug, name, actor_id)
      VALUES (tenant, r->>'slug', r->>'name', (SELECT u.id FROM auth.users u WHERE u.id = tenantkit.current_user_id()));
    END IF;

  ELSIF tbl = 'tenant_users' THEN
    IF op = 'INSERT' THEN
      PERFORM tenantkit.audit(tenant, 'member.joined', r->>'user_id', jsonb_build_object('role', r->'role'));
    ELSIF op = 'DELETE' THEN
      PERFORM tenantkit.audit(tenant,
        CASE WHEN (r->>'user_id')::uuid = tenantkit.current_user_id() THEN 'member.left' ELSE 'member.removed' END,
        r->>'user_id', jsonb_build_object('role', r->'role'));
    ELSIF changed && ARRAY['role', 'permissions'] THEN
      PERFORM tenantkit.audit(tenant, 'member.role_changed', r->>'user_id',
        jsonb_build_object('from', o->'role', 'to', n->'role', 'permissions', n->'permissions'));
    ELSE
      PERFORM tenantkit.audit(tenant, 'member.updated', r->>'user_id', jsonb_build_object('changes', changes));
    END IF;

  ELSIF tbl = 'tenant_invitations' THEN
    IF op = 'INSERT' THEN
      PERFORM tenantkit.audit(tenant, 'member.invited', r->>'email', jsonb_build_object('role', r->'role', 'invitation_id', r->'id'));
    ELSIF op = 'DELETE' THEN
      PERFORM tenantkit.audit(tenant, 'invitation.deleted', r->>'email',
        jsonb_build_object('invitation_id', r->'id', 'role', r->'role', 'status', r->'status'));
    ELSIF 'status' = ANY (changed) AND n->>'status' IN ('revoked', 'accepted', 'expired') THEN
      PERFORM tenantkit.audit(tenant, 'invitation.' || (n->>'status'), r->>'email', jsonb_build_object('invitation_id', r->'id'));
    ELSIF 'token_hash' = ANY (changed) THEN
      PERFORM tenantkit.audit(tenant, 'invitation.resent', r->>'email', jsonb_build_object('invitation_id', r->'id'));
    ELSE
      PERFORM tenantkit.audit(tenant, 'invitation.updated', r->>'email', jsonb_build_object('invitation_id', r->'id', 'changes', changes));
    END IF;
  END IF;
END $$;

-- Purges a deleted tenant whose restore window ended at or before `at` (false, and nothing done,
-- for any other tenant): keeps its deletion record with the Stripe ids (slug, name, actors
-- erased) and its audit log's actions, dates and impersonal details, then deletes the tenant,
-- whose rows go by cascade. The cancellations still queued in tenantkit.stripe_outbox stay; its
-- seat sync goes.
CREATE FUNCTION tenantkit.purge_tenant(tenant uuid, at timestamptz) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM FROM public.tenants t WHERE t.id = tenant AND t.deleted_at IS NOT NULL FOR UPDATE;
  IF NOT FOUND OR NOT EXISTS (SELECT FROM tenantkit.tenant_deletions d
                              WHERE d.tenant_id = tenant AND d.restored_at IS NULL AND d.purged_at IS NULL
                                AND d.restore_until <= at) THEN
    RETURN false;
  END IF;
  UPDATE tenantkit.tenant_deletions d SET purged_at = clock_timestamp(),
    stripe_customer_id = (SELECT s.stripe_customer_id FROM public.tenant_subscriptions s WHERE s.tenant_id = tenant),
    stripe_subscription_ids = ARRAY(SELECT ss.id FROM tenantkit.stripe_subscriptions ss
                                    WHERE ss.tenant_id = tenant ORDER BY ss.created, ss.id)
  WHERE d.tenant_id = tenant AND d.restored_at IS NULL AND d.purged_at IS NULL;
  UPDATE tenantkit.tenant_deletions d SET slug = NULL, name = NULL, actor_id = NULL, restored_by = NULL
  WHERE d.tenant_id = tenant;
  INSERT INTO tenantkit.retained_audit_log (tenant_id, seq, action, details, created_at)
  SELECT a.tenant_id, a.seq, a.action,
         (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') FROM jsonb_each(a.details) e
          WHERE e.key IN ('role', 'from', 'to', 'status')
            AND e.value #>> '{}' IN ('guest', 'member', 'admin', 'owner', 'pending', 'accepted', 'revoked', 'expired')),
         a.created_at
  FROM public.audit_log a WHERE a.tenant_id = tenant
  ON CONFLICT DO NOTHING;
  DELETE FROM tenantkit.stripe_outbox o WHERE o.tenant_id = tenant AND o.kind = 'sync_seats';
  DELETE FROM public.tenants t WHERE t.id = tenant;
  RETURN true;
END $$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tenantkit.purge_tenant(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.purge_tenant(uuid, timestamptz) TO tenantkit_system;

-- Seats.
ALTER TABLE subscription_plans ADD COLUMN per_seat boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN subscription_plans.per_seat IS 'the Stripe subscription''s licensed quantity follows the number of members';

-- +goose StatementBegin
-- A membership of the tenant changed (or Stripe holds another quantity): queue a seat sync, or
-- make the queued one newer, when the tenant (not deleted) has a Stripe subscription on a
-- per-seat plan. The row's version counts these changes; the sender sends only the latest.
CREATE FUNCTION tenantkit.bump_seats(tenant uuid) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO tenantkit.stripe_outbox AS o (kind, tenant_id)
  SELECT 'sync_seats', s.tenant_id
  FROM public.tenant_subscriptions s
  JOIN public.subscription_plans p ON p.id = s.plan_id AND p.per_seat
  JOIN public.tenants t ON t.id = s.tenant_id AND t.deleted_at IS NULL
  WHERE s.tenant_id = tenant AND s.stripe_subscription_id IS NOT NULL
  ON CONFLICT (tenant_id) WHERE kind = 'sync_seats' DO UPDATE
    SET version = o.version + 1, done_at = NULL, next_at = now(), attempts = 0, outcome = NULL,
        last_error = NULL, updated_at = now()
$$;

CREATE FUNCTION tenantkit.seats_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM tenantkit.bump_seats(OLD.tenant_id);
  END IF;
  IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) THEN
    PERFORM tenantkit.bump_seats(NEW.tenant_id);
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.bump_seats(uuid) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.seats_changed() OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.bump_seats(uuid), tenantkit.seats_changed() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.bump_seats(uuid) TO tenantkit_system;
CREATE TRIGGER seats AFTER INSERT OR DELETE OR UPDATE OF tenant_id ON tenant_users
  FOR EACH ROW EXECUTE FUNCTION tenantkit.seats_changed();

-- +goose Down
DROP TRIGGER seats ON tenant_users;
DROP FUNCTION tenantkit.seats_changed(), tenantkit.bump_seats(uuid);
ALTER TABLE subscription_plans DROP COLUMN per_seat;
DROP FUNCTION tenantkit.purge_tenant(uuid, timestamptz);
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.audit_change(tbl text, op text, o jsonb, n jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r jsonb := coalesce(n, o);
  tenant uuid := CASE WHEN tbl = 'tenants' THEN (r->>'id')::uuid ELSE (r->>'tenant_id')::uuid END;
  changed text[];
  changes jsonb;
BEGIN
  IF op = 'UPDATE' THEN
    SELECT coalesce(array_agg(k ORDER BY k), '{}') INTO changed
    FROM jsonb_object_keys(n) k
    WHERE k <> 'updated_at' AND o->k IS DISTINCT FROM n->k;
    IF cardinality(changed) = 0 THEN
      RETURN;
    END IF;
    SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('from', o->k, 'to', n->k)), '{}') INTO changes
    FROM unnest(changed) k
    WHERE k <> 'token_hash';
  END IF;

  IF tbl = 'tenants' THEN
    IF op = 'INSERT' THEN
      PERFORM tenantkit.audit(tenant, 'tenant.created', r->>'slug', jsonb_build_object('name', r->'name'));
    ELSIF op = 'UPDATE' THEN
      PERFORM tenantkit.audit(tenant, 'tenant.updated', r->>'slug', jsonb_build_object('changes', changes));
    ELSE
      INSERT INTO tenantkit.tenant_deletions (tenant_id, slug, name, actor_id)
      VALUES (tenant, r->>'slug', r->>'name', (SELECT u.id FROM auth.users u WHERE u.id = tenantkit.current_user_id()));
    END IF;

  ELSIF tbl = 'tenant_users' THEN
    IF op = 'INSERT' THEN
      PERFORM tenantkit.audit(tenant, 'member.joined', r->>'user_id', jsonb_build_object('role', r->'role'));
    ELSIF op = 'DELETE' THEN
      PERFORM tenantkit.audit(tenant,
        CASE WHEN (r->>'user_id')::uuid = tenantkit.current_user_id() THEN 'member.left' ELSE 'member.removed' END,
        r->>'user_id', jsonb_build_object('role', r->'role'));
    ELSIF changed && ARRAY['role', 'permissions'] THEN
      PERFORM tenantkit.audit(tenant, 'member.role_changed', r->>'user_id',
        jsonb_build_object('from', o->'role', 'to', n->'role', 'permissions', n->'permissions'));
    ELSE
      PERFORM tenantkit.audit(tenant, 'member.updated', r->>'user_id', jsonb_build_object('changes', changes));
    END IF;

  ELSIF tbl = 'tenant_invitations' THEN
    IF op = 'INSERT' THEN
      PERFORM tenantkit.audit(tenant, 'member.invited', r->>'email', jsonb_build_object('role', r->'role', 'invitation_id', r->'id'));
    ELSIF op = 'DELETE' THEN
      PERFORM tenantkit.audit(tenant, 'invitation.deleted', r->>'email',
        jsonb_build_object('invitation_id', r->'id', 'role', r->'role', 'status', r->'status'));
    ELSIF 'status' = ANY (changed) AND n->>'status' IN ('revoked', 'accepted', 'expired') THEN
      PERFORM tenantkit.audit(tenant, 'invitation.' || (n->>'status'), r->>'email', jsonb_build_object('invitation_id', r->'id'));
    ELSIF 'token_hash' = ANY (changed) THEN
      PERFORM tenantkit.audit(tenant, 'invitation.resent', r->>'email', jsonb_build_object('invitation_id', r->'id'));
    ELSE
      PERFORM tenantkit.audit(tenant, 'invitation.updated', r->>'email', jsonb_build_object('invitation_id', r->'id', 'changes', changes));
    END IF;
  END IF;
END $$;
-- +goose StatementEnd
DROP POLICY app_delete ON tenant_users;
CREATE POLICY app_delete ON tenant_users FOR DELETE TO tenantkit_app
  USING (user_id = (SELECT tenantkit.current_user_id())
    OR (array_position((SELECT tenantkit.manageable_roles('users:write')), tenant_id::text || '/' || role::text) IS NOT NULL));
REVOKE UPDATE (slug, name, settings, metadata) ON tenants FROM tenantkit_app;
GRANT UPDATE, DELETE ON tenants TO tenantkit_app;
CREATE POLICY app_delete ON tenants FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('tenants:delete')), id) IS NOT NULL);
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.member_tenants(perm text DEFAULT NULL) RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  uid uuid := tenantkit.current_user_id();
  result uuid[];
BEGIN
  IF uid IS NULL THEN
    RETURN '{}';
  END IF;
  -- Two statements rather than one "perm IS NULL OR …", so each keeps one generic cached plan.
  IF perm IS NULL THEN
    SELECT coalesce(array_agg(m.tenant_id), '{}') INTO result
    FROM public.tenant_users m
    WHERE m.user_id = uid;
  ELSE
    SELECT coalesce(array_agg(m.tenant_id), '{}') INTO result
    FROM public.tenant_users m
    WHERE m.user_id = uid
      AND tenantkit.allows(m.role, m.permissions, perm);
  END IF;
  RETURN result;
END $$;

CREATE OR REPLACE FUNCTION tenantkit.manageable_roles(perm text) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  uid uuid := tenantkit.current_user_id();
  result text[];
BEGIN
  IF uid IS NULL THEN
    RETURN '{}';
  END IF;
  SELECT coalesce(array_agg(m.tenant_id::text || '/' || r::text), '{}') INTO result
  FROM public.tenant_users m
  CROSS JOIN unnest(enum_range(NULL::public.tenant_role)) r
  WHERE m.user_id = uid
    AND r <= m.role
    AND tenantkit.allows(m.role, m.permissions, perm);
  RETURN result;
END $$;
-- +goose StatementEnd
DROP TABLE tenantkit.retained_audit_log;
DROP INDEX tenantkit.tenant_deletions_open_idx, tenantkit.tenant_deletions_restored_by_idx;
ALTER TABLE tenantkit.tenant_deletions
  DROP COLUMN restore_until, DROP COLUMN restored_at, DROP COLUMN restored_by, DROP COLUMN purged_at,
  DROP COLUMN stripe_customer_id, DROP COLUMN stripe_subscription_ids;
-- Records erased by a purge have no slug and name any more; the old schema requires them.
DELETE FROM tenantkit.tenant_deletions WHERE slug IS NULL OR name IS NULL;
ALTER TABLE tenantkit.tenant_deletions ALTER COLUMN slug SET NOT NULL, ALTER COLUMN name SET NOT NULL;
DROP INDEX tenants_deleted_idx, tenants_deleted_by_idx;
ALTER TABLE tenants DROP COLUMN deleted_at, DROP COLUMN deleted_by;
DROP TABLE tenantkit.stripe_outbox;
