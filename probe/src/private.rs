//! Private files: every data file Outpost writes is 0600 and every
//! directory it creates 0700, with or without systemd's `UMask=0077`
//! (outbox segments and pointer, session state, the controller's SQLite
//! database — whose `-wal` and `-shm` files SQLite creates with the
//! database file's mode).

use std::{fs, io, path::Path};

/// Creates `dir` and its missing parents as 0700. An existing directory is
/// left as it is (an operator may have chosen its mode).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Open options that create a file as 0600.
pub fn options() -> fs::OpenOptions {
    #[allow(unused_mut)]
    let mut o = fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o
}

/// Creates `path` as an empty 0600 file unless it exists; an existing
/// file is narrowed to 0600 (a database created before this rule).
pub fn ensure_file(path: &Path) -> io::Result<()> {
    options().create(true).append(true).open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` as a 0600 file, all or nothing: into
/// `path.tmp` (fsynced), then renamed over `path`. A reader sees the old
/// file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut f = options().write(true).create_new(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_0600_and_directories_0700() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        options().create(true).append(true).open(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        let old = t.path().join("old.db");
        fs::write(&old, b"").unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
        ensure_file(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
    }
}
