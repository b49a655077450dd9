//! `tokenwarden serve`'s flags (ripgrep's `LowArgs`) and their resolution into a validated
//! [`server::Config`] (its `HiArgs`): every check of a flag, every default that depends on
//! another flag, every derived value. Resolution reads no file, writes nothing and logs
//! nothing, so it is unit-tested here; the I/O is `server::build`'s. It must not start
//! anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use jiff::SignedDuration;

use super::{parse_duration, parse_signed_duration};
use crate::admission::AutomountMode;
use crate::controllers::LeaseConfig;
use crate::pki::PkiConfig;
use crate::rbac;
use crate::registry;
use crate::server::{self, StoreConfig, Testing};
use crate::store::etcd::{self, TlsFiles};
use crate::telemetry::LogFormat;
use crate::wellknown;

/// The first minor version whose ServiceAccounts get no auto-created token Secret (1.24).
const NO_AUTO_SECRET_FROM: u32 = 24;
/// The first minor version whose pods mount a projected token instead of the Secret (1.21).
const PROJECTED_FROM: u32 = 21;
/// The longest `--service-account-max-token-expiration` (2^32 s) and the shortest (1 h),
/// as kube-apiserver checks them.
const MAX_TOKEN_EXPIRATION_RANGE: std::ops::RangeInclusive<i64> = 3600..=(1_i64 << 32);

/// Flags named as kube-apiserver's where they mean the same thing.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
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
    /// Join the cluster of a first replica: take its CA, service-account key pair and admin
    /// token from its data dir (on the first start of this one), so that tokens, clients and
    /// kubeconfigs work on both. For replicas that share a store (`--etcd-servers`).
    #[arg(long, value_name = "DIR")]
    cluster_from: Option<PathBuf>,
    /// Extra subject alternative names (IP or DNS) for the generated serving certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Static users: CSV lines `token,user,uid,"group1,group2"` (kube-apiserver's format).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// etcd members to keep the objects in (comma-separated client URLs, `http://` or
    /// `https://`), instead of the embedded SQLite store in the data directory.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// The prefix of every key in etcd, as kube-apiserver's: objects live under
    /// PREFIX/<resource>/<namespace>/<name>.
    #[arg(long, default_value = wellknown::DEFAULT_ETCD_PREFIX)]
    etcd_prefix: String,
    /// CA certificate (PEM) that verifies the etcd members (default: the system roots).
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --etcd-keyfile.
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,
    /// Private key (PEM) of --etcd-certfile.
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub(super) log_format: LogFormat,
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
    /// Base64 of 32 random bytes that seals the generated signing keys in the store
    /// (default: the generated DATA_DIR/key-encryption.key); replicas on one etcd need the
    /// same one (`--cluster-from` copies it).
    #[arg(long)]
    key_encryption_key_file: Option<PathBuf>,
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
    /// Who may do what: `RBAC` (Roles, ClusterRoles and their bindings; `system:masters` may
    /// do everything) or `AlwaysAllow` (every request; for tests only). A
    /// comma-separated list as kube-apiserver takes it is accepted.
    #[arg(long, value_parser = parse_authorization_mode, default_value = "RBAC")]
    authorization_mode: rbac::Mode,
    /// Write an audit.k8s.io/v1 event (Metadata level) per request to this file.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// Behave as this Kubernetes version does (`1.23` or `kube=1.23`): below 1.24 every
    /// ServiceAccount gets an auto-created token Secret; below 1.21 pods mount that Secret
    /// instead of a projected token. For rehearsing the migration the seeds describe.
    #[arg(long, value_parser = parse_emulated_version, default_value = "1.32")]
    emulated_version: u32,
    /// Run the controllers only while this replica holds the Lease named below
    /// (kube-controller-manager's leader election), so that replicas sharing a store never do
    /// the same work twice.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a Lease stays held without renewal before another replica may take it.
    #[arg(long, default_value = "15s", value_parser = parse_signed_duration)]
    leader_elect_lease_duration: SignedDuration,
    /// How long the leader keeps leading while it fails to renew.
    #[arg(long, default_value = "10s", value_parser = parse_signed_duration)]
    leader_elect_renew_deadline: SignedDuration,
    /// How often candidates try to take the Lease and the leader renews it.
    #[arg(long, default_value = "2s", value_parser = parse_signed_duration)]
    leader_elect_retry_period: SignedDuration,
    /// The Lease of the election.
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
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
    /// UNSAFE, for tests only: a rotated-out signing key stops verifying this long (e.g. 20s)
    /// after it stopped signing, instead of the longest token lifetime.
    #[arg(long, value_parser = parse_duration)]
    testing_key_retire_after: Option<i64>,
}

