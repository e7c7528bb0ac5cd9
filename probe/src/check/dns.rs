//! The `dns` check kind: what each listed resolver answers for a name and
//! type, the assertions on it, agreement between resolvers, and — across
//! runs — answer changes and their propagation.
//!
//! In the IOT incident a CNAME change went out and engineers blamed DNS
//! caching for hours without seeing what resolvers answered. This check shows
//! it: every resolver's answer with exact TTLs (named servers are asked
//! directly, see [`crate::resolver`]), the CNAME chain, and a fingerprint per
//! answer set so a change is an event and a resolver that does not follow is
//! named.
//!
//! # Assertions and failure codes
//! Each resolver is checked on its own, in this order: rcode (`dns_nxdomain`,
//! `dns_servfail`, `dns_refused`, `dns_rcode_mismatch`), `min_answers`
//! (`dns_too_few_answers`), `cname_target` (`dns_cname_mismatch`),
//! `answers_equal` / `answers_contain` (`dns_answer_mismatch`), `ttl_min` /
//! `ttl_max` (`dns_ttl_out_of_bounds`). No answer at all gives `dns_timeout`,
//! `dns_truncated` (TC=1 and the TCP retry failed), `connection_refused` or
//! `dns_failure` (an invalid answer). The first failing resolver in config
//! order names the run's code; the message lists every failing resolver.
//! When every resolver passes and `resolvers_agree` holds, differing answer
//! sets give `dns_propagation_stalled` once a change has had its old TTL
//! plus `propagation_grace` to spread, and `dns_resolvers_disagree` before.
//!
//! # Change tracking (state across runs)
//! A process-wide [`DnsHistory`] per check id keeps, per resolver, the last
//! answer set (rcode + sorted records without TTLs), its fingerprint, TTLs
//! and since when it is served. A different set is a [`Change`]; the first
//! change while resolvers agreed starts a propagation window of the old
//! set's TTL (the largest seen: caches may hold any record of it that long)
//! plus the grace, measured from the run that saw the change. When every
//! resolver serves the new set the window closes. The history is memory
//! only: after a probe restart the first run is a baseline, not a change.
//! It is reset when the check's name, type or resolvers change.
//!
//! # Details JSON ([`Observed`])
//! Resolvers are [`ResolverRecord`] (what they answered: [`ResolverAnswer`],
//! flattened), changes [`ChangeRecord`], propagation [`PropagationRecord`],
//! disagreement [`AnswerGroup`]; answer sets are [`AnswerSet`].
//! ```json
//! {
//!   "name": "www.example.net", "type": "A",
//!   "resolvers": [{
//!     "resolver": "udp://192.0.2.53:53",
//!     "ok": true, "failure_code": null, "failure_message": null,
//!     "rcode": "NOERROR",
//!     "transport": "udp", "truncated_retried": false, "queries": 1,
//!     "time_us": 812,
//!     "answers": [
//!       {"name": "www.example.net", "type": "CNAME", "data": "blue.example.net", "ttl": 300},
//!       {"name": "blue.example.net", "type": "A", "data": "192.0.2.10", "ttl": 60}],
//!     "cname_chain": [{"name": "www.example.net", "target": "blue.example.net", "ttl": 300}],
//!     "final_name": "blue.example.net",
//!     "addresses": [{"ip": "192.0.2.10", "ttl": 60}],
//!     "min_ttl": 60, "max_ttl": 300, "negative_ttl": null,
//!     "answer_set": ["blue.example.net A 192.0.2.10", "www.example.net CNAME blue.example.net"],
//!     "fingerprint": "5d1c0e7a9b3f4c21"
//!   }],
//!   "changes": [{
//!     "resolver": "udp://192.0.2.53:53", "at": "2025-01-01T12:00:00Z", "old_ttl_s": 300,
//!     "old": {"rcode": "NOERROR", "cname_target": "blue.example.net", "answers": ["…"], "fingerprint": "…"},
//!     "new": {"rcode": "NOERROR", "cname_target": "green.example.net", "answers": ["…"], "fingerprint": "…"}}],
//!   "propagation": {
//!     "leader": "udp://192.0.2.53:53", "changed_at": "…", "old_ttl_s": 300, "window_ms": 330000,
//!     "deadline": "…", "stalled": false, "old": {…}, "new": {…},
//!     "lagging": [{"resolver": "udp://198.51.100.53:53", "serving": {…},
//!                  "serving_since": "…", "lagging_for_ms": 12000}]},
//!   "disagreement": [{"resolvers": ["udp://…"], "answer_set": {…}}]
//! }
//! ```
//! `transport` is `udp`, `tcp` (asked over TCP, or retried there after a
//! truncated UDP answer: `truncated_retried`) or `system`; `time_us` is the
//! resolver's time; `fingerprint` hashes `rcode` and `answer_set`. A resolver
//! that gave no answer has only `resolver`, `ok` and `failure_*`.
//! `addresses` appears for A/AAAA; `changes` only on a run that saw one;
//! `propagation` while a change is spreading; `disagreement` (the resolvers
//! grouped by answer set) when answer sets differ.

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Mutex, OnceLock, PoisonError},
    time::Duration,
};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RData, Record, RecordType},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod observed;

pub use self::observed::{
    AddressTtl, AnswerGroup, ChangeRecord, CnameHop, LaggingRecord, Observed, PropagationRecord,
    ResolverAnswer, ResolverRecord,
};
use super::{
    Failure, KindResult, Phases,
    failure::{AnswerView, ResolverFailure},
};
use crate::{
    config::{Dur, Problems},
    resolver::{self, QueryError, Resolution, ResolverSpec, fqdn, rcode_name},
};

