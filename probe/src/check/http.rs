//! The `http` check kind: one request on a fresh connection, with exact phase
//! timings (dns → connect → tls → first byte), bounded reads, and the status
//! checked against an expected set. A 3xx is recorded with its Location; when
//! the expected set does not include it, the run fails with
//! `redirect_not_followed` — what a machine client that does not follow
//! redirects experiences (the IOT 308 incident).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::{Failure, FailureCode, KindResult, Phases, RunContext};
use crate::{
    config::Problems,
    tls::{self, Trust},
};

/// Bytes of body read at most; more fails the run with `body_too_large`.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// `[checks.http]` as written in config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Absolute `http://` or `https://` URL. Example: `"https://api.example.com/health"`.
    pub url: String,
    /// Request method. Default `"GET"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra request headers. `Host` is derived from the URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (sent as is; set `content-type` in `headers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Statuses that pass: numbers (`200`) or classes/ranges as strings
    /// (`"2xx"`, `"200-299"`). Default `["2xx"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<Vec<StatusMatch>>,
    /// PEM bundle of roots to trust for https instead of the bundled Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `"first"` (default): request the first resolved address, like most
    /// clients. `"all"`: request every A/AAAA address separately, with the
    /// URL's name as SNI and Host — one broken backend behind a load-balanced
    /// name fails the check and is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<AddressMode>,
    /// With `addresses = "all"`: `"all"` (default) fails the check when any
    /// address fails; `"any"` fails it only when every address fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passing: Option<Passing>,
    /// IP addresses to use for the URL's host instead of DNS (like curl's
    /// `--resolve`); SNI and Host still carry the name. Example: `["10.0.0.5", "10.0.0.6"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolve_to: Vec<String>,
}

/// Which resolved addresses a check requests.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AddressMode {
    /// The first address only.
    #[default]
    First,
    /// Every address, separately.
    All,
}

/// How many addresses must pass with `addresses = "all"`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Passing {
    /// Every address.
    #[default]
    All,
    /// At least one address.
    Any,
}

/// One entry of `expected_status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum StatusMatch {
    /// Exactly this status.
    Code(u16),
    /// `"2xx"` or `"200-299"`.
    Range(String),
}

/// A validated http check.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// The URL as written.
    pub url: String,
    /// Parsed URL.
    pub uri: Uri,
    /// `true` for https.
    pub https: bool,
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// Port (default by scheme).
    pub port: u16,
    /// Method.
    pub method: http::Method,
    /// Extra headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Request body.
    pub body: Option<Bytes>,
    /// Inclusive status ranges that pass.
    pub expected: Vec<(u16, u16)>,
    /// Roots for https.
    pub trust: Trust,
    /// First address or all.
    pub addresses: AddressMode,
    /// With all addresses: how many must pass.
    pub passing: Passing,
    /// Addresses replacing DNS for the host.
    pub resolve_to: Vec<IpAddr>,
}

