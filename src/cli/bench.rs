//! The crypto reference of `tokenwarden bench`: the server's own key code (`tokens::keys`)
//! behind the `tokenwarden_bench::Crypto` trait, so that the client crate measures what the
//! server runs without depending on the server crate. It must hold no benchmark logic.

use tokenwarden_bench::{Algorithm, Crypto, ReferenceKey};

use crate::tokens::keys::{self, SigningKey, VerifyingKey};

/// `tokens::keys` as the benchmark's in-process reference.
pub(super) struct ServerKeys;

impl Crypto for ServerKeys {
    fn generate_key_pem(&self, alg: Algorithm) -> anyhow::Result<Option<String>> {
        Ok(match alg {
            Algorithm::RS256 => Some(keys::generate_rsa_2048_pem()?),
            Algorithm::ES256 => Some(keys::generate_ec_p256_pem()?),
            Algorithm::ES384 | Algorithm::ES512 => None,
        })
    }

    fn signing_key(&self, pem: &str) -> anyhow::Result<Box<dyn ReferenceKey>> {
        let key = SigningKey::from_pem(pem.as_bytes())?;
        let public = key.verifying_key();
        Ok(Box::new(KeyPair { key, public }))
    }
}

/// A parsed signing key and its public half, each parsed once.
struct KeyPair {
    key: SigningKey,
    public: VerifyingKey,
}

impl ReferenceKey for KeyPair {
    fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self.key.sign(message)?)
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.public.verify(message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_signs_and_verifies_with_server_keys() {
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let pem = ServerKeys.generate_key_pem(alg).unwrap().unwrap();
            let key = ServerKeys.signing_key(&pem).unwrap();
            let signature = key.sign(b"message").unwrap();
            assert!(key.verify(b"message", &signature), "{alg}");
            assert!(!key.verify(b"massage", &signature), "{alg}");
        }
        assert!(
            ServerKeys
                .generate_key_pem(Algorithm::ES384)
                .unwrap()
                .is_none()
        );
    }
}
