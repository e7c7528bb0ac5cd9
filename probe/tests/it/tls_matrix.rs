#![allow(clippy::unwrap_used)]
//! The tls check against real TLS servers on loopback serving generated PKI:
//! the store × profile matrix (the AddTrust replay), failure codes, the date
//! each combination starts failing, hygiene and the inventory feed. Every
//! evaluation takes an injected `now`.

use std::{path::Path, time::Duration};

use outpost_probe::{
    check::{
        self, CheckKind, CheckSpec, Failure, FailureCode, KindResult, RawCheck, RunContext,
        tls::{self, TlsSpec},
    },
    config::Problems,
};
use outpost_testkit::{HttpServer, Identity, KeyKind, LeafOptions, Pki, RunningServer};
use serde_json::Value;
use time::{OffsetDateTime, macros::datetime};

/// The injected evaluation time of every fixed-date scenario.
const NOW: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

fn parse(tls_toml: &str) -> Result<CheckSpec, outpost_probe::config::ConfigError> {
    let text = format!("id = \"t\"\ninterval = \"60s\"\ntimeout = \"5s\"\n[tls]\n{tls_toml}\n");
    let raw: RawCheck = toml::from_str(&text).unwrap();
    let mut p = Problems::default();
    let s = raw.validate("check", &mut p);
    p.finish("test")?;
    Ok(s.unwrap())
}

fn tls_spec(s: &CheckSpec) -> &TlsSpec {
    match &s.kind {
        CheckKind::Tls(t) => t,
        _ => panic!("not a tls check"),
    }
}

async fn serve(identity: Identity) -> RunningServer {
    HttpServer::builder().tls(identity).run().await.unwrap()
}

fn write(dir: &Path, name: &str, pems: &[String]) -> String {
    let p = dir.join(format!("{name}.pem"));
    std::fs::write(&p, pems.concat()).unwrap();
    p.display().to_string()
}

/// A spec for `srv` with `stores` (name, pem path) and `profiles`.
fn spec_for(
    srv: &RunningServer,
    stores: &[(&str, String)],
    profiles: &[&str],
    extra: &str,
) -> CheckSpec {
    let stores_toml: Vec<String> = stores
        .iter()
        .map(|(n, p)| format!("{n} = \"{p}\""))
        .collect();
    let names: Vec<String> = stores.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let profiles: Vec<String> = profiles.iter().map(|p| format!("\"{p}\"")).collect();
    parse(&format!(
        "host = \"localhost\"\naddress = \"127.0.0.1\"\nport = {}\nstores = {{ {} }}\ntrust_stores = [{}]\nprofiles = [{}]\n{extra}",
        srv.addr().port(),
        stores_toml.join(", "),
        names.join(", "),
        profiles.join(", ")
    ))
    .unwrap()
}

async fn run_at(spec: &CheckSpec, now: OffsetDateTime) -> KindResult {
    tls::run_at(tls_spec(spec), Duration::from_secs(5), now).await
}

fn combo(r: &KindResult, name: &str) -> Value {
    r.details()["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["combination"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no combination {name} in {:#}", r.details()))
}

fn code_of(r: &KindResult, name: &str) -> Option<String> {
    combo(r, name)["failure_code"].as_str().map(str::to_owned)
}

fn code(r: &KindResult) -> Option<FailureCode> {
    r.result.as_ref().err().map(|f| f.code())
}

fn leaf_opts(sans: &[&str], not_before: OffsetDateTime, not_after: OffsetDateTime) -> LeafOptions {
    LeafOptions {
        sans: sans.iter().map(|s| (*s).to_owned()).collect(),
        not_before,
        not_after,
        ..Default::default()
    }
}

fn root(name: &str) -> Pki {
    Pki::with_validity(
        name,
        datetime!(2015-01-01 00:00 UTC),
        datetime!(2040-01-01 00:00 UTC),
    )
}

