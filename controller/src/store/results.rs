//! SQL of `results` and `region_state`: an ingest batch in one
//! transaction, and the reads of the latest state per (check, region) and
//! recent results.
//!
//! The store only writes what it is given: [`crate::ingest`] builds the
//! [`IngestBatch`] (each result with the events and certificate sightings
//! derived from it, and the sinks of event notifications); here each part is
//! written only if its result is new.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use outpost_probe::check::Observed;

use super::{
    Engine, Flag, Store, StoreError, Tx, certificates, events, events::IngestEvent, notifications,
    probes, to_i64,
};
use crate::certificate::Seen;

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
    /// Kind-specific details as the probe sent them (or ingest's
    /// placeholder, [`crate::details::received`]): what is stored, and what
    /// events ([`crate::event::from_result`]) and certificate sightings
    /// ([`crate::certificate::from_result`]) read the parts they need from.
    pub details_json: String,
}

impl NewResult {
    /// Sets `details_json` (stored as given).
    pub fn with_details(mut self, details_json: impl Into<String>) -> NewResult {
        self.details_json = details_json.into();
        self
    }

    /// When the result counts as taken: its start, clamped to its arrival,
    /// so a probe clock ahead of ours cannot keep a region fresh forever.
    pub fn at_ms(&self, received_at_ms: i64) -> i64 {
        self.started_at_ms.min(received_at_ms)
    }
}

/// One result of a batch with what ingest derived from it; the derived
/// rows are written only if the result is new (invariant 1).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestItem {
    /// The result.
    pub result: NewResult,
    /// DNS answer changes it reports ([`crate::event::from_result`]).
    pub events: Vec<IngestEvent>,
    /// Certificates it saw ([`crate::certificate::from_result`]).
    pub certificates: Vec<Seen>,
}

impl From<NewResult> for IngestItem {
    /// A result from which nothing is derived.
    fn from(result: NewResult) -> IngestItem {
        IngestItem {
            result,
            events: Vec::new(),
            certificates: Vec::new(),
        }
    }
}

/// Everything one ingest writes, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestBatch {
    /// When the batch arrived.
    pub received_at_ms: i64,
    /// Its results.
    pub items: Vec<IngestItem>,
    /// The probe that sent it, if one did: its `last_seen_ms` moves to
    /// `received_at_ms` in the same transaction (liveness comes from what
    /// the probe sent, and one commit per batch instead of two).
    pub probe: Option<String>,
    /// Sinks that get an `info` notification for each new event (not for
    /// reports merged into an existing one): the routes carrying its kind.
    pub event_sinks: Vec<String>,
}

impl IngestBatch {
    /// A batch of results from which nothing is derived, notifying nobody.
    pub fn results(results: Vec<NewResult>, received_at_ms: i64) -> IngestBatch {
        IngestBatch {
            received_at_ms,
            items: results.into_iter().map(IngestItem::from).collect(),
            probe: None,
            event_sinks: Vec::new(),
        }
    }
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
    /// Distinct sightings among them not stored before: a certificate
    /// first seen, or seen by a check, probe or address for the first time.
    pub new_sightings: u64,
    /// Per check whose state the batch advanced: the fewest passes in a
    /// row among the (check, region) states it advanced, 0 when one of
    /// them failed. A check whose every advanced region had passed more
    /// than `recoveries` times in a row already cannot change alert state
    /// with this batch (see `ingest`).
    pub moved: BTreeMap<String, u32>,
}

/// How often one region of a check changed between pass and fail in a
/// window ([`Store::state_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionChanges {
    /// Region.
    pub region: String,
    /// Changes (a result whose outcome differs from the one before it).
    pub changes: u32,
    /// Start time of the newest result that was a change.
    pub last_change_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// Kind of the newest result (empty for rows older than migration 4
    /// whose results were pruned).
    pub last_kind: String,
    /// Newest details, read as `last_kind`'s type ([`crate::details::decode`]).
    pub last_details: Observed,
    /// Probe that sent the newest result.
    pub last_probe: String,
}

/// A `region_state` row as stored.
#[derive(sqlx::FromRow)]
struct RegionStateRecord {
    check_id: String,
    region: String,
    last_result_at_ms: i64,
    last_received_at_ms: i64,
    #[sqlx(try_from = "Flag")]
    last_ok: bool,
    #[sqlx(try_from = "i64")]
    consecutive_failures: u32,
    #[sqlx(try_from = "i64")]
    consecutive_passes: u32,
    last_code: Option<String>,
    last_message: Option<String>,
    last_kind: String,
    last_details_json: String,
    last_probe: String,
}

/// What a `region_state` read fills in.
#[derive(Debug, Clone, Copy)]
enum Columns {
    /// Every column, the details decoded.
    All,
    /// Every column but the details.
    NoDetails,
}

impl RegionState {
    fn without_details(r: RegionStateRecord) -> RegionState {
        RegionState {
            last_details: crate::details::empty(),
            check_id: r.check_id,
            region: r.region,
            last_result_at_ms: r.last_result_at_ms,
            last_received_at_ms: r.last_received_at_ms,
            last_ok: r.last_ok,
            consecutive_failures: r.consecutive_failures,
            consecutive_passes: r.consecutive_passes,
            last_code: r.last_code,
            last_message: r.last_message,
            last_kind: r.last_kind,
            last_probe: r.last_probe,
        }
    }
}

impl From<RegionStateRecord> for RegionState {
    fn from(r: RegionStateRecord) -> RegionState {
        let last_details = crate::details::decode(&r.last_kind, &r.last_details_json);
        RegionState {
            last_details,
            ..RegionState::without_details(r)
        }
    }
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
    /// Kind.
    pub kind: String,
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
    /// Details, read as `kind`'s type ([`crate::details::decode`]).
    pub details: Observed,
}

/// A `results` row as read.
#[derive(sqlx::FromRow)]
struct ResultRecord {
    result_id: String,
    probe: String,
    region: String,
    check_id: String,
    sequence: i64,
    kind: String,
    started_at_ms: i64,
    received_at_ms: i64,
    #[sqlx(try_from = "Flag")]
    ok: bool,
    failure_code: Option<String>,
    failure_message: Option<String>,
    total_us: i64,
    first_byte_us: i64,
    details_json: String,
}

impl From<ResultRecord> for ResultRow {
    fn from(r: ResultRecord) -> ResultRow {
        ResultRow {
            details: crate::details::decode(&r.kind, &r.details_json),
            result_id: r.result_id,
            probe: r.probe,
            region: r.region,
            check_id: r.check_id,
            sequence: r.sequence,
            kind: r.kind,
            started_at_ms: r.started_at_ms,
            received_at_ms: r.received_at_ms,
            ok: r.ok,
            failure_code: r.failure_code,
            failure_message: r.failure_message,
            total_us: r.total_us,
            first_byte_us: r.first_byte_us,
        }
    }
}

// Booleans are INTEGER 0/1 in every engine, read through `Flag`.
// Every column but the details, of `region_state s`.
macro_rules! region_state_columns {
    () => {
        "s.check_id, s.region, s.last_result_at_ms, s.last_received_at_ms, s.last_ok, \
         s.consecutive_failures, s.consecutive_passes, s.last_code, s.last_message, s.last_kind, s.last_probe"
    };
}

