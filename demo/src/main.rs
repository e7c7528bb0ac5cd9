//! `outpost-demo`: the whole product in one process.
//!
//! Starts the controller on SQLite in a temporary directory, three in-process
//! probes (`eu-west`, `us-east`, `ap-south`) that connect to it over real gRPC
//! on loopback, and loopback targets that replay the incidents in
//! `shared/incidents/`:
//!
//! - `api-healthy`: a healthy HTTPS API (generated PKI) — stays green.
//! - `iot-ingest-308`: the IOT ETL incident: the ingest endpoint moved to
//!   HTTPS behind a `308 Permanent Redirect`; a machine client that POSTs and
//!   does not follow redirects gets no data through → `redirect_not_followed`.
//! - `tis-lb-pair`: the TIS incident: one name, two load-balanced backends
//!   (127.0.0.2 and 127.0.0.3); blue answers 502 → "1 of 2 backends failing".
//! - `api-login-downgrade`: an HTTPS login page that redirects to plain HTTP
//!   → `redirect_downgrade` (credentials would travel in clear).
//! - `iot-data-fresh`: the IOT "data stale for 17 hours" incident: the API
//!   answers 200 with a timestamp 17 h old → `data_stale` (max age 15 min).
//! - `shop-cname` / `shop-app`: a blue → green CNAME flip on a loopback DNS
//!   server 5 s into the demo; a second resolver (a cache) keeps serving the
//!   old answer → `dns_resolvers_disagree`, then `dns_propagation_stalled`
//!   once the old TTL plus grace has passed, while the app itself, resolved
//!   through the primary, recovers when the flip lands.
//!
//! - `logdna-addtrust`: the AddTrust root expiry (2020-05-30): the server
//!   presents leaf + intermediate + a cross-certificate to an expired OLD
//!   root. Modern clients (alternate chains) pass with the NEW root; legacy
//!   clients (OpenSSL 1.0.x path building) fail even when they trust both →
//!   `tls_cert_expired`, with the forecast "legacy clients … fail from 2020-05-30".
//!
//! - `vendor-b-never` / `vendor-b-renewing`: the IOT Vendor B session: a
//!   token server issues JWTs that live 4 s and a resource that rejects
//!   expired ones. The client that logs in once (`renewal = "never"`) fails
//!   with `session_expired` and the observed lifetime, like the incident's
//!   integration after its first hour; the renewing one stays green for many
//!   lifetimes.
//!
//! - `iot-etl-heartbeat`: the IOT ETL that stopped for 17 hours without an
//!   error: a simulated job pings the controller's `/ping/<id>` every 2 s
//!   (period 2 s, grace 1 s), then stops at +6 s without a word → the
//!   controller raises `heartbeat_missed` on its own, with no probe involved.
//! - `vendor-a-tls13`: the IOT Vendor A handshake failure
//!   (`sslv3_alert_handshake_failure`): the new server speaks TLS 1.3 only;
//!   modern clients pass, the `legacy` (OpenSSL 1.0.2-class) client cannot
//!   complete a handshake → `tls_protocol_unsupported` for `legacy`.
//!
//! Alerts go to the console sink. With `--for` the demo exits after that
//! long and prints every check's state per region and every alert raised.
//!
//! A crate of its own so that the release `outpost-controller` does not link
//! the test kit (rcgen, loopback servers): `cargo run --release -p outpost-demo`.
//! It uses only the controller's and the probe's public API.

