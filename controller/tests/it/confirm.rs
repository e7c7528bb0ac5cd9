//! Faster confirmation end to end on loopback, under a manual clock: the
//! controller sends `RunNow` to the fake probes (real gRPC) of a region
//! failing unconfirmed, and to the other regions on a first failure; the
//! probes answer with results; the test kit's PagerDuty receiver.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure

use std::time::Duration;

use crate::support::*;
use outpost_controller::{ManualClock, RunningController};
use outpost_testkit::PagerReceiver;

fn check(alert: &str) -> String {
    format!(
        "[[checks]]\nid = \"api-health\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
         http = {{ url = \"https://api.example.net/health\" }}\nalert = {{ {alert} }}\n"
    )
}

async fn start_probes(
    alert: &str,
) -> (
    PagerReceiver,
    RunningController,
    ManualClock,
    Vec<FakeProbe>,
    tempfile::TempDir,
) {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctl, clock) = start_manual(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        &check(alert),
    ))
    .await;
    let mut probes = Vec::new();
    for (name, _, _) in PROBES {
        let mut p = connect(ctl.grpc_addr(), name).await;
        p.assignment().await;
        probes.push(p);
    }
    (pager, ctl, clock, probes, dir)
}

/// `p` reports one run of `api-health` started at the clock's time.
async fn report(p: &mut FakeProbe, clock: &ManualClock, ok: bool) {
    let mut r = p.result("api-health", ok);
    r.started_at_unix_ms = clock.unix_ms();
    assert_eq!(p.send(vec![r]).await.stored, 1);
}

#[tokio::test]
async fn fast_confirmation_pages_from_the_quorum_without_waiting_confirmations_times_interval() {
    let (pager, ctl, clock, mut p, _dir) =
        start_probes("retry_interval = \"5s\", confirm_from_other_regions = true").await;
    let first = clock.unix_ms();
    // eu-west fails once: the other regions are asked at once.
    report(&mut p[0], &clock, false).await;
    for probe in &mut p[1..] {
        assert_eq!(probe.next_run_now().await, "api-health");
        report(probe, &clock, false).await;
    }
    // Every region failed once: unconfirmed (confirmations = 2). After
    // retry_interval each is asked to run again, and the second failures
    // confirm the quorum.
    clock.advance(Duration::from_secs(5));
    for probe in p.iter_mut() {
        assert_eq!(probe.next_run_now().await, "api-health");
        report(probe, &clock, false).await;
    }
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events[0].event_action, "trigger");
    assert!(
        events[0]
            .summary
            .as_deref()
            .unwrap()
            .starts_with("api-health failing from 2 of 3 regions"),
        "{events:#?}"
    );
    // The quorum (min_regions = 2) confirmed with the second answer:
    // paged 5 s of (manual) time after the first failure, not 2 × 30 s.
    assert_eq!(clock.unix_ms() - first, 5_000);
    let (_, metrics) = get(ctl.http_addr(), "/metrics").await;
    assert!(
        metrics.contains("outpost_confirm_run_now_total{check=\"api-health\"} 5"),
        "{metrics}"
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_single_region_blip_whose_retry_passes_does_not_page() {
    let (pager, ctl, clock, mut p, _dir) = start_probes("retry_interval = \"5s\"").await;
    for probe in p.iter_mut() {
        report(probe, &clock, true).await;
    }
    report(&mut p[0], &clock, false).await;
    clock.advance(Duration::from_secs(5));
    assert_eq!(p[0].next_run_now().await, "api-health");
    report(&mut p[0], &clock, true).await;
    settle(&ctl, &clock).await;
    assert!(pager.events().is_empty(), "{:#?}", pager.events());
    assert!(ctl.store().alerts(10).await.unwrap().is_empty());
    // Only the failing region was asked (no confirm_from_other_regions).
    for probe in &mut p[1..] {
        report(probe, &clock, true).await;
        assert!(
            probe.run_now.is_empty(),
            "{}: {:?}",
            probe.name,
            probe.run_now
        );
    }
    ctl.shutdown().await;
}

#[tokio::test]
async fn retry_interval_off_sends_no_hint() {
    let (_pager, ctl, clock, mut p, _dir) = start_probes("retry_interval = \"off\"").await;
    report(&mut p[0], &clock, false).await;
    clock.advance(Duration::from_secs(20));
    settle(&ctl, &clock).await;
    report(&mut p[0], &clock, false).await;
    assert!(p[0].run_now.is_empty(), "{:?}", p[0].run_now);
    ctl.shutdown().await;
}
