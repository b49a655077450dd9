//! The ServiceAccount admission plugin for pod creates: default the account, check
//! that it exists, decide whether to automount its credentials, inject the
//! `kube-api-access-<5>` projected volume (or, emulating Kubernetes before 1.21, the
//! account's legacy token Secret), copy its image pull secrets, and enforce
//! `kubernetes.io/enforce-mountable-secrets`.
//!
//! Mirrors `plugin/pkg/admission/serviceaccount/admission.go` (Admit, then Validate);
//! the rules are written down in `shared/reference/k8s-sa-token-facts.md` §6.1.
//! It works on the pod's JSON wire form and only reads the registry.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::registry::{Registry, RegistryError, random_suffix, resources};
use crate::wellknown;

/// Which automount behaviour to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AutomountMode {
    /// Kubernetes ≥ 1.21: the projected `kube-api-access-<5>` volume.
    Projected,
    /// Before 1.21: the ServiceAccount's first token Secret (from `.secrets`) as a
    /// `secret` volume named after the Secret, mounted at the same path; a pod whose
    /// account has no token Secret yet is refused until the token exists.
    LegacySecret,
}

/// The ServiceAccount admission plugin, over the registry it reads accounts from.
#[derive(Debug, Clone)]
pub(crate) struct ServiceAccountAdmission {
    registry: Registry,
    mode: AutomountMode,
}

/// How many times the `default` account is looked up before giving up: the
/// controller that creates it may not have run yet in a new namespace. Other names
/// get one look-up, since nothing creates them on the pod's behalf.
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;
/// The pause between look-ups is drawn once per pod from [100, 200) ms, as upstream.
const RETRY_BASE_MS: u64 = 100;
const RETRY_JITTER_MS: u64 = 100;

impl ServiceAccountAdmission {
    pub(crate) fn new(registry: Registry, mode: AutomountMode) -> Self {
        ServiceAccountAdmission { registry, mode }
    }

    /// Mutates and validates a Pod about to be created in `namespace` (JSON wire form,
    /// before the registry's own defaulting). Errors are Kubernetes': a missing account
    /// is `Forbidden` on `pods "<name>"` with
    /// `error looking up service account <ns>/<sa>: serviceaccount "<sa>" not found`.
    pub(crate) async fn admit_pod_create(
        &self,
        namespace: &str,
        pod: &mut Value,
    ) -> Result<(), RegistryError> {
        // The NamespaceLifecycle plugin runs before this one: a pod in a namespace that
        // does not exist is a NotFound for the namespace, not a missing account (and
        // must not wait out the `default` retries).
        self.registry
            .get(resources::core("namespaces"), None, namespace)
            .await?;
        let subject = subject_name(pod);
        let forbidden = |message: String| RegistryError::Forbidden {
            resource: "pods".into(),
            name: subject.clone(),
            message,
        };

        // A mirror pod is the kubelet's copy of a static pod: changing its spec would
        // make the kubelet delete it, so it is only checked (Admit defers to Validate).
        if annotations(pod).is_some_and(|a| a.contains_key(wellknown::ANNOTATION_MIRROR_POD)) {
            return validate_mirror_pod(pod).map_err(forbidden);
        }

        // Anything but an object (or a spec that is not one) is refused by the
        // registry's structural check, as the apiserver's decoder would refuse it
        // before admission ever ran.
        let Some(obj) = pod.as_object_mut() else {
            return Ok(());
        };
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        if spec.is_null() {
            *spec = json!({});
        }
        let Some(spec) = spec.as_object_mut() else {
            return Ok(());
        };

        let sa_name = match account_name(spec) {
            "" => wellknown::DEFAULT_SERVICE_ACCOUNT.to_string(),
            name => name.to_string(),
        };
        // `serviceAccount` is the deprecated alias; the v1 conversion always writes it
        // back equal to `serviceAccountName`, so both carry the chosen account.
        spec.insert("serviceAccountName".into(), Value::from(sa_name.as_str()));
        spec.insert("serviceAccount".into(), Value::from(sa_name.as_str()));

        let sa = self
            .service_account(namespace, &sa_name)
            .await
            .map_err(|e| {
                forbidden(format!(
                    "error looking up service account {namespace}/{sa_name}: {e}"
                ))
            })?;

        if should_automount(&sa, spec) {
            match self.mode {
                AutomountMode::Projected => mount_projected(spec),
                AutomountMode::LegacySecret => {
                    self.mount_legacy_secret(namespace, &sa, spec, &forbidden)
                        .await?
                }
            }
        }

        if list(spec.get("imagePullSecrets")).is_empty() {
            let names: Vec<Value> = list(sa.get("imagePullSecrets"))
                .iter()
                .map(|r| json!({"name": str_of(r, "name")}))
                .collect();
            if !names.is_empty() {
                spec.insert("imagePullSecrets".into(), Value::Array(names));
            }
        }

        // Validate runs after the mutations, on the final pod (so copied pull secrets
        // are checked too, and always pass).
        if enforces_mountable_secrets(&sa) {
            limit_secret_references(&sa, spec).map_err(forbidden)?;
        }
        Ok(())
    }

