//! The alert rule: a pure function of (policy, region states, now).
//!
//! - A region is **STALE** when its newest result is older than
//!   [`STALE_AFTER_INTERVALS`] × the check interval, or when every probe of
//!   the region is offline (silent longer than `alerting.offline_after`,
//!   decided by the caller and passed in as `offline`) — then at once, even
//!   if its newest result is still young. **UNKNOWN** before its first
//!   result. Neither counts as failing nor as passing: quorum counts only
//!   fresh regions.
//! - A fresh region is **failing** after `confirmations` failed runs in a row
//!   and **recovered** after `recoveries` passing runs in a row.
//! - **Fire** when no alert is open and at least `min_regions` fresh regions
//!   are failing.
//! - **Resolve** when an alert is open, at least one region is fresh, and
//!   fewer than `min_regions` regions are not recovered — each region judged
//!   on its newest result whatever its age, because silence is not recovery:
//!   a failing region that goes offline keeps the alert open.
//! - When every assigned region is stale or unknown nothing changes: silence
//!   is not health (and a silent probe is a fleet-level alert, not a page per
//!   check).

use std::time::Duration;

use crate::{config::AlertPolicy, store::RegionState};

/// A region with no result for this many intervals is stale.
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// What a region looks like right now. Ordered from best to worst, so the
/// worst region of a check is the `max`. Serialized as the upper-case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RegionStatus {
    /// Newest result passed.
    Ok,
    /// No result yet.
    Unknown,
    /// No result for 3 intervals.
    Stale,
    /// Newest result failed.
    Failing,
    /// A check (never a region) whose alert flap detection holds open
    /// ([`crate::alerting::flap`]).
    Flapping,
    /// A check (never a region) whose open alert is recorded but not
    /// paged: silenced, in maintenance, or a dependency failing
    /// ([`crate::alerting::silence`]; the cause is `suppressed_by`).
    Suppressed,
}

impl RegionStatus {
    /// Upper-case word for the API and the page.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionStatus::Ok => "OK",
            RegionStatus::Unknown => "UNKNOWN",
            RegionStatus::Stale => "STALE",
            RegionStatus::Failing => "FAILING",
            RegionStatus::Flapping => "FLAPPING",
            RegionStatus::Suppressed => "SUPPRESSED",
        }
    }

    /// The status page's CSS class for a cell in this state (solid red for
    /// FAILING, solid amber for STALE: impossible to miss).
    pub fn css_class(self) -> &'static str {
        self.as_str()
    }
}

impl std::fmt::Display for RegionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What the rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Open an alert; the failing regions, sorted.
    Fire {
        /// Fresh regions failing for `confirmations` runs.
        failing: Vec<String>,
    },
    /// Resolve the open alert.
    Resolve,
    /// Nothing changes.
    Hold,
}

/// Age after which a region is stale.
pub fn stale_after(interval: Duration) -> Duration {
    interval.saturating_mul(STALE_AFTER_INTERVALS)
}

/// True when the region has a result younger than the stale threshold.
pub fn is_fresh(state: &RegionState, interval: Duration, now_ms: i64) -> bool {
    fresh_at(state.last_result_at_ms, interval, now_ms)
}

