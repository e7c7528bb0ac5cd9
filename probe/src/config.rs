//! The probe's config file (`probe.toml`) and the config machinery shared
//! with the controller: strict loading with key paths ([`load`]), secrets
//! ([`secret`]) and durations ([`duration`]).
//!
//! ```toml
//! [probe]
//! name = "eu-west-1"
//! region = "eu-west"
//!
//! [controller]
//! url = "https://controller.example.net:7443"   # or several replicas:
//! # urls = ["https://c1.example.net:7443", "https://c2.example.net:7443"]
//! token = { env = "OUTPOST_PROBE_TOKEN" }
//! ca_file = "/etc/outpost/controller-ca.pem"
//!
//! [[checks]]   # optional: local checks for `once` and standalone `run`
//! id = "api"
//! http = { url = "https://api.example.net/health" }
//! ```

pub mod duration;
pub mod load;
pub mod schema;
pub mod secret;
pub mod size;
pub mod telemetry;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

pub use duration::Dur;
pub use load::{ConfigError, EnvOverride, Problem, Problems};
pub use secret::{RawSecret, Secret};
use serde::Deserialize;
pub use size::Size;

/// The shortest bearer token between a probe and the controller
/// (`controller.token` here, `probes[].token` on the controller).
pub const MIN_TOKEN_LEN: usize = 32;

/// Refuses a probe token shorter than [`MIN_TOKEN_LEN`]; the message names
/// the length, never the value.
pub fn check_token_length(token: &Secret) -> Result<(), String> {
    let n = token.expose().chars().count();
    if n < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {n} characters; use at least {MIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

use crate::check::{self, CheckSpec, RawCheck};

/// Environment variables the probe accepts. Any other `OUTPOST_*` is an error.
pub const ENV: &[EnvOverride] = &[
    EnvOverride {
        var: "OUTPOST_PROBE_NAME",
        key: "probe.name",
    },
    EnvOverride {
        var: "OUTPOST_PROBE_REGION",
        key: "probe.region",
    },
    EnvOverride {
        var: "OUTPOST_CONTROLLER_URL",
        key: "controller.url",
    },
    EnvOverride {
        var: "OUTPOST_LOG",
        key: "",
    },
];

/// `probe.toml` as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProbeFile {
    /// Who this probe is.
    #[serde(default)]
    pub probe: Option<RawProbe>,
    /// Where results go. Without it, `run` works standalone on local checks
    /// and prints each result as a JSON line.
    #[serde(default)]
    pub controller: Option<RawController>,
    /// Local checks, in the same schema as the controller's `[[checks]]`.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    /// Scheduling limits.
    #[serde(default)]
    pub scheduler: Option<RawScheduler>,
    /// The durable outbox of results waiting for the controller.
    #[serde(default)]
    pub outbox: Option<RawOutbox>,
    /// The probe's own Prometheus endpoint.
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// Opt-in blackbox_exporter-compatible `/probe?target=…&module=…`
    /// ([`crate::exporter`]): modules are check templates. Default: none.
    #[serde(default)]
    pub exporter: Option<crate::exporter::RawExporter>,
    /// OpenTelemetry traces of check runs over OTLP/gRPC
    /// ([`telemetry::RawTelemetry`]). Default: off.
    #[serde(default)]
    pub telemetry: Option<telemetry::RawTelemetry>,
}

/// `[probe]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Unique probe name; must match a `[[probes]]` entry on the controller.
    pub name: String,
    /// Region this probe runs in, e.g. `"eu-west"`.
    pub region: String,
    /// Free-form labels reported in the hello message.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `[controller]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    /// gRPC URL of the controller. `https://` runs the stream over TLS;
    /// `http://` only with `allow_plaintext = true`. One load-balanced name
    /// for several replicas works too. Set `url` or `urls`.
    #[serde(default)]
    pub url: Option<String>,
    /// Several controller replicas (sharing one PostgreSQL store), tried in
    /// order: when the stream to one ends or cannot be opened, the probe
    /// moves to the next at once and backs off only after every URL failed
    /// in a row. Unacknowledged results are resent to whichever replica
    /// answers; the shared store keeps each once. Set `url` or `urls`.
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// Per-probe token, sent as `authorization: Bearer …` when the probe
    /// has no client certificate. Optional with `enrollment_token` (or an
    /// identity already in `identity_dir`); set one of them.
    #[serde(default)]
    pub token: Option<RawSecret>,
    /// One-time token from `outpost-controller probe enroll NAME --region R`
    /// (`{ env = "…" }`, `{ file = "…" }` or `{ credential = "…" }`). When
    /// `identity_dir` holds no certificate yet, the probe makes a key, sends
    /// a CSR with this token once and stores the client certificate it gets;
    /// from then on it connects with mutual TLS and renews at half life. Needs
    /// `https://` URLs.
    #[serde(default)]
    pub enrollment_token: Option<RawSecret>,
    /// Where the client certificate and its key live (`identity.pem`,
    /// 0600, in a 0700 directory). Default `$STATE_DIRECTORY/identity` under
    /// systemd, else `./outpost-identity`.
    #[serde(default)]
    pub identity_dir: Option<PathBuf>,
    /// PEM bundle to verify the controller's certificate. Default: Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Permit an `http://` controller URL (the token then travels in clear;
    /// a warning is logged at start). Default false: an `http://` URL is
    /// refused (exit 78) and the token is never sent in clear.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Interval between heartbeats. Default `"10s"`.
    #[serde(default)]
    pub heartbeat_interval: Option<Dur>,
    /// On shutdown (SIGTERM), how long to wait for the controller to ack
    /// what was sent before exiting. Default `"5s"`; `"0s"` exits at once.
    #[serde(default)]
    pub drain_timeout: Option<Dur>,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    /// Runs in flight at most; further due runs wait for a slot. Default 256.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address for `GET /metrics` (Prometheus text), e.g. `"127.0.0.1:9464"`.
    /// Default: no endpoint.
    pub listen: String,
}

