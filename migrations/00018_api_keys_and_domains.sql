-- API keys (README "API keys", docs/apikeys.md) and, further below, verified domains (README
-- "Verified domains", docs/domains.md).
--
-- API keys: machine access to a tenant's data through Hasura.
--
-- * api_keys holds each key's public prefix and the SHA-256 of the whole key, never the key.
-- * Admins manage keys (api_keys:manage joins their grants; owners have "*").
-- * An API-client session is a hasura.user with x-hasura-role = api_client and one
--   x-hasura-api-key-id (and no x-hasura-user-id): what Hasura sets from a token of POST
--   /auth/token. tenantkit.current_api_key() reads it; tenantkit.current_user_id() sees nobody in
--   it, so the members' policies grant it nothing.
-- * For such a session, each tenant table gets policies api_<command> that mirror the members'
--   app_<command> policies with "the caller's membership allows perm" replaced by "the key allows
--   perm": the key is not revoked, one of its scopes covers perm, and its creator's membership of
--   the key's tenant allows perm now (tenantkit.api_key_tenants, api_key_roles). So a revoked key,
--   or a demoted or removed creator, loses its rights on the next statement, tokens already issued
--   included. Hasura's api_client permissions (scripts/hasura-permissions.py) state the same rule,
--   and internal/postgres/walls_test.go proves the two equal. An API client never deletes a tenant
--   and never inserts or changes memberships or invitations (the team actions are for people).
-- * Creating, revoking and changing a key is audited (api_key.created / revoked / updated /
--   deleted); a change an API client makes is audited as its creator's, with the key's id in the
--   entry's details.

-- +goose Up

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.role_grants(r tenant_role) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE r
    WHEN 'owner'  THEN ARRAY['*']
    WHEN 'admin'  THEN ARRAY['users:*', 'projects:*', 'settings:read', 'settings:write', 'billing:*', 'api_keys:manage']
    WHEN 'member' THEN ARRAY['projects:read', 'projects:write']
    WHEN 'guest'  THEN ARRAY['projects:read']
  END;
-- +goose StatementEnd

CREATE TABLE api_keys (
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name         text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
  -- the key's public part: "tk_live_" and 16 base32 characters; the rest of the key is secret
  prefix       text NOT NULL CHECK (prefix ~ '^tk_live_[a-z2-7]{16}$'),
  -- SHA-256 of the whole key
  key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),
  -- grants of the role table, never more than the creator held when creating the key
  scopes       jsonb NOT NULL CHECK (tenantkit.valid_permissions(scopes) AND jsonb_array_length(scopes) BETWEEN 1 AND 50),
  -- the key acts within what this member may do; a key whose creator is gone allows nothing
  created_by   uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  revoked_by   uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  -- stamped by the token exchange, at most once a minute
  last_used_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  CHECK (revoked_by IS NULL OR revoked_at IS NOT NULL)
);
-- The exchange finds a key by its prefix. 80 random bits make two equal prefixes practically
-- impossible, but a global unique index would keep the table from being distributed by tenant
-- (internal/postgres/distribution_test.go): the exchange compares the secret with every key of
-- the prefix instead.
CREATE UNIQUE INDEX api_keys_tenant_prefix_key ON api_keys (tenant_id, prefix);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);
CREATE INDEX api_keys_id_idx ON api_keys (id);
CREATE INDEX api_keys_created_by_idx ON api_keys (created_by);
CREATE INDEX api_keys_revoked_by_idx ON api_keys (revoked_by);
COMMENT ON TABLE api_keys IS 'API keys of tenants: prefix and SHA-256 only (README "API keys")';

-- +goose StatementBegin
-- The API key of the caller: x-hasura-api-key-id of a hasura.user whose x-hasura-role is
-- api_client and that names no user; NULL for anything else (a user's session, a malformed or
-- ambiguous one). Names are matched case-insensitively and must appear once, as in
-- tenantkit.current_user_id; a user's session is answered without parsing.
CREATE FUNCTION tenantkit.current_api_key() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
AS $$
DECLARE
  raw text := current_setting('hasura.user', true);
  claims jsonb;
  roles jsonb;
  keys jsonb;
  id text;
