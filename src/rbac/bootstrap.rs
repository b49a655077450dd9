//! The bootstrap policy (`bootstrap.yaml`: cluster-admin, admin/edit/view with aggregation,
//! the `system:` roles that every user, service account and relying party needs, and their
//! default bindings), reconciled into the store at every start as kube-apiserver's
//! `rbac/bootstrap-roles` post-start hook does (`pkg/registry/rbac/reconciliation`): what is
//! missing is created; what exists keeps its extra rules, subjects, labels and annotations
//! and gets back what it lost; a roleRef that differs is replaced; and an object annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone.
//!
//! Must not: delete anything but a binding whose roleRef must change, or run after start.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use super::rules;
use crate::registry::{DeleteOptions, Registry, RegistryError, Resource, resources};
use crate::wellknown;

const POLICY: &str = include_str!("bootstrap.yaml");

/// The bootstrap objects, as `bootstrap.yaml` lists them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Policy {
    pub(crate) cluster_roles: Vec<ClusterRole>,
    pub(crate) cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// The bootstrap policy with the label and annotation every bootstrap object carries.
pub(crate) fn policy() -> Result<Policy, String> {
    let mut p: Policy =
        serde_saphyr::from_str(POLICY).map_err(|e| format!("bootstrap.yaml: {e}"))?;
    for meta in p
        .cluster_roles
        .iter_mut()
        .map(|r| &mut r.metadata)
        .chain(p.cluster_role_bindings.iter_mut().map(|b| &mut b.metadata))
    {
        mark(meta);
    }
    Ok(p)
}

fn mark(meta: &mut ObjectMeta) {
    meta.labels.get_or_insert_default().insert(
        wellknown::LABEL_BOOTSTRAPPING.into(),
        wellknown::BOOTSTRAPPING_RBAC_DEFAULTS.into(),
    );
    meta.annotations
        .get_or_insert_default()
        .insert(wellknown::ANNOTATION_RBAC_AUTOUPDATE.into(), "true".into());
}

fn rbac(plural: &str) -> Result<&'static Resource, RegistryError> {
    resources::find(wellknown::GROUP_RBAC, "v1", plural)
        .ok_or_else(|| RegistryError::Internal(format!("{plural} are not served")))
}

/// Creates or repairs every bootstrap ClusterRole and ClusterRoleBinding.
pub(crate) async fn reconcile(registry: &Registry) -> Result<(), RegistryError> {
    let policy = policy().map_err(RegistryError::Internal)?;
    let roles = rbac("clusterroles")?;
    for expected in &policy.cluster_roles {
        let expected = to_value(expected)?;
        reconcile_one(registry, roles, expected, repair_role).await?;
    }
    let bindings = rbac("clusterrolebindings")?;
    for expected in &policy.cluster_role_bindings {
        let expected = to_value(expected)?;
        if let Some(stale) =
            reconcile_one(registry, bindings, expected.clone(), repair_binding).await?
        {
            // A binding's roleRef cannot change: delete it and create it anew.
            tracing::info!(name = %stale, "replacing a bootstrap binding whose roleRef changed");
            registry
                .delete(bindings, None, &stale, &DeleteOptions::default())
                .await?;
            registry.create(bindings, None, expected, false).await?;
        }
    }
    Ok(())
}

fn to_value<T: serde::Serialize>(t: &T) -> Result<Value, RegistryError> {
    serde_json::to_value(t).map_err(|e| RegistryError::Internal(e.to_string()))
}

/// What repairing an existing object found.
enum Repair {
    /// The object as it should be now (possibly unchanged).
    Keep(Value),
    /// The object cannot be repaired in place (a binding's roleRef).
    Replace,
}