/// True when a result at `at_ms` is younger than the stale threshold.
fn fresh_at(at_ms: i64, interval: Duration, now_ms: i64) -> bool {
    let limit = i64::try_from(stale_after(interval).as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(at_ms) <= limit
}

/// Display status of a region; `offline`: every probe of the region is offline.
pub fn region_status(
    state: Option<&RegionState>,
    interval: Duration,
    offline: bool,
    now_ms: i64,
) -> RegionStatus {
    status_of(
        state.map(|s| (s.last_result_at_ms, s.last_ok)),
        interval,
        offline,
        now_ms,
    )
}

/// [`region_status`] from the newest result's time and outcome alone
/// (`None`: the region never reported).
pub fn status_of(
    newest: Option<(i64, bool)>,
    interval: Duration,
    offline: bool,
    now_ms: i64,
) -> RegionStatus {
    match newest {
        None => RegionStatus::Unknown,
        Some(_) if offline => RegionStatus::Stale,
        Some((at, _)) if !fresh_at(at, interval, now_ms) => RegionStatus::Stale,
        Some((_, true)) => RegionStatus::Ok,
        Some(_) => RegionStatus::Failing,
    }
}

/// The rule. `states` may hold regions no longer assigned; they are ignored.
/// Regions in `offline` (every probe there is offline) count as stale.
pub fn decide(
    policy: &AlertPolicy,
    interval: Duration,
    assigned: &[String],
    states: &[RegionState],
    offline: &[String],
    alert_open: bool,
    now_ms: i64,
) -> Decision {
    let fresh: Vec<&RegionState> = states
        .iter()
        .filter(|s| {
            assigned.contains(&s.region)
                && !offline.contains(&s.region)
                && is_fresh(s, interval, now_ms)
        })
        .collect();
    if fresh.is_empty() {
        return Decision::Hold;
    }
    let min = usize::try_from(policy.min_regions).unwrap_or(usize::MAX);
    if !alert_open {
        let failing = confirmed_failing(policy, &fresh);
        return if failing.len() >= min {
            Decision::Fire { failing }
        } else {
            Decision::Hold
        };
    }
    // Silence is not recovery: a stale or offline region keeps the health of
    // its newest result until a fresh one replaces it.
    let unhealthy = states
        .iter()
        .filter(|s| assigned.contains(&s.region) && s.consecutive_passes < policy.recoveries)
        .count();
    if unhealthy < min {
        Decision::Resolve
    } else {
        Decision::Hold
    }
}

/// Fresh regions failing for `confirmations` runs, sorted: what an open
/// alert's live content names ([`crate::alerting`]), the same set [`decide`]
/// fires on.
pub fn failing_now(
    policy: &AlertPolicy,
    interval: Duration,
    assigned: &[String],
    states: &[RegionState],
    offline: &[String],
    now_ms: i64,
) -> Vec<String> {
    let fresh: Vec<&RegionState> = states
        .iter()
        .filter(|s| {
            assigned.contains(&s.region)
                && !offline.contains(&s.region)
                && is_fresh(s, interval, now_ms)
        })
        .collect();
    confirmed_failing(policy, &fresh)
}

fn confirmed_failing(policy: &AlertPolicy, fresh: &[&RegionState]) -> Vec<String> {
    let mut failing: Vec<String> = fresh
        .iter()
        .filter(|s| !s.last_ok && s.consecutive_failures >= policy.confirmations)
        .map(|s| s.region.clone())
        .collect();
    failing.sort();
    failing
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;
    const INTERVAL: Duration = Duration::from_secs(10);

    fn policy(min_regions: u32) -> AlertPolicy {
        AlertPolicy {
            min_regions,
            confirmations: 2,
            recoveries: 2,
            severity: crate::alerting::Severity::Critical,
            routes: vec![],
            enabled: true,
            flap_changes: 5,
            flap_window: Duration::from_secs(1800),
            retry_interval: None,
            confirm_from_other_regions: false,
        }
    }

    fn regions() -> Vec<String> {
        ["ap-south", "eu-west", "us-east"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// `fails` > 0: that many failures in a row; else `-fails` passes in a row.
    fn st(region: &str, run: i32, age_ms: i64) -> RegionState {
        RegionState {
            check_id: "api".into(),
            region: region.into(),
            last_result_at_ms: NOW - age_ms,
            last_received_at_ms: NOW - age_ms,
            last_ok: run <= 0,
            consecutive_failures: run.max(0).unsigned_abs(),
            consecutive_passes: run.min(0).unsigned_abs(),
            last_code: (run > 0).then(|| "timeout".into()),
            last_message: None,
            last_kind: "http".into(),
            last_details: crate::details::empty(),
            last_probe: "p".into(),
        }
    }

    fn decide_now(states: &[RegionState], open: bool) -> Decision {
        decide(&policy(2), INTERVAL, &regions(), states, &[], open, NOW)
    }

    #[test]
    fn statuses_serialize_as_the_word_the_api_always_sent() {
        for (status, word) in [
            (RegionStatus::Ok, "OK"),
            (RegionStatus::Unknown, "UNKNOWN"),
            (RegionStatus::Stale, "STALE"),
            (RegionStatus::Failing, "FAILING"),
            (RegionStatus::Flapping, "FLAPPING"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), word);
            assert_eq!(status.as_str(), word);
            assert_eq!(format!("{status:<8}|"), format!("{word:<8}|"));
        }
    }

    #[test]
    fn two_regions_failing_twice_fire() {
        let s = [
            st("eu-west", 2, 0),
            st("us-east", 3, 0),
            st("ap-south", -5, 0),
        ];
        assert_eq!(
            decide_now(&s, false),
            Decision::Fire {
                failing: vec!["eu-west".into(), "us-east".into()]
            }
        );
    }

    #[test]
    fn unconfirmed_or_single_region_failures_hold() {
        assert_eq!(
            decide_now(&[st("eu-west", 1, 0), st("us-east", 2, 0)], false),
            Decision::Hold
        );
        assert_eq!(
            decide_now(&[st("eu-west", 9, 0), st("us-east", -1, 0)], false),
            Decision::Hold
        );
    }

    #[test]
    fn stale_regions_count_neither_way() {
        let stale = 31_000; // > 3 × 10 s
        let s = [st("eu-west", 5, 0), st("us-east", 5, stale)];
        assert_eq!(decide_now(&s, false), Decision::Hold);
        assert_eq!(
            region_status(Some(&s[1]), INTERVAL, false, NOW),
            RegionStatus::Stale
        );
        assert_eq!(
            region_status(Some(&s[0]), INTERVAL, false, NOW),
            RegionStatus::Failing
        );
        assert_eq!(
            region_status(None, INTERVAL, false, NOW),
            RegionStatus::Unknown
        );
        // Exactly at the threshold the region is still fresh.
        assert!(is_fresh(&st("x", 1, 30_000), INTERVAL, NOW));
    }

    #[test]
    fn all_regions_stale_changes_nothing() {
        let s = [st("eu-west", -5, 60_000), st("us-east", -5, 60_000)];
        assert_eq!(decide_now(&s, true), Decision::Hold);
        let s = [st("eu-west", 5, 60_000), st("us-east", 5, 60_000)];
        assert_eq!(decide_now(&s, false), Decision::Hold);
        assert_eq!(decide_now(&[], true), Decision::Hold);
    }

    #[test]
    fn resolves_once_fewer_than_min_regions_are_unrecovered() {
        // One pass is not a recovery.
        let s = [st("eu-west", -1, 0), st("us-east", -1, 0)];
        assert_eq!(decide_now(&s, true), Decision::Hold);
        let s = [st("eu-west", -2, 0), st("us-east", -2, 0)];
        assert_eq!(decide_now(&s, true), Decision::Resolve);
        // Still two regions failing: stays open.
        let s = [
            st("eu-west", 3, 0),
            st("us-east", 3, 0),
            st("ap-south", -9, 0),
        ];
        assert_eq!(decide_now(&s, true), Decision::Hold);
    }

    #[test]
    fn open_alert_never_fires_again() {
        let s = [st("eu-west", 9, 0), st("us-east", 9, 0)];
        assert_eq!(decide_now(&s, true), Decision::Hold);
    }

    #[test]
    fn unassigned_regions_are_ignored() {
        let s = [st("eu-west", 9, 0), st("mars", 9, 0)];
        assert_eq!(decide_now(&s, false), Decision::Hold);
    }

    #[test]
    fn min_regions_one_fires_on_a_single_region() {
        let s = [st("eu-west", 2, 0)];
        assert_eq!(
            decide(&policy(1), INTERVAL, &regions(), &s, &[], false, NOW),
            Decision::Fire {
                failing: vec!["eu-west".into()]
            }
        );
    }

    #[test]
    fn offline_regions_count_neither_failing_nor_passing() {
        let offline = vec!["us-east".to_owned()];
        // Fresh failures from an offline region do not make the quorum.
        let s = [
            st("eu-west", 5, 0),
            st("us-east", 5, 0),
            st("ap-south", -5, 0),
        ];
        assert_eq!(
            decide(&policy(2), INTERVAL, &regions(), &s, &offline, false, NOW),
            Decision::Hold
        );
        // Nor does its going silent resolve an open alert: eu-west and
        // us-east were failing; us-east went offline, eu-west still fails.
        let s = [
            st("eu-west", 5, 0),
            st("us-east", 5, 0),
            st("ap-south", -5, 0),
        ];
        assert_eq!(
            decide(&policy(2), INTERVAL, &regions(), &s, &offline, true, NOW),
            Decision::Hold
        );
        // It resolves once fresh regions show the recovery.
        let s = [
            st("eu-west", -2, 0),
            st("us-east", 5, 0),
            st("ap-south", -5, 0),
        ];
        assert_eq!(
            decide(&policy(2), INTERVAL, &regions(), &s, &offline, true, NOW),
            Decision::Resolve
        );
        // Its young result is shown STALE, not OK or FAILING.
        assert_eq!(
            region_status(Some(&s[1]), INTERVAL, true, NOW),
            RegionStatus::Stale
        );
        // Every region offline: nothing changes.
        let all = regions();
        assert_eq!(
            decide(&policy(2), INTERVAL, &regions(), &s, &all, true, NOW),
            Decision::Hold
        );
    }
}
