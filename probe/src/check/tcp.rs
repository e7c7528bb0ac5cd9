//! The `tcp` check kind: connect (optionally TLS from the start), then an
//! optional script of `send` and `expect` steps — an SMTP or SSH banner, a
//! Redis `PING`/`+PONG` — each `expect` a regex over the bytes received.
//!
//! Reads are bounded: an `expect` reads at most `max_read` bytes (default
//! 4 KiB) looking for its match, so a peer streaming garbage forever fails
//! with `tcp_expect_mismatch` as soon as the cap is reached, in fixed memory;
//! a silent peer fails at the check's one deadline (`timeout` waiting for the
//! first byte, or `tcp_expect_mismatch` when something but no match came).
//! A match consumes the received bytes through the end of the line it ends
//! on (through the match itself when that line's end has not arrived yet);
//! what follows stays for the next `expect`, so `^` anchors at a line start. STARTTLS is not
//! modelled: `tls` wraps the connection from the first byte (SMTPS, IMAPS,
//! Redis over TLS).
//!
//! # Failure codes
//! `connection_refused`, `connect_failure` (also a reset during the script),
//! `dns_*`, the `tls_*` codes of an https hop, `timeout`, and
//! `tcp_expect_mismatch` (the peer closed, the read cap was reached, or the
//! deadline came before `expect` matched; what was received is named).
//!
//! # Details ([`Observed`])
//! ```text
//! host, port                 the target
//! address                    ip:port connected to (once resolved)
//! tls                        { version, cipher, alpn, chain_length, verified, error, leaf_not_after, leaf_days_left, certificates }
//! banner                     the first line received (escaped, at most 200 bytes)
//! steps: [ { index, action: send|expect, ok, sent_bytes, expect,
//!            received, received_bytes, time_us, failure_code } ]
//! timeout_phase              "connect", "tls", "first byte", "send" when the deadline hit there
//! ```
//! `received` is an escaped excerpt (`\r\n`, `\xNN`) of what the step read;
//! the bytes sent are counted, never shown (a script may carry a password).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{
    Failure, FailureCode, KindResult, Phases,
    failure::{Phase, ReadEnd},
    http::exchange::TlsInfo,
    target::{self, ClientTls, RawClientTls, Target},
};
use crate::config::{Problems, Size};

/// Default `max_read`.
pub const DEFAULT_MAX_READ: usize = 4 * 1024;
/// Largest `max_read`.
pub const MAX_MAX_READ: usize = 1024 * 1024;
/// Bytes of received data kept in an excerpt.
const EXCERPT: usize = 200;

/// `[checks.tcp]` as written in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    /// Host to connect to: a DNS name or an IP address. Example: `"mail.example.net"`.
    pub host: String,
    /// TCP port. Required. Example: `25`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// An IP address to connect to instead of resolving `host`. Example: `"192.0.2.25"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Resolve `host` through this DNS server (the strings of a dns check's
    /// `resolvers`). Default: the system resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    /// TLS from the first byte (implicit TLS: SMTPS, IMAPS, Redis TLS),
    /// verified like https. Example: `{}` or `{ ca_file = "/etc/outpost/ca.pem" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawClientTls>,
    /// Bytes to send after connecting (TOML escapes: `"PING\r\n"`); with
    /// `expect`, sent first. Not with `script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Regex the bytes received must match (after `send`, if any): a banner
    /// like `"^220 "` or `"^SSH-2\\.0-"`, a reply like `"^\\+PONG"`. Not with `script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Steps in order, each `{ send = "…" }` or `{ expect = "…" }`, e.g. SMTP:
    /// `[{ expect = "^220 " }, { send = "EHLO outpost\r\n" }, { expect = "(?m)^250 " }, { send = "QUIT\r\n" }]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script: Vec<RawStep>,
    /// Bytes one `expect` reads at most before failing with
    /// `tcp_expect_mismatch`. Default `"4KiB"`, at most `"1MiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_read: Option<Size>,
}

/// One step of `script`: exactly one of `send` or `expect`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RawTcpStep")]
pub struct RawStep {
    /// Bytes to send. Example: `"EHLO outpost\r\n"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Regex the bytes received must match. Example: `"(?m)^250 "`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

/// A regex over bytes, compared by its source.
#[derive(Debug, Clone)]
pub struct BytesPattern(pub regex::bytes::Regex);

impl PartialEq for BytesPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A validated step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Write these bytes.
    Send(Bytes),
    /// Read until this matches.
    Expect(BytesPattern),
}

