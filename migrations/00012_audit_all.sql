-- Every change to tenants, memberships (tenant_users) and invitations is recorded, whichever path
-- made it (the service, Hasura's insert/update/delete permissions, plain SQL): 00006 recorded only
-- what the service's actions do, so an invitation deleted through Hasura, or a tenant renamed
-- through it, left no entry.
--
--   tenants             INSERT tenant.created, UPDATE tenant.updated, DELETE → tenantkit.tenant_deletions
--   tenant_users        INSERT member.joined, UPDATE member.role_changed or member.updated,
--                       DELETE member.left (the caller themself) or member.removed
--   tenant_invitations  INSERT member.invited, UPDATE invitation.revoked / accepted / resent /
--                       expired or invitation.updated, DELETE invitation.deleted
--
-- An UPDATE that changes nothing but updated_at changed nothing, and records nothing. An UPDATE
-- that changes a row's key (another tenant, member or invitation) is recorded as the old row's
-- removal and the new row's arrival, each in its own tenant's log. The generic entries
-- (tenant.updated, member.updated, invitation.updated) carry {"changes": {column: {from, to}}};
-- an invitation's token hash is never copied into the log.
--
-- A deleted tenant's log is deleted with it (audit_log.tenant_id cascades, like every row of the
-- tenant): it is the tenant's data, only its members could read it, and it holds their invitees'
-- addresses. Entries for rows removed by that cascade are skipped (tenantkit.audit writes only
-- into existing tenants). What outlives the tenant is one row in tenantkit.tenant_deletions: which
-- tenant (id, slug, name), who deleted it and when — for operators, readable by the system role
-- only.

-- +goose Up

CREATE TABLE tenantkit.tenant_deletions (
  seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- no foreign key: the tenant is gone
  tenant_id  uuid NOT NULL,
  slug       text NOT NULL,
  name       text NOT NULL,
  actor_id   uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  deleted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX tenant_deletions_tenant_id_idx ON tenantkit.tenant_deletions (tenant_id);
CREATE INDEX tenant_deletions_actor_id_idx ON tenantkit.tenant_deletions (actor_id);
COMMENT ON TABLE tenantkit.tenant_deletions IS 'Deleted tenants: which, by whom, when (system only; the tenant''s audit log goes with it)';
ALTER TABLE tenantkit.tenant_deletions ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.tenant_deletions FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.tenant_deletions TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.tenant_deletions TO tenantkit_system;

-- +goose StatementBegin
-- Records one row change: op is INSERT, UPDATE or DELETE, o and n the old and new row as jsonb
-- (NULL where the operation has none). Runs as its caller, the audit trigger (tenantkit_system).
CREATE FUNCTION tenantkit.audit_change(tbl text, op text, o jsonb, n jsonb) RETURNS void
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

CREATE OR REPLACE FUNCTION tenantkit.audit_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  o jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
  n jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
  key text[] := CASE TG_TABLE_NAME WHEN 'tenants' THEN ARRAY['id']
                                   WHEN 'tenant_users' THEN ARRAY['tenant_id', 'user_id']
                                   ELSE ARRAY['tenant_id', 'id'] END;
BEGIN
  IF TG_OP = 'UPDATE' AND EXISTS (SELECT FROM unnest(key) k WHERE o->k IS DISTINCT FROM n->k) THEN
    PERFORM tenantkit.audit_change(TG_TABLE_NAME, 'DELETE', o, NULL);
    PERFORM tenantkit.audit_change(TG_TABLE_NAME, 'INSERT', NULL, n);
  ELSE
    PERFORM tenantkit.audit_change(TG_TABLE_NAME, TG_OP, o, n);
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.audit_change(text, text, jsonb, jsonb) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.audit_change(text, text, jsonb, jsonb) FROM PUBLIC;

DROP TRIGGER audit ON tenants;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON tenants FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_trigger();
DROP TRIGGER audit ON tenant_invitations;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON tenant_invitations FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_trigger();

-- +goose Down
DROP TRIGGER audit ON tenant_invitations;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON tenant_invitations FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_trigger();
DROP TRIGGER audit ON tenants;
CREATE TRIGGER audit AFTER INSERT ON tenants FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_trigger();

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.audit_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_TABLE_NAME = 'tenants' THEN
    PERFORM tenantkit.audit(NEW.id, 'tenant.created', NEW.slug, jsonb_build_object('name', NEW.name));
  ELSIF TG_TABLE_NAME = 'tenant_users' THEN
    IF TG_OP = 'INSERT' THEN
      PERFORM tenantkit.audit(NEW.tenant_id, 'member.joined', NEW.user_id::text, jsonb_build_object('role', NEW.role));
    ELSIF TG_OP = 'DELETE' THEN
      PERFORM tenantkit.audit(OLD.tenant_id,
        CASE WHEN OLD.user_id = tenantkit.current_user_id() THEN 'member.left' ELSE 'member.removed' END,
        OLD.user_id::text, jsonb_build_object('role', OLD.role));
    ELSIF OLD.role IS DISTINCT FROM NEW.role OR OLD.permissions IS DISTINCT FROM NEW.permissions THEN
      PERFORM tenantkit.audit(NEW.tenant_id, 'member.role_changed', NEW.user_id::text,
        jsonb_build_object('from', OLD.role, 'to', NEW.role, 'permissions', NEW.permissions));
    END IF;
  ELSIF TG_TABLE_NAME = 'tenant_invitations' THEN
    IF TG_OP = 'INSERT' THEN
      PERFORM tenantkit.audit(NEW.tenant_id, 'member.invited', NEW.email, jsonb_build_object('role', NEW.role, 'invitation_id', NEW.id));
    ELSIF OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('revoked', 'accepted') THEN
      PERFORM tenantkit.audit(NEW.tenant_id, 'invitation.' || NEW.status::text, NEW.email, jsonb_build_object('invitation_id', NEW.id));
    ELSIF OLD.token_hash IS DISTINCT FROM NEW.token_hash THEN
      PERFORM tenantkit.audit(NEW.tenant_id, 'invitation.resent', NEW.email, jsonb_build_object('invitation_id', NEW.id));
    END IF;
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
DROP FUNCTION tenantkit.audit_change(text, text, jsonb, jsonb);
DROP TABLE tenantkit.tenant_deletions;
