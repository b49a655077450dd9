//! Request bodies to JSON objects, by Content-Type: JSON, YAML, and the Kubernetes
//! protobuf envelope kubectl's typed commands send (`shared/reference/kubectl-wire.md` §0.2).

use axum::body::Body;
use http::{HeaderMap, header};
use serde_json::Value;

use super::Status;
use super::protobuf::{self, ProtobufError};
use crate::wellknown;

const ACCEPTED: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

/// The media type without parameters, lower-cased.
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body. An empty body is `None` (DELETE without options).
pub(crate) fn decode(headers: &HeaderMap, bytes: &[u8]) -> Result<Option<Value>, Status> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let ct = media_type(headers);
    let value = match ct.as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice::<Value>(bytes).map_err(|e| {
            Status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => yaml(bytes)?,
        "application/vnd.kubernetes.protobuf" => protobuf::decode(bytes).map_err(|e| match e {
            ProtobufError::UnsupportedKind { .. } => {
                Status::unsupported_media_type(&["application/json", "application/yaml"])
            }
            other => Status::bad_request(format!("failed to decode protobuf body: {other}")),
        })?,
        _ => return Err(Status::unsupported_media_type(ACCEPTED)),
    };
    if !value.is_object() {
        return Err(Status::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(Some(value))
}

/// YAML (JSON is YAML too, and is the common case: try it first).
pub(crate) fn yaml(bytes: &[u8]) -> Result<Value, Status> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Ok(v);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Status::bad_request("the body is not valid UTF-8"))?;
    // A repeated key keeps its last value, as Go's YAML decoder does when not strict; field
    // validation decides whether that is an error (`fieldvalidation`).
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::LastWins,
    };
    serde_saphyr::from_str_with_options::<Value>(text, options)
        .map_err(|e| Status::bad_request(format!("error converting YAML to JSON: {e}")))
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
    use http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn decodes_by_content_type() {
        let j = decode(&headers("application/json"), br#"{"a":1}"#)
            .unwrap()
            .unwrap();
        assert_eq!(j["a"], 1);
        let y = decode(&headers("application/yaml"), b"a: 1\nb: [x]\n")
            .unwrap()
            .unwrap();
        assert_eq!(y["b"][0], "x");
        let dup = decode(&headers("application/yaml"), b"a: 1\na: 2\n")
            .unwrap()
            .unwrap();
        assert_eq!(dup["a"], 2, "the last of repeated keys wins");
        assert!(decode(&headers("application/json"), b"").unwrap().is_none());
        let err = decode(&headers("text/html"), b"<p>").unwrap_err();
        assert_eq!(err.code.as_u16(), 415);
        assert_eq!(
            decode(&headers("application/json"), b"[1]")
                .unwrap_err()
                .code
                .as_u16(),
            400
        );
        assert_eq!(
            decode(&headers("application/json"), b"{nope")
                .unwrap_err()
                .code
                .as_u16(),
            400
        );
    }
}
