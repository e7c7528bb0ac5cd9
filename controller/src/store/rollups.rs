//! SQL of the history tables (the math and the design note are in
//! [`crate::history`]): the per-batch write of minute rollups that
//! [`Store::ingest`] calls once, in its transaction, with the results it
//! inserted; the fold of minutes into hours, days and the overview's
//! summaries ([`Store::fold_rollups`]); range reads; the batched
//! retention prune.
//!
//! Every write is a few multi-row statements per batch, whatever the
//! batch's size: read the touched rows (`(key) IN (VALUES …)`), merge in
//! Rust, write them back with one `INSERT … ON CONFLICT DO UPDATE` per
//! [`CHUNK`] rows. On PostgreSQL the ingest locks its series rows
//! (`FOR UPDATE`, in id order) and reads the fold's row `FOR SHARE`; the
//! fold locks that row `FOR UPDATE`: two writers of one rollup row always
//! run one after the other, so a read-merge-write never loses an update.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Engine, NewResult, Store, StoreError, Tx, to_i64};
use crate::history::{self, Resolution, Rollup, Summary};

/// One stored rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    /// Check.
    pub check_id: String,
    /// Region.
    pub region: String,
    /// Width.
    pub resolution: Resolution,
    /// Bucket start, unix ms.
    pub bucket_ms: i64,
    /// Its values.
    pub rollup: Rollup,
}

/// The newest result time a (check, region) was rolled up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Check.
    pub check_id: String,
    /// Region.
    pub region: String,
    /// Newest result time, unix ms.
    pub last_at_ms: i64,
}

/// One check × region's overview summary ([`Store::summaries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSummary {
    /// Check.
    pub check_id: String,
    /// Region.
    pub region: String,
    /// Newest result time, unix ms (where an open STALE gap starts).
    pub last_at_ms: i64,
    /// Hours and days, minutes not folded yet included.
    pub summary: Summary,
}

/// Rows per multi-row statement (7 binds a row: far below SQLite's 32,766
/// and PostgreSQL's 65,535 parameters).
pub const CHUNK: usize = 1_000;

/// How long after a minute ends it is folded: results of a minute still
/// arriving (a probe's queue) land before the fold, not after it.
pub const FOLD_GRACE_MS: i64 = 60_000;

/// Minutes folded per transaction: a fold after a long pause runs as
/// several short transactions, never one long one.
const FOLD_WINDOW_MS: i64 = 60 * 60_000;
/// Minute rows the fold holds in memory at once.
const FOLD_PAGE: i64 = 2_000;

/// A rollup row's key, in primary-key order (series, resolution, bucket):
/// visiting keys in this order locks rows in the same order everywhere.
type Key = (i64, i64, i64);

fn key(series: i64, res: Resolution, bucket: i64) -> Key {
    (series, res.code(), bucket)
}

fn resolution_of(code: i64) -> Resolution {
    match code {
        0 => Resolution::Minute,
        1 => Resolution::Hour,
        _ => Resolution::Day,
    }
}

/// (series, resolution, bucket, count, failures, stale ms, body).
type RowRecord = (i64, i64, i64, i64, i64, i64, Vec<u8>);
/// A range read's row: (check, region) before [`RowRecord`]'s columns.
type RangeRecord = (String, String, i64, i64, i64, i64, i64, Vec<u8>);
/// A summaries read's row: (check, region, last at, summary body or an
/// unfolded minute's bucket, count, failures, stale ms).
type SummaryRecord = (
    String,
    String,
    i64,
    Option<Vec<u8>>,
    Option<i64>,
    i64,
    i64,
    i64,
);

/// Summaries from [`SummaryRecord`] rows: one per check × region, the
/// unfolded minutes added to its folded body.
fn summaries_from(rows: Vec<SummaryRecord>) -> Vec<SeriesSummary> {
    let mut out: BTreeMap<(String, String), SeriesSummary> = BTreeMap::new();
    for (check_id, region, last, body, bucket, count, failures, stale) in rows {
        let e = out
            .entry((check_id.clone(), region.clone()))
            .or_insert_with(|| SeriesSummary {
                check_id,
                region,
                last_at_ms: last,
                summary: Summary::default(),
            });
        if let Some(body) = body {
            let tail = std::mem::take(&mut e.summary);
            e.summary = Summary::decode(&body);
            for (res, map) in [(Resolution::Hour, tail.hours), (Resolution::Day, tail.days)] {
                for (b, (c, f, st)) in map {
                    e.summary.add(
                        res,
                        b,
                        &Rollup {
                            count: c,
                            failures: f,
                            stale_ms: st,
                            ..Rollup::default()
                        },
                    );
                }
            }
        }
        if let Some(bucket) = bucket {
            let r = Rollup {
                count: u64::try_from(count).unwrap_or(0),
                failures: u64::try_from(failures).unwrap_or(0),
                stale_ms: stale,
                ..Rollup::default()
            };
            for res in [Resolution::Hour, Resolution::Day] {
                e.summary.add(res, res.bucket(bucket), &r);
            }
        }
    }
    out.into_values()
        .filter(|s| s.last_at_ms >= 0 || !s.summary.hours.is_empty() || !s.summary.days.is_empty())
        .collect()
}