/// Default `propagation_grace`.
pub const DEFAULT_PROPAGATION_GRACE: Duration = Duration::from_secs(30);
/// Query types a dns check can ask.
pub const SUPPORTED_TYPES: &[&str] =
    &["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "CAA", "SRV"];
/// Histories of checks not run for this long are dropped.
const HISTORY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// `[checks.dns]` as written in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// The name to ask for, with or without the trailing dot. Example:
    /// `"www.example.net"`.
    pub name: String,
    /// Record type: `A`, `AAAA`, `CNAME`, `MX`, `TXT`, `NS`, `SOA`, `CAA` or
    /// `SRV`. Default `"A"`. CNAME hops on the way are always reported.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    /// Resolvers to ask, all concurrently within the check's timeout:
    /// `"system"` (this machine's resolver configuration), `"IP:PORT"` or
    /// `"udp://IP:PORT"` (UDP, retried over TCP when truncated),
    /// `"tcp://IP:PORT"`. The port defaults to 53; IPv6 as `"[2001:db8::53]:53"`.
    /// Default `["system"]`. Example: `["udp://192.0.2.53:53", "tcp://198.51.100.53:53"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolvers: Option<Vec<String>>,
    /// Expected response code: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`…
    /// Default `"NOERROR"`. Set `"NXDOMAIN"` to check that a name is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// Records of the asked type that must be among the answers, in zone-file
    /// form: `"192.0.2.10"`, `"10 mail.example.net"`, `"0 issue \"letsencrypt.org\""`;
    /// TXT as its text (`"v=spf1 -all"`). Names compare without case and
    /// trailing dot. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers_contain: Vec<String>,
    /// The exact set of records of the asked type (order and duplicates
    /// ignored), same form as `answers_contain`. Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers_equal: Option<Vec<String>>,
    /// The name the CNAME chain must end at. Example: `"green.example.net"`.
    /// Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname_target: Option<String>,
    /// Every record in the answer (CNAME hops included) must have at least
    /// this TTL, e.g. `"60s"`. Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_min: Option<Dur>,
    /// Every record in the answer must have at most this TTL, e.g. `"5m"`
    /// before a migration. Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_max: Option<Dur>,
    /// Fewest records of the asked type. Default 1 when `rcode` is NOERROR
    /// (an empty answer fails) and `answers_equal` is not `[]`, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_answers: Option<u32>,
    /// With more than one resolver: all must serve the same answer set
    /// (records without TTLs, and the rcode), else `dns_resolvers_disagree`
    /// or, once a change has had time to spread, `dns_propagation_stalled`.
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolvers_agree: Option<bool>,
    /// After one resolver's answer changes, the others must follow within the
    /// old answer's TTL plus this grace, else `dns_propagation_stalled`.
    /// Default `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_grace: Option<Dur>,
}

/// A validated dns check.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSpec {
    /// The asked name, fully qualified.
    pub name: Name,
    /// The asked type.
    pub rtype: RecordType,
    /// Resolvers, in config order.
    pub resolvers: Vec<ResolverSpec>,
    /// Expected rcode.
    pub rcode: ResponseCode,
    /// Canonical record data that must be present.
    pub answers_contain: Vec<String>,
    /// Canonical record data, sorted and deduplicated, that must match exactly.
    pub answers_equal: Option<Vec<String>>,
    /// Canonical name the chain must end at.
    pub cname_target: Option<String>,
    /// Lowest TTL allowed, in seconds.
    pub ttl_min: Option<u32>,
    /// Highest TTL allowed, in seconds.
    pub ttl_max: Option<u32>,
    /// Fewest records of the asked type.
    pub min_answers: usize,
    /// Resolvers must agree.
    pub resolvers_agree: bool,
    /// Grace on top of the old TTL for a change to spread.
    pub propagation_grace: Duration,
}