impl ServeArgs {
    /// `--leader-elect*` checked as client-go's `NewLeaderElector` checks them.
    fn leader_election(&self) -> anyhow::Result<Option<LeaseConfig>> {
        if !self.leader_elect {
            return Ok(None);
        }
        let positive = |d: SignedDuration, flag: &str| {
            Duration::try_from(d)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("--{flag} must be greater than zero"))
        };
        let lease_duration = positive(
            self.leader_elect_lease_duration,
            "leader-elect-lease-duration",
        )?;
        let renew_deadline = positive(
            self.leader_elect_renew_deadline,
            "leader-elect-renew-deadline",
        )?;
        let retry_period = positive(self.leader_elect_retry_period, "leader-elect-retry-period")?;
        if lease_duration <= renew_deadline {
            anyhow::bail!(
                "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline"
            );
        }
        if renew_deadline.as_secs_f64() <= retry_period.as_secs_f64() * LEADER_JITTER {
            anyhow::bail!(
                "--leader-elect-renew-deadline must be greater than --leader-elect-retry-period*1.2"
            );
        }
        Ok(Some(LeaseConfig {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self.leader_elect_resource_name.clone(),
            identity: String::new(),
            lease_duration,
            renew_deadline,
            retry_period,
        }))
    }

    /// Checks the flags and derives the server's [`server::Config`]; reads no file, writes
    /// nothing, logs nothing.
    pub(super) fn resolve(self) -> anyhow::Result<server::Config> {
        check_issuers(&self.service_account_issuer)?;
        let leader_election = self.leader_election()?;
        let max = self.service_account_max_token_expiration;
        if max != 0 && !MAX_TOKEN_EXPIRATION_RANGE.contains(&max) {
            anyhow::bail!(
                "the service-account-max-token-expiration must be between 1 hour and 2^32 seconds"
            );
        }
        let api_audiences = if self.api_audiences.is_empty() {
            self.service_account_issuer.clone()
        } else {
            self.api_audiences
        };
        let store = store_config(
            self.etcd_servers,
            &self.etcd_prefix,
            TlsFiles {
                ca_file: self.etcd_cafile,
                cert_file: self.etcd_certfile,
                key_file: self.etcd_keyfile,
            },
        )?;
        let port = self.secure_port;
        let advertise = advertise_address(self.advertise_address, self.bind_address);
        let testing = Testing {
            clock_offset: self.testing_clock_offset,
            create_delay: self
                .testing_create_delay
                .map(|secs| Duration::from_secs(secs.unsigned_abs())),
            min_token_expiration: self.testing_min_token_expiration,
            key_retire_after: self.testing_key_retire_after,
        };
        Ok(server::Config {
            pki: PkiConfig {
                data_dir: self.data_dir,
                bind_address: self.bind_address,
                port,
                extra_sans: self.tls_san,
                tls_cert_file: self.tls_cert_file,
                tls_private_key_file: self.tls_private_key_file,
                cluster_from: self.cluster_from,
            },
            store,
            bind: SocketAddr::new(self.bind_address, port),
            advertise: SocketAddr::new(advertise, port),
            token_auth_file: self.token_auth_file,
            issuers: self.service_account_issuer,
            api_audiences,
            signing_key_file: self.service_account_signing_key_file,
            verifying_key_files: self.service_account_key_file,
            kek_file: self.key_encryption_key_file,
            max_expiration_seconds: (max != 0).then_some(max),
            extend_expiration: self.service_account_extend_token_expiration,
            lookup_legacy: self.service_account_lookup,
            jwks_uri: self.service_account_jwks_uri,
            anonymous_issuer_discovery: self.anonymous_issuer_discovery,
            authorization_mode: self.authorization_mode,
            leader_election,
            audit_log_path: self.audit_log_path,
            automount: if self.emulated_version < PROJECTED_FROM {
                AutomountMode::LegacySecret
            } else {
                AutomountMode::Projected
            },
            auto_create_legacy_tokens: self.emulated_version < NO_AUTO_SECRET_FROM,
            legacy_cleanup_period: SignedDuration::from_secs(
                self.legacy_service_account_token_clean_up_period,
            ),
            min_token_expiration: testing
                .min_token_expiration
                .unwrap_or(wellknown::MIN_TOKEN_EXPIRATION_SECONDS),
            max_connections: self.max_connections,
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            testing,
        })
    }
}

