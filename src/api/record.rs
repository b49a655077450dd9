//! What every finished request leaves behind: its `apiserver_request_*` metrics, its audit
//! event (Metadata level) and a debug log line. The audit filter of the handler chain
//! (`chain.rs`) and the failed-authentication path call [`finish`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use http::{Method, header};

use super::params::Query;
use super::request::RequestInfo;
use super::state::AppState;
use crate::telemetry::audit::{AuditEvent, AuditObjectRef, AuditResponseStatus, AuditUser};
use crate::telemetry::metrics::RequestLabels;
use crate::tokens::UserInfo;
use crate::wellknown;

/// What the record needs of a request, captured before the request is handed on.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub(super) method: Method,
    /// Path and query, as the audit event's `requestURI`.
    pub(super) request_uri: String,
    pub(super) user_agent: String,
    pub(super) peer: SocketAddr,
    /// When the request arrived, on the server clock (`requestReceivedTimestamp`).
    pub(super) received: jiff::Timestamp,
    /// The same moment for measuring the latency.
    pub(super) started: Instant,
}

impl Head {
    pub(super) fn of(req: &Request, received: jiff::Timestamp, started: Instant) -> Head {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        Head {
            method: req.method().clone(),
            request_uri: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            peer,
            received,
            started,
        }
    }
}

/// The request being recorded: its head, what it is about and who made it.
pub(super) struct Subject<'a> {
    pub(super) head: &'a Head,
    pub(super) info: &'a RequestInfo,
    pub(super) query: &'a Query,
    pub(super) user: &'a UserInfo,
    /// The user `Impersonate-*` headers named, when the request was made as another.
    pub(super) impersonated: Option<&'a UserInfo>,
}

/// Records a finished request: metrics, the audit log, the debug log.
pub(super) fn finish(
    app: &AppState,
    subject: &Subject<'_>,
    annotations: BTreeMap<String, String>,
    code: u16,
) {
    let Subject {
        head, info, user, ..
    } = subject;
    let labels = request_labels(&head.method, info, subject.query);
    // A watch's duration is how long it was open; kube-apiserver leaves it out of the
    // latency histogram for the same reason.
    let seconds = head.started.elapsed().as_secs_f64();
    app.tokens.metrics.request(&labels, code, seconds);
    tracing::debug!(method = %head.method, uri = %head.request_uri, user = %user.username, code, "request");
    if let Some(audit) = &app.tokens.audit {
        audit.record(audit_event(app, subject, annotations, code));
    }
}

fn request_labels(method: &Method, info: &RequestInfo, query: &Query) -> RequestLabels {
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
fn audit_event(
    app: &AppState,
    subject: &Subject<'_>,
    annotations: BTreeMap<String, String>,
    code: u16,
) -> AuditEvent {
    let Subject {
        head,
        info,
        user,
        impersonated,
        ..
    } = subject;
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
        request_uri: head.request_uri.clone(),
        verb,
        user: audit_user(user),
        impersonated_user: impersonated.map(audit_user),
        source_ips: vec![head.peer.ip()],
        user_agent: head.user_agent.clone(),
        object_ref,
        response_status: AuditResponseStatus::code(code),
        request_received: head.received,
        stage_timestamp: app.registry.clock().now(),
        annotations,
    }
}

fn audit_user(user: &UserInfo) -> AuditUser {
    AuditUser {
        username: user.username.clone(),
        uid: user.uid.clone(),
        groups: user.groups.clone(),
        extra: user.extra.clone(),
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
        wellknown::OIDC_DISCOVERY_PATH,
        wellknown::OIDC_JWKS_PATH,
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
