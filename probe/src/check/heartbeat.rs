//! The `heartbeat` check kind (push, dead-man's switch): the job being
//! watched calls the controller, not the other way round. This module is
//! the schema and the observations only; the controller receives the pings
//! and decides when a heartbeat is missed (`outpost_controller::heartbeat`).
//! Probes never run heartbeat checks: the controller does not assign them,
//! and a probe's local config refuses them.
//!
//! ```toml
//! [[checks]]
//! id = "nightly-etl"
//! heartbeat = { period = "1d", grace = "1h", ping_id = { env = "OUTPOST_HB_NIGHTLY_ETL" } }
//!
//! [[checks]]
//! id = "backup"
//! heartbeat = { schedule = "0 3 * * *", tz = "Europe/Berlin", grace = "30m", ping_id = { env = "OUTPOST_HB_BACKUP" } }
//! ```
//!
//! Semantics are Healthchecks.io's: the job pings `/ping/<ping_id>` when it
//! succeeds (`/fail` when it fails, `/start` when it begins). A heartbeat is
//! **missed** (`heartbeat_missed`) when no success or fail ping came within
//! `period + grace` of the last one — or, with a `schedule`, by the first
//! scheduled time strictly after the last ping `+ grace` — or no success or
//! fail within `grace` of a `/start`. Until the first ping it is UNKNOWN (a
//! new job is not late). Exactly one of `period` and `schedule` is set; this
//! module checks that, the controller parses the expression and the zone
//! (`outpost_controller::heartbeat::schedule`): probes need no cron code.
//!
//! # Details ([`Observed`])
//! ```text
//! signal                 "success" | "fail" | "missed"
//! method                 the ping's HTTP method (absent for missed)
//! user_agent             the pinger's User-Agent, clipped (absent when none)
//! body_bytes, truncated  the body's size and whether the excerpt is clipped
//! excerpt                the body's first bytes as text (absent when empty)
//! run_ms                 time since the matching /start (absent without one)
//! last_ping_ms           missed only: unix ms of the last ping, absent when
//!                        only a /start came
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http::request::secret_ref;
use crate::config::{Dur, Problems, RawSecret};

/// The shortest `period`.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);
/// The fewest characters a `ping_id` may have (≈ 128 bits in base64url).
pub const MIN_PING_ID_LEN: usize = 22;
/// The most characters a `ping_id` may have.
pub const MAX_PING_ID_LEN: usize = 128;

/// `[checks.heartbeat]` as written in config (controller only).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// How often the job runs: a ping is expected every `period`.
    /// Example: `"1d"`, `"15m"`. At least `"1s"`. Exactly one of `period`
    /// and `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Dur>,
    /// When the job runs, as a five-field cron expression (minute hour
    /// day-of-month month day-of-week; names like `MON`, `JAN`, lists,
    /// ranges and steps; day-of-month and day-of-week restricted together
    /// match either, as in Vixie cron). A ping is expected by the first
    /// scheduled time after the last ping, plus `grace`. Example:
    /// `"0 3 * * *"` (03:00 daily), `"*/15 * * * MON-FRI"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The IANA time zone `schedule` is read in, from the system's tz
    /// database (`/usr/share/zoneinfo`, Debian's `tzdata`). Example:
    /// `"Europe/Berlin"`. Default `"UTC"`; only with `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// How late a ping may be before the heartbeat is missed (after `period`
    /// or the scheduled time, or after a `/start`). Example: `"1h"`. May be
    /// `"0s"`.
    pub grace: Dur,
    /// The unguessable id in the ping URL (`/ping/<ping_id>`): 22–128 of
    /// `A-Z a-z 0-9 - _`, from a secret: `{ env = "NAME" }` or
    /// `{ file = "/path" }`. Make one with
    /// `head -c 18 /dev/urandom | base64 | tr '+/' '-_'`.
    #[serde(serialize_with = "secret_ref")]
    pub ping_id: RawSecret,
}

/// When pings are expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cadence {
    /// One every `period`.
    Period(Duration),
    /// At the times of a cron expression read in a time zone, both as
    /// written (the controller parses them).
    Schedule {
        /// The five-field expression.
        expr: String,
        /// The IANA zone name (`"UTC"` when not written).
        tz: String,
    },
}

/// A validated heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatSpec {
    /// When pings are expected.
    pub cadence: Cadence,
    /// Allowed lateness.
    pub grace: Duration,
    /// Where the ping id comes from; the controller resolves it.
    pub ping_id: RawSecret,
}

impl HeartbeatSpec {
    /// The longest silence after a ping that is not yet missed, for a
    /// `period`; `None` for a schedule (it depends on the time of the ping).
    pub fn deadline_after_ping(&self) -> Option<Duration> {
        match &self.cadence {
            Cadence::Period(p) => Some(p.saturating_add(self.grace)),
            Cadence::Schedule { .. } => None,
        }
    }
}

