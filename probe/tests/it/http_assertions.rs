//! Response assertions, freshness, latency budgets, request bodies and
//! samples with backend attribution, against real loopback servers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::{code, run};
use outpost_probe::{
    check::{
        Failure, FailureCode, RawCheck,
        failure::{BackendCount, Staleness},
    },
    config::Problems,
};
use outpost_testkit::{HttpServer, Pki, Reply};
use serde_json::json;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

fn check(url: &str, keys: &str) -> String {
    format!("id = \"x\"\n[http]\nurl = \"{url}\"\n{keys}\n")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

#[tokio::test]
async fn data_seventeen_hours_old_fails_max_age_15m_with_its_age() {
    let stale = OffsetDateTime::now_utc() - time::Duration::hours(17);
    let srv = HttpServer::builder()
        .route(
            "/telemetry",
            Reply::json(
                200,
                &json!({ "status": "ok", "updated_at": rfc3339(stale) }),
            ),
        )
        .run()
        .await
        .unwrap();
    let o = run(&check(
        &srv.url("/telemetry"),
        "json = [{ path = \"$.status\", equals = \"ok\" }]\nfreshness = { json_path = \"$.updated_at\", max_age = \"15m\" }",
    ))
    .await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::DataStale);
    let Failure::DataStale {
        at,
        problem: Staleness::Old { age, max_age, .. },
    } = &f
    else {
        panic!("{f:?}")
    };
    assert_eq!(at, "$.updated_at");
    assert_eq!(*max_age, Duration::from_secs(15 * 60));
    assert_eq!(age.as_secs() / 60, 17 * 60, "{age:?}");
    let age_details = o.details();
    let age = age_details["age_seconds"].as_f64().unwrap();
    assert!((61_200.0..61_260.0).contains(&age), "{age}");
    let a_details = o.details();
    let a = &a_details["assertions"];
    assert_eq!(a[1]["name"], "json $.status");
    assert_eq!(a[1]["ok"], true);
    assert_eq!(a[2]["kind"], "freshness");
    assert_eq!(a[2]["failure_code"], "data_stale");
    assert_eq!(a[2]["expected"], "age <= 15m");
}

#[tokio::test]
async fn fresh_data_passes_in_every_timestamp_form() {
    let now = OffsetDateTime::now_utc();
    let srv = HttpServer::builder()
        .route(
            "/",
            Reply::json(
                200,
                &json!({
                    "rfc3339": rfc3339(now - time::Duration::minutes(14)),
                    "secs": (now - time::Duration::minutes(5)).unix_timestamp(),
                    "millis": (now.unix_timestamp_nanos() / 1_000_000) as i64,
                }),
            ),
        )
        .run()
        .await
        .unwrap();
    for path in ["$.rfc3339", "$.secs", "$.millis"] {
        let o = run(&check(
            &srv.url("/"),
            &format!("freshness = {{ json_path = \"{path}\", max_age = \"15m\" }}"),
        ))
        .await;
        assert!(o.ok(), "{path}: {:?}", o.result);
    }
}

#[tokio::test]
async fn a_missing_timestamp_cannot_be_evaluated_and_fails() {
    let srv = HttpServer::builder()
        .route("/", Reply::json(200, &json!({ "status": "ok" })))
        .route("/text", Reply::text(200, "not json"))
        .run()
        .await
        .unwrap();
    let keys = "freshness = { json_path = \"$.updated_at\", max_age = \"15m\" }";
    for path in ["/", "/text"] {
        let o = run(&check(&srv.url(path), keys)).await;
        assert_eq!(code(&o), Some(FailureCode::DataStale), "{path}");
        assert_eq!(o.details()["assertions"][1]["evaluated"], false, "{path}");
    }
}

#[tokio::test]
async fn last_modified_freshness_reads_the_http_date() {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = |ago: time::Duration| (OffsetDateTime::now_utc() - ago).format(&fmt).unwrap();
    let srv = HttpServer::builder()
        .route(
            "/old",
            Reply::text(200, "x").header("last-modified", &at(time::Duration::hours(2))),
        )
        .route(
            "/new",
            Reply::text(200, "x").header("last-modified", &at(time::Duration::minutes(10))),
        )
        .run()
        .await
        .unwrap();
    let keys = "freshness = { header = \"last-modified\", max_age = \"1h\" }";
    let o = run(&check(&srv.url("/old"), keys)).await;
    assert_eq!(code(&o), Some(FailureCode::DataStale), "{:?}", o.result);
    assert!(o.details()["age_seconds"].as_f64().unwrap() >= 7200.0);
    let o = run(&check(&srv.url("/new"), keys)).await;
    assert!(o.ok(), "{:?}", o.result);
}

