//! Static bearer tokens: the generated admin credential and kube-apiserver's
//! `--token-auth-file` CSV (`token,user,uid,"group1,group2"`, at least three columns;
//! `staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/tokenfile`).
//!
//! Owns: the token tables and their lookup. The admin credential is fixed for the life of
//! the process; the file's users are one [`TokenTable`] swapped whole when the file is
//! re-read ([`StaticTokens::replace_file`]), so a request sees the old users or the new ones,
//! never a mix. Must not: read files (the caller hands over the text) or put a token in an
//! error, a log line or a `Debug` output.
//!
//! Tokens are looked up by their SHA-256 digest, and the digest is compared in constant
//! time, so neither the map lookup nor the comparison leaks how much of a guess matched.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

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

/// Tokens and their users, by the SHA-256 digest of the token.
#[derive(Default)]
pub(crate) struct TokenTable {
    by_digest: HashMap<[u8; 32], UserInfo>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenTable({} users, tokens redacted)",
            self.by_digest.len()
        )
    }
}

impl TokenTable {
    pub(crate) fn insert(&mut self, token: &str, user: UserInfo) {
        self.by_digest.insert(sha256(token), user);
    }

    pub(crate) fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// The records of a token file. A later duplicate token replaces the earlier one, as
    /// kube-apiserver does (it only warns); a record without a token is skipped.
    pub(crate) fn from_csv(text: &str) -> Result<TokenTable, TokenFileError> {
        let mut table = TokenTable::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let fields = split_csv(raw).ok_or(TokenFileError::Unterminated { line })?;
            let [token, username, uid, rest @ ..] = fields.as_slice() else {
                return Err(TokenFileError::TooFewColumns {
                    line,
                    found: fields.len(),
                });
            };
            let groups = rest
                .first()
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if token.is_empty() {
                continue;
            }
            table.insert(
                token,
                UserInfo {
                    username: username.clone(),
                    uid: uid.clone(),
                    groups,
                    extra: Default::default(),
                },
            );
        }
        Ok(table)
    }

    /// One map lookup by the token's digest (a guess cannot steer its SHA-256 towards a
    /// stored one, so the lookup's timing says nothing about how much of it matched), then
    /// the digest compared in constant time. Not a scan of every user: this runs for every
    /// bearer token, service-account tokens included.
    fn lookup(&self, token: &str) -> Option<&UserInfo> {
        let want = sha256(token);
        let (digest, user) = self.by_digest.get_key_value(&want)?;
        bool::from(digest.ct_eq(&want)).then_some(user)
    }
}

/// The static tokens in use: the admin credential, fixed for the life of the process, and
/// the users of `--token-auth-file`, replaced whole when the file is re-read.
pub(crate) struct StaticTokens {
    fixed: TokenTable,
    file: ArcSwap<TokenTable>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StaticTokens({} fixed and {} file users, tokens redacted)",
            self.fixed.len(),
            self.file.load().len()
        )
    }
}

impl StaticTokens {
    pub(crate) fn new(fixed: TokenTable, file: TokenTable) -> StaticTokens {
        StaticTokens {
            fixed,
            file: ArcSwap::from_pointee(file),
        }
    }

    /// Puts the users of a re-read token file in use, for every later request.
    pub(crate) fn replace_file(&self, file: TokenTable) {
        self.file.store(Arc::new(file));
    }

    /// The fixed table first: a token file cannot take over the admin credential.
    fn lookup(&self, token: &str) -> Option<UserInfo> {
        if let Some(user) = self.fixed.lookup(token) {
            return Some(user.clone());
        }
        self.file.load().lookup(token).cloned()
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
            Some(user) => TokenOutcome::User(Authenticated {
                user,
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

    fn user(name: &str) -> UserInfo {
        UserInfo {
            username: name.into(),
            ..Default::default()
        }
    }

    fn admin_only() -> TokenTable {
        let mut fixed = TokenTable::default();
        fixed.insert("admin-tok", user("admin"));
        fixed
    }

    fn name(t: &StaticTokens, token: &str) -> Option<String> {
        t.lookup(token).map(|u| u.username)
    }

    #[test]
    fn parses_kube_apiserver_token_files() {
        let t = TokenTable::from_csv("tok1,alice,uid-1,\"dev,ops\"\n\ntok2, bob, uid-2\n").unwrap();
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
        assert_eq!(
            TokenTable::from_csv("tok,alice,uid\ntok2,user\n").unwrap_err(),
            TokenFileError::TooFewColumns { line: 2, found: 2 }
        );
        assert_eq!(
            TokenTable::from_csv("tok,user,uid,\"open\n").unwrap_err(),
            TokenFileError::Unterminated { line: 1 }
        );
    }

    #[test]
    fn a_replaced_file_takes_effect_and_the_admin_stays() {
        let file = TokenTable::from_csv("tok-a,alice,1\ntok-b,bob,2\n").unwrap();
        let t = StaticTokens::new(admin_only(), file);
        assert_eq!(name(&t, "tok-a").as_deref(), Some("alice"));
        t.replace_file(TokenTable::from_csv("tok-b,bob,2\ntok-c,carol,3\n").unwrap());
        assert_eq!(name(&t, "tok-a"), None, "removed");
        assert_eq!(name(&t, "tok-c").as_deref(), Some("carol"), "added");
        assert_eq!(name(&t, "tok-b").as_deref(), Some("bob"), "kept");
        t.replace_file(TokenTable::default());
        assert_eq!(name(&t, "admin-tok").as_deref(), Some("admin"));
        assert_eq!(name(&t, "tok-b"), None);
    }

    #[test]
    fn a_token_file_cannot_take_over_the_admin_token() {
        let file = TokenTable::from_csv("admin-tok,mallory,6,system:masters\n").unwrap();
        let t = StaticTokens::new(admin_only(), file);
        assert_eq!(name(&t, "admin-tok").as_deref(), Some("admin"));
    }

    #[test]
    fn debug_never_shows_tokens() {
        let file = TokenTable::from_csv("s3cret-token,alice,1\n").unwrap();
        let t = StaticTokens::new(admin_only(), file);
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("admin-tok"),
            "{shown}"
        );
        assert!(shown.contains("1 fixed and 1 file users"), "{shown}");
        let err = TokenTable::from_csv("s3cret-token,alice\n").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[tokio::test]
    async fn chain_adds_authenticated_group() {
        let mut fixed = TokenTable::default();
        fixed.insert(
            "x",
            UserInfo {
                username: "admin".into(),
                groups: vec!["system:masters".into()],
                ..Default::default()
            },
        );
        let t = Arc::new(StaticTokens::new(fixed, TokenTable::default()));
        let mut chain = super::super::AuthenticatorChain::default();
        chain.push(Box::new(t.clone()));
        let u = chain.authenticate("x", None).await.unwrap().user;
        assert_eq!(u.groups, vec!["system:masters", "system:authenticated"]);
        assert!(chain.authenticate("y", None).await.is_err());
        // The chain holds the same tokens the reload replaces.
        t.replace_file(TokenTable::from_csv("y,yves,7\n").unwrap());
        assert_eq!(
            chain.authenticate("y", None).await.unwrap().user.username,
            "yves"
        );
    }
}
