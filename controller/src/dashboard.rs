//! The server-rendered status page: `/` (checks × regions grid, open-alert
//! banner, recent DNS changes, probes), `/checks/{id}` ([`detail`]: per-region
//! state, what the newest results saw by kind, changes, recent results) and
//! `/alert-groups/{id}` ([`groups`]: one notification group, its members,
//! notifications and delivery attempts; the status page lists the open
//! ones), `/certificates` ([`certificates`]: the inventory); history from the
//! rollups ([`history`]: status bars, uptime, SVG latency graphs), `/alerts`
//! ([`alerts`]), `/fleet` ([`fleet`]) and `/sla` ([`sla`]), `/silences`
//! ([`silences`]: silences, maintenance windows, the operator's form to
//! make one); the login form
//! and logout ([`login`]) and the opt-in public status page ([`public`]).
//! Colours and their contrast: [`palette`].
//!
//! Built so the states that matter cannot be missed (the IOT incident: stale
//! data shown as a faint grey border for 17 hours): FAILING is a solid red
//! cell with the bold word, STALE a solid amber cell with the word and the
//! age ("no result for 1 min 35 s"). No external assets, the page refreshes itself
//! every 5 s. Every page is a maud template (`html!`): text is escaped by
//! default and the markup is checked at compile time; the only
//! `PreEscaped` is the page's own style sheet. Every state-changing form
//! carries the session's CSRF token through [`csrf_field`].

