//! Generated PKI: roots, intermediates, leaves, self-signed leaves and cross-signs.
//!
//! Every [`Pki`] is a certificate authority that keeps its `rcgen` parameters and key
//! pair, so it can keep issuing (leaves, intermediates) and can be re-signed by another
//! CA ([`Pki::cross_sign`], the AddTrust pattern). An intermediate remembers the chain
//! above it, so a leaf it issues comes back as the full chain a server should present:
//! leaf first, then intermediates up to (not including) the root.
//!
//! Keys are ECDSA P-256 generated fresh for every certificate. RSA-2048 leaves are
//! available through [`KeyKind::Rsa2048`], but `rcgen` with the `ring` backend cannot
//! generate RSA keys, so every RSA leaf uses one fixed, pre-generated test key
//! (`src/pki/rsa2048.pem`). That key is public test material: never trust it.
//!
//! Serial numbers are random (128 bits), so a cross-sign and the certificate it mirrors
//! have different serials, as in real life.
//!
//! Generation only fails if the system RNG fails (an invariant the whole process relies
//! on, so the infallible constructors panic with that message) or on invalid input (a
//! SAN that is not ASCII): the `try_*` variants return that as an error.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// Message for `expect`s on operations that can only fail if the RNG or `ring` is broken.
const RNG_INVARIANT: &str =
    "key generation and signing with ring only fail if the system RNG fails";

/// Organisation written into every generated subject, so generated certificates are
/// recognisable in logs and dumps.
const ORGANISATION: &str = "Outpost Testkit";

/// A fixed RSA-2048 PKCS#8 key: `rcgen` with `ring` cannot generate RSA keys.
const RSA2048_PEM: &str = include_str!("pki/rsa2048.pem");

/// A certificate authority: a self-signed root ([`Pki::new`]) or an intermediate
/// ([`Pki::intermediate`]) signed by another `Pki`.
///
/// Cloning is cheap and the clone issues with the same key.
#[derive(Clone)]
pub struct Pki {
    name: String,
    params: CertificateParams,
    key: Arc<KeyPair>,
    cert: CertificateDer<'static>,
    /// This CA's certificate followed by its issuers' up to (not including) the root;
    /// empty for a root.
    chain: Vec<CertificateDer<'static>>,
    root_name: String,
    root: CertificateDer<'static>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("name", &self.name)
            .field("root", &self.root_name)
            .field("not_before", &self.params.not_before)
            .field("not_after", &self.params.not_after)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The key algorithm of a generated leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// A fresh ECDSA P-256 key, signed with ECDSA-SHA256.
    #[default]
    EcdsaP256,
    /// RSA-2048 with PKCS#1 SHA-256 signatures. `rcgen` on `ring` cannot generate RSA
    /// keys, so every RSA leaf shares one fixed test key.
    Rsa2048,
    /// A fresh Ed25519 key (the certificate is still signed by its ECDSA issuer):
    /// clients without Ed25519 signature support (OpenSSL < 1.1.1) cannot
    /// complete a handshake with it.
    Ed25519,
}

/// Everything [`Pki::leaf_with`] can vary. Start from `..Default::default()`.
#[derive(Clone, Debug)]
pub struct LeafOptions {
    /// Subject alternative names. Strings that parse as IP addresses become IP SANs,
    /// everything else a DNS SAN (wildcards like `*.example.test` are fine).
    pub sans: Vec<String>,
    /// Start of validity. Default: now − 1 day.
    pub not_before: OffsetDateTime,
    /// End of validity. Default: now + 90 days. Use a past date for an expired leaf.
    pub not_after: OffsetDateTime,
    /// Key algorithm. Default: ECDSA P-256.
    pub key: KeyKind,
    /// Subject common name. Default: the first SAN, or `"outpost-testkit leaf"`.
    pub common_name: Option<String>,
}

impl Default for LeafOptions {
    fn default() -> Self {
        let now = OffsetDateTime::now_utc();
        LeafOptions {
            sans: Vec::new(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(90),
            key: KeyKind::EcdsaP256,
            common_name: None,
        }
    }
}

/// A certificate chain and its private key, ready to serve.
pub struct Identity {
    /// The leaf first, then intermediates up to (not including) the root.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &"**REDACTED**")
            .finish()
    }
}

