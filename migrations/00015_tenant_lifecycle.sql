-- The writes to Stripe that must follow a committed change, and the tenant lifecycle around them.
--
-- tenantkit.stripe_outbox holds every such write, queued in the transaction of the change that
-- makes it necessary and sent after commit by the service's Stripe outbox sender
-- (internal/billing, StripeOutbox): claimed for a lease (SKIP LOCKED, leased_until) so that two
-- replicas never send one row at once, retried with back-off until Stripe confirms, finished with
-- an outcome (sent, already_done, skipped). A refusal that retrying cannot fix is recorded
-- (outcome failed, last_error) and tried again a day later, never in a loop. Kinds:
--   cancel_subscription  end a subscription at once (a deleted tenant's, see below); one row per
--                        idempotency key, which names the tenant, the deletion and the subscription.
--   sync_seats           set the licensed quantity of a per-seat plan's subscription to the
--                        number of members; one row per tenant, coalesced: version counts the
--                        membership changes (and re-syncs) and only the latest is sent.
-- tenant_id has no foreign key: a cancellation still queued when its tenant is purged must go out.

-- +goose Up
CREATE TABLE tenantkit.stripe_outbox (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind            text NOT NULL CHECK (kind IN ('cancel_subscription', 'sync_seats')),
  tenant_id       uuid NOT NULL,
  subscription_id text,
  idempotency_key text,
  version         bigint NOT NULL DEFAULT 1,
  attempts        integer NOT NULL DEFAULT 0,
  next_at         timestamptz NOT NULL DEFAULT now(),
  leased_until    timestamptz,
  done_at         timestamptz,
  outcome         text CHECK (outcome IN ('sent', 'already_done', 'skipped', 'retrying', 'failed')),
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (kind <> 'cancel_subscription' OR (subscription_id IS NOT NULL AND idempotency_key IS NOT NULL))
);
CREATE UNIQUE INDEX stripe_outbox_key ON tenantkit.stripe_outbox (idempotency_key) WHERE kind = 'cancel_subscription';
CREATE UNIQUE INDEX stripe_outbox_seats ON tenantkit.stripe_outbox (tenant_id) WHERE kind = 'sync_seats';
CREATE INDEX stripe_outbox_due ON tenantkit.stripe_outbox (next_at) WHERE done_at IS NULL;
CREATE INDEX stripe_outbox_tenant_id_idx ON tenantkit.stripe_outbox (tenant_id);
COMMENT ON TABLE tenantkit.stripe_outbox IS 'Stripe writes queued with the change that needs them, sent after commit (system only)';
ALTER TABLE tenantkit.stripe_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.stripe_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.stripe_outbox TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.stripe_outbox TO tenantkit_system;

-- +goose Down
DROP TABLE tenantkit.stripe_outbox;
