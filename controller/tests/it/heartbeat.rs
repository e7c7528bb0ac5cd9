//! Heartbeat checks on loopback: real pings over HTTP to a real controller,
//! its deadline worker, and the test kit's PagerDuty receiver. Deadlines run
//! on a manual clock (`start_manual`), so periods are realistic (1 h + 5 min
//! grace, a daily cron schedule across DST changes) and each "not yet" is
//! proven at the exact millisecond before it turns into "missed". The HTTP
//! surface (404, HEAD, body bound, 429) runs on the system clock.

#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use outpost_controller::{ManualClock, RunningController, config, heartbeat};
use outpost_probe::check::{Observed, heartbeat::Signal};
use outpost_testkit::{PagerReceiver, client};

use crate::support::*;

const PING_ID: &str = HB_PING_ID;
const CHECK: &str = "[[checks]]\nid = \"nightly-etl\"\nheartbeat = { period = \"1h\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n";
const DAILY_BERLIN: &str = "[[checks]]\nid = \"nightly-etl\"\nheartbeat = { schedule = \"0 3 * * *\", tz = \"Europe/Berlin\", grace = \"30m\", ping_id = { env = \"TEST_HB_ID\" } }\n";
const DEDUP_KEY: &str = "outpost/nightly-etl/check_failing";
const MINUTE: i64 = 60_000;

