//! The HTTPS API server: TLS, authentication and authorization of every request,
//! routing by Kubernetes path rules, discovery, OpenAPI, health, and the resource
//! handlers. The only module that knows HTTP and `Status`.

mod authz;
mod body;
mod discovery;
mod fieldvalidation;
mod handlers;
mod inflight;
mod listener;
mod openapi;
mod openapi_proto;
mod params;
pub(crate) mod patch;
pub(crate) mod protobuf;
mod request;
mod status;
pub(crate) mod table;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;

use std::collections::BTreeMap;

use crate::admission::{AutomountMode, ServiceAccountAdmission};
use crate::registry::Registry;
use crate::telemetry::audit::{
    AuditEvent, AuditLog, AuditObjectRef, AuditResponseStatus, AuditUser,
};
use crate::telemetry::metrics::{AuthResult, Metrics, RequestLabels};
use crate::tokens::issuer::Issuer;
use crate::tokens::{AuthenticatorChain, UserInfo, oidc};
use crate::wellknown;
pub(crate) use listener::raise_open_file_limit;
use request::RequestInfo;
pub(crate) use status::Status;

/// What the server needs to run; built by `cli`.
pub(crate) struct ServerConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) tls: rustls::ServerConfig,
    /// How long SIGTERM waits for open requests before closing connections.
    pub(crate) shutdown_grace: Duration,
    /// Connections open at once; more are closed as they arrive.
    pub(crate) max_connections: usize,
    /// `--max-requests-inflight` (read-only) and `--max-mutating-requests-inflight`; 0: no limit.
    pub(crate) max_requests_inflight: usize,
    pub(crate) max_mutating_requests_inflight: usize,
}

/// The longest request URI (path and query) answered; longer ones get a 414 `Status`.
/// Just under hyper's own HTTP/1.1 limit (64 KiB), past which hyper answers a bare 414.
pub(crate) const MAX_URI_BYTES: usize = 60 << 10;
/// The largest request head (URI and headers), as Go's `http.DefaultMaxHeaderBytes` that
/// kube-apiserver keeps; larger heads get a 431 `Status`.
pub(crate) const MAX_HEADER_BYTES: usize = 1 << 20;

/// Shared state of every request handler.
pub(crate) struct AppState {
    pub(crate) registry: Registry,
    pub(crate) authn: AuthenticatorChain,
    pub(crate) openapi: openapi::OpenApi,
    /// `host:port` advertised in legacy `/api` discovery.
    pub(crate) server_address: String,
    /// Flips to true when the server shuts down, so that watches end.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Issues TokenRequests; `None` when no signing key is configured.
    pub(crate) issuer: Option<Arc<Issuer>>,
    /// `--api-audiences`, the default audiences of a TokenReview.
    pub(crate) api_audiences: Vec<String>,
    /// OIDC discovery documents; `None` when the issuer is not an https URL.
    pub(crate) oidc: Option<oidc::Discovery>,
    /// Whether anonymous clients may read the OIDC documents.
    pub(crate) anonymous_oidc: bool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// ServiceAccount admission of new Pods.
    pub(crate) admission: ServiceAccountAdmission,
    /// The max-in-flight pools (set from [`ServerConfig`] when serving starts).
    inflight: inflight::InFlight,
}

/// The parts of [`AppState`] that `cli` wires in beyond the basics.
pub(crate) struct TokenServices {
    pub(crate) issuer: Option<Arc<Issuer>>,
    pub(crate) api_audiences: Vec<String>,
    pub(crate) oidc: Option<oidc::Discovery>,
    pub(crate) anonymous_oidc: bool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) automount: AutomountMode,
}

impl AppState {
    pub(crate) fn new(
        registry: Registry,
        authn: AuthenticatorChain,
        server_address: String,
        shutdown: tokio::sync::watch::Receiver<bool>,
        tokens: TokenServices,
    ) -> Self {
        AppState {
            admission: ServiceAccountAdmission::new(registry.clone(), tokens.automount),
            registry,
            authn,
            openapi: openapi::OpenApi::build(),
            server_address,
            shutdown,
            issuer: tokens.issuer,
            api_audiences: tokens.api_audiences,
            oidc: tokens.oidc,
            anonymous_oidc: tokens.anonymous_oidc,
            metrics: tokens.metrics,
            audit: tokens.audit,
            inflight: inflight::InFlight::new(0, 0),
        }
    }
}

