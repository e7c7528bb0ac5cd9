//! The store: every SQL statement of the controller lives in this module
//! and its submodules, one per concern: `store/results.rs` (`results`,
//! `region_state`, the ingest transaction), `probes.rs`, `alerts.rs`,
//! `notifications.rs` (the outbox and delivery claims), `events.rs`,
//! `certificates.rs`, `lease.rs` (the evaluator lease and its fencing
//! epoch), `sessions.rs` (dashboard sessions) and `identities.rs` (probe
//! enrollment tokens and issued client certificates). This file holds the pool,
//! open/close, migrations and everything specific to an engine.
//!
//! Design note.
//! - **Engines.** SQLite (the default, `[store] path`) or PostgreSQL 15+
//!   (`[store] url`), both through one code path: [`Db`] is `sqlx::Any`,
//!   every statement is written once for both (`$N` placeholders, `RETURNING
//!   id`, `ON CONFLICT`, `CASE WHEN` instead of the scalar `MAX(a, b)`, no
//!   engine's own functions), and only a handful of places branch on
//!   [`Engine`]: the connection options (SQLite's pragmas run on every new
//!   connection: `Any` takes options from a URL only), `begin_write`
//!   (`BEGIN IMMEDIATE` on SQLite so a read-then-write transaction never
//!   fails on a lock upgrade, on a one-connection writer pool so writers
//!   queue in order in this process rather than in SQLite's unfair busy
//!   handler, where a saturated ingest once starved a writer past
//!   `busy_timeout`; plain `BEGIN`, READ COMMITTED, on PostgreSQL), the migrations directory, the `FOR UPDATE SKIP LOCKED` of
//!   delivery claims, and the lease SQL (PostgreSQL's clock). SQLite: WAL,
//!   `synchronous = NORMAL` (a committed transaction survives a process
//!   crash; a power loss may roll back the last ones, whose acks were
//!   already sent — accepted for the single-node default), `busy_timeout`
//!   5 s, foreign keys on. PostgreSQL: the server's durability settings;
//!   TLS with `sslmode=verify-full` when `ca_file` is set (rustls, ring).
//!   Values: integers are 64-bit everywhere (`BIGINT` on PostgreSQL),
//!   timestamps unix ms, booleans 0/1 read through `Flag` (`Any` decodes
//!   a boolean only from a native one), JSON lists as TEXT read through
//!   `JsonText`, the typed vocabulary (kinds, states, actions) as TEXT.
//! - **Why `Any`.** The alternative, generic code over `sqlx::Database`
//!   (or a macro expanding each statement per engine), runs exactly the
//!   native SQLite code. `Any` converts each bound value and each row
//!   (owned copies); one code path with one set of statements was chosen
//!   over two copies of every query's types and bounds. Its cost against
//!   the native build is still to be measured side by side on an idle
//!   machine (BENCHMARKS.md, "PostgreSQL and replicas").
//! - **Replicas** (PostgreSQL). Any number of controllers share one
//!   database. Ingest, API and pages run on every replica: invariants (1)
//!   and (2) below are enforced by the statements themselves (the primary
//!   key of `results`, the `WHERE` of the `region_state` upsert), so
//!   concurrent replicas cannot break them. Alert evaluation runs on one:
//!   the holder of the `leases` row (`lease.rs`, [`crate::alerting::leader`]);
//!   every alert change checks that row `FOR SHARE` in its own transaction
//!   and records the epoch on the alert and its notifications, so a
//!   deposed evaluator writes nothing. Delivery runs on every replica:
//!   [`Store::claim_notifications`] picks due rows `FOR UPDATE SKIP LOCKED`
//!   and marks them claimed for [`crate::alerting::sink::CLAIM`]; a claim
//!   that lapses (its replica died mid-send) is picked up again, which is
//!   the same at-least-once window as a crash on one node. Invariant (5)
//!   holds across replicas because a claimed notification is still
//!   pending, so its successors wait. Claim times use the claimer's clock:
//!   replicas' clocks must agree within a claim (60 s), as NTP gives.
//! - **Growth.** Results are pruned in batches
//!   ([`Store::prune_results`]: `DELETE … WHERE result_id IN (SELECT … LIMIT
//!   n)` through `results_by_received`, 5,000 rows a statement, a pause
//!   between): each batch is a short transaction, so no lock is held for
//!   long on either engine and ingest keeps flowing. Native partitioning
//!   by time would make a prune a `DROP` of old partitions, but needs the
//!   partition key in the primary key — and `results` is keyed by
//!   `result_id` alone, which is what makes a resent result idempotent
//!   across replicas; a partitioned table could only deduplicate within a
//!   partition, and a resend straddling a boundary would be stored twice.
//!   Batched deletes keep that guarantee; at 10,000 checks × 5 regions per
//!   minute (~830 rows/s) a day of history is ~72 M rows, pruned hourly in
//!   ~600 batches a run. Only the evaluator prunes.
//! - **Indexes**, each with the query that needs it (the PostgreSQL
//!   migration repeats this, statement by statement, beside each index):
//!   `results` PK (`result_id`): the dedup of every insert (`ON CONFLICT
//!   (result_id)`) and the batched prune's `IN (…)`; `results_by_check
//!   (check_id, started_at_ms DESC)`: [`Store::recent_results`] (check
//!   page, API); `results_by_received`: the prune's `received_at_ms < $1
//!   LIMIT n`. `region_state` PK (check, region): the ingest upsert,
//!   [`Store::region_states_for`] and the `check_id IN (…)` of
//!   [`Store::region_states_of`]. `alerts_one_open` (unique on
//!   `dedup_key` WHERE open): invariant (3), the insert of
//!   [`Store::fire_alert`]. `notifications_pending (state,
//!   next_attempt_ms)`: due and claimable notifications, and
//!   [`Store::next_notification_due`]; `notifications_by_key (sink,
//!   dedup_key, id)`: the "no older pending one" test of invariant (5);
//!   `notifications_by_alert`: [`Store::notifications_for_alert`] and the
//!   resolve's "which sinks got the trigger". `events_by_at`: the event
//!   list and [`Store::prune_events`]; `events_by_check`: one check's
//!   events; `events_by_key`: merging a report into the same change.
//!   `certificates_by_expiry`: the inventory by expiry; `leases` PK: the
//!   lease row. `rollups` PK (series, resolution, bucket): the batch's
//!   read and upsert of its rows and a check's range read;
//!   `rollups_by_age (resolution, bucket_ms)` (on PostgreSQL
//!   `rollups_fold_order (resolution, bucket_ms, series)`, the order
//!   SQLite's index has implicitly): the fold's pages of every series'
//!   minutes in (bucket, series) order and the batched retention prune; `rollup_series`
//!   UNIQUE (check_id, region): a batch's series lookup and the overview
//!   page's [`Store::summaries_of`] (`check_id IN (…)`); `rollup_summary`
//!   PK. Only on PostgreSQL, where the database is shared and
//!   grows: `alerts_open_by_check (check_id, kind) WHERE open`:
//!   [`Store::open_alert`], which the evaluator runs per check and kind on
//!   every pass, and [`Store::open_alerts`]; `notifications_by_event`: the
//!   `ON DELETE SET NULL` of each event the prune deletes;
//!   `sightings_by_seen (last_seen_ms)`: [`Store::prune_certificates`] and
//!   the sightings list. Only on SQLite (from releases that shipped them):
//!   `alerts_by_opened` and `sightings_by_check`, which no current
//!   statement needs ([`Store::alerts`] orders by a `CASE` first). Nothing
//!   else is indexed: every other query reads a small table whole
//!   (`probes`, `region_state`).
//! - **Migrations.** `controller/migrations/{sqlite,postgres}/NNNN_name.sql`,
//!   embedded by `sqlx::migrate!` ([`MIGRATOR`], [`MIGRATOR_POSTGRES`]; the
//!   PostgreSQL set's 0001 is SQLite's 0001–0003 and 0005 in one, its 0002
//!   SQLite's 0004) and applied by [`migrate`] on a
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
//!   `0007_replicas.sql`: fencing epochs, delivery claims, `leases`;
//!   `0008_sessions.sql`; `0009_flapping.sql`; `0010_probe_identities.sql`;
//!   `0011_silences.sql`; `0012_history.sql`: `rollup_series` (integer
//!   key and cursor per check × region), `rollups` (minute / hour / day,
//!   binary bodies), `rollup_summary` (the overview's row per series) and
//!   `rollup_fold` (the fold's mark); minutes written by [`Store::ingest`]
//!   in its transaction through one call per batch, hours and days folded
//!   by [`Store::fold_rollups`], `store/rollups.rs`; the math and its
//!   design note are [`crate::history`]); `0013_alert_groups.sql`
//!   (`alert_groups`, [`crate::alerting::group`]);
//!   `0014_region_state_result.sql` (`region_state.last_result_id`):
//!   `results` (one row per result, keyed by the probe-generated
//!   `result_id`), `region_state` (latest state per check × region: the
//!   alert rule's only input, with the newest result's kind and id; its
//!   details are read from that `results` row, and copied into the state
//!   row only when the prune is about to delete it),
//!   `probes` (hello
//!   data, last seen, and the latest heartbeat: queued and dropped results,
//!   by reason), `alerts` (check alerts and fleet-level alerts, which name a
//!   probe or a certificate instead of a check; while open, their summary,
//!   regions and code follow the current state; `flapping` marks a check
//!   alert opened or held by flap detection, `suppressed_by` one recorded
//!   but not paged: [`crate::alerting::silence`]), `silences` (made from the
//!   dashboard or the API; those of the config file live in the config),
//!   `alert_timeline` (every
//!   change of an alert: fired, updated, notified, escalated, resolved),
//!   `alert_groups` (the notification groups of routes with `group_by`:
//!   [`crate::alerting::group`]), `notifications` (the
//!   persisted outbox; each row belongs to an alert, an event or a group),
//!   `notification_attempts` (every delivery attempt: sink, time, outcome,
//!   HTTP status, a bounded excerpt with the sink's secrets scrubbed),
//!   `events` (DNS answer changes, one row per change however many probes
//!   reported it: [`crate::event`]) and the certificate inventory
//!   `certificates` + `certificate_sightings` ([`crate::certificate`]), and
//!   `sessions` (dashboard logins, by the SHA-256 of the cookie's id:
//!   [`crate::auth::session`]), `enrollment_tokens` (one-time, by SHA-256)
//!   and `probe_certificates` (every issued probe client certificate, with
//!   its revocation: [`crate::identity`]).
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
//!   The statements are per batch, not per result (a round trip each on
//!   PostgreSQL): one multi-row `INSERT … ON CONFLICT (result_id) DO
//!   NOTHING RETURNING result_id` per 1,000 results (on SQLite, whose
//!   `BEGIN IMMEDIATE` is the only writer, one read of the ids already
//!   stored folded into one row of indexes, then the insert of the rest
//!   without `RETURNING`: a row out of SQLite's worker thread is a
//!   hand-off each; the streak read below folds the same way); then for the
//!   (check, region) keys the new results touch, one read of their
//!   counters (`FOR UPDATE` on PostgreSQL, after a placeholder row is
//!   inserted for a key without one, so every key is locked and a
//!   concurrent replica's batch for the same key waits), the counters
//!   advanced in memory exactly as one upsert per result in order would,
//!   and one multi-row upsert of the final rows; certificate sightings are
//!   coalesced per (fingerprint, check, probe, address) with their seen
//!   times widened, and one read says which are new (only those wake the
//!   inventory's evaluation before its minute tick) and which are due a
//!   write: new, changed, or last seen a minute or more before
//!   (`certificates::SIGHTING_REFRESH_MS`; the rest, and their
//!   certificates, are not rewritten). Chunks stay under
//!   SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
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

