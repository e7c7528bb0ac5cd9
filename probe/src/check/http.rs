//! The `http` check kind: requests on fresh connections with exact phase
//! timings (dns → connect → tls → first byte), a redirect policy
//! ([`super::redirect`]), assertions ([`super::assertion`]), every address
//! behind a name, repeated samples, and hard limits against hostile targets.
//!
//! A run is `addresses × samples` chains. Each address (one, or every A/AAAA
//! record with `addresses = "all"`) runs `samples` chains in turn; addresses
//! run concurrently. One deadline (the check's `timeout`) covers the whole
//! run: every hop, every sample, every slow body. Memory is bounded by
//! `max_body` per address in flight (bodies are kept only when an assertion
//! reads them; redirect bodies are never read).
//!
//! Without `follow_redirects`, a 3xx outside `expected_status` fails with
//! `redirect_not_followed` and names the status and Location — what a machine
//! client that does not follow redirects experiences (the IOT 308 incident).
//!
//! # `details` (the result's JSON, read by the controller and the page)
//! The typed value is [`Observed`] ([`observed`]): hops are
//! [`exchange::Hop`] with [`exchange::TlsInfo`], assertions
//! [`super::assertion::AssertionResult`], samples [`observed::SampleRecord`]
//! and [`observed::SamplesSummary`], addresses [`observed::AddressRecord`];
//! the final-hop fields are [`observed::FinalHop`], flattened.
//! ```text
//! url, method              the check's request
//! address, status, location, http_version, tls, body_bytes, timeout_phase, age_seconds
//!                          flattened from the final hop of the representative
//!                          sample (the first failing one, else the first);
//!                          timeout_phase "dns" alone when resolving timed out
//! chain, assertions         present once a request was made (assertions may be [])
//! chain: [ {               one entry per hop of that sample, in order
//!   url, method,           the URL requested and the method actually used
//!   scheme,                "http" | "https"
//!   address,               "ip:port" connected to
//!   body_kept,             the check's body was sent on this hop (absent: no body)
//!   credentials_dropped,   true when Authorization/Cookie were withheld (cross-origin)
//!   status, location,      the response status and its Location, resolved
//!   http_version,          "HTTP/1.1" | "HTTP/2.0"
//!   tls: { version, cipher, alpn, chain_length, verified, error,
//!          leaf_not_after (RFC 3339), leaf_days_left },   https hops only
//!   body_bytes, phases_us: { dns, connect, tls, first_byte, total },
//!   violations: [code…],   redirect rules this hop's answer breaks
//!   timeout_phase, error   where the deadline hit / this hop's failure code
//! } ]
//! assertions: [ { name, kind, ok, evaluated, expected, actual,
//!                 failure_code, message, age_seconds } ]
//!                          kind: status | redirect | header | body | json | freshness | latency
//! samples: [ { index, address, ok, failure_code, failure_message, status,
//!              backend, phases_us } ]                     when samples > 1
//! samples_summary: { total, failed, ratio, max_failure_ratio,
//!                    by_backend: { "<backend>": { total, failed } } }   when samples > 1
//! addresses: [ { address, ok, failure_code, failure_message, status, location,
//!                tls, phases_us, chain, assertions, samples_total, samples_failed } ]
//!                          failure_* only when the address failed
//! addresses_total, addresses_failing                       when more than one address
//! ```
//! In `samples[]` the `failure_*`, `status` and `backend` keys are always
//! there (`null` when not applicable); elsewhere absent means not applicable.
//! `backend` is the `backend_header` value; samples without one are grouped
//! by address. Secrets and request headers never appear in `details`.

pub mod exchange;
pub mod observed;
pub mod report;
pub mod request;
pub mod sample;
pub mod sniff;

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use bytes::Bytes;
use hyper::Uri;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::assertion::StatusMatch;
pub use super::redirect::resolve_location;
use super::{
    Failure, KindResult, Phases, RunContext,
    assertion::{
        self, Assertions, RawAssertions, RawFreshness, RawHeaderAssertion, RawJsonAssertion,
        RawLatency,
    },
    failure::AddressFailure,
    redirect::Policy,
};
use crate::{
    config::{Problems, RawSecret, Size},
    tls::{self, Trust},
};
pub use observed::Observed;
pub use request::RawBasicAuth;

/// Default `max_body`: bytes of body read at most.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default `max_header_bytes`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest `samples`.
pub const MAX_SAMPLES: u32 = 100;

