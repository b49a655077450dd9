//! Legacy token tracking, kube-apiserver's side of it
//! (`pkg/controlplane/controller/legacytokentracking/controller.go` and the last-used
//! patch in `pkg/serviceaccount/legacy.go`; `shared/reference/k8s-sa-token-facts.md` §5.3,
//! §5.4):
//!
//! * the ConfigMap `kube-system/kube-apiserver-legacy-service-account-token-tracking` with
//!   `data.since` = the UTC date tracking started; created when missing, its date rewritten
//!   when unparsable. The cleaner waits a period after that date.
//! * for every legacy token use the authenticator reports, the label
//!   `kubernetes.io/legacy-token-last-used=<today, UTC>` on the Secret, unless it already
//!   says today or tomorrow (tomorrow: another apiserver with a clock ahead wrote it), so
//!   at most about one write per Secret per day.
//!
//! Unlike kube-apiserver there is no 30-minute rate limit on creating the ConfigMap: that
//! limit settles apiservers of mixed versions fighting over it, which cannot happen here.

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

use super::{
    Action, Controller, ControllerError, Watch, format_date, label, name, namespace, parse_date,
    set_meta_map, uid, utc_date,
};
use crate::clock::SharedClock;
use crate::registry::{EventType, Registry, RegistryError, Resource, resources};
use crate::tokens::authenticator::LegacyTokenUse;
use crate::wellknown;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TrackingKey {
    /// The `since` ConfigMap.
    ConfigMap,
    /// A Secret whose legacy token was used.
    LastUsed { namespace: String, secret: String },
}

pub(crate) struct LegacyTokenTracking {
    registry: Registry,
    clock: SharedClock,
    uses: std::sync::Mutex<Option<Receiver<LegacyTokenUse>>>,
}

impl LegacyTokenTracking {
    pub(crate) fn new(
        registry: Registry,
        clock: SharedClock,
        uses: Receiver<LegacyTokenUse>,
    ) -> Self {
        LegacyTokenTracking {
            registry,
            clock,
            uses: std::sync::Mutex::new(Some(uses)),
        }
    }

    fn today(&self) -> jiff::civil::Date {
        utc_date(self.clock.now())
    }

