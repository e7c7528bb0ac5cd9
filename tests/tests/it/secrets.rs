//! No configured secret leaks: the real binaries run at trace level
//! (`OUTPOST_LOG=trace`, stderr captured), a target echoes the check's
//! credentials and URL back in its body, a check fails and pages; then the
//! controller's and the probe's logs, the API responses, the pages, the
//! database files (with WAL) and the outbox files are searched for every
//! secret: the probe token, the check's bearer token and basic-auth password
//! (and its base64 form), a secret query parameter, the PagerDuty routing
//! key, the Slack webhook URL and bot token and the Opsgenie API key. None
//! is found — while the run is shown to have used each of them.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use outpost_e2e::{Fleet, binary};
use outpost_testkit::{
    HttpServer, OpsgenieReceiver, PagerReceiver, Reply, SlackReceiver, client, free_port,
    wait::eventually,
};

const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";
const BEARER: &str = "bearer-secret-6f1d0c2b9a8e7d6c5b4a";
const PASSWORD: &str = "basic-password-1a2b3c4d5e6f";
const QUERY: &str = "query-secret-9z8y7x6w5v4u";
const SLACK_TOKEN: &str = "xoxb-slack-secret-0a9b8c7d6e5f";
const OPSGENIE_KEY: &str = "opsgenie-secret-4f3e2d1c0b9a";

