//! outpost-controller: receives probe results over gRPC, stores them in
//! SQLite, decides per check across regions when to page, delivers
//! notifications (PagerDuty, webhook, console) through a persisted outbox,
//! and serves a status page, a JSON API and Prometheus metrics.
//!
//! Read in this order: [`config`] (what an operator writes), [`ingest`]
//! (the gRPC stream: auth, assignment, batch → commit → ack), [`store`]
//! (every SQL statement, with the schema and crash notes),
//! [`alerting::rule`] (the pure fire/resolve rule), [`alerting::offline`]
//! (silent probes), [`alerting::certificate`] (one alert per expiring
//! certificate), [`alerting`] and [`alerting::sink`] (outbox delivery:
//! retries, ordering, rate limit), then [`api`] / [`dashboard`]. Result
//! details are the probe's typed `Observed`, read once: at ingest
//! ([`details::received`]) and once per stored row ([`details::decode`]).
//! What the controller derives from them: [`event`] (DNS changes),
//! [`certificate`] (the inventory), [`details`] (cell summaries and the
//! redaction at the API's edge); [`format`] holds the age and time
//! formatting they share. [`heartbeat`] receives push checks' pings and
//! turns silence into `heartbeat_missed` results.
//! [`Controller::start`] at the bottom of this file wires them together.

pub mod alerting;
pub mod api;
pub mod certificate;
pub mod config;
pub mod dashboard;
pub mod details;
pub mod event;
pub mod format;
pub mod heartbeat;
pub mod ingest;
pub mod metrics;
pub mod store;
pub mod summary;

use std::{
    collections::BTreeSet,
    future::Future,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    net::TcpListener,
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};

pub use api::router;
pub use config::ControllerConfig;
use ingest::Registry;
use metrics::Metrics;
use store::Store;

/// How often old results are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long `shutdown` waits for servers to drain before aborting them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Shared state of one controller: config, store, metrics, open streams.
/// Cheap to clone; the HTTP router and every task hold one.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    config: RwLock<Arc<ControllerConfig>>,
    store: Store,
    metrics: Metrics,
    registry: Registry,
    eval_tx: mpsc::Sender<BTreeSet<String>>,
    eval_lock: tokio::sync::Mutex<()>,
    delivery: Notify,
    certificates: Notify,
    limiter: alerting::sink::ratelimit::Limiter,
    heartbeats: heartbeat::Pings,
    started_ms: i64,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Opens the store, binds both listeners (port 0 allowed), spawns the
    /// gRPC server, the HTTP server, the alert evaluator, the notification
    /// delivery worker, the heartbeat deadline worker and the pruner, and
    /// returns a handle.
    pub async fn start(config: ControllerConfig) -> anyhow::Result<RunningController> {
        let store = Store::open(&config.store_path)
            .await
            .with_context(|| format!("cannot open store {}", config.store_path.display()))?;
        store.mark_all_probes_disconnected().await?;
        let grpc = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.grpc_listen)",
                    config.grpc_listen
                )
            })?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.http_listen)",
                    config.http_listen
                )
            })?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let tls = grpc_tls(&config)?;
        let (eval_tx, eval_rx) = mpsc::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let ctl = Controller {
            inner: Arc::new(Inner {
                config: RwLock::new(Arc::new(config)),
                store,
                metrics: Metrics::default(),
                registry: Registry::default(),
                eval_tx,
                eval_lock: tokio::sync::Mutex::new(()),
                delivery: Notify::new(),
                certificates: Notify::new(),
                limiter: alerting::sink::ratelimit::Limiter::default(),
                heartbeats: heartbeat::Pings::default(),
                started_ms: store::now_ms(),
                shutdown,
            }),
        };
        let tasks = vec![
            tokio::spawn(serve_grpc(ctl.clone(), grpc, tls)),
            tokio::spawn(serve_http(ctl.clone(), http)),
            tokio::spawn(alerting::run_evaluator(
                ctl.clone(),
                eval_rx,
                ctl.shutdown_signal(),
            )),
            tokio::spawn(alerting::sink::run_delivery(
                ctl.clone(),
                ctl.shutdown_signal(),
            )),
            tokio::spawn(heartbeat::run_worker(ctl.clone(), ctl.shutdown_signal())),
            tokio::spawn(prune_loop(ctl.clone())),
        ];
        tracing::info!(grpc = %grpc_addr, http = %http_addr, "controller listening");
        Ok(RunningController {
            controller: ctl,
            grpc_addr,
            http_addr,
            tasks,
        })
    }

    /// The current config (replaced atomically on reload).
    pub fn config(&self) -> Arc<ControllerConfig> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Open probe streams.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Replaces the config and pushes changed assignments to connected
    /// probes. Listen addresses, TLS and the store path need a restart.
    pub fn reload(&self, mut config: ControllerConfig) {
        let old = self.config();
        if config.grpc_listen != old.grpc_listen
            || config.http_listen != old.http_listen
            || config.store_path != old.store_path
        {
            tracing::warn!(
                "listen addresses and store.path change only on restart; the running values stay"
            );
        }
        if config.path.is_none() {
            config.path = old.path.clone();
        }
        let config = Arc::new(config);
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        let pushed = self.registry().push_assignments(&config);
        tracing::info!(
            checks = config.checks.len(),
            probes = config.probes.len(),
            assignments_sent = pushed,
            "config reloaded"
        );
        self.request_evaluation(config.checks.iter().map(|c| c.raw.id.clone()).collect());
    }

    pub(crate) fn eval_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.eval_lock
    }

    /// Asks the evaluator to look at these checks soon. If its queue is
    /// full the 1 s tick covers them.
    pub(crate) fn request_evaluation(&self, checks: BTreeSet<String>) {
        let _ = self.inner.eval_tx.try_send(checks);
    }

    /// When this controller started (unix ms): probe silence is counted
    /// from here at the earliest.
    pub fn started_ms(&self) -> i64 {
        self.inner.started_ms
    }

    pub(crate) fn heartbeats(&self) -> &heartbeat::Pings {
        &self.inner.heartbeats
    }

    pub(crate) fn limiter(&self) -> &alerting::sink::ratelimit::Limiter {
        &self.inner.limiter
    }

    /// Asks the evaluator to look at the certificate inventory soon.
    pub(crate) fn certificates_changed(&self) -> &Notify {
        &self.inner.certificates
    }

    pub(crate) fn wake_delivery(&self) {
        self.inner.delivery.notify_one();
    }

    pub(crate) fn delivery_wakeup(&self) -> &Notify {
        &self.inner.delivery
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    pub(crate) fn update_connected_gauge(&self) {
        self.metrics().set(
            "outpost_probes_connected",
            &[],
            self.registry().connected() as f64,
        );
    }
}

