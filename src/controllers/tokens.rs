//! Legacy token Secrets (type `kubernetes.io/service-account-token`): kube-controller-manager's
//! `serviceaccount-token` controller (`pkg/controller/serviceaccount/tokens_controller.go`;
//! `shared/reference/k8s-sa-token-facts.md` §5.1, §5.2).
//!
//! * A token Secret whose ServiceAccount is missing (by name, and by uid when the Secret
//!   names one) is deleted, with a uid precondition.
//! * One whose ServiceAccount exists is populated if needed: `ca.crt`, `namespace`, and a
//!   legacy token signed with the configured key; both annotations are set in the same
//!   update. A token already there is never signed again, even after a key change.
//! * When a ServiceAccount is deleted or recreated (new uid), its token Secrets go.
//! * When a token Secret is deleted, its name leaves the ServiceAccount's `.secrets`.
//! * With `auto_create_legacy_tokens` (emulating < 1.24), every ServiceAccount without a
//!   referenced token Secret gets `<sa>-token-<5 chars>`, appended to its `.secrets`.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{
    Action, Controller, ControllerConfig, ControllerError, Watch, annotation, name, namespace,
    set_meta_map, uid,
};
use crate::registry::selectors::FieldSelector;
use crate::registry::{
    DeleteOptions, EventType, ListOptions, Registry, RegistryError, Resource, meta_str,
    random_suffix, resources,
};
use crate::tokens::claims::LegacyClaims;
use crate::tokens::issuer::Signer;
use crate::wellknown;

/// What a queued event names. A Secret key carries the ServiceAccount it named, so that a
/// deleted Secret's reference can still be removed from that ServiceAccount
/// (tokens_controller.go `secretQueueKey`); a ServiceAccount key carries its uid, so that
/// a recreated ServiceAccount is told apart from the one whose tokens must go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TokenKey {
    Secret {
        namespace: String,
        name: String,
        uid: String,
        sa_name: String,
        /// Empty when the Secret does not name a uid yet.
        sa_uid: String,
    },
    ServiceAccount {
        namespace: String,
        name: String,
        uid: String,
    },
}

pub(crate) struct TokensController {
    registry: Registry,
    config: Arc<ControllerConfig>,
    /// The token signer TokenRequest uses too, over the configured key set.
    signer: Signer,
}

/// kube's `GenerateName` keeps base + suffix within 253 characters.
const MAX_GENERATED_BASE: usize = 253 - 5;

fn secrets() -> &'static Resource {
    resources::core("secrets")
}

fn service_accounts() -> &'static Resource {
    resources::core("serviceaccounts")
}

fn token_type_selector() -> String {
    format!("type={}", wellknown::SECRET_TYPE_SA_TOKEN)
}

fn is_token_secret(obj: &Value) -> bool {
    obj.get("type").and_then(Value::as_str) == Some(wellknown::SECRET_TYPE_SA_TOKEN)
}

/// `IsServiceAccountToken`: the type, the name annotation, and a uid annotation that is
/// empty or the ServiceAccount's.
fn is_token_of(secret: &Value, sa_name: &str, sa_uid: &str) -> bool {
    is_token_secret(secret)
        && annotation(secret, wellknown::ANNOTATION_SA_NAME) == Some(sa_name)
        && annotation(secret, wellknown::ANNOTATION_SA_UID)
            .is_none_or(|u| u.is_empty() || u == sa_uid)
}

