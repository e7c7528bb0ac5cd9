//! The history section (`outpost-bench history`): what the rollups cost
//! at ingest, what they take on disk, and how long the overview takes
//! with a fleet's worth of history. The store is seeded directly
//! (`Store::put_rollups`): 30 days of 2,000 checks × 5 regions through
//! ingest would take hours here.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Instant,
};

use outpost_controller::{
    history::{Histogram, Resolution, Rollup},
    store::{IngestBatch, NewResult, RollupRow, Store},
};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn result(i: usize, check: &str, region: &str, at: i64) -> NewResult {
    let ok = !i.is_multiple_of(10);
    NewResult {
        result_id: format!("{check}-{region}-{at}-{i}"),
        probe: format!("p-{region}"),
        region: region.into(),
        check_id: check.into(),
        sequence: i as u64,
        kind: "http".into(),
        started_at_ms: at,
        ok,
        failure_code: (!ok).then(|| "timeout".into()),
        failure_message: (!ok).then(|| "timed out".into()),
        phases_us: [
            800 + (i % 7) as u64 * 100,
            2_000 + (i % 13) as u64 * 150,
            6_000 + (i % 5) as u64 * 400,
            20_000 + (i % 17) as u64 * 900,
            30_000 + (i % 23) as u64 * 1_100,
        ],
        details_json: "{}".into(),
    }
}

/// Figures of the section.
#[derive(Debug)]
pub struct Figures {
    /// Ingest of 1,000 results with their rollups, ms (median of batches).
    pub ingest_ms_per_1000: f64,
    /// Fold of 1,000 minute rows into hours, days and summaries, ms.
    pub fold_ms_per_1000: f64,
    /// Rollup rows' bytes per check-region-day (SQLite, 1 run a minute).
    pub rollup_bytes_per_check_region_day: f64,
    /// Raw results' bytes per check-region-day, for comparison.
    pub raw_bytes_per_check_region_day: f64,
    /// Overview `GET /`, ms: median, p99, max over the loads.
    pub overview_ms: (f64, f64, f64),
    /// Rows seeded for it.
    pub seeded_rows: usize,
}

pub fn run(checks: usize, regions: usize, loads: usize) -> anyhow::Result<Figures> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(checks, regions, loads))
}

