//! What a request is about, from its method, path and query: the equivalent of
//! apiserver's `RequestInfoFactory` (`staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`).

use std::collections::HashMap;

use http::Method;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestInfo {
    /// A path outside the resource tree (`/version`, `/api`, `/openapi/v3`, ...).
    NonResource {
        verb: String,
        path: String,
    },
    Resource(ResourceRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceRequest {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub(crate) verb: String,
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) namespace: Option<String>,
    pub(crate) resource: String,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

/// Sub-paths of a namespace that are subresources of the Namespace object itself.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// The query string as a map (the last value wins for repeated keys).
pub(crate) fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1"))
}

pub(crate) fn resolve(method: &Method, path: &str, query: &HashMap<String, String>) -> RequestInfo {
    let lower_verb = match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    };
    let non_resource = || RequestInfo::NonResource {
        verb: lower_verb.to_string(),
        path: path.to_string(),
    };
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return non_resource(),
    };
    if rest.iter().any(|p| p.is_empty()) {
        return non_resource();
    }
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        ["namespaces", ns, tail @ ..]
            if !tail.is_empty() && !NAMESPACE_SUBRESOURCES.contains(&tail[0]) =>
        {
            (Some((*ns).to_string()), tail)
        }
        _ => (None, rest),
    };
    let resource = rest[0].to_string();
    let name = rest.get(1).map(|s| (*s).to_string());
    let subresource = rest.get(2).map(|s| (*s).to_string());
    if rest.len() > 3 {
        return non_resource();
    }
    // The namespace of a Namespace is its own name, as RequestInfo reports it.
    let namespace = if namespace.is_none() && resource == "namespaces" {
        name.clone()
    } else {
        namespace
    };
    let verb = match (lower_verb, name.is_some()) {
        ("get", _) if is_true(query.get("watch")) => "watch",
        ("get", true) => "get",
        ("get", false) => "list",
        ("post", _) => "create",
        ("put", _) => "update",
        ("patch", _) => "patch",
        ("delete", true) => "delete",
        ("delete", false) => "deletecollection",
        _ => "unknown",
    };
    RequestInfo::Resource(ResourceRequest {
        verb: verb.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource,
        name,
        subresource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: Method, path: &str, query: &str) -> ResourceRequest {
        match resolve(&method, path, &parse_query(Some(query))) {
            RequestInfo::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_like_kubernetes() {
        let r = res(
            Method::GET,
            "/api/v1/namespaces/default/serviceaccounts",
            "limit=500",
        );
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_deref(), r.resource.as_str()),
            ("list", Some("default"), "serviceaccounts")
        );
        let r = res(
            Method::POST,
            "/api/v1/namespaces/default/serviceaccounts/sa/token",
            "",
        );
        assert_eq!(
            (r.verb.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("create", Some("sa"), Some("token"))
        );
        let r = res(Method::GET, "/api/v1/namespaces/x", "");
        assert_eq!(
            (
                r.verb.as_str(),
                r.resource.as_str(),
                r.name.as_deref(),
                r.namespace.as_deref()
            ),
            ("get", "namespaces", Some("x"), Some("x"))
        );
        let r = res(Method::PUT, "/api/v1/namespaces/x/status", "");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let r = res(Method::GET, "/api/v1/pods", "watch=true");
        assert_eq!((r.verb.as_str(), r.namespace), ("watch", None));
        let r = res(
            Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            "",
        );
        assert_eq!(
            (r.group.as_str(), r.resource.as_str()),
            ("authentication.k8s.io", "selfsubjectreviews")
        );
        let r = res(Method::DELETE, "/api/v1/namespaces/d/configmaps", "");
        assert_eq!(r.verb, "deletecollection");
    }

    #[test]
    fn non_resource_paths() {
        for p in [
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/authentication.k8s.io/v1",
            "/openapi/v3",
            "/api/v1/a/b/c/d",
        ] {
            assert!(
                matches!(
                    resolve(&Method::GET, p, &HashMap::new()),
                    RequestInfo::NonResource { .. }
                ),
                "{p}"
            );
        }
    }
}
