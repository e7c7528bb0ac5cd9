//! The alerting section (issue 13), on real processes in real time: an
//! `outpost-controller` process, two probes (`outpost_probe::spawn`, in
//! this process, regions `region-p1` and `region-p2`) checking a loopback
//! target whose paths the bench turns failing, and the test kit's PagerDuty
//! receiver.
//!
//! - **Time to page.** Per trial one check's path starts failing; the
//!   figure is from the target serving that check's first failing answer
//!   to the receiver accepting its trigger. Each trial has its own check,
//!   so no trial waits for another's resolve and flap detection never
//!   sees a toggle. Default alert settings (`min_regions` 2 of 2,
//!   `confirmations` 2, `retry_interval` = the interval) against fast
//!   confirmation (`retry_interval = "1s"`, `confirm_from_other_regions =
//!   true`); interval 2 s for both (the default 30 s would make 20 trials
//!   take half an hour; with it the default figure grows by the interval).
//! - **Shared dependency.** `db` and 20 checks that depend on it (all
//!   labelled `team = "shop"`) fail together; the figure is the triggers
//!   the receiver got once the controller settled: plain, with
//!   `depends_on = ["db"]`, with `group_by = ["team"]`, and with both.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use outpost_testkit::{HttpServer, PagerReceiver, Reply, RunningServer};

use crate::{
    measure::{ms, quantile},
    scenario::{Controller, Report, probe_config, start_controller_on},
};

const G: &str = "alerting (issue 13)";
const KEY: &str = "benchroutingkeybenchroutingkey32";
const INTERVAL: &str = "2s";

