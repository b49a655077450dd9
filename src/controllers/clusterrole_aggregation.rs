//! ClusterRole aggregation (kube-controller-manager's `clusterrole-aggregation` controller,
//! `pkg/controller/clusterroleaggregation/clusterroleaggregation_controller.go`): a
//! ClusterRole with `aggregationRule.clusterRoleSelectors` gets as its `rules` the rules of
//! every other ClusterRole that any selector matches — selector by selector, matching roles
//! in name order, each rule once — written only when they differ from what it has.
//!
//! As in Kubernetes, any ClusterRole change enqueues every aggregating ClusterRole: the
//! set of roles is small and which role feeds which is not tracked. The names of the
//! aggregating roles are remembered from the events (the informer cache of the Go
//! controller); everything is listed at start, so the set is complete.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use super::{Action, Controller, ControllerError, Watch, name};
use crate::registry::selectors::{LabelSelector, labels_of};
use crate::registry::{EventType, ListOptions, Registry, RegistryError, Resource, resources};
use crate::wellknown;

pub(crate) struct ClusterRoleAggregation {
    registry: Registry,
    /// The ClusterRoles that have an `aggregationRule`, as last seen.
    aggregating: Mutex<BTreeSet<String>>,
}

impl ClusterRoleAggregation {
    pub(crate) fn new(registry: Registry) -> Self {
        ClusterRoleAggregation {
            registry,
            aggregating: Mutex::new(BTreeSet::new()),
        }
    }
}

fn cluster_roles() -> &'static Resource {
    // The table lists ClusterRoles; a missing entry is a programming error every test hits.
    #[allow(clippy::expect_used)]
    resources::find(wellknown::GROUP_RBAC, "v1", "clusterroles").expect("clusterroles in table")
}

fn selectors(role: &Value) -> Option<&Vec<Value>> {
    role.pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
}

#[async_trait::async_trait]
impl Controller for ClusterRoleAggregation {
    /// The name of an aggregating ClusterRole.
    type Key = String;

