//! What a dns check observed: [`Observed`], the `details` of a dns result
//! (shape in [`super`]).

use serde::{Deserialize, Serialize};

use super::{Answer, AnswerSet};
use crate::check::FailureCode;

/// The `details` of a dns result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observed {
    /// The asked name, lowercase, without the trailing dot.
    pub name: String,
    /// The asked type (`"A"`, `"MX"`…).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub rtype: String,
    /// Every resolver, in config order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<ResolverRecord>,
    /// Resolvers whose answer set changed since the last run (only on a
    /// run that saw a change): the controller's DNS change events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangeRecord>,
    /// The change being propagated, while one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<PropagationRecord>,
    /// The resolvers grouped by answer set, when the sets differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disagreement: Vec<AnswerGroup>,
}

/// One resolver in `details.resolvers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResolverRecord {
    /// The resolver (`"udp://192.0.2.53:53"`, `"system"`).
    pub resolver: String,
    /// Its answer passed every assertion.
    pub ok: bool,
    /// Why not.
    #[serde(deserialize_with = "crate::check::failure::lenient_code")]
    pub failure_code: Option<FailureCode>,
    /// The failure's message.
    pub failure_message: Option<String>,
    /// What it answered (`None`: no answer at all — timeout, refused…).
    #[serde(flatten)]
    pub answer: Option<ResolverAnswer>,
}

/// What a resolver answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolverAnswer {
    /// Response code mnemonic (`"NOERROR"`, `"NXDOMAIN"`…). Always present
    /// in an answer: it tells an answer from none.
    pub rcode: String,
    /// `"udp"`, `"tcp"` or `"system"`.
    #[serde(default)]
    pub transport: String,
    /// A truncated UDP answer was retried over TCP.
    #[serde(default)]
    pub truncated_retried: bool,
    /// Queries sent (CNAME chasing asks again).
    #[serde(default)]
    pub queries: u32,
    /// The resolver's time, µs.
    #[serde(default)]
    pub time_us: u64,
    /// Every record in chain order, with its TTL as served.
    #[serde(default)]
    pub answers: Vec<Answer>,
    /// The CNAME hops from the asked name.
    #[serde(default)]
    pub cname_chain: Vec<CnameHop>,
    /// Where the chain ends (the asked name without CNAMEs).
    #[serde(default)]
    pub final_name: String,
    /// The addresses (A/AAAA checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<AddressTtl>>,
    /// Lowest TTL in the answer (`null`: no records).
    #[serde(default)]
    pub min_ttl: Option<u32>,
    /// Highest TTL in the answer.
    #[serde(default)]
    pub max_ttl: Option<u32>,
    /// The negative-caching TTL of an empty answer (SOA minimum).
    #[serde(default)]
    pub negative_ttl: Option<u32>,
    /// `"owner TYPE data"` per record, sorted: the compared identity.
    #[serde(default)]
    pub answer_set: Vec<String>,
    /// FNV-1a 64 of `rcode` and `answer_set`.
    #[serde(default)]
    pub fingerprint: String,
}

/// One CNAME hop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CnameHop {
    /// Owner.
    pub name: String,
    /// Target.
    pub target: String,
    /// TTL, seconds.
    pub ttl: u32,
}

/// One address with its TTL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddressTtl {
    /// The IP, canonical text.
    pub ip: String,
    /// TTL, seconds.
    pub ttl: u32,
}

/// A resolver's answer set changed between runs (`details.changes[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChangeRecord {
    /// The resolver.
    pub resolver: String,
    /// When the change was seen, RFC 3339.
    pub at: String,
    /// Largest TTL seen for the old set, seconds.
    pub old_ttl_s: u32,
    /// What it served before.
    pub old: AnswerSet,
    /// What it serves now.
    pub new: AnswerSet,
}

/// A change spreading across resolvers (`details.propagation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PropagationRecord {
    /// The resolver that changed first.
    pub leader: String,
    /// When, RFC 3339.
    pub changed_at: String,
    /// The old set's largest TTL, seconds.
    pub old_ttl_s: u32,
    /// Old TTL plus `propagation_grace`, ms.
    pub window_ms: u64,
    /// `changed_at + window`, RFC 3339.
    pub deadline: String,
    /// The window has passed and some resolver still lags.
    pub stalled: bool,
    /// The set before.
    pub old: AnswerSet,
    /// The set to reach.
    pub new: AnswerSet,
    /// Resolvers still serving something else.
    pub lagging: Vec<LaggingRecord>,
}

/// A resolver that has not followed a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaggingRecord {
    /// The resolver.
    pub resolver: String,
    /// What it still serves.
    pub serving: AnswerSet,
    /// Since when, RFC 3339.
    pub serving_since: String,
    /// Time since the change was first seen, ms.
    pub lagging_for_ms: u64,
}

/// Resolvers serving one answer set (`details.disagreement[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnswerGroup {
    /// The resolvers.
    pub resolvers: Vec<String>,
    /// What they serve.
    pub answer_set: AnswerSet,
}
