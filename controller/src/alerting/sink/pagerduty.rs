//! PagerDuty Events API v2: `POST {api_url}/v2/enqueue`.
//!
//! Trigger: `{routing_key, event_action: "trigger", dedup_key, payload:
//! {summary, source, severity, component, group, class, custom_details}}`.
//! Resolve: `{routing_key, event_action: "resolve", dedup_key}`. PagerDuty
//! answers 202; 400 means the event is invalid (not retried), 429 and 5xx are
//! retried by the delivery worker.
//!
//! Info notifications of events (`dns_change`) are *change events*:
//! `POST {api_url}/v2/change/enqueue` with `{routing_key, payload: {summary,
//! timestamp, source, custom_details}}` — they show on the service's
//! timeline and never open an incident.
//!
//! Escalation (`certificate_expiring` crossing a shorter threshold) is a
//! second trigger with the same dedup key and a higher severity: PagerDuty
//! appends it to the open incident instead of opening another one.

use outpost_probe::config::Secret;

use super::{Delivery, REQUEST_TIMEOUT, post_json};
use crate::alerting::{Action, AlertEvent, AlertKind, Kind};

/// `source` of every event: the monitoring system, not the target.
pub const SOURCE: &str = "outpost";

/// The JSON body for an event.
pub fn body(routing_key: &Secret, event: &AlertEvent) -> serde_json::Value {
    if event.action == Action::Resolve {
        return serde_json::json!({
            "routing_key": routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": event.dedup_key,
        });
    }
    // Fleet-level alerts name a probe or a certificate, check alerts a check.
    let (component, group) = match &event.probe {
        _ if event.kind == Kind::Alert(AlertKind::CertificateExpiring) => (
            event
                .details
                .get("subject")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or(event.dedup_key.as_str()),
            "certificate",
        ),
        Some(probe) if event.check_id.is_empty() => (probe.as_str(), "probe"),
        _ => (
            event.check_id.as_str(),
            event
                .details
                .get("check_kind")
                .and_then(|v| v.as_str())
                .unwrap_or("check"),
        ),
    };
    serde_json::json!({
        "routing_key": routing_key.expose(),
        "event_action": "trigger",
        "dedup_key": event.dedup_key,
        "payload": {
            "summary": event.summary,
            "source": SOURCE,
            "severity": event.severity,
            "component": component,
            "group": group,
            "class": event.code,
            "custom_details": event.details,
        },
    })
}

/// The JSON body of a change event (an event's `info` notification).
pub fn change_body(routing_key: &Secret, event: &AlertEvent) -> serde_json::Value {
    let timestamp =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(event.at_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
    serde_json::json!({
        "routing_key": routing_key.expose(),
        "payload": {
            "summary": crate::alerting::truncate(&event.summary, 1024),
            "timestamp": timestamp,
            "source": SOURCE,
            "custom_details": event.details,
        },
    })
}

/// Sends one event.
pub async fn send(api_url: &str, routing_key: &Secret, event: &AlertEvent) -> Delivery {
    let base = api_url.trim_end_matches('/');
    let (url, payload) = if event.action == Action::Info {
        (
            format!("{base}/v2/change/enqueue"),
            change_body(routing_key, event),
        )
    } else {
        (format!("{base}/v2/enqueue"), body(routing_key, event))
    };
    let payload = payload.to_string().into_bytes();
    match post_json(&url, &[], payload, REQUEST_TIMEOUT).await {
        Ok(resp) => resp.delivery(),
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action) -> AlertEvent {
        AlertEvent {
            action,
            dedup_key: "outpost/api/check_failing".into(),
            check_id: "api".into(),
            probe: None,
            kind: AlertKind::CheckFailing.into(),
            summary: "api failing from 2 of 3 regions (eu-west, us-east): timeout".into(),
            severity: crate::alerting::Severity::Critical,
            regions: vec!["eu-west".into(), "us-east".into()],
            code: "timeout".into(),
            details: serde_json::json!({ "check_kind": "http" }),
            at_ms: 1,
        }
    }

    #[test]
    fn trigger_body_has_every_required_field() {
        let b = body(&Secret::new("key"), &event(Action::Trigger));
        assert_eq!(b["routing_key"], "key");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "outpost/api/check_failing");
        assert_eq!(b["payload"]["source"], "outpost");
        assert_eq!(b["payload"]["severity"], "critical");
        assert_eq!(b["payload"]["component"], "api");
        assert_eq!(b["payload"]["class"], "timeout");
    }

    #[test]
    fn info_notifications_are_change_events() {
        let mut e = event(Action::Info);
        e.summary = "app.example.com A: CNAME blue → green on udp://10.0.0.53:53".into();
        e.at_ms = 1_893_456_000_000;
        let b = change_body(&Secret::new("key"), &e);
        assert_eq!(b["routing_key"], "key");
        assert_eq!(b["payload"]["summary"], e.summary);
        assert_eq!(b["payload"]["timestamp"], "2030-01-01T00:00:00Z");
        assert_eq!(b["payload"]["source"], "outpost");
        assert!(b.get("event_action").is_none());
    }

    #[test]
    fn resolve_body_is_minimal() {
        let b = body(&Secret::new("key"), &event(Action::Resolve));
        assert_eq!(
            b,
            serde_json::json!({ "routing_key": "key", "event_action": "resolve", "dedup_key": "outpost/api/check_failing" })
        );
    }
}
