//! The state every request shares, and the configuration `cli` builds for the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{inflight, openapi};
use crate::admission::{AutomountMode, ServiceAccountAdmission};
use crate::rbac::Authorizer;
use crate::registry::Registry;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;
use crate::tokens::issuer::Issuer;
use crate::tokens::{AuthenticatorChain, oidc};

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

/// Shared state of every request handler.
pub(crate) struct AppState {
    pub(crate) registry: Registry,
    pub(crate) authn: AuthenticatorChain,
    /// The OpenAPI documents, built by the first request that needs them: tens of
    /// milliseconds of schema generation and a few megabytes that neither start-up nor a
    /// server that no kubectl asks for OpenAPI should pay.
    openapi: std::sync::OnceLock<openapi::OpenApi>,
    /// `host:port` advertised in legacy `/api` discovery.
    pub(crate) server_address: String,
    /// Flips to true when the server shuts down, so that watches end.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Token issuance, OIDC documents, metrics and the audit log.
    pub(crate) tokens: TokenServices,
    /// ServiceAccount admission of new Pods.
    pub(crate) admission: ServiceAccountAdmission,
    /// Who may do what (every request, the access reviews, writes of the policy).
    pub(crate) authorizer: Arc<Authorizer>,
    /// The max-in-flight pools (set from [`ServerConfig`] when serving starts).
    pub(super) inflight: inflight::InFlight,
    /// The store's check in `/readyz` and `/healthz`.
    pub(crate) store_health: StoreHealth,
}

/// The store's health check: its name in `/readyz?verbose` (`etcd`, as kube-apiserver names
/// it, or `store`) and the latest probe's failure, if any (`None`: healthy).
#[derive(Debug, Clone)]
pub(crate) struct StoreHealth {
    pub(crate) name: &'static str,
    pub(crate) failure: tokio::sync::watch::Receiver<Option<String>>,
}

impl StoreHealth {
    /// A check that always passes (a store that is part of the process).
    pub(crate) fn always_ok(name: &'static str) -> Self {
        StoreHealth {
            name,
            failure: tokio::sync::watch::channel(None).1,
        }
    }
}

/// The parts of [`AppState`] that `server` wires in beyond the basics.
pub(crate) struct TokenServices {
    /// Issues TokenRequests; `None` when no signing key is configured.
    pub(crate) issuer: Option<Arc<Issuer>>,
    /// `--api-audiences`, the default audiences of a TokenReview.
    pub(crate) api_audiences: Vec<String>,
    /// OIDC discovery documents; `None` when the issuer is not an https URL.
    pub(crate) oidc: Option<oidc::Publisher>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) automount: AutomountMode,
}

impl AppState {
    pub(crate) fn openapi(&self) -> &openapi::OpenApi {
        self.openapi.get_or_init(openapi::OpenApi::build)
    }

    pub(crate) fn new(
        registry: Registry,
        authn: AuthenticatorChain,
        server_address: String,
        shutdown: tokio::sync::watch::Receiver<bool>,
        tokens: TokenServices,
        authorizer: Arc<Authorizer>,
    ) -> Self {
        AppState {
            authorizer,
            admission: ServiceAccountAdmission::new(registry.clone(), tokens.automount),
            registry,
            authn,
            openapi: std::sync::OnceLock::new(),
            server_address,
            shutdown,
            tokens,
            inflight: inflight::InFlight::new(0, 0),
            store_health: StoreHealth::always_ok("store"),
        }
    }

    pub(crate) fn with_store_health(mut self, health: StoreHealth) -> Self {
        self.store_health = health;
        self
    }
}

pub(crate) type App = Arc<AppState>;
