//! The `grpc` check kind: the standard health protocol (`grpc.health.v1`,
//! tonic-health's generated client) on a fresh HTTP/2 connection — plain
//! (h2c, prior knowledge) or TLS with ALPN `h2`, verified like https — with
//! exact connect/TLS/first-byte timings. `Check` asks for `service` (default
//! `""`, the server as a whole); with `watch_for`, `Watch` keeps the stream
//! open that long and fails on the first status that is not `SERVING`
//! (flapping, a drain that starts).
//!
//! # Failure codes
//! `grpc_not_serving`, `grpc_status_unknown` (the server answered `UNKNOWN`),
//! `grpc_service_unknown` (`SERVICE_UNKNOWN`, or `NOT_FOUND` from `Check`: the
//! service name is not registered), `grpc_error` (the RPC failed with another
//! gRPC status, e.g. `UNIMPLEMENTED` when the server has no health service),
//! `protocol_error` (the peer does not speak HTTP/2), and the connection's
//! `connection_refused`, `connect_failure`, `dns_*`, `tls_*`, `timeout`.
//!
//! # Details ([`Observed`])
//! ```text
//! host, port, service        the target and the service asked about
//! address                    ip:port connected to
//! tls                        as an https hop's, with tls
//! status                     "SERVING" | "NOT_SERVING" | "UNKNOWN" | "SERVICE_UNKNOWN" (the Check answer)
//! grpc_code, grpc_message    a failed RPC's gRPC status ("UNIMPLEMENTED", …)
//! watch: [ { after_ms, status } ]   statuses streamed by Watch (at most 100)
//! timeout_phase              where the deadline hit
//! ```

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{
    Failure, KindResult, Phases,
    failure::{Phase, ProtocolProblem},
    http::{
        exchange::{self, AbortOnDrop, TlsInfo},
        sniff::{Sniff, Sniffed},
    },
    target::{self, ClientTls, RawClientTls, Target},
};
use crate::config::{Dur, Problems};

/// Largest health message decoded (they are a few bytes).
const MAX_MESSAGE: usize = 64 * 1024;
/// Watch statuses recorded at most.
const MAX_WATCH: usize = 100;

/// `[checks.grpc]` as written in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    /// Host: a DNS name or an IP address. Example: `"orders.internal.example.net"`.
    pub host: String,
    /// Port. Required. Example: `50051`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// An IP address to connect to instead of resolving `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Resolve `host` through this DNS server. Default: the system resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    /// TLS (ALPN `h2`), verified like https. Without it: plaintext HTTP/2
    /// (h2c). Example: `{}` or `{ ca_file = "/etc/outpost/internal-ca.pem" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawClientTls>,
    /// The service name asked about (`grpc.health.v1.HealthCheckRequest.service`).
    /// Default `""`: the server as a whole. Example: `"orders.v1.Orders"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Use `Watch` and keep the stream open this long: every status must be
    /// `SERVING` throughout. Shorter than the check's `timeout`. Example: `"3s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_for: Option<Dur>,
}

/// A validated grpc check.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcSpec {
    /// Where.
    pub target: Target,
    /// TLS.
    pub tls: Option<ClientTls>,
    /// Service name.
    pub service: String,
    /// Watch window.
    pub watch_for: Option<Duration>,
}

impl RawGrpc {
    /// Validates; problems are recorded under `path` (`checks[0].grpc`).
    /// `timeout` is the check's (a watch must end before it).
    pub fn validate(
        &self,
        path: &str,
        timeout: Duration,
        problems: &mut Problems,
    ) -> Option<GrpcSpec> {
        let before = problems.len();
        let target = target::validate(
            &self.host,
            self.port,
            true,
            self.address.as_deref(),
            self.resolver.as_deref(),
            path,
            problems,
        );
        let tls = self
            .tls
            .as_ref()
            .and_then(|t| t.validate(&target.host, &format!("{path}.tls"), problems));
        let watch_for = self.watch_for.map(Dur::get);
        if let Some(w) = watch_for
            && (w.is_zero() || w >= timeout)
        {
            problems.push(
                format!("{path}.watch_for"),
                format!(
                    "watch_for \"{}\" must be above 0 and shorter than the check's timeout \"{}\"",
                    Dur(w),
                    Dur(timeout)
                ),
            );
        }
        if problems.len() != before {
            return None;
        }
        Some(GrpcSpec {
            target,
            tls: if self.tls.is_some() { Some(tls?) } else { None },
            service: self.service.clone().unwrap_or_default(),
            watch_for,
        })
    }
}

/// One status streamed by `Watch`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchRecord {
    /// Time since the stream opened, ms.
    pub after_ms: u64,
    /// The status.
    pub status: String,
}

