//! `metav1.Status` bodies: the one place where every module's typed error becomes an
//! HTTP answer Kubernetes clients understand (kubectl prints
//! `Error from server (<reason>): <message>` from these).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::registry::RegistryError;

/// A failure Status ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) code: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
}

impl Status {
    pub(crate) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Status {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Status::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(crate) fn unauthorized() -> Self {
        Status::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Status::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// An unknown path: `the server could not find the requested resource`, no details.
    pub(crate) fn path_not_found() -> Self {
        Status::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// A method the path does not serve (go-restful's 405, as kube-apiserver renders it).
    pub(crate) fn method_not_allowed() -> Self {
        Status::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// A read at a resourceVersion the store has not reached (`NewTooLargeResourceVersionError`).
    pub(crate) fn too_large_resource_version(asked: i64, current: i64) -> Self {
        Status::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("Timeout: Too large resource version: {asked}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        }))
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Status::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub(crate) fn unsupported_media_type(accepted: &[&str]) -> Self {
        Status::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Status::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        });
        // An untyped failure (500 with no reason) carries no `reason`, as in Go.
        if !self.reason.is_empty() {
            v["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v["code"] = json!(self.code.as_u16());
        v
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // As `responsewriters.ErrorNegotiated`: clients (client-go) wait and retry on this.
        let retry_after = self.details.as_ref().map(|d| &d["retryAfterSeconds"]);
        if let Some(secs) = retry_after.and_then(Value::as_u64).filter(|s| *s > 0) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The `group` and `kind` (plural resource) parts of `details`, split from a
/// qualified resource such as `tokenreviews.authentication.k8s.io`.
fn details(resource: &str, name: &str) -> Value {
    let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
    let mut d = json!({});
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d["kind"] = json!(kind);
    d
}

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound { resource, name } => Status::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{resource} {name:?} not found"),
            )
            .with_details(details(&resource, &name)),
            RegistryError::AlreadyExists { resource, name } => Status::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{resource} {name:?} already exists"),
            )
            .with_details(details(&resource, &name)),
            RegistryError::Conflict {
                resource,
                name,
                message,
            } => Status::new(StatusCode::CONFLICT, "Conflict", message)
                .with_details(details(&resource, &name)),
            RegistryError::Invalid {
                kind,
                group,
                name,
                causes,
            } => {
                let qualified = if group.is_empty() {
                    kind.clone()
                } else {
                    format!("{kind}.{group}")
                };
                let text: Vec<String> = causes.iter().map(ToString::to_string).collect();
                let joined = if text.len() == 1 {
                    text[0].clone()
                } else {
                    format!("[{}]", text.join(", "))
                };
                let causes_json: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.kind.reason(), "message": c.message(), "field": c.field}))
                    .collect();
                let mut d = json!({"name": name});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                d["kind"] = json!(kind);
                d["causes"] = json!(causes_json);
                Status::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("{qualified} {name:?} is invalid: {joined}"),
                )
                .with_details(d)
            }
            RegistryError::BadRequest(m) => Status::bad_request(m),
            RegistryError::Forbidden {
                resource,
                name,
                message,
            } => {
                let subject = if name.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource} {name:?}")
                };
                Status::forbidden(format!("{subject} is forbidden: {message}"))
                    .with_details(details(&resource, &name))
            }
            // `admission.NewForbidden` plus the cause the NamespaceLifecycle plugin appends.
            RegistryError::NamespaceTerminating {
                resource,
                name,
                namespace,
            } => {
                let mut d = details(&resource, &name);
                d["causes"] = json!([{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {namespace} is being terminated"),
                    "field": "metadata.namespace",
                }]);
                Status::forbidden(format!(
                    "{resource} {name:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated"
                ))
                .with_details(d)
            }
            RegistryError::Expired(m) => Status::new(StatusCode::GONE, "Expired", m),
            RegistryError::Internal(m) => Status::internal(m),
            // kube-apiserver answers an unreachable etcd with `NewServerTimeout`
            // (k8s.io/apiserver/pkg/storage/errors/storage.go), retry after 2 s.
            RegistryError::Unavailable(m) => Status::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServerTimeout",
                format!("The operation could not be completed at this time, please try again: {m}"),
            )
            .with_details(json!({ "retryAfterSeconds": 2 })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::validation::FieldError;

    #[test]
    fn not_found_matches_kubernetes() {
        let s: Status = RegistryError::NotFound {
            resource: "serviceaccounts".into(),
            name: "nope".into(),
        }
        .into();
        assert_eq!(
            s.body(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"serviceaccounts \"nope\" not found","reason":"NotFound",
                   "details":{"name":"nope","kind":"serviceaccounts"},"code":404})
        );
    }

    #[test]
    fn creates_into_a_terminating_namespace_are_forbidden_with_a_cause() {
        let s: Status = RegistryError::NamespaceTerminating {
            resource: "configmaps".into(),
            name: "late".into(),
            namespace: "q".into(),
        }
        .into();
        assert_eq!(
            s.body(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"configmaps \"late\" is forbidden: unable to create new content in namespace q because it is being terminated",
                   "reason":"Forbidden",
                   "details":{"name":"late","kind":"configmaps","causes":[{"reason":"NamespaceTerminating",
                       "message":"namespace q is being terminated","field":"metadata.namespace"}]},
                   "code":403})
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let s: Status = RegistryError::Invalid {
            kind: "ServiceAccount".into(),
            group: String::new(),
            name: "Bad_Name".into(),
            causes: vec![FieldError::invalid(
                "metadata.name",
                json!("Bad_Name"),
                "bad",
            )],
        }
        .into();
        assert_eq!(s.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            s.message,
            "ServiceAccount \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": bad"
        );
        assert_eq!(
            s.body()["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
        assert_eq!(s.body()["details"]["causes"][0]["field"], "metadata.name");
    }

    #[test]
    fn group_details_are_split() {
        let s: Status = RegistryError::AlreadyExists {
            resource: "leases.coordination.k8s.io".into(),
            name: "l".into(),
        }
        .into();
        assert_eq!(
            s.body()["details"],
            json!({"name":"l","group":"coordination.k8s.io","kind":"leases"})
        );
        assert_eq!(s.message, "leases.coordination.k8s.io \"l\" already exists");
    }
}
