-- The database of the compiler's tests: boolexp_test.go (the expressions of cases.yaml, which
-- describes the data) and rules_test.go (the rules of internal/hasuratest's fixture metadata).
CREATE SCHEMA other;
CREATE TABLE other."Banned Users" (user_id uuid PRIMARY KEY);
CREATE TABLE tenants (
  id text PRIMARY KEY,
  name text NOT NULL,
  plan text,
  settings jsonb,
  raw json
);
CREATE TABLE members (
  tenant_id text NOT NULL REFERENCES tenants (id),
  user_id uuid NOT NULL,
  role text,
  perms jsonb,
  PRIMARY KEY (tenant_id, user_id)
);
CREATE TABLE projects (
  tenant_id text NOT NULL REFERENCES tenants (id),
  id integer NOT NULL UNIQUE,
  owner_id uuid,
  data jsonb,
  score integer,
  tags text[],
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT projects_owner_fkey FOREIGN KEY (tenant_id, owner_id) REFERENCES members (tenant_id, user_id)
);
CREATE TABLE dup (
  t text,
  u text,
  CONSTRAINT dup_t1 FOREIGN KEY (t) REFERENCES tenants (id),
  CONSTRAINT dup_t2 FOREIGN KEY (t) REFERENCES tenants (id)
);
CREATE TABLE untracked (id text);
CREATE TYPE other."Level" AS ENUM ('low', 'high');
CREATE TABLE other.levels (l other."Level", ls other."Level"[], v varchar(20));

INSERT INTO tenants VALUES
  ('t1', 'Acme', 'pro', '{"sso": true, "tier": 2}', '{}'),
  ('t2', 'Beta', NULL, '{"beta": true}', NULL),
  ('t3', 'Gamma', 'free', NULL, NULL);
INSERT INTO members VALUES
  ('t1', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'owner', '["*"]'),
  ('t1', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'member', '["projects:read"]'),
  ('t2', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'admin', '["users:write"]'),
  ('t2', 'cccccccc-cccc-cccc-cccc-cccccccccccc', 'guest', NULL),
  ('t3', 'cccccccc-cccc-cccc-cccc-cccccccccccc', NULL, '[]');
INSERT INTO projects VALUES
  ('t1', 1, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '{"public": true, "k": 1}', 10, '{red,blue}'),
  ('t1', 2, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', '{"k": 2}', NULL, '{blue}'),
  ('t1', 3, NULL, NULL, 5, NULL),
  ('t2', 4, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', '{"public": false}', -1, '{}'),
  ('t2', 5, 'cccccccc-cccc-cccc-cccc-cccccccccccc', '{"x": null}', 0, '{red}'),
  ('t3', 6, 'cccccccc-cccc-cccc-cccc-cccccccccccc', '{}', 6, NULL),
  ('t3', 7, NULL, '{"public": true}', NULL, '{green}');
INSERT INTO other."Banned Users" VALUES ('cccccccc-cccc-cccc-cccc-cccccccccccc');
INSERT INTO other.levels VALUES ('low', '{low,high}', 'x'), ('high', '{high}', 'y'), (NULL, NULL, NULL);
