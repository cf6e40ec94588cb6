-- Each change tenantkit asks Stripe to make to a subscription (cancel at period end, resume, change
-- of price) is recorded here first; its id goes into the request's idempotency key. A later
-- request therefore never reuses an earlier one's key, even when it asks for the same state again
-- before any webhook has moved the stored state (cancel, resume, cancel), while stripe-go's own
-- retries of one request resend that request's key.

-- +goose Up
CREATE TABLE tenantkit.stripe_intents (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  subscription_id text NOT NULL,
  intent          text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_intents_subscription_idx ON tenantkit.stripe_intents (subscription_id, id);
COMMENT ON TABLE tenantkit.stripe_intents IS 'Subscription changes requested from Stripe; the id is part of the idempotency key (system only)';
ALTER TABLE tenantkit.stripe_intents ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.stripe_intents FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.stripe_intents TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.stripe_intents TO tenantkit_system;

-- +goose Down
DROP TABLE tenantkit.stripe_intents;
