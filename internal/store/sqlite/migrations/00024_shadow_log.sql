-- +goose Up
-- A shadow's superseded versions move from shadow_history (keyed by the
-- shadow and the version: each write inserted into, and trimmed, a leaf
-- of its own, a random page) to shadow_log, a table appended to in the
-- order of writes (its rowid), so that the versions written together share
-- the log's last pages, and those trimmed together (written K writes of
-- their shadows ago) its earlier ones. Each live shadow lists its rows in
-- shadows.past, a JSON array of shadow_log ids, oldest first (NULL: none);
-- nothing else points into the log, and every write that changes a list
-- deletes the rows it drops in the same transaction.
CREATE TABLE shadow_log (
    id         INTEGER PRIMARY KEY,
    version    INTEGER NOT NULL,
    doc        BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
ALTER TABLE shadows ADD COLUMN past TEXT;

-- A row written before 00023 (kept NULL) has its current version in
-- shadow_history when it was kept: kept says so from now on.
UPDATE shadows SET kept = EXISTS (SELECT 1 FROM shadow_history h
    WHERE h.product_key = shadows.product_key AND h.device_name = shadows.device_name AND h.name = shadows.name AND h.version = shadows.version)
    WHERE kept IS NULL AND deleted = 0;

-- The superseded versions of live shadows, in the order of their keys and
-- versions (a temporary table's rowids number them 1, 2, …; the log is
-- empty: they become its ids).
CREATE TEMP TABLE moved AS SELECT h.product_key, h.device_name, h.name, h.version, h.doc, h.updated_at
    FROM shadow_history h JOIN shadows s USING (product_key, device_name, name)
    WHERE s.deleted = 0 AND h.version < s.version
    ORDER BY h.product_key, h.device_name, h.name, h.version;
INSERT INTO shadow_log(id, version, doc, updated_at) SELECT rowid, version, doc, updated_at FROM temp.moved;
UPDATE shadows SET past = (SELECT json_group_array(m.rowid ORDER BY m.version) FROM temp.moved m
    WHERE m.product_key = shadows.product_key AND m.device_name = shadows.device_name AND m.name = shadows.name)
    WHERE deleted = 0 AND EXISTS (SELECT 1 FROM temp.moved m
        WHERE m.product_key = shadows.product_key AND m.device_name = shadows.device_name AND m.name = shadows.name);
DROP TABLE temp.moved;
DROP TABLE shadow_history;

-- +goose Down
CREATE TABLE shadow_history (
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    doc         BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (product_key, device_name, name, version)
) WITHOUT ROWID;
INSERT INTO shadow_history(product_key, device_name, name, version, doc, updated_at)
    SELECT s.product_key, s.device_name, s.name, l.version, l.doc, l.updated_at
    FROM shadows s, json_each(s.past) j JOIN shadow_log l ON l.id = j.value
    WHERE s.past IS NOT NULL;
ALTER TABLE shadows DROP COLUMN past;
DROP TABLE shadow_log;
