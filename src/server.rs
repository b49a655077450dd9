//! `tokenwarden serve` once its flags are resolved: [`build`] turns a [`Config`] into a
//! ready [`Server`] (it does the I/O: data-dir lock, certificates, keys, store, registry,
//! authenticators, token services, background tasks), and [`Server::run`] serves until the
//! stop future completes, then shuts the parts down in order.
//!
//! It must not read flags, the environment or signals: `cli` resolves the flags into a
//! [`Config`] (ripgrep's `LowArgs` → `HiArgs`) and hands over the stop future. It must not use
//! `agent`, `diagnose` or `bench`, and nothing but `cli` uses it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::SignedDuration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::admission::AutomountMode;
use crate::api::{self, AppState, ServerConfig, TokenServices};
use crate::clock::{SharedClock, SystemClock};
use crate::controllers::signing_keys::{self, KeyRotation};
use crate::controllers::{
    self, AlwaysLeader, ControllerConfig, LeaderGate, LeaseConfig, LeaseLeader,
};
use crate::pki::datadir::DataDirLock;
use crate::pki::serving::ServingCert;
use crate::pki::{self, Pki, PkiConfig};
use crate::rbac::{self, Authorizer};
use crate::registry::resources::Limits;
use crate::registry::{self, Registry};
use crate::reload::{self, Trigger};
use crate::store::{self, Store};
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;
use crate::tokens::authenticator::{
    self, AuthCache, AuthenticatorConfig, LegacyTokenUse, ServiceAccountAuthenticator,
};
use crate::tokens::claims::IssuerConfig;
use crate::tokens::issuer::Issuer;
use crate::tokens::keyring::Keyring;
use crate::tokens::keys::{KeySet, SigningKey, VerifyingKey};
use crate::tokens::oidc;
use crate::tokens::rotation::{Kek, TokenLifetimes};
use crate::tokens::static_tokens::{StaticTokens, TokenTable};
use crate::tokens::{AuthenticatorChain, UserInfo};
use crate::wellknown;

/// This replica's identity in the leader election, kept across restarts.
const REPLICA_ID_FILE: &str = "replica-id";

/// The store's file in the data directory (also what `tokenwarden backup` copies).
pub(crate) const DATABASE_FILE: &str = "tokenwarden.db";

/// How many revisions of history the store keeps for watches that resume (kine's
/// `compact-min-retain`), and how often it compacts.
const RETAINED_REVISIONS: i64 = 1000;
const COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

/// How often the store's `/readyz` check probes it (and how long a probe may take).
const STORE_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// How long the first read of the RBAC policy may take before the server gives up.
const POLICY_SYNC_LIMIT: Duration = Duration::from_secs(60);

/// How often the generated serving certificate is checked for renewal (it is renewed 30 days
/// before it expires).
const SERVING_RENEWAL_CHECK: Duration = Duration::from_secs(60 * 60);

/// How long a stop waits for open requests before closing connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Legacy token uses queued for the tracking controller before the authenticator drops them.
const LEGACY_USE_QUEUE: usize = 1024;

/// Descriptors kept free for the store, logs and key files when capping connections.
const RESERVED_FILES: u64 = 256;

