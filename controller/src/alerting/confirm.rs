//! Faster confirmation: while a region fails but is not yet confirmed, ask
//! its probes to run the check again soon (`RunNow`, proto
//! `ControllerMessage.run_now`), so a real outage pages after about
//! `confirmations × retry_interval` instead of `confirmations × interval`.
//!
//! Design note.
//! - **When.** After every evaluation of a check without an open alert
//!   ([`nudge`]): for each fresh region (probes not offline) whose newest
//!   result failed with fewer than `confirmations` failures in a row, once
//!   `retry_interval` has passed since that result, and once per result
//!   (asked again only once a newer failure's retry is due). With
//!   `confirm_from_other_regions`, a region's first failure also asks
//!   every other region that is not failing, at once, so the quorum
//!   (`min_regions`) is reached in one round trip.
//! - **State.** When each (check, region) was last asked lives in memory
//!   ([`Asked`]): losing it on a restart costs at most one extra hint. The
//!   probe rate-limits hints itself (one extra run per check per
//!   `min(interval, 1 s)`) and ignores unknown checks, so a hint is never
//!   harmful; it only reaches the probes connected to this replica.
//! - **Correctness.** The rule is untouched: a retry is one more result,
//!   so a single-region blip followed by a passing retry never pages, and
//!   `min_regions` still has to fail.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use crate::{Controller, config::CheckDef, store::RegionState};

use super::rule;

/// When each (check, region) was last asked to run now (controller ms).
#[derive(Debug, Default)]
pub struct Asked(Mutex<HashMap<(String, String), i64>>);

impl Asked {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), i64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Asks the probes of `check`'s unconfirmed failing regions (and, with
/// `confirm_from_other_regions`, of its other regions) to run it now, as
/// the module note says. Returns the regions asked.
pub fn nudge(
    ctl: &Controller,
    check: &CheckDef,
    states: &[RegionState],
    offline: &[String],
    alert_open: bool,
    now: i64,
) -> Vec<String> {
    let policy = &check.policy;
    if alert_open || (policy.retry_interval.is_none() && !policy.confirm_from_other_regions) {
        return Vec::new();
    }
    let id = &check.raw.id;
    let usable = |region: &str| {
        check.regions.iter().any(|r| r == region) && !offline.iter().any(|o| o == region)
    };
    let unconfirmed: Vec<&RegionState> = states
        .iter()
        .filter(|s| {
            usable(&s.region)
                && !s.last_ok
                && s.consecutive_failures < policy.confirmations
                && rule::is_fresh(s, check.spec.interval, now)
        })
        .collect();
    let mut ask: Vec<(String, &'static str)> = Vec::new();
    let mut asked = ctl.confirm_asked().lock();
    let last = |asked: &HashMap<(String, String), i64>, region: &str| {
        asked
            .get(&(id.clone(), region.to_owned()))
            .copied()
            .unwrap_or(i64::MIN)
    };
    for s in &unconfirmed {
        if let Some(retry) = policy.retry_interval {
            let retry = i64::try_from(retry.as_millis()).unwrap_or(i64::MAX);
            let due = s.last_result_at_ms.saturating_add(retry);
            if now >= due && last(&asked, &s.region) < due {
                ask.push((s.region.clone(), "unconfirmed failure: retry"));
            }
        }
        if policy.confirm_from_other_regions && s.consecutive_failures == 1 {
            for r in &check.regions {
                let failing = states.iter().any(|o| &o.region == r && !o.last_ok);
                if r != &s.region
                    && usable(r)
                    && !failing
                    && last(&asked, r) < s.last_result_at_ms
                    && !ask.iter().any(|(a, _)| a == r)
                {
                    ask.push((r.clone(), "failure in another region: confirm"));
                }
            }
        }
    }
    for (region, _) in &ask {
        asked.insert((id.clone(), region.clone()), now);
    }
    drop(asked);
    let mut out = Vec::new();
    for (region, reason) in ask {
        let streams = ctl.registry().run_now(&region, id, reason);
        tracing::debug!(check = %id, region = %region, streams, reason, "asked probes to run now");
        ctl.metrics().inc(
            "outpost_confirm_run_now_total",
            &[("check", id.as_str())],
            1,
        );
        out.push(region);
    }
    out
}