    /// The account, looked up once, or [`DEFAULT_ACCOUNT_ATTEMPTS`] times for `default`.
    /// The error text is what follows `error looking up service account <ns>/<sa>: `.
    async fn service_account(&self, namespace: &str, name: &str) -> Result<Value, String> {
        let attempts = if name == wellknown::DEFAULT_SERVICE_ACCOUNT {
            DEFAULT_ACCOUNT_ATTEMPTS
        } else {
            1
        };
        let pause = Duration::from_millis(RETRY_BASE_MS + rand::random_range(0..RETRY_JITTER_MS));
        let res = resources::core("serviceaccounts");
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(pause).await;
            }
            match self.registry.get(res, Some(namespace), name).await {
                Ok(sa) => return Ok(sa),
                Err(RegistryError::NotFound { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        // Upstream's NotFound names the resource in the singular here.
        Err(format!("serviceaccount {name:?} not found"))
    }

    /// Before 1.21: mount the account's first token Secret, or refuse the pod until the
    /// tokens controller has created one.
    async fn mount_legacy_secret(
        &self,
        namespace: &str,
        sa: &Value,
        spec: &mut Map<String, Value>,
        forbidden: &impl Fn(String) -> RegistryError,
    ) -> Result<(), RegistryError> {
        let sa_name = meta_str(sa, "name");
        let token = self.token_secret(namespace, sa).await.map_err(|e| {
            forbidden(format!(
                "Error looking up service account token for {namespace}/{sa_name}: {e}"
            ))
        })?;
        let Some(token) = token else {
            // Upstream answers 500 ServerTimeout (retry after 1 s) with this message.
            // RegistryError has no such variant; Internal keeps the code and the text.
            return Err(RegistryError::Internal(format!(
                "No API token found for service account {sa_name:?}, retry after the token is automatically created and added to the service account"
            )));
        };
        let volumes = list(spec.get("volumes"));
        let existing = volumes
            .iter()
            .find(|v| v.pointer("/secret/secretName").and_then(Value::as_str) == Some(&token))
            .map(|v| str_of(v, "name").to_string());
        let (volume, reuse) = match existing {
            Some(name) => (name, true),
            None => {
                // Volume names may not contain dots; a taken name gets a random suffix.
                let base = token.replace('.', "-");
                let taken = volumes.iter().any(|v| str_of(v, "name") == base);
                let name = if taken {
                    format!("{base}-{}", random_suffix(5))
                } else {
                    base
                };
                (name, false)
            }
        };
        if add_mounts(spec, &volume) && !reuse {
            push_volume(
                spec,
                json!({"name": volume, "secret": {"secretName": token}}),
            );
        }
        Ok(())
    }

    /// The first Secret in the account's `.secrets` that is a token for this account
    /// (`IsServiceAccountToken`: type, name annotation, and a UID annotation that is
    /// empty or the account's).
    async fn token_secret(&self, namespace: &str, sa: &Value) -> Result<Option<String>, String> {
        let res = resources::core("secrets");
        for reference in list(sa.get("secrets")) {
            let name = str_of(reference, "name");
            if name.is_empty() {
                continue;
            }
            let secret = match self.registry.get(res, Some(namespace), name).await {
                Ok(s) => s,
                Err(RegistryError::NotFound { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            };
            let ann = annotations(&secret);
            let ann_str = |key: &str| {
                ann.and_then(|a| a.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            let uid = ann_str(wellknown::ANNOTATION_SA_UID);
            if str_of(&secret, "type") == wellknown::SECRET_TYPE_SA_TOKEN
                && ann_str(wellknown::ANNOTATION_SA_NAME) == meta_str(sa, "name")
                && (uid.is_empty() || uid == meta_str(sa, "uid"))
            {
                return Ok(Some(name.to_string()));
            }
        }
        Ok(None)
    }
}

/// The name admission errors use: the pod's name, or its `generateName` prefix while
/// no name has been generated yet, or `Unknown` (apiserver `admission/errors.go`).
fn subject_name(pod: &Value) -> String {
    ["name", "generateName"]
        .iter()
        .map(|f| meta_str(pod, f))
        .find(|s| !s.is_empty())
        .unwrap_or("Unknown")
        .to_string()
}

fn annotations(obj: &Value) -> Option<&Map<String, Value>> {
    obj.pointer("/metadata/annotations")
        .and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn str_of<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// An array field's items; none when the field is absent, null or not an array.
fn list(field: Option<&Value>) -> &[Value] {
    field
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The account a pod spec names: `serviceAccountName`, else the deprecated
/// `serviceAccount` (the v1 conversion's rule), else empty.
fn account_name(spec: &Map<String, Value>) -> &str {
    ["serviceAccountName", "serviceAccount"]
        .iter()
        .filter_map(|f| spec.get(*f).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

/// The pod's choice wins, then the account's, then true (for compatibility).
fn should_automount(sa: &Value, spec: &Map<String, Value>) -> bool {
    spec.get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// Kubernetes ≥ 1.21: reuse a `kube-api-access-*` volume the pod already has, or add
/// a new one when some container got the mount.
fn mount_projected(spec: &mut Map<String, Value>) {
    let existing = list(spec.get("volumes"))
        .iter()
        .map(|v| str_of(v, "name"))
        .find(|n| n.starts_with(wellknown::SA_VOLUME_PREFIX))
        .map(str::to_string);
    let reuse = existing.is_some();
    let volume =
        existing.unwrap_or_else(|| format!("{}{}", wellknown::SA_VOLUME_PREFIX, random_suffix(5)));
    if add_mounts(spec, &volume) && !reuse {
        push_volume(spec, projected_volume(&volume));
    }
}

/// The injected volume, field for field (and in the order kube-apiserver writes it):
/// a 3607 s token for the API audiences, the root CA bundle and the namespace.
/// `defaultMode` is set here rather than left to defaulting, as upstream does since
/// kubernetes#104464.
fn projected_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {
                    "expirationSeconds": wellknown::ADMISSION_TOKEN_EXPIRATION_SECONDS,
                    "path": wellknown::SA_VOLUME_TOKEN_PATH,
                }},
                {"configMap": {
                    "name": wellknown::ROOT_CA_CONFIGMAP,
                    "items": [{"key": wellknown::ROOT_CA_KEY, "path": wellknown::ROOT_CA_KEY}],
                }},
                {"downwardAPI": {
                    "items": [{
                        "path": wellknown::SA_VOLUME_NAMESPACE_PATH,
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                    }],
                }},
            ],
            "defaultMode": wellknown::DEFAULT_VOLUME_MODE,
        },
    })
}

/// Mounts `volume` read-only at the token path in every init and regular container
/// that has nothing mounted there yet. Ephemeral containers are left alone (they are
/// never part of a create). Returns whether any container got the mount.
fn add_mounts(spec: &mut Map<String, Value>, volume: &str) -> bool {
    let mount = json!({
        "name": volume,
        "readOnly": true,
        "mountPath": wellknown::SA_TOKEN_MOUNT_PATH,
    });
    let mut added = false;
    for field in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(field).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            if mounts.is_null() {
                *mounts = json!([]);
            }
            // Anything else is not a mount list; the structural check refuses it later.
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts.iter().any(|m| {
                m.get("mountPath").and_then(Value::as_str) == Some(wellknown::SA_TOKEN_MOUNT_PATH)
            });
            if !taken {
                mounts.push(mount.clone());
                added = true;
            }
        }
    }
    added
}

fn push_volume(spec: &mut Map<String, Value>, volume: Value) {
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if volumes.is_null() {
        *volumes = json!([]);
    }
    if let Some(v) = volumes.as_array_mut() {
        v.push(volume);
    }
}

/// Go's `strconv.ParseBool` truth values; anything unparsable counts as false.
fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn enforces_mountable_secrets(sa: &Value) -> bool {
    annotations(sa)
        .and_then(|a| a.get(wellknown::ANNOTATION_ENFORCE_MOUNTABLE_SECRETS))
        .and_then(Value::as_str)
        .is_some_and(parse_bool)
}

/// With enforcement on, every secret volume, `secretKeyRef`, `envFrom` secret and
/// image pull secret must be one the account lists. The first offender is reported.
fn limit_secret_references(sa: &Value, spec: &Map<String, Value>) -> Result<(), String> {
    let sa_name = meta_str(sa, "name");
    let names = |field: &'static str| -> HashSet<&str> {
        list(sa.get(field))
            .iter()
            .map(|r| str_of(r, "name"))
            .collect()
    };
    let mountable = names("secrets");
    let refused = |what: String| {
        format!(
            "{what} is not allowed because service account {sa_name} does not reference that secret"
        )
    };
    for volume in list(spec.get("volumes")) {
        if let Some(secret) = volume.get("secret").filter(|s| s.is_object()) {
            let name = str_of(secret, "secretName");
            if !mountable.contains(name) {
                return Err(refused(format!("volume with secret.secretName=\"{name}\"")));
            }
        }
    }
    for (field, label) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        for c in list(spec.get(field)) {
            let c_name = str_of(c, "name");
            for env in list(c.get("env")) {
                if let Some(r) = env
                    .pointer("/valueFrom/secretKeyRef")
                    .filter(|r| r.is_object())
                {
                    let name = str_of(r, "name");
                    if !mountable.contains(name) {
                        return Err(refused(format!(
                            "{label} {c_name} with envVar {} referencing secret.secretName=\"{name}\"",
                            str_of(env, "name")
                        )));
                    }
                }
            }
            for from in list(c.get("envFrom")) {
                if let Some(r) = from.get("secretRef").filter(|r| r.is_object()) {
                    let name = str_of(r, "name");
                    if !mountable.contains(name) {
                        return Err(refused(format!(
                            "{label} {c_name} with envFrom referencing secret.secretName=\"{name}\""
                        )));
                    }
                }
            }
        }
    }
    let pullable = names("imagePullSecrets");
    for (i, r) in list(spec.get("imagePullSecrets")).iter().enumerate() {
        let name = str_of(r, "name");
        if !pullable.contains(name) {
            return Err(format!(
                "imagePullSecrets[{i}].name=\"{name}\" is not allowed because service account {sa_name} does not reference that imagePullSecret"
            ));
        }
    }
    Ok(())
}

/// A mirror pod may not name an account, reference any secret, or project a token.
fn validate_mirror_pod(pod: &Value) -> Result<(), String> {
    let Some(spec) = pod.get("spec").and_then(Value::as_object) else {
        return Ok(());
    };
    if !account_name(spec).is_empty() {
        return Err("a mirror pod may not reference service accounts".into());
    }
    if references_secrets(spec) {
        return Err("a mirror pod may not reference secrets".into());
    }
    let projects_token = list(spec.get("volumes")).iter().any(|v| {
        v.pointer("/projected/sources")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .any(|s| s.get("serviceAccountToken").is_some_and(Value::is_object))
            })
    });
    if projects_token {
        return Err("a mirror pod may not use ServiceAccountToken volume projections".into());
    }
    Ok(())
}

