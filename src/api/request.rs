//! What a request is about, from its method, path and query: the equivalent of
//! apiserver's `RequestInfoFactory` (`staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`).

use http::Method;

use super::params::Query;

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

pub(crate) fn resolve(method: &Method, path: &str, query: &Query) -> RequestInfo {
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
    // The deprecated `/api/v1/watch/...` paths still served by kube-apiserver: the verb is
    // in the path (`specialVerbs`), and only GET reaches them.
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] if !tail.is_empty() && lower_verb == "get" => (true, tail),
        _ => (false, rest),
    };
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
    // `?watch=` turns a collection GET into a watch, with apimachinery's boolean rules;
    // on a named object it is ignored, as kube-apiserver's RequestInfoFactory does.
    let verb = match (lower_verb, name.is_some()) {
        _ if watch_path => "watch",
        ("get", false) if query.flag("watch") => "watch",
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
        match resolve(&method, path, &Query::parse(Some(query))) {
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

    /// Python clients send `watch=True`; apimachinery reads booleans loosely (#9).
    #[test]
    fn watch_spellings_r9() {
        for q in ["watch=True", "watch=yes", "watch=1", "watch=", "watch=TRUE"] {
            assert_eq!(
                res(Method::GET, "/api/v1/serviceaccounts", q).verb,
                "watch",
                "{q}"
            );
        }
        for q in ["watch=false", "watch=FALSE", "watch=0", ""] {
            assert_eq!(
                res(Method::GET, "/api/v1/serviceaccounts", q).verb,
                "list",
                "{q}"
            );
        }
        // A named object is a get whatever `watch` says.
        let r = res(
            Method::GET,
            "/api/v1/namespaces/d/serviceaccounts/x",
            "watch=true",
        );
        assert_eq!(r.verb, "get");
        // The deprecated watch paths.
        let r = res(
            Method::GET,
            "/api/v1/watch/namespaces/d/serviceaccounts",
            "",
        );
        assert_eq!(
            (
                r.verb.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name
            ),
            ("watch", Some("d"), "serviceaccounts", None)
        );
        let r = res(
            Method::GET,
            "/api/v1/watch/namespaces/d/serviceaccounts/x",
            "",
        );
        assert_eq!((r.verb.as_str(), r.name.as_deref()), ("watch", Some("x")));
        let r = res(
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/watch/roles",
            "",
        );
        assert_eq!((r.verb.as_str(), r.resource.as_str()), ("watch", "roles"));
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
                    resolve(&Method::GET, p, &Query::default()),
                    RequestInfo::NonResource { .. }
                ),
                "{p}"
            );
        }
    }
}
