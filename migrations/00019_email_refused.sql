-- An email the mail server refused for good (a 5xx reply to the recipient or to the message, see
-- internal/mail) is not retried: the outbox sender marks it refused, with the server's reply.

-- +goose Up
ALTER TABLE tenantkit.email_outbox ADD COLUMN refused_at timestamptz, ADD COLUMN last_error text;
DROP INDEX tenantkit.email_outbox_pending_idx;
CREATE INDEX email_outbox_pending_idx ON tenantkit.email_outbox (next_at)
  WHERE sent_at IS NULL AND refused_at IS NULL;

-- +goose Down
DROP INDEX tenantkit.email_outbox_pending_idx;
CREATE INDEX email_outbox_pending_idx ON tenantkit.email_outbox (next_at) WHERE sent_at IS NULL;
ALTER TABLE tenantkit.email_outbox DROP COLUMN refused_at, DROP COLUMN last_error;
