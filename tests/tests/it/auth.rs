//! A probe with an unknown token is refused and nothing it sends is stored.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use outpost_e2e::{Fleet, count, db};
use outpost_testkit::{HttpServer, Reply, wait::eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_token_stores_nothing() {
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let body = format!(
        "{}\n[[checks]]\nid = \"a\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nhttp = {{ url = \"{}\" }}\n",
        fleet.probes_toml(&["eu-west"]),
        target.url("/")
    );
    let controller = fleet.controller("127.0.0.1:0", &body).await;
    let probe = fleet.probe(
        "eu-west",
        controller.grpc_addr(),
        Some("not-the-token-0123456789abcdef0123456789"),
    );
    // The controller refused it twice: the probe ran past its first refusal
    // and retried, still without an assignment.
    let metrics = controller.controller().metrics();
    eventually("two refused attempts", Duration::from_secs(10), || async {
        metrics.get("outpost_auth_failures_total", &[]) >= 2.0
    })
    .await;
    // Without a valid token the probe never receives an assignment: it runs nothing.
    assert!(probe.scheduler.is_empty());
    assert_eq!(target.request_count(), 0);
    let pool = db(&fleet.db()).await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM results").await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM probes WHERE last_seen_ms IS NOT NULL AND last_seen_ms > 0"
        )
        .await,
        0
    );
    probe.shutdown().await;
    controller.shutdown().await;
}
