//! Name resolution through a configured resolver: the `resolvers` strings of a
//! check ([`ResolverSpec`]), our own DNS client for named servers, and
//! [`lookup_ips`] for checks that connect to a name.
//!
//! Named servers are asked directly with hickory-proto messages over UDP
//! (retried over TCP when the answer has TC=1) or TCP: the answer is exactly
//! what the server sent, TTLs included. hickory-resolver would clamp TTLs to
//! the chain's minimum when it chases a CNAME over several queries. When a
//! server ends a chain at an out-of-zone CNAME target, we ask the same server
//! for the target, as a stub resolver would. `"system"` uses hickory-resolver
//! with the machine's configuration (`/etc/resolv.conf`, `/etc/hosts`), no
//! cache; its TTLs are the resolver's (possibly clamped, counting down).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
};

use crate::check::{Failure, FailureCode};

/// Port used when a resolver string names none.
pub const DEFAULT_PORT: u16 = 53;
/// CNAME targets asked for again at most, per resolution.
const MAX_FOLLOW: usize = 8;
/// EDNS payload size we advertise (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// First UDP retransmission; doubles after each.
const UDP_RETRANSMIT: Duration = Duration::from_millis(1000);

/// How a named server is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP, retried over TCP when the answer is truncated (TC=1).
    Udp,
    /// TCP only.
    Tcp,
}

impl Transport {
    /// `"udp"` or `"tcp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One resolver, parsed from a `resolvers` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResolverSpec {
    /// `"system"`: the machine's resolver configuration, via hickory-resolver.
    System,
    /// A named server: `"192.0.2.53"`, `"192.0.2.53:5353"`, `"[2001:db8::53]:53"`,
    /// `"udp://…"` or `"tcp://…"`.
    Server {
        /// Address and port.
        addr: SocketAddr,
        /// UDP (with TCP retry on truncation) or TCP.
        transport: Transport,
    },
}

impl ResolverSpec {
    /// The `"system"` resolver, the default.
    pub fn system() -> Self {
        ResolverSpec::System
    }
}

impl FromStr for ResolverSpec {
    type Err = String;

    /// Parses `"system"`, `"IP"`, `"IP:PORT"`, `"[IPv6]:PORT"`, optionally prefixed
    /// with `udp://` or `tcp://`.
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("system") {
            return Ok(ResolverSpec::System);
        }
        let bad = || {
            format!(
                "invalid resolver {text:?}: use \"system\", \"IP:PORT\", \"udp://IP:PORT\" or \"tcp://IP:PORT\", e.g. \"udp://192.0.2.53:53\""
            )
        };
        let (transport, rest) = if let Some(r) = t.strip_prefix("udp://") {
            (Transport::Udp, r)
        } else if let Some(r) = t.strip_prefix("tcp://") {
            (Transport::Tcp, r)
        } else if t.contains("://") {
            return Err(bad());
        } else {
            (Transport::Udp, t)
        };
        let addr = if let Ok(a) = rest.parse::<SocketAddr>() {
            a
        } else if let Ok(ip) = rest
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            SocketAddr::new(ip, DEFAULT_PORT)
        } else {
            return Err(bad());
        };
        if addr.port() == 0 {
            return Err(bad());
        }
        Ok(ResolverSpec::Server { addr, transport })
    }
}

impl fmt::Display for ResolverSpec {
    /// The canonical spelling: `system`, `udp://192.0.2.53:53`, `tcp://[::1]:5353`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolverSpec::System => f.write_str("system"),
            ResolverSpec::Server { addr, transport } => {
                write!(f, "{}://{addr}", transport.as_str())
            }
        }
    }
}

/// Why a resolver gave no DNS answer at all. An answer with an error rcode
/// (NXDOMAIN, SERVFAIL…) is a [`Resolution`], not a `QueryError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No answer before the deadline.
    #[error("no answer from {resolver} before the deadline")]
    Timeout {
        /// The resolver asked.
        resolver: String,
    },
    /// The UDP answer was truncated and the TCP retry failed.
    #[error("{resolver} truncated the UDP answer and the TCP retry failed: {error}")]
    Truncated {
        /// The resolver asked.
        resolver: String,
        /// Why TCP failed.
        error: String,
    },
    /// The server's port refused the connection (TCP) or answered with ICMP
    /// port unreachable (UDP).
    #[error("{resolver} refused the connection")]
    Refused {
        /// The resolver asked.
        resolver: String,
    },
    /// The answer could not be decoded or did not match the question.
    #[error("{resolver} sent an invalid answer: {reason}")]
    Malformed {
        /// The resolver asked.
        resolver: String,
        /// What was wrong.
        reason: String,
    },
    /// Another network or resolver error.
    #[error("{resolver}: {error}")]
    Other {
        /// The resolver asked.
        resolver: String,
        /// The error text.
        error: String,
    },
    /// The name is not a valid DNS name.
    #[error("invalid DNS name {0:?}")]
    InvalidName(String),
}

