//! The http check against real loopback servers from the test kit.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::{code, run};
use outpost_probe::{
    check::{
        Failure, FailureCode, RawCheck,
        failure::{ProtocolProblem, ServedEnd},
    },
    config::Problems,
};
use outpost_testkit::{Hostile, HttpServer, Pki, Reply};

#[tokio::test]
async fn https_target_passes_with_every_phase_timed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let srv = HttpServer::builder()
        .route("/health", Reply::text(200, "ok"))
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"api\"\nhttp = {{ url = \"{}\", ca_file = \"{}\" }}",
        srv.url("/health"),
        ca.display()
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    assert!(o.phases.dns.is_some(), "localhost is resolved");
    assert!(o.phases.connect.is_some() && o.phases.tls.is_some() && o.phases.first_byte.is_some());
    assert_eq!(o.details()["status"], 200);
    assert_eq!(o.details()["tls"]["version"], "TLSv1_3");
    // The probe identifies itself to the target.
    let req = &srv.requests()[0];
    assert_eq!(req.header("x-outpost-region"), Some("test-region"));
}

#[tokio::test]
async fn redirect_is_recorded_and_fails_a_machine_client() {
    let srv = HttpServer::builder()
        .route(
            "/ingest",
            Reply::redirect(308, "https://secure.example.test/ingest"),
        )
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"ingest\"\nhttp = {{ url = \"{}\", method = \"POST\", body = \"x\", expected_status = [200] }}",
        srv.url("/ingest")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::RedirectNotFollowed));
    assert_eq!(o.details()["status"], 308);
    assert_eq!(
        o.details()["location"],
        "https://secure.example.test/ingest"
    );
    // Expecting the redirect makes it pass.
    let o = run(&format!(
        "id = \"ingest\"\nhttp = {{ url = \"{}\", expected_status = [308] }}",
        srv.url("/ingest")
    ))
    .await;
    assert!(o.ok());
}

#[tokio::test]
async fn unexpected_status_is_its_own_code() {
    let srv = HttpServer::builder()
        .route("/", Reply::text(503, "down"))
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::UnexpectedStatus));
    assert_eq!(o.details()["status"], 503);
}

#[tokio::test]
async fn silent_target_times_out_within_the_timeout() {
    let srv = Hostile::silent().await.unwrap();
    let t = Instant::now();
    let o = run(&format!(
        "id = \"x\"\ntimeout = \"700ms\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    let took = t.elapsed();
    assert_eq!(code(&o), Some(FailureCode::Timeout));
    assert_eq!(o.details()["timeout_phase"], "first byte");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_classified() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"http://127.0.0.1:{port}/\" }}"
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::ConnectionRefused));
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_protocol_error() {
    let srv = Hostile::garbage().await.unwrap();
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::ProtocolError), "{:?}", o.result);
    // Said plainly, with what the peer sent; not hyper's "operation was canceled".
    let Err(Failure::ProtocolError {
        problem: ProtocolProblem::NotHttp { sent },
    }) = &o.result
    else {
        panic!("{:?}", o.result)
    };
    assert!(sent.starts_with("binary data starting 00 ff"), "{sent}");
    let message = o.result.as_ref().unwrap_err().to_string();
    assert!(
        message.starts_with("the peer did not answer with HTTP: it sent binary data"),
        "{message}"
    );
}

#[tokio::test]
async fn plain_http_to_a_tls_port_says_the_port_speaks_tls() {
    let pki = Pki::new("root");
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"x\"\ntimeout = \"2s\"\nhttp = {{ url = \"http://127.0.0.1:{}/\" }}",
        srv.addr().port()
    ))
    .await;
    // rustls answers a plain request with a TLS alert record.
    let f = o.result.unwrap_err();
    let Failure::ProtocolError {
        problem: ProtocolProblem::NotHttp { sent },
    } = &f
    else {
        panic!("{f:?}")
    };
    assert!(sent.contains("use an https:// URL"), "{sent}");
}

#[tokio::test]
async fn oversized_headers_and_body_are_capped() {
    let srv = Hostile::huge_headers(1024 * 1024).await.unwrap();
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::HeadersTooLarge),
        "{:?}",
        o.result
    );

    let srv = Hostile::endless_body(64 * 1024 * 1024).await.unwrap();
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::BodyTooLarge), "{:?}", o.result);
}

