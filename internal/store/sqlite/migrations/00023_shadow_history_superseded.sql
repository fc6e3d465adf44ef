-- +goose Up
-- shadow_history holds a shadow's superseded versions only: the current
-- one is its shadows row, part of the history when kept = 1 (the write
-- kept versions). So a create writes one row (was: the shadow and a
-- history row), and an update copies the version it supersedes from the
-- row (INSERT … SELECT) instead of writing the new one twice. Nothing is
-- moved: kept NULL (a row written before this migration) means its
-- history is all in shadow_history, the current version included if it
-- was kept; reads and writes take both forms.
ALTER TABLE shadows ADD COLUMN kept INTEGER;

-- +goose Down
-- The current versions kept go back to shadow_history, as before.
INSERT OR REPLACE INTO shadow_history(product_key, device_name, name, version, doc, updated_at)
    SELECT product_key, device_name, name, version, doc, updated_at FROM shadows WHERE kept = 1 AND deleted = 0;
ALTER TABLE shadows DROP COLUMN kept;
