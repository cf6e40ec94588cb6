-- Two forms of the members' sub-select in every policy, the same answers, chosen by how statements
-- reach PostgreSQL (docs/pooling.md, "Policy forms"):
--
-- * inline (00026): ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE
--   tenantkit.allows(c.role, c.permissions, perm)) — planned with the statement. Cheapest when
--   statements are prepared (a direct connection): the plan is made once per connection.
-- * helper: (SELECT tenantkit.caller_tenants(perm)) — the same sub-select inside a PL/pgSQL
--   function, whose query PL/pgSQL plans once per session. Cheapest when every statement is
--   planned again (behind a transaction pooler, pgx's exec mode): planning the inline sub-select
--   cost ~0.3–0.5 ms per statement, the call ~15–20 µs at run time (bench/README.md).
--
-- tenantkit.set_policy_form(form) rewrites every policy from one form into the other, and only
-- between these two exact texts; `tenantkit migrate up` runs it with the form its DATABASE_POOLER
-- calls for. tenantkit.policy_form() says which form is installed ('mixed' should never be seen).
-- Both directions give back the very same policy expressions (internal/postgres/policyform_test.go).

-- +goose Up
-- +goose StatementBegin
-- Not SECURITY DEFINER and no SET clause (each would cost every call): it runs as the caller,
-- tenantkit_app, which may select tenantkit.caller_memberships; every name is schema-qualified.
-- The sub-select is written out rather than calling tenantkit.member_tenants (its SQL twin, for
-- the PL/pgSQL functions): PostgreSQL does not inline an SQL function whose body has a sub-select,
-- so the call would plan that body again in every transaction.
CREATE FUNCTION tenantkit.caller_tenants(perm text DEFAULT NULL) RETURNS uuid[]
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
AS $$
BEGIN
  RETURN ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, perm));
END $$;
-- +goose StatementEnd
COMMENT ON FUNCTION tenantkit.caller_tenants(text) IS 'The caller''s tenants that grant perm (all of them when NULL), planned once per session: the policies'' helper form';
REVOKE ALL ON FUNCTION tenantkit.caller_tenants(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.caller_tenants(text) TO tenantkit_app, tenantkit_system;

-- +goose StatementBegin
CREATE FUNCTION tenantkit.set_policy_form(form text) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- Each form's two texts (with a permission, and without: all of the caller's tenants) as
  -- pg_get_expr prints them, and as they are written; \1 is the permission.
  inline_perm constant text := 'ARRAY\( SELECT c\.tenant_id\s+FROM tenantkit\.caller_memberships c\s+WHERE tenantkit\.allows\(c\.role, c\.permissions, (''[a-z_]+:[a-z_*]+''::text)\)\)';
  inline_any constant text := 'ARRAY\( SELECT c\.tenant_id\s+FROM tenantkit\.caller_memberships c\)';
  helper_perm constant text := '\( SELECT tenantkit\.caller_tenants\((''[a-z_]+:[a-z_*]+''::text)\) AS caller_tenants\)';
  helper_any constant text := '\( SELECT tenantkit\.caller_tenants\(\) AS caller_tenants\)';
  from_perm text; to_perm text; from_any text; to_any text;
  other text; -- a text only the other form has
  p record;
  q text;
  w text;
  changed integer := 0;
BEGIN
  CASE form
  WHEN 'helper' THEN
    from_perm := inline_perm; to_perm := '(SELECT tenantkit.caller_tenants(\1))';
    from_any := inline_any; to_any := '(SELECT tenantkit.caller_tenants())';
    other := 'tenantkit.caller_memberships';
  WHEN 'inline' THEN
    from_perm := helper_perm; to_perm := 'ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, \1))';
    from_any := helper_any; to_any := 'ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c)';
    other := 'tenantkit.caller_tenants(';
  ELSE
    RAISE EXCEPTION 'policy form must be inline or helper, not %', coalesce(form, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END CASE;
  FOR p IN
    SELECT * FROM (
      SELECT pol.polname, pol.polrelid, pol.polrelid::regclass AS rel, pg_get_expr(pol.polqual, pol.polrelid) AS qual,
             pg_get_expr(pol.polwithcheck, pol.polrelid) AS with_check
      FROM pg_policy pol) x
    WHERE strpos(concat(x.qual, x.with_check), other) > 0
    ORDER BY x.polrelid, x.polname
  LOOP
    q := regexp_replace(regexp_replace(p.qual, from_perm, to_perm, 'g'), from_any, to_any, 'g');
    w := regexp_replace(regexp_replace(p.with_check, from_perm, to_perm, 'g'), from_any, to_any, 'g');
    IF strpos(concat(q, w), other) > 0 THEN
      RAISE EXCEPTION 'policy % on %: a members'' sub-select of an unexpected form: % / %', p.polname, p.rel, q, w;
    END IF;
    IF q IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s USING (%s)', p.polname, p.rel, q);
    END IF;
    IF w IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s WITH CHECK (%s)', p.polname, p.rel, w);
    END IF;
    changed := changed + 1;
  END LOOP;
  RETURN changed;
END $$;
-- +goose StatementEnd
COMMENT ON FUNCTION tenantkit.set_policy_form(text) IS 'Rewrites every policy''s members'' sub-select into the inline or the helper form; returns how many policies changed';
REVOKE ALL ON FUNCTION tenantkit.set_policy_form(text) FROM PUBLIC;

CREATE FUNCTION tenantkit.policy_form() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT CASE WHEN bool_or(e LIKE '%tenantkit.caller_memberships%') AND bool_or(e LIKE '%tenantkit.caller_tenants(%') THEN 'mixed'
                    WHEN bool_or(e LIKE '%tenantkit.caller_tenants(%') THEN 'helper'
                    ELSE 'inline' END
        FROM (SELECT concat(pg_get_expr(polqual, polrelid), ' ', pg_get_expr(polwithcheck, polrelid)) AS e FROM pg_policy) p);
COMMENT ON FUNCTION tenantkit.policy_form() IS 'The installed form of the policies'' members'' sub-select: inline, helper or mixed';
GRANT EXECUTE ON FUNCTION tenantkit.policy_form() TO tenantkit_system;

-- +goose Down
SELECT tenantkit.set_policy_form('inline');
DROP FUNCTION tenantkit.policy_form();
DROP FUNCTION tenantkit.set_policy_form(text);
DROP FUNCTION tenantkit.caller_tenants(text);
