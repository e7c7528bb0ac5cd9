-- outpost controller schema v6: every delivery attempt of a notification,
-- for the alert's page and the notifier_failing alert. Portable SQL (the
-- PostgreSQL twin differs only in its id column). Applied once, in a
-- transaction, by store::migrate.

-- outcome: delivered, retry (will be retried), rejected (4xx other than
-- 408/429: not retried), gave_up (retried past the sink's give_up_after).
-- status: the sink's HTTP status, when it answered. excerpt: what happened,
-- at most 300 characters, the sink's secrets scrubbed.
CREATE TABLE notification_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id  INTEGER NOT NULL REFERENCES notifications (id),
    sink             TEXT    NOT NULL,
    at_ms            INTEGER NOT NULL,
    outcome          TEXT    NOT NULL,
    status           INTEGER,
    excerpt          TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX notification_attempts_by_notification ON notification_attempts (notification_id, id);
-- failing_sinks: the newest delivered attempt per sink, and the attempts after it.
CREATE INDEX notification_attempts_by_sink ON notification_attempts (sink, outcome, id);
