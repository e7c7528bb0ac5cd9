//! blackbox_exporter-compatible `/probe` (`[exporter]`): a Prometheus
//! scrape config written for blackbox_exporter works unchanged against it.
//!
//! `GET /probe?target=…&module=…` runs the module once against `target` and
//! answers the run's series ([`crate::blackbox`]) in the Prometheus text
//! format; `debug=true` answers the run's log, its result and the series
//! as text instead, as blackbox does. `GET /metrics` answers the probe's own
//! series ([`crate::metrics`]).
//!
//! - **Modules** are check templates (`[exporter.modules.<name>]`): the keys
//!   of a `[[checks]]` entry without `id`, for the kinds that have one
//!   target (http, tcp, tls, dns, icmp, grpc). `kind = "http"` stands for an
//!   empty `[…http]` table. `target` fills the kind's target: `http.url`
//!   (`http://` is prepended to a target without a scheme), `dns.name`,
//!   `icmp.host`, or `host` and `port` from `host:port` for tcp, tls and grpc.
//!   Each module is validated at load with a placeholder target, so a typo
//!   is a config error (exit 78) naming `exporter.modules.<name>.<key>`.
//! - **Timeout**: Prometheus' `X-Prometheus-Scrape-Timeout-Seconds` less
//!   `timeout_offset`, capped by the module's own `timeout`; without the
//!   header, the module's `timeout` (default 10s).
//! - **Bounds**: at most `max_concurrency` runs in flight; a scrape beyond
//!   is answered 503 at once, without a run.
//! - **Auth**: with `token`, every request must carry `authorization:
//!   Bearer <token>` (401 otherwise). `listen` defaults to loopback.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
    registry::Registry,
};
use serde::Deserialize;
use tracing::instrument::WithSubscriber;

use crate::{
    blackbox::{self, Series},
    check::{self, CheckSpec, DEFAULT_TIMEOUT, RawCheck, RunContext},
    config::{Dur, Problems, RawSecret, Secret},
};

/// Default `[exporter] listen`: blackbox_exporter's port, on loopback.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9115";
/// Default `[exporter] max_concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Default `[exporter] timeout_offset` (blackbox's).
pub const DEFAULT_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// The kinds a module may be of: those with one target.
const KINDS: &[&str] = &["http", "tcp", "tls", "dns", "icmp", "grpc"];

/// `[exporter]`: the opt-in blackbox-compatible `/probe` endpoint.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExporter {
    /// Address for `/probe` and `/metrics`. Default `"127.0.0.1:9115"`
    /// (loopback: set a routable address only together with `token`, or
    /// behind a proxy that authenticates).
    #[serde(default)]
    pub listen: Option<String>,
    /// Bearer token every request must carry (`authorization: Bearer …`),
    /// as `{ env = "NAME" }` or `{ file = "PATH" }`; at least 32 characters.
    /// Default: none (no authentication).
    #[serde(default)]
    pub token: Option<RawSecret>,
    /// Runs in flight at most; a scrape beyond is answered 503 without a
    /// run. Default 16.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Subtracted from the scrape's `X-Prometheus-Scrape-Timeout-Seconds`
    /// so the answer arrives before Prometheus gives up. Default `"500ms"`.
    #[serde(default)]
    pub timeout_offset: Option<Dur>,
    /// Check templates by module name (`module=` of a scrape), e.g.
    /// `[exporter.modules.http_2xx]` with `kind = "http"` or an
    /// `[exporter.modules.http_2xx.http]` table of `[[checks]]` http keys.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Map<String, serde_json::Value>>")]
    pub modules: BTreeMap<String, toml::Table>,
}

/// Validated `[exporter]`.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Required bearer token, if any.
    pub token: Option<Secret>,
    /// Runs in flight at most.
    pub max_concurrency: usize,
    /// Subtracted from the scrape timeout.
    pub timeout_offset: Duration,
    /// Templates by name.
    pub modules: BTreeMap<String, Module>,
}

