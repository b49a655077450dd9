//! Black-box tests of the node agent and `tokenwarden run` (issue 5): the real server, the real
//! `tokenwarden agent` binary with the server's admin.kubeconfig, Pods created by kubectl 1.32
//! with `spec.nodeName` set to the agent's node, and assertions on the files the agent writes:
//! the atomic-writer layout, token claims bound to the Pod, refresh before expiry (with
//! `--testing-min-token-expiration=30s`), surviving a server restart and an outage, ConfigMap
//! propagation, graceful deletion and clean-up; `run` with the standard mount path and with
//! `--token-dir`. Each test stays under about 40 s; waiting is always a bounded poll.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use support::{Agent, Server, or_die, tokenwarden_bin};

const NODE: &str = "node-1";
const PROJECTED: &str = "kubernetes.io~projected";

/// Polls `f` every 200 ms until it returns `Some`, or fails after `secs` with both logs.
#[track_caller]
fn wait_for<T>(
    s: &Server,
    a: &Agent,
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let log = a.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            s.fail(format!(
                "{what}: not within {secs} s\n--- agent log ---\n{tail}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(part).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[track_caller]
fn create_pod(s: &Server, name: &str, extra_volumes: &str) -> String {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n  \
         serviceAccountName: app\n  containers:\n  - name: c\n    image: nginx\n{extra_volumes}"
    );
    let path = s.write_file(&format!("{name}.yaml"), &manifest);
    s.kubectl_ok(&["create", "-f", &path]);
    s.kubectl_ok(&["get", "pod", name, "-o", "jsonpath={.metadata.uid}"])
}

/// The `kube-api-access-*` volume directory of a pod, once the agent has written it.
#[track_caller]
fn api_access_dir(s: &Server, a: &Agent, uid: &str) -> PathBuf {
    let base = a.pod_dir(uid).join("volumes").join(PROJECTED);
    wait_for(s, a, 20, "the kube-api-access volume", || {
        let entries = fs::read_dir(&base).ok()?;
        let dir = entries.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kube-api-access-"))
        })?;
        dir.join("token").exists().then_some(dir)
    })
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

const SHORT_TOKEN_VOLUME: &str = "  volumes:\n  - name: short\n    projected:\n      sources:\n      - \
     serviceAccountToken:\n          path: token\n          expirationSeconds: 30\n          \
     audience: vault\n";

#[test]
fn agent_writes_bound_volumes_propagates_changes_and_cleans_up() {
    let s = Server::start();
    let a = Agent::start(&s, NODE);
    s.kubectl_ok(&["create", "serviceaccount", "app"]);
    s.kubectl_ok(&["create", "configmap", "settings", "--from-literal=level=1"]);
    s.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=pw",
    ]);
    let volumes = "  volumes:\n  - name: settings\n    configMap:\n      name: settings\n  \
                   - name: creds\n    secret:\n      secretName: creds\n      defaultMode: 0400\n";
    let uid = create_pod(&s, "web", volumes);
    let dir = api_access_dir(&s, &a, &uid);

    // The node registered itself.
    let node = s.kubectl_ok(&["get", "node", NODE, "-o", "jsonpath={.metadata.name}"]);
    assert_eq!(node, NODE);

    // Layout: ..data -> ..<timestamp>.<digits>, every file a symlink through ..data.
    let data = or_die(fs::read_link(dir.join("..data")), "read ..data");
    let data = data.to_string_lossy().into_owned();
    assert!(
        data.starts_with("..20") && data.matches('.').count() == 3,
        "{data}"
    );
    for f in ["token", "ca.crt", "namespace"] {
        let link = or_die(fs::read_link(dir.join(f)), format!("read link {f}"));
        assert_eq!(link, Path::new("..data").join(f));
        let mode = or_die(fs::metadata(dir.join(f)), "stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644,
            "{f}"
        );
    }
    assert_eq!(read(&dir.join("namespace")), "default");
    assert_eq!(
        read(&dir.join("ca.crt")),
        read(&s.data_dir().join("ca.crt"))
    );

    // The token is bound to this pod and node-less claims name it and its uid.
    let c = claims(&read(&dir.join("token")));
    let k = &c["kubernetes.io"];
    assert_eq!(k["pod"]["name"], "web", "{c}");
    assert_eq!(k["pod"]["uid"], uid.as_str(), "{c}");
    assert_eq!(k["serviceaccount"]["name"], "app", "{c}");
    assert_eq!(k["namespace"], "default", "{c}");

    // Secret and ConfigMap volumes, with defaultMode.
    let plugin = |p: &str, v: &str| a.pod_dir(&uid).join("volumes").join(p).join(v);
    let pw = plugin("kubernetes.io~secret", "creds").join("password");
    let level = plugin("kubernetes.io~configmap", "settings").join("level");
    wait_for(&s, &a, 10, "the secret and configmap volumes", || {
        (read(&pw) == "pw" && read(&level) == "1").then_some(())
    });
    let mode = or_die(fs::metadata(&pw), "stat the secret file").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o400
    );

    // The pod reports ready.
    wait_for(&s, &a, 10, "pod Ready", || {
        let out = s.kubectl(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (out.stdout == "Running True").then_some(())
    });

    // A ConfigMap change propagates through a new data dir.
    let cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: \"2\"\n";
    let path = s.write_file("cm.yaml", cm);
    s.kubectl_ok(&["apply", "-f", &path]);
    wait_for(&s, &a, 15, "the configmap change", || {
        (read(&level) == "2").then_some(())
    });

    // kubectl delete returns (the agent completes graceful deletion); the pod dir goes.
    let out = s.kubectl(&["delete", "pod", "web", "--timeout=30s"]);
    s.check(out.success(), "kubectl delete pod", &out);
    let gone = s.kubectl(&["get", "pod", "web"]);
    s.check(!gone.success(), "the pod should be gone", &gone);
    let pod_dir = a.pod_dir(&uid);
    wait_for(&s, &a, 10, "the pod dir removed", || {
        (!pod_dir.exists()).then_some(())
    });
}

