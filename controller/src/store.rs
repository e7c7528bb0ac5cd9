//! The store: every SQL statement of the controller lives in this module.
//!
//! Design note.
//! - **Engine.** SQLite through sqlx, one file (`store.path`), WAL journal,
//!   `synchronous = NORMAL` (with WAL a committed transaction survives a
//!   process crash; a power loss may roll back the last transactions, whose
//!   acks were already sent — accepted for the single-node default),
//!   `busy_timeout` 5 s, foreign keys on. Writers open
//!   `BEGIN IMMEDIATE` so a read-then-write transaction never fails on a lock
//!   upgrade.
//! - **Migrations.** `controller/migrations/sqlite/NNNN_name.sql`, embedded
//!   by `sqlx::migrate!` ([`MIGRATOR`]) and applied by [`migrate`] on a
//!   connection of its own before the pool opens, one transaction each,
//!   recorded with their checksums in sqlx's `_sqlx_migrations`. An applied
//!   file is never edited (a test pins the checksums); a change is a new
//!   file. Databases from releases up to 55d6181 recorded versions 1–3 in
//!   their own `schema_migrations`: [`migrate`] first moves those records
//!   to `_sqlx_migrations` and drops the old table, in one transaction, so a
//!   crash mid-bridge changes nothing and the next start bridges again.
//! - **Schema** (`0001_init.sql`, `0002_offline_and_outbox.sql`,
//!   `0003_events_and_certificates.sql`): `results` (one row per result, keyed by the
//!   probe-generated `result_id`), `region_state` (latest state per check ×
//!   region: the alert rule's only input), `probes` (hello data, last seen,
//!   and the latest heartbeat: queued and dropped results, by reason),
//!   `alerts` (check alerts and fleet-level `probe_offline` alerts, which name
//!   a probe instead of a check), `notifications` (the persisted outbox),
//!   `events` (DNS answer changes, one row per change however many probes
//!   reported it: [`crate::event`], SQL in `store/events.rs`) and the
//!   certificate inventory `certificates` + `certificate_sightings`
//!   ([`crate::certificate`], SQL in `store/certificates.rs`). Events and
//!   sightings are written by [`Store::ingest`] in the results' transaction
//!   and only for results actually inserted, so a resent batch adds nothing.
//!   Timestamps are unix milliseconds, booleans 0/1 (INTEGER).
//! - **Invariants.** (1) A result is stored at most once: `INSERT … ON
//!   CONFLICT(result_id) DO NOTHING`, and `region_state` only moves for rows
//!   actually inserted, so a resent batch changes nothing. (2) `region_state`
//!   only moves forward: a result older than the stored latest is kept in
//!   `results` but does not touch the counters. (3) At most one open alert per
//!   dedup key (deterministic per check and kind, or per probe and kind),
//!   enforced by a partial unique index. (4) An alert change and its
//!   notifications commit in one transaction: there is never an open alert
//!   without its triggers queued, nor a resolved one without its resolves.
//!   (5) Per (sink, dedup key) notifications leave the outbox in id order:
//!   [`Store::due_notifications`] hands out only the oldest pending one, so a
//!   resolve waits until its trigger is delivered or has permanently failed.
//! - **Crash.** Ingest commits before the ack is sent: a crash before the ack
//!   makes the probe resend, and invariant (1) absorbs it — at-least-once on
//!   the wire, exactly once in the store. An open alert is a row, so a
//!   restarted controller reads it back and neither pages again nor forgets
//!   to resolve. A crash between an alert change and delivery leaves
//!   `pending` notifications, which the delivery worker sends after restart;
//!   a crash while a notification is being retried loses nothing either (its
//!   attempts, next attempt and first attempt are rows). A crash after a
//!   sink accepted a notification but before `delivered` is recorded sends it
//!   again: at-least-once delivery; the deterministic `dedup_key` makes
//!   PagerDuty collapse it. That window is the only way a sink sees an event
//!   twice.

mod certificates;
mod events;

use std::{collections::BTreeSet, path::Path, str::FromStr, time::Duration};

pub use certificates::{CertificateRow, SightingRow};
pub use events::EventRow;

use sqlx::{
    ConnectOptions, Connection, Row, SqliteConnection, SqlitePool,
    migrate::{Migrate, Migration, Migrator},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};

/// Store failures. Our process misbehaving, never a target being down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed (nothing of it was applied), or the database
    /// records migrations this build does not have (a newer controller
    /// wrote it) or whose text differs from this build's.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The pre-sqlx `schema_migrations` table names a migration this build
    /// does not embed under that version and name.
    #[error(
        "schema_migrations records version {version} ({name}), which this build does not have: \
         was the database written by a newer controller?"
    )]
    LegacyVersion {
        /// Version recorded.
        version: i64,
        /// File name recorded.
        name: String,
    },
}

/// The embedded migrations (`controller/migrations/sqlite/`), applied by
/// [`migrate`] and tracked by sqlx in [`MIGRATIONS_TABLE`]. Never edit an
/// applied one: its checksum is recorded in every database it ran on.
pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
/// Where sqlx records applied migrations (its default).
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// Where releases up to 55d6181 recorded them, `(version, name, applied_at_ms)`.
pub const LEGACY_MIGRATIONS_TABLE: &str = "schema_migrations";

