//! A loopback Slack: an incoming webhook and the Web API's `chat.postMessage`,
//! validating requests the way Slack documents them.
//!
//! - **Webhook** `POST {url}` ([`SlackReceiver::webhook_url`], path
//!   `/services/T000/B000/<secret>`): JSON body (`content-type:
//!   application/json`); `text` or `blocks` required (`400 no_text`); a body
//!   that is not JSON → `400 invalid_payload`; malformed blocks →
//!   `400 invalid_blocks`; another path → `404 no_service`. Valid → `200 ok`
//!   (plain text).
//! - **`chat.postMessage`** `POST {api_url}/chat.postMessage`: always HTTP
//!   200 with `{"ok": …}` like the real API: no `Authorization: Bearer` →
//!   `not_authed`, another token → `invalid_auth`, a channel not in the
//!   receiver's list → `channel_not_found`, no `text`/`blocks` → `no_text`,
//!   malformed blocks → `invalid_blocks`, not JSON → `invalid_json`. Valid
//!   → `{"ok": true, "channel": …, "ts": "…", "message": {…}}`.
//! - **Blocks** checked: at most 50; each has a `type`; `header` text is
//!   `plain_text` of at most 150 characters; `section` text at most 3000
//!   characters, at most 10 `fields` of at most 2000 characters each;
//!   `context` has `elements`.
//! - **Scripts**: [`SlackReceiver::respond_with`] (webhook) and
//!   [`SlackReceiver::api_respond_with`] (`chat.postMessage`) force HTTP
//!   statuses (429 with `Retry-After`, 500, 400) on that endpoint's next
//!   requests;
//!   [`SlackReceiver::api_error`] makes the next `chat.postMessage` answer
//!   `{"ok": false, "error": …}` (e.g. `ratelimited`, `channel_not_found`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, RequestInfo, RunningServer};
use crate::pager::{Forced, Script, lock};
use crate::recorder::Recorder;

/// The webhook path's secret part.
pub const WEBHOOK_PATH: &str = "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX";
const POST_MESSAGE_PATH: &str = "/api/chat.postMessage";

/// An accepted message.
#[derive(Clone, Debug)]
pub struct SlackMessage {
    /// `webhook` or `chat.postMessage`.
    pub via: &'static str,
    /// Channel (`chat.postMessage` only).
    pub channel: Option<String>,
    /// `text`.
    pub text: String,
    /// The whole body.
    pub raw: Value,
}

#[derive(Debug, Default)]
struct SlackState {
    token: String,
    channels: Vec<String>,
    rejected: Vec<(String, Value)>,
    script: Script,
    api_script: Script,
    api_errors: VecDeque<String>,
    attempts: u64,
    ts: u64,
}

/// A loopback Slack. Stops when dropped.
#[derive(Debug)]
pub struct SlackReceiver {
    server: RunningServer,
    state: Arc<Mutex<SlackState>>,
    accepted: Arc<Recorder<SlackMessage>>,
}

impl SlackReceiver {
    /// Starts on `127.0.0.1:0`: the webhook, and `chat.postMessage`
    /// accepting `token` for `channels`.
    pub async fn start(token: &str, channels: &[&str]) -> anyhow::Result<SlackReceiver> {
        let state = Arc::new(Mutex::new(SlackState {
            token: token.to_owned(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            ..SlackState::default()
        }));
        let accepted = Arc::new(Recorder::default());
        let (s1, a1) = (Arc::clone(&state), Arc::clone(&accepted));
        let (s2, a2) = (Arc::clone(&state), Arc::clone(&accepted));
        let s3 = Arc::clone(&state);
        let server = HttpServer::builder()
            .handler(WEBHOOK_PATH, move |req| webhook(&s1, &a1, req))
            .handler(POST_MESSAGE_PATH, move |req| post_message(&s2, &a2, req))
            .fallback(move |req| {
                let mut st = lock(&s3);
                st.attempts += 1;
                st.rejected
                    .push(("no_service".into(), body_json(&req.body)));
                Reply::text(404, "no_service")
            })
            .run()
            .await?;
        Ok(SlackReceiver {
            server,
            state,
            accepted,
        })
    }

    /// The incoming webhook URL.
    pub fn webhook_url(&self) -> String {
        self.server.url(WEBHOOK_PATH)
    }

    /// The Web API base URL (`…/api`).
    pub fn api_url(&self) -> String {
        self.server.url("/api")
    }

    /// Accepted messages, in arrival order.
    pub fn messages(&self) -> Vec<SlackMessage> {
        self.accepted.all()
    }

    /// Rejected requests as (error, body).
    pub fn rejected(&self) -> Vec<(String, Value)> {
        lock(&self.state).rejected.clone()
    }

    /// Every request, forced failures included.
    pub fn attempts(&self) -> u64 {
        lock(&self.state).attempts
    }

    /// Every request as the server saw it (headers included).
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.server.requests()
    }

    /// The next webhook requests get these HTTP statuses.
    pub fn respond_with(&self, statuses: Vec<Forced>) {
        lock(&self.state).script.queue.extend(statuses);
    }

    /// The next `chat.postMessage` requests get these HTTP statuses.
    pub fn api_respond_with(&self, statuses: Vec<Forced>) {
        lock(&self.state).api_script.queue.extend(statuses);
    }

    /// The next `chat.postMessage` answers `{"ok": false, "error": error}`.
    pub fn api_error(&self, error: &str) {
        lock(&self.state).api_errors.push_back(error.to_owned());
    }

