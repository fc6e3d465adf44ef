-- +goose Up
ALTER TABLE products ADD COLUMN provisioning TEXT NOT NULL DEFAULT '{}';
ALTER TABLE products ADD COLUMN registration_key BLOB;
ALTER TABLE devices ADD COLUMN token_hash BLOB;
ALTER TABLE devices ADD COLUMN token_client_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE devices DROP COLUMN token_client_id;
ALTER TABLE devices DROP COLUMN token_hash;
ALTER TABLE products DROP COLUMN registration_key;
ALTER TABLE products DROP COLUMN provisioning;