/// One module: a check template with its kind.
#[derive(Debug, Clone)]
pub struct Module {
    name: String,
    kind: &'static str,
    template: toml::Table,
}

impl Module {
    /// Reads `[exporter.modules.<name>]`; problems under `path`.
    fn read(name: &str, raw: &toml::Table, path: &str, p: &mut Problems) -> Option<Module> {
        let mut template = raw.clone();
        if let Some(kind) = template.remove("kind") {
            match kind.as_str() {
                Some(k) => {
                    template
                        .entry(k.to_owned())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                }
                None => {
                    p.push(
                        format!("{path}.kind"),
                        "kind must be a string, e.g. kind = \"http\"",
                    );
                    return None;
                }
            }
        }
        if template.contains_key("id") {
            p.push(
                format!("{path}.id"),
                "a module has no id: its name is the check id of its runs",
            );
            return None;
        }
        let kinds: Vec<&'static str> = KINDS
            .iter()
            .copied()
            .filter(|k| template.contains_key(*k))
            .collect();
        let [kind] = kinds[..] else {
            p.push(
                path.to_owned(),
                format!(
                    "a module needs exactly one kind of {}: e.g. kind = \"http\"",
                    KINDS.join(", ")
                ),
            );
            return None;
        };
        let module = Module {
            name: name.to_owned(),
            kind,
            template,
        };
        // Validated once with a placeholder target: a bad key is a config
        // error now, not a 400 at the first scrape.
        let placeholder = match kind {
            "http" => "http://127.0.0.1:1/",
            "dns" => "example.invalid",
            _ => "127.0.0.1:1",
        };
        let before = p.len();
        if let Some(raw) = module.check(placeholder, None, p, path) {
            raw.validate(path, p);
        }
        (p.len() == before).then_some(module)
    }

    /// The template as a check against `target`, `timeout` set when given.
    fn check(
        &self,
        target: &str,
        timeout: Option<Duration>,
        p: &mut Problems,
        path: &str,
    ) -> Option<RawCheck> {
        let mut t = self.template.clone();
        t.insert("id".into(), toml::Value::String(self.name.clone()));
        if let Some(timeout) = timeout {
            t.insert(
                "timeout".into(),
                toml::Value::String(Dur(timeout).to_string()),
            );
            let interval = timeout.max(check::DEFAULT_INTERVAL);
            t.insert(
                "interval".into(),
                toml::Value::String(Dur(interval).to_string()),
            );
        }
        if let Some(toml::Value::Table(k)) = t.get_mut(self.kind) {
            fill_target(self.kind, k, target);
        }
        match serde_path_to_error::deserialize::<_, RawCheck>(toml::Value::Table(t)) {
            Ok(raw) => Some(raw),
            Err(e) => {
                let key = e.path().to_string();
                p.push(
                    format!("{path}.{key}"),
                    e.inner().to_string().replace('\n', " "),
                );
                None
            }
        }
    }

    /// The module's own `timeout`, if it sets one.
    fn timeout(&self) -> Option<Duration> {
        let text = self.template.get("timeout")?.as_str()?;
        crate::config::duration::parse_duration(text).ok()
    }
}

/// Writes `target` into a kind's table.
fn fill_target(kind: &str, table: &mut toml::Table, target: &str) {
    let s = |v: &str| toml::Value::String(v.to_owned());
    match kind {
        "http" => {
            let url = if target.contains("://") {
                target.to_owned()
            } else {
                format!("http://{target}")
            };
            table.insert("url".into(), s(&url));
        }
        "dns" => {
            table.insert("name".into(), s(target));
        }
        "icmp" => {
            table.insert("host".into(), s(target));
        }
        _ => {
            let (host, port) = host_port(target);
            table.insert("host".into(), s(host));
            if let Some(port) = port {
                table.insert("port".into(), toml::Value::Integer(i64::from(port)));
            }
        }
    }
}

