//! The server-rendered status page: `/` (checks × regions grid, open-alert
//! banner, recent DNS changes, probes), `/checks/{id}` ([`detail`]: per-region
//! state, what the newest results saw by kind, changes, recent results) and
//! `/certificates` ([`certificates`]: the inventory).
//!
//! Built so the states that matter cannot be missed (the IOT incident: stale
//! data shown as a faint grey border for 17 hours): FAILING is a solid red
//! cell with the bold word, STALE a solid amber cell with the word and the
//! age ("no result for 95s"). No external assets, every text escaped, the
//! page refreshes itself every 5 s.

pub mod certificates;
pub mod detail;
mod kind;

use std::fmt::Write;

use crate::{
    Controller,
    alerting::{AlertKind, rule::RegionStatus},
    api::{self, CheckView, RegionView, events::EventView},
    format::{human_age, timestamp},
    store::{AlertRow, now_ms},
};
use axum::{
    Router,
    extract::State,
    response::{Html, IntoResponse, Response},
    routing::get,
};

/// Changes listed on the status page.
pub const RECENT_CHANGES: u32 = 10;

/// Routes of the page (merged into [`api::router`]).
pub fn routes() -> Router<Controller> {
    Router::new()
        .route("/", get(index))
        .route("/checks/{id}", get(detail::page_handler))
        .route("/certificates", get(certificates::page_handler))
}

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f4;color:#111}\
header{background:#222;color:#fff;padding:10px 16px}header a{color:#fff}h1{margin:0;font-size:20px;display:inline}\
.meta{color:#bbb;margin-left:12px;font-size:13px}main{padding:16px}\
.banner{background:#b00000;color:#fff;padding:12px 16px;font-weight:bold;font-size:16px}\
.banner ul{margin:6px 0 0 0}.clear{background:#1e7b34;color:#fff;padding:8px 16px}\
table{border-collapse:collapse;background:#fff;margin-bottom:16px}th,td{border:1px solid #ccc;padding:6px 10px;text-align:left;vertical-align:top}\
th{background:#eee}.small{font-size:12px;color:#444}\
.FAILING{background:#c00000;color:#fff;font-weight:bold}.FAILING .small{color:#fff}\
.STALE{background:#ffb000;color:#000;font-weight:bold}.STALE .small{color:#000}\
.UNKNOWN{background:#ddd;color:#333}.OK{background:#d8f5dc;color:#114a1d}.NA{background:#fafafa;color:#aaa}\
.word{font-size:15px;letter-spacing:.5px}code{font-size:12px}\
nav{display:inline;margin-left:16px}nav a{margin-right:10px}.warn{background:#ffb000;color:#000;padding:8px 16px;font-weight:bold}\
.arrow{font-weight:bold;padding:0 4px}pre{background:#fff;border:1px solid #ccc;padding:8px;font-size:12px;overflow:auto;max-width:100%}\
.expired{background:#c00000;color:#fff;font-weight:bold}.critical{background:#e04000;color:#fff;font-weight:bold}\
.error{background:#ff7a00;color:#000;font-weight:bold}.warning{background:#ffd24d;color:#000}.info,.ok{background:#fff}\
.muted{color:#777}";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head>\
         <body><header><h1><a href=\"/\">Outpost</a></h1><nav><a href=\"/\">status</a><a href=\"/certificates\">certificates</a></nav><span class=\"meta\">{} · updated {} · refreshes every 5s</span></header>{body}</body></html>",
        escape(title),
        escape(title),
        timestamp(now_ms()),
    )
}

fn banner(open: &[&AlertRow], now: i64) -> String {
    if open.is_empty() {
        return "<div class=\"clear\">No open alerts</div>".into();
    }
    let mut s = format!(
        "<div class=\"banner\" role=\"alert\">{} OPEN ALERT{}<ul>",
        open.len(),
        if open.len() == 1 { "" } else { "S" }
    );
    for a in open {
        // Fleet-level alerts (probe_offline) point at the probes table.
        let href = match &a.probe {
            _ if a.kind == AlertKind::CertificateExpiring => "/certificates".to_owned(),
            Some(_) if a.check_id.is_empty() => "/#probes".to_owned(),
            _ => format!("/checks/{}", escape(&a.check_id)),
        };
        let _ = write!(
            s,
            "<li><a style=\"color:#fff\" href=\"{href}\">{}</a> <span style=\"font-weight:normal\">(open for {}, {})</span></li>",
            escape(&a.summary),
            human_age(now - a.opened_at_ms),
            a.severity,
        );
    }
    s.push_str("</ul></div>");
    s
}

pub(crate) fn region_cell(r: &RegionView) -> String {
    let age = human_age(r.age_ms.unwrap_or(0));
    let detail = match r.state {
        RegionStatus::Stale if r.reason == Some(api::REASON_PROBE_OFFLINE) => {
            format!("probe offline · last result {age} ago")
        }
        RegionStatus::Stale => format!("no result for {age}"),
        RegionStatus::Unknown => "no result yet".to_owned(),
        RegionStatus::Failing => format!(
            "{} · {age} ago",
            escape(r.code.as_deref().unwrap_or("failed"))
        ),
        RegionStatus::Ok => format!("{age} ago"),
    };
    let title = [r.message.as_deref(), r.summary.as_deref()]
        .into_iter()
        .flatten()
        .map(escape)
        .collect::<Vec<_>>()
        .join(" — ");
    let summary = r
        .summary
        .as_deref()
        .map(|s| format!("<div class=\"small\">{}</div>", escape(s)))
        .unwrap_or_default();
    format!(
        "<td class=\"{}\" title=\"{title}\"><span class=\"word\">{}</span><div class=\"small\">{detail}</div>{summary}</td>",
        r.state.css_class(),
        r.state.as_str()
    )
}

pub(crate) fn grid(checks: &[CheckView], regions: &[String]) -> String {
    let mut s = String::from("<table><tr><th>check</th><th>state</th>");
    for r in regions {
        let _ = write!(s, "<th>{}</th>", escape(r));
    }
    s.push_str("</tr>");
    for c in checks {
        let _ = write!(
            s,
            "<tr><td><a href=\"/checks/{}\">{}</a><div class=\"small\">{} {} every {}</div></td><td class=\"{}\"><span class=\"word\">{}</span>{}</td>",
            escape(&c.id),
            escape(&c.id),
            c.kind,
            escape(c.target.as_deref().unwrap_or("")),
            escape(&c.interval),
            c.state.css_class(),
            c.state.as_str(),
            if c.alert_open {
                "<div class=\"small\">alert open</div>"
            } else {
                ""
            },
        );
        for region in regions {
            match c.regions.iter().find(|r| &r.region == region) {
                Some(r) => s.push_str(&region_cell(r)),
                None => s.push_str("<td class=\"NA\">—</td>"),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn probes_table(probes: &[api::ProbeView], now: i64) -> String {
    let mut s = String::from(
        "<h2 id=\"probes\">Probes</h2><table><tr><th>probe</th><th>region</th><th>state</th><th>last seen</th>\
         <th>queued results</th><th>dropped results</th><th>version</th></tr>",
    );
    for p in probes {
        let class = p.state.css_class();
        let seen = p
            .last_seen_ms
            .map(|t| format!("{} ago", human_age(now - t)))
            .unwrap_or_else(|| "never".into());
        let dropped = if p.dropped_results == 0 {
            "0".to_owned()
        } else {
            let reasons: Vec<String> = p
                .dropped_by_reason
                .iter()
                .map(|(r, n)| format!("{n} {}", escape(r)))
                .collect();
            format!("<b>{}</b> ({})", p.dropped_results, reasons.join(", "))
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\"><span class=\"word\">{}</span></td><td>{seen}</td>\
             <td>{}</td><td>{dropped}</td><td>{}</td></tr>",
            escape(&p.name),
            escape(&p.region),
            p.state.word(),
            p.queued_results,
            escape(&p.version)
        );
    }
    s.push_str("</table>");
    s
}

pub(crate) fn error_page(e: api::ApiError) -> Response {
    (
        e.0,
        Html(page(
            "Outpost: error",
            &format!("<main><p>{}</p></main>", escape(&e.1)),
        )),
    )
        .into_response()
}

async fn index(State(ctl): State<Controller>) -> Response {
    match render_index(&ctl).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => error_page(e),
    }
}

/// The "Recent changes" table: when, check, old → new, where seen.
pub(crate) fn changes_table(events: &[EventView], now: i64, with_check: bool) -> String {
    if events.is_empty() {
        return "<p class=\"muted\">No DNS answer changes recorded.</p>".into();
    }
    let mut s = String::from("<table><tr><th>when</th>");
    if with_check {
        s.push_str("<th>check</th>");
    }
    s.push_str("<th>change</th><th>old</th><th></th><th>new</th><th>seen from</th></tr>");
    for e in events {
        let _ = write!(
            s,
            "<tr><td>{} <span class=\"small\">({} ago)</span></td>",
            timestamp(e.at_ms),
            human_age(now - e.at_ms)
        );
        if with_check {
            let _ = write!(
                s,
                "<td><a href=\"/checks/{}\">{}</a></td>",
                escape(&e.check_id),
                escape(&e.check_id)
            );
        }
        let _ = write!(
            s,
            "<td>{}</td><td>{}</td><td class=\"arrow\">→</td><td>{}</td><td>{}</td></tr>",
            escape(&e.title),
            kind::answer_set(&e.old).into_string(),
            kind::answer_set(&e.new).into_string(),
            escape(&e.regions.join(", "))
        );
    }
    s.push_str("</table>");
    s
}

/// A strip naming expired and soon-expiring served certificates.
async fn certificate_strip(ctl: &Controller, now: i64) -> Result<String, api::ApiError> {
    let certs = api::certificates::certificate_views(ctl, now).await?;
    let bad: Vec<_> = certs
        .iter()
        .filter(|c| c.status == "current" && c.level != "ok")
        .collect();
    if bad.is_empty() {
        return Ok(String::new());
    }
    let expired = bad.iter().filter(|c| c.level == "expired").count();
    let soonest = bad.iter().map(|c| c.days_left).min().unwrap_or(0);
    let text = if expired > 0 {
        format!(
            "{expired} served certificate{} EXPIRED; {} expiring",
            if expired == 1 { "" } else { "s" },
            bad.len() - expired
        )
    } else {
        format!(
            "{} served certificate{} expiring, the first in {soonest} day{}",
            bad.len(),
            if bad.len() == 1 { "" } else { "s" },
            if soonest == 1 { "" } else { "s" }
        )
    };
    let class = if expired > 0 { "banner" } else { "warn" };
    Ok(format!(
        "<div class=\"{class}\"><a style=\"color:inherit\" href=\"/certificates\">{text} — see certificates</a></div>"
    ))
}

async fn render_index(ctl: &Controller) -> Result<String, api::ApiError> {
    let now = now_ms();
    let checks = api::check_views(ctl, now).await?;
    let alerts = ctl.store().open_alerts().await?;
    let open: Vec<&AlertRow> = alerts.iter().collect();
    let probes = api::probe_views(ctl, now).await?;
    let regions = ctl.config().regions();
    let events = api::events::event_views(ctl, None, RECENT_CHANGES).await?;
    let body = format!(
        "{}{}<main><h2>Checks</h2>{}<h2 id=\"changes\">Recent changes</h2>{}{}</main>",
        banner(&open, now),
        certificate_strip(ctl, now).await?,
        grid(&checks, &regions),
        changes_table(&events, now, true),
        probes_table(&probes, now)
    );
    Ok(page("Outpost status", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

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
        let html = region_cell(&r);
        assert!(html.contains("class=\"STALE\""));
        assert!(html.contains(">STALE<"));
        assert!(html.contains("no result for 95s"));
        assert!(html.contains("1 of 2 backends failing"));
        assert!(!html.contains("<script>"));
    }
}
