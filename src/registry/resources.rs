//! The resources this server stores or serves, and their per-kind rules: defaulting on
//! create, validation on create and update, which fields selectors may name. Mirrors the
//! `strategy.go` files under kubernetes `pkg/registry/core/*`.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::rbac;
use super::validation::{self as v, FieldError};
use crate::wellknown;

/// How a resource's object names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    Dns1123Label,
    Dns1123Subdomain,
    PathSegment,
}

/// A subresource served under a resource (`serviceaccounts/token`, `pods/status`).
#[derive(Debug)]
pub(crate) struct Subresource {
    pub(crate) name: &'static str,
    /// The group, version and kind of what the subresource takes and returns.
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) verbs: &'static [&'static str],
}

/// A resource as discovery describes it.
#[derive(Debug)]
pub(crate) struct Resource {
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) short_names: &'static [&'static str],
    pub(crate) categories: &'static [&'static str],
    pub(crate) namespaced: bool,
    pub(crate) verbs: &'static [&'static str],
    /// Stored in the store (false: a create-only review that is computed, never kept).
    pub(crate) stored: bool,
    pub(crate) subresources: &'static [Subresource],
    /// Fields a field selector may name besides `metadata.name` / `metadata.namespace`.
    pub(crate) field_selectors: &'static [&'static str],
    pub(crate) name_rule: NameRule,
}

impl Resource {
    /// `group/version`, or `v1` for the core group.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The qualified resource name used in error messages: `serviceaccounts`, or
    /// `tokenreviews.authentication.k8s.io` for other groups.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub(crate) fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub(crate) fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
/// Served for reading only: the objects are the server's own (the `kubernetes` Service and
/// its endpoints), written by its controllers.
const READ_ONLY: &[&str] = &["get", "list", "watch"];

macro_rules! status_sub {
    ($kind:literal) => {
        Subresource {
            name: "status",
            group: "",
            version: "v1",
            kind: $kind,
            verbs: &["get", "patch", "update"],
        }
    };
}

/// A computed review (`stored: false`): create only, in version v1.
const fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        short_names: &[],
        categories: &[],
        namespaced,
        verbs: CREATE_ONLY,
        stored: false,
        subresources: &[],
        field_selectors: &[],
        name_rule: NameRule::Dns1123Subdomain,
    }
}

/// An `rbac.authorization.k8s.io/v1` kind: every verb, names checked as path segments
/// (`ValidateRBACName`), no short names: a review's shape with the verbs and rules of a
/// stored kind.
const fn rbac(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        verbs: CRUD,
        stored: true,
        name_rule: NameRule::PathSegment,
        ..review(wellknown::GROUP_RBAC, kind, plural, singular, namespaced)
    }
}

/// Every resource, in discovery order.
pub(crate) static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        categories: &[],
        namespaced: true,
        verbs: CRUD,
        stored: true,
        subresources: &[],
        field_selectors: &[],
        name_rule: NameRule::Dns1123Subdomain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        categories: &[],
        namespaced: true,
        verbs: READ_ONLY,
        stored: true,
        subresources: &[],
        field_selectors: &[],
        name_rule: NameRule::Dns1123Subdomain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        categories: &[],
        namespaced: true,
        verbs: CRUD,
        stored: true,
        subresources: &[],
        field_selectors: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        name_rule: NameRule::PathSegment,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        categories: &[],
        namespaced: false,
        verbs: NAMESPACE_VERBS,
        stored: true,
        subresources: &[
            Subresource {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
            status_sub!("Namespace"),
        ],
        field_selectors: &["status.phase"],
        name_rule: NameRule::Dns1123Label,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        categories: &[],
        namespaced: false,
        verbs: CRUD,
        stored: true,
        subresources: &[status_sub!("Node")],
        field_selectors: &["spec.unschedulable"],
        name_rule: NameRule::Dns1123Subdomain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        categories: &["all"],
        namespaced: true,
        verbs: CRUD,
        stored: true,
        subresources: &[status_sub!("Pod")],
        field_selectors: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        name_rule: NameRule::Dns1123Subdomain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        categories: &[],
        namespaced: true,
        verbs: CRUD,
        stored: true,
        subresources: &[],
        field_selectors: &["type"],
        name_rule: NameRule::Dns1123Subdomain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        categories: &[],
        namespaced: true,
        verbs: CRUD,
        stored: true,
        subresources: &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        }],
        field_selectors: &[],
        name_rule: NameRule::Dns1123Subdomain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        categories: &["all"],
        namespaced: true,
        verbs: READ_ONLY,
        stored: true,
        subresources: &[Subresource {
            name: "status",
            group: "",
            version: "v1",
            kind: "Service",
            verbs: &["get"],
        }],
        field_selectors: &["spec.clusterIP", "spec.type"],
        name_rule: NameRule::Dns1123Label,
    },
    review(
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        false,
    ),
    review(
        "authentication.k8s.io",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        true,
    ),
    review(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        false,
    ),
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        categories: &[],
        namespaced: true,
        verbs: CRUD,
        stored: true,
        subresources: &[],
        field_selectors: &[],
        name_rule: NameRule::Dns1123Subdomain,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        short_names: &[],
        categories: &[],
        namespaced: true,
        verbs: READ_ONLY,
        stored: true,
        subresources: &[],
        field_selectors: &["addressType"],
        name_rule: NameRule::Dns1123Subdomain,
    },
    rbac(
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
    ),
    rbac("ClusterRole", "clusterroles", "clusterrole", false),
    rbac("RoleBinding", "rolebindings", "rolebinding", true),
    rbac("Role", "roles", "role", true),
];

