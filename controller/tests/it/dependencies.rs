//! `depends_on` end to end on loopback, under a manual clock: a shared
//! dependency fails with its dependents, and only it pages; a dependent
//! still failing after the dependency recovered pages then.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure

use std::time::Duration;

use crate::support::*;
use outpost_controller::ManualClock;
use outpost_testkit::PagerReceiver;

const STEP: Duration = Duration::from_secs(30);

fn checks() -> String {
    let mut s = String::from(
        "[[checks]]\nid = \"db\"\ninterval = \"30s\"\ntimeout = \"5s\"\nhttp = { url = \"https://db.example.net/health\" }\n",
    );
    for id in ["api-1", "api-2"] {
        s.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
             http = {{ url = \"https://{id}.example.net/health\" }}\ndepends_on = [\"db\"]\n"
        ));
    }
    s
}

/// One run of each `(check, ok)` in every region at the clock's time, in
/// one batch per probe; then the clock moves one interval.
async fn round(probes: &mut [FakeProbe], clock: &ManualClock, runs: &[(&str, bool)]) {
    for p in probes.iter_mut() {
        let batch = runs
            .iter()
            .map(|(check, ok)| {
                let mut r = p.result(check, *ok);
                r.started_at_unix_ms = clock.unix_ms();
                r
            })
            .collect();
        p.send(batch).await;
    }
    clock.advance(STEP);
}

#[tokio::test]
async fn a_failing_dependency_pages_alone_and_a_dependent_still_failing_after_it_pages_then() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctl, clock) = start_manual(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        &checks(),
    ))
    .await;
    let mut p = Vec::new();
    for (name, _, _) in PROBES {
        let mut probe = connect(ctl.grpc_addr(), name).await;
        probe.assignment().await;
        p.push(probe);
    }
    let all_fail = [("db", false), ("api-1", false), ("api-2", false)];
    round(&mut p, &clock, &all_fail).await;
    round(&mut p, &clock, &all_fail).await;
    let events = pager.wait_for_events(1, WAIT).await;
    settle(&ctl, &clock).await;
    let events_now = pager.events();
    assert_eq!(events_now.len(), 1, "{events_now:#?}");
    assert_eq!(events[0].dedup_key, "outpost/db/check_failing");

    // The dependents are recorded, SUPPRESSED with the cause.
    for id in ["api-1", "api-2"] {
        let a = ctl
            .store()
            .open_alert(id, outpost_controller::alerting::AlertKind::CheckFailing)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} recorded"));
        assert_eq!(a.suppressed_by, "dependency db");
        let check = get_json(ctl.http_addr(), &format!("/api/v1/checks/{id}")).await;
        assert_eq!(check["check"]["state"], "SUPPRESSED", "{check:#}");
        assert_eq!(check["check"]["suppressed_by"], "dependency db");
    }
    let (_, page) = get(ctl.http_addr(), "/").await;
    assert!(page.contains("suppressed by dependency db"), "{page}");

    // db recovers; api-1 keeps failing, api-2 recovers. The failure api-1
    // reported with db's first pass is still the outage's: no page yet.
    let after = [("db", true), ("api-1", false), ("api-2", true)];
    round(&mut p, &clock, &after).await;
    settle(&ctl, &clock).await;
    let keys: Vec<String> = pager.events().iter().map(|e| e.dedup_key.clone()).collect();
    assert_eq!(keys, ["outpost/db/check_failing"], "{:#?}", pager.events());
    // A failure after db recovered: api-1 pages, saying why now.
    round(&mut p, &clock, &after).await;
    eventually("api-1 paged", WAIT, || async {
        pager
            .events()
            .iter()
            .any(|e| e.dedup_key == "outpost/api-1/check_failing")
    })
    .await;
    settle(&ctl, &clock).await;
    let events = pager.events();
    let api1 = events
        .iter()
        .find(|e| e.dedup_key == "outpost/api-1/check_failing")
        .unwrap();
    assert_eq!(api1.event_action, "trigger");
    assert!(
        api1.summary
            .as_deref()
            .unwrap()
            .ends_with("— paged after dependency db recovered"),
        "{api1:#?}"
    );
    // db resolved at the pager; api-2 resolved without ever paging.
    assert!(
        events
            .iter()
            .any(|e| e.dedup_key == "outpost/db/check_failing" && e.event_action == "resolve"),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.dedup_key != "outpost/api-2/check_failing"),
        "{events:#?}"
    );
    let api2 = ctl.store().alerts(10).await.unwrap();
    let api2 = api2.iter().find(|a| a.check_id == "api-2").unwrap();
    assert_eq!(api2.state.as_str(), "resolved");
    ctl.shutdown().await;
}
