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
//! - `never`: the incident's client. The first rejection fails the run with
//!   `session_expired` and the observed lifetime; the next run logs in anew.
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

pub mod call;
pub mod clock;
pub mod login;
pub mod renewal;
pub mod state;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

use super::{
    KindResult, RunContext,
    assertion::{
        self, Assertions, RawAssertions, RawFreshness, RawHeaderAssertion, RawJsonAssertion,
        RawLatency, StatusMatch,
    },
    http::request::{form_encode, opt_secret_ref, secret_ref},
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExpiresInBase {
    /// The probe's receipt of the response.
    #[default]
    Receipt,
    /// The response's `Date` header.
    ServerDate,
}

/// `lifetime_bounds = { min = "…", max = "…" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLifetimeBounds {
    /// Shortest acceptable declared lifetime. Example: `"50m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Dur>,
    /// Longest acceptable declared lifetime. Example: `"25h"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Dur>,
}

/// `login`: exactly one method.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    /// OAuth2 client credentials grant (RFC 6749 §4.4). When the server also
    /// issues a refresh token, renewals use it (`grant_type=refresh_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_client_credentials: Option<RawOAuth2>,
    /// OAuth2 refresh token grant (RFC 6749 §6) from a provisioned refresh
    /// token; rotated tokens the server returns are kept in the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RawRefreshLogin>,
    /// A scripted login: one request whose response yields the token (JSONPath,
    /// header or cookie) and its expiry; the token is `{{token}}` in `use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<RawScript>,
    /// A cookie-jar session: the login response's `Set-Cookie` cookies are
    /// sent with every protected request; the expiry is the cookies' earliest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_jar: Option<RawCookieJar>,
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP basic auth (`client_secret_basic`, the RFC 6749 default).
    #[default]
    Basic,
    /// `client_id` / `client_secret` in the form body (`client_secret_post`).
    Form,
}

/// `oauth2_client_credentials = { … }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    /// Token endpoint. Example: `"https://auth.example.com/oauth/token"`.
    pub token_url: String,
    /// Client id (not secret). Example: `"outpost"`.
    pub client_id: String,
    /// Client secret: `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(serialize_with = "secret_ref")]
    pub client_secret: RawSecret,
    /// Space-separated scopes requested. Example: `"telemetry:read"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `audience` parameter (Auth0, Okta and others). Example: `"https://api.example.com"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `"basic"` (default) or `"form"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// `refresh_token = { … }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRefreshLogin {
    /// Token endpoint. Example: `"https://auth.example.com/oauth/token"`.
    pub token_url: String,
    /// Client id (not secret).
    pub client_id: String,
    /// Client secret, for confidential clients: `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_secret_ref"
    )]
    pub client_secret: Option<RawSecret>,
    /// The provisioned refresh token: `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(serialize_with = "secret_ref")]
    pub refresh_token: RawSecret,
    /// Space-separated scopes requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `"basic"` (default) or `"form"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// The login request of `script` and `cookie_jar`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLoginRequest {
    /// Absolute URL. Example: `"https://vendor-b.example.com/api/login"`.
    pub url: String,
    /// Method. Default `"POST"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers; `{{name}}` is replaced by the secret `name` of `secrets`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body sent as is. At most one of `body`, `json_body`, `form`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// JSON body (`content-type: application/json`); string values may hold
    /// `{{name}}`. Example: `{ username = "outpost", password = "{{password}}" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<Value>,
    /// Form body (`application/x-www-form-urlencoded`); values may hold `{{name}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// Secrets for `{{name}}` placeholders. Example: `{ password = { env = "VENDOR_B_PASSWORD" } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, RawSecretRef>,
    /// Statuses that count as a successful login. Default `["2xx"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<Vec<StatusMatch>>,
}

/// A [`RawSecret`] that serializes as its reference (env name or path).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct RawSecretRef(#[serde(serialize_with = "secret_ref")] pub RawSecret);

/// `script = { request = { … }, extract = { … } }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawScript {
    /// The login request.
    pub request: RawLoginRequest,
    /// Where the token and its expiry are in the response.
    pub extract: RawExtract,
}

