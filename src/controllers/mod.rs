//! The controllers kube-controller-manager (and, for legacy token tracking, kube-apiserver)
//! runs for service accounts, and the small runtime that drives them. One file per
//! controller; this file holds the runtime: a [`Controller`] trait, a de-duplicating work
//! queue with retry backoff, a list-then-watch feeder per watched resource, and [`run`],
//! which starts everything behind a [`LeaderGate`].
//!
//! Controllers are level-triggered and idempotent, as client-go's are: an event only names
//! a key, and `reconcile` reads the current state for that key from the registry. At start
//! every feeder lists what it watches and enqueues a key for each object, so whatever
//! happened while no controller ran (a `kill -9`, a fresh start over an old data dir) is
//! handled then: the store is the queue. A watch that ends or expires is listed again.
//!
//! This module knows neither HTTP nor the store; it reads and writes through the registry
//! and signs legacy tokens with `tokens::{claims, jws, keys}`.

pub(crate) mod cleaner;
pub(crate) mod default_sa;
pub(crate) mod kubernetes_service;
pub(crate) mod namespace;
pub(crate) mod root_ca;
pub(crate) mod tokens;
pub(crate) mod tracking;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock::SharedClock;
use crate::registry::selectors::FieldSelector;
use crate::registry::{EventType, ListOptions, Registry, RegistryError, Resource, meta_str};
use crate::tokens::authenticator::LegacyTokenUse;
use crate::tokens::keys::KeySet;
use crate::wellknown;

/// What the controllers need from the command line.
#[derive(Debug, Clone)]
pub(crate) struct ControllerConfig {
    /// The CA bundle (PEM): `data["ca.crt"]` of `kube-root-ca.crt` and of token Secrets.
    pub(crate) ca_pem: String,
    /// Signs legacy Secret tokens (its signing key; verification keys are not used).
    pub(crate) keys: Arc<KeySet>,
    /// `--emulated-version` < 1.24: every ServiceAccount gets a `<sa>-token-<5>` Secret
    /// listed in its `.secrets`, as before `LegacyServiceAccountTokenNoAutoGeneration`.
    pub(crate) auto_create_legacy_tokens: bool,
    /// `--legacy-service-account-token-clean-up-period` (default 8760h).
    pub(crate) legacy_cleanup_period: SignedDuration,
    /// How often the legacy token cleaner runs (24 h in Kubernetes); it also runs once at
    /// start. Zero means only at start.
    pub(crate) cleanup_interval: Duration,
    /// Where clients reach this server (`--advertise-address` and the port): the
    /// `kubernetes` Service's endpoints. `None` leaves the Service alone.
    pub(crate) api_endpoint: Option<std::net::SocketAddr>,
}

impl ControllerConfig {
    /// Kubernetes' defaults for everything but the CA and the keys.
    pub(crate) fn new(ca_pem: String, keys: Arc<KeySet>) -> ControllerConfig {
        ControllerConfig {
            ca_pem,
            keys,
            auto_create_legacy_tokens: false,
            legacy_cleanup_period: SignedDuration::from_secs(
                wellknown::DEFAULT_LEGACY_TOKEN_CLEAN_UP_PERIOD_SECONDS,
            ),
            cleanup_interval: Duration::from_secs(wellknown::LEGACY_TOKEN_CLEANER_INTERVAL_SECONDS),
            api_endpoint: None,
        }
    }
}

/// Only one replica may run controllers once several share a store; the etcd issue will
/// add a Lease-based gate.
#[async_trait::async_trait]
pub(crate) trait LeaderGate: Send + Sync {
    /// Returns once this process holds the leadership.
    async fn wait_until_leader(&self);
    /// Whether this process holds the leadership now. Checked before every reconcile and
    /// about once a second; when it turns false the gated controllers stop and [`run`]
    /// waits for leadership again.
    fn is_leader(&self) -> bool;
}

/// The gate of a single process: always the leader.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AlwaysLeader;

#[async_trait::async_trait]
impl LeaderGate for AlwaysLeader {
    async fn wait_until_leader(&self) {}

