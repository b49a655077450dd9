//! Authentication of service-account JWTs, bound and legacy, as kube-apiserver's
//! `pkg/serviceaccount/jwt.go`, `claims.go` and `legacy.go` do it (see
//! `shared/reference/k8s-sa-token-facts.md` §3): route by issuer without verifying,
//! verify the signature by kid, intersect audiences, then check every object the token
//! names — the ServiceAccount by uid, and the Pod, Secret or Node it is bound to — with
//! Kubernetes' exact error texts. Every use is accounted: valid or stale (after
//! `warnafter`), legacy (auto-generated or manual Secret).
//!
//! Unlike kube-apiserver, whose 10 s cache keeps accepting a token after its Pod is gone,
//! the positive-result cache here is invalidated from the store's watch, so a token dies
//! the moment its object does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use base64::Engine as _;
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use super::claims::{self, BoundClaims, LEGACY_ISSUER, LegacyClaims};
use super::jws;
use super::keyring::Keyring;
use super::lookup::{self, Kind, ObjectLookup};
use super::{Authenticated, TokenAuthenticator, TokenOutcome, UserInfo};
use crate::clock::SharedClock;
use crate::registry::shared_watch::Notice;
use crate::registry::{EventType, Registry, resources};
use crate::telemetry::metrics::Metrics;
use crate::wellknown;

/// How long a successful authentication is remembered (kube-apiserver's
/// `TokenSuccessCacheTTL`); invalidation by watch makes it safe.
const CACHE_TTL_SECONDS: i64 = 10;
/// Beyond this many cached results, expired ones are dropped, then everything.
const CACHE_MAX_ENTRIES: usize = 65_536;

/// Settings of service-account token authentication.
#[derive(Debug, Clone)]
pub(crate) struct AuthenticatorConfig {
    /// Accepted issuers of bound tokens (`--service-account-issuer`, all of them).
    pub(crate) issuers: Vec<String>,
    /// `--api-audiences`.
    pub(crate) api_audiences: Vec<String>,
    /// `--service-account-lookup`: whether legacy tokens are checked against their
    /// Secret and ServiceAccount (bound tokens always are).
    pub(crate) lookup_legacy: bool,
}

/// What a validated token is, remembered between uses.
#[derive(Debug, Clone)]
struct Validated {
    user: UserInfo,
    audiences: Vec<String>,
    namespace: String,
    service_account: String,
    /// Set for projected tokens carrying `warnafter`.
    warn_after: Option<i64>,
    legacy: Option<LegacyUse>,
    /// Audit annotations that hold for every use.
    annotations: BTreeMap<String, String>,
    /// The objects whose change must drop this result from the cache.
    depends_on: Vec<(Kind, String, String)>,
    /// Until when the result may be served from the cache (unix seconds).
    cache_until: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegacyUse {
    /// Listed in the ServiceAccount's `.secrets`: created by the pre-1.24 controller.
    Auto,
    Manual,
    /// A token without `aud` from a bound issuer: legacy, but from no Secret.
    Other,
}

/// One use of a legacy Secret token, reported so that the tracking controller can stamp
/// `kubernetes.io/legacy-token-last-used` on the Secret (this module never writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegacyTokenUse {
    pub(crate) namespace: String,
    pub(crate) secret: String,
}

/// Where legacy uses go; a full channel drops the report (the label is a daily mark, and
/// the next use reports again).
pub(crate) type LegacyUseSink = tokio::sync::mpsc::Sender<LegacyTokenUse>;

/// Remembers successful authentications; see the module docs for invalidation.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    inner: Mutex<CacheInner>,
    /// Bumped by every invalidation; an authentication that started before a bump does
    /// not cache its result, so a lookup racing a delete cannot resurrect a token.
    epoch: AtomicU64,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<[u8; 32], Validated>,
    by_object: HashMap<(Kind, String, String), HashSet<[u8; 32]>>,
}

impl AuthCache {
    fn get(&self, key: &[u8; 32], now: i64) -> Option<Validated> {
        let inner = self.inner.lock().ok()?;
        inner
            .entries
            .get(key)
            .filter(|v| v.cache_until > now)
            .cloned()
    }

    fn insert(&self, key: [u8; 32], value: Validated, epoch: u64, now: i64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if inner.entries.len() >= CACHE_MAX_ENTRIES {
            let expired: Vec<[u8; 32]> = inner
                .entries
                .iter()
                .filter(|(_, v)| v.cache_until <= now)
                .map(|(k, _)| *k)
                .collect();
            for k in expired {
                inner.remove(&k);
            }
            if inner.entries.len() >= CACHE_MAX_ENTRIES {
                *inner = CacheInner::default();
            }
        }
        for dep in &value.depends_on {
            inner.by_object.entry(dep.clone()).or_default().insert(key);
        }
        inner.entries.insert(key, value);
    }

