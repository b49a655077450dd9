//! The audit log: `audit.k8s.io/v1` Events as JSON lines, what kube-apiserver
//! writes with `--audit-log-path` at level `Metadata`, stage `ResponseComplete`.
//!
//! Owns: the [`AuditEvent`] a request handler fills in, its wire form (field names,
//! field order and JSON escaping of kube-apiserver), and [`AuditLog`], the sink
//! that writes events on its own thread.
//! Must not: block a request (a full queue drops the event and counts it), know
//! HTTP (the `api` module builds the event), or write a credential: no field can
//! hold a header, and JWT-shaped strings are redacted from every line before it
//! is written.
//!
//! Mirrors `staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go` (Event,
//! ObjectReference), `k8s.io/api/authentication/v1` (UserInfo),
//! `audit/request.go` `LogResponseObject` (at Metadata level only the Status
//! fields status/message/reason/details/code are copied) and the log backend
//! `plugin/pkg/audit/log/backend.go`, which writes one `encoding/json` line per
//! event. Like Go's encoder, `<`, `>`, `&`, U+2028 and U+2029 are written as
//! `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029` (a request URI
//! `?limit=500&watch=1` appears as `?limit=500\u0026watch=1`, as in Kubernetes).
//!
//! Differences from kube-apiserver: its log backend blocks requests when the disk
//! is slow (`--audit-log-mode=blocking`, the default); ours never does. There is
//! no rotation (use logrotate with `copytruncate`) and no policy file: every
//! request is logged at Metadata level.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

/// Events that may wait for the writer before new ones are dropped; the default
/// of kube-apiserver's `--audit-log-batch-buffer-size`. Queued events are boxed,
/// so an empty queue costs about 80 KB.
pub(crate) const AUDIT_QUEUE_CAPACITY: usize = 10_000;

/// The writer takes every event already queued into one write, up to this size,
/// so a burst costs one system call and a line is never split across two writes.
const BATCH_BYTES: usize = 64 * 1024;

/// What replaces a JWT-shaped string in a written line.
const REDACTED: &[u8] = b"[REDACTED]";