/// Audit annotations a handler adds to its request's audit event (carried in the
/// response's extensions).
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditAnnotations(pub(crate) BTreeMap<String, String>);

/// Adds a `Warning: 299 - "<text>"` header, which kubectl prints as `Warning: <text>`.
pub(crate) fn add_warning(resp: &mut Response, text: &str) {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
        resp.headers_mut().append(header::WARNING, v);
    }
}

type App = Arc<AppState>;

/// Serves until `stop` resolves, then drains requests for `shutdown_grace`.
/// `on_listening` is called once with the bound address.
pub(crate) async fn serve(
    config: ServerConfig,
    state: AppState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr) + Send + 'static,
) -> anyhow::Result<()> {
    let mut state = state;
    state.inflight = inflight::InFlight::new(
        config.max_requests_inflight,
        config.max_mutating_requests_inflight,
    );
    let app: App = Arc::new(state);
    let router = Router::new().fallback(dispatch).with_state(app);
    let handle = axum_server::Handle::new();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config.tls));
    let acceptor = listener::CappedAcceptor::new(
        axum_server::tls_rustls::RustlsAcceptor::new(tls)
            .handshake_timeout(listener::HANDSHAKE_TIMEOUT),
        config.max_connections,
    );
    let grace = config.shutdown_grace;
    let h = handle.clone();
    tokio::spawn(async move {
        stop.await;
        h.graceful_shutdown(Some(grace));
    });
    let h = handle.clone();
    tokio::spawn(async move {
        if let Some(addr) = h.listening().await {
            on_listening(addr);
        }
    });
    let mut server = axum_server::bind(config.bind)
        .acceptor(acceptor)
        .first_request_timeout(listener::FIRST_REQUEST_TIMEOUT)
        .accept_error_handler(|peer, e| tracing::debug!(?peer, "connection not accepted: {e}"))
        .handle(handle);
    let builder = server.http_builder();
    builder
        .http1()
        .header_read_timeout(listener::HEADER_READ_TIMEOUT)
        .max_buf_size(listener::MAX_HEAD_BUFFER);
    builder
        .http2()
        .keep_alive_interval(listener::H2_PING_INTERVAL)
        .keep_alive_timeout(listener::H2_PING_TIMEOUT)
        .max_header_list_size(u32::try_from(listener::MAX_HEAD_BUFFER).unwrap_or(u32::MAX));
    server
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await?;
    Ok(())
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

