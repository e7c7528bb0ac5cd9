//! `expected_headers`: a response header must be present, absent, equal to
//! a value or match a regex (`header_mismatch`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Checked, Pattern, clip, compile};
use crate::{
    check::{Failure, failure::HeaderExpectation},
    config::Problems,
};

/// One entry of `expected_headers`: a response header and what it must be.
/// Exactly one of `present`, `equals`, `matches`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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

pub(crate) fn header_name(
    n: &str,
    path: String,
    problems: &mut Problems,
) -> Option<http::HeaderName> {
    match http::HeaderName::try_from(n) {
        Ok(h) => Some(h),
        Err(_) => {
            problems.push(path, format!("invalid header name {n:?}"));
            None
        }
    }
}

impl RawHeaderAssertion {
    /// Validates entry `p` (`checks[0].http.expected_headers[1]`).
    pub fn validate(&self, p: &str, problems: &mut Problems) -> Option<HeaderAssertion> {
        let name = header_name(&self.name, format!("{p}.name"), problems);
        let rule = match (self.present, &self.equals, &self.matches) {
            (Some(b), None, None) => Some(HeaderRule::Present(b)),
            (None, Some(v), None) => Some(HeaderRule::Equals(v.clone())),
            (None, None, Some(re)) => {
                compile(re, format!("{p}.matches"), problems).map(HeaderRule::Matches)
            }
            _ => {
                problems.push(p, "set exactly one of `present`, `equals` or `matches`, e.g. { name = \"content-type\", matches = \"^application/json\" }");
                None
            }
        };
        Some(HeaderAssertion {
            name: name?,
            rule: rule?,
        })
    }
}

/// Evaluates `h` against the response headers.
pub fn evaluate(h: &HeaderAssertion, headers: &http::HeaderMap) -> Checked {
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
    let (ok, expected, wanted) = match &h.rule {
        HeaderRule::Present(want) => (
            values.is_empty() != *want,
            json!({ "present": want }),
            if *want {
                HeaderExpectation::Present
            } else {
                HeaderExpectation::Absent
            },
        ),
        HeaderRule::Equals(want) => (
            values.iter().any(|v| v == want),
            json!({ "equals": want }),
            HeaderExpectation::Equals {
                value: want.clone(),
            },
        ),
        HeaderRule::Matches(p) => (
            values.iter().any(|v| p.0.is_match(v)),
            json!({ "matches": p.0.as_str() }),
            HeaderExpectation::Matches {
                pattern: p.0.as_str().to_owned(),
            },
        ),
    };
    let failure = (!ok).then(|| Failure::HeaderMismatch {
        header: h.name.to_string(),
        expected: wanted,
        got: values.iter().map(|v| clip(v)).collect(),
    });
    Checked::new(name, "header", expected, actual, failure)
}
