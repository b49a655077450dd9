//! The `kube-root-ca.crt` ConfigMap in every namespace: `data: {"ca.crt": <CA PEM>}` and
//! the `kubernetes.io/description` annotation; created when missing, and its data and
//! annotation put back when edited, keeping any other labels and annotations
//! (`pkg/controller/certificates/rootcacertpublisher/publisher.go`;
//! `shared/reference/k8s-sa-token-facts.md` §6.3). Projected `kube-api-access-*` volumes
//! read `ca.crt` from it.

use serde_json::{Map, Value, json};

use super::{
    Action, Controller, ControllerError, Watch, annotation, name, namespace, set_meta_map,
};
use crate::registry::{EventType, Registry, RegistryError, Resource, resources};
use crate::wellknown;

pub(crate) struct RootCaPublisher {
    registry: Registry,
    ca_pem: String,
}

impl RootCaPublisher {
    pub(crate) fn new(registry: Registry, ca_pem: String) -> Self {
        RootCaPublisher { registry, ca_pem }
    }

    fn data(&self) -> Value {
        let mut data = Map::new();
        data.insert(
            wellknown::ROOT_CA_KEY.into(),
            Value::from(self.ca_pem.as_str()),
        );
        Value::Object(data)
    }

    /// Publisher's check: exactly the one data key with the CA, and some description.
    fn is_right(&self, cm: &Value) -> bool {
        cm.get("data") == Some(&self.data())
            && annotation(cm, wellknown::ANNOTATION_DESCRIPTION).is_some_and(|d| !d.is_empty())
    }
}

#[async_trait::async_trait]
impl Controller for RootCaPublisher {
    /// A namespace name.
    type Key = String;

