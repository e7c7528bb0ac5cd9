//! The server-rendered status page: `/` (checks × regions grid, open-alert
//! banner) and `/checks/{id}` (per-region state and recent results).
//!
//! Built so the states that matter cannot be missed (the IOT incident: stale
//! data shown as a faint grey border for 17 hours): FAILING is a solid red
//! cell with the bold word, STALE a solid amber cell with the word and the
//! age ("no result for 95s"). No external assets, every text escaped, the
//! page refreshes itself every 5 s.

use std::fmt::Write;

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    Controller,
    api::{self, CheckView, RegionView},
    store::{AlertRow, ResultRow, now_ms},
};

/// Routes of the page (merged into [`api::router`]).
pub fn routes() -> Router<Controller> {
    Router::new()
        .route("/", get(index))
        .route("/checks/{id}", get(detail))
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

/// `95s`, `12m`, `3h`, `2d`.
pub fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.replace_millisecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
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
.word{font-size:15px;letter-spacing:.5px}code{font-size:12px}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head>\
         <body><header><h1><a href=\"/\">Outpost</a></h1><span class=\"meta\">{} · updated {} · refreshes every 5s</span></header>{body}</body></html>",
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
            Some(_) if a.check_id.is_empty() => "/#probes".to_owned(),
            _ => format!("/checks/{}", escape(&a.check_id)),
        };
        let _ = write!(
            s,
            "<li><a style=\"color:#fff\" href=\"{href}\">{}</a> <span style=\"font-weight:normal\">(open for {}, {})</span></li>",
            escape(&a.summary),
            human_age(now - a.opened_at_ms),
            escape(&a.severity),
        );
    }
    s.push_str("</ul></div>");
    s
}

fn region_cell(r: &RegionView) -> String {
    let detail = match r.state {
        "STALE" if r.reason == Some(api::REASON_PROBE_OFFLINE) => format!(
            "probe offline · last result {} ago",
            human_age(r.age_ms.unwrap_or(0))
        ),
        "STALE" => format!("no result for {}", human_age(r.age_ms.unwrap_or(0))),
        "UNKNOWN" => "no result yet".to_owned(),
        "FAILING" => format!(
            "{} · {} ago",
            escape(r.code.as_deref().unwrap_or("failed")),
            human_age(r.age_ms.unwrap_or(0))
        ),
        _ => format!("{} ago", human_age(r.age_ms.unwrap_or(0))),
    };
    let title = r.message.as_deref().map(escape).unwrap_or_default();
    format!(
        "<td class=\"{}\" title=\"{title}\"><span class=\"word\">{}</span><div class=\"small\">{detail}</div></td>",
        r.state, r.state
    )
}

fn grid(checks: &[CheckView], regions: &[String]) -> String {
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
            c.state,
            c.state,
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
        let class = match p.state {
            "fresh" => "OK",
            "offline" => "FAILING",
            _ => "STALE",
        };
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
            p.state.to_ascii_uppercase(),
            p.queued_results,
            escape(&p.version)
        );
    }
    s.push_str("</table>");
    s
}

fn error_page(e: api::ApiError) -> Response {
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

async fn render_index(ctl: &Controller) -> Result<String, api::ApiError> {
    let now = now_ms();
    let checks = api::check_views(ctl, now).await?;
    let alerts = ctl.store().open_alerts().await?;
    let open: Vec<&AlertRow> = alerts.iter().collect();
    let probes = api::probe_views(ctl, now).await?;
    let regions = ctl.config().regions();
    let body = format!(
        "{}<main><h2>Checks</h2>{}{}</main>",
        banner(&open, now),
        grid(&checks, &regions),
        probes_table(&probes, now)
    );
    Ok(page("Outpost status", &body))
}

async fn detail(State(ctl): State<Controller>, Path(id): Path<String>) -> Response {
    let now = now_ms();
    match api::check_detail(&ctl, &id, now).await {
        Ok(Some((view, results))) => Html(render_detail(&view, &results, now)).into_response(),
        Ok(None) => error_page(api::ApiError(
            StatusCode::NOT_FOUND,
            format!("no check with id {id:?}"),
        )),
        Err(e) => error_page(e.into()),
    }
}

fn render_detail(view: &CheckView, results: &[ResultRow], now: i64) -> String {
    let regions: Vec<String> = view.regions.iter().map(|r| r.region.clone()).collect();
    let mut body = format!(
        "<main><h2>{}</h2>{}",
        escape(&view.id),
        grid(std::slice::from_ref(view), &regions)
    );
    body.push_str("<h3>Regions</h3><table><tr><th>region</th><th>state</th><th>failures in a row</th><th>passes in a row</th><th>last message</th></tr>");
    for r in &view.regions {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.region),
            r.state,
            r.state,
            r.consecutive_failures,
            r.consecutive_passes,
            escape(r.message.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table><h3>Recent results</h3><table><tr><th>started</th><th>region</th><th>probe</th><th>result</th><th>code</th><th>message</th><th>total</th></tr>");
    for r in results {
        let (class, word) = if r.ok {
            ("OK", "OK")
        } else {
            ("FAILING", "FAIL")
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
    fn ages_are_short() {
        assert_eq!(human_age(95_000), "95s");
        assert_eq!(human_age(600_000), "10m");
        assert_eq!(human_age(3 * 3_600_000), "3h");
        assert_eq!(human_age(3 * 86_400_000), "3d");
    }

    #[test]
    fn stale_cell_shows_word_and_age() {
        let r = RegionView {
            region: "eu".into(),
            state: "STALE",
            reason: Some(api::REASON_NO_RECENT_RESULT),
            last_result_at_ms: Some(0),
            age_ms: Some(95_000),
            code: None,
            message: Some("<script>".into()),
            consecutive_failures: 0,
            consecutive_passes: 3,
            probe: None,
        };
        let html = region_cell(&r);
        assert!(html.contains("class=\"STALE\""));
        assert!(html.contains(">STALE<"));
        assert!(html.contains("no result for 95s"));
        assert!(!html.contains("<script>"));
    }
}
