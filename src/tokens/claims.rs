//! Service-account token claims: every lifetime rule of a TokenRequest (the one-hour default,
//! the 10-minute floor, the 2^32 s cap, shortening to `--service-account-max-token-expiration`
//! with its warning, the one-year extension of the 3607 s admission token with `warnafter`),
//! building the payload of bound (TokenRequest) and legacy (Secret) tokens exactly as
//! Kubernetes writes them, reading them back with the checks the authenticators make, and the
//! time checks with their 60 s leeway.
//!
//! Pure: no I/O, no clock and no randomness (`now` and `jti` are passed in, so the claims of a
//! request are exact in tests), no lookups of objects (the issuer resolves the bound object,
//! the authenticator looks up what `from_json` returns), no signing (`tokens::issuer`).
//!
//! Mirrors the lifetime steps of `pkg/registry/core/serviceaccount/storage/token.go`
//! (`TokenREST.Create`), `pkg/serviceaccount/claims.go` (`Claims`, `validator.Validate` time checks),
//! `pkg/serviceaccount/legacy.go` (`LegacyClaims`, `legacyValidator.Validate`),
//! `staging/src/k8s.io/apiserver/pkg/authentication/serviceaccount/util.go`
//! (`MakeUsername`, `SplitUsername`) and go-jose's `jwt.Claims` (audience and NumericDate
//! decoding, `ValidateWithLeeway`). `shared/reference/k8s-sa-token-facts.md` §1–3.

use serde_json::{Map, Value};

use crate::wellknown::{
    ADMISSION_TOKEN_EXPIRATION_SECONDS, DEFAULT_TOKEN_EXPIRATION_SECONDS,
    MAX_TOKEN_EXPIRATION_SECONDS, SERVICE_ACCOUNT_USER_PREFIX, TOKEN_EXPIRATION_EXTENSION_SECONDS,
};

/// `iss` of legacy Secret tokens (legacy.go `LegacyIssuer`).
pub(crate) const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// go-jose `jwt.DefaultLeeway`, used by claims.go for exp/nbf/iat and deletion checks.
pub(crate) const LEEWAY_SECONDS: i64 = 60;

/// The private claim object of bound tokens.
const PRIVATE_CLAIM: &str = "kubernetes.io";
const LEGACY_NAMESPACE: &str = "kubernetes.io/serviceaccount/namespace";
const LEGACY_SECRET_NAME: &str = "kubernetes.io/serviceaccount/secret.name";
const LEGACY_SA_NAME: &str = "kubernetes.io/serviceaccount/service-account.name";
const LEGACY_SA_UID: &str = "kubernetes.io/serviceaccount/service-account.uid";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectRef {
    pub(crate) name: String,
    pub(crate) uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRef {
    pub(crate) name: String,
    /// None when the pod's node was not found at issue time (claims carry the name only).
    pub(crate) uid: Option<String>,
}

/// Issuance settings (kube-apiserver's `--service-account-*` and `--api-audiences` flags):
/// what the lifetime and audience rules below read.
#[derive(Debug, Clone)]
pub(crate) struct IssuerConfig {
    /// Every accepted issuer; the first one signs.
    pub(crate) issuers: Vec<String>,
    /// `--api-audiences`: the default audiences of a token and the audiences requests need.
    pub(crate) api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration` in seconds (None: no maximum).
    pub(crate) max_expiration_seconds: Option<i64>,
    /// `--service-account-extend-token-expiration`.
    pub(crate) extend_expiration: bool,
    /// The shortest lifetime a request may ask for: 600 s, lower only under
    /// `--testing-min-token-expiration`.
    pub(crate) min_expiration_seconds: i64,
}

/// Why a requested lifetime is refused (`ValidateTokenRequest`), with Kubernetes' texts; the
/// issuer reports it as `spec.expirationSeconds: Invalid value: <n>: <text>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExpirationError {
    #[error("may not specify a duration less than 10 minutes")]
    TooShort(i64),
    #[error("may not specify a duration larger than 2^32 seconds")]
    TooLong(i64),
}

impl ExpirationError {
    /// The refused value, for the field error.
    pub(crate) fn requested(self) -> i64 {
        match self {
            ExpirationError::TooShort(n) | ExpirationError::TooLong(n) => n,
        }
    }
}

/// token.go steps 6–7: one hour when none is asked for, then the bounds: at least
/// `min_expiration_seconds` (10 minutes unless the test-only flag lowers it), at most 2^32 s.
/// The maximum flag is not a bound: it shortens later ([`bound_token`]), never refuses.
pub(crate) fn requested_expiration(
    config: &IssuerConfig,
    asked: Option<i64>,
) -> Result<i64, ExpirationError> {
    let requested = asked.unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS);
    if requested < config.min_expiration_seconds {
        return Err(ExpirationError::TooShort(requested));
    }
    if requested > MAX_TOKEN_EXPIRATION_SECONDS {
        return Err(ExpirationError::TooLong(requested));
    }
    Ok(requested)
}

/// token.go step 5: the API audiences when the request names none.
pub(crate) fn request_audiences(config: &IssuerConfig, asked: Vec<String>) -> Vec<String> {
    if asked.is_empty() {
        config.api_audiences.clone()
    } else {
        asked
    }
}

/// The objects a bound token names, resolved by the issuer (token.go step 9). A pod's token
/// also names the pod's node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) pod: Option<ObjectRef>,
    pub(crate) secret: Option<ObjectRef>,
    pub(crate) node: Option<NodeRef>,
}

