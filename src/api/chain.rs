//! The handler chain every request crosses, in kube-apiserver's order
//! (`DefaultBuildHandlerChain` in `staging/src/k8s.io/apiserver/pkg/server/config.go`, read
//! from the outside in):
//!
//! 1. request info: the head limits, the query parsed once, what the request is about;
//! 2. authentication: the bearer token to a user (401 here, recorded here);
//! 3. audit: metrics and the audit event of everything that got past authentication;
//! 4. impersonation: `Impersonate-*` headers, for those allowed to use them;
//! 5. max-in-flight: the read-only and mutating pools (429);
//! 6. authorization: 403 with the RBAC authorizer's message;
//! 7. the handler: the resource tree (`handlers`) or the other paths (`nonresource`).
//!
//! Each filter is an axum middleware; what one learns, the next reads from the request's
//! extensions. [`handler_chain`] lists them in that order.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use tower::ServiceBuilder;

use super::inflight::{self, Admission};
use super::params::Query;
use super::record::{self, Head, Subject};
use super::request::{self, RequestInfo};
use super::response::{AuditAnnotations, add_warning, indent_json};
use super::state::App;
use super::{MAX_HEADER_BYTES, MAX_URI_BYTES, Status, authz, handlers, impersonation, nonresource};
use crate::telemetry::metrics::AuthResult;
use crate::tokens::UserInfo;
use crate::wellknown;

/// The router: the filters of the module header, outermost first, around the one handler.
pub(super) fn handler_chain(app: App) -> Router {
    let filters = ServiceBuilder::new()
        .layer(from_fn_with_state(app.clone(), with_request_info))
        .layer(from_fn_with_state(app.clone(), with_authentication))
        .layer(from_fn_with_state(app.clone(), with_audit))
        .layer(from_fn_with_state(app.clone(), with_impersonation))
        .layer(from_fn_with_state(app.clone(), with_max_in_flight))
        .layer(from_fn_with_state(app.clone(), with_authorization));
    Router::new()
        .fallback(handle)
        .layer(filters)
        .with_state(app)
}

/// What authentication learned beyond the user: audit annotations (stale or legacy token
/// use) for the audit filter.
#[derive(Debug, Clone, Default)]
struct AuthNotes(BTreeMap<String, String>);

/// Filter 1: refuses heads over the limits, then records the query, the request info and
/// the arrival time.
async fn with_request_info(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let received = app.registry.clock().now();
    if let Some(refused) = head_too_large(&req) {
        return refused;
    }
    let query = Query::parse(req.uri().query());
    let info = request::resolve(req.method(), req.uri().path(), &query);
    let head = Head::of(&req, received, started);
    let ext = req.extensions_mut();
    ext.insert(query);
    ext.insert(info);
    ext.insert(head);
    next.run(req).await
}

/// The 414 or 431 of a request whose URI or head is over the limits, as a `Status`
/// (Go's server answers these in plain text; a `Status` reads the same to every client).
fn head_too_large(req: &Request) -> Option<Response> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(
            Status::new(
                StatusCode::URI_TOO_LONG,
                "",
                format!("Request-URI Too Long: the limit is {MAX_URI_BYTES} bytes"),
            )
            .into_response(),
        );
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (uri + headers > MAX_HEADER_BYTES).then(|| {
        Status::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "",
            format!("Request Header Fields Too Large: the limit is {MAX_HEADER_BYTES} bytes"),
        )
        .into_response()
    })
}

/// The extension an earlier filter inserted.
fn from_chain<T: Clone + Send + Sync + 'static>(req: &Request) -> Option<T> {
    req.extensions().get::<T>().cloned()
}

/// A missing extension means the chain was assembled wrong: a server error, not a panic.
fn chain_broken() -> Response {
    Status::internal("the handler chain is missing a filter").into_response()
}

/// Filter 2: a bearer token becomes a user (no token: `system:anonymous`). A token that
/// does not authenticate is a 401 with no detail; the reason goes to the debug log and the
/// failure is recorded here, as kube-apiserver's failed-authentication audit does.
async fn with_authentication(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        req.extensions_mut().insert(anonymous());
        req.extensions_mut().insert(AuthNotes::default());
        return next.run(req).await;
    };
    let started = Instant::now();
    let outcome = app.authn.authenticate(token, None).await;
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(a) => {
            app.tokens
                .metrics
                .auth_attempt(AuthResult::Success, seconds);
            req.extensions_mut().insert(a.user);
            req.extensions_mut().insert(AuthNotes(a.annotations));
            let mut resp = next.run(req).await;
            for w in &a.warnings {
                add_warning(&mut resp, w);
            }
            resp
        }
        Err(e) => {
            let result = if e.rejected {
                AuthResult::Error
            } else {
                AuthResult::Failure
            };
            app.tokens.metrics.auth_attempt(result, seconds);
            let (Some(head), Some(info), Some(query)) = (
                from_chain::<Head>(&req),
                from_chain::<RequestInfo>(&req),
                from_chain::<Query>(&req),
            ) else {
                return chain_broken();
            };
            tracing::debug!(peer = %head.peer, uri = %head.request_uri, reason = %e, "authentication failed");
            let resp = Status::unauthorized().into_response();
            let anonymous_user = UserInfo::default();
            let subject = Subject {
                head: &head,
                info: &info,
                query: &query,
                user: &anonymous_user,
                impersonated: None,
            };
            record::finish(&app, &subject, BTreeMap::new(), resp.status().as_u16());
            resp
        }
    }
}