use std::{net::SocketAddr, path::Path, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use outpost_probe::config::{Dur, duration::parse_duration};
use outpost_testkit::{DnsServer, HttpServer, Pki, Reply, RunningServer, TokenServer};

/// Outpost demo: a controller, three probes and loopback targets replaying incidents.
#[derive(Debug, Clone, Parser)]
#[command(name = "outpost-demo", version, about)]
struct DemoArgs {
    /// Exit after this long and print a summary, e.g. `20s`. Default: run until Ctrl-C.
    #[arg(long = "for")]
    duration: Option<String>,
    /// Address for the dashboard and API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

/// Regions of the demo's probes.
const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

struct Targets {
    api: RunningServer,
    ingest_http: RunningServer,
    ingest_https: RunningServer,
    lb_port: u16,
    _blue: RunningServer,
    _green: RunningServer,
    ca_file: std::path::PathBuf,
    login: RunningServer,
    _login_plain: RunningServer,
    fresh: RunningServer,
    dns_primary: std::sync::Arc<DnsServer>,
    dns_cache: DnsServer,
    addtrust: RunningServer,
    addtrust_stores: [std::path::PathBuf; 3],
    tokens: TokenServer,
    client_secret: std::path::PathBuf,
    tls13_only: RunningServer,
}

/// The simulated ETL job pings this often, and stops after [`ETL_RUNS`] runs.
const ETL_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Runs of the simulated ETL job before it silently stops.
const ETL_RUNS: u32 = 4;

async fn start_targets(dir: &Path) -> anyhow::Result<Targets> {
    let pki = Pki::new("Outpost Demo Root CA");
    let ca_file = pki.write_root_pem(dir)?;
    let leaf = pki.leaf(&["localhost", "tis.demo.test", "app.demo.test", "127.0.0.1"]);

    let api = HttpServer::builder()
        .route(
            "/health",
            Reply::json(200, &serde_json::json!({ "status": "ok" })),
        )
        .tls(leaf.clone())
        .run()
        .await?;

    // IOT: the new web server only accepts HTTPS and answers plain HTTP with a 308.
    let ingest_https = HttpServer::builder()
        .route(
            "/telemetry",
            Reply::json(200, &serde_json::json!({ "accepted": true })),
        )
        .tls(leaf.clone())
        .run()
        .await?;
    let https_url = ingest_https.url("/telemetry");
    let ingest_http = HttpServer::builder()
        .route("/telemetry", Reply::redirect(308, &https_url))
        .run()
        .await?;

    // TIS: two backends on one port at two loopback addresses; blue is broken.
    let (blue, green, lb_port) = bind_pair(leaf.clone()).await?;

    // A login page whose HTTPS endpoint bounces clients to plain HTTP.
    let login_plain = HttpServer::builder()
        .route("/login", Reply::text(200, "login form"))
        .run()
        .await?;
    let plain_url = login_plain.url("/login");
    let login = HttpServer::builder()
        .route("/login", Reply::redirect(301, &plain_url))
        .tls(leaf.clone())
        .run()
        .await?;

    // IOT: the API answers 200, but the data stopped updating 17 hours ago.
    let fresh = HttpServer::builder()
        .handler("/v1/telemetry/latest", |_req| {
            let then = time::OffsetDateTime::now_utc() - time::Duration::hours(17);
            let at = then
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            Reply::json(
                200,
                &serde_json::json!({ "device": "pump-17", "updated_at": at, "temp_c": 21.5 }),
            )
        })
        .run()
        .await?;

    // DNS: app → blue; the flip to green lands on the primary only.
    let zone = |dns: &DnsServer| -> anyhow::Result<()> {
        dns.set_records(
            "blue.demo.test.",
            outpost_testkit::RecordType::A,
            &[(3, "127.0.0.2")],
        )?;
        dns.set_records(
            "green.demo.test.",
            outpost_testkit::RecordType::A,
            &[(3, "127.0.0.3")],
        )?;
        dns.set_cname("app.demo.test.", "blue.demo.test.", 3)
    };
    let dns_primary = std::sync::Arc::new(DnsServer::start().await?);
    let dns_cache = DnsServer::start().await?;
    zone(&dns_primary)?;
    zone(&dns_cache)?;

    let (addtrust, addtrust_stores) = addtrust(dir).await?;

    // Vendor B: short-lived signed tokens, a resource that checks them.
    let tokens = TokenServer::builder()
        .client("outpost-demo", "demo-client-secret")
        .lifetime(std::time::Duration::from_secs(4))
        .run()
        .await?;
    let client_secret = dir.join("vendor-b.secret");
    std::fs::write(&client_secret, "demo-client-secret")?;

    // Vendor A: the new web server accepts TLS 1.3 only.
    let tls13_only = HttpServer::builder()
        .route("/telemetry", Reply::text(200, "ok"))
        .tls_config(leaf.try_server_config_with(&[&rustls::version::TLS13], Vec::new())?)
        .run()
        .await?;

    Ok(Targets {
        api,
        ingest_http,
        ingest_https,
        lb_port,
        _blue: blue,
        _green: green,
        ca_file,
        login,
        _login_plain: login_plain,
        fresh,
        dns_primary,
        dns_cache,
        addtrust,
        addtrust_stores,
        tokens,
        client_secret,
        tls13_only,
    })
}

/// The AddTrust replay: OLD root expired 2020-05-30, NEW root, an
/// intermediate under NEW, NEW cross-signed by OLD; served leaf +
/// intermediate + cross-certificate. Returns the server and the PEM stores
/// (OLD, NEW, OLD and NEW).
async fn addtrust(dir: &Path) -> anyhow::Result<(RunningServer, [std::path::PathBuf; 3])> {
    use time::macros::datetime;
    let old = Pki::with_validity(
        "OLD ROOT",
        datetime!(2000-05-30 10:48 UTC),
        datetime!(2020-05-30 10:48 UTC),
    );
    let new = Pki::with_validity(
        "NEW ROOT",
        datetime!(2010-02-01 00:00 UTC),
        datetime!(2038-01-18 23:59 UTC),
    );
    let inter = new.intermediate("Issuing CA");
    let cross = old.cross_sign_with_validity(
        &new,
        datetime!(2000-05-30 10:48 UTC),
        datetime!(2020-05-30 10:48 UTC),
    );
    let mut identity = inter.leaf(&["localhost", "127.0.0.1"]);
    identity.chain.push(cross);
    let server = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls(identity)
        .run()
        .await?;
    let stores = [
        dir.join("old-root.pem"),
        dir.join("new-root.pem"),
        dir.join("old-and-new.pem"),
    ];
    std::fs::write(&stores[0], old.root_pem())?;
    std::fs::write(&stores[1], new.root_pem())?;
    std::fs::write(&stores[2], format!("{}{}", old.root_pem(), new.root_pem()))?;
    Ok((server, stores))
}

/// Binds the blue/green pair on the same port of 127.0.0.2 and 127.0.0.3.
async fn bind_pair(
    leaf: outpost_testkit::Identity,
) -> anyhow::Result<(RunningServer, RunningServer, u16)> {
    let mut last_err = None;
    for _ in 0..20 {
        let blue = HttpServer::builder()
            .route(
                "/health",
                Reply::text(502, "502 Bad Gateway: upstream unavailable")
                    .header("x-served-by", "blue"),
            )
            .tls(leaf.clone())
            .bind("127.0.0.2:0".parse()?)
            .run()
            .await?;
        let port = blue.addr().port();
        let green = HttpServer::builder()
            .route(
                "/health",
                Reply::json(200, &serde_json::json!({ "status": "ok" }))
                    .header("x-served-by", "green"),
            )
            .tls(leaf.clone())
            .bind(SocketAddr::from(([127, 0, 0, 3], port)))
            .run()
            .await;
        match green {
            Ok(green) => return Ok((blue, green, port)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no free port pair")))
}

fn controller_toml(dir: &Path, t: &Targets, listen: &str) -> String {
    let ca = t.ca_file.display();
    let mut s = format!(
        r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "{listen}"
# The demo's dashboard is for whoever runs it on this machine: read-only,
# no login (the controller logs a warning about it).
allow_unauthenticated = true
allow_plaintext_probes = true

[store]
path = "{db}"

[alerting]
offline_after = "10s"
"#,
        db = dir.join("outpost.db").display()
    );
    for r in REGIONS {
        s.push_str(&format!(
            "\n[[probes]]\nname = \"probe-{r}\"\nregion = \"{r}\"\ntoken = {{ file = \"{}\" }}\n",
            dir.join(format!("{r}.token")).display()
        ));
    }
    s.push_str(&format!(
        r#"
[[checks]]
id = "api-healthy"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "none", service = "public-api" }}
http = {{ url = "{api}", ca_file = "{ca}" }}

[[checks]]
id = "iot-ingest-308"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "iot-data-stale-308-redirect" }}
[checks.http]
url = "{ingest}"
method = "POST"
headers = {{ content-type = "application/json" }}
body = '{{"device":"pump-17","temp_c":21.5}}'
expected_status = [200, 201, 202, 204]
ca_file = "{ca}"

[[checks]]
id = "tis-lb-pair"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "blue-green-half-outage" }}
[checks.http]
url = "https://tis.demo.test:{lb}/health"
addresses = "all"
resolve_to = ["127.0.0.2", "127.0.0.3"]
ca_file = "{ca}"

[[checks]]
id = "api-login-downgrade"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "https-to-http-redirect" }}
[checks.http]
url = "{login}"
follow_redirects = true
ca_file = "{ca}"

