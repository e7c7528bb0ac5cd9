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

/// One sighting of a batch, coalesced: every result of the batch that saw
/// this certificate at this (check, probe, address), newest last.
#[derive(Debug)]
pub(super) struct Sighting<'a> {
    /// The newest result's view (its region, host, position win, as they
    /// would one upsert per result, oldest first).
    pub seen: &'a Seen,
    pub check_id: &'a str,
    pub probe: &'a str,
    pub region: &'a str,
    pub first_ms: i64,
    pub last_ms: i64,
}

type SightingKey<'a> = (&'a str, &'a str, &'a str, &'a str);

/// The sightings of one batch, one per (fingerprint, check, probe, address).
#[derive(Debug, Default)]
pub(super) struct Sightings<'a> {
    by_key: std::collections::BTreeMap<SightingKey<'a>, Sighting<'a>>,
}

impl<'a> Sightings<'a> {
    /// Adds one result's sighting at `at_ms` (results come oldest first).
    pub fn add(
        &mut self,
        seen: &'a Seen,
        check_id: &'a str,
        probe: &'a str,
        region: &'a str,
        at_ms: i64,
    ) {
        let key = (
            seen.fingerprint.as_str(),
            check_id,
            probe,
            seen.address.as_str(),
        );
        self.by_key
            .entry(key)
            .and_modify(|s| {
                s.seen = seen;
                s.region = region;
                s.first_ms = s.first_ms.min(at_ms);
                s.last_ms = s.last_ms.max(at_ms);
            })
            .or_insert(Sighting {
                seen,
                check_id,
                probe,
                region,
                first_ms: at_ms,
                last_ms: at_ms,
            });
    }

    /// Writes them inside the ingest transaction; returns how many were not
    /// stored before (a new certificate, or one seen somewhere new: what
    /// the inventory's evaluation must look at now rather than on its
    /// minute tick). One read, then one multi-row upsert of the
    /// certificates and one of the sightings per [`ROWS_PER_UPSERT`] for
    /// the sightings that are due ([`SIGHTING_REFRESH_MS`]), however many
    /// results saw them.
    pub async fn write(&self, tx: &mut Tx<'_>) -> Result<u64, sqlx::Error> {
        if self.by_key.is_empty() {
            return Ok(0);
        }
        let keys: Vec<&SightingKey<'_>> = self.by_key.keys().collect();
        let mut stored: Vec<SightingRow> = Vec::new();
        for chunk in keys.chunks(1000) {
            let mut values = String::new();
            for i in 0..chunk.len() {
                if i > 0 {
                    values.push_str(", ");
                }
                let b = 4 * i;
                values.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
            }
            let sql = format!(
                "SELECT fingerprint, check_id, probe, address, region, host, position, trust_store, \
                 first_seen_ms, last_seen_ms FROM certificate_sightings \
                 WHERE (fingerprint, check_id, probe, address) IN (VALUES {values})"
            );
            let mut q = sqlx::query_as::<_, SightingRow>(super::built(super::is_sqlite(tx), sql));
            for (f, c, p, a) in chunk {
                q = q.bind(*f).bind(*c).bind(*p).bind(*a);
            }
            stored.extend(q.fetch_all(&mut **tx).await?);
        }
        let mut known = 0u64;
        let mut fresh = std::collections::BTreeSet::new();
        for row in &stored {
            let key = (
                row.fingerprint.as_str(),
                row.check_id.as_str(),
                row.probe.as_str(),
                row.address.as_str(),
            );
            let Some(s) = self.by_key.get(&key) else {
                continue;
            };
            known += 1;
            if !s.due(row) {
                fresh.insert(key);
            }
        }
        let due: Vec<&Sighting<'_>> = self
            .by_key
            .iter()
            .filter(|(k, _)| !fresh.contains(*k))
            .map(|(_, s)| s)
            .collect();
        // A certificate's seen times are its sightings' span: written with
        // the sightings that are, so neither runs ahead of the other.
        let mut certs: std::collections::BTreeMap<&str, (&Seen, i64, i64)> =
            std::collections::BTreeMap::new();
        for s in &due {
            certs
                .entry(s.seen.fingerprint.as_str())
                .and_modify(|c| {
                    c.1 = c.1.min(s.first_ms);
                    c.2 = c.2.max(s.last_ms);
                })
                .or_insert((s.seen, s.first_ms, s.last_ms));
        }
        let certs: Vec<(&Seen, i64, i64)> = certs.into_values().collect();
        record_certificates(tx, &certs).await?;
        record_sightings(tx, &due).await?;
        Ok(self.by_key.len() as u64 - known)
    }
}