    fn is_leader(&self) -> bool {
        true
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControllerError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No signing key is configured, or signing failed.
    #[error("cannot sign a legacy service account token: {0}")]
    Sign(String),
    /// Not done yet, through no fault (a namespace waiting for its content's finalizers):
    /// tried again with backoff, and logged quietly.
    #[error("{0}")]
    Waiting(String),
}

impl ControllerError {
    /// Whether trying again can help. A write the registry refuses as invalid or bad
    /// (an `immutable` object, a name too long) fails the same way every time; the next
    /// event for the key tries again. Everything else (storage errors, races that outlived
    /// the registry's own retries) is retried with backoff.
    fn retriable(&self) -> bool {
        match self {
            ControllerError::Registry(
                RegistryError::Invalid { .. }
                | RegistryError::BadRequest(_)
                | RegistryError::Forbidden { .. }
                | RegistryError::NamespaceTerminating { .. },
            ) => false,
            ControllerError::Registry(_) | ControllerError::Waiting(_) => true,
            ControllerError::Sign(_) => false,
        }
    }
}

/// One resource a controller watches, in every namespace.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) resource: &'static Resource,
    /// Narrows list and watch (e.g. `type=kubernetes.io/service-account-token`).
    pub(crate) field_selector: FieldSelector,
}

impl Watch {
    pub(crate) fn all(resource: &'static Resource) -> Watch {
        Watch {
            resource,
            field_selector: FieldSelector::default(),
        }
    }

    /// A watch narrowed by a field selector. A selector the resource does not support is a
    /// programming error caught by the tests; it falls back to watching everything, which
    /// is only slower because `Controller::keys` filters again.
    pub(crate) fn selected(resource: &'static Resource, selector: &str) -> Watch {
        let field_selector = match FieldSelector::parse(selector, resource.field_selectors) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("controller watch on {}: {e}", resource.plural);
                FieldSelector::default()
            }
        };
        Watch {
            resource,
            field_selector,
        }
    }
}

/// A reconcile loop: which resources feed it, which keys an object maps to, and how to
/// bring one key's world to the desired state.
#[async_trait::async_trait]
pub(crate) trait Controller: Send + Sync + 'static {
    /// What the work queue holds. Equal keys queued twice are reconciled once.
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;

    /// For logs.
    fn name(&self) -> &'static str;

    /// Resources whose lists and watch events enqueue keys.
    fn watches(&self) -> Vec<Watch>;

    /// The keys an object of `resource` maps to. Listed objects come as `Added`; a
    /// `Deleted` event carries the object's last state.
    fn keys(&self, resource: &Resource, event: EventType, obj: &Value) -> Vec<Self::Key>;

    /// Keys enqueued at start and again every [`Controller::resync_every`].
    fn initial_keys(&self) -> Vec<Self::Key> {
        Vec::new()
    }

    fn resync_every(&self) -> Option<Duration> {
        None
    }

    /// Keys from outside the registry (legacy token uses). Called once per start.
    fn external_keys(&self) -> Option<BoxStream<'static, Self::Key>> {
        None
    }

    /// Reads the current state for `key` and makes it right. Must be idempotent.
    async fn reconcile(&self, key: &Self::Key) -> Result<(), ControllerError>;
}

/// Retry delays: 100 ms doubling to 30 s. The registry already retries lost write races
/// itself, so an error here is a storage problem or a precondition that outlived those
/// retries; backing off keeps a sick store from being hammered, and the 30 s cap keeps
/// recovery prompt once it is healthy (client-go's default limiter starts at 5 ms and caps
/// at 1000 s; a single-process server gains nothing from waiting that long).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(1_u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

/// A de-duplicating queue of keys with delayed re-adds (client-go's rate-limited work
/// queue, for one worker: a key is never reconciled twice at once, and an event that
/// arrives while its key is being reconciled queues it again).
struct WorkQueue<K> {
    state: Mutex<QueueState<K>>,
    notify: Notify,
}

