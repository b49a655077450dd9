//! The RBAC checks of `diagnose` (issue 11): ServiceAccounts bound to `cluster-admin` or to a
//! wildcard role, from the listed ClusterRoleBindings, RoleBindings, ClusterRoles and Roles.
//!
//! Owns: [`RbacObjects`] (what `collect` listed) and [`findings`] (pure). The checks:
//! * `serviceaccount-cluster-admin`: a binding whose `roleRef` is the ClusterRole
//!   `cluster-admin`. `error` when one of the bindings is a ClusterRoleBinding (every
//!   namespace), `warning` when they are all RoleBindings (one namespace each).
//! * `serviceaccount-wildcard-role`: any other binding whose role (the ClusterRole, or the
//!   Role of the binding's namespace) has a **wildcard rule**: `verbs` contains `*` and
//!   `resources` contains `*`, whatever its `apiGroups` (in the core group alone that is every
//!   Secret and `serviceaccounts/token`, since `*` also matches subresources), and without
//!   `resourceNames` (a rule limited to named objects does not grant every object). Rules that
//!   grant only some verbs on `*` (the garbage collector's, the namespace controller's) are not
//!   wildcard rules: every cluster has them. Always `warning`.
//!
//! A binding grants a ServiceAccount through a subject (Kubernetes'
//! `pkg/registry/rbac/validation` `appliesToUser`):
//! * `kind: ServiceAccount`: its `namespace`, or in a RoleBinding, the binding's namespace when
//!   empty (a ClusterRoleBinding subject without namespace matches nobody and is skipped);
//! * `kind: User` named `system:serviceaccount:<ns>:<name>`;
//! * `kind: Group` `system:serviceaccounts` (every ServiceAccount), `system:serviceaccounts:<ns>`
//!   (every ServiceAccount of `<ns>`) or `system:authenticated` (every ServiceAccount, and every
//!   other authenticated user).
//!
//! Other subjects (`system:masters`, users, other groups) are not ServiceAccounts and are
//! ignored, so the bootstrap `cluster-admin` → `system:masters` binding is not a finding.
//! One finding per (check, subject): `objects` is the ServiceAccount (or the Group, with an
//! empty namespace) and the title names every binding that grants it.
//! Must not: list anything itself, or judge rules beyond the wildcard rule above (`escalate`,
//! `bind`, `impersonate` are left to dedicated tools).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{Finding, ObjectRef, Severity};
use crate::wellknown;

pub(crate) const CHECK_CLUSTER_ADMIN: &str = "serviceaccount-cluster-admin";
pub(crate) const CHECK_WILDCARD_ROLE: &str = "serviceaccount-wildcard-role";

/// The RBAC objects `collect` listed (all namespaces).
#[derive(Debug, Clone, Default)]
pub(crate) struct RbacObjects {
    pub(crate) cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub(crate) role_bindings: Vec<RoleBinding>,
    pub(crate) cluster_roles: Vec<ClusterRole>,
    pub(crate) roles: Vec<Role>,
}

/// A ClusterRoleBinding or a RoleBinding, reduced to what the checks read.
struct Binding<'a> {
    /// `None` for a ClusterRoleBinding.
    namespace: Option<&'a str>,
    name: &'a str,
    role_ref: &'a RoleRef,
    subjects: &'a [Subject],
}

impl Binding<'_> {
    /// `ClusterRoleBinding bad` or `RoleBinding team/bad`.
    fn describe(&self) -> String {
        match self.namespace {
            None => format!("ClusterRoleBinding {}", self.name),
            Some(ns) => format!("RoleBinding {ns}/{}", self.name),
        }
    }

    /// The command that deletes it.
    fn delete_command(&self) -> String {
        match self.namespace {
            None => format!("kubectl delete clusterrolebinding {}", self.name),
            Some(ns) => format!("kubectl delete rolebinding -n {ns} {}", self.name),
        }
    }
}

