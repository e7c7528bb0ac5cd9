//! Trust stores and the certificate-chain model behind the `tls` check.
//!
//! - [`TrustStore`]: a named set of trust anchors. `mozilla` (webpki-roots:
//!   subject and key only, so a root's own expiry is unknown), `system` (the
//!   OS store through rustls-native-certs: full certificates) and PEM bundles
//!   (full certificates). Each store also carries a rustls
//!   `WebPkiServerVerifier` for the `modern` model.
//! - [`Cert`]: one parsed certificate (names, validity, key, signature) and
//!   [`CertInfo`], its inventory record ([`describe_chain`]).
//! - [`Chain`]: a presented chain and [`Chain::candidate_paths`], every path
//!   from the leaf through presented certificates to an anchor of a store,
//!   each link matched by name and verified by signature — the paths a
//!   client that tries alternates (webpki, OpenSSL ≥ 1.1, browsers) can build.
//!   A path's [`Window`] is the intersection of its members' validity, the
//!   anchor's included when its full certificate is known.
//!
//! The legacy (OpenSSL 1.0.x) walk over the same model is in
//! [`super::tls::legacy`].

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::{
    certificate::X509Certificate, extensions::GeneralName, oid_registry::Oid, prelude::FromDer,
    public_key::PublicKey, x509::SubjectPublicKeyInfo,
};

/// Longest path searched (certificates below the anchor).
const MAX_DEPTH: usize = 8;
/// Most paths enumerated per chain and store.
const MAX_PATHS: usize = 64;

/// Where a store's anchors come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSource {
    /// webpki-roots (Mozilla's root program): anchors without dates.
    Mozilla,
    /// The operating system's store (rustls-native-certs).
    System,
    /// A PEM bundle, read when the config was validated.
    Bundle {
        /// The file.
        path: PathBuf,
        /// Its certificates.
        certs: Vec<CertificateDer<'static>>,
    },
}

/// A trust anchor: subject and key, and the full certificate when known.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// DER of the subject Name (with its SEQUENCE header).
    pub subject: Vec<u8>,
    /// DER of the SubjectPublicKeyInfo (with its SEQUENCE header).
    pub spki: Vec<u8>,
    /// The subject in RFC 4514-ish text.
    pub label: String,
    /// The full root certificate, when the store has it (not for `mozilla`).
    pub cert: Option<Cert>,
}

/// A named trust store, ready to evaluate chains.
#[derive(Debug, Clone)]
pub struct TrustStore {
    /// The name used in config and results (`mozilla`, `system`, `old-device`).
    pub name: String,
    /// Its anchors.
    pub anchors: Vec<Anchor>,
    /// The rustls verifier over the same anchors; `None` when the store is empty.
    pub verifier: Option<Arc<WebPkiServerVerifier>>,
    /// Problems met while loading (unparsable certificates, an empty OS store).
    pub notes: Vec<String>,
}

impl TrustStore {
    /// Builds the store `name` from `source`. `mozilla` and `system` are built
    /// once per process and shared.
    pub fn load(name: &str, source: &StoreSource) -> Arc<TrustStore> {
        static MOZILLA: OnceLock<Arc<TrustStore>> = OnceLock::new();
        static SYSTEM: OnceLock<Arc<TrustStore>> = OnceLock::new();
        match source {
            StoreSource::Mozilla => MOZILLA.get_or_init(|| Arc::new(mozilla())).clone(),
            StoreSource::System => SYSTEM.get_or_init(|| Arc::new(system())).clone(),
            StoreSource::Bundle { certs, .. } => Arc::new(from_certs(name, certs, Vec::new())),
        }
    }

    /// The anchor whose subject is `issuer` and whose key verifies `child`.
    pub fn issuer_of(&self, child: &Cert) -> Option<usize> {
        self.anchors
            .iter()
            .position(|a| a.subject == child.issuer_raw && verifies(&child.der, &a.spki))
    }

    /// Whether `cert` itself is one of the anchors (same subject and key).
    pub fn contains(&self, cert: &Cert) -> Option<usize> {
        self.anchors
            .iter()
            .position(|a| a.subject == cert.subject_raw && a.spki == cert.spki_raw)
    }
}

fn mozilla() -> TrustStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let anchors = webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .map(|ta| {
            let subject = der_sequence(ta.subject.as_ref());
            let label = x509_parser::x509::X509Name::from_der(&subject)
                .map(|(_, n)| n.to_string())
                .unwrap_or_else(|_| "unparsable subject".to_owned());
            Anchor {
                subject,
                spki: der_sequence(ta.subject_public_key_info.as_ref()),
                label,
                cert: None,
            }
        })
        .collect();
    TrustStore {
        name: "mozilla".to_owned(),
        anchors,
        verifier: verifier(roots),
        notes: Vec::new(),
    }
}