impl RawHttp {
    /// Validates; problems are recorded under `path` (`checks[0].http`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<HttpSpec> {
        let before = problems.len();
        let uri: Option<Uri> = match self.url.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Some(u)
            }
            _ => {
                problems.push(
                    format!("{path}.url"),
                    format!(
                        "invalid url {:?}: use an absolute http:// or https:// URL",
                        self.url
                    ),
                );
                None
            }
        };
        let method = match self
            .method
            .as_deref()
            .unwrap_or("GET")
            .parse::<http::Method>()
        {
            Ok(m) => Some(m),
            Err(_) => {
                problems.push(
                    format!("{path}.method"),
                    format!("invalid method {:?}", self.method),
                );
                None
            }
        };
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            match (
                http::HeaderName::try_from(k.as_str()),
                http::HeaderValue::try_from(v.as_str()),
            ) {
                (Ok(n), Ok(v)) if n != http::header::HOST => headers.push((n, v)),
                (Ok(_), Ok(_)) => problems.push(
                    format!("{path}.headers.{k}"),
                    "the Host header comes from the url; remove it",
                ),
                _ => problems.push(
                    format!("{path}.headers.{k}"),
                    format!("invalid header {k:?}"),
                ),
            }
        }
        let mut expected = Vec::new();
        for (i, m) in self
            .expected_status
            .clone()
            .unwrap_or_else(|| vec![StatusMatch::Range("2xx".into())])
            .iter()
            .enumerate()
        {
            match parse_status_match(m) {
                Ok(r) => expected.push(r),
                Err(e) => problems.push(format!("{path}.expected_status[{i}]"), e),
            }
        }
        if let Some(p) = &self.ca_file
            && let Err(e) = tls::read_pem_certs(p)
        {
            problems.push(format!("{path}.ca_file"), e);
        }
        let mut resolve_to = Vec::new();
        for (i, ip) in self.resolve_to.iter().enumerate() {
            match ip
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                Ok(ip) => resolve_to.push(ip),
                Err(_) => problems.push(
                    format!("{path}.resolve_to[{i}]"),
                    format!("invalid IP address {ip:?}, e.g. \"192.0.2.10\" or \"2001:db8::1\""),
                ),
            }
        }
        if problems.len() != before {
            return None;
        }
        let uri = uri?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(HttpSpec {
            url: self.url.clone(),
            uri,
            https,
            host,
            port,
            method: method?,
            headers,
            body: self.body.clone().map(Bytes::from),
            expected,
            trust: self
                .ca_file
                .clone()
                .map(Trust::CaFile)
                .unwrap_or(Trust::Mozilla),
            addresses: self.addresses.unwrap_or_default(),
            passing: self.passing.unwrap_or_default(),
            resolve_to,
        })
    }
}

fn parse_status_match(m: &StatusMatch) -> Result<(u16, u16), String> {
    let bad = |s: &str| {
        format!(
            "invalid status {s:?}: use a number (200), a class (\"2xx\") or a range (\"200-299\")"
        )
    };
    match m {
        StatusMatch::Code(c) if (100..=599).contains(c) => Ok((*c, *c)),
        StatusMatch::Code(c) => Err(bad(&c.to_string())),
        StatusMatch::Range(s) => {
            let t = s.trim().to_ascii_lowercase();
            if let Some(d) = t.strip_suffix("xx")
                && let Ok(d) = d.parse::<u16>()
                && (1..=5).contains(&d)
            {
                return Ok((d * 100, d * 100 + 99));
            }
            if let Some((a, b)) = t.split_once('-')
                && let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>())
                && (100..=599).contains(&a)
                && (a..=599).contains(&b)
            {
                return Ok((a, b));
            }
            Err(bad(s))
        }
    }
}

impl HttpSpec {
    fn status_ok(&self, status: u16) -> bool {
        self.expected
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&status))
    }

    fn expected_text(&self) -> String {
        let parts: Vec<String> = self
            .expected
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else if b - a == 99 && a % 100 == 0 {
                    format!("{}xx", a / 100)
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        parts.join(", ")
    }
}

/// The phase in progress, for timeout messages.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Connect,
    Tls,
    FirstByte,
    Body,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::FirstByte => "first byte",
            Phase::Body => "body",
        }
    }
}

/// One request against one address.
struct Attempt<'a> {
    spec: &'a HttpSpec,
    addr: SocketAddr,
    phases: Phases,
    phase: Phase,
    details: serde_json::Map<String, serde_json::Value>,
}

