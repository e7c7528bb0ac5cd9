//! The controller's config file (`controller.toml`).
//!
//! Strict like every Outpost config: each struct denies unknown keys, only
//! the variables in [`ENV`] may override the file, and [`RawControllerFile::validate`]
//! collects *every* problem with its key path before failing. The loading
//! machinery, [`Secret`] and [`Dur`] come from `outpost_probe::config` so the
//! probe and the controller report problems the same way.
//!
//! ```toml
//! [server]
//! grpc_listen = "0.0.0.0:7443"
//! http_listen = "0.0.0.0:8080"
//! tls = { cert_file = "/etc/outpost/controller.pem", key_file = "/etc/outpost/controller.key" }
//!
//! [store]
//! path = "/var/lib/outpost/outpost.db"
//! retention = "7d"
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

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use outpost_probe::{
    check::{self, CheckSpec, RawCheck},
    config::{ConfigError, Dur, EnvOverride, Problems, RawSecret, Secret, load},
};
use serde::Deserialize;

use crate::alerting::{Action, AlertKind, Kind, Severity};

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

/// Default gRPC listen address.
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:7443";
/// Default HTTP listen address.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8080";
/// Default store path.
pub const DEFAULT_STORE_PATH: &str = "./outpost.db";
/// Default result retention.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Default silence after which a probe counts as offline.
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(60);
/// Default PagerDuty Events API base URL.
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com";
/// Default give-up horizon of a sink: a notification still undelivered this
/// long after its first attempt is marked failed.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(3600);
/// Resolves are retried at least this long, whatever `give_up_after` says:
/// a lost resolve leaves an incident open at 3 a.m.
pub const MIN_RESOLVE_GIVE_UP: Duration = Duration::from_secs(15 * 60);
/// Default PagerDuty events per minute per routing key (PagerDuty's documented limit).
pub const DEFAULT_EVENTS_PER_MINUTE: u32 = 120;
/// Default severity of a `probe_offline` alert.
pub const DEFAULT_OFFLINE_SEVERITY: Severity = Severity::Error;
/// Default severity of a check's alert.
pub const DEFAULT_CHECK_SEVERITY: Severity = Severity::Critical;

/// `controller.toml` as written.
#[derive(Debug, Clone, Deserialize)]
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
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address for the probe gRPC stream, `host:port`. Default
    /// `"0.0.0.0:7443"`; port 0 picks a free port. Env: `OUTPOST_GRPC_LISTEN`.
    #[serde(default)]
    pub grpc_listen: Option<String>,
    /// Address for the dashboard, JSON API, `/metrics`, `/livez` and
    /// `/readyz`, `host:port`. Default `"0.0.0.0:8080"`. Env: `OUTPOST_HTTP_LISTEN`.
    #[serde(default)]
    pub http_listen: Option<String>,
    /// TLS for the gRPC listener. Without it the probe stream is plaintext
    /// (probe tokens travel in clear) and a warning is logged at start.
    /// Example: `tls = { cert_file = "/etc/outpost/controller.pem", key_file = "/etc/outpost/controller.key" }`.
    #[serde(default)]
    pub tls: Option<RawTls>,
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the server certificate followed by its intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// SQLite database file, created if missing. Default `"./outpost.db"`.
    /// Env: `OUTPOST_STORE_PATH`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Results older than this are pruned (hourly). Alerts and the
    /// notification log are kept. Default `"7d"`, minimum `"1m"`.
    #[serde(default)]
    pub retention: Option<Dur>,
}

/// `[[probes]]`: a probe allowed to connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbeEntry {
    /// Unique probe name; the probe sends it in its hello. Example `"eu-west-1"`.
    pub name: String,
    /// Region the probe runs in; checks name regions, not probes. Example `"eu-west"`.
    pub region: String,
    /// The probe's bearer token, unique per probe: `{ env = "NAME" }` or
    /// `{ file = "/path" }`, never a literal.
    pub token: RawSecret,
}

/// `[[sinks]]`: one notification destination. Exactly one of `pagerduty`,
/// `webhook` or `console`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// Unique sink name used by `[[routes]]`. Example `"pagerduty"`.
    pub name: String,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty: Option<RawPagerDuty>,
    /// Generic JSON webhook.
    #[serde(default)]
    pub webhook: Option<RawWebhook>,
    /// One log line per notification (`console = {}`).
    #[serde(default)]
    pub console: Option<RawConsole>,
    /// How long an undeliverable notification is retried (429, 5xx, timeouts,
    /// connection errors) counted from its first attempt before it is marked
    /// failed. Default `"1h"`, minimum `"1m"`. Resolves are retried at least
    /// `"15m"` even when this is shorter.
    #[serde(default)]
    pub give_up_after: Option<Dur>,
}

