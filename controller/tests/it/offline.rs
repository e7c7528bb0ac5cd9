//! Probe offline on loopback: one fleet-level alert per silent probe, routed
//! by kind; its regions turn STALE ("probe offline") and leave the quorum;
//! heartbeat data in the API and /metrics.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use outpost_controller::ManualClock;
use outpost_testkit::{PagerReceiver, WebhookReceiver};

/// Three probes, `api-health` every 30 s (so results stay fresh for 90 s),
/// `offline_after = "1s"`, check alerts to PagerDuty, probe alerts to a webhook.
fn config(db: &std::path::Path, pager: &str, hook: &str) -> String {
    let mut text = config_text(db, pager, API_CHECK).replace(
        "[[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\", \"log\"]\n",
        "[[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\", \"log\"]\nkinds = [\"check_failing\"]\n",
    );
    text.push_str(&format!(
        "[[sinks]]\nname = \"fleet\"\nwebhook = {{ url = \"{hook}\" }}\n\
         [[routes]]\nname = \"fleet-ops\"\nsinks = [\"fleet\"]\nkinds = [\"probe_offline\"]\n\
         [alerting]\noffline_after = \"1s\"\noffline_severity = \"warning\"\n"
    ));
    text
}

/// Moves `clock` forward by `by` in steps of `step` (under `offline_after`);
/// after each, waits until every probe in `alive` (keeping its stream alive
/// with heartbeats every 200 ms) was seen at the new time, so only the
/// silent probes fall behind.
async fn advance_keeping(
    ctl: &outpost_controller::RunningController,
    clock: &ManualClock,
    by: Duration,
    step: Duration,
    alive: &[&str],
) {
    let mut left = by;
    while !left.is_zero() {
        let d = left.min(step);
        clock.advance(d);
        left -= d;
        let now = clock.unix_ms();
        eventually(
            "the live probes' heartbeats at the new time",
            WAIT,
            || async {
                let rows = ctl.store().probes().await.unwrap();
                alive.iter().all(|name| {
                    rows.iter()
                        .any(|r| r.name == *name && r.last_seen_ms >= now)
                })
            },
        )
        .await;
    }
}

/// Waits until the controller has recorded that `probe`'s stream closed.
async fn wait_disconnected(ctl: &outpost_controller::RunningController, probe: &str) {
    eventually("the stream close recorded", WAIT, || async {
        let rows = ctl.store().probes().await.unwrap();
        rows.iter().any(|r| r.name == probe && !r.connected)
    })
    .await;
}

fn region_of<'a>(checks: &'a serde_json::Value, region: &str) -> &'a serde_json::Value {
    checks["checks"][0]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == region)
        .unwrap()
}