fn ttl_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl RawDns {
    /// Validates; problems are recorded under `path` (`checks[0].dns`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<DnsSpec> {
        let before = problems.len();
        let name = match fqdn(&self.name) {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(
                    format!("{path}.name"),
                    format!("invalid DNS name {:?}, e.g. \"www.example.net\"", self.name),
                );
                None
            }
        };
        let type_text = self.record_type.as_deref().unwrap_or("A");
        let rtype = match SUPPORTED_TYPES
            .iter()
            .find(|t| t.eq_ignore_ascii_case(type_text.trim()))
            .and_then(|t| t.parse::<RecordType>().ok())
        {
            Some(t) => Some(t),
            None => {
                problems.push(
                    format!("{path}.type"),
                    format!(
                        "unsupported record type {type_text:?}: use one of {}",
                        SUPPORTED_TYPES.join(", ")
                    ),
                );
                None
            }
        };
        let mut resolvers = Vec::new();
        let written = self
            .resolvers
            .clone()
            .unwrap_or_else(|| vec!["system".to_owned()]);
        if written.is_empty() {
            problems.push(
                format!("{path}.resolvers"),
                "resolvers is empty: list at least one, e.g. [\"system\"] or [\"udp://192.0.2.53:53\"]",
            );
        }
        for (i, text) in written.iter().enumerate() {
            match text.parse::<ResolverSpec>() {
                Ok(r) if resolvers.contains(&r) => problems.push(
                    format!("{path}.resolvers[{i}]"),
                    format!("resolver {text:?} is listed twice"),
                ),
                Ok(r) => resolvers.push(r),
                Err(e) => problems.push(format!("{path}.resolvers[{i}]"), e),
            }
        }
        let rcode = match &self.rcode {
            None => ResponseCode::NoError,
            Some(t) => match resolver::parse_rcode(t) {
                Some(c) => c,
                None => {
                    problems.push(
                        format!("{path}.rcode"),
                        format!("unknown rcode {t:?}: use NOERROR, NXDOMAIN, SERVFAIL or REFUSED"),
                    );
                    ResponseCode::NoError
                }
            },
        };
        let mut answers_contain = Vec::new();
        let mut answers_equal = None;
        if let Some(rtype) = rtype {
            for (i, a) in self.answers_contain.iter().enumerate() {
                match canonical_input(rtype, a) {
                    Ok(c) => answers_contain.push(c),
                    Err(e) => problems.push(format!("{path}.answers_contain[{i}]"), e),
                }
            }
            if let Some(eq) = &self.answers_equal {
                let mut set = Vec::new();
                for (i, a) in eq.iter().enumerate() {
                    match canonical_input(rtype, a) {
                        Ok(c) => set.push(c),
                        Err(e) => problems.push(format!("{path}.answers_equal[{i}]"), e),
                    }
                }
                set.sort();
                set.dedup();
                answers_equal = Some(set);
            }
        }
        let cname_target = match &self.cname_target {
            None => None,
            Some(t) => match fqdn(t) {
                Ok(n) => Some(name_text(&n)),
                Err(_) => {
                    problems.push(
                        format!("{path}.cname_target"),
                        format!("invalid DNS name {t:?}, e.g. \"green.example.net\""),
                    );
                    None
                }
            },
        };
        if let (Some(lo), Some(hi)) = (self.ttl_min, self.ttl_max)
            && lo > hi
        {
            problems.push(
                format!("{path}.ttl_min"),
                format!("ttl_min \"{lo}\" is above ttl_max \"{hi}\""),
            );
        }
        if problems.len() != before {
            return None;
        }
        let default_min = usize::from(
            rcode == ResponseCode::NoError && answers_equal.as_ref().is_none_or(|s| !s.is_empty()),
        );
        Some(DnsSpec {
            name: name?,
            rtype: rtype?,
            resolvers,
            rcode,
            answers_contain,
            answers_equal,
            cname_target,
            ttl_min: self.ttl_min.map(|d| ttl_secs(d.get())),
            ttl_max: self.ttl_max.map(|d| ttl_secs(d.get())),
            min_answers: self.min_answers.map(|n| n as usize).unwrap_or(default_min),
            resolvers_agree: self.resolvers_agree.unwrap_or(true),
            propagation_grace: self
                .propagation_grace
                .map(Dur::get)
                .unwrap_or(DEFAULT_PROPAGATION_GRACE),
        })
    }
}

/// A name as text: lowercase, no trailing dot (`"."` for the root).
pub fn name_text(name: &Name) -> String {
    let s = name.to_lowercase().to_ascii();
    let t = s.trim_end_matches('.');
    if t.is_empty() {
        ".".into()
    } else {
        t.to_owned()
    }
}

/// Record data as compared and shown: IPs in canonical form, names as
/// [`name_text`], TXT strings joined, other types in zone-file form.
pub fn canonical_data(data: &RData) -> String {
    match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::SRV(s) => format!(
            "{} {} {} {}",
            s.priority,
            s.weight,
            s.port,
            name_text(&s.target)
        ),
        RData::SOA(s) => format!(
            "{} {} {} {} {} {} {}",
            name_text(&s.mname),
            name_text(&s.rname),
            s.serial,
            s.refresh,
            s.retry,
            s.expire,
            s.minimum
        ),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect(),
        RData::CAA(c) => c.to_string(),
        other => other.to_string(),
    }
}

/// An `answers_*` entry from config in [`canonical_data`] form.
fn canonical_input(rtype: RecordType, text: &str) -> Result<String, String> {
    let example = match rtype {
        RecordType::A => "\"192.0.2.10\"",
        RecordType::AAAA => "\"2001:db8::10\"",
        RecordType::MX => "\"10 mail.example.net\"",
        RecordType::SRV => "\"10 5 443 svc.example.net\"",
        RecordType::CAA => "\"0 issue \\\"letsencrypt.org\\\"\"",
        RecordType::SOA => {
            "\"ns1.example.net hostmaster.example.net 2024010101 7200 3600 1209600 300\""
        }
        _ => "\"target.example.net\"",
    };
    let bad =
        || format!("invalid {rtype} answer {text:?}: write it in zone-file form, e.g. {example}");
    match rtype {
        RecordType::TXT => Ok(text.to_owned()),
        RecordType::A => text
            .trim()
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad()),
        RecordType::AAAA => text
            .trim()
            .parse::<Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad()),
        _ => RData::try_from_str(rtype, text.trim())
            .map(|d| canonical_data(&d))
            .map_err(|_| bad()),
    }
}

/// One record as shown in details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Answer {
    /// Owner name.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Canonical data.
    pub data: String,
    /// TTL in seconds, as served.
    pub ttl: u32,
}

impl Answer {
    fn from_record(r: &Record) -> Self {
        Answer {
            name: name_text(&r.name),
            rtype: r.record_type().to_string(),
            data: canonical_data(&r.data),
            ttl: r.ttl,
        }
    }
}