/// Runs the check once within `timeout`.
pub async fn run(spec: &HttpSpec, timeout: Duration, ctx: &RunContext) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut details = serde_json::Map::new();
    details.insert("url".into(), spec.url.clone().into());
    details.insert("method".into(), spec.method.as_str().into());
    let mut phases = Phases::default();

    let (addrs, dns) = match tokio::time::timeout_at(deadline, resolve(spec)).await {
        Ok(Ok(r)) => r,
        Ok(Err(f)) => {
            return KindResult {
                phases,
                result: Err(f),
                details: details.into(),
            };
        }
        Err(_) => {
            details.insert("timeout_phase".into(), "dns".into());
            let f = Failure::new(
                FailureCode::Timeout,
                format!(
                    "timed out after {} resolving {}",
                    crate::config::Dur(timeout),
                    spec.host
                ),
            );
            return KindResult {
                phases,
                result: Err(f),
                details: details.into(),
            };
        }
    };
    phases.dns = dns;

    if addrs.len() == 1 {
        let a = attempt(spec, addrs[0], deadline, timeout, ctx).await;
        details.extend(a.details);
        let p = Phases { dns, ..a.phases };
        return KindResult {
            phases: p,
            result: a.result,
            details: details.into(),
        };
    }

    // Fan-out: every address separately, concurrently, same SNI and Host.
    let runs = addrs
        .iter()
        .map(|a| attempt(spec, *a, deadline, timeout, ctx));
    let done = futures_util::future::join_all(runs).await;
    let failing: Vec<&AttemptResult> = done.iter().filter(|a| a.result.is_err()).collect();
    let mut backends = Vec::with_capacity(done.len());
    for a in &done {
        let mut b = a.details.clone();
        b.insert("ok".into(), a.result.is_ok().into());
        if let Err(f) = &a.result {
            b.insert("failure_code".into(), f.code.as_str().into());
            b.insert("failure_message".into(), f.message.clone().into());
        }
        b.insert(
            "phases_us".into(),
            serde_json::to_value(a.phases).unwrap_or_default(),
        );
        backends.push(serde_json::Value::Object(b));
    }
    details.insert("addresses".into(), backends.into());
    details.insert("addresses_total".into(), done.len().into());
    details.insert("addresses_failing".into(), failing.len().into());
    if let Some(first) = done.first() {
        phases = Phases {
            dns,
            ..first.phases
        };
    }
    let must_fail = match spec.passing {
        Passing::All => !failing.is_empty(),
        Passing::Any => failing.len() == done.len(),
    };
    let first_failure = failing.iter().find_map(|a| a.result.as_ref().err());
    let result = match first_failure {
        Some(first) if must_fail => {
            let named: Vec<String> = failing
                .iter()
                .filter_map(|a| {
                    a.result
                        .as_ref()
                        .err()
                        .map(|e| format!("{} {} ({})", a.addr, e.code, e.message))
                })
                .collect();
            Err(Failure::new(
                first.code,
                format!(
                    "{} of {} backends failing: {}",
                    failing.len(),
                    done.len(),
                    named.join("; ")
                ),
            ))
        }
        _ => Ok(()),
    };
    KindResult {
        phases,
        result,
        details: details.into(),
    }
}

/// Addresses to try and the time DNS took (None for IP literals and overrides).
async fn resolve(spec: &HttpSpec) -> Result<(Vec<SocketAddr>, Option<Duration>), Failure> {
    if !spec.resolve_to.is_empty() {
        let all = spec
            .resolve_to
            .iter()
            .map(|ip| SocketAddr::new(*ip, spec.port));
        return Ok((pick(spec, all.collect()), None));
    }
    if let Ok(ip) = spec.host.parse::<IpAddr>() {
        return Ok((vec![SocketAddr::new(ip, spec.port)], None));
    }
    let t = Instant::now();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((spec.host.as_str(), spec.port))
        .await
        .map_err(|e| {
            Failure::new(
                FailureCode::DnsFailure,
                format!("cannot resolve {}: {e}", spec.host),
            )
        })?
        .collect();
    let dns = t.elapsed();
    if addrs.is_empty() {
        return Err(Failure::new(
            FailureCode::DnsFailure,
            format!("{} has no addresses", spec.host),
        ));
    }
    Ok((pick(spec, addrs), Some(dns)))
}

fn pick(spec: &HttpSpec, mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    if spec.addresses == AddressMode::First {
        addrs.truncate(1);
    }
    addrs
}

struct AttemptResult {
    addr: SocketAddr,
    phases: Phases,
    result: Result<(), Failure>,
    details: serde_json::Map<String, serde_json::Value>,
}

