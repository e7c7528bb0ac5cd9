//! `GET /api/v1/certificates`: the certificate inventory, soonest expiry
//! first, with where each certificate was seen and its alert standing.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use serde::Serialize;

use super::ApiError;
use crate::{
    Controller,
    alerting::{
        AlertKind, Severity,
        certificate::{self, Standing},
    },
    certificate::{days_left, rfc3339},
    store::{AlertRow, StoreError, now_ms},
};

/// Where a certificate was seen.
#[derive(Debug, Clone, Serialize)]
pub struct SeenByView {
    /// Check.
    pub check: String,
    /// `ip:port` of the handshake (empty when unknown).
    pub address: String,
    /// Host name checked.
    pub host: String,
    /// Probe.
    pub probe: String,
    /// Region.
    pub region: String,
    /// Position in the presented chain (0 = leaf); null for a trust store's root.
    pub position: Option<i64>,
    /// Trust store of a root.
    pub trust_store: Option<String>,
    /// Last seen there, RFC 3339.
    pub last_seen: String,
    /// The same, unix ms.
    pub last_seen_ms: i64,
}

/// The open alert of a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateAlert {
    /// Alert id.
    pub id: i64,
    /// Its severity.
    pub severity: Severity,
    /// When it opened, RFC 3339.
    pub opened_at: String,
}

/// One certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Subject alternative names.
    pub sans: Vec<String>,
    /// Start of validity, RFC 3339.
    pub not_before: Option<String>,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// The same, unix ms.
    pub not_after_ms: i64,
    /// Whole days left (rounded down; negative once expired).
    pub days_left: i64,
    /// `expired`, `critical`, `error`, `warning`, `info` (the threshold it is
    /// within) or `ok`.
    pub level: String,
    /// `current` (served and seen recently), `replaced`, `not_seen` (no
    /// check saw it within `alerting.certificates.resolve_after`) or
    /// `trust_store` (only seen as a trust store's root).
    pub status: &'static str,
    /// Fingerprint of the certificate that replaced it.
    pub replaced_by: Option<String>,
    /// Key type.
    pub key_type: String,
    /// Signature algorithm.
    pub signature_algorithm: String,
    /// CA certificate.
    pub is_ca: bool,
    /// Self-signed.
    pub self_signed: bool,
    /// First seen, RFC 3339.
    pub first_seen: String,
    /// Last seen by any check, RFC 3339.
    pub last_seen: String,
    /// The open `certificate_expiring` alert.
    pub alert: Option<CertificateAlert>,
    /// Every place it was seen, newest first.
    pub seen_by: Vec<SeenByView>,
}

/// The whole inventory at `now`, soonest expiry first.
pub async fn certificate_views(
    ctl: &Controller,
    now: i64,
) -> Result<Vec<CertificateView>, StoreError> {
    let cfg = ctl.config();
    let certs = ctl.store().certificates().await?;
    let sightings = ctl.store().certificate_sightings().await?;
    let open: BTreeMap<String, AlertRow> = ctl
        .store()
        .open_alerts()
        .await?
        .into_iter()
        .filter(|a| a.kind == AlertKind::CertificateExpiring)
        .map(|a| (a.dedup_key.clone(), a))
        .collect();
    let mut out: Vec<CertificateView> =
        certificate::assess(&certs, &sightings, &cfg.certificates, now)
            .into_iter()
            .map(|a| {
                let c = a.cert;
                let (status, replaced_by) = match &a.standing {
                    Standing::Current(_) => ("current", None),
                    Standing::Replaced(by) => ("replaced", Some(by.clone())),
                    Standing::NotSeen => ("not_seen", None),
                    Standing::NotServed => ("trust_store", None),
                };
                let level = if c.not_after_ms <= now {
                    "expired".to_owned()
                } else {
                    cfg.certificates
                        .severity_for(c.not_after_ms - now)
                        .map_or("ok", |s| s.as_str())
                        .to_owned()
                };
                let seen_by = sightings
                    .iter()
                    .filter(|s| s.fingerprint == c.fingerprint)
                    .map(|s| SeenByView {
                        check: s.check_id.clone(),
                        address: s.address.clone(),
                        host: s.host.clone(),
                        probe: s.probe.clone(),
                        region: s.region.clone(),
                        position: s.position,
                        trust_store: s.trust_store.clone(),
                        last_seen: rfc3339(s.last_seen_ms),
                        last_seen_ms: s.last_seen_ms,
                    })
                    .collect();
                let alert =
                    open.get(&certificate::dedup_key(&c.fingerprint))
                        .map(|al| CertificateAlert {
                            id: al.id,
                            severity: al.severity,
                            opened_at: rfc3339(al.opened_at_ms),
                        });
                CertificateView {
                    fingerprint: c.fingerprint.clone(),
                    subject: c.subject.clone(),
                    issuer: c.issuer.clone(),
                    sans: c.sans.clone(),
                    not_before: c.not_before_ms.map(rfc3339),
                    not_after: rfc3339(c.not_after_ms),
                    not_after_ms: c.not_after_ms,
                    days_left: days_left(c.not_after_ms, now),
                    level,
                    status,
                    replaced_by,
                    key_type: c.key_type.clone(),
                    signature_algorithm: c.signature_algorithm.clone(),
                    is_ca: c.is_ca,
                    self_signed: c.self_signed,
                    first_seen: rfc3339(c.first_seen_ms),
                    last_seen: rfc3339(c.last_seen_ms),
                    alert,
                    seen_by,
                }
            })
            .collect();
    out.sort_by(|a, b| {
        a.not_after_ms
            .cmp(&b.not_after_ms)
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    Ok(out)
}

/// `GET /api/v1/certificates`.
#[derive(Serialize)]
pub(super) struct CertificatesBody {
    now_ms: i64,
    certificates: Vec<CertificateView>,
}

pub(super) async fn list_certificates(
    State(ctl): State<Controller>,
) -> Result<Json<CertificatesBody>, ApiError> {
    let now = now_ms();
    let certificates = certificate_views(&ctl, now).await?;
    Ok(Json(CertificatesBody {
        now_ms: now,
        certificates,
    }))
}