struct QueueState<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    delayed: Vec<(Instant, K)>,
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    fn new() -> Self {
        WorkQueue {
            state: Mutex::new(QueueState {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                delayed: Vec::new(),
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<K>> {
        // A panic while holding this lock leaves the queue consistent (every mutation is
        // a single push or pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, key: K) {
        let mut s = self.lock();
        if s.queued.insert(key.clone()) {
            s.ready.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    fn add_after(&self, key: K, delay: Duration) {
        self.lock().delayed.push((Instant::now() + delay, key));
        self.notify.notify_one();
    }

    /// The next key, waiting for one to be added or for a delayed one to fall due.
    async fn get(&self) -> K {
        loop {
            let next_due = {
                let mut s = self.lock();
                let now = Instant::now();
                let mut i = 0;
                while i < s.delayed.len() {
                    if s.delayed[i].0 <= now {
                        let (_, key) = s.delayed.swap_remove(i);
                        if s.queued.insert(key.clone()) {
                            s.ready.push_back(key);
                        }
                    } else {
                        i += 1;
                    }
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    return key;
                }
                s.delayed.iter().map(|(at, _)| *at).min()
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }
}

/// Resolves once `stop` says true (or its sender is gone, so it never can).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Lists `w.resource` and enqueues every object's keys, then watches from the list's
/// resourceVersion; a watch that ends or fails (Expired after compaction, a lagging
/// watcher) is listed again, which re-enqueues everything (level-triggered: harmless).
async fn feed<C: Controller>(
    controller: Arc<C>,
    registry: Registry,
    w: Watch,
    queue: Arc<WorkQueue<C::Key>>,
) {
    let mut failures: u32 = 0;
    loop {
        let opts = ListOptions {
            field_selector: w.field_selector.clone(),
            ..Default::default()
        };
        let list = match registry.list(w.resource, None, &opts).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "{}: listing {} failed: {e}; retrying",
                    controller.name(),
                    w.resource.plural
                );
                tokio::time::sleep(backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
        };
        for obj in &list.items {
            for key in controller.keys(w.resource, EventType::Added, obj) {
                queue.add(key);
            }
        }
        let opts = ListOptions {
            resource_version: Some(list.resource_version.to_string()),
            ..opts
        };
        let mut stream = match registry.watch(w.resource, None, &opts).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(
                    "{}: watching {} failed: {e}; listing again",
                    controller.name(),
                    w.resource.plural
                );
                tokio::time::sleep(backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
        };
        while let Some(ev) = stream.next().await {
            match ev {
                Ok((event, obj)) => {
                    failures = 0;
                    for key in controller.keys(w.resource, event, &obj) {
                        queue.add(key);
                    }
                }
                Err(e) => {
                    tracing::debug!(
                        "{}: watch of {} ended: {e}; listing again",
                        controller.name(),
                        w.resource.plural
                    );
                    break;
                }
            }
        }
        // A watch that keeps ending at once (a closing store) must not spin.
        tokio::time::sleep(backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}

/// Runs one controller until `stop` says true: feeders fill the queue, one worker drains
/// it. A reconcile in progress is finished, never cancelled halfway between two writes.
async fn drive<C: Controller>(
    controller: Arc<C>,
    registry: Registry,
    leader: Option<Arc<dyn LeaderGate>>,
    mut stop: watch::Receiver<bool>,
) {
    let queue = Arc::new(WorkQueue::<C::Key>::new());
    // Dropping the set at the end aborts every feeder.
    let mut feeders = JoinSet::new();
    for w in controller.watches() {
        feeders.spawn(feed(controller.clone(), registry.clone(), w, queue.clone()));
    }
    if let Some(mut external) = controller.external_keys() {
        let queue = queue.clone();
        feeders.spawn(async move {
            while let Some(key) = external.next().await {
                queue.add(key);
            }
        });
    }
    for key in controller.initial_keys() {
        queue.add(key);
    }
    if let Some(period) = controller.resync_every().filter(|p| !p.is_zero()) {
        let queue = queue.clone();
        let c = controller.clone();
        feeders.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; the initial keys are already queued.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                for key in c.initial_keys() {
                    queue.add(key);
                }
            }
        });
    }
    tracing::debug!("controller {} started", controller.name());
    let mut failures: HashMap<C::Key, u32> = HashMap::new();
    loop {
        let key = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            key = queue.get() => key,
        };
        if leader.as_ref().is_some_and(|l| !l.is_leader()) {
            break;
        }
        match controller.reconcile(&key).await {
            Ok(()) => {
                failures.remove(&key);
            }
            Err(e) if e.retriable() => {
                let n = failures.entry(key.clone()).or_insert(0);
                let delay = backoff(*n);
                *n = n.saturating_add(1);
                if matches!(e, ControllerError::Waiting(_)) {
                    tracing::debug!("{}: {e}; again in {delay:?}", controller.name());
                } else {
                    tracing::warn!(
                        "{}: reconciling {key:?} failed: {e}; retrying in {delay:?}",
                        controller.name()
                    );
                }
                queue.add_after(key, delay);
            }
            Err(e) => {
                failures.remove(&key);
                tracing::warn!(
                    "{}: reconciling {key:?} failed: {e}; waiting for the next change",
                    controller.name()
                );
            }
        }
    }
    feeders.shutdown().await;
    tracing::debug!("controller {} stopped", controller.name());
}

/// Runs every controller until `shutdown` flips to true (or its sender is dropped, after
/// which it never could). `legacy_uses` feeds the last-used tracker.
///
/// Legacy token tracking (the `since` ConfigMap and the last-used label) runs in every
/// replica, outside the leader gate: in Kubernetes it is kube-apiserver's job, done by each
/// apiserver for the uses it authenticates, and a replica that dropped its uses while not
/// leading would let the cleaner delete tokens that are in use. The other controllers run
/// only while `leader` says so.
pub(crate) async fn run(
    registry: Registry,
    clock: SharedClock,
    config: ControllerConfig,
    legacy_uses: tokio::sync::mpsc::Receiver<LegacyTokenUse>,
    leader: Arc<dyn LeaderGate>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let tracker = Arc::new(tracking::LegacyTokenTracking::new(
        registry.clone(),
        clock.clone(),
        legacy_uses,
    ));
    let tracking = tokio::spawn(drive(tracker, registry.clone(), None, shutdown.clone()));

    'terms: loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break 'terms,
            _ = leader.wait_until_leader() => {}
        }
        tracing::info!("controllers starting");
        let (term_tx, term_rx) = watch::channel(false);
        let gate = Some(leader.clone());
        let mut term = JoinSet::new();
        term.spawn(drive(
            Arc::new(default_sa::DefaultServiceAccount::new(registry.clone())),
            registry.clone(),
            gate.clone(),
            term_rx.clone(),
        ));
        term.spawn(drive(
            Arc::new(namespace::NamespaceDeleter::new(
                registry.clone(),
                clock.clone(),
            )),
            registry.clone(),
            gate.clone(),
            term_rx.clone(),
        ));
        term.spawn(drive(
            Arc::new(root_ca::RootCaPublisher::new(
                registry.clone(),
                config.ca_pem.clone(),
            )),
            registry.clone(),
            gate.clone(),
            term_rx.clone(),
        ));
        if let Some(endpoint) = config.api_endpoint {
            term.spawn(drive(
                Arc::new(kubernetes_service::KubernetesService::new(
                    registry.clone(),
                    endpoint,
                )),
                registry.clone(),
                gate.clone(),
                term_rx.clone(),
            ));
        }
        term.spawn(drive(
            Arc::new(tokens::TokensController::new(
                registry.clone(),
                config.clone(),
            )),
            registry.clone(),
            gate.clone(),
            term_rx.clone(),
        ));
        term.spawn(drive(
            Arc::new(cleaner::LegacyTokenCleaner::new(
                registry.clone(),
                clock.clone(),
                config.clone(),
            )),
            registry.clone(),
            gate,
            term_rx,
        ));
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let finished = loop {
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break true,
                _ = check.tick() => {
                    if !leader.is_leader() {
                        tracing::warn!("lost leadership; controllers stopping");
                        break false;
                    }
                }
            }
        };
        let _ = term_tx.send(true);
        while term.join_next().await.is_some() {}
        if finished {
            break 'terms;
        }
    }
    let _ = tracking.await;
    tracing::info!("controllers stopped");
}

// Helpers shared by the controllers: reading the JSON wire form.

fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}

fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or_default()
}

fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or_default()
}

fn meta_map<'a>(obj: &'a Value, field: &str, key: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta_map(obj, "annotations", key)
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta_map(obj, "labels", key)
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Sets `metadata.<field>.<key> = value`, creating the map if needed.
fn set_meta_map(obj: &mut Value, field: &str, key: &str, value: &str) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = serde_json::json!({});
    }
    let meta = &mut obj["metadata"];
    if !meta.get(field).is_some_and(Value::is_object) {
        meta[field] = serde_json::json!({});
    }
    meta[field][key] = Value::from(value);
}

/// The UTC date of `t` as `YYYY-MM-DD` (Go layout `2006-01-02`).
fn utc_date(t: Timestamp) -> Date {
    t.to_zoned(jiff::tz::TimeZone::UTC).date()
}

fn format_date(d: Date) -> String {
    d.strftime("%Y-%m-%d").to_string()
}

/// Parses `YYYY-MM-DD` as strictly as Go's `time.Parse("2006-01-02", s)`: four-digit year,
/// two-digit month and day, a real calendar date.
fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) {
        return None;
    }
    if !digits(8..10) {
        return None;
    }
    let year: i16 = s[0..4].parse().ok()?;
    let month: i8 = s[5..7].parse().ok()?;
    let day: i8 = s[8..10].parse().ok()?;
    Date::new(year, month, day).ok()
}

