//! The controller's config file (`controller.toml`).
//!
//! Strict like every Outpost config: each struct denies unknown keys, only
//! the variables in [`ENV`] may override the file, and [`RawControllerFile::validate`]
//! collects *every* problem with its key path before failing. The loading
//! machinery, [`Secret`] and [`Dur`] come from `outpost_probe::config` so the
//! probe and the controller report problems the same way.
//!
//! This file holds the top-level file, `[server]`, `[store]`, `[[probes]]`,
//! `[alerting]`, the checks' alert policies and the wiring. Each section
//! that belongs to a concern lives with it: `[[sinks]]` in
//! [`crate::alerting::sink`] (each kind's keys in its module:
//! `sink/pagerduty.rs`, `sink/webhook.rs`, `sink/console.rs`), `[[routes]]`
//! in [`crate::alerting::route`], `[alerting.certificates]` in [`certificate`],
//! `[auth]` in [`crate::auth::config`], `[server.limits]` in
//! [`crate::listener`], `[public_status]` in [`crate::dashboard::public`].
//!
//! Exposure rules (exit 78, checked here so `check-config` reports them
//! too): an `http_listen` that is not a loopback address needs
//! `server.http_tls` (or `server.allow_insecure_http = true`) and at least
//! one `[[auth.users]]` or `[[auth.tokens]]` (or
//! `server.allow_unauthenticated = true`).
//!
//! ```toml
//! [server]
//! grpc_listen = "0.0.0.0:7443"
//! http_listen = "0.0.0.0:8443"
//! tls = { cert_file = "/etc/outpost/controller.pem", key_file = "/etc/outpost/controller.key" }
//! http_tls = { cert_file = "/etc/outpost/controller.pem", key_file = "/etc/outpost/controller.key" }
//!
//! [[auth.users]]
//! name = "alice"
//! role = "admin"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//!
//! [store]
//! path = "/var/lib/outpost/outpost.db"    # SQLite (the default); or, for replicas:
//! # url = { env = "OUTPOST_DATABASE_URL" }  # postgres://user:password@host:5432/outpost
//! # ca_file = "/etc/outpost/postgres-ca.pem"
//!
//! [store.history]                         # how long each resolution is kept
//! raw = "7d"                              # every result (= [store] retention)
//! minute = "30d"
//! hour = "400d"
//! day = "forever"
//!
//! [[probes]]
//! name = "eu-west-1"
//! region = "eu-west"
//! token = { env = "OUTPOST_TOKEN_EU_WEST_1" }
//!
//! [[checks]]
//! id = "api-health"
//! interval = "30s"
//! http = { url = "https://api.example.net/health" }
//! alert = { min_regions = 2, routes = ["oncall"] }
//!
//! [[sinks]]
//! name = "pagerduty"
//! pagerduty = { routing_key = { env = "PD_ROUTING_KEY" } }
//!
//! [[routes]]
//! name = "oncall"
//! sinks = ["pagerduty"]
//! checks = ["*"]
//! ```

pub mod certificate;
pub mod limits;
pub mod schema;

