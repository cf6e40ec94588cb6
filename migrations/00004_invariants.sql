-- Invariants every client is held to, Hasura included: plan limits and "a tenant keeps an owner".
--
-- Errors carry their own SQLSTATEs so the service maps them without reading messages:
--   TK001 plan_limit  (CONSTRAINT = 'plan_limit_<metric>')
--   TK002 last_owner  (CONSTRAINT = 'last_owner')
-- Both functions are SECURITY DEFINER (owned by tenantkit_system) because they must count rows the
-- caller may not see, and both take a per-tenant transaction advisory lock so that two concurrent
-- writers cannot both pass the check. Both run AFTER the row is written, i.e. after RLS has accepted
-- it: a caller outside the tenant gets RLS's refusal and learns nothing about the plan or its use.

-- +goose Up

-- The limit on `metric` of the tenant's plan: its subscription's plan, else the default plan.
-- -1 (or a metric the plan does not name) means unlimited.
-- +goose StatementBegin
CREATE FUNCTION tenantkit.plan_limit(tenant uuid, metric text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce((
    SELECT (p.limits ->> metric)::bigint
    FROM public.subscription_plans p
    WHERE p.id = coalesce(
      (SELECT s.plan_id FROM public.tenant_subscriptions s WHERE s.tenant_id = tenant),
      (SELECT d.id FROM public.subscription_plans d WHERE d.is_default))), -1)
$$;

-- Trigger (AFTER, so the count includes the new row): refuse a new member, pending invitation or
-- project beyond the plan's limit. "users" counts members plus pending, unexpired invitations.
CREATE FUNCTION tenantkit.enforce_plan_limit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  metric text := TG_ARGV[0];
  max_allowed bigint;
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

-- Constraint trigger, checked at commit: a tenant that still exists keeps at least one owner.
CREATE FUNCTION tenantkit.enforce_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tenantkit.owner'), hashtext(OLD.tenant_id::text));
  IF EXISTS (SELECT 1 FROM public.tenants WHERE id = OLD.tenant_id)
     AND NOT EXISTS (SELECT 1 FROM public.tenant_users WHERE tenant_id = OLD.tenant_id AND role = 'owner') THEN
    RAISE EXCEPTION 'a tenant must keep at least one owner'
      USING ERRCODE = 'TK002', CONSTRAINT = 'last_owner',
            HINT = 'Transfer ownership first, or delete the tenant.';
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.plan_limit(uuid, text) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.enforce_plan_limit() OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.enforce_owner() OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.plan_limit(uuid, text), tenantkit.enforce_plan_limit(), tenantkit.enforce_owner() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.plan_limit(uuid, text) TO tenantkit_app;

CREATE TRIGGER plan_limit AFTER INSERT OR UPDATE OF tenant_id ON tenant_users
  FOR EACH ROW EXECUTE FUNCTION tenantkit.enforce_plan_limit('users');
CREATE TRIGGER plan_limit AFTER INSERT OR UPDATE OF tenant_id, status, expires_at ON tenant_invitations
  FOR EACH ROW EXECUTE FUNCTION tenantkit.enforce_plan_limit('users');
CREATE TRIGGER plan_limit AFTER INSERT OR UPDATE OF tenant_id ON projects
  FOR EACH ROW EXECUTE FUNCTION tenantkit.enforce_plan_limit('projects');
CREATE CONSTRAINT TRIGGER keep_owner AFTER UPDATE OF role, tenant_id OR DELETE ON tenant_users
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (OLD.role = 'owner') EXECUTE FUNCTION tenantkit.enforce_owner();

-- +goose Down
DROP TRIGGER keep_owner ON tenant_users;
DROP TRIGGER plan_limit ON projects;
DROP TRIGGER plan_limit ON tenant_invitations;
DROP TRIGGER plan_limit ON tenant_users;
DROP FUNCTION tenantkit.enforce_owner(), tenantkit.enforce_plan_limit(), tenantkit.plan_limit(uuid, text);
