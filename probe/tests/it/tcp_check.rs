//! The tcp check against real loopback servers from the test kit: banners
//! and scripts (SMTP, Redis, SSH), TLS from the first byte, and peers that
//! stay silent or stream garbage forever.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::{code, run};
use outpost_probe::{
    check::{Failure, FailureCode, RawCheck, failure::ReadEnd},
    config::Problems,
};
use outpost_testkit::{Pki, TcpServer};

fn check(port: u16, rest: &str) -> String {
    format!("id = \"t\"\ntimeout = \"2s\"\n[tcp]\nhost = \"127.0.0.1\"\nport = {port}\n{rest}\n")
}

#[tokio::test]
async fn an_smtp_conversation_passes_step_by_step() {
    let srv = TcpServer::smtp().run().await.unwrap();
    let o = run(&check(
        srv.addr().port(),
        r#"script = [
  { expect = "^220 " },
  { send = "EHLO outpost.test\r\n" },
  { expect = "(?m)^250 " },
  { send = "QUIT\r\n" },
  { expect = "^221 " },
]"#,
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    let d = o.details();
    assert_eq!(d["banner"], "220 mail.test ESMTP outpost-testkit");
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    assert!(steps.iter().all(|s| s["ok"] == true), "{d}");
    assert_eq!(steps[1]["action"], "send");
    assert_eq!(steps[1]["sent_bytes"], 19);
    // The EHLO reply is multi-line: the match consumed its last line whole.
    assert!(
        steps[2]["received"]
            .as_str()
            .unwrap()
            .ends_with("250 HELP\\r\\n"),
        "{}",
        steps[2]
    );
    assert!(o.phases.connect.is_some() && o.phases.first_byte.is_some());
    assert_eq!(srv.lines(), ["EHLO outpost.test", "QUIT"]);
}

#[tokio::test]
async fn redis_ping_and_an_ssh_banner_use_the_short_form() {
    let redis = TcpServer::redis().run().await.unwrap();
    let o = run(&check(
        redis.addr().port(),
        "send = \"PING\\r\\n\"\nexpect = \"^\\\\+PONG\\r\\n\"",
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["steps"][1]["received"], "+PONG\\r\\n");

    let ssh = TcpServer::ssh().run().await.unwrap();
    let o = run(&check(ssh.addr().port(), "expect = \"^SSH-2\\\\.0-\"")).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(
        o.details()["banner"],
        "SSH-2.0-OpenSSH_9.2p1 outpost-testkit"
    );
    // Connect only: no script, no read.
    let o = run(&check(ssh.addr().port(), "")).await;
    assert!(o.ok(), "{:?}", o.result);
    assert!(o.details().get("steps").is_none());
}

#[tokio::test]
async fn a_wrong_reply_names_what_came_and_how_the_read_ended() {
    let redis = TcpServer::redis().run().await.unwrap();
    // The peer answers something else and keeps the connection open: the
    // deadline ends the read, and the reply is named.
    let started = Instant::now();
    let o = run(&format!(
        "id = \"t\"\ntimeout = \"800ms\"\n[tcp]\nhost = \"127.0.0.1\"\nport = {}\nsend = \"GET x\\r\\n\"\nexpect = \"^\\\\+PONG\"",
        redis.addr().port()
    ))
    .await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    let Err(Failure::TcpExpectMismatch {
        step: 2,
        received,
        end: ReadEnd::Deadline { .. },
        ..
    }) = &o.result
    else {
        panic!("{:?}", o.result)
    };
    assert_eq!(received, "-ERR unknown command\\r\\n");
    assert_eq!(
        o.details()["steps"][1]["failure_code"],
        "tcp_expect_mismatch"
    );

    // The peer closes first.
    let o = run(&check(
        redis.addr().port(),
        "send = \"QUIT\\r\\n\"\nexpect = \"^\\\\+PONG\"",
    ))
    .await;
    assert!(
        matches!(
            &o.result,
            Err(Failure::TcpExpectMismatch {
                end: ReadEnd::Closed,
                received_bytes: 5,
                ..
            })
        ),
        "{:?}",
        o.result
    );
    let message = o.result.unwrap_err().to_string();
    assert!(
        message.contains("closed the connection after 5 bytes") && message.contains("+OK"),
        "{message}"
    );
}

#[tokio::test]
async fn a_silent_peer_times_out_waiting_for_the_first_byte() {
    let srv = TcpServer::silent().run().await.unwrap();
    let started = Instant::now();
    let o = run(&format!(
        "id = \"t\"\ntimeout = \"700ms\"\n[tcp]\nhost = \"127.0.0.1\"\nport = {}\nexpect = \"^220 \"",
        srv.addr().port()
    ))
    .await;
    let took = started.elapsed();
    assert_eq!(code(&o), Some(FailureCode::Timeout), "{:?}", o.result);
    assert_eq!(o.details()["timeout_phase"], "first byte");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1400),
        "{took:?}"
    );
    assert_eq!(srv.connection_count(), 1);
}

