//! Certificate expiring: one fleet-level alert per certificate of the
//! inventory ([`crate::certificate`]) that is within
//! `[alerting.certificates].thresholds` of its expiry.
//!
//! Design note.
//! - **One alert per certificate**, dedup key
//!   `outpost/certificate/<sha256>/certificate_expiring`, however many checks,
//!   addresses and probes see it (a wildcard certificate on 40 hosts pages
//!   once). Routed to every route whose `kinds` include
//!   `certificate_expiring`.
//! - **Which certificates.** Served ones (a server presented them, not a
//!   trust store's root) that some check saw within `resolve_after` and that
//!   were not replaced. A certificate is *replaced* when another one with the
//!   same subject and SANs that expires later was seen, after it, by every
//!   check that saw it (a renewal rolled out everywhere).
//! - **Severity** is that of the shortest threshold the remaining validity is
//!   within ([`CertificatePolicy::severity_for`]); expired certificates take
//!   the most severe. When it crosses a shorter threshold the alert is
//!   *escalated*: its row takes the new severity and a new trigger with the
//!   same dedup key is queued for every routed sink. PagerDuty applies a
//!   trigger for an open incident's dedup key to that incident (one incident,
//!   its severity raised; the escalation shows in its log); webhooks get a
//!   second `trigger` with the higher `severity`. Severity never goes down
//!   while the alert is open.
//! - **Resolve** when the certificate is replaced, no check has seen it for
//!   `resolve_after` (default 2 days: the target changed or the check went
//!   away), or thresholds no longer cover it (config changed).
//! - **When.** Every [`TICK`] and after each batch that carried
//!   certificates; `now` is a parameter ([`evaluate`]) so tests inject it.
//!   State is the alert row, as for every kind: a restart neither re-pages
//!   nor forgets.
//! - **The controller's own certificates** join the inventory on every
//!   pass ([`refresh_own`]): the gRPC listener's (`server.tls`, check
//!   `controller:grpc`) and the HTTPS listener's (`controller:https`), and
//!   each configured probe's newest unrevoked client certificate (check
//!   `probe-identity`, the probe and its region). They are "seen" as long
//!   as they are in use, so one that is not renewed pages before it
//!   expires; a renewal has the same subject and SANs and a later expiry,
//!   so it replaces the old one.

use std::{collections::BTreeMap, time::Duration};

use super::{Action, AlertEvent, AlertKind, Severity, Transition};
use crate::{
    Controller,
    certificate::{DAY_MS, days_left, rfc3339},
    config::{ControllerConfig, certificate::CertificatePolicy},
    store::{AlertRow, CertificateRow, NewAlert, SightingRow, StoreError},
};

/// How often the inventory is re-evaluated without new results.
pub const TICK: Duration = Duration::from_secs(60);

/// The deterministic dedup key of a certificate's alert.
pub fn dedup_key(fingerprint: &str) -> String {
    format!(
        "outpost/certificate/{fingerprint}/{}",
        AlertKind::CertificateExpiring
    )
}

/// Why a certificate does (or does not) have an alert at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Served, recently seen, not replaced: this severity (`None`: no
    /// threshold applies yet).
    Current(Option<Severity>),
    /// A later certificate with the same subject and SANs took its place in
    /// every check that saw it.
    Replaced(String),
    /// No check saw it within `resolve_after`.
    NotSeen,
    /// Only ever seen as a trust store's root.
    NotServed,
}

/// One certificate's standing with the sightings that count.
#[derive(Debug, Clone)]
pub struct Assessment<'a> {
    /// The certificate.
    pub cert: &'a CertificateRow,
    /// Served sightings within `resolve_after`.
    pub seen_by: Vec<&'a SightingRow>,
    /// Standing.
    pub standing: Standing,
}

