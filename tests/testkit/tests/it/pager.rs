//! PagerReceiver and WebhookReceiver over real HTTP.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use outpost_testkit::{Forced, PagerReceiver, WebhookReceiver};
use outpost_testkit::{client, wait::eventually};
use serde_json::{Value, json};

const KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn post(pager: &PagerReceiver, event: &Value) -> client::Response {
    let addr = addr_of(&pager.url());
    client::http(addr, "POST", "/v2/enqueue", event.to_string().as_bytes())
        .await
        .unwrap()
}

fn json_body(resp: &client::Response) -> Value {
    serde_json::from_slice(&resp.body).unwrap()
}

fn trigger() -> Value {
    json!({
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "check-42",
        "payload": {
            "summary": "api.example.test is down",
            "source": "probe-eu-1",
            "severity": "critical",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "custom_details": {"code": "tls_cert_expired"}
        }
    })
}

#[tokio::test]
async fn valid_trigger_is_accepted_and_missing_severity_rejected() {
    let pager = PagerReceiver::start(KEY).await.unwrap();
    assert!(pager.url().starts_with("http://127.0.0.1:"));
    assert_eq!(pager.enqueue_url(), format!("{}/v2/enqueue", pager.url()));

    let resp = post(&pager, &trigger()).await;
    assert_eq!(resp.status, 202);
    assert_eq!(
        json_body(&resp),
        json!({"status": "success", "message": "Event processed", "dedup_key": "check-42"})
    );

    let mut bad = trigger();
    bad["payload"].as_object_mut().unwrap().remove("severity");
    let resp = post(&pager, &bad).await;
    assert_eq!(resp.status, 400);
    let body = json_body(&resp);
    assert_eq!(body["status"], "invalid event");
    assert_eq!(body["message"], "Event object is invalid");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1);

    let events = pager.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_action, "trigger");
    assert_eq!(events[0].dedup_key, "check-42");
    assert_eq!(events[0].severity.as_deref(), Some("critical"));
    assert_eq!(
        events[0].raw["payload"]["custom_details"]["code"],
        "tls_cert_expired"
    );
    assert_eq!(pager.rejected(), vec![(400, bad)]);
    assert_eq!(pager.attempts(), 2);
}

#[tokio::test]
async fn trigger_without_dedup_key_gets_generated_one_and_resolve_needs_one() {
    let pager = PagerReceiver::start(KEY).await.unwrap();
    let mut event = trigger();
    event.as_object_mut().unwrap().remove("dedup_key");
    let resp = post(&pager, &event).await;
    assert_eq!(resp.status, 202);
    let key = json_body(&resp)["dedup_key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 32);

    let resolve = json!({"routing_key": KEY, "event_action": "resolve"});
    assert_eq!(post(&pager, &resolve).await.status, 400);
    let resolve = json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": key});
    assert_eq!(post(&pager, &resolve).await.status, 202);

    let wrong_key = json!({"routing_key": "nope", "event_action": "resolve", "dedup_key": "x"});
    assert_eq!(post(&pager, &wrong_key).await.status, 400);

    let events = pager.wait_for_events(2, Duration::from_secs(1)).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    assert_eq!(events[1].summary, None);
}

#[tokio::test]
async fn forced_429_then_normal_behaviour_resumes() {
    let pager = PagerReceiver::start(KEY).await.unwrap();
    pager.respond_with(vec![
        Forced::too_many_requests(Some(3)),
        Forced::status(500),
    ]);

    let resp = post(&pager, &trigger()).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.headers["retry-after"], "3");
    assert_eq!(post(&pager, &trigger()).await.status, 500);
    assert_eq!(post(&pager, &trigger()).await.status, 202);

    assert_eq!(pager.attempts(), 3);
    assert_eq!(pager.forced_count(), 2);
    assert_eq!(pager.events().len(), 1);
    assert!(pager.rejected().is_empty());
}

#[tokio::test]
async fn fail_for_window_expires() {
    let pager = PagerReceiver::start(KEY).await.unwrap();
    let opened = tokio::time::Instant::now();
    pager.fail_for(Duration::from_millis(150), 503);
    assert_eq!(post(&pager, &trigger()).await.status, 503);
    // Every post inside the window is answered 503; the first one after it is accepted.
    eventually(
        "the failure window to close",
        Duration::from_secs(5),
        || async { post(&pager, &trigger()).await.status == 202 },
    )
    .await;
    assert!(opened.elapsed() >= Duration::from_millis(150));
    assert_eq!(pager.events().len(), 1);
    assert_eq!(pager.forced_count() + 1, pager.attempts());
}

// Paused time: nothing talks to the receiver, so the runtime, idle, jumps
// straight to the timeout instead of sleeping through it.
#[tokio::test(start_paused = true)]
async fn wait_for_events_returns_what_it_has_on_timeout() {
    let pager = PagerReceiver::start(KEY).await.unwrap();
    let started = tokio::time::Instant::now();
    let events = pager.wait_for_events(1, Duration::from_millis(100)).await;
    assert!(events.is_empty());
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(100)..Duration::from_millis(102)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test]
async fn webhook_records_json_bodies() {
    let hook = WebhookReceiver::start().await.unwrap();
    let addr = addr_of(&hook.url());
    let resp = client::http(addr, "POST", "/hook", br#"{"text":"down"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let resp = client::http(addr, "POST", "/hook", b"not json")
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    hook.respond_with(vec![Forced::status(500)]);
    let resp = client::http(addr, "POST", "/hook", br#"{"text":"again"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status, 500);
    assert_eq!(
        hook.wait_for_bodies(1, Duration::from_secs(1)).await,
        vec![json!({"text": "down"})]
    );
    assert_eq!(hook.attempts(), 3);
}
