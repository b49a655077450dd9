//! The command line: clap definitions for each subcommand, resolution of flags into the
//! typed configs of the modules, and the one place where the parts are wired together.
//! Nothing imports this module.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use jiff::SignedDuration;

use crate::admission::AutomountMode;
use crate::agent::{self, AgentConfig, RunConfig};
use crate::api::{self, AppState, ServerConfig, TokenServices};
use crate::bench;
use crate::clock::SystemClock;
use crate::controllers::{self, AlwaysLeader, ControllerConfig};
use crate::diagnose::{self, DiagnoseConfig};
use crate::pki::{self, PkiConfig};
use crate::registry::Registry;
use crate::registry::resources::Limits;
use crate::store::{self, Store};
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{self, LogFormat};
use crate::tokens::authenticator::{
    self, AuthCache, AuthenticatorConfig, ServiceAccountAuthenticator,
};
use crate::tokens::issuer::{self, Issuer, IssuerConfig};
use crate::tokens::keys::{KeySet, SigningKey, VerifyingKey};
use crate::tokens::oidc;
use crate::tokens::static_tokens::StaticTokens;
use crate::tokens::{AuthenticatorChain, UserInfo};
use crate::wellknown;

/// A Kubernetes-compatible service-account token server.
#[derive(Debug, Parser)]
#[command(name = "tokenwarden", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server (TLS; embedded SQLite store in the data directory).
    Serve(ServeArgs),
    /// Load a running server and print throughput and latency figures.
    Bench(bench::BenchArgs),
    /// Run the node agent: register a Node, and write the service-account tokens and other
    /// volumes of its Pods as the kubelet does (works against any cluster).
    Agent(AgentArgs),
    /// Run a command as a Pod on a node, with its service-account volume at the standard
    /// path; an agent for that Pod is embedded, so no separate agent process is needed.
    Run(RunArgs),
    /// Audit a cluster (tokenwarden or Kubernetes) for stale and legacy service-account
    /// tokens and the clients behind them. Exit code 0: clean, 1: findings at or above
    /// --fail-on, 2: could not run.
    Diagnose(DiagnoseArgs),
    /// Copy the database of a server, running or stopped, into OUT (one consistent snapshot,
    /// safe while the server writes). A full backup also needs the key files of the data
    /// directory: see the README.
    Backup(BackupArgs),
}

/// `tokenwarden backup`.
#[derive(Debug, Args)]
struct BackupArgs {
    /// The server's data directory (its tokenwarden.db is copied).
    #[arg(long, default_value = "tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
    data_dir: PathBuf,
    /// Where to write the copy (a SQLite file, mode 0600; replaced atomically if it exists).
    out: PathBuf,
}

/// `tokenwarden diagnose`.
#[derive(Debug, Args)]
struct DiagnoseArgs {
    /// The kubeconfig to use (its current context); default: KUBECONFIG, ~/.kube/config or
    /// the in-cluster configuration.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// An audit.k8s.io/v1 JSON-lines audit log (kube-apiserver's --audit-log-path) to name
    /// the clients behind stale and legacy tokens.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Report format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: diagnose::OutputFormat,
    /// Exit 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value = "warning")]
    fail_on: diagnose::Severity,
}