/// Pure: the standing of every certificate at `now`.
pub fn assess<'a>(
    certs: &'a [CertificateRow],
    sightings: &'a [SightingRow],
    policy: &CertificatePolicy,
    now_ms: i64,
) -> Vec<Assessment<'a>> {
    let horizon =
        now_ms.saturating_sub(i64::try_from(policy.resolve_after.as_millis()).unwrap_or(i64::MAX));
    let mut by_cert: BTreeMap<&str, Vec<&SightingRow>> = BTreeMap::new();
    for s in sightings.iter().filter(|s| s.served()) {
        by_cert.entry(s.fingerprint.as_str()).or_default().push(s);
    }
    let empty = Vec::new();
    certs
        .iter()
        .map(|cert| {
            let served = by_cert.get(cert.fingerprint.as_str()).unwrap_or(&empty);
            let seen_by: Vec<&SightingRow> = served
                .iter()
                .copied()
                .filter(|s| s.last_seen_ms >= horizon)
                .collect();
            let standing = if served.is_empty() {
                Standing::NotServed
            } else if seen_by.is_empty() {
                Standing::NotSeen
            } else if let Some(newer) = replacement(cert, served, certs, &by_cert) {
                Standing::Replaced(newer.to_owned())
            } else {
                let remaining = cert.not_after_ms - now_ms;
                Standing::Current(policy.severity_for(remaining))
            };
            Assessment {
                cert,
                seen_by,
                standing,
            }
        })
        .collect()
}

/// A certificate with the same subject and SANs that expires later and was
/// seen by every check that saw `cert`, after `cert`'s last sighting there.
fn replacement<'a>(
    cert: &CertificateRow,
    served: &[&SightingRow],
    certs: &'a [CertificateRow],
    by_cert: &BTreeMap<&str, Vec<&SightingRow>>,
) -> Option<&'a str> {
    let mut last_by_check: BTreeMap<&str, i64> = BTreeMap::new();
    for s in served {
        let e = last_by_check.entry(s.check_id.as_str()).or_insert(i64::MIN);
        *e = (*e).max(s.last_seen_ms);
    }
    certs
        .iter()
        .filter(|d| {
            d.fingerprint != cert.fingerprint
                && d.subject == cert.subject
                && d.sans == cert.sans
                && d.not_after_ms > cert.not_after_ms
        })
        .find(|d| {
            let theirs = by_cert.get(d.fingerprint.as_str());
            last_by_check.iter().all(|(check, last)| {
                theirs.is_some_and(|t| {
                    t.iter()
                        .any(|s| s.check_id == *check && s.last_seen_ms > *last)
                })
            })
        })
        .map(|d| d.fingerprint.as_str())
}

/// "expires in 12 days (2030-01-13T00:00:00Z)" / "expired 3 days ago (…)".
pub fn expiry_words(not_after_ms: i64, now_ms: i64) -> String {
    let days = days_left(not_after_ms, now_ms);
    let at = rfc3339(not_after_ms);
    if not_after_ms <= now_ms {
        let ago = (now_ms - not_after_ms) / DAY_MS;
        format!(
            "expired {ago} day{} ago ({at})",
            if ago == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "expires in {days} day{} ({at})",
            if days == 1 { "" } else { "s" }
        )
    }
}

fn short(fp: &str) -> &str {
    fp.get(..16).unwrap_or(fp)
}

