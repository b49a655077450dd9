//! Service-account signing and verifying keys: PEM loading, the Kubernetes key id, JWKS
//! entries, and the raw JWS signature operations.
//!
//! Every key is parsed exactly once, when it is loaded, into an aws-lc-rs key object; the
//! per-token paths (`SigningKey::sign`, `VerifyingKey::verify`) never touch DER or PEM again
//! (`shared/reference/performance.md` A.2: re-parsing halves RS256 signing throughput).
//!
//! This module does no I/O (callers pass file contents in), never logs, and never prints key
//! material: `Debug` shows the algorithm and the key id only. It knows nothing about JWT
//! claims or the compact serialization (that is `tokens::jws`).
//!
//! Mirrors `pkg/serviceaccount/jwt.go` (algorithm per key type, `keyIDFromPublicKey`),
//! `staging/src/k8s.io/client-go/util/keyutil/key.go` (`ParsePrivateKeyPEM`,
//! `ParsePublicKeysPEM`) and `pkg/serviceaccount/openidmetadata.go` (JWKS entries).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _};
use aws_lc_rs::{digest, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// A JWS signature algorithm Kubernetes issues service-account tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Algorithm {
    RS256,
    ES256,
    ES384,
    ES512,
}

impl Algorithm {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
        }
    }

    /// Exact, case-sensitive match (RFC 7515 algorithm names are case-sensitive).
    pub(crate) fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "RS256" => Some(Algorithm::RS256),
            "ES256" => Some(Algorithm::ES256),
            "ES384" => Some(Algorithm::ES384),
            "ES512" => Some(Algorithm::ES512),
            _ => None,
        }
    }

    /// The JWK `crv` of an ECDSA algorithm.
    fn curve_name(self) -> Option<&'static str> {
        match self {
            Algorithm::RS256 => None,
            Algorithm::ES256 => Some("P-256"),
            Algorithm::ES384 => Some("P-384"),
            Algorithm::ES512 => Some("P-521"),
        }
    }

    /// Bytes of one curve coordinate, and of each half of a fixed-size (r||s) signature.
    fn coordinate_len(self) -> usize {
        match self {
            Algorithm::RS256 => 0,
            Algorithm::ES256 => 32,
            Algorithm::ES384 => 48,
            Algorithm::ES512 => 66,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    fn ecdsa_signing(self) -> Option<&'static signature::EcdsaSigningAlgorithm> {
        match self {
            Algorithm::RS256 => None,
            Algorithm::ES256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            Algorithm::ES384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            Algorithm::ES512 => Some(&signature::ECDSA_P521_SHA512_FIXED_SIGNING),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RSA sizes aws-lc-rs signs and verifies with. Kubernetes (Go) also takes 1024-bit keys;
/// we refuse them rather than verify with a key that weak.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// keyutil.ParsePrivateKeyPEM
    #[error("data does not contain a valid RSA or ECDSA private key")]
    NoPrivateKey,
    /// keyutil.ParsePublicKeysPEM
    #[error("data does not contain any valid RSA or ECDSA public keys")]
    NoPublicKeys,
    /// jwt.go signerFromECDSAPrivateKey
    #[error("unknown private key curve, must be 256, 384, or 521")]
    UnknownPrivateKeyCurve,
    /// openidmetadata.go algorithmFromPublicKey uses the same wording for public keys.
    #[error("unknown public key curve, must be 256, 384, or 521")]
    UnknownPublicKeyCurve,
    /// jwt.go JWTTokenGenerator, for e.g. an Ed25519 PKCS#8 key.
    #[error("unknown private key type, must be an RSA or ECDSA private key")]
    UnsupportedKeyType,
    #[error(
        "RSA key of {bits} bits is not supported, must be {RSA_MIN_BITS} to {RSA_MAX_BITS} bits"
    )]
    RsaKeySize { bits: usize },
    #[error("ECDSA public key is not an uncompressed point on its curve")]
    EcPoint,
    #[error("invalid {0} key")]
    Invalid(&'static str),
    #[error("signing failed")]
    Sign,
    #[error("key generation failed")]
    Generate,
}

/// A private key, parsed once, that signs service-account tokens.
pub(crate) struct SigningKey {
    private: PrivateKey,
    public: VerifyingKey,
    /// base64url(`{"alg":"…","kid":"…"}`), built once: the JWS header never changes per key.
    header_b64: String,
}

enum PrivateKey {
    Rsa(rsa::KeyPair),
    Ec(signature::EcdsaKeyPair, Algorithm),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// PEM: "RSA PRIVATE KEY" (PKCS#1), "PRIVATE KEY" (PKCS#8, RSA or EC), "EC PRIVATE KEY"
    /// (SEC1). First private key in the file; other blocks (certificates, "EC PARAMETERS")
    /// are skipped, as keyutil.ParsePrivateKeyPEM does.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        for block in pem_blocks(pem) {
            let parsed = match block.label.as_str() {
                "RSA PRIVATE KEY" => parse_pkcs1_private(&block.der),
                "EC PRIVATE KEY" => parse_sec1_private(&block.der),
                "PRIVATE KEY" => parse_pkcs8_private(&block.der),
                _ => None,
            };
            if let Some(result) = parsed {
                return SigningKey::new(result?);
            }
        }
        Err(KeyError::NoPrivateKey)
    }

    fn new(private: PrivateKey) -> Result<SigningKey, KeyError> {
        let public = match &private {
            PrivateKey::Rsa(pair) => VerifyingKey::from_rsa(pair.public_key())?,
            PrivateKey::Ec(pair, alg) => {
                let alg = *alg;
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| KeyError::Invalid("ECDSA"))?;
                VerifyingKey::from_ec_spki(alg, spki.as_ref())?
            }
        };
        // Field order alg, kid and no typ: what kube-apiserver (go-jose) writes.
        let header = serde_json::json!({"alg": public.algorithm().as_str(), "kid": public.kid()});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(SigningKey {
            private,
            public,
            header_b64,
        })
    }

    /// RSA (any accepted size) → RS256; P-256 → ES256; P-384 → ES384; P-521 → ES512.
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    pub(crate) fn kid(&self) -> &str {
        self.public.kid()
    }

    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    /// The encoded JWS protected header for this key, ready to be joined with '.'.
    pub(crate) fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// Length of a signature from this key (RSA: the modulus; ECDSA: r||s).
    pub(crate) fn signature_len(&self) -> usize {
        match &self.private {
            PrivateKey::Rsa(pair) => pair.public_modulus_len(),
            PrivateKey::Ec(..) => 2 * self.algorithm().coordinate_len(),
        }
    }

    /// JWS signature bytes: RSA PKCS#1 v1.5 SHA-256; ECDSA fixed-size r||s (not ASN.1).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        // aws-lc-rs ignores the rng argument (it uses its own DRBG); one is required by the API.
        let rng = SystemRandom::new();
        match &self.private {
            PrivateKey::Rsa(pair) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| KeyError::Sign)?;
                Ok(out)
            }
            PrivateKey::Ec(pair, _) => pair
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
        }
    }
}

/// A public key, parsed once, that verifies service-account tokens. Cheap to clone.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    inner: Arc<VerifyingInner>,
}

