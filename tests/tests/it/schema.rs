//! The JSON Schemas printed by `outpost-probe schema` and `outpost-controller
//! schema` against every config shipped under deploy/ (the example files and
//! the TOML inside the Kubernetes ConfigMaps), checked by an independent
//! validator: Debian's python3-jsonschema (Draft 2020-12) reading the TOML
//! with Python's `tomllib`. A misspelled key must fail it, so the check is real.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

const VALIDATE: &str = r#"
import json, sys, tomllib
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
bad = 0
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        where = ".".join(map(str, e.path)) or "(root)"
        print(f"{path}: {where}: {e.message}")
        bad += 1
sys.exit(1 if bad else 0)
"#;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The schema a binary prints, written to `dir`.
fn schema_of(binary: &str, dir: &Path) -> PathBuf {
    let out = Command::new(outpost_e2e::binary(binary))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success(), "{binary} schema failed");
    let path = dir.join(format!("{binary}.schema.json"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// Runs the validator; Ok or the problems it printed.
fn validate(schema: &Path, files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(schema)
        .args(files)
        .output()
        .expect("/usr/bin/python3 (Debian's python3 with python3-jsonschema; .ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "python3-jsonschema is missing (apt-get install python3-jsonschema): {stderr}"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)))
    }
}

/// The TOML of a ConfigMap key (`  name.toml: |` and its indented block).
fn configmap_toml(yaml: &Path, key: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(yaml).unwrap();
    let header = format!("  {key}: |");
    let mut lines = text.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "{key} not in {}", yaml.display());
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect();
    let path = dir.join(format!("configmap-{key}"));
    std::fs::write(&path, body.join("\n")).unwrap();
    path
}

#[test]
fn every_shipped_config_validates_against_the_printed_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let probe = schema_of("outpost-probe", dir.path());
    let controller = schema_of("outpost-controller", dir.path());
    // What the binaries print is what deploy/schema/ holds (the unit tests
    // keep that in sync with the types; this proves the CLI prints it).
    for (printed, committed) in [
        (&probe, "deploy/schema/probe.schema.json"),
        (&controller, "deploy/schema/controller.schema.json"),
    ] {
        assert_eq!(
            std::fs::read_to_string(printed).unwrap(),
            std::fs::read_to_string(root().join(committed)).unwrap(),
            "{committed}"
        );
    }
    let config = root().join("deploy/config");
    let k8s = root().join("deploy/kubernetes");
    let probe_files = [
        config.join("probe.example.toml"),
        config.join("checks.example.toml"),
        configmap_toml(&k8s.join("probe-eu-west.yaml"), "probe.toml", dir.path()),
    ];
    let controller_files = [
        config.join("controller.example.toml"),
        configmap_toml(&k8s.join("controller.yaml"), "controller.toml", dir.path()),
    ];
    validate(&probe, &probe_files).unwrap();
    validate(&controller, &controller_files).unwrap();
}

#[test]
fn the_validator_refuses_misspelled_keys_bad_durations_and_literal_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let probe = schema_of("outpost-probe", dir.path());
    let controller = schema_of("outpost-controller", dir.path());
    for (schema, text, needle) in [
        (&probe, "[probe]\nname = \"p\"\nregoin = \"r\"\n", "regoin"),
        (
            &probe,
            "[[checks]]\nid = \"a\"\ninterval = \"30\"\nhttp = { url = \"http://x\" }\n",
            "interval",
        ),
        (
            &probe,
            "[controller]\nurl = \"https://c:1\"\ntoken = \"literal\"\n",
            "controller.token",
        ),
        (
            &probe,
            "[controller]\nurl = \"https://c:1\"\ntoken = { env = \"A\", file = \"/b\" }\n",
            "controller.token",
        ),
        (&probe, "[outbox]\nmax_size = 1024\n", "outbox.max_size"),
        (
            &controller,
            "[[sinks]]\nname = \"pd\"\npagerduty = { routing_kye = { env = \"K\" } }\n",
            "routing_kye",
        ),
        (
            &controller,
            "[[checks]]\nid = \"a\"\nhttp = { url = \"http://x\", http_version = \"http3\" }\n",
            "checks.0.http.http_version",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let err = validate(schema, std::slice::from_ref(&file)).expect_err(text);
        assert!(err.contains(needle), "{text}: {err}");
    }
}
