//! The redirect contract against real loopback servers: not following,
//! following hop by hop over TLS, loops, downgrades, method changes, the
//! hop limit and credentials on cross-origin hops.

#![allow(clippy::unwrap_used)]

use crate::support::{code, run};
use outpost_probe::{
    check::{Failure, FailureCode, Observed, Outcome, RawCheck},
    config::Problems,
};
use outpost_testkit::{HttpServer, Pki, Reply};

fn statuses(o: &Outcome) -> Vec<u64> {
    o.details()["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_u64().unwrap_or(0))
        .collect()
}

/// An https server for `localhost` (test PKI) and the CA file trusting it.
async fn https_target(
    dir: &std::path::Path,
    path: &str,
    reply: Reply,
) -> (outpost_testkit::RunningServer, std::path::PathBuf) {
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir).unwrap();
    let srv = HttpServer::builder()
        .route(path, reply)
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    (srv, ca)
}

#[tokio::test]
async fn permanent_redirect_to_https_fails_a_client_that_does_not_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (secure, ca) = https_target(dir.path(), "/ingest", Reply::text(200, "ok")).await;
    let plain = HttpServer::builder()
        .route("/ingest", Reply::redirect(308, &secure.url("/ingest")))
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"ingest\"\n[http]\nurl = \"{}\"\nmethod = \"POST\"\nbody = \"x\"\nca_file = \"{}\"\n",
        plain.url("/ingest"),
        ca.display()
    ))
    .await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::RedirectNotFollowed);
    let Failure::RedirectNotFollowed {
        status, location, ..
    } = &f
    else {
        panic!("{f:?}")
    };
    assert_eq!(*status, 308);
    assert_eq!(location, &secure.url("/ingest"));
    assert_eq!(statuses(&o), [308]);
    assert_eq!(secure.request_count(), 0);
}

#[tokio::test]
async fn followed_308_to_https_passes_with_chain_308_200_and_keeps_the_post() {
    let dir = tempfile::tempdir().unwrap();
    let (secure, ca) = https_target(dir.path(), "/ingest", Reply::text(200, "ok")).await;
    let plain = HttpServer::builder()
        .route("/ingest", Reply::redirect(308, &secure.url("/ingest")))
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        r#"id = "ingest"
[http]
url = "{}"
method = "POST"
json_body = {{ ping = true }}
ca_file = "{}"
follow_redirects = true
redirect_statuses = [308, 200]
require_https = true
"#,
        plain.url("/ingest"),
        ca.display()
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    assert_shape_of_fixture(&o.details(), "http-redirect-308-to-https.json");
    assert_eq!(statuses(&o), [308, 200]);
    let chain_details = o.details();
    let chain = &chain_details["chain"];
    assert_eq!(chain[0]["scheme"], "http");
    assert_eq!(chain[0]["location"], secure.url("/ingest"));
    assert_eq!(chain[1]["scheme"], "https");
    assert_eq!(chain[1]["method"], "POST");
    assert_eq!(chain[1]["body_kept"], true);
    assert_eq!(chain[1]["tls"]["verified"], true);
    assert_eq!(chain[1]["tls"]["version"], "TLSv1_3");
    assert!(chain[1]["tls"]["leaf_not_after"].is_string(), "{chain}");
    assert!(chain[1]["tls"]["leaf_days_left"].as_i64().unwrap() > 0);
    // Each hop has its own connection and timings.
    assert!(chain[0]["phases_us"]["connect"].is_u64());
    assert!(chain[1]["phases_us"]["tls"].is_u64());
    assert!(o.phases.tls.is_some());
    // The https server got the POST and its JSON body.
    let req = &secure.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(&req.body[..], br#"{"ping":true}"#);
    assert_eq!(req.header("content-type"), Some("application/json"));
    let Observed::Http(h) = &o.observed else {
        panic!("{:?}", o.observed)
    };
    let names: Vec<&str> = h
        .assertion_results()
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["status", "redirect_statuses", "require_https"]);
    assert_eq!(h.hops().len(), 2);
    assert_eq!(h.hops()[1].scheme, "https");
    assert!(h.hops()[1].tls.as_ref().is_some_and(|t| t.verified));
}

#[tokio::test]
async fn an_unexpected_status_sequence_and_a_plain_final_url_have_their_codes() {
    let target = HttpServer::builder()
        .route("/", Reply::redirect(301, "/final"))
        .route("/final", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let base = format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nfollow_redirects = true\n",
        target.url("/")
    );
    let o = run(&format!("{base}redirect_statuses = [308, 200]\n")).await;
    assert_eq!(code(&o), Some(FailureCode::RedirectSequenceMismatch));
    let o = run(&format!("{base}require_https = true\n")).await;
    assert_eq!(code(&o), Some(FailureCode::RedirectScheme));
    let o = run(&format!("{base}redirect_statuses = [301, 200]\n")).await;
    assert!(o.ok(), "{:?}", o.result);
}

