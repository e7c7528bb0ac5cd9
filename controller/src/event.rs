//! Events: things that happened to a target that are worth a line on the
//! page but are not failures. Today one kind, `dns_change`: a resolver's
//! answer set for a `dns` check changed (the IOT incident's CNAME flip).
//!
//! Design note.
//! - **Source.** A `dns` result carries `details.changes[]` only on the run
//!   that saw a change (`{resolver, at, old_ttl_s, old, new}`, `old`/`new`
//!   being `{rcode, cname_target, answers, fingerprint}`; see the probe's
//!   `check/dns.rs`). [`from_result`] turns each into a [`NewEvent`];
//!   ingest puts them in its batch next to the result, and the store writes
//!   them in the same transaction, only if the result is new, so a resent
//!   batch (absorbed by the results table) never records an event twice.
//! - **One change, one event.** Every region usually asks the same listed
//!   resolver, so the same change arrives from several probes. Reports with
//!   the same [`change_key`] (check, resolver, old → new fingerprint) within
//!   [`MERGE_WINDOW_MS`] of the first are merged into one event listing every
//!   region and probe that saw it. A second report of the same key by a probe
//!   already listed is a new change (the answer flipped back and forth), so it
//!   is a new event.
//! - **Where they show.** `GET /api/v1/events`, the status page ("Recent
//!   changes") and the check's page (old → new).
//! - **Notifications.** Events are not alerts: nothing opens or resolves.
//!   A route that lists `"dns_change"` in its `kinds` (never a default)
//!   gets one `info` notification per new event (not per merged report),
//!   queued in the ingest transaction ([`notice`]: everything but the new
//!   event's id, which the store adds) and delivered through the same outbox:
//!   webhooks get `event: "info"`, the console logs it at INFO, PagerDuty
//!   gets a *change event* (`/v2/change/enqueue`: shown on the service's
//!   timeline, never an incident). Route PagerDuty sinks to `dns_change` only
//!   if you want that timeline entry.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    alerting::{Action, AlertEvent, Severity},
    store::{EventNotice, NewResult},
};

/// The kind of an event: a route names it in `kinds` to get its `info`
/// notifications; stored in `events.kind`, shown by the API.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum EventKind {
    /// A resolver's answer set for a `dns` check changed.
    DnsChange,
}

impl EventKind {
    /// The stable name (`dns_change`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DnsChange => "dns_change",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Reports of the same change this close to the first one are one event.
pub const MERGE_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Longest title stored.
const MAX_TITLE: usize = 300;

/// The `info` notification of a new event, short of the event's id (see
/// [`EventNotice`]): dedup key `outpost/<check>/<kind>/<id>`, payload an
/// [`crate::alerting::AlertEvent`] with `action: "info"` whose details are
/// the change plus `check_id`, `probe` and (filled in at delivery) `event_id`.
pub fn notice(e: &NewEvent) -> EventNotice {
    let dedup_key_prefix = format!("outpost/{}/{}/", e.check_id, e.kind);
    let mut details = e.detail.clone();
    if let Some(map) = details.as_object_mut() {
        map.insert("check_id".into(), e.check_id.clone().into());
        map.insert("probe".into(), e.probe.clone().into());
    }
    let event = AlertEvent {
        action: Action::Info,
        dedup_key: dedup_key_prefix.clone(),
        check_id: e.check_id.clone(),
        probe: None,
        kind: e.kind.into(),
        summary: e.title.clone(),
        severity: Severity::Info,
        regions: vec![e.region.clone()],
        code: e.kind.as_str().to_owned(),
        details,
        at_ms: e.at_ms,
    };
    EventNotice {
        dedup_key_prefix,
        payload_json: serde_json::to_string(&event).unwrap_or_else(|_| "{}".into()),
    }
}

/// An event to store (ingest).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// When it happened (the result's start, clamped to its arrival).
    pub at_ms: i64,
    /// Check.
    pub check_id: String,
    /// Region of the reporting probe.
    pub region: String,
    /// Reporting probe.
    pub probe: String,
    /// `dns_change`.
    pub kind: EventKind,
    /// What makes two reports the same change.
    pub change_key: String,
    /// One line for humans.
    pub title: String,
    /// The change as the probe reported it, plus the query name and type.
    pub detail: Value,
}

