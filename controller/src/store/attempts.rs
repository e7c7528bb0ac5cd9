//! Reads and pruning of the delivery log (`notifications` delivered so far,
//! `notification_attempts`) that the sinks need beyond the outbox itself.
//!
//! - [`Store::trigger_delivered_before`]: whether a trigger of the same
//!   alert already reached a sink (Opsgenie then sends an update as a note).
//! - [`Store::prune_attempts`]: `notification_attempts` grows by one row per
//!   attempt and [`Store::failing_sinks`] scans it every evaluation pass, so
//!   rows older than the retention go — in bounded batches, like results —
//!   except what `failing_sinks` still needs: each sink's newest delivered
//!   attempt and every attempt after it (a sink failing since before the
//!   retention keeps its alert and its "since").
//!
//! Pruning is history, not alert state: like `prune_results` it runs on the
//! evaluator only and is not fenced (a stale evaluator deleting rows past
//! the retention changes nothing another one would not delete).

use super::{Store, StoreError};

impl Store {
    /// True when a `trigger` of `alert_id` older than notification
    /// `before_id` was delivered to `sink`.
    pub async fn trigger_delivered_before(
        &self,
        alert_id: i64,
        sink: &str,
        before_id: i64,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications WHERE alert_id = $1 AND sink = $2 \
             AND action = 'trigger' AND state = 'delivered' AND id < $3",
        )
        .bind(alert_id)
        .bind(sink)
        .bind(before_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Deletes attempts made before `before_ms`, `batch` rows per statement,
    /// keeping each sink's newest delivered attempt and everything after it
    /// (module note); returns how many went.
    pub async fn prune_attempts(&self, before_ms: i64, batch: u32) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM notification_attempts WHERE id IN \
                 (SELECT a.id FROM notification_attempts a WHERE a.at_ms < $1 \
                  AND a.id < COALESCE((SELECT MAX(d.id) FROM notification_attempts d \
                  WHERE d.sink = a.sink AND d.outcome = 'delivered'), 0) LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(batch.max(1)))
            .execute(&self.writer)
            .await?;
            total += r.rows_affected();
            if r.rows_affected() < u64::from(batch.max(1)) {
                return Ok(total);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        alerting::{AlertKind, Severity, sink::AttemptOutcome},
        store::{Attempt, NewAlert, tests::temp_stores},
    };

    fn alert() -> NewAlert {
        NewAlert {
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
        }
    }

    fn attempt(sink: &str, outcome: AttemptOutcome) -> Attempt<'_> {
        Attempt {
            sink,
            outcome,
            status: None,
            excerpt: "",
        }
    }

    #[tokio::test]
    async fn a_delivered_trigger_makes_the_next_one_an_update() {
        for (_d, s) in temp_stores().await {
            let id = s
                .fire_alert(&alert(), &["og".to_owned()], "{}", 1)
                .await
                .unwrap()
                .unwrap();
            let due = s.due_notifications(1, 10).await.unwrap();
            assert_eq!(due.len(), 1);
            let first = due[0].id;
            assert!(!s.trigger_delivered_before(id, "og", first).await.unwrap());
            s.mark_delivered(first, 1, &attempt("og", AttemptOutcome::Delivered), 2)
                .await
                .unwrap();
            assert!(
                s.trigger_delivered_before(id, "og", first + 1)
                    .await
                    .unwrap()
            );
            assert!(
                !s.trigger_delivered_before(id, "pd", first + 1)
                    .await
                    .unwrap()
            );
            assert!(!s.trigger_delivered_before(id, "og", first).await.unwrap());
        }
    }

    #[tokio::test]
    async fn pruning_keeps_what_failing_sinks_needs() {
        for (_d, s) in temp_stores().await {
            let id = s
                .fire_alert(&alert(), &["ok".to_owned(), "bad".to_owned()], "{}", 1)
                .await
                .unwrap()
                .unwrap();
            let due = s.due_notifications(1, 10).await.unwrap();
            let (ok, bad) = (due[0].id, due[1].id);
            // `ok`: fails twice, then delivers, all long ago.
            for t in [10, 20] {
                s.mark_retry(ok, 1, t + 1, &attempt("ok", AttemptOutcome::Retry), t)
                    .await
                    .unwrap();
            }
            s.mark_delivered(ok, 3, &attempt("ok", AttemptOutcome::Delivered), 30)
                .await
                .unwrap();
            // `bad`: failing since long ago, never delivered.
            for t in [10, 20, 30] {
                s.mark_retry(bad, 1, t + 1, &attempt("bad", AttemptOutcome::Retry), t)
                    .await
                    .unwrap();
            }
            let before = s.failing_sinks().await.unwrap();
            let removed = s.prune_attempts(1_000, 1).await.unwrap();
            assert_eq!(removed, 2, "the two retries before ok's delivery");
            assert_eq!(s.failing_sinks().await.unwrap(), before);
            assert_eq!(s.attempts_for_alert(id).await.unwrap().len(), 4);
            assert_eq!(s.prune_attempts(1_000, 10).await.unwrap(), 0);
        }
    }
}
