//! Where a connection-level check (`tcp`, `grpc`, `icmp`) goes: a host, a
//! port, an optional address override and the resolver; and the TLS a
//! client wraps the connection in, verified through the same trust
//! machinery as https ([`crate::tls::client_config`]: Mozilla roots or a
//! `ca_file`, untrusted-before-expired).
//!
//! Each kind's `Raw*` table repeats the keys (`host`, `port`, `address`,
//! `resolver`, `tls`) because `deny_unknown_fields` and `flatten` do not mix;
//! their validation and meaning live here, once.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::{Failure, http::exchange::TlsInfo};
use crate::{
    config::Problems,
    resolver::{self, ResolverSpec},
    tls::Trust,
};

/// `tls = { … }` of a tcp or grpc check: the connection is TLS from the start.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClientTls {
    /// The name sent as SNI and that the certificate must cover. Default:
    /// `host`. Example: `"mail.example.net"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM bundle of roots to trust instead of the bundled Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Validated client TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientTls {
    /// SNI and the name checked.
    pub server_name: ServerName<'static>,
    /// Roots.
    pub trust: Trust,
}

/// A validated target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Host as written (brackets removed).
    pub host: String,
    /// Port (0 for icmp).
    pub port: u16,
    /// Connect here instead of resolving.
    pub address: Option<IpAddr>,
    /// Resolver for `host`.
    pub resolver: ResolverSpec,
}

/// Validates the target keys; `port` is required unless `None` is fine
/// (`needs_port = false`, icmp).
pub fn validate(
    host: &str,
    port: Option<u16>,
    needs_port: bool,
    address: Option<&str>,
    resolver: Option<&str>,
    path: &str,
    problems: &mut Problems,
) -> Target {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() || h.contains('/') || h.contains(' ') || h.contains("://") {
        problems.push(
            format!("{path}.host"),
            format!(
                "invalid host {host:?}: a DNS name or an IP address, e.g. \"mail.example.net\""
            ),
        );
    }
    let port = match port {
        Some(0) => {
            problems.push(format!("{path}.port"), "port must be 1–65535, got 0");
            0
        }
        Some(p) => p,
        None if needs_port => {
            problems.push(format!("{path}.port"), "port is required, e.g. port = 25");
            0
        }
        None => 0,
    };
    let address = address.and_then(|a| {
        a.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                problems.push(
                    format!("{path}.address"),
                    format!("invalid IP address {a:?}, e.g. \"192.0.2.10\""),
                )
            })
            .ok()
    });
    let resolver = match resolver.map(str::parse::<ResolverSpec>) {
        None => ResolverSpec::System,
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            problems.push(format!("{path}.resolver"), e);
            ResolverSpec::System
        }
    };
    Target {
        host: h.to_owned(),
        port,
        address,
        resolver,
    }
}

impl RawClientTls {
    /// Validates `tls` (`path` is `checks[0].tcp.tls`) for `host`.
    pub fn validate(&self, host: &str, path: &str, problems: &mut Problems) -> Option<ClientTls> {
        let name = self.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| {
                problems.push(
                    format!("{path}.server_name"),
                    format!("invalid server name {name:?}, e.g. \"mail.example.net\""),
                )
            })
            .ok();
        if let Some(p) = &self.ca_file
            && let Err(e) = crate::tls::read_pem_certs(p)
        {
            problems.push(format!("{path}.ca_file"), e);
        }
        Some(ClientTls {
            server_name: server_name?,
            trust: self.ca_file.clone().map_or(Trust::Mozilla, Trust::CaFile),
        })
    }
}

impl Target {
    /// `host:port` (IPv6 bracketed), for messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The address to use and the time DNS took (`None`: no lookup).
    pub async fn resolve(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(IpAddr, Option<Duration>), Failure> {
        if let Some(ip) = self.address {
            return Ok((ip, None));
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok((ip, None));
        }
        let (ips, took) =
            Box::pin(resolver::lookup_ips(&self.host, &self.resolver, deadline)).await?;
        match ips.first() {
            Some(ip) => Ok((*ip, Some(took))),
            None => Err(Failure::DnsFailure {
                name: self.host.clone(),
                resolver: Some(self.resolver.to_string()),
                reason: "no addresses".into(),
            }),
        }
    }
}

/// A TCP connection to `addr` with `TCP_NODELAY`, classified on failure.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Failure::ConnectionRefused {
            address: addr.to_string(),
        },
        _ => Failure::ConnectFailure {
            address: addr.to_string(),
            error: e.to_string(),
        },
    })?;
    // Best effort: only affects latency.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The TLS handshake over `tcp` for `tls`, offering `alpn`, with full
/// verification; the stream, its facts and the handshake time. A failed
/// handshake is classified like an https hop's.
pub async fn handshake(
    tcp: TcpStream,
    tls: &ClientTls,
    alpn: &[&[u8]],
) -> Result<
    (
        tokio_rustls::client::TlsStream<TcpStream>,
        TlsInfo,
        Duration,
    ),
    Failure,
> {
    let cfg = crate::tls::client_config(&tls.trust, alpn)
        .map_err(|reason| Failure::InternalError { reason })?;
    let t = Instant::now();
    // Boxed: a client connection is large and lives only for this phase.
    let stream = Box::pin(
        tokio_rustls::TlsConnector::from(Arc::clone(&cfg)).connect(tls.server_name.clone(), tcp),
    )
    .await
    .map_err(|e| crate::tls::classify(&e))?;
    let took = t.elapsed();
    let info = super::http::exchange::tls_info(stream.get_ref().1);
    Ok((stream, info, took))
}