fn rollup_of(count: i64, failures: i64, stale_ms: i64, body: &[u8]) -> Rollup {
    Rollup {
        count: u64::try_from(count).unwrap_or(0),
        failures: u64::try_from(failures).unwrap_or(0),
        stale_ms,
        ..Rollup::default()
    }
    .with_body(body)
}

/// Ids (and newest result times, `None` for a new series) of these
/// (check, region) pairs, creating the missing ones; locked on PostgreSQL.
async fn series_of(
    tx: &mut Tx<'_>,
    lock: bool,
    pairs: &[(&str, &str)],
) -> Result<HashMap<(String, String), (i64, Option<i64>)>, sqlx::Error> {
    let mut out = HashMap::with_capacity(pairs.len());
    for chunk in pairs.chunks(CHUNK) {
        let insert = format!(
            "INSERT INTO rollup_series (check_id, region, last_at_ms) SELECT v.column1, v.column2, -1 FROM (VALUES {}) AS v \
             WHERE NOT EXISTS (SELECT 1 FROM rollup_series s WHERE s.check_id = v.column1 AND s.region = v.column2) \
             ON CONFLICT (check_id, region) DO NOTHING",
            super::placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), insert));
        for (c, r) in chunk {
            q = q.bind(*c).bind(*r);
        }
        q.execute(&mut **tx).await?;
        let select = format!(
            "SELECT id, check_id, region, last_at_ms FROM rollup_series WHERE (check_id, region) IN (VALUES {}) ORDER BY id{}",
            super::placeholders(chunk.len(), 2),
            if lock { " FOR UPDATE" } else { "" }
        );
        let mut q = sqlx::query_as::<_, (i64, String, String, i64)>(super::built(
            super::is_sqlite(tx),
            select,
        ));
        for (c, r) in chunk {
            q = q.bind(*c).bind(*r);
        }
        for (id, c, r, last) in q.fetch_all(&mut **tx).await? {
            out.insert((c, r), (id, (last >= 0).then_some(last)));
        }
    }
    Ok(out)
}

/// The stored rollups of these keys.
async fn read_rows(
    tx: &mut Tx<'_>,
    lock: bool,
    keys: &[Key],
) -> Result<HashMap<Key, Rollup>, sqlx::Error> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "SELECT series, resolution, bucket_ms, count, failures, stale_ms, body FROM rollups \
             WHERE (series, resolution, bucket_ms) IN (VALUES {}){}",
            super::placeholders(chunk.len(), 3),
            if lock { " FOR UPDATE" } else { "" }
        );
        let mut q = sqlx::query_as::<_, RowRecord>(super::built(super::is_sqlite(tx), sql));
        for (s, r, b) in chunk {
            q = q.bind(*s).bind(*r).bind(*b);
        }
        for (s, r, b, count, failures, stale, body) in q.fetch_all(&mut **tx).await? {
            out.insert((s, r, b), rollup_of(count, failures, stale, &body));
        }
    }
    Ok(out)
}

/// Writes these rows as given (one upsert per [`CHUNK`]).
async fn write_rows(tx: &mut Tx<'_>, rows: &[(Key, &Rollup)]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO rollups (series, resolution, bucket_ms, count, failures, stale_ms, body) VALUES {} \
             ON CONFLICT (series, resolution, bucket_ms) DO UPDATE SET count = excluded.count, \
             failures = excluded.failures, stale_ms = excluded.stale_ms, body = excluded.body",
            super::placeholders(chunk.len(), 7)
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), sql));
        for ((s, r, b), rollup) in chunk {
            q = q
                .bind(*s)
                .bind(*r)
                .bind(*b)
                .bind(to_i64(rollup.count))
                .bind(to_i64(rollup.failures))
                .bind(rollup.stale_ms)
                .bind(rollup.body());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Adds `deltas` to their stored rows: one read and one write per chunk.
async fn merge_rows(
    tx: &mut Tx<'_>,
    lock: bool,
    deltas: &BTreeMap<Key, Rollup>,
) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let keys: Vec<Key> = deltas.keys().copied().collect();
    let mut stored = read_rows(tx, lock, &keys).await?;
    let merged: Vec<(Key, Rollup)> = deltas
        .iter()
        .map(|(k, d)| {
            let mut r = stored.remove(k).unwrap_or_default();
            r.merge(d);
            (*k, r)
        })
        .collect();
    let refs: Vec<(Key, &Rollup)> = merged.iter().map(|(k, r)| (*k, r)).collect();
    write_rows(tx, &refs).await
}

