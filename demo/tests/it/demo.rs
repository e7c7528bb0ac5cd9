//! `outpost-demo --for 20s` exits 0 and its summary shows the
//! incidents it replays detected.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn demo_for_20s_detects_the_replayed_incidents() {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost-demo"))
        .args(["--for", "20s", "--listen", "127.0.0.1:0"])
        .env_remove("OUTPOST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(id))
            .unwrap_or_default()
            .to_owned()
    };
    // Healthy API green in every region.
    let api = line("api-healthy");
    assert!(
        api.contains("OK") && !api.contains("FAILING") && !api.contains("STALE"),
        "{api}"
    );
    // The IOT 308 seen by a machine client, from every region.
    let ingest = line("iot-ingest-308");
    assert_eq!(
        ingest.matches("FAILING (redirect_not_followed)").count(),
        3,
        "{ingest}"
    );
    // The TIS pair: one backend of two failing, named.
    let lb = line("tis-lb-pair");
    assert!(lb.contains("FAILING"), "{lb}");
    assert!(
        stdout.contains("1 of 2 backends failing: 127.0.0.2:"),
        "{stdout}"
    );
    // HTTPS → HTTP login redirect, and data 17 hours stale behind a 200.
    assert!(
        line("api-login-downgrade").contains("FAILING (redirect_downgrade)"),
        "{stdout}"
    );
    assert!(
        line("iot-data-fresh").contains("FAILING (data_stale)"),
        "{stdout}"
    );
    // The CNAME flip: the lagging resolver is seen, the app recovers through the primary.
    let cname = line("shop-cname");
    assert!(
        cname.contains("dns_resolvers_disagree") || cname.contains("dns_propagation_stalled"),
        "{cname}"
    );
    // AddTrust: legacy clients fail on the expired cross-sign, modern ones pass.
    let addtrust = line("logdna-addtrust");
    assert!(
        addtrust.contains("FAILING (tls_cert_expired)"),
        "{addtrust}"
    );
    assert!(
        stdout.contains("legacy/old-and-new: tls_cert_expired"),
        "{stdout}"
    );
    // Vendor B: the client that never renews is paged with session_expired; the renewing one stays green.
    assert!(stdout.contains("vendor-b-never failing from"), "{stdout}");
    let renewing = line("vendor-b-renewing");
    assert!(
        renewing.contains("OK") && !renewing.contains("FAILING"),
        "{renewing}"
    );
    // The IOT ETL heartbeat: pinged, then silent → missed, from the controller's own region.
    let etl = line("iot-etl-heartbeat");
    assert!(etl.contains("FAILING (heartbeat_missed)"), "{etl}");
    // Vendor A: a TLS 1.3-only server; the OpenSSL 1.0.2-class client cannot handshake.
    let vendor_a = line("vendor-a-tls13");
    assert!(
        vendor_a.contains("FAILING (tls_protocol_unsupported)"),
        "{vendor_a}"
    );
    assert!(
        stdout.contains("legacy/demo: tls_protocol_unsupported"),
        "{stdout}"
    );
    // Both alerts raised, the healthy API not.
    let alerts: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Alerts raised"))
        .collect();
    assert!(
        alerts
            .iter()
            .any(|l| l.contains("iot-ingest-308 failing from")),
        "{stdout}"
    );
    assert!(
        alerts
            .iter()
            .any(|l| l.contains("tis-lb-pair failing from")),
        "{stdout}"
    );
    assert!(
        alerts
            .iter()
            .any(|l| l.contains("iot-etl-heartbeat failing from")),
        "{stdout}"
    );
    assert!(
        !alerts.iter().any(|l| l.contains("api-healthy")),
        "{stdout}"
    );
}
