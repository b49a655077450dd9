//! Black-box tests of the `rbac.authorization.k8s.io/v1` API (issue 11): Roles,
//! ClusterRoles and their bindings created by kubectl 1.32 (protobuf bodies) and 1.30 (JSON
//! bodies), listed with kube-apiserver 1.32's columns, described, validated with
//! Kubernetes' texts (pkg/apis/rbac/validation), a binding's roleRef refused to change, and
//! ClusterRole aggregation by the controller, including an edit of a source role.
//!
//! Must not: check authorization (an admin does everything here; who may do what is the
//! authorizer's test), sleep instead of polling, or assume an age.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{KUBECTL_130, Output, Server, assert_stdout, ensure, has_line, poll};

/// The columns of a table line, split on runs of spaces (no cell here has a space).
fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The header and the data lines of a `kubectl get`.
fn table(s: &Server, out: &Output) -> (Vec<String>, Vec<Vec<String>>) {
    s.check(out.success(), "kubectl get failed", out);
    let mut lines = out.stdout.lines();
    let header = columns(lines.next().unwrap_or_default())
        .into_iter()
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| columns(l).into_iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

#[track_caller]
fn assert_fails_with(s: &Server, out: &Output, expected: &str) {
    let ok = !out.success() && out.stderr.trim_end() == expected.trim_end();
    s.check(
        ok,
        &format!("expected failure and exactly stderr {expected:?}"),
        out,
    );
}

fn json(s: &Server, args: &[&str]) -> Result<Value, String> {
    let out = s.kubectl(args);
    if !out.success() {
        return Err(out.to_string());
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("not JSON: {e}\n{out}"))
}

#[test]
fn r11_roles_and_bindings_through_kubectl() {
    let s = Server::start();
    s.kubectl_ok(&["create", "namespace", "a"]);

    // kubectl 1.32's typed client sends these as protobuf.
    let created = [
        (
            vec![
                "create",
                "role",
                "cm-reader",
                "--verb=get,list,watch",
                "--resource=configmaps",
                "-n",
                "a",
            ],
            "role.rbac.authorization.k8s.io/cm-reader created\n",
        ),
        (
            vec![
                "create",
                "clusterrole",
                "pod-reader",
                "--verb=get",
                "--resource=pods",
            ],
            "clusterrole.rbac.authorization.k8s.io/pod-reader created\n",
        ),
        (
            vec![
                "create",
                "rolebinding",
                "read-cm",
                "--role=cm-reader",
                "--serviceaccount=a:app",
                "-n",
                "a",
            ],
            "rolebinding.rbac.authorization.k8s.io/read-cm created\n",
        ),
        (
            vec![
                "create",
                "clusterrolebinding",
                "read-pods",
                "--clusterrole=pod-reader",
                "--user=alice",
                "--group=devs",
                "--serviceaccount=a:app",
            ],
            "clusterrolebinding.rbac.authorization.k8s.io/read-pods created\n",
        ),
    ];
    for (args, expected) in &created {
        assert_stdout(&s, &s.kubectl(args), expected);
    }

    // What was stored: defaults filled (subjects' apiGroup, roleRef's group).
    let rb = poll(&s, "the rolebinding", Duration::from_secs(5), || {
        json(
            &s,
            &["get", "rolebinding", "read-cm", "-n", "a", "-o", "json"],
        )
    });
    ensure(
        &s,
        rb["roleRef"]
            == serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"})
            && rb["subjects"]
                == serde_json::json!([{"kind": "ServiceAccount", "name": "app", "namespace": "a"}]),
        "the rolebinding as kubectl create made it",
        &rb,
    );
    let crb = json(
        &s,
        &["get", "clusterrolebinding", "read-pods", "-o", "json"],
    )
    .unwrap_or_else(|e| s.fail(e));
    ensure(
        &s,
        crb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
            && crb["subjects"][1]
                == serde_json::json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}),
        "User and Group subjects carry the RBAC group",
        &crb,
    );

    // Roles print Name and Created At (an RFC 3339 time, not an age).
    let (header, rows) = table(&s, &s.kubectl(&["get", "roles", "-n", "a"]));
    assert_eq!(header, ["NAME", "CREATED", "AT"], "{rows:?}");
    ensure(
        &s,
        rows.len() == 1 && rows[0][0] == "cm-reader" && rows[0][1].ends_with('Z'),
        "one role with its creation time",
        format!("{rows:?}"),
    );
    let (header, rows) = table(&s, &s.kubectl(&["get", "clusterrole", "pod-reader"]));
    assert_eq!(header, ["NAME", "CREATED", "AT"]);
    assert_eq!(rows[0][0], "pod-reader");

    // Bindings: Name, Role, Age; wide adds Users, Groups, ServiceAccounts.
    let (header, rows) = table(&s, &s.kubectl(&["get", "rolebinding", "-n", "a"]));
    assert_eq!(header, ["NAME", "ROLE", "AGE"]);
    assert_eq!(rows[0][..2], ["read-cm", "Role/cm-reader"]);
    let out = s.kubectl(&["get", "clusterrolebinding", "read-pods", "-o", "wide"]);
    let (header, rows) = table(&s, &out);
    assert_eq!(
        header,
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    );
    ensure(
        &s,
        rows[0][..2] == ["read-pods", "ClusterRole/pod-reader"]
            && rows[0][3..] == ["alice", "devs", "a/app"],
        "the wide clusterrolebinding row",
        &out.stdout,
    );

    // kubectl 1.30 sends JSON bodies and reads the same tables.
    let out = s.kubectl_at_ok(
        KUBECTL_130,
        &[
            "create",
            "rolebinding",
            "view-a",
            "--clusterrole=pod-reader",
            "--user=bob",
            "-n",
            "a",
        ],
    );
    assert_eq!(
        out,
        "rolebinding.rbac.authorization.k8s.io/view-a created\n"
    );
    let out = s.kubectl_at_ok(
        KUBECTL_130,
        &["get", "rolebinding", "view-a", "-n", "a", "-o", "wide"],
    );
    let rows: Vec<Vec<&str>> = out.lines().map(columns).collect();
    ensure(
        &s,
        rows.len() == 2
            && rows[1][..2] == ["view-a", "ClusterRole/pod-reader"]
            && rows[1][3] == "bob",
        "kubectl 1.30's wide rolebinding row (empty cells print as nothing)",
        &out,
    );

    // The OpenAPI v3 document of the group describes the kinds (kubectl explain reads it).
    let out = s.kubectl_ok(&[
        "explain",
        "clusterrole.aggregationRule.clusterRoleSelectors",
    ]);
    ensure(
        &s,
        has_line(&out, "GROUP:      rbac.authorization.k8s.io")
            && has_line(&out, "KIND:       ClusterRole"),
        "kubectl explain finds the ClusterRole schema",
        &out,
    );

    // describe reads the objects and prints the rules and subjects.
    let out = s.kubectl_ok(&["describe", "role", "cm-reader", "-n", "a"]);
    ensure(
        &s,
        has_line(&out, "PolicyRule:")
            && out
                .lines()
                .any(|l| columns(l) == ["configmaps", "[]", "[]", "[get", "list", "watch]"]),
        "describe role shows the rule",
        &out,
    );
    let out = s.kubectl_ok(&["describe", "clusterrole", "pod-reader"]);
    ensure(
        &s,
        out.lines()
            .any(|l| columns(l) == ["pods", "[]", "[]", "[get]"]),
        "describe clusterrole shows the rule",
        &out,
    );
    let out = s.kubectl_ok(&["describe", "rolebinding", "read-cm", "-n", "a"]);
    ensure(
        &s,
        has_line(&out, "Role:")
            && has_line(&out, "  Kind:  Role")
            && has_line(&out, "  Name:  cm-reader")
            && out
                .lines()
                .any(|l| columns(l) == ["ServiceAccount", "app", "a"]),
        "describe rolebinding shows the role and the subject",
        &out,
    );
    let out = s.kubectl_ok(&["describe", "clusterrolebinding", "read-pods"]);
    ensure(
        &s,
        out.lines().any(|l| columns(l) == ["User", "alice"])
            && out.lines().any(|l| columns(l) == ["Group", "devs"]),
        "describe clusterrolebinding shows the subjects",
        &out,
    );

    // A binding's roleRef never changes; its subjects may.
    let patch = |body: &str| {
        let args = [
            "patch",
            "rolebinding",
            "read-cm",
            "-n",
            "a",
            "--type=merge",
            "-p",
            body,
        ];
        s.kubectl(&args)
    };
    assert_fails_with(
        &s,
        &patch(r#"{"roleRef":{"name":"other"}}"#),
        r#"The RoleBinding "read-cm" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"other"}: cannot change roleRef"#,
    );
    let out = patch(r#"{"subjects":[{"kind":"User","name":"carol"}]}"#);
    assert_stdout(
        &s,
        &out,
        "rolebinding.rbac.authorization.k8s.io/read-cm patched\n",
    );

    // Validation, with Kubernetes' texts.
    let bad_role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: bad\n  \
                    namespace: a\nrules:\n- verbs: [get]\n  nonResourceURLs: [/healthz]\n";
    let out = s.kubectl(&["apply", "-f", &s.write_file("bad-role.yaml", bad_role)]);
    assert_fails_with(
        &s,
        &out,
        r#"The Role "bad" is invalid: rules[0].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot apply to non-resource URLs"#,
    );
    let bad_crb = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  \
                   name: bad\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  \
                   name: cm-reader\nsubjects:\n- kind: ServiceAccount\n  name: app\n";
    let out = s.kubectl(&["apply", "-f", &s.write_file("bad-crb.yaml", bad_crb)]);
    assert_fails_with(
        &s,
        &out,
        "The ClusterRoleBinding \"bad\" is invalid: \n\
         * roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"\n\
         * subjects[0].namespace: Required value\n",
    );
}

const AGGREGATION: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring
aggregationRule:
  clusterRoleSelectors:
  - matchLabels:
      rbac.example.com/aggregate-to-monitoring: \"true\"
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring-endpoints
  labels:
    rbac.example.com/aggregate-to-monitoring: \"true\"
rules:
- apiGroups: [\"\"]
  resources: [services, endpoints, pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring-metrics
  labels:
    rbac.example.com/aggregate-to-monitoring: \"true\"
rules:
- nonResourceURLs: [/metrics]
  verbs: [get]
";

/// The rules of a ClusterRole once they are `want`.
#[track_caller]
fn await_rules(s: &Server, name: &str, want: Value) {
    poll(s, "the aggregated rules", Duration::from_secs(10), || {
        let role = json(s, &["get", "clusterrole", name, "-o", "json"])?;
        if role["rules"] == want {
            Ok(())
        } else {
            Err(role["rules"].to_string())
        }
    });
}

#[test]
fn r11_cluster_roles_aggregate() {
    let s = Server::start();
    let path = s.write_file("aggregation.yaml", AGGREGATION);
    assert_stdout(
        &s,
        &s.kubectl(&["apply", "-f", &path]),
        "clusterrole.rbac.authorization.k8s.io/monitoring created\n\
         clusterrole.rbac.authorization.k8s.io/monitoring-endpoints created\n\
         clusterrole.rbac.authorization.k8s.io/monitoring-metrics created\n",
    );
    let endpoints = serde_json::json!({"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": ["get", "list"]});
    let metrics = serde_json::json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]});
    await_rules(
        &s,
        "monitoring",
        serde_json::json!([endpoints.clone(), metrics]),
    );

    // An edit of a source role reaches the aggregate; a role that stops matching leaves it.
    s.kubectl_ok(&[
        "patch",
        "clusterrole",
        "monitoring-endpoints",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/0/verbs/-","value":"watch"}]"#,
    ]);
    let mut watched = endpoints;
    watched["verbs"] = serde_json::json!(["get", "list", "watch"]);
    s.kubectl_ok(&[
        "label",
        "clusterrole",
        "monitoring-metrics",
        "rbac.example.com/aggregate-to-monitoring-",
    ]);
    await_rules(&s, "monitoring", serde_json::json!([watched.clone()]));

    // kubectl 1.32 sends an aggregation rule (a LabelSelector inside) as protobuf.
    let out = s.kubectl(&[
        "create",
        "clusterrole",
        "all-monitoring",
        "--aggregation-rule=rbac.example.com/aggregate-to-monitoring=true",
    ]);
    assert_stdout(
        &s,
        &out,
        "clusterrole.rbac.authorization.k8s.io/all-monitoring created\n",
    );
    await_rules(&s, "all-monitoring", serde_json::json!([watched]));
    let out = s.kubectl_ok(&["describe", "clusterrole", "all-monitoring"]);
    ensure(
        &s,
        out.lines()
            .any(|l| columns(l) == ["endpoints", "[]", "[]", "[get", "list", "watch]"]),
        "describe shows the aggregated rules",
        &out,
    );

    // An aggregation rule needs a selector.
    let empty = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  \
                 name: empty\naggregationRule:\n  clusterRoleSelectors: []\n";
    let out = s.kubectl(&["apply", "-f", &s.write_file("empty.yaml", empty)]);
    assert_fails_with(
        &s,
        &out,
        "The ClusterRole \"empty\" is invalid: aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil",
    );
}
