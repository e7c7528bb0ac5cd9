//! Alerting end to end on loopback: fake probes over real gRPC, the
//! controller's evaluator and outbox, and the test kit's PagerDuty receiver.

use std::time::Duration;

use crate::support::*;
use outpost_controller::alerting;
use outpost_testkit::{Forced, PagerReceiver};

async fn three_probes(addr: std::net::SocketAddr) -> Vec<FakeProbe> {
    let mut probes = Vec::new();
    for (name, _, _) in PROBES {
        let mut p = connect(addr, name).await;
        p.assignment().await;
        probes.push(p);
    }
    probes
}

/// Waits for the evaluator and delivery worker to have run past now
/// ([`settle`]), then asserts nothing more arrived.
async fn assert_no_more_events(
    ctl: &outpost_controller::RunningController,
    clock: &outpost_controller::ManualClock,
    pager: &PagerReceiver,
    n: usize,
) {
    settle(ctl, clock).await;
    assert_eq!(
        pager.events().len(),
        n,
        "unexpected events: {:#?}",
        pager.events()
    );
}

#[tokio::test]
async fn two_failing_regions_page_once_and_recovery_resolves_once() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctl, clock) = start_manual(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        API_CHECK,
    ))
    .await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    p[2].report("api-health", true, 2).await;
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 1).await;
    // One region confirmed, the other not yet: no page.
    assert!(
        alerting::evaluate_all(ctl.controller(), clock.unix_ms())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(pager.attempts(), 0);
    p[1].report("api-health", false, 1).await;

    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.routing_key, ROUTING_KEY);
    assert_eq!(e.event_action, "trigger");
    assert_eq!(e.dedup_key, "outpost/api-health/check_failing");
    assert_eq!(e.source.as_deref(), Some("outpost"));
    assert_eq!(e.severity.as_deref(), Some("critical"));
    assert_eq!(
        e.summary.as_deref(),
        Some(
            "api-health failing from 2 of 3 regions (eu-west, us-east): timeout — timed out after 5s waiting for first byte"
        )
    );
    assert_eq!(e.raw["payload"]["component"], "api-health");
    assert_eq!(
        e.raw["payload"]["custom_details"]["regions"]["eu-west"]["code"],
        "timeout"
    );
    // More failures while open: still one page.
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 2).await;
    assert_no_more_events(&ctl, &clock, &pager, 1).await;

    p[0].report("api-health", true, 2).await;
    p[1].report("api-health", true, 2).await;
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    assert_eq!(events[1].routing_key, ROUTING_KEY);
    assert_no_more_events(&ctl, &clock, &pager, 2).await;
    assert!(pager.rejected().is_empty(), "{:#?}", pager.rejections());

    let alerts = ctl.store().alerts(10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].state.as_str(), "resolved");
    let m = ctl.controller().metrics();
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "sent")]
        ),
        2.0
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_failure_seen_from_one_region_does_not_page() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        API_CHECK,
    ))
    .await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    p[0].report("api-health", false, 5).await;
    p[1].report("api-health", true, 5).await;
    p[2].report("api-health", true, 5).await;
    let transitions = alerting::evaluate_all(ctl.controller(), outpost_controller::store::now_ms())
        .await
        .unwrap();
    assert!(transitions.is_empty(), "{transitions:?}");
    assert!(ctl.store().alerts(10).await.unwrap().is_empty());
    assert_eq!(ctl.store().notification_counts().await.unwrap().pending, 0);
    assert_eq!(pager.attempts(), 0);
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_restart_neither_repages_nor_forgets_an_open_alert() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("o.db"), &pager.url(), API_CHECK);
    let (ctl, clock) = start_manual(&text).await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 2).await;
    assert_eq!(pager.wait_for_events(1, WAIT).await.len(), 1);
    drop(p);
    ctl.shutdown().await;

    let ctl = start_with(&text, &clock).await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    p[0].seq = 100;
    p[1].seq = 100;
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 2).await;
    let transitions = alerting::evaluate_all(ctl.controller(), clock.unix_ms())
        .await
        .unwrap();
    assert!(transitions.is_empty(), "{transitions:?}");
    assert_no_more_events(&ctl, &clock, &pager, 1).await;

    // The open alert was read back: recovery resolves it.
    p[0].report("api-health", true, 2).await;
    p[1].report("api-health", true, 2).await;
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_action.as_str())
            .collect::<Vec<_>>(),
        vec!["trigger", "resolve"]
    );
    ctl.shutdown().await;
}

