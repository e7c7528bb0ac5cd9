//! `outpost-probe`: CLI and exit codes. Wiring only.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand, ValueEnum};
use outpost_probe::{
    check::{self, Outcome, RunContext},
    config::{self, ConfigError},
};

#[derive(Parser)]
#[command(
    name = "outpost-probe",
    version,
    about = "Outpost probe agent: runs checks and reports to the controller"
)]
struct Cli {
    /// Log line format on stderr. The filter comes from OUTPOST_LOG, or
    /// RUST_LOG when OUTPOST_LOG is unset (default: info).
    #[arg(long, global = true, value_enum, default_value_t = outpost_probe::logging::LogFormat::Text)]
    log_format: outpost_probe::logging::LogFormat,
    /// Override one config key after the file and the OUTPOST_* variables,
    /// e.g. `--set probe.region=eu-west` or `--set 'scheduler.max_concurrency=64'`
    /// (a TOML value; anything else is a string). Repeatable; the last wins.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run continuously: connect to the controller (or run local checks standalone).
    Run {
        /// Probe config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run each local check once and exit 0 if all pass, 1 if any fails, 78 on a config error.
    Once {
        /// Config file with [[checks]].
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Validate a config file without touching the network.
    CheckConfig {
        /// Config file.
        file: PathBuf,
    },
    /// Print the JSON Schema of probe.toml (checks included), for editors;
    /// the same as deploy/schema/probe.schema.json.
    Schema,
    /// Request URL like a machine client, following up to --max-hops redirects,
    /// and print each hop: status, Location, scheme and method changes, TLS
    /// version and leaf expiry, timings, and what each rule would say. Exit 0
    /// if a check with these settings and follow_redirects = true passes, 1 if not.
    /// Other schemes run that kind once: `tcp://host:port` (`tcps://` for TLS,
    /// with --send/--expect), `grpc://host:port[/service]` (`grpcs://` for TLS),
    /// `icmp://host` (5 echoes; fails only when none is answered).
    Check(Box<CheckArgs>),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Absolute http:// or https:// URL, or tcp(s)://HOST:PORT, grpc(s)://HOST:PORT[/SERVICE], icmp://HOST.
    url: String,
    /// tcp: bytes to send after connecting (escapes \r \n \t \\ are read).
    #[arg(long)]
    send: Option<String>,
    /// tcp: regex the received bytes must match.
    #[arg(long)]
    expect: Option<String>,
    /// Request method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// Request header, repeatable. Example: -H 'accept: application/json'.
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Request body, sent as is.
    #[arg(long)]
    body: Option<String>,
    /// PEM roots to trust instead of the bundled Mozilla roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Deadline for the whole command: the request chain and the TLS
    /// matrix run concurrently, each within it.
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Output: `text` (the trace for a human) or `json` (one JSON line
    /// per run, as `once --format json`: the request, then the TLS matrix).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Redirects followed at most.
    #[arg(long, default_value_t = 10)]
    max_hops: u32,
    /// Connect to this IP for the URL's host (SNI and Host keep the name).
    #[arg(long, value_name = "IP")]
    resolve_to: Vec<String>,
    /// For https URLs: also validate the served chain against this PEM
    /// bundle, named NAME in the TLS matrix (repeatable), e.g.
    /// `--trust-store old-device=/etc/old-ca.pem`.
    #[arg(long = "trust-store", value_name = "NAME=FILE")]
    trust_stores: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    outpost_probe::logging::init(cli.log_format);
    let code = match cli.command {
        Command::Schema => {
            print!("{}", config::schema::render(&config::schema::probe()));
            0
        }
        Command::CheckConfig { file } => match config::load_probe_with(&file, &cli.set) {
            Ok(c) => {
                println!(
                    "ok: probe {} in {}, {} local checks, controller {}",
                    c.name,
                    c.region,
                    c.checks.len(),
                    c.controller
                        .as_ref()
                        .map(|c| c.url.as_str())
                        .unwrap_or("none (standalone)")
                );
                0
            }
            Err(e) => config_error(&e),
        },
        Command::Once { config, format } => match config::load_probe_with(&config, &cli.set) {
            Ok(c) => runtime().block_on(once(c, format)),
            Err(e) => config_error(&e),
        },
        Command::Run { config } => match config::load_probe_with(&config, &cli.set) {
            Ok(c) => runtime().block_on(run(c)),
            Err(e) => config_error(&e),
        },
        Command::Check(args) => {
            let CheckArgs {
                url,
                method,
                headers,
                body,
                ca_file,
                timeout,
                max_hops,
                resolve_to,
                trust_stores,
                format,
                send,
                expect,
            } = *args;
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return match kind_spec(&url, &timeout, ca_file.as_deref(), send, expect) {
                    Ok(spec) => ExitCode::from(runtime().block_on(once_kind(spec, format)) as u8),
                    Err(e) => ExitCode::from(config_error(&e) as u8),
                };
            }
            let tls = if url.starts_with("https://") {
                match matrix_spec(
                    &url,
                    ca_file.as_deref(),
                    &trust_stores,
                    &timeout,
                    resolve_to.first(),
                ) {
                    Ok(s) => Some(s),
                    Err(e) => return ExitCode::from(config_error(&e) as u8),
                }
            } else {
                None
            };
            match trace_spec(
                &url, &method, &headers, body, ca_file, &timeout, max_hops, resolve_to,
            ) {
                Ok(spec) => runtime().block_on(trace(spec, tls, format)),
                Err(e) => config_error(&e),
            }
        }
    };
    ExitCode::from(code as u8)
}

/// The check `outpost-probe check` runs: the URL, following redirects, in
/// report-only mode (violations recorded per hop, the chain followed anyway).
#[allow(clippy::too_many_arguments)]
fn trace_spec(
    url: &str,
    method: &str,
    headers: &[String],
    body: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: &str,
    max_hops: u32,
    resolve_to: Vec<String>,
) -> Result<check::CheckSpec, ConfigError> {
    let source = "command line";
    let mut header_map = serde_json::Map::new();
    for h in headers {
        let Some((k, v)) = h.split_once(':') else {
            return Err(ConfigError::one(
                source,
                "--header",
                format!("invalid header {h:?}: write NAME:VALUE, e.g. 'accept: application/json'"),
            ));
        };
        header_map.insert(k.trim().to_ascii_lowercase(), v.trim().into());
    }
    let raw = serde_json::json!({
        "id": "check",
        "interval": timeout,
        "timeout": timeout,
        "http": {
            "url": url,
            "method": method,
            "headers": header_map,
            "body": body,
            "ca_file": ca_file,
            "follow_redirects": true,
            "max_hops": max_hops,
            "resolve_to": resolve_to,
        },
    });
    let raw: check::RawCheck = serde_json::from_value(raw)
        .map_err(|e| ConfigError::one(source, "(arguments)", e.to_string()))?;
    let mut problems = config::Problems::default();
    let spec = raw.validate("check", &mut problems);
    problems.finish(source)?;
    let Some(mut spec) = spec else {
        return Err(ConfigError::one(source, "check", "invalid check"));
    };
    if let check::CheckKind::Http(h) = &mut spec.kind {
        h.redirect.report_only = true;
    }
    Ok(spec)
}

async fn trace(spec: check::CheckSpec, tls: Option<check::CheckSpec>, format: Format) -> i32 {
    let ctx = RunContext {
        probe_name: "outpost-probe-check".into(),
        ..RunContext::default()
    };
    // Concurrently: each run keeps within the timeout, so the command does too.
    let matrix = async {
        match &tls {
            Some(t) => Some(check::run(t, &ctx).await),
            None => None,
        }
    };
    let (outcome, matrix) = futures_util::future::join(check::run(&spec, &ctx), matrix).await;
    let report = check::http::report::render(&outcome);
    match format {
        Format::Json => {
            println!("{}", outcome.to_json());
            if let Some(m) = &matrix {
                println!("{}", m.to_json());
            }
        }
        Format::Text => {
            print!("{}", report.text);
            if let Some(m) = &matrix {
                println!("\nTLS: every trust store x client profile for the first hop's server");
                print!("{}", check::tls::render_matrix(&m.observed));
                if let Err(f) = &m.result {
                    println!("  ({}: {f})", f.code());
                }
            }
        }
    }
    if report.passes_following { 0 } else { 1 }
}

/// The check `outpost-probe check` runs for a non-http URL.
fn kind_spec(
    url: &str,
    timeout: &str,
    ca_file: Option<&std::path::Path>,
    send: Option<String>,
    expect: Option<String>,
) -> Result<check::CheckSpec, ConfigError> {
    let source = "command line";
    let bad = |why: &str| ConfigError::one(source, "URL", format!("invalid URL {url:?}: {why}"));
    let uri: http::Uri = url
        .parse()
        .map_err(|_| bad("write tcp://HOST:PORT or tcps://HOST:PORT"))?;
    let host = uri
        .host()
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let unescape = |s: String| {
        s.replace("\\r", "\r")
            .replace("\\n", "\n")
            .replace("\\t", "\t")
            .replace("\\\\", "\\")
    };
    let tls = ca_file.map_or(
        serde_json::json!({}),
        |c| serde_json::json!({ "ca_file": c }),
    );
    let table = match uri.scheme_str() {
        Some(scheme @ ("tcp" | "tcps")) => {
            let mut t = serde_json::json!({
                "host": host,
                "port": uri.port_u16().ok_or_else(|| bad("a tcp URL needs a port"))?,
                "send": send.map(unescape),
                "expect": expect,
            });
            if scheme == "tcps" {
                t["tls"] = tls;
            }
            ("tcp", t)
        }
        Some(scheme @ ("grpc" | "grpcs")) => {
            let service = uri.path().trim_start_matches('/');
            let mut t = serde_json::json!({
                "host": host,
                "port": uri.port_u16().ok_or_else(|| bad("a grpc URL needs a port"))?,
                "service": service,
            });
            if scheme == "grpcs" {
                t["tls"] = tls;
            }
            ("grpc", t)
        }
        Some("icmp") => (
            "icmp",
            serde_json::json!({ "host": host, "count": 5, "request_interval": "100ms", "max_loss": 0.8 }),
        ),
        _ => {
            return Err(bad(
                "use http://, https://, tcp://HOST:PORT, tcps://, grpc://HOST:PORT[/SERVICE], grpcs:// or icmp://HOST",
            ));
        }
    };
    let mut raw = serde_json::json!({ "id": "check", "interval": timeout, "timeout": timeout });
    raw[table.0] = table.1;
    let raw: check::RawCheck = serde_json::from_value(raw)
        .map_err(|e| ConfigError::one(source, "(arguments)", e.to_string()))?;
    let mut problems = config::Problems::default();
    let spec = raw.validate("check", &mut problems);
    problems.finish(source)?;
    spec.ok_or_else(|| ConfigError::one(source, "URL", "invalid check"))
}

/// Runs one check of a connection-level kind and prints it.
async fn once_kind(spec: check::CheckSpec, format: Format) -> i32 {
    let ctx = RunContext {
        probe_name: "outpost-probe-check".into(),
        ..RunContext::default()
    };
    let o = check::run(&spec, &ctx).await;
    match format {
        Format::Json => println!("{}", o.to_json()),
        Format::Text => print!("{}", check::render(&o)),
    }
    if o.ok() { 0 } else { 1 }
}

/// The TLS matrix for an https URL: Mozilla and system roots, `--ca-file`
/// and every `--trust-store`, under every client profile, reporting only.
fn matrix_spec(
    url: &str,
    ca_file: Option<&std::path::Path>,
    trust_stores: &[String],
    timeout: &str,
    address: Option<&String>,
) -> Result<check::CheckSpec, ConfigError> {
    let source = "command line";
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ConfigError::one(source, "URL", format!("invalid URL {url:?}")))?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let mut stores = serde_json::Map::new();
    if let Some(ca) = ca_file {
        stores.insert("ca-file".into(), ca.display().to_string().into());
    }
    for t in trust_stores {
        let Some((name, file)) = t.split_once('=') else {
            return Err(ConfigError::one(
                source,
                "--trust-store",
                format!(
                    "invalid trust store {t:?}: write NAME=FILE, e.g. old-device=/etc/old-ca.pem"
                ),
            ));
        };
        stores.insert(name.trim().into(), file.trim().into());
    }
    let mut names: Vec<serde_json::Value> = vec!["mozilla".into(), "system".into()];
    names.extend(stores.keys().map(|k| serde_json::Value::from(k.clone())));
    let raw = serde_json::json!({
        "id": "tls-matrix",
        "interval": timeout,
        "timeout": timeout,
        "tls": {
            "host": host,
            "port": uri.port_u16().unwrap_or(443),
            "address": address,
            "stores": stores,
            "trust_stores": names,
            "profiles": ["modern", "legacy", "tls13", "tls12", "no_sni", "rsa_only", "ecdsa_only"],
            "must_pass": [],
        }
    });
    let raw: check::RawCheck = serde_json::from_value(raw)
        .map_err(|e| ConfigError::one(source, "--trust-store", e.to_string()))?;
    let mut problems = config::Problems::default();
    let spec = raw.validate("check", &mut problems);
    problems.finish(source)?;
    spec.ok_or_else(|| ConfigError::one(source, "URL", "cannot build the TLS matrix"))
}

fn config_error(e: &ConfigError) -> i32 {
    eprint!("{e}");
    ConfigError::EXIT_CODE
}

fn runtime() -> tokio::runtime::Runtime {
    // Invariant: building a default multi-thread runtime fails only when the OS
    // refuses threads, and then nothing can run anyway.
    #[allow(clippy::expect_used)]
    tokio::runtime::Runtime::new().expect("cannot start the tokio runtime")
}

async fn once(c: config::ProbeConfig, format: Format) -> i32 {
    if c.checks.is_empty() {
        eprintln!("no [[checks]] in the config: nothing to run");
        return ConfigError::EXIT_CODE;
    }
    let ctx = RunContext {
        probe_name: c.name.clone(),
        region: c.region.clone(),
        ..RunContext::default()
    };
    let runs = c.checks.iter().map(|spec| check::run(spec, &ctx));
    let outcomes = futures_util::future::join_all(runs).await;
    for o in &outcomes {
        match format {
            Format::Json => println!("{}", o.to_json()),
            Format::Text => println!("{}", text_line(o)),
        }
    }
    if outcomes.iter().all(Outcome::ok) {
        0
    } else {
        1
    }
}

fn text_line(o: &Outcome) -> String {
    let took = outpost_probe::human::duration(o.phases.total).to_string();
    match &o.result {
        Ok(()) => format!("PASS  {:<24} {took:>10}", o.check_id),
        Err(f) => format!("FAIL  {:<24} {took:>10}  {}: {f}", o.check_id, f.code()),
    }
}

async fn run(c: config::ProbeConfig) -> i32 {
    let standalone = c.controller.is_none();
    let printer: Option<Arc<dyn Fn(Outcome) + Send + Sync>> = standalone.then(|| {
        Arc::new(|o: Outcome| println!("{}", o.to_json())) as Arc<dyn Fn(Outcome) + Send + Sync>
    });
    let probe = match outpost_probe::spawn(c, printer) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return 1;
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    probe.shutdown().await;
    0
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
