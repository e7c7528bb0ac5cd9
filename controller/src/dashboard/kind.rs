//! Kind-specific sections of the check page, rendered from the newest
//! result's typed details (the probe's `Observed`, read once per row by the
//! store). One function per kind and one `match` choosing it ([`section`]).
//! maud escapes every text; free-form JSON inside the details (an
//! assertion's expected and actual values) is shown only through
//! [`details::json_text`], which redacts it first.

use maud::{Markup, html};
use outpost_probe::check::{
    FailureCode, Observed,
    assertion::AssertionResult,
    dns::{self, AnswerSet},
    http::{self, exchange::Hop},
    session, tls,
};

use crate::{details, format};

fn ok_cell(ok: bool) -> Markup {
    html! {
        @if ok { td.OK { "OK" } } @else { td.FAILING { "FAIL" } }
    }
}

fn code(c: Option<FailureCode>) -> &'static str {
    c.map(FailureCode::as_str).unwrap_or_default()
}

/// An optional value as text (nothing when absent).
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// An answer set `{rcode, cname_target, answers}`.
pub fn answer_set(set: &AnswerSet) -> Markup {
    html! {
        @if let Some(t) = &set.cname_target { "CNAME " b { (t) } br; }
        @if set.answers.is_empty() {
            (set.rcode) " (no answers)"
        } @else {
            @for (i, a) in set.answers.iter().enumerate() {
                @if i > 0 { br; }
                (a)
            }
            @if set.rcode != "NOERROR" { br; (set.rcode) }
        }
    }
}

/// The section for the newest details of a check (empty for a kind
/// without one, or details that did not read as their kind).
pub fn section(details: &Observed, now_ms: i64) -> Markup {
    match details {
        Observed::Http(d) => http(d),
        Observed::Dns(d) => dns(d),
        Observed::Tls(d) => tls(d),
        Observed::Session(d) => session(d, now_ms),
        _ => html! {},
    }
}

fn hop_tls(t: &http::exchange::TlsInfo) -> Markup {
    html! {
        (opt(t.version.as_deref())) " "
        @if t.verified { "verified" } @else { b { "NOT verified" } " " (code(t.error)) }
        @if let Some(d) = t.leaf_days_left { ", leaf " (d) " days left" }
    }
}

fn http_chain(hops: &[Hop]) -> Markup {
    html! {
        table {
            tr { th { "#" } th { "request" } th { "address" } th { "status" } th { "location" } th { "tls" } th { "violations" } }
            @for (i, h) in hops.iter().enumerate() {
                @let failing = !h.violations.is_empty() || h.error.is_some();
                tr {
                    td { (i + 1) }
                    td { (h.method) " " (h.url) " " span.small { "(" (h.scheme) ")" } }
                    td { (opt(h.address.as_deref())) }
                    td class=[failing.then_some("FAILING")] {
                        (opt(h.status))
                        @if let Some(e) = h.error { " " code { (e) } }
                    }
                    td { (opt(h.location.as_deref())) }
                    td { @if let Some(t) = &h.tls { (hop_tls(t)) } }
                    td {
                        @for (i, v) in h.violations.iter().enumerate() {
                            @if i > 0 { " " }
                            code { (v) }
                        }
                    }
                }
            }
        }
    }
}

fn assertions(list: &[AssertionResult]) -> Markup {
    html! {
        table {
            tr { th { "assertion" } th { "kind" } th { "result" } th { "expected" } th { "actual" } th { "code" } th { "message" } }
            @for a in list {
                tr {
                    td { (a.name) }
                    td { (a.kind) }
                    (ok_cell(a.ok))
                    td { code { (details::json_text(&a.expected)) } }
                    td { code { (details::json_text(&a.actual)) } }
                    td { code { (code(a.failure_code)) } }
                    td { (opt(a.message.as_deref())) }
                }
            }
        }
    }
}

