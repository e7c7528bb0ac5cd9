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
//! - **When.** After each committed batch for the checks whose rule input
//!   it moved — a region failing, or passing within `recoveries` of a
//!   failure (a region recovered already, passing again, changes nothing
//!   the rule reads: ingest leaves those out) — with three queries however
//!   many (probes, open alerts, the checks' region states without details),
//!   and every second ([`TICK`]) for every probe and sink and for what time
//!   alone can change ([`Due`]): the checks with an open alert (a region
//!   turning STALE holds, updates or resolves it; with no alert open, time
//!   only removes fresh failing regions, so it can never fire one), the
//!   checks whose fast-confirmation retry fell due ([`confirm`]), every
//!   check when the set of offline regions changed and on an evaluator's
//!   first pass, and on PostgreSQL the checks other replicas' batches
//!   moved (a scan of `region_state` receipt times, no details read). A
//!   request that finds the evaluator's queue full waits in a set for the
//!   next request or tick, never dropped. Evaluations are serialized by a
//!   lock; the store's one-open-alert-per-dedup-key index guards against
//!   anything that slips through.
//! - **Kinds.** `check_failing` ([`rule`]: a check failing from `min_regions`
//!   fresh regions) and `probe_offline` ([`offline`]: one fleet-level alert
//!   per silent probe; its regions count as stale for every check, so an
//!   offline probe never pages per check) and `certificate_expiring`
//!   ([`certificate`]: one alert per certificate of the inventory, escalated
//!   as thresholds are crossed, evaluated every minute and after batches that
//!   carried certificates), and `notifier_failing` ([`notifier`]: one alert
//!   per sink that rejects notifications or fails longer than
//!   `notifier_failing_after`, on the fallback route). Routes carry kinds
//!   (`[[routes]].kinds`). The
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
//! - **Guarantees.** Per dedup key and sink: one first trigger per alert,
//!   then at most one update trigger per `update_interval` (check alerts) or
//!   per escalation (certificates), all with the alert's dedup key so the
//!   pager keeps one incident, and one resolve after them, delivered at
//!   least once (exactly once unless the process dies between the sink's
//!   answer and recording it), triggers before the resolve. Nothing pending
//!   is lost on a crash or `kill -9`.
//! - **Live content.** While a check alert is open, every evaluation
//!   compares the fresh, confirmed failing regions, the first one's code and
//!   the severity ([`Sent`]) with the row: a difference updates the row's
//!   summary (`… failing from 3 of 3 regions (…): code — message · since
//!   2030-01-01T12:00:03Z`, the time it fired), regions and code, and appends `updated` to the
//!   timeline. When that state differs from what the sinks were last sent
//!   and `[alerting].update_interval` has passed since the last trigger, a
//!   new trigger with the same dedup key goes to every sink that got the
//!   first one (PagerDuty updates the incident instead of opening another),
//!   with `notified` on the timeline; changes inside the interval are sent
//!   as the latest state once it passes. With no fresh failing region left
//!   (recovering, or stale) the content holds: silence is not news, and the
//!   resolve says when it is over.
//! - **Flapping.** Before the rule, [`flap`] counts each region's pass/fail
//!   changes within the check's `flap_window`: enough of them open one alert
//!   marked flapping (or mark the open one, `alerts.flapping`), whose content
//!   says FLAPPING and names every region that flapped since; while marked,
//!   the rule's resolve is not applied. A whole window without a change
//!   clears the mark (`stable`) and hands the alert back to the rule.
//! - **Suppression.** Before every fire and for every open check alert,
//!   [`silence::cause`] names what explains the failure now (a silence, a
//!   maintenance window, a failing `depends_on`): the alert is opened with
//!   `suppressed_by` and no trigger (or, open, gets no update triggers),
//!   and pages when the cause ends while the check still fails
//!   ([`silence`]'s note).
//! - **Confirmation.** After each evaluation of a check without an open
//!   alert, [`confirm::nudge`] asks the probes of unconfirmed failing
//!   regions (and optionally every other region) to run it now.
//! - **Timeline.** Every change of an alert is a row of `alert_timeline`
//!   ([`Change`]: fired, updated, notified, escalated, flapping, stable,
//!   suppressed, released, resolved) written in
//!   the transaction of the change, served by `GET /api/v1/alerts/{id}`.
//! - **Grouping.** A route with `group_by` gets no per-alert
//!   notifications: after each pass over every check, [`group`] gathers
//!   its paging check alerts into groups (one notification per sink per
//!   group, `group_wait`, `group_interval`), stored in `alert_groups`.
//! - **Dedup keys.** `outpost/<check_id>/check_failing`,
//!   `outpost/probe/<probe>/probe_offline` and
//!   `outpost/certificate/<sha256>/certificate_expiring` and
//!   `outpost/group/<route>/<hash>` (a group): deterministic, so
//!   replicas or a replayed notification collapse into one incident.

