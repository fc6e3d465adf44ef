-- Aggregated audit entries: one row stands for count attempts (refused
-- logins from one source with one reason within a minute), found again by
-- its aggregation key while the minute lasts.
-- +goose Up
ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit ADD COLUMN agg_key TEXT;
CREATE UNIQUE INDEX audit_agg_key ON audit(agg_key) WHERE agg_key IS NOT NULL;

-- +goose Down
DROP INDEX audit_agg_key;
ALTER TABLE audit DROP COLUMN agg_key;
ALTER TABLE audit DROP COLUMN count;
