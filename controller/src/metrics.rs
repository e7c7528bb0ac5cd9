//! A tiny in-house metrics registry rendered in the Prometheus text format.
//!
//! No global recorder: each [`Controller`](crate::Controller) owns its
//! registry, so several controllers can run in one test process. Labels are
//! bounded by construction (check ids, regions and sink names from config,
//! failure codes, fixed outcome words) and each family is capped at
//! [`MAX_SERIES`] series as a last line of defence.

use std::{collections::BTreeMap, fmt::Write, sync::Mutex};

/// Series kept per family at most; further label sets are dropped.
pub const MAX_SERIES: usize = 10_000;

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Set to the current value.
    Gauge,
}

/// Every family the controller exports: name, kind, help.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "outpost_results_ingested_total",
        Kind::Counter,
        "Results stored, by region.",
    ),
    (
        "outpost_result_duplicates_total",
        Kind::Counter,
        "Results received again and ignored, by region.",
    ),
    (
        "outpost_results_rejected_total",
        Kind::Counter,
        "Results skipped as invalid, by reason.",
    ),
    (
        "outpost_check_failures_total",
        Kind::Counter,
        "Failed results stored, by check, region and failure code.",
    ),
    (
        "outpost_batches_total",
        Kind::Counter,
        "Result batches committed and acknowledged, by region.",
    ),
    (
        "outpost_probe_limit_violations_total",
        Kind::Counter,
        "Probe messages refused for exceeding a [server.probe_limits] bound, by reason (batch_results, rate, labels, hello, failure_message, result_field, message_size); nothing of them is stored.",
    ),
    (
        "outpost_probe_streams_replaced_total",
        Kind::Counter,
        "Probe streams closed because a newer stream for the same probe arrived.",
    ),
    (
        "outpost_auth_failures_total",
        Kind::Counter,
        "Probe streams refused for a missing or unknown token.",
    ),
    (
        "outpost_probes_connected",
        Kind::Gauge,
        "Probe streams currently open.",
    ),
    ("outpost_alerts_open", Kind::Gauge, "Alerts currently open."),
    (
        "outpost_alerts_total",
        Kind::Counter,
        "Alert transitions, by kind and action (fire, resolve).",
    ),
    (
        "outpost_confirm_run_now_total",
        Kind::Counter,
        "RunNow hints sent to confirm an unconfirmed failure faster, by check.",
    ),
    (
        "outpost_alerting_last_pass_timestamp_seconds",
        Kind::Gauge,
        "When the evaluator last completed a pass over every check and probe (Unix seconds, by the controller's clock).",
    ),
    (
        "outpost_notifications_total",
        Kind::Counter,
        "Notification attempts, by sink and outcome (sent; retried: 429, 5xx, timeout or connection error; rejected: other 4xx, not retried; failed: given up after give_up_after; rate_limited: postponed without an attempt).",
    ),
    (
        "outpost_probe_queued_results",
        Kind::Gauge,
        "Results waiting in a probe's outbox for an ack, as of its last heartbeat, by probe.",
    ),
    (
        "outpost_probe_outbox_dropped_total",
        Kind::Counter,
        "Results a probe dropped from its outbox since it started (it resets when the probe restarts), as of its last heartbeat, by probe and reason.",
    ),
    (
        "outpost_probe_offline",
        Kind::Gauge,
        "1 when a probe is offline (silent longer than alerting.offline_after, or never seen), by probe.",
    ),
    (
        "outpost_notifications_pending",
        Kind::Gauge,
        "Notifications waiting for delivery.",
    ),
    (
        "outpost_heartbeat_pings_total",
        Kind::Counter,
        "Heartbeat pings received, by check and signal (start, success, fail).",
    ),
    (
        "outpost_heartbeat_rejected_total",
        Kind::Counter,
        "Heartbeat pings refused, by reason (unknown_id, rate_limited).",
    ),
    (
        "outpost_connections_open",
        Kind::Gauge,
        "Connections open on a listener (listener: http, grpc), TLS handshakes included.",
    ),
    (
        "outpost_connections_rejected_total",
        Kind::Counter,
        "Connections closed at once because the listener's cap was reached and every connection had a request in flight, by listener.",
    ),
    (
        "outpost_connections_closed_total",
        Kind::Counter,
        "Connections the controller closed, by listener and reason (shed: the oldest idle one at the cap; handshake_timeout; first_request_timeout; idle_timeout; fd_shortage: shed because accept ran out of descriptors).",
    ),
    (
        "outpost_accept_errors_total",
        Kind::Counter,
        "Errors accepting connections (e.g. out of file descriptors), by listener.",
    ),
    (
        "outpost_check_state",
        Kind::Gauge,
        "1 for the current state of each check and region (state: ok, failing, stale, unknown).",
    ),
];

