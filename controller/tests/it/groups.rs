//! `[[routes]] group_by` end to end on loopback, under a manual clock, with
//! the real PagerDuty receiver: five checks of one team fail together →
//! one trigger naming all five on the grouped route (and five on a route
//! without grouping); a restart re-pages nothing; one recovers → one
//! update with the same dedup key after `group_interval`; all recover →
//! one resolve. Alerts suppressed by a failing dependency are not members.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure

use std::time::Duration;

use crate::support::*;
use outpost_controller::ManualClock;
use outpost_testkit::{PagerEvent, PagerReceiver};

const STEP: Duration = Duration::from_secs(30);
const CHECKS: [&str; 5] = ["pay-1", "pay-2", "pay-3", "pay-4", "pay-5"];

fn config(db: &std::path::Path, grouped_url: &str, each_url: &str) -> String {
    let mut checks = String::new();
    for id in CHECKS {
        checks.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"30s\"\ntimeout = \"5s\"\nlabels = {{ team = \"payments\" }}\n\
             http = {{ url = \"https://{id}.example.net/health\" }}\n"
        ));
    }
    // config_text ends inside the route `oncall` (pagerduty + log): it
    // groups by team; `each` pages per alert.
    let mut s = config_text(db, grouped_url, &checks);
    s.push_str(&format!(
        "group_by = [\"team\"]\ngroup_wait = \"1m\"\ngroup_interval = \"5m\"\n\
         [[sinks]]\nname = \"pd-each\"\npagerduty = {{ routing_key = {{ env = \"TEST_PD_KEY\" }}, api_url = \"{each_url}\" }}\n\
         [[routes]]\nname = \"each\"\nsinks = [\"pd-each\"]\n"
    ));
    s
}

async fn probes(ctl: &outpost_controller::RunningController) -> Vec<FakeProbe> {
    let mut p = Vec::new();
    for (name, _, _) in PROBES {
        let mut probe = connect(ctl.grpc_addr(), name).await;
        probe.assignment().await;
        p.push(probe);
    }
    p
}

/// One run of every check in every region at the clock's time, failing
/// unless listed in `passing`; the clock moves one interval; then a pass
/// and the deliveries it queued are waited for.
async fn round(
    ctl: &outpost_controller::RunningController,
    probes: &mut [FakeProbe],
    clock: &ManualClock,
    passing: &[&str],
) {
    for p in probes.iter_mut() {
        let batch = CHECKS
            .iter()
            .map(|check| {
                let mut r = p.result(check, passing.contains(check));
                r.started_at_unix_ms = clock.unix_ms();
                r
            })
            .collect();
        p.send(batch).await;
    }
    clock.advance(STEP);
    settle(ctl, clock).await;
}

/// Rounds until `done` holds, at most `max`.
async fn rounds_until(
    ctl: &outpost_controller::RunningController,
    probes: &mut [FakeProbe],
    clock: &ManualClock,
    passing: &[&str],
    max: usize,
    done: impl Fn() -> bool,
) {
    for _ in 0..max {
        if done() {
            return;
        }
        round(ctl, probes, clock, passing).await;
    }
    assert!(done(), "not done after {max} rounds");
}

