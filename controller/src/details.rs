//! A result's kind-specific `details`: read once into the probe's typed
//! [`Observed`] ([`decode`], at ingest and wherever stored rows are read),
//! the one-line summary a status cell shows ("1 of 2 backends failing",
//! "session age 2 h 13 min, 14 renewals, …"), and the redaction applied before
//! any details are rendered raw.
//!
//! Reading is tolerant: details come from probes of any version, so what
//! does not read as its kind's type becomes [`Observed::Other`], and a
//! missing field yields less text, never an error. Shapes are documented in
//! the probe's `check/http.rs`, `check/dns.rs`, `check/tls.rs` and
//! `check/session.rs`.

use outpost_probe::check::{Observed, dns, heartbeat, http, session};

use crate::format;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What ingest stores in place of details larger than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Truncated {
    truncated: bool,
    bytes: usize,
}

/// Details that say nothing: what ingest stores for empty or non-JSON
/// details (`{}`), read as [`Observed::Other`] so the API shows `{}` rather
/// than a kind's empty defaults.
pub fn empty() -> Observed {
    Observed::Other(Value::Object(serde_json::Map::new()))
}

/// Reads a result's `details_json` of `kind`, as a probe sent it or as the
/// store holds it: [`Observed::from_wire`], except that the placeholders
/// ingest stores ([`received`]) read as [`Observed::Other`] with their own
/// JSON. Total: never fails.
pub fn decode(kind: &str, details_json: &str) -> Observed {
    if details_json.trim() == "{}" {
        return empty();
    }
    // The note is a few dozen bytes; anything longer is not one (and
    // trying it would parse every result's details twice).
    if details_json.len() <= 128
        && let Ok(note) = serde_json::from_str::<Truncated>(details_json)
    {
        return Observed::Other(serde_json::to_value(note).unwrap_or_default());
    }
    Observed::from_wire(kind, details_json)
}

/// What ingest stores of details received from a probe: the text as sent,
/// or a placeholder — `{"truncated": true, "bytes": N}` above `max` bytes,
/// `{}` when empty or not JSON. Only checked to be JSON here (a parse that
/// builds nothing); the typed read happens where rows are read
/// ([`decode`]), and ingest's derived rows read only their own keys
/// ([`crate::event::from_result`], [`crate::certificate::from_result`]).
pub fn received(details_json: String, max: usize) -> String {
    if details_json.len() > max {
        let note = Truncated {
            truncated: true,
            bytes: details_json.len(),
        };
        return serde_json::to_string(&note).unwrap_or_else(|_| "{}".into());
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(&details_json).is_err() {
        return "{}".to_owned();
    }
    details_json
}

/// Keys whose values are never rendered, whatever a probe sends (matched
/// case-insensitively as substrings: `access_token`, `Set-Cookie`, …).
pub const REDACTED_KEYS: &[&str] = &[
    "token",
    "secret",
    "password",
    "cookie",
    "authorization",
    "api_key",
    "api-key",
    "apikey",
];

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// True when a key's value must not be shown.
pub fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    REDACTED_KEYS.iter().any(|s| k.contains(s))
}

/// Replaces the value of every sensitive key in `v` with [`REDACTED`], at
/// any depth.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_sensitive(k) {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Details as they leave the controller raw (the API's `details`, the check
/// page's "raw details"): the typed value serialized, then [`redact`]ed.
///
/// The probe already scrubs credentials it knows of from session details,
/// and a typed value carries only the fields this build knows, so a key a
/// probe added is not shown at all; what is left to guard is free-form JSON
/// inside known fields (an assertion's `expected`/`actual`, a body value a
/// JSONPath picked) and [`Observed::Other`], which is whatever was sent.
/// Redacting the serialized value covers all of them, whatever the type
/// grows, so it is done here, once, at the edge.
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'a>(pub &'a Observed);

impl Redacted<'_> {
    /// The redacted JSON.
    pub fn to_value(self) -> Value {
        let mut v = self.0.to_value();
        redact(&mut v);
        v
    }

    /// The same, pretty-printed (the check page).
    pub fn to_pretty(self) -> String {
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }
}

impl Serialize for Redacted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

/// Free-form JSON from inside typed details (an assertion's expected or
/// actual value) as text for a page, [`redact`]ed: a string as itself,
/// `null` as nothing, anything else as compact JSON.
pub fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => {
            let mut v = other.clone();
            redact(&mut v);
            v.to_string()
        }
    }
}