use std::{
    collections::{BTreeSet, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use outpost_probe::{
    check::{self, CheckSpec, RawCheck},
    config::{ConfigError, Dur, EnvOverride, Problems, RawSecret, Secret, load},
};
use serde::Deserialize;

use crate::alerting::{
    AlertKind, Kind, Severity,
    route::{self, sinks_of},
    sink,
};
pub use crate::alerting::{
    route::{RawRoute, RouteDef},
    sink::{RawSink, SinkDef, SinkKind},
};
// The config tests below name it as they always did.
#[cfg(test)]
use crate::alerting::sink::pagerduty::DEFAULT_EVENTS_PER_MINUTE;

/// Environment variables the controller accepts. Any other `OUTPOST_*`
/// variable (unless a secret names it) stops the process with exit code 78.
pub const ENV: &[EnvOverride] = &[
    EnvOverride {
        var: "OUTPOST_GRPC_LISTEN",
        key: "server.grpc_listen",
    },
    EnvOverride {
        var: "OUTPOST_HTTP_LISTEN",
        key: "server.http_listen",
    },
    EnvOverride {
        var: "OUTPOST_STORE_PATH",
        key: "store.path",
    },
    EnvOverride {
        var: "OUTPOST_LOG",
        key: "",
    },
];

/// Default gRPC listen address (loopback: exposing it is a decision).
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7443";
/// Default HTTP listen address (loopback: exposing it is a decision).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// Default store path.
pub const DEFAULT_STORE_PATH: &str = "./outpost.db";
/// Default evaluator lease (replicas on PostgreSQL).
pub const DEFAULT_EVALUATOR_LEASE: Duration = Duration::from_secs(10);
/// Default result retention.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Default silence after which a probe counts as offline.
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(60);
/// Default `[alerting].update_interval`.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(300);
/// Default `[alerting].notifier_failing_after`.
pub const DEFAULT_NOTIFIER_FAILING_AFTER: Duration = Duration::from_secs(300);
/// Default severity of a `probe_offline` alert.
pub const DEFAULT_OFFLINE_SEVERITY: Severity = Severity::Error;
/// Default severity of a check's alert.
pub const DEFAULT_CHECK_SEVERITY: Severity = Severity::Critical;

/// `controller.toml` as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawControllerFile {
    /// Listeners and TLS. Optional: every field has a default.
    #[serde(default)]
    pub server: Option<RawServer>,
    /// Where results, alert state and the notification log live. Optional.
    #[serde(default)]
    pub store: Option<RawStore>,
    /// Probes allowed to connect, one entry per probe.
    #[serde(default)]
    pub probes: Vec<RawProbeEntry>,
    /// Checks, in the same schema as a probe's local `[[checks]]`
    /// (`outpost_probe::check::RawCheck`), plus `regions` and `alert`.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    /// Where notifications go.
    #[serde(default)]
    pub sinks: Vec<RawSink>,
    /// Which checks notify which sinks.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Fleet-level alerting settings. Optional.
    #[serde(default)]
    pub alerting: Option<RawAlerting>,
    /// Who may use the dashboard, the API and `/metrics`. Optional: without
    /// it nobody can authenticate (every non-public route answers 401).
    #[serde(default)]
    pub auth: Option<crate::auth::config::RawAuth>,
    /// The opt-in public status page. Optional, off by default.
    #[serde(default)]
    pub public_status: Option<crate::dashboard::public::RawPublicStatus>,
    /// Fixed silences: matching checks' alerts are recorded, not paged,
    /// until `ends_at` ([`crate::alerting::silence`]). More can be made
    /// from the dashboard and `POST /api/v1/silences`.
    #[serde(default)]
    pub silences: Vec<crate::alerting::silence::RawSilence>,
    /// Recurring maintenance windows: matching checks page nobody inside
    /// them ([`crate::alerting::silence`]).
    #[serde(default)]
    pub maintenance: Vec<crate::alerting::silence::RawMaintenance>,
    /// OpenTelemetry traces of ingest batches and notification deliveries
    /// over OTLP/gRPC: the probe's `[telemetry]` table
    /// ([`outpost_probe::config::telemetry::RawTelemetry`]; `traceparent`
    /// is probe-only). Default: off. Read at start (a change needs a restart).
    #[serde(default)]
    pub telemetry: Option<outpost_probe::config::telemetry::RawTelemetry>,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address for the probe gRPC stream, `host:port`. Default
    /// `"127.0.0.1:7443"`; port 0 picks a free port. Env: `OUTPOST_GRPC_LISTEN`.
    #[serde(default)]
    pub grpc_listen: Option<String>,
    /// Address for the dashboard, JSON API, `/metrics`, `/livez` and
    /// `/readyz`, `host:port`. Default `"127.0.0.1:8080"`. Another address
    /// than loopback needs `http_tls` and credentials in `[auth]` (or the
    /// `allow_*` keys below). Env: `OUTPOST_HTTP_LISTEN`.
    #[serde(default)]
    pub http_listen: Option<String>,
    /// TLS for the gRPC listener. Required unless `allow_plaintext_probes`
    /// is set: without it the controller refuses to start (exit 78).
    /// Example: `tls = { cert_file = "/etc/outpost/controller.pem", key_file = "/etc/outpost/controller.key" }`.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// HTTPS for the HTTP listener (HTTP/1.1 and HTTP/2 by ALPN, TLS 1.2+,
    /// HSTS, `Secure` cookies). Usually the same files as `tls`. Example:
    /// `http_tls = { cert_file = "/etc/outpost/controller.pem", key_file = "/etc/outpost/controller.key" }`.
    #[serde(default)]
    pub http_tls: Option<RawTls>,
    /// Serve plain HTTP on a non-loopback `http_listen` (e.g. behind a TLS
    /// proxy on a private network): passwords, cookies and tokens then
    /// cross that network in clear. Default `false`; a warning is logged
    /// at start when it takes effect.
    #[serde(default)]
    pub allow_insecure_http: Option<bool>,
    /// Serve callers without credentials as the read-only viewer
    /// `anonymous`: every page, the API and `/metrics` to anyone who can
    /// connect (and, by DNS rebinding, to web pages a local browser opens).
    /// Also lets a non-loopback `http_listen` start without `[auth]`
    /// credentials. Default `false`; a warning is logged at start.
    #[serde(default)]
    pub allow_unauthenticated: Option<bool>,
    /// Connection limits and timeouts of both listeners
    /// ([`crate::listener::RawLimits`]). Optional.
    #[serde(default)]
    pub limits: Option<crate::listener::RawLimits>,
    /// Serve the probe gRPC stream without TLS (probe tokens then travel in
    /// clear; a warning is logged at start). For loopback and tests only;
    /// the probe must opt in too (`controller.allow_plaintext`). Default false.
    #[serde(default)]
    pub allow_plaintext_probes: bool,
    /// Bounds on what probes send ([`limits`]). Optional.
    #[serde(default)]
    pub probe_limits: Option<limits::RawProbeLimits>,
    /// The CA that issues probes' client certificates (mutual TLS,
    /// [`crate::identity`]). PEM files; every replica uses the same ones.
    /// The key file must be mode 0600 (else exit 78). Create both with
    /// `outpost-controller ca init --dir /etc/outpost/probe-ca`. With it the
    /// gRPC listener asks probes for a client certificate (bearer tokens keep
    /// working), probes may enroll (`outpost-controller probe enroll`), and
    /// `[[probes]] token` becomes optional. Needs `tls`. Example:
    /// `probe_ca = { cert_file = "/etc/outpost/probe-ca/ca.pem", key_file = "/etc/outpost/probe-ca/ca.key" }`.
    #[serde(default)]
    pub probe_ca: Option<RawTls>,
    /// Validity of an issued probe certificate; probes renew at half of it.
    /// Default `"7d"`, `"1h"` to `"365d"`.
    #[serde(default)]
    pub probe_cert_validity: Option<Dur>,
    /// The dashboard's address as on-call engineers reach it (behind a
    /// proxy, a DNS name), e.g. `"https://outpost.example.com"`. Slack,
    /// Opsgenie and email notifications link to the alert's page under it;
    /// without it they carry no link. Optional.
    #[serde(default)]
    pub external_url: Option<String>,
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RawTlsFiles")]
pub struct RawTls {
    /// PEM file with the server certificate followed by its intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[store]`: SQLite (`path`, the default) or PostgreSQL (`url`), not both.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// SQLite database file, created if missing. Default `"./outpost.db"`.
    /// Env: `OUTPOST_STORE_PATH`. One controller process per file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// PostgreSQL (15 or later) instead of SQLite: a secret holding
    /// `postgres://user:password@host:5432/database`, as
    /// `{ env = "NAME" }` or `{ file = "/path" }` (never a literal; it
    /// carries the password and is never logged). Any number of controller
    /// replicas may share one database; one of them evaluates alerts at a
    /// time (see `[alerting] evaluator_lease`).
    #[serde(default)]
    pub url: Option<RawSecret>,
    /// PEM file with the CA that issued the PostgreSQL server's
    /// certificate. When set the connection requires TLS and verifies the
    /// server's certificate and name (`sslmode=verify-full`). PostgreSQL only.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Most database connections this process opens. Default 4 for SQLite,
    /// 10 for PostgreSQL (per replica: keep replicas × pool_size below the
    /// server's `max_connections`). 1 to 1000.
    #[serde(default)]
    pub pool_size: Option<u32>,
    /// Results older than this are pruned (hourly). Alerts and the
    /// notification log are kept. Default `"7d"`, minimum `"1m"`. The same
    /// as `[store.history] raw` (set one of them).
    #[serde(default)]
    pub retention: Option<Dur>,
    /// `[store.history]`: how long each resolution of the history is kept.
    #[serde(default)]
    pub history: Option<RawHistory>,
}

/// `[store.history]`: retention of raw results and of the minute, hour and
/// day rollups the pages and SLA reports read ([`crate::history`]). Each a
/// duration (`"30d"`) or `"forever"`; pruned hourly, in batches.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// Raw results (every run, with its details): default `"7d"`, minimum
    /// `"1m"`, never `"forever"`. The check page's newest results and flap
    /// detection read them.
    #[serde(default)]
    pub raw: Option<String>,
    /// Minute rollups: default `"30d"`. The 1 h / 24 h graphs, 90-minute
    /// status bars and SLA months within it are exact to the minute.
    #[serde(default)]
    pub minute: Option<String>,
    /// Hour rollups: default `"400d"` (a year and its month-over-month view).
    #[serde(default)]
    pub hour: Option<String>,
    /// Day rollups: default `"forever"` (for multi-year uptime records).
    #[serde(default)]
    pub day: Option<String>,
}

/// `[store] retention` and `[store.history]`, with defaults, every problem
/// pushed with its key path.
fn validate_history(store: &RawStore, p: &mut Problems) -> crate::history::HistoryRetention {
    let mut out = crate::history::HistoryRetention::default();
    let h = store.history.clone().unwrap_or_default();
    let parse = |key: &str, text: &str, p: &mut Problems| -> Option<Option<Duration>> {
        if text.trim() == "forever" {
            return Some(None);
        }
        match outpost_probe::config::duration::parse_duration(text) {
            Ok(d) if d >= Duration::from_secs(60) => Some(Some(d)),
            Ok(d) => {
                p.push(
                    key,
                    format!("{key} must be ≥ 1m or \"forever\", got \"{}\"", Dur(d)),
                );
                None
            }
            Err(e) => {
                p.push(key, format!("{e}, or \"forever\""));
                None
            }
        }
    };
    match (store.retention, h.raw.as_deref()) {
        (Some(_), Some(_)) => p.push(
            "store.history.raw",
            "set either store.retention or store.history.raw (the same setting), not both",
        ),
        (Some(d), None) if d.get() < Duration::from_secs(60) => p.push(
            "store.retention",
            format!("retention must be ≥ 1m, got \"{d}\""),
        ),
        (Some(d), None) => out.raw = d.get(),
        (None, Some(text)) => match parse("store.history.raw", text, p) {
            Some(Some(d)) => out.raw = d,
            Some(None) => p.push(
                "store.history.raw",
                "raw results cannot be kept forever: give a duration such as \"7d\" (rollups keep the history)",
            ),
            None => {}
        },
        (None, None) => {}
    }
    for (key, text, slot) in [
        ("store.history.minute", &h.minute, &mut out.minute),
        ("store.history.hour", &h.hour, &mut out.hour),
        ("store.history.day", &h.day, &mut out.day),
    ] {
        if let Some(text) = text
            && let Some(keep) = parse(key, text, p)
        {
            *slot = keep;
        }
    }
    out
}

/// `[[probes]]`: a probe allowed to connect.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProbeEntry {
    /// Unique probe name; the probe sends it in its hello. Example `"eu-west-1"`.
    pub name: String,
    /// Region the probe runs in; checks name regions, not probes. Example `"eu-west"`.
    pub region: String,
    /// The probe's bearer token, unique per probe: `{ env = "NAME" }` or
    /// `{ file = "/path" }`, never a literal. Optional when `[server]
    /// probe_ca` is set (the probe then enrolls for a client certificate);
    /// both may be set, and either authenticates the probe. A probe with
    /// neither is refused (exit 78).
    #[serde(default)]
    pub token: Option<RawSecret>,
}

