//! The `tls` check kind: a trust-store × client-profile matrix over real
//! handshakes, the date each combination starts failing, chain hygiene and a
//! certificate inventory feed.
//!
//! When AddTrust expired (2020-05-30) modern clients kept working while old
//! trust stores and OpenSSL 1.0.x path building failed. This check runs the
//! handshakes a set of client profiles would make (concurrently, one deadline:
//! the check's timeout), records every presented chain with a
//! [`handshake::RecordingVerifier`], and evaluates each chain against each
//! trust store at `now` (injectable: [`run_at`]).
//!
//! # Profiles
//! A profile is a client stack's handshake ([`stack`]: versions, suites,
//! groups, signature schemes) and a path-building model.
//! - `modern`: a current client ([`stack::CURRENT`]: OpenSSL 3.x, browsers)
//!   with rustls/webpki path building and alternate chains. The verdict is
//!   webpki's; the paths and dates come from [`super::trust::Chain::candidate_paths`].
//! - `legacy`: an OpenSSL 1.0.2-class client whole: its own ClientHello
//!   ([`stack::OPENSSL_1_0_2`]: TLS 1.2 only, ECDHE-AES-GCM, P-256/P-384, no
//!   PSS or Ed25519), so a TLS 1.3-only server fails its handshake with
//!   `tls_protocol_unsupported`, and the served-path walk of [`legacy`].
//! - `tls13`, `tls12`: only that protocol version. `no_sni`: no SNI sent.
//!   `rsa_only`, `ecdsa_only`: only that key type's signature schemes (and,
//!   for TLS 1.2, cipher suites). Their chains are judged like `modern`; a
//!   failed handshake gives `tls_protocol_unsupported` (the server refused
//!   the versions) or `tls_handshake_failure` for every store.
//!
//! # Failure codes (per combination, and for the check)
//! `tls_untrusted_root`, `tls_chain_incomplete`, `tls_self_signed`,
//! `tls_cert_expired`, `tls_cert_not_yet_valid`, `tls_name_mismatch`,
//! `tls_cert_invalid`, `tls_protocol_unsupported`, `tls_handshake_failure`,
//! `connection_refused`, `connect_failure`, `timeout`. The check fails with
//! the code of the first failing `must_pass` combination (matrix order:
//! profiles, then stores) — the combination's own code, so an alert names the
//! cause; the message lists every failing one. Then, in order:
//! `tls_protocol_unsupported` (`min_tls_version` not negotiated by the
//! default client), `tls_expiring_soon` (a must-pass combination has fewer
//! than its `min_days_left` days before it starts failing),
//! `tls_chain_hygiene` (`hygiene = "fail"` and a finding).
//!
//! # Details JSON ([`Report`])
//! ```json
//! { "host": "www.example.net", "port": 443, "server_name": "www.example.net",
//!   "address": "192.0.2.10:443", "evaluated_at": "2026-03-01T00:00:00Z",
//!   "handshakes": [{ "client": "default", "ok": true, "failure_code": null, "failure_message": null,
//!                    "tls_version": "1.3", "cipher_suite": "TLS13_AES_256_GCM_SHA384",
//!                    "time_us": 812, "chain": ["<sha256>", "…"] }],
//!   "matrix": [{ "combination": "legacy/old-device", "profile": "legacy", "store": "old-device",
//!                "must_pass": true, "ok": false, "failure_code": "tls_cert_expired", "failure_message": "…",
//!                "fails_from": "2020-05-30T00:00:00Z", "days_left": -2101, "min_days_left": 14,
//!                "root_expiry_known": true,
//!                "path": ["www.example.net", "Inter (issued by NEW ROOT)", "NEW ROOT (issued by OLD ROOT)", "OLD ROOT"],
//!                "expires_first": "NEW ROOT (issued by OLD ROOT)" }],
//!   "hygiene": [{ "kind": "root_sent", "position": 2, "fingerprint_sha256": "…", "message": "…" }],
//!   "forecast": { "summary": "…", "lines": ["…"] },
//!   "certificates": [{ "fingerprint_sha256": "…", "subject": "…", "issuer": "…", "sans": ["…"],
//!                      "not_before": "…", "not_after": "…", "key_type": "ECDSA P-256",
//!                      "signature_algorithm": "ecdsa-with-SHA256", "position": 0,
//!                      "is_ca": false, "self_signed": false }] }
//! ```
//! An early failure (no address for the host, an invalid server name) has
//! only `host` and `port`; every evaluated run has every key above.
//! `fails_from` is the date the combination stops working (future, passing)
//! or stopped working (past, failing with an expiry); `null` when failing for
//! another reason. `certificates` holds every certificate seen: all presented
//! ones (position in the first chain that presented it) and the full root
//! certificates that paths ended at (`position: null`, `trust_store` set).

