//! Resource requests: get, list, watch, create, update, patch, delete and
//! deletecollection over the registry, TokenRequests, and the computed reviews (`reviews`).
//! Answers are JSON, or `meta.k8s.io/v1` Tables when asked. Writes of the RBAC policy pass
//! the authorizer's escalation check first and answer once the authorizer sees them.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use k8s_openapi::api::authentication::v1::TokenRequest;
use serde_json::{Value, json};

use super::body::read_body;
use super::fieldvalidation;
use super::params::{self, ListParams, Query, WriteParams};
use super::patch::{self, PatchType};
use super::request::ResourceRequest;
use super::response::TableFormat;
use super::{AppState, Status, body, json, json_typed, reviews, watch};
use crate::registry::selectors::FieldSelector;
use crate::registry::{DeleteOptions, Deleted, ListOptions, RegistryError, Resource, resources};
use crate::tokens::UserInfo;

/// Everything a handler needs about the request.
pub(crate) struct Ctx<'a> {
    pub(crate) app: &'a AppState,
    pub(crate) user: &'a UserInfo,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) query: &'a Query,
}

pub(crate) async fn handle(ctx: Ctx<'_>, r: &ResourceRequest, body: Body) -> Response {
    match handle_inner(&ctx, r, body).await {
        Ok(resp) => resp,
        Err(status) => status.into_response(),
    }
}

async fn handle_inner(ctx: &Ctx<'_>, r: &ResourceRequest, body: Body) -> Result<Response, Status> {
    let res =
        resources::find(&r.group, &r.version, &r.resource).ok_or_else(Status::path_not_found)?;
    // Scope: a namespaced resource needs a namespace except for cross-namespace reads;
    // a cluster-scoped one must not have one (the namespace of a Namespace is its name).
    let ns = if res.namespaced {
        if r.namespace.is_none() && !matches!(r.verb.as_str(), "list" | "watch") {
            return Err(Status::path_not_found());
        }
        r.namespace.as_deref()
    } else {
        if r.namespace.is_some() && res.plural != "namespaces" {
            return Err(Status::path_not_found());
        }
        None
    };
    if let Some(sub) = &r.subresource {
        let Some(s) = res.subresource(sub) else {
            return Err(Status::path_not_found());
        };
        if !s.verbs.contains(&r.verb.as_str()) {
            return Err(Status::method_not_allowed());
        }
    } else if !res.verbs.contains(&r.verb.as_str()) {
        return Err(Status::method_not_allowed());
    }
    // Item paths take no POST, collection paths no PUT or PATCH (go-restful answers 405).
    let item_verb = matches!(r.verb.as_str(), "update" | "patch");
    if (r.name.is_none() && item_verb)
        || (r.name.is_some() && r.verb == "create" && r.subresource.is_none())
    {
        return Err(Status::method_not_allowed());
    }
    if !res.stored {
        return reviews::review(ctx, res, ns, body).await;
    }
    let name = r.name.as_deref().unwrap_or_default();
    let sub = r.subresource.as_deref();
    if sub == Some("token") {
        return token_request(ctx, ns.unwrap_or_default(), name, body).await;
    }
    let write = || WriteParams::parse(ctx.query, params::options_kind(&r.verb));
    match r.verb.as_str() {
        "get" => get(ctx, res, ns, name).await,
        "list" => list(ctx, res, ns, ListParams::parse(ctx.query, res, false)?).await,
        "watch" => {
            let mut p = ListParams::parse(ctx.query, res, true)?;
            // `/watch/.../NAME` watches one object, as `metadata.name=NAME` would.
            if let Some(n) = &r.name {
                p.options.field_selector =
                    FieldSelector::parse(&format!("metadata.name={n}"), res.field_selectors)
                        .map_err(Status::bad_request)?
                        .and(p.options.field_selector);
            }
            let table = TableFormat::from_request(ctx.headers, ctx.query)?;
            let registry = ctx.app.registry.clone();
            watch::start(registry, ctx.app.shutdown.clone(), res, ns, p, table).await
        }
        "create" => create(ctx, res, ns, write()?, body).await,
        "update" => update(ctx, res, ns, name, sub, write()?, body).await,
        "patch" => patch(ctx, res, ns, name, sub, write()?, body).await,
        "delete" => delete(ctx, res, ns, name, write()?, body).await,
        "deletecollection" => {
            let p = ListParams::parse(ctx.query, res, false)?;
            delete_collection(ctx, res, ns, p, write()?, body).await
        }
        _ => Err(Status::method_not_allowed()),
    }
}

