-- +goose Up
-- Products' shadow settings (shadowsvc.Settings as JSON): size limit,
-- thing-model check, presence, history K. No row: the defaults.
CREATE TABLE shadow_settings (
    product_key TEXT PRIMARY KEY,
    settings    BLOB NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE shadow_settings;
