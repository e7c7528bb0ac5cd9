-- outpost controller schema v4: the kind of each region's newest result
-- beside its details, so the store reads them as their kind's typed value
-- (details::decode) without the config. Applied once, in a transaction, by
-- store::migrate.

ALTER TABLE region_state ADD COLUMN last_kind TEXT NOT NULL DEFAULT '';

-- Rows written before: the kind of the newest stored result of the same
-- check and region ('' when pruned; the next result fills it in).
UPDATE region_state SET last_kind = COALESCE((
    SELECT r.kind FROM results r
    WHERE r.check_id = region_state.check_id AND r.region = region_state.region
    ORDER BY r.started_at_ms DESC, r.sequence DESC
    LIMIT 1
), '');