/// `[alerting]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    /// A probe that sent nothing (no hello, heartbeat or result) for longer
    /// than this is offline: its regions' check states turn STALE ("probe
    /// offline"), they stop counting towards any check's quorum, and one
    /// `probe_offline` alert is raised for the probe (resolved when it is
    /// back). Keep it well above the probes' `heartbeat_interval` (default
    /// 10s). Silence is measured from the controller's own start at the
    /// earliest, so a controller restart does not page for every probe.
    /// Default `"60s"`, minimum `"1s"`.
    #[serde(default)]
    pub offline_after: Option<Dur>,
    /// While an alert is open its summary follows the current state
    /// (failing regions, code, since when); a meaningful change (the set of
    /// failing regions, the failure code, the severity) is sent again as a
    /// trigger with the same dedup key (PagerDuty updates the incident), at
    /// most once per this interval per alert (the latest state then). `"0s"`:
    /// every change at once. Default `"5m"`.
    #[serde(default)]
    pub update_interval: Option<Dur>,
    /// A sink whose deliveries have failed (and are being retried) for this
    /// long since its last success raises a `notifier_failing` alert on the
    /// fallback route (`[[routes]] fallback = true`); a rejection (4xx other
    /// than 408/429) or a give-up raises it at once. It resolves with the
    /// sink's next delivery. Default `"5m"`.
    #[serde(default)]
    pub notifier_failing_after: Option<Dur>,
    /// Severity of `probe_offline` alerts: `"critical"`, `"error"`,
    /// `"warning"` or `"info"`. Default `"error"`.
    #[serde(default)]
    pub offline_severity: Option<String>,
    /// With several replicas on PostgreSQL: how long the evaluator lease
    /// lasts. The replica holding it evaluates alerts and renews it every
    /// third of this; if it dies or loses the database, another replica
    /// takes over once the lease has lapsed, so this bounds how long alerts
    /// go unevaluated. The deposed replica stops evaluating before then.
    /// Ignored with SQLite (one process, always the evaluator).
    /// Default `"10s"`, `"1s"` to `"5m"`.
    #[serde(default)]
    pub evaluator_lease: Option<Dur>,
    /// `certificate_expiring` alerts: thresholds and when they resolve.
    /// Optional; see [`certificate::RawCertificateAlerting`].
    #[serde(default)]
    pub certificates: Option<certificate::RawCertificateAlerting>,
}

/// Validated controller configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// File this came from, re-read on SIGHUP (`None` when parsed from text).
    pub path: Option<PathBuf>,
    /// `--set key=value` overrides from the command line, applied again on
    /// every reload so a reload sees the same layers as the start.
    pub overrides: Vec<String>,
    /// gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// gRPC TLS files.
    pub tls: Option<TlsFiles>,
    /// Engine, location and pool.
    pub store: crate::store::StoreSpec,
    /// Evaluator lease (replicas on PostgreSQL).
    pub evaluator_lease: Duration,
    /// HTTPS files of the HTTP listener.
    pub http_tls: Option<TlsFiles>,
    /// Plain HTTP on a non-loopback address was opted into.
    pub allow_insecure_http: bool,
    /// Callers without credentials are served as a viewer.
    pub allow_unauthenticated: bool,
    /// `server.external_url` without a trailing slash: links in notifications.
    pub external_url: Option<String>,
    /// Connection limits and timeouts of both listeners.
    pub limits: crate::listener::Limits,
    /// Tokens, users, session lifetimes.
    pub auth: crate::auth::config::AuthConfig,
    /// The public status page.
    pub public_status: crate::dashboard::public::PublicStatus,
    /// The gRPC listener may serve without TLS (`server.allow_plaintext_probes`).
    pub allow_plaintext_probes: bool,
    /// Bounds on what probes send.
    pub probe_limits: limits::ProbeLimits,
    /// The probe CA's files (`server.probe_ca`), if mutual TLS is on.
    pub probe_ca: Option<TlsFiles>,
    /// Validity of issued probe certificates.
    pub probe_cert_validity: Duration,
    /// Result retention (`history.raw`).
    pub retention: Duration,
    /// Retention of each resolution of the history (`[store.history]`).
    pub history: crate::history::HistoryRetention,
    /// Probes.
    pub probes: Vec<ProbeDef>,
    /// Checks.
    pub checks: Vec<CheckDef>,
    /// Index of each check in `checks` by id ([`ControllerConfig::check`]
    /// is called per result and per evaluated check: a scan of 10,000
    /// checks each time was a fleet's largest CPU cost).
    check_index: std::collections::HashMap<String, usize>,
    /// Sinks.
    pub sinks: Vec<SinkDef>,
    /// Routes.
    pub routes: Vec<RouteDef>,
    /// Silence after which a probe is offline.
    pub offline_after: Duration,
    /// Severity of `probe_offline` alerts.
    pub offline_severity: Severity,
    /// At most one update trigger per open alert per this interval.
    pub update_interval: Duration,
    /// Retried failures of a sink for this long raise `notifier_failing`.
    pub notifier_failing_after: Duration,
    /// When certificates page.
    pub certificates: certificate::CertificatePolicy,
    /// Heartbeat checks with their resolved ping ids ([`crate::heartbeat`]).
    pub heartbeats: Vec<crate::heartbeat::HeartbeatDef>,
    /// Silences of the config file.
    pub silences: Vec<crate::alerting::silence::SilenceDef>,
    /// Maintenance windows.
    pub maintenance: Vec<crate::alerting::silence::MaintenanceDef>,
    /// Trace export, when `[telemetry]` sampling is not `off`.
    pub telemetry: Option<outpost_probe::config::telemetry::TelemetryConfig>,
}

/// TLS files of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain PEM.
    pub cert_file: PathBuf,
    /// Private key PEM.
    pub key_file: PathBuf,
}

/// A probe allowed to connect.
#[derive(Debug, Clone)]
pub struct ProbeDef {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Bearer token; `None` for a probe that authenticates by certificate only.
    pub token: Option<Secret>,
}

/// A validated check with the definition it came from.
#[derive(Debug, Clone)]
pub struct CheckDef {
    /// As written; sent to probes as `spec_json`.
    pub raw: RawCheck,
    /// Validated.
    pub spec: CheckSpec,
    /// Regions that run it (explicit, or every region with a probe).
    pub regions: Vec<String>,
    /// Alert policy with defaults applied.
    pub policy: AlertPolicy,
}

/// A check's alert policy with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Failing regions needed to fire.
    pub min_regions: u32,
    /// Consecutive failures before a region counts as failing.
    pub confirmations: u32,
    /// Consecutive passes before a region counts as recovered.
    pub recoveries: u32,
    /// Pager severity.
    pub severity: Severity,
    /// Routes notified.
    pub routes: Vec<String>,
    /// False: record alerts, notify nobody.
    pub enabled: bool,
    /// Pass/fail changes of a region within `flap_window` that make it
    /// flapping; 0: off ([`crate::alerting::flap`]).
    pub flap_changes: u32,
    /// The window flap detection counts changes in.
    pub flap_window: Duration,
    /// How long after an unconfirmed failure its region's probes are asked
    /// to run again ([`crate::alerting::confirm`]); `None`: off.
    pub retry_interval: Option<Duration>,
    /// A first failure asks every other region to run at once.
    pub confirm_from_other_regions: bool,
}

/// Longest default `[checks.alert] retry_interval`.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Default `[checks.alert] flap_changes`.
pub const DEFAULT_FLAP_CHANGES: u32 = 5;
/// Default `[checks.alert] flap_window`.
pub const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(30 * 60);

