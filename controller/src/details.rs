//! A result's kind-specific `details`: read once into the probe's typed
//! [`Observed`] ([`decode`], at ingest and wherever stored rows are read),
//! the one-line summary a status cell shows ("1 of 2 backends failing",
//! "session age 2h 13m, 14 renewals, …"), and the redaction applied before
//! any details are rendered raw.
//!
//! Reading is tolerant: details come from probes of any version, so what
//! does not read as its kind's type becomes [`Observed::Other`], and a
//! missing field yields less text, never an error. Shapes are documented in
//! the probe's `check/http.rs`, `check/dns.rs`, `check/tls.rs` and
//! `check/session.rs`.

use outpost_probe::check::Observed;
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
    if let Ok(note) = serde_json::from_str::<Truncated>(details_json) {
        return Observed::Other(serde_json::to_value(note).unwrap_or_default());
    }
    Observed::from_wire(kind, details_json)
}

/// What ingest keeps of details received from a probe: the text to store
/// (as sent, or a placeholder: `{"truncated": true, "bytes": N}` above `max`
/// bytes, `{}` when empty or not JSON) and its typed value, read once.
pub fn received(kind: &str, details_json: String, max: usize) -> (String, Observed) {
    if details_json.len() > max {
        let note = Truncated {
            truncated: true,
            bytes: details_json.len(),
        };
        let text = serde_json::to_string(&note).unwrap_or_else(|_| "{}".into());
        let observed = decode(kind, &text);
        return (text, observed);
    }
    let observed = decode(kind, &details_json);
    // Details that read as their kind's type are JSON; only the rest needs
    // the check (a second parse, on this rare path only).
    if matches!(observed, Observed::Other(_))
        && serde_json::from_str::<serde::de::IgnoredAny>(&details_json).is_err()
    {
        return ("{}".to_owned(), empty());
    }
    (details_json, observed)
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

/// A copy of `v` with the value of every sensitive key replaced by
/// [`REDACTED`], at any depth.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive(k) {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// `45s`, `4m`, `2h 13m`, `3d 4h` (two units at most; negative as zero).
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => match s % 60 {
            0 => format!("{m}m"),
            sec if m < 10 => format!("{m}m {sec}s"),
            _ => format!("{m}m"),
        },
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key)
        .and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A status cell's line for the newest result of a check of `kind`.
pub fn cell_summary(kind: &str, details: &Value, now_ms: i64) -> Option<String> {
    match kind {
        "http" => http_line(details),
        "session" => session_line(details, now_ms),
        "dns" => dns_line(details),
        "tls" => details
            .get("forecast")
            .and_then(|f| text(f, "summary"))
            .map(str::to_owned),
        _ => None,
    }
}

