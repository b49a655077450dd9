//! First-start generation, and later reuse, of the TLS and credential files in the data dir:
//! the CA, the serving certificate, the service-account signing key pair, the admin bearer
//! token and `admin.kubeconfig`; plus the rustls `ServerConfig` built from them, whose
//! certificate can be swapped while serving ([`serving`]): the generated one is renewed
//! ([`renew_serving`]), a `--tls-cert-file` pair re-read ([`load_user_pair`]). The data dir's
//! lock and modes are in [`datadir`].
//!
//! It must not touch the store, sign tokens (that is `tokens`), read flags or environment
//! (`cli` fills [`PkiConfig`]), or log key material. Private files are created 0600 and
//! replaced atomically; a CA or key that exists on disk is never regenerated.
//!
//! Mirrors kube-apiserver's self-signed fallback (`MaybeDefaultWithSelfSignedCerts` in
//! `staging/src/k8s.io/apiserver/pkg/server/options/serving.go`, alternate names from
//! `cmd/kube-apiserver/app/options/completion.go`) and kubeadm's lifetimes (CA 10 years,
//! serving certificate 1 year, `cmd/kubeadm/app/util/pkiutil`).

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

pub(crate) mod datadir;
pub(crate) mod serving;

use serving::ServingCert;

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVING_CERT: &str = "serving.crt";
const SERVING_KEY: &str = "serving.key";
const SA_KEY: &str = "sa.key";
const SA_PUB: &str = "sa.pub";
const ADMIN_TOKEN: &str = "admin.token";
/// The key-encryption key that seals the rotated service-account keys in the store.
const KEK: &str = "key-encryption.key";
const KUBECONFIG: &str = "admin.kubeconfig";
/// The files above that are created 0600, and tightened to it at every start.
const PRIVATE_FILES: [&str; 6] = [CA_KEY, SERVING_KEY, SA_KEY, ADMIN_TOKEN, KUBECONFIG, KEK];
/// What replicas of one cluster share (`--cluster-from`): the CA, so that each issues its
/// own serving certificate clients already trust; the service-account keys, so that a token
/// of one authenticates on every other, and the key-encryption key that opens the rotated
/// ones in the store; the admin token. Not the serving certificate (its names may differ),
/// the kubeconfig (its URL does) or anything else.
const SHARED_FILES: [&str; 6] = [CA_CERT, CA_KEY, SA_KEY, SA_PUB, ADMIN_TOKEN, KEK];

const PRIVATE_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// kubeadm's CA lifetime (ten 365-day years).
const CA_VALIDITY: Duration = DAY.saturating_mul(3650);
/// kubeadm's and client-go's serving-certificate lifetime.
const SERVING_VALIDITY: Duration = DAY.saturating_mul(365);
/// A serving certificate this close to expiry is reissued, at start-up and by
/// [`renew_serving`] while serving.
const RENEW_BEFORE: Duration = DAY.saturating_mul(30);
/// As client-go's `GenerateSelfSignedCertKeyWithFixtures`: a peer whose clock is a little
/// behind still accepts a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// 9000-01-01: later clocks are refused so `now + CA_VALIDITY` stays below year 9999, the
/// last one X.509 can express.
const MAX_NOW_UNIX: i64 = 221_845_392_000;