impl ControllerConfig {
    /// Every region that has a probe, sorted.
    pub fn regions(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.probes.iter().map(|p| p.region.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// Every region results come from: the probes' regions, then
    /// [`crate::heartbeat::REGION`] when a heartbeat check is configured.
    pub fn result_regions(&self) -> Vec<String> {
        let mut out = self.regions();
        if !self.heartbeats.is_empty() {
            out.push(crate::heartbeat::REGION.to_owned());
        }
        out
    }

    /// The check with this id.
    pub fn check(&self, id: &str) -> Option<&CheckDef> {
        self.check_index.get(id).and_then(|i| self.checks.get(*i))
    }

    /// The probe with this name.
    pub fn probe(&self, name: &str) -> Option<&ProbeDef> {
        self.probes.iter().find(|p| p.name == name)
    }

    /// The sink with this name.
    pub fn sink(&self, name: &str) -> Option<&SinkDef> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// Checks a probe in `region` runs, in config order.
    pub fn checks_for_region<'a>(
        &'a self,
        region: &'a str,
    ) -> impl Iterator<Item = &'a CheckDef> + 'a {
        self.checks
            .iter()
            .filter(move |c| c.regions.iter().any(|r| r == region))
    }

    /// Sink names a firing check notifies itself (deduplicated, route
    /// order): those of its routes without `group_by`; grouped routes
    /// notify per group ([`crate::alerting::group`]).
    pub fn sinks_for_check(&self, check: &CheckDef) -> Vec<String> {
        let routes: Vec<&RouteDef> = self
            .routes_for_check(check)
            .into_iter()
            .filter(|r| r.group.is_none())
            .collect();
        sinks_of(&routes)
    }

    /// Routes a firing check's alert goes to: those its `alert.routes`
    /// names, else every route carrying `check_failing` whose matchers
    /// match it; none for a check with alerting disabled.
    pub fn routes_for_check(&self, check: &CheckDef) -> Vec<&RouteDef> {
        if !check.policy.enabled {
            return Vec::new();
        }
        if check
            .raw
            .alert
            .as_ref()
            .and_then(|a| a.routes.as_ref())
            .is_some()
        {
            self.routes
                .iter()
                .filter(|r| check.policy.routes.contains(&r.name))
                .collect()
        } else {
            self.routes
                .iter()
                .filter(|r| r.carries(AlertKind::CheckFailing.into()))
                .filter(|r| {
                    r.matches_check(&check.raw.id, &check.raw.labels, check.policy.severity)
                })
                .collect()
        }
    }

    /// Sink names a fleet-level alert or an event of `kind` (e.g.
    /// `probe_offline`) notifies: every route whose `kinds` include it.
    pub fn sinks_for_kind(&self, kind: Kind) -> Vec<String> {
        let routes: Vec<&RouteDef> = self.routes.iter().filter(|r| r.carries(kind)).collect();
        sinks_of(&routes)
    }

    /// Sinks of a `notifier_failing` alert about `failing`: the fallback
    /// routes' sinks, or without a fallback route those of every route
    /// carrying `notifier_failing`; never `failing` itself.
    pub fn sinks_for_notifier(&self, failing: &str) -> Vec<String> {
        let fallback: Vec<&RouteDef> = self.routes.iter().filter(|r| r.fallback).collect();
        let mut sinks = if fallback.is_empty() {
            self.sinks_for_kind(AlertKind::NotifierFailing.into())
        } else {
            sinks_of(&fallback)
        };
        sinks.retain(|s| s != failing);
        sinks
    }
}

/// Resolves a secret, looking `{ env = … }` names up in `vars` first (so a
/// config parsed from text with explicit variables is self-contained), then
/// in the process environment.
pub(crate) fn resolve_secret(raw: &RawSecret, vars: &[(String, String)]) -> Result<Secret, String> {
    if let (Some(name), None, None) = (&raw.env, &raw.file, &raw.credential)
        && let Some((_, v)) = vars.iter().find(|(n, _)| n == name)
    {
        if v.trim().is_empty() {
            return Err(format!("environment variable {name} is empty"));
        }
        return Ok(Secret::new(v.trim()));
    }
    raw.resolve()
}

/// The shortest bearer token a probe may use (`probes[].token` here,
/// `controller.token` on the probe): 32 characters, e.g. `openssl rand -hex 32`
/// gives 64.
pub const MIN_TOKEN_LEN: usize = outpost_probe::config::MIN_TOKEN_LEN;

fn check_token_length(token: Secret) -> Result<Secret, String> {
    outpost_probe::config::check_token_length(&token)?;
    Ok(token)
}

fn parse_addr(value: Option<&str>, default: &str, path: &str, p: &mut Problems) -> SocketAddr {
    let text = value.unwrap_or(default);
    text.parse().unwrap_or_else(|_| {
        p.push(
            path,
            format!("invalid listen address {text:?}: use ip:port, e.g. \"0.0.0.0:8080\""),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    })
}

pub(crate) fn push_if_bad_id(p: &mut Problems, path: String, what: &str, value: &str) {
    if !check::valid_id(value) {
        p.push(
            path,
            format!("invalid {what} {value:?}: use lowercase letters, digits, '-', '_' or '.'"),
        );
    }
}

impl RawControllerFile {
    /// Validates everything, collecting every problem with its key path.
    /// Secrets named `{ env = … }` are looked up in `vars`, then the process environment.
    pub fn validate(
        &self,
        source: &str,
        vars: &[(String, String)],
    ) -> Result<ControllerConfig, ConfigError> {
        let mut p = Problems::default();
        let server = self.server.clone().unwrap_or_default();
        let grpc_listen = parse_addr(
            server.grpc_listen.as_deref(),
            DEFAULT_GRPC_LISTEN,
            "server.grpc_listen",
            &mut p,
        );
        let http_listen = parse_addr(
            server.http_listen.as_deref(),
            DEFAULT_HTTP_LISTEN,
            "server.http_listen",
            &mut p,
        );
        let tls = server
            .tls
            .as_ref()
            .map(|t| validate_tls(t, "server.tls", &mut p));
        let http_tls = server
            .http_tls
            .as_ref()
            .map(|t| validate_tls(t, "server.http_tls", &mut p));
        let limits = crate::listener::validate_limits(server.limits.as_ref(), &mut p);
        let auth = crate::auth::config::validate(self.auth.as_ref(), vars, &mut p);
        let allow_insecure_http = server.allow_insecure_http.unwrap_or(false);
        let allow_unauthenticated = server.allow_unauthenticated.unwrap_or(false);
        if let Some(url) = &server.external_url {
            validate_url(url, "server.external_url".into(), &mut p);
        }
        let external_url = server
            .external_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned());
        check_exposure(
            http_listen,
            http_tls.is_some(),
            allow_insecure_http,
            auth.is_empty(),
            allow_unauthenticated,
            &mut p,
        );
        if tls.is_none() && !server.allow_plaintext_probes {
            p.push(
                "server.tls",
                "the probe gRPC listener needs TLS: set server.tls = { cert_file = \"…\", key_file = \"…\" }, \
                 or set server.allow_plaintext_probes = true to accept probe tokens in clear (loopback and tests only)",
            );
        }
        let probe_limits = limits::validate(server.probe_limits.as_ref(), &mut p);
        let probe_ca = server
            .probe_ca
            .as_ref()
            .map(|t| validate_tls(t, "server.probe_ca", &mut p));
        if let Some(ca) = &probe_ca {
            if let Err(e) = crate::identity::check_key_mode(&ca.key_file) {
                p.push("server.probe_ca.key_file", e.to_string());
            }
            if tls.is_none() {
                p.push(
                    "server.probe_ca",
                    "mutual TLS needs the gRPC listener's own TLS: set server.tls too",
                );
            }
        }
        let probe_cert_validity = server
            .probe_cert_validity
            .map_or(crate::identity::DEFAULT_VALIDITY, Dur::get);
        if !(Duration::from_secs(3600)..=Duration::from_secs(365 * 86_400))
            .contains(&probe_cert_validity)
        {
            p.push(
                "server.probe_cert_validity",
                format!(
                    "probe_cert_validity must be between \"1h\" and \"365d\", got \"{}\"",
                    Dur(probe_cert_validity)
                ),
            );
        }
        let store = self.store.clone().unwrap_or(RawStore {
            path: None,
            url: None,
            ca_file: None,
            pool_size: None,
            retention: None,
            history: None,
        });
        let store_spec = validate_store(&store, vars, &mut p);
        let evaluator_lease = self
            .alerting
            .as_ref()
            .and_then(|a| a.evaluator_lease)
            .map(Dur::get)
            .unwrap_or(DEFAULT_EVALUATOR_LEASE);
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&evaluator_lease) {
            p.push(
                "alerting.evaluator_lease",
                format!(
                    "evaluator_lease must be between 1s and 5m, got \"{}\"",
                    Dur(evaluator_lease)
                ),
            );
        }
        let history = validate_history(&store, &mut p);
        let retention = history.raw;
        let probes = self.validate_probes(vars, &mut p);
        let regions: BTreeSet<String> = probes.iter().map(|d| d.region.clone()).collect();
        // Check credentials resolve on the probes: here only their shape is
        // validated, and the assignment ships the references.
        p.secrets_by_reference(true);
        let specs = check::validate_all(&self.checks, "checks", &mut p);
        p.secrets_by_reference(false);
        let sinks = sink::validate(&self.sinks, vars, &mut p);
        let declared: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
        let check_ids: HashSet<&str> = self.checks.iter().map(|c| c.id.as_str()).collect();
        let routes = route::validate(&self.routes, &declared, &sinks, &check_ids, &mut p);
        let mut checks = self.validate_check_defs(specs, &regions, &routes, &mut p);
        validate_depends_on(&self.checks, &mut p);
        let heartbeats = crate::heartbeat::validate(&self.checks, &mut checks, vars, &mut p);
        let public_status =
            crate::dashboard::public::validate(self.public_status.as_ref(), &check_ids, &mut p);
        let offline_after = self
            .alerting
            .as_ref()
            .and_then(|a| a.offline_after)
            .map(Dur::get)
            .unwrap_or(DEFAULT_OFFLINE_AFTER);
        if offline_after < Duration::from_secs(1) {
            p.push(
                "alerting.offline_after",
                format!("offline_after must be ≥ 1s, got \"{}\"", Dur(offline_after)),
            );
        }
        let offline_severity = match self
            .alerting
            .as_ref()
            .and_then(|a| a.offline_severity.as_deref())
        {
            None => DEFAULT_OFFLINE_SEVERITY,
            Some(text) => text.parse().unwrap_or_else(|_| {
                p.push(
                    "alerting.offline_severity",
                    format!("unknown severity {text:?}: use one of {}", Severity::list()),
                );
                DEFAULT_OFFLINE_SEVERITY
            }),
        };
        let certificates = certificate::validate(
            self.alerting.as_ref().and_then(|a| a.certificates.as_ref()),
            &mut p,
        );
        let silences = crate::alerting::silence::validate_silences(&self.silences, &mut p);
        let maintenance = crate::alerting::silence::validate_maintenance(&self.maintenance, &mut p);
        let telemetry = self.telemetry.as_ref().and_then(|t| {
            if t.traceparent {
                p.push(
                    "telemetry.traceparent",
                    "traceparent is a probe setting (sent to check targets); remove it here",
                );
            }
            t.validate(&mut p)
        });
        p.finish(source)?;
        Ok(ControllerConfig {
            overrides: Vec::new(),
            path: None,
            grpc_listen,
            http_listen,
            tls,
            store: store_spec,
            evaluator_lease,
            http_tls,
            allow_insecure_http,
            allow_unauthenticated,
            external_url,
            limits,
            auth,
            public_status,
            allow_plaintext_probes: server.allow_plaintext_probes,
            probe_limits,
            probe_ca,
            probe_cert_validity,
            retention,
            history,
            probes,
            check_index: checks
                .iter()
                .enumerate()
                .map(|(i, c)| (c.raw.id.clone(), i))
                .collect(),
            checks,
            sinks,
            routes,
            offline_after,
            offline_severity,
            update_interval: self
                .alerting
                .as_ref()
                .and_then(|a| a.update_interval)
                .map_or(DEFAULT_UPDATE_INTERVAL, Dur::get),
            notifier_failing_after: self
                .alerting
                .as_ref()
                .and_then(|a| a.notifier_failing_after)
                .map_or(DEFAULT_NOTIFIER_FAILING_AFTER, Dur::get),
            certificates,
            heartbeats,
            silences,
            maintenance,
            telemetry,
        })
    }

