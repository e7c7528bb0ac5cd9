//! blackbox_exporter's series, computed from one run: what the probe's
//! `/probe` answers ([`crate::exporter`]) and what the controller's
//! `/metrics` exports per (check, region) from the newest stored result.
//!
//! Names, units and meanings are blackbox_exporter's, so its dashboards and
//! alert rules apply: seconds for durations; `probe_http_status_code` of the
//! final response (0 when none arrived); `probe_http_redirects` followed;
//! `probe_http_version` (1.1, 2); `probe_ssl_earliest_cert_expiry`, the
//! earliest notAfter (Unix seconds) among the certificates the target
//! presented (a trust store's root does not count); `probe_tls_version_info`
//! 1 for `version="TLS 1.3"`; `probe_dns_lookup_time_seconds` (a dns check:
//! the whole lookup); `probe_http_duration_seconds` by phase (`resolve`,
//! `connect`, `tls`, `processing`: request sent to response head,
//! `transfer`: what the total leaves after the others).

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::check::{Observed, trust::CertInfo};

/// Every family [`series`] can give: name and help, in output order.
pub const FAMILIES: &[(&str, &str)] = &[
    ("probe_success", "Whether the run passed (1) or failed (0)."),
    ("probe_duration_seconds", "How long the run took."),
    (
        "probe_dns_lookup_time_seconds",
        "Name resolution time (a dns check: the whole lookup).",
    ),
    (
        "probe_http_status_code",
        "Status of the final response (0 when none arrived).",
    ),
    ("probe_http_redirects", "Redirects followed."),
    (
        "probe_http_version",
        "HTTP version of the final response (1.1, 2).",
    ),
    (
        "probe_http_duration_seconds",
        "Duration of each phase of the final request (phase: resolve, connect, tls, processing, transfer).",
    ),
    (
        "probe_ssl_earliest_cert_expiry",
        "Earliest notAfter among the certificates the target presented (Unix seconds).",
    ),
    (
        "probe_tls_version_info",
        "1 for the negotiated TLS version (version: TLS 1.2, TLS 1.3).",
    ),
];

/// blackbox_exporter's `probe_http_duration_seconds` phases, in order.
pub const HTTP_PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

/// One series of a run: family, a further label if the family has one
/// (`phase`, `version`), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Family name (one of [`FAMILIES`]).
    pub name: &'static str,
    /// `("phase", "tls")`, `("version", "TLS 1.3")`.
    pub extra: Option<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

/// What one run gave, as the series need it.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Passed.
    pub ok: bool,
    /// The check kind (`http`, `dns`…).
    pub kind: &'a str,
    /// The observations.
    pub observed: &'a Observed,
    /// Phase timings in µs, `[dns, connect, tls, first byte, total]` (0 for
    /// a phase that did not run), when known.
    pub phases_us: Option<[u64; 5]>,
}

/// Phase durations in seconds from µs `[dns, connect, tls, first byte,
/// total]`, as blackbox's phases: `transfer` is what the total leaves after
/// the others (0 before a response head).
pub fn http_phases(us: [u64; 5]) -> [f64; 5] {
    let [dns, connect, tls, first_byte, total] = us;
    let before = dns + connect + tls + first_byte;
    let transfer = if first_byte > 0 {
        total.saturating_sub(before)
    } else {
        0
    };
    [dns, connect, tls, first_byte, transfer].map(secs)
}

/// µs as seconds.
pub fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// `"TLSv1_3"` (http), `"1.3"` (tls) → `"TLS 1.3"`, blackbox's spelling.
pub fn tls_version_label(v: &str) -> String {
    let digits = v.trim_start_matches(|c: char| !c.is_ascii_digit());
    format!("TLS {}", digits.replace('_', "."))
}

/// `"HTTP/1.1"` → 1.1, `"HTTP/2.0"` → 2.
fn http_version(v: &str) -> Option<f64> {
    v.trim_start_matches("HTTP/").parse().ok()
}

/// Earliest notAfter (Unix seconds) among the presented `certs`.
fn earliest_expiry<'a>(certs: impl Iterator<Item = &'a CertInfo>) -> Option<f64> {
    certs
        .filter(|c| c.position.is_some())
        .filter_map(|c| OffsetDateTime::parse(&c.not_after, &Rfc3339).ok())
        .map(|t| t.unix_timestamp())
        .min()
        .map(|s| s as f64)
}

