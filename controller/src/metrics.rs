//! The controller's metrics registry, rendered in the Prometheus text
//! format (0.0.4) by `prometheus-client`.
//!
//! No global recorder: each [`Controller`](crate::Controller) owns its
//! registry, so several controllers can run in one test process. Families
//! are declared once in [`FAMILIES`]; series are keyed by their label set.
//! Labels are bounded by construction (check ids, regions and sink names
//! from config, failure codes, fixed outcome words) and each family is
//! capped at [`MAX_SERIES`] series as a last line of defence against a
//! label set that grows without bound (a probe inventing failure codes) and
//! against a fleet whose per-check series would outgrow memory: at 10,000
//! checks × 5 regions, `outpost_check_duration_seconds` alone would want
//! 300,000 histograms (each four owned label pairs and 16 buckets: hundreds
//! of MiB, and over 5 million Prometheus series per scrape), so the cap is
//! not sized from the config.
//! A label set the cap refuses is never silent: it counts in
//! `outpost_metrics_series_dropped_total{family}` and the first one of a
//! family is logged as a warning.
//!
//! Why `prometheus-client` and not `metrics` + `metrics-exporter-prometheus`
//! (measured on this machine, clean debug build of each alone): 10 s wall /
//! 6 CPU-s and 18 crates against 25 s / 21 CPU-s and 45 crates (quanta,
//! evmap, sketches-ddsketch, rand…); and the fit: `metrics` records through
//! a global (or thread-local) recorder and its exporter can neither remove
//! one series (series of a removed check must disappear) nor read a value
//! back, while `prometheus-client` has a per-instance [`Registry`] and a
//! [`Collector`] that encodes whatever we hold at scrape time. Values live
//! in one map here (so a family can be capped, cleared, read and pruned);
//! the crate owns the exposition format: names, escaping, histograms.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, histogram::Histogram},
    registry::Registry,
};

/// Series kept per family at most; further label sets are dropped and
/// counted in `outpost_metrics_series_dropped_total{family}`.
pub const MAX_SERIES: usize = 10_000;

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Buckets of the duration histograms, in seconds: from a loopback
/// round trip to a check's longest timeout.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counter, gauge or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Set to the current value.
    Gauge,
    /// Observations in [`DURATION_BUCKETS`].
    Histogram,
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
        "Probe streams refused for a missing or unknown token, or a refused client certificate.",
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
        "outpost_tls_handshake_failures_total",
        Kind::Counter,
        "TLS handshakes that failed (e.g. a probe certificate from another CA than server.probe_ca), by listener.",
    ),
    (
        "outpost_probe_certificates_refused_total",
        Kind::Counter,
        "Probe client certificates refused after the handshake, by reason (no_probe_name, unknown_serial, revoked, probe_removed).",
    ),
    (
        "outpost_probe_certificates_issued_total",
        Kind::Counter,
        "Probe client certificates issued, by how (enroll, renew).",
    ),
    (
        "outpost_enrollments_refused_total",
        Kind::Counter,
        "Enroll and Renew calls refused, by reason (unknown_token, used_token, expired_token, probe_removed, no_probe_ca, no_certificate).",
    ),
    (
        "outpost_evaluator_leader",
        Kind::Gauge,
        "1 on the replica that evaluates alerts (holds the evaluator lease), 0 elsewhere.",
    ),
    (
        "outpost_evaluator_epoch",
        Kind::Gauge,
        "The evaluator lease epoch this replica holds (0 when it holds none).",
    ),
    (
        "outpost_check_duration_seconds",
        Kind::Histogram,
        "Phase durations of stored results, by check, region, kind and phase (resolve, connect, tls, processing, transfer, total).",
    ),
    (
        "probe_success",
        Kind::Gauge,
        "Whether the newest result of a check in a region passed (blackbox_exporter), by check, region and kind.",
    ),
    (
        "probe_duration_seconds",
        Kind::Gauge,
        "How long the newest run of a check in a region took, by check, region and kind.",
    ),
    (
        "probe_dns_lookup_time_seconds",
        Kind::Gauge,
        "Name resolution time of the newest run (a dns check: the whole lookup), by check, region and kind.",
    ),
    (
        "probe_http_status_code",
        Kind::Gauge,
        "Status of the final response of the newest http run (0 when none arrived), by check, region and kind.",
    ),
    (
        "probe_http_redirects",
        Kind::Gauge,
        "Redirects the newest http run followed, by check, region and kind.",
    ),
    (
        "probe_http_version",
        Kind::Gauge,
        "HTTP version of the final response of the newest http run (1.1, 2), by check, region and kind.",
    ),
    (
        "probe_http_duration_seconds",
        Kind::Gauge,
        "Duration of each phase of the newest http run, by check, region, kind and phase (resolve, connect, tls, processing, transfer).",
    ),
    (
        "probe_ssl_earliest_cert_expiry",
        Kind::Gauge,
        "Earliest notAfter among the certificates the target presented in the newest run (Unix seconds), by check, region and kind.",
    ),
    (
        "probe_tls_version_info",
        Kind::Gauge,
        "1 for the TLS version negotiated in the newest run (version: TLS 1.2, TLS 1.3), by check, region and kind.",
    ),
    (
        "outpost_metrics_series_dropped_total",
        Kind::Counter,
        "Label sets not recorded because their family already held as many series as the cap allows, by family.",
    ),
    (
        "outpost_check_state",
        Kind::Gauge,
        "1 for the current state of each check and region (state: ok, failing, stale, unknown).",
    ),
];