async fn dispatch(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = std::time::Instant::now();
    let received = app.registry.clock().now();
    if let Some(refused) = head_too_large(&req) {
        return refused;
    }
    let (parts, body) = req.into_parts();
    let query = params::Query::parse(parts.uri.query());
    let path = parts.uri.path().to_string();
    let info = request::resolve(&parts.method, &path, &query);
    let mut annotations = BTreeMap::new();
    let mut warnings = Vec::new();
    let user = match bearer(&parts.headers) {
        None => anonymous(),
        Some(token) => {
            let outcome = app.authn.authenticate(token, None).await;
            let seconds = started.elapsed().as_secs_f64();
            match outcome {
                Ok(a) => {
                    app.metrics.auth_attempt(AuthResult::Success, seconds);
                    annotations = a.annotations;
                    warnings = a.warnings;
                    a.user
                }
                Err(e) => {
                    let result = if e.rejected {
                        AuthResult::Error
                    } else {
                        AuthResult::Failure
                    };
                    app.metrics.auth_attempt(result, seconds);
                    // The reason stays in the debug log; the client learns only "Unauthorized".
                    tracing::debug!(%peer, path = %path, reason = %e, "authentication failed");
                    let resp = Status::unauthorized().into_response();
                    finish(
                        &app,
                        &parts,
                        &info,
                        &query,
                        &UserInfo::default(),
                        peer,
                        received,
                        started,
                        annotations,
                        &resp,
                    );
                    return resp;
                }
            }
        }
    };
    let mut slot = None;
    let mut response = if !authz::allowed(&user, &info, app.anonymous_oidc) {
        tracing::debug!(user = %user.username, path = %path, "forbidden");
        annotations.insert("authorization.k8s.io/decision".into(), "forbid".into());
        Status::forbidden(authz::forbidden_message(&user, &info)).into_response()
    } else {
        annotations.insert("authorization.k8s.io/decision".into(), "allow".into());
        match app.inflight.admit(&info, &user) {
            inflight::Admission::TooMany => inflight::too_many_requests(),
            inflight::Admission::Admitted(held) => {
                // Held until the answer is ready, as the filter holds it around the handler.
                slot = held;
                let ctx = handlers::Ctx {
                    app: &app,
                    user: &user,
                    headers: &parts.headers,
                    query: &query,
                };
                match &info {
                    RequestInfo::NonResource { .. } => {
                        non_resource(&app, &parts.method, &path, &parts.headers, &query)
                    }
                    RequestInfo::Resource(r) => handlers::handle(ctx, r, body).await,
                }
            }
        }
    };
    drop(slot);
    for w in &warnings {
        add_warning(&mut response, w);
    }
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if query.pretty(user_agent) {
        response = indent_json(response).await;
    }
    if let Some(extra) = response.extensions_mut().remove::<AuditAnnotations>() {
        annotations.extend(extra.0);
    }
    finish(
        &app,
        &parts,
        &info,
        &query,
        &user,
        peer,
        received,
        started,
        annotations,
        &response,
    );
    response
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

/// A complete JSON answer re-written indented (`?pretty=true`); streams (watches) and
/// other media types pass unchanged.
async fn indent_json(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let complete = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .is_some();
    if !is_json || !complete {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let pretty = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| serde_json::to_vec_pretty(&v).ok());
    let out = match pretty {
        Some(mut p) => {
            p.push(b'\n');
            parts.headers.remove(header::CONTENT_LENGTH);
            p.into()
        }
        None => bytes,
    };
    Response::from_parts(parts, Body::from(out))
}

/// Records a finished request: metrics, the audit log, the debug log.
#[allow(clippy::too_many_arguments)]
fn finish(
    app: &AppState,
    parts: &http::request::Parts,
    info: &RequestInfo,
    query: &params::Query,
    user: &UserInfo,
    peer: SocketAddr,
    received: jiff::Timestamp,
    started: std::time::Instant,
    annotations: BTreeMap<String, String>,
    response: &Response,
) {
    let code = response.status().as_u16();
    let labels = request_labels(&parts.method, info, query);
    // A watch's duration is how long it was open; kube-apiserver leaves it out of the
    // latency histogram for the same reason.
    let seconds = started.elapsed().as_secs_f64();
    app.metrics.request(&labels, code, seconds);
    tracing::debug!(method = %parts.method, path = %parts.uri.path(), user = %user.username, code, "request");
    if let Some(audit) = &app.audit {
        audit.record(audit_event(
            app,
            parts,
            info,
            user,
            peer,
            received,
            annotations,
            code,
        ));
    }
}

fn request_labels(method: &Method, info: &RequestInfo, query: &params::Query) -> RequestLabels {
    let dry_run = query.all("dryRun").any(|v| !v.is_empty());
    match info {
        RequestInfo::Resource(r) => {
            let scope = if r.name.is_some() {
                "resource"
            } else if r.namespace.is_some() && r.resource != "namespaces" {
                "namespace"
            } else {
                "cluster"
            };
            RequestLabels {
                verb: kube_verb_label(method, &r.verb).to_string(),
                group: r.group.clone(),
                version: r.version.clone(),
                resource: r.resource.clone(),
                subresource: r.subresource.clone().unwrap_or_default(),
                scope: scope.to_string(),
                dry_run,
            }
        }
        // kube-apiserver puts a non-resource path in `subresource`; unknown paths share one
        // value so that random paths cannot grow the series without bound.
        RequestInfo::NonResource { path, .. } => RequestLabels {
            verb: method.as_str().to_string(),
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            subresource: known_path_label(path).to_string(),
            scope: String::new(),
            dry_run,
        },
    }
}

/// The audit record of one request (Metadata level: who, what, from where, the outcome).
#[allow(clippy::too_many_arguments)]
fn audit_event(
    app: &AppState,
    parts: &http::request::Parts,
    info: &RequestInfo,
    user: &UserInfo,
    peer: SocketAddr,
    received: jiff::Timestamp,
    annotations: BTreeMap<String, String>,
    code: u16,
) -> AuditEvent {
    let (verb, object_ref) = match info {
        RequestInfo::Resource(r) => (
            r.verb.clone(),
            Some(AuditObjectRef {
                resource: r.resource.clone(),
                namespace: r
                    .namespace
                    .clone()
                    .filter(|_| r.resource != "namespaces")
                    .unwrap_or_default(),
                name: r.name.clone().unwrap_or_default(),
                api_group: r.group.clone(),
                api_version: r.version.clone(),
                subresource: r.subresource.clone().unwrap_or_default(),
                ..Default::default()
            }),
        ),
        RequestInfo::NonResource { verb, .. } => (verb.clone(), None),
    };
    AuditEvent {
        audit_id: uuid::Uuid::new_v4(),
        request_uri: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        verb,
        user: AuditUser {
            username: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
        },
        source_ips: vec![peer.ip()],
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        object_ref,
        response_status: AuditResponseStatus::code(code),
        request_received: received,
        stage_timestamp: app.registry.clock().now(),
        annotations,
    }
}

/// The metric label of a non-resource path.
fn known_path_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/version",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/api",
        "/apis",
        "/openapi/v3",
        "/openapi/v2",
        "/.well-known/openid-configuration",
        "/openid/v1/jwks",
    ];
    let p = path.trim_end_matches('/');
    if let Some(k) = KNOWN.iter().find(|k| **k == p) {
        return k;
    }
    if p.starts_with("/openapi/v3/") {
        "/openapi/v3/*"
    } else if p.starts_with("/api/") || p.starts_with("/apis/") {
        "/apis/*"
    } else {
        "other"
    }
}

