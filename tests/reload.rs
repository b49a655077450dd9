//! Black-box tests of files re-read without restart (issue 14): the serving certificate of
//! `--tls-cert-file`/`--tls-private-key-file` and the users of `--token-auth-file` change under
//! a running server, when the files change and on SIGHUP; a broken new file is refused with an
//! error in the log and the old material stays in use. The real binary is driven by the real
//! kubectl 1.32, curl and openssl (which reads the certificate a new connection gets).
//! Certificates are made here with rcgen, from a test CA the kubeconfig trusts.
//! Must not: sleep a fixed time or assert on timing (every wait is a bounded poll), or touch
//! the signing-key rotation (tests/rotation.rs).

mod support;

use support::{Server, Streaming, ensure, or_die, poll};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

/// How long a change may take to be picked up: the files are polled every second.
const WITHIN: Duration = Duration::from_secs(20);

const TLS_RELOADED: &str = "reloaded the serving certificate (--tls-cert-file";
const TLS_REFUSED: &str = "refusing the new serving certificate (--tls-cert-file";
const TOKENS_RELOADED: &str = "reloaded the token file (--token-auth-file)";
const TOKENS_REFUSED: &str = "refusing the new token file (--token-auth-file)";
const SIGHUP: &str = "SIGHUP: reloading key, certificate and token files";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A tempdir for files that must exist before the server starts.
fn scratch_dir() -> tempfile::TempDir {
    or_die(
        tempfile::Builder::new().prefix("tw-it-reload-").tempdir(),
        "make a dir",
    )
}

/// A test CA that issues serving certificates for 127.0.0.1 and one DNS name.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let key = or_die(KeyPair::generate(), "generate the CA key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "tokenwarden reload test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = or_die(params.self_signed(&key), "self-sign the CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for 127.0.0.1 and `dns` with this serial: (chain PEM, leaf then CA; key PEM).
    fn issue(&self, serial: u64, dns: &str) -> (String, String) {
        let key = or_die(KeyPair::generate(), "generate a serving key");
        let names = vec!["127.0.0.1".to_string(), dns.to_string()];
        let mut params = or_die(CertificateParams::new(names), "make serving params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tokenwarden");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        let leaf = or_die(params.signed_by(&key, &self.issuer), "issue a leaf");
        (leaf.pem() + &self.pem, key.serialize_pem())
    }
}

/// Replaces `path` by a rename, as `install` or a certificate manager does.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    or_die(
        fs::write(&tmp, contents),
        format!("write {}", tmp.display()),
    );
    or_die(
        fs::rename(&tmp, path),
        format!("rename to {}", path.display()),
    );
}

/// The serial and SANs of the certificate a new TLS connection gets, as openssl prints them.
fn served_certificate(s: &Server) -> String {
    let script = "openssl s_client -connect 127.0.0.1:\"$1\" </dev/null 2>/dev/null \
                  | openssl x509 -noout -serial -ext subjectAltName";
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, "sh", &s.port().to_string()]);
    let out = s.run(cmd, None);
    s.check(out.success(), "openssl read no certificate", &out);
    out.stdout
}

/// How many lines of the server log contain `text`.
fn log_count(s: &Server, text: &str) -> usize {
    s.log().lines().filter(|l| l.contains(text)).count()
}

/// Waits until the server log has more than `before` lines containing `text`.
#[track_caller]
fn wait_for_log(s: &Server, text: &str, before: usize) {
    poll(s, &format!("a new log line {text:?}"), WITHIN, || {
        let now = log_count(s, text);
        if now > before {
            Ok(())
        } else {
            Err(format!("{now} such lines"))
        }
    });
}

/// `kill -HUP` the server.
fn sighup(s: &Server) {
    let pid = s.pid().to_string();
    let sent = Command::new("kill").args(["-HUP", &pid]).status();
    assert!(
        matches!(sent, Ok(st) if st.success()),
        "kill -HUP: {sent:?}"
    );
}

