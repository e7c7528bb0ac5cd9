//! Slack: an incoming webhook (`url`) or the Web API's `chat.postMessage`
//! (`token` + `channel`), one Block Kit message per notification.
//!
//! - **Message.** A `header` block (`FIRING: api` / `RESOLVED: api`), a
//!   `section` with the summary, a `section` with fields (check, state,
//!   failing regions, code, since), and, when `server.external_url` is
//!   set, a `context` block linking the dashboard page of the check. The
//!   top-level `text` carries the same line for notifications and clients
//!   without blocks. Texts are cut to Block Kit's limits (header 150,
//!   section 3000, field 2000 characters).
//! - **Resolve** posts a new "RESOLVED" message rather than editing the
//!   firing one (`chat.update`): editing needs the firing message's `ts`
//!   stored per alert and sink (a schema change in the outbox), works only
//!   for `chat.postMessage` (webhooks return no `ts`), and an edit does not
//!   notify anyone — a new message tells the channel the page is over.
//! - **Answers.** Webhook: `200 ok` is delivered; 4xx with a text error
//!   (`invalid_payload`, `no_service`, `channel_is_archived`,
//!   `action_prohibited`, …) is permanent; 429 (with `Retry-After`) and 5xx
//!   are retried. `chat.postMessage` answers HTTP 200 with `{"ok": true}` or
//!   `{"ok": false, "error": "…"}`: `ratelimited`, `internal_error`,
//!   `fatal_error`, `service_unavailable`, `request_timeout` are retried,
//!   every other error (`invalid_auth`, `channel_not_found`,
//!   `not_in_channel`, `is_archived`, `msg_too_long`, …) is permanent.
//! - **Rate limit.** Slack allows about one message per second per channel:
//!   `messages_per_minute` (default 60) per webhook URL or (token, channel),
//!   through the same outbox postponement as PagerDuty.
//! - **Secrets.** The webhook URL (it is the credential) and the bot token
//!   are secrets: never logged, scrubbed from stored attempt excerpts.

use outpost_probe::config::{Problems, RawSecret, Secret};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Delivery, HttpResponse, SendContext, SinkKind, post_event};
use crate::{
    alerting::{Action, AlertEvent, truncate},
    config::{resolve_secret, validate_url},
};

/// Default Slack Web API base URL.
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";
/// Default messages per minute per webhook or channel (Slack: about 1/s).
pub const DEFAULT_MESSAGES_PER_MINUTE: u32 = 60;
/// Block Kit limit of a `header` block's text.
pub const HEADER_CHARS: usize = 150;
/// Block Kit limit of a `section` block's text.
pub const SECTION_CHARS: usize = 3000;
/// Block Kit limit of one `section` field.
pub const FIELD_CHARS: usize = 2000;

/// `chat.postMessage` errors worth retrying; every other error is permanent.
pub const RETRYABLE_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// `[sinks.slack]`: exactly one of `url` (incoming webhook) or `token` +
/// `channel` (`chat.postMessage`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// Incoming webhook URL (`https://hooks.slack.com/services/…`), a secret:
    /// `{ env = "SLACK_WEBHOOK_URL" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub url: Option<RawSecret>,
    /// Bot token (`xoxb-…`) with the `chat:write` scope, for
    /// `chat.postMessage`: `{ env = "SLACK_BOT_TOKEN" }`. Needs `channel`.
    #[serde(default)]
    pub token: Option<RawSecret>,
    /// Channel for `chat.postMessage`: an id (`"C0123456789"`) or a name
    /// (`"#oncall"`). The bot must be a member. Only with `token`.
    #[serde(default)]
    pub channel: Option<String>,
    /// Web API base URL; messages are POSTed to `{api_url}/chat.postMessage`.
    /// Default `"https://slack.com/api"`. Only with `token`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Messages sent per minute at most through this webhook or channel
    /// (excess waits in the outbox, none is dropped). Default `60`
    /// (Slack's one per second), minimum `1`.
    #[serde(default)]
    pub messages_per_minute: Option<u32>,
}

/// How a Slack sink posts.
#[derive(Debug, Clone)]
pub enum SlackMode {
    /// Incoming webhook.
    Webhook {
        /// The webhook URL (a secret).
        url: Secret,
    },
    /// `chat.postMessage` with a bot token.
    PostMessage {
        /// Bearer token.
        token: Secret,
        /// Channel id or name.
        channel: String,
        /// Web API base URL, no trailing slash.
        api_url: String,
    },
}