struct VerifyingInner {
    alg: Algorithm,
    kid: String,
    key: signature::ParsedPublicKey,
    jwk: serde_json::Value,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.inner.alg)
            .field("kid", &self.inner.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Every key in a PEM file, as keyutil.ParsePublicKeysPEM: block labels are ignored and
    /// each block is tried as a private key (PKCS#1, PKCS#8, SEC1; reduced to its public
    /// half), a "PUBLIC KEY" (SPKI), an X.509 certificate, or an "RSA PUBLIC KEY" (PKCS#1).
    /// Blocks that are none of these, or keys of other types (Ed25519), are skipped as
    /// upstream does; an RSA key of an unsupported size or an EC key on another curve is an
    /// error instead, so a configured key is never dropped silently.
    pub(crate) fn from_pem_all(pem: &[u8]) -> Result<Vec<VerifyingKey>, KeyError> {
        let mut keys = Vec::new();
        for block in pem_blocks(pem) {
            if let Some(key) = public_from_der(&block.der) {
                keys.push(key?);
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoPublicKeys);
        }
        Ok(keys)
    }

    fn from_rsa(public: &rsa::PublicKey) -> Result<VerifyingKey, KeyError> {
        let n = public.modulus().big_endian_without_leading_zero();
        let e = public.exponent().big_endian_without_leading_zero();
        let bits = n
            .first()
            .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaKeySize { bits });
        }
        // Re-encoded by aws-lc as PKIX DER, byte for byte what Go's MarshalPKIXPublicKey
        // gives, whatever form the key came in.
        let spki: PublicKeyX509Der<'static> =
            public.as_der().map_err(|_| KeyError::Invalid("RSA"))?;
        let kid = kid_of_spki(spki.as_ref());
        let key = signature::ParsedPublicKey::new(Algorithm::RS256.verification(), spki.as_ref())
            .map_err(|_| KeyError::Invalid("RSA"))?;
        let jwk = serde_json::json!({
            "use": "sig",
            "kty": "RSA",
            "kid": kid,
            "alg": Algorithm::RS256.as_str(),
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        });
        Ok(VerifyingKey::wrap(Algorithm::RS256, kid, key, jwk))
    }

    fn from_ec_spki(alg: Algorithm, spki: &[u8]) -> Result<VerifyingKey, KeyError> {
        let verification = alg.verification();
        let parsed = signature::ParsedPublicKey::new(verification, spki)
            .map_err(|_| KeyError::Invalid("ECDSA"))?;
        // Canonical PKIX DER, so the kid does not depend on how the input was encoded.
        let canonical = parsed.as_der().map_err(|_| KeyError::Invalid("ECDSA"))?;
        let point = der::spki_bit_string(canonical.as_ref()).ok_or(KeyError::EcPoint)?;
        let c = alg.coordinate_len();
        // Only uncompressed points, as Go's x509 parser; JWK needs both coordinates.
        if point.len() != 1 + 2 * c || point.first() != Some(&0x04) {
            return Err(KeyError::EcPoint);
        }
        let kid = kid_of_spki(canonical.as_ref());
        let key = signature::ParsedPublicKey::new(verification, canonical.as_ref())
            .map_err(|_| KeyError::Invalid("ECDSA"))?;
        let jwk = serde_json::json!({
            "use": "sig",
            "kty": "EC",
            "kid": kid,
            "crv": alg.curve_name(),
            "alg": alg.as_str(),
            "x": URL_SAFE_NO_PAD.encode(&point[1..1 + c]),
            "y": URL_SAFE_NO_PAD.encode(&point[1 + c..]),
        });
        Ok(VerifyingKey::wrap(alg, kid, key, jwk))
    }

    fn wrap(
        alg: Algorithm,
        kid: String,
        key: signature::ParsedPublicKey,
        jwk: serde_json::Value,
    ) -> VerifyingKey {
        VerifyingKey {
            inner: Arc::new(VerifyingInner { alg, kid, key, jwk }),
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.inner.alg
    }

    pub(crate) fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// True when `signature` is this key's signature of `message` under its own algorithm.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.inner.key.verify_sig(message, signature).is_ok()
    }

    /// The JWKS entry, as openidmetadata.go publishes it (field order as there).
    pub(crate) fn jwk(&self) -> serde_json::Value {
        self.inner.jwk.clone()
    }
}

/// `keyIDFromPublicKey`: base64url without padding of SHA-256 over the PKIX DER.
fn kid_of_spki(spki: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, spki))
}

/// The keys a server verifies with, and the one it signs with. Immutable: key rotation
/// builds a new set and swaps it in (`tokens::keyring`). Cheap to clone.
#[derive(Clone)]
pub(crate) struct KeySet {
    signing: Option<Arc<SigningKey>>,
    verifying: Vec<VerifyingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("signing", &self.signing)
            .field("verifying", &self.verifying)
            .finish()
    }
}

impl KeySet {
    /// The signing key's public half is added to the verifying keys if no key with its kid
    /// is there, so tokens this server issues always verify here.
    pub(crate) fn new(signing: Option<SigningKey>, mut verifying: Vec<VerifyingKey>) -> KeySet {
        if let Some(s) = &signing
            && !verifying.iter().any(|k| k.kid() == s.kid())
        {
            verifying.push(s.verifying_key());
        }
        KeySet {
            signing: signing.map(Arc::new),
            verifying,
        }
    }

    /// This set with `extra` verifying too (those whose kid it has already are left out).
    pub(crate) fn with_extra(&self, extra: &[VerifyingKey]) -> KeySet {
        let mut set = self.clone();
        for k in extra {
            if !set.verifying.iter().any(|v| v.kid() == k.kid()) {
                set.verifying.push(k.clone());
            }
        }
        set
    }

    pub(crate) fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_deref()
    }

    /// Verification candidates (jwt.go staticPublicKeysGetter.GetPublicKeys): all keys when
    /// kid is None/empty, else the keys whose kid matches. No allocation.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        let wanted = kid.filter(|k| !k.is_empty());
        self.verifying
            .iter()
            .filter(move |k| wanted.is_none_or(|w| k.kid() == w))
    }

    /// `{"keys":[...]}` with every verifying key, in order.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self.verifying.iter().map(VerifyingKey::jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// `id_token_signing_alg_values_supported`: sorted (as strings), unique.
    pub(crate) fn algorithms(&self) -> Vec<&'static str> {
        let set: BTreeSet<&'static str> = self
            .verifying
            .iter()
            .map(|k| k.algorithm().as_str())
            .collect();
        set.into_iter().collect()
    }
}

/// A new RSA-2048 private key as PKCS#8 PEM ("PRIVATE KEY"); for test fixtures and the
/// in-process crypto reference of `tokenwarden bench` (`pki` generates the server's own
/// key on first start).
pub(crate) fn generate_rsa_2048_pem() -> Result<String, KeyError> {
    let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
    let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
        pair.as_der().map_err(|_| KeyError::Generate)?;
    Ok(pem_encode("PRIVATE KEY", der.as_ref()))
}

/// A new ECDSA P-256 private key as PKCS#8 PEM ("PRIVATE KEY"); for test fixtures and
/// `tokenwarden bench`.
pub(crate) fn generate_ec_p256_pem() -> Result<String, KeyError> {
    let pair = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| KeyError::Generate)?;
    let doc = pair.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
    Ok(pem_encode("PRIVATE KEY", doc.as_ref()))
}

// ---- key parsing -------------------------------------------------------------------------
//
// Each parser returns None when the DER is not of its form (the caller moves on), and
// Some(Err) when it is a key of that form that we cannot use (the caller stops).

/// What an AlgorithmIdentifier names.
enum KeyType {
    Rsa,
    /// An EC key; None when the curve is not P-256/P-384/P-521.
    Ec(Option<Algorithm>),
    Other,
}

fn parse_pkcs1_private(der: &[u8]) -> Option<Result<PrivateKey, KeyError>> {
    let bits = der::pkcs1_private_modulus_bits(der)?;
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Some(Err(KeyError::RsaKeySize { bits }));
    }
    rsa::KeyPair::from_der(der)
        .ok()
        .map(|k| Ok(PrivateKey::Rsa(k)))
}

