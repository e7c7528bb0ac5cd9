//! `[telemetry]`: OpenTelemetry trace export over OTLP/gRPC, the same table
//! in `probe.toml` and `controller.toml` ([`crate::telemetry`] is what it
//! drives).
//!
//! ```toml
//! [telemetry]
//! otlp_endpoint = "https://otel-collector.example.net:4317"
//! ca_file = "/etc/outpost/collector-ca.pem"
//! sampling = "failures_only"        # "off" | "always" | "failures_only" | { ratio = 0.1 }
//! traceparent = true                # probe only: W3C traceparent on requests to HTTP targets
//! ```

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{Dur, Problems};

/// Default `otlp_endpoint`: a Collector (or agent) on the same host.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4317";
/// Default `max_batch_size`.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 512;
/// Default `max_queue_size`.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 4096;
/// Default `export_timeout`.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `batch_delay`.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(2);

/// `[telemetry]` as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP/gRPC endpoint of a Collector (or any OTLP trace receiver), e.g.
    /// `"http://127.0.0.1:4317"` (plaintext) or
    /// `"https://collector.example.net:4317"` (TLS, verified against
    /// `ca_file` or the bundled Mozilla roots). Default
    /// `"http://127.0.0.1:4317"`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// PEM bundle that verifies an `https://` endpoint's certificate.
    /// Default: the bundled Mozilla roots. Only with `https://`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Which runs become traces: `"off"` (default: nothing is built or
    /// sent), `"always"`, `"failures_only"` (decided after the run, so only
    /// failing runs are exported), or `{ ratio = 0.1 }` (that share of runs,
    /// decided from the trace id like OpenTelemetry's `TraceIdRatioBased`).
    /// In the controller: `"failures_only"` keeps ingest batches that were
    /// refused and deliveries that did not succeed.
    #[serde(default)]
    pub sampling: Option<RawSampling>,
    /// `service.name` of the exported resource. Default: the binary's name,
    /// `"outpost-probe"` or `"outpost-controller"`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Spans sent in one export request at most. Default 512.
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    /// Spans waiting for export at most. A trace that does not fit is
    /// dropped whole and counted (`outpost_probe_trace_spans_dropped_total`);
    /// a run never waits for the exporter. Default 4096.
    #[serde(default)]
    pub max_queue_size: Option<usize>,
    /// Deadline of one export request; a batch that misses it is dropped
    /// and counted. Default `"10s"`.
    #[serde(default)]
    pub export_timeout: Option<Dur>,
    /// The longest a finished span waits for its batch to fill before it is
    /// sent anyway. Default `"2s"`.
    #[serde(default)]
    pub batch_delay: Option<Dur>,
    /// Probe only: send a W3C `traceparent` header (the run's trace id, the
    /// `check` span as parent, sampled flag set) on every HTTP request of a
    /// traced run (http, session and flow checks), so a failing run can be
    /// found in the target's own traces. Default false. With
    /// `failures_only` every run carries one, exported or not.
    #[serde(default)]
    pub traceparent: bool,
}

/// `sampling`: a mode name or `{ ratio = … }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawSampling {
    /// `"off"`, `"always"` or `"failures_only"`.
    Mode(#[schemars(schema_with = "sampling_modes")] String),
    /// `{ ratio = 0.1 }`.
    Ratio(RawRatio),
}

/// The mode names `sampling` accepts (the schema lists them; the loader
/// names the key when another word is written).
fn sampling_modes(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["off", "always", "failures_only"] })
}

/// `sampling = { ratio = … }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRatio {
    /// Share of runs traced, from 0.0 to 1.0.
    pub ratio: f64,
}

/// Which runs become traces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// None: no trace is built.
    Off,
    /// Every run.
    Always,
    /// Runs that failed, decided after the run.
    FailuresOnly,
    /// This share of runs, decided from the trace id before the run.
    Ratio(f64),
}

/// Validated `[telemetry]` with tracing on (sampling not `off`).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint URL.
    pub endpoint: String,
    /// Roots for an `https://` endpoint.
    pub ca_file: Option<PathBuf>,
    /// Which runs become traces.
    pub sampling: Sampling,
    /// `service.name`, when not the binary's default.
    pub service_name: Option<String>,
    /// Spans per export request.
    pub max_batch_size: usize,
    /// Spans waiting at most.
    pub max_queue_size: usize,
    /// Deadline of one export.
    pub export_timeout: Duration,
    /// Longest wait for a batch to fill.
    pub batch_delay: Duration,
    /// Send `traceparent` to HTTP targets.
    pub traceparent: bool,
}

