//! Silences and maintenance windows: what keeps a failing check's alert
//! recorded and shown but not paged.
//!
//! Design note.
//! - **Sources.** Silences come from the config (`[[silences]]`, fixed
//!   start and end) and from the store (`silences` table: made from the
//!   dashboard or `POST /api/v1/silences`, by the authenticated caller,
//!   ended early by `DELETE`). Maintenance windows are config only
//!   (`[[maintenance]]`): a cron `schedule` + `duration`, or `weekdays` +
//!   `start`/`end` local times (compiled to the same cron form), in `tz`,
//!   read with [`crate::heartbeat::schedule`] (croner + jiff, its DST rules).
//! - **Matchers.** `check` is a glob over check ids (`*` any run of
//!   characters; default `*`), `labels` equalities over the check's labels;
//!   all must hold. A silence matching nothing is allowed (it may match a
//!   check added later).
//! - **Dependencies.** `depends_on = ["db"]` on a check: while a
//!   dependency fails ([`dependency_failing`]: its alert open, or a fresh
//!   region's newest result failed), the check's alert is suppressed by
//!   `dependency db` the same way; when the dependency recovers and the
//!   check still fails, it pages then (`— paged after dependency db
//!   recovered`). Config validation refuses unknown ids and cycles.
//! - **Cause.** [`cause`] names the first match at `now` (config silences,
//!   then stored ones by start, then maintenance windows, then failing
//!   dependencies in `depends_on` order): `silence 3`, `silence
//!   silences[0]` (config), `maintenance nightly-db`, `dependency db`. The
//!   evaluator asks before every fire and for every open check alert.
//! - **Effect.** A check alert that fires while suppressed is opened with
//!   `suppressed_by` = the cause and no trigger queued (timeline `fired`,
//!   `suppressed`). An open alert that becomes suppressed keeps its
//!   incident but gets no update triggers (timeline `suppressed`); its
//!   resolve still goes to every sink that got a trigger, so no pager
//!   incident is left open. When the cause ends while the alert is open:
//!   `released`, and if the check still fails (or flaps) its routed sinks
//!   get a trigger then, with the live content and `— paged after <cause>
//!   ended`. While no region fails (recovering, or stale) the mark stays
//!   and nothing is sent: the alert pages when a region fails again, or
//!   resolves unpaged. If the check recovered under the silence, nothing
//!   was ever paged and nothing is resolved at the pager.
//! - **Time.** Every decision takes `now` (the controller's clock), so a
//!   manual clock moves silences and windows in tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use outpost_probe::config::{Dur, Problems};
use serde::Deserialize;

use crate::{
    config::{CheckDef, ControllerConfig},
    heartbeat::schedule::Schedule,
    store::{RegionState, SilenceRow},
};

use super::route::glob_match;

/// `[[silences]]`: a fixed silence in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSilence {
    /// Check ids it covers, a glob (`*` any run of characters). Default `"*"`.
    #[serde(default)]
    pub check: Option<String>,
    /// Labels a check must carry (all of them, equal values). Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Why, shown with every alert it suppresses. Required.
    pub comment: String,
    /// Who is responsible. Default `"config"`.
    #[serde(default)]
    pub created_by: Option<String>,
    /// From, RFC 3339 (`"2030-01-01T22:00:00Z"`). Default: always started.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// Until, RFC 3339, exclusive. Required: a silence always expires.
    pub ends_at: String,
}

