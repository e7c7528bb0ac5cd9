//! The flow kind against the test kit's token server: log in, extract the
//! token, create an order, read it back by its extracted id; secrets and
//! extracted credentials never in the details; the cookie jar across steps;
//! failures naming their step; per-step deadlines.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::{code, run};
use outpost_probe::{
    check::{Failure, FailureCode, RawCheck},
    config::Problems,
};
use outpost_testkit::{Hostile, TokenServer};

const PASSWORD: &str = "correct-horse-battery";

async fn server() -> TokenServer {
    TokenServer::builder()
        .user("outpost", PASSWORD)
        .lifetime(Duration::from_secs(60))
        .run()
        .await
        .unwrap()
}

/// A secret file holding `PASSWORD`, and the flow's `[checks.flow]` head.
fn head(dir: &tempfile::TempDir, ts: &TokenServer) -> String {
    let pw = dir.path().join("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    format!(
        "id = \"shop\"\ntimeout = \"5s\"\n[checks.flow]\nsecrets = {{ password = {{ file = \"{}\" }} }}\nvariables = {{ base = \"{}\", item = \"probe-widget\" }}\n",
        pw.display(),
        ts.url("").trim_end_matches('/')
    )
    .replace("[checks.flow]", "[flow]")
}

const LOGIN: &str = r#"
[[flow.steps]]
name = "login"
http = { url = "{{base}}/login", method = "POST", json_body = { username = "outpost", password = "{{password}}" } }
extract = { token = { json_path = "$.token", secret = true } }
"#;

const ORDER: &str = r#"
[[flow.steps]]
name = "create-order"
http = { url = "{{base}}/api/orders", method = "POST", headers = { authorization = "Bearer {{token}}" }, json_body = { item = "{{item}}", quantity = 2 }, expected_status = [201] }
extract = { order_id = { json_path = "$.id" }, location = { header = "location" } }

[[flow.steps]]
name = "read-order"
timeout = "2s"
[flow.steps.http]
url = "{{base}}/api/orders/{{order_id}}"
headers = { authorization = "Bearer {{token}}" }
json = [{ path = "$.item", equals = "probe-widget" }, { path = "$.quantity", equals = 2 }]
"#;

#[tokio::test]
async fn a_flow_logs_in_creates_an_order_and_reads_it_back_by_its_id() {
    let ts = server().await;
    let dir = tempfile::tempdir().unwrap();
    let o = run(&format!("{}{LOGIN}{ORDER}", head(&dir, &ts))).await;
    assert!(o.ok(), "{:?}\n{:#}", o.result, o.details());
    assert_eq!(o.kind.as_str(), "flow");
    let d = o.details();
    assert_eq!(d["steps_total"], 3);
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["extracted"]["token"], "**REDACTED**");
    assert_eq!(steps[1]["extracted"]["order_id"], "ord-1");
    assert_eq!(steps[1]["extracted"]["location"], "/api/orders/ord-1");
    assert_eq!(steps[1]["request"]["status"], 201);
    assert_eq!(
        steps[2]["request"]["url"],
        format!("{}/api/orders/ord-1", ts.url("").trim_end_matches('/'))
    );
    assert!(
        steps
            .iter()
            .all(|s| s["phases_us"]["total"].as_u64().unwrap() > 0)
    );
    assert_eq!(ts.orders_created(), 1);
    // No secret anywhere: not the password, not the token, not the cookie.
    let text = o.observed.to_wire();
    let token = ts.last_access_token().unwrap();
    assert!(!text.contains(PASSWORD) && !text.contains(&token), "{text}");
    // The jar kept the login's session cookie, by name only.
    assert_eq!(d["cookies"], serde_json::json!(["session"]));
}

#[tokio::test]
async fn the_cookie_jar_carries_the_login_session_to_later_steps() {
    let ts = server().await;
    let dir = tempfile::tempdir().unwrap();
    let o = run(&format!(
        "{}{LOGIN}\n[[flow.steps]]\nname = \"data\"\nhttp = {{ url = \"{{{{base}}}}/api/data\", json = [{{ path = \"$.sub\", equals = \"outpost\" }}] }}\n",
        head(&dir, &ts)
    ))
    .await;
    assert!(o.ok(), "{:?}\n{:#}", o.result, o.details());
    let log = ts.resource_log();
    assert_eq!(log.len(), 1);
    assert!(log[0].cookie && log[0].status == 200, "{log:?}");
}