fn valid_leaf(ca: &Pki, sans: &[&str]) -> Identity {
    ca.leaf_with(leaf_opts(
        sans,
        datetime!(2025-06-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    ))
}

struct AddTrust {
    old: Pki,
    new: Pki,
    identity: Identity,
}

/// OLD root (expired 2020-05-30), NEW root, an intermediate signed by NEW, a
/// cross-certificate of NEW signed by OLD (expired with OLD), a leaf; served
/// as leaf + intermediate + cross-certificate.
fn addtrust() -> AddTrust {
    let old = Pki::with_validity(
        "OLD ROOT",
        datetime!(2000-05-30 10:48 UTC),
        datetime!(2020-05-30 10:48 UTC),
    );
    let new = Pki::with_validity(
        "NEW ROOT",
        datetime!(2010-02-01 00:00 UTC),
        datetime!(2038-01-18 23:59 UTC),
    );
    let inter = new.intermediate_with(
        "Issuing CA",
        datetime!(2018-11-02 00:00 UTC),
        datetime!(2030-12-31 23:59 UTC),
    );
    let cross = old.cross_sign_with_validity(
        &new,
        datetime!(2000-05-30 10:48 UTC),
        datetime!(2020-05-30 10:48 UTC),
    );
    let mut identity = valid_leaf(&inter, &["localhost"]);
    identity.chain.push(cross);
    AddTrust { old, new, identity }
}

#[tokio::test]
async fn cross_signed_chain_fails_for_legacy_profile_only() {
    let a = addtrust();
    let dir = tempfile::tempdir().unwrap();
    let stores = [
        ("old", write(dir.path(), "old", &[a.old.root_pem()])),
        ("new", write(dir.path(), "new", &[a.new.root_pem()])),
        (
            "both",
            write(dir.path(), "both", &[a.old.root_pem(), a.new.root_pem()]),
        ),
    ];
    let srv = serve(a.identity).await;
    let spec = spec_for(&srv, &stores, &["modern", "legacy"], "");
    let r = run_at(&spec, NOW).await;

    assert_eq!(
        code_of(&r, "modern/old").as_deref(),
        Some("tls_cert_expired")
    );
    assert_eq!(combo(&r, "modern/new")["ok"], true);
    assert_eq!(combo(&r, "modern/both")["ok"], true);
    assert_eq!(
        code_of(&r, "legacy/old").as_deref(),
        Some("tls_cert_expired")
    );
    assert_eq!(
        code_of(&r, "legacy/new").as_deref(),
        Some("tls_untrusted_root")
    );
    assert_eq!(
        code_of(&r, "legacy/both").as_deref(),
        Some("tls_cert_expired")
    );

    // The dates: legacy (and modern with only OLD) stopped working when OLD
    // and its cross-sign expired; modern with NEW works until the leaf expires.
    assert_eq!(
        combo(&r, "legacy/old")["fails_from"],
        "2020-05-30T10:48:00Z"
    );
    assert_eq!(
        combo(&r, "legacy/both")["fails_from"],
        "2020-05-30T10:48:00Z"
    );
    assert_eq!(
        combo(&r, "modern/old")["fails_from"],
        "2020-05-30T10:48:00Z"
    );
    assert_eq!(
        combo(&r, "modern/new")["fails_from"],
        "2027-01-01T00:00:00Z"
    );
    assert_eq!(combo(&r, "modern/new")["root_expiry_known"], true);
    assert_eq!(combo(&r, "modern/new")["path"][2], "NEW ROOT");
    assert_eq!(
        combo(&r, "legacy/both")["path"][2],
        "NEW ROOT (issued by OLD ROOT)"
    );
    assert_eq!(combo(&r, "legacy/both")["path"][3], "OLD ROOT");

    // Every combination must pass by default: the first failing one names the code.
    assert_eq!(code(&r), Some(FailureCode::TlsCertExpired));

    // The forecast in words.
    let lines_details = r.details();
    let lines: Vec<&str> = lines_details["forecast"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"modern clients trusting new fine until 2027-01-01"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"legacy clients trusting old fail from 2020-05-30 (tls_cert_expired)"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"legacy clients trusting new fail (tls_untrusted_root)"),
        "{lines:?}"
    );

    // The inventory holds the presented chain and the full roots paths ended at.
    let certs_details = r.details();
    let certs = certs_details["certificates"].as_array().unwrap();
    assert_eq!(certs.iter().filter(|c| !c["position"].is_null()).count(), 3);
    let old_root = certs
        .iter()
        .find(|c| c["subject"].as_str().unwrap().contains("OLD ROOT") && c["position"].is_null())
        .unwrap();
    assert_eq!(old_root["self_signed"], true);
    assert_eq!(old_root["not_after"], "2020-05-30T10:48:00Z");

    // Only modern with NEW must pass: the check passes, then fails 14 days before the leaf expires.
    let spec = spec_for(
        &srv,
        &stores,
        &["modern", "legacy"],
        "must_pass = [\"modern/new\", \"modern/both\"]",
    );
    assert!(run_at(&spec, NOW).await.result.is_ok());
    let r = run_at(&spec, datetime!(2026-12-25 00:00 UTC)).await;
    assert_eq!(code(&r), Some(FailureCode::TlsExpiringSoon));
    assert_eq!(combo(&r, "modern/new")["days_left"], 7);

    // The human rendering.
    let text = tls::render_matrix(&r.observed);
    assert!(text.contains("FAIL tls_untrusted_root (info)"), "{text}");
    assert!(
        text.contains("FAIL tls_cert_expired from 2020-05-30"),
        "{text}"
    );
    assert!(text.contains("PASS until 2027-01-01 (7d) SOON"), "{text}");
}

