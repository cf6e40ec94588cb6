-- Invitation abuse limits and the one form of an invitation's address.
--
-- * Every invitation email (a new invitation or a resend) is recorded in tenantkit.invitation_sends
--   by tenantkit.record_invitation_send, which the service calls in the transaction that writes the
--   invitation. It takes a per-tenant advisory lock (held until commit) before it records and
--   reads, so concurrent sends of one tenant are counted one after another, and it returns the
--   latest sends; the service (internal/team, SendLimits) decides whether the send may go out and
--   rolls the transaction back when not. Counting happens here, not in a process: every replica
--   of the service sees the same counts.
-- * An invitation's email is stored as internal/team.NormalizeEmail leaves it: ASCII letters
--   lowered, nothing else folded (lower() would fold the Kelvin sign into "k" and, with most
--   collations, other letters too), no ASCII whitespace at either end.

-- +goose Up
CREATE TABLE tenantkit.invitation_sends (
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id            bigint GENERATED ALWAYS AS IDENTITY,
  -- no foreign key: a deleted invitation's sends still count
  invitation_id uuid NOT NULL,
  resend        boolean NOT NULL,
  sent_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX invitation_sends_tenant_sent_idx ON tenantkit.invitation_sends (tenant_id, sent_at DESC);
CREATE INDEX invitation_sends_invitation_sent_idx ON tenantkit.invitation_sends (tenant_id, invitation_id, sent_at DESC);
COMMENT ON TABLE tenantkit.invitation_sends IS 'Invitation emails sent per tenant and invitation, for the send limits (system only)';
ALTER TABLE tenantkit.invitation_sends ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.invitation_sends FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.invitation_sends TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.invitation_sends TO tenantkit_system;

-- Records one invitation email of the caller (who must hold users:invite in the tenant; otherwise
-- nothing is recorded or returned) and returns, newest first, the tenant's sends within
-- tenant_window (at most tenant_rows, kind 'tenant') and the invitation's resends within
-- invitation_window (at most invitation_rows, kind 'invitation'), the new one included. Sends older
-- than both windows are deleted on the way.
-- +goose StatementBegin
CREATE FUNCTION tenantkit.record_invitation_send(tenant uuid, invitation uuid, is_resend boolean,
  tenant_window interval, tenant_rows integer, invitation_window interval, invitation_rows integer)
RETURNS TABLE (kind text, sent timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT tenant = ANY (tenantkit.member_tenants('users:invite')) THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('tenantkit.invitation_sends'), hashtext(tenant::text));
  DELETE FROM tenantkit.invitation_sends s
  WHERE s.tenant_id = tenant AND s.sent_at < clock_timestamp() - greatest(tenant_window, invitation_window);
  INSERT INTO tenantkit.invitation_sends (tenant_id, invitation_id, resend) VALUES (tenant, invitation, is_resend);
  RETURN QUERY
    (SELECT 'tenant', s.sent_at FROM tenantkit.invitation_sends s
     WHERE s.tenant_id = tenant AND s.sent_at > clock_timestamp() - tenant_window
     ORDER BY s.sent_at DESC LIMIT tenant_rows)
    UNION ALL
    (SELECT 'invitation', s.sent_at FROM tenantkit.invitation_sends s
     WHERE s.tenant_id = tenant AND s.invitation_id = invitation AND s.resend
       AND s.sent_at > clock_timestamp() - invitation_window
     ORDER BY s.sent_at DESC LIMIT invitation_rows);
END $$;
-- +goose StatementEnd
ALTER FUNCTION tenantkit.record_invitation_send(uuid, uuid, boolean, interval, integer, interval, integer) OWNER TO tenantkit_system;
REVOKE ALL ON FUNCTION tenantkit.record_invitation_send(uuid, uuid, boolean, interval, integer, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantkit.record_invitation_send(uuid, uuid, boolean, interval, integer, interval, integer) TO tenantkit_app;

ALTER TABLE tenant_invitations DROP CONSTRAINT tenant_invitations_email_check;
ALTER TABLE tenant_invitations ADD CONSTRAINT tenant_invitations_email_check CHECK (
  email = translate(btrim(email, E' \t\r\n'), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
  AND email LIKE '_%@_%');

-- +goose Down
ALTER TABLE tenant_invitations DROP CONSTRAINT tenant_invitations_email_check;
ALTER TABLE tenant_invitations ADD CONSTRAINT tenant_invitations_email_check CHECK (email = lower(btrim(email)) AND email LIKE '_%@_%')
  NOT VALID; -- rows written under the rule above may hold letters lower() would fold
DROP FUNCTION tenantkit.record_invitation_send(uuid, uuid, boolean, interval, integer, interval, integer);
DROP TABLE tenantkit.invitation_sends;
