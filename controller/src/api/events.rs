//! `GET /api/v1/events?check=ID&limit=N`: DNS answer changes (see
//! [`crate::event`]), newest first.

use axum::{
    Json,
    extract::{Query, State},
};
use outpost_probe::check::dns::AnswerSet;
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::{
    Controller,
    certificate::rfc3339,
    event::{ChangeDetail, EventKind},
    store::{EventRow, StoreError},
};

/// Events listed when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most events listed.
pub const MAX_LIMIT: u32 = 500;

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this check's events.
    pub check: Option<String>,
    /// How many (default 50, at most 500).
    pub limit: Option<u32>,
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// Id.
    pub id: i64,
    /// `dns_change`.
    pub kind: EventKind,
    /// Check.
    pub check_id: String,
    /// When the first probe saw it, unix ms.
    pub at_ms: i64,
    /// The same, RFC 3339.
    pub at: String,
    /// One line: `app.example.com A: CNAME blue → green on udp://…`.
    pub title: String,
    /// Regions that saw this change (one event, however many regions).
    pub regions: Vec<String>,
    /// Probes that saw it.
    pub probes: Vec<String>,
    /// Resolver whose answer changed.
    pub resolver: Option<String>,
    /// Answer set before: `{rcode, cname_target, answers, fingerprint}`.
    pub old: AnswerSet,
    /// Answer set after.
    pub new: AnswerSet,
    /// Everything the probe reported (name, type, old TTL, times).
    pub detail: ChangeDetail,
}

/// The view of a stored event.
pub fn event_view(e: &EventRow) -> EventView {
    EventView {
        id: e.id,
        kind: e.kind,
        check_id: e.check_id.clone(),
        at_ms: e.at_ms,
        at: rfc3339(e.at_ms),
        title: e.title.clone(),
        regions: e.regions.clone(),
        probes: e.probes.clone(),
        resolver: Some(e.detail.resolver.clone()).filter(|r| !r.is_empty()),
        old: e.detail.old.clone(),
        new: e.detail.new.clone(),
        detail: e.detail.clone(),
    }
}

/// The newest events, of one check or all.
pub async fn event_views(
    ctl: &Controller,
    check: Option<&str>,
    limit: u32,
) -> Result<Vec<EventView>, StoreError> {
    let rows = ctl.store().events(check, limit.min(MAX_LIMIT)).await?;
    Ok(rows.iter().map(event_view).collect())
}

/// `GET /api/v1/events`.
#[derive(Serialize)]
pub(super) struct EventsBody {
    events: Vec<EventView>,
}

pub(super) async fn list_events(
    State(ctl): State<Controller>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsBody>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let events = event_views(&ctl, q.check.as_deref(), limit).await?;
    Ok(Json(EventsBody { events }))
}