/// The names in `sa.secrets`.
fn referenced(sa: &Value) -> Vec<&str> {
    sa.get("secrets")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

fn data_bytes(secret: &Value, key: &str) -> Vec<u8> {
    secret
        .get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default()
}

fn b64(bytes: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// What a Secret lacks (tokens_controller.go `secretUpdateNeeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Needs {
    ca: bool,
    namespace: bool,
    token: bool,
}

impl Needs {
    fn any(self) -> bool {
        self.ca || self.namespace || self.token
    }
}

impl TokensController {
    pub(crate) fn new(registry: Registry, config: Arc<ControllerConfig>) -> Self {
        let signer = Signer::new(config.keys.clone());
        TokensController {
            registry,
            config,
            signer,
        }
    }

    fn needs(&self, secret: &Value) -> Needs {
        let ca = self.config.ca_pem.as_bytes();
        Needs {
            ca: !ca.is_empty() && data_bytes(secret, wellknown::SECRET_KEY_CA_CRT) != ca,
            namespace: data_bytes(secret, wellknown::SECRET_KEY_NAMESPACE).is_empty(),
            token: data_bytes(secret, wellknown::SECRET_KEY_TOKEN).is_empty(),
        }
    }

    fn sign(
        &self,
        ns: &str,
        sa_name: &str,
        sa_uid: &str,
        secret_name: &str,
    ) -> Result<String, ControllerError> {
        let claims = LegacyClaims {
            namespace: ns.to_string(),
            service_account_name: sa_name.to_string(),
            service_account_uid: sa_uid.to_string(),
            secret_name: secret_name.to_string(),
        };
        self.signer
            .sign_legacy(&claims)
            .map_err(|e| ControllerError::Sign(e.to_string()))
    }

    async fn list_token_secrets(&self, ns: &str) -> Result<Vec<Value>, RegistryError> {
        let opts = ListOptions {
            field_selector: FieldSelector::parse(&token_type_selector(), secrets().field_selectors)
                .unwrap_or_default(),
            ..Default::default()
        };
        let list = self.registry.list(secrets(), Some(ns), &opts).await?;
        Ok(list.items.into_iter().filter(is_token_secret).collect())
    }

    /// The ServiceAccount by name, if it exists and its uid is `want_uid` (when not empty).
    async fn service_account(
        &self,
        ns: &str,
        sa_name: &str,
        want_uid: &str,
    ) -> Result<Option<Value>, RegistryError> {
        match self
            .registry
            .get(service_accounts(), Some(ns), sa_name)
            .await
        {
            Ok(sa) if want_uid.is_empty() || uid(&sa) == want_uid => Ok(Some(sa)),
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a Secret only if it is still the one with `secret_uid`. NotFound needs no
    /// retry (already gone), nor does Conflict (the uid precondition failed: a new Secret
    /// of that name, which its own event will bring here).
    async fn delete_token(
        &self,
        ns: &str,
        secret_name: &str,
        secret_uid: &str,
    ) -> Result<(), RegistryError> {
        let opts = DeleteOptions {
            precondition_uid: (!secret_uid.is_empty()).then(|| secret_uid.to_string()),
            ..Default::default()
        };
        match self
            .registry
            .delete(secrets(), Some(ns), secret_name, &opts)
            .await
        {
            Ok(_) | Err(RegistryError::NotFound { .. } | RegistryError::Conflict { .. }) => {
                tracing::debug!(
                    "deleted token secret {ns}/{secret_name}: its service account is gone"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The Secret of `key` is gone: drop its name from the ServiceAccount's `.secrets`.
    async fn secret_gone(
        &self,
        ns: &str,
        secret_name: &str,
        sa_name: &str,
        sa_uid: &str,
    ) -> Result<(), ControllerError> {
        if sa_name.is_empty() {
            return Ok(());
        }
        let Some(sa) = self.service_account(ns, sa_name, sa_uid).await? else {
            return Ok(());
        };
        if !referenced(&sa).contains(&secret_name) {
            return Ok(());
        }
        let sa_uid = uid(&sa).to_string();
        let removed = self
            .registry
            .update_with(service_accounts(), Some(ns), sa_name, None, false, |cur| {
                let mut next = cur.clone();
                // A recreated ServiceAccount never listed this Secret.
                if uid(cur) != sa_uid {
                    return Ok(next);
                }
                if let Some(refs) = next.get_mut("secrets").and_then(Value::as_array_mut) {
                    refs.retain(|r| r.get("name").and_then(Value::as_str) != Some(secret_name));
                }
                Ok(next)
            })
            .await;
        match removed {
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A token Secret that exists: delete it if its ServiceAccount does not, else populate it.
    async fn sync_secret(&self, secret: Value) -> Result<(), ControllerError> {
        let ns = namespace(&secret).to_string();
        let secret_name = name(&secret).to_string();
        let Some(sa_name) = annotation(&secret, wellknown::ANNOTATION_SA_NAME)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
        else {
            return Ok(());
        };
        let want_uid = annotation(&secret, wellknown::ANNOTATION_SA_UID).unwrap_or_default();
        let Some(sa) = self.service_account(&ns, &sa_name, want_uid).await? else {
            self.delete_token(&ns, &secret_name, uid(&secret)).await?;
            return Ok(());
        };
        self.populate(&sa, &secret).await
    }

    /// tokens_controller.go `generateTokenIfNeeded`, as one read-modify-write.
    async fn populate(&self, sa: &Value, secret: &Value) -> Result<(), ControllerError> {
        let needs = self.needs(secret);
        if !needs.any() {
            return Ok(());
        }
        let ns = namespace(secret).to_string();
        let secret_name = name(secret).to_string();
        let secret_uid = uid(secret).to_string();
        let (sa_name, sa_uid) = (name(sa).to_string(), uid(sa).to_string());
        let token = if needs.token {
            Some(self.sign(&ns, &sa_name, &sa_uid, &secret_name)?)
        } else {
            None
        };
        let ca = self.config.ca_pem.clone();
        let result = self
            .registry
            .update_with(secrets(), Some(&ns), &secret_name, None, false, |cur| {
                let needs = self.needs(cur);
                // Another Secret of that name, or one that lost its token since we read it:
                // its own event brings it back here.
                if uid(cur) != secret_uid || (needs.token && token.is_none()) {
                    return Err(RegistryError::Conflict {
                        resource: "secrets".into(),
                        name: secret_name.clone(),
                        message: "the secret changed while it was being populated".into(),
                    });
                }
                if !needs.any() {
                    return Ok(cur.clone());
                }
                let mut next = cur.clone();
                if !next.get("data").is_some_and(Value::is_object) {
                    next["data"] = Value::Object(Map::new());
                }
                if needs.ca {
                    next["data"][wellknown::SECRET_KEY_CA_CRT] = b64(ca.as_bytes());
                }
                if needs.namespace {
                    next["data"][wellknown::SECRET_KEY_NAMESPACE] = b64(ns.as_bytes());
                }
                if let (true, Some(t)) = (needs.token, &token) {
                    next["data"][wellknown::SECRET_KEY_TOKEN] = b64(t.as_bytes());
                }
                set_meta_map(
                    &mut next,
                    "annotations",
                    wellknown::ANNOTATION_SA_NAME,
                    &sa_name,
                );
                set_meta_map(
                    &mut next,
                    "annotations",
                    wellknown::ANNOTATION_SA_UID,
                    &sa_uid,
                );
                Ok(next)
            })
            .await;
        match result {
            // Conflict: changed by someone else; NotFound: deleted. Either way an event
            // follows, and the next reconcile starts from the new state.
            Ok(_) | Err(RegistryError::Conflict { .. } | RegistryError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The ServiceAccount `name` with `sa_uid` no longer exists: delete its token Secrets.
    /// Secrets naming no uid go too, unless a ServiceAccount of that name exists again
    /// (then they are the new one's, to be populated, not deleted).
    async fn delete_tokens(
        &self,
        ns: &str,
        sa_name: &str,
        sa_uid: &str,
        recreated: bool,
    ) -> Result<(), ControllerError> {
        let mut last_error = None;
        for secret in self.list_token_secrets(ns).await? {
            let named_uid = annotation(&secret, wellknown::ANNOTATION_SA_UID).unwrap_or_default();
            let ours = annotation(&secret, wellknown::ANNOTATION_SA_NAME) == Some(sa_name)
                && (named_uid == sa_uid || (named_uid.is_empty() && !recreated));
            if ours && let Err(e) = self.delete_token(ns, name(&secret), uid(&secret)).await {
                last_error = Some(e);
            }
        }
        match last_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// A new token Secret `secret_name` of the ServiceAccount, with its token, namespace and
    /// (when configured) CA.
    fn token_secret(
        &self,
        ns: &str,
        secret_name: &str,
        sa_name: &str,
        sa_uid: &str,
        token: &str,
    ) -> Value {
        let mut data = Map::new();
        data.insert(wellknown::SECRET_KEY_TOKEN.into(), b64(token.as_bytes()));
        data.insert(wellknown::SECRET_KEY_NAMESPACE.into(), b64(ns.as_bytes()));
        if !self.config.ca_pem.is_empty() {
            data.insert(
                wellknown::SECRET_KEY_CA_CRT.into(),
                b64(self.config.ca_pem.as_bytes()),
            );
        }
        json!({
            "metadata": {
                "name": secret_name,
                "annotations": {
                    wellknown::ANNOTATION_SA_NAME: sa_name,
                    wellknown::ANNOTATION_SA_UID: sa_uid,
                },
            },
            "type": wellknown::SECRET_TYPE_SA_TOKEN,
            "data": data,
        })
    }

    /// Appends `secret_name` to the `.secrets` of the ServiceAccount we read, checking its
    /// resourceVersion: any change since means our view is stale (a Conflict).
    async fn reference(&self, sa: &Value, secret_name: &str) -> Result<(), RegistryError> {
        let sa_rv = meta_str(sa, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        self.registry
            .update_with(
                service_accounts(),
                Some(namespace(sa)),
                name(sa),
                None,
                false,
                |cur| {
                    let mut next = cur.clone();
                    next["metadata"]["resourceVersion"] = Value::from(sa_rv.as_str());
                    let entry = json!({"name": secret_name});
                    match next.get_mut("secrets").and_then(Value::as_array_mut) {
                        Some(refs) => refs.push(entry),
                        None => next["secrets"] = json!([entry]),
                    }
                    Ok(next)
                },
            )
            .await
            .map(|_| ())
    }

    /// tokens_controller.go `ensureReferencedToken` (before 1.24): at least one token
    /// Secret of this ServiceAccount is listed in its `.secrets`.
    async fn ensure_referenced_token(&self, sa: &Value) -> Result<(), ControllerError> {
        let ns = namespace(sa).to_string();
        let (sa_name, sa_uid) = (name(sa).to_string(), uid(sa).to_string());
        let refs = referenced(sa);
        if !refs.is_empty() {
            let has = self
                .list_token_secrets(&ns)
                .await?
                .iter()
                .any(|s| is_token_of(s, &sa_name, &sa_uid) && refs.contains(&name(s)));
            if has {
                return Ok(());
            }
        }
        let mut base = format!("{sa_name}-token-");
        base.truncate(MAX_GENERATED_BASE);
        let secret_name = format!("{base}{}", random_suffix(5));
        let token = self.sign(&ns, &sa_name, &sa_uid, &secret_name)?;
        let body = self.token_secret(&ns, &secret_name, &sa_name, &sa_uid, &token);
        let created = match self
            .registry
            .create(secrets(), Some(&ns), body, false)
            .await
        {
            Ok(s) => s,
            // The namespace is gone or going (kube-controller-manager's tokens controller
            // skips a NamespaceTerminating refusal the same way).
            Err(RegistryError::NotFound { .. } | RegistryError::NamespaceTerminating { .. }) => {
                return Ok(());
            }
            // AlreadyExists (a suffix collision) and the rest: retried with a new name.
            Err(e) => return Err(e.into()),
        };
        let Err(e) = self.reference(sa, &secret_name).await else {
            return Ok(());
        };
        // The token cannot be referenced: take it away again.
        if let Err(del) = self.delete_token(&ns, &secret_name, uid(&created)).await {
            tracing::warn!("deleting unreferenced token secret {ns}/{secret_name}: {del}");
        }
        match e {
            // Conflict: the ServiceAccount changed, and its event brings us back.
            // NotFound: it is gone and needs no token.
            RegistryError::Conflict { .. } | RegistryError::NotFound { .. } => Ok(()),
            other => Err(other.into()),
        }
    }
}

#[async_trait::async_trait]
impl Controller for TokensController {
    type Key = TokenKey;

    fn name(&self) -> &'static str {
        "serviceaccount-token"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::all(service_accounts()),
            Watch::selected(secrets(), &token_type_selector()),
        ]
    }

    fn keys(&self, resource: &Resource, _: EventType, obj: &Value) -> Vec<TokenKey> {
        match resource.kind {
            "ServiceAccount" => vec![TokenKey::ServiceAccount {
                namespace: namespace(obj).to_string(),
                name: name(obj).to_string(),
                uid: uid(obj).to_string(),
            }],
            "Secret" if is_token_secret(obj) => {
                let sa_name = annotation(obj, wellknown::ANNOTATION_SA_NAME).unwrap_or_default();
                if sa_name.is_empty() {
                    return Vec::new();
                }
                vec![TokenKey::Secret {
                    namespace: namespace(obj).to_string(),
                    name: name(obj).to_string(),
                    uid: uid(obj).to_string(),
                    sa_name: sa_name.to_string(),
                    sa_uid: annotation(obj, wellknown::ANNOTATION_SA_UID)
                        .unwrap_or_default()
                        .to_string(),
                }]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&self, key: &TokenKey) -> Result<Action, ControllerError> {
        let done = match key {
            TokenKey::Secret {
                namespace: ns,
                name: secret_name,
                uid: secret_uid,
                sa_name,
                sa_uid,
            } => match self.registry.get(secrets(), Some(ns), secret_name).await {
                Ok(secret) if uid(&secret) == secret_uid && is_token_secret(&secret) => {
                    self.sync_secret(secret).await
                }
                Ok(_) | Err(RegistryError::NotFound { .. }) => {
                    self.secret_gone(ns, secret_name, sa_name, sa_uid).await
                }
                Err(e) => Err(e.into()),
            },
            TokenKey::ServiceAccount {
                namespace: ns,
                name: sa_name,
                uid: sa_uid,
            } => match self
                .registry
                .get(service_accounts(), Some(ns), sa_name)
                .await
            {
                Ok(sa) if uid(&sa) == sa_uid => {
                    if self.config.auto_create_legacy_tokens {
                        self.ensure_referenced_token(&sa).await
                    } else {
                        Ok(())
                    }
                }
                Ok(_) => self.delete_tokens(ns, sa_name, sa_uid, true).await,
                Err(RegistryError::NotFound { .. }) => {
                    self.delete_tokens(ns, sa_name, sa_uid, false).await
                }
                Err(e) => Err(e.into()),
            },
        };
        done.map(|()| Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::tokens::claims::LegacyClaims;
    // Only to check what the signer wrote: the controller itself never touches JWS.
    use crate::tokens::jws;

    fn controller(rig: &Rig) -> TokensController {
        TokensController::new(rig.registry.clone(), rig.config.clone())
    }

    fn auto_creating(rig: &Rig) -> TokensController {
        let config = ControllerConfig {
            auto_create_legacy_tokens: true,
            ..(*rig.config).clone()
        };
        TokensController::new(rig.registry.clone(), Arc::new(config))
    }

    fn data(obj: &Value, key: &str) -> String {
        String::from_utf8(data_bytes(obj, key)).unwrap()
    }

    fn key_of(c: &TokensController, plural: &str, obj: &Value) -> TokenKey {
        let mut keys = c.keys(resources::core(plural), EventType::Added, obj);
        assert_eq!(keys.len(), 1, "{obj}");
        keys.remove(0)
    }

    #[tokio::test]
    async fn a_bare_token_secret_is_populated() {
        let rig = rig().await;
        let c = controller(&rig);
        let sa = rig.service_account("default", "build-robot").await;
        let secret = rig
            .token_secret("default", "build-robot-secret", "build-robot")
            .await;
        c.reconcile(&key_of(&c, "secrets", &secret)).await.unwrap();
        let got = rig
            .get("secrets", Some("default"), "build-robot-secret")
            .await
            .unwrap();
        assert_eq!(data(&got, "ca.crt"), CA);
        assert_eq!(data(&got, "namespace"), "default");
        assert_eq!(
            got["metadata"]["annotations"],
            json!({"kubernetes.io/service-account.name": "build-robot",
                   "kubernetes.io/service-account.uid": sa["metadata"]["uid"]})
        );
        let token = data(&got, "token");
        let parsed = jws::decode(&token).unwrap();
        jws::verify(&parsed, &rig.config.keys.current()).unwrap();
        assert_eq!(
            LegacyClaims::from_json(&parsed.claims).unwrap(),
            LegacyClaims {
                namespace: "default".into(),
                service_account_name: "build-robot".into(),
                service_account_uid: uid(&sa).into(),
                secret_name: "build-robot-secret".into(),
            }
        );
        // Populated: a second pass writes nothing.
        c.reconcile(&key_of(&c, "secrets", &got)).await.unwrap();
        let again = rig
            .get("secrets", Some("default"), "build-robot-secret")
            .await
            .unwrap();
        assert_eq!(rv(&got), rv(&again));
    }

    #[tokio::test]
    async fn an_existing_token_is_never_signed_again() {
        let rig = rig().await;
        let c = controller(&rig);
        rig.service_account("default", "robot").await;
        let secret = rig
            .create(
                "secrets",
                Some("default"),
                json!({"metadata": {"name": "robot-token",
                        "annotations": {wellknown::ANNOTATION_SA_NAME: "robot"}},
                       "type": wellknown::SECRET_TYPE_SA_TOKEN,
                       "stringData": {"token": "kept-as-is", "ca.crt": "old CA"}}),
            )
            .await;
        c.reconcile(&key_of(&c, "secrets", &secret)).await.unwrap();
        let got = rig
            .get("secrets", Some("default"), "robot-token")
            .await
            .unwrap();
        assert_eq!(data(&got, "token"), "kept-as-is");
        assert_eq!(data(&got, "ca.crt"), CA, "a changed CA is written");
        assert_eq!(data(&got, "namespace"), "default");
        assert!(annotation(&got, wellknown::ANNOTATION_SA_UID).is_some());
    }

    #[tokio::test]
    async fn a_token_secret_without_its_service_account_is_deleted() {
        let rig = rig().await;
        let c = controller(&rig);
        let secret = rig.token_secret("default", "ghost-token", "ghost").await;
        c.reconcile(&key_of(&c, "secrets", &secret)).await.unwrap();
        assert!(
            rig.get("secrets", Some("default"), "ghost-token")
                .await
                .is_none()
        );

        // A ServiceAccount of that name but another uid does not count.
        rig.service_account("default", "robot").await;
        let stale = rig
            .create(
                "secrets",
                Some("default"),
                json!({"metadata": {"name": "robot-old-token", "annotations": {
                        wellknown::ANNOTATION_SA_NAME: "robot",
                        wellknown::ANNOTATION_SA_UID: "0000-old"}},
                       "type": wellknown::SECRET_TYPE_SA_TOKEN}),
            )
            .await;
        c.reconcile(&key_of(&c, "secrets", &stale)).await.unwrap();
        assert!(
            rig.get("secrets", Some("default"), "robot-old-token")
                .await
                .is_none()
        );
        // Other Secret types are none of its business.
        let opaque = rig
            .create(
                "secrets",
                Some("default"),
                json!({"metadata": {"name": "plain", "annotations": {wellknown::ANNOTATION_SA_NAME: "ghost"}}}),
            )
            .await;
        assert!(
            c.keys(resources::core("secrets"), EventType::Added, &opaque)
                .is_empty()
        );
    }

    #[tokio::test]
    async fn deleting_or_recreating_a_service_account_deletes_its_tokens() {
        let rig = rig().await;
        let c = controller(&rig);
        let sa = rig.service_account("default", "robot").await;
        let secret = rig.token_secret("default", "robot-token", "robot").await;
        c.reconcile(&key_of(&c, "secrets", &secret)).await.unwrap();
        rig.service_account("default", "bystander").await;
        let other = rig
            .token_secret("default", "bystander-token", "bystander")
            .await;
        c.reconcile(&key_of(&c, "secrets", &other)).await.unwrap();

        // Recreated under the same name: the populated token (old uid) goes; the
        // ServiceAccount's own event for its old uid is what triggers it.
        rig.delete("serviceaccounts", Some("default"), "robot")
            .await;
        let new_sa = rig.service_account("default", "robot").await;
        assert_ne!(uid(&new_sa), uid(&sa));
        c.reconcile(&key_of(&c, "serviceaccounts", &sa))
            .await
            .unwrap();
        assert!(
            rig.get("secrets", Some("default"), "robot-token")
                .await
                .is_none()
        );
        assert!(
            rig.get("secrets", Some("default"), "bystander-token")
                .await
                .is_some()
        );
        // The new ServiceAccount's key finds it alive and leaves everything be.
        c.reconcile(&key_of(&c, "serviceaccounts", &new_sa))
            .await
            .unwrap();
        assert!(
            rig.get("secrets", Some("default"), "bystander-token")
                .await
                .is_some()
        );

        // Deleted for good: tokens naming it, with or without a uid, go.
        let unpopulated = rig.token_secret("default", "robot-token-2", "robot").await;
        assert!(annotation(&unpopulated, wellknown::ANNOTATION_SA_UID).is_none());
        rig.delete("serviceaccounts", Some("default"), "robot")
            .await;
        c.reconcile(&key_of(&c, "serviceaccounts", &new_sa))
            .await
            .unwrap();
        assert!(
            rig.get("secrets", Some("default"), "robot-token-2")
                .await
                .is_none()
        );
        assert!(
            rig.get("secrets", Some("default"), "bystander-token")
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_deleted_token_secret_leaves_sa_secrets() {
        let rig = rig().await;
        let c = controller(&rig);
        rig.create(
            "serviceaccounts",
            Some("default"),
            json!({"metadata": {"name": "robot"},
                   "secrets": [{"name": "robot-token"}, {"name": "other"}]}),
        )
        .await;
        let secret = rig.token_secret("default", "robot-token", "robot").await;
        let key = key_of(&c, "secrets", &secret);
        c.reconcile(&key).await.unwrap();
        rig.delete("secrets", Some("default"), "robot-token").await;
        c.reconcile(&key).await.unwrap();
        let sa = rig
            .get("serviceaccounts", Some("default"), "robot")
            .await
            .unwrap();
        assert_eq!(sa["secrets"], json!([{"name": "other"}]));
        // Nothing left to remove: no write.
        c.reconcile(&key).await.unwrap();
        let again = rig
            .get("serviceaccounts", Some("default"), "robot")
            .await
            .unwrap();
        assert_eq!(rv(&sa), rv(&again));
    }

    #[tokio::test]
    async fn before_1_24_every_service_account_gets_a_referenced_token() {
        let rig = rig().await;
        let c = auto_creating(&rig);
        let sa = rig.service_account("default", "example-sa").await;
        c.reconcile(&key_of(&c, "serviceaccounts", &sa))
            .await
            .unwrap();
        let sa = rig
            .get("serviceaccounts", Some("default"), "example-sa")
            .await
            .unwrap();
        let refs = referenced(&sa);
        assert_eq!(refs.len(), 1, "{sa}");
        let secret_name = refs[0].to_string();
        let suffix = secret_name.strip_prefix("example-sa-token-").unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(
            suffix
                .chars()
                .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
        );
        let secret = rig
            .get("secrets", Some("default"), &secret_name)
            .await
            .unwrap();
        assert!(is_token_of(&secret, "example-sa", uid(&sa)));
        assert_eq!(
            annotation(&secret, wellknown::ANNOTATION_SA_UID),
            Some(uid(&sa))
        );
        assert_eq!(data(&secret, "ca.crt"), CA);
        assert_eq!(data(&secret, "namespace"), "default");
        let claims = jws::decode(&data(&secret, "token")).unwrap().claims;
        assert_eq!(
            LegacyClaims::from_json(&claims).unwrap().secret_name,
            secret_name
        );
        // Idempotent: referenced already, no second token.
        c.reconcile(&key_of(&c, "serviceaccounts", &sa))
            .await
            .unwrap();
        assert_eq!(c.list_token_secrets("default").await.unwrap().len(), 1);
        let again = rig
            .get("serviceaccounts", Some("default"), "example-sa")
            .await
            .unwrap();
        assert_eq!(rv(&sa), rv(&again));
        // The Secret's own event then finds nothing to do.
        c.reconcile(&key_of(&c, "secrets", &secret)).await.unwrap();
        assert_eq!(
            rv(&secret),
            rv(&rig
                .get("secrets", Some("default"), &secret_name)
                .await
                .unwrap())
        );
    }

    #[tokio::test]
    async fn auto_creation_gives_up_on_a_stale_service_account() {
        let rig = rig().await;
        let c = auto_creating(&rig);
        let sa = rig.service_account("default", "robot").await;
        // Changed after our read: the append is refused and the new Secret removed.
        rig.update("serviceaccounts", Some("default"), "robot", |s| {
            s["metadata"]["labels"] = json!({"changed": "yes"});
        })
        .await;
        c.ensure_referenced_token(&sa).await.unwrap();
        assert!(c.list_token_secrets("default").await.unwrap().is_empty());
        let live = rig
            .get("serviceaccounts", Some("default"), "robot")
            .await
            .unwrap();
        assert!(referenced(&live).is_empty());
    }

    #[tokio::test]
    async fn without_auto_creation_service_accounts_get_no_token() {
        let rig = rig().await;
        let c = controller(&rig);
        let sa = rig.service_account("default", "robot").await;
        c.reconcile(&key_of(&c, "serviceaccounts", &sa))
            .await
            .unwrap();
        assert!(c.list_token_secrets("default").await.unwrap().is_empty());
    }

    #[test]
    fn generated_names_stay_within_253_characters() {
        let mut base = format!("{}-token-", "a".repeat(253));
        base.truncate(MAX_GENERATED_BASE);
        assert_eq!(format!("{base}{}", random_suffix(5)).len(), 253);
    }
}
