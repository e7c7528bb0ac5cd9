//! Issue 15 item 1: OpenTelemetry traces of check runs, exported over
//! OTLP/gRPC to a real trace receiver on loopback (the test kit's
//! [`OtlpReceiver`], opentelemetry-proto's `TraceService` on tonic).

#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use outpost_probe::{
    check::Outcome,
    config::{self, RawProbeFile},
};
use outpost_testkit::{HttpServer, OtlpReceiver, Reply, otlp::Span, wait::eventually};

const WAIT: Duration = Duration::from_secs(20);

/// A standalone probe (no controller) running `checks` with `[telemetry]`
/// aimed at `receiver`; every outcome is also collected.
fn probe(
    receiver: &OtlpReceiver,
    telemetry: &str,
    checks: &str,
) -> (outpost_probe::RunningProbe, Arc<Mutex<Vec<Outcome>>>) {
    let text = format!(
        "[probe]\nname = \"probe-otel\"\nregion = \"eu-west\"\n\
         [telemetry]\notlp_endpoint = \"{}\"\nbatch_delay = \"50ms\"\n{telemetry}\n{checks}",
        receiver.endpoint()
    );
    let raw: RawProbeFile = config::load::load_str(&text, "probe.toml", config::ENV, &[]).unwrap();
    let cfg = raw.validate("probe.toml").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let running = outpost_probe::spawn(
        cfg,
        Some(Arc::new(move |o: Outcome| sink.lock().unwrap().push(o))),
    )
    .unwrap();
    (running, seen)
}

fn check(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[checks]]\nid = \"{id}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
         http = {{ url = \"{url}\"{extra} }}\n"
    )
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    let mut c: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect();
    c.sort_by_key(|s| (s.start_unix_nanos, s.name.clone()));
    c
}

async fn root_of(receiver: &OtlpReceiver, check: &str) -> Span {
    eventually(&format!("a trace of {check}"), WAIT, || async {
        receiver
            .roots()
            .into_iter()
            .find(|s| s.attr("outpost.check") == Some(check))
    })
    .await
}

async fn target() -> outpost_testkit::RunningServer {
    HttpServer::builder()
        .route("/start", Reply::redirect(302, "/ok"))
        .route("/ok", Reply::text(200, "ok"))
        .route("/broken", Reply::text(503, "down"))
        .run()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_is_a_trace_of_hops_and_phases_and_a_failure_carries_its_code() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let srv = target().await;
    let checks = format!(
        "{}{}",
        check(
            "redirected",
            &srv.url("/start"),
            ", follow_redirects = true"
        ),
        check("failing", &srv.url("/broken"), "")
    );
    let (probe, _seen) = probe(
        &receiver,
        "sampling = \"always\"\ntraceparent = true",
        &checks,
    );

    // A passing run through one redirect.
    let root = root_of(&receiver, "redirected").await;
    assert_eq!(root.name, "check redirected");
    assert_eq!(root.kind, 1, "internal");
    assert_eq!(root.status_code, 0, "a pass leaves the status unset");
    assert_eq!(root.attr("outpost.kind"), Some("http"));
    assert_eq!(root.attr("outpost.region"), Some("eu-west"));
    assert_eq!(root.attr("outpost.probe"), Some("probe-otel"));
    assert_eq!(root.attr("url.full"), Some(srv.url("/start").as_str()));
    assert_eq!(root.attr("http.request.method"), Some("GET"));
    assert_eq!(root.attr("http.response.status_code"), Some("200"));
    assert_eq!(root.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(root.attr("outpost.redirects"), Some("1"));
    assert_eq!(
        root.resource.get("service.name").map(String::as_str),
        Some("outpost-probe")
    );
    assert_eq!(
        root.resource.get("outpost.region").map(String::as_str),
        Some("eu-west")
    );
    let spans = eventually("the whole trace", WAIT, || async {
        let t = receiver.trace(&root.trace_id);
        (t.len() >= 8).then_some(t)
    })
    .await;
    let hops = children(&spans, &root);
    assert_eq!(
        hops.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["GET", "GET"],
        "{spans:#?}"
    );
    assert!(hops.iter().all(|h| h.kind == 3), "hops are client spans");
    assert_eq!(hops[0].attr("outpost.hop"), Some("0"));
    assert_eq!(hops[0].attr("http.response.status_code"), Some("302"));
    assert_eq!(hops[1].attr("outpost.hop"), Some("1"));
    assert_eq!(hops[1].attr("url.full"), Some(srv.url("/ok").as_str()));
    assert_eq!(hops[1].attr("http.response.status_code"), Some("200"));
    assert_eq!(hops[1].attr("network.peer.address"), Some("127.0.0.1"));
    assert_eq!(hops[1].attr("network.protocol.version"), Some("1.1"));
    let names = |h: &Span| {
        children(&spans, h)
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(hops[0]), ["connect", "request"]);
    assert_eq!(names(hops[1]), ["connect", "request", "body"]);
    // Children lie within their parents, hops one after the other.
    for s in &spans {
        if let Some(p) = spans.iter().find(|p| p.span_id == s.parent_span_id) {
            assert!(
                p.start_unix_nanos <= s.start_unix_nanos && s.end_unix_nanos <= p.end_unix_nanos,
                "{} outside {}",
                s.name,
                p.name
            );
        }
    }
    assert!(hops[0].end_unix_nanos <= hops[1].start_unix_nanos);

    // The target saw this trace's traceparent, with the check span as parent.
    let parent = format!("00-{}-{}-01", root.trace_id, root.span_id);
    let sent: Vec<String> = srv
        .requests()
        .iter()
        .filter(|r| r.path == "/start" || r.path == "/ok")
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(
        sent.iter().filter(|v| **v == parent).count() == 2,
        "both hops of the run carry {parent}: {sent:?}"
    );

    // A failing run: error status with the failure code, on the root and its hop.
    let failed = root_of(&receiver, "failing").await;
    assert_eq!(failed.status_code, 2, "error");
    assert_eq!(failed.status_message, "unexpected_status");
    assert_eq!(
        failed.attr("outpost.failure_code"),
        Some("unexpected_status")
    );
    assert_eq!(failed.attr("error.type"), Some("unexpected_status"));
    assert!(
        failed
            .attr("outpost.failure_message")
            .is_some_and(|m| m.contains("503")),
        "{failed:?}"
    );
    assert_eq!(failed.attr("http.response.status_code"), Some("503"));
    probe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_only_exports_the_failing_runs_and_none_of_the_passing_ones() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let srv = target().await;
    let checks = format!(
        "{}{}",
        check("passing", &srv.url("/ok"), ""),
        check("failing", &srv.url("/broken"), "")
    );
    let (probe, seen) = probe(&receiver, "sampling = \"failures_only\"", &checks);
    root_of(&receiver, "failing").await;
    // The passing check ran (twice)...
    eventually("two passing runs", WAIT, || async {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|o| o.check_id == "passing" && o.ok())
            .count()
            >= 2
    })
    .await;
    // ...and a failing run exported after them went through the same queue,
    // so a passing trace would have arrived by now.
    let failing_before = receiver.roots().len();
    eventually("a later failing trace", WAIT, || async {
        receiver.roots().len() > failing_before
    })
    .await;
    let roots = receiver.roots();
    assert!(
        roots
            .iter()
            .all(|r| r.attr("outpost.check") == Some("failing") && r.status_code == 2),
        "{roots:#?}"
    );
    // No traceparent unless asked for.
    assert!(
        srv.requests()
            .iter()
            .all(|r| r.headers.iter().all(|(k, _)| k != "traceparent"))
    );
    probe.shutdown().await;
}

