//! `[auth]`: who may use the dashboard, the JSON API and `/metrics`.
//!
//! ```toml
//! [auth]
//! session_idle_timeout = "1h"
//! session_lifetime = "12h"
//!
//! [[auth.users]]                      # dashboard login (user name + password)
//! name = "alice"
//! role = "admin"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # outpost-controller hash-password
//!
//! [[auth.tokens]]                     # `Authorization: Bearer <token>` (scripts, Prometheus)
//! name = "prometheus"
//! role = "viewer"
//! hash = "$argon2id$v=19$m=19456,t=2,p=1$…"            # outpost-controller generate-token
//!
//! [[auth.tokens]]                     # or the token itself from the environment or a file,
//! name = "ci"                         # hashed in memory at start, never logged
//! role = "operator"
//! token = { env = "OUTPOST_CI_TOKEN" }
//! ```

use std::{collections::HashSet, time::Duration};

use outpost_probe::config::{Dur, Problems, RawSecret};
use serde::Deserialize;

use super::Role;
use crate::config::{push_if_bad_id, resolve_secret};

/// Default idle lifetime of a dashboard session.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Default absolute lifetime of a dashboard session.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Longest absolute session lifetime accepted.
pub const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// Fewest characters of a token given as `token = { env | file }`.
pub const MIN_TOKEN_CHARS: usize = 32;

/// `[auth]` as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// API tokens (`Authorization: Bearer <token>`), one entry per client.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// Dashboard users (login form, session cookie).
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// A session not used for this long ends. Default `"1h"`, minimum `"1m"`.
    #[serde(default)]
    pub session_idle_timeout: Option<Dur>,
    /// A session ends this long after its login, used or not. Default
    /// `"12h"`; at least `session_idle_timeout`, at most `"30d"`.
    #[serde(default)]
    pub session_lifetime: Option<Dur>,
}

/// `[[auth.tokens]]`: an API token.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Unique name, shown in logs and as the author of changes. Example `"prometheus"`.
    pub name: String,
    /// `"viewer"` (read), `"operator"` (read and change alert state: silences…)
    /// or `"admin"` (everything, config actions).
    pub role: String,
    /// The token's argon2id PHC string (`outpost-controller generate-token`
    /// prints a token and its hash). Exactly one of `hash` and `token`.
    #[serde(default)]
    pub hash: Option<String>,
    /// The token itself from `{ env = "NAME" }` or `{ file = "/path" }`, at
    /// least 32 characters, read at start and kept only as a hash in memory.
    #[serde(default)]
    pub token: Option<RawSecret>,
}

/// `[[auth.users]]`: a dashboard user.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Unique user name typed in the login form. Example `"alice"`.
    pub name: String,
    /// `"viewer"`, `"operator"` or `"admin"` (see `[[auth.tokens]]`).
    pub role: String,
    /// The password's argon2id PHC string: `outpost-controller hash-password`
    /// reads the password on stdin and prints it.
    pub password_hash: String,
}

/// How a presented token is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Against an argon2id PHC string from the config.
    Argon2(String),
    /// Against the SHA-256 of a token read from the environment or a file.
    Digest([u8; 32]),
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenCheck::Argon2(_) => f.write_str("Argon2(**REDACTED**)"),
            TokenCheck::Digest(_) => f.write_str("Digest(**REDACTED**)"),
        }
    }
}

/// A validated API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDef {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// How to check it.
    pub check: TokenCheck,
}

/// A validated dashboard user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserDef {
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// argon2id PHC string of the password.
    pub password_hash: String,
}

impl std::fmt::Debug for UserDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDef")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"**REDACTED**")
            .finish()
    }
}

impl UserDef {
    /// A short fingerprint of the password hash, stored with each session:
    /// a session whose user's password changed since the login is over.
    pub fn credential(&self) -> String {
        super::fingerprint(self.password_hash.as_bytes())
    }
}

/// Validated `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// API tokens.
    pub tokens: Vec<TokenDef>,
    /// Dashboard users.
    pub users: Vec<UserDef>,
    /// Idle lifetime of a session.
    pub session_idle: Duration,
    /// Absolute lifetime of a session.
    pub session_lifetime: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens: Vec::new(),
            users: Vec::new(),
            session_idle: DEFAULT_SESSION_IDLE,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
        }
    }
}

