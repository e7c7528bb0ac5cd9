//! The scheduler: runs each check every `interval`, offset by a deterministic
//! jitter, with a cap on runs in flight.
//!
//! Design notes:
//! - **Phase.** A check's run times are `offset + k·interval` on the wall
//!   clock, where `offset = fnv1a(probe name, check id) mod interval`. The same
//!   probe keeps the same cadence across restarts, different probes spread
//!   their load, and nothing is random.
//! - **Overrun.** A run still going when its next one is due is not doubled:
//!   the due run is skipped and counted (`skipped_overrun`).
//! - **Cap.** At most `max_concurrency` runs execute at once; a due run waits
//!   for a slot, and that wait shows up as lateness.
//! - **No drift.** The next due time is computed from the previous due time,
//!   not from when a run finished; if the loop fell behind by more than an
//!   interval, missed slots are skipped (counted as `skipped_late`), never
//!   replayed in a burst.
//! - **Updates.** [`Scheduler::set_checks`] replaces the whole set; unchanged
//!   checks keep their phase, runs in flight finish and report.
//! - **Run now.** [`Scheduler::run_now`] (the controller's `RunNow` hint)
//!   starts one extra run at once, outside the slot grid: the regular slots
//!   do not move. A check already running is not doubled (the hint is
//!   skipped: that run's result is as fresh). At most one extra run per
//!   check per `min(interval, 1 s)` ([`ExtraRuns`]), so a hostile or buggy
//!   controller cannot make the probe hammer a target.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{sync::Semaphore, time::Instant};

use crate::check::{self, CheckSpec, Outcome, RunContext};

/// Receives each finished run with the assignment version it came from.
pub type Sink = Arc<dyn Fn(u64, Outcome) + Send + Sync>;

/// Counters, readable while the scheduler runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Runs started.
    pub started: AtomicU64,
    /// Runs finished.
    pub finished: AtomicU64,
    /// Due runs skipped because the previous run of the check was still going.
    pub skipped_overrun: AtomicU64,
    /// Due slots skipped because the scheduler fell more than an interval behind.
    pub skipped_late: AtomicU64,
    /// Extra runs started by [`Scheduler::run_now`].
    pub extra_runs: AtomicU64,
    /// Optional record of start lateness in microseconds (benchmarks).
    pub lateness_us: Mutex<Option<Vec<u32>>>,
}

impl Stats {
    /// Starts recording start lateness (for benchmarks).
    pub fn record_lateness(&self) {
        *self.lateness_us.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }
}

struct Entry {
    spec: Arc<CheckSpec>,
    version: u64,
    running: Arc<AtomicBool>,
    generation: u64,
}

/// The rate limit of extra runs: one per check per `min(interval, 1 s)`.
#[derive(Debug, Default)]
pub struct ExtraRuns {
    last: HashMap<String, Instant>,
}

/// The shortest spacing of extra runs of a check.
pub const EXTRA_RUN_SPACING_MAX: Duration = Duration::from_secs(1);

impl ExtraRuns {
    /// True (and recorded) when an extra run of `check_id` may start at `now`.
    pub fn allow(&mut self, check_id: &str, interval: Duration, now: Instant) -> bool {
        let spacing = interval.min(EXTRA_RUN_SPACING_MAX);
        match self.last.get(check_id) {
            Some(last) if now.saturating_duration_since(*last) < spacing => false,
            _ => {
                self.last.insert(check_id.to_owned(), now);
                true
            }
        }
    }

    /// Forgets checks no longer scheduled.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|id, _| keep(id));
    }
}

/// What [`Scheduler::run_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNow {
    /// An extra run started.
    Started,
    /// The check is running already; its result is as fresh.
    AlreadyRunning,
    /// An extra run of this check started less than `min(interval, 1 s)` ago.
    RateLimited,
    /// No such check on this probe.
    Unknown,
}

struct Shared {
    entries: HashMap<String, Entry>,
    /// (due, generation, id): an item whose generation no longer matches its
    /// entry is stale and ignored.
    heap: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_generation: u64,
    extra: ExtraRuns,
}

/// Schedules checks and hands outcomes to a [`Sink`].
pub struct Scheduler {
    ctx: RunContext,
    shared: Mutex<Shared>,
    wake: tokio::sync::Notify,
    permits: Arc<Semaphore>,
    sink: Sink,
    /// Counters.
    pub stats: Arc<Stats>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// FNV-1a over the parts (see [`crate::fnv::parts`]): stable across releases
/// and platforms, so a probe keeps its schedule phase and the controller its
/// assignment versions.
pub fn fnv1a(parts: &[&str]) -> u64 {
    crate::fnv::parts(parts)
}

/// The deterministic offset of a check within its interval.
pub fn jitter(probe: &str, check_id: &str, interval: Duration) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(fnv1a(&[probe, check_id]) % ms)
}