#[tokio::test]
async fn leaf_only_chain_is_incomplete_for_every_profile() {
    let r0 = root("Root A");
    let inter = r0.intermediate_with(
        "Inter A",
        datetime!(2020-01-01 00:00 UTC),
        datetime!(2035-01-01 00:00 UTC),
    );
    let mut id = valid_leaf(&inter, &["localhost"]);
    id.chain.truncate(1);
    let dir = tempfile::tempdir().unwrap();
    let stores = [("a", write(dir.path(), "a", &[r0.root_pem()]))];
    let srv = serve(id).await;
    let r = run_at(&spec_for(&srv, &stores, &["modern", "legacy"], ""), NOW).await;
    assert_eq!(code(&r), Some(FailureCode::TlsChainIncomplete));
    assert_eq!(
        code_of(&r, "modern/a").as_deref(),
        Some("tls_chain_incomplete")
    );
    assert_eq!(
        code_of(&r, "legacy/a").as_deref(),
        Some("tls_chain_incomplete")
    );
    assert_eq!(r.details()["hygiene"][0]["kind"], "missing_intermediate");
}

#[tokio::test]
async fn leaf_expiring_in_5_days_fails_a_14_day_minimum_with_its_date() {
    let r0 = root("Root B");
    let id = r0.leaf_with(leaf_opts(
        &["localhost"],
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2026-03-06 00:00 UTC),
    ));
    let dir = tempfile::tempdir().unwrap();
    let stores = [("b", write(dir.path(), "b", &[r0.root_pem()]))];
    let srv = serve(id).await;
    let r = run_at(&spec_for(&srv, &stores, &["modern", "legacy"], ""), NOW).await;
    assert_eq!(code(&r), Some(FailureCode::TlsExpiringSoon));
    for c in ["modern/b", "legacy/b"] {
        assert_eq!(combo(&r, c)["ok"], true);
        assert_eq!(combo(&r, c)["days_left"], 5);
        assert_eq!(combo(&r, c)["fails_from"], "2026-03-06T00:00:00Z");
    }
    assert_eq!(r.details()["hygiene"][0]["kind"], "expiring_member");
    // A 3-day minimum for one combination is met for it, not for the other.
    let spec = spec_for(
        &srv,
        &stores,
        &["modern", "legacy"],
        "min_days_left = 3\nmin_days_left_for = { \"legacy/b\" = 30 }",
    );
    let r = run_at(&spec, NOW).await;
    assert_eq!(code(&r), Some(FailureCode::TlsExpiringSoon));
    let Err(Failure::TlsExpiringSoon { combinations }) = &r.result else {
        panic!("{:?}", r.result)
    };
    let named: Vec<&str> = combinations
        .iter()
        .map(|c| c.combination.as_str())
        .collect();
    assert_eq!(named, ["legacy/b"]);
    assert_eq!(combinations[0].min_days_left, 30);
}

