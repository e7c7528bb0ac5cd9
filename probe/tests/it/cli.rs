//! The `outpost-probe` binary: exit codes and messages for good and bad config,
//! and the example configs shipped in deploy/.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use outpost_testkit::{HttpServer, Reply};

fn probe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outpost-probe"));
    // A clean environment: stray OUTPOST_* variables from the caller would be errors.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn deploy(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/config")
        .join(file)
}

#[test]
fn example_configs_in_deploy_are_valid() {
    // As the shipped unit runs it: the token is a systemd credential.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("probe.token"),
        "example-token-0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let out = probe()
        .args(["check-config"])
        .arg(deploy("probe.example.toml"))
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without systemd's directory, or without the file: exit 78 naming the
    // key and what is missing.
    let out = probe()
        .args(["check-config"])
        .arg(deploy("probe.example.toml"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("controller.token") && stderr.contains("$CREDENTIALS_DIRECTORY is not set"),
        "{stderr}"
    );
    let empty = tempfile::tempdir().unwrap();
    let out = probe()
        .args(["check-config"])
        .arg(deploy("probe.example.toml"))
        .env("CREDENTIALS_DIRECTORY", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("controller.token") && stderr.contains("probe.token"),
        "{stderr}"
    );
    let out = probe()
        .args(["check-config"])
        .arg(deploy("checks.example.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn misspelled_key_exits_78_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("probe.toml");
    std::fs::write(&f, "[[checks]]\nid = \"a\"\nhttp = { url = \"http://127.0.0.1:1/\", expected_stauts = [200] }\n").unwrap();
    for sub in ["check-config", "once"] {
        let mut cmd = probe();
        if sub == "once" {
            cmd.args(["once", "--config"]);
        } else {
            cmd.arg(sub);
        }
        let out = cmd.arg(&f).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("checks[0].http.expected_stauts"),
            "{sub}: {err}"
        );
    }
}

#[test]
fn unknown_outpost_variable_exits_78() {
    let out = probe()
        .args(["check-config"])
        .arg(deploy("checks.example.toml"))
        .env("OUTPOST_CONTROLER_URL", "https://typo.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OUTPOST_CONTROLER_URL"));
}

#[test]
fn plaintext_controller_needs_explicit_permission() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("probe.toml");
    std::fs::write(
        &f,
        "[probe]\nname = \"p\"\nregion = \"r\"\n[controller]\nurl = \"http://127.0.0.1:7443\"\ntoken = { env = \"T\" }\n",
    )
    .unwrap();
    // Refused by default, for `check-config` and `run` alike (the token is
    // never sent), naming the key and the opt-in.
    for sub in ["check-config", "run"] {
        let mut cmd = probe();
        if sub == "run" {
            cmd.args(["run", "--config"]);
        } else {
            cmd.arg(sub);
        }
        let out = cmd
            .arg(&f)
            .env("T", "plaintext-test-token-0123456789abcdef")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("controller.url") && stderr.contains("controller.allow_plaintext"),
            "{stderr}"
        );
    }
    // A token under 32 characters is refused, its value not printed.
    let out = probe()
        .arg("check-config")
        .arg(&f)
        .env("T", "x-short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("controller.token") && stderr.contains("at least 32"),
        "{stderr}"
    );
    assert!(!stderr.contains("x-short"), "{stderr}");
}

