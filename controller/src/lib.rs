//! outpost-controller: receives probe results over gRPC, stores them in
//! SQLite, decides per check across regions when to page, delivers
//! notifications (PagerDuty, Slack, Opsgenie, webhook, console) through a persisted outbox,
//! and serves a status page, a JSON API and Prometheus metrics.
//!
//! Read in this order: [`config`] (what an operator writes), [`ingest`]
//! (the gRPC stream: auth, assignment, batch → commit → ack), [`store`]
//! (every SQL statement, with the schema and crash notes),
//! [`alerting::rule`] (the pure fire/resolve rule), [`alerting::offline`]
//! (silent probes), [`alerting::certificate`] (one alert per expiring
//! certificate), [`alerting`] and [`alerting::sink`] (outbox delivery:
//! retries, ordering, rate limit), then [`api`] / [`dashboard`]. Result
//! details are the probe's typed `Observed`, read once per stored row
//! ([`details::decode`]); ingest only checks them to be JSON
//! ([`details::received`]) and its derived rows read their own keys:
//! [`event`] (DNS changes) and [`certificate`] (the inventory).
//! [`details`] holds cell summaries and the redaction at the API's edge,
//! [`format`] the age and time formatting they share. [`heartbeat`]
//! receives push checks' pings and turns silence into `heartbeat_missed`
//! results.
//! Who may do what over HTTP: [`auth`] (the gate,
//! tokens, users, sessions) and the route table [`api::route`]; both
//! listeners' connection hygiene: [`listener`].
//! [`Controller::start`] at the bottom of this file wires them together.
//! Every wall-clock stamp and comparison reads [`Controller::clock`] (the
//! system's, or a [`ManualClock`] a test moves: see
//! [`Controller::start_with_clock`]).

pub mod alerting;
pub mod api;
pub mod auth;
pub mod blackbox;
pub mod certificate;
pub mod config;
pub mod dashboard;
pub mod details;
pub mod event;
pub mod format;
pub mod heartbeat;
pub mod history;
pub mod identity;
pub mod ingest;
pub mod listener;
pub mod metrics;
pub mod store;
pub mod summary;

use std::{
    collections::BTreeSet,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, Ordering},
    },
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
pub use outpost_probe::clock::{Clock, ManualClock};
use store::Store;