/// What a finding accumulates over the bindings that grant one subject.
#[derive(Default)]
struct Grants {
    /// Whether one of them is a ClusterRoleBinding to `cluster-admin`.
    cluster_wide_admin: bool,
    /// `ClusterRoleBinding bad` (with ` (ClusterRole wild)` for a wildcard role), in listing
    /// order.
    bindings: Vec<String>,
    deletes: Vec<String>,
}

/// The findings of both checks, cluster-admin first, then by subject.
pub(crate) fn findings(rbac: &RbacObjects) -> Vec<Finding> {
    let cluster = rbac.cluster_role_bindings.iter().map(|b| Binding {
        namespace: None,
        name: b.metadata.name.as_deref().unwrap_or_default(),
        role_ref: &b.role_ref,
        subjects: b.subjects.as_deref().unwrap_or_default(),
    });
    let namespaced = rbac.role_bindings.iter().map(|b| Binding {
        namespace: Some(b.metadata.namespace.as_deref().unwrap_or_default()),
        name: b.metadata.name.as_deref().unwrap_or_default(),
        role_ref: &b.role_ref,
        subjects: b.subjects.as_deref().unwrap_or_default(),
    });
    let mut by_subject: BTreeMap<(&'static str, ObjectRef), Grants> = BTreeMap::new();
    for binding in cluster.chain(namespaced) {
        let Some(check) = check_of(rbac, &binding) else {
            continue;
        };
        // The wildcard check names the role too: it is not in the title otherwise.
        let role = &binding.role_ref;
        let granted = match check {
            CHECK_WILDCARD_ROLE => format!("{} ({} {})", binding.describe(), role.kind, role.name),
            _ => binding.describe(),
        };
        for subject in binding.subjects {
            let Some(object) = service_account_subject(subject, binding.namespace) else {
                continue;
            };
            let grants = by_subject.entry((check, object)).or_default();
            grants.cluster_wide_admin |=
                check == CHECK_CLUSTER_ADMIN && binding.namespace.is_none();
            if !grants.bindings.contains(&granted) {
                grants.bindings.push(granted.clone());
                grants.deletes.push(binding.delete_command());
            }
        }
    }
    by_subject
        .into_iter()
        .map(|((check, object), grants)| finding(check, object, grants))
        .collect()
}

/// Which check a binding falls under, if any.
fn check_of(rbac: &RbacObjects, binding: &Binding<'_>) -> Option<&'static str> {
    let role = binding.role_ref;
    let rules: Option<&[PolicyRule]> = match (role.kind.as_str(), binding.namespace) {
        ("ClusterRole", _) if role.name == wellknown::CLUSTER_ROLE_CLUSTER_ADMIN => {
            return Some(CHECK_CLUSTER_ADMIN);
        }
        ("ClusterRole", _) => rbac
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(role.name.as_str()))
            .and_then(|r| r.rules.as_deref()),
        // A Role is looked up in the binding's own namespace; a ClusterRoleBinding cannot
        // reference one.
        ("Role", Some(ns)) => rbac
            .roles
            .iter()
            .find(|r| {
                r.metadata.namespace.as_deref() == Some(ns)
                    && r.metadata.name.as_deref() == Some(role.name.as_str())
            })
            .and_then(|r| r.rules.as_deref()),
        _ => None,
    };
    rules
        .is_some_and(|rules| rules.iter().any(is_wildcard))
        .then_some(CHECK_WILDCARD_ROLE)
}

/// The module header's wildcard rule: `*` verbs on `*` resources, not limited by name.
fn is_wildcard(rule: &PolicyRule) -> bool {
    let all = |list: &[String]| list.iter().any(|v| v == wellknown::RBAC_ALL);
    all(&rule.verbs)
        && all(rule.resources.as_deref().unwrap_or_default())
        && rule
            .resource_names
            .as_deref()
            .unwrap_or_default()
            .is_empty()
}

/// The ServiceAccount (or group of ServiceAccounts) a subject names, if it names any.
/// `namespace` is the RoleBinding's (`None` for a ClusterRoleBinding).
fn service_account_subject(subject: &Subject, namespace: Option<&str>) -> Option<ObjectRef> {
    match subject.kind.as_str() {
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .or(namespace)?;
            Some(ObjectRef::new("ServiceAccount", ns, &subject.name))
        }
        "User" => {
            let rest = subject
                .name
                .strip_prefix(wellknown::SERVICE_ACCOUNT_USER_PREFIX)?;
            let (ns, name) = rest.split_once(':')?;
            Some(ObjectRef::new("ServiceAccount", ns, name))
        }
        "Group" => {
            let name = subject.name.as_str();
            let all =
                name == wellknown::GROUP_SERVICE_ACCOUNTS || name == wellknown::GROUP_AUTHENTICATED;
            let of_namespace = group_namespace(name).is_some_and(|ns| !ns.is_empty());
            (all || of_namespace).then(|| ObjectRef::new("Group", "", name))
        }
        _ => None,
    }
}