/// The trigger event of a certificate's alert.
pub fn trigger_event(a: &Assessment<'_>, severity: Severity, now_ms: i64) -> AlertEvent {
    let c = a.cert;
    let mut checks: Vec<&str> = a.seen_by.iter().map(|s| s.check_id.as_str()).collect();
    checks.sort_unstable();
    checks.dedup();
    let mut regions: Vec<String> = a.seen_by.iter().map(|s| s.region.clone()).collect();
    regions.sort();
    regions.dedup();
    let name = if c.subject.is_empty() {
        format!("sha256 {}", short(&c.fingerprint))
    } else {
        c.subject.clone()
    };
    let summary = format!(
        "certificate {name} {} — seen by {} (sha256 {})",
        expiry_words(c.not_after_ms, now_ms),
        checks.join(", "),
        short(&c.fingerprint),
    );
    let seen_by: Vec<serde_json::Value> = a
        .seen_by
        .iter()
        .map(|s| {
            serde_json::json!({
                "check": s.check_id, "address": s.address, "host": s.host,
                "probe": s.probe, "region": s.region, "last_seen": rfc3339(s.last_seen_ms),
            })
        })
        .collect();
    AlertEvent {
        action: Action::Trigger,
        dedup_key: dedup_key(&c.fingerprint),
        check_id: String::new(),
        probe: None,
        kind: AlertKind::CertificateExpiring.into(),
        summary: super::truncate(&summary, 1024),
        severity,
        regions,
        code: AlertKind::CertificateExpiring.as_str().to_owned(),
        details: serde_json::json!({
            "fingerprint": c.fingerprint,
            "subject": c.subject,
            "issuer": c.issuer,
            "sans": c.sans,
            "not_after": rfc3339(c.not_after_ms),
            "days_left": days_left(c.not_after_ms, now_ms),
            "key_type": c.key_type,
            "checks": checks,
            "seen_by": seen_by,
        }),
        at_ms: now_ms,
    }
}

fn resolve_event(alert: &AlertRow, fingerprint: &str, why: &str, now_ms: i64) -> AlertEvent {
    AlertEvent {
        action: Action::Resolve,
        dedup_key: alert.dedup_key.clone(),
        check_id: String::new(),
        probe: None,
        kind: AlertKind::CertificateExpiring.into(),
        summary: format!("certificate sha256 {} {why}", short(fingerprint)),
        severity: alert.severity,
        regions: Vec::new(),
        code: String::new(),
        details: serde_json::json!({ "fingerprint": fingerprint, "reason": why }),
        at_ms: now_ms,
    }
}

/// Fires, escalates and resolves `certificate_expiring` alerts at `now`.
pub async fn evaluate(ctl: &Controller, now_ms: i64) -> Result<Vec<Transition>, StoreError> {
    let _guard = ctl.eval_lock().lock().await;
    let cfg = ctl.config();
    refresh_own(ctl, &cfg, now_ms).await?;
    let certs = ctl.store().certificates().await?;
    let sightings = ctl.store().certificate_sightings().await?;
    let mut open: BTreeMap<String, AlertRow> = ctl
        .store()
        .open_alerts()
        .await?
        .into_iter()
        .filter(|a| a.kind == AlertKind::CertificateExpiring)
        .map(|a| (a.dedup_key.clone(), a))
        .collect();
    let mut out = Vec::new();
    for a in assess(&certs, &sightings, &cfg.certificates, now_ms) {
        let key = dedup_key(&a.cert.fingerprint);
        let alert = open.remove(&key);
        let why = match (&a.standing, alert) {
            (Standing::Current(Some(severity)), None) => {
                out.extend(fire(ctl, &cfg, &a, *severity, now_ms).await?);
                continue;
            }
            (Standing::Current(Some(severity)), Some(alert)) => {
                // Severity never goes down while the alert is open.
                if *severity > alert.severity {
                    out.extend(escalate(ctl, &cfg, &a, &alert, *severity, now_ms).await?);
                }
                continue;
            }
            (_, None) => continue,
            (Standing::Current(None), Some(alert)) => {
                (alert, "no longer within a threshold".to_owned())
            }
            (Standing::Replaced(by), Some(alert)) => {
                (alert, format!("replaced by sha256 {}", short(by)))
            }
            (Standing::NotSeen, Some(alert)) => (
                alert,
                format!(
                    "not seen by any check for {}",
                    outpost_probe::config::Dur(cfg.certificates.resolve_after)
                ),
            ),
            (Standing::NotServed, Some(alert)) => (alert, "no longer served".to_owned()),
        };
        let (alert, why) = why;
        let event = resolve_event(&alert, &a.cert.fingerprint, &why, now_ms);
        out.extend(super::resolve(ctl, alert.id, &event).await?);
    }
    // Certificates pruned from the inventory.
    for alert in open.into_values() {
        let fp = alert
            .dedup_key
            .split('/')
            .nth(2)
            .unwrap_or_default()
            .to_owned();
        let event = resolve_event(&alert, &fp, "no longer in the inventory", now_ms);
        out.extend(super::resolve(ctl, alert.id, &event).await?);
    }
    Ok(out)
}