/// `[checks.http]` as written in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Absolute `http://` or `https://` URL. Example: `"https://api.example.com/health"`.
    pub url: String,
    /// Request method, any token. Default `"GET"`. Example: `"POST"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra request headers. `Host` is derived from the URL.
    /// Example: `{ accept = "application/json" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is (set `content-type` in `headers`).
    /// At most one of `body`, `json_body`, `form`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Request body as JSON, with `content-type: application/json` unless set
    /// in `headers`. Example: `{ ping = true, source = "outpost" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<Value>,
    /// Request body as a form (`application/x-www-form-urlencoded`).
    /// Example: `{ grant_type = "client_credentials" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// HTTP basic auth; the password from a secret.
    /// Example: `{ username = "outpost", password = { env = "API_PASSWORD" } }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<RawBasicAuth>,
    /// `Authorization: Bearer …` from a secret. Example: `{ file = "/etc/outpost/api-token" }`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "request::opt_secret_ref"
    )]
    pub bearer_token: Option<RawSecret>,
    /// `"auto"` (default: ALPN offers h2 and http/1.1; plain http uses
    /// HTTP/1.1), `"http1"`, or `"http2"` (ALPN h2 only, failing if refused;
    /// prior-knowledge h2c on plain http).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_version: Option<HttpVersion>,
    /// Statuses that pass: numbers (`200`) or classes/ranges as strings
    /// (`"2xx"`, `"200-299"`). Checked on the final response. Default `["2xx"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<Vec<StatusMatch>>,
    /// PEM bundle of roots to trust for https (every hop) instead of the
    /// bundled Mozilla roots.
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
    /// Resolve names through this DNS server instead of the system resolver:
    /// `"10.0.0.53"`, `"10.0.0.53:5353"`, `"udp://…"`, `"tcp://…"` or
    /// `"system"` (the same strings as a dns check's `resolvers`). Applies to
    /// every hop and to `addresses = "all"`. Default: the system resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    /// Follow redirects (301, 302, 303, 307, 308). Default `false`: a 3xx not
    /// in `expected_status` fails with `redirect_not_followed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
    /// Redirects followed at most (1–50); one more fails with
    /// `redirect_limit`. Default `10`. Needs `follow_redirects = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hops: Option<u32>,
    /// The exact statuses expected along the chain, final one included, e.g.
    /// `[308, 200]`; anything else fails with `redirect_sequence_mismatch`.
    /// Needs `follow_redirects = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_statuses: Option<Vec<u16>>,
    /// The final URL must be https, else `redirect_scheme`. Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_https: Option<bool>,
    /// Permit https → http redirects. Default `false`: one fails with
    /// `redirect_downgrade` and is not followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_downgrade: Option<bool>,
    /// Permit a redirect that turns a non-GET request into GET (301/302 after
    /// POST, 303), dropping the body. Default `false`: `redirect_method_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_method_change: Option<bool>,
    /// Send Authorization and Cookie to hops on another origin (scheme, host,
    /// port). Default `false`: they are dropped, as browsers and curl do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_credentials_cross_origin: Option<bool>,
    /// Requests per run per address, each on fresh connections (1–100).
    /// Default `1`. Example: `10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    /// Fraction of samples that may fail (0.0–1.0) before the check fails
    /// with `sample_failure_ratio`. Default `0.0`. Example: `0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    /// Response header naming the backend that served a sample, used to
    /// group sample failures. Example: `"x-served-by"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_header: Option<String>,
    /// Response headers that must be present, absent, equal or match a regex.
    /// Example: `[{ name = "content-type", matches = "^application/json" }]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_headers: Vec<RawHeaderAssertion>,
    /// Text the body must contain (`body_mismatch`). Example: `"\"status\":\"ok\""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Regex the body must match (`body_mismatch`). Example: `"version\": \"2\\.\\d+"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_matches: Option<String>,
    /// JSONPath (RFC 9535) assertions on the JSON body (`json_path_mismatch`).
    /// Example: `[{ path = "$.status", equals = "ok" }, { path = "$.queue", less_than = 100 }]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<RawJsonAssertion>,
    /// Maximum age of the data (`data_stale`).
    /// Example: `{ json_path = "$.updated_at", max_age = "15m" }` or
    /// `{ header = "last-modified", max_age = "1h" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<RawFreshness>,
    /// Latency budgets per phase (`latency_budget_exceeded`).
    /// Example: `{ total = "800ms", first_byte = "300ms" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<RawLatency>,
    /// Body bytes read at most; more fails with `body_too_large`. Default `"1MiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<Size>,
    /// Response head bytes accepted at most; more fails with
    /// `headers_too_large`. Default `"64KiB"`, at least `"1KiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<Size>,
}

