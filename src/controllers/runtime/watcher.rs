//! The watcher (kube-runtime's `watcher`): lists a resource, then watches from the list's
//! resourceVersion, and lists again after any error (an expired revision, a lagging watch)
//! with backoff, turning every object seen into keys on the queue. It must not reconcile
//! or write.

use std::sync::Arc;

use futures::StreamExt;

use super::backoff::backoff;
use super::queue::WorkQueue;
use super::{Controller, Watch};
use crate::registry::{EventType, ListOptions, Registry};

/// Lists `w.resource` and enqueues every object's keys, then watches from the list's
/// resourceVersion; a watch that ends or fails (Expired after compaction, a lagging
/// watcher) is listed again, which re-enqueues everything (level-triggered: harmless).
pub(crate) async fn feed<C: Controller>(
    controller: Arc<C>,
    registry: Registry,
    w: Watch,
    queue: Arc<WorkQueue<C::Key>>,
) {
    let mut failures: u32 = 0;
    loop {
        let opts = ListOptions {
            field_selector: w.field_selector.clone(),
            ..Default::default()
        };
        let list = match registry.list(w.resource, None, &opts).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "{}: listing {} failed: {e}; retrying",
                    controller.name(),
                    w.resource.plural
                );
                tokio::time::sleep(backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
        };
        for obj in &list.items {
            for key in controller.keys(w.resource, EventType::Added, obj) {
                queue.add(key);
            }
        }
        let opts = ListOptions {
            resource_version: Some(list.resource_version.to_string()),
            ..opts
        };
        let mut stream = match registry.watch(w.resource, None, &opts).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(
                    "{}: watching {} failed: {e}; listing again",
                    controller.name(),
                    w.resource.plural
                );
                tokio::time::sleep(backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
        };
        while let Some(ev) = stream.next().await {
            match ev {
                Ok((event, obj)) => {
                    failures = 0;
                    for key in controller.keys(w.resource, event, &obj) {
                        queue.add(key);
                    }
                }
                Err(e) => {
                    tracing::debug!(
                        "{}: watch of {} ended: {e}; listing again",
                        controller.name(),
                        w.resource.plural
                    );
                    break;
                }
            }
        }
        // A watch that keeps ending at once (a closing store) must not spin.
        tokio::time::sleep(backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}
