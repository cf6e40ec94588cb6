-- Row-Level Security: enabled and forced on every tenant table.
--
-- Policies TO tenantkit_app implement the role table (permission.go, RolePermissions) for the caller named by
-- hasura.user. They never query their own table: membership comes from tenantkit.member_tenants(),
-- a SECURITY DEFINER function owned by tenantkit_system, whose own reads see rows only through the
-- system_all policies (which call nothing). Every call sits in a scalar sub-select,
-- `array_position((SELECT tenantkit.member_tenants(…)), tenant_id) IS NOT NULL`, which PostgreSQL
-- runs once per statement (an InitPlan); each row then costs one scan of a tiny array. The form is
-- chosen for the planner: it is a filter, never an index condition, and estimated to keep almost
-- every row, so a query's own `tenant_id = $1 ORDER BY created_at DESC LIMIT 50` keeps the plan it
-- has without RLS (an ordered scan of projects_tenant_created_idx that stops after 50 rows).
-- `tenant_id = ANY (…)` instead became a second index condition that wrecked the row estimate and
-- the index order (a large tenant's rows were all read and sorted), and `tenant_id IN (SELECT …)`
-- was estimated to halve the rows, which also led to reading and sorting them all. The price: a
-- query without any tenant filter scans the whole table (tenantkit always filters by tenant).
--
-- What each command needs (row.role is the role a membership or invitation grants):
--   tenants              select: member      update: settings:write   delete: tenants:delete   insert: system only
--   tenant_users         select: member      insert/update/delete: users:write and at least row.role; delete: also oneself
--   tenant_invitations   select: users:invite   insert/update/delete: users:invite and at least row.role
--   projects             select: projects:read  insert: projects:write and owner_id = caller   update/delete: projects:write
--   tenant_subscriptions, billing_usage: select: member; writes: system only
--   subscription_plans   select: everyone; writes: system only
--   tenantkit.usage_events: system only

-- +goose Up

-- Both helpers run once per statement that touches a tenant table, so they are PL/pgSQL: their
-- queries are planned once per session and cached, where a SQL function's body would be parsed and
-- planned again on every call (tenantkit.allows inlines into them). Their queries use the generic
-- plan from the first call (plan_cache_mode): otherwise PostgreSQL plans them afresh for each of
-- the first five calls of a session and may keep doing so, because with the permission a constant
-- the custom plan looks cheaper; measured, the whole request under RLS went from 1.36-1.43x to
-- 1.23x the unprotected one (bench/README.md).
-- PARALLEL UNSAFE because they call current_user_id() (see 00001).
--
-- Tenants in which the caller is a member whose role or custom grants allow `perm` (NULL: any
-- member). An array, so that a policy tests `tenant_id = ANY (…)` against one value per statement.
-- +goose StatementBegin
CREATE FUNCTION tenantkit.member_tenants(perm text DEFAULT NULL) RETURNS uuid[]
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

-- The (tenant, role) pairs the caller may manage with `perm`: every role up to the caller's own in
-- each tenant where it holds `perm`, as 'tenant_id/role' strings. Nobody acts above their own role.
CREATE FUNCTION tenantkit.manageable_roles(perm text) RETURNS text[]
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
ALTER FUNCTION tenantkit.member_tenants(text) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.manageable_roles(text) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.member_tenants(text), tenantkit.manageable_roles(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.member_tenants(text), tenantkit.manageable_roles(text) TO tenantkit_app;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_users FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant_invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_invitations FORCE ROW LEVEL SECURITY;
ALTER TABLE subscription_plans ENABLE ROW LEVEL SECURITY;
ALTER TABLE subscription_plans FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant_subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_subscriptions FORCE ROW LEVEL SECURITY;
ALTER TABLE billing_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing_usage FORCE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_events FORCE ROW LEVEL SECURITY;
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;

-- The explicit cross-tenant path.
CREATE POLICY system_all ON tenants TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY system_all ON tenant_users TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY system_all ON tenant_invitations TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY system_all ON subscription_plans TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY system_all ON tenant_subscriptions TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY system_all ON billing_usage TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY system_all ON tenantkit.usage_events TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY system_all ON projects TO tenantkit_system USING (true) WITH CHECK (true);

-- tenants
CREATE POLICY app_select ON tenants FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants()), id) IS NOT NULL);
CREATE POLICY app_update ON tenants FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('settings:write')), id) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.member_tenants('settings:write')), id) IS NOT NULL);
CREATE POLICY app_delete ON tenants FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('tenants:delete')), id) IS NOT NULL);

