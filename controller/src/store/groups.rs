//! SQL of `alert_groups`: the notification groups of grouped routes
//! ([`crate::alerting::group`]). Opening a group, queueing its trigger (first
//! or update) and closing it (with its resolves, or unsent when it emptied
//! while waiting) are each one transaction with their notifications, fenced
//! with the evaluator epoch like every alert change.
//!
//! Reads for the API and the dashboard ([`Store::alert_groups`],
//! [`Store::alert_group`], [`Store::group_notifications`],
//! [`Store::group_attempts`]): group notifications have no alert
//! (`alert_id` NULL), so they are found by the group's dedup key within its
//! lifetime (a resolved group's key is reused when the group opens again).

use super::{AttemptRow, Store, StoreError, Tx, lease, notifications};
use crate::alerting::Action;

/// An open group.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupRow {
    /// Id.
    pub id: i64,
    /// Route name.
    pub route: String,
    /// The group labels' values: a JSON array of `[name, value]` pairs.
    pub group_key: String,
    /// Dedup key of every notification of the group.
    pub dedup_key: String,
    /// Opened (its first member seen).
    pub opened_at_ms: i64,
    /// Last trigger queued; `None` while waiting for `group_wait`.
    pub notified_ms: Option<i64>,
    /// What the sinks were last sent: JSON object check id → code.
    pub sent_json: String,
    /// Sinks that got the first trigger (JSON array).
    pub sinks_json: String,
}

/// A group open or resolved, as the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupRecord {
    /// Id.
    pub id: i64,
    /// Route name.
    pub route: String,
    /// The group labels' values: a JSON array of `[name, value]` pairs.
    pub group_key: String,
    /// Dedup key of every notification of the group.
    pub dedup_key: String,
    /// Open or resolved (the same two words as an alert's).
    pub state: crate::alerting::AlertState,
    /// Opened.
    pub opened_at_ms: i64,
    /// Last trigger queued; `None` while waiting (or closed unsent).
    pub notified_ms: Option<i64>,
    /// What the sinks were last sent: JSON object check id → code.
    pub sent_json: String,
    /// Sinks that got the first trigger (JSON array).
    pub sinks_json: String,
    /// Resolved at.
    pub resolved_at_ms: Option<i64>,
}

/// A notification of a group (no alert).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupNotificationRow {
    /// Id.
    pub id: i64,
    /// Sink name.
    pub sink: String,
    /// Trigger or resolve.
    pub action: Action,
    /// Pending, delivered or failed.
    pub state: crate::alerting::sink::NotificationState,
    /// Attempts so far.
    #[sqlx(try_from = "i64")]
    pub attempts: u32,
    /// Queued at.
    pub created_ms: i64,
    /// Next attempt (pending only).
    pub next_attempt_ms: i64,
    /// Last error (status and a snippet of the sink's answer).
    pub last_error: Option<String>,
    /// Delivered at.
    pub delivered_ms: Option<i64>,
}

macro_rules! record_columns {
    () => {
        "id, route, group_key, dedup_key, state, opened_at_ms, notified_ms, sent_json, sinks_json, resolved_at_ms"
    };
}

/// The notifications of group `g`: its dedup key, no alert, queued while it
/// was open (its resolve is queued at `resolved_at_ms`).
macro_rules! of_group {
    () => {
        "n.alert_id IS NULL AND n.dedup_key = $1 AND n.created_ms >= $2 AND n.created_ms <= $3"
    };
}

macro_rules! group_columns {
    () => {
        "id, route, group_key, dedup_key, opened_at_ms, notified_ms, sent_json, sinks_json"
    };
}

