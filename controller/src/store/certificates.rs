//! SQL of the certificate inventory: `certificates` and
//! `certificate_sightings` (see [`crate::certificate`]).

use super::{Flag, JsonText, Store, StoreError, Tx};
use crate::certificate::Seen;

/// A certificate of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CertificateRow {
    /// SHA-256 fingerprint, lowercase hex.
    pub fingerprint: String,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Subject alternative names.
    #[sqlx(rename = "sans_json", try_from = "JsonText")]
    pub sans: Vec<String>,
    /// Start of validity, unix ms.
    pub not_before_ms: Option<i64>,
    /// End of validity, unix ms.
    pub not_after_ms: i64,
    /// Key type.
    pub key_type: String,
    /// Signature algorithm.
    pub signature_algorithm: String,
    /// CA certificate.
    #[sqlx(try_from = "Flag")]
    pub is_ca: bool,
    /// Self-signed.
    #[sqlx(try_from = "Flag")]
    pub self_signed: bool,
    /// First seen by any check.
    pub first_seen_ms: i64,
    /// Last seen by any check.
    pub last_seen_ms: i64,
}

/// Where a certificate was seen.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SightingRow {
    /// Certificate.
    pub fingerprint: String,
    /// Check.
    pub check_id: String,
    /// Probe.
    pub probe: String,
    /// `ip:port` (empty when unknown).
    pub address: String,
    /// Region of the probe.
    pub region: String,
    /// Host name checked.
    pub host: String,
    /// Position in the presented chain; `None` for a trust store's root.
    pub position: Option<i64>,
    /// Trust store of a root.
    pub trust_store: Option<String>,
    /// First seen here.
    pub first_seen_ms: i64,
    /// Last seen here.
    pub last_seen_ms: i64,
}

impl SightingRow {
    /// A server presented it here (not a trust store's root).
    pub fn served(&self) -> bool {
        self.position.is_some() || self.trust_store.is_none()
    }
}

/// Upserts one sighting (and its certificate) inside the ingest transaction.
/// Seen times only widen: first-seen never moves later, last-seen never earlier.
pub(super) async fn record(
    tx: &mut Tx<'_>,
    s: &Seen,
    check_id: &str,
    probe: &str,
    region: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO certificates (fingerprint, subject, issuer, sans_json, not_before_ms, not_after_ms, key_type, \
         signature_algorithm, is_ca, self_signed, first_seen_ms, last_seen_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
         ON CONFLICT (fingerprint) DO UPDATE SET \
           last_seen_ms = CASE WHEN certificates.last_seen_ms > excluded.last_seen_ms \
                          THEN certificates.last_seen_ms ELSE excluded.last_seen_ms END, \
           first_seen_ms = CASE WHEN certificates.first_seen_ms < excluded.first_seen_ms \
                           THEN certificates.first_seen_ms ELSE excluded.first_seen_ms END",
    )
    .bind(&s.fingerprint)
    .bind(&s.subject)
    .bind(&s.issuer)
    .bind(serde_json::to_string(&s.sans).unwrap_or_else(|_| "[]".into()))
    .bind(s.not_before_ms)
    .bind(s.not_after_ms)
    .bind(&s.key_type)
    .bind(&s.signature_algorithm)
    .bind(i64::from(s.is_ca))
    .bind(i64::from(s.self_signed))
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO certificate_sightings (fingerprint, check_id, probe, address, region, host, position, trust_store, \
         first_seen_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (fingerprint, check_id, probe, address) DO UPDATE SET \
           region = excluded.region, host = excluded.host, position = excluded.position, \
           trust_store = excluded.trust_store, \
           first_seen_ms = CASE WHEN certificate_sightings.first_seen_ms < excluded.first_seen_ms \
                           THEN certificate_sightings.first_seen_ms ELSE excluded.first_seen_ms END, \
           last_seen_ms = CASE WHEN certificate_sightings.last_seen_ms > excluded.last_seen_ms \
                          THEN certificate_sightings.last_seen_ms ELSE excluded.last_seen_ms END",
    )
    .bind(&s.fingerprint)
    .bind(check_id)
    .bind(probe)
    .bind(&s.address)
    .bind(region)
    .bind(&s.host)
    .bind(s.position)
    .bind(&s.trust_store)
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Records sightings the controller makes itself (its own listeners'
    /// certificates, probes' client certificates: [`crate::alerting::certificate`])
    /// at `at_ms`, in one transaction. Each is `(certificate, check_id, probe, region)`.
    pub async fn record_own_certificates(
        &self,
        seen: &[(Seen, String, String, String)],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (s, check, probe, region) in seen {
            record(&mut tx, s, check, probe, region, at_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every certificate, soonest expiry first.
    pub async fn certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT fingerprint, subject, issuer, sans_json, not_before_ms, not_after_ms, key_type, signature_algorithm, \
             is_ca, self_signed, first_seen_ms, last_seen_ms \
             FROM certificates ORDER BY not_after_ms, fingerprint",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every sighting, newest first.
    pub async fn certificate_sightings(&self) -> Result<Vec<SightingRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT fingerprint, check_id, probe, address, region, host, position, trust_store, first_seen_ms, last_seen_ms \
             FROM certificate_sightings ORDER BY last_seen_ms DESC, check_id, probe, address",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets sightings, then certificates, not seen since `before_ms`.
    pub async fn prune_certificates(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM certificate_sightings WHERE last_seen_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "DELETE FROM certificates WHERE last_seen_ms < $1 AND NOT EXISTS \
             (SELECT 1 FROM certificate_sightings s WHERE s.fingerprint = certificates.fingerprint)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}