impl Pki {
    /// A self-signed ECDSA P-256 root CA named `name`, valid from now − 1 day to
    /// now + 3650 days.
    pub fn new(name: &str) -> Pki {
        let now = OffsetDateTime::now_utc();
        Pki::with_validity(name, now - Duration::days(1), now + Duration::days(3650))
    }

    /// A self-signed root CA with explicit validity: use a past `not_after` for an
    /// expired root, a future `not_before` for a not-yet-valid one.
    pub fn with_validity(name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Pki {
        let params = ca_params(name, not_before, not_after);
        let key = KeyPair::generate().expect(RNG_INVARIANT);
        let cert = params.self_signed(&key).expect(RNG_INVARIANT).der().clone();
        Pki {
            name: name.to_owned(),
            params,
            key: Arc::new(key),
            cert: cert.clone(),
            chain: Vec::new(),
            root_name: name.to_owned(),
            root: cert,
        }
    }

    /// This CA's name (its subject common name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this CA is a self-signed root (not an intermediate).
    pub fn is_root(&self) -> bool {
        self.chain.is_empty()
    }

    /// This CA's own certificate (for a root, the same as [`Pki::root_der`]).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The root certificate at the top of this hierarchy: the trust anchor to give
    /// clients. For an intermediate this is the root it chains to.
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// [`Pki::root_der`] as PEM.
    pub fn root_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.root)
    }

    /// Writes [`Pki::root_pem`] to `dir/<root name>.pem` and returns the path.
    pub fn write_root_pem(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("{}.pem", self.root_name));
        std::fs::write(&path, self.root_pem())
            .with_context(|| format!("writing root certificate to {}", path.display()))?;
        Ok(path)
    }

    /// The certificates a server presents above a leaf issued by this CA: this CA's
    /// certificate and its issuers' up to (not including) the root. Empty for a root;
    /// `[intermediate]` for an intermediate signed by a root.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    /// A root store trusting only [`Pki::root_der`].
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut store = rustls::RootCertStore::empty();
        // Adding parses the certificate; ours is always well-formed DER from rcgen.
        store
            .add(self.root.clone())
            .expect("a root generated by rcgen is a parsable trust anchor");
        store
    }

    /// A rustls client config (ring provider, TLS 1.2 and 1.3, no ALPN, no client auth)
    /// trusting only [`Pki::root_der`]. Set `alpn_protocols` on the result as needed.
    pub fn client_config(&self) -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .expect("the ring provider supports rustls' default protocol versions")
        .with_root_certificates(self.root_store())
        .with_no_client_auth()
    }

    /// An intermediate CA named `name` signed by this CA, valid from now − 1 day to
    /// now + 1825 days.
    pub fn intermediate(&self, name: &str) -> Pki {
        let now = OffsetDateTime::now_utc();
        self.intermediate_with(name, now - Duration::days(1), now + Duration::days(1825))
    }

    /// An intermediate CA with explicit validity (for expired intermediates).
    pub fn intermediate_with(
        &self,
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Pki {
        let mut params = ca_params(name, not_before, not_after);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect(RNG_INVARIANT);
        let cert = params
            .signed_by(&key, &self.issuer())
            .expect(RNG_INVARIANT)
            .der()
            .clone();
        let mut chain = Vec::with_capacity(self.chain.len() + 1);
        chain.push(cert.clone());
        chain.extend(self.chain.iter().cloned());
        Pki {
            name: name.to_owned(),
            params,
            key: Arc::new(key),
            cert,
            chain,
            root_name: self.root_name.clone(),
            root: self.root.clone(),
        }
    }

    /// An ECDSA P-256 leaf for `sans` (IP strings become IP SANs, others DNS SANs),
    /// valid from now − 1 day to now + 90 days, with its served chain.
    ///
    /// # Panics
    /// If a SAN is not ASCII; use [`Pki::try_leaf_with`] for untrusted input.
    pub fn leaf(&self, sans: &[&str]) -> Identity {
        self.leaf_with(LeafOptions {
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
    }

    /// A leaf with explicit options (validity, key kind, common name).
    ///
    /// # Panics
    /// If a SAN is not ASCII; use [`Pki::try_leaf_with`] for untrusted input.
    pub fn leaf_with(&self, options: LeafOptions) -> Identity {
        match self.try_leaf_with(options) {
            Ok(identity) => identity,
            Err(err) => panic!("cannot issue test leaf: {err:#}"),
        }
    }

    /// [`Pki::leaf_with`], returning invalid SANs as an error.
    pub fn try_leaf_with(&self, options: LeafOptions) -> anyhow::Result<Identity> {
        let params = leaf_params(&options)?;
        let key = leaf_key(options.key)?;
        let cert = params
            .signed_by(&key, &self.issuer())
            .context("signing leaf certificate")?;
        let mut chain = Vec::with_capacity(self.chain.len() + 1);
        chain.push(cert.der().clone());
        chain.extend(self.chain.iter().cloned());
        Ok(Identity {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// A self-signed ECDSA P-256 leaf (not a CA) for `sans`, valid now − 1 day to
    /// now + 90 days. Its chain is just the leaf.
    ///
    /// # Panics
    /// If a SAN is not ASCII.
    pub fn self_signed_leaf(sans: &[&str]) -> Identity {
        let options = LeafOptions {
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        let result = leaf_params(&options).and_then(|params| {
            let key = KeyPair::generate().context("generating key")?;
            let cert = params.self_signed(&key).context("self-signing leaf")?;
            Ok(Identity {
                chain: vec![cert.der().clone()],
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            })
        });
        match result {
            Ok(identity) => identity,
            Err(err) => panic!("cannot issue self-signed test leaf: {err:#}"),
        }
    }

    /// A cross-sign: a certificate with `other`'s subject, public key, extensions and
    /// validity, issued by `self` (as AddTrust signed USERTrust). A client trusting
    /// only `self` can then reach `other`'s hierarchy through it.
    pub fn cross_sign(&self, other: &Pki) -> CertificateDer<'static> {
        self.cross_sign_with_validity(other, other.params.not_before, other.params.not_after)
    }

    /// [`Pki::cross_sign`] with explicit validity, e.g. an already expired cross-sign
    /// as in the 2020 AddTrust expiry.
    pub fn cross_sign_with_validity(
        &self,
        other: &Pki,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CertificateDer<'static> {
        let mut params = other.params.clone();
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params
            .signed_by(other.key.as_ref(), &self.issuer())
            .expect(RNG_INVARIANT)
            .der()
            .clone()
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, self.key.as_ref())
    }
}

impl Identity {
    /// A rustls server config (ring provider, TLS 1.2 and 1.3) presenting this identity
    /// with ALPN `h2` then `http/1.1`.
    ///
    /// # Panics
    /// If the identity is unusable (empty chain, key not matching the leaf): identities
    /// from [`Pki`] never are. Use [`Identity::try_server_config_with`] for hand-built ones.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config_with(
            rustls::DEFAULT_VERSIONS,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        )
    }

    /// A rustls server config limited to `versions` (e.g. `&[&rustls::version::TLS12]`)
    /// and offering `alpn` (empty: no ALPN extension in the reply).
    ///
    /// # Panics
    /// As [`Identity::server_config`].
    pub fn server_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: Vec<Vec<u8>>,
    ) -> Arc<rustls::ServerConfig> {
        match self.try_server_config_with(versions, alpn) {
            Ok(config) => config,
            Err(err) => panic!("unusable test identity: {err:#}"),
        }
    }

    /// [`Identity::server_config_with`], returning an unusable identity as an error.
    pub fn try_server_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: Vec<Vec<u8>>,
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .context("choosing TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(self.chain.clone(), self.key.clone_key())
        .context("loading certificate chain and key")?;
        config.alpn_protocols = alpn;
        Ok(Arc::new(config))
    }

    /// The leaf certificate (first in the chain), if the chain is not empty.
    pub fn leaf_der(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }

    /// The chain as concatenated PEM blocks, leaf first.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|cert| pem_encode("CERTIFICATE", cert))
            .collect()
    }

    /// The private key as PEM (`PRIVATE KEY` for PKCS#8).
    pub fn key_pem(&self) -> String {
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem_encode(label, self.key.secret_der())
    }

    /// Writes `dir/<stem>.crt` (chain) and `dir/<stem>.key` and returns both paths, for
    /// processes (the demo) that take certificate files.
    pub fn write_pem(&self, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, self.chain_pem())
            .with_context(|| format!("writing certificate chain to {}", cert_path.display()))?;
        std::fs::write(&key_path, self.key_pem())
            .with_context(|| format!("writing private key to {}", key_path.display()))?;
        Ok((cert_path, key_path))
    }
}

