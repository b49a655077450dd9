//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! package does it for kube-controller-manager (`tryAcquireOrRenew` with a `LeaseLock`): the
//! Lease `kube-system/kube-controller-manager` names its holder; a candidate takes it when it
//! is free or when its record has not changed for `lease_duration` as observed on the
//! candidate's own monotonic clock (so clock skew between replicas does not matter); the
//! leader renews it every `retry_period` and gives up when it could not renew for
//! `renew_deadline`. Writes are optimistic (resourceVersion), so two candidates never both
//! win. On a clean stop the leader releases the Lease (holder emptied, duration 1 s) so that
//! another replica takes over at once.
//!
//! Must not: run controllers (the gate only says who may) or know HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::driver::{LeaderGate, stopped};
use crate::clock::{SharedClock, format_micro_time};
use crate::registry::{Registry, RegistryError, resources};

/// The group of the Lease kind.
const COORDINATION_GROUP: &str = "coordination.k8s.io";

/// kube-controller-manager's `--leader-elect-*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseConfig {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// This replica's identity: `<hostname>_<uuid>`, as kube-controller-manager makes it.
    pub(crate) identity: String,
    pub(crate) lease_duration: Duration,
    pub(crate) renew_deadline: Duration,
    pub(crate) retry_period: Duration,
}

/// The gate of one replica among several: leader while it holds the Lease.
#[derive(Debug)]
pub(crate) struct LeaseLeader {
    leading: AtomicBool,
    changed: Notify,
}

#[async_trait::async_trait]
impl LeaderGate for LeaseLeader {
    async fn wait_until_leader(&self) {
        loop {
            let notified = self.changed.notified();
            if self.is_leader() {
                return;
            }
            notified.await;
        }
    }

    fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }
}

impl LeaseLeader {
    /// The gate, and the election loop that drives it until `stop` turns true (then it
    /// releases the Lease if it holds it).
    pub(crate) fn start(
        registry: Registry,
        clock: SharedClock,
        config: LeaseConfig,
        stop: watch::Receiver<bool>,
    ) -> (Arc<LeaseLeader>, impl Future<Output = ()> + Send + 'static) {
        let gate = Arc::new(LeaseLeader {
            leading: AtomicBool::new(false),
            changed: Notify::new(),
        });
        let election = Election {
            registry,
            clock,
            config,
            gate: gate.clone(),
            observed: None,
        };
        (gate, election.run(stop))
    }

    fn set(&self, leading: bool) {
        if self.leading.swap(leading, Ordering::SeqCst) != leading {
            if leading {
                tracing::info!("acquired the leader lease");
            } else {
                tracing::warn!("lost the leader lease");
            }
            self.changed.notify_waiters();
        }
    }
}

/// One candidate's view of the election.
struct Election {
    registry: Registry,
    clock: SharedClock,
    config: LeaseConfig,
    gate: Arc<LeaseLeader>,
    /// The holder's record as last seen, and when (on this replica's clock) it last changed.
    observed: Option<(Value, Instant)>,
}

/// The fields of a Lease's spec that make up client-go's `LeaderElectionRecord`.
fn record(lease: &Value) -> Value {
    lease.get("spec").cloned().unwrap_or(Value::Null)
}

