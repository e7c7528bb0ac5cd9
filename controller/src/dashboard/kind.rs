//! Kind-specific sections of the check page, rendered from the newest
//! result's `details` (tolerantly: a missing field renders as nothing).
//! One function per kind and one `match` choosing it ([`section`]). Every
//! text is escaped; nothing here renders a key [`crate::details`] redacts.

use std::fmt::Write;

use outpost_probe::check::dns::AnswerSet;
use serde_json::Value;

use super::escape;
use crate::details;

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => escape(s),
        Some(Value::Null) | None => String::new(),
        Some(other) => escape(&other.to_string()),
    }
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn ok_cell(v: &Value) -> &'static str {
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => "<td class=\"OK\">OK</td>",
        Some(false) => "<td class=\"FAILING\">FAIL</td>",
        None => "<td></td>",
    }
}

/// An answer set `{rcode, cname_target, answers}` as HTML.
pub fn answer_set(set: &AnswerSet) -> String {
    let mut s = String::new();
    if let Some(t) = &set.cname_target {
        let _ = write!(s, "CNAME <b>{}</b><br>", escape(t));
    }
    let answers: Vec<String> = set.answers.iter().map(|a| escape(a)).collect();
    if answers.is_empty() {
        let _ = write!(s, "{} (no answers)", escape(&set.rcode));
    } else {
        s.push_str(&answers.join("<br>"));
        if set.rcode != "NOERROR" {
            let _ = write!(s, "<br>{}", escape(&set.rcode));
        }
    }
    s
}

fn answer_set_of(v: Option<&Value>) -> String {
    answer_set(
        &v.cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
    )
}

/// The section for a check of `kind` (empty when the kind has none).
pub fn section(kind: &str, d: &Value, now_ms: i64) -> String {
    match kind {
        "http" => http(d),
        "dns" => dns(d),
        "tls" => tls(d),
        "session" => session(d, now_ms),
        _ => String::new(),
    }
}

fn http_chain(chain: &Value) -> String {
    let hops: Vec<&Value> = chain.as_array().into_iter().flatten().collect();
    if hops.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<table><tr><th>#</th><th>request</th><th>address</th><th>status</th><th>location</th><th>tls</th><th>violations</th></tr>",
    );
    for (i, h) in hops.iter().enumerate() {
        let tls = match h.get("tls") {
            Some(t) if t.is_object() => {
                let verified = match t.get("verified").and_then(Value::as_bool) {
                    Some(true) => "verified".to_owned(),
                    Some(false) => format!("<b>NOT verified</b> {}", text(t, "error")),
                    None => String::new(),
                };
                let left = t
                    .get("leaf_days_left")
                    .and_then(Value::as_i64)
                    .map(|d| format!(", leaf {d} days left"))
                    .unwrap_or_default();
                format!("{} {verified}{left}", text(t, "version"))
            }
            _ => String::new(),
        };
        let violations: Vec<String> = arr(h, "violations")
            .filter_map(Value::as_str)
            .map(|v| format!("<code>{}</code>", escape(v)))
            .collect();
        let class = if violations.is_empty() && h.get("error").is_none_or(Value::is_null) {
            ""
        } else {
            " class=\"FAILING\""
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{} {} <span class=\"small\">({})</span></td><td>{}</td><td{class}>{}{}</td><td>{}</td><td>{tls}</td><td>{}</td></tr>",
            i + 1,
            text(h, "method"),
            text(h, "url"),
            text(h, "scheme"),
            text(h, "address"),
            text(h, "status"),
            h.get("error")
                .and_then(Value::as_str)
                .map(|e| format!(" <code>{}</code>", escape(e)))
                .unwrap_or_default(),
            text(h, "location"),
            violations.join(" "),
        );
    }
    s.push_str("</table>");
    s
}

fn assertions(list: &Value) -> String {
    let items: Vec<&Value> = list.as_array().into_iter().flatten().collect();
    if items.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<table><tr><th>assertion</th><th>kind</th><th>result</th><th>expected</th><th>actual</th><th>code</th><th>message</th></tr>",
    );
    for a in items {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td>{}<td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
            text(a, "name"),
            text(a, "kind"),
            ok_cell(a),
            text(a, "expected"),
            text(a, "actual"),
            text(a, "failure_code"),
            text(a, "message"),
        );
    }
    s.push_str("</table>");
    s
}

