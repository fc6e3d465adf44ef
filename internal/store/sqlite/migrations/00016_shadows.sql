-- +goose Up
-- Device shadows (internal/shadow): a device's classic shadow (name '')
-- and named ones, each a document and its version, or a tombstone
-- (deleted = 1, doc NULL) keeping the version a re-creation continues;
-- and the newest versions of each, for "what changed since N".
CREATE TABLE shadows (
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    name        TEXT NOT NULL,
    doc         BLOB,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (product_key, device_name, name)
) WITHOUT ROWID;
CREATE TABLE shadow_history (
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    doc         BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (product_key, device_name, name, version)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE shadow_history;
DROP TABLE shadows;
