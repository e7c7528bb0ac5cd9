//! The store: every SQL statement of the controller lives in this module
//! and its submodules, one per concern: `store/results.rs` (`results`,
//! `region_state`, the ingest transaction), `probes.rs`, `alerts.rs`,
//! `notifications.rs` (the outbox), `events.rs` and `certificates.rs`. This
//! file holds the pool, open/close, migrations and everything specific to
//! the engine.
//!
//! Design note.
//! - **Engine.** SQLite through sqlx, one file (`store.path`), WAL journal,
//!   `synchronous = NORMAL` (with WAL a committed transaction survives a
//!   process crash; a power loss may roll back the last transactions, whose
//!   acks were already sent — accepted for the single-node default),
//!   `busy_timeout` 5 s, foreign keys on. Writers open
//!   `BEGIN IMMEDIATE` (`Store::begin_write`) so a read-then-write
//!   transaction never fails on a lock upgrade. Everything engine-specific
//!   is in this file: the [`Db`] alias every query is typed by, the
//!   connection options and pragmas, `BEGIN IMMEDIATE`, the migrations
//!   directory. The SQL itself is written for SQLite and PostgreSQL alike:
//!   `$N` placeholders, `RETURNING id`, `CASE WHEN` instead of the scalar
//!   `MAX(a, b)`, booleans and timestamps as INTEGER (read as booleans with
//!   `col <> 0`), unsigned counts read as `i64` and converted.
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
//!   `0003_events_and_certificates.sql`, `0004_region_state_kind.sql`,
//!   `0005_alert_timeline.sql`, `0006_notification_attempts.sql`,
//!   `0007_flapping.sql`):
//!   `results` (one row per result, keyed by the probe-generated
//!   `result_id`), `region_state` (latest state per check × region: the
//!   alert rule's only input, with the newest result's kind and details),
//!   `probes` (hello
//!   data, last seen, and the latest heartbeat: queued and dropped results,
//!   by reason), `alerts` (check alerts and fleet-level alerts, which name a
//!   probe or a certificate instead of a check; while open, their summary,
//!   regions and code follow the current state; `flapping` marks a check
//!   alert opened or held by flap detection), `alert_timeline` (every
//!   change of an alert: fired, updated, notified, escalated, resolved),`notifications` (the
//!   persisted outbox; each row belongs to an alert or to an event),
//!   `notification_attempts` (every delivery attempt: sink, time, outcome,
//!   HTTP status, a bounded excerpt with the sink's secrets scrubbed),
//!   `events` (DNS answer changes, one row per change however many probes
//!   reported it: [`crate::event`]) and the certificate inventory
//!   `certificates` + `certificate_sightings` ([`crate::certificate`]).
//!   Timestamps are unix milliseconds, booleans 0/1 (INTEGER). Details are
//!   stored as the probe sent them (`details_json`) and read once per row,
//!   as the row's kind, into the probe's typed `Observed`
//!   ([`crate::details::decode`]): rows hand out typed details only.
//! - **Ingest.** [`Store::ingest`] receives one [`IngestBatch`], built by
//!   [`crate::ingest::build_batch`] outside the transaction (each result
//!   with the events and certificate sightings its details report, and the
//!   sinks of event notifications), and only runs SQL: in one transaction
//!   it writes each new result, advances `region_state`, and writes that
//!   result's events and sightings — nothing for a result already stored,
//!   so a resent batch adds nothing. A new event's `info` notification
//!   needs the event's id, which only the insert knows: the batch carries
//!   the dedup key up to the id and the payload ([`EventNotice`]), the store
//!   appends the id to the key and records it in `notifications.event_id`.
//! - **Invariants.** (1) A result is stored at most once: `INSERT … ON
//!   CONFLICT (result_id) DO NOTHING`, and `region_state` only moves for
//!   rows actually inserted, so a resent batch changes nothing. (2)
//!   `region_state` only moves forward: a result older than the stored
//!   latest is kept in `results` but does not touch the counters. (3) At
//!   most one open alert per dedup key (deterministic per check and kind,
//!   per probe and kind, or per certificate), enforced by a partial unique
//!   index. (4) An alert change and its notifications commit in one
//!   transaction: there is never an open alert without its triggers queued,
//!   nor a resolved one without its resolves. (5) Per (sink, dedup key)
//!   notifications leave the outbox in id order:
//!   [`Store::due_notifications`] hands out only the oldest pending one, so
//!   a resolve waits until its trigger is delivered or has permanently
//!   failed.
//! - **Crash.** Ingest commits before the ack is sent: a crash before the
//!   ack makes the probe resend, and invariant (1) absorbs it —
//!   at-least-once on the wire, exactly once in the store. An open alert is
//!   a row, so a restarted controller reads it back and neither pages again
//!   nor forgets to resolve. A crash between an alert change and delivery
//!   leaves `pending` notifications, which the delivery worker sends after
//!   restart; a crash while a notification is being retried loses nothing
//!   either (its attempts, next attempt and first attempt are rows). A
//!   crash after a sink accepted a notification but before `delivered` is
//!   recorded sends it again: at-least-once delivery; the deterministic
//!   `dedup_key` makes PagerDuty collapse it. That window is the only way a
//!   sink sees an event twice. A crash during a migration rolls it back
//!   (each runs in a transaction), and the next start applies it again.

