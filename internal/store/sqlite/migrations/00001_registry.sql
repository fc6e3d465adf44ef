-- +goose Up
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE products (
    product_key TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    node_type   TEXT NOT NULL,
    auth_type   TEXT NOT NULL,
    dyn_reg     TEXT NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}',
    secret      BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX products_account ON products(account_id, product_key);

CREATE TABLE devices (
    product_key   TEXT NOT NULL REFERENCES products(product_key) ON DELETE CASCADE,
    device_name   TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    iot_id        TEXT NOT NULL UNIQUE,
    secret        BLOB NOT NULL,
    nickname      TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    attributes    TEXT NOT NULL DEFAULT '{}',
    secret_issued INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    first_online  INTEGER,
    last_online   INTEGER,
    PRIMARY KEY (product_key, device_name)
) WITHOUT ROWID;
CREATE INDEX devices_status ON devices(product_key, status, device_name);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    system_admin INTEGER NOT NULL DEFAULT 0,
    hash         BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    account_id TEXT NOT NULL DEFAULT '',
    actor      TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    outcome    TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_account ON audit(account_id, id);

-- +goose Down
DROP TABLE audit;
DROP TABLE api_keys;
DROP TABLE devices;
DROP TABLE products;
DROP TABLE accounts;
