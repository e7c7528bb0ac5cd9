//! SQL of `sessions`: dashboard logins ([`crate::auth::session`]). Rows hold
//! the SHA-256 of the cookie's id, never the id.

use super::{Store, StoreError};

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// Hex SHA-256 of the cookie's session id.
    pub id_hash: String,
    /// The user who logged in.
    pub user_name: String,
    /// Fingerprint of the password hash the login was checked against.
    pub credential: String,
    /// Login time (unix ms).
    pub created_ms: i64,
    /// Last request (unix ms, updated at most once a minute).
    pub last_seen_ms: i64,
    /// Absolute end (unix ms).
    pub expires_ms: i64,
}

impl Store {
    /// Records a new session, then deletes the user's oldest sessions beyond
    /// `keep_per_user` and every expired session.
    pub async fn insert_session(
        &self,
        row: &SessionRow,
        keep_per_user: u32,
        idle_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_name, credential, created_ms, last_seen_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id_hash)
        .bind(&row.user_name)
        .bind(&row.credential)
        .bind(row.created_ms)
        .bind(row.last_seen_ms)
        .bind(row.expires_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM sessions WHERE user_name = $1 AND id_hash NOT IN \
             (SELECT id_hash FROM sessions WHERE user_name = $1 ORDER BY created_ms DESC LIMIT $2)",
        )
        .bind(&row.user_name)
        .bind(i64::from(keep_per_user))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1 OR last_seen_ms <= $2")
            .bind(row.created_ms)
            .bind(idle_before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session with this id hash.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id_hash, user_name, credential, created_ms, last_seen_ms, expires_ms \
             FROM sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every session, newest first (the admin's list).
    pub async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id_hash, user_name, credential, created_ms, last_seen_ms, expires_ms \
             FROM sessions ORDER BY created_ms DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Moves a session's last-seen time forward.
    pub async fn touch_session(&self, id_hash: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET last_seen_ms = CASE WHEN last_seen_ms > $1 THEN last_seen_ms ELSE $1 END \
             WHERE id_hash = $2",
        )
        .bind(at_ms)
        .bind(id_hash)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Ends one session (logout, or found expired).
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ends every session of `user`; returns how many there were.
    pub async fn delete_sessions_of(&self, user: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(user)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    /// Ends every session whose user is not in `users`, and every expired
    /// one (after a reload, and hourly); returns how many.
    pub async fn prune_sessions(
        &self,
        users: &[String],
        now_ms: i64,
        idle_before_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut n =
            sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1 OR last_seen_ms <= $2")
                .bind(now_ms)
                .bind(idle_before_ms)
                .execute(&self.writer)
                .await?
                .rows_affected();
        let names: Vec<String> = sqlx::query_scalar("SELECT DISTINCT user_name FROM sessions")
            .fetch_all(&self.pool)
            .await?;
        for name in names.iter().filter(|n| !users.contains(n)) {
            n += self.delete_sessions_of(name).await?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;

    fn row(id: &str, user: &str, created: i64) -> SessionRow {
        SessionRow {
            id_hash: id.into(),
            user_name: user.into(),
            credential: "c".into(),
            created_ms: created,
            last_seen_ms: created,
            expires_ms: created + 1_000_000,
        }
    }

    #[tokio::test]
    async fn sessions_are_capped_per_user_and_pruned_by_user_and_age() {
        let (_d, s) = temp_store().await;
        for i in 0..4 {
            s.insert_session(&row(&format!("a{i}"), "alice", 1000 + i), 3, 0)
                .await
                .unwrap();
        }
        s.insert_session(&row("b0", "bob", 2000), 3, 0)
            .await
            .unwrap();
        let ids: Vec<String> = s
            .sessions()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id_hash)
            .collect();
        assert_eq!(ids, ["b0", "a3", "a2", "a1"]);
        s.touch_session("a1", 5000).await.unwrap();
        s.touch_session("a1", 4000).await.unwrap();
        assert_eq!(s.session("a1").await.unwrap().unwrap().last_seen_ms, 5000);
        // bob removed from the config; alice's sessions idle before 4500 end.
        let n = s
            .prune_sessions(&["alice".into()], 3000, 4500)
            .await
            .unwrap();
        assert_eq!(n, 3);
        let ids: Vec<String> = s
            .sessions()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id_hash)
            .collect();
        assert_eq!(ids, ["a1"]);
        s.delete_session("a1").await.unwrap();
        assert!(s.session("a1").await.unwrap().is_none());
    }
}