/// Looks a resource up by group, version and plural name.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a Kind in the core group (for internal callers).
pub(crate) fn core(plural: &str) -> &'static Resource {
    // Only called with the plural names of the table above; a typo is a programming
    // error that every test would hit at once.
    #[allow(clippy::expect_used)]
    find("", "v1", plural).expect("core resource is in the table")
}

/// Defaults applied on create (`PrepareForCreate` + API defaulting).
pub(crate) fn default_on_create(res: &Resource, obj: &mut Map<String, Value>) {
    match res.kind {
        "Namespace" => {
            let name = obj
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // The NamespaceDefaultLabelName feature (GA 1.22) labels every namespace.
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), Value::from(name));
                }
            }
            // The `kubernetes` finalizer is required, appended to any others
            // (`namespaceStrategy.PrepareForCreate`); the namespace controller removes it.
            let spec = obj.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                let f = s.entry("finalizers").or_insert_with(|| json!([]));
                if !f.is_array() {
                    *f = json!([]);
                }
                if let Some(list) = f.as_array_mut()
                    && !list.iter().any(|v| v == wellknown::FINALIZER_KUBERNETES)
                {
                    list.push(Value::from(wellknown::FINALIZER_KUBERNETES));
                }
            }
            obj.insert("status".into(), json!({"phase": "Active"}));
        }
        "Secret" => {
            if obj
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
            {
                obj.insert("type".into(), Value::from(wellknown::SECRET_TYPE_OPAQUE));
            }
            fold_string_data(obj);
        }
        "Pod" => default_pod(obj),
        _ => default_on_decode(res, obj),
    }
}

/// Defaults applied to every create and update body: conversion and the API defaulting
/// that Kubernetes runs when it decodes a request (`SetDefaults_*`), as opposed to the
/// create-only `PrepareForCreate` above.
pub(crate) fn default_on_decode(res: &Resource, obj: &mut Map<String, Value>) {
    match (res.group, res.kind) {
        ("", "Secret") => fold_string_data(obj),
        (wellknown::GROUP_RBAC, kind) => rbac::default(kind, obj),
        _ => {}
    }
}

