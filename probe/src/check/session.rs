//! The `session` check kind: hold one authenticated session across scheduled
//! runs, past its lifetime, and check every step of renewal.
//!
//! In the IOT incident a vendor API's login session expired after one hour;
//! the integration logged in once and got 401s from the second hour on, and
//! the first fix still failed an hour later because of an error in
//! time-offset arithmetic. Clients that refresh early hide this. This check
//! logs in (OAuth2 client credentials or refresh token, a scripted login, or
//! a cookie jar), calls the protected requests of `use` with the session on
//! every run, and renews by its `renewal` policy:
//! - `before_expiry`: renew at `renew_before` (or `renew_at_fraction` of the
//!   lifetime) before the declared expiry; the renewed session is used by the
//!   same run's calls, which proves it works. A failed renewal keeps the old
//!   credential in use until it expires.
//! - `on_401`: use the session until it is rejected (401/403), then log in
//!   again and retry once.
//! - `never`: the incident's client: it logs in once and keeps the session.
//!   The first rejection fails the run with `session_expired` and the
//!   observed lifetime, and the dead session is kept (`rejected_at`,
//!   persisted): every later run fails the same way ("session rejected;
//!   renewal = never keeps it until reset"), so the default alert rule
//!   confirms and pages. It is dropped when the check's login config
//!   changes (its fingerprint, [`state::lock`]) or its state file is
//!   removed; an operator reset from the controller is not built yet.
//!
//! # Failure codes (first in this order wins; `details.findings` lists all)
//! `session_login_failed` (no session could be started), `session_rejected_early`
//! (401/403 before the declared expiry minus `clock_skew_tolerance`, or a
//! fresh credential rejected; the run fails even when the retry succeeds),
//! `session_expired` (`never`: the first rejection), `session_renewal_failed`,
//! `session_lifetime_changed` (a declared lifetime differs from the previous
//! one of this check's history, or lies outside `lifetime_bounds`),
//! `clock_skew` (the server's `Date` or a fresh JWT's `iat` is off the probe's
//! clock by more than the tolerance), then the protected calls' own codes
//! (`unexpected_status`, `json_path_mismatch`, `connection_refused`, …).
//! Time arithmetic lives in [`clock`]; state and persistence in [`state`].
//!
//! # Details JSON (never a token, refresh token, cookie value or secret)
//! The typed value is [`Observed`] ([`observed`]): the session's facts are
//! [`observed::SessionFacts`] and the run's [`observed::RunFacts`], both
//! flattened; entries are [`observed::Event`], [`observed::RequestRecord`]
//! and [`observed::Finding`].
//! ```text
//! session_id                random id of the logical session (not the token)
//! renewal, login_method     policy and login kind
//! session_started_at, session_age_s
//! credential_issued_at, credential_age_s, expires_at, expires_in_s
//!                           the current credential (probe clock, RFC 3339)
//! expiry_source             expires_in | expires_at | jwt_exp | cookie_max_age | cookie_expires | none
//! declared_lifetime_s, first_declared_lifetime_s, previous_declared_lifetime_s
//! observed_lifetime_s       issuance → first rejection (when a session was rejected)
//! next_renewal_at           before_expiry only
//! logins, renewals          totals for this check's history; session_renewals for this session
//! renewal_failures          consecutive failed renewal attempts
//! server_clock_offset_ms, server_clock_offset_source   (date | jwt_iat), server − probe
//! events: [ { kind: login|refresh|relogin, at, ok, status, declared_lifetime_s,
//!             expiry_source, failure_code, message, phases_us } ]
//! requests: [ { name, url, method, status, ok, failure_code, failure_message,
//!               credential: current|renewed|previous|relogin, retry, assertions, phases_us } ]
//! findings: [ { code, message } ]
//! persisted                 the session is kept in the state directory (else memory only)
//! ```
//! The session fields (session_id … next_renewal_at) appear while there is a
//! session; `previous_declared_lifetime_s`, `observed_lifetime_s`,
//! `last_observed_lifetime_s` and the clock offset only when known; events
//! carry `declared_lifetime_s`/`expiry_source` when ok, `failure_code`/
//! `message` when not.