/// Names every generated serving certificate covers: loopback for `admin.kubeconfig`, and
/// the in-cluster names kube-apiserver adds, for clients that expect them.
const DEFAULT_SANS: [&str; 7] = [
    "127.0.0.1",
    "::1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// What `cli` resolved from `tokenwarden serve` flags.
#[derive(Clone, Debug)]
pub(crate) struct PkiConfig {
    pub(crate) data_dir: PathBuf,
    pub(crate) bind_address: IpAddr,
    pub(crate) port: u16,
    /// Each entry is an IP SAN if it parses as an IP address, else a DNS SAN.
    pub(crate) extra_sans: Vec<String>,
    /// `--tls-cert-file`: a PEM chain, leaf first. With it, no CA or serving cert is generated.
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`; required together with `tls_cert_file`.
    pub(crate) tls_private_key_file: Option<PathBuf>,
    /// `--cluster-from`: a first replica's data dir, whose CA, service-account key pair and
    /// admin token this data dir takes ([`SHARED_FILES`]) so that both replicas serve one
    /// cluster.
    pub(crate) cluster_from: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PkiError {
    #[error("cannot {verb} {path}: {err}", verb = .0, path = .1.display(), err = .2)]
    Io(&'static str, PathBuf, #[source] io::Error),
    #[error("{path}: {reason}", path = .0.display(), reason = .1)]
    InvalidFile(PathBuf, String),
    #[error("cannot generate {0}: {1}")]
    Generate(&'static str, #[source] rcgen::Error),
    #[error("invalid extra SAN {0:?}: expected an IP address or a DNS name without wildcards")]
    InvalidSan(String),
    #[error("--tls-cert-file and --tls-private-key-file must be given together")]
    PartialUserCert,
    #[error("{} exists without ca.key; refusing to replace a CA clients may trust", .0.display())]
    HalfCa(PathBuf),
    #[error("the clock reads a time certificates cannot express")]
    ClockOutOfRange,
    #[error("cannot write admin.kubeconfig: {0}")]
    Kubeconfig(#[from] serde_saphyr::SerializeError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Another process holds the data directory's lock.
    #[error(
        "the data directory {dir} is in use by another tokenwarden serve{holder}: {lock} is \
         locked; stop that server first, or give this one another --data-dir",
        dir = .dir.display(),
        holder = .holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        lock = .dir.join(datadir::LOCK_FILE).display(),
    )]
    DataDirInUse { dir: PathBuf, holder: Option<u32> },
}

/// Everything the server needs from the data dir, loaded into memory.
pub(crate) struct Pki {
    /// What clients trust for the serving certificate: our CA, or the last certificate of a
    /// user-supplied chain.
    ca_pem: String,
    /// The serving certificate and key, swapped by reloads and renewals.
    serving: Arc<ServingCert>,
    admin_token: String,
    sa_key_path: PathBuf,
    sa_pub_path: PathBuf,
    kek_path: PathBuf,
    kubeconfig_path: PathBuf,
    server_url: String,
}

impl fmt::Debug for Pki {
    // STYLE.md rule 6: the token and keys never reach a log, not even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("server_url", &self.server_url)
            .field("sa_key_path", &self.sa_key_path)
            .field("kubeconfig_path", &self.kubeconfig_path)
            .field("serving_key", &"<redacted>")
            .field("admin_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// PEM of the trust anchor for the serving certificate (`certificate-authority-data`).
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }
    pub(crate) fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }
    /// PKCS#8 PEM private key that signs service-account tokens.
    pub(crate) fn sa_key_path(&self) -> &Path {
        &self.sa_key_path
    }
    /// SubjectPublicKeyInfo PEM of [`Pki::sa_key_path`].
    // Read by the token issuer and the root-CA publisher (issues 3 and 4).
    #[allow(dead_code)]
    pub(crate) fn sa_public_key_path(&self) -> &Path {
        &self.sa_pub_path
    }
    /// The generated key-encryption key (base64 of 32 random bytes).
    pub(crate) fn kek_path(&self) -> &Path {
        &self.kek_path
    }
    /// `https://HOST:PORT`, as written into `admin.kubeconfig`.
    pub(crate) fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The serving certificate in use; [`ServingCert::replace`] changes it for every later
    /// handshake of [`Pki::server_tls_config`]'s configuration.
    pub(crate) fn serving_cert(&self) -> Arc<ServingCert> {
        self.serving.clone()
    }

    /// TLS 1.2/1.3 on aws-lc-rs, no client certificates, ALPN `h2` then `http/1.1`; the
    /// certificate is whatever [`Pki::serving_cert`] holds at each handshake.
    pub(crate) fn server_tls_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.serving.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Loads or creates every file in `config.data_dir`. `now` is `clock.now()`: it sets the
/// validity of new certificates and decides whether the serving certificate is renewed.
///
/// With a user certificate, no CA or serving certificate is generated and the last
/// certificate of the user's chain becomes the kubeconfig's trust anchor, so the file should
/// hold the chain up to the root clients trust.
pub(crate) fn ensure(config: &PkiConfig, now: jiff::Timestamp) -> Result<Pki, PkiError> {
    let names = required_names(config)?;
    let now = since_epoch(now)?;
    let dir = &config.data_dir;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PkiError::Io("create", dir.clone(), e))?;
    datadir::tighten(dir, &PRIVATE_FILES)?;
    if let Some(first) = &config.cluster_from {
        take_shared_files(first, dir)?;
    }

    // A user's key that does not match its certificate fails here, at start-up, not on
    // the first handshake.
    let (ca_pem, serving) = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(cert), Some(key)) => {
            let serving = load_user_pair(cert, key, None)?;
            let anchor = serving.cert.last().map(der_to_pem);
            (anchor.unwrap_or_default(), serving)
        }
        (None, None) => {
            let (ca_pem, issuer) = ensure_ca(dir, now)?;
            let (chain, key) = ensure_serving(dir, &ca_pem, &issuer, &names, now)?;
            let serving = serving::certified_key(
                &chain,
                &key,
                &dir.join(SERVING_CERT),
                &dir.join(SERVING_KEY),
            )?;
            (ca_pem, serving)
        }
        _ => return Err(PkiError::PartialUserCert),
    };
    let (sa_key_path, sa_pub_path) = ensure_sa_key(dir)?;
    let admin_token = ensure_admin_token(dir)?;
    let kek_path = ensure_kek(dir)?;

    // Rewritten on every start: the port or bind address may have changed.
    let server_url = server_url(config.bind_address, config.port);
    let kubeconfig_path = dir.join(KUBECONFIG);
    let kubeconfig = admin_kubeconfig(&server_url, &ca_pem, &admin_token);
    // Plain scalars: the default folds the long CA string into a `>-` block.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    let yaml = serde_saphyr::to_string_with_options(&kubeconfig, options)?;
    write_atomic(&kubeconfig_path, yaml.as_bytes(), PRIVATE_MODE)?;

    let pki = Pki {
        ca_pem,
        serving: ServingCert::new(serving),
        admin_token,
        sa_key_path,
        sa_pub_path,
        kek_path,
        kubeconfig_path,
        server_url,
    };
    pki.server_tls_config()?;
    Ok(pki)
}

