//! Between HTTP and the authorizer: a request's [`RequestInfo`] as the [`Attributes`] the
//! authorizer decides on (`authorizer.AttributesRecord` from `GetAuthorizerAttributes`),
//! and a refusal as kube-apiserver words it (`responsewriters.Forbidden`).
//!
//! The decision itself belongs to `rbac`.

use super::Status;
use super::request::{RequestInfo, ResourceRequest};
use crate::rbac::Attributes;
use crate::registry::RegistryError;
use crate::tokens::UserInfo;

/// What the authorizer is asked about a request.
pub(crate) fn attributes(info: &RequestInfo) -> Attributes {
    match info {
        RequestInfo::NonResource { verb, path } => Attributes {
            verb: verb.clone(),
            path: path.clone(),
            ..Attributes::default()
        },
        RequestInfo::Resource(r) => resource_attributes(r),
    }
}

fn resource_attributes(r: &ResourceRequest) -> Attributes {
    Attributes {
        verb: r.verb.clone(),
        resource_request: true,
        path: String::new(),
        api_group: r.group.clone(),
        resource: r.resource.clone(),
        subresource: r.subresource.clone().unwrap_or_default(),
        namespace: r.namespace.clone().unwrap_or_default(),
        name: r.name.clone().unwrap_or_default(),
    }
}

/// The refusal of the RBAC authorizer (`forbiddenMessage`), e.g.
/// `User "u" cannot list resource "pods" in API group "" in the namespace "default"`.
pub(crate) fn forbidden_reason(user: &UserInfo, a: &Attributes) -> String {
    if !a.resource_request {
        return format!(
            "User {:?} cannot {} path {:?}",
            user.username, a.verb, a.path
        );
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    format!(
        "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        user.username, a.verb, a.api_group
    )
}

/// The 403 of a refused request: `<what> is forbidden: <reason>[: <authorizer's reason>]`,
/// with the details `apierrors.NewForbidden` gives.
pub(crate) fn forbidden(user: &UserInfo, a: &Attributes, why: &str) -> Status {
    let mut message = forbidden_reason(user, a);
    if !why.is_empty() {
        message = format!("{message}: {why}");
    }
    if !a.resource_request {
        return Status::forbidden(format!("forbidden: {message}"));
    }
    let resource = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    RegistryError::Forbidden {
        resource,
        name: a.name.clone(),
        message,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::Query;
    use crate::api::request::resolve;
    use crate::wellknown;
    use http::Method;

    fn message(user: &str, m: Method, p: &str, why: &str) -> String {
        let u = UserInfo {
            username: user.into(),
            ..Default::default()
        };
        let a = attributes(&resolve(&m, p, &Query::default()));
        forbidden(&u, &a, why).message
    }

    #[test]
    fn messages_match_kube_apiserver() {
        let sa = "system:serviceaccount:default:example-sa";
        assert_eq!(
            message(sa, Method::GET, "/api/v1/namespaces/default/pods", ""),
            "pods is forbidden: User \"system:serviceaccount:default:example-sa\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            message(sa, Method::GET, "/api/v1/nodes/n1", ""),
            "nodes \"n1\" is forbidden: User \"system:serviceaccount:default:example-sa\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
        );
        // A Namespace is in its own namespace, as RequestInfo has it.
        assert_eq!(
            message("u", Method::GET, "/api/v1/namespaces/a", ""),
            "namespaces \"a\" is forbidden: User \"u\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"a\""
        );
        assert_eq!(
            message(
                "u",
                Method::POST,
                "/api/v1/namespaces/a/serviceaccounts/app/token",
                "RBAC: x"
            ),
            "serviceaccounts \"app\" is forbidden: User \"u\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"a\": RBAC: x"
        );
        assert_eq!(
            message(
                "u",
                Method::GET,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                ""
            ),
            "clusterroles.rbac.authorization.k8s.io is forbidden: User \"u\" cannot list resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
        );
        assert_eq!(
            message(
                "system:anonymous",
                Method::GET,
                wellknown::OIDC_DISCOVERY_PATH,
                ""
            ),
            "forbidden: User \"system:anonymous\" cannot get path \"/.well-known/openid-configuration\""
        );
    }
}
