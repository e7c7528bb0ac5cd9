//! Shared helpers for the controller's loopback tests: a controller on
//! `127.0.0.1:0` with a temp-dir SQLite store, a fake probe speaking real
//! gRPC through the generated client, and a tiny HTTP GET.
#![allow(dead_code)]

use std::{net::SocketAddr, path::Path, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use outpost_controller::{RunningController, config, store::now_ms};
use outpost_proto::v1::{
    Ack, Assignment, CheckResult, ControllerMessage, Hello, PhaseTimings, ProbeMessage,
    ResultBatch, controller_message::Body as CBody, probe_message::Body as PBody,
    probe_service_client::ProbeServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Probe names, regions and tokens used by every test config.
pub const PROBES: &[(&str, &str, &str)] = &[
    ("eu-west-1", "eu-west", "token-eu"),
    ("us-east-1", "us-east", "token-us"),
    ("ap-south-1", "ap-south", "token-ap"),
];
pub const ROUTING_KEY: &str = "R0UT1NGKEY0000000000000000000000";
pub const WAIT: Duration = Duration::from_secs(10);

pub fn vars() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = PROBES
        .iter()
        .enumerate()
        .map(|(i, (_, _, t))| (format!("TEST_TOKEN_{i}"), (*t).to_owned()))
        .collect();
    v.push(("TEST_PD_KEY".into(), ROUTING_KEY.into()));
    v
}

/// A config with three probes, `checks` appended verbatim, and a PagerDuty
/// sink at `pager_url` routed for every check.
pub fn config_text(db: &Path, pager_url: &str, checks: &str) -> String {
    let mut s = format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n[store]\npath = {:?}\n",
        db.display().to_string()
    );
    for (i, (name, region, _)) in PROBES.iter().enumerate() {
        s.push_str(&format!(
            "[[probes]]\nname = \"{name}\"\nregion = \"{region}\"\ntoken = {{ env = \"TEST_TOKEN_{i}\" }}\n"
        ));
    }
    s.push_str(checks);
    s.push_str(&format!(
        "\n[[sinks]]\nname = \"pagerduty\"\npagerduty = {{ routing_key = {{ env = \"TEST_PD_KEY\" }}, api_url = \"{pager_url}\" }}\n\
         [[sinks]]\nname = \"log\"\nconsole = {{}}\n\
         [[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\", \"log\"]\n"
    ));
    s
}

pub const API_CHECK: &str = "[[checks]]\nid = \"api-health\"\ninterval = \"30s\"\ntimeout = \"5s\"\nhttp = { url = \"https://api.example.net/health\" }\n";

pub async fn start(text: &str) -> RunningController {
    let cfg = config::parse(text, "test.toml", &vars()).expect("test config is valid");
    outpost_controller::start(cfg)
        .await
        .expect("controller starts")
}

pub fn token(name: &str) -> &'static str {
    PROBES
        .iter()
        .find(|p| p.0 == name)
        .map(|p| p.2)
        .expect("known probe")
}

pub fn region(name: &str) -> &'static str {
    PROBES
        .iter()
        .find(|p| p.0 == name)
        .map(|p| p.1)
        .expect("known probe")
}

/// A fake probe on a real gRPC stream.
pub struct FakeProbe {
    pub name: String,
    pub tx: mpsc::Sender<ProbeMessage>,
    pub inbound: Streaming<ControllerMessage>,
    pub seq: u64,
}

pub async fn attach(
    addr: SocketAddr,
    token: Option<&str>,
    first: Vec<ProbeMessage>,
) -> Result<(mpsc::Sender<ProbeMessage>, Streaming<ControllerMessage>), tonic::Status> {
    let mut client = ProbeServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects");
    let (tx, rx) = mpsc::channel(16);
    for m in first {
        tx.send(m).await.expect("queue message");
    }
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii"),
        );
    }
    let inbound = client.attach(req).await?.into_inner();
    Ok((tx, inbound))
}