mod alert_history;
mod alerts;
mod attempts;
mod certificates;
mod events;
mod groups;
mod identities;
mod latest;
mod lease;
mod notifications;
mod probes;
mod results;
mod rollups;
mod sessions;
mod silences;

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, atomic::AtomicI64},
    time::Duration,
};

pub use alert_history::AlertFilter;
pub use alerts::{AlertContent, AlertRow, NewAlert, TimelineRow};
pub use certificates::{CertificateRow, SightingRow};
pub use events::{EventNotice, EventRow, IngestEvent};
pub use groups::{GroupNotificationRow, GroupRecord, GroupRow};
pub use identities::{EnrollmentTokenRow, ProbeCertificateRow};
pub use latest::LatestTimings;
pub use lease::{LEASE_NAME, Lease};
pub use notifications::{
    Attempt, AttemptRow, FailingSink, Notification, NotificationCounts, NotificationRow,
};
pub use probes::{HeartbeatRow, ProbeRow};
pub use results::{
    IngestBatch, IngestItem, IngestOutcome, NewResult, RegionChanges, RegionState, ResultRow,
};
pub use rollups::{Cursor, RollupRow, SeriesSummary};
pub use sessions::SessionRow;
pub use silences::{NewSilence, SilenceRow};

use outpost_probe::config::Secret;
use sqlx::{
    AnyConnection, Connection, Executor,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{Migrate, Migration, Migrator},
};

