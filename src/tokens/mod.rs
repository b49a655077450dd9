//! Credentials and who they belong to: the user model, static bearer tokens (the admin
//! credential and `--token-auth-file`), service-account JWTs (keys, claims, signing,
//! TokenRequest issuance and authentication of bound and legacy tokens), and OIDC
//! discovery content.
//!
//! Only this module handles key material and tokens; a type that holds a token prints it
//! redacted, and no token ever reaches a log.

pub(crate) mod authenticator;
pub(crate) mod claims;
pub(crate) mod issuer;
pub(crate) mod jws;
pub(crate) mod keyring;
pub(crate) mod keys;
pub(crate) mod lookup;
pub(crate) mod oidc;
pub(crate) mod rotation;
pub(crate) mod static_tokens;

use std::collections::BTreeMap;

/// An authenticated identity, as `user.Info` in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UserInfo {
    pub(crate) username: String,
    pub(crate) uid: String,
    pub(crate) groups: Vec<String>,
    pub(crate) extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub(crate) fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// A successful authentication and what it leaves behind for the audit log and the
/// response.
#[derive(Debug, Clone, Default)]
pub(crate) struct Authenticated {
    pub(crate) user: UserInfo,
    /// The audiences the token is good for, of those asked for (TokenReview reports them).
    pub(crate) audiences: Vec<String>,
    /// Audit annotations (`authentication.k8s.io/stale-token`, `.../legacy-token`, ...).
    pub(crate) annotations: BTreeMap<String, String>,
    /// Warnings for the client (`Warning: 299` response headers).
    pub(crate) warnings: Vec<String>,
}

/// The outcome of presenting a bearer token to one authenticator.
#[derive(Debug)]
pub(crate) enum TokenOutcome {
    /// The token belongs to this user.
    User(Authenticated),
    /// Not this authenticator's kind of token; the next one may try.
    NotMine,
    /// This authenticator's kind of token, but rejected. The reason goes to the debug log
    /// and TokenReview's `status.error`; request clients see a generic 401.
    Rejected(String),
}

/// One way of turning a bearer token into a user. `audiences` are the audiences the
/// caller needs (TokenReview's `spec.audiences`); `None` means the API audiences.
#[async_trait::async_trait]
pub(crate) trait TokenAuthenticator: Send + Sync {
    async fn authenticate(&self, token: &str, audiences: Option<&[String]>) -> TokenOutcome;
}

/// A shared authenticator (one whose content another task replaces, as the static tokens'
/// reload does) is an authenticator too.
#[async_trait::async_trait]
impl<T: TokenAuthenticator + ?Sized> TokenAuthenticator for std::sync::Arc<T> {
    async fn authenticate(&self, token: &str, audiences: Option<&[String]>) -> TokenOutcome {
        (**self).authenticate(token, audiences).await
    }
}

/// Authenticators tried in order, as kube-apiserver's union authenticator does.
#[derive(Default)]
pub(crate) struct AuthenticatorChain {
    chain: Vec<Box<dyn TokenAuthenticator>>,
}

impl std::fmt::Debug for AuthenticatorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthenticatorChain({} authenticators)", self.chain.len())
    }
}

/// kube-apiserver's bearer-token wrapper error.
const INVALID_BEARER_TOKEN: &str = "invalid bearer token";

/// Why a token did not authenticate, with Kubernetes' text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct AuthError {
    pub(crate) message: String,
    /// An authenticator recognised the token and rejected it (as opposed to nobody
    /// recognising it at all).
    pub(crate) rejected: bool,
}

impl AuthenticatorChain {
    pub(crate) fn push(&mut self, a: Box<dyn TokenAuthenticator>) {
        self.chain.push(a);
    }

    /// The authenticated user, or the error text Kubernetes reports: `invalid bearer
    /// token` when nobody recognised the token, `[invalid bearer token, <reason>...]`
    /// when an authenticator rejected it.
    pub(crate) async fn authenticate(
        &self,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<Authenticated, AuthError> {
        let mut reasons: Vec<String> = Vec::new();
        for a in &self.chain {
            match a.authenticate(token, audiences).await {
                TokenOutcome::User(mut auth) => {
                    // The union authenticator adds system:authenticated to every user.
                    if !auth.user.in_group(crate::wellknown::GROUP_AUTHENTICATED) {
                        auth.user
                            .groups
                            .push(crate::wellknown::GROUP_AUTHENTICATED.to_string());
                    }
                    return Ok(auth);
                }
                TokenOutcome::NotMine => {}
                TokenOutcome::Rejected(r) => reasons.push(r),
            }
        }
        if reasons.is_empty() {
            Err(AuthError {
                message: INVALID_BEARER_TOKEN.to_string(),
                rejected: false,
            })
        } else {
            Err(AuthError {
                message: format!("[{INVALID_BEARER_TOKEN}, {}]", reasons.join(", ")),
                rejected: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Option<&'static str>);

    #[async_trait::async_trait]
    impl TokenAuthenticator for Fixed {
        async fn authenticate(&self, token: &str, _: Option<&[String]>) -> TokenOutcome {
            if token != self.0 {
                return TokenOutcome::NotMine;
            }
            match self.1 {
                Some(r) => TokenOutcome::Rejected(r.to_string()),
                None => TokenOutcome::User(Authenticated {
                    user: UserInfo {
                        username: "u".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            }
        }
    }

    #[tokio::test]
    async fn errors_aggregate_as_kubernetes_prints_them() {
        let mut chain = AuthenticatorChain::default();
        chain.push(Box::new(Fixed("good", None)));
        chain.push(Box::new(Fixed(
            "bad",
            Some("service account token has been invalidated"),
        )));
        let ok = chain.authenticate("good", None).await.unwrap();
        assert_eq!(ok.user.groups, vec!["system:authenticated"]);
        let garbage = chain.authenticate("garbage", None).await.unwrap_err();
        assert_eq!(
            (garbage.message.as_str(), garbage.rejected),
            ("invalid bearer token", false)
        );
        let bad = chain.authenticate("bad", None).await.unwrap_err();
        assert_eq!(
            bad.message,
            "[invalid bearer token, service account token has been invalidated]"
        );
        assert!(bad.rejected);
    }
}