/// `<ns>` of the group `system:serviceaccounts:<ns>`.
fn group_namespace(group: &str) -> Option<&str> {
    group
        .strip_prefix(wellknown::GROUP_SERVICE_ACCOUNTS)?
        .strip_prefix(':')
}

fn finding(check: &'static str, object: ObjectRef, grants: Grants) -> Finding {
    let who = match object.kind.as_str() {
        "ServiceAccount" => format!("ServiceAccount {}/{}", object.namespace, object.name),
        _ => match group_namespace(&object.name) {
            Some(ns) => format!(
                "every ServiceAccount of namespace {ns} (group {})",
                object.name
            ),
            None if object.name == wellknown::GROUP_AUTHENTICATED => format!(
                "every ServiceAccount and every authenticated user (group {})",
                object.name
            ),
            None => format!("every ServiceAccount (group {})", object.name),
        },
    };
    let what = if check == CHECK_CLUSTER_ADMIN {
        format!(
            "is bound to ClusterRole {}",
            wellknown::CLUSTER_ROLE_CLUSTER_ADMIN
        )
    } else {
        "is granted verbs * on resources * (a wildcard role)".to_owned()
    };
    let severity = if grants.cluster_wide_admin {
        Severity::Error
    } else {
        Severity::Warning
    };
    let title = format!("{who} {what} by {}", grants.bindings.join(", "));
    let remedy = remedy(&object, &grants.deletes);
    Finding {
        check,
        severity,
        title,
        objects: vec![object],
        clients: Vec::new(),
        remedy,
    }
}

