//! Black-box tests of service-account tokens (issue 3): TokenRequest through `kubectl create
//! token`, authentication of the tokens (whoami, TokenReview, RBAC denial), bound-object and
//! ServiceAccount invalidation, extended 3607 s tokens and stale-token detection, metrics
//! (checked by promtool), OIDC discovery (checked by PyJWT), key types and rotation, and that no
//! token reaches the server log. The real binary is driven by the real kubectl 1.32, python3 and
//! openssl. Expected texts come from shared/reference/ (kube-1.32-observed.md,
//! k8s-sa-token-facts.md, kubectl-wire.md) and seed 001 (the `grep stale` diagnosis).
//! Must not: assume a `default` ServiceAccount, skip when a tool is missing (fail instead), or
//! wait for time to pass (`--testing-clock-offset` moves the server clock instead; the only
//! waiting is a bounded poll for an audit line).

mod support;

use support::{assert_stderr_line, ensure, has_line};

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::{KUBECTL, Output, Server, or_die};

const ISSUER: &str = "https://kubernetes.default.svc";
const SA_USER: &str = "system:serviceaccount:default:example-sa";
const UNAUTHORIZED: &str = "error: You must be logged in to the server (Unauthorized)";
const PIP_INSTALL: &str = "python3 -m pip install pyjwt cryptography";

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs of spaces (kubectl's tab-aligned columns) collapsed to one space.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A command that must fail with exactly one stderr line, `expected`.
#[track_caller]
fn assert_fails_with(s: &Server, out: &Output, expected: &str) {
    let ok = !out.success() && out.stderr == format!("{expected}\n");
    s.check(
        ok,
        &format!("expected failure and exactly stderr {expected:?}"),
        out,
    );
}

#[track_caller]
fn json_out(s: &Server, out: &Output) -> Value {
    s.check(out.success(), "command failed", out);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| s.fail(format!("stdout is not JSON: {e}\n{out}")))
}

#[track_caller]
fn uid(s: &Server, object: &str) -> String {
    let out = s.kubectl(&["get", object, "-o", "jsonpath={.metadata.uid}"]);
    s.check(out.success() && out.stdout.len() == 36, "no uid", &out);
    out.stdout
}

/// Seed 002's pod, with `serviceAccountName: example-sa` (a pod-bound token needs the pod to
/// run as the token's ServiceAccount, k8s-sa-token-facts.md §4.3 step 9).
fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  serviceAccountName: \
         example-sa\n  containers:\n  - name: example\n    image: nginx\n"
    )
}

#[track_caller]
fn create_pod(s: &Server, name: &str) -> String {
    let path = s.write_file(&format!("{name}.yaml"), &pod(name));
    s.kubectl_ok(&["create", "-f", &path]);
    uid(s, &format!("pod/{name}"))
}

/// A JWS compact token, decoded.
struct Jwt {
    header_raw: String,
    header: Value,
    payload_raw: String,
    payload: Value,
    signature: String,
}

impl Jwt {
    fn int(&self, claim: &str) -> i64 {
        self.payload[claim].as_i64().unwrap_or(i64::MIN)
    }

    fn kid(&self) -> String {
        self.header["kid"].as_str().unwrap_or_default().to_owned()
    }

    fn jti(&self) -> String {
        self.payload["jti"].as_str().unwrap_or_default().to_owned()
    }
}

#[track_caller]
fn decode(s: &Server, token: &str) -> Jwt {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        s.fail(format!(
            "not a JWS compact token (3 dot-separated parts): {token:?}"
        ));
    }
    let text = |part: &str| {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| s.fail(format!("{part:?} is not base64url without padding: {e}")));
        String::from_utf8(bytes).unwrap_or_else(|e| s.fail(format!("not UTF-8: {e}")))
    };
    let parse = |raw: &str| {
        serde_json::from_str::<Value>(raw)
            .unwrap_or_else(|e| s.fail(format!("not JSON: {e}: {raw}")))
    };
    let (header_raw, payload_raw) = (text(parts[0]), text(parts[1]));
    Jwt {
        header: parse(&header_raw),
        payload: parse(&payload_raw),
        header_raw,
        payload_raw,
        signature: parts[2].to_owned(),
    }
}

/// `kubectl create token ARGS`, which must succeed and print one token and no newline.
#[track_caller]
fn create_token(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    let out = s.kubectl(&all);
    let ok = out.success()
        && !out.stdout.is_empty()
        && out.stdout.split('.').count() == 3
        && out
            .stdout
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    // kubectl-wire.md §3.6: the token with no trailing newline when stdout is not a terminal.
    s.check(ok, "expected exactly one JWT on stdout, no newline", &out);
    out.stdout
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && s.chars()
            .filter(|&c| c != '-')
            .all(|c| c.is_ascii_hexdigit())
}

