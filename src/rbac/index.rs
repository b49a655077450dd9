//! The policy as the authorizer reads it: every Role, ClusterRole, RoleBinding and
//! ClusterRoleBinding in memory, kept exact by the registry's shared watches (the informer
//! caches kube-apiserver's RBAC authorizer reads), and the walk over the rules that apply
//! to a user (`DefaultRuleResolver.VisitRulesFor` in `pkg/registry/rbac/validation/rule.go`).
//!
//! Owns: parsing the four kinds, applying watch notices in order, the revision each kind
//! has been seen up to (so that a write to the policy can wait until it takes effect), and
//! the description of where a rule comes from (`RoleBinding "b/ns" of Role "r" to User "u"`).
//! Must not: decide (that is [`super::Authorizer`]) or write anything.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;
use tokio::sync::watch;

use crate::registry::selectors::FieldSelector;
use crate::registry::shared_watch::Notice;
use crate::registry::{EventType, Registry, resources};
use crate::tokens::UserInfo;
use crate::wellknown;

/// The four kinds, in the order of [`KINDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

const KINDS: [Kind; 4] = [
    Kind::Role,
    Kind::ClusterRole,
    Kind::RoleBinding,
    Kind::ClusterRoleBinding,
];

impl Kind {
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Kind::Role => "roles",
            Kind::ClusterRole => "clusterroles",
            Kind::RoleBinding => "rolebindings",
            Kind::ClusterRoleBinding => "clusterrolebindings",
        }
    }

    pub(crate) fn from_plural(plural: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.plural() == plural)
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A binding of either kind, as the walk needs it.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub(crate) name: String,
    /// Empty for a ClusterRoleBinding.
    pub(crate) namespace: String,
    pub(crate) role_ref: RoleRef,
    pub(crate) subjects: Vec<Subject>,
}

/// The objects, by key.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    role_bindings: BTreeMap<(String, String), Binding>,
    cluster_role_bindings: BTreeMap<String, Binding>,
}

/// Where a rule that applies to a user comes from (`clusterRoleBindingDescriber` and
/// `roleBindingDescriber`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) binding: &'a Binding,
    pub(crate) subject: &'a Subject,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.binding;
        let s = self.subject;
        let subject = if s.kind == "ServiceAccount" {
            let ns = s.namespace.as_deref().filter(|n| !n.is_empty());
            format!("{}/{}", s.name, ns.unwrap_or(&b.namespace))
        } else {
            s.name.clone()
        };
        if b.namespace.is_empty() {
            write!(f, "ClusterRoleBinding {:?}", b.name)?;
        } else {
            write!(f, "RoleBinding {:?}", format!("{}/{}", b.name, b.namespace))?;
        }
        write!(
            f,
            " of {} {:?} to {} {subject:?}",
            b.role_ref.kind, b.role_ref.name, s.kind
        )
    }
}

/// What the walk hands its visitor: a rule and where it comes from, or a binding whose role
/// could not be found.
pub(crate) enum Visit<'a> {
    Rule(Source<'a>, &'a PolicyRule),
    Error(String),
}

