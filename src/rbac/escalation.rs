//! Privilege-escalation prevention on writes of the policy (the `policybased` storages of
//! `pkg/registry/rbac/*` with `pkg/registry/rbac/escalation_check.go`): a user may store a
//! Role or ClusterRole only with rules they already hold, unless they may `escalate` it; and
//! a binding only to a role whose rules they already hold, unless they may `bind` it.
//! `system:masters` may do anything; setting an `aggregationRule` takes cluster-admin.
//!
//! Must not: write, or decide anything but these writes.

use k8s_openapi::api::rbac::v1::{AggregationRule, PolicyRule, RoleRef};
use serde_json::Value;

use super::{Attributes, Authorizer, Mode, everything, rules};
use crate::registry::{RegistryError, Resource};
use crate::tokens::UserInfo;
use crate::wellknown;

impl Authorizer {
    /// Whether `user` may store `new` (replacing `old`, on an update) as a `res` in
    /// `namespace`: Forbidden with Kubernetes' message when it would grant more than the
    /// user holds, NotFound when a binding's role does not exist. Other kinds pass.
    pub(crate) fn confirm_write(
        &self,
        user: &UserInfo,
        res: &Resource,
        namespace: &str,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), RegistryError> {
        if res.group != wellknown::GROUP_RBAC
            || self.mode == Mode::AlwaysAllow
            || user.in_group(wellknown::GROUP_MASTERS)
        {
            return Ok(());
        }
        let write = Write {
            user,
            res,
            namespace,
            name: new
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        };
        match res.plural {
            "roles" | "clusterroles" => self.confirm_role(&write, new, old),
            "rolebindings" | "clusterrolebindings" => {
                if old.is_some_and(|o| only_gc_fields_differ(o, new)) {
                    return Ok(());
                }
                match field::<RoleRef>(new, "roleRef") {
                    Some(role_ref) => self.confirm_binding(&write, &role_ref),
                    // Validation answers a binding without a roleRef.
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// A Role or ClusterRole: allowed with `escalate` on it, else only with rules held.
    fn confirm_role(
        &self,
        w: &Write<'_>,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), RegistryError> {
        // The request's own attributes (`RoleEscalationAuthorized`): a create names no
        // object, an update the one it replaces.
        let escalate = Attributes {
            verb: "escalate".into(),
            resource_request: true,
            api_group: w.res.group.into(),
            resource: w.res.plural.into(),
            namespace: w.namespace.into(),
            name: if old.is_some() {
                w.name.into()
            } else {
                String::new()
            },
            ..Attributes::default()
        };
        if self.authorize(w.user, &escalate).allowed {
            return Ok(());
        }
        let rules: Vec<PolicyRule> = field(new, "rules").unwrap_or_default();
        self.confirm_held(w.user, w.namespace, &rules)
            .map_err(|m| w.forbidden(m))?;
        // An aggregation rule can gather anything: it takes everything to set one.
        let aggregation = |o: &Value| field::<AggregationRule>(o, "aggregationRule");
        let new_rule = aggregation(new);
        if new_rule.is_some() && new_rule != old.and_then(aggregation) {
            self.confirm_held(w.user, w.namespace, &everything())
                .map_err(|_| {
                    w.forbidden(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    )
                })?;
        }
        Ok(())
    }

    /// A binding: allowed with `bind` on its role, else only to a role whose rules are held.
    fn confirm_binding(&self, w: &Write<'_>, role_ref: &RoleRef) -> Result<(), RegistryError> {
        let resource = match role_ref.kind.as_str() {
            "Role" => "roles",
            "ClusterRole" => "clusterroles",
            _ => return Ok(()),
        };
        let group = role_ref
            .api_group
            .as_deref()
            .filter(|g| !g.is_empty())
            .unwrap_or(wellknown::GROUP_RBAC);
        let bind = Attributes {
            verb: "bind".into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace: w.namespace.into(),
            name: role_ref.name.clone(),
            ..Attributes::default()
        };
        if self.authorize(w.user, &bind).allowed {
            return Ok(());
        }
        let rules = self
            .index
            .read()
            .role_ref_rules(role_ref, w.namespace)
            .map(<[PolicyRule]>::to_vec)
            .map_err(|_| RegistryError::NotFound {
                resource: format!("{resource}.{}", wellknown::GROUP_RBAC),
                name: role_ref.name.clone(),
            })?;
        self.confirm_held(w.user, w.namespace, &rules)
            .map_err(|m| w.forbidden(m))
    }

    /// `ConfirmNoEscalation`: the rules `user` holds in `namespace` cover `wanted`, or the
    /// message naming what they lack.
    fn confirm_held(
        &self,
        user: &UserInfo,
        namespace: &str,
        wanted: &[PolicyRule],
    ) -> Result<(), String> {
        let (held, errors) = self.index.read().rules_for(user, namespace);
        let missing = rules::uncovered(&held, wanted);
        if missing.is_empty() {
            return Ok(());
        }
        let mut lines: Vec<String> = rules::compact(missing)
            .iter()
            .map(rules::compact_string)
            .collect();
        lines.sort();
        lines.dedup();
        let mut msg = format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.username,
            rules::quoted_list(&user.groups),
            lines.join("\n")
        );
        if !errors.is_empty() {
            msg.push_str(&format!(
                "; resolution errors: [{}]",
                super::aggregate(&errors)
            ));
        }
        Err(msg)
    }
}

/// The write being checked.
struct Write<'a> {
    user: &'a UserInfo,
    res: &'a Resource,
    namespace: &'a str,
    name: &'a str,
}

impl Write<'_> {
    /// `errors.NewForbidden(<resource>, <name>, message)`.
    fn forbidden(&self, message: String) -> RegistryError {
        RegistryError::Forbidden {
            resource: self.res.qualified(),
            name: self.name.to_string(),
            message,
        }
    }
}

fn field<T: serde::de::DeserializeOwned>(obj: &Value, name: &str) -> Option<T> {
    obj.get(name)
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Whether two versions of an object differ only where the garbage collector writes
/// (`IsOnlyMutatingGCFields`: owner references and finalizers), besides the bookkeeping
/// fields the registry sets.
fn only_gc_fields_differ(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
                "generation",
                "creationTimestamp",
                "uid",
            ] {
                m.remove(f);
            }
        }
        v
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::index::Kind;
    use crate::rbac::tests::user;
    use crate::registry::{EventType, resources};
    use serde_json::json;

