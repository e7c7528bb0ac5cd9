#![allow(clippy::unwrap_used)]
//! The dns check against real authoritative DNS servers on loopback (UDP and
//! TCP) from the test kit, serving zones the tests change while they run.

use std::time::{Duration, Instant};

use crate::support::code;
use outpost_probe::{
    check::{self, CheckSpec, Failure, FailureCode, Outcome, RawCheck, RunContext},
    clock::ManualClock,
    config::Problems,
    resolver::{self, ResolverSpec},
};
use outpost_testkit::{DnsServer, DnsTransport, Rcode, RecordType};
use serde_json::Value;

fn spec(id: &str, timeout: &str, dns: &str) -> CheckSpec {
    let text =
        format!("id = \"{id}\"\ninterval = \"60s\"\ntimeout = \"{timeout}\"\n[dns]\n{dns}\n");
    let raw: RawCheck = toml::from_str(&text).unwrap();
    let mut p = Problems::default();
    let s = raw.validate("check", &mut p);
    p.finish("test").unwrap();
    s.unwrap()
}

async fn run(spec: &CheckSpec) -> Outcome {
    check::run(spec, &RunContext::default()).await
}

/// A run at the time `clock` stands at (change tracking reads it).
async fn run_at(spec: &CheckSpec, clock: &ManualClock) -> Outcome {
    let ctx = RunContext {
        clock: clock.clock(),
        ..RunContext::default()
    };
    check::run(spec, &ctx).await
}

fn resolver(o: &Outcome, i: usize) -> Value {
    o.details()["resolvers"][i].clone()
}

async fn blue_green() -> DnsServer {
    let dns = DnsServer::start().await.unwrap();
    dns.set_cname("www.example.test", "lb.example.test", 300)
        .unwrap();
    dns.set_cname("lb.example.test", "blue.example.test", 120)
        .unwrap();
    dns.set_records(
        "blue.example.test",
        RecordType::A,
        &[(60, "192.0.2.10"), (30, "192.0.2.11")],
    )
    .unwrap();
    dns.set_records("green.example.test", RecordType::A, &[(60, "192.0.2.20")])
        .unwrap();
    dns
}

#[tokio::test]
async fn cname_chain_is_reported_with_its_ttls_and_final_addresses_over_udp_and_tcp() {
    let dns = blue_green().await;
    let s = spec(
        "chain",
        "2s",
        &format!(
            "name = \"www.example.test\"\nresolvers = [\"{}\", \"{}\"]\ncname_target = \"blue.example.test\"\nanswers_equal = [\"192.0.2.11\", \"192.0.2.10\"]\nttl_max = \"5m\"",
            dns.udp_url(),
            dns.tcp_url()
        ),
    );
    let o = run(&s).await;
    assert!(o.ok(), "{:?} {}", o.result, o.details());
    assert_eq!(o.kind, check::Kind::Dns);
    assert_shape_of_fixture(&o.details(), "dns-cname-chain.json");
    for (i, transport) in [(0, "udp"), (1, "tcp")] {
        let r = resolver(&o, i);
        assert_eq!(r["transport"], transport);
        assert_eq!(r["rcode"], "NOERROR");
        let chain = r["cname_chain"].as_array().unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0]["name"], "www.example.test");
        assert_eq!(chain[0]["target"], "lb.example.test");
        assert_eq!(chain[0]["ttl"], 300);
        assert_eq!(chain[1]["target"], "blue.example.test");
        assert_eq!(chain[1]["ttl"], 120);
        assert_eq!(r["final_name"], "blue.example.test");
        let addrs = r["addresses"].as_array().unwrap();
        assert_eq!(addrs[0]["ip"], "192.0.2.10");
        assert_eq!(addrs[0]["ttl"], 60);
        assert_eq!(addrs[1]["ip"], "192.0.2.11");
        assert_eq!(addrs[1]["ttl"], 30, "exact wire TTLs, not clamped");
        assert_eq!(r["min_ttl"], 30);
        assert_eq!(r["fingerprint"].as_str().unwrap().len(), 16);
    }
    assert_eq!(
        resolver(&o, 0)["fingerprint"],
        resolver(&o, 1)["fingerprint"]
    );
    let transports: Vec<DnsTransport> = dns.queries().iter().map(|q| q.transport).collect();
    assert!(transports.contains(&DnsTransport::Udp));
    assert!(transports.contains(&DnsTransport::Tcp));
}

