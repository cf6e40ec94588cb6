-- An experiment for the next step of the RLS cost (bench/README.md, "What limits the RLS ratio"):
-- the membership lookup as a view owned by tenantkit_system, inlined into the policy's sub-select
-- instead of a call to the PL/pgSQL helper. Applied to the SELECT policy of projects only.
--   TENANTKIT_BENCH_SQL=$PWD/bench/experiments/inline-membership.sql TENANTKIT_BENCH_SIZES=10000 BENCH=rls scripts/bench.sh
-- Measured 2026-11-27 at 10,000 tenants: request ratio 1.19 (1.36 with the helper), statement ratio
-- unchanged (1.60). Not adopted: every policy and manageable_roles would have to move, and the
-- isolation and walls tests re-run over it.
CREATE VIEW tenantkit.caller_memberships WITH (security_barrier) AS
  SELECT m.tenant_id, m.role, m.permissions
  FROM public.tenant_users m
  WHERE m.user_id = coalesce(
    CASE WHEN current_setting('hasura.user', true) ~ '^\s*\{\s*("[a-z0-9_-]*"\s*:\s*"([^"\\[:cntrl:]]|\\["\\/bfnrt])*"\s*(,\s*"[a-z0-9_-]*"\s*:\s*"([^"\\[:cntrl:]]|\\["\\/bfnrt])*"\s*)*)?\}\s*$'
          AND (current_setting('hasura.user', true)::jsonb ->> 'x-hasura-user-id') ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
         THEN (current_setting('hasura.user', true)::jsonb ->> 'x-hasura-user-id')::uuid END,
    tenantkit.current_user_id());
ALTER VIEW tenantkit.caller_memberships OWNER TO tenantkit_system;
GRANT USAGE ON SCHEMA tenantkit TO tenantkit_app;
GRANT SELECT ON tenantkit.caller_memberships TO tenantkit_app;
DROP POLICY app_select ON projects;
CREATE POLICY app_select ON projects FOR SELECT TO tenantkit_app
  USING (array_position((SELECT array_agg(c.tenant_id) FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, 'projects:read')), tenant_id) IS NOT NULL);