/// A TokenRequest that passed validation, with its audiences defaulted
/// ([`request_audiences`]) and its lifetime checked ([`requested_expiration`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoundRequest {
    pub(crate) namespace: String,
    pub(crate) service_account: ObjectRef,
    pub(crate) audiences: Vec<String>,
    pub(crate) expiration_seconds: i64,
    pub(crate) binding: Binding,
}

/// What the rules decide for one TokenRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoundToken {
    pub(crate) claims: BoundClaims,
    /// The lifetime the response reports (`spec.expirationSeconds` and
    /// `status.expirationTimestamp`): the requested one, shortened to the maximum, never the
    /// extension, because the kubelet refreshes on what the status says.
    pub(crate) expiration_seconds: i64,
    /// For the client (`Warning` headers).
    pub(crate) warnings: Vec<String>,
}

/// token.go steps 10–11 and claims.go `Claims`: shorten to the maximum, extend the admission
/// token, and write the claims of a token issued at `now` with id `jti`.
pub(crate) fn bound_token(
    config: &IssuerConfig,
    request: BoundRequest,
    now: i64,
    jti: String,
) -> BoundToken {
    let (expiration, warnings) = shorten_to_maximum(config, request.expiration_seconds);
    let (lifetime, warn_after) = match extended_lifetime(config, &request, expiration) {
        // claims.go's warnafter: when the unextended token would have expired.
        Some(extended) => (extended, Some(now + expiration)),
        None => (expiration, None),
    };
    let claims = BoundClaims {
        issuer: config.issuers.first().cloned().unwrap_or_default(),
        audiences: request.audiences,
        issued_at: now,
        expires_at: now + lifetime,
        jti: Some(jti),
        namespace: request.namespace,
        service_account: request.service_account,
        pod: request.binding.pod,
        secret: request.binding.secret,
        node: request.binding.node,
        warn_after,
    };
    BoundToken {
        claims,
        expiration_seconds: expiration,
        warnings,
    }
}

/// token.go step 10: `--service-account-max-token-expiration` shortens a longer request and
/// says so in a warning; it never fails the request.
fn shorten_to_maximum(config: &IssuerConfig, requested: i64) -> (i64, Vec<String>) {
    match config.max_expiration_seconds {
        Some(max) if requested > max => (
            max,
            vec![format!(
                "requested expiration of {requested} seconds shortened to {max} seconds"
            )],
        ),
        _ => (requested, Vec::new()),
    }
}

/// token.go step 11: the 3607 s token the admission plugin asks for on a pod's behalf, for the
/// API audiences only, lives a year (capped by the maximum) with
/// `--service-account-extend-token-expiration`, so that clients that never reload it keep
/// working; `warnafter` marks when its use becomes stale. None: no extension.
fn extended_lifetime(
    config: &IssuerConfig,
    request: &BoundRequest,
    expiration: i64,
) -> Option<i64> {
    let extend = config.extend_expiration
        && request.binding.pod.is_some()
        && expiration == ADMISSION_TOKEN_EXPIRATION_SECONDS
        && request
            .audiences
            .iter()
            .all(|a| config.api_audiences.contains(a));
    extend.then(|| {
        config
            .max_expiration_seconds
            .map_or(TOKEN_EXPIRATION_EXTENSION_SECONDS, |m| {
                m.clamp(
                    ADMISSION_TOKEN_EXPIRATION_SECONDS,
                    TOKEN_EXPIRATION_EXTENSION_SECONDS,
                )
            })
    })
}

/// The claims of a bound token. `nbf` is not kept: Kubernetes always writes nbf = iat, and
/// `to_json` does the same; `from_json` only type-checks the payload's own nbf, so the
/// caller reads it from the payload (a NumericDate) for [`check_times`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoundClaims {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) jti: Option<String>,
    pub(crate) namespace: String,
    pub(crate) service_account: ObjectRef,
    pub(crate) pod: Option<ObjectRef>,
    pub(crate) secret: Option<ObjectRef>,
    pub(crate) node: Option<NodeRef>,
    pub(crate) warn_after: Option<i64>,
}

impl BoundClaims {
    /// The payload exactly as Kubernetes writes it: keys sorted at every level (aud, exp,
    /// iat, iss, jti, kubernetes.io{namespace, node, pod, secret, serviceaccount,
    /// warnafter}, nbf = iat, sub); aud always an array. Empty strings and absent refs are
    /// left out, as Go's `omitempty` does (so a node without uid carries its name only).
    pub(crate) fn to_json(&self) -> Value {
        // serde_json's preserve_order is on: insertion order is output order.
        let mut private = Map::new();
        insert_nonempty(&mut private, "namespace", &self.namespace);
        if let Some(node) = &self.node {
            private.insert(
                "node".into(),
                ref_json(&node.name, node.uid.as_deref().unwrap_or("")),
            );
        }
        if let Some(pod) = &self.pod {
            private.insert("pod".into(), ref_json(&pod.name, &pod.uid));
        }
        if let Some(secret) = &self.secret {
            private.insert("secret".into(), ref_json(&secret.name, &secret.uid));
        }
        private.insert(
            "serviceaccount".into(),
            ref_json(&self.service_account.name, &self.service_account.uid),
        );
        if let Some(w) = self.warn_after {
            private.insert("warnafter".into(), w.into());
        }

        let mut out = Map::new();
        if !self.audiences.is_empty() {
            out.insert("aud".into(), self.audiences.clone().into());
        }
        out.insert("exp".into(), self.expires_at.into());
        out.insert("iat".into(), self.issued_at.into());
        insert_nonempty(&mut out, "iss", &self.issuer);
        if let Some(jti) = &self.jti {
            insert_nonempty(&mut out, "jti", jti);
        }
        out.insert(PRIVATE_CLAIM.into(), Value::Object(private));
        out.insert("nbf".into(), self.issued_at.into());
        out.insert("sub".into(), self.subject().into());
        Value::Object(out)
    }

