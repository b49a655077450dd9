//! `tokenwarden diagnose`: a read-only audit of any cluster reached through a kubeconfig
//! (tokenwarden or kube-apiserver) that names the workloads behind stale and legacy
//! service-account tokens, the clients that do not reload tokens, and the remedy for each.
//!
//! Owns: [`DiagnoseConfig`], the run ([`run`]: talk to the cluster, read the optional audit
//! log, build the report, pick the exit code), the analysis ([`analyze`], pure) and the report
//! model. Rendering is in `report` (text, JSON), `html` and `markdown`, User-Agent parsing in
//! `useragent`, `/metrics` parsing in `metrics`, the audit log in `audit` and its stale uses
//! over time in `timeline`, the RBAC checks (and the definition of a wildcard role) in `rbac`,
//! the progress shown on a terminal in `progress`.
//! Must not: import a server module (it is a client, STYLE.md rule 2), write to the cluster,
//! or crash on a missing permission or endpoint: those become `warnings` in the report.
//!
//! Data sources: `GET /version`, `GET /metrics`, lists of Secrets, ServiceAccounts and Pods
//! in all namespaces, of ClusterRoleBindings, RoleBindings, ClusterRoles and Roles
//! (`rbac.authorization.k8s.io/v1`; public API, through the `kube` crate), and an
//! `audit.k8s.io/v1` JSON-lines file. Only `/version` is required: if the server cannot be
//! reached the run fails (exit 2). If one of the RBAC lists fails (403 Forbidden, 404 when the
//! server does not serve RBAC), the RBAC checks are skipped with one warning.
//!
//! # Exit codes
//! `0`: no finding at or above `--fail-on` (default `warning`); `1`: at least one; `2`: could
//! not run (bad kubeconfig, unreachable server, unreadable audit log).
//!
//! # JSON schema (`-o json`), `apiVersion: tokenwarden.io/v1alpha1`, `kind: DiagnoseReport`
//! Fields are only ever added within this apiVersion; the `check` ids below are stable.
//! ```text
//! {
//!   "apiVersion": "tokenwarden.io/v1alpha1", "kind": "DiagnoseReport",
//!   "cluster": { "server": string, "version": string|null, "minor": int|null },
//!   "metrics": null | { "staleTokens", "validTokens", "legacyTokens", "legacyAutoTokenUses",
//!                       "legacyManualTokenUses", "invalidLegacyAutoTokenUses": int|null,
//!                       "staleRatio": float|null,
//!                       "staleByServiceAccount", "legacyByServiceAccount":
//!                         null | [{ "namespace", "serviceAccount", "count" }] },
//!   "auditLog": null | { "path": string, "events": int, "unparsableLines": int,
//!                        "staleEvents": int },
//!   "findings": [ { "check": string, "severity": "info"|"warning"|"error",
//!                   "title": string,
//!                   "objects": [ { "kind", "namespace", "name" } ],   // namespace "" for a Group
//!                   "clients": [ { "userAgent": string, "requests": int, "staleRequests": int,
//!                                  "language": string, "library": string,
//!                                  "version": string|null, "upgradeTo": string|null,
//!                                  "note": string } ],
//!                   "remedy": string } ],
//!   "warnings": [ string ],
//!   "summary": { "error": int, "warning": int, "info": int },
//!   "staleTimeline": null | { "bucketMinutes": int,              // null: no audit log
//!                             "bucketStarts": [ RFC 3339 string ], // UTC, oldest first
//!                             "series": [{ "namespace", "serviceAccount",
//!                                          "counts": [int] }],   // one per bucket
//!                             "untimedStaleEvents": int }
//! }
//! ```
//! `check` is one of: `cluster-version`, `stale-token-use`, `stale-tokens-unattributed`,
//! `outdated-client`, `client-go-skew`, `legacy-token-in-use`, `legacy-token-mounted`,
//! `legacy-token-invalidated`, `legacy-token-unused`, `automount-unused`,
//! `serviceaccount-cluster-admin`, `serviceaccount-wildcard-role` (their objects are
//! ServiceAccounts, or a Group of ServiceAccounts such as `system:serviceaccounts`).

