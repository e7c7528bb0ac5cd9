//! One request on a fresh connection: resolve (unless pinned) → connect →
//! TLS with full verification → HTTP/1.1 or HTTP/2 → bounded body read.
//! Every phase is timed and written into the hop record as it completes, so
//! a deadline that cuts the hop short still leaves what happened visible.
//!
//! Nothing here enforces the deadline: the caller wraps the whole chain in
//! one `timeout_at`, which is what bounds slow-drip bodies (a per-read
//! timeout would not).

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::{HttpVersion, sniff::Sniff};
use crate::{
    check::{Failure, FailureCode, Phases, RunContext, failure::ProtocolProblem},
    tls::{self, Trust},
};

/// The phase a hop is in, named in timeout messages.
pub use crate::check::failure::Phase;

/// TLS facts of one https hop (`tls` of a hop in `details.chain`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsInfo {
    /// `TLSv1_3`, `TLSv1_2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Negotiated cipher suite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// Negotiated ALPN protocol (`h2`, `http/1.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// Certificates the server presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_length: Option<usize>,
    /// The chain verified (trust, validity dates, name).
    pub verified: bool,
    /// The failure code when it did not.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::check::failure::lenient_code"
    )]
    pub error: Option<FailureCode>,
    /// The leaf certificate's notAfter, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_not_after: Option<String>,
    /// Whole days from now until notAfter (negative once expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_days_left: Option<i64>,
    /// The presented certificates, for the controller's inventory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<crate::check::trust::CertInfo>,
}

/// One hop of a chain as recorded in `details.chain`. Filled in as the hop
/// goes, so a deadline that cuts it short leaves what happened visible.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hop {
    /// The URL requested.
    pub url: String,
    /// The method actually used on this hop.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The address connected to (`ip:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether the check's request body was sent on this hop; absent when the
    /// check has no body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_kept: Option<bool>,
    /// True when Authorization/Cookie were withheld on this cross-origin hop.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub credentials_dropped: bool,
    /// Response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The Location header resolved against this hop's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    /// TLS facts (https hops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// Body bytes read (the final hop only; redirect bodies are not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<usize>,
    /// This hop's phase timings.
    pub phases_us: Phases,
    /// Policy rules this hop's redirect breaks (failure codes). In a check
    /// the first one ends the chain; `outpost-probe check` follows anyway.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::check::failure::lenient_codes"
    )]
    pub violations: Vec<FailureCode>,
    /// The phase the run's deadline interrupted ([`Phase::name`]: `"dns"`,
    /// `"connect"`, `"tls"`, `"first byte"`, `"body"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_phase: Option<String>,
    /// Failure code of this hop's own error (connect, TLS, protocol).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::check::failure::lenient_code"
    )]
    pub error: Option<FailureCode>,
    /// The phase in progress while the hop runs (not on the wire; read on
    /// timeout).
    #[serde(skip)]
    pub phase: Phase,
}

/// Where to connect.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// This address (the address under test, or a `resolve_to` entry).
    Pinned(SocketAddr),
    /// Resolve the host; try each address in turn until one connects.
    Resolve,
}

/// Connection settings shared by every hop of a check.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Roots for https.
    pub trust: &'a Trust,
    /// ALPN offer / h2c.
    pub http_version: HttpVersion,
    /// Response head cap.
    pub max_header_bytes: usize,
    /// Resolver for hops that resolve their host.
    pub resolver: &'a crate::resolver::ResolverSpec,
}

/// A request for one hop.
#[derive(Debug, Clone)]
pub struct HopRequest<'a> {
    /// Absolute URL.
    pub uri: &'a Uri,
    /// Method.
    pub method: &'a http::Method,
    /// Headers, credentials included unless dropped.
    pub headers: &'a [(http::HeaderName, http::HeaderValue)],
    /// Body (empty for none).
    pub body: Bytes,
}

