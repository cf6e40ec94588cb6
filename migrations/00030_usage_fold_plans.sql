-- The usage fold and its readers find the unfolded events through the index on xact, whatever the
-- table's size.
--
-- In 00029 the fold compared xact with values computed in the same statement, and the readers
-- with a sub-select: the planner could not see that the range above the watermark holds about one
-- fold interval of events, so it planned for a third of the table. On a 300,000-event partition a
-- fold that found nothing took 250 ms (a parallel sequential scan, a sort and JIT compilation), and
-- a reader could choose the primary key and read every event of its tenant this month.
--
-- * tenantkit.fold_usage() reads the watermark and xmin into variables first, in statements of
--   their own: xmin only grows from one snapshot to the next, so the later statements' snapshots
--   still see every event below it if and only if it committed. The plan is made for the values
--   (plan_cache_mode force_custom_plan): PostgreSQL reads the index's actual end for a range above
--   its statistics, so the estimate is the range's real size. No JIT.
-- * tenantkit.unfolded_usage(tenant) returns one tenant's counter events above the watermark, by
--   hour, planned the same way; STABLE, so it reads under its caller's snapshot.
-- * tenantkit.usage_hours(tenant) replaces the view of 00029: the tenant's billing_usage rows and
--   its unfolded events, in one SQL function PostgreSQL inlines into the caller's statement (the
--   caller's filters on metric and hour reach billing_usage's primary key). For the system.
-- * tenantkit.caller_unfolded_usage(tenant) (the usage query and the export) reads through
--   unfolded_usage.

-- +goose Up
DROP VIEW tenantkit.usage_hours;

-- +goose StatementBegin
CREATE FUNCTION tenantkit.unfolded_usage(tenant uuid)
RETURNS TABLE (metric text, period_start timestamptz, quantity numeric)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
  wm xid8 := (SELECT f.watermark FROM tenantkit.usage_fold f);
BEGIN
  RETURN QUERY
    SELECT e.metric, date_trunc('hour', e.occurred_at, 'UTC'), e.quantity
    FROM tenantkit.usage_events e
    WHERE e.xact >= wm AND e.tenant_id = tenant;
END $$;

CREATE FUNCTION tenantkit.usage_hours(tenant uuid)
RETURNS TABLE (metric text, period_start timestamptz, quantity numeric)
LANGUAGE sql STABLE AS $$
  SELECT u.metric, u.period_start, u.quantity FROM public.billing_usage u WHERE u.tenant_id = tenant
  UNION ALL
  SELECT x.metric, x.period_start, x.quantity FROM tenantkit.unfolded_usage(tenant) x
$$;

CREATE OR REPLACE FUNCTION tenantkit.caller_unfolded_usage(tenant uuid)
RETURNS TABLE (metric text, period_start timestamptz, quantity numeric)
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT x.metric, x.period_start, x.quantity FROM tenantkit.unfolded_usage(tenant) x
  WHERE EXISTS (SELECT FROM tenantkit.caller_memberships c WHERE c.tenant_id = tenant)
     OR array_position(tenantkit.api_key_tenants(), tenant) IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION tenantkit.fold_usage() RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
  lo xid8;
  hi xid8;
  n  bigint;
BEGIN
  SELECT f.watermark INTO lo FROM tenantkit.usage_fold f FOR UPDATE;
  SELECT pg_snapshot_xmin(pg_current_snapshot()) INTO hi;
  WITH sums AS (
    SELECT e.tenant_id, e.metric, date_trunc('hour', e.occurred_at, 'UTC') AS period_start,
           sum(e.quantity) AS quantity, count(*) AS events
    FROM tenantkit.usage_events e
    WHERE e.xact >= lo AND e.xact < hi
      AND EXISTS (SELECT FROM public.tenants t WHERE t.id = e.tenant_id)
    GROUP BY 1, 2, 3
  ), added AS (
    INSERT INTO public.billing_usage AS u (tenant_id, metric, period_start, period_end, slot, quantity)
    SELECT s.tenant_id, s.metric, s.period_start, s.period_start + interval '1 hour', 0, s.quantity FROM sums s
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, metric, period_start, slot) DO UPDATE
      SET quantity = u.quantity + EXCLUDED.quantity, updated_at = now()
  )
  SELECT coalesce(sum(s.events), 0) INTO n FROM sums s;
  IF n > 0 THEN
    UPDATE tenantkit.usage_fold SET watermark = hi, folded_at = now();
  END IF;
  RETURN n;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.caller_unfolded_usage(uuid) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.unfolded_usage(uuid), tenantkit.usage_hours(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.unfolded_usage(uuid), tenantkit.usage_hours(uuid) TO tenantkit_system;

-- +goose Down
DROP FUNCTION tenantkit.usage_hours(uuid);
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.caller_unfolded_usage(tenant uuid)
RETURNS TABLE (metric text, period_start timestamptz, quantity numeric)
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT e.metric, date_trunc('hour', e.occurred_at, 'UTC'), e.quantity
  FROM tenantkit.usage_events e
  WHERE e.tenant_id = tenant AND e.xact >= (SELECT f.watermark FROM tenantkit.usage_fold f)
    AND (EXISTS (SELECT FROM tenantkit.caller_memberships c WHERE c.tenant_id = tenant)
         OR array_position(tenantkit.api_key_tenants(), tenant) IS NOT NULL)
$$;

CREATE OR REPLACE FUNCTION tenantkit.fold_usage() RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  PERFORM FROM tenantkit.usage_fold FOR UPDATE;
  WITH w AS (
    SELECT f.watermark AS lo, pg_snapshot_xmin(pg_current_snapshot()) AS hi FROM tenantkit.usage_fold f
  ), sums AS (
    SELECT e.tenant_id, e.metric, date_trunc('hour', e.occurred_at, 'UTC') AS period_start,
           sum(e.quantity) AS quantity, count(*) AS events
    FROM tenantkit.usage_events e, w
    WHERE e.xact >= w.lo AND e.xact < w.hi
      AND EXISTS (SELECT FROM public.tenants t WHERE t.id = e.tenant_id)
    GROUP BY 1, 2, 3
  ), added AS (
    INSERT INTO public.billing_usage AS u (tenant_id, metric, period_start, period_end, slot, quantity)
    SELECT s.tenant_id, s.metric, s.period_start, s.period_start + interval '1 hour', 0, s.quantity FROM sums s
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, metric, period_start, slot) DO UPDATE
      SET quantity = u.quantity + EXCLUDED.quantity, updated_at = now()
  ), moved AS (
    UPDATE tenantkit.usage_fold f SET watermark = w.hi, folded_at = now() FROM w WHERE EXISTS (SELECT FROM sums)
  )
  SELECT coalesce(sum(s.events), 0) INTO n FROM sums s;
  RETURN n;
END $$;
-- +goose StatementEnd
DROP FUNCTION tenantkit.unfolded_usage(uuid);
CREATE VIEW tenantkit.usage_hours WITH (security_invoker = true) AS
  SELECT u.tenant_id, u.metric, u.period_start, u.quantity
  FROM public.billing_usage u
  UNION ALL
  SELECT e.tenant_id, e.metric, date_trunc('hour', e.occurred_at, 'UTC'), e.quantity
  FROM tenantkit.usage_events e
  WHERE e.xact >= (SELECT f.watermark FROM tenantkit.usage_fold f);
COMMENT ON VIEW tenantkit.usage_hours IS 'billing_usage rows and the counter events not folded into them yet: sums over it are exact (system only)';
GRANT SELECT ON tenantkit.usage_hours TO tenantkit_system;
