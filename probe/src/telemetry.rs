//! OpenTelemetry traces (`[telemetry]`, [`crate::config::telemetry`]): each
//! check run becomes one trace, exported over OTLP/gRPC.
//!
//! Design notes:
//! - **Built after the run, from the record.** A run is not instrumented
//!   live: when it has finished, [`spans::of_run`] turns its [`Outcome`]
//!   (phases, hops, addresses, session and flow steps, the failure) into
//!   finished spans with explicit start and end times, laid out from the
//!   recorded durations. With tracing off nothing is built at all, and the
//!   hot path carries no span machinery; `failures_only` can decide after
//!   the run because nothing was exported before it.
//! - **Ids before the run.** [`Telemetry::begin`] picks the trace id and the
//!   root span id before the run, so a W3C `traceparent` sent to the target
//!   ([`TraceHandle::traceparent`], `traceparent = true`) names the trace
//!   that is exported later, and log lines inside the run carry the same
//!   `trace_id` / `span_id` (the scheduler enters a `run` span with them).
//!   `{ ratio = … }` decides here, from the trace id (like OpenTelemetry's
//!   `TraceIdRatioBased`): an unsampled run gets no ids and no header.
//! - **A bounded queue that never blocks a run.** Finished traces go into
//!   one in-memory queue bounded in spans (`max_queue_size`); a trace that
//!   does not fit is dropped whole and counted
//!   ([`TelemetryStats::spans_dropped`], the metric
//!   `outpost_probe_trace_spans_dropped_total`). One worker task sends
//!   batches of at most `max_batch_size` spans, as soon as a batch is full
//!   or `batch_delay` after the oldest waiting span, each export bounded by
//!   `export_timeout`; a failed export is dropped and counted, never
//!   retried past that deadline. On shutdown what is queued is flushed
//!   within one `export_timeout`. A crash loses what was queued (traces
//!   are diagnostics; results travel through the durable outbox).
//! - **No tracing-opentelemetry.** Spans are `SpanData` handed to the
//!   `opentelemetry-otlp` exporter directly: a `tracing` layer would put
//!   span bookkeeping on every run's path and could not decide
//!   `failures_only` after the run.
//!
//! The controller uses the same pipeline ([`Telemetry::record`]) for ingest
//! batches and notification deliveries.

pub mod spans;

pub use opentelemetry::{
    KeyValue,
    trace::{SpanKind, Status},
};

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    InstrumentationScope, SpanId, TraceId,
    trace::{SpanContext, TraceFlags, TraceState},
};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    trace::{IdGenerator, RandomIdGenerator, SpanData, SpanExporter},
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::{
    check::{Outcome, RunContext},
    config::telemetry::{Sampling, TelemetryConfig},
};

/// Starting the exporter failed (a config that validated but cannot be
/// used: an unreadable CA file, an endpoint tonic refuses).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The endpoint or its TLS settings.
    #[error("telemetry.otlp_endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// Counters of the trace pipeline, read by `/metrics`.
#[derive(Debug, Default)]
pub struct TelemetryStats {
    /// Traces handed to the queue (sampled runs, controller operations).
    pub traces_queued: AtomicU64,
    /// Spans the collector accepted.
    pub spans_exported: AtomicU64,
    /// Spans dropped: the queue was full, or their export failed or timed out.
    pub spans_dropped: AtomicU64,
    /// Export requests that failed or timed out.
    pub export_failures: AtomicU64,
}

/// The trace ids of one run, chosen before it ([`Telemetry::begin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceHandle {
    /// The trace id.
    pub trace_id: u128,
    /// The root (`check`) span's id.
    pub span_id: u64,
    /// `traceparent = true`: HTTP requests of the run carry
    /// [`TraceHandle::traceparent`].
    pub propagate: bool,
}

impl TraceHandle {
    /// The W3C `traceparent` value: version 00, this trace, the root span as
    /// parent, sampled.
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }

    /// The trace id as 32 lowercase hex digits (as logs and backends show it).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The root span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// The trace pipeline: off (the default, nothing built) or a sampler, an id
