//! The probe's own Prometheus endpoint (`[metrics] listen`): scheduler
//! counters and the outbox, so a probe that drops results or falls behind
//! is visible from the host it runs on, not only from the controller.

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{outbox::Outbox, scheduler::Scheduler};

/// `Content-Type` of [`render`]'s output (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Reads the scheduler's and the outbox's counters at each scrape (they
/// are atomics of their own; nothing is copied between scrapes).
#[derive(Debug)]
struct ProbeCollector {
    scheduler: Arc<Scheduler>,
    outbox: Option<Arc<Outbox>>,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    // The encoder appends `_total`.
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let v = i64::try_from(v).unwrap_or(i64::MAX);
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ProbeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.scheduler.stats;
        counter(
            &mut e,
            "outpost_probe_runs_started",
            "Check runs started.",
            s.started.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "outpost_probe_runs_finished",
            "Check runs finished.",
            s.finished.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "outpost_probe_runs_skipped_overrun",
            "Due runs skipped because the previous run of the check was still going.",
            s.skipped_overrun.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "outpost_probe_runs_skipped_late",
            "Due slots skipped because the scheduler fell more than an interval behind.",
            s.skipped_late.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "outpost_probe_checks",
            "Checks scheduled.",
            self.scheduler.len() as u64,
        )?;
        if self.scheduler.telemetry().is_on() {
            let t = self.scheduler.telemetry().stats();
            counter(
                &mut e,
                "outpost_probe_traces_queued",
                "Traces of check runs queued for OTLP export ([telemetry]).",
                t.traces_queued.load(Ordering::Relaxed),
            )?;
            counter(
                &mut e,
                "outpost_probe_trace_spans_exported",
                "Spans the OTLP collector accepted.",
                t.spans_exported.load(Ordering::Relaxed),
            )?;
            counter(
                &mut e,
                "outpost_probe_trace_spans_dropped",
                "Spans dropped: the export queue was full, or their export failed or timed out.",
                t.spans_dropped.load(Ordering::Relaxed),
            )?;
            counter(
                &mut e,
                "outpost_probe_trace_export_failures",
                "OTLP export requests that failed or timed out.",
                t.export_failures.load(Ordering::Relaxed),
            )?;
        }
        let Some(ob) = &self.outbox else {
            return Ok(());
        };
        gauge(
            &mut e,
            "outpost_probe_outbox_results",
            "Results waiting for the controller's ack.",
            ob.len() as u64,
        )?;
        gauge(
            &mut e,
            "outpost_probe_outbox_bytes",
            "Bytes of the outbox on disk.",
            ob.disk_bytes(),
        )?;
        let mut family = e.encode_descriptor(
            "outpost_probe_outbox_dropped",
            "Results dropped from the outbox, by reason.",
            None,
            MetricType::Counter,
        )?;
        let by = ob.dropped_by_reason();
        for reason in [
            crate::outbox::DropReason::Size,
            crate::outbox::DropReason::Age,
            crate::outbox::DropReason::Corrupt,
            crate::outbox::DropReason::Io,
        ] {
            let n = by
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A registry holding the probe's own series.
pub fn registry(scheduler: Arc<Scheduler>, outbox: Option<Arc<Outbox>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProbeCollector { scheduler, outbox }));
    registry
}

/// Renders `registry` in the Prometheus text format ([`CONTENT_TYPE`]).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        // Writing to a String cannot fail; a collector error would be ours.
        tracing::error!(error = %e, "cannot encode metrics");
    }
    out
}

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    scheduler: Arc<Scheduler>,
    outbox: Option<Arc<Outbox>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let registry = Arc::new(registry(scheduler, outbox));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let body = if req.uri().path() == "/metrics" {
                    Some(render(&registry))
                } else {
                    None
                };
                async move {
                    match body {
                        Some(b) => Response::builder()
                            .header("content-type", CONTENT_TYPE)
                            .body(Full::new(Bytes::from(b))),
                        None => Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n"))),
                    }
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
