//! HttpServer and Pki against real rustls / hyper clients.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use outpost_testkit::{HttpServer, LeafOptions, Pki, Reply};
use outpost_testkit::{client, wait::within};
use time::OffsetDateTime;

fn client(pki: &Pki, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut config = pki.client_config();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[tokio::test]
async fn tls_client_trusting_root_gets_route_reply_over_http1() {
    let pki = Pki::new("testkit-root");
    let srv = HttpServer::builder()
        .route("/hello", Reply::text(200, "hello").header("x-kit", "1"))
        .tls(pki.leaf(&["localhost", "127.0.0.1"]))
        .run()
        .await
        .unwrap();
    assert!(srv.url("/hello").starts_with("https://localhost:"));

    let tls = client::tls_connect(srv.addr(), "localhost", client(&pki, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let resp = client::request(tls, false, "GET", "localhost", "/hello?x=1", Bytes::new())
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "hello");
    assert_eq!(resp.headers["x-kit"], "1");

    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/hello?x=1");
    assert_eq!(reqs[0].version, "HTTP/1.1");
    assert!(reqs[0].tls);
    assert_eq!(reqs[0].sni.as_deref(), Some("localhost"));
    assert_eq!(reqs[0].header("Host"), Some("localhost"));
    assert_eq!(srv.request_count(), 1);
}

#[tokio::test]
async fn alpn_h2_is_served_as_http2_with_host_from_authority() {
    let pki = Pki::new("testkit-root-h2");
    let srv = HttpServer::builder()
        .handler("/v", |req| Reply::text(200, req.version.clone()))
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    let tls = client::tls_connect(srv.addr(), "localhost", client(&pki, &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let resp = client::request(tls, true, "GET", "localhost", "/v", Bytes::new())
        .await
        .unwrap();
    assert_eq!(resp.body, "HTTP/2.0");
    assert_eq!(srv.requests()[0].header("host"), Some("localhost"));
}

#[tokio::test]
async fn leaf_from_intermediate_serves_full_chain() {
    let root = Pki::new("testkit-root-i");
    let inter = root.intermediate("testkit-inter");
    let leaf = inter.leaf(&["localhost"]);
    assert_eq!(leaf.chain.len(), 2);
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls(leaf)
        .run()
        .await
        .unwrap();
    let tls = client::tls_connect(srv.addr(), "localhost", client(&inter, &[]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().map(<[_]>::len), Some(2));
}

#[tokio::test]
async fn expired_leaf_fails_verification_as_expired() {
    let pki = Pki::new("testkit-root-exp");
    let now = OffsetDateTime::now_utc();
    let leaf = pki.leaf_with(LeafOptions {
        sans: vec!["localhost".into()],
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
        ..Default::default()
    });
    let srv = HttpServer::builder().tls(leaf).run().await.unwrap();
    let err = client::tls_connect(srv.addr(), "localhost", client(&pki, &[]))
        .await
        .expect_err("expired leaf must be rejected");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            inner,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredContext { .. } | rustls::CertificateError::Expired
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_san_and_self_signed_fail_verification() {
    let pki = Pki::new("testkit-root-san");
    let srv = HttpServer::builder()
        .tls(pki.leaf(&["other.test"]))
        .run()
        .await
        .unwrap();
    assert!(
        client::tls_connect(srv.addr(), "localhost", client(&pki, &[]))
            .await
            .is_err()
    );
    let srv = HttpServer::builder()
        .tls(Pki::self_signed_leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    assert!(
        client::tls_connect(srv.addr(), "localhost", client(&pki, &[]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn cross_signed_chain_verifies_against_old_root_only_via_cross_sign() {
    let old_root = Pki::new("testkit-old-root");
    let new_root = Pki::new("testkit-new-root");
    let cross = old_root.cross_sign(&new_root);
    assert_ne!(
        cross,
        new_root.root_der(),
        "a cross-sign is a different certificate"
    );
    let inter = new_root.intermediate("testkit-new-inter");
    let mut leaf = inter.leaf(&["localhost"]);

    // Without the cross-sign, a client trusting only the old root fails.
    let plain = HttpServer::builder().tls(leaf.clone()).run().await.unwrap();
    assert!(
        client::tls_connect(plain.addr(), "localhost", client(&old_root, &[]))
            .await
            .is_err()
    );

    // Serving leaf + intermediate + cross-sign lets it build a path to the old root.
    leaf.chain.push(cross);
    let srv = HttpServer::builder().tls(leaf).run().await.unwrap();
    client::tls_connect(srv.addr(), "localhost", client(&old_root, &[]))
        .await
        .expect("old root reaches the new hierarchy through the cross-sign");
    client::tls_connect(srv.addr(), "localhost", client(&new_root, &[]))
        .await
        .expect("new root still verifies");
}

#[tokio::test]
async fn plain_http_routes_handlers_fallback_and_body_cap() {
    let srv = HttpServer::builder()
        .route("/r", Reply::redirect(302, "/target"))
        .handler("/echo", |req| Reply::text(201, req.body.clone()))
        .async_handler("/slow", |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Reply::json(200, &serde_json::json!({"slow": true}))
        })
        .run()
        .await
        .unwrap();
    let addr = srv.addr();
    assert_eq!(srv.url("/x"), format!("http://127.0.0.1:{}/x", addr.port()));
    assert_eq!(
        srv.url_with_host("example.test", "/x"),
        format!("http://example.test:{}/x", addr.port())
    );

    let r = client::http(addr, "GET", "/r", b"").await.unwrap();
    assert_eq!(
        (r.status, r.headers["location"].to_str().unwrap()),
        (302, "/target")
    );
    let r = client::http(addr, "POST", "/echo?q=1", b"ping")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_ref()), (201, &b"ping"[..]));
    let r = client::http(addr, "GET", "/slow", b"").await.unwrap();
    assert_eq!(r.body, r#"{"slow":true}"#);
    let r = client::http(addr, "GET", "/nope", b"").await.unwrap();
    assert_eq!(r.status, 404);
    let big = vec![b'x'; (1 << 20) + 1];
    let r = client::http(addr, "POST", "/echo", &big).await.unwrap();
    assert_eq!(r.status, 413);

    assert_eq!(srv.wait_for_requests(5, Duration::from_secs(1)).await, 5);
    let reqs = srv.requests();
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].body, "ping");
    assert!(!reqs[1].tls);
    assert_eq!(reqs[1].peer.ip(), addr.ip());
    assert_eq!(reqs[1].local, addr);
    assert_eq!(srv.connection_count(), 5);
}

#[tokio::test]
async fn other_loopback_addresses_work_and_non_loopback_is_refused() {
    let srv = HttpServer::builder()
        .bind("127.0.0.2:0".parse().unwrap())
        .route("/", Reply::text(200, "two"))
        .run()
        .await
        .unwrap();
    assert_eq!(srv.addr().ip().to_string(), "127.0.0.2");
    assert_eq!(
        client::http(srv.addr(), "GET", "/", b"")
            .await
            .unwrap()
            .body,
        "two"
    );

    let err = HttpServer::builder()
        .bind("0.0.0.0:0".parse().unwrap())
        .run()
        .await
        .expect_err("non-loopback bind refused");
    assert!(err.to_string().contains("loopback"));
}

#[tokio::test]
async fn shutdown_closes_port_and_drop_stops_server() {
    let srv = HttpServer::builder().run().await.unwrap();
    let addr = srv.addr();
    srv.shutdown_and_wait().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let srv = HttpServer::builder().run().await.unwrap();
    let addr = srv.addr();
    drop(srv);
    // Abort takes effect at the task's next poll.
    let closed = within(Duration::from_millis(500), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(closed.is_some(), "port still open after drop");
}

#[tokio::test]
async fn tls12_only_config_negotiates_tls12() {
    let pki = Pki::new("testkit-root-12");
    let config = pki
        .leaf(&["localhost"])
        .server_config_with(&[&rustls::version::TLS12], vec![b"http/1.1".to_vec()]);
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls_config(config)
        .run()
        .await
        .unwrap();
    let tls = client::tls_connect(srv.addr(), "localhost", client(&pki, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn panicking_handler_gives_500_and_hung_handler_dies_with_server() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let srv = HttpServer::builder()
        .handler("/panic", |_| panic!("handler bug"))
        .async_handler("/hang", move |_| {
            let guard = SetOnDrop(Arc::clone(&flag));
            async move {
                let _guard = guard;
                std::future::pending::<Reply>().await
            }
        })
        .run()
        .await
        .unwrap();
    let addr = srv.addr();
    assert_eq!(
        client::http(addr, "GET", "/panic", b"")
            .await
            .unwrap()
            .status,
        500
    );

    let hung = tokio::spawn(async move { client::http(addr, "GET", "/hang", b"").await });
    assert_eq!(srv.wait_for_requests(2, Duration::from_secs(2)).await, 2);
    srv.shutdown_and_wait().await;
    let gone = within(Duration::from_millis(500), || async {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    assert!(gone.is_some(), "hung handler outlived the server");
    assert!(
        hung.await.unwrap().is_err(),
        "client sees the connection close"
    );
}
