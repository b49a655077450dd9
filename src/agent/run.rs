//! `tokenwarden run -- CMD…`: runs one process as a Pod on this node. It creates a Pod for the
//! process (annotated so that a node agent leaves it alone), serves that Pod's volumes with an
//! agent embedded in this process (so no separate agent is needed, and the token stays fresh
//! exactly as long as the process runs), then starts CMD with the token volume at the standard
//! path inside a private mount namespace (`unshare --mount`, root only) or at `--token-dir`
//! through a symlink (no root), with `KUBERNETES_SERVICE_HOST`/`_PORT` set from the
//! kubeconfig's server. When CMD exits, the Pod is deleted (the embedded agent completes the
//! graceful deletion) and CMD's exit code is returned.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use super::{Agent, Filter, client_from_kubeconfig, is_not_found, volumes};
use crate::clock::SharedClock;
use crate::wellknown;

/// What `tokenwarden run` needs.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    pub(crate) kubeconfig: PathBuf,
    pub(crate) node_name: String,
    /// Where the Pod's volumes are written; a temporary directory (removed afterwards) if unset.
    pub(crate) root_dir: Option<PathBuf>,
    /// Default: the kubeconfig context's namespace.
    pub(crate) namespace: Option<String>,
    /// Default: the namespace's `default` ServiceAccount (set by admission).
    pub(crate) service_account: Option<String>,
    /// Default: a generated `tokenwarden-run-xxxxx`.
    pub(crate) name: Option<String>,
    /// Put the token volume here (a symlink) instead of mounting it at the standard path.
    pub(crate) token_dir: Option<PathBuf>,
    pub(crate) command: Vec<String>,
    pub(crate) sync_period: Duration,
}

const VOLUME_TIMEOUT: Duration = Duration::from_secs(60);
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the command; returns its exit code (128 + signal if a signal ended it).
pub(crate) async fn run(config: RunConfig, clock: SharedClock) -> anyhow::Result<i32> {
    if config.command.is_empty() {
        anyhow::bail!("no command given: tokenwarden run [flags] -- CMD [ARGS…]");
    }
    if config.token_dir.is_none() {
        check_can_mount()?;
    }
    let (client, kube_config) = client_from_kubeconfig(&config.kubeconfig).await?;
    let (host, port) = service_host_port(&kube_config.cluster_url)?;
    let ns = config
        .namespace
        .clone()
        .unwrap_or_else(|| kube_config.default_namespace.clone());
    let (root, temp_root) = match &config.root_dir {
        Some(r) => (r.clone(), false),
        None => {
            let r = std::env::temp_dir().join(format!("tokenwarden-run-{}", rand::random::<u32>()));
            (r, true)
        }
    };
    let agent = Agent {
        client: client.clone(),
        node: config.node_name.clone(),
        root: root.clone(),
        clock,
        sync_period: config.sync_period,
    };
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod = create_pod(&pods, &config).await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    tracing::info!(pod = %pod_name, namespace = %ns, "pod created");

    let (release_tx, release_rx) = watch::channel(false);
    let mut agent_task = tokio::spawn(
        agent
            .clone()
            .watch_pods(Filter::Only(uid.clone()), Some(release_rx)),
    );
    let result = run_in_pod(&agent, &pod, &config, &host, &port).await;

    // Delete the Pod; the embedded agent completes the graceful deletion, its watch ends
    // when the Pod is gone.
    let _ = release_tx.send(true);
    if let Err(e) = pods.delete(&pod_name, &DeleteParams::default()).await
        && !is_not_found(&e)
    {
        tracing::warn!(pod = %pod_name, "deleting the pod: {e}");
    }
    if tokio::time::timeout(DELETE_TIMEOUT, &mut agent_task)
        .await
        .is_err()
    {
        agent_task.abort();
        tracing::warn!(pod = %pod_name, "graceful deletion did not finish; deleting now");
        let _ = pods
            .delete(
                &pod_name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await;
    }
    let _ = std::fs::remove_dir_all(agent.pod_dir(&uid));
    if temp_root {
        let _ = std::fs::remove_dir_all(&root);
    }
    if let Some(dir) = &config.token_dir
        && std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink())
    {
        let _ = std::fs::remove_file(dir);
    }
    result
}

async fn run_in_pod(
    agent: &Agent,
    pod: &Pod,
    config: &RunConfig,
    host: &str,
    port: &str,
) -> anyhow::Result<i32> {
    let volume_dir = token_volume_dir(agent, pod)?;
    wait_for_volume(&volume_dir).await?;
    let mut cmd = match &config.token_dir {
        Some(dir) => {
            link_token_dir(dir, &volume_dir)?;
            let mut c = tokio::process::Command::new(&config.command[0]);
            c.args(&config.command[1..]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
            c.arg(r#"mkdir -p "$1" && mount --bind "$2" "$1" && shift 2 && exec "$@""#);
            c.arg("sh")
                .arg(wellknown::SA_TOKEN_MOUNT_PATH)
                .arg(&volume_dir);
            c.args(&config.command);
            c
        }
    };
    cmd.env(wellknown::ENV_SERVICE_HOST, host)
        .env(wellknown::ENV_SERVICE_PORT, port);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", config.command[0]))?;
    let pid = child.id();
    let status = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                s = child.wait() => break s?,
                _ = term.recv() => forward(pid, "TERM").await,
                _ = int.recv() => forward(pid, "INT").await,
            }
        }
    };
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Passes a signal on to the command (through kill(1): no unsafe code here).
async fn forward(pid: Option<u32>, signal: &str) {
    if let Some(pid) = pid {
        let _ = tokio::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await;
    }
}