fn system() -> TrustStore {
    let found = rustls_native_certs::load_native_certs();
    let mut notes: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
    if found.certs.is_empty() {
        notes.push("the operating system's trust store holds no certificates".to_owned());
    }
    from_certs("system", &found.certs, notes)
}

fn from_certs(name: &str, certs: &[CertificateDer<'static>], mut notes: Vec<String>) -> TrustStore {
    let mut roots = RootCertStore::empty();
    let (_, bad) = roots.add_parsable_certificates(certs.iter().cloned());
    if bad > 0 {
        notes.push(format!(
            "{bad} certificates in {name} are not usable as anchors"
        ));
    }
    let anchors = certs
        .iter()
        .filter_map(|der| Cert::parse(der))
        .map(|c| Anchor {
            subject: c.subject_raw.clone(),
            spki: c.spki_raw.clone(),
            label: c.info.subject.clone(),
            cert: Some(c),
        })
        .collect();
    TrustStore {
        name: name.to_owned(),
        anchors,
        verifier: verifier(roots),
        notes,
    }
}

fn verifier(roots: RootCertStore) -> Option<Arc<WebPkiServerVerifier>> {
    if roots.is_empty() {
        return None;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
        .build()
        .ok()
}

/// Wraps DER content in a SEQUENCE header (webpki anchors store subject and
/// SPKI without it).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![0x30];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Whether the key `issuer_spki` (DER) verifies the signature on `child_der`.
pub fn verifies(child_der: &[u8], issuer_spki: &[u8]) -> bool {
    let (Ok((_, child)), Ok((_, spki))) = (
        X509Certificate::from_der(child_der),
        SubjectPublicKeyInfo::from_der(issuer_spki),
    ) else {
        return false;
    };
    child.verify_signature(Some(&spki)).is_ok()
}

/// One certificate as the inventory records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertInfo {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint_sha256: String,
    /// Subject, e.g. `"O=Example, CN=www.example.net"`.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// `"ECDSA P-256"`, `"RSA 2048"`, `"Ed25519"`…
    pub key_type: String,
    /// E.g. `"ecdsa-with-SHA256"`, `"sha256WithRSAEncryption"`.
    pub signature_algorithm: String,
    /// Position in the presented chain (0 = leaf); `null` for a store's root.
    pub position: Option<usize>,
    /// The trust store a root came from (roots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_store: Option<String>,
    /// Basic constraints say CA.
    pub is_ca: bool,
    /// Issuer equals subject and the certificate's own key verifies it.
    pub self_signed: bool,
}

/// A parsed certificate: its inventory record and what path building needs.
#[derive(Debug, Clone)]
pub struct Cert {
    /// The DER.
    pub der: CertificateDer<'static>,
    /// Inventory record (position unset).
    pub info: CertInfo,
    /// DER of the subject Name.
    pub subject_raw: Vec<u8>,
    /// DER of the issuer Name.
    pub issuer_raw: Vec<u8>,
    /// DER of the SubjectPublicKeyInfo.
    pub spki_raw: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Key size in bits (0 when unknown).
    pub key_bits: usize,
    /// RSA key (else EC or other).
    pub rsa: bool,
    /// Signed with SHA-1.
    pub sha1: bool,
}

const SHA1_SIGNATURES: &[&str] = &[
    "1.2.840.113549.1.1.5",
    "1.3.14.3.2.29",
    "1.2.840.10045.4.1",
    "1.2.840.10040.4.3",
];

impl Cert {
    /// Parses `der`; `None` when it is not an X.509 certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Option<Cert> {
        let (_, x) = X509Certificate::from_der(der.as_ref()).ok()?;
        let spki = x.public_key();
        let (key_type, key_bits, rsa) = key_type(spki);
        let sig_oid = &x.signature_algorithm.algorithm;
        let self_signed =
            x.subject().as_raw() == x.issuer().as_raw() && x.verify_signature(Some(spki)).is_ok();
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = x.subject_alternative_name() {
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => sans.push(ip_text(b)),
                    _ => {}
                }
            }
        }
        let not_before = x.validity().not_before.to_datetime();
        let not_after = x.validity().not_after.to_datetime();
        Some(Cert {
            der: der.clone().into_owned(),
            info: CertInfo {
                fingerprint_sha256: fingerprint(der.as_ref()),
                subject: x.subject().to_string(),
                issuer: x.issuer().to_string(),
                sans,
                not_before: rfc3339(not_before),
                not_after: rfc3339(not_after),
                key_type,
                signature_algorithm: oid_name(sig_oid),
                position: None,
                trust_store: None,
                is_ca: x.is_ca(),
                self_signed,
            },
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            spki_raw: spki.raw.to_vec(),
            not_before,
            not_after,
            key_bits,
            rsa,
            sha1: SHA1_SIGNATURES.contains(&sig_oid.to_id_string().as_str()),
        })
    }

    /// Whether `self` was issued by `issuer`: names match and the issuer's key
    /// verifies the signature.
    pub fn issued_by(&self, issuer: &Cert) -> bool {
        self.issuer_raw == issuer.subject_raw && verifies(&self.der, &issuer.spki_raw)
    }

    /// Within validity at `now`.
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The common name, or the whole subject when it has none.
    pub fn short_name(&self) -> String {
        common_name(&self.info.subject)
    }

    /// The short name, with the issuer's when it is not self-issued (tells
    /// a cross-certificate from the root it mirrors): `"NEW ROOT (issued by OLD ROOT)"`.
    pub fn display_name(&self) -> String {
        if self.subject_raw == self.issuer_raw {
            self.short_name()
        } else {
            format!(
                "{} (issued by {})",
                self.short_name(),
                common_name(&self.info.issuer)
            )
        }
    }
}

