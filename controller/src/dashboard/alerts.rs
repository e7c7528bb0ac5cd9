//! `/alerts`: open alerts and the history, filtered by state, check and
//! time (`?state=open|resolved&check=ID&since=YYYY-MM-DD`), newest first,
//! 50 a page (`?before=<opened_ms>.<id>`: keyset, never an offset); and
//! `/alerts/{id}`: one alert with its timeline and every notification
//! attempt (sink, time, outcome, HTTP status, the scrubbed excerpt).

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};

use super::{error_page, page_with};
use crate::{
    Controller,
    alerting::AlertState,
    api,
    format::{self, timestamp},
    store::{AlertFilter, AlertRow},
};

/// Alerts per page.
pub const PAGE: u32 = 50;

/// `/alerts` query.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct AlertsQuery {
    state: Option<String>,
    check: Option<String>,
    since: Option<String>,
    before: Option<String>,
}

/// `YYYY-MM-DD` (UTC midnight) as unix ms.
fn day_ms(text: &str) -> Option<i64> {
    let d: jiff::civil::Date = text.parse().ok()?;
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

fn filter_of(q: &AlertsQuery) -> AlertFilter {
    AlertFilter {
        state: match q.state.as_deref() {
            Some("open") => Some(AlertState::Open),
            Some("resolved") => Some(AlertState::Resolved),
            _ => None,
        },
        check_id: q.check.clone().filter(|c| !c.is_empty()),
        since_ms: q.since.as_deref().and_then(day_ms),
        before: q.before.as_deref().and_then(|b| {
            let (t, id) = b.split_once('.')?;
            Some((t.parse().ok()?, id.parse().ok()?))
        }),
    }
}

pub(super) async fn list_handler(
    State(ctl): State<Controller>,
    Query(q): Query<AlertsQuery>,
) -> Response {
    let filter = filter_of(&q);
    match ctl.store().alert_page(&filter, PAGE).await {
        Ok(rows) => Html(render_list(&q, &rows, ctl.now_ms()).into_string()).into_response(),
        Err(e) => error_page(e.into()),
    }
}

fn state_cell(a: &AlertRow) -> Markup {
    html! {
        @if a.state == AlertState::Open {
            td.FAILING { span.word { @if a.flapping { "⇅ FLAPPING" } @else { "● OPEN" } } }
        } @else {
            td.OK { "✓ resolved" }
        }
    }
}

fn render_list(q: &AlertsQuery, rows: &[AlertRow], now: i64) -> Markup {
    let next = (rows.len() == PAGE as usize)
        .then(|| rows.last().map(|a| format!("{}.{}", a.opened_at_ms, a.id)))
        .flatten();
    let base = kept(&[
        ("state", &q.state),
        ("check", &q.check),
        ("since", &q.since),
    ]);
    let body = html! {
        main {
            h2 { "Alerts" }
            form method="get" action="/alerts" {
                label { "state " select name="state" {
                    option value="" selected[q.state.is_none()] { "any" }
                    option value="open" selected[q.state.as_deref() == Some("open")] { "open" }
                    option value="resolved" selected[q.state.as_deref() == Some("resolved")] { "resolved" }
                } }
                " "
                label { "check " input name="check" value=(q.check.as_deref().unwrap_or("")) size="16"; }
                " "
                label { "since " input type="date" name="since" value=(q.since.as_deref().unwrap_or("")); }
                " " button type="submit" { "filter" }
            }
            @if rows.is_empty() { p.muted { "No alerts match." } }
            @else {
                table {
                    tr { th { "state" } th { "opened" } th { "resolved" } th { "check / subject" } th { "severity" } th { "summary" } }
                    @for a in rows {
                        tr {
                            (state_cell(a))
                            td { (timestamp(a.opened_at_ms)) }
                            td { @match a.resolved_at_ms {
                                Some(t) => { (timestamp(t)) span.small { " after " (format::ms(t - a.opened_at_ms)) } }
                                None => { "open for " (format::ms(now - a.opened_at_ms)) }
                            } }
                            td { @if a.check_id.is_empty() { (a.probe.as_deref().unwrap_or(a.kind.as_str())) } @else { a href={ "/checks/" (a.check_id) } { (a.check_id) } } }
                            td { (a.severity) }
                            td { a href={ "/alerts/" (a.id) } { (a.summary) } }
                        }
                    }
                }
            }
            @if let Some(n) = next { p { a href={ "/alerts?before=" (n) (base) } { "older alerts →" } } }
        }
    };
    page_with("Outpost: alerts", body, false)
}

/// The outcome's word, as the API serves it.
fn outcome_word(o: crate::alerting::sink::AttemptOutcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `&k=v` for each filter set (percent-encoded, empty ones left out): what
/// a list's "next page" link keeps of its query.
pub(crate) fn kept(filters: &[(&str, &Option<String>)]) -> String {
    filters
        .iter()
        .filter_map(|(k, v)| {
            let v = v.as_deref().filter(|v| !v.is_empty())?;
            Some(format!("&{k}={}", urlencode(v)))
        })
        .collect()
}

/// Percent-encodes a query value.
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) async fn alert_handler(State(ctl): State<Controller>, Path(id): Path<i64>) -> Response {
    match render_alert(&ctl, id).await {
        Ok(Some(m)) => Html(m.into_string()).into_response(),
        Ok(None) => error_page(api::ApiError(
            StatusCode::NOT_FOUND,
            format!("no alert {id}"),
        )),
        Err(e) => error_page(e),
    }
}

async fn render_alert(ctl: &Controller, id: i64) -> Result<Option<Markup>, api::ApiError> {
    let store = ctl.store();
    let Some(a) = store.alert(id).await? else {
        return Ok(None);
    };
    let timeline = store.alert_timeline(id).await?;
    let attempts = store.attempts_for_alert(id).await?;
    let now = ctl.now_ms();
    let body = html! {
        main {
            h2 { "Alert " (a.id) ": " (a.summary) }
            table {
                tr { th { "state" } (state_cell(&a)) }
                tr { th { "kind" } td { (a.kind.as_str()) } }
                tr { th { "check" } td { @if !a.check_id.is_empty() { a href={ "/checks/" (a.check_id) } { (a.check_id) } } } }
                tr { th { "severity" } td { (a.severity) } }
                tr { th { "opened" } td { (timestamp(a.opened_at_ms)) " (" (format::ms(now - a.opened_at_ms)) " ago)" } }
                @if let Some(t) = a.resolved_at_ms { tr { th { "resolved" } td { (timestamp(t)) } } }
                tr { th { "dedup key" } td { code { (a.dedup_key) } } }
            }
            h3 { "Timeline" }
            table {
                tr { th { "when" } th { "change" } th { "severity" } th { "regions" } th { "code" } th { "summary" } }
                @for t in &timeline {
                    tr {
                        td { (timestamp(t.at_ms)) }
                        td { b { (t.what.as_str()) } }
                        td { (t.severity) }
                        td { (serde_json::from_str::<Vec<String>>(&t.regions_json).unwrap_or_default().join(", ")) }
                        td { code { (t.code) } }
                        td { (t.summary) }
                    }
                }
            }
            h3 { "Notification attempts" }
            @if attempts.is_empty() { p.muted { "No delivery attempt yet." } }
            @else {
                table {
                    tr { th { "when" } th { "sink" } th { "outcome" } th { "HTTP status" } th { "answer (excerpt)" } }
                    @for t in &attempts {
                        tr {
                            td { (timestamp(t.at_ms)) }
                            td { (t.sink) }
                            td { (outcome_word(t.outcome)) }
                            td { (t.status.map(|s| s.to_string()).unwrap_or_default()) }
                            td { code { (t.excerpt) } }
                        }
                    }
                }
            }
        }
    };
    Ok(Some(page_with(
        &format!("Outpost: alert {id}"),
        body,
        false,
    )))
}
