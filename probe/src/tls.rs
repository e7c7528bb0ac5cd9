//! TLS client configuration for checks: which roots are trusted, and the
//! mapping of rustls errors to failure codes. Configs are built once per
//! trust source and cached, because building one (parsing ~150 roots) costs
//! more than a handshake.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use rustls::{CertificateError, ClientConfig, RootCertStore, crypto::CryptoProvider};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::check::{Failure, FailureCode};

/// The one crypto provider used by the probe (ring).
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The bundled Mozilla root program (webpki-roots).
    Mozilla,
    /// A PEM bundle on disk.
    CaFile(PathBuf),
}

/// Reads every certificate in a PEM file.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("invalid PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {} holds no certificates", path.display()));
    }
    Ok(certs)
}

fn roots(trust: &Trust) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match trust {
        Trust::Mozilla => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Trust::CaFile(path) => {
            for c in read_pem_certs(path)? {
                store
                    .add(c)
                    .map_err(|e| format!("unusable certificate in {}: {e}", path.display()))?;
            }
        }
    }
    Ok(store)
}

/// A client config for `trust` offering `alpn`, cached.
pub fn client_config(trust: &Trust, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    type Cache = Mutex<HashMap<(Trust, Vec<Vec<u8>>), Arc<ClientConfig>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (
        trust.clone(),
        alpn.iter().map(|a| a.to_vec()).collect::<Vec<_>>(),
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls setup: {e}"))?
        .with_root_certificates(roots(trust)?)
        .with_no_client_auth();
    cfg.alpn_protocols = key.1.clone();
    // Each run measures a full handshake: no session resumption.
    cfg.resumption = rustls::client::Resumption::disabled();
    let cfg = Arc::new(cfg);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, cfg.clone());
    Ok(cfg)
}

/// Maps a TLS handshake error to a failure.
pub fn classify(err: &std::io::Error) -> Failure {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(ce)) => classify_cert(ce),
        Some(rustls::Error::AlertReceived(alert)) => Failure::new(
            FailureCode::TlsHandshakeFailure,
            format!("server sent TLS alert {alert:?} during the handshake"),
        ),
        Some(rustls::Error::PeerIncompatible(p)) => Failure::new(
            FailureCode::TlsHandshakeFailure,
            format!("server is incompatible with this client: {p:?}"),
        ),
        Some(e) => Failure::new(
            FailureCode::TlsHandshakeFailure,
            format!("tls handshake failed: {e}"),
        ),
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => Failure::new(
            FailureCode::TlsHandshakeFailure,
            "server closed the connection during the TLS handshake",
        ),
        None => Failure::new(
            FailureCode::TlsHandshakeFailure,
            format!("tls handshake failed: {err}"),
        ),
    }
}

fn classify_cert(ce: &CertificateError) -> Failure {
    use CertificateError as C;
    let (code, msg) = match ce {
        C::Expired | C::ExpiredContext { .. } => (
            FailureCode::TlsCertExpired,
            format!("certificate expired: {ce:?}"),
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => (
            FailureCode::TlsCertNotYetValid,
            format!("certificate not yet valid: {ce:?}"),
        ),
        C::UnknownIssuer => (
            FailureCode::TlsUntrustedRoot,
            "certificate chain does not lead to a trusted root (unknown issuer)".to_owned(),
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => (
            FailureCode::TlsNameMismatch,
            format!("certificate is not valid for the requested name: {ce:?}"),
        ),
        other => (
            FailureCode::TlsCertInvalid,
            format!("certificate rejected: {other:?}"),
        ),
    };
    Failure::new(code, msg)
}
