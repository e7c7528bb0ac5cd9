//! Named client stacks: what a real TLS client of a given generation offers
//! in its ClientHello (protocol versions, cipher suites, key-exchange
//! groups, signature algorithms), built as a restricted ring
//! [`CryptoProvider`] for `ClientConfig::builder_with_provider`. A profile
//! pairs a stack's handshake with a path-building model (alternate chains or
//! the served path only, [`super::legacy`]).
//!
//! | stack | profile | models | path building |
//! | --- | --- | --- | --- |
//! | [`OPENSSL_1_0_2`] | `legacy` | OpenSSL 1.0.2 (Debian 9, RHEL/CentOS 7, embedded Linux and IoT gateways built 2015–2020, Python/curl/Java linked against it) | the served chain only, no alternates, root dates checked ([`super::legacy`]) |
//! | [`CURRENT`] | `modern` | OpenSSL 3.x, BoringSSL, NSS, current browsers and rustls | alternate chains (webpki) |
//!
//! # OpenSSL 1.0.2, as far as rustls can be it
//! - Versions: TLS 1.2 only. No TLS 1.3 (added in OpenSSL 1.1.1): a server
//!   that accepts only TLS 1.3 fails the handshake (`tls_protocol_unsupported`),
//!   as the IOT incident's `sslv3 alert handshake failure` did.
//! - Cipher suites: ECDHE with AES-GCM only, ECDSA and RSA
//!   authentication. No ChaCha20-Poly1305 (added in 1.1.0).
//! - Groups: P-256 and P-384. No X25519 (added in 1.1.0).
//! - Signature algorithms: RSA PKCS#1 v1.5 and ECDSA with SHA-2. No RSA-PSS
//!   and no Ed25519 (both 1.1.1): a server whose only certificate is
//!   Ed25519, or that can only sign with PSS, fails the handshake.
//! - Deviations (rustls cannot offer them): the real client also offered
//!   TLS 1.0/1.1, AES-CBC and 3DES suites, plain RSA key exchange, DHE,
//!   P-521 and SHA-1 signatures. A server that accepts *only* those passes
//!   with real OpenSSL 1.0.2 and fails here — a false failure, never a false
//!   pass. The `legacy` profile's chain verdict (served path only, the
//!   root's dates) is modelled exactly, see [`super::legacy`].
//!
//! # Current
//! Everything rustls/ring offers: TLS 1.2 and 1.3, AES-GCM and
//! ChaCha20-Poly1305, X25519, P-256, P-384, ECDSA, RSA-PSS, RSA PKCS#1 and
//! Ed25519 signatures. Deviations from OpenSSL 3.x: no CBC suites and no
//! DHE (a server offering only those fails here).

use rustls::{
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
    crypto::{CryptoProvider, SupportedKxGroup, ring},
};

/// A client stack: what its ClientHello offers.
#[derive(Debug)]
pub struct Stack {
    /// Short name, e.g. `"openssl-1.0.2"`.
    pub name: &'static str,
    /// The protocol versions offered.
    pub versions: &'static [&'static SupportedProtocolVersion],
    /// The cipher suites offered, in preference order.
    pub cipher_suites: &'static [SupportedCipherSuite],
    /// The key-exchange groups offered.
    pub kx_groups: &'static [&'static dyn SupportedKxGroup],
    /// The signature schemes offered (`None`: every one ring verifies).
    pub signature_schemes: Option<&'static [SignatureScheme]>,
}

/// The OpenSSL 1.0.2-class client (the `legacy` profile's handshake).
pub static OPENSSL_1_0_2: Stack = Stack {
    name: "openssl-1.0.2",
    versions: &[&rustls::version::TLS12],
    cipher_suites: &[
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ],
    kx_groups: &[ring::kx_group::SECP256R1, ring::kx_group::SECP384R1],
    signature_schemes: Some(&[
        SignatureScheme::RSA_PKCS1_SHA512,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ]),
};

/// A current client (the `modern` profile's handshake): all of ring.
pub static CURRENT: Stack = Stack {
    name: "current",
    versions: rustls::DEFAULT_VERSIONS,
    cipher_suites: ring::ALL_CIPHER_SUITES,
    kx_groups: ring::ALL_KX_GROUPS,
    signature_schemes: None,
};

impl Stack {
    /// The ring provider restricted to this stack's suites and groups.
    pub fn provider(&self) -> CryptoProvider {
        CryptoProvider {
            cipher_suites: self.cipher_suites.to_vec(),
            kx_groups: self.kx_groups.to_vec(),
            ..ring::default_provider()
        }
    }

    /// Whether the stack offers signature scheme `s`.
    pub fn offers(&self, s: SignatureScheme) -> bool {
        self.signature_schemes.is_none_or(|list| list.contains(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_stack_offers_nothing_its_generation_lacked() {
        let p = OPENSSL_1_0_2.provider();
        assert!(
            p.cipher_suites
                .iter()
                .all(|s| s.version() == &rustls::version::TLS12)
        );
        assert!(
            p.cipher_suites
                .iter()
                .all(|s| !format!("{:?}", s.suite()).contains("CHACHA"))
        );
        assert!(
            p.kx_groups
                .iter()
                .all(|g| g.name() != rustls::NamedGroup::X25519)
        );
        for s in [
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
        ] {
            assert!(!OPENSSL_1_0_2.offers(s), "{s:?}");
            assert!(CURRENT.offers(s), "{s:?}");
        }
        assert_eq!(
            CURRENT.provider().cipher_suites.len(),
            ring::ALL_CIPHER_SUITES.len()
        );
    }
}
