//! Slack (incoming webhook and `chat.postMessage`) and Opsgenie receivers
//! on loopback, validating payloads like the real APIs: a failing check
//! pages each of them and its recovery resolves (a RESOLVED message, an
//! Opsgenie close by alias); 429 is retried after `Retry-After`; an
//! `ok:false` permanent error and a 422 are not retried and raise a
//! `notifier_failing` alert on the fallback route.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use outpost_e2e::{Fleet, settled};
use outpost_testkit::{
    Forced, HttpServer, OpsgenieReceiver, Reply, SlackReceiver, WebhookReceiver,
};

const SLACK_TOKEN: &str = "xoxb-0000000000-1111111111-SLACKTOKENSECRET";
const OPSGENIE_KEY: &str = "eb243592-faa2-4ba2-a551-1afdf565c889";
const CHANNEL: &str = "C0ONCALL";
const EXTERNAL: &str = "https://outpost.example.com";

/// A target that fails while the flag is set.
async fn target(failing: Arc<AtomicBool>) -> outpost_testkit::RunningServer {
    HttpServer::builder()
        .handler("/health", move |_| {
            if failing.load(Ordering::SeqCst) {
                Reply::text(503, "down")
            } else {
                Reply::text(200, "ok")
            }
        })
        .run()
        .await
        .unwrap()
}