    fn validate_probes(&self, vars: &[(String, String)], p: &mut Problems) -> Vec<ProbeDef> {
        let ca = self.server.as_ref().is_some_and(|s| s.probe_ca.is_some());
        let mut names = HashSet::new();
        let mut tokens: Vec<(Secret, usize)> = Vec::new();
        let mut out = Vec::new();
        for (i, raw) in self.probes.iter().enumerate() {
            let path = format!("probes[{i}]");
            push_if_bad_id(p, format!("{path}.name"), "probe name", &raw.name);
            push_if_bad_id(p, format!("{path}.region"), "region", &raw.region);
            if raw.region == crate::heartbeat::REGION {
                p.push(
                    format!("{path}.region"),
                    format!(
                        "region {:?} is reserved for heartbeat pings: name the probe's region after where it runs",
                        raw.region
                    ),
                );
            }
            if !names.insert(raw.name.as_str()) {
                p.push(
                    format!("{path}.name"),
                    format!("duplicate probe name {:?}", raw.name),
                );
            }
            let token = match &raw.token {
                None if !ca => {
                    p.push(
                        format!("{path}.token"),
                        "a probe needs a token = { env = \"NAME\" } (or server.probe_ca, to enroll it for a client certificate)",
                    );
                    continue;
                }
                None => None,
                Some(raw_token) => {
                    match resolve_secret(raw_token, vars).and_then(check_token_length) {
                        Ok(token) => {
                            if let Some((_, j)) = tokens.iter().find(|(t, _)| *t == token) {
                                p.push(
                                format!("{path}.token"),
                                format!(
                                    "probes[{j}] has the same token: give every probe its own token"
                                ),
                            );
                            }
                            tokens.push((token.clone(), i));
                            Some(token)
                        }
                        Err(e) => {
                            p.push(format!("{path}.token"), e);
                            continue;
                        }
                    }
                }
            };
            out.push(ProbeDef {
                name: raw.name.clone(),
                region: raw.region.clone(),
                token,
            });
        }
        out
    }

    fn validate_check_defs(
        &self,
        specs: Vec<CheckSpec>,
        regions: &BTreeSet<String>,
        routes: &[RouteDef],
        p: &mut Problems,
    ) -> Vec<CheckDef> {
        let mut out = Vec::with_capacity(self.checks.len());
        // validate_all skipped invalid checks; pair the rest up by id (an
        // index, not a scan per check: 10,000 checks made that 10^8 compares).
        let mut specs: std::collections::HashMap<String, CheckSpec> =
            specs.into_iter().map(|s| (s.id.clone(), s)).collect();
        for (i, raw) in self.checks.iter().enumerate() {
            let path = format!("checks[{i}]");
            // A heartbeat's results come from its pings, in one region of
            // their own; probes are never assigned it.
            let check_regions = if raw.heartbeat.is_some() {
                vec![crate::heartbeat::REGION.to_owned()]
            } else {
                check_regions(raw, regions, &path, p)
            };
            let policy = policy(raw, check_regions.len(), routes, &path, p);
            if let Some(spec) = specs.remove(&raw.id) {
                out.push(CheckDef {
                    raw: raw.clone(),
                    spec,
                    regions: check_regions,
                    policy,
                });
            }
        }
        out
    }
}

/// `checks[N].depends_on`: every id names another check, and no check
/// depends on itself through any chain (the key of the first edge that
/// closes a cycle is named).
fn validate_depends_on(raw: &[RawCheck], p: &mut Problems) {
    let index: std::collections::HashMap<&str, usize> = raw
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    for (i, c) in raw.iter().enumerate() {
        for (j, dep) in c.depends_on.iter().enumerate() {
            let path = format!("checks[{i}].depends_on[{j}]");
            if dep == &c.id {
                p.push(path, format!("check {dep:?} cannot depend on itself"));
            } else if !index.contains_key(dep.as_str()) {
                p.push(
                    path,
                    format!("no check has id {dep:?}: name a check of this file"),
                );
            } else if reaches(raw, &index, dep, &c.id) {
                p.push(
                    path,
                    format!(
                        "depends_on cycle: {dep:?} depends (directly or not) on {:?}; remove one of the edges",
                        c.id
                    ),
                );
            }
        }
    }
}

/// Whether check `from` depends, through any chain, on `to`.
fn reaches(
    raw: &[RawCheck],
    index: &std::collections::HashMap<&str, usize>,
    from: &str,
    to: &str,
) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![from];
    while let Some(id) = stack.pop() {
        if id == to {
            return true;
        }
        if !seen.insert(id) {
            continue;
        }
        if let Some(&i) = index.get(id) {
            stack.extend(raw[i].depends_on.iter().map(String::as_str));
        }
    }
    false
}

fn validate_store(
    raw: &RawStore,
    vars: &[(String, String)],
    p: &mut Problems,
) -> crate::store::StoreSpec {
    use crate::store::{DEFAULT_POSTGRES_POOL, DEFAULT_SQLITE_POOL, Location, StoreSpec};
    if let Some(n) = raw.pool_size
        && !(1..=1000).contains(&n)
    {
        p.push(
            "store.pool_size",
            format!("pool_size must be between 1 and 1000, got {n}"),
        );
    }
    let location = match &raw.url {
        None => {
            if raw.ca_file.is_some() {
                p.push(
                    "store.ca_file",
                    "ca_file applies to PostgreSQL only: set store.url, or remove ca_file",
                );
            }
            Location::Sqlite {
                path: raw
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH)),
            }
        }
        Some(secret) => {
            if raw.path.is_some() {
                p.push(
                    "store.url",
                    "set either store.path (SQLite) or store.url (PostgreSQL), not both",
                );
            }
            let url = match resolve_secret(secret, vars) {
                Ok(url) => {
                    // The value is a secret: the message names its shape, never its text.
                    let scheme_ok = url.expose().starts_with("postgres://")
                        || url.expose().starts_with("postgresql://");
                    if !scheme_ok {
                        p.push(
                            "store.url",
                            "the secret is not a PostgreSQL URL: use postgres://user:password@host:5432/database",
                        );
                    }
                    url
                }
                Err(e) => {
                    p.push("store.url", e);
                    Secret::new("")
                }
            };
            if let Some(ca) = &raw.ca_file {
                match std::fs::read_to_string(ca) {
                    Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => {}
                    Ok(_) => p.push(
                        "store.ca_file",
                        format!("{} holds no PEM certificate", ca.display()),
                    ),
                    Err(e) => p.push(
                        "store.ca_file",
                        format!("cannot read {}: {e}", ca.display()),
                    ),
                }
            }
            Location::Postgres {
                url,
                ca_file: raw.ca_file.clone(),
            }
        }
    };
    let pool_size = raw.pool_size.unwrap_or(match location {
        Location::Sqlite { .. } => DEFAULT_SQLITE_POOL,
        Location::Postgres { .. } => DEFAULT_POSTGRES_POOL,
    });
    StoreSpec {
        location,
        pool_size,
    }
}

