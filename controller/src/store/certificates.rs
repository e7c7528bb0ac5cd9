//! SQL of the certificate inventory: `certificates` and
//! `certificate_sightings` (see [`crate::certificate`]).

use sqlx::{Row, sqlite::SqliteRow};

use super::{Store, StoreError};
use crate::certificate::Seen;

/// A certificate of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// SHA-256 fingerprint, lowercase hex.
    pub fingerprint: String,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Subject alternative names.
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
    pub is_ca: bool,
    /// Self-signed.
    pub self_signed: bool,
    /// First seen by any check.
    pub first_seen_ms: i64,
    /// Last seen by any check.
    pub last_seen_ms: i64,
}

/// Where a certificate was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
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
/// Last-seen times never move backwards.
pub(super) async fn record(
    tx: &mut sqlx::SqliteTransaction<'_>,
    s: &Seen,
    check_id: &str,
    probe: &str,
    region: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO certificates (fingerprint, subject, issuer, sans_json, not_before_ms, not_after_ms, key_type, \
         signature_algorithm, is_ca, self_signed, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(fingerprint) DO UPDATE SET last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), \
         first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms)",
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
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO certificate_sightings (fingerprint, check_id, probe, address, region, host, position, trust_store, \
         first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(fingerprint, check_id, probe, address) DO UPDATE SET \
           region = excluded.region, host = excluded.host, position = excluded.position, trust_store = excluded.trust_store, \
           first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms), last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)",
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
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn certificate_from(row: &SqliteRow) -> Result<CertificateRow, sqlx::Error> {
    let sans: String = row.try_get("sans_json")?;
    Ok(CertificateRow {
        fingerprint: row.try_get("fingerprint")?,
        subject: row.try_get("subject")?,
        issuer: row.try_get("issuer")?,
        sans: serde_json::from_str(&sans).unwrap_or_default(),
        not_before_ms: row.try_get("not_before_ms")?,
        not_after_ms: row.try_get("not_after_ms")?,
        key_type: row.try_get("key_type")?,
        signature_algorithm: row.try_get("signature_algorithm")?,
        is_ca: row.try_get::<i64, _>("is_ca")? != 0,
        self_signed: row.try_get::<i64, _>("self_signed")? != 0,
        first_seen_ms: row.try_get("first_seen_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
    })
}

fn sighting_from(row: &SqliteRow) -> Result<SightingRow, sqlx::Error> {
    Ok(SightingRow {
        fingerprint: row.try_get("fingerprint")?,
        check_id: row.try_get("check_id")?,
        probe: row.try_get("probe")?,
        address: row.try_get("address")?,
        region: row.try_get("region")?,
        host: row.try_get("host")?,
        position: row.try_get("position")?,
        trust_store: row.try_get("trust_store")?,
        first_seen_ms: row.try_get("first_seen_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
    })
}

impl Store {
    /// Every certificate, soonest expiry first.
    pub async fn certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM certificates ORDER BY not_after_ms, fingerprint")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(certificate_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Every sighting, newest first.
    pub async fn certificate_sightings(&self) -> Result<Vec<SightingRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM certificate_sightings ORDER BY last_seen_ms DESC, check_id, probe, address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(sighting_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Forgets sightings, then certificates, not seen since `before_ms`.
    pub async fn prune_certificates(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM certificate_sightings WHERE last_seen_ms < ?")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "DELETE FROM certificates WHERE last_seen_ms < ? AND NOT EXISTS \
             (SELECT 1 FROM certificate_sightings s WHERE s.fingerprint = certificates.fingerprint)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}
