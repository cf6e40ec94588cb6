-- Which limited metrics are counts of rows: users, projects and the tables registered in
-- tenantkit.plan_limited_tables (00020), which tenantkit.plan_usage counts. Any other metric a plan
-- limits is usage: a gauge's limit bounds its latest value, which plan_usage returns, and a
-- counter's limit is an allowance per period, whose total internal/billing adds up (Entitlements,
-- as the usage alerts do). The entitlement query asks this function, since tenantkit_app cannot
-- read plan_limited_tables.

-- +goose Up
CREATE FUNCTION tenantkit.plan_metric_counts_rows(metric text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT metric IN ('users', 'projects')
      OR EXISTS (SELECT FROM tenantkit.plan_limited_tables t WHERE t.metric = plan_metric_counts_rows.metric)
$$;
ALTER FUNCTION tenantkit.plan_metric_counts_rows(text) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.plan_metric_counts_rows(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.plan_metric_counts_rows(text) TO tenantkit_app, tenantkit_system;

-- +goose Down
DROP FUNCTION tenantkit.plan_metric_counts_rows(text);
