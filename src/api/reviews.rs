//! The computed, never-stored review resources: SelfSubjectReview (`kubectl auth whoami`),
//! TokenReview, and the access reviews of `authorization.k8s.io/v1` — SelfSubjectAccessReview
//! (`kubectl auth can-i`), SubjectAccessReview, LocalSubjectAccessReview and
//! SelfSubjectRulesReview (`kubectl auth can-i --list`) — each answered as its REST storage
//! under `pkg/registry/{authentication,authorization}` answers: 201 with the request echoed
//! and a `status`, or the validation error of `pkg/apis/authorization/validation`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};

use super::Status;
use super::handlers::{Ctx, json_warned, typed_body};
use super::params::WriteParams;
use crate::clock::format_time;
use crate::rbac::{Attributes, Decision};
use crate::registry::validation::FieldError;
use crate::registry::{RegistryError, Resource};
use crate::tokens::UserInfo;

/// `POST` of a review: decodes it, computes the status, answers 201.
pub(super) async fn review(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    body: Body,
) -> Result<Response, Status> {
    let w = WriteParams::parse(ctx.query, "CreateOptions")?;
    let (obj, warnings) = typed_body(ctx, res, body, &w).await?;
    let mut metadata = obj
        .get("metadata")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    // A namespaced review takes the namespace of its path (as every create does).
    if let Some(ns) = ns {
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(Status::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => metadata["namespace"] = json!(ns),
        }
    }
    // Only SelfSubjectReview is stamped; the other reviews answer `creationTimestamp: null`,
    // as kube-apiserver does.
    metadata["creationTimestamp"] = if res.kind == "SelfSubjectReview" {
        json!(format_time(ctx.app.registry.clock().now()))
    } else {
        Value::Null
    };
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let invalid = |causes: Vec<FieldError>| RegistryError::Invalid {
        kind: res.kind.into(),
        group: res.group.into(),
        name: String::new(),
        causes,
    };
    let authz = &ctx.app.authorizer;
    let (spec, status) = match res.kind {
        "SelfSubjectReview" => (spec, json!({"userInfo": user_info_json(ctx.user)})),
        "TokenReview" => {
            let status = token_review(ctx, &spec).await?;
            (spec, status)
        }
        "SelfSubjectAccessReview" => {
            let a = attributes(&spec, false).map_err(invalid)?;
            let status = access_status(authz.authorize(ctx.user, &a));
            (spec, status)
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let mut causes = attributes(&spec, true).err().unwrap_or_default();
            if let Some(ns) = ns {
                causes.extend(local_causes(&spec, ns));
            }
            if !causes.is_empty() {
                return Err(invalid(causes).into());
            }
            let a = attributes(&spec, true).map_err(invalid)?;
            let status = access_status(authz.authorize(&subject(&spec), &a));
            (spec, status)
        }
        "SelfSubjectRulesReview" => {
            let namespace = spec
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if namespace.is_empty() {
                return Err(Status::bad_request("no namespace on request"));
            }
            // The answer is a new object: the request's spec is not echoed.
            (json!({}), rules_status(ctx.user, authz, namespace))
        }
        _ => return Err(Status::path_not_found()),
    };
    let out = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": metadata,
                     "spec": spec, "status": status});
    Ok(json_warned(StatusCode::CREATED, &out, &warnings))
}

