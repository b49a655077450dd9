//! Staged rotation of the generated service-account keys, as a value: [`SigningKeys`] is the
//! document the store keeps (one record for the whole ring), and every change to it is a
//! pure function of the document and the time, so the leader that drives the stages, the
//! replicas that follow them and `tokenwarden keys status` all read one truth.
//!
//! A key goes through three stages, in this order, never back:
//!
//! 1. **published**: in `/openid/v1/jwks` and verifying, while the key before it still
//!    signs; verifiers that cache the JWKS fetch it before any token carries its kid.
//! 2. **signing**: from `signsFrom` (`--publish-ahead` after the rotation, 24 h by default)
//!    every new token is signed with it; the key it replaces becomes *verifying*.
//! 3. **verifying**: no longer signs, still verifies, until `retiresAt`: the time it stopped
//!    signing plus the longest lifetime a token it signed can have ([`TokenLifetimes`]).
//!    Then it leaves the ring, the JWKS and verification.
//!
//! Private keys are sealed with AES-256-GCM under a key-encryption key (KEK) read from a
//! file, with the kid as associated data (a sealed key cannot be moved to another record);
//! the store never holds one in the clear. Owns: the document, the stages, sealing.
//! Must not: do I/O (the `controllers::signing_keys` loop reads and writes the record).

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::keys::{KeySet, SigningKey};

/// Bytes of a KEK.
pub(crate) const KEK_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RotationError {
    #[error("a rotation is already under way: key {kid} is published and signs from {signs_from}")]
    InProgress { kid: String, signs_from: Timestamp },
    #[error(
        "key {kid} is sealed with key-encryption key {sealed_with}, but this server has {ours}: every replica needs the same key-encryption key file (--cluster-from copies it), and a restored database the key-encryption.key of the data directory it came from"
    )]
    OtherKek {
        kid: String,
        sealed_with: String,
        ours: String,
    },
    #[error("key {0} cannot be unsealed: the record or the key-encryption key is damaged")]
    Unseal(String),
    #[error("key {0}: {1}")]
    Key(String, String),
    #[error("the key ring has no signing key")]
    NoSigningKey,
    #[error("a key-encryption key must be {KEK_LEN} bytes, base64-encoded; found {0} bytes")]
    KekLength(usize),
    #[error("the key-encryption key is not base64: {0}")]
    KekEncoding(String),
    #[error("sealing failed")]
    Seal,
}

/// The key-encryption key. Its id is a digest prefix, so a record says which KEK sealed it
/// without revealing anything about it.
pub(crate) struct Kek {
    key: RandomizedNonceKey,
    id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).finish()
    }
}

impl Kek {
    /// A KEK file's content: base64 of [`KEK_LEN`] random bytes (surrounding space ignored).
    pub(crate) fn from_file_content(text: &str) -> Result<Kek, RotationError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| RotationError::KekEncoding(e.to_string()))?;
        if bytes.len() != KEK_LEN {
            return Err(RotationError::KekLength(bytes.len()));
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| RotationError::Seal)?;
        let d = digest::digest(&digest::SHA256, &bytes);
        let id = hex(&d.as_ref()[..6]);
        Ok(Kek { key, id })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, kid: &str, plain: &[u8]) -> Result<Sealed, RotationError> {
        let mut data = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut data)
            .map_err(|_| RotationError::Seal)?;
        Ok(Sealed {
            kek: self.id.clone(),
            nonce: STANDARD.encode(nonce.as_ref()),
            ciphertext: STANDARD.encode(&data),
        })
    }

    fn open(&self, kid: &str, sealed: &Sealed) -> Result<Vec<u8>, RotationError> {
        if sealed.kek != self.id {
            return Err(RotationError::OtherKek {
                kid: kid.to_string(),
                sealed_with: sealed.kek.clone(),
                ours: self.id.clone(),
            });
        }
        let damaged = || RotationError::Unseal(kid.to_string());
        let nonce = STANDARD.decode(&sealed.nonce).map_err(|_| damaged())?;
        let nonce = Nonce::try_assume_unique_for_key(&nonce).map_err(|_| damaged())?;
        let mut data = STANDARD.decode(&sealed.ciphertext).map_err(|_| damaged())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut data)
            .map_err(|_| damaged())?;
        Ok(plain.to_vec())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A private key sealed under a KEK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sealed {
    kek: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Stage {
    Published,
    Signing,
    Verifying,
}

impl Stage {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::Published => "published",
            Stage::Signing => "signing",
            Stage::Verifying => "verifying",
        }
    }
}

/// What is public about a key of the ring (`tokenwarden keys status` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyInfo {
    pub(crate) kid: String,
    pub(crate) algorithm: String,
    pub(crate) stage: Stage,
    pub(crate) created: Timestamp,
    /// When it signs (published), or began to (signing, verifying).
    pub(crate) signs_from: Timestamp,
    /// When it leaves the ring (verifying only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retires_at: Option<Timestamp>,
}

/// One key of the ring: its public facts and its sealed private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    #[serde(flatten)]
    pub(crate) info: KeyInfo,
    sealed: Sealed,
}

