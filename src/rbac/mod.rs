//! Authorization: whether a user may make a request, as kube-apiserver decides with
//! `--authorization-mode=RBAC` — `system:masters` first (the privileged-group authorizer),
//! then the RBAC authorizer over the Roles, ClusterRoles and bindings of the store — and
//! the checks that keep RBAC from being a way around itself (privilege escalation).
//!
//! Owns: [`Attributes`] (`authorizer.Attributes`), [`Authorizer`] and its modes, the
//! decision and its reason text, rule resolution for SelfSubjectRulesReview, the escalation
//! checks on Role and binding writes (`escalation`), and the bootstrap policy (`bootstrap`).
//! Uses `registry` to read (through the watch-fed `index`) and, at start only, to write the
//! bootstrap policy. Must not know HTTP: `api` turns requests into [`Attributes`] and
//! decisions into `Status` answers.

pub(crate) mod bootstrap;
mod escalation;
pub(crate) mod index;
pub(crate) mod rules;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::registry::Registry;
use crate::tokens::UserInfo;
use crate::wellknown;
use index::{Kind, PolicyIndex, Visit};

/// How long a write to the policy waits for the authorizer to see it before answering.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

/// The OIDC documents `--anonymous-issuer-discovery` opens to everybody.
const OIDC_PATHS: &[&str] = &[wellknown::OIDC_DISCOVERY_PATH, wellknown::OIDC_JWKS_PATH];

/// What a request asks to do (`authorizer.AttributesRecord` without the user).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attributes {
    pub(crate) verb: String,
    /// True for the resource tree; false for paths such as `/healthz`.
    pub(crate) resource_request: bool,
    /// The path of a non-resource request.
    pub(crate) path: String,
    pub(crate) api_group: String,
    pub(crate) resource: String,
    pub(crate) subresource: String,
    /// Empty for cluster-scoped requests.
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Role-based access control over the store's policy (the default).
    Rbac,
    /// Everything is allowed to everybody, anonymous included: for tests only.
    AlwaysAllow,
}

/// A decision and its reason (`RBAC: allowed by ...`, or why nothing allowed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    pub(crate) reason: String,
}

/// What a user may do in a namespace (SelfSubjectRulesReview).
#[derive(Debug, Clone, Default)]
pub(crate) struct RulesFor {
    pub(crate) resource_rules: Vec<PolicyRule>,
    pub(crate) non_resource_rules: Vec<PolicyRule>,
    /// Resolution errors (missing roles), joined as Kubernetes prints them; empty if none.
    pub(crate) evaluation_error: String,
}

/// The authorizer every request and every review goes through.
#[derive(Debug)]
pub(crate) struct Authorizer {
    mode: Mode,
    /// Whether anonymous clients may read the OIDC documents (`--anonymous-issuer-discovery`).
    anonymous_issuer_discovery: bool,
    index: Arc<PolicyIndex>,
}

impl Authorizer {
    /// An authorizer whose policy is empty until [`Authorizer::follow`] runs.
    pub(crate) fn new(mode: Mode, anonymous_issuer_discovery: bool) -> Self {
        Authorizer {
            mode,
            anonymous_issuer_discovery,
            index: Arc::default(),
        }
    }

    /// An authorizer over a fixed policy (tests).
    #[cfg(test)]
    pub(crate) fn with_policy(fill: impl FnOnce(&mut index::Policy)) -> Self {
        Authorizer {
            mode: Mode::Rbac,
            anonymous_issuer_discovery: false,
            index: Arc::new(PolicyIndex::fixed(fill)),
        }
    }

    /// Keeps the policy exact from the registry's watches; runs until aborted.
    pub(crate) fn follow(&self, registry: Registry) -> impl Future<Output = ()> + use<> {
        self.index.clone().follow(registry)
    }

    /// Waits until the whole policy has been read once (the server is not ready before).
    pub(crate) async fn synced(&self) {
        self.index.synced().await;
    }

    /// After a write to the policy at `revision`: waits until the decisions take it into
    /// account, so that a deleted binding grants nothing from the moment the delete is
    /// acknowledged. Writes to other resources return at once.
    pub(crate) async fn caught_up(&self, group: &str, plural: &str, revision: u64) {
        let Some(kind) = (group == wellknown::GROUP_RBAC)
            .then(|| Kind::from_plural(plural))
            .flatten()
        else {
            return;
        };
        if !self.index.caught_up(kind, revision, CATCH_UP_LIMIT).await {
            tracing::warn!(
                plural,
                revision,
                "the authorizer did not see a policy write in time"
            );
        }
    }