/// Everything `tokenwarden serve` needs, validated and derived from its flags by `cli`; no
/// field needs further checking, and defaults that depend on files (the generated signing key,
/// this server's URL) are the `None`s documented below.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Where the objects live (`--etcd-*`).
    pub(crate) store: StoreConfig,
    /// Certificates and the data directory (`--data-dir`, `--bind-address`, `--secure-port`,
    /// `--tls-*`).
    pub(crate) pki: PkiConfig,
    /// Where the server listens.
    pub(crate) bind: SocketAddr,
    /// Published in the `kubernetes` Service's endpoints.
    pub(crate) advertise: SocketAddr,
    /// `--token-auth-file`.
    pub(crate) token_auth_file: Option<PathBuf>,
    /// `--service-account-issuer`, checked: the first signs, all are accepted.
    pub(crate) issuers: Vec<String>,
    /// `--api-audiences`, defaulting to the issuers.
    pub(crate) api_audiences: Vec<String>,
    /// `--service-account-signing-key-file`; `None`: the generated `DATA_DIR/sa.key`.
    pub(crate) signing_key_file: Option<PathBuf>,
    /// `--service-account-key-file`.
    pub(crate) verifying_key_files: Vec<PathBuf>,
    /// `--key-encryption-key-file`; `None`: the generated `DATA_DIR/key-encryption.key`.
    pub(crate) kek_file: Option<PathBuf>,
    /// `--service-account-max-token-expiration` in seconds; `None`: no maximum.
    pub(crate) max_expiration_seconds: Option<i64>,
    pub(crate) extend_expiration: bool,
    pub(crate) lookup_legacy: bool,
    /// `--service-account-jwks-uri`; `None`: this server's `/openid/v1/jwks`.
    pub(crate) jwks_uri: Option<String>,
    pub(crate) anonymous_issuer_discovery: bool,
    /// `--authorization-mode`.
    pub(crate) authorization_mode: rbac::Mode,
    /// `--leader-elect` and its settings (the identity is made at start); `None`: this
    /// replica runs the controllers alone.
    pub(crate) leader_election: Option<LeaseConfig>,
    pub(crate) audit_log_path: Option<PathBuf>,
    /// What pods mount, from `--emulated-version` (a Secret volume below 1.21).
    pub(crate) automount: AutomountMode,
    /// Whether every ServiceAccount gets a token Secret (`--emulated-version` below 1.24).
    pub(crate) auto_create_legacy_tokens: bool,
    pub(crate) legacy_cleanup_period: SignedDuration,
    /// The shortest token lifetime served (10 minutes unless a testing flag lowers it).
    pub(crate) min_token_expiration: i64,
    /// `--max-connections` as asked; [`build`] lowers it to fit the open-file limit.
    pub(crate) max_connections: usize,
    pub(crate) max_requests_inflight: usize,
    pub(crate) max_mutating_requests_inflight: usize,
    pub(crate) testing: Testing,
}

/// The store backend.
#[derive(Debug, Clone)]
pub(crate) enum StoreConfig {
    /// The embedded store, `DATA_DIR/tokenwarden.db`.
    Sqlite,
    /// etcd (`--etcd-servers`); the data dir still holds certificates and keys.
    Etcd(store::etcd::Options),
}

/// The UNSAFE `--testing-*` flags, kept apart so that [`build`] can warn about each one set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Testing {
    pub(crate) clock_offset: Option<SignedDuration>,
    pub(crate) create_delay: Option<Duration>,
    pub(crate) min_token_expiration: Option<i64>,
    pub(crate) key_retire_after: Option<i64>,
}

/// A server built from a [`Config`]: its parts are open and its controllers running, but it
/// does not listen until [`Server::run`].
pub(crate) struct Server {
    api: ServerConfig,
    state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Tasks,
    audit: Option<Arc<AuditLog>>,
    store: Arc<dyn Store>,
    /// Held until the store is closed, so that no second server opens the same database.
    data_dir_lock: DataDirLock,
    /// For the "serving on" line: this server's URL and its admin kubeconfig.
    url: String,
    kubeconfig: PathBuf,
}

/// Background tasks started by [`build`].
struct Tasks {
    controllers: JoinHandle<()>,
    compactor: JoinHandle<()>,
    invalidator: JoinHandle<()>,
    /// Keeps the authorizer's policy exact.
    policy: JoinHandle<()>,
    /// Probes the store for `/readyz`.
    health: JoinHandle<()>,
    /// Keeps the in-memory copy of the objects tokens name.
    cache: JoinHandle<()>,
    /// Re-read key, certificate and token files ([`reload`]), or renew the generated
    /// serving certificate; aborted at shutdown.
    reloads: Vec<JoinHandle<()>>,
}