/// A controller with `server.external_url`, one region, check `api`
/// against `url` paging on the first failure, and `sinks` (TOML) routed by
/// `routes`.
async fn controller(
    fleet: &Fleet,
    url: &str,
    sinks: &str,
    routes: &str,
) -> outpost_controller::RunningController {
    let text = format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\nallow_plaintext_probes = true\n\
         external_url = \"{EXTERNAL}\"\n[store]\npath = \"{db}\"\n{probes}\
         [alerting]\nnotifier_failing_after = \"1m\"\n\
         [[checks]]\nid = \"api\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nlabels = {{ team = \"payments\" }}\n\
         alert = {{ min_regions = 1, confirmations = 1, severity = \"critical\" }}\nhttp = {{ url = \"{url}\" }}\n\
         {sinks}{routes}",
        db = fleet.db().display(),
        probes = fleet.probes_toml(&["eu-west"]),
    );
    let cfg = outpost_controller::config::parse(&text, "test controller", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    outpost_controller::Controller::start(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_pages_slack_both_ways_and_opsgenie_then_resolves() {
    let slack = SlackReceiver::start(SLACK_TOKEN, &[CHANNEL]).await.unwrap();
    let opsgenie = OpsgenieReceiver::start(OPSGENIE_KEY).await.unwrap();
    let fleet = Fleet::new();
    let failing = Arc::new(AtomicBool::new(true));
    let srv = target(failing.clone()).await;
    let hook = fleet.secret("slack.url", &slack.webhook_url());
    let token = fleet.secret("slack.token", SLACK_TOKEN);
    let key = fleet.secret("og.key", OPSGENIE_KEY);
    let sinks = format!(
        "[[sinks]]\nname = \"slack-hook\"\nslack = {{ url = {{ file = \"{}\" }} }}\n\
         [[sinks]]\nname = \"slack-api\"\nslack = {{ token = {{ file = \"{}\" }}, channel = \"{CHANNEL}\", api_url = \"{}\" }}\n\
         [[sinks]]\nname = \"opsgenie\"\nopsgenie = {{ api_key = {{ file = \"{}\" }}, api_url = \"{}\", tags = [\"outpost\"] }}\n",
        hook.display(),
        token.display(),
        slack.api_url(),
        key.display(),
        opsgenie.url(),
    );
    // Label and severity matchers pick the route; a non-matching route
    // would send to nobody.
    let routes = "[[routes]]\nname = \"payments\"\nsinks = [\"slack-hook\", \"slack-api\", \"opsgenie\"]\n\
                  labels = { team = \"pay*\" }\nseverity = [\"critical\"]\n\
                  [[routes]]\nname = \"search\"\nsinks = [\"slack-hook\"]\nlabels = { team = \"search\" }\n";
    let ctl = controller(&fleet, &srv.url("/health"), &sinks, routes).await;
    let probe = fleet.probe("eu-west", ctl.grpc_addr(), None);

    let messages = slack.wait_for_messages(2, Duration::from_secs(20)).await;
    assert_eq!(
        messages.len(),
        2,
        "{messages:#?} rejected {:?}",
        slack.rejected()
    );
    let opened = opsgenie.wait_for_requests(1, Duration::from_secs(20)).await;
    assert_eq!(opened[0].action, "create", "{opened:#?}");
    let alias = "outpost/api/check_failing";
    assert_eq!(opened[0].alias, alias);
    let alert = opsgenie.alerts()[alias].clone();
    assert!(alert.open);
    assert_eq!(alert.priority, "P1");
    assert!(
        alert.tags.contains(&"outpost".to_owned()),
        "{:?}",
        alert.tags
    );
    assert_eq!(alert.details["dashboard"], format!("{EXTERNAL}/checks/api"));
    let vias: Vec<&str> = messages.iter().map(|m| m.via).collect();
    assert!(
        vias.contains(&"webhook") && vias.contains(&"chat.postMessage"),
        "{vias:?}"
    );
    for m in &messages {
        assert!(m.text.starts_with("FIRING: api"), "{}", m.text);
        let blocks = m.raw["blocks"].to_string();
        assert!(
            blocks.contains(&format!("{EXTERNAL}/checks/api")),
            "{blocks}"
        );
    }
    assert_eq!(
        messages
            .iter()
            .find(|m| m.via == "chat.postMessage")
            .unwrap()
            .channel
            .as_deref(),
        Some(CHANNEL)
    );
    assert!(
        slack
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("chat.postMessage"))
            .all(|r| r.header("authorization") == Some(&format!("Bearer {SLACK_TOKEN}")))
    );
    assert!(
        opsgenie
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("GenieKey {OPSGENIE_KEY}")))
    );

    failing.store(false, Ordering::SeqCst);
    let messages = slack.wait_for_messages(4, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert!(
        messages[2..]
            .iter()
            .all(|m| m.text.starts_with("RESOLVED: api")),
        "{messages:#?}"
    );
    let all = opsgenie.wait_for_requests(2, Duration::from_secs(20)).await;
    let actions: Vec<&str> = all.iter().map(|r| r.action).collect();
    assert_eq!(actions.first(), Some(&"create"));
    assert_eq!(actions.last(), Some(&"close"), "{actions:?}");
    assert!(!opsgenie.alerts()[alias].open, "closed by alias");
    assert_eq!(opsgenie.unknown_alias(), 0);
    assert!(opsgenie.rejected().is_empty(), "{:?}", opsgenie.rejected());
    assert!(slack.rejected().is_empty(), "{:?}", slack.rejected());
    settled(&ctl).await;
    probe.shutdown().await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_permanent_errors_page_the_fallback_route() {
    let slack = SlackReceiver::start(SLACK_TOKEN, &[CHANNEL]).await.unwrap();
    let opsgenie = OpsgenieReceiver::start(OPSGENIE_KEY).await.unwrap();
    let fallback = WebhookReceiver::start().await.unwrap();
    let fleet = Fleet::new();
    let srv = target(Arc::new(AtomicBool::new(true))).await;
    let hook = fleet.secret("slack.url", &slack.webhook_url());
    let token = fleet.secret("slack.token", SLACK_TOKEN);
    // A key Opsgenie does not know: 401, permanent.
    let key = fleet.secret("og.key", "not-the-key-0000");
    // The webhook throttles once (429, Retry-After 1 s); chat.postMessage
    // answers `ok:false, error:channel_not_found` — permanent.
    slack.respond_with(vec![Forced::too_many_requests(Some(1))]);
    slack.api_error("channel_not_found");
    let sinks = format!(
        "[[sinks]]\nname = \"slack-hook\"\nslack = {{ url = {{ file = \"{}\" }} }}\n\
         [[sinks]]\nname = \"slack-api\"\nslack = {{ token = {{ file = \"{}\" }}, channel = \"{CHANNEL}\", api_url = \"{}\" }}\n\
         [[sinks]]\nname = \"opsgenie\"\nopsgenie = {{ api_key = {{ file = \"{}\" }}, api_url = \"{}\" }}\n\
         [[sinks]]\nname = \"fallback\"\nwebhook = {{ url = \"{}\" }}\n",
        hook.display(),
        token.display(),
        slack.api_url(),
        key.display(),
        opsgenie.url(),
        fallback.url(),
    );
    let routes = "[[routes]]\nname = \"all\"\nsinks = [\"slack-hook\", \"slack-api\", \"opsgenie\"]\n\
                  [[routes]]\nname = \"ops\"\nsinks = [\"fallback\"]\nfallback = true\nkinds = [\"probe_offline\"]\n";
    let ctl = controller(&fleet, &srv.url("/health"), &sinks, routes).await;
    let probe = fleet.probe("eu-west", ctl.grpc_addr(), None);

    let messages = slack.wait_for_messages(1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].via, "webhook", "delivered after the 429");
    // Two notifier alerts (slack-api, opsgenie) reach the fallback webhook.
    let bodies = fallback.wait_for_bodies(2, Duration::from_secs(20)).await;
    let mut failing: Vec<String> = bodies
        .iter()
        .filter(|b| b["kind"] == "notifier_failing")
        .map(|b| b["dedup_key"].as_str().unwrap().to_owned())
        .collect();
    failing.sort();
    assert_eq!(failing.len(), 2, "{bodies:#?}");
    assert!(
        failing[0].contains("opsgenie") && failing[1].contains("slack-api"),
        "{failing:?}"
    );
    settled(&ctl).await;
    // Not retried: one chat.postMessage and one Opsgenie request.
    let api_calls = slack
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("chat.postMessage"))
        .count();
    assert_eq!(api_calls, 1);
    assert_eq!(opsgenie.attempts(), 1);
    assert_eq!(opsgenie.rejected()[0].0, 401);
    let m = ctl.controller().metrics();
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "slack-hook"), ("outcome", "retried")]
        ),
        1.0
    );
    for sink in ["slack-api", "opsgenie"] {
        assert_eq!(
            m.get(
                "outpost_notifications_total",
                &[("sink", sink), ("outcome", "rejected")]
            ),
            1.0,
            "{sink}"
        );
    }
    probe.shutdown().await;
    ctl.shutdown().await;
}
