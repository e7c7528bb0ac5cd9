//! Assertions on an HTTP response: status, headers, body text and pattern,
//! JSONPath (RFC 9535), freshness of a timestamp, and latency budgets.
//!
//! Every assertion is evaluated and recorded (`details.assertions`), each
//! with its own failure code; the sample fails with the first failing one in
//! this order: status, headers, body, json, freshness, latency. An assertion
//! that cannot be evaluated (body not JSON, timestamp missing) fails with its
//! code and `"evaluated": false`, so "failed" and "could not evaluate" stay
//! apart.

pub mod freshness;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_json_path::JsonPath;
use time::OffsetDateTime;

use super::{FailureCode, Phases};
use crate::config::{Dur, Problems};

/// One entry of `expected_status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum StatusMatch {
    /// Exactly this status.
    Code(u16),
    /// `"2xx"` or `"200-299"`.
    Range(String),
}

/// One entry of `expected_headers`: a response header and what it must be.
/// Exactly one of `present`, `equals`, `matches`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderAssertion {
    /// Header name, case-insensitive. Example: `"content-type"`.
    pub name: String,
    /// `true`: the header must be present; `false`: it must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Some value of the header must equal this exactly. Example: `"no-store"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// Some value of the header must match this regex (unanchored). Example: `"max-age=\\d+"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
}

/// One entry of `json`: a JSONPath (RFC 9535) into the JSON body and what the
/// nodes it selects must be. Exactly one of `exists`, `equals`, or one or both
/// of `less_than` / `greater_than`. Every selected node must satisfy it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawJsonAssertion {
    /// RFC 9535 query. Example: `"$.status"`, `"$.services[?@.name=='db'].up"`.
    pub path: String,
    /// `true`: the query selects at least one node; `false`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// The node equals this value (numbers compare numerically). Example: `"ok"`, `3`, `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The node is a number strictly below this. Example: `100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less_than: Option<f64>,
    /// The node is a number strictly above this. Example: `0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_than: Option<f64>,
}

/// `freshness`: the data must be at most `max_age` old. The timestamp comes
/// from the JSON body (`json_path`) or a response header (`header`, e.g.
/// `"last-modified"`). Accepts RFC 3339, HTTP-dates, epoch seconds or
/// milliseconds (above 10^11 is milliseconds). Age equal to `max_age` passes;
/// older fails with `data_stale`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFreshness {
    /// JSONPath to the timestamp in the body. Example: `"$.updated_at"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Response header holding the timestamp. Example: `"last-modified"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Oldest acceptable data. Example: `"15m"`.
    pub max_age: Dur,
}

/// `latency`: budgets per phase, each optional. A phase is summed over every
/// hop of a redirect chain; `total` is the whole chain including the body.
/// Exceeding one fails with `latency_budget_exceeded` naming the phase.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLatency {
    /// Whole request (all hops, body read). Example: `"800ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Dur>,
    /// From sending the request to the response head. Example: `"300ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<Dur>,
    /// TLS handshake. Example: `"200ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Dur>,
    /// TCP connect. Example: `"100ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Dur>,
    /// Name resolution. Example: `"50ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dur>,
}

/// A compiled regex compared by its source (specs are compared for changes).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// What a header must be.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderRule {
    /// Present (`true`) or absent.
    Present(bool),
    /// Some value equals.
    Equals(String),
    /// Some value matches.
    Matches(Pattern),
}

/// A validated header assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderAssertion {
    /// Header name.
    pub name: http::HeaderName,
    /// Rule.
    pub rule: HeaderRule,
}

/// What the nodes selected by a JSONPath must be.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonRule {
    /// At least one node (`true`) or none.
    Exists(bool),
    /// Equal to a value.
    Equals(Value),
    /// A number within the open bounds.
    Range {
        /// Strictly greater than.
        greater_than: Option<f64>,
        /// Strictly less than.
        less_than: Option<f64>,
    },
}

/// A validated JSONPath assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonAssertion {
    /// The query as written.
    pub source: String,
    /// Parsed query.
    pub path: JsonPath,
    /// Rule.
    pub rule: JsonRule,
}

/// Where the freshness timestamp is read.
#[derive(Debug, Clone, PartialEq)]
pub enum FreshnessSource {
    /// A JSONPath into the body.
    Json(String, JsonPath),
    /// A response header.
    Header(http::HeaderName),
}

/// A validated freshness assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    /// Where the timestamp is.
    pub source: FreshnessSource,
    /// Oldest acceptable age (inclusive).
    pub max_age: Duration,
}

