//! A session check's state across runs, and its persistence.
//!
//! # Design
//! One [`CheckState`] per check id lives in a process-wide registry, behind
//! an async mutex so two runs of one check never interleave. It holds the
//! current [`Session`] (credentials and their validity) and a [`History`]
//! that outlives sessions (login and renewal totals, the declared lifetime
//! last seen, the last observed lifetime).
//!
//! # Persistence
//! With a state directory ([`RunContext::session_dir`](crate::check::RunContext::session_dir);
//! a running probe uses `<outbox dir>/../sessions`), every run that changes the
//! state rewrites `<dir>/<check id>.json` atomically: write
//! `<check id>.json.tmp` (mode 0600, fsync), then rename over the old file.
//! A crash leaves either the old or the new file, never a torn one; a stray
//! `.tmp` is overwritten next time. On the first run after a restart the file
//! is read back, so a still-valid session is resumed without a new login. A
//! file that cannot be read, has another `format`, or was written for another
//! login configuration (`fingerprint`) is ignored: the run logs in anew.
//! Without a state directory (`outpost-probe once`) sessions live in memory.
//!
//! **The file holds credentials** (access and refresh tokens, cookies) in
//! clear text, so it is created 0600 in a 0700 directory; protect the state
//! directory like the probe's secrets. Format (`format` 1):
//! ```json
//! { "format": 1, "check_id": "vendor-b", "fingerprint": "9f1c…",
//!   "history": { "logins": 3, "renewals": 41, "last_declared_lifetime_ms": 3600000,
//!                "first_declared_lifetime_ms": 3600000, "last_observed_lifetime_ms": null },
//!   "session": { "id": "0194…", "started_at_ms": 1738268460000,
//!                "token": "eyJ…", "refresh_token": null,
//!                "cookies": [ { "name": "session", "value": "…", "expires_at_ms": 1738272060000 } ],
//!                "bearer": true,
//!                "issued_at_ms": 1738268460000, "expires_at_ms": 1738272060000,
//!                "declared_lifetime_ms": 3600000, "expiry_source": "expires_in",
//!                "renewals": 0 } }
//! ```
//! Times are Unix epoch milliseconds on the probe's clock.

use std::{
    collections::HashMap,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::Secret;

/// Version of the state file's layout.
pub const FORMAT: u32 = 1;

/// A cookie of the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value (a credential).
    pub value: Secret,
    /// Expiry (probe clock), from `Max-Age` or `Expires`.
    pub expires_at: Option<OffsetDateTime>,
}

/// The current logical session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Random id shown in details (never derived from a credential).
    pub id: String,
    /// First login of this session.
    pub started_at: OffsetDateTime,
    /// Access token.
    pub token: Option<Secret>,
    /// Refresh token.
    pub refresh_token: Option<Secret>,
    /// Cookies sent with protected requests.
    pub cookies: Vec<Cookie>,
    /// Send the token as `Authorization: Bearer` unless a header template uses it.
    pub bearer: bool,
    /// When the current credential was issued (probe clock).
    pub issued_at: OffsetDateTime,
    /// Its declared expiry (probe clock), if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Its declared lifetime in ms.
    pub declared_lifetime_ms: Option<i64>,
    /// Where the expiry came from.
    pub expiry_source: String,
    /// Renewals within this session.
    pub renewals: u64,
    /// Consecutive failed renewal attempts (memory only).
    pub renewal_failures: u64,
    /// When the server first rejected this session (`renewal = "never"`
    /// keeps a rejected session until its config changes or it is reset).
    pub rejected_at: Option<OffsetDateTime>,
}

/// What outlives sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Logins (new sessions and re-logins) so far.
    pub logins: u64,
    /// Successful renewals so far.
    pub renewals: u64,
    /// The first declared lifetime seen, ms.
    pub first_declared_lifetime_ms: Option<i64>,
    /// The declared lifetime of the last credential, ms (the baseline for changes).
    pub last_declared_lifetime_ms: Option<i64>,
    /// Issuance → first rejection of the last rejected session, ms.
    pub last_observed_lifetime_ms: Option<i64>,
}

/// Everything a check keeps between runs.
#[derive(Debug, Default)]
pub struct CheckState {
    /// Login configuration this state belongs to.
    pub fingerprint: String,
    /// Totals and baselines.
    pub history: History,
    /// The session, when one is open.
    pub session: Option<Session>,
    /// True when this state came from (or was written to) the state directory.
    pub persisted: bool,
}

type Registry = HashMap<String, Arc<tokio::sync::Mutex<CheckState>>>;

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Drops the in-memory state of `check_id` (the file stays): the next run
/// reads it back from the state directory, as after a probe restart.
pub fn forget(check_id: &str) {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(check_id);
}

/// The state of `check_id`, loaded from `dir` on first use; a state for
/// another login configuration is replaced by an empty one.
pub async fn lock(
    check_id: &str,
    fingerprint: &str,
    dir: Option<&Path>,
) -> tokio::sync::OwnedMutexGuard<CheckState> {
    let cell = {
        let mut reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
        match reg.get(check_id) {
            Some(c) => c.clone(),
            None => {
                let loaded = dir
                    .and_then(|d| load(d, check_id))
                    .filter(|s| s.fingerprint == fingerprint);
                let c = Arc::new(tokio::sync::Mutex::new(loaded.unwrap_or_default()));
                reg.insert(check_id.to_owned(), c.clone());
                c
            }
        }
    };
    let mut guard = cell.lock_owned().await;
    if guard.fingerprint != fingerprint {
        *guard = CheckState {
            fingerprint: fingerprint.to_owned(),
            ..CheckState::default()
        };
    }
    guard
}

