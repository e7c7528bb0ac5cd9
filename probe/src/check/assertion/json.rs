//! `json`: RFC 9535 JSONPath queries into the JSON body, each asserting that
//! the selected nodes exist, equal a value, or lie within bounds
//! (`json_path_mismatch`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_json_path::JsonPath;

use super::{Checked, clip};
use crate::{
    check::{Failure, failure::JsonProblem},
    config::Problems,
};

/// One entry of `json`: a JSONPath (RFC 9535) into the JSON body and what the
/// nodes it selects must be. Exactly one of `exists`, `equals`, or one or both
/// of `less_than` / `greater_than`. Every selected node must satisfy it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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

pub(crate) fn parse_path(q: &str, path: String, problems: &mut Problems) -> Option<JsonPath> {
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

impl RawJsonAssertion {
    /// Validates entry `p` (`checks[0].http.json[2]`).
    pub fn validate(&self, p: &str, problems: &mut Problems) -> Option<JsonAssertion> {
        let parsed = parse_path(&self.path, format!("{p}.path"), problems);
        let range = self.less_than.is_some() || self.greater_than.is_some();
        let rule = match (self.exists, &self.equals, range) {
            (Some(b), None, false) => Some(JsonRule::Exists(b)),
            (None, Some(v), false) => Some(JsonRule::Equals(v.clone())),
            (None, None, true) => Some(JsonRule::Range {
                greater_than: self.greater_than,
                less_than: self.less_than,
            }),
            _ => {
                problems.push(p, "set exactly one of `exists`, `equals`, or `less_than`/`greater_than`, e.g. { path = \"$.status\", equals = \"ok\" }");
                None
            }
        };
        Some(JsonAssertion {
            source: self.path.clone(),
            path: parsed?,
            rule: rule?,
        })
    }
}

/// Numbers compare numerically (`1` equals `1.0`), everything else structurally.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Evaluates `j` against the parsed body.
pub fn evaluate(j: &JsonAssertion, doc: &Value) -> Checked {
    let nodes = j.path.query(doc).all();
    let name = format!("json {}", j.source);
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
    let (ok, expected, problem) = match &j.rule {
        JsonRule::Exists(want) => (
            nodes.is_empty() != *want,
            json!({ "exists": want }),
            if *want {
                JsonProblem::Nothing { expected: None }
            } else {
                JsonProblem::Present { count: nodes.len() }
            },
        ),
        JsonRule::Equals(want) => (
            !nodes.is_empty() && nodes.iter().all(|n| json_equal(n, want)),
            json!({ "equals": want }),
            if nodes.is_empty() {
                JsonProblem::Nothing {
                    expected: Some(want.clone()),
                }
            } else {
                JsonProblem::NotEqual {
                    actual: actual.clone(),
                    expected: want.clone(),
                }
            },
        ),
        JsonRule::Range {
            greater_than,
            less_than,
        } => {
            let within = |n: &&Value| {
                n.as_f64().is_some_and(|x| {
                    greater_than.is_none_or(|g| x > g) && less_than.is_none_or(|l| x < l)
                })
            };
            (
                !nodes.is_empty() && nodes.iter().all(within),
                json!({ "greater_than": greater_than, "less_than": less_than }),
                JsonProblem::OutOfRange {
                    actual: actual.clone(),
                    greater_than: *greater_than,
                    less_than: *less_than,
                },
            )
        }
    };
    let failure = (!ok).then(|| Failure::JsonPathMismatch {
        path: j.source.clone(),
        problem,
        response: None,
    });
    Checked::new(name, "json", expected, actual, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_compare_numerically() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }
}
