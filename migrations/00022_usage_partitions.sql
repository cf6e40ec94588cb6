-- tenantkit.usage_events becomes partitioned by month, so that old usage is dropped a month at a
-- time instead of growing forever (see docs/schema.md, "Usage storage", and internal/maintenance).
--
-- * The partition key is recorded_month, the UTC month in which the row was written (its default
--   is computed from now(), so every insert, including one that names only the old columns, is
--   routed without help). A generated column cannot be a partition key, and a BEFORE trigger
--   cannot route a row, so a key derived from occurred_at would have to be passed by every
--   writer. An event is recorded at most 5 minutes before and at most 35 days after it occurred
--   (billing.RecordUsage), so readers that look for one hour's events read two or three
--   partitions.
-- * The primary key must hold the partition key: (tenant_id, idempotency_key, recorded_month).
--   recordUsage also looks for the key in the earlier months a copy could have been recorded in
--   (internal/postgres/billing.go, insertUsage), which keeps an event once across a month's end.
-- * No DEFAULT partition: a default partition that holds rows of a month blocks creating that
--   month's partition later. Partitions are created ahead (this month and the next two, here and
--   by the maintenance job), and an insert that finds none creates its month's partition itself.
-- * tenantkit.usage_events_partition(month) creates a month's partition and
--   tenantkit.usage_events_drop_before(month) detaches and drops the partitions of earlier months.
--   Attaching and dropping partitions needs the parent's owner, so both are SECURITY DEFINER
--   functions of the migration's role, executable by tenantkit_system only, with a lock_timeout:
--   a job that cannot take the lock gives up instead of queueing the service's inserts behind it.
-- * Each partition has RLS enabled and forced and a copy of the parent's policies, and no grants:
--   the service reads and writes through the parent, whose policies and grants are those of
--   00003 and 00016, unchanged.
-- * Existing rows move into the partitions of the months they were recorded in.

-- +goose Up
ALTER TABLE tenantkit.usage_events RENAME TO usage_events_unpartitioned;
ALTER TABLE tenantkit.usage_events_unpartitioned RENAME CONSTRAINT usage_events_pkey TO usage_events_unpartitioned_pkey;
ALTER TABLE tenantkit.usage_events_unpartitioned RENAME CONSTRAINT usage_events_idempotency_key_check TO usage_events_unpartitioned_idempotency_key_check;
ALTER INDEX tenantkit.usage_events_occurred_at_brin RENAME TO usage_events_unpartitioned_occurred_at_brin;

CREATE TABLE tenantkit.usage_events (
  tenant_id       uuid NOT NULL, -- no foreign key: a lock and a trigger stand in (00021)
  idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  metric          text NOT NULL,
  quantity        numeric(20, 4) NOT NULL,
  occurred_at     timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  recorded_month  date NOT NULL DEFAULT date_trunc('month', now() AT TIME ZONE 'UTC')::date
                  CHECK (extract(day FROM recorded_month) = 1),
  PRIMARY KEY (tenant_id, idempotency_key, recorded_month)
) PARTITION BY RANGE (recorded_month);
COMMENT ON TABLE tenantkit.usage_events IS 'Every usage event once, by its idempotency key, partitioned by the UTC month it was recorded in (system only); deleted with its tenant by trigger';
COMMENT ON COLUMN tenantkit.usage_events.recorded_month IS 'first day of the UTC month the event was recorded in: the partition key';
-- Events are appended roughly in occurred_at order: a BRIN index finds one hour's blocks for a
-- fraction of a B-tree's size and insert cost.
CREATE INDEX usage_events_occurred_at_brin ON tenantkit.usage_events USING brin (occurred_at) WITH (autosummarize = on);

-- +goose StatementBegin
-- Creates the partition of month (its first day) when missing; true when it did. The partition is
-- created alone and then attached, which takes a SHARE UPDATE EXCLUSIVE lock on the parent (reads
-- and writes go on) instead of the ACCESS EXCLUSIVE lock of CREATE TABLE … PARTITION OF.
CREATE FUNCTION tenantkit.usage_events_partition(month date) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s' AS $$
DECLARE
  m    date := date_trunc('month', month::timestamp)::date;
  name text := 'usage_events_' || to_char(month, 'YYYYMM');
  pol  record;
