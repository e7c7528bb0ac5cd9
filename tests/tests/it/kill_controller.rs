//! `kill -9` of a real `outpost-controller run` process between a trigger and
//! its resolve: restarted on the same database and ports, it neither pages
//! again nor loses the resolve — the receiver sees exactly one of each; the
//! same for a group of a `group_by` route.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use outpost_e2e::{Fleet, binary};
use outpost_testkit::{HttpServer, PagerReceiver, Reply, client, free_port, wait::eventually};

const REGIONS: [&str; 2] = ["eu-west", "us-east"];
const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";

fn spawn(config: &std::path::Path) -> Child {
    let mut cmd = Command::new(binary("outpost-controller"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OUTPOST_")) {
        cmd.env_remove(k);
    }
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .env("OUTPOST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn alerts(http: SocketAddr) -> Option<serde_json::Value> {
    let resp = client::get(http, "/api/v1/alerts").await.ok()?;
    (resp.status == 200).then(|| serde_json::from_slice(&resp.body).ok())?
}

/// `outpost_alerting_last_pass_timestamp_seconds` from the controller's /metrics.
async fn last_pass(http: SocketAddr) -> Option<f64> {
    let resp = client::get(http, "/metrics").await.ok()?;
    resp.text()
        .lines()
        .find_map(|l| l.strip_prefix("outpost_alerting_last_pass_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

/// No notification of any alert is pending.
async fn nothing_pending(http: SocketAddr) -> bool {
    alerts(http).await.is_some_and(|a| {
        a["alerts"].as_array().is_some_and(|list| {
            list.iter().all(|al| {
                al["notifications"]
                    .as_array()
                    .is_some_and(|ns| ns.iter().all(|n| n["state"] != "pending"))
            })
        })
    })
}

/// The trigger of the (only) alert was recorded as delivered to `sink`.
async fn trigger_delivered(http: SocketAddr) -> bool {
    alerts(http).await.is_some_and(|a| {
        a["alerts"].as_array().is_some_and(|list| {
            list.iter().any(|al| {
                al["notifications"].as_array().is_some_and(|ns| {
                    ns.iter()
                        .any(|n| n["action"] == "trigger" && n["state"] == "delivered")
                })
            })
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_between_trigger_and_resolve_pages_once_and_resolves_once() {
    let started = Instant::now();
    let failing = Arc::new(Mutex::new(true));
    let f = failing.clone();
    let target = HttpServer::builder()
        .handler("/health", move |_| {
            if *f.lock().unwrap() {
                Reply::text(503, "down")
            } else {
                Reply::text(200, "ok")
            }
        })
        .run()
        .await
        .unwrap();
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let fleet = Fleet::new();
    let key = fleet.secret("pd.key", ROUTING_KEY);
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let text = format!(
        r#"[server]
grpc_listen = "{grpc}"
http_listen = "{http}"
# The test reads /api/v1/alerts without credentials.
allow_unauthenticated = true
allow_plaintext_probes = true
[store]
path = "{db}"
{probes}
[[checks]]
id = "api-health"
interval = "200ms"
timeout = "150ms"
alert = {{ min_regions = 2, confirmations = 2, recoveries = 2 }}
http = {{ url = "{url}" }}

[[sinks]]
name = "pagerduty"
pagerduty = {{ routing_key = {{ file = "{key}" }}, api_url = "{pd}" }}

[[routes]]
name = "oncall"
sinks = ["pagerduty"]
"#,
        db = fleet.db().display(),
        probes = fleet.probes_toml(&REGIONS),
        url = target.url("/health"),
        key = key.display(),
        pd = pager.url(),
    );
    let config = fleet.dir.path().join("controller.toml");
    std::fs::write(&config, text).unwrap();

    let mut controller = spawn(&config);
    eventually(
        "the controller's readiness",
        Duration::from_secs(20),
        || async {
            client::get(http, "/readyz")
                .await
                .is_ok_and(|r| r.status == 200)
        },
    )
    .await;
    let probes: Vec<_> = REGIONS.iter().map(|r| fleet.probe(r, grpc, None)).collect();

    // Both regions fail → the trigger reaches the receiver.
    let events = pager.wait_for_events(1, Duration::from_secs(20)).await;
    assert_eq!(events.len(), 1, "one trigger");
    assert_eq!(events[0].event_action, "trigger");
    // Kill right after the controller recorded the delivery (killing between
    // the receiver's 202 and that record would send the trigger again: that
    // at-least-once window is documented, and PagerDuty collapses it by dedup key).
    eventually(
        "the trigger recorded as delivered",
        Duration::from_secs(10),
        || trigger_delivered(http),
    )
    .await;
    controller.kill().unwrap(); // SIGKILL
    controller.wait().unwrap();
    let killed_at = Instant::now();

    // The target recovers while the controller is dead; results queue on the probes.
    let before = target.request_count();
    *failing.lock().unwrap() = false;
    eventually(
        "passing runs from every probe while the controller is dead",
        Duration::from_secs(10),
        || async { target.request_count() >= before + 2 * REGIONS.len() as u64 },
    )
    .await;
    let mut controller = spawn(&config);

    let events = pager.wait_for_events(2, Duration::from_secs(30)).await;
    let resolved_after = killed_at.elapsed();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    // Nothing more: no second trigger from the restarted controller, no
    // second resolve. Proof it ran past this point: an evaluator pass that
    // started after now, and no notification left pending.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    eventually(
        "an evaluator pass and a drained outbox",
        Duration::from_secs(10),
        || async {
            last_pass(http).await.is_some_and(|t| t >= now_s) && nothing_pending(http).await
        },
    )
    .await;
    let events = pager.events();
    let actions: Vec<&str> = events.iter().map(|e| e.event_action.as_str()).collect();
    assert_eq!(actions, vec!["trigger", "resolve"], "{events:#?}");
    let keys: HashSet<&str> = events.iter().map(|e| e.dedup_key.as_str()).collect();
    assert_eq!(keys.len(), 1);
    assert!(pager.rejected().is_empty(), "{:?}", pager.rejected());
    eprintln!(
        "kill_controller: resolve {:.1}s after the kill; total {:.1}s",
        resolved_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    for p in probes {
        p.shutdown().await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &controller.id().to_string()])
        .status();
    let _ = controller.wait();
}

/// `outpost_notifications_total{sink="pagerduty",outcome="sent"}` from /metrics.
async fn sent(http: SocketAddr) -> Option<u64> {
    let resp = client::get(http, "/metrics").await.ok()?;
    resp.text().lines().find_map(|l| {
        (l.starts_with("outpost_notifications_total{")
            && l.contains("sink=\"pagerduty\"")
            && l.contains("outcome=\"sent\""))
        .then(|| l.rsplit(' ').next()?.trim().parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_while_a_group_is_open_neither_repages_nor_forgets_it() {
    let failing = Arc::new(Mutex::new(true));
    let f = failing.clone();
    let target = HttpServer::builder()
        .handler("/health", move |_| {
            if *f.lock().unwrap() {
                Reply::text(503, "down")
            } else {
                Reply::text(200, "ok")
            }
        })
        .run()
        .await
        .unwrap();
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let fleet = Fleet::new();
    let key = fleet.secret("pd.key", ROUTING_KEY);
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut checks = String::new();
    for id in ["pay-1", "pay-2"] {
        checks.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nlabels = {{ team = \"payments\" }}\n\
             alert = {{ min_regions = 2, confirmations = 2, recoveries = 2 }}\nhttp = {{ url = \"{}\" }}\n",
            target.url("/health")
        ));
    }
    let text = format!(
        r#"[server]
grpc_listen = "{grpc}"
http_listen = "{http}"
# The test reads /metrics without credentials.
allow_unauthenticated = true
allow_plaintext_probes = true
[store]
path = "{db}"
{probes}
{checks}
[[sinks]]
name = "pagerduty"
pagerduty = {{ routing_key = {{ file = "{key}" }}, api_url = "{pd}" }}

[[routes]]
name = "oncall"
sinks = ["pagerduty"]
group_by = ["team"]
group_wait = "1s"
group_interval = "1s"
"#,
        db = fleet.db().display(),
        probes = fleet.probes_toml(&REGIONS),
        key = key.display(),
        pd = pager.url(),
    );
    let config = fleet.dir.path().join("controller.toml");
    std::fs::write(&config, text).unwrap();
    let mut controller = spawn(&config);
    eventually(
        "the controller's readiness",
        Duration::from_secs(20),
        || async {
            client::get(http, "/readyz")
                .await
                .is_ok_and(|r| r.status == 200)
        },
    )
    .await;
    let probes: Vec<_> = REGIONS.iter().map(|r| fleet.probe(r, grpc, None)).collect();

    // Both checks fail; after group_wait, one trigger naming both.
    let events = pager.wait_for_events(1, Duration::from_secs(20)).await;
    assert_eq!(events[0].event_action, "trigger", "{events:#?}");
    assert!(
        events[0].dedup_key.starts_with("outpost/group/oncall/"),
        "{events:#?}"
    );
    eventually(
        "the group's trigger recorded as delivered",
        Duration::from_secs(10),
        || async { sent(http).await == Some(1) },
    )
    .await;
    assert_eq!(
        events[0].raw["payload"]["custom_details"]["count"], 2,
        "{events:#?}"
    );
    controller.kill().unwrap(); // SIGKILL
    controller.wait().unwrap();

    // Recovered while the controller is dead.
    let before = target.request_count();
    *failing.lock().unwrap() = false;
    eventually(
        "passing runs from every probe while the controller is dead",
        Duration::from_secs(10),
        || async { target.request_count() >= before + 4 * REGIONS.len() as u64 },
    )
    .await;
    let mut controller = spawn(&config);
    let events = pager.wait_for_events(2, Duration::from_secs(30)).await;
    assert_eq!(events[1].event_action, "resolve", "{events:#?}");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    // Nothing more: a pass after now, and the restarted controller sent
    // exactly the resolve.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    eventually(
        "an evaluator pass after the resolve",
        Duration::from_secs(10),
        || async { last_pass(http).await.is_some_and(|t| t >= now_s) },
    )
    .await;
    assert_eq!(
        sent(http).await,
        Some(1),
        "only the resolve after the restart"
    );
    let actions: Vec<String> = pager
        .events()
        .iter()
        .map(|e| e.event_action.clone())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"]);
    assert!(pager.rejected().is_empty(), "{:?}", pager.rejected());
    for p in probes {
        p.shutdown().await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &controller.id().to_string()])
        .status();
    let _ = controller.wait();
}