type Labels = Vec<(String, String)>;

#[derive(Debug)]
enum Value {
    Scalar(f64),
    /// The histogram and its observation count (the crate does not read
    /// one back).
    Histogram(Histogram, u64),
}

#[derive(Debug)]
struct Family {
    kind: Kind,
    help: &'static str,
    series: BTreeMap<Labels, Value>,
}

type Families = BTreeMap<&'static str, Family>;

/// What the [`Registry`] encodes at each scrape: the families, as they
/// are, and the cap on each family's series.
#[derive(Debug)]
struct Shared {
    families: Mutex<Families>,
    /// Series per family at most: [`MAX_SERIES`]; lower in tests.
    limit: usize,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Families) -> R) -> R {
        let mut guard = self.families.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

/// The registry.
#[derive(Debug)]
pub struct Metrics {
    shared: Arc<Shared>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_limit(MAX_SERIES)
    }
}

impl Metrics {
    /// A registry whose families hold at most `limit` series each.
    fn with_limit(limit: usize) -> Self {
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
        let shared = Arc::new(Shared {
            families: Mutex::new(families),
            limit,
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(shared.clone()));
        Metrics { shared, registry }
    }
}

fn key(labels: &[(&str, &str)]) -> Labels {
    let mut k: Labels = labels
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    k.sort();
    k
}

/// A label set as the series map orders it: sorted (name, value) pairs,
/// owned ([`Labels`], the map's keys) or borrowed (a lookup's). Lets an
/// update find its series without copying every label into a new
/// [`Labels`] first: each result touches half a dozen series, and the
/// copies were two allocations a label.
trait LabelSet {
    fn len(&self) -> usize;
    fn pair(&self, i: usize) -> (&str, &str);
}

impl LabelSet for Labels {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn pair(&self, i: usize) -> (&str, &str) {
        let (a, b) = &self[i];
        (a, b)
    }
}

/// Sorted borrowed pairs ([`with_sorted`]).
struct Borrowed<'a>(&'a [(&'a str, &'a str)]);

impl LabelSet for Borrowed<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn pair(&self, i: usize) -> (&str, &str) {
        self.0[i]
    }
}

impl<'a> std::borrow::Borrow<dyn LabelSet + 'a> for Labels {
    fn borrow(&self) -> &(dyn LabelSet + 'a) {
        self
    }
}

// The order of `Labels` itself (a `Vec` of tuples: lexicographic, a
// prefix first), so a borrowed lookup finds what an owned one would.
impl Ord for dyn LabelSet + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (0..self.len().min(other.len()))
            .map(|i| self.pair(i).cmp(&other.pair(i)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.len().cmp(&other.len()))
    }
}

impl PartialOrd for dyn LabelSet + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn LabelSet + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for dyn LabelSet + '_ {}