pub mod forecast;
pub mod handshake;
pub mod hygiene;
pub mod legacy;
mod spec;
pub mod stack;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use self::{
    forecast::render_matrix,
    handshake::{Handshake, RecordingVerifier},
    spec::{HandshakeKind, HygieneMode, Profile, RawTls, TlsSpec},
};
use super::{
    Failure, FailureCode, KindResult, Phases,
    failure::{CombinationFailure, ExpiringCombination},
    trust::{self, CertInfo, Chain, Member, Path, TrustStore, Window},
};
use crate::resolver;
pub use trust::describe_chain;

/// One combination's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Why it fails (`None`: it passes).
    pub failure: Option<Failure>,
    /// Date it starts (or started) failing.
    pub fails_from: Option<OffsetDateTime>,
    /// The anchor's full certificate is known (its expiry counted).
    pub root_known: bool,
    /// Short names along the path, leaf first, the anchor last.
    pub path: Vec<String>,
    /// The member that expires first.
    pub expires_first: Option<String>,
}

impl Verdict {
    /// Passes.
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// A failure without a path.
    pub fn fail(failure: Failure) -> Self {
        Verdict {
            failure: Some(failure),
            fails_from: None,
            root_known: false,
            path: Vec::new(),
            expires_first: None,
        }
    }

    /// A pass on `path`, failing from the window's end.
    pub fn on_path(chain: &Chain, store: &TrustStore, path: &Path, window: Option<Window>) -> Self {
        let members = chain.members(store, path);
        let mut names: Vec<String> = path
            .certs
            .iter()
            .map(|i| chain.certs[*i].display_name())
            .collect();
        if let Some(a) = store.anchors.get(path.anchor) {
            names.push(
                a.cert
                    .as_ref()
                    .map(|c| c.short_name())
                    .unwrap_or_else(|| a.label.clone()),
            );
        }
        let first = members
            .iter()
            .map(|(Member::Presented(c) | Member::Root(c))| *c)
            .min_by_key(|c| c.not_after)
            .map(|c| c.display_name());
        Verdict {
            failure: None,
            fails_from: window.map(|w| w.not_after),
            root_known: window.is_some_and(|w| w.root_known),
            path: names,
            expires_first: first,
        }
    }
}

