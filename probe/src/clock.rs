//! The wall clock that time-dependent logic reads: the system's in a running
//! probe or controller, a [`ManualClock`] in tests, which stands still until
//! the test moves it.
//!
//! - **What reads it.** The probe's checks (a run's `started_at`, session
//!   receipts, expiry and renewal decisions, DNS propagation windows,
//!   through [`RunContext::clock`](crate::check::RunContext::clock)) and the
//!   controller (every time it stamps or compares: last seen, received,
//!   freshness, `offline_after`, notification due times, rate limits,
//!   certificate expiry). Deadlines and timeouts of network operations stay
//!   on tokio's clock: they bound real I/O.
//! - **Why not `tokio::time::pause`.** These parts talk to real servers on
//!   loopback, and a paused runtime that is idle jumps to its next timer even
//!   while an exchange is in flight, so time would race ahead of the I/O.
//!   Wall-clock time (`OffsetDateTime`, JWT `exp`) is not tokio's clock
//!   anyway. A manual clock moves only when the test says so.
//! - **Waking.** Moving a manual clock notifies every [`Moved`], so workers
//!   that wait for something to fall due (the controller's evaluator and
//!   delivery worker) look again at once. The system clock never notifies:
//!   those workers keep their own tickers.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;
use tokio::sync::watch;

/// Where "now" comes from. Cheap to clone; the default is the system clock.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<watch::Sender<OffsetDateTime>>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(m) => write!(f, "Clock::Manual({})", *m.borrow()),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The current time.
    pub fn now_utc(&self) -> OffsetDateTime {
        match &self.manual {
            None => OffsetDateTime::now_utc(),
            Some(m) => *m.borrow(),
        }
    }

    /// The current time in Unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        unix_ms(self.now_utc())
    }

    /// Notified each time a manual clock is moved; never for the system clock.
    pub fn moved(&self) -> Moved {
        Moved(self.manual.as_ref().map(|m| m.subscribe()))
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it: for
/// tests of time-dependent behaviour (and replays). Hand [`ManualClock::clock`]
/// to the code under test; every clone reads the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<watch::Sender<OffsetDateTime>>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: OffsetDateTime) -> ManualClock {
        ManualClock(Arc::new(watch::Sender::new(start)))
    }

    /// A clock standing at the system's current time, to the millisecond
    /// (so millisecond arithmetic on it is exact).
    pub fn starting_now() -> ManualClock {
        let now = OffsetDateTime::now_utc();
        ManualClock::new(
            now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
                .unwrap_or(now),
        )
    }

    /// The clock to hand to the code under test.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(self.0.clone()),
        }
    }

    /// The time it stands at.
    pub fn now_utc(&self) -> OffsetDateTime {
        *self.0.borrow()
    }

    /// The time it stands at, in Unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        unix_ms(self.now_utc())
    }

    /// Moves the clock forward by `by` and wakes every [`Moved`].
    pub fn advance(&self, by: Duration) {
        self.0.send_modify(|now| *now += by);
    }
}

/// Waits for a manual clock to move (see [`Clock::moved`]).
#[derive(Debug)]
pub struct Moved(Option<watch::Receiver<OffsetDateTime>>);

impl Moved {
    /// Completes when the clock was moved since the last call; never for the
    /// system clock. Cancel-safe.
    pub async fn changed(&mut self) {
        if let Some(rx) = &mut self.0
            && rx.changed().await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Unix milliseconds of `t` (saturating).
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_every_clone_reads_it() {
        let manual = ManualClock::new(time::macros::datetime!(2025-01-30 14:21:00 UTC));
        let (a, b) = (manual.clock(), manual.clock());
        assert_eq!(a.now_utc(), b.now_utc());
        assert_eq!(a.unix_ms(), 1_738_246_860_000);
        manual.advance(Duration::from_millis(1500));
        assert_eq!(b.unix_ms(), 1_738_246_861_500);
        assert_eq!(manual.now_utc(), a.now_utc());
    }

    #[test]
    fn starting_now_is_whole_milliseconds_near_the_system_time() {
        let manual = ManualClock::starting_now();
        assert_eq!(manual.now_utc().nanosecond() % 1_000_000, 0);
        let drift = Clock::system().now_utc() - manual.now_utc();
        assert!(drift >= time::Duration::ZERO && drift < time::Duration::seconds(5));
    }

    #[tokio::test]
    async fn moving_a_manual_clock_wakes_its_watchers() {
        let manual = ManualClock::starting_now();
        let mut moved = manual.clock().moved();
        let waiter = tokio::spawn(async move { moved.changed().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        manual.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the move")
            .expect("the waiter did not panic");
    }

    // Paused time (no I/O here): a whole day passes at once, and the
    // timeout firing proves the wait was still pending after it.
    #[tokio::test(start_paused = true)]
    async fn the_system_clock_never_notifies() {
        let mut moved = Clock::system().moved();
        let day = Duration::from_secs(86_400);
        let waited = tokio::time::timeout(day, moved.changed()).await;
        assert!(waited.is_err());
    }
}