/// Validated response assertions (the status set lives with the request).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assertions {
    /// Header assertions.
    pub headers: Vec<HeaderAssertion>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    /// Pattern the body must match.
    pub body_matches: Option<Pattern>,
    /// JSONPath assertions.
    pub json: Vec<JsonAssertion>,
    /// Freshness.
    pub freshness: Option<Freshness>,
    /// Budgets: (phase name, budget).
    pub latency: Vec<(&'static str, Duration)>,
}

/// The raw assertion keys of `[checks.http]`, borrowed for validation.
#[derive(Debug, Clone, Copy)]
pub struct RawAssertions<'a> {
    /// `expected_headers`.
    pub headers: &'a [RawHeaderAssertion],
    /// `body_contains`.
    pub body_contains: Option<&'a String>,
    /// `body_matches`.
    pub body_matches: Option<&'a String>,
    /// `json`.
    pub json: &'a [RawJsonAssertion],
    /// `freshness`.
    pub freshness: Option<&'a RawFreshness>,
    /// `latency`.
    pub latency: Option<&'a RawLatency>,
}

fn compile(re: &str, path: String, problems: &mut Problems) -> Option<Pattern> {
    match regex::RegexBuilder::new(re).size_limit(1 << 20).build() {
        Ok(r) => Some(Pattern(r)),
        Err(e) => {
            problems.push(path, format!("invalid regex {re:?}: {e}"));
            None
        }
    }
}

fn json_path(q: &str, path: String, problems: &mut Problems) -> Option<JsonPath> {
    match JsonPath::parse(q) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(
                path,
                format!("invalid JSONPath {q:?}: {e}; write RFC 9535 syntax, e.g. \"$.status\""),
            );
            None
        }
    }
}

fn header_name(n: &str, path: String, problems: &mut Problems) -> Option<http::HeaderName> {
    match http::HeaderName::try_from(n) {
        Ok(h) => Some(h),
        Err(_) => {
            problems.push(path, format!("invalid header name {n:?}"));
            None
        }
    }
}

impl RawAssertions<'_> {
    /// Validates; problems are recorded under `path` (`checks[0].http`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Assertions {
        let mut out = Assertions::default();
        for (i, h) in self.headers.iter().enumerate() {
            let p = format!("{path}.expected_headers[{i}]");
            let name = header_name(&h.name, format!("{p}.name"), problems);
            let rule = match (h.present, &h.equals, &h.matches) {
                (Some(b), None, None) => Some(HeaderRule::Present(b)),
                (None, Some(v), None) => Some(HeaderRule::Equals(v.clone())),
                (None, None, Some(re)) => {
                    compile(re, format!("{p}.matches"), problems).map(HeaderRule::Matches)
                }
                _ => {
                    problems.push(p.clone(), "set exactly one of `present`, `equals` or `matches`, e.g. { name = \"content-type\", matches = \"^application/json\" }");
                    None
                }
            };
            if let (Some(name), Some(rule)) = (name, rule) {
                out.headers.push(HeaderAssertion { name, rule });
            }
        }
        if let Some(s) = self.body_contains {
            if s.is_empty() {
                problems.push(
                    format!("{path}.body_contains"),
                    "body_contains is empty: remove it or give the text to look for",
                );
            }
            out.body_contains = Some(s.clone());
        }
        if let Some(re) = self.body_matches {
            out.body_matches = compile(re, format!("{path}.body_matches"), problems);
        }
        for (i, j) in self.json.iter().enumerate() {
            let p = format!("{path}.json[{i}]");
            let parsed = json_path(&j.path, format!("{p}.path"), problems);
            let range = j.less_than.is_some() || j.greater_than.is_some();
            let rule = match (j.exists, &j.equals, range) {
                (Some(b), None, false) => Some(JsonRule::Exists(b)),
                (None, Some(v), false) => Some(JsonRule::Equals(v.clone())),
                (None, None, true) => Some(JsonRule::Range {
                    greater_than: j.greater_than,
                    less_than: j.less_than,
                }),
                _ => {
                    problems.push(p.clone(), "set exactly one of `exists`, `equals`, or `less_than`/`greater_than`, e.g. { path = \"$.status\", equals = \"ok\" }");
                    None
                }
            };
            if let (Some(path), Some(rule)) = (parsed, rule) {
                out.json.push(JsonAssertion {
                    source: j.path.clone(),
                    path,
                    rule,
                });
            }
        }
        if let Some(f) = self.freshness {
            let p = format!("{path}.freshness");
            let source = match (&f.json_path, &f.header) {
                (Some(q), None) => json_path(q, format!("{p}.json_path"), problems)
                    .map(|jp| FreshnessSource::Json(q.clone(), jp)),
                (None, Some(h)) => {
                    header_name(h, format!("{p}.header"), problems).map(FreshnessSource::Header)
                }
                _ => {
                    problems.push(p.clone(), "set exactly one of `json_path` or `header`, e.g. { json_path = \"$.updated_at\", max_age = \"15m\" }");
                    None
                }
            };
            if f.max_age.get().is_zero() {
                problems.push(format!("{p}.max_age"), "max_age must be greater than 0");
            }
            out.freshness = source.map(|source| Freshness {
                source,
                max_age: f.max_age.get(),
            });
        }
        if let Some(l) = self.latency {
            for (name, d) in [
                ("total", l.total),
                ("first_byte", l.first_byte),
                ("tls", l.tls),
                ("connect", l.connect),
                ("dns", l.dns),
            ] {
                if let Some(d) = d {
                    out.latency.push((name, d.get()));
                }
            }
        }
        out
    }
}

