//! The `default` ServiceAccount in every Active namespace, recreated when deleted
//! (kube-controller-manager's `serviceaccount` controller,
//! `pkg/controller/serviceaccount/serviceaccounts_controller.go`;
//! `shared/reference/k8s-sa-token-facts.md` §6.2).
//!
//! The object is bare: name and namespace only, no automount field and no secrets.

use serde_json::{Value, json};

use super::{Action, Controller, ControllerError, Watch, is_deleting, name, namespace};
use crate::registry::{EventType, Registry, RegistryError, Resource, resources};
use crate::wellknown;

pub(crate) struct DefaultServiceAccount {
    registry: Registry,
}

impl DefaultServiceAccount {
    pub(crate) fn new(registry: Registry) -> Self {
        DefaultServiceAccount { registry }
    }
}

#[async_trait::async_trait]
impl Controller for DefaultServiceAccount {
    /// A namespace name.
    type Key = String;

    fn name(&self) -> &'static str {
        "serviceaccount"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::all(resources::core("namespaces")),
            Watch::all(resources::core("serviceaccounts")),
        ]
    }

    /// Namespaces added or updated; a `default` ServiceAccount deleted.
    fn keys(&self, resource: &Resource, event: EventType, obj: &Value) -> Vec<String> {
        match (resource.kind, event) {
            ("Namespace", EventType::Added | EventType::Modified) => vec![name(obj).to_string()],
            ("ServiceAccount", EventType::Deleted)
                if name(obj) == wellknown::DEFAULT_SERVICE_ACCOUNT =>
            {
                vec![namespace(obj).to_string()]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&self, ns: &String) -> Result<Action, ControllerError> {
        let namespace = match self
            .registry
            .get(resources::core("namespaces"), None, ns)
            .await
        {
            Ok(n) => n,
            Err(RegistryError::NotFound { .. }) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        };
        // Only Active namespaces get one; a terminating namespace would refuse it anyway.
        let active = namespace.pointer("/status/phase").and_then(Value::as_str) == Some("Active");
        if !active || is_deleting(&namespace) {
            return Ok(Action::await_change());
        }
        let sa = resources::core("serviceaccounts");
        match self
            .registry
            .get(sa, Some(ns), wellknown::DEFAULT_SERVICE_ACCOUNT)
            .await
        {
            Ok(_) => return Ok(Action::await_change()),
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let body = json!({"metadata": {"name": wellknown::DEFAULT_SERVICE_ACCOUNT}});
        match self.registry.create(sa, Some(ns), body, false).await {
            Ok(_) => Ok(Action::await_change()),
            // Someone else made it; or the namespace went away or started terminating
            // (its deletion event, or none, follows).
            Err(
                RegistryError::AlreadyExists { .. }
                | RegistryError::NotFound { .. }
                | RegistryError::NamespaceTerminating { .. },
            ) => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn every_active_namespace_gets_a_bare_default() {
        let rig = rig().await;
        let c = DefaultServiceAccount::new(rig.registry.clone());
        rig.namespace("team-a").await;
        c.reconcile(&"team-a".to_string()).await.unwrap();
        let sa = rig
            .get("serviceaccounts", Some("team-a"), "default")
            .await
            .unwrap();
        assert_eq!(sa["metadata"]["namespace"], "team-a");
        assert!(sa.get("automountServiceAccountToken").is_none());
        assert!(sa.get("secrets").is_none());
        // Idempotent: an existing one is left alone.
        c.reconcile(&"team-a".to_string()).await.unwrap();
        let again = rig
            .get("serviceaccounts", Some("team-a"), "default")
            .await
            .unwrap();
        assert_eq!(rv(&sa), rv(&again));
        // A missing namespace is nothing to do.
        c.reconcile(&"nope".to_string()).await.unwrap();
    }

    #[tokio::test]
    async fn a_deleted_default_is_recreated() {
        let rig = rig().await;
        let c = DefaultServiceAccount::new(rig.registry.clone());
        c.reconcile(&"default".to_string()).await.unwrap();
        let first = rig
            .get("serviceaccounts", Some("default"), "default")
            .await
            .unwrap();
        rig.delete("serviceaccounts", Some("default"), "default")
            .await;
        let keys = c.keys(
            resources::core("serviceaccounts"),
            EventType::Deleted,
            &first,
        );
        assert_eq!(keys, vec!["default".to_string()]);
        c.reconcile(&keys[0]).await.unwrap();
        let second = rig
            .get("serviceaccounts", Some("default"), "default")
            .await
            .unwrap();
        assert_ne!(second["metadata"]["uid"], first["metadata"]["uid"]);
        // Other ServiceAccounts' deletions are no concern of this controller.
        let mut other = first.clone();
        other["metadata"]["name"] = json!("robot");
        assert!(
            c.keys(
                resources::core("serviceaccounts"),
                EventType::Deleted,
                &other
            )
            .is_empty()
        );
    }

    #[tokio::test]
    async fn terminating_namespaces_are_skipped() {
        let rig = rig().await;
        let c = DefaultServiceAccount::new(rig.registry.clone());
        rig.namespace("leaving").await;
        rig.registry
            .update_with(
                resources::core("namespaces"),
                None,
                "leaving",
                Some("status"),
                false,
                |cur| {
                    let mut next = cur.clone();
                    next["status"]["phase"] = json!("Terminating");
                    Ok(next)
                },
            )
            .await
            .unwrap();
        c.reconcile(&"leaving".to_string()).await.unwrap();
        assert!(
            rig.get("serviceaccounts", Some("leaving"), "default")
                .await
                .is_none()
        );
    }
}
