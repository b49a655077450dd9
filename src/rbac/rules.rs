//! PolicyRule arithmetic, pure: whether a rule allows a request (`RuleAllows` with the
//! matchers of `pkg/apis/rbac/v1/evaluation_helpers.go`), whether a set of rules covers
//! another (`Covers` of `component-helpers/auth/rbac/validation`, the escalation check),
//! and the compact text of a rule Kubernetes prints in escalation errors.
//!
//! Must not: know where rules come from (that is `index`) or who asks.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::Attributes;
use crate::wellknown;

/// The wildcard of verbs, groups, resources and URLs.
const ALL: &str = wellknown::RBAC_ALL;

fn strings(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

fn group_matches(rule: &PolicyRule, group: &str) -> bool {
    strings(&rule.api_groups)
        .iter()
        .any(|g| g == ALL || g == group)
}

/// `combined` is `resource` or `resource/subresource`; a rule may also name `*/subresource`.
fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    strings(&rule.resources).iter().any(|r| {
        r == ALL
            || r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

fn name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = strings(&rule.resource_names);
    names.is_empty() || has(names, name)
}

/// A rule URL ending in `*` matches every path with that prefix.
fn url_covers(rule_url: &str, path: &str) -> bool {
    rule_url == ALL
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

/// Whether `rule` allows the request (`RuleAllows`).
pub(crate) fn allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !verb_matches(rule, &a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(&rule.non_resource_urls)
            .iter()
            .any(|u| url_covers(u, &a.path));
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    group_matches(rule, &a.api_group)
        && resource_matches(rule, &combined, &a.subresource)
        && name_matches(rule, &a.name)
}

/// The rules of `servant` that `owner` does not cover, broken down to one group, resource,
/// name and verb each (`Covers`). Empty: `owner` holds everything `servant` grants.
pub(crate) fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| covers(o, sub)))
        .collect()
}

/// One rule per group × resource × verb (× resource name), and per URL × verb.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut out = Vec::new();
    for group in strings(&rule.api_groups) {
        for resource in strings(&rule.resources) {
            for verb in &rule.verbs {
                let names = strings(&rule.resource_names);
                let names: Vec<Option<Vec<String>>> = if names.is_empty() {
                    vec![None]
                } else {
                    names.iter().map(one).collect()
                };
                for resource_names in names {
                    out.push(PolicyRule {
                        api_groups: one(group),
                        resources: one(resource),
                        verbs: vec![verb.clone()],
                        resource_names,
                        non_resource_urls: None,
                    });
                }
            }
        }
    }
    for url in strings(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
    }
    out
}

/// Whether `owner` covers `sub`, a rule of [`breakdown`] (`ruleCovers`).
fn covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(strings(&owner.api_groups), ALL)
        || has_all(strings(&owner.api_groups), strings(&sub.api_groups));
    let resources = resources_cover(strings(&owner.resources), strings(&sub.resources));
    let urls = strings(&sub.non_resource_urls).iter().all(|path| {
        strings(&owner.non_resource_urls)
            .iter()
            .any(|u| url_covers(u, path))
    });
    let owner_names = strings(&owner.resource_names);
    let names = owner_names.is_empty()
        || (!strings(&sub.resource_names).is_empty()
            && has_all(owner_names, strings(&sub.resource_names)));
    verbs && groups && resources && urls && names
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

/// Merges rules that name one group and one resource and nothing but verbs (`CompactRules`),
/// so a missing `get`, `list` and `watch` of secrets read as one line.
pub(crate) fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let mut simple: BTreeMap<(String, String), PolicyRule> = BTreeMap::new();
    for rule in rules {
        let groups = strings(&rule.api_groups);
        let resources = strings(&rule.resources);
        let is_simple = strings(&rule.resource_names).is_empty()
            && strings(&rule.non_resource_urls).is_empty()
            && groups.len() == 1
            && resources.len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        let key = (groups[0].clone(), resources[0].clone());
        match simple.get_mut(&key) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => {
                simple.insert(key, rule);
            }
        }
    }
    out.extend(simple.into_values());
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub(crate) fn quoted_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", inner.join(" "))
}