/// `tokenwarden agent`.
#[derive(Debug, Args)]
struct AgentArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// This node's name (the Node object and the Pods' spec.nodeName).
    #[arg(long)]
    node_name: String,
    /// Where Pod volumes are written: ROOT/pods/<uid>/volumes/<plugin>/<volume>.
    #[arg(long, default_value = "/var/lib/tokenwarden")]
    root_dir: PathBuf,
    /// How often every Pod's volumes are rebuilt (so ConfigMap/Secret changes propagate).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    sync_period: i64,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// `tokenwarden run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// The kubeconfig to reach the API server with; its server becomes
    /// KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The node the Pod is placed on.
    #[arg(long)]
    node_name: String,
    /// Where the Pod's volumes are written (default: a temporary directory, removed after).
    #[arg(long)]
    root_dir: Option<PathBuf>,
    /// The Pod's namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// The Pod's ServiceAccount (default: `default`).
    #[arg(long)]
    service_account: Option<String>,
    /// The Pod's name (default: generated, tokenwarden-run-xxxxx).
    #[arg(long)]
    name: Option<String>,
    /// Make DIR a symlink to the token volume instead of mounting it at
    /// /var/run/secrets/kubernetes.io/serviceaccount (which needs root).
    #[arg(long, value_name = "DIR")]
    token_dir: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Flags named as kube-apiserver's where they mean the same thing.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory for the store, keys, certificates and admin.kubeconfig (created 0700).
    #[arg(long, default_value = "tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Address published in the `kubernetes` Service's endpoints (default: the bind
    /// address, or loopback when that is unspecified).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Port to serve HTTPS on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Serving certificate (PEM chain); with --tls-private-key-file, replaces the generated one.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Extra subject alternative names (IP or DNS) for the generated serving certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Static users: CSV lines `token,user,uid,"group1,group2"` (kube-apiserver's format).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Issuer of service-account tokens (repeatable): the first signs, all are accepted.
    #[arg(long = "service-account-issuer", default_value = wellknown::DEFAULT_ISSUER)]
    service_account_issuer: Vec<String>,
    /// Audiences a token must have to call this server, and the default audiences of a
    /// TokenRequest (comma-separated; default: the issuers).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// PEM private key (RSA, or EC P-256/384/521) that signs service-account tokens
    /// (default: the generated DATA_DIR/sa.key).
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// PEM public or private keys that verify service-account tokens (repeatable); the
    /// signing key always verifies too. Keep an old key here to rotate without breaking tokens.
    #[arg(long = "service-account-key-file")]
    service_account_key_file: Vec<PathBuf>,
    /// Longest lifetime a TokenRequest gets (e.g. 24h); longer requests are shortened
    /// with a warning. Between 1h and 2^32 s; 0 means no maximum.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    service_account_max_token_expiration: i64,
    /// Give the 3607 s admission token a one-year lifetime with a `warnafter` claim, so
    /// clients that never reload their token keep working and show up as stale.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    service_account_extend_token_expiration: bool,
    /// Check legacy (Secret) tokens against their Secret and ServiceAccount.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    service_account_lookup: bool,
    /// The `jwks_uri` of the OIDC discovery document (default: this server's /openid/v1/jwks).
    #[arg(long)]
    service_account_jwks_uri: Option<String>,
    /// Let unauthenticated clients read /.well-known/openid-configuration and
    /// /openid/v1/jwks (for external verifiers such as Vault or cloud IAM).
    #[arg(long)]
    anonymous_issuer_discovery: bool,
    /// Write an audit.k8s.io/v1 event (Metadata level) per request to this file.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// Behave as this Kubernetes version does (`1.23` or `kube=1.23`): below 1.24 every
    /// ServiceAccount gets an auto-created token Secret; below 1.21 pods mount that Secret
    /// instead of a projected token. For rehearsing the migration the seeds describe.
    #[arg(long, value_parser = parse_emulated_version, default_value = "1.32")]
    emulated_version: u32,
    /// How long an auto-generated legacy token Secret may go unused before it is marked
    /// invalid, and how long after that it is deleted (kube-controller-manager's flag).
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    legacy_service_account_token_clean_up_period: i64,
    /// Requests (other than watches) served at once; past it, 429 with Retry-After
    /// (kube-apiserver's flag; 0: no limit).
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests (create, update, patch, delete) served at once (0: no limit).
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Connections open at once; more are closed on arrival. Lowered to fit the open-file
    /// limit, which is first raised to its hard maximum.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// UNSAFE, for tests only: run the server's clock this far ahead (e.g. 2h), to make
    /// tokens expire or turn stale without waiting.
    #[arg(long, value_parser = parse_signed_duration)]
    testing_clock_offset: Option<SignedDuration>,
    /// UNSAFE, for tests only: pause this long (e.g. 2s) between admitting a create into a
    /// namespace and writing it, so a create can be made to race the namespace's deletion.
    #[arg(long, value_parser = parse_duration)]
    testing_create_delay: Option<i64>,
    /// UNSAFE, for tests only: allow TokenRequests and projected tokens shorter than the
    /// 10-minute minimum (e.g. 30s), so token refresh can be watched without waiting.
    #[arg(long, value_parser = parse_duration)]
    testing_min_token_expiration: Option<i64>,
}

/// A Go-style duration (`600s`, `1h30m`, `8760h`) as whole seconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let d = parse_signed_duration(s)?;
    if d.is_negative() {
        return Err(format!("{s:?} is negative"));
    }
    Ok(d.as_secs())
}

