//! `[checks.tls]`: the config reference, validation, and the validated
//! [`TlsSpec`].

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, sync::Arc};

use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};

use crate::{
    check::trust::{StoreSource, TrustStore},
    config::Problems,
};

/// Default `min_days_left`.
pub const DEFAULT_MIN_DAYS_LEFT: u32 = 14;

/// `[checks.tls]` as written in config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Host to connect to: a DNS name or an IP address. Example: `"www.example.net"`.
    pub host: String,
    /// TCP port. Default 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The name sent as SNI (except by the `no_sni` profile) and that the
    /// certificate must cover. Default: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// An IP address to connect to instead of resolving `host` (like curl's
    /// `--resolve`). Example: `"192.0.2.10"`. Default: the first address the
    /// system resolver gives for `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Resolve `host` through this DNS server instead of the system resolver
    /// (the same strings as a dns check's `resolvers`, e.g. `"10.0.0.53:53"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    /// Named PEM bundles usable in `trust_stores`, e.g. the CA file of an old
    /// device image: `stores = { old-device = "/etc/outpost/old-device-ca.pem" }`.
    /// Names use lowercase letters, digits, `-` and `_`; `mozilla` and
    /// `system` are reserved. Files are read when the config is loaded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stores: BTreeMap<String, PathBuf>,
    /// Trust stores to evaluate, in display order: `"mozilla"` (bundled
    /// webpki roots; they carry no dates, so a root's own expiry is unknown),
    /// `"system"` (this machine's store, full certificates) or a name from
    /// `stores`. Default: `["mozilla"]` followed by every name in `stores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_stores: Option<Vec<String>>,
    /// Client profiles: `"modern"` (a current client: TLS 1.2 and 1.3, path
    /// building with alternate chains), `"legacy"` (an OpenSSL 1.0.2-class
    /// client whole: TLS 1.2 only, its cipher suites, groups and signature
    /// algorithms, and the served chain only, no alternates),
    /// `"tls13"`, `"tls12"` (only that version), `"no_sni"`, `"rsa_only"`,
    /// `"ecdsa_only"`. Default `["modern"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    /// Combinations `"profile/store"` that must pass; `*` matches any profile
    /// or store (`"modern/*"`). Others are reported only. Default: every
    /// configured combination. `[]`: report only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_pass: Option<Vec<String>>,
    /// Each must-pass combination must keep working for at least this many
    /// days (the earliest notAfter on its path, the root's included when
    /// known), else `tls_expiring_soon`. Also the threshold of the
    /// `expiring_member` hygiene finding. Default 14.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_days_left: Option<u32>,
    /// Per-combination `min_days_left`, e.g. `{ "legacy/old-device" = 60 }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_days_left_for: BTreeMap<String, u32>,
    /// Lowest TLS version the server may negotiate with a client offering
    /// 1.2 and 1.3: `"1.2"` or `"1.3"`, else `tls_protocol_unsupported`.
    /// Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tls_version: Option<String>,
    /// `"warn"` (default): hygiene findings are reported in the details only.
    /// `"fail"`: any finding fails the check with `tls_chain_hygiene`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hygiene: Option<HygieneMode>,
}

/// What hygiene findings do.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HygieneMode {
    /// Report only.
    #[default]
    Warn,
    /// Fail the check.
    Fail,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    V12,
    /// TLS 1.3.
    V13,
}

impl TlsVersion {
    /// `"1.2"` / `"1.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V12 => "1.2",
            TlsVersion::V13 => "1.3",
        }
    }
}

/// A client profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// webpki path building with alternate chains.
    Modern,
    /// OpenSSL 1.0.x path building (our model).
    Legacy,
    /// TLS 1.3 only.
    Tls13,
    /// TLS 1.2 only.
    Tls12,
    /// No SNI.
    NoSni,
    /// RSA signature schemes and suites only.
    RsaOnly,
    /// ECDSA signature schemes and suites only.
    EcdsaOnly,
}

