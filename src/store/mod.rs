//! The revisioned key-value store that every API object lives in.
//!
//! The semantics are etcd's, so that the etcd backend is a drop-in for the embedded
//! SQLite one (see `shared/DESIGN.md`, "Store semantics"):
//!
//! * one global, strictly increasing revision; every write returns it, and it becomes
//!   the object's `metadata.resourceVersion`;
//! * create fails if the key exists; update and delete may be conditional on the
//!   revision the caller read (optimistic concurrency);
//! * `watch(prefix, from)` replays every change after `from` in order, then streams;
//!   asking for a compacted revision is [`StoreError::Compacted`];
//! * a write that returned `Ok` survives `kill -9`.
//!
//! This module knows bytes and keys only: no Kubernetes types, no HTTP.

pub(crate) mod cache;
pub(crate) mod etcd;
pub(crate) mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

use std::pin::Pin;

use futures::Stream;

/// A revision: etcd's `int64`, strictly increasing, never reused. `0` means "none".
pub(crate) type Revision = i64;

/// One key at one revision.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyValue {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    /// The revision at which this key was (last) created.
    pub(crate) create_revision: Revision,
    /// The revision of the last write to this key.
    pub(crate) mod_revision: Revision,
}

impl std::fmt::Debug for KeyValue {
    // Values can hold Secret data: print the size, never the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// A page of a range read.
#[derive(Debug, Clone)]
pub(crate) struct ListResult {
    /// Keys in ascending byte order.
    pub(crate) items: Vec<KeyValue>,
    /// The revision the read was served at (the store's revision when `at` was `None`).
    pub(crate) revision: Revision,
    /// True when `limit` cut the page short and more keys follow the last one.
    pub(crate) more: bool,
}

/// What happened to a key. `revision` is the revision of the change itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// A create (`prev` is `None`) or an update (`prev` is the value before).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete; `prev` is the value that was deleted and `revision` the delete's revision.
    Delete { prev: KeyValue, revision: Revision },
}

impl WatchEvent {
    pub(crate) fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A stream of changes in revision order. It ends only when the store shuts down or the
/// watcher falls too far behind (then the last item is an error and the client re-lists).
pub(crate) type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// The state behind a backend's [`WatchStream`].
#[async_trait::async_trait]
pub(crate) trait WatchSource: Send + 'static {
    /// The next change, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>>;
}

/// The stream of `source`'s changes.
pub(crate) fn watch_stream(source: impl WatchSource) -> WatchStream {
    Box::pin(futures::stream::unfold(source, |mut s| async move {
        s.next().await.map(|item| (item, s))
    }))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    /// The key exists but its `mod_revision` is not the one the caller expected.
    #[error("key {key:?} is at revision {actual}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The requested revision was compacted away; `compacted` is the oldest still held.
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The watcher could not keep up and was dropped; it must re-list.
    #[error("watch fell behind and was closed")]
    WatchLagged,
    #[error("store is closed")]
    Closed,
    /// The backend could not be reached or did not answer in time (an etcd member down,
    /// no quorum); the same call may succeed when retried.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// The store contract. Both backends run [`conformance`] in their tests.
#[async_trait::async_trait]
pub(crate) trait Store: Send + Sync + 'static {
    /// The newest revision (0 for an empty store that was never written).
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// The live value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, ascending, strictly after `start_after` when given,
    /// at most `limit` items (0 = no limit), as of revision `at` (`None` = now).
    /// Reading at a compacted revision is `Compacted`; at a future one, `FutureRevision`.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError>;

    /// Create `key`; `AlreadyExists` if it is live. Returns the new key-value.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replace the value of a live `key`. With `expected = Some(rev)` the write happens
    /// only if the key's `mod_revision` is `rev` (else `Conflict`). `NotFound` if absent.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Delete a live `key`, conditionally as for `update`. Returns the deleted value and
    /// the revision of the delete.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError>;

    /// Every change to keys under `prefix` with a revision greater than `after`, in order,
    /// then live changes. `Compacted` when `after` is below [`Store::compacted_revision`]
    /// (the changes right after it are gone).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Forget history at and below `revision` (the live value of every key is kept).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision history was compacted up to (0 if never): reads `at` and watches
    /// `after` any revision at or above it still work.
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;

    /// Flush and stop; later calls return `Closed` and open watches end.
    async fn close(&self) -> Result<(), StoreError>;
}

/// Compacts history every `interval`, keeping the newest `retain` revisions, so that
/// watches can resume from recent resourceVersions (kine keeps 1000 as well).
pub(crate) async fn compact_periodically(
    store: std::sync::Arc<dyn Store>,
    interval: std::time::Duration,
    retain: Revision,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let target = match store.current_revision().await {
            Ok(current) => current - retain,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!("compaction skipped: {e}");
                continue;
            }
        };
        let done = store.compacted_revision().await.unwrap_or(0);
        if target > done {
            // A failed compaction is retried on the next tick; nothing is lost by waiting.
            if let Err(e) = store.compact(target).await {
                tracing::warn!("compaction to revision {target} failed: {e}");
            }
        }
    }
}

/// Probes `store` every `interval` (a read of its revision, given `interval` to answer) and
/// publishes the failure, if any, for the `/readyz` check; a change is logged once. Ends
/// when the store is closed or nobody listens.
pub(crate) async fn check_health_periodically(
    store: std::sync::Arc<dyn Store>,
    interval: std::time::Duration,
    report: tokio::sync::watch::Sender<Option<String>>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let failure = match tokio::time::timeout(interval, store.current_revision()).await {
            Ok(Ok(_)) => None,
            Ok(Err(StoreError::Closed)) => return,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {interval:?}")),
        };
        match (&failure, report.borrow().as_ref()) {
            (Some(now), None) => tracing::warn!("the store is not ready: {now}"),
            (None, Some(_)) => tracing::info!("the store is ready again"),
            _ => {}
        }
        if report.send(failure).is_err() {
            return;
        }
    }
}