/// Validates `[sinks.slack]` at `path` (`sinks[i]`).
pub fn validate(
    raw: &RawSlack,
    path: &str,
    vars: &[(String, String)],
    p: &mut Problems,
) -> Option<SinkKind> {
    let messages_per_minute = raw
        .messages_per_minute
        .unwrap_or(DEFAULT_MESSAGES_PER_MINUTE);
    if messages_per_minute == 0 {
        p.push(
            format!("{path}.slack.messages_per_minute"),
            "messages_per_minute must be ≥ 1 (Slack allows about 60)",
        );
    }
    let secret = |s: &RawSecret, key: &str, p: &mut Problems| {
        resolve_secret(s, vars)
            .map_err(|e| p.push(format!("{path}.slack.{key}"), e))
            .ok()
    };
    let mode = match (&raw.url, &raw.token) {
        (Some(url), None) => {
            for (key, set) in [
                ("channel", raw.channel.is_some()),
                ("api_url", raw.api_url.is_some()),
            ] {
                if set {
                    p.push(
                        format!("{path}.slack.{key}"),
                        format!("{key} is for chat.postMessage (with token); an incoming webhook posts to its own channel"),
                    );
                }
            }
            let url = secret(url, "url", p)?;
            validate_url(url.expose(), format!("{path}.slack.url"), p);
            SlackMode::Webhook { url }
        }
        (None, Some(token)) => {
            let api_url = raw
                .api_url
                .clone()
                .unwrap_or_else(|| DEFAULT_SLACK_API_URL.to_owned());
            validate_url(&api_url, format!("{path}.slack.api_url"), p);
            let channel = match &raw.channel {
                Some(c) if !c.trim().is_empty() => c.trim().to_owned(),
                _ => {
                    p.push(
                        format!("{path}.slack.channel"),
                        "chat.postMessage needs a channel, e.g. channel = \"#oncall\"",
                    );
                    String::new()
                }
            };
            let token = secret(token, "token", p)?;
            SlackMode::PostMessage {
                token,
                channel,
                api_url: api_url.trim_end_matches('/').to_owned(),
            }
        }
        _ => {
            p.push(
                format!("{path}.slack"),
                "a slack sink has exactly one of url (incoming webhook) or token + channel (chat.postMessage), e.g. slack = { url = { env = \"SLACK_WEBHOOK_URL\" } }",
            );
            return None;
        }
    };
    Some(SinkKind::Slack {
        mode,
        messages_per_minute: messages_per_minute.max(1),
    })
}

/// `FIRING`, `RESOLVED` or `CHANGE`.
fn state_word(action: Action) -> &'static str {
    match action {
        Action::Trigger => "FIRING",
        Action::Resolve => "RESOLVED",
        Action::Info => "CHANGE",
    }
}

/// What the alert is about: the check, else the probe, else the dedup key.
pub fn subject(event: &AlertEvent) -> &str {
    if !event.check_id.is_empty() {
        &event.check_id
    } else if let Some(p) = &event.probe {
        p
    } else {
        &event.dedup_key
    }
}

/// When the alert opened: the summary's `· since …` (updates carry it),
/// else the event's own time (a first trigger is its opening).
pub fn since(event: &AlertEvent) -> String {
    match event.summary.rsplit_once(" · since ") {
        Some((_, since)) => since.to_owned(),
        None => crate::format::timestamp(event.at_ms),
    }
}

/// The dashboard page of the event's subject under `external_url`.
pub fn link(event: &AlertEvent, external_url: Option<&str>) -> Option<String> {
    let base = external_url?;
    Some(if event.check_id.is_empty() {
        format!("{base}/")
    } else {
        format!("{base}/checks/{}", event.check_id)
    })
}

/// The message body (without `channel`).
pub fn message(event: &AlertEvent, ctx: &SendContext<'_>) -> Value {
    let state = state_word(event.action);
    let subject = subject(event);
    let line = format!("{state}: {subject} — {}", event.summary);
    let regions = if event.regions.is_empty() {
        "none".to_owned()
    } else {
        event.regions.join(", ")
    };
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{value}"), FIELD_CHARS)});
    let mut fields = vec![
        field("Check", subject),
        field("State", state),
        field(
            if event.action == Action::Resolve {
                "Still unhealthy"
            } else {
                "Failing regions"
            },
            &regions,
        ),
        field("Severity", event.severity.as_str()),
    ];
    if !event.code.is_empty() {
        fields.push(field("Code", &format!("`{}`", event.code)));
    }
    fields.push(field("Since", &since(event)));
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("{state}: {subject}"), HEADER_CHARS)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&event.summary, SECTION_CHARS)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(url) = link(event, ctx.external_url) {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": truncate(&format!("<{url}|Open in Outpost> · dedup key `{}`", event.dedup_key), FIELD_CHARS)}
        ]}));
    }
    json!({ "text": truncate(&line, SECTION_CHARS), "blocks": blocks })
}

