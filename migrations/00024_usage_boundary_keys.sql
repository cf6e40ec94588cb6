-- Usage idempotency across a month's end: tenantkit.usage_boundary_keys.
--
-- usage_events is partitioned by the UTC month a row is recorded in, and its primary key holds that
-- month (00022), so a key is unique within a month only; recordUsage also looks for the key in the
-- earlier months a copy can be in. That lookup sees committed rows only: two attempts of one event
-- in flight at once on both sides of a month's end (the first recorded in the old month and not yet
-- committed when the second, in the new month, looks) were both recorded.
--
-- Near a month's start or end (billing.UsageBoundaryWindow on either side of it, by the database's
-- clock, the one that picks the partition), recordUsage first claims each key of the batch here, in
-- the same statement as the insert. A second attempt's claim conflicts with the first's, waits for
-- the first to commit or roll back (as any unique index does), and then records the event only if
-- its own claim went in. Away from a month's end nothing is claimed: within a month the primary key
-- of usage_events already waits the same way.
--
-- The window must be longer than any recording transaction lasts (three statements, each bounded
-- by the statement timeout). The maintenance job deletes claims older than a day; a claim never
-- refuses a key the lookup would accept (a claim exists only where its event is recorded, or was a
-- duplicate already). Claims go with their tenant, like its events (tenantkit.delete_usage_events).

-- +goose Up
CREATE TABLE tenantkit.usage_boundary_keys (
  tenant_id       uuid NOT NULL, -- no foreign key, as usage_events: the batch holds its tenants' lock
  idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  claimed_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, idempotency_key)
);
COMMENT ON TABLE tenantkit.usage_boundary_keys IS 'Usage idempotency keys claimed near a month''s end, so that two attempts in flight on both sides of it record the event once (system only); pruned after a day';
-- Claims are appended in time order: BRIN finds the expired ones for the maintenance job.
CREATE INDEX usage_boundary_keys_claimed_at_brin ON tenantkit.usage_boundary_keys USING brin (claimed_at);
ALTER TABLE tenantkit.usage_boundary_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_boundary_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.usage_boundary_keys TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON tenantkit.usage_boundary_keys TO tenantkit_system;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.delete_usage_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'a tenant is deleted in READ COMMITTED only (its usage events would be missed)'
      USING ERRCODE = 'serialization_failure';
  END IF;
  DELETE FROM tenantkit.usage_events e USING gone g WHERE e.tenant_id = g.id;
  DELETE FROM tenantkit.usage_boundary_keys k USING gone g WHERE k.tenant_id = g.id;
  RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.delete_usage_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'a tenant is deleted in READ COMMITTED only (its usage events would be missed)'
      USING ERRCODE = 'serialization_failure';
  END IF;
  DELETE FROM tenantkit.usage_events e USING gone g WHERE e.tenant_id = g.id;
  RETURN NULL;
END $$;
-- +goose StatementEnd
DROP TABLE tenantkit.usage_boundary_keys;
