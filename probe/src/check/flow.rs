//! The `flow` kind: ordered steps, each one HTTP request with the whole
//! vocabulary of an `http` check (its `[checks.http]` table as the step's
//! `http`, validated by [`super::http::RawHttp::validate`] and run by the same
//! exchange, redirect and assertion machinery), with variables carried
//! between steps:
//! - `secrets`: `{ env = … }` / `{ file = … }`, resolved at load; never in
//!   details, messages or logs (every value is scrubbed from both).
//! - `variables`: constants.
//! - `extract` of a step: from its final response's JSON (`json_path`), a
//!   header, a cookie, or a regex over the body (the first group, else the
//!   match); `secret = true` treats the value like a secret.
//!
//! `{{name}}` is filled in a step's `url`, header values and body (`body`,
//! the string values of `json_body`, `form` values); a name must be a secret,
//! a variable, or extracted by an earlier step (the scheme and host of a url
//! come from variables: they are validated at load). One cookie jar spans the
//! steps (every hop's `Set-Cookie`; [`cookie`]). Each step has its own
//! optional `timeout`; the check's `timeout` bounds the whole flow. The flow
//! stops at the first failing step.
//!
//! One flow is one check: one result, one alert. Its code is the failing
//! step's own (`unexpected_status`, `json_path_mismatch`, `timeout`, …,
//! or `flow_extract_failed`), wrapped in [`Failure::OnStep`], which names
//! the step.
//!
//! Not supported: `samples > 1` and `addresses = "all"` in a step (a step's
//! response feeds the next one; use an http check for those), and borrowing
//! a `session` check's credentials: the session's state belongs to its own
//! check's schedule and renewal (a flow could run before its first login or
//! during a renewal, and the controller does not promise both run on one
//! probe) — log in as the flow's first step instead.
//!
//! # Details ([`Observed`])
//! ```text
//! steps_total                the steps configured
//! steps: [ { index, name, ok, failure_code, failure_message,
//!            extracted: { name: value | "**REDACTED**" },
//!            phases_us, request: <an http check's details for this step> } ]
//!                            the steps run, in order (a failing step is the last)
//! cookies                    names of the cookies the jar holds (never values)
//! ```

pub mod cookie;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

use self::cookie::CookieJar;
use super::{
    Failure, KindResult, Phases, RunContext,
    http::{
        self as http_kind, AddressMode, HttpSpec, RawHttp, exchange, request::form_body, sample,
    },
    session::{RawSecretRef, placeholders, render},
};
use crate::config::{Dur, Problems, Secret};

/// Largest number of steps.
pub const MAX_STEPS: usize = 32;
/// What a secret looks like in details and messages.
pub const REDACTED: &str = "**REDACTED**";

/// `[checks.flow]` as written in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    /// Secrets usable as `{{name}}`: `{ password = { env = "SHOP_PASSWORD" } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, RawSecretRef>,
    /// Constants usable as `{{name}}`: `{ item = "probe-widget" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// The steps, in order (1–32).
    pub steps: Vec<RawStep>,
}

/// One step: `[[checks.flow.steps]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RawFlowStep")]
pub struct RawStep {
    /// Name in details and messages: lowercase letters, digits, `-`, `_`.
    /// Example: `"create-order"`.
    pub name: String,
    /// The request and its assertions: every key of `[checks.http]`.
    /// Example: `{ url = "https://shop.example.net/api/orders", method = "POST", json_body = { item = "x" }, expected_status = [201] }`.
    pub http: RawHttp,
    /// Variables taken from the response for later steps:
    /// `{ order_id = { json_path = "$.id" }, token = { json_path = "$.token", secret = true } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extract: BTreeMap<String, RawExtract>,
    /// This step's deadline (within the check's). Example: `"2s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

/// Where a variable comes from: exactly one of `json_path`, `header`,
/// `cookie`, `regex`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RawFlowExtract")]
pub struct RawExtract {
    /// RFC 9535 JSONPath into the JSON body; the first node (strings as
    /// they are, other values as JSON text). Example: `"$.id"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// A response header. Example: `"location"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A cookie of the jar (set by this step or before). Example: `"session"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// A regex over the body: its first group, else the whole match.
    /// Example: `"order (ord-\\d+) created"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Treat the value as a secret (redacted everywhere). Default false;
    /// cookies are always secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<bool>,
}

/// A validated extraction source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// JSONPath (as written, parsed).
    Json(String, JsonPath),
    /// A header.
    Header(HeaderName),
    /// A cookie of the jar.
    Cookie(String),
    /// A regex over the body.
    Regex(super::assertion::Pattern),
}

