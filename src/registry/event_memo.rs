//! Watch objects decoded once and watch lines encoded once, for every watcher of the process.
//!
//! A change reaches each watcher of its resource. Without this, each watcher decodes the
//! stored bytes and encodes its `{"type":…,"object":…}` line itself. With a thousand
//! watchers that is a thousand decodes and encodes of one object. kube-apiserver's watch
//! cache shares the work through `cachingObject`; this memo does the same. Objects are keyed
//! by the revision they are at (a revision names one state of one key), and lines by that
//! revision and the event type. Only the last [`CAPACITY`] of each are kept. A watcher further
//! behind decodes on its own: that is slower, never wrong.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde_json::Value;

use super::{EventType, Result};
use crate::store::Revision;

/// Entries kept of each kind: more than a watcher is let fall behind in a burst it keeps up
/// with is not needed, since the point is the watchers that read the same change together.
const CAPACITY: usize = 1024;

/// The shared decoded objects and encoded lines of one registry.
#[derive(Debug, Default)]
pub(crate) struct EventMemo {
    objects: Mutex<Ring<Revision, Arc<Value>>>,
    lines: Mutex<Ring<(Revision, EventType), Bytes>>,
}

#[derive(Debug)]
struct Ring<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K, V> Default for Ring<K, V> {
    fn default() -> Self {
        Ring {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq + Copy, V: Clone> Ring<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
    }
}

/// The memo's maps hold only finished values, so a poisoned lock still guards a sound map.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventMemo {
    /// The object at `revision`, decoded by `decode` only when no watcher did yet.
    pub(crate) fn object(
        &self,
        revision: Revision,
        decode: impl FnOnce() -> Result<Value>,
    ) -> Result<Arc<Value>> {
        if let Some(obj) = lock(&self.objects).get(&revision) {
            return Ok(obj);
        }
        // Decoded outside the lock: two watchers may both decode a new change, and the
        // second insert changes nothing.
        let obj = Arc::new(decode()?);
        lock(&self.objects).insert(revision, Arc::clone(&obj));
        Ok(obj)
    }

    /// The watch line of `kind` for the object at `revision`, encoded by `encode` only
    /// when no watcher did yet.
    pub(crate) fn line(
        &self,
        revision: Revision,
        kind: EventType,
        encode: impl FnOnce() -> Bytes,
    ) -> Bytes {
        if let Some(line) = lock(&self.lines).get(&(revision, kind)) {
            return line;
        }
        let line = encode();
        lock(&self.lines).insert((revision, kind), line.clone());
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_revision_is_decoded_and_each_line_encoded_once() {
        let memo = EventMemo::default();
        let mut decodes = 0;
        for _ in 0..3 {
            let obj = memo
                .object(7, || {
                    decodes += 1;
                    Ok(Value::from("seven"))
                })
                .unwrap();
            assert_eq!(*obj, Value::from("seven"));
        }
        assert_eq!(decodes, 1);
        let mut encodes = 0;
        for kind in [EventType::Added, EventType::Added, EventType::Deleted] {
            memo.line(7, kind, || {
                encodes += 1;
                Bytes::from_static(b"line")
            });
        }
        assert_eq!(encodes, 2, "one per event type");
    }

    #[test]
    fn only_the_last_entries_are_kept() {
        let memo = EventMemo::default();
        for rev in 0..(CAPACITY as Revision + 10) {
            memo.object(rev, || Ok(Value::from(rev))).unwrap();
        }
        let mut decoded = false;
        memo.object(0, || {
            decoded = true;
            Ok(Value::Null)
        })
        .unwrap();
        assert!(decoded, "the oldest was dropped");
        assert_eq!(lock(&memo.objects).map.len(), CAPACITY);
    }
}