/// The `modern` verdict: webpki decides; our paths give the dates.
pub fn modern_verdict(
    chain: &Chain,
    store: &TrustStore,
    server_name: &ServerName<'static>,
    now: OffsetDateTime,
) -> Verdict {
    let Some(leaf) = chain.leaf() else {
        return Verdict::fail(Failure::TlsCertInvalid {
            reason: "the server presented no parsable certificate".into(),
        });
    };
    let paths = chain.candidate_paths(store);
    let no_path = paths.is_empty();
    let windows: Vec<(Path, Window)> = paths
        .into_iter()
        .filter_map(|p| chain.window(store, &p).map(|w| (p, w)))
        .collect();
    // The path a client that tries alternates keeps longest.
    let best_live = windows
        .iter()
        .filter(|(_, w)| w.contains(now))
        .max_by_key(|(_, w)| w.not_after);
    let last_expired = windows
        .iter()
        .filter(|(_, w)| w.not_after < now)
        .max_by_key(|(_, w)| w.not_after);
    match trust::webpki_verify(chain, store, server_name, now) {
        Ok(()) => match (best_live, last_expired) {
            (Some((p, w)), _) => Verdict::on_path(chain, store, p, Some(*w)),
            (None, Some((p, w))) => {
                // webpki ignores anchor dates; the full root says it expired.
                let mut v = Verdict::on_path(chain, store, p, Some(*w));
                v.failure = Some(Failure::TlsCertExpired {
                    cert: v.path.last().cloned(),
                    not_after: Some(trust::rfc3339(w.not_after)),
                    store: Some(store.name.clone()),
                    served_path_only: false,
                });
                v
            }
            (None, None) => Verdict {
                failure: None,
                fails_from: None,
                root_known: false,
                path: vec![leaf.short_name()],
                expires_first: None,
            },
        },
        Err(e) => {
            let base = crate::tls::classify(&std::io::Error::other(e));
            // What ends the chain comes first: webpki reports an expired
            // member it met on the way even when no path reaches the store
            // (that member is a hygiene finding then).
            let unreachable = matches!(
                base,
                Failure::TlsUntrustedRoot { .. }
                    | Failure::TlsCertExpired { .. }
                    | Failure::TlsCertNotYetValid { .. }
            ) && (no_path || base.code() == FailureCode::TlsUntrustedRoot);
            let failure = if unreachable {
                let (_, end) = legacy::walk(chain, store);
                legacy::end_failure(chain, store, &end, no_path).unwrap_or(
                    Failure::TlsUntrustedRoot {
                        store: Some(store.name.clone()),
                        served_end: None,
                        no_path,
                    },
                )
            } else {
                base
            };
            let mut v = match (failure.code(), last_expired.or(best_live)) {
                (FailureCode::TlsCertExpired, Some((p, w))) => {
                    Verdict::on_path(chain, store, p, Some(*w))
                }
                (_, Some((p, w))) => Verdict {
                    fails_from: None,
                    ..Verdict::on_path(chain, store, p, Some(*w))
                },
                _ => Verdict::fail(failure.clone()),
            };
            v.failure = Some(match failure {
                Failure::TlsCertExpired {
                    cert, not_after, ..
                } => match (&v.expires_first, v.fails_from) {
                    (Some(first), Some(t)) => Failure::TlsCertExpired {
                        cert: Some(first.clone()),
                        not_after: Some(trust::rfc3339(t)),
                        store: Some(store.name.clone()),
                        served_path_only: false,
                    },
                    _ => Failure::TlsCertExpired {
                        cert,
                        not_after,
                        store: Some(store.name.clone()),
                        served_path_only: false,
                    },
                },
                other => other,
            });
            v
        }
    }
}

/// One combination in the details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Combination {
    /// `"profile/store"`.
    pub combination: String,
    /// Profile name.
    pub profile: String,
    /// Store name.
    pub store: String,
    /// Listed in `must_pass`.
    pub must_pass: bool,
    /// Passes at `evaluated_at`.
    pub ok: bool,
    /// Why not.
    #[serde(deserialize_with = "crate::check::failure::lenient_code")]
    pub failure_code: Option<FailureCode>,
    /// Human message.
    pub failure_message: Option<String>,
    /// RFC 3339 date it starts (or started) failing.
    pub fails_from: Option<String>,
    /// Whole days from `evaluated_at` to `fails_from` (negative: in the past).
    pub days_left: Option<i64>,
    /// The minimum days left asserted for this combination.
    pub min_days_left: u32,
    /// The anchor's expiry is included in `fails_from`.
    pub root_expiry_known: bool,
    /// Short names along the path, leaf first, anchor last.
    pub path: Vec<String>,
    /// The member that expires first.
    pub expires_first: Option<String>,
}

