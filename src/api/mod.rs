//! The HTTPS API server: TLS, authentication and authorization of every request,
//! routing by Kubernetes path rules, discovery, OpenAPI, health, and the resource
//! handlers. The only module that knows HTTP and `Status`.
//!
//! A request crosses, in order: the listener (`listener.rs`: TLS, timeouts, the connection
//! cap), the handler chain (`chain.rs`: request info, authentication, audit, impersonation,
//! max-in-flight, authorization, as kube-apiserver's `DefaultBuildHandlerChain`), then one
//! handler: `handlers.rs` for the resource tree (with `watch.rs`, `patch.rs`, `params.rs`)
//! or `nonresource.rs` for everything else.

mod authz;
mod body;
mod chain;
mod discovery;
mod fieldvalidation;
mod handlers;
mod impersonation;
mod inflight;
mod listener;
mod nonresource;
mod openapi;
mod openapi_proto;
mod params;
pub(crate) mod patch;
pub(crate) mod protobuf;
mod record;
mod request;
mod response;
mod reviews;
mod state;
mod status;
pub(crate) mod table;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) use listener::raise_open_file_limit;
pub(crate) use response::{AuditAnnotations, add_warning, json, json_typed};
pub(crate) use state::{AppState, ServerConfig, StoreHealth, TokenServices};
pub(crate) use status::Status;

/// The longest request URI (path and query) answered; longer ones get a 414 `Status`.
/// Just under hyper's own HTTP/1.1 limit (64 KiB), past which hyper answers a bare 414.
pub(crate) const MAX_URI_BYTES: usize = 60 << 10;
/// The largest request head (URI and headers), as Go's `http.DefaultMaxHeaderBytes` that
/// kube-apiserver keeps; larger heads get a 431 `Status`.
pub(crate) const MAX_HEADER_BYTES: usize = 1 << 20;

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
    let router = chain::handler_chain(Arc::new(state));
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
