//! `--max-requests-inflight` and `--max-mutating-requests-inflight`: kube-apiserver's
//! max-in-flight filter (`staging/src/k8s.io/apiserver/pkg/server/filters/maxinflight.go`).
//! Read-only and mutating requests have separate pools; a request that finds its pool full is
//! answered 429 at once with `Retry-After: 1` instead of queueing. Long-running requests
//! (watches) take no slot, and `system:masters` is never turned away ("a super-admin should
//! always get an answer"). A limit of 0 means no limit.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Status;
use super::request::RequestInfo;
use crate::tokens::UserInfo;
use crate::wellknown;

/// The two pools.
#[derive(Debug)]
pub(crate) struct InFlight {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

/// What [`InFlight::admit`] decided.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Go ahead, holding the slot (if any) until the answer is ready.
    Admitted(Option<OwnedSemaphorePermit>),
    /// The pool is full.
    TooMany,
}

impl InFlight {
    pub(crate) fn new(max_read_only: usize, max_mutating: usize) -> Self {
        let pool =
            |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))));
        InFlight {
            read_only: pool(max_read_only),
            mutating: pool(max_mutating),
        }
    }

    pub(crate) fn admit(&self, info: &RequestInfo, user: &UserInfo) -> Admission {
        let (verb, long_running) = match info {
            RequestInfo::Resource(r) => (r.verb.as_str(), r.verb == "watch"),
            RequestInfo::NonResource { verb, .. } => (verb.as_str(), false),
        };
        if long_running {
            return Admission::Admitted(None);
        }
        let mutating = matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection" | "post" | "put"
        );
        let pool = if mutating {
            &self.mutating
        } else {
            &self.read_only
        };
        let Some(pool) = pool else {
            return Admission::Admitted(None);
        };
        match pool.clone().try_acquire_owned() {
            Ok(slot) => Admission::Admitted(Some(slot)),
            Err(_) if user.in_group(wellknown::GROUP_MASTERS) => Admission::Admitted(None),
            Err(_) => Admission::TooMany,
        }
    }
}

/// The 429 of a full pool. kube-apiserver writes a plain-text body here; a `Status` says the
/// same to every client and is what the rest of the API answers with.
pub(crate) fn too_many_requests() -> Response {
    let mut resp = Status::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests, please try again later.",
    )
    .with_details(json!({"retryAfterSeconds": 1}))
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::Query;
    use crate::api::request::resolve;
    use http::Method;

    fn info(method: Method, path: &str, query: &str) -> RequestInfo {
        resolve(&method, path, &Query::parse(Some(query)))
    }

    fn user(groups: &[&str]) -> UserInfo {
        UserInfo {
            username: "u".into(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pools_are_separate_and_watches_and_masters_pass() {
        let f = InFlight::new(1, 1);
        let sa = user(&["system:authenticated"]);
        let get = info(Method::GET, "/api/v1/namespaces/d/configmaps/x", "");
        let post = info(Method::POST, "/api/v1/namespaces/d/configmaps", "");
        let watch = info(Method::GET, "/api/v1/configmaps", "watch=1");
        let Admission::Admitted(Some(read_slot)) = f.admit(&get, &sa) else {
            panic!("the first read")
        };
        assert!(matches!(f.admit(&get, &sa), Admission::TooMany));
        let Admission::Admitted(Some(_write_slot)) = f.admit(&post, &sa) else {
            panic!("a write has its own pool")
        };
        assert!(matches!(f.admit(&post, &sa), Admission::TooMany));
        assert!(matches!(f.admit(&watch, &sa), Admission::Admitted(None)));
        let admin = user(&["system:masters"]);
        assert!(matches!(f.admit(&get, &admin), Admission::Admitted(None)));
        drop(read_slot);
        assert!(matches!(f.admit(&get, &sa), Admission::Admitted(Some(_))));
        let unlimited = InFlight::new(0, 0);
        assert!(matches!(
            unlimited.admit(&get, &sa),
            Admission::Admitted(None)
        ));
    }

    #[test]
    fn the_answer_is_a_429_status_with_retry_after() {
        let resp = too_many_requests();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }
}
