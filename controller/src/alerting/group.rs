//! Grouping: `[[routes]] group_by` sends one notification per sink for many
//! failing checks, as Alertmanager does.
//!
//! Design note.
//! - **Members.** The open `check_failing` alerts routed to a grouped route
//!   ([`crate::config::ControllerConfig::routes_for_check`]) that page:
//!   suppressed ones (a silence, a maintenance window, a failing
//!   `depends_on`: [`super::silence`]) do not count until released. Each
//!   alert keeps its own row, timeline and dashboard state; a grouped
//!   route's sinks just never get the alert's own notifications
//!   ([`crate::config::ControllerConfig::sinks_for_check`] leaves grouped
//!   routes out).
//! - **Group.** Members of one route with equal values of the `group_by`
//!   labels ([`GroupLabel`]: a check label, or `check`, `severity`, `kind`)
//!   form a group, keyed by those values; its dedup key
//!   `outpost/group/<route>/<hash>` ([`dedup_key`]) is stable, so every
//!   notification of the group lands on one PagerDuty incident, one
//!   Opsgenie alias.
//! - **Timing** ([`step`]). A group opens when its first member is seen and
//!   waits `group_wait` to collect the others; then one trigger per sink
//!   names every member (`5 checks failing (team=payments): a, b, c, +2`,
//!   members with their codes and regions in the details). Later changes
//!   of membership (or of a member's code) go out as one update trigger at
//!   most once per `group_interval`, with the same dedup key. With every
//!   member resolved the group resolves, also at the next `group_interval`
//!   (a member failing again inside it keeps the incident open). A group
//!   emptied before its first trigger closes unsent.
//! - **State.** Groups are rows of `alert_groups` (`store/groups.rs`):
//!   opened, notified (what was sent, to which sinks) and resolved, each
//!   change in one transaction with its notifications, fenced with the
//!   evaluator epoch. Members are read from the open alerts on every pass,
//!   so a restart (or `kill -9`) neither re-pages a group nor forgets one.
//! - **When.** After every evaluator pass over every check (each tick and
//!   each move of a manual clock), so `group_wait` and `group_interval`
//!   are honoured to within one tick.
//! - **Config changes.** A group whose route was removed or lost `group_by`
//!   resolves at once (if it was sent); updates and resolves go to the sinks
//!   that got the first trigger, whatever the route lists since.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use outpost_probe::config::{Dur, Problems};

use super::{Action, AlertEvent, AlertKind, Severity};
use crate::{
    Controller,
    config::CheckDef,
    store::{AlertRow, GroupRow, StoreError},
};

/// Default `[[routes]] group_wait`.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Default `[[routes]] group_interval`.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// Longest `group_wait`: holding a page longer is missing it.
pub const MAX_GROUP_WAIT: Duration = Duration::from_secs(3600);
/// Shortest `group_interval`.
pub const MIN_GROUP_INTERVAL: Duration = Duration::from_secs(1);
/// Longest `group_interval`.
pub const MAX_GROUP_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Members named in a group's summary; the rest are counted (`+2`).
pub const NAMED: usize = 3;

/// One `group_by` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLabel {
    /// `check`: the check's id (one group per check).
    Check,
    /// `severity`: the check's `alert.severity`.
    Severity,
    /// `kind`: the check's kind (`http`, `tls`, `dns`, …).
    Kind,
    /// Any other name: that check label (empty when the check has none).
    Label(String),
}

impl GroupLabel {
    /// Reads a `group_by` entry.
    pub fn parse(name: &str) -> GroupLabel {
        match name {
            "check" => GroupLabel::Check,
            "severity" => GroupLabel::Severity,
            "kind" => GroupLabel::Kind,
            other => GroupLabel::Label(other.to_owned()),
        }
    }

    /// The name as written.
    pub fn name(&self) -> &str {
        match self {
            GroupLabel::Check => "check",
            GroupLabel::Severity => "severity",
            GroupLabel::Kind => "kind",
            GroupLabel::Label(l) => l,
        }
    }

