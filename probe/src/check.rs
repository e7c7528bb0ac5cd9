//! The check-definition schema (shared by the controller's config and a
//! probe's local config), the validated [`CheckSpec`], and the one `match`
//! that dispatches a spec to its kind's module: [`http`], [`dns`], [`tls`],
//! [`session`], [`flow`] (HTTP steps with variables), [`tcp`], [`grpc`],
//! [`icmp`]; [`target`] holds what the connection-level kinds share.
//! [`heartbeat`] checks are pushed to the controller by the job they watch:
//! their schema lives here with the others, but no probe runs them.
//!
//! A run's result is an [`Outcome`]: its [`Kind`], phase timings, pass or
//! a [`Failure`] (a stable [`FailureCode`] with typed context, see
//! [`failure`]), and what it [`Observed`] (the `details`, one typed value per
//! kind, see [`observed`]).
//!
//! A check's TOML table is the same everywhere: try it with
//! `outpost-probe once`, then paste it into the controller's `[[checks]]`.
//! `regions`, `alert` and `depends_on` are read by the controller only.

pub mod assertion;
pub mod dns;
pub mod failure;
pub mod flow;
pub mod grpc;
pub mod heartbeat;
pub mod http;
pub mod icmp;
pub mod observed;
pub mod redirect;
pub mod session;
pub mod target;
pub mod tcp;
pub mod tls;
pub mod trust;

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use self::{
    failure::{Failure, FailureCode},
    observed::{Kind, Observed},
};
use crate::config::{Dur, Problems};

/// Default interval between runs.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The smallest interval a heartbeat check is given (its `period + grace`).
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default overall deadline for one run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One check as written in config (`[[checks]]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Stable identifier: lowercase letters, digits, `-` and `_`. Results,
    /// alerts and dedup keys are keyed by it. Example: `"api-health"`.
    pub id: String,
    /// Time between runs, e.g. `"30s"`. Default `"60s"`, minimum `"1s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
    /// Deadline for one whole run, all phases and the body included.
    /// Default `"10s"`; must be shorter than `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Free-form labels shown in the API and passed to alert payloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Controller only: the regions whose probes run this check. Default: every
    /// region that has a probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    /// Controller only: when this check pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<RawAlertPolicy>,
    /// Controller only: ids of checks this one needs (`["db-primary"]`).
    /// While one of them fails, this check's alert is recorded as
    /// suppressed by it instead of paging; if this check still fails when
    /// the dependency recovers, it pages then. No cycles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// An HTTP(S) request and its assertions. Exactly one kind table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<http::RawHttp>>,
    /// A DNS query to one or more resolvers and its assertions (answers,
    /// CNAME chain, TTLs, agreement, propagation). Exactly one kind table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<dns::RawDns>>,
    /// TLS handshakes from several client profiles, each chain evaluated
    /// against several trust stores: the matrix, the date each combination
    /// starts failing, chain hygiene, and the certificates seen. Exactly one
    /// kind table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<tls::RawTls>>,
    /// An authenticated session held across runs: login (OAuth2, scripted,
    /// cookie jar), protected requests, renewal by policy. Exactly one kind
    /// table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Box<session::RawSession>>,
    /// A TCP connection (optionally TLS) and an optional send/expect script:
    /// banners, `PING`/`+PONG`. Exactly one kind table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Box<tcp::RawTcp>>,
    /// A `grpc.health.v1` Check (or Watch) of a service, plaintext HTTP/2 or
    /// TLS. Exactly one kind table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Box<grpc::RawGrpc>>,
    /// ICMP echo requests: loss and round-trip times. Exactly one kind
    /// table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<Box<icmp::RawIcmp>>,
    /// Ordered HTTP steps with variables, secrets and a cookie jar between
    /// them: one scripted API flow, one result. Exactly one kind table per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Box<flow::RawFlow>>,
    /// Controller only: a push check. The job pings the controller's
    /// `/ping/<ping_id>`; no ping within `period + grace` pages
    /// (`heartbeat_missed`). Exactly one kind table per check; `interval`,
    /// `timeout` and `regions` do not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Box<heartbeat::RawHeartbeat>>,
}

