//! Bounds on what a probe sends (`[server.probe_limits]`): each violation
//! gets a status naming the limit, is counted by reason and stores nothing;
//! one stream per probe.

#![allow(clippy::unwrap_used)]

use crate::support::*;
use outpost_proto::v1::{
    ProbeMessage, ResultBatch, controller_message::Body as CBody, probe_message::Body as PBody,
};

const LIMITS: &str = "[server.probe_limits]\nmax_batch_results = 500\nresults_burst = 600\nresults_per_second = 1\nmax_message_size = \"64KiB\"\nmax_failure_message = \"1KiB\"\n";

fn batch(results: Vec<outpost_proto::v1::CheckResult>) -> ProbeMessage {
    ProbeMessage {
        body: Some(PBody::Results(ResultBatch { results })),
    }
}

fn violations(ctl: &outpost_controller::RunningController, reason: &str) -> f64 {
    ctl.controller().metrics().get(
        "outpost_probe_limit_violations_total",
        &[("reason", reason)],
    )
}

/// The status that ends `inbound` (an error, not a clean end).
async fn ending_status(
    inbound: &mut tonic::Streaming<outpost_proto::v1::ControllerMessage>,
) -> tonic::Status {
    loop {
        match tokio::time::timeout(WAIT, inbound.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => return status,
            Err(_) => panic!("the stream did not end within {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn oversized_batch_rate_message_and_labels_are_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{LIMITS}",
        config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", API_CHECK)
    );
    let ctl = start(&text).await;
    let store = ctl.store();

    // Labels: too many, then one too large; the hello is refused before
    // the probe is recorded.
    for labels in [
        (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect(),
        [("az".to_owned(), "x".repeat(300))].into_iter().collect(),
    ] {
        let mut h = hello("eu-west-1");
        if let Some(PBody::Hello(ref mut inner)) = h.body {
            inner.labels = labels;
        }
        let (_tx, mut inbound) = attach(ctl.grpc_addr(), Some(token("eu-west-1")), vec![h])
            .await
            .unwrap();
        let status = ending_status(&mut inbound).await;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("server.probe_limits.max_label"),
            "{status:?}"
        );
    }
    assert!(store.probes().await.unwrap().is_empty());
    assert_eq!(violations(&ctl, "labels"), 2.0);

    // A batch over max_batch_results: RESOURCE_EXHAUSTED, nothing stored.
    let mut p =
        FakeProbe::connect(ctl.grpc_addr(), "eu-west-1", "eu-west", token("eu-west-1")).await;
    p.assignment().await;
    let big: Vec<_> = (0..501).map(|_| p.result("api-health", true)).collect();
    p.tx.send(batch(big)).await.unwrap();
    let status = ending_status(&mut p.inbound).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_batch_results = 500"),
        "{status:?}"
    );
    assert_eq!(store.count_results().await.unwrap(), 0);
    assert_eq!(violations(&ctl, "batch_results"), 1.0);

    // The token bucket (burst 600, 1/s, kept across reconnects): 500 pass,
    // the next 500 do not.
    let mut p =
        FakeProbe::connect(ctl.grpc_addr(), "eu-west-1", "eu-west", token("eu-west-1")).await;
    p.assignment().await;
    let ok: Vec<_> = (0..500).map(|_| p.result("api-health", true)).collect();
    assert_eq!(p.send(ok).await.stored, 500);
    let more: Vec<_> = (0..500).map(|_| p.result("api-health", true)).collect();
    p.tx.send(batch(more)).await.unwrap();
    let status = ending_status(&mut p.inbound).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("results_per_second = 1"),
        "{status:?}"
    );
    assert_eq!(store.count_results().await.unwrap(), 500);
    assert_eq!(violations(&ctl, "rate"), 1.0);

    // One message over max_message_size (64 KiB): refused by the decoder.
    let mut p =
        FakeProbe::connect(ctl.grpc_addr(), "us-east-1", "us-east", token("us-east-1")).await;
    p.assignment().await;
    let mut huge = p.result("api-health", true);
    huge.details_json = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    p.tx.send(batch(vec![huge])).await.unwrap();
    let status = ending_status(&mut p.inbound).await;
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    assert!(status.message().contains("too large"), "{status:?}");
    eventually("the message_size violation counted", WAIT, || async {
        violations(&ctl, "message_size") == 1.0
    })
    .await;
    assert_eq!(store.count_results().await.unwrap(), 500);

    // A failure message over max_failure_message: that result is skipped
    // (acked, so it is not resent forever) and reported in-band.
    let mut p =
        FakeProbe::connect(ctl.grpc_addr(), "us-east-1", "us-east", token("us-east-1")).await;
    p.assignment().await;
    let mut long = p.result("api-health", false);
    long.failure_message = "m".repeat(2048);
    let fine = p.result("api-health", false);
    p.tx.send(batch(vec![long, fine])).await.unwrap();
    let mut told = false;
    loop {
        match p.next().await.body {
            Some(CBody::Error(e)) => {
                assert_eq!(e.code, "limit_exceeded");
                assert!(e.message.contains("max_failure_message"), "{e:?}");
                told = true;
            }
            Some(CBody::Ack(a)) => {
                assert_eq!((a.stored, a.through_sequence), (1, 2));
                break;
            }
            _ => {}
        }
    }
    assert!(told, "the skipped result is reported before the ack");
    assert_eq!(store.count_results().await.unwrap(), 501);
    assert_eq!(violations(&ctl, "failure_message"), 1.0);
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_second_stream_for_the_same_probe_replaces_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        API_CHECK,
    ))
    .await;
    let mut first =
        FakeProbe::connect(ctl.grpc_addr(), "eu-west-1", "eu-west", token("eu-west-1")).await;
    first.assignment().await;
    first.report("api-health", true, 1).await;
    let mut second =
        FakeProbe::connect(ctl.grpc_addr(), "eu-west-1", "eu-west", token("eu-west-1")).await;
    second.assignment().await;
    let status = ending_status(&mut first.inbound).await;
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("replaced by a newer stream"),
        "{status:?}"
    );
    // The new stream works, the probe stays connected, one stream is open.
    second.seq = first.seq;
    second.report("api-health", true, 1).await;
    assert_eq!(ctl.store().count_results().await.unwrap(), 2);
    let reg = ctl.controller().registry();
    eventually("one stream open", WAIT, || async { reg.connected() == 1 }).await;
    let probes = ctl.store().probes().await.unwrap();
    assert!(
        probes.iter().any(|p| p.name == "eu-west-1" && p.connected),
        "{probes:?}"
    );
    assert_eq!(
        ctl.controller()
            .metrics()
            .get("outpost_probe_streams_replaced_total", &[]),
        1.0
    );
    ctl.shutdown().await;
}
