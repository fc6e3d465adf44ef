-- +goose Up
-- Sub-devices gateways reported they discovered (thing.list.found) and no
-- operator accepted yet (registry.FoundDevice), by gateway key
-- "{pk}/{dn}"; a deleted gateway's (or product's) rows go with it.
CREATE TABLE found_subdevices (
    gateway     TEXT NOT NULL,
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    found_at    INTEGER NOT NULL,
    PRIMARY KEY (gateway, product_key, device_name)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE found_subdevices;