/// Classifies a `chat.postMessage` answer: HTTP status first (429/5xx
/// retried with `Retry-After`), then the body's `ok` / `error`.
pub fn post_message_delivery(resp: &HttpResponse) -> Delivery {
    if resp.status != 200 {
        return resp.delivery();
    }
    let body: Value = match serde_json::from_str(&resp.body) {
        Ok(v) => v,
        Err(_) => {
            return Delivery::Retry {
                error: format!(
                    "status 200: not a Web API answer: {}",
                    truncate(resp.body.trim(), 200)
                ),
                after: resp.retry_after,
            };
        }
    };
    if body.get("ok") == Some(&Value::Bool(true)) {
        return Delivery::Sent;
    }
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    let text = format!("status 200: ok=false error={error}");
    if RETRYABLE_ERRORS.contains(&error) {
        Delivery::Retry {
            error: text,
            after: resp.retry_after,
        }
    } else {
        Delivery::Reject { error: text }
    }
}

/// Sends one event.
pub async fn send(mode: &SlackMode, event: &AlertEvent, ctx: &SendContext<'_>) -> Delivery {
    let mut body = message(event, ctx);
    match mode {
        SlackMode::Webhook { url } => {
            post_event(url.expose(), &[], &body, HttpResponse::delivery).await
        }
        SlackMode::PostMessage {
            token,
            channel,
            api_url,
        } => {
            body["channel"] = Value::String(channel.clone());
            let auth = Secret::new(format!("Bearer {}", token.expose()));
            post_event(
                &format!("{api_url}/chat.postMessage"),
                &[("authorization".to_owned(), auth)],
                &body,
                post_message_delivery,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action) -> AlertEvent {
        AlertEvent {
            summary: "api failing from 2 of 3 regions (eu-west, us-east): timeout · since 2030-01-01T12:00:03Z".into(),
            details: json!({}),
            at_ms: 1_893_499_300_000,
            ..crate::alerting::sink::test_event(action)
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    #[test]
    fn message_has_the_fields_and_links_the_check() {
        let ctx = SendContext {
            external_url: Some("https://outpost.example.com"),
            ..SendContext::default()
        };
        let m = message(&event(Action::Trigger), &ctx);
        assert!(m["text"].as_str().unwrap().starts_with("FIRING: api"));
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let fields = blocks[2]["fields"].to_string();
        for want in [
            "eu-west, us-east",
            "`timeout`",
            "2030-01-01T12:00:03Z",
            "FIRING",
        ] {
            assert!(fields.contains(want), "{want} in {fields}");
        }
        assert!(
            blocks[3]
                .to_string()
                .contains("https://outpost.example.com/checks/api"),
            "{}",
            blocks[3]
        );
        let resolved = message(&event(Action::Resolve), &SendContext::default());
        assert!(resolved["text"].as_str().unwrap().starts_with("RESOLVED"));
        assert_eq!(
            resolved["blocks"].as_array().unwrap().len(),
            3,
            "no link without external_url"
        );
    }

    #[test]
    fn header_stays_within_block_kit_limits() {
        let mut e = event(Action::Trigger);
        e.check_id = "x".repeat(400);
        let m = message(&e, &SendContext::default());
        let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= HEADER_CHARS, "{}", header.len());
    }

    #[test]
    fn post_message_answers_are_classified_like_the_web_api() {
        assert_eq!(
            post_message_delivery(&resp(200, r#"{"ok":true,"ts":"1.2"}"#)),
            Delivery::Sent
        );
        for permanent in ["invalid_auth", "channel_not_found", "not_in_channel"] {
            let d = post_message_delivery(&resp(
                200,
                &format!(r#"{{"ok":false,"error":"{permanent}"}}"#),
            ));
            assert!(matches!(d, Delivery::Reject { .. }), "{permanent}: {d:?}");
        }
        let d = post_message_delivery(&resp(200, r#"{"ok":false,"error":"ratelimited"}"#));
        assert!(matches!(d, Delivery::Retry { .. }), "{d:?}");
        assert!(matches!(
            post_message_delivery(&resp(429, "")),
            Delivery::Retry { .. }
        ));
        assert!(matches!(
            post_message_delivery(&resp(503, "")),
            Delivery::Retry { .. }
        ));
    }

    #[test]
    fn exactly_one_mode_is_required() {
        let raw = RawSlack {
            url: None,
            token: None,
            channel: None,
            api_url: None,
            messages_per_minute: None,
        };
        let mut p = Problems::default();
        assert!(validate(&raw, "sinks[0]", &[], &mut p).is_none());
        let err = p.finish("c.toml").unwrap_err().to_string();
        assert!(err.contains("sinks[0].slack"), "{err}");
    }
}