impl Source {
    /// How the source reads in messages: `"$.id"`, `"header location"`…
    pub fn describe(&self) -> String {
        match self {
            Source::Json(p, _) => p.clone(),
            Source::Header(h) => format!("header {h}"),
            Source::Cookie(c) => format!("cookie {c}"),
            Source::Regex(r) => format!("regex /{}/", r.0.as_str()),
        }
    }
}

/// A validated extraction.
#[derive(Debug, Clone, PartialEq)]
pub struct Extract {
    /// The variable.
    pub name: String,
    /// From where.
    pub source: Source,
    /// Redacted.
    pub secret: bool,
}

/// The parts of a step's request that hold placeholders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Templates {
    /// The URL, when it has placeholders.
    pub url: Option<String>,
    /// Header values with placeholders.
    pub headers: Vec<(HeaderName, String)>,
    /// The body, when it has placeholders.
    pub body: Option<BodyTemplate>,
}

/// A body with placeholders.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    /// `body`.
    Text(String),
    /// `json_body` (string values are templates).
    Json(Value),
    /// `form` (values are templates).
    Form(BTreeMap<String, String>),
}

/// A validated step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    /// Name.
    pub name: String,
    /// The request, placeholders filled with a stand-in (validated).
    pub http: HttpSpec,
    /// What is filled at run time.
    pub templates: Templates,
    /// Variables taken from the response.
    pub extract: Vec<Extract>,
    /// Own deadline.
    pub timeout: Option<Duration>,
}

/// A validated flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpec {
    /// Resolved secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// Constants.
    pub variables: BTreeMap<String, String>,
    /// Steps.
    pub steps: Vec<StepSpec>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
}

fn json_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

