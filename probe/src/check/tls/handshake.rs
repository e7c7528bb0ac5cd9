//! Handshakes for the `tls` check: the recording verifier, one client config
//! per handshake kind, and connect + handshake within the run's deadline.
//!
//! Every handshake records the presented chain and never fails on the
//! certificate: trust is evaluated afterwards, per store and profile, at an
//! injectable `now` (see [`super::evaluate`]).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use rustls::{
    AlertDescription, ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedCipherSuite,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{HandshakeKind, stack};
use crate::check::{Failure, failure::Phase};

/// What a [`RecordingVerifier`] saw.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// The presented chain, leaf first, exactly as served.
    pub chain: Vec<CertificateDer<'static>>,
    /// The wrapped verifier's verdict, when there is one.
    pub outcome: Option<Result<(), rustls::Error>>,
}

/// A `ServerCertVerifier` that records the presented chain of every
/// handshake, valid or not. With an inner verifier it also records that
/// verifier's verdict and, in enforce mode, returns it; without one (or in
/// report mode) the handshake always proceeds. Handshake signatures are
/// always verified for real.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Option<(Arc<dyn ServerCertVerifier>, bool)>,
    schemes: Vec<SignatureScheme>,
    algorithms: WebPkiSupportedAlgorithms,
    recorded: Mutex<Recorded>,
}

impl RecordingVerifier {
    /// Records only: every certificate is accepted.
    pub fn recording(provider: &CryptoProvider) -> Self {
        let algorithms = provider.signature_verification_algorithms;
        RecordingVerifier {
            inner: None,
            schemes: algorithms.supported_schemes(),
            algorithms,
            recorded: Mutex::default(),
        }
    }

    /// Records and asks `inner`; `enforce` makes its verdict decide the handshake.
    pub fn wrapping(
        provider: &CryptoProvider,
        inner: Arc<dyn ServerCertVerifier>,
        enforce: bool,
    ) -> Self {
        let mut v = Self::recording(provider);
        v.inner = Some((inner, enforce));
        v
    }

    /// Offers only the signature schemes `keep` accepts (restricts the
    /// certificate key types a server may use).
    pub fn with_schemes(mut self, keep: impl Fn(SignatureScheme) -> bool) -> Self {
        self.schemes.retain(|s| keep(*s));
        self
    }