fn list_kind(res: &Resource) -> String {
    format!("{}List", res.kind)
}

async fn get(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<Response, Status> {
    let obj = ctx.app.registry.get(res, ns, name).await?;
    match TableFormat::from_request(ctx.headers, ctx.query)? {
        Some(t) => {
            let mut table = t.render(
                res.kind,
                std::slice::from_ref(&obj),
                ctx.app.registry.clock().now(),
            );
            table["metadata"] = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
            Ok(json_typed(StatusCode::OK, &table, &t.content_type()))
        }
        None => Ok(json(StatusCode::OK, &obj)),
    }
}

async fn list(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    p: ListParams,
) -> Result<Response, Status> {
    // A list at (or "not older than") a revision the store has not reached cannot be served.
    if let Some(asked) = p.resource_version.filter(|rv| *rv > 0) {
        let current = ctx.app.registry.current_revision().await?;
        if asked > current {
            return Err(Status::too_large_resource_version(asked, current));
        }
    }
    let page = ctx.app.registry.list(res, ns, &p.options).await?;
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
    }
    match TableFormat::from_request(ctx.headers, ctx.query)? {
        Some(t) => {
            let mut table = t.render(res.kind, &page.items, ctx.app.registry.clock().now());
            table["metadata"] = metadata;
            Ok(json_typed(StatusCode::OK, &table, &t.content_type()))
        }
        None => Ok(json(
            StatusCode::OK,
            &json!({"kind": list_kind(res), "apiVersion": res.api_version(), "metadata": metadata, "items": page.items}),
        )),
    }
}

async fn object_body(ctx: &Ctx<'_>, body: Body) -> Result<Value, Status> {
    let bytes = read_body(ctx.headers, body).await?;
    body::decode(ctx.headers, &bytes)?
        .ok_or_else(|| Status::bad_request("the request body is empty"))
}

/// A create or update body decoded as kube-apiserver's handlers decode it: kind and
/// apiVersion checked against the URL, field validation applied, unknown fields dropped.
/// Returns the object and the warnings to send.
pub(super) async fn typed_body(
    ctx: &Ctx<'_>,
    res: &Resource,
    body: Body,
    w: &WriteParams,
) -> Result<(Value, Vec<String>), Status> {
    let directive = w.field_validation;
    let bytes = read_body(ctx.headers, body).await?;
    let mut obj = body::decode(ctx.headers, &bytes)?
        .ok_or_else(|| Status::bad_request("the request body is empty"))?;
    fieldvalidation::check_type_meta(res, &mut obj)?;
    let source = match body::media_type(ctx.headers).as_str() {
        "application/json" => fieldvalidation::Source::Json(&bytes),
        "application/yaml" | "application/x-yaml" | "text/yaml" => std::str::from_utf8(&bytes)
            .map_or(
                fieldvalidation::Source::Decoded,
                fieldvalidation::Source::Yaml,
            ),
        _ => fieldvalidation::Source::Decoded,
    };
    let warnings = fieldvalidation::validate_object(res, directive, source, &mut obj)?;
    Ok((obj, warnings))
}

/// A JSON response carrying `Warning` headers.
pub(super) fn json_warned(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let mut resp = json(code, value);
    for w in warnings {
        super::add_warning(&mut resp, w);
    }
    resp
}