    fn name(&self) -> &'static str {
        "clusterrole-aggregation"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::all(cluster_roles())]
    }

    /// Every aggregating ClusterRole, on any ClusterRole event.
    fn keys(&self, _resource: &Resource, event: EventType, obj: &Value) -> Vec<String> {
        // A poisoned lock only means another thread panicked while inserting a name; the
        // set is still usable.
        let mut set = self
            .aggregating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let own = name(obj).to_string();
        if event != EventType::Deleted && obj.get("aggregationRule").is_some_and(|r| !r.is_null()) {
            set.insert(own);
        } else {
            set.remove(&own);
        }
        set.iter().cloned().collect()
    }

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let res = cluster_roles();
        let role = match self.registry.get(res, None, key).await {
            Ok(r) => r,
            Err(RegistryError::NotFound { .. }) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        };
        let Some(selectors) = selectors(&role) else {
            return Ok(Action::await_change());
        };
        let all = self
            .registry
            .list(res, None, &ListOptions::default())
            .await?
            .items;
        let Some(rules) = aggregate(key, selectors, &all) else {
            // An invalid selector fails the same way until the role is edited.
            tracing::warn!(clusterrole = %key, "invalid aggregation selector");
            return Ok(Action::await_change());
        };
        if same_rules(role.get("rules"), &rules) {
            return Ok(Action::await_change());
        }
        let updated = self
            .registry
            .update_with(res, None, key, None, false, |cur| {
                let mut next = cur.clone();
                next["rules"] = Value::Array(rules.clone());
                Ok(next)
            })
            .await;
        match updated {
            // Deleted meanwhile: nothing left to aggregate into.
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The rules `name` aggregates from `all` ClusterRoles: for each selector in turn, the
/// matching roles other than itself in name order, each rule kept once. `None` when a
/// selector cannot be converted.
pub(crate) fn aggregate(name: &str, selectors: &[Value], all: &[Value]) -> Option<Vec<Value>> {
    let mut sorted: Vec<&Value> = all.iter().collect();
    sorted.sort_by(|a, b| super::name(a).cmp(super::name(b)));
    let mut out: Vec<Value> = Vec::new();
    for selector in selectors {
        let selector = LabelSelector::from_api(selector).ok()?;
        for role in &sorted {
            if super::name(role) == name || !selector.matches(&labels_of(role)) {
                continue;
            }
            let rules = role.get("rules").and_then(Value::as_array);
            for rule in rules.into_iter().flatten() {
                if !out.iter().any(|r| same_rule(r, rule)) {
                    out.push(rule.clone());
                }
            }
        }
    }
    Some(out)
}

/// `equality.Semantic.DeepEqual` of two PolicyRules: each list compared in order, a
/// missing list equal to an empty one.
fn same_rule(a: &Value, b: &Value) -> bool {
    let list = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    [
        "verbs",
        "apiGroups",
        "resources",
        "resourceNames",
        "nonResourceURLs",
    ]
    .iter()
    .all(|k| list(a, k) == list(b, k))
}

/// Whether a role's current `rules` already are `want` (missing rules equal none).
fn same_rules(current: Option<&Value>, want: &[Value]) -> bool {
    let current = current
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    current.len() == want.len() && current.iter().zip(want).all(|(a, b)| same_rule(a, b))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

    fn role(name: &str, labels: Value, rules: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    #[test]
    fn union_is_by_selector_then_name_without_duplicates_or_itself() {
        let get = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        let list = json!({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]});
        let health = json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]});
        let all = [
            role(
                "z-src",
                json!({"agg": "yes"}),
                json!([list.clone(), get.clone()]),
            ),
            role("a-src", json!({"agg": "yes"}), json!([get.clone()])),
            role("other", json!({"tier": "x"}), json!([health.clone()])),
            role("agg", json!({"agg": "yes"}), json!([{"verbs": ["*"]}])),
            role("none", json!({}), json!([{"verbs": ["delete"]}])),
        ];
        let selectors = [
            json!({"matchLabels": {"agg": "yes"}}),
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}),
        ];
        let rules = aggregate("agg", &selectors, &all).unwrap();
        assert_eq!(rules, [get.clone(), list, health]);
        // The same rule spelled with an explicit empty list is the same rule.
        let mut spelled = get.clone();
        spelled["resourceNames"] = json!([]);
        assert!(same_rules(
            Some(&json!([spelled])),
            std::slice::from_ref(&get)
        ));
        assert!(!same_rules(None, &[get]));
        assert!(same_rules(None, &[]));
        // A selector that cannot be converted aggregates nothing.
        let bad = [json!({"matchExpressions": [{"key": "k", "operator": "In"}]})];
        assert!(aggregate("agg", &bad, &all).is_none());
        // `{}` selects every other ClusterRole.
        assert_eq!(aggregate("agg", &[json!({})], &all).unwrap().len(), 4);
    }

    #[tokio::test]
    async fn every_change_enqueues_every_aggregating_role() {
        let rig = rig().await;
        let c = ClusterRoleAggregation::new(rig.registry.clone());
        let res = cluster_roles();
        let agg =
            json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": []}});
        assert_eq!(c.keys(res, EventType::Added, &agg), ["agg"]);
        let plain = json!({"metadata": {"name": "plain"}});
        assert_eq!(c.keys(res, EventType::Modified, &plain), ["agg"]);
        assert!(c.keys(res, EventType::Deleted, &agg).is_empty());
    }

    #[tokio::test]
    async fn reconcile_writes_the_union_once() {
        let rig = rig().await;
        let c = ClusterRoleAggregation::new(rig.registry.clone());
        let res = cluster_roles();
        let get = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        for (name, body) in [
            (
                "src",
                role("src", json!({"agg": "yes"}), json!([get.clone()])),
            ),
            (
                "agg",
                json!({"metadata": {"name": "agg"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}}),
            ),
        ] {
            rig.registry
                .create(res, None, body, false)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        c.reconcile(&"agg".to_string()).await.unwrap();
        let once = rig.registry.get(res, None, "agg").await.unwrap();
        assert_eq!(once["rules"], json!([get]));
        // Nothing changed: no write, the revision stays.
        c.reconcile(&"agg".to_string()).await.unwrap();
        let twice = rig.registry.get(res, None, "agg").await.unwrap();
        assert_eq!(
            once["metadata"]["resourceVersion"],
            twice["metadata"]["resourceVersion"]
        );
        // A role that is gone, or does not aggregate, is left alone.
        c.reconcile(&"missing".to_string()).await.unwrap();
        c.reconcile(&"src".to_string()).await.unwrap();
    }
}