/// The dedup key of a change: check, resolver, old and new fingerprint.
pub fn change_key(check_id: &str, resolver: &str, old_fp: &str, new_fp: &str) -> String {
    format!("{check_id}|{resolver}|{old_fp}|{new_fp}")
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The data part of an answer-set entry (`"blue.example.net A 192.0.2.10"` → `192.0.2.10`).
fn answer_data(entry: &str) -> &str {
    entry.splitn(3, ' ').nth(2).unwrap_or(entry)
}

fn answers(set: &Value) -> String {
    let list: Vec<&str> = set
        .get("answers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(answer_data)
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        "(no answers)".to_owned()
    } else {
        list.join(", ")
    }
}

/// What changed between two answer sets, in words: `CNAME blue → green`,
/// `NOERROR → NXDOMAIN`, or `192.0.2.10 → 192.0.2.20`.
pub fn describe(old: &Value, new: &Value) -> String {
    let (oc, nc) = (text(old, "cname_target"), text(new, "cname_target"));
    if oc != nc {
        return format!(
            "CNAME {} → {}",
            oc.unwrap_or("(none)"),
            nc.unwrap_or("(none)")
        );
    }
    let (or, nr) = (text(old, "rcode"), text(new, "rcode"));
    if or != nr {
        return format!("{} → {}", or.unwrap_or("?"), nr.unwrap_or("?"));
    }
    format!("{} → {}", answers(old), answers(new))
}

/// Events in one result: one per entry of `details.changes` of a `dns`
/// result. Entries without a resolver or both fingerprints are skipped.
pub fn from_result(r: &NewResult, at_ms: i64) -> Vec<NewEvent> {
    if r.kind != "dns" {
        return Vec::new();
    }
    let Ok(details) = serde_json::from_str::<Value>(&r.details_json) else {
        return Vec::new();
    };
    let Some(changes) = details.get("changes").and_then(Value::as_array) else {
        return Vec::new();
    };
    let name = text(&details, "name").unwrap_or("?");
    let rtype = text(&details, "type").unwrap_or("?");
    changes
        .iter()
        .filter_map(|c| {
            let resolver = text(c, "resolver")?;
            let old = c.get("old")?;
            let new = c.get("new")?;
            let (old_fp, new_fp) = (text(old, "fingerprint")?, text(new, "fingerprint")?);
            let title = crate::alerting::truncate(
                &format!("{name} {rtype}: {} on {resolver}", describe(old, new)),
                MAX_TITLE,
            );
            Some(NewEvent {
                at_ms,
                check_id: r.check_id.clone(),
                region: r.region.clone(),
                probe: r.probe.clone(),
                kind: EventKind::DnsChange,
                change_key: change_key(&r.check_id, resolver, old_fp, new_fp),
                title,
                detail: serde_json::json!({
                    "name": name,
                    "type": rtype,
                    "resolver": resolver,
                    "at": c.get("at"),
                    "old_ttl_s": c.get("old_ttl_s"),
                    "old": old,
                    "new": new,
                }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(details: Value) -> NewResult {
        NewResult {
            result_id: "r".into(),
            probe: "p".into(),
            region: "eu".into(),
            check_id: "www-dns".into(),
            sequence: 1,
            kind: "dns".into(),
            started_at_ms: 1,
            ok: true,
            failure_code: None,
            failure_message: None,
            phases_us: [0; 5],
            details_json: details.to_string(),
        }
    }

    #[test]
    fn a_cname_flip_is_titled_with_old_and_new_target() {
        let r = result(serde_json::json!({
            "name": "app.example.com", "type": "A",
            "changes": [{
                "resolver": "udp://10.0.0.53:53", "at": "2030-01-01T00:00:00Z", "old_ttl_s": 300,
                "old": {"rcode": "NOERROR", "cname_target": "blue.example.com", "answers": ["blue.example.com A 10.0.0.1"], "fingerprint": "aa"},
                "new": {"rcode": "NOERROR", "cname_target": "green.example.com", "answers": ["green.example.com A 10.0.0.2"], "fingerprint": "bb"}
            }, {"resolver": "udp://10.0.0.54:53", "old": {}, "new": {}}]
        }));
        let events = from_result(&r, 5);
        assert_eq!(events.len(), 1, "an entry without fingerprints is skipped");
        assert_eq!(
            events[0].title,
            "app.example.com A: CNAME blue.example.com → green.example.com on udp://10.0.0.53:53"
        );
        assert_eq!(events[0].change_key, "www-dns|udp://10.0.0.53:53|aa|bb");
        assert_eq!(events[0].detail["old_ttl_s"], 300);
    }

    #[test]
    fn answer_and_rcode_changes_are_described() {
        let a = serde_json::json!({"rcode": "NOERROR", "answers": ["x A 192.0.2.1"]});
        let b =
            serde_json::json!({"rcode": "NOERROR", "answers": ["x A 192.0.2.2", "x A 192.0.2.3"]});
        assert_eq!(describe(&a, &b), "192.0.2.1 → 192.0.2.2, 192.0.2.3");
        let nx = serde_json::json!({"rcode": "NXDOMAIN", "answers": []});
        assert_eq!(describe(&a, &nx), "NOERROR → NXDOMAIN");
    }

    #[test]
    fn other_kinds_and_bad_json_give_no_events() {
        let mut r = result(serde_json::json!({"changes": []}));
        r.kind = "http".into();
        assert!(from_result(&r, 1).is_empty());
        r.kind = "dns".into();
        r.details_json = "not json".into();
        assert!(from_result(&r, 1).is_empty());
    }
}