fn render_json(v: &Value, vars: &dyn Fn(&str) -> Option<String>) -> Value {
    match v {
        Value::String(s) => Value::String(render(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|v| render_json(v, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), render_json(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl RawStep {
    /// `constants` (the variables) fill placeholders for validation; secrets
    /// and values extracted at run time stand in as `x`, so the scheme and
    /// host of a url come from variables.
    fn validate(
        &self,
        path: &str,
        known: &dyn Fn(&str) -> bool,
        constants: &BTreeMap<String, String>,
        check_timeout: Duration,
        problems: &mut Problems,
    ) -> Option<StepSpec> {
        let stand_in = |n: &str| Some(constants.get(n).cloned().unwrap_or_else(|| "x".to_owned()));
        let before = problems.len();
        if !valid_name(&self.name) {
            problems.push(
                format!("{path}.name"),
                format!(
                    "invalid step name {:?}: lowercase letters, digits, '-' or '_', e.g. \"create-order\"",
                    self.name
                ),
            );
        }
        let h = &self.http;
        let hp = format!("{path}.http");
        let mut check = |text: &str, at: String| {
            for n in placeholders(text) {
                if !known(n) {
                    problems.push(
                        at.clone(),
                        format!("unknown placeholder {{{{{n}}}}}: name a secret, a variable or a value extracted by an earlier step, e.g. extract = {{ {n} = {{ json_path = \"$.{n}\" }} }}"),
                    );
                }
            }
        };
        check(&h.url, format!("{hp}.url"));
        for (k, v) in &h.headers {
            check(v, format!("{hp}.headers.{k}"));
        }
        if let Some(b) = &h.body {
            check(b, format!("{hp}.body"));
        }
        if let Some(j) = &h.json_body {
            let mut strings = Vec::new();
            json_strings(j, &mut strings);
            for s in strings {
                check(s, format!("{hp}.json_body"));
            }
        }
        if let Some(f) = &h.form {
            for (k, v) in f {
                check(v, format!("{hp}.form.{k}"));
            }
        }
        let has = |s: &str| !placeholders(s).is_empty();
        let templates = Templates {
            url: has(&h.url).then(|| h.url.clone()),
            headers: h
                .headers
                .iter()
                .filter(|(_, v)| has(v))
                .filter_map(|(k, v)| {
                    HeaderName::try_from(k.as_str())
                        .ok()
                        .map(|n| (n, v.clone()))
                })
                .collect(),
            body: if let Some(b) = h.body.as_ref().filter(|b| has(b)) {
                Some(BodyTemplate::Text(b.clone()))
            } else if let Some(j) = &h.json_body {
                let mut strings = Vec::new();
                json_strings(j, &mut strings);
                strings
                    .iter()
                    .any(|s| has(s))
                    .then(|| BodyTemplate::Json(j.clone()))
            } else {
                h.form
                    .as_ref()
                    .filter(|f| f.values().any(|v| has(v)))
                    .map(|f| BodyTemplate::Form(f.clone()))
            },
        };
        let mut standin = h.clone();
        standin.url = render(&h.url, &stand_in);
        for v in standin.headers.values_mut() {
            *v = render(v, &stand_in);
        }
        if let Some(b) = &mut standin.body {
            *b = render(b, &stand_in);
        }
        if let Some(j) = &mut standin.json_body {
            *j = render_json(j, &stand_in);
        }
        if let Some(f) = &mut standin.form {
            for v in f.values_mut() {
                *v = render(v, &stand_in);
            }
        }
        let http = standin.validate(&hp, problems);
        if let Some(spec) = &http
            && (spec.samples > 1 || spec.addresses == AddressMode::All)
        {
            problems.push(
                hp.clone(),
                "a flow step makes one request: samples and addresses = \"all\" belong in an http check",
            );
        }
        let mut extract = Vec::new();
        for (name, e) in &self.extract {
            let p = format!("{path}.extract.{name}");
            if !valid_name(name) || name.contains('-') {
                problems.push(
                    p.clone(),
                    format!("invalid variable name {name:?}: lowercase letters, digits and '_', e.g. \"order_id\""),
                );
            }
            let sources = [
                e.json_path.is_some(),
                e.header.is_some(),
                e.cookie.is_some(),
                e.regex.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                problems.push(
                    p.clone(),
                    "an extraction has exactly one of json_path, header, cookie or regex, e.g. { json_path = \"$.id\" }",
                );
                continue;
            }
            let source = if let Some(j) = &e.json_path {
                super::assertion::json::parse_path(j, format!("{p}.json_path"), problems)
                    .map(|jp| Source::Json(j.clone(), jp))
            } else if let Some(hn) = &e.header {
                HeaderName::try_from(hn.as_str())
                    .map_err(|_| {
                        problems.push(
                            format!("{p}.header"),
                            format!("invalid header name {hn:?}, e.g. \"location\""),
                        )
                    })
                    .ok()
                    .map(Source::Header)
            } else if let Some(c) = &e.cookie {
                Some(Source::Cookie(c.clone()))
            } else {
                e.regex.as_ref().and_then(|r| {
                    super::assertion::compile(r, format!("{p}.regex"), problems).map(Source::Regex)
                })
            };
            if let Some(source) = source {
                let secret = e.secret.unwrap_or(false) || matches!(source, Source::Cookie(_));
                extract.push(Extract {
                    name: name.clone(),
                    source,
                    secret,
                });
            }
        }
        let timeout = self.timeout.map(Dur::get);
        if let Some(t) = timeout
            && (t.is_zero() || t > check_timeout)
        {
            problems.push(
                format!("{path}.timeout"),
                format!(
                    "a step's timeout \"{}\" must be above 0 and at most the check's \"{}\"",
                    Dur(t),
                    Dur(check_timeout)
                ),
            );
        }
        if problems.len() != before {
            return None;
        }
        Some(StepSpec {
            name: self.name.clone(),
            http: http?,
            templates,
            extract,
            timeout,
        })
    }
}

impl RawFlow {
    /// Validates; problems are recorded under `path` (`checks[0].flow`).
    pub fn validate(
        &self,
        path: &str,
        timeout: Duration,
        problems: &mut Problems,
    ) -> Option<FlowSpec> {
        let before = problems.len();
        let mut secrets = BTreeMap::new();
        for (name, s) in &self.secrets {
            let p = format!("{path}.secrets.{name}");
            if !valid_name(name) || name.contains('-') {
                problems.push(
                    p.clone(),
                    format!("invalid secret name {name:?}: lowercase letters, digits and '_'"),
                );
            }
            if let Some(v) = problems.secret(&s.0, p) {
                secrets.insert(name.clone(), v);
            }
        }
        for name in self.variables.keys() {
            if !valid_name(name) || name.contains('-') {
                problems.push(
                    format!("{path}.variables.{name}"),
                    format!("invalid variable name {name:?}: lowercase letters, digits and '_'"),
                );
            } else if self.secrets.contains_key(name) {
                problems.push(
                    format!("{path}.variables.{name}"),
                    format!("{name:?} is also a secret: use one name once"),
                );
            }
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            problems.push(
                format!("{path}.steps"),
                format!(
                    "a flow has 1 to {MAX_STEPS} steps, got {}: add [[checks.flow.steps]] tables",
                    self.steps.len()
                ),
            );
        }
        let mut known: Vec<String> = self
            .secrets
            .keys()
            .chain(self.variables.keys())
            .cloned()
            .collect();
        // Secrets stand in as `x` too: the validated spec (and its Debug) never holds one.
        let constants = self.variables.clone();
        let mut steps = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let p = format!("{path}.steps[{i}]");
            if names.contains(&s.name.as_str()) {
                problems.push(
                    format!("{p}.name"),
                    format!("step name {:?} is used twice", s.name),
                );
            }
            names.push(&s.name);
            let k = known.clone();
            let is_known = move |n: &str| k.iter().any(|x| x == n);
            steps.extend(s.validate(&p, &is_known, &constants, timeout, problems));
            known.extend(s.extract.keys().cloned());
        }
        if problems.len() != before {
            return None;
        }
        Some(FlowSpec {
            secrets,
            variables: self.variables.clone(),
            steps,
        })
    }
}

/// One step as recorded in `details.steps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepRecord {
    /// 0-based position.
    pub index: usize,
    /// The step's name.
    pub name: String,
    /// Passed (request, assertions and extractions).
    pub ok: bool,
    /// Why not.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::check::failure::lenient_code"
    )]
    pub failure_code: Option<super::FailureCode>,
    /// The failure's message (scrubbed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// Variables this step extracted (secret ones redacted).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extracted: BTreeMap<String, String>,
    /// The step's phases (summed over its redirect hops).
    pub phases_us: Phases,
    /// The step's request, as an http check's details.
    pub request: http_kind::Observed,
}

/// The `details` of a flow result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// Steps configured.
    pub steps_total: usize,
    /// Steps run, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// Names of the cookies in the jar.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
}