impl QueryError {
    /// The failure code a check reports for this error.
    pub fn code(&self) -> FailureCode {
        match self {
            QueryError::Timeout { .. } => FailureCode::DnsTimeout,
            QueryError::Truncated { .. } => FailureCode::DnsTruncated,
            QueryError::Refused { .. } => FailureCode::ConnectionRefused,
            QueryError::Malformed { .. } | QueryError::Other { .. } => FailureCode::DnsFailure,
            QueryError::InvalidName(_) => FailureCode::InternalError,
        }
    }

    /// The failure a check reports for this error, asking for `name`.
    pub fn failure(&self, name: &str) -> Failure {
        match self {
            QueryError::Timeout { resolver } => Failure::DnsTimeout {
                name: name.to_owned(),
                resolver: Some(resolver.clone()),
                after: None,
            },
            QueryError::Truncated { resolver, error } => Failure::DnsTruncated {
                resolver: resolver.clone(),
                error: error.clone(),
            },
            QueryError::Refused { resolver } => Failure::ConnectionRefused {
                address: resolver.clone(),
            },
            QueryError::Malformed { resolver, reason } => Failure::DnsFailure {
                name: name.to_owned(),
                resolver: Some(resolver.clone()),
                reason: format!("invalid answer: {reason}"),
            },
            QueryError::Other { resolver, error } => Failure::DnsFailure {
                name: name.to_owned(),
                resolver: Some(resolver.clone()),
                reason: error.clone(),
            },
            QueryError::InvalidName(n) => Failure::InternalError {
                reason: format!("invalid DNS name {n:?}"),
            },
        }
    }
}

/// What one resolver answered for one name and type.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The response code of the last answer.
    pub rcode: ResponseCode,
    /// The answer's records in chain order: CNAME hops from the asked name,
    /// then the records of the asked type at the chain's end. Records that
    /// are not on the chain are left out.
    pub records: Vec<Record>,
    /// The transport of the last answer (`None` for the system resolver).
    pub transport: Option<Transport>,
    /// True when some UDP answer was truncated and retried over TCP.
    pub truncated_retried: bool,
    /// For an answer without records: how long caches keep the negative
    /// answer (the authority SOA's TTL capped by its minimum), when sent.
    pub negative_ttl: Option<u32>,
    /// Queries sent (more than one when out-of-zone CNAME targets were followed).
    pub queries: u32,
    /// Time from the first query to the last answer.
    pub elapsed: Duration,
}

/// A fully qualified name from user text (`"www.example.net"` or with the dot).
pub fn fqdn(name: &str) -> Result<Name, QueryError> {
    let t = name.trim().trim_end_matches('.');
    if t.is_empty() {
        return Err(QueryError::InvalidName(name.to_owned()));
    }
    Name::from_utf8(format!("{t}.")).map_err(|_| QueryError::InvalidName(name.to_owned()))
}

/// Resolves `name`/`rtype` through `resolver` before `deadline`.
pub async fn resolve(
    resolver: &ResolverSpec,
    name: &Name,
    rtype: RecordType,
    deadline: tokio::time::Instant,
) -> Result<Resolution, QueryError> {
    let label = resolver.to_string();
    let work = async {
        match resolver {
            ResolverSpec::System => resolve_system(name, rtype, deadline).await,
            ResolverSpec::Server { addr, transport } => {
                resolve_server(*addr, *transport, name, rtype, deadline).await
            }
        }
    };
    // Every path has its own deadline handling; this bounds what they missed.
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(QueryError::Timeout { resolver: label }),
    }
}

