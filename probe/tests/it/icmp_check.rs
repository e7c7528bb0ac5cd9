//! The icmp check against 127.0.0.1 (and ::1): echo replies, loss and RTT
//! statistics, RTT budgets, and the socket permission rules. When this
//! machine permits no ICMP socket at all the live tests print why and skip.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::run;
use outpost_probe::check::{Failure, FailureCode, Outcome, RawCheck};

/// Prints the reason and returns `None` when no ICMP socket may be opened here.
fn permitted(o: Outcome) -> Option<Outcome> {
    if let Err(f @ Failure::IcmpNotPermitted { .. }) = &o.result {
        eprintln!("skipping: {f}");
        return None;
    }
    Some(o)
}

#[tokio::test]
async fn echoes_to_loopback_give_loss_and_rtt_percentiles() {
    let Some(o) = permitted(
        run("id = \"p\"\ntimeout = \"3s\"\nicmp = { host = \"127.0.0.1\", count = 5, request_interval = \"20ms\" }").await,
    ) else {
        return;
    };
    assert!(o.ok(), "{:?}", o.result);
    let d = o.details();
    assert_eq!(
        (d["sent"].as_u64(), d["received"].as_u64()),
        (Some(5), Some(5)),
        "{d}"
    );
    assert_eq!(d["loss"], 0.0);
    let rtt = &d["rtt_us"];
    let (min, p50, p90, max) = (
        rtt["min"].as_u64().unwrap(),
        rtt["p50"].as_u64().unwrap(),
        rtt["p90"].as_u64().unwrap(),
        rtt["max"].as_u64().unwrap(),
    );
    assert!(
        min <= p50 && p50 <= p90 && p90 <= max && max < 1_000_000,
        "{rtt}"
    );
    assert!(
        ["raw", "dgram"].contains(&d["socket"].as_str().unwrap()),
        "{d}"
    );
    let replies = d["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 5);
    assert!(replies.iter().all(|r| r["rtt_us"].is_u64()));
}

#[tokio::test]
async fn an_rtt_budget_fails_with_the_percentile_named() {
    let Some(o) = permitted(
        run("id = \"p\"\nicmp = { host = \"127.0.0.1\", count = 2, request_interval = \"10ms\", max_rtt = \"0ms\" }").await,
    ) else {
        return;
    };
    let Err(Failure::LatencyBudgetExceeded { phase, .. }) = &o.result else {
        panic!("{:?}", o.result)
    };
    assert_eq!(phase, "rtt_max");
}

#[tokio::test]
async fn ipv6_loopback_answers_too() {
    if !std::path::Path::new("/proc/net/if_inet6").exists() {
        eprintln!("skipping: no IPv6 on this machine");
        return;
    }
    let Some(o) = permitted(
        run("id = \"p\"\nicmp = { host = \"::1\", count = 2, request_interval = \"10ms\" }").await,
    ) else {
        return;
    };
    assert!(o.ok(), "{:?}", o.result);
    assert_eq!(o.details()["address"], "::1");
}

/// `socket = "dgram"` is permitted exactly when this process's group is in
/// `net.ipv4.ping_group_range`; otherwise the failure says so and names the fix.
#[tokio::test]
async fn a_ping_socket_follows_ping_group_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let mut bounds = range.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    let (lo, hi) = (bounds.next().unwrap(), bounds.next().unwrap());
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let gid: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("Gid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let o = run("id = \"p\"\nicmp = { host = \"127.0.0.1\", count = 1, socket = \"dgram\" }").await;
    if (lo..=hi).contains(&gid) {
        assert!(o.ok(), "{:?}", o.result);
        assert_eq!(o.details()["socket"], "dgram");
    } else {
        let f = o.result.unwrap_err();
        assert_eq!(f.code(), FailureCode::IcmpNotPermitted);
        let Failure::IcmpNotPermitted {
            dgram: Some(_),
            raw: None,
        } = &f
        else {
            panic!("{f:?}")
        };
        assert!(f.to_string().contains("net.ipv4.ping_group_range"), "{f}");
    }
}

#[tokio::test]
async fn requests_stay_within_the_deadline() {
    let started = std::time::Instant::now();
    let Some(o) = permitted(
        run("id = \"p\"\ntimeout = \"500ms\"\nicmp = { host = \"127.0.0.1\", count = 4, request_interval = \"100ms\", reply_timeout = \"5s\" }").await,
    ) else {
        return;
    };
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(o.ok(), "{:?}", o.result);
}

#[test]
fn invalid_icmp_configs_name_the_offending_key() {
    let cases = [
        ("host = \"127.0.0.1\", count = 0", "checks[0].icmp.count"),
        (
            "host = \"127.0.0.1\", max_loss = 1.5",
            "checks[0].icmp.max_loss",
        ),
        (
            "host = \"127.0.0.1\", request_interval = \"1ms\"",
            "checks[0].icmp.request_interval",
        ),
        (
            "host = \"127.0.0.1\", count = 50, request_interval = \"1s\"",
            "checks[0].icmp.request_interval",
        ),
        (
            "host = \"127.0.0.1\", payload_size = 5000",
            "checks[0].icmp.payload_size",
        ),
        ("host = \"\"", "checks[0].icmp.host"),
    ];
    for (body, path) in cases {
        let raw: RawCheck = toml::from_str(&format!("id = \"p\"\nicmp = {{ {body} }}\n")).unwrap();
        let mut p = outpost_probe::config::Problems::default();
        assert!(raw.validate("checks[0]", &mut p).is_none(), "{body}");
        assert!(
            format!("{p:?}").contains(&format!("\"{path}\"")),
            "{body}: {p:?}"
        );
    }
}