/// When a check pages (`[checks.alert]`); read by the controller.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlertPolicy {
    /// Regions that must fail before the check alerts. Default 2, or the number
    /// of assigned regions when fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_regions: Option<u32>,
    /// Consecutive failed runs in a region before it counts as failing. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u32>,
    /// Consecutive passing runs in a region before it counts as recovered. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoveries: Option<u32>,
    /// Severity sent to pagers: `critical`, `error`, `warning` or `info`. Default `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Names of `[[routes]]` to notify. Default: every route whose `checks` matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
    /// Set to false to record state without notifying. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Pass/fail changes of a region within `flap_window` that make the
    /// check FLAPPING: one alert marked flapping instead of a trigger/resolve
    /// storm, resolved only once stable for the window. Default 5; 0 turns
    /// flap detection off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap_changes: Option<u32>,
    /// The window flap detection counts changes in. Default `"30m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap_window: Option<Dur>,
    /// While a region fails but is not yet confirmed (fewer than
    /// `confirmations` failures in a row), the controller asks its probes
    /// to run the check again this long after the newest failure
    /// (`RunNow`), so confirming takes seconds, not `confirmations ×
    /// interval`. A duration (`"10s"`) or `"off"`. Default: the interval,
    /// at most 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
    /// On a first failure in one region, ask every other region's probes to
    /// run the check at once, so the `min_regions` quorum is reached in one
    /// round trip. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_from_other_regions: Option<bool>,
}

/// A validated check, ready to schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// Stable identifier.
    pub id: String,
    /// Time between runs.
    pub interval: Duration,
    /// Deadline for one run.
    pub timeout: Duration,
    /// What to run.
    pub kind: CheckKind,
}

/// The kinds of check, one module each.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
// Specs are built once per config load and live in a Vec; boxing would only
// add indirection.
#[allow(clippy::large_enum_variant)]
pub enum CheckKind {
    /// An HTTP(S) request.
    Http(http::HttpSpec),
    /// A DNS query to one or more resolvers.
    Dns(dns::DnsSpec),
    /// An authenticated session held across runs.
    Session(session::SessionSpec),
    /// TLS handshakes evaluated against trust stores and client profiles.
    Tls(tls::TlsSpec),
    /// A TCP connection and its script.
    Tcp(tcp::TcpSpec),
    /// A gRPC health check.
    Grpc(grpc::GrpcSpec),
    /// ICMP echo.
    Icmp(icmp::IcmpSpec),
    /// A multi-step HTTP flow.
    Flow(flow::FlowSpec),
    /// A push check evaluated by the controller from pings.
    Heartbeat(heartbeat::HeartbeatSpec),
}

impl CheckKind {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            CheckKind::Http(_) => Kind::Http,
            CheckKind::Dns(_) => Kind::Dns,
            CheckKind::Session(_) => Kind::Session,
            CheckKind::Tls(_) => Kind::Tls,
            CheckKind::Tcp(_) => Kind::Tcp,
            CheckKind::Grpc(_) => Kind::Grpc,
            CheckKind::Icmp(_) => Kind::Icmp,
            CheckKind::Flow(_) => Kind::Flow,
            CheckKind::Heartbeat(_) => Kind::Heartbeat,
        }
    }

    /// The kind's name as used in results and metrics.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// Returns true for ids made of lowercase letters, digits, `-`, `_` and `.`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

