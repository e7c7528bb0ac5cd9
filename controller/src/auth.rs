//! Who may read and change what over HTTP: one middleware ([`gate`]) over
//! the whole router decides every request from the route table
//! ([`crate::api::route`]) and the caller's credentials.
//!
//! Design note.
//! - **Credentials.** `Authorization: Bearer <token>` (`[[auth.tokens]]`:
//!   scripts, Prometheus) or the dashboard's session cookie
//!   (`[[auth.users]]`, [`session`]). Secrets are configured as argon2id
//!   hashes ([`password`]) or as `{ env | file }` references hashed in
//!   memory at start; none is ever logged or stored in clear.
//! - **Roles.** [`Role::Viewer`] < [`Role::Operator`] < [`Role::Admin`]. A
//!   route needs what its set declares ([`Access`]): public (no credentials),
//!   by method (GET/HEAD → viewer, any other method → operator) or at least
//!   a role (admin routes; logout needs any role). Anything not in the
//!   table (unknown paths) needs a viewer, so a 404 is never shown to
//!   strangers.
//! - **Answers.** No or a wrong credential: 401 (`WWW-Authenticate: Bearer`
//!   for the API and `/metrics`; the login form as the body of HTML
//!   pages, which posts back to the page). A role too low: 403. A
//!   state-changing request authenticated by the cookie without the
//!   session's CSRF token (form field `csrf` or header `x-csrf-token`), or
//!   sent cross-site (`Sec-Fetch-Site: cross-site`): 403. Bearer requests
//!   need no CSRF token (no ambient credential). Too many guesses from one
//!   address: 429 with `Retry-After`.
//! - **Cost.** A token from `{ env | file }` is found by its SHA-256; an
//!   argon2 token is verified once (≈20 ms, at most
//!   [`password::CONCURRENT_VERIFICATIONS`] at a time, after the per-address
//!   guess limit of [`ratelimit`]) and then remembered by its SHA-256 for as
//!   long as the config still holds the same hash (a reload that removes or
//!   rotates it revokes it at once).
//! - **Open mode.** `server.allow_unauthenticated = true` serves callers
//!   without credentials as the viewer `anonymous` (logged loudly at start);
//!   credentials still work and still are needed to change anything.
//! - **State.** Sessions are rows ([`session`]); the token cache, the guess
//!   limiter and the verifier's permits are memory: a restart re-verifies
//!   each token once and starts with full guess buckets.

pub mod config;
pub mod password;
pub mod ratelimit;
pub mod session;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Json,
    body::Body,
    extract::{FromRequestParts, MatchedPath, OptionalFromRequestParts, Request, State},
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::Controller;
use config::TokenCheck;

/// What a caller may do, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything: pages, API, metrics.
    Viewer,
    /// Read, and change alert state (silences, acknowledgements).
    Operator,
    /// Everything, including config-like actions (reload, sessions).
    Admin,
}

impl Role {
    /// `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(()),
        }
    }
}

/// How the caller authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Via {
    /// An API token.
    Token,
    /// The dashboard session cookie; forms must carry `csrf`.
    Session {
        /// The session's CSRF token.
        csrf: String,
    },
    /// No credentials, served because `server.allow_unauthenticated = true`.
    Anonymous,
}

impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Via {
    /// `token`, `session` or `anonymous`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Session { .. } => "session",
            Via::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller of a request. Handlers take it as an extractor
/// (`caller: Caller`) for audit fields such as a silence's `created_by`;
/// `Option<Caller>` on public routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token name, user name, or `anonymous`.
    pub name: String,
    /// Role.
    pub role: Role,
    /// How it authenticated.
    pub via: Via,
}

impl Caller {
    /// The session's CSRF token (`None` for token and anonymous callers,
    /// whose requests need none).
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Via::Session { csrf } => Some(csrf),
            _ => None,
        }
    }

    fn anonymous() -> Caller {
        Caller {
            name: "anonymous".into(),
            role: Role::Viewer,
            via: Via::Anonymous,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthorized(false, "authentication required"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health, heartbeat pings, login, the public status page.
    Public,
    /// GET/HEAD/OPTIONS → viewer; any other method → operator.
    ByMethod,
    /// At least this role, whatever the method.
    AtLeast(Role),
}

/// True for methods that change nothing.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Access {
    /// The role a request with `method` needs; `None` when public.
    pub fn required(self, method: &Method) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::ByMethod if is_safe(method) => Some(Role::Viewer),
            Access::ByMethod => Some(Role::Operator),
            Access::AtLeast(r) => Some(r),
        }
    }
}

/// The client's address, inserted by the HTTP server into each request
/// (absent when a test calls the router directly).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))))
    }
}

