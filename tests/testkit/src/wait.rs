//! Waiting for something that happens in another task or process: poll a
//! condition until it holds or a deadline passes.
//!
//! ```no_run
//! # async fn demo(pager: &outpost_testkit::PagerReceiver) {
//! use std::time::Duration;
//! use outpost_testkit::wait::eventually;
//! // A condition is a `bool` ...
//! eventually("two events", Duration::from_secs(5), || async { pager.events().len() >= 2 }).await;
//! // ... or an `Option`, whose value is returned.
//! let first = eventually("an event", Duration::from_secs(5), || async {
//!     pager.events().into_iter().next()
//! })
//! .await;
//! # let _ = first; }
//! ```
//!
//! Use [`eventually`] when the test cannot go on without the condition: it
//! panics naming what it waited for. Use [`within`] when the test wants to
//! print its own diagnostics (counts, state) before failing.
//!
//! ## Time in tests
//! - Wait on the condition, never for a fixed time. A test that concludes
//!   "nothing happened" (no page, no resend) first waits for proof that the
//!   worker ran past the point in question (a counter moved, nothing left
//!   pending), then asserts the absence.
//! - Polling runs on tokio's clock, so these helpers work under
//!   `#[tokio::test(start_paused = true)]`. Pause only tests whose timers run
//!   with no socket traffic in flight: an idle paused runtime jumps to its
//!   next timer even while a loopback exchange is under way, so against real
//!   servers time races ahead of the I/O (a timeout fires before the server
//!   answered).
//! - Time-dependent logic that talks to real servers (alert confirmations
//!   and offline detection, notification retries, session expiry, DNS
//!   propagation windows) reads an injected wall clock instead: tests hand it
//!   a `ManualClock` (in `outpost_probe::clock`) and move it forward instead
//!   of sleeping.

use std::{future::Future, time::Duration};

/// How often a condition is polled.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// What a polled condition returns: `true` / `Some(value)` once it holds.
pub trait Ready {
    /// What [`eventually`] and [`within`] return once the condition holds.
    type Value;
    /// `Some` once the condition holds.
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `condition` every [`POLL_EVERY`] until it holds, and returns its
/// value; `None` once `timeout` has passed without it holding. The condition
/// is checked at least once, and once more at the deadline.
pub async fn within<R, F, Fut>(timeout: Duration, mut condition: F) -> Option<R::Value>
where
    R: Ready,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last_try = tokio::time::Instant::now() >= deadline;
        if let Some(v) = condition().await.ready() {
            return Some(v);
        }
        if last_try {
            return None;
        }
        tokio::time::sleep(POLL_EVERY.min(deadline - tokio::time::Instant::now())).await;
    }
}

/// Polls `condition` until it holds and returns its value.
///
/// # Panics
/// When `timeout` passes first: `timed out after 10s waiting for <what>`.
pub async fn eventually<R, F, Fut>(what: &str, timeout: Duration, condition: F) -> R::Value
where
    R: Ready,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    match within(timeout, condition).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let v = eventually("the third call", Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n >= 3).then_some(n)
        })
        .await;
        assert_eq!(v, 3);
    }

    // Paused time (no sockets here): the polls land exactly on their ticks.
    #[tokio::test(start_paused = true)]
    async fn within_gives_up_after_the_timeout_having_tried_at_the_deadline() {
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let got = within(Duration::from_millis(100), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            false
        })
        .await;
        assert_eq!(got, None);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        // At 0, 20, 40, 60, 80 ms and once more at the deadline.
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn within_returns_as_soon_as_the_condition_holds() {
        let start = tokio::time::Instant::now();
        let ready_at = start + Duration::from_millis(50);
        let got = within(Duration::from_secs(10), || async {
            (tokio::time::Instant::now() >= ready_at).then_some("ready")
        })
        .await;
        assert_eq!(got, Some("ready"));
        // The first poll at or after 50 ms: 60 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(60));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 50ms waiting for the impossible")]
    async fn eventually_panics_naming_what_it_waited_for() {
        eventually("the impossible", Duration::from_millis(50), || async {
            false
        })
        .await;
    }
}