    /// The value for `check`.
    pub fn value(&self, check: &CheckDef) -> String {
        match self {
            GroupLabel::Check => check.raw.id.clone(),
            GroupLabel::Severity => check.policy.severity.as_str().to_owned(),
            GroupLabel::Kind => check.spec.kind.name().to_owned(),
            GroupLabel::Label(l) => check.raw.labels.get(l).cloned().unwrap_or_default(),
        }
    }
}

/// A grouped route's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// Labels whose values make a group.
    pub by: Vec<GroupLabel>,
    /// How long a new group collects members before its first trigger.
    pub wait: Duration,
    /// Least time between two notifications of a group.
    pub interval: Duration,
}

impl Grouping {
    /// The group values of `check`: `[name, value]` pairs in `group_by` order.
    pub fn values(&self, check: &CheckDef) -> Vec<(String, String)> {
        self.by
            .iter()
            .map(|l| (l.name().to_owned(), l.value(check)))
            .collect()
    }
}

/// Validates `group_by`, `group_wait` and `group_interval` of the route at
/// `path`; `None` without `group_by` (the route notifies per alert).
pub fn validate(
    by: Option<&[String]>,
    wait: Option<Dur>,
    interval: Option<Dur>,
    path: &str,
    p: &mut Problems,
) -> Option<Grouping> {
    let Some(by) = by else {
        for (key, set) in [
            ("group_wait", wait.is_some()),
            ("group_interval", interval.is_some()),
        ] {
            if set {
                p.push(
                    format!("{path}.{key}"),
                    format!("{key} needs group_by, e.g. group_by = [\"team\"]"),
                );
            }
        }
        return None;
    };
    if by.is_empty() {
        p.push(
            format!("{path}.group_by"),
            "group_by is empty: list labels such as [\"team\"] (or \"check\", \"severity\", \"kind\"), or remove it to notify per alert",
        );
    }
    let mut seen = BTreeSet::new();
    for (j, name) in by.iter().enumerate() {
        if name.trim().is_empty() {
            p.push(
                format!("{path}.group_by[{j}]"),
                "label names cannot be empty, e.g. group_by = [\"team\"]",
            );
        } else if !seen.insert(name.as_str()) {
            p.push(
                format!("{path}.group_by[{j}]"),
                format!("{name:?} is listed twice"),
            );
        }
    }
    let wait = wait.map(Dur::get).unwrap_or(DEFAULT_GROUP_WAIT);
    if wait > MAX_GROUP_WAIT {
        p.push(
            format!("{path}.group_wait"),
            format!(
                "group_wait must be ≤ {}, got \"{}\": a page held longer is a page missed",
                Dur(MAX_GROUP_WAIT),
                Dur(wait)
            ),
        );
    }
    let interval = interval.map(Dur::get).unwrap_or(DEFAULT_GROUP_INTERVAL);
    if !(MIN_GROUP_INTERVAL..=MAX_GROUP_INTERVAL).contains(&interval) {
        p.push(
            format!("{path}.group_interval"),
            format!(
                "group_interval must be between {} and {}, got \"{}\"",
                Dur(MIN_GROUP_INTERVAL),
                Dur(MAX_GROUP_INTERVAL),
                Dur(interval)
            ),
        );
    }
    Some(Grouping {
        by: by.iter().map(|n| GroupLabel::parse(n)).collect(),
        wait,
        interval,
    })
}

