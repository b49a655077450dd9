//! The legacy token cleaner (kube-controller-manager's
//! `legacy-serviceaccount-token-cleaner`,
//! `pkg/controller/serviceaccount/legacy_serviceaccount_token_cleaner.go`;
//! `shared/reference/k8s-sa-token-facts.md` §5.4): auto-generated legacy token Secrets
//! unused for a period (one year by default) are labelled
//! `kubernetes.io/legacy-token-invalid-since=<today>`, which makes authentication refuse
//! them, and deleted once that label is a period old. It runs at start and then every
//! `cleanup_interval`, and only once tracking has run for a period: from
//! `(since + 1 day) + period`, `since` being the tracking ConfigMap's date.
//!
//! A Secret is a candidate when it is of the token type, was created before now-period, is
//! not being deleted, was last used (label, a UTC date) before now-period or never, belongs
//! to an existing ServiceAccount (uid-matched when annotated) that lists it in `.secrets`
//! (auto-generated, not made by hand), and no Pod in its namespace references it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;

use super::{
    Action, Controller, ControllerConfig, ControllerError, Watch, annotation, format_date,
    is_deleting, label, name, namespace, parse_date, set_meta_map, uid, utc_date,
};
use crate::clock::SharedClock;
use crate::registry::selectors::FieldSelector;
use crate::registry::{
    DeleteOptions, EventType, ListOptions, Registry, RegistryError, Resource, meta_str, resources,
};
use crate::wellknown;

pub(crate) struct LegacyTokenCleaner {
    registry: Registry,
    clock: SharedClock,
    config: Arc<ControllerConfig>,
}

/// Every Secret name a Pod references (kubernetes `VisitPodSecretNames`): image pull
/// secrets; `env[].valueFrom.secretKeyRef` and `envFrom[].secretRef` of containers, init
/// containers and ephemeral containers; and volumes: `secret`, `projected` secret sources,
/// and the secret references of the azureFile, cephfs, cinder, flexVolume, rbd, scaleIO,
/// iscsi, storageos and csi sources.
pub(crate) fn pod_secret_names(pod: &Value) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut add = |v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            out.insert(n.to_string());
        }
    };
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let list = |v: &Value, field: &str| -> Vec<Value> {
        v.get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for r in list(spec, "imagePullSecrets") {
        add(r.get("name"));
    }
    for kind in ["initContainers", "containers", "ephemeralContainers"] {
        for c in list(spec, kind) {
            for e in list(&c, "envFrom") {
                add(e.pointer("/secretRef/name"));
            }
            for e in list(&c, "env") {
                add(e.pointer("/valueFrom/secretKeyRef/name"));
            }
        }
    }
    for v in list(spec, "volumes") {
        add(v.pointer("/secret/secretName"));
        add(v.pointer("/azureFile/secretName"));
        for source in [
            "cephfs",
            "cinder",
            "flexVolume",
            "rbd",
            "scaleIO",
            "iscsi",
            "storageos",
        ] {
            add(v.get(source).and_then(|s| s.pointer("/secretRef/name")));
        }
        add(v.pointer("/csi/nodePublishSecretRef/name"));
        for s in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(s.pointer("/secret/name"));
        }
    }
    out
}

impl LegacyTokenCleaner {
    pub(crate) fn new(
        registry: Registry,
        clock: SharedClock,
        config: Arc<ControllerConfig>,
    ) -> Self {
        LegacyTokenCleaner {
            registry,
            clock,
            config,
        }
    }