/// The store of `--etcd-*`: SQLite when `--etcd-servers` is absent, else etcd with the
/// registry's keys under `--etcd-prefix` (`path.Join`ed as kube-apiserver does: a trailing
/// `/` is dropped).
fn store_config(servers: Vec<String>, prefix: &str, tls: TlsFiles) -> anyhow::Result<StoreConfig> {
    let any_tls = tls.ca_file.is_some() || tls.cert_file.is_some();
    if servers.is_empty() {
        if any_tls {
            anyhow::bail!("--etcd-cafile, --etcd-certfile and --etcd-keyfile need --etcd-servers");
        }
        return Ok(StoreConfig::Sqlite);
    }
    for url in &servers {
        let secure = url.starts_with("https://");
        if !secure && !url.starts_with("http://") {
            anyhow::bail!("--etcd-servers: {url:?} is not an http:// or https:// URL");
        }
        if any_tls && !secure {
            anyhow::bail!("--etcd-servers: {url:?} is not https://, but TLS files are given");
        }
    }
    let secure = servers.iter().all(|url| url.starts_with("https://"));
    Ok(StoreConfig::Etcd(etcd::Options {
        endpoints: servers,
        key_root: registry::KEY_ROOT.to_owned(),
        prefix: prefix.trim_end_matches('/').to_owned(),
        tls: (any_tls || secure).then_some(tls),
    }))
}

/// `--emulated-version`: `1.23`, `v1.23` or `kube=1.23`, as the minor version. Kubernetes
/// itself emulates only one release back; older versions are allowed here on purpose, to
/// rehearse the 1.21 and 1.24 changes.
/// client-go's `JitterFactor`: the renew deadline must exceed the retry period by more.
const LEADER_JITTER: f64 = 1.2;

/// `--authorization-mode`: `RBAC`, `AlwaysAllow`, or a list of them (with `AlwaysAllow` in
/// it, everything is allowed, as kube-apiserver's union of authorizers would).
fn parse_authorization_mode(s: &str) -> Result<rbac::Mode, String> {
    let mut mode = None;
    for m in s.split(',').map(str::trim) {
        match m {
            "RBAC" => mode = mode.or(Some(rbac::Mode::Rbac)),
            "AlwaysAllow" => mode = Some(rbac::Mode::AlwaysAllow),
            other => {
                return Err(format!(
                    "authorization mode {other:?} is not supported (supported: RBAC, AlwaysAllow)"
                ));
            }
        }
    }
    mode.ok_or_else(|| "at least one authorization mode must be given".to_string())
}

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

