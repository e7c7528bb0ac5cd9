//! Notifier health: a sink that cannot deliver is itself an alert.
//!
//! - **Failing.** A sink is failing when its attempts since its last
//!   delivered one ([`Store::failing_sinks`](crate::store::Store::failing_sinks),
//!   from `notification_attempts`) include a permanent failure (rejected:
//!   4xx other than 408/429, or given up past `give_up_after`), or when the
//!   first of them is older than `[alerting].notifier_failing_after`
//!   (retries for that long: a PagerDuty outage, a webhook down).
//! - **Alert.** One fleet-level `notifier_failing` alert per sink, dedup key
//!   `outpost/sink/<name>/notifier_failing`, severity `error`, routed to the
//!   fallback route ([`crate::config::ControllerConfig::sinks_for_notifier`]:
//!   the routes marked `fallback = true`, else every route carrying
//!   `notifier_failing`), never to the failing sink itself. Shown in the
//!   dashboard's banner and the API like every open alert. It resolves
//!   with the sink's next delivered attempt (or when the sink leaves the
//!   config); until then it stays open, since nothing tells us the sink
//!   works again.
//! - **State.** Everything is in the store (attempts, the open alert), so a
//!   restart neither re-pages nor forgets it. Evaluated on every tick.

use super::{Action, AlertEvent, AlertKind, Severity, Transition};
use crate::{
    Controller,
    config::ControllerConfig,
    store::{AlertRow, FailingSink, NewAlert, StoreError},
};

/// The deterministic dedup key of a sink's failing alert.
pub fn dedup_key(sink: &str) -> String {
    format!("outpost/sink/{sink}/{}", AlertKind::NotifierFailing)
}

/// Whether `f` makes its sink failing at `now_ms`.
pub fn is_failing(f: &FailingSink, after: std::time::Duration, now_ms: i64) -> bool {
    let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    f.permanent || now_ms.saturating_sub(f.since_ms) >= after
}

fn trigger_event(f: &FailingSink, now_ms: i64) -> AlertEvent {
    let how = if f.permanent {
        "rejects notifications"
    } else {
        "cannot deliver"
    };
    let since = crate::format::timestamp(f.since_ms);
    AlertEvent {
        action: Action::Trigger,
        dedup_key: dedup_key(&f.sink),
        check_id: String::new(),
        probe: None,
        kind: AlertKind::NotifierFailing.into(),
        summary: super::truncate(
            &format!(
                "sink {} {how} since {since}: {}; its alerts are not reaching anyone there",
                f.sink, f.excerpt
            ),
            1024,
        ),
        severity: Severity::Error,
        regions: Vec::new(),
        code: AlertKind::NotifierFailing.as_str().to_owned(),
        details: serde_json::json!({
            "sink": f.sink,
            "since_ms": f.since_ms,
            "permanent": f.permanent,
            "status": f.status,
            "last_error": f.excerpt,
        }),
        at_ms: now_ms,
    }
}

fn resolve_event(alert: &AlertRow, sink: &str, why: &str, now_ms: i64) -> AlertEvent {
    AlertEvent {
        action: Action::Resolve,
        dedup_key: alert.dedup_key.clone(),
        check_id: String::new(),
        probe: None,
        kind: AlertKind::NotifierFailing.into(),
        summary: format!("sink {sink} {why}"),
        severity: alert.severity,
        regions: Vec::new(),
        code: String::new(),
        details: serde_json::json!({ "sink": sink }),
        at_ms: now_ms,
    }
}

/// The sink an open `notifier_failing` alert is about (from its dedup key).
fn sink_of(alert: &AlertRow) -> Option<&str> {
    alert
        .dedup_key
        .strip_prefix("outpost/sink/")?
        .strip_suffix("/notifier_failing")
}

/// Fires and resolves `notifier_failing` alerts. `open` holds the open
/// alerts of every kind; the caller holds the evaluation lock.
pub async fn evaluate(
    ctl: &Controller,
    cfg: &ControllerConfig,
    open: &[AlertRow],
    now_ms: i64,
) -> Result<Vec<Transition>, StoreError> {
    let failing: Vec<FailingSink> = ctl
        .store()
        .failing_sinks()
        .await?
        .into_iter()
        .filter(|f| {
            cfg.sink(&f.sink).is_some() && is_failing(f, cfg.notifier_failing_after, now_ms)
        })
        .collect();
    let mut out = Vec::new();
    for f in &failing {
        let key = dedup_key(&f.sink);
        if open.iter().any(|a| a.dedup_key == key) {
            continue;
        }
        let event = trigger_event(f, now_ms);
        let sinks = cfg.sinks_for_notifier(&f.sink);
        if sinks.is_empty() {
            tracing::warn!(sink = %f.sink, "no other sink to tell that this sink is failing; the alert is on the dashboard only");
        }
        let new = NewAlert::of(AlertKind::NotifierFailing, &event);
        if let Some(t) = super::fire_alert(ctl, &new, &event, sinks).await? {
            out.push(t);
        }
    }
    for alert in open.iter().filter(|a| a.kind == AlertKind::NotifierFailing) {
        let Some(sink) = sink_of(alert) else { continue };
        let why = if cfg.sink(sink).is_none() {
            "removed from config"
        } else if failing.iter().any(|f| f.sink == sink) {
            continue;
        } else {
            "delivers again"
        };
        let event = resolve_event(alert, sink, why, now_ms);
        if let Some(t) = super::resolve(ctl, alert.id, &event).await? {
            out.push(t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn failing(since_ms: i64, permanent: bool) -> FailingSink {
        FailingSink {
            sink: "pd".into(),
            since_ms,
            permanent,
            status: Some(503),
            excerpt: "status 503".into(),
        }
    }

    #[test]
    fn permanent_failures_count_at_once_and_retries_after_the_bound() {
        let after = Duration::from_secs(300);
        assert!(is_failing(&failing(1_000, true), after, 1_001));
        assert!(!is_failing(&failing(1_000, false), after, 300_999));
        assert!(is_failing(&failing(1_000, false), after, 301_000));
    }

    #[test]
    fn the_dedup_key_names_the_sink_and_reads_back() {
        let key = dedup_key("pagerduty");
        assert_eq!(key, "outpost/sink/pagerduty/notifier_failing");
        let row = AlertRow {
            id: 1,
            check_id: String::new(),
            probe: None,
            kind: AlertKind::NotifierFailing,
            dedup_key: key,
            state: super::super::AlertState::Open,
            severity: Severity::Error,
            summary: String::new(),
            regions_json: "[]".into(),
            code: String::new(),
            opened_at_ms: 0,
            resolved_at_ms: None,
            notified_json: String::new(),
            notified_ms: None,
            flapping: false,
            suppressed_by: String::new(),
        };
        assert_eq!(sink_of(&row), Some("pagerduty"));
    }
}
