#![allow(clippy::unwrap_used)]
//! The check page and API render what the newest results saw, by kind:
//! http fan-out, redirect chain, samples and assertions; dns answers and
//! CNAME chains with TTLs; session age and renewals — and never a token.

use crate::support::*;
use outpost_controller::{certificate::rfc3339, store::now_ms};
use serde_json::{Value, json};

const CHECKS: &str = "[[checks]]\nid = \"web\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
http = { url = \"http://www.example.net/\", addresses = \"all\", follow_redirects = true }\n\
[[checks]]\nid = \"app-dns\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
dns = { name = \"app.example.com\", resolvers = [\"udp://10.0.0.53:53\"] }\n\
[[checks]]\nid = \"vendor-session\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
session = { login = { cookie_jar = { request = { url = \"http://127.0.0.1:1/login\" } } }, use = [{ url = \"http://127.0.0.1:1/x\" }] }\n";

fn http_details() -> Value {
    let hop = |url: &str, scheme: &str, status: u16, location: Option<&str>| {
        json!({
            "url": url, "method": "GET", "scheme": scheme, "address": "192.0.2.1:80",
            "status": status, "location": location, "http_version": "HTTP/1.1", "violations": []
        })
    };
    let mut https = hop("https://www.example.net/", "https", 200, None);
    https["address"] = json!("192.0.2.1:443");
    https["tls"] = json!({
        "version": "TLSv1.3", "verified": true, "leaf_days_left": 41,
        "leaf_not_after": rfc3339(now_ms() + 41 * 86_400_000),
        "certificates": [{"fingerprint_sha256": "ab".repeat(32), "subject": "CN=www.example.net",
                          "not_after": rfc3339(now_ms() + 41 * 86_400_000), "position": 0}]
    });
    json!({
        "url": "http://www.example.net/", "method": "GET", "status": 503,
        "chain": [hop("http://www.example.net/", "http", 308, Some("https://www.example.net/")), https],
        "assertions": [
            {"name": "status", "kind": "status", "ok": false, "expected": "2xx", "actual": "503",
             "failure_code": "unexpected_status", "message": "got 503"},
            {"name": "latency", "kind": "latency", "ok": true, "expected": "< 2s", "actual": "120ms"},
            {"name": "json $.session", "kind": "json", "ok": true, "expected": null,
             "actual": {"user": "ann", "access_token": "SECRET-TOKEN-4"}}
        ],
        "samples_summary": {"total": 4, "failed": 2, "ratio": 0.5, "max_failure_ratio": 0.0,
                            "by_backend": {"backend-a": {"total": 2, "failed": 0}, "backend-b": {"total": 2, "failed": 2}}},
        "addresses": [
            {"address": "192.0.2.1:80", "ok": true, "status": 200, "samples_total": 2, "samples_failed": 0},
            {"address": "192.0.2.2:80", "ok": false, "status": 503, "failure_code": "unexpected_status",
             "failure_message": "got 503", "samples_total": 2, "samples_failed": 2}
        ],
        "addresses_total": 2, "addresses_failing": 1
    })
}

fn dns_details() -> Value {
    json!({
        "name": "app.example.com", "type": "A",
        "resolvers": [{
            "resolver": "udp://10.0.0.53:53", "ok": true, "rcode": "NOERROR",
            "answers": [
                {"name": "app.example.com", "type": "CNAME", "data": "blue.example.com", "ttl": 300},
                {"name": "blue.example.com", "type": "A", "data": "10.0.0.1", "ttl": 60}],
            "cname_chain": [{"name": "app.example.com", "target": "blue.example.com", "ttl": 300}],
            "final_name": "blue.example.com",
            "addresses": [{"ip": "10.0.0.1", "ttl": 60}],
            "min_ttl": 60, "fingerprint": "5d1c0e7a9b3f4c21"
        }]
    })
}

/// As a probe sends it (`persisted` marks a finished run), plus keys no
/// probe sends: a credential under a sensitive key at any depth.
fn session_details() -> Value {
    json!({
        "persisted": true,
        "session_id": "s-1", "renewal": "before_expiry", "login_method": "cookie_jar",
        "session_age_s": 7980, "renewals": 14, "logins": 1, "declared_lifetime_s": 3600,
        "next_renewal_at": rfc3339(now_ms() + 4 * 60_000 + 30_000),
        "access_token": "SECRET-TOKEN-1", "refresh_token": "SECRET-TOKEN-2",
        "events": [{"kind": "refresh", "at": "2030-01-01T00:00:00Z", "ok": true, "status": 200,
                    "declared_lifetime_s": 3600, "headers": {"Set-Cookie": "sid=SECRET-COOKIE"}}],
        "requests": [{"name": "telemetry", "status": 200, "ok": true, "authorization": "Bearer SECRET-TOKEN-3"}]
    })
}

#[tokio::test]
async fn the_check_page_shows_backends_chain_answers_and_session_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        CHECKS,
    ))
    .await;
    let mut p = connect(ctl.grpc_addr(), "eu-west-1").await;
    p.assignment().await;
    let mut results = Vec::new();
    for (check, kind, ok, details) in [
        ("web", "http", false, http_details()),
        ("app-dns", "dns", true, dns_details()),
        ("vendor-session", "session", true, session_details()),
    ] {
        let mut r = p.result(check, ok);
        r.kind = kind.into();
        r.details_json = details.to_string();
        results.push(r);
    }
    assert_eq!(p.send(results).await.stored, 3);

    // Status page cells summarise the newest details.
    let (_, index) = get(ctl.http_addr(), "/").await;
    assert!(
        index.contains("1 of 2 backends failing (192.0.2.2:80)"),
        "{index}"
    );
    assert!(
        index.contains(
            "session age 2 h 13 min, 14 renewals, declared lifetime 1 h, next renewal in 4 min"
        ),
        "{index}"
    );
    let checks = get_json(ctl.http_addr(), "/api/v1/checks").await;
    let web = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "web")
        .unwrap();
    let eu = web["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "eu-west")
        .unwrap();
    assert_eq!(
        eu["summary"],
        "1 of 2 backends failing (192.0.2.2:80), 2 of 4 samples failed"
    );

    // http: hop by hop, addresses, samples by backend, assertions.
    let (status, page) = get(ctl.http_addr(), "/checks/web").await;
    assert_eq!(status, 200);
    for needle in [
        "Redirect chain",
        "http://www.example.net/",
        ">308<",
        "https://www.example.net/",
        "verified, leaf 41 days left",
        "192.0.2.2:80",
        "backend-b",
        "unexpected_status",
        "latency",
    ] {
        assert!(page.contains(needle), "missing {needle:?} in {page}");
    }

    // dns: each resolver's answers and CNAME chain with TTLs.
    let (_, page) = get(ctl.http_addr(), "/checks/app-dns").await;
    for needle in [
        "udp://10.0.0.53:53",
        "app.example.com → blue.example.com <span class=\"small\">(300 s)</span>",
        "blue.example.com A 10.0.0.1 <span class=\"small\">(60 s)</span>",
        "10.0.0.1 <span class=\"small\">(60 s)</span>",
        "final: <b>blue.example.com</b>",
    ] {
        assert!(page.contains(needle), "missing {needle:?} in {page}");
    }

    // session: the line, the events, and no secret anywhere: keys the
    // typed details do not know are not shown at all, a sensitive key inside
    // free-form JSON (an assertion's actual value) shows as redacted.
    let (_, page) = get(ctl.http_addr(), "/checks/vendor-session").await;
    assert!(
        page.contains("session age 2 h 13 min, 14 renewals"),
        "{page}"
    );
    assert!(page.contains("refresh"), "{page}");
    let (_, api) = get(ctl.http_addr(), "/api/v1/checks/vendor-session").await;
    let (_, web_page) = get(ctl.http_addr(), "/checks/web").await;
    let (_, web_api) = get(ctl.http_addr(), "/api/v1/checks/web").await;
    for body in [&page, &api, &web_page, &web_api] {
        assert!(!body.contains("SECRET"), "a secret leaked: {body}");
    }
    assert!(web_api.contains("[redacted]"), "{web_api}");
    assert!(web_page.contains("[redacted]"), "{web_page}");

    // An https hop's certificates reach the inventory.
    let certs = get_json(ctl.http_addr(), "/api/v1/certificates").await;
    let c = &certs["certificates"][0];
    assert_eq!(c["subject"], "CN=www.example.net");
    assert_eq!(c["seen_by"][0]["check"], "web");
    assert_eq!(c["seen_by"][0]["host"], "www.example.net");
    assert_eq!(c["seen_by"][0]["address"], "192.0.2.1:443");
    ctl.shutdown().await;
}
