//! SQL of `leases`: the evaluator lease and its fencing epoch (see
//! [`crate::alerting::leader`] for the loop that holds it).
//!
//! One row per lease name. A replica holds the lease while `holder` names
//! it and `expires_at_ms` (the database's clock, never a replica's) is in
//! the future; taking over an expired lease, or renewing one's own after it
//! expired, increments `epoch`. Every alert change runs [`fence`] inside its
//! own transaction: it reads the lease row `FOR SHARE` and proceeds only if
//! the row still carries this replica's epoch and has not expired. A
//! takeover (`UPDATE` of that row) therefore either waits for the deposed
//! leader's transaction to commit, or commits first, after which the
//! deposed leader's check finds a different epoch and writes nothing: every
//! write of epoch *e* precedes every write of epoch *e + 1*.
//!
//! SQLite: one process owns the file, so it is always the evaluator (epoch
//! 1) and none of this SQL runs.

use std::time::Duration;

use super::{Engine, Store, StoreError, Tx};

/// The name of the evaluator's lease row.
pub const LEASE_NAME: &str = "evaluator";

/// The database's clock, unix ms (PostgreSQL).
macro_rules! db_now {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

/// A lease row (API, tests).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    /// Lease name.
    pub name: String,
    /// Replica holding it (or that held it last).
    pub holder: String,
    /// Fencing epoch: incremented on every change of holder or term.
    pub epoch: i64,
    /// When the current term started (database clock).
    pub acquired_at_ms: i64,
    /// When it lapses unless renewed (database clock).
    pub expires_at_ms: i64,
}

/// Checks, inside an alert change's transaction, that this replica still
/// holds the evaluator lease under `epoch`; returns the epoch to record.
pub(super) async fn fence(tx: &mut Tx<'_>, engine: Engine, epoch: i64) -> Result<i64, StoreError> {
    if engine == Engine::Sqlite {
        return Ok(epoch);
    }
    if epoch == 0 {
        return Err(StoreError::Fenced { epoch });
    }
    let held: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT epoch FROM leases WHERE name = $1 AND epoch = $2 AND expires_at_ms > ",
        db_now!(),
        " FOR SHARE"
    ))
    .bind(LEASE_NAME)
    .bind(epoch)
    .fetch_optional(&mut **tx)
    .await?;
    held.ok_or(StoreError::Fenced { epoch })
}