#[derive(Serialize, Deserialize)]
struct FileCookie {
    name: String,
    value: String,
    expires_at_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct FileSession {
    id: String,
    started_at_ms: i64,
    token: Option<String>,
    refresh_token: Option<String>,
    cookies: Vec<FileCookie>,
    #[serde(default = "yes")]
    bearer: bool,
    issued_at_ms: i64,
    expires_at_ms: Option<i64>,
    declared_lifetime_ms: Option<i64>,
    expiry_source: String,
    renewals: u64,
    #[serde(default)]
    rejected_at_ms: Option<i64>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    check_id: String,
    fingerprint: String,
    history: History,
    session: Option<FileSession>,
}

/// Epoch milliseconds.
pub fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// From epoch milliseconds.
pub fn from_ms(v: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000).ok()
}

fn path(dir: &Path, check_id: &str) -> PathBuf {
    dir.join(format!("{check_id}.json"))
}

fn load(dir: &Path, check_id: &str) -> Option<CheckState> {
    let text = match std::fs::read_to_string(path(dir, check_id)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(check = check_id, error = %e, "cannot read session state; logging in anew");
            return None;
        }
    };
    let f: File = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            // serde_json errors name a line and column, never the content.
            tracing::warn!(check = check_id, error = %e, "session state file is invalid; logging in anew");
            return None;
        }
    };
    if f.format != FORMAT || f.check_id != check_id {
        return None;
    }
    let session = f.session.and_then(|s| {
        Some(Session {
            id: s.id,
            started_at: from_ms(s.started_at_ms)?,
            token: s.token.map(Secret::new),
            refresh_token: s.refresh_token.map(Secret::new),
            cookies: s
                .cookies
                .into_iter()
                .map(|c| Cookie {
                    name: c.name,
                    value: Secret::new(c.value),
                    expires_at: c.expires_at_ms.and_then(from_ms),
                })
                .collect(),
            bearer: s.bearer,
            issued_at: from_ms(s.issued_at_ms)?,
            expires_at: s.expires_at_ms.and_then(from_ms),
            declared_lifetime_ms: s.declared_lifetime_ms,
            expiry_source: s.expiry_source,
            renewals: s.renewals,
            renewal_failures: 0,
            rejected_at: s.rejected_at_ms.and_then(from_ms),
        })
    });
    Some(CheckState {
        fingerprint: f.fingerprint,
        history: f.history,
        session,
        persisted: true,
    })
}

/// Writes the state of `check_id` to `dir` atomically (tmp + fsync + rename, 0600).
pub fn save(dir: &Path, check_id: &str, st: &CheckState) -> std::io::Result<()> {
    let file = File {
        format: FORMAT,
        check_id: check_id.to_owned(),
        fingerprint: st.fingerprint.clone(),
        history: st.history.clone(),
        session: st.session.as_ref().map(|s| FileSession {
            id: s.id.clone(),
            started_at_ms: ms(s.started_at),
            token: s.token.as_ref().map(|t| t.expose().to_owned()),
            refresh_token: s.refresh_token.as_ref().map(|t| t.expose().to_owned()),
            cookies: s
                .cookies
                .iter()
                .map(|c| FileCookie {
                    name: c.name.clone(),
                    value: c.value.expose().to_owned(),
                    expires_at_ms: c.expires_at.map(ms),
                })
                .collect(),
            bearer: s.bearer,
            issued_at_ms: ms(s.issued_at),
            expires_at_ms: s.expires_at.map(ms),
            declared_lifetime_ms: s.declared_lifetime_ms,
            expiry_source: s.expiry_source.clone(),
            renewals: s.renewals,
            rejected_at_ms: s.rejected_at.map(ms),
        }),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    create_private_dir(dir)?;
    let tmp = dir.join(format!("{check_id}.json.tmp"));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        // An existing tmp file keeps its old mode: make sure.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir, check_id))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    crate::private::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn state_round_trips_through_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = time::macros::datetime!(2025-01-30 20:21:00.123 UTC);
        let st = CheckState {
            fingerprint: "f".into(),
            history: History {
                logins: 2,
                renewals: 5,
                ..History::default()
            },
            session: Some(Session {
                id: "s1".into(),
                started_at: t,
                token: Some(Secret::new("tok")),
                refresh_token: None,
                cookies: vec![Cookie {
                    name: "session".into(),
                    value: Secret::new("c"),
                    expires_at: Some(t),
                }],
                bearer: true,
                issued_at: t,
                expires_at: Some(t + time::Duration::hours(1)),
                declared_lifetime_ms: Some(3_600_000),
                expiry_source: "expires_in".into(),
                renewals: 1,
                renewal_failures: 0,
                rejected_at: None,
            }),
            persisted: true,
        };
        save(dir.path(), "c1", &st).unwrap();
        let back = load(dir.path(), "c1").unwrap();
        assert_eq!(back.history, st.history);
        assert_eq!(back.session, st.session);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("c1.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(load(dir.path(), "other").is_none());
    }
}
