//! Durations for people: the one formatter every failure message, finding
//! and report line uses (`850 ms`, `4.3 s`, `4 min 10 s`, `2 h 13 min`),
//! never raw `4347ms`.
//!
//! Config echoes are different: a message that quotes a config value writes
//! it in config syntax ([`crate::config::Dur`], `"500ms"`), so it can be
//! pasted back. Everything measured or derived uses [`duration`].
//!
//! The controller's pages use the same function, so a duration reads the
//! same in a probe's message, an alert and the dashboard.

use std::{fmt, time::Duration};

/// A duration formatted for people; see [`duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human(pub Duration);

/// Formats `d` for people, with at most two units and no rounding up
/// (a value never reads as the next unit before it gets there):
///
/// | range      | example        |
/// |------------|----------------|
/// | < 1 ms     | `0.4 ms`       |
/// | < 1 s      | `850 ms`       |
/// | < 10 s     | `4.3 s`        |
/// | < 1 min    | `45 s`         |
/// | < 1 h      | `4 min 10 s`, `4 min` |
/// | < 1 d      | `2 h 13 min`, `2 h`   |
/// | otherwise  | `3 d 4 h`, `3 d`      |
///
/// ```
/// use std::time::Duration;
/// use outpost_probe::human;
/// assert_eq!(human::duration(Duration::from_millis(4347)).to_string(), "4.3 s");
/// assert_eq!(human::duration(Duration::from_secs(250)).to_string(), "4 min 10 s");
/// ```
pub fn duration(d: Duration) -> Human {
    Human(d)
}

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if d.is_zero() {
            return f.write_str("0 ms");
        }
        if d < Duration::from_millis(1) {
            // Tenths of a millisecond, truncated: 0.45 ms reads 0.4 ms.
            return write!(f, "0.{} ms", d.as_micros() / 100);
        }
        if d < Duration::from_secs(1) {
            return write!(f, "{} ms", d.as_millis());
        }
        if d < Duration::from_secs(10) {
            let tenths = d.as_millis() / 100;
            return write!(f, "{}.{} s", tenths / 10, tenths % 10);
        }
        let pair = |f: &mut fmt::Formatter<'_>, a: u64, ua: &str, b: u64, ub: &str| {
            if b == 0 {
                write!(f, "{a} {ua}")
            } else {
                write!(f, "{a} {ua} {b} {ub}")
            }
        };
        match secs {
            0..60 => write!(f, "{secs} s"),
            60..3600 => pair(f, secs / 60, "min", secs % 60, "s"),
            3600..86_400 => pair(f, secs / 3600, "h", secs / 60 % 60, "min"),
            _ => pair(f, secs / 86_400, "d", secs / 3600 % 24, "h"),
        }
    }
}

impl serde::Serialize for Human {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serializes a [`Duration`] as whole milliseconds (`u64`), for failure
/// context fields (`after_ms`, `age_ms`, …).
pub mod ms {
    use std::time::Duration;

    /// `d` as whole milliseconds.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The same for an optional duration (`null` when absent).
    pub mod option {
        use std::time::Duration;

        /// `d` as whole milliseconds, or `null`.
        pub fn serialize<S: serde::Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(d: Duration) -> String {
        duration(d).to_string()
    }

    #[test]
    fn each_range_has_its_form() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        assert_eq!(h(Duration::ZERO), "0 ms");
        assert_eq!(h(Duration::from_micros(400)), "0.4 ms");
        assert_eq!(h(Duration::from_micros(999)), "0.9 ms");
        assert_eq!(h(Duration::from_micros(30)), "0.0 ms");
        assert_eq!(h(ms(1)), "1 ms");
        assert_eq!(h(ms(850)), "850 ms");
        assert_eq!(h(ms(999)), "999 ms");
        assert_eq!(h(ms(1000)), "1.0 s");
        assert_eq!(h(ms(4347)), "4.3 s");
        assert_eq!(h(ms(9999)), "9.9 s");
        assert_eq!(h(s(10)), "10 s");
        assert_eq!(h(ms(45_900)), "45 s");
        assert_eq!(h(s(59)), "59 s");
        assert_eq!(h(s(60)), "1 min");
        assert_eq!(h(s(250)), "4 min 10 s");
        assert_eq!(h(s(240)), "4 min");
        assert_eq!(h(s(3599)), "59 min 59 s");
        assert_eq!(h(s(3600)), "1 h");
        assert_eq!(h(s(2 * 3600 + 13 * 60 + 59)), "2 h 13 min");
        assert_eq!(h(s(17 * 3600 + 3)), "17 h");
        assert_eq!(h(s(86_399)), "23 h 59 min");
        assert_eq!(h(s(86_400)), "1 d");
        assert_eq!(h(s(3 * 86_400 + 4 * 3600 + 59)), "3 d 4 h");
        assert_eq!(h(s(400 * 86_400)), "400 d");
    }

    #[test]
    fn serializes_as_its_text() {
        assert_eq!(
            serde_json::to_string(&duration(Duration::from_millis(850))).unwrap(),
            "\"850 ms\""
        );
    }
}