impl RawCheck {
    /// Validates this check, recording problems under `path` (e.g. `checks[3]`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<CheckSpec> {
        if !valid_id(&self.id) {
            problems.push(
                format!("{path}.id"),
                format!(
                    "invalid check id {:?}: use lowercase letters, digits, '-', '_' or '.', e.g. \"api-health\"",
                    self.id
                ),
            );
        }
        let interval = self.interval.map(Dur::get).unwrap_or(DEFAULT_INTERVAL);
        let timeout = self
            .timeout
            .map(Dur::get)
            .unwrap_or(DEFAULT_TIMEOUT.min(interval));
        if interval < Duration::from_millis(100) {
            problems.push(
                format!("{path}.interval"),
                format!("interval must be ≥ 100ms, got \"{}\"", Dur(interval)),
            );
        }
        if timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "timeout must be greater than 0");
        } else if timeout > interval {
            problems.push(
                format!("{path}.timeout"),
                format!(
                    "timeout \"{}\" must not exceed interval \"{}\"",
                    Dur(timeout),
                    Dur(interval)
                ),
            );
        }
        if let Some(a) = &self.alert {
            if let Some(sev) = &a.severity
                && !["critical", "error", "warning", "info"].contains(&sev.as_str())
            {
                problems.push(
                    format!("{path}.alert.severity"),
                    format!("unknown severity {sev:?}: use critical, error, warning or info"),
                );
            }
            for (key, v) in [
                ("min_regions", a.min_regions),
                ("confirmations", a.confirmations),
                ("recoveries", a.recoveries),
            ] {
                if v == Some(0) {
                    problems.push(
                        format!("{path}.alert.{key}"),
                        format!("{key} must be at least 1"),
                    );
                }
            }
            if a.flap_changes == Some(1) {
                problems.push(
                    format!("{path}.alert.flap_changes"),
                    "flap_changes = 1 would call every failure flapping: use 0 (off) or at least 2"
                        .to_owned(),
                );
            }
            if a.flap_window.is_some_and(|w| w.get().is_zero()) {
                problems.push(
                    format!("{path}.alert.flap_window"),
                    "flap_window must be longer than 0s".to_owned(),
                );
            }
        }
        let tables = [
            ("http", self.http.is_some()),
            ("dns", self.dns.is_some()),
            ("tls", self.tls.is_some()),
            ("session", self.session.is_some()),
            ("tcp", self.tcp.is_some()),
            ("grpc", self.grpc.is_some()),
            ("icmp", self.icmp.is_some()),
            ("flow", self.flow.is_some()),
            ("heartbeat", self.heartbeat.is_some()),
        ];
        let present: Vec<&str> = tables.iter().filter(|t| t.1).map(|t| t.0).collect();
        let sub = |kind: &str| format!("{path}.{kind}");
        let kind = match present.as_slice() {
            [] => {
                problems.push(
                    path.to_owned(),
                    "a check needs one kind table, e.g. `http = { url = \"https://…\" }`",
                );
                None
            }
            ["http"] => self
                .http
                .as_ref()
                .and_then(|h| h.validate(&sub("http"), problems))
                .map(CheckKind::Http),
            ["dns"] => self
                .dns
                .as_ref()
                .and_then(|d| d.validate(&sub("dns"), problems))
                .map(CheckKind::Dns),
            ["tls"] => self
                .tls
                .as_ref()
                .and_then(|t| t.validate(&sub("tls"), problems))
                .map(CheckKind::Tls),
            ["session"] => self
                .session
                .as_ref()
                .and_then(|s| s.validate(&sub("session"), problems))
                .map(CheckKind::Session),
            ["tcp"] => self
                .tcp
                .as_ref()
                .and_then(|t| t.validate(&sub("tcp"), problems))
                .map(CheckKind::Tcp),
            ["grpc"] => self
                .grpc
                .as_ref()
                .and_then(|g| g.validate(&sub("grpc"), timeout, problems))
                .map(CheckKind::Grpc),
            ["icmp"] => self
                .icmp
                .as_ref()
                .and_then(|i| i.validate(&sub("icmp"), timeout, problems))
                .map(CheckKind::Icmp),
            ["flow"] => self
                .flow
                .as_ref()
                .and_then(|f| f.validate(&sub("flow"), timeout, problems))
                .map(CheckKind::Flow),
            ["heartbeat"] => {
                for (key, set) in [
                    ("interval", self.interval.is_some()),
                    ("timeout", self.timeout.is_some()),
                    ("regions", self.regions.is_some()),
                ] {
                    if set {
                        problems.push(
                            format!("{path}.{key}"),
                            format!(
                                "a heartbeat check has no {key}: the job pings the controller; \
                                 use heartbeat.period (or heartbeat.schedule) and heartbeat.grace"
                            ),
                        );
                    }
                }
                self.heartbeat
                    .as_ref()
                    .and_then(|h| h.validate(&sub("heartbeat"), problems))
                    .map(CheckKind::Heartbeat)
            }
            several => {
                problems.push(
                    path.to_owned(),
                    format!(
                        "a check has exactly one kind table, got {}: split it into one check per kind",
                        several.join(", ")
                    ),
                );
                None
            }
        }?;
        // A heartbeat's results come every period at best: the rule's
        // staleness (a multiple of the interval) must not outrun the deadline.
        let (interval, timeout) = match &kind {
            CheckKind::Heartbeat(h) => {
                // A schedule's longest gap needs the parsed expression: the
                // controller sets that interval (`heartbeat::validate`).
                let every = h
                    .deadline_after_ping()
                    .unwrap_or(h.grace)
                    .max(MIN_HEARTBEAT_INTERVAL);
                (every, timeout.min(every))
            }
            _ => (interval, timeout),
        };
        Some(CheckSpec {
            id: self.id.clone(),
            interval,
            timeout,
            kind,
        })
    }
}

