//! Heartbeat (push, dead-man's switch) checks: the job being watched pings
//! the controller, and silence pages. The schema is the probe crate's
//! (`outpost_probe::check::heartbeat`); this module holds the ping routes,
//! the missed-deadline worker and the pure deadline rule ([`due`]).
//!
//! Design note.
//! - **Routes.** [`routes`] is one route set merged into [`crate::api::router`]:
//!   `/ping/{id}` (success), `/ping/{id}/fail`, `/ping/{id}/start`, each for
//!   GET, HEAD and POST. They carry no credentials: the unguessable ping id
//!   *is* the credential, so `/ping/*` belongs to the auth layer's public
//!   set. An unknown id (or signal) answers the same `404 not found` as any
//!   unknown path and is logged without the id. The id is compared in
//!   constant time against every configured one.
//! - **Ping ids** come from config secrets (`ping_id = { env | file }`),
//!   never generated: the config stays the one source of truth, a restored or
//!   replaced store changes no URL, rotating is editing the secret and
//!   SIGHUP, and nothing needs revealing through the API (viewers never see
//!   an id, not even in part: results, API and pages name the check only).
//! - **Results.** A success or fail ping becomes one result row (kind
//!   `heartbeat`, region and probe [`REGION`]) through the same
//!   [`crate::ingest::build_batch`] → `store.ingest` path as probe results,
//!   then the evaluator is asked to look at the check: history, alerting,
//!   the API and the pages work unchanged. `/fail` is `heartbeat_failed`.
//!   The body (POST) is read up to [`MAX_EXCERPT`] bytes within
//!   [`BODY_DEADLINE`] and kept as the details' `excerpt`; the rest is never
//!   read.
//! - **Deadline.** After a success or fail ping at `t` the next is due by
//!   `expected(t) + grace`, where `expected(t)` is `t + period`, or with a
//!   `schedule` the first scheduled time strictly after `t` in its `tz`
//!   ([`schedule::Schedule::next_after`]: a daily 03:00 job that pinged at
//!   03:04 is due by tomorrow's 03:00 local time + grace, 23 or 25 hours
//!   later across a DST change). After an unfinished `/start` at `s`: by
//!   `s + grace`. The rule is [`due`], pure.
//! - **Missed.** The worker ([`run_worker`], every [`TICK`], and whenever a
//!   manual clock moves) reads each heartbeat's `region_state` and writes a
//!   `heartbeat_missed` row once `now` is strictly past the deadline, then
//!   one more at each following deadline (`expected(report) + grace`) while
//!   the silence lasts, so the region stays fresh and FAILING rather than
//!   turning STALE (a schedule's check interval is its longest gap between
//!   runs + grace, for the same reason). Before the first ping a heartbeat
//!   is UNKNOWN: a new job is not late (Healthchecks.io's "new"), whatever
//!   its schedule. A missed deadline is noticed at most one tick late.
//! - **Alerting.** Policy defaults for heartbeats are `confirmations = 1`,
//!   `recoveries = 1` and a quorum of the one region: one missed deadline or
//!   one `/fail` fires (`outpost/<check>/check_failing`), the next success
//!   resolves with the same dedup key.
//! - **State and crashes.** Pings and missed rows are store rows, read back
//!   on start: a restart neither forgets a silence nor re-pages it. Only the
//!   time of an unfinished `/start` lives in memory; a restart loses it
//!   (that run's duration is not measured, and a hung run is then caught by
//!   `period + grace` from the last ping instead of `grace` from its start).
//!   Pings and the worker are serialized by one lock, so a ping racing a
//!   deadline is never followed by a stale `heartbeat_missed`.
//! - **Replicas** (PostgreSQL): any replica takes pings; only the
//!   evaluator (lease holder) runs the deadline worker. The lock above and
//!   the `/start` times are per process, so behind a load balancer a ping
//!   on one replica can race the worker on another (a `heartbeat_missed`
//!   row just before the success row: the success resolves it), and a
//!   `/start` is paired only with a success or fail on the same replica.
//! - **Limits.** At most one success or fail ping per check per
//!   [`MIN_PING_GAP`] is stored; faster ones get `429` with `Retry-After`.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt as _;
use outpost_probe::{
    check::{
        CheckKind, Failure, Kind, Observed, RawCheck,
        heartbeat::{self, Cadence, Signal},
    },
    config::{Problems, Secret},
};

