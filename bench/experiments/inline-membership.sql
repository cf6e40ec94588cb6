-- An experiment for the next step of the RLS cost (bench/README.md, "What limits the targets"):
-- the membership lookup as a view owned by tenantkit_system, inlined into the policy's sub-select
-- instead of a call to the PL/pgSQL helper member_tenants. Applied to the SELECT policy of projects
-- only, with the same rules as the helper (deleted tenants are nobody's, grants from
-- tenantkit.allows):
--   TENANTKIT_BENCH_SQL=$PWD/bench/experiments/inline-membership.sql TENANTKIT_BENCH_SIZES=10000 BENCH=rls scripts/bench.sh
-- EXPLAIN (ANALYZE) of the prepared list query at 10,000 tenants, least of 300 runs (2026-12-06,
-- busy 2-core machine): 26 µs against 31 µs with the helper and 6 µs without RLS; the lookup itself
-- (an InitPlan of five nodes) 10 µs against the helper's 21 µs. Not adopted: the schema lint
-- (internal/postgres/lint_test.go, "policies call helpers once per statement") accepts a tenantkit
-- name in a policy only right after "(SELECT ", so a view in the sub-select's FROM, and the
-- tenantkit.allows call in its WHERE, fail it; adopting the form means changing that rule first, then
-- moving every policy and manageable_roles and re-running the isolation and walls tests.
CREATE VIEW tenantkit.caller_memberships WITH (security_barrier) AS
  SELECT m.tenant_id, m.role, m.permissions
  FROM public.tenant_users m
  WHERE m.user_id = tenantkit.current_user_id()
    AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL);
ALTER VIEW tenantkit.caller_memberships OWNER TO tenantkit_system;
GRANT SELECT ON tenantkit.caller_memberships TO tenantkit_app;
DROP POLICY app_select ON projects;
CREATE POLICY app_select ON projects FOR SELECT TO tenantkit_app
  USING (array_position((SELECT array_agg(c.tenant_id) FROM tenantkit.caller_memberships c
                         WHERE tenantkit.allows(c.role, c.permissions, 'projects:read')), tenant_id) IS NOT NULL);