/// Reads the `--tls-cert-file` chain and its `--tls-private-key-file` key, refusing a pair
/// that cannot be served (see [`serving`]). When `anchor_pem` (the trust anchor published at
/// start, in `admin.kubeconfig` and the `kube-root-ca.crt` ConfigMaps) is given and the new
/// chain no longer ends in it, the pair is still taken, with a warning: clients that trust
/// only that anchor will refuse it until a restart publishes the new one.
pub(crate) fn load_user_pair(
    cert: &Path,
    key: &Path,
    anchor_pem: Option<&str>,
) -> Result<rustls::sign::CertifiedKey, PkiError> {
    let pair = serving::certified_key(&read(cert)?, &read(key)?, cert, key)?;
    let anchor = pair.cert.last().map(der_to_pem);
    if anchor_pem.is_some_and(|want| anchor.as_deref() != Some(want)) {
        tracing::warn!(
            "{} no longer ends in the certificate admin.kubeconfig and the kube-root-ca.crt \
             ConfigMaps publish: clients that trust only that one refuse the new certificate \
             until the server restarts",
            cert.display()
        );
    }
    Ok(pair)
}

/// The generated serving certificate, reissued from the CA if it no longer suits
/// `config`'s names or expires within [`RENEW_BEFORE`] of `now`: the new pair (already on
/// disk), or `None` when the current one stays. Nothing to do with `--tls-cert-file`. The CA
/// on disk must still be `ca_pem`, the one clients were given, or nothing is issued.
pub(crate) fn renew_serving(
    config: &PkiConfig,
    ca_pem: &str,
    now: jiff::Timestamp,
) -> Result<Option<rustls::sign::CertifiedKey>, PkiError> {
    if config.tls_cert_file.is_some() {
        return Ok(None);
    }
    let names = required_names(config)?;
    let now = since_epoch(now)?;
    let dir = &config.data_dir;
    let (cert_path, key_path) = (dir.join(SERVING_CERT), dir.join(SERVING_KEY));
    if let (Ok(chain), Ok(key)) = (read(&cert_path), read(&key_path))
        && serving_is_current(ca_pem, &chain, &key, &names, now).is_ok()
    {
        return Ok(None);
    }
    let ca_path = dir.join(CA_CERT);
    if read(&ca_path)? != ca_pem {
        return Err(invalid(&ca_path, "changed since the server started"));
    }
    let ca_key_path = dir.join(CA_KEY);
    let ca_key = load_key(&ca_key_path)?.ok_or_else(|| invalid(&ca_key_path, "missing"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(|e| invalid(&ca_path, e))?;
    let (chain, key) = ensure_serving(dir, ca_pem, &issuer, &names, now)?;
    serving::certified_key(&chain, &key, &cert_path, &key_path).map(Some)
}

/// `now` as the time since the epoch certificates are made from, or an error for a clock
/// before 1970 or past [`MAX_NOW_UNIX`].
fn since_epoch(now: jiff::Timestamp) -> Result<Duration, PkiError> {
    u64::try_from(now.as_second())
        .ok()
        .filter(|_| now.as_second() <= MAX_NOW_UNIX)
        .map(Duration::from_secs)
        .ok_or(PkiError::ClockOutOfRange)
}

/// The serving certificate's SANs: defaults, the bind address unless it is a wildcard, then
/// the extras; canonical (IPs re-printed, DNS lower-cased) and de-duplicated.
fn required_names(config: &PkiConfig) -> Result<Vec<String>, PkiError> {
    let mut names: Vec<String> = DEFAULT_SANS.iter().map(|s| (*s).to_owned()).collect();
    let bind = (!config.bind_address.is_unspecified()).then(|| config.bind_address.to_string());
    let extras = config.extra_sans.iter().map(|s| s.trim());
    for extra in bind.iter().map(String::as_str).chain(extras) {
        let name = match extra.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            // ServerName's DNS rules are the ones clients will match against; they also
            // reject wildcards, which the renewal check below could not test.
            Err(_) => match ServerName::try_from(extra.to_ascii_lowercase()) {
                Ok(ServerName::DnsName(dns)) => dns.as_ref().to_owned(),
                _ => return Err(PkiError::InvalidSan(extra.to_owned())),
            },
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Loads the CA, or creates it. Returns its PEM and an issuer for serving certificates.
fn ensure_ca(dir: &Path, now: Duration) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let key = match load_key(&key_path)? {
        Some(key) => key,
        None if cert_path.exists() => return Err(PkiError::HalfCa(cert_path)),
        None => {
            let key = generate_key(&rcgen::PKCS_ECDSA_P256_SHA256, "the CA key")?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
            key
        }
    };
    if cert_path.exists() {
        let pem = read(&cert_path)?;
        let issuer = Issuer::from_ca_cert_pem(&pem, key).map_err(|e| invalid(&cert_path, e))?;
        return Ok((pem, issuer));
    }
    // A first start, or a crash between writing ca.key and ca.crt: the key was never
    // published in a certificate, so self-signing one for it now is safe.
    let mut params = CertificateParams::default();
    let dn = &mut params.distinguished_name;
    dn.push(DnType::CommonName, "tokenwarden-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now, CA_VALIDITY);
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::Generate("the CA certificate", e))?;
    write_atomic(&cert_path, cert.pem().as_bytes(), PUBLIC_MODE)?;
    tracing::info!(path = %cert_path.display(), "generated CA");
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// Reuses serving.crt/serving.key if they still suit `names` and `now`; else issues a new
/// pair (new key too) from the CA, which is kept.
fn ensure_serving(
    dir: &Path,
    ca_pem: &str,
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
    now: Duration,
) -> Result<(String, String), PkiError> {
    let (cert_path, key_path) = (dir.join(SERVING_CERT), dir.join(SERVING_KEY));
    if cert_path.exists() && key_path.exists() {
        let (chain, key) = (read(&cert_path)?, read(&key_path)?);
        match serving_is_current(ca_pem, &chain, &key, names, now) {
            Ok(()) => return Ok((chain, key)),
            Err(reason) => tracing::info!(%reason, "reissuing the serving certificate"),
        }
    }
    let generate = |e| PkiError::Generate("the serving certificate", e);
    let key = generate_key(&rcgen::PKCS_ECDSA_P256_SHA256, "the serving key")?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate)?;
    let dn = &mut params.distinguished_name;
    dn.push(DnType::CommonName, "tokenwarden");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, SERVING_VALIDITY);
    let cert = params.signed_by(&key, issuer).map_err(generate)?;
    // Key first: a crash between the writes leaves a mismatched pair, which the next start
    // detects (`serving_is_current`) and replaces.
    write_atomic(&key_path, key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), PUBLIC_MODE)?;
    tracing::info!(path = %cert_path.display(), "generated serving certificate");
    Ok((cert.pem(), key.serialize_pem()))
}

/// An existing pair is reused only if the key matches, the chain verifies against the CA
/// for every name now, and it will still be valid `RENEW_BEFORE` from now.
fn serving_is_current(
    ca_pem: &str,
    chain_pem: &str,
    key_pem: &str,
    names: &[String],
    now: Duration,
) -> Result<(), PkiError> {
    let chain = parse_certs(chain_pem, Path::new(SERVING_CERT))?;
    let key = parse_key(key_pem, Path::new(SERVING_KEY))?;
    rustls::sign::CertifiedKey::from_der(chain, key, &provider())?;
    for name in names {
        verify_serving(ca_pem, chain_pem, name, now)?;
    }
    verify_serving(
        ca_pem,
        chain_pem,
        "localhost",
        now.saturating_add(RENEW_BEFORE),
    )
}

/// Verifies `chain_pem` for `name` at time `at` exactly as a rustls client trusting only
/// `ca_pem` would (signature, validity window, SAN match, serverAuth usage).
fn verify_serving(ca_pem: &str, chain_pem: &str, name: &str, at: Duration) -> Result<(), PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(parse_certs(ca_pem, Path::new(CA_CERT))?);
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    let chain = parse_certs(chain_pem, Path::new(SERVING_CERT))?;
    let server_name =
        ServerName::try_from(name).map_err(|_| PkiError::InvalidSan(name.to_owned()))?;
    let (leaf, rest) = chain.split_at(1);
    verifier
        .verify_server_cert(
            &leaf[0],
            rest,
            &server_name,
            &[],
            UnixTime::since_unix_epoch(at),
        )
        .map_err(|e| rustls::Error::General(format!("{name}: {e}")))?;
    Ok(())
}

