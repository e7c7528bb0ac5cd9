//! What an alert is about ([`AlertKind`]) and what a route can carry and a
//! notification can be about ([`Kind`]: an alert kind, or an event kind
//! such as `dns_change`).
//!
//! The strings are part of every contract: config (`[[routes]].kinds`),
//! the store (`alerts.kind`), the API and sink payloads (`kind`), metric
//! labels. Renaming one is a breaking change.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::EventKind;

/// The kind of an alert.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum AlertKind {
    /// A check failing from `min_regions` fresh regions ([`super::rule`]).
    CheckFailing,
    /// A probe silent for `alerting.offline_after` ([`super::offline`]).
    ProbeOffline,
    /// A served certificate within a threshold of its expiry ([`super::certificate`]).
    CertificateExpiring,
    /// A sink rejects notifications or fails longer than
    /// `alerting.notifier_failing_after` (one alert per sink, on the
    /// fallback route).
    NotifierFailing,
}

impl AlertKind {
    /// Every alert kind, in the order the docs and errors list them. A route
    /// without `kinds` carries all of them.
    pub const ALL: [AlertKind; 4] = [
        AlertKind::CheckFailing,
        AlertKind::ProbeOffline,
        AlertKind::CertificateExpiring,
        AlertKind::NotifierFailing,
    ];

    /// The stable name (`check_failing`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::CheckFailing => "check_failing",
            AlertKind::ProbeOffline => "probe_offline",
            AlertKind::CertificateExpiring => "certificate_expiring",
            AlertKind::NotifierFailing => "notifier_failing",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a route carries and a notification is about: an alert kind, or an
/// event kind (info notifications, never an incident). Serialized as the
/// bare name (`"probe_offline"`, `"dns_change"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Kind {
    /// An alert's kind.
    Alert(AlertKind),
    /// An event's kind.
    Event(EventKind),
}

impl Kind {
    /// Every kind a route can name: the alert kinds, then the event kinds.
    pub const ALL: [Kind; 5] = [
        Kind::Alert(AlertKind::CheckFailing),
        Kind::Alert(AlertKind::ProbeOffline),
        Kind::Alert(AlertKind::CertificateExpiring),
        Kind::Alert(AlertKind::NotifierFailing),
        Kind::Event(EventKind::DnsChange),
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alert(k) => k.as_str(),
            Kind::Event(k) => k.as_str(),
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl From<AlertKind> for Kind {
    fn from(k: AlertKind) -> Kind {
        Kind::Alert(k)
    }
}

impl From<EventKind> for Kind {
    fn from(k: EventKind) -> Kind {
        Kind::Event(k)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_parse() {
        for k in Kind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), k);
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("probe_down"), None);
        assert_eq!(
            serde_json::to_string(&AlertKind::CertificateExpiring).unwrap(),
            "\"certificate_expiring\""
        );
    }
}
