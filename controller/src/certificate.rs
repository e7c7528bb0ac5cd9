//! The certificate inventory: every certificate any check saw from any probe.
//!
//! Design note.
//! - **Sources.** `tls` results carry `details.certificates[]` (the probe's
//!   `check/tls.rs`: `{fingerprint_sha256, subject, issuer, sans, not_before,
//!   not_after, key_type, signature_algorithm, position, trust_store, is_ca,
//!   self_signed}`) with `details.address` and `details.host`; `http` results
//!   may carry `details.chain[].tls.certificates` per hop (and the same under
//!   `details.addresses[].chain[]` with fan-out). [`from_result`] reads all
//!   of them tolerantly: an entry without a fingerprint or a parseable
//!   `not_after` (RFC 3339) is skipped, every other field may be missing.
//! - **Storage.** `certificates` is keyed by fingerprint (what the
//!   certificate is); `certificate_sightings` by (fingerprint, check, probe,
//!   address) (where it was seen, and when last). Ingest upserts both in the
//!   results' transaction, with last-seen times that never move backwards.
//! - **Served vs. trusted.** Roots a trust store supplied (`position` null,
//!   `trust_store` set) are inventoried too, but only certificates a server
//!   presented are *served*: alerting ([`crate::alerting::certificate`])
//!   looks at served certificates only — an operator can replace those.
//! - **Time.** All arithmetic takes `now` as a parameter: [`days_left`].

use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::store::NewResult;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// One certificate as a result reports it, with where it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Subject alternative names.
    pub sans: Vec<String>,
    /// Start of validity, unix ms.
    pub not_before_ms: Option<i64>,
    /// End of validity, unix ms.
    pub not_after_ms: i64,
    /// `ECDSA P-256`, `RSA 2048`, …
    pub key_type: String,
    /// Signature algorithm.
    pub signature_algorithm: String,
    /// Basic constraints say CA.
    pub is_ca: bool,
    /// Self-signed.
    pub self_signed: bool,
    /// Position in the presented chain (0 = leaf); `None` for a store's root.
    pub position: Option<i64>,
    /// Trust store a root came from.
    pub trust_store: Option<String>,
    /// `ip:port` the handshake went to (empty when unknown).
    pub address: String,
    /// Host name checked (empty when unknown).
    pub host: String,
}

impl Seen {
    /// A server presented it (not a trust store's root).
    pub fn served(&self) -> bool {
        self.position.is_some() || self.trust_store.is_none()
    }
}

/// Whole days from `now_ms` until `not_after_ms`, rounded down: 0 on the last
/// day, negative once expired (−1 on the first day after).
pub fn days_left(not_after_ms: i64, now_ms: i64) -> i64 {
    (not_after_ms - now_ms).div_euclid(DAY_MS)
}

