//! What a loopback receiver accepted, in arrival order, and a wait for the
//! n-th: the capture every receiver (PagerDuty, Slack, Opsgenie) shares.

use std::{sync::Mutex, time::Duration};

use tokio::sync::watch;

use crate::pager::lock;

/// Accepted items of a receiver, with a wait for a count of them.
#[derive(Debug)]
pub struct Recorder<T> {
    items: Mutex<Vec<T>>,
    count: watch::Sender<usize>,
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Recorder {
            items: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        }
    }
}

impl<T: Clone> Recorder<T> {
    /// Records `item` and wakes the waiters.
    pub fn push(&self, item: T) {
        let n = {
            let mut items = lock(&self.items);
            items.push(item);
            items.len()
        };
        self.count.send_replace(n);
    }

    /// Everything recorded, in arrival order.
    pub fn all(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Waits until at least `n` items were recorded, or `timeout`; returns
    /// what was recorded by then (a test asserts on the count).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<T> {
        let mut rx = self.count.subscribe();
        // On timeout, return what arrived.
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        self.all()
    }
}
