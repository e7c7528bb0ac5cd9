//! SQL of the `events` table (see [`crate::event`] for what an event is and
//! how reports of one change are merged).

use super::{Store, StoreError, Tx};
use crate::event::{MERGE_WINDOW_MS, NewEvent};

/// A stored event (API, page).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    /// Id.
    pub id: i64,
    /// When it happened (first report), unix ms.
    pub at_ms: i64,
    /// Check.
    pub check_id: String,
    /// Kind (`dns_change`).
    pub kind: String,
    /// One line for humans.
    pub title: String,
    /// Regions that reported it, in report order.
    #[sqlx(rename = "regions_json", json)]
    pub regions: Vec<String>,
    /// Probes that reported it, in report order.
    #[sqlx(rename = "probes_json", json)]
    pub probes: Vec<String>,
    /// The change (JSON object).
    pub detail_json: String,
}

/// Who reported an event so far.
#[derive(sqlx::FromRow)]
struct Reporters {
    id: i64,
    #[sqlx(rename = "regions_json", json)]
    regions: Vec<String>,
    #[sqlx(rename = "probes_json", json)]
    probes: Vec<String>,
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

/// Stores one event inside the ingest transaction: merged into a report of
/// the same change within the window by another probe (`None`), else a new
/// row (its id).
pub(super) async fn record(tx: &mut Tx<'_>, e: &NewEvent) -> Result<Option<i64>, sqlx::Error> {
    let near: Option<Reporters> = sqlx::query_as(
        "SELECT id, regions_json, probes_json FROM events WHERE change_key = $1 AND at_ms BETWEEN $2 AND $3 \
         ORDER BY at_ms DESC, id DESC LIMIT 1",
    )
    .bind(&e.change_key)
    .bind(e.at_ms - MERGE_WINDOW_MS)
    .bind(e.at_ms + MERGE_WINDOW_MS)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(mut near) = near
        && !near.probes.contains(&e.probe)
    {
        near.probes.push(e.probe.clone());
        if !near.regions.contains(&e.region) {
            near.regions.push(e.region.clone());
        }
        sqlx::query(
            "UPDATE events SET regions_json = $1, probes_json = $2, \
             at_ms = CASE WHEN at_ms < $3 THEN at_ms ELSE $3 END WHERE id = $4",
        )
        .bind(json_list(&near.regions))
        .bind(json_list(&near.probes))
        .bind(e.at_ms)
        .bind(near.id)
        .execute(&mut **tx)
        .await?;
        return Ok(None);
    }
    let id = sqlx::query_scalar(
        "INSERT INTO events (at_ms, check_id, region, probe, kind, change_key, title, regions_json, probes_json, detail_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(e.at_ms)
    .bind(&e.check_id)
    .bind(&e.region)
    .bind(&e.probe)
    .bind(&e.kind)
    .bind(&e.change_key)
    .bind(&e.title)
    .bind(json_list(std::slice::from_ref(&e.region)))
    .bind(json_list(std::slice::from_ref(&e.probe)))
    .bind(e.detail.to_string())
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(id))
}

impl Store {
    /// The newest `limit` events, of one check or of all.
    pub async fn events(
        &self,
        check_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, at_ms, check_id, kind, title, regions_json, probes_json, detail_json FROM events \
             WHERE ($1 IS NULL OR check_id = $1) ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(check_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes events older than `before_ms`; returns how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM events WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