pub mod certificate;
pub mod confirm;
pub mod flap;
pub mod group;
pub mod kind;
pub mod leader;
pub mod notifier;
pub mod offline;
pub mod route;
pub mod rule;
pub mod severity;
pub mod silence;
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
    store::{AlertContent, AlertRow, NewAlert, Notification, RegionState, StoreError},
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

/// What changed in an alert's life: the `what` of its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Change {
    /// Opened; its trigger queued.
    Fired,
    /// The content followed the current state (regions, code, severity).
    Updated,
    /// An update trigger was queued with the current content.
    Notified,
    /// Severity raised with a new trigger (certificates).
    Escalated,
    /// Resolved; its resolves queued.
    Resolved,
    /// Marked flapping by flap detection ([`flap`]).
    Flapping,
    /// Stable for the flap window again: the mark cleared.
    Stable,
    /// Recorded but not paged: a silence, a maintenance window or a
    /// failing dependency ([`silence`]) suppresses it.
    Suppressed,
    /// The suppression ended; paged then if still failing.
    Released,
}

impl Change {
    /// The word stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Fired => "fired",
            Change::Updated => "updated",
            Change::Notified => "notified",
            Change::Escalated => "escalated",
            Change::Resolved => "resolved",
            Change::Flapping => "flapping",
            Change::Stable => "stable",
            Change::Suppressed => "suppressed",
            Change::Released => "released",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The part of an alert's content whose change is news to the pager:
/// stored as what the sinks were last sent (`alerts.notified_json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Failing regions, sorted.
    pub regions: Vec<String>,
    /// Failure code of the first failing region.
    pub code: String,
    /// Severity.
    pub severity: Severity,
    /// Flapping ([`flap`]); absent before v7.
    #[serde(default)]
    pub flapping: bool,
}

