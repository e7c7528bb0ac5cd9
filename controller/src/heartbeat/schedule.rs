//! Cron schedules of heartbeat checks (`schedule = "0 3 * * *"`, `tz =
//! "Europe/Berlin"`): when the next ping is expected.
//!
//! - **Expressions** are five fields (minute hour day-of-month month
//!   day-of-week) with Vixie cron's meaning, parsed by `croner`: names
//!   (`MON`, `JAN`), lists, ranges, steps; day-of-month and day-of-week both
//!   restricted match either (`dom_and_dow` off). No seconds or year field:
//!   Healthchecks.io's expressions, one spelling.
//! - **Zones** are IANA names read by `jiff` from the system's tz database
//!   (`/usr/share/zoneinfo`, Debian's `tzdata`) when the config is loaded.
//! - **DST** (croner's OCPS rules on jiff's zone math): a time that falls in
//!   a spring-forward gap fires at the first valid time after it (`30 2 * *
//!   *` on the day Berlin skips 02:00–03:00 is due at 03:00 CEST); a time
//!   in a fall-back overlap fires once, at its first instance. So a daily
//!   job's deadline moves with local time: 23 or 25 hours apart around a
//!   change, never an hour early or late.
//! - **Resolution** is the minute; [`Schedule::next_after`] counts from the
//!   ping's whole second, strictly after it, so a ping at 03:00:00.4 for a
//!   03:00 schedule is that run's, and the next is tomorrow's.

use std::time::Duration;

use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};
use jiff::{Timestamp, tz::TimeZone};

/// How many upcoming runs [`Schedule::longest_gap`] looks at.
const GAP_SAMPLES: usize = 400;

/// Why a `schedule` or `tz` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The expression does not parse.
    #[error(
        "invalid cron expression {expr:?} ({reason}): five fields, minute hour day-of-month \
         month day-of-week, e.g. \"0 3 * * *\" for 03:00 daily"
    )]
    Expression {
        /// As written.
        expr: String,
        /// The parser's reason.
        reason: String,
    },
    /// The expression parses but names no time that exists (`0 0 30 2 *`).
    #[error("cron expression {expr:?} never fires: check the day and month fields")]
    Never {
        /// As written.
        expr: String,
    },
    /// The zone is not in the system's tz database.
    #[error(
        "unknown time zone {tz:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\" \
         (read from /usr/share/zoneinfo; install tzdata if it is missing)"
    )]
    Zone {
        /// As written.
        tz: String,
    },
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses `expr` read in the zone named `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Expression {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })?;
        let zone = TimeZone::get(tz).map_err(|_| ScheduleError::Zone { tz: tz.to_owned() })?;
        let schedule = Schedule { cron, tz: zone };
        if schedule
            .next_after(Timestamp::now().as_millisecond())
            .is_none()
        {
            return Err(ScheduleError::Never {
                expr: expr.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The first scheduled time strictly after `ms` (unix ms, counted from
    /// its whole second), in unix ms; `None` when there is none.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let second = ms.div_euclid(1000);
        let from = Timestamp::from_second(second)
            .ok()?
            .to_zoned(self.tz.clone());
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }

    /// The longest time between consecutive runs over the next
    /// [`GAP_SAMPLES`] runs after `from_ms`: how long a healthy job may
    /// be silent before its grace (the check's interval for staleness).
    pub fn longest_gap(&self, from_ms: i64) -> Duration {
        let mut longest = 0_i64;
        let mut at = from_ms;
        for _ in 0..GAP_SAMPLES {
            let Some(next) = self.next_after(at) else {
                break;
            };
            longest = longest.max(next.saturating_sub(at));
            at = next;
        }
        Duration::from_millis(u64::try_from(longest).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn utc(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn show(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    #[test]
    fn a_daily_run_keeps_its_local_time_across_both_dst_changes() {
        let s = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
        // Spring forward (2026-03-29): 03:00 CET is 02:00Z, 03:00 CEST 01:00Z.
        let next = s.next_after(utc("2026-03-28T02:05:00Z")).unwrap();
        assert_eq!(show(next), "2026-03-29T01:00:00Z");
        // Fall back (2026-10-25): 03:00 CEST is 01:00Z, 03:00 CET 02:00Z.
        let next = s.next_after(utc("2026-10-24T01:05:00Z")).unwrap();
        assert_eq!(show(next), "2026-10-25T02:00:00Z");
    }

    #[test]
    fn a_time_in_the_gap_fires_after_it_and_one_in_the_overlap_once() {
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        // 02:30 does not exist on 2026-03-29: due at 03:00 CEST.
        let next = s.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(show(next), "2026-03-29T01:00:00Z");
        // 02:30 happens twice on 2026-10-25: due at the first (CEST), once.
        let first = s.next_after(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(show(first), "2026-10-25T00:30:00Z");
        let then = s.next_after(first).unwrap();
        assert_eq!(show(then), "2026-10-26T01:30:00Z");
    }

    #[test]
    fn next_is_strictly_after_the_pings_second() {
        let s = Schedule::parse("0 3 * * *", "UTC").unwrap();
        let run = utc("2026-12-01T03:00:00Z");
        assert_eq!(s.next_after(run - 1), Some(run));
        assert_eq!(s.next_after(run), Some(run + 86_400_000));
        assert_eq!(s.next_after(run + 400), Some(run + 86_400_000));
    }

    #[test]
    fn the_longest_gap_covers_weekends_and_dst() {
        let weekdays = Schedule::parse("0 9 * * MON-FRI", "UTC").unwrap();
        let gap = weekdays.longest_gap(utc("2026-12-01T00:00:00Z"));
        assert_eq!(gap, Duration::from_secs(3 * 86_400));
        let daily = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
        let gap = daily.longest_gap(utc("2026-10-20T00:00:00Z"));
        assert_eq!(gap, Duration::from_secs(25 * 3600));
    }

    #[test]
    fn bad_expressions_zones_and_impossible_dates_are_refused() {
        for expr in ["", "0 3 * *", "0 3 * * * *", "61 * * * *", "0 3 * * FUNDAY"] {
            let err = Schedule::parse(expr, "UTC").unwrap_err();
            assert!(
                matches!(err, ScheduleError::Expression { .. }),
                "{expr}: {err}"
            );
        }
        let err = Schedule::parse("0 3 * * *", "Europe/Atlantis").unwrap_err();
        assert_eq!(
            err,
            ScheduleError::Zone {
                tz: "Europe/Atlantis".into()
            }
        );
        let err = Schedule::parse("0 0 30 2 *", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::Never { .. }), "{err}");
    }
}