fn is_kid(kid: &str) -> bool {
    kid.len() == 43
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `kubectl auth whoami --token=T -o json`'s `status.userInfo`.
#[track_caller]
fn whoami(s: &Server, token: &str) -> Value {
    let out = s.kubectl_with_token(token, &["auth", "whoami", "-o", "json"]);
    let v = json_out(s, &out);
    s.check(
        v["kind"] == "SelfSubjectReview",
        "not a SelfSubjectReview",
        &out,
    );
    v["status"]["userInfo"].clone()
}

#[track_caller]
fn assert_unauthorized(s: &Server, token: &str) {
    let out = s.kubectl_with_token(token, &["auth", "whoami"]);
    s.check(!out.success(), "the token must be rejected", &out);
    assert_stderr_line(s, &out, UNAUTHORIZED);
}

fn token_review_manifest(token: &str, audiences: &[&str]) -> String {
    let mut spec = json!({ "token": token });
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": spec,
    });
    review.to_string()
}

/// POSTs a TokenReview as admin through `kubectl create -f - -o json`; returns the response.
/// `--validate=false` keeps these checks independent of the OpenAPI documents, which
/// `token_review_and_a_recreated_service_account` covers with the plain command.
#[track_caller]
fn token_review(s: &Server, token: &str, audiences: &[&str]) -> Value {
    let review = token_review_manifest(token, audiences);
    let args = ["create", "-f", "-", "-o", "json", "--validate=false"];
    let out = s.kubectl_stdin(&args, &review);
    let v = json_out(s, &out);
    s.check(v["kind"] == "TokenReview", "not a TokenReview", &out);
    v
}

/// The admin bearer token from the kubeconfig the server wrote.
#[track_caller]
fn admin_token(s: &Server) -> String {
    let path = "jsonpath={.users[0].user.token}";
    let token = s.kubectl_ok(&["config", "view", "--raw", "--minify", "-o", path]);
    if token.len() < 16 {
        s.fail(format!("no admin token in the kubeconfig: {token:?}"));
    }
    token
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
            .filter(|l| l.contains("serviceaccount"))
            .collect();
        s.fail(format!(
            "/metrics lacks the line {line:?}; its serviceaccount lines:\n{}",
            ours.join("\n")
        ));
    }
}

/// Runs `sh -c SCRIPT` with `args` as $1...; must succeed.
#[track_caller]
fn sh(s: &Server, script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg("sh").args(args);
    let out = s.run(cmd, None);
    s.check(out.success(), "shell command failed", &out);
    out.stdout
}

/// `sh -c SCRIPT sh ARGS...`, run without a server (key generation); must succeed.
fn sh_alone(script: &str, args: &[&str]) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .output();
    let out = or_die(out, format!("run sh -c {script:?}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if !out.status.success() {
        let (o, e) = (text(&out.stdout), text(&out.stderr));
        panic!("sh -c {script:?} {args:?} failed: {}\n{o}\n{e}", out.status);
    }
    text(&out.stdout)
}

/// The kid Kubernetes derives for a key (k8s-sa-token-facts.md §1.1): base64url, no padding,
/// of SHA-256 over the DER SubjectPublicKeyInfo. Computed here by openssl, independently.
fn openssl_kid(key_file: &str) -> String {
    let script = "openssl pkey -in \"$1\" -pubout -outform DER \
                  | openssl dgst -sha256 -binary | base64 -w0 | tr '+/' '-_' | tr -d '='";
    let kid = sh_alone(script, &[key_file]);
    assert!(is_kid(&kid), "openssl gave no kid for {key_file}: {kid:?}");
    kid
}

/// A new private key in `dir`: `rsa` (2048 bits) or `ec` (P-256).
fn openssl_genkey(dir: &std::path::Path, name: &str, kind: &str) -> String {
    let path = dir.join(name).to_string_lossy().into_owned();
    let script = match kind {
        "rsa" => "openssl genrsa -out \"$1\" 2048 2>&1",
        _ => "openssl ecparam -name prime256v1 -genkey -noout -out \"$1\"",
    };
    sh_alone(script, &[&path]);
    path
}

/// `GET path` without credentials: (status, content type, body).
#[track_caller]
fn anonymous_get(s: &Server, path: &str) -> (u16, String, String) {
    let r = support::anonymous_get(s, path);
    (r.status, r.header("content-type").to_owned(), r.text())
}

#[track_caller]
fn require_pyjwt(s: &Server) {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import jwt, cryptography"]);
    let out = s.run(cmd, None);
    let msg = format!("PyJWT and cryptography are required (`{PIP_INSTALL}`; .ci/run does it)");
    s.check(out.success(), &msg, &out);
}

#[track_caller]
fn jwks(s: &Server) -> Value {
    let out = s.kubectl(&["get", "--raw", "/openid/v1/jwks"]);
    json_out(s, &out)
}