fn parse_signed_duration(s: &str) -> Result<SignedDuration, String> {
    if s == "0" {
        return Ok(SignedDuration::ZERO);
    }
    s.parse::<SignedDuration>()
        .map_err(|e| format!("{s:?} is not a duration such as 600s, 1h30m or 8760h: {e}"))
}

/// `--emulated-version`: `1.23`, `v1.23` or `kube=1.23`, as the minor version. Kubernetes
/// itself emulates only one release back; older versions are allowed here on purpose, to
/// rehearse the 1.21 and 1.24 changes.
fn parse_emulated_version(s: &str) -> Result<u32, String> {
    let v = s.strip_prefix("kube=").unwrap_or(s);
    let v = v.strip_prefix('v').unwrap_or(v);
    let (major, minor) = v
        .split_once('.')
        .ok_or_else(|| format!("{s:?} is not a version such as 1.23"))?;
    let minor: u32 = minor
        .parse()
        .map_err(|_| format!("{s:?} is not a version such as 1.23"))?;
    let newest: u32 = wellknown::KUBE_MINOR.parse().unwrap_or(32);
    if major != "1" || !(16..=newest).contains(&minor) {
        return Err(format!(
            "emulated version {s:?} must be between 1.16 and 1.{newest}"
        ));
    }
    Ok(minor)
}

/// The checks kube-apiserver makes of `--service-account-issuer`.
fn check_issuers(issuers: &[String]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for i in issuers {
        if i.is_empty() {
            anyhow::bail!("--service-account-issuer may not be empty");
        }
        if i.contains(':') && !(i.starts_with("https://") || i.starts_with("http://")) {
            anyhow::bail!("--service-account-issuer {i:?} contained a ':' but was not a valid URL");
        }
        if !seen.insert(i) {
            anyhow::bail!("--service-account-issuer {i:?} is given twice");
        }
    }
    Ok(())
}

