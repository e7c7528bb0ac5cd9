#![allow(clippy::unwrap_used)]
//! Session checks against a real token server on loopback: signed JWTs with
//! `exp`, validated by the resource server against its own clock. Token
//! lifetimes of one or two seconds; runs are driven by calling `check::run`
//! in a loop, as the scheduler would.
//!
//! Time is a [`ManualClock`] that the probe's runs and the token server both
//! read: a test moves it between runs instead of sleeping, so a token
//! expires at exactly its lifetime and every renewal lands on a known run.

use std::{path::PathBuf, sync::OnceLock, time::Duration};

use crate::support::{code, spec};
use outpost_probe::{
    check::{self, CheckSpec, FailureCode, Outcome, RawCheck, RunContext, session},
    clock::ManualClock,
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

/// A token server on `clock`.
async fn server(lifetime: Duration, clock: &ManualClock) -> TokenServer {
    let c = clock.clone();
    TokenServer::builder()
        .client("outpost", SECRET)
        .user("alice", PASSWORD)
        .lifetime(lifetime)
        .clock(move || c.now_utc().into())
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

/// One run at the time `clock` stands at.
async fn run(spec: &CheckSpec, clock: &ManualClock) -> Outcome {
    let ctx = RunContext {
        session_dir: Some(dirs().0.path().join("sessions")),
        clock: clock.clock(),
        ..RunContext::default()
    };
    check::run(spec, &ctx).await
}

/// Runs every `step` (moving `clock` between runs) while less than `span`
/// has passed since the first: the scheduler's cadence, in manual time.
/// Each outcome comes with the time of its run since the first.
async fn every(
    step: Duration,
    span: Duration,
    spec: &CheckSpec,
    clock: &ManualClock,
) -> Vec<(Duration, Outcome)> {
    let mut out = Vec::new();
    let mut t = Duration::ZERO;
    while t < span {
        out.push((t, run(spec, clock).await));
        clock.advance(step);
        t += step;
    }
    out
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn before_expiry_holds_a_session_for_five_lifetimes_with_renewals() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(1), &clock).await;
    let spec = oauth(
        "hold",
        &ts,
        "renewal = \"before_expiry\"\nrenew_at_fraction = 0.5",
    );
    let ms = Duration::from_millis;
    let outcomes: Vec<Outcome> = every(ms(150), ms(5_600), &spec, &clock)
        .await
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    for o in &outcomes {
        assert!(o.ok(), "{}", o.to_json());
    }
    let last = &outcomes[outcomes.len() - 1].details();
    // Due half-way through each 1 s credential: renewed by the first run at
    // or past it (0.6 s, 1.2 s, … 5.4 s).
    assert_eq!(last["renewals"], 9, "{last}");
    // Client credentials renew by logging in again: one login per renewal.
    assert_eq!(
        f64_of(&last["logins"]),
        f64_of(&last["renewals"]) + 1.0,
        "{last}"
    );
    assert_eq!(last["session_age_s"], 5.55, "{last}");
    let id_details = outcomes[0].details();
    let id = &id_details["session_id"];
    assert!(outcomes.iter().all(|o| &o.details()["session_id"] == id));
    assert_eq!(ts.unauthorized(), 0, "no protected call was rejected");
    assert_eq!(ts.tokens_issued(), 10);
    assert_eq!(last["declared_lifetime_s"], 1.0);
    assert!(last["next_renewal_at"].is_string());
}

#[tokio::test]
async fn never_fails_with_session_expired_at_the_lifetime_and_reports_it() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(2), &clock).await;
    let spec = oauth("never", &ts, "renewal = \"never\"");
    let first = run(&spec, &clock).await;
    assert!(first.ok(), "{}", first.to_json());
    let start = clock.now_utc();
    let failed = loop {
        clock.advance(Duration::from_millis(100));
        let o = run(&spec, &clock).await;
        if !o.ok() {
            break o;
        }
        assert!(
            clock.now_utc() - start < time::Duration::seconds(5),
            "never failed"
        );
    };
    assert_eq!(
        code(&failed),
        Some(FailureCode::SessionExpired),
        "{}",
        failed.to_json()
    );
    // Rejected by the first run at the declared expiry, not before.
    assert_eq!(clock.now_utc() - start, time::Duration::seconds(2));
    let observed = f64_of(&failed.details()["observed_lifetime_s"]);
    assert_eq!(observed, 2.0, "observed lifetime");
    assert_eq!(failed.details()["requests"][0]["status"], 401);
    let logins = ts.tokens_issued();
    // The incident's client keeps the dead session: every later run fails
    // the same way, with the first rejection's lifetime, and logs in no more.
    for _ in 0..3 {
        clock.advance(Duration::from_millis(500));
        let again = run(&spec, &clock).await;
        assert_eq!(
            code(&again),
            Some(FailureCode::SessionExpired),
            "{}",
            again.to_json()
        );
        let d = again.details();
        assert_eq!(d["session_id"], first.details()["session_id"], "{d}");
        assert_eq!(f64_of(&d["observed_lifetime_s"]), 2.0, "{d}");
        let message = again.result.as_ref().unwrap_err().to_string();
        assert!(
            message.starts_with("session rejected; renewal = never keeps it until reset"),
            "{message}"
        );
    }
    assert_eq!(ts.tokens_issued(), logins, "no login after the rejection");
    // A changed login config (a new fingerprint: the key now spelled out)
    // drops the dead session.
    let changed = oauth(
        "never",
        &ts,
        "renewal = \"never\"\nexpires_in_base = \"receipt\"",
    );
    let next = run(&changed, &clock).await;
    assert!(next.ok(), "{}", next.to_json());
    assert_ne!(next.details()["session_id"], first.details()["session_id"]);
    assert_eq!(ts.tokens_issued(), logins + 1);
    // A new config starts a new history too.
    assert_eq!(next.details()["logins"], 1, "{}", next.to_json());
}

