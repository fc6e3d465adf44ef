-- +goose Up
ALTER TABLE products ADD COLUMN connect_window INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE products DROP COLUMN connect_window;
