//! `GET /api/v1/alerts/{id}`: one alert with its notifications, its
//! timeline, every change in order (`fired`, `updated`, `notified`,
//! `escalated`, `resolved`: [`Change`]), and every delivery attempt of its
//! notifications (time, sink, outcome, HTTP status, a bounded excerpt with
//! the sink's secrets scrubbed).
//!
//! ```json
//! { "alert": { "id": 7, "check_id": "api", "state": "open", "summary": "…", "regions": ["eu-west"],
//!              "code": "timeout", "notifications": [ … ], … },
//!   "timeline": [ { "at_ms": 1, "what": "fired", "regions": ["eu-west"], "code": "timeout",
//!                   "severity": "critical", "summary": "…" } ],
//!   "attempts": [ { "notification_id": 3, "sink": "pagerduty", "at_ms": 2, "outcome": "retry",
//!                   "status": 503, "excerpt": "status 503: …" } ] }
//! ```

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{AlertView, ApiError, alert_view};
use crate::{
    Controller,
    alerting::{Change, Severity, sink::AttemptOutcome},
    store::{AttemptRow, TimelineRow},
};

/// One delivery attempt.
#[derive(Serialize)]
struct AttemptView<'a> {
    notification_id: i64,
    sink: &'a str,
    at_ms: i64,
    outcome: AttemptOutcome,
    status: Option<i64>,
    excerpt: &'a str,
}

fn attempt_view(a: &AttemptRow) -> AttemptView<'_> {
    AttemptView {
        notification_id: a.notification_id,
        sink: &a.sink,
        at_ms: a.at_ms,
        outcome: a.outcome,
        status: a.status,
        excerpt: &a.excerpt,
    }
}

/// One timeline entry.
#[derive(Serialize)]
struct TimelineView<'a> {
    at_ms: i64,
    what: Change,
    regions: Vec<String>,
    code: &'a str,
    severity: Severity,
    summary: &'a str,
}

fn timeline_view(t: &TimelineRow) -> TimelineView<'_> {
    TimelineView {
        at_ms: t.at_ms,
        what: t.what,
        regions: serde_json::from_str(&t.regions_json).unwrap_or_default(),
        code: &t.code,
        severity: t.severity,
        summary: &t.summary,
    }
}

#[derive(Serialize)]
struct AlertBody<'a> {
    alert: AlertView<'a>,
    timeline: Vec<TimelineView<'a>>,
    attempts: Vec<AttemptView<'a>>,
}

/// `GET /api/v1/alerts/{id}`.
pub(super) async fn get_alert(
    State(ctl): State<Controller>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let Some(alert) = ctl.store().alert(id).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no alert with id {id}"),
        ));
    };
    let notifications = ctl.store().notifications_for_alert(id).await?;
    let timeline = ctl.store().alert_timeline(id).await?;
    let attempts = ctl.store().attempts_for_alert(id).await?;
    let body = AlertBody {
        alert: alert_view(&alert, &notifications),
        timeline: timeline.iter().map(timeline_view).collect(),
        attempts: attempts.iter().map(attempt_view).collect(),
    };
    Ok(Json(body).into_response())
}
