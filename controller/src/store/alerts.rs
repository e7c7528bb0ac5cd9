//! SQL of `alerts`: opening, escalating and resolving an alert, each with
//! its notifications in the same transaction (invariants 3 and 4 of the
//! module note).

use super::{Store, StoreError, lease, notifications};
use crate::alerting::{Action, AlertKind, AlertState, Severity};

/// An alert row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertRow {
    /// Id.
    pub id: i64,
    /// Check (empty for fleet-level alerts).
    pub check_id: String,
    /// Probe of a fleet-level alert (`probe_offline`).
    pub probe: Option<String>,
    /// Kind.
    pub kind: AlertKind,
    /// Dedup key.
    pub dedup_key: String,
    /// Open or resolved.
    pub state: AlertState,
    /// Severity.
    pub severity: Severity,
    /// Summary when it fired.
    pub summary: String,
    /// Regions failing when it fired (JSON array).
    pub regions_json: String,
    /// Fired.
    pub opened_at_ms: i64,
    /// Resolved.
    pub resolved_at_ms: Option<i64>,
}

/// An alert to open.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Check (empty for fleet-level alerts).
    pub check_id: String,
    /// Probe of a fleet-level alert.
    pub probe: Option<String>,
    /// Kind.
    pub kind: AlertKind,
    /// Dedup key.
    pub dedup_key: String,
    /// Severity.
    pub severity: Severity,
    /// Summary.
    pub summary: String,
    /// Failing regions (JSON array).
    pub regions_json: String,
}

macro_rules! alert_columns {
    () => {
        "id, check_id, probe, kind, dedup_key, state, severity, summary, regions_json, opened_at_ms, resolved_at_ms"
    };
}