/// The database type every query is typed by: [`sqlx::Any`], which runs the
/// same `$N` SQL on SQLite and PostgreSQL (the measurement behind this
/// choice is in the design note).
pub type Db = sqlx::Any;
/// A transaction on [`Db`].
pub(crate) type Tx<'c> = sqlx::Transaction<'c, Db>;

/// Which engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One embedded file, one process (the default).
    Sqlite,
    /// A PostgreSQL server shared by any number of controller replicas.
    Postgres,
}

impl Engine {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// Where the store lives (`[store]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file, created if missing.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// `postgres://user:password@host:port/db` — a secret: it carries
        /// the password, and is never logged ([`Location::describe`]).
        url: Secret,
        /// CA certificate (PEM) to verify the server with; when set the
        /// connection requires TLS and checks the server's name
        /// (`sslmode=verify-full`).
        ca_file: Option<PathBuf>,
    },
}

impl Location {
    /// The engine of this location.
    pub fn engine(&self) -> Engine {
        match self {
            Location::Sqlite { .. } => Engine::Sqlite,
            Location::Postgres { .. } => Engine::Postgres,
        }
    }

    /// What may be logged: the SQLite path, or PostgreSQL's host, port and
    /// database — never the user or password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite { path } => format!("sqlite {}", path.display()),
            Location::Postgres { url, ca_file } => {
                let shown = AnyConnectOptions::from_str(url.expose())
                    .map(|o| {
                        let u = &o.database_url;
                        format!(
                            "{}:{}{}",
                            u.host_str().unwrap_or("?"),
                            u.port().unwrap_or(5432),
                            u.path()
                        )
                    })
                    .unwrap_or_else(|_| "(unparsable url)".to_owned());
                let tls = if ca_file.is_some() { " (tls)" } else { "" };
                format!("postgres {shown}{tls}")
            }
        }
    }
}