/// One finished request, as the request handler knows it. Serialized as an
/// `audit.k8s.io/v1` Event at level Metadata, stage ResponseComplete.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AuditEvent {
    /// Also sent to the client as the `Audit-ID` response header.
    pub(crate) audit_id: Uuid,
    /// Path and query as the client sent them.
    pub(crate) request_uri: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`); for a non-resource request the lower-cased
    /// HTTP method.
    pub(crate) verb: String,
    /// The authenticated user; empty (`{}`) when authentication failed.
    pub(crate) user: AuditUser,
    /// The user the request was made as (`Impersonate-User`), if another.
    pub(crate) impersonated_user: Option<AuditUser>,
    /// Kubernetes lists X-Forwarded-For, X-Real-Ip, then the peer address.
    pub(crate) source_ips: Vec<IpAddr>,
    pub(crate) user_agent: String,
    /// Absent for lists of cluster-scoped resources and non-resource requests.
    pub(crate) object_ref: Option<AuditObjectRef>,
    pub(crate) response_status: AuditResponseStatus,
    pub(crate) request_received: Timestamp,
    /// When the response was complete.
    pub(crate) stage_timestamp: Timestamp,
    /// E.g. `authentication.k8s.io/stale-token`, `authorization.k8s.io/decision`.
    pub(crate) annotations: BTreeMap<String, String>,
}

/// `authentication/v1` UserInfo; empty fields are omitted, as in Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct AuditUser {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) extra: BTreeMap<String, Vec<String>>,
}

/// `audit/v1` ObjectReference, fields in Kubernetes' order; empty ones omitted
/// (`apiGroup` is empty for the core group).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) subresource: String,
}

/// The response's `metav1.Status` as the audit log keeps it: for a success only
/// the code; when the handler answered with a Status (errors), also its status
/// (`Failure`), message, reason and details, as `LogResponseObject` copies them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AuditResponseStatus {
    pub(crate) code: u16,
    pub(crate) status: String,
    pub(crate) message: String,
    pub(crate) reason: String,
    /// The Status' `details` object exactly as sent to the client.
    pub(crate) details: Option<serde_json::Value>,
}

impl AuditResponseStatus {
    /// A response that was not a Status object (most successes).
    pub(crate) fn code(code: u16) -> AuditResponseStatus {
        AuditResponseStatus {
            code,
            ..AuditResponseStatus::default()
        }
    }
}

// ---- wire form ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a Uuid,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: &'a AuditUser,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<&'a AuditUser>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    source_ips: Vec<IpAddr>,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<&'a AuditObjectRef>,
    response_status: WireStatus<'a>,
    #[serde(serialize_with = "micro_time")]
    request_received_timestamp: &'a Timestamp,
    #[serde(serialize_with = "micro_time")]
    stage_timestamp: &'a Timestamp,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// `metav1.Status`: `metadata` is a struct in Go, so it is always written (`{}`).
#[derive(Serialize)]
struct WireStatus<'a> {
    metadata: EmptyObject,
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

#[derive(Serialize)]
struct EmptyObject {}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl<'a> WireEvent<'a> {
    fn new(event: &'a AuditEvent) -> WireEvent<'a> {
        let status = &event.response_status;
        WireEvent {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: &event.audit_id,
            stage: "ResponseComplete",
            request_uri: &event.request_uri,
            verb: &event.verb,
            user: &event.user,
            impersonated_user: event.impersonated_user.as_ref(),
            // Go prints an IPv4-mapped IPv6 peer address as plain IPv4.
            source_ips: event.source_ips.iter().map(IpAddr::to_canonical).collect(),
            user_agent: &event.user_agent,
            object_ref: event.object_ref.as_ref(),
            response_status: WireStatus {
                metadata: EmptyObject {},
                status: &status.status,
                message: &status.message,
                reason: &status.reason,
                details: status.details.as_ref(),
                code: status.code,
            },
            request_received_timestamp: &event.request_received,
            stage_timestamp: &event.stage_timestamp,
            annotations: &event.annotations,
        }
    }
}

/// `metav1.MicroTime`: RFC 3339 in UTC with exactly six fractional digits,
/// truncated like Go's `time.Format` (`2026-11-23T00:04:10.123456Z`).
fn micro_time<S: serde::Serializer>(t: &&Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"))
}

/// serde_json's compact output plus the HTML-safe escapes of Go's
/// `encoding/json` (control characters, `"` and `\` are escaped identically).
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Appends `event` as one JSON line to `out`. Returns whether a JWT-shaped
/// string was redacted from it.
fn encode_line(event: &AuditEvent, out: &mut Vec<u8>) -> Result<bool, serde_json::Error> {
    let start = out.len();
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, GoFormatter);
    if let Err(err) = WireEvent::new(event).serialize(&mut serializer) {
        out.truncate(start);
        return Err(err);
    }
    let redacted = match redact_jwts(&out[start..]) {
        Some(clean) => {
            out.truncate(start);
            out.extend_from_slice(&clean);
            true
        }
        None => false,
    };
    out.push(b'\n');
    Ok(redacted)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn base64url_run_end(s: &[u8], from: usize) -> usize {
    from + s.get(from..).map_or(0, |rest| {
        rest.iter().take_while(|b| is_base64url(**b)).count()
    })
}

/// If a compact JWS/JWT starts at `start` (`eyJ...` header, i.e. base64url of
/// `{"`, a payload and a possibly empty signature, dot-separated), its end.
fn jwt_end(s: &[u8], start: usize) -> Option<usize> {
    // A JWS header names at least its "alg": `{"alg":"none"}` is 19 characters.
    const MIN_HEADER: usize = 12;
    const MIN_PAYLOAD: usize = 2;
    let header_end = base64url_run_end(s, start);
    if header_end - start < MIN_HEADER || s.get(header_end) != Some(&b'.') {
        return None;
    }
    let payload_end = base64url_run_end(s, header_end + 1);
    if payload_end - (header_end + 1) < MIN_PAYLOAD || s.get(payload_end) != Some(&b'.') {
        return None;
    }
    Some(base64url_run_end(s, payload_end + 1))
}