/// Applies hour and day rows to the series' summaries: added (`replace`
/// false, deltas) or replacing the bucket (`replace`, whole rows).
async fn update_summaries(
    tx: &mut Tx<'_>,
    lock: bool,
    rows: &BTreeMap<Key, Rollup>,
    replace: bool,
) -> Result<(), sqlx::Error> {
    let series: Vec<i64> = rows
        .keys()
        .filter(|k| k.1 != Resolution::Minute.code())
        .map(|k| k.0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in series.chunks(CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT series, body FROM rollup_summary WHERE series IN ({}){}",
            placeholders.join(", "),
            if lock { " FOR UPDATE" } else { "" }
        );
        let mut q = sqlx::query_as::<_, (i64, Vec<u8>)>(super::built(super::is_sqlite(tx), sql));
        for s in chunk {
            q = q.bind(*s);
        }
        let mut summaries: BTreeMap<i64, Summary> =
            chunk.iter().map(|s| (*s, Summary::default())).collect();
        for (s, body) in q.fetch_all(&mut **tx).await? {
            summaries.insert(s, Summary::decode(&body));
        }
        let (lo, hi) = (chunk[0], chunk[chunk.len() - 1]);
        for ((s, res, bucket), r) in rows.range((lo, i64::MIN, i64::MIN)..=(hi, i64::MAX, i64::MAX))
        {
            if let Some(sum) = summaries.get_mut(s) {
                if replace {
                    sum.set(resolution_of(*res), *bucket, r);
                } else {
                    sum.add(resolution_of(*res), *bucket, r);
                }
            }
        }
        let sql = format!(
            "INSERT INTO rollup_summary (series, body) VALUES {} \
             ON CONFLICT (series) DO UPDATE SET body = excluded.body",
            super::placeholders(summaries.len(), 2)
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), sql));
        for (s, mut sum) in summaries {
            sum.trim();
            q = q.bind(s).bind(sum.encode());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Hour and day deltas of these minute deltas.
fn coarse(minutes: &BTreeMap<Key, Rollup>) -> BTreeMap<Key, Rollup> {
    let mut out: BTreeMap<Key, Rollup> = BTreeMap::new();
    for ((s, _, bucket), r) in minutes {
        for res in [Resolution::Hour, Resolution::Day] {
            out.entry(key(*s, res, res.bucket(*bucket)))
                .or_default()
                .merge(r);
        }
    }
    out
}

/// Rolls up the results one ingest inserted (`(result, its time)`), in
/// the ingest's transaction: counts and latency into their minute rows,
/// closed STALE gaps (`stale_after_ms` per check; a check absent from it
/// gets none) into the minutes they cover, and the cursors forward.
/// Minutes the fold has passed already (a late result, a gap reaching
/// back) go into their hours, days and summaries too.
pub(crate) async fn apply(
    tx: &mut Tx<'_>,
    engine: Engine,
    stale_after_ms: &HashMap<String, i64>,
    results: &[(&NewResult, i64)],
) -> Result<(), sqlx::Error> {
    if results.is_empty() {
        return Ok(());
    }
    let lock = engine == Engine::Postgres;
    let mut by_region: BTreeMap<(&str, &str), Vec<&(&NewResult, i64)>> = BTreeMap::new();
    for item in results {
        by_region
            .entry((item.0.check_id.as_str(), item.0.region.as_str()))
            .or_default()
            .push(item);
    }
    let pairs: Vec<(&str, &str)> = by_region.keys().copied().collect();
    let series = series_of(tx, lock, &pairs).await?;
    let done: i64 = sqlx::query_scalar(if lock {
        "SELECT done_ms FROM rollup_fold WHERE id = 1 FOR SHARE"
    } else {
        "SELECT done_ms FROM rollup_fold WHERE id = 1"
    })
    .fetch_one(&mut **tx)
    .await?;
    let mut minutes: BTreeMap<Key, Rollup> = BTreeMap::new();
    let mut cursors: Vec<(i64, &str, &str, i64)> = Vec::new();
    for ((check, region), mut items) in by_region {
        let Some(&(id, prev)) = series.get(&(check.to_owned(), region.to_owned())) else {
            continue;
        };
        items.sort_by_key(|(r, at)| (*at, r.sequence));
        let stale_after = stale_after_ms.get(check).copied();
        let mut cursor = prev;
        for (r, at) in items {
            minutes
                .entry(key(id, Resolution::Minute, Resolution::Minute.bucket(*at)))
                .or_default()
                .record(r.ok, r.failure_code.as_deref(), &r.phases_us);
            if let (Some(last), Some(after)) = (cursor, stale_after)
                && let Some((from, to)) = history::closed_gap(last, *at, after)
            {
                for (bucket, ms) in history::stale_spans(Resolution::Minute, from, to) {
                    minutes
                        .entry(key(id, Resolution::Minute, bucket))
                        .or_default()
                        .stale_ms += ms;
                }
            }
            cursor = Some(cursor.map_or(*at, |c| c.max(*at)));
        }
        if let Some(last) = cursor
            && cursor != prev
        {
            cursors.push((id, check, region, last));
        }
    }
    merge_rows(tx, lock, &minutes).await?;
    if done > 0 {
        let late: BTreeMap<Key, Rollup> = minutes
            .iter()
            .filter(|(k, _)| k.2 < done)
            .map(|(k, r)| (*k, r.clone()))
            .collect();
        if !late.is_empty() {
            let late = coarse(&late);
            merge_rows(tx, lock, &late).await?;
            update_summaries(tx, lock, &late, false).await?;
        }
    }
    for chunk in cursors.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO rollup_series (id, check_id, region, last_at_ms) VALUES {} \
             ON CONFLICT (id) DO UPDATE SET last_at_ms = excluded.last_at_ms",
            super::placeholders(chunk.len(), 4)
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), sql));
        for (id, c, r, last) in chunk {
            q = q.bind(*id).bind(*c).bind(*r).bind(*last);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows of a range read, in the order the readers expect (check, bucket, region).
fn sorted(map: BTreeMap<(String, i64, String), Rollup>, res: Resolution) -> Vec<RollupRow> {
    map.into_iter()
        .map(|((check_id, bucket_ms, region), rollup)| RollupRow {
            check_id,
            region,
            resolution: res,
            bucket_ms,
            rollup,
        })
        .collect()
}

impl Store {
    /// `stale_after` per check for the STALE gaps of rollups (3 × each
    /// check's interval); set at start and on every reload. A check absent
    /// from it records no STALE time.
    pub fn set_stale_after(&self, stale_after_ms: HashMap<String, i64>) {
        let mut slot = self
            .stale_after
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = std::sync::Arc::new(stale_after_ms);
    }

    pub(crate) fn stale_after(&self) -> std::sync::Arc<HashMap<String, i64>> {
        self.stale_after
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Folds the minutes that ended at least [`FOLD_GRACE_MS`] before
    /// `now_ms` and are not folded yet into their hours, days and
    /// summaries, an hour of minutes per transaction; returns how many
    /// minute rows were folded. Any replica may run it: the fold's row
    /// serializes them.
    pub async fn fold_rollups(&self, now_ms: i64) -> Result<u64, StoreError> {
        let lock = self.engine == Engine::Postgres;
        let until = Resolution::Minute.bucket(now_ms - FOLD_GRACE_MS);
        let mut folded = 0u64;
        loop {
            let mut tx = self.begin_write().await?;
            let mut done: i64 = sqlx::query_scalar(if lock {
                "SELECT done_ms FROM rollup_fold WHERE id = 1 FOR UPDATE"
            } else {
                "SELECT done_ms FROM rollup_fold WHERE id = 1"
            })
            .fetch_one(&mut *tx)
            .await?;
            if done <= 0 {
                // Never folded: from the oldest minute there is.
                let first: Option<i64> =
                    sqlx::query_scalar("SELECT MIN(bucket_ms) FROM rollups WHERE resolution = 0")
                        .fetch_one(&mut *tx)
                        .await?;
                let Some(first) = first else {
                    return Ok(folded);
                };
                done = first;
            }
            if done >= until {
                return Ok(folded);
            }
            let end = until.min(done + FOLD_WINDOW_MS);
            // Page through the window's minutes in the index's order
            // (bucket, series), FOLD_PAGE rows at a time, in this one
            // transaction: memory stays bounded by the page whatever the
            // fleet's size (10,000 checks × 5 regions close 50,000 minutes
            // a minute). Each page's hours, days and summaries are merged
            // onto what the previous pages wrote.
            let mut from = (done, i64::MIN);
            loop {
                let rows: Vec<RowRecord> = sqlx::query_as(
                    "SELECT series, resolution, bucket_ms, count, failures, stale_ms, body FROM rollups \
                     WHERE resolution = 0 AND (bucket_ms, series) > ($1, $2) AND bucket_ms < $3 \
                     ORDER BY bucket_ms, series LIMIT $4",
                )
                .bind(from.0)
                .bind(from.1)
                .bind(end)
                .bind(FOLD_PAGE)
                .fetch_all(&mut *tx)
                .await?;
                let Some(last) = rows.last() else {
                    break;
                };
                from = (last.2, last.0);
                let full = rows.len() as i64 == FOLD_PAGE;
                folded += rows.len() as u64;
                let minutes: BTreeMap<Key, Rollup> = rows
                    .into_iter()
                    .map(|(s, r, b, count, failures, stale, body)| {
                        ((s, r, b), rollup_of(count, failures, stale, &body))
                    })
                    .collect();
                let deltas = coarse(&minutes);
                drop(minutes);
                merge_rows(&mut tx, lock, &deltas).await?;
                update_summaries(&mut tx, lock, &deltas, false).await?;
                if !full {
                    break;
                }
            }
            sqlx::query("UPDATE rollup_fold SET done_ms = $1 WHERE id = 1")
                .bind(end)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
    }

    /// Rollups of `res` with `from_ms <= bucket_ms < to_ms`, of one check
    /// (or of every check), ordered by check, bucket, region. Hours and
    /// days include the minutes not folded yet, in the same statement (one
    /// snapshot: a fold committing meanwhile counts nothing twice).
    pub async fn rollups(
        &self,
        res: Resolution,
        check_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        // Unfolded minutes of the range: those of buckets in it.
        let tail_from = res.bucket(from_ms);
        let rows: Vec<RangeRecord> = sqlx::query_as(
            "SELECT s.check_id, s.region, r.resolution, r.bucket_ms, r.count, r.failures, r.stale_ms, r.body \
             FROM rollups r JOIN rollup_series s ON s.id = r.series \
             WHERE r.resolution = $1 AND r.bucket_ms >= $2 AND r.bucket_ms < $3 AND ($4 IS NULL OR s.check_id = $4) \
             UNION ALL \
             SELECT s.check_id, s.region, r.resolution, r.bucket_ms, r.count, r.failures, r.stale_ms, r.body \
             FROM rollups r JOIN rollup_series s ON s.id = r.series \
             WHERE $1 > 0 AND r.resolution = 0 AND r.bucket_ms >= $5 AND r.bucket_ms < $3 \
               AND r.bucket_ms >= (SELECT done_ms FROM rollup_fold WHERE id = 1) \
               AND ($4 IS NULL OR s.check_id = $4)",
        )
        .bind(res.code())
        .bind(from_ms)
        .bind(to_ms)
        .bind(check_id)
        .bind(tail_from)
        .fetch_all(&self.pool)
        .await?;
        let mut map: BTreeMap<(String, i64, String), Rollup> = BTreeMap::new();
        for (check, region, _, bucket, count, failures, stale, body) in rows {
            let b = res.bucket(bucket);
            if b < from_ms {
                continue;
            }
            map.entry((check, b, region))
                .or_default()
                .merge(&rollup_of(count, failures, stale, &body));
        }
        Ok(sorted(map, res))
    }

    /// Every check × region's overview summary, the minutes not folded
    /// yet added (one statement, one snapshot): one row per check ×
    /// region plus a few unfolded minutes, whatever the history's length.
    pub async fn summaries(&self) -> Result<Vec<SeriesSummary>, StoreError> {
        let rows: Vec<SummaryRecord> = sqlx::query_as(
            "SELECT s.check_id, s.region, s.last_at_ms, m.body, CAST(NULL AS BIGINT), 0, 0, 0 \
             FROM rollup_series s LEFT JOIN rollup_summary m ON m.series = s.id \
             UNION ALL \
             SELECT s.check_id, s.region, s.last_at_ms, NULL, r.bucket_ms, r.count, r.failures, r.stale_ms \
             FROM rollups r JOIN rollup_series s ON s.id = r.series \
             WHERE r.resolution = 0 AND r.bucket_ms >= (SELECT done_ms FROM rollup_fold WHERE id = 1)"
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(summaries_from(rows))
    }

    /// [`Store::summaries`] of the checks `ids` names only (one page of
    /// the overview), one statement per 500
    /// checks.
    pub async fn summaries_of(&self, ids: &[&str]) -> Result<Vec<SeriesSummary>, StoreError> {
        let mut rows: Vec<SummaryRecord> = Vec::new();
        for chunk in ids.chunks(super::results::ROWS_PER_STATEMENT / 2) {
            let list = |from: usize| {
                (from..from + chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!(
                "SELECT s.check_id, s.region, s.last_at_ms, m.body, CAST(NULL AS BIGINT), 0, 0, 0 \
                 FROM rollup_series s LEFT JOIN rollup_summary m ON m.series = s.id \
                 WHERE s.check_id IN ({}) \
                 UNION ALL \
                 SELECT s.check_id, s.region, s.last_at_ms, NULL, r.bucket_ms, r.count, r.failures, r.stale_ms \
                 FROM rollups r JOIN rollup_series s ON s.id = r.series \
                 WHERE s.check_id IN ({}) AND r.resolution = 0 \
                   AND r.bucket_ms >= (SELECT done_ms FROM rollup_fold WHERE id = 1)",
                list(1),
                list(1 + chunk.len())
            );
            let mut q = sqlx::query_as::<_, SummaryRecord>(super::built(
                self.engine == Engine::Sqlite,
                sql,
            ));
            for id in chunk.iter().chain(chunk) {
                q = q.bind(*id);
            }
            rows.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(summaries_from(rows))
    }

    /// Writes rollup rows as given, replacing stored ones, and their
    /// hours and days into the summaries: for seeding a store (the
    /// benchmark's 30 days of history); ingest merges instead.
    pub async fn put_rollups(&self, rows: &[RollupRow]) -> Result<(), StoreError> {
        let lock = self.engine == Engine::Postgres;
        let mut tx = self.begin_write().await?;
        let pairs: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.check_id.as_str(), r.region.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let series = series_of(&mut tx, lock, &pairs).await?;
        let mut keyed: BTreeMap<Key, Rollup> = BTreeMap::new();
        for r in rows {
            if let Some((id, _)) = series.get(&(r.check_id.clone(), r.region.clone())) {
                keyed.insert(key(*id, r.resolution, r.bucket_ms), r.rollup.clone());
            }
        }
        let refs: Vec<(Key, &Rollup)> = keyed.iter().map(|(k, r)| (*k, r)).collect();
        write_rows(&mut tx, &refs).await?;
        update_summaries(&mut tx, lock, &keyed, true).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Bytes the SQLite file holds in use (pages less free pages; `None`
    /// on PostgreSQL): the benchmark's bytes per check-region-day.
    pub async fn sqlite_live_bytes(&self) -> Result<Option<i64>, StoreError> {
        if self.engine != Engine::Sqlite {
            return Ok(None);
        }
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&self.pool)
            .await?;
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&self.pool)
            .await?;
        let size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some((pages - free) * size))
    }

    /// Newest rolled-up result time per (check, region): where an open
    /// STALE gap starts ([`history::open_gap`]); of one check, or of every
    /// check (`None`).
    pub async fn rollup_cursors(&self, check_id: Option<&str>) -> Result<Vec<Cursor>, StoreError> {
        // Two texts, so one check's read goes through (check_id, region)'s
        // index (`$1 IS NULL OR …` would scan every series).
        let rows: Vec<(String, String, i64)> = match check_id {
            Some(id) => sqlx::query_as(
                "SELECT check_id, region, last_at_ms FROM rollup_series \
                 WHERE check_id = $1 AND last_at_ms >= 0 ORDER BY region",
            )
            .bind(id),
            None => sqlx::query_as(
                "SELECT check_id, region, last_at_ms FROM rollup_series \
                 WHERE last_at_ms >= 0 ORDER BY check_id, region",
            ),
        }
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(check_id, region, last_at_ms)| Cursor {
                check_id,
                region,
                last_at_ms,
            })
            .collect())
    }

    /// Deletes rollups of `res` whose bucket starts before `before_ms`
    /// (minutes: never one not folded yet), `batch` rows per statement
    /// (each its own short transaction, found through `rollups_by_age`, `rollups_fold_order` on PostgreSQL),
    /// with a pause between; returns how many.
    pub async fn prune_rollups(
        &self,
        res: Resolution,
        before_ms: i64,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut before = before_ms;
        if res == Resolution::Minute {
            let done: i64 = sqlx::query_scalar("SELECT done_ms FROM rollup_fold WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
            before = before.min(done);
        }
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM rollups WHERE (series, resolution, bucket_ms) IN \
                 (SELECT series, resolution, bucket_ms FROM rollups \
                  WHERE resolution = $1 AND bucket_ms < $2 LIMIT $3)",
            )
            .bind(res.code())
            .bind(before)
            .bind(i64::from(batch))
            .execute(&self.writer)
            .await?;
            total += r.rows_affected();
            if r.rows_affected() < u64::from(batch) {
                return Ok(total);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        IngestBatch,
        tests::{result, temp_stores},
    };

    const MIN: i64 = 60_000;

    fn timed(mut r: NewResult, total_us: u64) -> NewResult {
        r.phases_us = [0, 100, 0, total_us / 2, total_us];
        r
    }

    #[tokio::test]
    async fn rollups_count_each_result_once_in_every_resolution() {
        for (_d, s) in temp_stores().await {
            let batch = vec![
                timed(result("a", 1, "eu", true, 10 * MIN), 20_000),
                timed(result("b", 2, "eu", false, 10 * MIN + 30_000), 0),
                timed(result("c", 3, "eu", true, 11 * MIN), 40_000),
            ];
            s.ingest(IngestBatch::results(batch.clone(), 12 * MIN))
                .await
                .unwrap();
            // Resent and one more in the same minute: only the new one counts.
            let mut again = batch;
            again.push(timed(result("d", 4, "eu", true, 11 * MIN + 1), 40_000));
            s.ingest(IngestBatch::results(again, 12 * MIN))
                .await
                .unwrap();

            let minutes = s
                .rollups(Resolution::Minute, Some("api"), 0, 60 * MIN)
                .await
                .unwrap();
            let got: Vec<(i64, u64, u64)> = minutes
                .iter()
                .map(|r| (r.bucket_ms, r.rollup.count, r.rollup.failures))
                .collect();
            assert_eq!(got, [(10 * MIN, 2, 1), (11 * MIN, 2, 0)]);
            assert_eq!(
                minutes[0].rollup.codes,
                BTreeMap::from([("timeout".to_owned(), 1)])
            );
            let total = &minutes[1].rollup.latency[4];
            assert_eq!(total.count(), 2);
            let p50 = total.quantile(0.5).unwrap();
            assert!((35_000..=45_000).contains(&p50), "{p50}");
            assert_eq!(
                minutes[0].rollup.latency[2].count(),
                0,
                "a 0 µs phase is not recorded"
            );

            let hours = s
                .rollups(Resolution::Hour, None, 0, 24 * 60 * MIN)
                .await
                .unwrap();
            assert_eq!(hours.len(), 1);
            assert_eq!((hours[0].rollup.count, hours[0].rollup.failures), (4, 1));
            assert_eq!(hours[0].rollup.latency[4].count(), 3);
            let days = s.rollups(Resolution::Day, None, 0, i64::MAX).await.unwrap();
            assert_eq!(days[0].rollup, hours[0].rollup);
        }
    }

    #[tokio::test]
    async fn a_gap_longer_than_stale_after_is_stale_time_in_the_buckets_it_covers() {
        for (_d, s) in temp_stores().await {
            s.set_stale_after(HashMap::from([("api".to_owned(), 90_000)]));
            s.ingest(IngestBatch::results(
                vec![result("a", 1, "eu", true, 0)],
                MIN,
            ))
            .await
            .unwrap();
            // Silent until 5:30, then back.
            s.ingest(IngestBatch::results(
                vec![result("b", 2, "eu", true, 5 * MIN + 30_000)],
                6 * MIN,
            ))
            .await
            .unwrap();
            // A late resend of an old result changes no gap.
            s.ingest(IngestBatch::results(
                vec![result("c", 3, "eu", true, 2 * MIN)],
                6 * MIN,
            ))
            .await
            .unwrap();
            let minutes = s
                .rollups(Resolution::Minute, Some("api"), 0, 10 * MIN)
                .await
                .unwrap();
            let stale: Vec<(i64, i64)> = minutes
                .iter()
                .map(|r| (r.bucket_ms / MIN, r.rollup.stale_ms))
                .collect();
            assert_eq!(
                stale,
                [
                    (0, 0),
                    (1, 30_000),
                    (2, 60_000),
                    (3, 60_000),
                    (4, 60_000),
                    (5, 30_000)
                ]
            );
            let hour = &s
                .rollups(Resolution::Hour, Some("api"), 0, 60 * MIN)
                .await
                .unwrap()[0];
            assert_eq!((hour.rollup.stale_ms, hour.rollup.count), (240_000, 3));
            let cursors = s.rollup_cursors(None).await.unwrap();
            assert_eq!(cursors[0].last_at_ms, 5 * MIN + 30_000);
            // Another check without a stale_after: no STALE time.
            let mut other = result("d", 4, "eu", true, 0);
            other.check_id = "other".into();
            let mut later = result("e", 5, "eu", true, 30 * MIN);
            later.check_id = "other".into();
            s.ingest(IngestBatch::results(vec![other, later], 31 * MIN))
                .await
                .unwrap();
            // The cursors of one check are that check's alone.
            let of =
                |c: &[Cursor]| -> Vec<String> { c.iter().map(|c| c.check_id.clone()).collect() };
            assert_eq!(of(&s.rollup_cursors(None).await.unwrap()), ["api", "other"]);
            assert_eq!(of(&s.rollup_cursors(Some("api")).await.unwrap()), ["api"]);
            assert_eq!(
                of(&s.rollup_cursors(Some("other")).await.unwrap()),
                ["other"]
            );
            let rows = s
                .rollups(Resolution::Hour, Some("other"), 0, 60 * MIN)
                .await
                .unwrap();
            assert_eq!(rows[0].rollup.stale_ms, 0);
        }
    }

    /// A window of more minutes than one page holds folds page by page
    /// into the same totals: every series' hour and summary counts each of
    /// its minutes once, including a series whose minutes fall on
    /// different pages.
    #[tokio::test]
    async fn a_fold_larger_than_a_page_counts_every_minute_once() {
        let series = 1_500usize;
        for (_d, s) in temp_stores().await {
            for minute in 0..3i64 {
                let batch: Vec<NewResult> = (0..series)
                    .map(|k| {
                        let seq = u64::try_from(minute).unwrap() * 10_000 + k as u64;
                        result(
                            &format!("m{minute}-{k}"),
                            seq,
                            &format!("r{k:04}"),
                            !(minute == 1 && k % 7 == 0),
                            minute * MIN + 5,
                        )
                    })
                    .collect();
                s.ingest(IngestBatch::results(batch, minute * MIN + 10))
                    .await
                    .unwrap();
            }
            let rows = 3 * series as u64;
            assert!(rows > 2 * FOLD_PAGE as u64, "more than two pages");
            assert_eq!(s.fold_rollups(3 * MIN + FOLD_GRACE_MS).await.unwrap(), rows);
            let hours = s
                .rollups(Resolution::Hour, Some("api"), 0, 60 * MIN)
                .await
                .unwrap();
            assert_eq!(hours.len(), series, "one hour row per series");
            for h in &hours {
                let failing = h.region[1..].parse::<usize>().unwrap() % 7 == 0;
                assert_eq!(
                    (h.rollup.count, h.rollup.failures),
                    (3, u64::from(failing)),
                    "{}",
                    h.region
                );
                assert_eq!(h.rollup.latency[4].count(), 3 - u64::from(failing));
            }
            let sums = s.summaries().await.unwrap();
            assert_eq!(sums.len(), series);
            assert!(
                sums.iter()
                    .all(|x| x.summary.hours[&0].0 == 3 && x.summary.days[&0].0 == 3)
            );
            assert_eq!(s.fold_rollups(3 * MIN + FOLD_GRACE_MS).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn retention_prunes_one_resolution_in_batches() {
        for (_d, s) in temp_stores().await {
            let batch: Vec<NewResult> = (0..12)
                .map(|i| {
                    result(
                        &format!("r{i}"),
                        i,
                        "eu",
                        true,
                        i64::try_from(i).unwrap() * MIN,
                    )
                })
                .collect();
            s.ingest(IngestBatch::results(batch, 13 * MIN))
                .await
                .unwrap();
            assert_eq!(
                s.prune_rollups(Resolution::Minute, 10 * MIN, 3)
                    .await
                    .unwrap(),
                0,
                "minutes not folded yet are kept"
            );
            assert_eq!(s.fold_rollups(13 * MIN + FOLD_GRACE_MS).await.unwrap(), 12);
            assert_eq!(
                s.prune_rollups(Resolution::Minute, 10 * MIN, 3)
                    .await
                    .unwrap(),
                10
            );
            let left = s
                .rollups(Resolution::Minute, None, 0, i64::MAX)
                .await
                .unwrap();
            assert_eq!(
                left.iter().map(|r| r.bucket_ms / MIN).collect::<Vec<_>>(),
                [10, 11]
            );
            // The hour and the day are untouched.
            assert_eq!(
                s.rollups(Resolution::Hour, None, 0, i64::MAX)
                    .await
                    .unwrap()[0]
                    .rollup
                    .count,
                12
            );
            assert_eq!(s.prune_rollups(Resolution::Hour, 0, 3).await.unwrap(), 0);
        }
    }

    fn hour_counts(rows: &[RollupRow]) -> Vec<(u64, u64)> {
        rows.iter()
            .map(|r| (r.rollup.count, r.rollup.failures))
            .collect()
    }

    #[tokio::test]
    async fn the_fold_counts_each_minute_once_and_late_results_reach_hours_and_summaries() {
        for (_d, s) in temp_stores().await {
            let batch: Vec<NewResult> = (0..6)
                .map(|i| {
                    result(
                        &format!("r{i}"),
                        i,
                        "eu",
                        i != 3,
                        i64::try_from(i).unwrap() * MIN,
                    )
                })
                .collect();
            s.ingest(IngestBatch::results(batch, 6 * MIN))
                .await
                .unwrap();
            let hours = || s.rollups(Resolution::Hour, Some("api"), 0, 60 * MIN);
            // Before any fold the hour is the minutes' sum, read at once.
            assert_eq!(hour_counts(&hours().await.unwrap()), [(6, 1)]);
            assert_eq!(s.fold_rollups(10 * MIN).await.unwrap(), 6);
            assert_eq!(s.fold_rollups(10 * MIN).await.unwrap(), 0, "folded once");
            assert_eq!(
                hour_counts(&hours().await.unwrap()),
                [(6, 1)],
                "folded minutes are not counted again"
            );
            let sum = s.summaries().await.unwrap();
            assert_eq!(sum.len(), 1);
            assert_eq!(
                (sum[0].check_id.as_str(), sum[0].region.as_str()),
                ("api", "eu")
            );
            assert_eq!(sum[0].last_at_ms, 5 * MIN);
            assert_eq!(sum[0].summary.hours[&0], (6, 1, 0));
            assert_eq!(sum[0].summary.days[&0], (6, 1, 0));

            // Late: minute 2 was folded; its new result reaches the hour,
            // the day and the summary in the ingest's transaction.
            s.ingest(IngestBatch::results(
                vec![result("late", 10, "eu", false, 2 * MIN + 5)],
                11 * MIN,
            ))
            .await
            .unwrap();
            assert_eq!(hour_counts(&hours().await.unwrap()), [(7, 2)]);
            let days = s
                .rollups(Resolution::Day, Some("api"), 0, i64::MAX)
                .await
                .unwrap();
            assert_eq!(hour_counts(&days), [(7, 2)]);
            assert_eq!(s.summaries().await.unwrap()[0].summary.hours[&0], (7, 2, 0));
            // New, not folded yet: read from the minute until the fold.
            s.ingest(IngestBatch::results(
                vec![result("new", 11, "eu", true, 12 * MIN)],
                12 * MIN,
            ))
            .await
            .unwrap();
            assert_eq!(hour_counts(&hours().await.unwrap()), [(8, 2)]);
            assert_eq!(s.summaries().await.unwrap()[0].summary.hours[&0], (8, 2, 0));
            assert_eq!(s.fold_rollups(20 * MIN).await.unwrap(), 1);
            assert_eq!(hour_counts(&hours().await.unwrap()), [(8, 2)]);
            let sum = s.summaries().await.unwrap();
            assert_eq!(sum[0].summary.hours[&0], (8, 2, 0));
            assert_eq!(sum[0].last_at_ms, 12 * MIN);
            // The minute rows themselves: the late one merged into minute 2.
            let minutes = s
                .rollups(Resolution::Minute, Some("api"), 0, 60 * MIN)
                .await
                .unwrap();
            assert_eq!(minutes.len(), 7);
            assert_eq!(hour_counts(&minutes[2..3]), [(2, 1)]);
        }
    }

    #[tokio::test]
    async fn seeded_rows_replace_and_reach_the_summaries() {
        for (_d, s) in temp_stores().await {
            let row = |region: &str, res: Resolution, bucket_ms: i64, count: u64| RollupRow {
                check_id: "api".into(),
                region: region.into(),
                resolution: res,
                bucket_ms,
                rollup: Rollup {
                    count,
                    failures: 1,
                    ..Rollup::default()
                },
            };
            let hour = Resolution::Hour.width_ms();
            s.put_rollups(&[
                row("eu", Resolution::Hour, 0, 60),
                row("us", Resolution::Hour, hour, 30),
            ])
            .await
            .unwrap();
            s.put_rollups(&[row("eu", Resolution::Hour, 0, 50)])
                .await
                .unwrap();
            let sum = s.summaries().await.unwrap();
            assert_eq!(sum.len(), 2);
            assert_eq!(sum[0].summary.hours[&0], (50, 1, 0), "replaced, not added");
            assert_eq!(sum[1].summary.hours[&hour], (30, 1, 0));
            let rows = s
                .rollups(Resolution::Hour, None, 0, 2 * hour)
                .await
                .unwrap();
            assert_eq!(hour_counts(&rows), [(50, 1), (30, 1)]);
        }
    }
}
