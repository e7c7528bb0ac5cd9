//! The session's HTTP: one request on a fresh connection through the http
//! check's machinery ([`crate::check::http::exchange::send`]: resolve,
//! connect, TLS with full verification, bounded head and body), and the
//! protected requests of `use` (config, validation, calls) with their assertions.

use std::{collections::BTreeMap, time::Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    SessionSpec, clock::Receipt, headers as header_templates, method, observed::RequestRecord,
    placeholders, render, state::Session, statuses, url,
};
use crate::{
    check::{
        Failure, Phases, RunContext,
        assertion::{
            self, AssertionResult, Assertions, RawAssertions, RawFreshness, RawHeaderAssertion,
            RawJsonAssertion, RawLatency, StatusMatch,
        },
        http::{
            DEFAULT_MAX_HEADER_BYTES, HttpVersion,
            exchange::{self, Hop, HopRequest, Limits, Target},
        },
    },
    config::Problems,
    resolver::ResolverSpec,
};

/// One protected request of `use`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUse {
    /// Name in details. Default: the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Absolute URL. Example: `"https://vendor-b.example.com/api/telemetry"`.
    pub url: String,
    /// Method. Default `"GET"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers; `{{token}}` is replaced by the session's token. When
    /// no header mentions `{{token}}`, a token is sent as
    /// `Authorization: Bearer …`; session cookies are always sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body sent as is. At most one of `body`, `json_body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// JSON body (`content-type: application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<Value>,
    /// Statuses that pass. Default `["2xx"]`. A 401 or 403 is always a session rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<Vec<StatusMatch>>,
    /// As in `[checks.http]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_headers: Vec<RawHeaderAssertion>,
    /// As in `[checks.http]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// As in `[checks.http]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_matches: Option<String>,
    /// As in `[checks.http]`. Example: `[{ path = "$.ok", equals = true }]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<RawJsonAssertion>,
    /// As in `[checks.http]`. Example: `{ json_path = "$.updated_at", max_age = "15m" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<RawFreshness>,
    /// As in `[checks.http]`. Example: `{ total = "800ms" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<RawLatency>,
}

