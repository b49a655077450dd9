//! A watch-fed copy in memory of some key ranges of a store, served in front of it: what
//! kube-apiserver's watch cache and client-go's informers are for the objects a token names
//! (ServiceAccounts, Secrets, Pods, Nodes). Every token check, every admission lookup and
//! every GET of those kinds is then a map lookup instead of a backend read.
//!
//! How it stays exact:
//! * one task lists the cached ranges at one revision, then follows one watch of the whole
//!   key space from there, applying each change in revision order. The copy is therefore
//!   always the state of the store at one revision, [`State::revision`];
//! * a write through this store to a cached key answers only once the copy has applied the
//!   write's revision, so the next read through this process sees it (a deleted Pod's token
//!   is refused by the very next check). Writes made elsewhere (another replica on the same
//!   etcd) arrive with the watch, as in kube-apiserver;
//! * when the watch ends (the backend compacted past it, it fell behind, the backend went
//!   away) the copy is dropped and reads go to the backend until a new list and watch run.
//!
//! What is read from memory: `get` of a cached key that the copy holds (a key it lacks is
//! asked of the backend, which may be ahead: another replica's create), and `list` under a
//! cached range at the copy's revision (the first page, and later pages while nothing under
//! the range changed).
//! Everything else, and everything while the copy is not ready, goes to the backend, so the
//! answers are those of the backend at some revision, never a mix.
//!
//! Watches are served from the copy too, for every key, as kube-apiserver's watch cache
//! serves them: the task keeps the last changes (at most [`HISTORY_EVENTS`] of them and
//! [`HISTORY_BYTES`] of values) and every watcher reads them from its own position once the
//! copy has applied them. So one backend watch feeds every watcher of the process, and
//! whoever reacts to a change (a controller, a client's informer) and then reads finds the
//! copy at least as new as the change. A watcher whose position falls out of the kept
//! history is ended with `WatchLagged` (the client lists again, as kube-apiserver's 410
//! asks): a slow watcher holds no memory of its own, and the history is bounded. A watch
//! from before the kept history goes to the backend.
//!
//! Like the rest of `store`, it knows bytes and keys only: the caller names the ranges.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use super::{
    KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchSource, WatchStream,
    watch_stream,
};

/// The most changes kept for watchers (a burst of this many writes reaches every watcher
/// that keeps reading), and the most bytes of values they may hold.
const HISTORY_EVENTS: usize = if cfg!(test) { 64 } else { 10_000 };
const HISTORY_BYTES: usize = 8 << 20;

/// Changes a watcher takes from the history per lock.
const WATCH_BATCH: usize = 64;

/// How long a write to a cached key waits for the copy to apply it before it answers
/// anyway (the copy is then resyncing, and reads go to the backend meanwhile).
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// Delays before listing again after a failure: 100 ms doubling to 10 s.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// A store whose reads of some key ranges are answered from memory.
pub(crate) struct CachedStore {
    backend: Arc<dyn Store>,
    copy: Arc<Copy>,
}

/// The copy, shared by the store and the task that keeps it.
struct Copy {
    /// Key prefixes held in memory, e.g. `/registry/pods/`.
    ranges: Vec<String>,
    state: RwLock<State>,
    /// The revision the copy has applied, for writers waiting on their own write.
    applied: watch::Sender<Revision>,
    /// Whether the copy is ready, for watches that start before it is.
    ready: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Whether `objects` is the backend's state at `revision`; when false, reads go to the
    /// backend.
    ready: bool,
    /// Set by `close`: the copy is never ready again.
    closed: bool,
    revision: Revision,
    objects: BTreeMap<String, Entry>,
    /// The last changes, oldest first: every change after `floor` up to `revision`.
    history: VecDeque<Arc<WatchEvent>>,
    history_bytes: usize,
    floor: Revision,
    /// The backend's compaction, as far as this store did it.
    compacted: Revision,
    /// Counts loads and resets: a watcher of an earlier one has ended.
    generation: u64,
}

