//! The grpc check against the test kit's tonic-health server: each serving
//! status its own code, Watch, TLS through the trust machinery, and peers
//! that are not gRPC servers.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::{code, run};
use outpost_probe::check::{Failure, FailureCode, failure::ProtocolProblem};
use outpost_testkit::{GrpcHealthServer, Pki, ServingStatus, TcpServer};

fn check(port: u16, rest: &str) -> String {
    format!("id = \"g\"\ntimeout = \"3s\"\n[grpc]\nhost = \"127.0.0.1\"\nport = {port}\n{rest}\n")
}

#[tokio::test]
async fn each_serving_status_is_its_own_verdict() {
    let srv = GrpcHealthServer::start().await.unwrap();
    let port = srv.addr().port();
    let o = run(&check(port, "")).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["status"], "SERVING");
    assert!(o.phases.connect.is_some() && o.phases.first_byte.is_some());

    srv.set_not_serving("").await;
    let o = run(&check(port, "")).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::GrpcNotServing),
        "{:?}",
        o.result
    );
    assert_eq!(o.details()["status"], "NOT_SERVING");

    srv.set_serving("orders.v1.Orders").await;
    let o = run(&check(port, "service = \"orders.v1.Orders\"")).await;
    assert!(o.ok(), "{:?}", o.result);

    srv.set("orders.v1.Orders", ServingStatus::Unknown).await;
    let o = run(&check(port, "service = \"orders.v1.Orders\"")).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::GrpcStatusUnknown),
        "{:?}",
        o.result
    );

    let o = run(&check(port, "service = \"nope.v1.Nope\"")).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::GrpcServiceUnknown),
        "{:?}",
        o.result
    );
    assert_eq!(o.details()["grpc_code"], "NOT_FOUND");
    assert!(
        o.result
            .unwrap_err()
            .to_string()
            .contains("\"nope.v1.Nope\""),
        "the message names the service"
    );
}

#[tokio::test]
async fn a_server_without_health_is_unimplemented() {
    let srv = GrpcHealthServer::start_without_health().await.unwrap();
    let o = run(&check(srv.addr().port(), "")).await;
    let Err(Failure::GrpcError { code, .. }) = &o.result else {
        panic!("{:?}", o.result)
    };
    assert_eq!(code, "UNIMPLEMENTED");
    assert_eq!(o.details()["grpc_code"], "UNIMPLEMENTED");
}

#[tokio::test]
async fn watch_fails_on_the_first_status_that_is_not_serving() {
    let srv = std::sync::Arc::new(GrpcHealthServer::start().await.unwrap());
    let port = srv.addr().port();
    // Steady: the whole window passes.
    let started = Instant::now();
    let o = run(&check(port, "watch_for = \"500ms\"")).await;
    assert!(o.ok(), "{:?}", o.result);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(o.details()["watch"][0]["status"], "SERVING");

    // A drain starts 300 ms into the watch.
    let flip = srv.clone();
    let drain = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        flip.set_not_serving("").await;
    });
    let o = run(&check(port, "watch_for = \"2s\"")).await;
    drain.await.unwrap();
    let Err(Failure::GrpcNotServing {
        after: Some(after), ..
    }) = &o.result
    else {
        panic!("{:?}", o.result)
    };
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(1500)).contains(after),
        "{after:?}"
    );
    let watch = o.details()["watch"].as_array().unwrap().clone();
    assert_eq!(watch.len(), 2, "{watch:?}");
    assert_eq!(watch[1]["status"], "NOT_SERVING");
}

#[tokio::test]
async fn tls_is_verified_through_the_trust_machinery() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let srv = GrpcHealthServer::start_tls(pki.leaf(&["grpc.test"]))
        .await
        .unwrap();
    let port = srv.addr().port();
    let o = run(&format!(
        "id = \"g\"\n[grpc]\nhost = \"grpc.test\"\naddress = \"127.0.0.1\"\nport = {port}\ntls = {{ ca_file = \"{}\" }}",
        ca.display()
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["tls"]["alpn"], "h2");
    assert!(o.phases.tls.is_some());
    let o = run(&format!(
        "id = \"g\"\n[grpc]\nhost = \"grpc.test\"\naddress = \"127.0.0.1\"\nport = {port}\ntls = {{}}"
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::TlsUntrustedRoot),
        "{:?}",
        o.result
    );
    // Plaintext against a TLS port: the peer's TLS alert is named.
    let o = run(&check(port, "")).await;
    assert_eq!(code(&o), Some(FailureCode::ProtocolError), "{:?}", o.result);
}

#[tokio::test]
async fn a_peer_that_is_not_grpc_fails_plainly_within_the_deadline() {
    let smtp = TcpServer::smtp().run().await.unwrap();
    let o = run(&check(smtp.addr().port(), "")).await;
    let Err(Failure::ProtocolError {
        problem: ProtocolProblem::NotHttp { sent },
    }) = &o.result
    else {
        panic!("{:?}", o.result)
    };
    assert!(sent.contains("220 mail.test"), "{sent}");

    let silent = TcpServer::silent().run().await.unwrap();
    let started = Instant::now();
    let o = run(&format!(
        "id = \"g\"\ntimeout = \"700ms\"\n[grpc]\nhost = \"127.0.0.1\"\nport = {}",
        silent.addr().port()
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::Timeout), "{:?}", o.result);
    assert!(started.elapsed() < Duration::from_millis(1400));
}

#[test]
fn watch_for_must_end_before_the_timeout() {
    let raw: outpost_probe::check::RawCheck = toml::from_str(
        "id = \"g\"\ntimeout = \"2s\"\n[grpc]\nhost = \"a.test\"\nport = 1\nwatch_for = \"2s\"\n",
    )
    .unwrap();
    let mut p = outpost_probe::config::Problems::default();
    assert!(raw.validate("checks[0]", &mut p).is_none());
    assert!(
        format!("{p:?}").contains("checks[0].grpc.watch_for"),
        "{p:?}"
    );
}
