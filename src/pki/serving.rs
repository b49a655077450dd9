//! The serving certificate in use: one rustls [`CertifiedKey`] that every new TLS handshake
//! asks for ([`ServingCert`], a `ResolvesServerCert`), swapped whole when the certificate
//! files are re-read or the generated certificate is renewed. A connection keeps the
//! certificate it was opened with: a running watch goes on untouched, the next connection
//! gets the new one.
//!
//! Owns: the swap, and turning a PEM pair into a [`CertifiedKey`] or refusing it (no
//! certificate, no key, a key that does not match the certificate). Must not: decide when to
//! re-read (that is `reload`), or put key material in an error or a `Debug` output.
//!
//! As kube-apiserver's `DynamicCertKeyPairContent` (`staging/src/k8s.io/apiserver/pkg/server/
//! dynamiccertificates/dynamic_serving_content.go`), a pair is refused only when it is empty,
//! does not parse or its key does not match (Go's `tls.X509KeyPair`); an expired or not yet
//! valid certificate is served, as there.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{PkiError, parse_certs, parse_key, provider};

/// The serving certificate and key for every new handshake; cheap to read (no lock).
pub(crate) struct ServingCert {
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for ServingCert {
    // STYLE.md rule 6: the key never reaches a log, not even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain = self.current.load().cert.len();
        write!(f, "ServingCert({chain} certificates, key redacted)")
    }
}

impl ServingCert {
    pub(crate) fn new(first: CertifiedKey) -> Arc<ServingCert> {
        Arc::new(ServingCert {
            current: ArcSwap::from_pointee(first),
        })
    }

    /// Serves `next` from the next handshake on; open connections keep theirs.
    pub(crate) fn replace(&self, next: CertifiedKey) {
        self.current.store(Arc::new(next));
    }

    /// The chain served now, leaf first.
    #[cfg(test)]
    pub(crate) fn chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.current.load().cert.clone()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The pair `chain_pem` (leaf first) and `key_pem`, or why it cannot be served; the paths
/// only name the files in the error.
pub(crate) fn certified_key(
    chain_pem: &str,
    key_pem: &str,
    chain_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, PkiError> {
    let chain = parse_certs(chain_pem, chain_path)?;
    let key = parse_key(key_pem, key_path)?;
    // `from_der` checks that the key is the certificate's (rustls' `keys_match`).
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => PkiError::InvalidFile(
            key_path.to_owned(),
            format!("not the private key of {}", chain_path.display()),
        ),
        other => PkiError::Tls(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, ServerName};

    /// A CA, and a function that issues a leaf for `names` (PEM chain leaf then CA, key PEM).
    fn ca() -> (String, impl Fn(&[&str]) -> (String, String)) {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(params, ca_key);
        let ca_chain = ca_pem.clone();
        let issue = move |names: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let leaf = CertificateParams::new(names).unwrap();
            let leaf = leaf.signed_by(&key, &issuer).unwrap();
            (leaf.pem() + &ca_chain, key.serialize_pem())
        };
        (ca_pem, issue)
    }

    fn pair(chain: &str, key: &str) -> Result<CertifiedKey, PkiError> {
        certified_key(chain, key, Path::new("tls.crt"), Path::new("tls.key"))
    }

    /// Completes a handshake in memory with a client trusting `ca_pem` for `name`; the leaf
    /// the server presented.
    fn handshake(
        server: &Arc<rustls::ServerConfig>,
        ca_pem: &str,
        name: &str,
    ) -> CertificateDer<'static> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(parse_certs(ca_pem, Path::new("ca")).unwrap());
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = rustls::ServerConnection::new(server.clone()).unwrap();
        crate::pki::tests::exchange(&mut client, &mut server);
        assert!(!client.is_handshaking(), "handshake done");
        client.peer_certificates().unwrap()[0].clone().into_owned()
    }

    fn server_config(serving: &Arc<ServingCert>) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(serving.clone());
        Arc::new(config)
    }

    #[test]
    fn a_swapped_certificate_is_served_from_the_next_handshake() {
        let (ca_pem, issue) = ca();
        let (chain_a, key_a) = issue(&["a.example"]);
        let (chain_b, key_b) = issue(&["a.example", "b.example"]);
        let serving = ServingCert::new(pair(&chain_a, &key_a).unwrap());
        let config = server_config(&serving);
        let first = handshake(&config, &ca_pem, "a.example");
        assert_eq!(first, parse_certs(&chain_a, Path::new("a")).unwrap()[0]);
        serving.replace(pair(&chain_b, &key_b).unwrap());
        let second = handshake(&config, &ca_pem, "b.example");
        assert_eq!(second, parse_certs(&chain_b, Path::new("b")).unwrap()[0]);
        assert_ne!(first, second);
        assert_eq!(serving.chain().len(), 2, "leaf and CA");
    }

    #[test]
    fn a_key_of_another_certificate_or_garbage_is_refused() {
        let (_, issue) = ca();
        let (chain_a, key_a) = issue(&["a.example"]);
        let (_, key_b) = issue(&["a.example"]);
        let err = pair(&chain_a, &key_b).expect_err("mismatched key");
        assert!(
            err.to_string()
                .contains("tls.key: not the private key of tls.crt"),
            "{err}"
        );
        for (chain, key) in [
            ("", key_a.as_str()),
            ("not a certificate", key_a.as_str()),
            (chain_a.as_str(), ""),
            (
                chain_a.as_str(),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
        ] {
            let err = pair(chain, key).expect_err("refused");
            assert!(!err.to_string().contains("PRIVATE"), "{err}");
        }
        let serving = ServingCert::new(pair(&chain_a, &key_a).unwrap());
        assert!(!format!("{serving:?}").contains("PRIVATE"));
    }
}