/// How often old results are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Results deleted per statement when pruning: each batch is a short
/// transaction, so ingest on every replica keeps flowing while a large
/// backlog is pruned.
pub const PRUNE_BATCH: u32 = 5_000;
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
    /// Checks whose evaluation request found the queue full (at most every
    /// check once): the evaluator takes them with the next request or tick.
    eval_overflow: std::sync::Mutex<BTreeSet<String>>,
    /// When each (check, region) was last asked to run now ([`alerting::confirm`]).
    confirm: alerting::confirm::Asked,
    delivery: Notify,
    certificates: Notify,
    limiter: alerting::sink::ratelimit::Limiter,
    heartbeats: heartbeat::Pings,
    /// `server.probe_ca`, loaded at start (a change needs a restart).
    probe_ca: Option<Arc<identity::ProbeCa>>,
    auth: auth::AuthState,
    started_ms: i64,
    clock: Clock,
    /// The `now` of the evaluator's newest completed pass over every check.
    evaluated_ms: AtomicI64,
    replica: String,
    shutdown: watch::Sender<bool>,
    /// `[telemetry]`: traces of ingest batches and deliveries (read at start).
    telemetry: outpost_probe::telemetry::Telemetry,
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
        Controller::start_with_clock(config, Clock::system()).await
    }

    /// [`Controller::start`] reading `clock` wherever the controller stamps
    /// or compares wall-clock time (last seen, received, offline detection,
    /// alert evaluation, notification due times and backoff): tests hand it
    /// a [`ManualClock`] and move time instead of sleeping. Moving a manual
    /// clock wakes the evaluator and the delivery worker.
    pub async fn start_with_clock(
        config: ControllerConfig,
        clock: Clock,
    ) -> anyhow::Result<RunningController> {
        let store = Store::connect(&config.store)
            .await
            .with_context(|| format!("cannot open store {}", config.store.location.describe()))?;
        // Other replicas hold streams of a shared store: only a store of
        // our own starts with none open.
        if !store.is_shared() {
            store.mark_all_probes_disconnected().await?;
        }
        store.set_stale_after(history::stale_after_ms(&config));
        let started_ms = clock.unix_ms();
        let replica = format!("{}/{}/{started_ms}", hostname(), std::process::id());
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
        let probe_ca = config
            .probe_ca
            .as_ref()
            .map(|files| identity::ProbeCa::load(files).map(Arc::new))
            .transpose()
            .context("server.probe_ca")?;
        let tls = grpc_tls(&config, probe_ca.as_deref(), &clock)?;
        let http_tls = http_tls(&config)?;
        warn_about_exposure(&config, http_addr);
        let caps = listener::fitted_caps(&config.limits, listener::open_files_limit());
        let (eval_tx, eval_rx) = mpsc::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let mut telemetry_worker = None;
        let telemetry = match &config.telemetry {
            Some(t) => {
                let resource = vec![outpost_probe::telemetry::KeyValue::new(
                    "service.instance.id",
                    replica.clone(),
                )];
                let (telemetry, worker) = outpost_probe::telemetry::Telemetry::start(
                    t,
                    "outpost-controller",
                    resource,
                    shutdown.subscribe(),
                )
                .context("[telemetry]")?;
                telemetry_worker = Some(worker);
                telemetry
            }
            None => outpost_probe::telemetry::Telemetry::off(),
        };
        let ctl = Controller {
            inner: Arc::new(Inner {
                config: RwLock::new(Arc::new(config)),
                store,
                metrics: Metrics::default(),
                registry: Registry::default(),
                eval_tx,
                eval_lock: tokio::sync::Mutex::new(()),
                eval_overflow: std::sync::Mutex::default(),
                confirm: alerting::confirm::Asked::default(),
                delivery: Notify::new(),
                certificates: Notify::new(),
                limiter: alerting::sink::ratelimit::Limiter::default(),
                auth: auth::AuthState::default(),
                heartbeats: heartbeat::Pings::default(),
                probe_ca,
                started_ms,
                replica,
                evaluated_ms: AtomicI64::new(i64::MIN),
                clock,
                shutdown,
                telemetry,
            }),
        };
        let mut tasks = vec![
            tokio::spawn(serve_grpc(ctl.clone(), grpc, tls, caps.1)),
            tokio::spawn(serve_http(ctl.clone(), http, http_tls, caps.0)),
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
            tokio::spawn(fold_loop(ctl.clone())),
            tokio::spawn(alerting::leader::run(ctl.clone(), ctl.shutdown_signal())),
        ];
        tasks.extend(telemetry_worker);
        tracing::info!(grpc = %grpc_addr, http = %http_addr, store = %ctl.config().store.location.describe(), replica = %ctl.replica(), "controller listening");
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

    /// The trace pipeline (`[telemetry]`; off by default).
    pub fn telemetry(&self) -> &outpost_probe::telemetry::Telemetry {
        &self.inner.telemetry
    }

    /// Open probe streams.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The probe CA, when mutual TLS is on.
    pub fn probe_ca(&self) -> Option<&identity::ProbeCa> {
        self.inner.probe_ca.as_deref()
    }

    /// Token cache, password verifier and guess limiter.
    pub fn auth(&self) -> &auth::AuthState {
        &self.inner.auth
    }

    /// Replaces the config and pushes changed assignments to connected
    /// probes. Listen addresses, TLS and the store path need a restart.
    pub fn reload(&self, mut config: ControllerConfig) {
        let old = self.config();
        if config.grpc_listen != old.grpc_listen
            || config.http_listen != old.http_listen
            || config.store != old.store
            || config.tls != old.tls
            || config.probe_ca != old.probe_ca
            || config.http_tls != old.http_tls
            || config.limits != old.limits
        {
            tracing::warn!(
                "listen addresses, TLS files, server.probe_ca, server.limits and [store] change only on restart; the running values stay"
            );
        }
        // Sessions of users no longer configured (or expired) end now; the
        // gate refuses them on their next request anyway.
        self.store()
            .set_stale_after(history::stale_after_ms(&config));
        let users: Vec<String> = config.auth.users.iter().map(|u| u.name.clone()).collect();
        let idle = i64::try_from(config.auth.session_idle.as_millis()).unwrap_or(i64::MAX);
        let store = self.store().clone();
        let now = self.now_ms();
        tokio::spawn(async move {
            match store
                .prune_sessions(&users, now, now.saturating_sub(idle))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(ended = n, "dashboard sessions of removed users ended"),
                Err(e) => tracing::warn!(error = %e, "pruning sessions failed"),
            }
        });
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
    /// full they wait in a set the evaluator drains on its next request or
    /// tick: the tick looks only at what may change with time, so a
    /// request is never dropped.
    pub(crate) fn request_evaluation(&self, checks: BTreeSet<String>) {
        if let Err(mpsc::error::TrySendError::Full(checks)) = self.inner.eval_tx.try_send(checks) {
            self.inner
                .eval_overflow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(checks);
        }
    }

    /// The requests that found the evaluator's queue full.
    pub(crate) fn take_evaluation_overflow(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .inner
                .eval_overflow
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// When each (check, region) was last asked to run now.
    pub(crate) fn confirm_asked(&self) -> &alerting::confirm::Asked {
        &self.inner.confirm
    }

    /// This process's name in the evaluator lease: `host/pid/start ms`.
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// The host part of [`Controller::replica`] (the controller's own
    /// certificate sightings name it as their probe).
    pub fn replica_host(&self) -> String {
        self.inner
            .replica
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// When this controller started (unix ms): probe silence is counted
    /// from here at the earliest.
    pub fn started_ms(&self) -> i64 {
        self.inner.started_ms
    }

    pub(crate) fn heartbeats(&self) -> &heartbeat::Pings {
        &self.inner.heartbeats
    }

    /// The wall clock every stamp and comparison reads (see
    /// [`Controller::start_with_clock`]).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Unix milliseconds now, by [`Controller::clock`].
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.unix_ms()
    }

    /// The `now` (unix ms) of the evaluator's newest completed pass over
    /// every check and probe; `None` before the first. A test that asserts
    /// "no alert" after moving the clock waits for this to reach the new
    /// time first, so the absence is proven, not assumed.
    pub fn evaluated_ms(&self) -> Option<i64> {
        Some(self.inner.evaluated_ms.load(Ordering::Acquire)).filter(|&v| v != i64::MIN)
    }

    pub(crate) fn set_evaluated(&self, now_ms: i64) {
        self.inner.evaluated_ms.fetch_max(now_ms, Ordering::AcqRel);
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

/// The machine's name, for the replica id (best effort).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Loads a certificate chain and key into a rustls server config (ring
/// provider, TLS 1.2 and 1.3) offering `alpn`.
pub fn server_tls_config(
    files: &config::TlsFiles,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_tls_config_with(files, alpn, None)
}

/// [`server_tls_config`], asking for client certificates from `probe_ca`
/// (verified against `clock`) when given.
fn server_tls_config_with(
    files: &config::TlsFiles,
    alpn: &[&[u8]],
    probe_ca: Option<(&identity::ProbeCa, &Clock)>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (certs, key) = read_cert_and_key(files)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match probe_ca {
        None => rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("rustls protocol versions")?
            .with_no_client_auth(),
        Some((ca, clock)) => rustls::ServerConfig::builder_with_details(
            provider.clone(),
            Arc::new(identity::ClockTime(clock.clone())),
        )
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_client_cert_verifier(identity::client_verifier(ca, provider)?),
    };
    let mut cfg = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "{} and {} are not a certificate and its key",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The certificate chain and private key of a listener's `TlsFiles`.
pub fn read_cert_and_key(
    files: &config::TlsFiles,
) -> anyhow::Result<(
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
)> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let certs = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "cannot read certificates from {}",
                files.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", files.cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file).with_context(|| {
        format!(
            "cannot read a private key from {}",
            files.key_file.display()
        )
    })?;
    Ok((certs, key))
}

/// The gRPC listener's TLS: `server.tls`, offering h2; with
/// `server.probe_ca`, client certificates are requested (optional: bearer
/// tokens and `Enroll` work without one) and verified against the probe CA.
fn grpc_tls(
    config: &ControllerConfig,
    probe_ca: Option<&identity::ProbeCa>,
    clock: &Clock,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(files) = &config.tls else {
        // Config validation refuses this already; a config built in code
        // must opt in by name too.
        anyhow::ensure!(
            config.allow_plaintext_probes,
            "server.tls is not set: set it, or server.allow_plaintext_probes = true to serve probes in clear"
        );
        anyhow::ensure!(
            probe_ca.is_none(),
            "server.probe_ca needs server.tls: client certificates need TLS"
        );
        tracing::warn!(
            "server.allow_plaintext_probes is set: the probe gRPC stream is plaintext and probe tokens travel in clear"
        );
        return Ok(None);
    };
    Ok(Some(
        server_tls_config_with(files, &[b"h2"], probe_ca.map(|ca| (ca, clock)))
            .context("server.tls")?,
    ))
}

/// The HTTP listener's TLS: `server.http_tls`, offering h2 and HTTP/1.1.
fn http_tls(config: &ControllerConfig) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    config
        .http_tls
        .as_ref()
        .map(|files| server_tls_config(files, &[b"h2", b"http/1.1"]).context("server.http_tls"))
        .transpose()
}

