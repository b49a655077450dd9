//! Black-box tests of issue 11 (RBAC) against the real binary: the walkthrough of the issue
//! with kubectl 1.32 and 1.30 (a service-account token refused, then granted through a Role
//! and a RoleBinding, `auth can-i` with and without `--list`, `auth whoami --as`, a refused
//! impersonation, and a deleted binding revoking at once), privilege-escalation attempts with
//! and without `escalate`/`bind`, impersonation allowed and refused (with the audit event
//! naming both users), every access review kind, the bootstrap policy surviving a restart and
//! being repaired after an edit, and the real Python client in-cluster with a token granted
//! `list configmaps` and refused `list secrets`. Expected texts are kube-apiserver's (the
//! source is named beside each).

mod support;

use std::fs;
use std::process::Command;

use serde_json::{Value, json};
use support::{KUBECTL, KUBECTL_130, Output, Server, ensure, python};

/// `kubectl` of one minor with `--token`, against `s`.
fn kubectl_as(s: &Server, bin: &str, token: &str, args: &[&str]) -> Output {
    let mut cmd = s.command(bin, &s.kubeconfig(), args);
    if !token.is_empty() {
        cmd.arg(format!("--token={token}"));
    }
    s.run(cmd, None)
}

fn ok(s: &Server, out: Output) -> String {
    s.check(out.success(), "command failed", &out);
    out.stdout
}

fn refused(s: &Server, out: &Output, expected: &str) {
    s.check(!out.success(), "command should have failed", out);
    let line = format!("Error from server (Forbidden): {expected}");
    s.check(
        out.stderr.lines().any(|l| l == line),
        &format!("expected the stderr line {line:?}"),
        out,
    );
}

/// A token of ServiceAccount `ns/name` (created with its namespace if missing).
fn account_token(s: &Server, ns: &str, name: &str) -> String {
    let _ = s.kubectl(&["create", "namespace", ns]);
    let _ = s.kubectl(&["create", "serviceaccount", name, "-n", ns]);
    s.kubectl_ok(&["create", "token", name, "-n", ns])
        .trim()
        .to_string()
}

const SA: &str = "system:serviceaccount:a:app";

