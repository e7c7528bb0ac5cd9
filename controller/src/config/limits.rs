//! `[server.probe_limits]`: bounds on everything a probe sends.
//!
//! A probe holds a credential, not the controller's trust: every value it
//! sends is bounded here, checked in [`crate::ingest`], and a violation gets
//! a gRPC status naming the limit (`RESOURCE_EXHAUSTED` for size and rate,
//! `INVALID_ARGUMENT` for shape), is counted in
//! `outpost_probe_limit_violations_total{reason}` and is never stored.
//!
//! ```toml
//! [server.probe_limits]
//! max_message_size = "4MiB"    # one gRPC message (tonic's decoder limit)
//! max_batch_results = 1000     # results in one ResultBatch
//! results_per_second = 5000    # token bucket per probe: refill rate
//! results_burst = 50000        # … and capacity
//! max_labels = 32              # hello labels
//! max_label_bytes = 256        # each label key and value
//! max_failure_message = "8KiB" # one result's failure_message
//! ```

use outpost_probe::config::{Problems, Size};
use serde::Deserialize;

/// `[server.probe_limits]` as written; every key optional.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProbeLimits {
    /// Largest gRPC message a probe may send. Default `"4MiB"`, at least `"64KiB"`.
    #[serde(default)]
    pub max_message_size: Option<Size>,
    /// Results in one batch at most (the probe sends at most 500). Default 1000.
    #[serde(default)]
    pub max_batch_results: Option<usize>,
    /// Sustained results per second per probe. Default 5000.
    #[serde(default)]
    pub results_per_second: Option<u32>,
    /// Results a probe may send at once after being quiet (a reconnect
    /// backlog). Default 50000; at least `max_batch_results`.
    #[serde(default)]
    pub results_burst: Option<u32>,
    /// Labels in a hello at most. Default 32.
    #[serde(default)]
    pub max_labels: Option<usize>,
    /// Bytes per label key and per label value at most. Default 256.
    #[serde(default)]
    pub max_label_bytes: Option<usize>,
    /// Bytes of one result's failure message at most (the probe truncates
    /// what it records to 1 KiB per value). Default `"8KiB"`.
    #[serde(default)]
    pub max_failure_message: Option<Size>,
}

/// Validated probe limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLimits {
    /// Largest decoded gRPC message, bytes.
    pub max_message_size: usize,
    /// Results per batch.
    pub max_batch_results: usize,
    /// Token bucket refill, results per second.
    pub results_per_second: u32,
    /// Token bucket capacity.
    pub results_burst: u32,
    /// Labels per hello.
    pub max_labels: usize,
    /// Bytes per label key or value.
    pub max_label_bytes: usize,
    /// Bytes per failure message.
    pub max_failure_message: usize,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        ProbeLimits {
            max_message_size: 4 * 1024 * 1024,
            max_batch_results: 1000,
            results_per_second: 5000,
            results_burst: 50_000,
            max_labels: 32,
            max_label_bytes: 256,
            max_failure_message: 8 * 1024,
        }
    }
}

const KEY: &str = "server.probe_limits";

/// Applies defaults and checks each key's range.
pub fn validate(raw: Option<&RawProbeLimits>, p: &mut Problems) -> ProbeLimits {
    let d = ProbeLimits::default();
    let Some(raw) = raw else { return d };
    let size = |v: Option<Size>, default: usize| {
        v.map(|s| usize::try_from(s.bytes()).unwrap_or(usize::MAX))
            .unwrap_or(default)
    };
    let l = ProbeLimits {
        max_message_size: size(raw.max_message_size, d.max_message_size),
        max_batch_results: raw.max_batch_results.unwrap_or(d.max_batch_results),
        results_per_second: raw.results_per_second.unwrap_or(d.results_per_second),
        results_burst: raw.results_burst.unwrap_or(d.results_burst),
        max_labels: raw.max_labels.unwrap_or(d.max_labels),
        max_label_bytes: raw.max_label_bytes.unwrap_or(d.max_label_bytes),
        max_failure_message: size(raw.max_failure_message, d.max_failure_message),
    };
    if l.max_message_size < 64 * 1024 {
        p.push(
            format!("{KEY}.max_message_size"),
            "max_message_size must be ≥ 64KiB (one batch of results must fit)",
        );
    }
    // The probe sends up to 500 results per batch.
    if l.max_batch_results < 500 {
        p.push(
            format!("{KEY}.max_batch_results"),
            format!(
                "max_batch_results must be ≥ 500 (a probe sends up to 500 per batch), got {}",
                l.max_batch_results
            ),
        );
    }
    if l.results_per_second == 0 {
        p.push(
            format!("{KEY}.results_per_second"),
            "results_per_second must be ≥ 1",
        );
    }
    if (l.results_burst as usize) < l.max_batch_results {
        p.push(
            format!("{KEY}.results_burst"),
            format!(
                "results_burst ({}) must be ≥ max_batch_results ({}), or a full batch could never pass",
                l.results_burst, l.max_batch_results
            ),
        );
    }
    if l.max_label_bytes == 0 {
        p.push(
            format!("{KEY}.max_label_bytes"),
            "max_label_bytes must be ≥ 1",
        );
    }
    if l.max_failure_message < 1024 {
        p.push(
            format!("{KEY}.max_failure_message"),
            "max_failure_message must be ≥ 1KiB (the probe records up to 1 KiB per value)",
        );
    }
    l
}