/// Validates a list of checks (`checks[i]`), including unique ids.
pub fn validate_all(checks: &[RawCheck], prefix: &str, problems: &mut Problems) -> Vec<CheckSpec> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let path = format!("{prefix}[{i}]");
        if !seen.insert(c.id.as_str()) {
            problems.push(
                format!("{path}.id"),
                format!("duplicate check id {:?}", c.id),
            );
        }
        if let Some(spec) = c.validate(&path, problems) {
            out.push(spec);
        }
    }
    out
}

/// Phase timings of one run. `None` when a phase did not run. On the wire
/// (`phases_us`): whole microseconds, absent phases left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Phases {
    /// Name resolution.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_us")]
    pub dns: Option<Duration>,
    /// TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_us")]
    pub connect: Option<Duration>,
    /// TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_us")]
    pub tls: Option<Duration>,
    /// From sending the request to the response head.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_us")]
    pub first_byte: Option<Duration>,
    /// The whole run.
    #[serde(with = "us")]
    pub total: Duration,
}

mod us {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<std::time::Duration, D::Error> {
        u64::deserialize(d).map(std::time::Duration::from_micros)
    }
}

mod opt_us {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_micros() as u64),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|v| v.map(std::time::Duration::from_micros))
    }
}

/// The result of one run of one check.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The check's id.
    pub check_id: String,
    /// The check's kind.
    pub kind: Kind,
    /// Wall-clock start.
    pub started_at: OffsetDateTime,
    /// Phase timings.
    pub phases: Phases,
    /// Pass, or why not.
    pub result: Result<(), Failure>,
    /// What the run observed (status, Location, addresses…): the result's
    /// `details`.
    pub observed: Observed,
}

impl Outcome {
    /// True when the check passed.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    /// One JSON object for `once --format json` and standalone mode.
    pub fn to_json(&self) -> serde_json::Value {
        let (code, message) = match &self.result {
            Ok(()) => (None, None),
            Err(f) => (Some(f.code().as_str()), Some(f.to_string())),
        };
        serde_json::json!({
            "check_id": self.check_id,
            "kind": self.kind,
            "started_at": self.started_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "ok": self.ok(),
            "failure_code": code,
            "failure_message": message,
            "phases_us": self.phases,
            "details": self.observed,
        })
    }

    /// The observations as the `details` JSON object.
    pub fn details(&self) -> serde_json::Value {
        self.observed.to_value()
    }
}