BEGIN
  IF raw IS NULL OR strpos(lower(raw), 'x-hasura-api-key-id') = 0 THEN
    RETURN NULL;
  END IF;
  IF raw ~ '^\s*\{\s*("([^"\\[:cntrl:]]|\\["\\/bfnrt])*"\s*:\s*"([^"\\[:cntrl:]]|\\["\\/bfnrt])*"\s*(,\s*"([^"\\[:cntrl:]]|\\["\\/bfnrt])*"\s*:\s*"([^"\\[:cntrl:]]|\\["\\/bfnrt])*"\s*)*)?\}\s*$' THEN
    claims := raw::jsonb;
  ELSE
    BEGIN
      claims := raw::jsonb;
    EXCEPTION WHEN OTHERS THEN
      RETURN NULL;
    END;
    IF jsonb_typeof(claims) <> 'object' THEN
      RETURN NULL;
    END IF;
  END IF;
  roles := jsonb_path_query_array(claims, '$.keyvalue() ? (@.key like_regex "^x-hasura-role$" flag "i").value');
  keys := jsonb_path_query_array(claims, '$.keyvalue() ? (@.key like_regex "^x-hasura-api-key-id$" flag "i").value');
  IF jsonb_array_length(roles) <> 1 OR roles ->> 0 IS DISTINCT FROM 'api_client' OR jsonb_array_length(keys) <> 1
     OR jsonb_array_length(jsonb_path_query_array(claims, '$.keyvalue() ? (@.key like_regex "^x-hasura-user-id$" flag "i")')) <> 0 THEN
    RETURN NULL;
  END IF;
  id := keys ->> 0;
  IF id ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
    RETURN id::uuid;
  END IF;
  RETURN NULL;
END $$;

-- Does a key with these scopes cover perm? The grants grammar of tenantkit.allows: "*", perm, or
-- perm's "resource:*".
CREATE FUNCTION tenantkit.scopes_allow(scopes jsonb, perm text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN scopes ?| ARRAY['*', perm, CASE WHEN perm ~ '^[^:]+:.' THEN split_part(perm, ':', 1) || ':*' END];

-- The tenant of the caller's key when the key allows perm (NULL: any use of the key, as
-- membership alone does for members): not revoked, a scope covers perm, and the creator's
-- current membership of the tenant allows perm. Expiry is the token's: an exchange never issues a
-- token that outlives its key.
CREATE FUNCTION tenantkit.api_key_tenants(perm text DEFAULT NULL) RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  kid uuid := tenantkit.current_api_key();
  result uuid[];
BEGIN
  IF kid IS NULL THEN
    RETURN '{}';
  END IF;
  IF perm IS NULL THEN
    SELECT coalesce(array_agg(k.tenant_id), '{}') INTO result
    FROM public.api_keys k
    JOIN public.tenant_users m ON m.tenant_id = k.tenant_id AND m.user_id = k.created_by
    WHERE k.id = kid AND k.revoked_at IS NULL
      AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = k.tenant_id AND t.deleted_at IS NOT NULL);
  ELSE
    SELECT coalesce(array_agg(k.tenant_id), '{}') INTO result
    FROM public.api_keys k
    JOIN public.tenant_users m ON m.tenant_id = k.tenant_id AND m.user_id = k.created_by
    WHERE k.id = kid AND k.revoked_at IS NULL
      AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = k.tenant_id AND t.deleted_at IS NOT NULL)
      AND tenantkit.scopes_allow(k.scopes, perm) AND tenantkit.allows(m.role, m.permissions, perm);
  END IF;
  RETURN result;
END $$;

-- The (tenant, role) pairs the caller's key may manage with perm, as 'tenant_id/role': every role
-- up to its creator's, when the key allows perm. A key never acts above its creator's rank.
CREATE FUNCTION tenantkit.api_key_roles(perm text) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  kid uuid := tenantkit.current_api_key();
  result text[];
BEGIN
  IF kid IS NULL THEN
    RETURN '{}';
  END IF;
  SELECT coalesce(array_agg(k.tenant_id::text || '/' || r::text), '{}') INTO result
  FROM public.api_keys k
  JOIN public.tenant_users m ON m.tenant_id = k.tenant_id AND m.user_id = k.created_by
  CROSS JOIN unnest(enum_range(NULL::public.tenant_role)) r
  WHERE k.id = kid AND k.revoked_at IS NULL AND r <= m.role
    AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = k.tenant_id AND t.deleted_at IS NOT NULL)
    AND tenantkit.scopes_allow(k.scopes, perm) AND tenantkit.allows(m.role, m.permissions, perm);
  RETURN result;
END $$;

