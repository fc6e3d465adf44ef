-- +goose Up
-- Products' remote configuration files (registry.ProductConfig): one a
-- product, replaced by a new upload.
CREATE TABLE product_configs (
    product_key TEXT PRIMARY KEY,
    config_id   TEXT NOT NULL,
    content     BLOB NOT NULL,
    sign        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE product_configs;
