//! Section `tracing`: probe CPU per check with `[telemetry]` sampling off,
//! `failures_only` and `always`, side by side in one run.
//!
//! The same standalone probe (no controller: the difference is the trace
//! pipeline, not the report path) runs 50 HTTPS checks at 250 ms (200/s)
//! against the bench target in its own process, three times: sampling
//! `off`, `failures_only` (every check passes: ids, the `run` span and the
//! decision, nothing exported) and `always` (every run a trace, exported
//! over OTLP/gRPC). The OTLP receiver is the test kit's, on loopback, on a
//! thread of its own whose CPU is read from its `/proc/self/task/<tid>`
//! and subtracted: the figure is the probe's cost, not the collector's.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use outpost_testkit::OtlpReceiver;

use crate::measure::self_cpu_ns;

/// One figure: µs of CPU per check, spans received.
pub struct Figure {
    /// `off`, `failures_only`, `always`.
    pub sampling: &'static str,
    /// Probe CPU per finished check, µs.
    pub cpu_us: f64,
    /// Checks finished in the window.
    pub checks: u64,
    /// Spans the receiver got.
    pub spans: usize,
}

/// CPU of one thread of this process (on-CPU ns, its schedstat).
fn thread_cpu_ns(tid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A receiver on its own thread and runtime; returns its endpoint and tid.
fn receiver() -> anyhow::Result<(Arc<OtlpReceiver>, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let r = Arc::new(OtlpReceiver::start().await.unwrap());
            tx.send((r.clone(), tid)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    Ok(rx.recv()?)
}

/// The three figures for `url` (`ca`: the target's CA file).
pub fn run(
    url: &str,
    ca: Option<&std::path::Path>,
    window: Duration,
) -> anyhow::Result<Vec<Figure>> {
    let (receiver, tid) = receiver()?;
    let ca = ca
        .map(|p| format!(", ca_file = \"{}\"", p.display()))
        .unwrap_or_default();
    let mut checks = String::new();
    for i in 0..50 {
        checks.push_str(&format!(
            "[[checks]]\nid = \"t{i}\"\ninterval = \"250ms\"\ntimeout = \"240ms\"\nhttp = {{ url = \"{url}\"{ca} }}\n"
        ));
    }
    let mut out = Vec::new();
    for sampling in ["off", "failures_only", "always"] {
        let telemetry = format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nsampling = \"{sampling}\"\n",
            receiver.endpoint()
        );
        let text = format!("[probe]\nname = \"bench\"\nregion = \"bench\"\n{telemetry}{checks}");
        let raw: outpost_probe::config::RawProbeFile =
            outpost_probe::config::load::load_str(&text, "bench", outpost_probe::config::ENV, &[])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let cfg = raw.validate("bench").map_err(|e| anyhow::anyhow!("{e}"))?;
        let spans_before = receiver.spans().len();
        let rt = tokio::runtime::Runtime::new()?;
        let (cpu_us, checks) = rt.block_on(async {
            let probe = outpost_probe::spawn(cfg, Some(Arc::new(|_| {})))?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let stats = probe.scheduler.stats.clone();
            let (f0, c0, r0) = (
                stats.finished.load(Ordering::Relaxed),
                self_cpu_ns(),
                thread_cpu_ns(&tid),
            );
            tokio::time::sleep(window).await;
            let (f1, c1, r1) = (
                stats.finished.load(Ordering::Relaxed),
                self_cpu_ns(),
                thread_cpu_ns(&tid),
            );
            probe.shutdown().await;
            let done = (f1 - f0).max(1);
            let probe_ns = (c1 - c0).saturating_sub(r1 - r0);
            anyhow::Ok((probe_ns as f64 / 1000.0 / done as f64, done))
        })?;
        drop(rt);
        out.push(Figure {
            sampling,
            cpu_us,
            checks,
            spans: receiver.spans().len() - spans_before,
        });
    }
    Ok(out)
}
