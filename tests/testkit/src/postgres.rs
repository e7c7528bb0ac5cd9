//! A throwaway PostgreSQL cluster for tests and benchmarks, from Debian's
//! binaries (`/usr/lib/postgresql/<version>/bin`, package `postgresql`).
//!
//! [`database`] hands each test a database of its own in one cluster per
//! test process, started on first use: `initdb` in a fresh directory under
//! the temp dir (as `nobody` when we are root — initdb refuses root),
//! `postgres` listening on `127.0.0.1` on a free port, trust
//! authentication, its unix socket in the same directory. The server runs
//! under a small `sh` keeper whose stdin is a pipe from this process: when
//! the process ends, however it ends, the pipe closes, the keeper stops the
//! server (fast shutdown) and removes the directory. Nothing outlives the
//! test binary.
//!
//! Environment:
//! - `OUTPOST_TEST_POSTGRES_URL=postgres://user@host:port/db` uses that
//!   server instead (databases are created and left there).
//! - `OUTPOST_TEST_POSTGRES=skip` makes [`database`] return `None`, so the
//!   PostgreSQL half of every store test is skipped (with a line on stderr)
//!   on a machine without PostgreSQL. Never set in CI: without it a cluster
//!   that cannot start fails the test with the reason.
//! - `OUTPOST_PG_BIN=/path/to/bin` overrides where the binaries are.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// The opt-out variable (see the module doc).
pub const SKIP_VAR: &str = "OUTPOST_TEST_POSTGRES";
/// An external server to use instead of a throwaway cluster.
pub const URL_VAR: &str = "OUTPOST_TEST_POSTGRES_URL";

/// A running cluster (or an external server).
#[derive(Debug)]
pub struct PgCluster {
    /// `127.0.0.1` port, or the external server's.
    port: u16,
    /// Admin URL without database (`postgres://postgres@127.0.0.1:PORT`).
    base: String,
    bin: PathBuf,
    dir: Option<PathBuf>,
    /// The keeper; dropping its stdin stops the server.
    keeper: Mutex<Option<Child>>,
}

/// One database of a cluster, named uniquely for one test.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub url: String,
    /// Database name.
    pub name: String,
    /// Server port (a proxy in front of it needs it).
    pub port: u16,
    bin: PathBuf,
}

static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh database in this process's cluster. `None` only when
/// `OUTPOST_TEST_POSTGRES=skip`; panics with the reason when the cluster
/// cannot start (so CI never passes a store test without PostgreSQL).
pub fn database() -> Option<PgDatabase> {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "skip") {
        eprintln!("{SKIP_VAR}=skip: the PostgreSQL half of this test is skipped");
        return None;
    }
    match shared_cluster() {
        Ok(c) => Some(
            c.create_database()
                .unwrap_or_else(|e| panic!("cannot create a PostgreSQL test database: {e:#}")),
        ),
        Err(e) => panic!(
            "PostgreSQL test cluster did not start: {e}\n\
             Install Debian's `postgresql` package (apt-get install postgresql), or set \
             {URL_VAR}=postgres://… to use a running server, or {SKIP_VAR}=skip to skip \
             the PostgreSQL half of the store tests on this machine (never in CI)."
        ),
    }
}

