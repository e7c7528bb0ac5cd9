//! The pager answers 429 (with Retry-After), then 500, for a while: every
//! notification is delivered afterwards, trigger before resolve per dedup
//! key. A 400 is not retried.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use outpost_e2e::{Fleet, settled};
use outpost_testkit::{Forced, HttpServer, PagerReceiver, Reply, wait::eventually};

const REGIONS: [&str; 2] = ["eu-west", "us-east"];
const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";

/// Two checks (`api-a`, `api-b`) against one target whose paths fail while
/// their name is in the returned set; PagerDuty at `pager`.
async fn setup(
    fleet: &Fleet,
    pager: &PagerReceiver,
) -> (
    Arc<Mutex<HashSet<String>>>,
    outpost_testkit::RunningServer,
    String,
) {
    let failing: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut builder = HttpServer::builder();
    for path in ["/a", "/b"] {
        let f = failing.clone();
        builder = builder.handler(path, move |_| {
            if f.lock().unwrap().contains(path) {
                Reply::text(503, "down")
            } else {
                Reply::text(200, "ok")
            }
        });
    }
    let target = builder.run().await.unwrap();
    let key = fleet.secret("pd.key", ROUTING_KEY);
    let mut body = fleet.probes_toml(&REGIONS);
    for (id, path) in [("api-a", "/a"), ("api-b", "/b")] {
        body.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nalert = {{ min_regions = 2 }}\nhttp = {{ url = \"{}\" }}\n",
            target.url(path)
        ));
    }
    body.push_str(&format!(
        "[[sinks]]\nname = \"pagerduty\"\npagerduty = {{ routing_key = {{ file = \"{}\" }}, api_url = \"{}\" }}\n\
         [[routes]]\nname = \"oncall\"\nsinks = [\"pagerduty\"]\n",
        key.display(),
        pager.url()
    ));
    (failing, target, body)
}

async fn alert_count(ctl: &outpost_controller::RunningController, state: &str) -> usize {
    ctl.store()
        .alerts(100)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.state.as_str() == state)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_429_then_500_everything_is_delivered_in_order() {
    let started = Instant::now();
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let fleet = Fleet::new();
    let (failing, _target, body) = setup(&fleet, &pager).await;
    let ctl = fleet.controller("127.0.0.1:0", &body).await;
    let probes: Vec<_> = REGIONS
        .iter()
        .map(|r| fleet.probe(r, ctl.grpc_addr(), None))
        .collect();

    // The pager throttles, then breaks, for a while.
    pager.respond_with(vec![Forced::too_many_requests(Some(2))]);
    pager.fail_for(Duration::from_secs(8), 500);
    failing
        .lock()
        .unwrap()
        .extend(["/a".to_owned(), "/b".to_owned()]);
    eventually("two open alerts", Duration::from_secs(10), || async {
        alert_count(&ctl, "open").await == 2
    })
    .await;
    // Both checks recover while the triggers are still undelivered: the
    // resolves queue behind them.
    failing.lock().unwrap().clear();
    eventually("two resolved alerts", Duration::from_secs(10), || async {
        alert_count(&ctl, "resolved").await == 2
    })
    .await;
    assert!(pager.events().is_empty(), "nothing got through yet");

    let events = pager.wait_for_events(4, Duration::from_secs(60)).await;
    let delivered_after = started.elapsed();
    assert_eq!(events.len(), 4, "{events:#?}");
    for key in ["outpost/api-a/check_failing", "outpost/api-b/check_failing"] {
        let actions: Vec<&str> = events
            .iter()
            .filter(|e| e.dedup_key == key)
            .map(|e| e.event_action.as_str())
            .collect();
        assert_eq!(actions, vec!["trigger", "resolve"], "{key}: {events:#?}");
    }
    assert!(
        pager.forced_count() >= 3,
        "429 and 500s were answered: {}",
        pager.forced_count()
    );
    assert!(pager.rejected().is_empty(), "{:?}", pager.rejected());
    settled(&ctl).await;
    assert_eq!(pager.events().len(), 4, "nothing sent twice");
    let m = ctl.controller().metrics();
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "sent")]
        ),
        4.0
    );
    assert!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "retried")]
        ) >= 3.0
    );
    eprintln!(
        "pager_faults: delivered {:.1}s after start",
        delivered_after.as_secs_f64()
    );
    for p in probes {
        p.shutdown().await;
    }
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried_and_the_resolve_still_goes_out() {
    let pager = PagerReceiver::start(ROUTING_KEY).await.unwrap();
    let fleet = Fleet::new();
    let (failing, _target, body) = setup(&fleet, &pager).await;
    let ctl = fleet.controller("127.0.0.1:0", &body).await;
    let probes: Vec<_> = REGIONS
        .iter()
        .map(|r| fleet.probe(r, ctl.grpc_addr(), None))
        .collect();

    pager.respond_with(vec![Forced::status(400)]);
    failing.lock().unwrap().insert("/a".to_owned());
    let store = ctl.store().clone();
    eventually(
        "the trigger's rejection",
        Duration::from_secs(10),
        || async { store.notification_counts().await.unwrap().failed == 1 },
    )
    .await;
    assert_eq!(pager.attempts(), 1);
    failing.lock().unwrap().clear();
    // The trigger failed permanently, so the resolve is not held behind it.
    let events = pager.wait_for_events(1, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event_action, "resolve");
    // Nothing is left pending (the rejected trigger is final): no retry can come.
    settled(&ctl).await;
    assert_eq!(pager.attempts(), 2, "the 400 was not retried");
    let m = ctl.controller().metrics();
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "pagerduty"), ("outcome", "retried")]
        ),
        0.0
    );
    for p in probes {
        p.shutdown().await;
    }
    ctl.shutdown().await;
}