async fn resolve_server(
    addr: SocketAddr,
    transport: Transport,
    name: &Name,
    rtype: RecordType,
    deadline: tokio::time::Instant,
) -> Result<Resolution, QueryError> {
    let started = Instant::now();
    let mut out = Resolution {
        rcode: ResponseCode::NoError,
        records: Vec::new(),
        transport: None,
        truncated_retried: false,
        negative_ttl: None,
        queries: 0,
        elapsed: Duration::ZERO,
    };
    let mut current = name.clone();
    let mut asked = vec![current.to_lowercase()];
    loop {
        let ex = exchange(addr, transport, &current, rtype, deadline).await?;
        out.queries += 1;
        out.transport = Some(ex.transport);
        out.truncated_retried |= ex.truncated_retried;
        out.rcode = ex.message.metadata.response_code;
        out.negative_ttl = ex.message.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        });
        let (chain, end, complete) = order_chain(&ex.message.answers, &current, rtype);
        let hopped = !chain.is_empty() && !complete;
        out.records.extend(chain);
        if out.rcode != ResponseCode::NoError
            || complete
            || !hopped
            || rtype == RecordType::CNAME
            || asked.len() > MAX_FOLLOW
        {
            break;
        }
        // The server ended the chain at a CNAME whose target it does not
        // serve: ask it for the target, as a stub resolver would.
        let next = end.to_lowercase();
        if asked.contains(&next) {
            break; // loop
        }
        asked.push(next);
        current = end;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// The records of `answers` on the chain from `start`: CNAME hops, then the
/// `rtype` records at the end. Returns them, the chain's end name, and whether
/// records of `rtype` were found there.
pub fn order_chain(
    answers: &[Record],
    start: &Name,
    rtype: RecordType,
) -> (Vec<Record>, Name, bool) {
    let mut out = Vec::new();
    let mut current = start.clone();
    for _ in 0..=answers.len() {
        let here: Vec<&Record> = answers
            .iter()
            .filter(|r| r.name.eq_ignore_root(&current))
            .collect();
        let wanted: Vec<Record> = here
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| (*r).clone())
            .collect();
        if !wanted.is_empty() {
            out.extend(wanted);
            return (out, current, true);
        }
        let cname = here.iter().find_map(|r| match &r.data {
            RData::CNAME(t) => Some(((*r).clone(), t.0.clone())),
            _ => None,
        });
        match cname {
            Some((rec, target)) if !out.contains(&rec) => {
                out.push(rec);
                current = target;
            }
            _ => break,
        }
    }
    (out, current, false)
}

/// One question and its answer.
struct Exchange {
    message: Message,
    transport: Transport,
    truncated_retried: bool,
}

async fn exchange(
    addr: SocketAddr,
    transport: Transport,
    name: &Name,
    rtype: RecordType,
    deadline: tokio::time::Instant,
) -> Result<Exchange, QueryError> {
    let resolver = ResolverSpec::Server { addr, transport }.to_string();
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    query.set_edns(edns);
    let bytes = query.to_vec().map_err(|e| QueryError::Other {
        resolver: resolver.clone(),
        error: format!("cannot encode the query: {e}"),
    })?;
    let id = query.metadata.id;
    let check = |m: &Message| answers_question(m, id, name, rtype);
    match transport {
        Transport::Tcp => {
            let message = tcp_exchange(addr, &bytes, deadline, &resolver, &check).await?;
            Ok(Exchange {
                message,
                transport: Transport::Tcp,
                truncated_retried: false,
            })
        }
        Transport::Udp => {
            let message = udp_exchange(addr, &bytes, deadline, &resolver, &check).await?;
            if !message.metadata.truncation {
                return Ok(Exchange {
                    message,
                    transport: Transport::Udp,
                    truncated_retried: false,
                });
            }
            match tcp_exchange(addr, &bytes, deadline, &resolver, &check).await {
                Ok(message) => Ok(Exchange {
                    message,
                    transport: Transport::Tcp,
                    truncated_retried: true,
                }),
                Err(e) => Err(QueryError::Truncated {
                    resolver,
                    error: match e {
                        QueryError::Timeout { .. } => "no TCP answer before the deadline".into(),
                        QueryError::Refused { .. } => "TCP connection refused".into(),
                        other => other.to_string(),
                    },
                }),
            }
        }
    }
}

/// `None` when `m` answers our question; otherwise why not.
fn answers_question(m: &Message, id: u16, name: &Name, rtype: RecordType) -> Option<String> {
    if m.metadata.id != id {
        return Some(format!(
            "answer id {} does not match query id {id}",
            m.metadata.id
        ));
    }
    if m.metadata.message_type != MessageType::Response {
        return Some("a query came back instead of a response".into());
    }
    match m.queries.as_slice() {
        // Some servers drop the question from error answers.
        [] => None,
        [q] if q.query_type == rtype && q.name.eq_ignore_root(name) => None,
        _ => Some("the answer is for another question".into()),
    }
}