pub mod call;
pub mod clock;
mod details;
pub mod login;
pub mod method;
pub mod observed;
pub mod renewal;
pub mod state;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};
use serde_json_path::JsonPath;

pub use self::{
    call::{RawUse, UseSpec},
    method::{
        BodyTemplate, ClientAuth, LoginRequest, LoginSpec, OAuth2Spec, RawCookieJar, RawExtract,
        RawLogin, RawLoginRequest, RawOAuth2, RawRefreshLogin, RawScript, RawSecretRef,
        RawTokenPlace, RawTokenSource, ScriptSpec, TokenSource,
    },
    observed::Observed,
};
use super::{
    KindResult, RunContext,
    assertion::{self, StatusMatch},
};
use crate::{
    config::{Dur, Problems, RawSecret, Secret, Size},
    tls::Trust,
};

/// Default `clock_skew_tolerance`.
pub const DEFAULT_CLOCK_SKEW_TOLERANCE: Duration = Duration::from_secs(5);

/// Default `renew_before`.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30);

/// Default `max_body` for login and protected responses.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// `[checks.session]` as written in config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// How the session starts: exactly one of `oauth2_client_credentials`,
    /// `refresh_token`, `script`, `cookie_jar`. Example:
    /// `{ oauth2_client_credentials = { token_url = "https://auth.example.com/oauth/token",
    /// client_id = "outpost", client_secret = { env = "VENDOR_B_SECRET" } } }`.
    pub login: RawLogin,
    /// The protected requests made with the session on every run, in order,
    /// each with the usual HTTP assertions. At least one.
    #[serde(rename = "use")]
    pub requests: Vec<RawUse>,
    /// `"before_expiry"` (default), `"on_401"` or `"never"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<Renewal>,
    /// With `before_expiry`: renew this long before the declared expiry.
    /// Default `"30s"`. Not with `renew_at_fraction`. Example: `"5m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Dur>,
    /// With `before_expiry`: renew at this fraction of the declared lifetime
    /// (between 0 and 1, exclusive). Example: `0.8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at_fraction: Option<f64>,
    /// Declared lifetimes outside these bounds fail with
    /// `session_lifetime_changed`. Example: `{ min = "50m", max = "25h" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_bounds: Option<RawLifetimeBounds>,
    /// Largest accepted difference between the server's clock (`Date`, a
    /// fresh JWT's `iat`) and the probe's, and the slack before a rejection
    /// counts as early. Default `"5s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_tolerance: Option<Dur>,
    /// What `expires_in` counts from: `"receipt"` (default: when the probe
    /// received the login response) or `"server_date"` (the response's
    /// `Date`, converted to the probe's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_base: Option<ExpiresInBase>,
    /// PEM bundle of roots to trust for https instead of the Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Body bytes read at most per response (login and protected). Default `"256KiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<Size>,
}

/// The renewal policy.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Renewal {
    /// Renew before the declared expiry.
    #[default]
    #[serde(rename = "before_expiry")]
    BeforeExpiry,
    /// Renew when a request is rejected.
    #[serde(rename = "on_401")]
    On401,
    /// Log in once; report when the session stops working.
    #[serde(rename = "never")]
    Never,
}

impl Renewal {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Renewal::BeforeExpiry => "before_expiry",
            Renewal::On401 => "on_401",
            Renewal::Never => "never",
        }
    }
}

/// What `expires_in` counts from.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ExpiresInBase {
    /// The probe's receipt of the response.
    #[default]
    Receipt,
    /// The response's `Date` header.
    ServerDate,
}

/// `lifetime_bounds = { min = "…", max = "…" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLifetimeBounds {
    /// Shortest acceptable declared lifetime. Example: `"50m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Dur>,
    /// Longest acceptable declared lifetime. Example: `"25h"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Dur>,
}