impl Observed {
    /// The observations before any step ran.
    pub fn of(spec: &FlowSpec) -> Self {
        Observed {
            steps_total: spec.steps.len(),
            ..Observed::default()
        }
    }
}

/// The variables of a run: value and whether it is secret.
type Vars = BTreeMap<String, (String, bool)>;

fn extract_failure(e: &Extract, problem: impl Into<String>) -> Failure {
    Failure::FlowExtractFailed {
        variable: e.name.clone(),
        from: e.source.describe(),
        problem: problem.into(),
    }
}

impl StepSpec {
    /// The request with the variables filled in.
    fn fill(&self, vars: &Vars) -> Result<HttpSpec, Failure> {
        let get = |n: &str| vars.get(n).map(|(v, _)| v.clone());
        let mut spec = self.http.clone();
        let invalid = |what: String| Failure::FlowExtractFailed {
            variable: String::new(),
            from: what,
            problem: "not valid once the variables are filled in".into(),
        };
        if let Some(u) = &self.templates.url {
            let url = render(u, &get);
            let uri: Uri = url
                .parse()
                .ok()
                .filter(|u: &Uri| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                })
                .ok_or_else(|| invalid("the url".into()))?;
            let (host, port) = exchange::host_port(&uri);
            spec.https = uri.scheme_str() == Some("https");
            spec.host = host;
            spec.port = port;
            spec.url = url;
            spec.uri = uri;
        }
        for (name, t) in &self.templates.headers {
            let secret = placeholders(t)
                .iter()
                .any(|n| vars.get(*n).is_some_and(|v| v.1));
            let mut value = HeaderValue::try_from(render(t, &get))
                .map_err(|_| invalid(format!("header {name}")))?;
            if secret || name == http::header::AUTHORIZATION || name == http::header::COOKIE {
                value.set_sensitive(true);
            }
            spec.headers.retain(|(k, _)| k != name);
            spec.headers.push((name.clone(), value));
        }
        spec.body = match &self.templates.body {
            None => spec.body,
            Some(BodyTemplate::Text(t)) => Some(Bytes::from(render(t, &get))),
            Some(BodyTemplate::Json(j)) => Some(Bytes::from(render_json(j, &get).to_string())),
            Some(BodyTemplate::Form(f)) => {
                let filled: Vec<(String, String)> = f
                    .iter()
                    .map(|(k, v)| (k.clone(), render(v, &get)))
                    .collect();
                Some(Bytes::from(form_body(
                    filled.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )))
            }
        };
        Ok(spec)
    }

    fn needs_body(&self) -> bool {
        self.extract
            .iter()
            .any(|e| matches!(e.source, Source::Json(..) | Source::Regex(_)))
    }
}