#[tokio::test]
async fn an_out_of_zone_cname_target_is_followed_at_the_same_server() {
    let dns = DnsServer::start().await.unwrap();
    // The zone holds the alias but the server does not chase its target
    // itself when the target is absent; add it under another name later.
    dns.set_cname("api.example.test", "api.cdn.test", 300)
        .unwrap();
    let s = spec(
        "out-of-zone",
        "2s",
        &format!(
            "name = \"api.example.test\"\nresolvers = [\"{}\"]",
            dns.udp_url()
        ),
    );
    let o = run(&s).await;
    // The target does not exist: NXDOMAIN from the follow-up query.
    assert_eq!(code(&o), Some(FailureCode::DnsNxdomain), "{}", o.details());
    dns.set_records("api.cdn.test", RecordType::AAAA, &[(20, "2001:db8::7")])
        .unwrap();
    dns.set_records("api.cdn.test", RecordType::A, &[(20, "192.0.2.7")])
        .unwrap();
    let o = run(&s).await;
    assert!(o.ok(), "{:?} {}", o.result, o.details());
    assert_eq!(resolver(&o, 0)["addresses"][0]["ip"], "192.0.2.7");
}

#[tokio::test]
async fn a_flip_is_detected_with_old_and_new_target() {
    let dns = blue_green().await;
    let s = spec(
        "flip",
        "2s",
        &format!(
            "name = \"www.example.test\"\nresolvers = [\"{}\"]",
            dns.udp_url()
        ),
    );
    let o = run(&s).await;
    assert!(o.ok(), "{:?}", o.result);
    assert!(
        o.details().get("changes").is_none(),
        "first run is a baseline"
    );
    let o = run(&s).await;
    assert!(
        o.details().get("changes").is_none(),
        "same answer, no change"
    );

    dns.set_cname("lb.example.test", "green.example.test", 120)
        .unwrap();
    let o = run(&s).await;
    assert!(o.ok(), "a change alone passes: {:?}", o.result);
    let changes_details = o.details();
    let changes = changes_details["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(c["resolver"], dns.udp_url());
    assert_eq!(c["old"]["cname_target"], "blue.example.test");
    assert_eq!(c["new"]["cname_target"], "green.example.test");
    assert_eq!(c["old_ttl_s"], 300);
    assert!(
        c["old"]["answers"]
            .as_array()
            .unwrap()
            .contains(&Value::from("blue.example.test A 192.0.2.10"))
    );
    assert!(
        c["new"]["answers"]
            .as_array()
            .unwrap()
            .contains(&Value::from("green.example.test A 192.0.2.20"))
    );
    assert_ne!(c["old"]["fingerprint"], c["new"]["fingerprint"]);
    assert!(c["at"].as_str().unwrap().contains('T'));
    // Seen once; the next run is quiet again.
    let o = run(&s).await;
    assert!(o.details().get("changes").is_none());
}

#[tokio::test]
async fn a_lagging_resolver_disagrees_then_stalls_after_old_ttl_plus_grace() {
    let leader = DnsServer::start().await.unwrap();
    let lagging = DnsServer::start().await.unwrap();
    for dns in [&leader, &lagging] {
        dns.set_cname("www.example.test", "blue.example.test", 1)
            .unwrap();
        dns.set_records("blue.example.test", RecordType::A, &[(1, "192.0.2.10")])
            .unwrap();
        dns.set_records("green.example.test", RecordType::A, &[(1, "192.0.2.20")])
            .unwrap();
    }
    let s = spec(
        "lag",
        "1s",
        &format!(
            "name = \"www.example.test\"\nresolvers = [\"{}\", \"{}\"]\npropagation_grace = \"500ms\"",
            leader.udp_url(),
            lagging.tcp_url()
        ),
    );
    // Manual time: the window is measured from the change, to the millisecond.
    let clock = ManualClock::starting_now();
    let o = run_at(&s, &clock).await;
    assert!(o.ok(), "{:?}", o.result);

    leader
        .set_cname("www.example.test", "green.example.test", 1)
        .unwrap();
    let o = run_at(&s, &clock).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::DnsResolversDisagree),
        "{}",
        o.details()
    );
    assert_eq!(o.details()["changes"][0]["resolver"], leader.udp_url());
    let groups_details = o.details();
    let groups = groups_details["disagreement"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["resolvers"][0], leader.udp_url());
    assert_eq!(
        groups[0]["answer_set"]["cname_target"],
        "green.example.test"
    );
    assert_eq!(groups[1]["resolvers"][0], lagging.tcp_url());
    assert_eq!(groups[1]["answer_set"]["cname_target"], "blue.example.test");
    let p_details = o.details();
    let p = &p_details["propagation"];
    assert_eq!(p["stalled"], false);
    assert_eq!(p["window_ms"], 1500);
    assert_eq!(p["lagging"][0]["resolver"], lagging.tcp_url());

    // Up to old TTL (1 s) plus grace (500 ms) it is only a disagreement...
    clock.advance(Duration::from_millis(1500));
    let o = run_at(&s, &clock).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::DnsResolversDisagree),
        "{}",
        o.details()
    );
    assert_eq!(o.details()["propagation"]["stalled"], false);
    // ...and past that the lagging resolver is named.
    clock.advance(Duration::from_millis(1));
    let o = run_at(&s, &clock).await;
    assert_eq!(
        code(&o),
        Some(FailureCode::DnsPropagationStalled),
        "{}",
        o.details()
    );
    let Some(Failure::DnsPropagationStalled {
        leader: named_leader,
        lagging: laggards,
        ..
    }) = o.result.as_ref().err()
    else {
        panic!("{:?}", o.result)
    };
    assert_eq!(named_leader, &leader.udp_url());
    assert_eq!(laggards[0].resolvers, vec![lagging.tcp_url()]);
    let p_details = o.details();
    let p = &p_details["propagation"];
    assert_eq!(p["stalled"], true);
    assert_eq!(p["leader"], leader.udp_url());
    assert_eq!(p["old"]["cname_target"], "blue.example.test");
    assert_eq!(p["new"]["cname_target"], "green.example.test");
    assert_eq!(p["lagging"][0]["lagging_for_ms"], 1501);

    // It catches up: agreement again, and its change is reported.
    lagging
        .set_cname("www.example.test", "green.example.test", 1)
        .unwrap();
    let o = run_at(&s, &clock).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["changes"][0]["resolver"], lagging.tcp_url());
    assert!(o.details().get("propagation").is_none());
}

