-- outpost controller schema: alert groups (`[[routes]] group_by`). Portable
-- SQL (the PostgreSQL twin differs only in its id and integer columns).
-- Applied once, in a transaction, by store::migrate. Number provisional:
-- renumbered at merge after the history migration.

-- One row per notification group of a grouped route: the open check alerts
-- of the route whose group labels have these values. Waiting (notified_ms
-- NULL) until group_wait has passed since it opened, then notified (one
-- trigger per sink, dedup_key shared by every later update and the
-- resolve), resolved once every member resolved. Nothing about a group
-- lives only in memory: a restart neither re-pages nor forgets it.
CREATE TABLE alert_groups (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The route's name.
    route          TEXT    NOT NULL,
    -- The group labels' values, a JSON array of [name, value] pairs in
    -- group_by order: the group's identity within its route.
    group_key      TEXT    NOT NULL,
    -- `outpost/group/<route>/<hash of route and group_key>`.
    dedup_key      TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('open', 'resolved')),
    opened_at_ms   INTEGER NOT NULL,
    -- When its last trigger (first or update) was queued; NULL while waiting.
    notified_ms    INTEGER,
    -- What the sinks were last sent: a JSON object check id → code.
    sent_json      TEXT    NOT NULL DEFAULT '{}',
    -- Sinks that got the first trigger (JSON array): updates and the
    -- resolve go to them, whatever the route says since.
    sinks_json     TEXT    NOT NULL DEFAULT '[]',
    resolved_at_ms INTEGER,
    -- Evaluator epoch of the last change (store/lease.rs).
    epoch          INTEGER NOT NULL DEFAULT 0
);
-- At most one open group per route and group values.
CREATE UNIQUE INDEX alert_groups_open ON alert_groups (route, group_key) WHERE state = 'open';
