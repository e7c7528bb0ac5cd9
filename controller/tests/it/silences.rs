//! Silences and maintenance windows end to end on loopback, under a manual
//! clock: fake probes over real gRPC, the evaluator, the outbox, the API
//! (an operator token makes and ends silences), the pages and the test
//! kit's PagerDuty receiver.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure

use std::time::Duration;

use crate::support::*;
use outpost_controller::{ManualClock, RunningController, config};
use outpost_testkit::{PagerReceiver, client};

const OPERATOR_TOKEN: &str = "operator-token-0123456789abcdef012345678";
const STEP: Duration = Duration::from_secs(30);

/// [`config_text`] with `extra` appended and an operator token; GETs stay
/// anonymous (viewer).
async fn start_silenced(
    dir: &std::path::Path,
    pager: &PagerReceiver,
    extra: &str,
    clock: &ManualClock,
) -> RunningController {
    let mut text = config_text(&dir.join("o.db"), &pager.url(), API_CHECK);
    text.push_str(extra);
    text.push_str(
        "[[auth.tokens]]\nname = \"operator-bot\"\nrole = \"operator\"\ntoken = { env = \"T_OPERATOR\" }\n",
    );
    let mut vars = vars();
    vars.push(("T_OPERATOR".into(), OPERATOR_TOKEN.into()));
    let cfg = config::parse(&text, "test.toml", &vars).expect("test config is valid");
    outpost_controller::start_with_clock(cfg, clock.clock())
        .await
        .expect("controller starts")
}

async fn three_probes(addr: std::net::SocketAddr) -> Vec<FakeProbe> {
    let mut probes = Vec::new();
    for (name, _, _) in PROBES {
        let mut p = connect(addr, name).await;
        p.assignment().await;
        probes.push(p);
    }
    probes
}

/// One run of `api-health` in every region at the clock's time, then the
/// clock moves one interval.
async fn round(probes: &mut [FakeProbe], clock: &ManualClock, ok: bool) {
    for p in probes.iter_mut() {
        let mut r = p.result("api-health", ok);
        r.started_at_unix_ms = clock.unix_ms();
        p.send(vec![r]).await;
    }
    clock.advance(STEP);
}

async fn operator(
    ctl: &RunningController,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let auth = format!("Bearer {OPERATOR_TOKEN}");
    let r = client::http_with(
        ctl.http_addr(),
        method,
        path,
        &[("authorization", &auth), ("content-type", content_type)],
        body.as_bytes(),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
    (r.status, r.text())
}

/// An alert's timeline without `updated` (the live content following
/// each evaluation's `since` and regions): what happened to its paging.
async fn timeline(ctl: &RunningController, id: i64) -> Vec<String> {
    let body = get_json(ctl.http_addr(), &format!("/api/v1/alerts/{id}")).await;
    body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["what"].as_str().unwrap().to_owned())
        .filter(|w| w != "updated")
        .collect()
}

