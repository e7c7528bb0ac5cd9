//! The HTTP surface on loopback: JSON API, status page, metrics, health.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn api_and_page_show_failing_checks_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        API_CHECK,
    ))
    .await;
    let http = ctl.http_addr();
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    let mut us = connect(ctl.grpc_addr(), "us-east-1").await;
    eu.assignment().await;
    us.assignment().await;
    eu.report("api-health", false, 2).await;
    us.report("api-health", false, 2).await;
    let store = ctl.store().clone();
    eventually("alert opens", WAIT, || {
        let store = store.clone();
        async move { (!store.open_alerts().await.ok()?.is_empty()).then_some(()) }
    })
    .await;

    let checks = get_json(http, "/api/v1/checks").await;
    let c = &checks["checks"][0];
    assert_eq!(c["id"], "api-health");
    assert_eq!(c["kind"], "http");
    assert_eq!(c["target"], "https://api.example.net/health");
    assert_eq!(c["interval"], "30s");
    assert_eq!(c["state"], "FAILING");
    assert_eq!(c["alert_open"], true);
    let regions = c["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 3);
    let eu_state = regions.iter().find(|r| r["region"] == "eu-west").unwrap();
    assert_eq!(eu_state["state"], "FAILING");
    assert_eq!(eu_state["code"], "timeout");
    assert!(eu_state["last_result_at_ms"].as_i64().is_some());
    let ap = regions.iter().find(|r| r["region"] == "ap-south").unwrap();
    assert_eq!(ap["state"], "UNKNOWN");

    let one = get_json(http, "/api/v1/checks/api-health").await;
    assert_eq!(one["check"]["id"], "api-health");
    assert_eq!(one["recent_results"].as_array().unwrap().len(), 4);
    assert_eq!(one["recent_results"][0]["failure_code"], "timeout");
    assert_eq!(get(http, "/api/v1/checks/nope").await.0, 404);

    let alerts = get_json(http, "/api/v1/alerts").await;
    assert_eq!(alerts["alerts"][0]["state"], "open");
    assert_eq!(
        alerts["alerts"][0]["dedup_key"],
        "outpost/api-health/check_failing"
    );

    let probes = get_json(http, "/api/v1/probes").await;
    let list = probes["probes"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let p = list.iter().find(|p| p["name"] == "eu-west-1").unwrap();
    assert_eq!(
        (
            p["state"].as_str(),
            p["connected"].as_bool(),
            p["version"].as_str()
        ),
        (Some("fresh"), Some(true), Some("test-1"))
    );
    let ap = list.iter().find(|p| p["name"] == "ap-south-1").unwrap();
    assert_eq!(ap["state"], "offline");

    let (status, page) = get(http, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("FAILING"), "{page}");
    assert!(page.contains("1 OPEN ALERT"), "{page}");
    assert!(page.contains("http-equiv=\"refresh\" content=\"5\""));
    assert!(!page.contains("<script"), "no external assets or scripts");
    let (status, detail) = get(http, "/checks/api-health").await;
    assert_eq!(status, 200);
    assert!(
        detail.contains("timed out after 5s waiting for first byte"),
        "{detail}"
    );

    let (status, metrics) = get(http, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("outpost_results_ingested_total{region=\"eu-west\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("outpost_alerts_open 1"), "{metrics}");
    assert!(metrics.contains("outpost_probes_connected 2"), "{metrics}");
    assert!(
        metrics.contains(
            "outpost_check_state{check=\"api-health\",region=\"eu-west\",state=\"failing\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(get(http, "/livez").await.0, 200);
    assert_eq!(get(http, "/readyz").await.0, 200);
    ctl.shutdown().await;
}

#[tokio::test]
async fn regions_without_recent_results_are_shown_stale() {
    let dir = tempfile::tempdir().unwrap();
    let check = "[[checks]]\nid = \"fast\"\ninterval = \"200ms\"\nhttp = { url = \"http://127.0.0.1:9/\" }\n";
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        check,
    ))
    .await;
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    eu.assignment().await;
    eu.report("fast", true, 1).await;
    let checks = get_json(ctl.http_addr(), "/api/v1/checks").await;
    let eu_state = |v: &serde_json::Value| {
        v["checks"][0]["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == "eu-west")
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(eu_state(&checks), "OK");

    // 3 × 200 ms without a result: STALE, never OK.
    let http = ctl.http_addr();
    let stale = eventually(
        "region turns stale",
        Duration::from_secs(5),
        || async move {
            let v = get_json(http, "/api/v1/checks").await;
            (eu_state(&v) == "STALE").then_some(v)
        },
    )
    .await;
    assert_eq!(stale["checks"][0]["state"], "STALE");
    let (_, page) = get(http, "/").await;
    assert!(
        page.contains("STALE") && page.contains("no result for"),
        "{page}"
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn summary_lists_checks_per_region_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        API_CHECK,
    ))
    .await;
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    let mut us = connect(ctl.grpc_addr(), "us-east-1").await;
    eu.assignment().await;
    us.assignment().await;
    eu.report("api-health", false, 2).await;
    us.report("api-health", false, 2).await;
    outpost_controller::alerting::evaluate_all(
        ctl.controller(),
        outpost_controller::store::now_ms(),
    )
    .await
    .unwrap();
    let text = outpost_controller::summary::render(&ctl).await;
    assert!(
        text.contains("api-health") && text.contains("eu-west=FAILING (timeout)"),
        "{text}"
    );
    assert!(text.contains("ap-south=UNKNOWN"), "{text}");
    assert!(
        text.contains("[critical] api-health failing from 2 of 3 regions"),
        "{text}"
    );
    ctl.shutdown().await;
}