pub mod schedule;

use crate::{
    Controller,
    config::{CheckDef, resolve_secret},
    ingest::constant_time_eq,
    store::{NewResult, RegionState, StoreError},
};

/// The region (and probe name) of every heartbeat result. Reserved: no
/// probe may be in it.
pub const REGION: &str = "heartbeat";
/// How often deadlines are checked.
pub const TICK: Duration = Duration::from_secs(1);
/// Body bytes kept as the excerpt; the rest is not read.
pub const MAX_EXCERPT: usize = 10 * 1024;
/// How long a ping's body may take to arrive before what came is kept.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// The shortest time between two stored success or fail pings of one check.
pub const MIN_PING_GAP: Duration = Duration::from_millis(100);
const MAX_USER_AGENT: usize = 200;
const MAX_FAIL_LINE: usize = 200;

/// A heartbeat check with its resolved ping id and parsed cadence.
#[derive(Debug, Clone)]
pub struct HeartbeatDef {
    /// The check's id.
    pub check_id: String,
    /// The id in its ping URL.
    pub ping_id: Secret,
    /// When pings are expected.
    pub expect: Expect,
    /// Allowed lateness.
    pub grace: Duration,
}

/// When a heartbeat's pings are expected, parsed.
#[derive(Debug, Clone)]
pub enum Expect {
    /// One every period.
    Every(Duration),
    /// At the times of a cron schedule.
    Schedule(Box<schedule::Schedule>),
}

impl Expect {
    /// When the next ping is expected after one at `ms` (unix ms), before
    /// grace: `ms + period`, or the first scheduled time strictly after.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        match self {
            Expect::Every(period) => Some(ms.saturating_add(millis(*period))),
            Expect::Schedule(s) => s.next_after(ms),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Resolves every heartbeat check's ping id (looking `{ env = … }` up in
/// `vars` first) and parses its schedule, recording problems at
/// `checks[i].heartbeat.ping_id`, `.schedule` and `.tz`. A schedule's check
/// interval becomes its longest gap between runs + grace (see the module
/// docs: the rule's staleness must not outrun the deadline).
pub fn validate(
    raw: &[RawCheck],
    checks: &mut [CheckDef],
    vars: &[(String, String)],
    p: &mut Problems,
) -> Vec<HeartbeatDef> {
    let mut out: Vec<HeartbeatDef> = Vec::new();
    for check in checks {
        let CheckKind::Heartbeat(spec) = &check.spec.kind else {
            continue;
        };
        let i = raw.iter().position(|r| r.id == check.raw.id).unwrap_or(0);
        let expect = match &spec.cadence {
            Cadence::Period(period) => Expect::Every(*period),
            Cadence::Schedule { expr, tz } => match schedule::Schedule::parse(expr, tz) {
                Ok(s) => Expect::Schedule(Box::new(s)),
                Err(e) => {
                    let key = if matches!(e, schedule::ScheduleError::Zone { .. }) {
                        "tz"
                    } else {
                        "schedule"
                    };
                    p.push(format!("checks[{i}].heartbeat.{key}"), e.to_string());
                    // Parsing stops at the expression: name a bad zone too.
                    if key == "schedule" && jiff::tz::TimeZone::get(tz).is_err() {
                        let zone = schedule::ScheduleError::Zone { tz: tz.clone() };
                        p.push(format!("checks[{i}].heartbeat.tz"), zone.to_string());
                    }
                    continue;
                }
            },
        };
        let grace = spec.grace;
        if let Expect::Schedule(s) = &expect {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(millis)
                .unwrap_or_default();
            let every = s
                .longest_gap(now)
                .saturating_add(grace)
                .max(Duration::from_secs(1));
            check.spec.interval = every;
            check.spec.timeout = check.spec.timeout.min(every);
        }
        let path = format!("checks[{i}].heartbeat.ping_id");
        let ping_id = match resolve_secret(&spec.ping_id, vars)
            .and_then(|s| heartbeat::check_ping_id(s.expose()).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                p.push(path, e);
                continue;
            }
        };
        if let Some(other) = out.iter().find(|d| d.ping_id == ping_id) {
            p.push(
                path,
                format!(
                    "check {:?} has the same ping id: give every heartbeat its own",
                    other.check_id
                ),
            );
            continue;
        }
        out.push(HeartbeatDef {
            check_id: check.raw.id.clone(),
            ping_id,
            expect,
            grace,
        });
    }
    out
}

