//! Session time arithmetic, pure: every function takes the instants it needs
//! (the probe's `now`, when a response was sent and received) as parameters,
//! so the unit tests below pin each case to the millisecond. The run reads
//! those instants from [`RunContext::clock`](crate::check::RunContext::clock)
//! (manual in the integration tests, so renewals land on known runs).
//!
//! Two clocks are involved and never mixed silently: the probe's clock (all
//! `*_at` values a [`Expiry`] holds) and the server's (`Date`, JWT `iat` /
//! `exp`, an absolute `expires_at`). A server timestamp is converted to the
//! probe's clock by subtracting the server's offset (server − probe). The
//! incident's second outage was this class of bug: an absolute expiry read in
//! the wrong zone (or unit) moved the renewal past the real expiry. Hence:
//! - relative declarations (`expires_in`, `exp − iat`, cookie `Max-Age`)
//!   are preferred: they need no clock agreement at all;
//! - an absolute time must carry its offset (RFC 3339 `Z` / `±hh:mm`); a
//!   naive `2025-01-30T14:21:00` is rejected rather than guessed as local;
//! - epoch numbers above 10^11 are milliseconds (10^11 s is the year 5138).

use std::time::Duration;

use time::OffsetDateTime;

use crate::check::assertion::freshness;

/// Epoch values above this are milliseconds, not seconds.
pub const EPOCH_MILLIS_THRESHOLD: f64 = 1e11;
/// Longest lifetime or `expires_in` accepted: ten years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// How a login response declares when its credentials expire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Declared {
    /// Seconds of validity from issuance (OAuth2 `expires_in`, cookie `Max-Age`).
    ExpiresIn(f64),
    /// An absolute expiry on the server's clock (`expires_at`, cookie `Expires`).
    ExpiresAt(OffsetDateTime),
    /// A JWT's `exp`, with its `iat` when present (both on the server's clock).
    Jwt {
        /// Issued-at.
        iat: Option<OffsetDateTime>,
        /// Expiry.
        exp: OffsetDateTime,
    },
}

impl Declared {
    /// The source's name in details (`expires_in`, `expires_at`, `jwt_exp`).
    pub fn source(&self) -> &'static str {
        match self {
            Declared::ExpiresIn(_) => "expires_in",
            Declared::ExpiresAt(_) => "expires_at",
            Declared::Jwt { .. } => "jwt_exp",
        }
    }
}

/// What `expires_in` counts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Base {
    /// The probe's receipt of the response (default; needs no clock agreement).
    #[default]
    Receipt,
    /// The response's `Date` header, converted to the probe's clock with the
    /// offset estimate (for responses that may sit in a queue or cache).
    ServerDate,
}

/// When a response was exchanged, on the probe's clock, and the server's `Date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The request was sent.
    pub sent_at: OffsetDateTime,
    /// The response head arrived.
    pub received_at: OffsetDateTime,
    /// The response's `Date` header (server clock, whole seconds).
    pub server_date: Option<OffsetDateTime>,
}

impl Receipt {
    /// Midway between sending and receiving: the best guess of when the
    /// server produced the response.
    pub fn midpoint(&self) -> OffsetDateTime {
        self.sent_at + (self.received_at - self.sent_at) / 2
    }
}

/// Validity of one credential, on the probe's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// When the credential was issued (probe clock).
    pub issued_at: OffsetDateTime,
    /// When it expires as declared (probe clock).
    pub expires_at: OffsetDateTime,
    /// The declared lifetime (`expires_at − issued_at` as the server meant it).
    pub lifetime: time::Duration,
}

/// The server's clock minus the probe's, estimated from a `Date` header. `Date`
/// is truncated to the second, so its true value lies in `[date, date + 1s)`:
/// the middle of that second is compared with the middle of the exchange.
/// Accurate to about ±0.5 s plus half the round trip.
pub fn offset_from_date(date: OffsetDateTime, r: &Receipt) -> time::Duration {
    (date + time::Duration::milliseconds(500)) - r.midpoint()
}

