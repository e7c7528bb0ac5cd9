//! The PostgreSQL section: ingest through 1, 2 and 3 controller replicas
//! on one database, alert latency across a leader change, and the cost of
//! a side row with `synchronous_commit = off`; and ([`run_fleet`], the
//! `fleet` section) the cost of evaluating 10,000 checks × 5 regions at a
//! 60 s interval, the dashboard's latency and the controller's RSS meanwhile.
//!
//! PostgreSQL is the test kit's throwaway cluster with its durable defaults
//! (fsync and synchronous commit on), on this same machine: the server's
//! CPU competes with the replicas' for the two cores, as it would not in
//! production.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::bail;
use outpost_proto::v1::CheckResult;
use outpost_testkit::{PagerReceiver, client, postgres::PgCluster};

use crate::{
    measure::{cpu_ns, ms, quantile},
    scenario::{Controller, Report, open_stream, result, send_and_ack, start_controller_on},
};

const G: &str = "postgres";
const STREAMS: usize = 8;

fn stream_names() -> Vec<String> {
    (0..STREAMS).map(|i| format!("ing{i}")).collect()
}

fn ingest_checks(names: &[String]) -> String {
    let mut checks = String::new();
    for n in names {
        let _ = write!(
            checks,
            "[[checks]]\nid = \"c-{n}\"\ninterval = \"1m\"\nregions = [\"region-{n}\"]\nalert = {{ enabled = false }}\nhttp = {{ url = \"http://127.0.0.1:9/\" }}\n"
        );
    }
    checks
}

/// Results/s through `replicas` controllers on one database (a fresh one
/// of `cluster`; `None`: one controller on its own SQLite file), the 8
/// streams spread over them round-robin.
fn ingest(cluster: Option<&PgCluster>, replicas: usize, total: u64) -> anyhow::Result<f64> {
    let url = cluster
        .map(|c| c.create_database())
        .transpose()?
        .map(|db| db.url);
    ingest_on(url.as_deref(), replicas, total)
}

/// [`ingest`] into the database at `url`.
fn ingest_into(url: &str, replicas: usize, total: u64) -> anyhow::Result<f64> {
    ingest_on(Some(url), replicas, total)
}

fn ingest_on(url: Option<&str>, replicas: usize, total: u64) -> anyhow::Result<f64> {
    let names = stream_names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let checks = ingest_checks(&names);
    let ctls: Vec<Controller> = (0..replicas)
        .map(|_| start_controller_on(None, &refs, &checks, "", url))
        .collect::<anyhow::Result<_>>()?;
    let rt = tokio::runtime::Runtime::new()?;
    let per = total / STREAMS as u64;
    rt.block_on(async {
        let mut opened = Vec::new();
        for (i, n) in names.iter().enumerate() {
            opened.push(open_stream(ctls[i % replicas].grpc, n).await?);
        }
        let t0 = Instant::now();
        let tasks = opened
            .into_iter()
            .zip(names.iter().cloned())
            .map(|(mut s, n)| async move {
                let check = format!("c-{n}");
                let mut seq = 1u64;
                while seq <= per {
                    let batch: Vec<CheckResult> = (seq..(seq + 500).min(per + 1))
                        .map(|q| result(&check, q, q % 10 != 0))
                        .collect();
                    seq += batch.len() as u64;
                    send_and_ack(&mut s, batch).await?;
                }
                anyhow::Ok(())
            });
        for r in futures_util::future::join_all(tasks).await {
            r?;
        }
        anyhow::Ok((per * STREAMS as u64) as f64 / t0.elapsed().as_secs_f64())
    })
}

async fn is_leader(http: SocketAddr) -> bool {
    let Ok(resp) = client::get(http, "/api/v1/evaluator").await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v["leader"].as_bool())
        .unwrap_or(false)
}

