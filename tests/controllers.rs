//! Black-box tests of the controllers and pod admission (issue 4): the `default`
//! ServiceAccount and `kube-root-ca.crt` in every namespace, the tokens controller that fills
//! and deletes `kubernetes.io/service-account-token` Secrets, legacy-token tracking (the
//! last-used label, the tracking ConfigMap, the counters), the legacy-token cleaner under a
//! moved clock, the ServiceAccount admission plugin (default SA, automount, the
//! `kube-api-access-*` volume, projected-token validation, immutable serviceAccountName), the
//! `--emulated-version` modes 1.23 (auto-created token Secrets) and 1.20 (Secret volumes), and
//! catching up after `kill -9`. The real binary is driven by the real kubectl 1.32 and, in the
//! two seed walkthroughs, by Google Cloud SDK's dispatcher.
//!
//! Expected texts come from seed 002 (the "Before/After kubernetes 1.24" describe outputs, the
//! Secret manifest, the pod shapes), shared/reference/kube-1.32-observed.md,
//! k8s-sa-token-facts.md §2, §3.3, §5, §6 and §8, kubectl-wire.md §3.5, and upstream Kubernetes
//! (pkg/apis/core/validation for the field paths; kubectl's error printing for the texts).
//! Must not: sleep instead of polling (controllers act "within about a second"; every wait is
//! a bounded poll), wait for real time to pass (`--testing-clock-offset` moves the server's
//! clock), or assume the order in which a Go map would print (describe's Data section).

mod support;

use support::{assert_stderr_line, assert_stdout, ensure, has_line};

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use support::{DISPATCHER, Output, Server, or_die};

const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Kubernetes' name generator alphabet (`<sa>-token-xxxxx`, `kube-api-access-xxxxx`).
const NAME_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";
const UNAUTHORIZED: &str = "error: You must be logged in to the server (Unauthorized)";
const LAST_USED: &str = "kubernetes.io/legacy-token-last-used";
const INVALID_SINCE: &str = "kubernetes.io/legacy-token-invalid-since";
const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const TRACKING: &str = "kube-apiserver-legacy-service-account-token-tracking";
/// k8s-sa-token-facts.md §3.3: the warning header on a use of an auto-generated token, which
/// kubectl prints as `Warning: …` on stderr.
const AUTO_TOKEN_WARNING: &str = "Warning: Use tokens from the TokenRequest API or manually \
     created secret-based tokens instead of auto-generated secret-based tokens.";
/// k8s-sa-token-facts.md §6.3.
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the \
     kube-apiserver when using internal endpoints such as the internal service IP or \
     kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes \
     clusters.";
/// A short clean-up period keeps the moved clock below the serving certificate's lifetime.
const PERIOD_24H: &str = "--legacy-service-account-token-clean-up-period=24h";
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

// Seed 002's Secret manifest, verbatim.
const SEED_TOKEN_SECRET: &str = "apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: example-sa-token
  annotations:
    kubernetes.io/service-account.name: \"example-sa\"
";

// Seed 002's "Manually" pod; NAME and EXPIRY are filled in.
const MANUAL_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  containers:
  - name: example
    image: nginx
    ports:
    - containerPort: 80
    volumeMounts:
    - mountPath: /var/run/secrets/token
      name: token
      readOnly: true
  serviceAccountName: example-sa
  volumes:
  - name: token
    projected:
      defaultMode: 420
      sources:
      - serviceAccountToken:
          expirationSeconds: EXPIRY
          path: token
";

// A container that already mounts something at the service-account path, and one that does
// not.
const OWN_MOUNT_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: own
spec:
  serviceAccountName: example-sa
  containers:
  - name: mine
    image: nginx
    volumeMounts:
    - name: own
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  - name: plain
    image: nginx
  volumes:
  - name: own
    emptyDir: {}
";

// Only a container that already mounts something at the service-account path.
const OWN_MOUNT_ONLY_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: own-only
spec:
  serviceAccountName: example-sa
  containers:
  - name: mine
    image: nginx
    volumeMounts:
    - name: own
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  volumes:
  - name: own
    emptyDir: {}
";

const INIT_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: init
spec:
  serviceAccountName: example-sa
  initContainers:
  - name: setup
    image: busybox
  containers:
  - name: example
    image: nginx
";

// A namespace and a pod without serviceAccountName in it, in one apply.
const FRESH_NAMESPACE_POD: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: fresh
---
apiVersion: v1
kind: Pod
metadata:
  name: first
  namespace: fresh
spec:
  containers:
  - name: example
    image: nginx
";

const PULLER_SA: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: puller
imagePullSecrets:
- name: regcred
";

// A namespace, a ServiceAccount and its token Secret, in one apply.
const LATE_OBJECTS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: late
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: robot
  namespace: late
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: robot-token
  namespace: late
  annotations:
    kubernetes.io/service-account.name: robot
";

