//! Freshness: how old is the timestamp a response carries?
//!
//! Pure functions over an explicit `now`, so the boundary is testable to the
//! second. The rule is **`age <= max_age` passes, `age > max_age` fails**:
//! data exactly `max_age` old is still fresh (inclusive), one second more is
//! stale.
//!
//! Accepted timestamp forms (a JSON value found by JSONPath, or a header):
//! - RFC 3339 strings: `"2024-05-01T12:00:00Z"`, `"2024-05-01T14:00:00.250+02:00"`;
//! - HTTP-dates (RFC 9110: IMF-fixdate, what `Last-Modified` carries, and
//!   the obsolete RFC 850 and asctime forms): `"Wed, 01 May 2024 12:00:00 GMT"`;
//! - epoch numbers, as JSON numbers or digit strings: seconds (`1714564800`,
//!   fractions allowed) or milliseconds (`1714564800000`). Heuristic: a value
//!   above 10^11 is milliseconds (10^11 seconds is the year 5138; 10^11
//!   milliseconds is March 1973, older than any data we will monitor).
//!
//! A timestamp in the future has age zero: it counts as fresh, because a
//! target whose clock runs a little ahead of the probe's is not stale data.
//! The result reports it (`in_future`) so a far-future value is visible.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_json_path::JsonPath;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{Checked, header::header_name, json::parse_path, not_json};
use crate::{
    check::{Failure, failure::Staleness},
    config::{Dur, Problems},
};

/// Epoch values above this are milliseconds, at or below it seconds.
pub const EPOCH_MILLIS_THRESHOLD: f64 = 1e11;

/// Why a value has no age.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FreshnessError {
    /// The value is not a timestamp in any accepted form.
    #[error(
        "{value} is not a timestamp: use RFC 3339 (\"2024-05-01T12:00:00Z\"), an HTTP-date or epoch seconds/milliseconds"
    )]
    Unparseable {
        /// The offending value, as JSON text (truncated).
        value: String,
    },
}

/// The parsed timestamp and its age relative to `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age {
    /// When the data says it was produced.
    pub timestamp: OffsetDateTime,
    /// `now - timestamp`, zero for a timestamp in the future.
    pub age: Duration,
    /// True when the timestamp is after `now`.
    pub in_future: bool,
}

impl Age {
    /// The freshness rule: fresh when `age <= max_age` (inclusive boundary).
    pub fn is_fresh(&self, max_age: Duration) -> bool {
        self.age <= max_age
    }
}

/// Parses `value` (string or number) and measures its age at `now`.
pub fn age(value: &serde_json::Value, now: OffsetDateTime) -> Result<Age, FreshnessError> {
    let timestamp = parse(value).ok_or_else(|| {
        let mut text = value.to_string();
        if text.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        FreshnessError::Unparseable { value: text }
    })?;
    let diff = now - timestamp;
    let in_future = diff.is_negative();
    let age = if in_future {
        Duration::ZERO
    } else {
        diff.unsigned_abs()
    };
    Ok(Age {
        timestamp,
        age,
        in_future,
    })
}

/// Parses a timestamp in any accepted form.
pub fn parse(value: &serde_json::Value) -> Option<OffsetDateTime> {
    match value {
        serde_json::Value::Number(n) => from_epoch(n.as_f64()?),
        serde_json::Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
                return Some(t);
            }
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return from_epoch(s.parse().ok()?);
            }
            parse_http_date(s)
        }
        _ => None,
    }
}

fn from_epoch(v: f64) -> Option<OffsetDateTime> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let nanos = if v > EPOCH_MILLIS_THRESHOLD {
        (v * 1e6) as i128
    } else {
        (v * 1e9) as i128
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// Parses an RFC 9110 HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, the form
/// servers must send in `Last-Modified` and `Date`; the obsolete RFC 850
/// and asctime forms are accepted too, as recipients must).
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    httpdate::parse_http_date(s.trim())
        .ok()
        .map(OffsetDateTime::from)
}

// ---- the `freshness` assertion: config, validation, evaluation ----

/// `freshness`: the data must be at most `max_age` old. The timestamp comes
/// from the JSON body (`json_path`) or a response header (`header`, e.g.
/// `"last-modified"`). Accepts RFC 3339, HTTP-dates, epoch seconds or
/// milliseconds (above 10^11 is milliseconds). Age equal to `max_age` passes;
/// older fails with `data_stale`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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

impl RawFreshness {
    /// Validates `p` (`checks[0].http.freshness`).
    pub fn validate(&self, p: &str, problems: &mut Problems) -> Option<Freshness> {
        let source = match (&self.json_path, &self.header) {
            (Some(q), None) => parse_path(q, format!("{p}.json_path"), problems)
                .map(|jp| FreshnessSource::Json(q.clone(), jp)),
            (None, Some(h)) => {
                header_name(h, format!("{p}.header"), problems).map(FreshnessSource::Header)
            }
            _ => {
                problems.push(p, "set exactly one of `json_path` or `header`, e.g. { json_path = \"$.updated_at\", max_age = \"15m\" }");
                None
            }
        };
        if self.max_age.get().is_zero() {
            problems.push(format!("{p}.max_age"), "max_age must be greater than 0");
        }
        Some(Freshness {
            source: source?,
            max_age: self.max_age.get(),
        })
    }
}

