-- Metered api_calls: a plan may price its tenants' API calls per unit (a Stripe metered price next
-- to the plan's licensed price). NULL: api_calls are counted but not billed.

-- +goose Up
ALTER TABLE subscription_plans
  ADD COLUMN api_calls_unit_amount numeric(20, 6) CHECK (api_calls_unit_amount >= 0),
  ADD COLUMN stripe_api_calls_price_id text UNIQUE;
COMMENT ON COLUMN subscription_plans.api_calls_unit_amount IS 'price of one API call in the smallest currency unit (may be fractional); NULL: not billed';

-- +goose Down
ALTER TABLE subscription_plans DROP COLUMN api_calls_unit_amount, DROP COLUMN stripe_api_calls_price_id;