impl Sent {
    /// What `event` tells the sinks.
    pub fn of(event: &AlertEvent) -> Sent {
        Sent {
            regions: event.regions.clone(),
            code: event.code.clone(),
            severity: event.severity,
            flapping: event.is_flapping(),
        }
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
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
    /// Whether the event is about a flapping check: `details.flapping`,
    /// which every sink carries with the details.
    pub fn is_flapping(&self) -> bool {
        self.details.get("flapping") == Some(&serde_json::Value::Bool(true))
    }

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
    /// An open alert's content followed the current state; `sinks` got an
    /// update trigger (empty inside `update_interval`).
    Updated {
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

/// Evaluates the given checks now (after a batch): three queries however
/// many checks (probes, open alerts, the checks' region states), then the
/// rule per check.
pub async fn evaluate_checks(
    ctl: &Controller,
    checks: &BTreeSet<String>,
    now_ms: i64,
) -> Result<Vec<Transition>, StoreError> {
    let _guard = ctl.eval_lock().lock().await;
    let cfg = ctl.config();
    let rows = ctl.store().probes().await?;
    let ids: Vec<&str> = checks
        .iter()
        .filter(|id| cfg.check(id).is_some())
        .map(String::as_str)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut open = open_check_alerts(ctl.store().open_alerts().await?);
    let mut states = by_check(ctl.store().region_states_of_brief(&ids).await?);
    let offline = offline::offline_regions(&cfg, &rows, ctl.started_ms(), now_ms);
    let env = Env::load(ctl, &cfg, offline, now_ms).await?;
    let mut out = Vec::new();
    for id in ids {
        let Some(check) = cfg.check(id) else { continue };
        let st = states.remove(id).unwrap_or_default();
        let alert = open.remove(id);
        let was_open = alert.is_some();
        if let Some(t) = apply(ctl, &cfg, check, &st, &env, alert, now_ms).await? {
            out.push(t);
        }
        confirm::nudge(ctl, check, &st, &env.offline, was_open, now_ms);
    }
    Ok(out)
}

/// Open `check_failing` alerts by check.
fn open_check_alerts(all_open: Vec<AlertRow>) -> BTreeMap<String, AlertRow> {
    all_open
        .into_iter()
        .filter(|a| a.kind == AlertKind::CheckFailing)
        .map(|a| (a.check_id.clone(), a))
        .collect()
}

/// Region states grouped by check.
pub(crate) fn by_check(states: Vec<RegionState>) -> BTreeMap<String, Vec<RegionState>> {
    let mut out: BTreeMap<String, Vec<RegionState>> = BTreeMap::new();
    for s in states {
        out.entry(s.check_id.clone()).or_default().push(s);
    }
    out
}

/// Evaluates every check and every probe, with three queries for the
/// whole fleet (the first pass of an evaluator, and tests).
pub async fn evaluate_all(ctl: &Controller, now_ms: i64) -> Result<Vec<Transition>, StoreError> {
    let _guard = ctl.eval_lock().lock().await;
    pass(ctl, None, now_ms).await
}

/// What the 1 s tick must look at besides probes and sinks (module note,
/// "When"). Results reach the rule through [`evaluate_checks`] after their
/// batch commits; with no new result, time alone can only turn regions
/// stale or offline, which never fires an alert (the rule fires on fresh
/// failing regions only) but can hold, update or resolve an open one, or
/// make a fast-confirmation retry due. So a tick evaluates the checks with
/// an open alert, those with a retry due, and every check when the
/// set of offline regions changed (a probe back online brings its regions'
/// states back into the rule) or on the evaluator's first pass. On
/// PostgreSQL other replicas ingest too, and their batches wake only their
/// own evaluator: the tick also reads the (check, region) keys whose
/// `last_received_at_ms` is within [`Due::SLACK`] of the previous scan and
/// evaluates those whose time moved since it last saw them.
#[derive(Debug, Default)]
pub struct Due {
    /// Offline regions at the previous pass; `None` before the first.
    offline: Option<Vec<String>>,
    /// PostgreSQL: the newest `last_received_at_ms` seen per (check,
    /// region) within the scan window (older entries are dropped).
    received: std::collections::HashMap<(String, String), i64>,
    /// PostgreSQL: the `now` of the previous scan.
    scanned_ms: i64,
}

impl Due {
    /// How far back each scan reaches before the previous one: another
    /// replica's batch is stamped with its arrival time before its commit,
    /// and replicas' clocks differ a little (NTP).
    pub const SLACK: Duration = Duration::from_secs(5);

    /// Checks whose `region_state` another replica moved since the previous scan.
    async fn changed_elsewhere(
        &mut self,
        ctl: &Controller,
        now_ms: i64,
    ) -> Result<BTreeSet<String>, StoreError> {
        let slack = i64::try_from(Self::SLACK.as_millis()).unwrap_or(i64::MAX);
        let since = self.scanned_ms.saturating_sub(slack);
        let rows = ctl.store().region_state_receipts(since).await?;
        let mut changed = BTreeSet::new();
        for (check, region, received) in rows {
            match self.received.get_mut(&(check.clone(), region.clone())) {
                Some(seen) if *seen >= received => {}
                Some(seen) => {
                    *seen = received;
                    changed.insert(check);
                }
                None => {
                    self.received.insert((check.clone(), region), received);
                    changed.insert(check);
                }
            }
        }
        self.received.retain(|_, at| *at >= since);
        self.scanned_ms = now_ms;
        Ok(changed)
    }
}

/// One pass: probes, sinks, then every check (`due` is `None`, or its
/// first pass, or the offline regions changed) or only the checks `due`
/// names; alerts of checks no longer in config resolve either way.
async fn pass(
    ctl: &Controller,
    due: Option<&mut Due>,
    now_ms: i64,
) -> Result<Vec<Transition>, StoreError> {
    let cfg = ctl.config();
    let rows = ctl.store().probes().await?;
    let all_open = ctl.store().open_alerts().await?;
    let mut out = offline::evaluate(ctl, &cfg, &rows, &all_open, now_ms).await?;
    out.extend(notifier::evaluate(ctl, &cfg, &all_open, now_ms).await?);
    let offline = offline::offline_regions(&cfg, &rows, ctl.started_ms(), now_ms);
    let mut open = open_check_alerts(all_open);
    let only: Option<BTreeSet<String>> = match due {
        Some(due) if due.offline.as_ref() == Some(&offline) => {
            let mut only: BTreeSet<String> = open.keys().cloned().collect();
            // Retries of unconfirmed failures fall due with time alone.
            only.extend(ctl.confirm_asked().take_due(now_ms));
            if ctl.store().engine() == crate::store::Engine::Postgres {
                only.extend(due.changed_elsewhere(ctl, now_ms).await?);
            }
            Some(only)
        }
        Some(due) => {
            due.offline = Some(offline.clone());
            // Everything is read below: the scan window starts here.
            due.received.clear();
            due.scanned_ms = now_ms;
            None
        }
        None => None,
    };
    let mut states = match &only {
        None => by_check(ctl.store().region_states_brief().await?),
        Some(ids) => {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            by_check(ctl.store().region_states_of_brief(&ids).await?)
        }
    };
    // Read after the states: a dependency's failure that those states
    // include is then in the view too (read before, a pass slowed down
    // while batches committed could judge dependents on newer states
    // than their dependency's and page them).
    let env = Env::load(ctl, &cfg, offline, now_ms).await?;
    for check in &cfg.checks {
        if only.as_ref().is_some_and(|o| !o.contains(&check.raw.id)) {
            continue;
        }
        let st = states.remove(&check.raw.id).unwrap_or_default();
        let alert = open.remove(&check.raw.id);
        let was_open = alert.is_some();
        if let Some(t) = apply(ctl, &cfg, check, &st, &env, alert, now_ms).await? {
            out.push(t);
        }
        confirm::nudge(ctl, check, &st, &env.offline, was_open, now_ms);
    }
    // Alerts of checks removed from config would otherwise stay open forever
    // (every open alert's check was evaluated above if still configured).
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

/// What every check's evaluation in one pass shares: the regions whose
/// probes are offline, the stored silences not yet ended and the
/// dependencies (`depends_on`) failing now.
struct Env {
    offline: Vec<String>,
    silences: Vec<crate::store::SilenceRow>,
    failing: BTreeSet<String>,
}

impl Env {
    async fn load(
        ctl: &Controller,
        cfg: &ControllerConfig,
        offline: Vec<String>,
        now_ms: i64,
    ) -> Result<Env, StoreError> {
        let deps: BTreeSet<&str> = cfg
            .checks
            .iter()
            .flat_map(|c| c.raw.depends_on.iter().map(String::as_str))
            .collect();
        let mut failing = BTreeSet::new();
        for id in deps {
            let Some(dep) = cfg.check(id) else { continue };
            let states = ctl.store().region_states_of_brief(&[id]).await?;
            let open = ctl
                .store()
                .open_alert(id, AlertKind::CheckFailing)
                .await?
                .is_some();
            if silence::dependency_failing(dep, &states, &offline, open, now_ms) {
                failing.insert(id.to_owned());
            }
        }
        Ok(Env {
            offline,
            silences: ctl.store().current_silences(now_ms).await?,
            failing,
        })
    }
}

async fn apply(
    ctl: &Controller,
    cfg: &ControllerConfig,
    check: &CheckDef,
    states: &[RegionState],
    env: &Env,
    open: Option<AlertRow>,
    now_ms: i64,
) -> Result<Option<Transition>, StoreError> {
    let offline = env.offline.as_slice();
    let cause = silence::cause(cfg, &env.silences, &env.failing, check, now_ms);
    let mut open = open;
    if let Some(alert) = open.as_mut()
        && alert.suppressed_by != cause.as_deref().unwrap_or("")
    {
        let t = resuppress(ctl, cfg, check, states, env, alert, now_ms).await?;
        if t.is_some() {
            return Ok(t);
        }
    }
    let flap = if flap::may_flap(check, states, open.as_ref().is_some_and(|a| a.flapping)) {
        let since = flap::window_start(check.policy.flap_window, now_ms);
        let context = since.saturating_sub(
            i64::try_from(rule::stale_after(check.spec.interval).as_millis()).unwrap_or(0),
        );
        let changes = ctl
            .store()
            .state_changes(&check.raw.id, since, context)
            .await?;
        Some(flap::judge(check, offline, &changes))
    } else {
        None
    };
    let flapping = flap
        .as_ref()
        .is_some_and(|f| f.flapping(check.policy.min_regions));
    match (&flap, open.as_mut()) {
        (Some(f), None) if flapping => {
            let event = flap_event(ctl, check, states, f, None, now_ms).await?;
            return fire_check(ctl, cfg, check, &event, cause).await;
        }
        (Some(f), Some(alert)) if flapping || (alert.flapping && !f.quiet) => {
            let mut event = flap_event(ctl, check, states, f, Some(alert), now_ms).await?;
            event.summary = with_since(&event.summary, alert.opened_at_ms);
            if !alert.flapping {
                let content = content_of(&event);
                ctl.store()
                    .set_flapping(alert.id, true, &content, now_ms)
                    .await?;
                tracing::info!(dedup_key = %alert.dedup_key, alert_id = alert.id, regions = ?f.regions, "alert flapping");
                alert.flapping = true;
                alert.summary = content.summary;
                alert.regions_json = content.regions_json;
                alert.code = content.code;
            }
            return update(ctl, cfg, event, alert, now_ms).await;
        }
        (_, Some(alert)) if alert.flapping => {
            // Stable for the window (or detection turned off): the
            // ordinary rule takes over below.
            let mut content = content_of_row(alert);
            content.summary = format!(
                "{} stable for {}",
                check.raw.id,
                outpost_probe::config::Dur(check.policy.flap_window)
            );
            ctl.store()
                .set_flapping(alert.id, false, &content, now_ms)
                .await?;
            tracing::info!(dedup_key = %alert.dedup_key, alert_id = alert.id, "alert stable");
            alert.flapping = false;
        }
        _ => {}
    }
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
        (Decision::Fire { failing }, None) => {
            let event = trigger_event(check, states, &failing, now_ms);
            fire_check(ctl, cfg, check, &event, cause).await
        }
        (Decision::Resolve, Some(alert)) => {
            let event = resolve_event(&check.raw.id, "recovered", check.policy.severity, now_ms);
            resolve(ctl, alert.id, &event).await
        }
        (Decision::Hold, Some(alert)) => {
            let failing = rule::failing_now(
                &check.policy,
                check.spec.interval,
                &check.regions,
                states,
                offline,
                now_ms,
            );
            if failing.is_empty() {
                return Ok(None);
            }
            let mut event = trigger_event(check, states, &failing, now_ms);
            event.summary = with_since(&event.summary, alert.opened_at_ms);
            update(ctl, cfg, event, &alert, now_ms).await
        }
        _ => Ok(None),
    }
}

/// The trigger of a flapping check: `api-health FLAPPING from 3 of 3
/// regions (…): changed between pass and fail 6 times within 30m; last
/// failure: timeout — …`, naming the regions flapping now and those the
/// open alert `held` names, with its code when no failure is left in the
/// window (a check calming down is not news), `details.flapping = true`.
async fn flap_event(
    ctl: &Controller,
    check: &CheckDef,
    states: &[RegionState],
    flap: &flap::Flap,
    held: Option<&AlertRow>,
    now_ms: i64,
) -> Result<AlertEvent, StoreError> {
    let mut regions: BTreeSet<String> = flap.regions.iter().cloned().collect();
    if let Some(a) = held {
        regions.extend(serde_json::from_str::<Vec<String>>(&a.regions_json).unwrap_or_default());
    }
    let regions: Vec<String> = regions.into_iter().collect();
    let since = flap::window_start(check.policy.flap_window, now_ms);
    let last = ctl.store().last_failure(&check.raw.id, since).await?;
    let mut event = trigger_event(check, states, &regions, now_ms);
    let id = &check.raw.id;
    let mut summary = format!(
        "{id} FLAPPING from {} of {} regions ({}): changed between pass and fail {} times within {}",
        regions.len(),
        check.regions.len(),
        regions.join(", "),
        flap.changes,
        outpost_probe::config::Dur(check.policy.flap_window),
    );
    if let Some((_, code, message)) = &last {
        let code = code.clone().unwrap_or_else(|| "unknown".into());
        summary.push_str(&format!("; last failure: {code}"));
        if let Some(m) = message.as_deref().filter(|m| !m.is_empty()) {
            summary.push_str(" — ");
            summary.push_str(m);
        }
        event.code = code;
    } else if let Some(a) = held.filter(|a| !a.code.is_empty()) {
        summary.push_str(&format!("; last failure: {}", a.code));
        event.code.clone_from(&a.code);
    }
    event.summary = truncate(&summary, 1024);
    if let Some(d) = event.details.as_object_mut() {
        d.insert("flapping".into(), true.into());
        d.insert("flap_changes".into(), flap.changes.into());
        d.insert(
            "flap_window".into(),
            outpost_probe::config::Dur(check.policy.flap_window)
                .to_string()
                .into(),
        );
    }
    Ok(event)
}

fn content_of(event: &AlertEvent) -> AlertContent {
    AlertContent {
        severity: event.severity,
        summary: event.summary.clone(),
        regions_json: serde_json::to_string(&event.regions).unwrap_or_else(|_| "[]".into()),
        code: event.code.clone(),
    }
}

fn content_of_row(alert: &AlertRow) -> AlertContent {
    AlertContent {
        severity: alert.severity,
        summary: alert.summary.clone(),
        regions_json: alert.regions_json.clone(),
        code: alert.code.clone(),
    }
}

/// Keeps an open alert's content on the current state (`event`, a
/// trigger) and re-sends a meaningful change, at most once per
/// `update_interval` (module note).
async fn update(
    ctl: &Controller,
    cfg: &ControllerConfig,
    event: AlertEvent,
    alert: &AlertRow,
    now_ms: i64,
) -> Result<Option<Transition>, StoreError> {
    let current = Sent::of(&event);
    let row = Sent {
        regions: serde_json::from_str(&alert.regions_json).unwrap_or_default(),
        code: alert.code.clone(),
        severity: alert.severity,
        flapping: alert.flapping,
    };
    let sent: Option<Sent> = serde_json::from_str(&alert.notified_json).ok();
    // An alert fired before v5 has no record of what was sent: its row is.
    let news = sent.as_ref().unwrap_or(&row) != &current;
    let due = alert.notified_ms.is_none_or(|at| {
        now_ms.saturating_sub(at)
            >= i64::try_from(cfg.update_interval.as_millis()).unwrap_or(i64::MAX)
    });
    // Suppressed: the row follows the state, the pager hears nothing.
    let notify = news && due && alert.suppressed_by.is_empty();
    if current == row && !notify {
        return Ok(None);
    }
    let content = content_of(&event);
    let payload = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
    let sent_json = current.to_json();
    let Some(sinks) = ctl
        .store()
        .update_alert(
            alert.id,
            &content,
            current != row,
            notify.then_some((payload.as_str(), sent_json.as_str())),
            now_ms,
        )
        .await?
    else {
        return Ok(None);
    };
    tracing::info!(kind = %AlertKind::CheckFailing, dedup_key = %alert.dedup_key, alert_id = alert.id,
        regions = ?event.regions, code = %event.code, sinks = ?sinks, "alert updated");
    if notify {
        ctl.metrics().inc(
            "outpost_alerts_total",
            &[
                ("kind", AlertKind::CheckFailing.as_str()),
                ("action", "update"),
            ],
            1,
        );
        ctl.wake_delivery();
    }
    Ok(Some(Transition::Updated {
        alert_id: alert.id,
        sinks,
    }))
}

/// `summary · since 2030-01-01T12:00:03Z`, within the summary's 1024 bytes.
fn with_since(summary: &str, opened_ms: i64) -> String {
    let since = format!(" · since {}", crate::format::timestamp(opened_ms));
    let mut out = truncate(summary, 1024 - since.len());
    out.push_str(&since);
    out
}

/// Opens a check's alert for `event`: paging its routed sinks, or, with
/// a `cause` ([`silence::cause`]), recorded and suppressed.
async fn fire_check(
    ctl: &Controller,
    cfg: &ControllerConfig,
    check: &CheckDef,
    event: &AlertEvent,
    cause: Option<String>,
) -> Result<Option<Transition>, StoreError> {
    let mut alert = NewAlert::of(AlertKind::CheckFailing, event);
    let sinks = match cause {
        Some(by) => {
            tracing::info!(dedup_key = %alert.dedup_key, suppressed_by = %by, "alert suppressed: recorded, not paged");
            alert.suppressed_by = by;
            Vec::new()
        }
        None => cfg.sinks_for_check(check),
    };
    fire_alert(ctl, &alert, event, sinks).await
}

/// An open check alert whose suppression changed (module note of
/// [`silence`]): suppressed by another cause, or released — paging its
/// routed sinks then if the check still fails or flaps.
async fn resuppress(
    ctl: &Controller,
    cfg: &ControllerConfig,
    check: &CheckDef,
    states: &[RegionState],
    env: &Env,
    alert: &mut AlertRow,
    now_ms: i64,
) -> Result<Option<Transition>, StoreError> {
    let cause = silence::cause(cfg, &env.silences, &env.failing, check, now_ms);
    let mut content = content_of_row(alert);
    if let Some(by) = cause {
        content.summary = format!("not paged: suppressed by {by}");
        ctl.store()
            .set_suppressed(alert.id, &by, &content, None, now_ms)
            .await?;
        tracing::info!(dedup_key = %alert.dedup_key, alert_id = alert.id, suppressed_by = %by, "alert suppressed: recorded, not paged");
        alert.suppressed_by = by;
        return Ok(None);
    }
    let mut failing = rule::failing_now(
        &check.policy,
        check.spec.interval,
        &check.regions,
        states,
        &env.offline,
        now_ms,
    );
    if failing.is_empty() && alert.flapping {
        failing = serde_json::from_str(&alert.regions_json).unwrap_or_default();
    }
    if failing.is_empty() {
        // Recovering or stale: nothing to page now. The mark stays, so the
        // alert pages once a region fails again, or resolves unpaged.
        return Ok(None);
    }
    if let Some(dep) = alert.suppressed_by.strip_prefix(silence::DEPENDENCY) {
        // Failures seen up to the dependency's first pass are its
        // outage's: page only on one that came after it recovered (the
        // first pass of its current run of passes, in its last region to
        // recover; runs are one interval apart).
        let interval = cfg.check(dep).map_or(0, |d| {
            i64::try_from(d.spec.interval.as_millis()).unwrap_or(0)
        });
        let recovered_at = ctl
            .store()
            .region_states_for(dep)
            .await?
            .iter()
            .filter(|s| s.last_ok)
            .map(|s| {
                let earlier = i64::from(s.consecutive_passes.saturating_sub(1));
                s.last_result_at_ms
                    .saturating_sub(earlier.saturating_mul(interval))
            })
            .max()
            .unwrap_or(i64::MIN);
        if !states
            .iter()
            .any(|s| failing.contains(&s.region) && s.last_result_at_ms > recovered_at)
        {
            return Ok(None);
        }
    }
    let ended = std::mem::take(&mut alert.suppressed_by);
    let mut event = trigger_event(check, states, &failing, now_ms);
    if alert.flapping {
        event.summary = alert.summary.clone();
        if let Some(d) = event.details.as_object_mut() {
            d.insert("flapping".into(), true.into());
        }
    } else {
        event.summary = with_since(&event.summary, alert.opened_at_ms);
    }
    event.summary = truncate(
        &format!("{} — {}", event.summary, silence::release_note(&ended)),
        1024,
    );
    let content = content_of(&event);
    let sinks = cfg.sinks_for_check(check);
    let payload = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
    let sent = Sent::of(&event).to_json();
    let Some(sinks) = ctl
        .store()
        .set_suppressed(
            alert.id,
            "",
            &content,
            Some((&sinks, payload.as_str(), sent.as_str())),
            now_ms,
        )
        .await?
    else {
        return Ok(None);
    };
    tracing::warn!(dedup_key = %alert.dedup_key, alert_id = alert.id, ended = %ended, sinks = ?sinks, "suppression ended: alert paged");
    ctl.metrics().inc(
        "outpost_alerts_total",
        &[
            ("kind", AlertKind::CheckFailing.as_str()),
            ("action", "fire"),
        ],
        1,
    );
    ctl.wake_delivery();
    Ok(Some(Transition::Fired {
        alert_id: alert.id,
        sinks,
    }))
}

impl NewAlert {
    /// The alert `event` (a trigger) opens.
    pub fn of(kind: AlertKind, event: &AlertEvent) -> NewAlert {
        NewAlert {
            check_id: event.check_id.clone(),
            probe: event.probe.clone(),
            kind,
            dedup_key: event.dedup_key.clone(),
            severity: event.severity,
            summary: event.summary.clone(),
            regions_json: serde_json::to_string(&event.regions).unwrap_or_else(|_| "[]".into()),
            code: event.code.clone(),
            notified_json: Sent::of(event).to_json(),
            flapping: event.is_flapping(),
            suppressed_by: String::new(),
        }
    }
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
        .resolve_alert(alert_id, &payload, Some(&event.summary), event.at_ms)
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
/// Every check and certificate is looked at again at once when a manual
/// clock moves ([`Controller::start_with_clock`]), so tests move time instead
/// of waiting for a tick; each pass over every check records its `now` in
/// [`Controller::evaluated_ms`].
pub async fn run_evaluator(
    ctl: Controller,
    mut requests: tokio::sync::mpsc::Receiver<BTreeSet<String>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let offline_after = ctl.config().offline_after;
    if offline::heartbeat_too_slow(offline_after, offline::DEFAULT_HEARTBEAT).is_some() {
        tracing::warn!(
            offline_after = %outpost_probe::config::Dur(offline_after),
            default_heartbeat_interval = %outpost_probe::config::Dur(offline::DEFAULT_HEARTBEAT),
            "alerting.offline_after is at most twice the probes' default heartbeat_interval: probes on the default page probe_offline after one late heartbeat"
        );
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cert_tick = tokio::time::interval(certificate::TICK);
    cert_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut moved = ctl.clock().moved();
    let mut due = Due::default();
    loop {
        if !ctl.store().is_leader() {
            // A new term starts with a pass over everything.
            due = Due::default();
        }
        let result = tokio::select! {
            Some(mut checks) = requests.recv() => {
                while let Ok(more) = requests.try_recv() {
                    checks.extend(more);
                }
                checks.extend(ctl.take_evaluation_overflow());
                if !ctl.store().is_leader() {
                    continue;
                }
                evaluate_checks(&ctl, &checks, ctl.now_ms()).await.map(|_| ())
            }
            _ = tick.tick(), if ctl.store().is_leader() => evaluate_due(&ctl, &mut due).await,
            _ = moved.changed(), if ctl.store().is_leader() => match evaluate_every_check(&ctl).await {
                Ok(()) => certificate::evaluate(&ctl, ctl.now_ms()).await.map(|_| ()),
                Err(e) => Err(e),
            },
            _ = cert_tick.tick(), if ctl.store().is_leader() => {
                certificate::evaluate(&ctl, ctl.now_ms()).await.map(|_| ())
            }
            _ = ctl.certificates_changed().notified(), if ctl.store().is_leader() => {
                certificate::evaluate(&ctl, ctl.now_ms()).await.map(|_| ())
            }
            // A replica that is not the evaluator re-checks once a tick.
            _ = tokio::time::sleep(TICK), if !ctl.store().is_leader() => Ok(()),
            _ = crate::stopped(&mut shutdown) => return,
        };
        if let Err(StoreError::Fenced { epoch }) = &result {
            tracing::warn!(
                epoch,
                "alert change refused: this replica no longer holds the evaluator lease"
            );
        } else if let Err(e) = result {
            tracing::error!(error = %e, "alert evaluation failed; retrying on the next tick");
        }
    }
}

/// One pass over every check and probe at the clock's `now`, recorded once
/// complete in [`Controller::evaluated_ms`] and the gauge
/// `outpost_alerting_last_pass_timestamp_seconds` (a stuck evaluator shows
/// as a timestamp that stops moving; tests of another process read it as
/// proof a pass ran).
async fn evaluate_every_check(ctl: &Controller) -> Result<(), StoreError> {
    let now = ctl.now_ms();
    evaluate_all(ctl, now).await?;
    group::evaluate(ctl, now).await?;
    passed(ctl, now);
    Ok(())
}

/// The 1 s tick: what [`Due`] says may have changed with time, recorded
/// as a pass over every check (it is one: the checks it skips cannot
/// change with time alone).
async fn evaluate_due(ctl: &Controller, due: &mut Due) -> Result<(), StoreError> {
    let now = ctl.now_ms();
    let overflow = ctl.take_evaluation_overflow();
    if !overflow.is_empty() {
        evaluate_checks(ctl, &overflow, now).await?;
    }
    {
        let _guard = ctl.eval_lock().lock().await;
        pass(ctl, Some(due), now).await?;
    }
    group::evaluate(ctl, now).await?;
    passed(ctl, now);
    Ok(())
}

fn passed(ctl: &Controller, now: i64) {
    ctl.set_evaluated(now);
    ctl.metrics().set(
        "outpost_alerting_last_pass_timestamp_seconds",
        &[],
        now as f64 / 1000.0,
    );
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
