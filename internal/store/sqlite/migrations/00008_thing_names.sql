-- +goose Up
-- A device's explicit thing name; NULL means the default {productKey}.{deviceName}.
ALTER TABLE devices ADD COLUMN thing_name TEXT;
CREATE UNIQUE INDEX devices_thing_name ON devices(thing_name) WHERE thing_name IS NOT NULL;

-- +goose Down
DROP INDEX devices_thing_name;
ALTER TABLE devices DROP COLUMN thing_name;
