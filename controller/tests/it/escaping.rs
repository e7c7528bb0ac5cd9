#![allow(clippy::unwrap_used)]
//! Every page escapes what probes and config put on it: a failure message
//! with markup and quotes, details whose URLs, names and assertion messages
//! carry markup, a certificate subject with a script, a target URL with
//! quotes, and a check id in the path of a 404.

use crate::support::*;
use outpost_controller::{certificate::rfc3339, store::now_ms};
use serde_json::json;

/// Quotes in the path and query: `'` is legal in a URI, so config accepts it.
const TARGET: &str = "http://www.example.net/o'clock?q='x'";

const HOSTILE: &str = "<script>alert(\"x\")</script>\" onmouseover=\"alert(1)";

fn checks() -> String {
    format!(
        "[[checks]]\nid = \"web\"\ninterval = \"30s\"\ntimeout = \"5s\"\nhttp = {{ url = \"{TARGET}\" }}\n\
         [[checks]]\nid = \"app-dns\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
         dns = {{ name = \"app.example.com\", resolvers = [\"udp://10.0.0.53:53\"] }}\n"
    )
}

fn http_details() -> String {
    let cert = json!({"fingerprint_sha256": "cd".repeat(32), "subject": format!("CN={HOSTILE}"),
                      "issuer": HOSTILE, "sans": [HOSTILE], "not_after": rfc3339(now_ms() + 3 * 86_400_000),
                      "key_type": HOSTILE, "position": 0});
    json!({
        "url": TARGET, "method": "GET", "status": 503,
        "chain": [{"url": format!("https://www.example.net/{HOSTILE}"), "method": "GET", "scheme": "https",
                   "address": "192.0.2.1:443", "status": 503, "location": HOSTILE,
                   "tls": {"version": HOSTILE, "verified": true, "certificates": [cert]}}],
        "assertions": [{"name": HOSTILE, "kind": "json", "ok": false, "expected": HOSTILE,
                        "actual": {"x": HOSTILE}, "failure_code": "unexpected_status", "message": HOSTILE}],
        "addresses": [{"address": "192.0.2.1:443", "ok": false, "failure_message": HOSTILE}],
        "addresses_total": 2, "addresses_failing": 1
    })
    .to_string()
}

fn dns_details() -> String {
    let set = |fp: &str| json!({"rcode": "NOERROR", "cname_target": HOSTILE, "answers": [HOSTILE], "fingerprint": fp});
    json!({
        "name": HOSTILE, "type": "A",
        "resolvers": [{"resolver": HOSTILE, "ok": true, "rcode": "NOERROR",
                       "answers": [{"name": HOSTILE, "type": "A", "data": HOSTILE, "ttl": 60}],
                       "final_name": HOSTILE, "fingerprint": HOSTILE}],
        "changes": [{"resolver": HOSTILE, "at": "2030-01-01T00:00:00Z", "old_ttl_s": 300,
                     "old": set("aa"), "new": set("bb")}]
    })
    .to_string()
}

fn assert_escaped(path: &str, page: &str) {
    assert!(
        !page.contains("<script"),
        "{path}: unescaped markup in {page}"
    );
    assert!(
        !page.contains("\" onmouseover"),
        "{path}: a quote broke out of an attribute in {page}"
    );
    assert!(
        page.contains("&lt;script&gt;"),
        "{path}: the hostile text is not on the page at all: {page}"
    );
}

#[tokio::test]
async fn hostile_text_is_escaped_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        &checks(),
    ))
    .await;
    let mut p = connect(ctl.grpc_addr(), "eu-west-1").await;
    p.assignment().await;
    let mut web = p.result("web", false);
    web.failure_code = "unexpected_status".into();
    web.failure_message = HOSTILE.into();
    web.details_json = http_details();
    let mut dns = p.result("app-dns", true);
    dns.kind = "dns".into();
    dns.details_json = dns_details();
    assert_eq!(p.send(vec![web, dns]).await.stored, 2);

    for path in ["/", "/checks/web", "/checks/app-dns", "/certificates"] {
        let (status, page) = get(ctl.http_addr(), path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_escaped(path, &page);
    }
    // The target URL's quotes, in text.
    let (_, index) = get(ctl.http_addr(), "/").await;
    assert!(
        index.contains("o&#39;clock") || index.contains("o'clock"),
        "{index}"
    );
    // A check id from the path, in the 404 page.
    let (status, page) = get(ctl.http_addr(), "/checks/%3Cscript%3Ex%3C%2Fscript%3E").await;
    assert_eq!(status, 404, "{page}");
    assert_escaped("404", &page);
    ctl.shutdown().await;
}
