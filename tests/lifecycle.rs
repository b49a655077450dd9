//! Lifecycle of the server and of namespaces (issue 9, items 6, 7, 8 and 10), black-box: the
//! real binary, kubectl 1.32 and python3's sqlite3 module.
//!
//! * one server per data directory: a second `serve` is refused, naming the directory and the
//!   holder; after `kill -9` of the first a new one starts;
//! * a clean stop leaves `tokenwarden.db` self-contained (no WAL), and that file plus the key
//!   files is a working server;
//! * `tokenwarden backup` of a server under writes is one consistent snapshot that restores
//!   into a server accepting tokens issued before the backup;
//! * a data dir and key files with loose modes are tightened at start;
//! * namespace deletion as Kubernetes does it: Terminating, 403 on create, the namespace
//!   controller empties it, finalizes it and the namespace goes; its tokens stop working.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::{Server, ensure};

const UNAUTHORIZED: &str = "error: You must be logged in to the server (Unauthorized)";
/// What a full backup needs besides the database (README, "Backup and restore").
const KEY_FILES: [&str; 6] = [
    "key-encryption.key",
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "admin.token",
];

fn mode(path: &Path) -> u32 {
    support::or_die(fs::metadata(path), format!("stat {}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    let done = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    support::or_die(done, format!("chmod {}", path.display()));
}

/// Copies `names` from one directory into another (created 0700).
fn copy_files(from: &Path, to: &Path, names: &[&str]) {
    support::or_die(fs::create_dir_all(to), format!("mkdir {}", to.display()));
    chmod(to, 0o700);
    for name in names {
        let done = fs::copy(from.join(name), to.join(name));
        support::or_die(done, format!("copy {name}"));
    }
}

/// [`support::poll`] for at most 20 s.
#[track_caller]
fn poll<T>(s: &Server, what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    support::poll(s, what, Duration::from_secs(20), probe)
}

fn json(s: &Server, args: &[&str]) -> Value {
    let out = s.kubectl_ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| s.fail(format!("not JSON ({e}):\n{out}")))
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 7. One server per data directory
// ---------------------------------------------------------------------------------------------

#[test]
fn r9_a_second_server_on_a_data_dir_is_refused_until_the_first_is_gone() {
    let mut s = Server::start();
    let data = s.data_dir();
    let data_arg = data.to_string_lossy().into_owned();
    let kubeconfig_before = fs::read(s.kubeconfig()).unwrap_or_default();
    let second = |s: &Server| {
        s.tokenwarden(&[
            "serve",
            "--data-dir",
            &data_arg,
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
        ])
    };
    let out = second(&s);
    s.check(!out.success(), "the second serve must fail", &out);
    let want = format!(
        "the data directory {} is in use by another tokenwarden serve (pid {})",
        data.display(),
        s.pid()
    );
    s.check(
        out.stderr.contains(&want),
        &format!("expected {want:?}"),
        &out,
    );
    ensure(
        &s,
        fs::read(s.kubeconfig()).unwrap_or_default() == kubeconfig_before,
        "the refused server must not rewrite admin.kubeconfig",
        "admin.kubeconfig changed",
    );
    // The first one is unharmed.
    s.kubectl_ok(&["create", "configmap", "still-here", "--from-literal=a=b"]);

    // kill -9 releases the lock with the process: the next server starts.
    s.kill9();
    s.start_again();
    s.kubectl_ok(&["get", "configmap", "still-here"]);
    // Client subcommands never take the lock.
    let out = s.tokenwarden(&[
        "diagnose",
        "--kubeconfig",
        &s.kubeconfig().to_string_lossy(),
    ]);
    s.check(
        out.status.code() != Some(2),
        "diagnose runs beside a server",
        &out,
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Clean shutdown and backup
// ---------------------------------------------------------------------------------------------

#[test]
fn r9_sigterm_leaves_a_database_file_that_holds_everything() {
    let mut s = Server::start();
    s.kubectl_ok(&["create", "sa", "robot"]);
    s.kubectl_ok(&["create", "configmap", "kept", "--from-literal=k=v"]);
    let token = s.token("default", "robot");
    s.terminate();

    let data = s.data_dir();
    let wal = data.join("tokenwarden.db-wal");
    let wal_len = fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    ensure(
        &s,
        wal_len == 0,
        "no WAL content after SIGTERM",
        format!("{} bytes", wal_len),
    );
    // Opened alone by another SQLite: the objects are in the main file.
    let out = s.run(
        {
            let mut cmd = std::process::Command::new("python3");
            cmd.args([
                "-c",
                "import sqlite3, sys\n\
                 c = sqlite3.connect('file:' + sys.argv[1] + '?immutable=1', uri=True)\n\
                 print(c.execute('pragma integrity_check').fetchone()[0])\n\
                 print(c.execute(\"select count(*) from kv where name like '/registry/configmaps/default/kept'\").fetchone()[0])",
            ]);
            cmd.arg(data.join("tokenwarden.db"));
            cmd
        },
        None,
    );
    s.check(
        out.success() && out.stdout == "ok\n1\n",
        "python3 reads the .db alone",
        &out,
    );

    // A backup of a stopped server works as well (no -wal, no -shm to read through).
    let copy_path = s.path("stopped.db");
    let out = s.tokenwarden(&[
        "backup",
        "--data-dir",
        &data.to_string_lossy(),
        &copy_path.to_string_lossy(),
    ]);
    s.check(out.success(), "backup of a stopped server", &out);
    // The .db and the key files, nothing else, make a working server.
    let mut files = vec!["tokenwarden.db"];
    files.extend(KEY_FILES);
    let mut copy = Server::start_prepared(&[], &[], |dir| copy_files(&data, dir, &files));
    let cm = json(&copy, &["get", "configmap", "kept", "-o", "json"]);
    ensure(&copy, cm["data"]["k"] == "v", "the ConfigMap survived", &cm);
    let user = copy.whoami(&token).unwrap_or_else(|e| copy.fail(e));
    ensure(
        &copy,
        user == "system:serviceaccount:default:robot",
        "a token issued before the stop still works",
        &user,
    );
    // Ctrl-C stops it as cleanly.
    copy.kubectl_ok(&["create", "configmap", "after-copy"]);
    copy.interrupt();
    let wal = copy.data_dir().join("tokenwarden.db-wal");
    let wal_len = fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    ensure(&copy, wal_len == 0, "no WAL content after SIGINT", wal_len);
}

#[test]
fn r9_backup_of_a_running_server_under_writes_restores_a_consistent_snapshot() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "robot"]);
    let token = s.token("default", "robot");
    let data = s.data_dir();
    let out_path = s.path("backup.db");
    let out_arg = out_path.to_string_lossy().into_owned();
    let data_arg = data.to_string_lossy().into_owned();

    // A writer creates w-0, w-1, … one after the other while backups run.
    let stop = AtomicBool::new(false);
    let (written_before, backed_up) = thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                s.kubectl_ok(&[
                    "create",
                    "configmap",
                    &format!("w-{n}"),
                    "--from-literal=n=x",
                ]);
                n += 1;
            }
            n
        });
        thread::sleep(Duration::from_millis(1500));
        let mut written_before = 0;
        for _ in 0..3 {
            // Everything acknowledged before this point must be in the copy.
            written_before = json(&s, &["get", "configmaps", "-o", "json"])["items"]
                .as_array()
                .map_or(0, |i| {
                    i.iter()
                        .filter(|c| {
                            c["metadata"]["name"]
                                .as_str()
                                .is_some_and(|n| n.starts_with("w-"))
                        })
                        .count()
                });
            let out = s.tokenwarden(&["backup", "--data-dir", &data_arg, &out_arg]);
            s.check(
                out.success() && out.stdout.starts_with("backed up "),
                "backup failed",
                &out,
            );
        }
        stop.store(true, Ordering::SeqCst);
        let total = writer
            .join()
            .unwrap_or_else(|_| s.fail("the writer panicked"));
        (written_before, total)
    });
    // The writer runs through the backups; how many of its writes overlap them depends on the
    // machine's load, so only its progress is asserted, never an overlap count.
    ensure(
        &s,
        backed_up > 0 && backed_up >= written_before,
        "the writer ran alongside the backups",
        backed_up,
    );
    ensure(
        &s,
        mode(&out_path) == 0o600,
        "the backup is private",
        format!("{:o}", mode(&out_path)),
    );

    // Restore: the copy as tokenwarden.db, plus the key files.
    let restored = Server::start_prepared(&[], &[], |dir| {
        copy_files(&data, dir, &KEY_FILES);
        support::or_die(
            fs::copy(&out_path, dir.join("tokenwarden.db")),
            "restore the db",
        );
    });
    let mut ws: Vec<usize> = names(&json(&restored, &["get", "configmaps", "-o", "json"]))
        .iter()
        .filter_map(|n| n.strip_prefix("w-").and_then(|i| i.parse().ok()))
        .collect();
    ws.sort_unstable();
    // One snapshot of sequential writes is a prefix: no gaps, nothing torn.
    let prefix: Vec<usize> = (0..ws.len()).collect();
    ensure(
        &restored,
        ws == prefix,
        "the restored writes are a prefix w-0…w-N",
        format!("{ws:?}"),
    );
    ensure(
        &restored,
        ws.len() >= written_before,
        &format!("at least the {written_before} writes acknowledged before the last backup"),
        ws.len(),
    );
    let user = restored.whoami(&token).unwrap_or_else(|e| restored.fail(e));
    ensure(
        &restored,
        user == "system:serviceaccount:default:robot",
        "a token issued before the backup works on the restored server",
        &user,
    );
    // The restored server is a normal one: it takes writes.
    restored.kubectl_ok(&["create", "configmap", "after-restore"]);
}