async fn create_pod(pods: &Api<Pod>, config: &RunConfig) -> anyhow::Result<Pod> {
    let mut meta = json!({"annotations": {wellknown::ANNOTATION_RUN_POD: "true"}});
    match &config.name {
        Some(n) => meta["name"] = n.clone().into(),
        None => meta["generateName"] = "tokenwarden-run-".into(),
    }
    let mut spec = json!({
        "nodeName": config.node_name,
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "tokenwarden-run", "command": config.command}],
    });
    if let Some(sa) = &config.service_account {
        spec["serviceAccountName"] = sa.clone().into();
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .context("creating the pod")
}

/// The directory of the Pod's service-account volume (`kube-api-access-*`, or the projected
/// volume mounted at the standard path).
fn token_volume_dir(agent: &Agent, pod: &Pod) -> anyhow::Result<PathBuf> {
    let spec = pod.spec.as_ref().context("the pod has no spec")?;
    let mounted = spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path == wellknown::SA_TOKEN_MOUNT_PATH)
        .map(|m| m.name.clone());
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.projected.is_some() || v.secret.is_some())
        .find(|v| match &mounted {
            Some(name) => &v.name == name,
            None => v.name.starts_with(wellknown::SA_VOLUME_PREFIX),
        })
        .context(
            "the pod has no service-account token volume (is automountServiceAccountToken false?)",
        )?;
    let plugin = volumes::plugin_of(volume).context("unsupported token volume")?;
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    Ok(volumes::volume_dir(
        &agent.pod_dir(uid),
        plugin,
        &volume.name,
    ))
}

async fn wait_for_volume(dir: &Path) -> anyhow::Result<()> {
    let data = dir.join(super::atomic_writer::DATA_DIR_NAME);
    let deadline = tokio::time::Instant::now() + VOLUME_TIMEOUT;
    while !data.exists() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the pod's token volume was not written within {VOLUME_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `dir` becomes a symlink to the volume (replacing an old symlink or an empty directory).
fn link_token_dir(dir: &Path, volume: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(dir)?,
        Ok(m) if m.is_dir() => std::fs::remove_dir(dir)
            .with_context(|| format!("--token-dir {} exists and is not empty", dir.display()))?,
        Ok(_) => anyhow::bail!(
            "--token-dir {} exists and is not a directory",
            dir.display()
        ),
        Err(_) => {}
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(volume, dir)
        .with_context(|| format!("linking {} to the token volume", dir.display()))
}

/// Mounting at the standard path needs root and util-linux's `unshare`.
fn check_can_mount() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if uid != "0" {
        anyhow::bail!(
            "tokenwarden run must be root to mount the token at {} in a private mount namespace; \
             use --token-dir DIR to put the token volume at DIR instead",
            wellknown::SA_TOKEN_MOUNT_PATH
        );
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("unshare").is_file()));
    if !found {
        anyhow::bail!("`unshare` (util-linux) is not on PATH; install it or use --token-dir DIR");
    }
    Ok(())
}

/// `KUBERNETES_SERVICE_HOST`/`_PORT` for the kubeconfig's server URL: the host as in-cluster
/// config expects it (an IPv6 address without brackets, which client-go adds back), the port
/// or 443.
fn service_host_port(url: &http::Uri) -> anyhow::Result<(String, String)> {
    let host = url
        .host()
        .context("the kubeconfig's server URL has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_u16().unwrap_or(443).to_string();
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_from_the_server_url() {
        let u: http::Uri = "https://127.0.0.1:6443".parse().unwrap();
        assert_eq!(
            service_host_port(&u).unwrap(),
            ("127.0.0.1".into(), "6443".into())
        );
        let u: http::Uri = "https://[::1]:8443".parse().unwrap();
        assert_eq!(
            service_host_port(&u).unwrap(),
            ("::1".into(), "8443".into())
        );
        let u: http::Uri = "https://api.example".parse().unwrap();
        assert_eq!(
            service_host_port(&u).unwrap(),
            ("api.example".into(), "443".into())
        );
    }

    #[test]
    fn token_dir_replaces_only_links_and_empty_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        let dir = tmp.path().join("a/tok");
        link_token_dir(&dir, &vol).unwrap();
        link_token_dir(&dir, &vol).unwrap();
        assert_eq!(std::fs::read_link(&dir).unwrap(), vol);
        let full = tmp.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("x"), "x").unwrap();
        assert!(link_token_dir(&full, &vol).is_err());
    }
}
