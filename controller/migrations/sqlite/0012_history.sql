-- outpost controller schema v12: history rollups. Portable SQL.
-- Applied once, in a transaction, by store::migrate. Meaning: src/history.rs.

-- One row per check × region that has a result: the integer key of its
-- rollups, and the newest result time rolled up (where a STALE gap starts).
CREATE TABLE rollup_series (
    id            INTEGER PRIMARY KEY,
    check_id      TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    last_at_ms    INTEGER NOT NULL,
    UNIQUE (check_id, region)
);

-- One row per series × resolution (0 minute, 1 hour, 2 day) × bucket
-- start (unix ms, UTC-aligned). body: the latency histograms of passing
-- results and the failure codes, binary (history::Rollup::body).
-- Minutes are written at ingest; hours and days are folded from them.
CREATE TABLE rollups (
    series        INTEGER NOT NULL,
    resolution    INTEGER NOT NULL,
    bucket_ms     INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    stale_ms      INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    PRIMARY KEY (series, resolution, bucket_ms)
) WITHOUT ROWID;
-- The fold (every series' minutes of a window) and the retention prune.
CREATE INDEX rollups_by_age ON rollups (resolution, bucket_ms);

-- The overview's compact copy of a series' last 96 hours and 32 days
-- (history::Summary::encode).
CREATE TABLE rollup_summary (
    series        INTEGER PRIMARY KEY,
    body          BLOB    NOT NULL
);

-- Minutes before done_ms are folded into hours and days.
CREATE TABLE rollup_fold (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    done_ms       INTEGER NOT NULL
);
INSERT INTO rollup_fold (id, done_ms) VALUES (1, 0);