/// The series of one run.
pub fn series(run: Run<'_>) -> Vec<Series> {
    let mut out = Vec::new();
    let mut push = |name: &'static str, extra: Option<(&'static str, String)>, value: f64| {
        out.push(Series { name, extra, value });
    };
    push("probe_success", None, if run.ok { 1.0 } else { 0.0 });
    if let Some(us) = run.phases_us {
        push("probe_duration_seconds", None, secs(us[4]));
        let dns = if us[0] == 0 && run.kind == "dns" {
            us[4]
        } else {
            us[0]
        };
        push("probe_dns_lookup_time_seconds", None, secs(dns));
    }
    let mut tls_version: Option<&str> = None;
    let mut expiry = None;
    match run.observed {
        Observed::Http(h) => {
            push(
                "probe_http_status_code",
                None,
                f64::from(h.last.status.unwrap_or(0)),
            );
            push(
                "probe_http_redirects",
                None,
                h.hops().len().saturating_sub(1) as f64,
            );
            if let Some(v) = h.last.http_version.as_deref().and_then(http_version) {
                push("probe_http_version", None, v);
            }
            if let Some(us) = run.phases_us {
                for (phase, v) in HTTP_PHASES.iter().zip(http_phases(us)) {
                    push(
                        "probe_http_duration_seconds",
                        Some(("phase", (*phase).to_owned())),
                        v,
                    );
                }
            }
            if let Some(tls) = &h.last.tls {
                tls_version = tls.version.as_deref();
                expiry = earliest_expiry(tls.certificates.iter());
            }
        }
        Observed::Tls(r) => {
            tls_version = r
                .handshakes
                .iter()
                .find(|h| h.ok)
                .or(r.handshakes.first())
                .and_then(|h| h.tls_version.as_deref());
            expiry = earliest_expiry(r.certificates().iter());
        }
        _ => {}
    }
    if let Some(v) = tls_version {
        push(
            "probe_tls_version_info",
            Some(("version", tls_version_label(v))),
            1.0,
        );
    }
    if let Some(e) = expiry {
        push("probe_ssl_earliest_cert_expiry", None, e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(series: &[Series], name: &str, extra: Option<(&str, &str)>) -> Option<f64> {
        series
            .iter()
            .find(|s| s.name == name && s.extra.as_ref().map(|(k, v)| (*k, v.as_str())) == extra)
            .map(|s| s.value)
    }

    fn run<'a>(ok: bool, kind: &'a str, o: &'a Observed, us: Option<[u64; 5]>) -> Run<'a> {
        Run {
            ok,
            kind,
            observed: o,
            phases_us: us,
        }
    }

    #[test]
    fn http_run_gives_blackbox_series() {
        let o = Observed::from_wire(
            "http",
            &serde_json::json!({
                "url": "https://a.test/",
                "status": 200, "http_version": "HTTP/2.0",
                "tls": {"version": "TLSv1_3", "verified": true, "certificates": [
                    {"fingerprint_sha256": "aa", "not_after": "2030-01-01T00:00:00Z", "position": 0},
                    {"fingerprint_sha256": "bb", "not_after": "2029-01-01T00:00:00Z", "position": 1},
                    {"fingerprint_sha256": "cc", "not_after": "2020-01-01T00:00:00Z"}
                ]},
                "chain": [{"url": "http://a.test/", "status": 301}, {"url": "https://a.test/", "status": 200}]
            })
            .to_string(),
        );
        assert!(matches!(o, Observed::Http(_)), "{o:?}");
        let got = series(run(
            true,
            "http",
            &o,
            Some([1_000, 2_000, 3_000, 4_000, 15_000]),
        ));
        assert_eq!(value(&got, "probe_success", None), Some(1.0));
        assert_eq!(value(&got, "probe_duration_seconds", None), Some(0.015));
        assert_eq!(
            value(&got, "probe_dns_lookup_time_seconds", None),
            Some(0.001)
        );
        assert_eq!(value(&got, "probe_http_status_code", None), Some(200.0));
        assert_eq!(value(&got, "probe_http_redirects", None), Some(1.0));
        assert_eq!(value(&got, "probe_http_version", None), Some(2.0));
        assert_eq!(
            value(
                &got,
                "probe_http_duration_seconds",
                Some(("phase", "transfer"))
            ),
            Some(0.005)
        );
        assert_eq!(
            value(
                &got,
                "probe_http_duration_seconds",
                Some(("phase", "processing"))
            ),
            Some(0.004)
        );
        assert_eq!(
            value(&got, "probe_tls_version_info", Some(("version", "TLS 1.3"))),
            Some(1.0)
        );
        // A store's root (no position) does not count: the intermediate's date.
        assert_eq!(
            value(&got, "probe_ssl_earliest_cert_expiry", None),
            Some(1_861_920_000.0)
        );
    }

    #[test]
    fn failed_run_without_response_has_status_zero_and_no_expiry() {
        let o = Observed::from_wire("http", r#"{"url": "https://a.test/"}"#);
        let got = series(run(false, "http", &o, None));
        assert_eq!(value(&got, "probe_success", None), Some(0.0));
        assert_eq!(value(&got, "probe_http_status_code", None), Some(0.0));
        assert_eq!(value(&got, "probe_http_redirects", None), Some(0.0));
        assert_eq!(value(&got, "probe_ssl_earliest_cert_expiry", None), None);
        assert_eq!(value(&got, "probe_duration_seconds", None), None);
    }

    #[test]
    fn tls_report_gives_version_and_expiry_and_dns_gives_its_lookup() {
        let o = Observed::from_wire(
            "tls",
            &serde_json::json!({
                "host": "a.test", "port": 443,
                "handshakes": [{"client": "default", "ok": true, "tls_version": "1.2"}],
                "certificates": [{"fingerprint_sha256": "aa", "not_after": "2030-01-01T00:00:00Z", "position": 0}]
            })
            .to_string(),
        );
        let got = series(run(true, "tls", &o, None));
        assert_eq!(
            value(&got, "probe_tls_version_info", Some(("version", "TLS 1.2"))),
            Some(1.0)
        );
        assert_eq!(
            value(&got, "probe_ssl_earliest_cert_expiry", None),
            Some(1_893_456_000.0)
        );
        assert_eq!(value(&got, "probe_http_status_code", None), None);
        let o = Observed::from_wire("dns", "{}");
        let got = series(run(true, "dns", &o, Some([0, 0, 0, 0, 2_500])));
        assert_eq!(
            value(&got, "probe_dns_lookup_time_seconds", None),
            Some(0.0025)
        );
    }
}