#[tokio::test]
async fn resolvers_agree_false_allows_different_answers() {
    let a = DnsServer::start().await.unwrap();
    let b = DnsServer::start().await.unwrap();
    a.set_records("geo.example.test", RecordType::A, &[(60, "192.0.2.1")])
        .unwrap();
    b.set_records("geo.example.test", RecordType::A, &[(60, "198.51.100.1")])
        .unwrap();
    let s = spec(
        "geo",
        "2s",
        &format!(
            "name = \"geo.example.test\"\nresolvers = [\"{}\", \"{}\"]\nresolvers_agree = false",
            a.udp_url(),
            b.udp_url()
        ),
    );
    let o = run(&s).await;
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["disagreement"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn nxdomain_servfail_refused_and_silence_each_have_their_code_within_the_timeout() {
    let dns = DnsServer::start().await.unwrap();
    dns.set_rcode("broken.example.test", Rcode::ServFail);
    dns.set_rcode("closed.example.test", Rcode::Refused);
    for (name, want) in [
        ("missing.example.test", FailureCode::DnsNxdomain),
        ("broken.example.test", FailureCode::DnsServfail),
        ("closed.example.test", FailureCode::DnsRefused),
    ] {
        let s = spec(
            &format!("rcode-{name}"),
            "1s",
            &format!("name = \"{name}\"\nresolvers = [\"{}\"]", dns.udp_url()),
        );
        let o = run(&s).await;
        assert_eq!(code(&o), Some(want), "{name}: {}", o.details());
    }
    // NXDOMAIN can be the expectation.
    let s = spec(
        "gone",
        "1s",
        &format!(
            "name = \"missing.example.test\"\nrcode = \"NXDOMAIN\"\nresolvers = [\"{}\"]",
            dns.udp_url()
        ),
    );
    assert!(run(&s).await.ok());
    let s = spec(
        "not-gone",
        "1s",
        &format!(
            "name = \"broken.example.test\"\nrcode = \"NXDOMAIN\"\nresolvers = [\"{}\"]",
            dns.udp_url()
        ),
    );
    assert_eq!(code(&run(&s).await), Some(FailureCode::DnsServfail));

    dns.set_records("up.example.test", RecordType::A, &[(60, "192.0.2.1")])
        .unwrap();
    dns.set_silent(true);
    for (i, url) in [dns.udp_url(), dns.tcp_url()].into_iter().enumerate() {
        let s = spec(
            &format!("silent-{i}"),
            "700ms",
            &format!("name = \"up.example.test\"\nresolvers = [\"{url}\"]"),
        );
        let t = Instant::now();
        let o = run(&s).await;
        let took = t.elapsed();
        assert_eq!(
            code(&o),
            Some(FailureCode::DnsTimeout),
            "{url}: {}",
            o.details()
        );
        assert!(
            took >= Duration::from_millis(650) && took < Duration::from_millis(1500),
            "{url}: {took:?}"
        );
    }
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp() {
    let dns = blue_green().await;
    dns.set_truncate_udp(true);
    let s = spec(
        "tc",
        "2s",
        &format!(
            "name = \"www.example.test\"\nresolvers = [\"{}\"]",
            dns.udp_url()
        ),
    );
    let o = run(&s).await;
    assert!(o.ok(), "{:?} {}", o.result, o.details());
    let r = resolver(&o, 0);
    assert_eq!(r["transport"], "tcp");
    assert_eq!(r["truncated_retried"], true);
    assert_eq!(r["addresses"].as_array().unwrap().len(), 2);
    let log = dns.queries();
    assert_eq!(log[0].transport, DnsTransport::Udp);
    assert!(
        log.iter()
            .any(|q| q.transport == DnsTransport::Tcp && q.name == "www.example.test")
    );
}

#[tokio::test]
async fn truncation_without_a_working_tcp_retry_is_dns_truncated() {
    use hickory_proto::op::Message;
    // A UDP-only responder that truncates everything; nothing listens on TCP.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let responder = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.queries = q.queries.clone();
            r.metadata.truncation = true;
            sock.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
        }
    });
    let s = spec(
        "tc-fail",
        "1s",
        &format!("name = \"www.example.test\"\nresolvers = [\"udp://{addr}\"]"),
    );
    let o = run(&s).await;
    responder.abort();
    assert_eq!(code(&o), Some(FailureCode::DnsTruncated), "{}", o.details());
}

