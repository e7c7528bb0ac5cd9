//! Silences over the API ([`crate::alerting::silence`]).
//!
//! - `GET /api/v1/silences` (viewer): the config's silences, then the 100
//!   newest stored ones, each `active`, `pending` or `expired` now.
//! - `POST /api/v1/silences` (operator): `{"check": "api-*", "labels":
//!   {"team": "web"}, "comment": "db migration", "ends_at":
//!   "2030-01-01T06:00:00Z"}` or `"duration": "2h"` instead of `ends_at`;
//!   `starts_at` (RFC 3339) defaults to now. The creator is the caller
//!   (token or dashboard user). Answers 201 with the silence.
//! - `DELETE /api/v1/silences/{id}` (operator): ends it now (the record
//!   stays, `expired`); 404 when there is no such current silence.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::{
    Controller,
    alerting::silence::{self, SilenceDef},
    auth::Caller,
    store::{NewSilence, SilenceRow},
};

/// Stored silences listed.
pub const SILENCES_LISTED: u32 = 100;

/// Longest comment kept.
pub const MAX_COMMENT: usize = 500;

/// A silence asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Check id glob; default `*`.
    #[serde(default)]
    pub check: Option<String>,
    /// Label equalities.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Why. Required.
    pub comment: String,
    /// From (RFC 3339); default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// Until (RFC 3339); or `duration`.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// How long from the start (`"2h"`); or `ends_at`.
    #[serde(default)]
    pub duration: Option<String>,
}

/// Whether a silence holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Started, not ended.
    Active,
    /// Not started yet.
    Pending,
    /// Ended (or ended early).
    Expired,
}

impl SilenceState {
    fn at(starts: i64, ends: i64, now: i64) -> SilenceState {
        if now >= ends {
            SilenceState::Expired
        } else if now < starts {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// `active`, `pending`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
            SilenceState::Expired => "expired",
        }
    }
}

/// One silence as served.
#[derive(Debug, Clone, Serialize)]
pub struct SilenceView {
    /// Stored id; `null` for the config's.
    pub id: Option<i64>,
    /// As an alert names it: `silence 3`, `silence silences[0]`.
    pub name: String,
    /// `api` (API or dashboard) or `config`.
    pub source: &'static str,
    /// Check id glob.
    pub check: String,
    /// Label equalities.
    pub labels: BTreeMap<String, String>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// Made (unix ms); `null` for the config's.
    pub created_at_ms: Option<i64>,
    /// From (unix ms); `null` when always started.
    pub starts_at_ms: Option<i64>,
    /// Until (unix ms).
    pub ends_at_ms: i64,
    /// Now.
    pub state: SilenceState,
}

fn config_view(s: &SilenceDef, now: i64) -> SilenceView {
    SilenceView {
        id: None,
        name: format!("silence {}", s.name),
        source: "config",
        check: s.matcher.check.clone(),
        labels: s.matcher.labels.clone(),
        comment: s.comment.clone(),
        created_by: s.created_by.clone(),
        created_at_ms: None,
        starts_at_ms: (s.starts_at_ms != i64::MIN).then_some(s.starts_at_ms),
        ends_at_ms: s.ends_at_ms,
        state: SilenceState::at(s.starts_at_ms, s.ends_at_ms, now),
    }
}

fn row_view(r: &SilenceRow, now: i64) -> SilenceView {
    let m = silence::matcher_of(r);
    SilenceView {
        id: Some(r.id),
        name: format!("silence {}", r.id),
        source: "api",
        check: m.check,
        labels: m.labels,
        comment: r.comment.clone(),
        created_by: r.created_by.clone(),
        created_at_ms: Some(r.created_at_ms),
        starts_at_ms: Some(r.starts_at_ms),
        ends_at_ms: r.ends_at_ms,
        state: SilenceState::at(r.starts_at_ms, r.ends_at_ms, now),
    }
}

/// Every silence: the config's, then the newest stored ones.
pub async fn views(ctl: &Controller, now: i64) -> Result<Vec<SilenceView>, ApiError> {
    let cfg = ctl.config();
    let mut out: Vec<SilenceView> = cfg.silences.iter().map(|s| config_view(s, now)).collect();
    out.extend(
        ctl.store()
            .silences(SILENCES_LISTED)
            .await?
            .iter()
            .map(|r| row_view(r, now)),
    );
    Ok(out)
}

