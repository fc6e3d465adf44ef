-- +goose Up
ALTER TABLE devices ADD COLUMN cert_fingerprint TEXT;
CREATE UNIQUE INDEX devices_cert_fingerprint ON devices(cert_fingerprint) WHERE cert_fingerprint IS NOT NULL;

-- +goose Down
DROP INDEX devices_cert_fingerprint;
ALTER TABLE devices DROP COLUMN cert_fingerprint;
