//! Sinks: `[[sinks]]` (each kind's keys, validation and delivery in its own
//! module: [`pagerduty`], [`slack`], [`opsgenie`], [`email`], [`webhook`],
//! [`console`]), the worker that drains
//! the persisted outbox, the retry policy, and the small HTTP client every
//! HTTP sink uses.
//!
//! - **Order.** [`Store::due_notifications`](crate::store::Store::due_notifications)
//!   only hands out the oldest pending notification of each (sink, dedup_key),
//!   so a resolve never overtakes its trigger. Different keys go out concurrently.
//!   A resolve therefore goes out only after its trigger was delivered or
//!   permanently failed.
//! - **Retries.** Timeouts, connection errors, 408, 429 and 5xx are retried
//!   with exponential backoff (1 s doubling to 5 min) with jitter, never sooner
//!   than a `Retry-After` asks (seconds or an HTTP-date, capped at
//!   [`MAX_RETRY_AFTER`]). Other 4xx mean the request itself is wrong: the
//!   notification is marked failed at once, logged at WARN and counted as
//!   `outpost_notifications_total{outcome="rejected"}`. A notification still
//!   undelivered `give_up_after` (per sink, default 1 h) after its first
//!   attempt is marked failed (`outcome="failed"`); resolves get at least
//!   15 min whatever the setting.
//! - **Rate limit.** PagerDuty, Slack and Opsgenie sinks take a token from
//!   their credential's bucket ([`ratelimit`], [`SinkKind::rate_limit`])
//!   before each attempt; without one the
//!   notification is postponed in the outbox (no attempt counted,
//!   `outcome="rate_limited"`), never dropped.
//! - **Logs.** Every state change (queued, postponed, delivered) at DEBUG;
//!   every failure (retry, rejection, give-up) at WARN with the sink and the
//!   dedup key — never the routing key or a webhook URL, which are secrets.
//! - **Crash.** Delivery state is in the store; a crash after a send but
//!   before `delivered` is recorded sends it again (at-least-once; the dedup
//!   key makes PagerDuty collapse it). Nothing pending is lost.
//! - **Client.** One fresh HTTP/1.1 connection per request
//!   (`hyper::client::conn::http1` over `TcpStream`, tokio-rustls with the
//!   Mozilla roots for https), bounded by [`REQUEST_TIMEOUT`] and a response
//!   body cap. Notifications are rare; pooling would only hide failures.

pub mod console;
pub mod email;
pub mod opsgenie;
pub mod pagerduty;
pub mod ratelimit;
pub mod slack;
pub mod webhook;

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use outpost_probe::config::{Dur, Problems, Secret};
use serde::Deserialize;
use tokio::net::TcpStream;

use super::{Action, AlertEvent};
use crate::{Controller, config::push_if_bad_id, store::Notification};

/// Default give-up horizon of a sink: a notification still undelivered this
/// long after its first attempt is marked failed.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(3600);
/// Resolves are retried at least this long, whatever `give_up_after` says:
/// a lost resolve leaves an incident open at 3 a.m.
pub const MIN_RESOLVE_GIVE_UP: Duration = Duration::from_secs(15 * 60);

/// `[[sinks]]`: one notification destination. Exactly one of `pagerduty`,
/// `slack`, `opsgenie`, `email`, `webhook` or `console`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// Unique sink name used by `[[routes]]`. Example `"pagerduty"`.
    pub name: String,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty: Option<pagerduty::RawPagerDuty>,
    /// Slack: incoming webhook (`url`) or `chat.postMessage` (`token`, `channel`).
    #[serde(default)]
    pub slack: Option<slack::RawSlack>,
    /// Opsgenie Alert API v2.
    #[serde(default)]
    pub opsgenie: Option<opsgenie::RawOpsgenie>,
    /// Email over SMTP (STARTTLS by default).
    #[serde(default)]
    pub email: Option<email::RawEmail>,
    /// Generic JSON webhook.
    #[serde(default)]
    pub webhook: Option<webhook::RawWebhook>,
    /// One log line per notification (`console = {}`).
    #[serde(default)]
    pub console: Option<console::RawConsole>,
    /// How long an undeliverable notification is retried (429, 5xx, timeouts,
    /// connection errors) counted from its first attempt before it is marked
    /// failed. Default `"1h"`, minimum `"1m"`. Resolves are retried at least
    /// `"15m"` even when this is shorter.
    #[serde(default)]
    pub give_up_after: Option<Dur>,
}