fn bad(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// Validates `req` and stores it as made by `caller` at `now`.
pub async fn create(
    ctl: &Controller,
    caller: &Caller,
    req: &SilenceRequest,
    now: i64,
) -> Result<SilenceView, ApiError> {
    let comment = req.comment.trim();
    if comment.is_empty() {
        return Err(bad(
            "comment must say why, e.g. \"database migration\"".into()
        ));
    }
    if comment.len() > MAX_COMMENT {
        return Err(bad(format!("comment must be at most {MAX_COMMENT} bytes")));
    }
    let check = req
        .check
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("*");
    let starts = match req.starts_at.as_deref() {
        None => now,
        Some(t) => silence::parse_time(t).ok_or_else(|| {
            bad(format!(
                "invalid starts_at {t:?}: use RFC 3339, e.g. \"2030-01-01T02:00:00Z\""
            ))
        })?,
    };
    let ends = match (req.ends_at.as_deref(), req.duration.as_deref()) {
        (Some(t), None) => silence::parse_time(t).ok_or_else(|| {
            bad(format!(
                "invalid ends_at {t:?}: use RFC 3339, e.g. \"2030-01-01T06:00:00Z\""
            ))
        })?,
        (None, Some(d)) => {
            let d = outpost_probe::config::duration::parse_duration(d)
                .map_err(|_| bad(format!("invalid duration {d:?}: e.g. \"2h\" or \"30m\"")))?;
            starts.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
        _ => {
            return Err(bad(
                "give ends_at (RFC 3339) or duration (e.g. \"2h\"), not both".into(),
            ));
        }
    };
    if ends <= starts.max(now) {
        return Err(bad(
            "the silence must end after its start and after now".into()
        ));
    }
    let new = NewSilence {
        check_glob: check.to_owned(),
        labels_json: serde_json::to_string(&req.labels).unwrap_or_else(|_| "{}".into()),
        created_by: caller.name.clone(),
        comment: comment.to_owned(),
        starts_at_ms: starts,
        ends_at_ms: ends,
    };
    let id = ctl.store().insert_silence(&new, now).await?;
    tracing::info!(silence = id, by = %caller.name, check = %check, labels = ?req.labels, ends_at_ms = ends, "silence created");
    wake(ctl);
    Ok(row_view(
        &SilenceRow {
            id,
            check_glob: new.check_glob,
            labels_json: new.labels_json,
            created_by: new.created_by,
            comment: new.comment,
            created_at_ms: now,
            starts_at_ms: starts,
            ends_at_ms: ends,
        },
        now,
    ))
}

/// Ends silence `id` now, as asked by `caller`. `false` when there is no
/// such current silence.
pub async fn end(ctl: &Controller, caller: &Caller, id: i64, now: i64) -> Result<bool, ApiError> {
    let ended = ctl.store().end_silence(id, now).await?;
    if ended {
        tracing::info!(silence = id, by = %caller.name, "silence ended");
        wake(ctl);
    }
    Ok(ended)
}

/// Asks the evaluator to look at every check now, so a new or ended
/// silence takes effect within one evaluation instead of the next tick.
fn wake(ctl: &Controller) {
    let checks = ctl
        .config()
        .checks
        .iter()
        .map(|c| c.raw.id.clone())
        .collect();
    ctl.request_evaluation(checks);
}

#[derive(Serialize)]
struct SilencesBody {
    silences: Vec<SilenceView>,
}

#[derive(Serialize)]
struct SilenceBody {
    silence: SilenceView,
}

#[derive(Serialize)]
struct EndedBody {
    ended: bool,
}

pub(crate) async fn list_silences(State(ctl): State<Controller>) -> Result<Response, ApiError> {
    let silences = views(&ctl, ctl.now_ms()).await?;
    Ok(Json(SilencesBody { silences }).into_response())
}

pub(crate) async fn create_silence(
    State(ctl): State<Controller>,
    caller: Caller,
    Json(req): Json<SilenceRequest>,
) -> Result<Response, ApiError> {
    let silence = create(&ctl, &caller, &req, ctl.now_ms()).await?;
    Ok((StatusCode::CREATED, Json(SilenceBody { silence })).into_response())
}

pub(crate) async fn delete_silence(
    State(ctl): State<Controller>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    if end(&ctl, &caller, id, ctl.now_ms()).await? {
        Ok(Json(EndedBody { ended: true }).into_response())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no current silence {id}"),
        ))
    }
}