pub(crate) mod audit;
pub(crate) mod html;
pub(crate) mod markdown;
pub(crate) mod metrics;
pub(crate) mod progress;
pub(crate) mod rbac;
pub(crate) mod report;
pub(crate) mod timeline;
pub(crate) mod useragent;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use jiff::civil::Date;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::clock::SharedClock;
use crate::wellknown;

use self::audit::{AccountUse, AuditSummary};
use self::metrics::TokenMetrics;
use self::progress::Progress;
use self::rbac::RbacObjects;
use self::timeline::StaleTimeline;
use self::useragent::ClientInfo;

/// How bad a finding is; ordered, so `--fail-on` compares with `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned text for a terminal.
    Text,
    /// The DiagnoseReport document (tokenwarden.io/v1alpha1), for programs.
    Json,
    /// One self-contained page (inline CSS and SVG chart, no script): `-o html > report.html`.
    Html,
    /// GitHub-flavoured markdown tables, for an issue or a pull request.
    #[value(alias = "md")]
    Markdown,
}

/// What `cli` resolves the flags into.
#[derive(Debug, Clone)]
pub(crate) struct DiagnoseConfig {
    /// `None`: kube's inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) audit_log: Option<PathBuf>,
    pub(crate) output: OutputFormat,
    pub(crate) fail_on: Severity,
    /// Show progress on stderr (`cli` says so only when stderr is a terminal).
    pub(crate) progress: bool,
}

/// One object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct ObjectRef {
    pub(crate) kind: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl ObjectRef {
    fn new(kind: &str, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// A client seen in the audit log, with what its User-Agent says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientSeen {
    pub(crate) user_agent: String,
    pub(crate) requests: u64,
    pub(crate) stale_requests: u64,
    #[serde(flatten)]
    pub(crate) info: ClientInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Finding {
    pub(crate) check: &'static str,
    pub(crate) severity: Severity,
    pub(crate) title: String,
    pub(crate) objects: Vec<ObjectRef>,
    pub(crate) clients: Vec<ClientSeen>,
    pub(crate) remedy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ClusterInfo {
    pub(crate) server: String,
    pub(crate) version: Option<String>,
    pub(crate) minor: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditInfo {
    pub(crate) path: String,
    pub(crate) events: u64,
    pub(crate) unparsable_lines: u64,
    pub(crate) stale_events: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    pub(crate) error: usize,
    pub(crate) warning: usize,
    pub(crate) info: usize,
}

/// The report: the JSON schema in the module header.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) cluster: ClusterInfo,
    pub(crate) metrics: Option<TokenMetrics>,
    pub(crate) audit_log: Option<AuditInfo>,
    pub(crate) findings: Vec<Finding>,
    pub(crate) warnings: Vec<String>,
    pub(crate) summary: Summary,
    /// `None` without an audit log.
    pub(crate) stale_timeline: Option<StaleTimeline>,
}

impl Report {
    /// The worst severity among the findings.
    pub(crate) fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Everything read from the cluster and the log; `None` where reading failed (a warning).
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    pub(crate) server: String,
    pub(crate) version: Option<String>,
    pub(crate) metrics: Option<TokenMetrics>,
    pub(crate) audit: Option<(String, AuditSummary)>,
    pub(crate) secrets: Option<Vec<Secret>>,
    pub(crate) service_accounts: Option<Vec<ServiceAccount>>,
    pub(crate) pods: Option<Vec<Pod>>,
    pub(crate) rbac: Option<RbacObjects>,
    pub(crate) warnings: Vec<String>,
}

/// A legacy token Secret whose last use is older than this (or never recorded), that no Pod
/// references and the audit log never saw, is reported as safe to delete.
const UNUSED_AFTER_DAYS: i64 = 30;

/// Runs the diagnosis and returns the process exit code (0, 1 or 2).
pub(crate) async fn run(config: DiagnoseConfig, clock: SharedClock) -> u8 {
    let progress = Progress::new(config.progress);
    match collect(&config, &progress).await {
        Ok(inputs) => {
            let today = clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
            let report = analyze(inputs, today);
            let text = match config.output {
                OutputFormat::Text => report::text(&report),
                OutputFormat::Json => report::json(&report),
                OutputFormat::Html => html::render(&report),
                OutputFormat::Markdown => markdown::render(&report),
            };
            print!("{text}");
            match report.worst() {
                Some(worst) if worst >= config.fail_on => 1,
                _ => 0,
            }
        }
        Err(e) => {
            eprintln!("error: tokenwarden diagnose could not run: {e:#}");
            2
        }
    }
}

async fn client(config: &DiagnoseConfig) -> anyhow::Result<(kube::Client, String)> {
    use anyhow::Context as _;
    let mut kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("loading the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster)")?,
    };
    // A diagnosis should fail fast rather than hang a CI job on a dead address.
    kube_config.connect_timeout = Some(Duration::from_secs(10));
    kube_config.read_timeout = Some(Duration::from_secs(60));
    let server = kube_config.cluster_url.to_string();
    let client = kube::Client::try_from(kube_config).context("building the client")?;
    Ok((client, server))
}

async fn collect(config: &DiagnoseConfig, progress: &Progress) -> anyhow::Result<Inputs> {
    use anyhow::Context as _;
    let (client, server) = client(config).await?;
    let mut inputs = Inputs {
        server: server.clone(),
        ..Inputs::default()
    };
    // Reading the audit log first: a wrong path is a usage error, not a degraded check.
    if let Some(path) = &config.audit_log {
        let summary = read_audit_log(path, progress)?;
        inputs.audit = Some((path.display().to_string(), summary));
    }
    let step = progress.step(format!("asking {server} for /version"));
    let version = client.apiserver_version().await;
    step.finish_and_clear();
    match version {
        Ok(info) => inputs.version = Some(info.git_version),
        // The server answered: a permission problem is a warning, not a failure to run.
        Err(kube::Error::Api(status)) => inputs
            .warnings
            .push(format!("cannot read /version: {}", status.message)),
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("cannot reach the API server at {server}"));
        }
    }
    let step = progress.step("reading the token counters of /metrics");
    read_metrics(&client, &mut inputs).await;
    step.finish_and_clear();
    list_core(&client, progress, &mut inputs).await;
    let step = progress.step("listing RBAC bindings and roles");
    match list_rbac(&client).await {
        Ok(rbac) => inputs.rbac = Some(rbac),
        Err((what, e)) => inputs.warnings.push(format!(
            "cannot list {what} ({}): ServiceAccounts bound to cluster-admin or wildcard roles are not checked",
            short_error(&e)
        )),
    }
    step.finish_and_clear();
    Ok(inputs)
}

