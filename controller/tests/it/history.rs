//! History on the pages, against a real controller whose store holds
//! seeded results: the check page's graph points are the stored rollups'
//! percentiles, uptime follows the quorum, and `/alerts`, `/fleet`,
//! `/sla` and `/sla.csv` answer from the same store.

use outpost_controller::{
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

/// `(data-bucket, data-p50)` of every point of `region` in the `phase` chart.
fn points(page: &str, phase: &str, region: &str) -> Vec<(i64, u64)> {
    let chart = page
        .split(&format!("data-phase=\"{phase}\""))
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .unwrap_or("");
    let group = chart
        .split(&format!("data-region=\"{region}\""))
        .nth(1)
        .and_then(|rest| rest.split("</g>").next())
        .unwrap_or("");
    let attr = |s: &str, name: &str| -> Option<i64> {
        let v = s.split(&format!("{name}=\"")).nth(1)?.split('"').next()?;
        v.parse().ok()
    };
    group
        .split("<circle")
        .skip(1)
        .filter_map(|c| {
            Some((
                attr(c, "data-bucket")?,
                u64::try_from(attr(c, "data-p50")?).ok()?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn pages_show_the_stored_history() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        &format!("{API_CHECK}labels = {{ team = \"payments\" }}\n"),
    ))
    .await;
    let http = ctl.http_addr();
    let store = ctl.store().clone();
    let now = outpost_controller::store::now_ms();
    let start_at = Resolution::Minute.bucket(now) - 40 * MIN;
    let mut batch = Vec::new();
    for i in 0..40 {
        let at = start_at + i * MIN + 1_000;
        // Both regions fail at minute 10 (quorum 2: down overall); eu alone at 20.
        let eu_ok = i != 10 && i != 20;
        let us_ok = i != 10;
        batch.push(result(
            &format!("eu{i}"),
            "eu-west",
            at,
            eu_ok,
            20_000 + 1_000 * u64::try_from(i).unwrap(),
        ));
        batch.push(result(&format!("us{i}"), "us-east", at, us_ok, 50_000));
    }
    store
        .ingest(IngestBatch::results(batch, now))
        .await
        .unwrap();

    let (status, page) = get(http, "/checks/api-health?range=1h").await;
    assert_eq!(status, 200);
    let drawn = points(&page, "total", "eu-west");
    let rows = store
        .rollups(
            Resolution::Minute,
            Some("api-health"),
            now - 61 * MIN,
            now + 1,
        )
        .await
        .unwrap();
    let stored: Vec<(i64, u64)> = rows
        .iter()
        .filter(|r| r.region == "eu-west")
        .filter_map(|r| Some((r.bucket_ms, r.rollup.latency[4].percentiles()?.p50)))
        .collect();
    assert_eq!(stored.len(), 38, "two failed minutes have no latency");
    assert_eq!(drawn, stored, "every point is the stored p50 of its minute");
    assert!(page.contains("data-phase=\"first_byte\""));
    assert!(
        page.contains("(down when ≥ 2 regions failed)"),
        "quorum stated"
    );

    // The overview: a bar with one DOWN minute overall (minute 10), uptime over 24 h.
    let (status, page) = get(http, "/?bar=minute").await;
    assert_eq!(status, 200);
    assert_eq!(
        page.matches("data-status=\"DOWN\"").count(),
        1,
        "only the minute both regions failed"
    );
    assert!(page.contains("uptime 24 h"));
    assert!(page.contains("https://api.example.net/health"));

    // Alerts: the list, filtered, and one alert's page.
    let alert = NewAlert {
        check_id: "api-health".into(),
        probe: None,
        kind: outpost_controller::alerting::AlertKind::CheckFailing,
        dedup_key: "outpost/api-health/check_failing".into(),
        severity: outpost_controller::alerting::Severity::Critical,
        summary: "api-health failing in 2 regions".into(),
        regions_json: "[\"eu-west\",\"us-east\"]".into(),
        code: "timeout".into(),
        notified_json: "[]".into(),
        flapping: false,
        suppressed_by: String::new(),
    };
    let id = store
        .fire_alert(&alert, &[], "{}", now)
        .await
        .unwrap()
        .unwrap();
    let (status, page) = get(http, "/alerts?state=open").await;
    assert_eq!(status, 200);
    assert!(page.contains("api-health failing in 2 regions"), "{page}");
    let (_, page) = get(http, "/alerts?state=resolved").await;
    assert!(page.contains("No alerts match."));
    let (status, page) = get(http, &format!("/alerts/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(">fired<"), "{page}");
    assert_eq!(get(http, "/alerts/999").await.0, 404);
    let (_, page) = get(http, "/").await;
    assert!(
        page.contains("failing since"),
        "the overview says since when"
    );

    // Fleet: every configured probe.
    let (status, page) = get(http, "/fleet").await;
    assert_eq!(status, 200);
    for p in ["eu-west-1", "us-east-1", "ap-south-1"] {
        assert!(page.contains(&format!("data-probe=\"{p}\"")), "{p}");
    }

    // SLA for this month, and its CSV.
    let (status, page) = get(http, "/sla").await;
    assert_eq!(status, 200);
    assert!(page.contains("data-check=\"api-health\""));
    assert!(page.contains("team=payments"));
    let (status, csv) = get(http, "/sla.csv").await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "month,tz,check,labels,uptime_percent,up_ms,down_ms,stale_ms,runs,failures,resolution"
        )
    );
    let line = lines.next().unwrap();
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields[2], "api-health");
    assert_eq!(fields[3], "team=payments");
    assert_eq!((fields[8], fields[9]), ("80", "3"));
    assert_eq!(get(http, "/sla?month=2026-13").await.0, 400);
}

/// The overview at fleet size is one page of 100 checks, what needs
/// attention first: 150 checks, one failing (alphabetically last) and
/// one with no result — the failing one heads page 1, the counts cover
/// all 150, page 2 holds the rest, and the filters narrow the list.
#[tokio::test]
async fn the_overview_pages_checks_with_what_needs_attention_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut checks = String::new();
    for i in 0..150 {
        checks.push_str(&format!(
            "[[checks]]\nid = \"c{i:03}\"\ninterval = \"30s\"\nhttp = {{ url = \"https://svc{i}.example.net/\" }}\n"
        ));
    }
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        &checks,
    ))
    .await;
    let http = ctl.http_addr();
    let now = outpost_controller::store::now_ms();
    let mut batch = Vec::new();
    for i in 0..150 {
        if i == 7 {
            continue; // no result: UNKNOWN
        }
        for region in ["eu-west", "us-east", "ap-south"] {
            let mut r = result(
                &format!("{region}-{i}"),
                region,
                now - 1_000,
                i != 149,
                20_000,
            );
            r.check_id = format!("c{i:03}");
            batch.push(r);
        }
    }
    ctl.store()
        .ingest(IngestBatch::results(batch, now))
        .await
        .unwrap();

    let rows = |page: &str| -> Vec<String> {
        page.split("<a href=\"/checks/")
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_owned))
            .collect()
    };
    let (status, page) = get(http, "/").await;
    assert_eq!(status, 200);
    let first = rows(&page);
    assert_eq!(first.len(), 100, "one page of 100 checks");
    assert_eq!(first[0], "c149", "the failing check comes first");
    assert_eq!(first[1], "c007", "then the one with no result");
    assert_eq!(first[2], "c000", "then the passing ones by id");
    assert!(page.contains("150 checks"), "counts cover every check");
    assert!(page.contains("Checks 1–100 of 150"));
    assert!(page.contains("page 1 of 2"));
    assert!(page.contains("href=\"/?page=2\""));
    // Only this page's history is drawn: one status bar per row.
    assert_eq!(page.matches("<svg class=\"bar\"").count(), 100);

    let (_, page) = get(http, "/?page=2").await;
    let second = rows(&page);
    assert_eq!(second.len(), 50);
    assert_eq!(second[0], "c099");
    assert_eq!(second.last().map(String::as_str), Some("c148"));
    assert!(
        first.iter().all(|id| !second.contains(id)),
        "pages do not overlap"
    );
    // A page past the end shows the last one.
    let (_, page) = get(http, "/?page=99").await;
    assert_eq!(rows(&page), second);

    let (_, page) = get(http, "/?state=failing").await;
    assert_eq!(rows(&page), vec!["c149".to_owned()]);
    let (_, page) = get(http, "/?q=svc12.").await;
    assert_eq!(
        rows(&page),
        vec!["c012".to_owned()],
        "the target matches too"
    );
    let (_, page) = get(http, "/?q=nothing-like-this").await;
    assert!(page.contains("No check matches."));
}