// ---------------------------------------------------------------------------------------------
// 10. Loose permissions
// ---------------------------------------------------------------------------------------------

#[test]
fn r9_loose_data_dir_and_key_modes_are_tightened_at_start() {
    // A data dir made beforehand by someone with umask 022.
    let mut s = Server::start_prepared(&[], &[], |dir| {
        support::or_die(fs::create_dir_all(dir), "mkdir");
        chmod(dir, 0o755);
    });
    let data = s.data_dir();
    ensure(
        &s,
        mode(&data) == 0o700,
        "the data dir is 0700",
        format!("{:o}", mode(&data)),
    );
    ensure(
        &s,
        s.log()
            .contains("data directory had mode 0755, open to other users; tightened to 0700"),
        "a log line says so",
        "",
    );

    // Keys loosened while it was stopped are tightened at the next start.
    s.terminate();
    chmod(&data, 0o775);
    chmod(&data.join("sa.key"), 0o644);
    chmod(&data.join("admin.token"), 0o660);
    s.start_again();
    for (path, want) in [
        (data.clone(), 0o700),
        (data.join("sa.key"), 0o600),
        (data.join("admin.token"), 0o600),
        (data.join("ca.key"), 0o600),
        (data.join("tokenwarden.db"), 0o600),
    ] {
        ensure(
            &s,
            mode(&path) == want,
            &format!("{} is {want:o}", path.display()),
            format!("{:o}", mode(&path)),
        );
    }
    let log = s.log();
    ensure(
        &s,
        log.contains("private file had mode 0644, open to other users; tightened to 0600")
            && log.contains("sa.key"),
        "the key's tightening is logged",
        "",
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Namespace deletion
// ---------------------------------------------------------------------------------------------

/// `curl` with the admin token: (HTTP code, body).
fn curl(s: &Server, method: &str, path: &str, body: &str) -> (u16, Value) {
    let admin = fs::read_to_string(s.data_dir().join("admin.token")).unwrap_or_default();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(s.data_dir().join("ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {}", admin.trim())])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("https://127.0.0.1:{}{path}", s.port()));
    let out = s.run(cmd, None);
    s.check(out.success(), "curl failed", &out);
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (code.trim().parse().unwrap_or(0), body)
}

