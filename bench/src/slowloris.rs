//! `outpost-bench slowloris`: a release `outpost-controller` (its own
//! process, pinned to core 1) under a bounded loopback slowloris attack from
//! this process (the test kit's `Attacker`): half-sent HTTP/1.1 request heads
//! against the HTTP listener and half-sent HTTP/2 prefaces against the gRPC
//! listener, `sockets` in all, each reconnecting one second after the
//! controller closes it. While it runs: how many sockets the attacker holds,
//! how long a fake probe takes to connect (attach to first assignment), and
//! the status page's latency (`GET /`, a fresh connection each time) — p50,
//! p99 and the slowest, with the same figures without the attack first.
//! The controller runs with its default caps (256 per listener) and a
//! `LimitNOFILE`-like descriptor limit of 4096, raised here if needed.

use std::{
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::bail;
use outpost_testkit::{Attacker, Slow, client, fake_probe, slowloris::raise_open_files};

use crate::scenario::{Proc, exe_dir, free_port, pinned};

/// Figures of one run.
#[derive(Debug)]
pub struct Figures {
    /// Sockets the attacker ran.
    pub sockets: usize,
    /// Sockets it held (connected, as far as it knew), sampled during the attack: median and max.
    pub held_median: usize,
    /// See `held_median`.
    pub held_max: usize,
    /// Connections it opened during the measured window.
    pub connects: u64,
    /// Probe connect (attach → assignment) without and with the attack, ms.
    pub probe_ms: (f64, f64),
    /// Status page p50 / p99 / max without the attack, ms.
    pub page_idle: (f64, f64, f64),
    /// The same during the attack.
    pub page_attack: (f64, f64, f64),
    /// Page requests that failed during the attack.
    pub page_errors: usize,
}

struct Running {
    _proc: Proc,
    grpc: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start() -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let tok = dir.path().join("probe.token");
    std::fs::write(&tok, "bench-token-slow-0123456789abcdef0123456789abcdef")?;
    let text = format!(
        "[server]\ngrpc_listen = \"{grpc}\"\nhttp_listen = \"{http}\"\nallow_unauthenticated = true\nallow_plaintext_probes = true\n\
         [store]\npath = \"{}\"\n\
         [[probes]]\nname = \"slow\"\nregion = \"region-slow\"\ntoken = {{ file = \"{}\" }}\n\
         [[checks]]\nid = \"c\"\ninterval = \"1m\"\nalert = {{ enabled = false }}\nhttp = {{ url = \"http://127.0.0.1:9/\" }}\n",
        dir.path().join("bench.db").display(),
        tok.display()
    );
    let cfg = dir.path().join("controller.toml");
    std::fs::write(&cfg, text)?;
    let bin = exe_dir().join("outpost-controller");
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p outpost-controller`",
            bin.display()
        );
    }
    let child = pinned(
        Some(1),
        &bin,
        &["run", "--config", cfg.to_str().unwrap_or_default()],
    )
    .env("OUTPOST_LOG", "error")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()?;
    let mut proc = Proc(child);
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(http).is_err() || std::net::TcpStream::connect(grpc).is_err()
    {
        if let Ok(Some(status)) = proc.0.try_wait() {
            bail!("controller exited with {status}");
        }
        if Instant::now() > end {
            bail!("controller did not listen on {grpc} and {http}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Running {
        _proc: proc,
        grpc,
        http,
        _dir: dir,
    })
}

async fn probe_connect(grpc: SocketAddr) -> anyhow::Result<f64> {
    let t = Instant::now();
    let hello = fake_probe::hello("slow", "region-slow");
    let (tx, mut rx) = tokio::time::timeout(
        Duration::from_secs(30),
        fake_probe::attach(
            grpc,
            Some("bench-token-slow-0123456789abcdef0123456789abcdef"),
            vec![hello],
        ),
    )
    .await??;
    let _ = tokio::time::timeout(Duration::from_secs(30), rx.message()).await??;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    drop((tx, rx));
    Ok(ms)
}

/// `n` page loads, one at a time, calling `each` after every one: (sorted
/// latencies in ms, errors).
async fn pages(http: SocketAddr, n: usize, mut each: impl FnMut()) -> (Vec<f64>, usize) {
    let mut took = Vec::with_capacity(n);
    let mut errors = 0;
    for _ in 0..n {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(30), client::get(http, "/")).await {
            Ok(Ok(r)) if r.status == 200 => took.push(t.elapsed().as_secs_f64() * 1e3),
            _ => errors += 1,
        }
        each();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took.sort_by(f64::total_cmp);
    (took, errors)
}

fn pct(v: &[f64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() * p).div_ceil(100)).saturating_sub(1)]
}

fn summary(v: &[f64]) -> (f64, f64, f64) {
    (
        pct(v, 50),
        pct(v, 99),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

/// Runs the benchmark with `sockets` attacker sockets (half on each listener)
/// and `requests` page loads per phase.
pub fn run(sockets: usize, requests: usize) -> anyhow::Result<Figures> {
    raise_open_files(4096 + 2 * sockets as u64);
    let ctl = start()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let probe_idle = probe_connect(ctl.grpc).await?;
        let (idle, _) = pages(ctl.http, requests, || {}).await;

        let web = Attacker::start(ctl.http, Slow::HttpHeaders, sockets / 2);
        let rpc = Attacker::start(ctl.grpc, Slow::H2Preface, sockets - sockets / 2);
        let end = Instant::now() + Duration::from_secs(30);
        while web.connects() + rpc.connects() < sockets as u64 && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let connects_before = web.connects() + rpc.connects();
        let probe_attack = probe_connect(ctl.grpc).await?;
        let held_now = || web.held() + rpc.held();
        let mut held = vec![held_now()];
        let (attack, page_errors) = pages(ctl.http, requests, || held.push(held_now())).await;
        let connects = web.connects() + rpc.connects() - connects_before;
        held.sort_unstable();
        web.stop().await;
        rpc.stop().await;
        Ok(Figures {
            sockets,
            held_median: held.get(held.len() / 2).copied().unwrap_or(0),
            held_max: held.last().copied().unwrap_or(0),
            connects,
            probe_ms: (probe_idle, probe_attack),
            page_idle: summary(&idle),
            page_attack: summary(&attack),
            page_errors,
        })
    })
}