/// Addresses failing behind a name, and failed samples: `1 of 2 backends
/// failing (192.0.2.2:443)`, `3 of 20 samples failed`.
pub fn http_line(d: &Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(total) = int(d, "addresses_total").filter(|t| *t > 1) {
        let failing = int(d, "addresses_failing").unwrap_or(0);
        if failing > 0 {
            let names: Vec<&str> = d
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|a| a.get("ok").and_then(Value::as_bool) == Some(false))
                .filter_map(|a| text(a, "address"))
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
    if let Some(s) = d.get("samples_summary") {
        let (total, failed) = (int(s, "total").unwrap_or(0), int(s, "failed").unwrap_or(0));
        if failed > 0 {
            parts.push(format!("{failed} of {total} samples failed"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `session age 2h 13m, 14 renewals, declared lifetime 1h, next renewal in 4m`
/// (plus logins, the observed lifetime and the server clock offset when known).
pub fn session_line(d: &Value, now_ms: i64) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(age) = int(d, "session_age_s") {
        parts.push(format!("session age {}", span(age * 1000)));
    }
    if let Some(n) = int(d, "renewals") {
        parts.push(format!("{n} renewal{}", if n == 1 { "" } else { "s" }));
    }
    if let Some(n) = int(d, "logins").filter(|n| *n > 1) {
        parts.push(format!("{n} logins"));
    }
    if let Some(l) = int(d, "declared_lifetime_s") {
        parts.push(format!("declared lifetime {}", span(l * 1000)));
    }
    if let Some(l) = int(d, "observed_lifetime_s") {
        parts.push(format!("observed lifetime {}", span(l * 1000)));
    }
    if let Some(at) = d
        .get("next_renewal_at")
        .and_then(Value::as_str)
        .and_then(crate::certificate::parse_time)
    {
        if at > now_ms {
            parts.push(format!("next renewal in {}", span(at - now_ms)));
        } else {
            parts.push(format!("renewal due {} ago", span(now_ms - at)));
        }
    }
    if let Some(off) = int(d, "server_clock_offset_ms").filter(|o| o.abs() >= 1000) {
        parts.push(format!(
            "server clock {}{}",
            if off > 0 { "+" } else { "−" },
            span(off.abs())
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Propagation and disagreement in one line.
pub fn dns_line(d: &Value) -> Option<String> {
    if let Some(p) = d.get("propagation") {
        let lagging = p
            .get("lagging")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let stalled = p.get("stalled").and_then(Value::as_bool) == Some(true);
        return Some(format!(
            "change {}: {lagging} resolver{} lagging",
            if stalled { "STALLED" } else { "propagating" },
            if lagging == 1 { "" } else { "s" }
        ));
    }
    if let Some(groups) = d.get("disagreement").and_then(Value::as_array) {
        return Some(format!("resolvers disagree ({} answer sets)", groups.len()));
    }
    let first = d.get("resolvers")?.as_array()?.first()?;
    let chain: Vec<&str> = first
        .get("cname_chain")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| text(c, "target"))
        .collect();
    chain.last().map(|t| format!("→ {t}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_have_two_units_at_most() {
        assert_eq!(span(45_000), "45s");
        assert_eq!(span(240_000), "4m");
        assert_eq!(span(2 * 3_600_000 + 13 * 60_000 + 5_000), "2h 13m");
        assert_eq!(span(3_600_000), "1h");
        assert_eq!(span(27 * 3_600_000), "1d 3h");
    }

    #[test]
    fn session_line_reads_like_a_sentence() {
        let now = 1_900_000_000_000;
        let next = crate::certificate::rfc3339(now + 240_000);
        let d = serde_json::json!({
            "session_age_s": 7980, "renewals": 14, "logins": 1, "declared_lifetime_s": 3600,
            "next_renewal_at": next, "access_token": "never-shown"
        });
        assert_eq!(
            session_line(&d, now).unwrap(),
            "session age 2h 13m, 14 renewals, declared lifetime 1h, next renewal in 4m"
        );
    }

    #[test]
    fn fan_out_names_the_failing_backend() {
        let d = serde_json::json!({
            "addresses_total": 2, "addresses_failing": 1,
            "addresses": [{"address": "192.0.2.1:443", "ok": true}, {"address": "192.0.2.2:443", "ok": false}]
        });
        assert_eq!(
            http_line(&d).unwrap(),
            "1 of 2 backends failing (192.0.2.2:443)"
        );
    }

    #[test]
    fn sensitive_keys_are_redacted_at_any_depth() {
        let d = serde_json::json!({
            "ok": true, "Authorization": "Bearer x",
            "events": [{"refresh_token": "y", "status": 200}],
            "headers": {"Set-Cookie": "sid=z", "x-api-key": "k"}
        });
        let r = redact(&d).to_string();
        for secret in ["Bearer x", "\"y\"", "sid=z", "\"k\""] {
            assert!(!r.contains(secret), "{r}");
        }
        assert!(r.contains("\"status\":200"), "{r}");
    }

    #[test]
    fn details_read_as_their_kind_and_placeholders_as_themselves() {
        let http = r#"{"url": "https://a.test/", "status": 200, "added_later": 1}"#;
        let (text, observed) = received("http", http.to_owned(), 1024);
        assert_eq!(text, http, "stored exactly as sent");
        assert!(matches!(&observed, Observed::Http(h) if h.last.status == Some(200)));
        assert_eq!(decode("http", &text), observed);

        let (text, observed) = received("http", "x".repeat(2000), 1024);
        assert_eq!(text, r#"{"truncated":true,"bytes":2000}"#);
        assert_eq!(
            observed,
            Observed::Other(serde_json::json!({"truncated": true, "bytes": 2000}))
        );
        assert_eq!(decode("http", &text), observed);

        for bad in ["", "not json", "{\"url\": "] {
            assert_eq!(
                received("dns", bad.to_owned(), 1024),
                ("{}".to_owned(), empty())
            );
        }
        assert_eq!(decode("tls", "{}"), empty());
        // JSON that is not the kind's shape is kept as it came.
        let (text, observed) = received("http", "[1]".to_owned(), 1024);
        assert_eq!(
            (text.as_str(), observed),
            ("[1]", Observed::Other(serde_json::json!([1])))
        );
    }
}
