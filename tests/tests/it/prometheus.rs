//! A real Prometheus (Debian's `prometheus`) scrapes the controller's
//! `/metrics` with a bearer token and the probe's blackbox-compatible
//! `/probe` with a blackbox_exporter scrape config (`__param_target`
//! relabelling) — unchanged from one written for blackbox_exporter — and
//! PromQL over its HTTP API returns what the target did. The deploy/
//! alert rules pass `promtool check rules`.
//!
//! Without the binaries the test is skipped on a developer machine, never
//! in CI (`CI` set): `.ci/run` installs the package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use outpost_e2e::Fleet;
use outpost_probe::config::RawProbeFile;
use outpost_testkit::{HttpServer, Pki, Reply, client, free_port, pki::LeafOptions};

const API_TOKEN: &str = "scrape-0123456789abcdef0123456789abcdef";
const EXPORTER_TOKEN: &str = "probe-0123456789abcdef0123456789abcdef";

/// The binary at `$OUTPOST_TEST_<NAME>` or `/usr/bin/<name>`; `None` (skip)
/// only outside CI.
fn tool(name: &str) -> Option<PathBuf> {
    let var = format!("OUTPOST_TEST_{}", name.to_ascii_uppercase());
    let path = std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/usr/bin").join(name));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} not found: CI must run the Prometheus tests (apt-get install prometheus, or set {var})",
        path.display()
    );
    eprintln!(
        "skipping: {} not found (apt-get install prometheus, or set {var})",
        path.display()
    );
    None
}

/// A Prometheus child process, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Ours: the test started it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, config: &str) -> Prometheus {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = free_port().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus { child, port }
    }

    /// The vector of an instant query: (labels, value) per series.
    async fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let Ok(r) = client::get(addr, &format!("/api/v1/query?{q}")).await else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits until `promql` returns exactly one series, and gives its value.
    async fn one(&self, promql: &str) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.query(promql).await;
            if got.len() == 1 {
                return got[0].1;
            }
            if tokio::time::Instant::now() >= deadline {
                let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
                let targets = client::get(addr, "/api/v1/targets").await.map(|r| r.text());
                panic!("no single series for {promql} within 30 s: {got:?}; targets: {targets:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_controller_and_blackbox_style_probe() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };

    // The deploy/ rules are valid for this Prometheus.
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/outpost-alerts.yml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules {}: {}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // An https target whose leaf expires at a known second.
    let pki = Pki::new("prom-root");
    let not_after = time::OffsetDateTime::from_unix_timestamp(
        time::OffsetDateTime::now_utc().unix_timestamp() / 86_400 * 86_400 + 40 * 86_400,
    )
    .unwrap();
    let leaf = pki.leaf_with(LeafOptions {
        sans: vec!["localhost".into(), "127.0.0.1".into()],
        not_after,
        ..Default::default()
    });
    let target = HttpServer::builder()
        .route("/health", Reply::text(200, "ok"))
        .tls(leaf)
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let ca = pki.write_root_pem(fleet.dir.path()).unwrap();
    let api_token = fleet.secret("api.token", API_TOKEN);
    let exporter_token = fleet.secret("exporter.token", EXPORTER_TOKEN);

    // Controller: one http check in one region, /metrics behind a token.
    let body = format!(
        r#"{probes}
[[auth.tokens]]
name = "prometheus"
role = "viewer"
token = {{ file = "{api_token}" }}

[[checks]]
id = "api"
interval = "500ms"
timeout = "400ms"
http = {{ url = "{url}", ca_file = "{ca}" }}
"#,
        probes = fleet.probes_toml(&["eu-west"]),
        api_token = api_token.display(),
        url = target.url("/health"),
        ca = ca.display(),
    );
    let controller = fleet.controller("127.0.0.1:0", &body).await;

    // Probe: reports to the controller, and serves /probe with a module.
    let probe_text = format!(
        "[probe]\nname = \"probe-eu-west\"\nregion = \"eu-west\"\n[controller]\nurl = \"http://{grpc}\"\n\
         token = {{ file = \"{token}\" }}\nallow_plaintext = true\nheartbeat_interval = \"1s\"\n\
         [exporter]\nlisten = \"127.0.0.1:0\"\ntoken = {{ file = \"{exporter_token}\" }}\n\
         [exporter.modules.https_2xx]\ntimeout = \"3s\"\nhttp = {{ ca_file = \"{ca}\" }}\n",
        grpc = controller.grpc_addr(),
        token = fleet.dir.path().join("eu-west.token").display(),
        exporter_token = exporter_token.display(),
        ca = ca.display(),
    );
    let raw: RawProbeFile = outpost_probe::config::load::load_str(
        &probe_text,
        "test probe",
        outpost_probe::config::ENV,
        &[],
    )
    .unwrap();
    let mut cfg = raw.validate("test probe").unwrap_or_else(|e| panic!("{e}"));
    cfg.outbox.dir = fleet.outbox_dir("eu-west");
    let probe = outpost_probe::spawn(cfg, None).unwrap();
    let exporter = probe.exporter_addr.unwrap();

    // The exporter refuses a scrape without its token.
    let r = client::get(exporter, "/probe?target=x&module=https_2xx")
        .await
        .unwrap();
    assert_eq!(r.status, 401);

    // A scrape config as written for blackbox_exporter, plus the controller.
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: outpost-controller
    authorization:
      credentials_file: {api_token}
    static_configs:
      - targets: ["{http}"]
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [https_2xx]
    authorization:
      credentials_file: {exporter_token}
    static_configs:
      - targets: ["{target}"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {exporter}
"#,
        api_token = api_token.display(),
        exporter_token = exporter_token.display(),
        http = controller.http_addr(),
        target = target.url("/health"),
    );
    let prom = Prometheus::start(&prometheus, fleet.dir.path(), &config);

    let expiry = not_after.unix_timestamp() as f64;
    // Controller: the check's newest result, per region.
    assert_eq!(
        prom.one(r#"probe_success{job="outpost-controller",check="api",region="eu-west",kind="http"} == 1"#)
            .await,
        1.0
    );
    assert_eq!(
        prom.one(r#"probe_ssl_earliest_cert_expiry{job="outpost-controller",check="api"}"#)
            .await,
        expiry
    );
    assert_eq!(
        prom.one(r#"probe_http_status_code{job="outpost-controller",check="api"}"#)
            .await,
        200.0
    );
    assert!(
        prom.one(r#"sum(outpost_check_duration_seconds_count{job="outpost-controller",check="api",phase="total"}) > 0"#)
            .await
            > 0.0
    );
    // The probe's /probe, scraped blackbox-style.
    let instance = target.url("/health");
    assert_eq!(
        prom.one(&format!(
            r#"probe_success{{job="blackbox",instance="{instance}"}} == 1"#
        ))
        .await,
        1.0
    );
    assert_eq!(
        prom.one(r#"probe_ssl_earliest_cert_expiry{job="blackbox"}"#)
            .await,
        expiry
    );
    assert_eq!(
        prom.one(r#"probe_tls_version_info{job="blackbox",version="TLS 1.3"}"#)
            .await,
        1.0
    );
    // Every target is up: both endpoints answered every scrape they got.
    assert_eq!(prom.one(r#"min(up)"#).await, 1.0);
    drop(prom);
    probe.shutdown().await;
}
