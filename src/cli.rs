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

use crate::api::{self, AppState, ServerConfig};
use crate::clock::SystemClock;
use crate::pki::{self, PkiConfig};
use crate::registry::Registry;
use crate::store::{self, Store};
use crate::telemetry::{self, LogFormat};
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server (TLS; embedded SQLite store in the data directory).
    Serve(ServeArgs),
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
    }
}

/// How many revisions of history the store keeps for watches that resume (kine's
/// `compact-min-retain`), and how often it compacts.
const RETAINED_REVISIONS: i64 = 1000;
const COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let clock = SystemClock::shared();
    let pki = pki::ensure(
        &PkiConfig {
            data_dir: args.data_dir.clone(),
            bind_address: args.bind_address,
            port: args.secure_port,
            extra_sans: args.tls_san.clone(),
            tls_cert_file: args.tls_cert_file.clone(),
            tls_private_key_file: args.tls_private_key_file.clone(),
        },
        clock.now(),
    )
    .context("preparing certificates and keys")?;

    let store: Arc<dyn Store> =
        store::sqlite::SqliteStore::open(&args.data_dir.join("tokenwarden.db"))
            .context("opening the store")?;
    let registry = Registry::new(store.clone(), clock.clone());
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

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let compactor = tokio::spawn(store::compact_periodically(
        store.clone(),
        COMPACTION_INTERVAL,
        RETAINED_REVISIONS,
    ));

    let bind = SocketAddr::new(args.bind_address, args.secure_port);
    let state = AppState::new(registry, authn, bind.to_string(), shutdown_rx);
    let config = ServerConfig {
        bind,
        tls: pki
            .server_tls_config()
            .context("building the TLS configuration")?,
        shutdown_grace: Duration::from_secs(10),
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
    compactor.abort();
    store.close().await.context("closing the store")?;
    tracing::info!("stopped");
    Ok(())
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