/// The in-memory part of heartbeats: unfinished `/start`s, the last stored
/// ping per check (for [`MIN_PING_GAP`]), and the lock that serializes pings
/// with the worker.
#[derive(Debug)]
pub struct Pings {
    state: tokio::sync::Mutex<PingState>,
    sequence: AtomicU64,
}

#[derive(Debug, Default)]
struct PingState {
    /// Check id → unix ms of a `/start` not yet followed by success or fail.
    starts: HashMap<String, i64>,
    /// Check id → unix ms of the last stored success or fail.
    stored: HashMap<String, i64>,
}

impl Default for Pings {
    fn default() -> Self {
        // Sequences grow across restarts: they start at the wall clock in µs.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .unwrap_or_default();
        Pings {
            state: tokio::sync::Mutex::default(),
            sequence: AtomicU64::new(start),
        }
    }
}

impl Pings {
    fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }
}

/// The ping routes, to be merged into the router (public: see the module docs).
pub fn routes() -> crate::api::route::Routes {
    crate::api::route::Routes::public()
        .get("/ping/{id}", ping_success)
        .post("/ping/{id}", ping_success)
        .get("/ping/{id}/{signal}", ping_signal)
        .post("/ping/{id}/{signal}", ping_signal)
}

/// What a ping asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    Start,
    Success,
    Fail,
}

impl Ping {
    fn as_str(self) -> &'static str {
        match self {
            Ping::Start => "start",
            Ping::Success => "success",
            Ping::Fail => "fail",
        }
    }
}

async fn ping_success(
    State(ctl): State<Controller>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(&ctl, &id, Ping::Success, method, &headers, body).await
}

async fn ping_signal(
    State(ctl): State<Controller>,
    Path((id, signal)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ping = match signal.as_str() {
        "start" => Ping::Start,
        "fail" => Ping::Fail,
        _ => return not_found(&ctl),
    };
    receive(&ctl, &id, ping, method, &headers, body).await
}

fn not_found(ctl: &Controller) -> Response {
    ctl.metrics().inc(
        "outpost_heartbeat_rejected_total",
        &[("reason", "unknown_id")],
        1,
    );
    tracing::debug!("heartbeat ping for an unknown id");
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// The heartbeat whose ping id is `id`, comparing with every one in constant time.
fn find(ctl: &Controller, id: &str) -> Option<HeartbeatDef> {
    let cfg = ctl.config();
    let mut found = None;
    for def in &cfg.heartbeats {
        if constant_time_eq(def.ping_id.expose().as_bytes(), id.as_bytes()) && found.is_none() {
            found = Some(def.clone());
        }
    }
    found
}

async fn receive(
    ctl: &Controller,
    id: &str,
    ping: Ping,
    method: Method,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(def) = find(ctl, id) else {
        return not_found(ctl);
    };
    let (excerpt, body_bytes, truncated) = read_excerpt(body, headers).await;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| crate::alerting::truncate(s, MAX_USER_AGENT));
    let now = ctl.now_ms();
    let pings = ctl.heartbeats();
    let mut state = pings.state.lock().await;
    if ping == Ping::Start {
        state.starts.insert(def.check_id.clone(), now);
        drop(state);
        count(ctl, &def.check_id, ping);
        return ok();
    }
    let gap = i64::try_from(MIN_PING_GAP.as_millis()).unwrap_or(i64::MAX);
    if state
        .stored
        .get(&def.check_id)
        .is_some_and(|&last| now.saturating_sub(last) < gap)
    {
        ctl.metrics().inc(
            "outpost_heartbeat_rejected_total",
            &[("reason", "rate_limited")],
            1,
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "too many pings\n",
        )
            .into_response();
    }
    let run_ms = state
        .starts
        .get(&def.check_id)
        .map(|&s| u64::try_from(now.saturating_sub(s)).unwrap_or(0));
    let observed = heartbeat::Observed {
        signal: if ping == Ping::Fail {
            Signal::Fail
        } else {
            Signal::Success
        },
        method: Some(method.as_str().to_owned()),
        user_agent,
        body_bytes,
        truncated,
        excerpt: (!excerpt.is_empty()).then(|| excerpt.clone()),
        run_ms,
        last_ping_ms: None,
    };
    let failure = (ping == Ping::Fail).then(|| Failure::HeartbeatFailed {
        excerpt: crate::alerting::truncate(
            excerpt.lines().next().unwrap_or_default().trim(),
            MAX_FAIL_LINE,
        ),
    });
    let row = result_row(ctl, &def.check_id, now, observed, failure.as_ref(), run_ms);
    match store(ctl, row, now).await {
        Ok(()) => {
            state.starts.remove(&def.check_id);
            state.stored.insert(def.check_id.clone(), now);
            drop(state);
            count(ctl, &def.check_id, ping);
            ok()
        }
        Err(e) => {
            tracing::error!(check = %def.check_id, error = %e, "cannot store a heartbeat ping");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable, retry\n",
            )
                .into_response()
        }
    }
}

