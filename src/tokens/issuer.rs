//! The one signer of service-account tokens, and TokenRequest: issuing bound service-account
//! tokens (`POST .../serviceaccounts/{name}/token`), in the order of kube-apiserver's
//! `pkg/registry/core/serviceaccount/storage/token.go` (see
//! `shared/reference/k8s-sa-token-facts.md` §4): look up the ServiceAccount, validate,
//! resolve the bound object, let `tokens::claims` apply the lifetime rules and write the
//! claims, sign.
//!
//! [`Signer`] (jwt.go's `TokenGenerator`) signs both bound tokens and the legacy Secret tokens
//! of the token controller, so the signing key is reached in one place. [`Issuer`] does the
//! lookups and the error texts of each TokenRequest step; every lifetime rule and constant
//! lives in `tokens::claims`, which is pure. It knows no HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::Resource;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::Value;

use super::claims::{
    self, Binding, BoundClaims, BoundRequest, BoundToken, ExpirationError, LegacyClaims, NodeRef,
    ObjectRef,
};
use super::jws;
use super::keyring::Keyring;
use super::lookup::{self, Kind, ObjectLookup};
use crate::clock::SharedClock;
use crate::registry::RegistryError;
use crate::registry::validation::FieldError;
use crate::wellknown;

use super::claims::IssuerConfig;

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    #[error("no service-account signing key is configured")]
    NoKey,
    #[error(transparent)]
    Jws(#[from] jws::JwsError),
}

/// Signs service-account tokens with the key set's signing key (jwt.go `JWTTokenGenerator`),
/// for the TokenRequest issuer and the legacy token controller alike. It takes typed claims
/// only, so nothing but a token payload is ever signed with the key.
#[derive(Clone)]
pub(crate) struct Signer {
    keys: Arc<Keyring>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    pub(crate) fn new(keys: Arc<Keyring>) -> Self {
        Signer { keys }
    }

    /// Whether a signing key is configured (verification-only key sets have none).
    pub(crate) fn can_sign(&self) -> bool {
        self.keys.current().signing().is_some()
    }

    /// A bound (TokenRequest) token.
    pub(crate) fn sign_bound(&self, claims: &BoundClaims) -> Result<String, SignError> {
        self.sign(&claims.to_json())
    }

    /// A legacy Secret token (tokens_controller.go `generateTokenIfNeeded`).
    pub(crate) fn sign_legacy(&self, claims: &LegacyClaims) -> Result<String, SignError> {
        self.sign(&claims.to_json())
    }

    fn sign(&self, payload: &Value) -> Result<String, SignError> {
        let keys = self.keys.current();
        let key = keys.signing().ok_or(SignError::NoKey)?;
        Ok(jws::sign(key, payload)?)
    }
}

/// A freshly issued token and what the response carries besides it.
pub(crate) struct Issued {
    /// The TokenRequest to send back (with `status.token`).
    pub(crate) response: TokenRequest,
    pub(crate) warnings: Vec<String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

impl std::fmt::Debug for Issued {
    // The response holds the token itself: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("response", &"<TokenRequest with a token, redacted>")
            .field("warnings", &self.warnings)
            .field("annotations", &self.annotations)
            .finish()
    }
}