[[checks]]
id = "iot-data-fresh"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "iot-data-stale-17h" }}
[checks.http]
url = "{fresh}"
freshness = {{ json_path = "$.updated_at", max_age = "15m" }}

[[checks]]
id = "shop-cname"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "iot-cname-change" }}
[checks.dns]
name = "app.demo.test"
type = "A"
resolvers = ["{ns1}", "{ns2}"]
propagation_grace = "2s"

[[checks]]
id = "shop-app"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "iot-cname-change" }}
[checks.http]
url = "https://app.demo.test:{lb}/health"
resolver = "{ns1}"
ca_file = "{ca}"

[[checks]]
id = "logdna-addtrust"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "addtrust-root-expiry" }}
[checks.tls]
host = "localhost"
address = "127.0.0.1"
port = {addtrust_port}
stores = {{ old-root = "{old_root}", new-root = "{new_root}", old-and-new = "{both_roots}" }}
trust_stores = ["old-root", "new-root", "old-and-new"]
profiles = ["modern", "legacy"]
# Customers run both modern clients and old devices that trust OLD and NEW.
must_pass = ["modern/new-root", "modern/old-and-new", "legacy/old-and-new"]

[[checks]]
id = "vendor-b-never"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "iot-vendor-b-401-after-1h" }}
# An expired session is definitive and not a network-local problem:
# page on the first failure from any region, and stay open while every new
# session dies again (two good runs between failures are not a recovery).
alert = {{ min_regions = 1, confirmations = 1, recoveries = 3 }}
[checks.session]
login = {{ oauth2_client_credentials = {{ token_url = "{token_url}", client_id = "outpost-demo", client_secret = {{ file = "{client_secret}" }} }} }}
use = [{{ url = "{resource_url}" }}]
renewal = "never"