/// Does the I/O that `serve` needs before it can listen, in this order: lock the data
/// directory, prepare certificates, open the store and registry, load keys and static
/// tokens, then start the compactor, the cache invalidator and the controllers.
pub(crate) async fn build(config: Config, reload: Trigger) -> anyhow::Result<Server> {
    let clock = server_clock(&config.testing);
    // 1. First, before anything in the directory is written: a second server on the same data
    //    dir stops here instead of both writing to one database.
    let data_dir_lock = pki::datadir::lock(&config.pki.data_dir)?;
    // 2. Certificates follow the real time even under --testing-clock-offset: clients verify
    //    them against their own clocks.
    let pki = pki::ensure(&config.pki, SystemClock::shared().now())
        .context("preparing certificates and keys")?;
    let serving_reload = serving_reload(&config.pki, &pki, &reload);
    // 3. The store with the objects tokens name held in memory in front of it, and the
    //    registry over it with the system namespaces in place.
    let (store, cache) = object_cache(open_store(&config).await?);
    let registry = open_registry(&config, store.clone(), clock.clone()).await?;
    // 4. The policy: the bootstrap roles repaired, then read whole before anything is served.
    let (authorizer, policy) = authorizer(&config, &registry).await?;
    // 5. Static users, keys, authenticators and the token services.
    let (statics, token_file_reload) =
        static_tokens(&pki, config.token_auth_file.as_deref(), &reload)?;
    let KeySources {
        keyring: keys,
        reload: key_reload,
        rotation,
    } = key_sources(&config, &pki, &registry, &clock, &reload).await?;
    let metrics = Arc::new(Metrics::new());
    let (authn, legacy_uses, invalidator) =
        authenticators(&config, statics, &keys, &registry, &clock, &metrics);
    let tokens = token_services(&config, &pki, &keys, clock.clone(), metrics)?;
    let audit = tokens.audit.clone();
    // 6. Background work; the controllers stop when `shutdown` turns true.
    let compactor = tokio::spawn(store::compact_periodically(
        store.clone(),
        COMPACTION_INTERVAL,
        RETAINED_REVISIONS,
    ));
    let (store_health, health_task) = store_health(&config, &store);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let controllers = spawn_controllers(
        &config,
        &pki,
        (keys, rotation),
        &registry,
        clock,
        legacy_uses,
        &shutdown_rx,
    )?;
    let state = AppState::new(
        registry,
        authn,
        config.bind.to_string(),
        shutdown_rx,
        tokens,
        authorizer,
    )
    .with_store_health(store_health);
    Ok(Server {
        api: api_config(&config, &pki)?,
        state,
        shutdown,
        tasks: Tasks {
            controllers,
            compactor,
            invalidator,
            policy,
            health: health_task,
            cache,
            reloads: [Some(key_reload), Some(serving_reload), token_file_reload]
                .into_iter()
                .flatten()
                .collect(),
        },
        audit,
        store,
        data_dir_lock,
        url: pki.server_url().to_string(),
        kubeconfig: std::path::absolute(pki.kubeconfig_path())
            .unwrap_or_else(|_| pki.kubeconfig_path().to_path_buf()),
    })
}

impl Server {
    /// Serves until `stop` completes, then drains requests, closes watches, waits for the
    /// controllers and closes the audit log and the store, in that order.
    pub(crate) async fn run(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            api,
            state,
            shutdown,
            tasks,
            audit,
            store,
            data_dir_lock,
            url,
            kubeconfig,
        } = self;
        let stop = async move {
            stop.await;
            tracing::info!("shutting down: draining requests and closing watches");
            let _ = shutdown.send(true);
        };
        api::serve(api, state, stop, move |addr| {
            tracing::info!(
                "tokenwarden {} serving on https://{addr} ({url}, Kubernetes {}) - export KUBECONFIG={}",
                env!("CARGO_PKG_VERSION"),
                wellknown::KUBE_GIT_VERSION,
                kubeconfig.display()
            );
        })
        .await
        .context("serving")?;
        // Controllers stop at the shutdown signal; wait so that no write races the close.
        let _ = tasks.controllers.await;
        tasks.compactor.abort();
        tasks.invalidator.abort();
        tasks.policy.abort();
        tasks.health.abort();
        tasks.cache.abort();
        tasks.reloads.iter().for_each(JoinHandle::abort);
        if let Some(audit) = audit {
            close_audit_log(&audit).await;
        }
        store.close().await.context("closing the store")?;
        drop(data_dir_lock);
        tracing::info!("stopped");
        Ok(())
    }
}

