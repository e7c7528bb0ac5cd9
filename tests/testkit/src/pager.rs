//! Loopback receivers for alert sinks: PagerDuty Events API v2 and generic webhooks.
//!
//! [`PagerReceiver`] validates `POST {url}/v2/enqueue` the way PagerDuty documents for
//! alert events (developer docs, "Send an Alert Event"):
//! - body is a JSON object of at most 512 KB;
//! - `routing_key` equals the expected key (real keys are 32 characters; any equal
//!   string is accepted here);
//! - `event_action` is `trigger`, `acknowledge` or `resolve`;
//! - `dedup_key`, when present, is a string of at most 255 characters, and is required
//!   for `acknowledge` and `resolve`;
//! - for `trigger`, `payload` is an object with `summary` (non-blank, at most 1024
//!   characters), `source` (non-blank) and `severity` (`critical`, `error`, `warning`,
//!   `info`); optional `timestamp` (ISO 8601), `component`, `group`, `class` must be
//!   strings; `custom_details` may be any JSON; optional `images` / `links` are arrays
//!   of objects with `src` / `href`; optional `client`, `client_url` are strings.
//!
//! Valid events get `202 {"status":"success","message":"Event processed","dedup_key":…}`
//! (a 32-hex-character key is generated for a trigger without one) and are recorded
//! in [`PagerReceiver::events`]. Invalid ones get
//! `400 {"status":"invalid event","message":"Event object is invalid","errors":[…]}` and
//! are recorded in [`PagerReceiver::rejected`].
//!
//! Scripted failures ([`PagerReceiver::respond_with`], [`PagerReceiver::fail_for`])
//! answer before any validation and record nothing but the attempt.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, RequestInfo, RunningServer};
use crate::pki::Identity;
use crate::recorder::Recorder;

/// PagerDuty's documented payload size limit.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// Longest accepted `dedup_key`, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
/// Longest accepted `payload.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;

const ENQUEUE_PATH: &str = "/v2/enqueue";
const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// A scripted response: the status to answer with instead of processing the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forced {
    /// HTTP status (429, 500, 503, 400…).
    pub status: u16,
    /// `Retry-After` header value in seconds, if any.
    pub retry_after: Option<u64>,
}

impl Forced {
    /// `status` without `Retry-After`.
    pub fn status(status: u16) -> Forced {
        Forced {
            status,
            retry_after: None,
        }
    }

    /// 429 with an optional `Retry-After` (seconds).
    pub fn too_many_requests(retry_after: Option<u64>) -> Forced {
        Forced {
            status: 429,
            retry_after,
        }
    }

    pub(crate) fn reply(&self) -> Reply {
        let body = match self.status {
            400 => json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": ["forced by outpost-testkit"],
            }),
            429 => json!({
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. Please retry later.",
            }),
            status => json!({
                "status": "error",
                "message": format!("forced {status} from outpost-testkit"),
            }),
        };
        let mut reply = Reply::json(self.status, &body);
        if let Some(seconds) = self.retry_after {
            reply = reply.header("retry-after", &seconds.to_string());
        }
        reply
    }
}

/// The forced-failure script shared by every receiver.
#[derive(Debug, Default)]
pub(crate) struct Script {
    pub(crate) queue: VecDeque<Forced>,
    pub(crate) until: Option<(Instant, Forced)>,
}

impl Script {
    pub(crate) fn next(&mut self) -> Option<Forced> {
        if let Some(forced) = self.queue.pop_front() {
            return Some(forced);
        }
        match &self.until {
            Some((deadline, forced)) if Instant::now() < *deadline => Some(forced.clone()),
            Some(_) => {
                self.until = None;
                None
            }
            None => None,
        }
    }
}

/// An accepted Events API v2 event.
#[derive(Clone, Debug)]
pub struct PagerEvent {
    /// The `routing_key` sent (equal to the expected key).
    pub routing_key: String,
    /// `trigger`, `acknowledge` or `resolve`.
    pub event_action: String,
    /// The dedup key sent, or the one generated for a trigger without one.
    pub dedup_key: String,
    /// `payload.summary` (always present for triggers).
    pub summary: Option<String>,
    /// `payload.source` (always present for triggers).
    pub source: Option<String>,
    /// `payload.severity` (always present for triggers).
    pub severity: Option<String>,
    /// The whole request body.
    pub raw: Value,
    /// When the receiver accepted it.
    pub received_at: Instant,
}

/// A request the receiver rejected after validation (not a forced failure).
#[derive(Clone, Debug)]
pub struct Rejection {
    /// Status answered (400 invalid event, 404 wrong path, 405 wrong method).
    pub status: u16,
    /// The request body as JSON (a JSON string holding the text if it was not JSON).
    pub request: Value,
    /// The `errors` sent back.
    pub errors: Vec<String>,
}

