//! `Impersonate-User`, `-Group`, `-Uid` and `Impersonate-Extra-<key>` headers as
//! kube-apiserver reads them (`WithImpersonation` in
//! `staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`): the user they
//! name, and one `impersonate` check per thing named — `users` (or the `serviceaccounts` of
//! a service account's namespace), `groups`, `uids` and `userextras/<key>` — each of which
//! the requester must be allowed.
//!
//! Must not: decide (the chain asks the authorizer) or touch anything but headers.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName};

use crate::rbac::Attributes;
use crate::tokens::UserInfo;
use crate::wellknown;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// What impersonation headers ask for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Impersonation {
    /// The user the request goes on as.
    pub(crate) user: UserInfo,
    /// What the requester must be allowed, in kube-apiserver's order.
    pub(crate) checks: Vec<Attributes>,
}

/// Headers that name something without naming a user (kube-apiserver answers these 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("requested {0} without impersonating a user")]
pub(crate) struct WithoutUser(pub(crate) String);

fn impersonate(resource: &str, group: &str) -> Attributes {
    Attributes {
        verb: "impersonate".into(),
        resource_request: true,
        api_group: group.into(),
        resource: resource.into(),
        ..Attributes::default()
    }
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// The impersonation the headers ask for: `Ok(None)` when there is none.
pub(crate) fn requested(headers: &HeaderMap) -> Result<Option<Impersonation>, WithoutUser> {
    let groups = values(headers, GROUP);
    let uid = values(headers, UID).into_iter().next();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) else {
            continue;
        };
        let key = percent_encoding::percent_decode_str(key)
            .decode_utf8_lossy()
            .to_lowercase();
        if let Ok(v) = value.to_str() {
            extra.entry(key).or_default().push(v.to_string());
        }
    }
    let Some(username) = values(headers, USER).into_iter().next() else {
        if groups.is_empty() && extra.is_empty() && uid.is_none() {
            return Ok(None);
        }
        let mut named: Vec<String> = groups.iter().map(|g| format!("Group={g}")).collect();
        named.extend(extra.keys().map(|k| format!("Extra={k}")));
        named.extend(uid.iter().map(|u| format!("UID={u}")));
        return Err(WithoutUser(format!("[{}]", named.join(" "))));
    };
    let checks = checks(&username, &groups, &extra, uid.as_deref());
    Ok(Some(Impersonation {
        user: impersonated(username, groups, uid.unwrap_or_default(), extra),
        checks,
    }))
}

/// `system:serviceaccount:<ns>:<name>` as its namespace and name.
fn service_account(username: &str) -> Option<(&str, &str)> {
    username
        .strip_prefix(wellknown::SERVICE_ACCOUNT_USER_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
}

/// One `impersonate` check per thing named, in kube-apiserver's order.
fn checks(
    username: &str,
    groups: &[String],
    extra: &BTreeMap<String, Vec<String>>,
    uid: Option<&str>,
) -> Vec<Attributes> {
    let mut checks = vec![match service_account(username) {
        Some((ns, name)) => Attributes {
            namespace: ns.into(),
            name: name.into(),
            ..impersonate("serviceaccounts", "")
        },
        None => Attributes {
            name: username.into(),
            ..impersonate("users", "")
        },
    }];
    checks.extend(groups.iter().map(|g| Attributes {
        name: g.clone(),
        ..impersonate("groups", "")
    }));
    for (key, values) in extra {
        checks.extend(values.iter().map(|v| Attributes {
            subresource: key.clone(),
            name: v.clone(),
            ..impersonate("userextras", "authentication.k8s.io")
        }));
    }
    checks.extend(uid.map(|u| Attributes {
        name: u.into(),
        ..impersonate("uids", "authentication.k8s.io")
    }));
    checks
}

/// The user the request goes on as: a service account's groups unless groups are named, and
/// `system:authenticated` (`system:unauthenticated` for the anonymous user) unless a group
/// says otherwise.
fn impersonated(
    username: String,
    groups: Vec<String>,
    uid: String,
    extra: BTreeMap<String, Vec<String>>,
) -> UserInfo {
    let mut groups = match service_account(&username) {
        Some((ns, _)) if groups.is_empty() => vec![
            wellknown::GROUP_SERVICE_ACCOUNTS.to_string(),
            format!("{}:{ns}", wellknown::GROUP_SERVICE_ACCOUNTS),
        ],
        _ => groups,
    };
    let (implied, unless): (&str, &[&str]) = if username == wellknown::USER_ANONYMOUS {
        (
            wellknown::GROUP_UNAUTHENTICATED,
            &[wellknown::GROUP_UNAUTHENTICATED],
        )
    } else {
        (
            wellknown::GROUP_AUTHENTICATED,
            &[
                wellknown::GROUP_AUTHENTICATED,
                wellknown::GROUP_UNAUTHENTICATED,
            ],
        )
    };
    if !groups.iter().any(|g| unless.contains(&g.as_str())) {
        groups.push(implied.to_string());
    }
    UserInfo {
        username,
        uid,
        groups,
        extra,
    }
}

/// Removes the impersonation headers, so that nothing after the filter sees them.
pub(crate) fn strip(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn service_accounts_get_their_groups_and_one_check() {
        let i = requested(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:a:app",
        )]))
        .expect("valid")
        .expect("asked");
        assert_eq!(
            i.user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:a",
                "system:authenticated"
            ]
        );
        assert_eq!(i.checks.len(), 1);
        assert_eq!(
            (
                i.checks[0].resource.as_str(),
                i.checks[0].namespace.as_str(),
                i.checks[0].name.as_str()
            ),
            ("serviceaccounts", "a", "app")
        );
    }

    #[test]
    fn every_named_thing_is_checked() {
        let i = requested(&headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "system:unauthenticated"),
            ("Impersonate-Uid", "42"),
            ("Impersonate-Extra-Scopes%2FOne", "view"),
        ]))
        .expect("valid")
        .expect("asked");
        let checks: Vec<(String, String, String)> = i
            .checks
            .iter()
            .map(|c| (c.resource.clone(), c.subresource.clone(), c.name.clone()))
            .collect();
        assert_eq!(
            checks,
            [
                ("users".into(), String::new(), "jane".into()),
                ("groups".into(), String::new(), "devs".into()),
                (
                    "groups".into(),
                    String::new(),
                    "system:unauthenticated".into()
                ),
                ("userextras".into(), "scopes/one".into(), "view".into()),
                ("uids".into(), String::new(), "42".into()),
            ]
        );
        // system:unauthenticated named: system:authenticated is not added.
        assert_eq!(i.user.groups, ["devs", "system:unauthenticated"]);
        assert_eq!(i.user.uid, "42");
        assert_eq!(i.user.extra["scopes/one"], ["view"]);
    }

    #[test]
    fn nothing_or_no_user() {
        assert_eq!(requested(&headers(&[("Accept", "x")])), Ok(None));
        assert_eq!(
            requested(&headers(&[("Impersonate-Group", "g")])),
            Err(WithoutUser("[Group=g]".into()))
        );
        let anon = requested(&headers(&[("Impersonate-User", "system:anonymous")]))
            .expect("valid")
            .expect("asked");
        assert_eq!(anon.user.groups, ["system:unauthenticated"]);
        let mut h = headers(&[("Impersonate-User", "x"), ("Impersonate-Extra-a", "b")]);
        strip(&mut h);
        assert!(h.is_empty());
    }
}
