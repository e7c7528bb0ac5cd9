#![allow(clippy::unwrap_used)]
//! DNS answer changes become events: fake probes send dns results with
//! `details.changes` over real gRPC; the same change seen from three regions
//! is one event listing them; the API, the status page and the check page
//! show old → new.

use crate::support::*;
use outpost_proto::v1::CheckResult;
use serde_json::{Value, json};

const DNS_CHECK: &str = "[[checks]]\nid = \"app-dns\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
dns = { name = \"app.example.com\", type = \"A\", resolvers = [\"udp://10.0.0.53:53\", \"udp://10.0.0.54:53\"] }\n\
[[checks]]\nid = \"other-dns\"\ninterval = \"30s\"\ntimeout = \"5s\"\ndns = { name = \"other.example.com\" }\n";

fn set(target: &str, ip: &str, fp: &str) -> Value {
    json!({
        "rcode": "NOERROR", "cname_target": target,
        "answers": [format!("{target} A {ip}"), format!("app.example.com CNAME {target}")],
        "fingerprint": fp
    })
}

fn change(resolver: &str, old: Value, new: Value) -> Value {
    json!({ "resolver": resolver, "at": "2030-01-01T00:00:00Z", "old_ttl_s": 300, "old": old, "new": new })
}

fn dns_result(p: &mut FakeProbe, changes: Vec<Value>) -> CheckResult {
    let mut r = p.result("app-dns", true);
    r.kind = "dns".into();
    r.details_json =
        json!({ "name": "app.example.com", "type": "A", "resolvers": [], "changes": changes })
            .to_string();
    r
}

fn blue() -> Value {
    set("blue.example.com", "10.0.0.1", "fp-blue")
}

fn green() -> Value {
    set("green.example.com", "10.0.0.2", "fp-green")
}

#[tokio::test]
async fn one_change_seen_from_three_regions_is_one_event_and_flips_are_each_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&config_text(
        &dir.path().join("o.db"),
        "http://127.0.0.1:9",
        DNS_CHECK,
    ))
    .await;
    let mut p = Vec::new();
    for (name, _, _) in PROBES {
        let mut probe = connect(ctl.grpc_addr(), name).await;
        probe.assignment().await;
        p.push(probe);
    }
    let a = "udp://10.0.0.53:53";
    // The flip, reported by every region (and resent once by the first).
    let first = dns_result(&mut p[0], vec![change(a, blue(), green())]);
    assert_eq!(p[0].send(vec![first.clone()]).await.stored, 1);
    assert_eq!(p[0].send(vec![first]).await.duplicates, 1);
    for probe in p.iter_mut().skip(1) {
        let r = dns_result(probe, vec![change(a, blue(), green())]);
        probe.send(vec![r]).await;
    }
    let body = get_json(ctl.http_addr(), "/api/v1/events?check=app-dns").await;
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{body:#}");
    let e = &events[0];
    assert_eq!(e["kind"], "dns_change");
    assert_eq!(e["check_id"], "app-dns");
    assert_eq!(
        e["title"],
        "app.example.com A: CNAME blue.example.com → green.example.com on udp://10.0.0.53:53"
    );
    assert_eq!(e["regions"], json!(["eu-west", "us-east", "ap-south"]));
    assert_eq!(e["probes"], json!(["eu-west-1", "us-east-1", "ap-south-1"]));
    assert_eq!(e["resolver"], a);
    assert_eq!(e["old"]["cname_target"], "blue.example.com");
    assert_eq!(e["new"]["cname_target"], "green.example.com");
    assert_eq!(e["detail"]["old_ttl_s"], 300);

    // Another resolver follows: its own event. Then a flip back and forth
    // from eu-west: each flip is an event, even within the merge window.
    let r = dns_result(
        &mut p[1],
        vec![change("udp://10.0.0.54:53", blue(), green())],
    );
    p[1].send(vec![r]).await;
    let r = dns_result(&mut p[0], vec![change(a, green(), blue())]);
    p[0].send(vec![r]).await;
    let r = dns_result(&mut p[0], vec![change(a, blue(), green())]);
    p[0].send(vec![r]).await;
    let body = get_json(ctl.http_addr(), "/api/v1/events?check=app-dns").await;
    let titles: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 4, "{titles:#?}");
    assert!(titles[0].contains("blue.example.com → green.example.com on udp://10.0.0.53:53"));
    assert!(titles[1].contains("green.example.com → blue.example.com"));
    assert!(titles[2].contains("udp://10.0.0.54:53"));
    let limited = get_json(ctl.http_addr(), "/api/v1/events?check=app-dns&limit=2").await;
    assert_eq!(limited["events"].as_array().unwrap().len(), 2);
    let other = get_json(ctl.http_addr(), "/api/v1/events?check=other-dns").await;
    assert_eq!(other["events"], json!([]));
    let all = get_json(ctl.http_addr(), "/api/v1/events").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 4);
    let (status, _) = get(ctl.http_addr(), "/api/v1/events?limt=2").await;
    assert_eq!(status, 400, "unknown query keys are refused");

    // The status page lists recent changes; the check page shows old → new.
    let (_, index) = get(ctl.http_addr(), "/").await;
    assert!(index.contains("Recent changes"), "{index}");
    assert!(
        index.contains("CNAME blue.example.com → green.example.com on udp://10.0.0.53:53"),
        "{index}"
    );
    let (status, page) = get(ctl.http_addr(), "/checks/app-dns").await;
    assert_eq!(status, 200);
    assert!(page.contains("Changes"), "{page}");
    assert!(page.contains("CNAME <b>blue.example.com</b>"), "{page}");
    assert!(page.contains("CNAME <b>green.example.com</b>"), "{page}");
    assert!(page.contains("eu-west, us-east, ap-south"), "{page}");

    // The check API carries the check's events too.
    let detail = get_json(ctl.http_addr(), "/api/v1/checks/app-dns").await;
    assert_eq!(detail["events"].as_array().unwrap().len(), 4);
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_route_listing_dns_change_gets_one_info_notification_per_change_and_pagerduty_none() {
    let pager = outpost_testkit::PagerReceiver::start(ROUTING_KEY)
        .await
        .unwrap();
    let hook = outpost_testkit::WebhookReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The default route (PagerDuty + console) carries alert kinds only.
    let extra = format!(
        "[[sinks]]\nname = \"changes\"\nwebhook = {{ url = \"{}\" }}\n\
         [[routes]]\nname = \"dns-changes\"\nsinks = [\"changes\"]\nkinds = [\"dns_change\"]\n",
        hook.url()
    );
    let checks = format!("{DNS_CHECK}{extra}");
    let (ctl, clock) = start_manual(&config_text(
        &dir.path().join("o.db"),
        &pager.url(),
        &checks,
    ))
    .await;
    let mut p = Vec::new();
    for (name, _, _) in PROBES {
        let mut probe = connect(ctl.grpc_addr(), name).await;
        probe.assignment().await;
        p.push(probe);
    }
    for probe in p.iter_mut() {
        let r = dns_result(probe, vec![change("udp://10.0.0.53:53", blue(), green())]);
        probe.send(vec![r]).await;
    }
    let bodies = hook.wait_for_bodies(1, WAIT).await;
    settle(&ctl, &clock).await;
    assert_eq!(hook.bodies().len(), 1, "{:#?}", hook.bodies());
    let b = &bodies[0];
    assert_eq!(b["event"], "info");
    assert_eq!(b["kind"], "dns_change");
    assert_eq!(b["severity"], "info");
    assert_eq!(b["check_id"], "app-dns");
    assert_eq!(
        b["summary"],
        "app.example.com A: CNAME blue.example.com → green.example.com on udp://10.0.0.53:53"
    );
    assert_eq!(b["details"]["new"]["cname_target"], "green.example.com");
    assert_eq!(pager.attempts(), 0, "a DNS change never pages");
    ctl.shutdown().await;
}