/// A validated `[store]` without retention (which the pruner reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Engine and where.
    pub location: Location,
    /// Most connections the pool opens.
    pub pool_size: u32,
}

impl StoreSpec {
    /// An SQLite file with the default pool.
    pub fn sqlite(path: impl Into<PathBuf>) -> StoreSpec {
        StoreSpec {
            location: Location::Sqlite { path: path.into() },
            pool_size: DEFAULT_SQLITE_POOL,
        }
    }

    /// A PostgreSQL URL without TLS and the default pool.
    pub fn postgres(url: impl Into<String>) -> StoreSpec {
        StoreSpec {
            location: Location::Postgres {
                url: Secret::new(url.into()),
                ca_file: None,
            },
            pool_size: DEFAULT_POSTGRES_POOL,
        }
    }
}

/// Pool size on SQLite: one writer at a time anyway; readers beside it.
pub const DEFAULT_SQLITE_POOL: u32 = 4;
/// Pool size on PostgreSQL, per replica.
pub const DEFAULT_POSTGRES_POOL: u32 = 10;

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
    /// An alert change was refused: this replica does not hold the
    /// evaluator lease under `epoch` (it was never leader, its lease
    /// expired, or another replica took over). Nothing was written.
    #[error("fenced: this replica is not the evaluator (epoch {epoch})")]
    Fenced {
        /// The epoch this replica believed it held (0: none).
        epoch: i64,
    },
}

