//! The `kubernetes` Service in `default`, with the Endpoints and EndpointSlice that point
//! at this server: what `kubectl cluster-info` and in-cluster tooling look for. In
//! kube-apiserver the apiserver itself keeps these (`pkg/controlplane/controller/kubernetesservice`
//! and the endpoint reconciler); here they are created when missing and put back when
//! edited or deleted. The three resources are read-only through the API, so only this
//! controller writes them.
//!
//! The cluster IP is the first address of kube-apiserver's default
//! `--service-cluster-ip-range` (10.0.0.0/24): there is no service network here, so it
//! routes nowhere; the Endpoints and the EndpointSlice carry the address that works.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};

use super::{Action, Controller, ControllerError, Watch, name, namespace};
use crate::registry::{EventType, Registry, RegistryError, Resource, resources};
use crate::wellknown;

/// Keeps the `kubernetes` Service and its endpoints pointing at `endpoint`.
pub(crate) struct KubernetesService {
    registry: Registry,
    endpoint: SocketAddr,
}

impl KubernetesService {
    pub(crate) fn new(registry: Registry, endpoint: SocketAddr) -> Self {
        KubernetesService { registry, endpoint }
    }

    fn address_type(&self) -> &'static str {
        match self.endpoint.ip() {
            IpAddr::V4(_) => "IPv4",
            IpAddr::V6(_) => "IPv6",
        }
    }

    /// The three objects as they must be: (resource, the fields this controller owns).
    fn desired(&self) -> [(&'static Resource, Value); 3] {
        let port = self.endpoint.port();
        let ip = self.endpoint.ip().to_string();
        let service = json!({
            "metadata": {"labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": wellknown::KUBERNETES_SERVICE_CLUSTER_IP,
                "clusterIPs": [wellknown::KUBERNETES_SERVICE_CLUSTER_IP],
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
                "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
            "status": {"loadBalancer": {}},
        });
        // The reconciler's Endpoints are never mirrored into a second EndpointSlice.
        let endpoints = json!({
            "metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{
                "addresses": [{"ip": ip}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }],
        });
        let slice = json!({
            "metadata": {"labels": {"kubernetes.io/service-name": wellknown::KUBERNETES_SERVICE}},
            "addressType": self.address_type(),
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        });
        [
            (resources::core("services"), service),
            (resources::core("endpoints"), endpoints),
            (endpoint_slices(), slice),
        ]
    }

    async fn ensure(&self, res: &'static Resource, want: Value) -> Result<(), ControllerError> {
        let ns = Some(wellknown::KUBERNETES_SERVICE_NAMESPACE);
        let svc = wellknown::KUBERNETES_SERVICE;
        match self.registry.get(res, ns, svc).await {
            Ok(current) if holds(&current, &want) => Ok(()),
            Ok(_) => {
                let fix = |cur: &Value| {
                    let mut next = cur.clone();
                    overlay(&mut next, &want);
                    Ok(next)
                };
                match self
                    .registry
                    .update_with(res, ns, svc, None, false, fix)
                    .await
                {
                    Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(RegistryError::NotFound { .. }) => {
                let mut body = json!({"metadata": {"name": svc}});
                overlay(&mut body, &want);
                match self.registry.create(res, ns, body, false).await {
                    // `default` is not there yet (its creation brings us back), or another
                    // write won the race (its event brings us back to check it).
                    Ok(_)
                    | Err(
                        RegistryError::NotFound { .. }
                        | RegistryError::AlreadyExists { .. }
                        | RegistryError::Forbidden { .. },
                    ) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn endpoint_slices() -> &'static Resource {
    // In the resource table with the other served kinds; a missing row is a programming
    // error every test of this controller would hit at once.
    #[allow(clippy::expect_used)]
    resources::find("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices are served")
}

/// Whether every field of `want` is in `current` with the same value (maps compared key by
/// key, so labels others add are kept).
fn holds(current: &Value, want: &Value) -> bool {
    match (current, want) {
        (Value::Object(c), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| c.get(k).is_some_and(|cv| holds(cv, wv))),
        (c, w) => c == w,
    }
}

/// Writes `want` into `target`, map by map.
fn overlay(target: &mut Value, want: &Value) {
    match (target, want) {
        (Value::Object(t), Value::Object(w)) => {
            for (k, wv) in w {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && wv.is_object() => overlay(tv, wv),
                    _ => {
                        t.insert(k.clone(), wv.clone());
                    }
                }
            }
        }
        (t, w) => *t = w.clone(),
    }
}

#[async_trait::async_trait]
impl Controller for KubernetesService {
    /// There is one thing to keep right.
    type Key = ();

    fn name(&self) -> &'static str {
        "kubernetes-service"
    }

    fn watches(&self) -> Vec<Watch> {
        let named = format!("metadata.name={}", wellknown::KUBERNETES_SERVICE);
        vec![
            Watch::selected(resources::core("services"), &named),
            Watch::selected(resources::core("endpoints"), &named),
            Watch::selected(endpoint_slices(), &named),
            Watch::selected(
                resources::core("namespaces"),
                &format!("metadata.name={}", wellknown::KUBERNETES_SERVICE_NAMESPACE),
            ),
        ]
    }

    fn keys(&self, resource: &Resource, _event: EventType, obj: &Value) -> Vec<()> {
        let ours = if resource.kind == "Namespace" {
            name(obj) == wellknown::KUBERNETES_SERVICE_NAMESPACE
        } else {
            name(obj) == wellknown::KUBERNETES_SERVICE
                && namespace(obj) == wellknown::KUBERNETES_SERVICE_NAMESPACE
        };
        if ours { vec![()] } else { Vec::new() }
    }

    fn initial_keys(&self) -> Vec<()> {
        vec![()]
    }

    async fn reconcile(&self, _key: &()) -> Result<Action, ControllerError> {
        for (res, want) in self.desired() {
            self.ensure(res, want).await?;
        }
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_ignores_extra_fields_and_overlay_keeps_them() {
        let want = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [1]}});
        let mut cur = json!({"metadata": {"labels": {"a": "1", "x": "y"}, "uid": "u"}, "spec": {"ports": [1]}});
        assert!(holds(&cur, &want));
        cur["spec"]["ports"] = json!([2]);
        cur["metadata"]["labels"]["a"] = json!("0");
        assert!(!holds(&cur, &want));
        overlay(&mut cur, &want);
        assert!(holds(&cur, &want));
        assert_eq!(cur["metadata"]["labels"]["x"], "y");
        assert_eq!(cur["metadata"]["uid"], "u");
    }
}
