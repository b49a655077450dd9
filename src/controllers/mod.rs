//! The controllers kube-controller-manager (and, for legacy token tracking, kube-apiserver)
//! runs for service accounts and RBAC, and the small runtime that drives them. One file per
//! controller; the reconcile runtime (work queue, watcher, driver) is in [`runtime`], and
//! this file holds the configuration, [`run`], which starts every controller behind a
//! [`LeaderGate`], and small helpers that read the JSON wire form.
//!
//! Controllers are level-triggered and idempotent, as client-go's are: an event only names
//! a key, and `reconcile` reads the current state for that key from the registry. At start
//! every watcher lists what it watches and enqueues a key for each object, so whatever
//! happened while no controller ran (a `kill -9`, a fresh start over an old data dir) is
//! handled then: the store is the queue. The events come from the registry's one shared
//! watch per resource (which the token authenticator's cache also follows); when it ends
//! or expires, everything is listed again.
//!
//! This module knows neither HTTP nor the store; it reads and writes through the registry
//! and signs legacy tokens through `tokens::issuer::Signer` (never `tokens::jws`).

pub(crate) mod cleaner;
pub(crate) mod clusterrole_aggregation;
pub(crate) mod default_sa;
pub(crate) mod kubernetes_service;
pub(crate) mod namespace;
pub(crate) mod root_ca;
pub(crate) mod runtime;
pub(crate) mod signing_keys;
pub(crate) mod tokens;
pub(crate) mod tracking;

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub(crate) use runtime::driver::{AlwaysLeader, LeaderGate};
pub(crate) use runtime::lease::{LeaseConfig, LeaseLeader};
pub(crate) use runtime::{Action, Controller, ControllerError, Watch};

use crate::clock::SharedClock;
use crate::registry::{Registry, meta_str};
use crate::tokens::authenticator::LegacyTokenUse;
use crate::tokens::keyring::Keyring;
use crate::wellknown;
use runtime::driver::{drive, stopped};

/// What the controllers need from the command line.
#[derive(Debug, Clone)]
pub(crate) struct ControllerConfig {
    /// The CA bundle (PEM): `data["ca.crt"]` of `kube-root-ca.crt` and of token Secrets.
    pub(crate) ca_pem: String,
    /// Signs legacy Secret tokens (its signing key; verification keys are not used).
    pub(crate) keys: Arc<Keyring>,
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
    pub(crate) fn new(ca_pem: String, keys: Arc<Keyring>) -> ControllerConfig {
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
        let mut term = start_gated(&registry, &clock, &config, &leader, term_rx);
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

/// Starts every controller that runs only while `leader` says so, each until `stop`.
fn start_gated(
    registry: &Registry,
    clock: &SharedClock,
    config: &Arc<ControllerConfig>,
    leader: &Arc<dyn LeaderGate>,
    stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut term = Term {
        set: JoinSet::new(),
        registry: registry.clone(),
        gate: Some(leader.clone()),
        stop,
    };
    term.start(default_sa::DefaultServiceAccount::new(registry.clone()));
    term.start(clusterrole_aggregation::ClusterRoleAggregation::new(
        registry.clone(),
    ));
    term.start(namespace::NamespaceDeleter::new(
        registry.clone(),
        clock.clone(),
    ));
    term.start(root_ca::RootCaPublisher::new(
        registry.clone(),
        config.ca_pem.clone(),
    ));
    if let Some(endpoint) = config.api_endpoint {
        term.start(kubernetes_service::KubernetesService::new(
            registry.clone(),
            endpoint,
        ));
    }
    term.start(tokens::TokensController::new(
        registry.clone(),
        config.clone(),
    ));
    term.start(cleaner::LegacyTokenCleaner::new(
        registry.clone(),
        clock.clone(),
        config.clone(),
    ));
    term.set
}

/// The gated controllers of one term of leadership, as they are started.
struct Term {
    set: JoinSet<()>,
    registry: Registry,
    gate: Option<Arc<dyn LeaderGate>>,
    stop: watch::Receiver<bool>,
}

impl Term {
    fn start<C: Controller>(&mut self, controller: C) {
        self.set.spawn(drive(
            Arc::new(controller),
            self.registry.clone(),
            self.gate.clone(),
            self.stop.clone(),
        ));
    }
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
    use crate::registry::{RegistryError, resources};
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
        ControllerConfig::new(
            CA.to_string(),
            Keyring::new(crate::tokens::keys::KeySet::new(Some(key), Vec::new())),
        )
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
    use tokio::sync::Notify;
    use tokio::time::Instant;

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
