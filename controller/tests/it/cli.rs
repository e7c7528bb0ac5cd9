//! The binary's exit codes and messages for config problems.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure

use std::process::Command;

fn controller() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outpost-controller"));
    // Keep the test's own OUTPOST_* variables (if any) out of the child.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OUTPOST_")) {
        c.env_remove(k);
    }
    c
}

const TOKEN: &str = "cli-test-token-0123456789abcdef0123456789";

const GOOD: &str = "[server]\nallow_plaintext_probes = true\n[[probes]]\nname = \"eu-west-1\"\nregion = \"eu-west\"\ntoken = { env = \"CLI_TEST_TOKEN\" }\n\
[[checks]]\nid = \"api\"\nhttp = { url = \"https://api.example.net/\" }\n\
[[sinks]]\nname = \"pagerduty\"\npagerduty = { routing_key = { env = \"CLI_TEST_PD\" } }\n\
[[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\"]\n";

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = controller()
        .args(["check-config", path.to_str().unwrap()])
        .env("CLI_TEST_TOKEN", TOKEN)
        .env("CLI_TEST_PD", "k")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 1 probes, 1 checks, 1 sinks"
    );
}

/// Secure by default: no `server.tls` and no opt-in by name → exit 78
/// naming both keys, for `check-config` and `run` alike; a short probe
/// token → exit 78 naming it.
#[test]
fn default_controller_without_tls_or_with_a_short_token_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    let no_opt_in = GOOD.replace("allow_plaintext_probes = true\n", "");
    std::fs::write(&path, &no_opt_in).unwrap();
    for sub in [
        vec!["check-config", path.to_str().unwrap()],
        vec!["run", "--config", path.to_str().unwrap()],
    ] {
        let out = controller()
            .args(&sub)
            .env("CLI_TEST_TOKEN", TOKEN)
            .env("CLI_TEST_PD", "k")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{sub:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("server.tls") && stderr.contains("server.allow_plaintext_probes"),
            "{stderr}"
        );
    }
    std::fs::write(&path, GOOD).unwrap();
    let out = controller()
        .args(["check-config", path.to_str().unwrap()])
        .env("CLI_TEST_TOKEN", "short-token")
        .env("CLI_TEST_PD", "k")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("probes[0].token") && stderr.contains("at least 32"),
        "{stderr}"
    );
    assert!(!stderr.contains("short-token"), "{stderr}");
}

#[test]
fn misspelled_key_exits_78_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, GOOD.replace("routing_key", "routing_kye")).unwrap();
    for sub in [
        vec!["check-config", path.to_str().unwrap()],
        vec!["run", "--config", path.to_str().unwrap()],
    ] {
        let out = controller()
            .args(&sub)
            .env("CLI_TEST_TOKEN", TOKEN)
            .env("CLI_TEST_PD", "k")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{sub:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("sinks[0].pagerduty.routing_kye"),
            "{stderr}"
        );
    }
}

#[test]
fn a_heartbeat_with_an_unknown_zone_or_a_bad_schedule_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    for (heartbeat, key) in [
        (
            "schedule = \"0 3 * * *\", tz = \"Mars/Olympus\"",
            "checks[1].heartbeat.tz",
        ),
        ("schedule = \"0 3 * *\"", "checks[1].heartbeat.schedule"),
        (
            "schedule = \"0 3 * * *\", period = \"1d\"",
            "checks[1].heartbeat.schedule",
        ),
    ] {
        let text = format!(
            "{GOOD}[[checks]]\nid = \"etl\"\nheartbeat = {{ {heartbeat}, grace = \"5m\", ping_id = {{ env = \"CLI_TEST_HB\" }} }}\n"
        );
        std::fs::write(&path, text).unwrap();
        let out = controller()
            .args(["check-config", path.to_str().unwrap()])
            .env("CLI_TEST_TOKEN", TOKEN)
            .env("CLI_TEST_PD", "k")
            .env("CLI_TEST_HB", "hb-cli-0123456789abcdefghij")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{key}: {stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}

#[test]
fn unknown_outpost_variable_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = controller()
        .args(["check-config", path.to_str().unwrap()])
        .env("CLI_TEST_TOKEN", TOKEN)
        .env("CLI_TEST_PD", "k")
        .env("OUTPOST_HTTP_LISTN", "0.0.0.0:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OUTPOST_HTTP_LISTN"));
}

#[test]
fn unset_secret_exits_78_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = controller()
        .args(["check-config", path.to_str().unwrap()])
        .env("CLI_TEST_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sinks[0].pagerduty.routing_key") && stderr.contains("CLI_TEST_PD"),
        "{stderr}"
    );
}

