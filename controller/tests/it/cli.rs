//! The binary's exit codes and messages for config problems.

use std::process::Command;

fn controller() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outpost-controller"));
    // Keep the test's own OUTPOST_* variables (if any) out of the child.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OUTPOST_")) {
        c.env_remove(k);
    }
    c
}

const GOOD: &str = "[[probes]]\nname = \"eu-west-1\"\nregion = \"eu-west\"\ntoken = { env = \"CLI_TEST_TOKEN\" }\n\
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
        .env("CLI_TEST_TOKEN", "t")
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
            .env("CLI_TEST_TOKEN", "t")
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
            .env("CLI_TEST_TOKEN", "t")
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
        .env("CLI_TEST_TOKEN", "t")
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
        .env("CLI_TEST_TOKEN", "t")
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
    let out = controller()
        .args(["check-config", example.to_str().unwrap()])
        .env("OUTPOST_TOKEN_EU_WEST_1", "token-eu")
        .env("OUTPOST_TOKEN_US_EAST_1", "token-us")
        .env("OUTPOST_TOKEN_AP_SOUTH_1", "token-ap")
        .env("PD_ROUTING_KEY", "R0UT1NGKEY0000000000000000000000")
        .env("OUTPOST_HOOK_AUTH", "Bearer hook")
        .env("OUTPOST_HB_NIGHTLY_ETL", "hb-example-0123456789abcdef")
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
        "ok: 3 probes, 3 checks, 3 sinks"
    );
}