/// `extract = { token = "$.token", expires_at = "$.expires_at" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawExtract {
    /// The token: a JSONPath into the body (`"$.token"`), `{ header = "x-auth-token" }`
    /// or `{ cookie = "session" }` (then the cookie is also sent with `use`).
    pub token: RawTokenSource,
    /// JSONPath to the absolute expiry: RFC 3339 with an offset, epoch
    /// seconds or milliseconds. Not with `expires_in`. Example: `"$.expires_at"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// JSONPath to the lifetime in seconds. Example: `"$.expires_in"`.
    /// Without either, a JWT's `exp` or the cookie's `Max-Age`/`Expires` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// Where a scripted login's token is.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum RawTokenSource {
    /// A JSONPath into the JSON body.
    Json(String),
    /// A response header or a cookie.
    Other(RawTokenPlace),
}

/// `{ header = "…" }` or `{ cookie = "…" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTokenPlace {
    /// Response header holding the token (a `Bearer ` prefix is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Name of the `Set-Cookie` cookie holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// `cookie_jar = { request = { … } }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawCookieJar {
    /// The login request; its `Set-Cookie` cookies form the session.
    pub request: RawLoginRequest,
}

/// One protected request of `use`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
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

/// A validated login method.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginSpec {
    /// Client credentials grant.
    ClientCredentials(OAuth2Spec),
    /// Refresh token grant from a provisioned refresh token.
    RefreshToken(OAuth2Spec, Secret),
    /// Scripted login.
    Script(ScriptSpec),
    /// Cookie jar.
    CookieJar(LoginRequest),
}

impl LoginSpec {
    /// Name in details.
    pub fn name(&self) -> &'static str {
        match self {
            LoginSpec::ClientCredentials(_) => "oauth2_client_credentials",
            LoginSpec::RefreshToken(..) => "refresh_token",
            LoginSpec::Script(_) => "script",
            LoginSpec::CookieJar(_) => "cookie_jar",
        }
    }
}

/// A validated token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Spec {
    /// Token endpoint.
    pub token_url: Uri,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Option<Secret>,
    /// Scopes.
    pub scope: Option<String>,
    /// Audience.
    pub audience: Option<String>,
    /// Client authentication.
    pub client_auth: ClientAuth,
}

/// A validated login request (templates resolved at run time).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRequest {
    /// URL.
    pub uri: Uri,
    /// Method.
    pub method: http::Method,
    /// Header templates.
    pub headers: Vec<(HeaderName, String)>,
    /// Body template and its content type.
    pub body: Option<(BodyTemplate, Option<&'static str>)>,
    /// Secrets for placeholders.
    pub secrets: BTreeMap<String, Secret>,
    /// Statuses that count as success.
    pub expected: Vec<(u16, u16)>,
}

/// A body with `{{name}}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    /// Text.
    Text(String),
    /// JSON; placeholders in string values.
    Json(Value),
    /// Form pairs; placeholders in values.
    Form(BTreeMap<String, String>),
}

/// A validated scripted login.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptSpec {
    /// The request.
    pub request: LoginRequest,
    /// Where the token is.
    pub token: TokenSource,
    /// JSONPath to an absolute expiry.
    pub expires_at: Option<JsonPath>,
    /// JSONPath to a lifetime in seconds.
    pub expires_in: Option<JsonPath>,
}

/// Where a scripted login's token is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    /// JSONPath into the body.
    Json(JsonPath),
    /// Response header.
    Header(HeaderName),
    /// Cookie name.
    Cookie(String),
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

fn url(s: &str, path: String, problems: &mut Problems) -> Option<Uri> {
    match s.parse::<Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
        _ => {
            problems.push(path, format!("invalid url {s:?}: use an absolute http:// or https:// URL"));
            None
        }
    }
}

fn method(m: Option<&str>, default: &str, path: String, problems: &mut Problems) -> Option<http::Method> {
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
        match (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
            (Ok(n), _) if n == http::header::HOST => {
                problems.push(p, "the Host header comes from the url; remove it");
            }
            (Ok(n), Ok(_)) => out.push((n, v.clone())),
            _ => problems.push(p, format!("invalid header {k:?}")),
        }
    }
    out
}

fn json_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| json_strings(v, f)),
        Value::Object(o) => o.values().for_each(|v| json_strings(v, f)),
        _ => {}
    }
}

fn jsonpath(s: &str, path: String, problems: &mut Problems) -> Option<JsonPath> {
    JsonPath::parse(s)
        .map_err(|e| problems.push(path, format!("invalid JSONPath {s:?}: {e}, e.g. \"$.token\"")))
        .ok()
}

fn secret(s: &RawSecret, path: String, problems: &mut Problems) -> Option<Secret> {
    s.resolve().map_err(|e| problems.push(path, e)).ok()
}

