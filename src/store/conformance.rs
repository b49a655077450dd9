//! The store conformance suite: the behaviour every [`Store`] backend must share.
//!
//! Each backend's test module runs `conformance_tests!(factory)`, which expands to one
//! `#[tokio::test]` per case below. `factory` is an async fn or closure returning a fresh,
//! empty `Arc<dyn Store>` that no other case writes to; [`with_guard`] ties a temp dir or a
//! server process to its lifetime. Cases assert etcd's semantics (`mod.rs`), never a
//! backend's internals, so the etcd backend must pass them unchanged.
//! Must not: depend on a particular backend.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream};

/// Expands to one `#[tokio::test]` per conformance case, each on a store from `$factory`.
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::store::conformance::conformance_tests!(@cases $factory;
            create_get_already_exists,
            update_conditional,
            delete_conditional,
            revisions_strictly_increase,
            create_after_delete_resets_create_revision,
            list_prefix_and_order,
            list_pages,
            list_at_past_revision,
            watch_from_zero_replays_all,
            watch_from_revision_then_live,
            watch_filters_by_prefix,
            watch_delete_carries_prev,
            watch_during_writes_has_no_gap_or_duplicate,
            compaction,
            concurrent_conflicting_updates,
            close_ends_everything,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let store: ::std::sync::Arc<dyn $crate::store::Store> = ($factory)().await;
            $crate::store::conformance::$case(store).await;
        }
    )+};
}
pub(crate) use conformance_tests;

/// A store that keeps `guard` (a temp dir, a server process) alive as long as itself.
pub(crate) fn with_guard<G: Send + Sync + 'static>(
    store: Arc<dyn Store>,
    guard: G,
) -> Arc<dyn Store> {
    Arc::new(Guarded {
        store,
        _guard: guard,
    })
}

struct Guarded<G> {
    // Declared first so it drops before the guard.
    store: Arc<dyn Store>,
    _guard: G,
}

#[async_trait::async_trait]
impl<G: Send + Sync + 'static> Store for Guarded<G> {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.store.current_revision().await
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.store.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        self.store.list(prefix, start_after, limit, at).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.store.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.store.update(key, value, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        self.store.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.store.watch(prefix, after).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.store.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.store.compacted_revision().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.store.close().await
    }
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

fn put(kv: &KeyValue, prev: Option<&KeyValue>) -> WatchEvent {
    WatchEvent::Put {
        kv: kv.clone(),
        prev: prev.cloned(),
    }
}

fn del(prev: &KeyValue, revision: Revision) -> WatchEvent {
    WatchEvent::Delete {
        prev: prev.clone(),
        revision,
    }
}

/// The next item of a watch; a hang fails the test instead of stalling it.
pub(crate) async fn next_item(w: &mut WatchStream) -> Option<Result<WatchEvent, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch timed out")
}

pub(crate) async fn next_event(w: &mut WatchStream) -> WatchEvent {
    next_item(w)
        .await
        .expect("watch ended")
        .expect("watch failed")
}

async fn next_events(w: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(w).await);
    }
    events
}

