#![allow(clippy::unwrap_used)]
//! Session checks against a real token server on loopback: signed JWTs with
//! `exp`, validated by the resource server against its own clock. Token
//! lifetimes of one or two seconds; runs are driven by calling `check::run`
//! in a loop, as the scheduler would.

use std::{
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::support::{code, spec};
use outpost_probe::{
    check::{self, CheckSpec, FailureCode, Outcome, RawCheck, RunContext, session},
    config::Problems,
};
use outpost_testkit::TokenServer;
use serde_json::Value;

const SECRET: &str = "s3cret-client-secret";
const PASSWORD: &str = "alice-password-1";

/// One state directory for these tests (check ids are unique, so their
/// files never collide), and secret files for the client secret and the
/// login password.
fn dirs() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static D: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    D.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("client-secret");
        std::fs::write(&secret, SECRET).unwrap();
        let password = d.path().join("password");
        std::fs::write(&password, PASSWORD).unwrap();
        (d, secret, password)
    })
}

async fn server(lifetime: Duration) -> TokenServer {
    TokenServer::builder()
        .client("outpost", SECRET)
        .user("alice", PASSWORD)
        .lifetime(lifetime)
        .run()
        .await
        .unwrap()
}

/// An OAuth2 client-credentials session check; `extra` adds `[session]` keys.
fn oauth(id: &str, ts: &TokenServer, extra: &str) -> CheckSpec {
    let (_, secret, _) = dirs();
    spec(&format!(
        r#"id = "{id}"
interval = "1s"
timeout = "900ms"
[session]
login = {{ oauth2_client_credentials = {{ token_url = "{}", client_id = "outpost", client_secret = {{ file = "{}" }}, scope = "read" }} }}
use = [{{ url = "{}", json = [{{ path = "$.ok", equals = true }}] }}]
{extra}
"#,
        ts.url("/oauth/token"),
        secret.display(),
        ts.url("/api/data"),
    ))
}