/// A validated sink.
#[derive(Debug, Clone)]
pub struct SinkDef {
    /// Name.
    pub name: String,
    /// Kind and settings.
    pub kind: SinkKind,
    /// Retry horizon for triggers, from the first attempt.
    pub give_up_after: Duration,
}

impl SinkDef {
    /// Retry horizon for a notification of `action` (resolves: at least
    /// [`MIN_RESOLVE_GIVE_UP`]).
    pub fn give_up_after(&self, action: Action) -> Duration {
        if action == Action::Resolve {
            self.give_up_after.max(MIN_RESOLVE_GIVE_UP)
        } else {
            self.give_up_after
        }
    }
}

/// Sink kinds, each validated by its module ([`pagerduty::validate`],
/// [`webhook::validate`]); [`send`] is the one `match` over them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SinkKind {
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Routing key.
        routing_key: Secret,
        /// Base URL without the `/v2/enqueue` path.
        api_url: String,
        /// Rate limit per routing key.
        events_per_minute: u32,
    },
    /// JSON webhook.
    Webhook {
        /// URL.
        url: String,
        /// Headers (secret values already resolved).
        headers: Vec<(String, Secret)>,
    },
    /// Log line.
    Console,
    /// Slack message.
    Slack {
        /// Webhook or `chat.postMessage`.
        mode: slack::SlackMode,
        /// Rate limit per webhook URL or (token, channel).
        messages_per_minute: u32,
    },
    /// Opsgenie alert.
    Opsgenie {
        /// API key (`GenieKey`).
        api_key: Secret,
        /// Base URL without a trailing slash.
        api_url: String,
        /// Extra tags.
        tags: Vec<String>,
        /// Rate limit per API key.
        requests_per_minute: u32,
    },
    /// Email over SMTP.
    Email(Box<email::EmailSpec>),
}

impl SinkKind {
    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Console => "console",
            SinkKind::Slack { .. } => "slack",
            SinkKind::Opsgenie { .. } => "opsgenie",
            SinkKind::Email(_) => "email",
        }
    }

    /// The rate-limit bucket key (a secret: never logged) and its
    /// per-minute budget, for sinks whose API limits requests.
    pub fn rate_limit(&self) -> Option<(String, u32)> {
        match self {
            SinkKind::PagerDuty {
                routing_key,
                events_per_minute,
                ..
            } => Some((routing_key.expose().to_owned(), *events_per_minute)),
            SinkKind::Slack {
                mode: slack::SlackMode::Webhook { url },
                messages_per_minute,
            } => Some((format!("slack {}", url.expose()), *messages_per_minute)),
            SinkKind::Slack {
                mode: slack::SlackMode::PostMessage { token, channel, .. },
                messages_per_minute,
            } => Some((
                format!("slack {} {channel}", token.expose()),
                *messages_per_minute,
            )),
            SinkKind::Opsgenie {
                api_key,
                requests_per_minute,
                ..
            } => Some((
                format!("opsgenie {}", api_key.expose()),
                *requests_per_minute,
            )),
            SinkKind::Email(spec) => Some((
                format!("email {}:{} {}", spec.host, spec.port, spec.from),
                spec.messages_per_minute,
            )),
            SinkKind::Webhook { .. } | SinkKind::Console => None,
        }
    }

    /// Secret strings of the sink, scrubbed from excerpts.
    fn secrets(&self) -> Vec<&str> {
        match self {
            SinkKind::PagerDuty { routing_key, .. } => vec![routing_key.expose()],
            SinkKind::Webhook { url, headers } => std::iter::once(url.as_str())
                .chain(headers.iter().map(|(_, v)| v.expose()))
                .collect(),
            SinkKind::Slack {
                mode: slack::SlackMode::Webhook { url },
                ..
            } => vec![url.expose()],
            SinkKind::Slack {
                mode: slack::SlackMode::PostMessage { token, .. },
                ..
            } => vec![token.expose()],
            SinkKind::Opsgenie { api_key, .. } => vec![api_key.expose()],
            SinkKind::Email(spec) => spec.auth.iter().map(|(_, pw)| pw.expose()).collect(),
            SinkKind::Console => Vec::new(),
        }
    }
}