    /// Reads the verified payload of a bound token. Stricter than Go in one way: `exp` and
    /// `iat` are required (Kubernetes always writes them; a token without `exp` would
    /// never expire). Errors are the texts the authenticator reports.
    pub(crate) fn from_json(v: &Value) -> Result<BoundClaims, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "service account token claims are not a JSON object".to_string())?;
        let issuer = opt_string(obj, "iss")?.unwrap_or_default();
        let audiences = audiences(obj)?;
        let expires_at = numeric_date(obj, "exp")?.ok_or_else(|| missing("exp"))?;
        let issued_at = numeric_date(obj, "iat")?.ok_or_else(|| missing("iat"))?;
        // Type-checked as Go decodes it; the caller passes it to check_times.
        numeric_date(obj, "nbf")?;
        opt_string(obj, "sub")?;
        let jti = opt_string(obj, "jti")?.filter(|s| !s.is_empty());

        let private = match obj.get(PRIVATE_CLAIM) {
            None | Some(Value::Null) => return Err(missing(PRIVATE_CLAIM)),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(invalid(PRIVATE_CLAIM)),
        };
        let namespace = opt_string(private, "namespace")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("namespace"))?;
        let service_account =
            object_ref(private, "serviceaccount")?.ok_or_else(|| missing("serviceaccount"))?;
        let pod = object_ref(private, "pod")?;
        let secret = object_ref(private, "secret")?;
        let node = match private.get("node") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                let name = opt_string(m, "name")
                    .map_err(|_| invalid("node"))?
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid("node"))?;
                let uid = opt_string(m, "uid")
                    .map_err(|_| invalid("node"))?
                    .filter(|s| !s.is_empty());
                Some(NodeRef { name, uid })
            }
            Some(_) => return Err(invalid("node")),
        };
        // claims.go ignores a zero warnafter.
        let warn_after = numeric_date(private, "warnafter")?.filter(|&w| w != 0);

        Ok(BoundClaims {
            issuer,
            audiences,
            issued_at,
            expires_at,
            jti,
            namespace,
            service_account,
            pod,
            secret,
            node,
            warn_after,
        })
    }

    /// `system:serviceaccount:<ns>:<name>`.
    pub(crate) fn subject(&self) -> String {
        make_username(&self.namespace, &self.service_account.name)
    }
}

fn ref_json(name: &str, uid: &str) -> Value {
    let mut m = Map::new();
    insert_nonempty(&mut m, "name", name);
    insert_nonempty(&mut m, "uid", uid);
    Value::Object(m)
}

fn insert_nonempty(m: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        m.insert(key.into(), value.into());
    }
}

fn missing(claim: &str) -> String {
    format!("{claim} claim is missing")
}

fn invalid(claim: &str) -> String {
    format!("{claim} claim is invalid")
}

/// A string claim; JSON null counts as absent (Go leaves the field empty).
fn opt_string(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(key)),
    }
}

/// go-jose `Audience`: one string or an array of strings.
fn audiences(m: &Map<String, Value>) -> Result<Vec<String>, String> {
    match m.get("aud") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| invalid("aud")))
            .collect(),
        Some(_) => Err(invalid("aud")),
    }
}

/// go-jose `NumericDate`: any JSON number, fractions truncated toward zero.
fn numeric_date(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                // Bounds keep the cast exact-or-truncating; anything beyond is nonsense.
                Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(Some(f.trunc() as i64)),
                _ => Err(invalid(key)),
            }
        }
        Some(_) => Err(invalid(key)),
    }
}

fn object_ref(m: &Map<String, Value>, key: &str) -> Result<Option<ObjectRef>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(r)) => {
            let name = opt_string(r, "name").map_err(|_| invalid(key))?;
            let uid = opt_string(r, "uid").map_err(|_| invalid(key))?;
            let name = name.filter(|s| !s.is_empty());
            let uid = uid.filter(|s| !s.is_empty());
            match (name, uid) {
                (Some(name), Some(uid)) => Ok(Some(ObjectRef { name, uid })),
                _ => Err(invalid(key)),
            }
        }
        Some(_) => Err(invalid(key)),
    }
}

/// go-jose `ValidateWithLeeway` with claims.go's messages, in go-jose's order (nbf, exp,
/// iat): expired when exp < now - 60; not valid yet when nbf > now + 60; issued in the
/// future when iat > now + 60. Exactly 60 s off is still accepted.
pub(crate) fn check_times(exp: i64, nbf: i64, iat: i64, now: i64) -> Result<(), &'static str> {
    let late = now.saturating_add(LEEWAY_SECONDS);
    let early = now.saturating_sub(LEEWAY_SECONDS);
    if late < nbf {
        return Err("service account token is not valid yet");
    }
    if early > exp {
        return Err("service account token has expired");
    }
    if late < iat {
        return Err("service account token is issued in the future");
    }
    Ok(())
}

