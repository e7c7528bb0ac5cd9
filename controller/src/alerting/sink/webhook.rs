//! Generic JSON webhook: one POST per notification with
//! `{event, kind, dedup_key, check_id, probe, summary, severity, regions, at, details}`
//! (`kind` is `check_failing`, `probe_offline` or `certificate_expiring`;
//! `probe` is null for check and certificate alerts; an escalated
//! `certificate_expiring` alert sends another `trigger` with a higher `severity`)
//! (`event` is `trigger` or `resolve`, or `info` for an event such as
//! `dns_change` routed by `kinds`; `at` RFC 3339).

use std::collections::BTreeMap;

use outpost_probe::config::{Problems, RawSecret, Secret};
use serde::Deserialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{Delivery, HttpResponse, SinkKind, post_event};
use crate::{
    alerting::AlertEvent,
    config::{resolve_secret, validate_url},
};

/// `[sinks.webhook]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// `http://` or `https://` URL that receives a JSON POST per notification:
    /// `{event, dedup_key, check_id, summary, severity, regions, at}`.
    pub url: String,
    /// Extra request headers that are not secret, e.g. `{ "x-team" = "sre" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request headers whose values are secrets, e.g.
    /// `{ authorization = { env = "HOOK_AUTH" } }`.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, RawSecret>,
}

/// Validates `[sinks.webhook]` at `path` (`sinks[i]`) into a
/// [`SinkKind::Webhook`] with every header value resolved.
pub fn validate(
    raw: &RawWebhook,
    path: &str,
    vars: &[(String, String)],
    p: &mut Problems,
) -> SinkKind {
    validate_url(&raw.url, format!("{path}.webhook.url"), p);
    let mut headers = Vec::new();
    for (k, v) in &raw.headers {
        check_header(k, v, format!("{path}.webhook.headers.{k}"), p);
        headers.push((k.clone(), Secret::new(v.clone())));
    }
    for (k, s) in &raw.secret_headers {
        let hp = format!("{path}.webhook.secret_headers.{k}");
        match resolve_secret(s, vars) {
            Ok(v) => {
                check_header(k, v.expose(), hp, p);
                headers.push((k.clone(), v));
            }
            Err(e) => p.push(hp, e),
        }
    }
    SinkKind::Webhook {
        url: raw.url.clone(),
        headers,
    }
}

fn check_header(name: &str, value: &str, path: String, p: &mut Problems) {
    let ok = http::HeaderName::try_from(name).is_ok() && http::HeaderValue::try_from(value).is_ok();
    if !ok {
        p.push(path, format!("invalid header {name:?} (or its value)"));
    }
}

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
    post_event(url, headers, &body(event), HttpResponse::delivery).await
}