macro_rules! result_columns {
    () => {
        "result_id, probe, region, check_id, sequence, kind, started_at_ms, received_at_ms, ok, \
         failure_code, failure_message, total_us, first_byte_us, details_json"
    };
}

/// Rows per multi-row statement. A result row binds 17 values, so a chunk
/// binds at most 17,000: under SQLite's 32,766 and PostgreSQL's 65,535.
/// The multi-row statements are built at run time ([`super::built`], which
/// makes their `$N` anonymous on SQLite): only
/// `$N` placeholders and constants are formatted into them, every value is
/// bound.
pub(super) const ROWS_PER_STATEMENT: usize = 1000;

/// Inserts the results whose id is not stored yet, one multi-row
/// statement per [`ROWS_PER_STATEMENT`]; returns the ids inserted.
async fn insert_results(
    tx: &mut Tx<'_>,
    results: &[&NewResult],
    received_at_ms: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    if super::is_sqlite(tx) {
        return insert_results_sqlite(tx, results, received_at_ms).await;
    }
    let mut inserted = HashSet::with_capacity(results.len());
    for chunk in results.chunks(ROWS_PER_STATEMENT) {
        inserted.extend(write_results(tx, chunk, received_at_ms, true).await?);
    }
    Ok(inserted)
}

/// One multi-row `INSERT` of `rows` into `results`. With `returning`,
/// `ON CONFLICT (result_id) DO NOTHING RETURNING result_id`: the ids this
/// statement inserted. Without, a plain insert of rows known to be new
/// (SQLite, under its only write lock): no ids returned.
async fn write_results(
    tx: &mut Tx<'_>,
    rows: &[&NewResult],
    received_at_ms: i64,
    returning: bool,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO results (result_id, probe, region, check_id, sequence, kind, started_at_ms, received_at_ms, ok, \
         failure_code, failure_message, dns_us, connect_us, tls_us, first_byte_us, total_us, details_json) \
         VALUES {}{}",
        super::placeholders(rows.len(), 17),
        if returning {
            " ON CONFLICT (result_id) DO NOTHING RETURNING result_id"
        } else {
            ""
        }
    );
    let mut q = sqlx::query_scalar::<_, String>(super::built(super::is_sqlite(tx), sql));
    for r in rows {
        q = q
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
            .bind(&r.details_json);
    }
    q.fetch_all(&mut **tx).await
}

/// `VALUES (0, $1, …, $k), (1, $k+1, …), …`: `rows` rows of their index and
/// `cols` parameters, for a `WITH keys(i, …) AS (…)` whose matches are
/// returned folded into one text of indexes ([`folded_rows`]).
fn indexed_values(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * (cols * 6 + 6));
    for row in 0..rows {
        s.push_str(if row == 0 { "(" } else { ", (" });
        s.push_str(&row.to_string());
        for col in 0..cols {
            s.push_str(", $");
            s.push_str(&(row * cols + col + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// The rows of a folded read (`group_concat(i || ' ' || …, ';')`) of keys
/// `0..keys`: each row's `N` numbers, the first the key's index. Only
/// integers are folded, so no value can hold a separator; anything else
/// (never expected) is an error, not a row quietly dropped. `None` (no
/// key matched) is no rows.
fn folded_rows<const N: usize>(
    folded: Option<&str>,
    keys: usize,
) -> Result<Vec<[i64; N]>, sqlx::Error> {
    let bad = || sqlx::Error::Protocol(format!("unexpected folded row in {folded:?}"));
    let mut out = Vec::new();
    for row in folded
        .unwrap_or_default()
        .split(';')
        .filter(|r| !r.is_empty())
    {
        let mut numbers = [0i64; N];
        let mut parts = row.split(' ');
        for n in &mut numbers {
            *n = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        }
        if parts.next().is_some() || !usize::try_from(numbers[0]).is_ok_and(|i| i < keys) {
            return Err(bad());
        }
        out.push(numbers);
    }
    Ok(out)
}

/// [`insert_results`] on SQLite. Its `BEGIN IMMEDIATE` holds the only write
/// lock, so which ids are stored already is known before the insert: one
/// read that returns them as one folded row, then the insert without
/// `RETURNING`. A `RETURNING` row per result was a hand-off each from
/// SQLite's worker thread and a conversion through the Any driver
/// (BENCHMARKS.md, session 10). PostgreSQL keeps `RETURNING`: a concurrent
/// replica may insert the same id between a read and the insert.
async fn insert_results_sqlite(
    tx: &mut Tx<'_>,
    results: &[&NewResult],
    received_at_ms: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut inserted = HashSet::with_capacity(results.len());
    for chunk in results.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH k(i, id) AS (VALUES {}) \
             SELECT group_concat(k.i, ';') FROM k JOIN results r ON r.result_id = k.id",
            indexed_values(chunk.len(), 1)
        );
        let mut q = sqlx::query_scalar::<_, Option<String>>(super::built(true, sql));
        for r in chunk {
            q = q.bind(&r.result_id);
        }
        let folded = q.fetch_one(&mut **tx).await?;
        let mut stored = vec![false; chunk.len()];
        for [i] in folded_rows::<1>(folded.as_deref(), chunk.len())? {
            stored[i as usize] = true;
        }
        let new: Vec<&NewResult> = chunk
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| !**stored)
            .map(|(r, _)| *r)
            .collect();
        if new.is_empty() {
            continue;
        }
        write_results(tx, &new, received_at_ms, false).await?;
        inserted.extend(new.iter().map(|r| r.result_id.clone()));
    }
    Ok(inserted)
}

/// The part of a `region_state` row that results advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Streak {
    at_ms: i64,
    failures: u32,
    passes: u32,
}

impl Streak {
    /// A (check, region) without a row: the first result applies.
    const NONE: Streak = Streak {
        at_ms: i64::MIN,
        failures: 0,
        passes: 0,
    };

    /// One result in order; a result older than the newest applied one
    /// changes nothing (the `WHERE` of the former per-result upsert).
    fn advance(&mut self, ok: bool, at_ms: i64) -> bool {
        if at_ms < self.at_ms {
            return false;
        }
        self.at_ms = at_ms;
        if ok {
            self.passes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.passes = 0;
        }
        true
    }
}

#[derive(sqlx::FromRow)]
struct StreakRecord {
    check_id: String,
    region: String,
    last_result_at_ms: i64,
    #[sqlx(try_from = "i64")]
    consecutive_failures: u32,
    #[sqlx(try_from = "i64")]
    consecutive_passes: u32,
}

type Key<'a> = (&'a str, &'a str);