/// The claims of a legacy (Secret) token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegacyClaims {
    pub(crate) namespace: String,
    pub(crate) service_account_name: String,
    pub(crate) service_account_uid: String,
    pub(crate) secret_name: String,
}

impl LegacyClaims {
    /// iss `kubernetes/serviceaccount`, the four flat `kubernetes.io/serviceaccount/...`
    /// claims and sub, sorted; no aud/exp/iat/nbf/jti (legacy tokens never expire).
    pub(crate) fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("iss".into(), LEGACY_ISSUER.into());
        out.insert(LEGACY_NAMESPACE.into(), self.namespace.as_str().into());
        out.insert(LEGACY_SECRET_NAME.into(), self.secret_name.as_str().into());
        out.insert(
            LEGACY_SA_NAME.into(),
            self.service_account_name.as_str().into(),
        );
        out.insert(
            LEGACY_SA_UID.into(),
            self.service_account_uid.as_str().into(),
        );
        out.insert(
            "sub".into(),
            make_username(&self.namespace, &self.service_account_name).into(),
        );
        Value::Object(out)
    }

    /// legacy.go's checks, in its order: each claim non-empty ("sub claim is missing",
    /// "namespace claim is missing", "secretName claim is missing", "serviceAccountName
    /// claim is missing", "serviceAccountUID claim is missing"), then sub must parse and
    /// name the same namespace and service account ("sub claim is invalid"). A claim of the
    /// wrong JSON type is reported as "<claim> claim is invalid".
    pub(crate) fn from_json(v: &Value) -> Result<LegacyClaims, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "service account token claims are not a JSON object".to_string())?;
        let read = |key: &str, label: &str| -> Result<String, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Err(missing(label)),
                Some(Value::String(s)) if s.is_empty() => Err(missing(label)),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(invalid(label)),
            }
        };
        let sub = read("sub", "sub")?;
        let namespace = read(LEGACY_NAMESPACE, "namespace")?;
        let secret_name = read(LEGACY_SECRET_NAME, "secretName")?;
        let service_account_name = read(LEGACY_SA_NAME, "serviceAccountName")?;
        let service_account_uid = read(LEGACY_SA_UID, "serviceAccountUID")?;
        match split_username(&sub) {
            Some((ns, name)) if ns == namespace && name == service_account_name => {}
            _ => return Err(invalid("sub")),
        }
        Ok(LegacyClaims {
            namespace,
            service_account_name,
            service_account_uid,
            secret_name,
        })
    }
}