#[tokio::test]
async fn header_body_and_json_assertions_fail_with_their_codes() {
    let srv = HttpServer::builder()
        .route(
            "/",
            Reply::json(
                200,
                &json!({ "status": "degraded", "queue": 250, "version": "2.14.1" }),
            )
            .header("cache-control", "no-store")
            .header("x-served-by", "blue"),
        )
        .run()
        .await
        .unwrap();
    let url = srv.url("/");
    let pass = [
        "expected_headers = [{ name = \"content-type\", matches = \"^application/json\" }, { name = \"Cache-Control\", equals = \"no-store\" }, { name = \"x-debug\", present = false }]",
        "body_contains = '\"version\":\"2.14'",
        "body_matches = '\"version\":\"2\\.\\d+\\.\\d+\"'",
        "json = [{ path = \"$.queue\", greater_than = 0, less_than = 1000 }, { path = \"$.version\", exists = true }, { path = \"$.error\", exists = false }]",
        "json = [{ path = \"$.queue\", equals = 250.0 }]",
    ];
    for keys in pass {
        let o = run(&check(&url, keys)).await;
        assert!(o.ok(), "{keys}: {:?}", o.result);
    }
    let fail = [
        (
            "expected_headers = [{ name = \"x-served-by\", equals = \"green\" }]",
            FailureCode::HeaderMismatch,
        ),
        (
            "expected_headers = [{ name = \"strict-transport-security\", present = true }]",
            FailureCode::HeaderMismatch,
        ),
        ("body_contains = \"healthy\"", FailureCode::BodyMismatch),
        (
            "body_matches = '\"status\":\"ok\"'",
            FailureCode::BodyMismatch,
        ),
        (
            "json = [{ path = \"$.status\", equals = \"ok\" }]",
            FailureCode::JsonPathMismatch,
        ),
        (
            "json = [{ path = \"$.queue\", less_than = 100 }]",
            FailureCode::JsonPathMismatch,
        ),
        (
            "json = [{ path = \"$.missing\", exists = true }]",
            FailureCode::JsonPathMismatch,
        ),
    ];
    for (keys, want) in fail {
        let o = run(&check(&url, keys)).await;
        assert_eq!(code(&o), Some(want), "{keys}: {:?}", o.result);
    }
    // Every assertion is recorded, not just the first failure.
    let o = run(&check(
        &url,
        "body_contains = \"healthy\"\njson = [{ path = \"$.status\", equals = \"ok\" }]",
    ))
    .await;
    let a_details = o.details();
    let a = a_details["assertions"].as_array().unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[2]["actual"], "degraded");
    assert_eq!(a[2]["expected"], json!({ "equals": "ok" }));
    assert_eq!(code(&o), Some(FailureCode::BodyMismatch));
}

#[tokio::test]
async fn a_slow_first_byte_exceeds_its_latency_budget() {
    let srv = HttpServer::builder()
        .async_handler("/slow", |_| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Reply::text(200, "ok")
        })
        .run()
        .await
        .unwrap();
    let o = run(&check(
        &srv.url("/slow"),
        "latency = { first_byte = \"100ms\", connect = \"1s\", tls = \"50ms\" }",
    ))
    .await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::LatencyBudgetExceeded);
    let Failure::LatencyBudgetExceeded {
        phase,
        took,
        budget,
    } = &f
    else {
        panic!("{f:?}")
    };
    assert_eq!(phase, "first_byte");
    assert_eq!(*budget, Duration::from_millis(100));
    assert!(*took > *budget, "{took:?}");
    let a_details = o.details();
    let a = a_details["assertions"].as_array().unwrap();
    // tls did not happen on plain http: recorded, not evaluated, not failed.
    let tls = a.iter().find(|x| x["name"] == "latency tls").unwrap();
    assert_eq!(tls["evaluated"], false);
    assert_eq!(tls["ok"], true);
    let o = run(&check(&srv.url("/slow"), "latency = { total = \"5s\" }")).await;
    assert!(o.ok(), "{:?}", o.result);
}

