//! TLS by default on the probe stream: a controller with `server.tls`
//! refuses a plaintext probe and serves a TLS one; the probe token is only
//! ever sent inside TLS.

#![allow(clippy::unwrap_used)]

use crate::support::*;
use outpost_proto::v1::probe_service_client::ProbeServiceClient;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::test]
async fn a_tls_controller_refuses_a_plaintext_probe_and_serves_a_tls_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = outpost_testkit::Pki::new("controller-test-root");
    let (cert, key) = pki
        .leaf(&["localhost", "127.0.0.1"])
        .write_pem(dir.path(), "controller")
        .unwrap();
    let text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", API_CHECK).replace(
        "allow_plaintext_probes = true\n",
        &format!("tls = {{ cert_file = {:?}, key_file = {:?} }}\n", cert, key),
    );
    assert!(text.contains("tls = {"), "the test config sets server.tls");
    let ctl = start(&text).await;

    // Plaintext: the stream never opens, nothing is recorded.
    let refused = attach(
        ctl.grpc_addr(),
        Some(token("eu-west-1")),
        vec![hello("eu-west-1")],
    )
    .await;
    assert!(refused.is_err(), "a plaintext probe must not attach");
    assert!(ctl.store().probes().await.unwrap().is_empty());

    // TLS verified against the test root: hello → assignment.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.root_pem()))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", ctl.grpc_addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello("eu-west-1")).await.unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token("eu-west-1")).parse().unwrap(),
    );
    let mut inbound = ProbeServiceClient::new(channel)
        .attach(req)
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(WAIT, inbound.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            first.body,
            Some(outpost_proto::v1::controller_message::Body::Assignment(_))
        ),
        "{first:?}"
    );
    assert_eq!(ctl.store().probes().await.unwrap().len(), 1);
    ctl.shutdown().await;
}