/// The embedded SQLite migrations (`controller/migrations/sqlite/`),
/// applied by [`migrate`] and tracked by sqlx in [`MIGRATIONS_TABLE`]. Never
/// edit an applied one: its checksum is recorded in every database it ran on.
pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
/// The embedded PostgreSQL migrations (`controller/migrations/postgres/`).
pub static MIGRATOR_POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
/// Where sqlx records applied migrations (its default).
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// Where releases up to 55d6181 recorded them, `(version, name, applied_at_ms)`.
pub const LEGACY_MIGRATIONS_TABLE: &str = "schema_migrations";

/// SQLite settings of the design note, run on every new connection (the
/// `Any` driver takes its options from a URL, which cannot carry pragmas).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// A handle to the database (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    pool: sqlx::Pool<Db>,
    /// Where every write runs: transactions ([`Store::begin_write`]) and
    /// single writing statements alike. SQLite: a pool of one connection,
    /// so writers queue in this process, first come first served, instead
    /// of in SQLite's busy handler, which is not fair — under saturated
    /// ingest the one connection that always holds the lock re-takes it at
    /// once, and a writer on another connection polled past `busy_timeout`
    /// and failed with "database is locked". Reads keep `pool` (WAL: they
    /// never wait for the writer). PostgreSQL: the pool itself (row locks
    /// order writers).
    writer: sqlx::Pool<Db>,
    engine: Engine,
    /// The evaluator epoch this replica holds, 0 when it holds none. Every
    /// alert change is written under it ([`Store::fence`]).
    epoch: Arc<AtomicI64>,
    /// `stale_after` per check for the rollups' STALE gaps
    /// ([`Store::set_stale_after`]).
    stale_after: Arc<std::sync::RwLock<Arc<std::collections::HashMap<String, i64>>>>,
}

/// `($1, $2, …), (…)`: `rows` tuples of `cols` placeholders each, for
/// multi-row statements ([`built`]). The only text spliced into SQL at run
/// time (numbers made here: hence `AssertSqlSafe`); every value is bound.
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for row in 0..rows {
        s.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..cols {
            if col > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(row * cols + col + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// A statement built at run time (only `$N` placeholders and constants
/// are formatted into it, every value is bound), for the engine it runs
/// on. On SQLite the multi-row statements' `$N` become anonymous `?`
/// (see [`positional`]).
pub(crate) fn built(sqlite: bool, sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(if sqlite { positional(sql) } else { sql })
}

/// Whether `tx` runs on SQLite.
pub(crate) fn is_sqlite(tx: &Tx<'_>) -> bool {
    tx.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME
}

/// `$1 … $P`, each once and in order, rewritten as anonymous `?` (bound by
/// position, the same values); any other use of `$N` is returned as is.
/// Why: SQLite keeps named parameters (`$N`, `?NNN` too) in a list it
/// searches linearly, and sqlx asks each parameter's name when binding, so
/// a multi-row statement of P parameters costs O(P²) per execution — with
/// 1,000-row chunks (17,000 parameters) that was 58 % of the controller's
/// CPU in a saturated-ingest profile (`sqlite3VListNumToName`), and
/// ingest fell to 2,525 results/s. Anonymous parameters have no names.
pub(crate) fn positional(sql: String) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut next, mut i, mut copied) = (1u64, 0usize, 0usize);
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let mut j = i + 1;
            let mut n = 0u64;
            while let Some(d) = b.get(j).filter(|d| d.is_ascii_digit()) {
                n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                j += 1;
            }
            if n != next {
                return sql;
            }
            out.push_str(&sql[copied..i]);
            out.push('?');
            copied = j;
            next += 1;
            i = j;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[copied..]);
    out
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

/// A boolean column: INTEGER 0/1 in both engines (`Any` decodes a boolean
/// only from a native boolean, which SQLite does not have).
#[derive(Debug, Clone, Copy, sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct Flag(i64);

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0 != 0
    }
}