/// `[outbox]`: results are written here before they are sent and deleted
/// only after the controller has committed them.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// Directory of the log. Default: `$STATE_DIRECTORY/outbox` when systemd
    /// sets `STATE_DIRECTORY`, else `./outpost-outbox`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Bytes on disk at most; beyond it the oldest results are dropped and
    /// counted. Default `"1GiB"`.
    #[serde(default)]
    pub max_size: Option<Size>,
    /// Results older than this are dropped and counted. Default `"7d"`.
    #[serde(default)]
    pub max_age: Option<Dur>,
    /// `"batch"` (default): fsync at most `fsync_interval` after a write — a
    /// power loss can lose that much of the newest results, a crash loses
    /// nothing. `"always"`: fsync every result. `"never"`: leave it to the OS.
    #[serde(default)]
    pub fsync: Option<String>,
    /// With `fsync = "batch"`: the longest a written result waits for fsync.
    /// Default `"500ms"`.
    #[serde(default)]
    pub fsync_interval: Option<Dur>,
}

/// Validated probe config.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Probe name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Controller connection, if any.
    pub controller: Option<ControllerConfig>,
    /// Local checks.
    pub checks: Vec<CheckSpec>,
    /// Concurrency cap.
    pub max_concurrency: usize,
    /// Outbox location and limits.
    pub outbox: crate::outbox::OutboxConfig,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The blackbox-compatible `/probe` endpoint, if configured.
    pub exporter: Option<crate::exporter::ExporterConfig>,
    /// Trace export, when `[telemetry]` sampling is not `off`.
    pub telemetry: Option<telemetry::TelemetryConfig>,
}

/// Default `[controller] drain_timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Validated `[controller]`.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The first URL (`url`, or `urls[0]`).
    pub url: String,
    /// Every URL, tried in turn (at least one; `url` alone gives one).
    pub urls: Vec<String>,
    /// Bearer token, if any.
    pub token: Option<Secret>,
    /// One-time enrollment token, if any.
    pub enrollment_token: Option<Secret>,
    /// Where the client identity lives ([`crate::identity`]).
    pub identity_dir: PathBuf,
    /// CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Plaintext permitted.
    pub allow_plaintext: bool,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// How long shutdown waits for acks (`reporter` design notes).
    pub drain_timeout: Duration,
}

