//! Credentials and who they belong to. For now: the user model and static bearer
//! tokens (the admin credential and `--token-auth-file`); service-account JWTs plug in
//! here as further [`TokenAuthenticator`]s.
//!
//! Only this module handles credential material; a type that holds a token prints it
//! redacted, and no token ever reaches a log.

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

/// The outcome of presenting a bearer token to one authenticator.
#[derive(Debug)]
pub(crate) enum TokenOutcome {
    /// The token belongs to this user.
    User(UserInfo),
    /// Not this authenticator's kind of token; the next one may try.
    NotMine,
}

/// One way of turning a bearer token into a user.
#[async_trait::async_trait]
pub(crate) trait TokenAuthenticator: Send + Sync {
    async fn authenticate(&self, token: &str) -> TokenOutcome;
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

impl AuthenticatorChain {
    pub(crate) fn push(&mut self, a: Box<dyn TokenAuthenticator>) {
        self.chain.push(a);
    }

    /// The user, or the reasons every authenticator gave (for the debug log).
    pub(crate) async fn authenticate(&self, token: &str) -> Result<UserInfo, Vec<String>> {
        let mut reasons: Vec<String> = Vec::new();
        for a in &self.chain {
            match a.authenticate(token).await {
                TokenOutcome::User(mut u) => {
                    // The union authenticator adds system:authenticated to every user.
                    if !u.in_group(crate::wellknown::GROUP_AUTHENTICATED) {
                        u.groups
                            .push(crate::wellknown::GROUP_AUTHENTICATED.to_string());
                    }
                    return Ok(u);
                }
                TokenOutcome::NotMine => {}
            }
        }
        if reasons.is_empty() {
            reasons.push("invalid bearer token".to_string());
        }
        Err(reasons)
    }
}