/// Whether the spec references any Secret at all: what `VisitPodSecretNames` visits
/// (`pkg/api/pod/util.go`) over image pull secrets, every kind of container, and the
/// volume sources that carry a secret reference.
fn references_secrets(spec: &Map<String, Value>) -> bool {
    if !list(spec.get("imagePullSecrets")).is_empty() {
        return true;
    }
    let present = |v: &Value, ptr: &str| v.pointer(ptr).is_some_and(|x| !x.is_null());
    let in_containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| list(spec.get(*f)))
        .any(|c| {
            list(c.get("env"))
                .iter()
                .any(|e| present(e, "/valueFrom/secretKeyRef"))
                || list(c.get("envFrom"))
                    .iter()
                    .any(|e| present(e, "/secretRef"))
        });
    if in_containers {
        return true;
    }
    const SECRET_REFS: &[&str] = &[
        "/secret",
        "/cephfs/secretRef",
        "/cinder/secretRef",
        "/flexVolume/secretRef",
        "/rbd/secretRef",
        "/scaleIO/secretRef",
        "/iscsi/secretRef",
        "/storageos/secretRef",
        "/csi/nodePublishSecretRef",
    ];
    list(spec.get("volumes")).iter().any(|v| {
        SECRET_REFS.iter().any(|p| present(v, p))
            || !v
                .pointer("/azureFile/secretName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
            || v.pointer("/projected/sources")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|s| present(s, "/secret")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    struct Fixture {
        registry: Registry,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn admission(&self, mode: AutomountMode) -> ServiceAccountAdmission {
            ServiceAccountAdmission::new(self.registry.clone(), mode)
        }

        async fn create(&self, plural: &str, ns: &str, obj: Value) -> Value {
            self.registry
                .create(resources::core(plural), Some(ns), obj, false)
                .await
                .unwrap()
        }

        async fn sa(&self, ns: &str, obj: Value) -> Value {
            self.create("serviceaccounts", ns, obj).await
        }
    }

    async fn fixture() -> Fixture {
        let (registry, dir) = crate::registry::temp_registry(FakeClock::at(1_795_392_244)).await;
        Fixture {
            registry,
            _dir: dir,
        }
    }

    fn pod(sa: Option<&str>) -> Value {
        let mut p = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "example"},
            "spec": {"containers": [{"name": "example", "image": "nginx"}]},
        });
        if let Some(sa) = sa {
            p["spec"]["serviceAccountName"] = json!(sa);
        }
        p
    }

    fn mount(volume: &str) -> Value {
        json!({"name": volume, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    }

    fn volume_names(p: &Value) -> Vec<&str> {
        list(p.pointer("/spec/volumes"))
            .iter()
            .map(|v| str_of(v, "name"))
            .collect()
    }

    fn forbidden_message(err: RegistryError) -> (String, String) {
        match err {
            RegistryError::Forbidden {
                resource,
                name,
                message,
            } => {
                assert_eq!(resource, "pods");
                (name, message)
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn injects_the_kube_api_access_volume_exactly() {
        let f = fixture().await;
        f.sa("default", json!({"metadata": {"name": "example-sa"}}))
            .await;
        let mut p = pod(Some("example-sa"));
        f.admission(AutomountMode::Projected)
            .admit_pod_create("default", &mut p)
            .await
            .unwrap();
        let spec = &p["spec"];
        assert_eq!(spec["serviceAccountName"], "example-sa");
        assert_eq!(spec["serviceAccount"], "example-sa");
        assert!(spec.get("automountServiceAccountToken").is_none());
        assert!(spec.get("imagePullSecrets").is_none());
        let name = spec["volumes"][0]["name"].as_str().unwrap().to_string();
        let suffix = name.strip_prefix("kube-api-access-").unwrap();
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{name}"
        );
        // Field for field and in kube-apiserver's order (facts §6.1, kube-1.32-observed).
        let expected = format!(
            r#"{{"name":"{name}","projected":{{"sources":[{{"serviceAccountToken":{{"expirationSeconds":3607,"path":"token"}}}},{{"configMap":{{"name":"kube-root-ca.crt","items":[{{"key":"ca.crt","path":"ca.crt"}}]}}}},{{"downwardAPI":{{"items":[{{"path":"namespace","fieldRef":{{"apiVersion":"v1","fieldPath":"metadata.namespace"}}}}]}}}}],"defaultMode":420}}}}"#
        );
        assert_eq!(spec["volumes"][0].to_string(), expected);
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            spec["containers"][0]["volumeMounts"].to_string(),
            format!(
                r#"[{{"name":"{name}","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}}]"#
            )
        );
        // The registry's defaulting and validation accept it unchanged.
        let stored = f.create("pods", "default", p.clone()).await;
        assert_eq!(stored["spec"]["volumes"], p["spec"]["volumes"]);
    }

    #[tokio::test]
    async fn unnamed_and_deprecated_accounts() {
        let f = fixture().await;
        f.sa("default", json!({"metadata": {"name": "default"}}))
            .await;
        f.sa("default", json!({"metadata": {"name": "old-style"}}))
            .await;
        let adm = f.admission(AutomountMode::Projected);
        let mut p = pod(None);
        p["spec"]["serviceAccountName"] = json!("");
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        // Only the deprecated field: it names the account.
        let mut p = pod(None);
        p["spec"]["serviceAccount"] = json!("old-style");
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "old-style");
        assert_eq!(p["spec"]["serviceAccount"], "old-style");
        // Both: the new field wins and the alias follows it.
        let mut p = pod(Some("default"));
        p["spec"]["serviceAccount"] = json!("old-style");
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(p["spec"]["serviceAccount"], "default");
        // No spec at all still gets the default account.
        let mut bare = json!({"metadata": {"name": "bare"}});
        adm.admit_pod_create("default", &mut bare).await.unwrap();
        assert_eq!(bare["spec"]["serviceAccountName"], "default");
    }

    #[tokio::test]
    async fn automount_is_the_pods_choice_then_the_accounts() {
        let f = fixture().await;
        f.sa(
            "default",
            json!({"metadata": {"name": "off"}, "automountServiceAccountToken": false}),
        )
        .await;
        f.sa(
            "default",
            json!({"metadata": {"name": "on"}, "automountServiceAccountToken": true}),
        )
        .await;
        let adm = f.admission(AutomountMode::Projected);
        let cases = [
            ("off", None, false),
            ("off", Some(true), true),
            ("on", Some(false), false),
            ("on", None, true),
            ("off", Some(false), false),
        ];
        for (sa, pod_choice, mounted) in cases {
            let mut p = pod(Some(sa));
            if let Some(c) = pod_choice {
                p["spec"]["automountServiceAccountToken"] = json!(c);
            }
            adm.admit_pod_create("default", &mut p).await.unwrap();
            assert_eq!(
                p["spec"].get("volumes").is_some(),
                mounted,
                "{sa} {pod_choice:?}"
            );
            assert_eq!(
                p["spec"]["containers"][0].get("volumeMounts").is_some(),
                mounted,
                "{sa} {pod_choice:?}"
            );
            // The pod's own field is never rewritten.
            assert_eq!(
                p["spec"].get("automountServiceAccountToken").cloned(),
                pod_choice.map(Value::from)
            );
        }
    }

    #[tokio::test]
    async fn existing_mounts_init_and_ephemeral_containers() {
        let f = fixture().await;
        f.sa("default", json!({"metadata": {"name": "default"}}))
            .await;
        let adm = f.admission(AutomountMode::Projected);
        let own =
            json!({"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        let mut p = json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [
                    {"name": "keeps", "image": "nginx", "volumeMounts": [own.clone()]},
                    {"name": "gets", "image": "nginx", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                ],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
                "volumes": [{"name": "mine", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
            },
        });
        adm.admit_pod_create("default", &mut p).await.unwrap();
        let names = volume_names(&p);
        assert_eq!(names.len(), 3, "{names:?}");
        let vol = names[2].to_string();
        assert!(vol.starts_with("kube-api-access-"));
        let spec = &p["spec"];
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"],
            json!([mount(&vol)])
        );
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([own]));
        assert_eq!(
            spec["containers"][1]["volumeMounts"],
            json!([{"name": "data", "mountPath": "/data"}, mount(&vol)])
        );
        assert!(spec["ephemeralContainers"][0].get("volumeMounts").is_none());

        // Every container already has something at the path: no volume is added.
        let mut p = json!({
            "metadata": {"name": "q"},
            "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [own]}],
                     "volumes": [{"name": "mine", "emptyDir": {}}]},
        });
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(volume_names(&p), vec!["mine"]);
    }

    #[tokio::test]
    async fn an_existing_kube_api_access_volume_is_reused() {
        let f = fixture().await;
        f.sa("default", json!({"metadata": {"name": "default"}}))
            .await;
        let mut p = pod(None);
        p["spec"]["volumes"] = json!([{"name": "kube-api-access-abcde", "emptyDir": {}}]);
        f.admission(AutomountMode::Projected)
            .admit_pod_create("default", &mut p)
            .await
            .unwrap();
        assert_eq!(volume_names(&p), vec!["kube-api-access-abcde"]);
        assert_eq!(p["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"],
            json!([mount("kube-api-access-abcde")])
        );
    }

    #[tokio::test]
    async fn a_missing_account_is_forbidden() {
        let f = fixture().await;
        let adm = f.admission(AutomountMode::Projected);
        let mut p = pod(Some("nope"));
        let (name, message) =
            forbidden_message(adm.admit_pod_create("default", &mut p).await.unwrap_err());
        assert_eq!(name, "example");
        assert_eq!(
            message,
            r#"error looking up service account default/nope: serviceaccount "nope" not found"#
        );
        // Before a name is generated the error names the generateName prefix, and
        // `Unknown` when there is neither.
        let mut p = pod(Some("nope"));
        p["metadata"] = json!({"generateName": "web-7c5ddbdf54-"});
        let (name, _) =
            forbidden_message(adm.admit_pod_create("default", &mut p).await.unwrap_err());
        assert_eq!(name, "web-7c5ddbdf54-");
        let mut p = pod(Some("nope"));
        p["metadata"] = json!({});
        let (name, _) =
            forbidden_message(adm.admit_pod_create("default", &mut p).await.unwrap_err());
        assert_eq!(name, "Unknown");
        // The default account is retried, then refused the same way.
        let mut p = pod(None);
        let (_, message) =
            forbidden_message(adm.admit_pod_create("default", &mut p).await.unwrap_err());
        assert_eq!(
            message,
            r#"error looking up service account default/default: serviceaccount "default" not found"#
        );
    }

    #[tokio::test]
    async fn a_missing_namespace_is_not_found() {
        let f = fixture().await;
        let mut p = pod(None);
        let err = f
            .admission(AutomountMode::Projected)
            .admit_pod_create("nowhere", &mut p)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::NotFound { resource, name } if resource == "namespaces" && name == "nowhere"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn the_default_account_is_waited_for() {
        let f = fixture().await;
        f.create("namespaces", "", json!({"metadata": {"name": "fresh"}}))
            .await;
        let registry = f.registry.clone();
        // The default-account controller, late: the first look-ups miss.
        let controller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            registry
                .create(
                    resources::core("serviceaccounts"),
                    Some("fresh"),
                    json!({"metadata": {"name": "default"}}),
                    false,
                )
                .await
                .unwrap();
        });
        let mut p = pod(None);
        f.admission(AutomountMode::Projected)
            .admit_pod_create("fresh", &mut p)
            .await
            .unwrap();
        controller.await.unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(volume_names(&p).len(), 1);
        // Any other name is looked up once: nothing creates it on the pod's behalf.
        let mut p = pod(Some("late"));
        assert!(
            f.admission(AutomountMode::Projected)
                .admit_pod_create("fresh", &mut p)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn image_pull_secrets_come_from_the_account() {
        let f = fixture().await;
        f.sa(
            "default",
            json!({"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}]}),
        )
        .await;
        let adm = f.admission(AutomountMode::Projected);
        let mut p = pod(Some("puller"));
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(
            p["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}, {"name": "mirror"}])
        );
        // A pod with its own keeps them.
        let mut p = pod(Some("puller"));
        p["spec"]["imagePullSecrets"] = json!([{"name": "mine"}]);
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
        // An empty list counts as none.
        let mut p = pod(Some("puller"));
        p["spec"]["imagePullSecrets"] = json!([]);
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(p["spec"]["imagePullSecrets"][1]["name"], "mirror");
    }

    async fn legacy_fixture() -> Fixture {
        let f = fixture().await;
        let sa = f
            .sa(
                "default",
                json!({"metadata": {"name": "example-sa"}, "secrets": [
                    {"name": "gone"},
                    {"name": "not-a-token"},
                    {"name": "example-sa.token"},
                ]}),
            )
            .await;
        let uid = sa["metadata"]["uid"].as_str().unwrap().to_string();
        f.create(
            "secrets",
            "default",
            json!({"metadata": {"name": "not-a-token"}, "type": "Opaque"}),
        )
        .await;
        f.create(
            "secrets",
            "default",
            json!({"metadata": {"name": "example-sa.token", "annotations": {
                "kubernetes.io/service-account.name": "example-sa",
                "kubernetes.io/service-account.uid": uid,
            }}, "type": "kubernetes.io/service-account-token"}),
        )
        .await;
        f
    }

    #[tokio::test]
    async fn legacy_mode_mounts_the_token_secret() {
        let f = legacy_fixture().await;
        let adm = f.admission(AutomountMode::LegacySecret);
        let mut p = pod(Some("example-sa"));
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(
            p["spec"]["volumes"],
            json!([{"name": "example-sa-token", "secret": {"secretName": "example-sa.token"}}])
        );
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"],
            json!([mount("example-sa-token")])
        );
        // A volume of that secret is reused; a volume holding the name gets a suffix.
        let mut p = pod(Some("example-sa"));
        p["spec"]["volumes"] = json!([{"name": "t", "secret": {"secretName": "example-sa.token"}}]);
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(volume_names(&p), vec!["t"]);
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"],
            json!([mount("t")])
        );
        let mut p = pod(Some("example-sa"));
        p["spec"]["volumes"] = json!([{"name": "example-sa-token", "emptyDir": {}}]);
        adm.admit_pod_create("default", &mut p).await.unwrap();
        let names = volume_names(&p);
        assert!(
            names[1].starts_with("example-sa-token-") && names[1].len() == 22,
            "{names:?}"
        );
        // The stored pod gets the usual secret-volume default mode.
        let stored = f.create("pods", "default", p).await;
        assert_eq!(stored["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
    }

    #[tokio::test]
    async fn legacy_mode_refuses_until_a_token_exists() {
        let f = legacy_fixture().await;
        let adm = f.admission(AutomountMode::LegacySecret);
        f.sa(
            "default",
            json!({"metadata": {"name": "tokenless"}, "secrets": [{"name": "not-a-token"}, {"name": "example-sa.token"}]}),
        )
        .await;
        let mut p = pod(Some("tokenless"));
        match adm.admit_pod_create("default", &mut p).await.unwrap_err() {
            RegistryError::Internal(m) => assert_eq!(
                m,
                r#"No API token found for service account "tokenless", retry after the token is automatically created and added to the service account"#
            ),
            other => panic!("{other:?}"),
        }
        // A token whose UID annotation names another account does not count either.
        let sa = f
            .sa(
                "default",
                json!({"metadata": {"name": "stolen"}, "secrets": [{"name": "stolen-token"}]}),
            )
            .await;
        assert!(sa["metadata"]["uid"].is_string());
        f.create(
            "secrets",
            "default",
            json!({"metadata": {"name": "stolen-token", "annotations": {
                "kubernetes.io/service-account.name": "stolen",
                "kubernetes.io/service-account.uid": "someone-else",
            }}, "type": "kubernetes.io/service-account-token"}),
        )
        .await;
        let mut p = pod(Some("stolen"));
        assert!(matches!(
            adm.admit_pod_create("default", &mut p).await,
            Err(RegistryError::Internal(_))
        ));
        // Without automount nothing is needed.
        let mut p = pod(Some("tokenless"));
        p["spec"]["automountServiceAccountToken"] = json!(false);
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert!(p["spec"].get("volumes").is_none());
    }

    #[tokio::test]
    async fn enforce_mountable_secrets() {
        let f = fixture().await;
        f.sa(
            "default",
            json!({"metadata": {"name": "strict", "annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}},
                   "secrets": [{"name": "allowed"}], "imagePullSecrets": [{"name": "regcred"}]}),
        )
        .await;
        f.sa(
            "default",
            json!({"metadata": {"name": "lax", "annotations": {"kubernetes.io/enforce-mountable-secrets": "yes"}}}),
        )
        .await;
        let adm = f.admission(AutomountMode::Projected);
        let secret_env = |secret: &str| json!([{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]);
        let allowed = {
            let mut p = pod(Some("strict"));
            p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "allowed"}}]);
            p["spec"]["containers"][0]["env"] = secret_env("allowed");
            p["spec"]["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "allowed"}}]);
            p
        };
        let mut p = allowed.clone();
        adm.admit_pod_create("default", &mut p).await.unwrap();
        // The copied pull secret is the account's own, so it passes.
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));

        let mut cases: Vec<(Value, &str)> = Vec::new();
        let mut p = allowed.clone();
        p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "other"}}]);
        cases.push((p, r#"volume with secret.secretName="other" is not allowed because service account strict does not reference that secret"#));
        let mut p = allowed.clone();
        p["spec"]["containers"][0]["env"] = secret_env("other");
        cases.push((p, r#"container example with envVar PASSWORD referencing secret.secretName="other" is not allowed because service account strict does not reference that secret"#));
        let mut p = allowed.clone();
        p["spec"]["initContainers"] =
            json!([{"name": "init", "image": "i", "env": secret_env("other")}]);
        cases.push((p, r#"init container init with envVar PASSWORD referencing secret.secretName="other" is not allowed because service account strict does not reference that secret"#));
        let mut p = allowed.clone();
        p["spec"]["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "other"}}]);
        cases.push((p, r#"container example with envFrom referencing secret.secretName="other" is not allowed because service account strict does not reference that secret"#));
        let mut p = allowed.clone();
        p["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}, {"name": "other"}]);
        cases.push((p, r#"imagePullSecrets[1].name="other" is not allowed because service account strict does not reference that imagePullSecret"#));
        for (mut p, want) in cases {
            let (name, message) =
                forbidden_message(adm.admit_pod_create("default", &mut p).await.unwrap_err());
            assert_eq!(name, "example");
            assert_eq!(message, want);
        }
        // "yes" is not a Go boolean: no enforcement.
        let mut p = pod(Some("lax"));
        p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "other"}}]);
        adm.admit_pod_create("default", &mut p).await.unwrap();
    }

    #[tokio::test]
    async fn mirror_pods_are_checked_not_mutated() {
        let f = fixture().await;
        let adm = f.admission(AutomountMode::Projected);
        let mirror = |spec: Value| {
            json!({"metadata": {"name": "static-web-node1", "annotations": {"kubernetes.io/config.mirror": "abc"}},
                   "spec": spec})
        };
        // No default account exists, and none is needed.
        let mut p = mirror(json!({"containers": [{"name": "c", "image": "i"}]}));
        let before = p.clone();
        adm.admit_pod_create("default", &mut p).await.unwrap();
        assert_eq!(p, before);
        let cases = [
            (
                json!({"serviceAccountName": "x", "containers": []}),
                "a mirror pod may not reference service accounts",
            ),
            (
                json!({"serviceAccount": "x", "containers": []}),
                "a mirror pod may not reference service accounts",
            ),
            (
                json!({"volumes": [{"name": "v", "secret": {"secretName": "s"}}]}),
                "a mirror pod may not reference secrets",
            ),
            (
                json!({"ephemeralContainers": [{"name": "d", "envFrom": [{"secretRef": {"name": "s"}}]}]}),
                "a mirror pod may not reference secrets",
            ),
            (
                json!({"volumes": [{"name": "v", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s"}}}]}),
                "a mirror pod may not reference secrets",
            ),
            (
                json!({"volumes": [{"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}),
                "a mirror pod may not use ServiceAccountToken volume projections",
            ),
        ];
        for (spec, want) in cases {
            let mut p = mirror(spec);
            let (name, message) =
                forbidden_message(adm.admit_pod_create("default", &mut p).await.unwrap_err());
            assert_eq!(
                (name.as_str(), message.as_str()),
                ("static-web-node1", want)
            );
        }
    }

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(parse_bool(t), "{t}");
        }
        for f in ["0", "f", "false", "yes", "", "tRUE"] {
            assert!(!parse_bool(f), "{f}");
        }
    }
}