#[tokio::test]
async fn lifetime_shortened_on_the_server_is_reported() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(2), &clock).await;
    let spec = oauth("shortened", &ts, "renew_at_fraction = 0.5");
    assert!(run(&spec, &clock).await.ok());
    ts.set_lifetime(Duration::from_secs(1));
    let start = clock.now_utc();
    let changed = loop {
        clock.advance(Duration::from_millis(100));
        let o = run(&spec, &clock).await;
        if !o.ok() {
            break o;
        }
        assert!(
            clock.now_utc() - start < time::Duration::seconds(5),
            "no change seen"
        );
    };
    // Seen at the first renewal: half-way through the 2 s credential.
    assert_eq!(clock.now_utc() - start, time::Duration::seconds(1));
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
    // The next renewal (of the new 1 s credential) sees no change.
    clock.advance(Duration::from_millis(600));
    let after = run(&spec, &clock).await;
    assert!(after.ok(), "{}", after.to_json());
}

#[tokio::test]
async fn lifetime_outside_bounds_is_reported() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(2), &clock).await;
    let spec = oauth(
        "bounds",
        &ts,
        "lifetime_bounds = { min = \"50m\", max = \"25h\" }",
    );
    let o = run(&spec, &clock).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::SessionLifetimeChanged),
        "{}",
        o.to_json()
    );
}

#[tokio::test]
async fn skewed_server_clock_is_reported_while_the_session_still_works() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(60), &clock).await;
    ts.set_clock_skew(time::Duration::seconds(30));
    let spec = oauth("skew", &ts, "");
    let o = run(&spec, &clock).await;
    assert_eq!(code(&o), Some(FailureCode::ClockSkew), "{}", o.to_json());
    let off = f64_of(&o.details()["server_clock_offset_ms"]);
    assert!((28_500.0..=31_500.0).contains(&off), "offset {off}");
    assert_eq!(o.details()["requests"][0]["status"], 200);
    // Expiry arithmetic is relative (expires_in from receipt): not thrown off by 30 s.
    let left = f64_of(&o.details()["expires_in_s"]);
    assert!((58.0..=60.0).contains(&left), "expires in {left}");
    // Within tolerance, nothing is reported.
    let ts2 = server(Duration::from_secs(60), &clock).await;
    ts2.set_clock_skew(time::Duration::seconds(-2));
    let o = run(&oauth("skew-small", &ts2, ""), &clock).await;
    assert!(o.ok(), "{}", o.to_json());
}

#[tokio::test]
async fn broken_renewal_keeps_using_the_old_token_until_it_expires() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(2), &clock).await;
    let spec = oauth("broken-renewal", &ts, "renew_at_fraction = 0.25");
    let first = run(&spec, &clock).await;
    assert!(first.ok(), "{}", first.to_json());
    let old = TokenServer::jti_of(&ts.last_access_token().unwrap()).unwrap();
    ts.set_token_endpoint_status(503);
    let ms = Duration::from_millis;
    let outcomes = every(ms(120), ms(2_800), &spec, &clock).await;
    // Before the renewal point (0.5 s): plain success; from the first run past
    // it (0.6 s) until expiry (2 s): renewal failed, old token still used.
    let kept: Vec<&(Duration, Outcome)> = outcomes
        .iter()
        .filter(|(_, o)| o.details()["requests"][0]["credential"] == "previous")
        .collect();
    let times: Vec<Duration> = kept.iter().map(|(t, _)| *t).collect();
    let expected: Vec<Duration> = (5..=16).map(|k| ms(120 * k)).collect();
    assert_eq!(times, expected);
    for (_, o) in &kept {
        assert_eq!(
            code(o),
            Some(FailureCode::SessionRenewalFailed),
            "{}",
            o.to_json()
        );
        assert!(o.details()["renewal_failures"].as_u64() >= Some(1));
        assert_eq!(o.details()["requests"][0]["status"], 200, "{}", o.to_json());
    }
    // The resource server answered the old token's calls with 200 until expiry:
    // the first run's, the five before the renewal point and the twelve after.
    let log = ts.resource_log();
    let old_ok = log
        .iter()
        .filter(|c| c.jti.as_deref() == Some(old.as_str()) && c.status == 200)
        .count();
    assert_eq!(old_ok, 1 + 5 + kept.len(), "calls with the old token");
    assert!(log.iter().all(|c| c.status == 200), "none was refused");
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
    let o = run(&spec, &clock).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["requests"][0]["credential"], "renewed");
}