BEGIN
  IF month IS NULL THEN
    RAISE EXCEPTION 'usage_events_partition: month is NULL';
  END IF;
  -- Concurrent callers (inserts that found no partition) create it once: the second waits for the
  -- first's commit, then finds the table.
  PERFORM pg_advisory_xact_lock(hashtext('tenantkit.usage_events_partition'), 0);
  IF to_regclass('tenantkit.' || quote_ident(name)) IS NOT NULL THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE TABLE tenantkit.%I (LIKE tenantkit.usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
  EXECUTE format('ALTER TABLE tenantkit.%I ADD CONSTRAINT %I CHECK (recorded_month >= %L AND recorded_month < %L)',
                 name, name || '_bounds', m, (m + interval '1 month')::date);
  EXECUTE format('ALTER TABLE tenantkit.%I ENABLE ROW LEVEL SECURITY', name);
  EXECUTE format('ALTER TABLE tenantkit.%I FORCE ROW LEVEL SECURITY', name);
  FOR pol IN
    SELECT p.polname, p.polpermissive, p.polcmd, pg_get_expr(p.polqual, p.polrelid) AS qual,
           pg_get_expr(p.polwithcheck, p.polrelid) AS with_check,
           (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ')
            FROM unnest(p.polroles) r) AS roles
    FROM pg_policy p WHERE p.polrelid = 'tenantkit.usage_events'::regclass ORDER BY p.polname
  LOOP
    EXECUTE format('CREATE POLICY %I ON tenantkit.%I AS %s FOR %s TO %s%s%s', pol.polname, name,
                   CASE WHEN pol.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                   CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                   WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                   pol.roles,
                   CASE WHEN pol.qual IS NOT NULL THEN ' USING (' || pol.qual || ')' ELSE '' END,
                   CASE WHEN pol.with_check IS NOT NULL THEN ' WITH CHECK (' || pol.with_check || ')' ELSE '' END);
  END LOOP;
  EXECUTE format('ALTER TABLE tenantkit.usage_events ATTACH PARTITION tenantkit.%I FOR VALUES FROM (%L) TO (%L)',
                 name, m, (m + interval '1 month')::date);
  EXECUTE format('ALTER TABLE tenantkit.%I DROP CONSTRAINT %I', name, name || '_bounds');
  RETURN true;
END $$;

-- Detaches and drops every partition whose months all lie before month; returns their names.
CREATE FUNCTION tenantkit.usage_events_drop_before(month date) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s' AS $$
DECLARE
  part record;
BEGIN
  IF month IS NULL THEN
    RAISE EXCEPTION 'usage_events_drop_before: month is NULL';
  END IF;
  FOR part IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'tenantkit.usage_events'::regclass AND c.relname ~ '^usage_events_[0-9]{6}$'
      AND to_date(substr(c.relname, 14), 'YYYYMM') < date_trunc('month', month::timestamp)::date
    ORDER BY c.relname
  LOOP
    EXECUTE format('ALTER TABLE tenantkit.usage_events DETACH PARTITION tenantkit.%I', part.relname);
    EXECUTE format('DROP TABLE tenantkit.%I', part.relname);
    RETURN NEXT part.relname;
  END LOOP;
END $$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tenantkit.usage_events_partition(date), tenantkit.usage_events_drop_before(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.usage_events_partition(date), tenantkit.usage_events_drop_before(date) TO tenantkit_system;

-- The parent's walls, as 00003 and 00016 made them (before the partitions, which copy the policies).
ALTER TABLE tenantkit.usage_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_events FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.usage_events TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY app_export ON tenantkit.usage_events FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('tenants:export')), tenant_id::text || '/owner') IS NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.usage_events TO tenantkit_system;
GRANT SELECT ON tenantkit.usage_events TO tenantkit_app;

-- The partitions of the months existing rows were recorded in, this month's and the next two.
SELECT tenantkit.usage_events_partition(m)
FROM (SELECT DISTINCT date_trunc('month', recorded_at AT TIME ZONE 'UTC')::date AS m FROM tenantkit.usage_events_unpartitioned
      UNION
      SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + n * interval '1 month')::date FROM generate_series(0, 2) n) months
ORDER BY m;

-- The owner of the tables runs this migration, and FORCE ROW LEVEL SECURITY holds it to the
-- policies: the rows move as tenantkit_system.
SET LOCAL ROLE tenantkit_system;
INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at, recorded_month)
SELECT tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at,
       date_trunc('month', recorded_at AT TIME ZONE 'UTC')::date
FROM tenantkit.usage_events_unpartitioned;
RESET ROLE;
DROP TABLE tenantkit.usage_events_unpartitioned;

-- +goose Down
CREATE TABLE tenantkit.usage_events_unpartitioned (
  tenant_id       uuid NOT NULL, -- no foreign key: a lock and a trigger stand in (00021)
  idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  metric          text NOT NULL,
  quantity        numeric(20, 4) NOT NULL,
  occurred_at     timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, idempotency_key)
);
-- A key recorded again after its idempotency window (in two months' partitions) keeps its first row.
-- The owner reads the rows past the policies once FORCE is off.
ALTER TABLE tenantkit.usage_events NO FORCE ROW LEVEL SECURITY;
INSERT INTO tenantkit.usage_events_unpartitioned (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at)
SELECT DISTINCT ON (tenant_id, idempotency_key) tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at
FROM tenantkit.usage_events
ORDER BY tenant_id, idempotency_key, recorded_month, recorded_at;
DROP TABLE tenantkit.usage_events;
DROP FUNCTION tenantkit.usage_events_partition(date), tenantkit.usage_events_drop_before(date);
ALTER TABLE tenantkit.usage_events_unpartitioned RENAME TO usage_events;
ALTER TABLE tenantkit.usage_events RENAME CONSTRAINT usage_events_unpartitioned_pkey TO usage_events_pkey;
ALTER TABLE tenantkit.usage_events RENAME CONSTRAINT usage_events_unpartitioned_idempotency_key_check TO usage_events_idempotency_key_check;
COMMENT ON TABLE tenantkit.usage_events IS 'Every usage event once, by its idempotency key (system only); deleted with its tenant by trigger';
CREATE INDEX usage_events_occurred_at_brin ON tenantkit.usage_events USING brin (occurred_at) WITH (autosummarize = on);
ALTER TABLE tenantkit.usage_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_events FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.usage_events TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY app_export ON tenantkit.usage_events FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.manageable_roles('tenants:export')), tenant_id::text || '/owner') IS NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.usage_events TO tenantkit_system;
GRANT SELECT ON tenantkit.usage_events TO tenantkit_app;
