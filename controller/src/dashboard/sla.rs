//! `/sla?month=YYYY-MM&tz=Area/City`: uptime per check and per label for
//! one calendar month in a time zone (default: this month, UTC), overall
//! with each check's quorum, STALE time beside it and never counted as up
//! ([`crate::history`]); 100 checks a page (`&page=N`). `/sla.csv` is the
//! same report, every check, as CSV.
//!
//! Read from hour rollups (minutes for 2,000 checks × a month would be
//! 432 M rows): the month's edges are exact in every zone with a
//! whole-hour offset; in a half-hour zone each edge is off by 30 min (the
//! page says so). When hours are past their retention, days (UTC).

use std::collections::BTreeMap;

use axum::{
    extract::{Query, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use maud::html;

use super::{error_page, history::percent, page_with};
use crate::{
    Controller, api,
    history::{self, Resolution, Series, Uptime},
};

/// Checks per page.
pub const PAGE: usize = 100;

/// `/sla` query.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct SlaQuery {
    month: Option<String>,
    tz: Option<String>,
    page: Option<usize>,
}

/// One check's month.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaRow {
    /// Check.
    pub check_id: String,
    /// `key=value` labels.
    pub labels: Vec<String>,
    /// Overall, with the check's quorum.
    pub uptime: Uptime,
}

/// The report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `YYYY-MM`.
    pub month: String,
    /// Zone.
    pub tz: String,
    /// Month start and end (unix ms).
    pub range: (i64, i64),
    /// Rollups it was read from.
    pub resolution: Resolution,
    /// The zone's offset at the month's start is not a whole hour.
    pub inexact_edges: bool,
    /// Per check, by id.
    pub checks: Vec<SlaRow>,
    /// Per label, summed over its checks.
    pub labels: BTreeMap<String, Uptime>,
}

fn this_month(tz: &str, now: i64) -> String {
    jiff::Timestamp::from_millisecond(now)
        .ok()
        .zip(jiff::tz::TimeZone::get(tz).ok())
        .map(|(t, z)| t.to_zoned(z).strftime("%Y-%m").to_string())
        .unwrap_or_else(|| "1970-01".to_owned())
}

/// Computes the report for `month` in `tz`.
pub async fn report(
    ctl: &Controller,
    month: Option<&str>,
    tz: Option<&str>,
) -> Result<Report, api::ApiError> {
    let now = ctl.now_ms();
    let tz = tz.filter(|t| !t.is_empty()).unwrap_or("UTC").to_owned();
    let month = month
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| this_month(&tz, now));
    let (start, end) = history::month_range(&month, &tz)
        .map_err(|e| api::ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let cfg = ctl.config();
    let resolution = match cfg.history.finest_for(start, now) {
        Resolution::Minute | Resolution::Hour => Resolution::Hour,
        Resolution::Day => Resolution::Day,
    };
    let rows = ctl.store().rollups(resolution, None, start, end).await?;
    let cursors = ctl.store().rollup_cursors(None).await?;
    let stale_after = history::stale_after_ms(&cfg);
    let mut checks = Vec::new();
    let mut labels: BTreeMap<String, Uptime> = BTreeMap::new();
    for c in &cfg.checks {
        let id = c.raw.id.as_str();
        let lo = rows.partition_point(|r| r.check_id.as_str() < id);
        let hi = rows.partition_point(|r| r.check_id.as_str() <= id);
        let cur: Vec<(String, i64)> = cursors
            .iter()
            .filter(|k| k.check_id == id)
            .map(|k| (k.region.clone(), k.last_at_ms))
            .collect();
        let series = Series::build(
            resolution,
            start,
            end,
            now,
            &c.regions,
            &rows[lo..hi],
            &cur,
            stale_after.get(id).copied(),
        );
        let uptime = Uptime::of(&series.overall(c.policy.min_regions));
        let tags: Vec<String> = c
            .raw
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for t in &tags {
            let l = labels.entry(t.clone()).or_default();
            l.up_ms += uptime.up_ms;
            l.down_ms += uptime.down_ms;
            l.stale_ms += uptime.stale_ms;
            l.count += uptime.count;
            l.failures += uptime.failures;
        }
        checks.push(SlaRow {
            check_id: id.to_owned(),
            labels: tags,
            uptime,
        });
    }
    checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    Ok(Report {
        month,
        tz,
        range: (start, end),
        resolution,
        inexact_edges: start % 3_600_000 != 0,
        checks,
        labels,
    })
}

