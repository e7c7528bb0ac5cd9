//! SQL of the `events` table (see [`crate::event`] for what an event is and
//! how reports of one change are merged).

use sqlx::{Row, sqlite::SqliteRow};

use super::{Store, StoreError};
use crate::event::{MERGE_WINDOW_MS, NewEvent};

/// A stored event (API, page).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub regions: Vec<String>,
    /// Probes that reported it, in report order.
    pub probes: Vec<String>,
    /// The change (JSON object).
    pub detail_json: String,
}

fn list(row: &SqliteRow, col: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get(col)?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

fn event_from(row: &SqliteRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        check_id: row.try_get("check_id")?,
        kind: row.try_get("kind")?,
        title: row.try_get("title")?,
        regions: list(row, "regions_json")?,
        probes: list(row, "probes_json")?,
        detail_json: row.try_get("detail_json")?,
    })
}

fn push_new(list: &mut Vec<String>, v: &str) {
    if !list.iter().any(|x| x == v) {
        list.push(v.to_owned());
    }
}

/// Stores one event inside the ingest transaction: merged into a report of
/// the same change within the window by another probe (`None`), else a new
/// row (its id).
pub(super) async fn record(
    tx: &mut sqlx::SqliteTransaction<'_>,
    e: &NewEvent,
) -> Result<Option<i64>, sqlx::Error> {
    let near = sqlx::query(
        "SELECT * FROM events WHERE change_key = ? AND at_ms BETWEEN ? AND ? ORDER BY at_ms DESC, id DESC LIMIT 1",
    )
    .bind(&e.change_key)
    .bind(e.at_ms - MERGE_WINDOW_MS)
    .bind(e.at_ms + MERGE_WINDOW_MS)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = near {
        let mut ev = event_from(&row)?;
        if !ev.probes.contains(&e.probe) {
            push_new(&mut ev.probes, &e.probe);
            push_new(&mut ev.regions, &e.region);
            sqlx::query(
                "UPDATE events SET regions_json = ?, probes_json = ?, at_ms = MIN(at_ms, ?) WHERE id = ?",
            )
            .bind(serde_json::to_string(&ev.regions).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&ev.probes).unwrap_or_else(|_| "[]".into()))
            .bind(e.at_ms)
            .bind(ev.id)
            .execute(&mut **tx)
            .await?;
            return Ok(None);
        }
    }
    let r = sqlx::query(
        "INSERT INTO events (at_ms, check_id, region, probe, kind, change_key, title, regions_json, probes_json, detail_json) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.at_ms)
    .bind(&e.check_id)
    .bind(&e.region)
    .bind(&e.probe)
    .bind(&e.kind)
    .bind(&e.change_key)
    .bind(&e.title)
    .bind(serde_json::json!([e.region]).to_string())
    .bind(serde_json::json!([e.probe]).to_string())
    .bind(e.detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(Some(r.last_insert_rowid()))
}

impl Store {
    /// The newest `limit` events, of one check or of all.
    pub async fn events(
        &self,
        check_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE (?1 IS NULL OR check_id = ?1) ORDER BY at_ms DESC, id DESC LIMIT ?2",
        )
        .bind(check_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(event_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Deletes events older than `before_ms`; returns how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM events WHERE at_ms < ?")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