/// A response head with its unread body. The connection lives as long as this.
pub struct Response {
    /// Status.
    pub status: http::StatusCode,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Protocol version.
    pub version: http::Version,
    body: Incoming,
    max_header_bytes: usize,
    _conn: AbortOnDrop,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Aborts the task (a connection driver) when dropped: nothing outlives the run.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Host (without brackets) and port of an absolute URL.
pub fn host_port(uri: &Uri) -> (String, u16) {
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    (host, uri.port_u16().unwrap_or(if https { 443 } else { 80 }))
}

/// The run's own deadline bounds every hop; a lookup needs none of its own.
fn far_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

/// Sends `req` on a fresh connection and returns the response head. Fills
/// `hop` (address, phases, TLS, status, version) as it goes.
pub async fn send(
    req: &HopRequest<'_>,
    target: Target,
    limits: Limits<'_>,
    ctx: &RunContext,
    hop: &mut Hop,
) -> Result<Response, Failure> {
    let https = req.uri.scheme_str() == Some("https");
    let (host, port) = host_port(req.uri);
    let tcp = match target {
        Target::Pinned(addr) => connect(addr, hop).await?,
        Target::Resolve => {
            let addrs = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => {
                    hop.phase = Phase::Dns;
                    let (ips, took) = Box::pin(crate::resolver::lookup_ips(
                        &host,
                        limits.resolver,
                        far_deadline(),
                    ))
                    .await?;
                    hop.phases_us.dns = Some(took);
                    ips.into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect()
                }
            };
            let mut last = Failure::DnsFailure {
                name: host.clone(),
                resolver: Some(limits.resolver.to_string()),
                reason: "no addresses".into(),
            };
            let mut tcp = None;
            // Like real clients: the next address when one refuses.
            for addr in addrs {
                match connect(addr, hop).await {
                    Ok(s) => {
                        tcp = Some(s);
                        break;
                    }
                    Err(f) => last = f,
                }
            }
            tcp.ok_or(last)?
        }
    };
    let h2c = !https && limits.http_version == HttpVersion::Http2;
    if https {
        hop.phase = Phase::Tls;
        let alpn: &[&[u8]] = match limits.http_version {
            HttpVersion::Auto => &[b"h2", b"http/1.1"],
            HttpVersion::Http1 => &[b"http/1.1"],
            HttpVersion::Http2 => &[b"h2"],
        };
        let cfg = tls::client_config(limits.trust, alpn)
            .map_err(|reason| Failure::InternalError { reason })?;
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            Failure::InternalError {
                reason: format!("invalid server name {host:?}: {e}"),
            }
        })?;
        let t = Instant::now();
        // Boxed, like the handshakes below: these futures are large (the TLS
        // one holds a whole client connection) and only live for their phase;
        // inline, every run waiting on a slow server would carry them.
        let stream = match Box::pin(tokio_rustls::TlsConnector::from(cfg).connect(name, tcp)).await
        {
            Ok(s) => s,
            Err(e) => {
                let f = tls::classify(&e);
                hop.tls = Some(TlsInfo {
                    verified: false,
                    error: Some(f.code()),
                    ..TlsInfo::default()
                });
                return Err(f);
            }
        };
        hop.phases_us.tls = Some(t.elapsed());
        let (_, conn) = stream.get_ref();
        let h2 = conn.alpn_protocol() == Some(b"h2");
        hop.tls = Some(tls_info(conn));
        if limits.http_version == HttpVersion::Http2 && !h2 {
            return Err(Failure::ProtocolError {
                problem: ProtocolProblem::H2Refused,
            });
        }
        Box::pin(exchange(stream, h2, req, limits, ctx, hop)).await
    } else {
        Box::pin(exchange(tcp, h2c, req, limits, ctx, hop)).await
    }
}

/// The TLS facts of a completed handshake: version, suite, ALPN and the
/// presented chain (for the inventory), the leaf's expiry.
pub fn tls_info(conn: &rustls::ClientConnection) -> TlsInfo {
    // One parse (memoized) feeds both the inventory and the leaf's expiry.
    let certificates = conn
        .peer_certificates()
        .map(crate::check::trust::describe_chain_cached)
        .unwrap_or_default();
    let leaf_not_after = certificates
        .first()
        .filter(|c| c.position == Some(0))
        .map(|c| c.not_after.clone());
    let not_after = leaf_not_after.as_deref().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let now = time::OffsetDateTime::now_utc();
    TlsInfo {
        version: conn.protocol_version().map(|v| format!("{v:?}")),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite())),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        chain_length: conn.peer_certificates().map(<[_]>::len),
        verified: true,
        error: None,
        leaf_not_after,
        leaf_days_left: not_after.map(|t| (t - now).whole_days()),
        certificates,
    }
}

/// Connects to `addr`, recording the address, the phase and the connect
/// time in `hop`; `TCP_NODELAY` is set (loopback latency).
pub async fn connect(addr: SocketAddr, hop: &mut Hop) -> Result<TcpStream, Failure> {
    hop.phase = Phase::Connect;
    hop.address = Some(addr.to_string());
    let t = Instant::now();
    let tcp = crate::check::target::connect(addr).await?;
    hop.phases_us.connect = Some(t.elapsed());
    Ok(tcp)
}

