-- outpost controller schema on PostgreSQL, v7: SQLite's 0010_history.sql,
-- history rollups. Applied once, in a transaction, by store::migrate.
-- Meaning: src/history.rs.

-- One row per check × region × resolution ('minute', 'hour', 'day') ×
-- bucket start (unix ms, UTC-aligned). latency_json: {"phase": [[bin, n], …]}
-- of passing results; codes_json: {"code": n}, bounded.
-- PK: the ingest's read-merge-write of one row (SELECT … FOR UPDATE) and a
-- check's range read (check page, SLA).
CREATE TABLE rollups (
    resolution    TEXT    NOT NULL,
    check_id      TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    bucket_ms     BIGINT  NOT NULL,
    count         BIGINT  NOT NULL DEFAULT 0,
    failures      BIGINT  NOT NULL DEFAULT 0,
    stale_ms      BIGINT  NOT NULL DEFAULT 0,
    latency_json  TEXT    NOT NULL DEFAULT '{}',
    codes_json    TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (resolution, check_id, bucket_ms, region)
);
-- The overview (every check over a range) and the retention prune's
-- `bucket_ms < $2 LIMIT n`.
CREATE INDEX rollups_by_age ON rollups (resolution, bucket_ms);

-- The newest result time per check × region the rollups have seen: where
-- a STALE gap starts. PK: its upsert per batch and the open-gap read.
CREATE TABLE rollup_cursor (
    check_id      TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    last_at_ms    BIGINT  NOT NULL,
    PRIMARY KEY (check_id, region)
);
