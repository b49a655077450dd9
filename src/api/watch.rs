//! Watch responses: a chunked stream of `{"type":…,"object":…}` lines, one per change,
//! flushed as they happen (`shared/reference/kubectl-wire.md` §3.4, §5.5). Ends when
//! `timeoutSeconds` passes, the client goes away or the server shuts down. A watch that
//! falls behind or starts from a compacted revision ends with an `ERROR` event carrying
//! a 410 `Expired` Status, as kube-apiserver does.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Status;
use super::params::ListParams;
use super::response::TableFormat;
use crate::registry::{EventType, Registry, Resource};

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// kube-apiserver ends watches after a random time between `--min-request-timeout`
/// (1800 s) and twice that, so that clients spread their reconnects.
fn default_timeout() -> Duration {
    use rand::Rng as _;
    Duration::from_secs(rand::rng().random_range(1800..3600))
}

/// A line that is this watcher's own (a bookmark, a Table, an error): not shared.
fn line(kind: &str, object: &Value) -> bytes::Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    bytes::Bytes::from(v)
}

/// Starts a watch of `res` (in `ns`) with already-parsed parameters; `shutdown` turns true
/// when the server stops, which ends the stream.
pub(crate) async fn start(
    registry: Registry,
    shutdown: tokio::sync::watch::Receiver<bool>,
    res: &'static Resource,
    ns: Option<&str>,
    params: ListParams,
    table: Option<TableFormat>,
) -> Result<Response, Status> {
    let timeout = params.timeout.unwrap_or_else(default_timeout);
    let bookmarks = params.allow_watch_bookmarks;
    let start_rv = match params.resource_version.filter(|rv| *rv > 0) {
        Some(rv) => rv,
        None => registry.current_revision().await?,
    };
    let opts = params.options;
    let stream = registry.watch(res, ns, &opts).await?;
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let mut shutdown = shutdown;
    tokio::spawn(pump(
        registry,
        res,
        stream,
        table,
        tx,
        timeout,
        bookmarks,
        start_rv,
        async move {
            // Resolves when the server starts shutting down (or its sender is gone).
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        },
    ));
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    let ct = table
        .map(|t| t.content_type())
        .unwrap_or_else(|| "application/json".to_string());
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    registry: Registry,
    res: &'static Resource,
    mut stream: crate::registry::ObjectStream,
    table: Option<TableFormat>,
    tx: mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    timeout: Duration,
    bookmarks: bool,
    mut last_rv: i64,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    let mut first_table = true;
    loop {
        let chunk = tokio::select! {
            _ = &mut deadline => break,
            _ = &mut shutdown => break,
            _ = tx.closed() => break,
            _ = ticker.tick(), if bookmarks => {
                let obj = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                line("BOOKMARK", &obj)
            }
            next = stream.next() => match next {
                None => break,
                Some(Ok((EventType::Bookmark, obj))) => {
                    let mut obj = std::sync::Arc::unwrap_or_clone(obj);
                    if let Some(rv) = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                        last_rv = rv;
                    }
                    if !bookmarks {
                        continue;
                    }
                    obj["kind"] = json!(res.kind);
                    obj["apiVersion"] = json!(res.api_version());
                    line("BOOKMARK", &obj)
                }
                Some(Ok((kind, obj))) => {
                    let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok());
                    if let Some(rv) = rv {
                        last_rv = rv;
                    }
                    match table {
                        Some(t) => {
                            let mut tbl = t.render(res.kind, std::slice::from_ref(&*obj), registry.clock().now());
                            // Column definitions go with the first event only, as the apiserver does.
                            if !first_table {
                                tbl["columnDefinitions"] = json!([]);
                            }
                            first_table = false;
                            tbl["metadata"] = json!({"resourceVersion": last_rv.to_string()});
                            line(kind.as_str(), &tbl)
                        }
                        // The same bytes for every watcher of this change.
                        None => registry.watch_line(kind, rv, &obj),
                    }
                }
                Some(Err(e)) => {
                    let status: Status = e.into();
                    let _ = tx.send(Ok(line("ERROR", &status.body()))).await;
                    break;
                }
            }
        };
        if tx.send(Ok(chunk)).await.is_err() {
            break;
        }
    }
}
