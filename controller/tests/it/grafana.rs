//! deploy/grafana/outpost-dashboard.json: every PromQL expression names only
//! series the controller exports (its registry, `metrics::FAMILIES`, with a
//! histogram's `_bucket`/`_sum`/`_count`), the data source is the
//! `${DS_PROMETHEUS}` input, and `check`/`region` are template variables.
//! The blackbox-compatible `probe_*` series a panel uses are also checked
//! against the probe's side (`outpost_probe::blackbox::FAMILIES`, what its
//! `[exporter]` `/probe` answers): the same panel reads a controller scrape
//! or a blackbox-style scrape of the probes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use outpost_controller::metrics::{FAMILIES, Kind};

fn dashboard() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/outpost-dashboard.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Identifiers in a PromQL expression that look like our metric names.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_braces = 0usize;
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if in_string {
            in_string = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if in_braces == 0 && (word.starts_with("probe_") || word.starts_with("outpost_")) {
            out.push(std::mem::take(&mut word));
        }
        word.clear();
        match c {
            '{' => in_braces += 1,
            '}' => in_braces = in_braces.saturating_sub(1),
            '"' => in_string = true,
            _ => {}
        }
    }
    out
}

#[test]
fn every_dashboard_expression_names_an_exported_series() {
    let mut exported = BTreeSet::new();
    for (name, kind, _) in FAMILIES {
        exported.insert(name.to_string());
        if *kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let d = dashboard();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut used = BTreeSet::new();
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}");
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                assert!(
                    exported.contains(&n),
                    "{}: {n} is not exported ({expr})",
                    p["title"]
                );
                used.insert(n);
            }
        }
    }
    // Every probe_* series on the board is one the probe's /probe answers
    // too, under the same name.
    let probe_side: BTreeSet<&str> = outpost_probe::blackbox::FAMILIES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let blackbox_used: Vec<&String> = used.iter().filter(|n| n.starts_with("probe_")).collect();
    assert!(!blackbox_used.is_empty());
    for n in blackbox_used {
        assert!(
            probe_side.contains(n.as_str()),
            "{n} is on the board but not answered by the probe's /probe: {probe_side:?}"
        );
    }
    // The blackbox-compatible series the issue names are all on the board.
    for name in [
        "probe_success",
        "probe_duration_seconds",
        "probe_http_status_code",
        "probe_ssl_earliest_cert_expiry",
    ] {
        assert!(used.contains(name), "{name}");
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for v in ["DS_PROMETHEUS", "check", "region"] {
        assert!(vars.contains(&v), "{v}: {vars:?}");
    }
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
}

#[test]
fn the_name_extractor_skips_labels_and_strings() {
    assert_eq!(
        metric_names(
            r#"sum by (le) (rate(outpost_check_duration_seconds_bucket{check=~"probe_x", phase="total"}[5m])) / probe_success"#
        ),
        ["outpost_check_duration_seconds_bucket", "probe_success"]
    );
    // An unknown name is caught, so the test above can fail.
    assert_eq!(metric_names("probe_sucess == 0"), ["probe_sucess"]);
}