impl RawLoginRequest {
    fn validate(&self, path: &str, problems: &mut Problems) -> Option<LoginRequest> {
        let before = problems.len();
        let uri = url(&self.url, format!("{path}.url"), problems);
        let method = method(self.method.as_deref(), "POST", format!("{path}.method"), problems);
        let mut secrets = BTreeMap::new();
        for (name, s) in &self.secrets {
            if let Some(v) = secret(&s.0, format!("{path}.secrets.{name}"), problems) {
                secrets.insert(name.clone(), v);
            }
        }
        let allowed = |n: &str| self.secrets.contains_key(n);
        let headers = headers(&self.headers, &allowed, path, problems);
        let n = [self.body.is_some(), self.json_body.is_some(), self.form.is_some()];
        if n.iter().filter(|b| **b).count() > 1 {
            problems.push(path.to_owned(), "set at most one of `body`, `json_body` or `form`");
        }
        let body = if let Some(b) = &self.body {
            check_names(b, &allowed, &format!("{path}.body"), problems);
            Some((BodyTemplate::Text(b.clone()), None))
        } else if let Some(j) = &self.json_body {
            json_strings(j, &mut |s| check_names(s, &allowed, &format!("{path}.json_body"), problems));
            Some((BodyTemplate::Json(j.clone()), Some("application/json")))
        } else {
            self.form.as_ref().map(|f| {
                for v in f.values() {
                    check_names(v, &allowed, &format!("{path}.form"), problems);
                }
                (BodyTemplate::Form(f.clone()), Some("application/x-www-form-urlencoded"))
            })
        };
        let expected = statuses(self.expected_status.as_ref(), path, problems);
        if problems.len() != before {
            return None;
        }
        Some(LoginRequest { uri: uri?, method: method?, headers, body, secrets, expected })
    }
}

impl LoginRequest {
    /// Headers and body with placeholders replaced (credentials marked sensitive).
    pub fn render(&self) -> (Vec<(HeaderName, HeaderValue)>, Bytes) {
        let vars = |n: &str| self.secrets.get(n).map(|s| s.expose().to_owned());
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            if let Ok(mut hv) = HeaderValue::try_from(render(v, &vars)) {
                hv.set_sensitive(true);
                headers.push((k.clone(), hv));
            }
        }
        let body = match &self.body {
            None => Bytes::new(),
            Some((t, ct)) => {
                if let Some(ct) = ct
                    && !self.headers.iter().any(|(k, _)| k == http::header::CONTENT_TYPE)
                {
                    headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static(ct)));
                }
                match t {
                    BodyTemplate::Text(s) => Bytes::from(render(s, &vars)),
                    BodyTemplate::Json(j) => Bytes::from(render_json(j, &vars).to_string()),
                    BodyTemplate::Form(f) => Bytes::from(
                        f.iter()
                            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(&render(v, &vars))))
                            .collect::<Vec<_>>()
                            .join("&"),
                    ),
                }
            }
        };
        (headers, body)
    }
}

fn render_json(v: &Value, vars: &dyn Fn(&str) -> Option<String>) -> Value {
    match v {
        Value::String(s) => Value::String(render(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|v| render_json(v, vars)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), render_json(v, vars))).collect()),
        other => other.clone(),
    }
}

fn oauth2(
    token_url: &str,
    client_id: &str,
    client_secret: Option<&RawSecret>,
    scope: Option<&String>,
    audience: Option<&String>,
    client_auth: Option<ClientAuth>,
    path: &str,
    problems: &mut Problems,
) -> Option<OAuth2Spec> {
    let before = problems.len();
    let token_url = url(token_url, format!("{path}.token_url"), problems);
    if client_id.is_empty() || client_id.contains(':') && client_auth.unwrap_or_default() == ClientAuth::Basic {
        problems.push(format!("{path}.client_id"), "client_id must be non-empty (and without ':' for basic auth)");
    }
    let client_secret = client_secret.and_then(|s| secret(s, format!("{path}.client_secret"), problems));
    if problems.len() != before {
        return None;
    }
    Some(OAuth2Spec {
        token_url: token_url?,
        client_id: client_id.to_owned(),
        client_secret,
        scope: scope.cloned(),
        audience: audience.cloned(),
        client_auth: client_auth.unwrap_or_default(),
    })
}