fn parse_sec1_private(der: &[u8]) -> Option<Result<PrivateKey, KeyError>> {
    let Some(alg) = der::sec1_curve(der)? else {
        return Some(Err(KeyError::UnknownPrivateKeyCurve));
    };
    let signing = alg.ecdsa_signing()?;
    signature::EcdsaKeyPair::from_private_key_der(signing, der)
        .ok()
        .map(|k| Ok(PrivateKey::Ec(k, alg)))
}

fn parse_pkcs8_private(der: &[u8]) -> Option<Result<PrivateKey, KeyError>> {
    let (key_type, inner) = der::pkcs8(der)?;
    match key_type {
        KeyType::Rsa => {
            let bits = der::pkcs1_private_modulus_bits(inner)?;
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Some(Err(KeyError::RsaKeySize { bits }));
            }
            rsa::KeyPair::from_pkcs8(der)
                .ok()
                .map(|k| Ok(PrivateKey::Rsa(k)))
        }
        KeyType::Ec(None) => Some(Err(KeyError::UnknownPrivateKeyCurve)),
        KeyType::Ec(Some(alg)) => {
            let signing = alg.ecdsa_signing()?;
            signature::EcdsaKeyPair::from_pkcs8(signing, der)
                .ok()
                .map(|k| Ok(PrivateKey::Ec(k, alg)))
        }
        KeyType::Other => Some(Err(KeyError::UnsupportedKeyType)),
    }
}

/// One PEM block's DER as a public key, trying the forms keyutil.ParsePublicKeysPEM does.
fn public_from_der(der: &[u8]) -> Option<Result<VerifyingKey, KeyError>> {
    let private = match der::pkcs8(der) {
        // Other PKCS#8 key types (Ed25519) are skipped here, as upstream does.
        Some((KeyType::Other, _)) => return None,
        Some(_) => parse_pkcs8_private(der),
        None => parse_pkcs1_private(der).or_else(|| parse_sec1_private(der)),
    };
    if let Some(private) = private {
        return Some(private.and_then(SigningKey::new).map(|k| k.public));
    }
    if let Some(spki) = der::whole_spki(der).or_else(|| der::certificate_spki(der)) {
        return public_from_spki(spki);
    }
    if der::is_pkcs1_public(der) {
        return Some(
            rsa::PublicKey::from_der(der)
                .map_err(|_| KeyError::Invalid("RSA"))
                .and_then(|k| VerifyingKey::from_rsa(&k)),
        );
    }
    None
}

fn public_from_spki(spki: &[u8]) -> Option<Result<VerifyingKey, KeyError>> {
    let (key_type, _) = der::spki(spki)?;
    match key_type {
        KeyType::Rsa => Some(
            rsa::PublicKey::from_der(spki)
                .map_err(|_| KeyError::Invalid("RSA"))
                .and_then(|k| VerifyingKey::from_rsa(&k)),
        ),
        KeyType::Ec(None) => Some(Err(KeyError::UnknownPublicKeyCurve)),
        KeyType::Ec(Some(alg)) => Some(VerifyingKey::from_ec_spki(alg, spki)),
        KeyType::Other => None,
    }
}

/// A tiny DER reader: just enough structure to tell key formats apart, find the curve and
/// pull a SubjectPublicKeyInfo out of a certificate. aws-lc-rs does the real, strict
/// parsing of every key afterwards.
mod der {
    use super::{Algorithm, KeyType};

    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    const OCTET_STRING: u8 = 0x04;
    const OID: u8 = 0x06;
    const SEQUENCE: u8 = 0x30;
    const CONTEXT_0: u8 = 0xa0;

    const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

    /// One DER element and what follows it.
    struct Tlv<'a> {
        tag: u8,
        contents: &'a [u8],
        /// The whole element: tag, length and contents.
        whole: &'a [u8],
        rest: &'a [u8],
    }

    /// Reads one element. Definite lengths of up to 4 bytes only.
    fn read(input: &[u8]) -> Option<Tlv<'_>> {
        let (&tag, after_tag) = input.split_first()?;
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after_len.len() < n {
                return None;
            }
            let (len_bytes, rest) = after_len.split_at(n);
            after_len = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if after_len.len() < len {
            return None;
        }
        let (contents, rest) = after_len.split_at(len);
        let header_len = input.len() - after_len.len();
        Some(Tlv {
            tag,
            contents,
            whole: &input[..header_len + len],
            rest,
        })
    }

    /// The next TLV, which must have `tag`: (contents, rest).
    fn take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let tlv = read(input)?;
        (tlv.tag == tag).then_some((tlv.contents, tlv.rest))
    }

    /// The contents of a SEQUENCE that spans all of `input`.
    fn whole_sequence(input: &[u8]) -> Option<&[u8]> {
        let (contents, rest) = take(input, SEQUENCE)?;
        rest.is_empty().then_some(contents)
    }

    fn curve(oid: &[u8]) -> Option<Algorithm> {
        match oid {
            OID_P256 => Some(Algorithm::ES256),
            OID_P384 => Some(Algorithm::ES384),
            OID_P521 => Some(Algorithm::ES512),
            _ => None,
        }
    }

    /// AlgorithmIdentifier contents → key type (the EC curve comes from its parameters).
    fn algorithm_identifier(contents: &[u8]) -> Option<KeyType> {
        let (oid, params) = take(contents, OID)?;
        Some(match oid {
            OID_RSA_ENCRYPTION => KeyType::Rsa,
            OID_EC_PUBLIC_KEY => {
                let named = take(params, OID).map(|(c, _)| c);
                KeyType::Ec(named.and_then(curve))
            }
            _ => KeyType::Other,
        })
    }

    /// PKCS#8 PrivateKeyInfo: (key type, the inner privateKey OCTET STRING contents).
    pub(super) fn pkcs8(der: &[u8]) -> Option<(KeyType, &[u8])> {
        let body = whole_sequence(der)?;
        let (_version, rest) = take(body, INTEGER)?;
        let (alg, rest) = take(rest, SEQUENCE)?;
        let (inner, _) = take(rest, OCTET_STRING)?;
        Some((algorithm_identifier(alg)?, inner))
    }

    /// SubjectPublicKeyInfo spanning all of `der`: (key type, subjectPublicKey bits).
    pub(super) fn spki(der: &[u8]) -> Option<(KeyType, &[u8])> {
        let body = whole_sequence(der)?;
        let (alg, rest) = take(body, SEQUENCE)?;
        let (bits, rest) = take(rest, BIT_STRING)?;
        if !rest.is_empty() {
            return None;
        }
        Some((algorithm_identifier(alg)?, bits))
    }

    /// `der` itself when it is a SubjectPublicKeyInfo.
    pub(super) fn whole_spki(der: &[u8]) -> Option<&[u8]> {
        spki(der).map(|_| der)
    }

    /// The subjectPublicKey of an SPKI, without the BIT STRING's unused-bits byte.
    pub(super) fn spki_bit_string(der: &[u8]) -> Option<&[u8]> {
        let (_, bits) = spki(der)?;
        let (&unused, point) = bits.split_first()?;
        (unused == 0).then_some(point)
    }

    /// The SubjectPublicKeyInfo TLV of an X.509 certificate (its signature is not checked:
    /// a certificate in a key file is only a carrier for the key, as in keyutil).
    pub(super) fn certificate_spki(der: &[u8]) -> Option<&[u8]> {
        let cert = whole_sequence(der)?;
        let (tbs, _) = take(cert, SEQUENCE)?;
        let mut rest = tbs;
        if let Some(version) = read(rest).filter(|t| t.tag == CONTEXT_0) {
            rest = version.rest; // the explicit [0] version is optional
        }
        let (_serial, after) = take(rest, INTEGER)?;
        rest = after;
        // signature algorithm, issuer, validity, subject
        for _ in 0..4 {
            let (_, after) = take(rest, SEQUENCE)?;
            rest = after;
        }
        let spki = read(rest)?;
        (spki.tag == SEQUENCE).then_some(spki.whole)
    }

    /// Modulus size of a PKCS#1 RSAPrivateKey (version 0, then the modulus), if it is one.
    pub(super) fn pkcs1_private_modulus_bits(der: &[u8]) -> Option<usize> {
        let body = whole_sequence(der)?;
        let (version, rest) = take(body, INTEGER)?;
        if version != [0] {
            return None;
        }
        let (modulus, rest) = take(rest, INTEGER)?;
        // The public exponent follows; an EC or PKCS#8 structure would not have it.
        take(rest, INTEGER)?;
        integer_bits(modulus)
    }

    /// PKCS#1 RSAPublicKey: exactly two INTEGERs.
    pub(super) fn is_pkcs1_public(der: &[u8]) -> bool {
        whole_sequence(der)
            .and_then(|body| take(body, INTEGER))
            .and_then(|(_, rest)| take(rest, INTEGER))
            .is_some_and(|(_, rest)| rest.is_empty())
    }

    /// SEC1 ECPrivateKey (version 1, OCTET STRING, [0] curve): Some(curve) when it is one,
    /// with None inside for a curve we do not support (or none named).
    pub(super) fn sec1_curve(der: &[u8]) -> Option<Option<Algorithm>> {
        let body = whole_sequence(der)?;
        let (version, rest) = take(body, INTEGER)?;
        if version != [1] {
            return None;
        }
        let (_, rest) = take(rest, OCTET_STRING)?;
        let named = take(rest, CONTEXT_0)
            .and_then(|(params, _)| take(params, OID))
            .map(|(oid, _)| oid);
        Some(named.and_then(curve))
    }

    fn integer_bits(int: &[u8]) -> Option<usize> {
        let start = int.iter().position(|&b| b != 0)?;
        let digits = &int[start..];
        let lead = digits.first()?;
        Some(digits.len() * 8 - lead.leading_zeros() as usize)
    }
}