/// Sets its flag when dropped, a panic included, so that a prober thread always ends.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Opens new TLS connections (curl, trusting only `ca`, with the headers of the file
/// `headers`) to `/readyz` until `stop`; every failed one, with what curl said.
fn probe_until(port: u16, ca: &Path, headers: &Path, stop: &AtomicBool) -> Vec<String> {
    let mut failures = Vec::new();
    let url = format!("https://127.0.0.1:{port}/readyz");
    while !stop.load(Ordering::Relaxed) {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(ca)
            .arg("-H")
            .arg(format!("@{}", headers.display()))
            .arg(&url)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => failures.push(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// 1. The serving certificate

#[test]
fn a_new_certificate_is_served_to_new_connections_and_a_running_watch_goes_on() {
    let dir = scratch_dir();
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.crt");
    or_die(fs::write(&ca_file, &ca.pem), "write the CA");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (chain, key_pem) = ca.issue(0x1001, "first.tokenwarden.test");
    replace(&cert, &chain);
    replace(&key, &key_pem);
    let (cert_arg, key_arg) = (cert.to_string_lossy(), key.to_string_lossy());
    let s = Server::start_with(&[
        "--tls-cert-file",
        &cert_arg,
        "--tls-private-key-file",
        &key_arg,
    ]);
    let first = served_certificate(&s);
    ensure(
        &s,
        first.contains("serial=1001") && first.contains("DNS:first.tokenwarden.test"),
        "the first certificate is served",
        &first,
    );

    // A watch on one long-lived connection, opened with the first certificate.
    s.kubectl_ok(&["create", "sa", "before-swap"]);
    let mut watch = Streaming::kubectl(&s, &["get", "serviceaccounts", "-A", "-w"]);
    watch.wait_for(&s, "the before-swap row", |l| l.contains("before-swap"));

    // New connections all along the swap: every one succeeds, with either certificate.
    let failures = while_probing(&s, &ca_file, || {
        let reloads = log_count(&s, TLS_RELOADED);
        let (chain, key_pem) = ca.issue(0x1002, "second.tokenwarden.test");
        replace(&key, &key_pem);
        replace(&cert, &chain);
        wait_for_log(&s, TLS_RELOADED, reloads);
    });
    ensure(
        &s,
        failures.is_empty(),
        "no new connection failed during the swap",
        failures.join("\n"),
    );
    let second = served_certificate(&s);
    ensure(
        &s,
        second.contains("serial=1002")
            && second.contains("DNS:second.tokenwarden.test")
            && !second.contains("first.tokenwarden.test"),
        "a new connection gets the new certificate",
        &second,
    );
    // The watch did not break: kubectl's `get -w` does not reconnect, so an event for an
    // object created after the swap arrives on the connection opened before it.
    s.kubectl_ok(&["create", "sa", "after-swap"]);
    watch.wait_for(&s, "the after-swap row on the old watch", |l| {
        l.contains("after-swap")
    });
    drop(watch);

    broken_pairs_are_refused(&s, &ca, &cert);

    // SIGHUP re-reads the files even unchanged: put a good pair back, then signal.
    let reloads = log_count(&s, TLS_RELOADED);
    replace(&cert, &chain_of(&s, &ca, &key));
    wait_for_log(&s, TLS_RELOADED, reloads);
    let reloads = log_count(&s, TLS_RELOADED);
    sighup(&s);
    wait_for_log(&s, TLS_RELOADED, reloads);
    ensure(&s, log_count(&s, SIGHUP) == 1, "one SIGHUP logged", s.log());
    ensure(
        &s,
        !s.log().contains("PRIVATE KEY"),
        "no key material in the log",
        s.log(),
    );
}

/// Runs `swap` while new connections are opened to the server one after another (curl with
/// the admin token, trusting only `ca_file`); the connections that failed.
fn while_probing(s: &Server, ca_file: &Path, swap: impl FnOnce()) -> Vec<String> {
    let admin = or_die(
        fs::read_to_string(s.data_dir().join("admin.token")),
        "read the token",
    );
    let headers = s.write_file(
        "probe-headers",
        &format!("Authorization: Bearer {}\n", admin.trim()),
    );
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let (port, headers, stop) = (s.port(), Path::new(&headers), &stop);
        let prober = scope.spawn(move || probe_until(port, ca_file, headers, stop));
        let stopper = StopOnDrop(stop);
        swap();
        drop(stopper);
        prober
            .join()
            .unwrap_or_else(|_| vec!["the prober panicked".into()])
    })
}

/// An unparsable certificate, then a certificate whose key is not the one in the key file,
/// are refused with an error in the log, and the certificate of serial 1002 stays.
fn broken_pairs_are_refused(s: &Server, ca: &TestCa, cert: &Path) {
    let refusals = log_count(s, TLS_REFUSED);
    replace(cert, "not a certificate\n");
    wait_for_log(s, TLS_REFUSED, refusals);
    let (third_chain, _) = ca.issue(0x1003, "third.tokenwarden.test");
    let refusals = log_count(s, TLS_REFUSED);
    replace(cert, &third_chain);
    wait_for_log(s, TLS_REFUSED, refusals);
    let log = s.log();
    ensure(
        s,
        log.contains("not the private key of"),
        "a key of another certificate is refused as such",
        &log,
    );
    let still = served_certificate(s);
    ensure(
        s,
        still.contains("serial=1002"),
        "the last good certificate is still served",
        &still,
    );
    s.kubectl_ok(&["get", "sa", "after-swap"]);
}

/// A chain for the key now in `key`, issued by `ca` (serial 0x1004).
fn chain_of(s: &Server, ca: &TestCa, key: &Path) -> String {
    let pem = or_die(fs::read_to_string(key), "read the key");
    let key = or_die(KeyPair::from_pem(&pem), "parse the key");
    let names = vec![
        "127.0.0.1".to_string(),
        "fourth.tokenwarden.test".to_string(),
    ];
    let mut params = or_die(CertificateParams::new(names), "make serving params");
    params.serial_number = Some(SerialNumber::from(0x1004u64));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = params.signed_by(&key, &ca.issuer);
    let leaf = leaf.unwrap_or_else(|e| s.fail(format!("issue the fourth leaf: {e}")));
    leaf.pem() + &ca.pem
}

// ---------------------------------------------------------------------------------------------
// 2. --token-auth-file

const ALICE: &str = "alice-token-0d5c9a71";
const BOB: &str = "bob-token-7e21b4c8";
const CAROL: &str = "carol-token-52f0aa3e";
const DAVE: &str = "dave-token-c81d07b6";

/// Waits until `token` authenticates as `user`, or (`None`) is refused with 401.
#[track_caller]
fn wait_for_user(s: &Server, token: &str, user: Option<&str>) {
    let what = match user {
        Some(user) => format!("the token authenticating as {user}"),
        None => "the token refused (Unauthorized)".to_string(),
    };
    poll(s, &what, WITHIN, || match (s.whoami(token), user) {
        (Ok(got), Some(want)) if got == want => Ok(()),
        (Err(e), None) if e.contains("(Unauthorized)") => Ok(()),
        (Ok(got), _) => Err(format!("authenticated as {got}")),
        (Err(e), _) => Err(e),
    });
}

#[test]
fn token_file_users_come_and_go_without_restart_and_a_broken_file_is_refused() {
    let dir = scratch_dir();
    let csv = dir.path().join("tokens.csv");
    replace(&csv, &format!("{ALICE},alice,uid-alice\n"));
    let s = Server::start_with(&["--token-auth-file", &csv.to_string_lossy()]);
    wait_for_user(&s, ALICE, Some("alice"));
    wait_for_user(&s, BOB, None);

    // Added: authenticates within the poll; removed: 401.
    replace(
        &csv,
        &format!("{ALICE},alice,uid-alice\n{BOB},bob,uid-bob\n"),
    );
    wait_for_user(&s, BOB, Some("bob"));
    replace(&csv, &format!("{BOB},bob,uid-bob\n"));
    wait_for_user(&s, ALICE, None);
    let alice_file = write_token(&s, ALICE);
    let reply = s.https_as(
        true,
        Some(alice_file.as_path()),
        "GET",
        "/api/v1/namespaces/default/serviceaccounts",
        &[],
        None,
    );
    ensure(
        &s,
        reply.status == 401,
        "a removed user gets 401",
        &reply.out,
    );

    // A line with two columns: the whole file is refused, bob stays, carol never comes.
    let refusals = log_count(&s, TOKENS_REFUSED);
    replace(&csv, &format!("{BOB},bob,uid-bob\n{CAROL},carol\n"));
    wait_for_log(&s, TOKENS_REFUSED, refusals);
    let log = s.log();
    ensure(
        &s,
        log.contains("line 2 must have at least 3 columns"),
        "the error names the line",
        &log,
    );
    wait_for_user(&s, BOB, Some("bob"));
    wait_for_user(&s, CAROL, None);
    s.kubectl_ok(&["get", "ns", "default"]);

    // Fixed: dave comes. SIGHUP re-reads the unchanged file.
    replace(&csv, &format!("{BOB},bob,uid-bob\n{DAVE},dave,uid-dave\n"));
    wait_for_user(&s, DAVE, Some("dave"));
    let reloads = log_count(&s, TOKENS_RELOADED);
    sighup(&s);
    wait_for_log(&s, TOKENS_RELOADED, reloads);
    wait_for_user(&s, DAVE, Some("dave"));
    ensure(&s, log_count(&s, SIGHUP) == 1, "one SIGHUP logged", s.log());
    let log = s.log();
    for token in [ALICE, BOB, CAROL, DAVE] {
        ensure(&s, !log.contains(token), "no token in the log", &log);
    }
}

/// A file holding `token`, in the server's temp dir, for `https_as`.
fn write_token(s: &Server, token: &str) -> PathBuf {
    PathBuf::from(s.write_file("token", token))
}