#[test]
fn tokens_refresh_before_expiry() {
    let s = Server::start_with(&["--testing-min-token-expiration=30s"]);
    let a = Agent::start(&s, NODE);
    s.kubectl_ok(&["create", "serviceaccount", "app"]);
    let uid = create_pod(&s, "short", SHORT_TOKEN_VOLUME);
    let token = a
        .pod_dir(&uid)
        .join("volumes")
        .join(PROJECTED)
        .join("short")
        .join("token");
    let first = wait_for(&s, &a, 20, "the short token", || {
        let t = read(&token);
        (!t.is_empty()).then_some(t)
    });
    let c1 = claims(&first);
    assert_eq!(c1["aud"], serde_json::json!(["vault"]), "{c1}");
    assert_eq!(c1["kubernetes.io"]["pod"]["uid"], uid.as_str());
    let exp1 = c1["exp"].as_i64().unwrap_or_default();
    assert!(exp1 - c1["iat"].as_i64().unwrap_or_default() <= 30, "{c1}");
    let c2 = wait_for(&s, &a, 30, "a refreshed token", || {
        let c = claims(&read(&token));
        (c["jti"] != c1["jti"] && c["jti"].is_string()).then_some(c)
    });
    assert!(
        now() < exp1,
        "the refresh came after the first token expired"
    );
    assert!(c2["exp"].as_i64().unwrap_or_default() > exp1);
}

