-- Usage gauges: a gauge metric (storage) keeps its latest observation per period instead of a sum,
-- so billing_usage remembers when the value was observed and an older report never overwrites a
-- newer one.

-- +goose Up
ALTER TABLE billing_usage ADD COLUMN observed_at timestamptz;
COMMENT ON COLUMN billing_usage.observed_at IS 'gauges only: when the stored value was observed';

-- +goose Down
ALTER TABLE billing_usage DROP COLUMN observed_at;
