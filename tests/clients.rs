//! Real client libraries against the real server (issue 5): PyPI `kubernetes` latest and
//! 11.0.0, npm `@kubernetes/client-node` 1.4.0 and 0.10.2, each in its in-cluster mode
//! (tests/clients/py_client.py, js_client.js) reading a projected token volume laid out as the
//! kubelet's atomic writer does (k8s-sa-token-facts.md §7.3), calling SelfSubjectReview once a
//! second. Seeds 000/001: clients from Python 12.0.0 and JavaScript 0.10.3 on reload their
//! token file (about once a minute, users-and-clients.md §4); older ones read it once.
//!
//! Expected: the reloading clients keep working past their first token's expiry and never
//! count as stale; the old ones get 401 once that token expires, and with the extended 3607 s
//! token they keep working but are counted as stale (global and per-ServiceAccount metric,
//! audit annotation with their User-Agent). Each client runs as its own ServiceAccount, so the
//! per-ServiceAccount family and the audit log say which client did what.
//!
//! Time: a reloading client re-reads only after 60 s, so `rotation_…` must run a bit over a
//! minute. Rather than also wait out the 60 s expiry leeway (token expiry 30 s + 60 s), it
//! moves the server clock 35 s ahead once the new clients have re-read (a restart with
//! `--testing-clock-offset=35s`): the first tokens are then past exp + leeway, the re-read ones
//! well inside theirs. The stale test moves the clock 2 h instead of waiting an hour. The two
//! tests use separate servers and run in parallel, four clients at a time each: about 72 s
//! (the stale test alone about 20 s).
//!
//! In the rotation test the real `tokenwarden agent` writes and refreshes the pods' token
//! volumes (the kubelet's half, as the seeds describe it). The stale test moves the server
//! clock 2 h at once; a node refreshes the 3607 s token after about 48 real minutes, before
//! its `warnafter`, which a test cannot wait for, so there the test itself writes the token
//! the node would have fetched by then (a pod-bound TokenRequest at the agent's path, with
//! the kubelet's `..data` layout) and the old clients keep the first one, as they do.
//!
//! Must not skip: missing client environments fail with the install command.

mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Agent, KUBECTL, Server, clients_dir, or_die};

const INSTALL: &str = "bash .ci/install-clients.sh";
const NODE: &str = "node-1";
const NAMESPACE: &str = "default";
const STALE_KEY: &str = "authentication.k8s.io/stale-token";
const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

// ---------------------------------------------------------------------------------------------
// The four clients

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    PyLatest,
    Py11,
    Js14,
    Js0102,
}

const ALL: [Client; 4] = [Client::PyLatest, Client::Py11, Client::Js14, Client::Js0102];

impl Client {
    /// The ServiceAccount (and pod) this client runs as.
    fn sa(self) -> &'static str {
        match self {
            Client::PyLatest => "py-new",
            Client::Py11 => "py-old",
            Client::Js14 => "js-new",
            Client::Js0102 => "js-old",
        }
    }

    /// The environment dir that .ci/install-clients.sh makes.
    fn env_name(self) -> &'static str {
        match self {
            Client::PyLatest => "py-latest",
            Client::Py11 => "py-11.0.0",
            Client::Js14 => "node-1.4.0",
            Client::Js0102 => "node-0.10.2",
        }
    }

    /// Whether the library re-reads its token file (seed 000: Python >= 12, JS >= 0.10.3).
    fn reloads(self) -> bool {
        matches!(self, Client::PyLatest | Client::Js14)
    }

    /// The User-Agent the library sends, as recorded in the audit log (`None`: no header).
    fn user_agent_ok(self, ua: Option<&str>) -> bool {
        match self {
            // OpenAPI-Generator/<version>/python, e.g. OpenAPI-Generator/37.0.2/python.
            Client::PyLatest => ua.is_some_and(|a| {
                a.starts_with("OpenAPI-Generator/")
                    && a.ends_with("/python")
                    && a != "OpenAPI-Generator/11.0.0/python"
            }),
            Client::Py11 => ua == Some("OpenAPI-Generator/11.0.0/python"),
            Client::Js14 => ua == Some("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"),
            // 0.10.x sends its requests through `request`, which sets no User-Agent.
            Client::Js0102 => ua.is_none_or(str::is_empty),
        }
    }
}

