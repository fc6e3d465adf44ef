-- +goose Up
-- The MQTT engine's durable store (internal/mqtt/persist, issue 13):
-- persistent sessions, their subscriptions, their queues of QoS 1/2
-- messages (ordered by the engine's per-client seq; state 0 queued, 1 sent
-- with packet_id, 2 PUBREC received), the QoS 2 packet ids they published
-- and have not released, and retained messages. A session's rows go with
-- it (ON DELETE CASCADE). Times are Unix milliseconds; NULL is never.
CREATE TABLE mqtt_sessions (
    client_id       TEXT NOT NULL PRIMARY KEY,
    version         INTEGER NOT NULL,
    expiry_interval INTEGER NOT NULL,
    will            BLOB,
    created_at      INTEGER NOT NULL,
    disconnected_at INTEGER,
    expires_at      INTEGER
) WITHOUT ROWID;
CREATE INDEX mqtt_sessions_expires ON mqtt_sessions(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE mqtt_subscriptions (
    client_id           TEXT NOT NULL REFERENCES mqtt_sessions(client_id) ON DELETE CASCADE,
    filter              TEXT NOT NULL,
    qos                 INTEGER NOT NULL,
    no_local            INTEGER NOT NULL,
    retain_as_published INTEGER NOT NULL,
    retain_handling     INTEGER NOT NULL,
    subscription_id     INTEGER NOT NULL,
    PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;
CREATE TABLE mqtt_messages (
    client_id TEXT NOT NULL REFERENCES mqtt_sessions(client_id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    state     INTEGER NOT NULL,
    packet_id INTEGER NOT NULL,
    expiry    INTEGER,
    publish   BLOB NOT NULL,
    PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
CREATE TABLE mqtt_inbound (
    client_id TEXT NOT NULL REFERENCES mqtt_sessions(client_id) ON DELETE CASCADE,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
CREATE TABLE mqtt_retained (
    topic     TEXT NOT NULL PRIMARY KEY,
    publish   BLOB NOT NULL,
    stored_at INTEGER NOT NULL,
    expiry    INTEGER
) WITHOUT ROWID;
CREATE INDEX mqtt_retained_expiry ON mqtt_retained(expiry) WHERE expiry IS NOT NULL;

-- +goose Down
DROP TABLE mqtt_retained;
DROP TABLE mqtt_inbound;
DROP TABLE mqtt_messages;
DROP TABLE mqtt_subscriptions;
DROP TABLE mqtt_sessions;