/// `host:port`, `[v6]:port`, `v6`, `host` → host and port.
fn host_port(target: &str) -> (&str, Option<u16>) {
    if let Some(rest) = target.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (target, None),
        },
        _ => (target, None),
    }
}

impl RawExporter {
    /// Validates `[exporter]`, problems under `exporter.`.
    pub fn validate(&self, p: &mut Problems) -> Option<ExporterConfig> {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = match listen_text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                p.push(
                    "exporter.listen",
                    format!("invalid address {listen_text:?}, e.g. \"{DEFAULT_LISTEN}\""),
                );
                None
            }
        };
        let token = self.token.as_ref().and_then(|t| match t.resolve() {
            Ok(s) if s.expose().len() >= 32 => Some(s),
            Ok(_) => {
                p.push(
                    "exporter.token",
                    "the token must be at least 32 characters (e.g. `openssl rand -hex 32`)",
                );
                None
            }
            Err(e) => {
                p.push("exporter.token", e);
                None
            }
        });
        let max_concurrency = self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        if max_concurrency == 0 {
            p.push(
                "exporter.max_concurrency",
                "max_concurrency must be at least 1",
            );
        }
        if self.modules.is_empty() {
            p.push(
                "exporter.modules",
                "no modules: add e.g. [exporter.modules.http_2xx] with kind = \"http\"",
            );
        }
        let mut modules = BTreeMap::new();
        for (name, raw) in &self.modules {
            let path = format!("exporter.modules.{name}");
            if !check::valid_id(name) {
                p.push(
                    path.clone(),
                    format!("invalid module name {name:?}: use lowercase letters, digits, '-', '_' or '.'"),
                );
                continue;
            }
            if let Some(m) = Module::read(name, raw, &path, p) {
                modules.insert(name.clone(), m);
            }
        }
        Some(ExporterConfig {
            listen: listen?,
            token,
            max_concurrency,
            timeout_offset: self
                .timeout_offset
                .map(Dur::get)
                .unwrap_or(DEFAULT_TIMEOUT_OFFSET),
            modules,
        })
    }
}

/// What every request handler shares.
struct Exporter {
    config: ExporterConfig,
    slots: Arc<tokio::sync::Semaphore>,
    ctx: RunContext,
    own: Registry,
}

/// Serves `/probe` and `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ExporterConfig,
    ctx: RunContext,
    own: Registry,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let exporter = Arc::new(Exporter {
        slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrency)),
        config,
        ctx,
        own,
    });
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        // Best effort: without it only latency suffers.
        let _ = stream.set_nodelay(true);
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let exporter = exporter.clone();
                async move { Ok::<_, std::convert::Infallible>(exporter.handle(&req).await) }
            });
            // A client that goes away mid-request is its business.
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn metrics_response(body: String) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// The query parameters of a `/probe` request.
#[derive(Debug, Default)]
struct Query {
    target: Option<String>,
    module: Option<String>,
    debug: bool,
}

fn query(uri: &hyper::Uri) -> Query {
    let mut q = Query::default();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match &*k {
            "target" => q.target = Some(v.into_owned()),
            "module" => q.module = Some(v.into_owned()),
            "debug" => q.debug = v == "true",
            _ => {}
        }
    }
    q
}

/// The run's timeout: the scrape's (less the offset), capped by the module's.
pub fn run_timeout(scrape: Option<f64>, offset: Duration, module: Option<Duration>) -> Duration {
    let scrape = scrape
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .map(|s| if s > offset { s - offset } else { s });
    match (scrape, module) {
        (Some(s), Some(m)) => s.min(m),
        (Some(s), None) => s,
        (None, Some(m)) => m,
        (None, None) => DEFAULT_TIMEOUT,
    }
    .max(Duration::from_millis(1))
}

