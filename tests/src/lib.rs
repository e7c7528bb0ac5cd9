//! Shared helpers for the end-to-end tests in `tests/it/`: a controller
//! and probes wired together on loopback, with configs written as TOML so
//! the tests go through the same validation as users. What needs neither the
//! probe nor the controller (waiting, HTTP clients, free ports) is in the
//! test kit (`outpost_testkit::{wait, client, free_port}`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use outpost_controller::RunningController;
use outpost_probe::{RunningProbe, config::RawProbeFile};
use outpost_testkit::wait::eventually;

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
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
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
            let token = self.secret(
                &format!("{r}.token"),
                &format!("token-{r}-0123456789abcdef0123456789abcdef"),
            );
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
            "[server]\ngrpc_listen = \"{grpc_listen}\"\nhttp_listen = \"127.0.0.1:0\"\nallow_plaintext_probes = true\n[store]\npath = \"{}\"\n{body}",
            self.db().display()
        );
        let cfg = outpost_controller::config::parse(&text, "test controller", &[])
            .unwrap_or_else(|e| panic!("{e}"));
        outpost_controller::Controller::start(cfg).await.unwrap()
    }

    /// Starts an in-process probe for `region` reporting to `grpc` with the
    /// region's token (or `token_override`).
    pub fn probe(
        &self,
        region: &str,
        grpc: std::net::SocketAddr,
        token_override: Option<&str>,
    ) -> RunningProbe {
        let token = match token_override {
            Some(t) => self.secret(&format!("{region}.override.token"), t),
            None => self.dir.path().join(format!("{region}.token")),
        };
        let text = format!(
            "[probe]\nname = \"probe-{region}\"\nregion = \"{region}\"\n[controller]\nurl = \"http://{grpc}\"\ntoken = {{ file = \"{}\" }}\nallow_plaintext = true\nheartbeat_interval = \"1s\"\n",
            token.display()
        );
        let raw: RawProbeFile = outpost_probe::config::load::load_str(
            &text,
            "test probe",
            outpost_probe::config::ENV,
            &[],
        )
        .unwrap();
        let mut cfg = raw.validate("test probe").unwrap_or_else(|e| panic!("{e}"));
        cfg.outbox.dir = self.dir.path().join(format!("outbox-{region}"));
        outpost_probe::spawn(cfg, None).unwrap()
    }
}

/// Opens the controller's SQLite database read-only for assertions.
pub async fn db(path: &Path) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap()
}

/// Proof that the controller's workers ran past this moment, so a test may
/// then assert that nothing (more) happened: waits for an evaluator pass
/// over every check that started at or after now (within one 1 s tick), then
/// for no notification due by then to be left pending.
pub async fn settled(ctl: &RunningController) {
    let c = ctl.controller();
    let now = c.now_ms();
    let wait = Duration::from_secs(10);
    eventually("an evaluator pass after now", wait, || async {
        c.evaluated_ms() >= Some(now)
    })
    .await;
    eventually("no notification due and pending", wait, || async {
        let next = c.store().next_notification_due().await.expect("store");
        next.is_none_or(|due| due > now)
    })
    .await;
}

/// One integer from a query.
pub async fn count(pool: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Path of a workspace binary (`outpost-probe`, `outpost-controller`) next to
/// the test executable (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
/// `cargo test --workspace` builds it before running tests; when it is
/// missing (e.g. `cargo test -p outpost-e2e`), it is built here with `$CARGO`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let package = name;
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", package, "--bin", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p {package} failed");
    }
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// An interval for `checks` (ids) of probe `probe` such that none of them is
/// due within the next ten minutes: reassigning checks at this interval
/// stops a probe's production without unassigning anything (results in
/// flight are still accepted). Uses the scheduler's own deterministic jitter.
pub fn quiet_interval(probe: &str, checks: &[String]) -> String {
    use outpost_probe::scheduler::{jitter, until_next_slot};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    for hours in 1..200u64 {
        let interval = Duration::from_secs(hours * 3600);
        let quiet = checks.iter().all(|id| {
            let off = jitter(probe, id, interval);
            until_next_slot(now, interval, off) > Duration::from_secs(600)
        });
        if quiet {
            return format!("{hours}h");
        }
    }
    panic!("no quiet interval found for {} checks", checks.len());
}

impl Fleet {
    /// Parses a controller config as [`Fleet::controller`] would (for reloads).
    pub fn controller_config(
        &self,
        grpc_listen: &str,
        body: &str,
    ) -> outpost_controller::ControllerConfig {
        let text = format!(
            "[server]\ngrpc_listen = \"{grpc_listen}\"\nhttp_listen = \"127.0.0.1:0\"\nallow_plaintext_probes = true\n[store]\npath = \"{}\"\n{body}",
            self.db().display()
        );
        outpost_controller::config::parse(&text, "test controller", &[])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes a config file for an `outpost-probe run` process of `region`
    /// (token file from [`Fleet::probes_toml`], outbox in `outbox-<region>`,
    /// `extra` appended) and returns its path.
    pub fn probe_file(&self, region: &str, grpc: std::net::SocketAddr, extra: &str) -> PathBuf {
        let token = self.dir.path().join(format!("{region}.token"));
        let text = format!(
            "[probe]\nname = \"probe-{region}\"\nregion = \"{region}\"\n[controller]\nurl = \"http://{grpc}\"\ntoken = {{ file = \"{}\" }}\n\
             allow_plaintext = true\nheartbeat_interval = \"1s\"\n[outbox]\npath = \"{}\"\n{extra}",
            token.display(),
            self.outbox_dir(region).display()
        );
        let path = self.dir.path().join(format!("probe-{region}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The outbox directory of `region`'s probe.
    pub fn outbox_dir(&self, region: &str) -> PathBuf {
        self.dir.path().join(format!("outbox-{region}"))
    }
}
