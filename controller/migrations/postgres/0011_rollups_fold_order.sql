-- outpost controller schema on PostgreSQL: the fold's page order.
-- Applied once, in a transaction, by store::migrate.
--
-- The fold reads a window's minutes FOLD_PAGE rows at a time in
-- (bucket_ms, series) order. SQLite's rollups_by_age already is that order
-- (a WITHOUT ROWID table's index entries end with the primary key); a
-- PostgreSQL index orders ties by heap position, so it gets the column
-- spelled out. The retention prune's (resolution, bucket_ms) range uses
-- the same index's prefix, so the old one goes.
CREATE INDEX rollups_fold_order ON rollups (resolution, bucket_ms, series);
DROP INDEX rollups_by_age;