/// The longest a token signed now can stay valid, which is how long a key verifies after
/// it stops signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenLifetimes {
    pub(crate) longest: SignedDuration,
}

impl TokenLifetimes {
    /// From the server's token flags: a TokenRequest lasts at most
    /// `--service-account-max-token-expiration` (2^32 s, kube-apiserver's validation bound,
    /// when unset), and with `--service-account-extend-token-expiration` the admission-injected
    /// token lasts a year whatever that maximum is. A minute is added for clock skew.
    pub(crate) fn from_flags(max_expiration_seconds: Option<i64>, extend: bool) -> Self {
        let max = max_expiration_seconds.unwrap_or(1_i64 << 32);
        let extended = if extend {
            crate::wellknown::TOKEN_EXPIRATION_EXTENSION_SECONDS
        } else {
            0
        };
        TokenLifetimes {
            longest: SignedDuration::from_secs(max.max(extended) + 60),
        }
    }
}

/// The whole ring, as stored: keys in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SigningKeys {
    pub(crate) keys: Vec<KeyRecord>,
}

impl SigningKeys {
    /// A ring holding `pem` as its signing key (the data directory's `sa.key` on first use).
    pub(crate) fn first(pem: &[u8], kek: &Kek, now: Timestamp) -> Result<Self, RotationError> {
        let mut ring = SigningKeys::default();
        ring.keys.push(record(pem, kek, now, Stage::Signing, now)?);
        Ok(ring)
    }

    /// Step 1: `pem` is published now and signs `publish_ahead` later.
    pub(crate) fn rotate(
        &mut self,
        pem: &[u8],
        kek: &Kek,
        now: Timestamp,
        publish_ahead: SignedDuration,
    ) -> Result<&KeyRecord, RotationError> {
        if let Some(k) = self.keys.iter().find(|k| k.info.stage == Stage::Published) {
            return Err(RotationError::InProgress {
                kid: k.info.kid.clone(),
                signs_from: k.info.signs_from,
            });
        }
        let signs_from = now.saturating_add(publish_ahead).unwrap_or(now);
        let new = record(pem, kek, now, Stage::Published, signs_from)?;
        self.keys.push(new);
        Ok(&self.keys[self.keys.len() - 1])
    }

    /// Steps 2 and 3 that are due at `now`; whether anything changed.
    pub(crate) fn advance(&mut self, now: Timestamp, lifetimes: TokenLifetimes) -> bool {
        let mut changed = false;
        let due = self
            .keys
            .iter()
            .position(|k| k.info.stage == Stage::Published && k.info.signs_from <= now);
        if let Some(i) = due {
            for k in self
                .keys
                .iter_mut()
                .filter(|k| k.info.stage == Stage::Signing)
            {
                k.info.stage = Stage::Verifying;
                k.info.retires_at = Some(now.saturating_add(lifetimes.longest).unwrap_or(now));
            }
            self.keys[i].info.stage = Stage::Signing;
            self.keys[i].info.signs_from = now;
            changed = true;
        }
        let before = self.keys.len();
        self.keys.retain(|k| {
            !(k.info.stage == Stage::Verifying && k.info.retires_at.is_some_and(|at| at <= now))
        });
        changed || self.keys.len() != before
    }

    /// The key set to use: the signing-stage key signs, every key verifies.
    pub(crate) fn key_set(&self, kek: &Kek) -> Result<KeySet, RotationError> {
        let mut signing = None;
        let mut verifying = Vec::new();
        for k in &self.keys {
            let pem = kek.open(&k.info.kid, &k.sealed)?;
            let key = SigningKey::from_pem(&pem)
                .map_err(|e| RotationError::Key(k.info.kid.clone(), e.to_string()))?;
            verifying.push(key.verifying_key());
            if k.info.stage == Stage::Signing {
                signing = Some(key);
            }
        }
        let signing = signing.ok_or(RotationError::NoSigningKey)?;
        Ok(KeySet::new(Some(signing), verifying))
    }

    /// The next time [`advance`](Self::advance) has something to do.
    pub(crate) fn next_change(&self) -> Option<Timestamp> {
        self.keys
            .iter()
            .filter_map(|k| match k.info.stage {
                Stage::Published => Some(k.info.signs_from),
                Stage::Verifying => k.info.retires_at,
                Stage::Signing => None,
            })
            .min()
    }
}