/// Runs one check once. The one `match` over kinds. Never panics on hostile
/// targets; the timeout bounds the whole run.
///
/// Each kind's future is boxed: unboxed, this future would be as large as the
/// largest kind's (about 12 KiB, the TLS matrix), and every run in flight —
/// a thousand against a slow target — would carry that much whatever its kind.
pub async fn run(spec: &CheckSpec, ctx: &RunContext) -> Outcome {
    let started_at = ctx.clock.now_utc();
    let clock = std::time::Instant::now();
    let (mut phases, result, observed) = match &spec.kind {
        CheckKind::Http(h) => {
            let fut = Box::pin(http::run(h, spec.timeout, ctx));
            // http::run enforces the timeout itself; this is a safety net.
            match tokio::time::timeout(spec.timeout + Duration::from_secs(1), fut).await {
                Ok(r) => (r.phases, r.result, r.observed),
                Err(_) => (
                    Phases::default(),
                    Err(Failure::Timeout {
                        phase: failure::Phase::Run,
                        after: spec.timeout,
                        target: Some(h.url.clone()),
                    }),
                    Observed::Http(Box::new(http::Observed {
                        url: h.url.clone(),
                        ..http::Observed::default()
                    })),
                ),
            }
        }
        CheckKind::Dns(d) => {
            let fut = Box::pin(dns::run_at(d, &spec.id, spec.timeout, started_at));
            // dns::run gives every resolver the same deadline; this is a safety net.
            match tokio::time::timeout(spec.timeout + Duration::from_secs(1), fut).await {
                Ok(r) => (r.phases, r.result, r.observed),
                Err(_) => (
                    Phases::default(),
                    Err(Failure::DnsTimeout {
                        name: dns::name_text(&d.name),
                        resolver: None,
                        after: Some(spec.timeout),
                    }),
                    Observed::Dns(Box::new(dns::Observed {
                        name: dns::name_text(&d.name),
                        ..dns::Observed::default()
                    })),
                ),
            }
        }
        CheckKind::Tls(t) => {
            let fut = Box::pin(tls::run_at(t, spec.timeout, started_at));
            // tls::run gives every handshake the same deadline; this is a safety net.
            match tokio::time::timeout(spec.timeout + Duration::from_secs(1), fut).await {
                Ok(r) => (r.phases, r.result, r.observed),
                Err(_) => (
                    Phases::default(),
                    Err(Failure::Timeout {
                        phase: failure::Phase::Run,
                        after: spec.timeout,
                        target: Some(format!("{}:{}", t.host, t.port)),
                    }),
                    Observed::Tls(Box::new(tls::Report::unreached(t))),
                ),
            }
        }
        CheckKind::Session(s) => {
            // session::run keeps every request within the timeout; this is a safety net.
            let fut = Box::pin(session::run(s, &spec.id, spec.timeout, ctx));
            match tokio::time::timeout(spec.timeout + Duration::from_secs(1), fut).await {
                Ok(r) => (r.phases, r.result, r.observed),
                Err(_) => (
                    Phases::default(),
                    Err(Failure::Timeout {
                        phase: failure::Phase::Run,
                        after: spec.timeout,
                        target: None,
                    }),
                    Observed::Session(Box::new(session::describe(s))),
                ),
            }
        }
        CheckKind::Tcp(t) => {
            safety_net(
                spec.timeout,
                Box::pin(tcp::run(t, spec.timeout)),
                || Some(t.target.authority()),
                || Observed::Tcp(Box::new(tcp::Observed::of(t))),
            )
            .await
        }
        CheckKind::Grpc(g) => {
            safety_net(
                spec.timeout,
                Box::pin(grpc::run(g, spec.timeout)),
                || Some(g.target.authority()),
                || Observed::Grpc(Box::new(grpc::Observed::of(g))),
            )
            .await
        }
        CheckKind::Icmp(i) => {
            safety_net(
                spec.timeout,
                Box::pin(icmp::run(i, spec.timeout)),
                || Some(i.target.host.clone()),
                || Observed::Icmp(Box::new(icmp::Observed::of(i))),
            )
            .await
        }
        CheckKind::Flow(f) => {
            safety_net(
                spec.timeout,
                Box::pin(flow::run(f, spec.timeout, ctx)),
                || None,
                || Observed::Flow(Box::new(flow::Observed::of(f))),
            )
            .await
        }
        CheckKind::Heartbeat(_) => (
            Phases::default(),
            Err(Failure::InternalError {
                reason: "a heartbeat check is evaluated by the controller from the job's pings; \
                         probes do not run it"
                    .into(),
            }),
            Observed::Heartbeat(Box::default()),
        ),
    };
    phases.total = clock.elapsed();
    Outcome {
        check_id: spec.id.clone(),
        kind: spec.kind.kind(),
        started_at,
        phases,
        result,
        observed,
    }
}

/// An outcome for a human (`outpost-probe check`): the kind's own rendering
/// where it has one, else the verdict and the details.
pub fn render(o: &Outcome) -> String {
    match &o.observed {
        Observed::Http(_) => http::report::render(o).text,
        Observed::Tcp(_) => tcp::render(o),
        Observed::Grpc(_) => grpc::render(o),
        Observed::Icmp(_) => icmp::render(o),
        Observed::Flow(_) => flow::render_steps(o),
        _ => {
            let verdict = match &o.result {
                Ok(()) => "PASS".to_owned(),
                Err(f) => format!("FAIL {}: {f}", f.code()),
            };
            format!(
                "{} {}\n{:#}\nverdict {verdict}\n",
                o.kind,
                o.check_id,
                o.details()
            )
        }
    }
}

/// What a run needs from the probe around it.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Probe name, sent as `x-outpost-probe` so targets can correlate.
    pub probe_name: String,
    /// Region, sent as `x-outpost-region`.
    pub region: String,
    /// Where session checks persist their state (`None`: in memory only);
    /// see [`session::state`]. A running probe uses `<outbox dir>/../sessions`.
    pub session_dir: Option<std::path::PathBuf>,
    /// The wall clock of time-dependent decisions (a run's `started_at`, DNS
    /// change tracking, session receipts and expiry): the system's, or a
    /// manual one in tests. Deadlines stay on tokio's clock.
    pub clock: crate::clock::Clock,
    /// The trace pipeline (`[telemetry]`; off by default).
    pub telemetry: crate::telemetry::Telemetry,
    /// This run's trace ids, set per run by the scheduler when it is
    /// traced; with `propagate`, HTTP requests send `traceparent`.
    pub trace: Option<crate::telemetry::TraceHandle>,
}