/// The stored form of group values (`alert_groups.group_key`).
pub fn group_key(values: &[(String, String)]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// `team=payments, check=api`.
pub fn describe(values: &[(String, String)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The deterministic dedup key of a group: `outpost/group/<route>/<hash>`,
/// the hash (FNV-1a, 64 bits, hex) of the route and the group values.
pub fn dedup_key(route: &str, group_key: &str) -> String {
    let hash = outpost_probe::scheduler::fnv1a(&[route, group_key]);
    format!("outpost/group/{route}/{hash:016x}")
}

/// A member of a group: an open, paging check alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Check id.
    pub check_id: String,
    /// Failure code of its first failing region.
    pub code: String,
    /// Failing regions.
    pub regions: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// The alert's current summary.
    pub summary: String,
}

impl Member {
    /// The member an open alert row makes.
    pub fn of(alert: &AlertRow) -> Member {
        Member {
            check_id: alert.check_id.clone(),
            code: alert.code.clone(),
            regions: serde_json::from_str(&alert.regions_json).unwrap_or_default(),
            severity: alert.severity,
            summary: alert.summary.clone(),
        }
    }
}

/// What the sinks are told about `members`: check id → code.
pub fn sent_of(members: &[Member]) -> BTreeMap<String, String> {
    members
        .iter()
        .map(|m| (m.check_id.clone(), m.code.clone()))
        .collect()
}

/// What a group does at an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing now (waiting, inside `group_interval`, or nothing new).
    Hold,
    /// Queue a trigger with the current members (first or update).
    Trigger,
    /// Every member resolved: queue the resolves.
    Resolve,
    /// Emptied before its first trigger: close unsent.
    Drop,
}

/// The group's next step at `now_ms` (module note, **Timing**): opened at
/// `opened_ms`, last triggered at `notified_ms` with `sent`.
pub fn step(
    g: &Grouping,
    opened_ms: i64,
    notified_ms: Option<i64>,
    sent: &BTreeMap<String, String>,
    members: &[Member],
    now_ms: i64,
) -> Step {
    let passed = |since: i64, d: Duration| {
        now_ms.saturating_sub(since) >= i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    };
    match notified_ms {
        None if members.is_empty() => Step::Drop,
        None if passed(opened_ms, g.wait) => Step::Trigger,
        None => Step::Hold,
        Some(at) if !passed(at, g.interval) => Step::Hold,
        Some(_) if members.is_empty() => Step::Resolve,
        Some(_) if sent_of(members) != *sent => Step::Trigger,
        Some(_) => Step::Hold,
    }
}

/// Whether `event` is a group's update trigger (`details.group_update`):
/// sinks that keep the first message of an incident (Opsgenie) add a note.
pub fn is_update(event: &AlertEvent) -> bool {
    event.details.get("group_update") == Some(&serde_json::Value::Bool(true))
}

/// The trigger of a group: summary `5 checks failing (team=payments): a,
/// b, c, +2 · since …`, the most severe member's severity, every failing
/// region, and the members in `details.members`; `update` when it follows
/// the group's first trigger (`details.group_update`).
pub fn trigger_event(
    route: &str,
    values: &[(String, String)],
    dedup_key: &str,
    members: &[Member],
    opened_ms: i64,
    update: bool,
    now_ms: i64,
) -> AlertEvent {
    let mut members = members.to_vec();
    members.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    let n = members.len();
    let mut names: Vec<&str> = members
        .iter()
        .take(NAMED)
        .map(|m| m.check_id.as_str())
        .collect();
    let more = n.saturating_sub(NAMED).to_string();
    let more = format!("+{more}");
    if n > NAMED {
        names.push(&more);
    }
    let plural = if n == 1 { "check" } else { "checks" };
    let mut summary = format!(
        "{n} {plural} failing ({}): {}",
        describe(values),
        names.join(", ")
    );
    if let [only] = members.as_slice() {
        summary.push_str(&format!(" — {}", only.code));
    }
    let since = format!(" · since {}", crate::format::timestamp(opened_ms));
    let mut summary = super::truncate(&summary, 1024 - since.len());
    summary.push_str(&since);
    let regions: BTreeSet<&String> = members.iter().flat_map(|m| m.regions.iter()).collect();
    let labels: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let listed: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            serde_json::json!({
                "check_id": m.check_id,
                "code": m.code,
                "regions": m.regions,
                "severity": m.severity,
                "summary": m.summary,
            })
        })
        .collect();
    AlertEvent {
        action: Action::Trigger,
        dedup_key: dedup_key.to_owned(),
        check_id: String::new(),
        probe: None,
        kind: AlertKind::CheckFailing.into(),
        summary,
        severity: members
            .iter()
            .map(|m| m.severity)
            .max()
            .unwrap_or(Severity::Error),
        regions: regions.into_iter().cloned().collect(),
        code: members.first().map(|m| m.code.clone()).unwrap_or_default(),
        details: serde_json::json!({
            "check_kind": "group",
            "group": { "route": route, "labels": labels },
            "count": n,
            "members": listed,
            "group_update": update,
        }),
        at_ms: now_ms,
    }
}

