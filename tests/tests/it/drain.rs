//! SIGTERM to a real `outpost-probe run` process: it stops scheduling and
//! waits, up to `[controller] drain_timeout`, for the controller to ack what
//! it sent. The stream goes through a [`TcpProxy`] so a test decides when
//! acks can arrive.

#![allow(clippy::unwrap_used)]

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use outpost_e2e::{Fleet, binary, count, db};
use outpost_probe::outbox::{Outbox, OutboxConfig};
use outpost_testkit::{HttpServer, Reply, TcpProxy, wait::eventually};

const REGION: &str = "eu-west";

fn probe_config(fleet: &Fleet, grpc: std::net::SocketAddr, drain: &str) -> std::path::PathBuf {
    let token = fleet.dir.path().join(format!("{REGION}.token"));
    let text = format!(
        "[probe]\nname = \"probe-{REGION}\"\nregion = \"{REGION}\"\n[controller]\nurl = \"http://{grpc}\"\n\
         token = {{ file = \"{}\" }}\nallow_plaintext = true\nheartbeat_interval = \"1s\"\ndrain_timeout = \"{drain}\"\n\
         [outbox]\npath = \"{}\"\n",
        token.display(),
        fleet.outbox_dir(REGION).display()
    );
    let path = fleet.dir.path().join("probe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(binary("outpost-probe"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("OUTPOST_LOG", "info")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the process to exit (polling, the runtime stays free).
async fn exit_within(child: &mut Child, bound: Duration) -> (i32, Duration, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code().unwrap_or(-1), start.elapsed(), stderr);
        }
        assert!(
            start.elapsed() < bound,
            "the probe did not exit within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A controller with a 100 ms check, a proxy in front of it, and a probe
/// process reporting through the proxy, cut (blackholed) with results in
/// flight.
async fn cut_with_results_in_flight(
    drain: &str,
) -> (
    Fleet,
    outpost_controller::RunningController,
    TcpProxy,
    Child,
    outpost_testkit::RunningServer,
) {
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let body = format!(
        "{}\n[[checks]]\nid = \"fast\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nhttp = {{ url = \"{}\" }}\n",
        fleet.probes_toml(&[REGION]),
        target.url("/")
    );
    let ctl = fleet.controller("127.0.0.1:0", &body).await;
    let proxy = TcpProxy::start(ctl.grpc_addr()).await.unwrap();
    let child = spawn(&probe_config(&fleet, proxy.addr(), drain));
    let pool = db(&fleet.db()).await;
    eventually("results stored", Duration::from_secs(20), || async {
        count(&pool, "SELECT COUNT(*) FROM results").await >= 3
    })
    .await;
    proxy.blackhole();
    // Several runs finish meanwhile: a batch goes into the hole, unacked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pool.close().await;
    (fleet, ctl, proxy, child, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_the_acks_of_what_was_sent() {
    let (fleet, ctl, proxy, mut child, _target) = cut_with_results_in_flight("20s").await;
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the probe exited with unacked results"
    );
    // Heal: the swallowed connection closes, the probe reconnects within
    // the drain, resends and is acked.
    proxy.heal();
    let (code, took, stderr) = exit_within(&mut child, Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("every result sent was acked"), "{stderr}");
    eprintln!("drain: exited {took:?} after the heal");

    let outbox = Outbox::open(OutboxConfig::new(fleet.outbox_dir(REGION))).unwrap();
    assert_eq!(outbox.len(), 0, "nothing left unacked");
    assert!(outbox.last_sequence() > 0);
    assert_eq!(outbox.acked_through(), outbox.last_sequence());
    let pool = db(&fleet.db()).await;
    let stored = count(&pool, "SELECT COUNT(DISTINCT sequence) FROM results").await;
    let max = count(&pool, "SELECT MAX(sequence) FROM results").await;
    assert_eq!(
        max as u64,
        outbox.last_sequence(),
        "the newest result is stored"
    );
    assert_eq!(stored, count(&pool, "SELECT COUNT(*) FROM results").await);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_up_after_the_drain_timeout() {
    let (fleet, ctl, _proxy, mut child, _target) = cut_with_results_in_flight("2s").await;
    sigterm(&child);
    let (code, took, stderr) = exit_within(&mut child, Duration::from_secs(10)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took >= Duration::from_millis(1900),
        "exited after {took:?}: did not wait"
    );
    assert!(
        took < Duration::from_secs(5),
        "exited after {took:?}: past the bound"
    );
    assert!(stderr.contains("drain timeout passed"), "{stderr}");
    // What was not acked stays in the outbox for the next start.
    let outbox = Outbox::open(OutboxConfig::new(fleet.outbox_dir(REGION))).unwrap();
    assert!(!outbox.is_empty(), "the cut left results unacked");
    ctl.shutdown().await;
}
