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
