-- +goose Up
-- Distribution jobs (internal/distribution/jobs): one row per job and
-- one per device of it, its step saved after each so that a job resumes
-- after a crash from where each device was. Counts are read from the
-- items; auth_code is a cross-account job's authorisation code.
CREATE TABLE dist_jobs (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    product_key     TEXT NOT NULL,
    source_instance TEXT NOT NULL,
    strategy        INTEGER NOT NULL,
    target_instance TEXT NOT NULL,
    policy_id       TEXT NOT NULL,
    target_account  TEXT NOT NULL,
    auth_code       TEXT NOT NULL,
    status          INTEGER NOT NULL,
    product_copied  INTEGER NOT NULL,
    abort_requested INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    message         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    modified_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dist_jobs_account ON dist_jobs(account_id, created_at);
CREATE INDEX dist_jobs_open ON dist_jobs(status) WHERE status < 2;
CREATE TABLE dist_job_items (
    job_id          TEXT NOT NULL REFERENCES dist_jobs(id) ON DELETE CASCADE,
    device_name     TEXT NOT NULL,
    target_instance TEXT NOT NULL,
    step            INTEGER NOT NULL,
    code            INTEGER NOT NULL,
    message         TEXT NOT NULL,
    PRIMARY KEY (job_id, device_name)
) WITHOUT ROWID;
CREATE INDEX dist_job_items_unfinished ON dist_job_items(job_id, device_name) WHERE step < 4;
-- The instance a job moved a device to: refused at CONNECT while set.
ALTER TABLE devices ADD COLUMN distributed_to TEXT NOT NULL DEFAULT '';
-- The instance a job copied a product from: read-only here while set.
ALTER TABLE products ADD COLUMN distributed_from TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE products DROP COLUMN distributed_from;
ALTER TABLE devices DROP COLUMN distributed_to;
DROP TABLE dist_job_items;
DROP TABLE dist_jobs;