/// Alert latency (confirming result → PagerDuty receiver) through the
/// replica that is not the evaluator, with the evaluator killed halfway:
/// (p50, p99, max, takeover) in ms.
fn alert_latency_with_failover(
    cluster: &PgCluster,
    trials: u32,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    let db = cluster.create_database()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let key = "benchroutingkeybenchroutingkey32";
        let pager = PagerReceiver::start(key).await?;
        let mut checks = String::new();
        for i in 0..trials {
            let _ = write!(
                checks,
                "[[checks]]\nid = \"a{i}\"\ninterval = \"1h\"\nregions = [\"region-alert\"]\nalert = {{ min_regions = 1, confirmations = 1 }}\nhttp = {{ url = \"http://127.0.0.1:9/\" }}\n"
            );
        }
        let keyfile = tempfile::NamedTempFile::new()?;
        std::fs::write(keyfile.path(), key)?;
        let extra = format!(
            "[alerting]\nevaluator_lease = \"2s\"\n[[sinks]]\nname = \"pd\"\npagerduty = {{ routing_key = {{ file = \"{}\" }}, api_url = \"{}\", events_per_minute = 1000000 }}\n[[routes]]\nname = \"all\"\nsinks = [\"pd\"]\n",
            keyfile.path().display(),
            pager.url()
        );
        let mut leader = Some(start_controller_on(None, &["alert"], &checks, &extra, Some(&db.url))?);
        let end = Instant::now() + Duration::from_secs(20);
        while !is_leader(leader.as_ref().map(|c| c.http).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9)))).await {
            if Instant::now() > end {
                bail!("the first replica never became the evaluator");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let other = start_controller_on(None, &["alert"], &checks, &extra, Some(&db.url))?;
        let mut s = open_stream(other.grpc, "alert").await?;
        let mut lat = Vec::new();
        let mut takeover = f64::NAN;
        for i in 0..trials {
            if i == trials / 2 {
                // kill -9 the evaluator; the next trials wait for the takeover.
                let killed = Instant::now();
                if let Some(mut c) = leader.take() {
                    c.proc.0.kill()?;
                    c.proc.0.wait()?;
                }
                let end = killed + Duration::from_secs(20);
                while !is_leader(other.http).await {
                    if Instant::now() > end {
                        bail!("no takeover within 20s");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                takeover = ms(killed.elapsed());
                // The trial sent right after the kill measures the gap too.
                let dedup = format!("outpost/a{i}/check_failing");
                send_and_ack(&mut s, vec![result(&format!("a{i}"), u64::from(i) + 1, false)]).await?;
                wait_page(&pager, &dedup, killed, &mut lat).await?;
                continue;
            }
            let dedup = format!("outpost/a{i}/check_failing");
            let t0 = Instant::now();
            send_and_ack(&mut s, vec![result(&format!("a{i}"), u64::from(i) + 1, false)]).await?;
            wait_page(&pager, &dedup, t0, &mut lat).await?;
        }
        drop(other);
        Ok((
            quantile(&mut lat, 0.5),
            quantile(&mut lat, 0.99),
            quantile(&mut lat, 1.0),
            takeover,
        ))
    })
}

async fn wait_page(
    pager: &PagerReceiver,
    dedup: &str,
    t0: Instant,
    lat: &mut Vec<f64>,
) -> anyhow::Result<()> {
    let end = t0 + Duration::from_secs(30);
    loop {
        if let Some(ev) = pager.events().into_iter().find(|e| e.dedup_key == dedup) {
            lat.push(ms(ev.received_at.duration_since(t0)));
            return Ok(());
        }
        if Instant::now() > end {
            bail!("no page for {dedup} within 30s");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// What [`fleet`] measured.
pub(crate) struct Fleet {
    /// Controller CPU over the window (no dashboard reads), fraction of one core.
    pub cpu: f64,
    /// `GET /` (the dashboard overview) while it runs: p50, p99, max in ms.
    pub page: (f64, f64, f64),
    /// Controller RSS at the end of the CPU window, MiB.
    pub rss_mib: f64,
    /// Controller CPU while every result fails (batches every
    /// `LINGER`), fraction of one core.
    pub outage_cpu: f64,
    /// Results per second the streams got acked during the outage (the
    /// fleet's pace when the controller keeps up).
    pub outage_rate: f64,
    /// Controller RSS at the end of the outage window, MiB.
    pub outage_rss_mib: f64,
}

/// One controller that holds `checks` checks × 5 regions, while the 5
/// regions' results arrive at the rate a 60 s interval gives (833/s for
/// 10,000 checks) over real gRPC streams, in batches every
/// [`outpost_probe::reporter::ROUTINE_LINGER`] per region (as probes send
/// passes after passes). The CPU is taken over `window`
/// with nobody reading the dashboard (the steady state the goal names);
/// then the overview is loaded every 500 ms for `window / 2` while the
/// same load runs; then, for `window / 2`, every result fails and each
/// region's batch goes every [`outpost_probe::reporter::LINGER`] (the
/// first seconds of a fleet-wide outage: what a flood of urgent, small
/// batches costs the controller, and whether it keeps the pace).
pub(crate) fn fleet(
    pg_url: Option<&str>,
    checks: usize,
    window: Duration,
) -> anyhow::Result<Fleet> {
    let regions: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = regions.iter().map(String::as_str).collect();
    let mut text = String::new();
    let list: Vec<String> = regions.iter().map(|r| format!("\"region-{r}\"")).collect();
    for i in 0..checks {
        let _ = write!(
            text,
            "[[checks]]\nid = \"e{i}\"\ninterval = \"60s\"\nregions = [{}]\nalert = {{ min_regions = 3 }}\nhttp = {{ url = \"http://127.0.0.1:9/\" }}\n",
            list.join(", ")
        );
    }
    let ctl = start_controller_on(None, &refs, &text, "", pg_url)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut streams = Vec::new();
        for r in &regions {
            streams.push(open_stream(ctl.grpc, r).await?);
        }
        // Fill region_state: three passing results per check and region
        // (more than the default `recoveries = 2`), as a fleet that has
        // been up a while has; the evaluation of checks whose state moves
        // is the alerting section's figure.
        let mut seq = vec![0u64; regions.len()];
        for (k, s) in streams.iter_mut().enumerate() {
            for chunk in (0..3 * checks)
                .map(|i| i % checks)
                .collect::<Vec<_>>()
                .chunks(500)
            {
                let batch = chunk
                    .iter()
                    .map(|i| {
                        seq[k] += 1;
                        result(&format!("e{i}"), seq[k], true)
                    })
                    .collect();
                send_and_ack(s, batch).await?;
            }
        }
        // Let the fill's evaluations settle before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Every region's stream sends a batch every ROUTINE_LINGER, as a
        // probe of a healthy fleet does: the fleet's pace (checks × 5
        // regions per 60 s). In the outage phase every result fails and
        // goes out within LINGER, as a probe sends failures. The regions'
        // streams send their batches at once, as separate probes do (not
        // one after another's ack), and a tick that comes late sends what
        // came due meanwhile (a probe's reporter sends everything pending),
        // so the rate acked is the controller's, not this loop's.
        let mut next = vec![0usize; regions.len()];
        let mut pace = async |streams: &mut Vec<_>,
                              seq: &mut Vec<u64>,
                              for_: Duration,
                              linger: Duration,
                              ok: bool| {
            let rate = checks as f64 / 60.0;
            let per_batch = (rate * linger.as_secs_f64()).ceil() as usize;
            let mut tick = tokio::time::interval(linger);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let t0 = Instant::now();
            let mut sent = vec![0usize; streams.len()];
            while t0.elapsed() < for_ {
                tick.tick().await;
                let due = (t0.elapsed().as_secs_f64() * rate) as usize;
                let mut batches = Vec::with_capacity(streams.len());
                for (k, sent) in sent.iter_mut().enumerate() {
                    let n = due.saturating_sub(*sent).max(per_batch);
                    *sent += n;
                    let batch: Vec<_> = (0..n)
                        .map(|_| {
                            let i = next[k] % checks;
                            next[k] += 1;
                            seq[k] += 1;
                            result(&format!("e{i}"), seq[k], ok)
                        })
                        .collect();
                    batches.push(batch);
                }
                futures_util::future::try_join_all(
                    streams
                        .iter_mut()
                        .zip(batches)
                        .map(|(s, batch)| send_and_ack(s, batch)),
                )
                .await?;
            }
            anyhow::Ok((t0.elapsed(), sent.iter().sum::<usize>()))
        };
        let (routine, urgent) = (
            outpost_probe::reporter::ROUTINE_LINGER,
            outpost_probe::reporter::LINGER,
        );
        // Steady state first, with nobody reading the dashboard: ingest,
        // evaluation and the background loops alone.
        let cpu0 = cpu_ns(ctl.proc.pid());
        let elapsed = pace(&mut streams, &mut seq, window, routine, true)
            .await?
            .0
            .as_secs_f64();
        let cpu = (cpu_ns(ctl.proc.pid()) - cpu0) as f64 / 1e9;
        let (rss, _, _) = crate::measure::rss_kib(ctl.proc.pid());
        // Then the overview, loaded every 500 ms while the same load runs.
        let http = ctl.http;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pages = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut lat = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let resp = client::get(http, "/").await?;
                    anyhow::ensure!(resp.status == 200, "overview answered {}", resp.status);
                    lat.push(ms(t.elapsed()));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                anyhow::Ok(lat)
            }
        });
        pace(&mut streams, &mut seq, window / 2, routine, true).await?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut lat = pages.await??;
        // Then an outage of every check in every region, its first
        // window/2: each result a failure at the fleet's pace (a quarter of
        // the checks fail once per region in 15 s), each batch within
        // LINGER as a probe sends failures.
        let cpu0 = cpu_ns(ctl.proc.pid());
        let (took, sent) = pace(&mut streams, &mut seq, window / 2, urgent, false).await?;
        let outage_cpu = (cpu_ns(ctl.proc.pid()) - cpu0) as f64 / 1e9 / took.as_secs_f64();
        let outage_rate = sent as f64 / took.as_secs_f64();
        let (outage_rss, _, _) = crate::measure::rss_kib(ctl.proc.pid());
        Ok(Fleet {
            outage_cpu,
            outage_rate,
            outage_rss_mib: outage_rss as f64 / 1024.0,
            cpu: cpu / elapsed,
            page: (
                quantile(&mut lat, 0.5),
                quantile(&mut lat, 0.99),
                quantile(&mut lat, 1.0),
            ),
            rss_mib: rss as f64 / 1024.0,
        })
    })
}