pub(super) async fn page_handler(
    State(ctl): State<Controller>,
    Query(q): Query<SlaQuery>,
) -> Response {
    let r = match report(&ctl, q.month.as_deref(), q.tz.as_deref()).await {
        Ok(r) => r,
        Err(e) => return error_page(e),
    };
    let page = q.page.unwrap_or(0);
    let shown = r.checks.iter().skip(page * PAGE).take(PAGE);
    let more = r.checks.len() > (page + 1) * PAGE;
    let query = format!("month={}&tz={}", r.month, r.tz);
    let body = html! {
        main {
            h2 { "SLA " (r.month) " (" (r.tz) ")" }
            form method="get" action="/sla" {
                label { "month " input type="month" name="month" value=(r.month); }
                " " label { "time zone " input name="tz" value=(r.tz) size="20"; }
                " " button type="submit" { "show" }
                " " a href={ "/sla.csv?" (query) } { "CSV" }
            }
            p.small {
                (crate::format::timestamp(r.range.0)) " to " (crate::format::timestamp(r.range.1))
                " · from " (r.resolution.as_str()) " rollups · uptime = up / (up + down); STALE time is listed apart and never counted as up"
                @if r.inexact_edges { " · this zone's offset is not a whole hour: each edge of the month is off by up to 30 min" }
            }
            @if !r.labels.is_empty() {
                h3 { "Per label" }
                table {
                    tr { th { "label" } th { "uptime" } th { "down" } th { "STALE" } }
                    @for (l, u) in &r.labels {
                        tr { td { (l) } td { (percent(u)) } td { (crate::format::ms(u.down_ms as i64)) } td { (crate::format::ms(u.stale_ms as i64)) } }
                    }
                }
            }
            h3 { "Per check" }
            table {
                tr { th { "check" } th { "labels" } th { "uptime" } th { "down" } th { "STALE" } th { "runs" } th { "failed" } }
                @for c in shown {
                    tr data-check=(c.check_id) {
                        td { a href={ "/checks/" (c.check_id) } { (c.check_id) } }
                        td.small { (c.labels.join(", ")) }
                        td data-uptime=(c.uptime.percent().map(|p| format!("{p:.4}")).unwrap_or_default()) { (percent(&c.uptime)) }
                        td { (crate::format::ms(c.uptime.down_ms as i64)) }
                        td { (crate::format::ms(c.uptime.stale_ms as i64)) }
                        td { (c.uptime.count) }
                        td { (c.uptime.failures) }
                    }
                }
            }
            p {
                @if page > 0 { a href={ "/sla?" (query) "&page=" (page - 1) } { "← previous" } " " }
                @if more { a href={ "/sla?" (query) "&page=" (page + 1) } { "next →" } }
            }
        }
    };
    Html(page_with("Outpost: SLA", body, false).into_string()).into_response()
}

/// A CSV field, quoted when it must be.
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// The report as CSV: a header line and one line per check.
pub fn to_csv(r: &Report) -> String {
    let mut out = String::from(
        "month,tz,check,labels,uptime_percent,up_ms,down_ms,stale_ms,runs,failures,resolution\n",
    );
    for c in &r.checks {
        out.push_str(&format!(
            "{},{},{},{},{},{:.0},{:.0},{:.0},{},{},{}\n",
            r.month,
            csv(&r.tz),
            csv(&c.check_id),
            csv(&c.labels.join(";")),
            c.uptime
                .percent()
                .map(|p| format!("{p:.4}"))
                .unwrap_or_default(),
            c.uptime.up_ms,
            c.uptime.down_ms,
            c.uptime.stale_ms,
            c.uptime.count,
            c.uptime.failures,
            r.resolution.as_str(),
        ));
    }
    out
}

pub(super) async fn csv_handler(
    State(ctl): State<Controller>,
    Query(q): Query<SlaQuery>,
) -> Response {
    match report(&ctl, q.month.as_deref(), q.tz.as_deref()).await {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"sla-{}.csv\"", r.month),
                ),
            ],
            to_csv(&r),
        )
            .into_response(),
        Err(e) => (e.0, e.1).into_response(),
    }
}