/// What a sink may need besides the event.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendContext<'a> {
    /// `server.external_url`: notifications link the dashboard under it.
    pub external_url: Option<&'a str>,
    /// This trigger follows one already delivered to this sink for the
    /// same alert (live content, escalation): Opsgenie adds a note.
    pub update: bool,
}

/// Validates `[[sinks]]`, collecting every problem under `sinks[i]`.
/// `{ env = … }` secrets are looked up in `vars`, then the process environment.
pub fn validate(raw: &[RawSink], vars: &[(String, String)], p: &mut Problems) -> Vec<SinkDef> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, raw) in raw.iter().enumerate() {
        let path = format!("sinks[{i}]");
        push_if_bad_id(p, format!("{path}.name"), "sink name", &raw.name);
        if !names.insert(raw.name.as_str()) {
            p.push(
                format!("{path}.name"),
                format!("duplicate sink name {:?}", raw.name),
            );
        }
        let count = [
            raw.pagerduty.is_some(),
            raw.slack.is_some(),
            raw.opsgenie.is_some(),
            raw.email.is_some(),
            raw.webhook.is_some(),
            raw.console.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if count != 1 {
            p.push(
                path.clone(),
                format!(
                    "a sink has exactly one of pagerduty, slack, opsgenie, email, webhook or console, found {count}: e.g. `pagerduty = {{ routing_key = {{ env = \"PD_ROUTING_KEY\" }} }}`"
                ),
            );
            continue;
        }
        let give_up_after = raw
            .give_up_after
            .map(Dur::get)
            .unwrap_or(DEFAULT_GIVE_UP_AFTER);
        if give_up_after < Duration::from_secs(60) {
            p.push(
                format!("{path}.give_up_after"),
                format!("give_up_after must be ≥ 1m, got \"{}\"", Dur(give_up_after)),
            );
        }
        let kind = if let Some(pd) = &raw.pagerduty {
            pagerduty::validate(pd, &path, vars, p)
        } else if let Some(s) = &raw.slack {
            slack::validate(s, &path, vars, p)
        } else if let Some(o) = &raw.opsgenie {
            opsgenie::validate(o, &path, vars, p)
        } else if let Some(e) = &raw.email {
            email::validate(e, &path, vars, p)
        } else if let Some(w) = &raw.webhook {
            Some(webhook::validate(w, &path, vars, p))
        } else {
            Some(SinkKind::Console)
        };
        if let Some(kind) = kind {
            out.push(SinkDef {
                name: raw.name.clone(),
                kind,
                give_up_after,
            });
        }
    }
    out
}

/// Deadline for one HTTP request to a sink, connect to last body byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Response bytes read at most.
const MAX_RESPONSE: usize = 64 * 1024;
/// Notifications handed out per round.
const BATCH: u32 = 64;
/// How long a replica holds the notifications it claimed before another
/// may deliver them (it died mid-delivery): well above one batch's sends,
/// which run concurrently, each bounded by its sink's timeout.
pub const CLAIM: Duration = Duration::from_secs(60);

/// Where a notification is in the outbox.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum NotificationState {
    /// Waiting for its (next) attempt.
    Pending,
    /// Accepted by the sink.
    Delivered,
    /// Rejected by the sink, or given up on.
    Failed,
}

impl NotificationState {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Delivered => "delivered",
            NotificationState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for NotificationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// How one recorded delivery attempt went (`notification_attempts.outcome`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Accepted by the sink.
    Delivered,
    /// Failed; will be retried.
    Retry,
    /// Refused by the sink (4xx other than 408/429) or not sendable: not retried.
    Rejected,
    /// Failed past the sink's `give_up_after`: not retried.
    GaveUp,
}

/// The most of an attempt's excerpt kept.
pub const EXCERPT_CHARS: usize = 300;

