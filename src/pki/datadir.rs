//! The data directory itself, apart from what is in it: the lock that keeps a second
//! `tokenwarden serve` out of a directory that one already uses, and the modes of the
//! directory (0700) and of the private files in it (0600), tightened at start when someone
//! loosened them.
//!
//! It must not read flags (`cli` passes the path) and knows nothing of the store's files
//! beyond their being in the directory it locks.
//!
//! The lock is an OS advisory lock (`flock`) on `tokenwarden.lock`: the kernel drops it when
//! the process exits, however it exits (`kill -9` included), so a stale lock file never keeps
//! a server out, and there is no PID file to clean up. The file also holds the holder's PID,
//! only to name it in the error a second server prints.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::PkiError;

/// The lock file's name in the data directory.
pub(crate) const LOCK_FILE: &str = "tokenwarden.lock";

const DIR_MODE: u32 = 0o700;
const PRIVATE_MODE: u32 = 0o600;

/// Held while a server runs; dropping it (or the process ending) releases the directory.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

/// Creates `dir` (0700) if needed and takes its lock, or says who holds it.
pub(crate) fn lock(dir: &Path) -> Result<DataDirLock, PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| PkiError::Io("create", dir.to_owned(), e))?;
    let path = dir.join(LOCK_FILE);
    // 1. Open without truncating: the holder's PID must survive our open.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_MODE)
        .open(&path)
        .map_err(|e| PkiError::Io("open", path.clone(), e))?;
    // 2. Lock, or report the holder.
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(PkiError::DataDirInUse {
                dir: dir.to_owned(),
                holder: holder(&text),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(PkiError::Io("lock", path, e)),
    }
    // 3. Ours now: record who holds it, for the next one's error message. Not fsynced: a
    //    crash releases the lock, and a stale PID only makes a message less precise.
    let write = |file: &mut File| -> io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "pid={}", std::process::id())
    };
    write(&mut file).map_err(|e| PkiError::Io("write", path, e))?;
    Ok(DataDirLock { _file: file })
}

/// The PID recorded in a lock file, if it holds one.
fn holder(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
}

/// Tightens the directory to 0700 and each existing file named in `private` to 0600, with a
/// log line for each change: a loose mode lets other local users read keys and tokens, or
/// swap them (a group-writable directory). Files we never created are not in `private`.
pub(crate) fn tighten(dir: &Path, private: &[&str]) -> Result<(), PkiError> {
    tighten_one(dir, DIR_MODE, "data directory")?;
    for name in private {
        let path = dir.join(name);
        if path.exists() {
            tighten_one(&path, PRIVATE_MODE, "private file")?;
        }
    }
    Ok(())
}

fn tighten_one(path: &Path, mode: u32, what: &str) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(|e| PkiError::Io("inspect", path.to_owned(), e))?;
    let have = meta.permissions().mode() & 0o777;
    // Only group and other bits are taken away; an owner who dropped its own bits meant it.
    if have & 0o077 == 0 {
        return Ok(());
    }
    let want = have & mode;
    fs::set_permissions(path, Permissions::from_mode(want))
        .map_err(|e| PkiError::Io("chmod", path.to_owned(), e))?;
    tracing::warn!(
        path = %path.display(),
        "{what} had mode {have:04o}, open to other users; tightened to {want:04o}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = lock(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        match lock(&dir) {
            Err(PkiError::DataDirInUse { dir: d, holder }) => {
                assert_eq!(d, dir);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected DataDirInUse, got {other:?}"),
        }
        let message = lock(&dir).unwrap_err().to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())));
        drop(first);
        // Released: the next one gets it, and the file is reused.
        let _again = lock(&dir).unwrap();
    }

    #[test]
    fn holders_are_read_leniently() {
        assert_eq!(holder("pid=42\n"), Some(42));
        assert_eq!(holder(""), None);
        assert_eq!(holder("pid=\n"), None);
        assert_eq!(holder("garbage"), None);
    }

    #[test]
    fn loose_modes_are_tightened_and_tight_ones_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::set_permissions(dir, Permissions::from_mode(0o775)).unwrap();
        for (name, m) in [("a.key", 0o644), ("b.key", 0o600), ("c.key", 0o400)] {
            fs::write(dir.join(name), "x").unwrap();
            fs::set_permissions(dir.join(name), Permissions::from_mode(m)).unwrap();
        }
        fs::write(dir.join("public.crt"), "x").unwrap();
        fs::set_permissions(dir.join("public.crt"), Permissions::from_mode(0o644)).unwrap();
        tighten(dir, &["a.key", "b.key", "c.key", "missing.key"]).unwrap();
        assert_eq!(mode(dir), 0o700);
        assert_eq!(mode(&dir.join("a.key")), 0o600);
        assert_eq!(mode(&dir.join("b.key")), 0o600);
        assert_eq!(mode(&dir.join("c.key")), 0o400);
        assert_eq!(mode(&dir.join("public.crt")), 0o644, "not ours to tighten");
    }
}