[[checks]]
id = "vendor-b-renewing"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "iot-vendor-b-401-after-1h" }}
[checks.session]
login = {{ oauth2_client_credentials = {{ token_url = "{token_url}", client_id = "outpost-demo", client_secret = {{ file = "{client_secret}" }} }} }}
use = [{{ url = "{resource_url}" }}]
renewal = "before_expiry"
renew_before = "1500ms"

[[checks]]
id = "iot-etl-heartbeat"
labels = {{ incident = "iot-data-stale-17h" }}
# The ETL job pings when a run completes; silence is the failure.
heartbeat = {{ period = "2s", grace = "1s", ping_id = {{ env = "DEMO_HB_ETL" }} }}

[[checks]]
id = "vendor-a-tls13"
interval = "2s"
timeout = "1500ms"
labels = {{ incident = "iot-vendor-a-handshake-failure" }}
alert = {{ min_regions = 1 }}
[checks.tls]
host = "localhost"
address = "127.0.0.1"
port = {tls13_port}
stores = {{ demo = "{ca}" }}
trust_stores = ["demo"]
profiles = ["modern", "legacy"]
# Vendor A's devices run an OpenSSL 1.0.2-class stack: it must handshake too.
must_pass = ["modern/demo", "legacy/demo"]

[[sinks]]
name = "console"
console = {{}}

[[routes]]
name = "everything"
sinks = ["console"]
"#,
        api = t.api.url("/health"),
        ingest = t.ingest_http.url("/telemetry"),
        lb = t.lb_port,
        login = t.login.url("/login"),
        fresh = t.fresh.url("/v1/telemetry/latest"),
        ns1 = t.dns_primary.udp_url(),
        ns2 = t.dns_cache.udp_url(),
        addtrust_port = t.addtrust.addr().port(),
        old_root = t.addtrust_stores[0].display(),
        new_root = t.addtrust_stores[1].display(),
        both_roots = t.addtrust_stores[2].display(),
        token_url = t.tokens.url("/oauth/token"),
        resource_url = t.tokens.url("/api/data"),
        client_secret = t.client_secret.display(),
        tls13_port = t.tls13_only.addr().port(),
    ));
    s
}

fn probe_toml(dir: &Path, region: &str, grpc: SocketAddr) -> String {
    format!(
        r#"
[probe]
name = "probe-{region}"
region = "{region}"

[controller]
url = "http://{grpc}"
token = {{ file = "{}" }}
allow_plaintext = true
heartbeat_interval = "2s"
"#,
        dir.join(format!("{region}.token")).display()
    )
}