/// util.go `MakeUsername`.
pub(crate) fn make_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// util.go `SplitUsername`: `system:serviceaccount:<ns>:<name>` with exactly two further
/// parts, a valid namespace name (DNS-1123 label) and a valid service account name
/// (DNS-1123 subdomain).
pub(crate) fn split_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    if name.contains(':') || !is_dns1123_label(namespace) || !is_dns1123_subdomain(name) {
        return None;
    }
    Some((namespace, name))
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Inputs from the real 1.32 token in shared/reference/kube-1.32-observed.md.
    const ISS: &str = "https://kubernetes.default.svc";
    const IAT: i64 = 1795392244;
    const SA_UID: &str = "e75e6f91-ffbf-4f86-b9d9-4482b207e056";
    const JTI: &str = "d934d7c4-972c-4bd1-af5d-fc1cc85f2776";

    fn plain() -> BoundClaims {
        BoundClaims {
            issuer: ISS.into(),
            audiences: vec![ISS.into()],
            issued_at: IAT,
            expires_at: IAT + 600,
            jti: Some(JTI.into()),
            namespace: "default".into(),
            service_account: ObjectRef {
                name: "example-sa".into(),
                uid: SA_UID.into(),
            },
            pod: None,
            secret: None,
            node: None,
            warn_after: None,
        }
    }

    fn legacy() -> LegacyClaims {
        LegacyClaims {
            namespace: "default".into(),
            service_account_name: "example-sa".into(),
            service_account_uid: SA_UID.into(),
            secret_name: "example-sa-token".into(),
        }
    }

    #[test]
    fn golden_plain_token_matches_the_observed_1_32_payload() {
        let want = concat!(
            r#"{"aud":["https://kubernetes.default.svc"],"exp":1795392844,"iat":1795392244,"#,
            r#""iss":"https://kubernetes.default.svc","jti":"d934d7c4-972c-4bd1-af5d-fc1cc85f2776","#,
            r#""kubernetes.io":{"namespace":"default","serviceaccount":{"name":"example-sa","#,
            r#""uid":"e75e6f91-ffbf-4f86-b9d9-4482b207e056"}},"nbf":1795392244,"#,
            r#""sub":"system:serviceaccount:default:example-sa"}"#
        );
        let got = plain().to_json();
        assert_eq!(got.to_string(), want);
        assert_eq!(BoundClaims::from_json(&got).unwrap(), plain());
    }

    #[test]
    fn golden_pod_bound_token_on_a_node_with_warnafter() {
        // The kubelet's 3607 s projected token, extended to a year (facts §1.2 example).
        let mut c = plain();
        c.audiences = vec![
            "https://kubernetes.default.svc.cluster.local".into(),
            "vault".into(),
        ];
        c.expires_at = IAT + 31_536_000;
        c.warn_after = Some(IAT + 3607);
        c.pod = Some(ObjectRef {
            name: "myapp-7d9f".into(),
            uid: "da2a1c53-8a64-4d8e-9d0c-8c1f0d2b5e11".into(),
        });
        c.node = Some(NodeRef {
            name: "node1".into(),
            uid: Some("f7cd5e2a-1b3c-4d5e-8f90-a1b2c3d4e5f6".into()),
        });
        let want = concat!(
            r#"{"aud":["https://kubernetes.default.svc.cluster.local","vault"],"exp":1826928244,"#,
            r#""iat":1795392244,"iss":"https://kubernetes.default.svc","#,
            r#""jti":"d934d7c4-972c-4bd1-af5d-fc1cc85f2776","kubernetes.io":{"namespace":"default","#,
            r#""node":{"name":"node1","uid":"f7cd5e2a-1b3c-4d5e-8f90-a1b2c3d4e5f6"},"#,
            r#""pod":{"name":"myapp-7d9f","uid":"da2a1c53-8a64-4d8e-9d0c-8c1f0d2b5e11"},"#,
            r#""serviceaccount":{"name":"example-sa","uid":"e75e6f91-ffbf-4f86-b9d9-4482b207e056"},"#,
            r#""warnafter":1795395851},"nbf":1795392244,"sub":"system:serviceaccount:default:example-sa"}"#
        );
        let got = c.to_json();
        assert_eq!(got.to_string(), want);
        assert_eq!(BoundClaims::from_json(&got).unwrap(), c);
    }

    fn config(max: Option<i64>) -> IssuerConfig {
        IssuerConfig {
            issuers: vec![ISS.into(), "https://other.example".into()],
            api_audiences: vec![ISS.into()],
            max_expiration_seconds: max,
            extend_expiration: true,
            min_expiration_seconds: 600,
        }
    }

    /// The kubelet's TokenRequest for a pod's projected token: 3607 s, bound to the pod.
    fn admission_request() -> BoundRequest {
        BoundRequest {
            namespace: "default".into(),
            service_account: ObjectRef {
                name: "example-sa".into(),
                uid: SA_UID.into(),
            },
            audiences: vec![ISS.into()],
            expiration_seconds: 3607,
            binding: Binding {
                pod: Some(ObjectRef {
                    name: "myapp-7d9f".into(),
                    uid: "da2a1c53-8a64-4d8e-9d0c-8c1f0d2b5e11".into(),
                }),
                secret: None,
                node: Some(NodeRef {
                    name: "node1".into(),
                    uid: Some("f7cd5e2a-1b3c-4d5e-8f90-a1b2c3d4e5f6".into()),
                }),
            },
        }
    }

    #[test]
    fn golden_token_request_claims_of_the_admission_token() {
        // Extended to a year, warnafter at the 3607 s the status still reports.
        let got = bound_token(&config(None), admission_request(), IAT, JTI.into());
        let want = concat!(
            r#"{"aud":["https://kubernetes.default.svc"],"exp":1826928244,"iat":1795392244,"#,
            r#""iss":"https://kubernetes.default.svc","jti":"d934d7c4-972c-4bd1-af5d-fc1cc85f2776","#,
            r#""kubernetes.io":{"namespace":"default","#,
            r#""node":{"name":"node1","uid":"f7cd5e2a-1b3c-4d5e-8f90-a1b2c3d4e5f6"},"#,
            r#""pod":{"name":"myapp-7d9f","uid":"da2a1c53-8a64-4d8e-9d0c-8c1f0d2b5e11"},"#,
            r#""serviceaccount":{"name":"example-sa","uid":"e75e6f91-ffbf-4f86-b9d9-4482b207e056"},"#,
            r#""warnafter":1795395851},"nbf":1795392244,"sub":"system:serviceaccount:default:example-sa"}"#
        );
        assert_eq!(got.claims.to_json().to_string(), want);
        assert_eq!((got.expiration_seconds, got.warnings.len()), (3607, 0));
    }

    #[test]
    fn golden_token_request_claims_shortened_to_the_maximum() {
        let mut req = admission_request();
        req.binding = Binding::default();
        req.expiration_seconds = 86400;
        let got = bound_token(&config(Some(7200)), req, IAT, JTI.into());
        let want = concat!(
            r#"{"aud":["https://kubernetes.default.svc"],"exp":1795399444,"iat":1795392244,"#,
            r#""iss":"https://kubernetes.default.svc","jti":"d934d7c4-972c-4bd1-af5d-fc1cc85f2776","#,
            r#""kubernetes.io":{"namespace":"default","#,
            r#""serviceaccount":{"name":"example-sa","uid":"e75e6f91-ffbf-4f86-b9d9-4482b207e056"}},"#,
            r#""nbf":1795392244,"sub":"system:serviceaccount:default:example-sa"}"#
        );
        assert_eq!(got.claims.to_json().to_string(), want);
        assert_eq!(got.expiration_seconds, 7200);
        assert_eq!(
            got.warnings,
            ["requested expiration of 86400 seconds shortened to 7200 seconds"]
        );
    }

    #[test]
    fn lifetime_rules() {
        // (max, extend, expiration asked, pod-bound, audiences) → (exp - iat, warnafter - iat).
        let vault = || vec!["vault".to_string()];
        let api = || vec![ISS.to_string()];
        let year = TOKEN_EXPIRATION_EXTENSION_SECONDS;
        type Case = (
            Option<i64>,
            bool,
            i64,
            bool,
            Vec<String>,
            (i64, Option<i64>),
        );
        let cases: [Case; 8] = [
            (None, true, 3607, true, api(), (year, Some(3607))),
            // The maximum caps the extension but never below 3607 s.
            (Some(7200), true, 3607, true, api(), (7200, Some(3607))),
            (Some(2 * year), true, 3607, true, api(), (year, Some(3607))),
            // Shortened below 3607 s: no longer the admission token.
            (Some(3600), true, 3607, true, api(), (3600, None)),
            (None, false, 3607, true, api(), (3607, None)),
            (None, true, 3607, false, api(), (3607, None)),
            (None, true, 3608, true, api(), (3608, None)),
            (None, true, 3607, true, vault(), (3607, None)),
        ];
        for (max, extend, asked, pod, audiences, want) in cases {
            let mut cfg = config(max);
            cfg.extend_expiration = extend;
            let mut req = admission_request();
            req.expiration_seconds = asked;
            req.audiences = audiences;
            if !pod {
                req.binding.pod = None;
            }
            let c = bound_token(&cfg, req, IAT, JTI.into()).claims;
            let got = (c.expires_at - IAT, c.warn_after.map(|w| w - IAT));
            assert_eq!(
                got, want,
                "max {max:?} extend {extend} asked {asked} pod {pod}"
            );
        }
    }

    #[test]
    fn requested_expiration_defaults_and_bounds() {
        let cfg = config(Some(1200));
        assert_eq!(requested_expiration(&cfg, None), Ok(3600));
        assert_eq!(requested_expiration(&cfg, Some(600)), Ok(600));
        // The maximum does not refuse; it shortens later.
        assert_eq!(requested_expiration(&cfg, Some(1 << 32)), Ok(1 << 32));
        let short = requested_expiration(&cfg, Some(599)).unwrap_err();
        assert_eq!(
            (short.requested(), short.to_string().as_str()),
            (599, "may not specify a duration less than 10 minutes")
        );
        let long = requested_expiration(&cfg, Some((1 << 32) + 1)).unwrap_err();
        assert_eq!(
            long.to_string(),
            "may not specify a duration larger than 2^32 seconds"
        );
        // --testing-min-token-expiration lowers the floor.
        let testing = IssuerConfig {
            min_expiration_seconds: 1,
            ..cfg
        };
        assert_eq!(requested_expiration(&testing, Some(1)), Ok(1));
        assert_eq!(request_audiences(&testing, Vec::new()), [ISS]);
        assert_eq!(request_audiences(&testing, vec!["vault".into()]), ["vault"]);
    }

    #[test]
    fn golden_secret_bound_token() {
        let mut c = plain();
        c.secret = Some(ObjectRef {
            name: "s1".into(),
            uid: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into(),
        });
        let want = concat!(
            r#"{"aud":["https://kubernetes.default.svc"],"exp":1795392844,"iat":1795392244,"#,
            r#""iss":"https://kubernetes.default.svc","jti":"d934d7c4-972c-4bd1-af5d-fc1cc85f2776","#,
            r#""kubernetes.io":{"namespace":"default","#,
            r#""secret":{"name":"s1","uid":"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"},"#,
            r#""serviceaccount":{"name":"example-sa","uid":"e75e6f91-ffbf-4f86-b9d9-4482b207e056"}},"#,
            r#""nbf":1795392244,"sub":"system:serviceaccount:default:example-sa"}"#
        );
        let got = c.to_json();
        assert_eq!(got.to_string(), want);
        assert_eq!(BoundClaims::from_json(&got).unwrap(), c);
    }

    #[test]
    fn golden_node_without_uid_and_no_jti() {
        // A pod on a node whose Node object was not found: the name only.
        let mut c = plain();
        c.jti = None;
        c.pod = Some(ObjectRef {
            name: "p1".into(),
            uid: "11111111-2222-3333-4444-555555555555".into(),
        });
        c.node = Some(NodeRef {
            name: "gone-node".into(),
            uid: None,
        });
        let want = concat!(
            r#"{"aud":["https://kubernetes.default.svc"],"exp":1795392844,"iat":1795392244,"#,
            r#""iss":"https://kubernetes.default.svc","kubernetes.io":{"namespace":"default","#,
            r#""node":{"name":"gone-node"},"pod":{"name":"p1","uid":"11111111-2222-3333-4444-555555555555"},"#,
            r#""serviceaccount":{"name":"example-sa","uid":"e75e6f91-ffbf-4f86-b9d9-4482b207e056"}},"#,
            r#""nbf":1795392244,"sub":"system:serviceaccount:default:example-sa"}"#
        );
        let got = c.to_json();
        assert_eq!(got.to_string(), want);
        assert_eq!(BoundClaims::from_json(&got).unwrap(), c);
    }

    #[test]
    fn golden_legacy_token_matches_the_observed_1_32_payload() {
        let want = concat!(
            r#"{"iss":"kubernetes/serviceaccount","#,
            r#""kubernetes.io/serviceaccount/namespace":"default","#,
            r#""kubernetes.io/serviceaccount/secret.name":"example-sa-token","#,
            r#""kubernetes.io/serviceaccount/service-account.name":"example-sa","#,
            r#""kubernetes.io/serviceaccount/service-account.uid":"e75e6f91-ffbf-4f86-b9d9-4482b207e056","#,
            r#""sub":"system:serviceaccount:default:example-sa"}"#
        );
        let got = legacy().to_json();
        assert_eq!(got.to_string(), want);
        assert_eq!(LegacyClaims::from_json(&got).unwrap(), legacy());
    }

    #[test]
    fn subject() {
        assert_eq!(
            plain().subject(),
            "system:serviceaccount:default:example-sa"
        );
    }

    #[test]
    fn check_times_boundaries() {
        let now = 1_000_000;
        // (exp, nbf, iat) relative to now, expected result.
        let cases: [(i64, i64, i64, Result<(), &str>); 10] = [
            (600, 0, 0, Ok(())),
            (-60, -600, -600, Ok(())),
            (-61, -600, -600, Err("service account token has expired")),
            (600, 60, 0, Ok(())),
            (600, 61, 0, Err("service account token is not valid yet")),
            (600, 0, 60, Ok(())),
            (
                600,
                0,
                61,
                Err("service account token is issued in the future"),
            ),
            // go-jose checks nbf before exp before iat.
            (-61, 61, 61, Err("service account token is not valid yet")),
            (-61, 0, 61, Err("service account token has expired")),
            (i64::MAX - now, 0, 0, Ok(())),
        ];
        for (exp, nbf, iat, want) in cases {
            assert_eq!(
                check_times(now + exp, now + nbf, now + iat, now),
                want,
                "exp {exp} nbf {nbf} iat {iat}"
            );
        }
        assert_eq!(
            check_times(0, 0, 0, i64::MAX),
            Err("service account token has expired")
        );
        assert_eq!(
            check_times(i64::MAX, i64::MAX, 0, i64::MIN),
            Err("service account token is not valid yet")
        );
    }

    fn with(mut v: Value, path: &[&str], new: Option<Value>) -> Value {
        let (last, parents) = path.split_last().unwrap();
        let mut cur = &mut v;
        for p in parents {
            cur = cur.get_mut(*p).unwrap();
        }
        let obj = cur.as_object_mut().unwrap();
        match new {
            Some(n) => {
                obj.insert((*last).to_string(), n);
            }
            None => {
                obj.remove(*last);
            }
        }
        v
    }

    #[test]
    fn bound_from_json_accepts_go_jose_forms() {
        let base = plain().to_json();
        // aud as a single string.
        let c = BoundClaims::from_json(&with(base.clone(), &["aud"], Some(json!("x")))).unwrap();
        assert_eq!(c.audiences, ["x"]);
        // No aud at all.
        let c = BoundClaims::from_json(&with(base.clone(), &["aud"], None)).unwrap();
        assert!(c.audiences.is_empty());
        // Fractional NumericDate.
        let c = BoundClaims::from_json(&with(base.clone(), &["exp"], Some(json!(1795392844.75))))
            .unwrap();
        assert_eq!(c.expires_at, 1795392844);
        // warnafter 0 is ignored; empty jti is none.
        let c = BoundClaims::from_json(&with(
            base.clone(),
            &["kubernetes.io", "warnafter"],
            Some(json!(0)),
        ))
        .unwrap();
        assert_eq!(c.warn_after, None);
        let c = BoundClaims::from_json(&with(base.clone(), &["jti"], Some(json!("")))).unwrap();
        assert_eq!(c.jti, None);
        // Unknown claims are ignored.
        let c = BoundClaims::from_json(&with(base, &["extra"], Some(json!({"a": 1})))).unwrap();
        assert_eq!(c, plain());
    }

    #[test]
    fn bound_from_json_errors() {
        let base = plain().to_json();
        let k8s = "kubernetes.io";
        let cases: Vec<(Value, &str)> = vec![
            (
                json!([]),
                "service account token claims are not a JSON object",
            ),
            (with(base.clone(), &["exp"], None), "exp claim is missing"),
            (with(base.clone(), &["iat"], None), "iat claim is missing"),
            (
                with(base.clone(), &["exp"], Some(json!("1795392844"))),
                "exp claim is invalid",
            ),
            (
                with(base.clone(), &["iat"], Some(json!(true))),
                "iat claim is invalid",
            ),
            (
                with(base.clone(), &["nbf"], Some(json!({}))),
                "nbf claim is invalid",
            ),
            (
                with(base.clone(), &["aud"], Some(json!(5))),
                "aud claim is invalid",
            ),
            (
                with(base.clone(), &["aud"], Some(json!(["a", 5]))),
                "aud claim is invalid",
            ),
            (
                with(base.clone(), &["iss"], Some(json!(1))),
                "iss claim is invalid",
            ),
            (
                with(base.clone(), &["sub"], Some(json!(1))),
                "sub claim is invalid",
            ),
            (
                with(base.clone(), &["jti"], Some(json!(1))),
                "jti claim is invalid",
            ),
            (
                with(base.clone(), &[k8s], None),
                "kubernetes.io claim is missing",
            ),
            (
                with(base.clone(), &[k8s], Some(json!("x"))),
                "kubernetes.io claim is invalid",
            ),
            (
                with(base.clone(), &[k8s, "namespace"], None),
                "namespace claim is missing",
            ),
            (
                with(base.clone(), &[k8s, "namespace"], Some(json!(""))),
                "namespace claim is missing",
            ),
            (
                with(base.clone(), &[k8s, "namespace"], Some(json!(1))),
                "namespace claim is invalid",
            ),
            (
                with(base.clone(), &[k8s, "serviceaccount"], None),
                "serviceaccount claim is missing",
            ),
            (
                with(base.clone(), &[k8s, "serviceaccount", "uid"], None),
                "serviceaccount claim is invalid",
            ),
            (
                with(
                    base.clone(),
                    &[k8s, "serviceaccount", "name"],
                    Some(json!(3)),
                ),
                "serviceaccount claim is invalid",
            ),
            (
                with(base.clone(), &[k8s, "pod"], Some(json!({"name": "p"}))),
                "pod claim is invalid",
            ),
            (
                with(base.clone(), &[k8s, "pod"], Some(json!([]))),
                "pod claim is invalid",
            ),
            (
                with(base.clone(), &[k8s, "secret"], Some(json!({"uid": "u"}))),
                "secret claim is invalid",
            ),
            (
                with(base.clone(), &[k8s, "node"], Some(json!({"uid": "u"}))),
                "node claim is invalid",
            ),
            (
                with(base.clone(), &[k8s, "node"], Some(json!("n"))),
                "node claim is invalid",
            ),
            (
                with(base, &[k8s, "warnafter"], Some(json!("later"))),
                "warnafter claim is invalid",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(BoundClaims::from_json(&v), Err(want.to_string()), "{v}");
        }
    }

    #[test]
    fn legacy_from_json_errors_in_legacy_go_order() {
        let base = legacy().to_json();
        let cases: Vec<(Value, &str)> = vec![
            (
                json!("x"),
                "service account token claims are not a JSON object",
            ),
            (with(base.clone(), &["sub"], None), "sub claim is missing"),
            (
                with(base.clone(), &["sub"], Some(json!(""))),
                "sub claim is missing",
            ),
            // sub is checked first even when everything is missing.
            (json!({}), "sub claim is missing"),
            (
                with(base.clone(), &[LEGACY_NAMESPACE], None),
                "namespace claim is missing",
            ),
            (
                with(base.clone(), &[LEGACY_SECRET_NAME], Some(json!(""))),
                "secretName claim is missing",
            ),
            (
                with(base.clone(), &[LEGACY_SA_NAME], None),
                "serviceAccountName claim is missing",
            ),
            (
                with(base.clone(), &[LEGACY_SA_UID], None),
                "serviceAccountUID claim is missing",
            ),
            (
                with(base.clone(), &[LEGACY_SA_UID], Some(json!(7))),
                "serviceAccountUID claim is invalid",
            ),
            (
                with(base.clone(), &["sub"], Some(json!(["x"]))),
                "sub claim is invalid",
            ),
            (
                with(
                    base.clone(),
                    &["sub"],
                    Some(json!("system:serviceaccount:default:other")),
                ),
                "sub claim is invalid",
            ),
            (
                with(
                    base.clone(),
                    &["sub"],
                    Some(json!("system:serviceaccount:kube-system:example-sa")),
                ),
                "sub claim is invalid",
            ),
            (
                with(
                    base.clone(),
                    &["sub"],
                    Some(json!("system:serviceaccount:default:example-sa:x")),
                ),
                "sub claim is invalid",
            ),
            (
                with(
                    base.clone(),
                    &["sub"],
                    Some(json!("system:serviceaccounts:default:example-sa")),
                ),
                "sub claim is invalid",
            ),
            (
                with(base.clone(), &["sub"], Some(json!("example-sa"))),
                "sub claim is invalid",
            ),
            // Names that match the claims but are not valid names.
            (
                with(
                    with(
                        base.clone(),
                        &["sub"],
                        Some(json!("system:serviceaccount:Default:example-sa")),
                    ),
                    &[LEGACY_NAMESPACE],
                    Some(json!("Default")),
                ),
                "sub claim is invalid",
            ),
            (
                with(
                    with(
                        base,
                        &["sub"],
                        Some(json!("system:serviceaccount:default:bad_name")),
                    ),
                    &[LEGACY_SA_NAME],
                    Some(json!("bad_name")),
                ),
                "sub claim is invalid",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(LegacyClaims::from_json(&v), Err(want.to_string()), "{v}");
        }
        // Extra claims (e.g. an aud someone added) do not matter to the legacy validator.
        let v = with(legacy().to_json(), &["aud"], Some(json!("x")));
        assert_eq!(LegacyClaims::from_json(&v).unwrap(), legacy());
    }

    #[test]
    fn usernames() {
        assert_eq!(
            split_username("system:serviceaccount:ns:sa.with.dots"),
            Some(("ns", "sa.with.dots"))
        );
        assert_eq!(make_username("ns", "sa"), "system:serviceaccount:ns:sa");
        for bad in [
            "system:serviceaccount:ns",
            "system:serviceaccount::sa",
            "system:serviceaccount:ns:",
            "system:serviceaccount:-ns:sa",
            "system:serviceaccount:ns:sa-",
            "system:serviceaccount:ns:SA",
            "system:serviceaccount:ns:a..b",
            "system:serviceaccount:ns:a:b",
        ] {
            assert_eq!(split_username(bad), None, "{bad}");
        }
        let long_ns = "a".repeat(64);
        assert_eq!(
            split_username(&format!("system:serviceaccount:{long_ns}:sa")),
            None
        );
    }
}
