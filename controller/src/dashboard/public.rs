//! The opt-in public status page (`GET /status`, no credentials): the
//! checks listed in `[public_status] checks` with their overall state word,
//! their 90-hour status bar and 24 h / 7 d / 30 d uptime (from the history
//! summaries, [`super::history`]), and the operator's incident notes
//! (`notes`, shown as written) — no target URL, no failure message, no
//! region, no probe, since anyone may read it. Off (404) unless
//! `[public_status] enabled = true`.
//!
//! ```toml
//! [public_status]
//! enabled = true
//! title = "Example Corp status"
//! checks = ["api-*", "web"]
//! notes = ["2026-11-30 14:02 UTC: card payments slow in Europe, fixed 14:40"]
//! ```

use std::collections::HashSet;

use axum::{
    extract::State,
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use maud::{DOCTYPE, PreEscaped, html};
use outpost_probe::config::Problems;
use serde::Deserialize;

use crate::{Controller, alerting::route::glob_match, store::now_ms};

/// Default title of the public page.
pub const DEFAULT_TITLE: &str = "Service status";

/// `[public_status]` as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPublicStatus {
    /// Serve `GET /status` to anyone. Default `false`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Check ids or globs with `*` shown on it; each must match a check.
    /// Default: none (an enabled page lists nothing until checks are named).
    #[serde(default)]
    pub checks: Option<Vec<String>>,
    /// Page title. Default `"Service status"`, at most 100 characters.
    #[serde(default)]
    pub title: Option<String>,
    /// Incident notes shown on the page as written, in this order (newest
    /// first, by convention), each at most 500 characters. Default: none.
    #[serde(default)]
    pub notes: Option<Vec<String>>,
}

/// Validated `[public_status]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicStatus {
    /// Served.
    pub enabled: bool,
    /// Globs of the checks shown.
    pub checks: Vec<String>,
    /// Title.
    pub title: String,
    /// Incident notes.
    pub notes: Vec<String>,
}

impl Default for PublicStatus {
    fn default() -> Self {
        PublicStatus {
            enabled: false,
            checks: Vec::new(),
            title: DEFAULT_TITLE.to_owned(),
            notes: Vec::new(),
        }
    }
}

/// Validates `[public_status]` against the configured check ids.
pub fn validate(
    raw: Option<&RawPublicStatus>,
    check_ids: &HashSet<&str>,
    p: &mut Problems,
) -> PublicStatus {
    let Some(raw) = raw else {
        return PublicStatus::default();
    };
    let checks = raw.checks.clone().unwrap_or_default();
    for (i, g) in checks.iter().enumerate() {
        if !check_ids.iter().any(|id| glob_match(g, id)) {
            p.push(
                format!("public_status.checks[{i}]"),
                format!("{g:?} matches no configured check"),
            );
        }
    }
    let title = raw
        .title
        .clone()
        .unwrap_or_else(|| DEFAULT_TITLE.to_owned());
    if title.chars().count() > 100 {
        p.push("public_status.title", "title is longer than 100 characters");
    }
    let notes = raw.notes.clone().unwrap_or_default();
    for (i, n) in notes.iter().enumerate() {
        if n.chars().count() > 500 {
            p.push(
                format!("public_status.notes[{i}]"),
                "a note is longer than 500 characters",
            );
        }
    }
    PublicStatus {
        enabled: raw.enabled.unwrap_or(false),
        checks,
        title,
        notes,
    }
}

/// `GET /status`.
pub async fn page_handler(State(ctl): State<Controller>) -> Response {
    let cfg = ctl.config();
    let public = &cfg.public_status;
    if !public.enabled {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let views = match crate::api::check_views(&ctl, ctl.now_ms()).await {
        Ok(v) => v,
        Err(e) => return super::error_page(e.into()),
    };
    let now = ctl.now_ms();
    let shown: Vec<_> = views
        .iter()
        .filter(|c| public.checks.iter().any(|g| glob_match(g, &c.id)))
        .collect();
    let ids: Vec<&str> = shown.iter().map(|c| c.id.as_str()).collect();
    let history =
        match super::history::overview(&ctl, crate::history::Resolution::Hour, now, &ids).await {
            Ok(h) => h,
            Err(e) => return super::error_page(e.into()),
        };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="30";
                meta name="viewport" content="width=device-width";
                title { (public.title) }
                // Our own constant: no text from outside.
                style { (PreEscaped(super::STYLE)) }
            }
            body {
                header { h1 { (public.title) } }
                main {
                    table {
                        tr { th { "service" } th { "state" } th { "last 90 hours" } }
                        @for c in &shown {
                            tr {
                                td { (c.id) }
                                td class=(c.state.css_class()) { span.word { (c.state.as_str()) } }
                                @if let Some(o) = history.get(&c.id) {
                                    td.hist {
                                        (super::history::status_bar(&o.bar, o.bar_resolution))
                                        div.small {
                                            "uptime 24 h " b { (super::history::percent(&o.uptime[0])) }
                                            " · 7 d " b { (super::history::percent(&o.uptime[1])) }
                                            " · 30 d " b { (super::history::percent(&o.uptime[2])) }
                                        }
                                    }
                                } @else {
                                    td.muted { "no history yet" }
                                }
                            }
                        }
                    }
                    @if !public.notes.is_empty() {
                        h2 { "Incident notes" }
                        ul.notes {
                            @for n in &public.notes { li { (n) } }
                        }
                    }
                    p.small.muted { "Updated " (crate::format::timestamp(now_ms())) ", refreshes every 30 s." }
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}
