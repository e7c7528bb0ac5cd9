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
pub mod header;
pub mod json;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

pub use self::{
    freshness::{Freshness, FreshnessSource, RawFreshness},
    header::{HeaderAssertion, HeaderRule, RawHeaderAssertion},
    json::{JsonAssertion, JsonRule, RawJsonAssertion},
};
use super::{
    Failure, FailureCode, Phases,
    failure::{BodyExpectation, JsonProblem},
};
use crate::config::{Dur, Problems};

/// One entry of `expected_status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum StatusMatch {
    /// Exactly this status.
    Code(u16),
    /// `"2xx"` or `"200-299"`.
    Range(String),
}

/// `latency`: budgets per phase, each optional. A phase is summed over every
/// hop of a redirect chain; `total` is the whole chain including the body.
/// Exceeding one fails with `latency_budget_exceeded` naming the phase.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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

pub(crate) fn compile(re: &str, path: String, problems: &mut Problems) -> Option<Pattern> {
    match regex::RegexBuilder::new(re).size_limit(1 << 20).build() {
        Ok(r) => Some(Pattern(r)),
        Err(e) => {
            problems.push(path, format!("invalid regex {re:?}: {e}"));
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
            out.headers.extend(h.validate(&p, problems));
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
            out.json.extend(j.validate(&p, problems));
        }
        if let Some(f) = self.freshness {
            out.freshness = f.validate(&format!("{path}.freshness"), problems);
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AssertionResult {
    /// What was asserted, e.g. `status`, `header content-type`, `json $.status`.
    pub name: String,
    /// `status`, `redirect`, `header`, `body`, `json`, `freshness` or `latency`.
    pub kind: String,
    /// Passed.
    pub ok: bool,
    /// False when the input was missing or unusable (not JSON, no timestamp).
    pub evaluated: bool,
    /// What was expected.
    pub expected: Value,
    /// What was observed.
    pub actual: Value,
    /// The code a failure carries.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::check::failure::lenient_code"
    )]
    pub failure_code: Option<FailureCode>,
    /// Human message for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Freshness only: the data's age in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
}

/// An evaluated assertion: its record for `details.assertions` and, when
/// it failed, the typed failure the record's code and message come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The record in the details.
    pub record: AssertionResult,
    /// Why it failed.
    pub failure: Option<Failure>,
}

impl Checked {
    /// An evaluated assertion; it passed when `failure` is `None`.
    pub fn new(
        name: impl Into<String>,
        kind: &str,
        expected: Value,
        actual: Value,
        failure: Option<Failure>,
    ) -> Self {
        Checked {
            record: AssertionResult {
                name: name.into(),
                kind: kind.to_owned(),
                ok: failure.is_none(),
                evaluated: true,
                expected,
                actual,
                failure_code: failure.as_ref().map(Failure::code),
                message: failure.as_ref().map(Failure::to_string),
                age_seconds: None,
            },
            failure,
        }
    }

    fn unevaluated(mut self) -> Self {
        self.record.evaluated = false;
        self
    }

    /// Passed.
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// The first failure of `checked` (in evaluation order) and the records.
pub fn split(checked: Vec<Checked>) -> (Option<Failure>, Vec<AssertionResult>) {
    let mut first = None;
    let records = checked
        .into_iter()
        .map(|c| {
            if first.is_none() {
                first = c.failure;
            }
            c.record
        })
        .collect();
    (first, records)
}

/// The final response of a chain, as assertions see it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Response headers.
    pub headers: &'a http::HeaderMap,
    /// The body, if kept (at most `max_body`).
    pub body: &'a [u8],
    /// Phases summed over the chain; `total` is the chain's wall time.
    pub phases: &'a Phases,
}

pub(crate) fn clip(s: &str) -> String {
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
    pub fn evaluate(&self, obs: &Response<'_>, now: OffsetDateTime) -> Vec<Checked> {
        let mut out = Vec::new();
        for h in &self.headers {
            out.push(header::evaluate(h, obs.headers));
        }
        let text = String::from_utf8_lossy(obs.body);
        if let Some(s) = &self.body_contains {
            let ok = text.contains(s.as_str());
            out.push(Checked::new(
                "body_contains",
                "body",
                json!(s),
                json!(clip(&text)),
                (!ok).then(|| Failure::BodyMismatch {
                    body_bytes: obs.body.len(),
                    expected: BodyExpectation::Contains { text: s.clone() },
                }),
            ));
        }
        if let Some(p) = &self.body_matches {
            let ok = p.0.is_match(&text);
            out.push(Checked::new(
                "body_matches",
                "body",
                json!(p.0.as_str()),
                json!(clip(&text)),
                (!ok).then(|| Failure::BodyMismatch {
                    body_bytes: obs.body.len(),
                    expected: BodyExpectation::Matches {
                        pattern: p.0.as_str().to_owned(),
                    },
                }),
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
                Some(Ok(doc)) => json::evaluate(j, doc),
                _ => not_json(&format!("json {}", j.source), "json", &parsed, |error| {
                    Failure::JsonPathMismatch {
                        path: j.source.clone(),
                        problem: JsonProblem::NotJson { error },
                        response: None,
                    }
                }),
            });
        }
        if let Some(f) = &self.freshness {
            out.push(freshness::evaluate(f, obs.headers, &parsed, now));
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
                Some(t) => Checked::new(
                    name,
                    "latency",
                    expected,
                    json!(ms(t)),
                    (t > *budget).then(|| Failure::LatencyBudgetExceeded {
                        phase: (*phase).to_owned(),
                        took: t,
                        budget: *budget,
                    }),
                ),
                // A phase that did not happen (tls on http, dns for an IP) cannot exceed it.
                None => Checked::new(name, "latency", expected, Value::Null, None).unevaluated(),
            });
        }
        out
    }
}

pub(crate) fn not_json(
    name: &str,
    kind: &str,
    parsed: &Option<Result<Value, String>>,
    failure: impl FnOnce(Option<String>) -> Failure,
) -> Checked {
    let error = match parsed {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    };
    Checked::new(name, kind, Value::Null, Value::Null, Some(failure(error))).unevaluated()
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
) -> Checked {
    let code = status.as_u16();
    let ok = expected.iter().any(|(a, b)| (*a..=*b).contains(&code));
    let want = status_text(expected);
    let failure = match location {
        _ if ok => None,
        Some(loc) if status.is_redirection() => Some(Failure::RedirectNotFollowed {
            status: code,
            location: loc.to_owned(),
            expected: want.clone(),
        }),
        _ => Some(Failure::UnexpectedStatus {
            got: code,
            expected: want.clone(),
            responder: None,
            oauth_error: None,
            session_rejected: false,
        }),
    };
    Checked::new("status", "status", json!(want), json!(code), failure)
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
}