/// generator and the export queue. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Telemetry(Option<Arc<Inner>>);

#[derive(Debug)]
struct Inner {
    sampling: Sampling,
    traceparent: bool,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
    queue: Queue,
    stats: Arc<TelemetryStats>,
}

impl Telemetry {
    /// Tracing off.
    pub fn off() -> Self {
        Self(None)
    }

    /// True when traces are built and exported.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The pipeline's counters (zeros when off).
    pub fn stats(&self) -> Arc<TelemetryStats> {
        self.0.as_ref().map(|i| i.stats.clone()).unwrap_or_default()
    }

    /// Starts the exporter on the current runtime. `service` is the default
    /// `service.name`; `resource` adds resource attributes (probe name and
    /// region, controller instance). The worker stops when `shutdown` turns
    /// true, after one last export of what is queued.
    pub fn start(
        config: &TelemetryConfig,
        service: &'static str,
        resource: Vec<KeyValue>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), TelemetryError> {
        let channel = channel(config)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel)
            .with_timeout(config.export_timeout)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let service_name = config
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned());
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name(service_name)
                .with_attributes(resource)
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let stats = Arc::new(TelemetryStats::default());
        let queue = Queue::new(config.max_queue_size);
        let inner = Arc::new(Inner {
            sampling: config.sampling,
            traceparent: config.traceparent,
            ids: RandomIdGenerator::default(),
            scope: InstrumentationScope::builder(service)
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            queue,
            stats,
        });
        let worker = tokio::spawn(export_loop(
            inner.clone(),
            exporter,
            config.max_batch_size,
            config.batch_delay,
            config.export_timeout,
            shutdown,
        ));
        Ok((Self(Some(inner)), worker))
    }

    /// Ids for a run about to start, or `None` when it will not be traced
    /// (off, or not picked by `{ ratio = … }`).
    pub fn begin(&self) -> Option<TraceHandle> {
        let inner = self.0.as_ref()?;
        let trace_id = u128::from_be_bytes(inner.ids.new_trace_id().to_bytes());
        if let Sampling::Ratio(r) = inner.sampling
            && !ratio_picks(trace_id, r)
        {
            return None;
        }
        Some(TraceHandle {
            trace_id,
            span_id: self.new_span_id(),
            propagate: inner.traceparent,
        })
    }

    /// After a run begun with `handle`: builds its trace from the record and
    /// queues it, unless `failures_only` and the run passed. Never waits.
    pub fn finish_run(&self, handle: TraceHandle, outcome: &Outcome, ctx: &RunContext) {
        let Some(inner) = self.0.as_ref() else {
            return;
        };
        if inner.sampling == Sampling::FailuresOnly && outcome.ok() {
            return;
        }
        let spans = spans::of_run(self, handle, outcome, ctx);
        self.record(spans);
    }

    /// Queues finished spans of one trace (dropped whole, and counted, when
    /// the queue has no room for all of them). Never waits.
    pub fn record(&self, spans: Vec<SpanData>) {
        let Some(inner) = self.0.as_ref() else {
            return;
        };
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        if inner.queue.push(spans) {
            inner.stats.traces_queued.fetch_add(1, Ordering::Relaxed);
        } else {
            inner.stats.spans_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The sampling mode (`Off` when off).
    pub fn sampling(&self) -> Sampling {
        self.0.as_ref().map(|i| i.sampling).unwrap_or(Sampling::Off)
    }

    /// A fresh trace for an operation that is not a check run (the
    /// controller's ingest batches and deliveries), sampled by the same
    /// rule; `None` when off or not picked. `failures_only` is for the
    /// caller to apply when the operation has ended.
    pub fn begin_operation(&self) -> Option<TraceHandle> {
        self.begin().map(|h| TraceHandle {
            propagate: false,
            ..h
        })
    }

    /// Records an operation begun with [`Telemetry::begin_operation`] as a
    /// one-span trace (the controller's ingest batches and deliveries):
    /// status error with `error` as description when it failed; skipped
    /// under `failures_only` when it did not. Never waits.
    #[allow(clippy::too_many_arguments)]
    pub fn record_operation(
        &self,
        handle: TraceHandle,
        kind: SpanKind,
        name: impl Into<std::borrow::Cow<'static, str>>,
        start: std::time::SystemTime,
        end: std::time::SystemTime,
        attributes: Vec<KeyValue>,
        error: Option<&str>,
    ) {
        if error.is_none() && self.sampling() == Sampling::FailuresOnly {
            return;
        }
        let status = error
            .map(|e| Status::error(e.to_owned()))
            .unwrap_or_default();
        let span = self.span(
            handle,
            handle.span_id,
            0,
            kind,
            name,
            start,
            end,
            attributes,
            status,
        );
        self.record(vec![span]);
    }

    /// A new random span id.
    pub fn new_span_id(&self) -> u64 {
        match &self.0 {
            Some(i) => u64::from_be_bytes(i.ids.new_span_id().to_bytes()),
            None => 0,
        }
    }

    /// A span of this pipeline's scope: `name` in trace `handle`, with id
    /// `span_id` under `parent` (0: the root), from `start` to `end`.
    #[allow(clippy::too_many_arguments)]
    pub fn span(
        &self,
        handle: TraceHandle,
        span_id: u64,
        parent: u64,
        kind: opentelemetry::trace::SpanKind,
        name: impl Into<std::borrow::Cow<'static, str>>,
        start: std::time::SystemTime,
        end: std::time::SystemTime,
        attributes: Vec<KeyValue>,
        status: opentelemetry::trace::Status,
    ) -> SpanData {
        let scope = self
            .0
            .as_ref()
            .map(|i| i.scope.clone())
            .unwrap_or_else(|| InstrumentationScope::builder("outpost").build());
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(handle.trace_id),
                SpanId::from(span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: kind,
            name: name.into(),
            start_time: start,
            end_time: end.max(start),
            attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status,
            instrumentation_scope: scope,
        }
    }
}

/// `TraceIdRatioBased`: the trace id's low 63 bits below `ratio · 2^63`.
fn ratio_picks(trace_id: u128, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    ((trace_id as u64) & (u64::MAX >> 1)) < bound
}

/// The gRPC channel to the collector, connected lazily (a collector that is
/// down at start is not an error; its exports fail and are counted).
fn channel(config: &TelemetryConfig) -> Result<tonic::transport::Channel, TelemetryError> {
    let bad = |reason: String| TelemetryError::Endpoint {
        endpoint: config.endpoint.clone(),
        reason,
    };
    let mut ep = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(config.export_timeout.min(Duration::from_secs(5)))
        .timeout(config.export_timeout);
    if config.endpoint.starts_with("https://") {
        let tls = ClientTlsConfig::new();
        let tls = match &config.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_webpki_roots(),
        };
        ep = ep.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    }
    Ok(ep.connect_lazy())
}