/// `[sinks.pagerduty]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    /// Integration (routing) key of the PagerDuty service:
    /// `{ env = "PD_ROUTING_KEY" }` or `{ file = "/path" }`.
    pub routing_key: RawSecret,
    /// Base URL of the Events API; events are POSTed to `{api_url}/v2/enqueue`.
    /// Default `"https://events.pagerduty.com"`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Events sent per minute per routing key at most (a token bucket shared
    /// by every sink with the same key: bursts of a quarter of this, never
    /// more than this in any minute). Excess events wait in the outbox; none
    /// is dropped. Default `120` (PagerDuty's limit), minimum `1`.
    #[serde(default)]
    pub events_per_minute: Option<u32>,
}

/// `[sinks.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// `http://` or `https://` URL that receives a JSON POST per notification:
    /// `{event, dedup_key, check_id, summary, severity, regions, at}`.
    pub url: String,
    /// Extra request headers that are not secret, e.g. `{ "x-team" = "sre" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request headers whose values are secrets, e.g.
    /// `{ authorization = { env = "HOOK_AUTH" } }`.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, RawSecret>,
}

/// `[sinks.console]`: no settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {}

/// `[[routes]]`: which checks notify which sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique route name; a check's `alert.routes` may name it. Example `"oncall"`.
    pub name: String,
    /// Names of `[[sinks]]` this route notifies. At least one.
    pub sinks: Vec<String>,
    /// Check ids or globs with `*` (`"api-*"`). Default `["*"]`. Used for checks
    /// without `alert.routes`; a check with `alert.routes` uses exactly those.
    /// Filters `check_failing` alerts only.
    #[serde(default)]
    pub checks: Option<Vec<String>>,
    /// Alert kinds this route carries: `"check_failing"` (a check failing from
    /// `min_regions` regions), `"probe_offline"` (a probe silent for
    /// `alerting.offline_after`, one alert per probe) and/or
    /// `"certificate_expiring"` (a served certificate within
    /// `alerting.certificates.thresholds` of expiry, one alert per
    /// certificate whichever checks see it). Default: all three. Also
    /// `"dns_change"`, only when listed: an info notification per DNS answer
    /// change (webhook `event: "info"`, a console line, a PagerDuty change
    /// event — never an incident).
    /// Example: `kinds = ["probe_offline"]` for a fleet-operations route.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
}

/// `[alerting]`.
#[derive(Debug, Clone, Deserialize)]
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
    /// Severity of `probe_offline` alerts: `"critical"`, `"error"`,
    /// `"warning"` or `"info"`. Default `"error"`.
    #[serde(default)]
    pub offline_severity: Option<String>,
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
    /// gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// gRPC TLS files.
    pub tls: Option<TlsFiles>,
    /// SQLite file.
    pub store_path: PathBuf,
    /// Result retention.
    pub retention: Duration,
    /// Probes.
    pub probes: Vec<ProbeDef>,
    /// Checks.
    pub checks: Vec<CheckDef>,
    /// Sinks.
    pub sinks: Vec<SinkDef>,
    /// Routes.
    pub routes: Vec<RouteDef>,
    /// Silence after which a probe is offline.
    pub offline_after: Duration,
    /// Severity of `probe_offline` alerts.
    pub offline_severity: Severity,
    /// When certificates page.
    pub certificates: certificate::CertificatePolicy,
}

/// TLS files for the gRPC listener.
#[derive(Debug, Clone)]
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
    /// Bearer token.
    pub token: Secret,
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
}

/// A validated sink.
#[derive(Debug, Clone)]
pub struct SinkDef {
    /// Name.
    pub name: String,
    /// Kind and settings.
    pub kind: SinkKind,
    /// Retry horizon for triggers, from the first attempt.
    pub give_up_after: Duration,
}

impl SinkDef {
    /// Retry horizon for a notification of `action` (resolves: at least
    /// [`MIN_RESOLVE_GIVE_UP`]).
    pub fn give_up_after(&self, action: Action) -> Duration {
        if action == Action::Resolve {
            self.give_up_after.max(MIN_RESOLVE_GIVE_UP)
        } else {
            self.give_up_after
        }
    }
}

/// Sink kinds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SinkKind {
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Routing key.
        routing_key: Secret,
        /// Base URL without the `/v2/enqueue` path.
        api_url: String,
        /// Rate limit per routing key.
        events_per_minute: u32,
    },
    /// JSON webhook.
    Webhook {
        /// URL.
        url: String,
        /// Headers (secret values already resolved).
        headers: Vec<(String, Secret)>,
    },
    /// Log line.
    Console,
}