/// The resolve of a group.
pub fn resolve_event(
    route: &str,
    values: &[(String, String)],
    dedup_key: &str,
    why: &str,
    now_ms: i64,
) -> AlertEvent {
    AlertEvent {
        action: Action::Resolve,
        dedup_key: dedup_key.to_owned(),
        check_id: String::new(),
        probe: None,
        kind: AlertKind::CheckFailing.into(),
        summary: format!("group ({}) {why}", describe(values)),
        severity: Severity::Info,
        regions: Vec::new(),
        code: String::new(),
        details: serde_json::json!({ "group": { "route": route } }),
        at_ms: now_ms,
    }
}

/// A change made to a group by [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// A trigger (first or update) was queued for `sinks`.
    Triggered {
        /// Dedup key.
        dedup_key: String,
        /// Members named.
        members: usize,
        /// Sinks.
        sinks: Vec<String>,
    },
    /// The group resolved; `sinks` got a resolve (none when it was never sent).
    Resolved {
        /// Dedup key.
        dedup_key: String,
        /// Sinks.
        sinks: Vec<String>,
    },
}

/// Opens, notifies and resolves the groups of every grouped route at
/// `now_ms` (module note). Runs after a pass over every check, under the
/// evaluation lock.
pub async fn evaluate(ctl: &Controller, now_ms: i64) -> Result<Vec<GroupChange>, StoreError> {
    let _guard = ctl.eval_lock().lock().await;
    let cfg = ctl.config();
    let grouped = cfg.routes.iter().any(|r| r.group.is_some());
    let open_groups = ctl.store().open_groups().await?;
    if !grouped && open_groups.is_empty() {
        return Ok(Vec::new());
    }
    // (route, group key) → (values, members).
    type Members = (Vec<(String, String)>, Vec<Member>);
    let mut current: BTreeMap<(String, String), Members> = BTreeMap::new();
    if grouped {
        for alert in ctl.store().open_alerts().await? {
            if alert.kind != AlertKind::CheckFailing || !alert.suppressed_by.is_empty() {
                continue;
            }
            let Some(check) = cfg.check(&alert.check_id) else {
                continue;
            };
            for route in cfg.routes_for_check(check) {
                let Some(g) = &route.group else { continue };
                let values = g.values(check);
                let entry = current
                    .entry((route.name.clone(), group_key(&values)))
                    .or_insert_with(|| (values, Vec::new()));
                entry.1.push(Member::of(&alert));
            }
        }
    }
    let mut groups: BTreeMap<(String, String), GroupRow> = open_groups
        .into_iter()
        .map(|g| ((g.route.clone(), g.group_key.clone()), g))
        .collect();
    for (route, key) in current.keys() {
        if groups.contains_key(&(route.clone(), key.clone())) {
            continue;
        }
        let dedup = dedup_key(route, key);
        if let Some(row) = ctl.store().open_group(route, key, &dedup, now_ms).await? {
            tracing::info!(route = %route, group = %key, dedup_key = %dedup, "alert group opened; collecting members for group_wait");
            groups.insert((route.clone(), key.clone()), row);
        }
    }
    let mut out = Vec::new();
    for ((route_name, key), row) in groups {
        let values: Vec<(String, String)> =
            serde_json::from_str(&row.group_key).unwrap_or_default();
        let sent_sinks: Vec<String> = serde_json::from_str(&row.sinks_json).unwrap_or_default();
        let route = cfg.routes.iter().find(|r| r.name == route_name);
        let Some((route, grouping)) = route.and_then(|r| r.group.as_ref().map(|g| (r, g))) else {
            // The route is gone or no longer groups: end the incident now.
            let sinks = if row.notified_ms.is_some() {
                sent_sinks
            } else {
                Vec::new()
            };
            let event = resolve_event(
                &route_name,
                &values,
                &row.dedup_key,
                "ended: its route no longer groups",
                now_ms,
            );
            out.extend(close(ctl, &row, sinks, &event, now_ms).await?);
            continue;
        };
        let members = current
            .remove(&(route_name.clone(), key))
            .map(|(_, m)| m)
            .unwrap_or_default();
        let sent: BTreeMap<String, String> =
            serde_json::from_str(&row.sent_json).unwrap_or_default();
        match step(
            grouping,
            row.opened_at_ms,
            row.notified_ms,
            &sent,
            &members,
            now_ms,
        ) {
            Step::Hold => {}
            Step::Drop => {
                let event = resolve_event(
                    &route_name,
                    &values,
                    &row.dedup_key,
                    "recovered before group_wait",
                    now_ms,
                );
                out.extend(close(ctl, &row, Vec::new(), &event, now_ms).await?);
            }
            Step::Resolve => {
                let event =
                    resolve_event(&route_name, &values, &row.dedup_key, "recovered", now_ms);
                out.extend(close(ctl, &row, sent_sinks, &event, now_ms).await?);
            }
            Step::Trigger => {
                let sinks = if row.notified_ms.is_none() {
                    route.sinks.clone()
                } else {
                    sent_sinks
                };
                let event = trigger_event(
                    &route_name,
                    &values,
                    &row.dedup_key,
                    &members,
                    row.opened_at_ms,
                    row.notified_ms.is_some(),
                    now_ms,
                );
                let payload = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                let sent =
                    serde_json::to_string(&sent_of(&members)).unwrap_or_else(|_| "{}".into());
                if ctl
                    .store()
                    .notify_group(row.id, &sinks, &sent, &payload, now_ms)
                    .await?
                {
                    let action = if row.notified_ms.is_none() {
                        "fire"
                    } else {
                        "update"
                    };
                    tracing::warn!(route = %route_name, dedup_key = %row.dedup_key, members = members.len(), sinks = ?sinks, summary = %event.summary, "alert group notified");
                    ctl.metrics().inc(
                        "outpost_alert_groups_total",
                        &[("route", &route_name), ("action", action)],
                        1,
                    );
                    ctl.wake_delivery();
                    out.push(GroupChange::Triggered {
                        dedup_key: row.dedup_key.clone(),
                        members: members.len(),
                        sinks,
                    });
                }
            }
        }
    }
    Ok(out)
}

