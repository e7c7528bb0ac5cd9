-- outpost controller schema v10: silences and suppressed alerts. Portable SQL
-- (the PostgreSQL twin differs only in its id and integer columns). Applied
-- once, in a transaction, by store::migrate.

-- Why an open check alert is recorded but not paged: `silence 3`,
-- `maintenance nightly-db`; empty when it pages. Set at fire time or later,
-- cleared (and the routed sinks paged) when the cause ends while the alert
-- is still open. Timeline words: suppressed, released.
ALTER TABLE alerts ADD COLUMN suppressed_by TEXT NOT NULL DEFAULT '';

-- Silences made from the dashboard or the API (those of the config file
-- live in the config). Matchers: a check id glob and label equalities
-- (JSON object). Deleting one sets ends_at_ms to the deletion time: the
-- record stays, expired.
CREATE TABLE silences (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    check_glob    TEXT    NOT NULL DEFAULT '*',
    labels_json   TEXT    NOT NULL DEFAULT '{}',
    created_by    TEXT    NOT NULL,
    comment       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    starts_at_ms  INTEGER NOT NULL,
    ends_at_ms    INTEGER NOT NULL
);
CREATE INDEX silences_by_end ON silences (ends_at_ms);
