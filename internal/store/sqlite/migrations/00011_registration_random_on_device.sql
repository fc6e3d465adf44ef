-- +goose Up
-- The random of the registration that created a device, kept in its row
-- so that creating it costs no second write; it moves to
-- registration_randoms when the device is deleted, so a captured request
-- cannot bring the device back within the window.
ALTER TABLE devices ADD COLUMN reg_random TEXT;
ALTER TABLE devices ADD COLUMN reg_at INTEGER;

-- +goose Down
ALTER TABLE devices DROP COLUMN reg_at;
ALTER TABLE devices DROP COLUMN reg_random;
