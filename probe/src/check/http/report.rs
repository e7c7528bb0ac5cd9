//! `outpost-probe check URL`: what a machine client experiences at each hop,
//! for a human. Rendered from an outcome's observations
//! ([`super::Observed`]), so the command shows exactly what a check records.

use std::{fmt::Write as _, time::Duration};

use super::exchange::Hop;
use crate::check::{FailureCode, Observed, Outcome};

fn ms(d: Option<Duration>) -> Option<String> {
    d.map(|d| crate::human::duration(d).to_string())
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

fn is_redirect(h: &Hop) -> bool {
    h.location.is_some()
        && h.status
            .is_some_and(|s| [301, 302, 303, 307, 308].contains(&s))
}

fn hint(code: FailureCode) -> &'static str {
    match code.as_str() {
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
    let default = super::Observed::default();
    let d = match &o.observed {
        Observed::Http(h) => h,
        _ => &default,
    };
    let mut t = String::new();
    let chain = d.hops();
    let method = if d.method.is_empty() {
        "GET"
    } else {
        &d.method
    };
    let _ = writeln!(t, "{method} {}", d.url);
    let mut first_violation: Option<(usize, FailureCode)> = None;
    for (i, h) in chain.iter().enumerate() {
        let _ = writeln!(t, "\nhop {}  {} {}", i + 1, h.method, h.url);
        if i > 0 {
            let prev = &chain[i - 1];
            let mut changes = Vec::new();
            if prev.scheme != h.scheme {
                let down = h.scheme == "http";
                changes.push(format!(
                    "scheme {} → {}{}",
                    prev.scheme,
                    h.scheme,
                    if down { " (downgrade)" } else { "" }
                ));
            }
            if prev.method != h.method {
                changes.push(format!("method {} → {}", prev.method, h.method));
            }
            if h.body_kept == Some(false) {
                changes.push("request body dropped".into());
            }
            if h.credentials_dropped {
                changes.push("Authorization/Cookie withheld (other origin)".into());
            }
            if !changes.is_empty() {
                let _ = writeln!(t, "       {}", changes.join(" · "));
            }
        }
        let p = &h.phases_us;
        let mut facts = Vec::new();
        facts.extend(h.address.clone());
        facts.extend(h.http_version.clone());
        for (v, name) in [
            (p.dns, "dns"),
            (p.connect, "connect"),
            (p.tls, "tls"),
            (p.first_byte, "first byte"),
            (Some(p.total), "total"),
        ] {
            if let Some(v) = ms(v) {
                facts.push(format!("{name} {v}"));
            }
        }
        let _ = writeln!(t, "       {}", facts.join(" · "));
        if let Some(tls) = &h.tls {
            let mut line = format!("       TLS {}", tls.version.as_deref().unwrap_or("?"));
            if let Some(alpn) = &tls.alpn {
                let _ = write!(line, " ({alpn})");
            }
            if tls.verified {
                line.push_str(", certificate verified");
            } else if let Some(e) = tls.error {
                let _ = write!(line, ", verification FAILED: {e}");
            }
            if let Some(na) = &tls.leaf_not_after {
                let days = tls.leaf_days_left.unwrap_or(0);
                let _ = write!(line, ", leaf expires {na} ({days} days)");
            }
            let _ = writeln!(t, "{line}");
        }
        if let Some(s) = h.status {
            let mut line = format!("       ← {s} {}", reason(s));
            if let Some(b) = h.body_bytes {
                let _ = write!(line, " · {b} body bytes");
            }
            let _ = writeln!(t, "{line}");
        }
        if let Some(l) = &h.location {
            let _ = writeln!(t, "       Location: {l}");
        }
        if i == 0 && is_redirect(h) {
            let _ = writeln!(
                t,
                "       ! a client that does not follow redirects stops here: redirect_not_followed"
            );
        }
        for &code in &h.violations {
            let _ = writeln!(t, "       ! a check would fail here: {code}{}", hint(code));
            if first_violation.is_none() {
                first_violation = Some((i, code));
            }
        }
        if let Some(e) = h.error {
            let phase = h
                .timeout_phase
                .as_deref()
                .map(|p| format!(" during {p}"))
                .unwrap_or_default();
            let _ = writeln!(t, "       ✗ {e}{phase}");
        }
    }
    let assertions = d.assertion_results();
    if !assertions.is_empty() {
        let _ = writeln!(t, "\nassertions");
        for a in assertions {
            let mark = match (a.ok, a.evaluated) {
                (true, false) => "n/a ",
                (true, true) => "ok  ",
                (false, _) => "FAIL",
            };
            let mut line = format!(
                "  {mark}  {}: {} (expected {})",
                a.name, a.actual, a.expected
            );
            if let Some(m) = &a.message {
                let code = a.failure_code.map(FailureCode::as_str).unwrap_or("");
                let _ = write!(line, " — {code} {m}");
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
    match chain.first().filter(|h| is_redirect(h)) {
        Some(h) => {
            let _ = writeln!(
                t,
                "  not following redirects: FAIL redirect_not_followed ({} to {})",
                h.status.unwrap_or_default(),
                h.location.as_deref().unwrap_or("")
            );
        }
        None => {
            let _ = writeln!(t, "  not following redirects: same as above (no redirect)");
        }
    }
    Report {
        text: t,
        passes_following: first_violation.is_none() && o.ok(),
    }
}