/// `N` bytes from the system CSPRNG (ring's).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b)?;
    Ok(b)
}

/// The in-memory key of an API token: SHA-256 with a domain prefix.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        &[b"outpost-api-token\0".as_slice(), token].concat(),
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A short hex fingerprint (first 8 bytes of SHA-256) of non-secret-bearing
/// material such as a password hash string.
pub fn fingerprint(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tokens remembered after one argon2 verification, at most.
pub const TOKEN_CACHE_SIZE: usize = 1024;

/// The runtime half of auth (one per controller).
#[derive(Debug, Default)]
pub struct AuthState {
    /// SHA-256 of a verified token → (token name, fingerprint of its hash).
    verified: Mutex<HashMap<[u8; 32], (String, String)>>,
    /// Argon2 on blocking threads, bounded.
    pub verifier: password::Verifier,
    /// Password and token guesses per client address.
    pub limiter: ratelimit::Limiter,
}

/// Why a bearer token was not accepted.
enum TokenError {
    Unknown,
    TooMany(std::time::Duration),
}

impl AuthState {
    async fn verify_token(
        &self,
        ctl: &Controller,
        token: &str,
        peer: IpAddr,
    ) -> Result<Caller, TokenError> {
        let cfg = ctl.config();
        let digest = token_digest(token.as_bytes());
        let caller = |t: &config::TokenDef| Caller {
            name: t.name.clone(),
            role: t.role,
            via: Via::Token,
        };
        if let Some(t) = cfg
            .auth
            .tokens
            .iter()
            .find(|t| t.check == TokenCheck::Digest(digest))
        {
            return Ok(caller(t));
        }
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
            .cloned();
        if let Some((name, fp)) = remembered {
            let still = cfg.auth.tokens.iter().find(|t| {
                t.name == name
                    && matches!(&t.check, TokenCheck::Argon2(h) if fingerprint(h.as_bytes()) == fp)
            });
            match still {
                Some(t) => return Ok(caller(t)),
                None => {
                    self.verified
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&digest);
                }
            }
        }
        let argon: Vec<(usize, String)> = cfg
            .auth
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.check {
                TokenCheck::Argon2(h) => Some((i, h.clone())),
                TokenCheck::Digest(_) => None,
            })
            .collect();
        if argon.is_empty() {
            return Err(TokenError::Unknown);
        }
        self.limiter
            .try_take(peer, Instant::now())
            .map_err(TokenError::TooMany)?;
        let hashes = argon.iter().map(|(_, h)| h.clone()).collect();
        let Some(k) = self.verifier.find(token.as_bytes().to_vec(), hashes).await else {
            return Err(TokenError::Unknown);
        };
        let t = &cfg.auth.tokens[argon[k].0];
        if let TokenCheck::Argon2(h) = &t.check {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= TOKEN_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(digest, (t.name.clone(), fingerprint(h.as_bytes())));
        }
        Ok(caller(t))
    }
}

/// What the gate needs besides the controller: the route table, and
/// whether the listener speaks HTTPS (cookie name and `Secure`).
#[derive(Debug, Clone)]
pub struct Gate {
    ctl: Controller,
    table: Arc<HashMap<(Method, &'static str), Access>>,
    secure: bool,
}

impl Gate {
    /// A gate over `table` (method, path as registered, access).
    pub fn new(ctl: Controller, table: &[crate::api::route::RouteInfo], secure: bool) -> Gate {
        let table = table
            .iter()
            .map(|r| ((r.method.clone(), r.path), r.access))
            .collect();
        Gate {
            ctl,
            table: Arc::new(table),
            secure,
        }
    }

    fn access(&self, method: &Method, path: Option<&str>) -> Access {
        let Some(path) = path else {
            return Access::ByMethod;
        };
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.table
            .iter()
            .find(|((m, p), _)| m == method && *p == path)
            .map(|(_, a)| *a)
            .or_else(|| {
                // Another method on a known path (405 from the router):
                // the strictest access any method of the path has.
                self.table
                    .iter()
                    .filter(|((_, p), _)| *p == path)
                    .map(|(_, a)| *a)
                    .max_by_key(|a| a.required(&Method::POST))
            })
            .unwrap_or(Access::ByMethod)
    }
}

/// JSON error body of the API.
#[derive(Serialize)]
struct Denied<'a> {
    error: &'a str,
}

fn wants_html(path: &str) -> bool {
    !(path.starts_with("/api/") || path == "/metrics")
}

fn unauthorized(html: bool, why: &str) -> Response {
    unauthorized_at(html, why, "/")
}

fn unauthorized_at(html: bool, why: &str, next: &str) -> Response {
    if html {
        let page = crate::dashboard::login::form_page(next, Some(why));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let mut r = (StatusCode::UNAUTHORIZED, Json(Denied { error: why })).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"outpost\""),
    );
    r
}

