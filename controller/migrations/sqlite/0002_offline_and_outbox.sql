-- outpost controller schema v2: fleet-level alerts (probe_offline), probe
-- heartbeat data, and per-notification delivery bookkeeping.
-- Applied once, in a transaction, by store::migrate.

-- Fleet-level alerts name a probe instead of a check (check_id is '' for them).
ALTER TABLE alerts ADD COLUMN probe TEXT;
-- One open alert per dedup key: the key is deterministic per (check, kind) and
-- per (probe, kind), so this subsumes the v1 index and also covers probe alerts.
DROP INDEX alerts_one_open;
CREATE UNIQUE INDEX alerts_one_open ON alerts (dedup_key) WHERE state = 'open';

-- Latest heartbeat: results waiting on the probe, and what it dropped (by reason, JSON object).
ALTER TABLE probes ADD COLUMN queued_results INTEGER NOT NULL DEFAULT 0;
ALTER TABLE probes ADD COLUMN dropped_results INTEGER NOT NULL DEFAULT 0;
ALTER TABLE probes ADD COLUMN dropped_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE probes ADD COLUMN heartbeat_at_ms INTEGER;

-- Delivery bookkeeping: when a notification was first attempted (the give-up
-- horizon counts from its creation; this is for the API and debugging).
ALTER TABLE notifications ADD COLUMN first_attempt_ms INTEGER;