    fn rbac(plural: &str) -> &'static Resource {
        resources::find(wellknown::GROUP_RBAC, "v1", plural).expect("an RBAC resource")
    }

    /// `u` may write Roles and RoleBindings in `a` (not `escalate` or `bind` them: `*` would
    /// include both) and read configmaps there.
    fn authz() -> Authorizer {
        Authorizer::with_policy(|p| {
            p.apply(
                Kind::Role,
                EventType::Added,
                &json!({"metadata": {"name": "manager", "namespace": "a"},
                        "rules": [
                            {"verbs": ["create", "get", "update", "patch"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"]},
                            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            );
            p.apply(
                Kind::Role,
                EventType::Added,
                &json!({"metadata": {"name": "secrets", "namespace": "a"},
                        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]}),
            );
            p.apply(
                Kind::RoleBinding,
                EventType::Added,
                &json!({"metadata": {"name": "manager", "namespace": "a"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "manager"},
                        "subjects": [{"kind": "User", "name": "u"}]}),
            );
        })
    }

    fn role(rules: Value) -> Value {
        json!({"metadata": {"name": "r", "namespace": "a"}, "rules": rules})
    }

    #[test]
    fn roles_may_grant_only_what_is_held() {
        let a = authz();
        let u = user("u", &["g"]);
        let held =
            role(json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]));
        assert!(a.confirm_write(&u, rbac("roles"), "a", &held, None).is_ok());
        let more =
            role(json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"]}]));
        let err = a
            .confirm_write(&u, rbac("roles"), "a", &more, None)
            .expect_err("escalation");
        let RegistryError::Forbidden {
            resource,
            name,
            message,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            (resource.as_str(), name.as_str()),
            ("roles.rbac.authorization.k8s.io", "r")
        );
        assert_eq!(
            message,
            "user \"u\" (groups=[\"g\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
        );
        // The same rules in another namespace are not held there.
        assert!(
            a.confirm_write(&u, rbac("roles"), "b", &held, None)
                .is_err()
        );
        // system:masters may.
        let admin = user("admin", &["system:masters"]);
        assert!(
            a.confirm_write(&admin, rbac("roles"), "a", &more, None)
                .is_ok()
        );
    }

    #[test]
    fn escalate_and_bind_verbs_lift_the_check() {
        let a = Authorizer::with_policy(|p| {
            p.apply(
                Kind::ClusterRole,
                EventType::Added,
                &json!({"metadata": {"name": "escalator"},
                        "rules": [{"verbs": ["escalate", "bind"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"]}]}),
            );
            p.apply(
                Kind::ClusterRoleBinding,
                EventType::Added,
                &json!({"metadata": {"name": "escalator"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "escalator"},
                        "subjects": [{"kind": "User", "name": "e"}]}),
            );
            p.apply(
                Kind::Role,
                EventType::Added,
                &json!({"metadata": {"name": "secrets", "namespace": "a"},
                        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]}),
            );
        });
        let e = user("e", &[]);
        let secrets = role(json!([{"verbs": ["*"], "apiGroups": [""], "resources": ["secrets"]}]));
        assert!(
            a.confirm_write(&e, rbac("roles"), "a", &secrets, None)
                .is_ok()
        );
        let binding = json!({"metadata": {"name": "b", "namespace": "a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secrets"}});
        assert!(
            a.confirm_write(&e, rbac("rolebindings"), "a", &binding, None)
                .is_ok()
        );
        // `escalate` on roles is not `escalate` on clusterroles.
        let cluster = json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]});
        assert!(
            a.confirm_write(&e, rbac("clusterroles"), "", &cluster, None)
                .is_err()
        );
    }

    #[test]
    fn bindings_need_the_roles_rules_or_bind() {
        let a = authz();
        let u = user("u", &[]);
        let to = |role: &str| {
            json!({"metadata": {"name": "b", "namespace": "a"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                   "subjects": [{"kind": "User", "name": "x"}]})
        };
        assert!(
            a.confirm_write(&u, rbac("rolebindings"), "a", &to("manager"), None)
                .is_ok()
        );
        let err = a
            .confirm_write(&u, rbac("rolebindings"), "a", &to("secrets"), None)
            .expect_err("escalation");
        assert!(
            matches!(err, RegistryError::Forbidden { ref resource, .. } if resource == "rolebindings.rbac.authorization.k8s.io"),
            "{err:?}"
        );
        let err = a
            .confirm_write(&u, rbac("rolebindings"), "a", &to("nope"), None)
            .expect_err("missing role");
        assert_eq!(
            err.to_string(),
            "roles.rbac.authorization.k8s.io \"nope\" not found"
        );
        // Changing only owner references or finalizers of a binding is always allowed.
        let mut gc = to("secrets");
        gc["metadata"]["finalizers"] = json!(["x"]);
        assert!(
            a.confirm_write(&u, rbac("rolebindings"), "a", &gc, Some(&to("secrets")))
                .is_ok()
        );
    }

    #[test]
    fn aggregation_rules_take_everything() {
        let a = authz();
        let u = user("u", &[]);
        let agg = json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}});
        let err = a
            .confirm_write(&u, rbac("clusterroles"), "", &agg, None)
            .expect_err("aggregation");
        assert!(
            err.to_string().contains("aggregationRule")
                || matches!(err, RegistryError::Forbidden { ref message, .. } if message.contains("aggregationRule")),
            "{err:?}"
        );
    }
}
