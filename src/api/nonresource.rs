//! Paths outside the resource tree: health, `/version`, `/metrics`, the OIDC documents,
//! discovery (`/api`, `/apis`, ...) and the OpenAPI documents (`/openapi/v2`, `/openapi/v3`).

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::params::Query;
use super::response::{accept, json, json_typed, text};
use super::state::AppState;
use super::{Status, discovery};
use crate::wellknown;

/// `/healthz`, `/livez` and `/readyz` as kube-apiserver's `healthz` handler answers them:
/// `ok`, or the list of checks; a failing check makes a 500 with the list and the reason
/// withheld (it is logged when the check starts failing). The store is not part of `/livez`:
/// restarting the server would not bring etcd back.
fn health(app: &AppState, check: &str, verbose: bool) -> Response {
    let mut lines = String::from("[+]ping ok\n[+]log ok\n");
    let store = &app.store_health;
    let failed = check != "livez" && store.failure.borrow().is_some();
    if check != "livez" {
        match failed {
            true => lines.push_str(&format!("[-]{} failed: reason withheld\n", store.name)),
            false => lines.push_str(&format!("[+]{} ok\n", store.name)),
        }
    }
    if failed {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{lines}{check} check failed\n"),
        )
    } else if verbose {
        text(StatusCode::OK, format!("{lines}{check} check passed\n"))
    } else {
        text(StatusCode::OK, "ok".to_string())
    }
}

pub(super) fn non_resource(
    app: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &Query,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return Status::method_not_allowed().into_response();
    }
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "/healthz" | "/livez" | "/readyz" => health(app, &trimmed[1..], query.contains("verbose")),
        "/version" => json(StatusCode::OK, &discovery::version()),
        "/metrics" => {
            let (body, content_type) = app.tokens.metrics.render();
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        wellknown::OIDC_DISCOVERY_PATH | wellknown::OIDC_JWKS_PATH => {
            let Some(publisher) = &app.tokens.oidc else {
                return Status::path_not_found().into_response();
            };
            let d = publisher.documents();
            let (body, content_type) = if trimmed == wellknown::OIDC_JWKS_PATH {
                (d.jwks, "application/jwk-set+json")
            } else {
                (d.configuration, "application/json")
            };
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // Relying parties may cache for an hour, as kube-apiserver allows: a rotation
            // publishes a key `--publish-ahead` (24 h) before it signs, so a cached copy has it.
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
        "/openapi/v3" => json(StatusCode::OK, &app.openapi().v3_root()),
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
fn openapi_document(app: &AppState, key: &str, query: &Query) -> Response {
    let Some(doc) = app.openapi().v3_document(key) else {
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
        &app.openapi().v2_json
    } else {
        &app.openapi().v2_proto
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