/// `kubectl get KINDS -n NS -o name`, one name a line.
fn object_names(s: &Server, ns: &str, kinds: &str) -> Vec<String> {
    let out = s.kubectl_ok(&["get", kinds, "-n", ns, "-o", "name"]);
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn r9_namespace_deletion_terminates_empties_and_finalizes_as_kubernetes_does() {
    let mut s = Server::start();
    s.kubectl_ok(&["create", "namespace", "q"]);
    let ns = json(&s, &["get", "namespace", "q", "-o", "json"]);
    ensure(
        &s,
        ns["spec"]["finalizers"] == serde_json::json!(["kubernetes"]),
        "the kubernetes finalizer is set on create",
        &ns,
    );
    poll(
        &s,
        "the default ServiceAccount and kube-root-ca.crt in q",
        || {
            let names = object_names(&s, "q", "sa,cm");
            let want = ["configmap/kube-root-ca.crt", "serviceaccount/default"];
            (names == want).then_some(()).ok_or(format!("{names:?}"))
        },
    );
    // A ServiceAccount with a TokenRequest token and a legacy Secret token.
    s.kubectl_ok(&["create", "sa", "robot", "-n", "q"]);
    let bound = s.token("q", "robot");
    let secret = "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\n\
                  metadata:\n  name: robot-token\n  namespace: q\n  annotations:\n    \
                  kubernetes.io/service-account.name: robot\n";
    let out = s.kubectl_stdin(&["apply", "-f", "-"], secret);
    s.check(out.success(), "creating the token Secret", &out);
    let legacy = poll(&s, "the legacy token", || {
        let out = s.kubectl(&[
            "get",
            "secret",
            "robot-token",
            "-n",
            "q",
            "-o",
            "jsonpath={.data.token}",
        ]);
        match (out.success(), out.stdout.is_empty()) {
            (true, false) => {
                let decoded = std::process::Command::new("base64")
                    .arg("-d")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write as _;
                        c.stdin
                            .take()
                            .map(|mut i| i.write_all(out.stdout.as_bytes()));
                        c.wait_with_output()
                    });
                decoded
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .map_err(|e| e.to_string())
            }
            _ => Err(out.to_string()),
        }
    });
    for t in [&bound, &legacy] {
        let user = s.whoami(t).unwrap_or_else(|e| s.fail(e));
        ensure(
            &s,
            user == "system:serviceaccount:q:robot",
            "the tokens work before",
            &user,
        );
    }
    // Our own finalizer holds a ConfigMap, and with it the namespace.
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: q\n  \
                finalizers: [example.com/hold]\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], held);
    s.check(out.success(), "creating the held ConfigMap", &out);

    let out = s.kubectl(&["delete", "namespace", "q", "--wait=false"]);
    support::assert_stdout(&s, &out, "namespace \"q\" deleted\n");
    let ns = json(&s, &["get", "namespace", "q", "-o", "json"]);
    ensure(
        &s,
        ns["status"]["phase"] == "Terminating"
            && ns["metadata"]["deletionTimestamp"].is_string()
            && ns["spec"]["finalizers"] == serde_json::json!(["kubernetes"]),
        "Terminating, with a deletionTimestamp and the kubernetes finalizer",
        &ns,
    );
    let table = s.kubectl_ok(&["get", "namespace", "q", "--no-headers"]);
    ensure(
        &s,
        table.split_whitespace().nth(1) == Some("Terminating"),
        "kubectl shows Terminating",
        &table,
    );
    // The deleter empties it but the held ConfigMap, and says why it waits.
    poll(&s, "everything but the held ConfigMap deleted", || {
        let names = object_names(&s, "q", "sa,cm,secrets");
        (names == ["configmap/held"])
            .then_some(())
            .ok_or(format!("{names:?}"))
    });
    let ns = poll(&s, "the conditions", || {
        let ns = json(&s, &["get", "namespace", "q", "-o", "json"]);
        let conditions = ns["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions
            .iter()
            .any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
            .then_some(ns.clone())
            .ok_or(ns.to_string())
    });
    let conditions = ns["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    ensure(
        &s,
        find("NamespaceContentRemaining")["message"]
            == "Some resources are remaining: configmaps. has 1 resource instances"
            && find("NamespaceFinalizersRemaining")["message"]
                == "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
        "Kubernetes' condition messages",
        &ns,
    );
    // Creates are refused as NamespaceLifecycle refuses them; the default objects stay gone.
    let (code, status) = curl(
        &s,
        "POST",
        "/api/v1/namespaces/q/configmaps",
        r#"{"metadata":{"name":"late"}}"#,
    );
    let want = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "configmaps \"late\" is forbidden: unable to create new content in namespace q because it is being terminated",
        "reason": "Forbidden",
        "details": {"name": "late", "kind": "configmaps", "causes": [{
            "reason": "NamespaceTerminating", "message": "namespace q is being terminated", "field": "metadata.namespace"}]},
        "code": 403});
    ensure(
        &s,
        code == 403 && status == want,
        "403 with the NamespaceTerminating cause",
        &status,
    );
    // Pods and TokenRequests too, before any other admission.
    let (code, status) = curl(
        &s,
        "POST",
        "/api/v1/namespaces/q/pods",
        r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
    );
    ensure(
        &s,
        code == 403 && status["details"]["causes"][0]["reason"] == "NamespaceTerminating",
        "no pods",
        &status,
    );
    let out = s.kubectl(&["create", "token", "robot", "-n", "q"]);
    s.check(
        !out.success() && out.stderr.contains("serviceaccounts \"Unknown\" is forbidden: unable to create new content in namespace q because it is being terminated"),
        "no tokens",
        &out,
    );
    let out = s.kubectl(&["create", "configmap", "late2", "-n", "q"]);
    s.check(
        !out.success() && out.stderr.contains("configmaps \"late2\" is forbidden: unable to create new content in namespace q because it is being terminated"),
        "kubectl shows the 403",
        &out,
    );
    thread::sleep(Duration::from_millis(500));
    let names = object_names(&s, "q", "sa,cm,secrets");
    ensure(
        &s,
        names == ["configmap/held"],
        "default and kube-root-ca.crt are not recreated",
        format!("{names:?}"),
    );
    // A crash in the middle changes nothing: the controllers pick the deletion up again.
    s.kill9();
    s.start_again();
    thread::sleep(Duration::from_millis(500));
    let names = object_names(&s, "q", "sa,cm,secrets");
    ensure(
        &s,
        names == ["configmap/held"],
        "still held after a restart",
        format!("{names:?}"),
    );

    // A waiting `kubectl delete ns q` returns once the finalizer is removed.
    thread::scope(|scope| {
        let waiting = scope.spawn(|| s.kubectl(&["delete", "namespace", "q", "--timeout=40s"]));
        thread::sleep(Duration::from_millis(1000));
        s.kubectl_ok(&[
            "patch",
            "configmap",
            "held",
            "-n",
            "q",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
        let out = waiting
            .join()
            .unwrap_or_else(|_| s.fail("kubectl panicked"));
        support::assert_stdout(&s, &out, "namespace \"q\" deleted\n");
    });
    let out = s.kubectl_err(&["get", "namespace", "q"]);
    support::assert_stderr_line(
        &s,
        &out,
        r#"Error from server (NotFound): namespaces "q" not found"#,
    );
    let out = s.kubectl(&["get", "sa,cm,secrets", "-n", "q"]);
    s.check(
        out.success() && out.stdout.is_empty(),
        "nothing left in q",
        &out,
    );
    // Its tokens died with it.
    for t in [&bound, &legacy] {
        let out = s.kubectl_with_token(t, &["auth", "whoami"]);
        support::assert_stderr_line(&s, &out, UNAUTHORIZED);
    }
    // Creates into a namespace that does not exist: 404, as kube-apiserver.
    let (code, status) = curl(
        &s,
        "POST",
        "/api/v1/namespaces/q/configmaps",
        r#"{"metadata":{"name":"x"}}"#,
    );
    ensure(
        &s,
        code == 404
            && status["message"] == "namespaces \"q\" not found"
            && status["details"] == serde_json::json!({"name": "q", "kind": "namespaces"}),
        "404 namespaces \"q\" not found",
        &status,
    );
    // Made again, it starts empty (but for what the controllers put in every namespace).
    s.kubectl_ok(&["create", "namespace", "q"]);
    poll(&s, "a fresh q", || {
        let names = object_names(&s, "q", "sa,cm,secrets");
        let want = ["configmap/kube-root-ca.crt", "serviceaccount/default"];
        (names == want).then_some(()).ok_or(format!("{names:?}"))
    });
    for t in [&bound, &legacy] {
        let out = s.kubectl_with_token(t, &["auth", "whoami"]);
        support::assert_stderr_line(&s, &out, UNAUTHORIZED);
    }
    // NamespaceLifecycle never deletes these.
    let out = s.kubectl_err(&["delete", "namespace", "kube-system"]);
    support::assert_stderr_line(
        &s,
        &out,
        r#"Error from server (Forbidden): namespaces "kube-system" is forbidden: this namespace may not be deleted"#,
    );
}

#[test]
fn r9_a_create_that_races_the_namespace_deletion_does_not_outlive_it() {
    // Every namespaced create is admitted, then waits 2 s before its write: long enough for
    // the namespace to be deleted and made again in between.
    let s = Server::start_with(&["--testing-create-delay=2s"]);
    s.kubectl_ok(&["create", "namespace", "race"]);
    thread::scope(|scope| {
        let late = scope.spawn(|| {
            curl(
                &s,
                "POST",
                "/api/v1/namespaces/race/configmaps",
                r#"{"metadata":{"name":"late"}}"#,
            )
        });
        thread::sleep(Duration::from_millis(300));
        // Admitted into an Active namespace, not written yet: the deleter cannot see it.
        let out = s.kubectl(&["delete", "namespace", "race", "--timeout=40s"]);
        s.check(out.success(), "delete", &out);
        s.kubectl_ok(&["create", "namespace", "race"]);
        let (code, status) = late.join().unwrap_or_else(|_| s.fail("curl panicked"));
        ensure(
            &s,
            code == 404 && status["message"] == "namespaces \"race\" not found",
            "the create that lost the race is refused as if the namespace were gone",
            &status,
        );
    });
    // Let the controllers' own delayed creates land, then look.
    thread::sleep(Duration::from_millis(2500));
    let cms = names(&json(
        &s,
        &["get", "configmaps", "-n", "race", "-o", "json"],
    ));
    ensure(
        &s,
        !cms.contains(&"late".to_string()),
        "the new namespace starts empty",
        format!("{cms:?}"),
    );
}