/// The anonymous user of requests without credentials.
fn anonymous() -> UserInfo {
    UserInfo {
        username: wellknown::USER_ANONYMOUS.to_string(),
        groups: vec![wellknown::GROUP_UNAUTHENTICATED.to_string()],
        ..Default::default()
    }
}

/// The bearer token of a request, if it carries one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Filter 3: records every authenticated request once it is answered: metrics and the
/// audit event, with the annotations authentication and the handler added.
async fn with_audit(State(app): State<App>, req: Request, next: Next) -> Response {
    let (Some(head), Some(info), Some(query), Some(user), Some(notes)) = (
        from_chain::<Head>(&req),
        from_chain::<RequestInfo>(&req),
        from_chain::<Query>(&req),
        from_chain::<UserInfo>(&req),
        from_chain::<AuthNotes>(&req),
    ) else {
        return chain_broken();
    };
    let mut resp = next.run(req).await;
    let impersonated = resp.extensions_mut().remove::<Impersonated>();
    let mut annotations = notes.0;
    if let Some(extra) = resp.extensions_mut().remove::<AuditAnnotations>() {
        annotations.extend(extra.0);
    }
    let subject = Subject {
        head: &head,
        info: &info,
        query: &query,
        user: &user,
        impersonated: impersonated.as_ref().map(|i| &i.0),
    };
    record::finish(&app, &subject, annotations, resp.status().as_u16());
    resp
}

/// Filter 4: `Impersonate-*` headers (`WithImpersonation`): the request goes on as the user
/// they name if the requester may `impersonate` everything they name, else kube-apiserver's
/// 403 for the first thing refused. The audit event records both users.
async fn with_impersonation(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let asked = match impersonation::requested(req.headers()) {
        Ok(None) => return next.run(req).await,
        Ok(Some(asked)) => asked,
        Err(e) => return Status::internal(e.to_string()).into_response(),
    };
    let Some(user) = from_chain::<UserInfo>(&req) else {
        return chain_broken();
    };
    for check in &asked.checks {
        let decision = app.authorizer.authorize(&user, check);
        if !decision.allowed {
            return authz::forbidden(&user, check, &decision.reason).into_response();
        }
    }
    impersonation::strip(req.headers_mut());
    req.extensions_mut().insert(asked.user.clone());
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(Impersonated(asked.user));
    resp
}

/// The user a request was made as, for the audit event (`impersonatedUser`).
#[derive(Debug, Clone)]
struct Impersonated(UserInfo);

/// Filter 5: a slot in the read-only or mutating pool for the rest of the request, or 429.
async fn with_max_in_flight(State(app): State<App>, req: Request, next: Next) -> Response {
    let (Some(info), Some(user)) = (
        from_chain::<RequestInfo>(&req),
        from_chain::<UserInfo>(&req),
    ) else {
        return chain_broken();
    };
    match app.inflight.admit(&info, &user) {
        Admission::TooMany => inflight::too_many_requests(),
        // Held until the answer is ready, as the filter holds it around the handler.
        Admission::Admitted(_slot) => next.run(req).await,
    }
}

/// Filter 6: 403 with the RBAC authorizer's message, else on to the handler; either way the
/// decision goes into the audit annotations.
async fn with_authorization(State(app): State<App>, req: Request, next: Next) -> Response {
    let (Some(info), Some(user)) = (
        from_chain::<RequestInfo>(&req),
        from_chain::<UserInfo>(&req),
    ) else {
        return chain_broken();
    };
    let attributes = authz::attributes(&info);
    let decision = app.authorizer.authorize(&user, &attributes);
    let allowed = decision.allowed;
    let mut resp = if allowed {
        next.run(req).await
    } else {
        tracing::debug!(user = %user.username, "forbidden");
        authz::forbidden(&user, &attributes, &decision.reason).into_response()
    };
    let verdict = if allowed { "allow" } else { "forbid" };
    let notes = resp
        .extensions_mut()
        .get_or_insert_default::<AuditAnnotations>();
    notes.0.insert(
        wellknown::AUDIT_AUTHORIZATION_DECISION.into(),
        verdict.into(),
    );
    if !decision.reason.is_empty() {
        notes.0.insert(
            wellknown::AUDIT_AUTHORIZATION_REASON.into(),
            decision.reason,
        );
    }
    resp
}

/// The handler at the end of the chain.
async fn handle(State(app): State<App>, req: Request) -> Response {
    let (Some(info), Some(user), Some(query)) = (
        from_chain::<RequestInfo>(&req),
        from_chain::<UserInfo>(&req),
        from_chain::<Query>(&req),
    ) else {
        return chain_broken();
    };
    let (parts, body) = req.into_parts();
    let response = match &info {
        RequestInfo::NonResource { .. } => nonresource::non_resource(
            &app,
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            &query,
        ),
        RequestInfo::Resource(r) => {
            let ctx = handlers::Ctx {
                app: &app,
                user: &user,
                headers: &parts.headers,
                query: &query,
            };
            handlers::handle(ctx, r, body).await
        }
    };
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if query.pretty(user_agent) {
        indent_json(response).await
    } else {
        response
    }
}