#[tokio::test]
async fn untrusted_and_misnamed_certificates_fail_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls(pki.leaf(&["other.test"]))
        .run()
        .await
        .unwrap();
    // Mozilla roots do not know the test root.
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url_with_host("localhost", "/")
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::TlsUntrustedRoot),
        "{:?}",
        o.result
    );
    // Trusted root, wrong name.
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\", ca_file = \"{}\" }}",
        srv.url_with_host("localhost", "/"),
        ca.display()
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::TlsNameMismatch),
        "{:?}",
        o.result
    );
}

/// Served: leaf ← expired intermediate ← Root C. With only Root Z trusted no
/// path exists whatever the dates: untrusted, not expired. With Root C
/// trusted, the expiry is what fails.
#[tokio::test]
async fn an_https_chain_with_no_path_to_the_roots_is_untrusted_before_expired() {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let root_c = Pki::new("Root C");
    let inter = root_c.intermediate_with(
        "Expired Inter",
        now - time::Duration::days(400),
        now - time::Duration::days(10),
    );
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls(inter.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    let other = Pki::new("Root Z");
    let z = dir.path().join("z");
    std::fs::create_dir(&z).unwrap();
    let check = |ca: &std::path::Path| {
        format!(
            "id = \"x\"\nhttp = {{ url = \"{}\", ca_file = \"{}\" }}",
            srv.url_with_host("localhost", "/"),
            ca.display()
        )
    };
    let o = run(&check(&other.write_root_pem(&z).unwrap())).await;
    let f = o.result.clone().unwrap_err();
    let Failure::TlsUntrustedRoot {
        served_end: Some(ServedEnd::MissingIssuer { issuer, .. }),
        no_path: true,
        ..
    } = &f
    else {
        panic!("{f:?}")
    };
    assert!(issuer.contains("Root C"), "{issuer}");
    assert_eq!(o.details()["tls"]["error"], "tls_untrusted_root");
    // Mozilla trusts none of it either.
    let o = run(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url_with_host("localhost", "/")
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::TlsUntrustedRoot),
        "{:?}",
        o.result
    );
    // The right root: now the expired intermediate is the problem.
    let o = run(&check(&root_c.write_root_pem(dir.path()).unwrap())).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::TlsCertExpired),
        "{:?}",
        o.result
    );
}

#[tokio::test]
async fn one_broken_backend_of_two_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let leaf = pki.leaf(&["pair.test"]);
    let blue = HttpServer::builder()
        .route("/", Reply::text(502, "bad gateway"))
        .tls(leaf.clone())
        .bind("127.0.0.2:0".parse().unwrap())
        .run()
        .await
        .unwrap();
    let port = blue.addr().port();
    let green = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls(leaf)
        .bind(format!("127.0.0.3:{port}").parse().unwrap())
        .run()
        .await
        .unwrap();
    let check = |passing: &str| {
        format!(
            "id = \"pair\"\n[http]\nurl = \"https://pair.test:{port}/\"\naddresses = \"all\"\npassing = \"{passing}\"\nresolve_to = [\"127.0.0.2\", \"127.0.0.3\"]\nca_file = \"{}\"\n",
            ca.display()
        )
    };
    let o = run(&check("all")).await;
    let f = o.result.clone().unwrap_err();
    // Half the pool down is not the service down: a code of its own, the
    // address's own code kept in the failure and the details.
    assert_eq!(f.code(), FailureCode::BackendsPartiallyFailing);
    let Failure::Backends { total: 2, failing } = &f else {
        panic!("{f:?}")
    };
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].address, format!("127.0.0.2:{port}"));
    assert_eq!(
        o.details()["addresses"][0]["failure_code"],
        "unexpected_status"
    );
    assert!(matches!(
        failing[0].failure,
        Failure::UnexpectedStatus { got: 502, .. }
    ));
    assert_eq!(o.details()["addresses_failing"], 1);
    assert_eq!(o.details()["addresses"][1]["status"], 200);
    assert_shape_of_fixture(&o.details(), "http-fan-out-one-backend-failing.json");
    // Both backends saw the name as SNI/Host.
    assert_eq!(
        green.requests()[0].header("host"),
        Some(format!("pair.test:{port}").as_str())
    );

    // With passing = "any", one healthy backend is enough.
    let o = run(&check("any")).await;
    assert!(o.ok(), "{:?}", o.result);
}

#[tokio::test]
async fn every_backend_failing_alike_keeps_their_code() {
    let blue = HttpServer::builder()
        .route("/", Reply::text(503, "down"))
        .bind("127.0.0.2:0".parse().unwrap())
        .run()
        .await
        .unwrap();
    let port = blue.addr().port();
    let _green = HttpServer::builder()
        .route("/", Reply::text(503, "down"))
        .bind(format!("127.0.0.3:{port}").parse().unwrap())
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"pair\"\n[http]\nurl = \"http://pair.test:{port}/\"\naddresses = \"all\"\nresolve_to = [\"127.0.0.2\", \"127.0.0.3\"]\n"
    ))
    .await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::UnexpectedStatus, "{f}");
    let Failure::Backends { total: 2, failing } = &f else {
        panic!("{f:?}")
    };
    assert_eq!(failing.len(), 2);
    assert_eq!(o.details()["addresses_failing"], 2);
}

