//! Signing keys change under a running server (issue 14), black-box: the real binary, kubectl
//! 1.32, PyJWT's `PyJWKClient` as the external verifier, and a real etcd for replicas.
//!
//! * the generated keys rotate in stages with `tokenwarden keys rotate`: tokens issued before,
//!   during and after each stage authenticate on the server and verify with a JWKS-caching
//!   verifier that never meets a kid it has not fetched; the stages survive a restart; a
//!   retired key leaves the JWKS and its tokens stop working;
//! * a `--service-account-signing-key-file` is re-read when it changes and on SIGHUP, and a
//!   broken one is refused while the old key signs on;
//! * two replicas on one etcd follow one ring: a key rotated through one is published and
//!   signs on the other; the ring in etcd holds no private key in the clear; a replica with
//!   another key-encryption key refuses to start.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::etcd::Etcd;
use support::{Server, ensure, or_die, poll};

const SA: &str = "system:serviceaccount:default:app";

fn token(s: &Server) -> String {
    s.kubectl_ok(&["create", "token", "app"]).trim().to_string()
}

/// The kid in a token's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    v["kid"].as_str().unwrap_or_default().to_string()
}

/// The server's key status file, as `tokenwarden keys status` reads it: (kid, stage) pairs.
fn stages(s: &Server) -> Vec<(String, String)> {
    let text = fs::read_to_string(s.data_dir().join("keys-status.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    v["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|k| {
                    let field = |f: &str| k[f].as_str().unwrap_or_default().to_string();
                    (field("kid"), field("stage"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn jwks_kids(s: &Server) -> BTreeSet<String> {
    let out = s.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    v["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn authenticates(s: &Server, token: &str, what: &str) {
    match s.whoami(token) {
        Ok(user) if user == SA => {}
        other => s.fail(format!("{what}: expected {SA}, got {other:?}")),
    }
}

/// A verifier that caches the JWKS as relying parties do (PyJWT's `PyJWKClient`, cache
/// lifespan 1 s) and counts its fetches and its misses: a miss is a kid it did not have,
/// which makes it fetch again (`get_signing_keys(refresh=True)`).
const VERIFIER: &str = r#"
import json, ssl, sys
import jwt
from jwt import PyJWKClient
url, ca = sys.argv[1], sys.argv[2]
counts = {"fetches": 0, "misses": 0}
class Counting(PyJWKClient):
    def fetch_data(self):
        counts["fetches"] += 1
        return super().fetch_data()
    def get_signing_keys(self, refresh=False):
        if refresh:
            counts["misses"] += 1
        return super().get_signing_keys(refresh)
client = Counting(url, cache_jwk_set=True, lifespan=1, ssl_context=ssl.create_default_context(cafile=ca))
for line in sys.stdin:
    token = line.strip()
    try:
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["RS256", "ES256"], options={"verify_aud": False})
        out = {"ok": True, "kid": key.key_id}
    except Exception as e:
        out = {"ok": False, "error": type(e).__name__ + ": " + str(e)}
    out.update(counts)
    print(json.dumps(out), flush=True)
"#;

struct Verifier {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Verifier {
    fn start(s: &Server) -> Verifier {
        let url = format!("https://127.0.0.1:{}/openid/v1/jwks", s.port());
        let ca = s.data_dir().join("ca.crt");
        let mut child = or_die(
            Command::new("python3")
                .args(["-c", VERIFIER, &url])
                .arg(&ca)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn(),
            "start the PyJWT verifier",
        );
        let stdin = or_die(child.stdin.take().ok_or("no pipe"), "the verifier's stdin");
        let stdout = or_die(
            child.stdout.take().ok_or("no pipe"),
            "the verifier's stdout",
        );
        let stdout = BufReader::new(stdout);
        Verifier {
            child,
            stdin,
            stdout,
        }
    }

    /// The verifier's verdict on `token`, with its fetch and miss counts so far.
    fn verify(&mut self, s: &Server, token: &str) -> Value {
        if writeln!(self.stdin, "{token}").is_err() {
            s.fail("the PyJWT verifier is gone");
        }
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        serde_json::from_str(&line)
            .unwrap_or_else(|_| s.fail(format!("the PyJWT verifier said {line:?}")))
    }

    #[track_caller]
    fn accepts(&mut self, s: &Server, token: &str, what: &str) -> Value {
        let v = self.verify(s, token);
        let ok = v["ok"] == true && v["misses"] == 0 && v["kid"] == kid(token).as_str();
        ensure(
            s,
            ok,
            &format!("{what}: verified, from the cached JWKS"),
            &v,
        );
        v
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn staged_rotation_never_breaks_a_token_or_a_verifier() {
    let flags = [
        "--anonymous-issuer-discovery",
        "--testing-key-retire-after=25s",
    ];
    let mut s = Server::start_with(&flags);
    s.kubectl_ok(&["create", "serviceaccount", "app"]);
    let before = token(&s);
    let k0 = kid(&before);
    ensure(
        &s,
        stages(&s) == [(k0.clone(), "signing".into())],
        "one signing key before any rotation",
        format!("{:?}", stages(&s)),
    );
    let mut verifier = Verifier::start(&s);
    verifier.accepts(&s, &before, "a token from before");

    // 1. Published: in the JWKS, not signing.
    let out = s.tokenwarden(&[
        "keys",
        "rotate",
        "--data-dir",
        &s.data_dir().to_string_lossy(),
        "--publish-ahead=8s",
    ]);
    s.check(
        out.success() && out.stdout.contains("published"),
        "keys rotate",
        &out,
    );
    let k1 = stages(&s)
        .into_iter()
        .find(|(_, stage)| stage == "published")
        .map(|(kid, _)| kid)
        .unwrap_or_else(|| s.fail("no published key after keys rotate"));
    ensure(
        &s,
        jwks_kids(&s) == [k0.clone(), k1.clone()].into(),
        "both keys in the JWKS while the old one signs",
        format!("{:?}", jwks_kids(&s)),
    );
    let during = token(&s);
    ensure(&s, kid(&during) == k0, "the old key still signs", &during);
    // The verifier's cached JWKS expires and it fetches the set with the new key in it.
    let fetched = verifier.verify(&s, &during)["fetches"]
        .as_i64()
        .unwrap_or(0);
    poll(
        &s,
        "the verifier fetches the JWKS again",
        Duration::from_secs(10),
        || {
            let v = verifier.verify(&s, &during);
            match v["fetches"].as_i64() {
                Some(n) if n > fetched && v["ok"] == true => Ok(()),
                _ => Err(v.to_string()),
            }
        },
    );
    let again = s.tokenwarden(&[
        "keys",
        "rotate",
        "--data-dir",
        &s.data_dir().to_string_lossy(),
    ]);
    s.check(
        !again.success() && again.stderr.contains("already under way"),
        "a second rotation waits for the first",
        &again,
    );

    // 2. Signing: new tokens carry the new kid, which the verifier already has.
    poll(
        &s,
        "the new key signs",
        Duration::from_secs(20),
        || match stages(&s).iter().find(|(k, _)| *k == k1) {
            Some((_, stage)) if stage == "signing" => Ok(()),
            _ => Err(format!("{:?}", stages(&s))),
        },
    );
    let after = token(&s);
    ensure(&s, kid(&after) == k1, "the new key signs", &after);
    verifier.accepts(&s, &after, "a token of the new key");
    verifier.accepts(&s, &before, "a token of the old key, still verifying");
    for (t, what) in [(&before, "before"), (&during, "during"), (&after, "after")] {
        authenticates(&s, t, &format!("the token from {what} the switch"));
    }

    // The stages survive a restart.
    let held = stages(&s);
    s.restart();
    poll(
        &s,
        "the same ring after a restart",
        Duration::from_secs(10),
        || match stages(&s) == held {
            true => Ok(()),
            false => Err(format!("{:?} != {held:?}", stages(&s))),
        },
    );
    authenticates(&s, &before, "the old key's token after the restart");
    ensure(
        &s,
        kid(&token(&s)) == k1,
        "the new key signs after a restart",
        "",
    );

    // 3. Retired: the old key leaves the JWKS and its tokens stop working.
    poll(
        &s,
        "the old key retires",
        Duration::from_secs(40),
        || match stages(&s) == [(k1.clone(), "signing".to_string())] {
            true => Ok(()),
            false => Err(format!("{:?}", stages(&s))),
        },
    );
    ensure(
        &s,
        jwks_kids(&s) == [k1.clone()].into(),
        "only the new key in the JWKS",
        format!("{:?}", jwks_kids(&s)),
    );
    ensure(
        &s,
        s.whoami(&before).is_err(),
        "a retired key's token is refused",
        "",
    );
    authenticates(&s, &after, "the new key's token");
    verifier.accepts(&s, &after, "the new key's token after the retirement");
    let status = s.tokenwarden(&[
        "keys",
        "status",
        "--data-dir",
        &s.data_dir().to_string_lossy(),
    ]);
    s.check(
        status.success() && status.stdout.contains(&k1) && !status.stdout.contains(&k0),
        "keys status shows the ring",
        &status,
    );
}

/// An RSA key in PEM from openssl (independent of the server's own generator).
fn openssl_key(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let out = or_die(
        Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&path)
            .arg("2048")
            .output(),
        "run openssl genrsa",
    );
    assert!(out.status.success(), "openssl genrsa failed");
    path
}

#[test]
fn a_signing_key_file_is_reloaded_and_a_broken_one_refused() {
    let keys = or_die(tempfile::tempdir(), "make a dir");
    let (key1, key2) = (
        openssl_key(keys.path(), "1.pem"),
        openssl_key(keys.path(), "2.pem"),
    );
    let signing = keys.path().join("signing.pem");
    let old = keys.path().join("old.pem");
    or_die(fs::copy(&key1, &signing), "copy");
    or_die(fs::copy(&key1, &old), "copy");
    let (signing_flag, old_flag) = (
        format!("--service-account-signing-key-file={}", signing.display()),
        format!("--service-account-key-file={}", old.display()),
    );
    let s = Server::start_with(&[&signing_flag, &old_flag]);
    s.kubectl_ok(&["create", "serviceaccount", "app"]);
    let first = token(&s);
    let k1 = kid(&first);

    // A broken file: refused and logged; the key loaded before signs on.
    or_die(fs::write(&signing, "not a key\n"), "write");
    poll(
        &s,
        "the broken key file refused",
        Duration::from_secs(10),
        || match s.log().contains("refusing the new service-account keys") {
            true => Ok(()),
            false => Err(s.log()),
        },
    );
    ensure(&s, kid(&token(&s)) == k1, "the old key signs on", "");

    // A new key: it signs at once; the old key verifies from --service-account-key-file.
    let tmp = keys.path().join(".signing.tmp");
    or_die(fs::copy(&key2, &tmp), "copy");
    or_die(fs::rename(&tmp, &signing), "rename");
    let second = poll(&s, "the new key signs", Duration::from_secs(10), || {
        let t = token(&s);
        match kid(&t) != k1 {
            true => Ok(t),
            false => Err(t),
        }
    });
    let k2 = kid(&second);
    authenticates(&s, &first, "the old key's token");
    authenticates(&s, &second, "the new key's token");
    ensure(
        &s,
        jwks_kids(&s) == [k1.clone(), k2.clone()].into(),
        "both keys in the JWKS",
        format!("{:?}", jwks_kids(&s)),
    );

    // SIGHUP re-reads even unchanged files; the old key is dropped from the verifying file.
    or_die(fs::copy(&key2, &old), "copy");
    let hup = Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status();
    ensure(&s, hup.is_ok_and(|st| st.success()), "kill -HUP", "");
    poll(&s, "SIGHUP logged", Duration::from_secs(10), || {
        match s.log().contains("SIGHUP: reloading") {
            true => Ok(()),
            false => Err(s.log()),
        }
    });
    poll(
        &s,
        "the old key dropped",
        Duration::from_secs(10),
        || match s.whoami(&first) {
            Err(_) => Ok(()),
            Ok(u) => Err(u),
        },
    );
    ensure(
        &s,
        jwks_kids(&s) == [k2].into(),
        "only the new key in the JWKS",
        format!("{:?}", jwks_kids(&s)),
    );
    // keys rotate is for generated keys.
    let out = s.tokenwarden(&[
        "keys",
        "rotate",
        "--data-dir",
        &s.data_dir().to_string_lossy(),
    ]);
    s.check(
        !out.success() && out.stderr.contains("--service-account-signing-key-file"),
        "keys rotate explains that file keys rotate by replacing the file",
        &out,
    );
}

#[test]
fn replicas_on_etcd_follow_one_sealed_ring() {
    let etcd = Etcd::start();
    let servers = format!("--etcd-servers={}", etcd.url());
    let a = Server::start_with(&[&servers]);
    let from = format!("--cluster-from={}", a.data_dir().display());
    let b = Server::start_with(&[&servers, &from]);
    a.kubectl_ok(&["create", "serviceaccount", "app"]);
    let k0 = kid(&token(&a));
    ensure(&b, kid(&token(&b)) == k0, "B signs with A's key", "");

    // The ring in etcd: sealed, no private key in the clear.
    let range = etcd.range("/registry/tokenwarden.io/signingkeys");
    let v: Value = serde_json::from_str(&range).unwrap_or_default();
    let value = v["kvs"][0]["value"].as_str().unwrap_or_default();
    let record = base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap_or_default();
    let record = String::from_utf8_lossy(&record);
    ensure(
        &a,
        record.contains("\"ciphertext\"") && !record.contains("PRIVATE KEY"),
        "the ring in etcd is sealed",
        &record,
    );

    // Rotated through A: published on B, then signing on both.
    let out = a.tokenwarden(&[
        "keys",
        "rotate",
        "--data-dir",
        &a.data_dir().to_string_lossy(),
        "--publish-ahead=4s",
    ]);
    a.check(out.success(), "keys rotate on A", &out);
    poll(
        &b,
        "B publishes the new key",
        Duration::from_secs(10),
        || match jwks_kids(&b).len() {
            2 => Ok(()),
            _ => Err(format!("{:?}", jwks_kids(&b))),
        },
    );
    let from_b = poll(
        &b,
        "B signs with the new key",
        Duration::from_secs(20),
        || {
            let t = token(&b);
            match kid(&t) != k0 {
                true => Ok(t),
                false => Err(t),
            }
        },
    );
    ensure(
        &a,
        kid(&token(&a)) == kid(&from_b),
        "A signs with the same new key",
        "",
    );
    authenticates(&a, &from_b, "B's new token on A");

    // A replica with another key-encryption key cannot open the ring: it says so and stops.
    let c = or_die(tempfile::tempdir(), "make a dir");
    let port = support::etcd::free_port().to_string();
    let out = a.tokenwarden(&[
        "serve",
        "--data-dir",
        &c.path().join("data").to_string_lossy(),
        "--secure-port",
        &port,
        &servers,
    ]);
    a.check(
        !out.success() && out.stderr.contains("key-encryption key"),
        "a replica with another key-encryption key refuses to start",
        &out,
    );
}
