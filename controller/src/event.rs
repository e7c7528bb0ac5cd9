//! Events: things that happened to a target that are worth a line on the
//! page but are not failures. Today one kind, `dns_change`: a resolver's
//! answer set for a `dns` check changed (the IOT incident's CNAME flip).
//!
//! Design note.
//! - **Source.** A `dns` result carries `details.changes[]` only on the run
//!   that saw a change (the probe's `dns::ChangeRecord`: `{resolver, at,
//!   old_ttl_s, old, new}`, `old`/`new` being `dns::AnswerSet`s `{rcode,
//!   cname_target, answers, fingerprint}`). [`from_result`] reads a `dns`
//!   result's details as the probe's type and turns each entry into a [`NewEvent`]
//!   whose [`ChangeDetail`] is stored and shown as it is;
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

use outpost_probe::check::{
    Kind,
    dns::{self, AnswerSet},
};
use serde::{Deserialize, Serialize};

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

/// What a `dns_change` event records (`events.detail_json`, the API's
/// `detail`): the probe's change report (`details.changes[]`) with the
/// query it answered. Read tolerantly: rows written by older controllers
/// may lack `at` and `old_ttl_s` (`null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChangeDetail {
    /// The asked name.
    pub name: String,
    /// The asked type (`A`, `AAAA`…).
    #[serde(rename = "type")]
    pub rtype: String,
    /// The resolver whose answer changed.
    pub resolver: String,
    /// When the probe saw the change, RFC 3339.
    pub at: Option<String>,
    /// Largest TTL seen for the old set, seconds.
    pub old_ttl_s: Option<u32>,
    /// What it served before.
    pub old: AnswerSet,
    /// What it serves now.
    pub new: AnswerSet,
}

/// The `details` of an event's `info` notification: the change, and who saw it.
#[derive(Serialize)]
struct NoticeDetails<'a> {
    #[serde(flatten)]
    change: &'a ChangeDetail,
    check_id: &'a str,
    probe: &'a str,
}

/// The `info` notification of a new event, short of the event's id (see
/// [`EventNotice`]): dedup key `outpost/<check>/<kind>/<id>`, payload an
/// [`crate::alerting::AlertEvent`] with `action: "info"` whose details are
/// the change plus `check_id`, `probe` and (filled in at delivery) `event_id`.
pub fn notice(e: &NewEvent) -> EventNotice {
    let dedup_key_prefix = format!("outpost/{}/{}/", e.check_id, e.kind);
    let details = NoticeDetails {
        change: &e.detail,
        check_id: &e.check_id,
        probe: &e.probe,
    };
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
        details: serde_json::to_value(details).unwrap_or_default(),
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
    pub detail: ChangeDetail,
}

/// The dedup key of a change: check, resolver, old and new fingerprint.
pub fn change_key(check_id: &str, resolver: &str, old_fp: &str, new_fp: &str) -> String {
    format!("{check_id}|{resolver}|{old_fp}|{new_fp}")
}

/// The data part of an answer-set entry (`"blue.example.net A 192.0.2.10"` → `192.0.2.10`).
fn answer_data(entry: &str) -> &str {
    entry.splitn(3, ' ').nth(2).unwrap_or(entry)
}

