//! History on the pages, from the rollups ([`crate::history`]): the
//! overview's 90-slot status bar and 24 h / 7 d / 30 d uptime per check,
//! and the check page's uptime per region and latency graphs.
//!
//! Charts are SVG rendered here, in the page: no script, no chart
//! library, no build step, nothing to vendor or keep patched; the page
//! stays readable with scripts off and prints. Each point carries its
//! values as `data-` attributes (`data-bucket`, `data-p50`, `data-p95`,
//! `data-p99`, `data-count`), so a browser test can compare the drawing
//! with the stored rollups, and a `<title>` a person can hover.

use std::collections::BTreeMap;

use maud::{Markup, html};

use crate::{
    Controller,
    config::CheckDef,
    format,
    history::{self, PHASES, Resolution, Series, Slot, SlotStatus, Uptime},
    store::{Cursor, RollupRow, StoreError},
};

/// Slots in a status bar.
pub const BAR_SLOTS: i64 = 90;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// What the overview shows per check.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// The status bar, oldest first: the last 90 slots.
    pub bar: Vec<Slot>,
    /// Width of its slots.
    pub bar_resolution: Resolution,
    /// Overall uptime over the last 24 h (hours), 7 d and 30 d (UTC days).
    pub uptime: [Uptime; 3],
    /// When its open alert fired.
    pub failing_since: Option<i64>,
}

/// A status bar's width from the `bar` query value: `minute` (the last 90
/// minutes), `hour` (the default: 90 hours) or `day` (90 days).
pub fn bar_resolution(text: Option<&str>) -> Resolution {
    match text {
        Some("minute") => Resolution::Minute,
        Some("day") => Resolution::Day,
        _ => Resolution::Hour,
    }
}

/// Rows of one check out of rows sorted by check.
fn rows_of<'a>(rows: &'a [RollupRow], check: &str) -> &'a [RollupRow] {
    let start = rows.partition_point(|r| r.check_id.as_str() < check);
    let end = rows.partition_point(|r| r.check_id.as_str() <= check);
    &rows[start..end]
}

fn cursors_of(cursors: &[Cursor], check: &str) -> Vec<(String, i64)> {
    cursors
        .iter()
        .filter(|c| c.check_id == check)
        .map(|c| (c.region.clone(), c.last_at_ms))
        .collect()
}