/// Every profile, in the order of the names.
pub const PROFILES: &[(&str, Profile)] = &[
    ("modern", Profile::Modern),
    ("legacy", Profile::Legacy),
    ("tls13", Profile::Tls13),
    ("tls12", Profile::Tls12),
    ("no_sni", Profile::NoSni),
    ("rsa_only", Profile::RsaOnly),
    ("ecdsa_only", Profile::EcdsaOnly),
];

impl Profile {
    /// The config name.
    pub fn name(self) -> &'static str {
        PROFILES
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .unwrap_or("modern")
    }

    /// The handshake this profile's chain comes from.
    pub fn handshake(self) -> HandshakeKind {
        match self {
            Profile::Modern => HandshakeKind::Default,
            Profile::Legacy => HandshakeKind::Legacy,
            Profile::Tls13 => HandshakeKind::Tls13,
            Profile::Tls12 => HandshakeKind::Tls12,
            Profile::NoSni => HandshakeKind::NoSni,
            Profile::RsaOnly => HandshakeKind::RsaOnly,
            Profile::EcdsaOnly => HandshakeKind::EcdsaOnly,
        }
    }
}

/// A distinct client handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HandshakeKind {
    /// TLS 1.2 + 1.3, SNI, every suite and scheme: the current stack
    /// ([`super::stack::CURRENT`], the `modern` profile).
    Default,
    /// The OpenSSL 1.0.2-class ClientHello ([`super::stack::OPENSSL_1_0_2`],
    /// the `legacy` profile): TLS 1.2, its suites, groups and signature schemes.
    Legacy,
    /// TLS 1.3 only.
    Tls13,
    /// TLS 1.2 only.
    Tls12,
    /// No SNI.
    NoSni,
    /// RSA only.
    RsaOnly,
    /// ECDSA only.
    EcdsaOnly,
}

impl HandshakeKind {
    /// Name in the details.
    pub fn name(self) -> &'static str {
        match self {
            HandshakeKind::Default => "default",
            HandshakeKind::Legacy => "legacy",
            HandshakeKind::Tls13 => "tls13",
            HandshakeKind::Tls12 => "tls12",
            HandshakeKind::NoSni => "no_sni",
            HandshakeKind::RsaOnly => "rsa_only",
            HandshakeKind::EcdsaOnly => "ecdsa_only",
        }
    }
}

/// A validated tls check.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSpec {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// SNI and the name checked.
    pub server_name: String,
    /// Address to connect to instead of resolving.
    pub address: Option<IpAddr>,
    /// Resolver for `host`.
    pub resolver: crate::resolver::ResolverSpec,
    /// Stores in display order.
    pub stores: Vec<(String, StoreSource)>,
    /// Profiles in display order.
    pub profiles: Vec<Profile>,
    /// Combination names that must pass.
    pub must_pass: Vec<String>,
    /// Default minimum days left.
    pub min_days_left: u32,
    /// Per-combination minimum days left.
    pub min_days_left_for: BTreeMap<String, u32>,
    /// Lowest TLS version allowed.
    pub min_tls_version: Option<TlsVersion>,
    /// What hygiene findings do.
    pub hygiene: HygieneMode,
}

impl TlsSpec {
    /// Distinct handshakes the profiles need, default first.
    pub fn handshake_kinds(&self) -> Vec<HandshakeKind> {
        let mut k: Vec<HandshakeKind> = self.profiles.iter().map(|p| p.handshake()).collect();
        k.sort();
        k.dedup();
        k
    }

    /// The configured stores, built (mozilla and system are shared).
    pub fn load_stores(&self) -> Vec<(String, Arc<TrustStore>)> {
        self.stores
            .iter()
            .map(|(n, s)| (n.clone(), TrustStore::load(n, s)))
            .collect()
    }
}

fn valid_store_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
}

