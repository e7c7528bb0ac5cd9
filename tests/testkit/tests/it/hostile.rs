//! Hostile peers against raw sockets.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use outpost_testkit::client;
use outpost_testkit::{Behaviour, Hostile, Pki};
use tokio::io::AsyncReadExt as _;

#[tokio::test]
async fn silent_accepts_but_never_answers() {
    let srv = Hostile::silent().await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await;
    assert!(read.is_err(), "silent server answered: {read:?}");
    assert_eq!(srv.connection_count(), 1);
}

#[tokio::test]
async fn garbage_is_not_http_and_closes() {
    let srv = Hostile::garbage().await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        client::read_at_least(&mut tcp, usize::MAX),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got.len(), 1024);
    assert!(!got.starts_with(b"HTTP/"));
}

#[tokio::test]
async fn huge_headers_sends_status_then_filler() {
    let srv = Hostile::huge_headers(200_000).await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        client::read_at_least(&mut tcp, usize::MAX),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\nX-Filler-0: "));
    assert!(got.len() >= 200_000 && got.len() < 201_000, "{}", got.len());
    assert!(got.ends_with(b"\r\n\r\n"));
}

#[tokio::test]
async fn endless_body_streams_at_rate_and_stops_when_client_leaves() {
    let srv = Hostile::endless_body(20_000).await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    let started = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        client::read_at_least(&mut tcp, 10_000),
    )
    .await
    .unwrap()
    .unwrap();
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(head.contains("Content-Length: 1073741824\r\n"));
    // ~10 KB at 20 KB/s takes about half a second; a flood would take ~0.
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    drop(tcp);
    // The connection task notices the EOF; nothing to assert beyond not hanging.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn endless_stream_announces_no_length() {
    let srv = Hostile::endless_stream(20_000).await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        client::read_at_least(&mut tcp, 5_000),
    )
    .await
    .unwrap()
    .unwrap();
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(head.contains("Connection: close\r\n"));
    assert!(!head.to_ascii_lowercase().contains("content-length"));
}

#[tokio::test]
async fn drip_sends_one_byte_per_interval() {
    let srv = Hostile::drip(Duration::from_millis(20)).await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("Content-Length: 1000\r\n"));
    let started = Instant::now();
    let mut body = [0u8; 5];
    tcp.read_exact(&mut body).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reset_and_close_end_the_connection_differently() {
    let srv = Hostile::reset().await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let err = tcp.read(&mut buf).await.expect_err("reset expected");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

    let srv = Hostile::close().await.unwrap();
    let mut tcp = client::raw_get(srv.addr()).await.unwrap();
    assert_eq!(tcp.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test]
async fn hostile_behaviour_inside_tls() {
    let pki = Pki::new("testkit-hostile-root");
    let srv = Hostile::start(Behaviour::Garbage, Some(pki.leaf(&["localhost"])))
        .await
        .unwrap();
    assert!(srv.url("/").starts_with("https://localhost:"));
    let mut tls = client::tls_connect(srv.addr(), "localhost", pki.client_config())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tls, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = client::read_at_least(&mut tls, 1024).await.unwrap();
    assert_eq!(got.len(), 1024);
}

#[tokio::test]
async fn hostile_server_stops_on_shutdown() {
    let srv = Hostile::silent().await.unwrap();
    let addr = srv.addr();
    let mut tcp = client::raw_get(addr).await.unwrap();
    srv.shutdown_and_wait().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // Open connections are closed too.
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)));
}