async fn start_hb(db: &std::path::Path, pager: &str) -> RunningController {
    start(&config_text(db, pager, CHECK)).await
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

/// Unix ms of an RFC 3339 UTC time.
fn utc(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// A manual clock standing at `rfc3339`.
fn clock_at(rfc3339: &str) -> ManualClock {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    ManualClock::new(t)
}

/// Proves that nothing is due at the clock's time (after `settle`): the
/// deadline rule, run here at that time, writes nothing; no missed row
/// exists beyond `missed`; no page beyond `pages` went out.
async fn nothing_due(
    ctl: &RunningController,
    clock: &ManualClock,
    pager: &PagerReceiver,
    missed: usize,
    pages: usize,
) {
    settle(ctl, clock).await;
    let now = clock.unix_ms();
    assert_eq!(heartbeat::evaluate(ctl.controller(), now).await.unwrap(), 0);
    assert_eq!(missed_rows(ctl).await, missed);
    drained(ctl).await;
    assert_eq!(pager.events().len(), pages, "{:#?}", pager.events());
}

async fn success(http: SocketAddr) {
    let r = ping(http, "GET", &format!("/ping/{PING_ID}"), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn silence_past_period_plus_grace_pages_once_and_the_next_ping_resolves() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctl, clock) =
        start_manual(&config_text(&dir.path().join("o.db"), &pager.url(), CHECK)).await;
    let http = ctl.http_addr();
    let path = format!("/ping/{PING_ID}");

    // Before the first ping: UNKNOWN however long it stays silent.
    clock.advance(Duration::from_secs(24 * 3600));
    nothing_due(&ctl, &clock, &pager, 0, 0).await;
    assert_eq!(heartbeat_state(http).await["state"], "UNKNOWN");

    success(http).await;
    // A late ping inside the grace (1 h 4 min later) changes nothing.
    advance_to(&clock, clock.unix_ms() + 64 * MINUTE);
    nothing_due(&ctl, &clock, &pager, 0, 0).await;
    let late = clock.unix_ms();
    success(http).await;
    let state = heartbeat_state(http).await;
    assert_eq!(state["state"], "OK", "{state}");
    assert_eq!(state["region"], "heartbeat");

    // At the deadline itself (last ping + 1 h + 5 min): not yet missed.
    let deadline = late + 65 * MINUTE;
    advance_to(&clock, deadline - 1);
    nothing_due(&ctl, &clock, &pager, 0, 0).await;
    assert_eq!(clock.unix_ms(), deadline);
    assert_eq!(heartbeat_state(http).await["state"], "OK");

    // One millisecond past it: the worker (woken by the move) writes the
    // missed row, and exactly one page goes out.
    clock.advance(Duration::from_millis(1));
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event_action, "trigger");
    assert_eq!(events[0].dedup_key, DEDUP_KEY);
    let summary = events[0].summary.clone().unwrap();
    assert!(summary.contains("heartbeat_missed"), "{summary}");
    let state = heartbeat_state(http).await;
    assert_eq!(state["state"], "FAILING", "{state}");
    assert_eq!(state["code"], "heartbeat_missed");
    nothing_due(&ctl, &clock, &pager, 1, 1).await;
    let rows = ctl.store().recent_results("nightly-etl", 1).await.unwrap();
    let Observed::Heartbeat(missed) = &rows[0].details else {
        panic!("{:?}", rows[0].details)
    };
    assert_eq!(missed.signal, Signal::Missed);
    assert_eq!(missed.last_ping_ms, Some(late));
    let reported = rows[0].started_at_ms;

    // The silence goes on: reported again one period + grace after the
    // report (the region stays fresh and FAILING), paged no more.
    advance_to(&clock, reported + 65 * MINUTE - 1);
    nothing_due(&ctl, &clock, &pager, 1, 1).await;
    clock.advance(Duration::from_millis(1));
    eventually("a second heartbeat_missed row", WAIT, || async {
        (missed_rows(&ctl).await >= 2).then_some(())
    })
    .await;
    nothing_due(&ctl, &clock, &pager, 2, 1).await;
    assert_eq!(heartbeat_state(http).await["state"], "FAILING");

    // The next ping resolves, with the same dedup key.
    assert_eq!(ping(http, "POST", &path, b"done").await.status, 200);
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, DEDUP_KEY);
    assert_eq!(heartbeat_state(http).await["state"], "OK");
    nothing_due(&ctl, &clock, &pager, 2, 2).await;

    clock.advance(heartbeat::MIN_PING_GAP);
    // /fail: failing at once (the clock does not move), heartbeat_failed,
    // the body's first line named.
    let fail = ping(
        http,
        "POST",
        &format!("{path}/fail"),
        b"exit code 3: disk full\nmore log",
    )
    .await;
    assert_eq!(fail.status, 200);
    let events = pager.wait_for_events(3, WAIT).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[2].event_action, "trigger");
    assert_eq!(events[2].dedup_key, DEDUP_KEY);
    let summary = events[2].summary.clone().unwrap();
    assert!(summary.contains("heartbeat_failed"), "{summary}");
    let state = heartbeat_state(http).await;
    assert_eq!(state["code"], "heartbeat_failed", "{state}");
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_daily_berlin_schedule_is_due_by_local_time_after_spring_forward() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("o.db"), &pager.url(), DAILY_BERLIN);
    // Saturday 2026-03-28 03:04 CET; Berlin skips 02:00–03:00 overnight.
    let clock = clock_at("2026-03-28T02:04:00Z");
    let ctl = start_with(&text, &clock).await;
    let http = ctl.http_addr();
    success(http).await;
    nothing_due(&ctl, &clock, &pager, 0, 0).await;

    // Due by Sunday 03:00 CEST + 30 min = 01:30Z: 23 h 26 min after the
    // ping, where a 1-day period would wait until 02:34Z.
    let deadline = utc("2026-03-29T01:30:00Z");
    advance_to(&clock, deadline - 1);
    nothing_due(&ctl, &clock, &pager, 0, 0).await;
    assert_eq!(heartbeat_state(http).await["state"], "OK");
    clock.advance(Duration::from_millis(1));
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event_action, "trigger");
    assert!(
        events[0]
            .summary
            .clone()
            .unwrap()
            .contains("heartbeat_missed")
    );
    nothing_due(&ctl, &clock, &pager, 1, 1).await;

    // The job runs late (03:40 CEST): the ping resolves; the next run is
    // Monday 03:00 CEST.
    advance_to(&clock, utc("2026-03-29T01:40:00Z"));
    success(http).await;
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, DEDUP_KEY);
    advance_to(&clock, utc("2026-03-30T01:30:00Z") - 1);
    nothing_due(&ctl, &clock, &pager, 1, 2).await;
    assert_eq!(heartbeat_state(http).await["state"], "OK");
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_daily_berlin_schedule_is_not_missed_by_the_25_hour_night_of_fall_back() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("o.db"), &pager.url(), DAILY_BERLIN);
    // Saturday 2026-10-24 03:04 CEST; Berlin repeats 02:00–03:00 overnight.
    let clock = clock_at("2026-10-24T01:04:00Z");
    let ctl = start_with(&text, &clock).await;
    let http = ctl.http_addr();
    success(http).await;

    // Sunday's run is at 03:00 CET = 02:00Z, 24 h 56 min later. At 03:25
    // CET a 1-day period + grace (due 01:34Z) would have paged; the
    // schedule has not, and the run's ping keeps it green.
    advance_to(&clock, utc("2026-10-25T02:25:00Z"));
    nothing_due(&ctl, &clock, &pager, 0, 0).await;
    assert_eq!(heartbeat_state(http).await["state"], "OK");
    success(http).await;

    // Monday's run is missed: due 03:30 CET = 02:30Z, not a millisecond
    // earlier.
    let deadline = utc("2026-10-26T02:30:00Z");
    advance_to(&clock, deadline - 1);
    nothing_due(&ctl, &clock, &pager, 0, 0).await;
    clock.advance(Duration::from_millis(1));
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event_action, "trigger");
    assert_eq!(events[0].dedup_key, DEDUP_KEY);
    nothing_due(&ctl, &clock, &pager, 1, 1).await;
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
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { period = \"1h\", schedule = \"0 3 * * *\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].heartbeat.schedule",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].heartbeat.period",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { period = \"1h\", tz = \"Europe/Berlin\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].heartbeat.tz",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { schedule = \"0 3 * *\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].heartbeat.schedule",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { schedule = \"0 25 * * *\", tz = \"UTC\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].heartbeat.schedule",
        ),
        (
            "[[checks]]\nid = \"a\"\nheartbeat = { schedule = \"0 3 * * *\", tz = \"Europe/Atlantis\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n",
            "checks[0].heartbeat.tz",
        ),
    ];
    let mut vars = vars();
    vars.push(("TEST_SHORT".into(), "abc".into()));
    // A bad expression and a bad zone: both named.
    let both = "[[checks]]\nid = \"a\"\nheartbeat = { schedule = \"0 3 * *\", tz = \"Nowhere/City\", grace = \"5m\", ping_id = { env = \"TEST_HB_ID\" } }\n";
    let err = config::parse(
        &config_text(&db, "http://127.0.0.1:9/", both),
        "test.toml",
        &vars,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("checks[0].heartbeat.schedule"), "{err}");
    assert!(err.contains("checks[0].heartbeat.tz"), "{err}");
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
    // A schedule's interval (what staleness counts in) is its longest gap
    // between runs plus grace: a weekday job is silent over the weekend.
    let weekdays = "[[checks]]\nid = \"nightly-etl\"\nheartbeat = { schedule = \"0 9 * * MON-FRI\", grace = \"1h\", ping_id = { env = \"TEST_HB_ID\" } }\n";
    let cfg = config::parse(
        &config_text(&db, "http://127.0.0.1:9/", weekdays),
        "test.toml",
        &vars,
    )
    .unwrap();
    let def = cfg.check("nightly-etl").unwrap();
    assert_eq!(def.spec.interval, Duration::from_secs(3 * 86_400 + 3600));
}
