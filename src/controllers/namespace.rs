//! Namespace deletion: kube-controller-manager's namespace controller
//! (`pkg/controller/namespace/namespace_controller.go` and
//! `pkg/controller/namespace/deletion/namespaced_resources_deleter.go`).
//!
//! `DELETE` of a namespace only marks it (`deletionTimestamp`, phase `Terminating`); from then
//! on the registry refuses creates into it. This controller then deletes everything in it,
//! lists again until nothing is left (so objects that raced the delete go too; objects held by
//! finalizers or a pod's grace period keep it waiting, which the namespace's conditions say),
//! and finally removes the `kubernetes` finalizer through the `finalize` subresource, which
//! deletes the namespace. A namespace that no longer exists is swept of anything left in it
//! (an object whose create was acknowledged by nobody because the server died between its
//! write and the namespace re-check, or content a forced `finalize` left behind), so a
//! namespace created again later starts empty. Kubernetes leaves such objects in etcd, where
//! they reappear when the namespace is made again; that is deliberately not copied.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Action, Controller, ControllerError, Watch, is_deleting, name, namespace};
use crate::clock::{SharedClock, format_time};
use crate::registry::{
    DeleteOptions, EventType, ListOptions, Registry, RegistryError, Resource, meta_str, resources,
};
use crate::wellknown;

pub(crate) struct NamespaceDeleter {
    registry: Registry,
    clock: SharedClock,
}

impl NamespaceDeleter {
    pub(crate) fn new(registry: Registry, clock: SharedClock) -> Self {
        NamespaceDeleter { registry, clock }
    }
}

/// Every resource whose objects live in a namespace and can be deleted.
fn content() -> impl Iterator<Item = &'static Resource> {
    resources::RESOURCES
        .iter()
        .filter(|r| r.namespaced && r.stored && r.verbs.contains(&"delete"))
}

/// What is left in a namespace after a deletion pass.
#[derive(Debug, Default, PartialEq, Eq)]
struct Remaining {
    /// Objects per resource (plural name), only resources with some.
    by_resource: BTreeMap<&'static str, usize>,
    /// Objects per finalizer they still carry.
    by_finalizer: BTreeMap<String, usize>,
    /// Deletes that failed, one message per resource.
    errors: Vec<String>,
}

impl Remaining {
    fn total(&self) -> usize {
        self.by_resource.values().sum()
    }
}

/// The conditions the namespace deleter keeps on a terminating namespace, in its order:
/// (type, reason and message when all is well). `deletion/status_condition_utils.go`.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// The (status, reason, message) of each condition type for what `left` says.
fn wanted_conditions(left: &Remaining) -> Vec<(&'static str, &'static str, String, String)> {
    CONDITIONS
        .iter()
        .map(|(kind, ok_reason, ok_message)| {
            let failing = match *kind {
                "NamespaceDeletionContentFailure" if !left.errors.is_empty() => {
                    let mut errors = left.errors.clone();
                    errors.sort();
                    Some((
                        "ContentDeletionFailed",
                        format!(
                            "Failed to delete all resource types, {} remaining: {}",
                            errors.len(),
                            errors.join(", ")
                        ),
                    ))
                }
                // "<resource>.<group> has N resource instances"; the core group is empty,
                // hence Kubernetes' "configmaps. has 1 resource instances".
                "NamespaceContentRemaining" if left.total() > 0 => {
                    let parts: Vec<String> = left
                        .by_resource
                        .iter()
                        .map(|(plural, n)| {
                            let group = resources::RESOURCES
                                .iter()
                                .find(|r| r.plural == *plural)
                                .map_or("", |r| r.group);
                            format!("{plural}.{group} has {n} resource instances")
                        })
                        .collect();
                    Some((
                        "SomeResourcesRemain",
                        format!("Some resources are remaining: {}", sorted(parts).join(", ")),
                    ))
                }
                "NamespaceFinalizersRemaining" if !left.by_finalizer.is_empty() => {
                    let parts: Vec<String> = left
                        .by_finalizer
                        .iter()
                        .map(|(f, n)| format!("{f} in {n} resource instances"))
                        .collect();
                    Some((
                        "SomeFinalizersRemain",
                        format!(
                            "Some content in the namespace has finalizers remaining: {}",
                            sorted(parts).join(", ")
                        ),
                    ))
                }
                _ => None,
            };
            match failing {
                Some((reason, message)) => (*kind, "True", reason.to_string(), message),
                None => (
                    *kind,
                    "False",
                    ok_reason.to_string(),
                    ok_message.to_string(),
                ),
            }
        })
        .collect()
}