/// Which resolved addresses a check requests.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AddressMode {
    /// The first address only.
    #[default]
    First,
    /// Every address, separately.
    All,
}

/// How many addresses must pass with `addresses = "all"`.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Passing {
    /// Every address.
    #[default]
    All,
    /// At least one address.
    Any,
}

/// The HTTP version offered.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HttpVersion {
    /// h2 or http/1.1 by ALPN; HTTP/1.1 on plain http.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
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
    /// Request headers, credentials included (marked sensitive).
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
    /// Resolver for every name lookup.
    pub resolver: crate::resolver::ResolverSpec,
    /// Redirect policy.
    pub redirect: Policy,
    /// Response assertions.
    pub assertions: Assertions,
    /// Samples per address per run.
    pub samples: u32,
    /// Failing samples tolerated.
    pub max_failure_ratio: f64,
    /// Header attributing a sample to a backend.
    pub backend_header: Option<http::HeaderName>,
    /// Body cap.
    pub max_body: usize,
    /// Response head cap.
    pub max_header_bytes: usize,
    /// ALPN offer.
    pub http_version: HttpVersion,
}

impl RawHttp {
    /// Validates; problems are recorded under `path` (`checks[0].http`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<HttpSpec> {
        let before = problems.len();
        // A secret query value may come back in a body or a path (an echo):
        // scrub it from what the probe records, like a resolved credential.
        crate::redact::remember_query_secrets(&self.url);
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
        let method = self
            .method
            .as_deref()
            .unwrap_or("GET")
            .parse::<http::Method>()
            .map_err(|_| {
                problems.push(
                    format!("{path}.method"),
                    format!("invalid method {:?}", self.method),
                );
            })
            .ok();
        let prepared = request::prepare(self, path, problems);
        let mut expected = Vec::new();
        for (i, m) in self
            .expected_status
            .clone()
            .unwrap_or_else(|| vec![StatusMatch::Range("2xx".into())])
            .iter()
            .enumerate()
        {
            match assertion::parse_status_match(m) {
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
        let resolver = match self
            .resolver
            .as_deref()
            .map(str::parse::<crate::resolver::ResolverSpec>)
        {
            None => crate::resolver::ResolverSpec::System,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                problems.push(format!("{path}.resolver"), e.to_string());
                crate::resolver::ResolverSpec::System
            }
        };
        let redirect = Policy::from_raw(self, path, problems);
        let assertions = RawAssertions {
            headers: &self.expected_headers,
            body_contains: self.body_contains.as_ref(),
            body_matches: self.body_matches.as_ref(),
            json: &self.json,
            freshness: self.freshness.as_ref(),
            latency: self.latency.as_ref(),
        }
        .validate(path, problems);
        let samples = self.samples.unwrap_or(1);
        if !(1..=MAX_SAMPLES).contains(&samples) {
            problems.push(
                format!("{path}.samples"),
                format!("samples must be between 1 and {MAX_SAMPLES}, got {samples}"),
            );
        }
        let max_failure_ratio = self.max_failure_ratio.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&max_failure_ratio) {
            problems.push(
                format!("{path}.max_failure_ratio"),
                format!("max_failure_ratio must be between 0.0 and 1.0, got {max_failure_ratio}, e.g. 0.1 for one in ten"),
            );
        }
        let backend_header = self.backend_header.as_ref().and_then(|h| {
            http::HeaderName::try_from(h.as_str())
                .map_err(|_| {
                    problems.push(
                        format!("{path}.backend_header"),
                        format!("invalid header name {h:?}, e.g. \"x-served-by\""),
                    );
                })
                .ok()
        });
        let max_body = self.max_body.map_or(DEFAULT_MAX_BODY, |s| {
            usize::try_from(s.bytes()).unwrap_or(usize::MAX)
        });
        if max_body == 0 {
            problems.push(
                format!("{path}.max_body"),
                "max_body must be at least \"1B\"",
            );
        }
        let max_header_bytes = self.max_header_bytes.map_or(DEFAULT_MAX_HEADER_BYTES, |s| {
            usize::try_from(s.bytes()).unwrap_or(usize::MAX)
        });
        if max_header_bytes < 1024 {
            problems.push(
                format!("{path}.max_header_bytes"),
                format!(
                    "max_header_bytes must be at least \"1KiB\", got \"{}\"",
                    Size(max_header_bytes as u64)
                ),
            );
        }
        if problems.len() != before {
            return None;
        }
        let uri = uri?;
        let https = uri.scheme_str() == Some("https");
        let (host, port) = exchange::host_port(&uri);
        Some(HttpSpec {
            url: self.url.clone(),
            uri,
            https,
            host,
            port,
            method: method?,
            headers: prepared.headers,
            body: prepared.body,
            expected,
            trust: self
                .ca_file
                .clone()
                .map(Trust::CaFile)
                .unwrap_or(Trust::Mozilla),
            addresses: self.addresses.unwrap_or_default(),
            passing: self.passing.unwrap_or_default(),
            resolve_to,
            resolver,
            redirect,
            assertions,
            samples,
            max_failure_ratio,
            backend_header,
            max_body,
            max_header_bytes,
            http_version: self.http_version.unwrap_or_default(),
        })
    }
}

