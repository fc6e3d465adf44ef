-- +goose Up
-- Registration randoms a device used recently: a signed registration
-- request is good once, so a captured one cannot be replayed (to read
-- back the DeviceSecret, or to rotate it and kick the device).
CREATE TABLE registration_randoms (
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    random      TEXT NOT NULL,
    used_at     INTEGER NOT NULL,
    PRIMARY KEY (product_key, device_name, random)
) WITHOUT ROWID;
CREATE INDEX registration_randoms_used_at ON registration_randoms(used_at);

-- +goose Down
DROP TABLE registration_randoms;
