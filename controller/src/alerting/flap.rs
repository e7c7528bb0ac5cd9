//! Flap detection: a check whose regions keep changing between pass and
//! fail is FLAPPING — one alert marked flapping instead of a
//! trigger/resolve storm (or, when no run of failures ever reaches
//! `confirmations`, instead of silence).
//!
//! Design note.
//! - **Input.** The pass/fail changes of each region among its results of
//!   the last `flap_window` (`[checks.alert]`, default 30 min), counted by
//!   one SQL query over `results` ([`crate::store::Store::state_changes`]).
//!   Nothing lives in memory: a restart counts the same changes.
//! - **Flapping.** At least `min_regions` assigned, not offline regions
//!   each changed `flap_changes` times (default 5; 0 turns detection off)
//!   within the window. Then an alert opens marked flapping (or the open
//!   alert is marked), with a summary that says FLAPPING, and it does not
//!   resolve while the check keeps changing.
//! - **Stable.** No assigned region changed within the window: the mark is
//!   cleared (timeline `stable`) and the ordinary rule takes over — a
//!   recovered check resolves, a steadily failing one stays open as
//!   failing. So a flapping alert resolves only after a whole window of
//!   stability.
//! - **Content.** While flapping, the alert names every region that flapped
//!   since it was marked (the set only grows, so the pager is not updated
//!   as changes age out) and the newest failure's code.
//! - **Cost.** The query runs only when a change could lie inside the
//!   window: some region's current streak (`consecutive_*` × interval) is
//!   shorter than the window plus one interval, or the alert is flapping.
//!   A steady check costs nothing. Heartbeat checks, whose pings may come
//!   faster than their interval, are always counted.

use std::time::Duration;

use crate::{
    config::CheckDef,
    store::{RegionChanges, RegionState},
};

/// What flap detection saw in the window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flap {
    /// Assigned, not offline regions with at least `flap_changes` changes, sorted.
    pub regions: Vec<String>,
    /// The most changes of one region.
    pub changes: u32,
    /// No assigned region changed within the window.
    pub quiet: bool,
}

impl Flap {
    /// Whether enough regions flap to call the check flapping.
    pub fn flapping(&self, min_regions: u32) -> bool {
        !self.regions.is_empty()
            && self.regions.len() >= usize::try_from(min_regions).unwrap_or(usize::MAX)
    }
}

/// Whether a change could lie within the window, so counting is needed.
pub fn may_flap(check: &CheckDef, states: &[RegionState], alert_flapping: bool) -> bool {
    if check.policy.flap_changes == 0 {
        return false;
    }
    if alert_flapping || check.raw.heartbeat.is_some() {
        return true;
    }
    let horizon = check.policy.flap_window.saturating_add(check.spec.interval);
    states
        .iter()
        .filter(|s| check.regions.contains(&s.region))
        .any(|s| {
            let streak = s.consecutive_failures.max(s.consecutive_passes);
            check.spec.interval.saturating_mul(streak) <= horizon
        })
}

/// Judges the counted changes of a check's regions.
pub fn judge(check: &CheckDef, offline: &[String], changes: &[RegionChanges]) -> Flap {
    let assigned = |c: &&RegionChanges| check.regions.contains(&c.region);
    let mut regions: Vec<String> = changes
        .iter()
        .filter(assigned)
        .filter(|c| !offline.contains(&c.region) && c.changes >= check.policy.flap_changes)
        .map(|c| c.region.clone())
        .collect();
    regions.sort();
    Flap {
        regions,
        changes: changes
            .iter()
            .filter(assigned)
            .map(|c| c.changes)
            .max()
            .unwrap_or(0),
        quiet: !changes.iter().filter(assigned).any(|c| c.changes > 0),
    }
}

