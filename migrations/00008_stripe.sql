-- Stripe subscription state: what the webhooks apply, with a per-subscription watermark so that a
-- stale event never overwrites newer state, and the ids of the events already applied.

-- +goose Up
ALTER TABLE tenant_subscriptions
  ADD COLUMN stripe_price_id text,
  ADD COLUMN stripe_usage_item_id text,
  ADD COLUMN stripe_event_at timestamptz,
  ADD COLUMN stripe_event_id text;
COMMENT ON COLUMN tenant_subscriptions.stripe_event_at IS 'created time of the Stripe event whose state this row holds (watermark)';
COMMENT ON COLUMN tenant_subscriptions.stripe_usage_item_id IS 'the subscription item metered usage is reported to';

-- Each Stripe event applied once: its id is recorded in the transaction that applies it.
CREATE TABLE tenantkit.stripe_events (
  id          text PRIMARY KEY,
  type        text NOT NULL,
  created     timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenantkit.stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.stripe_events FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.stripe_events TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.stripe_events TO tenantkit_system;

-- +goose Down
DROP TABLE tenantkit.stripe_events;
ALTER TABLE tenant_subscriptions
  DROP COLUMN stripe_price_id, DROP COLUMN stripe_usage_item_id, DROP COLUMN stripe_event_at, DROP COLUMN stripe_event_id;