async fn exchange<S>(
    stream: S,
    h2: bool,
    req: &HopRequest<'_>,
    limits: Limits<'_>,
    ctx: &RunContext,
    hop: &mut Hop,
) -> Result<Response, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (stream, sniffed) = Sniff::new(stream);
    let io = TokioIo::new(stream);
    // What the peer sent says "not HTTP" better than hyper's error does.
    let fail = |e: hyper::Error| match sniffed.not_http() {
        Some(sent) if !h2 && !e.is_parse_too_large() => Failure::ProtocolError {
            problem: ProtocolProblem::NotHttp { sent },
        },
        _ => classify(&e, limits.max_header_bytes),
    };
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut b = Request::builder().method(req.method.clone());
    b = if h2 {
        b.uri(req.uri.clone()).version(http::Version::HTTP_2)
    } else {
        b.uri(path).header(http::header::HOST, authority)
    };
    b = b
        .header(
            http::header::USER_AGENT,
            concat!("outpost-probe/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-outpost-probe", ctx.probe_name.as_str())
        .header("x-outpost-region", ctx.region.as_str());
    if let Some(t) = ctx.trace.filter(|t| t.propagate) {
        b = b.header("traceparent", t.traceparent());
    }
    for (k, v) in req.headers {
        b = b.header(k, v);
    }
    let request = b
        .body(Full::new(req.body.clone()))
        .map_err(|e| Failure::InternalError {
            reason: format!("cannot build the request: {e}"),
        })?;

    hop.phase = Phase::FirstByte;
    let t = Instant::now();
    // The connection task dies with the response (AbortOnDrop): nothing
    // outlives the run, whatever the peer does.
    let (resp, conn) = if h2 {
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder.max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        let (mut sender, conn) = Box::pin(builder.handshake(io)).await.map_err(fail)?;
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        (sender.send_request(request).await, guard)
    } else {
        let (mut sender, conn) = Box::pin(
            hyper::client::conn::http1::Builder::new()
                .max_buf_size(limits.max_header_bytes.max(64 * 1024))
                .max_header_size(limits.max_header_bytes)
                .max_headers(256)
                .handshake(io),
        )
        .await
        .map_err(fail)?;
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        (sender.send_request(request).await, guard)
    };
    let resp = resp.map_err(fail)?;
    hop.phases_us.first_byte = Some(t.elapsed());
    let (parts, body) = resp.into_parts();
    hop.status = Some(parts.status.as_u16());
    hop.http_version = Some(format!("{:?}", parts.version));
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        version: parts.version,
        body,
        max_header_bytes: limits.max_header_bytes,
        _conn: conn,
    })
}

impl Response {
    /// Reads the body, failing with `body_too_large` past `max_body` bytes —
    /// at once, before reading, when the response announces more
    /// (`Content-Length`; hyper knows HEAD and 204/304 answers carry none).
    /// Keeps the bytes only when `keep`; memory is bounded by `max_body`.
    pub async fn read_body(
        &mut self,
        max_body: usize,
        keep: bool,
        hop: &mut Hop,
    ) -> Result<Bytes, Failure> {
        hop.phase = Phase::Body;
        let announced = hyper::body::Body::size_hint(&self.body).exact();
        if let Some(n) = announced
            && n > max_body as u64
        {
            return Err(Failure::BodyTooLarge {
                max_body,
                content_length: Some(n),
            });
        }
        let mut kept = BytesMut::new();
        let mut read = 0usize;
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| classify(&e, self.max_header_bytes))?;
            if let Some(data) = frame.data_ref() {
                read += data.len();
                hop.body_bytes = Some(read);
                if read > max_body {
                    return Err(Failure::BodyTooLarge {
                        max_body,
                        content_length: None,
                    });
                }
                if keep {
                    kept.extend_from_slice(data);
                }
            }
        }
        hop.body_bytes = Some(read);
        Ok(kept.freeze())
    }
}

/// Maps a hyper error to a failure, walking `source()` for the cause.
/// `max_header_bytes` is the cap a too-large head broke.
pub fn classify(e: &hyper::Error, max_header_bytes: usize) -> Failure {
    if e.is_parse_too_large() {
        return Failure::HeadersTooLarge { max_header_bytes };
    }
    let problem = if e.is_parse() || e.is_parse_status() {
        ProtocolProblem::InvalidResponse {
            error: e.to_string(),
        }
    } else if e.is_incomplete_message() {
        ProtocolProblem::Incomplete
    } else {
        let mut msg = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        ProtocolProblem::Other { error: msg }
    };
    Failure::ProtocolError { problem }
}

/// Sum of two optional phase durations.
pub fn add(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
    }
}