#[tokio::test]
async fn answer_cname_ttl_and_count_assertions_have_their_codes() {
    let dns = blue_green().await;
    let base = format!(
        "name = \"www.example.test\"\nresolvers = [\"{}\"]\n",
        dns.udp_url()
    );
    for (id, extra, want) in [
        (
            "contain",
            "answers_contain = [\"192.0.2.99\"]",
            FailureCode::DnsAnswerMismatch,
        ),
        (
            "equal",
            "answers_equal = [\"192.0.2.10\"]",
            FailureCode::DnsAnswerMismatch,
        ),
        (
            "cname",
            "cname_target = \"green.example.test\"",
            FailureCode::DnsCnameMismatch,
        ),
        (
            "ttl-min",
            "ttl_min = \"45s\"",
            FailureCode::DnsTtlOutOfBounds,
        ),
        (
            "ttl-max",
            "ttl_max = \"200s\"",
            FailureCode::DnsTtlOutOfBounds,
        ),
        ("count", "min_answers = 3", FailureCode::DnsTooFewAnswers),
    ] {
        let s = spec(&format!("assert-{id}"), "2s", &format!("{base}{extra}"));
        let o = run(&s).await;
        assert_eq!(code(&o), Some(want), "{id}: {}", o.details());
        assert_eq!(resolver(&o, 0)["failure_code"], want.as_str());
    }
    // NODATA: the name exists without the type.
    let s = spec(
        "nodata",
        "2s",
        &format!(
            "name = \"blue.example.test\"\ntype = \"MX\"\nresolvers = [\"{}\"]",
            dns.udp_url()
        ),
    );
    assert_eq!(code(&run(&s).await), Some(FailureCode::DnsTooFewAnswers));
}

