//! Reads of the alert history for `/alerts`: filtered, newest first, one
//! page at a time (keyset pagination on `(opened_at_ms, id)`, so a page
//! never reads the rows before it). No writes: alert changes stay in
//! `alerts.rs` under the evaluator's fence.

use super::{AlertRow, Store, StoreError};
use crate::alerting::AlertState;

/// What `/alerts` filters on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only open or only resolved ones.
    pub state: Option<AlertState>,
    /// One check's.
    pub check_id: Option<String>,
    /// Opened at or after (unix ms).
    pub since_ms: Option<i64>,
    /// Older than this `(opened_at_ms, id)` (the previous page's last row).
    pub before: Option<(i64, i64)>,
}

impl Store {
    /// Up to `limit` alerts matching `filter`, newest first.
    pub async fn alert_page(
        &self,
        filter: &AlertFilter,
        limit: u32,
    ) -> Result<Vec<AlertRow>, StoreError> {
        // Unused filters compare a column with itself through a NULL test,
        // so one statement serves every combination.
        let rows = sqlx::query_as(
            "SELECT id, check_id, probe, kind, dedup_key, state, severity, summary, regions_json, code, \
             opened_at_ms, resolved_at_ms, notified_json, notified_ms, flapping, suppressed_by FROM alerts \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR check_id = $2) \
               AND opened_at_ms >= $3 \
               AND (opened_at_ms < $4 OR (opened_at_ms = $4 AND id < $5)) \
             ORDER BY opened_at_ms DESC, id DESC LIMIT $6",
        )
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.check_id.as_deref())
        .bind(filter.since_ms.unwrap_or(i64::MIN))
        .bind(filter.before.map_or(i64::MAX, |b| b.0))
        .bind(filter.before.map_or(i64::MAX, |b| b.1))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        alerting::{AlertKind, Severity},
        store::{NewAlert, tests::temp_stores},
    };

    fn alert(check: &str) -> NewAlert {
        NewAlert {
            check_id: check.into(),
            probe: None,
            kind: AlertKind::CheckFailing,
            dedup_key: format!("outpost/{check}/check_failing"),
            severity: Severity::Critical,
            summary: format!("{check} failing"),
            regions_json: "[\"eu\"]".into(),
            code: "timeout".into(),
            notified_json: "[]".into(),
            flapping: false,
            suppressed_by: String::new(),
        }
    }

    #[tokio::test]
    async fn alert_pages_filter_and_continue_where_the_last_one_ended() {
        for (_d, s) in temp_stores().await {
            for (i, check) in ["a", "b", "c", "a2"].iter().enumerate() {
                let at = 1000 * (i64::try_from(i).unwrap() + 1);
                s.fire_alert(&alert(check), &[], "{}", at)
                    .await
                    .unwrap()
                    .unwrap();
            }
            s.resolve_alert(1, "{}", None, 5000).await.unwrap();
            let all = s.alert_page(&AlertFilter::default(), 2).await.unwrap();
            assert_eq!(
                all.iter().map(|a| a.check_id.as_str()).collect::<Vec<_>>(),
                ["a2", "c"]
            );
            let last = all.last().unwrap();
            let next = AlertFilter {
                before: Some((last.opened_at_ms, last.id)),
                ..AlertFilter::default()
            };
            let page2 = s.alert_page(&next, 2).await.unwrap();
            assert_eq!(
                page2
                    .iter()
                    .map(|a| a.check_id.as_str())
                    .collect::<Vec<_>>(),
                ["b", "a"]
            );
            let resolved = AlertFilter {
                state: Some(AlertState::Resolved),
                ..AlertFilter::default()
            };
            let r = s.alert_page(&resolved, 10).await.unwrap();
            assert_eq!(r.iter().map(|a| a.id).collect::<Vec<_>>(), [1]);
            let one = AlertFilter {
                check_id: Some("b".into()),
                since_ms: Some(2000),
                ..AlertFilter::default()
            };
            assert_eq!(s.alert_page(&one, 10).await.unwrap().len(), 1);
            let late = AlertFilter {
                since_ms: Some(3500),
                ..AlertFilter::default()
            };
            assert_eq!(s.alert_page(&late, 10).await.unwrap().len(), 1);
        }
    }
}