/// `[[maintenance]]`: a recurring window in which matching checks page
/// nobody. Either `schedule` + `duration`, or `weekdays` + `start` + `end`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Name, shown as the cause (`maintenance nightly-db`). Required, unique.
    pub name: String,
    /// Check ids it covers, a glob. Default `"*"`.
    #[serde(default)]
    pub check: Option<String>,
    /// Labels a check must carry. Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When a window starts: five-field cron (`"0 2 * * SUN"`), read in `tz`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// How long each window lasts (`"2h"`), with `schedule`.
    #[serde(default)]
    pub duration: Option<Dur>,
    /// Days a window starts on (`["sat", "sun"]`, or `mon`…`sun`), with
    /// `start` and `end`.
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// Local start time `"HH:MM"`, with `weekdays`.
    #[serde(default)]
    pub start: Option<String>,
    /// Local end time `"HH:MM"`; earlier than `start` means the next day
    /// (`start = "22:00"`, `end = "06:00"`: 8 hours over midnight).
    #[serde(default)]
    pub end: Option<String>,
    /// IANA time zone of the schedule. Default `"UTC"`.
    #[serde(default)]
    pub tz: Option<String>,
}

/// Which checks a silence or window covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// Check id glob.
    pub check: String,
    /// Label equalities.
    pub labels: BTreeMap<String, String>,
}

impl Matcher {
    /// Whether `check` is covered.
    pub fn matches(&self, check: &CheckDef) -> bool {
        glob_match(&self.check, &check.raw.id)
            && self
                .labels
                .iter()
                .all(|(k, v)| check.raw.labels.get(k) == Some(v))
    }
}

/// A validated config silence.
#[derive(Debug, Clone)]
pub struct SilenceDef {
    /// `silences[N]`.
    pub name: String,
    /// What it covers.
    pub matcher: Matcher,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// From (unix ms).
    pub starts_at_ms: i64,
    /// Until (unix ms, exclusive).
    pub ends_at_ms: i64,
}

/// A validated maintenance window.
#[derive(Debug, Clone)]
pub struct MaintenanceDef {
    /// Name.
    pub name: String,
    /// What it covers.
    pub matcher: Matcher,
    /// When windows start.
    pub schedule: Schedule,
    /// The cron form of the start (as written, or compiled from weekdays).
    pub cron: String,
    /// The zone.
    pub tz: String,
    /// How long each lasts.
    pub duration: Duration,
}

impl MaintenanceDef {
    /// The end of the window `now` is in (unix ms), if any: a window
    /// started at `t` with `now - duration < t ≤ now`.
    pub fn active_until(&self, now: i64) -> Option<i64> {
        let len = i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX);
        let start = self.schedule.next_after(now.saturating_sub(len))?;
        (start <= now).then_some(start.saturating_add(len))
    }
}

/// A stored silence's matcher.
pub fn matcher_of(row: &SilenceRow) -> Matcher {
    Matcher {
        check: row.check_glob.clone(),
        labels: serde_json::from_str(&row.labels_json).unwrap_or_default(),
    }
}

/// Why `check` must not page at `now`, if something says so (module
/// note); `failing` holds the dependencies failing now
/// ([`dependency_failing`]).
pub fn cause(
    cfg: &ControllerConfig,
    stored: &[SilenceRow],
    failing: &BTreeSet<String>,
    check: &CheckDef,
    now: i64,
) -> Option<String> {
    let live = |from: i64, until: i64| from <= now && now < until;
    if let Some(s) = cfg
        .silences
        .iter()
        .find(|s| live(s.starts_at_ms, s.ends_at_ms) && s.matcher.matches(check))
    {
        return Some(format!("silence {}", s.name));
    }
    if let Some(s) = stored
        .iter()
        .find(|s| live(s.starts_at_ms, s.ends_at_ms) && matcher_of(s).matches(check))
    {
        return Some(format!("silence {}", s.id));
    }
    if let Some(m) = cfg
        .maintenance
        .iter()
        .find(|m| m.matcher.matches(check) && m.active_until(now).is_some())
    {
        return Some(format!("maintenance {}", m.name));
    }
    check
        .raw
        .depends_on
        .iter()
        .find(|d| failing.contains(*d))
        .map(|d| format!("{DEPENDENCY}{d}"))
}

/// How a cause names a failing dependency: `dependency db-primary`.
pub const DEPENDENCY: &str = "dependency ";

