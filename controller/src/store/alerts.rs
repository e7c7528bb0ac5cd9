//! SQL of `alerts` and `alert_timeline`: opening, updating, escalating and
//! resolving an alert, each with its notifications and its timeline entry
//! in the same transaction (invariants 3 and 4 of the module note).

use super::{Store, StoreError, Tx, lease, notifications};
use crate::alerting::{Action, AlertKind, AlertState, Change, Severity};

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
    /// Summary: as it fired, then following the current state while open.
    pub summary: String,
    /// Regions failing (JSON array): as for the summary.
    pub regions_json: String,
    /// Failure code of the first failing region (empty for fleet-level alerts).
    pub code: String,
    /// Fired.
    pub opened_at_ms: i64,
    /// Resolved.
    pub resolved_at_ms: Option<i64>,
    /// What the sinks were last sent ([`crate::alerting::Sent`] as JSON;
    /// empty before the first update of an alert fired before v5).
    pub notified_json: String,
    /// When a trigger was last queued for it (fired, updated or escalated).
    pub notified_ms: Option<i64>,
    /// Held open by flap detection (check alerts; [`crate::alerting::flap`]).
    #[sqlx(try_from = "super::Flag")]
    pub flapping: bool,
    /// Why it is recorded but not paged (`silence 3`, `maintenance
    /// nightly`); empty when it pages ([`crate::alerting::silence`]).
    pub suppressed_by: String,
}

/// One entry of an alert's timeline.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TimelineRow {
    /// When.
    pub at_ms: i64,
    /// What changed.
    pub what: Change,
    /// Failing regions after the change (JSON array).
    pub regions_json: String,
    /// Failure code after the change.
    pub code: String,
    /// Severity after the change.
    pub severity: Severity,
    /// Summary after the change.
    pub summary: String,
}

/// An open alert's new content ([`Store::update_alert`]).
#[derive(Debug, Clone)]
pub struct AlertContent {
    /// Severity.
    pub severity: Severity,
    /// Summary.
    pub summary: String,
    /// Failing regions (JSON array).
    pub regions_json: String,
    /// Failure code.
    pub code: String,
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
    /// Failure code (empty for fleet-level alerts).
    pub code: String,
    /// What the trigger sends ([`crate::alerting::Sent`] as JSON).
    pub notified_json: String,
    /// Opened by flap detection.
    pub flapping: bool,
    /// Opened suppressed (recorded, no trigger queued): the cause.
    pub suppressed_by: String,
}

macro_rules! alert_columns {
    () => {
        "id, check_id, probe, kind, dedup_key, state, severity, summary, regions_json, code, opened_at_ms, \
         resolved_at_ms, notified_json, notified_ms, flapping, suppressed_by"
    };
}