/// Sums up the audit log at `path`, with a byte bar (a log can be gigabytes).
fn read_audit_log(path: &std::path::Path, progress: &Progress) -> anyhow::Result<AuditSummary> {
    use anyhow::Context as _;
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening the audit log {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress.bytes("reading the audit log", size);
    let summary = audit::summarize(std::io::BufReader::new(bar.wrap_read(file)));
    bar.finish_and_clear();
    summary.with_context(|| format!("reading the audit log {}", path.display()))
}

/// `/metrics`, or a warning that the counters are not checked.
async fn read_metrics(client: &kube::Client, inputs: &mut Inputs) {
    let request = http::Request::get("/metrics").body(Vec::new());
    match request {
        Ok(request) => match client.request_text(request).await {
            Ok(text) => inputs.metrics = Some(TokenMetrics::from_text(&text)),
            Err(e) => inputs.warnings.push(format!(
                "cannot read /metrics ({}): stale-token counters are not checked",
                short_error(&e)
            )),
        },
        Err(e) => inputs
            .warnings
            .push(format!("cannot build /metrics request: {e}")),
    }
}

/// Secrets, ServiceAccounts and Pods in all namespaces, each a step of its own; a list that
/// fails is a warning naming the checks it costs.
async fn list_core(client: &kube::Client, progress: &Progress, inputs: &mut Inputs) {
    let lp = ListParams::default();
    let step = progress.step("listing Secrets");
    match Api::<Secret>::all(client.clone()).list(&lp).await {
        Ok(list) => {
            // Keep only token Secrets: nothing else is reported, and no other data is held.
            let items = list
                .items
                .into_iter()
                .filter(|s| s.type_.as_deref() == Some(wellknown::SECRET_TYPE_SA_TOKEN))
                .map(|mut s| {
                    s.data = None;
                    s
                })
                .collect();
            inputs.secrets = Some(items);
        }
        Err(e) => inputs.warnings.push(format!(
            "cannot list Secrets ({}): legacy token Secrets are not checked",
            short_error(&e)
        )),
    }
    step.finish_and_clear();
    let step = progress.step("listing ServiceAccounts");
    match Api::<ServiceAccount>::all(client.clone()).list(&lp).await {
        Ok(list) => inputs.service_accounts = Some(list.items),
        Err(e) => inputs.warnings.push(format!(
            "cannot list ServiceAccounts ({}): auto-generated Secrets cannot be told from manual ones",
            short_error(&e)
        )),
    }
    step.finish_and_clear();
    let step = progress.step("listing Pods");
    match Api::<Pod>::all(client.clone()).list(&lp).await {
        Ok(list) => inputs.pods = Some(list.items),
        Err(e) => inputs.warnings.push(format!(
            "cannot list Pods ({}): Pods mounting legacy tokens are not checked",
            short_error(&e)
        )),
    }
    step.finish_and_clear();
}

/// Every ClusterRoleBinding, RoleBinding, ClusterRole and Role; on the first failure, what
/// could not be listed (the checks need all four, so the rest is not asked for).
async fn list_rbac(client: &kube::Client) -> Result<RbacObjects, (&'static str, kube::Error)> {
    Ok(RbacObjects {
        cluster_role_bindings: list_all::<ClusterRoleBinding>(client, "ClusterRoleBindings")
            .await?,
        role_bindings: list_all::<RoleBinding>(client, "RoleBindings").await?,
        cluster_roles: list_all::<ClusterRole>(client, "ClusterRoles").await?,
        roles: list_all::<Role>(client, "Roles").await?,
    })
}

/// Every `K` (in all namespaces), or `what` could not be listed and why.
async fn list_all<K>(
    client: &kube::Client,
    what: &'static str,
) -> Result<Vec<K>, (&'static str, kube::Error)>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(e) => Err((what, e)),
    }
}

fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        other => other.to_string(),
    }
}

/// The cluster's minor version from a `gitVersion` like `v1.32.0+tokenwarden`.
fn minor_of(version: &str) -> Option<u64> {
    useragent::numeric_parts(version).get(1).copied()
}

/// Builds the report from what was read. Pure: the golden test drives it.
pub(crate) fn analyze(inputs: Inputs, today: Date) -> Report {
    let minor = inputs.version.as_deref().and_then(minor_of);
    let mut findings = Vec::new();
    if let Some(version) = &inputs.version {
        findings.push(cluster_version(version, minor));
    }
    let empty = AuditSummary::default();
    let audit = inputs.audit.as_ref().map_or(&empty, |(_, s)| s);
    stale_findings(&inputs, audit, &mut findings);
    client_findings(audit, minor, &mut findings);
    legacy_findings(&inputs, audit, today, &mut findings);
    if inputs.audit.is_some() {
        automount_findings(&inputs, audit, &mut findings);
    }
    if let Some(objects) = &inputs.rbac {
        findings.extend(rbac::findings(objects));
    }
    let mut summary = Summary::default();
    for f in &findings {
        match f.severity {
            Severity::Error => summary.error += 1,
            Severity::Warning => summary.warning += 1,
            Severity::Info => summary.info += 1,
        }
    }
    Report {
        api_version: "tokenwarden.io/v1alpha1",
        kind: "DiagnoseReport",
        cluster: ClusterInfo {
            server: inputs.server.clone(),
            version: inputs.version.clone(),
            minor,
        },
        metrics: inputs.metrics.clone(),
        audit_log: inputs.audit.as_ref().map(|(path, s)| AuditInfo {
            path: path.clone(),
            events: s.events,
            unparsable_lines: s.unparsable_lines,
            stale_events: s.stale_events(),
        }),
        findings,
        warnings: inputs.warnings,
        summary,
        stale_timeline: inputs.audit.as_ref().map(|(_, s)| timeline::build(s)),
    }
}

