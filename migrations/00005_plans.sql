-- The guide's three plans. Prices are in cents; -1 means unlimited. `tenantkit plans sync` links
-- them to Stripe products and prices later; edit or add plans with further migrations.

-- +goose Up
SET LOCAL ROLE tenantkit_system;
INSERT INTO subscription_plans (key, name, description, unit_amount, currency, "interval", features, limits, is_default, sort_order)
VALUES
  ('starter', 'Starter', 'Perfect for small teams', 2900, 'usd', 'month',
   '["5 team members", "10 projects", "Email support"]',
   '{"users": 5, "projects": 10, "storage_gb": 5}', true, 1),
  ('professional', 'Professional', 'For growing teams', 9900, 'usd', 'month',
   '["Unlimited members", "50 projects", "Priority support", "Advanced analytics"]',
   '{"users": -1, "projects": 50, "storage_gb": 50}', false, 2),
  ('enterprise', 'Enterprise', 'For organisations that need guarantees', 29900, 'usd', 'month',
   '["Everything in Pro", "Unlimited projects", "Dedicated support", "SLA", "SSO"]',
   '{"users": -1, "projects": -1, "storage_gb": 500}', false, 3)
ON CONFLICT (key) DO NOTHING;
RESET ROLE;

-- +goose Down
SET LOCAL ROLE tenantkit_system;
DELETE FROM subscription_plans p
WHERE key IN ('starter', 'professional', 'enterprise')
  AND NOT EXISTS (SELECT 1 FROM tenant_subscriptions s WHERE s.plan_id = p.id);
RESET ROLE;
