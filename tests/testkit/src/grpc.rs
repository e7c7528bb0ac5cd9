//! [`GrpcHealthServer`]: a loopback gRPC server with tonic-health's
//! `grpc.health.v1.Health` service, whose statuses a test switches while it
//! runs; plaintext HTTP/2 (h2c) or TLS (ALPN `h2`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use outpost_testkit::GrpcHealthServer;
//! let srv = GrpcHealthServer::start().await?;      // "" is SERVING
//! srv.set_serving("orders.v1.Orders").await;
//! srv.set_not_serving("orders.v1.Orders").await;   // Watch streams see the change
//! # let _ = srv.addr(); Ok(()) }
//! ```
//!
//! A service never set is unknown: `Check` answers `NOT_FOUND`, as
//! tonic-health does. [`GrpcHealthServer::start_without_health`] serves no
//! health service at all (every call is `UNIMPLEMENTED`).

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::pki::Identity;
use crate::server::bind_loopback;

/// A running health server. Dropping it stops it.
pub struct GrpcHealthServer {
    addr: SocketAddr,
    reporter: HealthReporter,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for GrpcHealthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcHealthServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for GrpcHealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcHealthServer {
    /// Plaintext HTTP/2 on `127.0.0.1:0`; `""` (the server) is SERVING.
    pub async fn start() -> anyhow::Result<GrpcHealthServer> {
        Self::run(None, true).await
    }

    /// TLS (TLS 1.2 and 1.3, ALPN `h2`) presenting `identity`.
    pub async fn start_tls(identity: Identity) -> anyhow::Result<GrpcHealthServer> {
        Self::run(Some(identity), true).await
    }

    /// A gRPC server with no health service: every health call is `UNIMPLEMENTED`.
    pub async fn start_without_health() -> anyhow::Result<GrpcHealthServer> {
        Self::run(None, false).await
    }

    async fn run(tls: Option<Identity>, health: bool) -> anyhow::Result<GrpcHealthServer> {
        let listener = bind_loopback(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr().context("reading bound address")?;
        let (reporter, service) = tonic_health::server::health_reporter();
        let mut builder = tonic::transport::Server::builder();
        if let Some(id) = &tls {
            let identity = tonic::transport::Identity::from_pem(id.chain_pem(), id.key_pem());
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .context("configuring the gRPC server's TLS")?;
        }
        let incoming = TcpListenerStream::new(listener);
        let router = if health {
            builder.add_service(service)
        } else {
            // No service at all: the server still speaks gRPC and answers UNIMPLEMENTED.
            builder.add_routes(tonic::service::Routes::default())
        };
        let task = tokio::spawn(async move {
            if let Err(err) = router.serve_with_incoming(incoming).await {
                tracing::debug!(error = %err, "testkit grpc server stopped");
            }
        });
        tracing::debug!(%addr, tls = tls.is_some(), "testkit grpc health server listening");
        Ok(GrpcHealthServer {
            addr,
            reporter,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets `service` (`""`: the server) to SERVING.
    pub async fn set_serving(&self, service: &str) {
        self.set(service, ServingStatus::Serving).await;
    }

    /// Sets `service` to NOT_SERVING.
    pub async fn set_not_serving(&self, service: &str) {
        self.set(service, ServingStatus::NotServing).await;
    }

    /// Sets `service` to any status (`Unknown`, `Serving`, `NotServing`).
    pub async fn set(&self, service: &str, status: ServingStatus) {
        self.reporter.set_service_status(service, status).await;
    }
}
