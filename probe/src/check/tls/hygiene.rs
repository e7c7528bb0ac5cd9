//! Chain hygiene: what is wrong with the presented chain itself, whatever
//! the client. Findings are reported in `details.hygiene`; with
//! `hygiene = "fail"` any finding fails the check with `tls_chain_hygiene`.
//!
//! | kind | meaning |
//! | --- | --- |
//! | `missing_intermediate` | the leaf's issuer is not presented and is no anchor of a configured store: only AIA-fetching clients build a path |
//! | `wrong_order` | a presented certificate is not followed by its issuer although the issuer is presented further on |
//! | `unused_certificate` | a presented certificate that is on no path from the leaf |
//! | `expired_member` / `not_yet_valid_member` | a presented certificate outside its validity at `now` |
//! | `expiring_member` | a presented certificate expires within `min_days_left` days |
//! | `root_sent` | a self-signed certificate is presented after the leaf (needless: clients must already have it) |
//! | `sha1_signature` | a presented certificate (not a self-signed root) is signed with SHA-1 |
//! | `weak_key` | an RSA key below 2048 bits or an EC key below 256 bits |

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::check::trust::{Chain, TrustStore};

/// One hygiene finding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Finding {
    /// Stable snake_case kind (see the module table).
    pub kind: String,
    /// Position in the presented chain.
    pub position: usize,
    /// The certificate's SHA-256 fingerprint.
    pub fingerprint_sha256: String,
    /// Human message naming the certificate.
    pub message: String,
}

/// The findings for `chain` at `now`; `stores` are the configured stores
/// (an issuer found there is not missing).
pub fn findings(
    chain: &Chain,
    stores: &[&TrustStore],
    now: OffsetDateTime,
    min_days_left: u32,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let certs = &chain.certs;
    let mut push = |kind: &str, i: usize, message: String| {
        out.push(Finding {
            kind: kind.to_owned(),
            position: i,
            fingerprint_sha256: certs[i].info.fingerprint_sha256.clone(),
            message,
        });
    };
    let Some(leaf) = certs.first() else {
        return Vec::new();
    };
    if !leaf.info.self_signed
        && !certs.iter().skip(1).any(|c| leaf.issued_by(c))
        && !stores.iter().any(|s| s.issuer_of(leaf).is_some())
    {
        push(
            "missing_intermediate",
            0,
            format!(
                "the leaf's issuer {} is not presented: send the intermediate certificate",
                leaf.info.issuer
            ),
        );
    }
    // Certificates reachable from the leaf by issuance among the presented ones.
    let mut used = vec![false; certs.len()];
    used[0] = true;
    let mut frontier = vec![0];
    while let Some(i) = frontier.pop() {
        for (j, c) in certs.iter().enumerate() {
            if !used[j] && !certs[i].info.self_signed && certs[i].issued_by(c) {
                used[j] = true;
                frontier.push(j);
            }
        }
    }
    for (i, c) in certs.iter().enumerate() {
        let name = c.display_name();
        if i + 1 < certs.len() && !c.info.self_signed && used[i] {
            let next_issues = c.issued_by(&certs[i + 1]);
            let later = certs.iter().skip(i + 2).any(|x| c.issued_by(x));
            if !next_issues && later {
                push(
                    "wrong_order",
                    i,
                    format!(
                        "{name} is not followed by its issuer: serve leaf first, then each issuer in turn"
                    ),
                );
            }
        }
        if !used[i] {
            push(
                "unused_certificate",
                i,
                format!("{name} is on no path from the leaf: remove it"),
            );
        }
        if c.not_after < now {
            push(
                "expired_member",
                i,
                format!("{name} expired on {}", c.info.not_after),
            );
        } else if c.not_before > now {
            push(
                "not_yet_valid_member",
                i,
                format!("{name} is valid only from {}", c.info.not_before),
            );
        } else if c.not_after - now < Duration::days(i64::from(min_days_left)) {
            push(
                "expiring_member",
                i,
                format!(
                    "{name} expires on {} ({} days left)",
                    c.info.not_after,
                    (c.not_after - now).whole_days()
                ),
            );
        }
        if i > 0 && c.info.self_signed {
            push(
                "root_sent",
                i,
                format!("the root {name} is sent needlessly: clients must already trust it"),
            );
        }
        if c.sha1 && !c.info.self_signed {
            push(
                "sha1_signature",
                i,
                format!(
                    "{name} is signed with SHA-1 ({})",
                    c.info.signature_algorithm
                ),
            );
        }
        if (c.rsa && c.key_bits < 2048) || (!c.rsa && c.key_bits > 0 && c.key_bits < 256) {
            push(
                "weak_key",
                i,
                format!("{name} has a weak key ({})", c.info.key_type),
            );
        }
    }
    out
}