/// A validated tcp check.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSpec {
    /// Where.
    pub target: Target,
    /// TLS from the start.
    pub tls: Option<ClientTls>,
    /// The script (empty: connect only).
    pub steps: Vec<Step>,
    /// Read cap per `expect`.
    pub max_read: usize,
}

fn pattern(re: &str, path: String, problems: &mut Problems) -> Option<BytesPattern> {
    match regex::bytes::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
    {
        Ok(r) => Some(BytesPattern(r)),
        Err(e) => {
            problems.push(path, format!("invalid regex {re:?}: {e}"));
            None
        }
    }
}

impl RawTcp {
    /// Validates; problems are recorded under `path` (`checks[0].tcp`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<TcpSpec> {
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
        let mut steps = Vec::new();
        if !self.script.is_empty() && (self.send.is_some() || self.expect.is_some()) {
            problems.push(
                path.to_owned(),
                "set either `send`/`expect` or `script`, not both",
            );
        }
        if let Some(s) = &self.send {
            steps.push(Step::Send(Bytes::from(s.clone())));
        }
        if let Some(e) = &self.expect {
            steps.extend(pattern(e, format!("{path}.expect"), problems).map(Step::Expect));
        }
        for (i, st) in self.script.iter().enumerate() {
            let p = format!("{path}.script[{i}]");
            match (&st.send, &st.expect) {
                (Some(s), None) if s.is_empty() => {
                    problems.push(format!("{p}.send"), "send is empty: remove the step");
                }
                (Some(s), None) => steps.push(Step::Send(Bytes::from(s.clone()))),
                (None, Some(e)) => {
                    steps.extend(pattern(e, format!("{p}.expect"), problems).map(Step::Expect));
                }
                _ => problems.push(
                    p,
                    "a script step has exactly one of `send` or `expect`, e.g. { expect = \"^220 \" }",
                ),
            }
        }
        let max_read = self.max_read.map_or(DEFAULT_MAX_READ, |s| {
            usize::try_from(s.bytes()).unwrap_or(usize::MAX)
        });
        if !(1..=MAX_MAX_READ).contains(&max_read) {
            problems.push(
                format!("{path}.max_read"),
                format!(
                    "max_read must be between \"1B\" and \"1MiB\", got \"{}\"",
                    Size(max_read as u64)
                ),
            );
        }
        if problems.len() != before {
            return None;
        }
        Some(TcpSpec {
            target,
            tls: if self.tls.is_some() { Some(tls?) } else { None },
            steps,
            max_read,
        })
    }
}

/// One step as recorded in `details.steps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepRecord {
    /// 0-based position in the script.
    pub index: usize,
    /// `"send"` or `"expect"`.
    pub action: String,
    /// The step passed.
    pub ok: bool,
    /// Bytes written (send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_bytes: Option<usize>,
    /// The pattern (expect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// What the step read, escaped and clipped (expect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    /// Bytes the step read (expect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_bytes: Option<usize>,
    /// Time the step took, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_us: Option<u64>,
    /// Why it failed.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::check::failure::lenient_code"
    )]
    pub failure_code: Option<FailureCode>,
}

/// The `details` of a tcp result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
    /// `ip:port` connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// TLS facts, with `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The first line received, escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// Every step started, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// The phase the deadline interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_phase: Option<String>,
}

impl Observed {
    /// The observations before anything happened: the target.
    pub fn of(spec: &TcpSpec) -> Self {
        Observed {
            host: spec.target.host.clone(),
            port: spec.target.port,
            ..Observed::default()
        }
    }
}

/// An escaped excerpt of received bytes (`\r\n`, `\xNN`), clipped.
pub fn excerpt(b: &[u8]) -> String {
    let clipped = &b[..b.len().min(EXCERPT)];
    let mut s = clipped.escape_ascii().to_string();
    if b.len() > EXCERPT {
        s.push('…');
    }
    s
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What the run has done so far; read when the deadline cuts it short.
#[derive(Debug, Default)]
struct Progress {
    phase: Phase,
    phases: Phases,
    /// Bytes read by the current expect, kept for a deadline failure (at most `max_read`).
    pending: Vec<u8>,
    step_started: Option<Instant>,
}

/// Runs the check once within `timeout`.
pub async fn run(spec: &TcpSpec, timeout: Duration) -> KindResult {
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
        Err(_) => Err(on_deadline(spec, timeout, &mut observed, &mut progress)),
    };
    KindResult {
        phases: progress.phases,
        result,
        observed: super::Observed::Tcp(Box::new(observed)),
    }
}