fn cluster_version(version: &str, minor: Option<u64>) -> Finding {
    let m = minor.unwrap_or(0);
    let mut facts = Vec::new();
    let yes_no = |on: bool, what: &str| format!("{} {what}", if on { "yes:" } else { "no:" });
    facts.push(yes_no(m >= 21, "bound, expiring projected tokens (≥1.21)"));
    facts.push(yes_no(m >= 24, "no auto-generated token Secrets (≥1.24)"));
    facts.push(yes_no(m >= 26, "legacy-token-last-used tracking (≥1.26)"));
    facts.push(yes_no(m >= 29, "unused legacy token clean-up (≥1.29)"));
    let (severity, remedy) = if m >= 21 {
        (Severity::Info, "none".to_owned())
    } else {
        (
            Severity::Warning,
            "upgrade the cluster to ≥ 1.21 for bound service-account tokens".to_owned(),
        )
    };
    Finding {
        check: "cluster-version",
        severity,
        title: format!("Kubernetes {version}: {}", facts.join("; ")),
        objects: Vec::new(),
        clients: Vec::new(),
        remedy,
    }
}

fn clients_of(account: Option<&AccountUse>) -> Vec<ClientSeen> {
    let Some(account) = account else {
        return Vec::new();
    };
    account
        .agents
        .iter()
        .map(|(ua, u)| ClientSeen {
            user_agent: ua.clone(),
            requests: u.requests,
            stale_requests: u.stale,
            info: useragent::parse(ua),
        })
        .collect()
}

fn account_objects(ns: &str, name: &str, pods: &BTreeSet<String>) -> Vec<ObjectRef> {
    let mut out = vec![ObjectRef::new("ServiceAccount", ns, name)];
    out.extend(pods.iter().map(|p| ObjectRef::new("Pod", ns, p)));
    out
}

fn stale_findings(inputs: &Inputs, audit: &AuditSummary, findings: &mut Vec<Finding>) {
    // (namespace, name) -> (count from the attributed metric, count from the audit log)
    let mut stale: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let by_metric = inputs
        .metrics
        .as_ref()
        .and_then(|m| m.stale_by_service_account.as_ref());
    // tokenwarden's overflow series (`namespace=""`, `serviceaccount="_other"`) names nobody.
    let named = by_metric
        .into_iter()
        .flatten()
        .filter(|c| !c.namespace.is_empty());
    for c in named {
        let key = (c.namespace.clone(), c.service_account.clone());
        stale.entry(key).or_default().0 += c.count;
    }
    for (key, account) in &audit.accounts {
        if account.stale > 0 {
            stale.entry(key.clone()).or_default().1 += account.stale;
        }
    }
    for ((ns, name), (by_metric, by_audit)) in &stale {
        let account = audit.accounts.get(&(ns.clone(), name.clone()));
        let clients: Vec<ClientSeen> = clients_of(account)
            .into_iter()
            .filter(|c| c.stale_requests > 0)
            .collect();
        let outdated = clients.iter().any(|c| c.info.upgrade_to.is_some());
        let mut remedies: Vec<String> = clients.iter().map(stale_remedy).collect();
        if remedies.is_empty() {
            remedies.push(format!(
                "find the client: re-run with --audit-log (the audit annotation {} names the User-Agent); \
                 it must re-read its token file at least once a minute",
                wellknown::AUDIT_STALE_TOKEN
            ));
        }
        remedies.dedup();
        let pods = account.map(|a| a.stale_pods.clone()).unwrap_or_default();
        let count = (*by_metric).max(*by_audit);
        findings.push(Finding {
            check: "stale-token-use",
            severity: if outdated {
                Severity::Error
            } else {
                Severity::Warning
            },
            title: format!(
                "ServiceAccount {ns}/{name} used stale tokens {count} time(s) (a client that does not reload its token)"
            ),
            objects: account_objects(ns, name, &pods),
            clients,
            remedy: remedies.join("\n"),
        });
    }
    let total = inputs.metrics.as_ref().and_then(|m| m.stale_tokens);
    if let Some(total) = total.filter(|t| *t > 0)
        && stale.is_empty()
    {
        findings.push(Finding {
            check: "stale-tokens-unattributed",
            severity: Severity::Warning,
            title: format!(
                "serviceaccount_stale_tokens_total is {total}, but nothing says which workloads"
            ),
            objects: Vec::new(),
            clients: Vec::new(),
            remedy: "re-run with --audit-log <kube-apiserver audit log>: its authentication.k8s.io/stale-token \
                     annotations name the ServiceAccounts and User-Agents"
                .to_owned(),
        });
    }
}