/// One handshake in the details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandshakeReport {
    /// `default` (modern), `legacy`, `tls13`, `tls12`, `no_sni`, `rsa_only`, `ecdsa_only`.
    pub client: String,
    /// Completed.
    pub ok: bool,
    /// Why not.
    #[serde(deserialize_with = "crate::check::failure::lenient_code")]
    pub failure_code: Option<FailureCode>,
    /// Human message.
    pub failure_message: Option<String>,
    /// `"1.2"` / `"1.3"`.
    pub tls_version: Option<String>,
    /// Negotiated suite.
    pub cipher_suite: Option<String>,
    /// Handshake time, µs.
    pub time_us: Option<u64>,
    /// Fingerprints of the presented chain, as served.
    pub chain: Vec<String>,
}

/// The forecast in words.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Forecast {
    /// One sentence for the whole matrix.
    pub summary: String,
    /// One line per profile and store group.
    pub lines: Vec<String>,
}

/// The check's details: what a tls check observed.
///
/// A run that got no address or no valid server name has only `host` and
/// `port` (`address`, `evaluated_at`, `handshakes`, `matrix` empty, the rest
/// `None`); every evaluated run has all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
    /// SNI and the name checked.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    /// `ip:port` connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The `now` of the evaluation, RFC 3339.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub evaluated_at: String,
    /// Every handshake made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handshakes: Vec<HandshakeReport>,
    /// Store × profile.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matrix: Vec<Combination>,
    /// Chain hygiene findings (default client's chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hygiene: Option<Vec<hygiene::Finding>>,
    /// Forecast in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
    /// The inventory feed: every certificate seen (presented ones with
    /// their position, and the full roots paths ended at).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<CertInfo>>,
}

impl Report {
    /// The report of a run that made no handshake: the target only.
    pub fn unreached(spec: &TlsSpec) -> Self {
        Report {
            host: spec.host.clone(),
            port: spec.port,
            ..Report::default()
        }
    }

    /// The certificates seen (none before a handshake).
    pub fn certificates(&self) -> &[CertInfo] {
        self.certificates.as_deref().unwrap_or_default()
    }
}

/// Runs the check now.
pub async fn run(spec: &TlsSpec, timeout: Duration) -> KindResult {
    run_at(spec, timeout, OffsetDateTime::now_utc()).await
}

/// Runs the handshakes (real time, one deadline) and evaluates them at `now`.
pub async fn run_at(spec: &TlsSpec, timeout: Duration, now: OffsetDateTime) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut phases = Phases::default();
    let ip = match spec.address {
        Some(ip) => ip,
        None => match resolver::lookup_ips(&spec.host, &spec.resolver, deadline).await {
            Ok((ips, took)) => {
                phases.dns = Some(took);
                match ips.first() {
                    Some(ip) => *ip,
                    None => {
                        return early(
                            spec,
                            Failure::DnsFailure {
                                name: spec.host.clone(),
                                resolver: Some(spec.resolver.to_string()),
                                reason: "no addresses".into(),
                            },
                        );
                    }
                }
            }
            Err(f) => return early(spec, f),
        },
    };
    let addr = SocketAddr::new(ip, spec.port);
    let server_name = match ServerName::try_from(spec.server_name.clone()) {
        Ok(n) => n,
        Err(e) => {
            let f = Failure::InternalError {
                reason: format!("invalid server_name {:?}: {e}", spec.server_name),
            };
            return early(spec, f);
        }
    };
    let handshakes = futures_util::future::join_all(
        spec.handshake_kinds()
            .into_iter()
            .map(|k| handshake::handshake(k, addr, &server_name, deadline)),
    )
    .await;
    if let Some(h) = handshakes.first() {
        phases.connect = h.connect;
        phases.tls = h.tls;
    }
    let stores = spec.load_stores();
    let (report, result) = evaluate(spec, &stores, &handshakes, Some(addr), now);
    KindResult {
        phases,
        result,
        observed: super::Observed::Tls(Box::new(report)),
    }
}