/// The exposure rules of the module docs: a non-loopback `http_listen`
/// needs TLS and credentials unless the config opts out by name.
fn check_exposure(
    http_listen: SocketAddr,
    https: bool,
    allow_insecure_http: bool,
    no_credentials: bool,
    allow_unauthenticated: bool,
    p: &mut Problems,
) {
    if http_listen.ip().is_loopback() {
        return;
    }
    if !https && !allow_insecure_http {
        p.push(
            "server.http_tls",
            format!(
                "server.http_listen = \"{http_listen}\" is not a loopback address and server.http_tls is not set: \
                 passwords, session cookies and API tokens would cross the network in clear. Set \
                 server.http_tls = {{ cert_file = \"…\", key_file = \"…\" }}, listen on 127.0.0.1 behind a TLS proxy, \
                 or set server.allow_insecure_http = true to accept that"
            ),
        );
    }
    if no_credentials && !allow_unauthenticated {
        p.push(
            "auth",
            format!(
                "server.http_listen = \"{http_listen}\" is not a loopback address and [auth] has no [[auth.users]] \
                 or [[auth.tokens]]: nobody could sign in. Add a user (`outpost-controller hash-password`) or a \
                 token (`outpost-controller generate-token`), or set server.allow_unauthenticated = true to serve \
                 every page and the API read-only to anyone who can connect"
            ),
        );
    }
}

fn validate_tls(t: &RawTls, at: &str, p: &mut Problems) -> TlsFiles {
    for (key, file) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
        match std::fs::read_to_string(file) {
            Ok(text) if text.contains("-----BEGIN ") => {}
            Ok(_) => p.push(
                format!("{at}.{key}"),
                format!("{} is not a PEM file", file.display()),
            ),
            Err(e) => p.push(
                format!("{at}.{key}"),
                format!("cannot read {}: {e}", file.display()),
            ),
        }
    }
    TlsFiles {
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
    }
}

/// Pushes a problem at `path` unless `url` is an absolute http(s) URL.
pub(crate) fn validate_url(url: &str, path: String, p: &mut Problems) {
    let ok = url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !ok {
        p.push(
            path,
            format!("invalid url {url:?}: use an absolute http:// or https:// URL"),
        );
    }
}

fn check_regions(
    raw: &RawCheck,
    regions: &BTreeSet<String>,
    path: &str,
    p: &mut Problems,
) -> Vec<String> {
    let Some(listed) = &raw.regions else {
        return regions.iter().cloned().collect();
    };
    if listed.is_empty() {
        p.push(
            format!("{path}.regions"),
            "regions is empty: list at least one region, or remove it to use every region",
        );
    }
    let mut out = Vec::new();
    for (j, r) in listed.iter().enumerate() {
        if !regions.contains(r) {
            let known: Vec<&str> = regions.iter().map(String::as_str).collect();
            p.push(
                format!("{path}.regions[{j}]"),
                format!(
                    "no probe runs in region {r:?}; regions with a probe: {}",
                    known.join(", ")
                ),
            );
        } else if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out.sort();
    out
}

fn policy(
    raw: &RawCheck,
    assigned: usize,
    routes: &[RouteDef],
    path: &str,
    p: &mut Problems,
) -> AlertPolicy {
    let a = raw.alert.clone().unwrap_or_default();
    let assigned = u32::try_from(assigned).unwrap_or(u32::MAX);
    let min_regions = a.min_regions.unwrap_or_else(|| 2.min(assigned.max(1)));
    if a.min_regions.is_some() && min_regions > assigned && assigned > 0 {
        p.push(
            format!("{path}.alert.min_regions"),
            format!("min_regions = {min_regions} but only {assigned} region(s) run this check: the check could never alert"),
        );
    }
    let names = a.routes.clone().unwrap_or_default();
    for (j, r) in names.iter().enumerate() {
        if !routes.iter().any(|d| &d.name == r) {
            let known: Vec<&str> = routes.iter().map(|d| d.name.as_str()).collect();
            p.push(
                format!("{path}.alert.routes[{j}]"),
                format!("unknown route {r:?}; known routes: {}", known.join(", ")),
            );
        }
    }
    // A heartbeat's deadline already includes its grace: one missed
    // deadline or one /fail is the failure, one good ping the recovery.
    let runs = if raw.heartbeat.is_some() { 1 } else { 2 };
    let interval = raw
        .interval
        .map_or(outpost_probe::check::DEFAULT_INTERVAL, Dur::get);
    let retry_interval = match a.retry_interval.as_deref() {
        _ if raw.heartbeat.is_some() => None,
        None => Some(interval.min(DEFAULT_RETRY_INTERVAL)),
        Some("off") => None,
        Some(text) => match outpost_probe::config::duration::parse_duration(text) {
            Ok(d) if d >= Duration::from_secs(1) => Some(d),
            _ => {
                p.push(
                    format!("{path}.alert.retry_interval"),
                    format!("retry_interval must be a duration ≥ 1s (e.g. \"10s\") or \"off\", got {text:?}"),
                );
                None
            }
        },
    };
    AlertPolicy {
        retry_interval,
        confirm_from_other_regions: a.confirm_from_other_regions.unwrap_or(false),
        min_regions,
        confirmations: a.confirmations.unwrap_or(runs),
        recoveries: a.recoveries.unwrap_or(runs),
        // check::validate_all reports an unknown word at this key already.
        severity: a
            .severity
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_CHECK_SEVERITY),
        routes: names,
        enabled: a.enabled.unwrap_or(true),
        flap_changes: a.flap_changes.unwrap_or(DEFAULT_FLAP_CHANGES),
        flap_window: a
            .flap_window
            .map(outpost_probe::config::Dur::get)
            .unwrap_or(DEFAULT_FLAP_WINDOW),
    }
}

/// Parses and validates config text. `vars` plays the environment: allowed
/// `OUTPOST_*` overrides, unknown `OUTPOST_*` names (an error) and secrets
/// named by `{ env = … }` (looked up here first, then in the process environment).
pub fn parse(
    text: &str,
    source: &str,
    vars: &[(String, String)],
) -> Result<ControllerConfig, ConfigError> {
    parse_with(text, source, vars, &[])
}

/// [`parse`], then `sets` (`--set key=value`) applied after the environment.
pub fn parse_with(
    text: &str,
    source: &str,
    vars: &[(String, String)],
    sets: &[String],
) -> Result<ControllerConfig, ConfigError> {
    let raw: RawControllerFile = load::load_str_with(text, source, ENV, vars, sets)?;
    let mut config = raw.validate(source, vars)?;
    config.overrides = sets.to_vec();
    Ok(config)
}

/// Reads, overrides from the process environment, and validates a config file.
pub fn load(path: &Path) -> Result<ControllerConfig, ConfigError> {
    load_with(path, &[])
}

/// [`load`] with `--set key=value` overrides: file < environment < command line.
pub fn load_with(path: &Path, sets: &[String]) -> Result<ControllerConfig, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(&source, "(file)", format!("cannot read {source}: {e}")))?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let mut config = parse_with(&text, &source, &vars, sets)?;
    config.path = Some(path.to_path_buf());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
allow_plaintext_probes = true

[store]
path = "/tmp/x.db"

[[probes]]
name = "eu-west-1"
region = "eu-west"
token = { env = "T_EU" }

[[probes]]
name = "us-east-1"
region = "us-east"
token = { env = "T_US" }

[[checks]]
id = "api-health"
interval = "30s"
http = { url = "https://api.example.net/health" }

[[checks]]
id = "eu-only"
regions = ["eu-west"]
http = { url = "http://example.net/" }
alert = { routes = ["oncall"] }

[[sinks]]
name = "pagerduty"
pagerduty = { routing_key = { env = "PD_KEY" }, api_url = "http://127.0.0.1:9/" }

[[sinks]]
name = "log"
console = {}

