//! The `icmp` check kind: `count` echo requests (ICMP or ICMPv6), one every
//! `request_interval`, then the loss and the round-trip times (min, p50, p90,
//! max, mean; nearest-rank percentiles) against `max_loss` and the RTT budgets.
//!
//! # Sockets
//! `socket = "auto"` (default) tries an unprivileged ping socket first
//! (`SOCK_DGRAM`/`IPPROTO_ICMP`: Linux allows it to the groups in
//! `net.ipv4.ping_group_range`, which covers IPv6 too; the kernel sets the
//! echo identifier and filters replies per socket), then a raw socket (needs
//! `CAP_NET_RAW`; replies are matched by identifier, sequence and a payload
//! token, since a raw socket sees every ICMP packet). When neither may be
//! opened the check fails with `icmp_not_permitted`, naming both reasons and
//! the fixes (a group in the range, or the capability). `"dgram"` and
//! `"raw"` force one.
//!
//! # Verdict
//! Replies still missing when the deadline comes (or `reply_timeout` after
//! the last request) are lost: loss is data, not a timeout. More loss than
//! `max_loss` fails with `icmp_packet_loss` (every reply lost included);
//! a percentile above its budget with `latency_budget_exceeded`
//! (phase `rtt_p50`, `rtt_p90` or `rtt_max`).
//!
//! # Details ([`Observed`])
//! ```text
//! host, address              the target and the IP pinged
//! socket                     "dgram" | "raw"
//! sent, received, loss       counts and the lost fraction (0.0–1.0)
//! rtt_us: { min, p50, p90, max, mean }   over the replies (absent without one)
//! replies: [ { seq, rtt_us } ]           one per request; rtt_us null when lost
//! ```

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    Failure, KindResult, Phases,
    failure::Phase,
    target::{self, Target},
};
use crate::config::{Dur, Problems};

/// Default `count`.
pub const DEFAULT_COUNT: u32 = 3;
/// Largest `count`.
pub const MAX_COUNT: u32 = 100;
/// Default `request_interval`.
pub const DEFAULT_REQUEST_INTERVAL: Duration = Duration::from_millis(200);
/// Default `reply_timeout`.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Default and largest `payload_size`.
pub const DEFAULT_PAYLOAD: usize = 56;
const MAX_PAYLOAD: usize = 1024;

/// `[checks.icmp]` as written in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIcmp {
    /// Host: a DNS name or an IP address (v4 or v6). Example: `"gw.example.net"`.
    pub host: String,
    /// An IP address to ping instead of resolving `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Resolve `host` through this DNS server. Default: the system resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    /// Echo requests per run (1–100). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Time between requests. Default `"200ms"`, at least `"10ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_interval: Option<Dur>,
    /// How long to wait for replies after the last request (the check's
    /// deadline still bounds it). Default `"1s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_timeout: Option<Dur>,
    /// Payload bytes per request (0–1024). Default 56, like ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_size: Option<usize>,
    /// Fraction of replies that may be lost (0.0–1.0). Default 0.0. Example: `0.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loss: Option<f64>,
    /// Budget for the median RTT. Example: `"20ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rtt_p50: Option<Dur>,
    /// Budget for the 90th-percentile RTT. Example: `"50ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rtt_p90: Option<Dur>,
    /// Budget for the slowest reply. Example: `"200ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rtt: Option<Dur>,
    /// `"auto"` (default: a ping socket, else raw), `"dgram"` or `"raw"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<SocketKind>,
}

/// Which socket sends the echoes.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SocketKind {
    /// A ping socket, else a raw one.
    #[default]
    Auto,
    /// An unprivileged ping socket only.
    Dgram,
    /// A raw socket only.
    Raw,
}

