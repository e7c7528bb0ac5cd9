//! Probe offline: a probe that sent nothing for longer than
//! `[alerting].offline_after` is offline.
//!
//! - **Silence** is measured from the newest of the probe's last hello,
//!   heartbeat or batch (`probes.last_seen_ms`) and the controller's own
//!   start, so a controller that was down itself does not declare the whole
//!   fleet offline the moment it comes back: probes get `offline_after` to
//!   reconnect. A probe that never said hello is not alerted on (it may not
//!   be deployed yet); the API shows it as never seen.
//! - **Regions.** A region is offline when every probe configured in it is
//!   offline or never seen (and at least one was seen). Its (check, region)
//!   states show STALE with the reason "probe offline" and count neither as
//!   failing nor as passing in [`rule::decide`](super::rule::decide).
//! - **Alert.** One fleet-level `probe_offline` alert per probe, dedup key
//!   `outpost/probe/<name>/probe_offline`, routed to every route whose
//!   `kinds` include `probe_offline` — never one page per check. It resolves
//!   when the probe is heard from again. Like check alerts it lives in the
//!   store, so a restart neither re-pages nor forgets it.

use std::collections::BTreeSet;

use super::{Action, AlertEvent, AlertKind, Transition};
use crate::{
    Controller,
    config::ControllerConfig,
    store::{AlertRow, NewAlert, ProbeRow, StoreError},
};