#[tokio::test]
async fn every_query_type_round_trips() {
    let dns = DnsServer::start().await.unwrap();
    let cases: &[(&str, RecordType, &str, &str)] = &[
        ("a.example.test", RecordType::A, "192.0.2.1", "192.0.2.1"),
        (
            "a.example.test",
            RecordType::AAAA,
            "2001:db8:0::1",
            "2001:db8::1",
        ),
        (
            "alias.example.test",
            RecordType::CNAME,
            "a.example.test.",
            "a.example.test",
        ),
        (
            "example.test",
            RecordType::MX,
            "10 mail.example.test.",
            "10 mail.example.test",
        ),
        (
            "example.test",
            RecordType::TXT,
            "v=spf1 -all",
            "v=spf1 -all",
        ),
        (
            "_https._tcp.example.test",
            RecordType::SRV,
            "10 5 443 a.example.test.",
            "10 5 443 a.example.test",
        ),
        (
            "example.test",
            RecordType::CAA,
            "0 issue \"letsencrypt.org\"",
            "0 issue \"letsencrypt.org\"",
        ),
        (
            "example.test",
            RecordType::SOA,
            "ns1.example.test. hostmaster.example.test. 2024010101 7200 3600 1209600 300",
            "ns1.example.test hostmaster.example.test 2024010101 7200 3600 1209600 300",
        ),
        (
            "example.test",
            RecordType::NS,
            "ns1.example.test.",
            "ns1.example.test",
        ),
    ];
    for (name, rtype, served, _) in cases {
        dns.set_records(name, *rtype, &[(3600, served)]).unwrap();
    }
    for (i, (name, rtype, _, canonical)) in cases.iter().enumerate() {
        let s = spec(
            &format!("type-{i}"),
            "2s",
            &format!(
                "name = \"{name}\"\ntype = \"{rtype}\"\nresolvers = [\"{}\"]\nanswers_equal = ['{canonical}']",
                dns.udp_url()
            ),
        );
        let o = run(&s).await;
        assert!(o.ok(), "{rtype}: {:?} {}", o.result, o.details());
        let answers = resolver(&o, 0)["answers"].as_array().unwrap().clone();
        assert_eq!(answers.len(), 1, "{rtype}");
        assert_eq!(answers[0]["type"], rtype.to_string());
        assert_eq!(answers[0]["data"], *canonical);
        assert_eq!(answers[0]["ttl"], 3600);
    }
}

#[tokio::test]
async fn lookup_ips_returns_every_address_through_a_named_resolver() {
    let dns = blue_green().await;
    dns.set_records(
        "blue.example.test",
        RecordType::AAAA,
        &[(60, "2001:db8::10")],
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for url in [dns.udp_url(), dns.tcp_url()] {
        let r: ResolverSpec = url.parse().unwrap();
        let (ips, took) = resolver::lookup_ips("www.example.test", &r, deadline)
            .await
            .unwrap();
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["192.0.2.10", "192.0.2.11", "2001:db8::10"]);
        assert!(took < Duration::from_secs(2));
    }
    let r: ResolverSpec = dns.udp_url().parse().unwrap();
    let err = resolver::lookup_ips("nope.example.test", &r, deadline)
        .await
        .unwrap_err();
    assert_eq!(err.code(), FailureCode::DnsNxdomain);
    let (ips, _) = resolver::lookup_ips("[::1]", &r, deadline).await.unwrap();
    assert_eq!(ips, ["::1".parse::<std::net::IpAddr>().unwrap()]);
}

#[tokio::test]
async fn a_closed_resolver_port_is_connection_refused_not_a_timeout() {
    // Bind and drop to find a port nobody listens on.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    for (i, scheme) in ["udp", "tcp"].into_iter().enumerate() {
        let s = spec(
            &format!("closed-port-{i}"),
            "2s",
            &format!("name = \"www.example.test\"\nresolvers = [\"{scheme}://127.0.0.1:{port}\"]"),
        );
        let t = Instant::now();
        let o = run(&s).await;
        assert_eq!(
            code(&o),
            Some(FailureCode::ConnectionRefused),
            "{scheme}: {}",
            o.details()
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{scheme}");
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
