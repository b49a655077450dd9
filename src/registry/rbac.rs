//! The `rbac.authorization.k8s.io/v1` kinds' own rules: Role, ClusterRole, RoleBinding and
//! ClusterRoleBinding. Defaulting mirrors kubernetes `pkg/apis/rbac/v1/defaults.go`,
//! validation `pkg/apis/rbac/validation/validation.go` (texts included). Names of all four
//! kinds are path segments (`ValidateRBACName`); the resource table says so.
//!
//! This is only the objects' shape. Deciding what a user may do with them (the authorizer,
//! escalation checks) is not here; aggregating ClusterRoles is a controller's job.

use serde_json::{Map, Value, json};

use super::validation::{self as v, FieldError};
use crate::wellknown::GROUP_RBAC;

const SUBJECT_KINDS: &[&str] = &["ServiceAccount", "User", "Group"];

/// API defaulting, applied to every create and update body (it runs on decode in Kubernetes).
///
/// Besides `defaults.go` (a `roleRef` and User/Group subjects get the RBAC group), fields Go
/// would decode as zero values are filled in the same way (`roleRef`, its `kind` and `name`,
/// a subject's `kind` and `name`, a rule's `verbs`), so that leaving them out is the 422 with
/// Kubernetes' text rather than a decoding error. Only invalid objects change that way.
pub(crate) fn default(kind: &str, obj: &mut Map<String, Value>) {
    match kind {
        "Role" | "ClusterRole" => {
            let rules = obj.get_mut("rules").and_then(Value::as_array_mut);
            for rule in rules.into_iter().flatten().filter_map(Value::as_object_mut) {
                zero(rule, "verbs", json!([]));
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_ref = obj.entry("roleRef").or_insert_with(|| json!({}));
            if role_ref.is_null() {
                *role_ref = json!({});
            }
            if let Some(r) = role_ref.as_object_mut() {
                if str_of(r, "apiGroup").is_empty() {
                    r.insert("apiGroup".into(), Value::from(GROUP_RBAC));
                }
                zero(r, "kind", json!(""));
                zero(r, "name", json!(""));
            }
            let subjects = obj.get_mut("subjects").and_then(Value::as_array_mut);
            for s in subjects
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                zero(s, "kind", json!(""));
                zero(s, "name", json!(""));
                // `SetDefaults_Subject`: ServiceAccount subjects keep the empty group.
                if str_of(s, "apiGroup").is_empty() && matches!(str_of(s, "kind"), "User" | "Group")
                {
                    s.insert("apiGroup".into(), Value::from(GROUP_RBAC));
                }
            }
        }
        _ => {}
    }
}

/// Sets `key` to Go's zero value when it is missing or null.
fn zero(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), value);
    }
}

fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn str_at<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The strings of a list field; a missing field is empty.
fn strings<'a>(obj: &'a Value, key: &str) -> Vec<&'a str> {
    obj.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default())
        .collect()
}

/// Kind-specific validation after `ValidateObjectMeta`; `old` is the stored object on update.
pub(crate) fn validate(kind: &str, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    match kind {
        "Role" => rules(obj, true, errs),
        "ClusterRole" => {
            rules(obj, false, errs);
            aggregation_rule(obj, errs);
        }
        "RoleBinding" => binding(obj, old, &["Role", "ClusterRole"], true, errs),
        "ClusterRoleBinding" => binding(obj, old, &["ClusterRole"], false, errs),
        _ => {}
    }
}

