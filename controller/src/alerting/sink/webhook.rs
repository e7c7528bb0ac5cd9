//! Generic JSON webhook: one POST per notification with
//! `{event, kind, dedup_key, check_id, probe, summary, severity, regions, at, details}`
//! (`kind` is `check_failing`, `probe_offline` or `certificate_expiring`;
//! `probe` is null for check and certificate alerts; an escalated
//! `certificate_expiring` alert sends another `trigger` with a higher `severity`)
//! (`event` is `trigger` or `resolve`, or `info` for an event such as
//! `dns_change` routed by `kinds`; `at` RFC 3339).

use outpost_probe::config::Secret;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{Delivery, REQUEST_TIMEOUT, post_json};
use crate::alerting::AlertEvent;

/// The JSON body for an event.
pub fn body(event: &AlertEvent) -> serde_json::Value {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(event.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    serde_json::json!({
        "event": event.action,
        "dedup_key": event.dedup_key,
        "kind": event.kind,
        "check_id": event.check_id,
        "probe": event.probe,
        "summary": event.summary,
        "severity": event.severity,
        "regions": event.regions,
        "at": at,
        "details": event.details,
    })
}

/// Sends one event.
pub async fn send(url: &str, headers: &[(String, Secret)], event: &AlertEvent) -> Delivery {
    match post_json(
        url,
        headers,
        body(event).to_string().into_bytes(),
        REQUEST_TIMEOUT,
    )
    .await
    {
        Ok(resp) => resp.delivery(),
        Err(e) => e.into(),
    }
}
