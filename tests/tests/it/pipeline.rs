//! The whole path in one test: three probes in three regions → gRPC →
//! controller → SQLite → alerting → a PagerDuty Events v2 receiver.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use outpost_e2e::{Fleet, count, db, settled};
use outpost_testkit::{HttpServer, PagerReceiver, Reply, wait::eventually};

const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];
const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";

const FAILED_EU_US: &str =
    "SELECT COUNT(*) FROM results WHERE region IN ('eu-west', 'us-east') AND ok = 0";
const PASSED_EU_US: &str =
    "SELECT COUNT(*) FROM results WHERE region IN ('eu-west', 'us-east') AND ok = 1";
const FAILED_AP: &str = "SELECT COUNT(*) FROM results WHERE region = 'ap-south' AND ok = 0";

/// Waits until `n` more rows than now match the counting query `sql`.
async fn more_results(pool: &sqlx::SqlitePool, sql: &'static str, n: i64) {
    let before = count(pool, sql).await;
    let what = format!("{n} more results ({sql})");
    eventually(&what, Duration::from_secs(10), || async {
        count(pool, sql).await >= before + n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failing_regions_page_once_and_resolve_once_one_region_never_pages() {
    let failing: Arc<Mutex<HashSet<String>>> = Arc::default();
    let f = failing.clone();
    let target = HttpServer::builder()
        .handler("/health", move |req| {
            let region = req
                .header("x-outpost-region")
                .unwrap_or_default()
                .to_owned();
            if f.lock().unwrap().contains(&region) {
                Reply::text(503, "unavailable from here")
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
    let body = format!(
        r#"{probes}
[[checks]]
id = "api-health"
interval = "300ms"
timeout = "250ms"
alert = {{ min_regions = 2, confirmations = 2, recoveries = 2, severity = "critical" }}
http = {{ url = "{url}" }}

[[sinks]]
name = "pagerduty"
pagerduty = {{ routing_key = {{ file = "{key}" }}, api_url = "{pd}" }}

[[routes]]
name = "oncall"
sinks = ["pagerduty"]
"#,
        probes = fleet.probes_toml(&REGIONS),
        url = target.url("/health"),
        key = key.display(),
        pd = pager.url(),
    );
    let controller = fleet.controller("127.0.0.1:0", &body).await;
    let probes: Vec<_> = REGIONS
        .iter()
        .map(|r| fleet.probe(r, controller.grpc_addr(), None))
        .collect();
    let pool = db(&fleet.db()).await;

    // Every region reports and passes.
    eventually(
        "a passing result from all three regions",
        Duration::from_secs(10),
        || async {
            count(
                &pool,
                "SELECT COUNT(DISTINCT region) FROM results WHERE ok = 1",
            )
            .await
                == 3
        },
    )
    .await;

    // Two regions fail → exactly one trigger.
    failing
        .lock()
        .unwrap()
        .extend(["eu-west".to_owned(), "us-east".to_owned()]);
    let events = pager.wait_for_events(1, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "one trigger");
    let trigger = &events[0];
    assert_eq!(trigger.event_action, "trigger");
    assert_eq!(trigger.routing_key, ROUTING_KEY);
    assert_eq!(trigger.severity.as_deref(), Some("critical"));
    assert!(trigger.source.as_deref().is_some_and(|s| !s.is_empty()));
    let summary = trigger.summary.clone().unwrap();
    assert!(summary.contains("api-health"), "{summary}");
    assert!(
        summary.contains("eu-west") && summary.contains("us-east"),
        "{summary}"
    );
    let dedup = trigger.dedup_key.clone();
    assert!(!dedup.is_empty());
    // Still failing a while longer (four more failures from each failing
    // region, then an evaluator pass over them): no second page.
    more_results(&pool, FAILED_EU_US, 8).await;
    settled(&controller).await;
    assert_eq!(
        pager.events().len(),
        1,
        "no duplicate trigger while the failure persists"
    );

    // Recovery → exactly one resolve with the same dedup key.
    failing.lock().unwrap().clear();
    let events = pager.wait_for_events(2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, dedup);
    more_results(&pool, PASSED_EU_US, 8).await;
    settled(&controller).await;
    assert_eq!(pager.events().len(), 2, "no duplicate resolve");

    // One region alone failing never pages.
    failing.lock().unwrap().insert("ap-south".to_owned());
    more_results(&pool, FAILED_AP, 4).await;
    settled(&controller).await;
    assert_eq!(
        pager.events().len(),
        2,
        "a single failing region does not page"
    );
    assert!(
        pager.rejected().is_empty(),
        "every event was valid: {:?}",
        pager.rejected()
    );

    for p in probes {
        p.shutdown().await;
    }
    controller.shutdown().await;
}
