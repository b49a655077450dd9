//! The kubelet's atomic-writer layout for a volume directory (facts §7.3): the files live in a
//! timestamped `..YYYY_MM_DD_HH_MM_SS.<digits>` directory, `..data` is a symlink to it that is
//! swapped with one `rename`, and each top-level name is a symlink through `..data`. A reader
//! that opens `token` therefore sees either the old or the new file, never a partial one.
//! Written from the facts sheet, not from the upstream source.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _, symlink};
use std::path::{Component, Path, PathBuf};

use jiff::Timestamp;

/// The symlink that names the current data directory.
pub(crate) const DATA_DIR_NAME: &str = "..data";
const DATA_DIR_TMP_NAME: &str = "..data_tmp";

/// One file of a payload: its bytes and its permission bits.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    pub(crate) data: Vec<u8>,
    pub(crate) mode: u32,
}

impl std::fmt::Debug for FileProjection {
    // Payloads hold tokens and secrets: never print their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FileProjection({} bytes, {:o})",
            self.data.len(),
            self.mode
        )
    }
}

/// Relative path → file. Paths use `/` and may have directories (`a/b/c`).
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// Whether `path` may be written below a volume: relative, no `..` component, does not start
/// with `..` (which would collide with the writer's own names), not empty.
pub(crate) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with("..") {
        return Err(format!("{path:?} must not start with '..'"));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("{path:?} must be relative"));
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?} must not contain '..' or '.'"));
    }
    Ok(())
}

/// The top-level name of a payload path (`a` for `a/b`).
fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Writes `payload` into `dir` atomically; `now` names the new data directory. Returns whether
/// anything changed (an identical payload leaves the directory alone).
pub(crate) fn write(dir: &Path, payload: &Payload, now: Timestamp) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let data_link = dir.join(DATA_DIR_NAME);
    let old_dir_name = fs::read_link(&data_link).ok();
    let old_paths = match &old_dir_name {
        Some(name) => {
            let old = read_payload(&dir.join(name))?;
            if &old == payload {
                return Ok(false);
            }
            old.into_keys().collect()
        }
        None => Vec::new(),
    };

    // 1. The new timestamped directory with every file.
    let new_dir = new_data_dir(dir, now)?;
    if let Err(e) = write_files(&new_dir, payload) {
        let _ = fs::remove_dir_all(&new_dir);
        return Err(e);
    }
    let new_name = new_dir
        .file_name()
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other("data dir without a name"))?;

    // 2. `..data_tmp` → new dir, renamed over `..data` (the atomic step).
    let tmp_link = dir.join(DATA_DIR_TMP_NAME);
    let _ = fs::remove_file(&tmp_link);
    symlink(&new_name, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;

    // 3. User-visible links for the new names; stale ones removed.
    let mut tops: Vec<&str> = payload.keys().map(|p| top_level(p)).collect();
    tops.sort_unstable();
    tops.dedup();
    for top in &tops {
        let link = dir.join(top);
        let target = Path::new(DATA_DIR_NAME).join(top);
        if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let tmp = dir.join(format!("..{top}_tmp"));
            let _ = fs::remove_file(&tmp);
            symlink(&target, &tmp)?;
            fs::rename(&tmp, &link)?;
        }
    }
    for old in &old_paths {
        let top = top_level(old);
        if !tops.contains(&top) {
            let _ = fs::remove_file(dir.join(top));
        }
    }

    // 4. The old data directory (and any left over by an interrupted write).
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("..")
            && name != DATA_DIR_NAME
            && Path::new(name.as_ref()) != new_name.as_path()
            && entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
        {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(true)
}

/// `..2006_01_02_15_04_05.<random digits>`, created 0755 and unique.
fn new_data_dir(dir: &Path, now: Timestamp) -> io::Result<PathBuf> {
    let stamp = now.strftime("..%Y_%m_%d_%H_%M_%S.").to_string();
    for _ in 0..100 {
        let digits: u32 = rand::random();
        let path = dir.join(format!("{stamp}{digits}"));
        match fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a unique data directory"))
}

fn write_files(base: &Path, payload: &Payload) -> io::Result<()> {
    for (path, file) in payload {
        let full = base.join(path);
        if let Some(parent) = full.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&full)?;
        f.write_all(&file.data)?;
        f.sync_all()?;
        // The umask may have narrowed the mode given to open.
        fs::set_permissions(&full, fs::Permissions::from_mode(file.mode))?;
    }
    Ok(())
}

