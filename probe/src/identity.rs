//! The probe's client certificate for mutual TLS with the controller
//! (`[controller] enrollment_token`, `identity_dir`).
//!
//! Design notes:
//! - **Key.** Generated here (ECDSA P-256) and never sent anywhere: the
//!   controller gets a CSR. Each renewal makes a new key.
//! - **One file.** `<identity_dir>/identity.pem` holds the certificate, then
//!   the key (0600, in a 0700 directory), written to `identity.pem.tmp` and
//!   renamed: a crash leaves the old identity or the new one, never a
//!   certificate with the other's key. `ca.pem` beside it is the issuing
//!   probe CA, for the operator's records.
//! - **Enrollment** (once, when no identity exists and an enrollment token
//!   is configured): the unary `Enroll` call over server-authenticated TLS.
//!   The token is spent on success; a probe restarted later finds its
//!   identity on disk and never sends the token again.
//! - **Renewal** at half life ([`renewal_due`]), read from the injected
//!   [`Clock`](crate::clock::Clock) on each heartbeat tick: the unary
//!   `Renew` call on the live channel (authenticated by the current
//!   certificate). The reporter then ends the stream and reconnects with the
//!   new certificate; a failed renewal is retried [`RENEW_RETRY`] later
//!   while the old certificate stays in use.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};

/// How long after a failed renewal the probe tries again.
pub const RENEW_RETRY: Duration = Duration::from_secs(60);

/// File name of the identity (certificate + key) in `identity_dir`.
pub const IDENTITY_FILE: &str = "identity.pem";

/// Why the identity could not be read, made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The identity file is damaged.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key or CSR generation failed.
    #[error("cannot make a key and certificate request: {0}")]
    Generate(String),
}

/// The probe's current client certificate and key.
#[derive(Clone)]
pub struct ClientIdentity {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PEM).
    pub key_pem: String,
    /// Hex serial.
    pub serial: String,
    /// Validity start (unix ms).
    pub not_before_ms: i64,
    /// Validity end (unix ms).
    pub not_after_ms: i64,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("serial", &self.serial)
            .field("not_before_ms", &self.not_before_ms)
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

/// True from half of the certificate's validity on.
pub fn renewal_due(id: &ClientIdentity, now_ms: i64) -> bool {
    let half = id.not_before_ms + (id.not_after_ms - id.not_before_ms) / 2;
    now_ms >= half
}

/// A new P-256 key and a CSR for it naming `probe` (the controller sets
/// the certificate's names itself).
pub fn new_key_and_csr(probe: &str) -> Result<(String, String), IdentityError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, probe);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    Ok((key.serialize_pem(), csr))
}

/// Reads `<dir>/identity.pem`; `Ok(None)` when there is none yet.
pub fn load(dir: &Path) -> Result<Option<ClientIdentity>, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IdentityError::Io { path, source }),
    };
    let invalid = |reason: String| IdentityError::Invalid {
        path: path.clone(),
        reason,
    };
    let key_at = text
        .find("-----BEGIN PRIVATE KEY-----")
        .or_else(|| text.find("-----BEGIN EC PRIVATE KEY-----"))
        .ok_or_else(|| invalid("no private key".into()))?;
    let (cert_pem, key_pem) = text.split_at(key_at);
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| invalid(format!("no certificate: {e}")))?;
    let (serial, not_before_ms, not_after_ms) =
        validity(&der).ok_or_else(|| invalid("unreadable certificate".into()))?;
    Ok(Some(ClientIdentity {
        cert_pem: cert_pem.to_owned(),
        key_pem: key_pem.to_owned(),
        serial,
        not_before_ms,
        not_after_ms,
    }))
}

fn validity(der: &[u8]) -> Option<(String, i64, i64)> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let ms = |t: x509_parser::time::ASN1Time| t.timestamp().saturating_mul(1000);
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some((
        serial,
        ms(cert.validity().not_before),
        ms(cert.validity().not_after),
    ))
}

/// Writes a new identity (certificate + key, one 0600 file, atomically) and
/// the issuing CA; returns it as [`load`] would read it.
pub fn store(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<ClientIdentity, IdentityError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| IdentityError::Io { path, source }
    };
    crate::private::create_dir_all(dir).map_err(io(dir))?;
    let mut text = cert_pem.trim_end().to_owned();
    text.push('\n');
    text.push_str(key_pem.trim_end());
    text.push('\n');
    let path = dir.join(IDENTITY_FILE);
    crate::private::write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
    if !ca_pem.is_empty() {
        let ca = dir.join("ca.pem");
        crate::private::write_atomic(&ca, ca_pem.as_bytes()).map_err(io(&ca))?;
    }
    load(dir)?.ok_or_else(|| IdentityError::Invalid {
        path,
        reason: "vanished after writing".into(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renewal_is_due_from_half_life() {
        let id = ClientIdentity {
            cert_pem: String::new(),
            key_pem: String::new(),
            serial: "01".into(),
            not_before_ms: 1000,
            not_after_ms: 3000,
        };
        assert!(!renewal_due(&id, 1999));
        assert!(renewal_due(&id, 2000));
    }

    #[test]
    fn a_stored_identity_reads_back_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let idir = dir.path().join("identity");
        assert!(load(&idir).unwrap().is_none());
        let (key_pem, _csr) = new_key_and_csr("p").unwrap();
        let key = KeyPair::from_pem(&key_pem).unwrap();
        let cert = CertificateParams::new(vec!["p".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let id = store(&idir, &cert.pem(), &key_pem, "").unwrap();
        assert_eq!(id.key_pem.trim(), key_pem.trim());
        assert!(id.not_after_ms > id.not_before_ms);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&idir.join(IDENTITY_FILE)), 0o600);
            assert_eq!(mode(&idir), 0o700);
        }
    }
}
