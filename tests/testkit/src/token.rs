//! [`TokenServer`]: a loopback OAuth2-ish authorization server and the resource
//! server it protects, issuing real signed JWTs and validating them like an API
//! gateway does (signature, `exp` against its own clock), so session tests
//! see genuine expiry rather than string comparison.
//!
//! Endpoints:
//! - `POST /oauth/token` (`application/x-www-form-urlencoded`):
//!   `grant_type=client_credentials` with the client authenticated by HTTP basic
//!   auth or `client_id`/`client_secret` in the form (optional `scope`,
//!   `audience`), and `grant_type=refresh_token` when refresh tokens are
//!   enabled (rotated: each refresh token works once). Answers
//!   `{access_token, token_type: "Bearer", expires_in, scope[, refresh_token]}`,
//!   or an RFC 6749 §5.2 error (`invalid_client` 401, `invalid_grant`,
//!   `unsupported_grant_type`, `invalid_request` 400).
//! - `POST /login` (JSON `{username, password}`): `{token, expires_at (RFC 3339),
//!   expires_in}` and `Set-Cookie: session=…; Max-Age=…; Path=/; HttpOnly`.
//! - `GET /api/data`: `Authorization: Bearer <jwt>` (HS256 signature, `exp`
//!   and revocation checked against the server's clock) or `Cookie: session=…`.
//!   200 `{ok, sub, served_at}`, else 401 with `WWW-Authenticate`.
//! - `POST /api/orders` (the same credentials; JSON `{item, quantity}`): 201
//!   `{id, item, quantity, owner, status}` with `Location: /api/orders/<id>`;
//!   `GET /api/orders/<id>`: the caller's order (404 unknown, 403 another
//!   subject's). What a multi-step flow logs in for, creates and reads back.
//!
//! Tokens are HS256 JWTs (`base64url(header).base64url(claims).base64url(hmac)`,
//! ring's HMAC-SHA256 with a random 256-bit key per server) with claims `iss`,
//! `sub`, `aud`, `scope`, `iat`, `exp`, `jti`, `gen`. `iat`/`exp` are NumericDates
//! with millisecond fractions (RFC 7519 allows non-integer values), so
//! lifetimes of a second or two are exact.
//!
//! Knobs a test turns while the server runs: [`TokenServer::set_lifetime`],
//! [`TokenServer::set_clock_skew`] (moves `iat`/`exp`, the `Date` header and
//! the validation clock), [`TokenServer::set_token_endpoint_status`] (break
//! `/oauth/token` and `/login`), [`TokenServer::revoke_all`],
//! [`TokenServer::set_reject_after`] (tokens keep declaring their lifetime but
//! are rejected earlier: early rejection / declared-vs-actual mismatch). Every
//! response carries a `Date` from the server's (possibly skewed) clock.
//! State is bounded: at most 10 000 refresh tokens, cookie sessions, orders
//! and logged resource calls (oldest dropped).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use outpost_testkit::TokenServer;
//! let ts = TokenServer::builder()
//!     .client("outpost", "s3cret")
//!     .lifetime(Duration::from_secs(2))
//!     .run()
//!     .await?;
//! let token_url = ts.url("/oauth/token");
//! ts.set_token_endpoint_status(503); // renewals now fail
//! # let _ = token_url; Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::hmac;
use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, RequestInfo, RunningServer};
use crate::pki::Identity;

/// Most refresh tokens, cookie sessions and logged resource calls kept.
pub const MAX_ENTRIES: usize = 10_000;
const ISSUER: &str = "outpost-testkit";

/// One call to `/api/data` as the resource server judged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceCall {
    /// Arrival (the machine's real clock, not the skewed one).
    pub at: SystemTime,
    /// The presented token's `jti`, when it was a well-formed signed JWT.
    pub jti: Option<String>,
    /// `true` when a session cookie was presented instead of a token.
    pub cookie: bool,
    /// 200 or 401.
    pub status: u16,
    /// Why a 401: `missing`, `malformed`, `bad_signature`, `expired`, `revoked`,
    /// `rejected_early`, `unknown_session`.
    pub reason: Option<&'static str>,
}

