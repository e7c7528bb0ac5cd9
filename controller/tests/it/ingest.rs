//! gRPC ingest against a real controller on loopback: authentication,
//! assignments, ack-after-commit and deduplication, config reload.

use crate::support::*;
use outpost_probe::check::RawCheck;

const TWO_CHECKS: &str = "[[checks]]\nid = \"api-health\"\nhttp = { url = \"https://api.example.net/health\" }\n\
[[checks]]\nid = \"eu-portal\"\nregions = [\"eu-west\"]\nhttp = { url = \"https://portal.example.eu/\" }\n";

#[tokio::test]
async fn unknown_or_missing_token_is_unauthenticated_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        API_CHECK,
    ))
    .await;
    let batch = outpost_proto::v1::ProbeMessage {
        body: Some(outpost_proto::v1::probe_message::Body::Results(
            outpost_proto::v1::ResultBatch {
                results: vec![result("eu-west-1", 1, "api-health", false)],
            },
        )),
    };
    for token in [Some("not-a-token"), None, Some("")] {
        let first = vec![hello("eu-west-1"), batch.clone()];
        let err = attach(ctl.grpc_addr(), token, first)
            .await
            .expect_err("must be refused");
        assert_eq!(
            err.code(),
            tonic::Code::Unauthenticated,
            "{token:?}: {err:?}"
        );
    }
    assert_eq!(ctl.store().count_results().await.unwrap(), 0);
    assert!(ctl.store().probes().await.unwrap().is_empty());
    assert_eq!(
        ctl.controller()
            .metrics()
            .get("outpost_auth_failures_total", &[]),
        3.0
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn hello_name_must_match_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        API_CHECK,
    ))
    .await;
    let (_tx, mut inbound) = attach(
        ctl.grpc_addr(),
        Some(token("eu-west-1")),
        vec![hello("us-east-1")],
    )
    .await
    .unwrap();
    let err = tokio::time::timeout(WAIT, inbound.message())
        .await
        .unwrap()
        .expect_err("stream must fail");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(ctl.store().probes().await.unwrap().is_empty());
    ctl.shutdown().await;
}

#[tokio::test]
async fn hello_gets_exactly_the_checks_of_its_region_with_a_stable_version() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        TWO_CHECKS,
    ))
    .await;
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    let a_eu = eu.assignment().await;
    let ids: Vec<&str> = a_eu.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["api-health", "eu-portal"]);
    let raw: RawCheck =
        serde_json::from_str(&a_eu.checks[1].spec_json).expect("spec_json is the shared schema");
    assert_eq!(raw.http.unwrap().url, "https://portal.example.eu/");

    let mut us = connect(ctl.grpc_addr(), "us-east-1").await;
    let a_us = us.assignment().await;
    assert_eq!(
        a_us.checks
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        vec!["api-health"]
    );
    assert_ne!(a_us.version, a_eu.version);

    // Same config, same version: a reconnect gets an identical assignment.
    let mut eu2 = connect(ctl.grpc_addr(), "eu-west-1").await;
    assert_eq!(eu2.assignment().await, a_eu);

    let probes = ctl.store().probes().await.unwrap();
    let row = probes.iter().find(|p| p.name == "eu-west-1").unwrap();
    assert!(row.connected);
    assert_eq!(
        (row.region.as_str(), row.version.as_str()),
        ("eu-west", "test-1")
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn batch_is_acked_after_commit_and_a_resent_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        TWO_CHECKS,
    ))
    .await;
    let mut us = connect(ctl.grpc_addr(), "us-east-1").await;
    us.assignment().await;
    let batch = vec![
        us.result("api-health", true),
        us.result("api-health", false),
    ];
    let ack = us.send(batch.clone()).await;
    assert_eq!(
        (ack.through_sequence, ack.stored, ack.duplicates),
        (2, 2, 0)
    );
    // The ack came after the commit: the rows are there now.
    assert_eq!(ctl.store().count_results().await.unwrap(), 2);

    let again = us.send(batch).await;
    assert_eq!(
        (again.through_sequence, again.stored, again.duplicates),
        (2, 0, 2)
    );
    assert_eq!(ctl.store().count_results().await.unwrap(), 2);

    // A check not assigned to this region is skipped, yet acknowledged.
    let stray = us.result("eu-portal", true);
    let ack = us.send(vec![stray]).await;
    assert_eq!(
        (ack.through_sequence, ack.stored, ack.duplicates),
        (3, 0, 0)
    );
    assert_eq!(ctl.store().count_results().await.unwrap(), 2);

    let state = ctl.store().region_states_for("api-health").await.unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!(
        (state[0].consecutive_failures, state[0].last_code.as_deref()),
        (1, Some("timeout"))
    );
    let m = ctl.controller().metrics();
    assert_eq!(
        m.get("outpost_results_ingested_total", &[("region", "us-east")]),
        2.0
    );
    assert_eq!(
        m.get("outpost_result_duplicates_total", &[("region", "us-east")]),
        2.0
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn disconnect_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        API_CHECK,
    ))
    .await;
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    eu.assignment().await;
    assert_eq!(ctl.controller().registry().connected(), 1);
    drop(eu);
    let store = ctl.store().clone();
    eventually("probe marked disconnected", WAIT, || {
        let store = store.clone();
        async move {
            store
                .probes()
                .await
                .ok()?
                .iter()
                .find(|p| p.name == "eu-west-1" && !p.connected)
                .map(|_| ())
        }
    })
    .await;
    assert_eq!(ctl.controller().registry().connected(), 0);
    ctl.shutdown().await;
}