    /// Drops every result that depends on the object.
    pub(crate) fn invalidate(&self, kind: Kind, namespace: &str, name: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let ns = if kind == Kind::Node { "" } else { namespace };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(keys) = inner
            .by_object
            .remove(&(kind, ns.to_string(), name.to_string()))
        {
            for k in keys {
                inner.remove(&k);
            }
        }
    }

    /// Drops everything (after the invalidation watch lost events).
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut inner) = self.inner.lock() {
            *inner = CacheInner::default();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }
}

impl CacheInner {
    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(v) = self.entries.remove(key) {
            for dep in v.depends_on {
                if let Some(set) = self.by_object.get_mut(&dep) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_object.remove(&dep);
                    }
                }
            }
        }
    }
}

/// The cache key: a digest of the token and the audiences asked for, so the token
/// itself is never kept.
fn cache_key(token: &str, audiences: &[String]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(token.as_bytes());
    for a in audiences {
        ctx.update(b"\n");
        ctx.update(a.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// Bound and legacy service-account token authentication.
pub(crate) struct ServiceAccountAuthenticator {
    config: AuthenticatorConfig,
    keys: Arc<Keyring>,
    objects: Arc<dyn ObjectLookup>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    cache: Arc<AuthCache>,
    legacy_uses: Option<LegacyUseSink>,
}

impl ServiceAccountAuthenticator {
    pub(crate) fn new(
        config: AuthenticatorConfig,
        keys: Arc<Keyring>,
        objects: Arc<dyn ObjectLookup>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        cache: Arc<AuthCache>,
    ) -> Self {
        ServiceAccountAuthenticator {
            config,
            keys,
            objects,
            clock,
            metrics,
            cache,
            legacy_uses: None,
        }
    }

    /// Reports every checked use of a legacy Secret token to `sink`.
    pub(crate) fn with_legacy_use_sink(mut self, sink: LegacyUseSink) -> Self {
        self.legacy_uses = Some(sink);
        self
    }

    fn report_legacy_use(&self, namespace: &str, secret: &str) {
        if let Some(sink) = &self.legacy_uses {
            let _ = sink.try_send(LegacyTokenUse {
                namespace: namespace.to_string(),
                secret: secret.to_string(),
            });
        }
    }

    /// Signature, issuer, audiences and claims; then the objects.
    async fn validate(
        &self,
        token: &str,
        requested: &[String],
        now: i64,
    ) -> Result<Validated, String> {
        let parsed = jws::decode(token).map_err(|e| e.to_string())?;
        jws::verify(&parsed, &self.keys.current()).map_err(|e| e.to_string())?;
        let claims = &parsed.claims;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let legacy_issuer = issuer == LEGACY_ISSUER;
        if !legacy_issuer && !self.config.issuers.iter().any(|i| i == issuer) {
            return Err(format!("token issuer {issuer:?} is invalid"));
        }
        // A token without audiences is a legacy token, good for the API audiences.
        let token_audiences: Option<Vec<String>> = match claims.get("aud") {
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            ),
            _ => None,
        };
        let no_aud = token_audiences.is_none();
        let effective = token_audiences.unwrap_or_else(|| self.config.api_audiences.clone());
        let audiences: Vec<String> = effective
            .iter()
            .filter(|a| requested.contains(a))
            .cloned()
            .collect();
        if audiences.is_empty() && !self.config.api_audiences.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted(&effective),
                go_quoted(requested)
            ));
        }
        let mut v = if legacy_issuer {
            self.validate_legacy(token, claims, now).await?
        } else {
            self.validate_bound(claims, now).await?
        };
        if no_aud {
            v.annotations.insert(
                "authentication.k8s.io/legacy-token".into(),
                v.user.username.clone(),
            );
            if v.legacy.is_none() {
                v.legacy = Some(LegacyUse::Other);
            }
        }
        v.audiences = audiences;
        Ok(v)
    }

    async fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Option<Value>, String> {
        self.objects
            .get(kind, ns, name)
            .await
            .map_err(|e| e.to_string())
    }

    /// `claims.go` `validator.Validate`.
    async fn validate_bound(&self, claims: &Value, now: i64) -> Result<Validated, String> {
        let c = BoundClaims::from_json(claims)?;
        let nbf = claims
            .get("nbf")
            .and_then(Value::as_i64)
            .unwrap_or(c.issued_at);
        claims::check_times(c.expires_at, nbf, c.issued_at, now)?;
        // Objects count as deleted only once their deletionTimestamp is a minute past
        // (kubernetes#89583): a terminating pod's tokens keep working meanwhile.
        let deleted_before = now - claims::LEEWAY_SECONDS;
        let ns = c.namespace.as_str();
        let sa_name = c.service_account.name.as_str();
        let sa = self
            .get(Kind::ServiceAccount, ns, sa_name)
            .await?
            .ok_or_else(|| format!("serviceaccounts {sa_name:?} not found"))?;
        if lookup::uid(&sa) != c.service_account.uid {
            return Err(format!(
                "service account UID ({}) does not match claim ({})",
                lookup::uid(&sa),
                c.service_account.uid
            ));
        }
        if deleted(&sa, deleted_before) {
            return Err(format!("service account {ns}/{sa_name} has been deleted"));
        }
        let mut depends_on = vec![(Kind::ServiceAccount, ns.to_string(), sa_name.to_string())];
        let mut cache_until = now + CACHE_TTL_SECONDS;
        if let Some(secret) = &c.secret {
            self.bound_object(Kind::Secret, ns, &secret.name, &secret.uid, deleted_before)
                .await?;
            depends_on.push((Kind::Secret, ns.to_string(), secret.name.clone()));
        }
        if let Some(pod) = &c.pod {
            let obj = self
                .bound_object(Kind::Pod, ns, &pod.name, &pod.uid, deleted_before)
                .await?;
            // A terminating pod's token must stop at deletionTimestamp + 60 s, cache or not.
            if let Some(t) = lookup::deletion_timestamp(&obj) {
                cache_until = cache_until.min(t + claims::LEEWAY_SECONDS);
            }
            depends_on.push((Kind::Pod, ns.to_string(), pod.name.clone()));
        } else if let Some(node) = &c.node {
            // A node-bound token (no pod): the Node must exist with the claimed uid. With a
            // pod, the node claims are informational and not checked, as in Kubernetes.
            let claimed = node.uid.clone().unwrap_or_default();
            self.bound_object(Kind::Node, "", &node.name, &claimed, deleted_before)
                .await?;
            depends_on.push((Kind::Node, String::new(), node.name.clone()));
        }
        cache_until = cache_until.min(c.expires_at + claims::LEEWAY_SECONDS);
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(pod) = c
            .pod
            .as_ref()
            .filter(|p| !p.name.is_empty() && !p.uid.is_empty())
        {
            extra.insert(
                "authentication.kubernetes.io/pod-name".into(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".into(),
                vec![pod.uid.clone()],
            );
        }
        if let Some(node) = c.node.as_ref().filter(|n| !n.name.is_empty()) {
            extra.insert(
                "authentication.kubernetes.io/node-name".into(),
                vec![node.name.clone()],
            );
            if let Some(uid) = node.uid.as_ref().filter(|u| !u.is_empty()) {
                extra.insert(
                    "authentication.kubernetes.io/node-uid".into(),
                    vec![uid.clone()],
                );
            }
        }
        if let Some(jti) = c.jti.as_ref().filter(|j| !j.is_empty()) {
            extra.insert(
                "authentication.kubernetes.io/credential-id".into(),
                vec![format!("JTI={jti}")],
            );
        }
        Ok(Validated {
            user: UserInfo {
                username: c.subject(),
                uid: c.service_account.uid.clone(),
                groups: sa_groups(ns),
                extra,
            },
            audiences: Vec::new(),
            namespace: ns.to_string(),
            service_account: sa_name.to_string(),
            warn_after: c.warn_after,
            legacy: None,
            annotations: BTreeMap::new(),
            depends_on,
            cache_until,
        })
    }

    /// A Pod, Secret or Node a token is bound to: present, with the claimed uid, not
    /// deleted; else the error texts of `claims.go`.
    async fn bound_object(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        claimed_uid: &str,
        deleted_before: i64,
    ) -> Result<Value, String> {
        let invalidated = || "service account token has been invalidated".to_string();
        let obj = self.get(kind, ns, name).await?.ok_or_else(invalidated)?;
        if lookup::uid(&obj) != claimed_uid {
            let what = match kind {
                Kind::Secret => "secret",
                Kind::Pod => "pod",
                Kind::Node => "node",
                Kind::ServiceAccount => "service account",
            };
            return Err(format!(
                "{what} UID ({}) does not match service account {what} ref claim ({claimed_uid})",
                lookup::uid(&obj)
            ));
        }
        if deleted(&obj, deleted_before) {
            return Err(invalidated());
        }
        Ok(obj)
    }

    /// `legacy.go` `validator.Validate`.
    async fn validate_legacy(
        &self,
        token: &str,
        claims: &Value,
        now: i64,
    ) -> Result<Validated, String> {
        let c = LegacyClaims::from_json(claims)?;
        let ns = c.namespace.as_str();
        let sa_name = c.service_account_name.as_str();
        let mut annotations = BTreeMap::new();
        let mut kind_of_use = LegacyUse::Manual;
        if self.config.lookup_legacy {
            let invalidated = || "Token has been invalidated".to_string();
            let secret = self
                .get(Kind::Secret, ns, &c.secret_name)
                .await?
                .ok_or_else(invalidated)?;
            if lookup::deletion_timestamp(&secret).is_some() {
                return Err(invalidated());
            }
            let stored = secret
                .pointer("/data/token")
                .and_then(Value::as_str)
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default();
            if !bool::from(stored.as_slice().ct_eq(token.as_bytes())) {
                return Err("Token does not match server's copy".into());
            }
            let sa = self
                .get(Kind::ServiceAccount, ns, sa_name)
                .await?
                .ok_or_else(|| format!("serviceaccounts {sa_name:?} not found"))?;
            if lookup::deletion_timestamp(&sa).is_some() {
                return Err(format!("ServiceAccount {ns}/{sa_name} has been deleted"));
            }
            if lookup::uid(&sa) != c.service_account_uid {
                return Err(format!(
                    "ServiceAccount UID ({}) does not match claim ({})",
                    lookup::uid(&sa),
                    c.service_account_uid
                ));
            }
            let invalid_since = secret
                .pointer(&format!(
                    "/metadata/labels/{}",
                    wellknown::LABEL_LEGACY_TOKEN_INVALID_SINCE.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            // Every checked use is tracked, an invalidated one too (legacy.go patches the
            // label before failing).
            self.report_legacy_use(ns, &c.secret_name);
            if invalid_since {
                self.metrics.legacy_invalid_auto_use();
                return Err(format!(
                    "the token in secret {ns}/{} for service account {ns}/{sa_name} has been marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the 'kubernetes.io/legacy-token-invalid-since' label from the secret to temporarily allow use of this token",
                    c.secret_name
                ));
            }
            let listed = sa
                .get("secrets")
                .and_then(Value::as_array)
                .is_some_and(|s| {
                    s.iter().any(|r| {
                        r.get("name").and_then(Value::as_str) == Some(c.secret_name.as_str())
                    })
                });
            if listed {
                kind_of_use = LegacyUse::Auto;
                annotations.insert(
                    "authentication.k8s.io/legacy-token-autogenerated-secret".into(),
                    c.secret_name.clone(),
                );
            } else {
                annotations.insert(
                    "authentication.k8s.io/legacy-token-manual-secret".into(),
                    c.secret_name.clone(),
                );
            }
        }
        Ok(Validated {
            user: UserInfo {
                username: format!("system:serviceaccount:{ns}:{sa_name}"),
                uid: c.service_account_uid.clone(),
                groups: sa_groups(ns),
                extra: BTreeMap::new(),
            },
            audiences: Vec::new(),
            namespace: ns.to_string(),
            service_account: sa_name.to_string(),
            warn_after: None,
            legacy: Some(kind_of_use),
            annotations,
            depends_on: vec![
                (Kind::ServiceAccount, ns.to_string(), sa_name.to_string()),
                (Kind::Secret, ns.to_string(), c.secret_name.clone()),
            ],
            cache_until: now + CACHE_TTL_SECONDS,
        })
    }

    /// Accounts one use of a valid token (cached or not) and builds the result.
    fn account_use(&self, v: Validated, now: i64) -> Authenticated {
        let mut annotations = v.annotations;
        let mut warnings = Vec::new();
        if let Some(warn_after) = v.warn_after {
            if now > warn_after {
                self.metrics.stale_token(&v.namespace, &v.service_account);
                annotations.insert(
                    "authentication.k8s.io/stale-token".into(),
                    format!(
                        "subject: {}, seconds after warning threshold: {}",
                        v.user.username,
                        now - warn_after
                    ),
                );
            } else {
                self.metrics.valid_token();
            }
        }
        if let Some(kind) = v.legacy {
            self.metrics.legacy_token(&v.namespace, &v.service_account);
            match kind {
                LegacyUse::Auto => {
                    self.metrics.legacy_auto_use();
                    warnings.push("Use tokens from the TokenRequest API or manually created secret-based tokens instead of auto-generated secret-based tokens.".to_string());
                }
                LegacyUse::Manual => self.metrics.legacy_manual_use(),
                LegacyUse::Other => {}
            }
        }
        Authenticated {
            user: v.user,
            audiences: v.audiences,
            annotations,
            warnings,
        }
    }
}

/// Whether an object's deletion is older than `before` (deletionTimestamp + leeway).
fn deleted(obj: &Value, before: i64) -> bool {
    lookup::deletion_timestamp(obj).is_some_and(|t| t < before)
}

fn sa_groups(ns: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{ns}"),
    ]
}

#[async_trait::async_trait]
impl TokenAuthenticator for ServiceAccountAuthenticator {
    async fn authenticate(&self, token: &str, audiences: Option<&[String]>) -> TokenOutcome {
        // Route by the unverified issuer: anything else is another authenticator's token.
        let Some(issuer) = jws::peek_issuer(token) else {
            return TokenOutcome::NotMine;
        };
        if issuer != LEGACY_ISSUER && !self.config.issuers.contains(&issuer) {
            return TokenOutcome::NotMine;
        }
        let requested: Vec<String> = audiences
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| self.config.api_audiences.clone());
        let now = self.clock.now().as_second();
        let key = cache_key(token, &requested);
        if let Some(hit) = self.cache.get(&key, now) {
            self.metrics.token_cache(true);
            return TokenOutcome::User(self.account_use(hit, now));
        }
        self.metrics.token_cache(false);
        let epoch = self.cache.epoch.load(Ordering::SeqCst);
        match self.validate(token, &requested, now).await {
            Ok(v) => {
                self.cache.insert(key, v.clone(), epoch, now);
                TokenOutcome::User(self.account_use(v, now))
            }
            Err(reason) => TokenOutcome::Rejected(reason),
        }
    }
}