fn early(spec: &TlsSpec, f: Failure) -> KindResult {
    KindResult {
        phases: Phases::default(),
        result: Err(f),
        observed: super::Observed::Tls(Box::new(Report::unreached(spec))),
    }
}

/// Evaluates recorded handshakes against the stores at `now`: the matrix,
/// hygiene, forecast, inventory, and the check's verdict.
pub fn evaluate(
    spec: &TlsSpec,
    stores: &[(String, Arc<TrustStore>)],
    handshakes: &[Handshake],
    addr: Option<SocketAddr>,
    now: OffsetDateTime,
) -> (Report, Result<(), Failure>) {
    let server_name = ServerName::try_from(spec.server_name.clone())
        .unwrap_or_else(|_| ServerName::try_from("invalid.").expect("a constant valid DNS name"));
    let chains: BTreeMap<HandshakeKind, Chain> = handshakes
        .iter()
        .map(|h| (h.kind, Chain::new(&h.chain)))
        .collect();
    let mut certificates: Vec<CertInfo> = Vec::new();
    let seen = |info: CertInfo, certificates: &mut Vec<CertInfo>| {
        if !certificates
            .iter()
            .any(|c| c.fingerprint_sha256 == info.fingerprint_sha256)
        {
            certificates.push(info);
        }
    };
    for h in handshakes {
        for info in describe_chain(&h.chain) {
            seen(info, &mut certificates);
        }
    }
    let mut matrix = Vec::new();
    // Each combination's typed failure, beside `matrix` (which holds the wire form).
    let mut failures: Vec<Option<Failure>> = Vec::new();
    for profile in &spec.profiles {
        let kind = profile.handshake();
        let hs = handshakes.iter().find(|h| h.kind == kind);
        for (store_name, store) in stores {
            let combination = format!("{}/{store_name}", profile.name());
            let verdict = match hs.map(|h| (&h.result, chains.get(&h.kind))) {
                None => Verdict::fail(Failure::InternalError {
                    reason: "no handshake was made".into(),
                }),
                Some((Err(f), _)) => Verdict::fail(f.clone()),
                Some((Ok(_), None)) => Verdict::fail(Failure::TlsCertInvalid {
                    reason: "the server presented no chain".into(),
                }),
                Some((Ok(_), Some(chain))) => match profile {
                    Profile::Legacy => legacy::verdict(chain, store, &server_name, now),
                    _ => modern_verdict(chain, store, &server_name, now),
                },
            };
            // Full roots the paths ended at go into the inventory too.
            if let Some(chain) = hs.and_then(|h| chains.get(&h.kind)) {
                for p in chain.candidate_paths(store) {
                    if let Some(root) = store.anchors.get(p.anchor).and_then(|a| a.cert.as_ref()) {
                        let mut info = root.info.clone();
                        info.trust_store = Some(store_name.clone());
                        seen(info, &mut certificates);
                    }
                }
            }
            let min_days_left = spec
                .min_days_left_for
                .get(&combination)
                .copied()
                .unwrap_or(spec.min_days_left);
            failures.push(verdict.failure.clone());
            matrix.push(Combination {
                must_pass: spec.must_pass.contains(&combination),
                profile: profile.name().to_owned(),
                store: store_name.clone(),
                ok: verdict.ok(),
                failure_code: verdict.failure.as_ref().map(Failure::code),
                failure_message: verdict.failure.as_ref().map(Failure::to_string),
                fails_from: verdict.fails_from.map(trust::rfc3339),
                days_left: verdict.fails_from.map(|t| (t - now).whole_days()),
                min_days_left,
                root_expiry_known: verdict.root_known,
                path: verdict.path,
                expires_first: verdict.expires_first,
                combination,
            });
        }
    }
    let default_chain = handshakes
        .iter()
        .find(|h| h.result.is_ok())
        .and_then(|h| chains.get(&h.kind));
    let store_refs: Vec<&TrustStore> = stores.iter().map(|(_, s)| s.as_ref()).collect();
    let hygiene = default_chain
        .map(|c| hygiene::findings(c, &store_refs, now, spec.min_days_left))
        .unwrap_or_default();
    let handshakes_report = handshakes.iter().map(handshake_report).collect();
    let forecast = forecast::forecast(&matrix, stores);
    let result = verdict(spec, handshakes, &matrix, &failures, &hygiene);
    let report = Report {
        host: spec.host.clone(),
        port: spec.port,
        server_name: spec.server_name.clone(),
        address: addr.map(|a| a.to_string()),
        evaluated_at: trust::rfc3339(now),
        handshakes: handshakes_report,
        matrix,
        hygiene: Some(hygiene),
        forecast: Some(forecast),
        certificates: Some(certificates),
    };
    (report, result)
}

