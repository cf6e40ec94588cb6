-- Plan limits on any tenant table: a metric registered here is the number of the tenant's rows in
-- the named table (`tenantkit scaffold table --limit METRIC` registers its table). users and
-- projects keep their own counts; any other metric is still the latest value of its usage gauge.

-- +goose Up
CREATE TABLE tenantkit.plan_limited_tables (
  metric   text PRIMARY KEY CHECK (metric ~ '^[a-z][a-z0-9_]{0,62}$' AND metric NOT IN ('users', 'projects')),
  relation regclass NOT NULL UNIQUE
);
ALTER TABLE tenantkit.plan_limited_tables ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.plan_limited_tables FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.plan_limited_tables TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT ON tenantkit.plan_limited_tables TO tenantkit_system;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.plan_usage(tenant uuid, metric text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  used bigint;
  rel regclass;
BEGIN
  IF metric = 'users' THEN
    SELECT (SELECT count(*) FROM public.tenant_users WHERE tenant_id = tenant)
         + (SELECT count(*) FROM public.tenant_invitations
            WHERE tenant_id = tenant AND status = 'pending' AND expires_at > now())
      INTO used;
  ELSIF metric = 'projects' THEN
    SELECT count(*) INTO used FROM public.projects WHERE tenant_id = tenant;
  ELSE
    SELECT t.relation INTO rel FROM tenantkit.plan_limited_tables t WHERE t.metric = plan_usage.metric;
    IF rel IS NOT NULL THEN
      EXECUTE format('SELECT count(*) FROM %s WHERE tenant_id = $1', rel) INTO used USING tenant;
    ELSE
      SELECT ceil(u.quantity)::bigint INTO used FROM public.billing_usage u
      WHERE u.tenant_id = tenant AND u.metric = plan_usage.metric
      ORDER BY u.period_start DESC, u.quantity DESC LIMIT 1;
    END IF;
  END IF;
  RETURN coalesce(used, 0);
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.plan_usage(tenant uuid, metric text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  used bigint;
BEGIN
  IF metric = 'users' THEN
    SELECT (SELECT count(*) FROM public.tenant_users WHERE tenant_id = tenant)
         + (SELECT count(*) FROM public.tenant_invitations
            WHERE tenant_id = tenant AND status = 'pending' AND expires_at > now())
      INTO used;
  ELSIF metric = 'projects' THEN
    SELECT count(*) INTO used FROM public.projects WHERE tenant_id = tenant;
  ELSE
    SELECT ceil(u.quantity)::bigint INTO used FROM public.billing_usage u
    WHERE u.tenant_id = tenant AND u.metric = plan_usage.metric
    ORDER BY u.period_start DESC, u.quantity DESC LIMIT 1;
  END IF;
  RETURN coalesce(used, 0);
END $$;
-- +goose StatementEnd
DROP TABLE tenantkit.plan_limited_tables;
