//! The forecast in words, and the human rendering of a tls check's details
//! ([`render_matrix`], used by `outpost-probe check https://…`).

use std::{fmt::Write as _, sync::Arc};

use super::Combination;
use crate::check::trust::TrustStore;

fn day(rfc3339: &str) -> &str {
    rfc3339.get(..10).unwrap_or(rfc3339)
}

fn state(c: &Combination) -> String {
    let code = c.failure_code.map(|c| c.as_str()).unwrap_or("failing");
    match (c.ok, c.fails_from.as_deref()) {
        (true, Some(d)) if c.root_expiry_known => format!("fine until {}", day(d)),
        (true, Some(d)) => format!("fine until {} (root expiry unknown)", day(d)),
        (true, None) => "fine (no expiry found)".to_owned(),
        (false, Some(d)) => format!("fail from {} ({code})", day(d)),
        (false, None) => format!("fail ({code})"),
    }
}

/// The forecast: per profile, one line when every store agrees, else one
/// line per store; the summary joins them.
pub fn forecast(matrix: &[Combination], stores: &[(String, Arc<TrustStore>)]) -> super::Forecast {
    let mut lines = Vec::new();
    let mut profiles: Vec<&str> = Vec::new();
    for c in matrix {
        if !profiles.contains(&c.profile.as_str()) {
            profiles.push(&c.profile);
        }
    }
    for p in profiles {
        let combos: Vec<&Combination> = matrix.iter().filter(|c| c.profile == p).collect();
        let states: Vec<String> = combos.iter().map(|c| state(c)).collect();
        if combos.len() > 1 && states.iter().all(|s| *s == states[0]) {
            lines.push(format!("{p} clients {}", states[0]));
            continue;
        }
        for (c, s) in combos.iter().zip(states) {
            lines.push(format!("{p} clients trusting {} {s}", c.store));
        }
    }
    let notes: Vec<String> = stores
        .iter()
        .flat_map(|(n, s)| s.notes.iter().map(move |x| format!("{n}: {x}")))
        .collect();
    let mut summary = lines.join("; ");
    if !notes.is_empty() {
        let _ = write!(summary, " (store notes: {})", notes.join("; "));
    }
    super::Forecast { summary, lines }
}

/// Renders a tls check's details (the JSON `details` of its outcome) for a
/// human: the store × profile table (PASS/FAIL with code and the date each
/// combination starts failing), the handshakes, hygiene findings, forecast.
pub fn render_matrix(observed: &crate::check::Observed) -> String {
    let report = match observed {
        crate::check::Observed::Tls(r) if !r.evaluated_at.is_empty() => r,
        other => {
            return format!(
                "no tls matrix in these details (the check did not get to a handshake): {}\n",
                other.to_wire()
            );
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "TLS {}:{} (server name {}) via {}, evaluated at {}",
        report.host,
        report.port,
        report.server_name,
        report.address.as_deref().unwrap_or("?"),
        report.evaluated_at
    );
    let mut stores: Vec<&str> = Vec::new();
    let mut profiles: Vec<&str> = Vec::new();
    for c in &report.matrix {
        if !stores.contains(&c.store.as_str()) {
            stores.push(&c.store);
        }
        if !profiles.contains(&c.profile.as_str()) {
            profiles.push(&c.profile);
        }
    }
    let cell = |p: &str, s: &str| -> String {
        let Some(c) = report
            .matrix
            .iter()
            .find(|c| c.profile == p && c.store == s)
        else {
            return "-".to_owned();
        };
        let mark = if c.must_pass { "" } else { " (info)" };
        match (c.ok, &c.fails_from, c.days_left) {
            (true, Some(d), Some(left)) => {
                let soon = if left < i64::from(c.min_days_left) {
                    " SOON"
                } else {
                    ""
                };
                format!("PASS until {} ({left}d){soon}{mark}", day(d))
            }
            (true, _, _) => format!("PASS{mark}"),
            (false, Some(d), _) => format!(
                "FAIL {} from {}{mark}",
                c.failure_code.map(|c| c.as_str()).unwrap_or("?"),
                day(d)
            ),
            (false, None, _) => format!(
                "FAIL {}{mark}",
                c.failure_code.map(|c| c.as_str()).unwrap_or("?")
            ),
        }
    };
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("profile \\ store".to_owned())
            .chain(stores.iter().map(|s| (*s).to_owned()))
            .collect(),
    ];
    for p in &profiles {
        rows.push(
            std::iter::once((*p).to_owned())
                .chain(stores.iter().map(|s| cell(p, s)))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..=stores.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    out.push('\n');
    for (n, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", line.join(" | ").trim_end());
        if n == 0 {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "  {}", sep.join("-+-"));
        }
    }
    let failing: Vec<&Combination> = report.matrix.iter().filter(|c| !c.ok).collect();
    if !failing.is_empty() {
        out.push_str("\nFailures:\n");
        for c in failing {
            let _ = writeln!(
                out,
                "  {}: {}",
                c.combination,
                c.failure_message.as_deref().unwrap_or("")
            );
        }
    }
    out.push_str("\nHandshakes:\n");
    for h in &report.handshakes {
        match (&h.tls_version, &h.failure_code) {
            (Some(v), _) => {
                let _ = writeln!(
                    out,
                    "  {:<10} TLS {v} {} ({} certificates)",
                    h.client,
                    h.cipher_suite.as_deref().unwrap_or(""),
                    h.chain.len()
                );
            }
            (None, code) => {
                let _ = writeln!(
                    out,
                    "  {:<10} FAIL {}: {}",
                    h.client,
                    code.map(|c| c.as_str()).unwrap_or("?"),
                    h.failure_message.as_deref().unwrap_or("")
                );
            }
        }
    }
    out.push_str("\nChain hygiene:\n");
    let hygiene = report.hygiene.as_deref().unwrap_or_default();
    if hygiene.is_empty() {
        out.push_str("  no findings\n");
    }
    for f in hygiene {
        let _ = writeln!(out, "  [{}] #{}: {}", f.kind, f.position, f.message);
    }
    out.push_str("\nCertificates:\n");
    for c in report.certificates() {
        let pos = c
            .position
            .map(|p| format!("#{p}"))
            .or_else(|| c.trust_store.as_ref().map(|s| format!("root in {s}")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {pos:<8} {} — until {} — {} — {}",
            c.subject,
            day(&c.not_after),
            c.key_type,
            &c.fingerprint_sha256.get(..16).unwrap_or("")
        );
    }
    out.push_str("\nForecast:\n");
    for l in report.forecast.iter().flat_map(|f| &f.lines) {
        let _ = writeln!(out, "  {l}");
    }
    out
}