async fn run_async(checks: usize, regions: usize, loads: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let now = outpost_controller::store::now_ms();

    // 1. Ingest cost: 20 batches of 1,000 results (1,000 checks, one region,
    //    one run each a minute apart), rollups included.
    let store = Store::open(&dir.path().join("ingest.db")).await?;
    store.set_stale_after(HashMap::new());
    let mut per_batch = Vec::new();
    for b in 0..20 {
        let at = now - DAY + b * MIN;
        let batch: Vec<NewResult> = (0..1000)
            .map(|i| result(i, &format!("c{i}"), "eu", at))
            .collect();
        let t = Instant::now();
        store.ingest(IngestBatch::results(batch, at + 1000)).await?;
        per_batch.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    per_batch.sort_by(f64::total_cmp);
    let ingest_ms_per_1000 = per_batch[per_batch.len() / 2];
    // The fold of those 20,000 minute rows into hours, days and summaries.
    let t = Instant::now();
    let folded = store.fold_rollups(now).await?;
    let fold_ms_per_1000 = t.elapsed().as_secs_f64() * 1000.0 / (folded.max(1) as f64 / 1000.0);
    store.close().await;

    // 2. Bytes: 10 check-regions × one day at one run a minute.
    let store = Store::open(&dir.path().join("bytes.db")).await?;
    let empty = store.sqlite_live_bytes().await?.unwrap_or(0);
    let day0 = Resolution::Day.bucket(now) - 2 * DAY;
    for m in 0..1440 {
        let at = day0 + m * MIN + 500;
        let batch: Vec<NewResult> = (0..10)
            .map(|i| {
                result(
                    usize::try_from(m).unwrap_or(0) + i,
                    &format!("c{i}"),
                    "eu",
                    at,
                )
            })
            .collect();
        store.ingest(IngestBatch::results(batch, at + 1000)).await?;
    }
    store.fold_rollups(day0 + 2 * DAY).await?;
    let with_raw = store.sqlite_live_bytes().await?.unwrap_or(0);
    store.prune_results(i64::MAX, 5_000).await?;
    let rollups_only = store.sqlite_live_bytes().await?.unwrap_or(0);
    store.close().await;
    let rollup_bytes = (rollups_only - empty) as f64 / 10.0;
    let raw_bytes = (with_raw - rollups_only) as f64 / 10.0;

    // 3. The overview with 90 hours and 30 days of history per check × region.
    let db = dir.path().join("overview.db");
    let seeded_rows = seed(&db, checks, regions, now).await?;
    let (text, vars) = config(&db, checks, regions);
    let cfg = outpost_controller::config::parse(&text, "bench.toml", &vars)?;
    let ctl = outpost_controller::start(cfg).await?;
    let addr = ctl.http_addr();
    let mut times = Vec::new();
    for _ in 0..loads.max(1) {
        let t = Instant::now();
        let body = tokio::task::spawn_blocking(move || get(addr, "/")).await??;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(body.contains("uptime 24 h"), "the overview has no history");
    }
    ctl.shutdown().await;
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Ok(Figures {
        ingest_ms_per_1000,
        fold_ms_per_1000,
        rollup_bytes_per_check_region_day: rollup_bytes,
        raw_bytes_per_check_region_day: raw_bytes,
        overview_ms: (q(0.5), q(0.99), q(1.0)),
        seeded_rows,
    })
}

async fn seed(
    db: &std::path::Path,
    checks: usize,
    regions: usize,
    now: i64,
) -> anyhow::Result<usize> {
    let store = Store::open(db).await?;
    let mut latency: [Histogram; 5] = Default::default();
    for (p, h) in latency.iter_mut().enumerate() {
        for i in 0..60u64 {
            h.record(1_000 * (p as u64 + 1) + i * 200);
        }
    }
    let hourly = Rollup {
        count: 60,
        failures: 1,
        stale_ms: 0,
        latency: latency.clone(),
        codes: [("timeout".to_owned(), 1)].into(),
    };
    let daily = Rollup {
        count: 1440,
        failures: 24,
        ..hourly.clone()
    };
    let mut rows = Vec::new();
    let mut total = 0;
    for c in 0..checks {
        for r in 0..regions {
            for h in 0..96 {
                rows.push(RollupRow {
                    check_id: format!("check-{c:04}"),
                    region: format!("region-{r}"),
                    resolution: Resolution::Hour,
                    bucket_ms: Resolution::Hour.bucket(now) - h * HOUR,
                    rollup: hourly.clone(),
                });
            }
            for d in 0..31 {
                rows.push(RollupRow {
                    check_id: format!("check-{c:04}"),
                    region: format!("region-{r}"),
                    resolution: Resolution::Day,
                    bucket_ms: Resolution::Day.bucket(now) - d * DAY,
                    rollup: daily.clone(),
                });
            }
            if rows.len() >= 20_000 {
                total += rows.len();
                store.put_rollups(&rows).await?;
                rows.clear();
            }
        }
    }
    total += rows.len();
    store.put_rollups(&rows).await?;
    store.close().await;
    Ok(total)
}

fn config(db: &std::path::Path, checks: usize, regions: usize) -> (String, Vec<(String, String)>) {
    let mut s = format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\nallow_unauthenticated = true\n\
         allow_plaintext_probes = true\n[store]\npath = {:?}\n",
        db.display().to_string()
    );
    let mut vars = Vec::new();
    for r in 0..regions {
        s.push_str(&format!(
            "[[probes]]\nname = \"p{r}\"\nregion = \"region-{r}\"\ntoken = {{ env = \"BENCH_TOKEN_{r}\" }}\n"
        ));
        vars.push((
            format!("BENCH_TOKEN_{r}"),
            format!("bench-token-{r}-0123456789abcdefghijklmnop"),
        ));
    }
    for c in 0..checks {
        s.push_str(&format!(
            "[[checks]]\nid = \"check-{c:04}\"\ninterval = \"60s\"\ntimeout = \"5s\"\nhttp = {{ url = \"http://127.0.0.1:9/{c}\" }}\n"
        ));
    }
    (s, vars)
}

fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    anyhow::ensure!(
        body.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        body.lines().next().unwrap_or("")
    );
    Ok(body)
}
