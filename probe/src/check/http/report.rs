//! `outpost-probe check URL`: what a machine client experiences at each hop,
//! for a human. Rendered from an outcome's `details`, so the command shows
//! exactly what a check records.

use std::fmt::Write as _;

use serde_json::Value;

use crate::check::Outcome;

fn ms(v: &Value) -> Option<String> {
    v.as_u64()
        .map(|us| crate::human::duration(std::time::Duration::from_micros(us)).to_string())
}

fn reason(status: u64) -> &'static str {
    u16::try_from(status)
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

fn hint(code: &str) -> &'static str {
    match code {
        "redirect_downgrade" => " (allow_downgrade = true permits it)",
        "redirect_method_changed" => {
            " (the body is dropped; 307/308 keep the method, or allow_method_change = true)"
        }
        "redirect_loop" => " (this URL was already requested)",
        "redirect_limit" => " (raise max_hops, or shorten the chain)",
        _ => "",
    }
}

/// The verdicts a strict check would give, and the text to print.
#[derive(Debug, Clone)]
pub struct Report {
    /// Human-readable trace.
    pub text: String,
    /// A check with `follow_redirects = true` and these settings passes.
    pub passes_following: bool,
}

/// Renders `o` (run with `report_only`, so violations are recorded per hop
/// while the chain is followed to its end).
pub fn render(o: &Outcome) -> Report {
    let details = o.details();
    let d = &details;
    let mut t = String::new();
    let empty = Vec::new();
    let chain = d["chain"].as_array().unwrap_or(&empty);
    let _ = writeln!(
        t,
        "{} {}",
        d["method"].as_str().unwrap_or("GET"),
        d["url"].as_str().unwrap_or("")
    );
    let mut first_violation: Option<(usize, String)> = None;
    for (i, h) in chain.iter().enumerate() {
        let _ = writeln!(
            t,
            "\nhop {}  {} {}",
            i + 1,
            h["method"].as_str().unwrap_or(""),
            h["url"].as_str().unwrap_or("")
        );
        if i > 0 {
            let prev = &chain[i - 1];
            let mut changes = Vec::new();
            if prev["scheme"] != h["scheme"] {
                let down = h["scheme"] == "http";
                changes.push(format!(
                    "scheme {} → {}{}",
                    prev["scheme"].as_str().unwrap_or(""),
                    h["scheme"].as_str().unwrap_or(""),
                    if down { " (downgrade)" } else { "" }
                ));
            }
            if prev["method"] != h["method"] {
                changes.push(format!(
                    "method {} → {}",
                    prev["method"].as_str().unwrap_or(""),
                    h["method"].as_str().unwrap_or("")
                ));
            }
            if h["body_kept"] == false {
                changes.push("request body dropped".into());
            }
            if h["credentials_dropped"] == true {
                changes.push("Authorization/Cookie withheld (other origin)".into());
            }
            if !changes.is_empty() {
                let _ = writeln!(t, "       {}", changes.join(" · "));
            }
        }
        let p = &h["phases_us"];
        let mut facts = Vec::new();
        if let Some(a) = h["address"].as_str() {
            facts.push(a.to_owned());
        }
        if let Some(v) = h["http_version"].as_str() {
            facts.push(v.to_owned());
        }
        for (k, name) in [
            ("dns", "dns"),
            ("connect", "connect"),
            ("tls", "tls"),
            ("first_byte", "first byte"),
            ("total", "total"),
        ] {
            if let Some(v) = ms(&p[k]) {
                facts.push(format!("{name} {v}"));
            }
        }
        let _ = writeln!(t, "       {}", facts.join(" · "));
        if let Some(tls) = h["tls"].as_object() {
            let mut line = format!(
                "       TLS {}",
                tls.get("version").and_then(Value::as_str).unwrap_or("?")
            );
            if let Some(alpn) = tls.get("alpn").and_then(Value::as_str) {
                let _ = write!(line, " ({alpn})");
            }
            if tls.get("verified") == Some(&Value::Bool(true)) {
                line.push_str(", certificate verified");
            } else if let Some(e) = tls.get("error").and_then(Value::as_str) {
                let _ = write!(line, ", verification FAILED: {e}");
            }
            if let Some(na) = tls.get("leaf_not_after").and_then(Value::as_str) {
                let days = tls
                    .get("leaf_days_left")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let _ = write!(line, ", leaf expires {na} ({days} days)");
            }
            let _ = writeln!(t, "{line}");
        }
        if let Some(s) = h["status"].as_u64() {
            let mut line = format!("       ← {s} {}", reason(s));
            if let Some(b) = h["body_bytes"].as_u64() {
                let _ = write!(line, " · {b} body bytes");
            }
            let _ = writeln!(t, "{line}");
        }
        if let Some(l) = h["location"].as_str() {
            let _ = writeln!(t, "       Location: {l}");
        }
        let is_redirect = h["location"].is_string()
            && h["status"]
                .as_u64()
                .is_some_and(|s| [301, 302, 303, 307, 308].contains(&s));
        if i == 0 && is_redirect {
            let _ = writeln!(
                t,
                "       ! a client that does not follow redirects stops here: redirect_not_followed"
            );
        }
        for v in h["violations"].as_array().unwrap_or(&empty) {
            let code = v.as_str().unwrap_or("");
            let _ = writeln!(t, "       ! a check would fail here: {code}{}", hint(code));
            if first_violation.is_none() {
                first_violation = Some((i, code.to_owned()));
            }
        }
        if let Some(e) = h["error"].as_str() {
            let phase = h["timeout_phase"]
                .as_str()
                .map(|p| format!(" during {p}"))
                .unwrap_or_default();
            let _ = writeln!(t, "       ✗ {e}{phase}");
        }
    }
    let assertions = d["assertions"].as_array().unwrap_or(&empty);
    if !assertions.is_empty() {
        let _ = writeln!(t, "\nassertions");
        for a in assertions {
            let ok = a["ok"] == true;
            let mark = match (ok, a["evaluated"] == false) {
                (true, true) => "n/a ",
                (true, false) => "ok  ",
                (false, _) => "FAIL",
            };
            let mut line = format!(
                "  {mark}  {}: {} (expected {})",
                a["name"].as_str().unwrap_or(""),
                a["actual"],
                a["expected"]
            );
            if let Some(m) = a["message"].as_str() {
                let _ = write!(line, " — {} {m}", a["failure_code"].as_str().unwrap_or(""));
            }
            let _ = writeln!(t, "{line}");
        }
    }
    let _ = writeln!(t, "\nverdict");
    let following = match (&first_violation, &o.result) {
        (Some((i, code)), _) => format!("FAIL {code} at hop {}", i + 1),
        (None, Ok(())) => "PASS".to_owned(),
        (None, Err(f)) => format!("FAIL {}: {f}", f.code()),
    };
    let _ = writeln!(t, "  following redirects:     {following}");
    let first_is_redirect = chain.first().is_some_and(|h| {
        h["location"].is_string()
            && h["status"]
                .as_u64()
                .is_some_and(|s| [301, 302, 303, 307, 308].contains(&s))
    });
    if first_is_redirect {
        let _ = writeln!(
            t,
            "  not following redirects: FAIL redirect_not_followed ({} to {})",
            chain[0]["status"],
            chain[0]["location"].as_str().unwrap_or("")
        );
    } else {
        let _ = writeln!(t, "  not following redirects: same as above (no redirect)");
    }
    Report {
        text: t,
        passes_following: first_violation.is_none() && o.ok(),
    }
}
