//! Opsgenie Alert API v2.
//!
//! - **Create**: `POST {api_url}/v2/alerts` with `Authorization: GenieKey
//!   <key>` and `{message, alias, description, priority, tags, details,
//!   entity, source}`; `alias` is our dedup key, so Opsgenie keeps one open
//!   alert per check (a create for an open alias only counts up).
//!   `message` ≤ 130 characters, `description` ≤ 15000, `alias` and
//!   `entity` ≤ 512, `source` ≤ 100, ≤ 20 tags of ≤ 50 characters,
//!   `details` a string → string map. Priority from our severity:
//!   critical P1, error P2, warning P3, info P5.
//! - **Close** (resolve): `POST {api_url}/v2/alerts/{alias}/close?identifierType=alias`
//!   with `{source, note}` (the alias percent-encoded in the path).
//! - **Update** (a trigger after one already delivered to this sink for the
//!   same alert: live content, escalation): a create with the same alias
//!   (keeps the alert open — or opens it again if someone closed it while
//!   the check still fails) followed by a note
//!   (`POST …/v2/alerts/{alias}/notes?identifierType=alias`) with the new
//!   summary. A create alone would not do: Opsgenie's de-duplication keeps
//!   the first message and description, so the alert would go stale;
//!   and a note alone would be lost if the alert was closed by hand.
//! - **Info** (events such as `dns_change`): a P5 alert with its own
//!   alias (the event id), so it never merges into an incident.
//! - **Answers.** 202 with a `requestId` is accepted (Opsgenie processes
//!   requests asynchronously). 429 (with `Retry-After`) and 5xx are retried;
//!   other 4xx (401/403 bad key, 422 invalid request) are permanent.
//! - **Rate limit.** `requests_per_minute` (default 120) per API key,
//!   through the outbox postponement.
//!
//! EU accounts use `api_url = "https://api.eu.opsgenie.com"`.

use std::collections::BTreeMap;

use outpost_probe::config::{Problems, RawSecret, Secret};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Delivery, HttpResponse, SendContext, SinkKind, post_event, slack};
use crate::{
    alerting::{Action, AlertEvent, Severity, truncate},
    config::{resolve_secret, validate_url},
};

/// Default Opsgenie API base URL (US); EU: `https://api.eu.opsgenie.com`.
pub const DEFAULT_OPSGENIE_URL: &str = "https://api.opsgenie.com";
/// Default requests per minute per API key.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 120;
/// Longest `message`, in characters.
pub const MESSAGE_CHARS: usize = 130;
/// Longest `description`, in characters.
pub const DESCRIPTION_CHARS: usize = 15_000;
/// Longest `alias`, in characters.
pub const ALIAS_CHARS: usize = 512;
/// `source` of every request.
pub const SOURCE: &str = "outpost";

/// `[sinks.opsgenie]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOpsgenie {
    /// API key of an Opsgenie API integration, sent as `GenieKey <key>`:
    /// `{ env = "OPSGENIE_API_KEY" }` or `{ file = "/path" }`.
    pub api_key: RawSecret,
    /// Base URL: `"https://api.opsgenie.com"` (default) or
    /// `"https://api.eu.opsgenie.com"` for EU accounts.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Extra tags on every alert (each ≤ 50 characters), besides the
    /// check's severity and labels (`team:payments`). Example `["outpost"]`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Requests per minute per API key at most (excess waits in the
    /// outbox). Default `120`, minimum `1`.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
}

/// Validates `[sinks.opsgenie]` at `path` (`sinks[i]`).
pub fn validate(
    raw: &RawOpsgenie,
    path: &str,
    vars: &[(String, String)],
    p: &mut Problems,
) -> Option<SinkKind> {
    let api_url = raw
        .api_url
        .clone()
        .unwrap_or_else(|| DEFAULT_OPSGENIE_URL.to_owned());
    validate_url(&api_url, format!("{path}.opsgenie.api_url"), p);
    let requests_per_minute = raw
        .requests_per_minute
        .unwrap_or(DEFAULT_REQUESTS_PER_MINUTE);
    if requests_per_minute == 0 {
        p.push(
            format!("{path}.opsgenie.requests_per_minute"),
            "requests_per_minute must be ≥ 1",
        );
    }
    for (j, t) in raw.tags.iter().enumerate() {
        if t.is_empty() || t.chars().count() > 50 {
            p.push(
                format!("{path}.opsgenie.tags[{j}]"),
                format!("a tag has 1 to 50 characters, got {t:?}"),
            );
        }
    }
    let api_key = resolve_secret(&raw.api_key, vars)
        .map_err(|e| p.push(format!("{path}.opsgenie.api_key"), e))
        .ok()?;
    Some(SinkKind::Opsgenie {
        api_key,
        api_url: api_url.trim_end_matches('/').to_owned(),
        tags: raw.tags.clone(),
        requests_per_minute: requests_per_minute.max(1),
    })
}

/// Opsgenie priority of a severity.
pub fn priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "P1",
        Severity::Error => "P2",
        Severity::Warning => "P3",
        Severity::Info => "P5",
    }
}