impl Store {
    /// Open groups, oldest first.
    pub async fn open_groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            group_columns!(),
            " FROM alert_groups WHERE state = 'open' ORDER BY opened_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Open groups (oldest first), then the `limit` most recently opened
    /// resolved ones.
    pub async fn alert_groups(&self, limit: u32) -> Result<Vec<GroupRecord>, StoreError> {
        let mut out: Vec<GroupRecord> = sqlx::query_as(concat!(
            "SELECT ",
            record_columns!(),
            " FROM alert_groups WHERE state = 'open' ORDER BY opened_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let recent: Vec<GroupRecord> = sqlx::query_as(concat!(
            "SELECT ",
            record_columns!(),
            " FROM alert_groups WHERE state <> 'open' ORDER BY opened_at_ms DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        out.extend(recent);
        Ok(out)
    }

    /// Group `id`, open or not.
    pub async fn alert_group(&self, id: i64) -> Result<Option<GroupRecord>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            record_columns!(),
            " FROM alert_groups WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The notifications of group `g`, in queue order.
    pub async fn group_notifications(
        &self,
        g: &GroupRecord,
    ) -> Result<Vec<GroupNotificationRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT n.id, n.sink, n.action, n.state, n.attempts, n.created_ms, n.next_attempt_ms, \
             n.last_error, n.delivered_ms FROM notifications n WHERE ",
            of_group!(),
            " ORDER BY n.id"
        ))
        .bind(&g.dedup_key)
        .bind(g.opened_at_ms)
        .bind(g.resolved_at_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every delivery attempt of the notifications of group `g`, in order.
    pub async fn group_attempts(&self, g: &GroupRecord) -> Result<Vec<AttemptRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT a.notification_id, a.sink, a.at_ms, a.outcome, a.status, a.excerpt \
             FROM notification_attempts a JOIN notifications n ON n.id = a.notification_id WHERE ",
            of_group!(),
            " ORDER BY a.id"
        ))
        .bind(&g.dedup_key)
        .bind(g.opened_at_ms)
        .bind(g.resolved_at_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Opens a group, waiting; `None` when one with this route and key is
    /// already open.
    pub async fn open_group(
        &self,
        route: &str,
        group_key: &str,
        dedup_key: &str,
        now: i64,
    ) -> Result<Option<GroupRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let row: Option<GroupRow> = sqlx::query_as(concat!(
            "INSERT INTO alert_groups (route, group_key, dedup_key, state, opened_at_ms, epoch) \
             VALUES ($1, $2, $3, 'open', $4, $5) ON CONFLICT DO NOTHING RETURNING ",
            group_columns!()
        ))
        .bind(route)
        .bind(group_key)
        .bind(dedup_key)
        .bind(now)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Records that the open group `id` was sent `sent_json` now and queues
    /// `payload_json` as a trigger for each of `sinks`, atomically. `false`
    /// if the group is not open.
    pub async fn notify_group(
        &self,
        id: i64,
        sinks: &[String],
        sent_json: &str,
        payload_json: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let sinks_json = serde_json::to_string(sinks).unwrap_or_else(|_| "[]".into());
        let key: Option<String> = sqlx::query_scalar(
            "UPDATE alert_groups SET notified_ms = $1, sent_json = $2, sinks_json = $3, epoch = $4 \
             WHERE id = $5 AND state = 'open' RETURNING dedup_key",
        )
        .bind(now)
        .bind(sent_json)
        .bind(&sinks_json)
        .bind(epoch)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else { return Ok(false) };
        queue_for_sinks(
            &mut tx,
            sinks,
            Action::Trigger,
            &key,
            payload_json,
            now,
            epoch,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Resolves the open group `id` and queues `payload_json` as a resolve
    /// for each of `sinks` (none: it emptied before it was sent),
    /// atomically. `false` if the group is not open.
    pub async fn close_group(
        &self,
        id: i64,
        sinks: &[String],
        payload_json: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let epoch = lease::fence(&mut tx, self.engine, self.epoch()).await?;
        let key: Option<String> = sqlx::query_scalar(
            "UPDATE alert_groups SET state = 'resolved', resolved_at_ms = $1, epoch = $2 \
             WHERE id = $3 AND state = 'open' RETURNING dedup_key",
        )
        .bind(now)
        .bind(epoch)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else { return Ok(false) };
        queue_for_sinks(
            &mut tx,
            sinks,
            Action::Resolve,
            &key,
            payload_json,
            now,
            epoch,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Queues one group notification per sink, in the caller's transaction.
async fn queue_for_sinks(
    tx: &mut Tx<'_>,
    sinks: &[String],
    action: Action,
    key: &str,
    payload_json: &str,
    now: i64,
    epoch: i64,
) -> Result<(), sqlx::Error> {
    for sink in sinks {
        notifications::queue_for_group(tx, sink, action, key, payload_json, now, epoch).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_stores;

    #[tokio::test]
    async fn one_open_group_per_key_with_its_notifications_in_order() {
        for (_d, s) in temp_stores().await {
            let g = s
                .open_group(
                    "oncall",
                    "[[\"team\",\"pay\"]]",
                    "outpost/group/oncall/1",
                    100,
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!((g.opened_at_ms, g.notified_ms), (100, None));
            assert!(
                s.open_group("oncall", "[[\"team\",\"pay\"]]", "x", 101)
                    .await
                    .unwrap()
                    .is_none()
            );
            let other = s
                .open_group("chat", "[[\"team\",\"pay\"]]", "outpost/group/chat/2", 102)
                .await
                .unwrap()
                .unwrap();
            let sinks = vec!["pd".to_owned(), "log".to_owned()];
            assert!(
                s.notify_group(g.id, &sinks, "{\"a\":\"timeout\"}", "{}", 130)
                    .await
                    .unwrap()
            );
            assert!(s.close_group(other.id, &[], "{}", 131).await.unwrap());
            let open = s.open_groups().await.unwrap();
            assert_eq!(open.len(), 1);
            assert_eq!(open[0].notified_ms, Some(130));
            assert_eq!(open[0].sent_json, "{\"a\":\"timeout\"}");
            assert_eq!(open[0].sinks_json, "[\"pd\",\"log\"]");
            assert!(s.close_group(g.id, &sinks, "{}", 200).await.unwrap());
            assert!(!s.close_group(g.id, &sinks, "{}", 201).await.unwrap());
            assert!(!s.notify_group(g.id, &sinks, "{}", "{}", 202).await.unwrap());
            assert!(s.open_groups().await.unwrap().is_empty());
            // Trigger then resolve per sink, one dedup key.
            let due = s.due_notifications(i64::MAX, 10).await.unwrap();
            let got: Vec<(&str, Action, &str)> = due
                .iter()
                .map(|n| (n.sink.as_str(), n.action, n.dedup_key.as_str()))
                .collect();
            assert_eq!(
                got,
                [
                    ("pd", Action::Trigger, "outpost/group/oncall/1"),
                    ("log", Action::Trigger, "outpost/group/oncall/1"),
                ]
            );
            assert!(due.iter().all(|n| n.alert_id.is_none()));
            // A resolved group's key may open again.
            assert!(
                s.open_group(
                    "oncall",
                    "[[\"team\",\"pay\"]]",
                    "outpost/group/oncall/1",
                    300
                )
                .await
                .unwrap()
                .is_some()
            );
        }
    }

    #[tokio::test]
    async fn group_writes_are_fenced_on_a_shared_store() {
        for (_d, s) in temp_stores().await {
            if !s.is_shared() {
                continue;
            }
            let g = s.open_group("r", "[]", "k", 1).await.unwrap().unwrap();
            s.set_epoch(0);
            let err = s.open_group("r2", "[]", "k2", 2).await.unwrap_err();
            assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
            let err = s.notify_group(g.id, &[], "{}", "{}", 3).await.unwrap_err();
            assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
            let err = s.close_group(g.id, &[], "{}", 4).await.unwrap_err();
            assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        }
    }
    #[tokio::test]
    async fn groups_list_open_then_recent_each_with_its_own_notifications() {
        for (_d, s) in temp_stores().await {
            let sinks = vec!["pd".to_owned()];
            let old = s.open_group("r", "[]", "k", 10).await.unwrap().unwrap();
            assert!(
                s.notify_group(old.id, &sinks, "{\"a\":\"timeout\"}", "{}", 11)
                    .await
                    .unwrap()
            );
            assert!(s.close_group(old.id, &sinks, "{}", 20).await.unwrap());
            // Same key again: a new group, later notifications.
            let new = s.open_group("r", "[]", "k", 30).await.unwrap().unwrap();
            assert!(
                s.notify_group(new.id, &sinks, "{}", "{}", 31)
                    .await
                    .unwrap()
            );
            let other = s.open_group("r2", "[]", "k2", 40).await.unwrap().unwrap();
            let list = s.alert_groups(10).await.unwrap();
            let got: Vec<(i64, &str)> = list.iter().map(|g| (g.id, g.state.as_str())).collect();
            assert_eq!(
                got,
                [(new.id, "open"), (other.id, "open"), (old.id, "resolved")]
            );
            assert_eq!(
                s.alert_groups(0).await.unwrap().len(),
                2,
                "open ones always"
            );
            let old_rec = s.alert_group(old.id).await.unwrap().unwrap();
            assert_eq!(old_rec.resolved_at_ms, Some(20));
            assert_eq!(old_rec.sent_json, "{\"a\":\"timeout\"}");
            let actions = |ns: Vec<GroupNotificationRow>| -> Vec<(Action, i64)> {
                ns.iter().map(|n| (n.action, n.created_ms)).collect()
            };
            assert_eq!(
                actions(s.group_notifications(&old_rec).await.unwrap()),
                [(Action::Trigger, 11), (Action::Resolve, 20)]
            );
            let new_rec = s.alert_group(new.id).await.unwrap().unwrap();
            assert_eq!(
                actions(s.group_notifications(&new_rec).await.unwrap()),
                [(Action::Trigger, 31)]
            );
            assert!(s.group_attempts(&new_rec).await.unwrap().is_empty());
            assert!(s.alert_group(other.id + 100).await.unwrap().is_none());
        }
    }
}