fn record(
    pem: &[u8],
    kek: &Kek,
    now: Timestamp,
    stage: Stage,
    signs_from: Timestamp,
) -> Result<KeyRecord, RotationError> {
    let key =
        SigningKey::from_pem(pem).map_err(|e| RotationError::Key("new".into(), e.to_string()))?;
    let kid = key.kid().to_string();
    Ok(KeyRecord {
        sealed: kek.seal(&kid, pem)?,
        info: KeyInfo {
            algorithm: key.algorithm().as_str().to_string(),
            kid,
            stage,
            created: now,
            signs_from,
            retires_at: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::keys::{generate_ec_p256_pem, generate_rsa_2048_pem};

    /// A new KEK file's content.
    fn generate_kek() -> Result<String, RotationError> {
        let mut bytes = [0u8; KEK_LEN];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RotationError::Seal)?;
        Ok(format!("{}\n", STANDARD.encode(bytes)))
    }

    fn kek() -> Kek {
        Kek::from_file_content(&generate_kek().unwrap()).unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const LIFE: TokenLifetimes = TokenLifetimes {
        longest: SignedDuration::from_secs(3600),
    };

    fn stages(r: &SigningKeys) -> Vec<&'static str> {
        r.keys.iter().map(|k| k.info.stage.as_str()).collect()
    }

    #[test]
    fn a_rotation_goes_through_every_stage_in_order() {
        let kek = kek();
        let old = generate_rsa_2048_pem().unwrap();
        let new = generate_ec_p256_pem().unwrap();
        let mut ring = SigningKeys::first(old.as_bytes(), &kek, at(0)).unwrap();
        let old_kid = ring.keys[0].info.kid.clone();
        let new_kid = ring
            .rotate(new.as_bytes(), &kek, at(10), SignedDuration::from_secs(100))
            .unwrap()
            .info
            .kid
            .clone();
        // 1. Published: both verify (and are in the JWKS), the old one signs.
        assert_eq!(stages(&ring), ["signing", "published"]);
        assert!(!ring.advance(at(109), LIFE), "not yet due");
        let set = ring.key_set(&kek).unwrap();
        assert_eq!(set.signing().unwrap().kid(), old_kid);
        assert_eq!(set.candidates(None).count(), 2);
        assert_eq!(ring.next_change(), Some(at(110)));
        // A second rotation waits for this one.
        assert!(matches!(
            ring.rotate(old.as_bytes(), &kek, at(20), SignedDuration::ZERO),
            Err(RotationError::InProgress { .. })
        ));
        // 2. Signing: the new key signs; the old one verifies until a token lifetime later.
        assert!(ring.advance(at(110), LIFE));
        assert_eq!(stages(&ring), ["verifying", "signing"]);
        assert_eq!(ring.keys[0].info.retires_at, Some(at(110 + 3600)));
        let set = ring.key_set(&kek).unwrap();
        assert_eq!(set.signing().unwrap().kid(), new_kid);
        assert_eq!(set.candidates(Some(&old_kid)).count(), 1);
        // 3. Retired: gone from the ring.
        assert!(!ring.advance(at(110 + 3599), LIFE));
        assert!(ring.advance(at(110 + 3600), LIFE));
        assert_eq!(stages(&ring), ["signing"]);
        assert_eq!(ring.keys[0].info.kid, new_kid);
        assert_eq!(ring.next_change(), None);
    }

    #[test]
    fn the_document_round_trips_and_never_holds_a_key_in_the_clear() {
        let kek = kek();
        let pem = generate_rsa_2048_pem().unwrap();
        let ring = SigningKeys::first(pem.as_bytes(), &kek, at(0)).unwrap();
        let json = serde_json::to_string(&ring).unwrap();
        assert!(!json.contains("PRIVATE KEY"), "{json}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!json.contains(&body[..40]));
        let back: SigningKeys = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ring);
        assert!(back.key_set(&kek).is_ok());
    }

    #[test]
    fn another_kek_or_a_moved_record_cannot_open_a_key() {
        let kek = kek();
        let ring =
            SigningKeys::first(generate_rsa_2048_pem().unwrap().as_bytes(), &kek, at(0)).unwrap();
        assert!(matches!(
            ring.key_set(&self::kek()),
            Err(RotationError::OtherKek { .. })
        ));
        // The kid is the associated data: a sealed key under another kid fails.
        let mut moved = ring.clone();
        moved.keys[0].info.kid = "other".into();
        assert!(matches!(moved.key_set(&kek), Err(RotationError::Unseal(_))));
    }

    #[test]
    fn kek_files_are_checked() {
        assert!(matches!(
            Kek::from_file_content("c2hvcnQ="),
            Err(RotationError::KekLength(5))
        ));
        assert!(matches!(
            Kek::from_file_content("not base64!"),
            Err(RotationError::KekEncoding(_))
        ));
        let text = generate_kek().unwrap();
        assert_eq!(
            Kek::from_file_content(&text).unwrap().id(),
            Kek::from_file_content(&format!("  {}  ", text.trim()))
                .unwrap()
                .id()
        );
    }

    #[test]
    fn lifetimes_cover_extended_tokens() {
        let year = crate::wellknown::TOKEN_EXPIRATION_EXTENSION_SECONDS;
        assert_eq!(
            TokenLifetimes::from_flags(Some(86_400), true).longest,
            SignedDuration::from_secs(year + 60)
        );
        assert_eq!(
            TokenLifetimes::from_flags(Some(86_400), false).longest,
            SignedDuration::from_secs(86_400 + 60)
        );
        assert_eq!(
            TokenLifetimes::from_flags(None, true).longest,
            SignedDuration::from_secs((1 << 32) + 60)
        );
    }
}
