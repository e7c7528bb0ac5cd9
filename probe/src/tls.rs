//! TLS client configuration for checks: which roots are trusted, the
//! verifier (webpki, but a chain with no path to the store is untrusted
//! before it is expired: `PathFirst`), and the mapping of rustls errors to
//! failure codes. Configs are built once per
//! trust source and cached, because building one (parsing ~150 roots) costs
//! more than a handshake.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};

use crate::check::{
    Failure,
    tls::legacy,
    trust::{Chain, StoreSource, TrustStore},
};

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
    let roots = Arc::new(roots(trust)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| format!("tls setup: {e}"))?;
    let store = match trust {
        Trust::Mozilla => TrustStore::load("mozilla", &StoreSource::Mozilla),
        Trust::CaFile(path) => TrustStore::load(
            "ca_file",
            &StoreSource::Bundle {
                path: path.clone(),
                certs: read_pem_certs(path)?,
            },
        ),
    };
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PathFirst { webpki, store }))
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

/// webpki's verdict, except that a chain with no path to any anchor of the
/// store — whatever the dates — is untrusted, even when webpki met an
/// expired (or not yet valid) member first: what ends the chain is what
/// must be fixed first.
#[derive(Debug)]
struct PathFirst {
    webpki: Arc<WebPkiServerVerifier>,
    store: Arc<TrustStore>,
}

impl ServerCertVerifier for PathFirst {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use CertificateError as C;
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
            )) => {
                let mut der = vec![end_entity.clone().into_owned()];
                der.extend(intermediates.iter().map(|c| c.clone().into_owned()));
                let chain = Chain::new(&der);
                if chain.candidate_paths(&self.store).is_empty() {
                    let (_, end) = legacy::walk(&chain, &self.store);
                    let failure = legacy::end_failure(&chain, &self.store, &end, true);
                    return Err(rustls::Error::InvalidCertificate(C::Other(
                        rustls::OtherError(Arc::new(NoPath(failure))),
                    )));
                }
                verdict
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// [`PathFirst`]'s verdict, carried through rustls to [`classify`]: where
/// the served chain ends (`None`: untrusted without more to say).
#[derive(Debug)]
struct NoPath(Option<Failure>);

impl std::fmt::Display for NoPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(failure) => write!(f, "{failure}"),
            None => f.write_str("no path to a trusted root"),
        }
    }
}

impl std::error::Error for NoPath {}

/// Maps a TLS handshake error to a failure.
pub fn classify(err: &std::io::Error) -> Failure {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let reason = match inner {
        Some(rustls::Error::InvalidCertificate(ce)) => return classify_cert(ce),
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the server sent TLS alert {alert:?}")
        }
        Some(rustls::Error::PeerIncompatible(p)) => {
            format!("the server is incompatible with this client: {p:?}")
        }
        Some(e) => e.to_string(),
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake".to_owned()
        }
        None => err.to_string(),
    };
    Failure::TlsHandshakeFailure {
        client: None,
        reason,
    }
}

/// RFC 3339 text of a rustls time.
fn unix_text(t: rustls_pki_types::UnixTime) -> Option<String> {
    let secs = i64::try_from(t.as_secs()).ok()?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// `other.test` from rustls's `DnsName("other.test")` (and `IpAddress(…)`).
fn presented_name(p: &str) -> String {
    ["DnsName(", "IpAddress("]
        .iter()
        .find_map(|pre| p.strip_prefix(pre).and_then(|r| r.strip_suffix(')')))
        .map(|inner| inner.trim_matches('"').to_owned())
        .unwrap_or_else(|| p.to_owned())
}

fn classify_cert(ce: &CertificateError) -> Failure {
    use CertificateError as C;
    match ce {
        C::Expired => Failure::TlsCertExpired {
            cert: None,
            not_after: None,
            store: None,
            served_path_only: false,
        },
        C::ExpiredContext { not_after, .. } => Failure::TlsCertExpired {
            cert: None,
            not_after: unix_text(*not_after),
            store: None,
            served_path_only: false,
        },
        C::NotValidYet => Failure::TlsCertNotYetValid {
            cert: None,
            not_before: None,
            served_path_only: false,
        },
        C::NotValidYetContext { not_before, .. } => Failure::TlsCertNotYetValid {
            cert: None,
            not_before: unix_text(*not_before),
            served_path_only: false,
        },
        C::UnknownIssuer => Failure::TlsUntrustedRoot {
            store: None,
            served_end: None,
            no_path: false,
        },
        C::NotValidForName => Failure::TlsNameMismatch {
            name: None,
            presented: Vec::new(),
        },
        C::NotValidForNameContext {
            expected,
            presented,
        } => Failure::TlsNameMismatch {
            name: Some(expected.to_str().into_owned()),
            presented: presented.iter().map(|p| presented_name(p)).collect(),
        },
        C::Other(o) if o.0.downcast_ref::<NoPath>().is_some() => {
            match o.0.downcast_ref::<NoPath>().and_then(|n| n.0.clone()) {
                Some(Failure::TlsUntrustedRoot { served_end, .. }) => Failure::TlsUntrustedRoot {
                    store: None,
                    served_end,
                    no_path: true,
                },
                Some(other) => other,
                None => Failure::TlsUntrustedRoot {
                    store: None,
                    served_end: None,
                    no_path: true,
                },
            }
        }
        other => Failure::TlsCertInvalid {
            reason: format!("{other:?}"),
        },
    }
}