#[test]
fn misspelled_check_key_names_its_path() {
    let err = toml::from_str::<RawCheck>(
        "id = \"x\"\nhttp = { url = \"http://a\", expected_stauts = [200] }",
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected_stauts"));
    let mut p = Problems::default();
    let raw: RawCheck = toml::from_str(
        "id = \"Bad Id\"\ninterval = \"1s\"\ntimeout = \"5s\"\nhttp = { url = \"ftp://x\" }",
    )
    .unwrap();
    assert!(raw.validate("checks[0]", &mut p).is_none());
    let text = format!("{p:?}");
    for path in ["checks[0].id", "checks[0].timeout", "checks[0].http.url"] {
        assert!(text.contains(path), "{path} missing in {text}");
    }
}

#[tokio::test]
async fn a_named_resolver_feeds_address_fan_out_and_follows_a_cname_flip() {
    use outpost_testkit::{DnsServer, RecordType};
    let blue = HttpServer::builder()
        .route("/", Reply::text(502, "bad gateway"))
        .bind("127.0.0.2:0".parse().unwrap())
        .run()
        .await
        .unwrap();
    let port = blue.addr().port();
    let green = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .bind(format!("127.0.0.3:{port}").parse().unwrap())
        .run()
        .await
        .unwrap();
    let dns = DnsServer::start().await.unwrap();
    dns.set_records("blue.lb.test.", RecordType::A, &[(30, "127.0.0.2")])
        .unwrap();
    dns.set_records("green.lb.test.", RecordType::A, &[(30, "127.0.0.3")])
        .unwrap();
    dns.set_records(
        "pair.lb.test.",
        RecordType::A,
        &[(30, "127.0.0.2"), (30, "127.0.0.3")],
    )
    .unwrap();
    dns.set_cname("app.lb.test.", "blue.lb.test.", 5).unwrap();

    // Both A records, each address requested separately.
    let pair = format!(
        "id = \"pair\"\n[http]\nurl = \"http://pair.lb.test:{port}/\"\naddresses = \"all\"\nresolver = \"{}\"\n",
        dns.udp_url()
    );
    let o = run(&pair).await;
    assert_eq!(o.details()["addresses_total"], 2, "{}", o.details());
    assert_eq!(o.details()["addresses_failing"], 1);
    let Err(Failure::Backends { failing, .. }) = &o.result else {
        panic!("{:?}", o.result)
    };
    assert_eq!(failing[0].address, format!("127.0.0.2:{port}"));

    // The app name follows its CNAME: blue (502), then green after the flip.
    let app = format!(
        "id = \"app\"\nhttp = {{ url = \"http://app.lb.test:{port}/\", resolver = \"{}\" }}\n",
        dns.udp_url()
    );
    let o = run(&app).await;
    assert_eq!(code(&o), Some(FailureCode::UnexpectedStatus));
    assert!(o.phases.dns.is_some());
    dns.set_cname("app.lb.test.", "green.lb.test.", 5).unwrap();
    let before = green.request_count();
    let o = run(&app).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(green.request_count(), before + 1);

    // An unknown name through the named resolver is its DNS code.
    let missing = format!(
        "id = \"m\"\nhttp = {{ url = \"http://missing.lb.test/\", resolver = \"{}\" }}\n",
        dns.udp_url()
    );
    let o = run(&missing).await;
    assert_eq!(code(&o), Some(FailureCode::DnsNxdomain), "{:?}", o.result);
}

/// The shape of a `details` value: every key path, array elements merged.
fn shape(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn walk(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = format!("{at}.{k}");
                    walk(v, &p, out);
                    out.insert(p);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, &format!("{at}[]"), out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// A run today has the shape of the same scenario's run captured (in
/// `tests/fixtures/details/`) before the details were typed values.
fn assert_shape_of_fixture(details: &serde_json::Value, fixture: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/details")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (got, want) = (shape(details), shape(&want));
    assert_eq!(
        got,
        want,
        "details differ in shape from {fixture}: new {:?}, gone {:?}",
        got.difference(&want).collect::<Vec<_>>(),
        want.difference(&got).collect::<Vec<_>>()
    );
}