-- The creator of the caller's key while the key is not revoked: whom rows the key creates belong to
-- (projects.owner_id).
CREATE FUNCTION tenantkit.api_key_creator() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT k.created_by FROM public.api_keys k WHERE k.id = tenantkit.current_api_key() AND k.revoked_at IS NULL
    AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = k.tenant_id AND t.deleted_at IS NOT NULL)
$$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.api_key_tenants(text) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.api_key_roles(text) OWNER TO tenantkit_system;
ALTER FUNCTION tenantkit.api_key_creator() OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.api_key_tenants(text), tenantkit.api_key_roles(text), tenantkit.api_key_creator() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.current_api_key(), tenantkit.scopes_allow(jsonb, text) TO tenantkit_app, tenantkit_system;
GRANT EXECUTE ON FUNCTION tenantkit.api_key_tenants(text), tenantkit.api_key_roles(text), tenantkit.api_key_creator() TO tenantkit_app;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON api_keys TO tenantkit_system USING (true) WITH CHECK (true);
-- Members holding api_keys:manage list, create (as themselves) and revoke the tenant's keys.
CREATE POLICY app_select ON api_keys FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('api_keys:manage')), tenant_id) IS NOT NULL);
CREATE POLICY app_insert ON api_keys FOR INSERT TO tenantkit_app
  WITH CHECK (array_position((SELECT tenantkit.member_tenants('api_keys:manage')), tenant_id) IS NOT NULL
    AND created_by = (SELECT tenantkit.current_user_id()));
CREATE POLICY app_update ON api_keys FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('api_keys:manage')), tenant_id) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.member_tenants('api_keys:manage')), tenant_id) IS NOT NULL);
CREATE POLICY api_select ON api_keys FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('api_keys:manage')), tenant_id) IS NOT NULL);
-- The digest is never readable by tenantkit_app; a revocation changes two columns only.
GRANT SELECT (id, tenant_id, name, prefix, scopes, created_by, created_at, expires_at, revoked_at, revoked_by, last_used_at),
  INSERT (tenant_id, name, prefix, key_hash, scopes, created_by, expires_at),
  UPDATE (revoked_at, revoked_by) ON api_keys TO tenantkit_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO tenantkit_system;

-- API-client sessions on the tenant tables: the members' policies of 00003 and 00006 with the key's
-- grants in place of the membership's. Named api_* so that they sort before app_*: PostgreSQL ORs a
-- table's permissive policies in reverse order of their names, so a member's statement tests the
-- members' policy first and, for the rows it may see, never runs the key's helper (an InitPlan
-- left unexecuted; internal/postgres/apikey_test.go TestAPIKeyPoliciesCostMembersNothing).
CREATE POLICY api_select ON tenants FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants()), id) IS NOT NULL);
CREATE POLICY api_update ON tenants FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('settings:write')), id) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.api_key_tenants('settings:write')), id) IS NOT NULL);

CREATE POLICY api_select ON tenant_users FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants()), tenant_id) IS NOT NULL);
CREATE POLICY api_delete ON tenant_users FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_roles('users:write')), tenant_id::text || '/' || role::text) IS NOT NULL);

CREATE POLICY api_select ON tenant_invitations FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('users:invite')), tenant_id) IS NOT NULL);
CREATE POLICY api_delete ON tenant_invitations FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_roles('users:invite')), tenant_id::text || '/' || role::text) IS NOT NULL);

CREATE POLICY api_select ON projects FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('projects:read')), tenant_id) IS NOT NULL);
CREATE POLICY api_insert ON projects FOR INSERT TO tenantkit_app
  WITH CHECK (array_position((SELECT tenantkit.api_key_tenants('projects:write')), tenant_id) IS NOT NULL
    AND owner_id = (SELECT tenantkit.api_key_creator()));
CREATE POLICY api_update ON projects FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('projects:write')), tenant_id) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.api_key_tenants('projects:write')), tenant_id) IS NOT NULL);
CREATE POLICY api_delete ON projects FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('projects:write')), tenant_id) IS NOT NULL);

CREATE POLICY api_select ON tenant_subscriptions FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants()), tenant_id) IS NOT NULL);
CREATE POLICY api_select ON billing_usage FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants()), tenant_id) IS NOT NULL);
CREATE POLICY api_select ON audit_log FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('settings:read')), tenant_id) IS NOT NULL);

