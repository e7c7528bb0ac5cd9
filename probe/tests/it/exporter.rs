//! The `[exporter]` `/probe` endpoint over a real socket: the debug log,
//! the 400s a scrape config can cause, and the 503 beyond
//! `max_concurrency` while runs are held in flight by a silent target.

#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use outpost_probe::config::RawProbeFile;
use outpost_testkit::{Hostile, HttpServer, Reply, client, wait::eventually};

/// A standalone probe with no checks, only an `[exporter]` with `modules`.
fn probe(max_concurrency: usize, modules: &str) -> outpost_probe::RunningProbe {
    let text = format!(
        "[exporter]\nlisten = \"127.0.0.1:0\"\nmax_concurrency = {max_concurrency}\n{modules}"
    );
    let raw: RawProbeFile = toml::from_str(&text).unwrap();
    let cfg = raw.validate("test").unwrap_or_else(|e| panic!("{e}"));
    outpost_probe::spawn(cfg, None).unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> client::Response {
    client::get(addr, path).await.unwrap()
}

#[tokio::test]
async fn debug_answers_the_runs_log_with_phases_and_failure() {
    let srv = HttpServer::builder()
        .route("/ok", Reply::text(200, "ok"))
        .route("/down", Reply::text(503, "down"))
        .run()
        .await
        .unwrap();
    let p = probe(4, "[exporter.modules.http_2xx]\nkind = \"http\"\n");
    let ex = p.exporter_addr.unwrap();

    let r = get(
        ex,
        &format!(
            "/probe?target={}&module=http_2xx&debug=true",
            srv.url("/ok")
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    let body = r.text();
    assert!(body.contains("Logs for the probe of"), "{body}");
    assert!(body.contains("phase connect took"), "{body}");
    assert!(body.contains("phase first_byte took"), "{body}");
    assert!(body.contains("probe succeeded"), "{body}");
    assert!(body.contains("probe_success 1"), "{body}");

    let r = get(
        ex,
        &format!(
            "/probe?target={}&module=http_2xx&debug=true",
            srv.url("/down")
        ),
    )
    .await;
    assert_eq!(r.status, 200, "the run's failure is data, not an error");
    let body = r.text();
    assert!(body.contains("probe failed: unexpected_status"), "{body}");
    assert!(body.contains("probe_success 0"), "{body}");
    // Both runs reached the target: the log is of real runs.
    assert_eq!(srv.requests().len(), 2);
}

#[tokio::test]
async fn unknown_module_and_missing_target_are_400_with_a_message() {
    let p = probe(
        4,
        "[exporter.modules.http_2xx]\nkind = \"http\"\n[exporter.modules.tcp_connect]\ntcp = {}\n",
    );
    let ex = p.exporter_addr.unwrap();

    let r = get(ex, "/probe?target=127.0.0.1:1&module=nope").await;
    assert_eq!(r.status, 400);
    let body = r.text();
    assert!(body.contains("unknown module \"nope\""), "{body}");
    assert!(
        body.contains("http_2xx, tcp_connect"),
        "names the configured modules: {body}"
    );

    for path in ["/probe?module=http_2xx", "/probe?target=&module=http_2xx"] {
        let r = get(ex, path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(
            r.text().contains("target parameter is missing"),
            "{path}: {}",
            r.text()
        );
    }
    // A target the module cannot take is a 400 naming it, too.
    let r = get(ex, "/probe?target=no-port-here&module=tcp_connect").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no-port-here"), "{}", r.text());
}

#[tokio::test]
async fn beyond_max_concurrency_is_503_while_runs_are_in_flight() {
    // A target that accepts and never answers holds each run for its
    // timeout, far beyond this test.
    let silent = Hostile::silent().await.unwrap();
    let p = probe(
        2,
        "[exporter.modules.hold]\ntimeout = \"60s\"\nkind = \"http\"\n",
    );
    let ex = p.exporter_addr.unwrap();
    let path = format!("/probe?target={}&module=hold", silent.url("/"));

    let held: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { client::get(ex, &path).await })
        })
        .collect();
    // Both runs are in flight: the target has their connections.
    eventually(
        "both held runs connected to the target",
        Duration::from_secs(5),
        || async { silent.connection_count() >= 2 },
    )
    .await;

    let r = get(ex, &path).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("max_concurrency = 2"), "{}", r.text());
    // Refused without a run: the target saw no third connection, and the
    // held requests are still waiting for theirs.
    assert_eq!(silent.connection_count(), 2);
    assert!(held.iter().all(|h| !h.is_finished()));
    // Own series are still served while the slots are taken.
    assert_eq!(get(ex, "/metrics").await.status, 200);

    // The clients leave; their runs are dropped with their connections and
    // the slots come back.
    for h in held {
        h.abort();
    }
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let free = format!("/probe?target={}&module=hold", srv.url("/"));
    let ok = eventually("a slot is free again", Duration::from_secs(5), || async {
        let r = get(ex, &free).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert!(ok.text().contains("probe_success 1"), "{}", ok.text());
}