/// Parses an RFC 3339 time to unix ms.
pub fn parse_time(v: &Value) -> Option<i64> {
    let t = OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats unix ms as RFC 3339 (seconds).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn text(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// SANs sorted and deduplicated, so a renewal listing them in another order
/// still counts as the same names.
fn sans(c: &Value) -> Vec<String> {
    let mut out: Vec<String> = c
        .get("sans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One inventory entry, or `None` without a fingerprint or `not_after`.
fn parse_one(c: &Value, address: &str, host: &str) -> Option<Seen> {
    let fingerprint = text(c, &["fingerprint_sha256", "fingerprint", "sha256"])?
        .to_ascii_lowercase()
        .replace(':', "");
    if fingerprint.is_empty() {
        return None;
    }
    let not_after_ms = c
        .get("not_after")
        .and_then(parse_time)
        .or_else(|| c.get("not_after_ms").and_then(Value::as_i64))?;
    Some(Seen {
        fingerprint,
        subject: text(c, &["subject"]).unwrap_or_default(),
        issuer: text(c, &["issuer"]).unwrap_or_default(),
        sans: sans(c),
        not_before_ms: c.get("not_before").and_then(parse_time),
        not_after_ms,
        key_type: text(c, &["key_type"]).unwrap_or_default(),
        signature_algorithm: text(c, &["signature_algorithm"]).unwrap_or_default(),
        is_ca: c.get("is_ca").and_then(Value::as_bool).unwrap_or(false),
        self_signed: c
            .get("self_signed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        position: c.get("position").and_then(Value::as_i64),
        trust_store: text(c, &["trust_store"]),
        address: address.to_owned(),
        host: host.to_owned(),
    })
}

fn parse_list(list: Option<&Value>, address: &str, host: &str, out: &mut Vec<Seen>) {
    for c in list.and_then(Value::as_array).into_iter().flatten() {
        if let Some(s) = parse_one(c, address, host)
            && !out
                .iter()
                .any(|o| o.fingerprint == s.fingerprint && o.address == s.address)
        {
            out.push(s);
        }
    }
}

/// The host of an absolute URL (`https://host:port/…` → `host`).
fn url_host(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default()
}

fn parse_chain(chain: Option<&Value>, out: &mut Vec<Seen>) {
    for hop in chain.and_then(Value::as_array).into_iter().flatten() {
        let address = text(hop, &["address"]).unwrap_or_default();
        let host = text(hop, &["url"])
            .map(|u| url_host(&u))
            .unwrap_or_default();
        parse_list(
            hop.get("tls").and_then(|t| t.get("certificates")),
            &address,
            &host,
            out,
        );
    }
}

/// Every certificate a result reports, each once per address.
pub fn from_result(r: &NewResult) -> Vec<Seen> {
    if !matches!(r.kind.as_str(), "tls" | "http") || !r.details_json.contains("certificates") {
        return Vec::new();
    }
    let Ok(d) = serde_json::from_str::<Value>(&r.details_json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let address = text(&d, &["address"]).unwrap_or_default();
    let host = text(&d, &["host", "server_name"]).unwrap_or_default();
    parse_list(d.get("certificates"), &address, &host, &mut out);
    parse_chain(d.get("chain"), &mut out);
    for a in d
        .get("addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        parse_chain(a.get("chain"), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(kind: &str, details: Value) -> NewResult {
        NewResult {
            result_id: "r".into(),
            probe: "p".into(),
            region: "eu".into(),
            check_id: "c".into(),
            sequence: 1,
            kind: kind.into(),
            started_at_ms: 1,
            ok: true,
            failure_code: None,
            failure_message: None,
            phases_us: [0; 5],
            details_json: details.to_string(),
        }
    }

    #[test]
    fn days_left_rounds_down_and_goes_negative_after_expiry() {
        let now = 1_900_000_000_000;
        assert_eq!(days_left(now + 14 * DAY_MS, now), 14);
        assert_eq!(days_left(now + 14 * DAY_MS - 1, now), 13);
        assert_eq!(days_left(now + 1, now), 0);
        assert_eq!(days_left(now - 1, now), -1);
        assert_eq!(days_left(now - 3 * DAY_MS, now), -3);
    }

    #[test]
    fn tls_and_http_certificates_are_read_and_bad_entries_skipped() {
        let tls = result(
            "tls",
            serde_json::json!({
                "host": "api.example.net", "address": "192.0.2.10:443",
                "certificates": [
                    {"fingerprint_sha256": "AB:CD", "subject": "CN=api", "sans": ["api.example.net"],
                     "not_after": "2030-01-01T00:00:00Z", "position": 0},
                    {"fingerprint_sha256": "ee", "not_after": "soon"},
                    {"subject": "no fingerprint", "not_after": "2030-01-01T00:00:00Z"},
                    {"fingerprint_sha256": "ff", "not_after": "2040-01-01T00:00:00Z", "position": null, "trust_store": "mozilla"}
                ]
            }),
        );
        let seen = from_result(&tls);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].fingerprint, "abcd");
        assert_eq!(seen[0].address, "192.0.2.10:443");
        assert_eq!(seen[0].not_after_ms, 1_893_456_000_000);
        assert!(seen[0].served());
        assert!(!seen[1].served());
        let http = result(
            "http",
            serde_json::json!({ "chain": [
                {"url": "http://www.example.net/", "address": "192.0.2.1:80"},
                {"url": "https://www.example.net/", "address": "192.0.2.1:443",
                 "tls": {"certificates": [{"fingerprint_sha256": "aa", "not_after": "2030-01-01T00:00:00Z"}]}}
            ]}),
        );
        let seen = from_result(&http);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].host, "www.example.net");
        assert_eq!(seen[0].address, "192.0.2.1:443");
    }
}