/// A validated protected request.
#[derive(Debug, Clone, PartialEq)]
pub struct UseSpec {
    /// Name in details.
    pub name: String,
    /// URL.
    pub uri: Uri,
    /// Method.
    pub method: http::Method,
    /// Header templates (`{{token}}`).
    pub headers: Vec<(HeaderName, String)>,
    /// True when some header mentions `{{token}}`.
    pub token_in_headers: bool,
    /// Body and content type.
    pub body: Option<(Bytes, Option<&'static str>)>,
    /// Statuses that pass.
    pub expected: Vec<(u16, u16)>,
    /// Assertions.
    pub assertions: Assertions,
}

impl RawUse {
    /// Validates; problems are recorded under `path` (`checks[0].session.use[0]`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<UseSpec> {
        let before = problems.len();
        let uri = url(&self.url, format!("{path}.url"), problems);
        let method = method(
            self.method.as_deref(),
            "GET",
            format!("{path}.method"),
            problems,
        );
        let allowed = |n: &str| n == "token";
        let headers = header_templates(&self.headers, &allowed, path, problems);
        let token_in_headers = self
            .headers
            .values()
            .any(|v| placeholders(v).contains(&"token"));
        if self.body.is_some() && self.json_body.is_some() {
            problems.push(path.to_owned(), "set at most one of `body` or `json_body`");
        }
        let body = match (&self.body, &self.json_body) {
            (Some(b), _) => Some((Bytes::from(b.clone()), None)),
            (_, Some(j)) => Some((Bytes::from(j.to_string()), Some("application/json"))),
            _ => None,
        };
        let expected = statuses(self.expected_status.as_ref(), path, problems);
        let assertions = RawAssertions {
            headers: &self.expected_headers,
            body_contains: self.body_contains.as_ref(),
            body_matches: self.body_matches.as_ref(),
            json: &self.json,
            freshness: self.freshness.as_ref(),
            latency: self.latency.as_ref(),
        }
        .validate(path, problems);
        if problems.len() != before {
            return None;
        }
        Some(UseSpec {
            name: self.name.clone().unwrap_or_else(|| self.url.clone()),
            uri: uri?,
            method: method?,
            headers,
            token_in_headers,
            body,
            expected,
            assertions,
        })
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Exchanged {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (at most `max_body`).
    pub body: Bytes,
    /// When it was sent and received, and the server's `Date`.
    pub receipt: Receipt,
    /// Phase timings.
    pub phases: Phases,
}

/// Sends one request within `deadline` and reads the whole body.
pub async fn exchange(
    uri: &Uri,
    method: &http::Method,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    spec: &SessionSpec,
    ctx: &RunContext,
    deadline: tokio::time::Instant,
) -> Result<Exchanged, (Failure, Phases)> {
    let resolver = ResolverSpec::system();
    let limits = Limits {
        trust: &spec.trust,
        http_version: HttpVersion::Auto,
        max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        resolver: &resolver,
    };
    let req = HopRequest {
        uri,
        method,
        headers,
        body,
    };
    let mut hop = Hop::default();
    let sent_at = ctx.clock.now_utc();
    let t = Instant::now();
    let res = {
        let hop = &mut hop;
        tokio::time::timeout_at(deadline, async move {
            let mut resp = exchange::send(&req, Target::Resolve, limits, ctx, hop).await?;
            let received_at = ctx.clock.now_utc();
            let body = resp.read_body(spec.max_body, true, hop).await?;
            Ok::<_, Failure>((
                resp.status,
                std::mem::take(&mut resp.headers),
                body,
                received_at,
            ))
        })
        .await
    };
    let mut phases = hop.phases_us;
    phases.total = t.elapsed();
    match res {
        Ok(Ok((status, headers, body, received_at))) => {
            let server_date = headers
                .get(http::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(assertion::freshness::parse_http_date);
            Ok(Exchanged {
                status,
                headers,
                body,
                receipt: Receipt {
                    sent_at,
                    received_at,
                    server_date,
                },
                phases,
            })
        }
        Ok(Err(f)) => Err((f, phases)),
        Err(_) => Err((
            Failure::Timeout {
                phase: hop.phase,
                after: t.elapsed(),
                target: uri.authority().map(|a| a.as_str().to_owned()),
            },
            phases,
        )),
    }
}

/// Which credential a protected request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The session's credential from an earlier run.
    Current,
    /// A credential renewed in this run.
    Renewed,
    /// The old credential, kept because its renewal failed.
    Previous,
    /// A credential from a re-login after a rejection.
    Relogin,
}

impl Credential {
    fn as_str(self) -> &'static str {
        match self {
            Credential::Current => "current",
            Credential::Renewed => "renewed",
            Credential::Previous => "previous",
            Credential::Relogin => "relogin",
        }
    }
}

/// One protected request's result, an entry of `details.requests`.
#[derive(Debug)]
pub struct CallResult {
    /// Name.
    pub name: String,
    /// Status, when a response came.
    pub status: Option<u16>,
    /// The server rejected the session (401 or 403).
    pub rejected: bool,
    /// When the response arrived (probe clock).
    pub at: OffsetDateTime,
    /// Exchange times and `Date`.
    pub receipt: Option<Receipt>,
    /// Pass or the first failure.
    pub result: Result<(), Failure>,
    /// The credential used.
    pub credential: Credential,
    /// A retry after a re-login.
    pub retry: bool,
    /// Assertions evaluated.
    pub assertions: Vec<AssertionResult>,
    /// Timings.
    pub phases: Phases,
    /// URL and method.
    pub url: String,
    /// Method.
    pub method: String,
}

impl CallResult {
    /// The details entry.
    pub fn record(&self) -> RequestRecord {
        RequestRecord {
            name: self.name.clone(),
            url: self.url.clone(),
            method: self.method.clone(),
            status: self.status,
            ok: self.result.is_ok(),
            failure_code: self.result.as_ref().err().map(Failure::code),
            failure_message: self.result.as_ref().err().map(Failure::to_string),
            credential: self.credential.as_str().to_owned(),
            retry: self.retry,
            assertions: self.assertions.clone(),
            phases_us: self.phases,
        }
    }
}

/// The headers of a protected request with the session's credentials.
fn headers(u: &UseSpec, s: &Session, now: OffsetDateTime) -> Vec<(HeaderName, HeaderValue)> {
    let token = s.token.as_ref().map(|t| t.expose().to_owned());
    let vars = |n: &str| (n == "token").then(|| token.clone()).flatten();
    let mut out = Vec::new();
    for (k, v) in &u.headers {
        if let Ok(mut hv) = HeaderValue::try_from(render(v, &vars)) {
            hv.set_sensitive(true);
            out.push((k.clone(), hv));
        }
    }
    if !u.token_in_headers
        && s.bearer
        && let Some(t) = &token
        && let Ok(mut hv) = HeaderValue::try_from(format!("Bearer {t}"))
    {
        hv.set_sensitive(true);
        out.push((http::header::AUTHORIZATION, hv));
    }
    let jar: Vec<String> = s
        .cookies
        .iter()
        .filter(|c| c.expires_at.is_none_or(|e| e > now))
        .map(|c| format!("{}={}", c.name, c.value.expose()))
        .collect();
    if !jar.is_empty()
        && !u.headers.iter().any(|(k, _)| k == http::header::COOKIE)
        && let Ok(mut hv) = HeaderValue::try_from(jar.join("; "))
    {
        hv.set_sensitive(true);
        out.push((http::header::COOKIE, hv));
    }
    if let Some((_, Some(ct))) = &u.body
        && !u
            .headers
            .iter()
            .any(|(k, _)| k == http::header::CONTENT_TYPE)
    {
        out.push((http::header::CONTENT_TYPE, HeaderValue::from_static(ct)));
    }
    out
}

/// Makes one protected request with session `s` and evaluates its assertions.
pub async fn call(
    u: &UseSpec,
    s: &Session,
    credential: Credential,
    retry: bool,
    spec: &SessionSpec,
    ctx: &RunContext,
    deadline: tokio::time::Instant,
) -> CallResult {
    let now = ctx.clock.now_utc();
    let hs = headers(u, s, now);
    let body = u.body.as_ref().map(|(b, _)| b.clone()).unwrap_or_default();
    let mut r = CallResult {
        name: u.name.clone(),
        status: None,
        rejected: false,
        at: now,
        receipt: None,
        result: Ok(()),
        credential,
        retry,
        assertions: Vec::new(),
        phases: Phases::default(),
        url: u.uri.to_string(),
        method: u.method.to_string(),
    };
    let resp = match exchange(&u.uri, &u.method, &hs, body, spec, ctx, deadline).await {
        Ok(resp) => resp,
        Err((f, phases)) => {
            r.phases = phases;
            r.result = Err(f);
            return r;
        }
    };
    r.at = resp.receipt.received_at;
    r.receipt = Some(resp.receipt);
    r.phases = resp.phases;
    r.status = Some(resp.status.as_u16());
    r.rejected = matches!(
        resp.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    let location = resp
        .headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok());
    let mut results = vec![assertion::status(&u.expected, resp.status, location)];
    let obs = assertion::Response {
        headers: &resp.headers,
        body: &resp.body,
        phases: &r.phases,
    };
    results.extend(u.assertions.evaluate(&obs, ctx.clock.now_utc()));
    let (first, records) = assertion::split(results);
    r.result = first.map_or(Ok(()), Err);
    if r.rejected && r.result.is_ok() {
        // Listed in expected_status, but a rejection all the same.
        r.result = Err(Failure::UnexpectedStatus {
            got: resp.status.as_u16(),
            expected: assertion::status_text(&u.expected),
            responder: None,
            oauth_error: None,
            session_rejected: true,
        });
    }
    r.assertions = records;
    r
}

/// `+30 s` / `-1.5 s` for messages ([`crate::human::duration`] with a sign).
pub fn signed(d: time::Duration) -> String {
    let sign = if d.is_negative() { "-" } else { "+" };
    format!("{sign}{}", crate::human::duration(d.unsigned_abs()))
}