#[tokio::test]
async fn restarted_probe_resumes_the_session_without_a_new_login() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(60), &clock).await;
    let spec = oauth("restart", &ts, "");
    let a = run(&spec, &clock).await;
    assert!(a.ok(), "{}", a.to_json());
    assert!(run(&spec, &clock).await.ok());
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
    let b = run(&spec, &clock).await;
    assert!(b.ok(), "{}", b.to_json());
    assert_eq!(ts.tokens_issued(), 1, "no new login after the restart");
    assert_eq!(b.details()["session_id"], a.details()["session_id"]);
    assert_eq!(b.details()["persisted"], true);
    assert_eq!(b.details()["logins"], 1);
    // A damaged file is not fatal: the run logs in anew.
    std::fs::write(&file, b"{ not json").unwrap();
    session::state::forget("restart");
    let c = run(&spec, &clock).await;
    assert!(c.ok(), "{}", c.to_json());
    assert_eq!(ts.tokens_issued(), 2);
}

#[tokio::test]
async fn on_401_reports_early_rejection_even_when_the_retry_succeeds() {
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(30), &clock).await;
    let spec = oauth("early", &ts, "renewal = \"on_401\"");
    assert!(run(&spec, &clock).await.ok());
    ts.set_reject_after(Some(Duration::from_millis(300)));
    clock.advance(Duration::from_millis(400));
    let o = run(&spec, &clock).await;
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
    assert_eq!(o.details()["observed_lifetime_s"], 0.4);
    ts.set_reject_after(None);
    let o = run(&spec, &clock).await;
    assert!(o.ok(), "{}", o.to_json());
    // Past the declared expiry a 401 is expected: re-login, retry, pass.
    let ts = server(Duration::from_secs(1), &clock).await;
    let spec = oauth(
        "on401-expiry",
        &ts,
        "renewal = \"on_401\"\nclock_skew_tolerance = \"200ms\"",
    );
    assert!(run(&spec, &clock).await.ok());
    clock.advance(Duration::from_millis(1_200));
    let o = run(&spec, &clock).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["requests"][1]["credential"], "relogin");
}

#[tokio::test]
async fn scripted_login_reads_token_and_zoned_expiry_and_cookie_jar_works() {
    let (_, _, password) = dirs();
    let clock = ManualClock::starting_now();
    let ts = server(Duration::from_secs(2), &clock).await;
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
    let o = run(&spec, &clock).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["expiry_source"], "expires_at");
    let lt = f64_of(&o.details()["declared_lifetime_s"]);
    assert!((1.9..=2.0).contains(&lt), "lifetime {lt}");
    clock.advance(Duration::from_millis(150));
    let ms = Duration::from_millis;
    for (t, o) in every(ms(150), ms(2_500), &spec, &clock).await {
        assert!(o.ok(), "at {t:?}: {}", o.to_json());
    }
    // Logged in at 0, renewed half-way through each 2 s credential.
    assert_eq!(ts.logins(), 3);
    assert_eq!(ts.unauthorized(), 0);

    let jar = spec_text
        .replace("id = \"script\"", "id = \"jar\"")
        .replace("script = {", "cookie_jar = {")
        .replace(
            ", extract = { token = \"$.token\", expires_at = \"$.expires_at\" }",
            "",
        )
        .replace(", headers = { authorization = \"Bearer {{token}}\" }", "");
    let o = run(&spec_from(&jar), &clock).await;
    assert!(o.ok(), "{}", o.to_json());
    assert_eq!(o.details()["expiry_source"], "cookie_max_age");
    assert!(ts.resource_log().last().unwrap().cookie);
}

fn spec_from(text: &str) -> CheckSpec {
    spec(text)
}

#[tokio::test]
async fn tokens_and_secrets_never_appear_in_results() {
    let clock = ManualClock::starting_now();
    let c = clock.clone();
    let ts = TokenServer::builder()
        .client("outpost", SECRET)
        .lifetime(Duration::from_secs(1))
        .refresh_tokens(true)
        .clock(move || c.now_utc().into())
        .run()
        .await
        .unwrap();
    let spec = oauth("no-leak", &ts, "renew_at_fraction = 0.5");
    let mut tokens = Vec::new();
    let mut texts = Vec::new();
    let mut t = Duration::ZERO;
    while t < Duration::from_millis(1_800) {
        let o = run(&spec, &clock).await;
        texts.push(o.to_json().to_string());
        tokens.extend(ts.last_access_token());
        clock.advance(Duration::from_millis(150));
        t += Duration::from_millis(150);
    }
    assert!(ts.refreshes() >= 1, "a refresh token was used");
    // A rejection and a failing refresh produce messages too.
    ts.revoke_all();
    ts.set_token_endpoint_status(401);
    let o = run(&spec, &clock).await;
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