/// The `details` of a grpc result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
    /// The service asked about.
    pub service: String,
    /// `ip:port` connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// TLS facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The serving status answered (`Check`, or the first `Watch` message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A failed RPC's gRPC status code, e.g. `"UNIMPLEMENTED"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_code: Option<String>,
    /// Its message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_message: Option<String>,
    /// Statuses streamed by `Watch`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<WatchRecord>,
    /// The phase the deadline interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_phase: Option<String>,
}

impl Observed {
    /// The observations before anything happened.
    pub fn of(spec: &GrpcSpec) -> Self {
        Observed {
            host: spec.target.host.clone(),
            port: spec.target.port,
            service: spec.service.clone(),
            ..Observed::default()
        }
    }
}

/// tonic's client over one hyper HTTP/2 connection of our own (timed,
/// verified, aborted with the run).
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

type ResponseFuture = Pin<
    Box<dyn Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + Send>,
>;

impl tower_service::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

#[derive(Debug, Default)]
struct Progress {
    phase: Phase,
    phases: Phases,
}

/// Runs the check once within `timeout`.
pub async fn run(spec: &GrpcSpec, timeout: Duration) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut observed = Observed::of(spec);
    let mut progress = Progress::default();
    let result = match tokio::time::timeout_at(
        deadline,
        Box::pin(session(spec, deadline, &mut observed, &mut progress)),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => {
            observed.timeout_phase = Some(progress.phase.name().to_owned());
            Err(Failure::Timeout {
                phase: progress.phase,
                after: timeout,
                target: observed
                    .address
                    .clone()
                    .or_else(|| Some(spec.target.authority())),
            })
        }
    };
    KindResult {
        phases: progress.phases,
        result,
        observed: super::Observed::Grpc(Box::new(observed)),
    }
}

/// A gRPC status code's protocol name (`"UNIMPLEMENTED"`).
pub fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Whether the first bytes look like an HTTP/2 server's SETTINGS frame.
fn looks_like_h2(b: &[u8]) -> bool {
    b.len() < 9 || (b[3] == 0x04 && b[5..9] == [0, 0, 0, 0])
}

/// A failed RPC as a failure: transport problems by their cause, a peer
/// that is not HTTP/2 by what it sent, else the gRPC status.
fn rpc_failure(status: &tonic::Status, sniffed: &Sniffed, service: &str) -> Failure {
    let sent = sniffed.bytes();
    if !looks_like_h2(&sent) {
        let what = if sent.starts_with(b"HTTP/") {
            "an HTTP/1 response (HTTP/2 is needed for gRPC)".to_owned()
        } else {
            super::http::sniff::describe_non_http(&sent)
                .unwrap_or_else(|| "something that is not an HTTP/2 frame".to_owned())
        };
        return Failure::ProtocolError {
            problem: ProtocolProblem::NotHttp { sent: what },
        };
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = src {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return exchange::classify(h, MAX_MESSAGE);
        }
        src = e.source();
    }
    match status.code() {
        tonic::Code::NotFound => Failure::GrpcServiceUnknown {
            service: service.to_owned(),
            after: None,
        },
        code => Failure::GrpcError {
            code: code_name(code),
            message: status.message().chars().take(200).collect(),
        },
    }
}

fn status_failure(
    status: ServingStatus,
    service: &str,
    after: Option<Duration>,
) -> Option<Failure> {
    let service = service.to_owned();
    match status {
        ServingStatus::Serving => None,
        ServingStatus::NotServing => Some(Failure::GrpcNotServing { service, after }),
        ServingStatus::ServiceUnknown => Some(Failure::GrpcServiceUnknown { service, after }),
        ServingStatus::Unknown => Some(Failure::GrpcStatusUnknown { service, after }),
    }
}