/// The deterministic dedup key of a probe's offline alert.
pub fn dedup_key(probe: &str) -> String {
    format!("outpost/probe/{probe}/{}", AlertKind::ProbeOffline)
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long the probe has been silent as far as this controller can tell;
/// `None` when it never said hello.
pub fn silent_for_ms(row: Option<&ProbeRow>, started_ms: i64, now_ms: i64) -> Option<i64> {
    row.map(|r| now_ms.saturating_sub(r.last_seen_ms.max(started_ms)).max(0))
}

/// True when the probe was seen once and has been silent longer than `offline_after`.
pub fn is_offline(
    row: Option<&ProbeRow>,
    offline_after: std::time::Duration,
    started_ms: i64,
    now_ms: i64,
) -> bool {
    silent_for_ms(row, started_ms, now_ms).is_some_and(|s| s > ms(offline_after))
}

/// Names of configured probes that are offline, sorted.
pub fn offline_probes(
    cfg: &ControllerConfig,
    rows: &[ProbeRow],
    started_ms: i64,
    now_ms: i64,
) -> BTreeSet<String> {
    cfg.probes
        .iter()
        .filter(|p| {
            let row = rows.iter().find(|r| r.name == p.name);
            is_offline(row, cfg.offline_after, started_ms, now_ms)
        })
        .map(|p| p.name.clone())
        .collect()
}

/// Regions where every configured probe is offline or never seen, and at
/// least one is offline. Sorted.
pub fn offline_regions(
    cfg: &ControllerConfig,
    rows: &[ProbeRow],
    started_ms: i64,
    now_ms: i64,
) -> Vec<String> {
    let offline = offline_probes(cfg, rows, started_ms, now_ms);
    cfg.regions()
        .into_iter()
        .filter(|region| {
            let mut probes = cfg.probes.iter().filter(|p| &p.region == region);
            let mut any_offline = false;
            let all_silent = probes.all(|p| {
                let seen = rows.iter().any(|r| r.name == p.name);
                any_offline |= offline.contains(&p.name);
                offline.contains(&p.name) || !seen
            });
            all_silent && any_offline
        })
        .collect()
}

/// The trigger event of a probe's offline alert.
pub fn trigger_event(
    cfg: &ControllerConfig,
    probe: &str,
    region: &str,
    silent_ms: i64,
    now_ms: i64,
) -> AlertEvent {
    let silent = crate::format::ms(silent_ms);
    let limit = outpost_probe::config::Dur(cfg.offline_after);
    let checks: Vec<&str> = cfg
        .checks_for_region(region)
        .map(|c| c.raw.id.as_str())
        .collect();
    AlertEvent {
        action: Action::Trigger,
        dedup_key: dedup_key(probe),
        check_id: String::new(),
        probe: Some(probe.to_owned()),
        kind: AlertKind::ProbeOffline.into(),
        summary: format!(
            "probe {probe} ({region}) offline: nothing received for {silent} (offline_after {limit}); its checks in {region} are STALE"
        ),
        severity: cfg.offline_severity,
        regions: vec![region.to_owned()],
        code: AlertKind::ProbeOffline.as_str().to_owned(),
        details: serde_json::json!({
            "probe": probe,
            "region": region,
            "silent_ms": silent_ms,
            "offline_after": limit.to_string(),
            "checks": checks,
        }),
        at_ms: now_ms,
    }
}

fn resolve_event(alert: &AlertRow, probe: &str, why: &str, now_ms: i64) -> AlertEvent {
    AlertEvent {
        action: Action::Resolve,
        dedup_key: alert.dedup_key.clone(),
        check_id: String::new(),
        probe: Some(probe.to_owned()),
        kind: AlertKind::ProbeOffline.into(),
        summary: format!("probe {probe} {why}"),
        severity: alert.severity,
        regions: Vec::new(),
        code: String::new(),
        details: serde_json::json!({ "probe": probe }),
        at_ms: now_ms,
    }
}

/// Fires and resolves `probe_offline` alerts. `open` holds the open alerts
/// of every kind; the caller holds the evaluation lock.
pub async fn evaluate(
    ctl: &Controller,
    cfg: &ControllerConfig,
    rows: &[ProbeRow],
    open: &[AlertRow],
    now_ms: i64,
) -> Result<Vec<Transition>, StoreError> {
    let started = ctl.started_ms();
    let mut out = Vec::new();
    for p in &cfg.probes {
        let row = rows.iter().find(|r| r.name == p.name);
        let key = dedup_key(&p.name);
        let alert = open.iter().find(|a| a.dedup_key == key);
        let offline = is_offline(row, cfg.offline_after, started, now_ms);
        match (offline, alert) {
            (true, None) => {
                let silent = silent_for_ms(row, started, now_ms).unwrap_or(0);
                let event = trigger_event(cfg, &p.name, &p.region, silent, now_ms);
                let sinks = cfg.sinks_for_kind(AlertKind::ProbeOffline.into());
                let new = NewAlert {
                    check_id: String::new(),
                    probe: Some(p.name.clone()),
                    kind: AlertKind::ProbeOffline,
                    dedup_key: key,
                    severity: event.severity,
                    summary: event.summary.clone(),
                    regions_json: serde_json::to_string(&event.regions)
                        .unwrap_or_else(|_| "[]".into()),
                };
                if let Some(t) = super::fire_alert(ctl, &new, &event, sinks).await? {
                    out.push(t);
                }
            }
            (false, Some(alert)) => {
                let event = resolve_event(alert, &p.name, "is back", now_ms);
                if let Some(t) = super::resolve(ctl, alert.id, &event).await? {
                    out.push(t);
                }
            }
            _ => {}
        }
    }
    // Alerts of probes removed from config would otherwise stay open forever.
    for alert in open.iter().filter(|a| a.kind == AlertKind::ProbeOffline) {
        let Some(probe) = alert.probe.as_deref() else {
            continue;
        };
        if cfg.probe(probe).is_none() {
            let event = resolve_event(alert, probe, "removed from config", now_ms);
            if let Some(t) = super::resolve(ctl, alert.id, &event).await? {
                out.push(t);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(name: &str, last_seen_ms: i64) -> ProbeRow {
        ProbeRow::hello(name, "eu", "1", "{}", last_seen_ms)
    }

    #[test]
    fn silence_counts_from_the_controller_start_at_the_earliest() {
        let after = Duration::from_secs(60);
        // Seen 10 min ago, but the controller started 30 s ago: not yet offline.
        assert!(!is_offline(Some(&row("p", 0)), after, 570_000, 600_000));
        // 61 s after the controller's start it is.
        assert!(is_offline(Some(&row("p", 0)), after, 539_000, 600_000));
        // Never seen: never alerted.
        assert!(!is_offline(None, after, 0, 600_000));
        // Exactly at the limit: still online.
        assert!(!is_offline(Some(&row("p", 0)), after, 0, 60_000));
    }

    #[test]
    fn dedup_key_names_the_probe() {
        assert_eq!(
            dedup_key("eu-west-1"),
            "outpost/probe/eu-west-1/probe_offline"
        );
    }
}