/// What a resolver serves, without TTLs: the identity compared across
/// resolvers and runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnswerSet {
    /// Response code mnemonic.
    pub rcode: String,
    /// Where the CNAME chain ends, when there is one.
    pub cname_target: Option<String>,
    /// `"owner TYPE data"` per record, sorted.
    pub answers: Vec<String>,
    /// Stable hash of rcode and answers (FNV-1a 64, hex).
    pub fingerprint: String,
}

impl AnswerSet {
    /// Builds the set for `rcode` and the answer records (chain order).
    pub fn new(rcode: &str, answers: &[Answer]) -> Self {
        let mut lines: Vec<String> = answers
            .iter()
            .map(|a| format!("{} {} {}", a.name, a.rtype, a.data))
            .collect();
        lines.sort();
        lines.dedup();
        let cname_target = answers
            .iter()
            .rev()
            .find(|a| a.rtype == "CNAME")
            .map(|a| a.data.clone());
        let mut text = rcode.to_owned();
        for l in &lines {
            text.push('\n');
            text.push_str(l);
        }
        AnswerSet {
            rcode: rcode.to_owned(),
            cname_target,
            answers: lines,
            fingerprint: fingerprint(&text),
        }
    }
}

/// FNV-1a 64 as 16 hex digits: stable across processes and versions.
fn fingerprint(text: &str) -> String {
    crate::fnv::hex(text)
}

/// One run's sighting of one resolver's answer, as history needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The answer set.
    pub set: AnswerSet,
    /// Largest TTL in the answer (or the negative TTL), seconds.
    pub max_ttl: u32,
}

/// A resolver's current view in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResolverView {
    set: AnswerSet,
    /// Largest TTL seen while this set was served: caching resolvers count
    /// TTLs down, so the largest is closest to the zone's value.
    ttl: u32,
    since: OffsetDateTime,
}

/// A change being propagated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    leader: String,
    old: AnswerSet,
    new: AnswerSet,
    old_ttl: u32,
    changed_at: OffsetDateTime,
}

/// Per-check state across runs: every resolver's last answer set and the
/// change being propagated, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsHistory {
    views: BTreeMap<String, ResolverView>,
    pending: Option<Pending>,
}

/// A resolver's answer set changed between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The resolver.
    pub resolver: String,
    /// What it served before.
    pub old: AnswerSet,
    /// What it serves now.
    pub new: AnswerSet,
    /// Largest TTL seen for the old set, seconds.
    pub old_ttl: u32,
    /// When the change was seen.
    pub at: OffsetDateTime,
}

/// A resolver that has not followed a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lagging {
    /// The resolver.
    pub resolver: String,
    /// What it still serves.
    pub serving: AnswerSet,
    /// Time since the change was first seen.
    pub lagging_for: Duration,
}

/// A change that did not reach every resolver within its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// The resolver that changed first.
    pub leader: String,
    /// The answer set before the change.
    pub old: AnswerSet,
    /// The answer set the others should reach.
    pub new: AnswerSet,
    /// When the change was first seen.
    pub changed_at: OffsetDateTime,
    /// Old TTL plus grace.
    pub window: Duration,
    /// Resolvers that still serve something else.
    pub lagging: Vec<Lagging>,
}