impl Store {
    /// Takes or renews the evaluator lease for `holder` for `lease` from
    /// now (database clock). `Some(epoch)` when `holder` holds it now;
    /// `None` while another replica's lease is unexpired. SQLite: always
    /// `Some(1)`.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        if self.engine == Engine::Sqlite {
            return Ok(Some(1));
        }
        let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        // `leases.*` in SET and WHERE is the row before the update; `excluded`
        // carries this attempt, with `acquired_at_ms` = the database's now.
        Ok(sqlx::query_scalar(concat!(
            "WITH t AS (SELECT ",
            db_now!(),
            " AS now) \
             INSERT INTO leases (name, holder, epoch, acquired_at_ms, expires_at_ms) \
             SELECT $1, $2, 1, t.now, t.now + $3 FROM t \
             ON CONFLICT (name) DO UPDATE SET \
               epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at_ms > excluded.acquired_at_ms \
                            THEN leases.epoch ELSE leases.epoch + 1 END, \
               acquired_at_ms = CASE WHEN leases.holder = excluded.holder AND leases.expires_at_ms > excluded.acquired_at_ms \
                            THEN leases.acquired_at_ms ELSE excluded.acquired_at_ms END, \
               holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE (leases.holder = excluded.holder AND leases.expires_at_ms > excluded.acquired_at_ms) \
                OR leases.expires_at_ms <= excluded.acquired_at_ms \
             RETURNING epoch"
        ))
        .bind(LEASE_NAME)
        .bind(holder)
        .bind(ms)
        .fetch_optional(&self.writer)
        .await?)
    }

    /// Gives the lease up (clean shutdown) so another replica takes over at
    /// once instead of after expiry. Only `holder`'s own lease is touched.
    pub async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        self.set_epoch(0);
        if self.engine == Engine::Sqlite {
            return Ok(());
        }
        sqlx::query("UPDATE leases SET expires_at_ms = 0 WHERE name = $1 AND holder = $2")
            .bind(LEASE_NAME)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The evaluator lease row, if any replica ever took it.
    pub async fn lease(&self) -> Result<Option<Lease>, StoreError> {
        if self.engine == Engine::Sqlite {
            return Ok(None);
        }
        Ok(sqlx::query_as(
            "SELECT name, holder, epoch, acquired_at_ms, expires_at_ms FROM leases WHERE name = $1",
        )
        .bind(LEASE_NAME)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records the epoch this replica holds (0: none). Alert changes are
    /// written under it and refused by the database once it is stale.
    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, std::sync::atomic::Ordering::SeqCst);
    }

    /// The epoch this replica believes it holds (0: none).
    pub fn epoch(&self) -> i64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This replica evaluates alerts (SQLite: always).
    pub fn is_leader(&self) -> bool {
        self.epoch() != 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use outpost_testkit::{TcpProxy, postgres};

    use super::*;
    use crate::{
        alerting::{Action, AlertKind, Severity},
        store::{NewAlert, StoreSpec},
    };

    const LEASE: Duration = Duration::from_millis(800);

    fn alert(check: &str) -> NewAlert {
        NewAlert {
            check_id: check.into(),
            probe: None,
            kind: AlertKind::CheckFailing,
            dedup_key: format!("outpost/{check}/check_failing"),
            severity: Severity::Warning,
            summary: "x".into(),
            regions_json: "[]".into(),
            code: "timeout".into(),
            notified_json: "{}".into(),
            flapping: false,
            suppressed_by: String::new(),
        }
    }

    async fn pg(url: &str) -> Store {
        Store::connect(&StoreSpec::postgres(url)).await.unwrap()
    }

    /// (state, epoch) of alert `id`, and the actions queued for it.
    async fn written(s: &Store, id: i64) -> (String, i64, Vec<Action>) {
        let (state, epoch): (String, i64) =
            sqlx::query_as("SELECT state, epoch FROM alerts WHERE id = $1")
                .bind(id)
                .fetch_one(&s.pool)
                .await
                .unwrap();
        let actions = s
            .notifications_for_alert(id)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.action)
            .collect();
        (state, epoch, actions)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_renewing_keeps_the_epoch_and_a_takeover_increments_it() {
        let Some(db) = postgres::database() else {
            return;
        };
        let (a, b) = (pg(&db.url).await, pg(&db.url).await);
        let e1 = a.acquire_lease("a", LEASE).await.unwrap().unwrap();
        assert_eq!(b.acquire_lease("b", LEASE).await.unwrap(), None);
        assert_eq!(a.acquire_lease("a", LEASE).await.unwrap(), Some(e1));
        assert_eq!(a.lease().await.unwrap().unwrap().holder, "a");
        tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
        let e2 = b.acquire_lease("b", LEASE).await.unwrap().unwrap();
        assert_eq!(e2, e1 + 1);
        assert_eq!(a.acquire_lease("a", LEASE).await.unwrap(), None);
        // A clean stop hands over at once, under a new epoch.
        b.release_lease("b").await.unwrap();
        assert!(!b.is_leader());
        assert_eq!(a.acquire_lease("a", LEASE).await.unwrap(), Some(e2 + 1));
    }

    /// The leader is cut off from PostgreSQL (its link through a proxy,
    /// stopped) long enough for its lease to lapse; another replica takes
    /// over. When the link comes back the old leader still believes its
    /// epoch: every alert change it then tries is refused by the database
    /// and writes nothing, while the new leader's go through.
    #[tokio::test]
    async fn a_deposed_leaders_writes_are_refused_when_its_link_comes_back() {
        let Some(db) = postgres::database() else {
            return;
        };
        let target = SocketAddr::from(([127, 0, 0, 1], db.port));
        let proxy = TcpProxy::start(target).await.unwrap();
        let port = proxy.port();
        let old = pg(&db.url_via(port)).await;
        let new = pg(&db.url).await;
        let e1 = old.acquire_lease("old", LEASE).await.unwrap().unwrap();
        old.set_epoch(e1);
        let sinks = vec!["pd".to_owned()];
        let id = old
            .fire_alert(&alert("api"), &sinks, "{}", 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            written(&new, id).await,
            ("open".into(), e1, vec![Action::Trigger])
        );

        proxy.stop().await;
        tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
        let e2 = new.acquire_lease("new", LEASE * 10).await.unwrap().unwrap();
        assert!(e2 > e1);
        new.set_epoch(e2);
        let _back = TcpProxy::start_on(port, target).await.unwrap();

        // The old leader's link works again (a plain read goes through) ...
        assert_eq!(old.open_alerts().await.unwrap().len(), 1);
        // ... and every change it tries under epoch e1 is refused.
        assert_eq!(old.epoch(), e1);
        let refused = old.resolve_alert(id, "{}", None, 2).await.unwrap_err();
        assert!(
            matches!(refused, StoreError::Fenced { epoch } if epoch == e1),
            "{refused}"
        );
        let refused = old
            .escalate_alert(id, Severity::Critical, "worse", &sinks, "{}", 2)
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");
        let refused = old
            .fire_alert(&alert("web"), &sinks, "{}", 2)
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");
        assert_eq!(
            written(&new, id).await,
            ("open".into(), e1, vec![Action::Trigger]),
            "nothing written by the deposed leader"
        );
        assert_eq!(new.open_alerts().await.unwrap().len(), 1);

        // The new leader's resolve goes through, under its epoch.
        assert_eq!(
            new.resolve_alert(id, "{}", None, 3).await.unwrap(),
            Some(sinks.clone())
        );
        assert_eq!(
            written(&new, id).await,
            (
                "resolved".into(),
                e2,
                vec![Action::Trigger, Action::Resolve]
            )
        );
    }

    /// An epoch of 0 (never led, or stepped down) writes nothing either.
    #[tokio::test]
    async fn a_replica_that_never_led_cannot_change_alerts() {
        let Some(db) = postgres::database() else {
            return;
        };
        let s = pg(&db.url).await;
        let refused = s.fire_alert(&alert("api"), &[], "{}", 1).await.unwrap_err();
        assert!(
            matches!(refused, StoreError::Fenced { epoch: 0 }),
            "{refused}"
        );
        assert!(s.open_alerts().await.unwrap().is_empty());
    }
}