fn ok() -> Response {
    (StatusCode::OK, "OK\n").into_response()
}

fn count(ctl: &Controller, check: &str, ping: Ping) {
    ctl.metrics().inc(
        "outpost_heartbeat_pings_total",
        &[("check", check), ("signal", ping.as_str())],
        1,
    );
}

/// Reads at most [`MAX_EXCERPT`] bytes of the body within [`BODY_DEADLINE`]:
/// (the excerpt as lossy UTF-8, the body's size as far as known, truncated).
/// The size is `Content-Length` when the body was not read to its end.
async fn read_excerpt(body: Body, headers: &HeaderMap) -> (String, u64, bool) {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut truncated = false;
    let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                let room = MAX_EXCERPT - buf.len();
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                buf.extend_from_slice(&chunk);
                if buf.len() == MAX_EXCERPT && announced.is_some_and(|n| n > MAX_EXCERPT as u64) {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            // A broken or slow body keeps what came: the ping itself counts.
            Ok(Some(Err(_))) | Err(_) => {
                truncated = true;
                break;
            }
        }
    }
    let read = buf.len() as u64;
    let size = if truncated {
        announced.unwrap_or(read).max(read)
    } else {
        read
    };
    (String::from_utf8_lossy(&buf).into_owned(), size, truncated)
}

fn result_row(
    ctl: &Controller,
    check_id: &str,
    now: i64,
    observed: heartbeat::Observed,
    failure: Option<&Failure>,
    run_ms: Option<u64>,
) -> NewResult {
    let details = Observed::Heartbeat(Box::new(observed));
    NewResult {
        result_id: uuid::Uuid::now_v7().to_string(),
        probe: REGION.to_owned(),
        region: REGION.to_owned(),
        check_id: check_id.to_owned(),
        sequence: ctl.heartbeats().next_sequence(),
        kind: Kind::Heartbeat.as_str().to_owned(),
        started_at_ms: now,
        ok: failure.is_none(),
        failure_code: failure.map(|f| f.code().as_str().to_owned()),
        failure_message: failure.map(ToString::to_string),
        phases_us: [0, 0, 0, 0, run_ms.unwrap_or(0).saturating_mul(1000)],
        details_json: details.to_wire(),
    }
}

/// Stores one heartbeat row through the probes' ingest path and asks the
/// evaluator to look at its check.
async fn store(ctl: &Controller, row: NewResult, now: i64) -> Result<(), StoreError> {
    let batch = crate::ingest::build_batch(vec![row], now, Vec::new(), None);
    let outcome = ctl.store().ingest(batch).await?;
    ctl.metrics().inc(
        "outpost_results_ingested_total",
        &[("region", REGION)],
        outcome.stored,
    );
    if !outcome.affected.is_empty() {
        ctl.request_evaluation(outcome.affected);
    }
    Ok(())
}