impl RawTelemetry {
    /// Validates `[telemetry]`; `None` when sampling is `off` (or on a
    /// problem, recorded under `telemetry.*`).
    pub fn validate(&self, p: &mut Problems) -> Option<TelemetryConfig> {
        let sampling = match &self.sampling {
            None => Sampling::Off,
            Some(RawSampling::Mode(m)) => match m.as_str() {
                "off" => Sampling::Off,
                "always" => Sampling::Always,
                "failures_only" => Sampling::FailuresOnly,
                other => {
                    p.push(
                        "telemetry.sampling",
                        format!(
                            "unknown sampling {other:?}: use \"off\", \"always\", \"failures_only\" or {{ ratio = 0.1 }}"
                        ),
                    );
                    Sampling::Off
                }
            },
            Some(RawSampling::Ratio(r)) => {
                if !(0.0..=1.0).contains(&r.ratio) {
                    p.push(
                        "telemetry.sampling.ratio",
                        format!(
                            "ratio must be between 0.0 and 1.0, got {}, e.g. 0.1 for one run in ten",
                            r.ratio
                        ),
                    );
                }
                Sampling::Ratio(r.ratio)
            }
        };
        let endpoint = self
            .otlp_endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let https = endpoint.starts_with("https://");
        if !(https || endpoint.starts_with("http://")) || endpoint.parse::<http::Uri>().is_err() {
            p.push(
                "telemetry.otlp_endpoint",
                format!(
                    "invalid OTLP endpoint {endpoint:?}: use http://host:4317 or https://host:4317"
                ),
            );
        }
        if let Some(ca) = &self.ca_file {
            if !https {
                p.push(
                    "telemetry.ca_file",
                    "ca_file needs an https:// otlp_endpoint",
                );
            } else if let Err(e) = crate::tls::read_pem_certs(ca) {
                p.push("telemetry.ca_file", e);
            }
        }
        if let Some(name) = &self.service_name
            && name.trim().is_empty()
        {
            p.push(
                "telemetry.service_name",
                "service_name must not be empty, e.g. \"outpost-probe\"",
            );
        }
        let max_batch_size = self.max_batch_size.unwrap_or(DEFAULT_MAX_BATCH_SIZE);
        let max_queue_size = self.max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
        if max_batch_size == 0 {
            p.push(
                "telemetry.max_batch_size",
                "max_batch_size must be at least 1",
            );
        }
        if max_queue_size < max_batch_size {
            p.push(
                "telemetry.max_queue_size",
                format!(
                    "max_queue_size ({max_queue_size}) must be at least max_batch_size ({max_batch_size})"
                ),
            );
        }
        let export_timeout = self
            .export_timeout
            .map(Dur::get)
            .unwrap_or(DEFAULT_EXPORT_TIMEOUT);
        if export_timeout.is_zero() {
            p.push(
                "telemetry.export_timeout",
                "export_timeout must be longer than 0s, e.g. \"10s\"",
            );
        }
        let batch_delay = self
            .batch_delay
            .map(Dur::get)
            .unwrap_or(DEFAULT_BATCH_DELAY);
        if batch_delay.is_zero() {
            p.push(
                "telemetry.batch_delay",
                "batch_delay must be longer than 0s, e.g. \"2s\"",
            );
        }
        if sampling == Sampling::Off {
            return None;
        }
        Some(TelemetryConfig {
            endpoint,
            ca_file: self.ca_file.clone(),
            sampling,
            service_name: self.service_name.clone(),
            max_batch_size,
            max_queue_size,
            export_timeout,
            batch_delay,
            traceparent: self.traceparent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> (Option<TelemetryConfig>, Problems) {
        let raw: RawTelemetry = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        (raw.validate(&mut p), p)
    }

    #[test]
    fn sampling_defaults_to_off_and_parses_every_form() {
        let (c, p) = validate("");
        assert!(c.is_none() && p.is_empty());
        let (c, _) = validate("sampling = \"always\"");
        let c = c.unwrap();
        assert_eq!(c.sampling, Sampling::Always);
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(c.max_batch_size, DEFAULT_MAX_BATCH_SIZE);
        assert!(!c.traceparent);
        let (c, _) = validate("sampling = \"failures_only\"\ntraceparent = true");
        let c = c.unwrap();
        assert_eq!(c.sampling, Sampling::FailuresOnly);
        assert!(c.traceparent);
        let (c, _) = validate("sampling = { ratio = 0.25 }");
        assert_eq!(c.unwrap().sampling, Sampling::Ratio(0.25));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, path) in [
            ("sampling = \"sometimes\"", "telemetry.sampling"),
            ("sampling = { ratio = 1.5 }", "telemetry.sampling.ratio"),
            (
                "sampling = \"always\"\notlp_endpoint = \"grpc://x:4317\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "sampling = \"always\"\nca_file = \"/nonexistent.pem\"",
                "telemetry.ca_file",
            ),
            (
                "sampling = \"always\"\nmax_batch_size = 10\nmax_queue_size = 5",
                "telemetry.max_queue_size",
            ),
            (
                "sampling = \"always\"\nexport_timeout = \"0s\"",
                "telemetry.export_timeout",
            ),
        ] {
            let (_, p) = validate(text);
            let err = p.finish("p.toml").expect_err(text);
            assert!(err.has_path(path), "{text}: expected {path}, got {err}");
        }
        assert!(toml::from_str::<RawTelemetry>("sampling = { rate = 0.1 }").is_err());
        assert!(toml::from_str::<RawTelemetry>("endpoint = \"x\"").is_err());
    }
}