fn http(d: &Value) -> String {
    let mut s = String::new();
    if let Some(line) = details::http_line(d) {
        let _ = write!(s, "<p><b>{}</b></p>", escape(&line));
    }
    if let Some(chain) = d.get("chain") {
        let body = http_chain(chain);
        if !body.is_empty() {
            let _ = write!(s, "<h4>Redirect chain</h4>{body}");
        }
    }
    let addresses: Vec<&Value> = arr(d, "addresses").collect();
    if !addresses.is_empty() {
        let _ = write!(
            s,
            "<h4>Addresses ({} failing of {})</h4><table><tr><th>address</th><th>result</th><th>status</th><th>code</th><th>message</th><th>samples failed</th></tr>",
            text(d, "addresses_failing"),
            text(d, "addresses_total")
        );
        for a in addresses {
            let _ = write!(
                s,
                "<tr><td>{}</td>{}<td>{}</td><td><code>{}</code></td><td>{}</td><td>{} of {}</td></tr>",
                text(a, "address"),
                ok_cell(a),
                text(a, "status"),
                text(a, "failure_code"),
                text(a, "failure_message"),
                text(a, "samples_failed"),
                text(a, "samples_total"),
            );
        }
        s.push_str("</table>");
    }
    if let Some(sum) = d.get("samples_summary") {
        let _ = write!(
            s,
            "<h4>Samples</h4><p>{} of {} failed (ratio {}, allowed {})</p>",
            text(sum, "failed"),
            text(sum, "total"),
            text(sum, "ratio"),
            text(sum, "max_failure_ratio")
        );
        if let Some(by) = sum.get("by_backend").and_then(Value::as_object) {
            s.push_str("<table><tr><th>backend</th><th>failed</th><th>total</th></tr>");
            for (backend, v) in by {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(backend),
                    text(v, "failed"),
                    text(v, "total")
                );
            }
            s.push_str("</table>");
        }
    }
    if let Some(list) = d.get("assertions") {
        let body = assertions(list);
        if !body.is_empty() {
            let _ = write!(s, "<h4>Assertions</h4>{body}");
        }
    }
    s
}

fn dns(d: &Value) -> String {
    let mut s = format!("<p>{} <b>{}</b></p>", text(d, "name"), text(d, "type"));
    if let Some(line) = details::dns_line(d) {
        let _ = write!(s, "<p><b>{}</b></p>", escape(&line));
    }
    s.push_str(
        "<table><tr><th>resolver</th><th>result</th><th>rcode</th><th>answers (TTL)</th><th>CNAME chain (TTL)</th><th>addresses (TTL)</th><th>min TTL</th><th>fingerprint</th></tr>",
    );
    for r in arr(d, "resolvers") {
        let answers: Vec<String> = arr(r, "answers")
            .map(|a| {
                format!(
                    "{} {} {} <span class=\"small\">({}s)</span>",
                    text(a, "name"),
                    text(a, "type"),
                    text(a, "data"),
                    text(a, "ttl")
                )
            })
            .collect();
        let chain: Vec<String> = arr(r, "cname_chain")
            .map(|c| {
                format!(
                    "{} → {} <span class=\"small\">({}s)</span>",
                    text(c, "name"),
                    text(c, "target"),
                    text(c, "ttl")
                )
            })
            .collect();
        let addresses: Vec<String> = arr(r, "addresses")
            .map(|a| {
                format!(
                    "{} <span class=\"small\">({}s)</span>",
                    text(a, "ip"),
                    text(a, "ttl")
                )
            })
            .collect();
        let failure = r
            .get("failure_code")
            .and_then(Value::as_str)
            .map(|c| {
                format!(
                    "<br><code>{}</code> {}",
                    escape(c),
                    text(r, "failure_message")
                )
            })
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr><td>{}{failure}</td>{}<td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            text(r, "resolver"),
            ok_cell(r),
            text(r, "rcode"),
            answers.join("<br>"),
            chain.join("<br>"),
            r.get("final_name")
                .and_then(Value::as_str)
                .map(|f| format!("<br>final: <b>{}</b>", escape(f)))
                .unwrap_or_default(),
            addresses.join("<br>"),
            text(r, "min_ttl"),
            text(r, "fingerprint"),
        );
    }
    s.push_str("</table>");
    if let Some(p) = d.get("propagation") {
        let stalled = p.get("stalled").and_then(Value::as_bool) == Some(true);
        let _ = write!(
            s,
            "<h4>Propagation{}</h4><p>{} changed at {} (old TTL {}s; deadline {}):</p><table><tr><th>old</th><th></th><th>new</th></tr><tr><td>{}</td><td class=\"arrow\">→</td><td>{}</td></tr></table>",
            if stalled {
                " — <span class=\"FAILING\">STALLED</span>"
            } else {
                ""
            },
            text(p, "leader"),
            text(p, "changed_at"),
            text(p, "old_ttl_s"),
            text(p, "deadline"),
            answer_set_of(p.get("old")),
            answer_set_of(p.get("new")),
        );
        let lagging: Vec<&Value> = arr(p, "lagging").collect();
        if !lagging.is_empty() {
            s.push_str("<table><tr><th>lagging resolver</th><th>still serving</th><th>since</th><th>lagging for</th></tr>");
            for l in lagging {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    text(l, "resolver"),
                    answer_set_of(l.get("serving")),
                    text(l, "serving_since"),
                    l.get("lagging_for_ms")
                        .and_then(Value::as_i64)
                        .map(details::span)
                        .unwrap_or_default(),
                );
            }
            s.push_str("</table>");
        }
    }
    let groups: Vec<&Value> = arr(d, "disagreement").collect();
    if !groups.is_empty() {
        s.push_str(
            "<h4>Resolvers disagree</h4><table><tr><th>resolvers</th><th>answer set</th></tr>",
        );
        for g in groups {
            let names: Vec<String> = arr(g, "resolvers")
                .filter_map(Value::as_str)
                .map(escape)
                .collect();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td></tr>",
                names.join("<br>"),
                answer_set_of(g.get("answer_set"))
            );
        }
        s.push_str("</table>");
    }
    s
}