/// Runs the demo until `--for` has passed or Ctrl-C.
async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let duration = match &args.duration {
        Some(d) => Some(parse_duration(d).map_err(|e| anyhow::anyhow!("--for: {e}"))?),
        None => None,
    };
    let dir = tempfile::Builder::new().prefix("outpost-demo-").tempdir()?;
    for r in REGIONS {
        let token = format!(
            "demo-token-{r}-{}-0123456789abcdef0123456789abcdef",
            std::process::id()
        );
        std::fs::write(dir.path().join(format!("{r}.token")), token)?;
    }
    let targets = start_targets(dir.path())
        .await
        .context("starting demo targets")?;
    let text = controller_toml(dir.path(), &targets, &args.listen);
    let ping_id = demo_ping_id();
    let vars = [("DEMO_HB_ETL".to_owned(), ping_id.clone())];
    let config = outpost_controller::config::parse(&text, "demo controller config", &vars)
        .map_err(|e| anyhow::anyhow!("demo config is invalid (a bug): {e}"))?;
    let controller = outpost_controller::Controller::start(config)
        .await
        .context("starting the controller")?;
    let grpc = controller.grpc_addr();
    let http = controller.http_addr();

    let mut probes = Vec::new();
    for r in REGIONS {
        let text = probe_toml(dir.path(), r, grpc);
        let raw: outpost_probe::config::RawProbeFile = outpost_probe::config::load::load_str(
            &text,
            "demo probe config",
            outpost_probe::config::ENV,
            &[],
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut cfg = raw
            .validate("demo probe config")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.outbox.dir = dir.path().join(format!("outbox-{r}"));
        probes.push(outpost_probe::spawn(cfg, None)?);
    }

    println!("Outpost demo running.");
    println!("  status page:  http://{http}/");
    println!("  API:          http://{http}/api/v1/checks");
    println!("  probes:       {} (gRPC on {grpc})", REGIONS.join(", "));
    println!(
        "  replaying:    healthy HTTPS API; IOT HTTP->HTTPS 308 for a machine client; TIS load-balanced pair with one 502 backend;"
    );
    println!(
        "                HTTPS->HTTP login redirect; IOT data 17 h stale; blue->green CNAME flip at +5s with a lagging resolver;"
    );
    println!(
        "                the AddTrust root expiry: a cross-signed chain that legacy clients cannot build;"
    );
    println!(
        "                Vendor B sessions: 4 s tokens, one client that never renews and one that does"
    );
    println!(
        "                the IOT ETL heartbeat: a job that pings every 2 s, then silently stops at +{} s;",
        ETL_EVERY.as_secs() * u64::from(ETL_RUNS - 1)
    );
    println!(
        "                Vendor A's handshake failure: a TLS 1.3-only server and an OpenSSL 1.0.2-class client"
    );
    let etl = tokio::spawn(etl_job(http, ping_id));
    let primary = targets.dns_primary.clone();
    let flip = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        match primary.set_cname("app.demo.test.", "green.demo.test.", 3) {
            Ok(()) => tracing::info!(
                "demo: app.demo.test flipped from blue to green on the primary resolver"
            ),
            Err(e) => tracing::warn!(error = %e, "demo: CNAME flip failed"),
        }
    });
    match duration {
        Some(d) => {
            println!("  exiting after {}", Dur(d));
            tokio::time::sleep(d).await;
        }
        None => {
            println!("  press Ctrl-C to stop");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    flip.abort();
    etl.abort();
    for p in probes {
        p.shutdown().await;
    }
    let summary = outpost_controller::summary::render(&controller).await;
    controller.shutdown().await;
    drop(targets.ingest_https);
    println!("{summary}");
    Ok(())
}

/// A ping id for this run: unguessable enough for a loopback demo, and
/// valid (22+ URL-safe characters).
fn demo_ping_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("demo-etl-{nanos:x}-{:x}", std::process::id())
}

/// The IOT ETL job: pings the controller after each run like a cron job
/// with `&& curl …/ping/<id>`, then stops without a word (the incident: no
/// error anywhere, just no data for 17 hours).
async fn etl_job(http: SocketAddr, ping_id: String) {
    let path = format!("/ping/{ping_id}");
    for run in 0..ETL_RUNS {
        if run > 0 {
            tokio::time::sleep(ETL_EVERY).await;
        }
        match outpost_testkit::client::http(http, "POST", &path, b"etl run complete: 1200 rows")
            .await
        {
            Ok(r) if r.status == 200 => tracing::debug!(run, "demo: ETL job pinged"),
            Ok(r) => tracing::warn!(status = r.status, "demo: ETL heartbeat ping refused"),
            Err(e) => tracing::warn!(error = %e, "demo: ETL heartbeat ping failed"),
        }
    }
    tracing::info!("demo: the ETL job stopped (silently, as in the incident)");
}

fn init_logging() {
    let filter = std::env::var("OUTPOST_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("OUTPOST_LOG={filter:?} is not a valid filter ({e}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = DemoArgs::parse();
    init_logging();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
