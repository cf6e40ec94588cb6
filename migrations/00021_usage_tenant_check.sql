-- Usage events without a per-row foreign-key check.
--
-- Every row inserted into tenantkit.usage_events used to run the foreign-key check on tenants: one
-- SPI query and one FOR KEY SHARE row lock per event. Concurrent batches lock the same tenant rows,
-- so each lock also builds a new MultiXact; measured on the 2-core machine (2026-12-06), the
-- events insert alone ran 1.6x faster with the check replaced by one set-based lock of the batch's
-- distinct tenants (bench/README.md, "usage ingestion").
--
-- The guarantee stays what the foreign key gave, in two halves:
-- * Insert: recordUsage first locks the batch's distinct tenants FOR KEY SHARE in one statement
--   and refuses the batch unless all exist (internal/postgres, RecordUsage), then inserts the
--   events in the same transaction. The lock is the one the foreign-key check took: a tenant
--   cannot be deleted while a batch that names it is open.
-- * Delete: deleting a tenant deletes its events (tenantkit.delete_usage_events, the cascade the
--   foreign key did). The delete waited for every batch holding the tenant's lock, so in READ
--   COMMITTED the trigger's statement, which takes a new snapshot, sees their events. A REPEATABLE
--   READ or SERIALIZABLE transaction would not see them (the foreign key's cascade checks with a
--   newer snapshot, a trigger cannot), so the trigger refuses to run there (serialization_failure):
--   every path that deletes tenants (purge_tenant, Hasura, the service) runs in READ COMMITTED.
-- Either way no event outlives its tenant.

-- +goose Up
ALTER TABLE tenantkit.usage_events DROP CONSTRAINT usage_events_tenant_id_fkey;

-- +goose StatementBegin
CREATE FUNCTION tenantkit.delete_usage_events() RETURNS trigger
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
ALTER FUNCTION tenantkit.delete_usage_events() OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.delete_usage_events() FROM PUBLIC;
CREATE TRIGGER delete_usage_events AFTER DELETE ON tenants REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION tenantkit.delete_usage_events();
COMMENT ON TABLE tenantkit.usage_events IS 'Every usage event once, by its idempotency key (system only); deleted with its tenant by trigger';

-- +goose Down
DROP TRIGGER delete_usage_events ON tenants;
DROP FUNCTION tenantkit.delete_usage_events();
DELETE FROM tenantkit.usage_events e WHERE NOT EXISTS (SELECT FROM tenants t WHERE t.id = e.tenant_id);
ALTER TABLE tenantkit.usage_events ADD CONSTRAINT usage_events_tenant_id_fkey
  FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
COMMENT ON TABLE tenantkit.usage_events IS 'Every usage event once, by its idempotency key (system only)';
