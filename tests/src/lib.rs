//! Shared helpers for the end-to-end tests in `tests/tests/`: a controller
//! and probes wired together on loopback, with configs written as TOML so
//! the tests go through the same validation as users.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use outpost_controller::RunningController;
use outpost_probe::{RunningProbe, config::RawProbeFile};

/// A temporary directory holding tokens, keys and the database.
pub struct Fleet {
    /// The directory.
    pub dir: tempfile::TempDir,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    /// A fresh directory.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    /// Writes a secret file and returns its path.
    pub fn secret(&self, name: &str, value: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        p
    }

    /// The SQLite database path.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("outpost.db")
    }

    /// `[[probes]]` entries for the regions, with token files `<region>.token`.
    pub fn probes_toml(&self, regions: &[&str]) -> String {
        let mut s = String::new();
        for r in regions {
            let token = self.secret(&format!("{r}.token"), &format!("token-{r}-0123456789"));
            s.push_str(&format!(
                "[[probes]]\nname = \"probe-{r}\"\nregion = \"{r}\"\ntoken = {{ file = \"{}\" }}\n",
                token.display()
            ));
        }
        s
    }

    /// Starts a controller from TOML text (store path filled in).
    pub async fn controller(&self, grpc_listen: &str, body: &str) -> RunningController {
        let text = format!(
            "[server]\ngrpc_listen = \"{grpc_listen}\"\nhttp_listen = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n{body}",
            self.db().display()
        );
        let cfg = outpost_controller::config::parse(&text, "test controller", &[]).unwrap_or_else(|e| panic!("{e}"));
        outpost_controller::Controller::start(cfg).await.unwrap()
    }

    /// Starts an in-process probe for `region` reporting to `grpc` with the
    /// region's token (or `token_override`).
    pub fn probe(&self, region: &str, grpc: std::net::SocketAddr, token_override: Option<&str>) -> RunningProbe {
        let token = match token_override {
            Some(t) => self.secret(&format!("{region}.override.token"), t),
            None => self.dir.path().join(format!("{region}.token")),
        };
        let text = format!(
            "[probe]\nname = \"probe-{region}\"\nregion = \"{region}\"\n[controller]\nurl = \"http://{grpc}\"\ntoken = {{ file = \"{}\" }}\nallow_plaintext = true\nheartbeat_interval = \"1s\"\n",
            token.display()
        );
        let raw: RawProbeFile =
            outpost_probe::config::load::load_str(&text, "test probe", outpost_probe::config::ENV, &[]).unwrap();
        let mut cfg = raw.validate("test probe").unwrap_or_else(|e| panic!("{e}"));
        cfg.outbox.dir = self.dir.path().join(format!("outbox-{region}"));
        outpost_probe::spawn(cfg, None).unwrap()
    }
}

/// Opens the controller's SQLite database read-only for assertions.
pub async fn db(path: &Path) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap()
}

/// One integer from a query.
pub async fn count(pool: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap()
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