fn ca_params(
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params
}

fn leaf_params(options: &LeafOptions) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    for san in &options.sans {
        params.subject_alt_names.push(match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                san.clone()
                    .try_into()
                    .with_context(|| format!("SAN {san:?} is not a valid DNS name (ASCII only)"))?,
            ),
        });
    }
    let common_name = options
        .common_name
        .clone()
        .or_else(|| options.sans.first().cloned())
        .unwrap_or_else(|| "outpost-testkit leaf".to_owned());
    params.distinguished_name = subject(&common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if options.key == KeyKind::Rsa2048 {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = options.not_before;
    params.not_after = options.not_after;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn leaf_key(kind: KeyKind) -> anyhow::Result<KeyPair> {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate().context("generating ECDSA P-256 key"),
        KeyKind::Rsa2048 => {
            KeyPair::from_pkcs8_pem_and_sign_algo(RSA2048_PEM, &rcgen::PKCS_RSA_SHA256)
                .context("loading the fixed RSA-2048 test key")
        }
        KeyKind::Ed25519 => {
            KeyPair::generate_for(&rcgen::PKCS_ED25519).context("generating Ed25519 key")
        }
    }
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANISATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = crate::random_bytes();
    // Positive and without a leading zero byte, so it encodes in exactly 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// PEM-encodes `der` under `label` with 64-column base64 lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        let sextets = [n >> 18, n >> 12, n >> 6, n];
        for (i, sextet) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                b64.push(ALPHABET[(sextet & 0x3f) as usize]);
            } else {
                b64.push(b'=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        // The alphabet is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject as _;

    #[test]
    fn pem_round_trips_through_pki_types_parser() {
        for len in [0usize, 1, 2, 3, 4, 63, 64, 65, 200] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let pem = pem_encode("CERTIFICATE", &der);
            if len == 0 {
                continue; // pki-types rejects empty sections; the encoder is still fine.
            }
            let parsed = CertificateDer::from_pem_slice(pem.as_bytes()).expect("parses");
            assert_eq!(parsed.as_ref(), der.as_slice(), "len {len}");
        }
    }

    #[test]
    fn intermediate_leaf_chain_is_leaf_then_intermediates() {
        let root = Pki::new("root-a");
        let inter = root.intermediate("inter-a");
        let inter2 = inter.intermediate("inter-b");
        assert!(root.is_root());
        assert!(root.chain_der().is_empty());
        assert_eq!(inter.chain_der(), vec![inter.cert_der()]);
        let leaf = inter2.leaf(&["localhost", "127.0.0.1"]);
        assert_eq!(leaf.chain.len(), 3);
        assert_eq!(leaf.chain[1], inter2.cert_der());
        assert_eq!(leaf.chain[2], inter.cert_der());
        assert_eq!(inter2.root_der(), root.root_der());
    }

    #[test]
    fn rsa_leaf_builds_a_server_config() {
        let root = Pki::new("root-rsa");
        let leaf = root.leaf_with(LeafOptions {
            sans: vec!["localhost".into()],
            key: KeyKind::Rsa2048,
            ..Default::default()
        });
        leaf.try_server_config_with(rustls::DEFAULT_VERSIONS, Vec::new())
            .expect("rsa identity loads");
    }

    #[test]
    fn non_ascii_san_is_an_error_not_a_panic() {
        let root = Pki::new("root-b");
        let err = root
            .try_leaf_with(LeafOptions {
                sans: vec!["exämple.test".into()],
                ..Default::default()
            })
            .expect_err("non-ascii SAN rejected");
        assert!(format!("{err:#}").contains("exämple"));
    }

    #[test]
    fn write_root_pem_uses_root_name() {
        let dir = std::env::temp_dir().join(format!(
            "outpost-testkit-{}-{}",
            std::process::id(),
            u64::from_le_bytes(crate::random_bytes())
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let root = Pki::new("root-file");
        let path = root
            .intermediate("inter")
            .write_root_pem(&dir)
            .expect("writes");
        assert_eq!(path, dir.join("root-file.pem"));
        let text = std::fs::read_to_string(&path).expect("reads");
        assert_eq!(text, root.root_pem());
        std::fs::remove_dir_all(&dir).ok();
    }
}
