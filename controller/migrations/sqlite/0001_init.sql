-- outpost controller schema v1. Timestamps are unix milliseconds (INTEGER),
-- booleans are INTEGER 0/1. Applied once, in a transaction, by store::migrate.

CREATE TABLE results (
    result_id        TEXT PRIMARY KEY,
    probe            TEXT    NOT NULL,
    region           TEXT    NOT NULL,
    check_id         TEXT    NOT NULL,
    sequence         INTEGER NOT NULL,
    kind             TEXT    NOT NULL,
    started_at_ms    INTEGER NOT NULL,
    received_at_ms   INTEGER NOT NULL,
    ok               INTEGER NOT NULL,
    failure_code     TEXT,
    failure_message  TEXT,
    dns_us           INTEGER NOT NULL DEFAULT 0,
    connect_us       INTEGER NOT NULL DEFAULT 0,
    tls_us           INTEGER NOT NULL DEFAULT 0,
    first_byte_us    INTEGER NOT NULL DEFAULT 0,
    total_us         INTEGER NOT NULL DEFAULT 0,
    details_json     TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX results_by_check ON results (check_id, started_at_ms DESC);
CREATE INDEX results_by_received ON results (received_at_ms);

-- Latest state per (check, region): the alert rule's only input.
CREATE TABLE region_state (
    check_id              TEXT    NOT NULL,
    region                TEXT    NOT NULL,
    last_result_at_ms     INTEGER NOT NULL,
    last_received_at_ms   INTEGER NOT NULL,
    last_ok               INTEGER NOT NULL,
    consecutive_failures  INTEGER NOT NULL,
    consecutive_passes    INTEGER NOT NULL,
    last_code             TEXT,
    last_message          TEXT,
    last_details_json     TEXT    NOT NULL DEFAULT '{}',
    last_probe            TEXT    NOT NULL,
    PRIMARY KEY (check_id, region)
);

CREATE TABLE probes (
    name          TEXT PRIMARY KEY,
    region        TEXT    NOT NULL,
    version       TEXT    NOT NULL DEFAULT '',
    labels_json   TEXT    NOT NULL DEFAULT '{}',
    last_seen_ms  INTEGER NOT NULL,
    connected     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    check_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    dedup_key       TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'resolved')),
    severity        TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    regions_json    TEXT    NOT NULL DEFAULT '[]',
    opened_at_ms    INTEGER NOT NULL,
    resolved_at_ms  INTEGER
);
-- At most one open alert per (check, kind): a restart or a race can never page twice.
CREATE UNIQUE INDEX alerts_one_open ON alerts (check_id, kind) WHERE state = 'open';
CREATE INDEX alerts_by_opened ON alerts (opened_at_ms DESC);

-- Persisted outbox of notifications: written in the same transaction as the
-- alert change, delivered in id order per (sink, dedup_key).
CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id         INTEGER NOT NULL REFERENCES alerts (id),
    sink             TEXT    NOT NULL,
    action           TEXT    NOT NULL CHECK (action IN ('trigger', 'resolve')),
    dedup_key        TEXT    NOT NULL,
    payload_json     TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT,
    created_ms       INTEGER NOT NULL,
    delivered_ms     INTEGER
);
CREATE INDEX notifications_pending ON notifications (state, next_attempt_ms);
CREATE INDEX notifications_by_key ON notifications (sink, dedup_key, id);