fn http(d: &http::Observed) -> Markup {
    html! {
        @if let Some(line) = details::http_line(d) { p { b { (line) } } }
        @if !d.hops().is_empty() {
            h4 { "Redirect chain" }
            (http_chain(d.hops()))
        }
        @if let Some(addresses) = d.addresses.as_ref().filter(|a| !a.is_empty()) {
            h4 { "Addresses (" (opt(d.addresses_failing)) " failing of " (opt(d.addresses_total)) ")" }
            table {
                tr { th { "address" } th { "result" } th { "status" } th { "code" } th { "message" } th { "samples failed" } }
                @for a in addresses {
                    tr {
                        td { (a.address) }
                        (ok_cell(a.ok))
                        td { (opt(a.last.status)) }
                        td { code { (code(a.failure_code)) } }
                        td { (opt(a.failure_message.as_deref())) }
                        td { (a.samples_failed) " of " (a.samples_total) }
                    }
                }
            }
        }
        @if let Some(sum) = &d.samples_summary {
            h4 { "Samples" }
            p { (sum.failed) " of " (sum.total) " failed (ratio " (sum.ratio) ", allowed " (sum.max_failure_ratio) ")" }
            @if !sum.by_backend.is_empty() {
                table {
                    tr { th { "backend" } th { "failed" } th { "total" } }
                    @for (backend, t) in &sum.by_backend {
                        tr { td { (backend) } td { (t.failed) } td { (t.total) } }
                    }
                }
            }
        }
        @if !d.assertion_results().is_empty() {
            h4 { "Assertions" }
            (assertions(d.assertion_results()))
        }
    }
}

fn resolver_row(r: &dns::ResolverRecord) -> Markup {
    let a = r.answer.as_ref();
    html! {
        tr {
            td {
                (r.resolver)
                @if let Some(c) = r.failure_code {
                    br; code { (c) } " " (opt(r.failure_message.as_deref()))
                }
            }
            (ok_cell(r.ok))
            td { (opt(a.map(|a| &a.rcode))) }
            td {
                @for (i, x) in a.map(|a| a.answers.as_slice()).unwrap_or_default().iter().enumerate() {
                    @if i > 0 { br; }
                    (x.name) " " (x.rtype) " " (x.data) " " span.small { "(" (format::ttl(x.ttl)) ")" }
                }
            }
            td {
                @for (i, c) in a.map(|a| a.cname_chain.as_slice()).unwrap_or_default().iter().enumerate() {
                    @if i > 0 { br; }
                    (c.name) " → " (c.target) " " span.small { "(" (format::ttl(c.ttl)) ")" }
                }
                @if let Some(f) = a.map(|a| &a.final_name).filter(|f| !f.is_empty()) {
                    br; "final: " b { (f) }
                }
            }
            td {
                @for (i, x) in a.and_then(|a| a.addresses.as_deref()).unwrap_or_default().iter().enumerate() {
                    @if i > 0 { br; }
                    (x.ip) " " span.small { "(" (format::ttl(x.ttl)) ")" }
                }
            }
            td { (opt(a.and_then(|a| a.min_ttl))) }
            td { code { (opt(a.map(|a| &a.fingerprint))) } }
        }
    }
}

fn propagation(p: &dns::PropagationRecord) -> Markup {
    html! {
        h4 { "Propagation" @if p.stalled { " — " span.FAILING { "STALLED" } } }
        p { (p.leader) " changed at " (p.changed_at) " (old TTL " (format::ttl(p.old_ttl_s)) "; deadline " (p.deadline) "):" }
        table {
            tr { th { "old" } th {} th { "new" } }
            tr { td { (answer_set(&p.old)) } td.arrow { "→" } td { (answer_set(&p.new)) } }
        }
        @if !p.lagging.is_empty() {
            table {
                tr { th { "lagging resolver" } th { "still serving" } th { "since" } th { "lagging for" } }
                @for l in &p.lagging {
                    tr {
                        td { (l.resolver) }
                        td { (answer_set(&l.serving)) }
                        td { (l.serving_since) }
                        td { (format::ms(i64::try_from(l.lagging_for_ms).unwrap_or(i64::MAX))) }
                    }
                }
            }
        }
    }
}