#[derive(Debug)]
struct PagerState {
    expected_key: String,
    rejected: Vec<Rejection>,
    script: Script,
    attempts: u64,
    forced: u64,
}

/// A loopback PagerDuty Events API v2 endpoint. Stops when dropped.
#[derive(Debug)]
pub struct PagerReceiver {
    server: RunningServer,
    state: Arc<Mutex<PagerState>>,
    accepted: Arc<Recorder<PagerEvent>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PagerReceiver {
    /// Starts a plain-HTTP receiver on `127.0.0.1:0` accepting `expected_routing_key`.
    pub async fn start(expected_routing_key: &str) -> anyhow::Result<PagerReceiver> {
        PagerReceiver::start_with(expected_routing_key, None).await
    }

    /// Starts a receiver, over HTTPS when `tls` is given ([`PagerReceiver::url`] is
    /// then `https://localhost:PORT`).
    pub async fn start_with(
        expected_routing_key: &str,
        tls: Option<Identity>,
    ) -> anyhow::Result<PagerReceiver> {
        let state = Arc::new(Mutex::new(PagerState {
            expected_key: expected_routing_key.to_owned(),
            rejected: Vec::new(),
            script: Script::default(),
            attempts: 0,
            forced: 0,
        }));
        let accepted = Arc::new(Recorder::default());
        let enqueue_state = Arc::clone(&state);
        let enqueue_accepted = Arc::clone(&accepted);
        let fallback_state = Arc::clone(&state);
        let mut builder = HttpServer::builder()
            .handler(ENQUEUE_PATH, move |req| {
                enqueue(&enqueue_state, &enqueue_accepted, req)
            })
            .fallback(move |req| {
                let mut state = lock(&fallback_state);
                state.attempts += 1;
                let errors = vec![format!(
                    "no such endpoint {}; events go to POST {ENQUEUE_PATH}",
                    req.path_only()
                )];
                state.rejected.push(Rejection {
                    status: 404,
                    request: body_as_json(&req.body),
                    errors: errors.clone(),
                });
                Reply::json(404, &json!({"status": "not found", "errors": errors}))
            });
        if let Some(identity) = tls {
            builder = builder.tls(identity);
        }
        let server = builder.run().await?;
        Ok(PagerReceiver {
            server,
            state,
            accepted,
        })
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:PORT`; events go to
    /// `POST {url}/v2/enqueue`.
    pub fn url(&self) -> String {
        self.server.url("").trim_end_matches('/').to_owned()
    }

    /// The full enqueue URL, `{url}/v2/enqueue`.
    pub fn enqueue_url(&self) -> String {
        self.server.url(ENQUEUE_PATH)
    }

    /// Accepted events, in arrival order.
    pub fn events(&self) -> Vec<PagerEvent> {
        self.accepted.all()
    }

    /// Rejected requests as `(status, request body)`, in arrival order. Forced failures
    /// are not rejections. See [`PagerReceiver::rejections`] for the errors sent back.
    pub fn rejected(&self) -> Vec<(u16, Value)> {
        lock(&self.state)
            .rejected
            .iter()
            .map(|r| (r.status, r.request.clone()))
            .collect()
    }

    /// Rejected requests with the errors sent back.
    pub fn rejections(&self) -> Vec<Rejection> {
        lock(&self.state).rejected.clone()
    }

    /// Every request received, on any path, including forced failures.
    pub fn attempts(&self) -> u64 {
        lock(&self.state).attempts
    }

    /// Requests answered by a forced failure.
    pub fn forced_count(&self) -> u64 {
        lock(&self.state).forced
    }

    /// Every request as the HTTP server saw it (headers, body, peer…).
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.server.requests()
    }

    /// The next `statuses.len()` enqueue requests get these responses, in order,
    /// without being validated or recorded as events (appended to any queued already).
    /// Normal behaviour resumes when the queue is empty.
    pub fn respond_with(&self, statuses: Vec<Forced>) {
        lock(&self.state).script.queue.extend(statuses);
    }

    /// Every enqueue request for `duration` from now gets `status` (after any queued
    /// [`PagerReceiver::respond_with`] responses).
    pub fn fail_for(&self, duration: Duration, status: u16) {
        lock(&self.state).script.until = Some((Instant::now() + duration, Forced::status(status)));
    }

    /// Waits until at least `n` events were accepted, or `timeout`; returns the events
    /// accepted by then.
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<PagerEvent> {
        self.accepted.wait_for(n, timeout).await
    }

    /// Stops the receiver.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

fn enqueue(state: &Mutex<PagerState>, accepted: &Recorder<PagerEvent>, req: &RequestInfo) -> Reply {
    let mut state = lock(state);
    state.attempts += 1;
    if let Some(forced) = state.script.next() {
        state.forced += 1;
        return forced.reply();
    }
    let reject = |state: &mut PagerState, status: u16, errors: Vec<String>| {
        state.rejected.push(Rejection {
            status,
            request: body_as_json(&req.body),
            errors: errors.clone(),
        });
        Reply::json(
            status,
            &json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }),
        )
    };
    if req.method != "POST" {
        let mut reply = reject(
            &mut state,
            405,
            vec![format!("method {} not allowed; use POST", req.method)],
        );
        reply = reply.header("allow", "POST");
        return reply;
    }
    if req.body.len() > MAX_EVENT_BYTES {
        return reject(
            &mut state,
            400,
            vec![format!(
                "event is {} bytes; the limit is 512 KB",
                req.body.len()
            )],
        );
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(body) => body,
        Err(err) => return reject(&mut state, 400, vec![format!("Invalid JSON: {err}")]),
    };
    match validate(&body, &state.expected_key) {
        Err(errors) => reject(&mut state, 400, errors),
        Ok(valid) => {
            let dedup_key = valid.dedup_key.unwrap_or_else(generate_dedup_key);
            let payload = body.get("payload");
            let field = |name: &str| {
                payload
                    .and_then(|p| p.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let event = PagerEvent {
                routing_key: valid.routing_key,
                event_action: valid.event_action,
                dedup_key: dedup_key.clone(),
                summary: field("summary"),
                source: field("source"),
                severity: field("severity"),
                raw: body.clone(),
                received_at: Instant::now(),
            };
            tracing::debug!(action = %event.event_action, dedup_key = %dedup_key, "testkit pager accepted event");
            accepted.push(event);
            Reply::json(
                202,
                &json!({
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": dedup_key,
                }),
            )
        }
    }
}

struct ValidEvent {
    routing_key: String,
    event_action: String,
    dedup_key: Option<String>,
}

/// Validates an Events API v2 alert event; collects every problem.
fn validate(body: &Value, expected_key: &str) -> Result<ValidEvent, Vec<String>> {
    let mut errors = Vec::new();
    let Some(object) = body.as_object() else {
        return Err(vec!["Event must be a JSON object".to_owned()]);
    };

    let routing_key = match object.get("routing_key") {
        Some(Value::String(key)) if key == expected_key => Some(key.clone()),
        Some(Value::String(key))
            if expected_key.chars().count() == 32 && key.chars().count() != 32 =>
        {
            errors
                .push("Length of 'routing_key' is incorrect (should be 32 characters)".to_owned());
            None
        }
        Some(Value::String(key)) if key.trim().is_empty() => {
            errors.push("'routing_key' is missing or blank".to_owned());
            None
        }
        Some(Value::String(_)) => {
            errors.push("Invalid routing key".to_owned());
            None
        }
        None | Some(Value::Null) => {
            errors.push("'routing_key' is missing or blank".to_owned());
            None
        }
        Some(_) => {
            errors.push("'routing_key' must be a string".to_owned());
            None
        }
    };

    let event_action = match object.get("event_action") {
        Some(Value::String(action))
            if ["trigger", "acknowledge", "resolve"].contains(&action.as_str()) =>
        {
            Some(action.clone())
        }
        None | Some(Value::Null) => {
            errors.push("'event_action' is missing or blank".to_owned());
            None
        }
        Some(other) => {
            errors.push(format!(
                "'event_action' must be one of trigger, acknowledge, resolve; got {other}"
            ));
            None
        }
    };

    let dedup_key = match object.get("dedup_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) if key.chars().count() > MAX_DEDUP_KEY_CHARS => {
            errors.push(format!(
                "'dedup_key' is {} characters; the maximum is {MAX_DEDUP_KEY_CHARS}",
                key.chars().count()
            ));
            None
        }
        Some(Value::String(key)) if key.trim().is_empty() => None,
        Some(Value::String(key)) => Some(key.clone()),
        Some(_) => {
            errors.push("'dedup_key' must be a string".to_owned());
            None
        }
    };

    match event_action.as_deref() {
        Some("trigger") => validate_trigger(object, &mut errors),
        Some(_) if dedup_key.is_none() && !errors.iter().any(|e| e.contains("dedup_key")) => {
            errors.push("'dedup_key' is required for acknowledge and resolve events".to_owned());
        }
        _ => {}
    }

    match (routing_key, event_action) {
        (Some(routing_key), Some(event_action)) if errors.is_empty() => Ok(ValidEvent {
            routing_key,
            event_action,
            dedup_key,
        }),
        _ => Err(errors),
    }
}

fn validate_trigger(object: &serde_json::Map<String, Value>, errors: &mut Vec<String>) {
    let Some(payload) = object.get("payload").and_then(Value::as_object) else {
        errors.push("'payload' is missing or not an object".to_owned());
        return;
    };
    match payload.get("summary") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push("'payload.summary' is missing or blank".to_owned());
        }
        Some(Value::String(s)) if s.chars().count() > MAX_SUMMARY_CHARS => errors.push(format!(
            "'payload.summary' is {} characters; the maximum is {MAX_SUMMARY_CHARS}",
            s.chars().count()
        )),
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => errors.push("'payload.summary' is missing or blank".to_owned()),
        Some(_) => errors.push("'payload.summary' must be a string".to_owned()),
    }
    match payload.get("source") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.push("'payload.source' is missing or blank".to_owned());
        }
        Some(_) => errors.push("'payload.source' must be a string".to_owned()),
    }
    match payload.get("severity") {
        Some(Value::String(s)) if SEVERITIES.contains(&s.as_str()) => {}
        None | Some(Value::Null) => {
            errors.push("'payload.severity' is missing or blank".to_owned())
        }
        Some(other) => errors.push(format!(
            "'payload.severity' must be one of critical, error, warning, info; got {other}"
        )),
    }
    match payload.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if is_iso8601(s) => {}
        Some(other) => errors.push(format!(
            "'payload.timestamp' must be an ISO 8601 timestamp like 2015-07-17T08:42:58.315+0000; got {other}"
        )),
    }
    for name in ["component", "group", "class"] {
        if let Some(value) = payload.get(name)
            && !value.is_null()
            && !value.is_string()
        {
            errors.push(format!("'payload.{name}' must be a string"));
        }
    }
    for name in ["client", "client_url"] {
        if let Some(value) = object.get(name)
            && !value.is_null()
            && !value.is_string()
        {
            errors.push(format!("'{name}' must be a string"));
        }
    }
    for (name, required) in [("images", "src"), ("links", "href")] {
        match object.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.get(required).is_some_and(Value::is_string) {
                        errors.push(format!("'{name}[{i}].{required}' is required"));
                    }
                }
            }
            Some(_) => errors.push(format!("'{name}' must be an array")),
        }
    }
}

/// RFC 3339, ISO 8601 as the `time` crate parses it, or PagerDuty's own example form
/// with a colon-less offset (`2015-07-17T08:42:58.315+0000`).
fn is_iso8601(s: &str) -> bool {
    use time::OffsetDateTime;
    use time::format_description::well_known::{Iso8601, Rfc3339};
    if OffsetDateTime::parse(s, &Rfc3339).is_ok()
        || OffsetDateTime::parse(s, &Iso8601::DEFAULT).is_ok()
    {
        return true;
    }
    let bytes = s.as_bytes();
    if bytes.len() > 5 {
        let (head, offset) = s.split_at(s.len() - 5);
        let offset = offset.as_bytes();
        if (offset[0] == b'+' || offset[0] == b'-') && offset[1..].iter().all(u8::is_ascii_digit) {
            let fixed = format!(
                "{head}{}{}:{}",
                offset[0] as char,
                &s[s.len() - 4..s.len() - 2],
                &s[s.len() - 2..]
            );
            return OffsetDateTime::parse(&fixed, &Rfc3339).is_ok();
        }
    }
    false
}

fn generate_dedup_key() -> String {
    let bytes: [u8; 16] = crate::random_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn body_as_json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[derive(Debug, Default)]
struct WebhookState {
    script: Script,
    attempts: u64,
}

/// A loopback webhook endpoint recording every POSTed JSON body (Slack-style sinks,
/// generic webhooks). Answers `200 ok`; non-JSON bodies get 400 and are not recorded;
/// other methods get 405. Stops when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    server: RunningServer,
    state: Arc<Mutex<WebhookState>>,
    received: Arc<Recorder<Value>>,
}

impl WebhookReceiver {
    /// Starts a plain-HTTP receiver on `127.0.0.1:0`, accepting POSTs on any path.
    pub async fn start() -> anyhow::Result<WebhookReceiver> {
        WebhookReceiver::start_with(None).await
    }

    /// Starts a receiver, over HTTPS when `tls` is given.
    pub async fn start_with(tls: Option<Identity>) -> anyhow::Result<WebhookReceiver> {
        let state = Arc::new(Mutex::new(WebhookState::default()));
        let received = Arc::new(Recorder::default());
        let handler_state = Arc::clone(&state);
        let handler_received = Arc::clone(&received);
        let mut builder = HttpServer::builder().fallback(move |req| {
            let mut state = lock(&handler_state);
            state.attempts += 1;
            if let Some(forced) = state.script.next() {
                return forced.reply();
            }
            if req.method != "POST" {
                return Reply::text(405, "use POST").header("allow", "POST");
            }
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(body) => {
                    handler_received.push(body);
                    Reply::text(200, "ok")
                }
                Err(err) => Reply::text(400, format!("invalid JSON: {err}")),
            }
        });
        if let Some(identity) = tls {
            builder = builder.tls(identity);
        }
        let server = builder.run().await?;
        Ok(WebhookReceiver {
            server,
            state,
            received,
        })
    }

    /// The URL to POST to: `http://127.0.0.1:PORT/hook` (any path on the server works).
    pub fn url(&self) -> String {
        self.server.url("/hook")
    }

    /// Recorded JSON bodies, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.received.all()
    }

    /// Every request received, including forced failures and rejected ones.
    pub fn attempts(&self) -> u64 {
        lock(&self.state).attempts
    }

    /// Every request as the HTTP server saw it (headers, body, path…).
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.server.requests()
    }