fn answers(set: &AnswerSet) -> String {
    if set.answers.is_empty() {
        "(no answers)".to_owned()
    } else {
        let data: Vec<&str> = set.answers.iter().map(|a| answer_data(a)).collect();
        data.join(", ")
    }
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// What changed between two answer sets, in words: `CNAME blue → green`,
/// `NOERROR → NXDOMAIN`, or `192.0.2.10 → 192.0.2.20`.
pub fn describe(old: &AnswerSet, new: &AnswerSet) -> String {
    fn target(s: &AnswerSet) -> Option<&str> {
        s.cname_target.as_deref().and_then(nonempty)
    }
    let (oc, nc) = (target(old), target(new));
    if oc != nc {
        return format!(
            "CNAME {} → {}",
            oc.unwrap_or("(none)"),
            nc.unwrap_or("(none)")
        );
    }
    let (or, nr) = (nonempty(&old.rcode), nonempty(&new.rcode));
    if or != nr {
        return format!("{} → {}", or.unwrap_or("?"), nr.unwrap_or("?"));
    }
    format!("{} → {}", answers(old), answers(new))
}

/// Events in one result: one per entry of `details.changes` of a `dns`
/// result, read from its details as the probe's [`dns::Observed`] (details
/// that do not read so report none). Entries without a resolver or both
/// fingerprints are skipped.
pub fn from_result(r: &NewResult, at_ms: i64) -> Vec<NewEvent> {
    if r.kind.parse::<Kind>() != Ok(Kind::Dns) {
        return Vec::new();
    }
    let Ok(details) = serde_json::from_str::<dns::Observed>(&r.details_json) else {
        return Vec::new();
    };
    let name = nonempty(&details.name).unwrap_or("?");
    let rtype = nonempty(&details.rtype).unwrap_or("?");
    details
        .changes
        .iter()
        .filter(|c| !c.resolver.is_empty())
        .filter(|c| !c.old.fingerprint.is_empty() && !c.new.fingerprint.is_empty())
        .map(|c| NewEvent {
            at_ms,
            check_id: r.check_id.clone(),
            region: r.region.clone(),
            probe: r.probe.clone(),
            kind: EventKind::DnsChange,
            change_key: change_key(
                &r.check_id,
                &c.resolver,
                &c.old.fingerprint,
                &c.new.fingerprint,
            ),
            title: crate::alerting::truncate(
                &format!(
                    "{name} {rtype}: {} on {}",
                    describe(&c.old, &c.new),
                    c.resolver
                ),
                MAX_TITLE,
            ),
            detail: ChangeDetail {
                name: name.to_owned(),
                rtype: rtype.to_owned(),
                resolver: c.resolver.clone(),
                at: Some(c.at.clone()),
                old_ttl_s: Some(c.old_ttl_s),
                old: c.old.clone(),
                new: c.new.clone(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(kind: &str, details: String) -> NewResult {
        let mut r = crate::store::tests::result("r", 1, "eu", true, 1);
        r.check_id = "www-dns".into();
        r.kind = kind.into();
        r.with_details(details)
    }

    fn set(text: String) -> AnswerSet {
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_cname_flip_is_titled_with_old_and_new_target() {
        let r = result("dns", json!({
            "name": "app.example.com", "type": "A",
            "changes": [{
                "resolver": "udp://10.0.0.53:53", "at": "2030-01-01T00:00:00Z", "old_ttl_s": 300,
                "old": {"rcode": "NOERROR", "cname_target": "blue.example.com", "answers": ["blue.example.com A 10.0.0.1"], "fingerprint": "aa"},
                "new": {"rcode": "NOERROR", "cname_target": "green.example.com", "answers": ["green.example.com A 10.0.0.2"], "fingerprint": "bb"}
            }, {"resolver": "udp://10.0.0.54:53", "old": {}, "new": {}}]
        }).to_string());
        let events = from_result(&r, 5);
        assert_eq!(events.len(), 1, "an entry without fingerprints is skipped");
        assert_eq!(
            events[0].title,
            "app.example.com A: CNAME blue.example.com → green.example.com on udp://10.0.0.53:53"
        );
        assert_eq!(events[0].change_key, "www-dns|udp://10.0.0.53:53|aa|bb");
        assert_eq!(events[0].detail.old_ttl_s, Some(300));
        // The stored detail keeps the keys rows of older controllers have.
        let stored = serde_json::to_value(&events[0].detail).unwrap();
        assert_eq!(stored["type"], "A");
        assert_eq!(stored["old"]["cname_target"], "blue.example.com");
        assert_eq!(stored["at"], "2030-01-01T00:00:00Z");
    }

    #[test]
    fn answer_and_rcode_changes_are_described() {
        let a = set(json!({"rcode": "NOERROR", "answers": ["x A 192.0.2.1"]}).to_string());
        let b = set(
            json!({"rcode": "NOERROR", "answers": ["x A 192.0.2.2", "x A 192.0.2.3"]}).to_string(),
        );
        assert_eq!(describe(&a, &b), "192.0.2.1 → 192.0.2.2, 192.0.2.3");
        let nx = set(json!({"rcode": "NXDOMAIN", "answers": []}).to_string());
        assert_eq!(describe(&a, &nx), "NOERROR → NXDOMAIN");
    }

    #[test]
    fn other_kinds_and_bad_json_give_no_events() {
        let changes = json!({"changes": [{"resolver": "r", "old": {"fingerprint": "a"}, "new": {"fingerprint": "b"}}]});
        assert_eq!(from_result(&result("dns", changes.to_string()), 1).len(), 1);
        assert!(from_result(&result("http", changes.to_string()), 1).is_empty());
        assert!(from_result(&result("dns", "not json".into()), 1).is_empty());
    }

    #[test]
    fn details_stored_by_older_controllers_read_back() {
        let old: ChangeDetail = serde_json::from_value(json!({
            "name": "app.example.com", "type": "A", "resolver": "udp://10.0.0.53:53",
            "at": null, "old_ttl_s": null,
            "old": {"rcode": "NOERROR", "cname_target": null, "answers": [], "fingerprint": "aa"},
            "new": {"rcode": "NXDOMAIN", "answers": [], "fingerprint": "bb"}
        }))
        .unwrap();
        assert_eq!((old.at, old.old_ttl_s), (None, None));
        assert_eq!(old.new.rcode, "NXDOMAIN");
    }
}