    /// Whether `user` may do `a`, and why (`WithAuthorization`'s union: the privileged
    /// group, then the mode's authorizer).
    pub(crate) fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let allow = |reason: &str| Decision {
            allowed: true,
            reason: reason.to_string(),
        };
        if user.in_group(wellknown::GROUP_MASTERS) || self.mode == Mode::AlwaysAllow {
            return allow("");
        }
        if self.anonymous_issuer_discovery
            && !a.resource_request
            && a.verb == "get"
            && OIDC_PATHS.contains(&a.path.as_str())
        {
            return allow("allowed by --anonymous-issuer-discovery");
        }
        let policy = self.index.read();
        let mut errors = Vec::new();
        let mut allowed_by = None;
        policy.visit(user, &a.namespace, |v| match v {
            Visit::Rule(source, rule) if rules::allows(rule, a) => {
                allowed_by = Some(format!("RBAC: allowed by {source}"));
                ControlFlow::Break(())
            }
            Visit::Rule(..) => ControlFlow::Continue(()),
            Visit::Error(e) => {
                errors.push(e);
                ControlFlow::Continue(())
            }
        });
        match allowed_by {
            Some(reason) => allow(&reason),
            None => Decision {
                allowed: false,
                reason: if errors.is_empty() {
                    String::new()
                } else {
                    format!("RBAC: {}", aggregate(&errors))
                },
            },
        }
    }

    /// Every rule `user` holds in `namespace` (`RulesFor` of the union: everything for
    /// `system:masters`).
    pub(crate) fn rules_for(&self, user: &UserInfo, namespace: &str) -> RulesFor {
        let (rules, errors) =
            if user.in_group(wellknown::GROUP_MASTERS) || self.mode == Mode::AlwaysAllow {
                (everything(), Vec::new())
            } else {
                self.index.read().rules_for(user, namespace)
            };
        let mut out = RulesFor {
            evaluation_error: aggregate(&errors),
            ..RulesFor::default()
        };
        for rule in rules {
            let has = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
            if has(&rule.resources) {
                out.resource_rules.push(PolicyRule {
                    non_resource_urls: None,
                    ..rule.clone()
                });
            }
            if has(&rule.non_resource_urls) {
                out.non_resource_rules.push(PolicyRule {
                    verbs: rule.verbs,
                    non_resource_urls: rule.non_resource_urls,
                    ..PolicyRule::default()
                });
            }
        }
        out
    }
}

/// The rules of `cluster-admin`.
fn everything() -> Vec<PolicyRule> {
    let all = || Some(vec![wellknown::RBAC_ALL.to_string()]);
    vec![
        PolicyRule {
            verbs: vec![wellknown::RBAC_ALL.into()],
            api_groups: all(),
            resources: all(),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: vec![wellknown::RBAC_ALL.into()],
            non_resource_urls: all(),
            ..PolicyRule::default()
        },
    ]
}

/// `utilerrors.NewAggregate(errs).Error()`: one message as it is, several (duplicates
/// dropped) as `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for e in errors {
        if !unique.contains(&e.as_str()) {
            unique.push(e);
        }
    }
    match unique.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::EventType;
    use serde_json::json;

    pub(crate) fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn list(verb: &str, resource: &str, ns: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            resource: resource.into(),
            namespace: ns.into(),
            ..Attributes::default()
        }
    }

    fn walkthrough() -> Authorizer {
        Authorizer::with_policy(|p| {
            p.apply(
                Kind::Role,
                EventType::Added,
                &json!({"metadata": {"name": "cm-reader", "namespace": "a"},
                        "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            );
            p.apply(
                Kind::RoleBinding,
                EventType::Added,
                &json!({"metadata": {"name": "app-cm", "namespace": "a"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
                        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "a"}]}),
            );
        })
    }

    #[test]
    fn decisions_and_reasons() {
        let authz = walkthrough();
        let sa = user(
            "system:serviceaccount:a:app",
            &["system:serviceaccounts", "system:authenticated"],
        );
        assert_eq!(
            authz.authorize(&sa, &list("list", "configmaps", "a")),
            Decision {
                allowed: true,
                reason: "RBAC: allowed by RoleBinding \"app-cm/a\" of Role \"cm-reader\" to ServiceAccount \"app/a\"".into()
            }
        );
        assert!(
            !authz
                .authorize(&sa, &list("list", "configmaps", "b"))
                .allowed
        );
        assert!(!authz.authorize(&sa, &list("list", "secrets", "a")).allowed);
        assert!(
            !authz
                .authorize(&sa, &list("list", "configmaps", ""))
                .allowed
        );
        let admin = user("admin", &["system:masters"]);
        assert_eq!(
            authz.authorize(&admin, &list("delete", "secrets", "")),
            Decision {
                allowed: true,
                reason: String::new()
            }
        );
        let rules = authz.rules_for(&sa, "a");
        assert_eq!(rules.resource_rules.len(), 1);
        assert!(rules.non_resource_rules.is_empty());
        assert_eq!(authz.rules_for(&admin, "a").non_resource_rules.len(), 1);
    }

    #[test]
    fn missing_roles_are_the_reason() {
        let authz = Authorizer::with_policy(|p| {
            for name in ["one", "two"] {
                p.apply(
                    Kind::RoleBinding,
                    EventType::Added,
                    &json!({"metadata": {"name": name, "namespace": "a"},
                            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                            "subjects": [{"kind": "User", "name": "u"}]}),
                );
            }
        });
        let d = authz.authorize(&user("u", &[]), &list("get", "pods", "a"));
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            "RBAC: [clusterrole.rbac.authorization.k8s.io \"one\" not found, clusterrole.rbac.authorization.k8s.io \"two\" not found]"
        );
        assert_eq!(aggregate(&["x".into(), "x".into()]), "x");
    }

    #[test]
    fn anonymous_issuer_discovery_opens_only_the_oidc_documents() {
        let authz = Authorizer {
            anonymous_issuer_discovery: true,
            ..Authorizer::new(Mode::Rbac, true)
        };
        let anon = user("system:anonymous", &["system:unauthenticated"]);
        let get = |path: &str| Attributes {
            verb: "get".into(),
            path: path.into(),
            ..Attributes::default()
        };
        assert!(
            authz
                .authorize(&anon, &get(wellknown::OIDC_JWKS_PATH))
                .allowed
        );
        assert!(!authz.authorize(&anon, &get("/metrics")).allowed);
        let closed = Authorizer::new(Mode::Rbac, false);
        assert!(
            !closed
                .authorize(&anon, &get(wellknown::OIDC_JWKS_PATH))
                .allowed
        );
        let open = Authorizer::new(Mode::AlwaysAllow, false);
        assert!(open.authorize(&anon, &get("/metrics")).allowed);
    }
}