    /// The next `statuses.len()` requests get these responses and are not recorded.
    pub fn respond_with(&self, statuses: Vec<Forced>) {
        lock(&self.state).script.queue.extend(statuses);
    }

    /// Every request for `duration` from now gets `status`.
    pub fn fail_for(&self, duration: Duration, status: u16) {
        lock(&self.state).script.until = Some((Instant::now() + duration, Forced::status(status)));
    }

    /// Waits until at least `n` bodies were recorded, or `timeout`; returns them.
    pub async fn wait_for_bodies(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.received.wait_for(n, timeout).await
    }

    /// Stops the receiver.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn trigger() -> Value {
        json!({
            "routing_key": KEY,
            "event_action": "trigger",
            "payload": {"summary": "down", "source": "probe-1", "severity": "critical"},
        })
    }

    #[test]
    fn valid_trigger_without_dedup_key_passes() {
        let valid = validate(&trigger(), KEY).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(valid.event_action, "trigger");
        assert!(valid.dedup_key.is_none());
    }

    #[test]
    fn resolve_requires_dedup_key_but_no_payload() {
        let mut event = json!({"routing_key": KEY, "event_action": "resolve"});
        assert!(validate(&event, KEY).is_err());
        event["dedup_key"] = json!("abc");
        assert!(validate(&event, KEY).is_ok());
    }

    #[test]
    fn limits_and_enums_are_enforced() {
        let mut event = trigger();
        event["payload"]["summary"] = json!("x".repeat(1025));
        assert!(validate(&event, KEY).is_err());
        event["payload"]["summary"] = json!("x".repeat(1024));
        assert!(validate(&event, KEY).is_ok());
        event["dedup_key"] = json!("k".repeat(256));
        assert!(validate(&event, KEY).is_err());
        event["dedup_key"] = json!("k".repeat(255));
        assert!(validate(&event, KEY).is_ok());
        event["payload"]["severity"] = json!("fatal");
        assert!(validate(&event, KEY).is_err());
        event["payload"]["severity"] = json!("info");
        event["event_action"] = json!("escalate");
        assert!(validate(&event, KEY).is_err());
    }

    #[test]
    fn wrong_routing_key_is_rejected() {
        let errors = validate(&trigger(), "ffffffffffffffffffffffffffffffff")
            .err()
            .unwrap_or_default();
        assert_eq!(errors, vec!["Invalid routing key".to_owned()]);
    }

    #[test]
    fn timestamps_in_documented_forms_are_accepted() {
        assert!(is_iso8601("2015-07-17T08:42:58.315+0000"));
        assert!(is_iso8601("2015-07-17T08:42:58.315+00:00"));
        assert!(is_iso8601("2015-07-17T08:42:58Z"));
        assert!(!is_iso8601("yesterday"));
        assert!(!is_iso8601("2015-07-17 08:42"));
    }

    #[test]
    fn script_queue_runs_before_fail_for_then_resumes() {
        let mut script = Script::default();
        script.queue.push_back(Forced::too_many_requests(Some(1)));
        assert_eq!(script.next().map(|f| f.status), Some(429));
        assert_eq!(script.next(), None);
        script.until = Some((Instant::now() - Duration::from_secs(1), Forced::status(500)));
        assert_eq!(script.next(), None);
        assert!(script.until.is_none());
    }
}
