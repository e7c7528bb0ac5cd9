//! SQL of `probes`: hello data, last seen, the latest heartbeat.

use std::collections::BTreeMap;

use super::{Flag, Store, StoreError, Tx, to_i64};

/// A probe row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    #[sqlx(try_from = "Flag")]
    pub connected: bool,
    /// Results waiting on the probe for an ack, as of its last heartbeat.
    #[sqlx(try_from = "i64")]
    pub queued_results: u64,
    /// Results the probe dropped since it started, as of its last heartbeat.
    #[sqlx(try_from = "i64")]
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
    pub dropped_by_reason: BTreeMap<String, u64>,
}

impl Store {
    /// Records a hello: the probe is connected, with this version and labels.
    pub async fn upsert_probe(&self, p: &ProbeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO probes (name, region, version, labels_json, last_seen_ms, connected) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET region = excluded.region, version = excluded.version, \
             labels_json = excluded.labels_json, last_seen_ms = excluded.last_seen_ms, connected = excluded.connected",
        )
        .bind(&p.name)
        .bind(&p.region)
        .bind(&p.version)
        .bind(&p.labels_json)
        .bind(p.last_seen_ms)
        .bind(i64::from(p.connected))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Updates a probe's last-seen time (never backwards).
    pub async fn touch_probe(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        touch(&mut tx, name, at_ms).await?;
        tx.commit().await?;
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
            "UPDATE probes SET last_seen_ms = CASE WHEN last_seen_ms > $1 THEN last_seen_ms ELSE $1 END, \
             heartbeat_at_ms = $1, queued_results = $2, dropped_results = $3, dropped_json = $4 WHERE name = $5",
        )
        .bind(at_ms)
        .bind(to_i64(hb.queued_results))
        .bind(to_i64(hb.dropped_results))
        .bind(dropped_json)
        .bind(name)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Marks a probe connected or not. Bookkeeping only: `last_seen_ms` is
    /// left alone, because noticing that a stream died (a reset, or the
    /// HTTP/2 keepalive giving up on a silent peer) is not hearing from the
    /// probe. Liveness moves only on what the probe sent ([`Store::upsert_probe`],
    /// [`Store::touch_probe`], [`Store::record_heartbeat`]); see
    /// [`crate::alerting::offline`].
    pub async fn set_probe_connected(&self, name: &str, connected: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE probes SET connected = $1 WHERE name = $2")
            .bind(i64::from(connected))
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// At start no stream is open, whatever the last process recorded.
    pub async fn mark_all_probes_disconnected(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE probes SET connected = 0")
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Every probe that ever said hello.
    pub async fn probes(&self) -> Result<Vec<ProbeRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT name, region, version, labels_json, last_seen_ms, connected, \
             queued_results, dropped_results, dropped_json, heartbeat_at_ms FROM probes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Moves a probe's last-seen time forward to `at_ms` (never back), inside
/// a write transaction (an ingested batch's, or its own).
pub(super) async fn touch(tx: &mut Tx<'_>, name: &str, at_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE probes SET last_seen_ms = CASE WHEN last_seen_ms > $1 THEN last_seen_ms ELSE $1 END \
         WHERE name = $2",
    )
    .bind(at_ms)
    .bind(name)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_stores;

    #[tokio::test]
    async fn last_seen_never_moves_back_and_heartbeats_are_kept() {
        for (_d, s) in temp_stores().await {
            s.upsert_probe(&ProbeRow::hello("p", "eu", "1.0", "{\"az\":\"a\"}", 1000))
                .await
                .unwrap();
            s.touch_probe("p", 500).await.unwrap();
            let hb = HeartbeatRow {
                queued_results: 7,
                dropped_results: 3,
                dropped_by_reason: [("size".to_owned(), 3)].into_iter().collect(),
            };
            s.record_heartbeat("p", 900, &hb).await.unwrap();
            s.set_probe_connected("p", false).await.unwrap();
            let rows = s.probes().await.unwrap();
            assert_eq!(
                rows,
                vec![ProbeRow {
                    connected: false,
                    queued_results: 7,
                    dropped_results: 3,
                    dropped_json: "{\"size\":3}".into(),
                    heartbeat_at_ms: Some(900),
                    ..ProbeRow::hello("p", "eu", "1.0", "{\"az\":\"a\"}", 1000)
                }]
            );
            s.touch_probe("p", 2000).await.unwrap();
            assert_eq!(s.probes().await.unwrap()[0].last_seen_ms, 2000);
        }
    }

    #[tokio::test]
    async fn a_disconnect_is_not_hearing_from_the_probe() {
        for (_d, s) in temp_stores().await {
            s.upsert_probe(&ProbeRow::hello("p", "eu", "1.0", "{}", 1000))
                .await
                .unwrap();
            // The stream is noticed dead much later (keepalive): last seen stays
            // at the last message, so the probe keeps counting as silent.
            s.set_probe_connected("p", false).await.unwrap();
            let row = &s.probes().await.unwrap()[0];
            assert_eq!((row.connected, row.last_seen_ms), (false, 1000));
        }
    }
}