/// Parses the command line and runs it; the exit code is 0 on success, 1 on failure.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            telemetry::init_logging(args.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(args) => {
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")
                .and_then(|runtime| runtime.block_on(bench::run(args)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Diagnose(args) => {
            let config = DiagnoseConfig {
                kubeconfig: args.kubeconfig,
                audit_log: args.audit_log,
                output: args.output,
                fail_on: args.fail_on,
            };
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    ExitCode::from(runtime.block_on(diagnose::run(config, SystemClock::shared())))
                }
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Backup(args) => {
            let src = args.data_dir.join(DATABASE_FILE);
            match store::sqlite::backup(&src, &args.out) {
                Ok(copy) => {
                    println!(
                        "backed up {} at revision {} ({} objects, {} bytes) to {}",
                        src.display(),
                        copy.revision,
                        copy.keys,
                        copy.bytes,
                        args.out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: backing up {}: {e}", src.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Agent(args) => {
            telemetry::init_logging(args.log_format);
            let config = AgentConfig {
                kubeconfig: args.kubeconfig,
                node_name: args.node_name,
                root_dir: args.root_dir,
                sync_period: Duration::from_secs(args.sync_period.max(1) as u64),
            };
            let result = block_on(async move {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    let _ = tx.send(true);
                });
                agent::run_agent(config, SystemClock::shared(), rx).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            telemetry::init_logging(args.log_format);
            let config = RunConfig {
                kubeconfig: args.kubeconfig,
                node_name: args.node_name,
                root_dir: args.root_dir,
                namespace: args.namespace,
                service_account: args.service_account,
                name: args.name,
                token_dir: args.token_dir,
                command: args.command,
                sync_period: Duration::from_secs(10),
            };
            match block_on(agent::run_command(config, SystemClock::shared())) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs `fut` on a new multi-threaded runtime.
fn block_on<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fut)
}

/// The store's file in the data directory.
const DATABASE_FILE: &str = "tokenwarden.db";

/// How many revisions of history the store keeps for watches that resume (kine's
/// `compact-min-retain`), and how often it compacts.
const RETAINED_REVISIONS: i64 = 1000;
const COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let clock = match args.testing_clock_offset {
        Some(offset) => {
            tracing::warn!(
                "--testing-clock-offset={offset}: the server clock is shifted; never use this outside tests"
            );
            SystemClock::with_offset(offset)
        }
        None => SystemClock::shared(),
    };
    // First, before anything in the directory is written: a second server on the same data
    // dir stops here instead of both writing to one database.
    let data_dir_lock = pki::datadir::lock(&args.data_dir)?;
    let pki = pki::ensure(
        &PkiConfig {
            data_dir: args.data_dir.clone(),
            bind_address: args.bind_address,
            port: args.secure_port,
            extra_sans: args.tls_san.clone(),
            tls_cert_file: args.tls_cert_file.clone(),
            tls_private_key_file: args.tls_private_key_file.clone(),
        },
        // Certificates follow the real time even under --testing-clock-offset: clients
        // verify them against their own clocks.
        SystemClock::shared().now(),
    )
    .context("preparing certificates and keys")?;

    let store: Arc<dyn Store> =
        store::sqlite::SqliteStore::open(&args.data_dir.join(DATABASE_FILE))
            .context("opening the store")?;
    let min_token_expiration = match args.testing_min_token_expiration {
        Some(secs) => {
            tracing::warn!(
                "--testing-min-token-expiration={secs}s: tokens may be shorter than 10 minutes; never use this outside tests"
            );
            secs
        }
        None => issuer::MIN_EXPIRATION_SECONDS,
    };
    let mut registry = Registry::new(store.clone(), clock.clone()).with_limits(Limits {
        min_token_expiration,
    });
    if let Some(secs) = args.testing_create_delay {
        tracing::warn!(
            "--testing-create-delay={secs}s: every create waits before it is written; never use this outside tests"
        );
        registry = registry.with_testing_create_delay(Duration::from_secs(secs.unsigned_abs()));
    }
    registry
        .ensure_system_namespaces()
        .await
        .context("creating the system namespaces")?;

    let mut statics = StaticTokens::default();
    statics.insert(
        pki.admin_token(),
        UserInfo {
            username: "admin".into(),
            uid: "admin-uid".into(),
            groups: vec![wellknown::GROUP_MASTERS.into()],
            extra: Default::default(),
        },
    );
    if let Some(path) = &args.token_auth_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        statics
            .add_csv(&text)
            .with_context(|| format!("parsing {}", path.display()))?;
    }
    let mut authn = AuthenticatorChain::default();
    authn.push(Box::new(statics));

    // Service-account tokens: keys, issuance, authentication, discovery.
    check_issuers(&args.service_account_issuer)?;
    let max = args.service_account_max_token_expiration;
    if max != 0 && !(3600..=(1_i64 << 32)).contains(&max) {
        anyhow::bail!(
            "the service-account-max-token-expiration must be between 1 hour and 2^32 seconds"
        );
    }
    let api_audiences = if args.api_audiences.is_empty() {
        args.service_account_issuer.clone()
    } else {
        args.api_audiences.clone()
    };
    let signing_path = args
        .service_account_signing_key_file
        .clone()
        .unwrap_or_else(|| pki.sa_key_path().to_path_buf());
    let signing = SigningKey::from_pem(
        &std::fs::read(&signing_path)
            .with_context(|| format!("reading {}", signing_path.display()))?,
    )
    .with_context(|| format!("loading the signing key {}", signing_path.display()))?;
    let mut verifying = Vec::new();
    for path in &args.service_account_key_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        verifying.extend(
            VerifyingKey::from_pem_all(&pem)
                .with_context(|| format!("loading {}", path.display()))?,
        );
    }
    let keys = Arc::new(KeySet::new(Some(signing), verifying));
    let metrics = Arc::new(Metrics::new());
    let cache = Arc::new(AuthCache::default());
    // Legacy token uses go to the tracking controller, which stamps the last-used label.
    let (legacy_tx, legacy_rx) = tokio::sync::mpsc::channel(1024);
    authn.push(Box::new(
        ServiceAccountAuthenticator::new(
            AuthenticatorConfig {
                issuers: args.service_account_issuer.clone(),
                api_audiences: api_audiences.clone(),
                lookup_legacy: args.service_account_lookup,
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
    let issuer = Arc::new(Issuer::new(
        IssuerConfig {
            issuers: args.service_account_issuer.clone(),
            api_audiences: api_audiences.clone(),
            max_expiration_seconds: (max != 0).then_some(max),
            extend_expiration: args.service_account_extend_token_expiration,
            min_expiration_seconds: min_token_expiration,
        },
        keys.clone(),
        clock.clone(),
    ));
    let jwks_uri = args
        .service_account_jwks_uri
        .clone()
        .unwrap_or_else(|| format!("{}/openid/v1/jwks", pki.server_url()));
    let first_issuer = args
        .service_account_issuer
        .first()
        .cloned()
        .unwrap_or_default();
    let oidc = match oidc::build(&first_issuer, &jwks_uri, &keys) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    };
    let audit = match &args.audit_log_path {
        Some(path) => {
            Some(Arc::new(AuditLog::open(path).with_context(|| {
                format!("opening the audit log {}", path.display())
            })?))
        }
        None => None,
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let compactor = tokio::spawn(store::compact_periodically(
        store.clone(),
        COMPACTION_INTERVAL,
        RETAINED_REVISIONS,
    ));

    let bind = SocketAddr::new(args.bind_address, args.secure_port);
    let audit_handle = audit.clone();
    let tokens = TokenServices {
        issuer: Some(issuer),
        api_audiences,
        oidc,
        anonymous_oidc: args.anonymous_issuer_discovery,
        metrics,
        audit,
        automount: if args.emulated_version < 21 {
            AutomountMode::LegacySecret
        } else {
            AutomountMode::Projected
        },
    };
    let controllers = tokio::spawn(controllers::run(
        registry.clone(),
        clock.clone(),
        ControllerConfig {
            auto_create_legacy_tokens: args.emulated_version < 24,
            legacy_cleanup_period: SignedDuration::from_secs(
                args.legacy_service_account_token_clean_up_period,
            ),
            api_endpoint: Some(SocketAddr::new(
                advertise_address(args.advertise_address, args.bind_address),
                bind.port(),
            )),
            ..ControllerConfig::new(pki.ca_pem().to_string(), keys.clone())
        },
        legacy_rx,
        Arc::new(AlwaysLeader),
        shutdown_rx.clone(),
    ));
    let state = AppState::new(registry, authn, bind.to_string(), shutdown_rx, tokens);
    let config = ServerConfig {
        bind,
        tls: pki
            .server_tls_config()
            .context("building the TLS configuration")?,
        shutdown_grace: Duration::from_secs(10),
        max_connections: connection_cap(args.max_connections),
        max_requests_inflight: args.max_requests_inflight,
        max_mutating_requests_inflight: args.max_mutating_requests_inflight,
    };
    let kubeconfig = std::path::absolute(pki.kubeconfig_path())
        .unwrap_or_else(|_| pki.kubeconfig_path().to_path_buf());
    let url = pki.server_url().to_string();
    let stop = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining requests and closing watches");
        let _ = shutdown_tx.send(true);
    };
    api::serve(config, state, stop, move |addr| {
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
    let _ = controllers.await;
    compactor.abort();
    invalidator.abort();
    if let Some(audit) = audit_handle {
        audit.close().await;
        if audit.dropped() > 0 || audit.write_errors() > 0 {
            tracing::warn!(
                "audit log: {} events dropped, {} write errors",
                audit.dropped(),
                audit.write_errors()
            );
        }
    }
    store.close().await.context("closing the store")?;
    drop(data_dir_lock);
    tracing::info!("stopped");
    Ok(())
}

/// `--advertise-address`, else the bind address, else (0.0.0.0 or ::) loopback, as the
/// generated kubeconfig does.
fn advertise_address(asked: Option<IpAddr>, bind: IpAddr) -> IpAddr {
    match (asked, bind) {
        (Some(ip), _) => ip,
        (None, IpAddr::V4(ip)) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        (None, IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        (None, ip) => ip,
    }
}

/// Descriptors kept free for the store, logs and key files when capping connections.
const RESERVED_FILES: u64 = 256;

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

/// SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_versions() {
        assert_eq!(parse_emulated_version("1.23"), Ok(23));
        assert_eq!(parse_emulated_version("kube=1.20"), Ok(20));
        assert_eq!(parse_emulated_version("v1.32"), Ok(32));
        assert!(parse_emulated_version("1.33").is_err());
        assert!(parse_emulated_version("2.0").is_err());
        assert!(parse_emulated_version("latest").is_err());
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("600s"), Ok(600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("8760h"), Ok(31_536_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn issuers_are_checked_as_kube_apiserver_does() {
        assert!(check_issuers(&["https://kubernetes.default.svc".into()]).is_ok());
        assert!(check_issuers(&["kubernetes/serviceaccount".into()]).is_ok());
        assert!(check_issuers(&["".into()]).is_err());
        assert!(check_issuers(&["a:b".into()]).is_err());
        assert!(check_issuers(&["https://a".into(), "https://a".into()]).is_err());
    }
}
