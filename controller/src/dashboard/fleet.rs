//! `/fleet`: every probe — connected or not, its state word, version,
//! last seen, results queued on it and dropped by it (by reason), and how
//! many checks its region is assigned. Clock offset is not shown: the
//! controller does not store the probe's heartbeat send time yet.

use axum::{
    extract::State,
    response::{Html, IntoResponse, Response},
};
use maud::html;

use super::{error_page, page};
use crate::{Controller, api, format};

pub(super) async fn page_handler(State(ctl): State<Controller>) -> Response {
    let now = ctl.now_ms();
    let probes = match api::probe_views(&ctl, now).await {
        Ok(p) => p,
        Err(e) => return error_page(e.into()),
    };
    let cfg = ctl.config();
    let body = html! {
        main {
            h2 { "Fleet" }
            table {
                tr {
                    th { "probe" } th { "region" } th { "state" } th { "connected" } th { "version" }
                    th { "last seen" } th { "queued results" } th { "dropped results" } th { "checks assigned" }
                }
                @for p in &probes {
                    tr data-probe=(p.name) {
                        td { (p.name) }
                        td { (p.region) }
                        td class=(p.state.css_class()) { span.word { (p.state.word()) } }
                        td { @if p.connected { "yes" } @else { "no" } }
                        td { @if p.version.is_empty() { span.muted { "unknown" } } @else { (p.version) } }
                        td { @match p.last_seen_ms {
                            Some(t) => { (format::timestamp(t)) span.small { " (" (format::ms(now - t)) " ago)" } }
                            None => { "never" }
                        } }
                        td data-queued=(p.queued_results) { (p.queued_results) }
                        td data-dropped=(p.dropped_results) {
                            (p.dropped_results)
                            @for (reason, n) in &p.dropped_by_reason { span.small { " " (n) " " (reason) } }
                        }
                        td { (cfg.checks_for_region(&p.region).count()) }
                    }
                }
            }
        }
    };
    Html(page("Outpost: fleet", body).into_string()).into_response()
}