#[derive(Debug)]
struct Family {
    kind: Kind,
    help: &'static str,
    series: BTreeMap<Vec<(String, String)>, f64>,
}

/// The registry.
#[derive(Debug)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let families = FAMILIES
            .iter()
            .map(|(name, kind, help)| {
                (
                    *name,
                    Family {
                        kind: *kind,
                        help,
                        series: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Metrics {
            families: Mutex::new(families),
        }
    }
}

fn key(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = labels
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    k.sort();
    k
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, Family>) -> R) -> R {
        let mut guard = self.families.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    fn update(&self, name: &str, labels: &[(&str, &str)], f: impl FnOnce(&mut f64)) {
        self.with(|fams| {
            let Some(fam) = fams.get_mut(name) else {
                tracing::debug!(name, "metric family not declared in metrics::FAMILIES");
                return;
            };
            let k = key(labels);
            if !fam.series.contains_key(&k) && fam.series.len() >= MAX_SERIES {
                return;
            }
            f(fam.series.entry(k).or_insert(0.0));
        });
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &str, labels: &[(&str, &str)], by: u64) {
        self.update(name, labels, |v| *v += by as f64);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.update(name, labels, |v| *v = value);
    }

    /// Removes every series of a family (before re-setting computed gauges).
    pub fn clear(&self, name: &str) {
        self.with(|fams| {
            if let Some(f) = fams.get_mut(name) {
                f.series.clear();
            }
        });
    }

    /// Current value of one series (0 if absent).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.with(|fams| {
            fams.get(name)
                .and_then(|f| f.series.get(&key(labels)).copied())
                .unwrap_or(0.0)
        })
    }

    /// Sum over every series of a family.
    pub fn sum(&self, name: &str) -> f64 {
        self.with(|fams| {
            fams.get(name)
                .map(|f| f.series.values().sum())
                .unwrap_or(0.0)
        })
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        self.with(|fams| {
            let mut out = String::new();
            for (name, fam) in fams.iter() {
                let kind = match fam.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(out, "# HELP {name} {}", fam.help);
                let _ = writeln!(out, "# TYPE {name} {kind}");
                if fam.series.is_empty()
                    && fam.kind == Kind::Counter
                    && !FAMILIES_WITH_LABELS.contains(name)
                {
                    let _ = writeln!(out, "{name} 0");
                }
                for (labels, value) in &fam.series {
                    let _ = writeln!(
                        out,
                        "{name}{} {}",
                        render_labels(labels),
                        render_value(*value)
                    );
                }
            }
            out
        })
    }
}

/// Families whose series always carry labels (no unlabelled zero line).
const FAMILIES_WITH_LABELS: &[&str] = &[
    "outpost_results_ingested_total",
    "outpost_result_duplicates_total",
    "outpost_results_rejected_total",
    "outpost_probe_limit_violations_total",
    "outpost_check_failures_total",
    "outpost_batches_total",
    "outpost_alerts_total",
    "outpost_confirm_run_now_total",
    "outpost_notifications_total",
    "outpost_probe_queued_results",
    "outpost_probe_outbox_dropped_total",
    "outpost_probe_offline",
    "outpost_connections_rejected_total",
    "outpost_connections_closed_total",
    "outpost_accept_errors_total",
];

fn render_labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges_with_escaped_labels() {
        let m = Metrics::default();
        m.inc(
            "outpost_results_ingested_total",
            &[("region", "eu-west")],
            3,
        );
        m.inc(
            "outpost_results_ingested_total",
            &[("region", "eu-west")],
            2,
        );
        m.set("outpost_probes_connected", &[], 2.0);
        m.inc(
            "outpost_check_failures_total",
            &[("check", "a\"b"), ("region", "r"), ("code", "timeout")],
            1,
        );
        let text = m.render();
        assert!(
            text.contains("outpost_results_ingested_total{region=\"eu-west\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE outpost_probes_connected gauge\noutpost_probes_connected 2\n"),
            "{text}"
        );
        assert!(text.contains("check=\"a\\\"b\""), "{text}");
        assert!(text.contains("outpost_auth_failures_total 0\n"), "{text}");
        assert_eq!(
            m.get("outpost_results_ingested_total", &[("region", "eu-west")]),
            5.0
        );
    }

    #[test]
    fn undeclared_families_are_ignored() {
        let m = Metrics::default();
        m.inc("nope_total", &[], 1);
        assert!(!m.render().contains("nope_total"));
    }
}