impl HttpSpec {
    /// Connection settings shared by every hop.
    pub fn limits(&self) -> exchange::Limits<'_> {
        exchange::Limits {
            trust: &self.trust,
            http_version: self.http_version,
            max_header_bytes: self.max_header_bytes,
            resolver: &self.resolver,
        }
    }
}

/// Runs the check once within `timeout`.
pub async fn run(spec: &HttpSpec, timeout: Duration, ctx: &RunContext) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut observed = Observed {
        url: spec.url.clone(),
        method: spec.method.as_str().to_owned(),
        ..Observed::default()
    };
    let done = |phases, result, observed| KindResult {
        phases,
        result,
        observed: super::Observed::Http(Box::new(observed)),
    };

    let (addrs, dns) =
        // Boxed: resolution is a large future that is done before any request.
        match tokio::time::timeout_at(deadline, Box::pin(sample::resolve(spec, deadline))).await {
            Ok(Ok(r)) => r,
            Ok(Err(f)) => return done(Phases::default(), Err(f), observed),
            Err(_) => {
                observed.last.timeout_phase = Some(exchange::Phase::Dns.name().to_owned());
                let f = Failure::Timeout {
                    phase: exchange::Phase::Dns,
                    after: timeout,
                    target: Some(spec.host.clone()),
                };
                return done(Phases::default(), Err(f), observed);
            }
        };

    // Every address separately, concurrently, same SNI and Host.
    let runs = addrs
        .iter()
        .map(|a| sample::run_address(spec, *a, deadline, timeout, ctx));
    let runs = futures_util::future::join_all(runs).await;

    let rep = runs
        .iter()
        .find(|a| a.result.is_err())
        .or(runs.first())
        .and_then(sample::AddressRun::representative);
    let mut phases = Phases::default();
    if let Some(s) = rep {
        phases = s.phases;
        observed.address = Some(s.address.to_string());
        observed.last = s.last_hop();
        observed.chain = Some(s.chain.clone());
        observed.assertions = Some(s.assertions.clone());
    }
    phases.dns = exchange::add(dns, phases.dns);
    if spec.samples > 1 {
        let all: Vec<&sample::Sample> = runs.iter().flat_map(|a| &a.samples).collect();
        observed.samples = Some(all.iter().map(|s| s.record()).collect());
        observed.samples_summary = Some(sample::summary(spec, &all));
    }

    if runs.len() == 1 {
        let result = runs.into_iter().next().map(|a| a.result).unwrap_or(Ok(()));
        return done(phases, result, observed);
    }

    let failing: Vec<&sample::AddressRun> = runs.iter().filter(|a| a.result.is_err()).collect();
    observed.addresses = Some(runs.iter().map(sample::AddressRun::record).collect());
    observed.addresses_total = Some(runs.len());
    observed.addresses_failing = Some(failing.len());
    let must_fail = match spec.passing {
        Passing::All => !failing.is_empty(),
        Passing::Any => failing.len() == runs.len(),
    };
    let result = if must_fail {
        Err(Failure::Backends {
            total: runs.len(),
            failing: failing
                .iter()
                .filter_map(|a| {
                    a.result.as_ref().err().map(|f| AddressFailure {
                        address: a.address.to_string(),
                        failure: f.clone(),
                    })
                })
                .collect(),
        })
    } else {
        Ok(())
    };
    done(phases, result, observed)
}