impl RawProbeFile {
    /// Validates everything, collecting every problem with its path.
    pub fn validate(&self, source: &str) -> Result<ProbeConfig, ConfigError> {
        let mut p = Problems::default();
        let checks = check::validate_all(&self.checks, "checks", &mut p);
        for (i, c) in self.checks.iter().enumerate() {
            if c.heartbeat.is_some() {
                p.push(
                    format!("checks[{i}].heartbeat"),
                    "a heartbeat check is pushed to the controller by the job it watches: \
                     define it in controller.toml, not in a probe's config",
                );
            }
        }
        let (name, region, labels) = match &self.probe {
            Some(pr) => {
                if !check::valid_id(&pr.name) {
                    p.push("probe.name", format!("invalid probe name {:?}: use lowercase letters, digits, '-', '_' or '.'", pr.name));
                }
                if !check::valid_id(&pr.region) {
                    p.push(
                        "probe.region",
                        format!(
                            "invalid region {:?}: use lowercase letters, digits, '-', '_' or '.'",
                            pr.region
                        ),
                    );
                }
                (pr.name.clone(), pr.region.clone(), pr.labels.clone())
            }
            None => {
                if self.controller.is_some() {
                    p.push(
                        "probe",
                        "a probe that reports to a controller needs [probe] with name and region",
                    );
                }
                ("local".to_owned(), "local".to_owned(), BTreeMap::new())
            }
        };
        let controller = self.controller.as_ref().and_then(|c| {
            let listed: Vec<(String, String)> = match (&c.url, &c.urls) {
                (Some(_), Some(_)) => {
                    p.push("controller.urls", "set either controller.url or controller.urls, not both");
                    Vec::new()
                }
                (None, None) => {
                    p.push("controller.url", "a controller needs url = \"https://host:7443\" (or urls = [...])");
                    Vec::new()
                }
                (Some(u), None) => vec![("controller.url".to_owned(), u.clone())],
                (None, Some(us)) => {
                    if us.is_empty() {
                        p.push("controller.urls", "urls is empty: list at least one controller URL");
                    }
                    us.iter()
                        .enumerate()
                        .map(|(i, u)| (format!("controller.urls[{i}]"), u.clone()))
                        .collect()
                }
            };
            for (path, url) in &listed {
                let url_ok = url.starts_with("https://") || url.starts_with("http://");
                if !url_ok || url.parse::<http::Uri>().is_err() {
                    p.push(path, format!("invalid controller url {url:?}: use https://host:port"));
                } else if url.starts_with("http://") && !c.allow_plaintext {
                    p.push(
                        path,
                        format!("{url:?} is plaintext: use https://, or set controller.allow_plaintext = true to send the token in clear"),
                    );
                }
            }
            let urls: Vec<String> = listed.into_iter().map(|(_, u)| u).collect();
            if let Some(ca) = &c.ca_file
                && let Err(e) = crate::tls::read_pem_certs(ca)
            {
                p.push("controller.ca_file", e);
            }
            let mut bad_secret = false;
            let token = c.token.as_ref().and_then(|raw| {
                match raw.resolve().and_then(|t| check_token_length(&t).map(|()| t)).inspect(|t| crate::redact::remember(t.expose())) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        p.push("controller.token", e);
                        bad_secret = true;
                        None
                    }
                }
            });
            let enrollment_token = c.enrollment_token.as_ref().and_then(|raw| {
                match raw.resolve().and_then(|t| check_token_length(&t).map(|()| t)).inspect(|t| crate::redact::remember(t.expose())) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        p.push("controller.enrollment_token", e);
                        bad_secret = true;
                        None
                    }
                }
            });
            let identity_dir = c.identity_dir.clone().unwrap_or_else(|| {
                match std::env::var_os("STATE_DIRECTORY") {
                    Some(d) => PathBuf::from(d).join("identity"),
                    None => PathBuf::from("outpost-identity"),
                }
            });
            if c.enrollment_token.is_some() && urls.iter().any(|u| u.starts_with("http://")) {
                p.push(
                    "controller.enrollment_token",
                    "enrollment needs TLS: use https:// controller URLs (client certificates need TLS)",
                );
            }
            if !bad_secret
                && token.is_none()
                && enrollment_token.is_none()
                && !identity_dir.join(crate::identity::IDENTITY_FILE).exists()
            {
                p.push(
                    "controller.token",
                    format!(
                        "the probe needs a credential: token = {{ env = \"NAME\" }}, or enrollment_token = {{ env = \"NAME\" }}                          (from `outpost-controller probe enroll`), or an enrolled identity in {}",
                        identity_dir.display()
                    ),
                );
            }
            if bad_secret {
                return None;
            }
            Some(ControllerConfig {
                url: urls.first()?.clone(),
                urls,
                token,
                enrollment_token,
                identity_dir,
                ca_file: c.ca_file.clone(),
                allow_plaintext: c.allow_plaintext,
                heartbeat_interval: c.heartbeat_interval.map(Dur::get).unwrap_or(Duration::from_secs(10)),
                drain_timeout: c.drain_timeout.map(Dur::get).unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            })
        });
        let max_concurrency = self
            .scheduler
            .as_ref()
            .and_then(|s| s.max_concurrency)
            .unwrap_or(256);
        if max_concurrency == 0 {
            p.push(
                "scheduler.max_concurrency",
                "max_concurrency must be at least 1",
            );
        }
        let outbox = self.outbox_config(&mut p);
        let metrics_listen = self.metrics.as_ref().and_then(|m| match m.listen.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                p.push(
                    "metrics.listen",
                    format!("invalid address {:?}, e.g. \"127.0.0.1:9464\"", m.listen),
                );
                None
            }
        });
        let exporter = self.exporter.as_ref().and_then(|e| e.validate(&mut p));
        let telemetry = self.telemetry.as_ref().and_then(|t| t.validate(&mut p));
        if self.controller.is_none() && self.checks.is_empty() && self.exporter.is_none() {
            p.push(
                "(root)",
                "nothing to do: add [controller], [exporter] or at least one [[checks]] entry",
            );
        }
        p.finish(source)?;
        Ok(ProbeConfig {
            name,
            region,
            labels,
            controller,
            checks,
            max_concurrency,
            outbox,
            metrics_listen,
            exporter,
            telemetry,
        })
    }

    fn outbox_config(&self, p: &mut Problems) -> crate::outbox::OutboxConfig {
        use crate::outbox::{Fsync, OutboxConfig};
        let raw = self.outbox.clone().unwrap_or(RawOutbox {
            path: None,
            max_size: None,
            max_age: None,
            fsync: None,
            fsync_interval: None,
        });
        let dir = raw
            .path
            .unwrap_or_else(|| match std::env::var_os("STATE_DIRECTORY") {
                Some(d) => PathBuf::from(d).join("outbox"),
                None => PathBuf::from("outpost-outbox"),
            });
        let mut cfg = OutboxConfig::new(dir);
        if let Some(s) = raw.max_size {
            if s.bytes() < 64 * 1024 {
                p.push(
                    "outbox.max_size",
                    format!("max_size must be at least \"64KiB\", got \"{s}\""),
                );
            }
            cfg.max_bytes = s.bytes();
        }
        if let Some(a) = raw.max_age {
            if a.get() < Duration::from_secs(60) {
                p.push(
                    "outbox.max_age",
                    format!("max_age must be at least \"1m\", got \"{a}\""),
                );
            }
            cfg.max_age = a.get();
        }
        let interval = raw
            .fsync_interval
            .map(Dur::get)
            .unwrap_or(Duration::from_millis(500));
        if interval.is_zero() {
            p.push(
                "outbox.fsync_interval",
                "fsync_interval must be greater than 0",
            );
        }
        cfg.fsync = match raw.fsync.as_deref() {
            None | Some("batch") => Fsync::Batch(interval),
            Some("always") => Fsync::Always,
            Some("never") => Fsync::Never,
            Some(other) => {
                p.push(
                    "outbox.fsync",
                    format!(
                        "unknown fsync policy {other:?}: use \"batch\", \"always\" or \"never\""
                    ),
                );
                Fsync::Batch(interval)
            }
        };
        cfg
    }
}