/// How far behind a batch's sighting a stored one's `last_seen_ms` may
/// lag before the batch writes it again, when nothing else about it
/// changed: a check every second re-wrote each of its certificates'
/// sightings (a row and two index entries each) in every batch, most of a
/// certificate-bearing result's ingest cost. Last-seen times are therefore
/// exact to this much; everything that reads them (the inventory's
/// "not seen since" after `resolve_after`, a replacement seen after the old
/// certificate's last sighting, the prune) works in hours or days.
pub const SIGHTING_REFRESH_MS: i64 = 60_000;

impl Sighting<'_> {
    /// Whether this batch's sighting must be written over `stored`: it
    /// changes what the row says (region, host, position, trust store, an
    /// earlier first sighting), or the row's last-seen lags it by
    /// [`SIGHTING_REFRESH_MS`] or more.
    fn due(&self, stored: &SightingRow) -> bool {
        stored.region != self.region
            || stored.host != self.seen.host
            || stored.position != self.seen.position
            || stored.trust_store != self.seen.trust_store
            || self.first_ms < stored.first_seen_ms
            || self.last_ms >= stored.last_seen_ms.saturating_add(SIGHTING_REFRESH_MS)
    }
}

/// Rows per multi-row upsert (12 binds a certificate row: far below
/// SQLite's 32,766 and PostgreSQL's 65,535 parameters).
const ROWS_PER_UPSERT: usize = 500;

/// Upserts certificates `(certificate, first seen, last seen)`, each
/// fingerprint once, one statement per [`ROWS_PER_UPSERT`]. Seen times
/// only widen: first-seen never moves later, last-seen never earlier.
async fn record_certificates(
    tx: &mut Tx<'_>,
    certs: &[(&Seen, i64, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in certs.chunks(ROWS_PER_UPSERT) {
        let sql = format!(
            "INSERT INTO certificates (fingerprint, subject, issuer, sans_json, not_before_ms, not_after_ms, key_type, \
             signature_algorithm, is_ca, self_signed, first_seen_ms, last_seen_ms) \
             VALUES {} \
             ON CONFLICT (fingerprint) DO UPDATE SET \
               last_seen_ms = CASE WHEN certificates.last_seen_ms > excluded.last_seen_ms \
                              THEN certificates.last_seen_ms ELSE excluded.last_seen_ms END, \
               first_seen_ms = CASE WHEN certificates.first_seen_ms < excluded.first_seen_ms \
                               THEN certificates.first_seen_ms ELSE excluded.first_seen_ms END",
            super::placeholders(chunk.len(), 12)
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), sql));
        for (s, first_ms, last_ms) in chunk {
            q = q
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
                .bind(*first_ms)
                .bind(*last_ms);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Upserts sightings, each key once (their certificates are written
/// first), one statement per [`ROWS_PER_UPSERT`]. Seen times only widen.
async fn record_sightings(tx: &mut Tx<'_>, rows: &[&Sighting<'_>]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let sql = format!(
            "INSERT INTO certificate_sightings (fingerprint, check_id, probe, address, region, host, position, trust_store, \
             first_seen_ms, last_seen_ms) VALUES {} \
             ON CONFLICT (fingerprint, check_id, probe, address) DO UPDATE SET \
               region = excluded.region, host = excluded.host, position = excluded.position, \
               trust_store = excluded.trust_store, \
               first_seen_ms = CASE WHEN certificate_sightings.first_seen_ms < excluded.first_seen_ms \
                               THEN certificate_sightings.first_seen_ms ELSE excluded.first_seen_ms END, \
               last_seen_ms = CASE WHEN certificate_sightings.last_seen_ms > excluded.last_seen_ms \
                              THEN certificate_sightings.last_seen_ms ELSE excluded.last_seen_ms END",
            super::placeholders(chunk.len(), 10)
        );
        let mut q = sqlx::query(super::built(super::is_sqlite(tx), sql));
        for s in chunk {
            q = q
                .bind(&s.seen.fingerprint)
                .bind(s.check_id)
                .bind(s.probe)
                .bind(&s.seen.address)
                .bind(s.region)
                .bind(&s.seen.host)
                .bind(s.seen.position)
                .bind(&s.seen.trust_store)
                .bind(s.first_ms)
                .bind(s.last_ms);
        }
        q.execute(&mut **tx).await?;
    }
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
        let mut batch = Sightings::default();
        for (s, check, probe, region) in seen {
            batch.add(s, check, probe, region, at_ms);
        }
        let mut tx = self.begin_write().await?;
        batch.write(&mut tx).await?;
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