// Seed 002's "After kubernetes 1.24" describe output, with the Tokens line that
// kube-1.32-observed.md shows once the tokens controller has stamped the uid annotation.
const DESCRIBE_AFTER_1_24_WITH_TOKEN: &str = concat!(
    "Name:                example-sa\n",
    "Namespace:           default\n",
    "Labels:              <none>\n",
    "Annotations:         <none>\n",
    "Image pull secrets:  <none>\n",
    "Mountable secrets:   <none>\n",
    "Tokens:              example-sa-token\n",
    "Events:              <none>\n",
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn cols(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// A command that must fail with exactly one stderr line, `expected`.
#[track_caller]
fn assert_fails_with(s: &Server, out: &Output, expected: &str) {
    let ok = !out.success() && out.stderr == format!("{expected}\n");
    let what = format!("expected failure and exactly stderr {expected:?}");
    s.check(ok, &what, out);
}

/// [`support::poll`] for at most 10 s.
#[track_caller]
fn poll<T>(s: &Server, what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    support::poll(s, what, POLL_TIMEOUT, probe)
}

/// `kubectl get OBJECT -n NS -o json`, or the command's output as the error.
fn get(s: &Server, ns: &str, object: &str) -> Result<Value, String> {
    let out = s.kubectl(&["get", object, "-n", ns, "-o", "json"]);
    if !out.success() {
        return Err(out.to_string());
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("not JSON: {e}\n{out}"))
}

#[track_caller]
fn get_ok(s: &Server, ns: &str, object: &str) -> Value {
    get(s, ns, object).unwrap_or_else(|e| s.fail(e))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["metadata"]["labels"][key].as_str()
}

/// The UTC date `hours` from now, as `YYYY-MM-DD` (what the server writes into the tracking
/// labels and ConfigMap when its clock runs `hours` ahead).
fn date_in(hours: i64) -> String {
    let now = jiff::Timestamp::now();
    let then = now
        .checked_add(jiff::SignedDuration::from_hours(hours))
        .unwrap_or(now);
    then.to_string()[..10].to_owned()
}

fn today() -> String {
    date_in(0)
}

/// `<prefix>` followed by exactly five characters of Kubernetes' name generator alphabet.
fn is_generated(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 5 && rest.chars().all(|c| NAME_ALPHABET.contains(c)))
}

/// A Secret's `data[key]`, base64-decoded.
#[track_caller]
fn data(s: &Server, secret: &Value, key: &str) -> String {
    let b64 = secret["data"][key].as_str().unwrap_or_default();
    let bytes = STANDARD
        .decode(b64)
        .unwrap_or_else(|e| s.fail(format!("data.{key} is not base64: {e}\n{secret}")));
    String::from_utf8(bytes).unwrap_or_else(|e| s.fail(format!("data.{key} is not UTF-8: {e}")))
}

/// Waits until the tokens controller has filled the Secret (data `token`, `ca.crt`,
/// `namespace` and the uid annotation); returns it.
#[track_caller]
fn populated(s: &Server, ns: &str, name: &str) -> Value {
    let what = format!("the tokens controller filling secret {ns}/{name}");
    poll(s, &what, || {
        let v = get(s, ns, &format!("secret/{name}"))?;
        let d = &v["data"];
        let filled = ["token", "ca.crt", "namespace"]
            .iter()
            .all(|k| d[k].as_str().is_some_and(|x| !x.is_empty()));
        let uid = v["metadata"]["annotations"][UID_ANNOTATION].is_string();
        if filled && uid {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
}

/// The name of the token Secret the pre-1.24 controller listed in the SA's `.secrets`.
#[track_caller]
fn auto_secret(s: &Server, ns: &str, sa: &str) -> String {
    let what = format!("an auto-created token Secret listed in sa {ns}/{sa}");
    poll(s, &what, || {
        let v = get(s, ns, &format!("sa/{sa}"))?;
        match v["secrets"].as_array().map(Vec::as_slice) {
            Some([one]) => Ok(one["name"].as_str().unwrap_or_default().to_owned()),
            _ => Err(v.to_string()),
        }
    })
}

/// The JSON payload and header of a JWS compact token, as raw text.
#[track_caller]
fn jwt_parts(s: &Server, token: &str) -> (String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        s.fail(format!("not a JWS compact token: {token:?}"));
    }
    let text = |part: &str| {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| s.fail(format!("{part:?} is not base64url: {e}")));
        String::from_utf8(bytes).unwrap_or_else(|e| s.fail(format!("not UTF-8: {e}")))
    };
    (text(parts[0]), text(parts[1]))
}

/// Checks a legacy token (k8s-sa-token-facts.md §2, kube-1.32-observed.md): header alg and the
/// signing key's kid, and exactly the six flat claims, keys sorted, no exp/iat/aud/jti.
#[track_caller]
fn assert_legacy_token(s: &Server, token: &str, secret: &str, sa: &str, sa_uid: &str) {
    let (header, payload) = jwt_parts(s, token);
    let bound = s.kubectl_ok(&["create", "token", sa]);
    let (bound_header, _) = jwt_parts(s, &bound);
    ensure(
        s,
        header == bound_header,
        &format!("the legacy token's header must be the signing key's {bound_header}"),
        &header,
    );
    let expected = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "default",
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
        "sub": format!("system:serviceaccount:default:{sa}"),
    })
    .to_string();
    ensure(
        s,
        payload == expected,
        &format!("expected the legacy payload {expected}"),
        &payload,
    );
}

/// `kubectl auth whoami`'s table for a ServiceAccount token: no `Extra` rows for a legacy
/// token (kube-1.32-observed.md).
fn whoami_table(ns: &str, sa: &str, uid: &str) -> String {
    format!(
        "ATTRIBUTE   VALUE\nUsername    system:serviceaccount:{ns}:{sa}\nUID         {uid}\n\
         Groups      [system:serviceaccounts system:serviceaccounts:{ns} system:authenticated]\n"
    )
}

/// The dispatcher (`/usr/bin/kubectl`) with `--token=TOKEN`.
#[track_caller]
fn dispatcher_with_token(s: &Server, token: &str, args: &[&str]) -> Output {
    let mut cmd: Command = s.command(DISPATCHER, &s.kubeconfig(), args);
    cmd.arg(format!("--token={token}"));
    s.run(cmd, None)
}

#[track_caller]
fn assert_unauthorized(s: &Server, token: &str) {
    let out = s.kubectl_with_token(token, &["auth", "whoami"]);
    s.check(!out.success(), "the token must be rejected", &out);
    assert_stderr_line(s, &out, UNAUTHORIZED);
}

#[track_caller]
fn uid(s: &Server, ns: &str, object: &str) -> String {
    let v = get_ok(s, ns, object);
    let uid = str_at(&v, "/metadata/uid").to_owned();
    ensure(s, uid.len() == 36, "no uid", &v);
    uid
}

#[track_caller]
fn metrics(s: &Server) -> String {
    s.kubectl_ok(&["get", "--raw", "/metrics"])
}

#[track_caller]
fn assert_metric(s: &Server, text: &str, line: &str) {
    if !has_line(text, line) {
        let ours: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("serviceaccount_"))
            .collect();
        s.fail(format!(
            "/metrics lacks the line {line:?}; its serviceaccount lines:\n{}",
            ours.join("\n")
        ));
    }
}

/// POSTs a TokenReview as admin; returns the response's `status`.
#[track_caller]
fn token_review_status(s: &Server, token: &str) -> Value {
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    });
    let args = ["create", "-f", "-", "-o", "json", "--validate=false"];
    let out = s.kubectl_stdin(&args, &review.to_string());
    s.check(out.success(), "TokenReview failed", &out);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| s.fail(format!("not JSON: {e}\n{out}")));
    v["status"].clone()
}