/// Fails (never skips) when an environment is missing.
fn require_clients() {
    let dir = clients_dir();
    for c in ALL {
        let marker = dir.join(c.env_name()).join("ok");
        assert!(
            marker.exists(),
            "the client environment {} is missing ({} not found): install them with `{INSTALL}`",
            c.env_name(),
            marker.display()
        );
    }
    let node = Command::new("node").arg("-v").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: the JavaScript clients need Node 20"
    );
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// One running client: its output lines with the instant each was read.
struct Running {
    client: Client,
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// One SelfSubjectReview call as the client printed it.
#[derive(Debug, PartialEq)]
enum Call {
    Ok,
    Fail(u16),
    Error,
}

impl Running {
    fn start(client: Client, s: &Server, volume: &Path, seconds: u64) -> Running {
        let env = clients_dir().join(client.env_name());
        let mut cmd = if client.env_name().starts_with("py") {
            let mut cmd = Command::new(env.join("bin/python"));
            cmd.arg(script("py_client.py")).arg(volume);
            cmd
        } else {
            // loadFromCluster(prefix) reads PREFIX/var/run/secrets/kubernetes.io/serviceaccount.
            let prefix = s.path(&format!("{}-root", client.sa()));
            let link = prefix.join("var/run/secrets/kubernetes.io/serviceaccount");
            or_die(fs::create_dir_all(or_parent(&link)), "make the prefix dir");
            if fs::symlink_metadata(&link).is_err() {
                or_die(symlink(volume, &link), "link the token volume");
            }
            let mut cmd = Command::new("node");
            cmd.arg(script("js_client.js")).arg(&env).arg(&prefix);
            cmd
        };
        cmd.arg(seconds.to_string())
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", s.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = or_die(cmd.spawn(), format!("run {cmd:?}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, mut err) = (child.stdout.take(), child.stderr.take());
        let sink = Arc::clone(&lines);
        let stdout = thread::spawn(move || {
            let Some(out) = out else { return };
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push((Instant::now(), line));
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            if let Some(err) = err.as_mut() {
                let _ = err.read_to_string(&mut text);
            }
            text
        });
        Running {
            client,
            child,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The calls printed so far, with their instants (the `library …` line is left out).
    fn calls(&self) -> Vec<(Instant, Call)> {
        self.lines()
            .into_iter()
            .filter_map(|(at, line)| {
                let call = match line.split(' ').collect::<Vec<_>>().as_slice() {
                    ["ok", "201", ..] => Call::Ok,
                    ["fail", code, ..] => Call::Fail(code.parse().unwrap_or(0)),
                    ["error", ..] => Call::Error,
                    _ => return None,
                };
                Some((at, call))
            })
            .collect()
    }

    /// When the library had loaded its config (the `library …` line), if it has.
    fn loaded_at(&self) -> Option<Instant> {
        self.lines()
            .into_iter()
            .find(|(_, l)| l.starts_with("library "))
            .map(|(at, _)| at)
    }

    /// Waits for the process to end (killing it at `deadline`); returns its whole output.
    fn finish(&mut self, deadline: Instant) -> String {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        if let Some(h) = self.stdout.take() {
            let _ = h.join();
        }
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        self.transcript(&status, &err)
    }

    fn transcript(&self, status: &str, err: &str) -> String {
        let start = self.lines().first().map(|(at, _)| *at);
        let mut text = format!(
            "--- {:?} ({}) [{status}] ---\n",
            self.client,
            self.client.sa()
        );
        for (at, line) in self.lines() {
            let t = start.map_or(0.0, |s| at.duration_since(s).as_secs_f64());
            let _ = writeln!(text, "{t:6.1}s {line}");
        }
        if !err.is_empty() {
            let _ = writeln!(text, "--- stderr ---\n{err}");
        }
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn or_parent(p: &Path) -> &Path {
    p.parent().unwrap_or(p)
}

// ---------------------------------------------------------------------------------------------
// The token volumes (what the node agent does)

/// kubectl 1.32 with the admin kubeconfig, usable from another thread (no `&Server`).
#[derive(Clone)]
struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn of(s: &Server) -> Kubectl {
        Kubectl {
            kubeconfig: s.kubeconfig(),
            cache: s.path("kubectl-cache"),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(KUBECTL)
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=5s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("kubectl {args:?}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// One projected token volume of one pod.
#[derive(Clone)]
struct Volume {
    sa: String,
    pod: String,
    dir: PathBuf,
    seconds: u64,
    ca: PathBuf,
}

impl Volume {
    fn new(s: &Server, client: Client, pod_uid: &str, name: &str, seconds: u64) -> Volume {
        let dir = s
            .path("kubelet")
            .join("pods")
            .join(pod_uid)
            .join("volumes/kubernetes.io~projected")
            .join(name);
        Volume {
            sa: client.sa().to_owned(),
            pod: client.sa().to_owned(),
            dir,
            seconds,
            ca: s.data_dir().join("ca.crt"),
        }
    }

    /// A pod-bound TokenRequest for this volume, written with the atomic-writer layout.
    fn refresh(&self, k: &Kubectl) -> Result<(), String> {
        let duration = format!("--duration={}s", self.seconds);
        let bound = format!("--bound-object-name={}", self.pod);
        let args = [
            "create",
            "token",
            &self.sa,
            &duration,
            "--bound-object-kind=Pod",
            &bound,
        ];
        let token = k.run(&args)?.trim().to_owned();
        let ca = fs::read(&self.ca).map_err(|e| format!("read {}: {e}", self.ca.display()))?;
        let files: [(&str, &[u8]); 3] = [
            ("token", token.as_bytes()),
            ("ca.crt", &ca),
            ("namespace", NAMESPACE.as_bytes()),
        ];
        atomic_write(&self.dir, &files).map_err(|e| format!("write {}: {e}", self.dir.display()))
    }
}

/// k8s-sa-token-facts.md §7.3: a new `..<timestamp>.<n>` dir, a `..data_tmp` symlink to it
/// renamed over `..data`, the user-visible links into `..data`, then the old dir removed.
fn atomic_write(dir: &Path, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let now = jiff::Timestamp::now();
    let stamp = format!(
        "..{}.{}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    );
    let new = dir.join(&stamp);
    fs::create_dir(&new)?;
    for (name, data) in files {
        fs::write(new.join(name), data)?;
    }
    let data = dir.join("..data");
    let old = fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    fs::rename(&tmp, &data)?;
    for (name, _) in files {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{name}"), &link)?;
        }
    }
    if let Some(old) = old.filter(|o| o != Path::new(&stamp)) {
        fs::remove_dir_all(dir.join(old))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cluster objects, metrics, audit

/// A ServiceAccount and its pod on NODE per client, in one `kubectl apply`. With `seconds`,
/// the pod mounts its own projected token volume `token` of that lifetime; without, it gets
/// the admission's kube-api-access volume (3607 s). Returns the pod uids.
fn create_accounts(s: &Server, seconds: Option<u64>) -> Vec<String> {
    let mut manifest = String::new();
    for c in ALL {
        let sa = c.sa();
        let _ = write!(
            manifest,
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {sa}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata:\n  name: {sa}\nspec:\n  nodeName: {NODE}\n  \
             serviceAccountName: {sa}\n"
        );
        match seconds {
            None => manifest.push_str("  containers:\n  - name: app\n    image: app\n"),
            Some(secs) => {
                let _ = write!(
                    manifest,
                    "  automountServiceAccountToken: false\n  containers:\n  - name: app\n    \
                     image: app\n    volumeMounts:\n    - name: token\n      mountPath: \
                     /var/run/secrets/kubernetes.io/serviceaccount\n  volumes:\n  - name: token\n    \
                     projected:\n      sources:\n      - serviceAccountToken:\n          \
                     path: token\n          expirationSeconds: {secs}\n      - configMap:\n          \
                     name: kube-root-ca.crt\n          items:\n          - key: ca.crt\n            \
                     path: ca.crt\n"
                );
            }
        }
        manifest.push_str("---\n");
    }
    let path = s.write_file("clients.yaml", &manifest);
    s.kubectl_ok(&["apply", "-f", &path]);
    ALL.iter()
        .map(|c| {
            let pod = format!("pod/{}", c.sa());
            let uid = s.kubectl_ok(&["get", &pod, "-o", "jsonpath={.metadata.uid}"]);
            if uid.len() != 36 {
                s.fail(format!("no uid for {pod}: {uid:?}"));
            }
            uid
        })
        .collect()
}

fn metrics(s: &Server) -> String {
    s.kubectl_ok(&["get", "--raw", "/metrics"])
}

/// The value of the sample `name` (exact, with labels), or None when absent.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn per_sa_stale(sa: &str) -> String {
    format!(
        "tokenwarden_serviceaccount_stale_tokens_total{{namespace=\"{NAMESPACE}\",serviceaccount=\"{sa}\"}}"
    )
}

fn username(c: Client) -> String {
    format!("system:serviceaccount:{NAMESPACE}:{}", c.sa())
}

fn audit(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The audit events of this client's SelfSubjectReview calls.
fn reviews_of(events: &[Value], c: Client) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| {
            e["user"]["username"] == username(c).as_str()
                && e["objectRef"]["resource"] == "selfsubjectreviews"
        })
        .collect()
}

/// Polls the audit log (written just after each response) until `done` holds, for up to 10 s.
fn audit_until(path: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = audit(path);
        if done(&events) || Instant::now() > deadline {
            return events;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Each client's transcript, the agent's log and the server report, then a panic.
fn fail(s: &Server, msg: &str, transcripts: &[String], extra: &str) -> ! {
    s.fail(format!("{msg}\n{}\n{extra}", transcripts.join("\n")))
}

// ---------------------------------------------------------------------------------------------
// a. Rotation of 30 s tokens

#[test]
fn reloading_clients_outlive_their_first_token_and_old_ones_get_401() {
    require_clients();
    // The audit log must be on from the start (Server::path exists only once it runs).
    let audit_dir = or_die(tempfile::tempdir(), "make a temp dir");
    let audit_path = audit_dir.path().join("audit.log");
    let audit_arg = format!("--audit-log-path={}", audit_path.display());
    let mut s = Server::start_with(&["--testing-min-token-expiration=30s", &audit_arg]);
    let uids = create_accounts(&s, Some(30));
    // The real node agent writes and refreshes the pods' token volumes.
    let agent = Agent::start(&s, NODE);
    let volumes: Vec<PathBuf> = uids
        .iter()
        .map(|uid| {
            agent
                .pod_dir(uid)
                .join("volumes/kubernetes.io~projected/token")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !volumes.iter().all(|v| v.join("token").exists()) {
        if Instant::now() > deadline {
            s.fail(format!(
                "the agent did not write the token volumes within 30 s:\n{}",
                agent.log()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }

    // Long enough for anything below; they are stopped once there is enough to judge.
    let mut running: Vec<Running> = ALL
        .iter()
        .zip(&volumes)
        .map(|(c, v)| Running::start(*c, &s, v, 150))
        .collect();

    // The reloading clients re-read the file on the first call 60 s after their load. Once
    // that is past (+3 s), move the server clock 35 s ahead: every token read at load time
    // (issued before it) is then more than 30 s + 60 s leeway old; the re-read ones (issued
    // at most ~26 s before the re-read) have more than 15 s left.
    let load_deadline = Instant::now() + Duration::from_secs(30);
    let loaded = loop {
        let at: Vec<Option<Instant>> = running.iter().map(Running::loaded_at).collect();
        if at.iter().all(Option::is_some) {
            break at.into_iter().flatten().max();
        }
        if Instant::now() > load_deadline {
            let t: Vec<String> = running
                .iter_mut()
                .map(|r| r.finish(Instant::now()))
                .collect();
            fail(
                &s,
                "the clients did not load their config within 30 s",
                &t,
                "",
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let restart_at = loaded.unwrap_or_else(Instant::now) + Duration::from_secs(63);
    thread::sleep(restart_at.saturating_duration_since(Instant::now()));
    // A call answered while the restart is under way may come from either server (the old
    // one before it stops, the new one before `restart_with` sees it ready): judge only the
    // calls before the restart began and after it ended.
    let restarting = Instant::now();
    s.restart_with(&[
        "--testing-min-token-expiration=30s",
        &audit_arg,
        "--testing-clock-offset=35s",
    ]);
    let moved = Instant::now();

    // Enough calls after the move: 6 answers from each client, or 20 s.
    let enough = Instant::now() + Duration::from_secs(20);
    while Instant::now() < enough {
        let counts = running.iter().map(|r| {
            r.calls()
                .iter()
                .filter(|(at, c)| *at > moved && *c != Call::Error)
                .count()
        });
        if counts.min().unwrap_or(0) >= 6 {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let calls: Vec<Vec<(Instant, Call)>> = running.iter().map(Running::calls).collect();
    let transcripts: Vec<String> = running
        .iter_mut()
        .map(|r| r.finish(Instant::now()))
        .collect();
    // Shown with --nocapture.
    eprintln!("{}", transcripts.join("\n"));
    let log = agent.log();
    let extra = format!(
        "--- agent ---\n{log}\n(server clock moved at {:?} after the clients loaded)",
        moved.saturating_duration_since(loaded.unwrap_or(moved))
    );

    for (c, calls) in ALL.iter().zip(&calls) {
        let before: Vec<&Call> = calls
            .iter()
            .filter(|(at, _)| *at <= restarting)
            .map(|(_, c)| c)
            .collect();
        let after: Vec<&Call> = calls
            .iter()
            .filter(|(at, call)| *at > moved && *call != Call::Error)
            .map(|(_, c)| c)
            .collect();
        let started_ok = before.first() == Some(&&Call::Ok);
        let expected = if c.reloads() {
            Call::Ok
        } else {
            Call::Fail(401)
        };
        // Before the move every call works (a few may fail to connect during the restart).
        let before_ok = before.iter().all(|c| **c == Call::Ok || **c == Call::Error);
        let after_ok = after.len() >= 6 && after.iter().all(|c| **c == expected);
        if !(started_ok && before_ok && after_ok) {
            let msg = format!(
                "{c:?} ({}): expected `ok` before the first token expired and only {expected:?} \
                 after (at least 6)",
                c.sa()
            );
            fail(&s, &msg, &transcripts, &extra);
        }
    }

    // The audit log shows the reload: the new clients used at least two tokens (credential
    // ids), the old ones one until their 401s.
    let oks: Vec<usize> = calls
        .iter()
        .map(|calls| calls.iter().filter(|(_, c)| *c == Call::Ok).count())
        .collect();
    let events = audit_until(&audit_path, |ev| {
        ALL.iter().zip(&oks).all(|(c, n)| {
            let accepted = reviews_of(ev, *c);
            accepted
                .iter()
                .filter(|e| e["responseStatus"]["code"] == 201)
                .count()
                >= *n
        })
    });
    for c in ALL {
        let ids: BTreeSet<String> = reviews_of(&events, c)
            .iter()
            .filter(|e| e["responseStatus"]["code"] == 201)
            .filter_map(|e| e["user"]["extra"][CREDENTIAL_ID][0].as_str())
            .map(str::to_owned)
            .collect();
        let ok = if c.reloads() {
            ids.len() >= 2
        } else {
            ids.len() == 1
        };
        if !ok {
            let msg = format!(
                "{c:?} ({}): expected {} token(s) in its accepted calls, saw {ids:?}",
                c.sa(),
                if c.reloads() {
                    "at least 2"
                } else {
                    "exactly 1"
                }
            );
            fail(&s, &msg, &transcripts, &extra);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// b. The extended 3607 s token: old clients keep working and are reported as stale

#[test]
fn old_clients_with_the_extended_token_work_and_are_reported_stale() {
    require_clients();
    let mut s = Server::start();
    let k = Kubectl::of(&s);
    let uids = create_accounts(&s, None);
    // The admission's volume, kube-api-access-<suffix>, as the kubelet fills it: 3607 s.
    let volumes: Vec<Volume> = ALL
        .iter()
        .zip(&uids)
        .map(|(c, uid)| {
            let pod = format!("pod/{}", c.sa());
            let jsonpath = "jsonpath={.spec.volumes[0].name}";
            let name = s.kubectl_ok(&["get", &pod, "-o", jsonpath]);
            if !name.starts_with("kube-api-access-") {
                s.fail(format!(
                    "{pod} has no kube-api-access volume first: {name:?}"
                ));
            }
            Volume::new(&s, *c, uid, &name, 3607)
        })
        .collect();
    for v in &volumes {
        if let Err(e) = v.refresh(&k) {
            s.fail(e);
        }
    }

    // The old clients load the first tokens and use them (valid) ...
    let old: Vec<(Client, &Volume)> = ALL
        .iter()
        .zip(&volumes)
        .filter(|(c, _)| !c.reloads())
        .map(|(c, v)| (*c, v))
        .collect();
    let mut running: Vec<Running> = old
        .iter()
        .map(|(c, v)| Running::start(*c, &s, &v.dir, 20))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running
        .iter()
        .all(|r| r.calls().first().is_some_and(|(_, c)| *c == Call::Ok))
    {
        if Instant::now() > deadline {
            let t: Vec<String> = running
                .iter_mut()
                .map(|r| r.finish(Instant::now()))
                .collect();
            fail(
                &s,
                "the old clients made no successful first call within 30 s",
                &t,
                "",
            );
        }
        thread::sleep(Duration::from_millis(100));
    }

    // ... then it is two hours later: past warnafter (iat + 3607), long before exp (1 year).
    // The kubelet has refreshed every file meanwhile; the new clients start on that.
    let audit_path = s.path("audit.log");
    let audit_arg = format!("--audit-log-path={}", audit_path.display());
    s.restart_with(&["--testing-clock-offset=2h", &audit_arg]);
    let moved = Instant::now();
    for v in &volumes {
        if let Err(e) = v.refresh(&k) {
            s.fail(e);
        }
    }
    running.extend(
        ALL.iter()
            .zip(&volumes)
            .filter(|(c, _)| c.reloads())
            .map(|(c, v)| Running::start(*c, &s, &v.dir, 6)),
    );
    let clients: Vec<Client> = running.iter().map(|r| r.client).collect();
    let deadline = Instant::now() + Duration::from_secs(40);
    let transcripts: Vec<String> = running.iter_mut().map(|r| r.finish(deadline)).collect();
    eprintln!("{}", transcripts.join("\n"));
    let calls: Vec<Vec<(Instant, Call)>> = running.iter().map(Running::calls).collect();

    for (c, calls) in clients.iter().zip(&calls) {
        let answers: Vec<&Call> = calls
            .iter()
            .filter(|(_, call)| *call != Call::Error)
            .map(|(_, call)| call)
            .collect();
        let after = calls
            .iter()
            .filter(|(at, call)| *at > moved && *call == Call::Ok)
            .count();
        if !(answers.iter().all(|a| **a == Call::Ok) && after >= 3) {
            let msg = format!(
                "{c:?} ({}): every call must work, at least 3 of them two hours later",
                c.sa()
            );
            fail(&s, &msg, &transcripts, "");
        }
    }

    // Metrics: the old clients' uses are stale, under their ServiceAccounts; the new ones' valid.
    let text = metrics(&s);
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("serviceaccount_"))
        .collect();
    let shown = ours.join("\n");
    let stale = sample(&text, "serviceaccount_stale_tokens_total").unwrap_or(0.0);
    let valid = sample(&text, "serviceaccount_valid_tokens_total").unwrap_or(0.0);
    if !(stale > 0.0 && valid > 0.0) {
        let msg = "expected serviceaccount_stale_tokens_total > 0 (old clients) and \
                   serviceaccount_valid_tokens_total > 0 (new clients)";
        fail(&s, msg, &transcripts, &shown);
    }
    for c in ALL {
        let n = sample(&text, &per_sa_stale(c.sa())).unwrap_or(0.0);
        if (n > 0.0) == c.reloads() {
            let msg = format!(
                "{c:?} ({}): {} must be {}",
                c.sa(),
                per_sa_stale(c.sa()),
                if c.reloads() { "absent or 0" } else { "> 0" }
            );
            fail(&s, &msg, &transcripts, &shown);
        }
    }

    // Audit: stale-token annotations on the old clients' calls, with their User-Agents; none
    // on the new clients' calls, whose User-Agents are recorded too.
    let events = audit_until(&audit_path, |ev| {
        ALL.iter().all(|c| {
            reviews_of(ev, *c)
                .iter()
                .any(|e| e["annotations"][STALE_KEY].is_string() != c.reloads())
        })
    });
    for c in ALL {
        let reviews = reviews_of(&events, c);
        let prefix = format!(
            "subject: {}, seconds after warning threshold: ",
            username(c)
        );
        let ok = if c.reloads() {
            !reviews.is_empty()
                && reviews.iter().all(|e| {
                    e["annotations"][STALE_KEY].is_null()
                        && c.user_agent_ok(e["userAgent"].as_str())
                })
        } else {
            reviews.iter().any(|e| {
                e["annotations"][STALE_KEY]
                    .as_str()
                    .and_then(|v| v.strip_prefix(&prefix))
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| (3590..=3700).contains(&n))
                    && c.user_agent_ok(e["userAgent"].as_str())
            })
        };
        if !ok {
            let shown: Vec<String> = reviews.iter().map(|e| e.to_string()).collect();
            let msg = format!(
                "{c:?} ({}): expected {} in the audit log",
                c.sa(),
                if c.reloads() {
                    "its calls without a stale-token annotation, with its User-Agent"
                } else {
                    "a stale-token annotation on its calls, with its User-Agent"
                }
            );
            fail(&s, &msg, &transcripts, &shown.join("\n"));
        }
    }
}
