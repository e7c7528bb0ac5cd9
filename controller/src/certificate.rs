//! The certificate inventory: every certificate any check saw from any probe.
//!
//! Design note.
//! - **Sources.** The result's details, of which ingest reads only the
//!   certificate-bearing keys ([`from_result`]; every other key is skipped
//!   unread, so a result's timings, headers and assertions cost nothing
//!   here): a `tls` result's [`tls::Report::certificates`] (the probe's
//!   `trust::CertInfo`:
//!   `{fingerprint_sha256, subject, issuer, sans, not_before, not_after,
//!   key_type, signature_algorithm, position, trust_store, is_ca,
//!   self_signed}`) seen at its `address` for its `host`; an `http`
//!   result's hops ([`http::Observed::hops`], each hop's `tls.certificates`
//!   at the hop's address for its URL's host), and the same for every
//!   address's chain with fan-out (`addresses[].chain[]`). [`from_result`]
//!   skips an entry without a fingerprint or a parseable `not_after` (RFC
//!   3339); every other field may be empty.
//! - **Storage.** `certificates` is keyed by fingerprint (what the
//!   certificate is); `certificate_sightings` by (fingerprint, check, probe,
//!   address) (where it was seen, and when last). Ingest upserts both in the
//!   results' transaction, with last-seen times that never move backwards.
//!   A sighting seen again is rewritten only when something about it
//!   changed (region, host, position, trust store, an earlier first
//!   sighting) or its stored last-seen lags by
//!   `store::certificates::SIGHTING_REFRESH_MS` (a minute): last
//!   seen is exact to a minute, and a check every second no longer
//!   rewrites its chain's rows in every batch.
//! - **Served vs. trusted.** Roots a trust store supplied (`position` null,
//!   `trust_store` set) are inventoried too, but only certificates a server
//!   presented are *served*: alerting ([`crate::alerting::certificate`])
//!   looks at served certificates only — an operator can replace those.
//! - **Time.** All arithmetic takes `now` as a parameter: [`days_left`].

use outpost_probe::check::{Kind, trust::CertInfo};
#[cfg(doc)]
use outpost_probe::check::{http, tls};
use serde::Deserialize;
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
pub fn parse_time(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats unix ms as RFC 3339 (seconds).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// SANs sorted and deduplicated, so a renewal listing them in another order
/// still counts as the same names.
fn sans(c: &CertInfo) -> Vec<String> {
    let mut out = c.sans.clone();
    out.sort();
    out.dedup();
    out
}

/// One inventory entry, or `None` without a fingerprint or `not_after`.
fn parse_one(c: &CertInfo, address: &str, host: &str) -> Option<Seen> {
    let fingerprint = c.fingerprint_sha256.to_ascii_lowercase().replace(':', "");
    if fingerprint.is_empty() {
        return None;
    }
    Some(Seen {
        fingerprint,
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        sans: sans(c),
        not_before_ms: parse_time(&c.not_before),
        not_after_ms: parse_time(&c.not_after)?,
        key_type: c.key_type.clone(),
        signature_algorithm: c.signature_algorithm.clone(),
        is_ca: c.is_ca,
        self_signed: c.self_signed,
        position: c.position.and_then(|p| i64::try_from(p).ok()),
        trust_store: c.trust_store.clone(),
        address: address.to_owned(),
        host: host.to_owned(),
    })
}

fn add_all(list: &[CertInfo], address: &str, host: &str, out: &mut Vec<Seen>) {
    for c in list {
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
    url.parse::<::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default()
}

/// What ingest reads of an `http` result's details ([`http::Observed`]):
/// the hops of its representative sample and of every address's chain,
/// each hop only as far as its certificates. Keys are the probe's; any
/// other key is skipped unread.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HttpCertificates {
    chain: Option<Vec<HopCertificates>>,
    addresses: Option<Vec<AddressCertificates>>,
}

/// An entry of `addresses` ([`http::observed::AddressRecord`]).
#[derive(Deserialize, Default)]
#[serde(default)]
struct AddressCertificates {
    chain: Option<Vec<HopCertificates>>,
}

/// A hop ([`http::exchange::Hop`]).
#[derive(Deserialize, Default)]
#[serde(default)]
struct HopCertificates {
    url: String,
    address: Option<String>,
    tls: Option<TlsCertificates>,
}

/// A hop's `tls` ([`http::exchange::TlsInfo`]).
#[derive(Deserialize, Default)]
#[serde(default)]
struct TlsCertificates {
    certificates: Vec<CertInfo>,
}

/// What ingest reads of a `tls` result's details ([`tls::Report`]).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ReportCertificates {
    host: String,
    server_name: String,
    address: Option<String>,
    certificates: Option<Vec<CertInfo>>,
}

fn add_chain(chain: &[HopCertificates], out: &mut Vec<Seen>) {
    for hop in chain {
        if let Some(tls) = &hop.tls {
            let address = hop.address.as_deref().unwrap_or_default();
            add_all(&tls.certificates, address, &url_host(&hop.url), out);
        }
    }
}