async fn session(
    spec: &GrpcSpec,
    deadline: tokio::time::Instant,
    observed: &mut Observed,
    progress: &mut Progress,
) -> Result<(), Failure> {
    progress.phase = Phase::Dns;
    let (ip, dns) = spec.target.resolve(deadline).await?;
    progress.phases.dns = dns;
    let addr = SocketAddr::new(ip, spec.target.port);
    observed.address = Some(addr.to_string());
    progress.phase = Phase::Connect;
    let t = Instant::now();
    let tcp = target::connect(addr).await?;
    progress.phases.connect = Some(t.elapsed());
    let (send, sniffed, _conn) = match &spec.tls {
        None => handshake(tcp).await?,
        Some(tls) => {
            progress.phase = Phase::Tls;
            let (stream, info, took) = match target::handshake(tcp, tls, &[b"h2"]).await {
                Ok(s) => s,
                Err(f) => {
                    observed.tls = Some(TlsInfo {
                        verified: false,
                        error: Some(f.code()),
                        ..TlsInfo::default()
                    });
                    return Err(f);
                }
            };
            progress.phases.tls = Some(took);
            let h2 = info.alpn.as_deref() == Some("h2");
            observed.tls = Some(info);
            if !h2 {
                return Err(Failure::ProtocolError {
                    problem: ProtocolProblem::H2Refused,
                });
            }
            handshake(stream).await?
        }
    };
    let scheme = if spec.tls.is_some() { "https" } else { "http" };
    let origin: http::Uri = format!("{scheme}://{}", spec.target.authority())
        .parse()
        .map_err(|e| Failure::InternalError {
            reason: format!("cannot build the gRPC origin: {e}"),
        })?;
    let mut client = HealthClient::with_origin(H2(send), origin)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: spec.service.clone(),
    });
    request.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
    progress.phase = Phase::FirstByte;
    let t = Instant::now();
    let fail = |s: tonic::Status, observed: &mut Observed| {
        if std::error::Error::source(&s).is_none() {
            observed.grpc_code = Some(code_name(s.code()));
            observed.grpc_message = Some(s.message().chars().take(200).collect());
        }
        rpc_failure(&s, &sniffed, &spec.service)
    };
    let Some(window) = spec.watch_for else {
        let answer = match client.check(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Err(fail(s, observed)),
        };
        progress.phases.first_byte = Some(t.elapsed());
        let status = answer.status();
        observed.status = Some(status.as_str_name().to_owned());
        return status_failure(status, &spec.service, None).map_or(Ok(()), Err);
    };
    let mut stream = match client.watch(request).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(fail(s, observed)),
    };
    let opened = Instant::now();
    progress.phases.first_byte = Some(t.elapsed());
    let until = tokio::time::Instant::now() + window;
    loop {
        let next = match tokio::time::timeout_at(until, stream.message()).await {
            // The window passed with every status SERVING.
            Err(_) => return Ok(()),
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                return Err(Failure::GrpcError {
                    code: "OK".into(),
                    message: format!(
                        "the server ended the Watch stream after {}",
                        crate::human::duration(opened.elapsed())
                    ),
                });
            }
            Ok(Err(s)) => return Err(fail(s, observed)),
        };
        let after = opened.elapsed();
        let status = next.status();
        if observed.status.is_none() {
            observed.status = Some(status.as_str_name().to_owned());
        }
        if observed.watch.len() < MAX_WATCH {
            observed.watch.push(WatchRecord {
                after_ms: after.as_millis() as u64,
                status: status.as_str_name().to_owned(),
            });
        }
        let first = observed.watch.len() == 1;
        if let Some(f) = status_failure(status, &spec.service, (!first).then_some(after)) {
            return Err(f);
        }
    }
}

type Connection = (
    hyper::client::conn::http2::SendRequest<tonic::body::Body>,
    Sniffed,
    AbortOnDrop,
);

async fn handshake<S>(stream: S) -> Result<Connection, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (stream, sniffed) = Sniff::new(stream);
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder.max_header_list_size(MAX_MESSAGE as u32);
    let (send, conn) = Box::pin(builder.handshake(TokioIo::new(stream)))
        .await
        .map_err(|e| exchange::classify(&e, MAX_MESSAGE))?;
    let guard = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok((send, sniffed, guard))
}

/// `outpost-probe check grpc://…`: the outcome for a human.
pub fn render(o: &super::Outcome) -> String {
    let default = Observed::default();
    let d = match &o.observed {
        super::Observed::Grpc(d) => d,
        _ => &default,
    };
    let h = |d: Option<Duration>| d.map(|d| crate::human::duration(d).to_string());
    let mut facts = vec![format!(
        "grpc {}:{} service {:?}",
        d.host, d.port, d.service
    )];
    facts.extend(d.address.clone().map(|a| format!("via {a}")));
    for (name, v) in [
        ("connect", h(o.phases.connect)),
        ("tls", h(o.phases.tls)),
        ("answer", h(o.phases.first_byte)),
        ("total", h(Some(o.phases.total))),
    ] {
        if let Some(v) = v {
            facts.push(format!("{name} {v}"));
        }
    }
    let mut t = facts.join(" · ");
    t.push('\n');
    if let Some(s) = &d.status {
        t.push_str(&format!("  status {s}\n"));
    }
    for w in &d.watch {
        t.push_str(&format!("  watch +{} ms {}\n", w.after_ms, w.status));
    }
    match &o.result {
        Ok(()) => t.push_str("verdict PASS\n"),
        Err(f) => t.push_str(&format!("verdict FAIL {}: {f}\n", f.code())),
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_the_protocol_names_them() {
        assert_eq!(code_name(tonic::Code::Unimplemented), "UNIMPLEMENTED");
        assert_eq!(
            code_name(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }
}