/// Issues bound tokens (token.go `TokenREST`).
pub(crate) struct Issuer {
    config: IssuerConfig,
    signer: Signer,
    clock: SharedClock,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn invalid(causes: Vec<FieldError>) -> RegistryError {
    RegistryError::Invalid {
        kind: <TokenRequest as Resource>::KIND.into(),
        group: <TokenRequest as Resource>::GROUP.into(),
        name: String::new(),
        causes,
    }
}

fn expiration_invalid(e: ExpirationError) -> RegistryError {
    invalid(vec![FieldError::invalid(
        "spec.expirationSeconds",
        Value::from(e.requested()),
        e.to_string(),
    )])
}

fn not_found(resource: &str, name: &str) -> RegistryError {
    RegistryError::NotFound {
        resource: resource.to_string(),
        name: name.to_string(),
    }
}

fn lookup_error(e: lookup::LookupError) -> RegistryError {
    RegistryError::Internal(e.to_string())
}

/// Steps 1–2: the request may name the ServiceAccount, but only the one in the URL.
fn check_names(req: &TokenRequest, namespace: &str, name: &str) -> Result<(), RegistryError> {
    let meta = &req.metadata;
    for (field, given, want) in [
        ("name", &meta.name, name),
        ("namespace", &meta.namespace, namespace),
    ] {
        if let Some(v) = given.as_deref().filter(|s| !s.is_empty())
            && v != want
        {
            return Err(invalid(vec![FieldError::invalid(
                format!("metadata.{field}"),
                Value::from(v),
                format!("must match the service account {field} if specified"),
            )]));
        }
    }
    Ok(())
}

/// Step 12's response: the spec as defaulted and shortened, the status with the token and
/// the expiry the response reports (never the extended one).
fn response(
    namespace: &str,
    name: &str,
    token: &BoundToken,
    signed: String,
    bound_ref: Option<BoundObjectReference>,
) -> Result<TokenRequest, RegistryError> {
    let at = |seconds: i64| {
        jiff::Timestamp::from_second(seconds)
            .map(Time)
            .map_err(|e| RegistryError::Internal(e.to_string()))
    };
    let now = token.claims.issued_at;
    Ok(TokenRequest {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            creation_timestamp: Some(at(now)?),
            ..ObjectMeta::default()
        },
        spec: Some(TokenRequestSpec {
            audiences: Some(token.claims.audiences.clone()),
            expiration_seconds: Some(token.expiration_seconds),
            bound_object_ref: bound_ref,
            attestations: None,
        }),
        status: Some(TokenRequestStatus {
            token: Some(signed),
            expiration_timestamp: Some(at(now + token.expiration_seconds)?),
        }),
    })
}

/// Step 9's kinds: only Pod, Secret and Node of the core group; kube-apiserver ignores the
/// version, but names it in the error.
fn bound_kind(kind_name: &str, api_version: &str) -> Result<Kind, RegistryError> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    match (group, kind_name) {
        ("", "Pod") => Ok(Kind::Pod),
        ("", "Secret") => Ok(Kind::Secret),
        ("", "Node") => Ok(Kind::Node),
        _ => {
            let gvk = if group.is_empty() {
                format!("/{version}, Kind={kind_name}")
            } else {
                format!("{group}/{version}, Kind={kind_name}")
            };
            Err(RegistryError::BadRequest(format!(
                "cannot bind token to object of type {gvk}"
            )))
        }
    }
}

impl Issuer {
    pub(crate) fn new(config: IssuerConfig, keys: Arc<Keyring>, clock: SharedClock) -> Self {
        Issuer {
            config,
            signer: Signer::new(keys),
            clock,
        }
    }

    /// Handles one TokenRequest for ServiceAccount `namespace/name`.
    pub(crate) async fn request(
        &self,
        objects: &dyn ObjectLookup,
        namespace: &str,
        name: &str,
        req: &TokenRequest,
    ) -> Result<Issued, RegistryError> {
        // Without a key nothing can be issued; say so before any validation.
        if !self.signer.can_sign() {
            return Err(RegistryError::Internal(SignError::NoKey.to_string()));
        }
        check_names(req, namespace, name)?;
        // 3. The ServiceAccount must exist.
        let sa = objects
            .get(Kind::ServiceAccount, namespace, name)
            .await
            .map_err(lookup_error)?
            .ok_or_else(|| not_found(Kind::ServiceAccount.plural(), name))?;
        // 5–7. Defaults and static validation.
        let spec = req.spec.clone().unwrap_or_default();
        let audiences = claims::request_audiences(&self.config, spec.audiences.unwrap_or_default());
        let expiration_seconds =
            claims::requested_expiration(&self.config, spec.expiration_seconds)
                .map_err(expiration_invalid)?;
        // 9. The bound object.
        let binding = match &spec.bound_object_ref {
            Some(r) => self.bind(objects, namespace, name, r).await?,
            None => Binding::default(),
        };
        // 10–11. The lifetime rules and the claims.
        let jti = uuid::Uuid::new_v4().to_string();
        let request = BoundRequest {
            namespace: namespace.to_string(),
            service_account: ObjectRef {
                name: name.to_string(),
                uid: lookup::uid(&sa).to_string(),
            },
            audiences,
            expiration_seconds,
            binding,
        };
        let token = claims::bound_token(
            &self.config,
            request,
            self.clock.now().as_second(),
            jti.clone(),
        );
        // 12. Sign.
        let signed = self
            .signer
            .sign_bound(&token.claims)
            .map_err(|e| RegistryError::Internal(e.to_string()))?;
        let response = response(namespace, name, &token, signed, spec.bound_object_ref)?;
        Ok(Issued {
            response,
            warnings: token.warnings,
            // token.go: the audit log names the token by its jti.
            annotations: BTreeMap::from([(
                wellknown::AUDIT_ISSUED_CREDENTIAL_ID.to_string(),
                format!("JTI={jti}"),
            )]),
        })
    }