fn user_info_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.username});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.groups.is_empty() {
        v["groups"] = json!(u.groups);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

/// `authentication.k8s.io/v1` TokenReview (`pkg/registry/authentication/tokenreview/storage.go`):
/// runs the token through the same authenticators as every request. A token that does not
/// authenticate is still a 201, with the reason in `status.error`.
async fn token_review(ctx: &Ctx<'_>, spec: &Value) -> Result<Value, Status> {
    let token = spec
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(Status::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let asked = strings(spec.get("audiences"));
    let audiences = if asked.is_empty() {
        ctx.app.tokens.api_audiences.clone()
    } else {
        asked
    };
    Ok(
        match ctx.app.authn.authenticate(token, Some(&audiences)).await {
            Ok(a) => {
                let mut user = user_info_json(&a.user);
                user["extra"] = json!(a.user.extra);
                json!({"authenticated": true, "user": user, "audiences": a.audiences})
            }
            Err(error) => json!({"user": {}, "error": error.message}),
        },
    )
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The attributes a review asks about (`ResourceAttributesFrom` / `NonResourceAttributesFrom`),
/// or the causes of `ValidateSubjectAccessReviewSpec` (with `needs_subject`) or
/// `ValidateSelfSubjectAccessReviewSpec`.
fn attributes(spec: &Value, needs_subject: bool) -> Result<Attributes, Vec<FieldError>> {
    let present = |k: &str| spec.get(k).filter(|v| !v.is_null());
    let resource = present("resourceAttributes");
    let non_resource = present("nonResourceAttributes");
    let mut causes = Vec::new();
    match (resource, non_resource) {
        (Some(_), Some(n)) => causes.push(FieldError::invalid_go(
            "spec.nonResourceAttributes",
            go_non_resource(n),
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => causes.push(FieldError::invalid(
            "spec.resourceAttributes",
            json!("null"),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    if needs_subject && text(spec, "user").is_empty() && strings(spec.get("groups")).is_empty() {
        causes.push(FieldError::invalid(
            "spec.user",
            json!(""),
            "at least one of user or group must be specified",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    Ok(match (resource, non_resource) {
        (Some(ra), _) => Attributes {
            verb: text(ra, "verb"),
            resource_request: true,
            api_group: text(ra, "group"),
            resource: text(ra, "resource"),
            subresource: text(ra, "subresource"),
            namespace: text(ra, "namespace"),
            name: text(ra, "name"),
            path: String::new(),
        },
        (None, Some(nra)) => Attributes {
            verb: text(nra, "verb"),
            path: text(nra, "path"),
            ..Attributes::default()
        },
        (None, None) => Attributes::default(),
    })
}

/// What `ValidateLocalSubjectAccessReview` adds: the review stays in its namespace.
fn local_causes(spec: &Value, namespace: &str) -> Vec<FieldError> {
    let mut causes = Vec::new();
    if let Some(ra) = spec.get("resourceAttributes").filter(|v| !v.is_null()) {
        let asked = text(ra, "namespace");
        if asked != namespace {
            causes.push(FieldError::invalid(
                "spec.resourceAttributes.namespace",
                json!(asked),
                "must match metadata.namespace",
            ));
        }
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|v| !v.is_null()) {
        causes.push(FieldError::invalid_go(
            "spec.nonResourceAttributes",
            go_non_resource(n),
            "disallowed on this kind of request",
        ));
    }
    causes
}

/// `%#v` of the `*authorization.NonResourceAttributes` a field error shows.
fn go_non_resource(n: &Value) -> String {
    format!(
        "&authorization.NonResourceAttributes{{Path:{:?}, Verb:{:?}}}",
        text(n, "path"),
        text(n, "verb")
    )
}

/// The user a SubjectAccessReview asks about.
fn subject(spec: &Value) -> UserInfo {
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), strings(Some(v))))
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        username: text(spec, "user"),
        uid: text(spec, "uid"),
        groups: strings(spec.get("groups")),
        extra,
    }
}

/// `SubjectAccessReviewStatus`: `allowed` always, the reason when there is one.
fn access_status(d: Decision) -> Value {
    let mut v = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        v["reason"] = json!(d.reason);
    }
    v
}

/// `SubjectRulesReviewStatus` of what `user` may do in `namespace`.
fn rules_status(user: &UserInfo, authz: &crate::rbac::Authorizer, namespace: &str) -> Value {
    let rules = authz.rules_for(user, namespace);
    let list = |r: &Option<Vec<String>>| r.clone().filter(|v| !v.is_empty());
    let resource_rules: Vec<Value> = rules
        .resource_rules
        .iter()
        .map(|r: &PolicyRule| {
            let mut v = json!({"verbs": r.verbs});
            for (k, f) in [
                ("apiGroups", &r.api_groups),
                ("resources", &r.resources),
                ("resourceNames", &r.resource_names),
            ] {
                if let Some(l) = list(f) {
                    v[k] = json!(l);
                }
            }
            v
        })
        .collect();
    let non_resource_rules: Vec<Value> = rules
        .non_resource_rules
        .iter()
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    let mut status = json!({"resourceRules": resource_rules,
                            "nonResourceRules": non_resource_rules, "incomplete": false});
    if !rules.evaluation_error.is_empty() {
        status["evaluationError"] = json!(rules.evaluation_error);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(spec: Value, needs_subject: bool) -> Vec<String> {
        attributes(&spec, needs_subject)
            .err()
            .unwrap_or_default()
            .iter()
            .map(full)
            .collect()
    }

    fn full(e: &FieldError) -> String {
        format!("{}: {}", e.field, e.message())
    }

    #[test]
    fn review_specs_are_validated_as_kubernetes() {
        assert_eq!(
            messages(json!({}), false),
            [
                "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
            ]
        );
        assert_eq!(
            messages(json!({"resourceAttributes": {"verb": "get"}}), true),
            ["spec.user: Invalid value: \"\": at least one of user or group must be specified"]
        );
        assert!(messages(json!({"resourceAttributes": {}, "groups": ["g"]}), true).is_empty());
        let both = messages(
            json!({"resourceAttributes": {}, "nonResourceAttributes": {"path": "/x", "verb": "get"}}),
            false,
        );
        assert_eq!(both.len(), 1);
        assert!(both[0].ends_with("cannot be specified in combination with resourceAttributes"));
        let local: Vec<String> =
            local_causes(&json!({"resourceAttributes": {"namespace": "b"}}), "a")
                .iter()
                .map(full)
                .collect();
        assert_eq!(
            local,
            [
                "spec.resourceAttributes.namespace: Invalid value: \"b\": must match metadata.namespace"
            ]
        );
    }

    #[test]
    fn attributes_and_subjects_from_specs() {
        let a = attributes(
            &json!({"resourceAttributes": {"namespace": "a", "verb": "create", "resource": "serviceaccounts", "subresource": "token", "name": "app"}}),
            false,
        )
        .expect("valid");
        assert!(a.resource_request);
        assert_eq!((a.subresource.as_str(), a.name.as_str()), ("token", "app"));
        let u = subject(&json!({"user": "u", "groups": ["g"], "extra": {"k": ["v"]}, "uid": "1"}));
        assert_eq!((u.username.as_str(), u.uid.as_str()), ("u", "1"));
        assert_eq!(u.groups, ["g"]);
        assert_eq!(u.extra["k"], ["v"]);
        assert_eq!(
            access_status(Decision {
                allowed: false,
                reason: String::new()
            }),
            json!({"allowed": false})
        );
    }
}