fn on_deadline(
    spec: &TcpSpec,
    timeout: Duration,
    observed: &mut Observed,
    progress: &mut Progress,
) -> Failure {
    observed.timeout_phase = Some(progress.phase.name().to_owned());
    let target = observed
        .address
        .clone()
        .or_else(|| Some(spec.target.authority()));
    // Part of an answer that never matched: say what came.
    if let Some(step) = observed.steps.last_mut()
        && step.action == "expect"
        && !step.ok
        && !progress.pending.is_empty()
    {
        step.received = Some(excerpt(&progress.pending));
        step.received_bytes = Some(progress.pending.len());
        step.time_us = progress
            .step_started
            .map(|t| t.elapsed().as_micros() as u64);
        step.failure_code = Some(FailureCode::TcpExpectMismatch);
        return Failure::TcpExpectMismatch {
            step: step.index + 1,
            expect: step.expect.clone().unwrap_or_default(),
            received: excerpt(&progress.pending),
            received_bytes: progress.pending.len(),
            end: ReadEnd::Deadline { after: timeout },
        };
    }
    if let Some(step) = observed.steps.last_mut() {
        step.failure_code = Some(FailureCode::Timeout);
    }
    Failure::Timeout {
        phase: progress.phase,
        after: timeout,
        target,
    }
}

async fn session(
    spec: &TcpSpec,
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
    let mut stream: Box<dyn Stream> = match &spec.tls {
        None => Box::new(tcp),
        Some(tls) => {
            progress.phase = Phase::Tls;
            match target::handshake(tcp, tls, &[]).await {
                Ok((s, info, took)) => {
                    progress.phases.tls = Some(took);
                    observed.tls = Some(info);
                    Box::new(s)
                }
                Err(f) => {
                    observed.tls = Some(TlsInfo {
                        verified: false,
                        error: Some(f.code()),
                        ..TlsInfo::default()
                    });
                    return Err(f);
                }
            }
        }
    };
    let connected = Instant::now();
    // Bytes received and not yet consumed by a match (at most `max_read`).
    let mut buffer: Vec<u8> = Vec::new();
    for (index, step) in spec.steps.iter().enumerate() {
        let started = Instant::now();
        progress.step_started = Some(started);
        match step {
            Step::Send(bytes) => {
                progress.phase = Phase::Send;
                observed.steps.push(StepRecord {
                    index,
                    action: "send".into(),
                    ..StepRecord::default()
                });
                let written = async {
                    stream.write_all(bytes).await?;
                    stream.flush().await
                }
                .await;
                let rec = observed.steps.last_mut();
                if let Err(e) = written {
                    if let Some(r) = rec {
                        r.failure_code = Some(FailureCode::ConnectFailure);
                    }
                    return Err(Failure::ConnectFailure {
                        address: addr.to_string(),
                        error: format!("sending step {}: {e}", index + 1),
                    });
                }
                if let Some(r) = rec {
                    r.ok = true;
                    r.sent_bytes = Some(bytes.len());
                    r.time_us = Some(started.elapsed().as_micros() as u64);
                }
            }
            Step::Expect(p) => {
                progress.phase = Phase::FirstByte;
                observed.steps.push(StepRecord {
                    index,
                    action: "expect".into(),
                    expect: Some(p.0.as_str().to_owned()),
                    ..StepRecord::default()
                });
                let read = expect(
                    &mut stream,
                    p,
                    spec.max_read,
                    &mut buffer,
                    progress,
                    connected,
                )
                .await;
                if observed.banner.is_none() && !progress.pending.is_empty() {
                    observed.banner = Some(first_line(&progress.pending));
                }
                let Some(rec) = observed.steps.last_mut() else {
                    continue;
                };
                rec.received = Some(excerpt(&progress.pending));
                rec.received_bytes = Some(progress.pending.len());
                rec.time_us = Some(started.elapsed().as_micros() as u64);
                match read {
                    Ok(()) => rec.ok = true,
                    Err(end) => {
                        let failure = match end {
                            Ended::Io(e) => Failure::ConnectFailure {
                                address: addr.to_string(),
                                error: format!("reading step {}: {e}", index + 1),
                            },
                            Ended::Read(end) => Failure::TcpExpectMismatch {
                                step: index + 1,
                                expect: p.0.as_str().to_owned(),
                                received: excerpt(&progress.pending),
                                received_bytes: progress.pending.len(),
                                end,
                            },
                        };
                        rec.failure_code = Some(failure.code());
                        return Err(failure);
                    }
                }
                progress.pending.clear();
            }
        }
    }
    Ok(())
}

