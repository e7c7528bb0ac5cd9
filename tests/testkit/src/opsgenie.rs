//! A loopback Opsgenie Alert API v2, validating requests the way Opsgenie
//! documents them, and keeping alerts by alias.
//!
//! - `Authorization: GenieKey <key>` required (`401 {"message": "Could not
//!   authenticate", …}` otherwise); JSON bodies (`content-type:
//!   application/json`).
//! - `POST /v2/alerts` (create): `message` non-blank, at most 130
//!   characters; `alias`, `entity` at most 512; `description` at most
//!   15000; `source` at most 100; `priority` one of `P1`…`P5`; `tags` an
//!   array of at most 20 strings of at most 50 characters; `details` an
//!   object of string values. Invalid → `422 {"message": "Request body is
//!   not processable. Please check the errors.", "errors": {field: why}}`.
//!   A create for an alias whose alert is open only counts up (`count`),
//!   like Opsgenie's de-duplication; otherwise a new alert opens.
//! - `POST /v2/alerts/{alias}/close?identifierType=alias` and
//!   `POST /v2/alerts/{alias}/notes?identifierType=alias` (`note` required,
//!   at most 25000 characters); the alias is percent-decoded;
//!   `identifierType` other than `alias` → 422.
//! - Every accepted request → `202 {"result": "Request will be processed",
//!   "took": 0.01, "requestId": "…"}`. A close or note for an alias without
//!   an alert is accepted too (Opsgenie fails it later, asynchronously) and
//!   counted in [`OpsgenieReceiver::unknown_alias`].
//! - [`OpsgenieReceiver::respond_with`] forces statuses (429 with
//!   `Retry-After`, 500, 400) on the next requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, RequestInfo, RunningServer};
use crate::pager::{Forced, Script, lock};
use crate::recorder::Recorder;

/// An alert as the receiver keeps it.
#[derive(Clone, Debug, Default)]
pub struct OpsgenieAlert {
    /// Alias.
    pub alias: String,
    /// Open (not closed).
    pub open: bool,
    /// Creates received for it while open (1 = created once).
    pub count: u32,
    /// `message` of the create that opened it.
    pub message: String,
    /// `priority`.
    pub priority: String,
    /// `tags`.
    pub tags: Vec<String>,
    /// `details`.
    pub details: BTreeMap<String, String>,
    /// Notes added, in order.
    pub notes: Vec<String>,
    /// The create body that opened it.
    pub raw: Value,
}

/// One accepted request.
#[derive(Clone, Debug)]
pub struct OpsgenieRequest {
    /// `create`, `close` or `note`.
    pub action: &'static str,
    /// Alias.
    pub alias: String,
    /// Body.
    pub body: Value,
}

#[derive(Debug, Default)]
struct OpsState {
    key: String,
    alerts: BTreeMap<String, OpsgenieAlert>,
    rejected: Vec<(u16, Value)>,
    unknown_alias: u64,
    script: Script,
    attempts: u64,
    ids: u64,
}

/// A loopback Opsgenie. Stops when dropped.
#[derive(Debug)]
pub struct OpsgenieReceiver {
    server: RunningServer,
    state: Arc<Mutex<OpsState>>,
    accepted: Arc<Recorder<OpsgenieRequest>>,
}

impl OpsgenieReceiver {
    /// Starts on `127.0.0.1:0` accepting API key `key`.
    pub async fn start(key: &str) -> anyhow::Result<OpsgenieReceiver> {
        let state = Arc::new(Mutex::new(OpsState {
            key: key.to_owned(),
            ..OpsState::default()
        }));
        let accepted = Arc::new(Recorder::default());
        let (s, a) = (Arc::clone(&state), Arc::clone(&accepted));
        let server = HttpServer::builder()
            .fallback(move |req| handle(&s, &a, req))
            .run()
            .await?;
        Ok(OpsgenieReceiver {
            server,
            state,
            accepted,
        })
    }

    /// Base URL (`http://127.0.0.1:PORT`), as `api_url`.
    pub fn url(&self) -> String {
        self.server.url("").trim_end_matches('/').to_owned()
    }

    /// Alerts by alias.
    pub fn alerts(&self) -> BTreeMap<String, OpsgenieAlert> {
        lock(&self.state).alerts.clone()
    }

    /// Accepted requests, in order.
    pub fn accepted(&self) -> Vec<OpsgenieRequest> {
        self.accepted.all()
    }

    /// Rejected requests (status, body).
    pub fn rejected(&self) -> Vec<(u16, Value)> {
        lock(&self.state).rejected.clone()
    }

    /// Closes or notes for an alias without an alert.
    pub fn unknown_alias(&self) -> u64 {
        lock(&self.state).unknown_alias
    }

    /// Every request, forced failures included.
    pub fn attempts(&self) -> u64 {
        lock(&self.state).attempts
    }

    /// Every request as the server saw it.
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.server.requests()
    }

    /// The next requests get these statuses, unprocessed.
    pub fn respond_with(&self, statuses: Vec<Forced>) {
        lock(&self.state).script.queue.extend(statuses);
    }

    /// Waits for at least `n` accepted requests, or `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<OpsgenieRequest> {
        self.accepted.wait_for(n, timeout).await
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn chars(v: &Value) -> Option<usize> {
    v.as_str().map(|s| s.chars().count())
}