/// This process's cluster, started on first use (or the external server).
fn shared_cluster() -> &'static Result<PgCluster, String> {
    SHARED.get_or_init(|| {
        match std::env::var(URL_VAR) {
            Ok(url) => PgCluster::external(&url),
            Err(_) => PgCluster::start(false),
        }
        .map_err(|e| format!("{e:#}"))
    })
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn find_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("OUTPOST_PG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| anyhow::anyhow!("no /usr/lib/postgresql ({e}): is `postgresql` installed?"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow::anyhow!("no /usr/lib/postgresql/*/bin/initdb"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn id_of(flag: &str, user: &str) -> anyhow::Result<u32> {
    let out = Command::new("id").args([flag, user]).output()?;
    anyhow::ensure!(out.status.success(), "no user {user}");
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// `program args…`, as `nobody` when we are root.
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PgCluster {
    /// Starts a new cluster. `durable` keeps PostgreSQL's defaults (fsync,
    /// synchronous commit: benchmarks); otherwise both are off (tests).
    pub fn start(durable: bool) -> anyhow::Result<PgCluster> {
        let bin = find_bin()?;
        let root = is_root();
        let dir = std::env::temp_dir().join(format!(
            "outpost-pg-{}-{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)?;
        if root {
            std::os::unix::fs::chown(
                &dir,
                Some(id_of("-u", "nobody")?),
                Some(id_of("-g", "nobody")?),
            )?;
        }
        let started = Self::start_in(&bin, root, &dir, durable);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_in(bin: &Path, root: bool, dir: &Path, durable: bool) -> anyhow::Result<PgCluster> {
        let data = dir.join("data");
        let out = as_server_user(root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_port()?;
        let mut settings = vec![
            format!("port={port}"),
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories={}", dir.display()),
            "max_connections=400".to_owned(),
            "shared_buffers=128MB".to_owned(),
        ];
        if !durable {
            settings.extend(
                [
                    "fsync=off",
                    "synchronous_commit=off",
                    "full_page_writes=off",
                ]
                .map(String::from),
            );
        }
        let mut server = format!(
            "exec {} -D {}",
            bin.join("postgres").display(),
            data.display()
        );
        for s in &settings {
            server.push_str(&format!(" -c {s}"));
        }
        // The keeper: the server in the background, then wait for our end of
        // the pipe to close, stop the server, remove the directory.
        let script = format!(
            "({server}) >{log} 2>&1 & pid=$!; read _ignored; kill -INT $pid; wait $pid; rm -rf {dir}",
            log = dir.join("server.log").display(),
            dir = dir.display(),
        );
        let keeper = as_server_user(root, Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let cluster = PgCluster {
            port,
            base: format!("postgres://postgres@127.0.0.1:{port}"),
            bin: bin.to_path_buf(),
            dir: Some(dir.to_path_buf()),
            keeper: Mutex::new(Some(keeper)),
        };
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// An external server reachable at `url` (its database part is ignored).
    pub fn external(url: &str) -> anyhow::Result<PgCluster> {
        let bin = find_bin().unwrap_or_else(|_| PathBuf::from("/usr/bin"));
        let base = match url.rsplit_once('/') {
            Some((head, _)) if head.contains("//") && head.len() > "postgres://".len() => {
                head.to_owned()
            }
            _ => url.to_owned(),
        };
        let port = base
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(5432);
        let c = PgCluster {
            port,
            base,
            bin,
            dir: None,
            keeper: Mutex::new(None),
        };
        c.wait_ready(Duration::from_secs(5))?;
        Ok(c)
    }

    /// Runs `sql` in database `db` with `psql`; returns its output.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .arg(format!("{}/{db}", self.base))
            .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + within;
        loop {
            match self.psql("postgres", "SELECT 1") {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > end => {
                    let log = self
                        .dir
                        .as_ref()
                        .and_then(|d| std::fs::read_to_string(d.join("server.log")).ok())
                        .unwrap_or_default();
                    anyhow::bail!("server not ready after {within:?}: {e}\n{log}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database with a name unique in this process.
    pub fn create_database(&self) -> anyhow::Result<PgDatabase> {
        let name = format!(
            "outpost_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(PgDatabase {
            url: format!("{}/{name}", self.base),
            name,
            port: self.port,
            bin: self.bin.clone(),
        })
    }

    /// Stops the server now (also done when the process exits).
    pub fn stop(&self) {
        let child = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"\n");
            }
            let _ = child.wait();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

impl PgDatabase {
    /// Runs SQL in this database with psql; the rows, `|`-separated, one a
    /// line (tests inspect state with it).
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .arg(&self.url)
            .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The URL of this database reached through another port (a proxy).
    pub fn url_via(&self, port: u16) -> String {
        self.url
            .replacen(&format!(":{}/", self.port), &format!(":{port}/"), 1)
    }
}