fn elapsed(now: OffsetDateTime, then: OffsetDateTime) -> Duration {
    let d = now - then;
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

/// Records `observed` for `resolver` at `now`; returns the change when its
/// answer set differs from last time (the first observation is a baseline).
/// Starts a propagation window on a new answer set, closes it when every
/// resolver serves the new set.
pub fn observe(
    history: &mut DnsHistory,
    resolver: &str,
    observed: &Sighting,
    now: OffsetDateTime,
) -> Option<Change> {
    let change = match history.views.get_mut(resolver) {
        None => {
            history.views.insert(
                resolver.to_owned(),
                ResolverView {
                    set: observed.set.clone(),
                    ttl: observed.max_ttl,
                    since: now,
                },
            );
            None
        }
        Some(view) if view.set.fingerprint == observed.set.fingerprint => {
            view.ttl = view.ttl.max(observed.max_ttl);
            None
        }
        Some(view) => {
            let old = std::mem::replace(
                view,
                ResolverView {
                    set: observed.set.clone(),
                    ttl: observed.max_ttl,
                    since: now,
                },
            );
            // Other resolvers still serving the old set may have seen a larger TTL.
            let old_ttl = history
                .views
                .values()
                .filter(|v| v.set.fingerprint == old.set.fingerprint)
                .map(|v| v.ttl)
                .fold(old.ttl, u32::max);
            let follows = history
                .pending
                .as_ref()
                .is_some_and(|p| p.new.fingerprint == observed.set.fingerprint);
            if !follows {
                history.pending = Some(Pending {
                    leader: resolver.to_owned(),
                    old: old.set.clone(),
                    new: observed.set.clone(),
                    old_ttl,
                    changed_at: now,
                });
            }
            Some(Change {
                resolver: resolver.to_owned(),
                old: old.set,
                new: observed.set.clone(),
                old_ttl,
                at: now,
            })
        }
    };
    if let Some(p) = &history.pending
        && history
            .views
            .values()
            .all(|v| v.set.fingerprint == p.new.fingerprint)
    {
        history.pending = None;
    }
    change
}

/// Whether a pending change has reached every resolver in time: `Err` once
/// the old TTL plus `grace` has passed since the change was seen and some
/// resolver still serves another answer set.
pub fn propagation(
    history: &DnsHistory,
    now: OffsetDateTime,
    grace: Duration,
) -> Result<(), Box<Stalled>> {
    let Some(p) = &history.pending else {
        return Ok(());
    };
    let window = Duration::from_secs(u64::from(p.old_ttl)) + grace;
    let lagged = elapsed(now, p.changed_at);
    let lagging: Vec<Lagging> = history
        .views
        .iter()
        .filter(|(_, v)| v.set.fingerprint != p.new.fingerprint)
        .map(|(r, v)| Lagging {
            resolver: r.clone(),
            serving: v.set.clone(),
            lagging_for: lagged,
        })
        .collect();
    if lagged <= window || lagging.is_empty() {
        return Ok(());
    }
    Err(Box::new(Stalled {
        leader: p.leader.clone(),
        old: p.old.clone(),
        new: p.new.clone(),
        changed_at: p.changed_at,
        window,
        lagging,
    }))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn propagation_record(
    history: &DnsHistory,
    now: OffsetDateTime,
    grace: Duration,
) -> Option<PropagationRecord> {
    let p = history.pending.as_ref()?;
    let window = Duration::from_secs(u64::from(p.old_ttl)) + grace;
    let lagged = elapsed(now, p.changed_at);
    let lagging: Vec<LaggingRecord> = history
        .views
        .iter()
        .filter(|(_, v)| v.set.fingerprint != p.new.fingerprint)
        .map(|(r, v)| LaggingRecord {
            resolver: r.clone(),
            serving: v.set.clone(),
            serving_since: rfc3339(v.since),
            lagging_for_ms: lagged.as_millis() as u64,
        })
        .collect();
    let window_td = time::Duration::try_from(window).unwrap_or(time::Duration::MAX);
    Some(PropagationRecord {
        leader: p.leader.clone(),
        changed_at: rfc3339(p.changed_at),
        old_ttl_s: p.old_ttl,
        window_ms: window.as_millis() as u64,
        deadline: rfc3339(p.changed_at.saturating_add(window_td)),
        stalled: lagged > window && !lagging.is_empty(),
        old: p.old.clone(),
        new: p.new.clone(),
        lagging,
    })
}

/// Check id → (identity of name, type and resolvers; last run; history).
type Registry = HashMap<String, (String, OffsetDateTime, DnsHistory)>;

/// The process-wide histories, keyed by check id.
fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Runs `f` on the check's history; a history kept for another name, type or
/// resolver list starts afresh.
fn with_history<R>(
    check_id: &str,
    spec: &DnsSpec,
    now: OffsetDateTime,
    f: impl FnOnce(&mut DnsHistory) -> R,
) -> R {
    let identity = format!(
        "{} {} {}",
        name_text(&spec.name),
        spec.rtype,
        spec.resolvers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut all = registry().lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|_, (_, last, _)| elapsed(now, *last) < HISTORY_RETENTION);
    let entry = all
        .entry(check_id.to_owned())
        .or_insert_with(|| (identity.clone(), now, DnsHistory::default()));
    if entry.0 != identity {
        *entry = (identity, now, DnsHistory::default());
    }
    entry.1 = now;
    f(&mut entry.2)
}

/// One resolver's outcome in a run.
struct ResolverRun {
    label: String,
    result: Result<Resolution, QueryError>,
    observed: Option<Sighting>,
    failure: Option<Failure>,
    record: ResolverRecord,
}

fn rcode_failure(spec: &DnsSpec, resolver: &str, got: ResponseCode) -> Failure {
    let name = format!("{} {}", name_text(&spec.name), spec.rtype);
    let (resolver, expected) = (Some(resolver.to_owned()), Some(rcode_name(spec.rcode)));
    match got {
        ResponseCode::NXDomain => Failure::DnsNxdomain {
            name,
            resolver,
            expected,
        },
        ResponseCode::ServFail => Failure::DnsServfail {
            name,
            resolver,
            expected,
        },
        ResponseCode::Refused => Failure::DnsRefused {
            name,
            resolver,
            expected,
        },
        other => Failure::DnsRcodeMismatch {
            name,
            resolver,
            got: rcode_name(other),
            expected,
        },
    }
}

/// The assertions on one resolver's answer, in documented order.
fn assess(
    spec: &DnsSpec,
    resolver: &str,
    res: &Resolution,
    finals: &[Answer],
    all: &[Answer],
) -> Option<Failure> {
    if res.rcode != spec.rcode {
        return Some(rcode_failure(spec, resolver, res.rcode));
    }
    let asked = format!("{} {}", name_text(&spec.name), spec.rtype);
    if finals.len() < spec.min_answers {
        return Some(Failure::DnsTooFewAnswers {
            resolver: resolver.to_owned(),
            query: asked,
            got: finals.len(),
            min: spec.min_answers,
        });
    }
    if let Some(want) = &spec.cname_target {
        let end = all
            .iter()
            .rev()
            .find(|a| a.rtype == "CNAME")
            .map(|a| a.data.clone());
        if end.as_deref() != Some(want.as_str()) {
            return Some(Failure::DnsCnameMismatch {
                resolver: resolver.to_owned(),
                name: name_text(&spec.name),
                got: end,
                expected: want.clone(),
            });
        }
    }
    let mut got: Vec<String> = finals.iter().map(|a| a.data.clone()).collect();
    got.sort();
    got.dedup();
    if let Some(want) = &spec.answers_equal
        && &got != want
    {
        return Some(Failure::DnsAnswerMismatch {
            resolver: resolver.to_owned(),
            query: asked,
            got,
            expected: want.clone(),
            exact: true,
        });
    }
    if spec.answers_contain.iter().any(|w| !got.contains(w)) {
        return Some(Failure::DnsAnswerMismatch {
            resolver: resolver.to_owned(),
            query: asked,
            got,
            expected: spec.answers_contain.clone(),
            exact: false,
        });
    }
    for a in all {
        let low = spec.ttl_min.is_some_and(|m| a.ttl < m);
        let high = spec.ttl_max.is_some_and(|m| a.ttl > m);
        if low || high {
            return Some(Failure::DnsTtlOutOfBounds {
                resolver: resolver.to_owned(),
                record: format!("{} {} {}", a.name, a.rtype, a.data),
                ttl: a.ttl,
                ttl_min: spec.ttl_min,
                ttl_max: spec.ttl_max,
            });
        }
    }
    None
}

fn evaluate(spec: &DnsSpec, label: String, result: Result<Resolution, QueryError>) -> ResolverRun {
    let (observed, failure, answer) = match &result {
        Err(e) => (None, Some(e.failure(&name_text(&spec.name))), None),
        Ok(res) => {
            let all: Vec<Answer> = res.records.iter().map(Answer::from_record).collect();
            let finals: Vec<Answer> = res
                .records
                .iter()
                .filter(|r| r.record_type() == spec.rtype)
                .map(Answer::from_record)
                .collect();
            let rcode = rcode_name(res.rcode);
            let set = AnswerSet::new(&rcode, &all);
            let cname_chain: Vec<CnameHop> = res
                .records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::CNAME(t) if spec.rtype != RecordType::CNAME => Some(CnameHop {
                        name: name_text(&r.name),
                        target: name_text(&t.0),
                        ttl: r.ttl,
                    }),
                    _ => None,
                })
                .collect();
            let final_name = cname_chain
                .last()
                .map(|c| c.target.clone())
                .unwrap_or_else(|| name_text(&spec.name));
            let min_ttl = all.iter().map(|a| a.ttl).min();
            let max_ttl = all.iter().map(|a| a.ttl).max();
            let failure = assess(spec, &label, res, &finals, &all);
            let answer = ResolverAnswer {
                rcode,
                transport: res.transport.map_or("system", |t| t.as_str()).to_owned(),
                truncated_retried: res.truncated_retried,
                queries: res.queries,
                time_us: res.elapsed.as_micros() as u64,
                cname_chain,
                final_name,
                addresses: matches!(spec.rtype, RecordType::A | RecordType::AAAA).then(|| {
                    finals
                        .iter()
                        .map(|a| AddressTtl {
                            ip: a.data.clone(),
                            ttl: a.ttl,
                        })
                        .collect()
                }),
                answers: all,
                min_ttl,
                max_ttl,
                negative_ttl: res.negative_ttl,
                answer_set: set.answers.clone(),
                fingerprint: set.fingerprint.clone(),
            };
            let observed = Sighting {
                max_ttl: max_ttl.or(res.negative_ttl).unwrap_or(0),
                set,
            };
            (Some(observed), failure, Some(answer))
        }
    };
    let record = ResolverRecord {
        resolver: label.clone(),
        ok: failure.is_none(),
        failure_code: failure.as_ref().map(Failure::code),
        failure_message: failure.as_ref().map(Failure::to_string),
        answer,
    };
    ResolverRun {
        label,
        result,
        observed,
        failure,
        record,
    }
}

