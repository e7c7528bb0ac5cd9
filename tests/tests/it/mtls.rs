//! Per-probe mutual TLS, end to end on loopback with real TLS: a controller
//! with a probe CA (`outpost-controller ca init`'s code) and a probe that
//! has only a one-time enrollment token. Enrollment → mTLS stream → results
//! stored → renewal at half life on a shared manual clock (new serial, new
//! key, the stream reconnects with it) → the inventory API lists the
//! controller's certificate and the probe's → the probe is removed from the
//! config and its certificate is refused. Beside it: a reused and an expired
//! enrollment token are refused, and a certificate from another CA fails
//! the handshake.

#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use outpost_controller::{ManualClock, identity};
use outpost_e2e::Fleet;
use outpost_probe::{RunningProbe, config::RawProbeFile};
use outpost_testkit::{HttpServer, Reply, client, wait::eventually};

const WAIT: Duration = Duration::from_secs(20);
const PROBE: &str = "probe-eu";

fn controller_toml(
    fleet: &Fleet,
    tls: &(String, String),
    ca: &Path,
    target: &str,
    with_probe: bool,
) -> String {
    let d = fleet.dir.path();
    let probes = if with_probe {
        format!("[[probes]]\nname = \"{PROBE}\"\nregion = \"eu\"\n")
    } else {
        // Another probe keeps the region's check valid.
        "[[probes]]\nname = \"probe-other\"\nregion = \"eu\"\n".to_owned()
    };
    format!(
        r#"[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
allow_unauthenticated = true
tls = {{ cert_file = "{cert}", key_file = "{key}" }}
probe_ca = {{ cert_file = "{ca}/ca.pem", key_file = "{ca}/ca.key" }}
[store]
path = "{db}"
{probes}
[[checks]]
id = "api"
interval = "300ms"
http = {{ url = "{target}" }}
"#,
        cert = tls.0,
        key = tls.1,
        ca = ca.display(),
        db = d.join("outpost.db").display(),
    )
}