/// Calls `f` with `labels` sorted: as given when they already are (no
/// copy: the hot callers list their labels by name), else a sorted copy.
fn with_sorted<R>(labels: &[(&str, &str)], f: impl FnOnce(Borrowed<'_>) -> R) -> R {
    if labels.is_sorted() {
        return f(Borrowed(labels));
    }
    let mut sorted = labels.to_vec();
    sorted.sort_unstable();
    f(Borrowed(&sorted))
}

/// Applies `f` to one series of `name` in `fams` (the lock held), creating
/// it unless the family is at its cap of `limit` series.
fn update_in(
    fams: &mut Families,
    limit: usize,
    name: &str,
    labels: &[(&str, &str)],
    f: impl FnOnce(&mut Value),
) {
    let Some(fam) = fams.get_mut(name) else {
        tracing::debug!(name, "metric family not declared in metrics::FAMILIES");
        return;
    };
    let series = &mut fam.series;
    if let Some(v) = with_sorted(labels, move |k| series.get_mut(&k as &dyn LabelSet)) {
        f(v);
        return;
    }
    if fam.series.len() >= limit {
        let held = fam.series.len();
        // One series per declared family: never capped itself.
        let dropped = fams
            .get_mut("outpost_metrics_series_dropped_total")
            .expect("declared in FAMILIES")
            .series
            .entry(key(&[("family", name)]))
            .or_insert_with(|| {
                tracing::warn!(
                    family = name,
                    series = held,
                    "metric family at its series cap; further label sets are counted in outpost_metrics_series_dropped_total, not recorded"
                );
                Value::Scalar(0.0)
            });
        if let Value::Scalar(v) = dropped {
            *v += 1.0;
        }
        return;
    }
    let kind = fam.kind;
    f(fam.series.entry(key(labels)).or_insert_with(|| match kind {
        Kind::Histogram => Value::Histogram(Histogram::new(DURATION_BUCKETS.iter().copied()), 0),
        Kind::Counter | Kind::Gauge => Value::Scalar(0.0),
    }));
}

impl Metrics {
    fn update(&self, name: &str, labels: &[(&str, &str)], f: impl FnOnce(&mut Value)) {
        let limit = self.shared.limit;
        self.shared
            .with(|fams| update_in(fams, limit, name, labels, f));
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &str, labels: &[(&str, &str)], by: u64) {
        self.update(name, labels, |v| {
            if let Value::Scalar(v) = v {
                *v += by as f64;
            }
        });
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.update(name, labels, |v| {
            if let Value::Scalar(v) = v {
                *v = value;
            }
        });
    }

    /// Adds one observation to a histogram.
    pub fn observe(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.observe_each(name, [(labels, value)]);
    }

    /// Adds each `(labels, value)` observation to histogram `name` under
    /// one lock: the ingest records a batch's phases in one call, not one
    /// lock per phase per result.
    pub fn observe_each<'a, L: AsRef<[(&'a str, &'a str)]>>(
        &self,
        name: &str,
        observations: impl IntoIterator<Item = (L, f64)>,
    ) {
        let limit = self.shared.limit;
        self.shared.with(|fams| {
            for (labels, value) in observations {
                update_in(fams, limit, name, labels.as_ref(), |v| {
                    if let Value::Histogram(h, n) = v {
                        h.observe(value);
                        *n += 1;
                    }
                });
            }
        });
    }

    /// Removes every series of a family (before re-setting computed gauges).
    pub fn clear(&self, name: &str) {
        self.retain(name, |_| false);
    }

    /// Keeps only the series of a family whose labels `keep` accepts (the
    /// series of checks no longer configured disappear).
    pub fn retain(&self, name: &str, mut keep: impl FnMut(&[(String, String)]) -> bool) {
        self.shared.with(|fams| {
            if let Some(f) = fams.get_mut(name) {
                f.series.retain(|labels, _| keep(labels));
            }
        });
    }

    /// Current value of one counter or gauge series (0 if absent); a
    /// histogram's observation count.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.shared.with(|fams| {
            fams.get(name)
                .and_then(|f| {
                    with_sorted(labels, |k| {
                        f.series.get(&k as &dyn LabelSet).map(Value::scalar)
                    })
                })
                .unwrap_or(0.0)
        })
    }

    /// Sum over every series of a family.
    pub fn sum(&self, name: &str) -> f64 {
        self.shared.with(|fams| {
            fams.get(name)
                .map(|f| f.series.values().map(Value::scalar).sum())
                .unwrap_or(0.0)
        })
    }

    /// Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            // Writing to a String cannot fail; a collector error would be ours.
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

impl Value {
    fn scalar(&self) -> f64 {
        match self {
            Value::Scalar(v) => *v,
            Value::Histogram(_, n) => *n as f64,
        }
    }
}