/// Loads sa.key (any PEM key rcgen reads) or generates RSA-2048; keeps sa.pub in step.
fn ensure_sa_key(dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
    let (key_path, pub_path) = (dir.join(SA_KEY), dir.join(SA_PUB));
    let key = match load_key(&key_path)? {
        Some(key) => key,
        None => {
            // RSA-2048 because every JWT consumer accepts RS256. This is the one slow step
            // (tens of milliseconds) and runs only on first start.
            let key = generate_key(&rcgen::PKCS_RSA_SHA256, "the service-account key")?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
            tracing::info!(path = %key_path.display(), "generated service-account signing key");
            key
        }
    };
    // sa.pub is derived data: rewrite it whenever it is missing or disagrees with sa.key.
    let public = key.public_key_pem();
    if fs::read_to_string(&pub_path).ok().as_deref() != Some(public.as_str()) {
        write_atomic(&pub_path, public.as_bytes(), PUBLIC_MODE)?;
    }
    Ok((key_path, pub_path))
}

/// The key-encryption key file, made on first start: base64 of 32 random bytes.
fn ensure_kek(dir: &Path) -> Result<PathBuf, PkiError> {
    let path = dir.join(KEK);
    if !path.exists() {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let text = format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        write_atomic(&path, text.as_bytes(), PRIVATE_MODE)?;
        tracing::info!(path = %path.display(), "generated the key-encryption key");
    }
    Ok(path)
}

