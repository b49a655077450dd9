//! The reconcile runtime, shaped like kube-runtime's: the [`Controller`] contract (what a
//! controller watches, how an object maps to keys, and `reconcile(key)`), the typed
//! [`ControllerError`], and the parts that drive it, one file each: `queue` (the
//! de-duplicating work queue), `watcher` (keys from the registry's shared watch of each
//! resource, everything listed again when that watch restarts), `driver` (the worker loop,
//! retry with backoff, the leader gate), `lease` (the Lease-based leader gate of several
//! replicas) and `backoff`.
//!
//! It must not know any one controller, HTTP or the store: it reads through the registry
//! only, and the controllers live one per file beside it.

pub(crate) mod backoff;
pub(crate) mod driver;
pub(crate) mod lease;
pub(crate) mod queue;
pub(crate) mod watcher;

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use futures::stream::BoxStream;
use serde_json::Value;

use crate::registry::selectors::FieldSelector;
use crate::registry::{EventType, RegistryError, Resource};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControllerError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No signing key is configured, or signing failed.
    #[error("cannot sign a legacy service account token: {0}")]
    Sign(String),
    /// Not done yet, through no fault (a namespace waiting for its content's finalizers):
    /// tried again with backoff, and logged quietly.
    #[error("{0}")]
    Waiting(String),
}

impl ControllerError {
    /// Whether trying again can help. A write the registry refuses as invalid or bad
    /// (an `immutable` object, a name too long) fails the same way every time; the next
    /// event for the key tries again. Everything else (storage errors, races that outlived
    /// the registry's own retries) is retried with backoff.
    pub(crate) fn retriable(&self) -> bool {
        match self {
            ControllerError::Registry(
                RegistryError::Invalid { .. }
                | RegistryError::BadRequest(_)
                | RegistryError::Forbidden { .. }
                | RegistryError::NamespaceTerminating { .. },
            ) => false,
            ControllerError::Registry(_) | ControllerError::Waiting(_) => true,
            ControllerError::Sign(_) => false,
        }
    }
}

/// One resource a controller watches, in every namespace.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) resource: &'static Resource,
    /// Narrows the lists and the events of the resource's shared watch (e.g.
    /// `type=kubernetes.io/service-account-token`); only on fields an object never changes.
    pub(crate) field_selector: FieldSelector,
}

impl Watch {
    pub(crate) fn all(resource: &'static Resource) -> Watch {
        Watch {
            resource,
            field_selector: FieldSelector::default(),
        }
    }

    /// A watch narrowed by a field selector. A selector the resource does not support is a
    /// programming error caught by the tests; it falls back to watching everything, which
    /// is only slower because `Controller::keys` filters again.
    pub(crate) fn selected(resource: &'static Resource, selector: &str) -> Watch {
        let field_selector = match FieldSelector::parse(selector, resource.field_selectors) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("controller watch on {}: {e}", resource.plural);
                FieldSelector::default()
            }
        };
        Watch {
            resource,
            field_selector,
        }
    }
}

/// A reconcile loop: which resources feed it, which keys an object maps to, and how to
/// bring one key's world to the desired state.
#[async_trait::async_trait]
pub(crate) trait Controller: Send + Sync + 'static {
    /// What the work queue holds. Equal keys queued twice are reconciled once.
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;

    /// For logs.
    fn name(&self) -> &'static str;

    /// Resources whose lists and watch events enqueue keys.
    fn watches(&self) -> Vec<Watch>;

    /// The keys an object of `resource` maps to. Listed objects come as `Added`; a
    /// `Deleted` event carries the object's last state.
    fn keys(&self, resource: &Resource, event: EventType, obj: &Value) -> Vec<Self::Key>;

    /// Keys enqueued at start (kube-runtime's `reconcile_all_on` for a start trigger):
    /// what a controller keeps without any object naming it.
    fn initial_keys(&self) -> Vec<Self::Key> {
        Vec::new()
    }

    /// Keys from outside the registry (legacy token uses). Called once per start.
    fn external_keys(&self) -> Option<BoxStream<'static, Self::Key>> {
        None
    }

    /// Reads the current state for `key` and makes it right, and says when to look again.
    /// Must be idempotent. An error is retried with backoff when
    /// [`ControllerError::retriable`], else the key waits for its next change.
    async fn reconcile(&self, key: &Self::Key) -> Result<Action, ControllerError>;
}

/// What the driver does with a key after a successful reconcile (kube-runtime's
/// `controller::Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile the key again after `after`, whether or not anything changes (a periodic
    /// job). A change in between reconciles it sooner as well.
    pub(crate) fn requeue(after: Duration) -> Action {
        Action {
            requeue_after: Some(after),
        }
    }

    /// Nothing to do until an event names the key again.
    pub(crate) fn await_change() -> Action {
        Action {
            requeue_after: None,
        }
    }

    pub(crate) fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}
