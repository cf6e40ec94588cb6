-- Roles, the private schema and the one function that reads the caller from Hasura's session.
--
-- tenantkit_app     NOLOGIN, NOBYPASSRLS, owns nothing. Every user-scoped transaction of the service
--                   runs as this role (SET LOCAL ROLE) with hasura.user set; the policies TO
--                   tenantkit_app are the tenant wall.
-- tenantkit_system  NOLOGIN, NOBYPASSRLS. The explicit cross-tenant path (webhooks, event triggers,
--                   metrics, tenant creation, invitation acceptance). It sees rows only through the
--                   policies named system_all, so every table it can touch is listed in the schema.
--                   It owns the SECURITY DEFINER helpers, which is what keeps policies free of cycles.
-- Roles are cluster-wide: they are created when missing and kept on `down` while other databases of
-- the cluster still hold privileges for them.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['tenantkit_app', 'tenantkit_system'] LOOP
    BEGIN
      EXECUTE format('CREATE ROLE %I NOLOGIN NOBYPASSRLS NOINHERIT', r);
    EXCEPTION WHEN duplicate_object THEN
      NULL; -- created by another database of this cluster, or concurrently
    END;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r AND (rolbypassrls OR rolsuper OR rolcanlogin)) THEN
      EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS', r);
    END IF;
    -- The migration role must be able to SET ROLE to them (and to own functions as tenantkit_system).
    IF NOT pg_has_role(current_user, r, 'MEMBER') THEN
      EXECUTE format('GRANT %I TO %I', r, current_user);
    END IF;
  END LOOP;
END $$;
-- +goose StatementEnd

CREATE SCHEMA tenantkit;
COMMENT ON SCHEMA tenantkit IS 'tenantkit internals: helper functions and system-only tables. Not for Hasura to track.';
GRANT USAGE ON SCHEMA tenantkit TO tenantkit_app, tenantkit_system;
GRANT USAGE ON SCHEMA public TO tenantkit_app, tenantkit_system;

-- The caller, read from the setting Hasura uses (hasura.user: a JSON object of the session
-- variables, e.g. {"x-hasura-role":"user","x-hasura-user-id":"…"}). Unset, empty, malformed, a
-- non-object, a missing, repeated or non-UUID user id: all mean "nobody" (NULL), never an error.
-- Policies call it inside a scalar sub-select so it runs once per statement, not once per row.
--
-- It is on every statement's path, so it avoids what costs: a flat object of string values with
-- simple escapes (what Hasura and tenantkit write) cannot fail to parse and takes no subtransaction;
-- anything else is parsed inside an EXCEPTION block. PARALLEL UNSAFE because that block starts a
-- subtransaction, which PostgreSQL refuses inside a parallel operation.
-- +goose StatementBegin
-- No SET clause (it costs a configuration save and restore per call): the function is SECURITY
-- INVOKER, so it gains no privilege a caller could abuse, and it uses only pg_catalog names, which
-- PostgreSQL resolves first whatever the search_path.
CREATE FUNCTION tenantkit.current_user_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
AS $$
DECLARE
  raw text := current_setting('hasura.user', true);
  claims jsonb;
  ids jsonb;
  id text;
BEGIN
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
GRANT EXECUTE ON FUNCTION tenantkit.current_user_id() TO tenantkit_app, tenantkit_system;

-- +goose Down
DROP SCHEMA tenantkit CASCADE;
-- +goose StatementBegin
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['tenantkit_app', 'tenantkit_system'] LOOP
    EXECUTE format('REVOKE ALL ON SCHEMA public FROM %I', r);
    BEGIN
      EXECUTE format('DROP ROLE IF EXISTS %I', r);
    EXCEPTION WHEN dependent_objects_still_exist THEN
      NULL; -- still used by another database of this cluster
    WHEN internal_error THEN
      -- "cache lookup failed for database": while listing the role's uses in other databases,
      -- one of them was dropped concurrently. The role is still shared: keep it, as above.
      NULL;
    END;
  END LOOP;
END $$;
-- +goose StatementEnd