/// What the heartbeat's newest row says, as [`due`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Last {
    /// When the newest row was written (unix ms).
    pub at_ms: i64,
    /// The newest row is a `heartbeat_missed` row (else a ping).
    pub missed: bool,
    /// When the last success or fail ping came (unix ms): `at_ms` for a
    /// ping, the missed row's `last_ping_ms` otherwise.
    pub last_ping_ms: Option<i64>,
}

impl Last {
    /// Reads the heartbeat region's state row.
    pub fn of(state: &RegionState) -> Last {
        let missed = state.last_code.as_deref() == Some("heartbeat_missed");
        let last_ping_ms = match &state.last_details {
            Observed::Heartbeat(h) if missed => h.last_ping_ms,
            _ if missed => None,
            _ => Some(state.last_result_at_ms),
        };
        Last {
            at_ms: state.last_result_at_ms,
            missed,
            last_ping_ms,
        }
    }
}

/// A deadline that passed: what the `heartbeat_missed` row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// Silence since the last ping (or the unfinished `/start`).
    pub silent: Duration,
    /// The allowance that ran out, from the last ping (or start) to its
    /// deadline: `period + grace`, the time to the next scheduled run +
    /// grace, or `grace` after a start.
    pub allowed: Duration,
    /// A `/start` came and nothing after it.
    pub running: bool,
    /// The last success or fail ping (unix ms).
    pub last_ping_ms: Option<i64>,
}

/// The rule, pure: is a `heartbeat_missed` row due at `now_ms`? `start_ms`
/// is an unfinished `/start`. Nothing is due before the first ping or start;
/// a deadline (`expect.next_after(ping) + grace`, or `start + grace`) is
/// missed only once strictly passed; after a missed row the next is due at
/// `expect.next_after(report) + grace` while the silence lasts.
pub fn due(
    expect: &Expect,
    grace: Duration,
    last: Option<Last>,
    start_ms: Option<i64>,
    now_ms: i64,
) -> Option<Missed> {
    let last_ping = last.and_then(|l| l.last_ping_ms);
    // An unfinished /start newer than the last ping sets the deadline.
    let (from, first, running) = match start_ms {
        Some(s) if last_ping.is_none_or(|p| s >= p) => (s, s, true),
        _ => {
            let p = last_ping?;
            (p, expect.next_after(p)?, false)
        }
    };
    let first = first.saturating_add(millis(grace));
    let mut deadline = first;
    if let Some(l) = last.filter(|l| l.missed && l.at_ms > from) {
        // Already reported: again at the next deadline after the report.
        let again = expect.next_after(l.at_ms)?.saturating_add(millis(grace));
        deadline = deadline.max(again);
    }
    let allowed = Duration::from_millis(u64::try_from(first.saturating_sub(from)).unwrap_or(0));
    (now_ms > deadline).then(|| Missed {
        silent: Duration::from_millis(u64::try_from(now_ms.saturating_sub(from)).unwrap_or(0)),
        allowed,
        running,
        last_ping_ms: last_ping,
    })
}

/// Writes `heartbeat_missed` rows when deadlines pass, every [`TICK`].
pub async fn run_worker(ctl: Controller, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A manual clock (tests) wakes the worker when moved; the system clock
    // never does, so production runs on the tick alone.
    let mut moved = ctl.clock().moved();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = moved.changed() => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        // Replicas on PostgreSQL: only the evaluator (the lease holder)
        // writes missed deadlines, or each replica would store its own row
        // for the same silence. SQLite: always this process.
        if !ctl.store().is_leader() {
            continue;
        }
        if let Err(e) = evaluate(&ctl, ctl.now_ms()).await {
            tracing::error!(error = %e, "heartbeat deadlines could not be checked; retrying on the next tick");
        }
    }
}

