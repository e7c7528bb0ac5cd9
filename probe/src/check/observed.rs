//! What a run observed, as one typed value from the probe to the page: the
//! `details` of a result.
//!
//! Each kind's module owns its type ([`super::http::Observed`],
//! [`super::dns::Observed`], [`super::tls::Report`],
//! [`super::session::Observed`], [`super::tcp::Observed`],
//! [`super::grpc::Observed`], [`super::icmp::Observed`],
//! [`super::flow::Observed`], [`super::heartbeat::Observed`]); [`Observed`] is the one enum over them.
//! The probe builds these values directly and serializes them once, to the
//! wire string ([`Observed::to_wire`], `details_json` of a `CheckResult`);
//! the controller parses them once ([`Observed::from_wire`]).
//!
//! # Wire compatibility
//! The JSON is the stable `details` format: the keys and shapes documented
//! at the top of each kind's module, pinned by the fixtures under
//! `probe/tests/fixtures/details/` (real runs captured before these types
//! existed; a test reads every one back and writes the same JSON).
//! Reading is tolerant, because a controller reads results of probes older
//! and newer than itself: no type here denies unknown fields, every field
//! has a default when missing, an unknown failure code reads as none, and
//! details that do not read as their kind's type at all become
//! [`Observed::Other`] instead of an error.
//!
//! Fields that are absent in some results and `null` in others (a DNS
//! resolver's `min_ttl` is `null` when it answered no records and absent
//! when it did not answer) are grouped into a flattened `Option` of a struct
//! with one required field, or typed `Option<Option<T>>`, so that both
//! shapes survive a round trip.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{dns, flow, grpc, heartbeat, http, icmp, session, tcp, tls};

/// The kinds of check, as named in results, metrics and config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// `http`: requests, redirects, addresses, samples, assertions.
    Http,
    /// `dns`: resolvers' answers, agreement, changes.
    Dns,
    /// `tls`: the trust-store × client-profile matrix.
    Tls,
    /// `session`: an authenticated session held across runs.
    Session,
    /// `tcp`: a connection and its send/expect script.
    Tcp,
    /// `grpc`: a `grpc.health.v1` check.
    Grpc,
    /// `icmp`: echo requests, loss and RTTs.
    Icmp,
    /// `flow`: ordered HTTP steps with variables.
    Flow,
    /// `heartbeat`: pings pushed by a job to the controller.
    Heartbeat,
}

impl Kind {
    /// Every kind.
    pub const ALL: &'static [Kind] = &[
        Kind::Http,
        Kind::Dns,
        Kind::Tls,
        Kind::Session,
        Kind::Tcp,
        Kind::Grpc,
        Kind::Icmp,
        Kind::Flow,
        Kind::Heartbeat,
    ];

    /// The kind's name: `"http"`, `"dns"`, `"tls"`, `"session"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Dns => "dns",
            Kind::Tls => "tls",
            Kind::Session => "session",
            Kind::Tcp => "tcp",
            Kind::Grpc => "grpc",
            Kind::Icmp => "icmp",
            Kind::Flow => "flow",
            Kind::Heartbeat => "heartbeat",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown check kind {0:?}: use http, dns, tls, session, tcp, grpc, icmp, flow or heartbeat"
)]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// What one run observed: the `details` of a result, by kind.
///
/// Serialized untagged: the JSON is the kind's own object, exactly the
/// `details` format (the kind travels beside it, as `kind`).
// The variants are the kinds' result types, boxed: the controller holds one
// per region state (50,000 at fleet size, most of them details-free reads),
// and inline the enum was the largest variant's 536 bytes each. A box costs
// one allocation per run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Observed {
    /// An http check's observations.
    Http(Box<http::Observed>),
    /// A dns check's observations.
    Dns(Box<dns::Observed>),
    /// A tls check's report.
    Tls(Box<tls::Report>),
    /// A session check's observations.
    Session(Box<session::Observed>),
    /// A tcp check's observations.
    Tcp(Box<tcp::Observed>),
    /// A grpc check's observations.
    Grpc(Box<grpc::Observed>),
    /// An icmp check's observations.
    Icmp(Box<icmp::Observed>),
    /// A flow's observations.
    Flow(Box<flow::Observed>),
    /// A heartbeat ping's (or missed deadline's) details.
    Heartbeat(Box<heartbeat::Observed>),
    /// Details of a kind this build does not know, or that do not read as
    /// their kind's type: the JSON as it came (a JSON string holding the
    /// text when it was not JSON at all).
    Other(Value),
}