#[test]
fn example_config_in_deploy_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/config/controller.example.toml");
    // The example names /etc/outpost files; point them at real PEM files.
    let dir = tempfile::tempdir().unwrap();
    let pki = outpost_testkit::Pki::new("cli-example-root");
    let leaf = pki.leaf(&["controller.example.net"]);
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::write(&cert, leaf.chain_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace(
            "/run/credentials/outpost-controller.service/controller.pem",
            cert.to_str().unwrap(),
        )
        .replace(
            "/run/credentials/outpost-controller.service/controller.key",
            key.to_str().unwrap(),
        );
    assert!(
        text.contains(cert.to_str().unwrap()),
        "the example sets server.tls"
    );
    let example = dir.path().join("controller.toml");
    std::fs::write(&example, text).unwrap();
    let out = controller()
        .args(["check-config", example.to_str().unwrap()])
        .env(
            "OUTPOST_TOKEN_EU_WEST_1",
            "token-eu-0123456789abcdef0123456789abcdef",
        )
        .env(
            "OUTPOST_TOKEN_US_EAST_1",
            "token-us-0123456789abcdef0123456789abcdef",
        )
        .env(
            "OUTPOST_TOKEN_AP_SOUTH_1",
            "token-ap-0123456789abcdef0123456789abcdef",
        )
        .env("PD_ROUTING_KEY", "R0UT1NGKEY0000000000000000000000")
        .env("OUTPOST_HOOK_AUTH", "Bearer hook")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
        )
        .env("SLACK_BOT_TOKEN", "xoxb-0000-1111-example")
        .env("OPSGENIE_API_KEY", "eb243592-faa2-4ba2-a551-1afdf565c889")
        .env("OUTPOST_HB_NIGHTLY_ETL", "hb-example-0123456789abcdef")
        .env(
            "OUTPOST_PROMETHEUS_TOKEN",
            "prometheus-token-0123456789abcdef0123456789",
        )
        .env("OUTPOST_HB_NIGHTLY_BACKUP", "hb-example-backup-0123456789")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 3 probes, 5 checks, 6 sinks"
    );
}

fn run_with(text: &str, sub: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, text).unwrap();
    let args: Vec<&str> = match sub {
        "run" => vec!["run", "--config", path.to_str().unwrap()],
        _ => vec!["check-config", path.to_str().unwrap()],
    };
    controller()
        .args(&args)
        .env("CLI_TEST_TOKEN", TOKEN)
        .env("CLI_TEST_PD", "k")
        .output()
        .unwrap()
}

#[test]
fn non_loopback_http_without_tls_or_credentials_exits_78_naming_the_keys() {
    let exposed = GOOD.replacen("[server]\n", "[server]\nhttp_listen = \"0.0.0.0:0\"\n", 1);
    for sub in ["check-config", "run"] {
        let out = run_with(&exposed, sub);
        assert_eq!(out.status.code(), Some(78), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("server.http_tls"), "{sub}: {stderr}");
        assert!(stderr.contains("server.allow_insecure_http"), "{stderr}");
        assert!(stderr.contains("auth"), "{stderr}");
        assert!(stderr.contains("server.allow_unauthenticated"), "{stderr}");
    }
    // Opting in by name to both starts (check-config says ok).
    let opted = GOOD.replacen(
        "[server]\n",
        "[server]\nhttp_listen = \"0.0.0.0:0\"\nallow_insecure_http = true\nallow_unauthenticated = true\n",
        1,
    );
    let out = run_with(&opted, "check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The default (no [server]) is loopback and valid.
    assert_eq!(run_with(GOOD, "check-config").status.code(), Some(0));
}

#[test]
fn hash_password_prints_a_phc_string_that_the_config_accepts() {
    use std::io::Write as _;
    let mut child = controller()
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery staple\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(outpost_controller::auth::password::verify_now(
        b"correct horse battery staple",
        &phc
    ));
    let with_user = format!(
        "{GOOD}[[auth.users]]\nname = \"alice\"\nrole = \"admin\"\npassword_hash = \"{phc}\"\n"
    );
    assert_eq!(run_with(&with_user, "check-config").status.code(), Some(0));
    // A short password is refused.
    let mut child = controller()
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hunter2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_literal_secret_in_password_hash_exits_78_at_its_path() {
    let text = format!(
        "{GOOD}[[auth.users]]\nname = \"alice\"\nrole = \"admin\"\npassword_hash = \"hunter2\"\n"
    );
    let out = run_with(&text, "check-config");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.users[0].password_hash"), "{stderr}");
}

#[test]
fn misspelled_key_exits_78_with_the_nearest_known_key_and_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    let typo = GOOD.replace("routing_key", "routing_kye");
    std::fs::write(&path, typo).unwrap();
    let out = controller()
        .args(["check-config", path.to_str().unwrap()])
        .env("CLI_TEST_TOKEN", TOKEN)
        .env("CLI_TEST_PD", "k")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sinks[0].pagerduty.routing_kye: unknown field `routing_kye`")
            && stderr.contains("did you mean `sinks[0].pagerduty.routing_key`?"),
        "{stderr}"
    );
    // Nothing within two edits: the known keys, no guess.
    let far = GOOD.replace("[server]\n", "[server]\ncolour = \"red\"\n");
    std::fs::write(&path, far).unwrap();
    let out = controller()
        .args(["check-config", path.to_str().unwrap()])
        .env("CLI_TEST_TOKEN", TOKEN)
        .env("CLI_TEST_PD", "k")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.colour: unknown field `colour`")
            && !stderr.contains("did you mean"),
        "{stderr}"
    );
}

#[test]
fn set_overrides_file_and_environment_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, GOOD).unwrap();
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = controller();
        c.arg("check-config").args(args).arg(&path);
        c.env("CLI_TEST_TOKEN", TOKEN).env("CLI_TEST_PD", "k");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // The environment breaks the listen address; --set (applied last) repairs it.
    let bad_env = [("OUTPOST_GRPC_LISTEN", "nowhere")];
    let out = check(&[], &bad_env);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.grpc_listen"));
    let out = check(&["--set", "server.grpc_listen=127.0.0.1:0"], &bad_env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the other way round: a bad --set wins over a good file.
    let out = check(&["--set", "store.retention=30"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("store.retention") && stderr.contains("(set by --set store.retention)"),
        "{stderr}"
    );
}
