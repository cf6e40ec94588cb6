-- The life of a paying tenant.
--
-- * Every Stripe subscription tenantkit learns of is kept with its own watermark
--   (tenantkit.stripe_subscriptions); tenant_subscriptions holds the tenant's *current* one, which
--   internal/billing chooses. A subscription is linked to a tenant only through ids tenantkit
--   created or recorded itself (the tenant's customer, a subscription already linked).
-- * Every Stripe price ever linked to a plan is remembered (tenantkit.plan_prices), so the plan of
--   a subscription is read from the price it is billed at, even after the plan's price changed.
-- * Entitlements follow the subscription's status: tenantkit.entitlement() decides the effective
--   plan (and why); the plan-limit triggers use it, so Hasura's path obeys it too.
-- * A free plan (never synced to Stripe) is the default; new tenants get a trial of another plan
--   (the service's TRIAL_PLAN, Starter unless configured).
-- * Plans carry on/off features (feature_flags) next to their numeric limits.
-- * Billing emails are queued at most once per cause (email_outbox.dedupe_key).

-- +goose Up
CREATE TABLE tenantkit.stripe_subscriptions (
  id                   text PRIMARY KEY,
  tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  customer_id          text NOT NULL,
  status               subscription_status NOT NULL,
  plan_id              uuid REFERENCES subscription_plans (id),
  price_id             text,
  quantity             bigint NOT NULL DEFAULT 1,
  usage_item_id        text,
  created              timestamptz NOT NULL,
  current_period_start timestamptz,
  current_period_end   timestamptz,
  trial_end            timestamptz,
  cancel_at_period_end boolean NOT NULL DEFAULT false,
  cancel_at            timestamptz,
  canceled_at          timestamptz,
  ended_at             timestamptz,
  -- the Stripe event whose state this row holds (watermark); NULL when only fetched so far
  event_at             timestamptz,
  event_id             text,
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_subscriptions_tenant_id_idx ON tenantkit.stripe_subscriptions (tenant_id);
CREATE INDEX stripe_subscriptions_plan_id_idx ON tenantkit.stripe_subscriptions (plan_id);
COMMENT ON TABLE tenantkit.stripe_subscriptions IS 'Every Stripe subscription of a tenant''s customer, each with its own event watermark';
ALTER TABLE tenantkit.stripe_subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.stripe_subscriptions FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.stripe_subscriptions TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.stripe_subscriptions TO tenantkit_system;

CREATE TABLE tenantkit.plan_prices (
  price_id   text PRIMARY KEY,
  plan_id    uuid NOT NULL REFERENCES subscription_plans (id) ON DELETE CASCADE,
  metered    boolean NOT NULL DEFAULT false,
  linked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_prices_plan_id_idx ON tenantkit.plan_prices (plan_id);
COMMENT ON TABLE tenantkit.plan_prices IS 'Every Stripe price ever linked to a plan (current and replaced)';
ALTER TABLE tenantkit.plan_prices ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.plan_prices FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.plan_prices TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.plan_prices TO tenantkit_system;
SET LOCAL ROLE tenantkit_system;
INSERT INTO tenantkit.plan_prices (price_id, plan_id)
  SELECT stripe_price_id, id FROM subscription_plans WHERE stripe_price_id IS NOT NULL
  ON CONFLICT DO NOTHING;
INSERT INTO tenantkit.plan_prices (price_id, plan_id, metered)
  SELECT stripe_api_calls_price_id, id, true FROM subscription_plans WHERE stripe_api_calls_price_id IS NOT NULL
  ON CONFLICT DO NOTHING;
RESET ROLE;

ALTER TABLE tenant_subscriptions ADD COLUMN stripe_quantity bigint;
COMMENT ON COLUMN tenant_subscriptions.stripe_quantity IS 'quantity of the licensed (plan) item of the current subscription';
COMMENT ON COLUMN tenant_subscriptions.trial_ends_at IS 'end of the trial: Stripe''s trial_end, or tenantkit''s own trial while there is no Stripe subscription';
COMMENT ON COLUMN tenant_subscriptions.stripe_event_at IS 'created time of the Stripe event whose state the current subscription holds (watermark)';

ALTER TABLE tenantkit.stripe_events ADD COLUMN outcome text;
COMMENT ON COLUMN tenantkit.stripe_events.outcome IS 'what billing did with the event: applied, stale, not_current, not_ours, ignored';

ALTER TABLE tenantkit.email_outbox ADD COLUMN dedupe_key text;
CREATE UNIQUE INDEX email_outbox_dedupe_key ON tenantkit.email_outbox (dedupe_key, to_email) WHERE dedupe_key IS NOT NULL;

-- On/off features of a plan, e.g. {sso, advanced_analytics}.
ALTER TABLE subscription_plans ADD COLUMN feature_flags text[] NOT NULL DEFAULT '{}'
  CHECK (array_position(feature_flags, NULL) IS NULL);
COMMENT ON COLUMN subscription_plans.feature_flags IS 'on/off features the plan grants (e.g. sso); features is display text';

SET LOCAL ROLE tenantkit_system;
UPDATE subscription_plans SET is_default = false WHERE is_default;
INSERT INTO subscription_plans (key, name, description, unit_amount, currency, "interval", features, limits, is_default, sort_order)
VALUES ('free', 'Free', 'For trying things out', 0, 'usd', 'month',
        '["3 team members", "3 projects", "Community support"]',
        '{"users": 3, "projects": 3, "storage_gb": 1}', true, 0)
ON CONFLICT (key) DO UPDATE SET is_default = true;
UPDATE subscription_plans SET feature_flags = '{advanced_analytics}' WHERE key = 'professional';
UPDATE subscription_plans SET feature_flags = '{advanced_analytics,sso}' WHERE key = 'enterprise';
RESET ROLE;

-- The effective plan of a tenant and why. One home for the rule:
--   Stripe subscription trialing, active, past_due  -> its plan (past_due: while Stripe retries)
--   Stripe subscription in any other status         -> the default plan
--   no Stripe subscription, own trial not yet ended -> the trial plan, else the default plan
--   no subscription row at all                      -> the default plan
-- +goose StatementBegin
CREATE FUNCTION tenantkit.entitlement(tenant uuid, at timestamptz DEFAULT now())
RETURNS TABLE (plan_id uuid, reason text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  WITH d AS (SELECT id FROM public.subscription_plans WHERE is_default)
  SELECT CASE WHEN r.paid THEN r.plan_id ELSE (SELECT id FROM d) END, r.reason
  FROM (
    SELECT s.plan_id,
           CASE
             WHEN s.stripe_subscription_id IS NOT NULL THEN s.status IN ('trialing', 'active', 'past_due')
             WHEN s.status = 'trialing' THEN s.trial_ends_at > at
             ELSE s.status = 'active'
           END AS paid,
           CASE
             WHEN s.stripe_subscription_id IS NOT NULL AND s.status = 'past_due' THEN 'past_due_grace'
             WHEN s.stripe_subscription_id IS NOT NULL THEN 'subscription_' || s.status
             WHEN s.status = 'trialing' AND s.trial_ends_at > at THEN 'trial'
             WHEN s.status = 'trialing' THEN 'trial_ended'
             ELSE 'manual_' || s.status
           END AS reason
    FROM public.tenant_subscriptions s WHERE s.tenant_id = tenant
    UNION ALL
    SELECT NULL, false, 'no_subscription'
    WHERE NOT EXISTS (SELECT 1 FROM public.tenant_subscriptions s WHERE s.tenant_id = tenant)
  ) r
$$;

CREATE FUNCTION tenantkit.effective_plan(tenant uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT plan_id FROM tenantkit.entitlement(tenant)
$$;

-- What a tenant uses of a metered limit: users are members plus pending, unexpired invitations;
-- projects are rows; any other metric is the latest hourly value of its gauge.
CREATE FUNCTION tenantkit.plan_usage(tenant uuid, metric text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  used bigint;
BEGIN
  IF metric = 'users' THEN
    SELECT (SELECT count(*) FROM public.tenant_users WHERE tenant_id = tenant)
         + (SELECT count(*) FROM public.tenant_invitations
            WHERE tenant_id = tenant AND status = 'pending' AND expires_at > now())
      INTO used;
  ELSIF metric = 'projects' THEN
    SELECT count(*) INTO used FROM public.projects WHERE tenant_id = tenant;
  ELSE
    SELECT ceil(u.quantity)::bigint INTO used FROM public.billing_usage u
    WHERE u.tenant_id = tenant AND u.metric = plan_usage.metric
    ORDER BY u.period_start DESC, u.quantity DESC LIMIT 1;
  END IF;
  RETURN coalesce(used, 0);
END $$;

CREATE OR REPLACE FUNCTION tenantkit.plan_limit(tenant uuid, metric text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce((
    SELECT (p.limits ->> metric)::bigint
    FROM public.subscription_plans p
    WHERE p.id = tenantkit.effective_plan(tenant)), -1)
$$;

CREATE OR REPLACE FUNCTION tenantkit.enforce_plan_limit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  metric text := TG_ARGV[0];
  max_allowed bigint;
  plan_name text;
  used bigint;
BEGIN
  IF TG_TABLE_NAME = 'tenant_invitations' THEN
    -- only an invitation that becomes pending (new, re-sent after expiry, or moved) takes a seat
    IF NEW.status <> 'pending' OR NEW.expires_at <= now() THEN
      RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'pending' AND OLD.expires_at > now() AND OLD.tenant_id = NEW.tenant_id THEN
      RETURN NULL;
    END IF;
  ELSIF TG_OP = 'UPDATE' AND OLD.tenant_id = NEW.tenant_id THEN
    RETURN NULL;
  END IF;

  SELECT coalesce((p.limits ->> metric)::bigint, -1), p.name INTO max_allowed, plan_name
  FROM public.subscription_plans p WHERE p.id = tenantkit.effective_plan(NEW.tenant_id);
  IF coalesce(max_allowed, -1) < 0 THEN
    RETURN NULL;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('tenantkit.plan_limit'), hashtext(NEW.tenant_id::text));
  used := tenantkit.plan_usage(NEW.tenant_id, metric);
  IF used > max_allowed THEN
    -- Rows already above the limit (after a downgrade) stay; only new ones are refused.
    RAISE EXCEPTION 'plan limit reached: the % plan allows % %', plan_name, max_allowed, metric
      USING ERRCODE = 'TK001', CONSTRAINT = 'plan_limit_' || metric,
            HINT = 'Upgrade the plan or remove some first.';
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.entitlement(uuid, timestamptz) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.effective_plan(uuid) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.plan_usage(uuid, text) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.entitlement(uuid, timestamptz), tenantkit.effective_plan(uuid),
  tenantkit.plan_usage(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.entitlement(uuid, timestamptz), tenantkit.effective_plan(uuid),
  tenantkit.plan_usage(uuid, text) TO tenantkit_app, tenantkit_system;

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.plan_limit(tenant uuid, metric text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce((
    SELECT (p.limits ->> metric)::bigint
    FROM public.subscription_plans p
    WHERE p.id = coalesce(
      (SELECT s.plan_id FROM public.tenant_subscriptions s WHERE s.tenant_id = tenant),
      (SELECT d.id FROM public.subscription_plans d WHERE d.is_default))), -1)
$$;

CREATE OR REPLACE FUNCTION tenantkit.enforce_plan_limit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  metric text := TG_ARGV[0];
  max_allowed bigint;
  used bigint;
BEGIN
  IF TG_TABLE_NAME = 'tenant_invitations' THEN
    IF NEW.status <> 'pending' OR NEW.expires_at <= now() THEN
      RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'pending' AND OLD.expires_at > now() AND OLD.tenant_id = NEW.tenant_id THEN
      RETURN NULL;
    END IF;
  ELSIF TG_OP = 'UPDATE' AND OLD.tenant_id = NEW.tenant_id THEN
    RETURN NULL;
  END IF;
  max_allowed := tenantkit.plan_limit(NEW.tenant_id, metric);
  IF max_allowed < 0 THEN
    RETURN NULL;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('tenantkit.plan_limit'), hashtext(NEW.tenant_id::text));
  IF metric = 'users' THEN
    SELECT (SELECT count(*) FROM public.tenant_users WHERE tenant_id = NEW.tenant_id)
         + (SELECT count(*) FROM public.tenant_invitations
            WHERE tenant_id = NEW.tenant_id AND status = 'pending' AND expires_at > now())
      INTO used;
  ELSE
    EXECUTE format('SELECT count(*) FROM public.%I WHERE tenant_id = $1', TG_TABLE_NAME) INTO used USING NEW.tenant_id;
  END IF;
  IF used > max_allowed THEN
    RAISE EXCEPTION 'plan limit reached: the plan allows % %', max_allowed, metric
      USING ERRCODE = 'TK001', CONSTRAINT = 'plan_limit_' || metric,
            HINT = 'Upgrade the plan or remove some first.';
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
DROP FUNCTION tenantkit.plan_usage(uuid, text), tenantkit.effective_plan(uuid), tenantkit.entitlement(uuid, timestamptz);
SET LOCAL ROLE tenantkit_system;
UPDATE subscription_plans SET is_default = false WHERE key = 'free';
UPDATE subscription_plans SET is_default = true WHERE key = 'starter';
RESET ROLE;
ALTER TABLE subscription_plans DROP COLUMN feature_flags;
DROP INDEX tenantkit.email_outbox_dedupe_key;
ALTER TABLE tenantkit.email_outbox DROP COLUMN dedupe_key;
ALTER TABLE tenantkit.stripe_events DROP COLUMN outcome;
ALTER TABLE tenant_subscriptions DROP COLUMN stripe_quantity;
DROP TABLE tenantkit.plan_prices, tenantkit.stripe_subscriptions;
