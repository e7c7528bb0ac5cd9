-- outpost controller schema on PostgreSQL, v6: SQLite's 0009_flapping.sql,
-- flapping check alerts. Applied once, in a transaction, by store::migrate.

-- 1 while flap detection holds the alert open (a region changed between
-- pass and fail `flap_changes` times within `flap_window`); back to 0 once
-- the check was stable for the window. Timeline words: flapping, stable.
-- BIGINT, not BOOLEAN: the store reads flags as integers on both engines
-- (store::Flag). No index: it is read with the alert row.
ALTER TABLE alerts ADD COLUMN flapping BIGINT NOT NULL DEFAULT 0;
