//! Per-probe mutual TLS identities: the probe CA (`[server] probe_ca`),
//! one-time enrollment tokens, issuing probes' client certificates from
//! their CSRs, and reading the probe out of a verified certificate.
//!
//! Design notes:
//! - **Who a certificate is.** Each certificate carries the SAN URI
//!   `spiffe://outpost/probe/<name>` (and `CN=<name>`) and a random 127-bit
//!   serial. The controller trusts neither alone: a verified peer
//!   certificate's serial is looked up in `probe_certificates`, whose row
//!   names the probe; that probe must still be in `[[probes]]`, the row must
//!   not be revoked and the SAN must name the same probe. Name and region
//!   then come from the config, never from the hello.
//! - **Enrollment tokens** are 256 random bits (`ope_…`, 47 characters) shown
//!   once by `outpost-controller probe enroll`. Only their SHA-256 is stored
//!   (`enrollment_tokens`): with 256 bits of entropy a slow hash adds
//!   nothing, and a lookup by hash lets any replica redeem it. Redeeming
//!   marks the token used and records the certificate in one transaction,
//!   so a token works once even when two replicas race.
//! - **Keys.** The probe makes its key and sends a CSR; only the public key
//!   is taken from it (subject, SANs and extensions are the controller's).
//!   The CA key never leaves the controller hosts and must be 0600.
//! - **Time.** Validity starts at the controller's clock
//!   ([`crate::Controller::clock`]), and the gRPC listener verifies client
//!   certificates against the same clock, so tests that move a manual clock
//!   see certificates expire and renew as in production.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use time::OffsetDateTime;

use crate::config::TlsFiles;

/// Default `[server] probe_cert_validity`.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// Default lifetime of an enrollment token (`probe enroll --ttl`).
pub const DEFAULT_ENROLL_TTL: Duration = Duration::from_secs(3600);
/// Validity of a CA made by `ca init`.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The SAN URI prefix of a probe certificate; the probe's name follows.
pub const SPIFFE_PREFIX: &str = "spiffe://outpost/probe/";

/// Why the probe CA or an issuance failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The CA key is readable by others than its owner.
    #[error(
        "{path} is mode {mode:o}: the probe CA key must be readable by its owner only (chmod 600 {path})"
    )]
    KeyMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The probe's certificate request is unusable.
    #[error("invalid certificate request: {0}")]
    Csr(String),
    /// Signing failed.
    #[error("cannot issue the certificate: {0}")]
    Sign(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// `ca init` would overwrite an existing CA.
    #[error(
        "{0} exists already: a new CA would orphan every issued probe certificate; remove it first if that is what you want"
    )]
    Exists(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Refuses a key file that group or others may read.
pub fn check_key_mode(path: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(io_err(path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::KeyMode {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

/// A certificate the probe CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Hex serial (lowercase, no separators).
    pub serial: String,
    /// Hex SHA-256 of the DER.
    pub fingerprint: String,
    /// Validity start, Unix ms.
    pub not_before_ms: i64,
    /// Validity end, Unix ms.
    pub not_after_ms: i64,
}

/// The probe CA: its certificate and signing key.
pub struct ProbeCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ProbeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeCa").finish_non_exhaustive()
    }
}

impl ProbeCa {
    /// Loads `server.probe_ca` (the key must be 0600).
    pub fn load(files: &TlsFiles) -> Result<ProbeCa, IdentityError> {
        check_key_mode(&files.key_file)?;
        let cert_pem =
            std::fs::read_to_string(&files.cert_file).map_err(io_err(&files.cert_file))?;
        let key_pem = std::fs::read_to_string(&files.key_file).map_err(io_err(&files.key_file))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            IdentityError::Pem {
                path: files.cert_file.clone(),
                reason: format!("no certificate: {e}"),
            }
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| IdentityError::Pem {
            path: files.key_file.clone(),
            reason: format!("no usable private key: {e}"),
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| IdentityError::Pem {
            path: files.cert_file.clone(),
            reason: format!("not a CA certificate for this key: {e}"),
        })?;
        Ok(ProbeCa {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER (the client verifier's only root).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a client certificate for `probe` to the key in `csr_pem`,
    /// valid from `now` for `validity`.
    pub fn issue(
        &self,
        csr_pem: &str,
        probe: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, IdentityError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| IdentityError::Csr(e.to_string()))?;
        let serial: [u8; 16] =
            crate::auth::random_bytes().map_err(|_| IdentityError::Sign("no randomness".into()))?;
        let mut serial = serial;
        // Positive and minimal in DER: top bit clear, first byte non-zero.
        serial[0] = (serial[0] & 0x7f) | 0x01;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, probe);
        params.distinguished_name = dn;
        let uri = format!("{SPIFFE_PREFIX}{probe}");
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into()
                .map_err(|e: rcgen::Error| IdentityError::Sign(e.to_string()))?,
        )];
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = now;
        params.not_after = now + validity;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let req = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = req
            .signed_by(&self.issuer)
            .map_err(|e| IdentityError::Sign(e.to_string()))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            serial: hex(&serial),
            fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, cert.der()).as_ref()),
            not_before_ms: outpost_probe::clock::unix_ms(now),
            not_after_ms: outpost_probe::clock::unix_ms(now + validity),
        })
    }
}

