//! Alert groups over the API ([`crate::alerting::group`]): the one
//! notification per sink that a `group_by` route sends for many failing
//! checks. Group notifications belong to no alert, so they are shown here
//! (and on the dashboard's `/alert-groups/{id}`), not with an alert.
//!
//! - `GET /api/v1/alert-groups` (viewer): open groups (oldest first), then
//!   the [`GROUPS_LISTED`] most recently opened resolved ones, each with
//!   its members, route, group label values, dedup key, sinks, and its
//!   notifications with every delivery attempt.
//! - `GET /api/v1/alert-groups/{id}` (viewer): one group, same shape.
//!
//! Members are what the group's sinks were last told (check id and failure
//! code, `sent_json`): empty while the group waits out `group_wait`, and for
//! a resolved group the members of its last trigger.
//!
//! ```json
//! { "groups": [ { "id": 1, "route": "oncall", "state": "open", "labels": [["team", "pay"]],
//!                 "dedup_key": "outpost/group/oncall/…", "opened_at_ms": 1, "notified_ms": 2,
//!                 "resolved_at_ms": null, "sinks": ["pagerduty"],
//!                 "members": [ { "check_id": "api", "code": "timeout" } ],
//!                 "notifications": [ { "id": 3, "sink": "pagerduty", "action": "trigger",
//!                                      "state": "delivered", "attempts": 1, … } ],
//!                 "attempts": [ { "notification_id": 3, "sink": "pagerduty", "at_ms": 2,
//!                                 "outcome": "delivered", "status": 202, "excerpt": "…" } ] } ] }
//! ```

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::ApiError;
use crate::{
    Controller,
    alerting::{
        Action, AlertState,
        sink::{AttemptOutcome, NotificationState},
    },
    store::{AttemptRow, GroupNotificationRow, GroupRecord},
};

/// Resolved groups listed after the open ones.
pub const GROUPS_LISTED: u32 = 50;

/// A member: a check the group's sinks were told about.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Check id.
    pub check_id: String,
    /// Its failure code as sent.
    pub code: String,
}

/// A notification of a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupNotificationView {
    /// Id (attempts name it).
    pub id: i64,
    /// Sink.
    pub sink: String,
    /// Trigger (first or update) or resolve.
    pub action: Action,
    /// Pending, delivered or failed.
    pub state: NotificationState,
    /// Attempts so far.
    pub attempts: u32,
    /// Queued at.
    pub created_ms: i64,
    /// Next attempt (pending only).
    pub next_attempt_ms: Option<i64>,
    /// Last error.
    pub last_error: Option<String>,
    /// Delivered at.
    pub delivered_ms: Option<i64>,
}

/// A delivery attempt of a group notification.
#[derive(Debug, Clone, Serialize)]
pub struct GroupAttemptView {
    /// Notification.
    pub notification_id: i64,
    /// Sink.
    pub sink: String,
    /// When.
    pub at_ms: i64,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// HTTP status.
    pub status: Option<i64>,
    /// Bounded excerpt of the answer, secrets scrubbed.
    pub excerpt: String,
}

/// One group as served.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// Id.
    pub id: i64,
    /// Route name.
    pub route: String,
    /// `open` or `resolved`.
    pub state: AlertState,
    /// The `group_by` values, `[name, value]` in `group_by` order.
    pub labels: Vec<(String, String)>,
    /// Dedup key of every notification (PagerDuty incident, Opsgenie alias).
    pub dedup_key: String,
    /// Opened.
    pub opened_at_ms: i64,
    /// Last trigger queued; `null` while waiting (or closed unsent).
    pub notified_ms: Option<i64>,
    /// Resolved at.
    pub resolved_at_ms: Option<i64>,
    /// Sinks that got the first trigger.
    pub sinks: Vec<String>,
    /// Members as last sent.
    pub members: Vec<MemberView>,
    /// Its notifications, in queue order.
    pub notifications: Vec<GroupNotificationView>,
    /// Their delivery attempts, in order.
    pub attempts: Vec<GroupAttemptView>,
}

fn notification_view(n: GroupNotificationRow) -> GroupNotificationView {
    GroupNotificationView {
        id: n.id,
        next_attempt_ms: (n.state == NotificationState::Pending).then_some(n.next_attempt_ms),
        sink: n.sink,
        action: n.action,
        state: n.state,
        attempts: n.attempts,
        created_ms: n.created_ms,
        last_error: n.last_error,
        delivered_ms: n.delivered_ms,
    }
}

fn attempt_view(a: AttemptRow) -> GroupAttemptView {
    GroupAttemptView {
        notification_id: a.notification_id,
        sink: a.sink,
        at_ms: a.at_ms,
        outcome: a.outcome,
        status: a.status,
        excerpt: a.excerpt,
    }
}

/// Group `g` with its notifications and their attempts.
pub async fn view(ctl: &Controller, g: GroupRecord) -> Result<GroupView, ApiError> {
    let notifications = ctl.store().group_notifications(&g).await?;
    let attempts = ctl.store().group_attempts(&g).await?;
    let sent: BTreeMap<String, String> = serde_json::from_str(&g.sent_json).unwrap_or_default();
    Ok(GroupView {
        id: g.id,
        labels: serde_json::from_str(&g.group_key).unwrap_or_default(),
        sinks: serde_json::from_str(&g.sinks_json).unwrap_or_default(),
        members: sent
            .into_iter()
            .map(|(check_id, code)| MemberView { check_id, code })
            .collect(),
        notifications: notifications.into_iter().map(notification_view).collect(),
        attempts: attempts.into_iter().map(attempt_view).collect(),
        route: g.route,
        state: g.state,
        dedup_key: g.dedup_key,
        opened_at_ms: g.opened_at_ms,
        notified_ms: g.notified_ms,
        resolved_at_ms: g.resolved_at_ms,
    })
}

/// Open groups, then the recent resolved ones.
pub async fn views(ctl: &Controller) -> Result<Vec<GroupView>, ApiError> {
    let mut out = Vec::new();
    for g in ctl.store().alert_groups(GROUPS_LISTED).await? {
        out.push(view(ctl, g).await?);
    }
    Ok(out)
}

/// Group `id`; 404 when there is none.
pub async fn one(ctl: &Controller, id: i64) -> Result<GroupView, ApiError> {
    match ctl.store().alert_group(id).await? {
        Some(g) => view(ctl, g).await,
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no alert group with id {id}"),
        )),
    }
}

#[derive(Serialize)]
struct GroupsBody {
    groups: Vec<GroupView>,
}

#[derive(Serialize)]
struct GroupBody {
    group: GroupView,
}

pub(crate) async fn list_groups(State(ctl): State<Controller>) -> Result<Response, ApiError> {
    let groups = views(&ctl).await?;
    Ok(Json(GroupsBody { groups }).into_response())
}

pub(crate) async fn get_group(
    State(ctl): State<Controller>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let group = one(&ctl, id).await?;
    Ok(Json(GroupBody { group }).into_response())
}
