//! What a session check observed: [`Observed`], the `details` of a session
//! result (shape in [`super`]). Never a token, refresh token, cookie value
//! or secret: [`Observed::scrub`] replaces every credential value seen in
//! the run before the value leaves the check.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::{FailureCode, Phases, assertion::AssertionResult, observed::double_option};

/// The `details` of a session result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// The renewal policy: `before_expiry`, `on_401`, `never`.
    pub renewal: String,
    /// The login kind: `oauth2_client_credentials`, `refresh_token`, `script`, `cookie_jar`.
    pub login_method: String,
    /// The session in use after the run, if any.
    #[serde(flatten)]
    pub session: Option<SessionFacts>,
    /// What the run did (`None` only when the run was cut short by the
    /// dispatcher's safety net).
    #[serde(flatten)]
    pub run: Option<RunFacts>,
}

/// The current session and its credential (probe clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFacts {
    /// Random id of the logical session (not the token). Always present:
    /// it tells a session from none.
    pub session_id: String,
    /// When the session started, RFC 3339.
    #[serde(default)]
    pub session_started_at: String,
    /// Its age, seconds.
    #[serde(default)]
    pub session_age_s: f64,
    /// When the current credential was issued, RFC 3339.
    #[serde(default)]
    pub credential_issued_at: String,
    /// Its age, seconds.
    #[serde(default)]
    pub credential_age_s: f64,
    /// When it expires, RFC 3339 (`null`: no declared expiry).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Seconds until then (negative once past).
    #[serde(default)]
    pub expires_in_s: Option<f64>,
    /// Where the expiry came from: `expires_in`, `expires_at`, `jwt_exp`,
    /// `cookie_max_age`, `cookie_expires` or `none`.
    #[serde(default)]
    pub expiry_source: String,
    /// The declared lifetime, seconds.
    #[serde(default)]
    pub declared_lifetime_s: Option<f64>,
    /// Renewals of this session.
    #[serde(default)]
    pub session_renewals: u64,
    /// Consecutive failed renewal attempts.
    #[serde(default)]
    pub renewal_failures: u64,
    /// `before_expiry` only: when the next renewal is due (`null`: no
    /// declared expiry).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub next_renewal_at: Option<Option<String>>,
}

/// What a run did, and the check's history totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFacts {
    /// The first declared lifetime of this check's history, seconds.
    #[serde(default)]
    pub first_declared_lifetime_s: Option<f64>,
    /// The lifetime declared before this run's, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_declared_lifetime_s: Option<f64>,
    /// Issuance to first rejection, seconds (a session was rejected in this run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_lifetime_s: Option<f64>,
    /// The last observed lifetime of this check's history (no rejection in this run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observed_lifetime_s: Option<f64>,
    /// Logins in this check's history.
    #[serde(default)]
    pub logins: u64,
    /// Renewals in this check's history.
    #[serde(default)]
    pub renewals: u64,
    /// The server's clock minus the probe's, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_clock_offset_ms: Option<i64>,
    /// `date` or `jwt_iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_clock_offset_source: Option<String>,
    /// Logins and renewals made in the run.
    #[serde(default)]
    pub events: Vec<Event>,
    /// The protected requests made.
    #[serde(default)]
    pub requests: Vec<RequestRecord>,
    /// Every finding of the run (the first by priority decided its code).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// The session is kept in the state directory (else memory only).
    /// Always present: it tells a finished run from none.
    pub persisted: bool,
}

/// A login, refresh or re-login.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `login`, `refresh` or `relogin`.
    pub kind: String,
    /// When, RFC 3339.
    pub at: String,
    /// It gave a credential.
    pub ok: bool,
    /// The response status, when a response came.
    pub status: Option<u16>,
    /// The lifetime declared (successful events; `null`: none declared).
    #[serde(skip_serializing_if = "Option::is_none", with = "double_option")]
    pub declared_lifetime_s: Option<Option<f64>>,
    /// Where the expiry came from (successful events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_source: Option<String>,
    /// Why it failed.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::check::failure::lenient_code"
    )]
    pub failure_code: Option<FailureCode>,
    /// The failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Timings.
    pub phases_us: Phases,
}

/// One protected request, an entry of `details.requests`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestRecord {
    /// Its name (default: the URL).
    pub name: String,
    /// The URL.
    pub url: String,
    /// The method.
    pub method: String,
    /// The status, when a response came.
    pub status: Option<u16>,
    /// Passed.
    pub ok: bool,
    /// Why not.
    #[serde(deserialize_with = "crate::check::failure::lenient_code")]
    pub failure_code: Option<FailureCode>,
    /// The failure's message.
    pub failure_message: Option<String>,
    /// The credential used: `current`, `renewed`, `previous` or `relogin`.
    pub credential: String,
    /// A retry after a re-login.
    pub retry: bool,
    /// The assertions evaluated.
    pub assertions: Vec<AssertionResult>,
    /// Timings.
    pub phases_us: Phases,
}

/// A finding: a code and its message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Finding {
    /// The code.
    #[serde(deserialize_with = "crate::check::failure::lenient_code")]
    pub code: Option<FailureCode>,
    /// The message.
    pub message: String,
}

impl Observed {
    /// Replaces what `scrub` changes in every text of the observations: the
    /// last guard that no credential value leaves the check.
    pub fn scrub(&mut self, scrub: &dyn Fn(&str) -> String) {
        let s = |t: &mut String| *t = scrub(t);
        let o = |t: &mut Option<String>| {
            if let Some(t) = t {
                *t = scrub(t);
            }
        };
        s(&mut self.renewal);
        s(&mut self.login_method);
        if let Some(f) = &mut self.session {
            s(&mut f.session_id);
            s(&mut f.expiry_source);
        }
        let Some(run) = &mut self.run else { return };
        o(&mut run.server_clock_offset_source);
        for e in &mut run.events {
            s(&mut e.kind);
            o(&mut e.expiry_source);
            o(&mut e.message);
        }
        for r in &mut run.requests {
            s(&mut r.name);
            s(&mut r.url);
            s(&mut r.method);
            o(&mut r.failure_message);
            for a in &mut r.assertions {
                s(&mut a.name);
                o(&mut a.message);
                scrub_value(&mut a.expected, scrub);
                scrub_value(&mut a.actual, scrub);
            }
        }
        for f in &mut run.findings {
            s(&mut f.message);
        }
    }
}

fn scrub_value(v: &mut Value, scrub: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = scrub(s),
        Value::Array(a) => a.iter_mut().for_each(|v| scrub_value(v, scrub)),
        Value::Object(o) => o.values_mut().for_each(|v| scrub_value(v, scrub)),
        _ => {}
    }
}