impl RawLogin {
    fn validate(&self, path: &str, problems: &mut Problems) -> Option<LoginSpec> {
        let n = [
            self.oauth2_client_credentials.is_some(),
            self.refresh_token.is_some(),
            self.script.is_some(),
            self.cookie_jar.is_some(),
        ];
        if n.iter().filter(|b| **b).count() != 1 {
            problems.push(
                path.to_owned(),
                "set exactly one login method: oauth2_client_credentials, refresh_token, script or cookie_jar",
            );
            return None;
        }
        if let Some(o) = &self.oauth2_client_credentials {
            let p = format!("{path}.oauth2_client_credentials");
            let s = oauth2(&o.token_url, &o.client_id, Some(&o.client_secret), o.scope.as_ref(), o.audience.as_ref(), o.client_auth, &p, problems);
            return s.map(LoginSpec::ClientCredentials);
        }
        if let Some(r) = &self.refresh_token {
            let p = format!("{path}.refresh_token");
            let rt = secret(&r.refresh_token, format!("{p}.refresh_token"), problems);
            let s = oauth2(&r.token_url, &r.client_id, r.client_secret.as_ref(), r.scope.as_ref(), None, r.client_auth, &p, problems);
            return Some(LoginSpec::RefreshToken(s?, rt?));
        }
        if let Some(s) = &self.script {
            let p = format!("{path}.script");
            let request = s.request.validate(&format!("{p}.request"), problems);
            let e = &s.extract;
            let ep = format!("{p}.extract");
            let token = match &e.token {
                RawTokenSource::Json(j) => jsonpath(j, format!("{ep}.token"), problems).map(TokenSource::Json),
                RawTokenSource::Other(RawTokenPlace { header: Some(h), cookie: None }) => {
                    assertion::header::header_name(h, format!("{ep}.token.header"), problems).map(TokenSource::Header)
                }
                RawTokenSource::Other(RawTokenPlace { header: None, cookie: Some(c) }) if !c.is_empty() => {
                    Some(TokenSource::Cookie(c.clone()))
                }
                RawTokenSource::Other(_) => {
                    problems.push(format!("{ep}.token"), "give one of a JSONPath (\"$.token\"), { header = \"…\" } or { cookie = \"…\" }");
                    None
                }
            };
            if e.expires_at.is_some() && e.expires_in.is_some() {
                problems.push(ep.clone(), "set at most one of `expires_at` or `expires_in`");
            }
            let expires_at = e.expires_at.as_ref().and_then(|j| jsonpath(j, format!("{ep}.expires_at"), problems));
            let expires_in = e.expires_in.as_ref().and_then(|j| jsonpath(j, format!("{ep}.expires_in"), problems));
            return Some(LoginSpec::Script(ScriptSpec { request: request?, token: token?, expires_at, expires_in }));
        }
        let c = self.cookie_jar.as_ref()?;
        c.request.validate(&format!("{path}.cookie_jar.request"), problems).map(LoginSpec::CookieJar)
    }
}

impl RawUse {
    fn validate(&self, path: &str, problems: &mut Problems) -> Option<UseSpec> {
        let before = problems.len();
        let uri = url(&self.url, format!("{path}.url"), problems);
        let method = method(self.method.as_deref(), "GET", format!("{path}.method"), problems);
        let allowed = |n: &str| n == "token";
        let headers = headers(&self.headers, &allowed, path, problems);
        let token_in_headers = self.headers.values().any(|v| placeholders(v).contains(&"token"));
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

/// FNV-1a, stable across builds (std's hasher is not).
fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
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
        if renewal != Renewal::BeforeExpiry && (self.renew_before.is_some() || self.renew_at_fraction.is_some()) {
            problems.push(
                format!("{path}.renewal"),
                format!("renew_before / renew_at_fraction apply to renewal = \"before_expiry\", not {:?}", renewal.as_str()),
            );
        }
        let renew_when = match (self.renew_before, self.renew_at_fraction) {
            (Some(_), Some(_)) => {
                problems.push(path.to_owned(), "set at most one of `renew_before` or `renew_at_fraction`");
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
        let max_body = self.max_body.map_or(DEFAULT_MAX_BODY, |s| usize::try_from(s.bytes()).unwrap_or(usize::MAX));
        if max_body == 0 {
            problems.push(format!("{path}.max_body"), "max_body must be at least \"1B\"");
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
            clock_skew_tolerance: self.clock_skew_tolerance.map_or(DEFAULT_CLOCK_SKEW_TOLERANCE, Dur::get),
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
pub async fn run(spec: &SessionSpec, check_id: &str, timeout: Duration, ctx: &RunContext) -> KindResult {
    renewal::run(spec, check_id, timeout, ctx).await
}

/// The session's name in details when a run could not finish.
pub fn describe(spec: &SessionSpec) -> Value {
    serde_json::json!({ "login_method": spec.login.name(), "renewal": spec.renewal.as_str() })
}