/// The server's clock minus the probe's from a fresh token's `iat`. An
/// integer `iat` is truncated like `Date` (the middle of its second is used);
/// a fractional one is taken as is.
pub fn offset_from_iat(iat: OffsetDateTime, r: &Receipt) -> time::Duration {
    let whole = iat.nanosecond() == 0;
    let iat = if whole {
        iat + time::Duration::milliseconds(500)
    } else {
        iat
    };
    iat - r.midpoint()
}

/// True when `offset` is beyond `tolerance` either way.
pub fn skewed(offset: time::Duration, tolerance: Duration) -> bool {
    offset.unsigned_abs() > tolerance
}

/// Reasons a declaration cannot give an expiry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// `expires_in` negative, not finite, or beyond ten years.
    #[error("expires_in {0} is not a number of seconds between 0 and 10 years")]
    BadExpiresIn(String),
    /// The expiry lies before issuance.
    #[error("the declared expiry {expires} is before issuance {issued}")]
    ExpiresBeforeIssued {
        /// Expiry (RFC 3339).
        expires: String,
        /// Issuance (RFC 3339).
        issued: String,
    },
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The validity of a credential received in `r`. `offset` is the server's
/// clock minus the probe's (from [`offset_from_date`]), `None` when unknown
/// (treated as zero: no correction).
///
/// - `expires_in`: from receipt, or from `Date − offset` with [`Base::ServerDate`].
/// - JWT with `iat`: lifetime `exp − iat` from receipt (a fresh token; immune
///   to skew). Without `iat`: `exp − offset`.
/// - `expires_at`: `expires_at − offset`.
pub fn expiry(
    declared: Declared,
    r: &Receipt,
    base: Base,
    offset: Option<time::Duration>,
) -> Result<Expiry, ClockError> {
    let offset = offset.unwrap_or(time::Duration::ZERO);
    let issued_at = r.received_at;
    let (issued_at, expires_at) = match declared {
        Declared::ExpiresIn(secs) => {
            let d = seconds(secs)?;
            let start = match (base, r.server_date) {
                (Base::ServerDate, Some(date)) => date - offset,
                _ => issued_at,
            };
            (start, start + d)
        }
        Declared::Jwt {
            iat: Some(iat),
            exp,
        } => (issued_at, issued_at + (exp - iat)),
        Declared::Jwt { iat: None, exp } => (issued_at, exp - offset),
        Declared::ExpiresAt(at) => (issued_at, at - offset),
    };
    if expires_at < issued_at {
        return Err(ClockError::ExpiresBeforeIssued {
            expires: rfc3339(expires_at),
            issued: rfc3339(issued_at),
        });
    }
    Ok(Expiry {
        issued_at,
        expires_at,
        lifetime: expires_at - issued_at,
    })
}

/// A duration of `secs` seconds, bounded to ten years.
pub fn seconds(secs: f64) -> Result<time::Duration, ClockError> {
    if !secs.is_finite() || secs < 0.0 || secs > MAX_LIFETIME.as_secs_f64() {
        return Err(ClockError::BadExpiresIn(secs.to_string()));
    }
    Ok(time::Duration::seconds_f64(secs))
}

/// An epoch number (JWT NumericDate, `expires_at` as a number): seconds,
/// fractions allowed, or milliseconds above 10^11.
pub fn epoch(v: f64) -> Option<OffsetDateTime> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    // Microseconds: an f64 epoch carries no more, and rounding there keeps
    // `1738268460.25` exactly a quarter second.
    let micros = if v > EPOCH_MILLIS_THRESHOLD {
        (v * 1e3).round() as i128
    } else {
        (v * 1e6).round() as i128
    };
    OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).ok()
}

/// A timestamp from JSON: RFC 3339 with an offset (any zone), epoch seconds
/// or milliseconds as a number or numeric string, or an HTTP-date. A naive
/// date-time without a zone is rejected (`None`): its zone would be a guess.
pub fn timestamp(v: &serde_json::Value) -> Option<OffsetDateTime> {
    match v {
        serde_json::Value::Number(n) => epoch(n.as_f64()?),
        serde_json::Value::String(s)
            if !s.is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            epoch(s.trim().parse().ok()?)
        }
        _ => freshness::parse(v),
    }
}

/// A number of seconds from JSON (`expires_in`): a number or numeric string.
pub fn seconds_value(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// When to renew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewWhen {
    /// This long before the declared expiry.
    Before(Duration),
    /// At this fraction of the declared lifetime (0 < f < 1).
    Fraction(f64),
}

