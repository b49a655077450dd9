//! What each volume of a Pod contains: `projected` (serviceAccountToken, configMap, secret,
//! downwardAPI), `secret`, `configMap` and `downwardAPI` volumes become a [`Payload`] for the
//! atomic writer, with `items`, `optional`, `defaultMode` and `mode` as the kubelet reads them.
//! Other volume types are not the agent's business and are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};

use super::atomic_writer::{FileProjection, Payload};
use crate::wellknown;

/// How the agent reads ConfigMaps and Secrets and gets tokens for a Pod; the kube client in
/// production, a map in tests.
#[async_trait::async_trait]
pub(crate) trait Sources: Send {
    /// `Ok(None)` when it does not exist.
    async fn config_map(&mut self, name: &str) -> anyhow::Result<Option<ConfigMap>>;
    async fn secret(&mut self, name: &str) -> anyhow::Result<Option<Secret>>;
    /// A token for the Pod's ServiceAccount bound to the Pod.
    async fn token(&mut self, audience: Option<&str>, seconds: i64) -> anyhow::Result<String>;
}

/// The directory of one volume: `ROOT/pods/<uid>/volumes/<plugin>/<name>`.
pub(crate) fn volume_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join(wellknown::POD_VOLUMES_DIR)
        .join(plugin)
        .join(name)
}

/// The plugin directory of a volume this agent writes, or `None` for any other volume.
pub(crate) fn plugin_of(volume: &Volume) -> Option<&'static str> {
    if volume.projected.is_some() {
        Some(wellknown::PLUGIN_DIR_PROJECTED)
    } else if volume.secret.is_some() {
        Some(wellknown::PLUGIN_DIR_SECRET)
    } else if volume.config_map.is_some() {
        Some(wellknown::PLUGIN_DIR_CONFIGMAP)
    } else if volume.downward_api.is_some() {
        Some(wellknown::PLUGIN_DIR_DOWNWARD_API)
    } else {
        None
    }
}

fn mode(m: Option<i32>, default: u32) -> u32 {
    m.map_or(default, |m| (m as u32) & 0o7777)
}

/// The payload of one volume.
pub(crate) async fn build(
    pod: &Pod,
    volume: &Volume,
    sources: &mut dyn Sources,
) -> anyhow::Result<Payload> {
    let mut out = Payload::new();
    let default_volume_mode = wellknown::DEFAULT_VOLUME_MODE as u32;
    if let Some(p) = &volume.projected {
        let default = mode(p.default_mode, default_volume_mode);
        for source in p.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let seconds = t
                    .expiration_seconds
                    .unwrap_or(wellknown::DEFAULT_TOKEN_EXPIRATION_SECONDS);
                let token = sources.token(t.audience.as_deref(), seconds).await?;
                insert(&mut out, &t.path, token.into_bytes(), default)?;
            }
            if let Some(c) = &source.config_map {
                let map = sources.config_map(&c.name).await?;
                let data = map.map(config_map_data);
                keys(
                    &mut out,
                    data,
                    c.items.as_deref(),
                    c.optional,
                    default,
                    &c.name,
                )?;
            }
            if let Some(s) = &source.secret {
                let data = sources.secret(&s.name).await?.map(secret_data);
                keys(
                    &mut out,
                    data,
                    s.items.as_deref(),
                    s.optional,
                    default,
                    &s.name,
                )?;
            }
            if let Some(d) = &source.downward_api {
                downward(
                    &mut out,
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    default,
                )?;
            }
            if source.cluster_trust_bundle.is_some() || source.pod_certificate.is_some() {
                anyhow::bail!(
                    "volume {:?}: this projected source is not supported",
                    volume.name
                );
            }
        }
    } else if let Some(s) = &volume.secret {
        let default = mode(s.default_mode, default_volume_mode);
        let name = s.secret_name.clone().unwrap_or_default();
        let data = sources.secret(&name).await?.map(secret_data);
        keys(
            &mut out,
            data,
            s.items.as_deref(),
            s.optional,
            default,
            &name,
        )?;
    } else if let Some(c) = &volume.config_map {
        let default = mode(c.default_mode, default_volume_mode);
        let data = sources.config_map(&c.name).await?.map(config_map_data);
        keys(
            &mut out,
            data,
            c.items.as_deref(),
            c.optional,
            default,
            &c.name,
        )?;
    } else if let Some(d) = &volume.downward_api {
        let default = mode(d.default_mode, default_volume_mode);
        downward(
            &mut out,
            pod,
            d.items.as_deref().unwrap_or_default(),
            default,
        )?;
    }
    Ok(out)
}

fn insert(out: &mut Payload, path: &str, data: Vec<u8>, mode: u32) -> anyhow::Result<()> {
    super::atomic_writer::validate_path(path).map_err(anyhow::Error::msg)?;
    if out
        .insert(path.to_string(), FileProjection { data, mode })
        .is_some()
    {
        anyhow::bail!("two sources write {path:?}");
    }
    Ok(())
}

fn config_map_data(c: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = c
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in c.binary_data.unwrap_or_default() {
        out.insert(k, v.0);
    }
    out
}