impl Collector for Shared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.with(|fams| {
            for (name, fam) in fams.iter() {
                let (base, ty) = match fam.kind {
                    // The encoder appends `_total` to a counter's name.
                    Kind::Counter => (
                        name.strip_suffix("_total").unwrap_or(name),
                        MetricType::Counter,
                    ),
                    Kind::Gauge => (*name, MetricType::Gauge),
                    Kind::Histogram => (*name, MetricType::Histogram),
                };
                let mut family = encoder.encode_descriptor(base, fam.help, None, ty)?;
                if fam.series.is_empty()
                    && fam.kind == Kind::Counter
                    && !FAMILIES_WITH_LABELS.contains(name)
                {
                    ConstCounter::new(0_u64).encode(family.encode_family(&Labels::new())?)?;
                }
                for (labels, value) in &fam.series {
                    let metric = family.encode_family(labels)?;
                    match (fam.kind, value) {
                        (_, Value::Histogram(h, _)) => h.encode(metric)?,
                        (Kind::Counter, Value::Scalar(v)) => {
                            ConstCounter::new(*v as u64).encode(metric)?
                        }
                        (_, Value::Scalar(v)) if v.fract() == 0.0 && v.abs() < 1e15 => {
                            ConstGauge::new(*v as i64).encode(metric)?
                        }
                        (_, Value::Scalar(v)) => ConstGauge::new(*v).encode(metric)?,
                    }
                }
            }
            Ok(())
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
    "outpost_metrics_series_dropped_total",
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
    fn label_sets_past_the_cap_are_counted_and_held_series_still_move() {
        let m = Metrics::default();
        assert_eq!(m.shared.limit, MAX_SERIES);
        let m = Metrics::with_limit(40);
        for code in 0..65 {
            m.inc(
                "outpost_check_failures_total",
                &[
                    ("check", "a"),
                    ("region", "r"),
                    ("code", &format!("c{code}")),
                ],
                1,
            );
        }
        for phase in 0..45 {
            m.observe(
                "outpost_check_duration_seconds",
                &[("check", "a"), ("phase", &format!("p{phase}"))],
                0.01,
            );
        }
        let held = |f: &str| m.shared.with(|fams| fams[f].series.len());
        assert_eq!(held("outpost_check_failures_total"), 40);
        assert_eq!(held("outpost_check_duration_seconds"), 40);
        let dropped = |f: &str| m.get("outpost_metrics_series_dropped_total", &[("family", f)]);
        assert_eq!(dropped("outpost_check_failures_total"), 25.0);
        assert_eq!(dropped("outpost_check_duration_seconds"), 5.0);
        // A series already held still moves at the cap.
        m.inc(
            "outpost_check_failures_total",
            &[("check", "a"), ("region", "r"), ("code", "c0")],
            1,
        );
        assert_eq!(
            m.get(
                "outpost_check_failures_total",
                &[("check", "a"), ("region", "r"), ("code", "c0")]
            ),
            2.0
        );
        let text = m.render();
        assert!(
            text.contains(
                "outpost_metrics_series_dropped_total{family=\"outpost_check_failures_total\"} 25\n"
            ),
            "{text}"
        );
        // Nothing refused: the family is exported, empty (no zero line).
        let quiet = Metrics::default().render();
        assert!(
            quiet.contains("# TYPE outpost_metrics_series_dropped_total counter"),
            "{quiet}"
        );
        assert!(
            !quiet.contains("outpost_metrics_series_dropped_total{"),
            "{quiet}"
        );
    }

    /// The borrowed lookup ([`LabelSet`]) orders as the owned keys do:
    /// labels in any order find one series, and a label set that is a
    /// prefix of another is a series of its own.
    #[test]
    fn one_label_set_in_any_order_is_one_series() {
        let m = Metrics::default();
        let f = "outpost_check_failures_total";
        m.inc(f, &[("check", "a"), ("code", "x"), ("region", "r")], 1);
        m.inc(f, &[("region", "r"), ("check", "a"), ("code", "x")], 2);
        m.inc(f, &[("check", "a"), ("code", "x")], 4);
        m.inc(f, &[("check", "a"), ("code", "x"), ("region", "r2")], 8);
        m.inc(f, &[("check", "a"), ("code", "xx"), ("region", "r")], 16);
        assert_eq!(m.shared.with(|fams| fams[f].series.len()), 4);
        assert_eq!(
            m.get(f, &[("code", "x"), ("region", "r"), ("check", "a")]),
            3.0
        );
        assert_eq!(m.get(f, &[("check", "a"), ("code", "x")]), 4.0);
        assert_eq!(
            m.get(f, &[("check", "a"), ("code", "x"), ("region", "r2")]),
            8.0
        );
        assert_eq!(
            m.get(f, &[("check", "a"), ("code", "xx"), ("region", "r")]),
            16.0
        );
        assert_eq!(m.get(f, &[("check", "a")]), 0.0);
        assert_eq!(m.sum(f), 31.0);
    }

    #[test]
    fn undeclared_families_are_ignored() {
        let m = Metrics::default();
        m.inc("nope_total", &[], 1);
        assert!(!m.render().contains("nope_total"));
    }
}
