//! Alert evaluation: per check, per region state → [`rule::decide`] → a
//! persisted alert change with its notifications → the delivery worker
//! ([`sink::run_delivery`]).
//!
//! Design note.
//! - **State.** The rule's only inputs are `region_state` rows (updated by
//!   ingest in the same transaction as the results), the probes' last-seen
//!   times and the open alert rows, all in the store. Nothing lives only in
//!   memory, so a restart neither re-pages an open alert nor forgets it: the
//!   next evaluation reads it back.
//! - **When.** After each committed batch for the checks it touched, and every
//!   second for every check and probe ([`TICK`]) so regions turn STALE and
//!   probes offline without results. Evaluations are serialized by a lock;
//!   the store's one-open-alert-per-dedup-key index guards against anything
//!   that slips through.
//! - **Kinds.** `check_failing` ([`rule`]: a check failing from `min_regions`
//!   fresh regions) and `probe_offline` ([`offline`]: one fleet-level alert
//!   per silent probe; its regions count as stale for every check, so an
//!   offline probe never pages per check) and `certificate_expiring`
//!   ([`certificate`]: one alert per certificate of the inventory, escalated
//!   as thresholds are crossed, evaluated every minute and after batches that
//!   carried certificates). Routes carry kinds (`[[routes]].kinds`). The
//!   vocabulary is typed end to end, from evaluation through the store's
//!   rows to the API and the page: [`AlertKind`] (and [`Kind`], which adds
//!   event kinds), [`Severity`], [`Action`], [`AlertState`] and
//!   [`sink::NotificationState`], each stored as TEXT with the same words
//!   the JSON carries.
//! - **Outbox.** Firing inserts the alert and one `trigger` notification per
//!   routed sink in one transaction; resolving marks it resolved and queues a
//!   `resolve` for every sink that got the trigger (even if routes changed
//!   since), in one transaction. Delivery happens afterwards ([`sink`]), in
//!   order per (sink, dedup_key), with retries, a give-up horizon per sink
//!   (resolves at least 15 min) and a rate limit per PagerDuty routing key.
//! - **Guarantees.** Per dedup key and sink: at most one trigger per alert
//!   and one resolve after it, delivered at least once (exactly once unless
//!   the process dies between the sink's answer and recording it), trigger
//!   before resolve. Nothing pending is lost on a crash or `kill -9`.
//! - **Dedup keys.** `outpost/<check_id>/check_failing`,
//!   `outpost/probe/<probe>/probe_offline` and
//!   `outpost/certificate/<sha256>/certificate_expiring`: deterministic, so
//!   replicas or a replayed notification collapse into one incident.

pub mod certificate;
pub mod kind;
pub mod offline;
pub mod route;
pub mod rule;
pub mod severity;
pub mod sink;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

pub use kind::{AlertKind, Kind};
pub use severity::Severity;

use serde::{Deserialize, Serialize};

use crate::{
    Controller,
    config::{CheckDef, ControllerConfig},
    store::{AlertRow, NewAlert, Notification, RegionState, StoreError},
};
use rule::Decision;

/// How often every check is re-evaluated (staleness needs no new results).
pub const TICK: Duration = Duration::from_secs(1);

/// The deterministic dedup key of a check's failing alert.
pub fn dedup_key(check_id: &str) -> String {
    format!("outpost/{check_id}/{}", AlertKind::CheckFailing)
}

/// Whether an alert is open (at most one per dedup key) or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum AlertState {
    /// Fired, not yet resolved.
    Open,
    /// Resolved.
    Resolved,
}

impl AlertState {
    /// `open` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a notification asks of a sink: open (or update) an incident, close
/// it, or just inform (an event: never an incident).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Action {
    /// An alert fired or escalated.
    Trigger,
    /// An alert resolved.
    Resolve,
    /// An event happened (`dns_change`).
    Info,
}

