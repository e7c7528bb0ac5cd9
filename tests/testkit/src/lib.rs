//! outpost-testkit: real loopback servers and generated PKI for Outpost's tests and demo.
//!
//! Every crate's tests (probe, controller, end-to-end) and the product demo talk to
//! these servers over real sockets on loopback, never the internet and never a mocked
//! client. Read [`pki`] first: most servers present an [`Identity`] issued by a [`Pki`].
//!
//! Modules:
//! - [`pki`]: roots, intermediates, leaves (ECDSA P-256, RSA-2048), self-signed leaves,
//!   cross-signs, expired / not-yet-valid material; rustls server and client configs.
//! - [`http`]: [`HttpServer`], an HTTP/1.1 + HTTP/2 server (optionally TLS) with exact
//!   path routes, handlers and a recorded request log.
//! - [`hostile`]: [`Hostile`] peers that misbehave at the TCP/HTTP level: silent,
//!   garbage, huge headers, endless body, drip-feed, reset, early close.
//! - [`pager`]: [`PagerReceiver`], a PagerDuty Events API v2 endpoint that validates
//!   like the real one and can be scripted to fail (429 with `Retry-After`, 500, …),
//!   and [`WebhookReceiver`], which records any POSTed JSON.
//! - [`dns`]: [`DnsServer`], an authoritative DNS server (UDP and TCP on one port) whose
//!   zone, rcodes, silence and UDP truncation the test changes while it runs.
//! - [`client`]: one HTTP(S) request over a fresh loopback connection, raw sockets
//!   for hostile-peer tests.
//! - [`otlp`]: [`OtlpReceiver`], an OTLP/gRPC trace receiver (opentelemetry-proto's
//!   `TraceService` on tonic) recording every exported span.
//! - [`grpc`]: [`GrpcHealthServer`], a gRPC server with tonic-health's `grpc.health.v1`
//!   service (statuses switched while it runs; plaintext h2c or TLS).
//! - [`fake_probe`]: [`FakeProbe`], a real `outpost.v1` gRPC client a test drives
//!   message by message (attach with a token, hello, batches, acks, assignments).
//! - [`wait`]: [`eventually`](wait::eventually), polling a condition until it holds,
//!   with a panic naming what it waited for.
//! - [`postgres`]: a throwaway PostgreSQL cluster per test process
//!   (Debian's binaries, `initdb` as `nobody`), one database per test
//!   ([`postgres::database`]); `OUTPOST_TEST_POSTGRES=skip` opts out.
//! - [`proxy`]: [`TcpProxy`], a loopback TCP forwarder a test stops to cut a
//!   process off from its server (e.g. a controller from PostgreSQL).
//! - [`tcp`]: [`TcpServer`], a line-protocol TCP server (SMTP/Redis/SSH-like banners and
//!   scripted replies, optionally TLS), or one that stays silent or streams garbage forever.
//! - [`proxy`]: [`TcpProxy`], a TCP proxy a test blackholes (half-open: bytes vanish,
//!   connections stay up), resets or heals, to cut a probe from its controller.
//! - [`token`]: [`TokenServer`], an OAuth2 token endpoint, a scripted login and a
//!   protected resource issuing and validating real HS256 JWTs, with knobs for
//!   lifetime, clock skew, a broken token endpoint and early rejection.
//!
//! Rules every server follows: it binds `127.0.0.1:0` unless told another loopback
//! address (anything else is refused); accepted sockets get `TCP_NODELAY`; it stops
//! when its handle is dropped or `shutdown()` is called; memory per connection is
//! bounded. TLS always uses rustls with the `ring` provider via
//! `builder_with_provider`, so the kit works whatever other providers are compiled in.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use outpost_testkit::{HttpServer, Pki, Reply};
//! let pki = Pki::new("outpost-test-root");
//! let srv = HttpServer::builder()
//!     .route("/health", Reply::text(200, "ok"))
//!     .tls(pki.leaf(&["localhost", "127.0.0.1"]))
//!     .run()
//!     .await?;
//! let url = srv.url("/health"); // https://localhost:PORT/health
//! # let _ = url; Ok(()) }
//! ```

pub mod client;
pub mod dns;
pub mod fake_probe;
pub mod grpc;
pub mod hostile;
pub mod http;
pub mod opsgenie;
pub mod otlp;
pub mod pager;
pub mod pki;
pub mod postgres;
pub mod proxy;
pub mod recorder;
mod server;
pub mod slack;
pub mod slowloris;
pub mod smtp;
pub mod tcp;
pub mod token;
pub mod wait;

pub use dns::{DnsQuery, DnsServer, DnsTransport, Rcode, RecordType};
pub use fake_probe::FakeProbe;
pub use grpc::GrpcHealthServer;
pub use hostile::{Behaviour, Hostile, HostileServer};
pub use http::{HttpServer, HttpServerBuilder, Reply, RequestInfo, RunningServer};
pub use opsgenie::{OpsgenieAlert, OpsgenieReceiver, OpsgenieRequest};
pub use otlp::OtlpReceiver;
pub use pager::{Forced, PagerEvent, PagerReceiver, Rejection, WebhookReceiver};
pub use pki::{Identity, KeyKind, LeafOptions, Pki};
pub use proxy::{ProxyMode, TcpProxy};
pub use recorder::Recorder;
pub use slack::{SlackMessage, SlackReceiver};
pub use slowloris::{Attacker, Slow};
pub use smtp::{SmtpMessage, SmtpServer};
pub use tcp::{TcpServer, TcpServerBuilder};
pub use token::{Claims, ResourceCall, TokenServer, TokenServerBuilder};
pub use tonic_health::ServingStatus;

/// A loopback port that was free a moment ago (bound, then released). Only for
/// addresses that must be known before the server starts — a config file for a
/// spawned binary, a restart on the same port; anything else binds `127.0.0.1:0`.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `N` bytes from the ring provider's CSPRNG (serial numbers, dedup keys, garbage).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system RNG works; key generation depends on it too");
    bytes
}