impl RawHeartbeat {
    /// Validates the table at `path` (`checks[3].heartbeat`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<HeartbeatSpec> {
        let before = problems.len();
        let cadence = match (&self.period, &self.schedule) {
            (Some(_), Some(_)) => {
                problems.push(
                    format!("{path}.schedule"),
                    "set either `period` or `schedule`, not both",
                );
                None
            }
            (None, None) => {
                problems.push(
                    format!("{path}.period"),
                    "a heartbeat needs `period` (e.g. \"1d\") or `schedule` (e.g. \"0 3 * * *\")",
                );
                None
            }
            (Some(period), None) => {
                if period.get() < MIN_PERIOD {
                    problems.push(
                        format!("{path}.period"),
                        format!(
                            "period must be ≥ 1s, got \"{period}\": the job's schedule, e.g. \"1d\""
                        ),
                    );
                }
                if self.tz.is_some() {
                    problems.push(
                        format!("{path}.tz"),
                        "tz applies to `schedule` only: remove it, or replace `period` with a `schedule`",
                    );
                }
                Some(Cadence::Period(period.get()))
            }
            (None, Some(expr)) => Some(Cadence::Schedule {
                expr: expr.clone(),
                tz: self.tz.clone().unwrap_or_else(|| "UTC".to_owned()),
            }),
        };
        match (&self.ping_id.env, &self.ping_id.file) {
            (Some(_), Some(_)) => problems.push(
                format!("{path}.ping_id"),
                "set either `env` or `file`, not both",
            ),
            (None, None) => problems.push(
                format!("{path}.ping_id"),
                "ping_id needs a source: { env = \"NAME\" } or { file = \"/path\" }",
            ),
            _ => {}
        }
        let cadence = cadence?;
        (problems.len() == before).then(|| HeartbeatSpec {
            cadence,
            grace: self.grace.get(),
            ping_id: self.ping_id.clone(),
        })
    }
}

/// Returns a problem unless `id` is a usable ping id: 22–128 characters of
/// `A-Z a-z 0-9 - _` (URL-safe, long enough not to be guessed).
pub fn check_ping_id(id: &str) -> Result<(), String> {
    if !(MIN_PING_ID_LEN..=MAX_PING_ID_LEN).contains(&id.len()) {
        return Err(format!(
            "the ping id has {} characters, it needs {MIN_PING_ID_LEN}–{MAX_PING_ID_LEN}: \
             make one with `head -c 18 /dev/urandom | base64 | tr '+/' '-_'`",
            id.len()
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(
            "the ping id may hold only A-Z a-z 0-9 - _ (it is part of a URL): \
             make one with `head -c 18 /dev/urandom | base64 | tr '+/' '-_'`"
                .into(),
        );
    }
    Ok(())
}

/// What a ping said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// `/ping/<id>`: the job succeeded.
    #[default]
    Success,
    /// `/ping/<id>/fail`: the job failed.
    Fail,
    /// No ping in time (written by the controller, not by a ping).
    Missed,
}

/// One heartbeat result's details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// What happened.
    pub signal: Signal,
    /// The ping's method (`GET`, `POST`, `HEAD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The pinger's `User-Agent`, clipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Bytes in the request body (counted up to the read limit).
    pub body_bytes: u64,
    /// True when `excerpt` is not the whole body.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The body's first bytes as text (lossy UTF-8): a log excerpt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// Time since the `/start` this ping completes, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_ms: Option<u64>,
    /// Missed only: when the last success or fail ping came (unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ping_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_ids_must_be_long_and_url_safe() {
        assert!(check_ping_id("abcdefghijklmnopqrstuv").is_ok());
        assert!(check_ping_id("short").is_err());
        assert!(check_ping_id("abcdefghijklmnopqrstu/").is_err());
        assert!(check_ping_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn a_probe_refuses_heartbeat_checks_and_the_schema_refuses_probe_keys() {
        let table = "heartbeat = { period = \"1h\", grace = \"5m\", ping_id = { env = \"HB\" } }";
        let text = format!("[[checks]]\nid = \"etl\"\n{table}\n");
        let raw: crate::config::RawProbeFile =
            crate::config::load::load_str(&text, "probe.toml", crate::config::ENV, &[]).unwrap();
        let err = raw.validate("probe.toml").unwrap_err().to_string();
        assert!(err.contains("checks[0].heartbeat"), "{err}");

        let raw: crate::check::RawCheck =
            toml::from_str(&format!("id = \"etl\"\ntimeout = \"5s\"\n{table}\n")).unwrap();
        let mut p = Problems::default();
        raw.validate("checks[0]", &mut p);
        assert!(format!("{p:?}").contains("\"checks[0].timeout\""), "{p:?}");

        let raw: crate::check::RawCheck =
            toml::from_str(&format!("id = \"etl\"\n{table}\n")).unwrap();
        let mut p = Problems::default();
        let spec = raw.validate("checks[0]", &mut p).unwrap();
        assert!(p.is_empty(), "{p:?}");
        // The interval the alert rule sees is period + grace.
        assert_eq!(spec.interval, Duration::from_secs(3900));
    }

    #[test]
    fn details_round_trip() {
        let o = Observed {
            signal: Signal::Fail,
            method: Some("POST".into()),
            body_bytes: 12,
            excerpt: Some("exit code 3".into()),
            ..Observed::default()
        };
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(
            json,
            r#"{"signal":"fail","method":"POST","body_bytes":12,"excerpt":"exit code 3"}"#
        );
        assert_eq!(serde_json::from_str::<Observed>(&json).unwrap(), o);
    }
}