/// Check ids of the controller's own sightings.
pub const OWN_GRPC: &str = "controller:grpc";
/// See [`OWN_GRPC`].
pub const OWN_HTTPS: &str = "controller:https";
/// See [`OWN_GRPC`].
pub const OWN_PROBE: &str = "probe-identity";

/// Records the controller's own certificates as seen at `now_ms` (see the
/// design note). A listener certificate that cannot be read is skipped
/// (the listener refused to start with it anyway).
pub async fn refresh_own(
    ctl: &Controller,
    cfg: &ControllerConfig,
    now_ms: i64,
) -> Result<(), StoreError> {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};
    let mut seen = Vec::new();
    let listeners = [
        (cfg.tls.as_ref(), OWN_GRPC, cfg.grpc_listen),
        (cfg.http_tls.as_ref(), OWN_HTTPS, cfg.http_listen),
    ];
    for (files, check, addr) in listeners {
        let Some(files) = files else { continue };
        let Ok(der) = CertificateDer::from_pem_file(&files.cert_file) else {
            continue;
        };
        if let Some(s) = crate::certificate::own(&der, &addr.to_string(), "") {
            seen.push((s, check.to_owned(), ctl.replica_host(), String::new()));
        }
    }
    if cfg.probe_ca.is_some() {
        let mut newest: BTreeMap<String, crate::store::ProbeCertificateRow> = BTreeMap::new();
        for row in ctl.store().probe_certificates().await? {
            if row.revoked_ms.is_none() && cfg.probe(&row.probe).is_some() {
                // Newest first: the first row per probe is its current one.
                newest.entry(row.probe.clone()).or_insert(row);
            }
        }
        for row in newest.into_values() {
            let Ok(der) = CertificateDer::from_pem_slice(row.cert_pem.as_bytes()) else {
                continue;
            };
            if let Some(s) = crate::certificate::own(&der, "", &row.probe) {
                seen.push((s, OWN_PROBE.to_owned(), row.probe, row.region));
            }
        }
    }
    ctl.store().record_own_certificates(&seen, now_ms).await
}

async fn fire(
    ctl: &Controller,
    cfg: &ControllerConfig,
    a: &Assessment<'_>,
    severity: Severity,
    now_ms: i64,
) -> Result<Option<Transition>, StoreError> {
    let event = trigger_event(a, severity, now_ms);
    let alert = NewAlert::of(AlertKind::CertificateExpiring, &event);
    super::fire_alert(
        ctl,
        &alert,
        &event,
        cfg.sinks_for_kind(AlertKind::CertificateExpiring.into()),
    )
    .await
}