fn jwks_kids(jwks: &Value) -> BTreeSet<String> {
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    keys.iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// Audit events (one JSON object a line) that satisfy `pred`. The event may be written just
/// after the response, so this polls for up to 10 s (no fixed sleep decides the outcome).
#[track_caller]
fn audit_events(s: &Server, path: &std::path::Path, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| pred(e))
            .collect();
        if !events.is_empty() || Instant::now() > deadline {
            if events.is_empty() {
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                s.fail(format!(
                    "no matching audit event in {}; last lines:\n{}",
                    path.display(),
                    tail.join("\n")
                ));
            }
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The token's shape

#[test]
fn create_token_prints_a_jwt_shaped_as_kubernetes_signs_it() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let sa_uid = uid(&s, "sa/example-sa");
    let before = now();
    let token = create_token(&s, &["example-sa"]);
    let jwt = decode(&s, &token);
    // k8s-sa-token-facts.md §1.1: exactly alg and kid, in that order, no typ.
    let kid = jwt.kid();
    let expected_header = format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#);
    let ok = jwt.header_raw == expected_header && is_kid(&kid);
    ensure(
        &s,
        ok,
        &format!(
            "header {:?} is not {{\"alg\":\"RS256\",\"kid\":<43 chars>}}",
            jwt.header_raw
        ),
        &token,
    );
    let sa_key = s.data_dir().join("sa.key").to_string_lossy().into_owned();
    let derived = openssl_kid(&sa_key);
    if kid != derived {
        s.fail(format!(
            "kid {kid} is not SHA-256 of sa.key's SubjectPublicKeyInfo: {derived}"
        ));
    }
    // RSA-2048: a 256-byte signature is 342 base64url characters (kube-1.32-observed.md).
    if jwt.signature.len() != 342 {
        s.fail(format!(
            "signature has {} chars, not 342",
            jwt.signature.len()
        ));
    }
    // Keys sorted as Go's JSON encoder writes them (kube-1.32-observed.md). The crate enables
    // serde_json's `preserve_order`, so `keys()` is the order on the wire.
    let keys: Vec<&str> = jwt
        .payload
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let sorted = [
        "aud",
        "exp",
        "iat",
        "iss",
        "jti",
        "kubernetes.io",
        "nbf",
        "sub",
    ];
    if keys != sorted {
        s.fail(format!(
            "payload keys {keys:?}, expected {sorted:?}: {}",
            jwt.payload_raw
        ));
    }
    let p = &jwt.payload;
    let iat = jwt.int("iat");
    let private = json!({
        "namespace": "default",
        "serviceaccount": {"name": "example-sa", "uid": sa_uid},
    });
    let checks = [
        ("aud", p["aud"] == json!([ISSUER])),
        ("iss", p["iss"] == ISSUER),
        ("sub", p["sub"] == SA_USER),
        ("exp - iat == 3600", jwt.int("exp") - iat == 3600),
        ("nbf == iat", jwt.int("nbf") == iat),
        ("iat is now", (before - 5..=now() + 5).contains(&iat)),
        ("jti is a UUID", is_uuid(&jwt.jti())),
        ("kubernetes.io", p["kubernetes.io"] == private),
        (
            "kubernetes.io keys in order",
            jwt.payload_raw.contains(r#""kubernetes.io":{"namespace":"default","serviceaccount":{"name":"example-sa","uid":""#),
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            s.fail(format!("claim check `{what}` failed: {}", jwt.payload_raw));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Flags and errors of `kubectl create token`

#[test]
fn create_token_duration_audience_and_errors() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let jwt = decode(
        &s,
        &create_token(&s, &["example-sa", "--duration=600s", "--audience=vault"]),
    );
    let ok = jwt.payload["aud"] == json!(["vault"]) && jwt.int("exp") - jwt.int("iat") == 600;
    ensure(
        &s,
        ok,
        "expected aud [\"vault\"] and 600 s",
        &jwt.payload_raw,
    );

    // kube-1.32-observed.md, "kubectl create token".
    let out = s.kubectl(&["create", "token", "example-sa", "--duration=60s"]);
    let invalid = "error: failed to create token: TokenRequest.authentication.k8s.io \"\" is invalid: \
                   spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes";
    assert_fails_with(&s, &out, invalid);
    let out = s.kubectl(&["create", "token", "no-such-sa"]);
    assert_fails_with(
        &s,
        &out,
        r#"error: failed to create token: serviceaccounts "no-such-sa" not found"#,
    );
    let bound_to_nope = [
        "create",
        "token",
        "example-sa",
        "--bound-object-kind=Pod",
        "--bound-object-name=nope",
    ];
    let out = s.kubectl(&bound_to_nope);
    assert_fails_with(
        &s,
        &out,
        r#"error: failed to create token: pods "nope" not found"#,
    );

    // k8s-sa-token-facts.md §4.3 step 9: a pod running as another ServiceAccount (here none).
    let other = s.write_file(
        "other.yaml",
        &pod("other").replace("  serviceAccountName: example-sa\n", ""),
    );
    s.kubectl_ok(&["create", "-f", &other]);
    let out = s.kubectl(&[
        "create",
        "token",
        "example-sa",
        "--bound-object-kind=Pod",
        "--bound-object-name=other",
    ]);
    let msg = "error: failed to create token: cannot bind token for serviceaccount \"example-sa\" to pod \
               running with different serviceaccount name.";
    assert_fails_with(&s, &out, msg);

    // The raw TokenRequest (kube-1.32-observed.md): 201 with spec defaults filled in and
    // `boundObjectRef: null` (the spec fields are not omitempty, facts §4.2).
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}}"#;
    let path = "/api/v1/namespaces/default/serviceaccounts/example-sa/token";
    let body_file = s.write_file("token-request.json", body);
    let out = s.kubectl(&["create", "--raw", path, "-f", &body_file]);
    let v = json_out(&s, &out);
    let spec = &v["spec"];
    let status = &v["status"];
    let token = status["token"].as_str().unwrap_or_default();
    let expiry = status["expirationTimestamp"].as_str().unwrap_or_default();
    let expiry = expiry
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .unwrap_or(0);
    let ok = v["kind"] == "TokenRequest"
        && v["apiVersion"] == "authentication.k8s.io/v1"
        && spec["audiences"] == json!([ISSUER])
        && spec["expirationSeconds"] == 600
        && spec.get("boundObjectRef") == Some(&Value::Null)
        && !token.is_empty()
        && expiry - decode(&s, token).int("iat") == 600;
    s.check(ok, "unexpected TokenRequest response", &out);
}

// ---------------------------------------------------------------------------------------------
// 3. Pod-bound tokens, whoami, and revocation when the pod goes

#[test]
fn pod_bound_token_names_the_pod_and_dies_with_it() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let sa_uid = uid(&s, "sa/example-sa");

    // whoami's table for an unbound token (kube-1.32-observed.md, "auth whoami").
    let plain = create_token(&s, &["example-sa"]);
    let jti = decode(&s, &plain).jti();
    let out = s.kubectl_with_token(&plain, &["auth", "whoami"]);
    s.check(out.success(), "whoami failed", &out);
    let got: Vec<String> = out.stdout.lines().map(squeeze).collect();
    let expected = [
        "ATTRIBUTE VALUE".to_owned(),
        format!("Username {SA_USER}"),
        format!("UID {sa_uid}"),
        "Groups [system:serviceaccounts system:serviceaccounts:default system:authenticated]"
            .to_owned(),
        format!("Extra: authentication.kubernetes.io/credential-id [JTI={jti}]"),
    ];
    s.check(
        got == expected,
        &format!("expected the table {expected:#?}"),
        &out,
    );

    let pod_uid = create_pod(&s, "p1");
    let token = create_token(
        &s,
        &[
            "example-sa",
            "--bound-object-kind=Pod",
            "--bound-object-name=p1",
        ],
    );
    let jwt = decode(&s, &token);
    let private = json!({
        "namespace": "default",
        "pod": {"name": "p1", "uid": pod_uid},
        "serviceaccount": {"name": "example-sa", "uid": sa_uid},
    });
    // No `node`: the pod has no nodeName (kube-1.32-observed.md, "Bound tokens").
    let ok = jwt.payload["kubernetes.io"] == private
        && jwt
            .payload_raw
            .contains(r#""kubernetes.io":{"namespace":"default","pod":{"name":"p1","uid":""#);
    ensure(
        &s,
        ok,
        &format!("expected kubernetes.io = {private}"),
        &jwt.payload_raw,
    );
    let user = whoami(&s, &token);
    let extra = json!({
        "authentication.kubernetes.io/credential-id": [format!("JTI={}", jwt.jti())],
        "authentication.kubernetes.io/pod-name": ["p1"],
        "authentication.kubernetes.io/pod-uid": [pod_uid],
    });
    let ok =
        user["username"] == SA_USER && user["uid"] == sa_uid.as_str() && user["extra"] == extra;
    ensure(
        &s,
        ok,
        &format!("expected userInfo.extra {extra}"),
        user.to_string(),
    );

    // Deleted without a grace period (no nodeName), and tokenwarden drops its cache at once:
    // no 10 s window as kube-apiserver's (issue 3).
    s.kubectl_ok(&["delete", "pod", "p1"]);
    assert_unauthorized(&s, &token);
    let review = token_review(&s, &token, &[]);
    let expected = json!({"user": {}, "error": "[invalid bearer token, service account token has been invalidated]"});
    ensure(
        &s,
        review["status"] == expected,
        &format!("expected status {expected}"),
        review.to_string(),
    );
    // The unbound token is unaffected.
    let _ = whoami(&s, &plain);
}

// ---------------------------------------------------------------------------------------------
// 4. TokenReview, and a ServiceAccount deleted and recreated

#[test]
fn token_review_and_a_recreated_service_account() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let old_uid = uid(&s, "sa/example-sa");
    let token = create_token(&s, &["example-sa"]);
    let jti = decode(&s, &token).jti();

    // The usual way to review a token: a manifest through `kubectl create -f` with kubectl's
    // default validation, which needs the server's OpenAPI to cover TokenReview.
    let manifest = s.write_file("tokenreview.json", &token_review_manifest(&token, &[]));
    let out = s.kubectl(&["create", "-f", &manifest, "-o", "json"]);
    let v = json_out(&s, &out);
    s.check(
        v["status"]["authenticated"] == true,
        "the review must authenticate",
        &out,
    );

    // kube-1.32-observed.md, "TokenReview".
    let v = token_review(&s, &token, &[]);
    let expected = json!({
        "authenticated": true,
        "user": {
            "username": SA_USER,
            "uid": old_uid,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": [format!("JTI={jti}")]},
        },
        "audiences": [ISSUER],
    });
    let ok = v["apiVersion"] == "authentication.k8s.io/v1" && v["status"] == expected;
    ensure(
        &s,
        ok,
        &format!("expected status {expected}"),
        v.to_string(),
    );

    let v = token_review(&s, &token, &["foo"]);
    let error = format!(
        "[invalid bearer token, token audiences [\"{ISSUER}\"] is invalid for the target audiences [\"foo\"]]"
    );
    let expected = json!({"user": {}, "error": error});
    ensure(
        &s,
        v["status"] == expected,
        &format!("expected status {expected}"),
        v.to_string(),
    );

    let v = token_review(&s, "not-a-token", &[]);
    let expected = json!({"user": {}, "error": "invalid bearer token"});
    ensure(
        &s,
        v["status"] == expected,
        &format!("expected status {expected}"),
        v.to_string(),
    );

    s.kubectl_ok(&["delete", "sa", "example-sa"]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let new_uid = uid(&s, "sa/example-sa");
    assert!(new_uid != old_uid, "a recreated SA must get a new uid");
    assert_unauthorized(&s, &token);
    let v = token_review(&s, &token, &[]);
    let error = format!(
        "[invalid bearer token, service account UID ({new_uid}) does not match claim ({old_uid})]"
    );
    let expected = json!({"user": {}, "error": error});
    ensure(
        &s,
        v["status"] == expected,
        &format!("expected status {expected}"),
        v.to_string(),
    );
    // A token for the new ServiceAccount works.
    let user = whoami(&s, &create_token(&s, &["example-sa"]));
    ensure(
        &s,
        user["uid"] == new_uid.as_str(),
        "new token, new uid",
        user.to_string(),
    );
}

// ---------------------------------------------------------------------------------------------
// 5. RBAC denial for a ServiceAccount

#[test]
fn service_account_token_is_forbidden_to_list_pods() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let token = create_token(&s, &["example-sa"]);
    let out = s.kubectl_with_token(&token, &["get", "pods"]);
    let msg = "Error from server (Forbidden): pods is forbidden: User \"system:serviceaccount:default:example-sa\" \
               cannot list resource \"pods\" in API group \"\" in the namespace \"default\"";
    assert_fails_with(&s, &out, msg);
    // A ServiceAccount may not mint tokens either (only whoami, can-i, discovery, OIDC).
    let out = s.kubectl_with_token(&token, &["create", "token", "example-sa"]);
    s.check(!out.success(), "an SA must not mint tokens", &out);
    let out = s.kubectl_with_token(&token, &["auth", "can-i", "list", "pods"]);
    let ok = out.stdout == "no\n";
    s.check(ok, "can-i list pods must say no", &out);
}

// ---------------------------------------------------------------------------------------------
// 6. Metrics, as seed 001 reads them, and promtool

#[test]
fn metrics_carry_the_token_counters_and_pass_promtool() {
    let s = Server::start();
    // Seed 001: `kubectl get --raw "/metrics" | grep stale`.
    let kubeconfig = s.kubeconfig().to_string_lossy().into_owned();
    let cache = s.path("kubectl-cache").to_string_lossy().into_owned();
    let grep = "\"$1\" --kubeconfig \"$2\" --cache-dir \"$3\" get --raw \"/metrics\" | grep stale";
    let stale = sh(&s, grep, &[KUBECTL, &kubeconfig, &cache]);
    let ok = has_line(&stale, "serviceaccount_stale_tokens_total 0");
    ensure(
        &s,
        ok,
        "seed 001's grep must find `serviceaccount_stale_tokens_total 0`",
        &stale,
    );
    let text = metrics(&s);
    // k8s-sa-token-facts.md §8 and kube-1.32-observed.md: help texts and zero values.
    for (name, help) in [
        (
            "serviceaccount_legacy_tokens_total",
            "Cumulative legacy service account tokens used",
        ),
        (
            "serviceaccount_stale_tokens_total",
            "Cumulative stale projected service account tokens used",
        ),
        (
            "serviceaccount_valid_tokens_total",
            "Cumulative valid projected service account tokens used",
        ),
        (
            "serviceaccount_legacy_auto_token_uses_total",
            "Cumulative auto-generated legacy tokens used",
        ),
        (
            "serviceaccount_legacy_manual_token_uses_total",
            "Cumulative manually created legacy tokens used",
        ),
        (
            "serviceaccount_invalid_legacy_auto_token_uses_total",
            "Cumulative invalid auto-generated legacy tokens used",
        ),
    ] {
        assert_metric(&s, &text, &format!("{name} 0"));
        let help_line = format!("# HELP {name} [ALPHA] {help}");
        assert_metric(&s, &text, &help_line);
    }

    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        s.fail("promtool is missing: install the Debian package `prometheus` (.ci/run does)");
    };
    if let Some(mut stdin) = child.stdin.take() {
        or_die(stdin.write_all(text.as_bytes()), "write to promtool");
    }
    let out = or_die(child.wait_with_output(), "wait for promtool");
    let out = Output {
        cmd: "kubectl get --raw /metrics | promtool check metrics".to_owned(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    s.check(out.success(), "promtool check metrics must exit 0", &out);
    // Non-admins may not read /metrics.
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let token = create_token(&s, &["example-sa"]);
    let out = s.kubectl_with_token(&token, &["get", "--raw", "/metrics"]);
    s.check(!out.success(), "an SA must not read /metrics", &out);
}

// ---------------------------------------------------------------------------------------------
// 7. OIDC discovery

#[test]
fn oidc_discovery_documents_and_who_may_read_them() {
    let s = Server::start();
    let port = s.port();
    let discovery = format!(
        "{{\"issuer\":\"{ISSUER}\",\"jwks_uri\":\"https://127.0.0.1:{port}/openid/v1/jwks\",\
         \"response_types_supported\":[\"id_token\"],\"subject_types_supported\":[\"public\"],\
         \"id_token_signing_alg_values_supported\":[\"RS256\"]}}"
    );
    let out = s.kubectl(&["get", "--raw", "/.well-known/openid-configuration"]);
    s.check(
        out.success() && out.stdout == discovery,
        &format!("expected exactly {discovery}"),
        &out,
    );

    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let token = create_token(&s, &["example-sa"]);
    let kid = decode(&s, &token).kid();
    let v = jwks(&s);
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    let ok = keys.len() == 1 && {
        let k = &keys[0];
        k["kid"] == kid.as_str()
            && k["use"] == "sig"
            && k["kty"] == "RSA"
            && k["alg"] == "RS256"
            && k["e"] == "AQAB"
            && k["n"].as_str().is_some_and(|n| n.len() == 342)
    };
    ensure(
        &s,
        ok,
        &format!("expected one RS256 key with kid {kid}"),
        v.to_string(),
    );

    // A ServiceAccount may read both (system:service-account-issuer-discovery, facts §10).
    for path in ["/.well-known/openid-configuration", "/openid/v1/jwks"] {
        let out = s.kubectl_with_token(&token, &["get", "--raw", path]);
        s.check(
            out.success(),
            "a ServiceAccount may read the OIDC documents",
            &out,
        );
    }
    // Anonymous clients may not (kube-1.32-observed.md, "OIDC discovery").
    let (status, _, body) = anonymous_get(&s, "/.well-known/openid-configuration");
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    let msg = "forbidden: User \"system:anonymous\" cannot get path \"/.well-known/openid-configuration\"";
    let ok = status == 403 && v["kind"] == "Status" && v["code"] == 403 && v["message"] == msg;
    ensure(&s, ok, &format!("expected 403 with message {msg:?}"), &body);
    let (status, _, _) = anonymous_get(&s, "/openid/v1/jwks");
    ensure(
        &s,
        status == 403,
        "anonymous JWKS must be 403",
        status.to_string(),
    );
}

// ---------------------------------------------------------------------------------------------
// 8. A relying party: PyJWT with nothing but the two public documents

const PYJWT_VERIFY: &str = "import json, ssl, sys, urllib.request
import jwt
base, ca, token = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
def get(url):
    with urllib.request.urlopen(url, context=ctx, timeout=20) as r:
        return json.load(r)
disc = get(base + '/.well-known/openid-configuration')
jwks = get(disc['jwks_uri'])
kid = jwt.get_unverified_header(token)['kid']
entry = next(k for k in jwks['keys'] if k['kid'] == kid)
key = jwt.PyJWK(entry).key
algs = disc['id_token_signing_alg_values_supported']
claims = jwt.decode(token, key, algorithms=algs, audience='vault', issuer=disc['issuer'])
for bad in [token[:-4] + ('AAAA' if not token.endswith('AAAA') else 'BBBB')]:
    try:
        jwt.decode(bad, key, algorithms=algs, audience='vault', issuer=disc['issuer'])
        sys.exit('a tampered signature verified')
    except jwt.InvalidSignatureError:
        pass
try:
    jwt.decode(token, key, algorithms=algs, audience='other', issuer=disc['issuer'])
    sys.exit('a wrong audience verified')
except jwt.InvalidAudienceError:
    pass
print(claims['sub'])
";

#[test]
fn pyjwt_verifies_a_token_from_the_anonymous_discovery_documents() {
    let s = Server::start_with(&["--anonymous-issuer-discovery"]);
    require_pyjwt(&s);
    // With the flag, anonymous reads succeed, with the content types of facts §10.
    let (status, content_type, _) = anonymous_get(&s, "/.well-known/openid-configuration");
    let ok = status == 200 && content_type.starts_with("application/json");
    ensure(
        &s,
        ok,
        "anonymous discovery must be 200 application/json",
        format!("{status} {content_type}"),
    );
    let (status, content_type, _) = anonymous_get(&s, "/openid/v1/jwks");
    let ok = status == 200 && content_type.starts_with("application/jwk-set+json");
    ensure(
        &s,
        ok,
        "anonymous JWKS must be 200 application/jwk-set+json",
        format!("{status} {content_type}"),
    );

    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let token = create_token(&s, &["example-sa", "--audience=vault"]);
    let base = format!("https://127.0.0.1:{}", s.port());
    let ca = s.data_dir().join("ca.crt").to_string_lossy().into_owned();
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PYJWT_VERIFY, &base, &ca, &token]);
    let out = s.run(cmd, None);
    let ok = out.success() && out.stdout == format!("{SA_USER}\n");
    s.check(
        ok,
        &format!("PyJWT must verify the token and print {SA_USER}"),
        &out,
    );
}