impl SinkKind {
    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Console => "console",
        }
    }
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct RouteDef {
    /// Name.
    pub name: String,
    /// Sink names.
    pub sinks: Vec<String>,
    /// Check id globs.
    pub checks: Vec<String>,
    /// Alert and event kinds carried.
    pub kinds: Vec<Kind>,
}

impl ControllerConfig {
    /// Every region that has a probe, sorted.
    pub fn regions(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.probes.iter().map(|p| p.region.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// The check with this id.
    pub fn check(&self, id: &str) -> Option<&CheckDef> {
        self.checks.iter().find(|c| c.raw.id == id)
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

    /// Sink names a firing check notifies (deduplicated, route order).
    pub fn sinks_for_check(&self, check: &CheckDef) -> Vec<String> {
        if !check.policy.enabled {
            return Vec::new();
        }
        let routes: Vec<&RouteDef> = if check
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
                .filter(|r| r.checks.iter().any(|g| glob_match(g, &check.raw.id)))
                .collect()
        };
        sinks_of(&routes)
    }

    /// Sink names a fleet-level alert or an event of `kind` (e.g.
    /// `probe_offline`) notifies: every route whose `kinds` include it.
    pub fn sinks_for_kind(&self, kind: Kind) -> Vec<String> {
        let routes: Vec<&RouteDef> = self.routes.iter().filter(|r| r.carries(kind)).collect();
        sinks_of(&routes)
    }
}

impl RouteDef {
    /// True when this route carries alerts or events of `kind`.
    pub fn carries(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

fn sinks_of(routes: &[&RouteDef]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in routes.iter().flat_map(|r| r.sinks.iter()) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Matches `text` against a pattern where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Resolves a secret, looking `{ env = … }` names up in `vars` first (so a
/// config parsed from text with explicit variables is self-contained), then
/// in the process environment.
fn resolve_secret(raw: &RawSecret, vars: &[(String, String)]) -> Result<Secret, String> {
    if let (Some(name), None) = (&raw.env, &raw.file)
        && let Some((_, v)) = vars.iter().find(|(n, _)| n == name)
    {
        if v.trim().is_empty() {
            return Err(format!("environment variable {name} is empty"));
        }
        return Ok(Secret::new(v.trim()));
    }
    raw.resolve()
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

fn push_if_bad_id(p: &mut Problems, path: String, what: &str, value: &str) {
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
        let server = self.server.clone().unwrap_or(RawServer {
            grpc_listen: None,
            http_listen: None,
            tls: None,
        });
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
        let tls = server.tls.as_ref().map(|t| validate_tls(t, &mut p));
        let store = self.store.clone().unwrap_or(RawStore {
            path: None,
            retention: None,
        });
        let retention = store.retention.map(Dur::get).unwrap_or(DEFAULT_RETENTION);
        if retention < Duration::from_secs(60) {
            p.push(
                "store.retention",
                format!("retention must be ≥ 1m, got \"{}\"", Dur(retention)),
            );
        }
        let probes = self.validate_probes(vars, &mut p);
        let regions: BTreeSet<String> = probes.iter().map(|d| d.region.clone()).collect();
        let specs = check::validate_all(&self.checks, "checks", &mut p);
        let sinks = self.validate_sinks(vars, &mut p);
        let routes = self.validate_routes(&sinks, &mut p);
        let checks = self.validate_check_defs(specs, &regions, &routes, &mut p);
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
        p.finish(source)?;
        Ok(ControllerConfig {
            path: None,
            grpc_listen,
            http_listen,
            tls,
            store_path: store
                .path
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH)),
            retention,
            probes,
            checks,
            sinks,
            routes,
            offline_after,
            offline_severity,
            certificates,
        })
    }

    fn validate_probes(&self, vars: &[(String, String)], p: &mut Problems) -> Vec<ProbeDef> {
        let mut names = HashSet::new();
        let mut tokens: Vec<(Secret, usize)> = Vec::new();
        let mut out = Vec::new();
        for (i, raw) in self.probes.iter().enumerate() {
            let path = format!("probes[{i}]");
            push_if_bad_id(p, format!("{path}.name"), "probe name", &raw.name);
            push_if_bad_id(p, format!("{path}.region"), "region", &raw.region);
            if !names.insert(raw.name.as_str()) {
                p.push(
                    format!("{path}.name"),
                    format!("duplicate probe name {:?}", raw.name),
                );
            }
            match resolve_secret(&raw.token, vars) {
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
                    out.push(ProbeDef {
                        name: raw.name.clone(),
                        region: raw.region.clone(),
                        token,
                    });
                }
                Err(e) => p.push(format!("{path}.token"), e),
            }
        }
        out
    }

    fn validate_sinks(&self, vars: &[(String, String)], p: &mut Problems) -> Vec<SinkDef> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, raw) in self.sinks.iter().enumerate() {
            let path = format!("sinks[{i}]");
            push_if_bad_id(p, format!("{path}.name"), "sink name", &raw.name);
            if !names.insert(raw.name.as_str()) {
                p.push(
                    format!("{path}.name"),
                    format!("duplicate sink name {:?}", raw.name),
                );
            }
            let count = [
                raw.pagerduty.is_some(),
                raw.webhook.is_some(),
                raw.console.is_some(),
            ]
            .iter()
            .filter(|k| **k)
            .count();
            if count != 1 {
                p.push(
                    path.clone(),
                    format!(
                        "a sink has exactly one of pagerduty, webhook or console, found {count}: e.g. `pagerduty = {{ routing_key = {{ env = \"PD_ROUTING_KEY\" }} }}`"
                    ),
                );
                continue;
            }
            let give_up_after = raw
                .give_up_after
                .map(Dur::get)
                .unwrap_or(DEFAULT_GIVE_UP_AFTER);
            if give_up_after < Duration::from_secs(60) {
                p.push(
                    format!("{path}.give_up_after"),
                    format!("give_up_after must be ≥ 1m, got \"{}\"", Dur(give_up_after)),
                );
            }
            if let Some(kind) = validate_sink_kind(raw, &path, vars, p) {
                out.push(SinkDef {
                    name: raw.name.clone(),
                    kind,
                    give_up_after,
                });
            }
        }
        out
    }

    fn validate_routes(&self, sinks: &[SinkDef], p: &mut Problems) -> Vec<RouteDef> {
        let mut names = HashSet::new();
        let check_ids: HashSet<&str> = self.checks.iter().map(|c| c.id.as_str()).collect();
        let mut out = Vec::new();
        for (i, raw) in self.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            push_if_bad_id(p, format!("{path}.name"), "route name", &raw.name);
            if !names.insert(raw.name.as_str()) {
                p.push(
                    format!("{path}.name"),
                    format!("duplicate route name {:?}", raw.name),
                );
            }
            if raw.sinks.is_empty() {
                p.push(
                    format!("{path}.sinks"),
                    "a route needs at least one sink, e.g. sinks = [\"pagerduty\"]",
                );
            }
            for (j, s) in raw.sinks.iter().enumerate() {
                let declared = self.sinks.iter().any(|d| &d.name == s);
                if !declared {
                    let known: Vec<&str> = sinks.iter().map(|d| d.name.as_str()).collect();
                    p.push(
                        format!("{path}.sinks[{j}]"),
                        format!("unknown sink {s:?}; known sinks: {}", known.join(", ")),
                    );
                }
            }
            let checks = raw.checks.clone().unwrap_or_else(|| vec!["*".to_owned()]);
            for (j, g) in checks.iter().enumerate() {
                if !g.contains('*') && !check_ids.contains(g.as_str()) {
                    p.push(
                        format!("{path}.checks[{j}]"),
                        format!("unknown check id {g:?}: name a [[checks]] id or use a glob such as \"api-*\""),
                    );
                }
            }
            let alert_kinds: Vec<Kind> = AlertKind::ALL.map(Kind::Alert).to_vec();
            let kinds = match &raw.kinds {
                None => alert_kinds.clone(),
                Some(listed) => {
                    if listed.is_empty() {
                        p.push(
                            format!("{path}.kinds"),
                            format!(
                                "kinds is empty: list at least one of {}, or remove it to carry every kind",
                                kind_names(&alert_kinds)
                            ),
                        );
                    }
                    let mut kinds = Vec::new();
                    for (j, k) in listed.iter().enumerate() {
                        match Kind::parse(k) {
                            Some(kind) => kinds.push(kind),
                            None => p.push(
                                format!("{path}.kinds[{j}]"),
                                format!(
                                    "unknown alert kind {k:?}; kinds: {}",
                                    kind_names(&Kind::ALL)
                                ),
                            ),
                        }
                    }
                    kinds
                }
            };
            out.push(RouteDef {
                name: raw.name.clone(),
                sinks: raw.sinks.clone(),
                checks,
                kinds,
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
        let mut out = Vec::new();
        for (i, raw) in self.checks.iter().enumerate() {
            let path = format!("checks[{i}]");
            let check_regions = check_regions(raw, regions, &path, p);
            let policy = policy(raw, check_regions.len(), routes, &path, p);
            // validate_all skipped invalid checks; match by id to pair them up.
            if let Some(spec) = specs.iter().find(|s| s.id == raw.id) {
                out.push(CheckDef {
                    raw: raw.clone(),
                    spec: spec.clone(),
                    regions: check_regions,
                    policy,
                });
            }
        }
        out
    }
}

fn validate_tls(t: &RawTls, p: &mut Problems) -> TlsFiles {
    for (key, file) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
        match std::fs::read_to_string(file) {
            Ok(text) if text.contains("-----BEGIN ") => {}
            Ok(_) => p.push(
                format!("server.tls.{key}"),
                format!("{} is not a PEM file", file.display()),
            ),
            Err(e) => p.push(
                format!("server.tls.{key}"),
                format!("cannot read {}: {e}", file.display()),
            ),
        }
    }
    TlsFiles {
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
    }
}

fn validate_url(url: &str, path: String, p: &mut Problems) {
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

fn validate_sink_kind(
    raw: &RawSink,
    path: &str,
    vars: &[(String, String)],
    p: &mut Problems,
) -> Option<SinkKind> {
    if let Some(pd) = &raw.pagerduty {
        let api_url = pd
            .api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_PAGERDUTY_URL.to_owned());
        validate_url(&api_url, format!("{path}.pagerduty.api_url"), p);
        let events_per_minute = pd.events_per_minute.unwrap_or(DEFAULT_EVENTS_PER_MINUTE);
        if events_per_minute == 0 {
            p.push(
                format!("{path}.pagerduty.events_per_minute"),
                "events_per_minute must be ≥ 1 (PagerDuty allows 120)",
            );
        }
        let routing_key = resolve_secret(&pd.routing_key, vars)
            .map_err(|e| p.push(format!("{path}.pagerduty.routing_key"), e))
            .ok()?;
        return Some(SinkKind::PagerDuty {
            routing_key,
            api_url: api_url.trim_end_matches('/').to_owned(),
            events_per_minute: events_per_minute.max(1),
        });
    }
    if let Some(w) = &raw.webhook {
        validate_url(&w.url, format!("{path}.webhook.url"), p);
        let mut headers = Vec::new();
        for (k, v) in &w.headers {
            check_header(k, v, format!("{path}.webhook.headers.{k}"), p);
            headers.push((k.clone(), Secret::new(v.clone())));
        }
        for (k, s) in &w.secret_headers {
            let hp = format!("{path}.webhook.secret_headers.{k}");
            match resolve_secret(s, vars) {
                Ok(v) => {
                    check_header(k, v.expose(), hp, p);
                    headers.push((k.clone(), v));
                }
                Err(e) => p.push(hp, e),
            }
        }
        return Some(SinkKind::Webhook {
            url: w.url.clone(),
            headers,
        });
    }
    Some(SinkKind::Console)
}

fn kind_names(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_header(name: &str, value: &str, path: String, p: &mut Problems) {
    let ok = http::HeaderName::try_from(name).is_ok() && http::HeaderValue::try_from(value).is_ok();
    if !ok {
        p.push(path, format!("invalid header {name:?} (or its value)"));
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
    AlertPolicy {
        min_regions,
        confirmations: a.confirmations.unwrap_or(2),
        recoveries: a.recoveries.unwrap_or(2),
        // check::validate_all reports an unknown word at this key already.
        severity: a
            .severity
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_CHECK_SEVERITY),
        routes: names,
        enabled: a.enabled.unwrap_or(true),
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
    let raw: RawControllerFile = load::load_str(text, source, ENV, vars)?;
    raw.validate(source, vars)
}

/// Reads, overrides from the process environment, and validates a config file.
pub fn load(path: &Path) -> Result<ControllerConfig, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(&source, "(file)", format!("cannot read {source}: {e}")))?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let mut config = parse(&text, &source, &vars)?;
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
        [("T_EU", "tok-eu"), ("T_US", "tok-us"), ("PD_KEY", "pdkey")]
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
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
        assert_eq!(c.store_path, PathBuf::from("/tmp/other.db"));
    }

    /// Each bad snippet must produce a problem at exactly this path.
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
                "retention too short",
                "[store]\nretention = \"1s\"\n",
                "store.retention",
            ),
            (
                "probe without token",
                "[[probes]]\nname = \"a\"\nregion = \"r\"\n",
                "probes[0]",
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
        assert!(glob_match("*", "anything"));
        assert!(glob_match("api-*", "api-health"));
        assert!(glob_match("*-health", "api-health"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("api-*", "web"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("exact", "exact"));
    }
}