/// The issue's walkthrough, step by step, with one kubectl minor.
fn walkthrough(bin: &str) {
    let s = Server::start();
    s.kubectl_ok(&["create", "ns", "b"]);
    let t = account_token(&s, "a", "app");
    let k = |args: &[&str]| kubectl_as(&s, bin, "", args);
    let kt = |args: &[&str]| kubectl_as(&s, bin, &t, args);

    // Refused with the RBAC authorizer's message (responsewriters.forbiddenMessage).
    refused(
        &s,
        &kt(&["get", "cm", "-n", "a"]),
        &format!(
            "configmaps is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"a\""
        ),
    );
    ok(
        &s,
        k(&[
            "create",
            "role",
            "cm-reader",
            "--verb=get,list,watch",
            "--resource=configmaps",
            "-n",
            "a",
        ]),
    );
    ok(
        &s,
        k(&[
            "create",
            "rolebinding",
            "app-cm",
            "--role=cm-reader",
            "--serviceaccount=a:app",
            "-n",
            "a",
        ]),
    );
    let listed = ok(&s, kt(&["get", "cm", "-n", "a", "-o", "name"]));
    ensure(
        &s,
        listed.contains("configmap/kube-root-ca.crt"),
        "the granted list",
        &listed,
    );
    // Granted in a, not in b, not secrets.
    refused(
        &s,
        &kt(&["get", "cm", "-n", "b"]),
        &format!(
            "configmaps is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"b\""
        ),
    );
    refused(
        &s,
        &kt(&["get", "secret", "x", "-n", "a"]),
        &format!(
            "secrets \"x\" is forbidden: User \"{SA}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"a\""
        ),
    );

    let as_sa = format!("--as={SA}");
    let yes = k(&["auth", "can-i", "list", "configmaps", "-n", "a", &as_sa]);
    ensure(
        &s,
        yes.success() && yes.stdout.trim() == "yes",
        "can-i in a",
        &yes,
    );
    let no = k(&["auth", "can-i", "list", "configmaps", "-n", "b", &as_sa]);
    ensure(
        &s,
        !no.success() && no.stdout.trim() == "no",
        "can-i in b",
        &no,
    );
    let list = ok(&s, k(&["auth", "can-i", "--list", "-n", "a", &as_sa]));
    ensure(
        &s,
        list.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"configmaps") && l.contains("[get list watch]")
        }),
        "can-i --list names configmaps with their verbs",
        &list,
    );
    ensure(
        &s,
        list.lines()
            .any(|l| l.starts_with("selfsubjectreviews.authentication.k8s.io")),
        "can-i --list names what system:basic-user grants",
        &list,
    );
    let who = ok(&s, k(&["auth", "whoami", &as_sa, "-o", "json"]));
    let who: Value = serde_json::from_str(&who).unwrap_or(Value::Null);
    ensure(
        &s,
        who["status"]["userInfo"]
            == json!({"username": SA, "groups": ["system:serviceaccounts", "system:serviceaccounts:a", "system:authenticated"]}),
        "whoami --as a service account",
        &who,
    );
    // The token may not impersonate (WithImpersonation's 403).
    refused(
        &s,
        &kt(&["get", "secrets", "-n", "a", "--as=admin"]),
        &format!(
            "users \"admin\" is forbidden: User \"{SA}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
    );
    // Deleting the binding revokes at once: the very next request is refused.
    ok(&s, k(&["delete", "rolebinding", "app-cm", "-n", "a"]));
    refused(
        &s,
        &kt(&["get", "cm", "-n", "a"]),
        &format!(
            "configmaps is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"a\""
        ),
    );
}

#[test]
fn walkthrough_kubectl_132() {
    walkthrough(KUBECTL);
}

#[test]
fn walkthrough_kubectl_130() {
    walkthrough(KUBECTL_130);
}