    /// Step 9: resolves `boundObjectRef` to the objects the token names. The object must
    /// exist and, when the reference names a uid, be that one.
    async fn bind(
        &self,
        objects: &dyn ObjectLookup,
        namespace: &str,
        sa_name: &str,
        r: &BoundObjectReference,
    ) -> Result<Binding, RegistryError> {
        fn s(field: &Option<String>) -> &str {
            field.as_deref().unwrap_or_default()
        }
        let (kind_name, name, want_uid) = (s(&r.kind), s(&r.name), s(&r.uid));
        let kind = bound_kind(kind_name, s(&r.api_version))?;
        let obj = objects
            .get(kind, namespace, name)
            .await
            .map_err(lookup_error)?
            .ok_or_else(|| not_found(kind.plural(), name))?;
        let live_uid = lookup::uid(&obj).to_string();
        if !want_uid.is_empty() && want_uid != live_uid {
            return Err(RegistryError::Conflict {
                resource: kind_name.to_string(),
                name: name.to_string(),
                message: format!(
                    "Operation cannot be fulfilled on {kind_name} {name:?}: the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            });
        }
        let me = ObjectRef {
            name: name.to_string(),
            uid: live_uid,
        };
        match kind {
            Kind::Pod => pod_binding(objects, sa_name, &obj, me).await,
            Kind::Secret => Ok(Binding {
                secret: Some(me),
                ..Binding::default()
            }),
            Kind::Node => Ok(Binding {
                node: Some(NodeRef {
                    name: me.name,
                    uid: Some(me.uid),
                }),
                ..Binding::default()
            }),
            Kind::ServiceAccount => Ok(Binding::default()),
        }
    }
}

/// A pod runs as the token's ServiceAccount; a scheduled pod's token also names its node,
/// by name only when the Node is missing.
async fn pod_binding(
    objects: &dyn ObjectLookup,
    sa_name: &str,
    pod: &Value,
    me: ObjectRef,
) -> Result<Binding, RegistryError> {
    let pod_sa = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or(wellknown::DEFAULT_SERVICE_ACCOUNT);
    if pod_sa != sa_name {
        return Err(RegistryError::BadRequest(format!(
            "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
        )));
    }
    let mut binding = Binding::default();
    if let Some(node_name) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        let node = objects
            .get(Kind::Node, "", node_name)
            .await
            .map_err(lookup_error)?;
        binding.node = Some(NodeRef {
            name: node_name.to_string(),
            uid: node
                .map(|n| lookup::uid(&n).to_string())
                .filter(|u| !u.is_empty()),
        });
    }
    binding.pod = Some(me);
    Ok(binding)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::tokens::keys::{KeySet, SigningKey, generate_rsa_2048_pem};
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A map of objects standing in for the registry.
    #[derive(Default)]
    pub(crate) struct MapLookup(pub(crate) Mutex<HashMap<(Kind, String, String), Value>>);

    impl MapLookup {
        pub(crate) fn put(&self, kind: Kind, ns: &str, name: &str, obj: Value) {
            let ns = if kind == Kind::Node { "" } else { ns };
            self.0
                .lock()
                .unwrap()
                .insert((kind, ns.to_string(), name.to_string()), obj);
        }
        pub(crate) fn remove(&self, kind: Kind, ns: &str, name: &str) {
            let ns = if kind == Kind::Node { "" } else { ns };
            self.0
                .lock()
                .unwrap()
                .remove(&(kind, ns.to_string(), name.to_string()));
        }
    }

    #[async_trait::async_trait]
    impl ObjectLookup for MapLookup {
        async fn get(
            &self,
            kind: Kind,
            ns: &str,
            name: &str,
        ) -> Result<Option<Value>, lookup::LookupError> {
            let ns = if kind == Kind::Node { "" } else { ns };
            Ok(self
                .0
                .lock()
                .unwrap()
                .get(&(kind, ns.to_string(), name.to_string()))
                .cloned())
        }
    }

    pub(crate) const NOW: i64 = 1_795_392_244;

    pub(crate) fn setup(max: Option<i64>) -> (Issuer, MapLookup, Arc<Keyring>) {
        let key = SigningKey::from_pem(generate_rsa_2048_pem().unwrap().as_bytes()).unwrap();
        let keys = Keyring::new(KeySet::new(Some(key), vec![]));
        let config = IssuerConfig {
            issuers: vec!["https://kubernetes.default.svc".into()],
            api_audiences: vec!["https://kubernetes.default.svc".into()],
            max_expiration_seconds: max,
            extend_expiration: true,
            min_expiration_seconds: wellknown::MIN_TOKEN_EXPIRATION_SECONDS,
        };
        let issuer = Issuer::new(config, keys.clone(), FakeClock::at(NOW));
        let objects = MapLookup::default();
        objects.put(
            Kind::ServiceAccount,
            "default",
            "example-sa",
            json!({"metadata": {"name": "example-sa", "uid": "sa-uid"}}),
        );
        objects.put(Kind::Pod, "default", "p1", json!({"metadata": {"name": "p1", "uid": "pod-uid"}, "spec": {"serviceAccountName": "example-sa", "nodeName": "node-a"}}));
        objects.put(
            Kind::Node,
            "",
            "node-a",
            json!({"metadata": {"name": "node-a", "uid": "node-uid"}}),
        );
        objects.put(
            Kind::Secret,
            "default",
            "s1",
            json!({"metadata": {"name": "s1", "uid": "secret-uid"}}),
        );
        (issuer, objects, keys)
    }

    /// The issued token with the response as JSON, for tests that write requests and read
    /// responses as clients do.
    pub(crate) struct IssuedJson {
        pub(crate) response: Value,
        pub(crate) warnings: Vec<String>,
        pub(crate) annotations: BTreeMap<String, String>,
    }

    impl std::fmt::Debug for IssuedJson {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("IssuedJson").finish_non_exhaustive()
        }
    }

    impl Issuer {
        pub(crate) async fn request_json(
            &self,
            objects: &dyn ObjectLookup,
            namespace: &str,
            name: &str,
            body: &Value,
        ) -> Result<IssuedJson, RegistryError> {
            let req: TokenRequest = serde_json::from_value(body.clone()).unwrap();
            let out = self.request(objects, namespace, name, &req).await?;
            Ok(IssuedJson {
                response: serde_json::to_value(&out.response).unwrap(),
                warnings: out.warnings,
                annotations: out.annotations,
            })
        }
    }

    fn payload(resp: &Value) -> Value {
        let token = resp["status"]["token"].as_str().unwrap();
        jws::decode(token).unwrap().claims
    }

    #[tokio::test]
    async fn defaults_to_an_hour_and_the_api_audiences() {
        let (issuer, objects, keys) = setup(None);
        let out = issuer
            .request_json(&objects, "default", "example-sa", &json!({"spec": {}}))
            .await
            .unwrap();
        let r = &out.response;
        assert_eq!(r["spec"]["expirationSeconds"], 3600);
        assert_eq!(
            r["spec"]["audiences"],
            json!(["https://kubernetes.default.svc"])
        );
        assert_eq!(r["spec"]["boundObjectRef"], Value::Null);
        assert_eq!(r["status"]["expirationTimestamp"], "2026-11-23T01:04:04Z");
        let token = jws::decode(r["status"]["token"].as_str().unwrap()).unwrap();
        jws::verify(&token, &keys.current()).unwrap();
        let c = &token.claims;
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            3600
        );
        assert_eq!(c["sub"], "system:serviceaccount:default:example-sa");
        assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert!(c["kubernetes.io"].get("warnafter").is_none());
        let jti = c["jti"].as_str().unwrap();
        assert_eq!(
            out.annotations[wellknown::AUDIT_ISSUED_CREDENTIAL_ID],
            format!("JTI={jti}")
        );
    }