impl Store {
    /// The open alert of a check and kind, if any.
    pub async fn open_alert(
        &self,
        check_id: &str,
        kind: AlertKind,
    ) -> Result<Option<AlertRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE check_id = $1 AND kind = $2 AND state = 'open'"
        ))
        .bind(check_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every open alert, oldest first.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE state = 'open' ORDER BY opened_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Open alerts first (newest first), then the newest resolved ones, `limit` in all.
    pub async fn alerts(&self, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts ORDER BY CASE WHEN state = 'open' THEN 0 ELSE 1 END, opened_at_ms DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Opens an alert and queues one trigger per sink, atomically. `None`
    /// when an alert with that dedup key is already open.
    pub async fn fire_alert(
        &self,
        alert: &NewAlert,
        sinks: &[String],
        payload_json: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alerts (check_id, probe, kind, dedup_key, state, severity, summary, regions_json, opened_at_ms, epoch) \
             VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&alert.check_id)
        .bind(&alert.probe)
        .bind(alert.kind)
        .bind(&alert.dedup_key)
        .bind(alert.severity)
        .bind(&alert.summary)
        .bind(&alert.regions_json)
        .bind(now)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        for sink in sinks {
            notifications::queue_for_alert(
                &mut tx,
                id,
                sink,
                Action::Trigger,
                &alert.dedup_key,
                payload_json,
                now,
                epoch,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Changes an open alert's severity and summary and queues a new trigger
    /// (same dedup key) per sink, atomically: PagerDuty updates the open
    /// incident's severity. `false` if the alert is not open.
    pub async fn escalate_alert(
        &self,
        alert_id: i64,
        severity: Severity,
        summary: &str,
        sinks: &[String],
        payload_json: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let key: Option<String> = sqlx::query_scalar(
            "UPDATE alerts SET severity = $1, summary = $2, epoch = $4 WHERE id = $3 AND state = 'open' RETURNING dedup_key",
        )
        .bind(severity)
        .bind(summary)
        .bind(alert_id)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Ok(false);
        };
        for sink in sinks {
            notifications::queue_for_alert(
                &mut tx,
                alert_id,
                sink,
                Action::Trigger,
                &key,
                payload_json,
                now,
                epoch,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Resolves an open alert and queues a resolve for every sink that got
    /// its trigger, atomically. Returns those sinks; `None` if it was not open.
    pub async fn resolve_alert(
        &self,
        alert_id: i64,
        payload_json: &str,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let r = sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_at_ms = $1, epoch = $3 WHERE id = $2 AND state = 'open'",
        )
        .bind(now)
        .bind(alert_id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        // Every trigger of one alert carries its dedup key; MIN picks it.
        let triggered: Vec<(String, String)> = sqlx::query_as(
            "SELECT sink, MIN(dedup_key) FROM notifications WHERE alert_id = $1 AND action = 'trigger' \
             GROUP BY sink ORDER BY MIN(id)",
        )
        .bind(alert_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut sinks = Vec::with_capacity(triggered.len());
        for (sink, key) in triggered {
            notifications::queue_for_alert(
                &mut tx,
                alert_id,
                &sink,
                Action::Resolve,
                &key,
                payload_json,
                now,
                epoch,
            )
            .await?;
            sinks.push(sink);
        }
        tx.commit().await?;
        Ok(Some(sinks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_stores;

    fn alert() -> NewAlert {
        NewAlert {
            check_id: "api".into(),
            probe: None,
            kind: AlertKind::CheckFailing,
            dedup_key: "outpost/api/check_failing".into(),
            severity: Severity::Warning,
            summary: "x".into(),
            regions_json: "[]".into(),
        }
    }

    #[tokio::test]
    async fn one_open_alert_per_check_and_resolves_follow_triggers() {
        for (_d, s) in temp_stores().await {
            let a = alert();
            let sinks = vec!["pd".to_owned(), "log".to_owned()];
            let id = s.fire_alert(&a, &sinks, "{}", 1).await.unwrap().unwrap();
            assert_eq!(s.fire_alert(&a, &sinks, "{}", 2).await.unwrap(), None);
            let resolved = s.resolve_alert(id, "{}", 3).await.unwrap().unwrap();
            assert_eq!(resolved, sinks);
            // Only the first pending notification per (sink, key) is due.
            let due = s.due_notifications(10, 100).await.unwrap();
            assert_eq!(
                due.iter().map(|n| n.action).collect::<Vec<_>>(),
                vec![Action::Trigger, Action::Trigger]
            );
            s.mark_delivered(due[0].id, 1, 11).await.unwrap();
            let due = s.due_notifications(10, 100).await.unwrap();
            assert_eq!(due.len(), 2);
            assert_eq!(
                (due[0].sink.as_str(), due[0].action),
                ("log", Action::Trigger)
            );
            assert_eq!(
                (due[1].sink.as_str(), due[1].action),
                ("pd", Action::Resolve)
            );
            assert_eq!(s.resolve_alert(id, "{}", 4).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn escalation_changes_the_row_and_queues_a_trigger_per_sink() {
        for (_d, s) in temp_stores().await {
            let id = s
                .fire_alert(&alert(), &["pd".to_owned()], "{}", 1)
                .await
                .unwrap()
                .unwrap();
            let sinks = ["pd".to_owned()];
            assert!(
                s.escalate_alert(id, Severity::Critical, "worse", &sinks, "{}", 2)
                    .await
                    .unwrap()
            );
            let row = s
                .open_alert("api", AlertKind::CheckFailing)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (row.severity, row.summary.as_str(), row.state),
                (Severity::Critical, "worse", AlertState::Open)
            );
            let ns = s.notifications_for_alert(id).await.unwrap();
            assert_eq!(ns.len(), 2);
            s.resolve_alert(id, "{}", 3).await.unwrap();
            assert!(
                !s.escalate_alert(id, Severity::Critical, "x", &sinks, "{}", 4)
                    .await
                    .unwrap()
            );
            // Open first, then resolved, newest first.
            let again = s.fire_alert(&alert(), &[], "{}", 5).await.unwrap().unwrap();
            let ids: Vec<i64> = s.alerts(10).await.unwrap().iter().map(|a| a.id).collect();
            assert_eq!(ids, vec![again, id]);
        }
    }
}