/// A handle to the database (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// One result to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct NewResult {
    /// Globally unique id from the probe.
    pub result_id: String,
    /// Probe name.
    pub probe: String,
    /// Probe region (from controller config).
    pub region: String,
    /// Check id.
    pub check_id: String,
    /// Per-probe sequence.
    pub sequence: u64,
    /// Check kind.
    pub kind: String,
    /// Start time (probe clock).
    pub started_at_ms: i64,
    /// Passed.
    pub ok: bool,
    /// Failure code.
    pub failure_code: Option<String>,
    /// Failure message.
    pub failure_message: Option<String>,
    /// Phase timings in µs: dns, connect, tls, first byte, total.
    pub phases_us: [u64; 5],
    /// Kind-specific details (JSON object).
    pub details_json: String,
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Results newly stored.
    pub stored: u64,
    /// Results already stored before.
    pub duplicates: u64,
    /// Checks that got at least one new result.
    pub affected: BTreeSet<String>,
    /// Ids of the results newly stored.
    pub inserted: BTreeSet<String>,
    /// DNS change reports among them (each merged into or creating an event).
    pub dns_changes: u64,
    /// Certificate sightings among them.
    pub certificates: u64,
}

/// Latest state of one check in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionState {
    /// Check id.
    pub check_id: String,
    /// Region.
    pub region: String,
    /// Start of the newest result (clamped to its receive time).
    pub last_result_at_ms: i64,
    /// When the newest result arrived.
    pub last_received_at_ms: i64,
    /// Newest result passed.
    pub last_ok: bool,
    /// Failed runs in a row.
    pub consecutive_failures: u32,
    /// Passing runs in a row.
    pub consecutive_passes: u32,
    /// Newest failure code.
    pub last_code: Option<String>,
    /// Newest failure message.
    pub last_message: Option<String>,
    /// Newest details.
    pub last_details_json: String,
    /// Probe that sent the newest result.
    pub last_probe: String,
}

/// A stored result (API).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// Id.
    pub result_id: String,
    /// Probe.
    pub probe: String,
    /// Region.
    pub region: String,
    /// Check.
    pub check_id: String,
    /// Sequence.
    pub sequence: i64,
    /// Start.
    pub started_at_ms: i64,
    /// Arrival.
    pub received_at_ms: i64,
    /// Passed.
    pub ok: bool,
    /// Code.
    pub failure_code: Option<String>,
    /// Message.
    pub failure_message: Option<String>,
    /// Total duration µs.
    pub total_us: i64,
    /// First byte µs.
    pub first_byte_us: i64,
    /// Details.
    pub details_json: String,
}

/// A probe row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRow {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Agent version.
    pub version: String,
    /// Labels JSON.
    pub labels_json: String,
    /// Last hello/heartbeat/batch.
    pub last_seen_ms: i64,
    /// A stream is open.
    pub connected: bool,
    /// Results waiting on the probe for an ack, as of its last heartbeat.
    pub queued_results: u64,
    /// Results the probe dropped since it started, as of its last heartbeat.
    pub dropped_results: u64,
    /// The same, by reason (JSON object `{reason: count}`).
    pub dropped_json: String,
    /// When the last heartbeat arrived.
    pub heartbeat_at_ms: Option<i64>,
}

impl ProbeRow {
    /// A row as a hello records it (no heartbeat yet).
    pub fn hello(
        name: &str,
        region: &str,
        version: &str,
        labels_json: &str,
        at_ms: i64,
    ) -> ProbeRow {
        ProbeRow {
            name: name.to_owned(),
            region: region.to_owned(),
            version: version.to_owned(),
            labels_json: labels_json.to_owned(),
            last_seen_ms: at_ms,
            connected: true,
            queued_results: 0,
            dropped_results: 0,
            dropped_json: "{}".to_owned(),
            heartbeat_at_ms: None,
        }
    }
}

/// What a heartbeat reports about a probe's outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatRow {
    /// Results waiting for an ack.
    pub queued_results: u64,
    /// Results dropped since the probe started.
    pub dropped_results: u64,
    /// Dropped results by reason.
    pub dropped_by_reason: std::collections::BTreeMap<String, u64>,
}

/// An alert row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// Id.
    pub id: i64,
    /// Check (empty for fleet-level alerts).
    pub check_id: String,
    /// Probe of a fleet-level alert (`probe_offline`).
    pub probe: Option<String>,
    /// Kind (`check_failing`, `probe_offline`).
    pub kind: String,
    /// Dedup key.
    pub dedup_key: String,
    /// `open` or `resolved`.
    pub state: String,
    /// Severity.
    pub severity: String,
    /// Summary when it fired.
    pub summary: String,
    /// Regions failing when it fired (JSON array).
    pub regions_json: String,
    /// Fired.
    pub opened_at_ms: i64,
    /// Resolved.
    pub resolved_at_ms: Option<i64>,
}

/// An alert to open.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Check (empty for fleet-level alerts).
    pub check_id: String,
    /// Probe of a fleet-level alert.
    pub probe: Option<String>,
    /// Kind.
    pub kind: String,
    /// Dedup key.
    pub dedup_key: String,
    /// Severity.
    pub severity: String,
    /// Summary.
    pub summary: String,
    /// Failing regions (JSON array).
    pub regions_json: String,
}

/// A pending notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Id (delivery order).
    pub id: i64,
    /// Alert (`None` for an event's `info` notification).
    pub alert_id: Option<i64>,
    /// Sink name.
    pub sink: String,
    /// `trigger` or `resolve`.
    pub action: String,
    /// Dedup key.
    pub dedup_key: String,
    /// Sink-neutral event (JSON).
    pub payload_json: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Queued at.
    pub created_ms: i64,
    /// First delivery attempt (the give-up horizon counts from here).
    pub first_attempt_ms: Option<i64>,
}

/// A notification's delivery state (API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// Id.
    pub id: i64,
    /// Alert.
    pub alert_id: i64,
    /// Sink name.
    pub sink: String,
    /// `trigger` or `resolve`.
    pub action: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt (pending only).
    pub next_attempt_ms: i64,
    /// Last error (status and a snippet of the sink's answer).
    pub last_error: Option<String>,
    /// Delivered at.
    pub delivered_ms: Option<i64>,
}