async fn attempt(
    spec: &HttpSpec,
    addr: SocketAddr,
    deadline: tokio::time::Instant,
    timeout: Duration,
    ctx: &RunContext,
) -> AttemptResult {
    let mut a = Attempt {
        spec,
        addr,
        phases: Phases::default(),
        phase: Phase::Connect,
        details: serde_json::Map::new(),
    };
    a.details.insert("address".into(), addr.to_string().into());
    let t = Instant::now();
    let result = match tokio::time::timeout_at(deadline, a.execute(ctx)).await {
        Ok(res) => res,
        Err(_) => {
            a.details
                .insert("timeout_phase".into(), a.phase.name().into());
            Err(Failure::new(
                FailureCode::Timeout,
                format!(
                    "timed out after {} waiting for {}",
                    crate::config::Dur(timeout),
                    a.phase.name()
                ),
            ))
        }
    };
    a.phases.total = t.elapsed();
    AttemptResult {
        addr,
        phases: a.phases,
        result,
        details: a.details,
    }
}

impl Attempt<'_> {
    async fn execute(&mut self, ctx: &RunContext) -> Result<(), Failure> {
        let spec = self.spec;
        let addr = self.addr;

        // connect
        self.phase = Phase::Connect;
        let t = Instant::now();
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| classify_connect(&e, addr))?;
        self.phases.connect = Some(t.elapsed());
        let _ = tcp.set_nodelay(true);

        let (status, headers, version) = if spec.https {
            self.phase = Phase::Tls;
            let cfg = tls::client_config(&spec.trust, &[b"h2", b"http/1.1"])
                .map_err(|e| Failure::new(FailureCode::InternalError, e))?;
            let name = rustls_pki_types::ServerName::try_from(spec.host.clone()).map_err(|e| {
                Failure::new(
                    FailureCode::InternalError,
                    format!("invalid server name: {e}"),
                )
            })?;
            let t = Instant::now();
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| tls::classify(&e))?;
            self.phases.tls = Some(t.elapsed());
            let (_, conn) = stream.get_ref();
            let h2 = conn.alpn_protocol() == Some(b"h2");
            self.details.insert(
                "tls".into(),
                serde_json::json!({
                    "version": conn.protocol_version().map(|v| format!("{v:?}")),
                    "cipher": conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())),
                    "alpn": conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
                    "chain_length": conn.peer_certificates().map(|c| c.len()),
                }),
            );
            self.exchange(TokioIo::new(stream), h2, ctx).await?
        } else {
            self.exchange(TokioIo::new(tcp), false, ctx).await?
        };
        self.details
            .insert("http_version".into(), format!("{version:?}").into());
        self.details.insert("status".into(), status.as_u16().into());
        let location = headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(loc) = &location {
            let resolved = resolve_location(&spec.uri, loc);
            self.details.insert("location".into(), resolved.into());
        }

        let code = status.as_u16();
        if spec.status_ok(code) {
            return Ok(());
        }
        if status.is_redirection()
            && let Some(loc) = location
        {
            return Err(Failure::new(
                FailureCode::RedirectNotFollowed,
                format!(
                    "got {} {} to {} where {} was expected: a client that does not follow redirects stops here",
                    code,
                    status.canonical_reason().unwrap_or(""),
                    resolve_location(&spec.uri, &loc),
                    spec.expected_text()
                ),
            ));
        }
        Err(Failure::new(
            FailureCode::UnexpectedStatus,
            format!("got status {code}, expected {}", spec.expected_text()),
        ))
    }

    async fn exchange<IO>(
        &mut self,
        io: IO,
        h2: bool,
        ctx: &RunContext,
    ) -> Result<(http::StatusCode, http::HeaderMap, http::Version), Failure>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let spec = self.spec;
        let authority = spec
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let path = spec.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = Request::builder().method(spec.method.clone());
        if h2 {
            req = req.uri(spec.uri.clone()).version(http::Version::HTTP_2);
        } else {
            req = req.uri(path).header(http::header::HOST, authority);
        }
        req = req
            .header(
                http::header::USER_AGENT,
                concat!("outpost-probe/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-outpost-probe", ctx.probe_name.as_str())
            .header("x-outpost-region", ctx.region.as_str());
        for (k, v) in &spec.headers {
            req = req.header(k, v);
        }
        let body = spec.body.clone().unwrap_or_default();
        let req = req.body(Full::new(body)).map_err(|e| {
            Failure::new(
                FailureCode::InternalError,
                format!("cannot build request: {e}"),
            )
        })?;

        self.phase = Phase::FirstByte;
        let t = Instant::now();
        // The connection task dies with this guard, so nothing outlives the run.
        let (resp, _guard) = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| classify_hyper(&e))?;
            let guard = AbortOnDrop(tokio::spawn(async move {
                let _ = conn.await;
            }));
            (
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify_hyper(&e))?,
                guard,
            )
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                .handshake(io)
                .await
                .map_err(|e| classify_hyper(&e))?;
            let guard = AbortOnDrop(tokio::spawn(async move {
                let _ = conn.await;
            }));
            (
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify_hyper(&e))?,
                guard,
            )
        };
        self.phases.first_byte = Some(t.elapsed());

        self.phase = Phase::Body;
        let (parts, mut body) = resp.into_parts();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| classify_hyper(&e))?;
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > DEFAULT_MAX_BODY {
                    self.details.insert("body_bytes_read".into(), read.into());
                    return Err(Failure::new(
                        FailureCode::BodyTooLarge,
                        format!("body exceeds the {DEFAULT_MAX_BODY}-byte cap"),
                    ));
                }
            }
        }
        self.details.insert("body_bytes".into(), read.into());
        Ok((parts.status, parts.headers, parts.version))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves a Location header against the request URL (RFC 3986 reference
/// resolution for the common forms: absolute, scheme-relative, absolute path,
/// relative path).
pub fn resolve_location(base: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    format!("{scheme}://{authority}{dir}/{location}")
}

fn classify_connect(e: &std::io::Error, addr: SocketAddr) -> Failure {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Failure::new(
            FailureCode::ConnectionRefused,
            format!("connection to {addr} refused"),
        ),
        _ => Failure::new(
            FailureCode::ConnectFailure,
            format!("cannot connect to {addr}: {e}"),
        ),
    }
}

