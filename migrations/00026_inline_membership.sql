-- Membership read inline: the policies look up the caller's tenants as plain SQL in the statement
-- instead of calling the PL/pgSQL helper tenantkit.member_tenants (bench/README.md, "What limits
-- the targets"). A CPU profile of the list query per statement showed what a call cost: the
-- SECURITY DEFINER switch with its two SET clauses, the PL/pgSQL set-up, a nested PL/pgSQL call of
-- current_user_id(), and the executor set-up and run of the helper's own query through SPI.
--
-- * tenantkit.current_user_id() becomes an SQL expression PostgreSQL inlines into the statement:
--   the fast path of 00023 (a plain session string, a canonical UUID) as a CASE, and anything else
--   through tenantkit.session_user_id(raw), the unchanged general path (PL/pgSQL, with its
--   EXCEPTION block). The answers are those of 00023 (internal/postgres/caller_test.go).
-- * tenantkit.caller_memberships is the one home of "the caller's memberships": the caller's rows
--   of tenant_users whose tenant is not deleted. A view owned by tenantkit_system, which reads
--   tenant_users and tenants through their system_all policies (so no policy refers back to
--   itself), with security_barrier, so that no function of an outer query sees rows before its
--   filter. tenantkit_app may select it: it shows only the caller's own memberships.
-- * Every policy that called (SELECT tenantkit.member_tenants(perm)) now reads
--   ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role,
--   c.permissions, perm)): still one InitPlan per statement, now one index-only scan of the index
--   below, which covers the role and the custom grants.
-- * member_tenants(perm) stays, for the PL/pgSQL functions that call it, as that same sub-select.
--
-- Measured (2-core machine, 2026-12-06, bench at 1,000 tenants, four interleaved pairs of runs):
-- the request ratio's median went from 1.27 to 1.21 and the statement ratio's from 1.59 to 1.41.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION tenantkit.session_user_id(raw text) RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
AS $$
DECLARE
  claims jsonb;
  ids jsonb;
  id text;
BEGIN
  -- The general path of 00023, unchanged.
  IF raw IS NULL OR btrim(raw) = '' THEN
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
  ids := jsonb_path_query_array(claims, '$.keyvalue() ? (@.key like_regex "^x-hasura-user-id$" flag "i").value');
  IF jsonb_array_length(ids) <> 1 THEN
    RETURN NULL;
  END IF;
  id := ids ->> 0;
  IF id ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
    RETURN id::uuid;
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
GRANT EXECUTE ON FUNCTION tenantkit.session_user_id(text) TO tenantkit_app, tenantkit_system;

-- An SQL-standard body without SET, SECURITY DEFINER or volatile calls: PostgreSQL inlines it.
CREATE OR REPLACE FUNCTION tenantkit.current_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL UNSAFE
RETURN CASE WHEN tenantkit.plain_session(current_setting('hasura.user', true))
             AND tenantkit.canonical_uuid(current_setting('hasura.user', true)::jsonb ->> 'x-hasura-user-id')
        THEN (current_setting('hasura.user', true)::jsonb ->> 'x-hasura-user-id')::uuid
        ELSE tenantkit.session_user_id(current_setting('hasura.user', true)) END;

-- The caller's memberships in one index: role and custom grants included (an index-only scan).
CREATE INDEX tenant_users_user_id_cover_idx ON tenant_users (user_id, tenant_id) INCLUDE (role, permissions);
DROP INDEX tenant_users_user_id_idx;
ALTER INDEX tenant_users_user_id_cover_idx RENAME TO tenant_users_user_id_idx;

CREATE VIEW tenantkit.caller_memberships WITH (security_barrier) AS
  SELECT m.tenant_id, m.role, m.permissions
  FROM public.tenant_users m
  WHERE m.user_id = tenantkit.current_user_id()
    -- A deleted tenant is nobody's (00015): tenants_deleted_idx holds only deleted tenants.
    AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL);
ALTER VIEW tenantkit.caller_memberships OWNER TO tenantkit_system;
COMMENT ON VIEW tenantkit.caller_memberships IS 'The caller''s memberships (hasura.user) in tenants not deleted: what every tenant policy reads';
GRANT SELECT ON tenantkit.caller_memberships TO tenantkit_app;

CREATE OR REPLACE FUNCTION tenantkit.member_tenants(perm text DEFAULT NULL) RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL UNSAFE
RETURN ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, perm));

-- +goose StatementBegin
DO $$
DECLARE
  p record;
  q text;
  w text;