fn io_error(e: &std::io::Error, resolver: &str) -> QueryError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => QueryError::Refused {
            resolver: resolver.to_owned(),
        },
        _ => QueryError::Other {
            resolver: resolver.to_owned(),
            error: e.to_string(),
        },
    }
}

async fn udp_exchange(
    addr: SocketAddr,
    query: &[u8],
    deadline: tokio::time::Instant,
    resolver: &str,
    check: &impl Fn(&Message) -> Option<String>,
) -> Result<Message, QueryError> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| io_error(&e, resolver))?;
    // Connected: only the server's datagrams arrive, and ICMP errors surface.
    sock.connect(addr)
        .await
        .map_err(|e| io_error(&e, resolver))?;
    let mut buf = vec![0u8; 65_535];
    let mut wait = UDP_RETRANSMIT;
    let mut last_invalid: Option<String> = None;
    loop {
        sock.send(query).await.map_err(|e| io_error(&e, resolver))?;
        let resend_at = (tokio::time::Instant::now() + wait).min(deadline);
        wait *= 2;
        loop {
            match tokio::time::timeout_at(resend_at, sock.recv(&mut buf)).await {
                Err(_) => break, // retransmit (or give up at the deadline)
                Ok(Err(e)) => return Err(io_error(&e, resolver)),
                Ok(Ok(n)) => match Message::from_vec(&buf[..n]) {
                    Ok(m) => match check(&m) {
                        None => return Ok(m),
                        Some(why) => last_invalid = Some(why),
                    },
                    Err(e) => last_invalid = Some(format!("undecodable answer: {e}")),
                },
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_invalid {
                Some(reason) => QueryError::Malformed {
                    resolver: resolver.to_owned(),
                    reason,
                },
                None => QueryError::Timeout {
                    resolver: resolver.to_owned(),
                },
            });
        }
    }
}

async fn tcp_exchange(
    addr: SocketAddr,
    query: &[u8],
    deadline: tokio::time::Instant,
    resolver: &str,
    check: &impl Fn(&Message) -> Option<String>,
) -> Result<Message, QueryError> {
    let work = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| io_error(&e, resolver))?;
        let _ = stream.set_nodelay(true);
        let len = u16::try_from(query.len()).map_err(|_| QueryError::Other {
            resolver: resolver.to_owned(),
            error: "query too large".into(),
        })?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream
            .write_all(&framed)
            .await
            .map_err(|e| io_error(&e, resolver))?;
        let malformed = |reason: String| QueryError::Malformed {
            resolver: resolver.to_owned(),
            reason,
        };
        let len = stream.read_u16().await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                malformed("connection closed without an answer".into())
            }
            _ => io_error(&e, resolver),
        })?;
        let mut buf = vec![0u8; usize::from(len)];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    malformed("connection closed mid-answer".into())
                }
                _ => io_error(&e, resolver),
            })?;
        let m =
            Message::from_vec(&buf).map_err(|e| malformed(format!("undecodable answer: {e}")))?;
        match check(&m) {
            None => Ok(m),
            Some(why) => Err(malformed(why)),
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(QueryError::Timeout {
            resolver: resolver.to_owned(),
        }),
    }
}

