//! Harness for the black-box integration tests: starts the real `tokenwarden` binary on a free
//! loopback port with a temporary data dir, waits for `/readyz`, and wraps the real `kubectl`.
//! Every failure shows the command, its output, the server's log tail and the data dir listing
//! (STYLE.md habit 7). It must not reach into the server's internals: only the binary and kubectl.
// Each tests/*.rs compiles this module on its own and uses a different subset of it.
#![allow(dead_code)]

pub(crate) mod etcd;

use etcd::free_port;

use std::fmt::{self, Display};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// kubectl 1.32 itself, and Google Cloud SDK's dispatcher, which asks `/version` and then runs
/// the matching kubectl (shared/reference/kubectl-wire.md §0).
pub(crate) const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";
pub(crate) const DISPATCHER: &str = "/usr/bin/kubectl";
/// kubectl 1.27, the oldest minor here: it validates against `/openapi/v2` (protobuf) only.
pub(crate) const KUBECTL_127: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
/// kubectl 1.30: JSON request bodies from its typed clients (protobuf came in 1.32).
pub(crate) const KUBECTL_130: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.30";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The binary under test. `option_env!`, not `env!`, so that this file also compiles outside
/// the tokenwarden package (there it fails at run time, loudly).
pub(crate) fn tokenwarden_bin() -> &'static str {
    match option_env!("CARGO_BIN_EXE_tokenwarden") {
        Some(path) => path,
        None => panic!("CARGO_BIN_EXE_tokenwarden was not set when these tests were compiled"),
    }
}

/// The value of `result`, or a panic naming what was being done.
pub(crate) fn or_die<T, E: Display>(result: Result<T, E>, doing: impl Display) -> T {
    result.unwrap_or_else(|e| panic!("cannot {doing}: {e}"))
}

/// What one finished command printed.
pub(crate) struct Output {
    pub(crate) cmd: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn success(&self) -> bool {
        self.status.success()
    }
}

impl Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cmd, status, out, err) = (&self.cmd, self.status, &self.stdout, &self.stderr);
        write!(
            f,
            "$ {cmd}\n[{status}]\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )
    }
}