/// A validated icmp check.
#[derive(Debug, Clone, PartialEq)]
pub struct IcmpSpec {
    /// Where.
    pub target: Target,
    /// Requests.
    pub count: u32,
    /// Between requests.
    pub request_interval: Duration,
    /// After the last request.
    pub reply_timeout: Duration,
    /// Payload bytes.
    pub payload_size: usize,
    /// Loss allowed.
    pub max_loss: f64,
    /// Budgets: (phase name, percentile 0–100, budget).
    pub budgets: Vec<(&'static str, u8, Duration)>,
    /// Socket choice.
    pub socket: SocketKind,
}

impl RawIcmp {
    /// Validates; problems are recorded under `path` (`checks[0].icmp`).
    pub fn validate(
        &self,
        path: &str,
        timeout: Duration,
        problems: &mut Problems,
    ) -> Option<IcmpSpec> {
        let before = problems.len();
        let target = target::validate(
            &self.host,
            None,
            false,
            self.address.as_deref(),
            self.resolver.as_deref(),
            path,
            problems,
        );
        let count = self.count.unwrap_or(DEFAULT_COUNT);
        if !(1..=MAX_COUNT).contains(&count) {
            problems.push(
                format!("{path}.count"),
                format!("count must be between 1 and {MAX_COUNT}, got {count}"),
            );
        }
        let request_interval = self
            .request_interval
            .map_or(DEFAULT_REQUEST_INTERVAL, Dur::get);
        if request_interval < Duration::from_millis(10) {
            problems.push(
                format!("{path}.request_interval"),
                format!(
                    "request_interval must be at least \"10ms\", got \"{}\"",
                    Dur(request_interval)
                ),
            );
        } else if request_interval * count.saturating_sub(1) >= timeout {
            problems.push(
                format!("{path}.request_interval"),
                format!(
                    "{count} requests every \"{}\" do not fit in the timeout \"{}\": lower count or request_interval, or raise timeout",
                    Dur(request_interval),
                    Dur(timeout)
                ),
            );
        }
        let payload_size = self.payload_size.unwrap_or(DEFAULT_PAYLOAD);
        if payload_size > MAX_PAYLOAD {
            problems.push(
                format!("{path}.payload_size"),
                format!("payload_size must be at most {MAX_PAYLOAD}, got {payload_size}"),
            );
        }
        let max_loss = self.max_loss.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&max_loss) {
            problems.push(
                format!("{path}.max_loss"),
                format!("max_loss must be between 0.0 and 1.0, got {max_loss}, e.g. 0.2"),
            );
        }
        let mut budgets = Vec::new();
        for (name, pct, d) in [
            ("rtt_p50", 50u8, self.max_rtt_p50),
            ("rtt_p90", 90, self.max_rtt_p90),
            ("rtt_max", 100, self.max_rtt),
        ] {
            if let Some(d) = d {
                budgets.push((name, pct, d.get()));
            }
        }
        if problems.len() != before {
            return None;
        }
        Some(IcmpSpec {
            target,
            count,
            request_interval,
            reply_timeout: self.reply_timeout.map_or(DEFAULT_REPLY_TIMEOUT, Dur::get),
            payload_size,
            max_loss,
            budgets,
            socket: self.socket.unwrap_or_default(),
        })
    }
}

/// RTT statistics over the replies, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RttStats {
    /// Fastest.
    pub min: u64,
    /// Median (nearest rank).
    pub p50: u64,
    /// 90th percentile (nearest rank).
    pub p90: u64,
    /// Slowest.
    pub max: u64,
    /// Mean.
    pub mean: u64,
}

/// One echo request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reply {
    /// Sequence number.
    pub seq: u16,
    /// Round trip, µs; `None` when lost.
    pub rtt_us: Option<u64>,
}

/// The `details` of an icmp result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// Target host.
    pub host: String,
    /// The IP pinged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `"dgram"` or `"raw"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Requests sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Lost fraction.
    pub loss: f64,
    /// RTT statistics (absent without a reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<RttStats>,
    /// One entry per request sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<Reply>,
}

impl Observed {
    /// The observations before anything happened.
    pub fn of(spec: &IcmpSpec) -> Self {
        Observed {
            host: spec.target.host.clone(),
            ..Observed::default()
        }
    }
}