/// A validated session check.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    /// How the session starts.
    pub login: LoginSpec,
    /// Protected requests.
    pub requests: Vec<UseSpec>,
    /// Renewal policy.
    pub renewal: Renewal,
    /// When `before_expiry` renews.
    pub renew_when: clock::RenewWhen,
    /// Bounds on declared lifetimes.
    pub lifetime_min: Option<Duration>,
    /// Bounds on declared lifetimes.
    pub lifetime_max: Option<Duration>,
    /// Clock tolerance.
    pub clock_skew_tolerance: Duration,
    /// What `expires_in` counts from.
    pub base: clock::Base,
    /// Roots for https.
    pub trust: Trust,
    /// Body cap.
    pub max_body: usize,
    /// Identifies the login configuration: a stored session made with
    /// another one is discarded.
    pub fingerprint: String,
}

fn url(s: &str, path: String, problems: &mut Problems) -> Option<Uri> {
    match s.parse::<Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
        _ => {
            problems.push(
                path,
                format!("invalid url {s:?}: use an absolute http:// or https:// URL"),
            );
            None
        }
    }
}

fn method(
    m: Option<&str>,
    default: &str,
    path: String,
    problems: &mut Problems,
) -> Option<http::Method> {
    let m = m.unwrap_or(default);
    m.parse::<http::Method>()
        .map_err(|_| problems.push(path, format!("invalid method {m:?}")))
        .ok()
}

fn statuses(s: Option<&Vec<StatusMatch>>, path: &str, problems: &mut Problems) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let default = vec![StatusMatch::Range("2xx".into())];
    for (i, m) in s.unwrap_or(&default).iter().enumerate() {
        match assertion::parse_status_match(m) {
            Ok(r) => out.push(r),
            Err(e) => problems.push(format!("{path}.expected_status[{i}]"), e),
        }
    }
    out
}

/// Names inside `{{…}}` in `s`.
pub fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push(after[..j].trim());
        rest = &after[j + 2..];
    }
    out
}

/// Replaces every `{{name}}` by its value.
pub fn render(s: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push_str(&rest[..i]);
        match vars(after[..j].trim()) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[i..i + 2 + j + 2]),
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

fn check_names(s: &str, allowed: &dyn Fn(&str) -> bool, path: &str, problems: &mut Problems) {
    for n in placeholders(s) {
        if !allowed(n) {
            problems.push(
                path.to_owned(),
                format!("unknown placeholder {{{{{n}}}}}: name a secret of `secrets`, e.g. `secrets = {{ {n} = {{ env = \"NAME\" }} }}`"),
            );
        }
    }
}

fn headers(
    raw: &BTreeMap<String, String>,
    allowed: &dyn Fn(&str) -> bool,
    path: &str,
    problems: &mut Problems,
) -> Vec<(HeaderName, String)> {
    let mut out = Vec::new();
    for (k, v) in raw {
        let p = format!("{path}.headers.{k}");
        check_names(v, allowed, &p, problems);
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(n), _) if n == http::header::HOST => {
                problems.push(p, "the Host header comes from the url; remove it");
            }
            (Ok(n), Ok(_)) => out.push((n, v.clone())),
            _ => problems.push(p, format!("invalid header {k:?}")),
        }
    }
    out
}

fn jsonpath(s: &str, path: String, problems: &mut Problems) -> Option<JsonPath> {
    JsonPath::parse(s)
        .map_err(|e| {
            problems.push(
                path,
                format!("invalid JSONPath {s:?}: {e}, e.g. \"$.token\""),
            )
        })
        .ok()
}

fn secret(s: &RawSecret, path: String, problems: &mut Problems) -> Option<Secret> {
    problems.secret(s, path)
}

/// FNV-1a, stable across builds (std's hasher is not).
fn fnv(s: &str) -> String {
    crate::fnv::hex(s)
}

