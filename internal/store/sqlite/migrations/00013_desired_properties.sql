-- +goose Up
-- Devices' desired property values (registry.DesiredValue): kept with a
-- version per property until deleted; delivered_version is the version the
-- device acknowledged in a property set.
CREATE TABLE device_desired (
    product_key       TEXT NOT NULL,
    device_name       TEXT NOT NULL,
    identifier        TEXT NOT NULL,
    value             TEXT NOT NULL,
    version           INTEGER NOT NULL,
    time              INTEGER NOT NULL,
    delivered_version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (product_key, device_name, identifier)
) WITHOUT ROWID;
-- Property values of devices deleted before this migration went with them.
DELETE FROM device_properties WHERE NOT EXISTS (
    SELECT 1 FROM devices d WHERE d.product_key = device_properties.product_key AND d.device_name = device_properties.device_name);

-- +goose Down
DROP TABLE device_desired;