/// The stored streaks of `keys` (absent keys are absent), row-locked
/// `FOR UPDATE` on PostgreSQL so a concurrent replica's ingest of the same
/// (check, region) waits for this transaction; SQLite's `BEGIN IMMEDIATE`
/// already holds the only write lock.
async fn read_streaks(
    tx: &mut Tx<'_>,
    engine: Engine,
    keys: &[Key<'_>],
) -> Result<HashMap<(String, String), Streak>, sqlx::Error> {
    let mut out = HashMap::with_capacity(keys.len());
    if engine == Engine::Sqlite {
        // One folded row of numbers (key index, time, failures, passes)
        // instead of a row per key: each row was a hand-off from SQLite's
        // worker thread and a conversion through the Any driver.
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH k(i, c, r) AS (VALUES {}) \
                 SELECT group_concat(k.i || ' ' || s.last_result_at_ms || ' ' || s.consecutive_failures \
                 || ' ' || s.consecutive_passes, ';') \
                 FROM k JOIN region_state s ON s.check_id = k.c AND s.region = k.r",
                indexed_values(chunk.len(), 2)
            );
            let mut q = sqlx::query_scalar::<_, Option<String>>(super::built(true, sql));
            for (check, region) in chunk {
                q = q.bind(*check).bind(*region);
            }
            let folded = q.fetch_one(&mut **tx).await?;
            for [i, at_ms, failures, passes] in folded_rows::<4>(folded.as_deref(), chunk.len())? {
                let (check, region) = chunk[i as usize];
                let counter = |n: i64| {
                    u32::try_from(n).map_err(|_| {
                        sqlx::Error::Protocol(format!("counter {n} of {check}/{region}"))
                    })
                };
                let (failures, passes) = (counter(failures)?, counter(passes)?);
                out.insert(
                    (check.to_owned(), region.to_owned()),
                    Streak {
                        at_ms,
                        failures,
                        passes,
                    },
                );
            }
        }
        return Ok(out);
    }
    // PostgreSQL: a row per key, locked (`FOR UPDATE` takes no aggregate).
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT check_id, region, last_result_at_ms, consecutive_failures, consecutive_passes \
             FROM region_state WHERE (check_id, region) IN (VALUES {}) ORDER BY check_id, region FOR UPDATE",
            super::placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query_as::<_, StreakRecord>(super::built(false, sql));
        for (check, region) in chunk {
            q = q.bind(*check).bind(*region);
        }
        for r in q.fetch_all(&mut **tx).await? {
            out.insert(
                (r.check_id, r.region),
                Streak {
                    at_ms: r.last_result_at_ms,
                    failures: r.consecutive_failures,
                    passes: r.consecutive_passes,
                },
            );
        }
    }
    Ok(out)
}

/// PostgreSQL: inserts a placeholder row (older than any result) for each
/// key without one, so [`read_streaks`] can lock every key. A replica
/// inserting the same key concurrently makes this wait and do nothing; the
/// placeholder never outlives the transaction, which overwrites it.
/// A placeholder's `last_result_at_ms`: older than any result. Not
/// `i64::MIN`, which PostgreSQL cannot read as a `BIGINT` literal.
const PLACEHOLDER_AT: i64 = i64::MIN + 1;

async fn insert_placeholders(tx: &mut Tx<'_>, keys: &[Key<'_>]) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut values = String::new();
        for i in 0..chunk.len() {
            if i > 0 {
                values.push_str(", ");
            }
            values.push_str(&format!(
                "(${}, ${}, {PLACEHOLDER_AT}, 0, 0, 0, 0, '{{}}', '', '')",
                2 * i + 1,
                2 * i + 2,
            ));
        }
        let sql = format!(
            "INSERT INTO region_state (check_id, region, last_result_at_ms, last_received_at_ms, last_ok, \
             consecutive_failures, consecutive_passes, last_details_json, last_probe, last_kind) \
             VALUES {values} ON CONFLICT (check_id, region) DO NOTHING"
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), sql));
        for (check, region) in chunk {
            q = q.bind(*check).bind(*region);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Moves `region_state` forward by the newly stored `results` (oldest
/// first) exactly as one upsert per result in that order would — each
/// (check, region)'s counters advance by every result not older than its
/// newest, and the newest applied result's fields are kept — with one read
/// and one multi-row upsert per [`ROWS_PER_STATEMENT`] keys.
async fn advance_region_states(
    tx: &mut Tx<'_>,
    engine: Engine,
    results: &[&NewResult],
    received_at_ms: i64,
) -> Result<BTreeMap<String, u32>, sqlx::Error> {
    let mut keys: Vec<Key<'_>> = results
        .iter()
        .map(|r| (r.check_id.as_str(), r.region.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut stored = read_streaks(tx, engine, &keys).await?;
    if engine == Engine::Postgres {
        let absent: Vec<Key<'_>> = keys
            .iter()
            .filter(|(c, r)| !stored.contains_key(&((*c).to_owned(), (*r).to_owned())))
            .copied()
            .collect();
        if !absent.is_empty() {
            insert_placeholders(tx, &absent).await?;
            stored.extend(read_streaks(tx, engine, &absent).await?);
        }
    }
    let mut next: BTreeMap<Key<'_>, (Streak, Option<&NewResult>)> = BTreeMap::new();
    for r in results {
        let key = (r.check_id.as_str(), r.region.as_str());
        let entry = next.entry(key).or_insert_with(|| {
            let streak = stored
                .get(&(key.0.to_owned(), key.1.to_owned()))
                .copied()
                .unwrap_or(Streak::NONE);
            (streak, None)
        });
        if entry.0.advance(r.ok, r.at_ms(received_at_ms)) {
            entry.1 = Some(r);
        }
    }
    let rows: Vec<(Streak, &NewResult)> = next
        .into_values()
        .filter_map(|(s, r)| r.map(|r| (s, r)))
        .collect();
    let mut moved: BTreeMap<String, u32> = BTreeMap::new();
    for (s, r) in &rows {
        let passes = if s.failures > 0 { 0 } else { s.passes };
        moved
            .entry(r.check_id.clone())
            .and_modify(|p| *p = (*p).min(passes))
            .or_insert(passes);
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO region_state (check_id, region, last_result_at_ms, last_received_at_ms, last_ok, \
             consecutive_failures, consecutive_passes, last_code, last_message, last_result_id, last_probe, last_kind) \
             VALUES {} ON CONFLICT (check_id, region) DO UPDATE SET \
               last_result_at_ms = excluded.last_result_at_ms, last_received_at_ms = excluded.last_received_at_ms, \
               last_ok = excluded.last_ok, consecutive_failures = excluded.consecutive_failures, \
               consecutive_passes = excluded.consecutive_passes, last_code = excluded.last_code, \
               last_message = excluded.last_message, last_result_id = excluded.last_result_id, \
               last_details_json = '{{}}', last_probe = excluded.last_probe, last_kind = excluded.last_kind",
            super::placeholders(chunk.len(), 12)
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), sql));
        for (s, r) in chunk {
            q = q
                .bind(&r.check_id)
                .bind(&r.region)
                .bind(s.at_ms)
                .bind(received_at_ms)
                .bind(i64::from(r.ok))
                .bind(i64::from(s.failures))
                .bind(i64::from(s.passes))
                .bind(&r.failure_code)
                .bind(&r.failure_message)
                .bind(&r.result_id)
                .bind(&r.probe)
                .bind(&r.kind);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(moved)
}

/// Every (check, region)'s newest result time and outcome, as
/// [`Store::region_states_bare`] read them: the database's one folded text,
/// read back by [`BareStates::by_check`] without a copy of any name.
#[derive(Debug)]
pub struct BareStates {
    text: String,
}

/// One region of a check in [`BareStates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bare<'a> {
    /// The region.
    pub region: &'a str,
    /// Its newest result's `started_at_ms`.
    pub at_ms: i64,
    /// Whether that result passed.
    pub ok: bool,
}

impl BareStates {
    /// The regions of every check that has any, in no particular order.
    /// The text is `<check bytes>:<check><region bytes>:<region><at ms>
    /// <ok>;` per region; the names are length-prefixed, so they may hold
    /// any character. Anything that does not read so (never expected: the
    /// database wrote it) is an error, not a check quietly left out, which
    /// would show as UNKNOWN.
    pub fn by_check(&self) -> Result<HashMap<&str, Vec<Bare<'_>>>, StoreError> {
        let bad = |at: usize| {
            StoreError::Db(sqlx::Error::Protocol(format!(
                "unexpected folded region state at byte {at} of {}",
                self.text.len()
            )))
        };
        let mut out: HashMap<&str, Vec<Bare<'_>>> = HashMap::new();
        let mut rest = self.text.as_str();
        while !rest.is_empty() {
            let at = self.text.len() - rest.len();
            let (check, region, at_ms, ok) = unfold_one(&mut rest).ok_or_else(|| bad(at))?;
            out.entry(check)
                .or_default()
                .push(Bare { region, at_ms, ok });
        }
        Ok(out)
    }
}

/// A length-prefixed name (`<bytes>:<name>`) at the start of `text`,
/// which moves past it.
fn prefixed<'a>(text: &mut &'a str) -> Option<&'a str> {
    let (len, rest) = text.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let name = rest.get(..len)?;
    *text = &rest[len..];
    Some(name)
}