/// Runs the check once: every resolver concurrently, one deadline for all.
pub async fn run(spec: &DnsSpec, check_id: &str, timeout: Duration) -> KindResult {
    run_at(spec, check_id, timeout, OffsetDateTime::now_utc()).await
}

/// [`run`] with the wall-clock time used for change tracking given.
pub async fn run_at(
    spec: &DnsSpec,
    check_id: &str,
    timeout: Duration,
    now: OffsetDateTime,
) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let asks = spec
        .resolvers
        .iter()
        .map(|r| resolver::resolve(r, &spec.name, spec.rtype, deadline));
    let results = futures_util::future::join_all(asks).await;
    let runs: Vec<ResolverRun> = spec
        .resolvers
        .iter()
        .zip(results)
        .map(|(r, res)| evaluate(spec, r.to_string(), res))
        .collect();

    let mut observed = Observed {
        name: name_text(&spec.name),
        rtype: spec.rtype.to_string(),
        ..Observed::default()
    };

    let (changes, stalled, pending) = with_history(check_id, spec, now, |h| {
        let changes: Vec<Change> = runs
            .iter()
            .filter_map(|r| {
                r.observed
                    .as_ref()
                    .and_then(|o| observe(h, &r.label, o, now))
            })
            .collect();
        let stalled = propagation(h, now, spec.propagation_grace).err();
        (
            changes,
            stalled,
            propagation_record(h, now, spec.propagation_grace),
        )
    });
    observed.changes = changes
        .into_iter()
        .map(|c| ChangeRecord {
            resolver: c.resolver,
            at: rfc3339(c.at),
            old_ttl_s: c.old_ttl,
            old: c.old,
            new: c.new,
        })
        .collect();
    observed.propagation = pending;

    // Group resolvers that answered by answer set.
    let mut groups: Vec<(AnswerSet, Vec<String>)> = Vec::new();
    for r in &runs {
        if let Some(o) = &r.observed {
            match groups
                .iter_mut()
                .find(|(s, _)| s.fingerprint == o.set.fingerprint)
            {
                Some((_, names)) => names.push(r.label.clone()),
                None => groups.push((o.set.clone(), vec![r.label.clone()])),
            }
        }
    }
    let disagree = spec.resolvers_agree && groups.len() > 1;
    if groups.len() > 1 {
        observed.disagreement = groups
            .iter()
            .map(|(s, names)| AnswerGroup {
                resolvers: names.clone(),
                answer_set: s.clone(),
            })
            .collect();
    }

    let slowest = runs
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|res| res.elapsed))
        .max();
    let failing: Vec<&ResolverRun> = runs.iter().filter(|r| r.failure.is_some()).collect();
    let result = if let Some(first) = failing.first().and_then(|r| r.failure.clone()) {
        if failing.len() == 1 {
            Err(first)
        } else {
            Err(Failure::Resolvers {
                failing: failing
                    .iter()
                    .filter_map(|r| {
                        r.failure.clone().map(|failure| ResolverFailure {
                            resolver: r.label.clone(),
                            failure,
                        })
                    })
                    .collect(),
            })
        }
    } else if let Some(s) = stalled.filter(|_| spec.resolvers_agree) {
        Err(Failure::DnsPropagationStalled {
            leader: s.leader.clone(),
            old: describe(&s.old),
            new: describe(&s.new),
            lagging_for: s.lagging.first().map_or(Duration::ZERO, |l| l.lagging_for),
            window: s.window,
            lagging: s
                .lagging
                .iter()
                .map(|l| AnswerView {
                    resolvers: vec![l.resolver.clone()],
                    serving: describe(&l.serving),
                })
                .collect::<Vec<_>>()
                .into(),
        })
    } else if disagree {
        Err(Failure::DnsResolversDisagree {
            query: format!("{} {}", name_text(&spec.name), spec.rtype),
            views: groups
                .iter()
                .map(|(s, names)| AnswerView {
                    resolvers: names.clone(),
                    serving: describe(s),
                })
                .collect(),
        })
    } else {
        Ok(())
    };

    observed.resolvers = runs.into_iter().map(|r| r.record).collect();
    KindResult {
        phases: Phases {
            dns: slowest,
            ..Phases::default()
        },
        result,
        observed: super::Observed::Dns(Box::new(observed)),
    }
}

