//! SQL of `silences`: silences made from the dashboard or the API
//! ([`crate::alerting::silence`]; those of the config file live in the
//! config). Rows are never deleted: ending a silence sets its end to now,
//! so the record of who silenced what stays.

use super::{Store, StoreError};

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SilenceRow {
    /// Id.
    pub id: i64,
    /// Check id glob (`*` any run of characters, `?` one).
    pub check_glob: String,
    /// Label equalities, a JSON object of strings.
    pub labels_json: String,
    /// Who made it: the API token's or the dashboard user's name.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// From (unix ms, inclusive).
    pub starts_at_ms: i64,
    /// Until (unix ms, exclusive).
    pub ends_at_ms: i64,
}

/// A silence to store.
#[derive(Debug, Clone)]
pub struct NewSilence {
    /// Check id glob.
    pub check_glob: String,
    /// Label equalities (JSON object).
    pub labels_json: String,
    /// Creator.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// From (unix ms).
    pub starts_at_ms: i64,
    /// Until (unix ms).
    pub ends_at_ms: i64,
}

macro_rules! silence_columns {
    () => {
        "id, check_glob, labels_json, created_by, comment, created_at_ms, starts_at_ms, ends_at_ms"
    };
}

impl Store {
    /// Stores a silence; its id.
    pub async fn insert_silence(&self, s: &NewSilence, now: i64) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO silences (check_glob, labels_json, created_by, comment, created_at_ms, \
             starts_at_ms, ends_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&s.check_glob)
        .bind(&s.labels_json)
        .bind(&s.created_by)
        .bind(&s.comment)
        .bind(now)
        .bind(s.starts_at_ms)
        .bind(s.ends_at_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Silences that have not ended by `now` (active or upcoming), by start.
    pub async fn current_silences(&self, now: i64) -> Result<Vec<SilenceRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            silence_columns!(),
            " FROM silences WHERE ends_at_ms > $1 ORDER BY starts_at_ms, id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The `limit` newest silences, ended ones included.
    pub async fn silences(&self, limit: u32) -> Result<Vec<SilenceRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            silence_columns!(),
            " FROM silences ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends a silence at `now` (an upcoming one never starts). `false` when
    /// there is no such silence or it had already ended.
    pub async fn end_silence(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE silences SET ends_at_ms = $1, \
             starts_at_ms = CASE WHEN starts_at_ms > $1 THEN $1 ELSE starts_at_ms END \
             WHERE id = $2 AND ends_at_ms > $1",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_stores;

    fn silence(starts: i64, ends: i64) -> NewSilence {
        NewSilence {
            check_glob: "api-*".into(),
            labels_json: "{\"team\":\"web\"}".into(),
            created_by: "alice".into(),
            comment: "deploy".into(),
            starts_at_ms: starts,
            ends_at_ms: ends,
        }
    }

    #[tokio::test]
    async fn silences_are_current_until_they_end_and_ending_one_keeps_the_record() {
        for (_d, s) in temp_stores().await {
            let a = s.insert_silence(&silence(100, 200), 50).await.unwrap();
            let b = s.insert_silence(&silence(300, 400), 50).await.unwrap();
            let ids = |rows: Vec<SilenceRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
            assert_eq!(ids(s.current_silences(150).await.unwrap()), [a, b]);
            assert_eq!(ids(s.current_silences(200).await.unwrap()), [b]);
            // Ending an upcoming one: it never starts, and stays listed.
            assert!(s.end_silence(b, 250).await.unwrap());
            assert!(!s.end_silence(b, 260).await.unwrap());
            assert!(s.current_silences(250).await.unwrap().is_empty());
            let all = s.silences(10).await.unwrap();
            assert_eq!(ids(all.clone()), [b, a]);
            assert_eq!((all[0].starts_at_ms, all[0].ends_at_ms), (250, 250));
            assert_eq!(
                (all[1].created_by.as_str(), all[1].comment.as_str()),
                ("alice", "deploy")
            );
            assert_eq!(all[1].created_at_ms, 50);
            assert!(!s.end_silence(999, 1).await.unwrap());
        }
    }
}