impl AuthConfig {
    /// No token and no user: nobody can authenticate.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.users.is_empty()
    }

    /// The user with this name.
    pub fn user(&self, name: &str) -> Option<&UserDef> {
        self.users.iter().find(|u| u.name == name)
    }
}

fn role(text: &str, path: String, p: &mut Problems) -> Role {
    text.parse().unwrap_or_else(|_| {
        p.push(
            path,
            format!("unknown role {text:?}: use \"viewer\", \"operator\" or \"admin\""),
        );
        Role::Viewer
    })
}

/// Validates `[auth]` (absent: nobody can authenticate).
pub fn validate(raw: Option<&RawAuth>, vars: &[(String, String)], p: &mut Problems) -> AuthConfig {
    let Some(raw) = raw else {
        return AuthConfig::default();
    };
    let mut names = HashSet::new();
    let mut digests: Vec<([u8; 32], usize)> = Vec::new();
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let path = format!("auth.tokens[{i}]");
        push_if_bad_id(p, format!("{path}.name"), "token name", &t.name);
        if !names.insert(t.name.as_str()) {
            p.push(
                format!("{path}.name"),
                format!("duplicate token name {:?}", t.name),
            );
        }
        let role = role(&t.role, format!("{path}.role"), p);
        let check = match (&t.hash, &t.token) {
            (Some(h), None) => match super::password::check(h) {
                Ok(()) => Some(TokenCheck::Argon2(h.clone())),
                Err(e) => {
                    p.push(format!("{path}.hash"), e);
                    None
                }
            },
            (None, Some(secret)) => match resolve_secret(secret, vars) {
                Ok(s) if s.expose().chars().count() < MIN_TOKEN_CHARS => {
                    p.push(
                        format!("{path}.token"),
                        format!(
                            "the token has {} characters, fewer than {MIN_TOKEN_CHARS}: use `outpost-controller generate-token` for one",
                            s.expose().chars().count()
                        ),
                    );
                    None
                }
                Ok(s) => {
                    let d = super::token_digest(s.expose().as_bytes());
                    if let Some((_, j)) = digests.iter().find(|(x, _)| *x == d) {
                        p.push(
                            format!("{path}.token"),
                            format!(
                                "auth.tokens[{j}] has the same token: give every client its own"
                            ),
                        );
                    }
                    digests.push((d, i));
                    Some(TokenCheck::Digest(d))
                }
                Err(e) => {
                    p.push(format!("{path}.token"), e);
                    None
                }
            },
            _ => {
                p.push(
                    path.clone(),
                    "set exactly one of `hash` (an argon2id PHC string) and `token` ({ env = … } or { file = … })",
                );
                None
            }
        };
        if let Some(check) = check {
            tokens.push(TokenDef {
                name: t.name.clone(),
                role,
                check,
            });
        }
    }
    let mut user_names = HashSet::new();
    let mut users = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let path = format!("auth.users[{i}]");
        push_if_bad_id(p, format!("{path}.name"), "user name", &u.name);
        if !user_names.insert(u.name.as_str()) {
            p.push(
                format!("{path}.name"),
                format!("duplicate user name {:?}", u.name),
            );
        }
        let role = role(&u.role, format!("{path}.role"), p);
        if let Err(e) = super::password::check(&u.password_hash) {
            p.push(format!("{path}.password_hash"), e);
            continue;
        }
        users.push(UserDef {
            name: u.name.clone(),
            role,
            password_hash: u.password_hash.clone(),
        });
    }
    let session_idle = raw
        .session_idle_timeout
        .map(Dur::get)
        .unwrap_or(DEFAULT_SESSION_IDLE);
    if session_idle < Duration::from_secs(60) {
        p.push(
            "auth.session_idle_timeout",
            format!(
                "session_idle_timeout must be ≥ 1m, got \"{}\"",
                Dur(session_idle)
            ),
        );
    }
    let session_lifetime = raw
        .session_lifetime
        .map(Dur::get)
        .unwrap_or(DEFAULT_SESSION_LIFETIME.max(session_idle));
    if session_lifetime < session_idle || session_lifetime > MAX_SESSION_LIFETIME {
        p.push(
            "auth.session_lifetime",
            format!(
                "session_lifetime must be between session_idle_timeout (\"{}\") and \"30d\", got \"{}\"",
                Dur(session_idle),
                Dur(session_lifetime)
            ),
        );
    }
    AuthConfig {
        tokens,
        users,
        session_idle,
        session_lifetime,
    }
}
