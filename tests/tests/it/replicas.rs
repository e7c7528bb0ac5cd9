//! Three real `outpost-controller run` processes on one PostgreSQL database
//! (the test kit's throwaway cluster), probes that know all three URLs, and
//! the test kit's PagerDuty receiver:
//! - the evaluator killed with `kill -9` while a check fails: another
//!   replica takes over within the lease + 1 s, and the receiver sees one
//!   trigger and one resolve;
//! - the evaluator cut off from PostgreSQL (a proxy between them, stopped):
//!   it stops evaluating before another replica starts, and nothing is
//!   notified twice;
//! - the replica a probe streams to killed: the probe moves to another one
//!   and every result is stored exactly once.
//!
//! With `OUTPOST_TEST_POSTGRES=skip` these tests return at once (see the
//! test kit's `postgres` module); CI never sets it.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use outpost_e2e::{Fleet, binary};
use outpost_testkit::{
    HttpServer, PagerReceiver, Reply, RunningServer, TcpProxy, client, free_port, postgres,
    wait::eventually,
};

const REGIONS: [&str; 2] = ["eu-west", "us-east"];
const ROUTING_KEY: &str = "R3PL1CASKEYR3PL1CASKEYR3PL1CAS32";
/// `[alerting] evaluator_lease` of every replica.
const LEASE: Duration = Duration::from_secs(2);

struct Replica {
    child: Option<Child>,
    grpc: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
}

