-- The usage fold after a copy into another server.
--
-- The fold's watermark and usage_events.xact are transaction ids, which mean something only on the
-- server that gave them out. A physical copy (a replica, point-in-time recovery, pg_upgrade) keeps
-- the server's transaction ids going; a logical copy (pg_dump and pg_restore, logical replication)
-- does not: the new server gives out ids from its own counter, usually far below the copied
-- watermark. Events recorded there would lie below the watermark, where neither the readers nor
-- the fold look: lost from every total without a word.
--
-- * tenantkit.usage_fold_valid(watermark) is true, or raises TK003 (the service reports it as
--   unavailable, naming the fix) when the watermark lies ahead of every transaction id this server
--   has given out, which never happens on the server that set it. recordUsage checks it before it
--   records (nothing is lost: the backend's retry goes through after the fix), the fold and every
--   reader of unfolded events before they read.
-- * tenantkit.rebase_usage_fold(), run once by the operator after such a copy: it waits for and
--   keeps out recordings and folds (locks), adds every event at or above the watermark (those the
--   old server had not folded) to billing_usage, marks every event counted (xact NULL: this
--   rewrites every counter event kept, a while on a large table) and restarts the watermark at this
--   server's current transaction id. It is safe to run at any time.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION tenantkit.usage_fold_valid(watermark xid8) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF watermark > pg_snapshot_xmax(pg_current_snapshot()) THEN
    RAISE EXCEPTION 'usage: the fold''s watermark (%) lies ahead of this server''s transaction ids (%): the database was copied from another server; run SELECT tenantkit.rebase_usage_fold() as its owner',
      watermark, pg_snapshot_xmax(pg_current_snapshot())
      USING ERRCODE = 'TK003';
  END IF;
  RETURN true;
END $$;

CREATE OR REPLACE FUNCTION tenantkit.unfolded_usage(tenant uuid)
RETURNS TABLE (metric text, period_start timestamptz, quantity numeric)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
  wm xid8 := (SELECT f.watermark FROM tenantkit.usage_fold f);
BEGIN
  PERFORM tenantkit.usage_fold_valid(wm);
  RETURN QUERY
    SELECT e.metric, date_trunc('hour', e.occurred_at, 'UTC'), e.quantity
    FROM tenantkit.usage_events e
    WHERE e.xact >= wm AND e.tenant_id = tenant;
END $$;

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

CREATE FUNCTION tenantkit.rebase_usage_fold() RETURNS bigint
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
REVOKE ALL ON FUNCTION tenantkit.usage_fold_valid(xid8), tenantkit.rebase_usage_fold() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.usage_fold_valid(xid8) TO tenantkit_system;

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.unfolded_usage(tenant uuid)
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
DROP FUNCTION tenantkit.rebase_usage_fold();
DROP FUNCTION tenantkit.usage_fold_valid(xid8);