/// The slot after `due` on its grid (`due + k·interval`) that is still ahead
/// of `now`, and how many slots before it were missed because the loop fell
/// behind (skipped, never replayed in a burst).
pub fn next_slot(due: Instant, interval: Duration, now: Instant) -> (Instant, u64) {
    let next = due + interval;
    if next > now {
        return (next, 0);
    }
    let i = interval.as_nanos().max(1);
    let missed = (now - next).as_nanos() / i + 1;
    let ahead = Duration::from_nanos(u64::try_from(missed * i).unwrap_or(u64::MAX));
    (next + ahead, u64::try_from(missed).unwrap_or(u64::MAX))
}

/// Time from `now_since_epoch` to the next slot `offset + k·interval`.
pub fn until_next_slot(
    now_since_epoch: Duration,
    interval: Duration,
    offset: Duration,
) -> Duration {
    let i = interval.as_micros().max(1);
    let now = now_since_epoch.as_micros();
    let off = offset.as_micros() % i;
    let phase = (now + i - off) % i;
    Duration::from_micros(if phase == 0 { 0 } else { (i - phase) as u64 })
}

impl Scheduler {
    /// A scheduler for a probe; call [`Scheduler::run`] to start it.
    pub fn new(ctx: RunContext, max_concurrency: usize, sink: Sink) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            shared: Mutex::new(Shared {
                entries: HashMap::new(),
                heap: BinaryHeap::new(),
                next_generation: 1,
                extra: ExtraRuns::default(),
            }),
            wake: tokio::sync::Notify::new(),
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            sink,
            stats: Arc::new(Stats::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the set of checks (assignment `version`).
    pub fn set_checks(&self, checks: Vec<CheckSpec>, version: u64) {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now = Instant::now();
        let mut sh = self.lock();
        let mut old = std::mem::take(&mut sh.entries);
        for spec in checks {
            let id = spec.id.clone();
            match old.remove(&id) {
                Some(mut e) if e.spec.interval == spec.interval => {
                    e.spec = Arc::new(spec);
                    e.version = version;
                    sh.entries.insert(id, e);
                }
                prev => {
                    let generation = sh.next_generation;
                    sh.next_generation += 1;
                    let off = jitter(&self.ctx.probe_name, &id, spec.interval);
                    let due = now + until_next_slot(wall, spec.interval, off);
                    sh.heap.push(Reverse((due, generation, id.clone())));
                    let running = prev.map(|p| p.running).unwrap_or_default();
                    sh.entries.insert(
                        id,
                        Entry {
                            spec: Arc::new(spec),
                            version,
                            running,
                            generation,
                        },
                    );
                }
            }
        }
        let Shared { entries, extra, .. } = &mut *sh;
        extra.retain(|id| entries.contains_key(id));
        drop(sh);
        self.wake.notify_one();
    }

    /// Starts one extra run of `check_id` now (the controller's `RunNow`
    /// hint), outside its slots and rate-limited (see the design notes).
    pub fn run_now(&self, check_id: &str) -> RunNow {
        let now = Instant::now();
        let mut sh = self.lock();
        let Some(entry) = sh.entries.get(check_id) else {
            return RunNow::Unknown;
        };
        let (spec, version, running) = (entry.spec.clone(), entry.version, entry.running.clone());
        if running.load(Ordering::Acquire) {
            return RunNow::AlreadyRunning;
        }
        if !sh.extra.allow(check_id, spec.interval, now) {
            return RunNow::RateLimited;
        }
        drop(sh);
        if running.swap(true, Ordering::AcqRel) {
            return RunNow::AlreadyRunning;
        }
        self.stats.extra_runs.fetch_add(1, Ordering::Relaxed);
        self.start(spec, version, running, now);
        RunNow::Started
    }

    /// The trace pipeline runs are traced with.
    pub fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.ctx.telemetry
    }

