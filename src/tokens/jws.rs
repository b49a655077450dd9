//! JWS compact serialization for service-account tokens: sign, strict decode, verify.
//!
//! Hand-rolled over `tokens::keys` (aws-lc-rs keys parsed once) instead of a JWT crate, so
//! no key is ever re-parsed per token. Only the compact form with the four algorithms of
//! `keys::Algorithm` exists here: "none", HMAC and every other algorithm are rejected, and a
//! key only ever verifies under its own algorithm (no algorithm confusion).
//!
//! Mirrors `pkg/serviceaccount/jwt.go` (`hasCorrectIssuer`, key selection by kid, the
//! "no keys found" error) and what go-jose writes (`{"alg","kid"}` header, no `typ`).
//! It does not interpret claims (that is `tokens::claims`) and does no I/O or logging.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::keys::{Algorithm, KeySet, SigningKey};

/// Larger tokens are rejected before any decoding. Real tokens are about 1.2 KB (RS256
/// with node and pod claims, `shared/reference/performance.md` A.0).
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum JwsError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsupported signing algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// jwt.go, when no key has the token's kid.
    #[error("invalid signature, no keys found")]
    NoKeys,
    /// The candidate keys all use another algorithm than the header names.
    #[error("invalid signature, no {0} key found")]
    NoKeyForAlgorithm(&'static str),
    #[error("invalid signature, verification failed")]
    BadSignature,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// Header exactly `{"alg":"<alg>","kid":"<kid>"}` (built once per key), the claims as given
/// (the caller supplies sorted keys), compact serialization with base64url without padding.
pub(crate) fn sign(key: &SigningKey, claims: &serde_json::Value) -> Result<String, JwsError> {
    if !claims.is_object() {
        return Err(JwsError::Sign("claims must be a JSON object".to_string()));
    }
    let payload = serde_json::to_vec(claims).map_err(|e| JwsError::Sign(e.to_string()))?;
    let header = key.header_b64();
    let capacity = header.len()
        + 2
        + base64::encoded_len(payload.len(), false).unwrap_or(0)
        + base64::encoded_len(key.signature_len(), false).unwrap_or(0);
    let mut token = String::with_capacity(capacity);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key
        .sign(token.as_bytes())
        .map_err(|e| JwsError::Sign(e.to_string()))?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// A token that parsed strictly but whose signature has not been checked yet. Nothing in it
/// may be trusted until `verify` succeeds.
pub(crate) struct Unverified {
    pub(crate) alg: String,
    /// The header's `kid`; None when absent or empty (jwt.go treats both as "no kid").
    pub(crate) kid: Option<String>,
    /// Always a JSON object.
    pub(crate) claims: serde_json::Value,
    /// `<header>.<payload>` exactly as received: what the signature covers.
    signing_input: String,
    signature: Vec<u8>,
}

impl fmt::Debug for Unverified {
    // The signing input plus the signature is the credential itself: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unverified")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Strict parse without verification: at most `MAX_TOKEN_BYTES`; exactly 3 non-empty
/// dot-separated parts; base64url without padding (no '=', no '+' or '/', no whitespace);
/// header and claims are JSON objects; a token whose trimmed text starts with '{' (JSON
/// serialization) is refused, as jwt.go's hasCorrectIssuer does.
pub(crate) fn decode(token: &str) -> Result<Unverified, JwsError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::Malformed("token is too large"));
    }
    if token.trim_start().starts_with('{') {
        return Err(JwsError::Malformed(
            "JWS JSON serialization is not supported",
        ));
    }
    let (header_b64, payload_b64, signature_b64) = split3(token)?;
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(JwsError::Malformed("token has an empty part"));
    }
    let header = decode_object(header_b64, "header")?;
    let claims = decode_object(payload_b64, "claims")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JwsError::Malformed("signature is not base64url without padding"))?;

    let alg = match header.get("alg") {
        Some(serde_json::Value::String(a)) => a.clone(),
        Some(_) => return Err(JwsError::Malformed("header alg is not a string")),
        None => return Err(JwsError::Malformed("header has no alg")),
    };
    let kid = match header.get("kid") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(k)) if k.is_empty() => None,
        Some(serde_json::Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwsError::Malformed("header kid is not a string")),
    };
    // RFC 7515 4.1.11: extensions the recipient does not understand must be refused, and we
    // understand none (b64=false would change what the signature covers).
    if header.get("crit").is_some() {
        return Err(JwsError::Malformed("header crit is not supported"));
    }
    let signing_input = token[..header_b64.len() + 1 + payload_b64.len()].to_string();
    Ok(Unverified {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn split3(token: &str) -> Result<(&str, &str, &str), JwsError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(JwsError::Malformed("token must have 3 dot-separated parts")),
    }
}

