//! Static bearer tokens: the generated admin credential and kube-apiserver's
//! `--token-auth-file` CSV (`token,user,uid,"group1,group2"`, at least three columns;
//! `staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/tokenfile`).
//!
//! Tokens are looked up by their SHA-256 digest, and the digest is compared in constant
//! time, so neither the map lookup nor the comparison leaks how much of a guess matched.

use std::collections::HashMap;

use aws_lc_rs::digest;
use subtle::ConstantTimeEq as _;

use super::{Authenticated, TokenAuthenticator, TokenOutcome, UserInfo};

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum TokenFileError {
    #[error(
        "token file line {line} must have at least 3 columns (token, user name, user uid), found {found}"
    )]
    TooFewColumns { line: usize, found: usize },
    #[error("token file line {line} has an unterminated quote")]
    Unterminated { line: usize },
}

fn sha256(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A set of static tokens.
#[derive(Default)]
pub(crate) struct StaticTokens {
    by_digest: HashMap<[u8; 32], UserInfo>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StaticTokens({} users, tokens redacted)",
            self.by_digest.len()
        )
    }
}

impl StaticTokens {
    pub(crate) fn insert(&mut self, token: &str, user: UserInfo) {
        self.by_digest.insert(sha256(token), user);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Adds every record of a token file. A later duplicate token replaces the earlier
    /// one, as kube-apiserver does (it only warns).
    pub(crate) fn add_csv(&mut self, text: &str) -> Result<(), TokenFileError> {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let fields = split_csv(raw).ok_or(TokenFileError::Unterminated { line })?;
            if fields.len() < 3 {
                return Err(TokenFileError::TooFewColumns {
                    line,
                    found: fields.len(),
                });
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if fields[0].is_empty() {
                continue;
            }
            self.insert(
                &fields[0],
                UserInfo {
                    username: fields[1].clone(),
                    uid: fields[2].clone(),
                    groups,
                    extra: Default::default(),
                },
            );
        }
        Ok(())
    }

    fn lookup(&self, token: &str) -> Option<&UserInfo> {
        let want = sha256(token);
        self.by_digest
            .iter()
            .find(|(d, _)| bool::from(d.ct_eq(&want)))
            .map(|(_, u)| u)
    }
}

/// Splits one CSV record: commas separate, double quotes group (with `""` as a quote),
/// leading spaces of a field are trimmed (Go's `TrimLeadingSpace`).
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            '"' if at_start => in_quotes = true,
            c if at_start && c.is_whitespace() => continue,
            c => cur.push(c),
        }
        at_start = false;
    }
    if in_quotes {
        return None;
    }
    fields.push(cur);
    Some(fields)
}

#[async_trait::async_trait]
impl TokenAuthenticator for StaticTokens {
    async fn authenticate(&self, token: &str, audiences: Option<&[String]>) -> TokenOutcome {
        match self.lookup(token) {
            // Static tokens are good for any audience asked for (they carry none).
            Some(u) => TokenOutcome::User(Authenticated {
                user: u.clone(),
                audiences: audiences.map(<[String]>::to_vec).unwrap_or_default(),
                ..Default::default()
            }),
            None => TokenOutcome::NotMine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kube_apiserver_token_files() {
        let mut t = StaticTokens::default();
        t.add_csv("tok1,alice,uid-1,\"dev,ops\"\n\ntok2, bob, uid-2\n")
            .unwrap();
        assert_eq!(t.len(), 2);
        let a = t.lookup("tok1").unwrap();
        assert_eq!(a.username, "alice");
        assert_eq!(a.groups, vec!["dev", "ops"]);
        let b = t.lookup("tok2").unwrap();
        assert_eq!((b.username.as_str(), b.uid.as_str()), ("bob", "uid-2"));
        assert!(b.groups.is_empty());
        assert!(t.lookup("tok").is_none());
        assert!(t.lookup("tok11").is_none());
    }

    #[test]
    fn rejects_short_records() {
        let mut t = StaticTokens::default();
        assert_eq!(
            t.add_csv("tok,user\n"),
            Err(TokenFileError::TooFewColumns { line: 1, found: 2 })
        );
        assert_eq!(
            t.add_csv("tok,user,uid,\"open\n"),
            Err(TokenFileError::Unterminated { line: 1 })
        );
    }

    #[test]
    fn debug_never_shows_tokens() {
        let mut t = StaticTokens::default();
        t.insert("s3cret-token", UserInfo::default());
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn chain_adds_authenticated_group() {
        let mut t = StaticTokens::default();
        t.insert(
            "x",
            UserInfo {
                username: "admin".into(),
                groups: vec!["system:masters".into()],
                ..Default::default()
            },
        );
        let mut chain = super::super::AuthenticatorChain::default();
        chain.push(Box::new(t));
        let u = chain.authenticate("x", None).await.unwrap().user;
        assert_eq!(u.groups, vec!["system:masters", "system:authenticated"]);
        assert!(chain.authenticate("y", None).await.is_err());
    }
}