impl Replica {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The failing/recovering target, the receiver and the shared config body.
struct Setup {
    fleet: Fleet,
    failing: Arc<Mutex<bool>>,
    _target: RunningServer,
    pager: PagerReceiver,
    body: String,
}

async fn setup(interval: &str) -> Setup {
    let failing = Arc::new(Mutex::new(true));
    let f = failing.clone();
    let target = HttpServer::builder()
        .handler("/health", move |_| {
            if *f.lock().unwrap() {
                Reply::text(503, "down")
            } else {
                Reply::text(200, "ok")
            }
        })
        .run()
        .await
        .unwrap();
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let fleet = Fleet::new();
    let key = fleet.secret("pd.key", ROUTING_KEY);
    let body = format!(
        r#"[alerting]
evaluator_lease = "{lease}s"
{probes}
[[checks]]
id = "api-health"
interval = "{interval}"
timeout = "80ms"
alert = {{ min_regions = 2, confirmations = 2, recoveries = 2 }}
http = {{ url = "{url}" }}

[[sinks]]
name = "pagerduty"
pagerduty = {{ routing_key = {{ file = "{key}" }}, api_url = "{pd}" }}

[[routes]]
name = "oncall"
sinks = ["pagerduty"]
"#,
        lease = LEASE.as_secs(),
        probes = fleet.probes_toml(&REGIONS),
        url = target.url("/health"),
        key = key.display(),
        pd = pager.url(),
    );
    Setup {
        fleet,
        failing,
        _target: target,
        pager,
        body,
    }
}

/// Starts replica `i` on the database at `db_url`.
async fn replica(s: &Setup, i: usize, db_url: &str) -> Replica {
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let url_file = s.fleet.secret(&format!("db-{i}.url"), db_url);
    let text = format!(
        "[server]\ngrpc_listen = \"{grpc}\"\nhttp_listen = \"{http}\"\nallow_plaintext_probes = true\nallow_unauthenticated = true\n[store]\nurl = {{ file = \"{}\" }}\npool_size = 4\n{}",
        url_file.display(),
        s.body
    );
    let config = s.fleet.dir.path().join(format!("controller-{i}.toml"));
    std::fs::write(&config, text).unwrap();
    let log = s.fleet.dir.path().join(format!("controller-{i}.log"));
    let mut cmd = Command::new(binary("outpost-controller"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OUTPOST_")) {
        cmd.env_remove(k);
    }
    let child = cmd
        .args(["run", "--config", config.to_str().unwrap()])
        .env("OUTPOST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut r = Replica {
        child: Some(child),
        grpc,
        http,
        log,
    };
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if client::get(http, "/readyz")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            return r;
        }
        let exited = r.child.as_mut().unwrap().try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < end,
            "replica {i} not ready ({exited:?}):\n{}",
            r.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/api/v1/evaluator` of a replica: (leader, epoch), or `None` if it does not answer.
async fn evaluator(http: SocketAddr) -> Option<(bool, i64)> {
    let resp = client::get(http, "/api/v1/evaluator").await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
    Some((v["leader"].as_bool()?, v["epoch"].as_i64()?))
}

/// Indices of the replicas that say they are the evaluator.
async fn leaders(rs: &[Replica]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        if r.child.is_some() && evaluator(r.http).await.is_some_and(|(l, _)| l) {
            out.push(i);
        }
    }
    out
}

/// A probe of `region` that knows every replica, first `urls[0]`.
fn probe(fleet: &Fleet, region: &str, urls: &[SocketAddr]) -> outpost_probe::RunningProbe {
    let token = fleet.dir.path().join(format!("{region}.token"));
    let list: Vec<String> = urls.iter().map(|a| format!("\"http://{a}\"")).collect();
    let text = format!(
        "[probe]\nname = \"probe-{region}\"\nregion = \"{region}\"\n[controller]\nurls = [{}]\ntoken = {{ file = \"{}\" }}\nallow_plaintext = true\nheartbeat_interval = \"1s\"\n",
        list.join(", "),
        token.display()
    );
    let raw: outpost_probe::config::RawProbeFile =
        outpost_probe::config::load::load_str(&text, "probe", outpost_probe::config::ENV, &[])
            .unwrap();
    let mut cfg = raw.validate("probe").unwrap_or_else(|e| panic!("{e}"));
    cfg.outbox.dir = fleet.outbox_dir(region);
    outpost_probe::spawn(cfg, None).unwrap()
}

/// The trigger was recorded as delivered (asked through replica `http`).
async fn trigger_delivered(http: SocketAddr) -> bool {
    let Ok(resp) = client::get(http, "/api/v1/alerts").await else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    v["alerts"].as_array().is_some_and(|list| {
        list.iter().any(|al| {
            al["notifications"].as_array().is_some_and(|ns| {
                ns.iter()
                    .any(|n| n["action"] == "trigger" && n["state"] == "delivered")
            })
        })
    })
}

/// Exactly one trigger then one resolve, one dedup key, nothing rejected;
/// waits `quiet` for anything extra.
async fn assert_one_trigger_one_resolve(pager: &PagerReceiver, quiet: Duration) {
    pager.wait_for_events(2, Duration::from_secs(30)).await;
    tokio::time::sleep(quiet).await;
    let events = pager.events();
    let actions: Vec<&str> = events.iter().map(|e| e.event_action.as_str()).collect();
    assert_eq!(actions, ["trigger", "resolve"], "{events:#?}");
    assert_eq!(events[0].dedup_key, events[1].dedup_key);
    assert!(pager.rejected().is_empty(), "{:?}", pager.rejected());
}

/// Epochs recorded on the alert and its notifications (trigger, resolve).
fn recorded_epochs(db: &postgres::PgDatabase) -> (String, String) {
    let alert = db.query("SELECT epoch FROM alerts").unwrap();
    let notes = db
        .query("SELECT action || ':' || epoch FROM notifications ORDER BY id")
        .unwrap()
        .replace('\n', ",");
    (alert, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluator_killed_while_a_check_fails_is_replaced_within_the_lease_and_pages_once() {
    let Some(db) = postgres::database() else {
        return;
    };
    let s = setup("200ms").await;
    let mut rs = Vec::new();
    for i in 0..3 {
        rs.push(replica(&s, i, &db.url).await);
    }
    eventually("one evaluator", Duration::from_secs(10), || async {
        leaders(&rs).await.len() == 1
    })
    .await;
    let urls: Vec<SocketAddr> = rs.iter().map(|r| r.grpc).collect();
    let probes: Vec<_> = REGIONS.iter().map(|r| probe(&s.fleet, r, &urls)).collect();

    // Both regions fail → one trigger, delivered and recorded.
    let events = s.pager.wait_for_events(1, Duration::from_secs(20)).await;
    assert_eq!(events[0].event_action, "trigger");
    let http = rs[0].http;
    eventually(
        "the trigger recorded as delivered",
        Duration::from_secs(10),
        || trigger_delivered(http),
    )
    .await;
    let old = leaders(&rs).await[0];
    let (_, old_epoch) = evaluator(rs[old].http).await.unwrap();
    rs[old].kill();
    let killed = Instant::now();

    // Another replica takes over within the lease + 1 s.
    let mut took_over = None;
    while killed.elapsed() < LEASE + Duration::from_secs(5) {
        if let [new] = leaders(&rs).await[..] {
            took_over = Some((new, killed.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (new, after) = took_over.expect("no replica took over");
    assert_ne!(new, old);
    assert!(
        after <= LEASE + Duration::from_secs(1),
        "took over {after:?} after the kill (lease {LEASE:?})"
    );
    let (_, new_epoch) = evaluator(rs[new].http).await.unwrap();
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");

    // The check recovers; the new evaluator resolves, nobody re-triggers.
    *s.failing.lock().unwrap() = false;
    assert_one_trigger_one_resolve(&s.pager, Duration::from_secs(2)).await;
    let (alert, notes) = recorded_epochs(&db);
    assert_eq!(alert, new_epoch.to_string(), "resolved under the new epoch");
    assert_eq!(notes, format!("trigger:{old_epoch},resolve:{new_epoch}"));
    eprintln!(
        "replicas: evaluator {old} killed, replica {new} took over after {:.2}s (lease {}s), epoch {old_epoch} → {new_epoch}",
        after.as_secs_f64(),
        LEASE.as_secs()
    );
    for p in probes {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluator_cut_off_from_postgres_stops_before_another_starts_and_nothing_pages_twice() {
    let Some(db) = postgres::database() else {
        return;
    };
    let s = setup("200ms").await;
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], db.port)))
        .await
        .unwrap();
    // Replica 0 reaches PostgreSQL through the proxy and starts first: it
    // is the evaluator.
    let mut rs = vec![replica(&s, 0, &db.url_via(proxy.port())).await];
    let first = rs[0].http;
    eventually("replica 0 evaluating", Duration::from_secs(10), || async {
        evaluator(first).await.is_some_and(|(l, _)| l)
    })
    .await;
    for i in 1..3 {
        rs.push(replica(&s, i, &db.url).await);
    }
    let (_, old_epoch) = evaluator(first).await.unwrap();
    // The probes stream to replicas 1 and 2, which keep their database.
    let urls = [rs[1].grpc, rs[2].grpc];
    let probes: Vec<_> = REGIONS.iter().map(|r| probe(&s.fleet, r, &urls)).collect();
    let events = s.pager.wait_for_events(1, Duration::from_secs(20)).await;
    assert_eq!(events[0].event_action, "trigger");
    let other = rs[1].http;
    eventually(
        "the trigger recorded as delivered",
        Duration::from_secs(10),
        || trigger_delivered(other),
    )
    .await;

    proxy.stop().await;
    let cut = Instant::now();
    // Watch both sides every 10 ms: when replica 0 stops calling itself the
    // evaluator, and when another replica starts.
    let (mut fenced, mut started) = (None, None);
    while cut.elapsed() < LEASE * 3 && (fenced.is_none() || started.is_none()) {
        if fenced.is_none() && evaluator(first).await.is_some_and(|(l, _)| !l) {
            fenced = Some(cut.elapsed());
        }
        if started.is_none() {
            for r in &rs[1..] {
                if evaluator(r.http).await.is_some_and(|(l, _)| l) {
                    started = Some(cut.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fenced = fenced.expect("replica 0 never stopped evaluating");
    let started = started.expect("no replica took over");
    assert!(
        fenced < started,
        "replica 0 stopped at {fenced:?}, another started at {started:?}"
    );
    assert!(started <= LEASE + Duration::from_secs(1), "{started:?}");
    assert!(
        rs[0].log().contains("stopped evaluating"),
        "{}",
        rs[0].log()
    );

    // Still failing: the new evaluator reads the open alert back and pages
    // nobody; then the check recovers and exactly one resolve follows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.pager.events().len(), 1, "{:#?}", s.pager.events());
    *s.failing.lock().unwrap() = false;
    assert_one_trigger_one_resolve(&s.pager, Duration::from_secs(2)).await;
    let (_, notes) = recorded_epochs(&db);
    assert!(
        notes.starts_with(&format!("trigger:{old_epoch},resolve:"))
            && !notes.ends_with(&format!(":{old_epoch}")),
        "{notes}"
    );
    eprintln!(
        "replicas: cut off at 0, stopped evaluating after {:.2}s, another evaluator after {:.2}s",
        fenced.as_secs_f64(),
        started.as_secs_f64()
    );
    for p in probes {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_whose_replica_dies_moves_to_another_and_loses_nothing() {
    let Some(db) = postgres::database() else {
        return;
    };
    let s = setup("100ms").await;
    let mut rs = Vec::new();
    for i in 0..3 {
        rs.push(replica(&s, i, &db.url).await);
    }
    let urls: Vec<SocketAddr> = rs.iter().map(|r| r.grpc).collect();
    let region = REGIONS[0];
    let p = probe(&s.fleet, region, &urls);
    let stored = || {
        db.query("SELECT COUNT(*) FROM results")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    // The probe's first URL is replica 0: its stream carries the results.
    eventually(
        "results through replica 0",
        Duration::from_secs(10),
        || async { stored() > 20 },
    )
    .await;
    let before = stored();
    rs[0].kill();
    eventually(
        "results through another replica",
        Duration::from_secs(20),
        || async { stored() > before + 40 },
    )
    .await;
    p.shutdown().await;

    let outbox = outpost_probe::outbox::Outbox::open(outpost_probe::outbox::OutboxConfig::new(
        s.fleet.outbox_dir(region),
    ))
    .unwrap();
    let acked = outbox.acked_through() as i64;
    drop(outbox);
    let row = db
        .query(
            "SELECT COUNT(*), COUNT(DISTINCT sequence), MIN(sequence), MAX(sequence) FROM results",
        )
        .unwrap();
    let n: Vec<i64> = row.split('|').map(|v| v.parse().unwrap()).collect();
    let (count, distinct, min, max) = (n[0], n[1], n[2], n[3]);
    assert_eq!(distinct, count, "no sequence stored twice");
    // Sequences start where the probe's clock put them, one per result.
    assert_eq!(max - min + 1, count, "contiguous: nothing lost");
    assert!(
        max >= acked,
        "everything acknowledged is stored ({max} < {acked})"
    );
    eprintln!(
        "replicas: probe moved after its replica died; {count} results stored once each ({before} before the kill), {acked} acknowledged"
    );
}
