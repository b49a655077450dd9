//! Who may do what, until RBAC exists: `system:masters` may do everything; everybody
//! may read the public info paths (the `system:public-info-viewer` role); authenticated
//! users may read discovery and OpenAPI (`system:discovery`) and create
//! SelfSubjectReviews and SelfSubjectAccessReviews (`system:basic-user`); service
//! accounts may read the OIDC documents (`system:service-account-issuer-discovery`),
//! and so may anonymous clients when the server allows it. Everything else is denied
//! with Kubernetes' message.

use super::request::{RequestInfo, ResourceRequest};
use crate::tokens::UserInfo;
use crate::wellknown;

/// Paths anyone may GET, authenticated or not.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];
/// Paths authenticated users may GET.
const DISCOVERY_PREFIXES: &[&str] = &["/api", "/apis", "/openapi"];
/// The OIDC documents (`system:service-account-issuer-discovery`).
const OIDC_PATHS: &[&str] = &["/.well-known/openid-configuration", "/openid/v1/jwks"];

fn under(path: &str, base: &str) -> bool {
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|r| r.starts_with('/') || r.starts_with('?'))
}

/// Whether `user` may make the request. `anonymous_oidc` grants the OIDC documents to
/// everybody (the binding relying parties such as Vault need).
pub(crate) fn allowed(user: &UserInfo, info: &RequestInfo, anonymous_oidc: bool) -> bool {
    if user.in_group(wellknown::GROUP_MASTERS) {
        return true;
    }
    match info {
        RequestInfo::NonResource { verb, path } => {
            let readable = verb == "get" || verb == "head";
            if readable && PUBLIC_PATHS.iter().any(|p| under(path, p)) {
                return true;
            }
            let oidc = readable && OIDC_PATHS.iter().any(|p| path.trim_end_matches('/') == *p);
            if oidc && (anonymous_oidc || user.in_group(wellknown::GROUP_SERVICE_ACCOUNTS)) {
                return true;
            }
            readable
                && user.in_group(wellknown::GROUP_AUTHENTICATED)
                && DISCOVERY_PREFIXES.iter().any(|p| under(path, p))
        }
        RequestInfo::Resource(r) => {
            user.in_group(wellknown::GROUP_AUTHENTICATED)
                && r.verb == "create"
                && matches!(
                    (r.group.as_str(), r.resource.as_str()),
                    ("authentication.k8s.io", "selfsubjectreviews")
                        | ("authorization.k8s.io", "selfsubjectaccessreviews")
                )
        }
    }
}

/// The Forbidden message of the RBAC authorizer, e.g.
/// `User "u" cannot list resource "pods" in API group "" in the namespace "default"`.
pub(crate) fn forbidden_reason(user: &UserInfo, info: &RequestInfo) -> String {
    match info {
        RequestInfo::NonResource { verb, path } => {
            format!("User {:?} cannot {verb} path {path:?}", user.username)
        }
        RequestInfo::Resource(r) => {
            let resource = match &r.subresource {
                Some(s) => format!("{}/{s}", r.resource),
                None => r.resource.clone(),
            };
            let scope = match &r.namespace {
                Some(ns) if r.resource != "namespaces" => format!("in the namespace {ns:?}"),
                _ => "at the cluster scope".to_string(),
            };
            format!(
                "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                user.username, r.verb, r.group
            )
        }
    }
}

/// The full Forbidden message: `<what> is forbidden: <reason>`.
pub(crate) fn forbidden_message(user: &UserInfo, info: &RequestInfo) -> String {
    let reason = forbidden_reason(user, info);
    match info {
        RequestInfo::NonResource { .. } => format!("forbidden: {reason}"),
        RequestInfo::Resource(ResourceRequest {
            resource,
            group,
            name,
            ..
        }) => {
            let what = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            match name {
                Some(n) => format!("{what} {n:?} is forbidden: {reason}"),
                None => format!("{what} is forbidden: {reason}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::Query;
    use crate::api::request::resolve;
    use http::Method;

    fn user(groups: &[&str]) -> UserInfo {
        UserInfo {
            username: "system:serviceaccount:default:example-sa".into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn info(m: Method, p: &str) -> RequestInfo {
        resolve(&m, p, &Query::default())
    }

    #[test]
    fn masters_do_everything_others_little() {
        let admin = user(&["system:masters", "system:authenticated"]);
        let sa = user(&["system:serviceaccounts", "system:authenticated"]);
        let anon = user(&["system:unauthenticated"]);
        let list = info(Method::GET, "/api/v1/namespaces/default/pods");
        assert!(allowed(&admin, &list, false));
        assert!(!allowed(&sa, &list, false));
        assert!(allowed(&sa, &info(Method::GET, "/api"), false));
        assert!(allowed(
            &sa,
            &info(Method::GET, "/apis/authentication.k8s.io/v1"),
            false
        ));
        assert!(!allowed(&anon, &info(Method::GET, "/api"), false));
        assert!(allowed(&anon, &info(Method::GET, "/version"), false));
        assert!(allowed(&anon, &info(Method::GET, "/readyz"), false));
        assert!(!allowed(&anon, &info(Method::GET, "/versions"), false));
        let ssr = info(
            Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        );
        assert!(allowed(&sa, &ssr, false));
        assert!(!allowed(&anon, &ssr, false));
        let oidc = info(Method::GET, "/openid/v1/jwks");
        assert!(allowed(&sa, &oidc, false));
        assert!(!allowed(&anon, &oidc, false));
        assert!(allowed(&anon, &oidc, true));
        assert!(!allowed(&anon, &info(Method::GET, "/metrics"), true));
        assert!(!allowed(
            &sa,
            &info(Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews"),
            false
        ));
    }

    #[test]
    fn messages_match_rbac() {
        let sa = user(&["system:authenticated"]);
        assert_eq!(
            forbidden_message(&sa, &info(Method::GET, "/api/v1/namespaces/default/pods")),
            "pods is forbidden: User \"system:serviceaccount:default:example-sa\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            forbidden_message(&sa, &info(Method::GET, "/api/v1/nodes/n1")),
            "nodes \"n1\" is forbidden: User \"system:serviceaccount:default:example-sa\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let anon = UserInfo {
            username: "system:anonymous".into(),
            ..Default::default()
        };
        assert_eq!(
            forbidden_message(
                &anon,
                &info(Method::GET, "/.well-known/openid-configuration")
            ),
            "forbidden: User \"system:anonymous\" cannot get path \"/.well-known/openid-configuration\""
        );
    }
}
