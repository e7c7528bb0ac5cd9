//! blackbox_exporter-compatible series on `/metrics`: per (check, region)
//! `probe_success`, `probe_duration_seconds`, `probe_http_*`,
//! `probe_ssl_earliest_cert_expiry`, `probe_tls_version_info` and
//! `probe_dns_lookup_time_seconds` from the newest result (computed by
//! [`outpost_probe::blackbox`], which says what each means), and the
//! `outpost_check_duration_seconds` histogram of every stored result.
//!
//! Every series carries `check`, `region` and `kind`, never a URL, so a
//! blackbox dashboard or alert rule works once it matches on `check`
//! instead of `instance`.
//!
//! The gauges are computed at each scrape from the store (the latest state
//! per (check, region), see [`crate::store::LatestTimings`]), for configured
//! checks only: a removed check's series disappear with the next scrape,
//! and every replica answers the same. The histogram is observed at ingest
//! ([`observe`]) by the replica that stored the result; [`prune`] drops the
//! series of checks no longer configured.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    metrics::Metrics,
    store::{LatestTimings, RegionState},
};

use outpost_probe::blackbox::{self, HTTP_PHASES, Run, Series, http_phases, secs};

/// The series of one (check, region) from its newest state and timings.
pub fn samples(state: &RegionState, timings: Option<&LatestTimings>) -> Vec<Series> {
    blackbox::series(Run {
        ok: state.last_ok,
        kind: &state.last_kind,
        observed: &state.last_details,
        phases_us: timings.map(|t| t.phases_us),
    })
}

/// Replaces the scrape-time families with the series of the configured
/// checks' newest states, and prunes the histogram of removed checks.
pub fn publish(
    m: &Metrics,
    configured: &BTreeSet<&str>,
    states: &[RegionState],
    timings: &[LatestTimings],
) {
    let timings: BTreeMap<(&str, &str), &LatestTimings> = timings
        .iter()
        .map(|t| ((t.check_id.as_str(), t.region.as_str()), t))
        .collect();
    for (name, _) in blackbox::FAMILIES {
        m.clear(name);
    }
    for s in states
        .iter()
        .filter(|s| configured.contains(s.check_id.as_str()))
    {
        let t = timings
            .get(&(s.check_id.as_str(), s.region.as_str()))
            .copied();
        for sample in samples(s, t) {
            let mut labels = vec![
                ("check", s.check_id.as_str()),
                ("region", s.region.as_str()),
                ("kind", s.last_kind.as_str()),
            ];
            if let Some((k, v)) = &sample.extra {
                labels.push((k, v.as_str()));
            }
            m.set(sample.name, &labels, sample.value);
        }
    }
    prune(m, configured);
}

/// Drops the per-check counter and histogram series of checks no longer
/// configured.
pub fn prune(m: &Metrics, configured: &BTreeSet<&str>) {
    for name in [
        "outpost_check_duration_seconds",
        "outpost_check_failures_total",
    ] {
        m.retain(name, |labels| {
            labels
                .iter()
                .find(|(k, _)| k == "check")
                .is_none_or(|(_, v)| configured.contains(v.as_str()))
        });
    }
}

/// Observes newly stored results' phases (stored µs, as [`http_phases`]
/// reads them) in `outpost_check_duration_seconds`, a batch under one
/// lock of the registry: phases that did not run are left out, `total`
/// always. Each item is (check, kind, phases); `region` is the batch's.
pub fn observe<'a>(
    m: &Metrics,
    region: &'a str,
    results: impl IntoIterator<Item = (&'a str, &'a str, [u64; 5])>,
) {
    let observations = results.into_iter().flat_map(|(check, kind, phases_us)| {
        let phases = http_phases(phases_us);
        HTTP_PHASES
            .iter()
            .zip(phases)
            .filter(|(_, v)| *v > 0.0)
            .chain([(&"total", secs(phases_us[4]))])
            .map(move |(phase, v)| {
                // By name: the registry's lookup takes sorted labels as given.
                (
                    [
                        ("check", check),
                        ("kind", kind),
                        ("phase", *phase),
                        ("region", region),
                    ],
                    v,
                )
            })
    });
    m.observe_each("outpost_check_duration_seconds", observations);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kind: &str, ok: bool, details: serde_json::Value) -> RegionState {
        RegionState {
            check_id: "api".into(),
            region: "eu".into(),
            last_result_at_ms: 1,
            last_received_at_ms: 1,
            last_ok: ok,
            consecutive_failures: 0,
            consecutive_passes: 1,
            last_code: None,
            last_message: None,
            last_kind: kind.into(),
            last_details: crate::details::decode(kind, &details.to_string()),
            last_probe: "p".into(),
        }
    }

    #[test]
    fn removed_checks_lose_their_series() {
        let m = Metrics::default();
        let mut gone = state("dns", true, serde_json::json!({}));
        gone.check_id = "gone".into();
        let kept = state("dns", true, serde_json::json!({}));
        observe(&m, "eu", [("api", "http", [1, 2, 3, 4, 20])]);
        observe(&m, "eu", [("gone", "http", [1, 2, 3, 4, 20])]);
        let configured: BTreeSet<&str> = ["api"].into();
        publish(&m, &configured, &[kept, gone], &[]);
        let text = m.render();
        assert!(
            text.contains("probe_success{check=\"api\",kind=\"dns\",region=\"eu\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("gone"), "{text}");
        assert!(
            text.contains(
                "outpost_check_duration_seconds_count{check=\"api\",kind=\"http\",phase=\"total\",region=\"eu\"} 1\n"
            ),
            "{text}"
        );
    }
}