/// `--advertise-address`, else the bind address, else (0.0.0.0 or ::) loopback, as the
/// generated kubeconfig does.
fn advertise_address(asked: Option<IpAddr>, bind: IpAddr) -> IpAddr {
    match (asked, bind) {
        (Some(ip), _) => ip,
        (None, IpAddr::V4(ip)) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (None, IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (None, ip) => ip,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `tokenwarden serve` alone, for parsing flags the way the binary does.
    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn resolve(flags: &[&str]) -> anyhow::Result<server::Config> {
        let argv = std::iter::once("serve").chain(flags.iter().copied());
        Serve::try_parse_from(argv)?.args.resolve()
    }

    fn resolved(flags: &[&str]) -> server::Config {
        resolve(flags).unwrap_or_else(|e| panic!("{flags:?}: {e:#}"))
    }

    fn err(flags: &[&str]) -> String {
        match resolve(flags) {
            Ok(c) => panic!("{flags:?} resolved to {c:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

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
    fn issuers_are_checked_as_kube_apiserver_does() {
        assert!(check_issuers(&["https://kubernetes.default.svc".into()]).is_ok());
        assert!(check_issuers(&["kubernetes/serviceaccount".into()]).is_ok());
        assert!(check_issuers(&["".into()]).is_err());
        assert!(check_issuers(&["a:b".into()]).is_err());
        assert!(check_issuers(&["https://a".into(), "https://a".into()]).is_err());
    }

    #[test]
    fn defaults() {
        let c = resolved(&[]);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 6443));
        assert_eq!((c.bind, c.advertise), (loopback, loopback));
        assert_eq!(c.pki.bind_address, loopback.ip());
        assert_eq!(c.pki.port, 6443);
        assert!(c.pki.extra_sans.is_empty() && c.pki.tls_cert_file.is_none());
        assert_eq!(c.issuers, [wellknown::DEFAULT_ISSUER]);
        assert_eq!(c.api_audiences, c.issuers);
        assert_eq!(c.max_expiration_seconds, None);
        assert!(c.extend_expiration && c.lookup_legacy && !c.anonymous_issuer_discovery);
        assert_eq!(c.signing_key_file, None);
        assert_eq!(c.jwks_uri, None);
        assert_eq!(c.automount, AutomountMode::Projected);
        assert!(!c.auto_create_legacy_tokens);
        assert_eq!(c.legacy_cleanup_period, SignedDuration::from_hours(8760));
        assert_eq!(
            c.min_token_expiration,
            wellknown::MIN_TOKEN_EXPIRATION_SECONDS
        );
        assert_eq!(c.min_token_expiration, 600);
        assert_eq!(
            (
                c.max_connections,
                c.max_requests_inflight,
                c.max_mutating_requests_inflight
            ),
            (10_000, 400, 200)
        );
        assert_eq!(c.testing, Testing::default());
        assert!(matches!(c.store, StoreConfig::Sqlite));
    }

    #[test]
    fn etcd_flags_choose_the_etcd_store() {
        let etcd = |flags: &[&str]| match resolved(flags).store {
            StoreConfig::Etcd(options) => options,
            StoreConfig::Sqlite => panic!("{flags:?} chose SQLite"),
        };
        let o = etcd(&["--etcd-servers=http://127.0.0.1:2379,http://127.0.0.1:22379"]);
        assert_eq!(
            o.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        assert_eq!(
            (o.key_root.as_str(), o.prefix.as_str()),
            ("/registry", "/registry")
        );
        assert!(o.tls.is_none());
        let o = etcd(&["--etcd-servers=http://e:2379", "--etcd-prefix=/tw/"]);
        assert_eq!(o.prefix, "/tw");
        let o = etcd(&[
            "--etcd-servers=https://e:2379",
            "--etcd-cafile=/ca.pem",
            "--etcd-certfile=/c.pem",
            "--etcd-keyfile=/k.pem",
        ]);
        let tls = o.tls.unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.key_file, Some(PathBuf::from("/k.pem")));
        assert!(
            etcd(&["--etcd-servers=https://e:2379"]).tls.is_some(),
            "system roots"
        );
        assert!(err(&["--etcd-servers=e:2379"]).contains("not an http:// or https:// URL"));
        assert!(err(&["--etcd-cafile=/ca.pem"]).contains("need --etcd-servers"));
        assert!(
            err(&["--etcd-servers=http://e:2379", "--etcd-cafile=/ca.pem"])
                .contains("not https://")
        );
        assert!(resolve(&["--etcd-servers=https://e", "--etcd-certfile=/c.pem"]).is_err());
    }

    #[test]
    fn api_audiences_default_to_every_issuer() {
        let c = resolved(&[
            "--service-account-issuer=https://a",
            "--service-account-issuer=https://b",
        ]);
        assert_eq!(c.issuers, ["https://a", "https://b"]);
        assert_eq!(c.api_audiences, c.issuers);
        let c = resolved(&["--service-account-issuer=https://a", "--api-audiences=x,y"]);
        assert_eq!(c.api_audiences, ["x", "y"]);
    }

    #[test]
    fn the_advertise_address_follows_the_bind_address() {
        let c = resolved(&["--bind-address=10.1.2.3", "--secure-port=7443"]);
        assert_eq!(c.advertise, SocketAddr::from(([10, 1, 2, 3], 7443)));
        let c = resolved(&["--bind-address=0.0.0.0"]);
        assert_eq!(c.bind, SocketAddr::from(([0, 0, 0, 0], 6443)));
        assert_eq!(c.advertise, SocketAddr::from(([127, 0, 0, 1], 6443)));
        let c = resolved(&["--bind-address=::"]);
        assert_eq!(c.advertise.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        let c = resolved(&["--bind-address=0.0.0.0", "--advertise-address=192.0.2.7"]);
        assert_eq!(c.advertise, SocketAddr::from(([192, 0, 2, 7], 6443)));
        // Port 0 picks a free port at bind time; the endpoint keeps what was asked.
        assert_eq!(resolved(&["--secure-port=0"]).advertise.port(), 0);
    }

    #[test]
    fn emulated_versions_switch_legacy_behaviour() {
        let cases = [
            ("1.32", AutomountMode::Projected, false),
            ("1.24", AutomountMode::Projected, false),
            ("1.23", AutomountMode::Projected, true),
            ("kube=1.21", AutomountMode::Projected, true),
            ("1.20", AutomountMode::LegacySecret, true),
        ];
        for (version, automount, auto_secret) in cases {
            let c = resolved(&[&format!("--emulated-version={version}")]);
            assert_eq!(c.automount, automount, "{version}");
            assert_eq!(c.auto_create_legacy_tokens, auto_secret, "{version}");
        }
        assert!(resolve(&["--emulated-version=1.15"]).is_err());
    }

    #[test]
    fn durations() {
        let c = resolved(&[
            "--service-account-max-token-expiration=24h",
            "--legacy-service-account-token-clean-up-period=1h30m",
            "--testing-clock-offset=-2h",
            "--testing-create-delay=2s",
            "--testing-min-token-expiration=30s",
        ]);
        assert_eq!(c.max_expiration_seconds, Some(86_400));
        assert_eq!(c.legacy_cleanup_period, SignedDuration::from_secs(5400));
        assert_eq!(c.testing.clock_offset, Some(SignedDuration::from_hours(-2)));
        assert_eq!(c.testing.create_delay, Some(Duration::from_secs(2)));
        assert_eq!(c.min_token_expiration, 30);
        assert_eq!(c.testing.min_token_expiration, Some(30));
        // 0 means no maximum; the bounds are 1 h and 2^32 s.
        let max = |flag: &str| resolve(&[flag]).map(|c| c.max_expiration_seconds).ok();
        assert_eq!(max("--service-account-max-token-expiration=0"), Some(None));
        assert_eq!(
            max("--service-account-max-token-expiration=1h"),
            Some(Some(3600))
        );
        let too_short = err(&["--service-account-max-token-expiration=59m"]);
        assert!(
            too_short.contains("between 1 hour and 2^32 seconds"),
            "{too_short}"
        );
        assert!(resolve(&["--service-account-max-token-expiration=4294967297s"]).is_err());
        assert!(resolve(&["--service-account-max-token-expiration=4294967296s"]).is_ok());
        assert!(resolve(&["--legacy-service-account-token-clean-up-period=-1h"]).is_err());
    }

    #[test]
    fn leader_election_flags() {
        let l = resolved(&[]).leader_election.expect("on by default");
        assert_eq!(
            (l.namespace.as_str(), l.name.as_str()),
            ("kube-system", "kube-controller-manager")
        );
        assert_eq!(
            (l.lease_duration, l.renew_deadline, l.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert!(
            resolved(&["--leader-elect=false"])
                .leader_election
                .is_none()
        );
        let short = err(&["--leader-elect-lease-duration=5s"]);
        assert!(
            short.contains("greater than --leader-elect-renew-deadline"),
            "{short}"
        );
        let tight = err(&["--leader-elect-retry-period=9s"]);
        assert!(tight.contains("retry-period*1.2"), "{tight}");
        assert!(err(&["--leader-elect-retry-period=0"]).contains("greater than zero"));
    }

    #[test]
    fn authorization_modes() {
        assert_eq!(resolved(&[]).authorization_mode, rbac::Mode::Rbac);
        let always = resolved(&["--authorization-mode=AlwaysAllow"]);
        assert_eq!(always.authorization_mode, rbac::Mode::AlwaysAllow);
        let list = resolved(&["--authorization-mode=RBAC,AlwaysAllow"]);
        assert_eq!(list.authorization_mode, rbac::Mode::AlwaysAllow);
        let node = err(&["--authorization-mode=Node,RBAC"]);
        assert!(
            node.contains("authorization mode \"Node\" is not supported"),
            "{node}"
        );
        assert!(err(&["--authorization-mode="]).contains("not supported"));
    }

    #[test]
    fn conflicts_and_bad_issuers_are_refused() {
        assert!(resolve(&["--tls-cert-file=c.pem"]).is_err());
        assert!(resolve(&["--tls-private-key-file=k.pem"]).is_err());
        let c = resolved(&["--tls-cert-file=c.pem", "--tls-private-key-file=k.pem"]);
        assert_eq!(c.pki.tls_cert_file, Some(PathBuf::from("c.pem")));
        assert_eq!(c.pki.tls_private_key_file, Some(PathBuf::from("k.pem")));
        let twice = err(&[
            "--service-account-issuer=https://a",
            "--service-account-issuer=https://a",
        ]);
        assert!(twice.contains("is given twice"), "{twice}");
        assert!(err(&["--service-account-issuer=a:b"]).contains("not a valid URL"));
    }

    #[test]
    fn files_and_lists_pass_through() {
        let c = resolved(&[
            "--data-dir=/d",
            "--tls-san=a.example,10.0.0.1",
            "--token-auth-file=/t.csv",
            "--service-account-signing-key-file=/s.key",
            "--service-account-key-file=/old.pub",
            "--service-account-key-file=/older.pub",
            "--service-account-jwks-uri=https://x/jwks",
            "--audit-log-path=/a.log",
            "--anonymous-issuer-discovery",
            "--service-account-extend-token-expiration=false",
            "--service-account-lookup=false",
        ]);
        assert_eq!(c.pki.data_dir, PathBuf::from("/d"));
        assert_eq!(c.pki.extra_sans, ["a.example", "10.0.0.1"]);
        assert_eq!(c.token_auth_file, Some(PathBuf::from("/t.csv")));
        assert_eq!(c.signing_key_file, Some(PathBuf::from("/s.key")));
        assert_eq!(
            c.verifying_key_files,
            [PathBuf::from("/old.pub"), PathBuf::from("/older.pub")]
        );
        assert_eq!(c.jwks_uri.as_deref(), Some("https://x/jwks"));
        assert_eq!(c.audit_log_path, Some(PathBuf::from("/a.log")));
        assert!(c.anonymous_issuer_discovery && !c.extend_expiration && !c.lookup_legacy);
    }
}