/// `ValidatePolicyRule` for each of `rules`.
fn rules(obj: &Value, namespaced: bool, errs: &mut Vec<FieldError>) {
    let rules = obj.get("rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let path = format!("rules[{i}]");
        if strings(rule, "verbs").is_empty() {
            errs.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = strings(rule, "nonResourceURLs");
        if !urls.is_empty() {
            let field = format!("{path}.nonResourceURLs");
            let shown = v::go_string_slice(&urls);
            if namespaced {
                errs.push(FieldError::invalid_go(
                    field.as_str(),
                    shown.as_str(),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|k| !strings(rule, k).is_empty())
            {
                errs.push(FieldError::invalid_go(
                    field,
                    shown,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if strings(rule, "apiGroups").is_empty() {
            errs.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if strings(rule, "resources").is_empty() {
            errs.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

/// A ClusterRole's `aggregationRule`: at least one selector, each a valid label selector.
fn aggregation_rule(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(rule) = obj.get("aggregationRule").filter(|r| !r.is_null()) else {
        return;
    };
    let path = "aggregationRule.clusterRoleSelectors";
    let selectors = rule
        .get("clusterRoleSelectors")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if selectors.is_empty() {
        errs.push(FieldError::required(
            path,
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        ));
    }
    for (i, selector) in selectors.iter().enumerate() {
        let field = format!("{path}[{i}]");
        // Kubernetes then converts the selector, which fails for the same reasons, and
        // reports the (nil) result as well.
        if v::label_selector(selector, &field, errs) {
            errs.push(FieldError::invalid(
                field,
                Value::from("null"),
                "invalid label selector.",
            ));
        }
    }
}

/// `ValidateRoleBinding` / `ValidateClusterRoleBinding`, and on update the immutable roleRef.
fn binding(
    obj: &Value,
    old: Option<&Value>,
    role_kinds: &[&str],
    namespaced: bool,
    errs: &mut Vec<FieldError>,
) {
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    let group = str_at(role_ref, "apiGroup");
    if group != GROUP_RBAC {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            group,
            &[GROUP_RBAC],
        ));
    }
    let kind = str_at(role_ref, "kind");
    if !role_kinds.contains(&kind) {
        errs.push(FieldError::not_supported("roleRef.kind", kind, role_kinds));
    }
    let name = str_at(role_ref, "name");
    if name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    for e in v::path_segment(name) {
        errs.push(FieldError::invalid("roleRef.name", Value::from(name), e));
    }
    let subjects = obj.get("subjects").and_then(Value::as_array);
    for (i, subject) in subjects.into_iter().flatten().enumerate() {
        self::subject(subject, namespaced, &format!("subjects[{i}]"), errs);
    }
    if let Some(old) = old {
        let old_ref = old.get("roleRef").unwrap_or(&Value::Null);
        let fields = ["apiGroup", "kind", "name"];
        if fields
            .iter()
            .any(|f| str_at(old_ref, f) != str_at(role_ref, f))
        {
            errs.push(FieldError::invalid_go(
                "roleRef",
                format!("rbac.RoleRef{{APIGroup:{group:?}, Kind:{kind:?}, Name:{name:?}}}"),
                "cannot change roleRef",
            ));
        }
    }
}

/// `ValidateRoleBindingSubject`.
fn subject(s: &Value, namespaced: bool, path: &str, errs: &mut Vec<FieldError>) {
    let name = str_at(s, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let group = str_at(s, "apiGroup");
    match str_at(s, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for e in v::dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(
                        format!("{path}.name"),
                        Value::from(name),
                        e,
                    ));
                }
            }
            if !group.is_empty() {
                errs.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    group,
                    &[""],
                ));
            }
            if !namespaced && str_at(s, "namespace").is_empty() {
                errs.push(FieldError::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != GROUP_RBAC {
                errs.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    group,
                    &[GROUP_RBAC],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.kind"),
            other,
            SUBJECT_KINDS,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(kind: &str, mut obj: Value, old: Option<Value>) -> Vec<String> {
        default(kind, obj.as_object_mut().unwrap());
        let mut errs = Vec::new();
        validate(kind, &obj, old.as_ref(), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn policy_rules_need_verbs_groups_and_resources() {
        assert_eq!(
            errors("Role", json!({"rules": [{}]}), None),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[0].resources: Required value: resource rules must supply at least one resource",
            ]
        );
        let ok = json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        assert!(errors("Role", ok, None).is_empty());
    }

    #[test]
    fn non_resource_urls_only_in_cluster_roles_and_alone() {
        let rule = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/x/*"], "resources": ["pods"]}]});
        assert_eq!(
            errors("Role", rule.clone(), None),
            [
                r#"rules[0].nonResourceURLs: Invalid value: []string{"/healthz", "/x/*"}: namespaced rules cannot apply to non-resource URLs"#,
                r#"rules[0].nonResourceURLs: Invalid value: []string{"/healthz", "/x/*"}: rules cannot apply to both regular resources and non-resource URLs"#,
            ]
        );
        assert_eq!(errors("ClusterRole", rule, None).len(), 1);
        let ok = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(errors("ClusterRole", ok, None).is_empty());
    }

    #[test]
    fn aggregation_rules_need_valid_selectors() {
        assert_eq!(
            errors("ClusterRole", json!({"aggregationRule": {}}), None),
            [
                "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
            ]
        );
        let bad = json!({"aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"a": "b"}},
            {"matchExpressions": [{"key": "k", "operator": "In"}]},
        ]}});
        assert_eq!(
            errors("ClusterRole", bad, None),
            [
                "aggregationRule.clusterRoleSelectors[1].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                r#"aggregationRule.clusterRoleSelectors[1]: Invalid value: "null": invalid label selector."#,
            ]
        );
    }

    #[test]
    fn bindings_default_their_groups() {
        let mut rb = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [
            {"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "a"},
        ]});
        default("RoleBinding", rb.as_object_mut().unwrap());
        assert_eq!(rb["roleRef"]["apiGroup"], GROUP_RBAC);
        assert_eq!(rb["subjects"][0]["apiGroup"], GROUP_RBAC);
        assert!(rb["subjects"][1].get("apiGroup").is_none());
        let mut errs = Vec::new();
        validate("RoleBinding", &rb, None, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn binding_role_refs_and_subjects() {
        assert_eq!(
            errors("RoleBinding", json!({}), None),
            [
                r#"roleRef.kind: Unsupported value: "": supported values: "Role", "ClusterRole""#,
                "roleRef.name: Required value",
            ]
        );
        let crb = json!({"roleRef": {"apiGroup": "x", "kind": "Role", "name": "a/b"}, "subjects": [
            {"kind": "ServiceAccount", "name": "Bad_Name", "apiGroup": "v1"},
            {"kind": "Robot", "name": ""},
            {"kind": "Group", "name": "g", "apiGroup": "other"},
        ]});
        assert_eq!(
            errors("ClusterRoleBinding", crb, None),
            [
                r#"roleRef.apiGroup: Unsupported value: "x": supported values: "rbac.authorization.k8s.io""#,
                r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
                r#"roleRef.name: Invalid value: "a/b": may not contain '/'"#,
                r#"subjects[0].name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                r#"subjects[0].apiGroup: Unsupported value: "v1": supported values: """#,
                "subjects[0].namespace: Required value",
                "subjects[1].name: Required value",
                r#"subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
                r#"subjects[2].apiGroup: Unsupported value: "other": supported values: "rbac.authorization.k8s.io""#,
            ]
        );
    }

    #[test]
    fn role_ref_cannot_change() {
        let old = json!({"roleRef": {"apiGroup": GROUP_RBAC, "kind": "Role", "name": "a"}});
        let same = json!({"roleRef": {"kind": "Role", "name": "a"}, "subjects": []});
        assert!(errors("RoleBinding", same, Some(old.clone())).is_empty());
        let changed = json!({"roleRef": {"kind": "ClusterRole", "name": "b"}});
        assert_eq!(
            errors("RoleBinding", changed, Some(old)),
            [
                r#"roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"b"}: cannot change roleRef"#
            ]
        );
    }
}