#[tokio::test]
async fn a_redirect_loop_is_detected() {
    let srv = HttpServer::builder()
        .route("/a", Reply::redirect(302, "/b"))
        .route("/b", Reply::redirect(302, "/a"))
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nfollow_redirects = true\n",
        srv.url("/a")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::RedirectLoop), "{:?}", o.result);
    assert_eq!(statuses(&o), [302, 302]);
    assert_eq!(o.details()["chain"][1]["violations"][0], "redirect_loop");
    assert_eq!(srv.request_count(), 2);
}

#[tokio::test]
async fn an_https_to_http_downgrade_fails_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let plain = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let (secure, ca) = https_target(dir.path(), "/", Reply::redirect(301, &plain.url("/"))).await;
    let base = format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nca_file = \"{}\"\nfollow_redirects = true\n",
        secure.url("/"),
        ca.display()
    );
    let o = run(&base).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::RedirectDowngrade),
        "{:?}",
        o.result
    );
    assert_eq!(
        o.details()["chain"][0]["violations"][0],
        "redirect_downgrade"
    );
    // Not followed: nothing was sent over plain http.
    assert_eq!(plain.request_count(), 0);

    let o = run(&format!("{base}allow_downgrade = true\n")).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(statuses(&o), [301, 200]);
}

#[tokio::test]
async fn post_answered_301_fails_with_method_changed_unless_allowed() {
    let srv = HttpServer::builder()
        .route("/submit", Reply::redirect(301, "/landing"))
        .route("/landing", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let base = format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nmethod = \"POST\"\nbody = \"payload\"\nheaders = {{ content-type = \"text/plain\" }}\nfollow_redirects = true\n",
        srv.url("/submit")
    );
    let o = run(&base).await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::RedirectMethodChanged);
    let Failure::RedirectMethodChanged {
        hop,
        status,
        from,
        to,
        ..
    } = &f
    else {
        panic!("{f:?}")
    };
    assert_eq!((*hop, *status), (1, 301));
    assert_eq!((from.as_str(), to.as_str()), ("POST", "GET"));

    let o = run(&format!("{base}allow_method_change = true\n")).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["chain"][1]["method"], "GET");
    assert_eq!(o.details()["chain"][1]["body_kept"], false);
    let landing = srv
        .requests()
        .into_iter()
        .find(|r| r.path == "/landing")
        .unwrap();
    assert_eq!(landing.method, "GET");
    assert!(landing.body.is_empty());
    assert_eq!(
        landing.header("content-type"),
        None,
        "content-* dropped with the body"
    );
}

#[tokio::test]
async fn a_307_keeps_the_post_body() {
    let second = HttpServer::builder()
        .route("/v2/ingest", Reply::text(202, "accepted"))
        .run()
        .await
        .unwrap();
    let first = HttpServer::builder()
        .route("/ingest", Reply::redirect(307, &second.url("/v2/ingest")))
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nmethod = \"POST\"\nform = {{ reading = \"21.5 C\", device = \"a&b\" }}\nfollow_redirects = true\n",
        first.url("/ingest")
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    let req = &second.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(&req.body[..], b"device=a%26b&reading=21.5+C");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(o.details()["chain"][1]["body_kept"], true);
}

#[tokio::test]
async fn a_ten_hop_chain_exceeds_a_limit_of_five() {
    let srv = HttpServer::builder()
        .fallback(|req| {
            let n: u32 = req
                .path_only()
                .trim_start_matches("/hop/")
                .parse()
                .unwrap_or(0);
            if n < 10 {
                Reply::redirect(302, &format!("/hop/{}", n + 1))
            } else {
                Reply::text(200, "arrived")
            }
        })
        .run()
        .await
        .unwrap();
    let base = format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nfollow_redirects = true\n",
        srv.url("/hop/0")
    );
    let o = run(&format!("{base}max_hops = 5\n")).await;
    assert_eq!(code(&o), Some(FailureCode::RedirectLimit), "{:?}", o.result);
    assert_eq!(
        statuses(&o).len(),
        6,
        "five redirects followed, the sixth refused"
    );
    assert_eq!(srv.request_count(), 6);

    // The default limit (10) takes the whole chain.
    let o = run(&base).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(statuses(&o).len(), 11);
}

