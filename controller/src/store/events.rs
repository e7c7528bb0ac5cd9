//! SQL of the `events` table (see [`crate::event`] for what an event is and
//! how reports of one change are merged).

use super::{JsonText, Store, StoreError, Tx};
use crate::event::{ChangeDetail, EventKind, MERGE_WINDOW_MS, NewEvent};

/// A stored event (API, page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Id.
    pub id: i64,
    /// When it happened (first report), unix ms.
    pub at_ms: i64,
    /// Check.
    pub check_id: String,
    /// Kind.
    pub kind: EventKind,
    /// One line for humans.
    pub title: String,
    /// Regions that reported it, in report order.
    pub regions: Vec<String>,
    /// Probes that reported it, in report order.
    pub probes: Vec<String>,
    /// The change, read from `detail_json` (tolerantly: a row that does not
    /// read gives an empty detail, not a failed page).
    pub detail: ChangeDetail,
}

/// An `events` row as stored.
#[derive(sqlx::FromRow)]
struct EventRecord {
    id: i64,
    at_ms: i64,
    check_id: String,
    kind: EventKind,
    title: String,
    #[sqlx(rename = "regions_json", try_from = "JsonText")]
    regions: Vec<String>,
    #[sqlx(rename = "probes_json", try_from = "JsonText")]
    probes: Vec<String>,
    detail_json: String,
}

impl From<EventRecord> for EventRow {
    fn from(r: EventRecord) -> EventRow {
        EventRow {
            id: r.id,
            at_ms: r.at_ms,
            check_id: r.check_id,
            kind: r.kind,
            title: r.title,
            regions: r.regions,
            probes: r.probes,
            detail: serde_json::from_str(&r.detail_json).unwrap_or_default(),
        }
    }
}

/// An event to store, with the notification its sinks get if it is new.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestEvent {
    /// The event.
    pub event: NewEvent,
    /// Its `info` notification ([`crate::event::notice`]).
    pub notice: EventNotice,
}

/// What the `info` notification of a new event is made of, short of the
/// event's id, which only the insert knows. The store completes the dedup
/// key (`dedup_key_prefix` followed by the new row's id) and records the id
/// in `notifications.event_id`; the delivery worker sets the payload's
/// `dedup_key` and `details.event_id` from that row
/// ([`crate::alerting::AlertEvent::from_outbox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNotice {
    /// The dedup key up to the id: `outpost/<check>/dns_change/`.
    pub dedup_key_prefix: String,
    /// The sink-neutral payload ([`crate::alerting::AlertEvent`], `action: "info"`).
    pub payload_json: String,
}

/// Who reported an event so far.
#[derive(sqlx::FromRow)]
struct Reporters {
    id: i64,
    #[sqlx(rename = "regions_json", try_from = "JsonText")]
    regions: Vec<String>,
    #[sqlx(rename = "probes_json", try_from = "JsonText")]
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
    .bind(e.kind)
    .bind(&e.change_key)
    .bind(&e.title)
    .bind(json_list(std::slice::from_ref(&e.region)))
    .bind(json_list(std::slice::from_ref(&e.probe)))
    .bind(serde_json::to_string(&e.detail).unwrap_or_else(|_| "{}".into()))
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
        let rows: Vec<EventRecord> = sqlx::query_as(
            "SELECT id, at_ms, check_id, kind, title, regions_json, probes_json, detail_json FROM events \
             WHERE ($1 IS NULL OR check_id = $1) ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(check_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(EventRow::from).collect())
    }

    /// Deletes events older than `before_ms`; returns how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM events WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        alerting::Action,
        certificate::Seen,
        store::{
            IngestBatch, IngestItem,
            tests::{result, temp_stores},
        },
    };

    fn change(probe: &str, region: &str) -> IngestEvent {
        IngestEvent {
            event: NewEvent {
                at_ms: 1000,
                check_id: "api".into(),
                region: region.into(),
                probe: probe.into(),
                kind: EventKind::DnsChange,
                change_key: "api|udp://10.0.0.53:53|aa|bb".into(),
                title: "blue → green".into(),
                detail: ChangeDetail {
                    resolver: "udp://10.0.0.53:53".into(),
                    ..ChangeDetail::default()
                },
            },
            notice: EventNotice {
                dedup_key_prefix: "outpost/api/dns_change/".into(),
                payload_json: "{\"action\":\"info\"}".into(),
            },
        }
    }

    fn seen() -> Seen {
        Seen {
            fingerprint: "ab".into(),
            subject: "CN=api".into(),
            issuer: "CN=ca".into(),
            sans: vec!["api.example.net".into()],
            not_before_ms: None,
            not_after_ms: 9000,
            key_type: String::new(),
            signature_algorithm: String::new(),
            is_ca: false,
            self_signed: false,
            position: Some(0),
            trust_store: None,
            address: "192.0.2.1:443".into(),
            host: "api.example.net".into(),
        }
    }

    fn batch(id: &str, region: &str, received: i64) -> IngestBatch {
        let mut item = IngestItem::from(result(id, 1, region, true, 1000));
        item.events.push(change(&format!("p-{region}"), region));
        item.certificates.push(seen());
        IngestBatch {
            received_at_ms: received,
            items: vec![item],
            probe: None,
            event_sinks: vec!["hook".into(), "log".into()],
        }
    }

    #[tokio::test]
    async fn a_new_event_notifies_each_sink_and_merged_or_resent_reports_add_nothing() {
        for (_d, s) in temp_stores().await {
            let first = s.ingest(batch("a", "eu", 2000)).await.unwrap();
            assert_eq!((first.dns_changes, first.certificates), (1, 1));
            // Resent: the result is a duplicate, so nothing derived from it is written.
            let again = s.ingest(batch("a", "eu", 3000)).await.unwrap();
            assert_eq!(
                (again.duplicates, again.dns_changes, again.certificates),
                (1, 0, 0)
            );
            assert_eq!(
                s.certificate_sightings().await.unwrap()[0].last_seen_ms,
                1000
            );
            // Another probe reports the same change: merged, nobody notified again.
            let other = s.ingest(batch("b", "us", 2500)).await.unwrap();
            assert_eq!(other.dns_changes, 1);
            let events = s.events(None, 10).await.unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].regions, vec!["eu", "us"]);
            assert_eq!(events[0].probes, vec!["p-eu", "p-us"]);
            assert_eq!(events[0].detail.resolver, "udp://10.0.0.53:53");
            let due = s.due_notifications(i64::MAX, 10).await.unwrap();
            let id = events[0].id;
            assert_eq!(
                due.iter()
                    .map(|n| (n.sink.as_str(), n.action, n.dedup_key.clone(), n.event_id))
                    .collect::<Vec<_>>(),
                vec![
                    (
                        "hook",
                        Action::Info,
                        format!("outpost/api/dns_change/{id}"),
                        Some(id)
                    ),
                    (
                        "log",
                        Action::Info,
                        format!("outpost/api/dns_change/{id}"),
                        Some(id)
                    ),
                ]
            );
            assert_eq!(due[0].payload_json, "{\"action\":\"info\"}");
            assert_eq!(due[0].alert_id, None);
            assert_eq!(s.certificate_sightings().await.unwrap().len(), 2);
        }
    }
}
