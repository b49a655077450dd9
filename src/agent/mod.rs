//! The node agent: a client of the public Kubernetes API (through the `kube` crate) that does
//! for service-account tokens what the kubelet does. It registers its Node and renews its
//! Lease, watches the Pods whose `spec.nodeName` is its node, writes their projected, secret,
//! configMap and downwardAPI volumes under `ROOT/pods/<uid>/volumes/<plugin>/<volume>` with the
//! kubelet's atomic-writer layout, renews tokens as the kubelet's token manager does, reports
//! volume readiness in the Pod status, and completes graceful deletion (status, then delete
//! with grace 0) before removing the Pod's directory.
//!
//! It imports no server module (STYLE.md rule 2), so it works against any cluster.

pub(crate) mod atomic_writer;
mod node;
pub(crate) mod refresh;
pub(crate) mod run;
pub(crate) mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::watch;

use crate::clock::{SharedClock, format_time};
use crate::wellknown;
use refresh::Lifetime;

pub(crate) use run::{RunConfig, run as run_command};

/// What `tokenwarden agent` needs.
#[derive(Debug, Clone)]
pub(crate) struct AgentConfig {
    pub(crate) kubeconfig: PathBuf,
    pub(crate) node_name: String,
    pub(crate) root_dir: PathBuf,
    /// How often a Pod's volumes are rebuilt even without a change to the Pod (so that
    /// ConfigMap and Secret changes propagate), unless a token is due earlier.
    pub(crate) sync_period: Duration,
}

/// Which Pods on the node this agent serves.
#[derive(Debug, Clone)]
enum Filter {
    /// Every Pod except those made by `tokenwarden run` (their own process serves them).
    Node,
    /// Only the Pod with this uid (the agent embedded in `tokenwarden run`).
    Only(String),
}

/// Shared by the watch loop and every Pod worker.
#[derive(Clone)]
pub(crate) struct Agent {
    client: kube::Client,
    node: String,
    root: PathBuf,
    clock: SharedClock,
    sync_period: Duration,
}

/// A kube client from a kubeconfig file (its current context).
pub(crate) async fn client_from_kubeconfig(
    path: &Path,
) -> anyhow::Result<(kube::Client, kube::Config)> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("loading the kubeconfig {}", path.display()))?;
    let client = kube::Client::try_from(config.clone()).context("building the client")?;
    Ok((client, config))
}

/// Runs the node agent until `shutdown` turns true.
pub(crate) async fn run_agent(
    config: AgentConfig,
    clock: SharedClock,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (client, _) = client_from_kubeconfig(&config.kubeconfig).await?;
    let agent = Agent {
        client,
        node: config.node_name.clone(),
        root: config.root_dir.clone(),
        clock,
        sync_period: config.sync_period,
    };
    std::fs::create_dir_all(agent.pods_dir())
        .with_context(|| format!("creating {}", agent.pods_dir().display()))?;
    let heartbeat = tokio::spawn(node::register_and_heartbeat(agent.clone()));
    tracing::info!(node = %agent.node, root = %agent.root.display(), "agent started");
    tokio::select! {
        r = agent.clone().watch_pods(Filter::Node, None) => r?,
        _ = shutdown.wait_for(|s| *s) => {}
    }
    heartbeat.abort();
    tracing::info!("agent stopped");
    Ok(())
}

