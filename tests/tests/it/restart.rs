//! A controller restart: the probe keeps checking, reconnects, and the
//! results produced meanwhile arrive — each stored exactly once.

#![allow(clippy::unwrap_used)]

use std::{sync::atomic::Ordering, time::Duration};

use outpost_e2e::{Fleet, count, db};
use outpost_testkit::{
    HttpServer, Reply,
    wait::{eventually, within},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_produced_while_the_controller_is_down_arrive_once() {
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let body = format!(
        "{}\n[[checks]]\nid = \"fast\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nhttp = {{ url = \"{}\" }}\n",
        fleet.probes_toml(&["eu-west"]),
        target.url("/")
    );
    let controller = fleet.controller("127.0.0.1:0", &body).await;
    let grpc = controller.grpc_addr();
    let probe = fleet.probe("eu-west", grpc, None);
    {
        let pool = db(&fleet.db()).await;
        eventually("five stored results", Duration::from_secs(10), || async {
            count(&pool, "SELECT COUNT(*) FROM results").await >= 5
        })
        .await;
        pool.close().await;
    }

    controller.shutdown().await;
    // The probe keeps checking while the controller is down: results queue.
    let outbox = probe.outbox.as_ref().unwrap();
    eventually(
        "five results queued while the controller is down",
        Duration::from_secs(10),
        || async { outbox.len() >= 5 },
    )
    .await;

    let controller = fleet.controller(&grpc.to_string(), &body).await;
    let pool = db(&fleet.db()).await;
    let stats = probe.scheduler.stats.clone();
    // At one instant: nothing queued, nothing running, and the store holds
    // exactly as many results as the probe produced.
    let consistent = within(Duration::from_secs(15), || async {
        let before = stats.finished.load(Ordering::SeqCst);
        let queued = probe.outbox.as_ref().unwrap().len();
        let stored = count(&pool, "SELECT COUNT(*) FROM results").await;
        let after = stats.finished.load(Ordering::SeqCst);
        queued == 0 && before == after && stored == before as i64
    })
    .await
    .is_some();
    let stored = count(&pool, "SELECT COUNT(*) FROM results").await;
    assert!(
        consistent,
        "stored {stored}, produced {}",
        stats.finished.load(Ordering::SeqCst)
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(DISTINCT sequence) FROM results").await,
        stored,
        "no sequence stored twice"
    );

    probe.shutdown().await;
    controller.shutdown().await;
}

/// Time from the controller being back (listening) until the probe's
/// results arrive again.
async fn back_after(
    fleet: &Fleet,
    grpc: std::net::SocketAddr,
    body: &str,
) -> (outpost_controller::RunningController, Duration) {
    let pool = db(&fleet.db()).await;
    let before = count(&pool, "SELECT COUNT(*) FROM results").await;
    let controller = fleet.controller(&grpc.to_string(), body).await;
    let back = std::time::Instant::now();
    eventually(
        "results arriving again",
        Duration::from_secs(40),
        || async { count(&pool, "SELECT COUNT(*) FROM results").await > before },
    )
    .await;
    pool.close().await;
    (controller, back.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_is_back_within_about_a_second_of_the_controller() {
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let body = format!(
        "{}\n[[checks]]\nid = \"fast\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nhttp = {{ url = \"{}\" }}\n",
        fleet.probes_toml(&["eu-west"]),
        target.url("/")
    );
    let controller = fleet.controller("127.0.0.1:0", &body).await;
    let grpc = controller.grpc_addr();
    let probe = fleet.probe("eu-west", grpc, None);
    let stats = probe.scheduler.stats.clone();
    eventually("results", Duration::from_secs(10), || async {
        stats.finished.load(Ordering::SeqCst) >= 3 && probe.outbox.as_ref().unwrap().is_empty()
    })
    .await;

    // Down for 8 s: dozens of refused reconnects. The old backoff had grown
    // to 6–13 s by then; refused connects are retried at most 1 s apart.
    controller.shutdown().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (controller, long) = back_after(&fleet, grpc, &body).await;

    // Down again right after a short-lived stream (far under the old 30 s
    // reset): an acknowledged stream resets the backoff.
    controller.shutdown().await;
    let (controller, short) = back_after(&fleet, grpc, &body).await;
    eprintln!("reconnect: {long:?} after an 8 s outage, {short:?} after a restart");
    assert!(
        long < Duration::from_millis(2500),
        "8 s outage: back after {long:?}"
    );
    assert!(
        short < Duration::from_millis(1500),
        "restart: back after {short:?}"
    );

    probe.shutdown().await;
    controller.shutdown().await;
}