fn classify_hyper(e: &hyper::Error) -> Failure {
    if e.is_parse_too_large() {
        return Failure::new(
            FailureCode::HeadersTooLarge,
            "response headers exceed the size cap",
        );
    }
    if e.is_parse() || e.is_parse_status() {
        return Failure::new(
            FailureCode::ProtocolError,
            format!("invalid HTTP response: {e}"),
        );
    }
    if e.is_incomplete_message() {
        return Failure::new(
            FailureCode::ProtocolError,
            "connection closed before the response was complete",
        );
    }
    let mut msg = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    Failure::new(FailureCode::ProtocolError, msg)
}

/// Shared so the cached TLS config type is nameable by callers.
pub type ClientConfig = Arc<rustls::ClientConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_matches_parse() {
        assert_eq!(parse_status_match(&StatusMatch::Code(200)), Ok((200, 200)));
        assert_eq!(
            parse_status_match(&StatusMatch::Range("2xx".into())),
            Ok((200, 299))
        );
        assert_eq!(
            parse_status_match(&StatusMatch::Range("301-308".into())),
            Ok((301, 308))
        );
        assert!(parse_status_match(&StatusMatch::Range("6xx".into())).is_err());
        assert!(parse_status_match(&StatusMatch::Code(42)).is_err());
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base: Uri = "http://a.test:8080/x/y?q=1".parse().unwrap();
        assert_eq!(
            resolve_location(&base, "https://b.test/z"),
            "https://b.test/z"
        );
        assert_eq!(resolve_location(&base, "//c.test/z"), "http://c.test/z");
        assert_eq!(resolve_location(&base, "/z"), "http://a.test:8080/z");
        assert_eq!(resolve_location(&base, "z"), "http://a.test:8080/x/z");
    }
}
