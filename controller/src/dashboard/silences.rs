//! `/silences`: every silence (config and stored, active first), the
//! maintenance windows with whether one is on now, and — for operators —
//! a form to make a silence and a button to end one. Both forms are POSTs
//! carrying the session's CSRF token ([`super::csrf_field`]); the auth
//! layer asks for the operator role on every POST.

use std::collections::BTreeMap;

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{csrf_field, error_page, message_page, page_with};
use crate::{
    Controller,
    api::silences::{self, SilenceRequest, SilenceState, SilenceView},
    auth::{Caller, Role},
    format::{self, timestamp},
};

pub(super) async fn page_handler(State(ctl): State<Controller>, caller: Caller) -> Response {
    let now = ctl.now_ms();
    match silences::views(&ctl, now).await {
        Ok(list) => Html(render(&ctl, &caller, &list, now).into_string()).into_response(),
        Err(e) => error_page(e),
    }
}

fn when(ms: Option<i64>, now: i64) -> Markup {
    html! {
        @match ms {
            None => { "—" }
            Some(t) => {
                (timestamp(t)) " "
                span.small {
                    "(" @if t > now { "in " (format::ms(t - now)) } @else { (format::ms(now - t)) " ago" } ")"
                }
            }
        }
    }
}

fn labels(l: &BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(ctl: &Controller, caller: &Caller, list: &[SilenceView], now: i64) -> Markup {
    let cfg = ctl.config();
    let operator = caller.role >= Role::Operator;
    let mut list: Vec<&SilenceView> = list.iter().collect();
    list.sort_by_key(|s| s.state != SilenceState::Active);
    let body = html! {
        main {
            h2 { "Silences" }
            p.small { "A silenced check's alert is recorded and shown, not paged; if it still fails when the silence ends, it pages then." }
            @if list.is_empty() {
                p.muted { "No silences." }
            } @else {
                table {
                    tr {
                        th { "silence" } th { "state" } th { "checks" } th { "labels" } th { "comment" }
                        th { "by" } th { "from" } th { "until" }
                        @if operator { th {} }
                    }
                    @for s in &list {
                        tr {
                            td { (s.name) div.small { (s.source) } }
                            td class=[(s.state == SilenceState::Active).then_some("warn")] { span.word { (s.state.as_str()) } }
                            td { code { (s.check) } }
                            td { (labels(&s.labels)) }
                            td { (s.comment) }
                            td { (s.created_by) }
                            td { (when(s.starts_at_ms, now)) }
                            td { (when(Some(s.ends_at_ms), now)) }
                            @if operator {
                                td {
                                    @if let (Some(id), false) = (s.id, s.state == SilenceState::Expired) {
                                        form method="post" action={ "/silences/" (id) "/end" } {
                                            (csrf_field(caller))
                                            button type="submit" { "End now" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Maintenance windows" }
            @if cfg.maintenance.is_empty() {
                p.muted { "No maintenance windows configured." }
            } @else {
                table {
                    tr { th { "window" } th { "now" } th { "checks" } th { "labels" } th { "starts" } th { "lasts" } }
                    @for m in &cfg.maintenance {
                        tr {
                            td { (m.name) }
                            @match m.active_until(now) {
                                Some(until) => { td.warn { span.word { "ON" } div.small { "until " (timestamp(until)) } } }
                                None => { td { "off" div.small { "next " (when(m.schedule.next_after(now), now)) } } }
                            }
                            td { code { (m.matcher.check) } }
                            td { (labels(&m.matcher.labels)) }
                            td { code { (m.cron) } " " (m.tz) }
                            td { (outpost_probe::config::Dur(m.duration)) }
                        }
                    }
                }
            }
            @if operator {
                h2 { "New silence" }
                form method="post" action="/silences" {
                    (csrf_field(caller))
                    p { label { "Checks (glob) " input name="check" value="*" required; } }
                    p { label { "Labels " input name="labels" placeholder="team=web, env=prod"; } }
                    p { label { "For " input name="duration" value="2h" required; } " (e.g. 30m, 2h, 1d)" }
                    p { label { "Comment " input name="comment" size="60" required; } }
                    button type="submit" { "Silence" }
                }
            }
        }
    };
    page_with("Outpost: silences", body, false)
}

/// The new-silence form.
#[derive(Debug, Deserialize)]
pub(super) struct SilenceForm {
    #[serde(default)]
    check: String,
    /// `k=v, k2=v2`.
    #[serde(default)]
    labels: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    comment: String,
}

fn see_silences() -> Response {
    let mut r = (StatusCode::SEE_OTHER, "").into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/silences"));
    r
}

pub(super) async fn create(
    State(ctl): State<Controller>,
    caller: Caller,
    Form(f): Form<SilenceForm>,
) -> Response {
    let mut labels = BTreeMap::new();
    for pair in f.labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                labels.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => {
                return message_page(
                    StatusCode::BAD_REQUEST,
                    "Outpost: silence refused",
                    &format!("invalid label matcher {pair:?}: write name=value, e.g. team=web"),
                );
            }
        }
    }
    let req = SilenceRequest {
        check: Some(f.check),
        labels,
        comment: f.comment,
        starts_at: None,
        ends_at: None,
        duration: Some(f.duration.trim().to_owned()),
    };
    match silences::create(&ctl, &caller, &req, ctl.now_ms()).await {
        Ok(_) => see_silences(),
        Err(e) if e.0 == StatusCode::BAD_REQUEST => {
            message_page(e.0, "Outpost: silence refused", &e.1)
        }
        Err(e) => error_page(e),
    }
}

pub(super) async fn end(
    State(ctl): State<Controller>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Response {
    match silences::end(&ctl, &caller, id, ctl.now_ms()).await {
        Ok(true) => see_silences(),
        Ok(false) => message_page(
            StatusCode::NOT_FOUND,
            "Outpost: no such silence",
            &format!("no current silence {id}"),
        ),
        Err(e) => error_page(e),
    }
}