/// Claims of a token the server issued, as its validator sees them.
#[derive(Clone, Debug, PartialEq)]
pub struct Claims {
    /// Subject: the client id or user name.
    pub sub: String,
    /// Token id.
    pub jti: String,
    /// Issued at, Unix ms (server clock).
    pub iat_ms: i64,
    /// Expiry, Unix ms (server clock).
    pub exp_ms: i64,
}

/// Configures a [`TokenServer`].
#[derive(Debug)]
pub struct TokenServerBuilder {
    clients: Vec<(String, String)>,
    users: Vec<(String, String)>,
    lifetime: Duration,
    refresh_tokens: bool,
    tls: Option<Identity>,
}

struct Inner {
    lifetime: Duration,
    skew_ms: i64,
    token_status: u16,
    reject_after: Option<Duration>,
    generation: u64,
    refresh_tokens_enabled: bool,
    refresh_tokens: HashMap<String, (String, String)>,
    refresh_order: VecDeque<String>,
    sessions: HashMap<String, (String, i64, i64, u64)>,
    session_order: VecDeque<String>,
    last_access_token: Option<String>,
    log: VecDeque<ResourceCall>,
    expires_at_offset: time::UtcOffset,
    orders: VecDeque<Value>,
}

struct Shared {
    key: hmac::Key,
    clients: Vec<(String, String)>,
    users: Vec<(String, String)>,
    inner: Mutex<Inner>,
    tokens_issued: AtomicU64,
    refreshes: AtomicU64,
    logins: AtomicU64,
    unauthorized: AtomicU64,
    resource_calls: AtomicU64,
    token_requests: AtomicU64,
    orders_created: AtomicU64,
}

/// A running token + resource server. Dropping it stops it.
pub struct TokenServer {
    server: RunningServer,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.server.addr())
            .field("tokens_issued", &self.tokens_issued())
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// A builder: no clients or users, 60 s tokens, no refresh tokens, plain HTTP.
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder {
            clients: Vec::new(),
            users: Vec::new(),
            lifetime: Duration::from_secs(60),
            refresh_tokens: false,
            tls: None,
        }
    }
}

impl TokenServerBuilder {
    /// Accepts this OAuth2 client.
    pub fn client(mut self, id: &str, secret: &str) -> Self {
        self.clients.push((id.to_owned(), secret.to_owned()));
        self
    }

    /// Accepts this user at `/login`.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// Token (and cookie session) lifetime. Default 60 s.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Issue refresh tokens with client-credentials tokens and accept the
    /// `refresh_token` grant. Default off.
    pub fn refresh_tokens(mut self, on: bool) -> Self {
        self.refresh_tokens = on;
        self
    }

