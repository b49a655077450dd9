//! The key set in use, swapped whole when keys are reloaded or rotated: the issuer, the
//! authenticators, the legacy token controller and the OIDC documents all read it through
//! one [`Keyring`], so a swap takes effect for every one of them at the same instant.
//!
//! The set in use is made of two parts that change apart: the main set (the signing key
//! file with its verifying keys, or the rotated ring from the store) and the extra
//! verifying keys of `--service-account-key-file` when the ring comes from the store.
//! A reader takes the current [`KeySet`] with [`Keyring::current`] and uses that one set for
//! the whole operation (a token is signed, or checked, against a single consistent set).

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::keys::{KeySet, VerifyingKey};

/// The current key set; cheap to read on every request (no lock).
pub(crate) struct Keyring {
    current: ArcSwap<KeySet>,
    /// The main set and the extra keys it is merged with; writers only.
    parts: Mutex<(KeySet, Vec<VerifyingKey>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Keyring")
            .field(&*self.current.load())
            .finish()
    }
}

impl Keyring {
    pub(crate) fn new(keys: KeySet) -> Arc<Keyring> {
        Arc::new(Keyring {
            current: ArcSwap::from_pointee(keys.clone()),
            parts: Mutex::new((keys, Vec::new())),
        })
    }

    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Puts `keys` in use as the main set, for every later [`current`](Self::current).
    pub(crate) fn replace(&self, keys: KeySet) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.store(Arc::new(keys.with_extra(&parts.1)));
        parts.0 = keys;
    }

    /// Verifies with `extra` as well as the main set, from now on.
    pub(crate) fn set_extra(&self, extra: Vec<VerifyingKey>) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.store(Arc::new(parts.0.with_extra(&extra)));
        parts.1 = extra;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::keys::{SigningKey, generate_ec_p256_pem, generate_rsa_2048_pem};

    fn key(pem: String) -> SigningKey {
        SigningKey::from_pem(pem.as_bytes()).unwrap()
    }

    fn kids(ring: &Keyring) -> Vec<String> {
        let set = ring.current();
        set.candidates(None).map(|k| k.kid().to_string()).collect()
    }

    #[test]
    fn the_main_set_and_the_extra_keys_change_apart() {
        let (a, b, extra) = (
            key(generate_rsa_2048_pem().unwrap()),
            key(generate_ec_p256_pem().unwrap()),
            key(generate_ec_p256_pem().unwrap()).verifying_key(),
        );
        let (a_kid, b_kid, extra_kid) = (
            a.kid().to_string(),
            b.kid().to_string(),
            extra.kid().to_string(),
        );
        let ring = Keyring::new(KeySet::new(Some(a), vec![]));
        ring.set_extra(vec![extra.clone()]);
        assert_eq!(kids(&ring), [a_kid.clone(), extra_kid.clone()]);
        ring.replace(KeySet::new(Some(b), vec![]));
        assert_eq!(kids(&ring), [b_kid.clone(), extra_kid]);
        assert_eq!(ring.current().signing().unwrap().kid(), b_kid);
        ring.set_extra(vec![]);
        assert_eq!(kids(&ring), [b_kid]);
    }
}