/// A short human form of an answer set for messages.
fn describe(s: &AnswerSet) -> String {
    if s.rcode != "NOERROR" {
        return s.rcode.clone();
    }
    let mut parts = Vec::new();
    if let Some(t) = &s.cname_target {
        parts.push(format!("CNAME → {t}"));
    }
    let data: Vec<&str> = s
        .answers
        .iter()
        .filter(|l| !l.contains(" CNAME "))
        .filter_map(|l| l.splitn(3, ' ').nth(2))
        .collect();
    if !data.is_empty() {
        parts.push(data.join(", "));
    }
    if parts.is_empty() {
        "no records".into()
    } else {
        format!("[{}]", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(target: &str) -> Sighting {
        let answers = vec![
            Answer {
                name: "www.example.test".into(),
                rtype: "CNAME".into(),
                data: target.into(),
                ttl: 300,
            },
            Answer {
                name: target.into(),
                rtype: "A".into(),
                data: "192.0.2.1".into(),
                ttl: 60,
            },
        ];
        Sighting {
            set: AnswerSet::new("NOERROR", &answers),
            max_ttl: 300,
        }
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn secs(s: i64) -> time::Duration {
        time::Duration::seconds(s)
    }

    #[test]
    fn fingerprints_ignore_order_and_ttl() {
        let a = set("blue.example.test");
        let mut answers = vec![
            Answer {
                name: "blue.example.test".into(),
                rtype: "A".into(),
                data: "192.0.2.1".into(),
                ttl: 5,
            },
            Answer {
                name: "www.example.test".into(),
                rtype: "CNAME".into(),
                data: "blue.example.test".into(),
                ttl: 7,
            },
        ];
        assert_eq!(
            AnswerSet::new("NOERROR", &answers).fingerprint,
            a.set.fingerprint
        );
        answers.pop();
        assert_ne!(
            AnswerSet::new("NOERROR", &answers).fingerprint,
            a.set.fingerprint
        );
        assert_ne!(
            AnswerSet::new("NXDOMAIN", &[]).fingerprint,
            AnswerSet::new("NOERROR", &[]).fingerprint
        );
        // Stable forever: a changed value would make every history look changed.
        assert_eq!(fingerprint(""), "cbf29ce484222325");
    }

    #[test]
    fn first_sight_is_a_baseline_and_a_flip_is_a_change() {
        let mut h = DnsHistory::default();
        assert_eq!(observe(&mut h, "r1", &set("blue.example.test"), t0()), None);
        assert_eq!(
            observe(&mut h, "r1", &set("blue.example.test"), t0() + secs(60)),
            None
        );
        let c = observe(&mut h, "r1", &set("green.example.test"), t0() + secs(120)).unwrap();
        assert_eq!(c.old.cname_target.as_deref(), Some("blue.example.test"));
        assert_eq!(c.new.cname_target.as_deref(), Some("green.example.test"));
        assert_eq!(c.old_ttl, 300);
        assert_eq!(c.at, t0() + secs(120));
        // A single resolver has nobody to wait for.
        assert!(h.pending.is_none());
        assert!(propagation(&h, t0() + secs(10_000), Duration::ZERO).is_ok());
    }

    #[test]
    fn a_lagging_resolver_stalls_after_old_ttl_plus_grace() {
        let grace = Duration::from_secs(30);
        let mut h = DnsHistory::default();
        observe(&mut h, "a", &set("blue.example.test"), t0());
        observe(&mut h, "b", &set("blue.example.test"), t0());
        let at = t0() + secs(60);
        assert!(observe(&mut h, "a", &set("green.example.test"), at).is_some());
        assert!(observe(&mut h, "b", &set("blue.example.test"), at).is_none());
        // Within 300 s TTL + 30 s grace: still propagating.
        assert!(propagation(&h, at, grace).is_ok());
        assert!(propagation(&h, at + secs(330), grace).is_ok());
        let s = propagation(&h, at + secs(331), grace).unwrap_err();
        assert_eq!(s.leader, "a");
        assert_eq!(s.window, Duration::from_secs(330));
        assert_eq!(s.lagging.len(), 1);
        assert_eq!(s.lagging[0].resolver, "b");
        assert_eq!(
            s.lagging[0].serving.cname_target.as_deref(),
            Some("blue.example.test")
        );
        assert_eq!(s.lagging[0].lagging_for, Duration::from_secs(331));
        assert_eq!(s.new.cname_target.as_deref(), Some("green.example.test"));
        // b catches up: the window closes, even late.
        let late = at + secs(400);
        let c = observe(&mut h, "b", &set("green.example.test"), late).unwrap();
        assert_eq!(c.resolver, "b");
        assert!(h.pending.is_none());
        assert!(propagation(&h, late, grace).is_ok());
    }

    #[test]
    fn a_newer_change_restarts_the_window() {
        let grace = Duration::from_secs(0);
        let mut h = DnsHistory::default();
        observe(&mut h, "a", &set("blue.example.test"), t0());
        observe(&mut h, "b", &set("blue.example.test"), t0());
        observe(&mut h, "a", &set("green.example.test"), t0() + secs(10));
        observe(&mut h, "a", &set("red.example.test"), t0() + secs(200));
        let p = h.pending.clone().unwrap();
        assert_eq!(p.new.cname_target.as_deref(), Some("red.example.test"));
        assert_eq!(p.changed_at, t0() + secs(200));
        assert!(propagation(&h, t0() + secs(400), grace).is_ok());
        assert!(propagation(&h, t0() + secs(501), grace).is_err());
    }

    #[test]
    fn old_ttl_is_the_largest_seen_for_the_old_set() {
        let mut h = DnsHistory::default();
        let mut low = set("blue.example.test");
        low.max_ttl = 20; // a cache counting down
        observe(&mut h, "a", &low, t0());
        observe(&mut h, "b", &set("blue.example.test"), t0());
        let c = observe(&mut h, "a", &set("green.example.test"), t0() + secs(1)).unwrap();
        assert_eq!(c.old_ttl, 300);
    }

    fn raw(toml_text: &str) -> RawDns {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn config_defaults_and_canonical_answers() {
        let mut p = Problems::default();
        let s = raw(r#"name = "WWW.Example.net.""#)
            .validate("d", &mut p)
            .unwrap();
        assert_eq!(name_text(&s.name), "www.example.net");
        assert_eq!(s.rtype, RecordType::A);
        assert_eq!(s.resolvers, vec![ResolverSpec::System]);
        assert_eq!(s.rcode, ResponseCode::NoError);
        assert_eq!(s.min_answers, 1);
        assert!(s.resolvers_agree);
        assert_eq!(s.propagation_grace, Duration::from_secs(30));
        let s = raw(r#"
            name = "example.net"
            type = "mx"
            answers_contain = ["10 MAIL.example.net."]
            answers_equal = ["10 mail.example.net", "20 backup.example.net"]
            "#)
        .validate("d", &mut p)
        .unwrap();
        assert_eq!(s.answers_contain, vec!["10 mail.example.net"]);
        assert_eq!(
            s.answers_equal.unwrap(),
            vec!["10 mail.example.net", "20 backup.example.net"]
        );
        let s = raw("name = \"gone.example.net\"\nrcode = \"NXDOMAIN\"")
            .validate("d", &mut p)
            .unwrap();
        assert_eq!(s.min_answers, 0);
        assert!(p.is_empty());
    }

    #[test]
    fn bad_config_names_every_path() {
        let mut p = Problems::default();
        let r = raw(r#"
            name = "bad..name"
            type = "PTR"
            resolvers = ["system", "dns.google", "system"]
            rcode = "NOPE"
            cname_target = "a..b"
            ttl_min = "10m"
            ttl_max = "1m"
            "#);
        assert!(r.validate("checks[0].dns", &mut p).is_none());
        let paths: Vec<String> = p
            .finish("test")
            .unwrap_err()
            .problems
            .into_iter()
            .map(|x| x.path)
            .collect();
        for want in [
            "checks[0].dns.name",
            "checks[0].dns.type",
            "checks[0].dns.resolvers[1]",
            "checks[0].dns.resolvers[2]",
            "checks[0].dns.rcode",
            "checks[0].dns.cname_target",
            "checks[0].dns.ttl_min",
        ] {
            assert!(
                paths.iter().any(|x| x == want),
                "{want} missing from {paths:?}"
            );
        }
        let mut p = Problems::default();
        let r = raw("name = \"x.test\"\nanswers_contain = [\"not-an-ip\"]");
        assert!(r.validate("d", &mut p).is_none());
        assert!(
            p.finish("test")
                .unwrap_err()
                .has_path("d.answers_contain[0]")
        );
        assert!(toml::from_str::<RawDns>("name = \"x\"\nanswer_contains = []").is_err());
    }
}