    /// Serve HTTPS with `identity`.
    pub fn tls(mut self, identity: Identity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn run(self) -> anyhow::Result<TokenServer> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &crate::random_bytes::<32>());
        let shared = Arc::new(Shared {
            key,
            clients: self.clients,
            users: self.users,
            inner: Mutex::new(Inner {
                lifetime: self.lifetime,
                skew_ms: 0,
                token_status: 200,
                reject_after: None,
                generation: 0,
                refresh_tokens_enabled: self.refresh_tokens,
                refresh_tokens: HashMap::new(),
                refresh_order: VecDeque::new(),
                sessions: HashMap::new(),
                session_order: VecDeque::new(),
                last_access_token: None,
                log: VecDeque::new(),
                expires_at_offset: time::UtcOffset::UTC,
                orders: VecDeque::new(),
            }),
            tokens_issued: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            resource_calls: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            orders_created: AtomicU64::new(0),
        });
        let (t, l, r, o, f) = (
            shared.clone(),
            shared.clone(),
            shared.clone(),
            shared.clone(),
            shared.clone(),
        );
        let mut b = HttpServer::builder()
            .handler("/oauth/token", move |req| t.token(req))
            .handler("/login", move |req| l.login(req))
            .handler("/api/data", move |req| r.resource(req))
            .handler("/api/orders", move |req| o.create_order(req))
            .fallback(
                move |req| match req.path_only().strip_prefix("/api/orders/") {
                    Some(id) if req.method == "GET" => f.read_order(req, id),
                    _ => f.dated(Reply::json(404, &json!({ "error": "not_found" }))),
                },
            );
        if let Some(id) = self.tls {
            b = b.tls(id);
        }
        Ok(TokenServer {
            server: b.run().await?,
            shared,
        })
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn ms_time(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate).
fn http_date(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    ms_time(ms)
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes `application/x-www-form-urlencoded` (bad escapes kept literally).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hi = (b[i + 1] as char).to_digit(16).unwrap_or(0);
                let lo = (b[i + 2] as char).to_digit(16).unwrap_or(0);
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .take(64)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn oauth_error(status: u16, error: &str) -> Reply {
    Reply::json(status, &json!({ "error": error })).header("cache-control", "no-store")
}

fn unauthorized(reason: &'static str) -> Reply {
    Reply::json(401, &json!({ "error": "invalid_token", "reason": reason })).header(
        "www-authenticate",
        &format!("Bearer error=\"invalid_token\", error_description=\"{reason}\""),
    )
}

fn seconds_json(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        json!(d.as_secs())
    } else {
        json!(d.as_secs_f64())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> i64 {
        unix_ms(SystemTime::now()).saturating_add(self.lock().skew_ms)
    }

    /// Adds the server's `Date` (skewed clock) to a reply.
    fn dated(&self, reply: Reply) -> Reply {
        reply.header("date", &http_date(self.now_ms()))
    }

    fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{body}");
        let sig = hmac::sign(&self.key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Issues a JWT; returns it with the declared lifetime.
    fn issue(&self, sub: &str, aud: &str, scope: &str) -> (String, Duration, i64, u64) {
        let (lifetime, skew, generation) = {
            let i = self.lock();
            (i.lifetime, i.skew_ms, i.generation)
        };
        let iat_ms = unix_ms(SystemTime::now()).saturating_add(skew);
        let exp_ms = iat_ms.saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX));
        let claims = json!({
            "iss": ISSUER, "sub": sub, "aud": aud, "scope": scope,
            "iat": iat_ms as f64 / 1000.0, "exp": exp_ms as f64 / 1000.0,
            "jti": hex(&crate::random_bytes::<8>()), "gen": generation,
        });
        let token = self.sign(&claims);
        self.tokens_issued.fetch_add(1, Ordering::SeqCst);
        self.lock().last_access_token = Some(token.clone());
        (token, lifetime, exp_ms, generation)
    }

    /// Validates a bearer token against the server's own clock.
    fn validate(&self, token: &str) -> Result<Claims, (&'static str, Option<String>)> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(("malformed", None));
        };
        if token.len() > 8192 {
            return Err(("malformed", None));
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| ("malformed", None))?;
        hmac::verify(&self.key, format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| ("bad_signature", None))?;
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(("malformed", None))?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(("malformed", None));
        }
        let claims: Value = URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(("malformed", None))?;
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let num = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_f64)
                .map(|v| (v * 1000.0).round() as i64)
        };
        let (Some(iat_ms), Some(exp_ms)) = (num("iat"), num("exp")) else {
            return Err(("malformed", Some(jti)));
        };
        let now = self.now_ms();
        let (generation, reject_after) = {
            let i = self.lock();
            (i.generation, i.reject_after)
        };
        if now >= exp_ms {
            return Err(("expired", Some(jti)));
        }
        if claims.get("gen").and_then(Value::as_u64) != Some(generation) {
            return Err(("revoked", Some(jti)));
        }
        if let Some(r) = reject_after
            && now.saturating_sub(iat_ms) >= i64::try_from(r.as_millis()).unwrap_or(i64::MAX)
        {
            return Err(("rejected_early", Some(jti)));
        }
        Ok(Claims {
            sub: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            jti,
            iat_ms,
            exp_ms,
        })
    }

    fn client_ok(&self, id: &str, secret: &str) -> bool {
        self.clients.iter().any(|(i, s)| i == id && s == secret)
    }

    fn token(&self, req: &RequestInfo) -> Reply {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let status = self.lock().token_status;
        if !(200..300).contains(&status) {
            return self.dated(oauth_error(status, "temporarily_unavailable"));
        }
        if req.method != "POST" {
            return self.dated(oauth_error(405, "invalid_request"));
        }
        let f = form(&req.body);
        // Client authentication: basic auth or form fields (RFC 6749 §2.3.1).
        let basic = req
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            })
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(i, p)| (form_decode(i), form_decode(p)))
            });
        let client = match (&basic, f.get("client_id"), f.get("client_secret")) {
            (Some((i, s)), _, _) => Some((i.clone(), Some(s.clone()))),
            (None, Some(i), s) => Some((i.clone(), s.cloned())),
            _ => None,
        };
        let authenticated = match &client {
            Some((i, Some(s))) => self.client_ok(i, s),
            _ => false,
        };
        let scope = f.get("scope").cloned().unwrap_or_default();
        let reply = match f.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {
                let Some((id, _)) = client.filter(|_| authenticated) else {
                    return self.dated(
                        oauth_error(401, "invalid_client")
                            .header("www-authenticate", "Basic realm=\"token\""),
                    );
                };
                let aud = f
                    .get("audience")
                    .cloned()
                    .unwrap_or_else(|| ISSUER.to_owned());
                self.grant(&id, &aud, &scope)
            }
            Some("refresh_token") => {
                if !self.lock().refresh_tokens_enabled {
                    return self.dated(oauth_error(400, "unsupported_grant_type"));
                }
                if client.as_ref().is_some_and(|(_, s)| s.is_some()) && !authenticated {
                    return self.dated(oauth_error(401, "invalid_client"));
                }
                let Some(rt) = f.get("refresh_token") else {
                    return self.dated(oauth_error(400, "invalid_request"));
                };
                let Some((sub, aud)) = self.lock().refresh_tokens.remove(rt) else {
                    return self.dated(oauth_error(400, "invalid_grant"));
                };
                self.refreshes.fetch_add(1, Ordering::SeqCst);
                self.grant(&sub, &aud, &scope)
            }
            Some(_) => oauth_error(400, "unsupported_grant_type"),
            None => oauth_error(400, "invalid_request"),
        };
        self.dated(reply)
    }

    fn grant(&self, sub: &str, aud: &str, scope: &str) -> Reply {
        let (token, lifetime, _, _) = self.issue(sub, aud, scope);
        let mut body = json!({
            "access_token": token, "token_type": "Bearer",
            "expires_in": seconds_json(lifetime), "scope": scope,
        });
        let mut i = self.lock();
        if i.refresh_tokens_enabled {
            let rt = hex(&crate::random_bytes::<24>());
            if i.refresh_order.len() >= MAX_ENTRIES
                && let Some(old) = i.refresh_order.pop_front()
            {
                i.refresh_tokens.remove(&old);
            }
            i.refresh_order.push_back(rt.clone());
            i.refresh_tokens
                .insert(rt.clone(), (sub.to_owned(), aud.to_owned()));
            body["refresh_token"] = json!(rt);
        }
        Reply::json(200, &body).header("cache-control", "no-store")
    }

    fn login(&self, req: &RequestInfo) -> Reply {
        let status = self.lock().token_status;
        if !(200..300).contains(&status) {
            return self.dated(Reply::json(
                status,
                &json!({ "error": "temporarily_unavailable" }),
            ));
        }
        if req.method != "POST" {
            return self.dated(Reply::json(405, &json!({ "error": "method_not_allowed" })));
        }
        let body: Option<Value> = serde_json::from_slice(&req.body).ok();
        let field = |k: &str| {
            body.as_ref()
                .and_then(|b| b.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(user), Some(pw)) = (field("username"), field("password")) else {
            return self.dated(Reply::json(
                400,
                &json!({ "error": "username and password required" }),
            ));
        };
        if !self.users.iter().any(|(u, p)| *u == user && *p == pw) {
            return self.dated(Reply::json(401, &json!({ "error": "invalid_credentials" })));
        }
        self.logins.fetch_add(1, Ordering::SeqCst);
        let (token, lifetime, exp_ms, generation) = self.issue(&user, ISSUER, "");
        let sid = hex(&crate::random_bytes::<16>());
        let now = self.now_ms();
        let offset = {
            let mut i = self.lock();
            if i.session_order.len() >= MAX_ENTRIES
                && let Some(old) = i.session_order.pop_front()
            {
                i.sessions.remove(&old);
            }
            i.session_order.push_back(sid.clone());
            i.sessions
                .insert(sid.clone(), (user.clone(), now, exp_ms, generation));
            i.expires_at_offset
        };
        let expires_at = ms_time(exp_ms)
            .map(|t| t.to_offset(offset))
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let max_age = lifetime.as_secs_f64().round() as u64;
        self.dated(
            Reply::json(
                200,
                &json!({ "token": token, "expires_at": expires_at, "expires_in": seconds_json(lifetime) }),
            )
            .header("set-cookie", &format!("session={sid}; Max-Age={max_age}; Path=/; HttpOnly")),
        )
    }

    /// Who presented the request (a Bearer JWT or a session cookie): the
    /// subject, or why not; the token's `jti`; whether a cookie was used.
    fn authenticate(
        &self,
        req: &RequestInfo,
    ) -> (Result<String, &'static str>, Option<String>, bool) {
        let bearer = req
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let cookie = req.header("cookie").and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == "session")
                .map(|(_, v)| v.to_owned())
        });
        let (result, jti, is_cookie) = match (bearer, cookie) {
            (Some(t), _) => match self.validate(t) {
                Ok(c) => (Ok(c.sub), Some(c.jti), false),
                Err((reason, jti)) => (Err(reason), jti, false),
            },
            (None, Some(sid)) => {
                let now = self.now_ms();
                let i = self.lock();
                let r = match i.sessions.get(&sid) {
                    None => Err("unknown_session"),
                    Some((_, _, exp, _)) if now >= *exp => Err("expired"),
                    Some((_, _, _, g)) if *g != i.generation => Err("revoked"),
                    Some((_, iat, _, _))
                        if i.reject_after.is_some_and(|r| {
                            now.saturating_sub(*iat)
                                >= i64::try_from(r.as_millis()).unwrap_or(i64::MAX)
                        }) =>
                    {
                        Err("rejected_early")
                    }
                    Some((user, _, _, _)) => Ok(user.clone()),
                };
                (r, None, true)
            }
            (None, None) => (Err("missing"), None, false),
        };
        (result, jti, is_cookie)
    }

    fn resource(&self, req: &RequestInfo) -> Reply {
        self.resource_calls.fetch_add(1, Ordering::SeqCst);
        let (result, jti, is_cookie) = self.authenticate(req);
        let (reply, status, reason) = match result {
            Ok(sub) => (
                Reply::json(
                    200,
                    &json!({
                        "ok": true, "sub": sub,
                        "served_at": ms_time(self.now_ms())
                            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                    }),
                ),
                200,
                None,
            ),
            Err(reason) => {
                self.unauthorized.fetch_add(1, Ordering::SeqCst);
                (unauthorized(reason), 401, Some(reason))
            }
        };
        let mut i = self.lock();
        if i.log.len() >= MAX_ENTRIES {
            i.log.pop_front();
        }
        i.log.push_back(ResourceCall {
            at: SystemTime::now(),
            jti,
            cookie: is_cookie,
            status,
            reason,
        });
        drop(i);
        self.dated(reply)
    }
}