/// One tokenwarden process. `root` holds `data/` (the data dir), `server.log` (stdout and stderr
/// of every run), `kubectl-cache/` (kubectl's caches, kubectl-wire.md §6) and test files.
pub(crate) struct Server {
    root: tempfile::TempDir,
    port: u16,
    args: Vec<String>,
    /// Extra environment variables of every run (e.g. `TOKENWARDEN_LOG`).
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Server {
    pub(crate) fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts with extra `serve` flags after the fixed ones.
    pub(crate) fn start_with(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// Starts with extra `serve` flags and extra environment variables (kept for restarts).
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_prepared(args, env, |_| {})
    }

    /// Starts on a data dir that `prepare` has filled (it gets the path, which does not exist
    /// yet): a restored backup, a directory with loose permissions.
    pub(crate) fn start_prepared(
        args: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Server {
        for tool in [KUBECTL, DISPATCHER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the tests need it"
            );
        }
        let root = or_die(
            tempfile::Builder::new().prefix("tw-it-").tempdir(),
            "make a dir",
        );
        let args = args.iter().map(|a| a.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut server = Server {
            root,
            port: free_port(),
            args,
            env,
            child: None,
        };
        prepare(&server.data_dir());
        server.spawn();
        server
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server has logged so far, over all runs, with the harness's
    /// `=== harness: … ===` separator lines.
    pub(crate) fn log(&self) -> String {
        let path = self.root.path().join("server.log");
        or_die(
            fs::read_to_string(&path),
            format!("read {}", path.display()),
        )
    }

    /// SIGTERM, expect a clean exit, then start again on the same data dir and port.
    #[track_caller]
    pub(crate) fn restart(&mut self) {
        self.terminate();
        self.spawn();
    }

    /// Like `restart`, but the new run gets these extra `serve` flags instead of the old ones
    /// (same data dir, port and environment).
    #[track_caller]
    pub(crate) fn restart_with(&mut self, args: &[&str]) {
        self.terminate();
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.spawn();
    }

    /// A path for a test file in the temp dir, outside the data dir (not created).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// SIGTERM, and expect a clean exit; `start_again` brings it back.
    #[track_caller]
    pub(crate) fn terminate(&mut self) {
        self.stop_cleanly("-TERM");
    }

    /// SIGINT (Ctrl-C), and expect a clean exit.
    #[track_caller]
    pub(crate) fn interrupt(&mut self) {
        self.stop_cleanly("-INT");
    }

    #[track_caller]
    fn stop_cleanly(&mut self, signal: &str) {
        let status = self.stop(signal);
        if !status.success() {
            self.fail(format!("unclean exit on kill {signal}: {status}"));
        }
    }

    /// The running server's process id.
    #[track_caller]
    pub(crate) fn pid(&self) -> u32 {
        match &self.child {
            Some(child) => child.id(),
            None => self.fail("not running"),
        }
    }

    /// `tokenwarden ARGS` (another subcommand, or a second `serve`), which must finish
    /// within 60 s.
    #[track_caller]
    pub(crate) fn tokenwarden(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(tokenwarden_bin());
        cmd.args(args).env_remove("TOKENWARDEN_DATA_DIR");
        self.run(cmd, None)
    }

    /// SIGKILL, as a crash would; `start_again` brings it back.
    #[track_caller]
    pub(crate) fn kill9(&mut self) {
        self.stop("-9");
    }

    #[track_caller]
    pub(crate) fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: still running");
        self.spawn();
    }

    #[track_caller]
    fn spawn(&mut self) {
        let path = self.root.path().join("server.log");
        let log = OpenOptions::new().create(true).append(true).open(&path);
        let mut log = or_die(log, format!("open {}", path.display()));
        let _ = writeln!(log, "=== harness: starting on port {} ===", self.port);
        let log2 = or_die(log.try_clone(), "clone the log file");
        let port = self.port.to_string();
        let mut cmd = Command::new(tokenwarden_bin());
        cmd.arg("serve").arg("--data-dir").arg(self.data_dir());
        cmd.args(["--bind-address", "127.0.0.1", "--secure-port", &port]);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        self.child = Some(or_die(cmd.spawn(), format!("run {cmd:?}")));
        // Ready = the kubeconfig is written and kubectl gets 200 from /readyz with it.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                self.fail(format!("tokenwarden exited with {status} before ready"));
            }
            let listening = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            let probe = ["get", "--raw", "/readyz", "--request-timeout=5s"];
            if listening && self.kubeconfig().exists() && self.kubectl(&probe).success() {
                return;
            }
            if Instant::now() > deadline {
                self.fail("no 200 from GET /readyz within 30 s");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    #[track_caller]
    fn stop(&mut self, signal: &str) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            self.fail("not running")
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status();
        assert!(
            matches!(sent, Ok(s) if s.success()),
            "kill {signal}: {sent:?}"
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.fail(format!("still running 20 s after kill {signal}"));
                }
            }
        }
    }

    /// The last 60 lines of the server log and a listing of the data dir.
    pub(crate) fn report(&self) -> String {
        let log = fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        let mut listing = String::new();
        list_dir(&self.data_dir(), &mut listing);
        format!("--- server log (last 60 lines) ---\n{tail}\n--- data dir ---\n{listing}")
    }

    #[track_caller]
    pub(crate) fn fail(&self, msg: impl Display) -> ! {
        panic!("{msg}\n{}", self.report())
    }

    /// Unless `ok`, panics with `what`, the command and its output, and the server report.
    #[track_caller]
    pub(crate) fn check(&self, ok: bool, what: &str, out: &Output) {
        if !ok {
            self.fail(format!("{what}\n{out}"));
        }
    }

    /// Writes a file (a manifest) into the temp dir and returns its path.
    #[track_caller]
    pub(crate) fn write_file(&self, name: &str, contents: &str) -> String {
        let path = self.root.path().join(name);
        let done = fs::write(&path, contents);
        or_die(done, format!("write {}", path.display()));
        path.to_string_lossy().into_owned()
    }

