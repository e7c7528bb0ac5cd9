#![allow(clippy::unwrap_used)]
//! The certificate inventory and `certificate_expiring` alerts end to end:
//! fake probes send tls results with `details.certificates` over real gRPC,
//! the controller inventories them, and the test kit's PagerDuty receiver
//! sees one alert per certificate. Expiry is computed against an injected
//! `now` (`alerting::certificate::evaluate`), never today's date.

use crate::support::*;
use outpost_controller::{
    alerting::{Transition, certificate},
    certificate::{DAY_MS, rfc3339},
    store::now_ms,
};
use outpost_proto::v1::CheckResult;
use outpost_testkit::PagerReceiver;
use serde_json::{Value, json};

const LEAF: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const INTER: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn tls_checks(ids: &[&str], extra: &str) -> String {
    let mut s = String::new();
    for id in ids {
        s.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"1h\"\ntimeout = \"10s\"\ntls = {{ host = \"{id}.example.net\" }}\n"
        ));
    }
    s.push_str(extra);
    s
}

fn cert(fp: &str, subject: &str, not_after_ms: i64, position: i64) -> Value {
    json!({
        "fingerprint_sha256": fp, "subject": subject, "issuer": "CN=Test Intermediate",
        "sans": ["api.example.net"], "not_before": rfc3339(not_after_ms - 90 * DAY_MS),
        "not_after": rfc3339(not_after_ms), "key_type": "ECDSA P-256",
        "signature_algorithm": "ecdsa-with-SHA256", "position": position,
        "is_ca": position > 0, "self_signed": false
    })
}

fn tls_result(p: &mut FakeProbe, check: &str, address: &str, certs: Vec<Value>) -> CheckResult {
    let mut r = p.result(check, true);
    r.kind = "tls".into();
    r.details_json = json!({
        "host": format!("{check}.example.net"), "port": 443, "address": address,
        "certificates": certs,
    })
    .to_string();
    r
}

async fn probes(addr: std::net::SocketAddr) -> Vec<FakeProbe> {
    let mut out = Vec::new();
    for (name, _, _) in PROBES {
        let mut p = connect(addr, name).await;
        p.assignment().await;
        out.push(p);
    }
    out
}

