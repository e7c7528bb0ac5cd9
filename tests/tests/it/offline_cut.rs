//! A probe cut off from its controller through a [`TcpProxy`], for longer
//! than both sides' HTTP/2 keepalive (10 s ping + 5 s timeout): exactly one
//! `probe_offline` trigger per outage at the PagerDuty receiver, within
//! `offline_after` + one evaluation tick of the last message, no resolve
//! while the cut lasts (the controller noticing the dead stream is not
//! hearing from the probe), one resolve once the probe is back. Twice: a
//! silent half-open cut (blackhole), then a reset.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use outpost_e2e::Fleet;
use outpost_testkit::{HttpServer, PagerEvent, PagerReceiver, Reply, TcpProxy, wait::eventually};

const REGION: &str = "eu-west";
const PROBE: &str = "probe-eu-west";
const KEY: &str = "outpost/probe/probe-eu-west/probe_offline";
const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";
const OFFLINE_AFTER_MS: i64 = 3_000;

fn offline_events(pager: &PagerReceiver) -> Vec<PagerEvent> {
    pager
        .events()
        .into_iter()
        .filter(|e| e.dedup_key == KEY)
        .collect()
}

fn actions(events: &[PagerEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_action.as_str()).collect()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The probe's row: (last seen, connected).
async fn probe_row(ctl: &outpost_controller::RunningController) -> Option<(i64, bool)> {
    ctl.store()
        .probes()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == PROBE)
        .map(|p| (p.last_seen_ms, p.connected))
}

/// Cuts for `cut`, watching the pager all along: returns the detection
/// time (last message received → trigger accepted by the pager), asserting
/// one trigger and no resolve while cut, and that the controller noticed
/// the dead stream during the cut when `expect_disconnect`.
async fn cut(
    ctl: &outpost_controller::RunningController,
    pager: &PagerReceiver,
    before: usize,
    cut: Duration,
    expect_disconnect: bool,
) -> Duration {
    let start = Instant::now();
    let mut detected: Option<Duration> = None;
    let mut saw_disconnect = false;
    let mut last_seen_at_cut = None;
    while start.elapsed() < cut {
        let events = offline_events(pager);
        let new = &events[before..];
        assert!(
            new.len() <= 1 && new.iter().all(|e| e.event_action == "trigger"),
            "while cut ({:?} in): {:?}",
            start.elapsed(),
            actions(&events)
        );
        let (last_seen, connected) = probe_row(ctl).await.unwrap();
        // The last message the controller got moves no more once the cut
        // has taken effect (the first sample may still see one in flight).
        if start.elapsed() > Duration::from_millis(500) {
            let at = *last_seen_at_cut.get_or_insert(last_seen);
            assert_eq!(last_seen, at, "last_seen_ms moved while cut");
        }
        saw_disconnect |= !connected;
        if detected.is_none() && new.len() == 1 {
            let ms = now_ms() - last_seen;
            detected = Some(Duration::from_millis(u64::try_from(ms).unwrap()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        saw_disconnect, expect_disconnect,
        "the controller noticed the dead stream while cut"
    );
    let detected = detected.unwrap_or_else(|| panic!("no probe_offline trigger within {cut:?}"));
    // offline_after + one 1 s tick, plus delivery and this loop's sampling.
    assert!(
        detected <= Duration::from_millis(OFFLINE_AFTER_MS as u64 + 1_000 + 700),
        "detected after {detected:?}"
    );
    detected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_longer_than_the_keepalive_pages_once_and_resolves_once_after_heal() {
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let fleet = Fleet::new();
    let key = fleet.secret("pd.key", ROUTING_KEY);
    let body = format!(
        "{}[alerting]\noffline_after = \"{}ms\"\n\
         [[checks]]\nid = \"api\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nhttp = {{ url = \"{}\" }}\n\
         [[sinks]]\nname = \"pagerduty\"\npagerduty = {{ routing_key = {{ file = \"{}\" }}, api_url = \"{}\" }}\n\
         [[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\"]\n",
        fleet.probes_toml(&[REGION]),
        OFFLINE_AFTER_MS,
        target.url("/"),
        key.display(),
        pager.url()
    );
    let ctl = fleet.controller("127.0.0.1:0", &body).await;
    let proxy = TcpProxy::start(ctl.grpc_addr()).await.unwrap();
    let _probe = fleet.probe(REGION, proxy.addr(), None);
    eventually(
        "the probe is connected",
        Duration::from_secs(20),
        || async { probe_row(&ctl).await.is_some_and(|(_, c)| c) },
    )
    .await;

    // 1. A silent cut (half-open both ways) of 20 s: past the controller's
    //    keepalive (15 s), which used to count as hearing from the probe.
    proxy.blackhole();
    let silent = cut(&ctl, &pager, 0, Duration::from_secs(20), true).await;
    proxy.heal();
    eventually(
        "one resolve after heal",
        Duration::from_secs(60),
        || async { offline_events(&pager).len() >= 2 },
    )
    .await;
    assert_eq!(actions(&offline_events(&pager)), ["trigger", "resolve"]);

    // 2. A reset cut of 8 s: every connection refused at once.
    eventually("the probe is back", Duration::from_secs(20), || async {
        probe_row(&ctl).await.is_some_and(|(_, c)| c)
    })
    .await;
    proxy.reset();
    let reset = cut(&ctl, &pager, 2, Duration::from_secs(8), true).await;
    proxy.heal();
    eventually(
        "one resolve after heal",
        Duration::from_secs(60),
        || async { offline_events(&pager).len() >= 4 },
    )
    .await;
    // Settle: nothing more arrives (the evaluator keeps ticking meanwhile).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        actions(&offline_events(&pager)),
        ["trigger", "resolve", "trigger", "resolve"]
    );
    // An offline probe's region is STALE, never a per-check page.
    assert!(
        pager.events().iter().all(|e| e.dedup_key == KEY),
        "{:?}",
        pager.events()
    );
    eprintln!(
        "probe_offline detection (last message → pager accepted the trigger), offline_after {OFFLINE_AFTER_MS} ms: blackhole {silent:?}, reset {reset:?}"
    );
}