[[routes]]
name = "oncall"
sinks = ["pagerduty", "log"]
"#;

    fn vars() -> Vec<(String, String)> {
        [
            ("T_EU", "tok-eu-0123456789abcdef0123456789abcdef"),
            ("T_US", "tok-us-0123456789abcdef0123456789abcdef"),
            ("PD_KEY", "pdkey"),
            (
                "PG_URL",
                "postgres://outpost:s3cret@db.example.net:5432/outpost",
            ),
            ("SHORT_TOKEN", "hunter2"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
    }

    /// Check credentials are not needed on the controller: an unset
    /// variable, a missing file and a systemd credential all validate by
    /// shape, and the assignment carries the references, never a value.
    #[test]
    fn check_secrets_are_shipped_as_references_never_resolved() {
        let text = format!(
            "{GOOD}\n[[checks]]\nid = \"private\"\nregions = [\"eu-west\"]\n\
             http = {{ url = \"https://api.example.net/\", basic_auth = {{ username = \"u\", password = {{ env = \"ONLY_ON_THE_PROBE\" }} }} }}\n\
             [[checks]]\nid = \"private2\"\nregions = [\"eu-west\"]\n\
             http = {{ url = \"https://api.example.net/\", bearer_token = {{ credential = \"api.token\" }} }}\n"
        );
        let text = text.replace("alert = { routes = [\"oncall\"] }", "");
        let c = parse(&text, "c.toml", &vars()).unwrap();
        let a = crate::ingest::assignment(&c, "eu-west");
        let spec = |id: &str| {
            let c = a.checks.iter().find(|c| c.id == id).unwrap();
            c.spec_json.clone()
        };
        let basic = spec("private");
        assert!(basic.contains(r#"{"env":"ONLY_ON_THE_PROBE"}"#), "{basic}");
        let bearer = spec("private2");
        assert!(bearer.contains(r#"{"credential":"api.token"}"#), "{bearer}");
        // A malformed reference is still refused, by its key.
        let bad = text.replace(
            "{ credential = \"api.token\" }",
            "{ credential = \"../x\" }",
        );
        let err = parse(&bad, "c.toml", &vars()).unwrap_err();
        assert!(err.has_path("checks[3].http.bearer_token"), "{err}");
    }

    #[test]
    fn history_retention_takes_durations_and_forever() {
        let text = format!(
            "{GOOD}\n[store.history]\nraw = \"2d\"\nminute = \"forever\"\nhour = \"90d\"\nday = \"3650d\"\n"
        );
        let c = parse(&text, "c.toml", &vars()).unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(c.retention, 2 * day);
        assert_eq!(
            c.history,
            crate::history::HistoryRetention {
                raw: 2 * day,
                minute: None,
                hour: Some(90 * day),
                day: Some(3650 * day),
            }
        );
        // The older key alone still sets raw retention.
        let old = GOOD.replacen("[store]\n", "[store]\nretention = \"3d\"\n", 1);
        let c = parse(&old, "c.toml", &vars()).unwrap();
        assert_eq!(c.history.raw, 3 * day);
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD, "c.toml", &vars()).unwrap();
        assert_eq!(c.probes.len(), 2);
        assert_eq!(c.regions(), vec!["eu-west", "us-east"]);
        let api = c.check("api-health").unwrap();
        assert_eq!(api.regions, vec!["eu-west", "us-east"]);
        assert_eq!(api.policy.min_regions, 2);
        assert_eq!(api.policy.confirmations, 2);
        let eu = c.check("eu-only").unwrap();
        assert_eq!(eu.policy.min_regions, 1);
        assert_eq!(c.sinks_for_check(eu), vec!["pagerduty", "log"]);
        assert_eq!(c.retention, DEFAULT_RETENTION);
        assert_eq!(c.history, crate::history::HistoryRetention::default());
        match &c.sink("pagerduty").unwrap().kind {
            SinkKind::PagerDuty {
                api_url,
                routing_key,
                events_per_minute,
            } => {
                assert_eq!(api_url, "http://127.0.0.1:9");
                assert_eq!(routing_key.expose(), "pdkey");
                assert_eq!(*events_per_minute, DEFAULT_EVENTS_PER_MINUTE);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn allowed_env_overrides_listen_and_store() {
        let mut v = vars();
        v.push(("OUTPOST_HTTP_LISTEN".into(), "127.0.0.1:18080".into()));
        v.push(("OUTPOST_STORE_PATH".into(), "/tmp/other.db".into()));
        v.push(("OUTPOST_LOG".into(), "debug".into()));
        let c = parse(GOOD, "c.toml", &v).unwrap();
        assert_eq!(c.http_listen.port(), 18080);
        assert_eq!(c.store, crate::store::StoreSpec::sqlite("/tmp/other.db"));
    }

    /// Each bad snippet must produce a problem at exactly this path.
    #[cfg(unix)]
    #[test]
    fn a_probe_ca_key_readable_by_others_is_refused_and_makes_tokens_optional() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::identity::init_ca(dir.path(), time::OffsetDateTime::now_utc()).unwrap();
        let text = format!(
            "[server]\ntls = {{ cert_file = {cert:?}, key_file = {key:?} }}\n\
             probe_ca = {{ cert_file = {cert:?}, key_file = {key:?} }}\n\
             [[probes]]\nname = \"a\"\nregion = \"r\"\n",
            cert = ca.cert_file.display().to_string(),
            key = ca.key_file.display().to_string(),
        );
        let cfg = parse(&text, "c.toml", &vars()).unwrap();
        assert!(cfg.probe("a").unwrap().token.is_none());
        assert_eq!(cfg.probe_cert_validity, crate::identity::DEFAULT_VALIDITY);
        std::fs::set_permissions(&ca.key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = parse(&text, "c.toml", &vars()).unwrap_err();
        assert!(err.has_path("server.probe_ca.key_file"), "{err}");
        assert_eq!(ConfigError::EXIT_CODE, 78);
    }

    #[test]
    fn bad_configs_name_the_offending_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "misspelled routing key",
                "[[sinks]]\nname = \"pagerduty\"\npagerduty = { routing_kye = { env = \"PD_KEY\" } }\n",
                "sinks[0].pagerduty.routing_kye",
            ),
            ("unknown top-level table", "[servr]\n", "servr"),
            (
                "unknown server key",
                "[server]\ngrpc_listn = \"x\"\n",
                "server.grpc_listn",
            ),
            (
                "bad listen address",
                "[server]\nhttp_listen = \"localhost\"\n",
                "server.http_listen",
            ),
            (
                "retention without unit",
                "[store]\nretention = 7\n",
                "store.retention",
            ),
            (
                "store with path and url",
                "[store]\npath = \"/tmp/x.db\"\nurl = { env = \"PG_URL\" }\n",
                "store.url",
            ),
            (
                "literal store url",
                "[store]\nurl = \"postgres://u:p@h/db\"\n",
                "store.url",
            ),
            (
                "store url that is not postgres",
                "[store]\nurl = { env = \"T_EU\" }\n",
                "store.url",
            ),
            (
                "unset store url variable",
                "[store]\nurl = { env = \"NOPE_NOT_SET\" }\n",
                "store.url",
            ),
            (
                "ca_file without url",
                "[store]\nca_file = \"/etc/ssl/certs/ca-certificates.crt\"\n",
                "store.ca_file",
            ),
            (
                "unreadable ca_file",
                "[store]\nurl = { env = \"PG_URL\" }\nca_file = \"/nonexistent/ca.pem\"\n",
                "store.ca_file",
            ),
            ("zero pool", "[store]\npool_size = 0\n", "store.pool_size"),
            (
                "store key typo",
                "[store]\npool_sise = 4\n",
                "store.pool_sise",
            ),
            (
                "evaluator lease too short",
                "[alerting]\nevaluator_lease = \"100ms\"\n",
                "alerting.evaluator_lease",
            ),
            (
                "retention too short",
                "[store]\nretention = \"1s\"\n",
                "store.retention",
            ),
            (
                "retention twice",
                "[store]\nretention = \"7d\"\n[store.history]\nraw = \"7d\"\n",
                "store.history.raw",
            ),
            (
                "raw results forever",
                "[store.history]\nraw = \"forever\"\n",
                "store.history.raw",
            ),
            (
                "minute rollups too short",
                "[store.history]\nminute = \"10s\"\n",
                "store.history.minute",
            ),
            (
                "hour rollups without unit",
                "[store.history]\nhour = \"400\"\n",
                "store.history.hour",
            ),
            (
                "history key typo",
                "[store.history]\nweek = \"1d\"\n",
                "store.history.week",
            ),
            (
                "probe without token",
                "[[probes]]\nname = \"a\"\nregion = \"r\"\n",
                "probes[0].token",
            ),
            (
                "probe certificates valid too briefly",
                "[server]\nprobe_cert_validity = \"10m\"\n",
                "server.probe_cert_validity",
            ),
            (
                "unset token variable",
                "[[probes]]\nname = \"a\"\nregion = \"r\"\ntoken = { env = \"NOPE_NOT_SET\" }\n",
                "probes[0].token",
            ),
            (
                "literal token",
                "[[probes]]\nname = \"a\"\nregion = \"r\"\ntoken = \"hunter2\"\n",
                "probes[0].token",
            ),
            (
                "duplicate probe",
                "[[probes]]\nname = \"a\"\nregion = \"r\"\ntoken = { env = \"T_EU\" }\n[[probes]]\nname = \"a\"\nregion = \"r\"\ntoken = { env = \"T_US\" }\n",
                "probes[1].name",
            ),
            (
                "shared token",
                "[[probes]]\nname = \"a\"\nregion = \"r\"\ntoken = { env = \"T_EU\" }\n[[probes]]\nname = \"b\"\nregion = \"r\"\ntoken = { env = \"T_EU\" }\n",
                "probes[1].token",
            ),
            (
                "region without probe",
                "[[probes]]\nname = \"a\"\nregion = \"eu\"\ntoken = { env = \"T_EU\" }\n[[checks]]\nid = \"c\"\nregions = [\"us\"]\nhttp = { url = \"http://x/\" }\n",
                "checks[0].regions[0]",
            ),
            (
                "check key typo",
                "[[checks]]\nid = \"c\"\nintervl = \"1s\"\nhttp = { url = \"http://x/\" }\n",
                "checks[0].intervl",
            ),
            (
                "bad check url",
                "[[checks]]\nid = \"c\"\nhttp = { url = \"ftp://x/\" }\n",
                "checks[0].http.url",
            ),
            (
                "unknown alert route",
                "[[checks]]\nid = \"c\"\nhttp = { url = \"http://x/\" }\nalert = { routes = [\"nobody\"] }\n",
                "checks[0].alert.routes[0]",
            ),
            (
                "route to unknown sink",
                "[[routes]]\nname = \"r\"\nsinks = [\"pd\"]\n",
                "routes[0].sinks[0]",
            ),
            (
                "route to unknown check",
                "[[sinks]]\nname = \"log\"\nconsole = {}\n[[routes]]\nname = \"r\"\nsinks = [\"log\"]\nchecks = [\"nope\"]\n",
                "routes[0].checks[0]",
            ),
            (
                "sink with two kinds",
                "[[sinks]]\nname = \"s\"\nconsole = {}\nwebhook = { url = \"http://x/\" }\n",
                "sinks[0]",
            ),
            ("sink with no kind", "[[sinks]]\nname = \"s\"\n", "sinks[0]"),
            (
                "console with settings",
                "[[sinks]]\nname = \"s\"\nconsole = { level = \"warn\" }\n",
                "sinks[0].console.level",
            ),
            (
                "bad webhook url",
                "[[sinks]]\nname = \"s\"\nwebhook = { url = \"not a url\" }\n",
                "sinks[0].webhook.url",
            ),
            (
                "bad pagerduty url",
                "[[sinks]]\nname = \"s\"\npagerduty = { routing_key = { env = \"PD_KEY\" }, api_url = \"events\" }\n",
                "sinks[0].pagerduty.api_url",
            ),
            (
                "missing tls key file",
                "[server]\ntls = { cert_file = \"/nonexistent/c.pem\", key_file = \"/nonexistent/k.pem\" }\n",
                "server.tls.key_file",
            ),
            (
                "offline_after typo",
                "[alerting]\noffline_afer = \"60s\"\n",
                "alerting.offline_afer",
            ),
            (
                "unknown offline severity",
                "[alerting]\noffline_severity = \"fatal\"\n",
                "alerting.offline_severity",
            ),
            (
                "give_up_after too short",
                "[[sinks]]\nname = \"s\"\nconsole = {}\ngive_up_after = \"10s\"\n",
                "sinks[0].give_up_after",
            ),
            (
                "zero events per minute",
                "[[sinks]]\nname = \"s\"\npagerduty = { routing_key = { env = \"PD_KEY\" }, events_per_minute = 0 }\n",
                "sinks[0].pagerduty.events_per_minute",
            ),
            (
                "unknown route kind",
                "[[sinks]]\nname = \"log\"\nconsole = {}\n[[routes]]\nname = \"r\"\nsinks = [\"log\"]\nkinds = [\"probe_down\"]\n",
                "routes[0].kinds[0]",
            ),
            ("no tls and no plaintext opt-in", "[server]\n", "server.tls"),
            (
                "short probe token",
                "[[probes]]\nname = \"a\"\nregion = \"r\"\ntoken = { env = \"SHORT_TOKEN\" }\n",
                "probes[0].token",
            ),
            (
                "burst below batch size",
                "[server.probe_limits]\nresults_burst = 10\n",
                "server.probe_limits.results_burst",
            ),
            (
                "tiny message size",
                "[server.probe_limits]\nmax_message_size = \"1KiB\"\n",
                "server.probe_limits.max_message_size",
            ),
            (
                "dependency on an unknown check",
                "[[checks]]\nid = \"a\"\nhttp = { url = \"https://a.example\" }\ndepends_on = [\"nope\"]\n",
                "checks[0].depends_on[0]",
            ),
            (
                "dependency cycle",
                "[[checks]]\nid = \"a\"\nhttp = { url = \"https://a.example\" }\ndepends_on = [\"b\"]\n\
                 [[checks]]\nid = \"b\"\nhttp = { url = \"https://b.example\" }\ndepends_on = [\"c\"]\n\
                 [[checks]]\nid = \"c\"\nhttp = { url = \"https://c.example\" }\ndepends_on = [\"a\"]\n",
                "checks[2].depends_on[0]",
            ),
            (
                "silence without an end",
                "[[silences]]\ncomment = \"x\"\nends_at = \"soon\"\n",
                "silences[0].ends_at",
            ),
            (
                "maintenance in an unknown zone",
                "[[maintenance]]\nname = \"w\"\nschedule = \"0 2 * * *\"\nduration = \"1h\"\ntz = \"Nowhere/City\"\n",
                "maintenance[0].tz",
            ),
            (
                "traceparent is a probe setting",
                "[telemetry]\nsampling = \"always\"\ntraceparent = true\n",
                "telemetry.traceparent",
            ),
            (
                "unknown sampling",
                "[telemetry]\nsampling = \"most\"\n",
                "telemetry.sampling",
            ),
        ];
        for (name, text, path) in cases {
            let err = parse(text, "c.toml", &vars()).expect_err(name);
            assert!(
                err.has_path(path),
                "{name}: expected a problem at {path}, got:\n{err}"
            );
            assert_eq!(ConfigError::EXIT_CODE, 78);
        }
    }

    #[test]
    fn a_postgres_store_takes_its_url_from_a_secret_and_never_shows_it() {
        let text = "[server]\nallow_plaintext_probes = true\n[store]\nurl = { env = \"PG_URL\" }\npool_size = 20\n[alerting]\nevaluator_lease = \"3s\"\n";
        let c = parse(text, "c.toml", &vars()).unwrap();
        assert_eq!(c.store.pool_size, 20);
        assert_eq!(c.evaluator_lease, Duration::from_secs(3));
        let crate::store::Location::Postgres { url, ca_file } = &c.store.location else {
            panic!("{:?}", c.store);
        };
        assert_eq!(
            url.expose(),
            "postgres://outpost:s3cret@db.example.net:5432/outpost"
        );
        assert_eq!(ca_file, &None);
        for shown in [format!("{c:?}"), c.store.location.describe()] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("outpost:"),
                "{shown}"
            );
        }
        assert_eq!(
            c.store.location.describe(),
            "postgres db.example.net:5432/outpost"
        );
        // The default stays SQLite, with its own pool size.
        let c = parse(
            "[server]\nallow_plaintext_probes = true\n",
            "c.toml",
            &vars(),
        )
        .unwrap();
        assert_eq!(c.store, crate::store::StoreSpec::sqlite(DEFAULT_STORE_PATH));
        assert_eq!(c.evaluator_lease, DEFAULT_EVALUATOR_LEASE);
    }

    #[test]
    fn unknown_outpost_variable_is_an_error() {
        let mut v = vars();
        v.push(("OUTPOST_HTTP_LISTN".into(), "127.0.0.1:1".into()));
        let err = parse(GOOD, "c.toml", &v).unwrap_err();
        assert!(err.has_path("OUTPOST_HTTP_LISTN"), "{err}");
    }

    #[test]
    fn env_override_with_bad_value_names_the_variable() {
        let mut v = vars();
        v.push(("OUTPOST_GRPC_LISTEN".into(), "nope".into()));
        let err = parse(GOOD, "c.toml", &v).unwrap_err();
        assert!(err.has_path("server.grpc_listen"), "{err}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = "[server]\nhttp_listen = \"x\"\ngrpc_listen = \"y\"\n[[routes]]\nname = \"r\"\nsinks = [\"a\", \"b\"]\n";
        let err = parse(text, "c.toml", &vars()).unwrap_err();
        assert!(err.problems.len() >= 4, "{err}");
    }

    #[test]
    fn globs_match() {
        assert!(route::glob_match("*", "anything"));
        assert!(route::glob_match("api-*", "api-health"));
        assert!(route::glob_match("*-health", "api-health"));
        assert!(route::glob_match("a*c*e", "abcde"));
        assert!(!route::glob_match("api-*", "web"));
        assert!(!route::glob_match("a*a", "a"));
        assert!(route::glob_match("exact", "exact"));
    }
}