/// Appends a timeline entry in `tx`.
async fn record(
    tx: &mut Tx<'_>,
    alert_id: i64,
    what: Change,
    at_ms: i64,
    content: &AlertContent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_timeline (alert_id, at_ms, what, regions_json, code, severity, summary) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(alert_id)
    .bind(at_ms)
    .bind(what)
    .bind(&content.regions_json)
    .bind(&content.code)
    .bind(content.severity)
    .bind(&content.summary)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The sinks that got an alert's first trigger, each with the dedup key it
/// carried, in the order they were queued: updates and resolves go to them
/// (even if routes changed since).
async fn triggered_sinks(
    tx: &mut Tx<'_>,
    alert_id: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    // Every trigger of one alert carries its dedup key; MIN picks it.
    Ok(sqlx::query_as(
        "SELECT sink, MIN(dedup_key) FROM notifications WHERE alert_id = $1 AND action = 'trigger' \
         GROUP BY sink ORDER BY MIN(id)",
    )
    .bind(alert_id)
    .fetch_all(&mut **tx)
    .await?)
}

impl Store {
    /// One alert by id.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// An alert's timeline, oldest first.
    pub async fn alert_timeline(&self, alert_id: i64) -> Result<Vec<TimelineRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT at_ms, what, regions_json, code, severity, summary FROM alert_timeline \
             WHERE alert_id = $1 ORDER BY id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?)
    }

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
            "INSERT INTO alerts (check_id, probe, kind, dedup_key, state, severity, summary, regions_json, \
             code, notified_json, notified_ms, opened_at_ms, epoch, flapping, suppressed_by) \
             VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $10, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&alert.check_id)
        .bind(&alert.probe)
        .bind(alert.kind)
        .bind(&alert.dedup_key)
        .bind(alert.severity)
        .bind(&alert.summary)
        .bind(&alert.regions_json)
        .bind(&alert.code)
        .bind(&alert.notified_json)
        .bind(now)
        .bind(epoch)
        .bind(i64::from(alert.flapping))
        .bind(&alert.suppressed_by)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let content = AlertContent {
            severity: alert.severity,
            summary: alert.summary.clone(),
            regions_json: alert.regions_json.clone(),
            code: alert.code.clone(),
        };
        record(&mut tx, id, Change::Fired, now, &content).await?;
        if !alert.suppressed_by.is_empty() {
            let why = AlertContent {
                summary: format!("not paged: suppressed by {}", alert.suppressed_by),
                ..content
            };
            record(&mut tx, id, Change::Suppressed, now, &why).await?;
            tx.commit().await?;
            return Ok(Some(id));
        }
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
        let row: Option<(String, String, String)> = sqlx::query_as(
            "UPDATE alerts SET severity = $1, summary = $2, notified_ms = $3, epoch = $5 WHERE id = $4 AND state = 'open' \
             RETURNING dedup_key, regions_json, code",
        )
        .bind(severity)
        .bind(summary)
        .bind(now)
        .bind(alert_id)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((key, regions_json, code)) = row else {
            return Ok(false);
        };
        let content = AlertContent {
            severity,
            summary: summary.to_owned(),
            regions_json,
            code,
        };
        record(&mut tx, alert_id, Change::Escalated, now, &content).await?;
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
    /// `resolve_summary` is the timeline's line (default: the last summary).
    pub async fn resolve_alert(
        &self,
        alert_id: i64,
        payload_json: &str,
        resolve_summary: Option<&str>,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let row: Option<(Severity, String)> = sqlx::query_as(
            "UPDATE alerts SET state = 'resolved', resolved_at_ms = $1, epoch = $3 WHERE id = $2 AND state = 'open' \
             RETURNING severity, summary",
        )
        .bind(now)
        .bind(alert_id)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((severity, summary)) = row else {
            return Ok(None);
        };
        let resolved = AlertContent {
            severity,
            summary: resolve_summary.unwrap_or(&summary).to_owned(),
            regions_json: "[]".into(),
            code: String::new(),
        };
        record(&mut tx, alert_id, Change::Resolved, now, &resolved).await?;
        let triggered = triggered_sinks(&mut tx, alert_id).await?;
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

    /// Marks an open alert flapping (its content set to `content`) or
    /// stable again (content kept), with its timeline entry (`flapping` or
    /// `stable`) carrying `content`, atomically. `false` if the alert is
    /// not open or already so marked.
    pub async fn set_flapping(
        &self,
        alert_id: i64,
        flapping: bool,
        content: &AlertContent,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let r = sqlx::query(
            "UPDATE alerts SET flapping = $1, epoch = $6, \
               summary = CASE WHEN $1 = 1 THEN $3 ELSE summary END, \
               regions_json = CASE WHEN $1 = 1 THEN $4 ELSE regions_json END, \
               code = CASE WHEN $1 = 1 THEN $5 ELSE code END \
             WHERE id = $2 AND state = 'open' AND flapping <> $1",
        )
        .bind(i64::from(flapping))
        .bind(alert_id)
        .bind(&content.summary)
        .bind(&content.regions_json)
        .bind(&content.code)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let what = if flapping {
            Change::Flapping
        } else {
            Change::Stable
        };
        record(&mut tx, alert_id, what, now, content).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Suppresses an open alert (`by` non-empty: timeline `suppressed`, no
    /// update triggers while so) or releases it (`by` empty: timeline
    /// `released`), atomically; a release with `page` = (sinks, payload,
    /// sent) queues the payload as a trigger for each of `sinks` (the
    /// alert's routed sinks: it pages now) and records what was sent.
    /// Returns the sinks queued; `None` if the alert is not open or already
    /// suppressed by exactly `by`.
    pub async fn set_suppressed(
        &self,
        alert_id: i64,
        by: &str,
        content: &AlertContent,
        page: Option<(&[String], &str, &str)>,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let key: Option<String> = sqlx::query_scalar(
            "UPDATE alerts SET suppressed_by = $1, epoch = $3 \
             WHERE id = $2 AND state = 'open' AND suppressed_by <> $1 RETURNING dedup_key",
        )
        .bind(by)
        .bind(alert_id)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Ok(None);
        };
        let what = if by.is_empty() {
            Change::Released
        } else {
            Change::Suppressed
        };
        record(&mut tx, alert_id, what, now, content).await?;
        let mut queued = Vec::new();
        if let (true, Some((sinks, payload_json, sent_json))) = (by.is_empty(), page) {
            sqlx::query(
                "UPDATE alerts SET notified_json = $1, notified_ms = $2, summary = $3 WHERE id = $4",
            )
            .bind(sent_json)
            .bind(now)
            .bind(&content.summary)
            .bind(alert_id)
            .execute(&mut *tx)
            .await?;
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
                queued.push(sink.clone());
            }
        }
        tx.commit().await?;
        Ok(Some(queued))
    }

    /// Sets an open alert's content (timeline entry `updated` when
    /// `changed`) and, when `notify` holds (payload, sent) JSON, queues the
    /// payload as a trigger (same dedup key) for every sink that got the
    /// first trigger and records `sent` as what the sinks were last told
    /// (timeline entry `notified`), atomically. Returns the sinks notified;
    /// `None` if the alert is not open.
    pub async fn update_alert(
        &self,
        alert_id: i64,
        content: &AlertContent,
        changed: bool,
        notify: Option<(&str, &str)>,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let r = sqlx::query(
            "UPDATE alerts SET severity = $1, summary = $2, regions_json = $3, code = $4, epoch = $6 \
             WHERE id = $5 AND state = 'open'",
        )
        .bind(content.severity)
        .bind(&content.summary)
        .bind(&content.regions_json)
        .bind(&content.code)
        .bind(alert_id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        if changed {
            record(&mut tx, alert_id, Change::Updated, now, content).await?;
        }
        let mut sinks = Vec::new();
        if let Some((payload_json, sent_json)) = notify {
            sqlx::query("UPDATE alerts SET notified_json = $1, notified_ms = $2 WHERE id = $3")
                .bind(sent_json)
                .bind(now)
                .bind(alert_id)
                .execute(&mut *tx)
                .await?;
            for (sink, key) in triggered_sinks(&mut tx, alert_id).await? {
                notifications::queue_for_alert(
                    &mut tx,
                    alert_id,
                    &sink,
                    Action::Trigger,
                    &key,
                    payload_json,
                    now,
                    epoch,
                )
                .await?;
                sinks.push(sink);
            }
            record(&mut tx, alert_id, Change::Notified, now, content).await?;
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
            code: "timeout".into(),
            notified_json: "{}".into(),
            flapping: false,
            suppressed_by: String::new(),
        }
    }

    #[tokio::test]
    async fn a_suppressed_alert_is_recorded_without_triggers_and_pages_when_released() {
        for (_d, s) in temp_stores().await {
            let a = NewAlert {
                suppressed_by: "silence 1".into(),
                ..alert()
            };
            let sinks = vec!["pd".to_owned()];
            let id = s.fire_alert(&a, &sinks, "{}", 1).await.unwrap().unwrap();
            assert!(s.notifications_for_alert(id).await.unwrap().is_empty());
            let row = s.alert(id).await.unwrap().unwrap();
            assert_eq!(row.suppressed_by, "silence 1");
            let content = AlertContent {
                severity: Severity::Warning,
                summary: "api failing; silence 1 ended".into(),
                regions_json: "[\"eu\"]".into(),
                code: "timeout".into(),
            };
            // Same cause: nothing to do.
            let same = s
                .set_suppressed(id, "silence 1", &content, None, 2)
                .await
                .unwrap();
            assert_eq!(same, None);
            let queued = s
                .set_suppressed(id, "", &content, Some((&sinks, "{}", "{\"x\":1}")), 3)
                .await
                .unwrap();
            assert_eq!(queued, Some(sinks.clone()));
            let row = s.alert(id).await.unwrap().unwrap();
            assert_eq!(
                (
                    row.suppressed_by.as_str(),
                    row.notified_ms,
                    row.summary.as_str()
                ),
                ("", Some(3), "api failing; silence 1 ended")
            );
            let ns = s.notifications_for_alert(id).await.unwrap();
            assert_eq!(ns.len(), 1);
            assert_eq!(ns[0].action, Action::Trigger);
            // Suppressed again mid-incident: no trigger; the resolve still
            // goes to the sink that got one.
            assert!(
                s.set_suppressed(id, "maintenance nightly", &content, None, 4)
                    .await
                    .unwrap()
                    .is_some()
            );
            let resolved = s.resolve_alert(id, "{}", None, 5).await.unwrap();
            assert_eq!(resolved, Some(sinks));
            let whats: Vec<Change> = s
                .alert_timeline(id)
                .await
                .unwrap()
                .iter()
                .map(|t| t.what)
                .collect();
            assert_eq!(
                whats,
                [
                    Change::Fired,
                    Change::Suppressed,
                    Change::Released,
                    Change::Suppressed,
                    Change::Resolved
                ]
            );
            // A resolved alert cannot be suppressed.
            assert_eq!(
                s.set_suppressed(id, "x", &content, None, 6).await.unwrap(),
                None
            );
        }
    }

    #[tokio::test]
    async fn one_open_alert_per_check_and_resolves_follow_triggers() {
        for (_d, s) in temp_stores().await {
            let a = alert();
            let sinks = vec!["pd".to_owned(), "log".to_owned()];
            let id = s.fire_alert(&a, &sinks, "{}", 1).await.unwrap().unwrap();
            assert_eq!(s.fire_alert(&a, &sinks, "{}", 2).await.unwrap(), None);
            let resolved = s.resolve_alert(id, "{}", None, 3).await.unwrap().unwrap();
            assert_eq!(resolved, sinks);
            // Only the first pending notification per (sink, key) is due.
            let due = s.due_notifications(10, 100).await.unwrap();
            assert_eq!(
                due.iter().map(|n| n.action).collect::<Vec<_>>(),
                vec![Action::Trigger, Action::Trigger]
            );
            let delivered = notifications::Attempt {
                sink: &due[0].sink,
                outcome: crate::alerting::sink::AttemptOutcome::Delivered,
                status: Some(202),
                excerpt: "",
            };
            s.mark_delivered(due[0].id, 1, &delivered, 11)
                .await
                .unwrap();
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
            assert_eq!(s.resolve_alert(id, "{}", None, 4).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn updates_follow_the_state_and_notify_only_the_triggered_sinks() {
        for (_d, s) in temp_stores().await {
            let id = s
                .fire_alert(&alert(), &["pd".to_owned()], "{}", 1)
                .await
                .unwrap()
                .unwrap();
            let worse = AlertContent {
                severity: Severity::Warning,
                summary: "api failing from 2 of 2".into(),
                regions_json: "[\"eu\",\"us\"]".into(),
                code: "http_status".into(),
            };
            // Content only: no notification.
            assert_eq!(
                s.update_alert(id, &worse, true, None, 2).await.unwrap(),
                Some(vec![])
            );
            assert_eq!(s.notifications_for_alert(id).await.unwrap().len(), 1);
            let row = s.alert(id).await.unwrap().unwrap();
            assert_eq!(
                (row.summary.as_str(), row.code.as_str(), row.notified_ms),
                ("api failing from 2 of 2", "http_status", Some(1))
            );
            // Then sent: to the sink that got the trigger, with its key.
            let sinks = s
                .update_alert(id, &worse, false, Some(("{}", "{\"sent\":1}")), 3)
                .await
                .unwrap();
            assert_eq!(sinks, Some(vec!["pd".to_owned()]));
            let ns = s.notifications_for_alert(id).await.unwrap();
            assert_eq!(
                ns.iter().map(|n| n.action).collect::<Vec<_>>(),
                [Action::Trigger, Action::Trigger]
            );
            let row = s.alert(id).await.unwrap().unwrap();
            assert_eq!(
                (row.notified_json.as_str(), row.notified_ms),
                ("{\"sent\":1}", Some(3))
            );
            s.resolve_alert(id, "{}", Some("api recovered"), 4)
                .await
                .unwrap();
            assert_eq!(
                s.update_alert(id, &worse, true, None, 5).await.unwrap(),
                None
            );
            let timeline = s.alert_timeline(id).await.unwrap();
            assert_eq!(
                timeline
                    .iter()
                    .map(|t| (t.at_ms, t.what))
                    .collect::<Vec<_>>(),
                [
                    (1, Change::Fired),
                    (2, Change::Updated),
                    (3, Change::Notified),
                    (4, Change::Resolved)
                ]
            );
            assert_eq!(timeline[1].regions_json, "[\"eu\",\"us\"]");
            assert_eq!(timeline[3].summary, "api recovered");
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
            s.resolve_alert(id, "{}", None, 3).await.unwrap();
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