enum Ended {
    Read(ReadEnd),
    Io(std::io::Error),
}

/// Reads into `buffer` until `p` matches it, consuming through the end of
/// the line the match ends on (when that line has arrived; else through the
/// match).
/// `progress.pending` mirrors what this expect has seen (for the details).
async fn expect(
    stream: &mut Box<dyn Stream>,
    p: &BytesPattern,
    max_read: usize,
    buffer: &mut Vec<u8>,
    progress: &mut Progress,
    connected: Instant,
) -> Result<(), Ended> {
    progress.pending.clone_from(buffer);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(m) = p.0.find(buffer) {
            // Line protocols: the rest of the matched line goes with the match.
            let end = buffer[m.end()..]
                .iter()
                .position(|c| *c == b'\n')
                .map_or(m.end(), |i| m.end() + i + 1);
            progress.pending.truncate(end.min(progress.pending.len()));
            buffer.drain(..end);
            return Ok(());
        }
        if buffer.len() >= max_read {
            return Err(Ended::Read(ReadEnd::Limit { max_read }));
        }
        let room = (max_read - buffer.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await.map_err(Ended::Io)?;
        if n == 0 {
            return Err(Ended::Read(ReadEnd::Closed));
        }
        if progress.phases.first_byte.is_none() {
            progress.phases.first_byte = Some(connected.elapsed());
        }
        buffer.extend_from_slice(&chunk[..n]);
        progress.pending.extend_from_slice(&chunk[..n]);
    }
}

/// `outpost-probe check tcp://…`: the outcome for a human, rendered from
/// its observations.
pub fn render(o: &super::Outcome) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let default = Observed::default();
    let d = match &o.observed {
        super::Observed::Tcp(d) => d,
        _ => &default,
    };
    let h = |d: Option<Duration>| d.map(|d| crate::human::duration(d).to_string());
    let mut facts = vec![format!("tcp {}:{}", d.host, d.port)];
    facts.extend(d.address.clone().map(|a| format!("via {a}")));
    for (name, v) in [
        ("dns", h(o.phases.dns)),
        ("connect", h(o.phases.connect)),
        ("tls", h(o.phases.tls)),
        ("first byte", h(o.phases.first_byte)),
        ("total", h(Some(o.phases.total))),
    ] {
        if let Some(v) = v {
            facts.push(format!("{name} {v}"));
        }
    }
    let _ = writeln!(t, "{}", facts.join(" · "));
    if let Some(tls) = &d.tls {
        let _ = writeln!(
            t,
            "  TLS {} {}{}",
            tls.version.as_deref().unwrap_or("?"),
            tls.cipher.as_deref().unwrap_or(""),
            if tls.verified {
                ", certificate verified"
            } else {
                ""
            }
        );
    }
    if let Some(b) = &d.banner {
        let _ = writeln!(t, "  banner: {b}");
    }
    for s in &d.steps {
        let mark = if s.ok { "ok  " } else { "FAIL" };
        match s.action.as_str() {
            "send" => {
                let _ = writeln!(t, "  {mark} send {} bytes", s.sent_bytes.unwrap_or(0));
            }
            _ => {
                let _ = writeln!(
                    t,
                    "  {mark} expect /{}/ ← \"{}\"",
                    s.expect.as_deref().unwrap_or(""),
                    s.received.as_deref().unwrap_or("")
                );
            }
        }
    }
    let _ = match &o.result {
        Ok(()) => writeln!(t, "verdict PASS"),
        Err(f) => writeln!(t, "verdict FAIL {}: {f}", f.code()),
    };
    t
}

fn first_line(b: &[u8]) -> String {
    let line = b.split(|c| *c == b'\n').next().unwrap_or(b);
    excerpt(line.strip_suffix(b"\r").unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_escape_and_clip() {
        assert_eq!(excerpt(b"220 ok\r\n"), "220 ok\\r\\n");
        assert_eq!(excerpt(&[0, 0xff]), "\\x00\\xff");
        let long = vec![b'a'; 300];
        assert_eq!(excerpt(&long).chars().count(), 201);
        assert_eq!(first_line(b"SSH-2.0-x\r\nmore"), "SSH-2.0-x");
    }
}
