//! Heartbeat checks on loopback: real pings over HTTP to a real controller,
//! its deadline worker, and the test kit's PagerDuty receiver. Periods are
//! short (1 s + 1 s grace) instead of sleeping through real schedules.

#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use outpost_controller::{RunningController, config, heartbeat};
use outpost_probe::check::{Observed, heartbeat::Signal};
use outpost_testkit::{PagerReceiver, client};

use crate::support::*;

const PING_ID: &str = "hb-test-0123456789abcdefABCDEF";
const CHECK: &str = "[[checks]]\nid = \"nightly-etl\"\nheartbeat = { period = \"1s\", grace = \"1s\", ping_id = { env = \"TEST_HB_ID\" } }\n";

async fn start_hb(db: &std::path::Path, pager: &str) -> RunningController {
    let text = config_text(db, pager, CHECK);
    let mut vars = vars();
    vars.push(("TEST_HB_ID".into(), PING_ID.into()));
    let cfg = config::parse(&text, "test.toml", &vars).expect("test config is valid");
    outpost_controller::start(cfg)
        .await
        .expect("controller starts")
}

async fn ping(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> client::Response {
    client::http(addr, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

async fn heartbeat_state(addr: SocketAddr) -> serde_json::Value {
    let checks = get_json(addr, "/api/v1/checks").await;
    let check = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "nightly-etl")
        .unwrap()
        .clone();
    let regions = check["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 1, "{check}");
    regions[0].clone()
}

async fn missed_rows(ctl: &RunningController) -> usize {
    ctl.store()
        .recent_results("nightly-etl", 100)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.failure_code.as_deref() == Some("heartbeat_missed"))
        .count()
}

#[tokio::test]
async fn pings_keep_it_green_silence_pages_once_and_the_next_ping_resolves() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_hb(&dir.path().join("o.db"), &pager.url()).await;
    let http = ctl.http_addr();
    let path = format!("/ping/{PING_ID}");

    // Before the first ping: UNKNOWN, and the worker finds nothing due.
    assert_eq!(heartbeat_state(http).await["state"], "UNKNOWN");
    let now = outpost_controller::store::now_ms();
    assert_eq!(heartbeat::evaluate(ctl.controller(), now).await.unwrap(), 0);

    // Pings every 600 ms for 3 s: longer than period + grace, never late.
    for _ in 0..5 {
        let r = ping(http, "GET", &path, b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // A late ping inside the grace (1.5 s after the last: past the period,
    // inside period + grace) changes nothing.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(ping(http, "GET", &path, b"").await.status, 200);
    let state = heartbeat_state(http).await;
    assert_eq!(state["state"], "OK", "{state}");
    assert_eq!(state["region"], "heartbeat");
    // The worker ran over those pings and found nothing due.
    let now = outpost_controller::store::now_ms();
    assert_eq!(heartbeat::evaluate(ctl.controller(), now).await.unwrap(), 0);
    assert_eq!(missed_rows(&ctl).await, 0);
    assert!(pager.events().is_empty(), "{:?}", pager.events());

    // Silence: one page with heartbeat_missed, within period + grace + ticks.
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event_action, "trigger");
    assert_eq!(events[0].dedup_key, "outpost/nightly-etl/check_failing");
    let summary = events[0].summary.clone().unwrap();
    assert!(summary.contains("heartbeat_missed"), "{summary}");
    let state = heartbeat_state(http).await;
    assert_eq!(state["state"], "FAILING", "{state}");
    assert_eq!(state["code"], "heartbeat_missed");

    // The silence goes on: reported again (the region stays fresh and
    // FAILING), paged no more.
    eventually("a second heartbeat_missed row", WAIT, || async {
        (missed_rows(&ctl).await >= 2).then_some(())
    })
    .await;
    assert_eq!(heartbeat_state(http).await["state"], "FAILING");
    assert_eq!(pager.events().len(), 1, "{:#?}", pager.events());
    let rows = ctl.store().recent_results("nightly-etl", 1).await.unwrap();
    let Observed::Heartbeat(missed) = &rows[0].details else {
        panic!("{:?}", rows[0].details)
    };
    assert_eq!(missed.signal, Signal::Missed);
    assert!(missed.last_ping_ms.is_some());

    // The next ping resolves, with the same dedup key.
    assert_eq!(ping(http, "POST", &path, b"done").await.status, 200);
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, "outpost/nightly-etl/check_failing");
    assert_eq!(heartbeat_state(http).await["state"], "OK");

    tokio::time::sleep(heartbeat::MIN_PING_GAP).await;

    // /fail: failing at once, heartbeat_failed, the body's first line named.
    let fail = ping(
        http,
        "POST",
        &format!("{path}/fail"),
        b"exit code 3: disk full\nmore log",
    )
    .await;
    assert_eq!(fail.status, 200);
    let events = pager.wait_for_events(3, Duration::from_secs(3)).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[2].event_action, "trigger");
    let summary = events[2].summary.clone().unwrap();
    assert!(summary.contains("heartbeat_failed"), "{summary}");
    let state = heartbeat_state(http).await;
    assert_eq!(state["code"], "heartbeat_failed", "{state}");
    ctl.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_are_404_bodies_are_bounded_and_start_measures_the_run() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_hb(&dir.path().join("o.db"), &pager.url()).await;
    let http = ctl.http_addr();

    // Unknown ids and signals: the same plain 404, naming nothing.
    let wrong = "hb-test-0123456789abcdefABCDEX";
    for path in [
        format!("/ping/{wrong}"),
        format!("/ping/{wrong}/fail"),
        format!("/ping/{PING_ID}/bogus"),
        "/ping/x".to_owned(),
    ] {
        let r = ping(http, "GET", &path, b"").await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.text(), "not found\n", "{path}");
    }
    assert_eq!(
        ctl.store()
            .recent_results("nightly-etl", 10)
            .await
            .unwrap()
            .len(),
        0
    );

    // HEAD works like GET.
    let head = ping(http, "HEAD", &format!("/ping/{PING_ID}/start"), b"").await;
    assert_eq!(head.status, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;

    // A 1 MiB body: answered at once, 10 KiB kept, the size recorded.
    let big = vec![b'x'; 1024 * 1024];
    let started = std::time::Instant::now();
    let r = ping(http, "POST", &format!("/ping/{PING_ID}"), &big).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2));
    let rows = ctl.store().recent_results("nightly-etl", 10).await.unwrap();
    assert_eq!(rows.len(), 1, "a /start is not a result");
    assert!(rows[0].ok);
    assert_eq!(rows[0].region, "heartbeat");
    let Observed::Heartbeat(d) = &rows[0].details else {
        panic!("{:?}", rows[0].details)
    };
    assert_eq!(d.signal, Signal::Success);
    assert_eq!(d.method.as_deref(), Some("POST"));
    assert_eq!(d.excerpt.as_ref().unwrap().len(), heartbeat::MAX_EXCERPT);
    assert!(d.truncated);
    assert_eq!(d.body_bytes, 1024 * 1024);
    // The /start before it measured the run.
    assert!(d.run_ms.unwrap() >= 150, "{d:?}");

    // A burst faster than MIN_PING_GAP: the extra pings are refused, not stored.
    tokio::time::sleep(heartbeat::MIN_PING_GAP).await;
    let path = format!("/ping/{PING_ID}");
    let burst = futures_util::future::join_all((0..5).map(|_| ping(http, "GET", &path, b""))).await;
    let refused: Vec<_> = burst.iter().filter(|r| r.status == 429).collect();
    assert!(!refused.is_empty(), "{burst:?}");
    assert!(refused.iter().all(|r| r.headers["retry-after"] == "1"));
    let stored = burst.iter().filter(|r| r.status == 200).count();
    let rows = ctl.store().recent_results("nightly-etl", 10).await.unwrap();
    assert_eq!(rows.len(), 1 + stored);

    // A probe is never assigned a heartbeat check.
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    let assignment = eu.assignment().await;
    assert!(
        assignment.checks.iter().all(|c| c.id != "nightly-etl"),
        "{assignment:?}"
    );
    // Nor does the public API show the ping id anywhere.
    let (_, body) = get(http, "/api/v1/checks/nightly-etl").await;
    assert!(!body.contains(PING_ID), "{body}");
    let (_, page) = get(http, "/").await;
    assert!(!page.contains(PING_ID));
    assert!(page.contains("heartbeat"));
    ctl.shutdown().await;
}

