//! `/checks/{id}`: one check's state per region, what each region's newest
//! result saw (by kind: redirect chain, backends, samples and assertions for
//! http; answers, CNAME chains with TTLs, propagation for dns; the matrix and
//! certificates for tls; session age and renewals for session), its DNS
//! changes (old → new), and its recent results. Raw details are shown only
//! through [`crate::details::Redacted`].

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};

use super::{changes_table, error_page, grid, kind, page};
use crate::{
    Controller,
    alerting::rule::RegionStatus,
    api::{self, CHECK_EVENTS, CheckView, events::EventView},
    details,
    format::{self, timestamp},
    store::{RegionState, ResultRow},
};

/// `?range=1h|24h|7d|30d` of the history section.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct DetailQuery {
    range: Option<String>,
}

pub(super) async fn page_handler(
    State(ctl): State<Controller>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DetailQuery>,
) -> Response {
    let range = super::history::Range::parse(q.range.as_deref());
    match render(&ctl, &id, range).await {
        Ok(Some(html)) => Html(html.into_string()).into_response(),
        Ok(None) => error_page(api::ApiError(
            StatusCode::NOT_FOUND,
            format!("no check with id {id:?}"),
        )),
        Err(e) => error_page(e),
    }
}

async fn render(
    ctl: &Controller,
    id: &str,
    range: super::history::Range,
) -> Result<Option<Markup>, api::ApiError> {
    let now = ctl.now_ms();
    let Some((view, results)) = api::check_detail(ctl, id, now).await? else {
        return Ok(None);
    };
    let states = ctl.store().region_states_for(id).await?;
    let events = api::events::event_views(ctl, Some(id), CHECK_EVENTS).await?;
    let history = match ctl.config().check(id) {
        Some(check) => {
            let series = super::history::check_series(ctl, check, range, now).await?;
            super::history::section(id, &series, range, check.policy.min_regions)
        }
        None => maud::html! {},
    };
    Ok(Some(render_detail(
        &view, &states, &events, &results, &history, now,
    )))
}

/// `OK` or `FAIL` in its colour, for one result.
fn verdict(ok: bool) -> (&'static str, &'static str) {
    if ok {
        (RegionStatus::Ok.css_class(), "OK")
    } else {
        (RegionStatus::Failing.css_class(), "FAIL")
    }
}

fn latest(states: &[RegionState], now: i64) -> Markup {
    html! {
        h3 { "Newest result per region" }
        @if states.is_empty() { p.muted { "No result yet." } }
        @for st in states {
            @let (class, word) = verdict(st.last_ok);
            h4 {
                (st.region) " "
                span class=(class) style="padding:2px 6px" { (word) }
                " "
                span.small {
                    "from " (st.last_probe) ", " (format::ms(now - st.last_result_at_ms)) " ago"
                    @if let Some(c) = &st.last_code {
                        " · " code { (c) } " " (st.last_message.as_deref().unwrap_or(""))
                    }
                }
            }
            (kind::section(&st.last_details, now))
            details {
                summary { "raw details" }
                pre { (details::Redacted(&st.last_details).to_pretty()) }
            }
        }
    }
}

/// The whole page.
pub fn render_detail(
    view: &CheckView,
    states: &[RegionState],
    events: &[EventView],
    results: &[ResultRow],
    history: &Markup,
    now: i64,
) -> Markup {
    let regions: Vec<String> = view.regions.iter().map(|r| r.region.clone()).collect();
    let body = html! {
        main {
            h2 { (view.id) }
            (grid(std::slice::from_ref(view), &regions, None, now))
            h3 { "Regions" }
            table {
                tr {
                    th { "region" } th { "state" } th { "failures in a row" } th { "passes in a row" }
                    th { "summary" } th { "last message" }
                }
                @for r in &view.regions {
                    tr {
                        td { (r.region) }
                        td class=(r.state.css_class()) { (r.state.as_str()) }
                        td { (r.consecutive_failures) }
                        td { (r.consecutive_passes) }
                        td { (r.summary.as_deref().unwrap_or("")) }
                        td { (r.message.as_deref().unwrap_or("")) }
                    }
                }
            }
            (history)
            (latest(states, now))
            @if view.kind == "dns" || !events.is_empty() {
                h3 { "Changes" }
                (changes_table(events, now, false))
            }
            h3 { "Recent results" }
            table {
                tr {
                    th { "started" } th { "region" } th { "probe" } th { "result" } th { "code" }
                    th { "message" } th { "total" }
                }
                @for r in results {
                    @let (class, word) = verdict(r.ok);
                    tr {
                        td { (timestamp(r.started_at_ms)) " " span.small { "(" (format::ms(now - r.started_at_ms)) " ago)" } }
                        td { (r.region) }
                        td { (r.probe) }
                        td class=(class) { (word) }
                        td { code { (r.failure_code.as_deref().unwrap_or("")) } }
                        td { (r.failure_message.as_deref().unwrap_or("")) }
                        td { (format::micros(r.total_us)) }
                    }
                }
            }
        }
    };
    page(&format!("Outpost: {}", view.id), body)
}