/// The store of [`Config::store`].
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.store {
        StoreConfig::Sqlite => {
            store::sqlite::SqliteStore::open(&config.pki.data_dir.join(DATABASE_FILE))
                .context("opening the store")?
        }
        StoreConfig::Etcd(options) => {
            let etcd = store::etcd::EtcdStore::connect(options)
                .await
                .with_context(|| {
                    format!("connecting to etcd at {}", options.endpoints.join(","))
                })?;
            tracing::info!(
                "storing objects in etcd at {} under {:?}",
                options.endpoints.join(","),
                options.prefix
            );
            Arc::new(etcd)
        }
    })
}

/// `backend` with ServiceAccounts, Secrets, Pods and Nodes answered from memory, and the
/// task that keeps them exact from the backend's watch.
fn object_cache(backend: Arc<dyn Store>) -> (Arc<dyn Store>, JoinHandle<()>) {
    let (root, ranges) = registry::cached_ranges();
    let (store, task) = store::cache::CachedStore::start(backend, &root, ranges);
    (store, task)
}

/// The store's `/readyz` check and the task that probes it: `etcd`, as kube-apiserver names
/// it, on etcd; the embedded store is part of the process and has nothing to probe.
fn store_health(config: &Config, store: &Arc<dyn Store>) -> (api::StoreHealth, JoinHandle<()>) {
    let (report, failure) = watch::channel(None);
    let name = match config.store {
        StoreConfig::Sqlite => {
            return (api::StoreHealth::always_ok("store"), tokio::spawn(async {}));
        }
        StoreConfig::Etcd(_) => "etcd",
    };
    let task = tokio::spawn(store::check_health_periodically(
        store.clone(),
        STORE_HEALTH_INTERVAL,
        report,
    ));
    (api::StoreHealth { name, failure }, task)
}

/// The authorizer of `--authorization-mode`, with the bootstrap policy reconciled and the
/// whole policy read, and the task that keeps it exact.
async fn authorizer(
    config: &Config,
    registry: &Registry,
) -> anyhow::Result<(Arc<Authorizer>, JoinHandle<()>)> {
    rbac::bootstrap::reconcile(registry)
        .await
        .context("reconciling the bootstrap RBAC policy")?;
    let authorizer = Arc::new(Authorizer::new(
        config.authorization_mode,
        config.anonymous_issuer_discovery,
    ));
    let follow = tokio::spawn(authorizer.follow(registry.clone()));
    tokio::time::timeout(POLICY_SYNC_LIMIT, authorizer.synced())
        .await
        .context("reading the RBAC policy took too long")?;
    if config.authorization_mode == rbac::Mode::AlwaysAllow {
        tracing::warn!(
            "--authorization-mode=AlwaysAllow: every request is allowed, anonymous ones included; never use this outside tests"
        );
    }
    Ok((authorizer, follow))
}

/// The server's clock: the system's, or shifted by `--testing-clock-offset`.
fn server_clock(testing: &Testing) -> SharedClock {
    match testing.clock_offset {
        Some(offset) => {
            tracing::warn!(
                "--testing-clock-offset={offset}: the server clock is shifted; never use this outside tests"
            );
            SystemClock::with_offset(offset)
        }
        None => SystemClock::shared(),
    }
}

