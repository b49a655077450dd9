//! The scale figures of issue 13, on a server of the benchmark's own: this binary's `serve`
//! (`std::env::current_exe()`) on a temporary data dir and a free loopback port, so that the
//! benchmark controls the store's contents and knows the pid. It measures the time from spawn
//! to the first `/readyz` 200 (empty store, and after a restart with the large store), the
//! resident memory with 10 000 each of ServiceAccounts, Secrets and Pods, and how the time of
//! a paged list grows from 10 000 to 100 000 objects. The spawned server is killed and its
//! directory removed when the part ends, on error too ([`Spawned`]'s `Drop`).
//!
//! Like the rest of the crate it talks to the server over HTTPS only, with what the server's
//! `admin.kubeconfig` holds; it must not depend on the server crate.

use std::fs::{self, OpenOptions};
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::figure::{Bound, Figure};
use crate::progress::Progress;
use crate::{Client, Conn, kubeconfig_client, rate, run_id};

/// Objects in the large store (`--scale-objects`); a tenth of it is the small store and the
/// count of each kind in the memory figure.
pub(crate) const OBJECTS: u32 = 100_000;
/// Connections that create objects in parallel: enough to keep both the server's cores and
/// its store's writer busy.
const FILL_CONNECTIONS: usize = 32;
/// How often `/readyz` is asked while the server starts.
const READY_POLL: Duration = Duration::from_millis(2);
/// Giving up on a server that does not become ready (a debug build with a large store is
/// slow, but not this slow).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Items per page of the timed lists (issue 13).
const PAGE: usize = 500;
/// Each timed list is the best of this many, as the crypto reference is: a busy neighbour
/// only ever slows a run down.
const LIST_REPEATS: usize = 3;
/// Creates that fail are tried again this often (a ServiceAccount created a moment ago may
/// not yet be visible to Pod admission through a cache), then the part fails.
const CREATE_ATTEMPTS: usize = 20;
const NAMESPACE: &str = "tw-bench-scale";

/// Issue 13's targets.
const READY_EMPTY_MS: f64 = 100.0;
const READY_LOADED_MS: f64 = 1000.0;
const RSS_MB: f64 = 40.0;
/// Per-object list time at the large store ÷ at the small one.
const GROWTH: f64 = 2.0;

pub(crate) struct Options {
    /// The large store's object count.
    pub(crate) objects: usize,
    /// Each step on stderr, for a person at a terminal.
    pub(crate) progress: Progress,
}

/// The kinds the part creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Kind {
    ServiceAccount,
    Secret,
    Pod,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::ServiceAccount, Kind::Secret, Kind::Pod];

    fn path(self) -> String {
        let plural = match self {
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Secret => "secrets",
            Kind::Pod => "pods",
        };
        format!("/api/v1/namespaces/{NAMESPACE}/{plural}")
    }

    /// The `i`-th object: small, as the issue asks. Pod `i` runs as ServiceAccount `i`, so
    /// that admission adds a projected token volume for an account that exists.
    fn body(self, i: usize) -> Bytes {
        let object = match self {
            Kind::ServiceAccount => json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": format!("sa-{i}")}}),
            Kind::Secret => json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": format!("secret-{i}")}, "data": {"key": "dmFsdWU="}}),
            Kind::Pod => json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{i}")},
                "spec": {"serviceAccountName": format!("sa-{i}"),
                         "containers": [{"name": "main", "image": "busybox"}]}}),
        };
        Bytes::from(object.to_string())
    }
}

/// How long creating a batch of objects took.
#[derive(Debug, Clone, Serialize)]
struct Fill {
    kind: Kind,
    count: usize,
    seconds: f64,
    per_s: f64,
    /// Creates that had to be tried again.
    retries: usize,
}