#[tokio::test]
async fn expired_intermediate_under_a_valid_leaf_fails_and_is_named_in_the_inventory() {
    let r0 = root("Root C");
    let inter = r0.intermediate_with(
        "Expired Inter",
        datetime!(2019-01-01 00:00 UTC),
        datetime!(2025-01-01 00:00 UTC),
    );
    let id = valid_leaf(&inter, &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let stores = [("c", write(dir.path(), "c", &[r0.root_pem()]))];
    let srv = serve(id).await;
    let r = run_at(&spec_for(&srv, &stores, &["modern", "legacy"], ""), NOW).await;
    assert_eq!(code(&r), Some(FailureCode::TlsCertExpired));
    assert_shape_of_fixture(&r.details(), "tls-expired-intermediate.json");
    assert_eq!(code_of(&r, "legacy/c").as_deref(), Some("tls_cert_expired"));
    assert_eq!(combo(&r, "modern/c")["fails_from"], "2025-01-01T00:00:00Z");
    assert_eq!(
        combo(&r, "modern/c")["expires_first"],
        "Expired Inter (issued by Root C)"
    );
    let inter_info_details = r.details();
    let inter_info = inter_info_details["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["position"] == 1)
        .unwrap();
    assert!(
        inter_info["subject"]
            .as_str()
            .unwrap()
            .contains("CN=Expired Inter")
    );
    assert_eq!(inter_info["not_after"], "2025-01-01T00:00:00Z");
    assert_eq!(inter_info["is_ca"], true);
    assert_eq!(inter_info["key_type"], "ECDSA P-256");
    assert!(
        r.details()["hygiene"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "expired_member" && f["position"] == 1)
    );
}

/// Served: leaf ← expired intermediate ← Root C; trusted: only Root Z (and
/// Mozilla, which trusts none of it). No path exists whatever the dates, so
/// what ends the chain is reported first; the expired member is a finding.
#[tokio::test]
async fn a_chain_with_no_path_to_the_store_is_untrusted_before_expired() {
    let r0 = root("Root C");
    let other = root("Root Z");
    let inter = r0.intermediate_with(
        "Expired Inter",
        datetime!(2019-01-01 00:00 UTC),
        datetime!(2025-01-01 00:00 UTC),
    );
    let id = valid_leaf(&inter, &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(id).await;
    let spec = parse(&format!(
        "host = \"localhost\"\naddress = \"127.0.0.1\"\nport = {}\nstores = {{ z = \"{}\" }}\ntrust_stores = [\"mozilla\", \"z\"]\nprofiles = [\"modern\", \"legacy\"]",
        srv.addr().port(),
        write(dir.path(), "z", &[other.root_pem()])
    ))
    .unwrap();
    let r = run_at(&spec, NOW).await;
    assert_eq!(
        code(&r),
        Some(FailureCode::TlsUntrustedRoot),
        "{:?}",
        r.result
    );
    for c in ["modern/mozilla", "modern/z", "legacy/mozilla", "legacy/z"] {
        assert_eq!(
            code_of(&r, c).as_deref(),
            Some("tls_untrusted_root"),
            "{c}: {}",
            combo(&r, c)
        );
    }
    // The modern message names where the served chain ends.
    let modern = combo(&r, "modern/z")["failure_message"].clone();
    assert!(modern.as_str().unwrap().contains("Root C"), "{modern}");
    assert!(
        r.details()["hygiene"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "expired_member" && f["position"] == 1),
        "{}",
        r.details()["hygiene"]
    );
}

#[tokio::test]
async fn wrong_hostname_is_a_name_mismatch_for_every_profile() {
    let r0 = root("Root D");
    let id = valid_leaf(&r0, &["other.test"]);
    let dir = tempfile::tempdir().unwrap();
    let stores = [("d", write(dir.path(), "d", &[r0.root_pem()]))];
    let srv = serve(id).await;
    let r = run_at(&spec_for(&srv, &stores, &["modern", "legacy"], ""), NOW).await;
    assert_eq!(code(&r), Some(FailureCode::TlsNameMismatch));
    assert_eq!(
        code_of(&r, "legacy/d").as_deref(),
        Some("tls_name_mismatch")
    );
    let Err(Failure::Combinations { must_pass, failing }) = &r.result else {
        panic!("{:?}", r.result)
    };
    assert_eq!((*must_pass, failing.len()), (2, 2));
    for c in failing {
        assert_eq!(
            c.failure,
            Failure::TlsNameMismatch {
                name: Some("localhost".into()),
                presented: vec!["other.test".into()],
            },
            "{}",
            c.combination
        );
    }
}

#[tokio::test]
async fn self_signed_leaf_is_reported_as_such_through_the_dispatch() {
    // Generated relative to the real clock, so this one runs at the real now.
    let id = Pki::self_signed_leaf(&["localhost"]);
    let srv = serve(id).await;
    let spec = parse(&format!(
        "host = \"localhost\"\naddress = \"127.0.0.1\"\nport = {}\nprofiles = [\"modern\", \"legacy\"]",
        srv.addr().port()
    ))
    .unwrap();
    let o = check::run(&spec, &RunContext::default()).await;
    assert_eq!(o.kind, check::Kind::Tls);
    assert_eq!(
        o.result.as_ref().unwrap_err().code(),
        FailureCode::TlsSelfSigned
    );
    let m_details = o.details();
    let m = &m_details["matrix"];
    assert_eq!(m[0]["combination"], "modern/mozilla");
    assert_eq!(m[1]["failure_code"], "tls_self_signed");
    assert_eq!(o.details()["certificates"][0]["self_signed"], true);
}

#[tokio::test]
async fn tls13_only_server_fails_the_tls12_profile_only() {
    let r0 = root("Root E");
    let id = valid_leaf(&r0, &["localhost"]);
    let cfg = id.server_config_with(&[&rustls::version::TLS13], Vec::new());
    let srv = HttpServer::builder().tls_config(cfg).run().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stores = [("e", write(dir.path(), "e", &[r0.root_pem()]))];
    let r = run_at(
        &spec_for(
            &srv,
            &stores,
            &["modern", "tls13", "tls12"],
            "min_tls_version = \"1.3\"",
        ),
        NOW,
    )
    .await;
    assert_eq!(combo(&r, "modern/e")["ok"], true);
    assert_eq!(combo(&r, "tls13/e")["ok"], true);
    assert_eq!(
        code_of(&r, "tls12/e").as_deref(),
        Some("tls_protocol_unsupported")
    );
    assert_eq!(code(&r), Some(FailureCode::TlsProtocolUnsupported));
    let hs_details = r.details();
    let hs = hs_details["handshakes"].as_array().unwrap();
    assert_eq!(hs[0]["client"], "default");
    assert_eq!(hs[0]["tls_version"], "1.3");
}

/// The `legacy` profile is an OpenSSL 1.0.2-class client whole: where that
/// stack cannot complete a handshake (no TLS 1.3, no Ed25519, no ChaCha20),
/// only its combinations fail, with the handshake's code; where it can
/// (TLS 1.2, ECDHE-AES-GCM), it passes.
#[tokio::test]
async fn the_legacy_client_fails_handshakes_where_openssl_1_0_2_would() {
    let r0 = root("Root L");
    let dir = tempfile::tempdir().unwrap();
    let stores = [("l", write(dir.path(), "l", &[r0.root_pem()]))];
    let profiles = ["modern", "legacy"];
    let id = valid_leaf(&r0, &["localhost"]);

    // TLS 1.3 only: the IOT incident's class of failure.
    let cfg = id.server_config_with(&[&rustls::version::TLS13], Vec::new());
    let srv = HttpServer::builder().tls_config(cfg).run().await.unwrap();
    let r = run_at(&spec_for(&srv, &stores, &profiles, ""), NOW).await;
    assert_eq!(
        combo(&r, "modern/l")["ok"],
        true,
        "{}",
        combo(&r, "modern/l")
    );
    assert_eq!(
        code_of(&r, "legacy/l").as_deref(),
        Some("tls_protocol_unsupported")
    );
    assert_eq!(code(&r), Some(FailureCode::TlsProtocolUnsupported));
    let handshakes = r.details()["handshakes"].clone();
    let legacy = handshakes
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["client"] == "legacy")
        .unwrap()
        .clone();
    assert_eq!(legacy["ok"], false);
    assert_eq!(legacy["failure_code"], "tls_protocol_unsupported");

    // TLS 1.2 with a suite the old stack has: it passes, on TLS 1.2.
    let cfg = id.server_config_with(&[&rustls::version::TLS12], Vec::new());
    let srv = HttpServer::builder().tls_config(cfg).run().await.unwrap();
    let r = run_at(&spec_for(&srv, &stores, &profiles, ""), NOW).await;
    assert!(r.result.is_ok(), "{:?}", r.result);
    let handshakes = r.details()["handshakes"].clone();
    let legacy = handshakes
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["client"] == "legacy")
        .unwrap()
        .clone();
    assert_eq!(legacy["tls_version"], "1.2");
    assert_eq!(
        legacy["cipher_suite"],
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    );

    // TLS 1.2 with ChaCha20-Poly1305 only (OpenSSL 1.1.0 and later).
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    };
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .unwrap();
    let srv = HttpServer::builder()
        .tls_config(std::sync::Arc::new(cfg))
        .run()
        .await
        .unwrap();
    let r = run_at(&spec_for(&srv, &stores, &profiles, ""), NOW).await;
    assert_eq!(combo(&r, "modern/l")["ok"], true);
    assert_eq!(
        code_of(&r, "legacy/l").as_deref(),
        Some("tls_handshake_failure")
    );

    // An Ed25519 leaf (OpenSSL 1.1.1 and later can verify it).
    let ed = r0.leaf_with(LeafOptions {
        key: KeyKind::Ed25519,
        ..leaf_opts(
            &["localhost"],
            datetime!(2025-06-01 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
        )
    });
    let srv = serve(ed).await;
    let r = run_at(&spec_for(&srv, &stores, &profiles, ""), NOW).await;
    assert_eq!(
        combo(&r, "modern/l")["ok"],
        true,
        "{}",
        combo(&r, "modern/l")
    );
    assert_eq!(
        code_of(&r, "legacy/l").as_deref(),
        Some("tls_handshake_failure")
    );
}

#[tokio::test]
async fn ecdsa_only_server_fails_the_rsa_only_profile_and_an_rsa_server_the_ecdsa_one() {
    let r0 = root("Root F");
    let dir = tempfile::tempdir().unwrap();
    let stores = [("f", write(dir.path(), "f", &[r0.root_pem()]))];
    let ecdsa = serve(valid_leaf(&r0, &["localhost"])).await;
    let r = run_at(
        &spec_for(
            &ecdsa,
            &stores,
            &["modern", "rsa_only", "ecdsa_only"],
            "must_pass = [\"modern/*\"]",
        ),
        NOW,
    )
    .await;
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert_eq!(
        code_of(&r, "rsa_only/f").as_deref(),
        Some("tls_handshake_failure")
    );
    assert_eq!(combo(&r, "ecdsa_only/f")["ok"], true);

    let rsa_id = r0.leaf_with(LeafOptions {
        key: KeyKind::Rsa2048,
        ..leaf_opts(
            &["localhost"],
            datetime!(2025-06-01 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
        )
    });
    let rsa = serve(rsa_id).await;
    let r = run_at(
        &spec_for(&rsa, &stores, &["modern", "rsa_only", "ecdsa_only"], ""),
        NOW,
    )
    .await;
    assert_eq!(combo(&r, "rsa_only/f")["ok"], true);
    assert_eq!(
        code_of(&r, "ecdsa_only/f").as_deref(),
        Some("tls_handshake_failure")
    );
    let leaf_details = r.details();
    let leaf = &leaf_details["certificates"][0];
    assert_eq!(leaf["key_type"], "RSA 2048");
}

#[tokio::test]
async fn needless_root_and_wrong_order_are_hygiene_findings_that_can_fail() {
    let r0 = root("Root G");
    let inter = r0.intermediate_with(
        "Inter G",
        datetime!(2020-01-01 00:00 UTC),
        datetime!(2035-01-01 00:00 UTC),
    );
    let mut id = valid_leaf(&inter, &["localhost"]);
    // leaf, root, intermediate: the root is needless and the order wrong.
    id.chain.insert(1, r0.root_der());
    let dir = tempfile::tempdir().unwrap();
    let stores = [("g", write(dir.path(), "g", &[r0.root_pem()]))];
    let srv = serve(id).await;
    let r = run_at(&spec_for(&srv, &stores, &["modern", "legacy"], ""), NOW).await;
    assert!(r.result.is_ok(), "{:?}", r.result);
    let kinds_details = r.details();
    let kinds: Vec<(String, u64)> = kinds_details["hygiene"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(kinds.contains(&("wrong_order".into(), 0)), "{kinds:?}");
    assert!(kinds.contains(&("root_sent".into(), 1)), "{kinds:?}");
    let r = run_at(
        &spec_for(&srv, &stores, &["modern", "legacy"], "hygiene = \"fail\""),
        NOW,
    )
    .await;
    assert_eq!(code(&r), Some(FailureCode::TlsChainHygiene));
}

#[tokio::test]
async fn refused_connection_fails_every_combination_with_the_connect_code() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let spec = parse(&format!("host = \"localhost\"\naddress = \"127.0.0.1\"\nport = {port}\nprofiles = [\"modern\", \"legacy\"]")).unwrap();
    let r = run_at(&spec, NOW).await;
    assert_eq!(code(&r), Some(FailureCode::ConnectionRefused));
}

#[test]
fn invalid_tls_configs_name_the_offending_key() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write(dir.path(), "x", &[root("Root X").root_pem()]);
    let cases = [
        (
            "host = \"a.test\"\nprofiles = [\"ancient\"]",
            "check.tls.profiles[0]",
        ),
        (
            "host = \"a.test\"\ntrust_stores = [\"nope\"]",
            "check.tls.trust_stores[0]",
        ),
        (
            "host = \"a.test\"\nmust_pass = [\"legacy/mozilla\"]",
            "check.tls.must_pass[0]",
        ),
        (
            "host = \"a.test\"\nmin_tls_version = \"1.1\"",
            "check.tls.min_tls_version",
        ),
        (
            &format!("host = \"a.test\"\nstores = {{ mozilla = \"{pem}\" }}"),
            "check.tls.stores.mozilla",
        ),
        (
            "host = \"a.test\"\nstores = { old = \"/nonexistent/ca.pem\" }",
            "check.tls.stores.old",
        ),
        (
            "host = \"a.test\"\nmin_days_left_for = { \"legacy/mozilla\" = 3 }",
            "check.tls.min_days_left_for.legacy/mozilla",
        ),
        (
            "host = \"a.test\"\naddress = \"not-an-ip\"",
            "check.tls.address",
        ),
    ];
    for (toml, path) in cases {
        let err = parse(toml).unwrap_err();
        assert!(err.has_path(path), "{toml}: {err}");
    }
    // Unknown keys are rejected by serde.
    let raw: Result<RawCheck, _> =
        toml::from_str("id = \"t\"\n[tls]\nhost = \"a\"\nprofile = [\"modern\"]\n");
    assert!(raw.is_err());
    // Defaults: mozilla then declared bundles, modern only, every combination must pass.
    let s = parse(&format!(
        "host = \"a.test\"\nstores = {{ old-device = \"{pem}\" }}"
    ))
    .unwrap();
    let t = tls_spec(&s);
    assert_eq!(t.port, 443);
    assert_eq!(t.server_name, "a.test");
    assert_eq!(t.must_pass, vec!["modern/mozilla", "modern/old-device"]);
    assert_eq!(t.min_days_left, 14);
}

#[tokio::test]
async fn host_is_resolved_through_the_named_resolver() {
    use outpost_testkit::{DnsServer, RecordType};
    let pki = Pki::new("resolver-root");
    let srv = serve(pki.leaf(&["svc.internal.test"])).await;
    let dns = DnsServer::start().await.unwrap();
    dns.set_records("svc.internal.test.", RecordType::A, &[(30, "127.0.0.1")])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let text = format!(
        "id = \"t\"\ntimeout = \"5s\"\n[tls]\nhost = \"svc.internal.test\"\nport = {}\nresolver = \"{}\"\nstores = {{ internal = \"{}\" }}\ntrust_stores = [\"internal\"]\n",
        srv.addr().port(),
        dns.udp_url(),
        ca.display()
    );
    let raw: outpost_probe::check::RawCheck = toml::from_str(&text).unwrap();
    let mut p = outpost_probe::config::Problems::default();
    let spec = raw.validate("checks[0]", &mut p).unwrap();
    let ctx = outpost_probe::check::RunContext::default();
    let o = outpost_probe::check::run(&spec, &ctx).await;
    assert!(o.ok(), "{:?}", o.result);
    assert!(o.phases.dns.is_some());
    assert_eq!(
        o.details()["address"],
        format!("127.0.0.1:{}", srv.addr().port())
    );
    // A name the resolver does not know fails with its DNS code.
    let missing = text.replace("svc.internal.test", "nope.internal.test");
    let raw: outpost_probe::check::RawCheck = toml::from_str(&missing).unwrap();
    let spec = raw.validate("checks[0]", &mut p).unwrap();
    let o = outpost_probe::check::run(&spec, &ctx).await;
    assert_eq!(
        o.result.unwrap_err().code(),
        outpost_probe::check::FailureCode::DnsNxdomain
    );
}

/// The shape of a `details` value: every key path, array elements merged.
fn shape(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn walk(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = format!("{at}.{k}");
                    walk(v, &p, out);
                    out.insert(p);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, &format!("{at}[]"), out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// A run today has the shape of the same scenario's run captured (in
/// `tests/fixtures/details/`) before the details were typed values.
fn assert_shape_of_fixture(details: &serde_json::Value, fixture: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/details")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (got, want) = (shape(details), shape(&want));
    assert_eq!(
        got,
        want,
        "details differ in shape from {fixture}: new {:?}, gone {:?}",
        got.difference(&want).collect::<Vec<_>>(),
        want.difference(&got).collect::<Vec<_>>()
    );
}