fn tls(d: &Value) -> String {
    let mut s = String::new();
    if let Some(f) = d.get("forecast") {
        let _ = write!(s, "<p><b>{}</b></p>", text(f, "summary"));
        let lines: Vec<String> = arr(f, "lines")
            .filter_map(Value::as_str)
            .map(|l| format!("<li>{}</li>", escape(l)))
            .collect();
        if !lines.is_empty() {
            let _ = write!(s, "<ul>{}</ul>", lines.concat());
        }
    }
    let matrix: Vec<&Value> = arr(d, "matrix").collect();
    if !matrix.is_empty() {
        s.push_str("<table><tr><th>profile / store</th><th>result</th><th>code</th><th>fails from</th><th>days left</th><th>expires first</th></tr>");
        for m in matrix {
            let _ = write!(
                s,
                "<tr><td>{}</td>{}<td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(m, "combination"),
                ok_cell(m),
                text(m, "failure_code"),
                text(m, "fails_from"),
                text(m, "days_left"),
                text(m, "expires_first"),
            );
        }
        s.push_str("</table>");
    }
    let certs: Vec<&Value> = arr(d, "certificates").collect();
    if !certs.is_empty() {
        s.push_str("<h4>Certificates seen (<a href=\"/certificates\">inventory</a>)</h4><table><tr><th>position</th><th>subject</th><th>issuer</th><th>not after</th><th>key</th></tr>");
        for c in certs {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.get("position")
                    .and_then(Value::as_i64)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| format!("root ({})", text(c, "trust_store"))),
                text(c, "subject"),
                text(c, "issuer"),
                text(c, "not_after"),
                text(c, "key_type"),
            );
        }
        s.push_str("</table>");
    }
    s
}

fn session(d: &Value, now_ms: i64) -> String {
    let mut s = String::new();
    if let Some(line) = details::session_line(d, now_ms) {
        let _ = write!(s, "<p><b>{}</b></p>", escape(&line));
    }
    let _ = write!(
        s,
        "<p class=\"small\">login {} · renewal {} · expiry from {} · expires at {}</p>",
        text(d, "login_method"),
        text(d, "renewal"),
        text(d, "expiry_source"),
        text(d, "expires_at"),
    );
    let findings: Vec<String> = arr(d, "findings")
        .map(|f| {
            format!(
                "<li><code>{}</code> {}</li>",
                text(f, "code"),
                text(f, "message")
            )
        })
        .collect();
    if !findings.is_empty() {
        let _ = write!(s, "<h4>Findings</h4><ul>{}</ul>", findings.concat());
    }
    let events: Vec<&Value> = arr(d, "events").collect();
    if !events.is_empty() {
        s.push_str("<h4>Session events</h4><table><tr><th>kind</th><th>at</th><th>result</th><th>status</th><th>declared lifetime</th><th>code</th></tr>");
        for e in events {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                text(e, "kind"),
                text(e, "at"),
                ok_cell(e),
                text(e, "status"),
                e.get("declared_lifetime_s")
                    .and_then(Value::as_i64)
                    .map(|l| details::span(l * 1000))
                    .unwrap_or_default(),
                text(e, "failure_code"),
            );
        }
        s.push_str("</table>");
    }
    s
}
