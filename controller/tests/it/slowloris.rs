//! Connection hygiene under a slowloris attack, against a real controller on
//! loopback: 1,000 attacker sockets (the test kit's [`Attacker`]) hold both
//! listeners — idle TLS handshakes over HTTPS and TLS gRPC, half-sent
//! request heads and HTTP/2 prefaces over plain HTTP and gRPC — while a
//! probe still connects and the dashboard still answers. Bounds are
//! generous (a loaded 2-core machine); the benchmark (`outpost-bench
//! slowloris`) prints the figures.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use outpost_testkit::{Attacker, Pki, Slow, client, slowloris::raise_open_files};

use crate::support::{
    ANONYMOUS_VIEWER, API_CHECK, WAIT, config_text, connect, eventually, hello, start, token,
};

/// Attacker sockets per listener.
const PER_LISTENER: usize = 500;
/// A probe's connect (to its first assignment) and each dashboard request
/// must finish within this during the attack.
const BOUND: Duration = Duration::from_secs(10);
const VIEWER_TOKEN: &str = "slowloris-viewer-token-0123456789abcdef";

fn limits_and_token() -> String {
    // Short handshake and head timeouts, so the test also sees them fire.
    "[server.limits]\nhttp_max_connections = 128\ngrpc_max_connections = 128\n\
     tls_handshake_timeout = \"3s\"\nheader_read_timeout = \"3s\"\n"
        .to_owned()
}

fn with_auth(text: String) -> String {
    format!(
        "{text}[[auth.tokens]]\nname = \"dash\"\nrole = \"viewer\"\ntoken = {{ env = \"TEST_DASH\" }}\n"
    )
}