/// The registry over `store`, with its limits and the system namespaces in place.
async fn open_registry(
    config: &Config,
    store: Arc<dyn Store>,
    clock: SharedClock,
) -> anyhow::Result<Registry> {
    if let Some(secs) = config.testing.min_token_expiration {
        tracing::warn!(
            "--testing-min-token-expiration={secs}s: tokens may be shorter than 10 minutes; never use this outside tests"
        );
    }
    let mut registry = Registry::new(store, clock).with_limits(Limits {
        min_token_expiration: config.min_token_expiration,
    });
    if let Some(delay) = config.testing.create_delay {
        tracing::warn!(
            "--testing-create-delay={}s: every create waits before it is written; never use this outside tests",
            delay.as_secs()
        );
        registry = registry.with_testing_create_delay(delay);
    }
    registry
        .ensure_system_namespaces()
        .await
        .context("creating the system namespaces")?;
    Ok(registry)
}

/// The admin token of `admin.kubeconfig`, plus the users of `--token-auth-file` and the task
/// that re-reads that file when it changes (a broken file is refused, its users before stay).
fn static_tokens(
    pki: &Pki,
    token_auth_file: Option<&Path>,
    trigger: &Trigger,
) -> anyhow::Result<(Arc<StaticTokens>, Option<JoinHandle<()>>)> {
    let mut admin = TokenTable::default();
    admin.insert(
        pki.admin_token(),
        UserInfo {
            username: "admin".into(),
            uid: "admin-uid".into(),
            groups: vec![wellknown::GROUP_MASTERS.into()],
            extra: Default::default(),
        },
    );
    let Some(path) = token_auth_file else {
        return Ok((
            Arc::new(StaticTokens::new(admin, TokenTable::default())),
            None,
        ));
    };
    let statics = Arc::new(StaticTokens::new(admin, load_token_file(path)?));
    let (path, tokens) = (path.to_path_buf(), statics.clone());
    let reload = reload::follow(
        "token file (--token-auth-file)",
        vec![path.clone()],
        trigger,
        move || load_token_file(&path),
        move |file| tokens.replace_file(file),
    );
    Ok((statics, Some(reload)))
}

/// The users of a `--token-auth-file`; errors name the file and line, never a token.
fn load_token_file(path: &Path) -> anyhow::Result<TokenTable> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    TokenTable::from_csv(&text).with_context(|| format!("parsing {}", path.display()))
}

/// What keeps the serving certificate current for new connections: the `--tls-cert-file`
/// pair re-read when either file changes (a broken pair is refused, the old one served), or
/// the generated certificate renewed from the CA before it expires.
fn serving_reload(config: &PkiConfig, pki: &Pki, trigger: &Trigger) -> JoinHandle<()> {
    let serving = pki.serving_cert();
    let anchor = pki.ca_pem().to_string();
    let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_private_key_file) else {
        return tokio::spawn(renew_serving_periodically(
            config.clone(),
            anchor,
            serving,
            trigger.subscribe(),
        ));
    };
    let (cert, key) = (cert.clone(), key.clone());
    reload::follow(
        "serving certificate (--tls-cert-file, --tls-private-key-file)",
        vec![cert.clone(), key.clone()],
        trigger,
        move || Ok(pki::load_user_pair(&cert, &key, Some(&anchor))?),
        move |pair| serving.replace(pair),
    )
}