impl Exporter {
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.config.token else {
            return true;
        };
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    }

    async fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.authorized(req) {
            return text(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token ([exporter] token)\n",
            );
        }
        match req.uri().path() {
            "/metrics" => metrics_response(crate::metrics::render(&self.own)),
            "/probe" => self.probe(req).await,
            _ => text(StatusCode::NOT_FOUND, "not found: use /probe or /metrics\n"),
        }
    }

    async fn probe(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let q = query(req.uri());
        let Some(target) = q.target.filter(|t| !t.is_empty()) else {
            return text(StatusCode::BAD_REQUEST, "target parameter is missing\n");
        };
        let name = q.module.unwrap_or_else(|| "http_2xx".to_owned());
        let Some(module) = self.config.modules.get(&name) else {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown module {name:?}: configured are {}\n",
                    self.config
                        .modules
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        let scrape = req
            .headers()
            .get("x-prometheus-scrape-timeout-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let timeout = run_timeout(scrape, self.config.timeout_offset, module.timeout());
        let mut problems = Problems::default();
        let spec = module
            .check(&target, Some(timeout), &mut problems, "target")
            .and_then(|raw| raw.validate("target", &mut problems));
        let spec = match (spec, problems.finish("target")) {
            (Some(spec), Ok(())) => spec,
            (_, Err(e)) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid target {target:?} for module {name:?}: {e}"),
                );
            }
            (None, Ok(())) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid target {target:?} for module {name:?}\n"),
                );
            }
        };
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many probes in flight ([exporter] max_concurrency = {})\n",
                    self.config.max_concurrency
                ),
            );
        };
        if q.debug {
            return text(StatusCode::OK, self.debug_run(&spec, module, &target).await);
        }
        let outcome = check::run(&spec, &self.ctx).await;
        tracing::debug!(module = %name, ok = outcome.ok(), "probe request answered");
        metrics_response(render(&series_of(&outcome)))
    }

    /// The run under a subscriber of its own: its log, result and series.
    async fn debug_run(&self, spec: &CheckSpec, module: &Module, target: &str) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        let outcome = check::run(spec, &self.ctx)
            .with_subscriber(subscriber)
            .await;
        // The checks log little themselves (warnings at most): the phases
        // and the verdict are written from the outcome, then the kind's
        // own report, so the log always says how far the run got and why
        // it failed.
        let mut log =
            String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        log.push_str(&run_log(&outcome));
        log.push_str(&check::render(&outcome));
        let result = serde_json::to_string_pretty(&outcome.to_json()).unwrap_or_default();
        let template = serde_json::to_string_pretty(&module.template).unwrap_or_default();
        format!(
            "Logs for the probe of {target:?} with module {:?}:\n{log}\n\n\nResult:\n{result}\n\n\nMetrics that would have been returned:\n{}\n\n\nModule configuration:\n{template}",
            module.name,
            render(&series_of(&outcome))
        )
    }
}

/// The phases a run went through and its verdict, one line each, in the
/// order they happen: `phase dns took 0.000131s`, … `probe failed:
/// connect_refused: …`.
fn run_log(o: &check::Outcome) -> String {
    let p = &o.phases;
    let mut log = format!("probe of kind {} (check {:?})\n", o.kind, o.check_id);
    for (name, took) in [
        ("dns", p.dns),
        ("connect", p.connect),
        ("tls", p.tls),
        ("first_byte", p.first_byte),
    ] {
        if let Some(d) = took {
            log.push_str(&format!("phase {name} took {:.6}s\n", d.as_secs_f64()));
        }
    }
    log.push_str(&format!("run took {:.6}s\n", p.total.as_secs_f64()));
    match &o.result {
        Ok(()) => log.push_str("probe succeeded\n"),
        Err(f) => log.push_str(&format!("probe failed: {}: {f}\n", f.code())),
    }
    log
}