fn stale_remedy(c: &ClientSeen) -> String {
    let info = &c.info;
    let version = info.version.as_deref().unwrap_or("?");
    if let Some(min) = &info.upgrade_to {
        return format!("upgrade client {} {version} to ≥ {min}", info.library);
    }
    match info.language {
        useragent::Language::Unknown => format!(
            "client {:?} is unknown: make it re-read its token file at least once a minute (kubernetes/kubernetes#68164)",
            c.user_agent
        ),
        _ => format!(
            "restart: this client ({} {version}) reads kubeconfig tokenFile once; \
             for a long-running process use in-cluster config, which reloads",
            info.library
        ),
    }
}

fn client_findings(audit: &AuditSummary, minor: Option<u64>, findings: &mut Vec<Finding>) {
    for ((ns, name), account) in &audit.accounts {
        let clients = clients_of(Some(account));
        let objects = account_objects(ns, name, &account.pods);
        // Stale users are already reported with their client; here the ones without stale uses.
        let outdated: Vec<ClientSeen> = clients
            .iter()
            .filter(|c| c.info.upgrade_to.is_some() && c.stale_requests == 0)
            .cloned()
            .collect();
        for c in &outdated {
            let version = c.info.version.as_deref().unwrap_or("?");
            let min = c.info.upgrade_to.as_deref().unwrap_or("?");
            findings.push(Finding {
                check: "outdated-client",
                severity: Severity::Warning,
                title: format!(
                    "ServiceAccount {ns}/{name} is used by {} {version}, which does not reload rotated tokens",
                    c.info.library
                ),
                objects: objects.clone(),
                clients: vec![c.clone()],
                remedy: format!("upgrade client {} {version} to ≥ {min}", c.info.library),
            });
        }
        let Some(cluster) = minor else { continue };
        for c in &clients {
            let Some(client_minor) = useragent::client_go_minor(&c.info) else {
                continue;
            };
            if cluster > client_minor + 2 && c.info.upgrade_to.is_none() {
                let want = cluster - 2;
                findings.push(Finding {
                    check: "client-go-skew",
                    severity: Severity::Warning,
                    title: format!(
                        "ServiceAccount {ns}/{name} is used by {} (client-go v0.{client_minor}), more than two minor versions behind the cluster (1.{cluster})",
                        c.info.library
                    ),
                    objects: objects.clone(),
                    clients: vec![c.clone()],
                    remedy: format!("upgrade client {} to client-go ≥ v0.{want}.0", c.info.library),
                });
            }
        }
    }
}

/// The projected volume that replaces a legacy token Secret volume (seed 002).
fn projected_volume_yaml(volume: &str) -> String {
    format!(
        "replace the secret volume with a projected token (seed 002):\n\
         volumes:\n\
         - name: {volume}\n  \
           projected:\n    \
             defaultMode: 420\n    \
             sources:\n    \
             - serviceAccountToken:\n        \
                 expirationSeconds: {}\n        \
                 path: token\n    \
             - configMap:\n        \
                 name: {}\n        \
                 items:\n        \
                 - key: {}\n          \
                   path: ca.crt",
        wellknown::ADMISSION_TOKEN_EXPIRATION_SECONDS,
        wellknown::ROOT_CA_CONFIGMAP,
        wellknown::ROOT_CA_KEY,
    )
}

/// The Pods of `ns` that reference Secret `secret`, with the volume name when it is a volume.
fn pods_referencing<'a>(pods: &'a [Pod], ns: &str, secret: &str) -> Vec<(&'a Pod, Option<String>)> {
    let mut out = Vec::new();
    for pod in pods {
        if pod.metadata.namespace.as_deref() != Some(ns) {
            continue;
        }
        let Some(spec) = &pod.spec else { continue };
        let mut volume = None;
        let mut hit = false;
        for v in spec.volumes.iter().flatten() {
            let by_secret =
                v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret);
            let by_projection = v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.secret.as_ref().is_some_and(|s| s.name == secret))
            });
            if by_secret || by_projection {
                hit = true;
                volume = Some(v.name.clone());
            }
        }
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in containers {
            let env = c.env.iter().flatten().any(|e| {
                e.value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref())
                    .is_some_and(|r| r.name == secret)
            });
            let env_from = c
                .env_from
                .iter()
                .flatten()
                .any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == secret));
            hit |= env || env_from;
        }
        if hit {
            out.push((pod, volume));
        }
    }
    out
}

