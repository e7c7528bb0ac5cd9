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

use outpost_probe::config::{Problems, RawSecret, Secret};
use serde::Deserialize;

use super::{Delivery, HttpResponse, SinkKind, post_event};
use crate::{
    alerting::{Action, AlertEvent, AlertKind, Kind},
    config::{resolve_secret, validate_url},
};

/// Default PagerDuty Events API base URL.
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com";
/// Default PagerDuty events per minute per routing key (PagerDuty's documented limit).
pub const DEFAULT_EVENTS_PER_MINUTE: u32 = 120;

/// `[sinks.pagerduty]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    /// Integration (routing) key of the PagerDuty service:
    /// `{ env = "PD_ROUTING_KEY" }` or `{ file = "/path" }`.
    pub routing_key: RawSecret,
    /// Base URL of the Events API; events are POSTed to `{api_url}/v2/enqueue`.
    /// Default `"https://events.pagerduty.com"`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Events sent per minute per routing key at most (a token bucket shared
    /// by every sink with the same key: bursts of a quarter of this, never
    /// more than this in any minute). Excess events wait in the outbox; none
    /// is dropped. Default `120` (PagerDuty's limit), minimum `1`.
    #[serde(default)]
    pub events_per_minute: Option<u32>,
}

/// Validates `[sinks.pagerduty]` at `path` (`sinks[i]`): a
/// [`SinkKind::PagerDuty`], or `None` when the routing key cannot be read.
pub fn validate(
    raw: &RawPagerDuty,
    path: &str,
    vars: &[(String, String)],
    p: &mut Problems,
) -> Option<SinkKind> {
    let api_url = raw
        .api_url
        .clone()
        .unwrap_or_else(|| DEFAULT_PAGERDUTY_URL.to_owned());
    validate_url(&api_url, format!("{path}.pagerduty.api_url"), p);
    let events_per_minute = raw.events_per_minute.unwrap_or(DEFAULT_EVENTS_PER_MINUTE);
    if events_per_minute == 0 {
        p.push(
            format!("{path}.pagerduty.events_per_minute"),
            "events_per_minute must be ≥ 1 (PagerDuty allows 120)",
        );
    }
    let routing_key = resolve_secret(&raw.routing_key, vars)
        .map_err(|e| p.push(format!("{path}.pagerduty.routing_key"), e))
        .ok()?;
    Some(SinkKind::PagerDuty {
        routing_key,
        api_url: api_url.trim_end_matches('/').to_owned(),
        events_per_minute: events_per_minute.max(1),
    })
}

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
    post_event(&url, &[], &payload, HttpResponse::delivery).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::alerting::sink::test_event as event;

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
