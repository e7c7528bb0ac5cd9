//! [`OtlpReceiver`]: a real OTLP/gRPC trace receiver on loopback — the
//! `opentelemetry.proto.collector.trace.v1.TraceService` from
//! `opentelemetry-proto`'s generated tonic server, on the tree's tonic —
//! that records every `ExportTraceServiceRequest` it is sent. The
//! OpenTelemetry Collector cannot be installed here; this speaks the same
//! protocol, so an exporter that works against it works against a Collector.
//!
//! [`Span`] is a flattened view (ids as hex, attributes as strings, the
//! resource's attributes alongside) so tests read names, parents,
//! attributes and statuses without walking the protobuf nesting.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
};
use tokio_stream::wrappers::TcpListenerStream;

use crate::server::bind_loopback;

/// One exported span, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// `SPAN_KIND_*` as its number (1 internal, 3 client, …).
    pub kind: i32,
    /// Attributes, values as strings (ints and bools printed).
    pub attributes: BTreeMap<String, String>,
    /// The resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, String>,
    /// Status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// Status message (the description of an error).
    pub status_message: String,
    /// Start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nanos: u64,
}

impl Span {
    /// An attribute's value as a string.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// True for a root span (no parent).
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

#[derive(Debug, Default)]
struct Recorded {
    requests: usize,
    spans: Vec<Span>,
}

#[derive(Debug, Clone, Default)]
struct Service(Arc<Mutex<Recorded>>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let mut rec = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rec.requests += 1;
        for rs in req.resource_spans {
            let resource = rs
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let status = s.status.unwrap_or_default();
                    rec.spans.push(Span {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        name: s.name,
                        kind: s.kind,
                        attributes: attributes(&s.attributes),
                        resource: resource.clone(),
                        status_code: status.code,
                        status_message: status.message,
                        start_unix_nanos: s.start_time_unix_nano,
                        end_unix_nanos: s.end_time_unix_nano,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
        .collect()
}

fn value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A running OTLP/gRPC trace receiver (plaintext h2c on 127.0.0.1).
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    recorded: Service,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// Starts a receiver on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<OtlpReceiver> {
        let listener = bind_loopback(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr().context("reading bound address")?;
        let recorded = Service::default();
        let router = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(recorded.clone()));
        let incoming = TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            if let Err(err) = router.serve_with_incoming(incoming).await {
                tracing::debug!(error = %err, "testkit otlp receiver stopped");
            }
        });
        Ok(OtlpReceiver {
            addr,
            recorded,
            task,
        })
    }

    /// The endpoint for `[telemetry] otlp_endpoint`: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.lock().spans.clone()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.lock()
            .spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Root spans received so far (one per exported trace).
    pub fn roots(&self) -> Vec<Span> {
        self.lock()
            .spans
            .iter()
            .filter(|s| s.is_root())
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
