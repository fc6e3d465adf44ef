-- +goose Up
CREATE TABLE cas (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    fingerprint  TEXT NOT NULL UNIQUE,
    pem          TEXT NOT NULL,
    subject      TEXT NOT NULL,
    status       TEXT NOT NULL,
    mode         TEXT NOT NULL,
    template     TEXT NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL
);
CREATE INDEX cas_account ON cas(account_id);

CREATE TABLE certificates (
    fingerprint  TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    ca_id        TEXT NOT NULL,
    product_key  TEXT NOT NULL,
    device_name  TEXT NOT NULL,
    subject      TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX certificates_account ON certificates(account_id, status);

CREATE TABLE registration_codes (
    account_id TEXT PRIMARY KEY,
    code       TEXT NOT NULL
);

-- +goose Down
DROP TABLE registration_codes;
DROP TABLE certificates;
DROP TABLE cas;
