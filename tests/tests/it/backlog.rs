//! The controller is down while a probe produces more than 10,000 results:
//! after it returns, every one of them is stored exactly once.

#![allow(clippy::unwrap_used)]

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use outpost_e2e::{Fleet, count, db, quiet_interval};
use outpost_testkit::{
    HttpServer, Reply,
    wait::{eventually, within},
};

const CHECKS: usize = 200;
const PRODUCED_WHILE_DOWN: u64 = 10_000;

fn checks_toml(url: &str, interval: &str) -> String {
    (0..CHECKS)
        .map(|i| {
            format!("[[checks]]\nid = \"c{i:03}\"\ninterval = \"{interval}\"\ntimeout = \"100ms\"\nhttp = {{ url = \"{url}\" }}\n")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_results_produced_while_the_controller_is_down_are_stored_exactly_once() {
    let started = Instant::now();
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let probes = fleet.probes_toml(&["eu-west"]);
    let body = format!("{probes}\n{}", checks_toml(&target.url("/"), "100ms"));
    let controller = fleet.controller("127.0.0.1:0", &body).await;
    let grpc = controller.grpc_addr();
    let probe = fleet.probe("eu-west", grpc, None);
    let stats = probe.scheduler.stats.clone();
    let outbox = probe.outbox.clone().unwrap();
    eventually(
        "the probe's assignment of every check",
        Duration::from_secs(20),
        || async { probe.scheduler.len() == CHECKS },
    )
    .await;

    controller.shutdown().await;
    let down_since = Instant::now();
    let at_shutdown = stats.finished.load(Ordering::SeqCst);
    assert!(
        within(Duration::from_secs(90), || async {
            stats.finished.load(Ordering::SeqCst) >= at_shutdown + PRODUCED_WHILE_DOWN
        })
        .await
        .is_some(),
        "the probe produced {PRODUCED_WHILE_DOWN} results while the controller was down (got {})",
        stats.finished.load(Ordering::SeqCst) - at_shutdown
    );
    let down_for = down_since.elapsed();
    let queued = outbox.len();
    assert!(queued as u64 >= PRODUCED_WHILE_DOWN, "{queued} queued");

    // Back on the same port and database.
    let controller = fleet.controller(&grpc.to_string(), &body).await;
    let pool = db(&fleet.db()).await;
    let backlog = at_shutdown + PRODUCED_WHILE_DOWN;
    eventually("the backlog", Duration::from_secs(60), || async {
        count(&pool, "SELECT COUNT(*) FROM results").await >= backlog as i64
    })
    .await;
    // Stop production without unassigning anything: the same checks, none due for ten minutes.
    let ids: Vec<String> = (0..CHECKS).map(|i| format!("c{i:03}")).collect();
    let quiet = quiet_interval("probe-eu-west", &ids);
    controller.reload(fleet.controller_config(
        &grpc.to_string(),
        &format!("{probes}\n{}", checks_toml(&target.url("/"), &quiet)),
    ));

    // At one instant: nothing queued, nothing finishing, and the store holds
    // exactly as many results as the probe produced.
    let consistent = within(Duration::from_secs(60), || async {
        let before = stats.finished.load(Ordering::SeqCst);
        let queued = outbox.len();
        let stored = count(&pool, "SELECT COUNT(*) FROM results").await;
        let after = stats.finished.load(Ordering::SeqCst);
        queued == 0 && before == after && stored == before as i64
    })
    .await
    .is_some();
    let stored = count(&pool, "SELECT COUNT(*) FROM results").await;
    let produced = stats.finished.load(Ordering::SeqCst);
    assert!(
        consistent,
        "stored {stored}, produced {produced}, queued {}",
        outbox.len()
    );
    assert!(stored as u64 >= backlog);
    assert_eq!(
        count(&pool, "SELECT COUNT(DISTINCT result_id) FROM results").await,
        stored,
        "no result stored twice"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(DISTINCT sequence) FROM results").await,
        stored,
        "no sequence stored twice"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT MAX(sequence) - MIN(sequence) + 1 FROM results"
        )
        .await,
        stored,
        "no sequence missing"
    );
    eprintln!(
        "backlog: {produced} results produced, {stored} stored; controller down for {:.1}s; total {:.1}s",
        down_for.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    probe.shutdown().await;
    controller.shutdown().await;
}