#[tokio::test]
async fn once_prints_json_lines_and_exits_1_when_a_check_fails() {
    let srv = HttpServer::builder()
        .route("/ok", Reply::text(200, "ok"))
        .route("/moved", Reply::redirect(308, "https://elsewhere.test/"))
        .run()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("checks.toml");
    std::fs::write(
        &f,
        format!(
            "[[checks]]\nid = \"ok\"\nhttp = {{ url = \"{}\" }}\n[[checks]]\nid = \"moved\"\nhttp = {{ url = \"{}\" }}\n",
            srv.url("/ok"),
            srv.url("/moved")
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        probe()
            .args(["once", "--format", "json", "--config"])
            .arg(&f)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    let by_id = |id: &str| lines.iter().find(|l| l["check_id"] == id).cloned().unwrap();
    assert_eq!(by_id("ok")["ok"], true);
    assert!(by_id("ok")["phases_us"]["total"].as_u64().unwrap() > 0);
    assert_eq!(by_id("moved")["failure_code"], "redirect_not_followed");
    assert_eq!(
        by_id("moved")["details"]["location"],
        "https://elsewhere.test/"
    );
}

/// `check --timeout` bounds the whole command: the request and the TLS
/// matrix run concurrently, each within it (one after the other took twice).
#[tokio::test]
async fn check_is_bounded_by_its_timeout_overall() {
    let srv = outpost_testkit::Hostile::silent().await.unwrap();
    let url = format!("https://127.0.0.1:{}/", srv.addr().port());
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        probe()
            .args(["check", "--timeout", "1500ms", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        took < std::time::Duration::from_millis(2600),
        "check took {took:?} with --timeout 1500ms"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("timeout"), "{text}");
    assert!(text.contains("TLS:"), "{text}");
}

#[tokio::test]
async fn check_prints_json_lines_with_format_json() {
    let pki = outpost_testkit::Pki::new("root");
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let srv = HttpServer::builder()
        .route("/old", Reply::redirect(308, "/new"))
        .route("/new", Reply::text(200, "ok"))
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    let url = srv.url("/old");
    let out = tokio::task::spawn_blocking(move || {
        probe()
            .args(["check", "--format", "json", "--ca-file"])
            .arg(&ca)
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["kind"], "http");
    assert_eq!(lines[0]["ok"], true);
    let chain = lines[0]["details"]["chain"].as_array().unwrap();
    assert_eq!(chain[0]["status"], 308);
    assert_eq!(chain[1]["status"], 200);
    assert_eq!(lines[1]["kind"], "tls");
    assert!(
        lines[1]["details"]["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["combination"] == "modern/ca-file" && c["ok"] == true),
        "{}",
        lines[1]["details"]
    );
}

#[tokio::test]
async fn check_runs_a_tcp_url_with_send_and_expect() {
    let redis = outpost_testkit::TcpServer::redis().run().await.unwrap();
    let url = format!("tcp://127.0.0.1:{}", redis.addr().port());
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        probe()
            .args([
                "check",
                &u,
                "--send",
                "PING\\r\\n",
                "--expect",
                "^\\+PONG",
                "--format",
                "json",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["kind"], "tcp");
    assert_eq!(line["details"]["steps"][1]["received"], "+PONG\\r\\n");
    assert_eq!(redis.lines(), ["PING"]);
    // Text, failing: the verdict names the code.
    let out = tokio::task::spawn_blocking(move || {
        probe()
            .args(["check", &url, "--expect", "^220 ", "--timeout", "500ms"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict FAIL timeout"), "{text}");
}

#[tokio::test]
async fn check_runs_a_grpc_url_naming_the_service() {
    let srv = outpost_testkit::GrpcHealthServer::start().await.unwrap();
    srv.set_not_serving("orders.v1.Orders").await;
    let url = format!("grpc://127.0.0.1:{}/orders.v1.Orders", srv.addr().port());
    let out = tokio::task::spawn_blocking(move || probe().args(["check", &url]).output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status NOT_SERVING"), "{text}");
    assert!(text.contains("verdict FAIL grpc_not_serving"), "{text}");
}

#[tokio::test]
async fn check_pings_an_icmp_url() {
    let out = tokio::task::spawn_blocking(|| {
        probe()
            .args(["check", "icmp://127.0.0.1", "--format", "json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["kind"], "icmp");
    if line["failure_code"] == "icmp_not_permitted" {
        eprintln!("skipping: {}", line["failure_message"]);
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{line}");
    assert_eq!(line["details"]["received"], 5);
}

#[test]
fn misspelled_key_exits_78_with_the_nearest_known_key_and_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.toml");
    for (text, expected) in [
        (
            "[probe]\nname = \"p\"\nregoin = \"r\"\n",
            "probe.regoin: unknown field `regoin`",
        ),
        (
            "[[checks]]\nid = \"a\"\nhttp = { url = \"http://127.0.0.1:1/\", expected_statsu = [200] }\n",
            "did you mean `checks[0].http.expected_status`?",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = probe().arg("check-config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
    // The first case's suggestion, in full.
    std::fs::write(&path, "[probe]\nname = \"p\"\nregoin = \"r\"\n").unwrap();
    let out = probe().arg("check-config").arg(&path).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean `probe.region`?"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn set_overrides_the_file_and_its_mistakes_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    std::fs::write(
        &path,
        "[scheduler]\nmax_concurrency = 0\n[[checks]]\nid = \"a\"\nhttp = { url = \"http://127.0.0.1:1/\" }\n",
    )
    .unwrap();
    // The file alone is refused; the command line fixes it.
    let out = probe().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let out = probe()
        .args(["check-config", "--set", "scheduler.max_concurrency=8"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A misspelled key or a wrong type: exit 78, the key, and where it came from.
    for (set, expected) in [
        (
            "scheduler.max_concurency=8",
            "did you mean `scheduler.max_concurrency`?",
        ),
        (
            "scheduler.max_concurrency=\"8\"",
            "(set by --set scheduler.max_concurrency)",
        ),
        ("scheduler", "--set: --set \"scheduler\" has no '='"),
    ] {
        let out = probe()
            .args(["check-config", "--set", set])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{set}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
}
