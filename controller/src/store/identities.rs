//! SQL of `enrollment_tokens` and `probe_certificates`: per-probe mutual TLS
//! identities ([`crate::identity`]). Tokens are stored as their SHA-256
//! only; redeeming one and recording its certificate is one transaction.

use super::{Store, StoreError};

/// A one-time enrollment token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EnrollmentTokenRow {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The probe it enrolls.
    pub probe: String,
    /// That probe's region when the token was made.
    pub region: String,
    /// Made at (unix ms).
    pub created_ms: i64,
    /// Unusable from (unix ms).
    pub expires_ms: i64,
    /// Redeemed at (unix ms), once.
    pub used_ms: Option<i64>,
}

/// A client certificate the probe CA issued.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProbeCertificateRow {
    /// Hex serial.
    pub serial: String,
    /// The probe it identifies.
    pub probe: String,
    /// Its region at issuance.
    pub region: String,
    /// Validity start (unix ms).
    pub not_before_ms: i64,
    /// Validity end (unix ms).
    pub not_after_ms: i64,
    /// Hex SHA-256 of the DER.
    pub fingerprint: String,
    /// The certificate (PEM; public), for the inventory.
    pub cert_pem: String,
    /// Issued at (unix ms).
    pub issued_ms: i64,
    /// Revoked at (unix ms); a revoked certificate is refused.
    pub revoked_ms: Option<i64>,
}

/// The columns of `probe_certificates`, in [`ProbeCertificateRow`] order
/// (a macro so statements stay `&'static str`).
macro_rules! cert_columns {
    () => {
        "serial, probe, region, not_before_ms, not_after_ms, fingerprint, cert_pem, issued_ms, revoked_ms"
    };
}

impl Store {
    /// Records a new enrollment token.
    pub async fn insert_enrollment_token(
        &self,
        row: &EnrollmentTokenRow,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, probe, region, created_ms, expires_ms, used_ms) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&row.token_hash)
        .bind(&row.probe)
        .bind(&row.region)
        .bind(row.created_ms)
        .bind(row.expires_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The token with this hash.
    pub async fn enrollment_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<EnrollmentTokenRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT token_hash, probe, region, created_ms, expires_ms, used_ms \
             FROM enrollment_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks the token used and records `cert`, in one transaction; false
    /// (nothing written) when the token was used meanwhile or expired at
    /// `now_ms`.
    pub async fn redeem_enrollment_token(
        &self,
        token_hash: &str,
        now_ms: i64,
        cert: &ProbeCertificateRow,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE enrollment_tokens SET used_ms = $1 \
             WHERE token_hash = $2 AND used_ms IS NULL AND expires_ms > $1",
        )
        .bind(now_ms)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_cert(&mut tx, cert).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a certificate issued by renewal.
    pub async fn insert_probe_certificate(
        &self,
        cert: &ProbeCertificateRow,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_cert(&mut tx, cert).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The certificate with this serial.
    pub async fn probe_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<ProbeCertificateRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM probe_certificates WHERE serial = $1"
        ))
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every issued certificate, newest first.
    pub async fn probe_certificates(&self) -> Result<Vec<ProbeCertificateRow>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM probe_certificates ORDER BY issued_ms DESC, serial"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes every certificate of `probe` and drops its unused tokens;
    /// returns how many certificates were revoked.
    pub async fn revoke_probe(&self, probe: &str, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE probe_certificates SET revoked_ms = $1 WHERE probe = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(probe)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM enrollment_tokens WHERE probe = $1 AND used_ms IS NULL")
            .bind(probe)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

async fn insert_cert(
    tx: &mut super::Tx<'static>,
    c: &ProbeCertificateRow,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO probe_certificates (",
        cert_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
    ))
    .bind(&c.serial)
    .bind(&c.probe)
    .bind(&c.region)
    .bind(c.not_before_ms)
    .bind(c.not_after_ms)
    .bind(&c.fingerprint)
    .bind(&c.cert_pem)
    .bind(c.issued_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_stores;

    fn cert(serial: &str, probe: &str) -> ProbeCertificateRow {
        ProbeCertificateRow {
            serial: serial.into(),
            probe: probe.into(),
            region: "eu".into(),
            not_before_ms: 1000,
            not_after_ms: 9000,
            fingerprint: format!("fp-{serial}"),
            cert_pem: String::new(),
            issued_ms: 1000,
            revoked_ms: None,
        }
    }

    #[tokio::test]
    async fn a_token_is_redeemed_once_before_it_expires_and_revocation_covers_every_certificate() {
        for (_d, s) in temp_stores().await {
            for (hash, expires) in [("h1", 5000), ("h2", 1500)] {
                s.insert_enrollment_token(&EnrollmentTokenRow {
                    token_hash: hash.into(),
                    probe: "p".into(),
                    region: "eu".into(),
                    created_ms: 1000,
                    expires_ms: expires,
                    used_ms: None,
                })
                .await
                .unwrap();
            }
            assert!(
                s.redeem_enrollment_token("h1", 2000, &cert("01", "p"))
                    .await
                    .unwrap()
            );
            // Used: refused, and its certificate is not recorded.
            assert!(
                !s.redeem_enrollment_token("h1", 2001, &cert("02", "p"))
                    .await
                    .unwrap()
            );
            // Expired.
            assert!(
                !s.redeem_enrollment_token("h2", 2000, &cert("03", "p"))
                    .await
                    .unwrap()
            );
            assert!(
                !s.redeem_enrollment_token("nope", 2000, &cert("04", "p"))
                    .await
                    .unwrap()
            );
            assert_eq!(
                s.enrollment_token("h1").await.unwrap().unwrap().used_ms,
                Some(2000)
            );
            s.insert_probe_certificate(&cert("05", "p")).await.unwrap();
            s.insert_probe_certificate(&cert("06", "q")).await.unwrap();
            let serials: Vec<String> = s
                .probe_certificates()
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.serial)
                .collect();
            assert_eq!(serials, ["01", "05", "06"]);
            assert_eq!(s.revoke_probe("p", 3000).await.unwrap(), 2);
            assert_eq!(
                s.probe_certificate("05").await.unwrap().unwrap().revoked_ms,
                Some(3000)
            );
            assert_eq!(
                s.probe_certificate("06").await.unwrap().unwrap().revoked_ms,
                None
            );
        }
    }
}