impl Assertions {
    /// True when the body must be kept in memory (up to `max_body`).
    pub fn needs_body(&self) -> bool {
        self.body_contains.is_some()
            || self.body_matches.is_some()
            || !self.json.is_empty()
            || matches!(
                self.freshness,
                Some(Freshness {
                    source: FreshnessSource::Json(..),
                    ..
                })
            )
    }
}

/// The outcome of one assertion, as recorded in `details.assertions`.
#[derive(Debug, Clone, Serialize)]
pub struct AssertionResult {
    /// What was asserted, e.g. `status`, `header content-type`, `json $.status`.
    pub name: String,
    /// `status`, `redirect`, `header`, `body`, `json`, `freshness` or `latency`.
    pub kind: &'static str,
    /// Passed.
    pub ok: bool,
    /// False when the input was missing or unusable (not JSON, no timestamp).
    pub evaluated: bool,
    /// What was expected.
    pub expected: Value,
    /// What was observed.
    pub actual: Value,
    /// The code a failure carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<FailureCode>,
    /// Human message for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Freshness only: the data's age in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
}

impl AssertionResult {
    /// A result; `message` is kept only on failure.
    pub fn new(
        name: impl Into<String>,
        kind: &'static str,
        ok: bool,
        code: FailureCode,
        expected: Value,
        actual: Value,
        message: String,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            ok,
            evaluated: true,
            expected,
            actual,
            failure_code: (!ok).then_some(code),
            message: (!ok).then_some(message),
            age_seconds: None,
        }
    }

    fn unevaluated(mut self) -> Self {
        self.evaluated = false;
        self
    }
}

/// The final response of a chain, as assertions see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Response headers.
    pub headers: &'a http::HeaderMap,
    /// The body, if kept (at most `max_body`).
    pub body: &'a [u8],
    /// Phases summed over the chain; `total` is the chain's wall time.
    pub phases: &'a Phases,
}

fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let cut = (0..=MAX)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &s[..cut])
}

fn ms(d: Duration) -> String {
    Dur(Duration::from_millis(d.as_millis() as u64)).to_string()
}

