//! `/certificates`: the certificate inventory, soonest expiry first.
//!
//! Served certificates come first; expired ones are a solid red row with the
//! word EXPIRED, those within a threshold are coloured by its severity
//! (critical, error, warning) with the days left in bold. Replaced, no longer
//! seen, and trust-store roots follow in a muted table.

use axum::{
    extract::State,
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};

use super::{error_page, page, plural};
use crate::{
    Controller,
    api::{
        self,
        certificates::{CertificateView, SeenByView},
    },
    format,
    store::now_ms,
};

pub(super) async fn page_handler(State(ctl): State<Controller>) -> Response {
    let now = now_ms();
    match api::certificates::certificate_views(&ctl, now).await {
        Ok(certs) => Html(render(&certs, now).into_string()).into_response(),
        Err(e) => error_page(e.into()),
    }
}

/// The first 16 hex digits of a fingerprint.
fn short(fp: &str) -> &str {
    fp.get(..16).unwrap_or(fp)
}

fn left(c: &CertificateView) -> Markup {
    html! {
        @if c.days_left < 0 {
            span.word { "EXPIRED" }
            div.small { (-c.days_left) " day" (plural(c.days_left.unsigned_abs() as usize)) " ago" }
        } @else {
            span.word { (c.days_left) " day" (plural(c.days_left as usize)) }
        }
    }
}

fn seen_by(s: &SeenByView, now: i64) -> Markup {
    html! {
        a href={ "/checks/" (s.check) } { (s.check) }
        " @ "
        @match (&s.trust_store, s.address.is_empty()) {
            (Some(store), _) => { "root in " (store) }
            (None, true) => { (s.host) }
            (None, false) => { (s.address) }
        }
        " "
        span.small { "from " (s.probe) " (" (s.region) "), " (format::ms(now - s.last_seen_ms)) " ago" }
    }
}

fn table(certs: &[&CertificateView], now: i64) -> Markup {
    html! {
        table {
            tr {
                th { "days left" } th { "subject" } th { "SANs" } th { "issuer" } th { "not after" } th { "key" }
                th { "seen by" } th { "alert" }
            }
            @for c in certs {
                @let class = if c.status == "current" { c.level.as_str() } else { "muted" };
                tr class=(class) {
                    td {
                        (left(c))
                        @match (c.status, &c.replaced_by) {
                            ("replaced", Some(by)) => { div.small { "replaced by " (short(by)) } }
                            ("not_seen", _) => { div.small { "no longer seen" } }
                            ("trust_store", _) => { div.small { "trust store root" } }
                            _ => {}
                        }
                    }
                    td { (c.subject) div.small { code { (short(&c.fingerprint)) } } }
                    td { (c.sans.join(", ")) }
                    td { (c.issuer) }
                    td { (c.not_after) }
                    td { (c.key_type) }
                    td {
                        @for (i, s) in c.seen_by.iter().enumerate() {
                            @if i > 0 { br; }
                            (seen_by(s, now))
                        }
                    }
                    td { @if let Some(a) = &c.alert { b { (a.severity.as_str().to_ascii_uppercase()) } } }
                }
            }
        }
    }
}

/// The page.
pub fn render(certs: &[CertificateView], now: i64) -> Markup {
    let (current, other): (Vec<&CertificateView>, Vec<&CertificateView>) =
        certs.iter().partition(|c| c.status == "current");
    let expired = current.iter().filter(|c| c.level == "expired").count();
    let expiring = current
        .iter()
        .filter(|c| c.level != "expired" && c.level != "ok")
        .count();
    let body = html! {
        @if expired > 0 {
            div.banner role="alert" { (expired) " SERVED CERTIFICATE" @if expired != 1 { "S" } " EXPIRED" }
        }
        @if expiring > 0 {
            div.warn { (expiring) " served certificate" (plural(expiring)) " within an alert threshold" }
        }
        @if expired == 0 && expiring == 0 {
            div.clear { "No served certificate is expired or close to expiry" }
        }
        main {
            h2 { "Served certificates (" (current.len()) ")" }
            @if current.is_empty() {
                p.muted { "No certificate seen yet: tls checks (and https hops) report what servers present." }
            } @else {
                (table(&current, now))
            }
            @if !other.is_empty() {
                h2 { "Replaced, no longer seen, trust store roots (" (other.len()) ")" }
                (table(&other, now))
            }
        }
    };
    page("Outpost certificates", body)
}
