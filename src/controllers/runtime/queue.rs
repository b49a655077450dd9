//! The work queue (kube-runtime's `scheduler`, client-go's rate-limited queue): keys are
//! de-duplicated, delayed keys wait for their time. It must not know what a key means,
//! run reconciles or decide delays (the driver does).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A de-duplicating queue of keys with delayed re-adds (client-go's rate-limited work
/// queue, for one worker: a key is never reconciled twice at once, and an event that
/// arrives while its key is being reconciled queues it again).
pub(crate) struct WorkQueue<K> {
    state: Mutex<QueueState<K>>,
    notify: Notify,
}

struct QueueState<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    delayed: Vec<(Instant, K)>,
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            state: Mutex::new(QueueState {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                delayed: Vec::new(),
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<K>> {
        // A panic while holding this lock leaves the queue consistent (every mutation is
        // a single push or pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, key: K) {
        let mut s = self.lock();
        if s.queued.insert(key.clone()) {
            s.ready.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        self.lock().delayed.push((Instant::now() + delay, key));
        self.notify.notify_one();
    }

    /// The next key, waiting for one to be added or for a delayed one to fall due.
    pub(crate) async fn get(&self) -> K {
        loop {
            let next_due = {
                let mut s = self.lock();
                let now = Instant::now();
                let mut i = 0;
                while i < s.delayed.len() {
                    if s.delayed[i].0 <= now {
                        let (_, key) = s.delayed.swap_remove(i);
                        if s.queued.insert(key.clone()) {
                            s.ready.push_back(key);
                        }
                    } else {
                        i += 1;
                    }
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    return key;
                }
                s.delayed.iter().map(|(at, _)| *at).min()
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_deduplicates_and_delays() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.get().await, "a");
        assert_eq!(q.get().await, "b");
        // Re-added after being taken: it comes again.
        q.add("a");
        assert_eq!(q.get().await, "a");
        q.add_after("late", Duration::from_millis(20));
        q.add("now");
        assert_eq!(q.get().await, "now");
        let late = tokio::time::timeout(Duration::from_secs(10), q.get()).await;
        assert_eq!(late.unwrap(), "late");
    }
}
