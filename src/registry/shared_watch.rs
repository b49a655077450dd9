//! One registry watch per resource, shared by every in-process subscriber: the controllers'
//! watchers and the token authenticator's cache invalidation (a fan-out, like one informer
//! shared by several controllers in client-go).
//!
//! It lives in `registry` because both of its users may use `registry` and neither may use
//! the other (`tokens` must not use `controllers`). It owns the one watch per resource, its
//! restart with backoff, and each subscriber's resync; it must not know what a subscriber
//! does with an event, and it never blocks on one: a subscriber that falls behind is told
//! it was interrupted and resyncs on its own, while the others go on.
//!
//! Each subscription sees, in order: [`Notice::Resynced`] once the watch runs (with the
//! current objects, listed for that subscriber, when it asked for them), then every change
//! as [`Notice::Event`]. When the watch ends (an expired revision, a lagging store watch)
//! or the subscriber falls behind, it sees [`Notice::Interrupted`] — changes from there on
//! are unknown — and then `Resynced` again. A change may come twice around a resync (in
//! the list and as an event); level-triggered subscribers do not mind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;

use super::selectors::FieldSelector;
use super::{EventType, ListOptions, Registry, Resource};

/// How many changes a subscriber may be behind before it is interrupted and resyncs.
const BUFFER: usize = 1024;

/// Restart delays of the shared watch and of a subscriber's list: 100 ms doubling to 30 s,
/// the delays the controllers' own watchers used, so a sick store is not hammered.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(1_u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

/// What a subscription yields.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// The watch is running (again): every later change comes as an [`Notice::Event`].
    /// Holds the objects listed after the watch started, narrowed by the subscription's
    /// field selector, when the subscription asked for a list; else nothing.
    Resynced(Vec<Value>),
    /// The watch ended, or this subscriber fell behind: changes from here to the next
    /// `Resynced` are not seen.
    Interrupted,
    /// One change, for every subscriber; not narrowed by any selector. A `Deleted` event
    /// carries the object's last state.
    Event(EventType, Arc<Value>),
}

/// What the shared watch broadcasts.
#[derive(Debug, Clone)]
enum Message {
    Watching,
    Interrupted,
    Event(EventType, Arc<Value>),
}

/// The shared watches of one registry, by resource.
#[derive(Debug, Default)]
pub(crate) struct SharedWatches {
    by_resource: Mutex<HashMap<(&'static str, &'static str), Arc<Shared>>>,
}

/// One resource's shared watch, as subscribers see it.
#[derive(Debug)]
struct Shared {
    tx: broadcast::Sender<Message>,
    /// Whether the watch runs now; set and broadcast together under this lock, so a new
    /// subscriber either sees it set or receives the `Watching` that sets it.
    watching: Mutex<bool>,
}

impl Shared {
    fn watching(&self) -> MutexGuard<'_, bool> {
        // The flag is a plain bool: a panic while holding the lock cannot leave it torn.
        self.watching.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_watching(&self, on: bool) {
        let mut watching = self.watching();
        *watching = on;
        // No receiver is fine: the pump stops once it notices.
        let _ = self.tx.send(if on {
            Message::Watching
        } else {
            Message::Interrupted
        });
    }
}

impl SharedWatches {
    fn lock(&self) -> MutexGuard<'_, HashMap<(&'static str, &'static str), Arc<Shared>>> {
        // Every mutation is one insert or remove: a poisoned map is still consistent.
        self.by_resource.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops `res`'s shared watch `ours` if nobody subscribes to it any more, and says
    /// whether it is gone. Under the map's lock, so a subscription cannot slip in between
    /// the check and the removal.
    fn remove_if_unused(&self, res: &Resource, ours: &Arc<Shared>) -> bool {
        let mut map = self.lock();
        let key = (res.group, res.plural);
        match map.get(&key) {
            Some(shared) if Arc::ptr_eq(shared, ours) => {
                let unused = shared.tx.receiver_count() == 0;
                if unused {
                    map.remove(&key);
                }
                unused
            }
            // Not in the map (cannot happen: only this watch removes itself): stop.
            _ => true,
        }
    }
}