/// A narrow Role and its binding for the ServiceAccount (placeholders for a group), then the
/// broad bindings to take it out of.
fn remedy(object: &ObjectRef, deletes: &[String]) -> String {
    let (ns, name, whom, subject) = match object.kind.as_str() {
        "ServiceAccount" => (
            object.namespace.as_str(),
            object.name.as_str(),
            "",
            "the ServiceAccount",
        ),
        _ => (
            group_namespace(&object.name).unwrap_or("<namespace>"),
            "<serviceaccount>",
            ", to each ServiceAccount that needs it",
            "the group",
        ),
    };
    let mut lines = vec![
        format!(
            "bind a narrow Role with only the verbs and resources the workload needs{whom} \
             (the verbs and resources below are an example):"
        ),
        format!(
            "kubectl create role {name}-minimal -n {ns} --verb=get,list,watch --resource=configmaps"
        ),
        format!(
            "kubectl create rolebinding {name}-minimal -n {ns} --role={name}-minimal --serviceaccount={ns}:{name}"
        ),
        format!(
            "then remove {subject} from the broad binding(s) (kubectl edit), or delete a binding nothing else needs:"
        ),
    ];
    lines.extend(deletes.iter().cloned());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// RBAC objects from a JSON list, each sorted by its `kind`.
    fn objects(items: Value) -> RbacObjects {
        let mut out = RbacObjects::default();
        for item in items.as_array().cloned().unwrap_or_default() {
            let kind = item["kind"].as_str().unwrap_or_default().to_owned();
            match kind.as_str() {
                "ClusterRoleBinding" => out
                    .cluster_role_bindings
                    .push(serde_json::from_value(item).unwrap()),
                "RoleBinding" => out
                    .role_bindings
                    .push(serde_json::from_value(item).unwrap()),
                "ClusterRole" => out
                    .cluster_roles
                    .push(serde_json::from_value(item).unwrap()),
                "Role" => out.roles.push(serde_json::from_value(item).unwrap()),
                other => panic!("unexpected kind {other}"),
            }
        }
        out
    }

    fn crb(name: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects})
    }

    fn rb(ns: &str, name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": subjects})
    }

    fn cluster_role(name: &str, rules: Value) -> Value {
        json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn sa(ns: &str, name: &str) -> Value {
        json!({"kind": "ServiceAccount", "namespace": ns, "name": name})
    }

    fn group(name: &str) -> Value {
        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name})
    }

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
        json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
    }

    /// A finding's (check, severity, "Kind namespace/name").
    type Expected<'a> = (&'a str, Severity, &'a str);

    /// (check, severity, "Kind namespace/name") of each finding.
    fn summary(findings: &[Finding]) -> Vec<(&'static str, Severity, String)> {
        findings
            .iter()
            .map(|f| {
                let o = &f.objects[0];
                (
                    f.check,
                    f.severity,
                    format!("{} {}/{}", o.kind, o.namespace, o.name),
                )
            })
            .collect()
    }

    #[test]
    fn service_accounts_with_cluster_admin_or_wildcard_roles_r11() {
        use Severity::{Error, Warning};
        let admin = CHECK_CLUSTER_ADMIN;
        let wild = CHECK_WILDCARD_ROLE;
        let star = || json!([rule(&["*"], &["*"], &["*"])]);
        let admin_to = |subjects: Value| json!([crb("bad", "cluster-admin", subjects)]);
        let cases: Vec<(&str, Value, Vec<Expected>)> = vec![
            (
                "cluster-admin through a ClusterRoleBinding is an error",
                admin_to(json!([sa("ci", "deployer")])),
                vec![(admin, Error, "ServiceAccount ci/deployer")],
            ),
            (
                "the bootstrap binding to system:masters is ignored",
                admin_to(json!([group("system:masters")])),
                vec![],
            ),
            (
                "cluster-admin through a RoleBinding is a warning; its subject's namespace defaults to the binding's",
                json!([rb(
                    "team",
                    "adm",
                    "ClusterRole",
                    "cluster-admin",
                    json!([{"kind": "ServiceAccount", "name": "app"}])
                )]),
                vec![(admin, Warning, "ServiceAccount team/app")],
            ),
            (
                "a ClusterRoleBinding subject without namespace matches nobody",
                admin_to(json!([{"kind": "ServiceAccount", "name": "app"}])),
                vec![],
            ),
            (
                "every ServiceAccount through the group system:serviceaccounts",
                admin_to(json!([group("system:serviceaccounts")])),
                vec![(admin, Error, "Group /system:serviceaccounts")],
            ),
            (
                "system:authenticated includes every ServiceAccount",
                admin_to(json!([group("system:authenticated")])),
                vec![(admin, Error, "Group /system:authenticated")],
            ),
            (
                "a User named like a ServiceAccount is that ServiceAccount",
                admin_to(
                    json!([{"kind": "User", "name": "system:serviceaccount:ops:bot"}, {"kind": "User", "name": "alice"}]),
                ),
                vec![(admin, Error, "ServiceAccount ops/bot")],
            ),
            (
                "a wildcard ClusterRole bound to a namespace's ServiceAccounts",
                json!([
                    cluster_role("wild", star()),
                    rb(
                        "team",
                        "w",
                        "ClusterRole",
                        "wild",
                        json!([group("system:serviceaccounts:team")])
                    ),
                ]),
                vec![(wild, Warning, "Group /system:serviceaccounts:team")],
            ),
            (
                "a wildcard Role in the binding's namespace; a ClusterRoleBinding to a wildcard ClusterRole is only a warning",
                json!([
                    role("team", "wild", json!([rule(&[""], &["*"], &["*"])])),
                    rb("team", "w", "Role", "wild", json!([sa("team", "app")])),
                    cluster_role("wild", star()),
                    crb("w", "wild", json!([sa("ops", "bot")])),
                ]),
                vec![
                    (wild, Warning, "ServiceAccount ops/bot"),
                    (wild, Warning, "ServiceAccount team/app"),
                ],
            ),
            (
                "a Role of another namespace does not count",
                json!([
                    role("other", "wild", star()),
                    rb("team", "w", "Role", "wild", json!([sa("team", "app")])),
                ]),
                vec![],
            ),
            (
                "not wildcard: some verbs on every resource, every verb on some resources, named objects",
                json!([
                    cluster_role(
                        "gc",
                        json!([rule(
                            &["*"],
                            &["*"],
                            &["get", "list", "watch", "patch", "update", "delete"]
                        )])
                    ),
                    cluster_role("pods", json!([rule(&["*"], &["pods", "secrets"], &["*"])])),
                    cluster_role(
                        "named",
                        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": ["x"]}])
                    ),
                    crb("gc", "gc", json!([sa("kube-system", "gc")])),
                    crb("pods", "pods", json!([sa("kube-system", "gc")])),
                    crb("named", "named", json!([sa("kube-system", "gc")])),
                ]),
                vec![],
            ),
            (
                "a binding to a role that does not exist grants nothing",
                json!([crb("ghost", "missing", json!([sa("ci", "deployer")]))]),
                vec![],
            ),
            (
                "other groups are not ServiceAccounts",
                admin_to(json!([
                    group("developers"),
                    group("system:serviceaccounts:")
                ])),
                vec![],
            ),
        ];
        for (name, items, want) in cases {
            let got = findings(&objects(items));
            let want: Vec<(&str, Severity, String)> = want
                .into_iter()
                .map(|(c, s, o)| (c, s, o.to_owned()))
                .collect();
            assert_eq!(summary(&got), want, "{name}: {got:#?}");
        }
    }

    #[test]
    fn one_finding_per_subject_names_every_binding_and_its_remedy_r11() {
        let rbac = objects(json!([
            crb("bad", "cluster-admin", json!([sa("ci", "deployer")])),
            rb(
                "ci",
                "adm",
                "ClusterRole",
                "cluster-admin",
                json!([sa("ci", "deployer")])
            ),
        ]));
        let got = findings(&rbac);
        assert_eq!(got.len(), 1, "{got:#?}");
        let f = &got[0];
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(
            f.title,
            "ServiceAccount ci/deployer is bound to ClusterRole cluster-admin by \
             ClusterRoleBinding bad, RoleBinding ci/adm"
        );
        for line in [
            "kubectl create role deployer-minimal -n ci --verb=get,list,watch --resource=configmaps",
            "kubectl create rolebinding deployer-minimal -n ci --role=deployer-minimal --serviceaccount=ci:deployer",
            "kubectl delete clusterrolebinding bad",
            "kubectl delete rolebinding -n ci adm",
        ] {
            assert!(
                f.remedy.lines().any(|l| l == line),
                "{line:?} in\n{}",
                f.remedy
            );
        }
        // Only RoleBindings: a warning.
        let rbac = objects(json!([rb(
            "ci",
            "adm",
            "ClusterRole",
            "cluster-admin",
            json!([group("system:serviceaccounts:ci")])
        )]));
        let got = findings(&rbac);
        assert_eq!(got[0].severity, Severity::Warning);
        assert!(
            got[0]
                .remedy
                .contains("--serviceaccount=ci:<serviceaccount>"),
            "{}",
            got[0].remedy
        );
    }
}
