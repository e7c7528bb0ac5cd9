//! `/checks/{id}`: one check's state per region, what each region's newest
//! result saw (by kind: redirect chain, backends, samples and assertions for
//! http; answers, CNAME chains with TTLs, propagation for dns; the matrix and
//! certificates for tls; session age and renewals for session), its DNS
//! changes (old → new), and its recent results. Raw details are shown only
//! through [`crate::details::Redacted`].

use std::fmt::Write;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use super::{changes_table, error_page, escape, grid, kind, page};
use crate::{
    Controller,
    alerting::rule::RegionStatus,
    api::{self, CHECK_EVENTS, CheckView, events::EventView},
    details,
    format::{human_age, timestamp},
    store::{RegionState, ResultRow, now_ms},
};

pub(super) async fn page_handler(
    State(ctl): State<Controller>,
    Path(id): Path<String>,
) -> Response {
    match render(&ctl, &id).await {
        Ok(Some(html)) => Html(html).into_response(),
        Ok(None) => error_page(api::ApiError(
            StatusCode::NOT_FOUND,
            format!("no check with id {id:?}"),
        )),
        Err(e) => error_page(e),
    }
}

async fn render(ctl: &Controller, id: &str) -> Result<Option<String>, api::ApiError> {
    let now = now_ms();
    let Some((view, results)) = api::check_detail(ctl, id, now).await? else {
        return Ok(None);
    };
    let states = ctl.store().region_states_for(id).await?;
    let events = api::events::event_views(ctl, Some(id), CHECK_EVENTS).await?;
    Ok(Some(render_detail(&view, &states, &events, &results, now)))
}

fn latest(states: &[RegionState], now: i64) -> String {
    let mut s = String::from("<h3>Newest result per region</h3>");
    if states.is_empty() {
        s.push_str("<p class=\"muted\">No result yet.</p>");
    }
    for st in states {
        let (class, word) = if st.last_ok {
            (RegionStatus::Ok.css_class(), "OK")
        } else {
            (RegionStatus::Failing.css_class(), "FAIL")
        };
        let _ = write!(
            s,
            "<h4>{} <span class=\"{class}\" style=\"padding:2px 6px\">{word}</span> <span class=\"small\">from {}, {} ago{}</span></h4>{}",
            escape(&st.region),
            escape(&st.last_probe),
            human_age(now - st.last_result_at_ms),
            st.last_code
                .as_deref()
                .map(|c| format!(
                    " · <code>{}</code> {}",
                    escape(c),
                    escape(st.last_message.as_deref().unwrap_or(""))
                ))
                .unwrap_or_default(),
            kind::section(&st.last_details, now).into_string(),
        );
        let pretty = details::Redacted(&st.last_details).to_pretty();
        let _ = write!(
            s,
            "<details><summary>raw details</summary><pre>{}</pre></details>",
            escape(&pretty)
        );
    }
    s
}

/// The whole page.
pub fn render_detail(
    view: &CheckView,
    states: &[RegionState],
    events: &[EventView],
    results: &[ResultRow],
    now: i64,
) -> String {
    let regions: Vec<String> = view.regions.iter().map(|r| r.region.clone()).collect();
    let mut body = format!(
        "<main><h2>{}</h2>{}",
        escape(&view.id),
        grid(std::slice::from_ref(view), &regions)
    );
    body.push_str("<h3>Regions</h3><table><tr><th>region</th><th>state</th><th>failures in a row</th><th>passes in a row</th><th>summary</th><th>last message</th></tr>");
    for r in &view.regions {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.region),
            r.state.css_class(),
            r.state.as_str(),
            r.consecutive_failures,
            r.consecutive_passes,
            escape(r.summary.as_deref().unwrap_or("")),
            escape(r.message.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table>");
    body.push_str(&latest(states, now));
    if view.kind == "dns" || !events.is_empty() {
        let _ = write!(
            body,
            "<h3>Changes</h3>{}",
            changes_table(events, now, false)
        );
    }
    body.push_str("<h3>Recent results</h3><table><tr><th>started</th><th>region</th><th>probe</th><th>result</th><th>code</th><th>message</th><th>total</th></tr>");
    for r in results {
        let (class, word) = if r.ok {
            (RegionStatus::Ok.css_class(), "OK")
        } else {
            (RegionStatus::Failing.css_class(), "FAIL")
        };
        let _ = write!(
            body,
            "<tr><td>{} <span class=\"small\">({} ago)</span></td><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td><td><code>{}</code></td><td>{}</td><td>{} ms</td></tr>",
            timestamp(r.started_at_ms),
            human_age(now - r.started_at_ms),
            escape(&r.region),
            escape(&r.probe),
            escape(r.failure_code.as_deref().unwrap_or("")),
            escape(r.failure_message.as_deref().unwrap_or("")),
            r.total_us / 1000
        );
    }
    body.push_str("</table></main>");
    page(&format!("Outpost: {}", view.id), &body)
}