async fn close(
    ctl: &Controller,
    row: &GroupRow,
    sinks: Vec<String>,
    event: &AlertEvent,
    now_ms: i64,
) -> Result<Option<GroupChange>, StoreError> {
    let payload = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    if !ctl
        .store()
        .close_group(row.id, &sinks, &payload, now_ms)
        .await?
    {
        return Ok(None);
    }
    tracing::info!(route = %row.route, dedup_key = %row.dedup_key, sinks = ?sinks, summary = %event.summary, "alert group resolved");
    if !sinks.is_empty() {
        ctl.metrics().inc(
            "outpost_alert_groups_total",
            &[("route", &row.route), ("action", "resolve")],
            1,
        );
        ctl.wake_delivery();
    }
    Ok(Some(GroupChange::Resolved {
        dedup_key: row.dedup_key.clone(),
        sinks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn grouping() -> Grouping {
        Grouping {
            by: vec![GroupLabel::parse("team")],
            wait: Duration::from_secs(30),
            interval: Duration::from_secs(300),
        }
    }

    fn member(id: &str, code: &str) -> Member {
        Member {
            check_id: id.into(),
            code: code.into(),
            regions: vec!["eu-west".into()],
            severity: Severity::Error,
            summary: format!("{id} failing"),
        }
    }

    #[test]
    fn a_new_group_waits_group_wait_then_triggers_and_drops_if_emptied() {
        let g = grouping();
        let none = BTreeMap::new();
        let m = [member("a", "timeout")];
        assert_eq!(step(&g, 0, None, &none, &m, 29 * S), Step::Hold);
        assert_eq!(step(&g, 0, None, &none, &m, 30 * S), Step::Trigger);
        assert_eq!(step(&g, 0, None, &none, &[], 10 * S), Step::Drop);
        let zero = Grouping {
            wait: Duration::ZERO,
            ..grouping()
        };
        assert_eq!(step(&zero, 0, None, &none, &m, 0), Step::Trigger);
    }

    #[test]
    fn changes_go_out_once_per_group_interval_and_the_empty_group_resolves() {
        let g = grouping();
        let two = [member("a", "timeout"), member("b", "http_status")];
        let sent = sent_of(&two);
        // Nothing new: hold, however long.
        assert_eq!(
            step(&g, 0, Some(30 * S), &sent, &two, 10_000 * S),
            Step::Hold
        );
        // A member recovers: the update waits for group_interval.
        let one = [member("a", "timeout")];
        assert_eq!(step(&g, 0, Some(30 * S), &sent, &one, 329 * S), Step::Hold);
        assert_eq!(
            step(&g, 0, Some(30 * S), &sent, &one, 330 * S),
            Step::Trigger
        );
        // A member's code changes: news.
        let changed = [member("a", "timeout"), member("b", "timeout")];
        assert_eq!(
            step(&g, 0, Some(0), &sent, &changed, 300 * S),
            Step::Trigger
        );
        // All recovered: resolve at the interval.
        assert_eq!(step(&g, 0, Some(30 * S), &sent, &[], 100 * S), Step::Hold);
        assert_eq!(
            step(&g, 0, Some(30 * S), &sent, &[], 330 * S),
            Step::Resolve
        );
    }

    #[test]
    fn the_summary_names_three_members_and_counts_the_rest() {
        let members: Vec<Member> = ["e", "d", "c", "b", "a"]
            .iter()
            .map(|id| member(id, "timeout"))
            .collect();
        let values = vec![("team".to_owned(), "payments".to_owned())];
        let key = dedup_key("oncall", &group_key(&values));
        let e = trigger_event("oncall", &values, &key, &members, 0, false, 5);
        assert!(!is_update(&e));
        assert!(is_update(&trigger_event(
            "oncall", &values, &key, &members, 0, true, 5
        )));
        assert!(
            e.summary
                .starts_with("5 checks failing (team=payments): a, b, c, +2 · since "),
            "{}",
            e.summary
        );
        assert_eq!(e.details["count"], 5);
        assert_eq!(e.details["members"][0]["check_id"], "a");
        assert_eq!(e.details["members"][4]["code"], "timeout");
        assert_eq!(e.details["group"]["labels"]["team"], "payments");
        assert_eq!(e.regions, ["eu-west"]);
        assert_eq!(e.dedup_key, key);
        let one = trigger_event("oncall", &values, &key, &members[..1], 0, false, 5);
        assert!(
            one.summary
                .starts_with("1 check failing (team=payments): e — timeout"),
            "{}",
            one.summary
        );
    }

    #[test]
    fn dedup_keys_are_stable_and_differ_by_route_and_values() {
        let pay = group_key(&[("team".into(), "payments".into())]);
        let search = group_key(&[("team".into(), "search".into())]);
        assert_eq!(pay, "[[\"team\",\"payments\"]]");
        let k = dedup_key("oncall", &pay);
        assert_eq!(k, dedup_key("oncall", &pay));
        assert!(k.starts_with("outpost/group/oncall/"), "{k}");
        assert_eq!(k.len(), "outpost/group/oncall/".len() + 16);
        assert_ne!(k, dedup_key("oncall", &search));
        assert_ne!(k, dedup_key("chat", &pay));
    }

    #[test]
    fn grouping_settings_are_validated_with_their_paths() {
        let dur = |s: &str| {
            Some(Dur(
                outpost_probe::config::duration::parse_duration(s).unwrap()
            ))
        };
        let mut p = Problems::default();
        let g = validate(Some(&["team".into()]), None, None, "routes[0]", &mut p).unwrap();
        assert_eq!(
            (g.wait, g.interval),
            (DEFAULT_GROUP_WAIT, DEFAULT_GROUP_INTERVAL)
        );
        assert!(validate(None, None, None, "routes[0]", &mut p).is_none());
        assert!(p.finish("c.toml").is_ok());
        let mut p = Problems::default();
        validate(None, dur("10s"), None, "routes[0]", &mut p);
        validate(Some(&[]), None, None, "routes[1]", &mut p);
        validate(
            Some(&["team".into(), "team".into(), " ".into()]),
            dur("2h"),
            dur("500ms"),
            "routes[2]",
            &mut p,
        );
        let err = p.finish("c.toml").unwrap_err().to_string();
        for path in [
            "routes[0].group_wait",
            "routes[1].group_by",
            "routes[2].group_by[1]",
            "routes[2].group_by[2]",
            "routes[2].group_wait",
            "routes[2].group_interval",
        ] {
            assert!(err.contains(path), "{path} missing from {err}");
        }
    }
}