/// Every [`SERVING_RENEWAL_CHECK`] and on SIGHUP, renews the generated serving certificate
/// if it is due ([`pki::renew_serving`]); a failure is logged and the current one stays.
/// Ends when `fired`'s trigger is dropped.
async fn renew_serving_periodically(
    config: PkiConfig,
    ca_pem: String,
    serving: Arc<ServingCert>,
    mut fired: watch::Receiver<u64>,
) {
    let mut tick = tokio::time::interval(SERVING_RENEWAL_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and start-up has just checked.
    tick.tick().await;
    loop {
        tokio::select! {
            changed = fired.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        match pki::renew_serving(&config, &ca_pem, SystemClock::shared().now()) {
            Ok(Some(pair)) => {
                serving.replace(pair);
                tracing::info!("renewed the generated serving certificate");
            }
            Ok(None) => {}
            Err(e) => tracing::error!(
                "cannot renew the serving certificate: {e}; the current one stays in use"
            ),
        }
    }
}

/// Where the signing keys come from, and what keeps them current.
struct KeySources {
    keyring: Arc<Keyring>,
    /// Re-reads the key files.
    reload: JoinHandle<()>,
    /// The generated keys' rotation (none with `--service-account-signing-key-file`).
    rotation: Option<KeyRotation>,
}

/// The key ring: the signing key file with the verifying key files ([`file_keys`]), or,
/// without a signing key file, the generated keys' ring in the store ([`stored_keys`]).
async fn key_sources(
    config: &Config,
    pki: &Pki,
    registry: &Registry,
    clock: &SharedClock,
    trigger: &Trigger,
) -> anyhow::Result<KeySources> {
    match config.signing_key_file.clone() {
        Some(signing_path) => file_keys(config, signing_path, trigger),
        None => stored_keys(config, pki, registry, clock, trigger).await,
    }
}

/// The signing key file and the verifying key files, reloaded when they change.
fn file_keys(
    config: &Config,
    signing_path: PathBuf,
    trigger: &Trigger,
) -> anyhow::Result<KeySources> {
    // A status file from a run on generated keys would describe keys not in use.
    let _ = std::fs::remove_file(config.pki.data_dir.join(signing_keys::STATUS_FILE));
    let verifying_paths = config.verifying_key_files.clone();
    let keyring = Keyring::new(load_keys(&signing_path, &verifying_paths)?);
    let mut paths = verifying_paths.clone();
    paths.push(signing_path.clone());
    let ring = keyring.clone();
    let reload = reload::follow(
        "service-account keys",
        paths,
        trigger,
        move || load_keys(&signing_path, &verifying_paths),
        move |keys| ring.replace(keys),
    );
    Ok(KeySources {
        keyring,
        reload,
        rotation: None,
    })
}

/// The generated keys' ring in the store (made from `DATA_DIR/sa.key` on first start),
/// opened with the key-encryption key, with the verifying key files reloaded beside it, and
/// its rotation.
async fn stored_keys(
    config: &Config,
    pki: &Pki,
    registry: &Registry,
    clock: &SharedClock,
    trigger: &Trigger,
) -> anyhow::Result<KeySources> {
    let kek_path = config
        .kek_file
        .clone()
        .unwrap_or_else(|| pki.kek_path().to_path_buf());
    let kek = Kek::from_file_content(
        &std::fs::read_to_string(&kek_path)
            .with_context(|| format!("reading {}", kek_path.display()))?,
    )
    .with_context(|| format!("loading the key-encryption key {}", kek_path.display()))?;
    let first = std::fs::read(pki.sa_key_path())
        .with_context(|| format!("reading {}", pki.sa_key_path().display()))?;
    let (ring, revision) = signing_keys::load_or_create(registry, &kek, &first, clock.now())
        .await
        .context("reading the signing keys from the store")?;
    let keyring = Keyring::new(ring.key_set(&kek).context("opening the signing keys")?);
    let verifying_paths = config.verifying_key_files.clone();
    keyring.set_extra(load_verifying_keys(&verifying_paths)?);
    let ring = keyring.clone();
    let reload = reload::follow(
        "service-account verifying keys",
        verifying_paths.clone(),
        trigger,
        move || load_verifying_keys(&verifying_paths),
        move |keys| ring.set_extra(keys),
    );
    let rotation = KeyRotation {
        registry: registry.clone(),
        kek: Arc::new(kek),
        keyring: keyring.clone(),
        lifetimes: token_lifetimes(config),
        clock: clock.clone(),
        data_dir: config.pki.data_dir.clone(),
        trigger: trigger.clone(),
        seen: revision,
    };
    Ok(KeySources {
        keyring,
        reload,
        rotation: Some(rotation),
    })
}

/// How long a rotated-out key verifies: the longest token lifetime, or the testing flag's.
fn token_lifetimes(config: &Config) -> TokenLifetimes {
    match config.testing.key_retire_after {
        Some(secs) => {
            tracing::warn!(
                "--testing-key-retire-after={secs}s: rotated-out keys stop verifying early; never use this outside tests"
            );
            TokenLifetimes {
                longest: SignedDuration::from_secs(secs),
            }
        }
        None => TokenLifetimes::from_flags(config.max_expiration_seconds, config.extend_expiration),
    }
}

/// The keys of every file of `--service-account-key-file`.
fn load_verifying_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<VerifyingKey>> {
    let mut verifying = Vec::new();
    for path in paths {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        verifying.extend(
            VerifyingKey::from_pem_all(&pem)
                .with_context(|| format!("loading {}", path.display()))?,
        );
    }
    Ok(verifying)
}

/// The signing key of `signing_path` and the verifying keys of `verifying_paths`.
fn load_keys(signing_path: &Path, verifying_paths: &[PathBuf]) -> anyhow::Result<KeySet> {
    let signing = SigningKey::from_pem(
        &std::fs::read(signing_path)
            .with_context(|| format!("reading {}", signing_path.display()))?,
    )
    .with_context(|| format!("loading the signing key {}", signing_path.display()))?;
    Ok(KeySet::new(
        Some(signing),
        load_verifying_keys(verifying_paths)?,
    ))
}

/// The static users, then service-account tokens; legacy token uses go to the returned
/// receiver (for the tracking controller, which stamps the last-used label), and the returned
/// task drops cached lookups when their objects change.
fn authenticators(
    config: &Config,
    statics: Arc<StaticTokens>,
    keys: &Arc<Keyring>,
    registry: &Registry,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
) -> (
    AuthenticatorChain,
    mpsc::Receiver<LegacyTokenUse>,
    JoinHandle<()>,
) {
    let cache = Arc::new(AuthCache::default());
    let (legacy_tx, legacy_rx) = mpsc::channel(LEGACY_USE_QUEUE);
    let mut authn = AuthenticatorChain::default();
    authn.push(Box::new(statics));
    authn.push(Box::new(
        ServiceAccountAuthenticator::new(
            AuthenticatorConfig {
                issuers: config.issuers.clone(),
                api_audiences: config.api_audiences.clone(),
                lookup_legacy: config.lookup_legacy,
            },
            keys.clone(),
            Arc::new(registry.clone()),
            clock.clone(),
            metrics.clone(),
            cache.clone(),
        )
        .with_legacy_use_sink(legacy_tx),
    ));
    let invalidator = tokio::spawn(authenticator::invalidate_from_watch(
        registry.clone(),
        cache,
    ));
    (authn, legacy_rx, invalidator)
}

/// The issuer, the OIDC discovery documents and the audit log, as the API serves them.
fn token_services(
    config: &Config,
    pki: &Pki,
    keys: &Arc<Keyring>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) -> anyhow::Result<TokenServices> {
    let issuer = Arc::new(Issuer::new(
        IssuerConfig {
            issuers: config.issuers.clone(),
            api_audiences: config.api_audiences.clone(),
            max_expiration_seconds: config.max_expiration_seconds,
            extend_expiration: config.extend_expiration,
            min_expiration_seconds: config.min_token_expiration,
        },
        keys.clone(),
        clock,
    ));
    let jwks_uri = config
        .jwks_uri
        .clone()
        .unwrap_or_else(|| format!("{}{}", pki.server_url(), wellknown::OIDC_JWKS_PATH));
    let first_issuer = config.issuers.first().cloned().unwrap_or_default();
    // Without discovery the server still runs; only the OIDC endpoints answer 404.
    let oidc = oidc::build(&first_issuer, &jwks_uri, keys.clone())
        .inspect_err(|e| tracing::warn!("{e}"))
        .ok();
    let audit = match &config.audit_log_path {
        Some(path) => {
            Some(Arc::new(AuditLog::open(path).with_context(|| {
                format!("opening the audit log {}", path.display())
            })?))
        }
        None => None,
    };
    Ok(TokenServices {
        issuer: Some(issuer),
        api_audiences: config.api_audiences.clone(),
        oidc,
        metrics,
        audit,
        automount: config.automount,
    })
}

/// Starts the controllers; they stop when `shutdown` turns true.
fn spawn_controllers(
    config: &Config,
    pki: &Pki,
    (keys, rotation): (Arc<Keyring>, Option<KeyRotation>),
    registry: &Registry,
    clock: SharedClock,
    legacy_uses: mpsc::Receiver<LegacyTokenUse>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    // The election runs beside the controllers and ends with them, releasing the Lease.
    let mut election_task = None;
    let leader: Arc<dyn LeaderGate> = match &config.leader_election {
        Some(lease) => {
            let lease = LeaseConfig {
                identity: leader_identity(&config.pki.data_dir)?,
                ..lease.clone()
            };
            tracing::info!(identity = %lease.identity, lease = %format!("{}/{}", lease.namespace, lease.name), "leader election");
            let (gate, election) =
                LeaseLeader::start(registry.clone(), clock.clone(), lease, shutdown.clone());
            election_task = Some(tokio::spawn(election));
            gate
        }
        None => Arc::new(AlwaysLeader),
    };
    // Every replica follows the signing keys; the leader moves their stages.
    let rotation =
        rotation.map(|rotation| tokio::spawn(rotation.run(leader.clone(), shutdown.clone())));
    let controllers = controllers::run(
        registry.clone(),
        clock,
        ControllerConfig {
            auto_create_legacy_tokens: config.auto_create_legacy_tokens,
            legacy_cleanup_period: config.legacy_cleanup_period,
            api_endpoint: Some(config.advertise),
            ..ControllerConfig::new(pki.ca_pem().to_string(), keys)
        },
        legacy_uses,
        leader,
        shutdown.clone(),
    );
    Ok(tokio::spawn(async move {
        controllers.await;
        if let Some(rotation) = rotation {
            let _ = rotation.await;
        }
        if let Some(election) = election_task {
            let _ = election.await;
        }
    }))
}

/// This replica's identity in the leader election: `<hostname>_<uuid>`, as
/// kube-controller-manager makes it, with the uuid kept in the data directory
/// ([`REPLICA_ID_FILE`]). A restart after `kill -9` then renews its own Lease at once instead
/// of waiting out the lease duration: the data-dir lock proves the old process is gone.
fn leader_identity(data_dir: &Path) -> anyhow::Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tokenwarden".to_string());
    let path = data_dir.join(REPLICA_ID_FILE);
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if uuid::Uuid::parse_str(id.trim()).is_ok() => id.trim().to_string(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    Ok(format!("{host}_{id}"))
}

/// The listener's configuration: TLS from the certificates, and the connection and
/// in-flight limits.
fn api_config(config: &Config, pki: &Pki) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig {
        bind: config.bind,
        tls: pki
            .server_tls_config()
            .context("building the TLS configuration")?,
        shutdown_grace: SHUTDOWN_GRACE,
        max_connections: connection_cap(config.max_connections),
        max_requests_inflight: config.max_requests_inflight,
        max_mutating_requests_inflight: config.max_mutating_requests_inflight,
    })
}

/// Flushes the audit log and reports what it could not write.
async fn close_audit_log(audit: &AuditLog) {
    audit.close().await;
    if audit.dropped() > 0 || audit.write_errors() > 0 {
        tracing::warn!(
            "audit log: {} events dropped, {} write errors",
            audit.dropped(),
            audit.write_errors()
        );
    }
}

/// `--max-connections`, lowered to what the open-file limit allows once raised to its
/// hard maximum (each connection is a descriptor).
fn connection_cap(asked: usize) -> usize {
    match api::raise_open_file_limit() {
        Ok(limit) => {
            let fits = usize::try_from(limit.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
            if fits < asked {
                tracing::warn!(
                    "open-file limit {limit}: serving at most {fits} connections (--max-connections={asked})"
                );
            }
            asked.min(fits.max(1))
        }
        Err(e) => {
            tracing::warn!("could not raise the open-file limit: {e}");
            asked
        }
    }
}