impl Observed {
    /// The kind these observations are of (`None` for [`Observed::Other`]).
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Observed::Http(_) => Some(Kind::Http),
            Observed::Dns(_) => Some(Kind::Dns),
            Observed::Tls(_) => Some(Kind::Tls),
            Observed::Session(_) => Some(Kind::Session),
            Observed::Tcp(_) => Some(Kind::Tcp),
            Observed::Grpc(_) => Some(Kind::Grpc),
            Observed::Icmp(_) => Some(Kind::Icmp),
            Observed::Flow(_) => Some(Kind::Flow),
            Observed::Heartbeat(_) => Some(Kind::Heartbeat),
            Observed::Other(_) => None,
        }
    }

    /// Reads a result's `details_json` written by a probe of any version.
    /// Total: never fails, never panics; what does not read as `kind`'s type
    /// becomes [`Observed::Other`].
    pub fn from_wire(kind: &str, details_json: &str) -> Observed {
        let typed = match kind.parse::<Kind>() {
            Ok(Kind::Http) => serde_json::from_str(details_json).map(Observed::Http),
            Ok(Kind::Dns) => serde_json::from_str(details_json).map(Observed::Dns),
            Ok(Kind::Tls) => serde_json::from_str(details_json).map(Observed::Tls),
            Ok(Kind::Session) => serde_json::from_str(details_json).map(Observed::Session),
            Ok(Kind::Tcp) => serde_json::from_str(details_json).map(Observed::Tcp),
            Ok(Kind::Grpc) => serde_json::from_str(details_json).map(Observed::Grpc),
            Ok(Kind::Icmp) => serde_json::from_str(details_json).map(Observed::Icmp),
            Ok(Kind::Flow) => serde_json::from_str(details_json).map(Observed::Flow),
            Ok(Kind::Heartbeat) => serde_json::from_str(details_json).map(Observed::Heartbeat),
            Err(_) => serde_json::from_str(details_json).map(Observed::Other),
        };
        typed.unwrap_or_else(|_| {
            Observed::Other(
                serde_json::from_str(details_json)
                    .unwrap_or_else(|_| Value::String(details_json.to_owned())),
            )
        })
    }

    /// The wire form, `details_json`: the kind's JSON object.
    pub fn to_wire(&self) -> String {
        // These types serialize infallibly (string keys, no custom errors).
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The same as a JSON value (`once --format json`, tests).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `Option<Option<T>>` for a field that is absent (`None`), `null`
/// (`Some(None)`) or a value: use with `#[serde(default,
/// skip_serializing_if = "Option::is_none", with = "double_option")]`.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the inner option (`null` or the value); `None` is skipped by
    /// `skip_serializing_if`.
    pub fn serialize<S: Serializer, T: Serialize>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    /// A present field: `Some(None)` for `null`, `Some(Some(v))` for a value.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<(String, String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/details");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "json") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let kind = name.split('-').next().unwrap().to_owned();
                out.push((name, kind, std::fs::read_to_string(&path).unwrap()));
            }
        }
        out.sort();
        assert!(out.len() >= 40, "fixtures missing from {}", dir.display());
        out
    }

    /// Every captured result reads as its kind's type and writes the same
    /// JSON back (compared as values: key order is not part of the format).
    #[test]
    fn every_fixture_round_trips_through_its_typed_value() {
        for (name, kind, text) in fixtures() {
            let observed = Observed::from_wire(&kind, &text);
            assert_eq!(
                observed.kind().map(Kind::as_str),
                Some(kind.as_str()),
                "{name} did not read as {kind}: {observed:?}"
            );
            let want: Value = serde_json::from_str(&text).unwrap();
            let got: Value = serde_json::from_str(&observed.to_wire()).unwrap();
            assert_eq!(got, want, "{name} changed on a round trip");
            // Reading the written form gives the same value again.
            assert_eq!(Observed::from_wire(&kind, &observed.to_wire()), observed);
        }
    }

    #[test]
    fn reading_is_tolerant_of_other_versions() {
        // Unknown fields are ignored, missing ones default.
        let o = Observed::from_wire(
            "http",
            r#"{"url": "https://a.test/", "added_later": {"x": 1}, "chain": [{"url": "https://a.test/", "new": true}]}"#,
        );
        let Observed::Http(h) = o else {
            panic!("{o:?}")
        };
        assert_eq!(h.url, "https://a.test/");
        assert_eq!(h.hops().len(), 1);
        assert!(h.hops()[0].status.is_none());
        assert!(matches!(Observed::from_wire("dns", "{}"), Observed::Dns(_)));
        assert!(matches!(Observed::from_wire("tls", "{}"), Observed::Tls(_)));
        assert!(matches!(
            Observed::from_wire("session", "{}"),
            Observed::Session(_)
        ));
        // A failure code from a newer probe reads as none, not as an error.
        let o = Observed::from_wire(
            "http",
            r#"{"url": "u", "samples": [{"index": 0, "ok": false, "failure_code": "from_the_future"}]}"#,
        );
        let Observed::Http(h) = o else {
            panic!("{o:?}")
        };
        let samples = h.samples.unwrap();
        assert!(!samples[0].ok && samples[0].failure_code.is_none());
    }

    #[test]
    fn unreadable_details_are_kept_as_they_came() {
        let o = Observed::from_wire("smtp", r#"{"rtt_us": 5}"#);
        assert_eq!(o, Observed::Other(serde_json::json!({ "rtt_us": 5 })));
        assert_eq!(o.kind(), None);
        let o = Observed::from_wire("http", "not json");
        assert_eq!(o, Observed::Other(Value::String("not json".into())));
        assert_eq!(o.to_wire(), "\"not json\"");
        // The wrong shape for the kind.
        let o = Observed::from_wire("http", r#"{"url": 5}"#);
        assert_eq!(o, Observed::Other(serde_json::json!({ "url": 5 })));
        let o = Observed::from_wire("dns", &"[".repeat(10_000));
        assert!(matches!(o, Observed::Other(Value::String(_))));
    }

    #[test]
    fn kinds_round_trip() {
        for &k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("smtp".parse::<Kind>().is_err());
    }
}
