//! `/certificates`: the certificate inventory, soonest expiry first.
//!
//! Served certificates come first; expired ones are a solid red row with the
//! word EXPIRED, those within a threshold are coloured by its severity
//! (critical, error, warning) with the days left in bold. Replaced, no longer
//! seen, and trust-store roots follow in a muted table.

use std::fmt::Write;

use axum::{
    extract::State,
    response::{Html, IntoResponse, Response},
};

use super::{error_page, escape, page};
use crate::{
    Controller,
    api::{self, certificates::CertificateView},
    format::human_age,
    store::now_ms,
};

pub(super) async fn page_handler(State(ctl): State<Controller>) -> Response {
    let now = now_ms();
    match api::certificates::certificate_views(&ctl, now).await {
        Ok(certs) => Html(render(&certs, now)).into_response(),
        Err(e) => error_page(e.into()),
    }
}

fn left(c: &CertificateView) -> String {
    match c.days_left {
        d if d < 0 => format!(
            "<span class=\"word\">EXPIRED</span><div class=\"small\">{} day{} ago</div>",
            -d,
            if d == -1 { "" } else { "s" }
        ),
        d => format!(
            "<span class=\"word\">{d} day{}</span>",
            if d == 1 { "" } else { "s" }
        ),
    }
}

fn table(certs: &[&CertificateView], now: i64) -> String {
    let mut s = String::from(
        "<table><tr><th>days left</th><th>subject</th><th>SANs</th><th>issuer</th><th>not after</th><th>key</th>\
         <th>seen by</th><th>alert</th></tr>",
    );
    for c in certs {
        let class = if c.status == "current" {
            c.level.as_str()
        } else {
            "muted"
        };
        let seen: Vec<String> = c
            .seen_by
            .iter()
            .map(|s| {
                let place = match (&s.trust_store, s.address.is_empty()) {
                    (Some(store), _) => format!("root in {}", escape(store)),
                    (None, true) => escape(&s.host),
                    (None, false) => escape(&s.address),
                };
                format!(
                    "<a href=\"/checks/{}\">{}</a> @ {place} <span class=\"small\">from {} ({}), {} ago</span>",
                    escape(&s.check),
                    escape(&s.check),
                    escape(&s.probe),
                    escape(&s.region),
                    human_age(now - s.last_seen_ms)
                )
            })
            .collect();
        let status = match (c.status, &c.replaced_by) {
            ("replaced", Some(by)) => format!(
                "<div class=\"small\">replaced by {}</div>",
                escape(by.get(..16).unwrap_or(by))
            ),
            ("not_seen", _) => "<div class=\"small\">no longer seen</div>".into(),
            ("trust_store", _) => "<div class=\"small\">trust store root</div>".into(),
            _ => String::new(),
        };
        let alert = c
            .alert
            .as_ref()
            .map(|a| format!("<b>{}</b>", a.severity.as_str().to_ascii_uppercase()))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr class=\"{class}\"><td>{}{status}</td><td>{}<div class=\"small\"><code>{}</code></div></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{alert}</td></tr>",
            left(c),
            escape(&c.subject),
            escape(c.fingerprint.get(..16).unwrap_or(&c.fingerprint)),
            escape(&c.sans.join(", ")),
            escape(&c.issuer),
            escape(&c.not_after),
            escape(&c.key_type),
            seen.join("<br>"),
        );
    }
    s.push_str("</table>");
    s
}

/// The page.
pub fn render(certs: &[CertificateView], now: i64) -> String {
    let (current, other): (Vec<&CertificateView>, Vec<&CertificateView>) =
        certs.iter().partition(|c| c.status == "current");
    let expired = current.iter().filter(|c| c.level == "expired").count();
    let expiring = current
        .iter()
        .filter(|c| c.level != "expired" && c.level != "ok")
        .count();
    let mut body = String::new();
    if expired > 0 {
        let _ = write!(
            body,
            "<div class=\"banner\" role=\"alert\">{expired} SERVED CERTIFICATE{} EXPIRED</div>",
            if expired == 1 { "" } else { "S" }
        );
    }
    if expiring > 0 {
        let _ = write!(
            body,
            "<div class=\"warn\">{expiring} served certificate{} within an alert threshold</div>",
            if expiring == 1 { "" } else { "s" }
        );
    }
    if expired == 0 && expiring == 0 {
        body.push_str(
            "<div class=\"clear\">No served certificate is expired or close to expiry</div>",
        );
    }
    let _ = write!(
        body,
        "<main><h2>Served certificates ({})</h2>",
        current.len()
    );
    if current.is_empty() {
        body.push_str("<p class=\"muted\">No certificate seen yet: tls checks (and https hops) report what servers present.</p>");
    } else {
        body.push_str(&table(&current, now));
    }
    if !other.is_empty() {
        let _ = write!(
            body,
            "<h2>Replaced, no longer seen, trust store roots ({})</h2>{}",
            other.len(),
            table(&other, now)
        );
    }
    body.push_str("</main>");
    page("Outpost certificates", &body)
}