#[tokio::test]
async fn a_failing_step_is_named_and_ends_the_flow() {
    let ts = server().await;
    let dir = tempfile::tempdir().unwrap();
    let flow = head(&dir, &ts);
    std::fs::write(dir.path().join("password"), "not-the-password").unwrap();
    let o = run(&format!("{flow}{LOGIN}{ORDER}")).await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::UnexpectedStatus);
    let Failure::OnStep {
        step: 1,
        name,
        failure,
    } = &f
    else {
        panic!("{f:?}")
    };
    assert_eq!(name, "login");
    assert!(matches!(
        **failure,
        Failure::UnexpectedStatus { got: 401, .. }
    ));
    assert!(
        f.to_string().starts_with("step 1 (login): got status 401"),
        "{f}"
    );
    let steps = o.details()["steps"].as_array().unwrap().clone();
    assert_eq!(steps.len(), 1, "later steps are not run");
    assert_eq!(steps[0]["failure_code"], "unexpected_status");
    assert_eq!(ts.orders_created(), 0);
}

#[tokio::test]
async fn an_extraction_that_finds_nothing_is_flow_extract_failed() {
    let ts = server().await;
    let dir = tempfile::tempdir().unwrap();
    let flow = format!(
        "{}{}",
        head(&dir, &ts),
        LOGIN.replace("$.token", "$.access_token")
    );
    let o = run(&format!("{flow}{ORDER}")).await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code(), FailureCode::FlowExtractFailed);
    let Failure::FlowExtractFailed { variable, from, .. } = f.cause() else {
        panic!("{f:?}")
    };
    assert_eq!(
        (variable.as_str(), from.as_str()),
        ("token", "$.access_token")
    );
}

#[tokio::test]
async fn secrets_in_a_url_are_redacted_from_the_details() {
    let ts = server().await;
    let dir = tempfile::tempdir().unwrap();
    let o = run(&format!(
        "{}\n[[flow.steps]]\nname = \"leaky\"\nhttp = {{ url = \"{{{{base}}}}/nowhere?pw={{{{password}}}}\" }}\n",
        head(&dir, &ts)
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::UnexpectedStatus));
    let text = o.observed.to_wire();
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(text.contains("pw=**REDACTED**"), "{text}");
}

#[tokio::test]
async fn a_step_timeout_ends_that_step_within_its_own_deadline() {
    let ts = server().await;
    let silent = Hostile::silent().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = run(&format!(
        "{}{LOGIN}\n[[flow.steps]]\nname = \"stall\"\ntimeout = \"400ms\"\nhttp = {{ url = \"{}\" }}\n",
        head(&dir, &ts),
        silent.url("/")
    ))
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let f = o.result.unwrap_err();
    assert_eq!(f.code(), FailureCode::Timeout);
    assert!(matches!(f, Failure::OnStep { step: 2, .. }), "{f:?}");
    assert!(
        f.to_string()
            .contains("step 2 (stall): timed out after 400 ms"),
        "{f}"
    );
}

#[test]
fn invalid_flows_name_the_offending_key() {
    let cases = [
        (
            "[[flow.steps]]\nname = \"a\"\nhttp = { url = \"http://a.test/{{nope}}\" }",
            "checks[0].flow.steps[0].http.url",
        ),
        (
            // A variable is only known after the step that extracts it.
            "[[flow.steps]]\nname = \"a\"\nhttp = { url = \"http://a.test/{{id}}\" }\nextract = { id = { json_path = \"$.id\" } }",
            "checks[0].flow.steps[0].http.url",
        ),
        (
            "[[flow.steps]]\nname = \"a\"\nhttp = { url = \"http://a.test/\" }\nextract = { id = { json_path = \"$.id\", header = \"x\" } }",
            "checks[0].flow.steps[0].extract.id",
        ),
        (
            "[[flow.steps]]\nname = \"a\"\nhttp = { url = \"http://a.test/\", samples = 3 }",
            "checks[0].flow.steps[0].http",
        ),
        (
            "[[flow.steps]]\nname = \"a\"\ntimeout = \"1m\"\nhttp = { url = \"http://a.test/\" }",
            "checks[0].flow.steps[0].timeout",
        ),
        (
            "[[flow.steps]]\nname = \"a\"\nhttp = { url = \"ftp://a.test/\" }",
            "checks[0].flow.steps[0].http.url",
        ),
        ("steps = []", "checks[0].flow.steps"),
    ];
    for (body, path) in cases {
        let raw: RawCheck =
            toml::from_str(&format!("id = \"f\"\ntimeout = \"5s\"\n[flow]\n{body}\n")).unwrap();
        let mut p = Problems::default();
        assert!(raw.validate("checks[0]", &mut p).is_none(), "{body}");
        assert!(
            format!("{p:?}").contains(&format!("\"{path}\"")),
            "{body}: {p:?}"
        );
    }
}