/// The nearest-rank percentile `pct` (1–100) of sorted `v`.
pub fn percentile(sorted: &[u64], pct: u8) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (usize::from(pct) * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// RFC 1071 Internet checksum.
fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in b.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: type, code, checksum, identifier, sequence, payload
/// (the run's token, then filler).
fn echo_request(v6: bool, id: u16, seq: u16, token: &[u8; 8], size: usize) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    let mut payload = token.to_vec();
    payload.resize(size.max(token.len()), 0x5a);
    payload.truncate(size.max(token.len()));
    p.extend_from_slice(&payload);
    if !v6 {
        // ICMPv6 checksums cover a pseudo-header: the kernel fills them in.
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// The sequence number of an echo reply carrying `token` (and `id`, on a
/// raw socket), else `None`. `raw_v4` replies start with the IP header.
fn parse_reply(b: &[u8], v6: bool, raw: bool, id: u16, token: &[u8; 8]) -> Option<u16> {
    let icmp = if raw && !v6 {
        let ihl = usize::from(b.first()? & 0x0f) * 4;
        if ihl < 20 {
            return None;
        }
        b.get(ihl..)?
    } else {
        b
    };
    let reply_type = if v6 { 129 } else { 0 };
    if icmp.len() < 16 || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    if raw && u16::from_be_bytes([icmp[4], icmp[5]]) != id {
        return None;
    }
    (icmp[8..16] == token[..]).then(|| u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// Opens the echo socket for `ip`: the kind used, or why none may be opened.
fn open(ip: IpAddr, kind: SocketKind) -> Result<(Socket, &'static str), Failure> {
    let (domain, protocol) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let dgram = || Socket::new(domain, Type::DGRAM, Some(protocol));
    let raw = || Socket::new(domain, Type::RAW, Some(protocol));
    let reason = |e: std::io::Error| e.to_string();
    let (s, k) = match kind {
        SocketKind::Dgram => {
            dgram()
                .map(|s| (s, "dgram"))
                .map_err(|e| Failure::IcmpNotPermitted {
                    dgram: Some(reason(e)),
                    raw: None,
                })?
        }
        SocketKind::Raw => raw()
            .map(|s| (s, "raw"))
            .map_err(|e| Failure::IcmpNotPermitted {
                dgram: None,
                raw: Some(reason(e)),
            })?,
        SocketKind::Auto => match dgram() {
            Ok(s) => (s, "dgram"),
            Err(d) => match raw() {
                Ok(s) => (s, "raw"),
                Err(r) => {
                    return Err(Failure::IcmpNotPermitted {
                        dgram: Some(reason(d)),
                        raw: Some(reason(r)),
                    });
                }
            },
        },
    };
    s.set_nonblocking(true)
        .map_err(|e| Failure::InternalError {
            reason: format!("cannot make the ICMP socket non-blocking: {e}"),
        })?;
    Ok((s, k))
}

/// Runs the check once within `timeout`.
pub async fn run(spec: &IcmpSpec, timeout: Duration) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut observed = Observed::of(spec);
    let mut phases = Phases::default();
    let result =
        match tokio::time::timeout_at(deadline, Box::pin(spec.target.resolve(deadline))).await {
            Err(_) => Err(Failure::Timeout {
                phase: Phase::Dns,
                after: timeout,
                target: Some(spec.target.host.clone()),
            }),
            Ok(Err(f)) => Err(f),
            Ok(Ok((ip, dns))) => {
                phases.dns = dns;
                observed.address = Some(ip.to_string());
                match Box::pin(ping(spec, ip, deadline, &mut observed)).await {
                    Err(f) => Err(f),
                    Ok(()) => verdict(spec, &mut observed, &mut phases),
                }
            }
        };
    KindResult {
        phases,
        result,
        observed: super::Observed::Icmp(Box::new(observed)),
    }
}

async fn ping(
    spec: &IcmpSpec,
    ip: IpAddr,
    deadline: tokio::time::Instant,
    observed: &mut Observed,
) -> Result<(), Failure> {
    let v6 = ip.is_ipv6();
    let (socket, kind) = open(ip, spec.socket)?;
    observed.socket = Some(kind.to_owned());
    let raw = kind == "raw";
    // Safe conversion: the fd is a datagram socket; UdpSocket's sendto and
    // recvfrom are what an ICMP socket needs.
    let socket =
        tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(|e| {
            Failure::InternalError {
                reason: format!("cannot register the ICMP socket: {e}"),
            }
        })?;
    let token: [u8; 8] = {
        let mut t = [0u8; 8];
        // The token only tells our replies apart; any unpredictable bytes do.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut t);
        t
    };
    let id = u16::from_be_bytes([token[0], token[1]]);
    let to = SocketAddr::new(ip, 0);
    let mut sent_at: Vec<Option<Instant>> = Vec::with_capacity(spec.count as usize);
    let mut ticker = tokio::time::interval(spec.request_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    let mut wait_until = deadline;
    loop {
        let all_sent = sent_at.len() as u32 >= spec.count;
        if all_sent && observed.received == spec.count {
            break;
        }
        tokio::select! {
            _ = ticker.tick(), if !all_sent => {
                let seq = sent_at.len() as u16;
                let packet = echo_request(v6, id, seq, &token, spec.payload_size);
                match socket.send_to(&packet, to).await {
                    Ok(_) => sent_at.push(Some(Instant::now())),
                    // An unroutable address: the request is lost, not the run.
                    Err(_) => sent_at.push(None),
                }
                observed.replies.push(Reply { seq, rtt_us: None });
                observed.sent = sent_at.len() as u32;
                if sent_at.len() as u32 == spec.count {
                    wait_until = deadline.min(tokio::time::Instant::now() + spec.reply_timeout);
                }
            }
            got = socket.recv_from(&mut buf) => {
                let Ok((n, _)) = got else { continue };
                let Some(seq) = parse_reply(&buf[..n], v6, raw, id, &token) else { continue };
                let (Some(Some(t)), Some(r)) = (sent_at.get(usize::from(seq)), observed.replies.get_mut(usize::from(seq))) else {
                    continue;
                };
                if r.rtt_us.is_none() {
                    r.rtt_us = Some(t.elapsed().as_micros() as u64);
                    observed.received += 1;
                }
            }
            _ = tokio::time::sleep_until(wait_until) => break,
        }
    }
    Ok(())
}

fn verdict(spec: &IcmpSpec, observed: &mut Observed, phases: &mut Phases) -> Result<(), Failure> {
    let mut rtts: Vec<u64> = observed.replies.iter().filter_map(|r| r.rtt_us).collect();
    rtts.sort_unstable();
    // Requests the deadline kept from being sent count as lost too.
    let lost = spec.count - observed.received;
    observed.loss = f64::from(lost) / f64::from(spec.count);
    if !rtts.is_empty() {
        let stats = RttStats {
            min: rtts[0],
            p50: percentile(&rtts, 50),
            p90: percentile(&rtts, 90),
            max: rtts[rtts.len() - 1],
            mean: rtts.iter().sum::<u64>() / rtts.len() as u64,
        };
        observed.rtt_us = Some(stats);
        phases.first_byte = Some(Duration::from_micros(stats.p50));
    }
    if observed.loss > spec.max_loss {
        return Err(Failure::IcmpPacketLoss {
            lost,
            count: spec.count,
            max_loss: spec.max_loss,
        });
    }
    for (name, pct, budget) in &spec.budgets {
        let took = Duration::from_micros(percentile(&rtts, *pct));
        if took > *budget {
            return Err(Failure::LatencyBudgetExceeded {
                phase: (*name).to_owned(),
                took,
                budget: *budget,
            });
        }
    }
    Ok(())
}

/// `outpost-probe check icmp://…`: the outcome for a human.
pub fn render(o: &super::Outcome) -> String {
    let default = Observed::default();
    let d = match &o.observed {
        super::Observed::Icmp(d) => d,
        _ => &default,
    };
    let mut t = format!(
        "icmp {} ({}, {} socket): {} sent, {} received, {:.0}% loss\n",
        d.host,
        d.address.as_deref().unwrap_or("?"),
        d.socket.as_deref().unwrap_or("no"),
        d.sent,
        d.received,
        d.loss * 100.0
    );
    if let Some(r) = &d.rtt_us {
        let ms = |us: u64| crate::human::duration(Duration::from_micros(us)).to_string();
        t.push_str(&format!(
            "  rtt min {} · p50 {} · p90 {} · max {} · mean {}\n",
            ms(r.min),
            ms(r.p50),
            ms(r.p90),
            ms(r.max),
            ms(r.mean)
        ));
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

    fn spec(max_loss: f64) -> IcmpSpec {
        let raw: RawIcmp = toml::from_str(&format!(
            "host = \"127.0.0.1\"\ncount = 4\nmax_loss = {max_loss}"
        ))
        .unwrap();
        raw.validate("icmp", Duration::from_secs(5), &mut Problems::default())
            .unwrap()
    }

    #[test]
    fn loss_above_max_loss_fails_and_every_reply_lost_says_so() {
        let mut o = Observed {
            sent: 4,
            received: 3,
            replies: vec![
                Reply {
                    seq: 0,
                    rtt_us: Some(30),
                },
                Reply {
                    seq: 1,
                    rtt_us: None,
                },
                Reply {
                    seq: 2,
                    rtt_us: Some(10),
                },
                Reply {
                    seq: 3,
                    rtt_us: Some(20),
                },
            ],
            ..Observed::default()
        };
        let mut phases = Phases::default();
        assert!(verdict(&spec(0.25), &mut o, &mut phases).is_ok());
        assert_eq!(o.loss, 0.25);
        assert_eq!(o.rtt_us.unwrap().p50, 20);
        let f = verdict(&spec(0.0), &mut o, &mut phases).unwrap_err();
        assert_eq!(
            f,
            Failure::IcmpPacketLoss {
                lost: 1,
                count: 4,
                max_loss: 0.0
            }
        );
        assert_eq!(
            f.to_string(),
            "1 of 4 echo replies lost (25%), max_loss is 0%"
        );
        let mut none = Observed {
            sent: 4,
            ..Observed::default()
        };
        let f = verdict(&spec(0.5), &mut none, &mut phases).unwrap_err();
        assert_eq!(f.to_string(), "no echo reply to any of 4 requests");
        assert!(none.rtt_us.is_none());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 50), 5);
        assert_eq!(percentile(&v, 90), 9);
        assert_eq!(percentile(&v, 100), 10);
        assert_eq!(percentile(&[7], 90), 7);
        assert_eq!(percentile(&[], 50), 0);
    }

    #[test]
    fn echo_requests_checksum_to_zero_and_replies_match_their_token() {
        let token = *b"outpost!";
        let p = echo_request(false, 0x1234, 7, &token, 56);
        assert_eq!(p.len(), 8 + 56);
        assert_eq!(checksum(&p), 0);
        let mut reply = p.clone();
        reply[0] = 0;
        assert_eq!(parse_reply(&reply, false, false, 0, &token), Some(7));
        assert_eq!(
            parse_reply(&reply, false, true, 0x1234, &token),
            None,
            "raw v4 has an IP header"
        );
        let mut ip = vec![0x45; 20];
        ip.extend_from_slice(&reply);
        assert_eq!(parse_reply(&ip, false, true, 0x1234, &token), Some(7));
        assert_eq!(parse_reply(&ip, false, true, 0x9999, &token), None);
        assert_eq!(parse_reply(&reply, false, false, 0, b"otherrun"), None);
        // Our own request, seen by a raw socket, is not a reply.
        assert_eq!(parse_reply(&p, false, false, 0, &token), None);
    }
}