/// Takes `e`'s value from the final response (and the jar).
fn take(e: &Extract, fin: &super::redirect::Final, jar: &CookieJar) -> Result<String, Failure> {
    match &e.source {
        Source::Json(_, path) => {
            let doc: Value = serde_json::from_slice(&fin.body)
                .map_err(|err| extract_failure(e, format!("the body is not JSON: {err}")))?;
            let node = path
                .query(&doc)
                .first()
                .cloned()
                .ok_or_else(|| extract_failure(e, "the path selects nothing"))?;
            Ok(match node {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        }
        Source::Header(h) => fin
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                extract_failure(e, "the response has no such header (or it is not text)")
            }),
        Source::Cookie(c) => jar
            .get(c)
            .map(|s| s.expose().to_owned())
            .ok_or_else(|| extract_failure(e, "no such cookie was set")),
        Source::Regex(r) => {
            let text = String::from_utf8_lossy(&fin.body);
            let caps =
                r.0.captures(&text)
                    .ok_or_else(|| extract_failure(e, "the body does not match"))?;
            Ok(caps
                .get(1)
                .or_else(|| caps.get(0))
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default())
        }
    }
}

/// Runs the flow once within `timeout`.
pub async fn run(spec: &FlowSpec, timeout: Duration, ctx: &RunContext) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut vars: Vars = spec
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), (v.expose().to_owned(), true)))
        .chain(
            spec.variables
                .iter()
                .map(|(k, v)| (k.clone(), (v.clone(), false))),
        )
        .collect();
    let mut jar = CookieJar::default();
    let mut observed = Observed::of(spec);
    let mut phases = Phases::default();
    let mut result = Ok(());
    for (index, step) in spec.steps.iter().enumerate() {
        let started = tokio::time::Instant::now();
        let step_deadline = step.timeout.map_or(deadline, |t| deadline.min(started + t));
        let budget = step_deadline.saturating_duration_since(started);
        // Boxed: a step's record (an http check's details) is large and the
        // run holds it across every await of the step.
        let mut record = Box::new(StepRecord {
            index,
            name: step.name.clone(),
            ..StepRecord::default()
        });
        let outcome = Box::pin(run_step(
            step,
            &mut vars,
            &mut jar,
            step_deadline,
            budget,
            ctx,
            &mut record,
        ))
        .await;
        phases.dns = exchange::add(phases.dns, record.phases_us.dns);
        phases.connect = exchange::add(phases.connect, record.phases_us.connect);
        phases.tls = exchange::add(phases.tls, record.phases_us.tls);
        phases.first_byte = exchange::add(phases.first_byte, record.phases_us.first_byte);
        match outcome {
            Ok(()) => {
                record.ok = true;
                observed.steps.push(*record);
            }
            Err(f) => {
                let f = Failure::OnStep {
                    step: index + 1,
                    name: step.name.clone(),
                    failure: Box::new(f),
                };
                record.failure_code = Some(f.code());
                record.failure_message = Some(f.to_string());
                observed.steps.push(*record);
                result = Err(f);
                break;
            }
        }
    }
    observed.cookies = jar.names().to_vec();
    // Secrets (configured, extracted as secret, cookie values) leave no trace.
    let mut hidden: Vec<String> = vars
        .values()
        .filter(|(v, s)| *s && !v.is_empty())
        .map(|(v, _)| v.clone())
        .chain(jar.values().filter(|v| !v.is_empty()).map(str::to_owned))
        .collect();
    hidden.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let scrub = |s: &str| {
        hidden
            .iter()
            .fold(s.to_owned(), |acc, h| acc.replace(h.as_str(), REDACTED))
    };
    let observed = scrub_observed(observed, &scrub);
    let result = result.map_err(|f| f.scrubbed(scrub));
    KindResult {
        phases,
        result,
        observed: super::Observed::Flow(Box::new(observed)),
    }
}