async fn escalate(
    ctl: &Controller,
    cfg: &ControllerConfig,
    a: &Assessment<'_>,
    alert: &AlertRow,
    severity: Severity,
    now_ms: i64,
) -> Result<Option<Transition>, StoreError> {
    let event = trigger_event(a, severity, now_ms);
    let sinks = cfg.sinks_for_kind(AlertKind::CertificateExpiring.into());
    let payload = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
    if !ctl
        .store()
        .escalate_alert(alert.id, severity, &event.summary, &sinks, &payload, now_ms)
        .await?
    {
        return Ok(None);
    }
    tracing::warn!(kind = %AlertKind::CertificateExpiring, dedup_key = %alert.dedup_key, alert_id = alert.id,
        from = %alert.severity, to = %severity, sinks = ?sinks, summary = %event.summary, "alert escalated");
    ctl.metrics().inc(
        "outpost_alerts_total",
        &[
            ("kind", AlertKind::CertificateExpiring.as_str()),
            ("action", "escalate"),
        ],
        1,
    );
    ctl.wake_delivery();
    Ok(Some(Transition::Escalated {
        alert_id: alert.id,
        sinks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_900_000_000_000;

    fn cert(fp: &str, subject: &str, not_after_ms: i64) -> CertificateRow {
        CertificateRow {
            fingerprint: fp.into(),
            subject: subject.into(),
            issuer: "CN=ca".into(),
            sans: vec!["api.example.net".into()],
            not_before_ms: None,
            not_after_ms,
            key_type: "ECDSA P-256".into(),
            signature_algorithm: String::new(),
            is_ca: false,
            self_signed: false,
            first_seen_ms: 0,
            last_seen_ms: 0,
        }
    }

    fn seen(fp: &str, check: &str, at: i64) -> SightingRow {
        SightingRow {
            fingerprint: fp.into(),
            check_id: check.into(),
            probe: "p".into(),
            address: "192.0.2.1:443".into(),
            region: "eu".into(),
            host: "api.example.net".into(),
            position: Some(0),
            trust_store: None,
            first_seen_ms: at,
            last_seen_ms: at,
        }
    }

    #[test]
    fn severity_follows_days_left_and_stale_certificates_drop_out() {
        let p = CertificatePolicy::default();
        let certs = vec![
            cert("a", "CN=a", NOW + 20 * DAY_MS),
            cert("b", "CN=b", NOW + 3 * DAY_MS),
        ];
        let s = vec![seen("a", "c1", NOW), seen("b", "c1", NOW - 3 * DAY_MS)];
        let a = assess(&certs, &s, &p, NOW);
        assert_eq!(a[0].standing, Standing::Current(Some(Severity::Warning)));
        assert_eq!(a[1].standing, Standing::NotSeen);
        let later = assess(&certs, &s, &p, NOW + 13 * DAY_MS);
        assert_eq!(later[0].standing, Standing::NotSeen);
    }

    #[test]
    fn a_renewal_seen_by_every_check_replaces_the_old_certificate() {
        let p = CertificatePolicy::default();
        let certs = vec![
            cert("old", "CN=a", NOW + 5 * DAY_MS),
            cert("new", "CN=a", NOW + 90 * DAY_MS),
        ];
        // Seen by c2 only: c1 still serves the old one.
        let mut s = vec![
            seen("old", "c1", NOW - 1000),
            seen("old", "c2", NOW - 1000),
            seen("new", "c2", NOW),
        ];
        assert_eq!(
            assess(&certs, &s, &p, NOW)[0].standing,
            Standing::Current(Some(Severity::Critical))
        );
        s.push(seen("new", "c1", NOW));
        assert_eq!(
            assess(&certs, &s, &p, NOW)[0].standing,
            Standing::Replaced("new".into())
        );
        assert_eq!(
            assess(&certs, &s, &p, NOW)[1].standing,
            Standing::Current(None)
        );
    }

    #[test]
    fn trust_store_roots_are_not_served() {
        let p = CertificatePolicy::default();
        let certs = vec![cert("root", "CN=root", NOW + DAY_MS)];
        let mut s = seen("root", "c1", NOW);
        s.position = None;
        s.trust_store = Some("mozilla".into());
        assert_eq!(
            assess(&certs, &[s], &p, NOW)[0].standing,
            Standing::NotServed
        );
    }

    #[test]
    fn expiry_is_in_words() {
        assert_eq!(
            expiry_words(NOW + 12 * DAY_MS + 5, NOW),
            format!("expires in 12 days ({})", rfc3339(NOW + 12 * DAY_MS + 5))
        );
        assert!(expiry_words(NOW - 3 * DAY_MS, NOW).starts_with("expired 3 days ago"));
    }
}
