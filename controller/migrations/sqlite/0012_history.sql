-- outpost controller schema v10: history rollups. Portable SQL.
-- Applied once, in a transaction, by store::migrate. Meaning: src/history.rs.

-- One row per check × region × resolution ('minute', 'hour', 'day') ×
-- bucket start (unix ms, UTC-aligned). latency_json: {"phase": [[bin, n], …]}
-- of passing results; codes_json: {"code": n}, bounded.
CREATE TABLE rollups (
    resolution    TEXT    NOT NULL,
    check_id      TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    bucket_ms     INTEGER NOT NULL,
    count         INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    stale_ms      INTEGER NOT NULL DEFAULT 0,
    latency_json  TEXT    NOT NULL DEFAULT '{}',
    codes_json    TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (resolution, check_id, bucket_ms, region)
);
-- The overview (every check over a range) and the retention prune.
CREATE INDEX rollups_by_age ON rollups (resolution, bucket_ms);

-- The newest result time per check × region the rollups have seen: where
-- a STALE gap starts.
CREATE TABLE rollup_cursor (
    check_id      TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    last_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (check_id, region)
);
