//! The pages in a real browser: headless Chromium (Debian's `chromium`)
//! driven by `tests/browser/run.mjs` (playwright-core, pinned in
//! `tests/browser/package-lock.json`, installed by `npm ci`) against a
//! controller whose store holds seeded history. The script checks the
//! overview, that the check page's graph points are the stored rollups
//! (passed to it from the store), alerts, fleet, the SLA report, that the
//! public page shows the chosen check's history and no internal text, and
//! the phone layout; it saves a screenshot of each (into
//! `$OUTPOST_SCREENSHOTS` when set: `docs/screenshots/` is made that way).
//!
//! Without node, Chromium or `npm ci` the test says so and passes, except
//! under `CI=true`, where it fails: CI installs all three (`.ci/run`).

use std::{path::PathBuf, process::Command};

use outpost_controller::{
    alerting::AlertKind,
    history::Resolution,
    store::{IngestBatch, NewAlert, NewResult},
};

use crate::support::*;

const MIN: i64 = 60_000;

fn result(id: &str, region: &str, at: i64, ok: bool, total_us: u64) -> NewResult {
    NewResult {
        result_id: id.into(),
        probe: format!("{region}-1"),
        region: region.into(),
        check_id: "api-health".into(),
        sequence: 0,
        kind: "http".into(),
        started_at_ms: at,
        ok,
        failure_code: (!ok).then(|| "timeout".into()),
        failure_message: (!ok).then(|| "timed out".into()),
        phases_us: [500, 1_000, 2_000, total_us / 2, total_us],
        details_json: "{}".into(),
    }
}

/// What the browser test needs, or why it cannot run.
fn browser_kit() -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Err(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is missing (apt-get install nodejs npm)".into());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!("run `npm ci` in {}", dir.display()));
    }
    Ok(dir)
}

#[tokio::test]
async fn the_pages_work_in_headless_chromium() {
    let kit = match browser_kit() {
        Ok(dir) => dir,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the browser test cannot run under CI: {why}")
        }
        Err(why) => {
            eprintln!("browser test skipped: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        &format!(
            "{API_CHECK}labels = {{ team = \"payments\" }}\n\
             \n[public_status]\nenabled = true\ntitle = \"Example status\"\nchecks = [\"api-health\"]\n\
             notes = [\"2026-11-30 14:02 UTC: slow payments in Europe, fixed 14:40\"]\n"
        ),
    ))
    .await;
    let store = ctl.store().clone();
    let now = outpost_controller::store::now_ms();
    let start_at = Resolution::Minute.bucket(now) - 40 * MIN;
    let mut batch = Vec::new();
    for i in 0..40 {
        let at = start_at + i * MIN + 1_000;
        let ms = u64::try_from(i).unwrap();
        // Both regions fail at minute 10 and from minute 37 on (so the
        // alert stays open); eu alone at 20.
        let both_down = i == 10 || i >= 37;
        let eu_ok = !both_down && i != 20;
        batch.push(result(
            &format!("eu{i}"),
            "eu-west",
            at,
            eu_ok,
            20_000 + 1_000 * ms,
        ));
        batch.push(result(
            &format!("us{i}"),
            "us-east",
            at,
            !both_down,
            50_000 + 500 * (ms % 7),
        ));
    }
    store
        .ingest(IngestBatch::results(batch, now))
        .await
        .unwrap();
    // Some of it folded into hours, some not: the pages read both.
    store.fold_rollups(now - 10 * MIN).await.unwrap();
    let alert = NewAlert {
        check_id: "api-health".into(),
        probe: None,
        kind: AlertKind::CheckFailing,
        dedup_key: "outpost/api-health/check_failing".into(),
        severity: outpost_controller::alerting::Severity::Critical,
        summary: "api-health failing in 2 regions".into(),
        regions_json: "[\"eu-west\",\"us-east\"]".into(),
        code: "timeout".into(),
        notified_json: "[]".into(),
        flapping: false,
        suppressed_by: String::new(),
    };
    // The evaluator runs beside this test: when `now` falls early in its
    // minute the newest failures are fresh enough for it to open the alert
    // itself before `fire_alert` does (which then returns `None`). Either
    // way one alert is open, and the pages must show that one.
    store.fire_alert(&alert, &[], "{}", now).await.unwrap();
    let open = store
        .open_alert("api-health", AlertKind::CheckFailing)
        .await
        .unwrap()
        .expect("an alert is open for api-health");

    let points: Vec<(i64, u64)> = store
        .rollups(
            Resolution::Minute,
            Some("api-health"),
            now - 61 * MIN,
            now + 1,
        )
        .await
        .unwrap()
        .iter()
        .filter(|r| r.region == "eu-west")
        .filter_map(|r| Some((r.bucket_ms, r.rollup.latency[4].percentiles()?.p50)))
        .collect();
    assert_eq!(points.len(), 35, "five failed minutes have no latency");
    let expected = serde_json::json!({
        "checks": 1,
        "check": "api-health",
        "target": "https://api.example.net/health",
        "region": "eu-west",
        "points": points,
        "alert": open.summary,
        "alert_id": open.id,
        "probes": PROBES.iter().map(|p| p.0).collect::<Vec<_>>(),
        "internal": ["api.example.net", "timed out", "eu-west", "us-east", "127.0.0.1"],
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let shots = std::env::var("OUTPOST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("shots"));

    let base = format!("http://{}", ctl.http_addr());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(kit.join("run.mjs"))
            .arg(&base)
            .arg(&expected_path)
            .arg(&shots)
            .current_dir(&kit)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("7 passed, 0 failed"), "{stdout}\n{stderr}");
}