/// Hex SHA-256 of the first certificate in `pem` (the inventory's key).
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    Some(hex(
        ring::digest::digest(&ring::digest::SHA256, &der).as_ref()
    ))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `outpost-controller ca init`: writes `ca.pem` and `ca.key` (0600) into
/// `dir` (created 0700): ECDSA P-256, valid 10 years. Refuses to overwrite.
pub fn init_ca(dir: &Path, now: OffsetDateTime) -> Result<TlsFiles, IdentityError> {
    let files = TlsFiles {
        cert_file: dir.join("ca.pem"),
        key_file: dir.join("ca.key"),
    };
    for f in [&files.cert_file, &files.key_file] {
        if f.exists() {
            return Err(IdentityError::Exists(f.clone()));
        }
    }
    outpost_probe::private::create_dir_all(dir).map_err(io_err(dir))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IdentityError::Sign(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Outpost probe CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now;
    params.not_after = now + CA_VALIDITY;
    let cert = params
        .self_signed(&key)
        .map_err(|e| IdentityError::Sign(e.to_string()))?;
    outpost_probe::private::write_atomic(&files.key_file, key.serialize_pem().as_bytes())
        .map_err(io_err(&files.key_file))?;
    outpost_probe::private::write_atomic(&files.cert_file, cert.pem().as_bytes())
        .map_err(io_err(&files.cert_file))?;
    Ok(files)
}

/// A new enrollment token: `ope_` + 256 random bits, base64url.
pub fn new_enrollment_token() -> Result<String, IdentityError> {
    use base64::Engine as _;
    let raw: [u8; 32] =
        crate::auth::random_bytes().map_err(|_| IdentityError::Sign("no randomness".into()))?;
    Ok(format!(
        "ope_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    ))
}

/// Makes and records a one-time enrollment token for `probe` (in
/// `region`), usable until `now_ms + ttl`; returns the token, which is
/// not stored (`outpost-controller probe enroll`).
pub async fn new_enrollment(
    store: &crate::store::Store,
    probe: &str,
    region: &str,
    now_ms: i64,
    ttl: Duration,
) -> Result<String, IdentityError> {
    let token = new_enrollment_token()?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    store
        .insert_enrollment_token(&crate::store::EnrollmentTokenRow {
            token_hash: enrollment_token_hash(&token),
            probe: probe.to_owned(),
            region: region.to_owned(),
            created_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
            used_ms: None,
        })
        .await?;
    Ok(token)
}

/// What `enrollment_tokens.token_hash` holds: hex SHA-256 of the token.
pub fn enrollment_token_hash(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// The probe name and serial a (verified) client certificate claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The name in the SAN URI.
    pub probe: String,
    /// Hex serial.
    pub serial: String,
}

/// Reads the SAN URI `spiffe://outpost/probe/<name>` and the serial.
pub fn claimed(der: &[u8]) -> Option<Claimed> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let probe = san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) => u.strip_prefix(SPIFFE_PREFIX).map(str::to_owned),
        _ => None,
    })?;
    Some(Claimed {
        probe,
        serial: hex(cert.raw_serial()),
    })
}

/// The client verifier of the gRPC listener: the probe CA as the only
/// root; connections without a certificate are let through (bearer tokens
/// and `Enroll`), ones with a certificate from another CA fail the handshake.
pub fn client_verifier(
    ca: &ProbeCa,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    Ok(
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()?,
    )
}

/// rustls reads "now" from the controller's clock (see the design notes).
#[derive(Debug)]
pub struct ClockTime(pub crate::Clock);

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<rustls_pki_types::UnixTime> {
        let ms = u64::try_from(self.0.unix_ms()).ok()?;
        Some(rustls_pki_types::UnixTime::since_unix_epoch(
            Duration::from_millis(ms),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn csr() -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
    }

    #[test]
    fn init_writes_a_private_key_and_issued_certificates_name_their_probe() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let files = init_ca(&dir.path().join("ca"), now).unwrap();
        check_key_mode(&files.key_file).unwrap();
        assert!(matches!(
            init_ca(&dir.path().join("ca"), now),
            Err(IdentityError::Exists(_))
        ));
        let ca = ProbeCa::load(&files).unwrap();
        let a = ca.issue(&csr(), "probe-eu", now, DEFAULT_VALIDITY).unwrap();
        let b = ca.issue(&csr(), "probe-eu", now, DEFAULT_VALIDITY).unwrap();
        assert_ne!(a.serial, b.serial);
        assert_eq!(a.not_after_ms - a.not_before_ms, 7 * 86_400_000);
        let der = CertificateDer::from_pem_slice(a.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            claimed(&der),
            Some(Claimed {
                probe: "probe-eu".into(),
                serial: a.serial.clone()
            })
        );
        assert!(matches!(
            ca.issue("not a csr", "p", now, DEFAULT_VALIDITY),
            Err(IdentityError::Csr(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let files = init_ca(dir.path(), OffsetDateTime::now_utc()).unwrap();
        std::fs::set_permissions(&files.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ProbeCa::load(&files),
            Err(IdentityError::KeyMode { mode: 0o644, .. })
        ));
    }

    #[test]
    fn enrollment_tokens_are_long_and_hashed() {
        let t = new_enrollment_token().unwrap();
        assert!(t.len() >= 32, "{t}");
        assert_ne!(t, new_enrollment_token().unwrap());
        let h = enrollment_token_hash(&t);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&t));
    }
}
