-- outpost controller schema v5: the fencing epoch of alert changes and
-- notifications, delivery claims, and the evaluator lease. On SQLite one
-- process owns the file and is always the evaluator (epoch 1); the columns
-- exist so both engines share one schema and one set of statements.
-- Applied once, in a transaction, by store::migrate.

-- The evaluator epoch under which the alert last changed.
ALTER TABLE alerts ADD COLUMN epoch INTEGER;
-- The evaluator epoch that queued a trigger or resolve (NULL for events' info).
ALTER TABLE notifications ADD COLUMN epoch INTEGER;
-- A replica delivering the notification holds it until then (unix ms, its clock).
ALTER TABLE notifications ADD COLUMN claimed_until_ms INTEGER NOT NULL DEFAULT 0;

CREATE TABLE leases (
    name            TEXT PRIMARY KEY,
    holder          TEXT    NOT NULL,
    epoch           INTEGER NOT NULL,
    acquired_at_ms  INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL
);
