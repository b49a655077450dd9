//! Issue 13's behaviours at scale, for correctness (never timed, STYLE.md): 1 000 watchers
//! each receive every event of a 10 000-write burst, in order, none lost and none twice; a
//! watcher that stops reading is cut off with a 410 once it falls out of the kept history,
//! while one that reads goes on; 100 000 objects list exactly in pages of 500 at one
//! revision while writes go on. Driven by the `kube` client from crates.io, and a raw TLS
//! socket where a client must misbehave on purpose.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::{Server, or_die};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WATCHERS: usize = 1_000;
const BURST: usize = 10_000;
const OBJECTS: usize = 100_000;
/// Writers in parallel when filling the store.
const WRITERS: usize = 16;
/// Long enough for a debug build on two shared cores; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(900);

fn runtime() -> tokio::runtime::Runtime {
    or_die(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "build a runtime",
    )
}

async fn client(s: &Server) -> kube::Client {
    let kc = or_die(
        kube::config::Kubeconfig::read_from(s.kubeconfig()),
        "read the kubeconfig",
    );
    let config = or_die(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await,
        "load the kubeconfig",
    );
    or_die(kube::Client::try_from(config), "build the client")
}

/// Creates namespace `ns` and waits for its `default` ServiceAccount, so that the
/// controllers' own writes are over before a test starts counting.
async fn namespace(s: &Server, client: &kube::Client, ns: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let body: Namespace = or_die(
        serde_json::from_value(json!({"metadata": {"name": ns}})),
        "namespace body",
    );
    or_die(
        nss.create(&PostParams::default(), &body).await,
        format!("create namespace {ns}"),
    );
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    for _ in 0..500 {
        if sas.get_opt("default").await.ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.fail(format!("no default ServiceAccount in {ns}"));
}

/// The list's resourceVersion: where a watch of everything after it starts.
async fn list_rv(client: &kube::Client, ns: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let list = or_die(sas.list(&ListParams::default().limit(1)).await, "list");
    list.metadata.resource_version.unwrap_or_default()
}

fn service_account(name: &str, padding: usize) -> ServiceAccount {
    let mut annotations = serde_json::Map::new();
    if padding > 0 {
        annotations.insert("padding".into(), json!("x".repeat(padding)));
    }
    or_die(
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}})),
        "service account body",
    )
}

/// Creates `names` in `ns` over [`WRITERS`] requests at a time.
async fn create_all(client: &kube::Client, ns: &str, names: Vec<String>, padding: usize) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(names)
        .map(|name| {
            let sas = sas.clone();
            async move {
                let body = service_account(&name, padding);
                sas.create(&PostParams::default(), &body)
                    .await
                    .map_err(|e| format!("create {name}: {e}"))
            }
        })
        .buffer_unordered(WRITERS)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// What one watch line says: its type, the object's name and resourceVersion. Read by
