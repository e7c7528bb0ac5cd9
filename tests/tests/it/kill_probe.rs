//! 50 × `kill -9` of a real `outpost-probe run` process at random moments
//! under heavy writes, always on the same outbox: the probe starts cleanly
//! every time, and in the end the store holds a contiguous run of its
//! sequences (nothing written was lost), none twice, and the outbox is empty.

#![allow(clippy::unwrap_used)]

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use outpost_e2e::{Fleet, binary, count, db, quiet_interval};
use outpost_testkit::{HttpServer, Reply, wait::eventually};

const CYCLES: usize = 50;
const CHECKS: usize = 100;
const REGION: &str = "eu-west";

/// A tiny deterministic PRNG (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn checks_toml(url: &str, interval: &str) -> String {
    (0..CHECKS)
        .map(|i| format!("[[checks]]\nid = \"k{i:03}\"\ninterval = \"{interval}\"\ntimeout = \"100ms\"\nhttp = {{ url = \"{url}\" }}\n"))
        .collect()
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(binary("outpost-probe"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("OUTPOST_LOG", "warn")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Problems a clean start must not show.
fn assert_clean(stderr: &str, cycle: usize) {
    for bad in [
        "cannot start",
        "ERROR",
        "outbox:",
        "outbox write failed",
        "panicked",
    ] {
        assert!(
            !stderr.contains(bad),
            "cycle {cycle}: {bad:?} in the probe's stderr:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_9_cycles_lose_nothing_written() {
    let started = Instant::now();
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let probes = fleet.probes_toml(&[REGION]);
    let body = format!("{probes}\n{}", checks_toml(&target.url("/"), "100ms"));
    let controller = fleet.controller("127.0.0.1:0", &body).await;
    let grpc = controller.grpc_addr();
    let config = fleet.probe_file(REGION, grpc, "fsync = \"never\"\n");
    let pool = db(&fleet.db()).await;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for cycle in 0..CYCLES {
        let mut child = spawn(&config);
        let delay = 50 + rng.below(351);
        std::thread::sleep(Duration::from_millis(delay));
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let stderr = stderr_of(&mut child);
        assert!(
            still_running,
            "cycle {cycle}: the probe exited on its own:\n{stderr}"
        );
        assert_clean(&stderr, cycle);
    }
    let after_kills = count(&pool, "SELECT COUNT(*) FROM results").await;
    assert!(after_kills > 0, "the killed probes reported results");

    // Last run: stop production without unassigning anything, let it drain,
    // then stop it gracefully.
    let ids: Vec<String> = (0..CHECKS).map(|i| format!("k{i:03}")).collect();
    let quiet = quiet_interval(&format!("probe-{REGION}"), &ids);
    controller.reload(fleet.controller_config(
        &grpc.to_string(),
        &format!("{probes}\n{}", checks_toml(&target.url("/"), &quiet)),
    ));
    let last_start = outpost_controller::store::now_ms();
    let mut child = spawn(&config);
    let store = controller.store().clone();
    eventually(
        "the last run draining its outbox",
        Duration::from_secs(60),
        || async {
            let probe = store
                .probes()
                .await
                .unwrap()
                .into_iter()
                .find(|p| p.name == format!("probe-{REGION}"));
            // A heartbeat of the last run saying nothing waits for an ack (and,
            // production stopped, nothing new can arrive).
            probe.is_some_and(|p| {
                p.connected
                    && p.queued_results == 0
                    && p.heartbeat_at_ms.is_some_and(|h| h > last_start)
            })
        },
    )
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let stderr = stderr_of(&mut child);
    assert_eq!(exit.code(), Some(0), "graceful stop:\n{stderr}");
    assert_clean(&stderr, CYCLES);

    // The outbox opens cleanly and is empty.
    let outbox = outpost_probe::outbox::Outbox::open(outpost_probe::outbox::OutboxConfig::new(
        fleet.outbox_dir(REGION),
    ))
    .unwrap();
    assert_eq!(outbox.len(), 0, "outbox empty after the drain");
    let acked = outbox.acked_through() as i64;
    drop(outbox);

    let stored = count(&pool, "SELECT COUNT(*) FROM results").await;
    assert_eq!(
        count(&pool, "SELECT COUNT(DISTINCT sequence) FROM results").await,
        stored,
        "no sequence stored twice"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT MAX(sequence) - MIN(sequence) + 1 FROM results"
        )
        .await,
        stored,
        "sequences are contiguous: nothing written was lost"
    );
    assert_eq!(
        count(&pool, "SELECT MAX(sequence) FROM results").await,
        acked,
        "everything acknowledged is stored"
    );
    eprintln!(
        "kill_probe: {CYCLES} kill -9 cycles, {stored} results stored ({after_kills} during the kills), {:.1}s",
        started.elapsed().as_secs_f64()
    );
    controller.shutdown().await;
}
