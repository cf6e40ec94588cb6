-- Billing emails (payment failed, trial ending) are written in the transaction that applies the
-- Stripe event and sent afterwards by the service's outbox sender: durable, sent at least once, and
-- recognisable downstream by their Message-ID (the outbox id). System only.

-- +goose Up
CREATE TABLE tenantkit.email_outbox (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id  uuid REFERENCES tenants (id) ON DELETE CASCADE,
  to_email   text NOT NULL,
  subject    text NOT NULL,
  body       text NOT NULL,
  attempts   int NOT NULL DEFAULT 0,
  next_at    timestamptz NOT NULL DEFAULT now(),
  sent_at    timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_outbox_pending_idx ON tenantkit.email_outbox (next_at) WHERE sent_at IS NULL;
CREATE INDEX email_outbox_tenant_id_idx ON tenantkit.email_outbox (tenant_id);
ALTER TABLE tenantkit.email_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenantkit.email_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON tenantkit.email_outbox TO tenantkit_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantkit.email_outbox TO tenantkit_system;

-- +goose Down
DROP TABLE tenantkit.email_outbox;