fn members(e: &PagerEvent) -> Vec<String> {
    e.raw["payload"]["custom_details"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["check_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn five_failing_checks_of_a_team_page_once_update_once_and_resolve_once() {
    let grouped = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let each = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config(&dir.path().join("o.db"), &grouped.url(), &each.url());
    let (ctl, clock) = start_manual(&text).await;
    let mut p = probes(&ctl).await;

    // All five fail: the route without group_by pages five times at once;
    // the grouped one waits group_wait (1m) to collect them.
    rounds_until(&ctl, &mut p, &clock, &[], 4, || each.events().len() >= 5).await;
    assert!(grouped.events().is_empty(), "{:#?}", grouped.events());
    let keys: Vec<String> = each.events().iter().map(|e| e.dedup_key.clone()).collect();
    assert_eq!(
        keys.len(),
        5,
        "one trigger per check on the ungrouped route: {keys:?}"
    );
    for id in CHECKS {
        assert!(
            keys.contains(&format!("outpost/{id}/check_failing")),
            "{keys:?}"
        );
    }
    rounds_until(&ctl, &mut p, &clock, &[], 4, || {
        !grouped.events().is_empty()
    })
    .await;
    let events = grouped.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    let first = &events[0];
    assert_eq!(first.event_action, "trigger");
    assert!(
        first.dedup_key.starts_with("outpost/group/oncall/"),
        "{first:#?}"
    );
    let summary = first.summary.as_deref().unwrap();
    assert!(
        summary.starts_with("5 checks failing (team=payments): pay-1, pay-2, pay-3, +2"),
        "{summary}"
    );
    assert_eq!(members(first), CHECKS);
    let details = &first.raw["payload"]["custom_details"];
    assert_eq!(details["count"], 5);
    assert_eq!(details["group"]["labels"]["team"], "payments");
    assert_eq!(details["members"][0]["code"], "timeout", "{details:#}");
    assert_eq!(
        details["members"][0]["regions"].as_array().unwrap().len(),
        3
    );
    let key = first.dedup_key.clone();

    // A restart re-pages nothing: the group, its members and what was
    // sent are in the store.
    ctl.shutdown().await;
    let ctl = start_with(&text, &clock).await;
    let mut p = probes(&ctl).await;
    round(&ctl, &mut p, &clock, &[]).await;
    assert_eq!(grouped.events().len(), 1, "{:#?}", grouped.events());
    assert_eq!(each.events().len(), 5, "{:#?}", each.events());

    // pay-1 recovers: one update with the same key within group_interval
    // (5m) of the first trigger.
    rounds_until(&ctl, &mut p, &clock, &["pay-1"], 14, || {
        grouped.events().len() >= 2
    })
    .await;
    let events = grouped.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let update = &events[1];
    assert_eq!(update.event_action, "trigger");
    assert_eq!(update.dedup_key, key);
    assert_eq!(members(update), &CHECKS[1..]);
    assert!(
        update
            .summary
            .as_deref()
            .unwrap()
            .starts_with("4 checks failing (team=payments): pay-2, pay-3, pay-4, +1"),
        "{update:#?}"
    );

    // All recover: one resolve, same key.
    rounds_until(&ctl, &mut p, &clock, &CHECKS, 14, || {
        grouped.events().len() >= 3
    })
    .await;
    round(&ctl, &mut p, &clock, &CHECKS).await;
    let events = grouped.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[2].event_action, "resolve");
    assert_eq!(events[2].dedup_key, key);
    assert!(grouped.rejected().is_empty(), "{:?}", grouped.rejected());
    // The ungrouped route: a trigger and a resolve per check.
    let each_events = each.events();
    let resolves = each_events
        .iter()
        .filter(|e| e.event_action == "resolve")
        .count();
    assert_eq!(resolves, 5, "{each_events:#?}");
    assert!(
        ctl.store().open_groups().await.unwrap().is_empty(),
        "the group resolved"
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn suppressed_alerts_are_not_members_of_their_group() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checks = String::new();
    for (id, deps) in [
        ("db", ""),
        ("pay-1", "depends_on = [\"db\"]\n"),
        ("pay-2", "depends_on = [\"db\"]\n"),
    ] {
        checks.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"30s\"\ntimeout = \"5s\"\nlabels = {{ team = \"payments\" }}\n{deps}\
             http = {{ url = \"https://{id}.example.net/health\" }}\n"
        ));
    }
    let mut text = config_text(&dir.path().join("o.db"), &pager.url(), &checks);
    text.push_str("group_by = [\"team\"]\ngroup_wait = \"0s\"\n");
    let (ctl, clock) = start_manual(&text).await;
    let mut p = probes(&ctl).await;
    for _ in 0..3 {
        for probe in p.iter_mut() {
            let batch = ["db", "pay-1", "pay-2"]
                .iter()
                .map(|check| {
                    let mut r = probe.result(check, false);
                    r.started_at_unix_ms = clock.unix_ms();
                    r
                })
                .collect();
            probe.send(batch).await;
        }
        clock.advance(STEP);
        settle(&ctl, &clock).await;
    }
    // The dependents are open, suppressed: the group names db alone.
    for id in ["pay-1", "pay-2"] {
        let a = ctl
            .store()
            .open_alert(id, outpost_controller::alerting::AlertKind::CheckFailing)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} recorded"));
        assert_eq!(a.suppressed_by, "dependency db");
    }
    let events = pager.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(members(&events[0]), ["db"]);
    assert!(
        events[0]
            .summary
            .as_deref()
            .unwrap()
            .starts_with("1 check failing (team=payments): db — timeout"),
        "{events:#?}"
    );
    ctl.shutdown().await;
}