fn command(bin: &str, config: &std::path::Path, log: &std::path::Path) -> Command {
    let mut cmd = Command::new(binary(bin));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OUTPOST_")) {
        cmd.env_remove(k);
    }
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .env("OUTPOST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    cmd
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_appears_in_logs_api_pages_database_or_outbox() {
    let target = HttpServer::builder()
        .handler("/echo", |req| {
            // A hostile or careless target: echoes the credential and the URL.
            let auth = req.header("authorization").unwrap_or_default().to_owned();
            Reply::text(200, format!("you sent {auth} to {}", req.path))
        })
        .run()
        .await
        .unwrap();
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let slack = SlackReceiver::start(SLACK_TOKEN, &["C0SECRETS"])
        .await
        .unwrap();
    let opsgenie = OpsgenieReceiver::start(OPSGENIE_KEY).await.unwrap();
    let fleet = Fleet::new();
    let slack_url = fleet.secret("slack.url", &slack.webhook_url());
    let slack_token = fleet.secret("slack.token", SLACK_TOKEN);
    let og_key = fleet.secret("og.key", OPSGENIE_KEY);
    let dir = fleet.dir.path().to_path_buf();
    let key = fleet.secret("pd.key", ROUTING_KEY);
    let probes = fleet.probes_toml(&["eu-west"]);
    let probe_token = std::fs::read_to_string(dir.join("eu-west.token")).unwrap();
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let url = format!("{}?page=1&api_key={QUERY}", target.url("/echo"));
    // The check credentials exist only in the probe's environment: the
    // controller validates and ships references.
    let controller_toml = format!(
        r#"[server]
grpc_listen = "{grpc}"
http_listen = "{http}"
allow_plaintext_probes = true
allow_unauthenticated = true
[store]
path = "{db}"
{probes}
[[checks]]
id = "bearer"
interval = "300ms"
timeout = "250ms"
alert = {{ min_regions = 1, confirmations = 1 }}
http = {{ url = "{url}", bearer_token = {{ env = "E2E_BEARER" }}, body_contains = "never-there" }}

[[checks]]
id = "basic"
interval = "300ms"
timeout = "250ms"
alert = {{ min_regions = 1, confirmations = 1 }}
http = {{ url = "{url}", basic_auth = {{ username = "outpost", password = {{ env = "E2E_PASSWORD" }} }}, body_contains = "never-there" }}

[[sinks]]
name = "pagerduty"
pagerduty = {{ routing_key = {{ file = "{key}" }}, api_url = "{pd}" }}

[[sinks]]
name = "slack-hook"
slack = {{ url = {{ file = "{slack_url}" }} }}

[[sinks]]
name = "slack-api"
slack = {{ token = {{ file = "{slack_token}" }}, channel = "C0SECRETS", api_url = "{slack_api}" }}

[[sinks]]
name = "opsgenie"
opsgenie = {{ api_key = {{ file = "{og_key}" }}, api_url = "{og}" }}

[[routes]]
name = "oncall"
sinks = ["pagerduty", "slack-hook", "slack-api", "opsgenie"]
"#,
        db = fleet.db().display(),
        key = key.display(),
        pd = pager.url(),
        slack_url = slack_url.display(),
        slack_token = slack_token.display(),
        slack_api = slack.api_url(),
        og_key = og_key.display(),
        og = opsgenie.url(),
    );
    let ctl_config = dir.join("controller.toml");
    std::fs::write(&ctl_config, controller_toml).unwrap();
    let ctl_log = dir.join("controller.log");
    let controller = command("outpost-controller", &ctl_config, &ctl_log)
        .spawn()
        .unwrap();
    let probe_config = fleet.probe_file("eu-west", grpc, "");
    let probe_log = dir.join("probe.log");
    let probe = command("outpost-probe", &probe_config, &probe_log)
        .env("E2E_BEARER", BEARER)
        .env("E2E_PASSWORD", PASSWORD)
        .spawn()
        .unwrap();

    // Both checks fail (body_mismatch, the echo in their message) and page.
    let events = pager.wait_for_events(2, Duration::from_secs(30)).await;
    if events.len() < 2 {
        stop(probe);
        stop(controller);
        let tail = |p: &std::path::Path| {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            t.lines()
                .filter(|l| {
                    !l.contains(" h2::") && !l.contains("sqlx::query") && !l.contains("hyper")
                })
                .take(60)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "no pages: {events:?}\ncontroller:\n{}\nprobe:\n{}",
            tail(&ctl_log),
            tail(&probe_log)
        );
    }
    // Every sink was used with its secret.
    assert!(
        slack
            .wait_for_messages(4, Duration::from_secs(30))
            .await
            .len()
            >= 4
    );
    assert!(
        opsgenie
            .wait_for_requests(2, Duration::from_secs(30))
            .await
            .len()
            >= 2
    );
    let seen = target.requests();
    let basic =
        outpost_probe::check::http::request::base64(format!("outpost:{PASSWORD}").as_bytes());
    assert!(
        seen.iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {BEARER}")))
    );
    assert!(
        seen.iter()
            .any(|r| r.header("authorization") == Some(&format!("Basic {basic}")))
    );
    assert!(seen.iter().any(|r| r.path.contains(QUERY)));

    let mut shown = String::new();
    for path in [
        "/api/v1/checks",
        "/api/v1/checks/bearer",
        "/api/v1/checks/basic",
        "/api/v1/alerts",
        "/api/v1/probes",
        "/",
        "/checks/bearer",
        "/checks/basic",
    ] {
        let resp = eventually(path, Duration::from_secs(10), || async {
            client::get(http, path)
                .await
                .ok()
                .filter(|r| r.status == 200)
        })
        .await;
        shown.push_str(&String::from_utf8_lossy(&resp.body));
    }
    assert!(
        shown.contains("REDACTED"),
        "the secret query value is shown redacted"
    );
    assert!(shown.contains("body"), "the failure is on the page");
    stop(probe);
    stop(controller);

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("controller log".into(), std::fs::read(&ctl_log).unwrap()),
        ("probe log".into(), std::fs::read(&probe_log).unwrap()),
        ("API and pages".into(), shown.into_bytes()),
        (
            "pager payloads".into(),
            format!(
                "{:?}",
                pager
                    .requests()
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect::<Vec<_>>()
            )
            .into_bytes(),
        ),
    ];
    for f in ["outpost.db", "outpost.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(f)) {
            places.push((f.into(), bytes));
        }
    }
    let mut outbox = Vec::new();
    files_under(&fleet.outbox_dir("eu-west"), &mut outbox);
    assert!(!outbox.is_empty(), "the outbox was written");
    for f in outbox {
        places.push((f.display().to_string(), std::fs::read(&f).unwrap()));
    }
    // The logs are trace level and the database holds the results.
    let ctl_text = String::from_utf8_lossy(&places[0].1).into_owned();
    let probe_text = String::from_utf8_lossy(&places[1].1).into_owned();
    assert!(
        ctl_text.contains("TRACE") || ctl_text.contains("trace"),
        "{ctl_text:.2000}"
    );
    assert!(
        probe_text.contains("TRACE") || probe_text.contains("trace"),
        "{probe_text:.2000}"
    );
    assert!(
        places
            .iter()
            .any(|(n, b)| n.starts_with("outpost.db") && b.len() > 4096)
    );

    let secrets = [
        ("probe token", probe_token.trim().to_owned()),
        ("bearer token", BEARER.to_owned()),
        ("basic password", PASSWORD.to_owned()),
        ("basic header", basic),
        ("query parameter", QUERY.to_owned()),
        ("routing key", ROUTING_KEY.to_owned()),
        ("slack webhook url", slack.webhook_url()),
        ("slack token", SLACK_TOKEN.to_owned()),
        ("opsgenie key", OPSGENIE_KEY.to_owned()),
    ];
    let mut leaks = Vec::new();
    for (place, bytes) in &places {
        for (what, secret) in &secrets {
            // PagerDuty's Events API takes the routing key in the payload.
            if *place == "pager payloads" && *what == "routing key" {
                continue;
            }
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                leaks.push(format!("{what} in {place}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets found: {leaks:?}");
}