    fn name(&self) -> &'static str {
        "root-ca-cert-publisher"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::all(resources::core("namespaces")),
            Watch::selected(
                resources::core("configmaps"),
                &format!("metadata.name={}", wellknown::ROOT_CA_CONFIGMAP),
            ),
        ]
    }

    /// Namespaces added, or updated while Active; the ConfigMap changed or deleted (and,
    /// unlike Kubernetes, added: one made by someone else before us is repaired at once).
    fn keys(&self, resource: &Resource, event: EventType, obj: &Value) -> Vec<String> {
        match (resource.kind, event) {
            ("Namespace", EventType::Added) => vec![name(obj).to_string()],
            ("Namespace", EventType::Modified)
                if obj.pointer("/status/phase").and_then(Value::as_str) == Some("Active") =>
            {
                vec![name(obj).to_string()]
            }
            ("ConfigMap", _) if name(obj) == wellknown::ROOT_CA_CONFIGMAP => {
                vec![namespace(obj).to_string()]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&self, ns: &String) -> Result<Action, ControllerError> {
        let res = resources::core("configmaps");
        let current = match self
            .registry
            .get(res, Some(ns), wellknown::ROOT_CA_CONFIGMAP)
            .await
        {
            Ok(cm) => cm,
            Err(RegistryError::NotFound { .. }) => {
                let body = json!({
                    "metadata": {
                        "name": wellknown::ROOT_CA_CONFIGMAP,
                        "annotations": {wellknown::ANNOTATION_DESCRIPTION: wellknown::ROOT_CA_DESCRIPTION},
                    },
                    "data": self.data(),
                });
                return match self.registry.create(res, Some(ns), body, false).await {
                    // The namespace is gone or terminating: nothing to publish into.
                    Ok(_)
                    | Err(
                        RegistryError::NotFound { .. } | RegistryError::NamespaceTerminating { .. },
                    ) => Ok(Action::await_change()),
                    // Made by someone else meanwhile; its ADDED event brings us back to
                    // check it.
                    Err(RegistryError::AlreadyExists { .. }) => Ok(Action::await_change()),
                    Err(e) => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        if self.is_right(&current) {
            return Ok(Action::await_change());
        }
        let updated = self
            .registry
            .update_with(
                res,
                Some(ns),
                wellknown::ROOT_CA_CONFIGMAP,
                None,
                false,
                |cur| {
                    if self.is_right(cur) {
                        return Ok(cur.clone());
                    }
                    let mut next = cur.clone();
                    next["data"] = self.data();
                    set_meta_map(
                        &mut next,
                        "annotations",
                        wellknown::ANNOTATION_DESCRIPTION,
                        wellknown::ROOT_CA_DESCRIPTION,
                    );
                    Ok(next)
                },
            )
            .await;
        match updated {
            // Deleted meanwhile: its DELETED event brings us back to recreate it.
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn publisher(rig: &Rig) -> RootCaPublisher {
        RootCaPublisher::new(rig.registry.clone(), CA.to_string())
    }

    #[tokio::test]
    async fn publishes_the_ca_with_its_description() {
        let rig = rig().await;
        let c = publisher(&rig);
        c.reconcile(&"default".to_string()).await.unwrap();
        let cm = rig
            .get("configmaps", Some("default"), "kube-root-ca.crt")
            .await
            .unwrap();
        assert_eq!(cm["data"], json!({"ca.crt": CA}));
        assert_eq!(
            cm["metadata"]["annotations"]["kubernetes.io/description"],
            "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
        );
        c.reconcile(&"default".to_string()).await.unwrap();
        let again = rig
            .get("configmaps", Some("default"), "kube-root-ca.crt")
            .await
            .unwrap();
        assert_eq!(rv(&cm), rv(&again), "nothing to do the second time");
        // No namespace, nothing to publish into.
        c.reconcile(&"nope".to_string()).await.unwrap();
    }

    #[tokio::test]
    async fn edits_are_repaired_and_other_metadata_kept() {
        let rig = rig().await;
        let c = publisher(&rig);
        c.reconcile(&"default".to_string()).await.unwrap();
        rig.update("configmaps", Some("default"), "kube-root-ca.crt", |cm| {
            cm["data"] = json!({"ca.crt": "tampered", "extra": "x"});
            cm["metadata"]["annotations"] = json!({"team": "blue"});
            cm["metadata"]["labels"] = json!({"keep": "me"});
        })
        .await;
        let cm = rig
            .get("configmaps", Some("default"), "kube-root-ca.crt")
            .await
            .unwrap();
        assert_eq!(
            c.keys(resources::core("configmaps"), EventType::Modified, &cm),
            vec!["default".to_string()]
        );
        c.reconcile(&"default".to_string()).await.unwrap();
        let fixed = rig
            .get("configmaps", Some("default"), "kube-root-ca.crt")
            .await
            .unwrap();
        assert_eq!(fixed["data"], json!({"ca.crt": CA}));
        assert_eq!(fixed["metadata"]["annotations"]["team"], "blue");
        assert_eq!(
            fixed["metadata"]["annotations"]["kubernetes.io/description"],
            wellknown::ROOT_CA_DESCRIPTION
        );
        assert_eq!(fixed["metadata"]["labels"], json!({"keep": "me"}));

        // A different, non-empty description with the right data is left as it is
        // (the publisher only requires one to be there).
        rig.update("configmaps", Some("default"), "kube-root-ca.crt", |cm| {
            cm["metadata"]["annotations"]["kubernetes.io/description"] = json!("ours");
        })
        .await;
        c.reconcile(&"default".to_string()).await.unwrap();
        let kept = rig
            .get("configmaps", Some("default"), "kube-root-ca.crt")
            .await
            .unwrap();
        assert_eq!(
            kept["metadata"]["annotations"]["kubernetes.io/description"],
            "ours"
        );
    }

    #[tokio::test]
    async fn a_deleted_configmap_is_recreated() {
        let rig = rig().await;
        let c = publisher(&rig);
        c.reconcile(&"kube-public".to_string()).await.unwrap();
        let cm = rig
            .get("configmaps", Some("kube-public"), "kube-root-ca.crt")
            .await
            .unwrap();
        rig.delete("configmaps", Some("kube-public"), "kube-root-ca.crt")
            .await;
        let keys = c.keys(resources::core("configmaps"), EventType::Deleted, &cm);
        assert_eq!(keys, vec!["kube-public".to_string()]);
        c.reconcile(&keys[0]).await.unwrap();
        assert!(
            rig.get("configmaps", Some("kube-public"), "kube-root-ca.crt")
                .await
                .is_some()
        );
    }
}