impl State {
    /// Whether the keys under `prefix` are now as they were at revision `at`: the kept
    /// history covers every change since, and none touched them. Then the later pages of a
    /// list read at `at` come from memory too, though other keys (a Lease renewal) moved on.
    fn unchanged_since(&self, prefix: &str, at: Revision) -> bool {
        if at < self.floor.max(self.compacted) || at > self.revision {
            return false;
        }
        let start = self.history.partition_point(|e| e.revision() <= at);
        !self
            .history
            .range(start..)
            .any(|e| e.key().starts_with(prefix))
    }
}

/// One live key. The key itself is the map's key, so it is held once.
struct Entry {
    value: Box<[u8]>,
    create_revision: Revision,
    mod_revision: Revision,
}

impl Entry {
    fn of(kv: KeyValue) -> (String, Entry) {
        let entry = Entry::copy(&kv);
        (kv.key, entry)
    }

    fn copy(kv: &KeyValue) -> Entry {
        Entry {
            value: kv.value.as_slice().into(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }

    fn key_value(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self.value.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// What the copy holds, for tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheStats {
    pub(crate) ready: bool,
    pub(crate) revision: Revision,
    pub(crate) objects: usize,
    pub(crate) value_bytes: usize,
}

impl CachedStore {
    /// `backend` with the keys under each of `ranges` held in memory, and the task that
    /// fills and follows them (it watches every key under `root`, which must hold every
    /// range). The task ends when the backend is closed.
    pub(crate) fn start(
        backend: Arc<dyn Store>,
        root: &str,
        ranges: Vec<String>,
    ) -> (Arc<CachedStore>, tokio::task::JoinHandle<()>) {
        debug_assert!(ranges.iter().all(|r| r.starts_with(root)));
        let copy = Arc::new(Copy::new(ranges, State::default()));
        let task = tokio::spawn(follow(backend.clone(), Arc::clone(&copy), root.to_owned()));
        (Arc::new(CachedStore { backend, copy }), task)
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> CacheStats {
        let state = self.copy.read();
        CacheStats {
            ready: state.ready,
            revision: state.revision,
            objects: state.objects.len(),
            value_bytes: state.objects.values().map(|e| e.value.len()).sum(),
        }
    }

    /// Waits until the copy holds every change up to `revision`, when it would serve `key`.
    async fn applied(&self, key: &str, revision: Revision) {
        if !self.copy.holds(key) || !self.copy.read().ready {
            return;
        }
        let mut applied = self.copy.applied.subscribe();
        let waited = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|r| *r >= revision)).await;
        if waited.is_err() {
            tracing::warn!(
                "the object cache has not applied revision {revision} after {APPLY_WAIT:?}"
            );
        }
    }
}

impl Copy {
    fn new(ranges: Vec<String>, state: State) -> Copy {
        Copy {
            ranges,
            state: RwLock::new(state),
            applied: watch::Sender::new(0),
            ready: watch::Sender::new(false),
        }
    }

    fn holds(&self, key: &str) -> bool {
        self.ranges.iter().any(|r| key.starts_with(r.as_str()))
    }

    /// Whether keys under `prefix` may be cached ones.
    fn overlaps(&self, prefix: &str) -> bool {
        self.ranges
            .iter()
            .any(|r| prefix.starts_with(r.as_str()) || r.starts_with(prefix))
    }

    // The lock guards plain data that every writer leaves consistent before it can panic
    // (each change is one map operation), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, revision: Revision) {
        self.applied.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    fn apply(&self, event: WatchEvent) {
        let revision = event.revision();
        let event = Arc::new(event);
        {
            let mut state = self.write();
            match event.as_ref() {
                WatchEvent::Put { kv, .. } if self.holds(&kv.key) => {
                    state.objects.insert(kv.key.clone(), Entry::copy(kv));
                }
                WatchEvent::Delete { prev, .. } if self.holds(&prev.key) => {
                    state.objects.remove(&prev.key);
                }
                _ => {}
            }
            state.revision = revision;
            state.history_bytes += size(&event);
            state.history.push_back(event);
            while state.history.len() > HISTORY_EVENTS || state.history_bytes > HISTORY_BYTES {
                let Some(oldest) = state.history.pop_front() else {
                    break;
                };
                state.history_bytes -= size(&oldest);
                state.floor = oldest.revision();
            }
        }
        self.publish(revision);
    }

    /// Notes a compaction of the backend: reads and new watches at or below it are refused
    /// as the backend refuses them, but watchers already reading the kept history go on
    /// (a compaction must not cut off a watcher that keeps up).
    fn compacted(&self, revision: Revision) {
        let mut state = self.write();
        state.compacted = state.compacted.max(revision);
    }

    /// Forgets everything: reads go to the backend and watchers are ended.
    fn reset(&self) {
        let mut state = self.write();
        *state = State {
            closed: state.closed,
            generation: state.generation + 1,
            compacted: state.compacted,
            ..State::default()
        };
        drop(state);
        self.ready.send_replace(false);
        // Wakes the watchers, which find they belong to an earlier generation.
        self.applied.send_modify(|_| {});
    }

    /// A watch served from the copy, when it is ready and holds every change after `after`
    /// (a revision it has not reached, or one compacted away, is the backend's to judge).
    fn watch(self: &Arc<Self>, prefix: &str, after: Revision) -> Option<WatchStream> {
        let state = self.read();
        if !state.ready || after < state.floor.max(state.compacted) || after > state.revision {
            return None;
        }
        Some(watch_stream(CopyWatch {
            copy: Arc::clone(self),
            prefix: prefix.to_owned(),
            after,
            generation: state.generation,
            applied: self.applied.subscribe(),
            batch: VecDeque::new(),
            done: false,
        }))
    }

    /// The next changes under `prefix` after `after`, at most [`WATCH_BATCH`]; `None` when
    /// the watcher's generation is over, `Err` when `after` left the kept history.
    fn changes_after(
        &self,
        prefix: &str,
        after: Revision,
        generation: u64,
        out: &mut VecDeque<Arc<WatchEvent>>,
    ) -> Option<Result<(), StoreError>> {
        let state = self.read();
        if state.generation != generation || state.closed {
            return None;
        }
        if after < state.floor {
            return Some(Err(StoreError::WatchLagged));
        }
        let start = state.history.partition_point(|e| e.revision() <= after);
        out.extend(
            state
                .history
                .range(start..)
                .filter(|e| e.key().starts_with(prefix))
                .take(WATCH_BATCH)
                .cloned(),
        );
        Some(Ok(()))
    }
}

/// Fills the copy and keeps it exact until the backend is closed.
async fn follow(backend: Arc<dyn Store>, copy: Arc<Copy>, root: String) {
    let mut failures = 0_u32;
    loop {
        let outcome = match load(backend.as_ref(), &copy).await {
            Ok(revision) => match backend.watch(&root, revision).await {
                Ok(stream) => {
                    failures = 0;
                    drain(stream, &copy).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        copy.reset();
        match outcome {
            Err(StoreError::Closed) => return,
            Err(e) => tracing::info!("the object cache lists again: {e}"),
            Ok(()) => tracing::info!("the object cache lists again: its watch ended"),
        }
        let delay = RETRY_BASE
            .saturating_mul(1_u32 << failures.min(7))
            .min(RETRY_MAX);
        failures = failures.saturating_add(1);
        tokio::time::sleep(delay).await;
    }
}

/// Lists every range at one revision into the copy and marks it ready; returns the revision.
async fn load(backend: &dyn Store, copy: &Copy) -> Result<Revision, StoreError> {
    let mut objects = BTreeMap::new();
    let mut at = None;
    for range in &copy.ranges {
        let listed = backend.list(range, None, 0, at).await?;
        at = Some(listed.revision);
        objects.extend(listed.items.into_iter().map(Entry::of));
    }
    let revision = match at {
        Some(revision) => revision,
        None => backend.current_revision().await?,
    };
    {
        let mut state = copy.write();
        if state.closed {
            return Err(StoreError::Closed);
        }
        *state = State {
            ready: true,
            revision,
            objects,
            floor: revision,
            generation: state.generation + 1,
            compacted: state.compacted,
            ..State::default()
        };
    }
    copy.publish(revision);
    copy.ready.send_replace(true);
    Ok(revision)
}

/// Applies the watch's changes until it ends; `Ok` when it ended without an error.
async fn drain(mut stream: WatchStream, copy: &Copy) -> Result<(), StoreError> {
    while let Some(event) = stream.next().await {
        copy.apply(event?);
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for CachedStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.backend.current_revision().await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if self.copy.holds(key) {
            let state = self.copy.read();
            if state.ready
                && let Some(entry) = state.objects.get(key)
            {
                return Ok(Some(entry.key_value(key)));
            }
        }
        // Not in memory: ask the backend, which may be ahead of the copy (an object another
        // replica created a moment ago, whose token this replica is asked to check).
        self.backend.get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        if self.copy.holds(prefix) {
            let state = self.copy.read();
            if state.ready && at.is_none_or(|at| state.unchanged_since(prefix, at)) {
                let mut page = list_from(&state, prefix, start_after, limit);
                page.revision = at.unwrap_or(page.revision);
                return Ok(page);
            }
        }
        self.backend.list(prefix, start_after, limit, at).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let kv = self.backend.create(key, value).await?;
        self.applied(key, kv.mod_revision).await;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let kv = self.backend.update(key, value, expected).await?;
        self.applied(key, kv.mod_revision).await;
        Ok(kv)
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        let (prev, revision) = self.backend.delete(key, expected).await?;
        self.applied(key, revision).await;
        Ok((prev, revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Right after start the copy is being filled. A watcher of cached keys waits for
        // it rather than watch the backend ahead of the copy it then reads from; others
        // (the RBAC policy, which start-up waits for) do not wait on a long list.
        if self.copy.overlaps(prefix) {
            let mut ready = self.copy.ready.subscribe();
            let _ = tokio::time::timeout(APPLY_WAIT, ready.wait_for(|r| *r)).await;
        }
        match self.copy.watch(prefix, after) {
            Some(stream) => Ok(stream),
            None => self.backend.watch(prefix, after).await,
        }
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.backend.compact(revision).await?;
        self.copy.compacted(revision);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.backend.compacted_revision().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.copy.write().closed = true;
        self.copy.reset();
        self.backend.close().await
    }
}

/// The bytes a kept change holds.
fn size(event: &WatchEvent) -> usize {
    match event {
        WatchEvent::Put { kv, prev } => {
            kv.key.len() + kv.value.len() + prev.as_ref().map_or(0, |p| p.value.len())
        }
        WatchEvent::Delete { prev, .. } => prev.key.len() + prev.value.len(),
    }
}

/// One watcher of the copy: its position in the kept history, and the changes it took from
/// there and has not yielded yet.
struct CopyWatch {
    copy: Arc<Copy>,
    prefix: String,
    /// The revision of the last change taken from the history.
    after: Revision,
    generation: u64,
    applied: watch::Receiver<Revision>,
    batch: VecDeque<Arc<WatchEvent>>,
    done: bool,
}

#[async_trait::async_trait]
impl WatchSource for CopyWatch {
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.batch.pop_front() {
                return Some(Ok(event.as_ref().clone()));
            }
            if self.done {
                return None;
            }
            // Marked seen before the history is read: a change applied after this read
            // wakes the wait below.
            self.applied.borrow_and_update();
            let head = self.copy.read().revision;
            match self.copy.changes_after(
                &self.prefix,
                self.after,
                self.generation,
                &mut self.batch,
            ) {
                // The copy was reset (its backend watch was lost, or the store closed):
                // the watch ends, and the client resumes from its last revision.
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(())) => match self.batch.back() {
                    Some(last) => self.after = last.revision(),
                    None => {
                        // Nothing under the prefix up to `head`: skip past it and wait.
                        self.after = self.after.max(head);
                        if self.applied.changed().await.is_err() {
                            self.done = true;
                        }
                    }
                },
            }
        }
    }
}

/// The page of the copy's keys under `prefix` that `list` asked for.
fn list_from(state: &State, prefix: &str, start_after: Option<&str>, limit: usize) -> ListResult {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut range = state
        .objects
        .range::<str, _>((lower, Bound::Unbounded))
        .take_while(|(key, _)| key.starts_with(prefix));
    let mut items = Vec::new();
    for (key, entry) in range.by_ref() {
        items.push(entry.key_value(key));
        if limit > 0 && items.len() == limit {
            break;
        }
    }
    ListResult {
        items,
        revision: state.revision,
        more: limit > 0 && range.next().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{conformance_tests, with_guard};
    use crate::store::sqlite::SqliteStore;

    const ROOT: &str = "/registry/";

    async fn cached() -> (tempfile::TempDir, Arc<CachedStore>) {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteStore::open(&dir.path().join("db")).unwrap();
        let (store, _task) = CachedStore::start(
            backend,
            ROOT,
            vec![
                "/registry/pods/".into(),
                "/registry/serviceaccounts/".into(),
            ],
        );
        wait_ready(&store).await;
        (dir, store)
    }

    async fn wait_ready(store: &CachedStore) {
        for _ in 0..500 {
            if store.stats().ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the cache never became ready");
    }

    /// The conformance suite with every key cached: reads at the head come from memory.
    async fn all_cached() -> Arc<dyn Store> {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteStore::open(&dir.path().join("db")).unwrap();
        let (store, _task) = CachedStore::start(backend, "", vec![String::new()]);
        wait_ready(&store).await;
        with_guard(store, dir)
    }

    conformance_tests!(all_cached);

    #[tokio::test]
    async fn cached_keys_are_read_from_memory_and_others_from_the_backend() {
        let (_dir, store) = cached().await;
        let pod = store
            .create("/registry/pods/a/p", b"pod".to_vec())
            .await
            .unwrap();
        store
            .create("/registry/configmaps/a/c", b"cm".to_vec())
            .await
            .unwrap();
        // A write to a cached key answers only once the copy holds it.
        let stats = store.stats();
        assert_eq!((stats.objects, stats.value_bytes), (1, 3));
        assert!(stats.revision >= pod.mod_revision);
        assert_eq!(store.get("/registry/pods/a/p").await.unwrap(), Some(pod));
        assert!(
            store
                .get("/registry/configmaps/a/c")
                .await
                .unwrap()
                .is_some()
        );
        // A copy holding a key the backend lacks proves where reads go.
        let (key, entry) = Entry::of(KeyValue {
            key: "/registry/pods/a/only-in-memory".into(),
            value: b"m".to_vec(),
            create_revision: 1,
            mod_revision: 1,
        });
        let state = State {
            ready: true,
            revision: 1,
            objects: BTreeMap::from([(key.clone(), entry)]),
            ..State::default()
        };
        let fake = CachedStore {
            backend: store.backend.clone(),
            copy: Arc::new(Copy::new(vec!["/registry/pods/".into()], state)),
        };
        assert_eq!(fake.get(&key).await.unwrap().unwrap().value, b"m");
        // A key the copy lacks is asked of the backend, which may be ahead of it.
        assert!(fake.get("/registry/pods/a/p").await.unwrap().is_some());
        assert!(
            fake.get("/registry/configmaps/a/c")
                .await
                .unwrap()
                .is_some()
        );
        fake.copy.reset();
        assert_eq!(
            fake.get(&key).await.unwrap(),
            None,
            "not ready: the backend answers"
        );
    }

    #[tokio::test]
    async fn a_delete_is_gone_from_memory_when_it_answers() {
        let (_dir, store) = cached().await;
        for i in 0..50 {
            let key = format!("/registry/pods/a/p{i}");
            store.create(&key, b"pod".to_vec()).await.unwrap();
            store.delete(&key, None).await.unwrap();
            assert_eq!(store.get(&key).await.unwrap(), None, "{key}");
        }
        assert_eq!(store.stats().objects, 0);
    }

    #[tokio::test]
    async fn lists_page_from_memory_at_the_copys_revision() {
        let (_dir, store) = cached().await;
        for ns in ["a", "b"] {
            for i in 0..5 {
                store
                    .create(&format!("/registry/pods/{ns}/p{i}"), vec![b'x'; i])
                    .await
                    .unwrap();
            }
        }
        let first = store
            .list("/registry/pods/a/", None, 2, None)
            .await
            .unwrap();
        let keys = |l: &ListResult| l.items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&first), ["/registry/pods/a/p0", "/registry/pods/a/p1"]);
        assert!(first.more);
        let rest = store
            .list(
                "/registry/pods/a/",
                Some("/registry/pods/a/p1"),
                0,
                Some(first.revision),
            )
            .await
            .unwrap();
        assert_eq!(keys(&rest).len(), 3);
        assert!(!rest.more);
        assert_eq!(rest.revision, first.revision);
        // The same pages as the backend's.
        let backend = store
            .backend
            .list("/registry/pods/", None, 0, None)
            .await
            .unwrap();
        let cached = store.list("/registry/pods/", None, 0, None).await.unwrap();
        assert_eq!(backend.items, cached.items);
        assert_eq!(backend.revision, cached.revision);
        // Writes elsewhere leave the range as it was: a later page at the first page's
        // revision still comes from memory (the backend, compacted past it, could not).
        store
            .create("/registry/configmaps/a/c", Vec::new())
            .await
            .unwrap();
        let head = store.current_revision().await.unwrap();
        store.backend.compact(head).await.unwrap();
        assert!(matches!(
            store
                .backend
                .list("/registry/pods/a/", None, 0, Some(first.revision))
                .await,
            Err(StoreError::Compacted { .. })
        ));
        let later = store
            .list(
                "/registry/pods/a/",
                Some("/registry/pods/a/p1"),
                0,
                Some(first.revision),
            )
            .await
            .unwrap();
        assert_eq!(
            (later.items, later.revision),
            (rest.items.clone(), first.revision)
        );
        // A page at a revision before a change to the range comes from the backend, as
        // of that revision.
        let before = store.current_revision().await.unwrap();
        store.delete("/registry/pods/a/p4", None).await.unwrap();
        let old = store
            .list(
                "/registry/pods/a/",
                Some("/registry/pods/a/p1"),
                0,
                Some(before),
            )
            .await
            .unwrap();
        assert_eq!(keys(&old).len(), 3);
        let now = store
            .list("/registry/pods/a/", Some("/registry/pods/a/p1"), 0, None)
            .await;
        assert_eq!(keys(&now.unwrap()).len(), 2);
    }

    #[tokio::test]
    async fn the_copy_stays_exact_through_bursts_and_compaction() {
        let (_dir, store) = cached().await;
        store
            .create("/registry/pods/a/p", b"1".to_vec())
            .await
            .unwrap();
        // A burst beyond the backend's watch buffer (16 in tests) and a compaction past
        // everything: whether the copy's watch keeps up or ends and lists again, it comes
        // back with the current state.
        for i in 0..200 {
            store
                .backend
                .create(&format!("/registry/configmaps/a/c{i}"), Vec::new())
                .await
                .unwrap();
        }
        let head = store.current_revision().await.unwrap();
        store.compact(head).await.unwrap();
        store
            .backend
            .update("/registry/pods/a/p", b"2".to_vec(), None)
            .await
            .unwrap();
        for _ in 0..500 {
            let got = store.get("/registry/pods/a/p").await.unwrap();
            if got.map(|kv| kv.value) == Some(b"2".to_vec()) && store.stats().ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the copy never caught up");
    }

    #[tokio::test]
    async fn watches_come_from_the_copy_after_it_applied_the_change() {
        let (_dir, store) = cached().await;
        let start = store.current_revision().await.unwrap();
        let mut w = store.watch("/registry/", start).await.unwrap();
        for i in 0..20 {
            let key = format!("/registry/pods/a/p{i}");
            // Created straight in the backend: only the copy's task hands it on.
            let kv = store.backend.create(&key, b"x".to_vec()).await.unwrap();
            let event = crate::store::conformance::next_event(&mut w).await;
            assert_eq!(event.key(), key);
            assert_eq!(event.revision(), kv.mod_revision);
            // Whoever saw the change finds it in the copy.
            assert_eq!(store.get(&key).await.unwrap(), Some(kv));
        }
        // A watch that starts in the kept history replays from there, and only its prefix.
        let mut replay = store.watch("/registry/pods/a/p1", start).await.unwrap();
        let mut keys = Vec::new();
        for _ in 0..11 {
            keys.push(
                crate::store::conformance::next_event(&mut replay)
                    .await
                    .key()
                    .to_owned(),
            );
        }
        assert_eq!(keys[0], "/registry/pods/a/p1");
        assert_eq!(keys[10], "/registry/pods/a/p19");
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_ended_not_buffered() {
        let (_dir, store) = cached().await;
        let start = store.current_revision().await.unwrap();
        let mut slow = store.watch("/registry/", start).await.unwrap();
        for i in 0..(HISTORY_EVENTS + 8) {
            store
                .create(&format!("/registry/configmaps/a/c{i}"), Vec::new())
                .await
                .unwrap();
        }
        let mut delivered = 0;
        loop {
            match crate::store::conformance::next_item(&mut slow).await {
                Some(Ok(_)) => delivered += 1,
                Some(Err(StoreError::WatchLagged)) => break,
                other => panic!("expected WatchLagged, got {other:?} after {delivered}"),
            }
        }
        assert!(delivered < HISTORY_EVENTS + 8);
        assert!(
            crate::store::conformance::next_item(&mut slow)
                .await
                .is_none()
        );
        // A watch from before the kept history is the backend's, and still complete.
        let mut old = store.watch("/registry/", start).await.unwrap();
        let first = crate::store::conformance::next_event(&mut old).await;
        assert_eq!(first.key(), "/registry/configmaps/a/c0");
    }

    #[tokio::test]
    async fn a_compaction_does_not_cut_off_a_watcher_that_keeps_reading() {
        let (_dir, store) = cached().await;
        let start = store.current_revision().await.unwrap();
        let mut w = store.watch("/registry/", start).await.unwrap();
        for i in 0..10 {
            store
                .create(&format!("/registry/configmaps/a/c{i}"), Vec::new())
                .await
                .unwrap();
        }
        let head = store.current_revision().await.unwrap();
        store.compact(head).await.unwrap();
        // A new watch from before the compaction is refused, as the backend refuses it.
        assert!(matches!(
            store.watch("/registry/", start).await,
            Err(StoreError::Compacted { .. })
        ));
        // The watcher that was reading gets every change, before and after it.
        store
            .create("/registry/configmaps/a/last", Vec::new())
            .await
            .unwrap();
        for i in 0..10 {
            let event = crate::store::conformance::next_event(&mut w).await;
            assert_eq!(event.key(), format!("/registry/configmaps/a/c{i}"));
        }
        let last = crate::store::conformance::next_event(&mut w).await;
        assert_eq!(last.key(), "/registry/configmaps/a/last");
    }
}
