//! A real authoritative DNS server on loopback, UDP and TCP on one port, serving a zone
//! the test changes while it runs.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use outpost_testkit::{DnsServer, RecordType, Rcode};
//! let dns = DnsServer::start().await?;
//! dns.set_cname("www.example.test", "blue.example.test", 300)?;
//! dns.set_records("blue.example.test", RecordType::A, &[(60, "192.0.2.10")])?;
//! // …later, the flip:
//! dns.set_cname("www.example.test", "green.example.test", 300)?;
//! dns.set_rcode("gone.example.test", Rcode::NxDomain);
//! let resolver = dns.udp_url(); // "udp://127.0.0.1:PORT"
//! # let _ = resolver; Ok(()) }
//! ```
//!
//! Answers are built like an authoritative server's: the records of the asked type at
//! the name, or the name's CNAME followed within the zone (each hop's record in the
//! answer section, with its own TTL), NXDOMAIN for names the zone does not hold, an
//! empty NOERROR (NODATA) for a name that exists without the type. A CNAME whose target
//! is not in the zone ends the answer there, as for an out-of-zone target. Names are
//! case-insensitive and written with or without the trailing dot.
//!
//! Robustness (the demo runs it for hours): undecodable packets and responses are
//! dropped or answered FORMERR, never a panic; UDP answers obey 512 bytes (or the
//! client's EDNS size) and are sent with TC=1 beyond it; TCP connections are capped
//! ([`MAX_TCP_CONNECTIONS`]) and closed after [`TCP_IDLE_TIMEOUT`] without a query;
//! the query log keeps the most recent [`MAX_LOGGED_QUERIES`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
pub use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::server::{ServerTask, bind_loopback};

/// Most recent queries kept by [`DnsServer::queries`].
pub const MAX_LOGGED_QUERIES: usize = 10_000;
/// TCP connections served at once; further ones are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection without a complete query for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// CNAME hops followed inside the zone for one answer (loops end earlier).
const MAX_CHAIN: usize = 16;

/// The transport a query arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsTransport {
    /// UDP.
    Udp,
    /// TCP (two-byte length prefix).
    Tcp,
}

/// A response code forced for a name with [`DnsServer::set_rcode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// SERVFAIL: the server failed.
    ServFail,
    /// REFUSED: the server will not answer.
    Refused,
}

impl Rcode {
    fn code(self) -> ResponseCode {
        match self {
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::ServFail => ResponseCode::ServFail,
            Rcode::Refused => ResponseCode::Refused,
        }
    }
}

/// One query as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    /// UDP or TCP.
    pub transport: DnsTransport,
    /// The asked name, lowercase, without the trailing dot.
    pub name: String,
    /// The asked type.
    pub rtype: RecordType,
}

#[derive(Default)]
struct Node {
    rrsets: HashMap<RecordType, Vec<(u32, RData)>>,
    rcode: Option<ResponseCode>,
}

#[derive(Default)]
struct Zone {
    nodes: HashMap<String, Node>,
}

struct State {
    zone: Mutex<Zone>,
    silent: AtomicBool,
    truncate_udp: AtomicBool,
    log: Mutex<VecDeque<DnsQuery>>,
    tcp_open: AtomicUsize,
}

/// A running loopback DNS server. Dropping it stops both listeners.
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<State>,
    udp: JoinHandle<()>,
    _tcp: ServerTask,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.udp.abort();
    }
}