/// How a page after a suppression says why it comes now: `paged after
/// silence 3 ended`, `paged after dependency db recovered`.
pub fn release_note(cause: &str) -> String {
    if cause.starts_with(DEPENDENCY) {
        format!("paged after {cause} recovered")
    } else {
        format!("paged after {cause} ended")
    }
}

/// Whether a dependency counts as failing: its alert is open, or the
/// newest result of one of its fresh regions (whose probes are not
/// offline) failed — a dependency about to page already suppresses its
/// dependents, so a shared outage pages once, for its cause, even when a
/// dependent confirms first.
pub fn dependency_failing(
    dep: &CheckDef,
    states: &[RegionState],
    offline: &[String],
    alert_open: bool,
    now: i64,
) -> bool {
    alert_open
        || states.iter().any(|s| {
            dep.regions.contains(&s.region)
                && !offline.contains(&s.region)
                && !s.last_ok
                && super::rule::is_fresh(s, dep.spec.interval, now)
        })
}

/// Parses an RFC 3339 time (`2030-01-01T22:00:00Z`) to unix ms.
pub fn parse_time(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Validates `[[silences]]`.
pub fn validate_silences(raw: &[RawSilence], p: &mut Problems) -> Vec<SilenceDef> {
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let path = format!("silences[{i}]");
        if s.comment.trim().is_empty() {
            p.push(
                format!("{path}.comment"),
                "comment must say why, e.g. comment = \"database migration\"",
            );
        }
        let ends = parse_time(&s.ends_at);
        if ends.is_none() {
            p.push(
                format!("{path}.ends_at"),
                format!(
                    "invalid time {:?}: use RFC 3339, e.g. \"2030-01-01T06:00:00Z\"",
                    s.ends_at
                ),
            );
        }
        let starts = match s.starts_at.as_deref() {
            None => Some(i64::MIN),
            Some(t) => {
                let v = parse_time(t);
                if v.is_none() {
                    p.push(
                        format!("{path}.starts_at"),
                        format!("invalid time {t:?}: use RFC 3339, e.g. \"2030-01-01T02:00:00Z\""),
                    );
                }
                v
            }
        };
        let (Some(starts), Some(ends)) = (starts, ends) else {
            continue;
        };
        if ends <= starts {
            p.push(
                format!("{path}.ends_at"),
                format!("ends_at must be after starts_at, got {:?}", s.ends_at),
            );
            continue;
        }
        out.push(SilenceDef {
            name: path,
            matcher: Matcher {
                check: s.check.clone().unwrap_or_else(|| "*".into()),
                labels: s.labels.clone(),
            },
            comment: s.comment.clone(),
            created_by: s.created_by.clone().unwrap_or_else(|| "config".into()),
            starts_at_ms: starts,
            ends_at_ms: ends,
        });
    }
    out
}

/// `"HH:MM"` → minutes after midnight.
fn hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.len() == 5).then_some(h * 60 + m)
}