fn handshake_report(h: &Handshake) -> HandshakeReport {
    let (ok, code, msg, version, suite) = match &h.result {
        Ok(n) => (
            true,
            None,
            None,
            Some(n.version.clone()),
            Some(n.cipher_suite.clone()),
        ),
        Err(f) => (false, Some(f.code()), Some(f.to_string()), None, None),
    };
    HandshakeReport {
        client: h.kind.name().to_owned(),
        ok,
        failure_code: code,
        failure_message: msg,
        tls_version: version,
        cipher_suite: suite,
        time_us: h.tls.map(|d| d.as_micros() as u64),
        chain: h
            .chain
            .iter()
            .map(|c| trust::fingerprint(c.as_ref()))
            .collect(),
    }
}

/// The check's verdict from the matrix (`failures[i]` is `matrix[i]`'s) and
/// the assertions.
fn verdict(
    spec: &TlsSpec,
    handshakes: &[Handshake],
    matrix: &[Combination],
    failures: &[Option<Failure>],
    hygiene: &[hygiene::Finding],
) -> Result<(), Failure> {
    let failing: Vec<CombinationFailure> = matrix
        .iter()
        .zip(failures)
        .filter(|(c, _)| c.must_pass)
        .filter_map(|(c, f)| {
            f.clone().map(|failure| CombinationFailure {
                combination: c.combination.clone(),
                failure,
            })
        })
        .collect();
    if !failing.is_empty() {
        return Err(Failure::Combinations {
            must_pass: matrix.iter().filter(|c| c.must_pass).count(),
            failing,
        });
    }
    if let Some(min) = spec.min_tls_version
        && let Some(Ok(n)) = handshakes
            .iter()
            .find(|h| h.kind == HandshakeKind::Default)
            .map(|h| &h.result)
        && n.version.as_str() < min.as_str()
    {
        return Err(Failure::TlsProtocolUnsupported {
            client: HandshakeKind::Default.name().to_owned(),
            negotiated: Some(n.version.clone()),
            min_tls_version: Some(min.as_str().to_owned()),
            reason: None,
        });
    }
    let soon: Vec<ExpiringCombination> = matrix
        .iter()
        .filter(|c| c.must_pass && c.ok)
        .filter_map(|c| {
            let left = c.days_left?;
            (left < i64::from(c.min_days_left)).then(|| ExpiringCombination {
                combination: c.combination.clone(),
                fails_from: c.fails_from.clone().unwrap_or_default(),
                days_left: left,
                min_days_left: c.min_days_left,
            })
        })
        .collect();
    if !soon.is_empty() {
        return Err(Failure::TlsExpiringSoon { combinations: soon });
    }
    if spec.hygiene == HygieneMode::Fail && !hygiene.is_empty() {
        return Err(Failure::TlsChainHygiene {
            findings: hygiene.to_vec(),
        });
    }
    Ok(())
}