impl Policy {
    /// The rules of a role reference (`GetRoleReferenceRules`), or the lister's not-found
    /// text that the RBAC authorizer reports.
    pub(crate) fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<&[PolicyRule], String> {
        let found = match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone())),
            "ClusterRole" => self.cluster_roles.get(&role_ref.name),
            other => return Err(format!("unsupported role reference kind: {other:?}")),
        };
        found.map(Vec::as_slice).ok_or_else(|| {
            format!(
                "{}.{} {:?} not found",
                role_ref.kind.to_lowercase(),
                wellknown::GROUP_RBAC,
                role_ref.name
            )
        })
    }

    /// Calls `visit` with every rule that applies to `user` in `namespace` (cluster-wide
    /// bindings first, then the namespace's), and with every role that is missing, until
    /// it breaks.
    pub(crate) fn visit<'a>(
        &'a self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(Visit<'a>) -> ControlFlow<()>,
    ) {
        let cluster = self.cluster_role_bindings.values();
        let local = self
            .role_bindings
            .range((namespace.to_string(), String::new())..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, b)| b);
        let local = (!namespace.is_empty())
            .then_some(local)
            .into_iter()
            .flatten();
        for binding in cluster.chain(local) {
            let Some(subject) = binding
                .subjects
                .iter()
                .find(|s| applies_to(user, s, &binding.namespace))
            else {
                continue;
            };
            match self.role_ref_rules(&binding.role_ref, &binding.namespace) {
                Ok(rules) => {
                    for rule in rules {
                        if visit(Visit::Rule(Source { binding, subject }, rule)).is_break() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if visit(Visit::Error(e)).is_break() {
                        return;
                    }
                }
            }
        }
    }

    /// Every rule that applies to `user` in `namespace`, and the resolution errors
    /// (`RulesFor`).
    pub(crate) fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit(user, namespace, |v| {
            match v {
                Visit::Rule(_, r) => rules.push(r.clone()),
                Visit::Error(e) => errors.push(e),
            }
            ControlFlow::Continue(())
        });
        (rules, errors)
    }

    fn replace(&mut self, kind: Kind, objects: &[Value]) {
        match kind {
            Kind::Role => self.roles.clear(),
            Kind::ClusterRole => self.cluster_roles.clear(),
            Kind::RoleBinding => self.role_bindings.clear(),
            Kind::ClusterRoleBinding => self.cluster_role_bindings.clear(),
        }
        for obj in objects {
            self.apply(kind, EventType::Added, obj);
        }
    }

    /// Applies one change; an object that does not parse is left out, as if absent.
    pub(crate) fn apply(&mut self, kind: Kind, event: EventType, obj: &Value) {
        let (namespace, name) = (meta(obj, "namespace"), meta(obj, "name"));
        let key = (namespace.clone(), name.clone());
        match kind {
            Kind::Role => drop(self.roles.remove(&key)),
            Kind::ClusterRole => drop(self.cluster_roles.remove(&name)),
            Kind::RoleBinding => drop(self.role_bindings.remove(&key)),
            Kind::ClusterRoleBinding => drop(self.cluster_role_bindings.remove(&name)),
        }
        if event == EventType::Deleted {
            return;
        }
        let binding =
            |role_ref: RoleRef, subjects: Option<Vec<Subject>>, namespace: String| Binding {
                name: name.clone(),
                namespace,
                role_ref,
                subjects: subjects.unwrap_or_default(),
            };
        match kind {
            Kind::Role => {
                if let Some(r) = parse::<Role>(obj) {
                    self.roles.insert(key, r.rules.unwrap_or_default());
                }
            }
            Kind::ClusterRole => {
                if let Some(r) = parse::<ClusterRole>(obj) {
                    self.cluster_roles
                        .insert(name.clone(), r.rules.unwrap_or_default());
                }
            }
            Kind::RoleBinding => {
                if let Some(b) = parse::<RoleBinding>(obj) {
                    let b = binding(b.role_ref, b.subjects, namespace);
                    self.role_bindings.insert(key, b);
                }
            }
            Kind::ClusterRoleBinding => {
                if let Some(b) = parse::<ClusterRoleBinding>(obj) {
                    let b = binding(b.role_ref, b.subjects, String::new());
                    self.cluster_role_bindings.insert(name.clone(), b);
                }
            }
        }
    }
}

fn meta(obj: &Value, field: &str) -> String {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn parse<T: serde::de::DeserializeOwned>(obj: &Value) -> Option<T> {
    match serde_json::from_value(obj.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(name = %meta(obj, "name"), "RBAC object left out of the policy: {e}");
            None
        }
    }
}

fn revision(obj: &Value) -> u64 {
    meta(obj, "resourceVersion").parse().unwrap_or(0)
}

/// Whether a binding's subject is the user (`appliesToUser`): a ServiceAccount subject
/// without a namespace means one in the binding's namespace.
pub(crate) fn applies_to(user: &UserInfo, subject: &Subject, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.username == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            !ns.is_empty()
                && user
                    .username
                    .strip_prefix(wellknown::SERVICE_ACCOUNT_USER_PREFIX)
                    .and_then(|rest| rest.split_once(':'))
                    .is_some_and(|(n, sa)| n == ns && sa == subject.name)
        }
        _ => false,
    }
}

/// The policy, kept by [`PolicyIndex::follow`].
#[derive(Debug)]
pub(crate) struct PolicyIndex {
    policy: RwLock<Policy>,
    /// Per kind: the highest revision applied, and whether the first list is in.
    seen: [watch::Sender<(bool, u64)>; 4],
}

impl Default for PolicyIndex {
    fn default() -> Self {
        PolicyIndex {
            policy: RwLock::default(),
            seen: std::array::from_fn(|_| watch::channel((false, 0)).0),
        }
    }
}