#[cfg(test)]
pub(crate) mod testing {
    //! A registry over a temporary SQLite store, a fake clock and a test signing key.

    use super::*;
    use crate::clock::FakeClock;
    use crate::registry::resources;
    use crate::tokens::keys::{SigningKey, test_keys};
    use serde_json::json;

    /// 2026-11-23T00:04:04Z, the reference cluster's day.
    pub(crate) const NOW: i64 = 1_795_392_244;
    pub(crate) const CA: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

    pub(crate) struct Rig {
        pub(crate) registry: Registry,
        pub(crate) clock: Arc<FakeClock>,
        pub(crate) config: Arc<ControllerConfig>,
        _dir: tempfile::TempDir,
    }

    pub(crate) async fn rig() -> Rig {
        let clock = FakeClock::at(NOW);
        let (registry, dir) = crate::registry::temp_registry(clock.clone()).await;
        Rig {
            registry,
            clock,
            config: Arc::new(config()),
            _dir: dir,
        }
    }

    pub(crate) fn config() -> ControllerConfig {
        let key = SigningKey::from_pem(test_keys::EC256_PKCS8.as_bytes()).unwrap();
        ControllerConfig::new(CA.to_string(), Arc::new(KeySet::new(Some(key), Vec::new())))
    }

    impl Rig {
        pub(crate) async fn create(&self, plural: &str, ns: Option<&str>, obj: Value) -> Value {
            self.registry
                .create(resources::core(plural), ns, obj, false)
                .await
                .unwrap()
        }

        pub(crate) async fn get(
            &self,
            plural: &str,
            ns: Option<&str>,
            name: &str,
        ) -> Option<Value> {
            match self.registry.get(resources::core(plural), ns, name).await {
                Ok(o) => Some(o),
                Err(RegistryError::NotFound { .. }) => None,
                Err(e) => panic!("{e}"),
            }
        }

        pub(crate) async fn delete(&self, plural: &str, ns: Option<&str>, name: &str) {
            self.registry
                .delete(resources::core(plural), ns, name, &Default::default())
                .await
                .unwrap();
        }

        pub(crate) async fn update(
            &self,
            plural: &str,
            ns: Option<&str>,
            name: &str,
            f: impl Fn(&mut Value) + Send + Sync,
        ) -> Value {
            self.registry
                .update_with(resources::core(plural), ns, name, None, false, |cur| {
                    let mut next = cur.clone();
                    f(&mut next);
                    Ok(next)
                })
                .await
                .unwrap()
                .0
        }

        pub(crate) async fn namespace(&self, name: &str) -> Value {
            self.create("namespaces", None, json!({"metadata": {"name": name}}))
                .await
        }

        pub(crate) async fn service_account(&self, ns: &str, name: &str) -> Value {
            self.create(
                "serviceaccounts",
                Some(ns),
                json!({"metadata": {"name": name}}),
            )
            .await
        }

        /// A token Secret as a user writes it since 1.24: the name annotation, no data.
        pub(crate) async fn token_secret(&self, ns: &str, name: &str, sa: &str) -> Value {
            self.create(
                "secrets",
                Some(ns),
                json!({"metadata": {"name": name, "annotations": {wellknown::ANNOTATION_SA_NAME: sa}},
                       "type": wellknown::SECRET_TYPE_SA_TOKEN}),
            )
            .await
        }
    }

