-- Team management: the audit log, the invitation email outbox and Hasura event deduplication.

-- +goose Up

-- Who did what in a tenant. Rows are written by triggers (so every client, Hasura included, is
-- recorded) and by tenantkit.audit() for domain events no single row change expresses. The actor is
-- the caller of hasura.user; NULL when the change came from the system path without a caller.
CREATE TABLE audit_log (
  id         uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  actor_id   uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  action     text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
  subject    text,
  details    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- the order entries were written in, also within one transaction
  seq        bigint GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_log_tenant_seq_idx ON audit_log (tenant_id, seq DESC);
CREATE INDEX audit_log_actor_id_idx ON audit_log (actor_id);
COMMENT ON TABLE audit_log IS 'Team events per tenant: who did what, when (readable by admins and owners)';

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON audit_log TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY app_select ON audit_log FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('settings:read')), tenant_id) IS NOT NULL);
GRANT SELECT ON audit_log TO tenantkit_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_log TO tenantkit_system;

-- +goose StatementBegin
-- Appends one audit entry for the current caller. SECURITY DEFINER so that no client needs write
-- access to the log; writing into a tenant that is being deleted is skipped.
CREATE FUNCTION tenantkit.audit(tenant uuid, action text, subject text, details jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO public.audit_log (tenant_id, actor_id, action, subject, details)
  SELECT tenant, u.id, action, subject, coalesce(details, '{}')
  FROM public.tenants t
  LEFT JOIN auth.users u ON u.id = tenantkit.current_user_id()
  WHERE t.id = tenant
$$;

CREATE FUNCTION tenantkit.audit_trigger() RETURNS trigger
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
ALTER FUNCTION tenantkit.audit(uuid, text, text, jsonb) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.audit_trigger() OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.audit(uuid, text, text, jsonb), tenantkit.audit_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.audit(uuid, text, text, jsonb) TO tenantkit_system;

CREATE TRIGGER audit AFTER INSERT ON tenants FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_trigger();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON tenant_users FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_trigger();
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON tenant_invitations FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_trigger();

-- The invitation email outbox: the token of a new or re-sent invitation, sealed (AES-GCM) with a key
-- only the service holds, until the email carrying it has been accepted by the SMTP server. The
-- database alone never holds a usable token. System only.
CREATE TABLE tenantkit.invitation_outbox (
  tenant_id     uuid NOT NULL,
  invitation_id uuid NOT NULL,
  token_hash    bytea NOT NULL,
  sealed_token  bytea NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, invitation_id),
  FOREIGN KEY (tenant_id, invitation_id) REFERENCES tenant_invitations (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE tenantkit.invitation_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.invitation_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.invitation_outbox TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.invitation_outbox TO tenantkit_system;

-- The service stages the email of an invitation it has just written (as the caller, under RLS):
-- allowed only while the invitation's current token hash is the one being staged, so staging
-- proves nothing beyond what the caller could already write.
-- +goose StatementBegin
CREATE FUNCTION tenantkit.stage_invitation_email(tenant uuid, invitation uuid, hash bytea, sealed bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM public.tenant_invitations i
                 WHERE i.tenant_id = tenant AND i.id = invitation AND i.token_hash = hash AND i.status = 'pending'
                   AND i.tenant_id = ANY (tenantkit.member_tenants('users:invite'))) THEN
    RETURN false;
  END IF;
  INSERT INTO tenantkit.invitation_outbox (tenant_id, invitation_id, token_hash, sealed_token)
  VALUES (tenant, invitation, hash, sealed)
  ON CONFLICT (tenant_id, invitation_id) DO UPDATE
    SET token_hash = EXCLUDED.token_hash, sealed_token = EXCLUDED.sealed_token, created_at = now();
  RETURN true;
END $$;

-- A domain event written by the service for its caller, who must be a member of the tenant.
CREATE FUNCTION tenantkit.audit_as_member(tenant uuid, action text, subject text, details jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT tenant = ANY (tenantkit.member_tenants()) THEN
    RETURN false;
  END IF;
  PERFORM tenantkit.audit(tenant, action, subject, details);
  RETURN true;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.stage_invitation_email(uuid, uuid, bytea, bytea) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.audit_as_member(uuid, text, text, jsonb) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.stage_invitation_email(uuid, uuid, bytea, bytea), tenantkit.audit_as_member(uuid, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.stage_invitation_email(uuid, uuid, bytea, bytea), tenantkit.audit_as_member(uuid, text, text, jsonb) TO tenantkit_app;

-- Invitations are addressed by id alone in actions (revoke, resend).
CREATE INDEX tenant_invitations_id_idx ON tenant_invitations (id);

-- Hasura event deliveries (at least once, in any order): one row per event id. A delivery claims the
-- id for a lease; a concurrent duplicate sees the claim and is told to retry later; a finished one
-- is answered without doing anything again.
CREATE TABLE tenantkit.processed_events (
  id            uuid PRIMARY KEY,
  trigger_name  text NOT NULL,
  claimed_until timestamptz,
  done_at       timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenantkit.processed_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.processed_events FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.processed_events TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.processed_events TO tenantkit_system;

-- +goose Down
DROP TABLE tenantkit.processed_events;
DROP INDEX tenant_invitations_id_idx;
DROP FUNCTION tenantkit.stage_invitation_email(uuid, uuid, bytea, bytea), tenantkit.audit_as_member(uuid, text, text, jsonb);
DROP TABLE tenantkit.invitation_outbox;
DROP TRIGGER audit ON tenant_invitations;
DROP TRIGGER audit ON tenant_users;
DROP TRIGGER audit ON tenants;
DROP FUNCTION tenantkit.audit_trigger(), tenantkit.audit(uuid, text, text, jsonb);
DROP TABLE audit_log;