fn from_tls(d: &ReportCertificates, out: &mut Vec<Seen>) {
    let address = d.address.as_deref().unwrap_or_default();
    let host = if d.host.is_empty() {
        &d.server_name
    } else {
        &d.host
    };
    add_all(
        d.certificates.as_deref().unwrap_or_default(),
        address,
        host,
        out,
    );
}

fn from_http(d: &HttpCertificates, out: &mut Vec<Seen>) {
    add_chain(d.chain.as_deref().unwrap_or_default(), out);
    for a in d.addresses.iter().flatten() {
        add_chain(a.chain.as_deref().unwrap_or_default(), out);
    }
}

/// The inventory entry of a certificate the controller holds itself (a
/// listener's, or a probe's client certificate), as if served at `address`.
pub fn own(der: &rustls_pki_types::CertificateDer<'_>, address: &str, host: &str) -> Option<Seen> {
    let info = outpost_probe::check::trust::describe_chain(std::slice::from_ref(der));
    let mut s = parse_one(info.first()?, address, host)?;
    s.position = Some(0);
    s.trust_store = None;
    Some(s)
}

/// Every certificate a result reports, each once per address.
///
/// Reads the certificate-bearing keys of `http` and `tls` details straight
/// from the stored JSON (not the whole typed value: at an HTTPS result's
/// size that is several times the work, most of it building strings and
/// lists nothing here reads). Details that do not read so report none, as
/// other kinds do.
pub fn from_result(r: &NewResult) -> Vec<Seen> {
    let mut out = Vec::new();
    match r.kind.parse::<Kind>() {
        Ok(Kind::Tls) => {
            if let Ok(d) = serde_json::from_str(&r.details_json) {
                from_tls(&d, &mut out);
            }
        }
        Ok(Kind::Http) => {
            if let Ok(d) = serde_json::from_str(&r.details_json) {
                from_http(&d, &mut out);
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(kind: &str, details: String) -> NewResult {
        let mut r = crate::store::tests::result("r", 1, "eu", true, 1);
        r.check_id = "c".into();
        r.kind = kind.into();
        r.with_details(details)
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
            })
            .to_string(),
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
            ]})
            .to_string(),
        );
        let seen = from_result(&http);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].host, "www.example.net");
        assert_eq!(seen[0].address, "192.0.2.1:443");
    }

    /// The ingest view ([`from_result`]) against the whole typed value, on
    /// every captured http and tls run: the same certificates at the same
    /// addresses, so a key renamed in the probe's types cannot silently
    /// empty the inventory.
    #[test]
    fn the_ingest_view_reads_what_the_typed_details_hold() {
        use outpost_probe::check::Observed;
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../probe/tests/fixtures/details"
        );
        let mut with_certificates = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let kind = name.split('-').next().unwrap_or_default();
            if !name.ends_with(".json") || !matches!(kind, "http" | "tls") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let pairs = |list: &[CertInfo], address: Option<&String>| {
                let address = address.cloned().unwrap_or_default();
                list.iter()
                    .map(|c| (c.fingerprint_sha256.clone(), address.clone()))
                    .collect::<Vec<_>>()
            };
            let mut typed: Vec<(String, String)> = match Observed::from_wire(kind, &text) {
                Observed::Http(d) => d
                    .hops()
                    .iter()
                    .chain(
                        d.addresses
                            .iter()
                            .flatten()
                            .flat_map(|a| a.chain.iter().flatten()),
                    )
                    .filter_map(|h| Some(pairs(&h.tls.as_ref()?.certificates, h.address.as_ref())))
                    .flatten()
                    .collect(),
                Observed::Tls(d) => pairs(d.certificates(), d.address.as_ref()),
                other => panic!("{name} does not read as {kind}: {other:?}"),
            };
            typed.sort();
            typed.dedup();
            let mut viewed: Vec<(String, String)> = from_result(&result(kind, text))
                .into_iter()
                .map(|s| (s.fingerprint, s.address))
                .collect();
            viewed.sort();
            assert_eq!(viewed, typed, "{name}");
            with_certificates += usize::from(!typed.is_empty());
        }
        assert!(
            with_certificates >= 3,
            "fixtures with certificates: {with_certificates}"
        );
    }

    #[test]
    fn fan_out_chains_are_read_once_per_address_and_other_kinds_not_at_all() {
        let cert =
            serde_json::json!({"fingerprint_sha256": "aa", "not_after": "2030-01-01T00:00:00Z"});
        let hop = |addr: &str| serde_json::json!({"url": "https://www.example.net/", "address": addr, "tls": {"certificates": [cert]}});
        let details = serde_json::json!({
            "url": "https://www.example.net/",
            "chain": [hop("192.0.2.1:443")],
            "addresses": [{"address": "192.0.2.1:443", "chain": [hop("192.0.2.1:443")]},
                          {"address": "192.0.2.2:443", "chain": [hop("192.0.2.2:443")]}]
        })
        .to_string();
        let seen = from_result(&result("http", details.clone()));
        let addresses: Vec<&str> = seen.iter().map(|s| s.address.as_str()).collect();
        assert_eq!(addresses, ["192.0.2.1:443", "192.0.2.2:443"]);
        assert!(from_result(&result("dns", details)).is_empty());
    }
}
