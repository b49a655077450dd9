//! More black-box tests of the server core (issue 2): static users from `--token-auth-file`,
//! request-body limits and content types, `edit`, server-side dry run, finalizers with
//! `delete --wait`, watches across a restart and from a future resourceVersion, HTTP/2, JSON
//! logs that never hold a credential, and the modes and reuse of the files in the data dir.
//! Expected strings come from kubectl's and kube-apiserver's source (named beside each
//! assertion) or shared/reference/kubectl-wire.md. Must not: sleep, assert on timing, or
//! assume that a namespace holds only what the test put there.

mod support;

use support::{assert_stderr_line, assert_stdout};

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{KUBECTL, Output, Server, assert_status, or_die, request, tokenwarden_bin};

/// `kubectl get KIND/NAME -o jsonpath=TEMPLATE` (no trailing newline).
#[track_caller]
fn jsonpath(s: &Server, object: &str, template: &str) -> Output {
    s.kubectl(&["get", object, "-o", &format!("jsonpath={template}")])
}

/// A tempdir for files that must exist before the server starts (its own root does not yet).
fn scratch_dir() -> tempfile::TempDir {
    or_die(
        tempfile::Builder::new().prefix("tw-it-more-").tempdir(),
        "make a dir",
    )
}

/// Runs `cmd` to its end without a Server (for a server that must fail to start); kills it
/// after 30 s.
#[track_caller]
fn run_to_exit(mut cmd: Command) -> Output {
    let line = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = or_die(child, &line);
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(out) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = Command::new("kill").args(["-9", &pid]).status();
        panic!("{line} did not exit within 30 s");
    };
    let out = or_die(out, format!("wait for {line}"));
    Output {
        cmd: line,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. --token-auth-file
// ---------------------------------------------------------------------------------------------

const ALICE: &str = "alice-token-6c1f0e2d";
const BOB: &str = "bob-token-93ab47d5";

#[test]
fn token_auth_file_users_authenticate_and_only_masters_may_do_everything() {
    let dir = scratch_dir();
    let csv = dir.path().join("tokens.csv");
    let users = format!("{ALICE},alice,uid-alice,\"system:masters\"\n{BOB},bob,uid-bob\n");
    or_die(fs::write(&csv, users), "write the token file");
    let csv = csv.to_string_lossy().into_owned();
    let s = Server::start_with(&["--token-auth-file", &csv]);

    // `auth whoami` prints an ATTRIBUTE/VALUE table (kubectl's whoami.go); the union
    // authenticator appends system:authenticated to every user's groups.
    let out = s.kubectl_with_token(ALICE, &["auth", "whoami"]);
    assert_stdout(
        &s,
        &out,
        concat!(
            "ATTRIBUTE   VALUE\n",
            "Username    alice\n",
            "UID         uid-alice\n",
            "Groups      [system:masters system:authenticated]\n",
        ),
    );
    let out = s.kubectl_with_token(BOB, &["auth", "whoami"]);
    assert_stdout(
        &s,
        &out,
        concat!(
            "ATTRIBUTE   VALUE\n",
            "Username    bob\n",
            "UID         uid-bob\n",
            "Groups      [system:authenticated]\n",
        ),
    );

    // RBAC's message for a denied list (kubectl-wire.md §4, Forbidden).
    let out = s.kubectl_with_token(BOB, &["get", "sa"]);
    s.check(!out.success(), "bob may not list serviceaccounts", &out);
    assert_stderr_line(
        &s,
        &out,
        concat!(
            r#"Error from server (Forbidden): serviceaccounts is forbidden: User "bob" cannot "#,
            r#"list resource "serviceaccounts" in API group "" in the namespace "default""#
        ),
    );
    let out = s.kubectl_with_token(ALICE, &["get", "sa"]);
    s.check(out.success(), "alice is in system:masters", &out);

    // `auth can-i` prints yes/no and exits 1 on no (kubectl's cani.go).
    let can_i_list = ["auth", "can-i", "list", "serviceaccounts"];
    let out = s.kubectl_with_token(BOB, &can_i_list);
    let ok = !out.success() && out.stdout == "no\n" && out.status.code() == Some(1);
    s.check(ok, "bob: expected `no` and exit code 1", &out);
    assert_stdout(&s, &s.kubectl_with_token(ALICE, &can_i_list), "yes\n");
    // system:basic-user lets every authenticated user create SelfSubjectReviews.
    let can_i_review = [
        "auth",
        "can-i",
        "create",
        "selfsubjectreviews.authentication.k8s.io",
    ];
    for token in [ALICE, BOB] {
        assert_stdout(&s, &s.kubectl_with_token(token, &can_i_review), "yes\n");
    }
}

#[test]
fn a_token_auth_file_line_with_two_columns_stops_the_server() {
    let dir = scratch_dir();
    let csv = dir.path().join("tokens.csv");
    or_die(
        fs::write(&csv, "good-token,carol,uid-carol\nshort-token,dave\n"),
        "write the token file",
    );
    let mut cmd = Command::new(tokenwarden_bin());
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    cmd.args(["--bind-address", "127.0.0.1", "--secure-port", "0"]);
    cmd.arg("--token-auth-file").arg(&csv);
    let out = run_to_exit(cmd);
    // kube-apiserver's tokenfile.NewCSV: `token file '<path>' must have at least 3 columns
    // (token, user name, user uid), found 2`. The file's name and the same words must be there.
    let ok = !out.success()
        && out.stderr.contains(&*csv.to_string_lossy())
        && out
            .stderr
            .contains("must have at least 3 columns (token, user name, user uid), found 2");
    assert!(
        ok,
        "expected a non-zero exit naming the file and the short line\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Request bodies
// ---------------------------------------------------------------------------------------------

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn request_bodies_over_3_mib_bad_json_and_unknown_types_get_kubernetes_statuses() {
    let s = Server::start();
    // kube-apiserver reads at most --max-request-bytes (3 MiB) + 1 and answers
    // NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", limit)) (handlers/rest.go
    // limitedReadBody), i.e. `Request entity too large: limit is 3145728`.
    let filler = "x".repeat(3 * 1024 * 1024 + 1024);
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{filler}"}}}}"#
    );
    let reply = request(&s, "POST", CONFIGMAPS, "application/json", &big);
    assert_status(&s, &reply, 413, "RequestEntityTooLarge", "a 3 MiB body");
    let ok = reply.json()["message"] == "Request entity too large: limit is 3145728";
    s.check(
        ok,
        "the 413 message differs from kube-apiserver's",
        &reply.out,
    );
    // The server keeps serving, and nothing was stored.
    assert_stdout(&s, &s.kubectl(&["get", "--raw", "/readyz"]), "ok");
    let out = s.kubectl(&["get", "cm", "big"]);
    assert_stderr_line(
        &s,
        &out,
        r#"Error from server (NotFound): configmaps "big" not found"#,
    );
    let out = s.kubectl(&["create", "configmap", "small", "--from-literal=a=b"]);
    assert_stdout(&s, &out, "configmap/small created\n");

    // The JSON serializer's error, wrapped by transformDecodeError into NewBadRequest:
    // `couldn't get version/kind; json parse error: <Go's encoding/json text>`. Only the
    // Kubernetes part is asserted; the parser's own words differ between Go and Rust.
    let reply = request(&s, "POST", CONFIGMAPS, "application/json", "{nope");
    assert_status(&s, &reply, 400, "BadRequest", "a body that is not JSON");
    let message = reply.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    s.check(
        message.starts_with("couldn't get version/kind; json parse error: "),
        "the 400 message differs from kube-apiserver's",
        &reply.out,
    );

    // negotiation.NewUnsupportedMediaTypeError(SupportedMediaTypes()) (negotiation/errors.go).
    let manifest = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"plain"}}"#;
    let reply = request(&s, "POST", CONFIGMAPS, "text/plain", manifest);
    assert_status(&s, &reply, 415, "UnsupportedMediaType", "a text/plain body");
    let expected = "the body of the request was in an unknown format - accepted media types \
                    include: application/json, application/yaml, \
                    application/vnd.kubernetes.protobuf";
    s.check(
        reply.json()["message"] == expected,
        "the 415 message differs from kube-apiserver's",
        &reply.out,
    );
    let out = s.kubectl(&["get", "cm", "plain"]);
    s.check(!out.success(), "the 415 request created the object", &out);
}