/// The `fleet` section: [`fleet`] on SQLite and on PostgreSQL (a durable
/// throwaway cluster).
pub fn run_fleet(quick: bool, r: &mut Report) -> anyhow::Result<()> {
    let g = "fleet";
    let (checks, window) = if quick {
        (1_000, Duration::from_secs(3))
    } else {
        (10_000, Duration::from_secs(30))
    };
    let cluster = PgCluster::start(true)?;
    for (label, url) in [
        ("SQLite", None),
        ("PostgreSQL", Some(cluster.create_database()?.url)),
    ] {
        let f = fleet(url.as_deref(), checks, window)?;
        r.goal(
            g,
            format!(
                "controller CPU, {checks} checks × 5 regions at 60s, {label} (ingest + evaluation)"
            ),
            f.cpu * 100.0,
            "% core",
            "≤ 10 %",
            f.cpu <= 0.10,
        );
        r.add(
            g,
            format!("  dashboard overview p50, {label}"),
            f.page.0,
            "ms",
        );
        r.goal(
            g,
            format!("dashboard overview p99 while it runs, {label}"),
            f.page.1,
            "ms",
            "≤ 200 ms",
            f.page.1 <= 200.0,
        );
        r.add(
            g,
            format!("  dashboard overview max, {label}"),
            f.page.2,
            "ms",
        );
        r.goal(
            g,
            format!("controller RSS with {checks} checks, {label}"),
            f.rss_mib,
            "MiB",
            "≤ 150 MiB",
            f.rss_mib <= 150.0,
        );
        r.add(
            g,
            format!("  outage, every result failing (20 ms batches): controller CPU, {label}"),
            f.outage_cpu * 100.0,
            "% core",
        );
        r.add(
            g,
            format!(
                "  outage: results/s acked (the fleet's pace is {:.0}/s), {label}",
                checks as f64 * 5.0 / 60.0
            ),
            f.outage_rate,
            "/s",
        );
        r.add(
            g,
            format!("  outage: controller RSS at its end, {label}"),
            f.outage_rss_mib,
            "MiB",
        );
    }
    r.note(format!(
        "fleet: load average at the end {}",
        crate::measure::loadavg()
    ));
    Ok(())
}

