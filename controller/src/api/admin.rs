//! Who am I, and the admin's routes: dashboard sessions and config reload.
//!
//! - `GET /api/v1/whoami` (viewer): the caller's name, role and how it
//!   authenticated — to check a token.
//! - `GET /api/v1/sessions` (admin): open dashboard sessions (user, login,
//!   last use, end; never an id).
//! - `DELETE /api/v1/sessions/{user}` (admin): ends every session of a user.
//! - `POST /api/v1/reload` (admin): re-reads the config file, as SIGHUP does;
//!   on problems the running config stays and the problems are the answer.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::ApiError;
use crate::{Controller, auth::Caller};

/// `GET /api/v1/whoami`.
#[derive(Serialize)]
struct WhoAmI<'a> {
    name: &'a str,
    role: crate::auth::Role,
    via: &'static str,
}

pub(crate) async fn whoami(caller: Caller) -> Response {
    Json(WhoAmI {
        name: &caller.name,
        role: caller.role,
        via: caller.via.as_str(),
    })
    .into_response()
}

/// One session in `GET /api/v1/sessions`.
#[derive(Serialize)]
struct SessionView {
    user: String,
    created_ms: i64,
    last_seen_ms: i64,
    expires_ms: i64,
}

#[derive(Serialize)]
struct SessionsBody {
    sessions: Vec<SessionView>,
}

pub(crate) async fn list_sessions(State(ctl): State<Controller>) -> Result<Response, ApiError> {
    let rows = ctl.store().sessions().await?;
    Ok(Json(SessionsBody {
        sessions: rows
            .into_iter()
            .map(|r| SessionView {
                user: r.user_name,
                created_ms: r.created_ms,
                last_seen_ms: r.last_seen_ms,
                expires_ms: r.expires_ms,
            })
            .collect(),
    })
    .into_response())
}

#[derive(Serialize)]
struct Ended {
    ended: u64,
}

pub(crate) async fn end_sessions(
    State(ctl): State<Controller>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let ended = ctl.store().delete_sessions_of(&user).await?;
    tracing::info!(by = %caller.name, user = %user, ended, "dashboard sessions ended");
    Ok(Json(Ended { ended }).into_response())
}

#[derive(Serialize)]
struct Reloaded {
    probes: usize,
    checks: usize,
    tokens: usize,
    users: usize,
}

pub(crate) async fn reload(
    State(ctl): State<Controller>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let Some(path) = ctl.config().path.clone() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "the running config did not come from a file".into(),
        ));
    };
    let overrides = ctl.config().overrides.clone();
    match crate::config::load_with(&path, &overrides) {
        Ok(new) => {
            tracing::info!(by = %caller.name, "config reload requested over the API");
            let body = Reloaded {
                probes: new.probes.len(),
                checks: new.checks.len(),
                tokens: new.auth.tokens.len(),
                users: new.auth.users.len(),
            };
            ctl.reload(new);
            Ok(Json(body).into_response())
        }
        Err(e) => Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}