async fn create(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    w: WriteParams,
    body: Body,
) -> Result<Response, Status> {
    let (mut obj, warnings) = typed_body(ctx, res, body, &w).await?;
    // Admission runs before the write, dry runs included, as in kube-apiserver, with
    // NamespaceLifecycle first.
    if res.kind == "Pod" {
        ctx.app.registry.admit_into_namespace(res, ns, &obj).await?;
        ctx.app
            .admission
            .admit_pod_create(ns.unwrap_or("default"), &mut obj)
            .await?;
    }
    let authz = &ctx.app.authorizer;
    authz.confirm_write(ctx.user, res, ns.unwrap_or_default(), &obj, None)?;
    let created = ctx.app.registry.create(res, ns, obj, w.dry_run).await?;
    policy_written(ctx, res, &created, w.dry_run).await;
    Ok(json_warned(StatusCode::CREATED, &created, &warnings))
}

/// A write of the RBAC policy answers once the authorizer sees it: from then on, what it
/// granted or revoked is in force.
async fn policy_written(ctx: &Ctx<'_>, res: &Resource, obj: &Value, dry_run: bool) {
    let revision = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok());
    if let (false, Some(rv)) = (dry_run, revision) {
        ctx.app
            .authorizer
            .caught_up(res.group, res.plural, rv)
            .await;
    }
}

async fn update(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    w: WriteParams,
    body: Body,
) -> Result<Response, Status> {
    let (obj, warnings) = typed_body(ctx, res, body, &w).await?;
    let authz = &ctx.app.authorizer;
    let (updated, _) = ctx
        .app
        .registry
        .update_with(res, ns, name, sub, w.dry_run, |current| {
            authz.confirm_write(ctx.user, res, ns.unwrap_or_default(), &obj, Some(current))?;
            Ok(obj.clone())
        })
        .await?;
    policy_written(ctx, res, &updated, w.dry_run).await;
    Ok(json_warned(StatusCode::OK, &updated, &warnings))
}

async fn patch(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    w: WriteParams,
    body: Body,
) -> Result<Response, Status> {
    let ct = body::media_type(ctx.headers);
    let patch_type = PatchType::from_content_type(&ct).ok_or_else(|| {
        let accepted: Vec<&str> = PatchType::ALL.iter().map(|t| t.media_type()).collect();
        Status::unsupported_media_type(&accepted)
    })?;
    let directive = w.field_validation;
    let bytes = read_body(ctx.headers, body).await?;
    let dry_run = w.dry_run;
    let kind = res.kind;
    // The registry speaks RegistryError; a patch or field-validation failure keeps its own
    // Status (codes differ by cause, as in kube-apiserver's patch handler), so it is set
    // aside here.
    let mut patch_failure: Option<Status> = None;
    let mut warnings: Vec<String> = Vec::new();
    let authz = &ctx.app.authorizer;
    let result = ctx
        .app
        .registry
        .update_with(res, ns, name, sub, dry_run, |current| {
            let mut fail = |status: Status| {
                let err = RegistryError::BadRequest(status.message.clone());
                patch_failure = Some(status);
                err
            };
            let mut patched = patch::apply(kind, current, patch_type, &bytes)
                .map_err(|e| fail(patch_status(&e)))?;
            warnings = if patch_type == PatchType::Apply {
                fieldvalidation::validate_apply(res, &patched).map_err(&mut fail)?;
                Vec::new()
            } else {
                fieldvalidation::validate_patch(res, directive, patch_type, &bytes, &mut patched)
                    .map_err(&mut fail)?
            };
            authz.confirm_write(
                ctx.user,
                res,
                ns.unwrap_or_default(),
                &patched,
                Some(current),
            )?;
            Ok(patched)
        })
        .await;
    if let Some(status) = patch_failure.filter(|_| result.is_err()) {
        return Err(status);
    }
    match result {
        Ok((obj, _)) => {
            policy_written(ctx, res, &obj, dry_run).await;
            Ok(json_warned(StatusCode::OK, &obj, &warnings))
        }
        // Server-side apply creates what does not exist yet.
        Err(RegistryError::NotFound { .. }) if patch_type == PatchType::Apply && sub.is_none() => {
            let mut obj = patch::apply(kind, &Value::Null, patch_type, &bytes)
                .map_err(|e| patch_status(&e))?;
            fieldvalidation::validate_apply(res, &obj)?;
            if obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                obj["metadata"]["name"] = json!(name);
            }
            if res.kind == "Pod" {
                ctx.app
                    .admission
                    .admit_pod_create(ns.unwrap_or("default"), &mut obj)
                    .await?;
            }
            authz.confirm_write(ctx.user, res, ns.unwrap_or_default(), &obj, None)?;
            let created = ctx.app.registry.create(res, ns, obj, dry_run).await?;
            policy_written(ctx, res, &created, dry_run).await;
            Ok(json(StatusCode::CREATED, &created))
        }
        Err(e) => Err(e.into()),
    }
}

