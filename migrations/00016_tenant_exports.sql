-- Tenant data exports (GDPR): an owner's request for a download link of the tenant's archive.
--
-- * tenantkit.tenant_exports records each request: the tenant, the requesting owner, when the
--   link expires, and when it was used. The link is signed by the service and works once: the
--   download marks the row used in one statement, so two downloads of one link never both start.
-- * The archive is read as the owner, under RLS. Most tenant tables already let a member read
--   them; the tables that were system-only get a SELECT policy for the tenant's owners
--   (manageable_roles('tenants:export') lists '<tenant>/owner' for an owner only: nobody ranks
--   above owner, and the owner holds every permission through '*').
-- * Members' email addresses live in auth.users, which tenantkit_app cannot read:
--   tenantkit.export_member_emails returns them to an owner of the tenant only.

-- +goose Up
CREATE TABLE tenantkit.tenant_exports (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  user_id       uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  downloaded_at timestamptz,
  CHECK (expires_at > created_at)
);
CREATE INDEX tenant_exports_tenant_id_idx ON tenantkit.tenant_exports (tenant_id, created_at);
CREATE INDEX tenant_exports_user_id_idx ON tenantkit.tenant_exports (user_id);
CREATE INDEX tenant_exports_expires_at_idx ON tenantkit.tenant_exports (expires_at);
COMMENT ON TABLE tenantkit.tenant_exports IS 'Tenant export links: who asked, until when, when used (system only)';
ALTER TABLE tenantkit.tenant_exports ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.tenant_exports FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.tenant_exports TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.tenant_exports TO tenantkit_system;

-- The owners of a tenant read its system-held rows during an export.
CREATE POLICY app_export ON tenantkit.usage_events FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('tenants:export')), tenant_id::text || '/owner') IS NOT NULL);
CREATE POLICY app_export ON tenantkit.stripe_subscriptions FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('tenants:export')), tenant_id::text || '/owner') IS NOT NULL);
CREATE POLICY app_export ON tenantkit.email_outbox FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('tenants:export')), tenant_id::text || '/owner') IS NOT NULL);
CREATE POLICY app_export ON tenantkit.invitation_sends FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('tenants:export')), tenant_id::text || '/owner') IS NOT NULL);
GRANT SELECT ON tenantkit.usage_events, tenantkit.stripe_subscriptions, tenantkit.email_outbox, tenantkit.invitation_sends
  TO tenantkit_app;

-- +goose StatementBegin
-- The tenant's members and their addresses, for an owner of the tenant (the caller of hasura.user);
-- nothing for anyone else. SECURITY DEFINER (owned by tenantkit_system, which may read auth.users).
CREATE FUNCTION tenantkit.export_member_emails(tenant uuid) RETURNS TABLE (user_id uuid, email text)
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.user_id, u.email
  FROM public.tenant_users m JOIN auth.users u ON u.id = m.user_id
  WHERE m.tenant_id = tenant
    AND EXISTS (SELECT FROM public.tenant_users o
                WHERE o.tenant_id = tenant AND o.user_id = tenantkit.current_user_id() AND o.role = 'owner')
$$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.export_member_emails(uuid) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.export_member_emails(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.export_member_emails(uuid) TO tenantkit_app;

-- +goose Down
DROP FUNCTION tenantkit.export_member_emails(uuid);
REVOKE SELECT ON tenantkit.usage_events, tenantkit.stripe_subscriptions, tenantkit.email_outbox, tenantkit.invitation_sends
  FROM tenantkit_app;
DROP POLICY app_export ON tenantkit.usage_events;
DROP POLICY app_export ON tenantkit.stripe_subscriptions;
DROP POLICY app_export ON tenantkit.email_outbox;
DROP POLICY app_export ON tenantkit.invitation_sends;
DROP TABLE tenantkit.tenant_exports;
