-- +goose Up
-- A device's status changes at every presence write (inactive -> online
-- -> offline): the index on it cost one index entry moved per device and
-- batch, half of ApplyPresence's time at 100,000 devices. Listing a
-- product's devices by status reads them in name order instead, as the
-- attribute filter does.
DROP INDEX devices_status;

-- +goose Down
CREATE INDEX devices_status ON devices(product_key, status, device_name);