#[test]
fn heartbeat_config_is_strict() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("o.db");
    let cases = [
        (
            "[[checks]]\nid = \"a\"\ninterval = \"1m\"\nheartbeat = { period = \"1h\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].interval",
        ),
        (
            "[[checks]]\nid = \"a\"\nregions = [\"eu-west\"]\nheartbeat = { period = \"1h\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].regions",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { period = \"1h\", grace = \"5m\", ping_id = { env = \"TEST_SHORT\" } }\n",
            "checks[0].heartbeat.ping_id",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { period = \"500ms\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].heartbeat.period",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { period = \"1h\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n\
             [[checks]]\nid = \"b\"\nheartbeat = { period = \"1h\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[1].heartbeat.ping_id",
        ),
    ];
    let mut vars = vars();
    vars.push(("TEST_HB_ID".into(), PING_ID.into()));
    vars.push(("TEST_SHORT".into(), "abc".into()));
    for (checks, path) in cases {
        let text = config_text(&db, "http://127.0.0.1:9/", checks);
        let err = config::parse(&text, "test.toml", &vars).unwrap_err();
        assert!(err.to_string().contains(path), "{path}: {err}");
    }
    let text = config_text(&db, "http://127.0.0.1:9/", CHECK);
    let cfg = config::parse(&text, "test.toml", &vars).unwrap();
    let def = cfg.check("nightly-etl").unwrap();
    assert_eq!(def.regions, vec!["heartbeat"]);
    assert_eq!(
        (
            def.policy.min_regions,
            def.policy.confirmations,
            def.policy.recoveries
        ),
        (1, 1, 1)
    );
}