fn dns(d: &dns::Observed) -> Markup {
    html! {
        p { (d.name) " " b { (d.rtype) } }
        @if let Some(line) = details::dns_line(d) { p { b { (line) } } }
        table {
            tr { th { "resolver" } th { "result" } th { "rcode" } th { "answers (TTL)" } th { "CNAME chain (TTL)" } th { "addresses (TTL)" } th { "min TTL" } th { "fingerprint" } }
            @for r in &d.resolvers { (resolver_row(r)) }
        }
        @if let Some(p) = &d.propagation { (propagation(p)) }
        @if !d.disagreement.is_empty() {
            h4 { "Resolvers disagree" }
            table {
                tr { th { "resolvers" } th { "answer set" } }
                @for g in &d.disagreement {
                    tr {
                        td {
                            @for (i, r) in g.resolvers.iter().enumerate() {
                                @if i > 0 { br; }
                                (r)
                            }
                        }
                        td { (answer_set(&g.answer_set)) }
                    }
                }
            }
        }
    }
}

fn tls(d: &tls::Report) -> Markup {
    html! {
        @if let Some(f) = &d.forecast {
            p { b { (f.summary) } }
            @if !f.lines.is_empty() {
                ul { @for l in &f.lines { li { (l) } } }
            }
        }
        @if !d.matrix.is_empty() {
            table {
                tr { th { "profile / store" } th { "result" } th { "code" } th { "fails from" } th { "days left" } th { "expires first" } }
                @for m in &d.matrix {
                    tr {
                        td { (m.combination) }
                        (ok_cell(m.ok))
                        td { code { (code(m.failure_code)) } }
                        td { (opt(m.fails_from.as_deref())) }
                        td { (opt(m.days_left)) }
                        td { (opt(m.expires_first.as_deref())) }
                    }
                }
            }
        }
        @if !d.certificates().is_empty() {
            h4 { "Certificates seen (" a href="/certificates" { "inventory" } ")" }
            table {
                tr { th { "position" } th { "subject" } th { "issuer" } th { "not after" } th { "key" } }
                @for c in d.certificates() {
                    tr {
                        td {
                            @match c.position {
                                Some(p) => { (p) }
                                None => { "root (" (opt(c.trust_store.as_deref())) ")" }
                            }
                        }
                        td { (c.subject) }
                        td { (c.issuer) }
                        td { (c.not_after) }
                        td { (c.key_type) }
                    }
                }
            }
        }
    }
}

fn session(d: &session::Observed, now_ms: i64) -> Markup {
    let facts = d.session.as_ref();
    let run = d.run.as_ref();
    let findings = run.map(|r| r.findings.as_slice()).unwrap_or_default();
    let events = run.map(|r| r.events.as_slice()).unwrap_or_default();
    html! {
        @if let Some(line) = details::session_line(d, now_ms) { p { b { (line) } } }
        p.small {
            "login " (d.login_method) " · renewal " (d.renewal)
            " · expiry from " (opt(facts.map(|f| &f.expiry_source)))
            " · expires at " (opt(facts.and_then(|f| f.expires_at.as_deref())))
        }
        @if !findings.is_empty() {
            h4 { "Findings" }
            ul { @for f in findings { li { code { (code(f.code)) } " " (f.message) } } }
        }
        @if !events.is_empty() {
            h4 { "Session events" }
            table {
                tr { th { "kind" } th { "at" } th { "result" } th { "status" } th { "declared lifetime" } th { "code" } }
                @for e in events {
                    tr {
                        td { (e.kind) }
                        td { (e.at) }
                        (ok_cell(e.ok))
                        td { (opt(e.status)) }
                        td { (opt(e.declared_lifetime_s.flatten().map(format::secs))) }
                        td { code { (code(e.failure_code)) } }
                    }
                }
            }
        }
    }
}
