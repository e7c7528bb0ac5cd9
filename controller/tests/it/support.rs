//! Shared helpers for the controller's loopback tests: a controller on
//! `127.0.0.1:0` with a temp-dir SQLite store and the three test probes of
//! its config, connected as fake probes from the test kit (real gRPC through
//! the generated client); the kit's HTTP client and `eventually`.

use std::{net::SocketAddr, path::Path, time::Duration};

use outpost_controller::{ManualClock, RunningController, config};
use outpost_proto::v1::ProbeMessage;
use outpost_testkit::client;
pub use outpost_testkit::{
    FakeProbe,
    fake_probe::{self, attach, keep_alive, result},
    wait::eventually,
};

/// Probe names, regions and tokens used by every test config.
pub const PROBES: &[(&str, &str, &str)] = &[
    (
        "eu-west-1",
        "eu-west",
        "token-eu-0123456789abcdef0123456789abcdef",
    ),
    (
        "us-east-1",
        "us-east",
        "token-us-0123456789abcdef0123456789abcdef",
    ),
    (
        "ap-south-1",
        "ap-south",
        "token-ap-0123456789abcdef0123456789abcdef",
    ),
];
pub const ROUTING_KEY: &str = "R0UT1NGKEY0000000000000000000000";
pub const WAIT: Duration = Duration::from_secs(10);

pub fn vars() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = PROBES
        .iter()
        .enumerate()
        .map(|(i, (_, _, t))| (format!("TEST_TOKEN_{i}"), (*t).to_owned()))
        .collect();
    v.push(("TEST_PD_KEY".into(), ROUTING_KEY.into()));
    v.push(("TEST_HB_ID".into(), HB_PING_ID.into()));
    v
}

/// The `[server]` line that serves callers without credentials as a
/// viewer: the tests of pages and the API read them anonymously; the auth
/// tests (`auth.rs`) remove it.
pub const ANONYMOUS_VIEWER: &str = "allow_unauthenticated = true\n";

/// The ping id behind `{ env = "TEST_HB_ID" }` in [`vars`].
pub const HB_PING_ID: &str = "hb-test-0123456789abcdefABCDEF";

/// Moves `clock` forward to `unix_ms` (which must not be behind it).
pub fn advance_to(clock: &ManualClock, unix_ms: i64) {
    let by = unix_ms - clock.unix_ms();
    assert!(by >= 0, "the clock is {by} ms past the target");
    clock.advance(Duration::from_millis(by.unsigned_abs()));
}

/// A config with three probes, `checks` appended verbatim, and a PagerDuty
/// sink at `pager_url` routed for every check; callers without credentials
/// are anonymous viewers ([`ANONYMOUS_VIEWER`]).
pub fn config_text(db: &Path, pager_url: &str, checks: &str) -> String {
    let mut s = format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n{ANONYMOUS_VIEWER}allow_plaintext_probes = true\n[store]\npath = {:?}\n",
        db.display().to_string()
    );
    for (i, (name, region, _)) in PROBES.iter().enumerate() {
        s.push_str(&format!(
            "[[probes]]\nname = \"{name}\"\nregion = \"{region}\"\ntoken = {{ env = \"TEST_TOKEN_{i}\" }}\n"
        ));
    }
    s.push_str(checks);
    s.push_str(&format!(
        "\n[[sinks]]\nname = \"pagerduty\"\npagerduty = {{ routing_key = {{ env = \"TEST_PD_KEY\" }}, api_url = \"{pager_url}\" }}\n\
         [[sinks]]\nname = \"log\"\nconsole = {{}}\n\
         [[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\", \"log\"]\n"
    ));
    s
}

pub const API_CHECK: &str = "[[checks]]\nid = \"api-health\"\ninterval = \"30s\"\ntimeout = \"5s\"\nhttp = { url = \"https://api.example.net/health\" }\n";

pub async fn start(text: &str) -> RunningController {
    let cfg = config::parse(text, "test.toml", &vars()).expect("test config is valid");
    outpost_controller::start(cfg)
        .await
        .expect("controller starts")
}

pub fn token(name: &str) -> &'static str {
    PROBES
        .iter()
        .find(|p| p.0 == name)
        .map(|p| p.2)
        .expect("known probe")
}

pub fn region(name: &str) -> &'static str {
    PROBES
        .iter()
        .find(|p| p.0 == name)
        .map(|p| p.1)
        .expect("known probe")
}

/// Connects as the test probe `name` of [`PROBES`] (its token and region)
/// and sends hello.
pub async fn connect(addr: SocketAddr, name: &str) -> FakeProbe {
    FakeProbe::connect(addr, name, region(name), token(name)).await
}

/// The hello of the test probe `name` of [`PROBES`].
pub fn hello(name: &str) -> ProbeMessage {
    fake_probe::hello(name, region(name))
}

/// GET over a fresh loopback connection: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = client::get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    (resp.status, resp.text())
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// A controller reading a manual clock that stands at the system's now
/// until the test moves it (offline detection, evaluation, retries).
pub async fn start_manual(text: &str) -> (RunningController, ManualClock) {
    let clock = ManualClock::starting_now();
    (start_with(text, &clock).await, clock)
}

/// A controller reading `clock` (a restart in a test keeps its clock).
pub async fn start_with(text: &str, clock: &ManualClock) -> RunningController {
    let cfg = config::parse(text, "test.toml", &vars()).expect("test config is valid");
    outpost_controller::start_with_clock(cfg, clock.clock())
        .await
        .expect("controller starts")
}

/// Proof that the controller's workers ran past this moment, so a test may
/// then assert that nothing (more) happened: moves `clock` by 1 ms (waking
/// the evaluator), waits for an evaluator pass over every check at that
/// time, then for no notification due by then to be left pending (each was
/// delivered, given up or scheduled for later).
pub async fn settle(ctl: &RunningController, clock: &ManualClock) {
    clock.advance(Duration::from_millis(1));
    let now = clock.unix_ms();
    let c = ctl.controller();
    eventually("an evaluator pass at the clock's time", WAIT, || async {
        c.evaluated_ms() >= Some(now)
    })
    .await;
    drained(ctl).await;
}

/// Waits until no notification due by the controller's now is pending:
/// each was delivered, given up or scheduled for later, so the delivery
/// worker has nothing more to send yet.
pub async fn drained(ctl: &RunningController) {
    let c = ctl.controller();
    let now = c.now_ms();
    eventually("no notification due and pending", WAIT, || async {
        let next = c.store().next_notification_due().await.expect("store");
        next.is_none_or(|due| due > now)
    })
    .await;
}