    /// Midnight UTC of the day after tracking started (cleaner's
    /// `latestPossibleTrackedSinceTime`), or why it cannot be known.
    async fn tracked_since(&self) -> Result<Option<Timestamp>, ControllerError> {
        let cm = match self
            .registry
            .get(
                resources::core("configmaps"),
                Some(wellknown::NAMESPACE_SYSTEM),
                wellknown::LEGACY_TOKEN_TRACKING_CONFIGMAP,
            )
            .await
        {
            Ok(cm) => cm,
            Err(RegistryError::NotFound { .. }) => {
                tracing::debug!("legacy token cleaner: tracking has not started");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let since = cm
            .get("data")
            .and_then(|d| d.get(wellknown::LEGACY_TOKEN_TRACKING_SINCE_KEY))
            .and_then(Value::as_str)
            .and_then(parse_date);
        let Some(since) = since else {
            tracing::warn!("legacy token cleaner: the tracking ConfigMap has no valid date");
            return Ok(None);
        };
        Ok(since
            .tomorrow()
            .ok()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp()))
    }

    /// One pass over every token Secret (cleaner's `evaluateSATokens`). Problems with one
    /// Secret are logged and the pass goes on, as upstream; the next pass tries again.
    async fn evaluate(&self) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let period = self.config.legacy_cleanup_period;
        let Some(since) = self.tracked_since().await? else {
            return Ok(());
        };
        match since.checked_add(period) {
            Ok(start) if now >= start => {}
            // Not tracked for long enough.
            _ => return Ok(()),
        }
        let Ok(cutoff) = now.checked_sub(period) else {
            return Ok(());
        };
        // Dates compare as strings in this layout, as upstream compares them.
        let preserve_used = format_date(utc_date(cutoff));
        let today = format_date(utc_date(now));
        let secrets = resources::core("secrets");
        let opts = ListOptions {
            field_selector: FieldSelector::parse(
                &format!("type={}", wellknown::SECRET_TYPE_SA_TOKEN),
                secrets.field_selectors,
            )
            .unwrap_or_default(),
            ..Default::default()
        };
        let list = self.registry.list(secrets, None, &opts).await?;
        let mut mounted: HashMap<String, HashSet<String>> = HashMap::new();
        for secret in &list.items {
            if let Err(e) = self
                .evaluate_one(secret, cutoff, &preserve_used, &today, &mut mounted)
                .await
            {
                tracing::warn!(
                    "legacy token cleaner: secret {}/{}: {e}",
                    namespace(secret),
                    name(secret)
                );
            }
        }
        Ok(())
    }