/// A status cell's line for the newest result of a check.
pub fn cell_summary(details: &Observed, now_ms: i64) -> Option<String> {
    match details {
        Observed::Http(d) => http_line(d),
        Observed::Session(d) => session_line(d, now_ms),
        Observed::Dns(d) => dns_line(d),
        Observed::Tls(d) => d
            .forecast
            .as_ref()
            .map(|f| f.summary.clone())
            .filter(|s| !s.is_empty()),
        Observed::Heartbeat(d) => heartbeat_line(d, now_ms),
        _ => None,
    }
}

/// A heartbeat's newest row: `last ping 3 h 2 min ago` when missed, else
/// the ping's method and the run's duration: `POST, run 12.5 s`.
pub fn heartbeat_line(d: &heartbeat::Observed, now_ms: i64) -> Option<String> {
    if d.signal == heartbeat::Signal::Missed {
        return d
            .last_ping_ms
            .map(|at| format!("last ping {} ago", format::ms(now_ms.saturating_sub(at))));
    }
    let mut parts: Vec<String> = d.method.iter().cloned().collect();
    if let Some(run) = d.run_ms {
        parts.push(format!(
            "run {}",
            format::ms(i64::try_from(run).unwrap_or(i64::MAX))
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Addresses failing behind a name, and failed samples: `1 of 2 backends
/// failing (192.0.2.2:443)`, `3 of 20 samples failed`.
pub fn http_line(d: &http::Observed) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(total) = d.addresses_total.filter(|t| *t > 1) {
        let failing = d.addresses_failing.unwrap_or(0);
        if failing > 0 {
            let names: Vec<&str> = d
                .addresses
                .iter()
                .flatten()
                .filter(|a| !a.ok && !a.address.is_empty())
                .map(|a| a.address.as_str())
                .collect();
            let mut line = format!("{failing} of {total} backends failing");
            if !names.is_empty() {
                line.push_str(&format!(" ({})", names.join(", ")));
            }
            parts.push(line);
        } else {
            parts.push(format!("all {total} backends passing"));
        }
    }
    if let Some(s) = d.samples_summary.as_ref().filter(|s| s.failed > 0) {
        parts.push(format!("{} of {} samples failed", s.failed, s.total));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `session age 2 h 13 min, 14 renewals, declared lifetime 1 h, next renewal in 4 min`
/// (plus logins, the observed lifetime and the server clock offset when known).
pub fn session_line(d: &session::Observed, now_ms: i64) -> Option<String> {
    let mut parts = Vec::new();
    let (facts, run) = (d.session.as_ref(), d.run.as_ref());
    if let Some(f) = facts {
        parts.push(format!("session age {}", format::secs(f.session_age_s)));
    }
    if let Some(r) = run {
        let n = r.renewals;
        parts.push(format!("{n} renewal{}", if n == 1 { "" } else { "s" }));
        if r.logins > 1 {
            parts.push(format!("{} logins", r.logins));
        }
    }
    if let Some(l) = facts.and_then(|f| f.declared_lifetime_s) {
        parts.push(format!("declared lifetime {}", format::secs(l)));
    }
    if let Some(l) = run.and_then(|r| r.observed_lifetime_s) {
        parts.push(format!("observed lifetime {}", format::secs(l)));
    }
    let next = facts
        .and_then(|f| f.next_renewal_at.clone().flatten())
        .and_then(|t| crate::certificate::parse_time(&t));
    if let Some(at) = next {
        if at > now_ms {
            parts.push(format!("next renewal in {}", format::ms(at - now_ms)));
        } else {
            parts.push(format!("renewal due {} ago", format::ms(now_ms - at)));
        }
    }
    if let Some(off) = run
        .and_then(|r| r.server_clock_offset_ms)
        .filter(|o| o.abs() >= 1000)
    {
        parts.push(format!(
            "server clock {}{}",
            if off > 0 { "+" } else { "−" },
            format::ms(off.abs())
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Propagation and disagreement in one line.
pub fn dns_line(d: &dns::Observed) -> Option<String> {
    if let Some(p) = &d.propagation {
        let lagging = p.lagging.len();
        return Some(format!(
            "change {}: {lagging} resolver{} lagging",
            if p.stalled { "STALLED" } else { "propagating" },
            if lagging == 1 { "" } else { "s" }
        ));
    }
    if !d.disagreement.is_empty() {
        return Some(format!(
            "resolvers disagree ({} answer sets)",
            d.disagreement.len()
        ));
    }
    let answer = d.resolvers.first()?.answer.as_ref()?;
    let target = &answer.cname_chain.last()?.target;
    (!target.is_empty()).then(|| format!("→ {target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: &str, details: serde_json::Value) -> Observed {
        decode(kind, &details.to_string())
    }

    #[test]
    fn session_line_reads_like_a_sentence() {
        let now = 1_900_000_000_000;
        let next = crate::certificate::rfc3339(now + 240_000);
        let d = typed(
            "session",
            serde_json::json!({
                "session_id": "s-1", "session_age_s": 7980.4, "declared_lifetime_s": 3600.0,
                "next_renewal_at": next, "renewals": 14, "logins": 1, "persisted": true,
            }),
        );
        assert_eq!(
            cell_summary(&d, now).unwrap(),
            "session age 2 h 13 min, 14 renewals, declared lifetime 1 h, next renewal in 4 min"
        );
    }

    #[test]
    fn fan_out_names_the_failing_backend() {
        let d = typed(
            "http",
            serde_json::json!({
                "url": "https://www.example.net/", "addresses_total": 2, "addresses_failing": 1,
                "addresses": [{"address": "192.0.2.1:443", "ok": true}, {"address": "192.0.2.2:443", "ok": false}]
            }),
        );
        assert_eq!(
            cell_summary(&d, 0).unwrap(),
            "1 of 2 backends failing (192.0.2.2:443)"
        );
    }

    #[test]
    fn dns_and_tls_lines_come_from_their_kinds_only() {
        let stalled = serde_json::json!({
            "name": "app.example.com",
            "propagation": {"leader": "udp://10.0.0.53:53", "stalled": true,
                            "lagging": [{"resolver": "udp://10.0.0.54:53"}]}
        });
        assert_eq!(
            cell_summary(&typed("dns", stalled.clone()), 0).unwrap(),
            "change STALLED: 1 resolver lagging"
        );
        // The same JSON under another kind says nothing.
        assert_eq!(cell_summary(&typed("http", stalled), 0), None);
        let tls = serde_json::json!({"host": "a.test", "port": 443, "forecast": {"summary": "all pass for 41 days"}});
        assert_eq!(
            cell_summary(&typed("tls", tls), 0).unwrap(),
            "all pass for 41 days"
        );
        assert_eq!(cell_summary(&empty(), 0), None);
    }

    #[test]
    fn sensitive_keys_are_redacted_at_any_depth() {
        let mut d = serde_json::json!({
            "ok": true, "Authorization": "Bearer x",
            "events": [{"refresh_token": "y", "status": 200}],
            "headers": {"Set-Cookie": "sid=z", "x-api-key": "k"}
        });
        redact(&mut d);
        let r = d.to_string();
        for secret in ["Bearer x", "\"y\"", "sid=z", "\"k\""] {
            assert!(!r.contains(secret), "{r}");
        }
        assert!(r.contains("\"status\":200"), "{r}");
    }

    #[test]
    fn typed_details_leave_redacted_and_without_keys_this_build_does_not_know() {
        // A JSONPath assertion that picked a token out of a login response,
        // and a key a newer probe might add.
        let d = typed(
            "http",
            serde_json::json!({
                "url": "https://a.test/", "status": 200, "access_token": "SECRET-1",
                "assertions": [{"name": "json $.session", "kind": "json", "ok": true,
                                "actual": {"access_token": "SECRET-2", "user": "ann"}}]
            }),
        );
        let out = Redacted(&d).to_value();
        let text = out.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(out["assertions"][0]["actual"]["access_token"], REDACTED);
        assert_eq!(out["assertions"][0]["actual"]["user"], "ann");
        assert_eq!(out["status"], 200);
        // Details of no known kind are shown as sent, redacted too.
        let other = decode("icmp", r#"{"password": "SECRET-3", "rtt_us": 5}"#);
        assert_eq!(
            serde_json::to_value(Redacted(&other)).unwrap(),
            serde_json::json!({"password": REDACTED, "rtt_us": 5})
        );
    }

    #[test]
    fn details_read_as_their_kind_and_placeholders_as_themselves() {
        let http = r#"{"url": "https://a.test/", "status": 200, "added_later": 1}"#;
        let text = received(http.to_owned(), 1024);
        assert_eq!(text, http, "stored exactly as sent");
        assert!(matches!(decode("http", &text), Observed::Http(h) if h.last.status == Some(200)));

        let text = received("x".repeat(2000), 1024);
        assert_eq!(text, r#"{"truncated":true,"bytes":2000}"#);
        assert_eq!(
            decode("http", &text),
            Observed::Other(serde_json::json!({"truncated": true, "bytes": 2000}))
        );

        for bad in ["", "not json", "{\"url\": ", "{} trailing"] {
            assert_eq!(received(bad.to_owned(), 1024), "{}", "{bad:?}");
        }
        assert_eq!(decode("tls", "{}"), empty());
        // JSON that is not the kind's shape is kept as it came.
        let text = received("[1]".to_owned(), 1024);
        assert_eq!(text, "[1]");
        assert_eq!(
            decode("http", &text),
            Observed::Other(serde_json::json!([1]))
        );
    }
}