/// The overview of the checks `ids` names (one page of the status page)
/// from one read of their summaries (one row per check × region,
/// [`crate::history::Summary`]): the default hour bar, 24 h (hours), 7 d
/// and 30 d (UTC days), quorum per slot. A `minute` or `day` bar reads
/// the rollups of its 90 visible slots instead, per check.
pub async fn overview(
    ctl: &Controller,
    bar: Resolution,
    now: i64,
    ids: &[&str],
) -> Result<BTreeMap<String, Overview>, StoreError> {
    let cfg = ctl.config();
    let store = ctl.store();
    let summaries = store.summaries_of(ids).await?;
    let bar_from = bar.bucket(now) - (BAR_SLOTS - 1) * bar.width_ms();
    let mut bar_rows = Vec::new();
    if bar != Resolution::Hour {
        for id in ids {
            bar_rows.extend(store.rollups(bar, Some(id), bar_from, now + 1).await?);
        }
        bar_rows.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    }
    let cursors = if bar == Resolution::Hour {
        Vec::new()
    } else {
        store.rollup_cursors(None).await?
    };
    let empty = history::Summary::default();
    let mut out = BTreeMap::new();
    for c in ids.iter().filter_map(|id| cfg.check(id)) {
        let id = c.raw.id.as_str();
        let start = summaries.partition_point(|s| s.check_id.as_str() < id);
        let end = summaries.partition_point(|s| s.check_id.as_str() <= id);
        let mine = &summaries[start..end];
        let after = history::stale_after_of(c);
        // The configured regions (even without data) and any with data.
        let mut regions: Vec<(&str, &history::Summary, Option<i64>)> = mine
            .iter()
            .map(|s| {
                let last = (s.last_at_ms >= 0).then_some(s.last_at_ms);
                (s.region.as_str(), &s.summary, last)
            })
            .collect();
        for r in &c.regions {
            if !regions.iter().any(|(name, _, _)| name == r) {
                regions.push((r.as_str(), &empty, None));
            }
        }
        let overall_of = |res: Resolution, from: i64| -> Vec<Slot> {
            let per_region: Vec<Vec<Slot>> = regions
                .iter()
                .map(|(_, sum, last)| sum.slots(res, from, now, *last, after))
                .collect();
            let n = per_region.first().map_or(0, Vec::len);
            let mut cell = Vec::with_capacity(per_region.len());
            (0..n)
                .map(|i| {
                    cell.clear();
                    cell.extend(per_region.iter().filter_map(|v| v.get(i).copied()));
                    let (s, w) = cell.first().map_or((0, 0), |x| (x.start_ms, x.width_ms));
                    history::overall(s, w, &cell, c.policy.min_regions)
                })
                .collect()
        };
        let bar_slots = if bar == Resolution::Hour {
            overall_of(Resolution::Hour, bar_from)
        } else {
            Series::build(
                bar,
                bar_from,
                now + 1,
                now,
                &c.regions,
                rows_of(&bar_rows, id),
                &cursors_of(&cursors, id),
                after,
            )
            .overall(c.policy.min_regions)
        };
        let h24 = overall_of(Resolution::Hour, now - 24 * HOUR + 1);
        let days = overall_of(Resolution::Day, Resolution::Day.bucket(now) - 29 * DAY);
        let week_from = days.len().saturating_sub(7);
        out.insert(
            id.to_owned(),
            Overview {
                uptime: [
                    Uptime::of(&h24),
                    Uptime::of(&days[week_from..]),
                    Uptime::of(&days),
                ],
                bar: bar_slots,
                bar_resolution: bar,
                failing_since: None,
            },
        );
    }
    Ok(out)
}

/// `99.95 %`, or `—` when nothing was observed.
pub fn percent(u: &Uptime) -> String {
    match u.percent() {
        Some(p) if p >= 99.995 && u.down_ms == 0.0 => "100 %".to_owned(),
        Some(p) => format!("{:.2} %", (p * 100.0).floor() / 100.0),
        None => "—".to_owned(),
    }
}

fn slot_word(s: SlotStatus) -> &'static str {
    match s {
        SlotStatus::Up => "up",
        SlotStatus::Down => "DOWN",
        SlotStatus::Stale => "STALE",
        SlotStatus::NoData => "no data",
    }
}

/// A 90-slot bar as SVG: one rect per slot, its state in class, shape and
/// `data-status` (DOWN is a full-height bar, STALE a half-height hatched
/// one, no data a thin line: distinct without colour).
pub fn status_bar(slots: &[Slot], res: Resolution) -> Markup {
    let w = 4;
    let width = slots.len() * w;
    let down = slots
        .iter()
        .filter(|s| s.status() == SlotStatus::Down)
        .count();
    let stale = slots
        .iter()
        .filter(|s| s.status() == SlotStatus::Stale)
        .count();
    let label = format!(
        "last {} {}s: {down} down, {stale} stale",
        slots.len(),
        res.as_str()
    );
    html! {
        svg.bar width=(width) height="20" viewBox={ "0 0 " (width) " 20" } role="img" aria-label=(label) {
            @for (i, s) in slots.iter().enumerate() {
                @let st = s.status();
                @let (y, h) = match st { SlotStatus::Up | SlotStatus::Down => (0, 20), SlotStatus::Stale => (6, 14), SlotStatus::NoData => (17, 3) };
                rect class={ "slot " (slot_class(st)) } x=(i * w) y=(y) width=(w - 1) height=(h)
                    data-status=(slot_word(st)) data-bucket=(s.start_ms) {
                    title { (format::timestamp(s.start_ms)) " · " (slot_word(st))
                        @if s.count > 0 { " · " (s.count - s.failures) "/" (s.count) " passed" } }
                }
            }
        }
    }
}