impl RawTls {
    /// Validates; problems are recorded under `path` (`checks[0].tls`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<TlsSpec> {
        let before = problems.len();
        let host = self
            .host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() || host.contains('/') || host.contains(' ') {
            problems.push(
                format!("{path}.host"),
                format!("invalid host {:?}, e.g. \"www.example.net\"", self.host),
            );
        }
        let port = self.port.unwrap_or(443);
        if port == 0 {
            problems.push(format!("{path}.port"), "port must be 1–65535, got 0");
        }
        let server_name = self.server_name.clone().unwrap_or_else(|| host.to_owned());
        if ServerName::try_from(server_name.clone()).is_err() {
            problems.push(
                format!("{path}.server_name"),
                format!("invalid server name {server_name:?}, e.g. \"www.example.net\""),
            );
        }
        let resolver = match self
            .resolver
            .as_deref()
            .map(str::parse::<crate::resolver::ResolverSpec>)
        {
            None => crate::resolver::ResolverSpec::System,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                problems.push(format!("{path}.resolver"), e.to_string());
                crate::resolver::ResolverSpec::System
            }
        };
        let address = match &self.address {
            None => None,
            Some(a) => match a.trim_start_matches('[').trim_end_matches(']').parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    problems.push(
                        format!("{path}.address"),
                        format!("invalid IP address {a:?}, e.g. \"192.0.2.10\""),
                    );
                    None
                }
            },
        };
        let mut bundles = BTreeMap::new();
        for (name, file) in &self.stores {
            let p = format!("{path}.stores.{name}");
            if !valid_store_name(name) || name == "mozilla" || name == "system" {
                problems.push(
                    p,
                    format!("invalid store name {name:?}: use lowercase letters, digits, '-' or '_' (mozilla and system are built in), e.g. \"old-device\""),
                );
                continue;
            }
            match crate::tls::read_pem_certs(file) {
                Ok(certs) => {
                    bundles.insert(
                        name.clone(),
                        StoreSource::Bundle {
                            path: file.clone(),
                            certs,
                        },
                    );
                }
                Err(e) => problems.push(p, e),
            }
        }
        let names = self.trust_stores.clone().unwrap_or_else(|| {
            std::iter::once("mozilla".to_owned())
                .chain(self.stores.keys().cloned())
                .collect()
        });
        if names.is_empty() {
            problems.push(
                format!("{path}.trust_stores"),
                "trust_stores is empty: list at least one, e.g. [\"mozilla\"]",
            );
        }
        let mut stores: Vec<(String, StoreSource)> = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let source = match n.as_str() {
                "mozilla" => Some(StoreSource::Mozilla),
                "system" => Some(StoreSource::System),
                other => bundles.get(other).cloned(),
            };
            match source {
                _ if stores.iter().any(|(s, _)| s == n) => problems.push(
                    format!("{path}.trust_stores[{i}]"),
                    format!("store {n:?} is listed twice"),
                ),
                Some(s) => stores.push((n.clone(), s)),
                None if self.stores.contains_key(n) => {} // reported under stores
                None => problems.push(
                    format!("{path}.trust_stores[{i}]"),
                    format!("unknown trust store {n:?}: use \"mozilla\", \"system\" or declare it, e.g. stores = {{ {n} = \"/path/ca.pem\" }}"),
                ),
            }
        }
        let profile_names = self
            .profiles
            .clone()
            .unwrap_or_else(|| vec!["modern".to_owned()]);
        if profile_names.is_empty() {
            problems.push(
                format!("{path}.profiles"),
                "profiles is empty: list at least one, e.g. [\"modern\", \"legacy\"]",
            );
        }
        let mut profiles = Vec::new();
        for (i, n) in profile_names.iter().enumerate() {
            match PROFILES.iter().find(|(name, _)| name == n) {
                Some((_, p)) if profiles.contains(p) => problems.push(
                    format!("{path}.profiles[{i}]"),
                    format!("profile {n:?} is listed twice"),
                ),
                Some((_, p)) => profiles.push(*p),
                None => problems.push(
                    format!("{path}.profiles[{i}]"),
                    format!(
                        "unknown profile {n:?}: use one of {}",
                        PROFILES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        let combos: Vec<String> = profiles
            .iter()
            .flat_map(|p| stores.iter().map(move |(s, _)| format!("{}/{s}", p.name())))
            .collect();
        let must_pass = match &self.must_pass {
            None => combos.clone(),
            Some(patterns) => {
                let mut out = Vec::new();
                for (i, pat) in patterns.iter().enumerate() {
                    let matched: Vec<&String> =
                        combos.iter().filter(|c| combo_matches(pat, c)).collect();
                    if matched.is_empty() {
                        problems.push(
                            format!("{path}.must_pass[{i}]"),
                            format!("{pat:?} matches no configured combination: write \"profile/store\", e.g. \"modern/mozilla\" or \"legacy/*\""),
                        );
                    }
                    out.extend(matched.into_iter().cloned());
                }
                out.sort();
                out.dedup();
                out
            }
        };
        for c in self.min_days_left_for.keys() {
            if !combos.contains(c) {
                problems.push(
                    format!("{path}.min_days_left_for.{c}"),
                    format!("{c:?} is not a configured combination \"profile/store\", e.g. \"modern/mozilla\""),
                );
            }
        }
        let min_tls_version = match self.min_tls_version.as_deref() {
            None => None,
            Some("1.2") => Some(TlsVersion::V12),
            Some("1.3") => Some(TlsVersion::V13),
            Some(v) => {
                problems.push(
                    format!("{path}.min_tls_version"),
                    format!("unsupported min_tls_version {v:?}: use \"1.2\" or \"1.3\""),
                );
                None
            }
        };
        if problems.len() != before {
            return None;
        }
        Some(TlsSpec {
            host: host.to_owned(),
            port,
            server_name,
            address,
            resolver,
            stores,
            profiles,
            must_pass,
            min_days_left: self.min_days_left.unwrap_or(DEFAULT_MIN_DAYS_LEFT),
            min_days_left_for: self.min_days_left_for.clone(),
            min_tls_version,
            hygiene: self.hygiene.unwrap_or_default(),
        })
    }
}

fn combo_matches(pattern: &str, combo: &str) -> bool {
    let (Some((pp, ps)), Some((cp, cs))) = (pattern.split_once('/'), combo.split_once('/')) else {
        return false;
    };
    (pp == "*" || pp == cp) && (ps == "*" || ps == cs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn must_pass_patterns_match_profile_and_store_with_wildcards() {
        assert!(combo_matches("modern/mozilla", "modern/mozilla"));
        assert!(combo_matches("modern/*", "modern/old-device"));
        assert!(combo_matches("*/old-device", "legacy/old-device"));
        assert!(!combo_matches("legacy/*", "modern/mozilla"));
        assert!(!combo_matches("modern", "modern/mozilla"));
    }

    #[test]
    fn each_distinct_client_hello_is_one_handshake() {
        let spec = TlsSpec {
            host: "a.test".into(),
            port: 443,
            server_name: "a.test".into(),
            address: None,
            resolver: crate::resolver::ResolverSpec::System,
            stores: vec![("mozilla".into(), StoreSource::Mozilla)],
            profiles: vec![Profile::Tls12, Profile::Legacy, Profile::Modern],
            must_pass: Vec::new(),
            min_days_left: 14,
            min_days_left_for: BTreeMap::new(),
            min_tls_version: None,
            hygiene: HygieneMode::Warn,
        };
        assert_eq!(
            spec.handshake_kinds(),
            vec![
                HandshakeKind::Default,
                HandshakeKind::Legacy,
                HandshakeKind::Tls12
            ]
        );
    }
}
