//! The HTTPS API server: TLS, authentication and authorization of every request,
//! routing by Kubernetes path rules, discovery, OpenAPI, health, and the resource
//! handlers. The only module that knows HTTP and `Status`.

mod authz;
mod body;
mod discovery;
mod handlers;
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

use crate::registry::Registry;
use crate::tokens::{AuthenticatorChain, UserInfo};
use crate::wellknown;
use request::RequestInfo;
pub(crate) use status::Status;

/// What the server needs to run; built by `cli`.
pub(crate) struct ServerConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) tls: rustls::ServerConfig,
    /// How long SIGTERM waits for open requests before closing connections.
    pub(crate) shutdown_grace: Duration,
}

/// Shared state of every request handler.
pub(crate) struct AppState {
    pub(crate) registry: Registry,
    pub(crate) authn: AuthenticatorChain,
    pub(crate) openapi: discovery::OpenApi,
    /// `host:port` advertised in legacy `/api` discovery.
    pub(crate) server_address: String,
    /// Flips to true when the server shuts down, so that watches end.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    pub(crate) fn new(
        registry: Registry,
        authn: AuthenticatorChain,
        server_address: String,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        AppState {
            registry,
            authn,
            openapi: discovery::OpenApi::build(),
            server_address,
            shutdown,
        }
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
    let app: App = Arc::new(state);
    let router = Router::new().fallback(dispatch).with_state(app);
    let handle = axum_server::Handle::new();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config.tls));
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
    axum_server::bind_rustls(config.bind, tls)
        .handle(handle)
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
    let (parts, body) = req.into_parts();
    let query = request::parse_query(parts.uri.query());
    let path = parts.uri.path().to_string();
    let info = request::resolve(&parts.method, &path, &query);
    let user = match bearer(&parts.headers) {
        None => anonymous(),
        Some(token) => match app.authn.authenticate(token).await {
            Ok(u) => u,
            Err(reasons) => {
                // The reason stays in the debug log; the client learns only "Unauthorized".
                tracing::debug!(%peer, path = %path, reasons = ?reasons, "authentication failed");
                return Status::unauthorized().into_response();
            }
        },
    };
    if !authz::allowed(&user, &info) {
        tracing::debug!(user = %user.username, path = %path, "forbidden");
        return Status::forbidden(authz::forbidden_message(&user, &info)).into_response();
    }
    let ctx = handlers::Ctx {
        app: &app,
        user: &user,
        headers: &parts.headers,
        query: &query,
        method: &parts.method,
    };
    let response = match &info {
        RequestInfo::NonResource { .. } => {
            non_resource(&app, &parts.method, &path, &parts.headers, &query)
        }
        RequestInfo::Resource(r) => handlers::handle(ctx, r, body).await,
    };
    tracing::debug!(method = %parts.method, path = %path, user = %user.username, code = response.status().as_u16(), "request");
    response
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
    query: &std::collections::HashMap<String, String>,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return Status::method_not_allowed(method.as_str(), path).into_response();
    }
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "/healthz" | "/livez" | "/readyz" => {
            if query.contains_key("verbose") {
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
        "/openapi/v3" => json(StatusCode::OK, &app.openapi.root()),
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
fn openapi_document(
    app: &AppState,
    key: &str,
    query: &std::collections::HashMap<String, String>,
) -> Response {
    let Some((hash, body)) = app.openapi.document(key) else {
        return Status::path_not_found().into_response();
    };
    let mut resp = (StatusCode::OK, body.to_vec()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if query.get("hash").map(String::as_str) == Some(hash) {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
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
