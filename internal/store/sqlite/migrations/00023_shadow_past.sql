-- +goose Up
-- A shadow's superseded versions kept inline in its row (shadowpast.go):
-- a write of a small document writes one row, where it wrote the shadow
-- and a shadow_history row. Versions that do not fit the row's byte
-- budget stay in shadow_history. Nothing is moved: a row whose past is
-- NULL (written before this migration) has its history all in
-- shadow_history, as before, and reads and writes take both forms.
ALTER TABLE shadows ADD COLUMN past BLOB;

-- +goose Down
-- The inline versions are lost (the history keeps what shadow_history holds).
ALTER TABLE shadows DROP COLUMN past;