-- tenant_users: managing a membership needs users:write and a role at least the membership's.
CREATE POLICY app_select ON tenant_users FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants()), tenant_id) IS NOT NULL);
CREATE POLICY app_insert ON tenant_users FOR INSERT TO tenantkit_app
  WITH CHECK (array_position((SELECT tenantkit.manageable_roles('users:write')), tenant_id::text || '/' || role::text) IS NOT NULL);
CREATE POLICY app_update ON tenant_users FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('users:write')), tenant_id::text || '/' || role::text) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.manageable_roles('users:write')), tenant_id::text || '/' || role::text) IS NOT NULL);
CREATE POLICY app_delete ON tenant_users FOR DELETE TO tenantkit_app
  USING (user_id = (SELECT tenantkit.current_user_id())
    OR (array_position((SELECT tenantkit.manageable_roles('users:write')), tenant_id::text || '/' || role::text) IS NOT NULL));

-- tenant_invitations: inviting needs users:invite and a role at least the invitation's.
CREATE POLICY app_select ON tenant_invitations FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('users:invite')), tenant_id) IS NOT NULL);
CREATE POLICY app_insert ON tenant_invitations FOR INSERT TO tenantkit_app
  WITH CHECK (array_position((SELECT tenantkit.manageable_roles('users:invite')), tenant_id::text || '/' || role::text) IS NOT NULL);
CREATE POLICY app_update ON tenant_invitations FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('users:invite')), tenant_id::text || '/' || role::text) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.manageable_roles('users:invite')), tenant_id::text || '/' || role::text) IS NOT NULL);
CREATE POLICY app_delete ON tenant_invitations FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('users:invite')), tenant_id::text || '/' || role::text) IS NOT NULL);

-- projects
CREATE POLICY app_select ON projects FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('projects:read')), tenant_id) IS NOT NULL);
CREATE POLICY app_insert ON projects FOR INSERT TO tenantkit_app
  WITH CHECK (array_position((SELECT tenantkit.member_tenants('projects:write')), tenant_id) IS NOT NULL
    AND owner_id = (SELECT tenantkit.current_user_id()));
CREATE POLICY app_update ON projects FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('projects:write')), tenant_id) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.member_tenants('projects:write')), tenant_id) IS NOT NULL);
CREATE POLICY app_delete ON projects FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('projects:write')), tenant_id) IS NOT NULL);

-- read-only for members
CREATE POLICY app_select ON tenant_subscriptions FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants()), tenant_id) IS NOT NULL);
CREATE POLICY app_select ON billing_usage FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants()), tenant_id) IS NOT NULL);
CREATE POLICY app_select ON subscription_plans FOR SELECT TO tenantkit_app USING (true);

-- Grants: the policies decide rows, the grants decide commands.
GRANT SELECT, UPDATE, DELETE ON tenants TO tenantkit_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_users, tenant_invitations, projects TO tenantkit_app;
GRANT SELECT ON tenant_subscriptions, billing_usage, subscription_plans TO tenantkit_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, tenant_users, tenant_invitations, subscription_plans,
  tenant_subscriptions, billing_usage, tenantkit.usage_events, projects TO tenantkit_system;

-- +goose Down
REVOKE ALL ON tenants, tenant_users, tenant_invitations, subscription_plans, tenant_subscriptions,
  billing_usage, tenantkit.usage_events, projects FROM tenantkit_app, tenantkit_system;
DROP POLICY app_select ON tenants;
DROP POLICY app_update ON tenants;
DROP POLICY app_delete ON tenants;
DROP POLICY app_select ON tenant_users;
DROP POLICY app_insert ON tenant_users;
DROP POLICY app_update ON tenant_users;
DROP POLICY app_delete ON tenant_users;
DROP POLICY app_select ON tenant_invitations;
DROP POLICY app_insert ON tenant_invitations;
DROP POLICY app_update ON tenant_invitations;
DROP POLICY app_delete ON tenant_invitations;
DROP POLICY app_select ON projects;
DROP POLICY app_insert ON projects;
DROP POLICY app_update ON projects;
DROP POLICY app_delete ON projects;
DROP POLICY app_select ON tenant_subscriptions;
DROP POLICY app_select ON billing_usage;
DROP POLICY app_select ON subscription_plans;
DROP POLICY system_all ON tenants;
DROP POLICY system_all ON tenant_users;
DROP POLICY system_all ON tenant_invitations;
DROP POLICY system_all ON subscription_plans;
DROP POLICY system_all ON tenant_subscriptions;
DROP POLICY system_all ON billing_usage;
DROP POLICY system_all ON tenantkit.usage_events;
DROP POLICY system_all ON projects;
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_users NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_invitations NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE subscription_plans NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_subscriptions NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE billing_usage NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_events NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE projects NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
DROP FUNCTION tenantkit.member_tenants(text), tenantkit.manageable_roles(text);