impl Assertions {
    /// Evaluates every assertion against `obs`; freshness ages are measured at `now`.
    pub fn evaluate(&self, obs: &Observed<'_>, now: OffsetDateTime) -> Vec<AssertionResult> {
        let mut out = Vec::new();
        for h in &self.headers {
            out.push(header(h, obs.headers));
        }
        let text = String::from_utf8_lossy(obs.body);
        if let Some(s) = &self.body_contains {
            let ok = text.contains(s.as_str());
            out.push(AssertionResult::new(
                "body_contains",
                "body",
                ok,
                FailureCode::BodyMismatch,
                json!(s),
                json!(clip(&text)),
                format!("body ({} bytes) does not contain {s:?}", obs.body.len()),
            ));
        }
        if let Some(p) = &self.body_matches {
            let ok = p.0.is_match(&text);
            out.push(AssertionResult::new(
                "body_matches",
                "body",
                ok,
                FailureCode::BodyMismatch,
                json!(p.0.as_str()),
                json!(clip(&text)),
                format!(
                    "body ({} bytes) does not match /{}/",
                    obs.body.len(),
                    p.0.as_str()
                ),
            ));
        }
        let parsed = (!self.json.is_empty()
            || matches!(
                self.freshness,
                Some(Freshness {
                    source: FreshnessSource::Json(..),
                    ..
                })
            ))
        .then(|| serde_json::from_slice::<Value>(obs.body).map_err(|e| e.to_string()));
        for j in &self.json {
            out.push(match &parsed {
                Some(Ok(doc)) => json_assertion(j, doc),
                _ => not_json(
                    &format!("json {}", j.source),
                    "json",
                    FailureCode::JsonPathMismatch,
                    &parsed,
                ),
            });
        }
        if let Some(f) = &self.freshness {
            out.push(freshness_assertion(f, obs.headers, &parsed, now));
        }
        for (phase, budget) in &self.latency {
            let took = match *phase {
                "total" => Some(obs.phases.total),
                "first_byte" => obs.phases.first_byte,
                "tls" => obs.phases.tls,
                "connect" => obs.phases.connect,
                _ => obs.phases.dns,
            };
            let name = format!("latency {phase}");
            let expected = json!(format!("<= {}", Dur(*budget)));
            out.push(match took {
                Some(t) => AssertionResult::new(
                    name,
                    "latency",
                    t <= *budget,
                    FailureCode::LatencyBudgetExceeded,
                    expected,
                    json!(ms(t)),
                    format!("{phase} took {} > budget {}", ms(t), Dur(*budget)),
                ),
                // A phase that did not happen (tls on http, dns for an IP) cannot exceed it.
                None => AssertionResult::new(
                    name,
                    "latency",
                    true,
                    FailureCode::LatencyBudgetExceeded,
                    expected,
                    Value::Null,
                    String::new(),
                )
                .unevaluated(),
            });
        }
        out
    }
}

fn not_json(
    name: &str,
    kind: &'static str,
    code: FailureCode,
    parsed: &Option<Result<Value, String>>,
) -> AssertionResult {
    let why = match parsed {
        Some(Err(e)) => format!("body is not JSON: {e}"),
        _ => "body is not JSON".to_owned(),
    };
    AssertionResult::new(name, kind, false, code, Value::Null, Value::Null, why).unevaluated()
}

fn header(h: &HeaderAssertion, headers: &http::HeaderMap) -> AssertionResult {
    let values: Vec<String> = headers
        .get_all(&h.name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let actual = if values.is_empty() {
        Value::Null
    } else {
        json!(values.iter().map(|v| clip(v)).collect::<Vec<_>>())
    };
    let name = format!("header {}", h.name);
    let code = FailureCode::HeaderMismatch;
    match &h.rule {
        HeaderRule::Present(want) => {
            let ok = values.is_empty() != *want;
            let msg = if *want {
                format!("response has no {} header", h.name)
            } else {
                format!("response has a {} header: {:?}", h.name, values)
            };
            AssertionResult::new(
                name,
                "header",
                ok,
                code,
                json!({ "present": want }),
                actual,
                msg,
            )
        }
        HeaderRule::Equals(want) => {
            let ok = values.iter().any(|v| v == want);
            let msg = format!("{} is {:?}, expected {want:?}", h.name, values);
            AssertionResult::new(
                name,
                "header",
                ok,
                code,
                json!({ "equals": want }),
                actual,
                msg,
            )
        }
        HeaderRule::Matches(p) => {
            let ok = values.iter().any(|v| p.0.is_match(v));
            let msg = format!(
                "{} is {:?}, which does not match /{}/",
                h.name,
                values,
                p.0.as_str()
            );
            AssertionResult::new(
                name,
                "header",
                ok,
                code,
                json!({ "matches": p.0.as_str() }),
                actual,
                msg,
            )
        }
    }
}

/// Numbers compare numerically (`1` equals `1.0`), everything else structurally.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn json_assertion(j: &JsonAssertion, doc: &Value) -> AssertionResult {
    let nodes = j.path.query(doc).all();
    let name = format!("json {}", j.source);
    let code = FailureCode::JsonPathMismatch;
    let actual = match nodes.len() {
        0 => Value::Null,
        1 => nodes[0].clone(),
        _ => Value::Array(nodes.iter().map(|v| (*v).clone()).collect()),
    };
    let clip_value = |v: Value| match v {
        Value::String(s) => Value::String(clip(&s)),
        other if other.to_string().len() > 200 => Value::String(clip(&other.to_string())),
        other => other,
    };
    let actual = clip_value(actual);
    match &j.rule {
        JsonRule::Exists(want) => {
            let ok = nodes.is_empty() != *want;
            let msg = if *want {
                format!("{} selects nothing", j.source)
            } else {
                format!(
                    "{} selects {} node(s), expected none",
                    j.source,
                    nodes.len()
                )
            };
            AssertionResult::new(
                name,
                "json",
                ok,
                code,
                json!({ "exists": want }),
                actual,
                msg,
            )
        }
        JsonRule::Equals(want) => {
            let ok = !nodes.is_empty() && nodes.iter().all(|n| json_equal(n, want));
            let msg = if nodes.is_empty() {
                format!("{} selects nothing, expected {want}", j.source)
            } else {
                format!("{} is {actual}, expected {want}", j.source)
            };
            AssertionResult::new(
                name,
                "json",
                ok,
                code,
                json!({ "equals": want }),
                actual,
                msg,
            )
        }
        JsonRule::Range {
            greater_than,
            less_than,
        } => {
            let within = |n: &&Value| {
                n.as_f64().is_some_and(|x| {
                    greater_than.is_none_or(|g| x > g) && less_than.is_none_or(|l| x < l)
                })
            };
            let ok = !nodes.is_empty() && nodes.iter().all(within);
            let bounds = match (greater_than, less_than) {
                (Some(g), Some(l)) => format!("> {g} and < {l}"),
                (Some(g), None) => format!("> {g}"),
                (None, Some(l)) => format!("< {l}"),
                (None, None) => String::new(),
            };
            let msg = if nodes.is_empty() {
                format!("{} selects nothing, expected a number {bounds}", j.source)
            } else {
                format!("{} is {actual}, expected a number {bounds}", j.source)
            };
            AssertionResult::new(
                name,
                "json",
                ok,
                code,
                json!({ "greater_than": greater_than, "less_than": less_than }),
                actual,
                msg,
            )
        }
    }
}

