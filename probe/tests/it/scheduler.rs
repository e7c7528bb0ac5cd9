//! The scheduler against real targets: cadence, the concurrency cap and
//! skipped overruns.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use outpost_probe::{check::Outcome, config::RawProbeFile};
use outpost_testkit::{Hostile, HttpServer, Reply};

fn config(text: &str) -> outpost_probe::config::ProbeConfig {
    let raw: RawProbeFile = toml::from_str(text).unwrap();
    raw.validate("test").unwrap()
}

#[tokio::test]
async fn checks_run_at_their_interval_and_overruns_are_skipped_and_counted() {
    let fast = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let silent = Hostile::silent().await.unwrap();
    let cfg = config(&format!(
        r#"
[scheduler]
max_concurrency = 1
[[checks]]
id = "slow-a"
interval = "200ms"
timeout = "200ms"
http = {{ url = "{s}" }}
[[checks]]
id = "slow-b"
interval = "200ms"
timeout = "200ms"
http = {{ url = "{s}" }}
"#,
        s = silent.url("/")
    ));
    let seen: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let sink = seen.clone();
    let probe =
        outpost_probe::spawn(cfg, Some(Arc::new(move |o| sink.lock().unwrap().push(o)))).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = probe.scheduler.stats.clone();
    probe.shutdown().await;
    // One slot, two checks that each hold it for a full interval: runs queue
    // behind each other and due runs of a still-waiting check are skipped.
    assert!(stats.skipped_overrun.load(Ordering::Relaxed) > 0);
    let outcomes = seen.lock().unwrap();
    assert!(outcomes.len() >= 3, "{}", outcomes.len());
    assert!(outcomes.iter().all(|o| !o.ok()));
    drop(fast);
}

#[tokio::test]
async fn a_check_runs_about_once_per_interval() {
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let cfg = config(&format!(
        "[[checks]]\nid = \"a\"\ninterval = \"100ms\"\nhttp = {{ url = \"{}\" }}\n",
        srv.url("/")
    ));
    let seen: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let sink = seen.clone();
    let probe =
        outpost_probe::spawn(cfg, Some(Arc::new(move |o| sink.lock().unwrap().push(o)))).unwrap();
    tokio::time::sleep(Duration::from_millis(1050)).await;
    probe.shutdown().await;
    let n = seen.lock().unwrap().len();
    // 10 slots in ~1 s (the first one lands within the first interval).
    assert!((9..=11).contains(&n), "{n} runs");
    assert!(seen.lock().unwrap().iter().all(Outcome::ok));
}