/// Loud warnings for what the config opted into by name.
fn warn_about_exposure(config: &ControllerConfig, http_addr: SocketAddr) {
    let exposed = !http_addr.ip().is_loopback();
    if exposed && config.http_tls.is_none() {
        tracing::warn!(
            http = %http_addr,
            "server.allow_insecure_http = true: the dashboard and API are served over plain HTTP on a non-loopback address; passwords, cookies and tokens cross the network in clear"
        );
    }
    if config.allow_unauthenticated {
        tracing::warn!(
            http = %http_addr,
            "server.allow_unauthenticated = true: anyone who can connect reads every page, the API and /metrics (every target URL, response excerpts, probe names)"
        );
    } else if config.auth.is_empty() {
        tracing::warn!(
            "no [[auth.users]] or [[auth.tokens]] configured: every page, the API and /metrics answer 401 (see `outpost-controller hash-password`)"
        );
    }
}

/// The gRPC listener: our accept loop (cap, shedding, TLS handshake
/// timeout) feeding tonic, whose own limits bound streams and keepalive.
async fn serve_grpc(
    ctl: Controller,
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
) {
    let limits = ctl.config().limits;
    let tracker = listener::Tracker::new(
        ctl.clone(),
        listener::Listener::Grpc,
        max_connections,
        &limits,
    );
    tokio::spawn(tracker.clone().run_reaper(ctl.shutdown_signal()));
    match tls {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let (tx, rx) = mpsc::channel(64);
            let t = tracker.clone();
            tokio::spawn(listener::accept_loop(
                tcp,
                tracker.clone(),
                ctl.shutdown_signal(),
                move |sock| {
                    let (acceptor, tx, t) = (acceptor.clone(), tx.clone(), t.clone());
                    async move {
                        let conn = sock.conn().clone();
                        let hs = listener::handshake(
                            &t,
                            &conn,
                            limits.tls_handshake_timeout,
                            acceptor.accept(sock),
                        )
                        .await;
                        if let Some(io) = hs {
                            let _ = tx.send(Ok::<_, std::io::Error>(io)).await;
                        }
                    }
                },
            ));
            run_tonic(
                ctl,
                tracker,
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )
            .await;
        }
        None => {
            let (tx, rx) = mpsc::channel(64);
            let t = tracker.clone();
            tokio::spawn(listener::accept_loop(
                tcp,
                tracker.clone(),
                ctl.shutdown_signal(),
                move |sock| {
                    let (tx, t) = (tx.clone(), t.clone());
                    async move {
                        t.ready(sock.conn());
                        let _ = tx.send(Ok::<_, std::io::Error>(sock)).await;
                    }
                },
            ));
            run_tonic(
                ctl,
                tracker,
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )
            .await;
        }
    }
}