/// Escalation prevention (`pkg/registry/rbac/*/policybased`): a manager of Roles in `a` may
/// not grant secrets it does not hold, until it may `escalate` (roles) or `bind` (bindings).
#[test]
fn escalation_needs_escalate_or_bind() {
    let s = Server::start();
    let t = account_token(&s, "a", "manager");
    let k = |args: &[&str]| kubectl_as(&s, KUBECTL, &t, args);
    // Not `--verb=*`: that would include `escalate` and `bind`.
    s.kubectl_ok(&[
        "create",
        "role",
        "manage-rbac",
        "-n",
        "a",
        "--verb=create,get,list,update,patch,delete",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
    ]);
    s.kubectl_ok(&[
        "create",
        "role",
        "read-cm",
        "-n",
        "a",
        "--verb=get,list",
        "--resource=configmaps",
    ]);
    for role in ["manage-rbac", "read-cm"] {
        s.kubectl_ok(&[
            "create",
            "rolebinding",
            role,
            "-n",
            "a",
            &format!("--role={role}"),
            "--serviceaccount=a:manager",
        ]);
    }
    // What it holds, it may grant.
    ok(
        &s,
        k(&[
            "create",
            "role",
            "cm",
            "-n",
            "a",
            "--verb=get",
            "--resource=configmaps",
        ]),
    );
    // What it does not, it may not (ConfirmNoEscalation's message).
    let groups =
        "[\"system:serviceaccounts\" \"system:serviceaccounts:a\" \"system:authenticated\"]";
    let out = k(&[
        "create",
        "role",
        "secrets",
        "-n",
        "a",
        "--verb=get,list",
        "--resource=secrets",
    ]);
    refused(
        &s,
        &out,
        &format!(
            "roles.rbac.authorization.k8s.io \"secrets\" is forbidden: user \"system:serviceaccount:a:manager\" (groups={groups}) is attempting to grant RBAC permissions not currently held:"
        ),
    );
    s.check(
        out.stderr
            .contains("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"),
        "the missing rule, compacted",
        &out,
    );
    // A binding to a role with rules it lacks: refused; to its own rules: allowed.
    s.kubectl_ok(&[
        "create",
        "role",
        "secrets",
        "-n",
        "a",
        "--verb=get",
        "--resource=secrets",
    ]);
    let out = k(&[
        "create",
        "rolebinding",
        "x",
        "-n",
        "a",
        "--role=secrets",
        "--user=x",
    ]);
    s.check(
        !out.success()
            && out
                .stderr
                .contains("rolebindings.rbac.authorization.k8s.io \"x\" is forbidden"),
        "bind refused",
        &out,
    );
    ok(
        &s,
        k(&[
            "create",
            "rolebinding",
            "y",
            "-n",
            "a",
            "--role=read-cm",
            "--user=x",
        ]),
    );
    // With `escalate` on roles, the role may be made; with `bind`, the binding.
    s.kubectl_ok(&[
        "create",
        "role",
        "escalator",
        "-n",
        "a",
        "--verb=escalate,bind",
        "--resource=roles.rbac.authorization.k8s.io",
    ]);
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "escalator",
        "-n",
        "a",
        "--role=escalator",
        "--serviceaccount=a:manager",
    ]);
    ok(
        &s,
        k(&[
            "create",
            "role",
            "secrets2",
            "-n",
            "a",
            "--verb=get,list",
            "--resource=secrets",
        ]),
    );
    ok(
        &s,
        k(&[
            "create",
            "rolebinding",
            "x",
            "-n",
            "a",
            "--role=secrets",
            "--user=x",
        ]),
    );
    // An update that adds a rule it lacks is refused too (after `escalate` is taken away).
    s.kubectl_ok(&["delete", "rolebinding", "escalator", "-n", "a"]);
    let out = k(&[
        "patch",
        "role",
        "cm",
        "-n",
        "a",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["pods"],"verbs":["delete"]}}]"#,
    ]);
    s.check(
        !out.success()
            && out
                .stderr
                .contains("is attempting to grant RBAC permissions not currently held"),
        "patch refused",
        &out,
    );
}

/// Impersonation as kube-apiserver authorizes it: `impersonate` on users, groups and
/// service accounts; the audit event names both users.
#[test]
fn impersonation_allowed_and_refused() {
    // The audit log must be on from the start (Server::path exists only once it runs).
    let audit_dir = support::or_die(tempfile::tempdir(), "make a temp dir");
    let audit = audit_dir.path().join("audit.log");
    let audit_arg = format!("--audit-log-path={}", audit.display());
    let s = Server::start_with(&[&audit_arg]);
    let t = account_token(&s, "a", "imp");
    let k = |args: &[&str]| kubectl_as(&s, KUBECTL, &t, args);
    s.kubectl_ok(&[
        "create",
        "clusterrole",
        "impersonate-jane",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=jane",
    ]);
    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "imp",
        "--clusterrole=impersonate-jane",
        "--serviceaccount=a:imp",
    ]);
    let who = ok(
        &s,
        k(&[
            "auth",
            "whoami",
            "--as=jane",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ]),
    );
    ensure(
        &s,
        who.trim() == "jane [\"system:authenticated\"]",
        "whoami as jane",
        &who,
    );
    // Another user, or a group, needs its own grant (`auth whoami` words a 403 its own way).
    refused(
        &s,
        &k(&["get", "cm", "-n", "a", "--as=john"]),
        "users \"john\" is forbidden: User \"system:serviceaccount:a:imp\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
    );
    refused(
        &s,
        &k(&["get", "cm", "-n", "a", "--as=jane", "--as-group=devs"]),
        "groups \"devs\" is forbidden: User \"system:serviceaccount:a:imp\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope",
    );
    // jane herself may do nothing but the basics.
    refused(
        &s,
        &k(&["get", "cm", "-n", "a", "--as=jane"]),
        "configmaps is forbidden: User \"jane\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"a\"",
    );
    // The admin (system:masters) may impersonate anybody.
    let who = s.kubectl_ok(&[
        "auth",
        "whoami",
        "--as=bob",
        "--as-group=devs",
        "-o",
        "jsonpath={.status.userInfo.groups}",
    ]);
    ensure(
        &s,
        who.trim() == "[\"devs\",\"system:authenticated\"]",
        "admin impersonates",
        &who,
    );
    // The audit event of an impersonated request records both users.
    let events: Vec<Value> = fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let jane = events
        .iter()
        .find(|e| e["impersonatedUser"]["username"] == "jane");
    ensure(
        &s,
        jane.is_some_and(|e| e["user"]["username"] == "system:serviceaccount:a:imp"),
        "an audit event with user and impersonatedUser",
        format!("{} events", events.len()),
    );
}

