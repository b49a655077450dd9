//! Material the server reads from files and takes up again while it runs: the signing and
//! verifying keys, the TLS certificate and key, the `--token-auth-file`. [`follow`] re-reads
//! a set of files when one of them changes (polled) or when the process gets SIGHUP
//! ([`Trigger`]), and hands the result over only if it loads: a broken new file is refused
//! with a logged error and the old material stays in use.
//!
//! Owns: change detection and the load-or-keep rule. Must not: parse anything (the caller's
//! `load` does), read signals (`cli` turns SIGHUP into [`Trigger::fire`]), or log file
//! contents.
//!
//! kube-apiserver's `dynamiccertificates` and `DynamicFileCAContent` do the same for
//! certificates (fsnotify plus a periodic re-read, keeping the last good content); its
//! service-account keys and token file are read once, which is what this module lifts.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the files are checked for a change.
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// How long a changed file must stay unchanged before it is read: an editor or `cp` that
/// writes in place is then done, and a half-written file is not reported as broken.
const SETTLE: Duration = Duration::from_millis(200);

/// "Read everything again now" (SIGHUP), for every [`follow`]er at once.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    tx: watch::Sender<u64>,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            tx: watch::channel(0).0,
        }
    }
}

impl Trigger {
    pub(crate) fn fire(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later [`fire`](Self::fire).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// What identifies a file's content without reading it: device, inode, size and mtime
/// (a rename over the file changes the inode; an in-place write the size or mtime).
type Fingerprint = Vec<Option<(u64, u64, u64, i64, i64)>>;

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

/// Re-reads `paths` with `load` when one changes or `trigger` fires, and passes what loaded
/// to `apply`; a load error is logged (with `what`, never the content) and the old material
/// stays. The first read is the caller's, before this starts. Ends when `trigger` is dropped.
pub(crate) fn follow<T: Send + 'static>(
    what: &'static str,
    paths: Vec<PathBuf>,
    trigger: &Trigger,
    load: impl Fn() -> anyhow::Result<T> + Send + 'static,
    apply: impl Fn(T) + Send + 'static,
) -> JoinHandle<()> {
    let mut fired = trigger.subscribe();
    tokio::spawn(async move {
        let mut seen = fingerprint(&paths);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                changed = fired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    true
                }
                _ = tick.tick() => false,
            };
            let now = settled(&paths, fingerprint(&paths)).await;
            if !forced && now == seen {
                continue;
            }
            seen = now;
            match load() {
                Ok(material) => {
                    apply(material);
                    tracing::info!("reloaded the {what}");
                }
                Err(e) => tracing::error!(
                    "refusing the new {what}: {e:#}; the material loaded before stays in use"
                ),
            }
        }
    })
}

/// `first` once the files have stopped changing for [`SETTLE`].
async fn settled(paths: &[PathBuf], mut first: Fingerprint) -> Fingerprint {
    for _ in 0..10 {
        tokio::time::sleep(SETTLE).await;
        let again = fingerprint(paths);
        if again == first {
            break;
        }
        first = again;
    }
    first
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Follows one file holding a number; returns what was applied so far.
    fn counter(path: PathBuf, trigger: &Trigger) -> (Arc<Mutex<Vec<u32>>>, JoinHandle<()>) {
        let applied = Arc::new(Mutex::new(Vec::new()));
        let sink = applied.clone();
        let p = path.clone();
        let task = follow(
            "number",
            vec![path],
            trigger,
            move || Ok(std::fs::read_to_string(&p)?.trim().parse::<u32>()?),
            move |n| sink.lock().unwrap().push(n),
        );
        (applied, task)
    }

    async fn wait_for(applied: &Mutex<Vec<u32>>, want: &[u32]) {
        for _ in 0..100 {
            if applied.lock().unwrap().as_slice() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("applied {:?}, want {want:?}", applied.lock().unwrap());
    }

    #[tokio::test]
    async fn a_changed_file_is_applied_and_a_broken_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let trigger = Trigger::default();
        let (applied, task) = counter(path.clone(), &trigger);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(applied.lock().unwrap().is_empty(), "unchanged: nothing");
        std::fs::write(&path, "22").unwrap();
        wait_for(&applied, &[22]).await;
        // Broken: refused, nothing applied; the next good content is.
        std::fs::write(&path, "not a number").unwrap();
        tokio::time::sleep(POLL * 2).await;
        assert_eq!(applied.lock().unwrap().as_slice(), [22]);
        std::fs::write(&path, "333").unwrap();
        wait_for(&applied, &[22, 333]).await;
        task.abort();
    }

    #[tokio::test]
    async fn the_trigger_rereads_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "7").unwrap();
        let trigger = Trigger::default();
        let (applied, task) = counter(path, &trigger);
        trigger.fire();
        wait_for(&applied, &[7]).await;
        drop(trigger);
        // The task ends with the trigger.
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends")
            .unwrap();
    }
}