async fn run_tonic<IO>(
    ctl: Controller,
    tracker: Arc<listener::Tracker>,
    incoming: tokio_stream::wrappers::ReceiverStream<Result<IO, std::io::Error>>,
) where
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    let service = outpost_proto::v1::probe_service_server::ProbeServiceServer::new(
        ingest::IngestService::new(ctl.clone()),
    )
    .max_decoding_message_size(ctl.config().probe_limits.max_message_size);
    let mut stop = ctl.shutdown_signal();
    let signal = async move { stopped(&mut stop).await };
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .max_concurrent_streams(listener::GRPC_MAX_STREAMS)
        .http2_max_header_list_size(u32::try_from(listener::MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .timeout(Duration::from_secs(30))
        .layer(listener::TrackLayer::new(tracker))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

/// The HTTP listener: our accept loop (cap, shedding, TLS handshake
/// timeout) and hyper-util's server with the header-read timer armed.
async fn serve_http(
    ctl: Controller,
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
) {
    let limits = ctl.config().limits;
    let tracker = listener::Tracker::new(
        ctl.clone(),
        listener::Listener::Http,
        max_connections,
        &limits,
    );
    tokio::spawn(tracker.clone().run_reaper(ctl.shutdown_signal()));
    let app = router(ctl.clone());
    let builder = Arc::new(http_builder(&limits));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let t = tracker.clone();
    let stop = ctl.shutdown_signal();
    listener::accept_loop(tcp, tracker, ctl.shutdown_signal(), move |sock| {
        let (app, builder, acceptor, t, stop) = (
            app.clone(),
            builder.clone(),
            acceptor.clone(),
            t.clone(),
            stop.clone(),
        );
        async move {
            let conn = sock.conn().clone();
            match acceptor {
                Some(acceptor) => {
                    let hs = listener::handshake(
                        &t,
                        &conn,
                        limits.tls_handshake_timeout,
                        acceptor.accept(sock),
                    )
                    .await;
                    if let Some(io) = hs {
                        serve_http_conn(io, app, &builder, t, conn, stop).await;
                    }
                }
                None => {
                    t.ready(&conn);
                    serve_http_conn(sock, app, &builder, t, conn, stop).await;
                }
            }
        }
    })
    .await;
}

fn http_builder(
    limits: &listener::Limits,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(listener::MAX_HEADER_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(listener::HTTP2_MAX_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(u32::try_from(listener::MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    b
}

async fn serve_http_conn<IO>(
    io: IO,
    app: axum::Router,
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    tracker: Arc<listener::Tracker>,
    conn: Arc<listener::Conn>,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let active = tracker.begin(&conn);
        req.extensions_mut().insert(auth::ClientAddr(peer));
        let mut app = app.clone();
        async move {
            let resp = tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await;
            resp.map(|r| {
                r.map(|b| axum::body::Body::new(listener::GuardedBody::new(b, Some(active))))
            })
        }
    });
    let served = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(served);
    tokio::select! {
        r = served.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, served).await;
        }
    }
}

/// How often minute rollups are folded into hours, days and summaries.
pub const FOLD_EVERY: Duration = Duration::from_secs(15);

/// Folds minute rollups ([`store::Store::fold_rollups`]) every
/// [`FOLD_EVERY`] on the controller's clock. On the evaluator replica
/// only, like the pruner (the fold's row would serialize replicas anyway).
async fn fold_loop(ctl: Controller) {
    let mut stop = ctl.shutdown_signal();
    let mut tick = tokio::time::interval(FOLD_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::stopped(&mut stop) => return,
        }
        if !ctl.store().is_leader() {
            continue;
        }
        match ctl.store().fold_rollups(ctl.now_ms()).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "folding rollups failed"),
        }
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
        // Replicas share the store: the evaluator prunes for all of them.
        if !ctl.store().is_leader() {
            continue;
        }
        let keep = i64::try_from(ctl.config().retention.as_millis()).unwrap_or(i64::MAX);
        let before = ctl.now_ms().saturating_sub(keep);
        match ctl.store().prune_results(before, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned old results"),
            Err(e) => tracing::warn!(error = %e, "pruning results failed"),
        }
        // Each resolution of the history has its own retention.
        for res in history::Resolution::ALL {
            let Some(keep) = ctl.config().history.of(res) else {
                continue;
            };
            let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            let before = ctl.now_ms().saturating_sub(keep);
            match ctl.store().prune_rollups(res, before, PRUNE_BATCH).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(resolution = res.as_str(), deleted = n, "pruned old rollups")
                }
                Err(e) => {
                    tracing::warn!(resolution = res.as_str(), error = %e, "pruning rollups failed")
                }
            }
        }
        // Events and certificates no check saw for the retention go too.
        if let Err(e) = ctl.store().prune_events(before).await {
            tracing::warn!(error = %e, "pruning events failed");
        }
        if let Err(e) = ctl.store().prune_certificates(before).await {
            tracing::warn!(error = %e, "pruning certificates failed");
        }
        match ctl.store().prune_attempts(before, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned old delivery attempts"),
            Err(e) => tracing::warn!(error = %e, "pruning delivery attempts failed"),
        }
        let cfg = ctl.config();
        let users: Vec<String> = cfg.auth.users.iter().map(|u| u.name.clone()).collect();
        let now = ctl.now_ms();
        let idle = i64::try_from(cfg.auth.session_idle.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = ctl
            .store()
            .prune_sessions(&users, now, now.saturating_sub(idle))
            .await
        {
            tracing::warn!(error = %e, "pruning sessions failed");
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

/// [`Controller::start_with_clock`] as a free function.
pub async fn start_with_clock(
    config: ControllerConfig,
    clock: Clock,
) -> anyhow::Result<RunningController> {
    Controller::start_with_clock(config, clock).await
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
        let overrides = ctl.config().overrides.clone();
        match config::load_with(&path, &overrides) {
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