#[tokio::test]
async fn credentials_are_dropped_on_cross_origin_hops() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let other = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let origin = HttpServer::builder()
        .route("/start", Reply::redirect(302, "/same"))
        .route("/same", Reply::redirect(307, &other.url("/")))
        .run()
        .await
        .unwrap();
    let base = format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nfollow_redirects = true\nheaders = {{ cookie = \"session=1\" }}\nbasic_auth = {{ username = \"probe\", password = {{ file = \"{}\" }} }}\n",
        origin.url("/start"),
        password.display()
    );
    let o = run(&base).await;
    assert!(o.ok(), "{:?}", o.result);
    let expected = "Basic cHJvYmU6czNjcmV0"; // probe:s3cret
    // Same origin: kept on both hops.
    for r in origin.requests() {
        assert_eq!(r.header("authorization"), Some(expected), "{}", r.path);
        assert_eq!(r.header("cookie"), Some("session=1"));
    }
    // Another port is another origin: dropped.
    let r = &other.requests()[0];
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("cookie"), None);
    assert_eq!(o.details()["chain"][2]["credentials_dropped"], true);
    // Secrets never reach the result.
    assert!(!o.to_json().to_string().contains("s3cret"));
    assert!(!o.to_json().to_string().contains("cHJvYmU6czNjcmV0"));

    let o = run(&format!("{base}forward_credentials_cross_origin = true\n")).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(other.requests()[1].header("authorization"), Some(expected));
}

#[tokio::test]
async fn a_tls_failure_on_a_later_hop_names_the_hop() {
    let pki = Pki::new("root");
    let secure = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    let plain = HttpServer::builder()
        .route("/", Reply::redirect(308, &secure.url("/")))
        .run()
        .await
        .unwrap();
    // No ca_file: the bundled Mozilla roots do not know the test root.
    let o = run(&format!(
        "id = \"x\"\n[http]\nurl = \"{}\"\nfollow_redirects = true\n",
        plain.url("/")
    ))
    .await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::TlsUntrustedRoot);
    let Failure::OnHop { hop, url, failure } = &f else {
        panic!("{f:?}")
    };
    assert_eq!(*hop, 2);
    assert!(url.starts_with("https://localhost:"), "{url}");
    assert!(matches!(**failure, Failure::TlsUntrustedRoot { .. }));
    assert_eq!(o.details()["chain"][1]["tls"]["verified"], false);
    assert_eq!(
        o.details()["chain"][1]["tls"]["error"],
        "tls_untrusted_root"
    );
}

#[test]
fn redirect_keys_are_validated_with_their_paths() {
    let cases = [
        (
            "follow_redirects = true\nmax_hops = 0",
            "checks[0].http.max_hops",
        ),
        ("max_hops = 3", "checks[0].http.max_hops"),
        (
            "redirect_statuses = [308, 200]",
            "checks[0].http.redirect_statuses",
        ),
        (
            "follow_redirects = true\nredirect_statuses = [308, 999]",
            "checks[0].http.redirect_statuses[1]",
        ),
        (
            "follow_redirects = true\nmax_hops = 1\nredirect_statuses = [301, 308, 200]",
            "checks[0].http.redirect_statuses",
        ),
    ];
    for (keys, path) in cases {
        let raw: RawCheck = toml::from_str(&format!(
            "id = \"x\"\n[http]\nurl = \"http://127.0.0.1:1/\"\n{keys}\n"
        ))
        .unwrap();
        let mut p = Problems::default();
        assert!(raw.validate("checks[0]", &mut p).is_none(), "{keys}");
        let text = format!("{p:?}");
        assert!(
            text.contains(&format!("path: \"{path}\"")),
            "{keys}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_command_prints_every_hop_and_what_each_rule_would_say() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let plain = HttpServer::builder()
        .route("/data", Reply::text(200, "{}"))
        .run()
        .await
        .unwrap();
    let secure = HttpServer::builder()
        .route("/ingest", Reply::redirect(301, &plain.url("/data")))
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    let entry = HttpServer::builder()
        .route("/ingest", Reply::redirect(308, &secure.url("/ingest")))
        .run()
        .await
        .unwrap();
    let url = entry.url("/ingest");
    let ca_path = ca.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_outpost-probe"))
            .args([
                "check",
                &url,
                "-X",
                "POST",
                "--body",
                "x",
                "--ca-file",
                &ca_path,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "hop 1  POST http://127.0.0.1:",
        "← 308 Permanent Redirect",
        "! a client that does not follow redirects stops here: redirect_not_followed",
        "hop 2  POST https://localhost:",
        "scheme http → https",
        "TLS TLSv1_3 (h2), certificate verified, leaf expires ",
        "← 301 Moved Permanently",
        "! a check would fail here: redirect_downgrade",
        "! a check would fail here: redirect_method_changed",
        "hop 3  GET http://127.0.0.1:",
        "scheme https → http (downgrade) · method POST → GET · request body dropped",
        "← 200 OK",
        "following redirects:     FAIL redirect_downgrade at hop 2",
        "not following redirects: FAIL redirect_not_followed (308 to https://localhost:",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Report-only: the whole chain was requested.
    assert_eq!(plain.request_count(), 1);
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