impl RawSession {
    /// Validates; problems are recorded under `path` (`checks[0].session`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<SessionSpec> {
        let before = problems.len();
        let login = self.login.validate(&format!("{path}.login"), problems);
        if self.requests.is_empty() {
            problems.push(
                format!("{path}.use"),
                "a session check needs at least one protected request, e.g. `use = [{ url = \"https://api.example.com/data\" }]`",
            );
        }
        let requests: Vec<UseSpec> = self
            .requests
            .iter()
            .enumerate()
            .filter_map(|(i, u)| u.validate(&format!("{path}.use[{i}]"), problems))
            .collect();
        let renewal = self.renewal.unwrap_or_default();
        if renewal != Renewal::BeforeExpiry
            && (self.renew_before.is_some() || self.renew_at_fraction.is_some())
        {
            problems.push(
                format!("{path}.renewal"),
                format!("renew_before / renew_at_fraction apply to renewal = \"before_expiry\", not {:?}", renewal.as_str()),
            );
        }
        let renew_when = match (self.renew_before, self.renew_at_fraction) {
            (Some(_), Some(_)) => {
                problems.push(
                    path.to_owned(),
                    "set at most one of `renew_before` or `renew_at_fraction`",
                );
                clock::RenewWhen::Before(DEFAULT_RENEW_BEFORE)
            }
            (_, Some(f)) => {
                if !(f > 0.0 && f < 1.0) {
                    problems.push(
                        format!("{path}.renew_at_fraction"),
                        format!("renew_at_fraction must be between 0 and 1 (exclusive), got {f}, e.g. 0.8"),
                    );
                }
                clock::RenewWhen::Fraction(f)
            }
            (Some(d), None) => clock::RenewWhen::Before(d.get()),
            (None, None) => clock::RenewWhen::Before(DEFAULT_RENEW_BEFORE),
        };
        let (lifetime_min, lifetime_max) = match &self.lifetime_bounds {
            Some(b) => (b.min.map(Dur::get), b.max.map(Dur::get)),
            None => (None, None),
        };
        if let (Some(a), Some(b)) = (lifetime_min, lifetime_max)
            && a > b
        {
            problems.push(
                format!("{path}.lifetime_bounds"),
                format!("min \"{}\" exceeds max \"{}\"", Dur(a), Dur(b)),
            );
        }
        if let Some(p) = &self.ca_file
            && let Err(e) = crate::tls::read_pem_certs(p)
        {
            problems.push(format!("{path}.ca_file"), e);
        }
        let max_body = self.max_body.map_or(DEFAULT_MAX_BODY, |s| {
            usize::try_from(s.bytes()).unwrap_or(usize::MAX)
        });
        if max_body == 0 {
            problems.push(
                format!("{path}.max_body"),
                "max_body must be at least \"1B\"",
            );
        }
        if problems.len() != before {
            return None;
        }
        let login = login?;
        let fingerprint = fnv(&format!("{login:?}|{:?}", self.expires_in_base));
        Some(SessionSpec {
            login,
            requests,
            renewal,
            renew_when,
            lifetime_min,
            lifetime_max,
            clock_skew_tolerance: self
                .clock_skew_tolerance
                .map_or(DEFAULT_CLOCK_SKEW_TOLERANCE, Dur::get),
            base: match self.expires_in_base.unwrap_or_default() {
                ExpiresInBase::Receipt => clock::Base::Receipt,
                ExpiresInBase::ServerDate => clock::Base::ServerDate,
            },
            trust: self.ca_file.clone().map_or(Trust::Mozilla, Trust::CaFile),
            max_body,
            fingerprint,
        })
    }
}

/// Runs the check once within `timeout`, continuing the session of `check_id`.
pub async fn run(
    spec: &SessionSpec,
    check_id: &str,
    timeout: Duration,
    ctx: &RunContext,
) -> KindResult {
    renewal::run(spec, check_id, timeout, ctx).await
}

/// The observations of a run that could not finish: the policy and login kind.
pub fn describe(spec: &SessionSpec) -> Observed {
    Observed {
        renewal: spec.renewal.as_str().to_owned(),
        login_method: spec.login.name().to_owned(),
        ..Observed::default()
    }
}