/// Checks every heartbeat's deadline at `now` and stores the missed ones.
pub async fn evaluate(ctl: &Controller, now: i64) -> Result<usize, StoreError> {
    let cfg = ctl.config();
    if cfg.heartbeats.is_empty() {
        return Ok(0);
    }
    let pings = ctl.heartbeats();
    let state = pings.state.lock().await;
    let mut written = 0;
    for def in &cfg.heartbeats {
        let states = ctl.store().region_states_for(&def.check_id).await?;
        let last = states.iter().find(|s| s.region == REGION).map(Last::of);
        let start = state.starts.get(&def.check_id).copied();
        let Some(missed) = due(&def.expect, def.grace, last, start, now) else {
            continue;
        };
        let failure = Failure::HeartbeatMissed {
            silent: missed.silent,
            allowed: missed.allowed,
            running: missed.running,
        };
        let observed = heartbeat::Observed {
            signal: Signal::Missed,
            last_ping_ms: missed.last_ping_ms,
            ..heartbeat::Observed::default()
        };
        tracing::debug!(check = %def.check_id, silent_ms = missed.silent.as_millis() as u64, "heartbeat missed");
        let row = result_row(ctl, &def.check_id, now, observed, Some(&failure), None);
        store(ctl, row, now).await?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A period heartbeat, as `(expect, grace)`.
    fn spec(period_ms: u64, grace_ms: u64) -> (Expect, Duration) {
        (
            Expect::Every(Duration::from_millis(period_ms)),
            Duration::from_millis(grace_ms),
        )
    }

    fn due(
        (expect, grace): &(Expect, Duration),
        last: Option<Last>,
        start: Option<i64>,
        now: i64,
    ) -> Option<Missed> {
        super::due(expect, *grace, last, start, now)
    }

    fn ping(at_ms: i64) -> Option<Last> {
        Some(Last {
            at_ms,
            missed: false,
            last_ping_ms: Some(at_ms),
        })
    }

    #[test]
    fn nothing_is_due_before_the_first_ping() {
        assert_eq!(due(&spec(1000, 500), None, None, 1_000_000), None);
    }

    #[test]
    fn missed_only_once_period_plus_grace_has_strictly_passed() {
        let s = spec(1000, 500);
        assert_eq!(due(&s, ping(0), None, 1500), None, "late inside the grace");
        let m = due(&s, ping(0), None, 1501).unwrap();
        assert_eq!(m.allowed, Duration::from_millis(1500));
        assert_eq!(m.silent, Duration::from_millis(1501));
        assert_eq!(m.last_ping_ms, Some(0));
        assert!(!m.running);
    }

    #[test]
    fn a_reported_silence_is_reported_again_one_allowance_later() {
        let s = spec(1000, 500);
        let reported = Some(Last {
            at_ms: 1600,
            missed: true,
            last_ping_ms: Some(0),
        });
        assert_eq!(due(&s, reported, None, 3000), None);
        let again = due(&s, reported, None, 3101).unwrap();
        assert_eq!(again.silent, Duration::from_millis(3101));
    }

    #[test]
    fn an_unfinished_start_is_missed_after_the_grace() {
        let s = spec(10_000, 500);
        assert_eq!(due(&s, ping(0), Some(1000), 1500), None);
        let m = due(&s, ping(0), Some(1000), 1501).unwrap();
        assert!(m.running);
        assert_eq!(m.allowed, Duration::from_millis(500));
        // A start older than the last ping is finished.
        assert_eq!(due(&s, ping(2000), Some(1000), 2600), None);
    }

    #[test]
    fn a_schedule_is_due_at_its_next_run_after_the_ping_plus_grace() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        let daily = schedule::Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
        let s = (Expect::Schedule(Box::new(daily)), Duration::from_secs(1800));
        // Pinged 03:05 CET the day before spring forward: due 03:30 CEST.
        let pinged = at("2026-03-28T02:05:00Z");
        let deadline = at("2026-03-29T01:30:00Z");
        assert_eq!(due(&s, ping(pinged), None, deadline), None);
        let m = due(&s, ping(pinged), None, deadline + 1).unwrap();
        assert_eq!(m.allowed, Duration::from_secs(23 * 3600 + 25 * 60));
        // Reported: again at the following run + grace, not a day after.
        let reported = Some(Last {
            at_ms: deadline + 1000,
            missed: true,
            last_ping_ms: Some(pinged),
        });
        let again = at("2026-03-30T01:30:00Z");
        assert_eq!(due(&s, reported, None, again), None);
        assert!(due(&s, reported, None, again + 1).is_some());
    }
}