/// Creates `expected` if missing, else repairs the existing object; returns the name of an
/// object that must be replaced.
async fn reconcile_one(
    registry: &Registry,
    res: &'static Resource,
    expected: Value,
    repair: fn(&Value, &Value) -> Repair,
) -> Result<Option<String>, RegistryError> {
    let name = expected
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut replace = false;
    let updated = registry
        .update_with(res, None, &name, None, false, |current| {
            if protected(current) {
                return Ok(current.clone());
            }
            match repair(current, &expected) {
                Repair::Keep(v) => Ok(v),
                Repair::Replace => {
                    replace = true;
                    Ok(current.clone())
                }
            }
        })
        .await;
    match updated {
        Ok(_) => Ok(replace.then_some(name)),
        Err(RegistryError::NotFound { .. }) => {
            match registry.create(res, None, expected, false).await {
                // Another replica created it meanwhile.
                Ok(_) | Err(RegistryError::AlreadyExists { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// `rbac.authorization.kubernetes.io/autoupdate: "false"`: the owner keeps it as it is.
fn protected(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(wellknown::ANNOTATION_RBAC_AUTOUPDATE))
        .and_then(Value::as_str)
        == Some("false")
}

/// Labels and annotations: the existing ones win, the missing ones are added.
fn merge_metadata(current: &mut Value, expected: &Value) {
    for field in ["labels", "annotations"] {
        let Some(want) = expected
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let have = &mut current["metadata"][field];
        if !have.is_object() {
            *have = Value::Object(Default::default());
        }
        if let Some(have) = have.as_object_mut() {
            for (k, v) in want {
                have.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

/// A ClusterRole keeps its rules and gets back the ones of the bootstrap role it lacks; an
/// aggregated one gets back its selectors (its rules are the aggregation controller's).
fn repair_role(current: &Value, expected: &Value) -> Repair {
    let mut out = current.clone();
    merge_metadata(&mut out, expected);
    let parse = |v: &Value| serde_json::from_value::<ClusterRole>(v.clone()).ok();
    let (Some(have), Some(want)) = (parse(current), parse(expected)) else {
        return Repair::Keep(out);
    };
    if let Some(want_agg) = &want.aggregation_rule {
        let mut selectors = have
            .aggregation_rule
            .and_then(|a| a.cluster_role_selectors)
            .unwrap_or_default();
        for s in want_agg.cluster_role_selectors.iter().flatten() {
            if !selectors.contains(s) {
                selectors.push(s.clone());
            }
        }
        out["aggregationRule"] = serde_json::json!({"clusterRoleSelectors": selectors});
        return Repair::Keep(out);
    }
    let held = have.rules.unwrap_or_default();
    let missing = rules::uncovered(&held, want.rules.as_deref().unwrap_or_default());
    if !missing.is_empty() {
        let all: Vec<_> = held.into_iter().chain(missing).collect();
        if let Ok(v) = serde_json::to_value(all) {
            out["rules"] = v;
        }
    }
    Repair::Keep(out)
}

/// A ClusterRoleBinding keeps its subjects and gets back the bootstrap ones it lacks; one
/// whose roleRef differs is replaced.
fn repair_binding(current: &Value, expected: &Value) -> Repair {
    if current.get("roleRef") != expected.get("roleRef") {
        return Repair::Replace;
    }
    let mut out = current.clone();
    merge_metadata(&mut out, expected);
    let subjects = |v: &Value| {
        v.get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut have = subjects(current);
    let key = |s: &Value| {
        ["kind", "name", "namespace"].map(|k| {
            s.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
    };
    for s in subjects(expected) {
        if !have.iter().any(|h| key(h) == key(&s)) {
            have.push(s);
        }
    }
    out["subjects"] = Value::Array(have);
    Repair::Keep(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_policy_parses_and_is_marked() {
        let p = policy().expect("bootstrap.yaml parses");
        let names: Vec<&str> = p
            .cluster_roles
            .iter()
            .filter_map(|r| r.metadata.name.as_deref())
            .collect();
        for n in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:service-account-issuer-discovery",
            "system:auth-delegator",
        ] {
            assert!(names.contains(&n), "{n} missing");
        }
        let admin = &p.cluster_role_bindings[0];
        assert_eq!(admin.role_ref.name, "cluster-admin");
        let labels = admin.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["kubernetes.io/bootstrapping"], "rbac-defaults");
        // Every binding names a bootstrap role.
        for b in &p.cluster_role_bindings {
            assert!(
                names.contains(&b.role_ref.name.as_str()),
                "{}",
                b.role_ref.name
            );
        }
    }

    #[test]
    fn repairs_keep_extras_and_restore_what_is_missing() {
        let expected = json!({"metadata": {"name": "r", "labels": {"a": "1"}},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
        let edited = json!({"metadata": {"name": "r", "labels": {"a": "2"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                      {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]});
        let Repair::Keep(out) = repair_role(&edited, &expected) else {
            panic!("roles are repaired in place");
        };
        assert_eq!(out["metadata"]["labels"]["a"], "2");
        let rules = out["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert_eq!(rules[2]["verbs"], json!(["list"]));
        // Already covering: unchanged.
        let Repair::Keep(same) = repair_role(&expected, &expected) else {
            panic!();
        };
        assert_eq!(same, expected);

        let binding = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "name": "g"}]});
        let extra = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}]});
        let Repair::Keep(out) = repair_binding(&extra, &binding) else {
            panic!();
        };
        assert_eq!(out["subjects"].as_array().map(Vec::len), Some(2));
        let moved =
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "other"}});
        assert!(matches!(repair_binding(&moved, &binding), Repair::Replace));
        assert!(protected(
            &json!({"metadata": {"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}}})
        ));
    }
}