fn common_name(name: &str) -> String {
    name.split(", ")
        .find_map(|p| p.strip_prefix("CN="))
        .unwrap_or(name)
        .to_owned()
}

fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> (String, usize, bool) {
    match spki.parsed() {
        Ok(PublicKey::RSA(k)) => (format!("RSA {}", k.key_size()), k.key_size(), true),
        Ok(PublicKey::EC(p)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (name, bits) = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("P-256", 256),
                Some("1.3.132.0.34") => ("P-384", 384),
                Some("1.3.132.0.35") => ("P-521", 521),
                _ => ("unknown curve", p.key_size()),
            };
            (format!("ECDSA {name}"), bits, false)
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            ("Ed25519".to_owned(), 256, false)
        }
        _ => (oid_name(&spki.algorithm.algorithm), 0, false),
    }
}

fn oid_name(oid: &Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => format!("{b:02x?}"),
    }
}

/// SHA-256 of `der` as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// RFC 3339 text of `t` (UTC).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The inventory records of a presented chain, in order, `position` set.
/// Unparsable entries are skipped (their position is not reused). The http
/// check can feed its https hops to the inventory with this.
pub fn describe_chain(chain: &[CertificateDer<'_>]) -> Vec<CertInfo> {
    chain
        .iter()
        .enumerate()
        .filter_map(|(i, der)| {
            let mut info = Cert::parse(der)?.info;
            info.position = Some(i);
            Some(info)
        })
        .collect()
}

/// Like [`describe_chain`], memoized per certificate: the http check feeds
/// every https hop's chain to the inventory on every run, and the same few
/// certificates come back each time. Bounded: the memo is cleared when it
/// reaches 4,096 certificates.
pub fn describe_chain_cached(chain: &[CertificateDer<'_>]) -> Vec<CertInfo> {
    type Memo = std::sync::Mutex<std::collections::HashMap<(u64, usize), CertInfo>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let mut out = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let key = (crate::fnv::hash(der.as_ref()), der.as_ref().len());
        let cached = memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let info = match cached {
            Some(info) => Some(info),
            None => {
                let parsed = Cert::parse(der).map(|c| c.info);
                if let Some(info) = &parsed {
                    let mut m = memo.lock().unwrap_or_else(|e| e.into_inner());
                    if m.len() >= 4096 {
                        m.clear();
                    }
                    m.insert(key, info.clone());
                }
                parsed
            }
        };
        if let Some(mut info) = info {
            info.position = Some(i);
            out.push(info);
        }
    }
    out
}

/// A presented chain, parsed (unparsable certificates are dropped).
#[derive(Debug, Clone)]
pub struct Chain {
    /// The certificates in served order; `certs[0]` is the leaf.
    pub certs: Vec<Cert>,
    /// The DER as served.
    pub der: Vec<CertificateDer<'static>>,
}

/// A path from the leaf to an anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Indices into [`Chain::certs`], leaf first.
    pub certs: Vec<usize>,
    /// Index into [`TrustStore::anchors`].
    pub anchor: usize,
}

/// When every member of a path is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Latest notBefore.
    pub not_before: OffsetDateTime,
    /// Earliest notAfter: the date this path stops working.
    pub not_after: OffsetDateTime,
    /// Whether the anchor's own dates are included.
    pub root_known: bool,
}

