//! SQL of `results` and `region_state`: an ingest batch in one
//! transaction, and the reads of the latest state per (check, region) and
//! recent results.
//!
//! The store only writes what it is given: [`crate::ingest`] builds the
//! [`IngestBatch`] (each result with the events and certificate sightings
//! derived from it, and the sinks of event notifications); here each part is
//! written only if its result is new.

use std::collections::BTreeSet;

use outpost_probe::check::Observed;

use super::{
    Flag, Store, StoreError, Tx, certificates, events, events::IngestEvent, notifications, to_i64,
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
    /// placeholder): what is stored.
    pub details_json: String,
    /// The same, read once at ingest ([`crate::details::received`]): what
    /// events and certificate sightings are derived from. The store does
    /// not read it.
    pub details: Observed,
}

impl NewResult {
    /// Sets `details_json` (stored as given) and its typed value, read as
    /// this result's kind.
    pub fn with_details(mut self, details_json: impl Into<String>) -> NewResult {
        self.details_json = details_json.into();
        self.details = crate::details::decode(&self.kind, &self.details_json);
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
}

/// Latest state of one check in one region.
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

impl From<RegionStateRecord> for RegionState {
    fn from(r: RegionStateRecord) -> RegionState {
        RegionState {
            last_details: crate::details::decode(&r.last_kind, &r.last_details_json),
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
macro_rules! region_state_columns {
    () => {
        "check_id, region, last_result_at_ms, last_received_at_ms, last_ok, \
         consecutive_failures, consecutive_passes, last_code, last_message, last_kind, last_details_json, last_probe"
    };
}

macro_rules! result_columns {
    () => {
        "result_id, probe, region, check_id, sequence, kind, started_at_ms, received_at_ms, ok, \
         failure_code, failure_message, total_us, first_byte_us, details_json"
    };
}

/// Inserts a result unless its id is stored; true when inserted.
async fn insert_result(
    tx: &mut Tx<'_>,
    r: &NewResult,
    received_at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO results (result_id, probe, region, check_id, sequence, kind, started_at_ms, received_at_ms, ok, \
         failure_code, failure_message, dns_us, connect_us, tls_us, first_byte_us, total_us, details_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (result_id) DO NOTHING",
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
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Moves the (check, region) state forward by one newly stored result;
/// a result older than the stored newest one changes nothing.
async fn advance_region_state(
    tx: &mut Tx<'_>,
    r: &NewResult,
    at_ms: i64,
    received_at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO region_state (check_id, region, last_result_at_ms, last_received_at_ms, last_ok, \
         consecutive_failures, consecutive_passes, last_code, last_message, last_details_json, last_probe, last_kind) \
         VALUES ($1, $2, $3, $4, $5, 1 - $5, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (check_id, region) DO UPDATE SET \
           consecutive_failures = CASE WHEN excluded.last_ok = 1 THEN 0 ELSE region_state.consecutive_failures + 1 END, \
           consecutive_passes = CASE WHEN excluded.last_ok = 1 THEN region_state.consecutive_passes + 1 ELSE 0 END, \
           last_result_at_ms = excluded.last_result_at_ms, last_received_at_ms = excluded.last_received_at_ms, \
           last_ok = excluded.last_ok, last_code = excluded.last_code, last_message = excluded.last_message, \
           last_details_json = excluded.last_details_json, last_probe = excluded.last_probe, \
           last_kind = excluded.last_kind \
         WHERE excluded.last_result_at_ms >= region_state.last_result_at_ms",
    )
    .bind(&r.check_id)
    .bind(&r.region)
    .bind(at_ms)
    .bind(received_at_ms)
    .bind(i64::from(r.ok))
    .bind(&r.failure_code)
    .bind(&r.failure_message)
    .bind(&r.details_json)
    .bind(&r.probe)
    .bind(&r.kind)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Writes one batch in one transaction: each new result, the
    /// `region_state` it advances, and its events (with their `info`
    /// notifications when new) and certificate sightings; a result already
    /// stored adds nothing. Results are written oldest first.
    pub async fn ingest(&self, mut batch: IngestBatch) -> Result<IngestOutcome, StoreError> {
        batch
            .items
            .sort_by_key(|i| (i.result.started_at_ms, i.result.sequence));
        let received = batch.received_at_ms;
        let mut out = IngestOutcome::default();
        let mut tx = self.begin_write().await?;
        let mut rolled: Vec<(&NewResult, i64)> = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let r = &item.result;
            if !insert_result(&mut tx, r, received).await? {
                out.duplicates += 1;
                continue;
            }
            rolled.push((r, r.at_ms(received)));
            out.stored += 1;
            out.affected.insert(r.check_id.clone());
            out.inserted.insert(r.result_id.clone());
            let at = r.at_ms(received);
            advance_region_state(&mut tx, r, at, received).await?;
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
                certificates::record(&mut tx, c, &r.check_id, &r.probe, &r.region, at).await?;
                out.certificates += 1;
            }
        }
        // History: one call per batch, with the results inserted above.
        super::rollups::apply(&mut tx, self.engine, &self.stale_after(), &rolled).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Latest state of every (check, region).
    pub async fn region_states(&self) -> Result<Vec<RegionState>, StoreError> {
        let rows: Vec<RegionStateRecord> = sqlx::query_as(concat!(
            "SELECT ",
            region_state_columns!(),
            " FROM region_state ORDER BY check_id, region"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(RegionState::from).collect())
    }

    /// Latest state of one check in every region that reported it.
    pub async fn region_states_for(&self, check_id: &str) -> Result<Vec<RegionState>, StoreError> {
        let rows: Vec<RegionStateRecord> = sqlx::query_as(concat!(
            "SELECT ",
            region_state_columns!(),
            " FROM region_state WHERE check_id = $1 ORDER BY region"
        ))
        .bind(check_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(RegionState::from).collect())
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
    pub async fn prune_results(&self, before_ms: i64, batch: u32) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM results WHERE result_id IN \
                 (SELECT result_id FROM results WHERE received_at_ms < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(batch.max(1)))
            .execute(&self.pool)
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
                    details: Observed::Http(outpost_probe::check::http::Observed {
                        last: outpost_probe::check::http::observed::FinalHop {
                            status: Some(503),
                            ..Default::default()
                        },
                        ..Default::default()
                    }),
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
