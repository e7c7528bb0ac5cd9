//! The scheduler against real targets: cadence, the concurrency cap and
//! skipped overruns.
//!
//! Real time: every run is a real HTTP exchange on loopback, which a paused
//! runtime would race past (see `outpost_testkit::wait`). So the tests wait
//! for the runs they need, and judge the cadence by the runs' own start
//! times against the scheduler's slot grid, not by counting after a sleep.
//! The slot arithmetic itself (phase, missed slots) is unit-tested in
//! `scheduler.rs` with injected instants.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use outpost_probe::{check::Outcome, config::RawProbeFile, scheduler::jitter};
use outpost_testkit::{Hostile, HttpServer, Reply, wait::eventually};

fn config(text: &str) -> outpost_probe::config::ProbeConfig {
    let raw: RawProbeFile = toml::from_str(text).unwrap();
    raw.validate("test").unwrap()
}

#[tokio::test]
async fn checks_run_at_their_interval_and_overruns_are_skipped_and_counted() {
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
    let stats = probe.scheduler.stats.clone();
    // One slot, two checks that each hold it for a full interval: runs queue
    // behind each other and due runs of a still-waiting check are skipped.
    eventually(
        "three runs and a skipped overrun",
        Duration::from_secs(10),
        || async {
            seen.lock().unwrap().len() >= 3 && stats.skipped_overrun.load(Ordering::Relaxed) > 0
        },
    )
    .await;
    probe.shutdown().await;
    let outcomes = seen.lock().unwrap();
    assert!(outcomes.iter().all(|o| !o.ok()));
    // Never two runs at once: each started after the previous one's timeout.
    let mut starts: Vec<_> = outcomes.iter().map(|o| o.started_at).collect();
    starts.sort();
    for w in starts.windows(2) {
        assert!(
            w[1] - w[0] >= time::Duration::milliseconds(190),
            "{starts:?}"
        );
    }
}

#[tokio::test]
async fn a_check_runs_once_per_slot_on_its_phase() {
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
    let stats = probe.scheduler.stats.clone();
    eventually("ten runs", Duration::from_secs(10), || async {
        seen.lock().unwrap().len() >= 10
    })
    .await;
    probe.shutdown().await;
    let outcomes = seen.lock().unwrap();
    assert!(outcomes.iter().all(Outcome::ok));
    // Slots are `offset + k·100 ms` on the wall clock, offset the check's
    // deterministic jitter for the probe ("local" when standalone). Each run
    // starts in its own slot, the next one each time: none doubled, none
    // skipped, no drift. A run starts at or after its slot; up to 95 ms late
    // is tolerated (the box is shared), and 5 ms early for the wall clock
    // being slewed against the monotonic one the slots are timed on.
    let offset = jitter("local", "a", Duration::from_millis(100)).as_millis() as i128;
    let slot = |o: &Outcome| {
        let ms = o.started_at.unix_timestamp_nanos() / 1_000_000 - offset;
        (ms + 5).div_euclid(100)
    };
    let slots: Vec<i128> = outcomes.iter().map(slot).collect();
    let first = slots[0];
    let expected: Vec<i128> = (first..first + slots.len() as i128).collect();
    assert_eq!(slots, expected, "slot of each run");
    assert_eq!(stats.skipped_late.load(Ordering::Relaxed), 0);
    assert_eq!(stats.skipped_overrun.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn run_now_starts_one_extra_run_at_once_rate_limited_without_moving_slots() {
    use outpost_probe::scheduler::RunNow;
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    // A 1 h interval: no regular slot is due during the test (checked below).
    let cfg = config(&format!(
        "[[checks]]\nid = \"hourly\"\ninterval = \"1h\"\ntimeout = \"500ms\"\nhttp = {{ url = \"{}\" }}\n",
        srv.url("/")
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let hour = Duration::from_secs(3600);
    let next =
        outpost_probe::scheduler::until_next_slot(now, hour, jitter("local", "hourly", hour));
    if next < Duration::from_secs(30) {
        eprintln!("skipped: the regular slot of the check is due within the test");
        return;
    }
    let seen: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let sink = seen.clone();
    let probe =
        outpost_probe::spawn(cfg, Some(Arc::new(move |o| sink.lock().unwrap().push(o)))).unwrap();
    let s = probe.scheduler.clone();
    assert_eq!(s.run_now("nope"), RunNow::Unknown);
    assert_eq!(s.run_now("hourly"), RunNow::Started);
    // A burst of hints while it runs or right after: no second run.
    for _ in 0..50 {
        let r = s.run_now("hourly");
        assert!(
            matches!(r, RunNow::AlreadyRunning | RunNow::RateLimited),
            "{r:?}"
        );
    }
    eventually("the extra run", Duration::from_secs(5), || async {
        seen.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(s.run_now("hourly"), RunNow::RateLimited);
    // min(1 h, 1 s) later: one more.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(s.run_now("hourly"), RunNow::Started);
    eventually("the second extra run", Duration::from_secs(5), || async {
        seen.lock().unwrap().len() == 2
    })
    .await;
    assert!(seen.lock().unwrap().iter().all(Outcome::ok));
    assert_eq!(s.stats.extra_runs.load(Ordering::Relaxed), 2);
    assert_eq!(
        s.stats.started.load(Ordering::Relaxed),
        2,
        "no regular slot ran"
    );
    probe.shutdown().await;
}