/// Waits until every attacker socket has connected at least once, then one
/// more reconnect period, and returns the sockets the attackers hold
/// (connected, as far as they know): the caps bound it, since at a cap
/// each new connection sheds the oldest idle one.
async fn attack_under_way(attackers: &[&Attacker], sockets: usize) -> usize {
    let connects = || attackers.iter().map(|a| a.connects()).sum::<u64>();
    let ok = tokio::time::timeout(Duration::from_secs(30), async {
        while connects() < sockets as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "attackers connected only {} times", connects());
    tokio::time::sleep(outpost_testkit::slowloris::RECONNECT_AFTER * 2).await;
    attackers.iter().map(|a| a.held()).sum()
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99).div_ceil(100).saturating_sub(1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_listeners_serve_probes_and_pages_while_1000_slow_sockets_hold_them() {
    let nofile = raise_open_files(8192);
    assert!(
        nofile >= 4096,
        "RLIMIT_NOFILE {nofile}: raise the hard limit to run this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", API_CHECK)
        .replacen(ANONYMOUS_VIEWER, "", 1)
        .replacen("[store]", &format!("{}[store]", limits_and_token()), 1);
    let ctl = start(&text).await;
    let (http, grpc) = (ctl.http_addr(), ctl.grpc_addr());

    let web = Attacker::start(http, Slow::HttpHeaders, PER_LISTENER);
    let rpc = Attacker::start(grpc, Slow::H2Preface, PER_LISTENER);
    let holding = attack_under_way(&[&web, &rpc], 2 * PER_LISTENER).await;

    // A probe still connects and gets its assignment.
    let t = Instant::now();
    let mut probe = tokio::time::timeout(BOUND, connect(grpc, "eu-west-1"))
        .await
        .expect("the probe connects during the attack");
    probe.assignment().await;
    let probe_connect = t.elapsed();
    assert!(probe_connect < BOUND, "{probe_connect:?}");

    // The (unauthenticated) dashboard still answers, every time.
    let mut took = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let resp = tokio::time::timeout(BOUND, client::get(http, "/livez"))
            .await
            .expect("the dashboard answers during the attack")
            .expect("request");
        assert_eq!(resp.status, 200);
        took.push(t.elapsed());
    }
    let m = ctl.controller().metrics();
    // The caps held, and the attack was seen for what it is.
    assert!(m.get("outpost_connections_open", &[("listener", "http")]) <= 128.0);
    assert!(m.get("outpost_connections_open", &[("listener", "grpc")]) <= 128.0);
    let shed = |l: &str| {
        m.get(
            "outpost_connections_closed_total",
            &[("listener", l), ("reason", "shed")],
        )
    };
    assert!(shed("http") > 0.0 && shed("grpc") > 0.0);
    eprintln!(
        "plaintext: attacker sockets held {holding}, probe connect {probe_connect:?}, /livez p99 {:?}",
        p99(took)
    );
    // Heads that never end are cut at header_read_timeout.
    eventually("slow request heads cut", WAIT, || async {
        m.get(
            "outpost_connections_closed_total",
            &[("listener", "http"), ("reason", "first_request_timeout")],
        ) > 0.0
            || web.closed_by_server() > PER_LISTENER as u64
    })
    .await;
    // The probe's stream was never shed: it still reports.
    let r = probe.result("api-health", true);
    assert_eq!(probe.send(vec![r]).await.stored, 1);
    web.stop().await;
    rpc.stop().await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_serve_probes_and_pages_while_1000_idle_handshakes_hold_them() {
    let nofile = raise_open_files(8192);
    assert!(
        nofile >= 4096,
        "RLIMIT_NOFILE {nofile}: raise the hard limit to run this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("outpost-test-root");
    let (cert, key) = pki
        .leaf(&["localhost"])
        .write_pem(dir.path(), "controller")
        .unwrap();
    let files = format!(
        "{{ cert_file = {:?}, key_file = {:?} }}",
        cert.display().to_string(),
        key.display().to_string()
    );
    let text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", API_CHECK)
        .replacen(
            ANONYMOUS_VIEWER,
            &format!("tls = {files}\nhttp_tls = {files}\n"),
            1,
        )
        .replacen("[store]", &format!("{}[store]", limits_and_token()), 1);
    let text = with_auth(text);
    let cfg = outpost_controller::config::parse(&text, "t.toml", &vars_with_viewer()).unwrap();
    let ctl = outpost_controller::start(cfg).await.unwrap();
    let (http, grpc) = (ctl.http_addr(), ctl.grpc_addr());

    let web = Attacker::start(http, Slow::TlsHandshake, PER_LISTENER);
    let rpc = Attacker::start(grpc, Slow::TlsHandshake, PER_LISTENER);
    let holding = attack_under_way(&[&web, &rpc], 2 * PER_LISTENER).await;

    let t = Instant::now();
    let (tx, mut inbound) = tokio::time::timeout(BOUND, tls_probe(&pki, grpc))
        .await
        .expect("the probe connects over TLS during the attack");
    let first = tokio::time::timeout(BOUND, inbound.message())
        .await
        .expect("assignment in time")
        .expect("stream")
        .expect("a message");
    assert!(first.body.is_some());
    let probe_connect = t.elapsed();

    let mut took = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let resp = tokio::time::timeout(BOUND, dashboard(&pki, http))
            .await
            .expect("the dashboard answers during the attack");
        assert_eq!(resp.status, 200, "{}", resp.text());
        took.push(t.elapsed());
    }
    let m = ctl.controller().metrics();
    assert!(m.get("outpost_connections_open", &[("listener", "http")]) <= 128.0);
    assert!(m.get("outpost_connections_open", &[("listener", "grpc")]) <= 128.0);
    eprintln!(
        "tls: attacker sockets held {holding}, probe connect {probe_connect:?}, dashboard p99 {:?}",
        p99(took)
    );
    // Handshakes that never finish are cut at tls_handshake_timeout (or shed first).
    eventually("idle handshakes cut", WAIT, || async {
        ["http", "grpc"].iter().all(|l| {
            m.get(
                "outpost_connections_closed_total",
                &[("listener", l), ("reason", "handshake_timeout")],
            ) + m.get(
                "outpost_connections_closed_total",
                &[("listener", l), ("reason", "shed")],
            ) > 0.0
        })
    })
    .await;
    web.stop().await;
    rpc.stop().await;
    drop((tx, inbound));
    ctl.shutdown().await;
}

fn vars_with_viewer() -> Vec<(String, String)> {
    let mut v = crate::support::vars();
    v.push(("TEST_DASH".into(), VIEWER_TOKEN.into()));
    v
}

/// `GET /api/v1/checks` over a fresh HTTPS connection with the viewer
/// token, tried again (as a browser's reload would) when the connection
/// is shed before its request: the listener sheds the oldest connection
/// that has sent nothing yet, and under a handshake flood on a loaded
/// machine a fresh one can be the oldest before its handshake ends.
async fn dashboard(pki: &Pki, http: SocketAddr) -> client::Response {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let mut cfg = pki.client_config();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let io = match client::tls_connect(http, "localhost", cfg).await {
            Ok(io) => io,
            Err(e) => {
                last = format!("TLS to the dashboard: {e:#}");
                continue;
            }
        };
        let auth = format!("Bearer {VIEWER_TOKEN}");
        match client::request_with(
            io,
            false,
            "GET",
            "localhost",
            "/api/v1/checks",
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
        {
            Ok(resp) => return resp,
            Err(e) => last = format!("request: {e:#}"),
        }
    }
    panic!("no answer in {ATTEMPTS} attempts: {last}");
}

/// Connections a client opens before the test gives up (each shed one is
/// replaced at once; a real probe reconnects with backoff).
const ATTEMPTS: usize = 5;

/// Attaches as `eu-west-1` over TLS gRPC, reconnecting (as the probe does)
/// when the connection is shed during its handshake; the sender keeps the
/// stream open.
async fn tls_probe(
    pki: &Pki,
    grpc: SocketAddr,
) -> (
    tokio::sync::mpsc::Sender<outpost_proto::v1::ProbeMessage>,
    tonic::Streaming<outpost_proto::v1::ControllerMessage>,
) {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match try_tls_probe(pki, grpc).await {
            Ok(attached) => return attached,
            Err(e) => last = e,
        }
    }
    panic!("not attached over TLS in {ATTEMPTS} attempts: {last}");
}

async fn try_tls_probe(
    pki: &Pki,
    grpc: SocketAddr,
) -> Result<
    (
        tokio::sync::mpsc::Sender<outpost_proto::v1::ProbeMessage>,
        tonic::Streaming<outpost_proto::v1::ControllerMessage>,
    ),
    String,
> {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pki.root_pem()))
        .domain_name("localhost");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", grpc.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("TLS connect: {e}"))?;
    let mut client = outpost_proto::v1::probe_service_client::ProbeServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello("eu-west-1")).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token("eu-west-1")).parse().unwrap(),
    );
    let inbound = client
        .attach(req)
        .await
        .map_err(|e| format!("attach: {e}"))?
        .into_inner();
    Ok((tx, inbound))
}

