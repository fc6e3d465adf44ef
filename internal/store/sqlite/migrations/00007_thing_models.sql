-- +goose Up
ALTER TABLE products ADD COLUMN tsl TEXT NOT NULL DEFAULT '';
CREATE TABLE device_properties (
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    value       TEXT NOT NULL,
    time        INTEGER NOT NULL,
    PRIMARY KEY (product_key, device_name, identifier)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE device_properties;
ALTER TABLE products DROP COLUMN tsl;