    pub(crate) fn rv(obj: &Value) -> String {
        obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use base64::Engine as _;

    #[test]
    fn dates_parse_as_strictly_as_go() {
        assert_eq!(
            parse_date("2026-11-23"),
            Some(Date::new(2026, 11, 23).unwrap())
        );
        for bad in [
            "",
            "2026-1-23",
            "2026-11-3",
            "20261123",
            "2026-13-01",
            "2026-02-30",
            "2026/11/23",
            "+026-11-23",
            "2026-11-23T",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let t: Timestamp = "2026-11-23T23:59:59Z".parse().unwrap();
        assert_eq!(format_date(utc_date(t)), "2026-11-23");
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(8), Duration::from_millis(25_600));
        assert_eq!(backoff(9), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn queue_deduplicates_and_delays() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.get().await, "a");
        assert_eq!(q.get().await, "b");
        // Re-added after being taken: it comes again.
        q.add("a");
        assert_eq!(q.get().await, "a");
        q.add_after("late", Duration::from_millis(20));
        q.add("now");
        assert_eq!(q.get().await, "now");
        let late = tokio::time::timeout(Duration::from_secs(10), q.get()).await;
        assert_eq!(late.unwrap(), "late");
    }

    #[tokio::test]
    async fn narrowed_watches_use_supported_selectors() {
        let rig = rig().await;
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        let narrowed: Vec<Watch> = [
            root_ca::RootCaPublisher::new(rig.registry.clone(), CA.into()).watches(),
            tokens::TokensController::new(rig.registry.clone(), rig.config.clone()).watches(),
            tracking::LegacyTokenTracking::new(rig.registry.clone(), rig.clock.clone(), rx)
                .watches(),
        ]
        .into_iter()
        .flatten()
        .filter(|w| w.resource.kind != "Namespace" && w.resource.kind != "ServiceAccount")
        .collect();
        assert_eq!(narrowed.len(), 3);
        for w in narrowed {
            assert!(!w.field_selector.is_empty(), "{w:?}");
        }
    }

    /// Polls `check` until it returns `Some`, failing after ten seconds.
    async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn data(obj: &Value, key: &str) -> Option<String> {
        let b64 = obj.get("data")?.get(key)?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok()
    }

    struct Running {
        shutdown: watch::Sender<bool>,
        uses: tokio::sync::mpsc::Sender<LegacyTokenUse>,
        handle: tokio::task::JoinHandle<()>,
    }

    fn start(rig: &Rig) -> Running {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (uses, uses_rx) = tokio::sync::mpsc::channel(16);
        let config = ControllerConfig {
            // Only at start, so the test decides when the clock moves.
            cleanup_interval: Duration::ZERO,
            ..(*rig.config).clone()
        };
        let handle = tokio::spawn(run(
            rig.registry.clone(),
            rig.clock.clone(),
            config,
            uses_rx,
            Arc::new(AlwaysLeader),
            shutdown_rx,
        ));
        Running {
            shutdown,
            uses,
            handle,
        }
    }

    impl Running {
        async fn stop(self) {
            self.shutdown.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(10), self.handle)
                .await
                .expect("run returns after shutdown")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn controllers_converge_while_running() {
        let rig = rig().await;
        let running = start(&rig);
        let tracking = eventually("the tracking ConfigMap", || {
            rig.get(
                "configmaps",
                Some(wellknown::NAMESPACE_SYSTEM),
                wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP,
            )
        })
        .await;
        assert_eq!(tracking["data"]["since"], "2026-11-23");

        rig.namespace("team-a").await;
        eventually("the default ServiceAccount", || {
            rig.get("serviceaccounts", Some("team-a"), "default")
        })
        .await;
        let cm = eventually("kube-root-ca.crt", || {
            rig.get("configmaps", Some("team-a"), "kube-root-ca.crt")
        })
        .await;
        assert_eq!(cm["data"]["ca.crt"], CA);

        // Deleting either brings it back.
        rig.delete("serviceaccounts", Some("team-a"), "default")
            .await;
        rig.delete("configmaps", Some("team-a"), "kube-root-ca.crt")
            .await;
        eventually("the default ServiceAccount again", || {
            rig.get("serviceaccounts", Some("team-a"), "default")
        })
        .await;
        eventually("kube-root-ca.crt again", || {
            rig.get("configmaps", Some("team-a"), "kube-root-ca.crt")
        })
        .await;

        let sa = rig.service_account("team-a", "robot").await;
        rig.token_secret("team-a", "robot-token", "robot").await;
        let secret = eventually("the token Secret populated", || async {
            let s = rig.get("secrets", Some("team-a"), "robot-token").await?;
            data(&s, "token").map(|_| s)
        })
        .await;
        assert_eq!(data(&secret, "namespace").as_deref(), Some("team-a"));
        assert_eq!(
            secret["metadata"]["annotations"][wellknown::ANNOTATION_SA_UID],
            sa["metadata"]["uid"]
        );

        running
            .uses
            .send(LegacyTokenUse {
                namespace: "team-a".into(),
                secret: "robot-token".into(),
            })
            .await
            .unwrap();
        eventually("the last-used label", || async {
            let s = rig.get("secrets", Some("team-a"), "robot-token").await?;
            (label(&s, wellknown::LABEL_LEGACY_TOKEN_LAST_USED) == Some("2026-11-23")).then_some(())
        })
        .await;

        // The ServiceAccount goes: so does its token.
        rig.delete("serviceaccounts", Some("team-a"), "robot").await;
        eventually("the token Secret deleted", || async {
            match rig.get("secrets", Some("team-a"), "robot-token").await {
                None => Some(()),
                Some(_) => None,
            }
        })
        .await;
        running.stop().await;
    }

    #[tokio::test]
    async fn controllers_catch_up_on_start() {
        let rig = rig().await;
        // Written while no controller ran (as after a kill -9).
        rig.namespace("late").await;
        rig.service_account("late", "robot").await;
        rig.token_secret("late", "robot-token", "robot").await;
        rig.token_secret("late", "orphan-token", "gone").await;

        let running = start(&rig);
        for ns in wellknown::SYSTEM_NAMESPACES.iter().copied().chain(["late"]) {
            eventually("a default ServiceAccount in every namespace", || {
                rig.get("serviceaccounts", Some(ns), "default")
            })
            .await;
            eventually("kube-root-ca.crt in every namespace", || {
                rig.get("configmaps", Some(ns), "kube-root-ca.crt")
            })
            .await;
        }
        eventually("the token Secret populated", || async {
            let s = rig.get("secrets", Some("late"), "robot-token").await?;
            data(&s, "token").map(|_| ())
        })
        .await;
        eventually("the orphan token deleted", || async {
            match rig.get("secrets", Some("late"), "orphan-token").await {
                None => Some(()),
                Some(_) => None,
            }
        })
        .await;
        running.stop().await;

        // A second start over the same store changes nothing that is already right.
        let before = rig
            .get("secrets", Some("late"), "robot-token")
            .await
            .unwrap();
        let running = start(&rig);
        rig.namespace("later").await;
        eventually("the controllers running again", || {
            rig.get("serviceaccounts", Some("later"), "default")
        })
        .await;
        running.stop().await;
        let after = rig
            .get("secrets", Some("late"), "robot-token")
            .await
            .unwrap();
        assert_eq!(rv(&before), rv(&after));
    }

    /// A gate that starts as follower and is made leader by the test.
    #[derive(Default)]
    struct Switch {
        leader: std::sync::atomic::AtomicBool,
        became: Notify,
    }

    #[async_trait::async_trait]
    impl LeaderGate for Switch {
        async fn wait_until_leader(&self) {
            while !self.is_leader() {
                self.became.notified().await;
            }
        }

        fn is_leader(&self) -> bool {
            self.leader.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn only_the_leader_reconciles_but_every_replica_tracks() {
        let rig = rig().await;
        let gate = Arc::new(Switch::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (_uses, uses_rx) = tokio::sync::mpsc::channel(1);
        let handle = tokio::spawn(run(
            rig.registry.clone(),
            rig.clock.clone(),
            (*rig.config).clone(),
            uses_rx,
            gate.clone(),
            shutdown_rx,
        ));
        // Tracking runs without leadership ...
        eventually("the tracking ConfigMap", || {
            rig.get(
                "configmaps",
                Some(wellknown::NAMESPACE_SYSTEM),
                wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP,
            )
        })
        .await;
        // ... the rest waits for it.
        assert!(
            rig.get("serviceaccounts", Some("default"), "default")
                .await
                .is_none()
        );
        gate.leader.store(true, std::sync::atomic::Ordering::SeqCst);
        gate.became.notify_one();
        eventually("the default ServiceAccount once leading", || {
            rig.get("serviceaccounts", Some("default"), "default")
        })
        .await;
        shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap()
            .unwrap();
    }
}