fn holder(record: &Value) -> &str {
    record
        .get("holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Election {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut last_renew: Option<Instant> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renew = Some(Instant::now());
                    self.gate.set(true);
                }
                Ok(false) => {
                    last_renew = None;
                    self.gate.set(false);
                }
                Err(e) => {
                    tracing::warn!("leader election: {e}");
                    // A leader keeps leading until the renew deadline passes without a renewal.
                    if last_renew.is_none_or(|t| t.elapsed() > self.config.renew_deadline) {
                        last_renew = None;
                        self.gate.set(false);
                    }
                }
            }
            tokio::select! {
                _ = stopped(&mut stop) => break,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        if self.gate.is_leader() {
            self.gate.set(false);
            if let Err(e) = self.release().await {
                tracing::warn!("releasing the leader lease: {e}");
            }
        }
    }

    fn resource() -> Result<&'static resources::Resource, RegistryError> {
        resources::find(COORDINATION_GROUP, "v1", "leases")
            .ok_or_else(|| RegistryError::Internal("leases are not served".into()))
    }

    /// `tryAcquireOrRenew`: true when this replica holds the Lease after the attempt.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, RegistryError> {
        let res = Self::resource()?;
        let c = &self.config;
        let now = format_micro_time(self.clock.now());
        let seconds = i64::try_from(c.lease_duration.as_secs()).unwrap_or(i64::MAX);
        let current = match self.registry.get(res, Some(&c.namespace), &c.name).await {
            Ok(lease) => lease,
            Err(RegistryError::NotFound { .. }) => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": c.name, "namespace": c.namespace},
                    "spec": {"holderIdentity": c.identity, "leaseDurationSeconds": seconds,
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
                });
                return match self
                    .registry
                    .create(res, Some(&c.namespace), lease, false)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(RegistryError::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let seen = record(&current);
        if self.observed.as_ref().is_none_or(|(r, _)| *r != seen) {
            self.observed = Some((seen.clone(), Instant::now()));
        }
        let held_by = holder(&seen);
        let mine = held_by == c.identity;
        // The record's own duration, timed from when this replica saw it change (`isLeaseValid`).
        let duration = seen
            .get("leaseDurationSeconds")
            .and_then(Value::as_u64)
            .map_or(c.lease_duration, Duration::from_secs);
        let expired = self
            .observed
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= duration);
        if !held_by.is_empty() && !mine && !expired {
            return Ok(false);
        }
        let transitions = seen
            .get("leaseTransitions")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let (acquire, transitions) = if mine {
            (
                seen.get("acquireTime").cloned().unwrap_or(json!(now)),
                transitions,
            )
        } else {
            (json!(now), transitions + 1)
        };
        let mut next = current;
        next["spec"] = json!({"holderIdentity": c.identity, "leaseDurationSeconds": seconds,
                              "acquireTime": acquire, "renewTime": now,
                              "leaseTransitions": transitions});
        // The resourceVersion read above is the precondition: a rival's write in between
        // is a Conflict, and this round is lost.
        match self
            .registry
            .update_with(res, Some(&c.namespace), &c.name, None, false, |_| {
                Ok(next.clone())
            })
            .await
        {
            Ok((stored, _)) => {
                self.observed = Some((record(&stored), Instant::now()));
                Ok(true)
            }
            Err(RegistryError::Conflict { .. } | RegistryError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (client-go's `release`): no holder, a one-second duration.
    async fn release(&mut self) -> Result<(), RegistryError> {
        let res = Self::resource()?;
        let c = &self.config;
        let now = format_micro_time(self.clock.now());
        let identity = c.identity.clone();
        self.registry
            .update_with(res, Some(&c.namespace), &c.name, None, false, |current| {
                let spec = record(current);
                if holder(&spec) != identity {
                    return Ok(current.clone());
                }
                let mut next = current.clone();
                next["spec"] = json!({"leaseDurationSeconds": 1, "acquireTime": now,
                                      "renewTime": now,
                                      "leaseTransitions": spec.get("leaseTransitions").cloned().unwrap_or(json!(0))});
                Ok(next)
            })
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::registry::temp_registry;

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(1),
            renew_deadline: Duration::from_millis(700),
            retry_period: Duration::from_millis(100),
        }
    }

    async fn lease(registry: &Registry) -> Value {
        let res = Election::resource().expect("leases are served");
        registry
            .get(res, Some("kube-system"), "kube-controller-manager")
            .await
            .expect("the lease exists")
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn one_leader_then_failover_then_release() {
        let (registry, _dir) = temp_registry(SystemClock::shared()).await;
        let (stop_a, stop_rx_a) = watch::channel(false);
        let (stop_b, stop_rx_b) = watch::channel(false);
        let (a, run_a) = LeaseLeader::start(
            registry.clone(),
            SystemClock::shared(),
            config("a"),
            stop_rx_a,
        );
        let run_a = tokio::spawn(run_a);
        tokio::time::timeout(Duration::from_secs(5), a.wait_until_leader())
            .await
            .expect("a leads");
        let (b, run_b) = LeaseLeader::start(
            registry.clone(),
            SystemClock::shared(),
            config("b"),
            stop_rx_b,
        );
        let run_b = tokio::spawn(run_b);
        // b sees a renewing: it never leads while a does.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(a.is_leader() && !b.is_leader());
        let spec = record(&lease(&registry).await);
        assert_eq!(holder(&spec), "a");
        assert_eq!(spec["leaseDurationSeconds"], 1);
        assert_eq!(spec["leaseTransitions"], 0);
        // a dies without releasing: b takes over once a's record has stood for the duration.
        run_a.abort();
        until("b leads", || b.is_leader()).await;
        let spec = record(&lease(&registry).await);
        assert_eq!(holder(&spec), "b");
        assert_eq!(spec["leaseTransitions"], 1);
        // A clean stop releases the lease at once.
        stop_b.send(true).expect("b runs");
        run_b.await.expect("b stops");
        assert!(!b.is_leader());
        assert_eq!(holder(&record(&lease(&registry).await)), "");
        drop(stop_a);
    }
}
