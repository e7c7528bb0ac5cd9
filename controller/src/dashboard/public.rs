//! The opt-in public status page (`GET /status`, no credentials): the
//! checks listed in `[public_status] checks` with their overall state word
//! and nothing else — no target URL, no message, no region, no probe, since
//! anyone may read it. Off (404) unless `[public_status] enabled = true`.
//!
//! ```toml
//! [public_status]
//! enabled = true
//! title = "Example Corp status"
//! checks = ["api-*", "web"]
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
}

impl Default for PublicStatus {
    fn default() -> Self {
        PublicStatus {
            enabled: false,
            checks: Vec::new(),
            title: DEFAULT_TITLE.to_owned(),
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
    PublicStatus {
        enabled: raw.enabled.unwrap_or(false),
        checks,
        title,
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
    let shown: Vec<_> = views
        .iter()
        .filter(|c| public.checks.iter().any(|g| glob_match(g, &c.id)))
        .collect();
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
                        tr { th { "service" } th { "state" } }
                        @for c in &shown {
                            tr {
                                td { (c.id) }
                                td class=(c.state.css_class()) { span.word { (c.state.as_str()) } }
                            }
                        }
                    }
                    p.small.muted { "Updated " (crate::format::timestamp(now_ms())) ", refreshes every 30 s." }
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}