    async fn evaluate_one(
        &self,
        secret: &Value,
        cutoff: Timestamp,
        preserve_used: &str,
        today: &str,
        mounted: &mut HashMap<String, HashSet<String>>,
    ) -> Result<(), ControllerError> {
        if secret.get("type").and_then(Value::as_str) != Some(wellknown::SECRET_TYPE_SA_TOKEN) {
            return Ok(());
        }
        let created =
            meta_str(secret, "creationTimestamp").and_then(|t| t.parse::<Timestamp>().ok());
        if created.is_none_or(|c| c >= cutoff) || is_deleting(secret) {
            return Ok(());
        }
        // No label: not used since tracking started.
        if let Some(last_used) = label(secret, wellknown::LABEL_LEGACY_TOKEN_LAST_USED) {
            if parse_date(last_used).is_none() {
                tracing::warn!(
                    "legacy token cleaner: secret {}/{} has an unparsable {} label {last_used:?}",
                    namespace(secret),
                    name(secret),
                    wellknown::LABEL_LEGACY_TOKEN_LAST_USED
                );
                return Ok(());
            }
            if last_used >= preserve_used {
                return Ok(());
            }
        }
        let ns = namespace(secret);
        let secret_name = name(secret);
        // Only auto-generated tokens: listed in their ServiceAccount's `.secrets`.
        let Some(sa_name) =
            annotation(secret, wellknown::ANNOTATION_SA_NAME).filter(|n| !n.is_empty())
        else {
            return Ok(());
        };
        let sa = match self
            .registry
            .get(resources::core("serviceaccounts"), Some(ns), sa_name)
            .await
        {
            Ok(sa) => sa,
            Err(RegistryError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let want_uid = annotation(secret, wellknown::ANNOTATION_SA_UID).unwrap_or_default();
        if !want_uid.is_empty() && want_uid != uid(&sa) {
            return Ok(());
        }
        let listed = sa
            .get("secrets")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r.get("name").and_then(Value::as_str) == Some(secret_name))
            });
        if !listed {
            return Ok(());
        }
        if !mounted.contains_key(ns) {
            let pods = self
                .registry
                .list(resources::core("pods"), Some(ns), &ListOptions::default())
                .await?;
            let names = pods.items.iter().flat_map(pod_secret_names).collect();
            mounted.insert(ns.to_string(), names);
        }
        if mounted.get(ns).is_some_and(|m| m.contains(secret_name)) {
            return Ok(());
        }
        let invalid_since = label(secret, wellknown::LABEL_LEGACY_TOKEN_INVALID_SINCE)
            .filter(|v| parse_date(v).is_some());
        let Some(invalid_since) = invalid_since else {
            tracing::info!(
                "legacy token cleaner: marking the auto-generated token in secret {ns}/{secret_name} invalid since {today}"
            );
            let secret_uid = uid(secret).to_string();
            let result = self
                .registry
                .update_with(
                    resources::core("secrets"),
                    Some(ns),
                    secret_name,
                    None,
                    false,
                    |cur| {
                        let mut next = cur.clone();
                        // A merge patch carrying the uid, as upstream's.
                        next["metadata"]["uid"] = Value::from(secret_uid.as_str());
                        set_meta_map(
                            &mut next,
                            "labels",
                            wellknown::LABEL_LEGACY_TOKEN_INVALID_SINCE,
                            today,
                        );
                        Ok(next)
                    },
                )
                .await;
            return match result {
                Ok(_) | Err(RegistryError::NotFound { .. } | RegistryError::Conflict { .. }) => {
                    Ok(())
                }
                Err(e) => Err(e.into()),
            };
        };
        if invalid_since >= preserve_used {
            return Ok(());
        }
        tracing::info!(
            "legacy token cleaner: deleting the auto-generated token secret {ns}/{secret_name} (invalid since {invalid_since})"
        );
        let opts = DeleteOptions {
            precondition_resource_version: meta_str(secret, "resourceVersion").map(str::to_string),
            ..Default::default()
        };
        match self
            .registry
            .delete(resources::core("secrets"), Some(ns), secret_name, &opts)
            .await
        {
            // Changed since the list (maybe used again) or already gone: next pass decides.
            Ok(_) | Err(RegistryError::NotFound { .. } | RegistryError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait::async_trait]
impl Controller for LegacyTokenCleaner {
    type Key = ();

    fn name(&self) -> &'static str {
        "legacy-serviceaccount-token-cleaner"
    }

    /// Periodic, not event-driven.
    fn watches(&self) -> Vec<Watch> {
        Vec::new()
    }

    fn keys(&self, _: &Resource, _: EventType, _: &Value) -> Vec<()> {
        Vec::new()
    }

    fn initial_keys(&self) -> Vec<()> {
        vec![()]
    }

    /// One pass, then the next one a period later (`cleanup_interval`; zero means only the
    /// pass at start). A pass that fails in a way trying again cannot fix keeps that
    /// schedule; any other failure is retried with backoff first.
    async fn reconcile(&self, _: &()) -> Result<Action, ControllerError> {
        let interval = self.config.cleanup_interval;
        let next = if interval.is_zero() {
            Action::await_change()
        } else {
            Action::requeue(interval)
        };
        match self.evaluate().await {
            Ok(()) => Ok(next),
            Err(e) if !e.retriable() => {
                tracing::warn!("{}: {e}; next pass as scheduled", self.name());
                Ok(next)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400;

    struct Setup {
        rig: Rig,
        cleaner: LegacyTokenCleaner,
    }

    /// Tracking started today; ServiceAccount `robot` lists the auto-generated `robot-token`.
    async fn setup() -> Setup {
        let rig = rig().await;
        rig.create(
            "configmaps",
            Some("kube-system"),
            json!({"metadata": {"name": "kube-apiserver-legacy-service-account-token-tracking"},
                   "data": {"since": "2026-11-23"}}),
        )
        .await;
        let sa = rig
            .create(
                "serviceaccounts",
                Some("default"),
                json!({"metadata": {"name": "robot"}, "secrets": [{"name": "robot-token"}]}),
            )
            .await;
        rig.create(
            "secrets",
            Some("default"),
            json!({"metadata": {"name": "robot-token", "annotations": {
                    wellknown::ANNOTATION_SA_NAME: "robot",
                    wellknown::ANNOTATION_SA_UID: sa["metadata"]["uid"]}},
                   "type": wellknown::SECRET_TYPE_SA_TOKEN,
                   "stringData": {"token": "t"}}),
        )
        .await;
        let cleaner =
            LegacyTokenCleaner::new(rig.registry.clone(), rig.clock.clone(), rig.config.clone());
        Setup { rig, cleaner }
    }

    impl Setup {
        async fn pass(&self) -> Option<Value> {
            self.cleaner.reconcile(&()).await.unwrap();
            self.rig
                .get("secrets", Some("default"), "robot-token")
                .await
        }
    }

    fn invalid_since(secret: &Value) -> Option<&str> {
        label(secret, wellknown::LABEL_LEGACY_TOKEN_INVALID_SINCE)
    }

    #[tokio::test]
    async fn unused_tokens_are_invalidated_after_a_year_and_deleted_a_year_later() {
        let s = setup().await;
        // Not tracked for (since + 1 day) + one year yet.
        let untouched = s.pass().await.unwrap();
        assert_eq!(invalid_since(&untouched), None);
        // 2026-11-24T00:00Z + 365 days = 2027-11-24T00:00Z; just before it, still nothing.
        s.rig.clock.advance(366 * DAY - 4 * 60 - 4 - 1);
        assert_eq!(invalid_since(&s.pass().await.unwrap()), None);
        s.rig.clock.advance(1);
        let marked = s.pass().await.unwrap();
        assert_eq!(invalid_since(&marked), Some("2027-11-24"));
        // Marked: kept for another period ...
        assert_eq!(rv(&s.pass().await.unwrap()), rv(&marked));
        s.rig.clock.advance(365 * DAY);
        assert!(
            s.pass().await.is_some(),
            "2028-11-23 minus a year is 2027-11-24: not older yet"
        );
        // ... and deleted once the label is older than a period.
        s.rig.clock.advance(DAY);
        assert!(s.pass().await.is_none());
    }

    #[tokio::test]
    async fn recently_used_manual_and_odd_tokens_are_kept() {
        let s = setup().await;
        s.rig.clock.advance(2 * 365 * DAY);
        // Used within the period (2028-11-22 minus a year is 2027-11-23).
        s.rig
            .update("secrets", Some("default"), "robot-token", |sec| {
                sec["metadata"]["labels"] =
                    json!({wellknown::LABEL_LEGACY_TOKEN_LAST_USED: "2027-11-23"});
            })
            .await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), None);
        // An unparsable last-used label: skipped.
        s.rig
            .update("secrets", Some("default"), "robot-token", |sec| {
                sec["metadata"]["labels"] =
                    json!({wellknown::LABEL_LEGACY_TOKEN_LAST_USED: "nope"});
            })
            .await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), None);
        // Used before the period: a candidate.
        s.rig
            .update("secrets", Some("default"), "robot-token", |sec| {
                sec["metadata"]["labels"] =
                    json!({wellknown::LABEL_LEGACY_TOKEN_LAST_USED: "2027-11-22"});
            })
            .await;
        // ... unless not listed in .secrets (made by hand).
        s.rig
            .update("serviceaccounts", Some("default"), "robot", |sa| {
                sa["secrets"] = json!([]);
            })
            .await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), None);
        s.rig
            .update("serviceaccounts", Some("default"), "robot", |sa| {
                sa["secrets"] = json!([{"name": "robot-token"}]);
            })
            .await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), Some("2028-11-22"));
        // An unparsable invalid-since is replaced by today's date, not acted on.
        s.rig
            .update("secrets", Some("default"), "robot-token", |sec| {
                sec["metadata"]["labels"][wellknown::LABEL_LEGACY_TOKEN_INVALID_SINCE] =
                    json!("2020-02-30");
            })
            .await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), Some("2028-11-22"));
    }

    #[tokio::test]
    async fn tokens_whose_service_account_is_gone_or_new_are_left_to_the_tokens_controller() {
        let s = setup().await;
        s.rig.clock.advance(2 * 365 * DAY);
        s.rig
            .delete("serviceaccounts", Some("default"), "robot")
            .await;
        s.rig
            .create(
                "serviceaccounts",
                Some("default"),
                json!({"metadata": {"name": "robot"}, "secrets": [{"name": "robot-token"}]}),
            )
            .await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), None);
    }

    #[tokio::test]
    async fn tokens_a_pod_references_are_kept() {
        let s = setup().await;
        s.rig.clock.advance(2 * 365 * DAY);
        let pod = json!({"metadata": {"name": "app"}, "spec": {"containers": [{
            "name": "c", "image": "nginx",
            "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "robot-token", "key": "token"}}}]}]}});
        s.rig.create("pods", Some("default"), pod).await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), None);
        // A pod in another namespace does not count.
        s.rig.delete("pods", Some("default"), "app").await;
        s.rig.namespace("elsewhere").await;
        let pod = json!({"metadata": {"name": "app"}, "spec": {
            "containers": [{"name": "c", "image": "nginx"}],
            "volumes": [{"name": "v", "secret": {"secretName": "robot-token"}}]}});
        s.rig.create("pods", Some("elsewhere"), pod).await;
        assert_eq!(invalid_since(&s.pass().await.unwrap()), Some("2028-11-22"));
    }

    #[test]
    fn every_kind_of_pod_reference_counts() {
        let pod = json!({"spec": {
            "imagePullSecrets": [{"name": "pull"}, {"name": ""}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env-from"}}]}],
            "containers": [{"name": "c",
                "envFrom": [{"configMapRef": {"name": "not-a-secret"}}],
                "env": [{"name": "A", "value": "x"},
                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "env-key", "key": "k"}}}]}],
            "ephemeralContainers": [{"name": "e", "env": [{"name": "C",
                "valueFrom": {"secretKeyRef": {"name": "ephemeral", "key": "k"}}}]}],
            "volumes": [
                {"name": "a", "secret": {"secretName": "volume"}},
                {"name": "b", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"secret": {"name": "projected"}}]}},
                {"name": "c", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi"}}},
                {"name": "d", "azureFile": {"secretName": "azure", "shareName": "s"}},
                {"name": "e", "cephfs": {"monitors": [], "secretRef": {"name": "ceph"}}},
                {"name": "f", "configMap": {"name": "not-a-secret-either"}}]}});
        let mut names: Vec<String> = pod_secret_names(&pod).into_iter().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "azure",
                "ceph",
                "csi",
                "env-key",
                "ephemeral",
                "init-env-from",
                "projected",
                "pull",
                "volume"
            ]
        );
    }
}