#[tokio::test]
async fn garbage_forever_fails_at_the_read_cap_in_bounded_memory() {
    let srv = TcpServer::garbage(4 * 1024 * 1024).run().await.unwrap();
    let started = Instant::now();
    let o = run(&format!(
        "id = \"t\"\ntimeout = \"5s\"\n[tcp]\nhost = \"127.0.0.1\"\nport = {}\nexpect = \"^220 \"\nmax_read = \"16KiB\"",
        srv.addr().port()
    ))
    .await;
    // The cap, not the deadline, ends it: 16 KiB at 4 MiB/s.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let Err(Failure::TcpExpectMismatch {
        end: ReadEnd::Limit { max_read },
        received_bytes,
        received,
        ..
    }) = &o.result
    else {
        panic!("{:?}", o.result)
    };
    assert_eq!((*max_read, *received_bytes), (16 * 1024, 16 * 1024));
    // The excerpt is escaped and clipped.
    assert!(
        received.ends_with('…') && received.len() < 1024,
        "{received}"
    );
    assert_eq!(o.details()["steps"][0]["received_bytes"], 16 * 1024);
}

#[tokio::test]
async fn implicit_tls_is_verified_like_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let srv = TcpServer::smtp()
        .tls(pki.leaf(&["mail.test"]))
        .run()
        .await
        .unwrap();
    let port = srv.addr().port();
    let o = run(&format!(
        "id = \"t\"\n[tcp]\nhost = \"mail.test\"\naddress = \"127.0.0.1\"\nport = {port}\nexpect = \"^220 \"\ntls = {{ ca_file = \"{}\" }}",
        ca.display()
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["tls"]["verified"], true);
    assert!(o.phases.tls.is_some());
    // The bundled roots do not know the test root.
    let o = run(&format!(
        "id = \"t\"\n[tcp]\nhost = \"mail.test\"\naddress = \"127.0.0.1\"\nport = {port}\ntls = {{}}"
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::TlsUntrustedRoot),
        "{:?}",
        o.result
    );
    assert_eq!(o.details()["tls"]["error"], "tls_untrusted_root");
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let port = outpost_testkit::free_port().unwrap();
    let o = run(&check(port, "expect = \"^220\"")).await;
    assert_eq!(code(&o), Some(FailureCode::ConnectionRefused));
}

#[test]
fn invalid_tcp_configs_name_the_offending_key() {
    let cases = [
        ("host = \"a.test\"", "checks[0].tcp.port"),
        ("host = \"a b\"\nport = 1", "checks[0].tcp.host"),
        (
            "host = \"a.test\"\nport = 1\nexpect = \"(\"",
            "checks[0].tcp.expect",
        ),
        (
            "host = \"a.test\"\nport = 1\nsend = \"x\"\nscript = [{ expect = \"y\" }]",
            "checks[0].tcp",
        ),
        (
            "host = \"a.test\"\nport = 1\nscript = [{ expect = \"y\", send = \"x\" }]",
            "checks[0].tcp.script[0]",
        ),
        (
            "host = \"a.test\"\nport = 1\nmax_read = \"2MiB\"",
            "checks[0].tcp.max_read",
        ),
        (
            "host = \"a.test\"\nport = 1\ntls = { ca_file = \"/nonexistent.pem\" }",
            "checks[0].tcp.tls.ca_file",
        ),
    ];
    for (body, path) in cases {
        let raw: RawCheck = toml::from_str(&format!("id = \"t\"\n[tcp]\n{body}\n")).unwrap();
        let mut p = Problems::default();
        assert!(raw.validate("checks[0]", &mut p).is_none(), "{body}");
        let text = format!("{p:?}");
        assert!(text.contains(&format!("\"{path}\"")), "{body}: {text}");
    }
}