fn patch_status(e: &patch::PatchError) -> Status {
    tracing::debug!("patch rejected: {e}");
    Status::new(e.status_code(), e.reason(), e.status_message())
}

/// `DeleteOptions` from the body (JSON or protobuf) and the query (`gracePeriodSeconds`).
async fn delete_options(
    ctx: &Ctx<'_>,
    w: &WriteParams,
    body: Body,
) -> Result<DeleteOptions, Status> {
    let bytes = read_body(ctx.headers, body).await?;
    let from_body = body::decode(ctx.headers, &bytes)?.unwrap_or_else(|| json!({}));
    let from_query = params::grace_period(ctx.query)?;
    let grace = from_body
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or(from_query);
    let pre = from_body.get("preconditions");
    let s = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let dry_run = w.dry_run
        || from_body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        precondition_uid: s(pre.and_then(|p| p.get("uid"))),
        precondition_resource_version: s(pre.and_then(|p| p.get("resourceVersion"))),
        dry_run,
    })
}

/// The `Status` a delete that finished at once returns for most kinds.
fn success_status(res: &Resource, obj: &Value) -> Value {
    let mut details =
        json!({"name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null)});
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    details["kind"] = json!(res.plural);
    details["uid"] = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

async fn delete(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    w: WriteParams,
    body: Body,
) -> Result<Response, Status> {
    let opts = delete_options(ctx, &w, body).await?;
    let deleted = ctx.app.registry.delete(res, ns, name, &opts).await?;
    let (Deleted::Now(obj) | Deleted::Pending(obj)) = &deleted;
    policy_written(ctx, res, obj, opts.dry_run).await;
    match deleted {
        // Pending deletion (finalizers, a grace period, a terminating namespace): the object
        // with deletionTimestamp set, 200 as kube-apiserver answers (`DeleteResource` gives
        // 202 only for orphanDependents=false).
        Deleted::Pending(obj) => Ok(json(StatusCode::OK, &obj)),
        // Pods and namespaces answer with the object, others with a Success Status
        // (`ReturnDeletedObject` in their registries).
        Deleted::Now(obj) if matches!(res.kind, "Pod" | "Namespace") => {
            Ok(json(StatusCode::OK, &obj))
        }
        Deleted::Now(obj) => Ok(json(StatusCode::OK, &success_status(res, &obj))),
    }
}

async fn delete_collection(
    ctx: &Ctx<'_>,
    res: &Resource,
    ns: Option<&str>,
    p: ListParams,
    w: WriteParams,
    body: Body,
) -> Result<Response, Status> {
    let opts = delete_options(ctx, &w, body).await?;
    let list_opts = p.options;
    let page = ctx
        .app
        .registry
        .list(
            res,
            ns,
            &ListOptions {
                limit: 0,
                continue_token: None,
                ..list_opts
            },
        )
        .await?;
    let mut items = Vec::new();
    for obj in page.items {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let item_ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        match ctx
            .app
            .registry
            .delete(res, item_ns.as_deref().or(ns), &name, &opts)
            .await
        {
            Ok(Deleted::Now(o) | Deleted::Pending(o)) => {
                policy_written(ctx, res, &o, opts.dry_run).await;
                items.push(o);
            }
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({"kind": list_kind(res), "apiVersion": res.api_version(), "metadata": {"resourceVersion": page.resource_version.to_string()}, "items": items}),
    ))
}

/// `POST .../serviceaccounts/{name}/token`: the typed TokenRequest in, the typed TokenRequest
/// out (token.go `TokenREST.Create` behind kube-apiserver's create handler).
async fn token_request(
    ctx: &Ctx<'_>,
    ns: &str,
    name: &str,
    body: Body,
) -> Result<Response, Status> {
    let Some(issuer) = &ctx.app.tokens.issuer else {
        return Err(Status::path_not_found());
    };
    let raw = object_body(ctx, body).await?;
    // A TokenRequest is a create: none into a terminating namespace (NamespaceLifecycle).
    let sa = resources::core("serviceaccounts");
    ctx.app
        .registry
        .admit_into_namespace(sa, Some(ns), &raw)
        .await?;
    let req = decode_token_request(raw)?;
    let issued = issuer.request(&ctx.app.registry, ns, name, &req).await?;
    let mut out = serde_json::to_value(&issued.response)
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
    // Go's TokenRequestSpec fields are not omitempty, so an unbound token's response says
    // `boundObjectRef: null` (facts §4.2); k8s-openapi leaves a None out.
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("boundObjectRef").or_insert(Value::Null);
    }
    let mut resp = json(StatusCode::CREATED, &out);
    for w in &issued.warnings {
        super::add_warning(&mut resp, w);
    }
    resp.extensions_mut()
        .insert(super::AuditAnnotations(issued.annotations));
    Ok(resp)
}

/// The body as the typed TokenRequest, or kube-apiserver's decode error
/// (`TokenRequest in version "v1" cannot be handled as a TokenRequest: <why>`). A lifetime
/// that is not an integer keeps the short reason this server has always given.
fn decode_token_request(raw: Value) -> Result<TokenRequest, RegistryError> {
    use k8s_openapi::Resource as _;
    let cannot = |why: &dyn std::fmt::Display| {
        RegistryError::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {why}",
            kind = TokenRequest::KIND,
            version = TokenRequest::VERSION,
        ))
    };
    let expiration = raw.pointer("/spec/expirationSeconds");
    if expiration.is_some_and(|v| !v.is_null() && !v.is_i64()) {
        return Err(cannot(&"spec.expirationSeconds must be an integer"));
    }
    serde_json::from_value(raw).map_err(|e| cannot(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_request_decode_errors() {
        let prefix = "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: ";
        let err = |v: Value| match decode_token_request(v) {
            Err(RegistryError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(json!({"spec": {"expirationSeconds": "600"}})),
            format!("{prefix}spec.expirationSeconds must be an integer")
        );
        assert!(err(json!({"spec": {"audiences": [1]}})).starts_with(prefix));
        assert!(err(json!({"kind": "Pod"})).starts_with(prefix));
        let ok = decode_token_request(json!({"spec": {"expirationSeconds": null}})).unwrap();
        assert_eq!(ok.spec.unwrap().expiration_seconds, None);
        assert!(decode_token_request(json!({})).unwrap().spec.is_none());
    }

    #[test]
    fn delete_success_status() {
        let obj = json!({"metadata": {"name": "x", "uid": "u"}});
        let s = success_status(resources::core("serviceaccounts"), &obj);
        assert_eq!(
            s["details"],
            json!({"name": "x", "kind": "serviceaccounts", "uid": "u"})
        );
    }
}
