-- Billing operations: what Stripe actually bills, usage reports that add up, and the bookkeeping
-- `tenantkit stripe reconcile` and `tenantkit usage report` need.
--
-- * Each subscription keeps the licensed item's own price terms as Stripe sent them (unit amount,
--   currency, interval, interval count): MRR is computed from what the subscription is billed at,
--   not from the plan's list price. Rows stored before this migration get them from the plan whose
--   current price they are billed at; `tenantkit stripe reconcile` fills in the others.
-- * tenantkit.usage_reports: per subscription and billing period, what the usage report owes
--   Stripe and what Stripe accepted, so that a period's calls are reported exactly once, and what a
--   closing period could not report any more is carried into the next one.
-- * tenantkit.usage_cuts: the part of an hour's usage that falls before a period boundary inside
--   that hour, cached while the hour's total stays the same (billing_usage counts whole hours).
-- * A BRIN index on usage_events.occurred_at, to read the events of one hour.

-- +goose Up
ALTER TABLE tenantkit.stripe_subscriptions
  ADD COLUMN unit_amount    numeric(30, 12) CHECK (unit_amount >= 0),
  ADD COLUMN currency       text CHECK (currency ~ '^[a-z]{3}$'),
  ADD COLUMN "interval"     text CHECK ("interval" IN ('day', 'week', 'month', 'year')),
  ADD COLUMN interval_count integer CHECK (interval_count >= 1);
COMMENT ON COLUMN tenantkit.stripe_subscriptions.unit_amount IS 'the licensed item''s price per unit, smallest currency unit (Stripe''s unit_amount_decimal); NULL when unknown (e.g. a tiered price)';
COMMENT ON COLUMN tenantkit.stripe_subscriptions."interval" IS 'the licensed price''s billing interval; with interval_count, how often the price is billed';
-- Serves the churn count (subscriptions that ended in a window).
CREATE INDEX stripe_subscriptions_ended_at_idx ON tenantkit.stripe_subscriptions (ended_at) WHERE ended_at IS NOT NULL;

SET LOCAL ROLE tenantkit_system;
UPDATE tenantkit.stripe_subscriptions s
SET unit_amount = p.unit_amount, currency = p.currency, "interval" = p."interval", interval_count = 1
FROM subscription_plans p
WHERE p.stripe_price_id = s.price_id AND s.unit_amount IS NULL;
RESET ROLE;

CREATE TABLE tenantkit.usage_reports (
  tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  subscription_id    text NOT NULL,
  period_start       timestamptz NOT NULL,
  period_end         timestamptz NOT NULL,
  -- the metered subscription item the period is reported to (it changes with the plan)
  item_id            text NOT NULL,
  -- whole api_calls of the period (rounded up), as last counted; final once the period is closed
  due                bigint NOT NULL DEFAULT 0 CHECK (due >= 0),
  -- calls of the subscription's earlier periods that their own reports never reached
  carried_in         bigint NOT NULL DEFAULT 0 CHECK (carried_in >= 0),
  -- the quantity Stripe last accepted for the period on item_id (a plan change that replaces the
  -- item clears the old one's usage, so the new item is owed the whole period)
  reported           bigint NOT NULL DEFAULT 0 CHECK (reported >= 0),
  reported_at        timestamptz,
  -- set when the period is over and what it still owed moved into the next period's carried_in
  closed_at          timestamptz,
  PRIMARY KEY (tenant_id, subscription_id, period_start),
  CHECK (period_end > period_start)
);
COMMENT ON TABLE tenantkit.usage_reports IS 'api_calls owed to and accepted by Stripe, per subscription and billing period (system only)';
ALTER TABLE tenantkit.usage_reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_reports FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.usage_reports TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.usage_reports TO tenantkit_system;

CREATE TABLE tenantkit.usage_cuts (
  tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  metric     text NOT NULL,
  cut        timestamptz NOT NULL,
  -- the hour's total in billing_usage when "below" was counted: the cache holds while it is equal
  hour_total numeric(20, 4) NOT NULL,
  -- the metric's usage from the start of cut's hour up to cut (excluded)
  below      numeric(20, 4) NOT NULL,
  PRIMARY KEY (tenant_id, metric, cut)
);
COMMENT ON TABLE tenantkit.usage_cuts IS 'Usage of an hour before a period boundary inside it, valid while the hour''s total is unchanged (system only)';
ALTER TABLE tenantkit.usage_cuts ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.usage_cuts FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.usage_cuts TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.usage_cuts TO tenantkit_system;

-- Events are appended roughly in occurred_at order: a BRIN index finds one hour's blocks for a
-- fraction of a B-tree's size and insert cost.
CREATE INDEX usage_events_occurred_at_brin ON tenantkit.usage_events USING brin (occurred_at) WITH (autosummarize = on);

-- +goose Down
DROP INDEX tenantkit.usage_events_occurred_at_brin;
DROP TABLE tenantkit.usage_cuts, tenantkit.usage_reports;
DROP INDEX tenantkit.stripe_subscriptions_ended_at_idx;
ALTER TABLE tenantkit.stripe_subscriptions
  DROP COLUMN unit_amount, DROP COLUMN currency, DROP COLUMN "interval", DROP COLUMN interval_count;