impl Shared {
    /// `POST /api/orders`: creates an order owned by the caller.
    fn create_order(&self, req: &RequestInfo) -> Reply {
        let sub = match self.authenticate(req).0 {
            Ok(sub) => sub,
            Err(reason) => return self.dated(unauthorized(reason)),
        };
        if req.method != "POST" {
            return self.dated(Reply::json(405, &json!({ "error": "method_not_allowed" })));
        }
        let body: Option<Value> = serde_json::from_slice(&req.body).ok();
        let item = body
            .as_ref()
            .and_then(|b| b.get("item"))
            .and_then(Value::as_str);
        let quantity = body
            .as_ref()
            .and_then(|b| b.get("quantity"))
            .and_then(Value::as_u64);
        let (Some(item), Some(quantity)) = (item, quantity) else {
            return self.dated(Reply::json(
                400,
                &json!({ "error": "item (string) and quantity (number) required" }),
            ));
        };
        let id = format!(
            "ord-{}",
            self.orders_created.fetch_add(1, Ordering::SeqCst) + 1
        );
        let order = json!({ "id": id, "item": item, "quantity": quantity, "owner": sub, "status": "created" });
        let mut i = self.lock();
        if i.orders.len() >= MAX_ENTRIES {
            i.orders.pop_front();
        }
        i.orders.push_back(order.clone());
        drop(i);
        self.dated(Reply::json(201, &order).header("location", &format!("/api/orders/{id}")))
    }