#[tokio::test]
async fn a_silent_probe_raises_one_fleet_alert_leaves_the_quorum_and_resolves_when_back() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let hook = WebhookReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctl, clock) =
        start_manual(&config(&dir.path().join("o.db"), &pager.url(), &hook.url())).await;
    let half = Duration::from_millis(500);
    let http = ctl.http_addr();

    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    eu.assignment().await;
    let _eu_alive = keep_alive(eu.tx.clone(), 7, 3);
    let mut us = connect(ctl.grpc_addr(), "us-east-1").await;
    us.assignment().await;
    eu.report("api-health", true, 1).await;
    // us-east fails (confirmed), then goes silent while its results are still young.
    us.report("api-health", false, 2).await;
    let us_seq = us.seq;
    drop(us);
    // The controller stamps last-seen when it notices the stream closed:
    // that must happen before time moves, or the silence starts later.
    wait_disconnected(&ctl, "us-east-1").await;
    // 1.5 s of silence from us-east against offline_after = 1 s; eu-west keeps talking.
    advance_keeping(
        &ctl,
        &clock,
        Duration::from_millis(1500),
        half,
        &["eu-west-1"],
    )
    .await;

    let bodies = hook.wait_for_bodies(1, WAIT).await;
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["event"], "trigger");
    assert_eq!(bodies[0]["kind"], "probe_offline");
    assert_eq!(bodies[0]["probe"], "us-east-1");
    assert_eq!(bodies[0]["severity"], "warning");
    assert_eq!(
        bodies[0]["dedup_key"],
        "outpost/probe/us-east-1/probe_offline"
    );

    // Its region is STALE with the reason, though its newest result is young.
    let checks = get_json(http, "/api/v1/checks").await;
    let us_state = region_of(&checks, "us-east");
    assert_eq!(us_state["state"], "STALE", "{us_state}");
    assert_eq!(us_state["reason"], "probe offline");
    assert!(us_state["age_ms"].as_i64().unwrap() < 30_000);
    let (_, page) = get(http, "/").await;
    assert!(page.contains("probe offline"), "{page}");

    // eu-west now fails too: with us-east offline that is one region, not a quorum.
    eu.report("api-health", false, 3).await;
    outpost_controller::alerting::evaluate_all(ctl.controller(), clock.unix_ms())
        .await
        .unwrap();
    let alerts = get_json(http, "/api/v1/alerts").await;
    let list = alerts["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "only the probe alert: {alerts:#}");
    assert_eq!(list[0]["kind"], "probe_offline");
    assert_eq!(list[0]["probe"], "us-east-1");
    assert_eq!(list[0]["state"], "open");
    assert_eq!(list[0]["notifications"][0]["state"], "delivered");
    // More passes while it stays silent: still one alert.
    advance_keeping(
        &ctl,
        &clock,
        Duration::from_millis(1500),
        half,
        &["eu-west-1"],
    )
    .await;
    settle(&ctl, &clock).await;
    assert_eq!(
        pager.attempts(),
        0,
        "no page per check for an offline probe"
    );
    assert_eq!(hook.bodies().len(), 1, "one fleet alert, not one per tick");

    // Heartbeat data: API, page and metrics.
    let probes = get_json(http, "/api/v1/probes").await;
    let list = probes["probes"].as_array().unwrap();
    let p = list.iter().find(|p| p["name"] == "eu-west-1").unwrap();
    assert_eq!(p["state"], "fresh");
    assert_eq!(p["queued_results"], 7);
    assert_eq!(p["dropped_results"], 3);
    assert_eq!(p["dropped_by_reason"]["size"], 3);
    let p = list.iter().find(|p| p["name"] == "us-east-1").unwrap();
    assert_eq!(p["state"], "offline");
    let (_, metrics) = get(http, "/metrics").await;
    assert!(
        metrics.contains("outpost_probe_queued_results{probe=\"eu-west-1\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("outpost_probe_outbox_dropped_total{probe=\"eu-west-1\",reason=\"size\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("outpost_probe_offline{probe=\"us-east-1\"} 1"),
        "{metrics}"
    );

    // eu-west recovers; us-east comes back: the probe alert resolves, once.
    eu.report("api-health", true, 2).await;
    let mut us = connect(ctl.grpc_addr(), "us-east-1").await;
    us.seq = us_seq;
    us.assignment().await;
    let _us_alive = keep_alive(us.tx.clone(), 0, 0);
    let bodies = hook.wait_for_bodies(2, WAIT).await;
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies[1]["event"], "resolve");
    assert_eq!(bodies[1]["dedup_key"], bodies[0]["dedup_key"]);
    let both = ["eu-west-1", "us-east-1"];
    advance_keeping(&ctl, &clock, Duration::from_millis(1500), half, &both).await;
    settle(&ctl, &clock).await;
    assert_eq!(hook.bodies().len(), 2);
    assert_eq!(pager.attempts(), 0);
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_restarted_controller_gives_probes_offline_after_to_reconnect() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let hook = WebhookReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config(&dir.path().join("o.db"), &pager.url(), &hook.url())
        .replace("offline_after = \"1s\"", "offline_after = \"3s\"");
    let (ctl, clock) = start_manual(&text).await;
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    eu.assignment().await;
    drop(eu);
    ctl.shutdown().await;
    // The controller is away longer than offline_after...
    clock.advance(Duration::from_millis(3500));
    let ctl = start_with(&text, &clock).await;
    // ...but comes back to a probe that reconnects within offline_after: no
    // alert, though passes ran in between.
    clock.advance(Duration::from_millis(1000));
    settle(&ctl, &clock).await;
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    eu.assignment().await;
    let _alive = keep_alive(eu.tx.clone(), 0, 0);
    let step = Duration::from_millis(1000);
    advance_keeping(
        &ctl,
        &clock,
        Duration::from_millis(3500),
        step,
        &["eu-west-1"],
    )
    .await;
    settle(&ctl, &clock).await;
    assert!(hook.bodies().is_empty(), "{:#?}", hook.bodies());
    assert!(ctl.store().alerts(10).await.unwrap().is_empty());
    ctl.shutdown().await;
}