/// A subscriber's end of a shared watch.
#[derive(Debug)]
pub(crate) struct Subscription {
    registry: Registry,
    resource: &'static Resource,
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Message>,
    /// `Some` when the subscriber wants the current objects at every resync.
    list: Option<FieldSelector>,
    resync_due: bool,
}

impl Registry {
    /// Subscribes to the shared watch of `res` in every namespace, starting it if this is
    /// its first subscriber. With `list`, every [`Notice::Resynced`] carries the objects
    /// that match the selector.
    pub(crate) fn shared_watch(
        &self,
        res: &'static Resource,
        list: Option<FieldSelector>,
    ) -> Subscription {
        let mut map = self.shared_watches.lock();
        let shared = map
            .entry((res.group, res.plural))
            .or_insert_with(|| {
                let (tx, _) = broadcast::channel(BUFFER);
                let shared = Arc::new(Shared {
                    tx,
                    watching: Mutex::new(false),
                });
                tokio::spawn(run(self.clone(), res, shared.clone()));
                shared
            })
            .clone();
        let watching = shared.watching();
        let rx = shared.tx.subscribe();
        let resync_due = *watching;
        drop(watching);
        drop(map);
        Subscription {
            registry: self.clone(),
            resource: res,
            shared,
            rx,
            list,
            resync_due,
        }
    }
}

