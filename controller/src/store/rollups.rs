//! SQL of `rollups` and `rollup_cursor` (the math and the design note are
//! in [`crate::history`]): the per-batch merge that [`Store::ingest`]
//! calls once, in its transaction, with the results it inserted; range
//! reads; the batched retention prune.

use std::collections::{BTreeMap, HashMap};

use super::{Engine, NewResult, Store, StoreError, Tx, to_i64};
use crate::history::{self, Resolution, Rollup};

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

#[derive(sqlx::FromRow)]
struct RollupRecord {
    check_id: String,
    region: String,
    bucket_ms: i64,
    count: i64,
    failures: i64,
    stale_ms: i64,
    latency_json: String,
    codes_json: String,
}

impl RollupRecord {
    fn rollup(&self) -> Rollup {
        Rollup {
            count: u64::try_from(self.count).unwrap_or(0),
            failures: u64::try_from(self.failures).unwrap_or(0),
            stale_ms: self.stale_ms,
            ..Rollup::default()
        }
        .with_json(&self.latency_json, &self.codes_json)
    }

    fn into_row(self, resolution: Resolution) -> RollupRow {
        RollupRow {
            rollup: self.rollup(),
            check_id: self.check_id,
            region: self.region,
            resolution,
            bucket_ms: self.bucket_ms,
        }
    }
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

/// A row key in visiting order (resolution, check, bucket, region): the
/// primary key's order, so replicas lock rows in the same order.
type Key = (Resolution, String, i64, String);

/// Rolls up the results one ingest inserted (`(result, its time)`), in
/// the ingest's transaction: counts and latency into every resolution's
/// bucket, closed STALE gaps (`stale_after_ms` per check; a check absent
/// from it gets none) into the buckets they cover, and the cursors forward.
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
    let mut deltas: BTreeMap<Key, Rollup> = BTreeMap::new();
    for ((check, region), mut items) in by_region {
        items.sort_by_key(|(r, at)| (*at, r.sequence));
        // PostgreSQL: locked, so two replicas never both extend one gap.
        macro_rules! cursor {
            ($lock:literal) => {
                concat!(
                    "SELECT last_at_ms FROM rollup_cursor WHERE check_id = $1 AND region = $2",
                    $lock
                )
            };
        }
        let sql = if lock {
            cursor!(" FOR UPDATE")
        } else {
            cursor!("")
        };
        let prev: Option<i64> = sqlx::query_scalar(sql)
            .bind(check)
            .bind(region)
            .fetch_optional(&mut **tx)
            .await?;
        let stale_after = stale_after_ms.get(check).copied();
        let mut cursor = prev;
        for (r, at) in items {
            for res in Resolution::ALL {
                deltas
                    .entry((res, check.to_owned(), res.bucket(*at), region.to_owned()))
                    .or_default()
                    .record(r.ok, r.failure_code.as_deref(), &r.phases_us);
            }
            if let (Some(last), Some(after)) = (cursor, stale_after)
                && let Some((from, to)) = history::closed_gap(last, *at, after)
            {
                for res in Resolution::ALL {
                    for (bucket, ms) in history::stale_spans(res, from, to) {
                        deltas
                            .entry((res, check.to_owned(), bucket, region.to_owned()))
                            .or_default()
                            .stale_ms += ms;
                    }
                }
            }
            cursor = Some(cursor.map_or(*at, |c| c.max(*at)));
        }
        if let Some(last) = cursor
            && cursor != prev
        {
            sqlx::query(
                "INSERT INTO rollup_cursor (check_id, region, last_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (check_id, region) DO UPDATE SET last_at_ms = excluded.last_at_ms \
                 WHERE excluded.last_at_ms > rollup_cursor.last_at_ms",
            )
            .bind(check)
            .bind(region)
            .bind(last)
            .execute(&mut **tx)
            .await?;
        }
    }
    for ((res, check, bucket, region), delta) in deltas {
        merge_row(tx, lock, res, &check, bucket, &region, &delta).await?;
    }
    Ok(())
}