const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Validates `[[maintenance]]`.
pub fn validate_maintenance(raw: &[RawMaintenance], p: &mut Problems) -> Vec<MaintenanceDef> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, m) in raw.iter().enumerate() {
        let path = format!("maintenance[{i}]");
        if !outpost_probe::check::valid_id(&m.name) {
            p.push(
                format!("{path}.name"),
                format!(
                    "invalid name {:?}: use lowercase letters, digits, '-' or '_', e.g. \"nightly-db\"",
                    m.name
                ),
            );
        } else if !names.insert(m.name.clone()) {
            p.push(
                format!("{path}.name"),
                format!("duplicate maintenance name {:?}", m.name),
            );
        }
        let tz = m.tz.clone().unwrap_or_else(|| "UTC".into());
        let by_days = !m.weekdays.is_empty() || m.start.is_some() || m.end.is_some();
        let (cron, duration) = match (&m.schedule, by_days) {
            (Some(expr), false) => {
                let Some(d) = m.duration else {
                    p.push(
                        format!("{path}.duration"),
                        "a schedule needs a duration, e.g. duration = \"2h\"",
                    );
                    continue;
                };
                (expr.clone(), d.get())
            }
            (None, true) => {
                if m.duration.is_some() {
                    p.push(
                        format!("{path}.duration"),
                        "weekdays windows end at `end`: remove duration, or use schedule + duration",
                    );
                }
                let mut days = Vec::new();
                for (j, d) in m.weekdays.iter().enumerate() {
                    let d = d.to_ascii_lowercase();
                    if WEEKDAYS.contains(&d.as_str()) {
                        days.push(d);
                    } else {
                        p.push(
                            format!("{path}.weekdays[{j}]"),
                            format!("unknown weekday {d:?}: use one of {}", WEEKDAYS.join(", ")),
                        );
                    }
                }
                if m.weekdays.is_empty() {
                    p.push(
                        format!("{path}.weekdays"),
                        "name the days windows start on, e.g. weekdays = [\"sat\", \"sun\"]",
                    );
                }
                let start = m.start.as_deref().and_then(hhmm);
                let end = m.end.as_deref().and_then(hhmm);
                for (key, v, given) in [("start", start, &m.start), ("end", end, &m.end)] {
                    if v.is_none() {
                        p.push(
                            format!("{path}.{key}"),
                            format!(
                                "{key} must be a local time \"HH:MM\", e.g. \"22:00\", got {given:?}"
                            ),
                        );
                    }
                }
                let (Some(start), Some(end)) = (start, end) else {
                    continue;
                };
                if days.is_empty() {
                    continue;
                }
                // Over midnight when end ≤ start; equal times: a whole day.
                let minutes = (end + 24 * 60 - start - 1) % (24 * 60) + 1;
                (
                    format!("{} {} * * {}", start % 60, start / 60, days.join(",")),
                    Duration::from_secs(u64::from(minutes) * 60),
                )
            }
            _ => {
                p.push(
                    path.clone(),
                    "give either schedule + duration (e.g. schedule = \"0 2 * * SUN\", duration = \"2h\") \
                     or weekdays + start + end (e.g. weekdays = [\"sat\"], start = \"22:00\", end = \"06:00\")",
                );
                continue;
            }
        };
        if duration < Duration::from_secs(60) {
            p.push(
                format!("{path}.duration"),
                format!("duration must be ≥ 1m, got \"{}\"", Dur(duration)),
            );
            continue;
        }
        let schedule = match Schedule::parse(&cron, &tz) {
            Ok(s) => s,
            Err(e) => {
                let key = match e {
                    crate::heartbeat::schedule::ScheduleError::Zone { .. } => "tz",
                    _ if by_days => "weekdays",
                    _ => "schedule",
                };
                p.push(format!("{path}.{key}"), e.to_string());
                continue;
            }
        };
        out.push(MaintenanceDef {
            name: m.name.clone(),
            matcher: Matcher {
                check: m.check.clone().unwrap_or_else(|| "*".into()),
                labels: m.labels.clone(),
            },
            schedule,
            cron,
            tz,
            duration,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        parse_time(s).unwrap()
    }

    fn window(toml_text: &str) -> Result<Vec<MaintenanceDef>, Vec<String>> {
        #[derive(Deserialize)]
        struct F {
            maintenance: Vec<RawMaintenance>,
        }
        let f: F = toml::from_str(toml_text).unwrap();
        let mut p = Problems::default();
        let out = validate_maintenance(&f.maintenance, &mut p);
        p.finish("t").map(|()| out).map_err(paths)
    }

    fn paths(e: outpost_probe::config::ConfigError) -> Vec<String> {
        e.problems.into_iter().map(|p| p.path).collect::<Vec<_>>()
    }

    #[test]
    fn a_cron_window_is_active_for_its_duration_in_its_zone() {
        let m = window(
            "[[maintenance]]\nname = \"nightly\"\nschedule = \"0 2 * * *\"\nduration = \"1h\"\ntz = \"Europe/Berlin\"\n",
        )
        .unwrap();
        // 02:00 CET is 01:00Z in January.
        let m = &m[0];
        assert_eq!(m.active_until(utc("2030-01-10T00:59:59Z")), None);
        assert_eq!(
            m.active_until(utc("2030-01-10T01:00:00Z")),
            Some(utc("2030-01-10T02:00:00Z"))
        );
        assert!(m.active_until(utc("2030-01-10T01:59:59Z")).is_some());
        assert_eq!(m.active_until(utc("2030-01-10T02:00:00Z")), None);
    }

    #[test]
    fn a_weekday_range_over_midnight_ends_the_next_morning() {
        let m = window(
            "[[maintenance]]\nname = \"weekend\"\nweekdays = [\"sat\"]\nstart = \"22:00\"\nend = \"06:00\"\n",
        )
        .unwrap();
        let m = &m[0];
        assert_eq!(m.cron, "0 22 * * sat");
        assert_eq!(m.duration, Duration::from_secs(8 * 3600));
        // 2030-01-05 is a Saturday.
        assert_eq!(m.active_until(utc("2030-01-05T21:59:00Z")), None);
        assert_eq!(
            m.active_until(utc("2030-01-06T05:00:00Z")),
            Some(utc("2030-01-06T06:00:00Z"))
        );
        assert_eq!(m.active_until(utc("2030-01-06T22:30:00Z")), None);
    }

    #[test]
    fn bad_windows_name_their_keys() {
        let bad = [
            ("schedule = \"0 2 * * *\"\n", "maintenance[0].duration"),
            (
                "schedule = \"0 2 * *\"\nduration = \"1h\"\n",
                "maintenance[0].schedule",
            ),
            (
                "schedule = \"0 2 * * *\"\nduration = \"1h\"\ntz = \"Mars/Olympus\"\n",
                "maintenance[0].tz",
            ),
            (
                "weekdays = [\"caturday\"]\nstart = \"22:00\"\nend = \"06:00\"\n",
                "maintenance[0].weekdays[0]",
            ),
            (
                "weekdays = [\"sat\"]\nstart = \"25:00\"\nend = \"06:00\"\n",
                "maintenance[0].start",
            ),
            ("", "maintenance[0]"),
        ];
        for (body, path) in bad {
            let text = format!("[[maintenance]]\nname = \"w\"\n{body}");
            let err = window(&text).unwrap_err();
            assert_eq!(err, [path.to_owned()], "{body}");
        }
    }

    #[test]
    fn silences_need_a_comment_and_an_end_after_the_start() {
        #[derive(Deserialize)]
        struct F {
            silences: Vec<RawSilence>,
        }
        let f: F = toml::from_str(
            "[[silences]]\ncomment = \"\"\nends_at = \"2030-01-01T00:00:00Z\"\n\
             [[silences]]\ncomment = \"x\"\nstarts_at = \"2030-01-02T00:00:00Z\"\nends_at = \"2030-01-01T00:00:00Z\"\n\
             [[silences]]\ncomment = \"x\"\nends_at = \"tomorrow\"\n\
             [[silences]]\ncomment = \"db move\"\ncheck = \"db-*\"\nends_at = \"2030-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let mut p = Problems::default();
        let out = validate_silences(&f.silences, &mut p);
        assert_eq!(
            paths(p.finish("t").unwrap_err()),
            [
                "silences[0].comment",
                "silences[1].ends_at",
                "silences[2].ends_at"
            ]
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].name, "silences[3]");
        assert_eq!(out[1].matcher.check, "db-*");
        assert_eq!(out[1].starts_at_ms, i64::MIN);
    }
}
