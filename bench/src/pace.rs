//! The `pace` section: the controller's CPU per result at a fixed,
//! realistic pace (200 results/s, as issue 18 measured it), for results an
//! HTTPS check reports (a certificate chain in the details) and for plain
//! HTTP results, side by side in one run.
//!
//! The details are real: one `check::run` against the bench's own target
//! (HTTPS or plain), its `details_json` as the probe would send it. The
//! results go over one gRPC stream in batches as the probe sends them:
//! passes after passes every [`outpost_probe::reporter::ROUTINE_LINGER`]
//! (the goal's figure: a healthy fleet's steady state), and, as a second
//! line, every [`outpost_probe::reporter::LINGER`] (20 ms: what a probe
//! whose every result is a failure or a recovery sends). One result per
//! check round robin over 200 checks, so every check reports once a
//! second. The controller is an `outpost-controller
//! run` process on SQLite pinned to core 1; its CPU (all threads, from
//! schedstat) over the window divided by the results sent is the figure.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use outpost_proto::v1::CheckResult;

use crate::{
    measure::cpu_ns,
    scenario::{Target, open_stream, result, send_and_ack, start_controller, toml_from},
};

/// Checks the results are spread over.
const CHECKS: usize = 200;

/// `details_json` of one real run of an HTTP check against `target`.
pub(crate) fn sample_details(target: &Target) -> anyhow::Result<String> {
    let ca = target
        .ca
        .as_ref()
        .map(|p| format!(", ca_file = \"{}\"", p.display()))
        .unwrap_or_default();
    let raw: outpost_probe::check::RawCheck = toml_from(&format!(
        "id = \"s\"\ninterval = \"1s\"\ntimeout = \"900ms\"\nhttp = {{ url = \"{}\"{ca} }}\n",
        target.url
    ))?;
    let mut problems = outpost_probe::config::Problems::default();
    let spec = raw
        .validate("checks[0]", &mut problems)
        .with_context(|| format!("{problems:?}"))?;
    let ctx = outpost_probe::check::RunContext {
        probe_name: "bench".into(),
        region: "region-bench".into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(outpost_probe::check::run(&spec, &ctx));
    if !outcome.ok() {
        bail!("sample check failed: {}", outcome.to_json());
    }
    Ok(outpost_probe::bound::clip_details(&outcome.observed))
}

/// Controller CPU µs per result at `rate` results/s over `window`, every
/// result carrying `details`, a batch every `linger` (one stream, SQLite,
/// controller on core 1).
pub(crate) fn cpu_per_result(
    details: &str,
    rate: u64,
    linger: Duration,
    window: Duration,
) -> anyhow::Result<f64> {
    let mut checks = String::new();
    for i in 0..CHECKS {
        let _ = write!(
            checks,
            "[[checks]]\nid = \"p{i}\"\ninterval = \"1s\"\nregions = [\"region-pace\"]\nhttp = {{ url = \"https://127.0.0.1:9/\" }}\n"
        );
    }
    let ctl = start_controller(Some(1), &["pace"], &checks, "")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let per_batch = ((rate as f64 * linger.as_secs_f64()).round() as usize).max(1);
    rt.block_on(async {
        let mut s = open_stream(ctl.grpc, "pace").await?;
        let mut seq = 0u64;
        let mut next = 0usize;
        let mut batch = |seq: &mut u64| -> Vec<CheckResult> {
            (0..per_batch)
                .map(|_| {
                    *seq += 1;
                    let check = format!("p{}", next % CHECKS);
                    next += 1;
                    let mut r = result(&check, *seq, true);
                    r.details_json = details.to_owned();
                    r
                })
                .collect()
        };
        let mut tick = tokio::time::interval(linger);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Warm-up: every check reported (rows, sightings) before measuring.
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_secs(3) {
            tick.tick().await;
            send_and_ack(&mut s, batch(&mut seq)).await?;
        }
        let cpu0 = cpu_ns(ctl.proc.pid());
        let sent0 = seq;
        let t0 = Instant::now();
        while t0.elapsed() < window {
            tick.tick().await;
            send_and_ack(&mut s, batch(&mut seq)).await?;
        }
        let cpu = cpu_ns(ctl.proc.pid()) - cpu0;
        Ok(cpu as f64 / 1000.0 / (seq - sent0) as f64)
    })
}