/// Read, merge, write back one row. A row another replica inserts between
/// our read and our insert makes the insert do nothing: then it is read
/// again (locked) and updated.
async fn merge_row(
    tx: &mut Tx<'_>,
    lock: bool,
    res: Resolution,
    check: &str,
    bucket: i64,
    region: &str,
    delta: &Rollup,
) -> Result<(), sqlx::Error> {
    for _ in 0..2 {
        macro_rules! row {
            ($lock:literal) => {
                concat!(
                    "SELECT check_id, region, bucket_ms, count, failures, stale_ms, latency_json, codes_json \
                     FROM rollups WHERE resolution = $1 AND check_id = $2 AND bucket_ms = $3 AND region = $4",
                    $lock
                )
            };
        }
        let sql = if lock { row!(" FOR UPDATE") } else { row!("") };
        let stored: Option<RollupRecord> = sqlx::query_as(sql)
            .bind(res.as_str())
            .bind(check)
            .bind(bucket)
            .bind(region)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(stored) = stored else {
            let done = sqlx::query(
                "INSERT INTO rollups (resolution, check_id, bucket_ms, region, count, failures, stale_ms, \
                 latency_json, codes_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (resolution, check_id, bucket_ms, region) DO NOTHING",
            )
            .bind(res.as_str())
            .bind(check)
            .bind(bucket)
            .bind(region)
            .bind(to_i64(delta.count))
            .bind(to_i64(delta.failures))
            .bind(delta.stale_ms)
            .bind(delta.latency_json())
            .bind(delta.codes_json())
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() > 0 {
                return Ok(());
            }
            continue;
        };
        let mut merged = stored.rollup();
        merged.merge(delta);
        sqlx::query(
            "UPDATE rollups SET count = $5, failures = $6, stale_ms = $7, latency_json = $8, codes_json = $9 \
             WHERE resolution = $1 AND check_id = $2 AND bucket_ms = $3 AND region = $4",
        )
        .bind(res.as_str())
        .bind(check)
        .bind(bucket)
        .bind(region)
        .bind(to_i64(merged.count))
        .bind(to_i64(merged.failures))
        .bind(merged.stale_ms)
        .bind(merged.latency_json())
        .bind(merged.codes_json())
        .execute(&mut **tx)
        .await?;
        return Ok(());
    }
    // The row was inserted by another replica after our read and then
    // vanished before our second read: only a prune of a bucket that is
    // being written could do that, which retention (≥ 1 m) rules out.
    Ok(())
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

    /// Rollups of `res` with `from_ms <= bucket_ms < to_ms`, of one check
    /// (or of every check), ordered by check, bucket, region.
    pub async fn rollups(
        &self,
        res: Resolution,
        check_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        macro_rules! range {
            ($rest:literal) => {
                concat!(
                    "SELECT check_id, region, bucket_ms, count, failures, stale_ms, latency_json, codes_json \
                     FROM rollups WHERE resolution = $1 AND bucket_ms >= $2 AND bucket_ms < $3",
                    $rest
                )
            };
        }
        let rows: Vec<RollupRecord> = match check_id {
            Some(check) => {
                sqlx::query_as(range!(
                    " AND check_id = $4 ORDER BY check_id, bucket_ms, region"
                ))
                .bind(res.as_str())
                .bind(from_ms)
                .bind(to_ms)
                .bind(check)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(range!(" ORDER BY check_id, bucket_ms, region"))
                    .bind(res.as_str())
                    .bind(from_ms)
                    .bind(to_ms)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.into_iter().map(|r| r.into_row(res)).collect())
    }

    /// Writes rollup rows as given, replacing stored ones: for seeding a
    /// store (the benchmark's 30 days of history); ingest merges instead.
    pub async fn put_rollups(&self, rows: &[RollupRow]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO rollups (resolution, check_id, bucket_ms, region, count, failures, stale_ms, \
                 latency_json, codes_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (resolution, check_id, bucket_ms, region) DO UPDATE SET count = excluded.count, \
                 failures = excluded.failures, stale_ms = excluded.stale_ms, \
                 latency_json = excluded.latency_json, codes_json = excluded.codes_json",
            )
            .bind(r.resolution.as_str())
            .bind(&r.check_id)
            .bind(r.bucket_ms)
            .bind(&r.region)
            .bind(to_i64(r.rollup.count))
            .bind(to_i64(r.rollup.failures))
            .bind(r.rollup.stale_ms)
            .bind(r.rollup.latency_json())
            .bind(r.rollup.codes_json())
            .execute(&mut *tx)
            .await?;
        }
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
    /// STALE gap starts ([`history::open_gap`]).
    pub async fn rollup_cursors(&self) -> Result<Vec<Cursor>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT check_id, region, last_at_ms FROM rollup_cursor ORDER BY check_id, region",
        )
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

    /// Deletes rollups of `res` whose bucket starts before `before_ms`,
    /// `batch` rows per statement (each its own short transaction, found
    /// through `rollups_by_age`), with a pause between; returns how many.
    pub async fn prune_rollups(
        &self,
        res: Resolution,
        before_ms: i64,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM rollups WHERE (resolution, check_id, bucket_ms, region) IN \
                 (SELECT resolution, check_id, bucket_ms, region FROM rollups \
                  WHERE resolution = $1 AND bucket_ms < $2 LIMIT $3)",
            )
            .bind(res.as_str())
            .bind(before_ms)
            .bind(i64::from(batch))
            .execute(&self.pool)
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
            let cursors = s.rollup_cursors().await.unwrap();
            assert_eq!(cursors[0].last_at_ms, 5 * MIN + 30_000);
            // Another check without a stale_after: no STALE time.
            let mut other = result("d", 4, "eu", true, 0);
            other.check_id = "other".into();
            let mut later = result("e", 5, "eu", true, 30 * MIN);
            later.check_id = "other".into();
            s.ingest(IngestBatch::results(vec![other, later], 31 * MIN))
                .await
                .unwrap();
            let rows = s
                .rollups(Resolution::Hour, Some("other"), 0, 60 * MIN)
                .await
                .unwrap();
            assert_eq!(rows[0].rollup.stale_ms, 0);
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
}