-- +goose StatementBegin
-- Audit entries are written for the caller: a member, or the creator of the caller's API key (with
-- the key's id in the details, so the log tells a person's change from their key's).
CREATE OR REPLACE FUNCTION tenantkit.audit(tenant uuid, action text, subject text, details jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO public.audit_log (tenant_id, actor_id, action, subject, details)
  SELECT tenant, u.id, action, subject,
         coalesce(details, '{}') || CASE WHEN k.id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('api_key_id', k.id) END
  FROM public.tenants t
  LEFT JOIN public.api_keys k ON k.id = tenantkit.current_api_key() AND k.tenant_id = t.id
  LEFT JOIN auth.users u ON u.id = coalesce(tenantkit.current_user_id(), k.created_by)
  WHERE t.id = tenant
$$;

CREATE FUNCTION tenantkit.audit_api_key() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM tenantkit.audit(NEW.tenant_id, 'api_key.created', NEW.prefix,
      jsonb_build_object('key_id', NEW.id, 'name', NEW.name, 'scopes', NEW.scopes, 'expires_at', NEW.expires_at));
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM tenantkit.audit(OLD.tenant_id, 'api_key.deleted', OLD.prefix, jsonb_build_object('key_id', OLD.id, 'name', OLD.name));
  ELSIF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
    PERFORM tenantkit.audit(NEW.tenant_id, 'api_key.revoked', NEW.prefix, jsonb_build_object('key_id', NEW.id, 'name', NEW.name));
  ELSIF (OLD.name, OLD.scopes, OLD.expires_at, OLD.revoked_at, OLD.created_by, OLD.key_hash, OLD.tenant_id)
        IS DISTINCT FROM (NEW.name, NEW.scopes, NEW.expires_at, NEW.revoked_at, NEW.created_by, NEW.key_hash, NEW.tenant_id) THEN
    -- not done by tenantkit (a key's scopes never change): plain SQL or an operator
    PERFORM tenantkit.audit(NEW.tenant_id, 'api_key.updated', NEW.prefix, jsonb_build_object('key_id', NEW.id,
      'name', NEW.name, 'scopes', NEW.scopes, 'expires_at', NEW.expires_at, 'revoked_at', NEW.revoked_at));
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.audit_api_key() OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.audit_api_key() FROM PUBLIC;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON api_keys FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_api_key();


-- ---- Verified domains (README "Verified domains", docs/domains.md) ----
--
-- A tenant claims a domain, publishes a TXT record, and tenantkit verifies it; a verified domain
-- belongs to one tenant at most (a unique index on the verified rows). A user whose verified email
-- is on a verified domain joins that tenant (policy auto_join, with the domain's default role) or
-- is offered it (policy suggest: tenantkit.domain_offers, accepted by the user). Joining obeys the
-- plan's member limit (the plan_limit trigger on tenant_users). Removing a domain deletes its
-- offers and changes no membership.
CREATE TABLE tenant_domains (
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  -- lower-case ASCII host name (internationalised names in their xn-- form), two labels at least
  domain      text NOT NULL CHECK (length(domain) <= 253
                AND domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'),
  -- the value of the TXT record _tenantkit-challenge.<domain>; public by design
  token       text NOT NULL CHECK (token ~ '^tenantkit-verification=[a-z2-7]{32}$'),
  policy      text NOT NULL DEFAULT 'suggest' CHECK (policy IN ('auto_join', 'suggest')),
  default_role tenant_role NOT NULL DEFAULT 'member' CHECK (default_role <> 'owner'),
  verified_at timestamptz,
  created_by  uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, domain)
);
-- a verified domain belongs to one tenant at most
CREATE UNIQUE INDEX tenant_domains_verified_key ON tenant_domains (domain) WHERE verified_at IS NOT NULL;
CREATE INDEX tenant_domains_id_idx ON tenant_domains (id);
CREATE INDEX tenant_domains_created_by_idx ON tenant_domains (created_by);
COMMENT ON TABLE tenant_domains IS 'Email domains claimed by tenants; verified through a DNS TXT record';

ALTER TABLE tenant_domains ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_domains FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenant_domains TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY app_select ON tenant_domains FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('settings:read')), tenant_id) IS NOT NULL);
CREATE POLICY app_insert ON tenant_domains FOR INSERT TO tenantkit_app
  WITH CHECK (array_position((SELECT tenantkit.member_tenants('settings:write')), tenant_id) IS NOT NULL
    AND created_by = (SELECT tenantkit.current_user_id()));