/// search, not parsed: a test process that parses ten million lines would be the bottleneck.
fn event_of(line: &str) -> (String, String, i64) {
    let after = |from: &str, marker: &str| -> String {
        from.find(marker)
            .map(|i| &from[i + marker.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_owned()
    };
    let metadata = line.find("\"metadata\":{").map_or("", |i| &line[i..]);
    let rv = after(metadata, "\"resourceVersion\":\"")
        .parse()
        .unwrap_or(-1);
    (
        after(line, "{\"type\":\""),
        after(metadata, "\"name\":\""),
        rv,
    )
}

/// Reads one watch until `want` events came; returns them, or what went wrong.
async fn watch_until(
    client: kube::Client,
    ns: String,
    rv: String,
    want: usize,
) -> Result<Vec<(String, i64)>, String> {
    let uri = format!(
        "/api/v1/namespaces/{ns}/serviceaccounts?watch=true&resourceVersion={rv}&timeoutSeconds=1800"
    );
    let request = http::Request::get(uri)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let stream = client
        .request_stream(request)
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let mut lines = stream.lines();
    let mut seen = Vec::with_capacity(want);
    while seen.len() < want {
        let line = match lines.next().await {
            Some(Ok(line)) => line,
            Some(Err(e)) => return Err(format!("after {} events: {e}", seen.len())),
            None => return Err(format!("the watch ended after {} events", seen.len())),
        };
        let (kind, name, rv) = event_of(&line);
        if kind != "ADDED" {
            return Err(format!("after {} events: {line}", seen.len()));
        }
        seen.push((name, rv));
    }
    Ok(seen)
}

#[test]
fn a_thousand_watchers_each_see_every_event_of_a_ten_thousand_write_burst() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let s = Server::start();
    runtime().block_on(async {
        let client = client(&s).await;
        namespace(&s, &client, "burst").await;
        let rv = list_rv(&client, "burst").await;
        // Every watcher is open (its response headers came) before the first write.
        let mut watchers = Vec::with_capacity(WATCHERS);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(WATCHERS);
        for _ in 0..WATCHERS {
            let (client, rv, ready) = (client.clone(), rv.clone(), ready_tx.clone());
            watchers.push(tokio::spawn(async move {
                let _ = ready.send(()).await;
                watch_until(client, "burst".into(), rv, BURST).await
            }));
        }
        for _ in 0..WATCHERS {
            ready_rx.recv().await;
        }
        let names: Vec<String> = (0..BURST).map(|i| format!("sa-{i:05}")).collect();
        create_all(&client, "burst", names.clone(), 0).await;
        let expected: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut failures = Vec::new();
        for (i, watcher) in watchers.into_iter().enumerate() {
            let seen = match tokio::time::timeout(PATIENCE, watcher).await {
                Ok(Ok(Ok(seen))) => seen,
                Ok(Ok(Err(e))) => {
                    failures.push(format!("watcher {i}: {e}"));
                    continue;
                }
                other => s.fail(format!("watcher {i} hung or panicked: {other:?}")),
            };
            let in_order = seen.windows(2).all(|w| w[0].1 < w[1].1);
            let names: BTreeSet<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
            if !in_order || names != expected {
                failures.push(format!(
                    "watcher {i}: {} events, {} distinct names, in order: {in_order}",
                    seen.len(),
                    names.len()
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {WATCHERS} watchers missed events:\n{}\n{}",
            failures.len(),
            failures.join("\n"),
            s.report()
        );
    });
}

/// A watch on a raw TLS socket with a small receive buffer, which the test stops reading.
async fn raw_watch(
    s: &Server,
    path: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let ca = or_die(std::fs::read(s.data_dir().join("ca.crt")), "read ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        or_die(roots.add(or_die(cert, "parse ca.crt")), "trust ca.crt");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = or_die(
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions(),
        "TLS versions",
    )
    .with_root_certificates(roots)
    .with_no_client_auth();
    let socket = or_die(tokio::net::TcpSocket::new_v4(), "socket");
    or_die(socket.set_recv_buffer_size(4096), "SO_RCVBUF");
    let addr = format!("127.0.0.1:{}", s.port());
    let tcp = or_die(
        socket.connect(or_die(addr.parse(), "address")).await,
        "connect",
    );
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = or_die(
        rustls::pki_types::ServerName::try_from("127.0.0.1"),
        "server name",
    );
    let mut tls = or_die(connector.connect(name, tcp).await, "TLS handshake");
    let token = or_die(
        std::fs::read_to_string(s.data_dir().join("admin.token")),
        "token",
    );
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
        token.trim()
    );
    or_die(tls.write_all(request.as_bytes()).await, "send the watch");
    tls
}

#[test]
fn a_watcher_that_stops_reading_is_cut_off_with_410_while_a_reader_goes_on() {
    let s = Server::start();
    runtime().block_on(async {
        let client = client(&s).await;
        namespace(&s, &client, "slow").await;
        let rv = list_rv(&client, "slow").await;
        let path = format!("/api/v1/namespaces/slow/serviceaccounts?watch=true&resourceVersion={rv}");
        let mut slow = raw_watch(&s, &path).await;
        // 100 KiB objects: the history's 8 MiB bound, the socket buffers and the server's
        // queue are all overrun by a few hundred writes.
        const WRITES: usize = 400;
        let reader = tokio::spawn(watch_until(client.clone(), "slow".into(), rv, WRITES));
        let names: Vec<String> = (0..WRITES).map(|i| format!("big-{i:03}")).collect();
        create_all(&client, "slow", names, 100 << 10).await;
        let seen = match tokio::time::timeout(PATIENCE, reader).await {
            Ok(Ok(Ok(seen))) => seen,
            other => s.fail(format!("the reading watcher failed: {other:?}")),
        };
        assert_eq!(seen.len(), WRITES);
        // The slow watcher now reads: some events, then a 410 Expired, then the end of the
        // response (the last chunk; the connection itself stays open for the next request).
        let mut body = Vec::new();
        let read = tokio::time::timeout(PATIENCE, async {
            let mut buf = vec![0; 64 << 10];
            while !body.ends_with(b"\r\n0\r\n\r\n") {
                match slow.read(&mut buf).await {
                    Ok(0) => return Err("the connection closed".to_owned()),
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        })
        .await;
        let text = String::from_utf8_lossy(&body);
        let added = text.matches("\"type\":\"ADDED\"").count();
        let ok = matches!(read, Ok(Ok(_)))
            && text.starts_with("HTTP/1.1 200")
            && added < WRITES
            && text.contains("\"type\":\"ERROR\"")
            && text.contains("\"code\":410")
            && text.contains("\"reason\":\"Expired\"");
        assert!(
            ok,
            "expected a 410 after fewer than {WRITES} events, got {added} events, {read:?}, ending {:?}\n{}",
            &text[text.len().saturating_sub(600)..],
            s.report()
        );
    });
}

#[test]
fn a_hundred_thousand_objects_list_exactly_in_pages_of_500() {
    let s = Server::start();
    runtime().block_on(async {
        let client = client(&s).await;
        namespace(&s, &client, "big").await;
        let names: Vec<String> = (0..OBJECTS).map(|i| format!("sa-{i:06}")).collect();
        create_all(&client, "big", names.clone(), 0).await;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "big");
        let mut listed = Vec::with_capacity(OBJECTS + 1);
        let mut params = ListParams::default().limit(500);
        let mut revisions = BTreeSet::new();
        let mut pages = 0;
        let mut churn = None;
        loop {
            let page = or_die(sas.list(&params).await, format!("list page {pages}"));
            pages += 1;
            revisions.insert(page.metadata.resource_version.clone().unwrap_or_default());
            assert!(
                page.items.len() <= 500,
                "page {pages} has {}",
                page.items.len()
            );
            listed.extend(page.items.into_iter().filter_map(|sa| sa.metadata.name));
            // Writes go on once the first page is read: they must not show in this list.
            churn.get_or_insert_with(|| {
                let sas = sas.clone();
                tokio::spawn(async move {
                    for i in 0..200 {
                        let body = service_account(&format!("late-{i}"), 0);
                        let _ = sas.create(&PostParams::default(), &body).await;
                        let _ = sas
                            .delete(&format!("sa-{:06}", i * 7), &DeleteParams::default())
                            .await;
                    }
                })
            });
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = ListParams::default().limit(500).continue_token(&token),
                None => break,
            }
        }
        if let Some(churn) = churn {
            or_die(churn.await, "the churn task");
        }
        let mut expected = names;
        expected.push("default".into());
        expected.sort();
        let first_diff = listed.iter().zip(&expected).position(|(a, b)| a != b);
        assert!(
            listed == expected,
            "listed {} names in {pages} pages (expected {}), first difference at {first_diff:?}",
            listed.len(),
            expected.len()
        );
        assert_eq!(
            revisions.len(),
            1,
            "every page at the first page's revision: {revisions:?}"
        );
        // And after the churn, a fresh list sees its result.
        let mut after = 0;
        let mut params = ListParams::default().limit(500);
        loop {
            let page = or_die(sas.list(&params).await, "list after the churn");
            after += page.items.len();
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = ListParams::default().limit(500).continue_token(&token),
                None => break,
            }
        }
        assert_eq!(after, OBJECTS + 1);
    });
}