#[tokio::test]
async fn samples_are_attributed_to_backends_behind_one_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let leaf = pki.leaf(&["pair.test"]);
    let blue = HttpServer::builder()
        .route(
            "/",
            Reply::text(502, "bad gateway").header("x-served-by", "blue"),
        )
        .tls(leaf.clone())
        .bind("127.0.0.2:0".parse().unwrap())
        .run()
        .await
        .unwrap();
    let port = blue.addr().port();
    let green = HttpServer::builder()
        .route("/", Reply::text(200, "ok").header("x-served-by", "green"))
        .tls(leaf)
        .bind(format!("127.0.0.3:{port}").parse().unwrap())
        .run()
        .await
        .unwrap();
    let o = run(&format!(
        "id = \"pair\"\n[http]\nurl = \"https://pair.test:{port}/\"\naddresses = \"all\"\nresolve_to = [\"127.0.0.2\", \"127.0.0.3\"]\nca_file = \"{}\"\nsamples = 3\nbackend_header = \"x-served-by\"\n",
        ca.display()
    ))
    .await;
    assert_shape_of_fixture(&o.details(), "http-samples-by-backend.json");
    let f = o.result.clone().unwrap_err();
    // One backend of two: the pool is partly down; the address's own code is kept.
    assert_eq!(f.code(), FailureCode::BackendsPartiallyFailing);
    let Failure::Backends { total: 2, failing } = &f else {
        panic!("{f:?}")
    };
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].address, format!("127.0.0.2:{port}"));
    assert_eq!(failing[0].failure.code(), FailureCode::SampleFailureRatio);
    let Failure::SampleFailureRatio {
        failed: 3,
        total: 3,
        by_backend,
        first: Some(first),
        ..
    } = &failing[0].failure
    else {
        panic!("{f:?}")
    };
    assert_eq!(
        by_backend,
        &[BackendCount {
            backend: "blue".into(),
            total: 3,
            failed: 3
        }]
    );
    assert_eq!(first.code(), FailureCode::UnexpectedStatus);
    assert_eq!(blue.request_count(), 3);
    assert_eq!(green.request_count(), 3);
    let samples_details = o.details();
    let samples = samples_details["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6);
    assert_eq!(samples[0]["backend"], "blue");
    assert_eq!(samples[0]["failure_code"], "unexpected_status");
    assert_eq!(samples[5]["backend"], "green");
    assert_eq!(samples[5]["ok"], true);
    let by_details = o.details();
    let by = &by_details["samples_summary"]["by_backend"];
    assert_eq!(by["blue"], json!({ "total": 3, "failed": 3 }));
    assert_eq!(by["green"], json!({ "total": 3, "failed": 0 }));
    assert_eq!(o.details()["addresses"][0]["samples_failed"], 3);
    assert_eq!(o.details()["addresses"][1]["ok"], true);
}

#[tokio::test]
async fn a_failure_ratio_over_the_limit_names_each_backend() {
    // A load balancer alternating between a broken and a healthy backend.
    let n = std::sync::atomic::AtomicU32::new(0);
    let lb = HttpServer::builder()
        .handler("/", move |_| {
            if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .is_multiple_of(2)
            {
                Reply::text(502, "bad gateway").header("x-served-by", "blue")
            } else {
                Reply::text(200, "ok").header("x-served-by", "green")
            }
        })
        .run()
        .await
        .unwrap();
    let keys = "samples = 10\nbackend_header = \"x-served-by\"";
    let o = run(&check(
        &lb.url("/"),
        &format!("{keys}\nmax_failure_ratio = 0.1"),
    ))
    .await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::SampleFailureRatio);
    let Failure::SampleFailureRatio {
        failed: 5,
        total: 10,
        max_failure_ratio,
        by_backend,
        ..
    } = &f
    else {
        panic!("{f:?}")
    };
    assert_eq!(*max_failure_ratio, 0.1);
    let by: Vec<(&str, usize, usize)> = by_backend
        .iter()
        .map(|b| (b.backend.as_str(), b.failed, b.total))
        .collect();
    assert_eq!(by, vec![("blue", 5, 5), ("green", 0, 5)]);
    // Ten fresh connections.
    assert_eq!(lb.connection_count(), 10);
    let o = run(&check(
        &lb.url("/"),
        &format!("{keys}\nmax_failure_ratio = 0.5"),
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["samples_summary"]["failed"], 5);
}

#[tokio::test]
async fn json_bodies_bearer_tokens_and_http2_are_sent_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let pki = Pki::new("root");
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let srv = HttpServer::builder()
        .route("/api", Reply::json(201, &json!({ "id": 7 })))
        .tls(pki.leaf(&["localhost"]))
        .run()
        .await
        .unwrap();
    for (version, wire) in [("http2", "HTTP/2.0"), ("http1", "HTTP/1.1")] {
        let o = run(&check(
            &srv.url("/api"),
            &format!(
                "method = \"PUT\"\nca_file = \"{}\"\nhttp_version = \"{version}\"\njson_body = {{ name = \"probe\", tags = [\"a\", \"b\"] }}\nbearer_token = {{ file = \"{}\" }}\njson = [{{ path = \"$.id\", equals = 7 }}]",
                ca.display(),
                token.display()
            ),
        ))
        .await;
        assert!(o.ok(), "{version}: {:?}", o.result);
        assert_eq!(o.details()["http_version"], wire);
        let req = srv.requests().pop().unwrap();
        assert_eq!(req.version, wire);
        assert_eq!(req.method, "PUT");
        assert_eq!(req.header("authorization"), Some("Bearer tok-123"));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&req.body).unwrap(),
            json!({ "name": "probe", "tags": ["a", "b"] })
        );
        assert!(!o.to_json().to_string().contains("tok-123"));
    }
}