fn forbidden(html: bool, why: &str) -> Response {
    if html {
        return crate::dashboard::message_page(StatusCode::FORBIDDEN, "Outpost: forbidden", why);
    }
    (StatusCode::FORBIDDEN, Json(Denied { error: why })).into_response()
}

/// A 429 with `Retry-After`.
pub fn too_many(html: bool, retry: std::time::Duration) -> Response {
    let why = format!(
        "too many failed attempts from this address: try again in {} s",
        retry.as_secs().max(1)
    );
    let mut r = if html {
        crate::dashboard::message_page(StatusCode::TOO_MANY_REQUESTS, "Outpost: slow down", &why)
    } else {
        (StatusCode::TOO_MANY_REQUESTS, Json(Denied { error: &why })).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Largest form body the gate reads to find a `csrf` field.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

fn bearer(parts: &Parts) -> Option<Result<&str, ()>> {
    let v = parts.headers.get(header::AUTHORIZATION)?;
    let text = v.to_str().map_err(|_| ());
    Some(text.and_then(|t| {
        let (scheme, rest) = t.split_once(' ').ok_or(())?;
        let rest = rest.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty())
            .then_some(rest)
            .ok_or(())
    }))
}

/// The CSRF token of a state-changing request: the header, or the `csrf`
/// field of a form body (read, then put back for the handler).
async fn presented_csrf(req: Request) -> Result<(Request, Option<String>), Response> {
    if let Some(v) = req.headers().get("x-csrf-token") {
        let t = v.to_str().ok().map(str::to_owned);
        return Ok((req, t));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((req, None));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response())?;
    let token = form_urlencoded_value(&bytes, "csrf");
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

fn form_urlencoded_value(body: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The middleware: identifies the caller, enforces the route's access and
/// CSRF, and hands the [`Caller`] to the handler.
pub async fn gate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let access = gate.access(req.method(), path.as_deref());
    let method = req.method().clone();
    let Some(needed) = access.required(&method) else {
        return next.run(req).await;
    };
    let html = wants_html(req.uri().path());
    let next_url = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let peer = req
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let (mut parts, body) = req.into_parts();
    let ctl = &gate.ctl;
    let caller = match bearer(&parts) {
        Some(Ok(token)) => match ctl.auth().verify_token(ctl, token, peer).await {
            Ok(c) => c,
            Err(TokenError::TooMany(retry)) => return too_many(html, retry),
            Err(TokenError::Unknown) => {
                tracing::warn!(peer = %peer, path = %parts.uri.path(), "request with an unknown API token refused");
                let mut r = unauthorized_at(html, "invalid API token", &next_url);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"outpost\", error=\"invalid_token\""),
                );
                return r;
            }
        },
        Some(Err(())) => {
            return unauthorized_at(
                html,
                "malformed Authorization header: send `Authorization: Bearer <token>`",
                &next_url,
            );
        }
        None => match session::from_headers(&parts.headers, gate.secure) {
            Some(id) => match session::lookup(ctl, &id).await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    let mut r =
                        unauthorized_at(html, "your session has ended: log in again", &next_url);
                    r.headers_mut()
                        .append(header::SET_COOKIE, session::clear_cookie(gate.secure));
                    return r;
                }
                Err(e) => return crate::api::ApiError::from(e).into_response(),
            },
            None if ctl.config().allow_unauthenticated => Caller::anonymous(),
            None => {
                return unauthorized_at(
                    html,
                    "authentication required: log in, or send `Authorization: Bearer <token>`",
                    &next_url,
                );
            }
        },
    };
    if caller.role < needed {
        let why = format!(
            "{} {:?} has role {}; this needs {needed}",
            caller.via.as_str(),
            caller.name,
            caller.role
        );
        return forbidden(html, &why);
    }
    let mut req = Request::from_parts(
        {
            parts.extensions.insert(caller.clone());
            parts
        },
        body,
    );
    if !is_safe(&method)
        && let Some(expected) = caller.csrf()
    {
        let cross_site = req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        if cross_site {
            return forbidden(html, "cross-site request refused");
        }
        let (r, presented) = match presented_csrf(req).await {
            Ok(x) => x,
            Err(resp) => return resp,
        };
        if !presented.is_some_and(|p| session::csrf_matches(expected, &p)) {
            tracing::warn!(user = %caller.name, path = %r.uri().path(), "state-changing request without a valid CSRF token refused");
            return forbidden(
                html,
                "missing or invalid CSRF token: reload the page and submit the form again",
            );
        }
        req = r;
    }
    next.run(req).await
}