fn decode_object(part: &str, what: &'static str) -> Result<serde_json::Value, JwsError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        JwsError::Malformed(if what == "header" {
            "header is not base64url without padding"
        } else {
            "claims are not base64url without padding"
        })
    })?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(JwsError::Malformed(if what == "header" {
            "header is not a JSON object"
        } else {
            "claims are not a JSON object"
        })),
    }
}

/// The `iss` of a token without verifying anything (None if it cannot be read): used to
/// route a token to the legacy or the bound authenticator, as jwt.go's hasCorrectIssuer.
/// The result must not be trusted for anything else.
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IssuerOnly {
        iss: Option<String>,
    }
    if token.len() > MAX_TOKEN_BYTES || token.trim_start().starts_with('{') {
        return None;
    }
    let (_, payload_b64, _) = split3(token).ok()?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
    // serde would also fill the struct from a JSON array; Go's decoder would not.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<IssuerOnly>(&payload).ok()?.iss
}

/// Verifies the signature with the candidate keys for the header's kid (all keys when there
/// is none). "none" and any algorithm but the four supported are refused; a key is only
/// tried when its own algorithm is the header's, so e.g. an RSA key never checks an ES256
/// or HS256 token. Cheap checks come first, so a forged token costs at most one signature
/// check per candidate key.
pub(crate) fn verify(token: &Unverified, keys: &KeySet) -> Result<(), JwsError> {
    let alg = Algorithm::parse(&token.alg)
        .ok_or_else(|| JwsError::UnsupportedAlgorithm(token.alg.clone()))?;
    let mut any_candidate = false;
    let mut any_of_alg = false;
    for key in keys.candidates(token.kid.as_deref()) {
        any_candidate = true;
        if key.algorithm() != alg {
            continue;
        }
        any_of_alg = true;
        if key.verify(token.signing_input.as_bytes(), &token.signature) {
            return Ok(());
        }
    }
    if !any_candidate {
        Err(JwsError::NoKeys)
    } else if !any_of_alg {
        Err(JwsError::NoKeyForAlgorithm(alg.as_str()))
    } else {
        Err(JwsError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::test_keys::*;
    use super::super::keys::{VerifyingKey, generate_rsa_2048_pem};
    use super::*;
    use serde_json::json;

    fn key(pem: &str) -> SigningKey {
        SigningKey::from_pem(pem.as_bytes()).unwrap()
    }

    fn set_of(signing: &SigningKey) -> KeySet {
        KeySet::new(None, vec![signing.verifying_key()])
    }

    fn claims() -> serde_json::Value {
        json!({"aud":["a"],"exp":1795392844,"iat":1795392244,"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:default:x"})
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_string).collect()
    }

    fn check(token: &str, keys: &KeySet) -> Result<(), JwsError> {
        verify(&decode(token)?, keys)
    }

    #[test]
    fn round_trips_for_rsa_and_ec_keys() {
        for pem in [RSA_PKCS1, EC256_SEC1, EC384_PKCS8, EC521_PKCS8] {
            let k = key(pem);
            let token = sign(&k, &claims()).unwrap();
            let u = decode(&token).unwrap();
            assert_eq!(u.alg, k.algorithm().as_str());
            assert_eq!(u.kid.as_deref(), Some(k.kid()));
            assert_eq!(u.claims, claims());
            verify(&u, &set_of(&k)).unwrap();
            assert_eq!(
                peek_issuer(&token).as_deref(),
                Some("https://kubernetes.default.svc")
            );
        }
    }

    #[test]
    fn header_and_payload_bytes_are_exact() {
        let k = key(RSA_PKCS1);
        let token = sign(&k, &claims()).unwrap();
        let p = parts(&token);
        assert_eq!(p.len(), 3);
        let header = URL_SAFE_NO_PAD.decode(&p[0]).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"RS256","kid":"{RSA_KID}"}}"#)
        );
        assert_eq!(
            p[0],
            "eyJhbGciOiJSUzI1NiIsImtpZCI6I".to_string() + &p[0][29..]
        );
        let payload = URL_SAFE_NO_PAD.decode(&p[1]).unwrap();
        assert_eq!(String::from_utf8(payload).unwrap(), claims().to_string());
        // RSA-2048: 256 signature bytes are 342 base64url characters (observed on 1.32).
        assert_eq!(p[2].len(), 342);
        assert!(!token.contains('='));
    }

    #[test]
    fn non_object_claims_are_not_signed() {
        let k = key(EC256_SEC1);
        assert!(matches!(sign(&k, &json!([1])), Err(JwsError::Sign(_))));
    }

    #[test]
    fn alg_none_is_rejected_with_and_without_signature() {
        let k = key(RSA_PKCS1);
        let keys = set_of(&k);
        let good = sign(&k, &claims()).unwrap();
        let p = parts(&good);
        let none_header = b64(&format!(r#"{{"alg":"none","kid":"{RSA_KID}"}}"#));
        // Unsigned: empty third part.
        assert_eq!(
            check(&format!("{none_header}.{}.", p[1]), &keys),
            Err(JwsError::Malformed("token has an empty part"))
        );
        // With some signature bytes.
        assert_eq!(
            check(&format!("{none_header}.{}.{}", p[1], p[2]), &keys),
            Err(JwsError::UnsupportedAlgorithm("none".to_string()))
        );
        for alg in ["None", "NONE", "HS256", "RS512", "PS256", "EdDSA"] {
            let h = b64(&format!(r#"{{"alg":"{alg}","kid":"{RSA_KID}"}}"#));
            assert_eq!(
                check(&format!("{h}.{}.{}", p[1], p[2]), &keys),
                Err(JwsError::UnsupportedAlgorithm(alg.to_string())),
                "{alg}"
            );
        }
    }

    #[test]
    fn hs256_with_the_public_key_as_secret_is_rejected() {
        // The classic confusion attack: HMAC keyed with the public key's bytes.
        let k = key(RSA_PKCS1);
        let keys = set_of(&k);
        let h = b64(&format!(r#"{{"alg":"HS256","kid":"{RSA_KID}"}}"#));
        let p = b64(&claims().to_string());
        let input = format!("{h}.{p}");
        let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, RSA_SPKI.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag));
        assert_eq!(
            check(&token, &keys),
            Err(JwsError::UnsupportedAlgorithm("HS256".to_string()))
        );
    }

    #[test]
    fn switching_between_rs256_and_es256_never_verifies() {
        let rsa = key(RSA_PKCS1);
        let ec = key(EC256_SEC1);
        let both = KeySet::new(None, vec![rsa.verifying_key(), ec.verifying_key()]);
        // An RS256 token relabelled ES256 (same kid) and the other way round.
        for (signer, new_alg) in [(&rsa, "ES256"), (&ec, "RS256")] {
            let token = sign(signer, &claims()).unwrap();
            let p = parts(&token);
            let h = b64(&format!(
                r#"{{"alg":"{new_alg}","kid":"{}"}}"#,
                signer.kid()
            ));
            let forged = format!("{h}.{}.{}", p[1], p[2]);
            let want =
                JwsError::NoKeyForAlgorithm(if new_alg == "ES256" { "ES256" } else { "RS256" });
            assert_eq!(check(&forged, &both), Err(want));
            // Without a kid every key is tried; the key of the named algorithm rejects it.
            let h = b64(&format!(r#"{{"alg":"{new_alg}"}}"#));
            let forged = format!("{h}.{}.{}", p[1], p[2]);
            assert_eq!(check(&forged, &both), Err(JwsError::BadSignature));
        }
    }

    #[test]
    fn a_signature_from_another_key_of_the_same_type_fails() {
        let ours = key(RSA_PKCS1);
        let theirs = key(&generate_rsa_2048_pem().unwrap());
        let keys = set_of(&ours);
        // Their token, claiming our kid.
        let token = sign(&theirs, &claims()).unwrap();
        let p = parts(&token);
        let h = b64(&format!(r#"{{"alg":"RS256","kid":"{RSA_KID}"}}"#));
        assert_eq!(
            check(&format!("{h}.{}.{}", p[1], p[2]), &keys),
            Err(JwsError::BadSignature)
        );
        // Their token with their own kid: no key found.
        assert_eq!(check(&token, &keys), Err(JwsError::NoKeys));

        let ec_ours = key(EC256_SEC1);
        let ec_theirs = key(&super::super::keys::generate_ec_p256_pem().unwrap());
        let token = sign(&ec_theirs, &claims()).unwrap();
        let p = parts(&token);
        let h = b64(&format!(r#"{{"alg":"ES256","kid":"{EC256_KID}"}}"#));
        assert_eq!(
            check(&format!("{h}.{}.{}", p[1], p[2]), &set_of(&ec_ours)),
            Err(JwsError::BadSignature)
        );
    }

    /// Flips one bit of the decoded bytes of part `i` and re-encodes it.
    fn flip(token: &str, i: usize, byte: usize) -> String {
        let mut p = parts(token);
        let mut bytes = URL_SAFE_NO_PAD.decode(&p[i]).unwrap();
        bytes[byte] ^= 0x01;
        p[i] = URL_SAFE_NO_PAD.encode(bytes);
        p.join(".")
    }

    #[test]
    fn one_flipped_bit_anywhere_fails() {
        for pem in [RSA_PKCS1, EC256_SEC1] {
            let k = key(pem);
            let keys = set_of(&k);
            let token = sign(&k, &claims()).unwrap();
            // Payload: `"a"` → `"\``, still valid JSON of the same shape.
            let payload_at = claims().to_string().find("[\"a\"]").unwrap() + 2;
            assert_eq!(
                check(&flip(&token, 1, payload_at), &keys),
                Err(JwsError::BadSignature)
            );
            // Header: a kid character changes, so no key is found by kid.
            let kid_at = r#"{"alg":"RS256","kid":""#.len();
            assert_eq!(
                check(&flip(&token, 0, kid_at), &keys),
                Err(JwsError::NoKeys)
            );
            // Signature: first, middle and last byte.
            let sig_len = k.signature_len();
            for at in [0, sig_len / 2, sig_len - 1] {
                assert_eq!(
                    check(&flip(&token, 2, at), &keys),
                    Err(JwsError::BadSignature)
                );
            }
            // Raw text edits of the base64 are caught too.
            let mut t = token.clone().into_bytes();
            let last = t.len() - 1;
            t[last] = if t[last] == b'A' { b'B' } else { b'A' };
            assert!(check(std::str::from_utf8(&t).unwrap(), &keys).is_err());
        }
    }

    #[test]
    fn a_header_that_changes_only_whitespace_fails() {
        let k = key(RSA_PKCS1);
        let token = sign(&k, &claims()).unwrap();
        let p = parts(&token);
        let h = b64(&format!(r#"{{"alg":"RS256", "kid":"{RSA_KID}"}}"#));
        assert_eq!(
            check(&format!("{h}.{}.{}", p[1], p[2]), &set_of(&k)),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn kid_selects_the_key_and_no_kid_tries_all() {
        let a = key(RSA_PKCS1);
        let b = key(&generate_rsa_2048_pem().unwrap());
        let ec = key(EC256_SEC1);
        let keys = KeySet::new(
            None,
            vec![b.verifying_key(), ec.verifying_key(), a.verifying_key()],
        );
        let token = sign(&a, &claims()).unwrap();
        check(&token, &keys).unwrap();

        let p = parts(&token);
        // kid pointing to another key of the same type: that key alone is tried, and fails.
        let h = b64(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, b.kid()));
        assert_eq!(
            check(&format!("{h}.{}.{}", p[1], p[2]), &keys),
            Err(JwsError::BadSignature)
        );
        // No kid, or an empty one: every key is tried and the right one wins.
        for h in [
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"RS256","kid":""}"#,
            r#"{"alg":"RS256","kid":null}"#,
        ] {
            let input = format!("{}.{}", b64(h), p[1]);
            let sig = a.sign(input.as_bytes()).unwrap();
            let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
            assert_eq!(decode(&t).unwrap().kid, None);
            check(&t, &keys).unwrap();
            // ...and a wrong signature still fails against all of them.
            let mut bad = sig.clone();
            bad[7] ^= 0x80;
            let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(check(&t, &keys), Err(JwsError::BadSignature));
        }
        // No keys at all.
        assert_eq!(
            check(&token, &KeySet::new(None, vec![])),
            Err(JwsError::NoKeys)
        );
    }

    #[test]
    fn verify_only_key_set_from_pem_verifies() {
        let k = key(RSA_PKCS1);
        let token = sign(&k, &claims()).unwrap();
        let keys = KeySet::new(
            None,
            VerifyingKey::from_pem_all(RSA_CERT.as_bytes()).unwrap(),
        );
        check(&token, &keys).unwrap();
    }

    #[test]
    fn encoding_violations_are_malformed() {
        let k = key(EC256_SEC1);
        let keys = set_of(&k);
        let token = sign(&k, &claims()).unwrap();
        let p = parts(&token);
        let cases: Vec<String> = vec![
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}=.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}==", p[0], p[1], p[2]),
            format!(
                "{}.{}.{}",
                p[0],
                p[1],
                p[2].replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1)
            ),
            format!(
                "{}.{}.{}",
                p[0],
                p[1],
                p[2].replacen(|c: char| c.is_ascii_alphanumeric(), "/", 1)
            ),
            format!("{}.{}.{}", p[0].replacen('e', "+", 1), p[1], p[2]),
            format!("{}.{} .{}", p[0], p[1], p[2]),
            format!("{}.{}", p[0], p[1]),
            format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]),
            format!("{}.{}.{}.", p[0], p[1], p[2]),
            format!(".{}.{}", p[1], p[2]),
            format!("{}..{}", p[0], p[2]),
            format!("{}.{}.", p[0], p[1]),
            "..".to_string(),
            String::new(),
            format!("{}.{}.{}", b64("[1]"), p[1], p[2]),
            format!("{}.{}.{}", p[0], b64("\"str\""), p[2]),
            format!("{}.{}.{}", p[0], b64("null"), p[2]),
            format!("{}.{}.{}", p[0], b64("{not json"), p[2]),
            format!("{}.{}.{}", b64(r#"{"kid":"x"}"#), p[1], p[2]),
            format!("{}.{}.{}", b64(r#"{"alg":256}"#), p[1], p[2]),
            format!("{}.{}.{}", b64(r#"{"alg":"ES256","kid":7}"#), p[1], p[2]),
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"ES256","crit":["b64"],"b64":false}"#),
                p[1],
                p[2]
            ),
            format!(r#"{{"payload":"{}","signatures":[]}}"#, p[1]),
            format!("  \n{{\"protected\":\"{}\"}}", p[0]),
        ];
        for t in &cases {
            let got = decode(t).map(|_| ());
            assert!(
                matches!(got, Err(JwsError::Malformed(_))),
                "{t:?} gave {got:?}"
            );
            assert!(check(t, &keys).is_err());
        }
    }

    #[test]
    fn size_limit() {
        let k = key(EC256_SEC1);
        let keys = set_of(&k);
        let big = "x".repeat(MAX_TOKEN_BYTES);
        let token = sign(&k, &json!({"iss":"i","pad":big})).unwrap();
        assert!(token.len() > MAX_TOKEN_BYTES);
        assert_eq!(
            decode(&token).err(),
            Some(JwsError::Malformed("token is too large"))
        );
        assert_eq!(peek_issuer(&token), None);
        // Just under the limit is fine.
        let pad = "x".repeat(MAX_TOKEN_BYTES / 4 * 3 - 200);
        let token = sign(&k, &json!({"iss":"i","pad":pad})).unwrap();
        assert!(token.len() <= MAX_TOKEN_BYTES, "{}", token.len());
        check(&token, &keys).unwrap();
    }

    #[test]
    fn peek_issuer_cases() {
        let h = b64(r#"{"alg":"RS256"}"#);
        let tok = |payload: &str| format!("{h}.{}.c2ln", b64(payload));
        assert_eq!(
            peek_issuer(&tok(r#"{"iss":"kubernetes/serviceaccount"}"#)).as_deref(),
            Some("kubernetes/serviceaccount")
        );
        assert_eq!(peek_issuer(&tok(r#"{"sub":"x"}"#)), None);
        assert_eq!(peek_issuer(&tok(r#"{"iss":5}"#)), None);
        assert_eq!(peek_issuer(&tok(r#"["iss"]"#)), None);
        assert_eq!(
            peek_issuer(&format!("{h}.{}=.c2ln", b64(r#"{"iss":"abc"}"#))),
            None
        );
        assert_eq!(peek_issuer("a.b"), None);
        assert_eq!(peek_issuer("not a token"), None);
        assert_eq!(
            peek_issuer(&format!(
                " {{\"iss\":\"x\"}}.{}.c2ln",
                b64(r#"{"iss":"x"}"#)
            )),
            None
        );
    }

    #[test]
    fn debug_never_prints_the_token() {
        let k = key(EC256_SEC1);
        let token = sign(&k, &claims()).unwrap();
        let u = decode(&token).unwrap();
        let text = format!("{u:?}");
        let p = parts(&token);
        assert!(!text.contains(&p[2][..20]));
        assert!(!text.contains(&p[1][..20]));
        assert!(text.contains("ES256"));
    }

    #[test]
    fn two_hundred_rs256_signs_complete() {
        // Smoke test for the signing path with the key parsed once (no timing assertion).
        let k = key(RSA_PKCS1);
        let keys = set_of(&k);
        let mut tokens = Vec::new();
        for i in 0..200 {
            tokens.push(sign(&k, &json!({"iss":"i","n":i})).unwrap());
        }
        for t in tokens.iter().step_by(50) {
            check(t, &keys).unwrap();
        }
    }
}