/// Moves `stringData` into `data` (base64), as the Secret conversion does.
fn fold_string_data(obj: &mut Map<String, Value>) {
    let Some(Value::Object(sd)) = obj.remove("stringData") else {
        return;
    };
    let data = obj.entry("data").or_insert_with(|| json!({}));
    if data.is_null() {
        *data = json!({});
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in sd {
            let text = v.as_str().unwrap_or_default();
            d.insert(
                k,
                Value::from(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

fn default_pod(obj: &mut Map<String, Value>) {
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    if let Some(s) = spec.as_object_mut() {
        for (k, v) in [
            ("restartPolicy", json!("Always")),
            (
                "terminationGracePeriodSeconds",
                json!(wellknown::DEFAULT_TERMINATION_GRACE_SECONDS),
            ),
            ("dnsPolicy", json!("ClusterFirst")),
            ("securityContext", json!({})),
            ("schedulerName", json!("default-scheduler")),
            ("enableServiceLinks", json!(true)),
            ("preemptionPolicy", json!("PreemptLowerPriority")),
            ("priority", json!(0)),
        ] {
            s.entry(k).or_insert(v);
        }
        for list in ["initContainers", "containers"] {
            if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                    // `Always` for untagged or :latest images, as SetDefaults_Container.
                    let last = image.rsplit('/').next().unwrap_or_default();
                    let pull = if !last.contains(':') || last.ends_with(":latest") {
                        "Always"
                    } else {
                        "IfNotPresent"
                    };
                    c.entry("imagePullPolicy").or_insert_with(|| json!(pull));
                    c.entry("resources").or_insert_with(|| json!({}));
                    c.entry("terminationMessagePath")
                        .or_insert_with(|| json!("/dev/termination-log"));
                    c.entry("terminationMessagePolicy")
                        .or_insert_with(|| json!("File"));
                    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                            p.entry("protocol").or_insert_with(|| json!("TCP"));
                        }
                    }
                }
            }
        }
        if let Some(vols) = s.get_mut("volumes").and_then(Value::as_array_mut) {
            for vol in vols.iter_mut().filter_map(Value::as_object_mut) {
                for (src, mode) in [
                    ("projected", "defaultMode"),
                    ("secret", "defaultMode"),
                    ("configMap", "defaultMode"),
                ] {
                    if let Some(o) = vol.get_mut(src).and_then(Value::as_object_mut) {
                        o.entry(mode).or_insert_with(|| json!(420));
                    }
                }
                default_token_projections(vol);
            }
        }
    }
    obj.insert(
        "status".into(),
        json!({"phase": "Pending", "qosClass": "BestEffort"}),
    );
}

/// A projected `serviceAccountToken` source without `expirationSeconds` gets an hour
/// (`SetDefaults_ServiceAccountTokenProjection` in `pkg/apis/core/v1/defaults.go`).
fn default_token_projections(vol: &mut Map<String, Value>) {
    let Some(sources) = vol
        .get_mut("projected")
        .and_then(|p| p.get_mut("sources"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for token in sources
        .iter_mut()
        .filter_map(|s| s.get_mut("serviceAccountToken"))
        .filter_map(Value::as_object_mut)
    {
        if token.get("expirationSeconds").is_none_or(Value::is_null) {
            token.insert(
                "expirationSeconds".into(),
                json!(wellknown::DEFAULT_TOKEN_EXPIRATION_SECONDS),
            );
        }
    }
}

/// Something done with the Rust type (k8s-openapi's struct) of a kind: the structural check
/// below, the API's field validation and its OpenAPI schemas all go through [`with_type`],
/// so that a kind's type is named in one place.
pub(crate) trait KindVisitor {
    type Output;
    fn visit<T>(self) -> Self::Output
    where
        T: serde::de::DeserializeOwned + k8s_openapi::schemars::JsonSchema;
}

/// Calls `v` with the k8s-openapi type of the resource's kind, or returns `None` for a kind
/// without one. One line per kind: a resource added to [`RESOURCES`] gets its checked
/// decoding, field validation and OpenAPI schema from its line here.
pub(crate) fn with_type<V: KindVisitor>(res: &Resource, v: V) -> Option<V::Output> {
    use k8s_openapi::api::{
        authentication::v1 as authn, authorization::v1 as authz, coordination::v1 as coord,
        core::v1 as core, discovery::v1 as discovery, rbac::v1 as rbac,
    };
    Some(match (res.group, res.version, res.kind) {
        ("", "v1", "ConfigMap") => v.visit::<core::ConfigMap>(),
        ("", "v1", "Endpoints") => v.visit::<core::Endpoints>(),
        ("", "v1", "Event") => v.visit::<core::Event>(),
        ("", "v1", "Namespace") => v.visit::<core::Namespace>(),
        ("", "v1", "Node") => v.visit::<core::Node>(),
        ("", "v1", "Pod") => v.visit::<core::Pod>(),
        ("", "v1", "Secret") => v.visit::<core::Secret>(),
        ("", "v1", "Service") => v.visit::<core::Service>(),
        ("", "v1", "ServiceAccount") => v.visit::<core::ServiceAccount>(),
        ("authentication.k8s.io", "v1", "SelfSubjectReview") => {
            v.visit::<authn::SelfSubjectReview>()
        }
        ("authentication.k8s.io", "v1", "TokenReview") => v.visit::<authn::TokenReview>(),
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => {
            v.visit::<authz::LocalSubjectAccessReview>()
        }
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => {
            v.visit::<authz::SelfSubjectAccessReview>()
        }
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => {
            v.visit::<authz::SelfSubjectRulesReview>()
        }
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => {
            v.visit::<authz::SubjectAccessReview>()
        }
        ("coordination.k8s.io", "v1", "Lease") => v.visit::<coord::Lease>(),
        ("discovery.k8s.io", "v1", "EndpointSlice") => v.visit::<discovery::EndpointSlice>(),
        (wellknown::GROUP_RBAC, "v1", "ClusterRole") => v.visit::<rbac::ClusterRole>(),
        (wellknown::GROUP_RBAC, "v1", "ClusterRoleBinding") => {
            v.visit::<rbac::ClusterRoleBinding>()
        }
        (wellknown::GROUP_RBAC, "v1", "Role") => v.visit::<rbac::Role>(),
        (wellknown::GROUP_RBAC, "v1", "RoleBinding") => v.visit::<rbac::RoleBinding>(),
        _ => return None,
    })
}

/// Decodes the object into its k8s-openapi type: the same structural check the Go
/// decoder does. The message mirrors kube-apiserver's
/// `<Kind> in version "v1" cannot be handled as a <Kind>: <reason>`.
pub(crate) fn typed_check(res: &Resource, obj: &Value) -> Result<(), String> {
    struct Check<'a>(&'a Value);
    impl KindVisitor for Check<'_> {
        type Output = Result<(), String>;
        fn visit<T>(self) -> Self::Output
        where
            T: serde::de::DeserializeOwned + k8s_openapi::schemars::JsonSchema,
        {
            T::deserialize(self.0)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
    let result = with_type(res, Check(obj)).unwrap_or(Ok(()));
    result.map_err(|e| {
        format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
            kind = res.kind,
            v = res.version
        )
    })
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn map_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a Map<String, Value>> {
    obj.pointer(ptr).and_then(Value::as_object)
}

/// Validation of metadata common to every kind (`ValidateObjectMeta`).
pub(crate) fn validate_meta(res: &Resource, obj: &Value, errs: &mut Vec<FieldError>) {
    let name = str_at(obj, "/metadata/name");
    let name_errs = match res.name_rule {
        NameRule::Dns1123Label => v::dns1123_label(name),
        NameRule::Dns1123Subdomain => v::dns1123_subdomain(name),
        NameRule::PathSegment => v::path_segment(name),
    };
    for e in name_errs {
        errs.push(FieldError::invalid("metadata.name", Value::from(name), e));
    }
    if let Some(labels) = map_at(obj, "/metadata/labels") {
        for (k, val) in labels {
            for e in v::qualified_name(k) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    Value::from(k.as_str()),
                    e,
                ));
            }
            let s = val.as_str().unwrap_or_default();
            for e in v::label_value(s) {
                errs.push(FieldError::invalid("metadata.labels", Value::from(s), e));
            }
        }
    }
    if let Some(ann) = map_at(obj, "/metadata/annotations") {
        let mut total = 0;
        for (k, val) in ann {
            for e in v::qualified_name(k) {
                errs.push(FieldError::invalid(
                    "metadata.annotations",
                    Value::from(k.as_str()),
                    e,
                ));
            }
            total += k.len() + val.as_str().map_or(0, str::len);
        }
        if total > wellknown::MAX_ANNOTATIONS_BYTES {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                wellknown::MAX_ANNOTATIONS_BYTES,
            ));
        }
    }
}

