//! Formatting shared by the status page, alert summaries and the text
//! summary: ages (`95s`, `12m`) and timestamps. Neutral ground, so alerting
//! does not reach into the dashboard for a formatter.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// `95s`, `12m`, `3h`, `2d`.
pub fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
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
    fn ages_are_short() {
        assert_eq!(human_age(95_000), "95s");
        assert_eq!(human_age(600_000), "10m");
        assert_eq!(human_age(3 * 3_600_000), "3h");
        assert_eq!(human_age(3 * 86_400_000), "3d");
    }

    #[test]
    fn timestamps_drop_the_milliseconds() {
        assert_eq!(timestamp(1_893_456_000_999), "2030-01-01T00:00:00Z");
    }
}