/// The case: under a 256-descriptor limit the old controller logged
/// `Too many open files` every second and probes could not connect. Now the
/// caps are fitted to the limit (a warning says so, once), 600 slow sockets
/// leave room for a probe and the page, and no descriptor-shortage line is
/// logged more than once per period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_256_descriptor_limit_probes_connect_and_logs_stay_quiet() {
    raise_open_files(4096);
    let dir = tempfile::tempdir().unwrap();
    let grpc = SocketAddr::from(([127, 0, 0, 1], outpost_testkit::free_port().unwrap()));
    let http = SocketAddr::from(([127, 0, 0, 1], outpost_testkit::free_port().unwrap()));
    let text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", API_CHECK)
        .replacen(
            "grpc_listen = \"127.0.0.1:0\"",
            &format!("grpc_listen = \"{grpc}\""),
            1,
        )
        .replacen(
            "http_listen = \"127.0.0.1:0\"",
            &format!("http_listen = \"{http}\""),
            1,
        );
    let cfg = dir.path().join("controller.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("stderr.log");
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=256:256", "--"])
        .arg(env!("CARGO_BIN_EXE_outpost-controller"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("OUTPOST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in crate::support::vars() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("prlimit (util-linux) runs the controller");
    eventually("the controller listens", WAIT, || async {
        client::get(http, "/livez")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;

    let web = Attacker::start(http, Slow::HttpHeaders, 300);
    let rpc = Attacker::start(grpc, Slow::H2Preface, 300);
    attack_under_way(&[&web, &rpc], 600).await;
    let t = Instant::now();
    let mut probe = tokio::time::timeout(BOUND, connect(grpc, "eu-west-1"))
        .await
        .expect("the probe connects under the 256-descriptor limit");
    probe.assignment().await;
    let probe_connect = t.elapsed();
    for _ in 0..10 {
        let resp = tokio::time::timeout(BOUND, client::get(http, "/livez"))
            .await
            .expect("the page answers")
            .expect("request");
        assert_eq!(resp.status, 200);
    }
    // Three more seconds of attack, then read what the controller said.
    tokio::time::sleep(Duration::from_secs(3)).await;
    web.stop().await;
    rpc.stop().await;
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let fitted = stderr.matches("exceed the open-files limit").count();
    assert_eq!(fitted, 1, "{stderr}");
    let shortage = stderr
        .lines()
        .filter(|l| l.contains("out of file descriptors") || l.contains("Too many open files"))
        .count();
    // At most one line per 10 s per listener over this ≤ 40 s test.
    assert!(
        shortage <= 8,
        "{shortage} descriptor-shortage lines:\n{stderr}"
    );
    eprintln!("256 descriptors: probe connect {probe_connect:?}, {shortage} shortage lines");
}
