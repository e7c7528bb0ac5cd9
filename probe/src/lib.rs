//! outpost-probe: the agent that runs scripted checks and streams results to
//! the controller.
//!
//! Read in this order: [`check`] (the check schema shared with the
//! controller, failure codes, the one dispatch `match`), [`check::http`],
//! [`scheduler`], [`outbox`], [`reporter`] (the gRPC stream; with
//! [`identity`], the client certificate for mutual TLS), then [`spawn`]
//! which wires them together. [`clock`] is the wall clock time-dependent
//! logic reads (manual in tests: [`spawn_with_clock`]).

pub mod blackbox;
pub mod bound;
pub mod check;
pub mod clock;
pub mod config;
pub mod exporter;
pub mod fnv;
pub mod human;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod private;
pub mod redact;
pub mod reporter;
pub mod resolver;
pub mod scheduler;
pub mod telemetry;
pub mod tls;

use std::sync::Arc;

use check::{Outcome, RunContext};
use config::ProbeConfig;
use outbox::Outbox;
use scheduler::{Scheduler, Sink};

/// Starting a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    /// The metrics listener could not be bound.
    #[error("cannot listen for metrics on {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
    /// The `[exporter]` listener could not be bound.
    #[error("cannot listen for [exporter] on {0}: {1}")]
    Exporter(std::net::SocketAddr, std::io::Error),
    /// The `[telemetry]` exporter could not be started.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
}

/// A running probe: scheduler, outbox and (if configured) the reporter.
#[derive(Debug)]
pub struct RunningProbe {
    /// The scheduler (counters, current checks).
    pub scheduler: Arc<Scheduler>,
    /// Results waiting for the controller (none when standalone).
    pub outbox: Option<Arc<Outbox>>,
    /// Where `/metrics` is served, if configured.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the `[exporter]` serves `/probe`, if configured.
    pub exporter_addr: Option<std::net::SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningProbe {
    /// Stops scheduling and reporting. Runs in flight are abandoned.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for RunningProbe {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a probe on the current runtime.
///
/// With a `[controller]` the probe runs the checks the controller assigns
/// and reports to it; local `[[checks]]` are then only for `once`. Without
/// one it runs its local checks standalone and hands each outcome to
/// `standalone_sink` (the CLI prints JSON lines).
pub fn spawn(
    config: ProbeConfig,
    standalone_sink: Option<Arc<dyn Fn(Outcome) + Send + Sync>>,
) -> Result<RunningProbe, StartError> {
    spawn_with_clock(config, standalone_sink, clock::Clock::system())
}

/// [`spawn`] reading `clock` for wall-clock time (check runs, certificate
/// renewal): tests hand it a [`clock::ManualClock`]'s clock.
pub fn spawn_with_clock(
    config: ProbeConfig,
    standalone_sink: Option<Arc<dyn Fn(Outcome) + Send + Sync>>,
    clock: clock::Clock,
) -> Result<RunningProbe, StartError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let telemetry = match &config.telemetry {
        Some(t) => {
            let resource = vec![
                opentelemetry::KeyValue::new("outpost.probe", config.name.clone()),
                opentelemetry::KeyValue::new("outpost.region", config.region.clone()),
            ];
            let (telemetry, worker) =
                telemetry::Telemetry::start(t, "outpost-probe", resource, rx.clone())?;
            tasks.push(worker);
            telemetry
        }
        None => telemetry::Telemetry::off(),
    };
    let ctx = RunContext {
        probe_name: config.name.clone(),
        region: config.region.clone(),
        // Session checks persist their sessions next to the outbox (check::session::state).
        session_dir: config.outbox.dir.parent().map(|p| p.join("sessions")),
        clock: clock.clone(),
        telemetry,
        trace: None,
    };
    let metrics_shutdown = rx.clone();
    let exporter_shutdown = rx.clone();
    let run_ctx = ctx.clone();
    let outbox = match &config.controller {
        Some(_) => Some(Arc::new(Outbox::open(config.outbox.clone())?)),
        None => None,
    };
    let sink: Sink = match (&outbox, standalone_sink) {
        (Some(ob), _) => {
            let ob = ob.clone();
            Arc::new(move |version, outcome: Outcome| {
                ob.push(&outcome, version);
            })
        }
        (None, Some(print)) => Arc::new(move |_version, outcome| print(outcome)),
        (None, None) => Arc::new(|_version, outcome: Outcome| {
            tracing::info!(check = %outcome.check_id, ok = outcome.ok(), "result");
        }),
    };
    let scheduler = Scheduler::new(ctx, config.max_concurrency, sink);
    let mut srx = rx.clone();
    tasks.push(tokio::spawn(scheduler.clone().run(async move {
        let _ = srx.wait_for(|v| *v).await;
    })));
    match (config.controller, &outbox) {
        (Some(c), Some(ob)) => {
            if !config.checks.is_empty() {
                tracing::info!(
                    checks = config.checks.len(),
                    "local [[checks]] are not scheduled when a controller assigns checks"
                );
            }
            let me = reporter::Identity {
                name: config.name,
                region: config.region,
                labels: config.labels,
            };
            tasks.push(tokio::spawn(reporter::run(
                c,
                me,
                ob.clone(),
                scheduler.clone(),
                rx,
                clock,
            )));
        }
        _ => scheduler.set_checks(config.checks, 0),
    }
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_listen {
        let listener = bind(addr).map_err(|e| StartError::Metrics(addr, e))?;
        metrics_addr = listener.local_addr().ok();
        tasks.push(tokio::spawn(metrics::serve(
            listener,
            scheduler.clone(),
            outbox.clone(),
            metrics_shutdown,
        )));
    }
    let mut exporter_addr = None;
    if let Some(ex) = config.exporter {
        let addr = ex.listen;
        let listener = bind(addr).map_err(|e| StartError::Exporter(addr, e))?;
        exporter_addr = listener.local_addr().ok();
        if ex.token.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "[exporter] listens beyond loopback without a token: anyone who reaches it can make this probe run its modules");
        }
        tasks.push(tokio::spawn(exporter::serve(
            listener,
            ex,
            run_ctx,
            metrics::registry(scheduler.clone(), outbox.clone()),
            exporter_shutdown,
        )));
    }
    Ok(RunningProbe {
        scheduler,
        outbox,
        metrics_addr,
        exporter_addr,
        shutdown: tx,
        tasks,
    })
}

/// Binds a listener on the current runtime.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(std_listener)
}
