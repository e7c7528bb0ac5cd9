//! Hostile targets fail their own check with the right code within the
//! check's one deadline, keep memory bounded, and do not slow other checks.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::support::{code, spec};
use outpost_probe::{
    check::{self, Failure, FailureCode, Outcome, RunContext, failure::Phase},
    config::RawProbeFile,
};
use outpost_testkit::{Hostile, HttpServer, Reply, wait::eventually};

/// Runs the check and returns the outcome and the wall time it took.
async fn timed(toml_text: &str) -> (Outcome, Duration) {
    let ctx = RunContext::default();
    let spec = spec(toml_text);
    let t = Instant::now();
    let o = check::run(&spec, &ctx).await;
    (o, t.elapsed())
}

fn within(took: Duration, deadline_ms: u64) {
    let d = Duration::from_millis(deadline_ms);
    assert!(
        took >= d && took < d + Duration::from_millis(750),
        "{took:?} for a {d:?} deadline"
    );
}

#[tokio::test]
async fn a_slow_unannounced_stream_times_out_at_the_deadline() {
    // 256 KiB/s would need 4 s to reach the 1 MiB cap: the 2 s deadline comes first.
    let srv = Hostile::endless_stream(256 * 1024).await.unwrap();
    let (o, took) = timed(&format!(
        "id = \"x\"\ntimeout = \"2s\"\nhttp = {{ url = \"{}\", max_body = \"1MiB\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::Timeout), "{:?}", o.result);
    assert_eq!(o.details()["timeout_phase"], "body");
    let read_details = o.details();
    let read = read_details["body_bytes"].as_u64().unwrap();
    assert!(
        (256 * 1024..1024 * 1024).contains(&read),
        "{read} bytes read"
    );
    within(took, 2000);
}

#[tokio::test]
async fn a_fast_unannounced_stream_stops_at_max_body() {
    let srv = Hostile::endless_stream(8 * 1024 * 1024).await.unwrap();
    let (o, took) = timed(&format!(
        "id = \"x\"\ntimeout = \"5s\"\nhttp = {{ url = \"{}\", max_body = \"256KiB\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::BodyTooLarge), "{:?}", o.result);
    assert!(matches!(
        o.result,
        Err(Failure::BodyTooLarge {
            max_body: 262_144,
            content_length: None
        })
    ));
    let read_details = o.details();
    let read = read_details["body_bytes"].as_u64().unwrap();
    assert!(read > 256 * 1024 && read < 512 * 1024, "{read} bytes read");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn an_announced_gigabyte_is_too_large_at_once_without_reading() {
    // `Content-Length: 1 GiB` and a body trickling at 1 KiB/s: the length
    // alone exceeds the cap, so nothing is read and the deadline is not awaited.
    let srv = Hostile::endless_body(1024).await.unwrap();
    let (o, took) = timed(&format!(
        "id = \"x\"\ntimeout = \"5s\"\nhttp = {{ url = \"{}\", max_body = \"1MiB\" }}",
        srv.url("/")
    ))
    .await;
    let Err(Failure::BodyTooLarge {
        max_body,
        content_length,
    }) = &o.result
    else {
        panic!("{:?}", o.result)
    };
    assert_eq!(*max_body, 1 << 20);
    assert_eq!(*content_length, Some(1 << 30));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(o.details().get("body_bytes").is_none(), "{}", o.details());
    let message = o.result.unwrap_err().to_string();
    assert!(message.contains("1GiB"), "{message}");
}

#[tokio::test]
async fn a_head_answer_announcing_a_large_body_is_not_too_large() {
    let srv = HttpServer::builder()
        .route("/", Reply::text(200, vec![b'x'; 2 << 20]))
        .run()
        .await
        .unwrap();
    let (o, _) = timed(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\", method = \"HEAD\", max_body = \"1MiB\" }}",
        srv.url("/")
    ))
    .await;
    assert!(o.ok(), "{:?}", o.result);
    // The same resource with GET is too large, before a byte of it is read.
    let (o, _) = timed(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\", max_body = \"1MiB\" }}",
        srv.url("/")
    ))
    .await;
    assert!(
        matches!(
            o.result,
            Err(Failure::BodyTooLarge {
                content_length: Some(2097152),
                ..
            })
        ),
        "{:?}",
        o.result
    );
}

#[tokio::test]
async fn accept_and_never_answer_times_out_at_the_deadline() {
    let srv = Hostile::silent().await.unwrap();
    let (o, took) = timed(&format!(
        "id = \"x\"\ntimeout = \"700ms\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::Timeout));
    assert_eq!(o.details()["timeout_phase"], "first byte");
    within(took, 700);
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let srv = Hostile::garbage().await.unwrap();
    let (o, _) = timed(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::ProtocolError), "{:?}", o.result);
}

#[tokio::test]
async fn a_mebibyte_of_headers_is_headers_too_large() {
    let srv = Hostile::huge_headers(1024 * 1024).await.unwrap();
    let (o, took) = timed(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::HeadersTooLarge),
        "{:?}",
        o.result
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A smaller cap applies too (a few KiB of filler passes the default).
    let srv = Hostile::huge_headers(6 * 1024).await.unwrap();
    let url = srv.url("/");
    let (o, _) = timed(&format!("id = \"x\"\nhttp = {{ url = \"{url}\" }}")).await;
    assert!(o.ok(), "{:?}", o.result);
    let (o, _) = timed(&format!(
        "id = \"x\"\nhttp = {{ url = \"{url}\", max_header_bytes = \"4KiB\" }}"
    ))
    .await;
    assert_eq!(
        code(&o),
        Some(FailureCode::HeadersTooLarge),
        "{:?}",
        o.result
    );
}

#[tokio::test]
async fn a_drip_times_out_at_the_deadline_not_per_read() {
    // A byte every 200 ms never trips a per-read timeout; only the run's
    // deadline ends it.
    let srv = Hostile::drip(Duration::from_millis(200)).await.unwrap();
    let (o, took) = timed(&format!(
        "id = \"x\"\ntimeout = \"1500ms\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    assert_eq!(code(&o), Some(FailureCode::Timeout), "{:?}", o.result);
    assert_eq!(o.details()["timeout_phase"], "body");
    assert!(o.details()["body_bytes"].as_u64().unwrap() >= 5);
    within(took, 1500);
}

#[tokio::test]
async fn samples_share_the_one_deadline() {
    let srv = Hostile::drip(Duration::from_millis(50)).await.unwrap();
    let (o, took) = timed(&format!(
        "id = \"x\"\ntimeout = \"1s\"\nhttp = {{ url = \"{}\", samples = 5 }}",
        srv.url("/")
    ))
    .await;
    let f = o.result.clone().unwrap_err();
    assert_eq!(f.code(), FailureCode::Timeout);
    let Failure::Sample {
        sample: 1,
        of: 5,
        failure,
    } = &f
    else {
        panic!("{f:?}")
    };
    assert!(
        matches!(
            **failure,
            Failure::Timeout {
                phase: Phase::Body,
                ..
            }
        ),
        "{failure:?}"
    );
    within(took, 1000);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_targets_do_not_slow_a_healthy_check_or_grow_memory() {
    let healthy = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let silent = Hostile::silent().await.unwrap();
    let garbage = Hostile::garbage().await.unwrap();
    let headers = Hostile::huge_headers(1024 * 1024).await.unwrap();
    let announced = Hostile::endless_body(64 * 1024 * 1024).await.unwrap();
    let stream = Hostile::endless_stream(64 * 1024 * 1024).await.unwrap();
    let slow = Hostile::endless_stream(256 * 1024).await.unwrap();
    let drip = Hostile::drip(Duration::from_millis(200)).await.unwrap();
    let hostile = [
        ("silent", silent.url("/"), ""),
        ("garbage", garbage.url("/"), ""),
        ("headers", headers.url("/"), ""),
        ("announced", announced.url("/"), ", max_body = \"1MiB\""),
        ("stream", stream.url("/"), ", max_body = \"1MiB\""),
        ("slow", slow.url("/"), ", max_body = \"1MiB\""),
        ("drip", drip.url("/"), ""),
    ];
    let mut text = format!(
        "[[checks]]\nid = \"healthy\"\ninterval = \"100ms\"\nhttp = {{ url = \"{}\" }}\n",
        healthy.url("/")
    );
    for (id, url, extra) in &hostile {
        text.push_str(&format!(
            "[[checks]]\nid = \"{id}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\nhttp = {{ url = \"{url}\"{extra} }}\n"
        ));
    }
    let raw: RawProbeFile = toml::from_str(&text).unwrap();
    let cfg = raw.validate("test").unwrap();

    let before = rss_kib();
    let seen: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let sink = seen.clone();
    let probe =
        outpost_probe::spawn(cfg, Some(Arc::new(move |o| sink.lock().unwrap().push(o)))).unwrap();
    // Real time: the hostile peers hold real connections open. Under their
    // load until each has failed twice.
    eventually(
        "two runs of every hostile check",
        Duration::from_secs(10),
        || async {
            let outcomes = seen.lock().unwrap();
            hostile
                .iter()
                .all(|(id, _, _)| outcomes.iter().filter(|o| o.check_id == *id).count() >= 2)
        },
    )
    .await;
    let grown = rss_kib().saturating_sub(before);
    probe.shutdown().await;

    let outcomes = seen.lock().unwrap();
    let healthy_runs: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.check_id == "healthy")
        .collect();
    // Meanwhile the healthy check ran in every one of its 100 ms slots, the
    // next one each time (slots `offset + k·100 ms`, see `scheduler.rs`):
    // none skipped, up to 95 ms late.
    assert!(
        healthy_runs.len() >= 10,
        "{} healthy runs",
        healthy_runs.len()
    );
    let offset = outpost_probe::scheduler::jitter("local", "healthy", Duration::from_millis(100));
    let slots: Vec<i128> = healthy_runs
        .iter()
        .map(|o| {
            let ms = o.started_at.unix_timestamp_nanos() / 1_000_000 - offset.as_millis() as i128;
            (ms + 5).div_euclid(100)
        })
        .collect();
    let expected: Vec<i128> = (slots[0]..slots[0] + slots.len() as i128).collect();
    assert_eq!(slots, expected, "slot of each healthy run");
    assert!(healthy_runs.iter().all(|o| o.ok()));
    // Each healthy run finishes well within its interval, hostile peers or not.
    let slowest = healthy_runs.iter().map(|o| o.phases.total).max().unwrap();
    assert!(
        slowest < Duration::from_millis(100),
        "slowest healthy run {slowest:?}"
    );

    let mut codes: HashMap<&str, Vec<FailureCode>> = HashMap::new();
    for o in outcomes.iter().filter(|o| o.check_id != "healthy") {
        codes
            .entry(o.check_id.as_str())
            .or_default()
            .push(o.result.as_ref().unwrap_err().code());
    }
    let want = [
        ("silent", FailureCode::Timeout),
        ("garbage", FailureCode::ProtocolError),
        ("headers", FailureCode::HeadersTooLarge),
        ("announced", FailureCode::BodyTooLarge),
        ("stream", FailureCode::BodyTooLarge),
        ("slow", FailureCode::Timeout),
        ("drip", FailureCode::Timeout),
    ];
    for (id, c) in want {
        let got = codes
            .get(id)
            .unwrap_or_else(|| panic!("{id} never reported"));
        assert!(got.len() >= 2, "{id}: {got:?}");
        assert!(got.iter().all(|g| *g == c), "{id}: {got:?}, want {c}");
    }
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
}

/// A target's 50 KB `Location` does not become a 50 KB result: the
/// recorded message and every string in the details are clipped
/// (`outpost_probe::bound`), with the original length kept.
#[tokio::test]
async fn a_huge_location_is_clipped_in_what_the_probe_records() {
    let target = format!("/{}", "a".repeat(50 * 1024));
    let srv = HttpServer::builder()
        .route("/", Reply::redirect(302, &target))
        .run()
        .await
        .unwrap();
    let (o, _) = timed(&format!(
        "id = \"x\"\nhttp = {{ url = \"{}\" }}",
        srv.url("/")
    ))
    .await;
    let wire = outpost_probe::outbox::to_wire(&o, 1, 1);
    assert!(!wire.ok, "{:?}", o.result);
    assert!(
        wire.failure_message.len() <= outpost_probe::bound::MAX_MESSAGE + 32,
        "{} bytes",
        wire.failure_message.len()
    );
    assert!(
        wire.details_json.len() < 16 * 1024,
        "{} bytes of details",
        wire.details_json.len()
    );
    let details: serde_json::Value = serde_json::from_str(&wire.details_json).unwrap();
    let text = details.to_string();
    assert!(
        text.contains("bytes)"),
        "a clipped value names its length: {text}"
    );
}