#[tokio::test]
async fn one_alert_per_certificate_seen_by_three_checks_escalates_with_days_left() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checks = tls_checks(
        &["tls-a", "tls-b", "tls-c"],
        "[alerting.certificates]\nresolve_after = \"30d\"\n",
    );
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        &checks,
    ))
    .await;
    let mut p = probes(ctl.grpc_addr()).await;
    let t0 = now_ms();
    let leaf_after = t0 + 20 * DAY_MS + 3_600_000;
    let inter_after = t0 + 1000 * DAY_MS;
    for (i, check) in ["tls-a", "tls-b", "tls-c"].iter().enumerate() {
        let r = tls_result(
            &mut p[i],
            check,
            &format!("192.0.2.{}:443", i + 1),
            vec![
                cert(LEAF, "CN=api.example.net", leaf_after, 0),
                cert(INTER, "CN=Test Intermediate", inter_after, 1),
            ],
        );
        assert_eq!(p[i].send(vec![r]).await.stored, 1);
    }

    // One page for the leaf, whatever number of checks see it.
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let key = format!("outpost/certificate/{LEAF}/certificate_expiring");
    assert_eq!(events[0].event_action, "trigger");
    assert_eq!(events[0].dedup_key, key);
    assert_eq!(events[0].severity.as_deref(), Some("warning"));
    let summary = events[0].summary.clone().unwrap();
    assert!(summary.contains("CN=api.example.net"), "{summary}");
    // It fired with the first check that saw it.
    assert!(summary.contains("seen by tls-a"), "{summary}");
    assert_eq!(events[0].raw["payload"]["group"], "certificate");
    assert_eq!(events[0].raw["payload"]["custom_details"]["days_left"], 20);

    // The inventory, soonest expiry first, with every place it was seen.
    let body = get_json(ctl.http_addr(), "/api/v1/certificates").await;
    let certs = body["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    let leaf = &certs[0];
    assert_eq!(leaf["fingerprint"], LEAF);
    assert_eq!(leaf["subject"], "CN=api.example.net");
    assert_eq!(leaf["issuer"], "CN=Test Intermediate");
    assert_eq!(leaf["sans"], json!(["api.example.net"]));
    assert_eq!(leaf["not_after"], rfc3339(leaf_after));
    assert_eq!(leaf["days_left"], 20);
    assert_eq!(leaf["key_type"], "ECDSA P-256");
    assert_eq!(leaf["level"], "warning");
    assert_eq!(leaf["status"], "current");
    assert_eq!(leaf["alert"]["severity"], "warning");
    let mut seen: Vec<(String, String, String, String)> = leaf["seen_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_owned();
            (f("check"), f("address"), f("probe"), f("region"))
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen[0],
        (
            "tls-a".into(),
            "192.0.2.1:443".into(),
            "eu-west-1".into(),
            "eu-west".into()
        )
    );
    assert_eq!(seen.len(), 3);
    assert_eq!(certs[1]["fingerprint"], INTER);
    assert_eq!(certs[1]["level"], "ok");
    assert!(certs[1]["alert"].is_null());

    // Seven days on: 13 days left → error, same dedup key (PagerDuty raises
    // the open incident); evaluating again changes nothing.
    let ctrl = ctl.controller();
    let t = certificate::evaluate(ctrl, t0 + 7 * DAY_MS).await.unwrap();
    assert!(
        matches!(t.as_slice(), [Transition::Escalated { .. }]),
        "{t:?}"
    );
    assert!(
        certificate::evaluate(ctrl, t0 + 7 * DAY_MS)
            .await
            .unwrap()
            .is_empty()
    );
    let t = certificate::evaluate(ctrl, t0 + 14 * DAY_MS).await.unwrap();
    assert!(
        matches!(t.as_slice(), [Transition::Escalated { .. }]),
        "{t:?}"
    );
    // Expired: already critical, nothing new.
    assert!(
        certificate::evaluate(ctrl, t0 + 25 * DAY_MS)
            .await
            .unwrap()
            .is_empty()
    );
    let events = pager.wait_for_events(3, WAIT).await;
    let got: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.event_action.as_str(),
                e.dedup_key.as_str(),
                e.severity.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("trigger", key.as_str(), Some("warning")),
            ("trigger", key.as_str(), Some("error")),
            ("trigger", key.as_str(), Some("critical")),
        ]
    );
    let summary = events[2].summary.as_deref().unwrap();
    assert!(summary.contains("expires in 6 days"), "{summary}");
    assert!(summary.contains("seen by tls-a, tls-b, tls-c"), "{summary}");
    // Every escalation was delivered and nothing waits: no more can come
    // without a new evaluation, and one at the real now lowers nothing.
    drained(&ctl).await;
    assert_eq!(pager.events().len(), 3, "{:#?}", pager.events());
    assert!(pager.rejected().is_empty(), "{:#?}", pager.rejections());

    let alerts = ctl.store().alerts(10).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].kind.as_str(), "certificate_expiring");
    assert_eq!(alerts[0].severity.as_str(), "critical");
    assert_eq!(alerts[0].state.as_str(), "open");

    // The page shows the inventory; the status page links to it.
    let (status, html) = get(ctl.http_addr(), "/certificates").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("CN=api.example.net") && html.contains("20 days"),
        "{html}"
    );
    let (_, index) = get(ctl.http_addr(), "/").await;
    assert!(index.contains("href=\"/certificates\""));
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_renewal_resolves_the_old_certificate_and_silence_resolves_after_two_days() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checks = tls_checks(&["tls-a", "tls-b", "tls-lone"], "");
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        &checks,
    ))
    .await;
    let mut p = probes(ctl.grpc_addr()).await;
    let t0 = now_ms();
    let old = "aaaa".repeat(16);
    let new = "bbbb".repeat(16);
    let lone = "cccc".repeat(16);
    for (i, check) in ["tls-a", "tls-b"].iter().enumerate() {
        let r = tls_result(
            &mut p[i],
            check,
            "192.0.2.1:443",
            vec![cert(&old, "CN=api.example.net", t0 + 5 * DAY_MS, 0)],
        );
        p[i].send(vec![r]).await;
    }
    let events = pager.wait_for_events(1, WAIT).await;
    assert_eq!(events[0].severity.as_deref(), Some("critical"));

    // Renewed on tls-a only: tls-b still serves the old one, the alert stays.
    let r = tls_result(
        &mut p[0],
        "tls-a",
        "192.0.2.1:443",
        vec![cert(&new, "CN=api.example.net", t0 + 90 * DAY_MS, 0)],
    );
    p[0].send(vec![r]).await;
    let t = certificate::evaluate(ctl.controller(), now_ms())
        .await
        .unwrap();
    assert!(t.is_empty(), "{t:?}");
    // Renewed everywhere: resolved as replaced.
    let r = tls_result(
        &mut p[1],
        "tls-b",
        "192.0.2.1:443",
        vec![cert(&new, "CN=api.example.net", t0 + 90 * DAY_MS, 0)],
    );
    p[1].send(vec![r]).await;
    let events = pager.wait_for_events(2, WAIT).await;
    assert_eq!(events[1].event_action, "resolve");
    assert_eq!(events[1].dedup_key, events[0].dedup_key);
    let body = get_json(ctl.http_addr(), "/api/v1/certificates").await;
    let old_view = body["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fingerprint"] == old.as_str())
        .unwrap()
        .clone();
    assert_eq!(old_view["status"], "replaced");
    assert_eq!(old_view["replaced_by"], new.as_str());

    // A certificate nobody sees any more resolves after resolve_after (2d).
    let r = tls_result(
        &mut p[2],
        "tls-lone",
        "192.0.2.9:443",
        vec![cert(&lone, "CN=lone.example.net", t0 + 10 * DAY_MS, 0)],
    );
    p[2].send(vec![r]).await;
    let events = pager.wait_for_events(3, WAIT).await;
    assert_eq!(events[2].severity.as_deref(), Some("error"));
    let ctrl = ctl.controller();
    assert!(
        certificate::evaluate(ctrl, t0 + DAY_MS)
            .await
            .unwrap()
            .is_empty()
    );
    let t = certificate::evaluate(ctrl, t0 + 3 * DAY_MS).await.unwrap();
    assert!(
        matches!(t.as_slice(), [Transition::Resolved { .. }]),
        "{t:?}"
    );
    let events = pager.wait_for_events(4, WAIT).await;
    assert_eq!(events[3].event_action, "resolve");
    assert_eq!(
        events[3].dedup_key,
        format!("outpost/certificate/{lone}/certificate_expiring")
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn entries_without_fingerprint_or_expiry_are_skipped_and_bad_thresholds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let checks = tls_checks(&["tls-a"], "");
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        &checks,
    ))
    .await;
    let mut p = connect(ctl.grpc_addr(), "eu-west-1").await;
    p.assignment().await;
    let t0 = now_ms();
    let r = tls_result(
        &mut p,
        "tls-a",
        "192.0.2.1:443",
        vec![
            json!({"subject": "CN=no fingerprint", "not_after": rfc3339(t0 + DAY_MS)}),
            json!({"fingerprint_sha256": "dd", "not_after": "next tuesday"}),
            cert(LEAF, "CN=ok", t0 + 400 * DAY_MS, 0),
        ],
    );
    assert_eq!(p.send(vec![r]).await.stored, 1);
    let body = get_json(ctl.http_addr(), "/api/v1/certificates").await;
    let fps: Vec<&str> = body["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fps, vec![LEAF]);
    ctl.shutdown().await;

    let text = config_text(
        &dir.path().join("o2.db"),
        "http://127.0.0.1:9",
        &tls_checks(
            &["tls-a"],
            "[alerting.certificates]\nthresholds = [\"30d:warning\", \"7d:fatal\"]\n",
        ),
    );
    let err = outpost_controller::config::parse(&text, "t.toml", &vars()).unwrap_err();
    assert!(err.has_path("alerting.certificates.thresholds[1]"), "{err}");
}