/// Writes `manifest` as `file` and runs `kubectl apply -f` on it; returns the path and output.
#[track_caller]
fn apply(s: &Server, file: &str, manifest: &str) -> (String, Output) {
    let path = s.write_file(file, manifest);
    let out = s.kubectl(&["apply", "-f", &path]);
    (path, out)
}

#[track_caller]
fn apply_ok(s: &Server, file: &str, manifest: &str) {
    let (_, out) = apply(s, file, manifest);
    s.check(out.success(), "apply failed", &out);
}

/// Seed 002's nginx pod ("Automatically"), named `name`, with `spec_tail` (YAML lines indented
/// two spaces) appended to its spec.
fn nginx_pod(name: &str, spec_tail: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: \
         example\n    image: nginx\n    ports:\n    - containerPort: 80\n{spec_tail}"
    )
}

/// The volume the admission plugin injects (k8s-sa-token-facts.md §6.1, kube-1.32-observed.md),
/// with API defaulting's `defaultMode: 420`.
fn kube_api_access(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }},
                {"downwardAPI": {"items": [{
                    "path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                }]}},
            ],
        },
    })
}

fn sa_mount(volume: &str) -> Value {
    json!({"name": volume, "readOnly": true, "mountPath": SA_MOUNT})
}

fn array<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Every container and init container of `pod`.
fn all_containers(pod: &Value) -> Vec<&Value> {
    let init = array(pod, "/spec/initContainers").iter();
    init.chain(array(pod, "/spec/containers")).collect()
}

/// Asserts the automount injection: one `kube-api-access-xxxxx` volume exactly as Kubernetes
/// builds it, and in every container one read-only mount of it at the service-account path;
/// returns the volume name.
#[track_caller]
fn assert_injected(s: &Server, pod: &Value) -> String {
    let injected: Vec<&Value> = array(pod, "/spec/volumes")
        .iter()
        .filter(|v| str_at(v, "/name").starts_with("kube-api-access-"))
        .collect();
    let [volume] = injected.as_slice() else {
        s.fail(format!("expected one kube-api-access-* volume\n{pod:#}"));
    };
    let name = str_at(volume, "/name").to_owned();
    let ok = is_generated(&name, "kube-api-access-") && **volume == kube_api_access(&name);
    let expected = kube_api_access(&name);
    ensure(s, ok, &format!("expected the volume {expected:#}"), volume);
    for container in all_containers(pod) {
        let mounts: Vec<&Value> = array(container, "/volumeMounts")
            .iter()
            .filter(|m| m["mountPath"] == SA_MOUNT)
            .collect();
        let ok = mounts.len() == 1 && *mounts[0] == sa_mount(&name);
        let what = format!(
            "every container needs exactly the mount {}",
            sa_mount(&name)
        );
        ensure(s, ok, &what, format!("{pod:#}"));
    }
    ensure(
        s,
        pod["spec"].get("automountServiceAccountToken").is_none()
            || pod["spec"]["automountServiceAccountToken"] == true,
        "admission must leave automountServiceAccountToken as it was",
        format!("{pod:#}"),
    );
    name
}

#[track_caller]
fn assert_not_injected(s: &Server, pod: &Value) {
    let volume = array(pod, "/spec/volumes")
        .iter()
        .any(|v| str_at(v, "/name").starts_with("kube-api-access-"));
    let mount = all_containers(pod)
        .iter()
        .flat_map(|c| array(c, "/volumeMounts"))
        .any(|m| m["mountPath"] == SA_MOUNT);
    ensure(
        s,
        !volume && !mount,
        "no service-account volume or mount expected",
        format!("{pod:#}"),
    );
}

/// `get sa` with the dispatcher: the rows `(name, SECRETS)`, header checked.
#[track_caller]
fn sa_rows(s: &Server) -> Result<Vec<(String, String)>, String> {
    let out = s.kubectl_dispatcher(&["get", "sa"]);
    if !out.success() {
        return Err(out.to_string());
    }
    let mut lines = out.stdout.lines();
    if lines.next().map(cols) != Some(vec!["NAME", "SECRETS", "AGE"]) {
        return Err(out.to_string());
    }
    Ok(lines
        .map(cols)
        .filter(|c| c.len() == 3)
        .map(|c| (c[0].to_owned(), c[1].to_owned()))
        .collect())
}

fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Seed 002 walkthrough, today: a manually created token Secret