/// Waits for the pagerduty notification to be pending after `attempts`
/// failed attempts, and returns it.
async fn retry_pending(
    ctl: &outpost_controller::RunningController,
    attempts: u32,
) -> outpost_controller::store::NotificationRow {
    let store = ctl.store();
    let what = format!("a notification pending after {attempts} attempts");
    eventually(&what, WAIT, || async {
        for a in store.alerts(10).await.ok()? {
            for n in store.notifications_for_alert(a.id).await.ok()? {
                if n.sink == "pagerduty" && n.state.as_str() == "pending" && n.attempts == attempts
                {
                    return Some(n);
                }
            }
        }
        None
    })
    .await
}

#[tokio::test]
async fn pager_429_is_retried_after_retry_after_and_400_is_not() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    pager.respond_with(vec![
        Forced::too_many_requests(Some(1)),
        Forced::status(503),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (ctl, clock) = start_manual(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        API_CHECK,
    ))
    .await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    let t0 = clock.unix_ms();
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 2).await;
    // 429 with Retry-After: 1: pending, due a second later by the clock.
    let first = retry_pending(&ctl, 1).await;
    assert!(first.next_attempt_ms >= t0 + 1000, "{first:?}");
    assert_no_more_events(&ctl, &clock, &pager, 0).await;
    assert_eq!(pager.attempts(), 1, "no second attempt before it was due");
    // Due: the 503 gets the backoff of a second attempt (1–2 s).
    clock.advance(Duration::from_millis(
        u64::try_from(first.next_attempt_ms - clock.unix_ms()).unwrap(),
    ));
    let second = retry_pending(&ctl, 2).await;
    let backoff = second.next_attempt_ms - clock.unix_ms();
    assert!((1000..=2000).contains(&backoff), "{second:?}");
    assert_eq!(pager.attempts(), 2);
    clock.advance(Duration::from_millis(2000));
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1);
    assert_eq!(pager.attempts(), 3);
    let m = ctl.controller().metrics();
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "retried")]
        ),
        2.0
    );

    // A 400 is the request's fault: failed at once, not retried.
    pager.respond_with(vec![Forced::status(400)]);
    p[0].report("api-health", true, 2).await;
    p[1].report("api-health", true, 2).await;
    let store = ctl.store().clone();
    eventually("resolve marked failed", WAIT, || {
        let store = store.clone();
        async move { (store.notification_counts().await.ok()?.failed == 1).then_some(()) }
    })
    .await;
    assert_no_more_events(&ctl, &clock, &pager, 1).await;
    assert_eq!(pager.attempts(), 4);
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "rejected")]
        ),
        1.0
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn webhook_sink_gets_trigger_and_resolve() {
    let hook = outpost_testkit::WebhookReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", "");
    text.push_str(&format!(
        "[[sinks]]\nname = \"hook\"\nwebhook = {{ url = \"{}\", headers = {{ x-team = \"sre\" }} }}\n\
         [[routes]]\nname = \"hooks\"\nsinks = [\"hook\"]\nchecks = [\"api-*\"]\n\
         [[checks]]\nid = \"api-health\"\nhttp = {{ url = \"https://api.example.net/\" }}\nalert = {{ routes = [\"hooks\"], severity = \"warning\" }}\n",
        hook.url()
    ));
    let ctl = start(&text).await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 2).await;
    // The trigger first: recovering before the evaluator saw the failures would open nothing.
    assert_eq!(hook.wait_for_bodies(1, WAIT).await.len(), 1, "the trigger");
    p[0].report("api-health", true, 2).await;
    p[1].report("api-health", true, 2).await;
    let bodies = hook.wait_for_bodies(2, WAIT).await;
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies[0]["event"], "trigger");
    assert_eq!(bodies[0]["severity"], "warning");
    assert_eq!(bodies[0]["check_id"], "api-health");
    assert_eq!(
        bodies[0]["regions"],
        serde_json::json!(["eu-west", "us-east"])
    );
    assert_eq!(bodies[1]["event"], "resolve");
    assert_eq!(bodies[1]["dedup_key"], bodies[0]["dedup_key"]);
    assert_eq!(hook.requests()[0].header("x-team"), Some("sre"));
    ctl.shutdown().await;
}