fn legacy_findings(
    inputs: &Inputs,
    audit: &AuditSummary,
    today: Date,
    findings: &mut Vec<Finding>,
) {
    let Some(secrets) = &inputs.secrets else {
        return;
    };
    let no_pods = Vec::new();
    let pods = inputs.pods.as_ref().unwrap_or(&no_pods);
    for secret in secrets {
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let labels = secret.metadata.labels.clone().unwrap_or_default();
        let sa = annotations
            .get(wellknown::ANNOTATION_SA_NAME)
            .cloned()
            .unwrap_or_default();
        // Auto-generated: listed in its ServiceAccount's `secrets` (facts §8, #118598).
        let kind = inputs.service_accounts.as_ref().map(|accounts| {
            let listed = accounts.iter().any(|a| {
                a.metadata.namespace.as_deref() == Some(ns.as_str())
                    && a.metadata.name.as_deref() == Some(sa.as_str())
                    && a.secrets
                        .iter()
                        .flatten()
                        .any(|r| r.name.as_deref() == Some(name.as_str()))
            });
            if listed { "auto-generated" } else { "manual" }
        });
        let kind = kind.unwrap_or("legacy");
        let last_used = labels.get(wellknown::LABEL_LEGACY_TOKEN_LAST_USED).cloned();
        let invalid_since = labels
            .get(wellknown::LABEL_LEGACY_TOKEN_INVALID_SINCE)
            .cloned();
        let account = audit.accounts.get(&(ns.clone(), sa.clone()));
        let seen_in_audit = account.is_some_and(|a| a.legacy_secrets.contains_key(&name));
        let users = pods_referencing(pods, &ns, &name);
        let secret_ref = ObjectRef::new("Secret", &ns, &name);
        let sa_ref = ObjectRef::new("ServiceAccount", &ns, &sa);
        let recently_used = last_used
            .as_deref()
            .and_then(|d| d.parse::<Date>().ok())
            .is_some_and(|d| {
                today
                    .since(d)
                    .is_ok_and(|span| i64::from(span.get_days()) <= UNUSED_AFTER_DAYS)
            });
        let last = last_used.as_deref().unwrap_or("never recorded");
        if let Some(since) = &invalid_since {
            findings.push(Finding {
                check: "legacy-token-invalidated",
                severity: Severity::Warning,
                title: format!(
                    "{kind} legacy token Secret {ns}/{name} is invalid since {since} (last used: {last}) and will be deleted"
                ),
                objects: vec![secret_ref.clone(), sa_ref.clone()],
                clients: Vec::new(),
                remedy: format!(
                    "kubectl delete secret -n {ns} {name}   # or, if still needed: kubectl label secret -n {ns} {name} {}-",
                    wellknown::LABEL_LEGACY_TOKEN_INVALID_SINCE
                ),
            });
            continue;
        }
        if recently_used || seen_in_audit {
            let mut clients: Vec<ClientSeen> = clients_of(account)
                .into_iter()
                .filter(|c| {
                    account
                        .and_then(|a| a.agents.get(&c.user_agent))
                        .is_some_and(|u| u.legacy > 0)
                })
                .collect();
            clients.sort_by(|a, b| a.user_agent.cmp(&b.user_agent));
            findings.push(Finding {
                check: "legacy-token-in-use",
                severity: Severity::Warning,
                title: format!(
                    "{kind} legacy token Secret {ns}/{name} of ServiceAccount {sa} is in use (last used: {last}): a non-expiring token"
                ),
                objects: vec![secret_ref.clone(), sa_ref.clone()],
                clients,
                remedy: format!(
                    "give the client a short-lived token instead: kubectl create token {sa} -n {ns} --duration=1h\n\
                     then delete the Secret: kubectl delete secret -n {ns} {name}"
                ),
            });
        }
        if !users.is_empty() {
            let mut objects = vec![secret_ref.clone()];
            objects.extend(users.iter().map(|(p, _)| {
                ObjectRef::new("Pod", &ns, p.metadata.name.as_deref().unwrap_or_default())
            }));
            let volume = users
                .iter()
                .find_map(|(_, v)| v.clone())
                .unwrap_or_else(|| "token".to_owned());
            findings.push(Finding {
                check: "legacy-token-mounted",
                severity: Severity::Warning,
                title: format!(
                    "{} Pod(s) mount the {kind} legacy token Secret {ns}/{name}",
                    users.len()
                ),
                objects,
                clients: Vec::new(),
                remedy: projected_volume_yaml(&volume),
            });
        } else if !recently_used && !seen_in_audit {
            findings.push(Finding {
                check: "legacy-token-unused",
                severity: Severity::Info,
                title: format!(
                    "{kind} legacy token Secret {ns}/{name} is unused (last used: {last}; no Pod references it): safe to delete"
                ),
                objects: vec![secret_ref, sa_ref],
                clients: Vec::new(),
                remedy: format!("kubectl delete secret -n {ns} {name}"),
            });
        }
    }
}