    async fn sync_config_map(&self) -> Result<(), ControllerError> {
        let res = resources::core("configmaps");
        let ns = Some(wellknown::NAMESPACE_SYSTEM);
        let today = format_date(self.today());
        let current = match self
            .registry
            .get(res, ns, wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP)
            .await
        {
            Ok(cm) => cm,
            Err(RegistryError::NotFound { .. }) => {
                let body = json!({
                    "metadata": {"name": wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP},
                    "data": {wellknown::LEGACY_TOKEN_TRACKING_SINCE_KEY: today},
                });
                return match self.registry.create(res, ns, body, false).await {
                    Ok(_) | Err(RegistryError::AlreadyExists { .. }) => Ok(()),
                    // kube-system missing (NotFound) is retried: it is made at start.
                    Err(e) => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        if since(&current).is_some() {
            return Ok(());
        }
        let result = self
            .registry
            .update_with(
                res,
                ns,
                wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP,
                None,
                false,
                |cur| {
                    let mut next = cur.clone();
                    if since(cur).is_none() {
                        if !next.get("data").is_some_and(Value::is_object) {
                            next["data"] = json!({});
                        }
                        next["data"][wellknown::LEGACY_TOKEN_TRACKING_SINCE_KEY] =
                            Value::from(today.as_str());
                    }
                    Ok(next)
                },
            )
            .await;
        match result {
            // Deleted or changed meanwhile: its event brings us back.
            Ok(_) | Err(RegistryError::NotFound { .. } | RegistryError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// legacy.go `patchSecretWithLastUsedDate`, as a merge of one label into the Secret
    /// that was used (checked by uid, as the patch carries it).
    async fn mark_used(&self, ns: &str, secret_name: &str) -> Result<(), ControllerError> {
        let res = resources::core("secrets");
        let today = self.today();
        let fresh = |obj: &Value| {
            let last = label(obj, wellknown::LABEL_LEGACY_TOKEN_LAST_USED).and_then(parse_date);
            last == Some(today) || last.is_some_and(|d| today.tomorrow().ok() == Some(d))
        };
        let secret = match self.registry.get(res, Some(ns), secret_name).await {
            Ok(s) => s,
            Err(RegistryError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if fresh(&secret) {
            return Ok(());
        }
        let secret_uid = uid(&secret).to_string();
        let value = format_date(today);
        let result = self
            .registry
            .update_with(res, Some(ns), secret_name, None, false, |cur| {
                let mut next = cur.clone();
                // The uid in the patch: a Secret recreated since the use is not marked.
                next["metadata"]["uid"] = Value::from(secret_uid.as_str());
                if !fresh(cur) {
                    set_meta_map(
                        &mut next,
                        "labels",
                        wellknown::LABEL_LEGACY_TOKEN_LAST_USED,
                        &value,
                    );
                }
                Ok(next)
            })
            .await;
        match result {
            // Gone or replaced: nothing to mark. The next use reports again.
            Ok(_) | Err(RegistryError::NotFound { .. } | RegistryError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn since(cm: &Value) -> Option<jiff::civil::Date> {
    cm.get("data")
        .and_then(|d| d.get(wellknown::LEGACY_TOKEN_TRACKING_SINCE_KEY))
        .and_then(Value::as_str)
        .and_then(parse_date)
}

#[async_trait::async_trait]
impl Controller for LegacyTokenTracking {
    type Key = TrackingKey;

    fn name(&self) -> &'static str {
        "legacy-token-tracking"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::selected(
            resources::core("configmaps"),
            &format!(
                "metadata.namespace={},metadata.name={}",
                wellknown::NAMESPACE_SYSTEM,
                wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP
            ),
        )]
    }

    fn keys(&self, _: &Resource, _: EventType, obj: &Value) -> Vec<TrackingKey> {
        if namespace(obj) == wellknown::NAMESPACE_SYSTEM
            && name(obj) == wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP
        {
            vec![TrackingKey::ConfigMap]
        } else {
            Vec::new()
        }
    }

    fn initial_keys(&self) -> Vec<TrackingKey> {
        vec![TrackingKey::ConfigMap]
    }

    /// Uses of the same Secret that queue up while one is being handled collapse into one.
    fn external_keys(&self) -> Option<BoxStream<'static, TrackingKey>> {
        let rx = self.uses.lock().ok()?.take()?;
        let uses = tokio_stream::wrappers::ReceiverStream::new(rx);
        Some(
            uses.map(|u| TrackingKey::LastUsed {
                namespace: u.namespace,
                secret: u.secret,
            })
            .boxed(),
        )
    }

    async fn reconcile(&self, key: &TrackingKey) -> Result<Action, ControllerError> {
        let done = match key {
            TrackingKey::ConfigMap => self.sync_config_map().await,
            TrackingKey::LastUsed { namespace, secret } => self.mark_used(namespace, secret).await,
        };
        done.map(|()| Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn tracker(rig: &Rig) -> LegacyTokenTracking {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        LegacyTokenTracking::new(rig.registry.clone(), rig.clock.clone(), rx)
    }

    async fn tracking_cm(rig: &Rig) -> Option<Value> {
        rig.get(
            "configmaps",
            Some("kube-system"),
            "kube-apiserver-legacy-service-account-token-tracking",
        )
        .await
    }

    #[tokio::test]
    async fn the_since_configmap_is_created_once_and_repaired() {
        let rig = rig().await;
        let c = tracker(&rig);
        c.reconcile(&TrackingKey::ConfigMap).await.unwrap();
        let cm = tracking_cm(&rig).await.unwrap();
        assert_eq!(cm["data"], json!({"since": "2026-11-23"}));
        // Days later the date stays.
        rig.clock.advance(3 * 86_400);
        c.reconcile(&TrackingKey::ConfigMap).await.unwrap();
        assert_eq!(rv(&tracking_cm(&rig).await.unwrap()), rv(&cm));
        // An unparsable date is replaced by today's.
        rig.update(
            "configmaps",
            Some("kube-system"),
            "kube-apiserver-legacy-service-account-token-tracking",
            |cm| cm["data"]["since"] = json!("yesterday"),
        )
        .await;
        c.reconcile(&TrackingKey::ConfigMap).await.unwrap();
        assert_eq!(
            tracking_cm(&rig).await.unwrap()["data"]["since"],
            "2026-11-26"
        );
        // Deleted: made again, starting the clock again.
        rig.delete(
            "configmaps",
            Some("kube-system"),
            "kube-apiserver-legacy-service-account-token-tracking",
        )
        .await;
        c.reconcile(&TrackingKey::ConfigMap).await.unwrap();
        assert_eq!(
            tracking_cm(&rig).await.unwrap()["data"]["since"],
            "2026-11-26"
        );
    }

    #[tokio::test]
    async fn last_used_is_written_at_most_once_a_day() {
        let rig = rig().await;
        let c = tracker(&rig);
        let key = TrackingKey::LastUsed {
            namespace: "default".into(),
            secret: "robot-token".into(),
        };
        // No such Secret: nothing to do.
        c.reconcile(&key).await.unwrap();
        rig.token_secret("default", "robot-token", "robot").await;
        c.reconcile(&key).await.unwrap();
        let marked = rig
            .get("secrets", Some("default"), "robot-token")
            .await
            .unwrap();
        assert_eq!(
            marked["metadata"]["labels"]["kubernetes.io/legacy-token-last-used"],
            "2026-11-23"
        );
        // Today: no write.
        c.reconcile(&key).await.unwrap();
        let same = rig
            .get("secrets", Some("default"), "robot-token")
            .await
            .unwrap();
        assert_eq!(rv(&same), rv(&marked));
        // Tomorrow (another apiserver's clock ahead): no write either.
        rig.update("secrets", Some("default"), "robot-token", |s| {
            s["metadata"]["labels"]["kubernetes.io/legacy-token-last-used"] = json!("2026-11-24");
        })
        .await;
        let tomorrow = rig
            .get("secrets", Some("default"), "robot-token")
            .await
            .unwrap();
        c.reconcile(&key).await.unwrap();
        let still = rig
            .get("secrets", Some("default"), "robot-token")
            .await
            .unwrap();
        assert_eq!(rv(&still), rv(&tomorrow));
        assert_eq!(
            still["metadata"]["labels"]["kubernetes.io/legacy-token-last-used"],
            "2026-11-24"
        );
        // Two days on, "2026-11-24" is yesterday: rewritten, other labels kept.
        rig.update("secrets", Some("default"), "robot-token", |s| {
            s["metadata"]["labels"]["team"] = json!("blue");
        })
        .await;
        rig.clock.advance(2 * 86_400);
        c.reconcile(&key).await.unwrap();
        let next = rig
            .get("secrets", Some("default"), "robot-token")
            .await
            .unwrap();
        assert_eq!(
            next["metadata"]["labels"],
            json!({"kubernetes.io/legacy-token-last-used": "2026-11-25", "team": "blue"})
        );
        // Garbage in the label is overwritten too.
        rig.update("secrets", Some("default"), "robot-token", |s| {
            s["metadata"]["labels"]["kubernetes.io/legacy-token-last-used"] = json!("soon");
        })
        .await;
        c.reconcile(&key).await.unwrap();
        let fixed = rig
            .get("secrets", Some("default"), "robot-token")
            .await
            .unwrap();
        assert_eq!(
            fixed["metadata"]["labels"]["kubernetes.io/legacy-token-last-used"],
            "2026-11-25"
        );
    }

    #[tokio::test]
    async fn uses_arrive_as_keys() {
        let rig = rig().await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let c = LegacyTokenTracking::new(rig.registry.clone(), rig.clock.clone(), rx);
        let mut keys = c.external_keys().unwrap();
        assert!(c.external_keys().is_none(), "the receiver is taken once");
        tx.send(LegacyTokenUse {
            namespace: "ns".into(),
            secret: "s".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            keys.next().await,
            Some(TrackingKey::LastUsed {
                namespace: "ns".into(),
                secret: "s".into()
            })
        );
    }
}