/// Finished traces waiting for export, bounded in spans.
#[derive(Debug)]
struct Queue {
    spans: Mutex<VecDeque<SpanData>>,
    max: usize,
    ready: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Queue {
    fn new(max: usize) -> Self {
        Self {
            spans: Mutex::new(VecDeque::new()),
            max,
            ready: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Appends a whole trace, or nothing when it does not fit (false).
    fn push(&self, trace: Vec<SpanData>) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() + trace.len() > self.max {
            return false;
        }
        q.extend(trace);
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Up to `n` of the oldest spans.
    fn take(&self, n: usize) -> Vec<SpanData> {
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    fn len(&self) -> usize {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The worker: a batch when `batch` spans wait or `delay` after the first
/// one arrived; one last flush on shutdown.
async fn export_loop(
    inner: Arc<Inner>,
    exporter: opentelemetry_otlp::SpanExporter,
    batch: usize,
    delay: Duration,
    timeout: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        if inner.queue.len() == 0 {
            tokio::select! {
                _ = inner.queue.ready.notified() => {}
                _ = shutdown.wait_for(|v| *v) => break,
            }
        }
        // The first span is here: wait for a full batch, at most `delay`.
        let deadline = tokio::time::Instant::now() + delay;
        let mut stop = false;
        while inner.queue.len() < batch {
            tokio::select! {
                _ = inner.queue.ready.notified() => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.wait_for(|v| *v) => { stop = true; break; }
            }
        }
        loop {
            let spans = inner.queue.take(batch);
            if spans.is_empty() {
                break;
            }
            export(&inner, &exporter, spans, timeout, &mut failing).await;
            if inner.queue.len() < batch && !stop {
                break;
            }
        }
        if stop {
            break;
        }
    }
    // The last flush is bounded as a whole by one export_timeout, so a
    // collector that is down delays shutdown by that much at most.
    inner.queue.closed.store(true, Ordering::Relaxed);
    let flush = async {
        loop {
            let spans = inner.queue.take(batch);
            if spans.is_empty() {
                break;
            }
            export(&inner, &exporter, spans, timeout, &mut failing).await;
        }
    };
    if tokio::time::timeout(timeout, flush).await.is_err() {
        let left = inner.queue.take(usize::MAX).len() as u64;
        inner.stats.spans_dropped.fetch_add(left, Ordering::Relaxed);
    }
    let _ = exporter.shutdown();
}

async fn export(
    inner: &Inner,
    exporter: &opentelemetry_otlp::SpanExporter,
    spans: Vec<SpanData>,
    timeout: Duration,
    failing: &mut bool,
) {
    let n = spans.len() as u64;
    let err = match tokio::time::timeout(timeout, exporter.export(spans)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "no answer within {}",
            crate::human::duration(timeout)
        )),
    };
    match err {
        None => {
            inner.stats.spans_exported.fetch_add(n, Ordering::Relaxed);
            if std::mem::take(failing) {
                tracing::info!("trace export recovered");
            }
        }
        Some(error) => {
            inner.stats.spans_dropped.fetch_add(n, Ordering::Relaxed);
            inner.stats.export_failures.fetch_add(1, Ordering::Relaxed);
            // Once per outage, not once per batch.
            if !std::mem::replace(failing, true) {
                tracing::warn!(spans = n, error = %error, "trace export failed; spans dropped until the collector answers");
            } else {
                tracing::debug!(spans = n, error = %error, "trace export failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampling_follows_the_trace_id() {
        assert!(ratio_picks(u128::MAX, 1.0));
        assert!(!ratio_picks(0, 0.0));
        assert!(ratio_picks(1, 0.5));
        assert!(!ratio_picks(u128::from(u64::MAX >> 1), 0.5));
        let picked = (0..10_000u128)
            .filter(|i| {
                ratio_picks(
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                    0.1,
                )
            })
            .count();
        assert!((700..1300).contains(&picked), "{picked}");
    }

    #[test]
    fn traceparent_is_w3c_version_00_and_sampled() {
        let h = TraceHandle {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            propagate: true,
        };
        assert_eq!(
            h.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn a_full_queue_drops_a_whole_trace_and_keeps_the_rest() {
        let t = Telemetry::off();
        let h = TraceHandle {
            trace_id: 1,
            span_id: 1,
            propagate: false,
        };
        let now = std::time::SystemTime::now();
        let span = |i| {
            t.span(
                h,
                i,
                0,
                opentelemetry::trace::SpanKind::Internal,
                "x",
                now,
                now,
                Vec::new(),
                opentelemetry::trace::Status::Unset,
            )
        };
        let q = Queue::new(3);
        assert!(q.push(vec![span(1), span(2)]));
        assert!(!q.push(vec![span(3), span(4)]));
        assert!(q.push(vec![span(5)]));
        let ids: Vec<u64> = q
            .take(10)
            .iter()
            .map(|s| u64::from_be_bytes(s.span_context.span_id().to_bytes()))
            .collect();
        assert_eq!(ids, [1, 2, 5]);
    }
}