/// The group of `pay-1` and `pay-2` over `GET /api/v1/alert-groups`, its
/// page and the status page's list: members, dedup key (the one PagerDuty
/// got), sinks, notifications with their attempts; resolved, then opened
/// again with the same dedup key, each group keeps its own notifications.
#[tokio::test]
async fn groups_are_visible_over_the_api_and_on_their_page() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checks = String::new();
    for id in ["pay-1", "pay-2"] {
        checks.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"30s\"\ntimeout = \"5s\"\nlabels = {{ team = \"payments\" }}\n\
             http = {{ url = \"https://{id}.example.net/health\" }}\n"
        ));
    }
    let mut text = config_text(&dir.path().join("o.db"), &pager.url(), &checks);
    text.push_str("group_by = [\"team\"]\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\n");
    let (ctl, clock) = start_manual(&text).await;
    let http = ctl.http_addr();
    let mut p = probes(&ctl).await;
    async fn both(
        ctl: &outpost_controller::RunningController,
        p: &mut [FakeProbe],
        clock: &ManualClock,
        ok: bool,
    ) {
        for probe in p.iter_mut() {
            let batch = ["pay-1", "pay-2"]
                .iter()
                .map(|check| {
                    let mut r = probe.result(check, ok);
                    r.started_at_unix_ms = clock.unix_ms();
                    r
                })
                .collect();
            probe.send(batch).await;
        }
        clock.advance(STEP);
        settle(ctl, clock).await;
    }
    for _ in 0..6 {
        if !pager.events().is_empty() {
            break;
        }
        both(&ctl, &mut p, &clock, false).await;
    }
    drained(&ctl).await;
    let events = pager.events();
    assert_eq!(events.len(), 1, "{events:#?}");

    let body = get_json(http, "/api/v1/alert-groups").await;
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{body:#}");
    let g = &groups[0];
    let id = g["id"].as_i64().unwrap();
    assert_eq!(g["state"], "open");
    assert_eq!(g["route"], "oncall");
    assert_eq!(g["labels"], serde_json::json!([["team", "payments"]]));
    assert_eq!(g["dedup_key"].as_str().unwrap(), events[0].dedup_key);
    assert_eq!(g["sinks"], serde_json::json!(["pagerduty", "log"]));
    assert_eq!(
        g["members"],
        serde_json::json!([
            {"check_id": "pay-1", "code": "timeout"},
            {"check_id": "pay-2", "code": "timeout"},
        ])
    );
    let ns = g["notifications"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = ns
        .iter()
        .map(|n| {
            (
                n["sink"].as_str().unwrap(),
                n["action"].as_str().unwrap(),
                n["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("pagerduty", "trigger", "delivered"),
            ("log", "trigger", "delivered")
        ],
        "{g:#}"
    );
    let attempts = g["attempts"].as_array().unwrap();
    let pd_attempt = attempts
        .iter()
        .find(|a| a["notification_id"] == ns[0]["id"])
        .unwrap_or_else(|| panic!("the PagerDuty trigger's attempt: {g:#}"));
    assert_eq!(pd_attempt["sink"], "pagerduty");
    assert_eq!(pd_attempt["outcome"], "delivered");
    assert_eq!(
        get_json(http, &format!("/api/v1/alert-groups/{id}")).await["group"],
        *g
    );
    let (status, body) = get(http, "/api/v1/alert-groups/999").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no alert group with id 999"), "{body}");

    // Its page: members linking to their checks, the key, the deliveries.
    let (status, page) = get(http, &format!("/alert-groups/{id}")).await;
    assert_eq!(status, 200, "{page}");
    for needle in [
        "href=\"/checks/pay-1\"",
        "href=\"/checks/pay-2\"",
        "team=payments",
        events[0].dedup_key.as_str(),
        "<td>trigger</td>",
        "<td>delivered</td>",
        "<td>pagerduty</td>",
    ] {
        assert!(page.contains(needle), "{needle} missing:\n{page}");
    }
    let (status, _) = get(http, "/alert-groups/999").await;
    assert_eq!(status, 404);
    let (_, index) = get(http, "/").await;
    assert!(
        index.contains(&format!("href=\"/alert-groups/{id}\"")),
        "{index}"
    );
    assert!(index.contains("oncall: team=payments"), "{index}");

    // Both recover: the group resolves with one resolve per sink.
    for _ in 0..6 {
        if pager.events().len() >= 2 {
            break;
        }
        both(&ctl, &mut p, &clock, true).await;
    }
    drained(&ctl).await;
    assert_eq!(pager.events().len(), 2, "{:#?}", pager.events());
    let (_, index) = get(http, "/").await;
    assert!(!index.contains("/alert-groups/"), "no open group: {index}");
    // Failing again opens a new group with the same dedup key.
    for _ in 0..6 {
        if pager.events().len() >= 3 {
            break;
        }
        both(&ctl, &mut p, &clock, false).await;
    }
    drained(&ctl).await;
    assert_eq!(pager.events().len(), 3, "{:#?}", pager.events());
    let body = get_json(http, "/api/v1/alert-groups").await;
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{body:#}");
    let (new, old) = (&groups[0], &groups[1]);
    assert_eq!(
        (new["state"].as_str(), old["state"].as_str()),
        (Some("open"), Some("resolved"))
    );
    assert_eq!(old["id"].as_i64(), Some(id));
    assert_eq!(new["dedup_key"], old["dedup_key"]);
    assert!(old["resolved_at_ms"].as_i64().is_some());
    let actions = |g: &serde_json::Value| -> Vec<String> {
        g["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                format!(
                    "{} {}",
                    n["sink"].as_str().unwrap(),
                    n["action"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        actions(old),
        [
            "pagerduty trigger",
            "log trigger",
            "pagerduty resolve",
            "log resolve"
        ],
        "{old:#}"
    );
    assert_eq!(
        actions(new),
        ["pagerduty trigger", "log trigger"],
        "{new:#}"
    );
    let old_ids: Vec<&serde_json::Value> = old["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert!(
        old["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| old_ids.contains(&&a["notification_id"])),
        "{old:#}"
    );
    ctl.shutdown().await;
}

/// A group label value with markup is escaped on the group's page and in
/// the status page's list; a sink that refuses shows on the page as failed
/// attempts.
#[tokio::test]
async fn group_page_escapes_label_values_and_shows_failed_attempts() {
    const HOSTILE: &str = "<script>alert(1)</script>";
    let dir = tempfile::tempdir().unwrap();
    let checks = format!(
        "[[checks]]\nid = \"pay-1\"\ninterval = \"30s\"\ntimeout = \"5s\"\nlabels = {{ team = \"{HOSTILE}\" }}\n\
         http = {{ url = \"https://pay-1.example.net/health\" }}\n"
    );
    // Nothing listens on port 9: every PagerDuty attempt fails.
    let mut text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", &checks);
    text.push_str("group_by = [\"team\"]\ngroup_wait = \"0s\"\n");
    let (ctl, clock) = start_manual(&text).await;
    let mut p = probes(&ctl).await;
    let mut attempted = false;
    for _ in 0..6 {
        for probe in p.iter_mut() {
            let mut r = probe.result("pay-1", false);
            r.started_at_unix_ms = clock.unix_ms();
            probe.send(vec![r]).await;
        }
        clock.advance(STEP);
        settle(&ctl, &clock).await;
        let groups = get_json(ctl.http_addr(), "/api/v1/alert-groups").await;
        attempted = groups["groups"][0]["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["sink"] == "pagerduty"));
        if attempted {
            break;
        }
    }
    assert!(attempted, "the PagerDuty trigger was attempted");
    let groups = get_json(ctl.http_addr(), "/api/v1/alert-groups").await;
    let g = &groups["groups"][0];
    assert_eq!(g["labels"][0][1], HOSTILE, "{g:#}");
    let id = g["id"].as_i64().unwrap();
    for path in [format!("/alert-groups/{id}"), "/".to_owned()] {
        let (status, page) = get(ctl.http_addr(), &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(!page.contains("<script"), "{path}: unescaped: {page}");
        assert!(
            page.contains("&lt;script&gt;"),
            "{path}: label missing: {page}"
        );
    }
    let (_, page) = get(ctl.http_addr(), &format!("/alert-groups/{id}")).await;
    assert!(page.contains("<td>retry</td>"), "a failed attempt: {page}");
    ctl.shutdown().await;
}
