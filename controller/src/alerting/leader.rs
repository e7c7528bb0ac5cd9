//! Which replica evaluates alerts: the holder of the evaluator lease.
//!
//! Design note.
//! - **Why a lease row.** Several replicas share one PostgreSQL database;
//!   exactly one may evaluate alerts at a time. An advisory lock lives as
//!   long as its connection, and PostgreSQL notices a dead connection only
//!   when TCP does (minutes, without keepalives), while a replica cut off
//!   from the database cannot tell when its lock was released. A lease row
//!   (`leases`, [`crate::store::Lease`]) expires on the database's clock at
//!   a known time, so the holder knows when to stop and the others know
//!   when to take over.
//! - **Loop.** Every replica runs [`run`]: the holder renews every third of
//!   `[alerting] evaluator_lease`; the others try to take over as often
//!   (at most every second), which succeeds only once the lease has lapsed
//!   (database clock). Taking over increments the epoch.
//! - **Stopping before the next leader starts.** A renewal that succeeded
//!   makes this replica the evaluator until `start + lease − margin` on its
//!   own monotonic clock, where `start` is taken *before* the renewal was
//!   sent: the database set the expiry from a later instant, so this
//!   replica's deadline comes first (clock *rates* are assumed equal within
//!   the margin, not the clocks). When the deadline passes without a new
//!   renewal (database down, connection cut, renewal timed out) it clears
//!   its epoch and the evaluator stops.
//! - **Fencing.** A deposed replica may still be inside an evaluation when
//!   its deadline passes. Every alert change therefore checks the lease row
//!   in its own transaction (`store/lease.rs`): a stale epoch writes
//!   nothing. The epoch is recorded on the alert and its notifications.
//! - **Shutdown.** A clean stop gives the lease up, so another replica
//!   takes over within one poll instead of after the lease.
//! - **SQLite.** One process owns the file: it is always the evaluator and
//!   this loop only publishes the gauge.

use std::time::Duration;

use tokio::time::Instant;

use crate::Controller;

/// Most time between two takeover attempts of a replica that is not the evaluator.
pub const MAX_POLL: Duration = Duration::from_secs(1);

/// How long before the lease's expiry the holder stops evaluating:
/// a tenth of the lease, at most 1 s.
pub fn margin(lease: Duration) -> Duration {
    (lease / 10).min(Duration::from_secs(1))
}

/// Holds, renews and gives up the evaluator lease until shutdown.
pub async fn run(ctl: Controller, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let store = ctl.store().clone();
    publish(&ctl);
    if !store.is_shared() {
        return;
    }
    let holder = ctl.replica().to_owned();
    let mut deadline: Option<Instant> = None;
    loop {
        let lease = ctl.config().evaluator_lease;
        let renew = lease / 3;
        let poll = if store.is_leader() {
            renew
        } else {
            renew.min(MAX_POLL)
        };
        let start = Instant::now();
        // Never wait on the database past our own deadline.
        let budget = deadline
            .map(|d| d.saturating_duration_since(start))
            .unwrap_or(poll)
            .min(poll);
        let attempt = tokio::select! {
            r = tokio::time::timeout(budget, store.acquire_lease(&holder, lease)) => r,
            _ = crate::stopped(&mut shutdown) => break,
        };
        match attempt {
            Ok(Ok(Some(epoch))) => {
                deadline = Some(start + lease.saturating_sub(margin(lease)));
                if store.epoch() != epoch {
                    store.set_epoch(epoch);
                    tracing::info!(epoch, replica = %holder, "this replica is now the alert evaluator");
                    publish(&ctl);
                    ctl.request_evaluation(
                        ctl.config()
                            .checks
                            .iter()
                            .map(|c| c.raw.id.clone())
                            .collect(),
                    );
                }
            }
            Ok(Ok(None)) => {
                if store.is_leader() {
                    tracing::warn!(
                        epoch = store.epoch(),
                        "another replica holds the evaluator lease; stepping down"
                    );
                }
                step_down(&ctl, &mut deadline);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, leader = store.is_leader(), "cannot renew the evaluator lease")
            }
            Err(_) => tracing::warn!(
                leader = store.is_leader(),
                "renewing the evaluator lease timed out"
            ),
        }
        let mut wake = start + poll;
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = crate::stopped(&mut shutdown) => break,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                epoch = store.epoch(),
                "evaluator lease not renewed in time; stopped evaluating"
            );
            step_down(&ctl, &mut deadline);
        }
    }
    if store.is_leader() {
        let epoch = store.epoch();
        match store.release_lease(&holder).await {
            Ok(()) => tracing::info!(epoch, "gave up the evaluator lease"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot give up the evaluator lease; it lapses by itself")
            }
        }
    }
    store.set_epoch(0);
    publish(&ctl);
}

fn step_down(ctl: &Controller, deadline: &mut Option<Instant>) {
    *deadline = None;
    if ctl.store().is_leader() {
        ctl.store().set_epoch(0);
        publish(ctl);
    }
}

/// `outpost_evaluator_leader` (1 on the evaluator) and `outpost_evaluator_epoch`.
fn publish(ctl: &Controller) {
    let store = ctl.store();
    ctl.metrics().set(
        "outpost_evaluator_leader",
        &[],
        if store.is_leader() { 1.0 } else { 0.0 },
    );
    ctl.metrics()
        .set("outpost_evaluator_epoch", &[], store.epoch() as f64);
}

/// `GET /api/v1/evaluator`: whether this replica evaluates alerts, under
/// which epoch, and its replica id. Answered from memory, so it also
/// answers while the database does not (a fenced replica shows
/// `"leader": false`).
pub async fn status(
    axum::extract::State(ctl): axum::extract::State<Controller>,
) -> axum::Json<serde_json::Value> {
    let store = ctl.store();
    axum::Json(serde_json::json!({
        "leader": store.is_leader(),
        "epoch": store.epoch(),
        "replica": ctl.replica(),
        "engine": store.engine().as_str(),
    }))
}