/// Completes once the shutdown flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn grpc_tls(
    config: &ControllerConfig,
) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let Some(files) = &config.tls else {
        // Config validation refuses this already; a config built in code
        // must opt in by name too.
        anyhow::ensure!(
            config.allow_plaintext_probes,
            "server.tls is not set: set it, or server.allow_plaintext_probes = true to serve probes in clear"
        );
        tracing::warn!(
            "server.allow_plaintext_probes is set: the probe gRPC stream is plaintext and probe tokens travel in clear"
        );
        return Ok(None);
    };
    let cert = std::fs::read(&files.cert_file)
        .with_context(|| format!("cannot read {}", files.cert_file.display()))?;
    let key = std::fs::read(&files.key_file)
        .with_context(|| format!("cannot read {}", files.key_file.display()))?;
    let identity = tonic::transport::Identity::from_pem(cert, key);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
}

async fn serve_grpc(
    ctl: Controller,
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
) {
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)));
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "invalid gRPC TLS identity; the gRPC listener is not serving");
                return;
            }
        };
    }
    let service = outpost_proto::v1::probe_service_server::ProbeServiceServer::new(
        ingest::IngestService::new(ctl.clone()),
    )
    .max_decoding_message_size(ctl.config().probe_limits.max_message_size);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut stop = ctl.shutdown_signal();
    let signal = async move { stopped(&mut stop).await };
    if let Err(e) = builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
    {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

async fn serve_http(ctl: Controller, listener: TcpListener) {
    let mut stop = ctl.shutdown_signal();
    let signal = async move { stopped(&mut stop).await };
    if let Err(e) = axum::serve(listener, router(ctl))
        .with_graceful_shutdown(signal)
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn prune_loop(ctl: Controller) {
    let mut stop = ctl.shutdown_signal();
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::stopped(&mut stop) => return,
        }
        let keep = i64::try_from(ctl.config().retention.as_millis()).unwrap_or(i64::MAX);
        let before = store::now_ms().saturating_sub(keep);
        match ctl.store().prune_results(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned old results"),
            Err(e) => tracing::warn!(error = %e, "pruning results failed"),
        }
        // Events and certificates no check saw for the retention go too.
        if let Err(e) = ctl.store().prune_events(before).await {
            tracing::warn!(error = %e, "pruning events failed");
        }
        if let Err(e) = ctl.store().prune_certificates(before).await {
            tracing::warn!(error = %e, "pruning certificates failed");
        }
    }
}

/// A running controller. Dropping it aborts every task; prefer [`RunningController::shutdown`].
#[derive(Debug)]
pub struct RunningController {
    controller: Controller,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningController {
    /// The bound gRPC address (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The store (tests query it).
    pub fn store(&self) -> &Store {
        self.controller.store()
    }

    /// The shared state (metrics, config, registry).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// See [`Controller::reload`].
    pub fn reload(&self, config: ControllerConfig) {
        self.controller.reload(config);
    }

    /// Stops accepting, ends probe streams, lets servers drain for up to
    /// [`SHUTDOWN_GRACE`], then aborts what is left and closes the store.
    pub async fn shutdown(mut self) {
        let _ = self.controller.inner.shutdown.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(SHUTDOWN_GRACE, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!("servers did not drain in time; aborting");
            aborts.iter().for_each(|a| a.abort());
        }
        self.controller.store().close().await;
        tracing::info!("controller stopped");
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        let _ = self.controller.inner.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a controller and runs it until `shutdown` completes. On SIGHUP the
/// config file is re-read and re-validated; on error the old config stays.
pub async fn run(
    config: ControllerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = Controller::start(config).await?;
    let reload = reload_on_sighup(running.controller().clone());
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        r = reload => r?,
    }
    running.shutdown().await;
    Ok(())
}

/// [`Controller::start`] as a free function.
pub async fn start(config: ControllerConfig) -> anyhow::Result<RunningController> {
    Controller::start(config).await
}

#[cfg(unix)]
async fn reload_on_sighup(ctl: Controller) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    while hup.recv().await.is_some() {
        let Some(path) = ctl.config().path.clone() else {
            tracing::warn!("SIGHUP ignored: the config did not come from a file");
            continue;
        };
        match config::load(&path) {
            Ok(new) => ctl.reload(new),
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the running config")
            }
        }
    }
    std::future::pending().await
}

#[cfg(not(unix))]
async fn reload_on_sighup(_ctl: Controller) -> anyhow::Result<()> {
    std::future::pending().await
}