/// Limits that a test-only flag may move (`--testing-min-token-expiration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The shortest token lifetime a projected `serviceAccountToken` may ask for.
    pub(crate) min_token_expiration: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_token_expiration: wellknown::MIN_TOKEN_EXPIRATION_SECONDS,
        }
    }
}

/// [`validate_with`] under Kubernetes' limits.
#[cfg(test)]
pub(crate) fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    validate_with(res, obj, old, &Limits::default())
}

/// Kind-specific validation. `old` is the stored object on update.
pub(crate) fn validate_with(
    res: &Resource,
    obj: &Value,
    old: Option<&Value>,
    limits: &Limits,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(res, obj, &mut errs);
    match res.kind {
        "Secret" => validate_secret(obj, old, &mut errs),
        "ConfigMap" => validate_config_map(obj, old, &mut errs),
        "Pod" => validate_pod(obj, old, limits, &mut errs),
        _ if res.group == wellknown::GROUP_RBAC => rbac::validate(res.kind, obj, old, &mut errs),
        _ => {}
    }
    errs
}

fn data_size(
    obj: &Value,
    fields: &[&str],
    base64_values: bool,
    errs: &mut Vec<FieldError>,
) -> usize {
    let mut total = 0;
    let mut seen = std::collections::HashSet::new();
    for field in fields {
        let Some(map) = obj.get(*field).and_then(Value::as_object) else {
            continue;
        };
        for (k, val) in map {
            for e in v::config_map_key(k) {
                errs.push(FieldError::invalid(
                    format!("{field}[{k}]"),
                    Value::from(k.as_str()),
                    e,
                ));
            }
            if !seen.insert(k.clone()) {
                errs.push(FieldError {
                    kind: v::ErrorType::Invalid,
                    field: format!("data[{k}]"),
                    value: Some(Value::from(k.as_str())),
                    detail: "duplicate of key present in binaryData".into(),
                });
            }
            let s = val.as_str().unwrap_or_default();
            total += if base64_values || *field == "binaryData" {
                s.len() / 4 * 3
            } else {
                s.len()
            };
        }
    }
    total
}

fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if data_size(obj, &["data"], true, errs) > wellknown::MAX_SECRET_BYTES {
        errs.push(FieldError::too_long("data", wellknown::MAX_SECRET_BYTES));
    }
    let ty = str_at(obj, "/type");
    if ty == wellknown::SECRET_TYPE_SA_TOKEN {
        let key = wellknown::ANNOTATION_SA_NAME;
        if map_at(obj, "/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            errs.push(FieldError::required(
                format!("metadata.annotations[{key}]"),
                "",
            ));
        }
    }
    if let Some(old) = old {
        if str_at(old, "/type") != ty {
            errs.push(FieldError::invalid(
                "type",
                Value::from(ty),
                "field is immutable",
            ));
        }
        immutable_data(obj, old, &["data"], errs);
    }
}

fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if data_size(obj, &["data", "binaryData"], false, errs) > wellknown::MAX_SECRET_BYTES {
        errs.push(FieldError::too_long("", wellknown::MAX_SECRET_BYTES));
    }
    if let Some(old) = old {
        immutable_data(obj, old, &["data", "binaryData"], errs);
    }
}

/// `immutable: true` freezes data and the flag itself.
fn immutable_data(obj: &Value, old: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        if obj.get(*f) != old.get(*f) {
            errs.push(FieldError::forbidden(
                *f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

fn validate_pod(obj: &Value, old: Option<&Value>, limits: &Limits, errs: &mut Vec<FieldError>) {
    // Volumes come first, as in `ValidatePodSpec`. A pod's volumes cannot change after
    // create, so checking them once is enough.
    if old.is_none() {
        validate_projected_volumes(obj, limits, errs);
    }
    let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required("spec.containers", "")),
        Some(cs) if cs.is_empty() => errs.push(FieldError::required("spec.containers", "")),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let name = str_at(c, "/name");
                if name.is_empty() {
                    errs.push(FieldError::required(
                        format!("spec.containers[{i}].name"),
                        "",
                    ));
                } else {
                    for e in v::dns1123_label(name) {
                        errs.push(FieldError::invalid(
                            format!("spec.containers[{i}].name"),
                            Value::from(name),
                            e,
                        ));
                    }
                }
                if str_at(c, "/image").is_empty() && old.is_none() {
                    errs.push(FieldError::required(
                        format!("spec.containers[{i}].image"),
                        "",
                    ));
                }
            }
        }
    }
    if let Some(old) = old {
        // Pod updates may only change images, activeDeadlineSeconds, tolerations
        // (additions) and scheduling gates (`ValidatePodUpdate`); compare the rest.
        let strip = |p: &Value| {
            let mut s = p.get("spec").cloned().unwrap_or(Value::Null);
            for list in ["containers", "initContainers"] {
                if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("image");
                    }
                }
            }
            if let Some(o) = s.as_object_mut() {
                o.remove("activeDeadlineSeconds");
                o.remove("tolerations");
                o.remove("schedulingGates");
                // The scheduler (or a client binding) may set nodeName once.
                if old.pointer("/spec/nodeName").is_none() {
                    o.remove("nodeName");
                }
            }
            s
        };
        if strip(obj) != strip(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
    }
}