    /// `program --kubeconfig K --cache-dir <temp>/kubectl-cache ARGS`, with `KUBECONFIG` unset.
    pub(crate) fn command(&self, program: &str, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        let cache = self.root.path().join("kubectl-cache");
        cmd.env_remove("KUBECONFIG").arg("--kubeconfig");
        cmd.arg(kubeconfig).arg("--cache-dir").arg(cache).args(args);
        cmd
    }

    #[track_caller]
    pub(crate) fn kubectl(&self, args: &[&str]) -> Output {
        self.run(self.command(KUBECTL, &self.kubeconfig(), args), None)
    }

    #[track_caller]
    pub(crate) fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        self.run(self.command(KUBECTL, &self.kubeconfig(), args), Some(input))
    }

    #[track_caller]
    pub(crate) fn kubectl_dispatcher(&self, args: &[&str]) -> Output {
        self.run(self.command(DISPATCHER, &self.kubeconfig(), args), None)
    }

    /// kubectl 1.32 with `--token=TOKEN`, which overrides the kubeconfig's admin token.
    #[track_caller]
    pub(crate) fn kubectl_with_token(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = self.command(KUBECTL, &self.kubeconfig(), args);
        cmd.arg(format!("--token={token}"));
        self.run(cmd, None)
    }

    /// `kubectl create token SA -n NS`: a fresh token of that ServiceAccount.
    #[track_caller]
    pub(crate) fn token(&self, ns: &str, sa: &str) -> String {
        self.kubectl_ok(&["create", "token", sa, "-n", ns])
            .trim()
            .to_string()
    }

    /// The username `kubectl auth whoami --token=TOKEN` reports, or the command's output as
    /// the error.
    #[track_caller]
    pub(crate) fn whoami(&self, token: &str) -> Result<String, String> {
        let args = [
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ];
        let out = self.kubectl_with_token(token, &args);
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.to_string())
        }
    }

    /// kubectl 1.27 (see [`KUBECTL_127`]).
    #[track_caller]
    pub(crate) fn kubectl_127(&self, args: &[&str]) -> Output {
        self.run(self.command(KUBECTL_127, &self.kubeconfig(), args), None)
    }

    /// kubectl 1.27 that must succeed; returns its stdout.
    #[track_caller]
    pub(crate) fn kubectl_127_ok(&self, args: &[&str]) -> String {
        self.kubectl_at_ok(KUBECTL_127, args)
    }

    /// Another kubectl than 1.32 (`program`: [`KUBECTL_127`], [`KUBECTL_130`]) that must
    /// succeed; returns its stdout.
    #[track_caller]
    pub(crate) fn kubectl_at_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(self.command(program, &self.kubeconfig(), args), None);
        self.check(out.success(), &format!("{program} failed"), &out);
        out.stdout
    }

    /// kubectl 1.32 that must succeed; returns its stdout.
    #[track_caller]
    pub(crate) fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        self.check(out.success(), "command failed", &out);
        out.stdout
    }

    /// kubectl 1.32 that must fail.
    #[track_caller]
    pub(crate) fn kubectl_err(&self, args: &[&str]) -> Output {
        let out = self.kubectl(args);
        self.check(!out.success(), "command should have failed", &out);
        out
    }

    /// Runs `cmd` (see `command`) with `input` on stdin; kills it after 60 s.
    #[track_caller]
    pub(crate) fn run(&self, mut cmd: Command, input: Option<&str>) -> Output {
        let line = format!("{cmd:?}");
        let stdin = input.map_or_else(Stdio::null, |_| Stdio::piped());
        let (out, err) = (Stdio::piped(), Stdio::piped());
        let mut child = or_die(cmd.stdin(stdin).stdout(out).stderr(err).spawn(), &line);
        if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
            // Written from a thread so that a large input cannot deadlock against stdout.
            let input = input.to_owned();
            thread::spawn(move || stdin.write_all(input.as_bytes()));
        }
        let pid = child.id().to_string();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(child.wait_with_output()));
        let Ok(out) = rx.recv_timeout(COMMAND_TIMEOUT) else {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            self.fail(format!("{line} did not finish within 60 s"));
        };
        let out = or_die(out, format!("wait for {line}"));
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        let (stdout, stderr) = (text(out.stdout), text(out.stderr));
        Output {
            cmd: line,
            status: out.status,
            stdout,
            stderr,
        }
    }
}

