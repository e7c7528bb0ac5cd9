//! Flap detection end to end on loopback, under a manual clock: fake probes
//! over real gRPC whose results alternate between pass and fail (the
//! `renewal = "never"` session client that logs in again after each 401),
//! the evaluator, the outbox and the test kit's PagerDuty receiver.

use std::time::Duration;

use crate::support::*;
use outpost_controller::{ManualClock, RunningController};
use outpost_testkit::PagerReceiver;

const CHECK: &str = "[[checks]]\nid = \"api-health\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
    http = { url = \"https://api.example.net/health\" }\n\
    alert = { min_regions = 3, flap_changes = 4, flap_window = \"5m\" }\n";
const STEP: Duration = Duration::from_secs(30);

async fn three_probes(addr: std::net::SocketAddr) -> Vec<FakeProbe> {
    let mut probes = Vec::new();
    for (name, _, _) in PROBES {
        let mut p = connect(addr, name).await;
        p.assignment().await;
        probes.push(p);
    }
    probes
}

/// One run in every region at the clock's time, then the clock moves one interval.
async fn round(probes: &mut [FakeProbe], clock: &ManualClock, ok: bool) {
    for p in probes.iter_mut() {
        let mut r = p.result("api-health", ok);
        r.started_at_unix_ms = clock.unix_ms();
        p.send(vec![r]).await;
    }
    clock.advance(STEP);
}

async fn events_after_settle(
    ctl: &RunningController,
    clock: &ManualClock,
    pager: &PagerReceiver,
) -> Vec<outpost_testkit::pager::PagerEvent> {
    settle(ctl, clock).await;
    pager.events()
}

#[tokio::test]
async fn an_alternating_check_pages_once_as_flapping_and_resolves_after_a_stable_window() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctl, clock) =
        start_manual(&config_text(&dir.path().join("o.db"), &pager.url(), CHECK)).await;
    let mut p = three_probes(ctl.grpc_addr()).await;

    // pass, fail, pass, fail: three changes, and no run of two failures —
    // the default rule alone would never page.
    for i in 0..4 {
        round(&mut p, &clock, i % 2 == 0).await;
    }
    let events = events_after_settle(&ctl, &clock, &pager).await;
    assert!(events.is_empty(), "{events:#?}");
    assert_eq!(ctl.store().alerts(10).await.unwrap().len(), 0);

    // The fourth change: FLAPPING, one trigger.
    round(&mut p, &clock, true).await;
    let events = pager.wait_for_events(1, WAIT).await;
    let e = &events[0];
    assert_eq!(e.event_action, "trigger");
    assert_eq!(e.dedup_key, "outpost/api-health/check_failing");
    let summary = e.summary.as_deref().unwrap();
    assert!(
        summary.starts_with(
            "api-health FLAPPING from 3 of 3 regions (ap-south, eu-west, us-east): changed between pass and fail 4 times within 5m; last failure: timeout"
        ),
        "{summary}"
    );
    assert_eq!(e.raw["payload"]["custom_details"]["flapping"], true);

    // It keeps alternating for longer than the window: no storm, no resolve.
    for i in 0..12 {
        round(&mut p, &clock, i % 2 == 1).await;
    }
    let events = events_after_settle(&ctl, &clock, &pager).await;
    assert_eq!(events.len(), 1, "{events:#?}");

    // Shown: the API (alert and check) and both pages say FLAPPING.
    let alerts = get_json(ctl.http_addr(), "/api/v1/alerts").await;
    assert_eq!(alerts["alerts"][0]["flapping"], true, "{alerts:#}");
    assert_eq!(alerts["alerts"][0]["state"], "open");
    let check = get_json(ctl.http_addr(), "/api/v1/checks/api-health").await;
    assert_eq!(check["check"]["state"], "FLAPPING", "{check:#}");
    assert_eq!(check["check"]["flapping"], true);
    for path in ["/", "/checks/api-health"] {
        let (status, page) = get(ctl.http_addr(), path).await;
        assert_eq!(status, 200);
        assert!(page.contains("FLAPPING"), "{path}: {page}");
    }

    // Passing from now on. Four and a half minutes after the last change (the clock stands at 4 min 30 s + 1 ms) the last change is
    // still inside the window: still open, nothing sent.
    for _ in 0..8 {
        round(&mut p, &clock, true).await;
    }
    let events = events_after_settle(&ctl, &clock, &pager).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let id = ctl.store().alerts(1).await.unwrap()[0].id;
    assert!(ctl.store().alert(id).await.unwrap().unwrap().flapping);

    // Stable for the whole window: one resolve.
    for _ in 0..3 {
        round(&mut p, &clock, true).await;
    }
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events[1].event_action, "resolve", "{events:#?}");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    let events = events_after_settle(&ctl, &clock, &pager).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(pager.rejected().is_empty(), "{:#?}", pager.rejections());

    let body = get_json(ctl.http_addr(), &format!("/api/v1/alerts/{id}")).await;
    let whats: Vec<&str> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["fired", "stable", "resolved"], "{body:#}");
    assert_eq!(body["alert"]["flapping"], false);
    let check = get_json(ctl.http_addr(), "/api/v1/checks/api-health").await;
    assert_eq!(check["check"]["state"], "OK", "{check:#}");
    ctl.shutdown().await;
}

#[tokio::test]
async fn an_open_alert_that_starts_flapping_is_marked_and_not_resolved_by_a_pass() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checks = format!("{CHECK}[alerting]\nupdate_interval = \"1s\"\n");
    let (ctl, clock) = start_manual(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        &checks,
    ))
    .await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    // Two failures everywhere: the ordinary page.
    round(&mut p, &clock, false).await;
    round(&mut p, &clock, false).await;
    let events = pager.wait_for_events(1, WAIT).await;
    assert!(
        events[0]
            .summary
            .as_deref()
            .unwrap()
            .contains("failing from 3 of 3"),
        "{events:#?}"
    );
    // pass, fail, pass, fail: four changes; the pass in between never
    // makes two passes in a row, so no resolve. The incident is updated
    // (same dedup key, live content) and, once flapping, says so.
    for i in 0..4 {
        round(&mut p, &clock, i % 2 == 0).await;
    }
    eventually("an update saying FLAPPING", WAIT, || async {
        pager
            .events()
            .iter()
            .any(|e| e.summary.as_deref().is_some_and(|s| s.contains("FLAPPING")))
    })
    .await;
    let events = events_after_settle(&ctl, &clock, &pager).await;
    assert!(
        events
            .iter()
            .all(|e| e.event_action == "trigger" && e.dedup_key == events[0].dedup_key),
        "{events:#?}"
    );
    let sent = events.len();
    // Two passes in a row would resolve an ordinary alert; a flapping one holds.
    round(&mut p, &clock, true).await;
    round(&mut p, &clock, true).await;
    let events = events_after_settle(&ctl, &clock, &pager).await;
    assert_eq!(events.len(), sent, "{events:#?}");
    let a = &ctl.store().alerts(1).await.unwrap()[0];
    assert!(a.flapping && a.state.as_str() == "open", "{a:#?}");
    let timeline = ctl.store().alert_timeline(a.id).await.unwrap();
    assert!(
        timeline.iter().any(|t| t.what.as_str() == "flapping"),
        "{timeline:#?}"
    );
    ctl.shutdown().await;
}