/// A timed paged list.
#[derive(Debug, Clone, Copy, Serialize)]
struct ListTiming {
    items: usize,
    pages: usize,
    /// The best of `LIST_REPEATS`.
    seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ScaleReport {
    /// The large store (ServiceAccounts in one namespace) and the small one.
    large: usize,
    small: usize,
    fill_connections: usize,
    /// First start on an empty data dir: also generates the CA, the serving certificate and
    /// the keys.
    ready_first_start_ms: f64,
    /// Restart on the empty store.
    ready_empty_ms: f64,
    /// Restart with `objects_at_restart` objects.
    ready_loaded_ms: f64,
    objects_at_restart: usize,
    /// VmRSS on the empty store, and with `small` objects of each kind in `Kind::ALL`, each
    /// after one full list of every kind.
    rss_empty_bytes: Option<u64>,
    rss_loaded_bytes: Option<u64>,
    objects_for_memory: usize,
    bytes_per_object: Option<f64>,
    list_small: ListTiming,
    list_large: ListTiming,
    /// list_large.seconds ÷ list_small.seconds (linear ⇒ items ratio).
    list_time_ratio: Option<f64>,
    /// Per-object time at the large store ÷ per-object time at the small one.
    list_growth_per_object: Option<f64>,
    fills: Vec<Fill>,
}

/// Runs the scale part; the spawned server is gone when this returns.
pub(crate) async fn run(options: Options) -> anyhow::Result<ScaleReport> {
    let mut server = Spawned::new()?;
    match measure(&mut server, &options).await {
        Ok(report) => Ok(report),
        Err(e) => Err(e.context(format!(
            "the spawned server's log ends with:\n{}",
            server.log_tail()
        ))),
    }
}

async fn measure(server: &mut Spawned, options: &Options) -> anyhow::Result<ScaleReport> {
    let large = options.objects.max(10);
    let small = large / 10;
    let progress = &options.progress;

    // 1. First start (key generation), then a restart on the still empty store.
    let phase = progress.step("scale: start", "a server of its own, then a restart");
    let ready_first = server.start_and_wait().await?.0;
    server.stop().await?;
    let (ready_empty, client) = server.start_and_wait().await?;
    phase.done(format!(
        "ready in {:.0} ms, {:.0} ms after a restart",
        ms(ready_first),
        ms(ready_empty)
    ));
    let pid = server.pid()?;
    let mut conns = Vec::with_capacity(FILL_CONNECTIONS);
    for _ in 0..FILL_CONNECTIONS {
        conns.push(client.connect().await?);
    }

    // 2. Memory of the empty store, after one list of each kind.
    for kind in Kind::ALL {
        list_all(&client, &mut conns[0], &kind.path()).await?;
    }
    let rss_empty = rss_bytes(pid);

    // 3. `small` objects of each kind, one kind after the other (Pods need their
    //    ServiceAccounts), then memory again after one list of each kind.
    create_namespace(&client, &mut conns[0]).await?;
    let mut fills = Vec::new();
    for kind in Kind::ALL {
        fills.push(fill(&client, &mut conns, kind, 0..small, progress).await?);
    }
    for kind in Kind::ALL {
        list_all(&client, &mut conns[0], &kind.path()).await?;
    }
    let rss_loaded = rss_bytes(pid);

    // 4. The paged list at the small store, then at the large one.
    let sa_path = Kind::ServiceAccount.path();
    let list_small = time_list(&client, &mut conns[0], &sa_path).await?;
    let more = fill(
        &client,
        &mut conns,
        Kind::ServiceAccount,
        small..large,
        progress,
    );
    fills.push(more.await?);
    let phase = progress.step("scale: list", format!("{large} ServiceAccounts"));
    let list_large = time_list(&client, &mut conns[0], &sa_path).await?;
    phase.done(format!(
        "{} ServiceAccounts in {:.3} s",
        list_large.items, list_large.seconds
    ));
    drop(conns);

    // 5. A restart with everything in the store.
    let phase = progress.step(
        "scale: restart",
        format!("with {} objects", large + 2 * small),
    );
    server.stop().await?;
    let ready_loaded = server.start_and_wait().await?.0;
    phase.done(format!("ready in {:.0} ms", ms(ready_loaded)));

    let objects_for_memory = small * Kind::ALL.len();
    let bytes_per_object = match (rss_empty, rss_loaded) {
        // Byte counts stay far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        (Some(a), Some(b)) if objects_for_memory > 0 => {
            Some((b as f64 - a as f64) / objects_for_memory as f64)
        }
        _ => None,
    };
    Ok(ScaleReport {
        large,
        small,
        fill_connections: FILL_CONNECTIONS,
        ready_first_start_ms: ms(ready_first),
        ready_empty_ms: ms(ready_empty),
        ready_loaded_ms: ms(ready_loaded),
        objects_at_restart: large + 2 * small,
        rss_empty_bytes: rss_empty,
        rss_loaded_bytes: rss_loaded,
        objects_for_memory,
        bytes_per_object,
        list_small,
        list_large,
        list_time_ratio: ratio(list_large.seconds, list_small.seconds),
        list_growth_per_object: growth_per_object(list_small, list_large),
        fills,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// (time ÷ items at the large store) ÷ (time ÷ items at the small store): 1 when the list
/// is linear in its size, above when it grows faster.
fn growth_per_object(small: ListTiming, large: ListTiming) -> Option<f64> {
    // Item counts stay far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let per = |t: ListTiming| (t.items > 0).then(|| t.seconds / t.items as f64);
    ratio(per(large)?, per(small)?)
}

impl ScaleReport {
    pub(crate) fn figures(&self) -> Vec<Figure> {
        #[allow(clippy::cast_precision_loss)]
        let mb = |b: Option<u64>| b.map(|b| b as f64 / 1e6);
        let list = |t: ListTiming| {
            Figure::new(
                format!("list {} ServiceAccounts, limit={PAGE}", t.items),
                Some(t.seconds),
                "s",
                None,
            )
            .note(format!("pages: {}, best of {LIST_REPEATS}", t.pages))
        };
        vec![
            Figure::new(
                "ready, first start",
                Some(self.ready_first_start_ms),
                "ms",
                None,
            )
            .note("empty data dir: generates the CA, certificates and keys"),
            Figure::new(
                "ready, empty store",
                Some(self.ready_empty_ms),
                "ms",
                Some(Bound::Under(READY_EMPTY_MS)),
            )
            .note("restart, keys on disk"),
            Figure::new(
                format!("ready, restart with {} objects", self.objects_at_restart),
                Some(self.ready_loaded_ms),
                "ms",
                Some(Bound::Under(READY_LOADED_MS)),
            ),
            Figure::new(
                format!("RSS with {} objects", self.objects_for_memory),
                mb(self.rss_loaded_bytes),
                "MB",
                Some(Bound::AtMost(RSS_MB)),
            )
            .note(format!(
                "{} each of ServiceAccounts, Secrets, Pods; empty: {} MB",
                self.small,
                crate::opt(mb(self.rss_empty_bytes), 1)
            )),
            Figure::new("bytes per object", self.bytes_per_object, "B", None)
                .note("(RSS loaded − RSS empty) ÷ objects"),
            list(self.list_small),
            list(self.list_large),
            Figure::new(
                format!(
                    "list growth per object, {}→{}",
                    self.list_small.items, self.list_large.items
                ),
                self.list_growth_per_object,
                "×",
                Some(Bound::AtMost(GROWTH)),
            )
            .note(format!(
                "time ratio {} (linear ⇒ {})",
                crate::opt(self.list_time_ratio, 1),
                crate::opt(
                    ratio(
                        count_f64(self.list_large.items),
                        count_f64(self.list_small.items)
                    ),
                    1
                )
            )),
        ]
    }

    pub(crate) fn text(&self) -> String {
        let fills: Vec<String> = self
            .fills
            .iter()
            .map(|f| {
                let retries = if f.retries > 0 {
                    format!(", {} retried", f.retries)
                } else {
                    String::new()
                };
                format!(
                    "{} {:?}s in {:.1} s ({:.0}/s{retries})",
                    f.count, f.kind, f.seconds, f.per_s
                )
            })
            .collect();
        format!(
            "scale: a server of its own (this binary's serve, temporary data dir, killed at the end); \
             {} connections created {}\n",
            self.fill_connections,
            fills.join(", ")
        )
    }
}

fn count_f64(n: usize) -> f64 {
    // Counts stay far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    f
}

// ---- the spawned server --------------------------------------------------------------

/// A `tokenwarden serve` of the benchmark's own, in a temporary directory holding `data/`
/// and `server.log`. Dropping it kills the server and removes the directory.
struct Spawned {
    root: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Spawned {
    fn new() -> anyhow::Result<Spawned> {
        let root = std::env::temp_dir().join(format!(
            "tw-bench-scale-{}-{}",
            std::process::id(),
            run_id()
        ));
        fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        let mut spawned = Spawned {
            root,
            port: 0,
            child: None,
        };
        spawned.port = free_port()?;
        Ok(spawned)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("the spawned server is not running"))
    }

    /// Spawns the server and waits for `/readyz`: the time from spawn to the first 200, and a
    /// client for it.
    async fn start_and_wait(&mut self) -> anyhow::Result<(Duration, Arc<Client>)> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let log_path = self.root.join("server.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log2 = log.try_clone()?;
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--secure-port", &self.port.to_string()])
            .env_remove("TOKENWARDEN_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let spawned = Instant::now();
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("running {} serve", exe.display()))?,
        );
        self.wait_ready(spawned).await
    }

    /// Polls `/readyz` every `READY_POLL` over one kept-alive connection, opened as soon as
    /// the kubeconfig is written and the port accepts.
    async fn wait_ready(&mut self, spawned: Instant) -> anyhow::Result<(Duration, Arc<Client>)> {
        let kubeconfig = self.data_dir().join("admin.kubeconfig");
        let mut client: Option<Arc<Client>> = None;
        let mut conn: Option<Conn> = None;
        loop {
            if let Some(status) = self.exited()? {
                bail!("the spawned server exited with {status} before it was ready");
            }
            if spawned.elapsed() > READY_TIMEOUT {
                bail!(
                    "the spawned server was not ready {} s after it started",
                    READY_TIMEOUT.as_secs()
                );
            }
            // The server writes the kubeconfig atomically (rename), so a file that exists
            // is whole; after a restart it is the previous run's, with the same CA and token.
            if client.is_none() && kubeconfig.exists() {
                client = Some(Arc::new(kubeconfig_client(&kubeconfig)?.1));
            }
            if let Some(c) = &client {
                if conn.is_none() {
                    // Refused until the server listens: that is what is being waited for.
                    conn = c.connect().await.ok();
                }
                if let Some(open) = conn.as_mut() {
                    match open.call(c.get("/readyz", &c.admin)?).await {
                        Ok((StatusCode::OK, _)) => return Ok((spawned.elapsed(), c.clone())),
                        Ok(_) => {}
                        // A connection closed under us: open a new one next time.
                        Err(_) => conn = None,
                    }
                }
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => {
                let status = child.try_wait()?;
                if status.is_some() {
                    self.child = None;
                }
                Ok(status)
            }
            None => bail!("the spawned server is not running"),
        }
    }

    /// SIGTERM, and wait for the server to exit (it finishes its writes first).
    async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // `kill(1)`: the crate forbids `unsafe`, which a direct kill(2) would need.
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        if matches!(sent, Ok(s) if s.success()) {
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        bail!("the spawned server exited with {status} on SIGTERM");
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("the spawned server did not stop on SIGTERM")
    }

    /// The last lines of the server's log, for errors.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The benchmark is over (or failed): nothing of the server is worth keeping.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A loopback port that was free a moment ago (the server binds it right after).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// VmRSS of a process, from /proc/PID/status.
fn rss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&text)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

// ---- filling and listing -------------------------------------------------------------

async fn create_namespace(client: &Client, conn: &mut Conn) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    let (status, body) = conn
        .call(client.post("/api/v1/namespaces", Bytes::from(body.to_string()))?)
        .await
        .context("POST /api/v1/namespaces")?;
    if status != StatusCode::CREATED {
        bail!(
            "creating the namespace {NAMESPACE}: the server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// Creates objects `range` of `kind` over all of `conns` at once.
async fn fill(
    client: &Arc<Client>,
    conns: &mut Vec<Conn>,
    kind: Kind,
    range: Range<usize>,
    progress: &Progress,
) -> anyhow::Result<Fill> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let name = format!("scale: create {kind:?}s");
    let phase = progress.counted(&name, range.len(), next.clone(), range.start);
    let retries = Arc::new(AtomicUsize::new(0));
    let path: Arc<str> = kind.path().into();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in std::mem::take(conns) {
        let (client, next, retries, path) =
            (client.clone(), next.clone(), retries.clone(), path.clone());
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok(conn);
                }
                let body = kind.body(i);
                let mut attempt = 1;
                loop {
                    let (status, answer) = conn
                        .call(client.post(&path, body.clone())?)
                        .await
                        .with_context(|| format!("POST {path}"))?;
                    if status == StatusCode::CREATED {
                        break;
                    }
                    if attempt >= CREATE_ATTEMPTS {
                        bail!(
                            "POST {path}: the server answered {status}: {}",
                            String::from_utf8_lossy(&answer)
                        );
                    }
                    // Tried again: see CREATE_ATTEMPTS.
                    attempt += 1;
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(conn)) => conns.push(conn),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(anyhow!("a create task failed: {e}"))),
        }
    }
    let took = started.elapsed();
    if let Some(e) = failure {
        return Err(e.context(format!("creating {kind:?}s")));
    }
    // The connections lost with a failed task were reported above; replace none here.
    let count = range.len();
    phase.done(format!("{count} in {:.1} s", took.as_secs_f64()));
    Ok(Fill {
        kind,
        count,
        seconds: took.as_secs_f64(),
        per_s: rate(count as u64, took),
        retries: retries.load(Ordering::Relaxed),
    })
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<IgnoredAny>,
    #[serde(default)]
    metadata: PageMeta,
}

#[derive(Default, Deserialize)]
struct PageMeta {
    #[serde(rename = "continue", default)]
    next: Option<String>,
}

/// Lists everything under `path`, `PAGE` items at a time: (items, pages).
async fn list_all(client: &Client, conn: &mut Conn, path: &str) -> anyhow::Result<(usize, usize)> {
    let (mut items, mut pages) = (0, 0);
    let mut next: Option<String> = None;
    loop {
        let url = list_url(path, next.as_deref());
        let (status, body) = conn
            .call(client.get(&url, &client.admin)?)
            .await
            .with_context(|| format!("GET {url}"))?;
        if status != StatusCode::OK {
            bail!(
                "GET {url}: the server answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let page: Page = serde_json::from_slice(&body).with_context(|| format!("GET {url}"))?;
        items += page.items.len();
        pages += 1;
        match page.metadata.next.filter(|c| !c.is_empty()) {
            Some(c) => next = Some(c),
            None => return Ok((items, pages)),
        }
    }
}

/// The best of `LIST_REPEATS` full lists.
async fn time_list(client: &Client, conn: &mut Conn, path: &str) -> anyhow::Result<ListTiming> {
    let mut best: Option<ListTiming> = None;
    for _ in 0..LIST_REPEATS {
        let started = Instant::now();
        let (items, pages) = list_all(client, conn, path).await?;
        let seconds = started.elapsed().as_secs_f64();
        if best.is_none_or(|b| seconds < b.seconds) {
            best = Some(ListTiming {
                items,
                pages,
                seconds,
            });
        }
    }
    best.ok_or_else(|| anyhow!("no list was timed"))
}

/// `path?limit=PAGE`, with the continue token percent-encoded.
fn list_url(path: &str, next: Option<&str>) -> String {
    let mut url = format!("{path}?limit={PAGE}");
    if let Some(token) = next {
        url.push_str("&continue=");
        for b in token.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_in_bytes() {
        let status =
            "Name:\ttokenwarden\nVmHWM:\t   40000 kB\nVmRSS:\t   31244 kB\nRssAnon:\t 20000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(31_244 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t 12 MB\n"), None);
        // Our own process has one.
        assert!(rss_bytes(std::process::id()).is_some());
    }

    #[test]
    fn continue_tokens_are_percent_encoded() {
        assert_eq!(list_url("/api/v1/pods", None), "/api/v1/pods?limit=500");
        assert_eq!(
            list_url("/api/v1/pods", Some("eyJ2Ijoi+/=")),
            "/api/v1/pods?limit=500&continue=eyJ2Ijoi%2B%2F%3D"
        );
    }

    fn timing(items: usize, seconds: f64) -> ListTiming {
        ListTiming {
            items,
            pages: items.div_ceil(PAGE),
            seconds,
        }
    }

    #[test]
    fn growth_is_per_object() {
        // Linear: 10× the items in 10× the time is 1.
        let g = growth_per_object(timing(10_001, 0.1), timing(100_001, 1.0)).unwrap();
        assert!((g - 1.0).abs() < 0.01, "{g}");
        // Quadratic at 10×: 100× the time is 10 per object.
        let g = growth_per_object(timing(10_000, 0.1), timing(100_000, 10.0)).unwrap();
        assert!((g - 10.0).abs() < 1e-9, "{g}");
        assert_eq!(growth_per_object(timing(0, 0.1), timing(10, 1.0)), None);
        assert_eq!(growth_per_object(timing(10, 0.0), timing(100, 1.0)), None);
    }

    fn report(growth: f64, ready_empty_ms: f64, rss: u64) -> ScaleReport {
        ScaleReport {
            large: 100_000,
            small: 10_000,
            fill_connections: FILL_CONNECTIONS,
            ready_first_start_ms: 300.0,
            ready_empty_ms,
            ready_loaded_ms: 700.0,
            objects_at_restart: 120_000,
            rss_empty_bytes: Some(10_000_000),
            rss_loaded_bytes: Some(rss),
            objects_for_memory: 30_000,
            bytes_per_object: Some(900.0),
            list_small: timing(10_001, 0.1),
            list_large: timing(100_001, 0.1 * 10.0 * growth),
            list_time_ratio: Some(10.0 * growth),
            list_growth_per_object: Some(growth),
            fills: Vec::new(),
        }
    }

    fn verdicts(r: &ScaleReport) -> Vec<(String, Option<crate::Verdict>)> {
        r.figures()
            .into_iter()
            .filter(|f| f.target.is_some())
            .map(|f| (f.name, f.verdict))
            .collect()
    }

    #[test]
    fn scale_figures_and_their_targets() {
        use crate::Verdict::{Below, Pass};
        let r = report(1.1, 40.0, 38_000_000);
        assert_eq!(
            verdicts(&r),
            [
                ("ready, empty store".to_string(), Some(Pass)),
                ("ready, restart with 120000 objects".to_string(), Some(Pass)),
                ("RSS with 30000 objects".to_string(), Some(Pass)),
                (
                    "list growth per object, 10001→100001".to_string(),
                    Some(Pass)
                ),
            ]
        );
        let mut r = report(2.5, 100.0, 40_000_001);
        r.ready_loaded_ms = 1000.0;
        assert!(
            verdicts(&r).iter().all(|(_, v)| *v == Some(Below)),
            "{:?}",
            verdicts(&r)
        );
        // Every figure, with or without a target, is in the JSON.
        let json = serde_json::to_value(r.figures()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 8);
    }
}