/// The HTTP status an error text starts with (`status 400: …`, as
/// [`HttpResponse::delivery`] writes it), if any.
pub fn status_of(error: &str) -> Option<u16> {
    let rest = error.strip_prefix("status ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `text` bounded to [`EXCERPT_CHARS`] with every secret of the sink (its
/// routing key, webhook URL and header values) replaced by `[redacted]`: a
/// sink that echoes the request must not put them in the store or the API.
pub fn excerpt(kind: Option<&SinkKind>, text: &str) -> String {
    let mut out = text.to_owned();
    let secrets = kind.map(SinkKind::secrets).unwrap_or_default();
    for secret in secrets.into_iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    let cut: String = out.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < out.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the sink.
    Sent,
    /// Worth retrying (timeout, 429, 5xx, connection failure).
    Retry {
        /// What happened.
        error: String,
        /// The sink's `Retry-After`, if any.
        after: Option<Duration>,
    },
    /// The sink refused the request itself (4xx other than 408/429).
    Reject {
        /// What happened.
        error: String,
    },
}

/// HTTP client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The URL is not absolute http(s). (Not shown: webhook URLs can carry tokens.)
    #[error("invalid url (check the sink's url in the config)")]
    InvalidUrl,
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS setup or handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// Building the request failed.
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// No complete response in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// A response from a sink.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Retry-After` (seconds or HTTP-date), if sent.
    pub retry_after: Option<Duration>,
    /// Body (lossy UTF-8, capped).
    pub body: String,
}

impl HttpResponse {
    /// Classifies the response: 2xx sent; 408, 429, 5xx retry; other 4xx reject.
    pub fn delivery(&self) -> Delivery {
        let snippet = crate::alerting::truncate(self.body.trim(), 200);
        match self.status {
            200..=299 => Delivery::Sent,
            408 | 429 | 500..=599 => Delivery::Retry {
                error: format!("status {}: {snippet}", self.status),
                after: self.retry_after,
            },
            s => Delivery::Reject {
                error: format!("status {s}: {snippet}"),
            },
        }
    }
}

impl From<SendError> for Delivery {
    fn from(e: SendError) -> Delivery {
        match e {
            SendError::InvalidUrl | SendError::Request(_) => Delivery::Reject {
                error: e.to_string(),
            },
            _ => Delivery::Retry {
                error: e.to_string(),
                after: None,
            },
        }
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, SendError> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SendError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

/// POSTs `body` (JSON) to `url` within [`REQUEST_TIMEOUT`] and classifies
/// the answer: `judge` for a response (usually [`HttpResponse::delivery`]),
/// a transport failure as [`Delivery::from`]. The one send tail of every
/// HTTP sink.
pub async fn post_event(
    url: &str,
    headers: &[(String, Secret)],
    body: &serde_json::Value,
    judge: impl FnOnce(&HttpResponse) -> Delivery,
) -> Delivery {
    match post_json(url, headers, body.to_string().into_bytes(), REQUEST_TIMEOUT).await {
        Ok(resp) => judge(&resp),
        Err(e) => e.into(),
    }
}

/// POSTs a JSON body to `url` on a fresh connection, within `timeout`.
pub async fn post_json(
    url: &str,
    headers: &[(String, Secret)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, SendError> {
    tokio::time::timeout(timeout, post(url, headers, body))
        .await
        .map_err(|_| SendError::Timeout(timeout))?
}

async fn post(
    url: &str,
    headers: &[(String, Secret)],
    body: Vec<u8>,
) -> Result<HttpResponse, SendError> {
    let uri: Uri = url.parse().map_err(|_| SendError::InvalidUrl)?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(SendError::InvalidUrl),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| SendError::InvalidUrl)?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = Request::post(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("outpost-controller/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        req = req.header(name.as_str(), value.expose());
    }
    let req = req.body(Full::new(Bytes::from(body)))?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| SendError::Connect {
            addr: format!("{host}:{port}"),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    if https {
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| SendError::Tls(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Tls(e.to_string()))?;
        exchange(TokioIo::new(tls), req).await
    } else {
        exchange(TokioIo::new(tcp), req).await
    }
}

async fn exchange<I>(io: I, req: Request<Full<Bytes>>) -> Result<HttpResponse, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        let body = match Limited::new(resp.into_body(), MAX_RESPONSE).collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(e) => format!("(body not read: {e})"),
        };
        Ok::<_, SendError>(HttpResponse {
            status,
            retry_after,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (IMF-fixdate, e.g.
/// `Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`; capped at
/// [`MAX_RETRY_AFTER`]. A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let now = time::OffsetDateTime::from(now);
    let delta = at - now;
    Some(
        Duration::try_from(delta)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Delay before attempt `attempts + 1`: 1 s doubling up to [`MAX_BACKOFF`],
/// scaled into [50 %, 100 %] by `seed`, and never less than `retry_after`.
pub fn retry_delay(attempts: u32, retry_after: Option<Duration>, seed: u64) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    let cap = Duration::from_secs(1)
        .saturating_mul(1u32 << exp)
        .min(MAX_BACKOFF);
    let frac = 0.5 + (seed % 1000) as f64 / 2000.0;
    let delay = cap.mul_f64(frac);
    delay.max(retry_after.unwrap_or_default())
}

/// Drains the outbox until `shutdown`; woken early by [`Controller::wake_delivery`]
/// and when a manual clock moves (a retry falls due when the test says so).
pub async fn run_delivery(ctl: Controller, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut moved = ctl.clock().moved();
    loop {
        let wait = match deliver_due(&ctl).await {
            Ok(()) => next_wait(&ctl).await,
            Err(e) => {
                tracing::error!(error = %e, "notification outbox unavailable; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = ctl.delivery_wakeup().notified() => {}
            _ = moved.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}

async fn next_wait(ctl: &Controller) -> Duration {
    match ctl.store().next_notification_due().await {
        Ok(Some(due)) => Duration::from_millis(
            u64::try_from(due - ctl.now_ms())
                .unwrap_or(0)
                .clamp(10, 1000),
        ),
        _ => Duration::from_secs(1),
    }
}

async fn deliver_due(ctl: &Controller) -> Result<(), crate::store::StoreError> {
    loop {
        let now = ctl.now_ms();
        let due = ctl
            .store()
            .claim_notifications(now, BATCH, now.saturating_add(ms(CLAIM)))
            .await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut set = tokio::task::JoinSet::new();
        for n in due {
            let ctl = ctl.clone();
            set.spawn(async move { deliver_one(&ctl, n).await });
        }
        let mut progressed = false;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(done)) => progressed |= done,
                Ok(Err(e)) => return Err(e),
                Err(e) => tracing::error!(error = %e, "delivery task panicked"),
            }
        }
        if !progressed {
            return Ok(());
        }
    }
}

/// One attempt. Returns true when the notification left the pending state.
async fn deliver_one(ctl: &Controller, n: Notification) -> Result<bool, crate::store::StoreError> {
    let cfg = ctl.config();
    let store = ctl.store();
    let sink = n.sink.as_str();
    let count = |outcome: &str| {
        ctl.metrics().inc(
            "outpost_notifications_total",
            &[("sink", sink), ("outcome", outcome)],
            1,
        );
    };
    let def = cfg.sink(&n.sink);
    if let Some((bucket, per_minute)) = def.and_then(|d| d.kind.rate_limit()) {
        let now = ctl.now_ms();
        if let Err(wait_ms) = ctl.limiter().try_take(&bucket, per_minute, now) {
            store.defer_notification(n.id, now + wait_ms).await?;
            count("rate_limited");
            tracing::debug!(sink, action = %n.action, dedup_key = %n.dedup_key, wait_ms, "notification postponed by the sink's rate limit");
            return Ok(false);
        }
    }
    let attempts = n.attempts + 1;
    let trace = ctl.telemetry().begin_operation();
    let (start, timer) = (std::time::SystemTime::now(), std::time::Instant::now());
    let event = AlertEvent::from_outbox(&n);
    let outcome = match (def, event) {
        (None, _) => Delivery::Reject {
            error: format!("sink {:?} is no longer configured", n.sink),
        },
        (_, None) => Delivery::Reject {
            error: "stored payload does not parse".into(),
        },
        (Some(sink), Some(event)) => {
            let update = match (n.action, n.alert_id) {
                (Action::Trigger, Some(alert_id)) => {
                    store
                        .trigger_delivered_before(alert_id, &n.sink, n.id)
                        .await?
                }
                // A group's update says so itself (its rows have no alert).
                (Action::Trigger, None) => super::group::is_update(&event),
                _ => false,
            };
            let ctx = SendContext {
                external_url: cfg.external_url.as_deref(),
                update,
            };
            send(&sink.kind, &sink.name, &event, &ctx).await
        }
    };
    let now = ctl.now_ms();
    let kind = def.map(|d| &d.kind);
    if let Some(trace) = trace {
        delivery_span(ctl, trace, &n, attempts, &outcome, kind, (start, timer));
    }
    let attempt = |outcome, error: &str| (outcome, status_of(error), excerpt(kind, error));
    match outcome {
        Delivery::Sent => {
            let a = (AttemptOutcome::Delivered, None, String::new());
            store
                .mark_delivered(n.id, attempts, &record(sink, &a), now)
                .await?;
            count("sent");
            tracing::debug!(sink, action = %n.action, dedup_key = %n.dedup_key, attempts, "notification delivered");
            Ok(true)
        }
        Delivery::Retry { error, after } => {
            let horizon = def.map(|d| d.give_up_after(n.action)).unwrap_or_default();
            let first = n.first_attempt_ms.unwrap_or(now);
            let seed = outpost_probe::scheduler::fnv1a(&[
                &n.id.to_string(),
                &attempts.to_string(),
                &now.to_string(),
            ]);
            let delay = retry_delay(attempts, after, seed);
            let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            if now.saturating_sub(first) >= ms(horizon) {
                let a = attempt(AttemptOutcome::GaveUp, &error);
                store
                    .mark_failed(n.id, attempts, &record(sink, &a), now)
                    .await?;
                count("failed");
                tracing::warn!(sink, action = %n.action, dedup_key = %n.dedup_key, attempts, give_up_after_s = horizon.as_secs(), error = %error, "notification given up");
                return Ok(true);
            }
            let a = attempt(AttemptOutcome::Retry, &error);
            store
                .mark_retry(n.id, attempts, next, &record(sink, &a), now)
                .await?;
            count("retried");
            tracing::warn!(sink, action = %n.action, dedup_key = %n.dedup_key, attempts, delay_ms = delay.as_millis() as u64, error = %error, "notification will be retried");
            Ok(false)
        }
        Delivery::Reject { error } => {
            let a = attempt(AttemptOutcome::Rejected, &error);
            store
                .mark_failed(n.id, attempts, &record(sink, &a), now)
                .await?;
            count("rejected");
            tracing::warn!(sink, action = %n.action, dedup_key = %n.dedup_key, attempts, error = %error, "sink rejected the notification; not retrying");
            Ok(true)
        }
    }
}

/// One delivery attempt as a trace (`notification delivery`, a client
/// span): sink, action, attempt, result (`sent`, `retry`, `rejected`), the
/// HTTP status the sink answered; status error unless sent.
fn delivery_span(
    ctl: &Controller,
    trace: outpost_probe::telemetry::TraceHandle,
    n: &Notification,
    attempts: u32,
    outcome: &Delivery,
    kind: Option<&SinkKind>,
    (start, timer): (std::time::SystemTime, std::time::Instant),
) {
    use outpost_probe::telemetry::{KeyValue, SpanKind};
    let (result, error) = match outcome {
        Delivery::Sent => ("sent", None),
        Delivery::Retry { error, .. } => ("retry", Some(error.as_str())),
        Delivery::Reject { error } => ("rejected", Some(error.as_str())),
    };
    let mut attrs = vec![
        KeyValue::new("outpost.sink", n.sink.clone()),
        KeyValue::new("outpost.notification.action", n.action.to_string()),
        KeyValue::new("outpost.notification.attempt", i64::from(attempts)),
        KeyValue::new("outpost.delivery.result", result),
    ];
    if let Some(s) = error.and_then(status_of) {
        attrs.push(KeyValue::new("http.response.status_code", i64::from(s)));
    }
    if error.is_some() {
        attrs.push(KeyValue::new("error.type", result));
    }
    // Scrubbed of the sink's secrets and bounded like an attempt's excerpt.
    let description = error.map(|e| excerpt(kind, e));
    ctl.telemetry().record_operation(
        trace,
        SpanKind::Client,
        "notification delivery",
        start,
        start + timer.elapsed(),
        attrs,
        description.as_deref(),
    );
}

/// The attempt row of an outcome, status and excerpt.
fn record<'a>(
    sink: &'a str,
    (outcome, status, text): &'a (AttemptOutcome, Option<u16>, String),
) -> crate::store::Attempt<'a> {
    crate::store::Attempt {
        sink,
        outcome: *outcome,
        status: *status,
        excerpt: text.as_str(),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Sends one event through one sink. The one `match` over sink kinds.
pub async fn send(
    kind: &SinkKind,
    sink_name: &str,
    event: &AlertEvent,
    ctx: &SendContext<'_>,
) -> Delivery {
    match kind {
        SinkKind::PagerDuty {
            routing_key,
            api_url,
            ..
        } => pagerduty::send(api_url, routing_key, event).await,
        SinkKind::Webhook { url, headers } => webhook::send(url, headers, event).await,
        SinkKind::Console => console::send(sink_name, event),
        SinkKind::Slack { mode, .. } => slack::send(mode, event, ctx).await,
        SinkKind::Opsgenie {
            api_key,
            api_url,
            tags,
            ..
        } => opsgenie::send(api_url, api_key, tags, event, ctx).await,
        SinkKind::Email(spec) => email::send(spec, event, ctx).await,
    }
}

/// The event every sink's unit tests start from: check `api` failing
/// from 2 of 3 regions with `timeout`, critical; each test module changes
/// what it looks at with struct update syntax.
#[cfg(test)]
pub(crate) fn test_event(action: Action) -> AlertEvent {
    AlertEvent {
        action,
        dedup_key: "outpost/api/check_failing".into(),
        check_id: "api".into(),
        probe: None,
        kind: super::AlertKind::CheckFailing.into(),
        summary: "api failing from 2 of 3 regions (eu-west, us-east): timeout".into(),
        severity: super::Severity::Critical,
        regions: vec!["eu-west".into(), "us-east".into()],
        code: "timeout".into(),
        details: serde_json::json!({ "check_kind": "http" }),
        at_ms: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_caps_and_honours_retry_after() {
        assert!(retry_delay(1, None, 0) >= Duration::from_millis(500));
        assert!(retry_delay(1, None, 999) <= Duration::from_secs(1));
        assert!(retry_delay(4, None, 0) >= Duration::from_secs(4));
        assert!(retry_delay(40, None, 999) <= MAX_BACKOFF);
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(30)), 0),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn excerpts_are_bounded_and_scrubbed_and_name_their_status() {
        let kind = SinkKind::PagerDuty {
            routing_key: Secret::new("R0UT1NGKEY-SECRET"),
            api_url: "http://127.0.0.1:1".into(),
            events_per_minute: 60,
        };
        let text = "status 400: {\"routing_key\":\"R0UT1NGKEY-SECRET\"}";
        assert_eq!(
            excerpt(Some(&kind), text),
            "status 400: {\"routing_key\":\"[redacted]\"}"
        );
        assert_eq!(status_of(text), Some(400));
        assert_eq!(status_of("connect to 127.0.0.1:1: refused"), None);
        let long = "é".repeat(EXCERPT_CHARS + 10);
        assert_eq!(excerpt(None, &long).chars().count(), EXCERPT_CHARS + 3);
    }

    #[test]
    fn statuses_are_classified() {
        let r = |status| {
            HttpResponse {
                status,
                retry_after: None,
                body: String::new(),
            }
            .delivery()
        };
        assert_eq!(r(202), Delivery::Sent);
        assert!(matches!(r(429), Delivery::Retry { .. }));
        assert!(matches!(r(503), Delivery::Retry { .. }));
        assert!(matches!(r(400), Delivery::Reject { .. }));
        assert!(matches!(r(403), Delivery::Reject { .. }));
    }

    #[tokio::test]
    async fn unreachable_sink_is_a_retry() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = post_json(
            &format!("http://{addr}/x"),
            &[],
            b"{}".to_vec(),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(matches!(Delivery::from(err), Delivery::Retry { .. }));
    }
}