impl Window {
    /// `now` is inside the window.
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// A member of a path: a presented certificate or the anchor.
#[derive(Debug, Clone, Copy)]
pub enum Member<'a> {
    /// A presented certificate.
    Presented(&'a Cert),
    /// The store's anchor with its full certificate.
    Root(&'a Cert),
}

impl Chain {
    /// Parses a presented chain.
    pub fn new(der: &[CertificateDer<'static>]) -> Chain {
        Chain {
            certs: der.iter().filter_map(|d| Cert::parse(d)).collect(),
            der: der.to_vec(),
        }
    }

    /// The leaf, if any.
    pub fn leaf(&self) -> Option<&Cert> {
        self.certs.first()
    }

    /// Every path from the leaf through presented certificates to an anchor of
    /// `store`, regardless of dates (bounded by depth and count).
    pub fn candidate_paths(&self, store: &TrustStore) -> Vec<Path> {
        let mut out = Vec::new();
        if !self.certs.is_empty() {
            self.extend(store, vec![0], &mut out);
        }
        out
    }

    fn extend(&self, store: &TrustStore, path: Vec<usize>, out: &mut Vec<Path>) {
        if out.len() >= MAX_PATHS || path.len() > MAX_DEPTH {
            return;
        }
        let Some(&last) = path.last() else { return };
        let cert = &self.certs[last];
        // A presented copy of an anchor ends the path at that anchor.
        if let Some(a) = store.contains(cert) {
            let mut certs = path.clone();
            certs.pop();
            if !certs.is_empty() {
                out.push(Path { certs, anchor: a });
            }
        }
        for (a, anchor) in store.anchors.iter().enumerate() {
            if anchor.subject == cert.issuer_raw
                && verifies(&cert.der, &anchor.spki)
                && !out.iter().any(|p| p.certs == path && p.anchor == a)
            {
                out.push(Path {
                    certs: path.clone(),
                    anchor: a,
                });
            }
        }
        if cert.info.self_signed {
            return;
        }
        for (i, next) in self.certs.iter().enumerate() {
            if !path.contains(&i) && cert.issued_by(next) {
                let mut p = path.clone();
                p.push(i);
                self.extend(store, p, out);
            }
        }
    }

    /// The members of `path`: presented certificates, then the root when its
    /// full certificate is known.
    pub fn members<'a>(&'a self, store: &'a TrustStore, path: &Path) -> Vec<Member<'a>> {
        let mut m: Vec<Member<'a>> = path
            .certs
            .iter()
            .map(|i| Member::Presented(&self.certs[*i]))
            .collect();
        if let Some(root) = store.anchors.get(path.anchor).and_then(|a| a.cert.as_ref()) {
            m.push(Member::Root(root));
        }
        m
    }

    /// The validity window of `path`.
    pub fn window(&self, store: &TrustStore, path: &Path) -> Option<Window> {
        let members = self.members(store, path);
        let certs = members.iter().map(|m| match m {
            Member::Presented(c) | Member::Root(c) => *c,
        });
        let not_before = certs.clone().map(|c| c.not_before).max()?;
        let not_after = certs.map(|c| c.not_after).min()?;
        Some(Window {
            not_before,
            not_after,
            root_known: store
                .anchors
                .get(path.anchor)
                .is_some_and(|a| a.cert.is_some()),
        })
    }
}

/// rustls/webpki's verdict on `chain` for `server_name` with `store` at `now`.
pub fn webpki_verify(
    chain: &Chain,
    store: &TrustStore,
    server_name: &ServerName<'static>,
    now: OffsetDateTime,
) -> Result<(), rustls::Error> {
    let Some(verifier) = &store.verifier else {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
    };
    let Some((leaf, rest)) = chain.der.split_first() else {
        return Err(rustls::Error::NoCertificatesPresented);
    };
    let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    verifier
        .verify_server_cert(
            leaf,
            rest,
            server_name,
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
        )
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_sequence_handles_long_lengths() {
        assert_eq!(der_sequence(&[1, 2]), vec![0x30, 2, 1, 2]);
        let long = vec![0u8; 300];
        let d = der_sequence(&long);
        assert_eq!(&d[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(d.len(), 304);
    }

    #[test]
    fn mozilla_anchors_parse_with_labels() {
        let s = TrustStore::load("mozilla", &StoreSource::Mozilla);
        assert!(s.anchors.len() > 100);
        assert!(s.anchors.iter().all(|a| a.cert.is_none()));
        assert!(
            s.anchors.iter().any(|a| a.label.contains("ISRG Root X1")),
            "labels are readable subjects"
        );
        assert!(s.verifier.is_some());
    }
}