/// Create-request checks (module note): field → why.
pub fn validate_create(body: &Value) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    let mut err = |f: &str, why: &str| {
        errors.insert(f.to_owned(), why.to_owned());
    };
    match body.get("message").and_then(Value::as_str) {
        Some(m) if !m.trim().is_empty() && m.chars().count() <= 130 => {}
        Some(m) if !m.trim().is_empty() => err("message", "Message can not be longer than 130"),
        _ => err("message", "Message can not be empty."),
    }
    for (field, max) in [
        ("alias", 512),
        ("entity", 512),
        ("description", 15_000),
        ("source", 100),
    ] {
        if let Some(v) = body.get(field)
            && chars(v).is_none_or(|n| n > max)
        {
            err(
                field,
                &format!("must be a string of at most {max} characters"),
            );
        }
    }
    if let Some(p) = body.get("priority")
        && !matches!(p.as_str(), Some("P1" | "P2" | "P3" | "P4" | "P5"))
    {
        err("priority", "Priority should be one of [P1, P2, P3, P4, P5]");
    }
    if let Some(tags) = body.get("tags") {
        let ok = tags.as_array().is_some_and(|t| {
            t.len() <= 20
                && t.iter()
                    .all(|x| chars(x).is_some_and(|n| (1..=50).contains(&n)))
        });
        if !ok {
            err("tags", "at most 20 tags of at most 50 characters");
        }
    }
    if let Some(details) = body.get("details") {
        let ok = details
            .as_object()
            .is_some_and(|d| d.values().all(Value::is_string));
        if !ok {
            err("details", "details must be a map of strings");
        }
    }
    errors
}

fn handle(
    state: &Mutex<OpsState>,
    accepted: &Recorder<OpsgenieRequest>,
    req: &RequestInfo,
) -> Reply {
    let mut st = lock(state);
    st.attempts += 1;
    if let Some(forced) = st.script.next() {
        return forced.reply();
    }
    st.ids += 1;
    let request_id = format!("00000000-0000-4000-8000-{:012}", st.ids);
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let reject = |st: &mut OpsState, status: u16, message: &str, errors: Value| {
        st.rejected.push((status, body.clone()));
        Reply::json(
            status,
            &json!({"message": message, "errors": errors, "took": 0.0, "requestId": request_id}),
        )
    };
    let key_ok = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("GenieKey "))
        .is_some_and(|k| k == st.key);
    if !key_ok {
        return reject(&mut st, 401, "Could not authenticate", json!({}));
    }
    if req.method != "POST" {
        return reject(&mut st, 405, "Method not allowed", json!({}));
    }
    let json_ct = req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    if !json_ct || !body.is_object() {
        return reject(&mut st, 400, "Request body is not valid JSON", json!({}));
    }
    let path = req.path_only().to_owned();
    let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ok = Reply::json(
        202,
        &json!({"result": "Request will be processed", "took": 0.01, "requestId": request_id}),
    );
    let (action, alias) = match segments.as_slice() {
        ["v2", "alerts"] => {
            let errors = validate_create(&body);
            if !errors.is_empty() {
                return reject(
                    &mut st,
                    422,
                    "Request body is not processable. Please check the errors.",
                    json!(errors),
                );
            }
            let alias = body["alias"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| request_id.clone());
            let entry = st.alerts.entry(alias.clone()).or_default();
            if entry.open {
                entry.count += 1;
            } else {
                *entry = OpsgenieAlert {
                    alias: alias.clone(),
                    open: true,
                    count: 1,
                    message: body["message"].as_str().unwrap_or_default().to_owned(),
                    priority: body["priority"].as_str().unwrap_or("P3").to_owned(),
                    tags: body["tags"]
                        .as_array()
                        .map(|t| {
                            t.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    details: body["details"]
                        .as_object()
                        .map(|d| {
                            d.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    notes: Vec::new(),
                    raw: body.clone(),
                };
            }
            ("create", alias)
        }
        ["v2", "alerts", alias, op @ ("close" | "notes")] => {
            if query != "identifierType=alias" {
                return reject(
                    &mut st,
                    422,
                    "identifierType must be alias here",
                    json!({"identifierType": query}),
                );
            }
            let alias = percent_decode(alias);
            let note = body
                .get("note")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if *op == "notes" && (note.trim().is_empty() || note.chars().count() > 25_000) {
                return reject(
                    &mut st,
                    422,
                    "Request body is not processable. Please check the errors.",
                    json!({"note": "Note can not be empty."}),
                );
            }
            match st.alerts.get_mut(&alias) {
                Some(a) if *op == "close" => a.open = false,
                Some(a) => a.notes.push(note),
                None => st.unknown_alias += 1,
            }
            (if *op == "close" { "close" } else { "note" }, alias)
        }
        _ => return reject(&mut st, 404, "No such endpoint", json!({"path": path})),
    };
    accepted.push(OpsgenieRequest {
        action,
        alias,
        body,
    });
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_are_checked_field_by_field() {
        let good = json!({"message": "api down", "alias": "a", "priority": "P1", "tags": ["x"], "details": {"k": "v"}});
        assert!(validate_create(&good).is_empty());
        let bad = json!({"message": "x".repeat(131), "priority": "P9", "details": {"k": 1}});
        let errors = validate_create(&bad);
        assert_eq!(
            errors.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["details", "message", "priority"]
        );
        assert_eq!(
            percent_decode("outpost%2Fapi%2Fcheck_failing"),
            "outpost/api/check_failing"
        );
    }
}