/// Keeps the cache honest: every change to a ServiceAccount, Pod, Secret or Node drops
/// the results that depend on it, and the whole cache is dropped whenever the registry's
/// shared watch of one of them restarts or this subscriber falls behind (changes may have
/// been missed). Runs until aborted.
pub(crate) async fn invalidate_from_watch(registry: Registry, cache: Arc<AuthCache>) {
    let kinds = [Kind::ServiceAccount, Kind::Pod, Kind::Secret, Kind::Node];
    // One future per kind, all in this task: aborting it drops every subscription.
    let watches = kinds.map(|kind| {
        let mut watch = registry.shared_watch(resources::core(kind.plural()), None);
        let cache = cache.clone();
        async move {
            while let Some(notice) = watch.next().await {
                match notice {
                    // Whatever happened between the last event seen and now is unknown.
                    Notice::Interrupted | Notice::Resynced(_) => cache.clear(),
                    Notice::Event(
                        EventType::Added | EventType::Modified | EventType::Deleted,
                        obj,
                    ) => {
                        let ns = obj
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let name = obj
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        cache.invalidate(kind, ns, name);
                    }
                    Notice::Event(EventType::Bookmark, _) => {}
                }
            }
            cache.clear();
        }
    });
    futures::future::join_all(watches).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::tokens::claims::{NodeRef, ObjectRef};
    use crate::tokens::issuer::tests::{MapLookup, NOW, setup};
    use crate::tokens::keys::{SigningKey, generate_ec_p256_pem, generate_rsa_2048_pem};
    use serde_json::json;

    struct Rig {
        auth: ServiceAccountAuthenticator,
        objects: Arc<MapLookup>,
        keys: Arc<Keyring>,
        clock: Arc<FakeClock>,
        metrics: Arc<Metrics>,
        cache: Arc<AuthCache>,
        issuer: crate::tokens::issuer::Issuer,
    }

    fn rig() -> Rig {
        let (issuer, objects, keys) = setup(None);
        let objects = Arc::new(objects);
        let clock = FakeClock::at(NOW);
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(AuthCache::default());
        let config = AuthenticatorConfig {
            issuers: vec!["https://kubernetes.default.svc".into()],
            api_audiences: vec!["https://kubernetes.default.svc".into()],
            lookup_legacy: true,
        };
        let auth = ServiceAccountAuthenticator::new(
            config,
            keys.clone(),
            objects.clone(),
            clock.clone(),
            metrics.clone(),
            cache.clone(),
        );
        Rig {
            auth,
            objects,
            keys,
            clock,
            metrics,
            cache,
            issuer,
        }
    }

    impl Rig {
        async fn issue(&self, body: Value) -> String {
            let out = self
                .issuer
                .request_json(&*self.objects, "default", "example-sa", &body)
                .await
                .unwrap();
            out.response["status"]["token"]
                .as_str()
                .unwrap()
                .to_string()
        }

        async fn check(&self, token: &str) -> Result<Authenticated, String> {
            match self.auth.authenticate(token, None).await {
                TokenOutcome::User(a) => Ok(a),
                TokenOutcome::Rejected(r) => Err(r),
                TokenOutcome::NotMine => Err("not mine".into()),
            }
        }

        fn sign(&self, claims: &Value) -> String {
            jws::sign(self.keys.current().signing().unwrap(), claims).unwrap()
        }

        fn bound(&self) -> BoundClaims {
            BoundClaims {
                issuer: "https://kubernetes.default.svc".into(),
                audiences: vec!["https://kubernetes.default.svc".into()],
                issued_at: NOW,
                expires_at: NOW + 3600,
                jti: Some("j".into()),
                namespace: "default".into(),
                service_account: ObjectRef {
                    name: "example-sa".into(),
                    uid: "sa-uid".into(),
                },
                pod: None,
                secret: None,
                node: None,
                warn_after: None,
            }
        }
    }

    #[tokio::test]
    async fn a_valid_token_gives_the_kubernetes_user() {
        let r = rig();
        let token = r.issue(json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1"}}})).await;
        let a = r.check(&token).await.unwrap();
        assert_eq!(a.user.username, "system:serviceaccount:default:example-sa");
        assert_eq!(a.user.uid, "sa-uid");
        assert_eq!(
            a.user.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:default"]
        );
        assert_eq!(
            a.user.extra["authentication.kubernetes.io/pod-name"],
            vec!["p1"]
        );
        assert_eq!(
            a.user.extra["authentication.kubernetes.io/pod-uid"],
            vec!["pod-uid"]
        );
        assert_eq!(
            a.user.extra["authentication.kubernetes.io/node-name"],
            vec!["node-a"]
        );
        assert_eq!(
            a.user.extra["authentication.kubernetes.io/node-uid"],
            vec!["node-uid"]
        );
        assert!(a.user.extra["authentication.kubernetes.io/credential-id"][0].starts_with("JTI="));
        assert_eq!(a.audiences, vec!["https://kubernetes.default.svc"]);
    }

    /// The forgery matrix: every single tampering is rejected, and the untampered token
    /// next to it is accepted.
    #[tokio::test]
    async fn every_tampering_is_rejected() {
        let r = rig();
        let good = r.sign(&r.bound().to_json());
        r.check(&good).await.unwrap();

        // alg none, with the payload intact.
        let parts: Vec<&str> = good.split('.').collect();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), parts[1]);
        assert!(r.check(&none).await.is_err());
        // Another key of the same kind, and an EC key.
        for pem in [
            generate_rsa_2048_pem().unwrap(),
            generate_ec_p256_pem().unwrap(),
        ] {
            let other = SigningKey::from_pem(pem.as_bytes()).unwrap();
            let forged = jws::sign(&other, &r.bound().to_json()).unwrap();
            assert!(r.check(&forged).await.is_err());
        }
        // A changed claim under the old signature.
        let mut tampered_claims = r.bound().to_json();
        tampered_claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin-sa");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(&tampered_claims.to_string()),
            parts[2]
        );
        assert!(r.check(&tampered).await.is_err());

        let cases: Vec<(&str, BoundClaims, &str)> = vec![
            (
                "wrong issuer",
                BoundClaims {
                    issuer: "https://evil".into(),
                    ..r.bound()
                },
                "not mine",
            ),
            (
                "wrong audience",
                BoundClaims {
                    audiences: vec!["vault".into()],
                    ..r.bound()
                },
                "token audiences [\"vault\"] is invalid for the target audiences [\"https://kubernetes.default.svc\"]",
            ),
            (
                "expired",
                BoundClaims {
                    issued_at: NOW - 7200,
                    expires_at: NOW - 61,
                    ..r.bound()
                },
                "service account token has expired",
            ),
            (
                "not yet valid",
                BoundClaims {
                    issued_at: NOW + 120,
                    expires_at: NOW + 3600,
                    ..r.bound()
                },
                "service account token is",
            ),
            (
                "sa uid",
                BoundClaims {
                    service_account: ObjectRef {
                        name: "example-sa".into(),
                        uid: "old".into(),
                    },
                    ..r.bound()
                },
                "service account UID (sa-uid) does not match claim (old)",
            ),
            (
                "missing sa",
                BoundClaims {
                    service_account: ObjectRef {
                        name: "gone".into(),
                        uid: "x".into(),
                    },
                    ..r.bound()
                },
                "serviceaccounts \"gone\" not found",
            ),
            (
                "deleted pod",
                BoundClaims {
                    pod: Some(ObjectRef {
                        name: "nope".into(),
                        uid: "u".into(),
                    }),
                    ..r.bound()
                },
                "service account token has been invalidated",
            ),
            (
                "recreated pod",
                BoundClaims {
                    pod: Some(ObjectRef {
                        name: "p1".into(),
                        uid: "old".into(),
                    }),
                    ..r.bound()
                },
                "pod UID (pod-uid) does not match service account pod ref claim (old)",
            ),
            (
                "deleted secret",
                BoundClaims {
                    secret: Some(ObjectRef {
                        name: "nope".into(),
                        uid: "u".into(),
                    }),
                    ..r.bound()
                },
                "service account token has been invalidated",
            ),
            (
                "node uid",
                BoundClaims {
                    node: Some(NodeRef {
                        name: "node-a".into(),
                        uid: Some("old".into()),
                    }),
                    ..r.bound()
                },
                "node UID (node-uid) does not match service account node ref claim (old)",
            ),
        ];
        for (what, claims, want) in cases {
            let err = r.check(&r.sign(&claims.to_json())).await.unwrap_err();
            assert!(err.starts_with(want), "{what}: {err}");
        }
        // Within the leeway: accepted.
        let late = BoundClaims {
            issued_at: NOW - 7200,
            expires_at: NOW - 30,
            ..r.bound()
        };
        r.check(&r.sign(&late.to_json())).await.unwrap();
    }

    #[tokio::test]
    async fn a_deleted_pod_kills_its_token_at_once_even_when_cached() {
        let r = rig();
        let token = r.issue(json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1"}}})).await;
        r.check(&token).await.unwrap();
        assert_eq!(r.cache.len(), 1);
        r.check(&token).await.unwrap();
        r.objects.remove(Kind::Pod, "default", "p1");
        r.cache.invalidate(Kind::Pod, "default", "p1");
        assert_eq!(
            r.check(&token).await.unwrap_err(),
            "service account token has been invalidated"
        );
        assert_eq!(r.cache.len(), 0);
    }

    /// A cached result that depends on the Pod `default/p1`.
    fn cache_one(cache: &AuthCache, key: u8) {
        let v = Validated {
            user: UserInfo::default(),
            audiences: Vec::new(),
            namespace: "default".into(),
            service_account: "default".into(),
            warn_after: None,
            legacy: None,
            annotations: BTreeMap::new(),
            depends_on: vec![(Kind::Pod, "default".into(), "p1".into())],
            cache_until: NOW + 10,
        };
        cache.insert([key; 32], v, cache.epoch.load(Ordering::SeqCst), NOW);
    }

    #[tokio::test]
    async fn the_shared_watch_invalidates_the_cache() {
        let (registry, _dir) = crate::registry::temp_registry(FakeClock::at(NOW)).await;
        let cache = Arc::new(AuthCache::default());
        let invalidator = tokio::spawn(invalidate_from_watch(registry.clone(), cache.clone()));
        // Every clear and invalidation bumps the epoch: it says how far the invalidator got.
        let epoch_past = |n: u64| {
            let cache = cache.clone();
            async move {
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    let now = cache.epoch.load(Ordering::SeqCst);
                    if now > n {
                        return now;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the invalidator is stuck"
                    );
                    tokio::task::yield_now().await;
                }
            }
        };
        // Each of the four watches starts by clearing the cache.
        let started = epoch_past(3).await;
        cache_one(&cache, 1);
        let pods = resources::core("pods");
        let pod = |name: &str| json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        // Another Pod's change leaves the result ...
        registry
            .create(pods, Some("default"), pod("p2"), false)
            .await
            .unwrap();
        epoch_past(started).await;
        assert_eq!(cache.len(), 1);
        // ... its own Pod's change drops it.
        registry
            .create(pods, Some("default"), pod("p1"), false)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while cache.len() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Pod's result stays"
            );
            tokio::task::yield_now().await;
        }
        invalidator.abort();
    }

    #[tokio::test]
    async fn a_terminating_pod_keeps_its_token_for_a_minute() {
        let r = rig();
        let mut pod = json!({"metadata": {"name": "p1", "uid": "pod-uid", "deletionTimestamp": "2026-11-23T00:04:04Z"}, "spec": {"serviceAccountName": "example-sa"}});
        r.objects.put(Kind::Pod, "default", "p1", pod.clone());
        let token = r.issue(json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1"}}})).await;
        r.check(&token).await.unwrap();
        r.clock.advance(61);
        r.cache.clear();
        assert_eq!(
            r.check(&token).await.unwrap_err(),
            "service account token has been invalidated"
        );
        pod["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:10:00Z");
        r.objects.put(Kind::Pod, "default", "p1", pod);
        r.check(&token).await.unwrap();
    }

    #[tokio::test]
    async fn stale_uses_are_counted_after_warnafter() {
        let r = rig();
        let pod = json!({"kind": "Pod", "apiVersion": "v1", "name": "p1"});
        let token = r
            .issue(json!({"spec": {"expirationSeconds": 3607, "boundObjectRef": pod}}))
            .await;
        let a = r.check(&token).await.unwrap();
        assert!(
            !a.annotations
                .contains_key("authentication.k8s.io/stale-token")
        );
        r.clock.advance(3607 + 100);
        let a = r.check(&token).await.unwrap();
        assert_eq!(
            a.annotations["authentication.k8s.io/stale-token"],
            "subject: system:serviceaccount:default:example-sa, seconds after warning threshold: 100"
        );
        let text = r.metrics.render().0;
        assert!(
            text.contains("serviceaccount_stale_tokens_total 1"),
            "{text}"
        );
        assert!(
            text.contains("serviceaccount_valid_tokens_total 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn legacy_tokens_live_with_their_secret() {
        let r = rig();
        let legacy = LegacyClaims {
            namespace: "default".into(),
            service_account_name: "example-sa".into(),
            service_account_uid: "sa-uid".into(),
            secret_name: "example-sa-token".into(),
        };
        let token = r.sign(&legacy.to_json());
        let stored = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let secret = |t: &str| json!({"metadata": {"name": "example-sa-token", "uid": "s"}, "data": {"token": stored(t)}});
        r.objects
            .put(Kind::Secret, "default", "example-sa-token", secret(&token));
        let a = r.check(&token).await.unwrap();
        assert_eq!(a.user.username, "system:serviceaccount:default:example-sa");
        assert!(a.user.extra.is_empty());
        assert_eq!(
            a.annotations["authentication.k8s.io/legacy-token"],
            "system:serviceaccount:default:example-sa"
        );
        assert_eq!(
            a.annotations["authentication.k8s.io/legacy-token-manual-secret"],
            "example-sa-token"
        );
        let text = r.metrics.render().0;
        assert!(
            text.contains("serviceaccount_legacy_manual_token_uses_total 1"),
            "{text}"
        );
        // Another token in the Secret: this one no longer matches.
        r.objects.put(
            Kind::Secret,
            "default",
            "example-sa-token",
            secret("something-else"),
        );
        r.cache
            .invalidate(Kind::Secret, "default", "example-sa-token");
        assert_eq!(
            r.check(&token).await.unwrap_err(),
            "Token does not match server's copy"
        );
        r.objects
            .remove(Kind::Secret, "default", "example-sa-token");
        r.cache
            .invalidate(Kind::Secret, "default", "example-sa-token");
        assert_eq!(
            r.check(&token).await.unwrap_err(),
            "Token has been invalidated"
        );
        // Listed in the account's secrets: auto-generated, with a warning.
        r.objects
            .put(Kind::Secret, "default", "example-sa-token", secret(&token));
        r.objects.put(Kind::ServiceAccount, "default", "example-sa", json!({"metadata": {"name": "example-sa", "uid": "sa-uid"}, "secrets": [{"name": "example-sa-token"}]}));
        let a = r.check(&token).await.unwrap();
        assert_eq!(a.warnings.len(), 1);
        assert!(
            a.annotations
                .contains_key("authentication.k8s.io/legacy-token-autogenerated-secret")
        );
        // Recreated account: new uid.
        r.objects.put(
            Kind::ServiceAccount,
            "default",
            "example-sa",
            json!({"metadata": {"name": "example-sa", "uid": "new"}}),
        );
        r.cache.clear();
        assert_eq!(
            r.check(&token).await.unwrap_err(),
            "ServiceAccount UID (new) does not match claim (sa-uid)"
        );
    }

    #[tokio::test]
    async fn legacy_uses_are_reported_for_tracking() {
        let mut r = rig();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        r.auth = ServiceAccountAuthenticator::new(
            AuthenticatorConfig {
                issuers: vec!["https://kubernetes.default.svc".into()],
                api_audiences: vec!["https://kubernetes.default.svc".into()],
                lookup_legacy: true,
            },
            r.keys.clone(),
            r.objects.clone(),
            r.clock.clone(),
            r.metrics.clone(),
            r.cache.clone(),
        )
        .with_legacy_use_sink(tx);
        let legacy = LegacyClaims {
            namespace: "default".into(),
            service_account_name: "example-sa".into(),
            service_account_uid: "sa-uid".into(),
            secret_name: "tok".into(),
        };
        let token = r.sign(&legacy.to_json());
        let data = base64::engine::general_purpose::STANDARD.encode(&token);
        r.objects.put(
            Kind::Secret,
            "default",
            "tok",
            json!({"metadata": {"name": "tok", "uid": "s"}, "data": {"token": data}}),
        );
        r.check(&token).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            LegacyTokenUse {
                namespace: "default".into(),
                secret: "tok".into()
            }
        );
    }

    #[tokio::test]
    async fn review_audiences_are_intersected() {
        let r = rig();
        let token = r
            .issue(json!({"spec": {"audiences": ["vault", "https://kubernetes.default.svc"]}}))
            .await;
        let vault = vec!["vault".to_string()];
        match r.auth.authenticate(&token, Some(&vault)).await {
            TokenOutcome::User(a) => assert_eq!(a.audiences, vault),
            other => panic!("{other:?}"),
        }
        let other = vec!["other".to_string()];
        assert!(matches!(
            r.auth.authenticate(&token, Some(&other)).await,
            TokenOutcome::Rejected(_)
        ));
        assert!(matches!(
            r.auth.authenticate("not-a-jwt", None).await,
            TokenOutcome::NotMine
        ));
    }
}