fn ensure_admin_token(dir: &Path) -> Result<String, PkiError> {
    let path = dir.join(ADMIN_TOKEN);
    if path.exists() {
        let token = read(&path)?.trim().to_owned();
        if token.is_empty() {
            return Err(invalid(&path, "empty admin token"));
        }
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    write_atomic(&path, format!("{token}\n").as_bytes(), PRIVATE_MODE)?;
    tracing::info!(path = %path.display(), "generated admin token");
    Ok(token)
}

/// `https://HOST:PORT`; a wildcard bind is reached through the loopback of its family.
fn server_url(bind: IpAddr, port: u16) -> String {
    match bind {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("https://127.0.0.1:{port}"),
        IpAddr::V4(ip) => format!("https://{ip}:{port}"),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("https://[::1]:{port}"),
        IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
    }
}

/// The kubeconfig schema of client-go's `tools/clientcmd/api/v1/types.go`, minimal subset.
fn admin_kubeconfig(server: &str, ca_pem: &str, token: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "tokenwarden", "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "tokenwarden", "context": {
            "cluster": "tokenwarden", "user": "admin", "namespace": "default",
        }}],
        "current-context": "tokenwarden",
    })
}

/// Copies [`SHARED_FILES`] from a first replica's data dir. A file this dir already holds must
/// be the same: a replica never silently changes the CA or keys it was started with.
fn take_shared_files(first: &Path, dir: &Path) -> Result<(), PkiError> {
    for name in SHARED_FILES {
        let from = first.join(name);
        let contents = fs::read(&from).map_err(|e| PkiError::Io("read", from.clone(), e))?;
        let to = dir.join(name);
        match fs::read(&to) {
            Ok(have) if have == contents => {}
            Ok(_) => {
                return Err(PkiError::InvalidFile(
                    to,
                    format!(
                        "differs from {}: a data dir joins a cluster only once, with --cluster-from on its first start",
                        from.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mode = if PRIVATE_FILES.contains(&name) {
                    PRIVATE_MODE
                } else {
                    PUBLIC_MODE
                };
                write_atomic(&to, &contents, mode)?;
            }
            Err(e) => return Err(PkiError::Io("read", to, e)),
        }
    }
    Ok(())
}

/// Replaces `path` so that readers see the old or the new content, never a mix, and a
/// private file is never readable by others, not even briefly.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::rng().next_u64()));
    let result = (|| {
        // 1. Create the temp file with its final mode; create_new never reuses a leftover.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // 2. Write and fsync, so the rename cannot expose an empty file after a crash.
        file.write_all(contents)?;
        file.sync_all()?;
        // 3. Rename over the target, then fsync the directory so the rename is durable.
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        PkiError::Io("write", path.to_owned(), e)
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::Io("read", path.to_owned(), e))
}

/// Reads a PEM private key, or `None` if the file does not exist.
fn load_key(path: &Path) -> Result<Option<KeyPair>, PkiError> {
    if !path.exists() {
        return Ok(None);
    }
    let key = KeyPair::from_pem(&read(path)?).map_err(|e| invalid(path, e))?;
    Ok(Some(key))
}

fn generate_key(
    alg: &'static rcgen::SignatureAlgorithm,
    what: &'static str,
) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(alg).map_err(|e| PkiError::Generate(what, e))
}

/// Validity `[now - BACKDATE, now + lifetime]`, and a random serial so that a reissued
/// certificate never repeats an issuer/serial pair (rcgen's default derives it from the key).
fn set_validity(params: &mut CertificateParams, now: Duration, lifetime: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now.saturating_add(lifetime);
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f; // a positive INTEGER
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn parse_certs(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if certs.is_empty() {
        return Err(invalid(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn parse_key(pem: &str, path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| invalid(path, e))?
        .ok_or_else(|| invalid(path, "no private key block"))
}

fn der_to_pem(cert: &CertificateDer<'_>) -> String {
    let b64 = STANDARD.encode(cert.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let body = lines.join("\n");
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}

fn invalid(path: &Path, reason: impl fmt::Display) -> PkiError {
    PkiError::InvalidFile(path.to_owned(), reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    const ALL: [&str; 9] = [
        KEK,
        CA_CERT,
        CA_KEY,
        SERVING_CERT,
        SERVING_KEY,
        SA_KEY,
        SA_PUB,
        ADMIN_TOKEN,
        KUBECONFIG,
    ];
    const D: i64 = 24 * 3600;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn config(tmp: &Path, bind: &str, extra_sans: &[&str]) -> PkiConfig {
        PkiConfig {
            data_dir: tmp.join("data"),
            bind_address: bind.parse().unwrap(),
            port: 6443,
            extra_sans: extra_sans.iter().map(|s| (*s).to_owned()).collect(),
            tls_cert_file: None,
            tls_private_key_file: None,
            cluster_from: None,
        }
    }

    fn in_secs(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(crate::clock::SystemClock::shared().now().as_second() + secs)
            .unwrap()
    }

    fn start(cfg: &PkiConfig) -> Pki {
        ensure(cfg, in_secs(0)).unwrap()
    }

    fn files(cfg: &PkiConfig) -> BTreeMap<String, String> {
        let entries = fs::read_dir(&cfg.data_dir).unwrap().map(|e| e.unwrap());
        entries
            .map(|e| {
                (
                    e.file_name().into_string().unwrap(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// Whether a client trusting `ca` accepts `chain` for `name`, `secs` from now.
    fn verifies(ca: &str, chain: &str, name: &str, secs: i64) -> bool {
        let at = Duration::from_secs(in_secs(secs).as_second().try_into().unwrap());
        verify_serving(ca, chain, name, at).is_ok()
    }

    fn kubeconfig(pki: &Pki) -> serde_json::Value {
        serde_saphyr::from_str(&fs::read_to_string(pki.kubeconfig_path()).unwrap()).unwrap()
    }

    #[test]
    fn a_second_replica_takes_the_first_ones_ca_keys_and_token() {
        let tmp = tempfile::tempdir().unwrap();
        let first = config(tmp.path(), "127.0.0.1", &[]);
        let a = start(&first);
        let mut second = config(&tmp.path().join("b"), "127.0.0.1", &["replica-b"]);
        second.port = 6444;
        second.cluster_from = Some(first.data_dir.clone());
        let b = start(&second);
        let (fa, fb) = (files(&first), files(&second));
        for name in SHARED_FILES {
            assert_eq!(fa[name], fb[name], "{name} is shared");
        }
        assert_ne!(
            fa[SERVING_CERT], fb[SERVING_CERT],
            "each replica has its own"
        );
        assert_eq!(a.ca_pem(), b.ca_pem());
        assert_eq!(a.admin_token(), b.admin_token());
        assert_eq!(b.server_url(), "https://127.0.0.1:6444");
        for name in [CA_KEY, SA_KEY, ADMIN_TOKEN] {
            assert_eq!(mode(&second.data_dir.join(name)), 0o600, "{name}");
        }
        // Starting again with the flag is fine; a different CA is refused, not replaced.
        start(&second);
        let mut other = config(&tmp.path().join("c"), "127.0.0.1", &[]);
        start(&other);
        other.cluster_from = Some(first.data_dir.clone());
        let err = ensure(&other, in_secs(0)).expect_err("a different CA");
        assert!(err.to_string().contains("differs from"), "{err}");
    }

    #[test]
    fn first_start_creates_every_file_private_ones_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "127.0.0.1", &[]);
        let pki = start(&cfg);
        assert_eq!(mode(&cfg.data_dir), 0o700);
        let names: Vec<String> = files(&cfg).into_keys().collect();
        let mut expected = ALL.map(String::from).to_vec();
        expected.sort();
        assert_eq!(names, expected, "no temp files left behind");
        for name in PRIVATE_FILES {
            assert_eq!(mode(&cfg.data_dir.join(name)), 0o600, "{name}");
        }
        for name in [CA_CERT, SERVING_CERT, SA_PUB] {
            assert_eq!(mode(&cfg.data_dir.join(name)) & 0o022, 0, "{name}");
        }
        assert_eq!(files(&cfg)[ADMIN_TOKEN], format!("{}\n", pki.admin_token()));
        assert_eq!(URL_SAFE_NO_PAD.decode(pki.admin_token()).unwrap().len(), 32);
        assert_eq!(pki.ca_pem(), files(&cfg)[CA_CERT]);
        assert_eq!(pki.sa_key_path(), cfg.data_dir.join(SA_KEY));
        let debug = format!("{pki:?}");
        assert!(
            !debug.contains(pki.admin_token()) && !debug.contains("PRIVATE"),
            "{debug}"
        );
    }

    #[test]
    fn later_starts_reuse_files_and_new_names_reissue_only_the_serving_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "127.0.0.1", &[]);
        let first = start(&cfg);
        let before = files(&cfg);
        assert_eq!(start(&cfg).admin_token(), first.admin_token());
        assert_eq!(files(&cfg), before, "byte-for-byte reuse");

        let cfg = config(
            tmp.path(),
            "127.0.0.1",
            &["TW.Example.com", " 10.1.2.3 ", "fd00::7"],
        );
        let pki = start(&cfg);
        let after = files(&cfg);
        for name in ALL {
            let reissued = name == SERVING_CERT || name == SERVING_KEY;
            assert_eq!(before[name] != after[name], reissued, "{name}");
        }
        for name in ["tw.example.com", "10.1.2.3", "fd00::7", "localhost"] {
            assert!(
                verifies(pki.ca_pem(), &after[SERVING_CERT], name, 0),
                "{name}"
            );
        }
        start(&cfg);
        assert_eq!(files(&cfg), after, "same names again: nothing changes");
    }

    #[test]
    fn serving_cert_chains_to_the_ca_and_covers_exactly_the_expected_names() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "192.0.2.10", &["api.internal"]);
        let pki = start(&cfg);
        let (ca, chain) = (pki.ca_pem(), &files(&cfg)[SERVING_CERT]);
        for name in DEFAULT_SANS.iter().chain(&["192.0.2.10", "api.internal"]) {
            assert!(verifies(ca, chain, name, 0), "{name}");
        }
        for name in [
            "evil.example.com",
            "10.9.9.9",
            "kubernetes.default.svc.cluster",
        ] {
            assert!(!verifies(ca, chain, name, 0), "{name}");
        }
        // One year of validity, backdated by an hour.
        assert!(verifies(ca, chain, "localhost", 364 * D));
        assert!(!verifies(ca, chain, "localhost", 366 * D));
        assert!(verifies(ca, chain, "localhost", -1800));
        let other = tempfile::tempdir().unwrap();
        let other = start(&config(other.path(), "127.0.0.1", &[]));
        assert!(
            !verifies(other.ca_pem(), chain, "localhost", 0),
            "another CA"
        );
    }

    /// Passes TLS records between an in-memory client and server until the handshake is done.
    pub(super) fn exchange(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) {
        for _ in 0..5 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
    }

    #[test]
    fn tls_handshake_negotiates_h2_for_a_cluster_name() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = start(&config(tmp.path(), "127.0.0.1", &[]));
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(parse_certs(pki.ca_pem(), Path::new("ca")).unwrap());
        let mut client_config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_config.alpn_protocols = vec![b"h2".to_vec()];
        let name = ServerName::try_from("kubernetes.default.svc").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let server_config = Arc::new(pki.server_tls_config().unwrap());
        let mut server = rustls::ServerConnection::new(server_config).unwrap();
        exchange(&mut client, &mut server);
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
    }

    #[test]
    fn kubeconfig_points_at_a_covered_host_for_each_bind_address() {
        let tmp = tempfile::tempdir().unwrap();
        for (bind, url, host) in [
            ("0.0.0.0", "https://127.0.0.1:6443", "127.0.0.1"),
            ("::", "https://[::1]:6443", "::1"),
            ("127.0.0.5", "https://127.0.0.5:6443", "127.0.0.5"),
        ] {
            let cfg = config(tmp.path(), bind, &[]);
            let pki = start(&cfg);
            assert_eq!(pki.server_url(), url);
            let kc = kubeconfig(&pki);
            assert_eq!(
                (&kc["apiVersion"], &kc["kind"]),
                (&"v1".into(), &"Config".into())
            );
            assert_eq!(kc["current-context"], "tokenwarden");
            let cluster = &kc["clusters"][0];
            assert_eq!(
                (&cluster["name"], &cluster["cluster"]["server"]),
                (&"tokenwarden".into(), &url.into())
            );
            let ca = cluster["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap();
            assert_eq!(STANDARD.decode(ca).unwrap(), pki.ca_pem().as_bytes());
            assert_eq!(kc["users"][0]["name"], "admin");
            assert_eq!(kc["users"][0]["user"]["token"], pki.admin_token());
            let context = serde_json::json!({"name": "tokenwarden", "context":
                {"cluster": "tokenwarden", "user": "admin", "namespace": "default"}});
            assert_eq!(kc["contexts"], serde_json::json!([context]));
            assert!(
                verifies(pki.ca_pem(), &files(&cfg)[SERVING_CERT], host, 0),
                "{host}"
            );
        }
        assert_eq!(
            server_url("fe80::1".parse().unwrap(), 443),
            "https://[fe80::1]:443"
        );
    }

    #[test]
    fn sa_pub_is_the_public_half_of_the_rsa_2048_sa_key() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "127.0.0.1", &[]);
        let pki = start(&cfg);
        let (key_pem, public) = (files(&cfg)[SA_KEY].clone(), files(&cfg)[SA_PUB].clone());
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "SPKI");
        // Sign with sa.key, verify with sa.pub, as an RS256 JWT consumer would.
        let der = KeyPair::from_pem(&key_pem).unwrap().serialize_der();
        let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
        assert_eq!(rsa.public_modulus_len() * 8, 2048);
        let mut sig = vec![0; rsa.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let alg = &aws_lc_rs::signature::RSA_PKCS1_SHA256;
        rsa.sign(alg, &rng, b"msg", &mut sig).unwrap();
        let mut pem = public.as_bytes();
        let spki = rustls_pemfile::public_keys(&mut pem)
            .next()
            .unwrap()
            .unwrap();
        let verify = |msg: &[u8]| {
            let alg = &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256;
            let key = aws_lc_rs::signature::UnparsedPublicKey::new(alg, spki.as_ref());
            key.verify(msg, &sig).is_ok()
        };
        assert!(verify(b"msg") && !verify(b"other"));
        // A lost sa.pub is re-derived from the existing key, never from a new key.
        fs::remove_file(pki.sa_public_key_path()).unwrap();
        start(&cfg);
        assert_eq!(
            (&files(&cfg)[SA_KEY], &files(&cfg)[SA_PUB]),
            (&key_pem, &public)
        );
    }

    #[test]
    fn serving_cert_near_expiry_is_renewed_from_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "127.0.0.1", &[]);
        start(&cfg);
        let before = files(&cfg);
        ensure(&cfg, in_secs(300 * D)).unwrap();
        assert_eq!(files(&cfg), before, "300 days in: still reused");
        let pki = ensure(&cfg, in_secs(340 * D)).unwrap();
        let after = files(&cfg);
        assert_ne!(after[SERVING_CERT], before[SERVING_CERT]);
        assert_eq!(
            (&after[CA_CERT], &after[CA_KEY]),
            (&before[CA_CERT], &before[CA_KEY])
        );
        assert!(verifies(
            pki.ca_pem(),
            &after[SERVING_CERT],
            "localhost",
            700 * D
        ));
    }

    #[test]
    fn renewal_while_serving_reissues_from_the_same_ca_only_when_due() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "127.0.0.1", &[]);
        let pki = start(&cfg);
        let before = files(&cfg);
        let renew = |secs| renew_serving(&cfg, pki.ca_pem(), in_secs(secs));
        assert!(renew(300 * D).unwrap().is_none(), "300 days in: kept");
        assert_eq!(files(&cfg), before);
        let renewed = renew(340 * D).unwrap().expect("340 days in: renewed");
        let after = files(&cfg);
        assert_ne!(after[SERVING_CERT], before[SERVING_CERT]);
        assert_eq!(after[CA_CERT], before[CA_CERT]);
        let leaf = parse_certs(&after[SERVING_CERT], Path::new("new")).unwrap();
        assert_eq!(renewed.cert, leaf, "what is on disk is what is served");
        assert!(verifies(
            pki.ca_pem(),
            &after[SERVING_CERT],
            "localhost",
            700 * D
        ));
        // Swapped into the configuration already handed to the listener.
        let serving = pki.serving_cert();
        serving.replace(renewed);
        assert_eq!(serving.chain(), leaf);
        // A CA that changed on disk under the server is not used to issue.
        fs::write(cfg.data_dir.join(CA_CERT), "other").unwrap();
        let err = renew(700 * D).expect_err("changed CA");
        assert!(
            err.to_string().contains("changed since the server started"),
            "{err}"
        );
    }

    #[test]
    fn user_certificate_is_served_and_its_chain_root_is_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["tw.example.com".to_owned()]).unwrap();
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let (cert_file, key_file) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
        fs::write(&cert_file, leaf.pem() + &ca_cert.pem()).unwrap();
        fs::write(&key_file, leaf_key.serialize_pem()).unwrap();

        let mut cfg = config(tmp.path(), "127.0.0.1", &[]);
        cfg.tls_cert_file = Some(cert_file);
        assert!(matches!(
            ensure(&cfg, in_secs(0)),
            Err(PkiError::PartialUserCert)
        ));
        cfg.tls_private_key_file = Some(key_file.clone());
        let pki = start(&cfg);
        assert_eq!(pki.ca_pem(), ca_cert.pem());
        let ca_data =
            kubeconfig(&pki)["clusters"][0]["cluster"]["certificate-authority-data"].clone();
        assert_eq!(
            STANDARD.decode(ca_data.as_str().unwrap()).unwrap(),
            ca_cert.pem().as_bytes()
        );
        for absent in [CA_CERT, CA_KEY, SERVING_CERT, SERVING_KEY] {
            assert!(!cfg.data_dir.join(absent).exists(), "{absent}");
        }
        // A key that does not match the certificate fails at start-up.
        fs::write(&key_file, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let err = ensure(&cfg, in_secs(0)).expect_err("a mismatched key");
        assert!(err.to_string().contains("not the private key of"), "{err}");
        // Renewal leaves a user's certificate alone.
        assert!(
            renew_serving(&cfg, pki.ca_pem(), in_secs(340 * D))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn san_list_is_canonical_and_deduplicated() {
        let tmp = tempfile::tempdir().unwrap();
        let names = |bind, extras| required_names(&config(tmp.path(), bind, extras)).unwrap();
        let defaults: Vec<String> = DEFAULT_SANS.map(String::from).to_vec();
        let extras = ["LocalHost", "0:0::1", "10.0.0.1", " 10.0.0.1", "127.0.0.1"];
        assert_eq!(
            names("127.0.0.1", &extras),
            [&defaults[..], &["10.0.0.1".into()]].concat()
        );
        assert_eq!(names("::", &[]), defaults);
        assert_eq!(
            names("192.0.2.1", &[]),
            [&defaults[..], &["192.0.2.1".into()]].concat()
        );
    }

    #[test]
    fn bad_sans_bad_clocks_and_half_cas_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["*.example.com", "two words", "[::1]"] {
            let err = ensure(&config(tmp.path(), "127.0.0.1", &[bad]), in_secs(0));
            assert!(
                matches!(err, Err(PkiError::InvalidSan(ref s)) if s == bad),
                "{bad}"
            );
        }
        let cfg = config(tmp.path(), "127.0.0.1", &[]);
        let far = jiff::Timestamp::from_second(MAX_NOW_UNIX + 1).unwrap();
        assert!(matches!(ensure(&cfg, far), Err(PkiError::ClockOutOfRange)));
        let ca_key = start(&cfg).ca_pem().to_owned();
        let ca_key = (ca_key, files(&cfg)[CA_KEY].clone()).1;

        // ca.key without ca.crt (a crash between the writes): a new certificate, same key.
        fs::remove_file(cfg.data_dir.join(CA_CERT)).unwrap();
        let pki = start(&cfg);
        assert_eq!(files(&cfg)[CA_KEY], ca_key);
        assert!(verifies(
            pki.ca_pem(),
            &files(&cfg)[SERVING_CERT],
            "localhost",
            0
        ));

        // ca.crt without ca.key: never silently replace a CA that clients may trust.
        fs::remove_file(cfg.data_dir.join(CA_KEY)).unwrap();
        assert!(matches!(ensure(&cfg, in_secs(0)), Err(PkiError::HalfCa(_))));
    }
}