/// Everything under a data directory, as a payload (to compare with the next one).
fn read_payload(base: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = match fs::read_dir(base.join(&rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(child);
            } else {
                let data = fs::read(entry.path())?;
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(
                    child.to_string_lossy().into_owned(),
                    FileProjection { data, mode },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                let file = FileProjection {
                    data: d.as_bytes().to_vec(),
                    mode: *m,
                };
                (p.to_string(), file)
            })
            .collect()
    }

    fn data_dirs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_DIR_NAME)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn layout_is_the_kubelets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let t = Timestamp::from_second(1_735_830_245).unwrap();
        let p = payload(&[
            ("token", "t1", 0o644),
            ("ca.crt", "ca", 0o644),
            ("d/x", "x", 0o600),
        ]);
        assert!(write(&dir, &p, t).unwrap());
        let target = fs::read_link(dir.join("..data")).unwrap();
        let name = target.to_string_lossy().into_owned();
        assert!(name.starts_with("..2025_01_02_15_04_05."), "{name}");
        assert!(
            name["..2025_01_02_15_04_05.".len()..]
                .chars()
                .all(|c| c.is_ascii_digit())
        );
        let meta = fs::metadata(dir.join(&name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            fs::read_link(dir.join("token")).unwrap(),
            Path::new("..data/token")
        );
        assert_eq!(fs::read_link(dir.join("d")).unwrap(), Path::new("..data/d"));
        assert_eq!(fs::read_to_string(dir.join("token")).unwrap(), "t1");
        assert_eq!(fs::read_to_string(dir.join("d/x")).unwrap(), "x");
        // An identical payload writes nothing.
        assert!(!write(&dir, &p, t).unwrap());
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), target);
    }

    #[test]
    fn modes_are_honoured_despite_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let p = payload(&[("a", "1", 0o400), ("b", "2", 0o666), ("c", "3", 0o640)]);
        write(&dir, &p, Timestamp::UNIX_EPOCH).unwrap();
        for (name, mode) in [("a", 0o400), ("b", 0o666), ("c", 0o640)] {
            let m = fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{name}");
        }
    }

    #[test]
    fn swap_replaces_data_removes_old_dirs_and_stale_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        write(
            &dir,
            &payload(&[("token", "t1", 0o644), ("old", "o", 0o644)]),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let first = fs::read_link(dir.join("..data")).unwrap();
        let t2 = Timestamp::from_second(60).unwrap();
        assert!(write(&dir, &payload(&[("token", "t2", 0o644)]), t2).unwrap());
        let second = fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read_to_string(dir.join("token")).unwrap(), "t2");
        assert!(
            fs::symlink_metadata(dir.join("old")).is_err(),
            "stale link kept"
        );
        assert_eq!(data_dirs(&dir), vec![second.to_string_lossy().into_owned()]);
        assert!(!dir.join("..data_tmp").exists());
    }

    #[test]
    fn a_reader_never_sees_a_partial_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let a = "a".repeat(256 * 1024);
        let b = "b".repeat(256 * 1024);
        write(
            &dir,
            &payload(&[("token", &a, 0o644)]),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (dir, stop, a, b) = (dir.clone(), stop.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let got = fs::read_to_string(dir.join("token")).unwrap();
                    assert!(got == a || got == b, "partial read of {} bytes", got.len());
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..40 {
            let data = if i % 2 == 0 { &b } else { &a };
            let t = Timestamp::from_second(i).unwrap();
            write(&dir, &payload(&[("token", data, 0o644)]), t).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(data_dirs(&dir).len(), 1);
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in ["", "../x", "..data", "/abs", "a/../b", "./a"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        for good in ["token", "a/b", "a..b"] {
            assert!(validate_path(good).is_ok(), "{good}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let err = write(
            tmp.path(),
            &payload(&[("../x", "1", 0o644)]),
            Timestamp::UNIX_EPOCH,
        );
        assert!(err.is_err());
    }
}