fn automount_findings(inputs: &Inputs, audit: &AuditSummary, findings: &mut Vec<Finding>) {
    let (Some(pods), Some(accounts)) = (&inputs.pods, &inputs.service_accounts) else {
        return;
    };
    let mut by_account: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for pod in pods {
        let Some(spec) = &pod.spec else { continue };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| wellknown::DEFAULT_SERVICE_ACCOUNT.to_owned());
        let sa_automount = accounts
            .iter()
            .find(|a| {
                a.metadata.namespace.as_deref() == Some(ns.as_str())
                    && a.metadata.name.as_deref() == Some(sa.as_str())
            })
            .and_then(|a| a.automount_service_account_token);
        let automounts = spec
            .automount_service_account_token
            .or(sa_automount)
            .unwrap_or(true);
        if !automounts || audit.accounts.contains_key(&(ns.clone(), sa.clone())) {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        by_account.entry((ns, sa)).or_default().push(name);
    }
    for ((ns, sa), pods) in by_account {
        let set: BTreeSet<String> = pods.into_iter().collect();
        findings.push(Finding {
            check: "automount-unused",
            severity: Severity::Info,
            title: format!(
                "ServiceAccount {ns}/{sa}: {} Pod(s) mount a token that made no API call in the audit log",
                set.len()
            ),
            objects: account_objects(&ns, &sa, &set),
            clients: Vec::new(),
            remedy: format!(
                "if the workload never calls the API: kubectl patch serviceaccount -n {ns} {sa} -p '{{\"automountServiceAccountToken\":false}}' \
                 (or set automountServiceAccountToken: false in the Pod spec)"
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::audit::summarize;
    use super::*;

    #[test]
    fn client_go_more_than_two_minors_behind_is_flagged() {
        let log = r#"{"user":{"username":"system:serviceaccount:ops:op"},"userAgent":"op/v0.28.4 (linux/amd64) kubernetes/abc"}
{"user":{"username":"system:serviceaccount:ops:ok"},"userAgent":"op/v0.30.0 (linux/amd64) kubernetes/abc"}
"#;
        let inputs = Inputs {
            server: "https://k".into(),
            version: Some("v1.32.3".into()),
            audit: Some(("a.log".into(), summarize(log.as_bytes()).unwrap())),
            ..Inputs::default()
        };
        let report = analyze(inputs, jiff::civil::date(2026, 1, 1));
        let skew: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.check == "client-go-skew")
            .collect();
        assert_eq!(skew.len(), 1, "{:#?}", report.findings);
        assert_eq!(skew[0].objects[0].name, "op");
        assert!(
            skew[0].remedy.contains("client-go ≥ v0.30.0"),
            "{}",
            skew[0].remedy
        );
        assert_eq!(report.worst(), Some(Severity::Warning));
    }

    #[test]
    fn old_cluster_and_unattributed_stale_counter_warn() {
        let inputs = Inputs {
            server: "https://k".into(),
            version: Some("v1.20.4".into()),
            metrics: Some(TokenMetrics::from_text(
                "serviceaccount_stale_tokens_total 4\n",
            )),
            ..Inputs::default()
        };
        let report = analyze(inputs, jiff::civil::date(2026, 1, 1));
        let checks: Vec<(&str, Severity)> = report
            .findings
            .iter()
            .map(|f| (f.check, f.severity))
            .collect();
        assert_eq!(
            checks,
            [
                ("cluster-version", Severity::Warning),
                ("stale-tokens-unattributed", Severity::Warning)
            ]
        );
    }
}