fn probe(
    fleet: &Fleet,
    name: &str,
    grpc: std::net::SocketAddr,
    root: &Path,
    credential: &str,
    identity_dir: &Path,
    clock: &ManualClock,
) -> RunningProbe {
    let text = format!(
        "[probe]\nname = \"{name}\"\nregion = \"eu\"\n[controller]\nurl = \"https://localhost:{port}\"\nca_file = \"{root}\"\n\
         {credential}\nidentity_dir = \"{id}\"\nheartbeat_interval = \"1s\"\n",
        port = grpc.port(),
        root = root.display(),
        id = identity_dir.display(),
    );
    let raw: RawProbeFile =
        outpost_probe::config::load::load_str(&text, "test probe", outpost_probe::config::ENV, &[])
            .unwrap();
    let mut cfg = raw.validate("test probe").unwrap_or_else(|e| panic!("{e}"));
    cfg.outbox.dir = fleet.dir.path().join(format!(
        "outbox-{name}-{}",
        identity_dir.file_name().unwrap().to_string_lossy()
    ));
    outpost_probe::spawn_with_clock(cfg, None, clock.clock()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_probe_streams_over_mtls_renews_at_half_life_and_is_refused_once_removed() {
    let target = HttpServer::builder()
        .handler("/health", |_| Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let fleet = Fleet::new();
    let d = fleet.dir.path().to_path_buf();
    let pki = outpost_testkit::Pki::new("outpost-test-root");
    let (cert, key) = pki
        .leaf(&["localhost"])
        .write_pem(&d, "controller")
        .unwrap();
    let root = pki.write_root_pem(&d).unwrap();
    let tls = (cert.display().to_string(), key.display().to_string());
    let clock = ManualClock::starting_now();
    identity::init_ca(&d.join("ca"), clock.now_utc()).unwrap();
    let text = controller_toml(&fleet, &tls, &d.join("ca"), &target.url("/health"), true);
    let cfg = outpost_controller::config::parse(&text, "test controller", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let ctl = outpost_controller::start_with_clock(cfg, clock.clock())
        .await
        .unwrap();
    let c = ctl.controller().clone();
    let grpc = ctl.grpc_addr();

    // Enrollment: a one-time token, the probe's own key, a CSR.
    let token = identity::new_enrollment(
        ctl.store(),
        PROBE,
        "eu",
        c.now_ms(),
        identity::DEFAULT_ENROLL_TTL,
    )
    .await
    .unwrap();
    let token_file = fleet.secret("enroll.token", &token);
    let credential = format!(
        "enrollment_token = {{ file = \"{}\" }}",
        token_file.display()
    );
    let id_dir = d.join("identity");
    let p = probe(&fleet, PROBE, grpc, &root, &credential, &id_dir, &clock);
    eventually("the probe streams over mTLS", WAIT, || async {
        c.registry().certificate_of(PROBE).is_some()
    })
    .await;
    let issued = ctl.store().probe_certificates().await.unwrap();
    assert_eq!(issued.len(), 1);
    let first = issued[0].clone();
    assert_eq!(
        c.registry().certificate_of(PROBE),
        Some(first.serial.clone())
    );
    assert_eq!((first.probe.as_str(), first.region.as_str()), (PROBE, "eu"));
    let first_id = outpost_probe::identity::load(&id_dir).unwrap().unwrap();
    assert_eq!(first_id.serial, first.serial);
    // Results are stored under the certificate's probe.
    let pool = outpost_e2e::db(&d.join("outpost.db")).await;
    eventually("results stored from the mTLS stream", WAIT, || async {
        outpost_e2e::count(
            &pool,
            "SELECT COUNT(*) FROM results WHERE probe = 'probe-eu'",
        )
        .await
            > 0
    })
    .await;

    // The token is spent: a second probe presenting it is refused.
    let reused = c.metrics().get(
        "outpost_enrollments_refused_total",
        &[("reason", "used_token")],
    );
    let p2 = probe(
        &fleet,
        PROBE,
        grpc,
        &root,
        &credential,
        &d.join("identity-2"),
        &clock,
    );
    eventually("the reused token is refused", WAIT, || async {
        c.metrics().get(
            "outpost_enrollments_refused_total",
            &[("reason", "used_token")],
        ) > reused
    })
    .await;
    p2.shutdown().await;
    assert!(
        outpost_probe::identity::load(&d.join("identity-2"))
            .unwrap()
            .is_none()
    );

    // An expired token is refused.
    let short = identity::new_enrollment(
        ctl.store(),
        PROBE,
        "eu",
        c.now_ms(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    clock.advance(Duration::from_secs(120));
    let short_file = fleet.secret("short.token", &short);
    let p3 = probe(
        &fleet,
        PROBE,
        grpc,
        &root,
        &format!(
            "enrollment_token = {{ file = \"{}\" }}",
            short_file.display()
        ),
        &d.join("identity-3"),
        &clock,
    );
    eventually("the expired token is refused", WAIT, || async {
        c.metrics().get(
            "outpost_enrollments_refused_total",
            &[("reason", "expired_token")],
        ) >= 1.0
    })
    .await;
    p3.shutdown().await;

    // A certificate from another CA fails the handshake.
    let other = identity::init_ca(&d.join("other-ca"), clock.now_utc()).unwrap();
    let other = identity::ProbeCa::load(&other).unwrap();
    let (okey, csr) = outpost_probe::identity::new_key_and_csr(PROBE).unwrap();
    let forged = other
        .issue(&csr, PROBE, clock.now_utc(), identity::DEFAULT_VALIDITY)
        .unwrap();
    outpost_probe::identity::store(&d.join("identity-forged"), &forged.cert_pem, &okey, "")
        .unwrap();
    let failures = c.metrics().get(
        "outpost_tls_handshake_failures_total",
        &[("listener", "grpc")],
    );
    let p4 = probe(
        &fleet,
        PROBE,
        grpc,
        &root,
        &credential,
        &d.join("identity-forged"),
        &clock,
    );
    eventually(
        "the other CA's certificate fails the handshake",
        WAIT,
        || async {
            c.metrics().get(
                "outpost_tls_handshake_failures_total",
                &[("listener", "grpc")],
            ) > failures
        },
    )
    .await;
    p4.shutdown().await;
    // The enrolled probe's stream was never replaced by any of them.
    assert_eq!(
        c.registry().certificate_of(PROBE),
        Some(first.serial.clone())
    );

    // Renewal at half life (7 d validity): move the shared clock 3.6 days.
    clock.advance(Duration::from_secs(311_040));
    eventually(
        "the probe renews and reconnects with the new certificate",
        WAIT,
        || async {
            c.registry()
                .certificate_of(PROBE)
                .is_some_and(|s| s != first.serial)
        },
    )
    .await;
    let second_id = outpost_probe::identity::load(&id_dir).unwrap().unwrap();
    assert_ne!(second_id.serial, first.serial);
    assert_ne!(
        second_id.key_pem, first_id.key_pem,
        "a renewal makes a new key"
    );
    assert_eq!(
        c.registry().certificate_of(PROBE),
        Some(second_id.serial.clone())
    );
    let issued = ctl.store().probe_certificates().await.unwrap();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0].serial, second_id.serial);
    assert!(second_id.not_after_ms > first.not_after_ms);

    // The inventory API lists the controller's certificate and the probe's.
    outpost_controller::alerting::certificate::refresh_own(&c, &c.config(), c.now_ms())
        .await
        .unwrap();
    let body = client::get(ctl.http_addr(), "/api/v1/certificates")
        .await
        .unwrap()
        .text();
    let fingerprint = |pem: &str| identity::pem_fingerprint(pem).unwrap();
    assert!(body.contains(&fingerprint(&second_id.cert_pem)), "{body}");
    assert!(
        body.contains(&fingerprint(&std::fs::read_to_string(&cert).unwrap())),
        "{body}"
    );
    assert!(
        body.contains("probe-identity") && body.contains("controller:grpc"),
        "{body}"
    );
    assert!(!body.contains(&token) && !body.contains(second_id.key_pem.trim()));

    // Removed from the config: the stream is closed and the certificate refused.
    let removed = c.metrics().get(
        "outpost_probe_certificates_refused_total",
        &[("reason", "probe_removed")],
    );
    let text = controller_toml(&fleet, &tls, &d.join("ca"), &target.url("/health"), false);
    ctl.reload(outpost_controller::config::parse(&text, "test controller", &[]).unwrap());
    eventually(
        "the removed probe's certificate is refused",
        WAIT,
        || async {
            c.metrics().get(
                "outpost_probe_certificates_refused_total",
                &[("reason", "probe_removed")],
            ) > removed
        },
    )
    .await;
    assert_eq!(c.registry().certificate_of(PROBE), None);
    p.shutdown().await;
    ctl.shutdown().await;
}
