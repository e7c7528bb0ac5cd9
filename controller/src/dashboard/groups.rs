//! `/alert-groups/{id}`: one notification group of a `group_by` route
//! ([`crate::alerting::group`]) — its route, label values, dedup key and
//! sinks, its members (each linking to its check), its notifications and
//! every delivery attempt. Group notifications belong to no alert, so this
//! is where they are seen; the status page lists the open groups
//! ([`open_list`]). Same data as `GET /api/v1/alert-groups/{id}`
//! ([`crate::api::groups`]).

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};

use super::{error_page, page};
use crate::{
    Controller,
    alerting::{group::describe, sink::AttemptOutcome},
    api::{self, groups::GroupView},
    format::{self, timestamp},
    store::GroupRow,
};

pub(super) async fn page_handler(State(ctl): State<Controller>, Path(id): Path<i64>) -> Response {
    match api::groups::one(&ctl, id).await {
        Ok(g) => Html(render(&g, ctl.now_ms()).into_string()).into_response(),
        Err(e) => error_page(e),
    }
}

fn when(ms: Option<i64>, now: i64) -> Markup {
    html! {
        @match ms {
            None => { "—" }
            Some(t) => { (timestamp(t)) " " span.small { "(" (format::ms(now.saturating_sub(t))) " ago)" } }
        }
    }
}

fn outcome(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::Retry => "retry",
        AttemptOutcome::Rejected => "rejected",
        AttemptOutcome::GaveUp => "gave up",
    }
}

fn render(g: &GroupView, now: i64) -> Markup {
    let title = format!("Alert group {} ({})", g.id, g.route);
    let body = html! {
        main {
            p { a href="/" { "← status" } }
            h2 { (title) }
            table {
                tr { th { "State" } td { (g.state) } }
                tr { th { "Route" } td { (g.route) } }
                tr { th { "Group" } td { @if g.labels.is_empty() { "—" } @else { (describe(&g.labels)) } } }
                tr { th { "Dedup key" } td { code { (g.dedup_key) } } }
                tr { th { "Sinks" } td { @if g.sinks.is_empty() { "—" } @else { (g.sinks.join(", ")) } } }
                tr { th { "Opened" } td { (when(Some(g.opened_at_ms), now)) } }
                tr { th { "Last notified" } td { (when(g.notified_ms, now)) } }
                tr { th { "Resolved" } td { (when(g.resolved_at_ms, now)) } }
            }
            h3 { "Members (as last sent)" }
            @if g.members.is_empty() {
                p.small { "none sent yet" }
            } @else {
                table {
                    tr { th { "Check" } th { "Code" } }
                    @for m in &g.members {
                        tr { td { a href={ "/checks/" (m.check_id) } { (m.check_id) } } td { (m.code) } }
                    }
                }
            }
            h3 { "Notifications" }
            @if g.notifications.is_empty() {
                p.small { "none queued" }
            } @else {
                table {
                    tr { th { "Id" } th { "Queued" } th { "Sink" } th { "Action" } th { "State" } th { "Attempts" } th { "Last error" } }
                    @for n in &g.notifications {
                        tr {
                            td { (n.id) }
                            td { (timestamp(n.created_ms)) }
                            td { (n.sink) }
                            td { (n.action.as_str()) }
                            td { (n.state.as_str()) }
                            td { (n.attempts) }
                            td { (n.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            h3 { "Delivery attempts" }
            @if g.attempts.is_empty() {
                p.small { "none yet" }
            } @else {
                table {
                    tr { th { "When" } th { "Notification" } th { "Sink" } th { "Outcome" } th { "Status" } th { "Answer" } }
                    @for a in &g.attempts {
                        tr {
                            td { (timestamp(a.at_ms)) }
                            td { (a.notification_id) }
                            td { (a.sink) }
                            td { (outcome(a.outcome)) }
                            td { @if let Some(s) = a.status { (s) } }
                            td { (a.excerpt) }
                        }
                    }
                }
            }
        }
    };
    page(&title, body)
}

/// The status page's "Alert groups" list: one line per open group, linking
/// to its page; nothing when none is open.
pub(super) fn open_list(groups: &[GroupRow]) -> Markup {
    html! {
        @if !groups.is_empty() {
            h2 { "Alert groups" }
            ul {
                @for g in groups {
                    @let values: Vec<(String, String)> = serde_json::from_str(&g.group_key).unwrap_or_default();
                    @let members = serde_json::from_str::<BTreeMap<String, String>>(&g.sent_json).map(|m| m.len()).unwrap_or(0);
                    li {
                        a href={ "/alert-groups/" (g.id) } { (g.route) ": " (describe(&values)) }
                        " — " @if g.notified_ms.is_some() { (members) " checks sent" } @else { "waiting" }
                    }
                }
            }
        }
    }
}