/// One failing switch per path, and when it first served a failure.
#[derive(Default)]
struct Switches {
    failing: HashMap<String, Arc<AtomicBool>>,
    first_failure: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Switches {
    fn fail(&self, path: &str) {
        self.failing[path].store(true, Ordering::SeqCst);
    }

    fn first_failure(&self, path: &str) -> Option<Instant> {
        self.first_failure.lock().unwrap().get(path).copied()
    }
}

async fn target(paths: &[String]) -> anyhow::Result<(RunningServer, Switches)> {
    let mut sw = Switches::default();
    let mut b = HttpServer::builder();
    for path in paths {
        let flag = Arc::new(AtomicBool::new(false));
        sw.failing.insert(path.clone(), flag.clone());
        let first = sw.first_failure.clone();
        let name = path.clone();
        b = b.handler(path, move |_| {
            if flag.load(Ordering::SeqCst) {
                first
                    .lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_insert_with(Instant::now);
                Reply::text(503, "down")
            } else {
                Reply::text(200, "ok")
            }
        });
    }
    Ok((b.run().await?, sw))
}

fn sink(pager: &PagerReceiver, keyfile: &std::path::Path, route_extra: &str) -> String {
    format!(
        "[[sinks]]\nname = \"pd\"\npagerduty = {{ routing_key = {{ file = \"{}\" }}, api_url = \"{}\", events_per_minute = 1000000 }}\n\
         [[routes]]\nname = \"all\"\nsinks = [\"pd\"]\n{route_extra}",
        keyfile.display(),
        pager.url()
    )
}

/// Starts the two probes against `ctl` and waits for their assignments of
/// `n` checks.
async fn probes(ctl: &Controller, n: usize) -> anyhow::Result<Probes> {
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    for name in ["p1", "p2"] {
        let dir = tempfile::tempdir()?;
        let cfg = probe_config(dir.path(), name, ctl.grpc, ctl.dir(), "")?;
        out.push(outpost_probe::spawn(cfg, None)?);
        dirs.push(dir);
    }
    let end = Instant::now() + Duration::from_secs(30);
    while out.iter().any(|p| p.scheduler.len() < n) {
        if Instant::now() > end {
            bail!("no assignment from the controller");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Probes {
        running: out,
        _dirs: dirs,
    })
}

/// Running probes and their outbox dirs.
struct Probes {
    running: Vec<outpost_probe::RunningProbe>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Probes {
    async fn shutdown(self) {
        for p in self.running {
            p.shutdown().await;
        }
    }
}

/// Time to page over `trials` checks with `alert` settings: (p50, p99, max) ms.
fn time_to_page(trials: usize, alert: &str) -> anyhow::Result<(f64, f64, f64)> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pager = PagerReceiver::start(KEY).await?;
        let paths: Vec<String> = (0..trials).map(|i| format!("/lat-{i}")).collect();
        let (srv, sw) = target(&paths).await?;
        let mut checks = String::new();
        for (i, path) in paths.iter().enumerate() {
            let _ = write!(
                checks,
                "[[checks]]\nid = \"lat-{i}\"\ninterval = \"{INTERVAL}\"\ntimeout = \"1s\"\nalert = {{ {alert} }}\nhttp = {{ url = \"{}\" }}\n",
                srv.url(path)
            );
        }
        let keyfile = tempfile::NamedTempFile::new()?;
        std::fs::write(keyfile.path(), KEY)?;
        let ctl = start_controller_on(None, &["p1", "p2"], &checks, &sink(&pager, keyfile.path(), ""), None)?;
        let probes = probes(&ctl, trials).await?;
        // Every region fresh and passing before the first trial.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut lat = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let dedup = format!("outpost/lat-{i}/check_failing");
            sw.fail(path);
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(ev) = pager.events().into_iter().find(|e| e.dedup_key == dedup) {
                    let Some(t0) = sw.first_failure(path) else {
                        bail!("{dedup} paged before its target failed");
                    };
                    lat.push(ms(ev.received_at.duration_since(t0)));
                    break;
                }
                if Instant::now() > end {
                    bail!("no page for {dedup} within 60s");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        probes.shutdown().await;
        drop(ctl);
        Ok((
            quantile(&mut lat, 0.5),
            quantile(&mut lat, 0.99),
            quantile(&mut lat, 1.0),
        ))
    })
}

/// Triggers the receiver got for an outage of `db` and its 20 dependents.
fn shared_outage(depends_on: bool, group_by: bool) -> anyhow::Result<usize> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pager = PagerReceiver::start(KEY).await?;
        let ids: Vec<String> = std::iter::once("db".to_owned())
            .chain((0..20).map(|i| format!("svc-{i}")))
            .collect();
        let paths: Vec<String> = ids.iter().map(|id| format!("/{id}")).collect();
        let (srv, sw) = target(&paths).await?;
        let mut checks = String::new();
        for (id, path) in ids.iter().zip(&paths) {
            let dep = if depends_on && id != "db" {
                "depends_on = [\"db\"]\n"
            } else {
                ""
            };
            let _ = write!(
                checks,
                "[[checks]]\nid = \"{id}\"\ninterval = \"{INTERVAL}\"\ntimeout = \"1s\"\nlabels = {{ team = \"shop\" }}\n{dep}http = {{ url = \"{}\" }}\n",
                srv.url(path)
            );
        }
        let group = if group_by {
            "group_by = [\"team\"]\ngroup_wait = \"3s\"\n"
        } else {
            ""
        };
        let keyfile = tempfile::NamedTempFile::new()?;
        std::fs::write(keyfile.path(), KEY)?;
        let ctl = start_controller_on(None, &["p1", "p2"], &checks, &sink(&pager, keyfile.path(), group), None)?;
        let probes = probes(&ctl, ids.len()).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        for path in &paths {
            sw.fail(path);
        }
        let end = Instant::now() + Duration::from_secs(60);
        while pager.events().is_empty() {
            if Instant::now() > end {
                bail!("no page within 60s of the outage");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every check confirmed (2 intervals), a group's wait, and slack.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let triggers = pager
            .events()
            .iter()
            .filter(|e| e.event_action == "trigger")
            .count();
        probes.shutdown().await;
        drop(ctl);
        Ok(triggers)
    })
}

/// Runs the section.
pub fn run(quick: bool, r: &mut Report) -> anyhow::Result<()> {
    let trials = if quick { 3 } else { 20 };
    for (label, alert) in [
        ("default settings", ""),
        (
            "fast confirmation (retry_interval 1s, confirm_from_other_regions)",
            "retry_interval = \"1s\", confirm_from_other_regions = true",
        ),
    ] {
        let (p50, p99, max) = time_to_page(trials, alert)?;
        r.add(
            G,
            format!("first failing answer → pager POST p50, {label}"),
            p50,
            "ms",
        );
        r.add(G, "  p99", p99, "ms");
        r.add(G, "  max", max, "ms");
    }
    r.note(format!(
        "alerting: time to page over {trials} trials (one fresh check each), interval {INTERVAL}, 2 regions, min_regions 2, confirmations 2, real time"
    ));
    for (label, deps, group) in [
        ("without depends_on", false, false),
        ("with depends_on = [\"db\"]", true, false),
        ("with group_by = [\"team\"]", false, true),
        ("with depends_on and group_by", true, true),
    ] {
        let pages = shared_outage(deps, group)?;
        r.add(
            G,
            format!("pages for an outage of db + 20 dependents, {label}"),
            pages as f64,
            "pages",
        );
    }
    Ok(())
}