/// `POST path` of a review body with the admin token (or `token`); the status and JSON.
fn post(s: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let token_file = if token.is_empty() {
        s.data_dir().join("admin.token")
    } else {
        let f = s.path("review-token");
        support::or_die(fs::write(&f, token), "write the token file");
        f
    };
    let headers = [("Content-Type", "application/json")];
    let body = body.to_string();
    let reply = s.https_as(
        false,
        Some(&token_file),
        "POST",
        path,
        &headers,
        Some(body.as_bytes()),
    );
    (reply.status, reply.json())
}

/// Every review kind (`pkg/registry/authorization/*`), with kube-apiserver's validation.
#[test]
fn access_reviews_of_every_kind() {
    let s = Server::start();
    s.kubectl_ok(&["create", "ns", "a"]);
    s.kubectl_ok(&[
        "create",
        "role",
        "cm-reader",
        "-n",
        "a",
        "--verb=get,list",
        "--resource=configmaps",
    ]);
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "devs",
        "-n",
        "a",
        "--role=cm-reader",
        "--group=devs",
    ]);
    let sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let review = |spec: Value| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
    let (code, body) = post(
        &s,
        "",
        sar,
        &review(json!({"user": "u", "groups": ["devs"],
        "resourceAttributes": {"namespace": "a", "verb": "list", "resource": "configmaps"}})),
    );
    ensure(
        &s,
        code == 201
            && body["status"]
                == json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"devs/a\" of Role \"cm-reader\" to Group \"devs\""}),
        "SubjectAccessReview allowed",
        &body,
    );
    let (_, body) = post(
        &s,
        "",
        sar,
        &review(json!({"user": "u",
        "resourceAttributes": {"namespace": "a", "verb": "list", "resource": "configmaps"}})),
    );
    ensure(
        &s,
        body["status"] == json!({"allowed": false}),
        "SubjectAccessReview denied",
        &body,
    );
    let (code, body) = post(
        &s,
        "",
        sar,
        &review(json!({"resourceAttributes": {"verb": "get"}})),
    );
    ensure(
        &s,
        code == 422
            && body["message"]
                == "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified",
        "SubjectAccessReview without a subject",
        &body,
    );
    // LocalSubjectAccessReview: its namespace, and only resource attributes.
    let lsar = "/apis/authorization.k8s.io/v1/namespaces/a/localsubjectaccessreviews";
    let local = |spec: Value| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview", "spec": spec});
    let (code, body) = post(
        &s,
        "",
        lsar,
        &local(json!({"groups": ["devs"],
        "resourceAttributes": {"namespace": "a", "verb": "get", "resource": "configmaps"}})),
    );
    ensure(
        &s,
        code == 201 && body["status"]["allowed"] == true && body["metadata"]["namespace"] == "a",
        "LocalSubjectAccessReview",
        &body,
    );
    let (code, body) = post(
        &s,
        "",
        lsar,
        &local(json!({"groups": ["devs"],
        "resourceAttributes": {"namespace": "b", "verb": "get", "resource": "configmaps"}})),
    );
    ensure(
        &s,
        code == 422 && body["message"].as_str().is_some_and(|m| m.ends_with("spec.resourceAttributes.namespace: Invalid value: \"b\": must match metadata.namespace")),
        "LocalSubjectAccessReview in another namespace",
        &body,
    );
    // SelfSubjectRulesReview: what the caller holds in a namespace.
    let t = account_token(&s, "a", "app");
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "app",
        "-n",
        "a",
        "--role=cm-reader",
        "--serviceaccount=a:app",
    ]);
    let ssrr = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
    let (code, body) = post(
        &s,
        &t,
        ssrr,
        &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "a"}}),
    );
    let rules = body["status"]["resourceRules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure(
        &s,
        code == 201
            && body["status"]["incomplete"] == false
            && rules.contains(
                &json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}),
            ),
        "SelfSubjectRulesReview",
        &body,
    );
    let (code, body) = post(
        &s,
        &t,
        ssrr,
        &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {}}),
    );
    ensure(
        &s,
        code == 400 && body["message"] == "no namespace on request",
        "SelfSubjectRulesReview without a namespace",
        &body,
    );
    // SubjectAccessReview takes `create` on it: the service account may not, until bound to
    // system:auth-delegator.
    let (code, _) = post(
        &s,
        &t,
        sar,
        &review(json!({"user": "u", "nonResourceAttributes": {"path": "/x", "verb": "get"}})),
    );
    ensure(
        &s,
        code == 403,
        "SubjectAccessReview by a service account",
        code,
    );
    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "delegate",
        "--clusterrole=system:auth-delegator",
        "--serviceaccount=a:app",
    ]);
    let (code, body) = post(
        &s,
        &t,
        sar,
        &review(json!({"user": "u", "nonResourceAttributes": {"path": "/healthz", "verb": "get"}})),
    );
    ensure(
        &s,
        code == 201 && body["status"]["allowed"] == false,
        "SubjectAccessReview by a delegator (u is not authenticated: no public-info grant)",
        &body,
    );
    let (_, body) = post(
        &s,
        &t,
        sar,
        &review(
            json!({"user": "u", "groups": ["system:authenticated"], "nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
        ),
    );
    ensure(
        &s,
        body["status"]["allowed"] == true,
        "SubjectAccessReview of a bootstrap grant",
        &body,
    );
}

/// The bootstrap policy (`rbac/bootstrap-roles`): there at start, kept across restarts,
/// repaired after an edit unless `autoupdate` is false.
#[test]
fn bootstrap_policy_survives_restarts_and_is_repaired() {
    let mut s = Server::start();
    let roles = s.kubectl_ok(&["get", "clusterroles", "-o", "name"]);
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:service-account-issuer-discovery",
        "system:auth-delegator",
    ] {
        ensure(
            &s,
            roles
                .lines()
                .any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{r}")),
            r,
            &roles,
        );
    }
    // The aggregation controller fills view (and edit and admin through it).
    let view = s.kubectl_ok(&["get", "clusterrole", "view", "-o", "json"]);
    ensure(
        &s,
        view.contains("\"configmaps\""),
        "view aggregates system:aggregate-to-view",
        &view,
    );
    // Strip selfsubjectreviews from system:basic-user and drop a subject of a default binding.
    s.kubectl_ok(&["patch", "clusterrole", "system:basic-user", "--type=json",
        "-p", r#"[{"op":"replace","path":"/rules","value":[{"apiGroups":["authorization.k8s.io"],"resources":["selfsubjectaccessreviews"],"verbs":["create"]}]}]"#]);
    s.kubectl_ok(&[
        "patch",
        "clusterrolebinding",
        "system:public-info-viewer",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/subjects/1"}]"#,
    ]);
    // Protect one role from repair.
    s.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:auth-delegator",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]);
    s.kubectl_ok(&[
        "patch",
        "clusterrole",
        "system:auth-delegator",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/rules/1"}]"#,
    ]);
    let t = account_token(&s, "a", "app");
    let out = kubectl_as(&s, KUBECTL, &t, &["auth", "whoami"]);
    ensure(
        &s,
        !out.success(),
        "whoami refused once its grant is gone",
        &out,
    );
    s.restart();
    let out = kubectl_as(&s, KUBECTL, &t, &["auth", "whoami"]);
    ensure(
        &s,
        out.success() && out.stdout.contains(SA),
        "whoami allowed again after the restart",
        &out,
    );
    let binding = s.kubectl_ok(&[
        "get",
        "clusterrolebinding",
        "system:public-info-viewer",
        "-o",
        "jsonpath={.subjects[*].name}",
    ]);
    ensure(
        &s,
        binding.contains("system:unauthenticated"),
        "the subject is back",
        &binding,
    );
    let kept = s.kubectl_ok(&[
        "get",
        "clusterrole",
        "system:auth-delegator",
        "-o",
        "jsonpath={.rules[*].resources}",
    ]);
    ensure(
        &s,
        !kept.contains("subjectaccessreviews"),
        "autoupdate=false is left alone",
        &kept,
    );
    // A role made by a user survives restarts as it is.
    s.kubectl_ok(&[
        "create",
        "clusterrole",
        "mine",
        "--verb=get",
        "--resource=pods",
    ]);
    s.restart();
    let mine = s.kubectl_ok(&[
        "get",
        "clusterrole",
        "mine",
        "-o",
        "jsonpath={.rules[0].verbs}",
    ]);
    ensure(
        &s,
        mine.trim() == "[\"get\"]",
        "a user's role after a restart",
        &mine,
    );
}

/// The real Python client, in-cluster with a token granted `list configmaps`: the list
/// works, `list secrets` is a 403.
#[test]
fn python_client_in_cluster_granted_and_refused() {
    let s = Server::start();
    let t = account_token(&s, "a", "app");
    s.kubectl_ok(&[
        "create",
        "role",
        "cm-reader",
        "-n",
        "a",
        "--verb=list",
        "--resource=configmaps",
    ]);
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "app-cm",
        "-n",
        "a",
        "--role=cm-reader",
        "--serviceaccount=a:app",
    ]);
    let dir = s.path("serviceaccount");
    support::or_die(fs::create_dir_all(&dir), "make the token dir");
    support::or_die(fs::write(dir.join("token"), &t), "write the token");
    support::or_die(
        fs::copy(s.data_dir().join("ca.crt"), dir.join("ca.crt")),
        "copy the CA",
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/py_rbac.py");
    let mut cmd = Command::new(python("py-latest"));
    cmd.arg(script)
        .arg(&dir)
        .arg("a")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", s.port().to_string());
    let out = s.run(cmd, None);
    s.check(out.success(), "the Python client ran", &out);
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure(
        &s,
        lines == ["configmaps ok 1", "secrets status 403 Forbidden"],
        "granted and refused",
        &out.stdout,
    );
}

/// `--authorization-mode=AlwaysAllow` (tests only): a token with no binding reads secrets;
/// escalation checks are off with it, as every `escalate` and `bind` is allowed.
#[test]
fn always_allow_mode_allows_everything() {
    let s = Server::start_with(&["--authorization-mode=AlwaysAllow"]);
    let t = account_token(&s, "a", "app");
    let secrets = kubectl_as(&s, KUBECTL, &t, &["get", "secrets", "-n", "a"]);
    ensure(
        &s,
        secrets.success(),
        "a service account lists secrets",
        &secrets,
    );
    let role = kubectl_as(
        &s,
        KUBECTL,
        &t,
        &[
            "create",
            "role",
            "all",
            "-n",
            "a",
            "--verb=*",
            "--resource=*",
        ],
    );
    ensure(
        &s,
        role.success(),
        "and makes a role granting everything",
        &role,
    );
    ensure(
        &s,
        s.log().contains("--authorization-mode=AlwaysAllow"),
        "a warning in the log",
        "",
    );
}