BEGIN
  FOR p IN
    SELECT pol.polname, pol.polrelid::regclass AS rel, pg_get_expr(pol.polqual, pol.polrelid) AS qual,
           pg_get_expr(pol.polwithcheck, pol.polrelid) AS with_check
    FROM pg_policy pol
    WHERE concat(pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)) LIKE '%tenantkit.member_tenants(%'
  LOOP
    q := regexp_replace(regexp_replace(p.qual,
      '\( SELECT tenantkit\.member_tenants\((''[a-z_]+:[a-z_*]+''::text)\) AS member_tenants\)',
      'ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, \1))', 'g'),
      '\( SELECT tenantkit\.member_tenants\(\) AS member_tenants\)',
      'ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c)', 'g');
    w := regexp_replace(regexp_replace(p.with_check,
      '\( SELECT tenantkit\.member_tenants\((''[a-z_]+:[a-z_*]+''::text)\) AS member_tenants\)',
      'ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, \1))', 'g'),
      '\( SELECT tenantkit\.member_tenants\(\) AS member_tenants\)',
      'ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c)', 'g');
    IF concat(q, w) LIKE '%member_tenants%' THEN
      RAISE EXCEPTION 'policy % on %: a member_tenants call of an unexpected form: % / %', p.polname, p.rel, q, w;
    END IF;
    IF q IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s USING (%s)', p.polname, p.rel, q);
    END IF;
    IF w IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s WITH CHECK (%s)', p.polname, p.rel, w);
    END IF;
  END LOOP;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
  p record;
  q text;
  w text;
BEGIN
  FOR p IN
    SELECT pol.polname, pol.polrelid::regclass AS rel, pg_get_expr(pol.polqual, pol.polrelid) AS qual,
           pg_get_expr(pol.polwithcheck, pol.polrelid) AS with_check
    FROM pg_policy pol
    WHERE concat(pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)) LIKE '%caller_memberships%'
  LOOP
    q := regexp_replace(regexp_replace(p.qual,
      'ARRAY\( SELECT c\.tenant_id\s+FROM tenantkit\.caller_memberships c\s+WHERE tenantkit\.allows\(c\.role, c\.permissions, (''[a-z_]+:[a-z_*]+''::text)\)\)',
      '(SELECT tenantkit.member_tenants(\1))', 'g'),
      'ARRAY\( SELECT c\.tenant_id\s+FROM tenantkit\.caller_memberships c\)', '(SELECT tenantkit.member_tenants())', 'g');
    w := regexp_replace(regexp_replace(p.with_check,
      'ARRAY\( SELECT c\.tenant_id\s+FROM tenantkit\.caller_memberships c\s+WHERE tenantkit\.allows\(c\.role, c\.permissions, (''[a-z_]+:[a-z_*]+''::text)\)\)',
      '(SELECT tenantkit.member_tenants(\1))', 'g'),
      'ARRAY\( SELECT c\.tenant_id\s+FROM tenantkit\.caller_memberships c\)', '(SELECT tenantkit.member_tenants())', 'g');
    IF concat(q, w) LIKE '%caller_memberships%' THEN
      RAISE EXCEPTION 'policy % on %: a caller_memberships read of an unexpected form: % / %', p.polname, p.rel, q, w;
    END IF;
    IF q IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s USING (%s)', p.polname, p.rel, q);
    END IF;
    IF w IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s WITH CHECK (%s)', p.polname, p.rel, w);
    END IF;
  END LOOP;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.member_tenants(perm text DEFAULT NULL) RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  uid uuid := tenantkit.current_user_id();
  result uuid[];
BEGIN
  IF uid IS NULL THEN
    RETURN '{}';
  END IF;
  IF perm IS NULL THEN
    SELECT coalesce(array_agg(m.tenant_id), '{}') INTO result
    FROM public.tenant_users m
    WHERE m.user_id = uid
      AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL);
  ELSE
    SELECT coalesce(array_agg(m.tenant_id), '{}') INTO result
    FROM public.tenant_users m
    WHERE m.user_id = uid
      AND tenantkit.allows(m.role, m.permissions, perm)
      AND NOT EXISTS (SELECT FROM public.tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL);
  END IF;
  RETURN result;
END $$;
-- +goose StatementEnd
DROP VIEW tenantkit.caller_memberships;
CREATE INDEX tenant_users_user_id_plain_idx ON tenant_users (user_id, tenant_id);
DROP INDEX tenant_users_user_id_idx;
ALTER INDEX tenant_users_user_id_plain_idx RENAME TO tenant_users_user_id_idx;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.current_user_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
AS $$
DECLARE
  raw text := current_setting('hasura.user', true);
  claims jsonb;
  ids jsonb;
  id text;
BEGIN
  -- Fast path (see the head of this file): the same answer, half the work, few statements (each
  -- PL/pgSQL expression is set up again in every transaction).
  IF tenantkit.plain_session(raw) THEN
    id := raw::jsonb ->> 'x-hasura-user-id';
    IF tenantkit.canonical_uuid(id) THEN
      RETURN id::uuid;
    ELSIF id IS NULL THEN
      RETURN NULL;
    END IF;
  END IF;
  -- General path, as in 00001.
  IF raw IS NULL OR btrim(raw) = '' THEN
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
  ids := jsonb_path_query_array(claims, '$.keyvalue() ? (@.key like_regex "^x-hasura-user-id$" flag "i").value');
  IF jsonb_array_length(ids) <> 1 THEN
    RETURN NULL;
  END IF;
  id := ids ->> 0;
  IF id ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
    RETURN id::uuid;
  END IF;
  RETURN NULL;
END $$;
-- +goose StatementEnd
DROP FUNCTION tenantkit.session_user_id(text);