/// A raw HTTPS answer (see [`Server::https`]).
pub(crate) struct Reply {
    /// The curl command and what it printed, for failure reports.
    pub(crate) out: Output,
    pub(crate) status: u16,
    /// Response headers, names lower-cased, in order (a repeated header appears repeatedly).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// Every value of a header.
    pub(crate) fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a header, or "".
    pub(crate) fn header(&self, name: &str) -> &str {
        self.header_values(name).first().copied().unwrap_or("")
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The body as text (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Server {
    /// `METHOD path` over HTTPS with the admin token, extra `Name: value` headers and an
    /// optional body.
    #[track_caller]
    pub(crate) fn https(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&str>,
    ) -> Reply {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(n, v)| (n.trim(), v.trim()))
            .collect();
        let token = self.data_dir().join("admin.token");
        self.https_as(
            false,
            Some(&token),
            method,
            path,
            &headers,
            body.map(str::as_bytes),
        )
    }

    /// The one raw-request client of the tests: curl, trusting the data dir's CA, with the
    /// bearer token in `token_file` (none: anonymous). Headers go through a file (`-H @file`),
    /// so neither the token nor a megabyte of headers meets the argument-size limit; the body
    /// is kept as bytes (it may be protobuf). curl speaks HTTP/2 unless `http1` is set.
    #[track_caller]
    pub(crate) fn https_as(
        &self,
        http1: bool,
        token_file: Option<&Path>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = |ext: &str| self.root.path().join(format!("https-{n}.{ext}"));
        let (head, data, sent) = (file("head"), file("body"), file("headers"));
        let mut lines = String::new();
        if let Some(t) = token_file {
            let token = or_die(fs::read_to_string(t), format!("read {}", t.display()));
            lines.push_str(&format!("Authorization: Bearer {}\n", token.trim()));
        }
        for (name, value) in headers {
            lines.push_str(&format!("{name}: {value}\n"));
        }
        or_die(fs::write(&sent, lines), "write the request headers");
        let mut cmd = Command::new("curl");
        if http1 {
            cmd.arg("--http1.1");
        }
        cmd.args(["-sS", "-X", method, "--cacert"])
            .arg(self.data_dir().join("ca.crt"))
            .arg("-H")
            .arg(format!("@{}", sent.display()))
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&data);
        let input = body.map(|b| {
            let path = file("in");
            or_die(fs::write(&path, b), "write the request body");
            path
        });
        if let Some(path) = &input {
            cmd.arg("--data-binary").arg(format!("@{}", path.display()));
        }
        cmd.arg(format!("https://127.0.0.1:{}{path}", self.port));
        let out = self.run(cmd, None);
        let head = fs::read_to_string(&head).unwrap_or_default();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        // A server that answers before reading the whole body (413, 429) may reset the
        // stream, and curl then exits non-zero; the answer it read still counts.
        self.check(out.success() || status != 0, "curl got no answer", &out);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let body = fs::read(&data).unwrap_or_default();
        Reply {
            out,
            status,
            headers,
            body,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn list_dir(dir: &Path, out: &mut String) {
    let Ok(entries) = fs::read_dir(dir) else {
        return out.push_str(&format!("{} (cannot be read)\n", dir.display()));
    };
    for entry in entries.flatten() {
        let (path, len) = (entry.path(), entry.metadata().map(|m| m.len()).unwrap_or(0));
        out.push_str(&format!("{} ({len} bytes)\n", path.display()));
        if path.is_dir() {
            list_dir(&path, out);
        }
    }
}

/// Calls `probe` every 100 ms until it returns `Ok`, for at most `within`; on time-out fails
/// with `what` and the last thing `probe` saw. Tests wait for controllers this way, never by
/// sleeping a fixed time.
#[track_caller]
pub(crate) fn poll<T>(
    s: &Server,
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => s.fail(format!(
                "{what}: not within {} s; last seen:\n{last}",
                within.as_secs()
            )),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Whether `text` has exactly this line.
pub(crate) fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// Unless `ok`, fails with `what` and what was found instead.
#[track_caller]
pub(crate) fn ensure(s: &Server, ok: bool, what: &str, got: impl std::fmt::Display) {
    if !ok {
        s.fail(format!("{what}\n--- got ---\n{got}"));
    }
}

/// The command succeeded and printed exactly `expected`.
#[track_caller]
pub(crate) fn assert_stdout(s: &Server, out: &Output, expected: &str) {
    let ok = out.success() && out.stdout == expected;
    let what = format!("expected success and exactly this stdout:\n{expected}");
    s.check(ok, &what, out);
}

/// The command printed exactly this line on stderr.
#[track_caller]
pub(crate) fn assert_stderr_line(s: &Server, out: &Output, expected: &str) {
    let ok = has_line(&out.stderr, expected);
    s.check(ok, &format!("expected a stderr line {expected:?}"), out);
}

/// A running `tokenwarden agent`, killed on drop; its log is in the server's temp dir.
pub(crate) struct Agent {
    child: Child,
    pub(crate) root: PathBuf,
    log: PathBuf,
}

impl Agent {
    /// Starts `tokenwarden agent` for node `node` against `s`, syncing every 2 s.
    pub(crate) fn start(s: &Server, node: &str) -> Agent {
        let root = s.path("agent-root");
        let log = s.path("agent.log");
        let out = or_die(fs::File::create(&log), "create the agent log");
        let err = or_die(out.try_clone(), "clone the agent log");
        let mut cmd = Command::new(tokenwarden_bin());
        cmd.arg("agent").arg("--kubeconfig").arg(s.kubeconfig());
        cmd.args(["--node-name", node, "--sync-period", "2s", "--root-dir"]);
        cmd.arg(&root).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = or_die(cmd.spawn(), "start the agent");
        Agent { child, root, log }
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `METHOD path` over HTTP/1.1 with the admin token, `content_type` (none if empty) and
/// `body`.
#[track_caller]
pub(crate) fn request(
    s: &Server,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Reply {
    let headers: Vec<(&str, &str)> = if content_type.is_empty() {
        Vec::new()
    } else {
        vec![("Content-Type", content_type)]
    };
    let token = s.data_dir().join("admin.token");
    request_as(s, Some(&token), method, path, &headers, body)
}

/// `METHOD path` over HTTP/1.1 with the bearer token in `token_file` (none: anonymous),
/// extra `headers` and `body` (sent only when not empty). HTTP/1.1 because a server that
/// answers before reading the body (413, 429) then resets an HTTP/2 stream (RFC 9113 §8.1,
/// NO_ERROR), and curl 7.88 drops the answer it already has.
#[track_caller]
pub(crate) fn request_as(
    s: &Server,
    token_file: Option<&Path>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let body = (!body.is_empty()).then_some(body.as_bytes());
    s.https_as(true, token_file, method, path, headers, body)
}

/// `GET path` without credentials (kubectl cannot send one: with a credential-less user it
/// prompts for a username on stdin).
#[track_caller]
pub(crate) fn anonymous_get(s: &Server, path: &str) -> Reply {
    request_as(s, None, "GET", path, &[], "")
}

/// Unless the reply is a `Status` with this code and reason, fails with `what`.
#[track_caller]
pub(crate) fn assert_status(s: &Server, reply: &Reply, code: u16, reason: &str, what: &str) {
    let v = reply.json();
    let ok = reply.status == code
        && v["kind"] == "Status"
        && v["apiVersion"] == "v1"
        && v["status"] == "Failure"
        && v["code"] == code
        && v["reason"] == reason;
    s.check(
        ok,
        &format!("{what}: expected HTTP {code} and a Status with code {code}, reason {reason}"),
        &reply.out,
    );
}

/// A running command (`kubectl get -w`, a client's watch script) whose stdout and stderr
/// lines, merged, are read by a thread as they arrive; killed on drop.
pub(crate) struct Streaming {
    cmd: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Streaming {
    /// kubectl 1.32 with `args` (against the server's admin kubeconfig).
    pub(crate) fn kubectl(s: &Server, args: &[&str]) -> Streaming {
        Streaming::start(s.command(KUBECTL, &s.kubeconfig(), args))
    }

    pub(crate) fn start(mut cmd: Command) -> Streaming {
        let line = format!("{cmd:?}");
        let (reader, writer) = or_die(io::pipe(), "create a pipe");
        let writer2 = or_die(writer.try_clone(), "clone a pipe");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .spawn();
        // `cmd` holds our copies of the write end: drop them, or the reader never sees EOF.
        drop(cmd);
        let child = or_die(child, &line);
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Streaming {
            cmd: line,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Consumes lines until one satisfies `pred`; fails after 15 s.
    #[track_caller]
    pub(crate) fn wait_for(&mut self, s: &Server, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let found = pred(&line);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => {
                    let (cmd, seen) = (&self.cmd, self.seen.join("\n"));
                    s.fail(format!(
                        "waiting for {what}: {e}\n$ {cmd}\n--- output ---\n{seen}"
                    ));
                }
            }
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Streaming {
    /// Waits up to 30 s for the command to exit; its status, or a failure.
    #[track_caller]
    pub(crate) fn wait_exit(&mut self, s: &Server) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(e) => s.fail(format!("waiting for {}: {e}", self.cmd)),
            }
        }
        s.fail(format!("{} did not exit within 30 s", self.cmd))
    }

    /// Every line read so far, and any that arrive within `grace`.
    pub(crate) fn output(&mut self, grace: Duration) -> String {
        while let Ok(l) = self.lines.recv_timeout(grace) {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }
}

/// The Python of a client environment of `.ci/install-clients.sh` (`py-11.0.0`,
/// `py-latest`); fails, never skips, when missing.
pub(crate) fn python(env: &str) -> PathBuf {
    let env = clients_dir().join(env);
    assert!(
        env.join("ok").exists(),
        "{} is missing: run `bash .ci/install-clients.sh`",
        env.display()
    );
    env.join("bin/python")
}

/// Where `.ci/install-clients.sh` puts the real client libraries.
pub(crate) fn clients_dir() -> PathBuf {
    match std::env::var_os("TOKENWARDEN_CLIENTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/tokenwarden-clients")
        }
    }
}

/// Compares `got` with `tests/golden/NAME`; `UPDATE_GOLDEN=1` rewrites the file instead
/// (STYLE.md habit 8: wire formats change only as reviewed diffs).
#[track_caller]
pub(crate) fn check_golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, got).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let want = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        got,
        want,
        "{} differs; run with UPDATE_GOLDEN=1 to accept:\n{got}",
        path.display()
    );
}

/// Runs the child on a pseudo-terminal of 24 × 120 (set before it starts) and copies all it
/// writes, stdout and stderr alike, to this script's stdout; exits with the child's code.
const ON_TERMINAL: &str = r#"
import fcntl, os, pty, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// Runs `program args` as a person at a terminal would (python3's `pty`; `env` added): its
/// exit code and everything it wrote, stdout and stderr together. Killed after `timeout`.
pub(crate) fn run_on_terminal(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (Option<i32>, String) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(ON_TERMINAL)
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = format!("{cmd:?}");
    let child = or_die(cmd.spawn(), &line);
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(out) = rx.recv_timeout(timeout) else {
        let _ = Command::new("kill").args(["-9", &pid]).status();
        panic!("{line} did not finish within {} s", timeout.as_secs());
    };
    let out = or_die(out, format!("wait for {line}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{line}: python3 failed: {stderr}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
