//! `[[routes]]`: which alerts and events notify which sinks.
//!
//! A check alert (`check_failing`) goes to the routes its `alert.routes`
//! names, or, without that, to every route whose matchers all match it:
//! `checks` (id globs), `labels` (every listed label present on the check,
//! its value matching the glob) and `severity` (the check's
//! `alert.severity` listed). Omitted matchers match everything. Fleet-level alerts (`probe_offline`, `certificate_expiring`) and
//! events (`dns_change`) go to every route whose `kinds` include them;
//! `kinds` defaults to the alert kinds, so events are carried only by
//! routes that list them.
//!
//! `notifier_failing` (a sink that cannot deliver: [`super::notifier`]) goes
//! to the routes marked `fallback = true`; when none is marked, to every
//! route carrying `notifier_failing` (by default every route). Either way
//! never to the failing sink itself.
//!
//! A route with `group_by` notifies its sinks per group of check alerts
//! instead of per alert ([`super::group`]).

use std::collections::{BTreeMap, HashSet};

use outpost_probe::config::{Dur, Problems};
use serde::Deserialize;

use super::{AlertKind, Kind, Severity, group::Grouping, sink::SinkDef};
use crate::config::push_if_bad_id;

/// `[[routes]]`: which checks notify which sinks.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique route name; a check's `alert.routes` may name it. Example `"oncall"`.
    pub name: String,
    /// Names of `[[sinks]]` this route notifies. At least one.
    pub sinks: Vec<String>,
    /// Check ids or globs with `*` (`"api-*"`). Default `["*"]`. Used for checks
    /// without `alert.routes`; a check with `alert.routes` uses exactly those.
    /// Filters `check_failing` alerts only.
    #[serde(default)]
    pub checks: Option<Vec<String>>,
    /// Alert kinds this route carries: `"check_failing"` (a check failing from
    /// `min_regions` regions), `"probe_offline"` (a probe silent for
    /// `alerting.offline_after`, one alert per probe) and/or
    /// `"certificate_expiring"` (a served certificate within
    /// `alerting.certificates.thresholds` of expiry, one alert per
    /// certificate whichever checks see it). Default: all three. Also
    /// `"dns_change"`, only when listed: an info notification per DNS answer
    /// change (webhook `event: "info"`, a console line, a PagerDuty change
    /// event — never an incident).
    /// Example: `kinds = ["probe_offline"]` for a fleet-operations route.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// This route carries `notifier_failing` alerts (a sink rejecting
    /// notifications or failing longer than `alerting.notifier_failing_after`),
    /// whatever its `kinds`. Without any fallback route they go to every
    /// route carrying `notifier_failing` (by default every route); never to
    /// the failing sink itself. Default false.
    #[serde(default)]
    pub fallback: Option<bool>,
    /// Check labels that must all match, values as globs with `*`:
    /// `labels = { team = "payments", tier = "*" }` carries checks labelled
    /// `team = "payments"` that have any `tier`. A check without one of the
    /// labels does not match. Default: no label condition. Filters
    /// `check_failing` alerts only (like `checks`).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Check severities carried: `severity = ["critical"]` for a paging
    /// route, `["warning", "info"]` for a chat route. Words: `critical`,
    /// `error`, `warning`, `info`. Default: every severity. Filters
    /// `check_failing` alerts only (like `checks`).
    #[serde(default)]
    pub severity: Option<Vec<String>>,
    /// Group this route's check alerts into one notification per sink, as
    /// Alertmanager does: alerts with equal values of these labels form a
    /// group (one PagerDuty incident, one Slack message, one Opsgenie
    /// alias, one mail) naming every member. Names are check labels, or
    /// `"check"` (the check id), `"severity"` (`alert.severity`) and
    /// `"kind"` (`http`, `tls`, `dns`, …), which take precedence over labels
    /// of the same name; a check without a label groups under its empty
    /// value. Regions are not a key: one alert spans its regions. Silenced
    /// and suppressed (`depends_on`) alerts are not members. Default: no
    /// grouping, a notification per alert. Filters nothing: `checks`,
    /// `labels` and `severity` still pick the alerts. Example:
    /// `group_by = ["team"]`.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// With `group_by`: how long a new group collects members before its
    /// first notification. Default `"30s"`, at most `"1h"`; `"0s"` sends at
    /// the first evaluation.
    #[serde(default)]
    pub group_wait: Option<Dur>,
    /// With `group_by`: least time between two notifications of a group.
    /// Members joining or recovering (or changing failure code) later are
    /// sent as one update (same dedup key) per interval; the group
    /// resolves, at the next interval, when every member has resolved.
    /// Default `"5m"`, between `"1s"` and `"24h"`.
    #[serde(default)]
    pub group_interval: Option<Dur>,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct RouteDef {
    /// Name.
    pub name: String,
    /// Sink names.
    pub sinks: Vec<String>,
    /// Check id globs.
    pub checks: Vec<String>,
    /// Alert and event kinds carried.
    pub kinds: Vec<Kind>,
    /// Carries `notifier_failing` (the fallback route).
    pub fallback: bool,
    /// Label name → value glob; all must match.
    pub labels: BTreeMap<String, String>,
    /// Severities carried (empty: every severity).
    pub severity: Vec<Severity>,
    /// Grouping of its check alerts (`group_by`); `None`: one notification
    /// per alert.
    pub group: Option<Grouping>,
}