/// The instant a credential should be renewed (probe clock), never before
/// its issuance.
pub fn renew_at(e: &Expiry, when: RenewWhen) -> OffsetDateTime {
    let at = match when {
        RenewWhen::Before(d) => e.expires_at - d,
        RenewWhen::Fraction(f) => e.issued_at + e.lifetime * f,
    };
    at.max(e.issued_at)
}

/// True when two declared lifetimes differ meaningfully: by more than 500 ms
/// and more than 1% of the first (so `expires_at` rounding and network delay
/// do not count, a vendor going from 24 h to 1 h does).
pub fn lifetime_changed(first: time::Duration, now: time::Duration) -> bool {
    let delta = (now - first).unsigned_abs();
    delta > Duration::from_millis(500)
        && delta.as_secs_f64() > first.unsigned_abs().as_secs_f64() * 0.01
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn receipt(at: OffsetDateTime, date: Option<OffsetDateTime>) -> Receipt {
        Receipt {
            sent_at: at - time::Duration::milliseconds(40),
            received_at: at,
            server_date: date,
        }
    }

    const NOW: OffsetDateTime = datetime!(2025-01-30 20:21:00.250 UTC);

    #[test]
    fn expires_in_counts_from_receipt() {
        let e = expiry(
            Declared::ExpiresIn(3600.0),
            &receipt(NOW, None),
            Base::Receipt,
            None,
        )
        .unwrap();
        assert_eq!(e.issued_at, NOW);
        assert_eq!(e.expires_at, datetime!(2025-01-30 21:21:00.250 UTC));
        assert_eq!(e.lifetime, time::Duration::hours(1));
    }

    #[test]
    fn expires_in_from_server_date_is_converted_to_the_probe_clock() {
        // The server runs 30 s ahead; its Date says 20:21:30 while the probe reads 20:21:00.25.
        let date = datetime!(2025-01-30 20:21:30 UTC);
        let r = receipt(NOW, Some(date));
        let off = offset_from_date(date, &r);
        assert_eq!(off, time::Duration::milliseconds(30_270));
        let e = expiry(Declared::ExpiresIn(60.0), &r, Base::ServerDate, Some(off)).unwrap();
        // Date − offset is the probe's 20:20:59.73: the server's second, not the probe's.
        assert_eq!(e.expires_at, datetime!(2025-01-30 20:21:59.730 UTC));
        // Adding the offset instead of subtracting it (the incident's class of bug)
        // would give 20:23:00.27: two minutes late, every 401 in between unexplained.
        assert_ne!(e.expires_at, date + off + time::Duration::seconds(60));
    }

    #[test]
    fn absolute_expiry_in_another_zone_is_the_same_instant() {
        // CST: 14:21 at −06:00 is 20:21 UTC. Reading the wall time as UTC
        // would put the expiry six hours late.
        let at = timestamp(&json!("2025-01-30T15:21:00.250-06:00")).unwrap();
        let e = expiry(
            Declared::ExpiresAt(at),
            &receipt(NOW, None),
            Base::Receipt,
            None,
        )
        .unwrap();
        assert_eq!(e.expires_at, datetime!(2025-01-30 21:21:00.250 UTC));
        assert_eq!(e.lifetime, time::Duration::hours(1));
        let plus = timestamp(&json!("2025-01-31T06:51:00.250+09:30")).unwrap();
        assert_eq!(plus, e.expires_at);
    }

    #[test]
    fn naive_local_times_are_rejected_not_guessed() {
        assert_eq!(timestamp(&json!("2025-01-30T14:21:00")), None);
        assert_eq!(timestamp(&json!("2025-01-30 14:21:00")), None);
    }

    #[test]
    fn absolute_expiry_is_corrected_by_the_server_offset() {
        // Server 30 s ahead declares expiry at its 21:21:30.25 = probe 21:21:00.25.
        let at = datetime!(2025-01-30 21:21:30.250 UTC);
        let off = time::Duration::seconds(30);
        let e = expiry(
            Declared::ExpiresAt(at),
            &receipt(NOW, None),
            Base::Receipt,
            Some(off),
        )
        .unwrap();
        assert_eq!(e.lifetime, time::Duration::hours(1));
    }

    #[test]
    fn epoch_seconds_and_milliseconds_are_the_same_instant() {
        let s = epoch(1_738_268_460.0).unwrap();
        let ms = epoch(1_738_268_460_000.0).unwrap();
        assert_eq!(s, ms);
        assert_eq!(s, datetime!(2025-01-30 20:21:00 UTC));
        assert_eq!(timestamp(&json!("1738268460000")).unwrap(), s);
        assert_eq!(
            epoch(1_738_268_460.25).unwrap(),
            datetime!(2025-01-30 20:21:00.25 UTC)
        );
        assert_eq!(epoch(-1.0), None);
        assert_eq!(epoch(f64::NAN), None);
    }

    #[test]
    fn jwt_lifetime_is_exp_minus_iat_from_receipt_whatever_the_skew() {
        // Server 2 h behind: iat/exp far in the probe's past, lifetime still 1 h.
        let iat = datetime!(2025-01-30 18:21:00 UTC);
        let exp = datetime!(2025-01-30 19:21:00 UTC);
        let e = expiry(
            Declared::Jwt {
                iat: Some(iat),
                exp,
            },
            &receipt(NOW, None),
            Base::Receipt,
            None,
        )
        .unwrap();
        assert_eq!(e.expires_at, NOW + time::Duration::hours(1));
        let off = offset_from_iat(iat, &receipt(NOW, None));
        assert_eq!(
            off,
            time::Duration::milliseconds(-(2 * 3_600_000 - 500 + 230))
        );
        assert!(skewed(off, Duration::from_secs(5)));
        // Without iat the offset must be known.
        let e = expiry(
            Declared::Jwt { iat: None, exp },
            &receipt(NOW, None),
            Base::Receipt,
            Some(time::Duration::hours(-2)),
        )
        .unwrap();
        assert_eq!(e.expires_at, datetime!(2025-01-30 21:21:00 UTC));
    }

    #[test]
    fn date_offset_uses_the_middle_of_the_truncated_second() {
        // In-sync clocks: Date 20:21:00 for a response produced at 20:21:00.23.
        let r = receipt(NOW, Some(datetime!(2025-01-30 20:21:00 UTC)));
        let off = offset_from_date(datetime!(2025-01-30 20:21:00 UTC), &r);
        assert_eq!(off, time::Duration::milliseconds(270));
        assert!(!skewed(off, Duration::from_secs(5)));
    }

    #[test]
    fn bad_declarations_are_errors() {
        let r = receipt(NOW, None);
        assert!(expiry(Declared::ExpiresIn(-1.0), &r, Base::Receipt, None).is_err());
        assert!(expiry(Declared::ExpiresIn(f64::INFINITY), &r, Base::Receipt, None).is_err());
        let past = NOW - time::Duration::seconds(1);
        assert!(matches!(
            expiry(Declared::ExpiresAt(past), &r, Base::Receipt, None),
            Err(ClockError::ExpiresBeforeIssued { .. })
        ));
    }

    #[test]
    fn renewal_points() {
        let e = Expiry {
            issued_at: NOW,
            expires_at: NOW + time::Duration::hours(1),
            lifetime: time::Duration::hours(1),
        };
        assert_eq!(
            renew_at(&e, RenewWhen::Before(Duration::from_secs(30))),
            NOW + time::Duration::seconds(3570)
        );
        assert_eq!(
            renew_at(&e, RenewWhen::Fraction(0.8)),
            NOW + time::Duration::minutes(48)
        );
        // A margin longer than the lifetime renews at once, never before issuance.
        assert_eq!(
            renew_at(&e, RenewWhen::Before(Duration::from_secs(7200))),
            NOW
        );
    }

    #[test]
    fn lifetime_changes_ignore_jitter_but_not_real_changes() {
        let h = time::Duration::hours;
        assert!(lifetime_changed(h(24), h(1)));
        assert!(!lifetime_changed(
            h(1),
            h(1) - time::Duration::milliseconds(300)
        ));
        assert!(!lifetime_changed(h(1), h(1) - time::Duration::seconds(20)));
        assert!(lifetime_changed(
            time::Duration::seconds(2),
            time::Duration::seconds(1)
        ));
    }
}