/// A JSON list of strings in a TEXT column (`Any` has no JSON type).
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct JsonText(String);

impl TryFrom<JsonText> for Vec<String> {
    type Error = serde_json::Error;
    fn try_from(t: JsonText) -> Result<Vec<String>, serde_json::Error> {
        serde_json::from_str(&t.0)
    }
}

/// The typed vocabulary is stored as TEXT with the words its serde form
/// uses; the derives give every engine `Encode`, this gives `Any` the rest.
macro_rules! text_enum_for_any {
    ($($t:ty),* $(,)?) => {$(
        impl sqlx::Type<Db> for $t {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <str as sqlx::Type<Db>>::type_info()
            }
            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <str as sqlx::Type<Db>>::compatible(ty)
            }
        }
        impl<'r> sqlx::Decode<'r, Db> for $t {
            fn decode(v: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, Db>>::decode(v)?;
                Ok(serde_json::from_value(serde_json::Value::String(text.to_owned()))?)
            }
        }
    )*};
}
text_enum_for_any!(
    crate::alerting::AlertKind,
    crate::alerting::AlertState,
    crate::alerting::Action,
    crate::alerting::Severity,
    crate::alerting::sink::NotificationState,
    crate::alerting::sink::AttemptOutcome,
    crate::alerting::Change,
    crate::event::EventKind,
);

/// The `Any` options for a location.
fn any_options(location: &Location) -> Result<AnyConnectOptions, sqlx::Error> {
    match location {
        Location::Sqlite { path } => {
            let mut o = AnyConnectOptions::from_str("sqlite://")?;
            // The path goes in as a URL path, so a name with '?' or '#' stays one name.
            o.database_url.set_path(
                &path
                    .to_string_lossy()
                    .replace('%', "%25")
                    .replace('?', "%3F")
                    .replace('#', "%23"),
            );
            o.database_url.query_pairs_mut().append_pair("mode", "rwc");
            Ok(o)
        }
        Location::Postgres { url, ca_file } => {
            let mut o = AnyConnectOptions::from_str(url.expose())?;
            if let Some(ca) = ca_file {
                o.database_url
                    .query_pairs_mut()
                    .append_pair("sslmode", "verify-full")
                    .append_pair("sslrootcert", &ca.to_string_lossy());
            }
            Ok(o)
        }
    }
}

