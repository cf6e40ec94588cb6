-- Counters off the request path: a counter event is appended with the id of the transaction that
-- records it (usage_events.xact), and a background fold adds the events to billing_usage later.
-- Readers stay exact at every moment: they add the events the fold has not reached to the counters.
--
-- * tenantkit.usage_fold holds the watermark: every counter event whose xact lies below it has
--   been added to billing_usage, and none at or above it. tenantkit.fold_usage() moves it in one
--   transaction with the counters: it sums the events in [watermark, xmin), where xmin is its own
--   snapshot's (pg_snapshot_xmin(pg_current_snapshot())): every transaction below xmin has ended,
--   so the statement sees each such event if and only if it committed, and no event can commit
--   below xmin later. It adds the sums to billing_usage (slot 0) and sets the watermark to xmin.
--   One fold at a time: the watermark row is locked first (a second fold waits for the first's
--   commit, and its next statement's snapshot sees the new watermark).
-- * A reader's statement sees the watermark, the counters and the events under one snapshot: the
--   counters hold every committed event below the watermark it sees, and it adds the events at or
--   above it (tenantkit.usage_hours for the system, tenantkit.caller_unfolded_usage for a
--   tenant's members and API keys, who may read billing_usage but not the raw events).
-- * xact is NULL for gauges (still kept on the request path) and for every event recorded before
--   this migration (its counters were updated when it was recorded): the fold never reads those.
-- * Hasura's direct select of billing_usage reads the counters alone: it trails by at most the
--   fold's interval (USAGE_FOLD_INTERVAL).
-- * A transaction that holds an xid for long (anywhere in the database) holds xmin, and so the
--   watermark, back: the readers stay exact, reading more unfolded events.

-- +goose Up
ALTER TABLE tenantkit.usage_events ADD COLUMN xact xid8;
COMMENT ON COLUMN tenantkit.usage_events.xact IS
  'counters: the recording transaction (pg_current_xact_id()); folded into billing_usage once below tenantkit.usage_fold.watermark. NULL: counted when recorded (gauges, and events recorded before the fold)';
-- The fold reads a range of xact; a reader the range at or above the watermark, for one tenant.
CREATE INDEX usage_events_unfolded_idx ON tenantkit.usage_events (xact, tenant_id) WHERE xact IS NOT NULL;

CREATE TABLE tenantkit.usage_fold (
  id        boolean PRIMARY KEY DEFAULT true CHECK (id),
  watermark xid8 NOT NULL DEFAULT '0',
  folded_at timestamptz
);
COMMENT ON TABLE tenantkit.usage_fold IS 'The usage fold''s watermark: counter events below it are in billing_usage, none at or above it (system only)';
INSERT INTO tenantkit.usage_fold DEFAULT VALUES;
ALTER TABLE tenantkit.usage_fold ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_fold FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.usage_fold TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, UPDATE ON tenantkit.usage_fold TO tenantkit_system;

-- Every hour's usage row as the counters hold it, and every counter event not folded yet: a sum
-- over it is exact. For the system (security_invoker: the caller's own rights and policies).
CREATE VIEW tenantkit.usage_hours WITH (security_invoker = true) AS
  SELECT u.tenant_id, u.metric, u.period_start, u.quantity
  FROM public.billing_usage u
  UNION ALL
  SELECT e.tenant_id, e.metric, date_trunc('hour', e.occurred_at, 'UTC'), e.quantity
  FROM tenantkit.usage_events e
  WHERE e.xact >= (SELECT f.watermark FROM tenantkit.usage_fold f);
COMMENT ON VIEW tenantkit.usage_hours IS 'billing_usage rows and the counter events not folded into them yet: sums over it are exact (system only)';
GRANT SELECT ON tenantkit.usage_hours TO tenantkit_system;

-- +goose StatementBegin
-- The tenant's counter events not folded yet, by hour, for a caller who may read the tenant's
-- billing_usage (its policies app_select and api_select: a member of the tenant, not deleted, or
-- an API key of it); nothing for anyone else. STABLE: it reads under its caller's snapshot, so a
-- statement that adds it to billing_usage reads both at one moment.
CREATE FUNCTION tenantkit.caller_unfolded_usage(tenant uuid)
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

-- Adds the counter events in [watermark, xmin of this statement's snapshot) to billing_usage and,
-- when there were any, moves the watermark to that xmin (with none, the watermark may stay: no
-- event lies between the two); returns how many events it folded. The watermark row's lock
-- keeps folds one at a time. Events whose tenant is gone are passed over (deleting a tenant deletes
-- its events in the same transaction, so none should be left; one would block every fold).
CREATE FUNCTION tenantkit.fold_usage() RETURNS bigint
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
ALTER FUNCTION tenantkit.caller_unfolded_usage(uuid) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.caller_unfolded_usage(uuid), tenantkit.fold_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.caller_unfolded_usage(uuid) TO tenantkit_app, tenantkit_system;
GRANT EXECUTE ON FUNCTION tenantkit.fold_usage() TO tenantkit_system;

-- +goose Down
-- Fold what is left, so that the counters hold every event again. Not through fold_usage, which
-- stops below the oldest transaction open anywhere on the server: the SHARE lock waits for every
-- transaction recording events to end and keeps new ones out, so every event is final; the lock on
-- usage_fold waits for a fold in flight to commit and keeps later ones out, so the next statement
-- sees its watermark and counters; then every event at or above the watermark is added.
LOCK TABLE tenantkit.usage_events IN SHARE MODE;
LOCK TABLE tenantkit.usage_fold IN ACCESS EXCLUSIVE MODE;
INSERT INTO public.billing_usage AS u (tenant_id, metric, period_start, period_end, slot, quantity)
SELECT e.tenant_id, e.metric, date_trunc('hour', e.occurred_at, 'UTC'), date_trunc('hour', e.occurred_at, 'UTC') + interval '1 hour',
       0, sum(e.quantity)
FROM tenantkit.usage_events e
WHERE e.xact >= (SELECT f.watermark FROM tenantkit.usage_fold f)
  AND EXISTS (SELECT FROM public.tenants t WHERE t.id = e.tenant_id)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
ON CONFLICT (tenant_id, metric, period_start, slot) DO UPDATE
  SET quantity = u.quantity + EXCLUDED.quantity, updated_at = now();
DROP FUNCTION tenantkit.fold_usage();
DROP FUNCTION tenantkit.caller_unfolded_usage(uuid);
DROP VIEW tenantkit.usage_hours;
DROP TABLE tenantkit.usage_fold;
DROP INDEX tenantkit.usage_events_unfolded_idx;
ALTER TABLE tenantkit.usage_events DROP COLUMN xact;