async fn resolve_system(
    name: &Name,
    rtype: RecordType,
    deadline: tokio::time::Instant,
) -> Result<Resolution, QueryError> {
    use hickory_resolver::net::{DnsError, NetError};

    let label = "system".to_owned();
    let resolver = system_resolver(deadline).map_err(|error| QueryError::Other {
        resolver: label.clone(),
        error,
    })?;
    let started = Instant::now();
    let mut out = Resolution {
        rcode: ResponseCode::NoError,
        records: Vec::new(),
        transport: None,
        truncated_retried: false,
        negative_ttl: None,
        queries: 1,
        elapsed: Duration::ZERO,
    };
    match resolver.lookup(name.clone(), rtype).await {
        Ok(lookup) => {
            out.records = order_chain(lookup.answers(), name, rtype).0;
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
            out.rcode = nr.response_code;
            out.negative_ttl = nr.negative_ttl;
        }
        Err(NetError::Dns(DnsError::ResponseCode(code))) => out.rcode = code,
        Err(NetError::Timeout) => return Err(QueryError::Timeout { resolver: label }),
        Err(NetError::Io(e)) => return Err(io_error(&e, &label)),
        Err(e) => {
            return Err(QueryError::Other {
                resolver: label,
                error: e.to_string(),
            });
        }
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

fn system_resolver(
    deadline: tokio::time::Instant,
) -> Result<hickory_resolver::TokioResolver, String> {
    let mut builder = hickory_resolver::TokioResolver::builder_tokio()
        .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
    let opts = builder.options_mut();
    // Every run asks afresh: a cache would hide what the servers answer now.
    opts.cache_size = 0;
    opts.preserve_intermediates = true;
    opts.timeout = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_millis(1));
    opts.attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot build the system resolver: {e}"))
}

/// Resolves `host` to every A and AAAA address through `resolver`, before
/// `deadline`, and reports how long it took. For the http (and later tls)
/// check when a check names its resolver:
///
/// ```ignore
/// let spec: ResolverSpec = "udp://10.0.0.53:53".parse()?; // or ResolverSpec::System
/// let (ips, took) = resolver::lookup_ips(&host, &spec, deadline).await?; // -> phases.dns = Some(took)
/// let addrs = ips.into_iter().map(|ip| SocketAddr::new(ip, port));
/// ```
///
/// - An IP literal (brackets allowed) is returned as is, in zero time.
/// - Named servers are asked for A and AAAA concurrently with our own client
///   (CNAMEs followed); IPv4 addresses come first, each family in answer order,
///   duplicates removed. One family failing is fine when the other has addresses.
/// - `"system"` uses hickory-resolver with the system configuration (search
///   domains and `/etc/hosts` apply, like getaddrinfo).
///
/// Failures carry the dns check's codes: `dns_nxdomain`, `dns_servfail`,
/// `dns_refused`, `dns_rcode_mismatch` (another rcode), `dns_timeout`,
/// `dns_truncated`, `connection_refused` (the resolver's port), `dns_failure`
/// (no addresses, or an invalid answer).
pub async fn lookup_ips(
    host: &str,
    resolver: &ResolverSpec,
    deadline: tokio::time::Instant,
) -> Result<(Vec<IpAddr>, Duration), Failure> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok((vec![ip], Duration::ZERO));
    }
    let started = Instant::now();
    let ips = match resolver {
        ResolverSpec::System => lookup_system_ips(host, deadline).await?,
        ResolverSpec::Server { .. } => {
            let name = fqdn(host).map_err(|e| e.failure(host))?;
            let (v4, v6) = futures_util::future::join(
                resolve(resolver, &name, RecordType::A, deadline),
                resolve(resolver, &name, RecordType::AAAA, deadline),
            )
            .await;
            let mut ips = Vec::new();
            let mut first_error = None;
            for r in [v4, v6] {
                match r {
                    Ok(res) if res.rcode == ResponseCode::NoError => {
                        ips.extend(res.records.iter().filter_map(|r| r.data.ip_addr()));
                    }
                    Ok(res) => {
                        first_error.get_or_insert_with(|| rcode_failure(host, resolver, res.rcode));
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.failure(host));
                    }
                }
            }
            if ips.is_empty()
                && let Some(f) = first_error
            {
                return Err(f);
            }
            ips
        }
    };
    let mut seen = std::collections::HashSet::new();
    let ips: Vec<IpAddr> = ips.into_iter().filter(|ip| seen.insert(*ip)).collect();
    if ips.is_empty() {
        return Err(Failure::DnsFailure {
            name: host.to_owned(),
            resolver: Some(resolver.to_string()),
            reason: "no A or AAAA records".into(),
        });
    }
    Ok((ips, started.elapsed()))
}

/// Address lookup the way the machine's own clients do it: getaddrinfo
/// (nsswitch, `/etc/hosts`, resolv.conf), so an http check sees what curl sees.
async fn lookup_system_ips(
    host: &str,
    deadline: tokio::time::Instant,
) -> Result<Vec<IpAddr>, Failure> {
    match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(addrs)) => {
            let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            // IPv4 first, like the server-based path; stable within a family.
            ips.sort_by_key(|ip| ip.is_ipv6());
            Ok(ips)
        }
        Ok(Err(e)) => Err(Failure::DnsFailure {
            name: host.to_owned(),
            resolver: Some("the system resolver".into()),
            reason: e.to_string(),
        }),
        Err(_) => Err(Failure::DnsTimeout {
            name: host.to_owned(),
            resolver: Some("the system resolver".into()),
            after: None,
        }),
    }
}