async fn run(spec: &CheckSpec) -> Outcome {
    let ctx = RunContext {
        session_dir: Some(dirs().0.path().join("sessions")),
        ..RunContext::default()
    };
    check::run(spec, &ctx).await
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn before_expiry_holds_a_session_for_five_lifetimes_with_renewals() {
    let ts = server(Duration::from_secs(1)).await;
    let spec = oauth(
        "hold",
        &ts,
        "renewal = \"before_expiry\"\nrenew_at_fraction = 0.5",
    );
    let start = Instant::now();
    let mut outcomes = Vec::new();
    while start.elapsed() < Duration::from_millis(5_600) {
        outcomes.push(run(&spec).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for o in &outcomes {
        assert!(o.ok(), "{}", o.to_json());
    }
    let last = &outcomes[outcomes.len() - 1].details();
    assert!(f64_of(&last["renewals"]) >= 4.0, "{last}");
    // Client credentials renew by logging in again: one login per renewal.
    assert_eq!(
        f64_of(&last["logins"]),
        f64_of(&last["renewals"]) + 1.0,
        "{last}"
    );
    assert!(f64_of(&last["session_age_s"]) >= 5.0, "{last}");
    let id_details = outcomes[0].details();
    let id = &id_details["session_id"];
    assert!(outcomes.iter().all(|o| &o.details()["session_id"] == id));
    assert_eq!(ts.unauthorized(), 0, "no protected call was rejected");
    assert!(ts.tokens_issued() >= 5);
    assert_eq!(last["declared_lifetime_s"], 1.0);
    assert!(last["next_renewal_at"].is_string());
}

#[tokio::test]
async fn never_fails_with_session_expired_at_the_lifetime_and_reports_it() {
    let ts = server(Duration::from_secs(2)).await;
    let spec = oauth("never", &ts, "renewal = \"never\"");
    let first = run(&spec).await;
    assert!(first.ok(), "{}", first.to_json());
    let start = Instant::now();
    let failed = loop {
        let o = run(&spec).await;
        if !o.ok() {
            break o;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        code(&failed),
        Some(FailureCode::SessionExpired),
        "{}",
        failed.to_json()
    );
    let observed = f64_of(&failed.details()["observed_lifetime_s"]);
    assert!(
        (1.0..=3.0).contains(&observed),
        "observed lifetime {observed}"
    );
    let elapsed = start.elapsed().as_secs_f64();
    assert!((1.0..=3.0).contains(&elapsed), "failed after {elapsed}s");
    assert_eq!(failed.details()["requests"][0]["status"], 401);
    // The next run starts a new session (and measures its lifetime).
    let next = run(&spec).await;
    assert!(next.ok(), "{}", next.to_json());
    assert_ne!(next.details()["session_id"], first.details()["session_id"]);
    assert_eq!(
        next.details()["last_observed_lifetime_s"],
        failed.details()["observed_lifetime_s"]
    );
}

#[tokio::test]
async fn lifetime_shortened_on_the_server_is_reported() {
    let ts = server(Duration::from_secs(2)).await;
    let spec = oauth("shortened", &ts, "renew_at_fraction = 0.5");
    assert!(run(&spec).await.ok());
    ts.set_lifetime(Duration::from_secs(1));
    let start = Instant::now();
    let changed = loop {
        let o = run(&spec).await;
        if !o.ok() {
            break o;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no change seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        code(&changed),
        Some(FailureCode::SessionLifetimeChanged),
        "{}",
        changed.to_json()
    );
    assert_eq!(changed.details()["previous_declared_lifetime_s"], 2.0);
    assert_eq!(changed.details()["declared_lifetime_s"], 1.0);
    assert_eq!(changed.details()["first_declared_lifetime_s"], 2.0);
    // The renewed session itself works, and the change is reported once.
    assert_eq!(changed.details()["requests"][0]["status"], 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = run(&spec).await;
    assert!(after.ok(), "{}", after.to_json());
}

#[tokio::test]
async fn lifetime_outside_bounds_is_reported() {
    let ts = server(Duration::from_secs(2)).await;
    let spec = oauth(
        "bounds",
        &ts,
        "lifetime_bounds = { min = \"50m\", max = \"25h\" }",
    );
    let o = run(&spec).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::SessionLifetimeChanged),
        "{}",
        o.to_json()
    );
}

#[tokio::test]
async fn skewed_server_clock_is_reported_while_the_session_still_works() {
    let ts = server(Duration::from_secs(60)).await;
    ts.set_clock_skew(time::Duration::seconds(30));
    let spec = oauth("skew", &ts, "");
    let o = run(&spec).await;
    assert_eq!(code(&o), Some(FailureCode::ClockSkew), "{}", o.to_json());
    let off = f64_of(&o.details()["server_clock_offset_ms"]);
    assert!((28_500.0..=31_500.0).contains(&off), "offset {off}");
    assert_eq!(o.details()["requests"][0]["status"], 200);
    // Expiry arithmetic is relative (expires_in from receipt): not thrown off by 30 s.
    let left = f64_of(&o.details()["expires_in_s"]);
    assert!((58.0..=60.0).contains(&left), "expires in {left}");
    // Within tolerance, nothing is reported.
    let ts2 = server(Duration::from_secs(60)).await;
    ts2.set_clock_skew(time::Duration::seconds(-2));
    let o = run(&oauth("skew-small", &ts2, "")).await;
    assert!(o.ok(), "{}", o.to_json());
}

#[tokio::test]
async fn broken_renewal_keeps_using_the_old_token_until_it_expires() {
    let ts = server(Duration::from_secs(2)).await;
    let spec = oauth("broken-renewal", &ts, "renew_at_fraction = 0.25");
    let first = run(&spec).await;
    assert!(first.ok(), "{}", first.to_json());
    let old = TokenServer::jti_of(&ts.last_access_token().unwrap()).unwrap();
    let issued = Instant::now();
    ts.set_token_endpoint_status(503);
    let mut outcomes = Vec::new();
    while issued.elapsed() < Duration::from_millis(2_800) {
        outcomes.push((issued.elapsed(), run(&spec).await));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // Before the renewal point: plain success; after it: renewal failed, old token still used.
    let kept: Vec<&(Duration, Outcome)> = outcomes
        .iter()
        .filter(|(_, o)| o.details()["requests"][0]["credential"] == "previous")
        .collect();
    assert!(kept.len() >= 3, "{}", outcomes.len());
    let mut kept_ok = 0;
    for (t, o) in &kept {
        assert_eq!(
            code(o),
            Some(FailureCode::SessionRenewalFailed),
            "{}",
            o.to_json()
        );
        assert!(o.details()["renewal_failures"].as_u64() >= Some(1));
        // `t` is measured from after the first run, so the token is a little older than
        // `t`. A run that starts within a few milliseconds of expiry still sends the old
        // token (it was valid when chosen) and the server may already refuse it; that
        // edge is real behaviour, so only runs well clear of it must see 200.
        let status_details = o.details();
        let status = &status_details["requests"][0]["status"];
        if *t < Duration::from_millis(1_700) {
            assert_eq!(*status, 200, "{}", o.to_json());
        } else {
            assert!(*status == 200 || *status == 401, "{}", o.to_json());
        }
        if *status == 200 {
            kept_ok += 1;
        }
    }
    assert!(
        kept_ok >= 3,
        "{kept_ok} runs used the old token successfully"
    );
    // The resource server kept receiving the old token's calls, answered 200, until expiry.
    let log = ts.resource_log();
    let old_ok = log
        .iter()
        .filter(|c| c.jti.as_deref() == Some(old.as_str()) && c.status == 200)
        .count();
    assert!(old_ok > kept_ok, "{old_ok} calls with the old token");
    // Past expiry the calls are skipped and the renewal failure is still the code.
    let (t, last) = outcomes.last().unwrap();
    assert!(*t > Duration::from_secs(2));
    assert_eq!(
        code(last),
        Some(FailureCode::SessionRenewalFailed),
        "{}",
        last.to_json()
    );
    assert_eq!(last.details()["requests"].as_array().map(Vec::len), Some(0));
    // Repaired: the next run renews and passes.
    ts.set_token_endpoint_status(200);
    let o = run(&spec).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["requests"][0]["credential"], "renewed");
}

#[tokio::test]
async fn restarted_probe_resumes_the_session_without_a_new_login() {
    let ts = server(Duration::from_secs(60)).await;
    let spec = oauth("restart", &ts, "");
    let a = run(&spec).await;
    assert!(a.ok(), "{}", a.to_json());
    assert!(run(&spec).await.ok());
    assert_eq!(ts.tokens_issued(), 1);
    let file = dirs().0.path().join("sessions").join("restart.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file holds credentials");
    }
    // A restart: the in-memory state is gone, the file is read back.
    session::state::forget("restart");
    let b = run(&spec).await;
    assert!(b.ok(), "{}", b.to_json());
    assert_eq!(ts.tokens_issued(), 1, "no new login after the restart");
    assert_eq!(b.details()["session_id"], a.details()["session_id"]);
    assert_eq!(b.details()["persisted"], true);
    assert_eq!(b.details()["logins"], 1);
    // A damaged file is not fatal: the run logs in anew.
    std::fs::write(&file, b"{ not json").unwrap();
    session::state::forget("restart");
    let c = run(&spec).await;
    assert!(c.ok(), "{}", c.to_json());
    assert_eq!(ts.tokens_issued(), 2);
}

#[tokio::test]
async fn on_401_reports_early_rejection_even_when_the_retry_succeeds() {
    let ts = server(Duration::from_secs(30)).await;
    let spec = oauth("early", &ts, "renewal = \"on_401\"");
    assert!(run(&spec).await.ok());
    ts.set_reject_after(Some(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let o = run(&spec).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::SessionRejectedEarly),
        "{}",
        o.to_json()
    );
    assert_shape_of_fixture(&o.details(), "session-on-401-early.json");
    let reqs_details = o.details();
    let reqs = reqs_details["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 2, "{}", o.to_json());
    assert_eq!(
        (reqs[0]["status"].as_u64(), reqs[0]["retry"].as_bool()),
        (Some(401), Some(false))
    );
    assert_eq!(
        (reqs[1]["status"].as_u64(), reqs[1]["retry"].as_bool()),
        (Some(200), Some(true))
    );
    assert!(f64_of(&o.details()["observed_lifetime_s"]) < 1.0);
    ts.set_reject_after(None);
    let o = run(&spec).await;
    assert!(o.ok(), "{}", o.to_json());
    // Past the declared expiry a 401 is expected: re-login, retry, pass.
    let ts = server(Duration::from_secs(1)).await;
    let spec = oauth(
        "on401-expiry",
        &ts,
        "renewal = \"on_401\"\nclock_skew_tolerance = \"200ms\"",
    );
    assert!(run(&spec).await.ok());
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let o = run(&spec).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["requests"][1]["credential"], "relogin");
}

#[tokio::test]
async fn scripted_login_reads_token_and_zoned_expiry_and_cookie_jar_works() {
    let (_, _, password) = dirs();
    let ts = server(Duration::from_secs(2)).await;
    // The vendor writes expires_at in CST: the arithmetic must not care.
    ts.set_expires_at_offset(time::UtcOffset::from_hms(-6, 0, 0).unwrap());
    let spec_text = format!(
        r#"id = "script"
interval = "1s"
timeout = "900ms"
[session]
login = {{ script = {{ request = {{ url = "{}", json_body = {{ username = "alice", password = "{{{{password}}}}" }}, secrets = {{ password = {{ file = "{}" }} }} }}, extract = {{ token = "$.token", expires_at = "$.expires_at" }} }} }}
use = [{{ url = "{}", headers = {{ authorization = "Bearer {{{{token}}}}" }} }}]
renew_at_fraction = 0.5
"#,
        ts.url("/login"),
        password.display(),
        ts.url("/api/data"),
    );
    let spec = spec(&spec_text);
    let o = run(&spec).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["expiry_source"], "expires_at");
    let lt = f64_of(&o.details()["declared_lifetime_s"]);
    assert!((1.9..=2.0).contains(&lt), "lifetime {lt}");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_500) {
        let o = run(&spec).await;
        assert!(o.ok(), "{}", o.to_json());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(ts.logins() >= 3);
    assert_eq!(ts.unauthorized(), 0);

    let jar = spec_text
        .replace("id = \"script\"", "id = \"jar\"")
        .replace("script = {", "cookie_jar = {")
        .replace(
            ", extract = { token = \"$.token\", expires_at = \"$.expires_at\" }",
            "",
        )
        .replace(", headers = { authorization = \"Bearer {{token}}\" }", "");
    let o = run(&spec_from(&jar)).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["expiry_source"], "cookie_max_age");
    assert!(ts.resource_log().last().unwrap().cookie);
}

fn spec_from(text: &str) -> CheckSpec {
    spec(text)
}

#[tokio::test]
async fn tokens_and_secrets_never_appear_in_results() {
    let ts = TokenServer::builder()
        .client("outpost", SECRET)
        .lifetime(Duration::from_secs(1))
        .refresh_tokens(true)
        .run()
        .await
        .unwrap();
    let spec = oauth("no-leak", &ts, "renew_at_fraction = 0.5");
    let mut tokens = Vec::new();
    let mut texts = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1_800) {
        let o = run(&spec).await;
        texts.push(o.to_json().to_string());
        tokens.extend(ts.last_access_token());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(ts.refreshes() >= 1, "a refresh token was used");
    // A rejection and a failing refresh produce messages too.
    ts.revoke_all();
    ts.set_token_endpoint_status(401);
    let o = run(&spec).await;
    texts.push(o.to_json().to_string());
    texts.push(format!("{:?}", o));
    tokens.dedup();
    assert!(tokens.len() >= 2);
    for t in &texts {
        for tok in &tokens {
            assert!(!t.contains(tok.as_str()), "a token leaked: {t}");
            // Not even the signature part.
            let sig = tok.rsplit('.').next().unwrap();
            assert!(!t.contains(sig), "a token signature leaked: {t}");
        }
        assert!(!t.contains(SECRET), "the client secret leaked: {t}");
    }
}

#[test]
fn invalid_session_configs_name_their_paths() {
    let _ = dirs();
    let cases = [
        (
            "login = { }\nuse = [{ url = \"http://127.0.0.1:1/x\" }]",
            "checks[0].session.login",
        ),
        (
            "login = { cookie_jar = { request = { url = \"http://127.0.0.1:1/login\" } } }\nuse = []",
            "checks[0].session.use",
        ),
        (
            "login = { cookie_jar = { request = { url = \"http://127.0.0.1:1/login\" } } }\nuse = [{ url = \"http://127.0.0.1:1/x\" }]\nrenew_at_fraction = 1.5",
            "checks[0].session.renew_at_fraction",
        ),
        (
            "login = { cookie_jar = { request = { url = \"http://127.0.0.1:1/login\" } } }\nuse = [{ url = \"http://127.0.0.1:1/x\" }]\nrenewal = \"never\"\nrenew_before = \"5s\"",
            "checks[0].session.renewal",
        ),
        (
            "login = { cookie_jar = { request = { url = \"http://127.0.0.1:1/login\", json_body = { p = \"{{nope}}\" } } } }\nuse = [{ url = \"http://127.0.0.1:1/x\" }]",
            "checks[0].session.login.cookie_jar.request.json_body",
        ),
        (
            "login = { oauth2_client_credentials = { token_url = \"http://127.0.0.1:1/t\", client_id = \"a\", client_secret = { env = \"OUTPOST_TEST_UNSET_SECRET_X\" } } }\nuse = [{ url = \"http://127.0.0.1:1/x\" }]",
            "checks[0].session.login.oauth2_client_credentials.client_secret",
        ),
        (
            "login = { cookie_jar = { request = { url = \"http://127.0.0.1:1/login\" } } }\nuse = [{ url = \"http://127.0.0.1:1/x\" }]\nlifetime_bounds = { min = \"2h\", max = \"1h\" }",
            "checks[0].session.lifetime_bounds",
        ),
    ];
    for (keys, path) in cases {
        let raw: RawCheck = toml::from_str(&format!("id = \"x\"\n[session]\n{keys}\n")).unwrap();
        let mut p = Problems::default();
        assert!(raw.validate("checks[0]", &mut p).is_none(), "{keys}");
        let err = p.finish("test").unwrap_err();
        assert!(err.has_path(path), "{keys}: {err}");
    }
    // Unknown keys are refused.
    assert!(
        toml::from_str::<RawCheck>(
            "id = \"x\"\n[session]\nlogin = {}\nuse = []\nrenwal = \"never\"\n"
        )
        .is_err()
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