struct Worker {
    pod: watch::Sender<Pod>,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    pub(crate) fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    /// Watches the node's Pods (reconnecting with backoff, resuming from the last
    /// resourceVersion) and keeps one worker per Pod. `release`, for `run`, holds back the
    /// final delete of the Pod until it turns true (the command has exited).
    async fn watch_pods(
        self,
        filter: Filter,
        release: Option<watch::Receiver<bool>>,
    ) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={}", self.node);
        let cfg = watcher::Config::default().fields(&selector).any_semantic();
        let mut stream = watcher(pods, cfg).default_backoff().boxed();
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let mut listed: HashSet<String> = HashSet::new();
        let mut first_list = true;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("watching pods: {e}; retrying");
                    continue;
                }
            };
            match event {
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitApply(pod) => {
                    if let Some(uid) = pod.metadata.uid.clone()
                        && self.wants(&filter, &pod)
                    {
                        listed.insert(uid);
                        self.upsert(&mut workers, pod, release.clone());
                    }
                }
                watcher::Event::InitDone => {
                    let gone: Vec<String> = workers
                        .keys()
                        .filter(|u| !listed.contains(*u))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.remove(&mut workers, &uid).await;
                    }
                    if first_list && matches!(filter, Filter::Node) {
                        self.remove_orphans(&listed);
                    }
                    first_list = false;
                }
                watcher::Event::Apply(pod) => {
                    if self.wants(&filter, &pod) {
                        self.upsert(&mut workers, pod, release.clone());
                    }
                }
                watcher::Event::Delete(pod) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        self.remove(&mut workers, uid).await;
                    }
                    if let Filter::Only(uid) = &filter
                        && pod.metadata.uid.as_deref() == Some(uid.as_str())
                    {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn wants(&self, filter: &Filter, pod: &Pod) -> bool {
        let is_run = pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(wellknown::ANNOTATION_RUN_POD));
        match filter {
            Filter::Node => !is_run,
            Filter::Only(uid) => pod.metadata.uid.as_deref() == Some(uid.as_str()),
        }
    }

    fn upsert(
        &self,
        workers: &mut HashMap<String, Worker>,
        pod: Pod,
        release: Option<watch::Receiver<bool>>,
    ) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(w) = workers.get(&uid) {
            w.pod.send_replace(pod);
            return;
        }
        let (tx, rx) = watch::channel(pod);
        let agent = self.clone();
        let task = tokio::spawn(async move { agent.pod_worker(rx, release).await });
        workers.insert(uid, Worker { pod: tx, task });
    }

    async fn remove(&self, workers: &mut HashMap<String, Worker>, uid: &str) {
        if let Some(w) = workers.remove(uid) {
            w.task.abort();
            let _ = w.task.await;
        }
        let dir = self.pod_dir(uid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!(pod_uid = uid, "pod gone: volumes removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", dir.display()),
        }
    }

    /// Directories of Pods that no longer exist (the agent was down when they went).
    fn remove_orphans(&self, live: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(self.pods_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                tracing::info!(pod_uid = %name, "removing the volumes of a pod that is gone");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Keeps one Pod's volumes written and fresh until the worker is aborted.
    async fn pod_worker(
        self,
        mut rx: watch::Receiver<Pod>,
        release: Option<watch::Receiver<bool>>,
    ) {
        let mut tokens = TokenCache::default();
        let mut failures = 0u32;
        let mut reported: Option<bool> = None;
        let mut finalized = false;
        loop {
            let pod = rx.borrow_and_update().clone();
            let (ready, next) = self.sync_pod(&pod, &mut tokens).await;
            if ready {
                failures = 0;
            } else {
                failures += 1;
            }
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if !terminating && reported != Some(ready) {
                match self.report_status(&pod, ready).await {
                    Ok(()) => reported = Some(ready),
                    Err(e) => tracing::warn!(pod = ?pod.metadata.name, "updating pod status: {e}"),
                }
            }
            let released = release.as_ref().is_none_or(|r| *r.borrow());
            if terminating && released && !finalized {
                match self.finalize(&pod).await {
                    Ok(()) => finalized = true,
                    Err(e) => tracing::warn!(pod = ?pod.metadata.name, "completing deletion: {e}"),
                }
            }
            let mut wait = self.sync_period;
            if let Some(at) = next {
                let secs = self.clock.now().duration_until(at).as_secs_f64().max(0.2);
                wait = wait.min(Duration::from_secs_f64(secs));
            }
            if !ready || (terminating && !finalized) {
                wait = wait.min(refresh::backoff(failures.saturating_sub(1)));
            }
            let mut release_rx = release.clone();
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
                _ = async {
                    match release_rx.as_mut() {
                        Some(r) if !released => { let _ = r.wait_for(|v| *v).await; }
                        _ => std::future::pending::<()>().await,
                    }
                } => {}
            }
        }
    }

    /// Writes every volume of `pod`; returns whether all were written and when the next
    /// token is due.
    async fn sync_pod(&self, pod: &Pod, tokens: &mut TokenCache) -> (bool, Option<Timestamp>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| wellknown::DEFAULT_SERVICE_ACCOUNT.to_string());
        let pod_dir = self.pod_dir(&uid);
        let mut sources = ClientSources {
            agent: self,
            ns: &ns,
            pod_name: &name,
            pod_uid: &uid,
            sa: &sa,
            tokens,
        };
        let mut ready = true;
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for volume in &volumes {
            let Some(plugin) = volumes::plugin_of(volume) else {
                continue;
            };
            let dir = volumes::volume_dir(&pod_dir, plugin, &volume.name);
            let written = match volumes::build(pod, volume, &mut sources).await {
                Ok(payload) => atomic_writer::write(&dir, &payload, self.clock.now())
                    .with_context(|| format!("writing {}", dir.display())),
                Err(e) => Err(e),
            };
            match written {
                Ok(true) => {
                    tracing::info!(pod = %name, namespace = %ns, volume = %volume.name, "volume written")
                }
                Ok(false) => {}
                Err(e) => {
                    ready = false;
                    tracing::warn!(pod = %name, namespace = %ns, volume = %volume.name, "volume not ready: {e:#}");
                }
            }
        }
        let next = sources.tokens.next_refresh();
        (ready, next)
    }

    /// `status.phase` and conditions: Running and Ready once every volume is written.
    async fn report_status(&self, pod: &Pod, ready: bool) -> anyhow::Result<()> {
        let (Some(name), Some(ns)) = (&pod.metadata.name, &pod.metadata.namespace) else {
            return Ok(());
        };
        let now = format_time(self.clock.now());
        let truth = if ready { "True" } else { "False" };
        let cond = |t: &str, s: &str| {
            let mut c = serde_json::json!({"type": t, "status": s, "lastTransitionTime": now});
            if s == "False" {
                c["reason"] = "VolumesNotReady".into();
                c["message"] = "the agent could not write every volume yet".into();
            }
            c
        };
        let patch = serde_json::json!({"status": {
            "phase": if ready { "Running" } else { "Pending" },
            "conditions": [cond("PodScheduled", "True"), cond("Initialized", "True"),
                           cond("ContainersReady", truth), cond("Ready", truth)],
            "startTime": pod.status.as_ref().and_then(|s| s.start_time.clone()).map_or(now.clone(), |t| format_time(t.0)),
        }});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Graceful deletion as a kubelet completes it: a terminal status, then a delete with
    /// grace 0 for this uid.
    async fn finalize(&self, pod: &Pod) -> anyhow::Result<()> {
        let (Some(name), Some(ns)) = (&pod.metadata.name, &pod.metadata.namespace) else {
            return Ok(());
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let now = format_time(self.clock.now());
        let patch = serde_json::json!({"status": {"phase": "Succeeded", "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}]}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            && !is_not_found(&e)
        {
            tracing::warn!(pod = %name, "setting the final status: {e}");
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {
                tracing::info!(pod = %name, namespace = %ns, "graceful deletion completed");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// One cached token: what the kubelet's token manager keeps per request.
struct CachedToken {
    token: String,
    lifetime: Lifetime,
    jitter: SignedDuration,
    /// After a failed refresh: do not ask again before this.
    retry_at: Option<Timestamp>,
    failures: u32,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Tokens of one Pod, by (audience, expirationSeconds).
#[derive(Debug, Default)]
struct TokenCache {
    tokens: BTreeMap<(Option<String>, i64), CachedToken>,
}

impl TokenCache {
    fn next_refresh(&self) -> Option<Timestamp> {
        self.tokens
            .values()
            .map(|t| match t.retry_at {
                Some(r) => r,
                None => t.lifetime.refresh_at(t.jitter),
            })
            .min()
    }
}

/// [`volumes::Sources`] through the API: GETs and TokenRequests for one Pod.
struct ClientSources<'a> {
    agent: &'a Agent,
    ns: &'a str,
    pod_name: &'a str,
    pod_uid: &'a str,
    sa: &'a str,
    tokens: &'a mut TokenCache,
}

#[async_trait::async_trait]
impl volumes::Sources for ClientSources<'_> {
    async fn config_map(&mut self, name: &str) -> anyhow::Result<Option<ConfigMap>> {
        let api: Api<ConfigMap> = Api::namespaced(self.agent.client.clone(), self.ns);
        Ok(api.get_opt(name).await?)
    }

    async fn secret(&mut self, name: &str) -> anyhow::Result<Option<Secret>> {
        let api: Api<Secret> = Api::namespaced(self.agent.client.clone(), self.ns);
        Ok(api.get_opt(name).await?)
    }

    async fn token(&mut self, audience: Option<&str>, seconds: i64) -> anyhow::Result<String> {
        let key = (audience.map(str::to_string), seconds);
        let now = self.agent.clock.now();
        if let Some(t) = self.tokens.tokens.get(&key) {
            let due = t.lifetime.requires_refresh(now, t.jitter);
            let waiting = t.retry_at.is_some_and(|r| now < r);
            if !due || (waiting && t.lifetime.still_valid(now)) {
                return Ok(t.token.clone());
            }
        }
        match self.request_token(audience, seconds).await {
            Ok((token, lifetime)) => {
                tracing::info!(pod = %self.pod_name, namespace = %self.ns, expires = %lifetime.expires, "token issued");
                let entry = CachedToken {
                    token: token.clone(),
                    lifetime,
                    jitter: refresh::jitter(),
                    retry_at: None,
                    failures: 0,
                };
                self.tokens.tokens.insert(key, entry);
                Ok(token)
            }
            Err(e) => match self.tokens.tokens.get_mut(&key) {
                // Never drop a token that is still valid: serve it and retry later.
                Some(t) if t.lifetime.still_valid(now) => {
                    t.failures += 1;
                    let wait = refresh::backoff(t.failures - 1);
                    t.retry_at = now
                        .checked_add(SignedDuration::try_from(wait).unwrap_or_default())
                        .ok();
                    tracing::warn!(pod = %self.pod_name, namespace = %self.ns, "couldn't update token (keeping the valid one, retrying in {wait:?}): {e:#}");
                    Ok(t.token.clone())
                }
                _ => Err(e.context("requesting a token")),
            },
        }
    }
}

impl ClientSources<'_> {
    async fn request_token(
        &self,
        audience: Option<&str>,
        seconds: i64,
    ) -> anyhow::Result<(String, Lifetime)> {
        let api: Api<ServiceAccount> = Api::namespaced(self.agent.client.clone(), self.ns);
        let mut spec = serde_json::json!({
            "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                               "name": self.pod_name, "uid": self.pod_uid},
        });
        if let Some(a) = audience {
            spec["audiences"] = serde_json::json!([a]);
        }
        let request: TokenRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}))?;
        let resp = api
            .create_token_request(self.sa, &PostParams::default(), &request)
            .await?;
        let status = resp
            .status
            .context("the TokenRequest response has no status")?;
        let granted = resp
            .spec
            .and_then(|s| s.expiration_seconds)
            .unwrap_or(seconds);
        let token = status
            .token
            .context("the TokenRequest response has no token")?;
        let expires = status
            .expiration_timestamp
            .context("the TokenRequest response has no expirationTimestamp")?
            .0;
        Ok((
            token,
            Lifetime {
                expires,
                seconds: granted,
            },
        ))
    }
}
