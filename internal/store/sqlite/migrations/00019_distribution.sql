-- +goose Up
-- Distribution (internal/distribution): the instances this corral knows
-- of (account '' holds the system ones; the credential sealed), the
-- distribution centre's provisioning records, one per device, pointing
-- to an instance or a proximity policy, and the policies (JSON).
CREATE TABLE dist_instances (
    account_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    region      TEXT NOT NULL,
    mqtt        TEXT NOT NULL,
    mqtts       TEXT NOT NULL,
    backup_ip   TEXT NOT NULL,
    api_url     TEXT NOT NULL,
    credential  BLOB,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
CREATE TABLE dist_records (
    product_key     TEXT NOT NULL,
    device_name     TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    source_instance TEXT NOT NULL,
    source_region   TEXT NOT NULL,
    target_instance TEXT NOT NULL,
    target_region   TEXT NOT NULL,
    policy_id       TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    modified_at     INTEGER NOT NULL,
    PRIMARY KEY (product_key, device_name)
) WITHOUT ROWID;
CREATE INDEX dist_records_instance ON dist_records(target_instance) WHERE target_instance != '';
CREATE INDEX dist_records_policy ON dist_records(account_id, policy_id) WHERE policy_id != '';
CREATE TABLE dist_policies (
    account_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    doc         TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE dist_policies;
DROP TABLE dist_records;
DROP TABLE dist_instances;