/// Runs the section.
pub fn run(quick: bool, r: &mut Report) -> anyhow::Result<()> {
    let cluster = PgCluster::start(true)?;
    let total = if quick { 5_000 } else { 100_000 };
    let sqlite = ingest(None, 1, total)?;
    r.add(
        G,
        "results ingested per second, 1 controller on SQLite (same load)",
        sqlite,
        "/s",
    );
    for n in 1..=3 {
        let rate = ingest(Some(&cluster), n, total)?;
        let name = format!("results ingested per second, {n} replica(s) on one PostgreSQL");
        if n == 1 {
            r.goal(G, name, rate, "/s", "≥ 20,000/s", rate >= 20_000.0);
            // Side row: the same with synchronous_commit off for that
            // database, separating the commit's fsync wait (the product
            // keeps durable commits).
            let db = cluster.create_database()?;
            cluster.psql(
                "postgres",
                &format!("ALTER DATABASE {} SET synchronous_commit = off", db.name),
            )?;
            let off = ingest_into(&db.url, 1, total)?;
            r.add(
                G,
                "  the same, synchronous_commit = off (side row, not the product's setting)",
                off,
                "/s",
            );
        } else {
            r.add(G, name, rate, "/s");
        }
    }
    r.note(format!(
        "postgres: load average after ingest {}",
        crate::measure::loadavg()
    ));
    let trials = if quick { 6 } else { 60 };
    let (p50, p99, max, takeover) = alert_latency_with_failover(&cluster, trials)?;
    r.add(
        G,
        "alert latency p50, 2 replicas, evaluator killed halfway",
        p50,
        "ms",
    );
    r.add(
        G,
        "alert latency p99 (the leader change is in the window)",
        p99,
        "ms",
    );
    r.add(G, "alert latency max", max, "ms");
    r.add(
        G,
        "  takeover after kill -9 (evaluator_lease 2s)",
        takeover,
        "ms",
    );
    r.note("postgres: alert latency is measured through the replica that is not the evaluator, which sees the results on its 1 s evaluation tick; the max is the trial sent right after the evaluator was killed (lease + takeover poll)");
    r.note("postgres: the fleet figures (10,000 checks × 5 regions) are the `fleet` section");
    Ok(())
}