    /// `GET /api/orders/<id>`: the caller's order.
    fn read_order(&self, req: &RequestInfo, id: &str) -> Reply {
        let sub = match self.authenticate(req).0 {
            Ok(sub) => sub,
            Err(reason) => return self.dated(unauthorized(reason)),
        };
        let found = self.lock().orders.iter().find(|o| o["id"] == id).cloned();
        self.dated(match found {
            None => Reply::json(404, &json!({ "error": "no such order" })),
            Some(o) if o["owner"] != sub.as_str() => {
                Reply::json(403, &json!({ "error": "not your order" }))
            }
            Some(o) => Reply::json(200, &o),
        })
    }
}

impl TokenServer {
    /// Orders created through `POST /api/orders`.
    pub fn orders_created(&self) -> u64 {
        self.shared.orders_created.load(Ordering::SeqCst)
    }

    /// `http(s)://…:PORT<path>`: `/oauth/token`, `/login`, `/api/data`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Lifetime of tokens (and cookie sessions) issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.shared.lock().lifetime = lifetime;
    }

    /// Moves the server's clock by `skew` (positive: ahead of the machine):
    /// `iat`/`exp` issued, the `Date` header and token validation.
    pub fn set_clock_skew(&self, skew: time::Duration) {
        self.shared.lock().skew_ms = i64::try_from(skew.whole_milliseconds()).unwrap_or(0);
    }

    /// Makes `/oauth/token` and `/login` answer `status` (e.g. 503) without
    /// issuing anything; a 2xx restores them.
    pub fn set_token_endpoint_status(&self, status: u16) {
        self.shared.lock().token_status = status;
    }

    /// Rejects every token and cookie session issued so far.
    pub fn revoke_all(&self) {
        self.shared.lock().generation += 1;
    }

    /// Rejects tokens and sessions once they are `after` old, while they keep
    /// declaring their full lifetime (`None`: only `exp` counts).
    pub fn set_reject_after(&self, after: Option<Duration>) {
        self.shared.lock().reject_after = after;
    }

    /// Turns refresh tokens (issuing and the grant) on or off.
    pub fn set_refresh_tokens(&self, on: bool) {
        self.shared.lock().refresh_tokens_enabled = on;
    }

    /// The UTC offset `/login` writes `expires_at` in (default `Z`).
    pub fn set_expires_at_offset(&self, offset: time::UtcOffset) {
        self.shared.lock().expires_at_offset = offset;
    }

    /// Access tokens issued (client credentials, refresh and login).
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// Successful refresh-token grants.
    pub fn refreshes(&self) -> u64 {
        self.shared.refreshes.load(Ordering::SeqCst)
    }

    /// Successful `/login`s.
    pub fn logins(&self) -> u64 {
        self.shared.logins.load(Ordering::SeqCst)
    }

    /// Requests to `/oauth/token`, answered or not.
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// 401s served by `/api/data`.
    pub fn unauthorized(&self) -> u64 {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }

    /// Calls to `/api/data`.
    pub fn resource_calls(&self) -> u64 {
        self.shared.resource_calls.load(Ordering::SeqCst)
    }

    /// Calls to `/api/data`, oldest first (the most recent [`MAX_ENTRIES`]).
    pub fn resource_log(&self) -> Vec<ResourceCall> {
        self.shared.lock().log.iter().cloned().collect()
    }

    /// The most recently issued access token (to look for it where it must not be).
    pub fn last_access_token(&self) -> Option<String> {
        self.shared.lock().last_access_token.clone()
    }

    /// Validates `token` as `/api/data` would, now.
    pub fn validate(&self, token: &str) -> Result<Claims, &'static str> {
        self.shared.validate(token).map_err(|(r, _)| r)
    }

    /// The `jti` of a token (no validation), to match [`ResourceCall::jti`].
    pub fn jti_of(token: &str) -> Option<String> {
        let claims = token.split('.').nth(1)?;
        let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        v.get("jti").and_then(Value::as_str).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};

    async fn request(
        ts: &TokenServer,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, http::HeaderMap, Value) {
        let tcp = tokio::net::TcpStream::connect(ts.addr())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(conn);
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = send
            .send_request(
                b.body(Full::new(Bytes::from(body.to_owned())))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn server(lifetime: Duration) -> TokenServer {
        TokenServer::builder()
            .client("outpost", "s3cret")
            .user("alice", "pw")
            .lifetime(lifetime)
            .refresh_tokens(true)
            .run()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[tokio::test]
    async fn client_credentials_token_works_until_exp_then_401() {
        let ts = server(Duration::from_millis(800)).await;
        let basic = format!("Basic {}", STANDARD.encode("outpost:s3cret"));
        let (st, h, body) = request(
            &ts,
            "POST",
            "/oauth/token",
            &[FORM, ("authorization", &basic)],
            "grant_type=client_credentials&scope=read",
        )
        .await;
        assert_eq!(st, 200, "{body}");
        assert!(h.get("date").is_some());
        let token = body["access_token"].as_str().unwrap_or_default().to_owned();
        let claims = ts.validate(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.exp_ms - claims.iat_ms, 800);
        assert!(body["refresh_token"].is_string());
        let auth = format!("Bearer {token}");
        assert_eq!(
            request(&ts, "GET", "/api/data", &[("authorization", &auth)], "")
                .await
                .0,
            200
        );
        tokio::time::sleep(Duration::from_millis(900)).await;
        let (st, h, _) = request(&ts, "GET", "/api/data", &[("authorization", &auth)], "").await;
        assert_eq!(st, 401);
        assert!(h.get("www-authenticate").is_some());
        assert_eq!(ts.unauthorized(), 1);
        assert_eq!(
            ts.resource_log().last().and_then(|c| c.reason),
            Some("expired")
        );
    }

    #[tokio::test]
    async fn tampered_tokens_and_bad_clients_are_rejected() {
        let ts = server(Duration::from_secs(60)).await;
        let (st, _, body) = request(
            &ts,
            "POST",
            "/oauth/token",
            &[FORM],
            "grant_type=client_credentials&client_id=outpost&client_secret=nope",
        )
        .await;
        assert_eq!((st, body["error"].as_str()), (401, Some("invalid_client")));
        let (_, _, body) = request(
            &ts,
            "POST",
            "/oauth/token",
            &[FORM],
            "grant_type=client_credentials&client_id=outpost&client_secret=s3cret",
        )
        .await;
        let token = body["access_token"].as_str().unwrap_or_default().to_owned();
        // Change the first signature character (all six of its bits are
        // signature, unlike the last one's): same claims, wrong signature.
        let sig = token.rfind('.').map(|i| i + 1).unwrap_or_default();
        let mut forged = token.clone().into_bytes();
        forged[sig] = if forged[sig] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap_or_default();
        assert_eq!(ts.validate(&forged), Err("bad_signature"));
        assert_eq!(ts.validate("a.b"), Err("malformed"));
        assert_eq!(ts.validate("not-a-jwt"), Err("malformed"));
        assert_eq!(ts.validate("%%.%%.%%"), Err("malformed"));
        ts.revoke_all();
        assert_eq!(ts.validate(&token), Err("revoked"));
        let (st, _, body) =
            request(&ts, "POST", "/oauth/token", &[FORM], "grant_type=password").await;
        assert_eq!(
            (st, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_work_once() {
        let ts = server(Duration::from_secs(60)).await;
        let (_, _, body) = request(
            &ts,
            "POST",
            "/oauth/token",
            &[FORM],
            "grant_type=client_credentials&client_id=outpost&client_secret=s3cret",
        )
        .await;
        let rt = body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let f = format!(
            "grant_type=refresh_token&refresh_token={rt}&client_id=outpost&client_secret=s3cret"
        );
        let (st, _, body) = request(&ts, "POST", "/oauth/token", &[FORM], &f).await;
        assert_eq!(st, 200);
        assert_ne!(body["refresh_token"].as_str(), Some(rt.as_str()));
        let (st, _, body) = request(&ts, "POST", "/oauth/token", &[FORM], &f).await;
        assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")));
        assert_eq!((ts.refreshes(), ts.tokens_issued()), (1, 2));
    }

    #[tokio::test]
    async fn login_sets_a_cookie_session_and_knobs_take_effect() {
        let ts = server(Duration::from_secs(60)).await;
        ts.set_clock_skew(time::Duration::seconds(30));
        ts.set_expires_at_offset(
            time::UtcOffset::from_hms(-6, 0, 0).unwrap_or(time::UtcOffset::UTC),
        );
        let (st, h, body) = request(
            &ts,
            "POST",
            "/login",
            &[("content-type", "application/json")],
            r#"{"username":"alice","password":"pw"}"#,
        )
        .await;
        assert_eq!(st, 200, "{body}");
        assert!(
            body["expires_at"]
                .as_str()
                .is_some_and(|s| s.ends_with("-06:00"))
        );
        let date = h
            .get("date")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let date = time::PrimitiveDateTime::parse(date, fmt)
            .map(|d| d.assume_utc())
            .unwrap_or_else(|e| panic!("{e}"));
        let skew = date - time::OffsetDateTime::now_utc();
        assert!(
            skew > time::Duration::seconds(28) && skew < time::Duration::seconds(31),
            "{skew}"
        );
        let cookie = h
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(cookie.contains("Max-Age=60"), "{cookie}");
        let sid = cookie.split(';').next().unwrap_or_default().to_owned();
        assert_eq!(
            request(&ts, "GET", "/api/data", &[("cookie", &sid)], "")
                .await
                .0,
            200
        );
        ts.set_reject_after(Some(Duration::ZERO));
        assert_eq!(
            request(&ts, "GET", "/api/data", &[("cookie", &sid)], "")
                .await
                .0,
            401
        );
        ts.set_token_endpoint_status(503);
        let (st, _, _) = request(
            &ts,
            "POST",
            "/login",
            &[],
            r#"{"username":"alice","password":"pw"}"#,
        )
        .await;
        assert_eq!(st, 503);
        let (st, _, _) = request(&ts, "POST", "/login", &[], "not json").await;
        assert_eq!(st, 503);
        ts.set_token_endpoint_status(200);
        let (st, _, _) = request(&ts, "POST", "/login", &[], "not json").await;
        assert_eq!(st, 400);
    }

    #[test]
    fn form_decoding_is_total() {
        assert_eq!(form_decode("a+b%26c%3D"), "a b&c=");
        assert_eq!(form_decode("%"), "%");
        assert_eq!(form_decode("%4"), "%4");
        assert_eq!(form_decode("%zz"), "%zz");
        assert_eq!(form_decode("%C3%A9"), "é");
    }
}