fn slot_class(s: SlotStatus) -> &'static str {
    match s {
        SlotStatus::Up => "s-up",
        SlotStatus::Down => "s-down",
        SlotStatus::Stale => "s-stale",
        SlotStatus::NoData => "s-none",
    }
}

/// A check page's range (`?range=`): `1h` (minutes), `24h` (hours, the
/// default), `7d` (hours) or `30d` (days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last hour, per minute.
    Hour,
    /// The last 24 hours, per hour.
    Day,
    /// The last 7 days, per hour.
    Week,
    /// The last 30 days, per day.
    Month,
}

impl Range {
    /// Every range, shortest first.
    pub const ALL: [Range; 4] = [Range::Hour, Range::Day, Range::Week, Range::Month];

    /// From the query value; anything else is 24 h.
    pub fn parse(text: Option<&str>) -> Range {
        match text {
            Some("1h") => Range::Hour,
            Some("7d") => Range::Week,
            Some("30d") => Range::Month,
            _ => Range::Day,
        }
    }

    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// Resolution and start of the range ending at `now`.
    pub fn window(self, now: i64) -> (Resolution, i64) {
        match self {
            Range::Hour => (Resolution::Minute, now - HOUR + 1),
            Range::Day => (Resolution::Hour, now - 24 * HOUR + 1),
            Range::Week => (Resolution::Hour, now - 7 * DAY + 1),
            Range::Month => (Resolution::Day, Resolution::Day.bucket(now) - 29 * DAY),
        }
    }
}

/// One check's series over a range.
pub async fn check_series(
    ctl: &Controller,
    check: &CheckDef,
    range: Range,
    now: i64,
) -> Result<Series, StoreError> {
    let (res, from) = range.window(now);
    let id = check.raw.id.as_str();
    let rows = ctl.store().rollups(res, Some(id), from, now + 1).await?;
    let cursors = ctl.store().rollup_cursors(Some(id)).await?;
    let after = history::stale_after_of(check);
    Ok(Series::build(
        res,
        from,
        now + 1,
        now,
        &check.regions,
        &rows,
        &cursors_of(&cursors, id),
        after,
    ))
}

/// The check page's history section: range links, uptime per region and
/// overall, one latency graph per phase that has data.
pub fn section(id: &str, series: &Series, range: Range, min_regions: u32) -> Markup {
    let overall = series.overall(min_regions);
    html! {
        h3 #history { "History" }
        p {
            @for r in Range::ALL {
                @if r == range { b { (r.as_str()) } " " }
                @else { a href={ "/checks/" (id) "?range=" (r.as_str()) "#history" } { (r.as_str()) } " " }
            }
        }
        (status_bar(&overall, series.resolution))
        table {
            tr { th { "region" } th { "uptime" } th { "down" } th { "STALE (not counted as up)" } th { "runs" } th { "failed" } }
            tr {
                td { b { "overall" } span.small { " (down when ≥ " (min_regions) " region" @if min_regions != 1 { "s" } " failed)" } }
                (uptime_cells(&Uptime::of(&overall)))
            }
            @for (region, slots) in &series.regions {
                tr { td { (region) } (uptime_cells(&Uptime::of(slots))) }
            }
        }
        @for (phase, name) in PHASES.iter().enumerate() {
            @if series.regions.keys().any(|r| series.latency(r, phase).iter().any(Option::is_some)) {
                h4 { "Latency: " (name.replace('_', " ")) " (p50, line; p95, dashed)" }
                (latency_chart(series, phase))
            }
        }
    }
}

