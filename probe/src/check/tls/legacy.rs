//! The `legacy` profile: our model of OpenSSL 1.0.x chain building (no
//! alternate chains, trusted-first off), which rustls cannot do.
//!
//! # Exact behaviour
//! 1. Start at the leaf (the first presented certificate).
//! 2. For the current certificate, look for its issuer **among the presented
//!    certificates first**, in served order: the first one (not already on the
//!    path) whose subject equals the current issuer name and whose key
//!    verifies the current signature (x509-parser's per-signature
//!    verification, ring). If found, it joins the path and the walk goes on
//!    from it — even when the store holds a (better) issuer for the current
//!    certificate. This is "trusted-first off": the served chain wins.
//!    (OpenSSL 1.0.x searched the whole untrusted set, so a wrongly ordered
//!    chain still builds; the order is reported by hygiene, not here.)
//! 3. A presented certificate that is self-signed ends the walk: it is
//!    trusted only when it is an anchor of the store (same subject and key),
//!    else `tls_self_signed` (the leaf) or `tls_untrusted_root` (a root in the
//!    chain, OpenSSL's SELF_SIGNED_CERT_IN_CHAIN).
//! 4. When no presented certificate issued the current one, the store is
//!    asked: an anchor with that subject whose key verifies the signature
//!    ends the walk (trusted). None: `tls_chain_incomplete` when the current
//!    certificate is the leaf (its issuer is neither presented nor trusted:
//!    only AIA-fetching clients cope), `tls_untrusted_root` otherwise.
//! 5. No alternate chain is ever tried. Once a path is trusted, every
//!    certificate on it — and the anchor itself when its full certificate is
//!    known (OpenSSL checks the root's dates; webpki-roots anchors have none) —
//!    must be within validity at `now`, else `tls_cert_expired` /
//!    `tls_cert_not_yet_valid`. An expired certificate on the served path
//!    fails even when a valid alternate path exists.
//! 6. Last, the leaf must cover the server name (`tls_name_mismatch`).
//!
//! The date this profile starts failing is the earliest notAfter on the
//! walked path (the anchor's included when known).

use rustls::server::ParsedCertificate;
use rustls_pki_types::ServerName;
use time::OffsetDateTime;

use super::Verdict;
use crate::check::{
    Failure,
    failure::ServedEnd,
    trust::{Chain, Member, Path, TrustStore},
};

/// Where the walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At an anchor of the store (index into `anchors`).
    Trusted(usize),
    /// At a self-signed presented certificate that the store does not hold.
    SelfSigned(usize),
    /// At a certificate whose issuer is neither presented nor trusted.
    IssuerNotFound(usize),
}

/// Walks the served chain as OpenSSL 1.0.x did: the presented certificates
/// on the path (indices, leaf first) and where the walk ended.
pub fn walk(chain: &Chain, store: &TrustStore) -> (Vec<usize>, End) {
    let mut path = vec![0];
    loop {
        let Some(&cur) = path.last() else {
            return (path, End::IssuerNotFound(0));
        };
        let cert = &chain.certs[cur];
        if cert.info.self_signed {
            return match store.contains(cert) {
                Some(a) => {
                    path.pop();
                    (path, End::Trusted(a))
                }
                None => (path, End::SelfSigned(cur)),
            };
        }
        let next =
            (0..chain.certs.len()).find(|i| !path.contains(i) && cert.issued_by(&chain.certs[*i]));
        match next {
            Some(i) => path.push(i),
            None => {
                return match store.issuer_of(cert) {
                    Some(a) => (path, End::Trusted(a)),
                    None => (path, End::IssuerNotFound(cur)),
                };
            }
        }
    }
}

/// The failure of a walk that did not end at an anchor of `store` (`None`
/// for [`End::Trusted`]): `tls_self_signed` (the leaf), `tls_chain_incomplete`
/// (the leaf's issuer is missing) or `tls_untrusted_root` naming where the
/// served chain ends. `no_path`: no path of the presented certificates leads
/// to an anchor at all (so alternate chains would not help either).
pub fn end_failure(chain: &Chain, store: &TrustStore, end: &End, no_path: bool) -> Option<Failure> {
    Some(match *end {
        End::Trusted(_) => return None,
        End::SelfSigned(0) => Failure::TlsSelfSigned {
            leaf: chain.certs[0].short_name(),
            store: store.name.clone(),
        },
        End::SelfSigned(i) => Failure::TlsUntrustedRoot {
            store: Some(store.name.clone()),
            served_end: Some(ServedEnd::SelfSigned {
                cert: chain.certs[i].short_name(),
            }),
            no_path,
        },
        End::IssuerNotFound(0) => Failure::TlsChainIncomplete {
            leaf_issuer: chain.certs[0].info.issuer.clone(),
            store: store.name.clone(),
        },
        End::IssuerNotFound(i) => Failure::TlsUntrustedRoot {
            store: Some(store.name.clone()),
            served_end: Some(ServedEnd::MissingIssuer {
                cert: chain.certs[i].display_name(),
                issuer: chain.certs[i].info.issuer.clone(),
            }),
            no_path,
        },
    })
}

/// The legacy verdict for `chain` with `store` at `now`.
pub fn verdict(
    chain: &Chain,
    store: &TrustStore,
    server_name: &ServerName<'static>,
    now: OffsetDateTime,
) -> Verdict {
    if chain.certs.is_empty() {
        return Verdict::fail(Failure::TlsCertInvalid {
            reason: "the server presented no parsable certificate".into(),
        });
    }
    let (certs, end) = walk(chain, store);
    let anchor = match end {
        End::Trusted(a) => a,
        other => {
            let no_path = chain.candidate_paths(store).is_empty();
            return Verdict::fail(end_failure(chain, store, &other, no_path).unwrap_or(
                Failure::TlsUntrustedRoot {
                    store: Some(store.name.clone()),
                    served_end: None,
                    no_path,
                },
            ));
        }
    };
    let path = Path { certs, anchor };
    let window = chain.window(store, &path);
    let mut v = Verdict::on_path(chain, store, &path, window);
    let members = chain.members(store, &path);
    let bad = members.iter().find_map(|m| {
        let (Member::Presented(c) | Member::Root(c)) = m;
        (!c.valid_at(now)).then_some(*c)
    });
    if let Some(c) = bad {
        v.failure = Some(if c.not_after < now {
            Failure::TlsCertExpired {
                cert: Some(c.display_name()),
                not_after: Some(c.info.not_after.clone()),
                store: Some(store.name.clone()),
                served_path_only: true,
            }
        } else {
            Failure::TlsCertNotYetValid {
                cert: Some(c.display_name()),
                not_before: Some(c.info.not_before.clone()),
                served_path_only: true,
            }
        });
        return v;
    }
    let name_ok = ParsedCertificate::try_from(&chain.certs[0].der)
        .and_then(|p| rustls::client::verify_server_name(&p, server_name));
    if let Err(e) = name_ok {
        v.failure = Some(match crate::tls::classify(&std::io::Error::other(e)) {
            f @ Failure::TlsNameMismatch { .. } => f,
            _ => Failure::TlsNameMismatch {
                name: Some(server_name.to_str().into_owned()),
                presented: Vec::new(),
            },
        });
        v.fails_from = None;
    }
    v
}
