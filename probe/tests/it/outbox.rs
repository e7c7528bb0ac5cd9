//! The outbox under a running probe: a tiny size limit drops and counts,
//! while checks keep their schedule; the probe's /metrics shows the drops.

#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    sync::atomic::Ordering,
    time::Duration,
};

use outpost_probe::config::RawProbeFile;
use outpost_testkit::{HttpServer, Reply, wait::within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_outbox_drops_oldest_counts_them_and_checks_keep_their_schedule() {
    let target = HttpServer::builder()
        .route("/", Reply::text(200, "ok"))
        .run()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("token"),
        "outbox-test-token-0123456789abcdef",
    )
    .unwrap();
    // A controller address nothing listens on: every result stays in the outbox.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = format!(
        r#"
[probe]
name = "p"
region = "r"
[controller]
url = "http://{dead}"
token = {{ file = "{token}" }}
allow_plaintext = true
[outbox]
path = "{outbox}"
max_size = "64KiB"
fsync = "never"
[metrics]
listen = "127.0.0.1:0"
"#,
        token = dir.path().join("token").display(),
        outbox = dir.path().join("outbox").display(),
    );
    let raw: RawProbeFile = toml::from_str(&text).unwrap();
    let cfg = raw.validate("test").unwrap();
    let probe = outpost_probe::spawn(cfg, None).unwrap();
    // The controller never assigns anything, so feed the scheduler directly
    // with checks validated from the same schema.
    let checks: Vec<outpost_probe::check::CheckSpec> = (0..20)
        .map(|i| {
            let raw: outpost_probe::check::RawCheck = toml::from_str(&format!(
                "id = \"c{i}\"\ninterval = \"100ms\"\nhttp = {{ url = \"{}\" }}",
                target.url("/")
            ))
            .unwrap();
            let mut p = outpost_probe::config::Problems::default();
            raw.validate("c", &mut p).unwrap()
        })
        .collect();
    probe.scheduler.set_checks(checks, 1);
    let stats = probe.scheduler.stats.clone();
    let finished = || stats.finished.load(Ordering::SeqCst);

    // 20 checks × 10 runs/s: 340 runs well within 2.1 s means the schedule
    // held despite the full outbox (real time: each run is a real request).
    let held = within(Duration::from_millis(2100), || async { finished() >= 340 }).await;
    assert!(held.is_some(), "only {} runs in 2.1 s", finished());
    let ob = probe.outbox.as_ref().unwrap();
    // Private without systemd's UMask: the directory 0700, every file 0600.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let outbox = dir.path().join("outbox");
        assert_eq!(mode(&outbox), 0o700);
        let files: Vec<_> = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty());
        for f in files {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    assert!(ob.dropped() > 0, "drops are counted");
    assert!(
        ob.disk_bytes() <= 64 * 1024 + 16 * 1024,
        "{} bytes on disk",
        ob.disk_bytes()
    );
    // At one instant (no run finishing meanwhile, none between finishing and
    // being appended): every result is kept or counted.
    let accounted = within(Duration::from_secs(5), || async {
        let before = finished();
        let kept_or_dropped = ob.dropped() + ob.len() as u64;
        (before == finished() && kept_or_dropped == before).then_some(before)
    })
    .await;
    assert!(
        accounted.is_some(),
        "{} kept + {} dropped of {} finished",
        ob.len(),
        ob.dropped(),
        finished()
    );

    let addr = probe.metrics_addr.unwrap();
    let body = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("outpost_probe_outbox_dropped_total{reason=\"size\"}"))
        .unwrap();
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > 0, "{line}");
    probe.shutdown().await;
}