    #[tokio::test]
    async fn debug_never_prints_the_token() {
        let (issuer, objects, _) = setup(None);
        let req: TokenRequest = serde_json::from_value(json!({"spec": {}})).unwrap();
        let out = issuer
            .request(&objects, "default", "example-sa", &req)
            .await
            .unwrap();
        let token = out.response.status.as_ref().unwrap().token.clone().unwrap();
        let shown = format!("{out:?}");
        assert!(!shown.contains(&token) && !shown.contains("eyJ"), "{shown}");
    }

    #[tokio::test]
    async fn validation_messages() {
        let (issuer, objects, _) = setup(None);
        let err = issuer
            .request_json(
                &objects,
                "default",
                "example-sa",
                &json!({"spec": {"expirationSeconds": 60}}),
            )
            .await
            .unwrap_err();
        match err {
            RegistryError::Invalid {
                kind,
                group,
                name,
                causes,
            } => {
                assert_eq!(
                    (kind.as_str(), group.as_str(), name.as_str()),
                    ("TokenRequest", "authentication.k8s.io", "")
                );
                assert_eq!(
                    causes[0].to_string(),
                    "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
                );
            }
            other => panic!("{other:?}"),
        }
        let err = issuer
            .request_json(&objects, "default", "nope", &json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "serviceaccounts \"nope\" not found");
        let big = json!({"spec": {"expirationSeconds": 4_294_967_297_i64}});
        assert!(matches!(
            issuer
                .request_json(&objects, "default", "example-sa", &big)
                .await,
            Err(RegistryError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn pod_binding_names_the_node_and_checks_the_account() {
        let (issuer, objects, _) = setup(None);
        let body =
            json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1"}}});
        let out = issuer
            .request_json(&objects, "default", "example-sa", &body)
            .await
            .unwrap();
        let k = &payload(&out.response)["kubernetes.io"];
        assert_eq!(k["pod"], json!({"name": "p1", "uid": "pod-uid"}));
        assert_eq!(k["node"], json!({"name": "node-a", "uid": "node-uid"}));
        objects.remove(Kind::Node, "", "node-a");
        let out = issuer
            .request_json(&objects, "default", "example-sa", &body)
            .await
            .unwrap();
        assert_eq!(
            payload(&out.response)["kubernetes.io"]["node"],
            json!({"name": "node-a"})
        );
        objects.put(
            Kind::ServiceAccount,
            "default",
            "other",
            json!({"metadata": {"name": "other", "uid": "o"}}),
        );
        let err = issuer
            .request_json(&objects, "default", "other", &body)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot bind token for serviceaccount \"other\" to pod running with different serviceaccount name."
        );
        let wrong_uid = json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1", "uid": "old"}}});
        let err = issuer
            .request_json(&objects, "default", "example-sa", &wrong_uid)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Conflict { .. }), "{err:?}");
        let missing = json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "nope"}}});
        assert_eq!(
            issuer
                .request_json(&objects, "default", "example-sa", &missing)
                .await
                .unwrap_err()
                .to_string(),
            "pods \"nope\" not found"
        );
        let deploy = json!({"spec": {"boundObjectRef": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "d"}}});
        assert_eq!(
            issuer
                .request_json(&objects, "default", "example-sa", &deploy)
                .await
                .unwrap_err()
                .to_string(),
            "cannot bind token to object of type apps/v1, Kind=Deployment"
        );
    }

    #[tokio::test]
    async fn secret_and_node_bindings() {
        let (issuer, objects, _) = setup(None);
        let body = json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s1"}}});
        let out = issuer
            .request_json(&objects, "default", "example-sa", &body)
            .await
            .unwrap();
        assert_eq!(
            payload(&out.response)["kubernetes.io"]["secret"],
            json!({"name": "s1", "uid": "secret-uid"})
        );
        let body = json!({"spec": {"boundObjectRef": {"kind": "Node", "apiVersion": "v1", "name": "node-a"}}});
        let out = issuer
            .request_json(&objects, "default", "example-sa", &body)
            .await
            .unwrap();
        assert_eq!(
            payload(&out.response)["kubernetes.io"]["node"],
            json!({"name": "node-a", "uid": "node-uid"})
        );
    }

    #[tokio::test]
    async fn the_admission_token_is_extended_for_a_year() {
        let (issuer, objects, _) = setup(None);
        let pod = json!({"kind": "Pod", "apiVersion": "v1", "name": "p1"});
        let body = json!({"spec": {"expirationSeconds": 3607, "boundObjectRef": pod}});
        let out = issuer
            .request_json(&objects, "default", "example-sa", &body)
            .await
            .unwrap();
        let c = payload(&out.response);
        assert_eq!(
            c["exp"].as_i64().unwrap() - NOW,
            wellknown::TOKEN_EXPIRATION_EXTENSION_SECONDS
        );
        assert_eq!(c["kubernetes.io"]["warnafter"], NOW + 3607);
        // The status still says 3607 s, which is what kubelet refreshes on.
        assert_eq!(
            out.response["status"]["expirationTimestamp"],
            "2026-11-23T01:04:11Z"
        );
        // Not pod-bound, another lifetime or a foreign audience: no extension.
        for body in [
            json!({"spec": {"expirationSeconds": 3607}}),
            json!({"spec": {"expirationSeconds": 3608, "boundObjectRef": pod}}),
            json!({"spec": {"expirationSeconds": 3607, "boundObjectRef": pod, "audiences": ["vault"]}}),
        ] {
            let out = issuer
                .request_json(&objects, "default", "example-sa", &body)
                .await
                .unwrap();
            let c = payload(&out.response);
            assert!(c["exp"].as_i64().unwrap() - NOW <= 3608, "{body}");
            assert!(c["kubernetes.io"].get("warnafter").is_none());
        }
    }

    #[tokio::test]
    async fn the_maximum_shortens_with_a_warning() {
        let (issuer, objects, _) = setup(Some(7200));
        let out = issuer
            .request_json(
                &objects,
                "default",
                "example-sa",
                &json!({"spec": {"expirationSeconds": 86400}}),
            )
            .await
            .unwrap();
        assert_eq!(out.response["spec"]["expirationSeconds"], 7200);
        assert_eq!(
            out.warnings,
            vec!["requested expiration of 86400 seconds shortened to 7200 seconds"]
        );
        let pod = json!({"kind": "Pod", "apiVersion": "v1", "name": "p1"});
        let out = issuer
            .request_json(
                &objects,
                "default",
                "example-sa",
                &json!({"spec": {"expirationSeconds": 3607, "boundObjectRef": pod}}),
            )
            .await
            .unwrap();
        let c = payload(&out.response);
        assert_eq!(
            c["exp"].as_i64().unwrap() - NOW,
            7200,
            "the extension is capped by the maximum"
        );
    }

    #[tokio::test]
    async fn body_may_not_name_another_account() {
        let (issuer, objects, _) = setup(None);
        let err = issuer
            .request_json(
                &objects,
                "default",
                "example-sa",
                &json!({"metadata": {"name": "other"}}),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Invalid { .. }));
        assert!(
            issuer
                .request_json(
                    &objects,
                    "default",
                    "example-sa",
                    &json!({"metadata": {"name": "", "namespace": ""}})
                )
                .await
                .is_ok()
        );
    }
}