/// Loads and validates a probe config file (environment overrides applied).
pub fn load_probe(path: &std::path::Path) -> Result<ProbeConfig, ConfigError> {
    load_probe_with(path, &[])
}

/// [`load_probe`], then `--set key=value` overrides (after the environment).
pub fn load_probe_with(
    path: &std::path::Path,
    sets: &[String],
) -> Result<ProbeConfig, ConfigError> {
    let raw: RawProbeFile = load::load_file_with(path, ENV, sets)?;
    raw.validate(&path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(controller: &str) -> Result<ProbeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t-0123456789abcdef0123456789abcdef").unwrap();
        let text = format!(
            "[probe]\nname = \"p\"\nregion = \"r\"\n[controller]\ntoken = {{ file = \"{}\" }}\nallow_plaintext = true\n{controller}",
            token.display()
        );
        let raw: RawProbeFile = load::load_str(&text, "p.toml", ENV, &[])?;
        raw.validate("p.toml")
    }

    #[test]
    fn several_controller_urls_are_kept_in_order_and_one_url_is_a_list_of_one() {
        let c = parse("urls = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\n").unwrap();
        let ctl = c.controller.unwrap();
        assert_eq!(ctl.urls, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!(ctl.url, "http://127.0.0.1:1");
        let c = parse("url = \"http://127.0.0.1:3\"\n").unwrap();
        assert_eq!(c.controller.unwrap().urls, ["http://127.0.0.1:3"]);
    }

    #[test]
    fn bad_controller_urls_name_their_key() {
        for (text, path) in [
            ("", "controller.url"),
            (
                "url = \"http://a:1\"\nurls = [\"http://b:1\"]\n",
                "controller.urls",
            ),
            ("urls = []\n", "controller.urls"),
            (
                "urls = [\"http://a:1\", \"ftp://b\"]\n",
                "controller.urls[1]",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.has_path(path), "{text}: expected {path}, got {err}");
        }
    }
}