/// Counts of notifications by state (tests, metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    /// Waiting.
    pub pending: i64,
    /// Sent.
    pub delivered: i64,
    /// Given up.
    pub failed: i64,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if missing) the SQLite file and applies migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            // Best effort: a missing directory then shows up as the open error.
            let _ = std::fs::create_dir_all(dir);
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // Migrate on a connection of its own, closed before the pool opens:
        // a pooled connection that read the schema before a migration
        // rebuilt a table would describe `SELECT *` with the old columns.
        let mut conn = options.connect().await?;
        let migrated = migrate(&mut conn).await;
        conn.close().await?;
        migrated?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    /// `SELECT 1` (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores one batch in one transaction; see the module note for the invariants.
    pub async fn ingest(
        &self,
        results: Vec<NewResult>,
        received_at_ms: i64,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_notifying(results, received_at_ms, &[]).await
    }

    /// [`Store::ingest`], also queueing one `info` notification per sink in
    /// `event_sinks` for each new event (not for reports merged into one),
    /// in the same transaction.
    pub async fn ingest_notifying(
        &self,
        mut results: Vec<NewResult>,
        received_at_ms: i64,
        event_sinks: &[String],
    ) -> Result<IngestOutcome, StoreError> {
        results.sort_by_key(|r| (r.started_at_ms, r.sequence));
        let mut out = IngestOutcome::default();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for r in &results {
            let inserted = sqlx::query(
                "INSERT INTO results (result_id, probe, region, check_id, sequence, kind, started_at_ms, received_at_ms, ok, \
                 failure_code, failure_message, dns_us, connect_us, tls_us, first_byte_us, total_us, details_json) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(result_id) DO NOTHING",
            )
            .bind(&r.result_id)
            .bind(&r.probe)
            .bind(&r.region)
            .bind(&r.check_id)
            .bind(to_i64(r.sequence))
            .bind(&r.kind)
            .bind(r.started_at_ms)
            .bind(received_at_ms)
            .bind(i64::from(r.ok))
            .bind(&r.failure_code)
            .bind(&r.failure_message)
            .bind(to_i64(r.phases_us[0]))
            .bind(to_i64(r.phases_us[1]))
            .bind(to_i64(r.phases_us[2]))
            .bind(to_i64(r.phases_us[3]))
            .bind(to_i64(r.phases_us[4]))
            .bind(&r.details_json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                out.duplicates += 1;
                continue;
            }
            out.stored += 1;
            out.affected.insert(r.check_id.clone());
            out.inserted.insert(r.result_id.clone());
            // A probe clock ahead of ours must not keep a region fresh forever.
            let at = r.started_at_ms.min(received_at_ms);
            sqlx::query(
                "INSERT INTO region_state (check_id, region, last_result_at_ms, last_received_at_ms, last_ok, \
                 consecutive_failures, consecutive_passes, last_code, last_message, last_details_json, last_probe) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 1 - ?5, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT(check_id, region) DO UPDATE SET \
                   consecutive_failures = CASE WHEN excluded.last_ok = 1 THEN 0 ELSE region_state.consecutive_failures + 1 END, \
                   consecutive_passes = CASE WHEN excluded.last_ok = 1 THEN region_state.consecutive_passes + 1 ELSE 0 END, \
                   last_result_at_ms = excluded.last_result_at_ms, last_received_at_ms = excluded.last_received_at_ms, \
                   last_ok = excluded.last_ok, last_code = excluded.last_code, last_message = excluded.last_message, \
                   last_details_json = excluded.last_details_json, last_probe = excluded.last_probe \
                 WHERE excluded.last_result_at_ms >= region_state.last_result_at_ms",
            )
            .bind(&r.check_id)
            .bind(&r.region)
            .bind(at)
            .bind(received_at_ms)
            .bind(i64::from(r.ok))
            .bind(&r.failure_code)
            .bind(&r.failure_message)
            .bind(&r.details_json)
            .bind(&r.probe)
            .execute(&mut *tx)
            .await?;
            for e in crate::event::from_result(r, at) {
                out.dns_changes += 1;
                let Some(id) = events::record(&mut tx, &e).await? else {
                    continue;
                };
                let (key, payload) = crate::event::notification(&e, id);
                for sink in event_sinks {
                    tracing::debug!(sink = %sink, action = "info", dedup_key = %key, "notification queued");
                    insert_event_notification(&mut tx, id, sink, &key, &payload, received_at_ms)
                        .await?;
                }
            }
            for c in crate::certificate::from_result(r) {
                certificates::record(&mut tx, &c, &r.check_id, &r.probe, &r.region, at).await?;
                out.certificates += 1;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Latest state of every (check, region).
    pub async fn region_states(&self) -> Result<Vec<RegionState>, StoreError> {
        let rows = sqlx::query("SELECT * FROM region_state ORDER BY check_id, region")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(region_state_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Latest state of one check in every region that reported it.
    pub async fn region_states_for(&self, check_id: &str) -> Result<Vec<RegionState>, StoreError> {
        let rows = sqlx::query("SELECT * FROM region_state WHERE check_id = ? ORDER BY region")
            .bind(check_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(region_state_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// The newest `limit` results of a check.
    pub async fn recent_results(
        &self,
        check_id: &str,
        limit: u32,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM results WHERE check_id = ? ORDER BY started_at_ms DESC, sequence DESC LIMIT ?")
            .bind(check_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(result_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Number of stored results (tests, metrics).
    pub async fn count_results(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM results")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Deletes results that arrived before `before_ms`; returns how many.
    pub async fn prune_results(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM results WHERE received_at_ms < ?")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Records a hello: the probe is connected, with this version and labels.
    pub async fn upsert_probe(&self, p: &ProbeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO probes (name, region, version, labels_json, last_seen_ms, connected) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET region = excluded.region, version = excluded.version, \
             labels_json = excluded.labels_json, last_seen_ms = excluded.last_seen_ms, connected = excluded.connected",
        )
        .bind(&p.name)
        .bind(&p.region)
        .bind(&p.version)
        .bind(&p.labels_json)
        .bind(p.last_seen_ms)
        .bind(i64::from(p.connected))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Updates a probe's last-seen time.
    pub async fn touch_probe(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE probes SET last_seen_ms = MAX(last_seen_ms, ?) WHERE name = ?")
            .bind(at_ms)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a heartbeat: last-seen and what the probe's outbox holds.
    pub async fn record_heartbeat(
        &self,
        name: &str,
        at_ms: i64,
        hb: &HeartbeatRow,
    ) -> Result<(), StoreError> {
        let dropped_json =
            serde_json::to_string(&hb.dropped_by_reason).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "UPDATE probes SET last_seen_ms = MAX(last_seen_ms, ?), heartbeat_at_ms = ?, queued_results = ?, \
             dropped_results = ?, dropped_json = ? WHERE name = ?",
        )
        .bind(at_ms)
        .bind(at_ms)
        .bind(to_i64(hb.queued_results))
        .bind(to_i64(hb.dropped_results))
        .bind(dropped_json)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a probe connected or not.
    pub async fn set_probe_connected(
        &self,
        name: &str,
        connected: bool,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE probes SET connected = ?, last_seen_ms = MAX(last_seen_ms, ?) WHERE name = ?",
        )
        .bind(i64::from(connected))
        .bind(at_ms)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// At start no stream is open, whatever the last process recorded.
    pub async fn mark_all_probes_disconnected(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE probes SET connected = 0")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every probe that ever said hello.
    pub async fn probes(&self) -> Result<Vec<ProbeRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM probes ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(probe_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// The open alert of a check and kind, if any.
    pub async fn open_alert(
        &self,
        check_id: &str,
        kind: &str,
    ) -> Result<Option<AlertRow>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM alerts WHERE check_id = ? AND kind = ? AND state = 'open'")
                .bind(check_id)
                .bind(kind)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(alert_from).transpose().map_err(Into::into)
    }

    /// Every open alert, oldest first.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM alerts WHERE state = 'open' ORDER BY opened_at_ms, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(alert_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Open alerts first (newest first), then the newest resolved ones, `limit` in all.
    pub async fn alerts(&self, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM alerts ORDER BY state = 'open' DESC, opened_at_ms DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(alert_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Opens an alert and queues one trigger per sink, atomically. `None`
    /// when an alert of that check and kind is already open.
    pub async fn fire_alert(
        &self,
        alert: &NewAlert,
        sinks: &[String],
        payload_json: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query(
            "INSERT INTO alerts (check_id, probe, kind, dedup_key, state, severity, summary, regions_json, opened_at_ms) \
             VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.check_id)
        .bind(&alert.probe)
        .bind(&alert.kind)
        .bind(&alert.dedup_key)
        .bind(&alert.severity)
        .bind(&alert.summary)
        .bind(&alert.regions_json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let id = r.last_insert_rowid();
        for sink in sinks {
            tracing::debug!(sink = %sink, action = "trigger", dedup_key = %alert.dedup_key, "notification queued");
            insert_notification(
                &mut tx,
                id,
                sink,
                "trigger",
                &alert.dedup_key,
                payload_json,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Changes an open alert's severity and summary and queues a new trigger
    /// (same dedup key) per sink, atomically: PagerDuty updates the open
    /// incident's severity. `false` if the alert is not open.
    pub async fn escalate_alert(
        &self,
        alert_id: i64,
        severity: &str,
        summary: &str,
        sinks: &[String],
        payload_json: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let key: Option<String> = sqlx::query_scalar(
            "UPDATE alerts SET severity = ?, summary = ? WHERE id = ? AND state = 'open' RETURNING dedup_key",
        )
        .bind(severity)
        .bind(summary)
        .bind(alert_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Ok(false);
        };
        for sink in sinks {
            tracing::debug!(sink = %sink, action = "trigger", dedup_key = %key, severity, "escalation queued");
            insert_notification(&mut tx, alert_id, sink, "trigger", &key, payload_json, now)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Resolves an open alert and queues a resolve for every sink that got
    /// its trigger, atomically. Returns those sinks; `None` if it was not open.
    pub async fn resolve_alert(
        &self,
        alert_id: i64,
        payload_json: &str,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query("UPDATE alerts SET state = 'resolved', resolved_at_ms = ? WHERE id = ? AND state = 'open'")
            .bind(now)
            .bind(alert_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT sink, dedup_key FROM notifications WHERE alert_id = ? AND action = 'trigger' GROUP BY sink ORDER BY MIN(id)",
        )
        .bind(alert_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut sinks = Vec::new();
        for row in &rows {
            let sink: String = row.try_get("sink")?;
            let key: String = row.try_get("dedup_key")?;
            tracing::debug!(sink = %sink, action = "resolve", dedup_key = %key, "notification queued");
            insert_notification(&mut tx, alert_id, &sink, "resolve", &key, payload_json, now)
                .await?;
            sinks.push(sink);
        }
        tx.commit().await?;
        Ok(Some(sinks))
    }

    /// Pending notifications due by `now`, each the oldest pending one of its
    /// (sink, dedup_key): a resolve never overtakes its trigger.
    pub async fn due_notifications(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM notifications n WHERE n.state = 'pending' AND n.next_attempt_ms <= ? \
             AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.state = 'pending' AND p.sink = n.sink \
                             AND p.dedup_key = n.dedup_key AND p.id < n.id) \
             ORDER BY n.id LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(notification_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Earliest `next_attempt_ms` of any pending notification.
    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM notifications WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records a successful delivery.
    pub async fn mark_delivered(&self, id: i64, attempts: u32, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE notifications SET state = 'delivered', attempts = ?, delivered_ms = ?, last_error = NULL, \
                     first_attempt_ms = COALESCE(first_attempt_ms, ?) WHERE id = ?")
            .bind(i64::from(attempts))
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a failed attempt made at `now` to be retried at `next_attempt_ms`.
    pub async fn mark_retry(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET attempts = ?, next_attempt_ms = ?, last_error = ?, \
                     first_attempt_ms = COALESCE(first_attempt_ms, ?) WHERE id = ?",
        )
        .bind(i64::from(attempts))
        .bind(next_attempt_ms)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up on a notification (after an attempt made at `now`).
    pub async fn mark_failed(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET state = 'failed', attempts = ?, last_error = ?, \
             first_attempt_ms = COALESCE(first_attempt_ms, ?) WHERE id = ?",
        )
        .bind(i64::from(attempts))
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Postpones a notification without counting an attempt (rate limit).
    pub async fn defer_notification(
        &self,
        id: i64,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET next_attempt_ms = ? WHERE id = ? AND state = 'pending'",
        )
        .bind(next_attempt_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notifications of these alerts, oldest first (API).
    pub async fn notifications_for_alert(
        &self,
        alert_id: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert_id, sink, action, state, attempts, next_attempt_ms, last_error, delivered_ms \
             FROM notifications WHERE alert_id = ? ORDER BY id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(NotificationRow {
                id: row.try_get("id")?,
                alert_id: row.try_get("alert_id")?,
                sink: row.try_get("sink")?,
                action: row.try_get("action")?,
                state: row.try_get("state")?,
                attempts: count(row, "attempts")?,
                next_attempt_ms: row.try_get("next_attempt_ms")?,
                last_error: row.try_get("last_error")?,
                delivered_ms: row.try_get("delivered_ms")?,
            });
        }
        Ok(out)
    }

    /// Notifications by state.
    pub async fn notification_counts(&self) -> Result<NotificationCounts, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM notifications GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut c = NotificationCounts::default();
        for row in &rows {
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            match state.as_str() {
                "pending" => c.pending = n,
                "delivered" => c.delivered = n,
                _ => c.failed += n,
            }
        }
        Ok(c)
    }
}

async fn insert_notification(
    tx: &mut sqlx::SqliteTransaction<'_>,
    alert_id: i64,
    sink: &str,
    action: &str,
    dedup_key: &str,
    payload_json: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    // Due at once: an evaluation run with an injected future `now` (tests,
    // replays) must not park its notifications until that time comes.
    let due = now.min(now_ms());
    sqlx::query(
        "INSERT INTO notifications (alert_id, sink, action, dedup_key, payload_json, state, attempts, next_attempt_ms, created_ms) \
         VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
    )
    .bind(alert_id)
    .bind(sink)
    .bind(action)
    .bind(dedup_key)
    .bind(payload_json)
    .bind(due)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_event_notification(
    tx: &mut sqlx::SqliteTransaction<'_>,
    event_id: i64,
    sink: &str,
    dedup_key: &str,
    payload_json: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifications (event_id, sink, action, dedup_key, payload_json, state, attempts, next_attempt_ms, created_ms) \
         VALUES (?, ?, 'info', ?, ?, 'pending', 0, ?, ?)",
    )
    .bind(event_id)
    .bind(sink)
    .bind(dedup_key)
    .bind(payload_json)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the embedded migrations not yet applied, after bridging a
/// database from before sqlx's migrator ([`bridge_legacy`]).
pub async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    bridge_legacy(conn).await?;
    MIGRATOR.run(&mut *conn).await?;
    Ok(())
}

/// The file name releases up to 55d6181 recorded for a migration
/// (`0001_init.sql` for version 1, description `init`).
fn legacy_name(m: &Migration) -> String {
    format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_"))
}

/// One-time bridge from the store's own `schema_migrations` table: every
/// version recorded there is recorded in `_sqlx_migrations` as sqlx records
/// an applied migration (with this build's checksum of the same file, so
/// `Migrator::run` accepts it and applies only what is missing), then the
/// old table is dropped. One `BEGIN IMMEDIATE` transaction (SQLite DDL is
/// transactional): a crash anywhere before the commit leaves the database
/// as it was, and the next start bridges again; after the commit there is
/// no old table and this does nothing.
async fn bridge_legacy(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let legacy: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(LEGACY_MIGRATIONS_TABLE)
            .fetch_optional(&mut *tx)
            .await?;
    if legacy.is_none() {
        return Ok(());
    }
    let recorded: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, name FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    tx.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    let applied: Vec<i64> = tx
        .list_applied_migrations(MIGRATIONS_TABLE)
        .await?
        .iter()
        .map(|m| m.version)
        .collect();
    for (version, name) in &recorded {
        let Some(m) = MIGRATOR
            .iter()
            .find(|m| m.version == *version && legacy_name(m) == *name)
        else {
            return Err(StoreError::LegacyVersion {
                version: *version,
                name: name.clone(),
            });
        };
        if !applied.contains(version) {
            tx.skip(MIGRATIONS_TABLE, m).await?;
        }
    }
    sqlx::query("DROP TABLE schema_migrations")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let versions: Vec<i64> = recorded.iter().map(|(v, _)| *v).collect();
    tracing::info!(versions = ?versions, "recorded the schema_migrations versions in _sqlx_migrations and dropped schema_migrations");
    Ok(())
}

fn count(row: &SqliteRow, col: &str) -> Result<u32, sqlx::Error> {
    let v: i64 = row.try_get(col)?;
    Ok(u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

fn region_state_from(row: &SqliteRow) -> Result<RegionState, sqlx::Error> {
    Ok(RegionState {
        check_id: row.try_get("check_id")?,
        region: row.try_get("region")?,
        last_result_at_ms: row.try_get("last_result_at_ms")?,
        last_received_at_ms: row.try_get("last_received_at_ms")?,
        last_ok: row.try_get::<i64, _>("last_ok")? != 0,
        consecutive_failures: count(row, "consecutive_failures")?,
        consecutive_passes: count(row, "consecutive_passes")?,
        last_code: row.try_get("last_code")?,
        last_message: row.try_get("last_message")?,
        last_details_json: row.try_get("last_details_json")?,
        last_probe: row.try_get("last_probe")?,
    })
}

fn result_from(row: &SqliteRow) -> Result<ResultRow, sqlx::Error> {
    Ok(ResultRow {
        result_id: row.try_get("result_id")?,
        probe: row.try_get("probe")?,
        region: row.try_get("region")?,
        check_id: row.try_get("check_id")?,
        sequence: row.try_get("sequence")?,
        started_at_ms: row.try_get("started_at_ms")?,
        received_at_ms: row.try_get("received_at_ms")?,
        ok: row.try_get::<i64, _>("ok")? != 0,
        failure_code: row.try_get("failure_code")?,
        failure_message: row.try_get("failure_message")?,
        total_us: row.try_get("total_us")?,
        first_byte_us: row.try_get("first_byte_us")?,
        details_json: row.try_get("details_json")?,
    })
}

fn probe_from(row: &SqliteRow) -> Result<ProbeRow, sqlx::Error> {
    Ok(ProbeRow {
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        version: row.try_get("version")?,
        labels_json: row.try_get("labels_json")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        connected: row.try_get::<i64, _>("connected")? != 0,
        queued_results: u64::try_from(row.try_get::<i64, _>("queued_results")?).unwrap_or(0),
        dropped_results: u64::try_from(row.try_get::<i64, _>("dropped_results")?).unwrap_or(0),
        dropped_json: row.try_get("dropped_json")?,
        heartbeat_at_ms: row.try_get("heartbeat_at_ms")?,
    })
}

fn alert_from(row: &SqliteRow) -> Result<AlertRow, sqlx::Error> {
    Ok(AlertRow {
        id: row.try_get("id")?,
        check_id: row.try_get("check_id")?,
        probe: row.try_get("probe")?,
        kind: row.try_get("kind")?,
        dedup_key: row.try_get("dedup_key")?,
        state: row.try_get("state")?,
        severity: row.try_get("severity")?,
        summary: row.try_get("summary")?,
        regions_json: row.try_get("regions_json")?,
        opened_at_ms: row.try_get("opened_at_ms")?,
        resolved_at_ms: row.try_get("resolved_at_ms")?,
    })
}

fn notification_from(row: &SqliteRow) -> Result<Notification, sqlx::Error> {
    Ok(Notification {
        id: row.try_get("id")?,
        alert_id: row.try_get("alert_id")?,
        sink: row.try_get("sink")?,
        action: row.try_get("action")?,
        dedup_key: row.try_get("dedup_key")?,
        payload_json: row.try_get("payload_json")?,
        attempts: count(row, "attempts")?,
        created_ms: row.try_get("created_ms")?,
        first_attempt_ms: row.try_get("first_attempt_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, seq: u64, region: &str, ok: bool, at: i64) -> NewResult {
        NewResult {
            result_id: id.into(),
            probe: format!("p-{region}"),
            region: region.into(),
            check_id: "api".into(),
            sequence: seq,
            kind: "http".into(),
            started_at_ms: at,
            ok,
            failure_code: (!ok).then(|| "timeout".into()),
            failure_message: (!ok).then(|| "timed out".into()),
            phases_us: [1, 2, 3, 4, 5],
            details_json: "{}".into(),
        }
    }

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn resent_batch_is_stored_once_and_counters_do_not_move() {
        let (_d, s) = temp_store().await;
        let batch = vec![
            result("a", 1, "eu", false, 1000),
            result("b", 2, "eu", false, 2000),
        ];
        let first = s.ingest(batch.clone(), 3000).await.unwrap();
        assert_eq!((first.stored, first.duplicates), (2, 0));
        let again = s.ingest(batch, 4000).await.unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 2));
        assert!(again.affected.is_empty());
        assert_eq!(s.count_results().await.unwrap(), 2);
        let st = s.region_states_for("api").await.unwrap();
        assert_eq!(st[0].consecutive_failures, 2);
        assert_eq!(st[0].consecutive_passes, 0);
    }

    #[tokio::test]
    async fn older_results_do_not_rewind_region_state() {
        let (_d, s) = temp_store().await;
        s.ingest(vec![result("new", 2, "eu", true, 5000)], 6000)
            .await
            .unwrap();
        s.ingest(vec![result("old", 1, "eu", false, 1000)], 6000)
            .await
            .unwrap();
        let st = &s.region_states_for("api").await.unwrap()[0];
        assert!(st.last_ok);
        assert_eq!((st.consecutive_passes, st.consecutive_failures), (1, 0));
        assert_eq!(s.count_results().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn one_open_alert_per_check_and_resolves_follow_triggers() {
        let (_d, s) = temp_store().await;
        let a = NewAlert {
            check_id: "api".into(),
            probe: None,
            kind: "check_failing".into(),
            dedup_key: "outpost/api/check_failing".into(),
            severity: "critical".into(),
            summary: "x".into(),
            regions_json: "[]".into(),
        };
        let sinks = vec!["pd".to_owned(), "log".to_owned()];
        let id = s.fire_alert(&a, &sinks, "{}", 1).await.unwrap().unwrap();
        assert_eq!(s.fire_alert(&a, &sinks, "{}", 2).await.unwrap(), None);
        let resolved = s.resolve_alert(id, "{}", 3).await.unwrap().unwrap();
        assert_eq!(resolved, sinks);
        // Only the first pending notification per (sink, key) is due.
        let due = s.due_notifications(10, 100).await.unwrap();
        assert_eq!(
            due.iter().map(|n| n.action.as_str()).collect::<Vec<_>>(),
            vec!["trigger", "trigger"]
        );
        s.mark_delivered(due[0].id, 1, 11).await.unwrap();
        let due = s.due_notifications(10, 100).await.unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(
            (due[0].sink.as_str(), due[0].action.as_str()),
            ("log", "trigger")
        );
        assert_eq!(
            (due[1].sink.as_str(), due[1].action.as_str()),
            ("pd", "resolve")
        );
        assert_eq!(s.resolve_alert(id, "{}", 4).await.unwrap(), None);
    }

    /// A database as releases up to 55d6181 left it: `schema_migrations`
    /// listing the first `upto` migrations, each applied.
    async fn legacy_db(path: &Path, upto: usize) -> SqlitePool {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .unwrap()
            .filename(path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for m in MIGRATOR.iter().take(upto) {
            sqlx::raw_sql(m.sql.clone()).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO schema_migrations VALUES ($1, $2, 0)")
                .bind(m.version)
                .bind(legacy_name(m))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool
    }

    async fn table_exists(s: &Store, name: &str) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sqlite_master WHERE name = $1")
            .bind(name)
            .fetch_one(&s.pool)
            .await
            .unwrap()
            == 1
    }

    /// `_sqlx_migrations` as (version, checksum, installed_on).
    async fn applied(s: &Store) -> Vec<(i64, Vec<u8>, String)> {
        sqlx::query_as(
            "SELECT version, checksum, CAST(installed_on AS TEXT) FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_v2_database_keeps_its_outbox_through_the_v3_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        let pool = legacy_db(&path, 2).await;
        sqlx::raw_sql(
            "INSERT INTO alerts (check_id, kind, dedup_key, state, severity, summary, opened_at_ms) \
             VALUES ('api', 'check_failing', 'outpost/api/check_failing', 'open', 'critical', 'x', 1); \
             INSERT INTO notifications (alert_id, sink, action, dedup_key, payload_json, state, next_attempt_ms, created_ms) \
             VALUES (1, 'pd', 'trigger', 'outpost/api/check_failing', '{}', 'pending', 1, 1);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let s = Store::open(&path).await.unwrap();
        assert!(!table_exists(&s, LEGACY_MIGRATIONS_TABLE).await);
        let versions: Vec<i64> = applied(&s).await.iter().map(|a| a.0).collect();
        assert_eq!(versions, vec![1, 2, 3], "1 and 2 bridged, 3 applied");
        let due = s.due_notifications(10, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].alert_id, Some(1));
        assert_eq!(
            s.resolve_alert(1, "{}", 5).await.unwrap(),
            Some(vec!["pd".to_owned()])
        );
    }

    #[tokio::test]
    async fn migrations_are_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = Store::open(&path).await.unwrap();
        s.ingest(vec![result("a", 1, "eu", true, 1)], 2)
            .await
            .unwrap();
        let first = applied(&s).await;
        assert_eq!(first.len(), MIGRATOR.iter().count());
        s.close().await;
        let s = Store::open(&path).await.unwrap();
        assert_eq!(s.count_results().await.unwrap(), 1);
        assert_eq!(applied(&s).await, first);
        assert!(!table_exists(&s, LEGACY_MIGRATIONS_TABLE).await);
    }

    /// Editing an applied migration would make every existing database
    /// refuse to start (sqlx compares checksums): add a new file instead.
    #[test]
    fn applied_migrations_are_frozen() {
        let sums: Vec<(i64, String)> = MIGRATOR
            .iter()
            .map(|m| {
                let hex: String = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
                (m.version, hex)
            })
            .collect();
        assert_eq!(
            sums[..3],
            [
                (1, "87b287201be53251707a970c88c1f2bf0443ab6fc0a67fd44267d57fd9b398d133dffdfee6b3bfc8624b440d38b7c129".to_owned()),
                (2, "ae3f8fc58bbd07db74a40d94de1a1dc6073176c87374eaeb5d1236577583d500c65f148da75b6d04141efc44a26bd937".to_owned()),
                (3, "bfbde94720fc3221c9bb7d719b4360b976b9054862e74d60eb2d0ba69575fd5d6c0181bdf60b5a71286e73265e745d12".to_owned()),
            ]
        );
        let names: Vec<String> = MIGRATOR.iter().map(legacy_name).collect();
        assert_eq!(
            names[..3],
            [
                "0001_init.sql",
                "0002_offline_and_outbox.sql",
                "0003_events_and_certificates.sql"
            ]
        );
    }

    #[tokio::test]
    async fn a_bridge_that_fails_changes_nothing_and_one_half_done_completes() {
        let dir = tempfile::tempdir().unwrap();
        // schema_migrations names a version this build does not have.
        let path = dir.path().join("newer.db");
        let pool = legacy_db(&path, 3).await;
        sqlx::query("INSERT INTO schema_migrations VALUES (99, '0099_future.sql', 0)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let err = Store::open(&path).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::LegacyVersion { version: 99, .. }),
            "{err}"
        );
        let options = SqliteConnectOptions::from_str("sqlite://")
            .unwrap()
            .filename(&path);
        let s = Store {
            pool: SqlitePool::connect_with(options).await.unwrap(),
        };
        assert!(table_exists(&s, LEGACY_MIGRATIONS_TABLE).await);
        assert!(
            !table_exists(&s, MIGRATIONS_TABLE).await,
            "the bridge's own table was rolled back with it"
        );
        s.close().await;

        // Both tables, some versions already in sqlx's (an older binary
        // started after a newer one bridged): each version once, old table gone.
        let path = dir.path().join("both.db");
        let pool = legacy_db(&path, 3).await;
        let mut conn = pool.acquire().await.unwrap();
        conn.ensure_migrations_table(MIGRATIONS_TABLE)
            .await
            .unwrap();
        conn.skip(MIGRATIONS_TABLE, MIGRATOR.iter().next().unwrap())
            .await
            .unwrap();
        drop(conn);
        pool.close().await;
        let s = Store::open(&path).await.unwrap();
        let versions: Vec<i64> = applied(&s).await.iter().map(|a| a.0).collect();
        assert_eq!(versions, vec![1, 2, 3]);
        assert!(!table_exists(&s, LEGACY_MIGRATIONS_TABLE).await);
    }

    /// The database a real controller at 55d6181 wrote (see
    /// `tests/fixtures/README.md`) opens, migrated once, every row readable,
    /// its open alerts still open with their pending notifications due.
    #[tokio::test]
    async fn the_55d6181_database_is_bridged_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outpost.db");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-55d6181.db"),
            &path,
        )
        .unwrap();
        let s = Store::open(&path).await.unwrap();
        assert!(!table_exists(&s, LEGACY_MIGRATIONS_TABLE).await);
        let first = applied(&s).await;
        let embedded: Vec<(i64, Vec<u8>)> = MIGRATOR
            .iter()
            .map(|m| (m.version, m.checksum.to_vec()))
            .collect();
        let recorded: Vec<(i64, Vec<u8>)> = first.iter().map(|a| (a.0, a.1.clone())).collect();
        assert_eq!(recorded, embedded);

        // Every row reads back through the API.
        let states = s.region_states().await.unwrap();
        assert_eq!(states.len(), 30);
        let mut checks: Vec<&str> = states.iter().map(|r| r.check_id.as_str()).collect();
        checks.dedup();
        let mut results = 0;
        for c in &checks {
            let rows = s.recent_results(c, 1000).await.unwrap();
            assert!(
                rows.iter()
                    .all(|r| &r.check_id == c && !r.details_json.is_empty())
            );
            results += rows.len();
        }
        assert_eq!(results, 60);
        assert_eq!(s.count_results().await.unwrap(), 60);
        let probes = s.probes().await.unwrap();
        assert_eq!(probes.len(), 3);
        assert!(probes.iter().all(|p| p.heartbeat_at_ms.is_some()));
        let alerts = s.alerts(100).await.unwrap();
        assert_eq!(alerts.len(), 10);
        let mut alert_notifications = 0;
        for a in &alerts {
            alert_notifications += s.notifications_for_alert(a.id).await.unwrap().len();
        }
        assert_eq!(alert_notifications, 22);
        let c = s.notification_counts().await.unwrap();
        assert_eq!((c.pending, c.delivered, c.failed), (11, 12, 0));
        let events = s.events(None, 100).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "dns_change");
        assert_eq!(events[0].regions, vec!["ap-south"]);
        assert_eq!(s.certificates().await.unwrap().len(), 6);
        assert_eq!(s.certificate_sightings().await.unwrap().len(), 33);

        // Open alerts are still open; each has its webhook trigger due, and
        // the resolved one's webhook resolve still waits behind its trigger.
        let open = s.open_alerts().await.unwrap();
        assert_eq!(open.len(), 9);
        let kinds: BTreeSet<&str> = open.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["certificate_expiring", "check_failing", "probe_offline"])
        );
        // An hour after the fixture was written (whatever this machine's clock says).
        let later = 1_796_127_300_000;
        let due = s.due_notifications(later, 100).await.unwrap();
        assert_eq!(due.len(), 10, "{due:#?}");
        assert!(
            due.iter()
                .all(|n| n.sink == "hook" && n.action == "trigger")
        );
        for a in &open {
            assert!(due.iter().any(|n| n.alert_id == Some(a.id)), "{a:?}");
        }
        let resolved = alerts.iter().find(|a| a.state == "resolved").unwrap();
        assert_eq!(resolved.kind, "check_failing");
        let ns = s.notifications_for_alert(resolved.id).await.unwrap();
        let hook_resolve = ns
            .iter()
            .find(|n| n.sink == "hook" && n.action == "resolve")
            .unwrap();
        assert_eq!(hook_resolve.state, "pending");
        assert!(due.iter().all(|n| n.id != hook_resolve.id));

        // It keeps working: a resolve queues for both sinks that got the trigger.
        let sinks = s.resolve_alert(open[0].id, "{}", now_ms()).await.unwrap();
        assert_eq!(sinks, Some(vec!["console".to_owned(), "hook".to_owned()]));

        // Re-opening does not migrate again.
        s.close().await;
        let s = Store::open(&path).await.unwrap();
        assert_eq!(applied(&s).await, first);
        assert_eq!(s.open_alerts().await.unwrap().len(), 8);
    }
}