/// kube-apiserver's `verb` metric label: the HTTP method, except LIST, WATCH and APPLY.
fn kube_verb_label(method: &Method, verb: &str) -> &'static str {
    match verb {
        "list" => "LIST",
        "watch" => "WATCH",
        _ => match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            _ => "OTHER",
        },
    }
}

/// A JSON response.
pub(crate) fn json(code: StatusCode, value: &Value) -> Response {
    json_typed(code, value, "application/json")
}

pub(crate) fn json_typed(code: StatusCode, value: &Value, content_type: &str) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = (code, body).into_response();
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

fn text(code: StatusCode, body: String) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn non_resource(
    app: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &params::Query,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return Status::method_not_allowed().into_response();
    }
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "/healthz" | "/livez" | "/readyz" => {
            if query.contains("verbose") {
                let check = &trimmed[1..];
                text(
                    StatusCode::OK,
                    format!("[+]ping ok\n[+]log ok\n[+]store ok\n{check} check passed\n"),
                )
            } else {
                text(StatusCode::OK, "ok".to_string())
            }
        }
        "/version" => json(StatusCode::OK, &discovery::version()),
        "/metrics" => {
            let (body, content_type) = app.metrics.render();
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        "/.well-known/openid-configuration" | "/openid/v1/jwks" => {
            let Some(d) = &app.oidc else {
                return Status::path_not_found().into_response();
            };
            let (body, content_type) = if trimmed == "/openid/v1/jwks" {
                (d.jwks.clone(), "application/jwk-set+json")
            } else {
                (d.configuration.clone(), "application/json")
            };
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // Static keys: relying parties may cache for an hour, as kube-apiserver allows.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            resp
        }
        "/api" => match discovery::wants_aggregated(accept(headers)) {
            Some(v) => json_typed(
                StatusCode::OK,
                &discovery::aggregated(true, v),
                &discovery::aggregated_content_type(v),
            ),
            None => json(
                StatusCode::OK,
                &discovery::api_versions(&app.server_address),
            ),
        },
        "/apis" => match discovery::wants_aggregated(accept(headers)) {
            Some(v) => json_typed(
                StatusCode::OK,
                &discovery::aggregated(false, v),
                &discovery::aggregated_content_type(v),
            ),
            None => json(StatusCode::OK, &discovery::api_group_list()),
        },
        "/openapi/v3" => json(StatusCode::OK, &app.openapi.v3_root()),
        "/openapi/v2" => openapi_v2(app, headers),
        _ => {
            let parts: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
            let found = match parts.as_slice() {
                ["api", v] => discovery::api_resource_list("", v),
                ["apis", g] => discovery::api_group(g),
                ["apis", g, v] => discovery::api_resource_list(g, v),
                ["openapi", "v3", rest @ ..] if !rest.is_empty() => {
                    return openapi_document(app, &rest.join("/"), query);
                }
                _ => None,
            };
            match found {
                Some(v) => json(StatusCode::OK, &v),
                None => Status::path_not_found().into_response(),
            }
        }
    }
}

