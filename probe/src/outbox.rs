//! The outbox: results waiting for the controller's acknowledgement.
//!
//! Design notes:
//! - Every result gets a per-probe `sequence`, strictly increasing, and a
//!   UUIDv7 `result_id`. The first sequence of a process is the Unix time in
//!   microseconds at start, so sequences keep increasing across restarts
//!   without persisted state.
//! - A result stays until an ack with `through_sequence >= sequence` arrives.
//!   The controller acks only after its commit, and ignores ids it already
//!   stored, so resending everything unacked after a reconnect is safe.
//! - Bounded: beyond `capacity` the oldest result is dropped and counted, and
//!   a warning is logged at most once a minute. Checks never stop.
//! - This version keeps results in memory: a probe restart loses what was not
//!   yet acknowledged. (The durable, on-disk outbox is a separate issue.)

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use outpost_proto::v1::{CheckResult, PhaseTimings};
use tokio::sync::Notify;

use crate::check::Outcome;

struct Inner {
    queue: VecDeque<CheckResult>,
    /// Index in `queue` of the first result not yet sent on the current stream.
    unsent: usize,
    last_drop_log: Option<Instant>,
}

/// Results waiting for acknowledgement.
pub struct Outbox {
    inner: Mutex<Inner>,
    capacity: usize,
    next_sequence: AtomicU64,
    dropped: AtomicU64,
    notify: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// Converts an outcome to its wire form.
pub fn to_wire(outcome: &Outcome, version: u64, sequence: u64) -> CheckResult {
    let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64).unwrap_or(0);
    let (code, message) = match &outcome.result {
        Ok(()) => (String::new(), String::new()),
        Err(f) => (f.code.as_str().to_owned(), f.message.clone()),
    };
    CheckResult {
        result_id: uuid::Uuid::now_v7().to_string(),
        sequence,
        check_id: outcome.check_id.clone(),
        assignment_version: version,
        kind: outcome.kind.to_owned(),
        started_at_unix_ms: (outcome.started_at.unix_timestamp_nanos() / 1_000_000) as i64,
        ok: outcome.ok(),
        failure_code: code,
        failure_message: message,
        phases: Some(PhaseTimings {
            dns_us: us(outcome.phases.dns),
            connect_us: us(outcome.phases.connect),
            tls_us: us(outcome.phases.tls),
            first_byte_us: us(outcome.phases.first_byte),
            total_us: outcome.phases.total.as_micros() as u64,
        }),
        details_json: outcome.details.to_string(),
    }
}

impl Outbox {
    /// An empty outbox holding at most `capacity` results.
    pub fn new(capacity: usize) -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                unsent: 0,
                last_drop_log: None,
            }),
            capacity: capacity.max(1),
            next_sequence: AtomicU64::new(start),
            dropped: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a result; returns its sequence.
    pub fn push(&self, outcome: &Outcome, version: u64) -> u64 {
        let seq = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let wire = to_wire(outcome, version, seq);
        let mut g = self.lock();
        g.queue.push_back(wire);
        if g.queue.len() > self.capacity {
            g.queue.pop_front();
            g.unsent = g.unsent.saturating_sub(1);
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let now = Instant::now();
            if g.last_drop_log
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
            {
                g.last_drop_log = Some(now);
                tracing::warn!(
                    dropped_total = total,
                    capacity = self.capacity,
                    "outbox full: dropping oldest results"
                );
            }
        }
        drop(g);
        self.notify.notify_one();
        seq
    }

    /// Up to `max` results not yet sent on this stream, marked as sent.
    pub fn take_unsent(&self, max: usize) -> Vec<CheckResult> {
        let mut g = self.lock();
        let start = g.unsent;
        let end = (start + max).min(g.queue.len());
        g.unsent = end;
        g.queue.range(start..end).cloned().collect()
    }

    /// Forgets every result with `sequence <= through`.
    pub fn ack(&self, through: u64) -> usize {
        let mut g = self.lock();
        let mut n = 0;
        while g.queue.front().is_some_and(|r| r.sequence <= through) {
            g.queue.pop_front();
            g.unsent = g.unsent.saturating_sub(1);
            n += 1;
        }
        n
    }

    /// A new stream starts: everything unacknowledged is sent again.
    pub fn rewind(&self) {
        self.lock().unsent = 0;
    }

    /// Waits until something is pushed.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Results waiting for an ack.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when nothing waits for an ack.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when some result was not yet sent on this stream.
    pub fn has_unsent(&self) -> bool {
        let g = self.lock();
        g.unsent < g.queue.len()
    }

    /// Results dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Highest sequence handed out so far.
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence.load(Ordering::Relaxed).saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Outcome, Phases};

    fn outcome() -> Outcome {
        Outcome {
            check_id: "c".into(),
            kind: "http",
            started_at: time::OffsetDateTime::now_utc(),
            phases: Phases::default(),
            result: Ok(()),
            details: serde_json::json!({}),
        }
    }

    #[test]
    fn ack_removes_through_sequence_and_rewind_resends_the_rest() {
        let o = Outbox::new(10);
        let s: Vec<u64> = (0..4).map(|_| o.push(&outcome(), 1)).collect();
        assert_eq!(o.take_unsent(3).len(), 3);
        assert_eq!(o.ack(s[1]), 2);
        assert_eq!(o.len(), 2);
        assert_eq!(
            o.take_unsent(10)
                .iter()
                .map(|r| r.sequence)
                .collect::<Vec<_>>(),
            vec![s[3]]
        );
        o.rewind();
        assert_eq!(
            o.take_unsent(10)
                .iter()
                .map(|r| r.sequence)
                .collect::<Vec<_>>(),
            vec![s[2], s[3]]
        );
    }

    #[test]
    fn full_outbox_drops_oldest_and_counts() {
        let o = Outbox::new(2);
        let s: Vec<u64> = (0..5).map(|_| o.push(&outcome(), 1)).collect();
        assert_eq!(o.dropped(), 3);
        let left: Vec<u64> = o.take_unsent(10).iter().map(|r| r.sequence).collect();
        assert_eq!(left, vec![s[3], s[4]]);
    }
}