    /// Number of checks scheduled.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no checks are scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs until `shutdown` completes. Runs in flight are left to finish.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next = self.lock().heap.peek().map(|Reverse((due, _, _))| *due);
            let sleep = async {
                match next {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => continue,
                _ = sleep => self.fire_due(),
            }
        }
    }

    fn fire_due(&self) {
        let now = Instant::now();
        let mut sh = self.lock();
        while let Some(Reverse((due, generation, _))) = sh.heap.peek() {
            if *due > now {
                break;
            }
            let (due, generation) = (*due, *generation);
            let Some(Reverse((_, _, id))) = sh.heap.pop() else {
                break;
            };
            let Some(entry) = sh.entries.get(&id) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            let spec = entry.spec.clone();
            let version = entry.version;
            let running = entry.running.clone();
            // Next slot from the due time, skipping any slots already missed.
            let (next, missed) = next_slot(due, spec.interval, now);
            self.stats.skipped_late.fetch_add(missed, Ordering::Relaxed);
            sh.heap.push(Reverse((next, generation, id)));

            if running.swap(true, Ordering::AcqRel) {
                self.stats.skipped_overrun.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(check = %spec.id, "previous run still going; skipped");
                continue;
            }
            self.start(spec, version, running, due);
        }
    }

    /// Spawns one run (waiting for a concurrency permit); `running` is
    /// already set and cleared when the run ends.
    fn start(&self, spec: Arc<CheckSpec>, version: u64, running: Arc<AtomicBool>, due: Instant) {
        let permits = self.permits.clone();
        let mut ctx = self.ctx.clone();
        let sink = self.sink.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                running.store(false, Ordering::Release);
                return;
            };
            let late = Instant::now().saturating_duration_since(due);
            if let Some(v) = stats
                .lateness_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                v.push(late.as_micros().min(u128::from(u32::MAX)) as u32);
            }
            stats.started.fetch_add(1, Ordering::Relaxed);
            // Ids before the run (traceparent, log lines); spans after it.
            ctx.trace = ctx.telemetry.begin();
            let run = async {
                let o = check::run(&spec, &ctx).await;
                let code = o.result.as_ref().err().map(|f| f.code().as_str());
                tracing::debug!(check = %o.check_id, ok = o.ok(), failure_code = code, "check run finished");
                o
            };
            let outcome = match ctx.trace {
                None => run.await,
                Some(t) => {
                    // Log lines of a traced run carry its ids (`span.trace_id`
                    // and `span.span_id` in JSON logs).
                    use tracing::Instrument;
                    let span = tracing::info_span!(
                        "run",
                        check = %spec.id,
                        trace_id = %t.trace_id_hex(),
                        span_id = %t.span_id_hex()
                    );
                    let outcome = run.instrument(span).await;
                    ctx.telemetry.finish_run(t, &outcome, &ctx);
                    outcome
                }
            };
            running.store(false, Ordering::Release);
            stats.finished.fetch_add(1, Ordering::Relaxed);
            sink(version, outcome);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_deterministic_and_within_interval() {
        let i = Duration::from_secs(30);
        let a = jitter("p1", "api", i);
        assert_eq!(a, jitter("p1", "api", i));
        assert!(a < i);
        assert_ne!(jitter("p1", "api", i), jitter("p2", "api", i));
    }

    #[test]
    fn the_next_slot_stays_on_the_grid_and_missed_slots_are_skipped() {
        let t = Instant::now();
        let i = Duration::from_millis(100);
        let ms = Duration::from_millis;
        // On time, or late by less than an interval: the following slot, none missed.
        assert_eq!(next_slot(t, i, t), (t + i, 0));
        assert_eq!(next_slot(t, i, t + ms(99)), (t + i, 0));
        // The following slot is due already: skipped, not run late.
        assert_eq!(next_slot(t, i, t + i), (t + 2 * i, 1));
        // 3.5 intervals behind: three slots missed, back on the grid (no drift).
        assert_eq!(next_slot(t, i, t + ms(350)), (t + 4 * i, 3));
        // A day behind at 1 s (a suspended laptop): one step, not 86 400 loops.
        let s = Duration::from_secs(1);
        assert_eq!(
            next_slot(t, s, t + Duration::from_secs(86_400)),
            (t + Duration::from_secs(86_401), 86_400)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn extra_runs_are_limited_to_one_per_check_per_min_interval_1s() {
        let mut extra = ExtraRuns::default();
        let ms = Duration::from_millis;
        let slow = Duration::from_secs(60);
        let fast = ms(200);
        assert!(extra.allow("slow", slow, Instant::now()));
        assert!(extra.allow("fast", fast, Instant::now()), "per check");
        // A burst of hints: refused until the spacing has passed.
        for _ in 0..100 {
            assert!(!extra.allow("slow", slow, Instant::now()));
            assert!(!extra.allow("fast", fast, Instant::now()));
        }
        tokio::time::advance(ms(199)).await;
        assert!(!extra.allow("fast", fast, Instant::now()));
        tokio::time::advance(ms(1)).await;
        // `fast` spaces by its interval (200 ms), `slow` by 1 s, not 60 s.
        assert!(extra.allow("fast", fast, Instant::now()));
        assert!(!extra.allow("slow", slow, Instant::now()));
        tokio::time::advance(ms(800)).await;
        assert!(extra.allow("slow", slow, Instant::now()));
        assert!(!extra.allow("slow", slow, Instant::now()));
        // At most one per second over a minute of hints every 10 ms.
        let mut started = 0;
        for _ in 0..6000 {
            tokio::time::advance(ms(10)).await;
            started += u32::from(extra.allow("slow", slow, Instant::now()));
        }
        assert_eq!(started, 60);
    }

    #[test]
    fn next_slot_respects_offset() {
        let i = Duration::from_secs(10);
        let off = Duration::from_secs(3);
        assert_eq!(
            until_next_slot(Duration::from_secs(100), i, off),
            Duration::from_secs(3)
        );
        assert_eq!(
            until_next_slot(Duration::from_secs(103), i, off),
            Duration::ZERO
        );
        assert_eq!(
            until_next_slot(Duration::from_secs(104), i, off),
            Duration::from_secs(9)
        );
    }
}
