//! The phase timings of the newest result per (check, region), read at
//! scrape time for the blackbox-compatible series of `/metrics`
//! ([`crate::blackbox`]).
//!
//! `region_state` keeps the newest outcome (and names the newest result)
//! but not the timings; rather than widen that row (written on every
//! ingest), a scrape reads them from `results` through `results_by_check`
//! — one indexed lookup per
//! (check, region), paid per scrape instead of per result. A (check,
//! region) whose results were all pruned has no row here.

use super::{Store, StoreError};

/// Phase timings of one (check, region)'s newest stored result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestTimings {
    /// Check id.
    pub check_id: String,
    /// Region.
    pub region: String,
    /// Phase timings in µs, as stored: dns, connect, tls, first byte,
    /// total (0 for a phase that did not run).
    pub phases_us: [u64; 5],
}

#[derive(sqlx::FromRow)]
struct LatestRecord {
    check_id: String,
    region: String,
    dns_us: i64,
    connect_us: i64,
    tls_us: i64,
    first_byte_us: i64,
    total_us: i64,
}

impl Store {
    /// Timings of the newest result of every (check, region) that has one.
    pub async fn latest_timings(&self) -> Result<Vec<LatestTimings>, StoreError> {
        let rows: Vec<LatestRecord> = sqlx::query_as(
            "SELECT s.check_id, s.region, r.dns_us, r.connect_us, r.tls_us, r.first_byte_us, r.total_us \
             FROM region_state s JOIN results r ON r.result_id = ( \
               SELECT n.result_id FROM results n WHERE n.check_id = s.check_id AND n.region = s.region \
               ORDER BY n.started_at_ms DESC, n.sequence DESC LIMIT 1) \
             ORDER BY s.check_id, s.region",
        )
        .fetch_all(&self.pool)
        .await?;
        let us = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|r| LatestTimings {
                phases_us: [
                    us(r.dns_us),
                    us(r.connect_us),
                    us(r.tls_us),
                    us(r.first_byte_us),
                    us(r.total_us),
                ],
                check_id: r.check_id,
                region: r.region,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IngestBatch, tests::result, tests::temp_stores};

    #[tokio::test]
    async fn newest_result_per_check_and_region_gives_the_timings() {
        for (_d, s) in temp_stores().await {
            let mut old = result("a1", 1, "eu", true, 1_000);
            old.phases_us = [10, 20, 30, 40, 100];
            let mut new = result("a2", 2, "eu", false, 2_000);
            new.phases_us = [11, 0, 0, 0, 50];
            let mut us = result("b1", 1, "us", true, 1_500);
            us.phases_us = [1, 2, 3, 4, 10];
            s.ingest(IngestBatch::results(vec![new, old, us], 5_000))
                .await
                .unwrap();
            let got = s.latest_timings().await.unwrap();
            assert_eq!(
                got,
                [
                    LatestTimings {
                        check_id: "api".into(),
                        region: "eu".into(),
                        phases_us: [11, 0, 0, 0, 50],
                    },
                    LatestTimings {
                        check_id: "api".into(),
                        region: "us".into(),
                        phases_us: [1, 2, 3, 4, 10],
                    },
                ]
            );
        }
    }
}