// ---------------------------------------------------------------------------------------------
// 9. The extended 3607 s token, and stale-token detection under a moved clock

#[test]
fn extended_token_turns_stale_and_is_counted_and_audited() {
    let mut s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    create_pod(&s, "p2");
    let args = [
        "create",
        "token",
        "example-sa",
        "--duration=3607s",
        "--bound-object-kind=Pod",
        "--bound-object-name=p2",
        "-o",
        "json",
    ];
    let out = s.kubectl(&args);
    let v = json_out(&s, &out);
    let token = v["status"]["token"].as_str().unwrap_or_default().to_owned();
    let jwt = decode(&s, &token);
    let iat = jwt.int("iat");
    let expiry = v["status"]["expirationTimestamp"]
        .as_str()
        .unwrap_or_default();
    let expiry = expiry
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .unwrap_or(0);
    // k8s-sa-token-facts.md §4.5: the response says 3607 s, the JWT says one year.
    let ok = expiry - iat == 3607
        && jwt.int("exp") - iat == 31_536_000
        && jwt.payload["kubernetes.io"]["warnafter"] == iat + 3607;
    s.check(
        ok,
        "expected expirationTimestamp = iat+3607, exp = iat+1y, warnafter = iat+3607",
        &out,
    );
    let short = create_token(&s, &["example-sa"]);

    let _ = whoami(&s, &token);
    let text = metrics(&s);
    assert_metric(&s, &text, "serviceaccount_valid_tokens_total 1");
    assert_metric(&s, &text, "serviceaccount_stale_tokens_total 0");

    // Two hours later: past warnafter (iat+3607), before exp.
    let audit = s.path("audit.log");
    let audit_arg = format!("--audit-log-path={}", audit.display());
    s.restart_with(&["--testing-clock-offset=2h", &audit_arg]);
    let user = whoami(&s, &token);
    ensure(
        &s,
        user["username"] == SA_USER,
        "the extended token must still work",
        user.to_string(),
    );
    let text = metrics(&s);
    assert_metric(&s, &text, "serviceaccount_stale_tokens_total 1");
    assert_metric(&s, &text, "serviceaccount_valid_tokens_total 0");
    let labelled = "tokenwarden_serviceaccount_stale_tokens_total{namespace=\"default\",serviceaccount=\"example-sa\"} 1";
    assert_metric(&s, &text, labelled);

    // facts §8: `subject: <sub>, seconds after warning threshold: <n>`; n is about 3593.
    const KEY: &str = "authentication.k8s.io/stale-token";
    let events = audit_events(&s, &audit, |e| e["annotations"][KEY].is_string());
    let prefix = format!("subject: {SA_USER}, seconds after warning threshold: ");
    let ok = events.iter().any(|e| {
        let value = e["annotations"][KEY].as_str().unwrap_or_default();
        let n = value
            .strip_prefix(&prefix)
            .and_then(|n| n.parse::<i64>().ok());
        e["apiVersion"] == "audit.k8s.io/v1"
            && e["kind"] == "Event"
            && e["level"] == "Metadata"
            && e["user"]["username"] == SA_USER
            && e["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("selfsubjectreviews"))
            && e["userAgent"]
                .as_str()
                .is_some_and(|a| a.starts_with("kubectl"))
            && n.is_some_and(|n| (3590..=3700).contains(&n))
    });
    let shown: Vec<String> = events.iter().map(Value::to_string).collect();
    ensure(
        &s,
        ok,
        "no audit event of the stale use as expected",
        shown.join("\n"),
    );

    // The plain one-hour token has expired two hours later.
    assert_unauthorized(&s, &short);
    let review = token_review(&s, &short, &[]);
    let expected =
        json!({"user": {}, "error": "[invalid bearer token, service account token has expired]"});
    ensure(
        &s,
        review["status"] == expected,
        &format!("expected status {expected}"),
        review.to_string(),
    );

    // facts §3.4 and §8: the TokenRequest's own audit event carries the new token's JTI.
    let fresh = decode(&s, &create_token(&s, &["example-sa"])).jti();
    const ISSUED: &str = "authentication.kubernetes.io/issued-credential-id";
    let jti = format!("JTI={fresh}");
    let events = audit_events(&s, &audit, |e| e["annotations"][ISSUED] == jti.as_str());
    let ok = events.iter().any(|e| {
        e["verb"] == "create"
            && e["objectRef"]["resource"] == "serviceaccounts"
            && e["objectRef"]["subresource"] == "token"
    });
    let shown: Vec<String> = events.iter().map(Value::to_string).collect();
    ensure(
        &s,
        ok,
        "the TokenRequest event must be a create of serviceaccounts/token",
        shown.join("\n"),
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Key types and rotation

#[test]
fn ec_signing_key_gives_es256_tokens() {
    let keys = or_die(tempfile::tempdir(), "make a dir");
    let ec = openssl_genkey(keys.path(), "ec.pem", "ec");
    let s = Server::start_with(&["--service-account-signing-key-file", &ec]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let token = create_token(&s, &["example-sa"]);
    let jwt = decode(&s, &token);
    let kid = jwt.kid();
    let ok = jwt.header_raw == format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#)
        && kid == openssl_kid(&ec)
        && jwt.signature.len() == 86; // ES256: r||s, 64 bytes
    ensure(
        &s,
        ok,
        "expected an ES256 header with the EC key's kid",
        &jwt.header_raw,
    );
    let user = whoami(&s, &token);
    ensure(
        &s,
        user["username"] == SA_USER,
        "the ES256 token must authenticate",
        user.to_string(),
    );
    let v = jwks(&s);
    let key = &v["keys"][0];
    let ok = v["keys"].as_array().is_some_and(|k| k.len() == 1)
        && key["kty"] == "EC"
        && key["crv"] == "P-256"
        && key["alg"] == "ES256"
        && key["kid"] == kid.as_str()
        && key["x"].is_string()
        && key["y"].is_string();
    ensure(
        &s,
        ok,
        "expected one EC P-256 ES256 key in the JWKS",
        v.to_string(),
    );
    let out = s.kubectl(&["get", "--raw", "/.well-known/openid-configuration"]);
    let d = json_out(&s, &out);
    s.check(
        d["id_token_signing_alg_values_supported"] == json!(["ES256"]),
        "algs must be [ES256]",
        &out,
    );
}

#[test]
fn rotated_signing_key_keeps_old_tokens_while_the_old_key_verifies() {
    let keys = or_die(tempfile::tempdir(), "make a dir");
    let key1 = openssl_genkey(keys.path(), "key1.pem", "rsa");
    let key2 = openssl_genkey(keys.path(), "key2.pem", "rsa");
    let (kid1, kid2) = (openssl_kid(&key1), openssl_kid(&key2));

    let mut s = Server::start_with(&["--service-account-signing-key-file", &key1]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let t1 = create_token(&s, &["example-sa"]);
    ensure(
        &s,
        decode(&s, &t1).kid() == kid1,
        "T1 must carry key1's kid",
        &t1,
    );

    s.restart_with(&[
        "--service-account-signing-key-file",
        &key2,
        "--service-account-key-file",
        &key1,
    ]);
    let user = whoami(&s, &t1);
    ensure(
        &s,
        user["username"] == SA_USER,
        "T1 must still authenticate",
        user.to_string(),
    );
    let t2 = create_token(&s, &["example-sa"]);
    ensure(
        &s,
        decode(&s, &t2).kid() == kid2,
        "a new token must carry key2's kid",
        &t2,
    );
    let v = jwks(&s);
    let expected: BTreeSet<String> = [kid1.clone(), kid2.clone()].into();
    let ok = jwks_kids(&v) == expected && v["keys"].as_array().is_some_and(|k| k.len() == 2);
    ensure(&s, ok, "the JWKS must list both kids", v.to_string());

    s.restart_with(&["--service-account-signing-key-file", &key2]);
    assert_unauthorized(&s, &t1);
    let _ = whoami(&s, &t2);
    let v = jwks(&s);
    ensure(
        &s,
        jwks_kids(&v) == [kid2].into(),
        "the JWKS must list key2 only",
        v.to_string(),
    );
}

// ---------------------------------------------------------------------------------------------
// 11. Maximum expiration

#[test]
fn max_token_expiration_shortens_with_a_warning() {
    let s = Server::start_with(&["--service-account-max-token-expiration=2h"]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let out = s.kubectl(&["create", "token", "example-sa", "--duration=24h"]);
    s.check(out.success(), "create token failed", &out);
    // facts §4.3 step 10; kubectl prints a response Warning header as `Warning: <text>`.
    assert_stderr_line(
        &s,
        &out,
        "Warning: requested expiration of 86400 seconds shortened to 7200 seconds",
    );
    let jwt = decode(&s, &out.stdout);
    s.check(
        jwt.int("exp") - jwt.int("iat") == 7200,
        "expected exp - iat == 7200",
        &out,
    );
}

// ---------------------------------------------------------------------------------------------
// 12. Tokens never reach the log

#[test]
fn tokens_never_reach_the_server_log() {
    let s = Server::start_with_env(&[], &[("TOKENWARDEN_LOG", "debug")]);
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    create_pod(&s, "p3");
    let token = create_token(&s, &["example-sa"]);
    let bound = create_token(
        &s,
        &[
            "example-sa",
            "--bound-object-kind=Pod",
            "--bound-object-name=p3",
        ],
    );
    // Forged: another subject in the payload, the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let payload = decode(&s, &token)
        .payload_raw
        .replace("example-sa", "forged-sa");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload),
        parts[2]
    );

    let _ = whoami(&s, &token);
    let _ = whoami(&s, &bound);
    let out = s.kubectl_with_token(&token, &["get", "pods"]);
    s.check(!out.success(), "get pods as the SA must be forbidden", &out);
    assert_unauthorized(&s, &forged);
    let v = token_review(&s, &forged, &[]);
    ensure(
        &s,
        v["status"]["authenticated"].is_null(),
        "a forged token must not authenticate",
        v.to_string(),
    );
    let _ = token_review(&s, &token, &[]);
    s.kubectl_ok(&["delete", "pod", "p3"]);
    assert_unauthorized(&s, &bound);

    let log = s.log();
    ensure(
        &s,
        log.contains("DEBUG"),
        "TOKENWARDEN_LOG=debug must give debug lines",
        "",
    );
    let admin = admin_token(&s);
    for (what, secret) in [
        ("the SA token", token.as_str()),
        ("the SA token's signature", parts[2]),
        ("the pod-bound token", bound.as_str()),
        ("the forged token", forged.as_str()),
        ("the admin token", admin.as_str()),
    ] {
        if log.contains(secret) {
            s.fail(format!("{what} appears in the server log"));
        }
    }
}
