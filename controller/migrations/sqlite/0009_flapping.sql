-- outpost controller schema v9: flapping check alerts. Portable SQL.
-- Applied once, in a transaction, by store::migrate.

-- 1 while flap detection holds the alert open (a region changed between
-- pass and fail `flap_changes` times within `flap_window`); back to 0 once
-- the check was stable for the window. Timeline words: flapping, stable.
ALTER TABLE alerts ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
