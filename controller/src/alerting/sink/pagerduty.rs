//! PagerDuty Events API v2: `POST {api_url}/v2/enqueue`.
//!
//! Trigger: `{routing_key, event_action: "trigger", dedup_key, payload:
//! {summary, source, severity, component, group, class, custom_details}}`.
//! Resolve: `{routing_key, event_action: "resolve", dedup_key}`. PagerDuty
//! answers 202; 400 means the event is invalid (not retried), 429 and 5xx are
//! retried by the delivery worker.

use outpost_probe::config::Secret;

use super::{Delivery, REQUEST_TIMEOUT, post_json};
use crate::alerting::AlertEvent;

/// `source` of every event: the monitoring system, not the target.
pub const SOURCE: &str = "outpost";

/// The JSON body for an event.
pub fn body(routing_key: &Secret, event: &AlertEvent) -> serde_json::Value {
    if event.action == "resolve" {
        return serde_json::json!({
            "routing_key": routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": event.dedup_key,
        });
    }
    // Fleet-level alerts name a probe, check alerts a check.
    let (component, group) = match &event.probe {
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

/// Sends one event.
pub async fn send(api_url: &str, routing_key: &Secret, event: &AlertEvent) -> Delivery {
    let url = format!("{}/v2/enqueue", api_url.trim_end_matches('/'));
    let payload = body(routing_key, event).to_string().into_bytes();
    match post_json(&url, &[], payload, REQUEST_TIMEOUT).await {
        Ok(resp) => resp.delivery(),
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> AlertEvent {
        AlertEvent {
            action: action.into(),
            dedup_key: "outpost/api/check_failing".into(),
            check_id: "api".into(),
            probe: None,
            kind: "check_failing".into(),
            summary: "api failing from 2 of 3 regions (eu-west, us-east): timeout".into(),
            severity: "critical".into(),
            regions: vec!["eu-west".into(), "us-east".into()],
            code: "timeout".into(),
            details: serde_json::json!({ "check_kind": "http" }),
            at_ms: 1,
        }
    }

    #[test]
    fn trigger_body_has_every_required_field() {
        let b = body(&Secret::new("key"), &event("trigger"));
        assert_eq!(b["routing_key"], "key");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "outpost/api/check_failing");
        assert_eq!(b["payload"]["source"], "outpost");
        assert_eq!(b["payload"]["severity"], "critical");
        assert_eq!(b["payload"]["component"], "api");
        assert_eq!(b["payload"]["class"], "timeout");
    }

    #[test]
    fn resolve_body_is_minimal() {
        let b = body(&Secret::new("key"), &event("resolve"));
        assert_eq!(
            b,
            serde_json::json!({ "routing_key": "key", "event_action": "resolve", "dedup_key": "outpost/api/check_failing" })
        );
    }
}