pub mod alerts;
pub mod certificates;
pub mod detail;
pub mod fleet;
pub mod groups;
pub mod history;
mod kind;
pub mod login;
pub mod palette;
pub mod public;
pub mod silences;
pub mod sla;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{
    Controller,
    alerting::{AlertKind, rule::RegionStatus},
    api::{self, CheckView, RegionView, events::EventView},
    format::{self, timestamp},
    store::{AlertRow, now_ms},
};
use axum::{
    extract::State,
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use crate::{
    api::route::Routes,
    auth::{Caller, Role},
};

/// Changes listed on the status page.
pub const RECENT_CHANGES: u32 = 10;

/// Routes of the pages (merged into [`api::router`]), by method.
pub fn routes() -> Routes {
    Routes::by_method()
        .get("/", index)
        .get("/checks/{id}", detail::page_handler)
        .get("/alert-groups/{id}", groups::page_handler)
        .get("/certificates", certificates::page_handler)
        .get("/alerts", alerts::list_handler)
        .get("/alerts/{id}", alerts::alert_handler)
        .get("/fleet", fleet::page_handler)
        .get("/sla", sla::page_handler)
        .get("/sla.csv", sla::csv_handler)
        .get("/silences", silences::page_handler)
        .post("/silences", silences::create)
        .post("/silences/{id}/end", silences::end)
}

/// Pages anyone may open: the login form and the public status page.
pub fn public_routes() -> Routes {
    Routes::public()
        .get("/login", login::login_page)
        .post("/login", login::login)
        .get("/status", public::page_handler)
}

/// Signing out: any authenticated caller, whatever the role.
pub fn session_routes() -> Routes {
    Routes::at_least(Role::Viewer)
        .get("/logout", login::logout_page)
        .post("/logout", login::logout)
}

/// The hidden `csrf` field every state-changing form must carry (empty for
/// callers without a session, whose requests need none).
pub fn csrf_field(caller: &Caller) -> Markup {
    html! {
        @if let Some(token) = caller.csrf() {
            input type="hidden" name="csrf" value=(token);
        }
    }
}

pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f4;color:#111111}\
header{background:#222222;color:#ffffff;padding:10px 16px}header a{color:#ffffff}h1{margin:0;font-size:20px;display:inline}\
.meta{color:#bbbbbb;margin-left:12px;font-size:13px}main{padding:16px}\
.banner{background:#b00000;color:#ffffff;padding:12px 16px;font-weight:bold;font-size:16px}\
.banner ul{margin:6px 0 0 0;max-height:30vh;overflow:auto}.clear{background:#1e7b34;color:#ffffff;padding:8px 16px}\
table{border-collapse:collapse;background:#ffffff;margin-bottom:16px}th,td{border:1px solid #ccc;padding:6px 10px;text-align:left;vertical-align:top}\
th{background:#eee}.small{font-size:12px;color:#444}\
.FAILING{background:#c00000;color:#ffffff;font-weight:bold}.FAILING .small,.FAILING a{color:#ffffff}\
.FLAPPING{background:repeating-linear-gradient(45deg,#c00000 0 8px,#9a3412 8px 16px);color:#ffffff;font-weight:bold}.FLAPPING .small,.FLAPPING a{color:#ffffff}\
.SUPPRESSED{background:repeating-linear-gradient(45deg,#c00000 0 8px,#666666 8px 16px);color:#ffffff;font-weight:bold}.SUPPRESSED .small,.SUPPRESSED a{color:#ffffff}\
.STALE{background:#ffb000;color:#000000;font-weight:bold}.STALE .small,.STALE a{color:#000000}\
.UNKNOWN{background:#dddddd;color:#333333}.OK{background:#d8f5dc;color:#114a1d}.NA{background:#fafafa;color:#666666}\
.FAILING .word::before{content:\"\\2716  \"}.STALE .word::before{content:\"\\25F7  \"}.FLAPPING .word::before{content:\"\\21C5  \"}.SUPPRESSED .word::before{content:\"\\2298  \"}\
.OK .word::before{content:\"\\2713  \"}.UNKNOWN .word::before{content:\"?  \"}\
.word{font-size:15px;letter-spacing:.5px}code{font-size:12px}\
.counts a.count{display:inline-block;padding:2px 8px;margin:2px 4px 2px 0;text-decoration:none}.pager a{margin:0 8px}\
nav{display:inline;margin-left:16px}nav a{margin-right:10px}.warn{background:#ffb000;color:#000000;padding:8px 16px;font-weight:bold}\
.arrow{font-weight:bold;padding:0 4px}pre{background:#ffffff;border:1px solid #ccc;padding:8px;font-size:12px;overflow:auto;max-width:100%}\
.expired{background:#c00000;color:#ffffff;font-weight:bold}.critical{background:#b93800;color:#ffffff;font-weight:bold}\
.expired .small,.expired a,.expired .muted,.critical .small,.critical a,.critical .muted{color:#ffffff}\
.error{background:#ff7a00;color:#000000;font-weight:bold}.error .small,.error a{color:#000000}.warning{background:#ffd24d;color:#000000}.info,.ok{background:#ffffff}\
.muted{color:#666666}\
svg.bar{display:block}.s-up{fill:#1e7b34}.s-down{fill:#c00000}.s-stale{fill:#b07800}.s-none{fill:#bbb}\
svg.chart{background:#ffffff;border:1px solid #ccc;max-width:760px}.axis{stroke:#888}.tick{font-size:11px;fill:#444}\
.stale-text{background:#ffb000;color:#000000;padding:0 3px}td.hist{min-width:370px}\
@media (max-width:640px){main{padding:8px}.banner{font-size:14px;padding:8px}.banner ul{max-height:20vh}\
table{display:block;overflow-x:auto;max-width:100%}td.hist{min-width:0}.meta{display:block;margin:4px 0 0 0}nav{display:block;margin:4px 0 0 0}\
nav a{display:inline-block;margin:0 10px 4px 0;white-space:nowrap}header{padding:8px}}\
@media (prefers-color-scheme:dark){body{background:#18181b;color:#e4e4e7}a{color:#93c5fd}header{background:#222222}header a{color:#ffffff}\
table,pre,svg.chart{background:#27272a;color:#e4e4e7}th{background:#3f3f46}th,td{border-color:#52525b}.small{color:#d4d4d8}\
.muted,.NA{color:#a1a1aa}.NA{background:#27272a}.OK{background:#14532d;color:#dcfce7}.UNKNOWN{background:#3f3f46;color:#e4e4e7}\
.info,.ok{background:#27272a}.tick{fill:#d4d4d8}.s-up{fill:#22c55e}.s-down{fill:#f87171}.s-stale{fill:#ffb000}.s-none{fill:#52525b}}";

/// The page around `body`: head (auto-refresh, the inline style), the
/// header with the navigation.
pub(crate) fn page(title: &str, body: Markup) -> Markup {
    page_with(title, body, true)
}

/// [`page`], refreshing every 5 s or not (forms).
pub(crate) fn page_with(title: &str, body: Markup, refresh: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if refresh { meta http-equiv="refresh" content="5"; }
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                // Our own constant: no text from outside.
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { a href="/" { "Outpost" } }
                    nav {
                        a href="/" { "status" } a href="/alerts" { "alerts" } a href="/fleet" { "fleet" }
                        a href="/sla" { "SLA" } a href="/certificates" { "certificates" } a href="/silences" { "silences" }
                        a href="/logout" { "sign out" }
                    }
                    span.meta {
                        (title) " · updated " (timestamp(now_ms()))
                        @if refresh { " · refreshes every 5 s" }
                    }
                }
                (body)
            }
        }
    }
}

/// Where an open alert's banner line points: fleet-level alerts
/// (`probe_offline`) at the probes table, certificates at the inventory,
/// a failing notifier at its alert's API view (attempts included).
fn alert_href(a: &AlertRow) -> String {
    match &a.probe {
        _ if a.kind == AlertKind::CertificateExpiring => "/certificates".to_owned(),
        // A failing sink: its alert with every delivery attempt.
        _ if a.kind == AlertKind::NotifierFailing => format!("/api/v1/alerts/{}", a.id),
        Some(_) if a.check_id.is_empty() => "/#probes".to_owned(),
        _ => format!("/checks/{}", a.check_id),
    }
}

/// The open alerts: those that paged in red, then the suppressed ones
/// (silence, maintenance) in amber with their cause — recorded, not paged.
fn banner(open: &[&AlertRow], now: i64) -> Markup {
    let (quiet, paging): (Vec<&AlertRow>, Vec<&AlertRow>) =
        open.iter().partition(|a| !a.suppressed_by.is_empty());
    html! {
        @if open.is_empty() {
            div.clear { "No open alerts" }
        } @else if paging.is_empty() {
            div.clear { "No alert paging" }
        } @else {
            div.banner role="alert" {
                (paging.len()) " OPEN ALERT" @if paging.len() != 1 { "S" }
                ul {
                    @for a in &paging {
                        li {
                            a style="color:#fff" href=(alert_href(a)) { (a.summary) }
                            " "
                            span style="font-weight:normal" {
                                "(open for " (format::ms(now - a.opened_at_ms)) ", " (a.severity) ")"
                            }
                        }
                    }
                }
            }
        }
        @if !quiet.is_empty() {
            div.warn {
                (quiet.len()) " SUPPRESSED (recorded, not paged: silence, maintenance or a failing dependency)"
                ul {
                    @for a in &quiet {
                        li {
                            a href=(alert_href(a)) { (a.summary) }
                            " "
                            span style="font-weight:normal" {
                                "(suppressed by " (a.suppressed_by) ", open for "
                                (format::ms(now - a.opened_at_ms)) ")"
                            }
                        }
                    }
                }
                a href="/silences" { "silences" }
            }
        }
    }
}

pub(crate) fn region_cell(r: &RegionView) -> Markup {
    let age = format::ms(r.age_ms.unwrap_or(0));
    let title = [r.message.as_deref(), r.summary.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" — ");
    html! {
        td class=(r.state.css_class()) title=(title) {
            span.word { (r.state.as_str()) }
            div.small {
                @match r.state {
                    RegionStatus::Stale if r.reason == Some(api::REASON_PROBE_OFFLINE) => {
                        "probe offline · last result " (age) " ago"
                    }
                    RegionStatus::Stale => { "no result for " (age) }
                    RegionStatus::Unknown => { "no result yet" }
                    RegionStatus::Failing | RegionStatus::Flapping | RegionStatus::Suppressed => { (r.code.as_deref().unwrap_or("failed")) " · " (age) " ago" }
                    RegionStatus::Ok => { (age) " ago" }
                }
            }
            @if let Some(s) = &r.summary { div.small { (s) } }
        }
    }
}

pub(crate) fn grid(
    checks: &[CheckView],
    regions: &[String],
    history: Option<&std::collections::BTreeMap<String, history::Overview>>,
    now: i64,
) -> Markup {
    html! {
        table {
            tr {
                th { "check" } th { "state" }
                @if history.is_some() { th { "history" } }
                @for r in regions { th { (r) } }
            }
            @for c in checks {
                tr {
                    td {
                        a href={ "/checks/" (c.id) } { (c.id) }
                        div.small { (c.kind) " " (c.target.as_deref().unwrap_or("")) " every " (c.interval) }
                    }
                    td class=(c.state.css_class()) {
                        span.word { (c.state.as_str()) }
                        @if let Some(by) = &c.suppressed_by {
                            div.small { "alert recorded, not paged: suppressed by " (by) }
                        }
                        @if c.flapping {
                            div.small { "alert open: changing between pass and fail, resolves once stable" }
                        } @else if c.alert_open {
                            div.small { "alert open" }
                        }
                    }
                    @if let Some(h) = history {
                        @match h.get(&c.id) {
                            Some(o) => { (history::overview_cell(o, now)) }
                            None => { td.NA { "—" } }
                        }
                    }
                    @for region in regions {
                        @match c.regions.iter().find(|r| &r.region == region) {
                            Some(r) => { (region_cell(r)) }
                            None => { td.NA { "—" } }
                        }
                    }
                }
            }
        }
    }
}

fn probes_table(probes: &[api::ProbeView], now: i64) -> Markup {
    html! {
        h2 #probes { "Probes" }
        table {
            tr {
                th { "probe" } th { "region" } th { "state" } th { "last seen" }
                th { "queued results" } th { "dropped results" } th { "version" }
            }
            @for p in probes {
                tr {
                    td { (p.name) }
                    td { (p.region) }
                    td class=(p.state.css_class()) { span.word { (p.state.word()) } }
                    td {
                        @match p.last_seen_ms {
                            Some(t) => { (format::ms(now - t)) " ago" }
                            None => { "never" }
                        }
                    }
                    td { (p.queued_results) }
                    td {
                        @if p.dropped_results == 0 {
                            "0"
                        } @else {
                            b { (p.dropped_results) } " ("
                            @for (i, (reason, n)) in p.dropped_by_reason.iter().enumerate() {
                                @if i > 0 { ", " }
                                (n) " " (reason)
                            }
                            ")"
                        }
                    }
                    td { (p.version) }
                }
            }
        }
    }
}

/// A page with one message, answered with `status`.
pub(crate) fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! { main { p { (text) } } };
    (status, Html(page_with(title, body, false).into_string())).into_response()
}

pub(crate) fn error_page(e: api::ApiError) -> Response {
    let body = html! { main { p { (e.1) } } };
    (e.0, Html(page("Outpost: error", body).into_string())).into_response()
}

/// `GET /` query: the status bar's slot width, a state filter
/// (`failing`, `stale`, …: the state words, any case), a text filter on
/// the check id and target (`q`), and the page (from 1).
#[derive(Debug, Default, serde::Deserialize)]
struct IndexQuery {
    bar: Option<String>,
    state: Option<String>,
    q: Option<String>,
    page: Option<usize>,
}

/// Checks on one page of the overview.
pub const OVERVIEW_PAGE: usize = 100;

async fn index(
    State(ctl): State<Controller>,
    axum::extract::Query(q): axum::extract::Query<IndexQuery>,
) -> Response {
    match render_index(&ctl, &q).await {
        Ok(html) => Html(html.into_string()).into_response(),
        Err(e) => error_page(e),
    }
}

/// The "Recent changes" table: when, check, old → new, where seen.
pub(crate) fn changes_table(events: &[EventView], now: i64, with_check: bool) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "No DNS answer changes recorded." }
        } @else {
            table {
                tr {
                    th { "when" }
                    @if with_check { th { "check" } }
                    th { "change" } th { "old" } th {} th { "new" } th { "seen from" }
                }
                @for e in events {
                    tr {
                        td { (timestamp(e.at_ms)) " " span.small { "(" (format::ms(now - e.at_ms)) " ago)" } }
                        @if with_check { td { a href={ "/checks/" (e.check_id) } { (e.check_id) } } }
                        td { (e.title) }
                        td { (kind::answer_set(&e.old)) }
                        td.arrow { "→" }
                        td { (kind::answer_set(&e.new)) }
                        td { (e.regions.join(", ")) }
                    }
                }
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A strip naming expired and soon-expiring served certificates.
async fn certificate_strip(ctl: &Controller, now: i64) -> Result<Markup, api::ApiError> {
    let certs = api::certificates::certificate_views(ctl, now).await?;
    let bad: Vec<_> = certs
        .iter()
        .filter(|c| c.status == "current" && c.level != "ok")
        .collect();
    if bad.is_empty() {
        return Ok(html! {});
    }
    let expired = bad.iter().filter(|c| c.level == "expired").count();
    let soonest = bad.iter().map(|c| c.days_left).min().unwrap_or(0);
    let text = if expired > 0 {
        format!(
            "{expired} served certificate{} EXPIRED; {} expiring",
            plural(expired),
            bad.len() - expired
        )
    } else {
        format!(
            "{} served certificate{} expiring, the first in {soonest} day{}",
            bad.len(),
            plural(bad.len()),
            if soonest == 1 { "" } else { "s" }
        )
    };
    let class = if expired > 0 { "banner" } else { "warn" };
    Ok(html! {
        div class=(class) { a style="color:inherit" href="/certificates" { (text) " — see certificates" } }
    })
}

/// The order of the overview: what needs attention first (FAILING,
/// FLAPPING, STALE, SUPPRESSED, UNKNOWN, then OK), by id within a state.
fn attention(state: RegionStatus) -> u8 {
    match state {
        RegionStatus::Failing => 0,
        RegionStatus::Flapping => 1,
        RegionStatus::Stale => 2,
        RegionStatus::Suppressed => 3,
        RegionStatus::Unknown => 4,
        RegionStatus::Ok => 5,
    }
}

/// Every state word in [`attention`] order.
const STATES: [RegionStatus; 6] = [
    RegionStatus::Failing,
    RegionStatus::Flapping,
    RegionStatus::Stale,
    RegionStatus::Suppressed,
    RegionStatus::Unknown,
    RegionStatus::Ok,
];

/// The overview's checks (id, state) after the filters, in [`attention`]
/// order; the text filter matches the id or the target.
fn pick<'a>(
    cfg: &crate::config::ControllerConfig,
    all: &'a [(String, RegionStatus)],
    q: &IndexQuery,
) -> Vec<&'a (String, RegionStatus)> {
    let text =
        q.q.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase);
    let state = q.state.as_deref().filter(|s| !s.is_empty());
    let mut picked: Vec<&(String, RegionStatus)> = all
        .iter()
        .filter(|(_, st)| state.is_none_or(|s| st.as_str().eq_ignore_ascii_case(s)))
        .filter(|(id, _)| {
            text.as_deref().is_none_or(|t| {
                id.to_lowercase().contains(t)
                    || cfg
                        .check(id)
                        .and_then(api::target)
                        .is_some_and(|x| x.to_lowercase().contains(t))
            })
        })
        .collect();
    picked.sort_by(|a, b| (attention(a.1), &a.0).cmp(&(attention(b.1), &b.0)));
    picked
}

/// Counts per state (linking to the filtered overview), the filter form
/// and where this page is: `Checks 101–200 of 2,000`.
fn overview_head(
    all: &[(String, RegionStatus)],
    q: &IndexQuery,
    shown: (usize, usize, usize),
) -> Markup {
    let (first, last, total) = shown;
    let count = |st: RegionStatus| all.iter().filter(|c| c.1 == st).count();
    html! {
        p.counts {
            a href="/" { (all.len()) " check" (plural(all.len())) } ": "
            @for st in STATES {
                @let n = count(st);
                @if n > 0 {
                    a class={ "count " (st.css_class()) } href={ "/?state=" (st.as_str().to_lowercase()) } {
                        span.word { (st.as_str()) } " " (n)
                    }
                    " "
                }
            }
        }
        form.filter method="get" action="/" {
            label { "state " select name="state" {
                option value="" selected[q.state.as_deref().is_none_or(str::is_empty)] { "any" }
                @for st in STATES {
                    @let w = st.as_str().to_lowercase();
                    option value=(w) selected[q.state.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&w))] { (st.as_str()) }
                }
            } }
            " "
            label { "check or target " input name="q" value=(q.q.as_deref().unwrap_or("")) size="20"; }
            @if let Some(bar) = q.bar.as_deref() { input type="hidden" name="bar" value=(bar); }
            " " button type="submit" { "filter" }
        }
        p.small {
            @if total == 0 { "No check matches." }
            @else { "Checks " (first) "–" (last) " of " (total) ", what needs attention first" }
        }
    }
}

/// Previous / next links keeping the query.
fn pager(q: &IndexQuery, page: usize, pages: usize) -> Markup {
    let keep = alerts::kept(&[("state", &q.state), ("q", &q.q), ("bar", &q.bar)]);
    html! {
        @if pages > 1 {
            p.pager {
                @if page > 1 { a rel="prev" href={ "/?page=" (page - 1) (keep) } { "← previous" } " " }
                "page " (page) " of " (pages)
                @if page < pages { " " a rel="next" href={ "/?page=" (page + 1) (keep) } { "next →" } }
            }
        }
    }
}

/// The status page: counts per state over every check, then one page of
/// [`OVERVIEW_PAGE`] checks (what needs attention first) with their
/// history. Only that page's details and history are read: every check's
/// state comes from one read of the regions' times and outcomes.
async fn render_index(ctl: &Controller, q: &IndexQuery) -> Result<Markup, api::ApiError> {
    let bar = history::bar_resolution(q.bar.as_deref());
    let now = ctl.now_ms();
    let basis = api::Basis::load(ctl, now).await?;
    let all = api::check_states(ctl, &basis, now).await?;
    let picked = pick(&ctl.config(), &all, q);
    let pages = picked.len().div_ceil(OVERVIEW_PAGE).max(1);
    let at = q.page.unwrap_or(1).clamp(1, pages);
    let from = ((at - 1) * OVERVIEW_PAGE).min(picked.len());
    let to = (from + OVERVIEW_PAGE).min(picked.len());
    let ids: Vec<&str> = picked[from..to].iter().map(|c| c.0.as_str()).collect();
    let checks = api::check_views_of(ctl, &basis, &ids, now).await?;
    let alerts = &basis.open;
    let open: Vec<&AlertRow> = alerts.iter().collect();
    let mut overview = history::overview(ctl, bar, now, &ids).await?;
    for a in alerts {
        if a.kind == AlertKind::CheckFailing
            && let Some(o) = overview.get_mut(&a.check_id)
        {
            o.failing_since = Some(a.opened_at_ms);
        }
    }
    let probes = api::probe_views(ctl, now).await?;
    let regions = ctl.config().result_regions();
    let events = api::events::event_views(ctl, None, RECENT_CHANGES).await?;
    let strip = certificate_strip(ctl, now).await?;
    let open_groups = ctl.store().open_groups().await?;
    let body = html! {
        (banner(&open, now))
        (strip)
        main {
            h2 { "Checks" }
            (overview_head(&all, q, (from + 1, to, picked.len())))
            (grid(&checks, &regions, Some(&overview), now))
            (pager(q, at, pages))
            (groups::open_list(&open_groups))
            h2 #changes { "Recent changes" }
            (changes_table(&events, now, true))
            (probes_table(&probes, now))
        }
    };
    Ok(page("Outpost status", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_cell_shows_word_and_age() {
        let r = RegionView {
            region: "eu".into(),
            state: RegionStatus::Stale,
            reason: Some(api::REASON_NO_RECENT_RESULT),
            last_result_at_ms: Some(0),
            age_ms: Some(95_000),
            code: None,
            message: Some("<script>".into()),
            consecutive_failures: 0,
            consecutive_passes: 3,
            probe: None,
            summary: Some("1 of 2 backends failing".into()),
        };
        let html = region_cell(&r).into_string();
        assert!(html.contains("class=\"STALE\""));
        assert!(html.contains(">STALE<"));
        assert!(html.contains("no result for 1 min 35 s"));
        assert!(html.contains("1 of 2 backends failing"));
        assert!(!html.contains("<script>"));
    }
}
