//! The watcher (kube-runtime's `watcher` and trigger streams): subscribes to the registry's
//! shared watch of a resource, lists at every (re)start of that watch, and turns every
//! object seen into keys on the queue. The one watch per resource, its restarts and their
//! backoff belong to `registry::shared_watch`; this file must not reconcile or write.

use std::sync::Arc;

use super::queue::WorkQueue;
use super::{Controller, Watch};
use crate::registry::shared_watch::Notice;
use crate::registry::{EventType, Registry};

/// Enqueues the keys of every object of `w.resource` that `w.field_selector` selects: all
/// of them whenever the shared watch (re)starts or this watcher fell behind (listed again,
/// which re-enqueues everything: level-triggered, so harmless), then those of each change.
///
/// The selector is applied here, to the shared watch's events. The fields our controllers
/// select on (`type`, `metadata.name`, `metadata.namespace`) never change on an object, so
/// no object leaves or enters a selection by an update, and this sees exactly what a watch
/// narrowed by the same selector would.
pub(crate) async fn feed<C: Controller>(
    controller: Arc<C>,
    registry: Registry,
    w: Watch,
    queue: Arc<WorkQueue<C::Key>>,
) {
    let mut watch = registry.shared_watch(w.resource, Some(w.field_selector.clone()));
    while let Some(notice) = watch.next().await {
        match notice {
            Notice::Resynced(objects) => {
                for obj in &objects {
                    for key in controller.keys(w.resource, EventType::Added, obj) {
                        queue.add(key);
                    }
                }
            }
            Notice::Interrupted => {
                tracing::debug!(
                    "{}: watch of {} interrupted; listing again",
                    controller.name(),
                    w.resource.plural
                );
            }
            Notice::Event(event, obj) => {
                if w.field_selector.matches(&obj) {
                    for key in controller.keys(w.resource, event, &obj) {
                        queue.add(key);
                    }
                }
            }
        }
    }
}
