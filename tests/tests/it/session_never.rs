//! Issue 13 item 9: a session check with `renewal = "never"` (the IOT
//! incident's client) keeps its rejected session, so every run after the
//! first rejection fails and the *default* alert rule pages — it used to log
//! in again, alternate pass/fail and never page.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use outpost_e2e::Fleet;
use outpost_testkit::{PagerReceiver, TokenServer};

const REGIONS: [&str; 2] = ["eu-west", "us-east"];
const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";
const SECRET: &str = "s3cret-client-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_session_pages_with_default_alert_settings() {
    let tokens = TokenServer::builder()
        .client("outpost", SECRET)
        .lifetime(Duration::from_secs(2))
        .run()
        .await
        .unwrap();
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let fleet = Fleet::new();
    let secret = fleet.secret("client.secret", SECRET);
    let key = fleet.secret("pd.key", ROUTING_KEY);
    // No `alert` table: the defaults (both regions, default confirmations).
    let body = format!(
        "{}\n[[checks]]\nid = \"vendor-b-never\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\n\
         [checks.session]\n\
         login = {{ oauth2_client_credentials = {{ token_url = \"{}\", client_id = \"outpost\", client_secret = {{ file = \"{}\" }} }} }}\n\
         use = [{{ url = \"{}\" }}]\nrenewal = \"never\"\n\
         [[sinks]]\nname = \"pagerduty\"\npagerduty = {{ routing_key = {{ file = \"{}\" }}, api_url = \"{}\" }}\n\
         [[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\"]\n",
        fleet.probes_toml(&REGIONS),
        tokens.url("/oauth/token"),
        secret.display(),
        tokens.url("/api/data"),
        key.display(),
        pager.url()
    );
    let ctl = fleet.controller("127.0.0.1:0", &body).await;
    let probes: Vec<_> = REGIONS
        .iter()
        .map(|r| fleet.probe(r, ctl.grpc_addr(), None))
        .collect();

    let events = pager.wait_for_events(1, Duration::from_secs(30)).await;
    let trigger = &events[0];
    assert_eq!(trigger.event_action, "trigger", "{:?}", trigger.raw);
    let summary = trigger.summary.clone().unwrap_or_default();
    assert!(summary.contains("vendor-b-never"), "{summary}");
    assert!(summary.contains("session_expired"), "{summary}");
    // The dead session was kept: no login after the first rejection (one
    // per probe at most; the in-process probes may share the state).
    assert!(
        tokens.tokens_issued() <= REGIONS.len() as u64,
        "logged in {} times",
        tokens.tokens_issued()
    );
    for p in probes {
        p.shutdown().await;
    }
    ctl.shutdown().await;
}