#[tokio::test]
async fn events_beyond_the_routing_key_rate_limit_wait_in_the_outbox() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 2 events a minute: a burst of 1, then 1 a minute.
    let checks = "[[checks]]\nid = \"api-a\"\ninterval = \"30s\"\nhttp = { url = \"https://a.example.net/\" }\n\
                  [[checks]]\nid = \"api-b\"\ninterval = \"30s\"\nhttp = { url = \"https://b.example.net/\" }\n";
    let text = config_text(&dir.path().join("o.db"), &pager.url(), checks)
        .replace("api_url = ", "events_per_minute = 2, api_url = ");
    let (ctl, clock) = start_manual(&text).await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    for check in ["api-a", "api-b"] {
        p[0].report(check, false, 2).await;
        p[1].report(check, false, 2).await;
    }
    assert_eq!(pager.wait_for_events(1, WAIT).await.len(), 1);
    let store = ctl.store().clone();
    let a_minute_on = clock.unix_ms() + 30_000;
    eventually("the second trigger is postponed", WAIT, || {
        let store = store.clone();
        async move {
            let alerts = store.alerts(10).await.ok()?;
            let mut waiting = 0;
            for a in &alerts {
                for n in store.notifications_for_alert(a.id).await.ok()? {
                    // Postponed until a token is due (about a minute), not dropped.
                    if n.sink == "pagerduty"
                        && n.state.as_str() == "pending"
                        && n.attempts == 0
                        && n.next_attempt_ms > a_minute_on
                    {
                        waiting += 1;
                    }
                }
            }
            (waiting == 1).then_some(())
        }
    })
    .await;
    assert_no_more_events(&ctl, &clock, &pager, 1).await;
    assert_eq!(
        pager.attempts(),
        1,
        "the limiter, not PagerDuty, held it back"
    );
    assert!(
        ctl.controller().metrics().get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "rate_limited")]
        ) >= 1.0
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn an_open_alert_follows_the_state_and_updates_the_pager_rate_limited() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checks = format!("{API_CHECK}[alerting]\nupdate_interval = \"2s\"\n");
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        &checks,
    ))
    .await;
    let mut p = three_probes(ctl.grpc_addr()).await;
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 2).await;
    p[2].report("api-health", true, 2).await;
    let events = pager.wait_for_events(1, WAIT).await;
    let fired_at = std::time::Instant::now();
    assert!(
        events[0]
            .summary
            .as_deref()
            .unwrap()
            .contains("2 of 3 regions (eu-west, us-east)"),
        "{events:#?}"
    );
    let id = ctl.store().alerts(1).await.unwrap()[0].id;

    // The third region fails: the alert's content follows at once…
    p[2].report("api-health", false, 2).await;
    eventually("the alert names 3 regions", WAIT, || async {
        let a = get_json(ctl.http_addr(), &format!("/api/v1/alerts/{id}")).await;
        a["alert"]["regions"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    let body = get_json(ctl.http_addr(), &format!("/api/v1/alerts/{id}")).await;
    let summary = body["alert"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(
            "api-health failing from 3 of 3 regions (ap-south, eu-west, us-east): timeout"
        ) && summary.contains(" · since "),
        "{summary}"
    );
    assert_eq!(body["alert"]["code"], "timeout");
    // …the pager only once update_interval has passed since the trigger,
    // with the same dedup key (one incident, updated).
    if fired_at.elapsed() < Duration::from_millis(1500) {
        assert_eq!(pager.events().len(), 1, "{:#?}", pager.events());
    }
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        fired_at.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        fired_at.elapsed()
    );
    assert_eq!(events[1].event_action, "trigger");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    assert!(
        events[1]
            .summary
            .as_deref()
            .unwrap()
            .contains("3 of 3 regions"),
        "{events:#?}"
    );
    // No news, no more triggers.
    p[0].report("api-health", false, 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(pager.events().len(), 2, "{:#?}", pager.events());

    // Recovery region by region: the shrinking set is news too (sent as it
    // happens: the interval has passed), then one resolve, last.
    for probe in &mut p {
        probe.report("api-health", true, 2).await;
    }
    eventually("a resolve", WAIT, || async {
        pager.events().iter().any(|e| e.event_action == "resolve")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = pager.events();
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last.event_action, "resolve", "{events:#?}");
    assert!(
        rest.iter()
            .all(|e| e.event_action == "trigger" && e.dedup_key == last.dedup_key),
        "{events:#?}"
    );

    let body = get_json(ctl.http_addr(), &format!("/api/v1/alerts/{id}")).await;
    let whats: Vec<&str> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats[..3], ["fired", "updated", "notified"], "{body:#}");
    assert_eq!(whats.last(), Some(&"resolved"), "{body:#}");
    // One `notified` per update trigger the pager got.
    assert_eq!(
        whats.iter().filter(|w| **w == "notified").count(),
        events.len() - 2,
        "{body:#}"
    );
    assert_eq!(body["timeline"][0]["regions"].as_array().unwrap().len(), 2);
    assert_eq!(body["timeline"][1]["regions"].as_array().unwrap().len(), 3);
    assert_eq!(body["timeline"][1]["code"], "timeout");
    assert_eq!(
        body["timeline"].as_array().unwrap().last().unwrap()["summary"],
        "api-health recovered"
    );
    // Each notification with its delivery state.
    let ns = body["alert"]["notifications"].as_array().unwrap();
    assert_eq!(
        ns.iter()
            .filter(|n| n["sink"] == "pagerduty" && n["state"] == "delivered")
            .count(),
        events.len(),
        "{body:#}"
    );
    let (status, _) = get(ctl.http_addr(), "/api/v1/alerts/999999").await;
    assert_eq!(status, 404);
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_sink_answering_400_raises_notifier_failing_on_the_fallback_route() {
    use outpost_testkit::WebhookReceiver;
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let hook = WebhookReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n{ANONYMOUS_VIEWER}allow_plaintext_probes = true\n[store]\npath = {:?}\n",
        dir.path().join("o.db").display().to_string()
    );
    for (i, (name, region, _)) in PROBES.iter().enumerate() {
        text.push_str(&format!(
            "[[probes]]\nname = \"{name}\"\nregion = \"{region}\"\ntoken = {{ env = \"TEST_TOKEN_{i}\" }}\n"
        ));
    }
    text.push_str(API_CHECK);
    text.push_str(&format!(
        "[[sinks]]\nname = \"pagerduty\"\npagerduty = {{ routing_key = {{ env = \"TEST_PD_KEY\" }}, api_url = \"{}\" }}\n\
         [[sinks]]\nname = \"ops-hook\"\nwebhook = {{ url = \"{}\" }}\n\
         [[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\"]\n\
         [[routes]]\nname = \"ops\"\nsinks = [\"ops-hook\"]\nkinds = [\"notifier_failing\"]\nfallback = true\n",
        pager.url(),
        hook.url()
    ));
    let ctl = start(&text).await;
    // PagerDuty refuses the first event (a bad payload or key): not retried.
    pager.respond_with(vec![Forced::status(400)]);
    let mut p = three_probes(ctl.grpc_addr()).await;
    p[0].report("api-health", false, 2).await;
    p[1].report("api-health", false, 2).await;

    let bodies = hook.wait_for_bodies(1, WAIT).await;
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let b = &bodies[0];
    assert_eq!(b["event"], "trigger");
    assert_eq!(b["kind"], "notifier_failing");
    assert_eq!(b["dedup_key"], "outpost/sink/pagerduty/notifier_failing");
    assert_eq!(b["details"]["sink"], "pagerduty");
    assert_eq!(b["details"]["status"], 400);
    assert!(
        b["summary"]
            .as_str()
            .unwrap()
            .starts_with("sink pagerduty rejects notifications since "),
        "{b:#}"
    );
    // Shown in the banner, linking to the alert with its attempts.
    let (status, page) = get(ctl.http_addr(), "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("sink pagerduty rejects notifications"),
        "{page}"
    );

    // The check alert's page keeps the rejected attempt, secrets scrubbed.
    let alerts = ctl.store().alerts(10).await.unwrap();
    let check = alerts.iter().find(|a| a.check_id == "api-health").unwrap();
    let body = get_json(ctl.http_addr(), &format!("/api/v1/alerts/{}", check.id)).await;
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{body:#}");
    assert_eq!(attempts[0]["sink"], "pagerduty");
    assert_eq!(attempts[0]["outcome"], "rejected");
    assert_eq!(attempts[0]["status"], 400);
    assert!(
        attempts[0]["excerpt"]
            .as_str()
            .unwrap()
            .starts_with("status 400")
    );
    assert!(!body.to_string().contains(ROUTING_KEY), "{body:#}");

    // PagerDuty accepts again: the check's resolve is delivered, and the
    // notifier alert resolves on the fallback route.
    for probe in &mut p {
        probe.report("api-health", true, 2).await;
    }
    let bodies = hook.wait_for_bodies(2, WAIT).await;
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies[1]["event"], "resolve");
    assert_eq!(
        bodies[1]["dedup_key"],
        "outpost/sink/pagerduty/notifier_failing"
    );
    assert_eq!(
        pager
            .events()
            .iter()
            .map(|e| e.event_action.as_str())
            .collect::<Vec<_>>(),
        ["resolve"]
    );
    // Exactly one notifier alert, resolved; nothing more on the hook.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.bodies().len(), 2, "{:#?}", hook.bodies());
    let notifier: Vec<_> = ctl
        .store()
        .alerts(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == alerting::AlertKind::NotifierFailing)
        .collect();
    assert_eq!(notifier.len(), 1);
    assert_eq!(notifier[0].state.as_str(), "resolved");
    ctl.shutdown().await;
}
