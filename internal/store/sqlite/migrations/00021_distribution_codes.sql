-- +goose Up
-- Cross-account distribution (internal/distribution/jobs.Codes): a
-- destination's authorisation codes (valid five minutes, once) and the
-- grants they are exchanged for, kept across restarts so that a running
-- job's imports go on. Each is stored by the SHA-256 of its value.
CREATE TABLE dist_auth_codes (
    code_hash  TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dist_auth_codes_expiry ON dist_auth_codes(expires_at);
CREATE TABLE dist_grants (
    grant_hash   TEXT PRIMARY KEY,
    from_account TEXT NOT NULL,
    to_account   TEXT NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE dist_grants;
DROP TABLE dist_auth_codes;
