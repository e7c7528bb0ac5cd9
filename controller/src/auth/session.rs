//! Dashboard sessions: a random 256-bit id in a cookie, its SHA-256 in the
//! store (`sessions`, [`crate::store::SessionRow`]), a CSRF token derived
//! from the id.
//!
//! Design note.
//! - **Cookie.** `__Host-outpost-session` over HTTPS (`Secure`; the prefix
//!   makes browsers refuse it without `Secure`, with a `Domain` or another
//!   `Path`), `outpost-session` over plain HTTP on loopback; always
//!   `HttpOnly; SameSite=Strict; Path=/` and `Max-Age` = the absolute lifetime.
//!   A login always issues a new id (no fixation).
//! - **Store.** Only `SHA-256("outpost-session\0" ‖ id)` is stored: reading
//!   the database opens no session. At most [`SESSIONS_PER_USER`] per user
//!   (the oldest go); expired rows are deleted at each login and hourly.
//! - **Lifetimes.** Checked on every request: idle (`auth.session_idle_timeout`,
//!   last use moved at most once per [`TOUCH_EVERY_MS`]) and absolute
//!   (`auth.session_lifetime`). A session whose user left the config, or
//!   whose password hash changed, is over (rows deleted on the next request
//!   and on reload): removing a user and sending SIGHUP revokes them.
//! - **CSRF.** The synchronizer token is `base64url(SHA-256("outpost-csrf\0" ‖ id))`:
//!   bound to the session, unknown to anyone without the cookie, never stored.
//!   Every state-changing request authenticated by the cookie must carry it
//!   (form field `csrf` or header `x-csrf-token`), compared in constant time.
//! - **Crash.** Sessions are rows: a restarted controller keeps its logins.

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq as _;

use super::{Caller, Via, config::UserDef};
use crate::{
    Controller,
    store::{SessionRow, StoreError},
};

/// Cookie name over HTTPS.
pub const COOKIE_SECURE: &str = "__Host-outpost-session";
/// Cookie name over plain HTTP (loopback only, or opted in).
pub const COOKIE_PLAIN: &str = "outpost-session";
/// Sessions kept per user; a new login ends the oldest beyond this.
pub const SESSIONS_PER_USER: u32 = 10;
/// A session's last use is written at most this often.
pub const TOUCH_EVERY_MS: i64 = 60_000;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A session id as the cookie carries it (43 base64url characters).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(**REDACTED**)")
    }
}

impl SessionId {
    /// A fresh random id.
    pub fn generate() -> Result<SessionId, ring::error::Unspecified> {
        let bytes: [u8; 32] = super::random_bytes()?;
        Ok(SessionId(B64.encode(bytes)))
    }

    /// An id from a cookie value, if it has the shape of one.
    pub fn parse(value: &str) -> Option<SessionId> {
        (value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| SessionId(value.to_owned()))
    }

    /// What the store keeps: hex SHA-256 of the id.
    pub fn id_hash(&self) -> String {
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"outpost-session\0".as_slice(), self.0.as_bytes()].concat(),
        );
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The session's CSRF token.
    pub fn csrf(&self) -> String {
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"outpost-csrf\0".as_slice(), self.0.as_bytes()].concat(),
        );
        B64.encode(d.as_ref())
    }

    /// The value for the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// True when `presented` is the CSRF token of `expected` (constant time).
pub fn csrf_matches(expected: &str, presented: &str) -> bool {
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The cookie's name over HTTPS (`secure`) or plain HTTP.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { COOKIE_SECURE } else { COOKIE_PLAIN }
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(id: &SessionId, secure: bool, max_age_s: u64) -> HeaderValue {
    let secure_attr = if secure { "; Secure" } else { "" };
    let text = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure_attr}",
        cookie_name(secure),
        id.expose()
    );
    // Built from a fixed name and base64url characters: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static(
            "__Host-outpost-session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure",
        )
    } else {
        HeaderValue::from_static("outpost-session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// The session id in the request's `Cookie` headers, if any.
pub fn from_headers(headers: &HeaderMap, secure: bool) -> Option<SessionId> {
    let name = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| SessionId::parse(v.trim()))
}

/// A session could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The system RNG failed: no id.
    #[error("the system random number generator failed")]
    Rng,
}

/// Starts a session for `user`.
pub async fn create(ctl: &Controller, user: &UserDef) -> Result<SessionId, SessionError> {
    let id = SessionId::generate().map_err(|_| SessionError::Rng)?;
    let auth = &ctl.config().auth;
    let now = ctl.now_ms();
    let idle = ms(auth.session_idle);
    ctl.store()
        .insert_session(
            &SessionRow {
                id_hash: id.id_hash(),
                user_name: user.name.clone(),
                credential: user.credential(),
                created_ms: now,
                last_seen_ms: now,
                expires_ms: now.saturating_add(ms(auth.session_lifetime)),
            },
            SESSIONS_PER_USER,
            now.saturating_sub(idle),
        )
        .await?;
    Ok(id)
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The caller a session id stands for, if the session is still good;
/// deletes it when it is over.
pub async fn lookup(ctl: &Controller, id: &SessionId) -> Result<Option<Caller>, StoreError> {
    let hash = id.id_hash();
    let Some(row) = ctl.store().session(&hash).await? else {
        return Ok(None);
    };
    let cfg = ctl.config();
    let now = ctl.now_ms();
    let idle_over = row.last_seen_ms.saturating_add(ms(cfg.auth.session_idle)) <= now;
    let user = cfg
        .auth
        .user(&row.user_name)
        .filter(|u| u.credential() == row.credential);
    let Some(user) = user.filter(|_| row.expires_ms > now && !idle_over) else {
        tracing::info!(user = %row.user_name, "dashboard session over (expired, user removed or password changed)");
        ctl.store().delete_session(&hash).await?;
        return Ok(None);
    };
    if now - row.last_seen_ms >= TOUCH_EVERY_MS {
        ctl.store().touch_session(&hash, now).await?;
    }
    Ok(Some(Caller {
        name: user.name.clone(),
        role: user.role,
        via: Via::Session { csrf: id.csrf() },
    }))
}

/// Ends the session (logout).
pub async fn end(ctl: &Controller, id: &SessionId) -> Result<(), StoreError> {
    ctl.store().delete_session(&id.id_hash()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_parse_back_and_derive_distinct_hashes_and_tokens() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.expose()), Some(a.clone()));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse(&"a;".repeat(21)), None);
        assert_ne!(a.id_hash(), b.id_hash());
        assert_eq!(a.id_hash().len(), 64);
        assert!(!a.id_hash().contains(a.expose()));
        assert!(csrf_matches(&a.csrf(), &a.csrf()));
        assert!(!csrf_matches(&a.csrf(), &b.csrf()));
        assert!(!csrf_matches(&a.csrf(), ""));
        assert_eq!(format!("{a:?}"), "SessionId(**REDACTED**)");
    }

    #[test]
    fn cookies_carry_every_attribute_and_are_found_among_others() {
        let id = SessionId::generate().unwrap();
        let c = set_cookie(&id, true, 3600);
        let c = c.to_str().unwrap();
        assert!(c.starts_with("__Host-outpost-session="));
        for attr in [
            "Path=/",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=3600",
            "Secure",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(
            !set_cookie(&id, false, 1)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; outpost-session={}; x=y", id.expose()))
                .unwrap(),
        );
        assert_eq!(from_headers(&h, false), Some(id.clone()));
        assert_eq!(
            from_headers(&h, true),
            None,
            "the plain cookie is not the secure one"
        );
    }
}