/// Issue 15 item 1 (controller): ingest batches and notification deliveries
/// are traced with the same `[telemetry]` table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_traces_ingest_batches_and_each_delivery_with_its_sink_and_result() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let hook = outpost_testkit::WebhookReceiver::start().await.unwrap();
    let srv = target().await;
    let fleet = outpost_e2e::Fleet::new();
    let body = format!(
        "{probes}[telemetry]\notlp_endpoint = \"{otlp}\"\nsampling = \"always\"\nbatch_delay = \"50ms\"\n\
         [[checks]]\nid = \"api\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         alert = {{ min_regions = 1, confirmations = 1 }}\nhttp = {{ url = \"{url}\" }}\n\
         [[sinks]]\nname = \"hook\"\nwebhook = {{ url = \"{hook}\" }}\n\
         [[routes]]\nname = \"ops\"\nsinks = [\"hook\"]\n",
        probes = fleet.probes_toml(&["eu-west"]),
        otlp = receiver.endpoint(),
        url = srv.url("/broken"),
        hook = hook.url(),
    );
    let ctl = fleet.controller("127.0.0.1:0", &body).await;
    let probe = fleet.probe("eu-west", ctl.grpc_addr(), None);

    let delivery = eventually("a delivery span", WAIT, || async {
        receiver
            .roots()
            .into_iter()
            .find(|s| s.name == "notification delivery")
    })
    .await;
    assert_eq!(delivery.kind, 3, "client");
    assert_eq!(delivery.attr("outpost.sink"), Some("hook"));
    assert_eq!(
        delivery.attr("outpost.notification.action"),
        Some("trigger")
    );
    assert_eq!(delivery.attr("outpost.delivery.result"), Some("sent"));
    assert_eq!(delivery.status_code, 0, "{delivery:?}");
    assert_eq!(
        delivery.resource.get("service.name").map(String::as_str),
        Some("outpost-controller")
    );
    let ingest = receiver
        .roots()
        .into_iter()
        .find(|s| s.name == "ingest batch")
        .expect("an ingest span before the delivery it led to");
    assert_eq!(ingest.kind, 2, "server");
    assert_eq!(ingest.attr("outpost.probe"), Some("probe-eu-west"));
    assert_eq!(ingest.attr("outpost.region"), Some("eu-west"));
    assert!(ingest.attr("outpost.results").is_some_and(|n| n != "0"));
    assert_eq!(ingest.status_code, 0);
    probe.shutdown().await;
    ctl.shutdown().await;
}