/// Equal, in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A log line sink for [`Exporter::debug_run`].
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn us(d: Option<Duration>) -> u64 {
    d.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The blackbox series of one outcome.
pub fn series_of(o: &check::Outcome) -> Vec<Series> {
    let p = &o.phases;
    blackbox::series(blackbox::Run {
        ok: o.ok(),
        kind: o.kind.as_str(),
        observed: &o.observed,
        phases_us: Some([
            us(p.dns),
            us(p.connect),
            us(p.tls),
            us(p.first_byte),
            us(Some(p.total)),
        ]),
    })
}

/// One run's series, encoded at render time.
#[derive(Debug)]
struct RunSeries(Vec<Series>);

impl Collector for RunSeries {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        for (name, help) in blackbox::FAMILIES {
            let mut of = self.0.iter().filter(|s| s.name == *name).peekable();
            if of.peek().is_none() {
                continue;
            }
            let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in of {
                let labels: Vec<(&str, &str)> =
                    s.extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let metric = family.encode_family(&labels)?;
                if s.value.fract() == 0.0 && s.value.abs() < 1e15 {
                    ConstGauge::new(s.value as i64).encode(metric)?;
                } else {
                    ConstGauge::new(s.value).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

/// The Prometheus text of one run's series.
pub fn render(series: &[Series]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RunSeries(series.to_vec())));
    crate::metrics::render(&registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter(text: &str) -> Result<ExporterConfig, crate::config::ConfigError> {
        let raw: RawExporter = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        let c = raw.validate(&mut p);
        p.finish("t").map(|()| c.unwrap())
    }

    #[test]
    fn modules_are_templates_checked_at_load() {
        let c = exporter(
            "[modules.http_2xx]\nkind = \"http\"\n[modules.tcp]\ntimeout = \"3s\"\ntcp = {}\n",
        )
        .unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.modules["http_2xx"].kind, "http");
        assert_eq!(c.modules["tcp"].timeout(), Some(Duration::from_secs(3)));
        let err = exporter("[modules.bad.http]\nmethd = \"GET\"\n").unwrap_err();
        assert!(err.has_path("exporter.modules.bad.http.methd"), "{err}");
        let err = exporter("[modules.two]\nhttp = {}\ntcp = {}\n").unwrap_err();
        assert!(err.has_path("exporter.modules.two"), "{err}");
        let err = exporter("[modules.s]\nkind = \"session\"\n").unwrap_err();
        assert!(err.has_path("exporter.modules.s"), "{err}");
        let err = exporter("").unwrap_err();
        assert!(err.has_path("exporter.modules"), "{err}");
    }

    #[test]
    fn targets_fill_the_kind_and_host_port_splits() {
        assert_eq!(host_port("a.test:443"), ("a.test", Some(443)));
        assert_eq!(host_port("[::1]:8443"), ("::1", Some(8443)));
        assert_eq!(host_port("::1"), ("::1", None));
        assert_eq!(host_port("a.test"), ("a.test", None));
        let c = exporter("[modules.http_2xx]\nkind = \"http\"\n").unwrap();
        let mut p = Problems::default();
        let raw = c.modules["http_2xx"]
            .check("a.test/x", Some(Duration::from_secs(2)), &mut p, "t")
            .unwrap();
        assert_eq!(raw.http.unwrap().url, "http://a.test/x");
        assert_eq!(raw.timeout.map(Dur::get), Some(Duration::from_secs(2)));
    }

    #[test]
    fn scrape_timeout_less_offset_capped_by_module() {
        let off = Duration::from_millis(500);
        assert_eq!(
            run_timeout(Some(5.0), off, None),
            Duration::from_millis(4500)
        );
        assert_eq!(
            run_timeout(Some(5.0), off, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(run_timeout(None, off, None), DEFAULT_TIMEOUT);
        assert_eq!(
            run_timeout(Some(0.2), off, None),
            Duration::from_millis(200)
        );
    }
}
