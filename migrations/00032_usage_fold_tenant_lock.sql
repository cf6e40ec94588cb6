-- The usage fold locks its tenants before it touches their counters.
--
-- A fold and a tenant's hard delete could deadlock: the fold held the tenant's counter row (its
-- upsert) and waited for the tenant's row (the foreign-key check of a new counter row), the delete
-- held the tenant's row and waited for the counter row (its cascade). PostgreSQL then cancelled
-- one of them, the fold or the delete; a fold that came second failed on the foreign key instead.
--
-- tenantkit.add_usage_events(lo, hi) is now the one statement that adds events to billing_usage,
-- for the fold ([lo, hi)) and the rebase ([lo, ∞), hi NULL). It first locks the tenants of those
-- events FOR KEY SHARE, in id order, in a statement of its own, as a recordUsage batch does: a
-- delete that comes first is waited for, and the next statement's snapshot no longer sees that
-- tenant's events (its delete trigger removed them); a delete that comes second waits for the fold.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION tenantkit.add_usage_events(lo xid8, hi xid8) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
  n bigint;
BEGIN
  PERFORM FROM public.tenants t
  WHERE t.id IN (SELECT e.tenant_id FROM tenantkit.usage_events e WHERE e.xact >= lo AND (hi IS NULL OR e.xact < hi))
  ORDER BY t.id
  FOR KEY SHARE OF t;
  WITH sums AS (
    SELECT e.tenant_id, e.metric, date_trunc('hour', e.occurred_at, 'UTC') AS period_start,
           sum(e.quantity) AS quantity, count(*) AS events
    FROM tenantkit.usage_events e
    WHERE e.xact >= lo AND (hi IS NULL OR e.xact < hi)
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
  RETURN n;
END $$;

CREATE OR REPLACE FUNCTION tenantkit.fold_usage() RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  lo xid8;
  hi xid8;
  n  bigint;
BEGIN
  SELECT f.watermark INTO lo FROM tenantkit.usage_fold f FOR UPDATE;
  PERFORM tenantkit.usage_fold_valid(lo);
  SELECT pg_snapshot_xmin(pg_current_snapshot()) INTO hi;
  n := tenantkit.add_usage_events(lo, hi);
  IF n > 0 THEN
    UPDATE tenantkit.usage_fold SET watermark = hi, folded_at = now();
  END IF;
  RETURN n;
END $$;

CREATE OR REPLACE FUNCTION tenantkit.rebase_usage_fold() RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
  n bigint;
BEGIN
  LOCK TABLE tenantkit.usage_events IN SHARE MODE;
  LOCK TABLE tenantkit.usage_fold IN ACCESS EXCLUSIVE MODE;
  n := tenantkit.add_usage_events((SELECT f.watermark FROM tenantkit.usage_fold f), NULL);
  UPDATE tenantkit.usage_events SET xact = NULL WHERE xact IS NOT NULL;
  UPDATE tenantkit.usage_fold SET watermark = pg_current_xact_id(), folded_at = now();
  RETURN n;
END $$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tenantkit.add_usage_events(xid8, xid8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.add_usage_events(xid8, xid8) TO tenantkit_system;

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.fold_usage() RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
  lo xid8;
  hi xid8;
  n  bigint;
BEGIN
  SELECT f.watermark INTO lo FROM tenantkit.usage_fold f FOR UPDATE;
  PERFORM tenantkit.usage_fold_valid(lo);
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

CREATE OR REPLACE FUNCTION tenantkit.rebase_usage_fold() RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
  wm xid8;
  n  bigint;
BEGIN
  LOCK TABLE tenantkit.usage_events IN SHARE MODE;
  LOCK TABLE tenantkit.usage_fold IN ACCESS EXCLUSIVE MODE;
  SELECT f.watermark INTO wm FROM tenantkit.usage_fold f;
  WITH sums AS (
    SELECT e.tenant_id, e.metric, date_trunc('hour', e.occurred_at, 'UTC') AS period_start,
           sum(e.quantity) AS quantity, count(*) AS events
    FROM tenantkit.usage_events e
    WHERE e.xact >= wm
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
  UPDATE tenantkit.usage_events SET xact = NULL WHERE xact IS NOT NULL;
  UPDATE tenantkit.usage_fold SET watermark = pg_current_xact_id(), folded_at = now();
  RETURN n;
END $$;
-- +goose StatementEnd
DROP FUNCTION tenantkit.add_usage_events(xid8, xid8);
