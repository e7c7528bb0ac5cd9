//! A fake probe: a real `outpost.v1` gRPC client (the generated one, over a
//! real HTTP/2 connection) that a test drives message by message, for tests
//! of the controller's ingest, alerting and pages without running checks.
//!
//! ```no_run
//! # async fn demo(grpc: std::net::SocketAddr) {
//! use outpost_testkit::FakeProbe;
//! let mut p = FakeProbe::connect(grpc, "eu-west-1", "eu-west", "token-eu").await;
//! let assignment = p.assignment().await; // the controller speaks first
//! let r = p.result("api-health", false);  // sequence numbers are counted for you
//! let ack = p.send(vec![r]).await;        // waits for the ack
//! assert_eq!(ack.stored, 1);
//! # let _ = assignment; }
//! ```
//!
//! [`attach`] is the raw call, for tests that expect the controller to refuse
//! (bad token, wrong name) and for clients that handle errors themselves
//! (the benchmark). Everything else panics with a message naming what did
//! not happen: these helpers are assertions.

use std::{net::SocketAddr, time::Duration};

use outpost_proto::v1::{
    Ack, Assignment, CheckResult, ControllerMessage, Heartbeat, Hello, PhaseTimings, ProbeMessage,
    ResultBatch, controller_message::Body as CBody, probe_message::Body as PBody,
    probe_service_client::ProbeServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// How long [`FakeProbe`] waits for the controller's next message.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A fake probe on an open `Attach` stream.
#[derive(Debug)]
pub struct FakeProbe {
    /// Probe name, as sent in hello and in result ids.
    pub name: String,
    /// Messages to the controller.
    pub tx: mpsc::Sender<ProbeMessage>,
    /// Messages from the controller.
    pub inbound: Streaming<ControllerMessage>,
    /// Sequence number of the last result built by [`FakeProbe::result`];
    /// set it to continue a previous stream's numbering.
    pub seq: u64,
    /// Check ids of the `RunNow` hints received so far, in order (a real
    /// probe would run them at once; tests answer with results).
    pub run_now: Vec<String>,
}

/// Opens `Attach` on the controller at `addr` (plaintext gRPC) with
/// `authorization: Bearer <token>` (none without a token), queueing `first`
/// before the stream starts. Returns the controller's refusal as its status;
/// a connection failure is `Unavailable`.
pub async fn attach(
    addr: SocketAddr,
    token: Option<&str>,
    first: Vec<ProbeMessage>,
) -> Result<(mpsc::Sender<ProbeMessage>, Streaming<ControllerMessage>), tonic::Status> {
    let mut client = ProbeServiceClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot connect to {addr}: {e}")))?;
    let (tx, rx) = mpsc::channel(16.max(first.len()));
    for m in first {
        // The receiver is alive (held by `rx`) and the channel has room for all of `first`.
        tx.try_send(m)
            .map_err(|e| tonic::Status::internal(format!("queueing a first message: {e}")))?;
    }
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(t) = token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| tonic::Status::invalid_argument("the token is not ASCII"))?;
        req.metadata_mut().insert("authorization", value);
    }
    let inbound = client.attach(req).await?.into_inner();
    Ok((tx, inbound))
}

/// The hello a probe sends first: `name`, `region`, label `az = "a"`,
/// version `test-1`, nothing acknowledged yet.
pub fn hello(name: &str, region: &str) -> ProbeMessage {
    ProbeMessage {
        body: Some(PBody::Hello(Hello {
            probe_name: name.into(),
            region: region.into(),
            labels: [("az".to_owned(), "a".to_owned())].into_iter().collect(),
            version: "test-1".into(),
            last_sequence: 0,
            assignment_version: 0,
            heartbeat_interval_ms: 0,
        })),
    }
}

/// A heartbeat reporting `queued` results waiting and `dropped` dropped (all
/// for reason `size`).
pub fn heartbeat(queued: u64, dropped: u64) -> ProbeMessage {
    ProbeMessage {
        body: Some(PBody::Heartbeat(Heartbeat {
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

/// An http result as probe `probe` would send it, started now: passed, or
/// failed with `timeout`.
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

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl FakeProbe {
    /// Attaches as `name` in `region` with `token` and sends hello.
    ///
    /// # Panics
    /// When the controller refuses the stream.
    pub async fn connect(addr: SocketAddr, name: &str, region: &str, token: &str) -> FakeProbe {
        let (tx, inbound) = match attach(addr, Some(token), vec![hello(name, region)]).await {
            Ok(stream) => stream,
            Err(status) => panic!("probe {name} was refused: {status:?}"),
        };
        FakeProbe {
            name: name.into(),
            tx,
            inbound,
            seq: 0,
            run_now: Vec::new(),
        }
    }

    /// The controller's next message.
    ///
    /// # Panics
    /// After [`REPLY_TIMEOUT`] without one, or when the stream fails or ends.
    pub async fn next(&mut self) -> ControllerMessage {
        match tokio::time::timeout(REPLY_TIMEOUT, self.inbound.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => panic!("probe {}: the controller closed the stream", self.name),
            Ok(Err(status)) => panic!("probe {}: the stream failed: {status:?}", self.name),
            Err(_) => panic!(
                "probe {}: no message from the controller within {REPLY_TIMEOUT:?}",
                self.name
            ),
        }
    }

    /// The next message, which must be an assignment.
    pub async fn assignment(&mut self) -> Assignment {
        match self.next().await.body {
            Some(CBody::Assignment(a)) => a,
            other => panic!("probe {}: expected an assignment, got {other:?}", self.name),
        }
    }

    /// A result of `check` with the next sequence number.
    pub fn result(&mut self, check: &str, ok: bool) -> CheckResult {
        self.seq += 1;
        result(&self.name, self.seq, check, ok)
    }

    /// Sends one batch and waits for its ack (assignments pushed meanwhile
    /// are skipped, `RunNow` hints recorded in [`FakeProbe::run_now`]).
    pub async fn send(&mut self, results: Vec<CheckResult>) -> Ack {
        let msg = ProbeMessage {
            body: Some(PBody::Results(ResultBatch { results })),
        };
        if self.tx.send(msg).await.is_err() {
            panic!("probe {}: the stream is closed", self.name);
        }
        loop {
            match self.next().await.body {
                Some(CBody::Ack(a)) => return a,
                Some(CBody::Assignment(_)) => continue,
                Some(CBody::RunNow(r)) => self.run_now.push(r.check_id),
                other => panic!("probe {}: expected an ack, got {other:?}", self.name),
            }
        }
    }

    /// Waits for the next `RunNow` hint (acks and assignments in between
    /// are skipped) and returns its check id.
    pub async fn next_run_now(&mut self) -> String {
        loop {
            match self.next().await.body {
                Some(CBody::RunNow(r)) => {
                    self.run_now.push(r.check_id.clone());
                    return r.check_id;
                }
                Some(CBody::Ack(_) | CBody::Assignment(_)) => continue,
                other => panic!("probe {}: expected RunNow, got {other:?}", self.name),
            }
        }
    }

    /// Sends `n` results of `check` with the same outcome, one batch each,
    /// and checks each was stored.
    pub async fn report(&mut self, check: &str, ok: bool, n: usize) {
        for _ in 0..n {
            let r = self.result(check, ok);
            let ack = self.send(vec![r]).await;
            assert_eq!(ack.stored, 1, "probe {}: result not stored", self.name);
        }
    }
}
