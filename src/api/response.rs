//! Building answers: JSON with Kubernetes' headers, `Warning` headers, audit annotations a
//! handler hands to the audit filter, `?pretty` indentation, and the Table content
//! negotiation of reads (which Table version a client asked for).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::Status;
use super::params::Query;
use super::table::{self, IncludeObject};

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

pub(super) fn text(code: StatusCode, body: String) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(super) fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A complete JSON answer re-written indented (`?pretty=true`); streams (watches) and
/// other media types pass unchanged.
pub(super) async fn indent_json(response: Response) -> Response {
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

/// Which Table version the client asked for, if any (`as=Table;g=meta.k8s.io;v=v1`).
fn wants_table(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())?;
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
            if p.contains("v=v1beta1") {
                return Some("v1beta1");
            }
            if p.contains("v=v1") {
                return Some("v1");
            }
        }
    }
    None
}

/// Table rendering chosen for a read: version and what each row carries.
#[derive(Clone, Copy)]
pub(crate) struct TableFormat {
    version: &'static str,
    include: IncludeObject,
}

impl TableFormat {
    /// The Table asked for by `Accept` (`as=Table;g=meta.k8s.io;v=v1`) and
    /// `?includeObject=`, if any.
    pub(crate) fn from_request(
        headers: &HeaderMap,
        query: &Query,
    ) -> Result<Option<TableFormat>, Status> {
        let Some(version) = wants_table(headers) else {
            return Ok(None);
        };
        let include =
            IncludeObject::parse(query.get("includeObject")).map_err(Status::bad_request)?;
        Ok(Some(TableFormat { version, include }))
    }

    pub(crate) fn render(&self, kind: &str, objects: &[Value], now: jiff::Timestamp) -> Value {
        let mut t = table::table(kind, objects, now, self.include);
        t["apiVersion"] = json!(format!("meta.k8s.io/{}", self.version));
        t
    }

    pub(crate) fn content_type(&self) -> String {
        format!("application/json;as=Table;v={};g=meta.k8s.io", self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_accept() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert_eq!(wants_table(&h), Some("v1"));
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(wants_table(&h), None);
    }
}
