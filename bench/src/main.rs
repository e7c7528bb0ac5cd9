//! `outpost-bench`: the benchmark suite. `scripts/bench.sh` builds it in
//! release mode and runs `outpost-bench all`; BENCHMARKS.md explains every
//! figure. Not part of the test suite: CI runs `all --quick` as a smoke test.
//!
//! Method, in one paragraph: CPU is read from `/proc/<pid>/task/*/schedstat`
//! (nanoseconds on CPU, all threads) before and after a measured window, so a
//! figure is CPU time per operation, not wall time. The measured process runs
//! on core 0; the target server and the controller run as separate processes
//! pinned to core 1 (`taskset`), so their work is not counted. Baselines (a
//! raw rustls loop back to back and paced at the probe's rate,
//! blackbox_exporter) run in the same invocation against the same target,
//! and ratios are printed side by side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerting;
mod history;
mod measure;
mod otel;
mod pace;
mod replicas;
mod scenario;
mod slowloris;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "outpost-bench", about = "Outpost benchmark suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every benchmark and print the report.
    All {
        /// A short smoke run (CI): small counts, no blackbox_exporter.
        #[arg(long)]
        quick: bool,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run only these sections (repeatable): cpu, throughput, memory, scheduler, controller, pace, postgres, fleet, tracing, alerting.
        #[arg(long)]
        only: Vec<String>,
    },
    /// Run one check in a loop at a fixed rate against a fresh target (for
    /// profiling: `perf record -g -- outpost-bench check-loop --kind plain`).
    CheckLoop {
        /// Target to check.
        #[arg(long, value_enum)]
        kind: scenario::TargetKind,
        /// Checks per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// How many checks.
        #[arg(long, default_value_t = 4000)]
        n: u64,
    },
    /// A release controller under a slowloris attack: attacker sockets held,
    /// probe connect time and status page p99 during the attack.
    Slowloris {
        /// Attacker sockets, half on each listener.
        #[arg(long, default_value_t = 1000)]
        sockets: usize,
        /// Page loads per phase (without, then with the attack).
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// History: ingest cost with rollups, bytes per check-region-day, and
    /// the overview's `GET /` with 90 hours and 30 days of rollups seeded.
    History {
        /// Checks in the overview.
        #[arg(long, default_value_t = 2000)]
        checks: usize,
        /// Regions (one probe each), every check in all of them.
        #[arg(long, default_value_t = 5)]
        regions: usize,
        /// Overview loads measured.
        #[arg(long, default_value_t = 20)]
        loads: usize,
    },
    /// Serve the benchmark target (used by `all` as a child process).
    Target {
        /// What to serve.
        #[arg(long, value_enum)]
        kind: scenario::TargetKind,
        /// Directory for the CA file.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Target { kind, dir } => {
            // One thread: the target shares core 1 with the controller.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(scenario::serve_target(kind, &dir))
        }
        Command::CheckLoop { kind, rate, n } => {
            let (check, push) = scenario::check_loop(kind, rate, n)?;
            println!("check::run {check:.1} µs CPU per check; outbox push {push:.1} µs");
            Ok(())
        }
        Command::Slowloris { sockets, requests } => {
            let f = slowloris::run(sockets, requests)?;
            println!(
                "slowloris: {} attacker sockets (half-sent HTTP/1.1 heads on http, half-sent HTTP/2 prefaces on grpc)",
                f.sockets
            );
            println!(
                "  attacker sockets held during the attack: median {}, max {} ({} connections opened while measuring)",
                f.held_median, f.held_max, f.connects
            );
            println!(
                "  probe connect (attach to assignment): {:.1} ms idle, {:.1} ms under attack",
                f.probe_ms.0, f.probe_ms.1
            );
            println!(
                "  status page GET /: idle p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                f.page_idle.0, f.page_idle.1, f.page_idle.2
            );
            println!(
                "  status page GET /: under attack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed",
                f.page_attack.0, f.page_attack.1, f.page_attack.2, f.page_errors
            );
            Ok(())
        }
        Command::History {
            checks,
            regions,
            loads,
        } => {
            let f = history::run(checks, regions, loads)?;
            println!(
                "history ({checks} checks × {regions} regions, {} rollup rows seeded)",
                f.seeded_rows
            );
            println!(
                "  ingest of 1,000 results with their minute rollups: {:.1} ms (median of 20 batches)",
                f.ingest_ms_per_1000
            );
            println!(
                "  fold of 1,000 minute rollups into hours, days and summaries: {:.1} ms",
                f.fold_ms_per_1000
            );
            println!(
                "  bytes per check-region-day at one run a minute: rollups {:.0} B, raw results {:.0} B",
                f.rollup_bytes_per_check_region_day, f.raw_bytes_per_check_region_day
            );
            println!(
                "  overview GET /: median {:.1} ms, p99 {:.1} ms, max {:.1} ms over {loads} loads",
                f.overview_ms.0, f.overview_ms.1, f.overview_ms.2
            );
            Ok(())
        }
        Command::All { quick, json, only } => {
            let report = scenario::run_all(quick, &only)?;
            println!("{}", report.render());
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)?;
            }
            Ok(())
        }
    }
}