fn freshness_assertion(
    f: &Freshness,
    headers: &http::HeaderMap,
    parsed: &Option<Result<Value, String>>,
    now: OffsetDateTime,
) -> AssertionResult {
    let code = FailureCode::DataStale;
    let (name, value) = match &f.source {
        FreshnessSource::Header(h) => (
            format!("freshness {h}"),
            headers
                .get(h)
                .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())),
        ),
        FreshnessSource::Json(q, jp) => {
            let name = format!("freshness {q}");
            match parsed {
                Some(Ok(doc)) => (name, jp.query(doc).first().cloned()),
                _ => return not_json(&name, "freshness", code, parsed),
            }
        }
    };
    let expected = json!(format!("age <= {}", Dur(f.max_age)));
    let what = name.trim_start_matches("freshness ").to_owned();
    let Some(value) = value else {
        return AssertionResult::new(
            name,
            "freshness",
            false,
            code,
            expected,
            Value::Null,
            format!("no timestamp at {what}: cannot tell how old the data is"),
        )
        .unevaluated();
    };
    match freshness::age(&value, now) {
        Ok(a) => {
            let ok = a.is_fresh(f.max_age);
            let mut r = AssertionResult::new(
                name,
                "freshness",
                ok,
                code,
                expected,
                value,
                format!(
                    "data is {} old ({what} = {}), max_age is {}",
                    freshness::format_age(a.age),
                    a.timestamp
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    Dur(f.max_age)
                ),
            );
            r.age_seconds = Some(a.age.as_secs_f64());
            r
        }
        Err(e) => AssertionResult::new(
            name,
            "freshness",
            false,
            code,
            expected,
            value,
            e.to_string(),
        )
        .unevaluated(),
    }
}

/// Parses an `expected_status` entry into an inclusive range.
pub fn parse_status_match(m: &StatusMatch) -> Result<(u16, u16), String> {
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

/// Formats status ranges back as written: `200, 2xx, 301-308`.
pub fn status_text(ranges: &[(u16, u16)]) -> String {
    let parts: Vec<String> = ranges
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

/// The status assertion. A 3xx with a Location outside the expected set is
/// `redirect_not_followed`: what a client that does not follow redirects sees.
pub fn status(
    expected: &[(u16, u16)],
    status: http::StatusCode,
    location: Option<&str>,
) -> AssertionResult {
    let code = status.as_u16();
    let ok = expected.iter().any(|(a, b)| (*a..=*b).contains(&code));
    let want = status_text(expected);
    let (fc, msg) = match location {
        Some(loc) if status.is_redirection() => (
            FailureCode::RedirectNotFollowed,
            format!(
                "got {} {} to {} where {} was expected: a client that does not follow redirects stops here",
                code,
                status.canonical_reason().unwrap_or(""),
                loc,
                want
            ),
        ),
        _ => (
            FailureCode::UnexpectedStatus,
            format!("got status {code}, expected {want}"),
        ),
    };
    AssertionResult::new("status", "status", ok, fc, json!(want), json!(code), msg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
    fn json_numbers_compare_numerically() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }
}