    /// Waits for at least `n` accepted messages, or `timeout`.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<SlackMessage> {
        self.accepted.wait_for(n, timeout).await
    }
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn is_json(req: &RequestInfo) -> bool {
    req.header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
}

/// Block Kit checks (module note); `Err` names the first problem.
pub fn validate_blocks(body: &Value) -> Result<(), String> {
    let Some(blocks) = body.get("blocks") else {
        return Ok(());
    };
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.len() > 50 {
        return Err(format!("{} blocks, at most 50", blocks.len()));
    }
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count());
    for (i, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(Value::as_str) {
            Some("header") => {
                if b["text"]["type"] != "plain_text" {
                    return Err(format!("blocks[{i}]: header text must be plain_text"));
                }
                match chars(&b["text"]["text"]) {
                    Some(1..=150) => {}
                    n => return Err(format!("blocks[{i}]: header text of {n:?} characters")),
                }
            }
            Some("section") => {
                if b.get("text").is_none() && b.get("fields").is_none() {
                    return Err(format!("blocks[{i}]: section needs text or fields"));
                }
                if let Some(t) = b.get("text")
                    && !matches!(chars(&t["text"]), Some(1..=3000))
                {
                    return Err(format!("blocks[{i}]: section text length"));
                }
                if let Some(fields) = b.get("fields") {
                    let fields = fields.as_array().ok_or("fields is not an array")?;
                    if fields.len() > 10 {
                        return Err(format!("blocks[{i}]: {} fields, at most 10", fields.len()));
                    }
                    for f in fields {
                        if !matches!(chars(&f["text"]), Some(1..=2000)) {
                            return Err(format!("blocks[{i}]: field text length"));
                        }
                    }
                }
            }
            Some("context") => {
                if b["elements"].as_array().is_none_or(|e| e.is_empty()) {
                    return Err(format!("blocks[{i}]: context needs elements"));
                }
            }
            Some("divider" | "actions" | "image") => {}
            other => return Err(format!("blocks[{i}]: unknown type {other:?}")),
        }
    }
    Ok(())
}

fn has_text(body: &Value) -> bool {
    body.get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty())
        || body.get("blocks").is_some()
}

fn webhook(
    state: &Mutex<SlackState>,
    accepted: &Recorder<SlackMessage>,
    req: &RequestInfo,
) -> Reply {
    let mut st = lock(state);
    st.attempts += 1;
    if let Some(forced) = st.script.next() {
        return forced.reply();
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) if req.method == "POST" && is_json(req) => v,
        _ => {
            st.rejected
                .push(("invalid_payload".into(), body_json(&req.body)));
            return Reply::text(400, "invalid_payload");
        }
    };
    let error = if !has_text(&body) {
        Some("no_text")
    } else if validate_blocks(&body).is_err() {
        Some("invalid_blocks")
    } else {
        None
    };
    if let Some(error) = error {
        st.rejected.push((error.into(), body));
        return Reply::text(400, error);
    }
    accepted.push(SlackMessage {
        via: "webhook",
        channel: None,
        text: body["text"].as_str().unwrap_or_default().to_owned(),
        raw: body,
    });
    Reply::text(200, "ok")
}

fn post_message(
    state: &Mutex<SlackState>,
    accepted: &Recorder<SlackMessage>,
    req: &RequestInfo,
) -> Reply {
    let mut st = lock(state);
    st.attempts += 1;
    if let Some(forced) = st.api_script.next() {
        return forced.reply();
    }
    let fail = |st: &mut SlackState, error: &str, body: Value| {
        st.rejected.push((error.to_owned(), body));
        Reply::json(200, &json!({"ok": false, "error": error}))
    };
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        return fail(&mut st, "not_authed", body_json(&req.body));
    };
    if token != st.token {
        return fail(&mut st, "invalid_auth", body_json(&req.body));
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) if req.method == "POST" && is_json(req) => v,
        _ => return fail(&mut st, "invalid_json", body_json(&req.body)),
    };
    if let Some(error) = st.api_errors.pop_front() {
        return fail(&mut st, &error, body);
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    if !st.channels.contains(&channel) {
        return fail(&mut st, "channel_not_found", body);
    }
    if !has_text(&body) {
        return fail(&mut st, "no_text", body);
    }
    if validate_blocks(&body).is_err() {
        return fail(&mut st, "invalid_blocks", body);
    }
    st.ts += 1;
    let ts = format!("1893456000.{:06}", st.ts);
    accepted.push(SlackMessage {
        via: "chat.postMessage",
        channel: Some(channel.clone()),
        text: body["text"].as_str().unwrap_or_default().to_owned(),
        raw: body.clone(),
    });
    Reply::json(
        200,
        &json!({"ok": true, "channel": channel, "ts": ts, "message": {"type": "message", "text": body["text"], "ts": ts}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_headers_and_too_many_fields_are_invalid() {
        let header = json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]});
        assert!(validate_blocks(&header).is_err());
        let fields: Vec<Value> = (0..11)
            .map(|_| json!({"type": "mrkdwn", "text": "a"}))
            .collect();
        assert!(
            validate_blocks(&json!({"blocks": [{"type": "section", "fields": fields}]})).is_err()
        );
        assert!(
            validate_blocks(
                &json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ok"}}]})
            )
            .is_ok()
        );
    }
}