/// Lowercase, no trailing dot: the zone's key for a name.
fn key(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn key_of(name: &Name) -> String {
    key(&name.to_ascii())
}

fn fqdn(name: &str) -> anyhow::Result<Name> {
    let k = key(name);
    Name::from_utf8(format!("{k}.")).with_context(|| format!("invalid DNS name {name:?}"))
}

/// Parses record data in zone-file presentation format; TXT takes the text as is.
fn parse_rdata(rtype: RecordType, text: &str) -> anyhow::Result<RData> {
    if rtype == RecordType::TXT {
        return Ok(RData::TXT(TXT::new(vec![text.to_owned()])));
    }
    RData::try_from_str(rtype, text)
        .map_err(|e| anyhow::anyhow!("invalid {rtype} record data {text:?}: {e}"))
}

impl DnsServer {
    /// Starts on `127.0.0.1` with a free port (UDP and TCP share it).
    pub async fn start() -> anyhow::Result<DnsServer> {
        // The kernel picks the UDP port; TCP on the same number may be taken, so retry.
        let mut last = None;
        for _ in 0..20 {
            match DnsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
                Ok(srv) => return Ok(srv),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no free port")))
    }

    /// Starts on `addr` (loopback only). With port 0 the UDP port is chosen by the kernel
    /// and TCP binds the same number.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<DnsServer> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "test servers bind loopback only, got {addr}; use 127.0.0.1:0 or another 127.x address"
        );
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding test DNS server (udp) to {addr}"))?;
        let addr = udp.local_addr().context("reading bound address")?;
        let listener = bind_loopback(addr).await?;
        let state = Arc::new(State {
            zone: Mutex::new(Zone::default()),
            silent: AtomicBool::new(false),
            truncate_udp: AtomicBool::new(false),
            log: Mutex::new(VecDeque::new()),
            tcp_open: AtomicUsize::new(0),
        });
        let udp_state = Arc::clone(&state);
        let udp = tokio::spawn(serve_udp(udp, udp_state));
        let tcp_state = Arc::clone(&state);
        let tcp = ServerTask::spawn(listener, move |stream, peer| {
            serve_tcp(stream, peer, Arc::clone(&tcp_state))
        });
        tracing::debug!(%addr, "testkit dns server listening");
        Ok(DnsServer {
            addr,
            state,
            udp,
            _tcp: tcp,
        })
    }

    /// The bound address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `udp://ADDR`, the resolver string for UDP (with TCP retry on truncation).
    pub fn udp_url(&self) -> String {
        format!("udp://{}", self.addr)
    }

    /// `tcp://ADDR`, the resolver string for TCP only.
    pub fn tcp_url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    fn zone(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.state
            .zone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the `rtype` records at `name` with `records`: `(ttl_seconds, data)` in
    /// zone-file presentation format — `"192.0.2.1"`, `"2001:db8::1"`,
    /// `"target.example.test."`, `"10 mail.example.test."`, `"10 5 443 svc.example.test."`,
    /// `"0 issue \"letsencrypt.org\""`, SOA as its seven fields; TXT data is taken as the
    /// text itself. An empty list removes them. Clears a forced rcode at `name`.
    pub fn set_records(
        &self,
        name: &str,
        rtype: RecordType,
        records: &[(u32, &str)],
    ) -> anyhow::Result<()> {
        fqdn(name)?;
        let parsed = records
            .iter()
            .map(|(ttl, text)| parse_rdata(rtype, text).map(|d| (*ttl, d)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.set_rdata(name, rtype, parsed);
        Ok(())
    }

    /// Like [`DnsServer::set_records`] with hickory record data.
    pub fn set_rdata(&self, name: &str, rtype: RecordType, records: Vec<(u32, RData)>) {
        let mut zone = self.zone();
        let node = zone.nodes.entry(key(name)).or_default();
        node.rcode = None;
        if records.is_empty() {
            node.rrsets.remove(&rtype);
        } else {
            node.rrsets.insert(rtype, records);
        }
    }

    /// Points `name` at `target` with a CNAME of `ttl` seconds (replacing any CNAME there).
    pub fn set_cname(&self, name: &str, target: &str, ttl: u32) -> anyhow::Result<()> {
        let target = fqdn(target)?;
        self.set_rdata(
            name,
            RecordType::CNAME,
            vec![(ttl, RData::CNAME(hickory_proto::rr::rdata::CNAME(target)))],
        );
        Ok(())
    }

    /// Answers every query for `name` (and chains passing through it) with `rcode` and
    /// no records, until [`DnsServer::clear_rcode`] or new records are set there.
    pub fn set_rcode(&self, name: &str, rcode: Rcode) {
        self.zone().nodes.entry(key(name)).or_default().rcode = Some(rcode.code());
    }

    /// Removes a forced rcode at `name`.
    pub fn clear_rcode(&self, name: &str) {
        if let Some(node) = self.zone().nodes.get_mut(&key(name)) {
            node.rcode = None;
        }
    }

    /// Removes `name` and everything at it (queries then get NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.zone().nodes.remove(&key(name));
    }

    /// `true`: drop every query without answering (an unresponsive server).
    pub fn set_silent(&self, silent: bool) {
        self.state.silent.store(silent, Ordering::SeqCst);
    }

    /// `true`: answer every UDP query with TC=1 and no records, so clients retry over TCP.
    pub fn set_truncate_udp(&self, truncate: bool) {
        self.state.truncate_udp.store(truncate, Ordering::SeqCst);
    }

    /// Queries received, oldest first (the most recent [`MAX_LOGGED_QUERIES`]),
    /// including ones dropped while silent.
    pub fn queries(&self) -> Vec<DnsQuery> {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Forgets the query log.
    pub fn clear_queries(&self) {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl State {
    fn log(&self, q: DnsQuery) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() >= MAX_LOGGED_QUERIES {
            log.pop_front();
        }
        log.push_back(q);
    }

    /// The wire answer to `packet`, or `None` to stay silent. `udp_limit` is `Some` for
    /// UDP (the size beyond which the answer is truncated).
    fn answer(&self, packet: &[u8], transport: DnsTransport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => return formerr(packet),
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        if let [q] = request.queries.as_slice() {
            self.log(DnsQuery {
                transport,
                name: key_of(&q.name),
                rtype: q.query_type,
            });
        }
        if self.silent.load(Ordering::SeqCst) {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.authoritative = true;
        let client_size = request.edns.as_ref().map(Edns::max_payload);
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            response.edns = Some(edns);
        }
        response.queries = request.queries.clone();
        let q = match (request.metadata.op_code, request.queries.as_slice()) {
            (OpCode::Query, [q]) => q,
            (OpCode::Query, _) => {
                response.metadata.response_code = ResponseCode::FormErr;
                return response.to_vec().ok();
            }
            _ => {
                response.metadata.response_code = ResponseCode::NotImp;
                return response.to_vec().ok();
            }
        };
        let (rcode, answers) = self.resolve(&q.name, q.query_type);
        response.metadata.response_code = rcode;
        response.answers = answers;
        let full = response.to_vec().ok()?;
        if transport == DnsTransport::Udp {
            let limit = usize::from(client_size.unwrap_or(512).clamp(512, 4096));
            if self.truncate_udp.load(Ordering::SeqCst) || full.len() > limit {
                response.answers.clear();
                response.metadata.truncation = true;
                return response.to_vec().ok();
            }
        }
        Some(full)
    }

    fn resolve(&self, qname: &Name, qtype: RecordType) -> (ResponseCode, Vec<Record>) {
        let zone = self.zone.lock().unwrap_or_else(PoisonError::into_inner);
        let mut answers = Vec::new();
        let mut current = qname.clone();
        let mut seen = HashSet::new();
        for hop in 0..MAX_CHAIN {
            let k = key_of(&current);
            if !seen.insert(k.clone()) {
                break; // CNAME loop: answer with the chain so far
            }
            let Some(node) = zone.nodes.get(&k) else {
                // Not in the zone: NXDOMAIN for the asked name, an out-of-zone target
                // for a chain (the client follows it).
                let rcode = if hop == 0 {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                return (rcode, answers);
            };
            if let Some(rcode) = node.rcode {
                return (rcode, answers);
            }
            if let Some(set) = node.rrsets.get(&qtype) {
                answers.extend(
                    set.iter()
                        .map(|(ttl, d)| Record::from_rdata(current.clone(), *ttl, d.clone())),
                );
                break;
            }
            match node.rrsets.get(&RecordType::CNAME).and_then(|s| s.first()) {
                Some((ttl, RData::CNAME(target))) => {
                    answers.push(Record::from_rdata(
                        current.clone(),
                        *ttl,
                        RData::CNAME(target.clone()),
                    ));
                    current = target.0.clone();
                }
                _ => break, // NODATA
            }
        }
        (ResponseCode::NoError, answers)
    }
}

/// FORMERR for a packet with a readable header that is not a query we can decode;
/// nothing for shorter garbage or for responses.
fn formerr(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

async fn serve_udp(socket: UdpSocket, state: Arc<State>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(err) => {
                // ICMP errors from earlier sends surface here on some systems.
                tracing::debug!(error = %err, "testkit dns udp receive failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        if let Some(reply) = state.answer(&buf[..n], DnsTransport::Udp)
            && let Err(err) = socket.send_to(&reply, peer).await
        {
            tracing::debug!(%peer, error = %err, "testkit dns udp send failed");
        }
    }
}

async fn serve_tcp(mut stream: TcpStream, peer: SocketAddr, state: Arc<State>) {
    let open = state.tcp_open.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = Decrement(Arc::clone(&state));
    if open > MAX_TCP_CONNECTIONS {
        tracing::debug!(%peer, "testkit dns: too many tcp connections; closing");
        return;
    }
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let read = async {
            let len = stream.read_u16().await?;
            let len = usize::from(len);
            stream.read_exact(&mut buf[..len]).await?;
            Ok::<usize, std::io::Error>(len)
        };
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, read).await {
            Ok(Ok(len)) => len,
            Ok(Err(_)) | Err(_) => return,
        };
        let Some(reply) = state.answer(&buf[..len], DnsTransport::Tcp) else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

struct Decrement(Arc<State>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.tcp_open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hickory_proto::op::Query;

    async fn ask_udp(addr: SocketAddr, packet: &[u8]) -> Option<Message> {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(packet, addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(Message::from_vec(&buf[..n]).unwrap()),
            _ => None,
        }
    }

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(fqdn(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn answers_a_chain_over_udp_and_tcp() {
        let dns = DnsServer::start().await.unwrap();
        dns.set_cname("www.example.test", "blue.example.test.", 300)
            .unwrap();
        dns.set_records("blue.example.test", RecordType::A, &[(60, "192.0.2.10")])
            .unwrap();
        let m = ask_udp(dns.addr(), &query("WWW.example.test", RecordType::A))
            .await
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].ttl, 300);
        assert_eq!(m.answers[1].ttl, 60);

        let mut tcp = TcpStream::connect(dns.addr()).await.unwrap();
        let q = query("www.example.test", RecordType::A);
        tcp.write_u16(q.len() as u16).await.unwrap();
        tcp.write_all(&q).await.unwrap();
        let len = tcp.read_u16().await.unwrap();
        let mut buf = vec![0u8; len as usize];
        tcp.read_exact(&mut buf).await.unwrap();
        assert_eq!(Message::from_vec(&buf).unwrap().answers.len(), 2);
        let log = dns.queries();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].transport, DnsTransport::Udp);
        assert_eq!(log[0].name, "www.example.test");
        assert_eq!(log[1].transport, DnsTransport::Tcp);
    }

    #[tokio::test]
    async fn garbage_is_dropped_or_formerr_and_the_server_keeps_serving() {
        let dns = DnsServer::start().await.unwrap();
        dns.set_records("a.test", RecordType::A, &[(5, "192.0.2.1")])
            .unwrap();
        assert!(ask_udp(dns.addr(), b"\x01").await.is_none());
        let mut junk = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[0xff; 40]);
        let m = ask_udp(dns.addr(), &junk).await.unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let m = ask_udp(dns.addr(), &query("a.test", RecordType::A))
            .await
            .unwrap();
        assert_eq!(m.answers.len(), 1);
    }

    #[tokio::test]
    async fn rcodes_silence_and_truncation() {
        let dns = DnsServer::start().await.unwrap();
        let m = ask_udp(dns.addr(), &query("missing.test", RecordType::A))
            .await
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        dns.set_rcode("broken.test", Rcode::ServFail);
        let m = ask_udp(dns.addr(), &query("broken.test", RecordType::A))
            .await
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        dns.set_records("t.test", RecordType::A, &[(5, "192.0.2.1")])
            .unwrap();
        dns.set_truncate_udp(true);
        let m = ask_udp(dns.addr(), &query("t.test", RecordType::A))
            .await
            .unwrap();
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        dns.set_silent(true);
        assert!(
            ask_udp(dns.addr(), &query("t.test", RecordType::A))
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn large_answers_are_truncated_over_udp() {
        let dns = DnsServer::start().await.unwrap();
        let texts: Vec<String> = (0..20).map(|i| format!("{i:0>60}")).collect();
        let recs: Vec<(u32, &str)> = texts.iter().map(|t| (5, t.as_str())).collect();
        dns.set_records("big.test", RecordType::TXT, &recs).unwrap();
        let m = ask_udp(dns.addr(), &query("big.test", RecordType::TXT))
            .await
            .unwrap();
        assert!(m.metadata.truncation);
    }

    #[test]
    fn every_common_type_parses_from_presentation_format() {
        for (t, s) in [
            (RecordType::A, "192.0.2.1"),
            (RecordType::AAAA, "2001:db8::1"),
            (RecordType::CNAME, "x.example.test."),
            (RecordType::NS, "ns1.example.test."),
            (RecordType::MX, "10 mail.example.test."),
            (RecordType::SRV, "10 5 443 svc.example.test."),
            (RecordType::CAA, "0 issue \"letsencrypt.org\""),
            (
                RecordType::SOA,
                "ns1.example.test. hostmaster.example.test. 2024010101 7200 3600 1209600 300",
            ),
            (RecordType::TXT, "v=spf1 -all"),
        ] {
            parse_rdata(t, s).unwrap();
        }
    }
}