fn uptime_cells(u: &Uptime) -> Markup {
    html! {
        td { (percent(u)) }
        td { (format::ms(u.down_ms as i64)) }
        td { @if u.stale_ms > 0.0 { span.stale-text { "STALE " (format::ms(u.stale_ms as i64)) } } @else { "0" } }
        td { (u.count) }
        td { (u.failures) }
    }
}

/// Stroke colours per region (the legend names them: colour is not the
/// only key), chosen for ≥ 3:1 against both backgrounds.
const LINE_COLOURS: [&str; 6] = [
    "#1f6fd1", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#be185d",
];

/// One phase's latency as SVG lines per region.
pub fn latency_chart(series: &Series, phase: usize) -> Markup {
    let (w, h, pad) = (720.0_f64, 180.0_f64, 40.0_f64);
    let n = series.starts.len().max(1);
    let max = series
        .regions
        .keys()
        .flat_map(|r| series.latency(r, phase))
        .flatten()
        .map(|p| p.p95)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |i: usize| pad + (w - pad - 8.0) * (i as f64 + 0.5) / n as f64;
    let y = |us: u64| h - 20.0 - (h - 30.0) * (us as f64 / max);
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h) } width="100%" role="img"
            aria-label={ (PHASES[phase]) " latency per region" } data-phase=(PHASES[phase]) {
            line x1=(pad) y1=(h - 20.0) x2=(w - 8.0) y2=(h - 20.0) class="axis" {}
            text x="2" y="14" class="tick" { (format::micros(max as i64)) }
            text x="2" y=(h - 22.0) class="tick" { "0" }
            text x=(pad) y=(h - 4.0) class="tick" { (format::timestamp(series.starts.first().copied().unwrap_or(0))) }
            @for (ri, region) in series.regions.keys().enumerate() {
                @let colour = LINE_COLOURS[ri % LINE_COLOURS.len()];
                @let points = series.latency(region, phase);
                @let p50: String = points.iter().enumerate().filter_map(|(i, p)| p.map(|p| format!("{:.1},{:.1} ", x(i), y(p.p50)))).collect();
                @let p95: String = points.iter().enumerate().filter_map(|(i, p)| p.map(|p| format!("{:.1},{:.1} ", x(i), y(p.p95)))).collect();
                g data-region=(region) {
                    polyline points=(p50) fill="none" stroke=(colour) stroke-width="2" {}
                    polyline points=(p95) fill="none" stroke=(colour) stroke-width="1" stroke-dasharray="4 3" {}
                    @for (i, p) in points.iter().enumerate() {
                        @if let Some(p) = p {
                            circle.pt cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(p.p50))) r="2.5" fill=(colour)
                                data-bucket=(series.starts[i]) data-p50=(p.p50) data-p95=(p.p95) data-p99=(p.p99)
                                data-count=(series.rollups[region][i].latency[phase].count()) {
                                title { (region) " " (format::timestamp(series.starts[i])) ": p50 " (format::micros(p.p50 as i64))
                                    ", p95 " (format::micros(p.p95 as i64)) ", p99 " (format::micros(p.p99 as i64)) }
                            }
                        }
                    }
                    text x=(w - 150.0) y=(14.0 + 14.0 * ri as f64) class="tick" fill=(colour) { "— " (region) }
                }
            }
        }
    }
}

/// The overview's history cell of one check: bar, uptime, failing since.
pub fn overview_cell(o: &Overview, now: i64) -> Markup {
    html! {
        td.hist {
            (status_bar(&o.bar, o.bar_resolution))
            div.small {
                "uptime 24 h " b { (percent(&o.uptime[0])) }
                " · 7 d " b { (percent(&o.uptime[1])) }
                " · 30 d " b { (percent(&o.uptime[2])) }
                @if o.uptime[2].stale_ms > 0.0 { " · STALE " (format::ms(o.uptime[2].stale_ms as i64)) " in 30 d" }
            }
            @if let Some(t) = o.failing_since {
                div.small { b { "failing since " (format::timestamp(t)) } " (" (format::ms(now - t)) ")" }
            }
        }
    }
}