impl Subscription {
    /// The next notice. `None` only if the shared watch is gone, which it is not while
    /// this subscription lives.
    pub(crate) async fn next(&mut self) -> Option<Notice> {
        loop {
            if self.resync_due {
                self.resync_due = false;
                return Some(Notice::Resynced(self.list_objects().await));
            }
            match self.rx.recv().await {
                Ok(Message::Watching) => self.resync_due = true,
                Ok(Message::Interrupted) => return Some(Notice::Interrupted),
                Ok(Message::Event(event, obj)) => return Some(Notice::Event(event, obj)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Changes were skipped. If the watch runs, list now: whatever was
                    // skipped happened before. If not, its `Watching` is still to come.
                    self.resync_due = *self.shared.watching();
                    return Some(Notice::Interrupted);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The current objects, for a subscription that asked for them; retried with backoff
    /// until the registry answers (changes meanwhile wait in the buffer).
    async fn list_objects(&self) -> Vec<Value> {
        let Some(selector) = &self.list else {
            return Vec::new();
        };
        let opts = ListOptions {
            field_selector: selector.clone(),
            ..Default::default()
        };
        let mut failures: u32 = 0;
        loop {
            match self.registry.list(self.resource, None, &opts).await {
                Ok(list) => return list.items,
                Err(e) => {
                    tracing::warn!("listing {} failed: {e}; retrying", self.resource.plural);
                    tokio::time::sleep(backoff(failures)).await;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }
}

/// Runs the shared watch of `res` until nobody subscribes to it any more.
async fn run(registry: Registry, res: &'static Resource, shared: Arc<Shared>) {
    let pump = pump(registry.clone(), res, shared.clone());
    tokio::pin!(pump);
    loop {
        tokio::select! {
            _ = shared.tx.closed() => {
                if registry.shared_watches.remove_if_unused(res, &shared) {
                    return;
                }
            }
            _ = &mut pump => return,
        }
    }
}

/// Watches `res` from the current revision and broadcasts every change; a watch that ends
/// or fails (an expired revision after compaction, a lagging store watch) is started
/// again with backoff, each restart announced as `Interrupted` then `Watching`.
async fn pump(registry: Registry, res: &'static Resource, shared: Arc<Shared>) {
    let mut failures: u32 = 0;
    loop {
        let stream = match registry.current_revision().await {
            Ok(rv) => {
                let opts = ListOptions {
                    resource_version: Some(rv.to_string()),
                    ..Default::default()
                };
                registry.watch(res, None, &opts).await
            }
            Err(e) => Err(e),
        };
        match stream {
            Ok(mut stream) => {
                shared.set_watching(true);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok((EventType::Bookmark, _)) => {}
                        Ok((event, obj)) => {
                            failures = 0;
                            // No receiver is fine: `run` stops the pump once it notices.
                            let _ = shared.tx.send(Message::Event(event, obj));
                        }
                        Err(e) => {
                            tracing::debug!("watch of {} ended: {e}; restarting", res.plural);
                            break;
                        }
                    }
                }
                shared.set_watching(false);
            }
            Err(e) => {
                tracing::warn!("watching {} failed: {e}; retrying", res.plural);
            }
        }
        // A watch that keeps ending at once (a closing store) must not spin.
        tokio::time::sleep(backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::registry::resources;
    use serde_json::json;

    fn name(obj: &Value) -> &str {
        obj["metadata"]["name"].as_str().unwrap_or_default()
    }

    async fn next(sub: &mut Subscription) -> Notice {
        tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a notice in time")
            .expect("the shared watch lives")
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_change_from_one_watch() {
        let (registry, _dir) = crate::registry::temp_registry(FakeClock::at(1_795_392_244)).await;
        let cms = resources::core("configmaps");
        registry
            .create(
                cms,
                Some("default"),
                json!({"metadata": {"name": "before"}}),
                false,
            )
            .await
            .unwrap();
        let mut listing = registry.shared_watch(cms, Some(FieldSelector::default()));
        let mut plain = registry.shared_watch(cms, None);
        assert_eq!(
            registry.shared_watches.lock().len(),
            1,
            "one watch per resource"
        );
        match next(&mut listing).await {
            Notice::Resynced(objects) => {
                assert_eq!(objects.iter().map(name).collect::<Vec<_>>(), ["before"])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(next(&mut plain).await, Notice::Resynced(o) if o.is_empty()));
        registry
            .create(
                cms,
                Some("default"),
                json!({"metadata": {"name": "after"}}),
                false,
            )
            .await
            .unwrap();
        for sub in [&mut listing, &mut plain] {
            match next(sub).await {
                Notice::Event(EventType::Added, obj) => assert_eq!(name(&obj), "after"),
                other => panic!("{other:?}"),
            }
        }
        // The last subscriber gone, the watch stops and a new subscriber starts another.
        drop(listing);
        drop(plain);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !registry.shared_watches.lock().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the watch stops");
            tokio::task::yield_now().await;
        }
        let mut again = registry.shared_watch(cms, None);
        assert!(matches!(next(&mut again).await, Notice::Resynced(_)));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_resyncs_without_holding_up_the_others() {
        let (registry, _dir) = crate::registry::temp_registry(FakeClock::at(1_795_392_244)).await;
        let cms = resources::core("configmaps");
        let mut slow = registry.shared_watch(cms, Some(FieldSelector::default()));
        let mut quick = registry.shared_watch(cms, None);
        assert!(matches!(next(&mut slow).await, Notice::Resynced(_)));
        assert!(matches!(next(&mut quick).await, Notice::Resynced(_)));
        let total = BUFFER + 8;
        for i in 0..total {
            registry
                .create(
                    cms,
                    Some("default"),
                    json!({"metadata": {"name": format!("cm-{i}")}}),
                    false,
                )
                .await
                .unwrap();
            // The quick one keeps up.
            match next(&mut quick).await {
                Notice::Event(EventType::Added, obj) => assert_eq!(name(&obj), format!("cm-{i}")),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(next(&mut slow).await, Notice::Interrupted));
        match next(&mut slow).await {
            Notice::Resynced(objects) => assert_eq!(objects.len(), total),
            other => panic!("{other:?}"),
        }
    }
}