#[tokio::test]
async fn reload_pushes_a_new_assignment_to_connected_probes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("o.db");
    let ctl = start(&config_text(&db, "http://127.0.0.1:9", API_CHECK)).await;
    let mut eu = connect(ctl.grpc_addr(), "eu-west-1").await;
    let first = eu.assignment().await;
    assert_eq!(first.checks.len(), 1);

    // Unchanged config: nothing is pushed.
    let same = outpost_controller::config::parse(
        &config_text(&db, "http://127.0.0.1:9", API_CHECK),
        "t",
        &vars(),
    )
    .unwrap();
    ctl.reload(same);
    let new = outpost_controller::config::parse(
        &config_text(&db, "http://127.0.0.1:9", TWO_CHECKS),
        "t",
        &vars(),
    )
    .unwrap();
    ctl.reload(new);
    let second = eu.assignment().await;
    assert_eq!(second.checks.len(), 2);
    assert_ne!(second.version, first.version);
    // And the stream still works for results of the new check.
    let r = eu.result("eu-portal", true);
    assert_eq!(eu.send(vec![r]).await.stored, 1);
    ctl.shutdown().await;
}

#[tokio::test]
async fn grpc_runs_over_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let pki = outpost_testkit::Pki::new("outpost-test-root");
    let (cert, key) = pki
        .leaf(&["localhost"])
        .write_pem(dir.path(), "controller")
        .unwrap();
    let text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", API_CHECK).replacen(
        "[store]",
        &format!(
            "tls = {{ cert_file = {:?}, key_file = {:?} }}\n[store]",
            cert.display().to_string(),
            key.display().to_string()
        ),
        1,
    );
    let ctl = start(&text).await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pki.root_pem()))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "https://localhost:{}",
        ctl.grpc_addr().port()
    ))
    .unwrap()
    .tls_config(tls)
    .unwrap()
    .connect()
    .await
    .expect("TLS connect");
    let mut client = outpost_proto::v1::probe_service_client::ProbeServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello("eu-west-1")).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token("eu-west-1")).parse().unwrap(),
    );
    let mut inbound = client
        .attach(req)
        .await
        .expect("attached over TLS")
        .into_inner();
    let msg = tokio::time::timeout(WAIT, inbound.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        msg.body,
        Some(outpost_proto::v1::controller_message::Body::Assignment(_))
    ));

    // Plaintext to a TLS listener fails.
    let plain = outpost_proto::v1::probe_service_client::ProbeServiceClient::connect(format!(
        "http://{}",
        ctl.grpc_addr()
    ))
    .await;
    if let Ok(mut c) = plain {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        assert!(
            c.attach(tonic::Request::new(
                tokio_stream::wrappers::ReceiverStream::new(rx)
            ))
            .await
            .is_err()
        );
    }
    drop(tx);
    ctl.shutdown().await;
}
