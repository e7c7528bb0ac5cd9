-- outpost controller schema on PostgreSQL, v2: SQLite's
-- 0004_region_state_kind.sql, the kind of each region's newest result beside
-- its details, so the store reads them as their kind's typed value
-- (details::decode) without the config. Applied once, in a transaction, by
-- store::migrate.
--
-- No index: region_state is read by its primary key (check_id, region) or
-- whole, as in 0001.

ALTER TABLE region_state ADD COLUMN last_kind TEXT NOT NULL DEFAULT '';

-- Rows written before: the kind of the newest stored result of the same
-- check and region ('' when pruned; the next result fills it in). The
-- subquery walks results_by_check (check_id, started_at_ms DESC).
UPDATE region_state SET last_kind = COALESCE((
    SELECT r.kind FROM results r
    WHERE r.check_id = region_state.check_id AND r.region = region_state.region
    ORDER BY r.started_at_ms DESC, r.sequence DESC
    LIMIT 1
), '');