CREATE POLICY app_update ON tenant_domains FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('settings:write')), tenant_id) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.member_tenants('settings:write')), tenant_id) IS NOT NULL);
CREATE POLICY app_delete ON tenant_domains FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.member_tenants('settings:write')), tenant_id) IS NOT NULL);
GRANT SELECT, INSERT, DELETE ON tenant_domains TO tenantkit_app;
GRANT UPDATE (policy, default_role, verified_at) ON tenant_domains TO tenantkit_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_domains TO tenantkit_system;

-- Tenants offered to a user because of a verified domain with policy suggest (or auto_join that
-- the plan's member limit kept the user out of). The user sees their own offers and accepts one
-- through the service.
CREATE TABLE tenantkit.domain_offers (
  tenant_id  uuid NOT NULL,
  user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  domain_id  uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id),
  FOREIGN KEY (tenant_id, domain_id) REFERENCES tenant_domains (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX domain_offers_user_id_idx ON tenantkit.domain_offers (user_id);
CREATE INDEX domain_offers_domain_idx ON tenantkit.domain_offers (tenant_id, domain_id);
ALTER TABLE tenantkit.domain_offers ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.domain_offers FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.domain_offers TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.domain_offers TO tenantkit_system;

-- +goose StatementBegin
CREATE FUNCTION tenantkit.audit_domain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM tenantkit.audit(NEW.tenant_id, 'domain.added', NEW.domain,
      jsonb_build_object('domain_id', NEW.id, 'policy', NEW.policy, 'default_role', NEW.default_role));
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM tenantkit.audit(OLD.tenant_id, 'domain.removed', OLD.domain, jsonb_build_object('domain_id', OLD.id));
  ELSIF OLD.verified_at IS NULL AND NEW.verified_at IS NOT NULL THEN
    PERFORM tenantkit.audit(NEW.tenant_id, 'domain.verified', NEW.domain, jsonb_build_object('domain_id', NEW.id));
  ELSIF (OLD.policy, OLD.default_role, OLD.domain, OLD.token, OLD.verified_at, OLD.tenant_id)
        IS DISTINCT FROM (NEW.policy, NEW.default_role, NEW.domain, NEW.token, NEW.verified_at, NEW.tenant_id) THEN
    PERFORM tenantkit.audit(NEW.tenant_id, 'domain.updated', NEW.domain, jsonb_build_object('domain_id', NEW.id,
      'policy', NEW.policy, 'default_role', NEW.default_role, 'verified', NEW.verified_at IS NOT NULL));
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.audit_domain() OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.audit_domain() FROM PUBLIC;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON tenant_domains FOR EACH ROW EXECUTE FUNCTION tenantkit.audit_domain();

-- +goose Down
DROP TABLE tenantkit.domain_offers;
DROP TRIGGER audit ON tenant_domains;
DROP TABLE tenant_domains;
DROP FUNCTION tenantkit.audit_domain();
DROP TRIGGER audit ON api_keys;
DROP FUNCTION tenantkit.audit_api_key();
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.audit(tenant uuid, action text, subject text, details jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO public.audit_log (tenant_id, actor_id, action, subject, details)
  SELECT tenant, u.id, action, subject, coalesce(details, '{}')
  FROM public.tenants t
  LEFT JOIN auth.users u ON u.id = tenantkit.current_user_id()
  WHERE t.id = tenant
$$;
-- +goose StatementEnd
DROP POLICY api_select ON audit_log;
DROP POLICY api_select ON billing_usage;
DROP POLICY api_select ON tenant_subscriptions;
DROP POLICY api_delete ON projects;
DROP POLICY api_update ON projects;
DROP POLICY api_insert ON projects;
DROP POLICY api_select ON projects;
DROP POLICY api_delete ON tenant_invitations;
DROP POLICY api_select ON tenant_invitations;
DROP POLICY api_delete ON tenant_users;
DROP POLICY api_select ON tenant_users;
DROP POLICY api_update ON tenants;
DROP POLICY api_select ON tenants;
DROP TABLE api_keys;
DROP FUNCTION tenantkit.api_key_creator(), tenantkit.api_key_roles(text), tenantkit.api_key_tenants(text),
  tenantkit.scopes_allow(jsonb, text), tenantkit.current_api_key();
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.role_grants(r tenant_role) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE r
    WHEN 'owner'  THEN ARRAY['*']
    WHEN 'admin'  THEN ARRAY['users:*', 'projects:*', 'settings:read', 'settings:write', 'billing:*']
    WHEN 'member' THEN ARRAY['projects:read', 'projects:write']
    WHEN 'guest'  THEN ARRAY['projects:read']
  END;
-- +goose StatementEnd