#[test]
fn seed_walkthrough_a_manual_token_secret_is_filled_tracked_and_dies_with_its_sa() {
    let s = Server::start();
    let out = s.kubectl_dispatcher(&["create", "sa", "example-sa"]);
    assert_stdout(&s, &out, "serviceaccount/example-sa created\n");
    // Since 1.24 no Secret is created for a ServiceAccount.
    let out = s.kubectl_dispatcher(&["get", "secrets"]);
    let ok = out.success()
        && out.stdout.is_empty()
        && out.stderr == "No resources found in default namespace.\n";
    s.check(
        ok,
        "expected `No resources found in default namespace.`",
        &out,
    );
    // `default` comes from the controller; SECRETS is 0 for every SA (kube-1.32-observed.md).
    let expected = rows(&[("default", "0"), ("example-sa", "0")]);
    poll(&s, "get sa listing default and example-sa", || {
        sa_rows(&s).and_then(|r| {
            if r == expected {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        })
    });
    let sa_uid = uid(&s, "default", "sa/example-sa");

    let path = s.write_file("secret.yaml", SEED_TOKEN_SECRET);
    let out = s.kubectl_dispatcher(&["apply", "-f", &path]);
    assert_stdout(&s, &out, "secret/example-sa-token created\n");
    let secret = populated(&s, "default", "example-sa-token");
    let annotations = &secret["metadata"]["annotations"];
    let ok = annotations[UID_ANNOTATION] == sa_uid.as_str()
        && annotations[NAME_ANNOTATION] == "example-sa"
        && secret["type"] == TOKEN_TYPE;
    ensure(
        &s,
        ok,
        &format!("uid annotation {sa_uid} expected"),
        &secret,
    );
    let ca_path = s.data_dir().join("ca.crt");
    let ca = or_die(fs::read_to_string(&ca_path), "read the data dir's ca.crt");
    ensure(
        &s,
        data(&s, &secret, "ca.crt") == ca,
        "data.ca.crt must be the data dir's ca.crt",
        &secret,
    );
    ensure(
        &s,
        data(&s, &secret, "namespace") == "default",
        "data.namespace must be default",
        &secret,
    );
    let token = data(&s, &secret, "token");
    assert_legacy_token(&s, &token, "example-sa-token", "example-sa", &sa_uid);

    let out = s.kubectl_dispatcher(&["describe", "sa", "example-sa"]);
    assert_stdout(&s, &out, DESCRIBE_AFTER_1_24_WITH_TOKEN);

    // kube-1.32-observed.md's describe secret; the Data lines come from a Go map (any order).
    let out = s.kubectl_dispatcher(&["describe", "secret", "example-sa-token"]);
    let head = format!(
        "Name:         example-sa-token\nNamespace:    default\nLabels:       <none>\n\
         Annotations:  {NAME_ANNOTATION}: example-sa\n              {UID_ANNOTATION}: {sa_uid}\n\n\
         Type:  {TOKEN_TYPE}\n\nData\n====\n"
    );
    let data_lines: BTreeSet<String> = [
        format!("ca.crt:     {} bytes", ca.len()),
        "namespace:  7 bytes".to_owned(),
        format!("token:      {token}"),
    ]
    .into();
    let ok = out.success()
        && out.stdout.strip_prefix(&head).is_some_and(|rest| {
            rest.ends_with('\n')
                && rest.lines().map(str::to_owned).collect::<BTreeSet<_>>() == data_lines
        })
        && out.stdout.lines().count() == head.lines().count() + 3;
    let what = format!(
        "expected describe secret:\n{head}{}",
        data_lines.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    s.check(ok, &what, &out);

    // One use of the legacy token: the user without Extra, then tracking. kubectl itself, not
    // the dispatcher: the dispatcher first sends its own `GET /version` with `--token` (the
    // response is `Cache-Control: no-cache, private`, as kube-apiserver's), a second use.
    let out = s.kubectl_with_token(&token, &["auth", "whoami"]);
    assert_stdout(&s, &out, &whoami_table("default", "example-sa", &sa_uid));
    s.check(
        !out.stderr.contains("Warning"),
        "a manual token gets no warning",
        &out,
    );
    let today = today();
    poll(&s, "the last-used label", || {
        let v = get(&s, "default", "secret/example-sa-token")?;
        match label(&v, LAST_USED) {
            Some(date) if date == today => Ok(()),
            _ => Err(v.to_string()),
        }
    });
    let text = metrics(&s);
    assert_metric(&s, &text, "serviceaccount_legacy_tokens_total 1");
    assert_metric(&s, &text, "serviceaccount_legacy_manual_token_uses_total 1");
    assert_metric(&s, &text, "serviceaccount_legacy_auto_token_uses_total 0");
    let out = dispatcher_with_token(&s, &token, &["auth", "whoami"]);
    assert_stdout(&s, &out, &whoami_table("default", "example-sa", &sa_uid));
    let tracking = get_ok(&s, "kube-system", &format!("configmap/{TRACKING}"));
    ensure(
        &s,
        tracking["data"] == json!({"since": today}),
        &format!("the tracking ConfigMap must say since {today}"),
        &tracking,
    );

    // A token Secret without the name annotation is invalid (k8s-sa-token-facts.md §5.1).
    let bad = "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\n\
               metadata:\n  name: bad-token\n";
    let (_, out) = apply(&s, "bad.yaml", bad);
    assert_fails_with(
        &s,
        &out,
        "The Secret \"bad-token\" is invalid: \
         metadata.annotations[kubernetes.io/service-account.name]: Required value",
    );

    // Deleting the Secret kills the token.
    let out = s.kubectl_dispatcher(&["delete", "secret", "example-sa-token"]);
    assert_stdout(&s, &out, "secret \"example-sa-token\" deleted\n");
    assert_unauthorized(&s, &token);

    // A fresh Secret, then the SA deleted and recreated (new uid): the fresh token fails and
    // the controller deletes the Secret of the gone SA.
    let out = s.kubectl_dispatcher(&["apply", "-f", &path]);
    assert_stdout(&s, &out, "secret/example-sa-token created\n");
    let fresh = data(&s, &populated(&s, "default", "example-sa-token"), "token");
    // Same Secret name, same SA uid: the same token, since a legacy JWT has no iat or jti and
    // RS256 signatures are deterministic (k8s-sa-token-facts.md §2). So it works again.
    ensure(
        &s,
        fresh == token,
        "the same claims must give the same token",
        &fresh,
    );
    s.kubectl_ok(&["auth", "whoami", &format!("--token={fresh}")]);
    s.kubectl_ok(&["delete", "sa", "example-sa"]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    assert_unauthorized(&s, &fresh);
    poll(&s, "the Secret of the deleted SA being deleted", || {
        let out = s.kubectl(&["get", "secret", "example-sa-token"]);
        let gone = r#"Error from server (NotFound): secrets "example-sa-token" not found"#;
        if !out.success() && has_line(&out.stderr, gone) {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Seed 002 walkthrough, before 1.24: auto-created token Secrets

#[test]
fn emulated_1_23_auto_creates_a_token_secret_as_the_seed_shows() {
    let s = Server::start_with(&["--emulated-version=1.23"]);
    let out = s.kubectl_dispatcher(&["create", "sa", "example-sa"]);
    assert_stdout(&s, &out, "serviceaccount/example-sa created\n");
    // Seed 002, "Before kubernetes 1.24" (example-sa-token-rev86 there).
    let described = poll(&s, "describe sa showing the auto-created Secret", || {
        let out = s.kubectl_dispatcher(&["describe", "sa", "example-sa"]);
        if out.success() && !out.stdout.contains("Tokens:              <none>") {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    });
    let lines: Vec<&str> = described.stdout.lines().collect();
    let secret = lines
        .get(5)
        .and_then(|l| l.strip_prefix("Mountable secrets:   "))
        .unwrap_or_default()
        .to_owned();
    let expected = format!(
        "Name:                example-sa\nNamespace:           default\nLabels:              <none>\n\
         Annotations:         <none>\nImage pull secrets:  <none>\nMountable secrets:   {secret}\n\
         Tokens:              {secret}\nEvents:              <none>\n"
    );
    let ok = is_generated(&secret, "example-sa-token-") && described.stdout == expected;
    s.check(
        ok,
        "expected seed 002's `Before kubernetes 1.24` describe with example-sa-token-xxxxx",
        &described,
    );
    ensure(
        &s,
        auto_secret(&s, "default", "example-sa") == secret,
        "sa.secrets must list the Secret",
        &secret,
    );
    // Every SA, `default` included, has its one Secret.
    let expected = rows(&[("default", "1"), ("example-sa", "1")]);
    poll(&s, "get sa with SECRETS 1", || {
        sa_rows(&s).and_then(|r| {
            if r == expected {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        })
    });

    let v = populated(&s, "default", &secret);
    let sa_uid = uid(&s, "default", "sa/example-sa");
    let annotations = &v["metadata"]["annotations"];
    let ok = v["type"] == TOKEN_TYPE
        && annotations[NAME_ANNOTATION] == "example-sa"
        && annotations[UID_ANNOTATION] == sa_uid.as_str();
    ensure(&s, ok, "the auto-created Secret's type and annotations", &v);
    let token = data(&s, &v, "token");
    assert_legacy_token(&s, &token, &secret, "example-sa", &sa_uid);
    // An auto-generated token authenticates, with a warning (k8s-sa-token-facts.md §3.3);
    // one use through kubectl itself (see the first test for the dispatcher's extra use).
    let out = s.kubectl_with_token(&token, &["auth", "whoami"]);
    assert_stdout(&s, &out, &whoami_table("default", "example-sa", &sa_uid));
    assert_stderr_line(&s, &out, AUTO_TOKEN_WARNING);
    let text = metrics(&s);
    assert_metric(&s, &text, "serviceaccount_legacy_tokens_total 1");
    assert_metric(&s, &text, "serviceaccount_legacy_auto_token_uses_total 1");
    assert_metric(&s, &text, "serviceaccount_legacy_manual_token_uses_total 0");
    let out = dispatcher_with_token(&s, &token, &["auth", "whoami"]);
    assert_stdout(&s, &out, &whoami_table("default", "example-sa", &sa_uid));
    assert_stderr_line(&s, &out, AUTO_TOKEN_WARNING);

    // A deleted auto-created Secret leaves `.secrets` and the pre-1.24 controller makes another.
    s.kubectl_ok(&["delete", "secret", &secret]);
    assert_unauthorized(&s, &token);
    let replacement = poll(&s, "a replacement token Secret in sa.secrets", || {
        let v = get(&s, "default", "sa/example-sa")?;
        match array(&v, "/secrets") {
            [one] if one["name"] != secret.as_str() => Ok(str_at(one, "/name").to_owned()),
            _ => Err(v.to_string()),
        }
    });
    ensure(
        &s,
        is_generated(&replacement, "example-sa-token-"),
        "example-sa-token-xxxxx expected",
        &replacement,
    );
    let v = populated(&s, "default", &replacement);
    let token = data(&s, &v, "token");
    assert_legacy_token(&s, &token, &replacement, "example-sa", &sa_uid);
}

// ---------------------------------------------------------------------------------------------
// 3. The default ServiceAccount and kube-root-ca.crt in every namespace

#[test]
fn every_namespace_gets_a_default_sa_and_the_root_ca_and_keeps_them() {
    let s = Server::start();
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    let ca_path = s.data_dir().join("ca.crt");
    let ca = or_die(fs::read_to_string(&ca_path), "read the data dir's ca.crt");
    let root_ca_ok = |v: &Value| {
        v["data"] == json!({"ca.crt": ca})
            && v["metadata"]["annotations"]["kubernetes.io/description"] == ROOT_CA_DESCRIPTION
    };
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "team-a",
    ] {
        let sa = poll(&s, &format!("sa default in {ns}"), || {
            get(&s, ns, "sa/default")
        });
        // k8s-sa-token-facts.md §6.2: a bare object.
        let bare = sa.get("secrets").is_none() && sa.get("automountServiceAccountToken").is_none();
        ensure(&s, bare, "the default SA must be bare", &sa);
        poll(&s, &format!("kube-root-ca.crt in {ns}"), || {
            let v = get(&s, ns, "configmap/kube-root-ca.crt")?;
            if root_ca_ok(&v) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        });
    }

    // A deleted default SA comes back (with a new uid).
    let old = uid(&s, "team-a", "sa/default");
    s.kubectl_ok(&["delete", "sa", "default", "-n", "team-a"]);
    poll(&s, "sa default recreated", || {
        let v = get(&s, "team-a", "sa/default")?;
        if str_at(&v, "/metadata/uid") != old {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });

    // Edited data is repaired (exactly one key); other labels stay.
    let patch = r#"{"metadata":{"labels":{"team":"blue"}},"data":{"ca.crt":"bogus","extra":"x"}}"#;
    s.kubectl_ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        patch,
    ]);
    poll(&s, "kube-root-ca.crt data repaired", || {
        let v = get(&s, "team-a", "configmap/kube-root-ca.crt")?;
        if root_ca_ok(&v) && label(&v, "team") == Some("blue") {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    // A removed description annotation is put back.
    let patch = r#"{"metadata":{"annotations":{"kubernetes.io/description":null}}}"#;
    let args = ["patch", "configmap", "kube-root-ca.crt", "-n", "team-a"];
    let merge: [&str; 3] = ["--type=merge", "-p", patch];
    s.kubectl_ok(&[&args[..], &merge[..]].concat());
    poll(&s, "the description annotation restored", || {
        let v = get(&s, "team-a", "configmap/kube-root-ca.crt")?;
        if root_ca_ok(&v) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    // A deleted one is recreated.
    let old = uid(&s, "team-a", "configmap/kube-root-ca.crt");
    s.kubectl_ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "team-a"]);
    poll(&s, "kube-root-ca.crt recreated", || {
        let v = get(&s, "team-a", "configmap/kube-root-ca.crt")?;
        if str_at(&v, "/metadata/uid") != old && root_ca_ok(&v) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
}

// ---------------------------------------------------------------------------------------------
// 4. Pod admission: automount matrix, default SA, missing SA, validation, immutability

#[test]
fn pod_admission_automount_matrix_and_validation() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    // Seed 002's SA that opts out (renamed so both can exist).
    apply_ok(
        &s,
        "quiet-sa.yaml",
        "apiVersion: v1\nautomountServiceAccountToken: false\nkind: ServiceAccount\nmetadata:\n  \
         name: quiet-sa\n",
    );
    poll(&s, "sa default", || get(&s, "default", "sa/default"));

    // SA default (unset) → injected, exactly as Kubernetes does.
    apply_ok(
        &s,
        "auto.yaml",
        &nginx_pod("auto", "  serviceAccountName: example-sa\n"),
    );
    let pod = get_ok(&s, "default", "pod/auto");
    let volume = assert_injected(&s, &pod);
    let ok = array(&pod, "/spec/volumes") == [kube_api_access(&volume)]
        && array(&pod, "/spec/containers/0/volumeMounts") == [sa_mount(&volume)]
        && pod["spec"]["serviceAccountName"] == "example-sa";
    ensure(
        &s,
        ok,
        "exactly one volume and one mount",
        format!("{pod:#}"),
    );

    // SA false → none; pod true beats SA false; pod false beats the default.
    let tail = "  serviceAccountName: quiet-sa\n";
    apply_ok(&s, "sa-false.yaml", &nginx_pod("sa-false", tail));
    let pod = get_ok(&s, "default", "pod/sa-false");
    assert_not_injected(&s, &pod);
    ensure(&s, pod["spec"].get("volumes").is_none(), "no volumes", &pod);
    let tail = "  serviceAccountName: quiet-sa\n  automountServiceAccountToken: true\n";
    apply_ok(&s, "pod-true.yaml", &nginx_pod("pod-true", tail));
    assert_injected(&s, &get_ok(&s, "default", "pod/pod-true"));
    let tail = "  serviceAccountName: example-sa\n  automountServiceAccountToken: false\n";
    apply_ok(&s, "pod-false.yaml", &nginx_pod("pod-false", tail));
    assert_not_injected(&s, &get_ok(&s, "default", "pod/pod-false"));

    // A container that mounts something at the path keeps it; the other gets the volume.
    apply_ok(&s, "own.yaml", OWN_MOUNT_POD);
    let pod = get_ok(&s, "default", "pod/own");
    let mine = array(&pod, "/spec/containers/0/volumeMounts");
    let volume = {
        let ok = mine.len() == 1 && mine[0]["name"] == "own" && mine[0]["mountPath"] == SA_MOUNT;
        ensure(
            &s,
            ok,
            "container `mine` keeps only its own mount",
            format!("{pod:#}"),
        );
        let plain = array(&pod, "/spec/containers/1/volumeMounts");
        let name = plain
            .first()
            .map(|m| str_at(m, "/name"))
            .unwrap_or_default();
        let ok = plain.len() == 1 && plain[0] == sa_mount(name);
        ensure(
            &s,
            ok,
            "container `plain` gets the mount",
            format!("{pod:#}"),
        );
        name.to_owned()
    };
    let volumes = array(&pod, "/spec/volumes");
    let ok = volumes.len() == 2
        && volumes[0] == json!({"name": "own", "emptyDir": {}})
        && volumes[1] == kube_api_access(&volume);
    ensure(
        &s,
        ok,
        "volumes: own, then kube-api-access",
        format!("{pod:#}"),
    );
    // When no container needs it, no volume is added.
    apply_ok(&s, "own-only.yaml", OWN_MOUNT_ONLY_POD);
    let pod = get_ok(&s, "default", "pod/own-only");
    let ok = array(&pod, "/spec/volumes") == [json!({"name": "own", "emptyDir": {}})];
    ensure(
        &s,
        ok,
        "no kube-api-access volume when nothing mounts it",
        format!("{pod:#}"),
    );

    // Init containers get the mount too.
    apply_ok(&s, "init.yaml", INIT_POD);
    let pod = get_ok(&s, "default", "pod/init");
    assert_injected(&s, &pod);
    ensure(
        &s,
        array(&pod, "/spec/initContainers").len() == 1,
        "one init container",
        &pod,
    );

    // No serviceAccountName → `default`.
    apply_ok(&s, "no-sa.yaml", &nginx_pod("no-sa", ""));
    let pod = get_ok(&s, "default", "pod/no-sa");
    ensure(
        &s,
        pod["spec"]["serviceAccountName"] == "default",
        "serviceAccountName must default to `default`",
        &pod,
    );
    assert_injected(&s, &pod);
    // ...even in a namespace created in the same apply, before the controller could add
    // `default` (admission retries the lookup of `default`, k8s-sa-token-facts.md §6.1 step 3).
    let (_, out) = apply(&s, "fresh.yaml", FRESH_NAMESPACE_POD);
    let expected = "namespace/fresh created\npod/first created\n";
    assert_stdout(&s, &out, expected);
    let pod = get_ok(&s, "fresh", "pod/first");
    ensure(
        &s,
        pod["spec"]["serviceAccountName"] == "default",
        "serviceAccountName must default to `default`",
        &pod,
    );
    assert_injected(&s, &pod);

    // A pod without imagePullSecrets gets the SA's (§6.1 step 6).
    apply_ok(&s, "puller.yaml", PULLER_SA);
    let tail = "  serviceAccountName: puller\n";
    apply_ok(&s, "pulls.yaml", &nginx_pod("pulls", tail));
    let pod = get_ok(&s, "default", "pod/pulls");
    ensure(
        &s,
        array(&pod, "/spec/imagePullSecrets") == [json!({"name": "regcred"})],
        "imagePullSecrets copied from the SA",
        format!("{pod:#}"),
    );

    // A missing SA is Forbidden (k8s-sa-token-facts.md §6.1 step 3; kubectl adds the source).
    let (path, out) = apply(
        &s,
        "p.yaml",
        &nginx_pod("p", "  serviceAccountName: nope\n"),
    );
    let expected = format!(
        "Error from server (Forbidden): error when creating \"{path}\": pods \"p\" is forbidden: \
         error looking up service account default/nope: serviceaccount \"nope\" not found"
    );
    assert_fails_with(&s, &out, &expected);

    // Seed 002's "Manually" pod: the user's projected token stays as written (defaultMode
    // from the manifest), and the automount volume is added beside it.
    let manual = MANUAL_POD.replace("NAME", "example");
    apply_ok(&s, "example.yaml", &manual.replace("EXPIRY", "600"));
    let pod = get_ok(&s, "default", "pod/example");
    let volume = assert_injected(&s, &pod);
    let token_volume = json!({"name": "token", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 600, "path": "token"}}]}});
    let ok = array(&pod, "/spec/volumes") == [token_volume, kube_api_access(&volume)];
    ensure(
        &s,
        ok,
        "the user's projected volume, then kube-api-access",
        format!("{pod:#}"),
    );

    // Projected token validation: pkg/apis/core/validation validateProjectionSources (field
    // paths from there; kubectl prints an Invalid Status as `The Pod "x" is invalid: …`).
    let short = MANUAL_POD.replace("NAME", "short").replace("EXPIRY", "60");
    let (_, out) = apply(&s, "short.yaml", &short);
    assert_fails_with(
        &s,
        &out,
        "The Pod \"short\" is invalid: \
         spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid \
         value: 60: may not specify a duration less than 10 minutes",
    );
    // Upstream reports a missing path at the volume's `projected.path`, not at the source.
    let no_path = MANUAL_POD
        .replace("NAME", "no-path")
        .replace("EXPIRY", "600")
        .replace("          path: token\n", "");
    let (_, out) = apply(&s, "no-path.yaml", &no_path);
    assert_fails_with(
        &s,
        &out,
        "The Pod \"no-path\" is invalid: spec.volumes[0].projected.path: Required value",
    );

    // serviceAccountName is immutable: ValidatePodUpdate's Forbidden on `spec` (the message
    // goes on with a spec diff, which is not stable). Changing the image is allowed.
    let patch = r#"{"spec":{"serviceAccountName":"default"}}"#;
    let out = s.kubectl(&["patch", "pod", "auto", "-p", patch]);
    let prefix = "The Pod \"auto\" is invalid: spec: Forbidden: pod updates may not change \
                  fields other than ";
    let ok = !out.success()
        && out.stderr.starts_with(prefix)
        && out.stderr.contains("`spec.containers[*].image`");
    s.check(ok, &format!("expected stderr starting {prefix:?}"), &out);
    let pod = get_ok(&s, "default", "pod/auto");
    ensure(
        &s,
        pod["spec"]["serviceAccountName"] == "example-sa",
        "unchanged",
        &pod,
    );
    let patch = r#"{"spec":{"containers":[{"name":"example","image":"nginx:1.27"}]}}"#;
    let out = s.kubectl(&["patch", "pod", "auto", "-p", patch]);
    assert_stdout(&s, &out, "pod/auto patched\n");
}

// ---------------------------------------------------------------------------------------------
// 5. Before 1.21: the token Secret mounted as a `secret` volume

#[test]
fn emulated_1_20_mounts_the_token_secret_instead_of_a_projected_volume() {
    // kube-apiserver's `component=version` form of the flag.
    let s = Server::start_with(&["--emulated-version=kube=1.20"]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let secret = auto_secret(&s, "default", "example-sa");
    ensure(
        &s,
        is_generated(&secret, "example-sa-token-"),
        "example-sa-token-xxxxx expected",
        &secret,
    );
    populated(&s, "default", &secret);
    apply_ok(
        &s,
        "example.yaml",
        &nginx_pod("example", "  serviceAccountName: example-sa\n"),
    );
    let pod = get_ok(&s, "default", "pod/example");
    // k8s-sa-token-facts.md §6.1 "History": a volume named after the Secret; API defaulting
    // gives a secret volume defaultMode 420.
    let expected_volume =
        json!({"name": secret, "secret": {"secretName": secret, "defaultMode": 420}});
    let ok = array(&pod, "/spec/volumes") == [expected_volume.clone()]
        && array(&pod, "/spec/containers/0/volumeMounts") == [sa_mount(&secret)];
    let what = format!("expected the volume {expected_volume} and its read-only mount");
    ensure(&s, ok, &what, format!("{pod:#}"));
}

// ---------------------------------------------------------------------------------------------
// 6. The legacy-token cleaner, with the clock moved

#[test]
fn unused_auto_generated_tokens_are_invalidated_then_deleted() {
    // Tokens auto-created by a 1.23 server...
    let mut s = Server::start_with(&["--emulated-version=1.23", PERIOD_24H]);
    s.kubectl_ok(&["create", "sa", "old-sa"]);
    s.kubectl_ok(&["create", "sa", "kept-sa"]);
    let old = auto_secret(&s, "default", "old-sa");
    let kept = auto_secret(&s, "default", "kept-sa");
    let token = data(&s, &populated(&s, "default", &old), "token");
    populated(&s, "default", &kept);
    // ...one of them used by a pod's secret volume (the cleaner must skip it).
    let holder = format!(
        "{}  volumes:\n  - name: kept\n    secret:\n      secretName: {kept}\n",
        nginx_pod("holder", "  serviceAccountName: kept-sa\n")
    );
    apply_ok(&s, "holder.yaml", &holder);

    // ...then the server is upgraded: tracking starts today.
    s.restart_with(&[PERIOD_24H]);
    let today = today();
    poll(&s, "the tracking ConfigMap", || {
        let v = get(&s, "kube-system", &format!("configmap/{TRACKING}"))?;
        if v["data"] == json!({"since": today}) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let out = s.kubectl_with_token(&token, &["auth", "whoami"]);
    s.check(out.success(), "a fresh auto-generated token works", &out);
    assert_stderr_line(&s, &out, AUTO_TOKEN_WARNING);

    // Three days on (period 24 h): since + 1 day + period has passed, the Secret is older than
    // the period and was last used before it, so the cleaner (which runs at start) marks it.
    s.restart_with(&[PERIOD_24H, "--testing-clock-offset=72h"]);
    let marked = date_in(72);
    poll(&s, "the invalid-since label", || {
        let v = get(&s, "default", &format!("secret/{old}"))?;
        match label(&v, INVALID_SINCE) {
            Some(date) if date == marked => Ok(()),
            _ => Err(v.to_string()),
        }
    });
    assert_unauthorized(&s, &token);
    let text = metrics(&s);
    assert_metric(
        &s,
        &text,
        "serviceaccount_invalid_legacy_auto_token_uses_total 1",
    );
    // k8s-sa-token-facts.md §3.3, wrapped as TokenReview wraps every validator error.
    let status = token_review_status(&s, &token);
    let error = format!(
        "[invalid bearer token, the token in secret default/{old} for service account \
         default/old-sa has been marked invalid. Use tokens from the TokenRequest API or manually \
         created secret-based tokens, or remove the '{INVALID_SINCE}' label from the secret to \
         temporarily allow use of this token]"
    );
    let expected = json!({"user": {}, "error": error});
    ensure(
        &s,
        status == expected,
        &format!("expected status {expected}"),
        &status,
    );
    // Even a rejected use is tracked, on the server's (moved) clock.
    poll(&s, "the last-used label on the moved clock", || {
        let v = get(&s, "default", &format!("secret/{old}"))?;
        match label(&v, LAST_USED) {
            Some(date) if date == marked => Ok(()),
            _ => Err(v.to_string()),
        }
    });
    let v = get_ok(&s, "default", &format!("secret/{kept}"));
    ensure(
        &s,
        label(&v, INVALID_SINCE).is_none(),
        "a Secret a pod uses stays valid",
        &v,
    );

    // Removing the label makes the token valid again.
    let unlabel = format!("{INVALID_SINCE}-");
    let out = s.kubectl(&["label", "secret", &old, &unlabel]);
    assert_stdout(&s, &out, &format!("secret/{old} unlabeled\n"));
    let out = s.kubectl_with_token(&token, &["auth", "whoami"]);
    s.check(out.success(), "the unlabelled token must work again", &out);

    // Marked again; one period after the mark (and after the last use) it is deleted.
    let relabel = format!("{INVALID_SINCE}={marked}");
    let out = s.kubectl(&["label", "secret", &old, &relabel]);
    assert_stdout(&s, &out, &format!("secret/{old} labeled\n"));
    s.restart_with(&[PERIOD_24H, "--testing-clock-offset=144h"]);
    poll(&s, "the invalidated Secret deleted", || {
        let out = s.kubectl(&["get", "secret", &old]);
        let gone = format!("Error from server (NotFound): secrets \"{old}\" not found");
        if !out.success() && has_line(&out.stderr, &gone) {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });
    assert_unauthorized(&s, &token);
    let v = get_ok(&s, "default", &format!("secret/{kept}"));
    ensure(
        &s,
        label(&v, INVALID_SINCE).is_none(),
        "the pod's Secret survives",
        &v,
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Catching up after kill -9

#[test]
fn controllers_catch_up_on_objects_written_just_before_a_crash() {
    let mut s = Server::start();
    let (_, out) = apply(&s, "late.yaml", LATE_OBJECTS);
    // Killed as soon as the writes are acknowledged, before the controllers could act.
    s.kill9();
    let expected =
        "namespace/late created\nserviceaccount/robot created\nsecret/robot-token created\n";
    assert_stdout(&s, &out, expected);
    s.start_again();
    poll(&s, "sa default in late", || get(&s, "late", "sa/default"));
    let ca_path = s.data_dir().join("ca.crt");
    let ca = or_die(fs::read_to_string(&ca_path), "read the data dir's ca.crt");
    poll(&s, "kube-root-ca.crt in late", || {
        let v = get(&s, "late", "configmap/kube-root-ca.crt")?;
        if v["data"] == json!({"ca.crt": ca}) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let secret = populated(&s, "late", "robot-token");
    let robot = uid(&s, "late", "sa/robot");
    ensure(
        &s,
        secret["metadata"]["annotations"][UID_ANNOTATION] == robot.as_str()
            && data(&s, &secret, "namespace") == "late",
        "the Secret filled for robot",
        &secret,
    );
    let token = data(&s, &secret, "token");
    let out = s.kubectl_with_token(&token, &["auth", "whoami"]);
    assert_stdout(&s, &out, &whoami_table("late", "robot", &robot));
}

/// Issue 12: the controllers run under kube-controller-manager's leader election, visible as
/// the `kube-system/kube-controller-manager` Lease. A clean stop releases it and the next
/// start takes it again (one more transition); a restart after `kill -9` renews it at once
/// (the identity is kept in the data dir, and the data-dir lock proves the old process gone),
/// so the controllers do not wait out the lease duration. `--leader-elect=false` makes none.
#[test]
fn controllers_hold_the_kube_controller_manager_lease() {
    let mut s = Server::start();
    let spec = |s: &Server| -> Result<Value, String> {
        let lease = get(s, "kube-system", "lease/kube-controller-manager")?;
        let spec = lease["spec"].clone();
        if str_at(&spec, "/holderIdentity").is_empty() {
            return Err(format!("no holder yet: {spec}"));
        }
        Ok(spec)
    };
    let first = poll(&s, "the lease held", || spec(&s));
    let holder = str_at(&first, "/holderIdentity").to_string();
    ensure(
        &s,
        first["leaseDurationSeconds"] == 15,
        "kube-controller-manager's duration",
        &first,
    );
    ensure(
        &s,
        holder.contains('_'),
        "a <hostname>_<uuid> identity",
        &holder,
    );
    let renewed = poll(&s, "a renewal", || {
        let now = spec(&s)?;
        (now["renewTime"] != first["renewTime"])
            .then_some(now)
            .ok_or("not renewed yet".to_string())
    });
    ensure(
        &s,
        renewed["acquireTime"] == first["acquireTime"],
        "renewals keep acquireTime",
        &renewed,
    );
    // Clean stop: released, then taken again by the same identity as a new transition.
    s.restart();
    let after = poll(&s, "the lease taken again", || {
        let now = spec(&s)?;
        (now["leaseTransitions"] != first["leaseTransitions"])
            .then_some(now)
            .ok_or("same term".to_string())
    });
    ensure(
        &s,
        str_at(&after, "/holderIdentity") == holder,
        "the same replica identity",
        &after,
    );
    // kill -9: the next start renews its own lease, and the controllers work at once.
    s.kill9();
    s.start_again();
    s.kubectl_ok(&["create", "namespace", "after-crash"]);
    poll(
        &s,
        "the default ServiceAccount made by the controllers",
        || get(&s, "after-crash", "serviceaccount/default"),
    );
    // Without leader election there is no Lease.
    let s = Server::start_with(&["--leader-elect=false"]);
    poll(&s, "the default ServiceAccount", || {
        get(&s, "default", "serviceaccount/default")
    });
    let none = s.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
    ]);
    ensure(
        &s,
        !none.success() && none.stderr.contains("NotFound"),
        "no lease",
        &none,
    );
}