#[tokio::test]
async fn a_silenced_failure_is_recorded_not_paged_and_pages_when_the_silence_ends() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let ctl = start_silenced(dir.path(), &pager, "", &clock).await;
    let mut p = three_probes(ctl.grpc_addr()).await;

    let (status, body) = operator(
        &ctl,
        "POST",
        "/api/v1/silences",
        "application/json",
        r#"{"check": "api-*", "comment": "deploying the API", "duration": "2h"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = created["silence"]["id"].as_i64().unwrap();
    assert_eq!(created["silence"]["created_by"], "operator-bot");
    assert_eq!(created["silence"]["state"], "active");
    // A viewer cannot make one.
    let r = client::http_with(
        ctl.http_addr(),
        "POST",
        "/api/v1/silences",
        &[("content-type", "application/json")],
        br#"{"comment": "x", "duration": "1h"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());

    // Failing everywhere, twice: the default rule would page.
    round(&mut p, &clock, false).await;
    round(&mut p, &clock, false).await;
    settle(&ctl, &clock).await;
    assert!(pager.events().is_empty(), "{:#?}", pager.events());
    let alerts = ctl.store().alerts(10).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.suppressed_by, format!("silence {id}"));
    assert!(
        ctl.store()
            .notifications_for_alert(alert.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(timeline(&ctl, alert.id).await, ["fired", "suppressed"]);

    // Shown: the API and both pages say so, with the cause.
    let api = get_json(ctl.http_addr(), "/api/v1/alerts").await;
    assert_eq!(api["alerts"][0]["suppressed_by"], format!("silence {id}"));
    let check = get_json(ctl.http_addr(), "/api/v1/checks/api-health").await;
    assert_eq!(check["check"]["suppressed_by"], format!("silence {id}"));
    assert_eq!(check["check"]["state"], "SUPPRESSED", "{check:#}");
    let (_, index) = get(ctl.http_addr(), "/").await;
    assert!(index.contains("SUPPRESSED (recorded, not paged"), "{index}");
    assert!(
        index.contains(&format!("suppressed by silence {id}")),
        "{index}"
    );
    let (status, page) = get(ctl.http_addr(), "/silences").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("deploying the API") && page.contains("operator-bot"),
        "{page}"
    );

    // Ended early while the check still fails: it pages then.
    round(&mut p, &clock, false).await;
    let (status, body) = operator(
        &ctl,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    round(&mut p, &clock, false).await;
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events[0].event_action, "trigger");
    let summary = events[0].summary.as_deref().unwrap();
    assert!(
        summary.starts_with("api-health failing from 3 of 3 regions")
            && summary.ends_with(&format!("— paged after silence {id} ended")),
        "{summary}"
    );
    let silences = get_json(ctl.http_addr(), "/api/v1/silences").await;
    assert_eq!(silences["silences"][0]["state"], "expired", "{silences:#}");
    let (status, _) = operator(
        &ctl,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 404);

    // Recovers: the page resolves.
    round(&mut p, &clock, true).await;
    round(&mut p, &clock, true).await;
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events[1].event_action, "resolve", "{events:#?}");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    assert_eq!(
        timeline(&ctl, alert.id).await,
        ["fired", "suppressed", "released", "resolved"]
    );
    assert!(pager.rejected().is_empty(), "{:#?}", pager.rejections());
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_failure_that_recovers_under_a_silence_never_reaches_the_pager() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let ctl = start_silenced(dir.path(), &pager, "", &clock).await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    // From the dashboard's form (a bearer token needs no CSRF token).
    let (status, body) = operator(
        &ctl,
        "POST",
        "/silences",
        "application/x-www-form-urlencoded",
        "check=api-health&labels=&duration=10m&comment=network+work",
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (status, body) = operator(
        &ctl,
        "POST",
        "/silences",
        "application/x-www-form-urlencoded",
        "check=*&labels=team&duration=10m&comment=x",
    )
    .await;
    assert_eq!(status, 400, "{body}");

    round(&mut p, &clock, false).await;
    round(&mut p, &clock, false).await;
    round(&mut p, &clock, true).await;
    round(&mut p, &clock, true).await;
    settle(&ctl, &clock).await;
    let alerts = ctl.store().alerts(10).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].state.as_str(), "resolved");
    assert_eq!(
        timeline(&ctl, alerts[0].id).await,
        ["fired", "suppressed", "resolved"]
    );
    // The silence ends later (10 min of passing runs): nothing to page.
    for _ in 0..20 {
        round(&mut p, &clock, true).await;
    }
    settle(&ctl, &clock).await;
    let silences = get_json(ctl.http_addr(), "/api/v1/silences").await;
    assert_eq!(silences["silences"][0]["state"], "expired", "{silences:#}");
    assert!(pager.events().is_empty(), "{:#?}", pager.events());
    assert!(
        ctl.store()
            .notifications_for_alert(alerts[0].id)
            .await
            .unwrap()
            .is_empty()
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_maintenance_window_holds_the_page_until_it_closes() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    // A window that opened at the start of the clock's current minute, for 10 minutes.
    let now = clock.unix_ms();
    let opened = now - now.rem_euclid(60_000);
    let (minute, hour) = ((now / 60_000) % 60, (now / 3_600_000) % 24);
    let extra = format!(
        "[[maintenance]]\nname = \"nightly\"\ncheck = \"api-*\"\nschedule = \"{minute} {hour} * * *\"\nduration = \"10m\"\ntz = \"UTC\"\n"
    );
    let ctl = start_silenced(dir.path(), &pager, &extra, &clock).await;
    let mut p = three_probes(ctl.grpc_addr()).await;

    round(&mut p, &clock, false).await;
    round(&mut p, &clock, false).await;
    settle(&ctl, &clock).await;
    assert!(pager.events().is_empty(), "{:#?}", pager.events());
    let alert = ctl.store().alerts(1).await.unwrap().remove(0);
    assert_eq!(alert.suppressed_by, "maintenance nightly");
    let (_, page) = get(ctl.http_addr(), "/silences").await;
    assert!(page.contains("nightly") && page.contains("ON"), "{page}");

    // Still failing when the window closes: one trigger, then.
    while clock.unix_ms() < opened + 10 * 60_000 - STEP.as_millis() as i64 {
        round(&mut p, &clock, false).await;
    }
    settle(&ctl, &clock).await;
    assert!(pager.events().is_empty(), "{:#?}", pager.events());
    advance_to(&clock, opened + 10 * 60_000);
    round(&mut p, &clock, false).await;
    let events = pager.wait_for_events(1, WAIT).await;
    assert!(
        events[0]
            .summary
            .as_deref()
            .unwrap()
            .ends_with("— paged after maintenance nightly ended"),
        "{events:#?}"
    );
    settle(&ctl, &clock).await;
    assert_eq!(pager.events().len(), 1, "{:#?}", pager.events());
    ctl.shutdown().await;
}
