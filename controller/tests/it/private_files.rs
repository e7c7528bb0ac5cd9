//! The store is private without systemd's `UMask=0077`: its directory is
//! created 0700, the database and SQLite's `-wal`/`-shm` files are 0600, and
//! a database left 0644 by an older version is narrowed on open.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;

use crate::support::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn database_wal_and_shm_are_0600_in_a_0700_directory() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("state");
    let db = dir.join("o.db");
    let ctl = start(&config_text(&db, "http://127.0.0.1:9", API_CHECK)).await;
    let mut p =
        FakeProbe::connect(ctl.grpc_addr(), "eu-west-1", "eu-west", token("eu-west-1")).await;
    p.assignment().await;
    p.report("api-health", true, 1).await;
    assert_eq!(mode(&dir), 0o700);
    let files = ["o.db", "o.db-wal", "o.db-shm"].map(|f| dir.join(f));
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    ctl.shutdown().await;

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ctl = start(&config_text(&db, "http://127.0.0.1:9", API_CHECK)).await;
    assert_eq!(mode(&db), 0o600);
    ctl.shutdown().await;
}
