//! `[alerting.certificates]`: when a certificate in the inventory pages.

use std::time::Duration;

use outpost_probe::config::{Dur, Problems, duration::parse_duration};
use serde::Deserialize;

use crate::alerting::Severity;

/// Default thresholds: 30 days → warning, 14 → error, 7 → critical.
pub const DEFAULT_THRESHOLDS: &[&str] = &["30d:warning", "14d:error", "7d:critical"];
/// Default time after which a certificate no check sees any more is resolved.
pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(2 * 86_400);

/// `[alerting.certificates]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCertificateAlerting {
    /// When a served certificate pages, as `"<time left>:<severity>"`: the
    /// certificate's `certificate_expiring` alert takes the severity of the
    /// shortest threshold its remaining validity is within, and is triggered
    /// again (same dedup key, higher severity) each time it crosses a shorter
    /// one. Severities: `critical`, `error`, `warning`, `info`; a shorter
    /// threshold may not have a lower severity. `[]` turns these alerts off.
    /// Default `["30d:warning", "14d:error", "7d:critical"]`.
    #[serde(default)]
    pub thresholds: Option<Vec<String>>,
    /// A certificate's alert resolves when no check has seen it for this
    /// long (the target was fixed, or the check removed), or at once when a
    /// newer certificate with the same subject and SANs replaced it in every
    /// check that saw it. Default `"2d"`, minimum `"1m"`.
    #[serde(default)]
    pub resolve_after: Option<Dur>,
}

/// One threshold: within `within` of expiry → `severity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// Remaining validity at or below which it applies.
    pub within: Duration,
    /// Severity.
    pub severity: Severity,
}

/// Validated `[alerting.certificates]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePolicy {
    /// Longest window first.
    pub thresholds: Vec<Threshold>,
    /// See [`RawCertificateAlerting::resolve_after`].
    pub resolve_after: Duration,
}

impl Default for CertificatePolicy {
    fn default() -> Self {
        validate(None, &mut Problems::default())
    }
}

impl CertificatePolicy {
    /// The severity for a certificate `remaining_ms` from expiry (negative:
    /// expired), or `None` when no threshold applies.
    pub fn severity_for(&self, remaining_ms: i64) -> Option<Severity> {
        self.thresholds
            .iter()
            .filter(|t| remaining_ms <= i64::try_from(t.within.as_millis()).unwrap_or(i64::MAX))
            .min_by_key(|t| t.within)
            .map(|t| t.severity)
    }
}

/// Validates `[alerting.certificates]` (absent: the defaults).
pub fn validate(raw: Option<&RawCertificateAlerting>, p: &mut Problems) -> CertificatePolicy {
    let path = "alerting.certificates";
    let texts: Vec<String> = raw
        .and_then(|r| r.thresholds.clone())
        .unwrap_or_else(|| DEFAULT_THRESHOLDS.iter().map(|s| (*s).to_owned()).collect());
    let mut thresholds: Vec<Threshold> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let at = format!("{path}.thresholds[{i}]");
        let Some((window, severity)) = t.split_once(':') else {
            p.push(
                at,
                format!(
                    "invalid threshold {t:?}: write \"<time left>:<severity>\", e.g. \"14d:error\""
                ),
            );
            continue;
        };
        let within = match parse_duration(window.trim()) {
            Ok(d) => d,
            Err(e) => {
                p.push(at, format!("invalid threshold {t:?}: {e}"));
                continue;
            }
        };
        let severity = severity.trim();
        let Ok(severity) = severity.parse::<Severity>() else {
            p.push(
                at,
                format!(
                    "unknown severity {severity:?} in {t:?}: use one of {}",
                    Severity::list()
                ),
            );
            continue;
        };
        if thresholds.iter().any(|o| o.within == within) {
            p.push(at, format!("two thresholds for {}", Dur(within)));
            continue;
        }
        thresholds.push(Threshold { within, severity });
    }
    thresholds.sort_by_key(|t| std::cmp::Reverse(t.within));
    for w in thresholds.windows(2) {
        if w[0].severity > w[1].severity {
            p.push(
                format!("{path}.thresholds"),
                format!(
                    "{}:{} is less severe than {}:{}: a shorter time left must not lower the severity",
                    Dur(w[1].within),
                    w[1].severity,
                    Dur(w[0].within),
                    w[0].severity
                ),
            );
        }
    }
    let resolve_after = raw
        .and_then(|r| r.resolve_after)
        .map(Dur::get)
        .unwrap_or(DEFAULT_RESOLVE_AFTER);
    if resolve_after < Duration::from_secs(60) {
        p.push(
            format!("{path}.resolve_after"),
            format!("resolve_after must be ≥ 1m, got \"{}\"", Dur(resolve_after)),
        );
    }
    CertificatePolicy {
        thresholds,
        resolve_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn defaults_map_days_left_to_severities() {
        let c = CertificatePolicy::default();
        assert_eq!(c.severity_for(31 * DAY), None);
        assert_eq!(c.severity_for(30 * DAY), Some(Severity::Warning));
        assert_eq!(c.severity_for(14 * DAY + 1), Some(Severity::Warning));
        assert_eq!(c.severity_for(14 * DAY), Some(Severity::Error));
        assert_eq!(c.severity_for(7 * DAY), Some(Severity::Critical));
        assert_eq!(c.severity_for(-3 * DAY), Some(Severity::Critical));
        assert_eq!(c.resolve_after, DEFAULT_RESOLVE_AFTER);
    }

    #[test]
    fn bad_thresholds_name_their_index() {
        let raw = |t: &[&str]| RawCertificateAlerting {
            thresholds: Some(t.iter().map(|s| (*s).to_owned()).collect()),
            resolve_after: None,
        };
        for (t, path) in [
            (&["30d"][..], "alerting.certificates.thresholds[0]"),
            (
                &["30d:warning", "soon:error"][..],
                "alerting.certificates.thresholds[1]",
            ),
            (&["30d:fatal"][..], "alerting.certificates.thresholds[0]"),
            (
                &["30d:critical", "7d:warning"][..],
                "alerting.certificates.thresholds",
            ),
        ] {
            let mut p = Problems::default();
            validate(Some(&raw(t)), &mut p);
            let err = p.finish("c.toml").expect_err(path);
            assert!(err.has_path(path), "{t:?}: {err}");
        }
    }
}