impl Store {
    /// Opens (creating if missing) an SQLite file and applies migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::connect(&StoreSpec::sqlite(path)).await
    }

    /// Connects to the store of `spec` and applies migrations.
    pub async fn connect(spec: &StoreSpec) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        if let Location::Sqlite { path } = &spec.location {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                // Best effort: a missing directory then shows up as the open error.
                let _ = outpost_probe::private::create_dir_all(dir);
            }
            // 0600 before SQLite sees it: its -wal and -shm files take the
            // database file's mode. Best effort like the directory
            // (":memory:" and URIs are not files).
            if !path.as_os_str().to_string_lossy().starts_with(':') {
                let _ = outpost_probe::private::ensure_file(path);
            }
        }
        let engine = spec.location.engine();
        let options = any_options(&spec.location)?;
        // Migrate on a connection of its own, closed before the pool opens:
        // a pooled connection that read the schema before a migration
        // rebuilt a table would describe its queries with the old columns.
        let mut conn = AnyConnection::connect_with(&options).await?;
        if engine == Engine::Sqlite {
            conn.execute(SQLITE_PRAGMAS).await?;
        }
        let migrated = migrate(&mut conn, engine).await;
        conn.close().await?;
        migrated?;
        let pool_options = |size: u32| {
            let mut pool = AnyPoolOptions::new()
                .max_connections(size.max(1))
                .acquire_timeout(Duration::from_secs(10));
            if engine == Engine::Sqlite {
                // No ping before each acquire: an SQLite connection is a
                // file handle on a worker thread, with no server or network
                // to go stale, and the ping was one more round trip to that
                // thread per transaction (2.4 % of the controller's CPU at
                // 20 ms batches; BENCHMARKS.md, session 9). A worker that
                // died fails the next statement, which fails the batch (not
                // acked, resent). PostgreSQL keeps the ping: a connection
                // the server or a proxy dropped is found before it is used.
                pool = pool.test_before_acquire(false);
                pool = pool.after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                });
            }
            pool
        };
        let pool = pool_options(spec.pool_size)
            .connect_with(options.clone())
            .await?;
        let writer = match engine {
            Engine::Sqlite => pool_options(1).connect_with(options).await?,
            Engine::Postgres => pool.clone(),
        };
        // One process owns an SQLite file: it is always the evaluator.
        let epoch = if engine == Engine::Sqlite { 1 } else { 0 };
        Ok(Store {
            pool,
            writer,
            engine,
            epoch: Arc::new(AtomicI64::new(epoch)),
            stale_after: Arc::default(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// True when other replicas may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.engine == Engine::Postgres
    }

    /// A write transaction. SQLite: `BEGIN IMMEDIATE` takes the write lock
    /// up front, so a transaction that reads and then writes never fails on
    /// a lock upgrade (it waits up to `busy_timeout` to start instead).
    /// PostgreSQL: `BEGIN` (READ COMMITTED; conflicts are row locks).
    pub(crate) async fn begin_write(&self) -> Result<Tx<'static>, sqlx::Error> {
        match self.engine {
            Engine::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => self.pool.begin().await,
        }
    }

    /// `SELECT 1` (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// Applies the embedded migrations of `engine` not yet applied; on SQLite
/// after bridging a database from before sqlx's migrator (`bridge_legacy`).
pub async fn migrate(conn: &mut AnyConnection, engine: Engine) -> Result<(), StoreError> {
    match engine {
        Engine::Sqlite => {
            bridge_legacy(conn).await?;
            MIGRATOR.run(&mut *conn).await?;
        }
        Engine::Postgres => MIGRATOR_POSTGRES.run(&mut *conn).await?,
    }
    Ok(())
}

/// The file name releases up to 55d6181 recorded for a migration
/// (`0001_init.sql` for version 1, description `init`).
fn legacy_name(m: &Migration) -> String {
    format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_"))
}

/// One-time bridge from the store's own `schema_migrations` table (SQLite
/// only): every version recorded there is recorded in `_sqlx_migrations` as
/// sqlx records an applied migration (with this build's checksum of the same
/// file, so `Migrator::run` accepts it and applies only what is missing),
/// then the old table is dropped. One `BEGIN IMMEDIATE` transaction (SQLite
/// DDL is transactional): a crash anywhere before the commit leaves the
/// database as it was, and the next start bridges again; after the commit
/// there is no old table and this does nothing.
async fn bridge_legacy(conn: &mut AnyConnection) -> Result<(), StoreError> {
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

    use sqlx::{SqlitePool, sqlite::SqliteConnectOptions};

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
        }
    }

    pub(crate) async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    /// What keeps a test's database alive.
    #[test]
    fn positional_parameters_replace_dollar_numbers_only_when_each_appears_once_in_order() {
        assert_eq!(
            positional("INSERT INTO t VALUES ($1, $2, 'x'), ($3, $4)".into()),
            "INSERT INTO t VALUES (?, ?, 'x'), (?, ?)"
        );
        assert_eq!(positional("SELECT 1".into()), "SELECT 1");
        let reused = "UPDATE t SET a = $1 WHERE b = $2 AND c <> $1";
        assert_eq!(positional(reused.into()), reused);
        let unordered = "VALUES ($2, $1)";
        assert_eq!(positional(unordered.into()), unordered);
        assert_eq!(
            positional("VALUES ($9, $10)".into()),
            "VALUES ($9, $10)",
            "numbering must start at 1"
        );
    }

    #[derive(Debug)]
    #[allow(dead_code)] // held for its lifetime only
    pub(crate) enum Keep {
        Dir(tempfile::TempDir),
        Pg(outpost_testkit::postgres::PgDatabase),
    }

    /// A fresh PostgreSQL store in a database of its own, holding the
    /// evaluator lease (so alert changes are not fenced); `None` only with
    /// `OUTPOST_TEST_POSTGRES=skip`.
    pub(crate) async fn temp_pg_store() -> Option<(outpost_testkit::postgres::PgDatabase, Store)> {
        let db = outpost_testkit::postgres::database()?;
        let s = Store::connect(&StoreSpec::postgres(&db.url)).await.unwrap();
        let epoch = s
            .acquire_lease("test", Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        s.set_epoch(epoch);
        Some((db, s))
    }

    /// The same fresh store on every engine: each store test runs its body
    /// once per engine (SQLite, then PostgreSQL).
    pub(crate) async fn temp_stores() -> Vec<(Keep, Store)> {
        let (d, s) = temp_store().await;
        let mut out = vec![(Keep::Dir(d), s)];
        if let Some((db, s)) = temp_pg_store().await {
            out.push((Keep::Pg(db), s));
        }
        out
    }

    /// `$N` binds by number in sqlx-sqlite too (SQLite itself treats `$1`
    /// as a named parameter): reused and out of order.
    #[tokio::test]
    async fn dollar_placeholders_bind_by_number() {
        for (_d, s) in temp_stores().await {
            let text: String =
                sqlx::query_scalar("SELECT $2 || '-' || $1 || '-' || $2 || '-' || $3")
                    .bind("a")
                    .bind("b")
                    .bind(7_i64)
                    .fetch_one(&s.pool)
                    .await
                    .unwrap();
            assert_eq!(text, "b-a-b-7");
        }
    }

    /// PostgreSQL's 0002 (SQLite's 0004) on a database that has rows: each
    /// region state gets the kind of its newest stored result, and reads
    /// back typed as that kind.
    #[tokio::test]
    async fn postgres_0002_gives_existing_region_states_their_kind() {
        let Some(db) = outpost_testkit::postgres::database() else {
            return;
        };
        // Store::open installs the drivers; this test connects without it
        // (alone in its process under nextest, nothing else has).
        sqlx::any::install_default_drivers();
        let options = any_options(&Location::Postgres {
            url: Secret::new(db.url.clone()),
            ca_file: None,
        })
        .unwrap();
        let mut conn = AnyConnection::connect_with(&options).await.unwrap();
        conn.ensure_migrations_table(MIGRATIONS_TABLE)
            .await
            .unwrap();
        let first = MIGRATOR_POSTGRES.iter().next().unwrap();
        conn.apply(MIGRATIONS_TABLE, first).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO results (result_id, probe, region, check_id, sequence, kind, started_at_ms, received_at_ms, ok, details_json) \
             VALUES ('old', 'p', 'eu', 'dns', 1, 'dns', 1, 1, 1, '{}'), ('new', 'p', 'eu', 'dns', 2, 'dns', 2, 2, 1, '{}'); \
             INSERT INTO region_state (check_id, region, last_result_at_ms, last_received_at_ms, last_ok, \
               consecutive_failures, consecutive_passes, last_details_json, last_probe) \
             VALUES ('dns', 'eu', 2, 2, 1, 0, 2, '{}', 'p'), ('gone', 'eu', 2, 2, 1, 0, 1, '{}', 'p');",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let s = Store::connect(&StoreSpec::postgres(&db.url)).await.unwrap();
        let kinds: Vec<(String, String)> = s
            .region_states()
            .await
            .unwrap()
            .into_iter()
            .map(|st| (st.check_id, st.last_kind))
            .collect();
        assert_eq!(
            kinds,
            [("dns".into(), "dns".into()), ("gone".into(), String::new())]
        );
        let versions: Vec<i64> = MIGRATOR_POSTGRES.iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
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
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
            "1 and 2 bridged, 3 to 14 applied"
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
        let options = any_options(&Location::Sqlite { path: path.clone() }).unwrap();
        let pool = AnyPoolOptions::new().connect_with(options).await.unwrap();
        let s = Store {
            writer: pool.clone(),
            pool,
            engine: Engine::Sqlite,
            epoch: Arc::new(AtomicI64::new(1)),
            stale_after: Arc::default(),
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