/// Sets `status.<field>`, making `status` an object first if it is not one.
fn set_status(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    obj["status"][field] = value;
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `status.conditions` with the deleter's conditions set to `wanted`: other conditions kept,
/// `lastTransitionTime` moved only when a condition's status changes (`updateConditions`).
/// `None` when nothing changes.
fn merge_conditions(
    status: Option<&Value>,
    wanted: &[(&'static str, &'static str, String, String)],
    now: &str,
) -> Option<Value> {
    let mut conditions: Vec<Value> = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for (kind, state, reason, message) in wanted {
        let existing = conditions
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
        match existing {
            None => {
                conditions.push(json!({"type": kind, "status": state, "lastTransitionTime": now, "reason": reason, "message": message}));
                changed = true;
            }
            Some(c) => {
                let same = |field: &str, v: &str| c.get(field).and_then(Value::as_str) == Some(v);
                if same("status", state) && same("reason", reason) && same("message", message) {
                    continue;
                }
                if !same("status", state) {
                    c["lastTransitionTime"] = Value::from(now);
                }
                c["status"] = Value::from(*state);
                c["reason"] = Value::from(reason.as_str());
                c["message"] = Value::from(message.as_str());
                changed = true;
            }
        }
    }
    changed.then(|| Value::from(conditions))
}

impl NamespaceDeleter {
    /// Deletes every object in `ns` (those not already being deleted), then lists again and
    /// reports what is left.
    async fn delete_content(&self, ns: &str) -> Result<Remaining, ControllerError> {
        let mut left = Remaining::default();
        for res in content() {
            let list = self
                .registry
                .list(res, Some(ns), &ListOptions::default())
                .await?;
            let mut failed = None;
            for obj in list.items.iter().filter(|o| !is_deleting(o)) {
                match self
                    .registry
                    .delete(res, Some(ns), name(obj), &DeleteOptions::default())
                    .await
                {
                    Ok(_) | Err(RegistryError::NotFound { .. }) => {}
                    Err(e) => failed = Some(e.to_string()),
                }
            }
            if let Some(e) = failed {
                left.errors.push(format!("{}: {e}", res.qualified()));
            }
            // Listed again: finalizers, graceful pods, and creates that raced the delete.
            let again = self
                .registry
                .list(res, Some(ns), &ListOptions::default())
                .await?;
            if again.items.is_empty() {
                continue;
            }
            left.by_resource.insert(res.plural, again.items.len());
            for obj in &again.items {
                let finalizers = obj
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array);
                for f in finalizers.into_iter().flatten().filter_map(Value::as_str) {
                    *left.by_finalizer.entry(f.to_string()).or_default() += 1;
                }
            }
        }
        Ok(left)
    }

    /// Writes the deleter's conditions into the namespace's status when they changed.
    async fn report(&self, ns: &str, left: &Remaining) -> Result<(), ControllerError> {
        let wanted = wanted_conditions(left);
        let now = format_time(self.clock.now());
        let result = self
            .registry
            .update_with(
                resources::core("namespaces"),
                None,
                ns,
                Some("status"),
                false,
                |cur| {
                    let mut next = cur.clone();
                    if let Some(c) = merge_conditions(cur.get("status"), &wanted, &now) {
                        set_status(&mut next, "conditions", c);
                    }
                    Ok(next)
                },
            )
            .await;
        match result {
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes what is left in a namespace that does not exist, up to `seen_absent_at`: the
    /// namespace was absent at some point after that revision, so anything written at or
    /// before it belongs to no namespace, while a namespace of the same name created since
    /// (and its content, all written after it) is left alone.
    async fn sweep(&self, ns: &str, seen_absent_at: i64) -> Result<(), ControllerError> {
        let mut swept = 0;
        for res in content() {
            let list = self
                .registry
                .list(res, Some(ns), &ListOptions::default())
                .await?;
            for obj in &list.items {
                let rv = meta_str(obj, "resourceVersion").unwrap_or_default();
                if !rv.parse::<i64>().is_ok_and(|rv| rv <= seen_absent_at) {
                    continue;
                }
                let opts = DeleteOptions {
                    precondition_resource_version: Some(rv.to_string()),
                    // Nothing will finish a graceful deletion here: there is no namespace.
                    grace_period_seconds: Some(0),
                    ..Default::default()
                };
                match self.registry.delete(res, Some(ns), name(obj), &opts).await {
                    Ok(_) => swept += 1,
                    // Gone, or changed since (its event brings us back).
                    Err(RegistryError::NotFound { .. } | RegistryError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if swept > 0 {
            tracing::info!("namespace {ns} does not exist: deleted {swept} objects left in it");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Controller for NamespaceDeleter {
    /// A namespace name.
    type Key = String;

    fn name(&self) -> &'static str {
        "namespace"
    }

    fn watches(&self) -> Vec<Watch> {
        std::iter::once(resources::core("namespaces"))
            .chain(content())
            .map(Watch::all)
            .collect()
    }

    /// A namespace marked for deletion, or deleted (to sweep what a forced `finalize` left
    /// behind); the namespace of any object created or deleted (content that raced the
    /// delete, or whose finalizers or grace period held it up).
    fn keys(&self, resource: &Resource, event: EventType, obj: &Value) -> Vec<String> {
        match (resource.kind, event) {
            ("Namespace", EventType::Deleted) => vec![name(obj).to_string()],
            ("Namespace", EventType::Added | EventType::Modified) if is_deleting(obj) => {
                vec![name(obj).to_string()]
            }
            ("Namespace", _) => Vec::new(),
            (_, EventType::Added | EventType::Deleted) if resource.namespaced => {
                vec![namespace(obj).to_string()]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&self, ns: &String) -> Result<Action, ControllerError> {
        let res = resources::core("namespaces");
        let before = self.registry.current_revision().await?;
        let namespace = match self.registry.get(res, None, ns).await {
            Ok(n) => n,
            Err(RegistryError::NotFound { .. }) => {
                return self
                    .sweep(ns, before)
                    .await
                    .map(|()| Action::await_change());
            }
            Err(e) => return Err(e.into()),
        };
        if !is_deleting(&namespace) {
            return Ok(Action::await_change());
        }
        // 1. Terminating, whoever set the deletionTimestamp (`updateNamespaceStatusFunc`).
        if namespace.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating") {
            let result = self
                .registry
                .update_with(res, None, ns, Some("status"), false, |cur| {
                    let mut next = cur.clone();
                    set_status(&mut next, "phase", Value::from("Terminating"));
                    Ok(next)
                })
                .await;
            match result {
                Ok(_) => {}
                Err(RegistryError::NotFound { .. }) => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            }
        }
        // 2. Already finalized by us: other finalizers hold it, not our business.
        let ours = Value::from(wellknown::FINALIZER_KUBERNETES);
        let has_ours = |n: &Value| {
            n.pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.contains(&ours))
        };
        if !has_ours(&namespace) {
            return Ok(Action::await_change());
        }
        // 3. Empty it, and say how far that got.
        let left = self.delete_content(ns).await?;
        self.report(ns, &left).await?;
        if left.total() > 0 {
            return Err(ControllerError::Waiting(format!(
                "namespace {ns}: {} objects remain",
                left.total()
            )));
        }
        // 4. Remove our finalizer; with none left, the registry deletes the namespace.
        let result = self
            .registry
            .update_with(res, None, ns, Some("finalize"), false, |cur| {
                let mut next = cur.clone();
                if let Some(f) = next
                    .pointer_mut("/spec/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|f| *f != ours);
                }
                Ok(next)
            })
            .await;
        match result {
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn deleter(rig: &Rig) -> NamespaceDeleter {
        NamespaceDeleter::new(rig.registry.clone(), rig.clock.clone())
    }

    #[test]
    fn conditions_read_as_kubernetes_writes_them() {
        let mut left = Remaining::default();
        let ok = wanted_conditions(&left);
        assert!(ok.iter().all(|(_, s, _, _)| *s == "False"));
        assert_eq!(ok[3].3, "All content successfully removed");
        left.by_resource.insert("configmaps", 1);
        left.by_resource.insert("leases", 2);
        left.by_finalizer.insert("example.com/hold".into(), 1);
        let w = wanted_conditions(&left);
        assert_eq!(w[3].0, "NamespaceContentRemaining");
        assert_eq!(
            w[3].3,
            "Some resources are remaining: configmaps. has 1 resource instances, leases.coordination.k8s.io has 2 resource instances"
        );
        assert_eq!(
            (w[4].1, w[4].2.as_str(), w[4].3.as_str()),
            (
                "True",
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
    }

    #[test]
    fn conditions_move_their_transition_time_only_when_their_status_changes() {
        let left = Remaining::default();
        let first = merge_conditions(None, &wanted_conditions(&left), "T1").unwrap();
        assert_eq!(first.as_array().unwrap().len(), 5);
        let status = json!({"phase": "Terminating", "conditions": first});
        assert_eq!(
            merge_conditions(Some(&status), &wanted_conditions(&left), "T2"),
            None
        );
        let mut held = Remaining::default();
        held.by_resource.insert("configmaps", 1);
        let next = merge_conditions(Some(&status), &wanted_conditions(&held), "T3").unwrap();
        assert_eq!(next[3]["lastTransitionTime"], "T3");
        assert_eq!(next[0]["lastTransitionTime"], "T1");
    }

    #[tokio::test]
    async fn a_terminating_namespace_is_emptied_then_finalized_away() {
        let rig = rig().await;
        let c = deleter(&rig);
        rig.namespace("q").await;
        rig.service_account("q", "robot").await;
        rig.create(
            "configmaps",
            Some("q"),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
        )
        .await;
        // Not deleting: nothing happens.
        c.reconcile(&"q".to_string()).await.unwrap();
        assert!(
            rig.get("serviceaccounts", Some("q"), "robot")
                .await
                .is_some()
        );

        rig.delete("namespaces", None, "q").await;
        let ns = rig.get("namespaces", None, "q").await.unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        let err = c.reconcile(&"q".to_string()).await.unwrap_err();
        assert!(matches!(err, ControllerError::Waiting(_)), "{err}");
        assert!(
            rig.get("serviceaccounts", Some("q"), "robot")
                .await
                .is_none()
        );
        let ns = rig.get("namespaces", None, "q").await.unwrap();
        let conditions = ns["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 5);
        assert_eq!(conditions[4]["status"], "True");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));

        // The finalizer goes; the ConfigMap with it; the namespace on the next pass.
        rig.update("configmaps", Some("q"), "held", |cm| {
            cm["metadata"]["finalizers"] = json!([]);
        })
        .await;
        assert!(rig.get("configmaps", Some("q"), "held").await.is_none());
        c.reconcile(&"q".to_string()).await.unwrap();
        assert!(rig.get("namespaces", None, "q").await.is_none());

        // Made again, it starts empty.
        rig.namespace("q").await;
        let cms = rig
            .registry
            .list(
                resources::core("configmaps"),
                Some("q"),
                &ListOptions::default(),
            )
            .await
            .unwrap();
        assert!(cms.items.is_empty());
    }

    #[tokio::test]
    async fn content_left_in_a_missing_namespace_is_swept_but_a_new_one_is_kept() {
        let rig = rig().await;
        let c = deleter(&rig);
        rig.namespace("gone").await;
        rig.create(
            "configmaps",
            Some("gone"),
            json!({"metadata": {"name": "orphan"}}),
        )
        .await;
        // Left behind as by a crash between a create and its namespace re-check: the
        // namespace is finalized away without the deleter having seen the ConfigMap.
        rig.registry
            .update_with(
                resources::core("namespaces"),
                None,
                "gone",
                Some("finalize"),
                false,
                |cur| {
                    let mut next = cur.clone();
                    next["spec"]["finalizers"] = json!([]);
                    Ok(next)
                },
            )
            .await
            .unwrap();
        let last = rig.get("namespaces", None, "gone").await.unwrap();
        rig.delete("namespaces", None, "gone").await;
        assert!(rig.get("namespaces", None, "gone").await.is_none());
        // Its DELETED event brings the deleter to the name.
        let keys = c.keys(resources::core("namespaces"), EventType::Deleted, &last);
        assert_eq!(keys, vec!["gone".to_string()]);
        assert!(
            rig.get("configmaps", Some("gone"), "orphan")
                .await
                .is_some()
        );
        c.reconcile(&"gone".to_string()).await.unwrap();
        assert!(
            rig.get("configmaps", Some("gone"), "orphan")
                .await
                .is_none()
        );

        // Content of a namespace that exists is never swept.
        rig.namespace("gone").await;
        rig.create(
            "configmaps",
            Some("gone"),
            json!({"metadata": {"name": "new"}}),
        )
        .await;
        c.reconcile(&"gone".to_string()).await.unwrap();
        assert!(rig.get("configmaps", Some("gone"), "new").await.is_some());
    }
}