/// Evaluates `f`: the timestamp from a header or the parsed body, aged at `now`.
pub fn evaluate(
    f: &Freshness,
    headers: &http::HeaderMap,
    parsed: &Option<Result<Value, String>>,
    now: OffsetDateTime,
) -> Checked {
    let (what, value) = match &f.source {
        FreshnessSource::Header(h) => (
            h.to_string(),
            headers
                .get(h)
                .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())),
        ),
        FreshnessSource::Json(q, jp) => match parsed {
            Some(Ok(doc)) => (q.clone(), jp.query(doc).first().cloned()),
            _ => {
                return not_json(&format!("freshness {q}"), "freshness", parsed, |error| {
                    Failure::DataStale {
                        at: q.clone(),
                        problem: Staleness::NotJson { error },
                    }
                });
            }
        },
    };
    let name = format!("freshness {what}");
    let expected = json!(format!("age <= {}", Dur(f.max_age)));
    let stale = |problem| Failure::DataStale {
        at: what.clone(),
        problem,
    };
    let Some(value) = value else {
        return Checked::new(
            name,
            "freshness",
            expected,
            Value::Null,
            Some(stale(Staleness::Missing)),
        )
        .unevaluated();
    };
    match age(&value, now) {
        Ok(a) => {
            let failure = (!a.is_fresh(f.max_age)).then(|| {
                stale(Staleness::Old {
                    age: a.age,
                    timestamp: a
                        .timestamp
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    max_age: f.max_age,
                })
            });
            let mut r = Checked::new(name, "freshness", expected, value, failure);
            r.record.age_seconds = Some(a.age.as_secs_f64());
            r
        }
        Err(FreshnessError::Unparseable { value: text }) => Checked::new(
            name,
            "freshness",
            expected,
            value,
            Some(stale(Staleness::Unparseable { value: text })),
        )
        .unevaluated(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);
    const MAX: Duration = Duration::from_secs(15 * 60);

    #[test]
    fn boundary_is_inclusive_to_the_second() {
        let exactly = age(&json!("2024-05-01T11:45:00Z"), NOW).unwrap();
        assert_eq!(exactly.age, MAX);
        assert!(exactly.is_fresh(MAX), "age == max_age passes");
        let one_more = age(&json!("2024-05-01T11:44:59Z"), NOW).unwrap();
        assert_eq!(one_more.age, MAX + Duration::from_secs(1));
        assert!(!one_more.is_fresh(MAX), "max_age + 1s fails");
        // Sub-second precision counts too.
        let just_over = age(&json!("2024-05-01T11:44:59.999Z"), NOW).unwrap();
        assert!(!just_over.is_fresh(MAX));
    }

    #[test]
    fn epoch_seconds_and_milliseconds_are_told_apart() {
        let secs = NOW.unix_timestamp() - 17 * 3600;
        let a = age(&json!(secs), NOW).unwrap();
        assert_eq!(a.age, Duration::from_secs(17 * 3600));
        let a = age(&json!(secs * 1000), NOW).unwrap();
        assert_eq!(a.age, Duration::from_secs(17 * 3600));
        let a = age(&json!(secs.to_string()), NOW).unwrap();
        assert_eq!(a.age, Duration::from_secs(17 * 3600));
        let a = age(&json!(secs as f64 + 0.5), NOW).unwrap();
        assert_eq!(a.age, Duration::from_millis(17 * 3600 * 1000 - 500));
        // 10^11 exactly is still seconds; above it, milliseconds.
        assert_eq!(
            parse(&json!(100_000_000_000u64)).unwrap().year(),
            5138,
            "10^11 is read as seconds"
        );
        assert_eq!(parse(&json!(100_000_000_001u64)).unwrap().year(), 1973);
    }

    #[test]
    fn rfc3339_offsets_and_http_dates_parse() {
        let a = age(&json!("2024-05-01T13:30:00+02:00"), NOW).unwrap();
        assert_eq!(a.age, Duration::from_secs(30 * 60));
        let a = age(&json!("Wed, 01 May 2024 11:00:00 GMT"), NOW).unwrap();
        assert_eq!(a.age, Duration::from_secs(3600));
        // The obsolete forms RFC 9110 recipients accept.
        let a = age(&json!("Wednesday, 01-May-24 11:00:00 GMT"), NOW).unwrap();
        assert_eq!(a.age, Duration::from_secs(3600));
        let a = age(&json!("Wed May  1 11:00:00 2024"), NOW).unwrap();
        assert_eq!(a.age, Duration::from_secs(3600));
        assert!(parse_http_date("Wed, 01 May 2024 11:00:00 PST").is_none());
    }

    #[test]
    fn future_timestamps_are_fresh_and_flagged() {
        let a = age(&json!("2024-05-01T12:00:05Z"), NOW).unwrap();
        assert_eq!(a.age, Duration::ZERO);
        assert!(a.in_future && a.is_fresh(Duration::ZERO));
    }

    #[test]
    fn non_timestamps_are_errors() {
        for v in [
            json!("yesterday"),
            json!(null),
            json!(true),
            json!(-5),
            json!({"a": 1}),
            json!(""),
        ] {
            assert!(age(&v, NOW).is_err(), "{v}");
        }
    }
}
