-- The caller, read faster: tenantkit.current_user_id() and tenantkit.current_api_key() get a fast
-- path for the session JSON that Hasura and tenantkit write, with the same answers (bench/README.md,
-- "What limits the targets").
--
-- Every statement on a tenant table runs current_user_id() at least once (inside member_tenants and
-- manageable_roles, or directly), and it was half the cost of the membership helpers: in EXPLAIN
-- (ANALYZE) of a prepared statement, 10 µs of member_tenants' 22 µs, because it validates the whole
-- claim with a regular expression that accepts every escape and any whitespace, and then finds the
-- user id with a case-insensitive JSON path query and a case-insensitive UUID pattern;
-- current_api_key() (API-client sessions) does the same three times, 14 µs.
--
-- The fast path takes the common shape (tenantkit.plain_session): a flat object without whitespace
-- whose keys are lowercase `[a-z0-9_-]` and whose values are printable ASCII without `"` or `\` —
-- what Hasura (Aeson) and tenantkit (encoding/json) write for a session. Such a string always
-- parses, its only key equal to a given lowercase name in any letter case is that name itself (keys
-- are lowercase, and jsonb keeps one value per key), and a canonical lowercase UUID
-- (tenantkit.canonical_uuid) is one the general path accepts: so the fast path returns what the
-- general path would. Anything else (whitespace, escapes, other letter cases, a UUID in another
-- spelling) falls through to the general path, unchanged. In a warm transaction
-- current_user_id() takes 6 µs instead of 10, member_tenants 19 µs instead of 22-23 and
-- current_api_key() 6 µs instead of 14; as the first statement of a transaction,
-- current_user_id() 9 µs instead of ~20 and member_tenants 30 µs instead of 35.
--
-- Policies, member_tenants, manageable_roles and the API-key helpers do not change: they keep
-- calling these functions (the policies through helpers in a scalar sub-select, once per
-- statement). internal/postgres/caller_test.go compares both functions with their general paths.

-- +goose Up
-- Both are SQL expressions that PostgreSQL inlines into the PL/pgSQL that uses them: no call.
CREATE FUNCTION tenantkit.plain_session(raw text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN raw ~ '^\{("[a-z0-9_-]+":"[ !#-\[\]-~]*"(,"[a-z0-9_-]+":"[ !#-\[\]-~]*")*)?\}$';
CREATE FUNCTION tenantkit.canonical_uuid(s text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN translate(s, '123456789abcdef', '000000000000000') = '00000000-0000-0000-0000-000000000000';
GRANT EXECUTE ON FUNCTION tenantkit.plain_session(text), tenantkit.canonical_uuid(text) TO tenantkit_app, tenantkit_system;

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

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.current_api_key() RETURNS uuid
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
  -- Fast path, as in current_user_id.
  IF tenantkit.plain_session(raw) THEN
    claims := raw::jsonb;
    IF claims ->> 'x-hasura-role' IS DISTINCT FROM 'api_client' OR claims ? 'x-hasura-user-id' THEN
      RETURN NULL;
    END IF;
    id := claims ->> 'x-hasura-api-key-id';
    IF tenantkit.canonical_uuid(id) THEN
      RETURN id::uuid;
    ELSIF id IS NULL THEN
      RETURN NULL;
    END IF;
  END IF;
  -- General path, as in 00018.
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
-- +goose StatementEnd

-- +goose Down
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantkit.current_api_key() RETURNS uuid
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
-- +goose StatementEnd
DROP FUNCTION tenantkit.plain_session(text), tenantkit.canonical_uuid(text);