pub(crate) async fn create_get_already_exists(s: Arc<dyn Store>) {
    assert_eq!(s.get("k").await.unwrap(), None);
    let kv = s.create("k", v("1")).await.unwrap();
    assert_eq!((kv.key.as_str(), kv.value.as_slice()), ("k", &b"1"[..]));
    assert!(kv.mod_revision > 0);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(s.get("k").await.unwrap(), Some(kv.clone()));
    match s.create("k", v("2")).await {
        Err(StoreError::AlreadyExists(key)) => assert_eq!(key, "k"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        s.get("k").await.unwrap(),
        Some(kv.clone()),
        "a failed create writes nothing"
    );
    assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(s.get("k2").await.unwrap(), None);
}

pub(crate) async fn update_conditional(s: Arc<dyn Store>) {
    assert!(matches!(s.update("k", v("x"), None).await, Err(StoreError::NotFound(k)) if k == "k"));
    assert!(matches!(
        s.update("k", v("x"), Some(1)).await,
        Err(StoreError::NotFound(_))
    ));
    let c = s.create("k", v("1")).await.unwrap();
    let u1 = s.update("k", v("2"), None).await.unwrap();
    assert!(u1.mod_revision > c.mod_revision);
    assert_eq!(
        (u1.create_revision, u1.value.clone()),
        (c.create_revision, v("2"))
    );
    match s.update("k", v("3"), Some(c.mod_revision)).await {
        Err(StoreError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (key.as_str(), expected, actual),
                ("k", c.mod_revision, u1.mod_revision)
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        s.get("k").await.unwrap(),
        Some(u1.clone()),
        "a conflict writes nothing"
    );
    let u2 = s.update("k", v("3"), Some(u1.mod_revision)).await.unwrap();
    assert!(u2.mod_revision > u1.mod_revision);
    assert_eq!(s.get("k").await.unwrap(), Some(u2));
}

pub(crate) async fn delete_conditional(s: Arc<dyn Store>) {
    assert!(matches!(s.delete("k", None).await, Err(StoreError::NotFound(k)) if k == "k"));
    assert!(matches!(
        s.delete("k", Some(1)).await,
        Err(StoreError::NotFound(_))
    ));
    let c = s.create("k", v("1")).await.unwrap();
    let u = s.update("k", v("2"), None).await.unwrap();
    match s.delete("k", Some(c.mod_revision)).await {
        Err(StoreError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (key.as_str(), expected, actual),
                ("k", c.mod_revision, u.mod_revision)
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get("k").await.unwrap(), Some(u.clone()));
    let (prev, rev) = s.delete("k", Some(u.mod_revision)).await.unwrap();
    assert_eq!(prev, u, "delete returns the value it deleted");
    assert!(rev > u.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), rev);
    assert_eq!(s.get("k").await.unwrap(), None);
    assert!(matches!(
        s.delete("k", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.update("k", v("x"), None).await,
        Err(StoreError::NotFound(_))
    ));
    let other = s.create("k2", v("1")).await.unwrap();
    assert_eq!(s.delete("k2", None).await.unwrap().0, other);
    assert!(s.list("", None, 0, None).await.unwrap().items.is_empty());
}

pub(crate) async fn revisions_strictly_increase(s: Arc<dyn Store>) {
    let mut last = s.current_revision().await.unwrap();
    for i in 0..4 {
        let key = format!("r/{i}");
        let c = s.create(&key, v("a")).await.unwrap();
        let u = s.update(&key, v("b"), Some(c.mod_revision)).await.unwrap();
        assert_eq!(
            s.get(&key).await.unwrap().unwrap().mod_revision,
            u.mod_revision
        );
        let (_, d) = s.delete(&key, None).await.unwrap();
        for rev in [c.mod_revision, u.mod_revision, d] {
            assert!(rev > last, "revision {rev} after {last}");
            last = rev;
        }
        assert_eq!(s.current_revision().await.unwrap(), d);
        // Failed writes do not move the revision.
        let _ = s.update(&key, v("c"), None).await.unwrap_err();
        let _ = s.delete(&key, None).await.unwrap_err();
        assert_eq!(s.current_revision().await.unwrap(), d);
    }
}

pub(crate) async fn create_after_delete_resets_create_revision(s: Arc<dyn Store>) {
    let c1 = s.create("k", v("1")).await.unwrap();
    s.update("k", v("2"), None).await.unwrap();
    let (_, d) = s.delete("k", None).await.unwrap();
    let c2 = s.create("k", v("3")).await.unwrap();
    assert!(c2.create_revision > d && c2.create_revision > c1.create_revision);
    assert_eq!(c2.create_revision, c2.mod_revision);
    assert_eq!(s.get("k").await.unwrap(), Some(c2.clone()));
    let u = s.update("k", v("4"), Some(c2.mod_revision)).await.unwrap();
    assert_eq!(u.create_revision, c2.create_revision);
}

pub(crate) async fn list_prefix_and_order(s: Arc<dyn Store>) {
    for key in ["a/2", "ab/1", "a/10", "b/1", "a/1", "a", "a/3"] {
        s.create(key, v(key)).await.unwrap();
    }
    s.delete("a/3", None).await.unwrap();
    let head = s.current_revision().await.unwrap();
    let page = s.list("a/", None, 0, None).await.unwrap();
    assert_eq!(
        keys(&page.items),
        ["a/1", "a/10", "a/2"],
        "byte order, no ab/, no deleted"
    );
    assert_eq!((page.revision, page.more), (head, false));
    for kv in &page.items {
        assert_eq!(Some(kv.clone()), s.get(&kv.key).await.unwrap());
        assert_eq!(kv.value, v(&kv.key));
    }
    let all = s.list("", None, 0, None).await.unwrap();
    assert_eq!(keys(&all.items), ["a", "a/1", "a/10", "a/2", "ab/1", "b/1"]);
    assert!(s.list("zz/", None, 0, None).await.unwrap().items.is_empty());
    assert_eq!(
        keys(&s.list("ab/", None, 0, None).await.unwrap().items),
        ["ab/1"]
    );
}

pub(crate) async fn list_pages(s: Arc<dyn Store>) {
    for i in 0..10 {
        s.create(&format!("p/{i:02}"), v("x")).await.unwrap();
    }
    s.create("q/0", v("x")).await.unwrap();
    let first = s.list("p/", None, 3, None).await.unwrap();
    assert_eq!(
        (keys(&first.items), first.more),
        (vec!["p/00", "p/01", "p/02"], true)
    );
    // Writes between pages must not show in later pages read at the first page's revision.
    s.create("p/05x", v("x")).await.unwrap();
    s.delete("p/07", None).await.unwrap();
    let (mut seen, mut after) = (keys(&first.items).join(" "), "p/02".to_owned());
    loop {
        let page = s
            .list("p/", Some(&after), 3, Some(first.revision))
            .await
            .unwrap();
        assert_eq!(page.revision, first.revision);
        assert!(page.items.len() <= 3);
        for kv in &page.items {
            seen = format!("{seen} {}", kv.key);
        }
        match page.items.last() {
            Some(last) if page.more => after = last.key.clone(),
            _ => break,
        }
    }
    assert_eq!(seen, "p/00 p/01 p/02 p/03 p/04 p/05 p/06 p/07 p/08 p/09");
    let now = s.list("p/", None, 0, None).await.unwrap();
    assert_eq!(now.items.len(), 10, "p/05x added, p/07 deleted");
    let exact = s.list("p/", None, 10, None).await.unwrap();
    assert_eq!(
        (exact.items.len(), exact.more),
        (10, false),
        "a full last page has no more"
    );
    let short = s.list("p/", None, 9, None).await.unwrap();
    assert_eq!((short.items.len(), short.more), (9, true));
    let rest = s.list("p/", Some("p/06"), 0, None).await.unwrap();
    assert_eq!(keys(&rest.items), ["p/08", "p/09"]);
    assert!(
        s.list("p/", Some("p/99"), 0, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let from_before = s.list("p/", Some("a"), 2, None).await.unwrap();
    assert_eq!(keys(&from_before.items), ["p/00", "p/01"]);
}

pub(crate) async fn list_at_past_revision(s: Arc<dyn Store>) {
    let a1 = s.create("h/a", v("a1")).await.unwrap();
    let b1 = s.create("h/b", v("b1")).await.unwrap();
    let a2 = s.update("h/a", v("a2"), None).await.unwrap();
    let c1 = s.create("h/c", v("c1")).await.unwrap();
    s.delete("h/b", None).await.unwrap();
    let old = s.list("h/", None, 0, Some(b1.mod_revision)).await.unwrap();
    assert_eq!(old.items, [a1.clone(), b1.clone()]);
    assert_eq!(old.revision, b1.mod_revision);
    let older = s.list("h/", None, 0, Some(a1.mod_revision)).await.unwrap();
    assert_eq!(older.items, [a1]);
    let now = s.list("h/", None, 0, None).await.unwrap();
    assert_eq!(now.items, [a2, c1]);
    let head = s.current_revision().await.unwrap();
    assert_eq!(
        s.list("h/", None, 0, Some(head)).await.unwrap().items,
        now.items
    );
    match s.list("h/", None, 0, Some(head + 1)).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (head + 1, head));
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

pub(crate) async fn watch_from_zero_replays_all(s: Arc<dyn Store>) {
    let c = s.create("w/a", v("1")).await.unwrap();
    let u = s.update("w/a", v("2"), None).await.unwrap();
    s.create("x/other", v("1")).await.unwrap();
    let b = s.create("w/b", v("1")).await.unwrap();
    let (_, d) = s.delete("w/a", None).await.unwrap();
    let mut w = s.watch("w/", 0).await.unwrap();
    let expected = [put(&c, None), put(&u, Some(&c)), put(&b, None), del(&u, d)];
    assert_eq!(next_events(&mut w, 4).await, expected);
    let live = s.create("w/c", v("1")).await.unwrap();
    assert_eq!(next_event(&mut w).await, put(&live, None));
}

pub(crate) async fn watch_from_revision_then_live(s: Arc<dyn Store>) {
    let a = s.create("n/a", v("1")).await.unwrap();
    let b = s.create("n/b", v("1")).await.unwrap();
    let a2 = s.update("n/a", v("2"), None).await.unwrap();
    let mut w = s.watch("n/", b.mod_revision).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        put(&a2, Some(&a)),
        "only changes after the revision"
    );
    let head = s.current_revision().await.unwrap();
    let mut from_head = s.watch("n/", head).await.unwrap();
    let c = s.create("n/c", v("1")).await.unwrap();
    let (_, d) = s.delete("n/b", None).await.unwrap();
    assert_eq!(next_events(&mut w, 2).await, [put(&c, None), del(&b, d)]);
    assert_eq!(
        next_events(&mut from_head, 2).await,
        [put(&c, None), del(&b, d)]
    );
    let head = s.current_revision().await.unwrap();
    match s.watch("n/", head + 1).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (head + 1, head));
        }
        Err(e) => panic!("expected FutureRevision, got {e:?}"),
        Ok(_) => panic!("expected FutureRevision, got a stream"),
    }
}

pub(crate) async fn watch_filters_by_prefix(s: Arc<dyn Store>) {
    let start = s.current_revision().await.unwrap();
    let mut live = s.watch("a/", start).await.unwrap();
    for key in ["ab/1", "b/1", "a"] {
        s.create(key, v("x")).await.unwrap();
    }
    let a1 = s.create("a/1", v("x")).await.unwrap();
    assert_eq!(next_event(&mut live).await, put(&a1, None));
    let mut replayed = s.watch("a/", start).await.unwrap();
    assert_eq!(next_event(&mut replayed).await, put(&a1, None));
    let mut everything = s.watch("", start).await.unwrap();
    let all: Vec<String> = next_events(&mut everything, 4)
        .await
        .iter()
        .map(|e| e.key().to_owned())
        .collect();
    assert_eq!(all, ["ab/1", "b/1", "a", "a/1"]);
}

pub(crate) async fn watch_delete_carries_prev(s: Arc<dyn Store>) {
    let c = s.create("d/k", v("1")).await.unwrap();
    let mut w = s.watch("d/", c.mod_revision).await.unwrap();
    let u = s.update("d/k", v("2"), None).await.unwrap();
    let (prev, d) = s.delete("d/k", Some(u.mod_revision)).await.unwrap();
    let live = next_events(&mut w, 2).await;
    assert_eq!(live, [put(&u, Some(&c)), del(&u, d)]);
    assert_eq!((live[1].revision(), live[1].key()), (d, "d/k"));
    assert_eq!(prev, u);
    let mut replay = s.watch("d/", c.mod_revision).await.unwrap();
    assert_eq!(
        next_events(&mut replay, 2).await,
        live,
        "replay and live events agree"
    );
}

pub(crate) async fn watch_during_writes_has_no_gap_or_duplicate(s: Arc<dyn Store>) {
    const BEFORE: usize = 10;
    const DURING: usize = 30;
    let mut revisions = Vec::new();
    for i in 0..BEFORE {
        revisions.push(
            s.create(&format!("s/{i}"), v("x"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    let writer = Arc::clone(&s);
    let writes = tokio::spawn(async move {
        let mut revs = Vec::new();
        for i in 0..DURING {
            let key = format!("s/{}", i % BEFORE);
            revs.push(
                writer
                    .update(&key, v(&i.to_string()), None)
                    .await
                    .unwrap()
                    .mod_revision,
            );
            writer.create(&format!("other/{i}"), v("x")).await.unwrap();
        }
        revs
    });
    let mut w = s.watch("s/", 0).await.unwrap();
    let seen: Vec<Revision> = next_events(&mut w, BEFORE + DURING)
        .await
        .iter()
        .map(WatchEvent::revision)
        .collect();
    revisions.extend(writes.await.unwrap());
    assert_eq!(seen, revisions);
}

pub(crate) async fn compaction(s: Arc<dyn Store>) {
    let a1 = s.create("c/a", v("1")).await.unwrap();
    s.create("c/b", v("1")).await.unwrap();
    let a2 = s.update("c/a", v("2"), None).await.unwrap();
    let (_, deleted_b) = s.delete("c/b", None).await.unwrap();
    let d1 = s.create("c/d", v("1")).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), 0);
    s.compact(deleted_b).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), deleted_b);
    // Live values survive.
    assert_eq!(s.get("c/a").await.unwrap(), Some(a2.clone()));
    assert_eq!(s.get("c/b").await.unwrap(), None);
    assert_eq!(
        s.list("c/", None, 0, None).await.unwrap().items,
        [a2.clone(), d1.clone()]
    );
    // Below the compacted revision is gone; at it still works.
    let gone = StoreError::Compacted {
        requested: a1.mod_revision,
        compacted: deleted_b,
    };
    match s.list("c/", None, 0, Some(a1.mod_revision)).await {
        Err(e) => assert_eq!(e.to_string(), gone.to_string()),
        Ok(r) => panic!("expected Compacted, got {r:?}"),
    }
    match s.watch("c/", a1.mod_revision).await {
        Err(e) => assert_eq!(e.to_string(), gone.to_string()),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    assert_eq!(
        s.list("c/", None, 0, Some(deleted_b)).await.unwrap().items,
        std::slice::from_ref(&a2)
    );
    let mut w = s.watch("c/", deleted_b).await.unwrap();
    assert_eq!(next_event(&mut w).await, put(&d1, None));
    let a3 = s.update("c/a", v("3"), None).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        put(&a3, Some(&a2)),
        "prev survives compaction"
    );
    // etcd's rules for the revision argument; compacting the same revision again is fine.
    s.compact(deleted_b).await.unwrap();
    assert!(matches!(
        s.compact(deleted_b - 1).await,
        Err(StoreError::Compacted { .. })
    ));
    let head = s.current_revision().await.unwrap();
    assert!(matches!(
        s.compact(head + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));
    // Compact everything: only live values are left, and the head does not move back.
    let (_, deleted_d) = s.delete("c/d", None).await.unwrap();
    s.compact(deleted_d).await.unwrap();
    assert_eq!(s.current_revision().await.unwrap(), deleted_d);
    assert_eq!(
        s.list("c/", None, 0, None).await.unwrap().items,
        std::slice::from_ref(&a3)
    );
    assert_eq!(
        s.list("c/", None, 0, Some(deleted_d)).await.unwrap().items,
        std::slice::from_ref(&a3)
    );
    let mut w = s.watch("c/", deleted_d).await.unwrap();
    let a4 = s
        .update("c/a", v("4"), Some(a3.mod_revision))
        .await
        .unwrap();
    assert!(a4.mod_revision > deleted_d);
    assert_eq!(next_event(&mut w).await, put(&a4, Some(&a3)));
}

pub(crate) async fn concurrent_conflicting_updates(s: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    let mut rev = s.create("race", v("start")).await.unwrap().mod_revision;
    for round in 0..5 {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    s.update("race", v(&format!("{round}/{i}")), Some(rev))
                        .await
                })
            })
            .collect();
        let (mut winners, mut actuals) = (Vec::new(), Vec::new());
        for task in tasks {
            match task.await.unwrap() {
                Ok(kv) => winners.push(kv),
                Err(StoreError::Conflict {
                    expected, actual, ..
                }) => {
                    assert_eq!(expected, rev);
                    actuals.push(actual);
                }
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one writer wins round {round}");
        let winner = winners.remove(0);
        assert_eq!(
            actuals,
            vec![winner.mod_revision; WRITERS - 1],
            "losers see the winner"
        );
        assert_eq!(s.get("race").await.unwrap(), Some(winner.clone()));
        rev = winner.mod_revision;
    }
}

pub(crate) async fn close_ends_everything(s: Arc<dyn Store>) {
    let kv = s.create("k", v("1")).await.unwrap();
    let mut live = s.watch("", kv.mod_revision).await.unwrap();
    let mut unread = s.watch("", 0).await.unwrap();
    s.close().await.unwrap();
    assert!(matches!(s.get("k").await, Err(StoreError::Closed)));
    assert!(matches!(
        s.create("k2", v("1")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.update("k", v("2"), None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(s.delete("k", None).await, Err(StoreError::Closed)));
    assert!(matches!(
        s.list("", None, 0, None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.current_revision().await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.compacted_revision().await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.compact(kv.mod_revision).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(s.watch("", 0).await, Err(StoreError::Closed)));
    assert!(
        next_item(&mut live).await.is_none(),
        "a live watch ends on close"
    );
    // A watch that had not started its replay may or may not deliver it, but it ends.
    while let Some(item) = next_item(&mut unread).await {
        assert!(item.is_ok());
    }
    s.close().await.unwrap();
}