/// Start of the window ending at `now_ms`.
pub fn window_start(window: Duration, now_ms: i64) -> i64 {
    now_ms.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> CheckDef {
        let cfg = crate::config::parse(
            &format!(
                "[server]\nallow_plaintext_probes = true\n[store]\npath = \"x.db\"\n\
                 [[probes]]\nname = \"a\"\nregion = \"eu\"\ntoken = {{ env = \"T1\" }}\n\
                 [[probes]]\nname = \"b\"\nregion = \"us\"\ntoken = {{ env = \"T2\" }}\n\
                 [[checks]]\nid = \"api\"\ninterval = \"30s\"\nhttp = {{ url = \"https://x.example/\" }}\n{text}"
            ),
            "t.toml",
            &vars(),
        )
        .unwrap();
        cfg.checks[0].clone()
    }

    fn vars() -> Vec<(String, String)> {
        vec![
            (
                "T1".into(),
                "token-1-0123456789abcdef0123456789abcdef".into(),
            ),
            (
                "T2".into(),
                "token-2-0123456789abcdef0123456789abcdef".into(),
            ),
        ]
    }

    fn ch(region: &str, changes: u32) -> RegionChanges {
        RegionChanges {
            region: region.into(),
            changes,
            last_change_ms: 0,
        }
    }

    fn st(region: &str, fails: u32, passes: u32) -> RegionState {
        RegionState {
            check_id: "api".into(),
            region: region.into(),
            last_result_at_ms: 0,
            last_received_at_ms: 0,
            last_ok: passes > 0,
            consecutive_failures: fails,
            consecutive_passes: passes,
            last_code: None,
            last_message: None,
            last_kind: "http".into(),
            last_details: crate::details::empty(),
            last_probe: "a".into(),
        }
    }

    #[test]
    fn defaults_are_five_changes_in_thirty_minutes() {
        let c = check("");
        assert_eq!(c.policy.flap_changes, 5);
        assert_eq!(c.policy.flap_window, Duration::from_secs(1800));
        let c = check("alert = { flap_changes = 3, flap_window = \"5m\" }");
        assert_eq!(c.policy.flap_changes, 3);
        assert_eq!(c.policy.flap_window, Duration::from_secs(300));
    }

    #[test]
    fn min_regions_regions_must_flap() {
        let c = check("");
        let f = judge(&c, &[], &[ch("eu", 6), ch("us", 2)]);
        assert_eq!(f.regions, vec!["eu".to_owned()]);
        assert!(!f.flapping(c.policy.min_regions));
        assert!(!f.quiet);
        let f = judge(&c, &[], &[ch("eu", 6), ch("us", 5)]);
        assert!(f.flapping(2));
        assert_eq!(f.changes, 6);
        // An offline region's old changes do not make the quorum.
        let f = judge(&c, &["us".to_owned()], &[ch("eu", 6), ch("us", 5)]);
        assert!(!f.flapping(2));
        // Unassigned regions are ignored, also for quiet.
        let f = judge(&c, &[], &[ch("mars", 9)]);
        assert!(f.quiet && !f.flapping(1));
        assert!(judge(&c, &[], &[]).quiet);
    }

    #[test]
    fn counting_is_needed_only_when_a_change_can_be_in_the_window() {
        let c = check("");
        // 30 s × 62 runs > 30 min + 30 s: the streak covers the window.
        assert!(!may_flap(&c, &[st("eu", 0, 62), st("us", 63, 0)], false));
        assert!(may_flap(&c, &[st("eu", 0, 62), st("us", 3, 0)], false));
        assert!(may_flap(&c, &[st("eu", 0, 61)], true));
        let off = check("alert = { flap_changes = 0 }");
        assert!(!may_flap(&off, &[st("eu", 1, 0)], true));
    }

    #[test]
    fn nonsense_settings_are_refused() {
        for (text, key) in [
            ("alert = { flap_changes = 1 }", "flap_changes"),
            ("alert = { flap_window = \"0s\" }", "flap_window"),
        ] {
            let err = crate::config::parse(
                &format!(
                    "[server]\n[store]\npath = \"x.db\"\n\
                     [[probes]]\nname = \"a\"\nregion = \"eu\"\ntoken = {{ env = \"T1\" }}\n\
                     [[checks]]\nid = \"api\"\nhttp = {{ url = \"https://x.example/\" }}\n{text}"
                ),
                "t.toml",
                &vars(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
