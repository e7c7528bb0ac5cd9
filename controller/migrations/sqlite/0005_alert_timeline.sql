-- outpost controller schema v5: live alert content and the alert timeline.
-- Portable SQL (the PostgreSQL twin differs only
-- in its id columns). Applied once, in a transaction, by store::migrate.

-- The open alert's current content (summary and regions_json already follow
-- it): the failure code of its first failing region, and what was last sent
-- to the sinks (regions, code, severity as JSON) with when, for the
-- rate-limited update triggers.
ALTER TABLE alerts ADD COLUMN code TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN notified_json TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN notified_ms INTEGER;

-- Every state change of an alert, in order: fired, updated (content changed),
-- notified (an update trigger queued), escalated, resolved.
CREATE TABLE alert_timeline (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id      INTEGER NOT NULL REFERENCES alerts (id),
    at_ms         INTEGER NOT NULL,
    what          TEXT    NOT NULL,
    regions_json  TEXT    NOT NULL DEFAULT '[]',
    code          TEXT    NOT NULL DEFAULT '',
    severity      TEXT    NOT NULL,
    summary       TEXT    NOT NULL
);
CREATE INDEX alert_timeline_by_alert ON alert_timeline (alert_id, id);