/// `CompactString`: `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`.
pub(crate) fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    let fields = [
        ("APIGroups", strings(&rule.api_groups)),
        ("Resources", strings(&rule.resources)),
        ("NonResourceURLs", strings(&rule.non_resource_urls)),
        ("ResourceNames", strings(&rule.resource_names)),
        ("Verbs", rule.verbs.as_slice()),
    ];
    for (name, values) in fields {
        if !values.is_empty() {
            parts.push(format!("{name}:{}", quoted_list(values)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A rule from verbs, groups and resources (`rbac.NewRule(...).Groups(...).Resources(...)`).
    pub(crate) fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            ..PolicyRule::default()
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            non_resource_urls: Some(v(urls)),
            ..PolicyRule::default()
        }
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: "a".into(),
            path: String::new(),
        }
    }

    fn path(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn matching_as_rule_allows() {
        let cm = rule(&["get", "list"], &[""], &["configmaps"]);
        assert!(allows(&cm, &res("get", "", "configmaps", "", "x")));
        assert!(allows(&cm, &res("list", "", "configmaps", "", "")));
        assert!(!allows(&cm, &res("watch", "", "configmaps", "", "")));
        assert!(!allows(&cm, &res("get", "apps", "configmaps", "", "")));
        assert!(!allows(&cm, &res("get", "", "secrets", "", "")));
        // A resource rule never grants its subresources, nor a URL.
        assert!(!allows(&cm, &res("get", "", "configmaps", "status", "")));
        assert!(!allows(&cm, &path("get", "/api")));

        let token = rule(&["create"], &[""], &["serviceaccounts/token"]);
        assert!(allows(
            &token,
            &res("create", "", "serviceaccounts", "token", "app")
        ));
        assert!(!allows(
            &token,
            &res("create", "", "serviceaccounts", "", "")
        ));

        let any_status = rule(&["get"], &["*"], &["*/status"]);
        assert!(allows(
            &any_status,
            &res("get", "apps", "pods", "status", "")
        ));
        assert!(!allows(&any_status, &res("get", "", "pods", "", "")));
        assert!(!allows(&any_status, &res("get", "", "pods", "log", "")));

        let mut named = rule(&["*"], &[""], &["secrets"]);
        named.resource_names = Some(vec!["one".into()]);
        assert!(allows(&named, &res("delete", "", "secrets", "", "one")));
        assert!(!allows(&named, &res("delete", "", "secrets", "", "two")));
        assert!(!allows(&named, &res("list", "", "secrets", "", "")));

        let urls = url_rule(&["get"], &["/healthz", "/apis/*"]);
        assert!(allows(&urls, &path("get", "/healthz")));
        assert!(!allows(&urls, &path("get", "/healthz/etcd")));
        assert!(allows(
            &urls,
            &path("get", "/apis/rbac.authorization.k8s.io")
        ));
        assert!(!allows(&urls, &path("get", "/apis")));
        assert!(!allows(&urls, &path("post", "/healthz")));
        assert!(allows(&url_rule(&["*"], &["*"]), &path("delete", "/x")));
        assert!(!allows(&urls, &res("get", "", "healthz", "", "")));
    }

    #[test]
    fn covers_as_kubernetes() {
        let admin = vec![rule(&["*"], &["*"], &["*"])];
        let secrets = vec![rule(&["get", "list"], &[""], &["secrets"])];
        assert!(uncovered(&admin, &secrets).is_empty());
        let cm = vec![rule(&["get", "list", "watch"], &[""], &["configmaps"])];
        let missing = uncovered(&cm, &secrets);
        assert_eq!(missing.len(), 2);
        let text: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            text,
            ["{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"]
        );
        // `*/status` covers one subresource, and a named grant never covers the whole kind.
        let status = vec![rule(&["get"], &[""], &["*/status"])];
        assert!(uncovered(&status, &[rule(&["get"], &[""], &["pods/status"])]).is_empty());
        let mut named = rule(&["get"], &[""], &["secrets"]);
        named.resource_names = Some(vec!["one".into()]);
        assert!(!uncovered(&[named.clone()], &[rule(&["get"], &[""], &["secrets"])]).is_empty());
        assert!(uncovered(&[rule(&["get"], &[""], &["secrets"])], &[named]).is_empty());
        // URLs with a trailing `*`.
        let urls = vec![url_rule(&["get"], &["/apis/*"])];
        assert!(uncovered(&urls, &[url_rule(&["get"], &["/apis/x"])]).is_empty());
        assert!(!uncovered(&urls, &[url_rule(&["get"], &["/api"])]).is_empty());
    }

    #[test]
    fn compact_string_as_go_prints_it() {
        let mut r = rule(&["get"], &["", "apps"], &["pods"]);
        r.resource_names = Some(vec!["a".into()]);
        assert_eq!(
            compact_string(&r),
            "{APIGroups:[\"\" \"apps\"], Resources:[\"pods\"], ResourceNames:[\"a\"], Verbs:[\"get\"]}"
        );
        assert_eq!(
            compact_string(&url_rule(&["get"], &["/metrics"])),
            "{NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
        );
    }
}