#[test]
fn invalid_assertion_and_request_keys_name_their_paths() {
    let cases = [
        (
            "expected_headers = [{ name = \"x\", present = true, equals = \"y\" }]",
            "checks[0].http.expected_headers[0]",
        ),
        (
            "expected_headers = [{ name = \"x\", matches = \"(\" }]",
            "checks[0].http.expected_headers[0].matches",
        ),
        ("body_matches = \"[a-\"", "checks[0].http.body_matches"),
        (
            "json = [{ path = \"status\", exists = true }]",
            "checks[0].http.json[0].path",
        ),
        ("json = [{ path = \"$.a\" }]", "checks[0].http.json[0]"),
        (
            "freshness = { json_path = \"$.a\", header = \"date\", max_age = \"1m\" }",
            "checks[0].http.freshness",
        ),
        (
            "freshness = { header = \"date\", max_age = \"0s\" }",
            "checks[0].http.freshness.max_age",
        ),
        ("samples = 0", "checks[0].http.samples"),
        (
            "max_failure_ratio = 1.5",
            "checks[0].http.max_failure_ratio",
        ),
        (
            "backend_header = \"bad header\"",
            "checks[0].http.backend_header",
        ),
        (
            "max_header_bytes = \"512B\"",
            "checks[0].http.max_header_bytes",
        ),
        ("body = \"a\"\nform = { a = \"b\" }", "checks[0].http"),
        (
            "bearer_token = { env = \"OUTPOST_TEST_SURELY_UNSET_TOKEN\" }",
            "checks[0].http.bearer_token",
        ),
        (
            "basic_auth = { username = \"u\", password = { file = \"/nonexistent/pw\" } }",
            "checks[0].http.basic_auth.password",
        ),
    ];
    for (keys, path) in cases {
        let raw: RawCheck = toml::from_str(&check("http://127.0.0.1:1/", keys))
            .unwrap_or_else(|e| panic!("{keys}: {e}"));
        let mut p = Problems::default();
        assert!(raw.validate("checks[0]", &mut p).is_none(), "{keys}");
        let text = format!("{p:?}");
        assert!(
            text.contains(&format!("path: \"{path}\"")),
            "{keys}: {text}"
        );
    }
    // Sizes need a unit, like durations.
    let err = toml::from_str::<RawCheck>(&check("http://a/", "max_body = 1024")).unwrap_err();
    assert!(err.to_string().contains("has no unit"), "{err}");
    // A literal secret is not a thing.
    let err =
        toml::from_str::<RawCheck>(&check("http://a/", "bearer_token = \"abc\"")).unwrap_err();
    assert!(err.to_string().contains("bearer_token"), "{err}");
}

#[test]
fn a_check_definition_round_trips_through_json_without_secret_values() {
    // The controller ships check definitions to probes as JSON.
    let text = check(
        "https://api.example.net/",
        "bearer_token = { env = \"API_TOKEN\" }\nmax_body = \"64KiB\"\nfollow_redirects = true\nfreshness = { header = \"last-modified\", max_age = \"15m\" }",
    );
    let raw: RawCheck = toml::from_str(&text).unwrap();
    let json = serde_json::to_string(&raw).unwrap();
    assert!(
        json.contains(r#""bearer_token":{"env":"API_TOKEN"}"#),
        "{json}"
    );
    assert!(json.contains(r#""max_body":"64KiB""#), "{json}");
    let back: RawCheck = serde_json::from_str(&json).unwrap();
    assert_eq!(back, raw);
}

#[test]
fn failure_codes_serialize_as_their_stable_strings() {
    use FailureCode as F;
    for c in [
        F::RedirectNotFollowed,
        F::RedirectDowngrade,
        F::RedirectMethodChanged,
        F::RedirectLoop,
        F::RedirectLimit,
        F::RedirectSequenceMismatch,
        F::RedirectScheme,
        F::HeaderMismatch,
        F::BodyMismatch,
        F::JsonPathMismatch,
        F::DataStale,
        F::LatencyBudgetExceeded,
        F::SampleFailureRatio,
    ] {
        assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
    }
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