pub fn hello(name: &str) -> ProbeMessage {
    ProbeMessage {
        body: Some(PBody::Hello(Hello {
            probe_name: name.into(),
            region: region(name).into(),
            labels: [("az".to_owned(), "a".to_owned())].into_iter().collect(),
            version: "test-1".into(),
            last_sequence: 0,
            assignment_version: 0,
        })),
    }
}

impl FakeProbe {
    /// Connects with the probe's own token and sends hello.
    pub async fn connect(addr: SocketAddr, name: &str) -> FakeProbe {
        Self::connect_from(addr, name, 0).await
    }

    /// Like `connect`, continuing sequence numbers after `seq`.
    pub async fn connect_from(addr: SocketAddr, name: &str, seq: u64) -> FakeProbe {
        let (tx, inbound) = attach(addr, Some(token(name)), vec![hello(name)])
            .await
            .expect("authenticated");
        FakeProbe {
            name: name.into(),
            tx,
            inbound,
            seq,
        }
    }

    pub async fn next(&mut self) -> ControllerMessage {
        tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .expect("controller answers in time")
            .expect("stream healthy")
            .expect("stream open")
    }

    pub async fn assignment(&mut self) -> Assignment {
        match self.next().await.body {
            Some(CBody::Assignment(a)) => a,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    pub fn result(&mut self, check: &str, ok: bool) -> CheckResult {
        self.seq += 1;
        result(&self.name, self.seq, check, ok)
    }

    /// Sends a batch and waits for its ack.
    pub async fn send(&mut self, results: Vec<CheckResult>) -> Ack {
        let msg = ProbeMessage {
            body: Some(PBody::Results(ResultBatch { results })),
        };
        self.tx.send(msg).await.expect("stream open");
        loop {
            match self.next().await.body {
                Some(CBody::Ack(a)) => return a,
                Some(CBody::Assignment(_)) => continue,
                other => panic!("expected an ack, got {other:?}"),
            }
        }
    }

    /// Sends `n` results of `check` with the same outcome, one batch each.
    pub async fn report(&mut self, check: &str, ok: bool, n: usize) {
        for _ in 0..n {
            let r = self.result(check, ok);
            let ack = self.send(vec![r]).await;
            assert_eq!(ack.stored, 1);
        }
    }
}

/// A result as a probe named `probe` would send it, started now.
pub fn result(probe: &str, seq: u64, check: &str, ok: bool) -> CheckResult {
    CheckResult {
        result_id: format!("{probe}-{seq}-{}", now_ms()),
        sequence: seq,
        check_id: check.into(),
        assignment_version: 0,
        kind: "http".into(),
        started_at_unix_ms: now_ms(),
        ok,
        failure_code: if ok { String::new() } else { "timeout".into() },
        failure_message: if ok {
            String::new()
        } else {
            "timed out after 5s waiting for first byte".into()
        },
        phases: Some(PhaseTimings {
            dns_us: 10,
            connect_us: 20,
            tls_us: 30,
            first_byte_us: 40,
            total_us: 100,
        }),
        details_json: "{\"status\":200}".into(),
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET over a fresh loopback connection: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("http connects");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// A heartbeat as a probe sends it.
pub fn heartbeat(queued: u64, dropped: u64) -> ProbeMessage {
    ProbeMessage {
        body: Some(PBody::Heartbeat(outpost_proto::v1::Heartbeat {
            sent_at_unix_ms: now_ms(),
            queued_results: queued,
            dropped_results: dropped,
            dropped_by_reason: if dropped > 0 {
                [("size".to_owned(), dropped)].into_iter().collect()
            } else {
                Default::default()
            },
        })),
    }
}

/// Sends a heartbeat every 200 ms on `tx` until the stream closes.
pub fn keep_alive(
    tx: mpsc::Sender<ProbeMessage>,
    queued: u64,
    dropped: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while tx.send(heartbeat(queued, dropped)).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
