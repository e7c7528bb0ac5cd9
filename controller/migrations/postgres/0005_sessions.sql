-- outpost controller schema on PostgreSQL, v5: SQLite's 0008_sessions.sql, dashboard sessions (controller/src/auth/session.rs). The cookie carries a
-- random 256-bit id; only its SHA-256 is stored, so a copy of the database
-- opens no session. `credential` fingerprints the password hash the login
-- was checked against: when the user's password changes in the config, the
-- session is over. Idle and absolute lifetimes are checked on every request.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    credential TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_name, created_ms);