#[test]
fn agent_survives_a_server_restart_and_an_outage() {
    let mut s = Server::start_with(&["--testing-min-token-expiration=30s"]);
    let a = Agent::start(&s, NODE);
    s.kubectl_ok(&["create", "serviceaccount", "app"]);
    let uid = create_pod(&s, "before", SHORT_TOKEN_VOLUME);
    let token = a
        .pod_dir(&uid)
        .join("volumes")
        .join(PROJECTED)
        .join("short")
        .join("token");
    let first = wait_for(&s, &a, 20, "the first token", || {
        let t = read(&token);
        (!t.is_empty()).then_some(claims(&t))
    });

    // SIGTERM and start on the same port: the watch reconnects and sees a new pod.
    s.restart();
    let uid2 = create_pod(&s, "after", "");
    api_access_dir(&s, &a, &uid2);

    // Down while the refresh falls due: the valid token stays, the retry succeeds later.
    s.kill9();
    let due = first["exp"].as_i64().unwrap_or_default() - 4;
    while now() < due {
        assert!(
            !read(&token).is_empty(),
            "the token was removed while the server was down"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(claims(&read(&token))["jti"], first["jti"]);
    s.start_again();
    wait_for(&s, &a, 30, "a token refreshed after the outage", || {
        let c = claims(&read(&token));
        (c["jti"].is_string() && c["jti"] != first["jti"]).then_some(())
    });
    assert!(a.log().contains("couldn't update token") || a.log().contains("volume not ready"));
}

/// `tokenwarden run` with the server's kubeconfig, on NODE; returns (exit code, stdout, stderr).
fn run(s: &Server, args: &[&str], script: &str) -> (i32, String, String) {
    let mut cmd = Command::new(tokenwarden_bin());
    cmd.arg("run").arg("--kubeconfig").arg(s.kubeconfig());
    cmd.args(["--node-name", NODE]).args(args);
    cmd.args(["--", "sh", "-c", script]);
    let out = s.run(cmd, None);
    let code = out.status.code().unwrap_or(-1);
    (code, out.stdout, out.stderr)
}

#[test]
fn run_mounts_the_token_at_the_standard_path() {
    let s = Server::start();
    s.kubectl_ok(&["create", "namespace", "jobs"]);
    s.kubectl_ok(&["create", "serviceaccount", "runner", "-n", "jobs"]);
    let script = "d=/var/run/secrets/kubernetes.io/serviceaccount; cat $d/namespace; echo; \
                  echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; cat $d/token; echo; \
                  cmp -s $d/ca.crt \"$CA\" && echo ca-ok; \
                  \"$KUBECTL\" auth whoami -o jsonpath='{.status.userInfo.username}'; echo; exit 7";
    let mut cmd = Command::new(tokenwarden_bin());
    cmd.arg("run").arg("--kubeconfig").arg(s.kubeconfig());
    cmd.args([
        "--node-name",
        NODE,
        "--namespace",
        "jobs",
        "--service-account",
        "runner",
    ]);
    cmd.args(["--name", "job-1", "--", "sh", "-c", script]);
    cmd.env("CA", s.data_dir().join("ca.crt"))
        .env("KUBECTL", support::KUBECTL);
    // An unmodified in-cluster client: kubectl with no kubeconfig to find.
    cmd.env_remove("KUBECONFIG").env("HOME", s.path("home"));
    let out = s.run(cmd, None);
    s.check(out.status.code() == Some(7), "exit code 7", &out);
    let lines: Vec<&str> = out.stdout.lines().collect();
    s.check(lines.len() == 5, "five lines", &out);
    assert_eq!(lines[0], "jobs");
    assert_eq!(lines[1], format!("127.0.0.1:{}", s.port()));
    let c = claims(lines[2]);
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "job-1", "{c}");
    assert_eq!(
        c["kubernetes.io"]["serviceaccount"]["name"], "runner",
        "{c}"
    );
    assert_eq!(lines[3], "ca-ok");
    assert_eq!(
        lines[4], "system:serviceaccount:jobs:runner",
        "in-cluster kubectl"
    );
    let gone = s.kubectl(&["get", "pod", "job-1", "-n", "jobs"]);
    s.check(!gone.success(), "the pod should be gone after run", &gone);
    // The mount was private: nothing is left at the standard path on the host.
    let host = Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token");
    assert!(!host.exists() || read(host) != lines[2]);
}

#[test]
fn run_with_token_dir_needs_no_mount() {
    let s = Server::start();
    s.kubectl_ok(&["create", "serviceaccount", "runner"]);
    let dir = s.path("sa");
    let script = format!(
        "cat {d}/namespace; echo; cat {d}/token; echo; echo $KUBERNETES_SERVICE_PORT; exit 3",
        d = dir.display()
    );
    let dir_arg = dir.to_string_lossy().into_owned();
    let (code, stdout, stderr) = run(
        &s,
        &["--service-account", "runner", "--token-dir", &dir_arg],
        &script,
    );
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}\n{stderr}");
    assert_eq!(lines[0], "default");
    assert_eq!(
        claims(lines[1])["kubernetes.io"]["serviceaccount"]["name"],
        "runner"
    );
    assert_eq!(lines[2], s.port().to_string());
    let pods = s.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert_eq!(pods.trim(), "", "run left a pod behind");
    assert!(
        fs::symlink_metadata(&dir).is_err(),
        "the token dir link was left behind"
    );
}
