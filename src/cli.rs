//! The command line: clap definitions for each subcommand and the dispatch to the module
//! that runs it; `serve`'s flags and their resolution are in `cli/serve.rs`, its wiring in
//! `server`. The only module that reads flags or the environment; nothing imports it.

mod bench;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use jiff::SignedDuration;

use self::serve::ServeArgs;
use crate::agent::{self, AgentConfig, RunConfig};
use crate::clock::SystemClock;
use crate::controllers::signing_keys;
use crate::diagnose::{self, DiagnoseConfig};
use crate::reload;
use crate::server;
use crate::store;
use crate::telemetry::{self, LogFormat};

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
    Bench(tokenwarden_bench::BenchArgs),
    /// Run the node agent: register a Node, and write the service-account tokens and other
    /// volumes of its Pods as the kubelet does (works against any cluster).
    Agent(AgentArgs),
    /// Run a command as a Pod on a node, with its service-account volume at the standard
    /// path; an agent for that Pod is embedded, so no separate agent process is needed.
    Run(RunArgs),
    /// Audit a cluster (tokenwarden or Kubernetes) for stale and legacy service-account
    /// tokens and the clients behind them, as text, JSON, HTML or markdown. Exit code 0:
    /// clean, 1: findings at or above --fail-on, 2: could not run.
    Diagnose(DiagnoseArgs),
    /// Copy the database of a server, running or stopped, into OUT (one consistent snapshot,
    /// safe while the server writes). A full backup also needs the key files of the data
    /// directory: see the README.
    Backup(BackupArgs),
    /// Rotate the generated service-account signing keys of a running server in the safe
    /// order (publish, then sign, then retire), or show their stages.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `tokenwarden keys`.
#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Publish a new signing key now; it signs after --publish-ahead, and the key it replaces
    /// verifies until every token it signed has expired. Needs the server running.
    Rotate {
        /// The server's data directory.
        #[arg(long, default_value = "tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
        data_dir: PathBuf,
        /// How long the new key is in /openid/v1/jwks before it signs: longer than any
        /// verifier caches the JWKS (e.g. 24h, 90s).
        #[arg(long, default_value = "24h", value_parser = parse_signed_duration)]
        publish_ahead: SignedDuration,
    },
    /// Each key with its kid and stage, as the server last wrote them.
    Status {
        /// The server's data directory.
        #[arg(long, default_value = "tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// `tokenwarden backup`.
#[derive(Debug, clap::Args)]
struct BackupArgs {
    /// The server's data directory (its tokenwarden.db is copied).
    #[arg(long, default_value = "tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
    data_dir: PathBuf,
    /// Where to write the copy (a SQLite file, mode 0600; replaced atomically if it exists).
    out: PathBuf,
}

/// `tokenwarden diagnose`.
#[derive(Debug, clap::Args)]
struct DiagnoseArgs {
    /// The kubeconfig to use (its current context); default: KUBECONFIG, ~/.kube/config or
    /// the in-cluster configuration.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// An audit.k8s.io/v1 JSON-lines audit log (kube-apiserver's --audit-log-path) to name
    /// the clients behind stale and legacy tokens.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Report format, on stdout (`-o html > report.html`). html and markdown add a chart of
    /// stale-token uses per ServiceAccount over time when --audit-log gives their times.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: diagnose::OutputFormat,
    /// Exit 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value = "warning")]
    fail_on: diagnose::Severity,
}

/// `tokenwarden agent`.
#[derive(Debug, clap::Args)]
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
#[derive(Debug, clap::Args)]
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

/// Parses the command line and runs it; the exit code is 0 on success, 1 on failure.
pub fn run() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => run_serve(args),
        Command::Bench(args) => run_bench(args),
        Command::Diagnose(args) => run_diagnose(args),
        Command::Backup(args) => run_backup(args),
        Command::Keys(command) => run_keys(command),
        Command::Agent(args) => run_agent(args),
        Command::Run(args) => run_command(args),
    }
}

/// `tokenwarden serve`: logs, then the server on a new runtime.
fn run_serve(args: ServeArgs) -> ExitCode {
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

/// `tokenwarden bench`.
fn run_bench(args: tokenwarden_bench::BenchArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| {
            runtime.block_on(tokenwarden_bench::run(
                args,
                Arc::new(bench::ServerKeys),
                progress_on_stderr(),
            ))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether long commands (`bench`, `diagnose`) show progress: only to a person at a terminal,
/// never into a pipe or a CI log, where the redrawing would be noise (`\r`, escape codes).
fn progress_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    std::io::stderr().is_terminal() && !dumb
}

/// `tokenwarden diagnose`: exit code 0, 1 (findings) or 2 (could not run).
fn run_diagnose(args: DiagnoseArgs) -> ExitCode {
    let config = DiagnoseConfig {
        kubeconfig: args.kubeconfig,
        audit_log: args.audit_log,
        output: args.output,
        fail_on: args.fail_on,
        progress: progress_on_stderr(),
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

/// `tokenwarden backup`.
fn run_backup(args: BackupArgs) -> ExitCode {
    let src = args.data_dir.join(server::DATABASE_FILE);
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

/// `tokenwarden keys rotate|status`.
fn run_keys(command: KeysCommand) -> ExitCode {
    let result = match command {
        KeysCommand::Status { data_dir } => signing_keys::read_status(&data_dir),
        KeysCommand::Rotate {
            data_dir,
            publish_ahead,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|rt| {
                rt.block_on(signing_keys::request_rotation(
                    &data_dir,
                    publish_ahead,
                    KEYS_ANSWER_WAIT,
                ))
            }),
    };
    match result {
        Ok(status) => {
            print!("{}", signing_keys::render_status(&status));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long `tokenwarden keys rotate` waits for the server's answer (it polls its data
/// directory every second).
const KEYS_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// `tokenwarden agent`: runs until SIGTERM or SIGINT.
fn run_agent(args: AgentArgs) -> ExitCode {
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

/// `tokenwarden run`: the command's exit code, or 1.
fn run_command(args: RunArgs) -> ExitCode {
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

/// Runs `fut` on a new multi-threaded runtime.
fn block_on<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fut)
}

/// `tokenwarden serve`: resolve the flags, build the server, run it until SIGTERM or SIGINT.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let reload = reload::Trigger::default();
    let hangups = tokio::spawn(fire_on_sighup(reload.clone()));
    let result = server::build(config, reload)
        .await?
        .run(wait_for_signal())
        .await;
    hangups.abort();
    result
}

/// SIGHUP: the server re-reads its key, certificate and token files (`systemctl reload`).
async fn fire_on_sighup(trigger: reload::Trigger) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading key, certificate and token files");
                trigger.fire();
            }
        }
        Err(e) => tracing::warn!(
            "cannot listen for SIGHUP ({e}); files are still re-read when they change"
        ),
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
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("600s"), Ok(600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("8760h"), Ok(31_536_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("soon").is_err());
    }
}