// ---- PEM ---------------------------------------------------------------------------------

struct PemBlock {
    label: String,
    der: Vec<u8>,
}

/// Every well-formed PEM block, in order. Like Go's encoding/pem, text around blocks is
/// ignored and a malformed block is skipped. Blocks with RFC 1421 headers (encrypted keys)
/// are skipped too: we cannot decrypt them, and Go's parsers would reject their bytes.
fn pem_blocks(data: &[u8]) -> Vec<PemBlock> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = data;
    while let Some(start) = find(rest, BEGIN) {
        // On any failure the scan resumes right after this BEGIN, as Go's pem.Decode does,
        // so a broken block cannot swallow the block that follows it.
        rest = &rest[start + BEGIN.len()..];
        if let Some((block, after)) = pem_block(rest) {
            blocks.push(block);
            rest = after;
        }
    }
    blocks
}

/// The block whose BEGIN marker ends just before `text`, and the text after its END marker.
fn pem_block(text: &[u8]) -> Option<(PemBlock, &[u8])> {
    const DASHES: &[u8] = b"-----";
    let label_end = find(text, DASHES)?;
    let label = std::str::from_utf8(&text[..label_end]).ok()?;
    if label.contains('\n') {
        return None;
    }
    let after_label = &text[label_end + DASHES.len()..];
    let end_marker = format!("-----END {label}-----");
    let body_end = find(after_label, end_marker.as_bytes())?;
    let body = &after_label[..body_end];
    if body.contains(&b':') {
        return None;
    }
    let b64: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(b64).ok()?;
    let block = PemBlock {
        label: label.to_string(),
        der,
    };
    Some((block, &after_label[body_end + end_marker.len()..]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // base64 output is ASCII, so splitting the bytes keeps every chunk valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Fixed keys for tests across `tokens`, made once with the openssl CLI (see each
    //! constant). Test keys only: they protect nothing.

    /// `openssl genrsa -traditional 2048` (PKCS#1, "RSA PRIVATE KEY").
    pub(crate) const RSA_PKCS1: &str = r"-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAyGSCv+xnYTTw4AubtNm9YfhbGAztl2890R0SwefmA4kr66zB
W0e9Esc8dhbMfDlcUlk8xQN8uOzV91+1LHk6SA2j31uZaa7W/sfm/x+xF59Dsvdy
eQF6j8HAkEohHfkl2HWDTrXxYshp8b2jZ0qjtWJHDiPMNOlhevj6/YPLgUsfXKsv
ShtQslqoEL+bry8zmU1ZJ43TAqnOdxc2OAVw8pckb0q+WUckK4q++F+vFsA/uovt
ghAOIqNCMyfmOOXoajy9kwru4jiAp76FFTtp5LyZR9+gJT+ofl4VtzUvS6gYWFgL
I66nbCIAtB0Ep5NI7eGd2Aff0NH7Kz8zIySLlQIDAQABAoIBABIjmPs+7qerp18c
ZeKDsCMZXEOLzgjeYqnWWB+Rum4ZAU8CsvjsgDaeLsCgtS9McOkqVzgdJfHGTGLp
OKjXK1mg1HPQIo2grCjhVu1ChOD2w2XEhMnjwqCXIPNepmtEZXLXxkQ+b2Rp8D8X
053ysWlmhTiIMICcnHyJY4zFnIruJRpxYwJotleGTV1Fj1bHoz6m4+zArOk6N8da
jfl52qoo5B6Yiy1ak9jEzScejq+b6pcfHUsvhIWR+US/JtEc1tiqaGMoSH38p9jw
Kn0//iX2dew8NfjNXP0peMzLa0aa8MOyvcuP/WuDN1HKgYGqgQnMiHUyAYB7VngW
f/y+TZECgYEA6KknsNIqNQeK3OgV3WOElVEvH5TazzDJDd+G7wuSHgPDN4hV685A
Mb3vTmVUa+ddAO2IoiAvqPjy09znS7MsrQGuMjtzQ10DqdoW6OYFW9AIpK16k6nN
LYfzWHLVOINBsfF/Wf6ldcxG9Xq/Pg+kVPYjD2CMTgc9fOloCBf165ECgYEA3H6x
kt4ZZy0pqp4ZWHAGUcHcPTwmU3QvZm34anjk8TXQTJi7lqkds7ioAv/IaiKZUcPu
UIP3K+eRFiy4WmJaJ6eM9MOyT6UMMfkI3xZjOxThtB9mc/9HYOhDnzWr5q9ym38n
FNa4hK9UzJX4r4Juds7oKBiAnurkGoKSoCntdcUCgYEA2U6FP+ZMfdNZpBMxuOJm
x4BYX0sNRE/wugB5a3SHOXmSMKAqgGDYHJ2mkraaL16dw2wZHjSpz00WoUPG1TG5
HK5hIZHdiqGp9k847rdJcgPQzt8pihojBc/hPk+jT3FpPuataEUsDeaKsGXBkhnS
B3kOLiKjaY3hpHXtMQIQM8ECgYEAt1I+oTU3Oak68zfvKrA5ENB1JBRWaRw4LJlR
6HQLJODxBj4V+PUyVLI6PgQbxOJvRqP4B8kwP7iP0DfuLneHLWEIuJfcMIuwz/uV
fKVIa165KODSda7Q0alKT5x4B5vnVZEqFRFQ6EA96LrnwERZQz5TlsKIbZgtfj0B
W1iArWECgYAOmMFOqb4avsQWcutJvio9Uuo31Z0NY7Sos9TpgCFAaPh8Q+TuXQCl
nAJjQ6nCTR1V4OliRxGhBwfP10QAMH7P39Ovg4fFjXr993/+emm5P1fdkEfiLTvt
1wm0PIm4f+HMe/zc7/3hzBvuaYJodSxpr8QSO9xOa3i5yCWY0XSJ8A==
-----END RSA PRIVATE KEY-----
";
    /// The same key: `openssl pkcs8 -topk8 -nocrypt` ("PRIVATE KEY").
    pub(crate) const RSA_PKCS8: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDIZIK/7GdhNPDg
C5u02b1h+FsYDO2Xbz3RHRLB5+YDiSvrrMFbR70Sxzx2Fsx8OVxSWTzFA3y47NX3
X7UseTpIDaPfW5lprtb+x+b/H7EXn0Oy93J5AXqPwcCQSiEd+SXYdYNOtfFiyGnx
vaNnSqO1YkcOI8w06WF6+Pr9g8uBSx9cqy9KG1CyWqgQv5uvLzOZTVknjdMCqc53
FzY4BXDylyRvSr5ZRyQrir74X68WwD+6i+2CEA4io0IzJ+Y45ehqPL2TCu7iOICn
voUVO2nkvJlH36AlP6h+XhW3NS9LqBhYWAsjrqdsIgC0HQSnk0jt4Z3YB9/Q0fsr
PzMjJIuVAgMBAAECggEAEiOY+z7up6unXxxl4oOwIxlcQ4vOCN5iqdZYH5G6bhkB
TwKy+OyANp4uwKC1L0xw6SpXOB0l8cZMYuk4qNcrWaDUc9AijaCsKOFW7UKE4PbD
ZcSEyePCoJcg816ma0RlctfGRD5vZGnwPxfTnfKxaWaFOIgwgJycfIljjMWciu4l
GnFjAmi2V4ZNXUWPVsejPqbj7MCs6To3x1qN+XnaqijkHpiLLVqT2MTNJx6Or5vq
lx8dSy+EhZH5RL8m0RzW2KpoYyhIffyn2PAqfT/+JfZ17Dw1+M1c/Sl4zMtrRprw
w7K9y4/9a4M3UcqBgaqBCcyIdTIBgHtWeBZ//L5NkQKBgQDoqSew0io1B4rc6BXd
Y4SVUS8flNrPMMkN34bvC5IeA8M3iFXrzkAxve9OZVRr510A7YiiIC+o+PLT3OdL
syytAa4yO3NDXQOp2hbo5gVb0AikrXqTqc0th/NYctU4g0Gx8X9Z/qV1zEb1er8+
D6RU9iMPYIxOBz186WgIF/XrkQKBgQDcfrGS3hlnLSmqnhlYcAZRwdw9PCZTdC9m
bfhqeOTxNdBMmLuWqR2zuKgC/8hqIplRw+5Qg/cr55EWLLhaYlonp4z0w7JPpQwx
+QjfFmM7FOG0H2Zz/0dg6EOfNavmr3KbfycU1riEr1TMlfivgm52zugoGICe6uQa
gpKgKe11xQKBgQDZToU/5kx901mkEzG44mbHgFhfSw1ET/C6AHlrdIc5eZIwoCqA
YNgcnaaStpovXp3DbBkeNKnPTRahQ8bVMbkcrmEhkd2Koan2Tzjut0lyA9DO3ymK
GiMFz+E+T6NPcWk+5q1oRSwN5oqwZcGSGdIHeQ4uIqNpjeGkde0xAhAzwQKBgQC3
Uj6hNTc5qTrzN+8qsDkQ0HUkFFZpHDgsmVHodAsk4PEGPhX49TJUsjo+BBvE4m9G
o/gHyTA/uI/QN+4ud4ctYQi4l9wwi7DP+5V8pUhrXrko4NJ1rtDRqUpPnHgHm+dV
kSoVEVDoQD3ouufARFlDPlOWwohtmC1+PQFbWICtYQKBgA6YwU6pvhq+xBZy60m+
Kj1S6jfVnQ1jtKiz1OmAIUBo+HxD5O5dAKWcAmNDqcJNHVXg6WJHEaEHB8/XRAAw
fs/f06+Dh8WNev33f/56abk/V92QR+ItO+3XCbQ8ibh/4cx7/Nzv/eHMG+5pgmh1
LGmvxBI73E5reLnIJZjRdInw
-----END PRIVATE KEY-----
";
    /// The same key's public half: `openssl pkey -pubout` ("PUBLIC KEY", SPKI).
    pub(crate) const RSA_SPKI: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyGSCv+xnYTTw4AubtNm9
YfhbGAztl2890R0SwefmA4kr66zBW0e9Esc8dhbMfDlcUlk8xQN8uOzV91+1LHk6
SA2j31uZaa7W/sfm/x+xF59DsvdyeQF6j8HAkEohHfkl2HWDTrXxYshp8b2jZ0qj
tWJHDiPMNOlhevj6/YPLgUsfXKsvShtQslqoEL+bry8zmU1ZJ43TAqnOdxc2OAVw
8pckb0q+WUckK4q++F+vFsA/uovtghAOIqNCMyfmOOXoajy9kwru4jiAp76FFTtp
5LyZR9+gJT+ofl4VtzUvS6gYWFgLI66nbCIAtB0Ep5NI7eGd2Aff0NH7Kz8zIySL
lQIDAQAB
-----END PUBLIC KEY-----
";
    /// The same key's public half: `openssl rsa -RSAPublicKey_out` ("RSA PUBLIC KEY").
    pub(crate) const RSA_PKCS1_PUBLIC: &str = r"-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAyGSCv+xnYTTw4AubtNm9YfhbGAztl2890R0SwefmA4kr66zBW0e9
Esc8dhbMfDlcUlk8xQN8uOzV91+1LHk6SA2j31uZaa7W/sfm/x+xF59DsvdyeQF6
j8HAkEohHfkl2HWDTrXxYshp8b2jZ0qjtWJHDiPMNOlhevj6/YPLgUsfXKsvShtQ
slqoEL+bry8zmU1ZJ43TAqnOdxc2OAVw8pckb0q+WUckK4q++F+vFsA/uovtghAO
IqNCMyfmOOXoajy9kwru4jiAp76FFTtp5LyZR9+gJT+ofl4VtzUvS6gYWFgLI66n
bCIAtB0Ep5NI7eGd2Aff0NH7Kz8zIySLlQIDAQAB
-----END RSA PUBLIC KEY-----
";
    /// A self-signed certificate for the same key: `openssl req -x509 -subj /CN=tokenwarden-test`.
    pub(crate) const RSA_CERT: &str = r"-----BEGIN CERTIFICATE-----
MIIDGTCCAgGgAwIBAgIUVbQR2JTCS7oRALodXE0JOvejoWYwDQYJKoZIhvcNAQEL
BQAwGzEZMBcGA1UEAwwQdG9rZW53YXJkZW4tdGVzdDAgFw0yNjExMjQwMjAyMTVa
GA8yMTI2MTAzMTAyMDIxNVowGzEZMBcGA1UEAwwQdG9rZW53YXJkZW4tdGVzdDCC
ASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAMhkgr/sZ2E08OALm7TZvWH4
WxgM7ZdvPdEdEsHn5gOJK+uswVtHvRLHPHYWzHw5XFJZPMUDfLjs1fdftSx5OkgN
o99bmWmu1v7H5v8fsRefQ7L3cnkBeo/BwJBKIR35Jdh1g0618WLIafG9o2dKo7Vi
Rw4jzDTpYXr4+v2Dy4FLH1yrL0obULJaqBC/m68vM5lNWSeN0wKpzncXNjgFcPKX
JG9KvllHJCuKvvhfrxbAP7qL7YIQDiKjQjMn5jjl6Go8vZMK7uI4gKe+hRU7aeS8
mUffoCU/qH5eFbc1L0uoGFhYCyOup2wiALQdBKeTSO3hndgH39DR+ys/MyMki5UC
AwEAAaNTMFEwHQYDVR0OBBYEFC5OhET0bIQ7seR4T4d1TqFOI1aRMB8GA1UdIwQY
MBaAFC5OhET0bIQ7seR4T4d1TqFOI1aRMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZI
hvcNAQELBQADggEBAFo7XjYGkcqT+woyxetLd8t3uj+z/TMKMXy9yDs/aLKiKpDl
3mtnAb/MIbWy65eoJk7o5dt9VOh6l+td/DBbaKO+TyzfcMBzAU9wlR/59b8msuYu
zy1gEjFgeINNtcMdZfOwtavQho9DZL3N1jKiJ4zkxylznae/Tj0ZG3sOBGK6Cxuc
xT0rfTrm4mWHW8cvVfkrOl8XDq3h5vDb7ak5e4Fo4Qk6tIuqtWvMYiNuXpXXlpQc
tA3nZz8aKTieQMQg0qaYPgPqmX2Za8JcoIkjjoqDIXy0CCu160hxYfT6y1kCUOlC
9Hr9vKpbLJ2sIj4g233uGsEiUW3Jjk2pM3US2lI=
-----END CERTIFICATE-----
";
    /// Computed at authoring time with
    /// `openssl pkey -in rsa.pem -pubout -outform DER | openssl dgst -sha256 -binary | basenc --base64url`
    /// (trailing '=' removed).
    pub(crate) const RSA_KID: &str = "wxodEiJA_mvz6FfyR4V2FEhu5a_gPVmaIUIArhT-IM0";
    /// `openssl rsa -noout -modulus`, hex → bytes → base64url without padding. The modulus
    /// starts with 0xc8, so its DER INTEGER carries a leading zero the JWK must drop.
    pub(crate) const RSA_N: &str = "yGSCv-xnYTTw4AubtNm9YfhbGAztl2890R0SwefmA4kr66zBW0e9Esc8dhbMfDlcUlk8xQN8uOzV91-1LHk6SA2j31uZaa7W_sfm_x-xF59DsvdyeQF6j8HAkEohHfkl2HWDTrXxYshp8b2jZ0qjtWJHDiPMNOlhevj6_YPLgUsfXKsvShtQslqoEL-bry8zmU1ZJ43TAqnOdxc2OAVw8pckb0q-WUckK4q--F-vFsA_uovtghAOIqNCMyfmOOXoajy9kwru4jiAp76FFTtp5LyZR9-gJT-ofl4VtzUvS6gYWFgLI66nbCIAtB0Ep5NI7eGd2Aff0NH7Kz8zIySLlQ";

    /// `openssl ecparam -name prime256v1 -genkey -noout` (SEC1, "EC PRIVATE KEY").
    pub(crate) const EC256_SEC1: &str = r"-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIM2sC1GIIpRhVH/VNKcJnem40NgBYoEK6emTUuR7yWgAoAoGCCqGSM49
AwEHoUQDQgAEF8DLO1pUPyCjnBsyFz5JMfmdlDtkYjrisyzC0v5eqamQLlhHUCIo
Jup6ztbBoYrL/RWw5YbV0cpgwfdPalSCig==
-----END EC PRIVATE KEY-----
";
    /// The same key: `openssl pkcs8 -topk8 -nocrypt`.
    pub(crate) const EC256_PKCS8: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzawLUYgilGFUf9U0
pwmd6bjQ2AFigQrp6ZNS5HvJaAChRANCAAQXwMs7WlQ/IKOcGzIXPkkx+Z2UO2Ri
OuKzLMLS/l6pqZAuWEdQIigm6nrO1sGhisv9FbDlhtXRymDB909qVIKK
-----END PRIVATE KEY-----
";
    /// The same key's public half: `openssl pkey -pubout`.
    pub(crate) const EC256_SPKI: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEF8DLO1pUPyCjnBsyFz5JMfmdlDtk
YjrisyzC0v5eqamQLlhHUCIoJup6ztbBoYrL/RWw5YbV0cpgwfdPalSCig==
-----END PUBLIC KEY-----
";
    /// Computed like `RSA_KID`, from the P-256 key.
    pub(crate) const EC256_KID: &str = "31OLSxCtwaC_4vrIjRq6QMPziyvPPCdPpMkdYouT6Es";
    /// The last 64 bytes of the public DER (the uncompressed point's x then y), base64url.
    pub(crate) const EC256_X: &str = "F8DLO1pUPyCjnBsyFz5JMfmdlDtkYjrisyzC0v5eqak";
    pub(crate) const EC256_Y: &str = "kC5YR1AiKCbqes7WwaGKy_0VsOWG1dHKYMH3T2pUgoo";

    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384` (PKCS#8).
    pub(crate) const EC384_PKCS8: &str = r"-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDBsSSWH+TnJqV7DdN8i
Z3tgnoK0d0LCjZjMoyRO8jDbUHNHXGE3Q9W2GLHJ4u5JbG2hZANiAAReNLseLhML
0eFxMwCvWFKbCU5sxKKk7KRbJBvFIjI7Fem1/NDFG8I3z/DIQ+UwfY4961Hy/7hP
c55Ua+Zpbj7gZd9KgTm7uNFXK5t1+21tWq0keuPnPl3IyfzbGK/gRkI=
-----END PRIVATE KEY-----
";
    pub(crate) const EC384_KID: &str = "9g83uC_rku7U5rbFrB7R3uDrXy1m5A6w75wOgaxCvBo";
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521` (PKCS#8).
    pub(crate) const EC521_PKCS8: &str = r"-----BEGIN PRIVATE KEY-----
MIHuAgEAMBAGByqGSM49AgEGBSuBBAAjBIHWMIHTAgEBBEIBrkFExhThq7/u2Bav
15Bu64v5Cxof/ftcpgukky3S2sEvesLvAwt/Xg3arc63IXoP+vMbGKqPLrErKpou
uyXq9eShgYkDgYYABAFqKA0CUcDswqM9ah5GbRLtDzOdEuQWyOXEkhZEAYIIUdhs
ikj+2Da3I+ndbF3XmMHkTwHqrbOJ2nR0L71Fr56J/QAi5raRSBWqa8Q75YWwNRzi
UOwqOFlVHLKaGk9jq1yd/wq8HiotqJAYIW3zLZla1TR/z1cmawJxuWBNqgWVDjH/
Ng==
-----END PRIVATE KEY-----
";
    pub(crate) const EC521_KID: &str = "1JeBvvzhtwp9Y4SW44sFUBv1HYt6KNIZpLiMFkZAoEc";

    /// `openssl ecparam -name secp224r1 -genkey -noout`: a curve Kubernetes refuses.
    pub(crate) const EC224_SEC1: &str = r"-----BEGIN EC PRIVATE KEY-----
MGgCAQEEHBwJTb4QosXt+T1uF1tAnnEmlSzp8HTq5/jcL7egBwYFK4EEACGhPAM6
AASpzWoxmg/QXMPttzHnopArhnpsaL21WyOQHyoSzSYdM2OEK1oR5gXwUX04bJCq
4e4SM0khuQCaGA==
-----END EC PRIVATE KEY-----
";
    /// `openssl ecparam -name secp256k1 -genkey -noout`.
    pub(crate) const K1_SEC1: &str = r"-----BEGIN EC PRIVATE KEY-----
MHQCAQEEINOr/vt/yt8TbkOSVdQxEtTLIAi9LMWtRGq1Hdto1G1VoAcGBSuBBAAK
oUQDQgAEFcRnToPJFbILzz0mh0YjtvcatzPcvncwTuT0JG7mk4ahZ2kxrHU+xdPM
CP4MNo1ZcUld2YoVsVXgCNbpfE0yng==
-----END EC PRIVATE KEY-----
";
    /// `openssl genpkey -algorithm ed25519`.
    pub(crate) const ED25519_PKCS8: &str = r"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMi0Oltae/ZH1IGiwbJylFYqWUty3sbuib12OPFBlmeH
-----END PRIVATE KEY-----
";
    /// `openssl genrsa -traditional 1024`.
    pub(crate) const RSA1024_PKCS1: &str = r"-----BEGIN RSA PRIVATE KEY-----
MIICXAIBAAKBgQC6dt38R4bz7BE4Gl2Byvpz43OtEKSIuvwx5rm5KFRCL6NPdlEs
ikG+WjhHiMP+VaBv6iDZqWcToGsfNKlUV3ReI20lC3Fz3fA+0XY8VmLYwB20MCCm
9gNOtrWer2nSqHs5Cq0p/9ua0BzA+X9zAzylkXbWSW5f2LwDK0g2cH/JTQIDAQAB
AoGBAKAe7yVy7sqMD4VT7rREb6oQygb14bSgjWz0qsv7e8+SRPU5rx9GYoppwyZ6
pYPEWA+CyE7hj+hku1iCyl3o871kAAPD+jogkq3e0rFPAkXzOLhM9PnpNeRKxtqQ
cOS7/DklVXtHVZd/cHkDW0N1Wm6VfkuURD3EUVhFC/5Nt+eBAkEA3OBwYHtaVcnx
2wSSi4iUWy0gfs37HCmJAc/3eMCN1g0RXEp83oL24byg3Dd6Whs2dTqspmR2rMhW
WB2ADUhAXQJBANgdjRobnj7PNyq3fx3Q/gRPYtuTbw8w/CvmF8X9He84Wu42Rtmr
sH2JdEclwE6G9JnhFwCSqs3wuYqqh2Y33bECQGOIrHt9+uZf+6JD/Dnu0VQJEPSz
o+479Wagrhd3RjNobiNV2dF32QM+uoqiYXuLec34I+dTrHsOSIKqwJK7tW0CQEjd
LcWvqhrjImZ0l5cl737khSAjBT7J9TuXyEwomv8csQu/oQOir06kGWAjikLvnWiE
S40V5iCpGOV3uU7tZwECQArCuwIMpM/YtVXWBKzmwQ8CNqn/zBHmX+jjhd2OS3g/
wej/PnO13JN5Msrb02wqPw8iTLlaLcTBsVxvH+zETcI=
-----END RSA PRIVATE KEY-----
";
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;

    fn signing(pem: &str) -> SigningKey {
        SigningKey::from_pem(pem.as_bytes()).unwrap()
    }

    fn public_one(pem: &str) -> VerifyingKey {
        let mut keys = VerifyingKey::from_pem_all(pem.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        keys.remove(0)
    }

    #[test]
    fn keys_can_be_shared_across_threads() {
        // The server holds the set in an Arc used by every request task.
        fn shared<T: Send + Sync>() {}
        shared::<KeySet>();
        shared::<SigningKey>();
        shared::<VerifyingKey>();
        let set = Arc::new(KeySet::new(Some(signing(EC256_SEC1)), vec![]));
        let worker = Arc::clone(&set);
        let sig = std::thread::spawn(move || worker.signing().unwrap().sign(b"m").unwrap())
            .join()
            .unwrap();
        assert!(set.candidates(None).all(|k| k.verify(b"m", &sig)));
    }

    #[test]
    fn algorithm_names_round_trip_and_are_case_sensitive() {
        for alg in [
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::ES512,
        ] {
            assert_eq!(Algorithm::parse(alg.as_str()), Some(alg));
        }
        for bad in ["rs256", "none", "HS256", "PS256", "RS384", "", "ES256 "] {
            assert_eq!(Algorithm::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rsa_kid_matches_kubernetes_for_every_encoding_of_the_key() {
        for pem in [RSA_PKCS1, RSA_PKCS8] {
            let k = signing(pem);
            assert_eq!(k.kid(), RSA_KID);
            assert_eq!(k.kid().len(), 43);
            assert_eq!(k.algorithm(), Algorithm::RS256);
        }
        for pem in [RSA_PKCS1, RSA_PKCS8, RSA_SPKI, RSA_PKCS1_PUBLIC, RSA_CERT] {
            let k = public_one(pem);
            assert_eq!(k.kid(), RSA_KID, "{}", &pem[..40]);
            assert_eq!(k.algorithm(), Algorithm::RS256);
        }
    }

    #[test]
    fn ec_kids_and_algorithms_match_kubernetes() {
        for (pem, kid, alg) in [
            (EC256_SEC1, EC256_KID, Algorithm::ES256),
            (EC256_PKCS8, EC256_KID, Algorithm::ES256),
            (EC384_PKCS8, EC384_KID, Algorithm::ES384),
            (EC521_PKCS8, EC521_KID, Algorithm::ES512),
        ] {
            let k = signing(pem);
            assert_eq!((k.kid(), k.algorithm()), (kid, alg));
            let p = public_one(pem);
            assert_eq!((p.kid(), p.algorithm()), (kid, alg));
        }
        assert_eq!(public_one(EC256_SPKI).kid(), EC256_KID);
    }

    #[test]
    fn jwk_entries_are_exactly_as_kube_apiserver_publishes_them() {
        let rsa = public_one(RSA_SPKI).jwk().to_string();
        assert_eq!(
            rsa,
            format!(
                r#"{{"use":"sig","kty":"RSA","kid":"{RSA_KID}","alg":"RS256","n":"{RSA_N}","e":"AQAB"}}"#
            )
        );
        let ec = public_one(EC256_SEC1).jwk().to_string();
        assert_eq!(
            ec,
            format!(
                r#"{{"use":"sig","kty":"EC","kid":"{EC256_KID}","crv":"P-256","alg":"ES256","x":"{EC256_X}","y":"{EC256_Y}"}}"#
            )
        );
        // P-521 coordinates are fixed at 66 bytes (88 base64url chars) each.
        let p521 = public_one(EC521_PKCS8).jwk();
        assert_eq!(p521["crv"], "P-521");
        assert_eq!(p521["alg"], "ES512");
        assert_eq!(p521["x"].as_str().unwrap().len(), 88);
        assert_eq!(p521["y"].as_str().unwrap().len(), 88);
    }

    #[test]
    fn header_is_alg_then_kid_without_typ() {
        let k = signing(RSA_PKCS1);
        let header = URL_SAFE_NO_PAD.decode(k.header_b64()).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"RS256","kid":"{RSA_KID}"}}"#)
        );
        let k = signing(EC384_PKCS8);
        let header = URL_SAFE_NO_PAD.decode(k.header_b64()).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"ES384","kid":"{EC384_KID}"}}"#)
        );
    }

    #[test]
    fn sign_and_verify_with_every_algorithm() {
        for (pem, sig_len) in [
            (RSA_PKCS1, 256),
            (EC256_SEC1, 64),
            (EC384_PKCS8, 96),
            (EC521_PKCS8, 132),
        ] {
            let k = signing(pem);
            let sig = k.sign(b"message").unwrap();
            assert_eq!(sig.len(), sig_len);
            assert_eq!(k.signature_len(), sig_len);
            let v = k.verifying_key();
            assert!(v.verify(b"message", &sig));
            assert!(!v.verify(b"messagf", &sig));
            let mut bad = sig.clone();
            bad[sig_len / 2] ^= 1;
            assert!(!v.verify(b"message", &bad));
        }
    }

    #[test]
    fn a_key_never_verifies_another_keys_signature() {
        let rsa = signing(RSA_PKCS1);
        let ec = signing(EC256_SEC1);
        let other_rsa = signing(&generate_rsa_2048_pem().unwrap());
        let msg = b"payload";
        let rsa_sig = rsa.sign(msg).unwrap();
        let ec_sig = ec.sign(msg).unwrap();
        assert!(!other_rsa.verifying_key().verify(msg, &rsa_sig));
        assert!(!ec.verifying_key().verify(msg, &rsa_sig));
        assert!(!rsa.verifying_key().verify(msg, &ec_sig));
        assert!(!signing(EC384_PKCS8).verifying_key().verify(msg, &ec_sig));
    }

    #[test]
    fn ecdsa_signatures_are_fixed_size_not_asn1() {
        let k = signing(EC256_SEC1);
        for _ in 0..20 {
            let sig = k.sign(b"x").unwrap();
            assert_eq!(sig.len(), 64);
            // ASN.1 would start with SEQUENCE (0x30) and be 70-72 bytes long.
            assert!(k.verifying_key().verify(b"x", &sig));
        }
    }

    #[test]
    fn private_key_errors_mirror_kubernetes() {
        let cases: [(&str, &str); 7] = [
            ("", "data does not contain a valid RSA or ECDSA private key"),
            (
                RSA_SPKI,
                "data does not contain a valid RSA or ECDSA private key",
            ),
            (
                EC224_SEC1,
                "unknown private key curve, must be 256, 384, or 521",
            ),
            (
                K1_SEC1,
                "unknown private key curve, must be 256, 384, or 521",
            ),
            (
                ED25519_PKCS8,
                "unknown private key type, must be an RSA or ECDSA private key",
            ),
            (
                RSA1024_PKCS1,
                "RSA key of 1024 bits is not supported, must be 2048 to 8192 bits",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "data does not contain a valid RSA or ECDSA private key",
            ),
        ];
        for (pem, want) in cases {
            let err = SigningKey::from_pem(pem.as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn private_key_is_found_after_other_blocks() {
        // EC PARAMETERS before the key, as `openssl ecparam -genkey` writes without -noout.
        let pem = format!(
            "junk\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{RSA_CERT}{EC256_SEC1}{RSA_PKCS1}"
        );
        assert_eq!(signing(&pem).kid(), EC256_KID);
    }

    #[test]
    fn public_pem_reads_every_key_and_skips_non_keys() {
        let pem = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{RSA_SPKI}\n{ED25519_PKCS8}{EC256_SEC1}{RSA_CERT}{EC384_PKCS8}"
        );
        let keys = VerifyingKey::from_pem_all(pem.as_bytes()).unwrap();
        let kids: Vec<&str> = keys.iter().map(VerifyingKey::kid).collect();
        assert_eq!(kids, [RSA_KID, EC256_KID, RSA_KID, EC384_KID]);
    }

    #[test]
    fn public_pem_errors() {
        for pem in ["", "not pem at all", ED25519_PKCS8] {
            let err = VerifyingKey::from_pem_all(pem.as_bytes()).unwrap_err();
            assert_eq!(
                err.to_string(),
                "data does not contain any valid RSA or ECDSA public keys"
            );
        }
        let err = VerifyingKey::from_pem_all(EC224_SEC1.as_bytes()).unwrap_err();
        assert!(matches!(err, KeyError::UnknownPrivateKeyCurve), "{err}");
        let err = VerifyingKey::from_pem_all(RSA1024_PKCS1.as_bytes()).unwrap_err();
        assert!(matches!(err, KeyError::RsaKeySize { bits: 1024 }), "{err}");
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let k = signing(RSA_PKCS1);
        let text = format!("{k:?} {:?}", k.verifying_key());
        assert!(text.contains(RSA_KID));
        assert!(!text.contains(&RSA_N[..16]));
        // No long hex or base64 run other than the kid itself.
        let without_kid = text.replace(RSA_KID, "");
        let longest_run = without_kid
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run < 20, "{text}");
    }

    #[test]
    fn key_set_candidates_jwks_and_algorithms() {
        let rsa = signing(RSA_PKCS1);
        let ec = public_one(EC256_SPKI);
        let ec384 = public_one(EC384_PKCS8);
        let set = KeySet::new(Some(rsa), vec![ec.clone(), ec384.clone()]);
        // The signing key's public half was appended.
        let kids: Vec<&str> = set.candidates(None).map(VerifyingKey::kid).collect();
        assert_eq!(kids, [EC256_KID, EC384_KID, RSA_KID]);
        assert_eq!(set.candidates(Some("")).count(), 3);
        let only: Vec<&str> = set
            .candidates(Some(RSA_KID))
            .map(VerifyingKey::kid)
            .collect();
        assert_eq!(only, [RSA_KID]);
        assert_eq!(set.candidates(Some("nope")).count(), 0);
        assert_eq!(set.algorithms(), ["ES256", "ES384", "RS256"]);
        let jwks = set.jwks();
        let entries = jwks["keys"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2]["kid"], RSA_KID);
        assert_eq!(set.signing().unwrap().kid(), RSA_KID);

        // Not added twice when the verifying keys already hold it.
        let set = KeySet::new(Some(signing(RSA_PKCS8)), vec![public_one(RSA_SPKI)]);
        assert_eq!(set.candidates(None).count(), 1);
        assert_eq!(set.algorithms(), ["RS256"]);
        // Verify-only set.
        let set = KeySet::new(None, vec![ec]);
        assert!(set.signing().is_none());
        assert_eq!(set.jwks()["keys"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn generated_keys_load_and_differ() {
        let a = generate_rsa_2048_pem().unwrap();
        assert!(a.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(a.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(a.lines().all(|l| l.len() <= 64));
        let ka = signing(&a);
        assert_eq!(ka.algorithm(), Algorithm::RS256);
        let e1 = signing(&generate_ec_p256_pem().unwrap());
        let e2 = signing(&generate_ec_p256_pem().unwrap());
        assert_eq!(e1.algorithm(), Algorithm::ES256);
        assert_ne!(e1.kid(), e2.kid());
        // A generated key reads back as a public key with the same kid.
        assert_eq!(public_one(&a).kid(), ka.kid());
    }

    #[test]
    fn many_rs256_signs_complete() {
        // Performance smoke test (no timing assertion): the parsed key is reused.
        let k = signing(RSA_PKCS1);
        let v = k.verifying_key();
        let mut last = Vec::new();
        for i in 0..200u32 {
            last = k.sign(&i.to_be_bytes()).unwrap();
        }
        assert!(v.verify(&199u32.to_be_bytes(), &last));
    }

    #[test]
    fn pem_parser_skips_broken_blocks() {
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n-----BEGIN PUBLIC KEY-----\nno end\n{EC256_SPKI}"
        );
        // The second BEGIN has no END of its own; the scan resumes and finds the real key.
        assert_eq!(public_one(&pem).kid(), EC256_KID);
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(pem_blocks(encrypted.as_bytes()).is_empty());
    }
}