/// The failure for an unexpected (non-NOERROR) answer to an address lookup.
fn rcode_failure(host: &str, resolver: &ResolverSpec, rcode: ResponseCode) -> Failure {
    let (name, resolver) = (host.to_owned(), Some(resolver.to_string()));
    match rcode {
        ResponseCode::NXDomain => Failure::DnsNxdomain {
            name,
            resolver,
            expected: None,
        },
        ResponseCode::ServFail => Failure::DnsServfail {
            name,
            resolver,
            expected: None,
        },
        ResponseCode::Refused => Failure::DnsRefused {
            name,
            resolver,
            expected: None,
        },
        ResponseCode::NoError => Failure::DnsFailure {
            name,
            resolver,
            reason: "NOERROR without addresses".into(),
        },
        other => Failure::DnsRcodeMismatch {
            name,
            resolver,
            got: rcode_name(other),
            expected: Some("NOERROR".into()),
        },
    }
}

/// The mnemonic of a response code: `NOERROR`, `NXDOMAIN`, `SERVFAIL`…
pub fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// Parses an rcode mnemonic (case-insensitive) as written in config.
pub fn parse_rcode(text: &str) -> Option<ResponseCode> {
    Some(match text.trim().to_ascii_uppercase().as_str() {
        "NOERROR" => ResponseCode::NoError,
        "FORMERR" => ResponseCode::FormErr,
        "SERVFAIL" => ResponseCode::ServFail,
        "NXDOMAIN" => ResponseCode::NXDomain,
        "NOTIMP" => ResponseCode::NotImp,
        "REFUSED" => ResponseCode::Refused,
        "YXDOMAIN" => ResponseCode::YXDomain,
        "YXRRSET" => ResponseCode::YXRRSet,
        "NXRRSET" => ResponseCode::NXRRSet,
        "NOTAUTH" => ResponseCode::NotAuth,
        "NOTZONE" => ResponseCode::NotZone,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_strings_parse_and_print_canonically() {
        let cases = [
            ("system", "system"),
            ("SYSTEM", "system"),
            ("127.0.0.1:5353", "udp://127.0.0.1:5353"),
            ("192.0.2.53", "udp://192.0.2.53:53"),
            ("udp://192.0.2.53:53", "udp://192.0.2.53:53"),
            ("tcp://[::1]:5353", "tcp://[::1]:5353"),
            ("[2001:db8::53]", "udp://[2001:db8::53]:53"),
        ];
        for (text, canonical) in cases {
            let spec: ResolverSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(spec.to_string(), canonical);
        }
        for bad in [
            "",
            "dns.google",
            "https://1.1.1.1/dns-query",
            "udp://1.2.3.4:0",
            "1.2.3.4:x",
        ] {
            assert!(bad.parse::<ResolverSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rcodes_round_trip() {
        for name in [
            "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR",
        ] {
            assert_eq!(
                rcode_name(parse_rcode(name).unwrap_or(ResponseCode::Unknown(99))),
                name
            );
        }
        assert_eq!(parse_rcode("nxdomain"), Some(ResponseCode::NXDomain));
        assert_eq!(parse_rcode("bogus"), None);
    }

    #[test]
    fn chains_are_ordered_from_the_asked_name() {
        let n = |s: &str| fqdn(s).unwrap_or_else(|_| Name::root());
        let cname = |a: &str, b: &str| {
            Record::from_rdata(
                n(a),
                300,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(n(b))),
            )
        };
        let a = Record::from_rdata(
            n("c.test"),
            60,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 1))),
        );
        // Served out of order.
        let answers = vec![
            a.clone(),
            cname("b.test", "c.test"),
            cname("a.test", "b.test"),
        ];
        let (chain, end, complete) = order_chain(&answers, &n("A.test"), RecordType::A);
        assert!(complete);
        assert_eq!(end, n("c.test"));
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[2], a);
        // A loop ends without records.
        let looped = vec![cname("x.test", "y.test"), cname("y.test", "x.test")];
        let (chain, _, complete) = order_chain(&looped, &n("x.test"), RecordType::A);
        assert!(!complete);
        assert_eq!(chain.len(), 2);
    }
}