/// `/openapi/v3/<gv>`: immutable and cacheable when asked for by its current hash (kubectl
/// then keeps it in its disk cache), otherwise sent uncached.
fn openapi_document(app: &AppState, key: &str, query: &params::Query) -> Response {
    let Some(doc) = app.openapi.v3_document(key) else {
        return Status::path_not_found().into_response();
    };
    let mut resp = (StatusCode::OK, doc.body.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if query.get("hash") == Some(doc.etag.as_str()) {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", doc.etag)) {
            h.insert(header::ETAG, etag);
        }
    } else {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
    }
    resp
}

/// The media types `/openapi/v2` is served as, in kube-openapi's order of preference
/// (`handler.go`): what the client may ask for and the Content-Type answered. kubectl asks
/// for the deprecated `@v1.0` spelling.
const OPENAPI_V2_TYPES: &[(&str, &str)] = &[
    ("application/json", "application/json"),
    (
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
    ),
    (
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
    ),
];

/// Picks the `/openapi/v2` encoding for an Accept header as goautoneg does: clauses by
/// descending `q` (stable), each matched against the served types with `*` wildcards.
fn openapi_v2_type(accept: &str) -> Option<(usize, &'static str)> {
    let accept = if accept.trim().is_empty() {
        "*/*"
    } else {
        accept
    };
    let mut clauses: Vec<(f32, &str)> = accept
        .split(',')
        .map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (q, media)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, media) in clauses {
        let (ty, sub) = media.split_once('/').unwrap_or((media, ""));
        for (i, (served, answered)) in OPENAPI_V2_TYPES.iter().enumerate() {
            let (sty, ssub) = served.split_once('/').unwrap_or((served, ""));
            if (ty == "*" || ty.eq_ignore_ascii_case(sty))
                && (sub == "*" || sub.eq_ignore_ascii_case(ssub))
            {
                return Some((i, answered));
            }
        }
    }
    None
}

/// `/openapi/v2` as kube-openapi's handler serves it: JSON or protobuf by Accept (406 when
/// neither is acceptable), `Etag` = the quoted SHA-512 of the bytes served, and
/// `If-None-Match` answered with 304 (Go's `http.ServeContent`), which is how kubectl's disk
/// cache revalidates it.
fn openapi_v2(app: &AppState, headers: &HeaderMap) -> Response {
    let Some((index, content_type)) = openapi_v2_type(accept(headers)) else {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    };
    let doc = if index == 0 {
        &app.openapi.v2_json
    } else {
        &app.openapi.v2_proto
    };
    let etag = format!("\"{}\"", doc.etag);
    let not_modified = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let mut resp = if not_modified {
        // Go's ServeContent sends no Content-Length with a 304. An empty body would be
        // announced as `Content-Length: 0`, which HTTP caches (kubectl's) copy onto the
        // stored response; the length of the representation is the truthful value.
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(doc.body.len()));
        r
    } else {
        (StatusCode::OK, doc.body.clone()).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if !not_modified {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    resp
}

/// Reads a request body, refusing more than the Kubernetes limit.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, Status> {
    let limit = wellknown::MAX_REQUEST_BYTES;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Status::too_large(limit));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Status::too_large(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_v2_content_negotiation() {
        let proto = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
        assert_eq!(openapi_v2_type(""), Some((0, "application/json")));
        assert_eq!(openapi_v2_type("*/*"), Some((0, "application/json")));
        assert_eq!(
            openapi_v2_type("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            Some((1, proto))
        );
        assert_eq!(openapi_v2_type(proto), Some((2, proto)));
        assert_eq!(
            openapi_v2_type(&format!("application/json;q=0.5, {proto}")),
            Some((2, proto)),
            "higher q first"
        );
        assert_eq!(
            openapi_v2_type("application/com.github.proto-openapiv2.v1.0+protobuf"),
            None
        );
        assert_eq!(openapi_v2_type("text/html"), None);
    }
}
