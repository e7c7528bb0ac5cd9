//! What an http check observed: [`Observed`], the `details` of an http
//! result (shape in [`super`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::exchange::{Hop, TlsInfo};
use crate::check::{FailureCode, Phases, assertion::AssertionResult};

/// The `details` of an http result.
///
/// `url` (and `method`) are always there; the final-hop facts, `chain` and
/// `assertions` once a request was made (the representative sample: the
/// first failing one, else the first); `samples` with `samples > 1`;
/// `addresses` with more than one address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// The check's URL.
    pub url: String,
    /// The check's method (absent only when the run was cut short by the
    /// dispatcher's safety net).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// `ip:port` of the representative sample's first hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The final hop of the representative sample; `timeout_phase` is
    /// `"dns"` when resolving the name timed out.
    #[serde(flatten)]
    pub last: FinalHop,
    /// Every hop of the representative sample, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<Hop>>,
    /// The assertions evaluated on its final response (empty when there
    /// was none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertions: Option<Vec<AssertionResult>>,
    /// Every sample of every address (`samples > 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<SampleRecord>>,
    /// Counts over `samples`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_summary: Option<SamplesSummary>,
    /// Each address requested (more than one address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<AddressRecord>>,
    /// Addresses requested (more than one address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses_total: Option<usize>,
    /// Addresses failing (more than one address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses_failing: Option<usize>,
}

impl Observed {
    /// The representative sample's hops (empty before any request).
    pub fn hops(&self) -> &[Hop] {
        self.chain.as_deref().unwrap_or_default()
    }

    /// The representative sample's assertions.
    pub fn assertion_results(&self) -> &[AssertionResult] {
        self.assertions.as_deref().unwrap_or_default()
    }
}

/// Facts of a sample's final hop, flattened into [`Observed`] and each
/// [`AddressRecord`]. `tls` is the last https hop's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinalHop {
    /// Response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Its Location, resolved against its URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `"HTTP/1.1"`, `"HTTP/2.0"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    /// Body bytes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<usize>,
    /// The phase the deadline interrupted (`"connect"`, `"first byte"`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_phase: Option<String>,
    /// TLS facts of the last https hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The data's age in seconds (a freshness assertion read a timestamp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
}

/// One sample, an entry of `details.samples`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SampleRecord {
    /// 0-based index within its address.
    pub index: usize,
    /// `ip:port` of its first hop.
    pub address: String,
    /// Passed.
    pub ok: bool,
    /// Why not.
    #[serde(deserialize_with = "crate::check::failure::lenient_code")]
    pub failure_code: Option<FailureCode>,
    /// The failure's message.
    pub failure_message: Option<String>,
    /// Final status.
    pub status: Option<u16>,
    /// The `backend_header` value of the final response.
    pub backend: Option<String>,
    /// Phases summed over its chain.
    pub phases_us: Phases,
}

/// `details.samples_summary`: counts over every sample of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplesSummary {
    /// Samples run.
    pub total: usize,
    /// Samples failed.
    pub failed: usize,
    /// `failed / total` (0 when none ran).
    pub ratio: f64,
    /// The check's `max_failure_ratio`.
    pub max_failure_ratio: f64,
    /// Counts per `backend_header` value (samples without one: per address).
    pub by_backend: BTreeMap<String, BackendTally>,
}

/// Samples of one backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendTally {
    /// Samples.
    pub total: usize,
    /// Failed samples.
    pub failed: usize,
}

/// One address of a name, an entry of `details.addresses`: its verdict and
/// its representative sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddressRecord {
    /// `ip:port`.
    pub address: String,
    /// The address passed.
    pub ok: bool,
    /// Why not.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::check::failure::lenient_code"
    )]
    pub failure_code: Option<FailureCode>,
    /// The failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// Samples run.
    pub samples_total: usize,
    /// Samples failed.
    pub samples_failed: usize,
    /// The representative sample's final hop.
    #[serde(flatten)]
    pub last: FinalHop,
    /// Its phases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases_us: Option<Phases>,
    /// Its hops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<Hop>>,
    /// Its assertions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertions: Option<Vec<AssertionResult>>,
}