/// `line` with every JWT-shaped string replaced by `[REDACTED]`, or `None` if it
/// has none. A serialized line holds base64url text unescaped, so scanning the
/// JSON finds a token in any field. The `eyJ` prefix has an upper-case letter,
/// which no Kubernetes object name (DNS-1123) can contain.
fn redact_jwts(line: &[u8]) -> Option<Vec<u8>> {
    let mut clean: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(offset) = line.get(i..).and_then(|rest| find(rest, b"eyJ")) {
        let start = i + offset;
        match jwt_end(line, start) {
            Some(end) => {
                let out = clean.get_or_insert_with(|| Vec::with_capacity(line.len()));
                out.extend_from_slice(&line[copied..start]);
                out.extend_from_slice(REDACTED);
                copied = end;
                i = end;
            }
            None => i = start + 1,
        }
    }
    clean.map(|mut out| {
        out.extend_from_slice(&line[copied..]);
        out
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- the sink ----

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    write_errors: AtomicU64,
    redacted: AtomicU64,
}

/// Adds one to `counter` and returns the new value.
fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// The audit log sink. [`AuditLog::record`] queues an event and returns at once; a
/// writer thread serializes queued events and appends them to the file, writing
/// as soon as the queue is empty (a reader tailing the file sees an event within
/// milliseconds). [`AuditLog::close`], or dropping the value, writes what is
/// queued and stops the thread.
#[derive(Debug)]
pub(crate) struct AuditLog {
    /// `None` once closed. Readers (every `record`) share the lock; only `close`
    /// and `drop` take it exclusively.
    sender: RwLock<Option<SyncSender<Box<AuditEvent>>>>,
    counters: Arc<Counters>,
    /// Becomes `true` when the writer has written everything and stopped.
    finished: watch::Receiver<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Opens `path` for appending, creating it with mode 0600 (an existing file
    /// keeps its mode); the parent directory must exist. `-` means standard
    /// output, as for kube-apiserver's `--audit-log-path`.
    pub(crate) fn open(path: &Path) -> io::Result<AuditLog> {
        if path == Path::new("-") {
            return AuditLog::with_writer(Box::new(io::stdout()), AUDIT_QUEUE_CAPACITY);
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        AuditLog::with_writer(Box::new(file), AUDIT_QUEUE_CAPACITY)
    }

    /// A sink writing to `out`, holding at most `capacity` unwritten events.
    pub(crate) fn with_writer(out: Box<dyn Write + Send>, capacity: usize) -> io::Result<AuditLog> {
        // A zero capacity would make every try_send fail unless the writer
        // happened to be waiting.
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let (finished_tx, finished) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let writer = std::thread::Builder::new()
            .name("audit-log".to_owned())
            .spawn({
                let counters = Arc::clone(&counters);
                move || {
                    write_events(&receiver, out, &counters);
                    finished_tx.send_replace(true);
                }
            })?;
        Ok(AuditLog {
            sender: RwLock::new(Some(sender)),
            counters,
            finished,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues `event` for writing. Never blocks: when the queue is full (the disk
    /// is slower than the request rate) or the log is closed, the event is
    /// dropped and counted in [`AuditLog::dropped`].
    pub(crate) fn record(&self, event: AuditEvent) {
        let queued = {
            // A poisoned lock still holds a valid sender (or None).
            let sender = self.sender.read().unwrap_or_else(PoisonError::into_inner);
            sender
                .as_ref()
                .is_some_and(|s| s.try_send(Box::new(event)).is_ok())
        };
        if !queued {
            let dropped = bump(&self.counters.dropped);
            // Powers of two: the first drop is logged at once, a flood is not.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped_total = dropped,
                    "audit log queue full or closed; dropping audit events"
                );
            }
        }
    }

    /// Events dropped so far because the queue was full or the log closed.
    pub(crate) fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Failed writes so far (each may have lost a batch of lines).
    pub(crate) fn write_errors(&self) -> u64 {
        self.counters.write_errors.load(Ordering::Relaxed)
    }

    /// Stops accepting events, writes everything queued, and returns when the
    /// writer thread has finished. Later `record` calls count as dropped.
    pub(crate) async fn close(&self) {
        // Dropping the only sender ends the writer once the queue is drained.
        drop(
            self.sender
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut finished = self.finished.clone();
        // An error means the writer thread ended without reporting (it
        // panicked); there is nothing left to wait for either way.
        let _ = finished.wait_for(|done| *done).await;
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            // The thread has reported its last action, so this returns at once.
            let _ = writer.join();
        }
    }
}

impl Drop for AuditLog {
    /// Writes what is queued before returning: prefer `close().await` on an
    /// async task, as this waits for the writer thread.
    fn drop(&mut self) {
        drop(
            self.sender
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// The writer thread: runs until every sender is gone and the queue is empty.
fn write_events(
    receiver: &Receiver<Box<AuditEvent>>,
    mut out: Box<dyn Write + Send>,
    counters: &Counters,
) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(first) = receiver.recv() {
        add_to_batch(&first, &mut batch, counters);
        let mut open = true;
        while batch.len() < BATCH_BYTES {
            match receiver.try_recv() {
                Ok(event) => add_to_batch(&event, &mut batch, counters),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Written as soon as the queue is empty: no timer, so a tailing reader
        // sees an event as soon as the thread is scheduled.
        if let Err(err) = out.write_all(&batch).and_then(|()| out.flush()) {
            let failures = bump(&counters.write_errors);
            if failures.is_power_of_two() {
                tracing::warn!(error = %err, failures, "writing the audit log failed");
            }
        }
        batch.clear();
        if !open {
            break;
        }
    }
}

fn add_to_batch(event: &AuditEvent, batch: &mut Vec<u8>, counters: &Counters) {
    match encode_line(event, batch) {
        Ok(false) => {}
        Ok(true) => {
            let redacted = bump(&counters.redacted);
            if redacted.is_power_of_two() {
                // The audit ID finds the request; the token itself is never logged.
                tracing::warn!(
                    audit_id = %event.audit_id,
                    redacted_total = redacted,
                    "redacted a bearer token from an audit event"
                );
            }
        }
        Err(err) => {
            // Unreachable with these types (string map keys, no fallible
            // Serialize impls); counted so it could not go unnoticed.
            let failures = bump(&counters.write_errors);
            if failures.is_power_of_two() {
                tracing::warn!(error = %err, "serializing an audit event failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn line(event: &AuditEvent) -> String {
        let mut out = Vec::new();
        encode_line(event, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn token_request_event() -> AuditEvent {
        AuditEvent {
            audit_id: Uuid::parse_str("5b0d3f4e-8c1a-4f7e-9d2b-6a1c0e9f8b7a").unwrap(),
            request_uri:
                "/api/v1/namespaces/default/serviceaccounts/example-sa/token?dryRun=All&x=<y>"
                    .into(),
            verb: "create".into(),
            user: AuditUser {
                username: "system:serviceaccount:kube-system:builder".into(),
                uid: "0b9e4a52-3d0e-4a8f-a1f3-2c1d9e8b7a65".into(),
                groups: vec![
                    "system:serviceaccounts".into(),
                    "system:serviceaccounts:kube-system".into(),
                    "system:authenticated".into(),
                ],
                extra: BTreeMap::from([
                    (
                        "authentication.kubernetes.io/pod-name".into(),
                        vec!["builder-7d4b9".into()],
                    ),
                    (
                        "authentication.kubernetes.io/credential-id".into(),
                        vec!["JTI=3f2c1b0a-9e8d-4c7b-a6f5-e4d3c2b1a098".into()],
                    ),
                ]),
            },
            impersonated_user: None,
            source_ips: vec![
                "::ffff:10.0.0.7".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            user_agent: "kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9".into(),
            object_ref: Some(AuditObjectRef {
                resource: "serviceaccounts".into(),
                namespace: "default".into(),
                name: "example-sa".into(),
                api_version: "v1".into(),
                subresource: "token".into(),
                ..AuditObjectRef::default()
            }),
            response_status: AuditResponseStatus::code(201),
            request_received: Timestamp::new(1_795_392_250, 123_456_789).unwrap(),
            stage_timestamp: Timestamp::new(1_795_392_250, 127_000_999).unwrap(),
            annotations: BTreeMap::from([
                ("authorization.k8s.io/reason".into(), String::new()),
                ("authorization.k8s.io/decision".into(), "allow".into()),
                (
                    crate::wellknown::AUDIT_ISSUED_CREDENTIAL_ID.into(),
                    "JTI=9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a".into(),
                ),
            ]),
        }
    }

    #[test]
    fn event_json_has_kubernetes_field_order_and_escaping() {
        let expected = concat!(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","#,
            r#""auditID":"5b0d3f4e-8c1a-4f7e-9d2b-6a1c0e9f8b7a","stage":"ResponseComplete","#,
            r#""requestURI":"/api/v1/namespaces/default/serviceaccounts/example-sa/token?dryRun=All\u0026x=\u003cy\u003e","#,
            r#""verb":"create","#,
            r#""user":{"username":"system:serviceaccount:kube-system:builder","uid":"0b9e4a52-3d0e-4a8f-a1f3-2c1d9e8b7a65","#,
            r#""groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"],"#,
            r#""extra":{"authentication.kubernetes.io/credential-id":["JTI=3f2c1b0a-9e8d-4c7b-a6f5-e4d3c2b1a098"],"#,
            r#""authentication.kubernetes.io/pod-name":["builder-7d4b9"]}},"#,
            r#""sourceIPs":["10.0.0.7","2001:db8::1"],"#,
            r#""userAgent":"kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9","#,
            r#""objectRef":{"resource":"serviceaccounts","namespace":"default","name":"example-sa","apiVersion":"v1","subresource":"token"},"#,
            r#""responseStatus":{"metadata":{},"code":201},"#,
            r#""requestReceivedTimestamp":"2026-11-23T00:04:10.123456Z","#,
            r#""stageTimestamp":"2026-11-23T00:04:10.127000Z","#,
            r#""annotations":{"authentication.kubernetes.io/issued-credential-id":"JTI=9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a","#,
            r#""authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#,
            "\n"
        );
        assert_eq!(line(&token_request_event()), expected);
    }

    #[test]
    fn failure_status_and_empty_fields_are_shaped_like_kubernetes() {
        let event = AuditEvent {
            audit_id: Uuid::nil(),
            request_uri: "/api/v1/namespaces/default/serviceaccounts/missing/token".into(),
            verb: "create".into(),
            source_ips: vec!["127.0.0.1".parse().unwrap()],
            object_ref: Some(AuditObjectRef {
                resource: "serviceaccounts".into(),
                namespace: "default".into(),
                name: "missing".into(),
                api_version: "v1".into(),
                subresource: "token".into(),
                ..AuditObjectRef::default()
            }),
            response_status: AuditResponseStatus {
                code: 404,
                status: "Failure".into(),
                message: "serviceaccounts \"missing\" not found".into(),
                reason: "NotFound".into(),
                details: Some(serde_json::json!({"name": "missing", "kind": "serviceaccounts"})),
            },
            request_received: Timestamp::UNIX_EPOCH,
            stage_timestamp: Timestamp::UNIX_EPOCH,
            ..AuditEvent::default()
        };
        let text = line(&event);
        assert!(
            text.contains(r#""verb":"create","user":{},"sourceIPs":["127.0.0.1"],"objectRef":"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#""responseStatus":{"metadata":{},"status":"Failure","message":"serviceaccounts \"missing\" not found","reason":"NotFound","details":{"name":"missing","kind":"serviceaccounts"},"code":404},"#
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\"stageTimestamp\":\"1970-01-01T00:00:00.000000Z\"}\n"),
            "{text}"
        );
        assert!(!text.contains("userAgent"), "{text}");
        assert!(!text.contains("annotations"), "{text}");
        assert!(!text.contains("impersonatedUser"), "{text}");
    }

    #[test]
    fn impersonated_user_follows_user() {
        let mut event = token_request_event();
        event.impersonated_user = Some(AuditUser {
            username: "jane".into(),
            groups: vec!["system:authenticated".into()],
            ..AuditUser::default()
        });
        let text = line(&event);
        assert!(
            text.contains(
                r#""impersonatedUser":{"username":"jane","groups":["system:authenticated"]},"sourceIPs":"#
            ),
            "{text}"
        );
    }

    #[test]
    fn micro_time_truncates_to_microseconds() {
        let event = AuditEvent {
            request_received: Timestamp::new(1_795_392_250, 999_999_999).unwrap(),
            stage_timestamp: Timestamp::new(1_795_392_250, 5_000).unwrap(),
            ..AuditEvent::default()
        };
        let text = line(&event);
        assert!(
            text.contains(r#""requestReceivedTimestamp":"2026-11-23T00:04:10.999999Z""#),
            "{text}"
        );
        assert!(
            text.contains(r#""stageTimestamp":"2026-11-23T00:04:10.000005Z""#),
            "{text}"
        );
    }

    const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpzYSJ9.c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn jwt_shaped_strings_never_reach_the_log() {
        let mut event = token_request_event();
        event.request_uri = format!("/api/v1/namespaces?access_token={JWT}&x=1");
        event.user_agent = format!("curl/8 {JWT}");
        event
            .annotations
            .insert("example.com/oops".into(), format!("Bearer {JWT}"));
        // An unsigned (alg none) token has an empty third part.
        let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
        event.user.extra.insert("x".into(), vec![unsigned.into()]);
        let text = line(&event);
        assert!(!text.contains("eyJ"), "{text}");
        assert_eq!(text.matches("[REDACTED]").count(), 4, "{text}");
        assert!(
            text.contains(r#"access_token=[REDACTED]\u0026x=1"#),
            "{text}"
        );
        assert!(text.contains(r#""curl/8 [REDACTED]""#), "{text}");
        // Still one valid JSON object.
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed["annotations"]["example.com/oops"],
            "Bearer [REDACTED]"
        );
    }

    #[test]
    fn ordinary_values_are_not_redacted() {
        assert_eq!(redact_jwts(b"eyJ.a.b and eyJshort.xy.z"), None);
        assert_eq!(redact_jwts(b"system:serviceaccount:default:sa"), None);
        assert_eq!(
            redact_jwts(format!("a{JWT}.b").as_bytes()).as_deref(),
            Some(&b"a[REDACTED].b"[..])
        );
    }

    fn read_lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn file_is_created_0600_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.record(token_request_event());
        log.close().await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second open appends rather than truncating.
        let log = AuditLog::open(&path).unwrap();
        log.record(token_request_event());
        log.close().await;
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], lines[1]);
        assert_eq!(format!("{}\n", lines[0]), line(&token_request_event()));
    }

    #[test]
    fn open_needs_an_existing_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = AuditLog::open(&dir.path().join("missing/audit.log")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_all_land_as_valid_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let mut event = token_request_event();
                        event.audit_id = Uuid::new_v4();
                        log.record(event);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.close().await;
        assert_eq!(log.dropped(), 0);
        assert_eq!(log.write_errors(), 0);
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 4000);
        let mut ids = std::collections::HashSet::new();
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["kind"], "Event");
            ids.insert(v["auditID"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids.len(), 4000);
        // Closed: later events are dropped, not written.
        log.record(token_request_event());
        assert_eq!(log.dropped(), 1);
        assert_eq!(read_lines(&path).len(), 4000);
    }

    /// A writer that hands every write to the test.
    struct ChannelWriter(mpsc::Sender<Vec<u8>>);

    impl Write for ChannelWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .send(buf.to_vec())
                .map_err(|_| io::Error::other("test ended"))?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_is_written_without_waiting_for_more_or_for_close() {
        let (tx, rx) = mpsc::channel();
        let log = AuditLog::with_writer(Box::new(ChannelWriter(tx)), 16).unwrap();
        log.record(token_request_event());
        // No close, no drop, no further events: the writer writes the line on its
        // own (`open` hands it an unbuffered File, so a tailing reader sees it).
        // The timeout only turns a bug into a failure instead of a hang.
        let written = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            line(&token_request_event())
        );
        drop(log);
    }

    #[test]
    fn drop_writes_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for _ in 0..300 {
            log.record(token_request_event());
        }
        drop(log);
        assert_eq!(read_lines(&path).len(), 300);
    }

    /// A writer that blocks in its first write until released.
    struct GateWriter {
        entered: Option<mpsc::Sender<()>>,
        release: Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GateWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(entered) = self.entered.take() {
                entered.send(()).unwrap();
                self.release.recv().unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_blocking() {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let gate = GateWriter {
            entered: Some(entered_tx),
            release: release_rx,
            written: Arc::clone(&written),
        };
        let log = AuditLog::with_writer(Box::new(gate), 4).unwrap();
        // 1. The writer takes the first event and blocks writing it.
        log.record(token_request_event());
        entered_rx.recv().unwrap();
        // 2. The queue, now empty, takes exactly its capacity.
        for _ in 0..4 {
            log.record(token_request_event());
        }
        assert_eq!(log.dropped(), 0);
        // 3. Further events return at once and are counted as dropped (if
        //    record blocked, this test would hang here).
        for _ in 0..3 {
            log.record(token_request_event());
        }
        assert_eq!(log.dropped(), 3);
        // 4. Released, the writer writes the five accepted events.
        release_tx.send(()).unwrap();
        log.close().await;
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 5);
    }
}
