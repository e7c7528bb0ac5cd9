//! SQL of `notifications`, the persisted outbox: queueing (inside the
//! transaction of the alert change or the event it belongs to), handing out
//! due notifications in order (invariant 5 of the module note), and
//! recording each delivery attempt: the notification's own counters and a
//! row of `notification_attempts`, in one transaction.

use super::{Engine, Store, StoreError, Tx, now_ms};
use crate::alerting::{
    Action,
    sink::{AttemptOutcome, NotificationState},
};

/// One delivery attempt, as recorded in `notification_attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// Sink name.
    pub sink: &'a str,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// The sink's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What happened, bounded, the sink's secrets scrubbed.
    pub excerpt: &'a str,
}

/// A recorded attempt (API).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRow {
    /// Notification.
    pub notification_id: i64,
    /// Sink.
    pub sink: String,
    /// When.
    pub at_ms: i64,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// HTTP status.
    pub status: Option<i64>,
    /// Excerpt.
    pub excerpt: String,
}

/// A sink whose deliveries fail since its last success ([`Store::failing_sinks`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FailingSink {
    /// Sink.
    pub sink: String,
    /// First failed attempt since the last delivered one.
    pub since_ms: i64,
    /// Whether one of those was rejected or given up (not retried).
    #[sqlx(try_from = "super::Flag")]
    pub permanent: bool,
    /// The newest attempt's status.
    pub status: Option<i64>,
    /// The newest attempt's excerpt.
    pub excerpt: String,
}

async fn record_attempt(
    tx: &mut Tx<'_>,
    notification_id: i64,
    a: &Attempt<'_>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO notification_attempts (notification_id, sink, at_ms, outcome, status, excerpt) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(notification_id)
    .bind(a.sink)
    .bind(now)
    .bind(a.outcome)
    .bind(a.status.map(i64::from))
    .bind(a.excerpt)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A pending notification.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Notification {
    /// Id (delivery order).
    pub id: i64,
    /// Alert (`None` for an event's `info` notification).
    pub alert_id: Option<i64>,
    /// Event of an `info` notification.
    pub event_id: Option<i64>,
    /// Sink name.
    pub sink: String,
    /// Trigger, resolve or info.
    pub action: Action,
    /// Dedup key.
    pub dedup_key: String,
    /// Sink-neutral event (JSON).
    pub payload_json: String,
    /// Attempts so far.
    #[sqlx(try_from = "i64")]
    pub attempts: u32,
    /// Queued at.
    pub created_ms: i64,
    /// First delivery attempt (the give-up horizon counts from here).
    pub first_attempt_ms: Option<i64>,
}

/// A notification's delivery state (API).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationRow {
    /// Id.
    pub id: i64,
    /// Alert.
    pub alert_id: i64,
    /// Sink name.
    pub sink: String,
    /// Trigger or resolve.
    pub action: Action,
    /// Pending, delivered or failed.
    pub state: NotificationState,
    /// Attempts so far.
    #[sqlx(try_from = "i64")]
    pub attempts: u32,
    /// Next attempt (pending only).
    pub next_attempt_ms: i64,
    /// Last error (status and a snippet of the sink's answer).
    pub last_error: Option<String>,
    /// Delivered at.
    pub delivered_ms: Option<i64>,
}

/// Counts of notifications by state (tests, metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    /// Waiting.
    pub pending: i64,
    /// Sent.
    pub delivered: i64,
    /// Given up.
    pub failed: i64,
}