#[test]
fn put_on_a_collection_path_is_method_not_allowed() {
    let s = Server::start();
    // kube-apiserver registers PUT only on `…/configmaps/{name}`. go-restful finds routes for
    // `…/configmaps` (GET, POST, DELETE) but none for PUT and answers 405; the apiserver's
    // serviceErrorHandler turns it into NewGenericServerResponse(405, …): reason
    // MethodNotAllowed, `the server does not allow this method on the requested resource`.
    let manifest = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#;
    let reply = request(&s, "PUT", CONFIGMAPS, "application/json", manifest);
    assert_status(&s, &reply, 405, "MethodNotAllowed", "PUT without a name");
    let ok = reply.json()["message"]
        == "the server does not allow this method on the requested resource";
    s.check(
        ok,
        "the 405 message differs from kube-apiserver's",
        &reply.out,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.–5. edit, server-side dry run, finalizers
// ---------------------------------------------------------------------------------------------

/// kubectl edit's editor: adds `labels: {edited: "yes"}` under `metadata` of example-sa.
const EDITOR: &str = "#!/bin/sh
sed -i 's/^  name: example-sa$/  labels:\\n    edited: \"yes\"\\n  name: example-sa/' \"$1\"
";

#[test]
fn edit_with_a_non_interactive_editor_patches_the_object() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let script = s.write_file("editor.sh", EDITOR);
    let mut cmd = s.command(KUBECTL, &s.kubeconfig(), &["edit", "sa", "example-sa"]);
    // An EDITOR with a space is split into argv (kubectl's editor.go), so the script needs no
    // exec bit. KUBE_EDITOR would win over EDITOR.
    cmd.env_remove("KUBE_EDITOR")
        .env("EDITOR", format!("sh {script}"));
    let out = s.run(cmd, None);
    // kubectl-wire.md §3.11.
    assert_stdout(&s, &out, "serviceaccount/example-sa edited\n");
    let out = jsonpath(&s, "sa/example-sa", "{.metadata.labels.edited}");
    assert_stdout(&s, &out, "yes");
}

#[test]
fn server_side_dry_run_creates_nothing() {
    let s = Server::start();
    // kubectl-wire.md §3.3: `--dry-run=server` sends dryRun=All and prints `(server dry run)`.
    let out = s.kubectl(&["create", "sa", "x", "--dry-run=server"]);
    assert_stdout(&s, &out, "serviceaccount/x created (server dry run)\n");
    let out = s.kubectl(&["get", "sa", "x"]);
    assert_stderr_line(
        &s,
        &out,
        r#"Error from server (NotFound): serviceaccounts "x" not found"#,
    );
}

const HELD_CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  finalizers:
  - example.com/hold
data:
  a: b
";

#[test]
fn delete_waits_for_finalizers_and_removing_them_deletes() {
    let s = Server::start();
    let path = s.write_file("held.yaml", HELD_CONFIGMAP);
    assert_stdout(
        &s,
        &s.kubectl(&["apply", "-f", &path]),
        "configmap/held created\n",
    );
    // delete.go prints the deletion, then waits for the object to go; wait.go's timeout
    // message is `timed out waiting for the condition on <resource>/<name>`.
    let out = s.kubectl(&["delete", "cm", "held", "--wait=true", "--timeout=3s"]);
    let ok = !out.success() && out.stdout == "configmap \"held\" deleted\n";
    s.check(ok, "delete must print the deletion and then fail", &out);
    assert_stderr_line(
        &s,
        &out,
        "error: timed out waiting for the condition on configmaps/held",
    );
    let out = jsonpath(
        &s,
        "cm/held",
        "{.metadata.deletionTimestamp} {.metadata.finalizers[0]}",
    );
    let (stamp, finalizer) = out.stdout.split_once(' ').unwrap_or_default();
    let b = stamp.as_bytes();
    let is_timestamp = b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z';
    s.check(
        out.success() && is_timestamp && finalizer == "example.com/hold",
        "the held object must carry a deletionTimestamp and keep its finalizer",
        &out,
    );
    let patch = r#"{"metadata":{"finalizers":null}}"#;
    let out = s.kubectl(&["patch", "cm", "held", "--type=merge", "-p", patch]);
    assert_stdout(&s, &out, "configmap/held patched\n");
    let out = s.kubectl(&["get", "cm", "held"]);
    assert_stderr_line(
        &s,
        &out,
        r#"Error from server (NotFound): configmaps "held" not found"#,
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Watch
// ---------------------------------------------------------------------------------------------

/// A running kubectl whose stdout lines a thread forwards as they arrive; killed on drop.
struct Running {
    cmd: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Receiver<String>,
}

impl Running {
    fn start(s: &Server, args: &[&str]) -> Running {
        let mut cmd = s.command(KUBECTL, &s.kubeconfig(), args);
        let line = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = or_die(child, &line);
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        let (etx, stderr) = mpsc::channel();
        if let Some(mut err) = child.stderr.take() {
            thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                let _ = etx.send(text);
            });
        }
        Running {
            cmd: line,
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn transcript(&self) -> String {
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        format!(
            "$ {}\n--- stdout ---\n{}\n--- stderr ---\n{stderr}",
            self.cmd,
            self.seen.join("\n")
        )
    }

    /// Consumes stdout lines until one satisfies `pred`; fails after 15 s.
    #[track_caller]
    fn wait_for(&mut self, s: &Server, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = pred(&line);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => s.fail(format!("waiting for {what}: {e}\n{}", self.transcript())),
            }
        }
    }

    /// Waits up to 20 s for the process to exit and returns whether it exited 0.
    #[track_caller]
    fn wait_exit(&mut self, s: &Server) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                other => s.fail(format!(
                    "still running 20 s later ({other:?})\n{}",
                    self.transcript()
                )),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn get_watch_ends_cleanly_when_the_server_stops() {
    let mut s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let mut watch = Running::start(&s, &["get", "sa", "-w"]);
    let first = |name: &'static str| move |l: &str| l.split_whitespace().next() == Some(name);
    watch.wait_for(&s, "the header", first("NAME"));
    watch.wait_for(&s, "the example-sa row", first("example-sa"));
    // SIGTERM ends every watch stream; kubectl's UntilWithoutRetry then sees the result
    // channel close, and `get -w` exits 0 as it does when kube-apiserver ends a watch.
    s.restart();
    let clean = watch.wait_exit(&s);
    if !clean {
        s.fail(format!(
            "`kubectl get sa -w` failed when the server stopped\n{}",
            watch.transcript()
        ));
    }
}

/// Far beyond any revision these tests reach.
const FUTURE_RV: &str = "99999999";

#[test]
fn watch_from_a_future_resource_version_waits_like_kube_apiserver() {
    let s = Server::start();
    // kube-apiserver (cacher.go Watch → watchCache.getAllEventsSinceLocked) has no upper
    // bound for a plain watch: a resourceVersion in the future is accepted with 200 and the
    // stream carries only events after it, so here nothing until timeoutSeconds ends it.
    // ("Too large resource version" is the answer of reads and of watch-list requests with
    // sendInitialEvents=true, which wait up to 3 s for the cache to catch up; see the next
    // test.)
    let path = format!("{CONFIGMAPS}?watch=true&resourceVersion={FUTURE_RV}&timeoutSeconds=1");
    let reply = request(&s, "GET", &path, "", "");
    let ok = reply.status == 200 && reply.body.is_empty();
    s.check(
        ok,
        "a watch from a future resourceVersion must be a 200 stream with no events",
        &reply.out,
    );
}

#[test]
fn list_at_a_future_resource_version_is_too_large() {
    let s = Server::start();
    // kube-apiserver serves a list with `limit` from etcd (cacher.go shouldDelegateList); with
    // resourceVersionMatch=NotOlderThan the etcd3 store reads the current revision and
    // validateMinimumResourceVersion answers storage.NewTooLargeResourceVersionError(asked,
    // current, 0): NewTimeoutError, so 504 with reason Timeout, `Timeout: Too large resource
    // version: <asked>, current: <rev>`, and the cause {reason: ResourceVersionTooLarge,
    // message: "Too large resource version"} that client-go's reflector looks for
    // (storage/errors.go IsTooLargeResourceVersion). (Without `limit` the watch cache gives the
    // same answer after waiting 3 s for a revision that never comes.)
    let path = format!(
        "{CONFIGMAPS}?resourceVersion={FUTURE_RV}&resourceVersionMatch=NotOlderThan&limit=500"
    );
    let reply = request(&s, "GET", &path, "", "");
    assert_status(
        &s,
        &reply,
        504,
        "Timeout",
        "a list at a future resourceVersion",
    );
    let v = reply.json();
    let message = v["message"].as_str().unwrap_or_default();
    let prefix = format!("Timeout: Too large resource version: {FUTURE_RV}, current: ");
    let cause = &v["details"]["causes"][0];
    let ok = message.starts_with(&prefix)
        && message[prefix.len().min(message.len())..]
            .parse::<u64>()
            .is_ok()
        && cause["reason"] == "ResourceVersionTooLarge"
        && cause["message"] == "Too large resource version";
    s.check(
        ok,
        "expected kube-apiserver's Too large resource version Status",
        &reply.out,
    );
}

// ---------------------------------------------------------------------------------------------
// 7. HTTP/2
// ---------------------------------------------------------------------------------------------

// The ALPN protocol the server picks from the client's offer (argv after the CA).
const ALPN: &str = "import socket, ssl, sys
port, ca = sys.argv[1:3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(sys.argv[3:])
with socket.create_connection(('127.0.0.1', int(port)), timeout=20) as sock:
    with ctx.wrap_socket(sock, server_hostname='127.0.0.1') as tls:
        print(tls.selected_alpn_protocol())
";

#[test]
fn kubectl_talks_http2_and_http1_still_works() {
    let s = Server::start();
    // kubectl's -v=9 log does not name the protocol; Go's own HTTP/2 debug log does
    // (GODEBUG=http2debug=1 makes x/net/http2 log every frame of its Transport).
    let mut cmd = s.command(KUBECTL, &s.kubeconfig(), &["get", "ns", "default"]);
    cmd.env("GODEBUG", "http2debug=1");
    let out = s.run(cmd, None);
    let ok = out.success()
        && out.stderr.contains("http2: Transport creating client conn")
        && out.stderr.contains("http2: Transport received HEADERS");
    s.check(ok, "kubectl did not use HTTP/2", &out);
    // kubectl-wire.md §0.3: kubectl offers `h2,http/1.1`; the server must pick h2, and still
    // serve clients that offer only HTTP/1.1.
    let ca = s.data_dir().join("ca.crt");
    for (offer, expected) in [
        (&["h2", "http/1.1"][..], "h2\n"),
        (&["http/1.1"][..], "http/1.1\n"),
    ] {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", ALPN, &s.port().to_string()])
            .arg(&ca)
            .args(offer);
        let out = s.run(cmd, None);
        assert_stdout(&s, &out, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Logs
// ---------------------------------------------------------------------------------------------

#[test]
fn json_logs_name_the_address_and_never_hold_a_token() {
    const WRONG: &str = "wrong-token-5f0c9a1e7d";
    // trace: every level there is, from the server and from its libraries.
    let s = Server::start_with_env(&["--log-format=json"], &[("TOKENWARDEN_LOG", "trace")]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    s.kubectl_ok(&["get", "sa", "example-sa", "-o", "yaml"]);
    s.kubectl_ok(&["auth", "whoami"]);
    let out = s.kubectl(&["get", "sa", "nope"]);
    s.check(!out.success(), "a missing object was found", &out);
    let out = s.kubectl_with_token(WRONG, &["get", "sa"]);
    s.check(!out.success(), "a wrong token was accepted", &out);

    let token = fs::read_to_string(s.data_dir().join("admin.token")).unwrap_or_default();
    let token = token.trim();
    assert!(token.len() >= 16, "admin.token is too short to search for");
    let log = s.log();
    let address = format!("https://127.0.0.1:{}", s.port());
    let mut startup = false;
    for (n, line) in log.lines().enumerate() {
        if line.starts_with("=== harness:") {
            continue;
        }
        let Ok(Value::Object(record)) = serde_json::from_str::<Value>(line) else {
            s.fail(format!("log line {} is not a JSON object: {line}", n + 1));
        };
        let message = record
            .get("fields")
            .and_then(|f| f.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if record.get("level").and_then(Value::as_str) == Some("INFO") && message.contains(&address)
        {
            startup = true;
        }
        if line.contains(token) || line.contains(WRONG) {
            s.fail(format!("log line {} holds a bearer token", n + 1));
        }
    }
    if !startup {
        s.fail(format!("no INFO line names {address}"));
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Files
// ---------------------------------------------------------------------------------------------

fn mode(path: &Path) -> u32 {
    let meta = or_die(fs::metadata(path), format!("stat {}", path.display()));
    meta.permissions().mode() & 0o777
}

const PRIVATE_FILES: &[&str] = &[
    "ca.key",
    "serving.key",
    "sa.key",
    "admin.token",
    "admin.kubeconfig",
    "tokenwarden.db",
];

/// Files whose bytes a second start must not change.
const KEPT_FILES: &[&str] = &["ca.crt", "ca.key", "sa.key", "sa.pub", "admin.token"];

#[track_caller]
fn assert_modes(s: &Server) {
    let data = s.data_dir();
    let dir_mode = mode(&data);
    if dir_mode != 0o700 {
        s.fail(format!("the data dir is {dir_mode:o}, not 700"));
    }
    for name in PRIVATE_FILES {
        let file_mode = mode(&data.join(name));
        if file_mode != 0o600 {
            s.fail(format!("{name} is {file_mode:o}, not 600"));
        }
    }
}

fn read_kept(data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    KEPT_FILES
        .iter()
        .map(|name| {
            let path = data.join(name);
            let bytes = or_die(fs::read(&path), format!("read {}", path.display()));
            (path, bytes)
        })
        .collect()
}

#[test]
fn data_dir_files_are_private_and_reused_on_restart() {
    let mut s = Server::start();
    assert_modes(&s);
    let before = read_kept(&s.data_dir());
    s.restart();
    assert_modes(&s);
    for (path, bytes) in before {
        let now = or_die(fs::read(&path), format!("read {}", path.display()));
        if now != bytes {
            s.fail(format!("{} changed on restart", path.display()));
        }
    }
    // The reused CA still verifies the server (the kubeconfig carries it).
    assert_stdout(&s, &s.kubectl(&["get", "--raw", "/readyz"]), "ok");
}

/// Regression: certificates were issued on the shifted test clock, so a large
/// `--testing-clock-offset` produced a serving certificate not valid yet.
#[test]
fn a_shifted_clock_still_serves_a_valid_certificate() {
    let s = Server::start_with(&["--testing-clock-offset=9000h"]);
    let out = s.kubectl_ok(&["get", "ns", "default", "-o", "jsonpath={.metadata.name}"]);
    assert_eq!(out, "default");
}
