//! Per-routing-key rate limit: a token bucket with an explicit clock.
//!
//! PagerDuty accepts about 120 events a minute per routing key and answers
//! 429 beyond it. We stay under it instead of finding out: a bucket holds
//! `burst = max(1, events_per_minute / 4)` tokens and refills the rest of
//! the minute's allowance evenly (`events_per_minute - burst` per minute,
//! at least 1), so no 60-second window ever carries more than
//! `events_per_minute` events (for `events_per_minute ≥ 2`). A notification
//! that finds the bucket empty stays pending in the outbox until a token is
//! due — delayed, never dropped. Buckets live in memory: after a restart a
//! full bucket is the worst case, i.e. one extra burst.

use std::{collections::HashMap, sync::Mutex};

/// A token bucket; time is unix milliseconds passed in by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    per_ms: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// A full bucket for `events_per_minute` (≥ 1).
    pub fn new(events_per_minute: u32, now_ms: i64) -> TokenBucket {
        let epm = f64::from(events_per_minute.max(1));
        let capacity = (epm / 4.0).floor().max(1.0);
        let per_ms = (epm - capacity).max(1.0) / 60_000.0;
        TokenBucket {
            capacity,
            per_ms,
            tokens: capacity,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: i64) {
        let elapsed = now_ms.saturating_sub(self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Takes a token, or says how many milliseconds until one is due.
    pub fn try_take(&mut self, now_ms: i64) -> Result<(), i64> {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) / self.per_ms).ceil();
            Err((wait as i64).max(1))
        }
    }
}

/// Buckets by routing key. Keys are held as a hash, never in clear, so the
/// limiter cannot leak one through `Debug`.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<u64, (u32, TokenBucket)>>,
}

impl Limiter {
    /// Takes a token from the bucket of `key`; on a changed limit the bucket starts afresh.
    pub fn try_take(&self, key: &str, events_per_minute: u32, now_ms: i64) -> Result<(), i64> {
        let id = outpost_probe::scheduler::fnv1a(&["routing-key", key]);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let entry = buckets.entry(id).or_insert_with(|| {
            (
                events_per_minute,
                TokenBucket::new(events_per_minute, now_ms),
            )
        });
        if entry.0 != events_per_minute {
            *entry = (
                events_per_minute,
                TokenBucket::new(events_per_minute, now_ms),
            );
        }
        entry.1.try_take(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_limit_in_any_minute() {
        let mut b = TokenBucket::new(120, 0);
        let mut sent: Vec<i64> = Vec::new();
        let mut now = 0;
        while now < 5 * 60_000 {
            match b.try_take(now) {
                Ok(()) => sent.push(now),
                Err(wait) => now += wait,
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|u| **u < t + 60_000).count();
            assert!(
                in_window <= 120,
                "{in_window} events in the minute from {t}"
            );
        }
        // Sustained: roughly the refill rate (90/min) plus the first burst (30).
        assert!(sent.len() >= 5 * 90, "{}", sent.len());
    }

    #[test]
    fn empty_bucket_says_how_long_to_wait() {
        let mut b = TokenBucket::new(8, 0); // burst 2, 6 per minute
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Err(10_000));
        assert!(matches!(b.try_take(9_999), Err(w) if w <= 2));
        assert_eq!(b.try_take(10_000), Ok(()));
    }

    #[test]
    fn keys_have_separate_buckets() {
        let l = Limiter::default();
        assert!(l.try_take("a", 4, 0).is_ok());
        assert!(l.try_take("a", 4, 0).is_err());
        assert!(l.try_take("b", 4, 0).is_ok());
    }
}