/// Queues a notification of an alert, due at once: an evaluation run with
/// an injected future `now` (tests, replays) must not park its
/// notifications until that time comes.
#[allow(clippy::too_many_arguments)] // one argument per column of the row
pub(super) async fn queue_for_alert(
    tx: &mut Tx<'_>,
    alert_id: i64,
    sink: &str,
    action: Action,
    dedup_key: &str,
    payload_json: &str,
    now: i64,
    epoch: i64,
) -> Result<(), sqlx::Error> {
    tracing::debug!(sink, action = %action, dedup_key, epoch, "notification queued");
    sqlx::query(
        "INSERT INTO notifications (alert_id, sink, action, dedup_key, payload_json, state, attempts, next_attempt_ms, created_ms, epoch) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8)",
    )
    .bind(alert_id)
    .bind(sink)
    .bind(action)
    .bind(dedup_key)
    .bind(payload_json)
    // Due at once: an evaluation at an injected future `now` (tests of
    // certificate expiry) must not park its notifications until then.
    .bind(now.min(now_ms()))
    .bind(now)
    .bind(epoch)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues a notification of an alert group (`alert_id` NULL: it belongs to
/// every member alert of the group), due at once like an alert's.
#[allow(clippy::too_many_arguments)] // one argument per column of the row
pub(super) async fn queue_for_group(
    tx: &mut Tx<'_>,
    sink: &str,
    action: Action,
    dedup_key: &str,
    payload_json: &str,
    now: i64,
    epoch: i64,
) -> Result<(), sqlx::Error> {
    tracing::debug!(sink, action = %action, dedup_key, epoch, "group notification queued");
    sqlx::query(
        "INSERT INTO notifications (sink, action, dedup_key, payload_json, state, attempts, next_attempt_ms, created_ms, epoch) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7)",
    )
    .bind(sink)
    .bind(action)
    .bind(dedup_key)
    .bind(payload_json)
    .bind(now.min(now_ms()))
    .bind(now)
    .bind(epoch)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues the `info` notification of a new event, due at once.
pub(super) async fn queue_for_event(
    tx: &mut Tx<'_>,
    event_id: i64,
    sink: &str,
    dedup_key: &str,
    payload_json: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    tracing::debug!(sink, action = "info", dedup_key, "notification queued");
    sqlx::query(
        "INSERT INTO notifications (event_id, sink, action, dedup_key, payload_json, state, attempts, next_attempt_ms, created_ms) \
         VALUES ($1, $2, 'info', $3, $4, 'pending', 0, $5, $5)",
    )
    .bind(event_id)
    .bind(sink)
    .bind(dedup_key)
    .bind(payload_json)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Pending notifications due by `now`, each the oldest pending one of its
    /// (sink, dedup_key): a resolve never overtakes its trigger.
    pub async fn due_notifications(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT n.id, n.alert_id, n.event_id, n.sink, n.action, n.dedup_key, n.payload_json, n.attempts, \
             n.created_ms, n.first_attempt_ms FROM notifications n \
             WHERE n.state = 'pending' AND n.next_attempt_ms <= $1 \
             AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.state = 'pending' AND p.sink = n.sink \
                             AND p.dedup_key = n.dedup_key AND p.id < n.id) \
             ORDER BY n.id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Claims up to `limit` due notifications for delivery by this replica
    /// until `until` (unix ms): the same selection as
    /// [`Store::due_notifications`], skipping notifications another replica
    /// holds a claim on. On PostgreSQL the rows are picked `FOR UPDATE SKIP
    /// LOCKED`, so concurrent claimers never wait for or double-claim each
    /// other; a claim lapses at `until` (the claimer died), and recording
    /// the attempt ([`Store::mark_delivered`], `mark_retry`, `mark_failed`,
    /// `defer_notification`) ends it. Oldest first.
    pub async fn claim_notifications(
        &self,
        now: i64,
        limit: u32,
        until: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        macro_rules! claim {
            ($lock:literal) => {
                concat!(
                    "UPDATE notifications SET claimed_until_ms = $3 WHERE id IN (",
                    "SELECT n.id FROM notifications n ",
                    "WHERE n.state = 'pending' AND n.next_attempt_ms <= $1 AND n.claimed_until_ms <= $1 ",
                    "AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.state = 'pending' AND p.sink = n.sink ",
                    "AND p.dedup_key = n.dedup_key AND p.id < n.id) ",
                    "ORDER BY n.id LIMIT $2",
                    $lock,
                    ") RETURNING id, alert_id, event_id, sink, action, dedup_key, payload_json, attempts, ",
                    "created_ms, first_attempt_ms"
                )
            };
        }
        let sql = match self.engine {
            // One writer at a time: the UPDATE is the claim.
            Engine::Sqlite => claim!(""),
            Engine::Postgres => claim!(" FOR UPDATE SKIP LOCKED"),
        };
        let mut rows: Vec<Notification> = sqlx::query_as(sql)
            .bind(now)
            .bind(i64::from(limit))
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        rows.sort_by_key(|n| n.id);
        Ok(rows)
    }

    /// Earliest `next_attempt_ms` of any pending notification.
    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM notifications WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records a successful delivery.
    pub async fn mark_delivered(
        &self,
        id: i64,
        attempts: u32,
        attempt: &Attempt<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE notifications SET state = 'delivered', attempts = $1, delivered_ms = $2, last_error = NULL, \
             first_attempt_ms = COALESCE(first_attempt_ms, $2), claimed_until_ms = 0 WHERE id = $3",
        )
        .bind(i64::from(attempts))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        record_attempt(&mut tx, id, attempt, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt made at `now` to be retried at `next_attempt_ms`.
    pub async fn mark_retry(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: i64,
        attempt: &Attempt<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE notifications SET attempts = $1, next_attempt_ms = $2, last_error = $3, \
             first_attempt_ms = COALESCE(first_attempt_ms, $4), claimed_until_ms = 0 WHERE id = $5",
        )
        .bind(i64::from(attempts))
        .bind(next_attempt_ms)
        .bind(attempt.excerpt)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        record_attempt(&mut tx, id, attempt, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives up on a notification (after an attempt made at `now`).
    pub async fn mark_failed(
        &self,
        id: i64,
        attempts: u32,
        attempt: &Attempt<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE notifications SET state = 'failed', attempts = $1, last_error = $2, \
             first_attempt_ms = COALESCE(first_attempt_ms, $3), claimed_until_ms = 0 WHERE id = $4",
        )
        .bind(i64::from(attempts))
        .bind(attempt.excerpt)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        record_attempt(&mut tx, id, attempt, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The delivery attempts of an alert's notifications, oldest first.
    pub async fn attempts_for_alert(&self, alert_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.notification_id, a.sink, a.at_ms, a.outcome, a.status, a.excerpt \
             FROM notification_attempts a JOIN notifications n ON n.id = a.notification_id \
             WHERE n.alert_id = $1 ORDER BY a.id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sinks with failed attempts since their last delivered one: when the
    /// first of those was, whether one was permanent, and the newest one.
    pub async fn failing_sinks(&self) -> Result<Vec<FailingSink>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.sink, MIN(a.at_ms) AS since_ms, \
             MAX(CASE WHEN a.outcome IN ('rejected', 'gave_up') THEN 1 ELSE 0 END) AS permanent, \
             (SELECT e.status FROM notification_attempts e WHERE e.sink = a.sink ORDER BY e.id DESC LIMIT 1) AS status, \
             (SELECT e.excerpt FROM notification_attempts e WHERE e.sink = a.sink ORDER BY e.id DESC LIMIT 1) AS excerpt \
             FROM notification_attempts a \
             WHERE a.outcome <> 'delivered' AND a.id > COALESCE((SELECT MAX(d.id) FROM notification_attempts d \
             WHERE d.sink = a.sink AND d.outcome = 'delivered'), 0) \
             GROUP BY a.sink ORDER BY a.sink",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Postpones a notification without counting an attempt (rate limit).
    pub async fn defer_notification(
        &self,
        id: i64,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET next_attempt_ms = $1, claimed_until_ms = 0 WHERE id = $2 AND state = 'pending'",
        )
        .bind(next_attempt_ms)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Notifications of an alert, oldest first (API).
    pub async fn notifications_for_alert(
        &self,
        alert_id: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, alert_id, sink, action, state, attempts, next_attempt_ms, last_error, delivered_ms \
             FROM notifications WHERE alert_id = $1 ORDER BY id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Notifications by state.
    pub async fn notification_counts(&self) -> Result<NotificationCounts, StoreError> {
        let rows: Vec<(NotificationState, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM notifications GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        let mut c = NotificationCounts::default();
        for (state, n) in rows {
            match state {
                NotificationState::Pending => c.pending = n,
                NotificationState::Delivered => c.delivered = n,
                NotificationState::Failed => c.failed = n,
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        alerting::{AlertKind, Severity},
        store::{NewAlert, tests::temp_stores},
    };

    #[tokio::test]
    async fn attempts_are_recorded_and_a_deferred_one_is_not_due() {
        for (_d, s) in temp_stores().await {
            let a = NewAlert {
                check_id: "api".into(),
                probe: None,
                kind: AlertKind::CheckFailing,
                dedup_key: "k".into(),
                severity: Severity::Critical,
                summary: "x".into(),
                regions_json: "[]".into(),
                code: "timeout".into(),
                notified_json: "{}".into(),
                flapping: false,
                suppressed_by: String::new(),
            };
            let id = s
                .fire_alert(&a, &["pd".to_owned(), "log".to_owned()], "{}", 1)
                .await
                .unwrap()
                .unwrap();
            let due = s.due_notifications(1, 10).await.unwrap();
            assert_eq!(due.len(), 2);
            let attempt = |outcome, status, excerpt| Attempt {
                sink: "pd",
                outcome,
                status,
                excerpt,
            };
            s.mark_retry(
                due[0].id,
                1,
                100,
                &attempt(AttemptOutcome::Retry, Some(503), "status 503"),
                5,
            )
            .await
            .unwrap();
            s.defer_notification(due[1].id, 50).await.unwrap();
            assert!(s.due_notifications(49, 10).await.unwrap().is_empty());
            assert_eq!(s.next_notification_due().await.unwrap(), Some(50));
            let due = s.due_notifications(100, 10).await.unwrap();
            assert_eq!((due[0].attempts, due[0].first_attempt_ms), (1, Some(5)));
            let failing = s.failing_sinks().await.unwrap();
            assert_eq!(
                failing
                    .iter()
                    .map(|f| (f.sink.as_str(), f.since_ms, f.permanent))
                    .collect::<Vec<_>>(),
                [("pd", 5, false)]
            );
            s.mark_failed(
                due[0].id,
                2,
                &attempt(AttemptOutcome::Rejected, Some(400), "status 400"),
                101,
            )
            .await
            .unwrap();
            let log = Attempt {
                sink: "log",
                ..attempt(AttemptOutcome::Delivered, None, "")
            };
            s.mark_delivered(due[1].id, 1, &log, 102).await.unwrap();
            let failing = s.failing_sinks().await.unwrap();
            assert_eq!(
                failing
                    .iter()
                    .map(|f| (f.sink.as_str(), f.since_ms, f.permanent, f.status))
                    .collect::<Vec<_>>(),
                [("pd", 5, true, Some(400))]
            );
            let attempts = s.attempts_for_alert(id).await.unwrap();
            assert_eq!(
                attempts
                    .iter()
                    .map(|a| (a.sink.as_str(), a.at_ms, a.outcome, a.status))
                    .collect::<Vec<_>>(),
                [
                    ("pd", 5, AttemptOutcome::Retry, Some(503)),
                    ("pd", 101, AttemptOutcome::Rejected, Some(400)),
                    ("log", 102, AttemptOutcome::Delivered, None)
                ]
            );
            let rows = s.notifications_for_alert(id).await.unwrap();
            assert_eq!(
                rows.iter()
                    .map(|n| (n.state, n.attempts, n.last_error.as_deref()))
                    .collect::<Vec<_>>(),
                vec![
                    (NotificationState::Failed, 2, Some("status 400")),
                    (NotificationState::Delivered, 1, None)
                ]
            );
            assert_eq!(rows[1].delivered_ms, Some(102));
            let c = s.notification_counts().await.unwrap();
            assert_eq!((c.pending, c.delivered, c.failed), (0, 1, 1));
            assert_eq!(s.next_notification_due().await.unwrap(), None);
        }
    }
}