/// Every string of the details with `scrub` applied (a serde round trip,
/// which the details' types survive by construction).
fn scrub_observed(o: Observed, scrub: &dyn Fn(&str) -> String) -> Observed {
    fn walk(v: &mut Value, scrub: &dyn Fn(&str) -> String) {
        match v {
            Value::String(s) => *s = scrub(s),
            Value::Array(a) => a.iter_mut().for_each(|v| walk(v, scrub)),
            Value::Object(m) => m.values_mut().for_each(|v| walk(v, scrub)),
            _ => {}
        }
    }
    let Ok(mut v) = serde_json::to_value(&o) else {
        return o;
    };
    walk(&mut v, scrub);
    serde_json::from_value(v).unwrap_or(o)
}

async fn run_step(
    step: &StepSpec,
    vars: &mut Vars,
    jar: &mut CookieJar,
    deadline: tokio::time::Instant,
    budget: Duration,
    ctx: &RunContext,
    record: &mut StepRecord,
) -> Result<(), Failure> {
    let spec = step.fill(vars)?;
    record.request = http_kind::Observed {
        url: spec.url.clone(),
        method: spec.method.as_str().to_owned(),
        ..http_kind::Observed::default()
    };
    let t = Instant::now();
    let (addrs, dns) =
        match tokio::time::timeout_at(deadline, Box::pin(sample::resolve(&spec, deadline))).await {
            Ok(Ok(r)) => r,
            Ok(Err(f)) => return Err(f),
            Err(_) => {
                record.request.last.timeout_phase = Some(exchange::Phase::Dns.name().to_owned());
                return Err(Failure::Timeout {
                    phase: exchange::Phase::Dns,
                    after: budget,
                    target: Some(spec.host.clone()),
                });
            }
        };
    let Some(addr) = addrs.first().copied() else {
        return Err(Failure::DnsFailure {
            name: spec.host.clone(),
            resolver: Some(spec.resolver.to_string()),
            reason: "no addresses".into(),
        });
    };
    let (s, fin) = Box::pin(sample::run_sample_final(
        &spec,
        addr,
        0,
        deadline,
        budget,
        ctx,
        step.needs_body(),
        Some(jar as &mut dyn super::redirect::Jar),
    ))
    .await;
    record.phases_us = s.phases;
    record.phases_us.dns = exchange::add(dns, s.phases.dns);
    record.phases_us.total = t.elapsed();
    record.request.address = Some(s.address.to_string());
    record.request.last = s.last_hop();
    record.request.chain = Some(s.chain.clone());
    record.request.assertions = Some(s.assertions.clone());
    s.result?;
    let Some(fin) = fin else {
        return Ok(());
    };
    for e in &step.extract {
        let value = take(e, &fin, jar)?;
        record.extracted.insert(
            e.name.clone(),
            if e.secret {
                REDACTED.to_owned()
            } else {
                value.clone()
            },
        );
        vars.insert(e.name.clone(), (value, e.secret));
    }
    Ok(())
}

/// `outpost-probe` text for a flow: one line per step.
pub fn render_steps(o: &super::Outcome) -> String {
    let default = Observed::default();
    let d = match &o.observed {
        super::Observed::Flow(d) => d,
        _ => &default,
    };
    let mut t = format!("flow {} ({} steps)\n", o.check_id, d.steps_total);
    for s in &d.steps {
        let status = s
            .request
            .last
            .status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        t.push_str(&format!(
            "  {} {:<16} {} {} → {status} · {}\n",
            if s.ok { "ok  " } else { "FAIL" },
            s.name,
            s.request.method,
            s.request.url,
            crate::human::duration(s.phases_us.total)
        ));
        for (k, v) in &s.extracted {
            t.push_str(&format!("         {k} = {v}\n"));
        }
    }
    match &o.result {
        Ok(()) => t.push_str("verdict PASS\n"),
        Err(f) => t.push_str(&format!("verdict FAIL {}: {f}\n", f.code())),
    }
    t
}
