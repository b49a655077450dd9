//! The driver (kube-runtime's `controller` runner): runs one controller's watchers, its
//! extra key sources and its single worker, which takes keys from the queue, reconciles
//! them behind the [`LeaderGate`], and requeues failures with backoff. It must not know
//! any one controller.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::backoff::backoff;
use super::queue::WorkQueue;
use super::watcher::feed;
use super::{Action, Controller, ControllerError};
use crate::registry::Registry;

/// Only one replica may run controllers once several share a store; the etcd issue will
/// add a Lease-based gate.
#[async_trait::async_trait]
pub(crate) trait LeaderGate: Send + Sync {
    /// Returns once this process holds the leadership.
    async fn wait_until_leader(&self);
    /// Whether this process holds the leadership now. Checked before every reconcile and
    /// about once a second; when it turns false the gated controllers stop and [`run`](super::super::run)
    /// waits for leadership again.
    fn is_leader(&self) -> bool;
}

/// The gate of a single process: always the leader.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AlwaysLeader;

#[async_trait::async_trait]
impl LeaderGate for AlwaysLeader {
    async fn wait_until_leader(&self) {}

    fn is_leader(&self) -> bool {
        true
    }
}

/// Resolves once `stop` says true (or its sender is gone, so it never can).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Runs one controller until `stop` says true: feeders fill the queue, one worker drains
/// it. A reconcile in progress is finished, never cancelled halfway between two writes.
pub(crate) async fn drive<C: Controller>(
    controller: Arc<C>,
    registry: Registry,
    leader: Option<Arc<dyn LeaderGate>>,
    mut stop: watch::Receiver<bool>,
) {
    let queue = Arc::new(WorkQueue::<C::Key>::new());
    // Dropping the set at the end aborts every feeder.
    let mut feeders = start_feeders(&controller, &registry, &queue);
    tracing::debug!("controller {} started", controller.name());
    let mut failures: HashMap<C::Key, u32> = HashMap::new();
    loop {
        let key = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            key = queue.get() => key,
        };
        if leader.as_ref().is_some_and(|l| !l.is_leader()) {
            break;
        }
        let result = controller.reconcile(&key).await;
        if let Some(after) = next_look(controller.name(), &key, result, &mut failures) {
            queue.add_after(key, after);
        }
    }
    feeders.shutdown().await;
    tracing::debug!("controller {} stopped", controller.name());
}

/// Fills `queue` from every source of keys the controller names: a watcher per watched
/// resource, its external keys, and its initial keys (queued at once).
fn start_feeders<C: Controller>(
    controller: &Arc<C>,
    registry: &Registry,
    queue: &Arc<WorkQueue<C::Key>>,
) -> JoinSet<()> {
    let mut feeders = JoinSet::new();
    for w in controller.watches() {
        feeders.spawn(feed(controller.clone(), registry.clone(), w, queue.clone()));
    }
    if let Some(mut external) = controller.external_keys() {
        let queue = queue.clone();
        feeders.spawn(async move {
            while let Some(key) = external.next().await {
                queue.add(key);
            }
        });
    }
    for key in controller.initial_keys() {
        queue.add(key);
    }
    feeders
}

/// When to reconcile `key` again after `result`, if ever: as the [`Action`] says after a
/// success; after a backoff that doubles with each consecutive failure of the key when
/// the error is retriable (kube-runtime leaves this to an `error_policy`); never, until
/// its next change, otherwise. Keeps `failures` counted per key.
fn next_look<K: Clone + Eq + Hash + Debug>(
    name: &str,
    key: &K,
    result: Result<Action, ControllerError>,
    failures: &mut HashMap<K, u32>,
) -> Option<Duration> {
    match result {
        Ok(action) => {
            failures.remove(key);
            action.requeue_after()
        }
        Err(e) if e.retriable() => {
            let n = failures.entry(key.clone()).or_insert(0);
            let delay = backoff(*n);
            *n = n.saturating_add(1);
            if matches!(e, ControllerError::Waiting(_)) {
                tracing::debug!("{name}: {e}; again in {delay:?}");
            } else {
                tracing::warn!("{name}: reconciling {key:?} failed: {e}; retrying in {delay:?}");
            }
            Some(delay)
        }
        Err(e) => {
            failures.remove(key);
            tracing::warn!("{name}: reconciling {key:?} failed: {e}; waiting for the next change");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::rig;
    use crate::registry::{EventType, Resource};
    use serde_json::Value;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A periodic job: no watches, one key at start, requeued after each pass.
    struct Ticker {
        passes: AtomicU32,
        ran: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl Controller for Ticker {
        type Key = ();

        fn name(&self) -> &'static str {
            "ticker"
        }

        fn watches(&self) -> Vec<super::super::Watch> {
            Vec::new()
        }

        fn keys(&self, _: &Resource, _: EventType, _: &Value) -> Vec<()> {
            Vec::new()
        }

        fn initial_keys(&self) -> Vec<()> {
            vec![()]
        }

        async fn reconcile(&self, _: &()) -> Result<Action, ControllerError> {
            let n = self.passes.fetch_add(1, Ordering::SeqCst) + 1;
            self.ran.notify_one();
            Ok(if n < 3 {
                Action::requeue(Duration::from_millis(10))
            } else {
                Action::await_change()
            })
        }
    }

    #[tokio::test]
    async fn requeue_reconciles_the_key_again() {
        let rig = rig().await;
        let ticker = Arc::new(Ticker {
            passes: AtomicU32::new(0),
            ran: tokio::sync::Notify::new(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let running = tokio::spawn(drive(ticker.clone(), rig.registry.clone(), None, stop_rx));
        tokio::time::timeout(Duration::from_secs(10), async {
            while ticker.passes.load(Ordering::SeqCst) < 3 {
                ticker.ran.notified().await;
            }
        })
        .await
        .unwrap();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap()
            .unwrap();
    }
}