impl PolicyIndex {
    /// An index that follows nothing: filled by hand (tests).
    #[cfg(test)]
    pub(crate) fn fixed(fill: impl FnOnce(&mut Policy)) -> Self {
        let index = PolicyIndex::default();
        fill(&mut index.write());
        for s in &index.seen {
            s.send_replace((true, 0));
        }
        index
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Policy> {
        // A panic while holding the lock leaves a policy that was being changed: the
        // next notice replaces or corrects it, so the data is still usable.
        self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Policy> {
        self.policy.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the index exact from the registry's shared watches; runs until aborted.
    pub(crate) async fn follow(self: Arc<Self>, registry: Registry) {
        let watches = KINDS.map(|kind| {
            let res = resources::find(wellknown::GROUP_RBAC, "v1", kind.plural());
            let index = self.clone();
            let registry = registry.clone();
            async move {
                let Some(res) = res else {
                    tracing::error!("{} is not a served resource", kind.plural());
                    return;
                };
                let mut watch = registry.shared_watch(res, Some(FieldSelector::default()));
                while let Some(notice) = watch.next().await {
                    index.notice(kind, notice);
                }
            }
        });
        futures::future::join_all(watches).await;
    }

    fn notice(&self, kind: Kind, notice: Notice) {
        let seen = &self.seen[kind.slot()];
        match notice {
            Notice::Resynced(objects) => {
                self.write().replace(kind, &objects);
                let newest = objects.iter().map(revision).max().unwrap_or(0);
                seen.send_modify(|s| *s = (true, s.1.max(newest)));
            }
            // Until the resync, the policy as last seen is the best there is.
            Notice::Interrupted | Notice::Event(EventType::Bookmark, _) => {}
            Notice::Event(event, obj) => {
                self.write().apply(kind, event, &obj);
                seen.send_modify(|s| s.1 = s.1.max(revision(&obj)));
            }
        }
    }

    /// Waits until every kind has been listed once.
    pub(crate) async fn synced(&self) {
        for s in &self.seen {
            let mut rx = s.subscribe();
            // The sender lives as long as `self`.
            let _ = rx.wait_for(|(listed, _)| *listed).await;
        }
    }

    /// Waits (at most `limit`) until the change of `kind` at `revision` is in the policy, so
    /// that a write to the policy answers only once it takes effect. False on time-out.
    pub(crate) async fn caught_up(&self, kind: Kind, revision: u64, limit: Duration) -> bool {
        let mut rx = self.seen[kind.slot()].subscribe();
        tokio::time::timeout(limit, rx.wait_for(|(_, seen)| *seen >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
            api_group: None,
        }
    }

    #[test]
    fn subjects_apply_as_kubernetes() {
        let sa = user("system:serviceaccount:a:app", &["system:serviceaccounts"]);
        assert!(applies_to(
            &sa,
            &subject("ServiceAccount", "app", Some("a")),
            ""
        ));
        assert!(applies_to(
            &sa,
            &subject("ServiceAccount", "app", None),
            "a"
        ));
        assert!(!applies_to(
            &sa,
            &subject("ServiceAccount", "app", None),
            "b"
        ));
        assert!(!applies_to(
            &sa,
            &subject("ServiceAccount", "app", None),
            ""
        ));
        assert!(!applies_to(
            &sa,
            &subject("ServiceAccount", "ap", Some("a")),
            ""
        ));
        assert!(applies_to(
            &sa,
            &subject("Group", "system:serviceaccounts", None),
            ""
        ));
        assert!(applies_to(
            &sa,
            &subject("User", "system:serviceaccount:a:app", None),
            ""
        ));
        assert!(!applies_to(&sa, &subject("Other", "app", Some("a")), ""));
    }

    #[test]
    fn walk_describes_sources_and_missing_roles() {
        let mut p = Policy::default();
        p.apply(
            Kind::Role,
            EventType::Added,
            &json!({"metadata": {"name": "r", "namespace": "a"},
                    "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]}),
        );
        p.apply(
            Kind::RoleBinding,
            EventType::Added,
            &json!({"metadata": {"name": "b", "namespace": "a"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                    "subjects": [{"kind": "ServiceAccount", "name": "app"}]}),
        );
        p.apply(
            Kind::ClusterRoleBinding,
            EventType::Added,
            &json!({"metadata": {"name": "gone"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nope"},
                    "subjects": [{"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"}]}),
        );
        let sa = user("system:serviceaccount:a:app", &["system:authenticated"]);
        let mut seen = Vec::new();
        p.visit(&sa, "a", |v| {
            seen.push(match v {
                Visit::Rule(src, _) => src.to_string(),
                Visit::Error(e) => e,
            });
            ControlFlow::Continue(())
        });
        assert_eq!(
            seen,
            [
                "clusterrole.rbac.authorization.k8s.io \"nope\" not found",
                "RoleBinding \"b/a\" of Role \"r\" to ServiceAccount \"app/a\"",
            ]
        );
        // Another namespace sees only the cluster-wide binding; a deletion removes.
        assert_eq!(p.rules_for(&sa, "b").0.len(), 0);
        p.apply(
            Kind::RoleBinding,
            EventType::Deleted,
            &json!({"metadata": {"name": "b", "namespace": "a"}}),
        );
        assert_eq!(p.rules_for(&sa, "a").0.len(), 0);
    }
}
