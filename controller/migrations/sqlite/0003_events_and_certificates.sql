-- outpost controller schema v3: events (DNS answer changes) and the
-- certificate inventory. Both are written by ingest in the same transaction
-- as the results they come from. Applied once, in a transaction, by store::migrate.

-- One row per change: the same change (check, resolver, old → new
-- fingerprint) reported by several probes within a few minutes is one event
-- listing every region and probe that saw it (see event.rs).
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    check_id      TEXT    NOT NULL,
    -- Region and probe of the first report; every reporter is in the JSON lists.
    region        TEXT    NOT NULL,
    probe         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    -- check | resolver | old fingerprint | new fingerprint: what makes two reports one change.
    change_key    TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    regions_json  TEXT    NOT NULL DEFAULT '[]',
    probes_json   TEXT    NOT NULL DEFAULT '[]',
    detail_json   TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_at ON events (at_ms DESC);
CREATE INDEX events_by_check ON events (check_id, at_ms DESC);
CREATE INDEX events_by_key ON events (change_key, at_ms DESC);

-- Every certificate any check saw, keyed by its SHA-256 fingerprint.
CREATE TABLE certificates (
    fingerprint          TEXT PRIMARY KEY,
    subject              TEXT    NOT NULL,
    issuer               TEXT    NOT NULL,
    sans_json            TEXT    NOT NULL DEFAULT '[]',
    not_before_ms        INTEGER,
    not_after_ms         INTEGER NOT NULL,
    key_type             TEXT    NOT NULL DEFAULT '',
    signature_algorithm  TEXT    NOT NULL DEFAULT '',
    is_ca                INTEGER NOT NULL DEFAULT 0,
    self_signed          INTEGER NOT NULL DEFAULT 0,
    first_seen_ms        INTEGER NOT NULL,
    last_seen_ms         INTEGER NOT NULL
);
CREATE INDEX certificates_by_expiry ON certificates (not_after_ms);

-- Where a certificate was seen: by which check, at which address, from which probe.
CREATE TABLE certificate_sightings (
    fingerprint    TEXT    NOT NULL REFERENCES certificates (fingerprint) ON DELETE CASCADE,
    check_id       TEXT    NOT NULL,
    probe          TEXT    NOT NULL,
    address        TEXT    NOT NULL DEFAULT '',
    region         TEXT    NOT NULL,
    host           TEXT    NOT NULL DEFAULT '',
    -- Position in the presented chain (0 = leaf); NULL for a trust store's root.
    position       INTEGER,
    trust_store    TEXT,
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, check_id, probe, address)
);
CREATE INDEX sightings_by_check ON certificate_sightings (check_id, last_seen_ms);

-- Info notifications of events (`dns_change` routed by `[[routes]].kinds`)
-- go through the same outbox: a notification now belongs to an alert or to
-- an event, and `info` joins the actions. SQLite cannot relax NOT NULL in
-- place, so the table is rebuilt (rows, ids and indexes kept).
CREATE TABLE notifications_v3 (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id          INTEGER REFERENCES alerts (id),
    event_id          INTEGER REFERENCES events (id) ON DELETE SET NULL,
    sink              TEXT    NOT NULL,
    action            TEXT    NOT NULL CHECK (action IN ('trigger', 'resolve', 'info')),
    dedup_key         TEXT    NOT NULL,
    payload_json      TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms   INTEGER NOT NULL,
    last_error        TEXT,
    created_ms        INTEGER NOT NULL,
    delivered_ms      INTEGER,
    first_attempt_ms  INTEGER
);
INSERT INTO notifications_v3 (id, alert_id, sink, action, dedup_key, payload_json, state, attempts,
                              next_attempt_ms, last_error, created_ms, delivered_ms, first_attempt_ms)
    SELECT id, alert_id, sink, action, dedup_key, payload_json, state, attempts,
           next_attempt_ms, last_error, created_ms, delivered_ms, first_attempt_ms FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_v3 RENAME TO notifications;
CREATE INDEX notifications_pending ON notifications (state, next_attempt_ms);
CREATE INDEX notifications_by_key ON notifications (sink, dedup_key, id);
CREATE INDEX notifications_by_alert ON notifications (alert_id);
