//! Pager severity: `critical` > `error` > `warning` > `info`.
//!
//! Parsed once, where config is validated (a check's `alert.severity`, whose
//! string the probe crate's check schema keeps; `alerting.offline_severity`;
//! `alerting.certificates.thresholds`), then carried typed through alert
//! rows, sink payloads (PagerDuty's `payload.severity` takes these exact
//! words), the API and the page.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// How urgent an alert is. Ordered: `Info < Warning < Error < Critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Needs attention soon.
    Warning,
    /// Broken for some.
    Error,
    /// Page now.
    Critical,
}

impl Severity {
    /// Every severity, most severe first (the order errors list them in).
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Info,
    ];

    /// The word (`critical`, …); also the status page's CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// `critical, error, warning, info`, for error messages.
    pub fn list() -> String {
        Severity::ALL.map(Severity::as_str).join(", ")
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An unknown severity word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: use one of critical, error, warning, info")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Severity, UnknownSeverity> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_serialize_and_order() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!(Severity::Critical > Severity::Error);
        assert!(Severity::Warning > Severity::Info);
        assert_eq!(Severity::list(), "critical, error, warning, info");
        assert!("fatal".parse::<Severity>().is_err());
    }
}
