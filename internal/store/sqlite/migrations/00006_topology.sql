-- +goose Up
ALTER TABLE devices ADD COLUMN gateway TEXT NOT NULL DEFAULT '';
CREATE INDEX devices_gateway ON devices(gateway) WHERE gateway <> '';

-- +goose Down
DROP INDEX devices_gateway;
ALTER TABLE devices DROP COLUMN gateway;