/// The projected-volume rules of `validateProjectionSources`
/// (`pkg/apis/core/validation/validation.go`): one kind per source, no two files at the
/// same path, and a `serviceAccountToken` source with a lifetime in [10 min, 2^32 s]
/// and a local relative path. Other source kinds' own fields are left to the kubelet.
fn validate_projected_volumes(obj: &Value, limits: &Limits, errs: &mut Vec<FieldError>) {
    let Some(volumes) = obj.pointer("/spec/volumes").and_then(Value::as_array) else {
        return;
    };
    for (i, vol) in volumes.iter().enumerate() {
        let Some(sources) = vol.pointer("/projected/sources").and_then(Value::as_array) else {
            continue;
        };
        let fld = format!("spec.volumes[{i}].projected");
        let mut paths = std::collections::HashSet::new();
        // A second file at a path already taken. Kubernetes reports it on the volume
        // with the secret's or ConfigMap's name (or the downward path) as the value.
        let mut duplicate = |path: &str, shown: &str, errs: &mut Vec<FieldError>| {
            if !path.is_empty() && !paths.insert(path.to_string()) {
                errs.push(FieldError::invalid(
                    fld.as_str(),
                    Value::from(shown),
                    "conflicting duplicate paths",
                ));
            }
        };
        for (j, source) in sources.iter().enumerate() {
            let src = format!("{fld}.sources[{j}]");
            let mut kinds = 0;
            for kind in ["secret", "configMap"] {
                let Some(s) = source.get(kind).filter(|s| s.is_object()) else {
                    continue;
                };
                kinds += 1;
                let name = str_at(s, "/name");
                if name.is_empty() {
                    errs.push(FieldError::required(format!("{src}.{kind}.name"), ""));
                }
                for item in s
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    duplicate(str_at(item, "/path"), name, errs);
                }
            }
            if let Some(d) = source.get("downwardAPI").filter(|d| d.is_object()) {
                kinds += 1;
                for item in d
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let path = str_at(item, "/path");
                    duplicate(path, path, errs);
                }
            }
            if let Some(t) = source.get("serviceAccountToken").filter(|t| t.is_object()) {
                kinds += 1;
                validate_token_projection(t, &fld, &src, limits, errs);
            }
            if source
                .get("clusterTrustBundle")
                .is_some_and(Value::is_object)
            {
                kinds += 1;
            }
            if kinds > 1 {
                errs.push(FieldError::forbidden(
                    src,
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
}

/// One `serviceAccountToken` projection. The lifetime bounds are TokenRequest's. The
/// path errors name `<volume>.projected.path`, not the source's own field: that is
/// where kube-apiserver reports them (it builds the path from the volume's).
fn validate_token_projection(
    t: &Value,
    fld: &str,
    src: &str,
    limits: &Limits,
    errs: &mut Vec<FieldError>,
) {
    let exp = t
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(wellknown::DEFAULT_TOKEN_EXPIRATION_SECONDS);
    let exp_field = format!("{src}.serviceAccountToken.expirationSeconds");
    if exp < limits.min_token_expiration {
        errs.push(FieldError::invalid(
            exp_field.as_str(),
            Value::from(exp),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if exp > wellknown::MAX_TOKEN_EXPIRATION_SECONDS {
        errs.push(FieldError::invalid(
            exp_field,
            Value::from(exp),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let path = str_at(t, "/path");
    let path_field = format!("{fld}.path");
    if path.is_empty() {
        errs.push(FieldError::required(path_field, ""));
        return;
    }
    // `ValidateLocalNonReservedPath`: relative, no `..` element, no leading `..`.
    if path.starts_with('/') {
        errs.push(FieldError::invalid(
            path_field.as_str(),
            Value::from(path),
            "must be a relative path",
        ));
    }
    if path.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(
            path_field.as_str(),
            Value::from(path),
            "must not contain '..'",
        ));
    }
    // Kubernetes skips this one only for a leading `../` (so `..` gets both errors).
    if path.starts_with("..") && !path.starts_with("../") {
        errs.push(FieldError::invalid(
            path_field,
            Value::from(path),
            "must not start with '..'",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookups() {
        assert_eq!(core("serviceaccounts").kind, "ServiceAccount");
        assert!(find("", "v1", "nope").is_none());
        let ssr = find("authentication.k8s.io", "v1", "selfsubjectreviews").unwrap();
        assert_eq!(ssr.api_version(), "authentication.k8s.io/v1");
        assert_eq!(ssr.qualified(), "selfsubjectreviews.authentication.k8s.io");
        assert!(core("pods").has_status());
    }

    #[test]
    fn every_resource_names_its_type() {
        struct Name;
        impl KindVisitor for Name {
            type Output = String;
            fn visit<T>(self) -> String
            where
                T: serde::de::DeserializeOwned + k8s_openapi::schemars::JsonSchema,
            {
                T::schema_name().into_owned()
            }
        }
        for r in RESOURCES {
            let name = with_type(r, Name).unwrap_or_default();
            assert!(
                name.ends_with(&format!(".{}.{}", r.version, r.kind)),
                "{}: {name}",
                r.kind
            );
        }
    }

    #[test]
    fn secret_defaults_and_string_data() {
        let mut o = json!({"metadata":{"name":"s"},"stringData":{"a":"b"}});
        default_on_create(core("secrets"), o.as_object_mut().unwrap());
        assert_eq!(o["type"], "Opaque");
        assert_eq!(o["data"]["a"], "Yg==");
        assert!(o.get("stringData").is_none());
    }

    #[test]
    fn sa_token_secret_needs_annotation() {
        let o = json!({"metadata":{"name":"s"},"type":"kubernetes.io/service-account-token"});
        let errs = validate(core("secrets"), &o, None);
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations[kubernetes.io/service-account.name]: Required value"
        );
    }

    #[test]
    fn secret_type_is_immutable() {
        let old = json!({"metadata":{"name":"s"},"type":"Opaque"});
        let new = json!({"metadata":{"name":"s"},"type":"kubernetes.io/tls"});
        let errs = validate(core("secrets"), &new, Some(&old));
        assert_eq!(errs[0].field, "type");
    }

    #[test]
    fn typed_check_reports_like_kubernetes() {
        let bad = json!({"metadata":{"name":"s"},"data":{"a":"%%%"}});
        let err = typed_check(core("secrets"), &bad).unwrap_err();
        assert!(
            err.starts_with("Secret in version \"v1\" cannot be handled as a Secret:"),
            "{err}"
        );
        assert!(
            typed_check(
                core("secrets"),
                &json!({"metadata":{"name":"s"},"data":{"a":"Yg=="}})
            )
            .is_ok()
        );
    }

    #[test]
    fn pod_spec_is_mostly_immutable() {
        let old = json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"a"}]}});
        let image =
            json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"b"}]}});
        assert!(validate(core("pods"), &image, Some(&old)).is_empty());
        let other =
            json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"d","image":"a"}]}});
        assert_eq!(validate(core("pods"), &other, Some(&old))[0].field, "spec");
    }

    fn pod_with_volumes(volumes: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "nginx"}],
            "volumes": volumes,
        }})
    }

    fn created_pod_errors(mut pod: Value) -> Vec<String> {
        default_on_create(core("pods"), pod.as_object_mut().unwrap());
        typed_check(core("pods"), &pod).unwrap();
        validate(core("pods"), &pod, None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn token_volume(token: Value) -> Value {
        json!([{"name": "t", "projected": {"sources": [{"serviceAccountToken": token}]}}])
    }

    #[test]
    fn token_projections_default_to_an_hour() {
        let mut pod = pod_with_volumes(token_volume(json!({"path": "token"})));
        default_on_create(core("pods"), pod.as_object_mut().unwrap());
        let projected = &pod["spec"]["volumes"][0]["projected"];
        assert_eq!(
            projected["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
        assert_eq!(projected["defaultMode"], 420);
        // A given lifetime is kept.
        let mut pod = pod_with_volumes(token_volume(
            json!({"path": "token", "expirationSeconds": 7200}),
        ));
        default_on_create(core("pods"), pod.as_object_mut().unwrap());
        assert_eq!(
            pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            7200
        );
        assert!(created_pod_errors(pod).is_empty());
    }

    #[test]
    fn token_projection_lifetime_and_path_rules() {
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(
                json!({"path": "token", "expirationSeconds": 60})
            ))),
            vec![
                "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
            ]
        );
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(
                json!({"path": "token", "expirationSeconds": 4_294_967_297_i64})
            ))),
            vec![
                "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"
            ]
        );
        // Both bounds are inclusive.
        for ok in [600, 4_294_967_296_i64] {
            let pod = pod_with_volumes(token_volume(
                json!({"path": "token", "expirationSeconds": ok}),
            ));
            assert!(created_pod_errors(pod).is_empty(), "{ok}");
        }
        // Path errors are reported on the volume's `projected.path`, as upstream does.
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(json!({"path": ""})))),
            vec!["spec.volumes[0].projected.path: Required value"]
        );
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(json!({})))),
            vec!["spec.volumes[0].projected.path: Required value"]
        );
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(
                json!({"path": "/etc/token"})
            ))),
            vec![
                r#"spec.volumes[0].projected.path: Invalid value: "/etc/token": must be a relative path"#
            ]
        );
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(
                json!({"path": "a/../../token"})
            ))),
            vec![
                r#"spec.volumes[0].projected.path: Invalid value: "a/../../token": must not contain '..'"#
            ]
        );
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(json!({"path": "..token"})))),
            vec![
                r#"spec.volumes[0].projected.path: Invalid value: "..token": must not start with '..'"#
            ]
        );
        assert_eq!(
            created_pod_errors(pod_with_volumes(token_volume(json!({"path": ".."})))).len(),
            2
        );
        // Volume errors come before container errors, as in `ValidatePodSpec`.
        let mut pod = pod_with_volumes(token_volume(json!({"path": "t", "expirationSeconds": 1})));
        pod["spec"]["containers"][0]["image"] = json!("");
        let errs = created_pod_errors(pod);
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("spec.volumes[0]"), "{errs:?}");
    }

    #[test]
    fn projected_sources_are_one_kind_each_with_distinct_paths() {
        let volumes = json!([
            {"name": "ok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
            {"name": "dup", "projected": {"sources": [
                {"configMap": {"name": "cm", "items": [{"key": "a", "path": "same"}]}},
                {"secret": {"name": "sec", "items": [{"key": "b", "path": "same"}]}},
                {"downwardAPI": {"items": [{"path": "same", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            ]}},
            {"name": "two", "projected": {"sources": [
                {"configMap": {"name": ""}, "serviceAccountToken": {"path": "token"}},
            ]}},
        ]);
        assert_eq!(
            created_pod_errors(pod_with_volumes(volumes)),
            vec![
                r#"spec.volumes[1].projected: Invalid value: "sec": conflicting duplicate paths"#,
                r#"spec.volumes[1].projected: Invalid value: "same": conflicting duplicate paths"#,
                "spec.volumes[2].projected.sources[0].configMap.name: Required value",
                "spec.volumes[2].projected.sources[0]: Forbidden: may not specify more than 1 volume type",
            ]
        );
        // Only creates are checked: an update keeps whatever was stored.
        let mut old = pod_with_volumes(token_volume(
            json!({"path": "token", "expirationSeconds": 1}),
        ));
        default_on_create(core("pods"), old.as_object_mut().unwrap());
        assert!(validate(core("pods"), &old, Some(&old)).is_empty());
    }
}