impl RouteDef {
    /// True when this route carries alerts or events of `kind`.
    pub fn carries(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// True when a `check_failing` alert of check `id`, with `labels` and
    /// `severity`, matches this route's `checks`, `labels` and `severity`.
    pub fn matches_check(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        severity: Severity,
    ) -> bool {
        self.checks.iter().any(|g| glob_match(g, id))
            && self
                .labels
                .iter()
                .all(|(k, g)| labels.get(k).is_some_and(|v| glob_match(g, v)))
            && (self.severity.is_empty() || self.severity.contains(&severity))
    }
}

/// Sink names of `routes`, deduplicated, in route order.
pub fn sinks_of(routes: &[&RouteDef]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in routes.iter().flat_map(|r| r.sinks.iter()) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Matches `text` against a pattern where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn names(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validates `[[routes]]` against the sinks as written (`declared`) and
/// validated (`sinks`, named in errors), and the configured check ids.
pub fn validate(
    raw: &[RawRoute],
    declared: &[&str],
    sinks: &[SinkDef],
    check_ids: &HashSet<&str>,
    p: &mut Problems,
) -> Vec<RouteDef> {
    let alert_kinds: Vec<Kind> = AlertKind::ALL.map(Kind::Alert).to_vec();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, raw) in raw.iter().enumerate() {
        let path = format!("routes[{i}]");
        push_if_bad_id(p, format!("{path}.name"), "route name", &raw.name);
        if !seen.insert(raw.name.as_str()) {
            p.push(
                format!("{path}.name"),
                format!("duplicate route name {:?}", raw.name),
            );
        }
        if raw.sinks.is_empty() {
            p.push(
                format!("{path}.sinks"),
                "a route needs at least one sink, e.g. sinks = [\"pagerduty\"]",
            );
        }
        for (j, s) in raw.sinks.iter().enumerate() {
            if !declared.contains(&s.as_str()) {
                let known: Vec<&str> = sinks.iter().map(|d| d.name.as_str()).collect();
                p.push(
                    format!("{path}.sinks[{j}]"),
                    format!("unknown sink {s:?}; known sinks: {}", known.join(", ")),
                );
            }
        }
        let checks = raw.checks.clone().unwrap_or_else(|| vec!["*".to_owned()]);
        for (j, g) in checks.iter().enumerate() {
            if !g.contains('*') && !check_ids.contains(g.as_str()) {
                p.push(
                    format!("{path}.checks[{j}]"),
                    format!("unknown check id {g:?}: name a [[checks]] id or use a glob such as \"api-*\""),
                );
            }
        }
        let kinds = match &raw.kinds {
            None => alert_kinds.clone(),
            Some(listed) => {
                if listed.is_empty() {
                    p.push(
                        format!("{path}.kinds"),
                        format!(
                            "kinds is empty: list at least one of {}, or remove it to carry every kind",
                            names(&alert_kinds)
                        ),
                    );
                }
                let mut kinds = Vec::new();
                for (j, k) in listed.iter().enumerate() {
                    match Kind::parse(k) {
                        Some(kind) => kinds.push(kind),
                        None => p.push(
                            format!("{path}.kinds[{j}]"),
                            format!("unknown alert kind {k:?}; kinds: {}", names(&Kind::ALL)),
                        ),
                    }
                }
                kinds
            }
        };
        let labels = raw.labels.clone().unwrap_or_default();
        for k in labels.keys() {
            if k.is_empty() {
                p.push(
                    format!("{path}.labels"),
                    "label names cannot be empty, e.g. labels = { team = \"payments\" }",
                );
            }
        }
        let mut severity = Vec::new();
        for (j, word) in raw.severity.iter().flatten().enumerate() {
            match word.parse::<Severity>() {
                Ok(s) => severity.push(s),
                Err(_) => p.push(
                    format!("{path}.severity[{j}]"),
                    format!(
                        "unknown severity {word:?}; severities: {}",
                        Severity::list()
                    ),
                ),
            }
        }
        if raw.severity.as_ref().is_some_and(|s| s.is_empty()) {
            p.push(
                format!("{path}.severity"),
                format!(
                    "severity is empty: list at least one of {}, or remove it to carry every severity",
                    Severity::list()
                ),
            );
        }
        let group = super::group::validate(
            raw.group_by.as_deref(),
            raw.group_wait,
            raw.group_interval,
            &path,
            p,
        );
        out.push(RouteDef {
            name: raw.name.clone(),
            sinks: raw.sinks.clone(),
            checks,
            kinds,
            fallback: raw.fallback.unwrap_or(false),
            labels,
            severity,
            group,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn raw(name: &str, kinds: Option<&[&str]>) -> RawRoute {
        RawRoute {
            name: name.into(),
            sinks: vec!["log".into()],
            checks: None,
            kinds: kinds.map(|k| k.iter().map(|s| (*s).to_owned()).collect()),
            fallback: None,
            labels: None,
            severity: None,
            group_by: None,
            group_wait: None,
            group_interval: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_and_severity_matchers_must_all_match() {
        let mut payments = raw("payments", None);
        payments.labels = Some(labels(&[("team", "pay*"), ("tier", "*")]));
        payments.severity = Some(vec!["critical".into(), "error".into()]);
        let mut p = Problems::default();
        let routes = validate(
            &[payments, raw("all", None)],
            &["log"],
            &[],
            &HashSet::new(),
            &mut p,
        );
        assert!(p.finish("c.toml").is_ok());
        let (pay, all) = (&routes[0], &routes[1]);
        let team = labels(&[("team", "payments"), ("tier", "1")]);
        assert!(pay.matches_check("api", &team, Severity::Critical));
        assert!(pay.matches_check("api", &team, Severity::Error));
        assert!(!pay.matches_check("api", &team, Severity::Warning));
        let no_tier = labels(&[("team", "payments")]);
        assert!(!pay.matches_check("api", &no_tier, Severity::Critical));
        let other = labels(&[("team", "search"), ("tier", "1")]);
        assert!(!pay.matches_check("api", &other, Severity::Critical));
        assert!(all.matches_check("api", &BTreeMap::new(), Severity::Info));
    }

    #[test]
    fn bad_severities_are_named_with_their_path() {
        let mut r = raw("r", None);
        r.severity = Some(vec!["critical".into(), "urgent".into()]);
        let mut empty = raw("e", None);
        empty.severity = Some(vec![]);
        let mut p = Problems::default();
        validate(&[r, empty], &["log"], &[], &HashSet::new(), &mut p);
        let err = p.finish("c.toml").unwrap_err().to_string();
        assert!(err.contains("routes[0].severity[1]"), "{err}");
        assert!(err.contains("routes[1].severity"), "{err}");
    }

    #[test]
    fn kinds_default_to_the_alert_kinds_and_events_need_naming() {
        let mut p = Problems::default();
        let routes = validate(
            &[
                raw("all", None),
                raw("changes", Some(&["dns_change", "probe_offline"])),
            ],
            &["log"],
            &[],
            &HashSet::new(),
            &mut p,
        );
        assert!(p.finish("c.toml").is_ok());
        let dns = Kind::Event(EventKind::DnsChange);
        assert!(
            AlertKind::ALL
                .iter()
                .all(|k| routes[0].carries((*k).into()))
        );
        assert!(!routes[0].carries(dns));
        assert!(routes[1].carries(dns));
        assert!(!routes[1].carries(AlertKind::CheckFailing.into()));
        let refs: Vec<&RouteDef> = routes.iter().collect();
        assert_eq!(sinks_of(&refs), vec!["log"]);
    }
}