    /// What was recorded so far.
    pub fn recorded(&self) -> Recorded {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let outcome = self.inner.as_ref().map(|(v, enforce)| {
            let r = v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ());
            (r, *enforce)
        });
        let mut rec = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        rec.chain = chain;
        rec.outcome = outcome.as_ref().map(|(r, _)| r.clone());
        match outcome {
            Some((Err(e), true)) => Err(e),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

fn is_rsa(s: SignatureScheme) -> bool {
    format!("{s:?}").starts_with("RSA_")
}

fn is_ecdsa(s: SignatureScheme) -> bool {
    format!("{s:?}").starts_with("ECDSA_")
}

/// A recording client config for `kind`, and its verifier.
fn client_config(kind: HandshakeKind) -> Result<(ClientConfig, Arc<RecordingVerifier>), Failure> {
    let stack = match kind {
        HandshakeKind::Legacy => &stack::OPENSSL_1_0_2,
        _ => &stack::CURRENT,
    };
    let base = match kind {
        HandshakeKind::Legacy => Arc::new(stack.provider()),
        _ => crate::tls::provider(),
    };
    let family: Option<fn(SignatureScheme) -> bool> = match kind {
        HandshakeKind::RsaOnly => Some(is_rsa),
        HandshakeKind::EcdsaOnly => Some(is_ecdsa),
        _ => None,
    };
    let provider = match family {
        None => base,
        Some(keep) => {
            let mut p = (*base).clone();
            // TLS 1.2 suites name the key type; TLS 1.3 suites do not (the
            // offered signature schemes restrict it there).
            p.cipher_suites.retain(|s| match s {
                SupportedCipherSuite::Tls12(t) => t.sign.iter().any(|sc| keep(*sc)),
                SupportedCipherSuite::Tls13(_) => true,
            });
            Arc::new(p)
        }
    };
    let mut verifier = RecordingVerifier::recording(&provider);
    if let Some(keep) = family {
        verifier = verifier.with_schemes(keep);
    }
    if stack.signature_schemes.is_some() {
        verifier = verifier.with_schemes(|s| stack.offers(s));
    }
    let verifier = Arc::new(verifier);
    let versions: &[&'static rustls::SupportedProtocolVersion] = match kind {
        HandshakeKind::Tls13 => &[&rustls::version::TLS13],
        HandshakeKind::Tls12 => &[&rustls::version::TLS12],
        _ => stack.versions,
    };
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| Failure::InternalError {
            reason: format!("tls setup: {e}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_sni = kind != HandshakeKind::NoSni;
    Ok((cfg, verifier))
}

/// The outcome of one handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Which client made it.
    pub kind: HandshakeKind,
    /// Negotiated parameters, or why the handshake failed.
    pub result: Result<Negotiated, Failure>,
    /// The presented chain (empty when the server sent none).
    pub chain: Vec<CertificateDer<'static>>,
    /// TCP connect time.
    pub connect: Option<Duration>,
    /// Handshake time.
    pub tls: Option<Duration>,
}

/// What a successful handshake negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// `"1.2"` or `"1.3"`.
    pub version: String,
    /// IANA suite name.
    pub cipher_suite: String,
}

/// Connects to `addr` and handshakes as `kind` for `server_name`, within `deadline`.
pub async fn handshake(
    kind: HandshakeKind,
    addr: SocketAddr,
    server_name: &ServerName<'static>,
    deadline: tokio::time::Instant,
) -> Handshake {
    let mut out = Handshake {
        kind,
        result: Err(Failure::Timeout {
            phase: Phase::Tls,
            after: deadline.saturating_duration_since(tokio::time::Instant::now()),
            target: Some(addr.to_string()),
        }),
        chain: Vec::new(),
        connect: None,
        tls: None,
    };
    let (cfg, verifier) = match client_config(kind) {
        Ok(c) => c,
        Err(f) => {
            out.result = Err(f);
            return out;
        }
    };
    let started = Instant::now();
    let tcp = match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => {
            if let Err(Failure::Timeout { phase, .. }) = &mut out.result {
                *phase = Phase::Connect;
            }
            return out;
        }
        Ok(Err(e)) => {
            out.result = Err(if e.kind() == std::io::ErrorKind::ConnectionRefused {
                Failure::ConnectionRefused {
                    address: addr.to_string(),
                }
            } else {
                Failure::ConnectFailure {
                    address: addr.to_string(),
                    error: e.to_string(),
                }
            });
            return out;
        }
        Ok(Ok(s)) => s,
    };
    // Best effort: only affects latency.
    let _ = tcp.set_nodelay(true);
    out.connect = Some(started.elapsed());
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let r = tokio::time::timeout_at(deadline, connector.connect(server_name.clone(), tcp)).await;
    out.chain = verifier.recorded().chain;
    match r {
        Err(_) => {}
        Ok(Err(e)) => out.result = Err(classify(kind, &e)),
        Ok(Ok(stream)) => {
            out.tls = Some(started.elapsed());
            let (_, conn) = stream.get_ref();
            out.result = Ok(Negotiated {
                version: match conn.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "1.3".to_owned(),
                    Some(rustls::ProtocolVersion::TLSv1_2) => "1.2".to_owned(),
                    other => format!("{other:?}"),
                },
                cipher_suite: conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// Maps a handshake error to a failure: version refusals are
/// `tls_protocol_unsupported`, everything else `tls_handshake_failure`.
fn classify(kind: HandshakeKind, err: &std::io::Error) -> Failure {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let version = match inner {
        Some(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)) => true,
        Some(rustls::Error::PeerIncompatible(p)) => {
            let t = format!("{p:?}");
            t.contains("Tls1") || t.contains("Version")
        }
        _ => false,
    };
    let base = crate::tls::classify(err);
    if version {
        Failure::TlsProtocolUnsupported {
            client: kind.name().to_owned(),
            negotiated: None,
            min_tls_version: None,
            reason: Some(match base {
                Failure::TlsHandshakeFailure { reason, .. } => reason,
                other => other.to_string(),
            }),
        }
    } else {
        match base {
            Failure::TlsHandshakeFailure { reason, .. } => Failure::TlsHandshakeFailure {
                client: Some(kind.name().to_owned()),
                reason,
            },
            // The recording verifier accepts every chain: a certificate
            // error here is the handshake's own.
            other => Failure::TlsHandshakeFailure {
                client: Some(kind.name().to_owned()),
                reason: other.to_string(),
            },
        }
    }
}