impl Action {
    /// `trigger`, `resolve` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
            Action::Info => "info",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The sink-neutral event stored with each notification (`payload_json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `trigger`, `resolve` or `info`.
    pub action: Action,
    /// Dedup key.
    pub dedup_key: String,
    /// Check id (empty for fleet-level alerts).
    pub check_id: String,
    /// Probe of a fleet-level alert (`probe_offline`).
    #[serde(default)]
    pub probe: Option<String>,
    /// Alert kind, or event kind of an `info`.
    pub kind: Kind,
    /// One line for humans.
    pub summary: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: Severity,
    /// Regions failing (trigger) or still unhealthy (resolve).
    pub regions: Vec<String>,
    /// Failure code of the first failing region (empty on resolve).
    pub code: String,
    /// Per-region details: code, message, consecutive failures, last result time.
    pub details: serde_json::Value,
    /// When the alert changed, unix ms.
    pub at_ms: i64,
}

impl AlertEvent {
    /// The event a notification delivers: its stored payload, with the
    /// row's `dedup_key` (the one ordering and deduplication work on) and,
    /// for an event's `info` notification, `details.event_id`, which the
    /// payload cannot carry (see [`crate::store::EventNotice`]). `None` when
    /// the payload does not parse.
    pub fn from_outbox(n: &Notification) -> Option<AlertEvent> {
        let mut event: AlertEvent = serde_json::from_str(&n.payload_json).ok()?;
        event.dedup_key.clone_from(&n.dedup_key);
        if let (Some(id), Some(details)) = (n.event_id, event.details.as_object_mut()) {
            details.insert("event_id".into(), id.into());
        }
        Some(event)
    }
}

/// A state change made by an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// An alert opened.
    Fired {
        /// Alert id.
        alert_id: i64,
        /// Sinks notified.
        sinks: Vec<String>,
    },
    /// An open alert got a higher severity and a new trigger.
    Escalated {
        /// Alert id.
        alert_id: i64,
        /// Sinks notified.
        sinks: Vec<String>,
    },
    /// An alert resolved.
    Resolved {
        /// Alert id.
        alert_id: i64,
        /// Sinks notified.
        sinks: Vec<String>,
    },
}

/// Evaluates the given checks now (after a batch).
pub async fn evaluate_checks(
    ctl: &Controller,
    checks: &BTreeSet<String>,
    now_ms: i64,
) -> Result<Vec<Transition>, StoreError> {
    let _guard = ctl.eval_lock().lock().await;
    let cfg = ctl.config();
    let rows = ctl.store().probes().await?;
    let offline = offline::offline_regions(&cfg, &rows, ctl.started_ms(), now_ms);
    let mut out = Vec::new();
    for id in checks {
        let Some(check) = cfg.check(id) else { continue };
        let states = ctl.store().region_states_for(id).await?;
        let open = ctl.store().open_alert(id, AlertKind::CheckFailing).await?;
        if let Some(t) = apply(ctl, &cfg, check, &states, &offline, open, now_ms).await? {
            out.push(t);
        }
    }
    Ok(out)
}

/// Evaluates every check and every probe (the 1 s ticker), with three
/// queries for the whole fleet.
pub async fn evaluate_all(ctl: &Controller, now_ms: i64) -> Result<Vec<Transition>, StoreError> {
    let _guard = ctl.eval_lock().lock().await;
    let cfg = ctl.config();
    let rows = ctl.store().probes().await?;
    let all_open = ctl.store().open_alerts().await?;
    let mut out = offline::evaluate(ctl, &cfg, &rows, &all_open, now_ms).await?;
    let offline = offline::offline_regions(&cfg, &rows, ctl.started_ms(), now_ms);
    let mut states: BTreeMap<String, Vec<RegionState>> = BTreeMap::new();
    for s in ctl.store().region_states().await? {
        states.entry(s.check_id.clone()).or_default().push(s);
    }
    let mut open: BTreeMap<String, AlertRow> = all_open
        .into_iter()
        .filter(|a| a.kind == AlertKind::CheckFailing)
        .map(|a| (a.check_id.clone(), a))
        .collect();
    for check in &cfg.checks {
        let st = states.remove(&check.raw.id).unwrap_or_default();
        let alert = open.remove(&check.raw.id);
        if let Some(t) = apply(ctl, &cfg, check, &st, &offline, alert, now_ms).await? {
            out.push(t);
        }
    }
    // Alerts of checks removed from config would otherwise stay open forever.
    for (check_id, alert) in open {
        let event = resolve_event(
            &check_id,
            "check removed from config",
            alert.severity,
            now_ms,
        );
        if let Some(t) = resolve(ctl, alert.id, &event).await? {
            out.push(t);
        }
    }
    let still_open = ctl.store().open_alerts().await?.len();
    ctl.metrics()
        .set("outpost_alerts_open", &[], still_open as f64);
    Ok(out)
}

async fn apply(
    ctl: &Controller,
    cfg: &ControllerConfig,
    check: &CheckDef,
    states: &[RegionState],
    offline: &[String],
    open: Option<AlertRow>,
    now_ms: i64,
) -> Result<Option<Transition>, StoreError> {
    let decision = rule::decide(
        &check.policy,
        check.spec.interval,
        &check.regions,
        states,
        offline,
        open.is_some(),
        now_ms,
    );
    match (decision, open) {
        (Decision::Fire { failing }, None) => fire(ctl, cfg, check, states, &failing, now_ms).await,
        (Decision::Resolve, Some(alert)) => {
            let event = resolve_event(&check.raw.id, "recovered", check.policy.severity, now_ms);
            resolve(ctl, alert.id, &event).await
        }
        _ => Ok(None),
    }
}

async fn fire(
    ctl: &Controller,
    cfg: &ControllerConfig,
    check: &CheckDef,
    states: &[RegionState],
    failing: &[String],
    now_ms: i64,
) -> Result<Option<Transition>, StoreError> {
    let event = trigger_event(check, states, failing, now_ms);
    let sinks = cfg.sinks_for_check(check);
    let alert = NewAlert {
        check_id: check.raw.id.clone(),
        probe: None,
        kind: AlertKind::CheckFailing,
        dedup_key: event.dedup_key.clone(),
        severity: event.severity,
        summary: event.summary.clone(),
        regions_json: serde_json::to_string(&event.regions).unwrap_or_else(|_| "[]".into()),
    };
    fire_alert(ctl, &alert, &event, sinks).await
}

/// Opens `alert` and queues `event` as a trigger for each sink, atomically.
pub(crate) async fn fire_alert(
    ctl: &Controller,
    alert: &NewAlert,
    event: &AlertEvent,
    sinks: Vec<String>,
) -> Result<Option<Transition>, StoreError> {
    let payload = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    let Some(alert_id) = ctl
        .store()
        .fire_alert(alert, &sinks, &payload, event.at_ms)
        .await?
    else {
        return Ok(None);
    };
    tracing::warn!(kind = %alert.kind, dedup_key = %alert.dedup_key, alert_id, sinks = ?sinks, summary = %event.summary, "alert fired");
    ctl.metrics().inc(
        "outpost_alerts_total",
        &[("kind", alert.kind.as_str()), ("action", "fire")],
        1,
    );
    ctl.wake_delivery();
    Ok(Some(Transition::Fired { alert_id, sinks }))
}

pub(crate) async fn resolve(
    ctl: &Controller,
    alert_id: i64,
    event: &AlertEvent,
) -> Result<Option<Transition>, StoreError> {
    let payload = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    let Some(sinks) = ctl
        .store()
        .resolve_alert(alert_id, &payload, event.at_ms)
        .await?
    else {
        return Ok(None);
    };
    tracing::info!(kind = %event.kind, dedup_key = %event.dedup_key, alert_id, sinks = ?sinks, "alert resolved");
    ctl.metrics().inc(
        "outpost_alerts_total",
        &[("kind", event.kind.as_str()), ("action", "resolve")],
        1,
    );
    ctl.wake_delivery();
    Ok(Some(Transition::Resolved { alert_id, sinks }))
}

/// Builds the trigger event: summary like `api-health failing from 2 of 3
/// regions (eu-west, us-east): timeout — timed out after 5s`.
pub fn trigger_event(
    check: &CheckDef,
    states: &[RegionState],
    failing: &[String],
    now_ms: i64,
) -> AlertEvent {
    let id = &check.raw.id;
    let first = states.iter().find(|s| failing.first() == Some(&s.region));
    let code = first
        .and_then(|s| s.last_code.clone())
        .unwrap_or_else(|| "unknown".into());
    let message = first
        .and_then(|s| s.last_message.clone())
        .unwrap_or_default();
    let mut summary = format!(
        "{id} failing from {} of {} regions ({}): {code}",
        failing.len(),
        check.regions.len(),
        failing.join(", ")
    );
    if !message.is_empty() {
        summary.push_str(" — ");
        summary.push_str(&message);
    }
    let mut regions = serde_json::Map::new();
    for s in states.iter().filter(|s| failing.contains(&s.region)) {
        regions.insert(
            s.region.clone(),
            serde_json::json!({
                "code": s.last_code,
                "message": s.last_message,
                "consecutive_failures": s.consecutive_failures,
                "last_result_at_ms": s.last_result_at_ms,
                "probe": s.last_probe,
            }),
        );
    }
    let target = check
        .raw
        .http
        .as_ref()
        .map(|h| outpost_probe::redact::url(&h.url).into_owned());
    AlertEvent {
        action: Action::Trigger,
        dedup_key: dedup_key(id),
        check_id: id.clone(),
        probe: None,
        kind: AlertKind::CheckFailing.into(),
        summary: truncate(&summary, 1024),
        severity: check.policy.severity,
        regions: failing.to_vec(),
        code,
        details: serde_json::json!({
            "check_id": id,
            "check_kind": check.spec.kind.name(),
            "target": target,
            "labels": check.raw.labels,
            "regions": regions,
        }),
        at_ms: now_ms,
    }
}

fn resolve_event(check_id: &str, why: &str, severity: Severity, now_ms: i64) -> AlertEvent {
    AlertEvent {
        action: Action::Resolve,
        dedup_key: dedup_key(check_id),
        check_id: check_id.to_owned(),
        probe: None,
        kind: AlertKind::CheckFailing.into(),
        summary: format!("{check_id} {why}"),
        severity,
        regions: Vec::new(),
        code: String::new(),
        details: serde_json::json!({ "check_id": check_id }),
        at_ms: now_ms,
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Runs evaluations: on request after batches, and every [`TICK`];
/// certificates every [`certificate::TICK`] and after batches that carried some.
pub async fn run_evaluator(
    ctl: Controller,
    mut requests: tokio::sync::mpsc::Receiver<BTreeSet<String>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cert_tick = tokio::time::interval(certificate::TICK);
    cert_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            Some(mut checks) = requests.recv() => {
                while let Ok(more) = requests.try_recv() {
                    checks.extend(more);
                }
                evaluate_checks(&ctl, &checks, crate::store::now_ms()).await.map(|_| ())
            }
            _ = tick.tick() => evaluate_all(&ctl, crate::store::now_ms()).await.map(|_| ()),
            _ = cert_tick.tick() => certificate::evaluate(&ctl, crate::store::now_ms()).await.map(|_| ()),
            _ = ctl.certificates_changed().notified() => {
                certificate::evaluate(&ctl, crate::store::now_ms()).await.map(|_| ())
            }
            _ = crate::stopped(&mut shutdown) => return,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "alert evaluation failed; retrying on the next tick");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn dedup_key_is_deterministic() {
        assert_eq!(dedup_key("api-health"), "outpost/api-health/check_failing");
    }

    #[test]
    fn an_info_notification_gets_its_event_id_and_key_from_the_row() {
        let event = AlertEvent {
            action: Action::Info,
            dedup_key: "outpost/app-dns/dns_change/".into(),
            check_id: "app-dns".into(),
            probe: None,
            kind: EventKind::DnsChange.into(),
            summary: "CNAME blue → green".into(),
            severity: Severity::Info,
            regions: vec!["eu-west".into()],
            code: "dns_change".into(),
            details: serde_json::json!({ "check_id": "app-dns" }),
            at_ms: 1,
        };
        let n = Notification {
            id: 1,
            alert_id: None,
            event_id: Some(17),
            sink: "hook".into(),
            action: Action::Info,
            dedup_key: "outpost/app-dns/dns_change/17".into(),
            payload_json: serde_json::to_string(&event).unwrap(),
            attempts: 0,
            created_ms: 1,
            first_attempt_ms: None,
        };
        let out = AlertEvent::from_outbox(&n).unwrap();
        assert_eq!(out.dedup_key, "outpost/app-dns/dns_change/17");
        assert_eq!(out.details["event_id"], 17);
        assert_eq!(out.details["check_id"], "app-dns");
        let broken = Notification {
            payload_json: "not json".into(),
            ..n
        };
        assert_eq!(AlertEvent::from_outbox(&broken), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        let t = truncate("ééééé", 6);
        assert!(t.len() <= 6 && t.ends_with("..."), "{t}");
    }
}
