//! OIDC discovery for service-account tokens (`pkg/serviceaccount/openidmetadata.go`):
//! `/.well-known/openid-configuration` and `/openid/v1/jwks`, rendered from the key set in use, so that
//! relying parties (Vault, cloud IAM, PyJWT) can verify tokens from the documents alone.

use serde_json::{Value, json};

use std::sync::Arc;

use super::keyring::Keyring;

/// Both documents, rendered from one key set.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    pub(crate) configuration: Vec<u8>,
    pub(crate) jwks: Vec<u8>,
}

/// Why discovery is not served (kube-apiserver logs this and leaves the endpoints out).
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum DiscoveryError {
    #[error(
        "issuer {0:?} is not an https URL without query or fragment; OIDC discovery is disabled"
    )]
    Issuer(String),
    #[error("jwks uri {0:?} must be an https URL")]
    JwksUri(String),
}

fn https_url(s: &str) -> bool {
    s.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('?') && !rest.contains('#'))
}

/// The checked issuer and JWKS URI, and the key ring the documents list: keys published
/// ahead of a rotation appear at once, retired ones leave at once.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    issuer: String,
    jwks_uri: String,
    keys: Arc<Keyring>,
}

/// Checks the URLs. `jwks_uri` is `--service-account-jwks-uri`, or the server's own
/// `https://<host:port>/openid/v1/jwks`.
pub(crate) fn build(
    issuer: &str,
    jwks_uri: &str,
    keys: Arc<Keyring>,
) -> Result<Publisher, DiscoveryError> {
    if !https_url(issuer) {
        return Err(DiscoveryError::Issuer(issuer.to_string()));
    }
    if !https_url(jwks_uri) {
        return Err(DiscoveryError::JwksUri(jwks_uri.to_string()));
    }
    Ok(Publisher {
        issuer: issuer.to_string(),
        jwks_uri: jwks_uri.to_string(),
        keys,
    })
}

impl Publisher {
    /// Both documents for the key set in use now (a few keys: cheap enough per request).
    pub(crate) fn documents(&self) -> Discovery {
        let keys = self.keys.current();
        let configuration: Value = json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": keys.algorithms(),
        });
        Discovery {
            configuration: serde_json::to_vec(&configuration).unwrap_or_default(),
            jwks: serde_json::to_vec(&keys.jwks()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::keys::{
        KeySet, SigningKey, VerifyingKey, generate_ec_p256_pem, generate_rsa_2048_pem,
    };

    #[test]
    fn documents_list_every_key_and_algorithm() {
        let signing = SigningKey::from_pem(generate_rsa_2048_pem().unwrap().as_bytes()).unwrap();
        let extra = VerifyingKey::from_pem_all(generate_ec_p256_pem().unwrap().as_bytes()).unwrap();
        let keys = Keyring::new(KeySet::new(Some(signing), extra));
        let d = build(
            "https://kubernetes.default.svc",
            "https://127.0.0.1:6443/openid/v1/jwks",
            keys.clone(),
        )
        .unwrap()
        .documents();
        let text = String::from_utf8(d.configuration).unwrap();
        assert_eq!(
            text,
            r#"{"issuer":"https://kubernetes.default.svc","jwks_uri":"https://127.0.0.1:6443/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["ES256","RS256"]}"#
        );
        let jwks: Value = serde_json::from_slice(&d.jwks).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn documents_follow_the_key_ring() {
        let first = SigningKey::from_pem(generate_rsa_2048_pem().unwrap().as_bytes()).unwrap();
        let keys = Keyring::new(KeySet::new(Some(first), vec![]));
        let publisher = build("https://a", "https://a/jwks", keys.clone()).unwrap();
        let kids = |p: &Publisher| -> Vec<String> {
            let jwks: Value = serde_json::from_slice(&p.documents().jwks).unwrap();
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(kids(&publisher).len(), 1);
        let ec = SigningKey::from_pem(generate_ec_p256_pem().unwrap().as_bytes()).unwrap();
        let kid = ec.kid().to_string();
        keys.replace(KeySet::new(Some(ec), vec![]));
        assert_eq!(kids(&publisher), [kid]);
        let config: Value = serde_json::from_slice(&publisher.documents().configuration).unwrap();
        assert_eq!(
            config["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
    }

    #[test]
    fn only_https_issuers_get_discovery() {
        let keys = Keyring::new(KeySet::new(None, vec![]));
        assert!(matches!(
            build("kubernetes/serviceaccount", "https://x/jwks", keys.clone()),
            Err(DiscoveryError::Issuer(_))
        ));
        assert!(matches!(
            build("https://a?b", "https://x/jwks", keys.clone()),
            Err(DiscoveryError::Issuer(_))
        ));
        assert!(matches!(
            build("https://a", "http://x/jwks", keys.clone()),
            Err(DiscoveryError::JwksUri(_))
        ));
    }
}
