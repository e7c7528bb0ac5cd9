//! Formatting shared by the status page, alert summaries and the text
//! summary: durations and timestamps. Neutral ground, so alerting does not
//! reach into the dashboard for a formatter.
//!
//! Every duration the controller shows (an age, a lifetime, a lag, a
//! clock offset, a result's total time) is written by the probe's one
//! formatter, [`outpost_probe::human::duration`] (`850 ms`, `4.3 s`,
//! `4 min 10 s`, `2 h 13 min`), so it reads the same in a probe's message,
//! an alert and the dashboard. Two kinds of value are quoted as written
//! instead: config values (`every 30s`, in config syntax so they can be
//! pasted back) and DNS TTLs ([`ttl`]: the record's field as served, exact).

use std::time::Duration;

use outpost_probe::human::{self, Human};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// `ms` milliseconds (an age, a lag: a difference of unix-ms times) for
/// people; negative as zero.
pub fn ms(ms: i64) -> Human {
    human::duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// `s` seconds (session ages and lifetimes, which probes report as
/// fractional seconds) for people; negative or not a number as zero.
pub fn secs(s: f64) -> Human {
    human::duration(Duration::try_from_secs_f64(s).unwrap_or_default())
}

/// `us` microseconds (a result's phase timings) for people; negative as zero.
pub fn micros(us: i64) -> Human {
    human::duration(Duration::from_micros(u64::try_from(us).unwrap_or(0)))
}

/// A DNS TTL as served: exact seconds (`300 s`), never rounded to minutes
/// (a TTL's exact value is what caching reasoning needs).
pub fn ttl(seconds: u32) -> String {
    format!("{seconds} s")
}

/// RFC 3339 to the second (`2030-01-01T00:00:00Z`), for the page.
pub fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.replace_millisecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_probes_formatter() {
        assert_eq!(ms(95_000).to_string(), "1 min 35 s");
        assert_eq!(ms(4_347).to_string(), "4.3 s");
        assert_eq!(ms(3 * 3_600_000).to_string(), "3 h");
        assert_eq!(ms(-5).to_string(), "0 ms");
        assert_eq!(secs(7980.4).to_string(), "2 h 13 min");
        assert_eq!(secs(-1.0).to_string(), "0 ms");
        assert_eq!(secs(f64::NAN).to_string(), "0 ms");
        assert_eq!(micros(4_347_000).to_string(), "4.3 s");
        assert_eq!(ttl(300), "300 s");
    }

    #[test]
    fn timestamps_drop_the_milliseconds() {
        assert_eq!(timestamp(1_893_456_000_999), "2030-01-01T00:00:00Z");
    }
}