/// The first region state of `text` (check, region, at, ok), which moves
/// past it.
fn unfold_one<'a>(text: &mut &'a str) -> Option<(&'a str, &'a str, i64, bool)> {
    let mut rest = *text;
    let check = prefixed(&mut rest)?;
    let region = prefixed(&mut rest)?;
    let (at, rest) = rest.split_once(' ')?;
    let (ok, rest) = rest.split_once(';')?;
    let ok = match ok {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let at = at.parse().ok()?;
    *text = rest;
    Some((check, region, at, ok))
}

impl Store {
    /// Writes one batch in one transaction: each new result, the
    /// `region_state` it advances, and its events (with their `info`
    /// notifications when new) and certificate sightings; a result already
    /// stored adds nothing. Results are taken oldest first. A handful of
    /// statements per batch, not per result: one multi-row insert of the
    /// results (`RETURNING` the new ids), one read and one multi-row upsert
    /// of `region_state`, then the rows derived from new results (events
    /// and certificates, which few results carry).
    pub async fn ingest(&self, mut batch: IngestBatch) -> Result<IngestOutcome, StoreError> {
        batch
            .items
            .sort_by_key(|i| (i.result.started_at_ms, i.result.sequence));
        let received = batch.received_at_ms;
        let mut out = IngestOutcome::default();
        // A result sent twice in one batch is stored once, the first time.
        let mut seen = HashSet::with_capacity(batch.items.len());
        let unique: Vec<&NewResult> = batch
            .items
            .iter()
            .map(|i| &i.result)
            .filter(|r| seen.insert(r.result_id.as_str()))
            .collect();
        let mut tx = self.begin_write().await?;
        let inserted = insert_results(&mut tx, &unique, received).await?;
        let new: Vec<&NewResult> = unique
            .into_iter()
            .filter(|r| inserted.contains(&r.result_id))
            .collect();
        out.moved = advance_region_states(&mut tx, self.engine, &new, received).await?;
        let mut first = HashSet::with_capacity(new.len());
        let mut sightings = certificates::Sightings::default();
        let mut rolled: Vec<(&NewResult, i64)> = Vec::with_capacity(new.len());
        for item in &batch.items {
            let r = &item.result;
            if !inserted.contains(&r.result_id) || !first.insert(r.result_id.as_str()) {
                out.duplicates += 1;
                continue;
            }
            rolled.push((r, r.at_ms(received)));
            out.stored += 1;
            out.affected.insert(r.check_id.clone());
            out.inserted.insert(r.result_id.clone());
            let at = r.at_ms(received);
            for e in &item.events {
                out.dns_changes += 1;
                let Some(id) = events::record(&mut tx, &e.event).await? else {
                    continue;
                };
                let key = format!("{}{id}", e.notice.dedup_key_prefix);
                for sink in &batch.event_sinks {
                    notifications::queue_for_event(
                        &mut tx,
                        id,
                        sink,
                        &key,
                        &e.notice.payload_json,
                        received,
                    )
                    .await?;
                }
            }
            for c in &item.certificates {
                sightings.add(c, &r.check_id, &r.probe, &r.region, at);
                out.certificates += 1;
            }
        }
        out.new_sightings = sightings.write(&mut tx).await?;
        if let Some(probe) = &batch.probe {
            probes::touch(&mut tx, probe, received).await?;
        }
        // History: one call per batch, with the results inserted above.
        super::rollups::apply(&mut tx, self.engine, &self.stale_after(), &rolled).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Latest state of every (check, region).
    pub async fn region_states(&self) -> Result<Vec<RegionState>, StoreError> {
        self.select_states(None, Columns::All).await
    }

    /// [`Store::region_states`] without the details (`last_details` is
    /// empty): for the evaluator, whose rule reads states and codes, never
    /// details.
    pub async fn region_states_brief(&self) -> Result<Vec<RegionState>, StoreError> {
        self.select_states(None, Columns::NoDetails).await
    }

    /// Every check's regions with only the newest result's time and
    /// outcome: what the overview needs of every check to count and order
    /// them ([`BareStates`]).
    ///
    /// One row in all, every region folded into one text by the database:
    /// at 10,000 checks × 5 regions a row per region was 50,000 rows
    /// through the driver, whose per-row copying and conversion was three
    /// quarters of the overview's CPU; a row per check (10,000) still
    /// handed each row from SQLite's worker thread to the runtime, and
    /// built a [`RegionState`] with its owned names per region, about half
    /// the overview's CPU (BENCHMARKS.md, session 11).
    pub async fn region_states_bare(&self) -> Result<BareStates, StoreError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT string_agg(\
             CAST(octet_length(check_id) AS TEXT) || ':' || check_id || \
             CAST(octet_length(region) AS TEXT) || ':' || region || \
             CAST(last_result_at_ms AS TEXT) || ' ' || CAST(last_ok AS TEXT) || ';', '') \
             FROM region_state",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(BareStates {
            text: text.unwrap_or_default(),
        })
    }

    /// Latest state of one check in every region that reported it.
    pub async fn region_states_for(&self, check_id: &str) -> Result<Vec<RegionState>, StoreError> {
        self.select_states(Some(&[check_id]), Columns::All).await
    }

    /// Latest state of the given checks in every region that reported
    /// them, ordered by check and region: one statement per
    /// [`ROWS_PER_STATEMENT`] checks.
    pub async fn region_states_of(
        &self,
        check_ids: &[&str],
    ) -> Result<Vec<RegionState>, StoreError> {
        self.select_states(Some(check_ids), Columns::All).await
    }

    /// [`Store::region_states_of`] without the details (the evaluator
    /// after a batch: the rule reads states, never details).
    pub async fn region_states_of_brief(
        &self,
        check_ids: &[&str],
    ) -> Result<Vec<RegionState>, StoreError> {
        self.select_states(Some(check_ids), Columns::NoDetails)
            .await
    }

    async fn select_states(
        &self,
        check_ids: Option<&[&str]>,
        want: Columns,
    ) -> Result<Vec<RegionState>, StoreError> {
        // The newest result's details are its `results` row's (0014): the
        // copy in `last_details_json` is only for rows written before, or
        // whose newest result the retention prune deleted.
        let (columns, from) = match want {
            Columns::All => (
                concat!(
                    region_state_columns!(),
                    ", COALESCE(r.details_json, s.last_details_json) AS last_details_json"
                ),
                "region_state s LEFT JOIN results r ON r.result_id = s.last_result_id",
            ),
            Columns::NoDetails => (
                concat!(region_state_columns!(), ", '{}' AS last_details_json"),
                "region_state s",
            ),
        };
        let convert = |r: RegionStateRecord| match want {
            Columns::All => RegionState::from(r),
            Columns::NoDetails => RegionState::without_details(r),
        };
        let Some(check_ids) = check_ids else {
            let sql = format!("SELECT {columns} FROM {from} ORDER BY s.check_id, s.region");
            let rows: Vec<RegionStateRecord> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            return Ok(rows.into_iter().map(convert).collect());
        };
        let mut out = Vec::new();
        for chunk in check_ids.chunks(ROWS_PER_STATEMENT) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {columns} FROM {from} WHERE s.check_id IN ({list}) ORDER BY s.check_id, s.region"
            );
            let mut q = sqlx::query_as::<_, RegionStateRecord>(super::built(
                self.engine == Engine::Sqlite,
                sql,
            ));
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(&self.pool).await?.into_iter().map(convert));
        }
        Ok(out)
    }

    /// (check, region, `last_received_at_ms`) of every `region_state` row
    /// received at or after `since_ms`: what the evaluator scans on
    /// PostgreSQL for batches other replicas committed
    /// ([`crate::alerting::Due`]). Reads no details.
    pub async fn region_state_receipts(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT check_id, region, last_received_at_ms FROM region_state \
             WHERE last_received_at_ms >= $1",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The newest `limit` results of a check.
    pub async fn recent_results(
        &self,
        check_id: &str,
        limit: u32,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let rows: Vec<ResultRecord> = sqlx::query_as(concat!(
            "SELECT ",
            result_columns!(),
            " FROM results WHERE check_id = $1 ORDER BY started_at_ms DESC, sequence DESC LIMIT $2"
        ))
        .bind(check_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ResultRow::from).collect())
    }

    /// Pass/fail changes per region among a check's results started at or
    /// after `since_ms` (flap detection, [`crate::alerting::flap`]), each
    /// compared with the result before it — found back to `context_ms`, so
    /// the first result of the window counts too: regions without a change
    /// are absent.
    pub async fn state_changes(
        &self,
        check_id: &str,
        since_ms: i64,
        context_ms: i64,
    ) -> Result<Vec<RegionChanges>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT region, COUNT(*), MAX(started_at_ms) FROM ( \
               SELECT region, started_at_ms, ok, \
                 LAG(ok) OVER (PARTITION BY region ORDER BY started_at_ms, sequence) AS prev \
               FROM results WHERE check_id = $1 AND started_at_ms >= $3) AS t \
             WHERE started_at_ms >= $2 AND prev IS NOT NULL AND prev <> ok \
             GROUP BY region ORDER BY region",
        )
        .bind(check_id)
        .bind(since_ms)
        .bind(context_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(region, changes, last_change_ms)| RegionChanges {
                region,
                changes: u32::try_from(changes).unwrap_or(u32::MAX),
                last_change_ms,
            })
            .collect())
    }

    /// A check's newest failed result started at or after `since_ms`:
    /// (region, code, message) — what a flapping alert names.
    pub async fn last_failure(
        &self,
        check_id: &str,
        since_ms: i64,
    ) -> Result<Option<(String, Option<String>, Option<String>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT region, failure_code, failure_message FROM results \
             WHERE check_id = $1 AND started_at_ms >= $2 AND ok = 0 \
             ORDER BY started_at_ms DESC, sequence DESC LIMIT 1",
        )
        .bind(check_id)
        .bind(since_ms)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Number of stored results (tests, metrics).
    pub async fn count_results(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM results")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Deletes results that arrived before `before_ms`, `batch` rows per
    /// statement (each its own short transaction, found through
    /// `results_by_received`), until none is left; returns how many. No lock
    /// is held between batches, and the pause between them lets ingest in.
    ///
    /// A `region_state` row whose newest result is about to go keeps that
    /// result's details: first, one statement copies them into
    /// `last_details_json` and clears `last_result_id` for every row
    /// received before `before_ms` — a row's `last_received_at_ms` is its
    /// newest result's `received_at_ms` (one batch writes both), so these
    /// are exactly the rows whose result the loop can delete. A batch
    /// ingested meanwhile is received now, after `before_ms`.
    pub async fn prune_results(&self, before_ms: i64, batch: u32) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE region_state SET last_details_json = COALESCE( \
               (SELECT r.details_json FROM results r WHERE r.result_id = region_state.last_result_id), \
               last_details_json), last_result_id = NULL \
             WHERE last_result_id IS NOT NULL AND last_received_at_ms < $1",
        )
        .bind(before_ms)
        .execute(&self.writer)
        .await?;
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM results WHERE result_id IN \
                 (SELECT result_id FROM results WHERE received_at_ms < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(batch.max(1)))
            .execute(&self.writer)
            .await?;
            total += r.rows_affected();
            if r.rows_affected() < u64::from(batch.max(1)) {
                return Ok(total);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{result, temp_stores};

    /// A batch whose results are partly stored already stores the rest,
    /// and only those move the counters (SQLite reads the stored ids first,
    /// PostgreSQL asks `RETURNING`: the same outcome).
    #[tokio::test]
    async fn a_partly_resent_batch_stores_and_counts_only_its_new_results() {
        for (_d, s) in temp_stores().await {
            let old = vec![
                result("a", 1, "eu", false, 1000),
                result("c", 3, "eu", false, 3000),
            ];
            s.ingest(IngestBatch::results(old.clone(), 3500))
                .await
                .unwrap();
            let mut mixed = old;
            mixed.insert(1, result("b", 2, "eu", false, 2000));
            mixed.push(result("d", 4, "eu", false, 4000));
            let o = s.ingest(IngestBatch::results(mixed, 5000)).await.unwrap();
            assert_eq!((o.stored, o.duplicates), (2, 2));
            let ids: Vec<&str> = {
                let mut v: Vec<&str> = o.inserted.iter().map(String::as_str).collect();
                v.sort_unstable();
                v
            };
            assert_eq!(ids, ["b", "d"]);
            assert_eq!(s.count_results().await.unwrap(), 4);
            let st = s.region_states_for("api").await.unwrap();
            // a, c, then d (b is older than c: stored, state unmoved).
            assert_eq!(st[0].consecutive_failures, 3);
            assert_eq!(st[0].last_result_at_ms, 4000);
        }
    }

    #[test]
    fn folded_rows_read_numbers_and_refuse_anything_else() {
        assert_eq!(folded_rows::<2>(None, 3).unwrap(), Vec::<[i64; 2]>::new());
        assert_eq!(
            folded_rows::<2>(Some("2 -5;0 7"), 3).unwrap(),
            [[2, -5], [0, 7]]
        );
        // An index past the keys, too few or many numbers, not a number.
        for bad in ["3 1", "1", "1 2 3", "x 1", "-1 4", "1 2;;0"] {
            assert!(folded_rows::<2>(Some(bad), 3).is_err(), "{bad}");
        }
    }

    #[test]
    fn bare_states_read_any_name_and_refuse_anything_else() {
        let text = |t: &str| BareStates { text: t.into() };
        let ok = text("3:a;b2:eu-5 1;3:a;b3:1:27 0;1:c0:9 1;");
        let by_check = ok.by_check().unwrap();
        assert_eq!(
            by_check["a;b"],
            [
                Bare {
                    region: "eu",
                    at_ms: -5,
                    ok: true
                },
                Bare {
                    region: "1:2",
                    at_ms: 7,
                    ok: false
                },
            ]
        );
        assert_eq!(
            by_check["c"],
            [Bare {
                region: "",
                at_ms: 9,
                ok: true
            }]
        );
        assert!(text("").by_check().unwrap().is_empty());
        // A length past the text, a missing separator, an outcome that is
        // neither 0 nor 1, a time that is no number, a truncated tail.
        for bad in [
            "9:a2:eu5 1;",
            "1:a2:eu5 1",
            "1:a2:eu5 2;",
            "1:a2:eux 1;",
            "1:a2:eu5 1;1:b",
            "x:a2:eu5 1;",
        ] {
            assert!(text(bad).by_check().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn resent_batch_is_stored_once_and_counters_do_not_move() {
        for (_d, s) in temp_stores().await {
            let batch = vec![
                result("a", 1, "eu", false, 1000),
                result("b", 2, "eu", false, 2000),
            ];
            let first = s
                .ingest(IngestBatch::results(batch.clone(), 3000))
                .await
                .unwrap();
            assert_eq!((first.stored, first.duplicates), (2, 0));
            let again = s.ingest(IngestBatch::results(batch, 4000)).await.unwrap();
            assert_eq!((again.stored, again.duplicates), (0, 2));
            assert!(again.affected.is_empty());
            assert_eq!(s.count_results().await.unwrap(), 2);
            let st = s.region_states_for("api").await.unwrap();
            assert_eq!(st[0].consecutive_failures, 2);
            assert_eq!(st[0].consecutive_passes, 0);
        }
    }

    #[tokio::test]
    async fn older_results_do_not_rewind_region_state() {
        for (_d, s) in temp_stores().await {
            s.ingest(IngestBatch::results(
                vec![result("new", 2, "eu", true, 5000)],
                6000,
            ))
            .await
            .unwrap();
            s.ingest(IngestBatch::results(
                vec![result("old", 1, "eu", false, 1000)],
                6000,
            ))
            .await
            .unwrap();
            let st = &s.region_states_for("api").await.unwrap()[0];
            assert!(st.last_ok);
            assert_eq!((st.consecutive_passes, st.consecutive_failures), (1, 0));
            assert_eq!(s.count_results().await.unwrap(), 2);
        }
    }

    /// Results for check `check`, out of order, with both outcomes, three
    /// regions, one older than the stored state and an id sent twice.
    fn mixed(check: &str) -> Vec<NewResult> {
        let spec: [(&str, &str, bool, i64); 12] = [
            ("1", "eu", true, 1000),
            ("2", "eu", false, 2000),
            ("3", "us", false, 1500),
            ("4", "eu", false, 3000),
            ("5", "eu", true, 2500),
            ("6", "us", false, 1600),
            ("7", "ap", true, 900),
            ("8", "eu", false, 3000),
            ("2", "eu", false, 2000),
            ("9", "us", true, 1400),
            ("10", "ap", true, 5000),
            ("11", "eu", false, 9000),
        ];
        spec.iter()
            .enumerate()
            .map(|(i, (id, region, ok, at))| {
                let mut r = result(&format!("{check}-{id}"), i as u64 + 1, region, *ok, *at);
                r.check_id = check.into();
                r
            })
            .collect()
    }

    /// `moved` names every check whose state the batch advanced with the
    /// fewest passes in a row among its advanced regions (0 when one
    /// failed): what ingest filters evaluation requests with. A result
    /// older than the stored state advances nothing and is not named.
    #[tokio::test]
    async fn a_batch_reports_the_passes_in_a_row_of_the_states_it_moved() {
        for (_d, s) in temp_stores().await {
            let at = |check: &str, id: &str, region: &str, ok: bool, t: i64| {
                let mut r = result(id, 1, region, ok, t);
                r.check_id = check.into();
                r
            };
            let first = s
                .ingest(IngestBatch::results(
                    vec![
                        at("a", "a1", "eu", true, 1_000),
                        at("a", "a2", "us", true, 1_000),
                        at("b", "b1", "eu", false, 1_000),
                    ],
                    5_000,
                ))
                .await
                .unwrap();
            assert_eq!(
                first.moved,
                BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 0)])
            );
            let second = s
                .ingest(IngestBatch::results(
                    vec![
                        at("a", "a3", "eu", true, 2_000),
                        at("a", "a4", "eu", true, 3_000),
                        at("a", "a5", "us", true, 2_000),
                        at("b", "b2", "eu", true, 2_000),
                        at("c", "c1", "eu", true, 2_000),
                    ],
                    6_000,
                ))
                .await
                .unwrap();
            assert_eq!(
                second.moved,
                BTreeMap::from([
                    ("a".to_owned(), 2),
                    ("b".to_owned(), 1),
                    ("c".to_owned(), 1)
                ]),
                "a: eu 3 in a row, us 2 — the fewest; b's first pass after a failure"
            );
            let stale = s
                .ingest(IngestBatch::results(
                    vec![at("b", "b0", "eu", false, 500)],
                    7_000,
                ))
                .await
                .unwrap();
            assert_eq!(stale.stored, 1);
            assert!(stale.moved.is_empty(), "an older result moves no state");
        }
    }

    #[tokio::test]
    async fn a_batch_moves_region_state_as_its_results_one_by_one_would() {
        for (_d, s) in temp_stores().await {
            // The state before: one stored result per region of both checks.
            for check in ["one", "all"] {
                let mut before = Vec::new();
                for (i, region) in ["eu", "us"].into_iter().enumerate() {
                    let mut r = result(
                        &format!("{check}-0-{region}"),
                        100 + i as u64,
                        region,
                        false,
                        1200,
                    );
                    r.check_id = check.into();
                    before.push(r);
                }
                s.ingest(IngestBatch::results(before, 10_000))
                    .await
                    .unwrap();
            }
            // A batch is taken oldest first: so are the single results.
            let mut singles = mixed("one");
            singles.sort_by_key(|r| (r.started_at_ms, r.sequence));
            let mut one_by_one = (0, 0);
            for r in singles {
                let o = s.ingest(IngestBatch::results(vec![r], 4000)).await.unwrap();
                one_by_one.0 += o.stored;
                one_by_one.1 += o.duplicates;
            }
            let batch = s
                .ingest(IngestBatch::results(mixed("all"), 4000))
                .await
                .unwrap();
            assert_eq!((batch.stored, batch.duplicates), one_by_one);
            assert_eq!((batch.stored, batch.duplicates), (11, 1));
            let strip = |mut v: Vec<RegionState>| {
                for st in &mut v {
                    st.check_id.clear();
                }
                v
            };
            let one = strip(s.region_states_for("one").await.unwrap());
            let all = strip(s.region_states_for("all").await.unwrap());
            assert_eq!(one.len(), 3);
            assert_eq!(all, one);
            // eu: 1200 ✗ stored; then 1000 ✓ (older than it: ignored),
            // 2000 ✗, 2500 ✓, 3000 ✗, 3000 ✗, 9000 ✗ clamped to 4000.
            let eu = one.iter().find(|r| r.region == "eu").unwrap();
            assert_eq!((eu.consecutive_failures, eu.consecutive_passes), (3, 0));
            assert_eq!(eu.last_result_at_ms, 4000);
            assert_eq!(s.count_results().await.unwrap(), 4 + 22);
        }
    }

    #[tokio::test]
    async fn region_states_of_reads_only_the_named_checks() {
        for (_d, s) in temp_stores().await {
            let mut rows = mixed("a");
            rows.extend(mixed("b"));
            rows.extend(mixed("c"));
            s.ingest(IngestBatch::results(rows, 4000)).await.unwrap();
            let got = s.region_states_of(&["a", "c", "missing"]).await.unwrap();
            let keys: Vec<(&str, &str)> = got
                .iter()
                .map(|r| (r.check_id.as_str(), r.region.as_str()))
                .collect();
            assert_eq!(
                keys,
                [
                    ("a", "ap"),
                    ("a", "eu"),
                    ("a", "us"),
                    ("c", "ap"),
                    ("c", "eu"),
                    ("c", "us")
                ]
            );
            let receipts = s.region_state_receipts(4000).await.unwrap();
            assert_eq!(receipts.len(), 9);
            assert!(s.region_state_receipts(4001).await.unwrap().is_empty());
        }
    }

    /// The overview's one-row-per-check read gives every region's time and
    /// outcome as the full read does, whatever the region's name holds
    /// (the separators, digits, spaces, more than one byte a character).
    #[tokio::test]
    async fn bare_states_match_the_full_read_for_any_region_name() {
        for (_d, s) in temp_stores().await {
            let regions = ["eu", "1:2 3", "région-é", "x 0", ""];
            let mut rows = Vec::new();
            for (i, region) in regions.iter().enumerate() {
                let mut r = result(
                    &format!("r{i}"),
                    i as u64,
                    region,
                    i % 2 == 0,
                    -5 + i as i64,
                );
                r.check_id = if i < 3 { "a".into() } else { "b:1".into() };
                rows.push(r);
            }
            s.ingest(IngestBatch::results(rows, 4000)).await.unwrap();
            let bare = s.region_states_bare().await.unwrap();
            let full = s.region_states().await.unwrap();
            assert_eq!(full.len(), regions.len());
            let by_check = bare.by_check().unwrap();
            assert_eq!(by_check.len(), 2);
            let mut from_bare: Vec<(String, String, i64, bool)> = by_check
                .iter()
                .flat_map(|(check, states)| {
                    states
                        .iter()
                        .map(move |st| (check.to_string(), st.region.into(), st.at_ms, st.ok))
                })
                .collect();
            let mut from_full: Vec<(String, String, i64, bool)> = full
                .iter()
                .map(|st| {
                    (
                        st.check_id.clone(),
                        st.region.clone(),
                        st.last_result_at_ms,
                        st.last_ok,
                    )
                })
                .collect();
            from_bare.sort();
            from_full.sort();
            assert_eq!(from_bare, from_full);
        }
    }

    #[tokio::test]
    async fn sightings_are_coalesced_per_batch_and_only_new_ones_count() {
        for (_d, s) in temp_stores().await {
            let seen = |fp: &str| Seen {
                fingerprint: fp.into(),
                subject: "CN=api".into(),
                issuer: "CN=ca".into(),
                sans: vec!["api.example.net".into()],
                not_before_ms: None,
                not_after_ms: 9_000_000,
                key_type: "ECDSA P-256".into(),
                signature_algorithm: "ecdsa-with-SHA256".into(),
                is_ca: false,
                self_signed: false,
                position: Some(0),
                trust_store: None,
                address: "192.0.2.1:443".into(),
                host: "api.example.net".into(),
            };
            let item = |id: &str, region: &str, at: i64| IngestItem {
                result: result(id, 1, region, true, at),
                events: Vec::new(),
                certificates: vec![seen("aa"), seen("bb")],
            };
            let batch = |items| IngestBatch {
                // Received after every result (a result's time is capped at
                // its receipt).
                received_at_ms: 1_000_000,
                items,
                probe: None,
                event_sinks: Vec::new(),
            };
            let o = s
                .ingest(batch(vec![
                    item("r1", "eu", 1000),
                    item("r2", "eu", 3000),
                    item("r3", "eu", 2000),
                ]))
                .await
                .unwrap();
            assert_eq!((o.certificates, o.new_sightings), (6, 2));
            let rows = s.certificate_sightings().await.unwrap();
            assert_eq!(rows.len(), 2);
            assert!(
                rows.iter()
                    .all(|r| (r.first_seen_ms, r.last_seen_ms) == (1000, 3000))
            );
            // Seen again within SIGHTING_REFRESH_MS and nothing else new:
            // counted, not rewritten (last seen stays).
            let o = s.ingest(batch(vec![item("r4", "eu", 5000)])).await.unwrap();
            assert_eq!((o.certificates, o.new_sightings), (2, 0));
            let rows = s.certificate_sightings().await.unwrap();
            assert!(
                rows.iter()
                    .all(|r| (r.first_seen_ms, r.last_seen_ms) == (1000, 3000))
            );
            let certs = s.certificates().await.unwrap();
            assert!(certs.iter().all(|c| c.last_seen_ms == 3000), "{certs:?}");
            // A refresh's worth later it is written, certificates too.
            let later = 3000 + certificates::SIGHTING_REFRESH_MS;
            let o = s
                .ingest(batch(vec![item("r4b", "eu", later)]))
                .await
                .unwrap();
            assert_eq!((o.certificates, o.new_sightings), (2, 0));
            let rows = s.certificate_sightings().await.unwrap();
            assert!(
                rows.iter()
                    .all(|r| (r.first_seen_ms, r.last_seen_ms) == (1000, later))
            );
            let certs = s.certificates().await.unwrap();
            assert!(certs.iter().all(|c| c.last_seen_ms == later), "{certs:?}");
            // A changed view (the leaf now second in the chain) is written
            // at once, within the refresh; so is an earlier first sighting.
            let mut moved = item("r4c", "eu", later + 1000);
            moved.certificates[0].position = Some(1);
            let early = item("r4d", "eu", 500);
            let o = s.ingest(batch(vec![moved, early])).await.unwrap();
            assert_eq!((o.certificates, o.new_sightings), (4, 0));
            let rows = s.certificate_sightings().await.unwrap();
            let aa = rows.iter().find(|r| r.fingerprint == "aa").unwrap();
            assert_eq!(
                (aa.position, aa.first_seen_ms, aa.last_seen_ms),
                (Some(1), 500, later + 1000)
            );
            let bb = rows.iter().find(|r| r.fingerprint == "bb").unwrap();
            assert_eq!((bb.first_seen_ms, bb.last_seen_ms), (500, later + 1000));
            // Another probe (region us, probe p-us) is a new sighting.
            let o = s.ingest(batch(vec![item("r5", "us", 6000)])).await.unwrap();
            assert_eq!((o.certificates, o.new_sightings), (2, 2));
            // A resent result adds nothing.
            let o = s.ingest(batch(vec![item("r5", "us", 6000)])).await.unwrap();
            assert_eq!((o.duplicates, o.certificates, o.new_sightings), (1, 0, 0));
            let certs = s.certificates().await.unwrap();
            assert_eq!(certs.len(), 2);
        }
    }

    /// `region_state` names its newest result rather than copying its
    /// details (0014); the reads join them back, a row without an id (older
    /// than 0014) reads its own copy, and the retention prune keeps a row's
    /// details when it deletes its newest result.
    #[tokio::test]
    async fn region_state_names_its_newest_result_and_keeps_its_details_past_the_prune() {
        for (_d, s) in temp_stores().await {
            let raw = |s: &Store, region: &str| {
                let q = sqlx::query_as::<_, (Option<String>, String)>(
                    "SELECT last_result_id, last_details_json FROM region_state WHERE region = $1",
                )
                .bind(region.to_owned());
                let pool = s.pool.clone();
                async move { q.fetch_one(&pool).await.unwrap() }
            };
            let details = |s: &Store| {
                let s = s.clone();
                async move {
                    let st = s.region_states_for("api").await.unwrap();
                    st.into_iter()
                        .map(|st| (st.region, st.last_details))
                        .collect::<Vec<_>>()
                }
            };
            let old = result("a", 1, "eu", false, 900).with_details("{\"status\":503}");
            s.ingest(IngestBatch::results(vec![old], 1000))
                .await
                .unwrap();
            let new = result("b", 2, "eu", true, 1900).with_details("{\"status\":200}");
            s.ingest(IngestBatch::results(vec![new], 2000))
                .await
                .unwrap();
            let us = result("c", 1, "us", true, 2900).with_details("{\"status\":204}");
            s.ingest(IngestBatch::results(vec![us], 3000))
                .await
                .unwrap();
            let http = |json: &str| crate::details::decode("http", json);
            assert_eq!(raw(&s, "eu").await, (Some("b".into()), "{}".into()));
            assert_eq!(
                details(&s).await,
                [
                    ("eu".into(), http("{\"status\":200}")),
                    ("us".into(), http("{\"status\":204}"))
                ]
            );
            let brief = s.region_states_of_brief(&["api"]).await.unwrap();
            assert_eq!(brief[0].last_details, crate::details::empty());

            // eu's results both go; us's stays.
            assert_eq!(s.prune_results(2500, 1).await.unwrap(), 2);
            assert_eq!(s.count_results().await.unwrap(), 1);
            assert_eq!(raw(&s, "eu").await, (None, "{\"status\":200}".into()));
            assert_eq!(raw(&s, "us").await, (Some("c".into()), "{}".into()));
            assert_eq!(
                details(&s).await,
                [
                    ("eu".into(), http("{\"status\":200}")),
                    ("us".into(), http("{\"status\":204}"))
                ]
            );
            // The next result names itself again and clears the copy.
            let next = result("d", 3, "eu", false, 3900).with_details("{\"status\":500}");
            s.ingest(IngestBatch::results(vec![next], 4000))
                .await
                .unwrap();
            assert_eq!(raw(&s, "eu").await, (Some("d".into()), "{}".into()));
            assert_eq!(details(&s).await[0].1, http("{\"status\":500}"));

            // A row as written before 0014: no id, its own copy.
            sqlx::query(
                "INSERT INTO region_state (check_id, region, last_result_at_ms, last_received_at_ms, last_ok, \
                 consecutive_failures, consecutive_passes, last_details_json, last_probe, last_kind) \
                 VALUES ('api', 'ap', 10, 10, 1, 0, 1, '{\"status\":301}', 'p-ap', 'http')",
            )
            .execute(&s.pool)
            .await
            .unwrap();
            assert_eq!(
                details(&s).await[0],
                ("ap".into(), http("{\"status\":301}"))
            );
        }
    }

    #[tokio::test]
    async fn rows_read_back_field_by_field() {
        for (_d, s) in temp_stores().await {
            let r = result("a", 7, "eu", false, 1000).with_details("{\"status\":503}");
            s.ingest(IngestBatch::results(vec![r], 900)).await.unwrap();
            let rows = s.recent_results("api", 10).await.unwrap();
            assert_eq!(
                rows,
                vec![ResultRow {
                    result_id: "a".into(),
                    probe: "p-eu".into(),
                    region: "eu".into(),
                    check_id: "api".into(),
                    sequence: 7,
                    kind: "http".into(),
                    started_at_ms: 1000,
                    received_at_ms: 900,
                    ok: false,
                    failure_code: Some("timeout".into()),
                    failure_message: Some("timed out".into()),
                    total_us: 5,
                    first_byte_us: 4,
                    details: Observed::Http(Box::new(outpost_probe::check::http::Observed {
                        last: outpost_probe::check::http::observed::FinalHop {
                            status: Some(503),
                            ..Default::default()
                        },
                        ..Default::default()
                    })),
                }]
            );
            let st = s.region_states().await.unwrap();
            assert_eq!(st.len(), 1);
            // Clamped to the arrival: the probe's clock was ahead.
            assert_eq!(st[0].last_result_at_ms, 900);
            assert!(!st[0].last_ok);
            assert_eq!(st[0].last_probe, "p-eu");
            assert_eq!(st[0].last_kind, "http");
            assert_eq!(st[0].last_details, rows[0].details);
        }
    }
}
