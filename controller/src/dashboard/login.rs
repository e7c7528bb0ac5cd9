//! The login form (`GET /login`, `POST /login`) and logout (`GET /logout`
//! asks, `POST /logout` ends the session). The form is also the body of
//! every 401 an HTML page answers ([`form_page`]), so a browser that opens
//! any page without a session sees it in place and comes back after login.
//!
//! A failed login says only "wrong user name or password" and costs the same
//! time whether the name exists or not (an unknown name is checked against a
//! decoy hash); attempts are limited per client address
//! ([`crate::auth::ratelimit`]), and a login posted from another site
//! (`Sec-Fetch-Site: cross-site`) is refused.

use std::time::Instant;

use axum::{
    Form,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    Controller,
    auth::{self, Caller, ClientAddr, password, session},
};

/// Longest user name and password the form accepts.
pub const MAX_FIELD: usize = 1024;

/// Where to go after login: a local path only (no `//host`, no scheme), else `/`.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local && !next.starts_with("/login") {
        next
    } else {
        "/"
    }
}

fn form(next: &str, error: Option<&str>) -> Markup {
    html! {
        main {
            h2 { "Sign in" }
            @if let Some(e) = error { p.warn role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(safe_next(next));
                p { label { "User name " input name="user" autocomplete="username" required autofocus; } }
                p { label { "Password " input type="password" name="password" autocomplete="current-password" required; } }
                p { button type="submit" { "Sign in" } }
            }
            p.small.muted { "Accounts are [[auth.users]] in the controller's config (outpost-controller hash-password)." }
        }
    }
}

/// The login page (no auto-refresh), with an optional message.
pub fn form_page(next: &str, error: Option<&str>) -> Html<String> {
    Html(super::page_with("Outpost: sign in", form(next, error), false).into_string())
}

/// `?next=` of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    /// Where to go after login.
    #[serde(default)]
    pub next: Option<String>,
}

/// `GET /login`.
pub async fn login_page(Query(q): Query<NextQuery>) -> Html<String> {
    form_page(q.next.as_deref().unwrap_or("/"), None)
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    /// User name.
    #[serde(default)]
    pub user: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// Where to go after login.
    #[serde(default)]
    pub next: String,
}

fn secure(ctl: &Controller) -> bool {
    ctl.config().http_tls.is_some()
}

/// `POST /login`.
pub async fn login(
    State(ctl): State<Controller>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return super::message_page(
            StatusCode::FORBIDDEN,
            "Outpost: forbidden",
            "cross-site login refused",
        );
    }
    if let Err(retry) = ctl.auth().limiter.try_take(peer.ip(), Instant::now()) {
        tracing::warn!(peer = %peer.ip(), "dashboard login rate limited");
        return auth::too_many(true, retry);
    }
    let cfg = ctl.config();
    let user = (f.user.len() <= MAX_FIELD && f.password.len() <= MAX_FIELD)
        .then(|| cfg.auth.user(&f.user))
        .flatten();
    let hash = user.map_or_else(|| password::decoy().to_owned(), |u| u.password_hash.clone());
    let matched = ctl
        .auth()
        .verifier
        .find(f.password.into_bytes(), vec![hash])
        .await
        .is_some();
    let Some(user) = user.filter(|_| matched) else {
        tracing::warn!(peer = %peer.ip(), "dashboard login failed");
        let mut r = (
            StatusCode::UNAUTHORIZED,
            form_page(&f.next, Some("Wrong user name or password.")),
        )
            .into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    };
    let id = match session::create(&ctl, user).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a dashboard session");
            return super::message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Outpost: error",
                "cannot start a session (store unavailable)",
            );
        }
    };
    tracing::info!(user = %user.name, role = %user.role, peer = %peer.ip(), "dashboard login");
    let mut r = (StatusCode::SEE_OTHER, "").into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(safe_next(&f.next)).unwrap_or(HeaderValue::from_static("/")),
    );
    h.insert(
        header::SET_COOKIE,
        session::set_cookie(&id, secure(&ctl), cfg.auth.session_lifetime.as_secs()),
    );
    r
}

/// `GET /logout`: a button, since signing out changes state (POST + CSRF).
pub async fn logout_page(caller: Caller) -> Html<String> {
    let body = html! {
        main {
            h2 { "Sign out" }
            p { "Signed in as " b { (caller.name) } " (" (caller.role) ")." }
            form method="post" action="/logout" {
                (super::csrf_field(&caller))
                button type="submit" { "Sign out" }
            }
        }
    };
    Html(super::page_with("Outpost: sign out", body, false).into_string())
}

/// `POST /logout`: ends the session and removes the cookie.
pub async fn logout(State(ctl): State<Controller>, caller: Caller, headers: HeaderMap) -> Response {
    let secure = secure(&ctl);
    if let Some(id) = session::from_headers(&headers, secure)
        && let Err(e) = session::end(&ctl, &id).await
    {
        tracing::error!(error = %e, "cannot end a dashboard session");
    }
    tracing::info!(user = %caller.name, "dashboard logout");
    let mut r = (StatusCode::SEE_OTHER, "").into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/login"));
    r.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie(secure));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        for (given, kept) in [
            ("/checks/api", "/checks/api"),
            ("/?x=1", "/?x=1"),
            ("//evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("", "/"),
            ("/login?next=/x", "/"),
            ("/a\r\nSet-Cookie: x", "/"),
        ] {
            assert_eq!(safe_next(given), kept, "{given:?}");
        }
    }
}