mod alerts;
mod certificates;
mod events;
mod notifications;
mod probes;
mod results;

use std::{path::Path, str::FromStr, time::Duration};

pub use alerts::{AlertContent, AlertRow, NewAlert, TimelineRow};
pub use certificates::{CertificateRow, SightingRow};
pub use events::{EventNotice, EventRow, IngestEvent};
pub use notifications::{
    Attempt, AttemptRow, FailingSink, Notification, NotificationCounts, NotificationRow,
};
pub use probes::{HeartbeatRow, ProbeRow};
pub use results::{
    IngestBatch, IngestItem, IngestOutcome, NewResult, RegionChanges, RegionState, ResultRow,
};

use sqlx::{
    ConnectOptions, Connection, SqliteConnection,
    migrate::{Migrate, Migration, Migrator},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// The database engine every query is typed by. Switching engines starts
/// here and in [`Store::open`], `Store::begin_write` and [`migrate`].
pub type Db = sqlx::Sqlite;
/// A transaction on [`Db`].
pub(crate) type Tx<'c> = sqlx::Transaction<'c, Db>;

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
    pool: sqlx::Pool<Db>,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Counts and sequences are `u64` in Rust and signed 64-bit in SQL.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The connection settings of the design note.
fn connect_options(path: &Path) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true))
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
        let options = connect_options(path)?;
        // Migrate on a connection of its own, closed before the pool opens:
        // a pooled connection that read the schema before a migration
        // rebuilt a table would describe its queries with the old columns.
        let mut conn = options.connect().await?;
        let migrated = migrate(&mut conn).await;
        conn.close().await?;
        migrated?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    /// A write transaction. SQLite: `BEGIN IMMEDIATE` takes the write lock
    /// up front, so a transaction that reads and then writes never fails on
    /// a lock upgrade (it waits up to `busy_timeout` to start instead).
    pub(crate) async fn begin_write(&self) -> Result<Tx<'static>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
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
}

