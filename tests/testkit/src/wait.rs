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

    #[tokio::test]
    async fn within_gives_up_after_the_timeout_having_tried_at_the_deadline() {
        let calls = AtomicU32::new(0);
        let start = std::time::Instant::now();
        let got = within(Duration::from_millis(100), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            false
        })
        .await;
        assert_eq!(got, None);
        assert!(start.elapsed() >= Duration::from_millis(100));
        // Polled repeatedly, not once then slept through (at most 6 on time).
        let n = calls.load(Ordering::SeqCst);
        assert!((3..=6).contains(&n), "{n} calls");
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for the impossible")]
    async fn eventually_panics_naming_what_it_waited_for() {
        eventually("the impossible", Duration::from_millis(50), || async {
            false
        })
        .await;
    }
}