fn secret_data(s: Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// The keys of a ConfigMap or Secret: all of them, or the listed `items` (each with its path
/// and mode). A missing object or key is an error unless `optional`.
fn keys(
    out: &mut Payload,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    default: u32,
    name: &str,
) -> anyhow::Result<()> {
    let optional = optional.unwrap_or(false);
    let Some(mut data) = data else {
        if optional {
            return Ok(());
        }
        anyhow::bail!("{name:?} not found");
    };
    match items {
        None | Some([]) => {
            for (k, v) in data {
                insert(out, &k, v, default)?;
            }
        }
        Some(items) => {
            for item in items {
                match data.remove(&item.key) {
                    Some(v) => insert(out, &item.path, v, mode(item.mode, default))?,
                    None if optional => {}
                    None => anyhow::bail!("{name:?} has no key {:?}", item.key),
                }
            }
        }
    }
    Ok(())
}

fn downward(
    out: &mut Payload,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default: u32,
) -> anyhow::Result<()> {
    for item in items {
        let Some(field) = &item.field_ref else {
            anyhow::bail!("{:?}: only fieldRef is supported", item.path);
        };
        let value = field_value(pod, &field.field_path)?;
        insert(
            out,
            &item.path,
            value.into_bytes(),
            mode(item.mode, default),
        )?;
    }
    Ok(())
}

/// A `fieldRef` value as the kubelet formats it (maps as sorted `key="value"` lines).
pub(crate) fn field_value(pod: &Pod, path: &str) -> anyhow::Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let map_lines = |m: Option<&BTreeMap<String, String>>| {
        m.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
    };
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_lines(meta.labels.as_ref()),
        "metadata.annotations" => map_lines(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        _ => {
            if let Some(k) = subscript("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|m| m.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations['") {
                let m = meta.annotations.as_ref();
                m.and_then(|m| m.get(&k).cloned()).unwrap_or_default()
            } else {
                anyhow::bail!("unsupported fieldRef {path:?}");
            }
        }
    };
    Ok(v)
}

/// Go's `%q` for the characters that occur in label and annotation values.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    #[derive(Default)]
    struct Fake {
        maps: BTreeMap<String, ConfigMap>,
        secrets: BTreeMap<String, Secret>,
        tokens: Vec<(Option<String>, i64)>,
    }

    #[async_trait::async_trait]
    impl Sources for Fake {
        async fn config_map(&mut self, name: &str) -> anyhow::Result<Option<ConfigMap>> {
            Ok(self.maps.get(name).cloned())
        }
        async fn secret(&mut self, name: &str) -> anyhow::Result<Option<Secret>> {
            Ok(self.secrets.get(name).cloned())
        }
        async fn token(&mut self, audience: Option<&str>, seconds: i64) -> anyhow::Result<String> {
            self.tokens.push((audience.map(str::to_string), seconds));
            Ok(format!("tok-{seconds}"))
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                         "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1", "serviceAccountName": "sa"}
        }))
        .unwrap()
    }

    fn fake() -> Fake {
        let mut f = Fake::default();
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA", "other": "o"}
        }))
        .unwrap();
        f.maps.insert("kube-root-ca.crt".into(), cm);
        let s = Secret {
            data: Some(BTreeMap::from([(
                "k".to_string(),
                ByteString(b"v".to_vec()),
            )])),
            ..Default::default()
        };
        f.secrets.insert("s".into(), s);
        f
    }

    #[tokio::test]
    async fn the_injected_volume() {
        let v: Volume = serde_json::from_value(json!({"name": "kube-api-access-abcde", "projected": {
            "defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}))
        .unwrap();
        let mut f = fake();
        let p = build(&pod(), &v, &mut f).await.unwrap();
        assert_eq!(plugin_of(&v), Some("kubernetes.io~projected"));
        let names: Vec<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(names, ["ca.crt", "namespace", "token"]);
        assert_eq!(p["token"].data, b"tok-3607");
        assert_eq!(p["namespace"].data, b"ns");
        assert_eq!(p["ca.crt"].data, b"CA");
        assert!(p.values().all(|f| f.mode == 0o644));
        assert_eq!(f.tokens, [(None, 3607)]);
    }

    #[tokio::test]
    async fn secret_and_config_map_volumes_modes_items_optional() {
        let mut f = fake();
        let v: Volume = serde_json::from_value(json!({"name": "s", "secret": {
            "secretName": "s", "defaultMode": 0o400}}))
        .unwrap();
        let p = build(&pod(), &v, &mut f).await.unwrap();
        assert_eq!(p["k"].mode, 0o400);
        let v: Volume = serde_json::from_value(json!({"name": "c", "configMap": {
            "name": "kube-root-ca.crt", "items": [{"key": "other", "path": "d/o", "mode": 0o600}]}})).unwrap();
        let p = build(&pod(), &v, &mut f).await.unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p["d/o"].mode, 0o600);
        let missing: Volume =
            serde_json::from_value(json!({"name": "m", "configMap": {"name": "nope"}})).unwrap();
        assert!(build(&pod(), &missing, &mut f).await.is_err());
        let optional: Volume = serde_json::from_value(
            json!({"name": "m", "configMap": {"name": "nope", "optional": true}}),
        )
        .unwrap();
        assert!(build(&pod(), &optional, &mut f).await.unwrap().is_empty());
        let bad_key: Volume = serde_json::from_value(json!({"name": "m", "secret": {"secretName": "s", "items": [{"key": "x", "path": "x"}]}})).unwrap();
        assert!(build(&pod(), &bad_key, &mut f).await.is_err());
    }

    #[test]
    fn downward_fields() {
        let p = pod();
        assert_eq!(field_value(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(field_value(&p, "spec.nodeName").unwrap(), "n1");
        assert_eq!(
            field_value(&p, "metadata.labels").unwrap(),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(field_value(&p, "metadata.labels['b']").unwrap(), "2");
        assert!(field_value(&p, "spec.nope").is_err());
    }
}