/// The alias of an event: the dedup key, or for an info notification its
/// own key (`…/event/<id>`), bounded to [`ALIAS_CHARS`].
pub fn alias(event: &AlertEvent) -> String {
    let key = match (event.action, event.details.get("event_id")) {
        (Action::Info, Some(id)) => format!("{}/event/{id}", event.dedup_key),
        _ => event.dedup_key.clone(),
    };
    key.chars().take(ALIAS_CHARS).collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (an alias
/// in a path: `outpost/api/check_failing` → `outpost%2Fapi%2Fcheck_failing`).
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Details as Opsgenie takes them: a flat string → string map.
fn details(event: &AlertEvent, ctx: &SendContext<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("kind".to_owned(), event.kind.as_str().to_owned());
    out.insert("regions".to_owned(), event.regions.join(", "));
    if !event.code.is_empty() {
        out.insert("code".to_owned(), event.code.clone());
    }
    out.insert("since".to_owned(), slack::since(event));
    if let Some(url) = slack::link(event, ctx.external_url) {
        out.insert("dashboard".to_owned(), url);
    }
    if let Some(map) = event.details.as_object() {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.entry(k.clone())
                .or_insert_with(|| truncate(&text, 1000));
        }
    }
    out
}

/// The create request body.
pub fn create_body(event: &AlertEvent, tags: &[String], ctx: &SendContext<'_>) -> Value {
    let subject = slack::subject(event);
    let message: String = format!("{subject}: {}", event.summary)
        .chars()
        .take(MESSAGE_CHARS)
        .collect();
    let mut all_tags: Vec<String> = tags.to_vec();
    all_tags.push(format!("severity:{}", event.severity));
    if let Some(labels) = event.details.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            all_tags.push(format!("{k}:{}", v.as_str().unwrap_or_default()));
        }
    }
    let all_tags: Vec<String> = all_tags
        .into_iter()
        .map(|t| t.chars().take(50).collect())
        .take(20)
        .collect();
    let priority = if event.action == Action::Info {
        "P5"
    } else {
        priority(event.severity)
    };
    let description = match slack::link(event, ctx.external_url) {
        Some(url) => format!("{}\n\n{url}", event.summary),
        None => event.summary.clone(),
    };
    json!({
        "message": message,
        "alias": alias(event),
        "description": description.chars().take(DESCRIPTION_CHARS).collect::<String>(),
        "priority": priority,
        "tags": all_tags,
        "details": details(event, ctx),
        "entity": truncate(subject, ALIAS_CHARS),
        "source": SOURCE,
    })
}

/// Sends one event (see the module note for the requests per action).
pub async fn send(
    api_url: &str,
    api_key: &Secret,
    tags: &[String],
    event: &AlertEvent,
    ctx: &SendContext<'_>,
) -> Delivery {
    let auth = [(
        "authorization".to_owned(),
        Secret::new(format!("GenieKey {}", api_key.expose())),
    )];
    let post = |url: String, body: Value| {
        let auth = &auth;
        async move { post_event(&url, auth, &body, HttpResponse::delivery).await }
    };
    let path_alias = encode_path_segment(&alias(event));
    match event.action {
        Action::Resolve => {
            post(
                format!("{api_url}/v2/alerts/{path_alias}/close?identifierType=alias"),
                json!({"source": SOURCE, "note": truncate(&event.summary, 25_000)}),
            )
            .await
        }
        Action::Trigger | Action::Info => {
            let created = post(
                format!("{api_url}/v2/alerts"),
                create_body(event, tags, ctx),
            )
            .await;
            if created != Delivery::Sent || !ctx.update {
                return created;
            }
            post(
                format!("{api_url}/v2/alerts/{path_alias}/notes?identifierType=alias"),
                json!({"source": SOURCE, "note": truncate(&format!("updated: {}", event.summary), 25_000)}),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AlertEvent {
        AlertEvent {
            summary: format!("api failing from 2 of 3 regions: {}", "x".repeat(300)),
            severity: Severity::Warning,
            details: json!({"check_kind": "http", "consecutive": 3}),
            ..crate::alerting::sink::test_event(Action::Trigger)
        }
    }

    #[test]
    fn create_body_respects_the_api_limits() {
        let b = create_body(&event(), &["outpost".into()], &SendContext::default());
        assert_eq!(b["alias"], "outpost/api/check_failing");
        assert_eq!(b["priority"], "P3");
        assert_eq!(b["source"], "outpost");
        assert!(b["message"].as_str().unwrap().chars().count() <= MESSAGE_CHARS);
        assert_eq!(b["details"]["code"], "timeout");
        assert_eq!(b["details"]["consecutive"], "3", "details are strings");
        assert_eq!(b["tags"], json!(["outpost", "severity:warning"]));
    }

    #[test]
    fn aliases_are_percent_encoded_in_paths() {
        assert_eq!(
            encode_path_segment("outpost/api/check_failing"),
            "outpost%2Fapi%2Fcheck_failing"
        );
        assert_eq!(encode_path_segment("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn priorities_follow_severity() {
        assert_eq!(priority(Severity::Critical), "P1");
        assert_eq!(priority(Severity::Error), "P2");
        assert_eq!(priority(Severity::Info), "P5");
    }
}