/// Applies the embedded migrations not yet applied, after bridging a
/// database from before sqlx's migrator (`bridge_legacy`).
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
    tracing::info!(versions = ?versions, "bridged schema_migrations to _sqlx_migrations");
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use sqlx::SqlitePool;

    use super::*;
    use crate::{
        alerting::{Action, AlertKind, AlertState, Severity, sink::NotificationState},
        event::EventKind,
    };

    pub(crate) fn result(id: &str, seq: u64, region: &str, ok: bool, at: i64) -> NewResult {
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
            details: crate::details::empty(),
        }
    }

    pub(crate) async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    /// `$N` binds by number in sqlx-sqlite too (SQLite itself treats `$1`
    /// as a named parameter): reused and out of order.
    #[tokio::test]
    async fn dollar_placeholders_bind_by_number() {
        let (_d, s) = temp_store().await;
        let text: String = sqlx::query_scalar("SELECT $2 || '-' || $1 || '-' || $2 || '-' || $3")
            .bind("a")
            .bind("b")
            .bind(7_i64)
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(text, "b-a-b-7");
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
        assert_eq!(
            versions,
            vec![1, 2, 3, 4, 5, 6, 7],
            "1 and 2 bridged, 3 to 7 applied"
        );
        let due = s.due_notifications(10, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].alert_id, Some(1));
        assert_eq!(
            s.resolve_alert(1, "{}", None, 5).await.unwrap(),
            Some(vec!["pd".to_owned()])
        );
    }

    #[tokio::test]
    async fn migrations_are_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = Store::open(&path).await.unwrap();
        s.ingest(IngestBatch::results(vec![result("a", 1, "eu", true, 1)], 2))
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
        let every: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions, every);
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

        // Every row reads back through the API, its details as its kind's
        // typed value: migration 4 gave each region state the kind of its
        // newest result.
        let kind_of = |o: &outpost_probe::check::Observed| o.kind().map(|k| k.as_str());
        let states = s.region_states().await.unwrap();
        assert_eq!(states.len(), 30);
        for st in &states {
            assert_eq!(
                kind_of(&st.last_details),
                Some(st.last_kind.as_str()),
                "{st:?}"
            );
        }
        let mut checks: Vec<&str> = states.iter().map(|r| r.check_id.as_str()).collect();
        checks.dedup();
        let mut results = 0;
        for c in &checks {
            let rows = s.recent_results(c, 1000).await.unwrap();
            for r in &rows {
                assert_eq!(&r.check_id, c);
                assert_eq!(kind_of(&r.details), Some(r.kind.as_str()), "{r:?}");
            }
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
        assert_eq!(events[0].kind, EventKind::DnsChange);
        assert_eq!(events[0].regions, vec!["ap-south"]);
        assert_eq!(s.certificates().await.unwrap().len(), 6);
        assert_eq!(s.certificate_sightings().await.unwrap().len(), 33);

        // Open alerts are still open; each has its webhook trigger due, and
        // the resolved one's webhook resolve still waits behind its trigger.
        let open = s.open_alerts().await.unwrap();
        assert_eq!(open.len(), 9);
        let kinds: BTreeSet<(AlertKind, Severity)> =
            open.iter().map(|a| (a.kind, a.severity)).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                (AlertKind::CheckFailing, Severity::Critical),
                (AlertKind::ProbeOffline, Severity::Error),
                (AlertKind::CertificateExpiring, Severity::Critical),
            ])
        );
        assert!(open.iter().all(|a| a.state == AlertState::Open));
        // An hour after the fixture was written (whatever this machine's clock says).
        let later = 1_796_127_300_000;
        let due = s.due_notifications(later, 100).await.unwrap();
        assert_eq!(due.len(), 10, "{due:#?}");
        assert!(
            due.iter()
                .all(|n| n.sink == "hook" && n.action == Action::Trigger)
        );
        for a in &open {
            assert!(due.iter().any(|n| n.alert_id == Some(a.id)), "{a:?}");
        }
        // Their payloads, written by 55d6181, parse into today's typed event.
        for n in &due {
            let event = crate::alerting::AlertEvent::from_outbox(n).expect("an old payload parses");
            assert_eq!(
                (event.action, event.dedup_key.as_str()),
                (n.action, n.dedup_key.as_str())
            );
        }
        let resolved = alerts
            .iter()
            .find(|a| a.state == AlertState::Resolved)
            .unwrap();
        assert_eq!(resolved.kind, AlertKind::CheckFailing);
        let ns = s.notifications_for_alert(resolved.id).await.unwrap();
        let hook_resolve = ns
            .iter()
            .find(|n| n.sink == "hook" && n.action == Action::Resolve)
            .unwrap();
        assert_eq!(hook_resolve.state, NotificationState::Pending);
        assert!(due.iter().all(|n| n.id != hook_resolve.id));

        // It keeps working: a resolve queues for both sinks that got the trigger.
        let sinks = s
            .resolve_alert(open[0].id, "{}", None, now_ms())
            .await
            .unwrap();
        assert_eq!(sinks, Some(vec!["console".to_owned(), "hook".to_owned()]));

        // Re-opening does not migrate again.
        s.close().await;
        let s = Store::open(&path).await.unwrap();
        assert_eq!(applied(&s).await, first);
        assert_eq!(s.open_alerts().await.unwrap().len(), 8);
    }
}