/// Runs a kind that keeps within `timeout` itself under a safety net one
/// second past it: should the kind overrun anyway, the run fails with a
/// `timeout` in phase `run` naming `target`, observing `fallback`.
async fn safety_net(
    timeout: Duration,
    run: impl Future<Output = KindResult>,
    target: impl FnOnce() -> Option<String>,
    fallback: impl FnOnce() -> Observed,
) -> (Phases, Result<(), Failure>, Observed) {
    match tokio::time::timeout(timeout + Duration::from_secs(1), run).await {
        Ok(r) => (r.phases, r.result, r.observed),
        Err(_) => (
            Phases::default(),
            Err(Failure::Timeout {
                phase: failure::Phase::Run,
                after: timeout,
                target: target(),
            }),
            fallback(),
        ),
    }
}

/// The result of a kind's run before the common fields are added.
#[derive(Debug)]
pub struct KindResult {
    /// Phase timings observed so far.
    pub phases: Phases,
    /// Pass or failure.
    pub result: Result<(), Failure>,
    /// Observations.
    pub observed: Observed,
}

impl KindResult {
    /// The observations as the `details` JSON object.
    pub fn details(&self) -> serde_json::Value {
        self.observed.to_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run in flight costs its future's size for as long as the target makes it
    /// wait; a thousand of them against a slow target must stay small. Unboxed kind
    /// futures made this ~12 KiB; an unboxed resolution future made http::run 3.7 KiB.
    #[test]
    fn a_run_in_flight_stays_small() {
        let raw: RawCheck =
            toml::from_str("id = \"a\"\nhttp = { url = \"http://127.0.0.1:9/\" }\n").unwrap();
        let mut problems = Problems::default();
        let spec = raw.validate("checks[0]", &mut problems).unwrap();
        let ctx = RunContext::default();
        let run = run(&spec, &ctx);
        assert!(
            std::mem::size_of_val(&run) <= 1024,
            "check::run future is {} bytes",
            std::mem::size_of_val(&run)
        );
        let CheckKind::Http(h) = &spec.kind else {
            unreachable!()
        };
        let http = http::run(h, spec.timeout, &ctx);
        assert!(
            std::mem::size_of_val(&http) <= 1024,
            "http::run future is {} bytes",
            std::mem::size_of_val(&http)
        );
    }

    /// The same bound for the other kinds: each kind's own future
    /// (what a run holds while its target stalls) stays within 1 KiB.
    #[test]
    fn a_run_of_every_new_kind_in_flight_stays_small() {
        let ctx = RunContext::default();
        let tables = [
            "tcp = { host = \"127.0.0.1\", port = 9, expect = \"^x\" }",
            "grpc = { host = \"127.0.0.1\", port = 9, tls = {} }",
            "icmp = { host = \"127.0.0.1\" }",
            "flow = { steps = [{ name = \"a\", http = { url = \"http://127.0.0.1:9/\" } }] }",
        ];
        for table in tables {
            let raw: RawCheck = toml::from_str(&format!("id = \"a\"\n{table}\n")).unwrap();
            let mut problems = Problems::default();
            let spec = raw.validate("checks[0]", &mut problems).unwrap();
            let size = std::mem::size_of_val(&run(&spec, &ctx));
            assert!(
                size <= 1024,
                "check::run future for {table} is {size} bytes"
            );
            let kind = match &spec.kind {
                CheckKind::Tcp(t) => std::mem::size_of_val(&tcp::run(t, spec.timeout)),
                CheckKind::Grpc(g) => std::mem::size_of_val(&grpc::run(g, spec.timeout)),
                CheckKind::Icmp(i) => std::mem::size_of_val(&icmp::run(i, spec.timeout)),
                CheckKind::Flow(f) => std::mem::size_of_val(&flow::run(f, spec.timeout, &ctx)),
                other => unreachable!("{other:?}"),
            };
            assert!(kind <= 1024, "{table}: kind future is {kind} bytes");
        }
    }
}
