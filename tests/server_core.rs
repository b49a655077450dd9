//! Black-box tests of the server core (issue 2): the real binary, driven by the real kubectl 1.32
//! and by Google Cloud SDK's dispatcher. Expected outputs come from shared/reference/
//! (kube-1.32-observed.md, kubectl-wire.md), seed 002 and kubectl's source; where none of them
//! gives the exact text, a stable part is asserted and a comment says so.
//! Must not: assume a `default` ServiceAccount (a later controller adds it), assume that a
//! namespace holds only what the test put there (`kube-root-ca.crt` will appear), or sleep.

mod support;

use support::{assert_stderr_line, assert_stdout, has_line};

use support::{Output, Server, Streaming, anonymous_get};

/// The columns of a printed line (kubectl pads them with runs of spaces).
fn cols(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The columns of the first table row whose first column is `name`.
fn row<'a>(table: &'a str, name: &str) -> Option<Vec<&'a str>> {
    table.lines().map(cols).find(|c| c.first() == Some(&name))
}

/// An AGE cell: `0s`, `5m31s`, `2d3h` (apimachinery's duration.HumanDuration).
fn is_age(cell: &str) -> bool {
    cell.starts_with(|c: char| c.is_ascii_digit()) && cell.ends_with(['s', 'm', 'h', 'd', 'y'])
}

/// An RFC 3339 UTC timestamp with seconds precision, as in `creationTimestamp`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z'
}

#[track_caller]
fn assert_stderr_line_starts(s: &Server, out: &Output, prefix: &str) {
    let ok = out.stderr.lines().any(|l| l.starts_with(prefix));
    s.check(
        ok,
        &format!("expected a stderr line starting {prefix:?}"),
        out,
    );
}

#[track_caller]
fn json(s: &Server, out: &Output) -> serde_json::Value {
    s.check(out.success(), "command failed", out);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| s.fail(format!("stdout is not JSON: {e}\n{out}")))
}

/// `kubectl get KIND/NAME -o jsonpath=TEMPLATE`, which prints no trailing newline.
#[track_caller]
fn jsonpath(s: &Server, object: &str, template: &str) -> Output {
    s.kubectl(&["get", object, "-o", &format!("jsonpath={template}")])
}

#[track_caller]
fn resource_version(s: &Server, object: &str) -> String {
    let out = jsonpath(s, object, "{.metadata.resourceVersion}");
    s.check(
        out.success() && !out.stdout.is_empty(),
        "no resourceVersion",
        &out,
    );
    out.stdout
}

/// `-o name` output as sorted lines.
fn names(stdout: &str) -> Vec<&str> {
    let mut names: Vec<&str> = stdout.lines().collect();
    names.sort_unstable();
    names
}

// kube-1.32-observed.md, "describe sa" (the same as seed 002's "After kubernetes 1.24" block).
const DESCRIBE_EXAMPLE_SA: &str = concat!(
    "Name:                example-sa\n",
    "Namespace:           default\n",
    "Labels:              <none>\n",
    "Annotations:         <none>\n",
    "Image pull secrets:  <none>\n",
    "Mountable secrets:   <none>\n",
    "Tokens:              <none>\n",
    "Events:              <none>\n",
);

// Seed 002's legacy token Secret.
const TOKEN_SECRET: &str = "apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: example-sa-token
  annotations:
    kubernetes.io/service-account.name: \"example-sa\"
";

// Seed 002's pod, without `serviceAccountName` (no `default` ServiceAccount exists yet).
const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: example
spec:
  containers:
  - name: example
    image: nginx
    ports:
    - containerPort: 80
";

fn opaque_secret(team: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\ntype: Opaque\nmetadata:\n  name: app-secret\n  labels:\n    \
         team: {team}\ndata:\n  password: aHVudGVyMg==\n"
    )
}

#[test]
fn version_is_1_32_for_kubectl_and_the_dispatcher() {
    let s = Server::start();
    for out in [s.kubectl(&["version"]), s.kubectl_dispatcher(&["version"])] {
        s.check(out.success(), "kubectl version failed", &out);
        let has = |prefix: &str| out.stdout.lines().any(|l| l.starts_with(prefix));
        s.check(
            has("Server Version: v1.32."),
            "no `Server Version: v1.32.` line",
            &out,
        );
        s.check(
            has("Client Version: v1.32."),
            "the client is not kubectl 1.32",
            &out,
        );
        // kubectl-wire.md §3.1: a skew of more than one minor adds a WARNING line.
        s.check(
            !out.stderr.contains("WARNING"),
            "unexpected version skew warning",
            &out,
        );
    }
    // kubectl-wire.md §0: `minor: "32"` makes the dispatcher run its built-in v1.32.4 (another
    // minor would exec kubectl.1.NN, whose client version differs).
    let out = s.kubectl_dispatcher(&["version"]);
    let ok = has_line(&out.stdout, "Client Version: v1.32.4-dispatcher");
    s.check(ok, "the dispatcher did not pick its built-in 1.32", &out);
    let out = s.kubectl(&["version", "-o", "json"]);
    let server = &json(&s, &out)["serverVersion"];
    let git = server["gitVersion"].as_str().unwrap_or_default();
    let ok = server["major"] == "1" && server["minor"] == "32" && git.starts_with("v1.32.");
    s.check(
        ok,
        "serverVersion must be major 1, minor 32, gitVersion v1.32.*",
        &out,
    );
}

#[test]
fn api_resources_and_api_versions_list_the_core_kinds() {
    let s = Server::start();
    let out = s.kubectl(&["api-resources"]);
    s.check(out.success(), "api-resources failed", &out);
    let header = out.stdout.lines().next().map(cols).unwrap_or_default();
    let ok = header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"];
    s.check(ok, "unexpected api-resources header", &out);
    for expected in [
        "serviceaccounts sa v1 true ServiceAccount",
        "namespaces ns v1 false Namespace",
        "configmaps cm v1 true ConfigMap",
        "secrets v1 true Secret", // no short name: the SHORTNAMES cell is blank
        "pods po v1 true Pod",
        "nodes no v1 false Node",
        "events ev v1 true Event",
    ] {
        let ok = out.stdout.lines().any(|l| cols(l) == cols(expected));
        s.check(ok, &format!("no api-resources row `{expected}`"), &out);
    }
    let out = s.kubectl(&["api-versions"]);
    for group_version in ["v1", "authentication.k8s.io/v1"] {
        let ok = out.success() && has_line(&out.stdout, group_version);
        s.check(ok, &format!("api-versions lacks {group_version}"), &out);
    }
}

#[test]
fn seed_walkthrough_create_and_describe_a_service_account() {
    let s = Server::start();
    let out = s.kubectl_dispatcher(&["create", "sa", "example-sa"]);
    assert_stdout(&s, &out, "serviceaccount/example-sa created\n");
    assert_stdout(
        &s,
        &s.kubectl_dispatcher(&["describe", "sa", "example-sa"]),
        DESCRIBE_EXAMPLE_SA,
    );
    assert_stdout(
        &s,
        &s.kubectl(&["describe", "sa", "example-sa"]),
        DESCRIBE_EXAMPLE_SA,
    );
    // kubectl-wire.md §3.3: `create sa` wraps the AlreadyExists message itself.
    let out = s.kubectl_dispatcher(&["create", "sa", "example-sa"]);
    s.check(!out.success(), "a second create must fail", &out);
    let expected =
        r#"error: failed to create serviceaccount: serviceaccounts "example-sa" already exists"#;
    assert_stderr_line(&s, &out, expected);
}

#[test]
fn get_service_account_as_table_yaml_json_and_jsonpath() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    for args in [&["get", "sa", "example-sa"][..], &["get", "sa"][..]] {
        let out = s.kubectl(args);
        let header = out.stdout.lines().next().map(cols).unwrap_or_default();
        let row = row(&out.stdout, "example-sa").unwrap_or_default();
        // kube-1.32-observed.md: SECRETS is 0 for every SA since 1.24.
        let ok = out.success()
            && header == ["NAME", "SECRETS", "AGE"]
            && row.len() == 3
            && row[..2] == ["example-sa", "0"]
            && is_age(row[2]);
        s.check(
            ok,
            "expected `NAME SECRETS AGE` and `example-sa 0 <age>`",
            &out,
        );
    }
    // kube-1.32-observed.md, `get sa example-sa -o yaml`: exactly these eight lines.
    let out = s.kubectl(&["get", "sa", "example-sa", "-o", "yaml"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let ok = out.success()
        && lines.len() == 8
        && lines[..3] == ["apiVersion: v1", "kind: ServiceAccount", "metadata:"]
        && lines[3].starts_with("  creationTimestamp: \"")
        && lines[4..6] == ["  name: example-sa", "  namespace: default"]
        && lines[6].starts_with("  resourceVersion: \"")
        && lines[7].starts_with("  uid: ");
    s.check(ok, "`-o yaml` differs from the observed shape", &out);
    let out = s.kubectl(&["get", "sa", "example-sa", "-o", "json"]);
    let v = json(&s, &out);
    let meta = &v["metadata"];
    let text = |key: &str| meta[key].as_str().unwrap_or_default().to_owned();
    let ok = v["apiVersion"] == "v1"
        && v["kind"] == "ServiceAccount"
        && meta["name"] == "example-sa"
        && meta["namespace"] == "default"
        && text("uid").len() == 36
        && lines[7] == format!("  uid: {}", text("uid"))
        && !text("resourceVersion").is_empty()
        && is_timestamp(&text("creationTimestamp"));
    s.check(
        ok,
        "`-o json` lacks or disagrees on apiVersion/kind/metadata",
        &out,
    );
    let name_only = ["get", "sa", "example-sa", "-o", "jsonpath={.metadata.name}"];
    assert_stdout(&s, &s.kubectl(&name_only), "example-sa");
    let out = s.kubectl(&["get", "sa", "example-sa", "-o", "name"]);
    assert_stdout(&s, &out, "serviceaccount/example-sa\n");
}

#[test]
fn apply_creates_configures_leaves_unchanged_and_applies_server_side() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let token = s.write_file("token-secret.yaml", TOKEN_SECRET);
    assert_stdout(
        &s,
        &s.kubectl(&["apply", "-f", &token]),
        "secret/example-sa-token created\n",
    );
    assert_stdout(
        &s,
        &s.kubectl(&["apply", "-f", &token]),
        "secret/example-sa-token unchanged\n",
    );
    let out = jsonpath(&s, "secret/example-sa-token", "{.type}");
    assert_stdout(&s, &out, "kubernetes.io/service-account-token");

    let blue = s.write_file("secret-blue.yaml", &opaque_secret("blue"));
    let green = s.write_file("secret-green.yaml", &opaque_secret("green"));
    assert_stdout(
        &s,
        &s.kubectl(&["apply", "-f", &blue]),
        "secret/app-secret created\n",
    );
    assert_stdout(
        &s,
        &s.kubectl(&["apply", "-f", &green]),
        "secret/app-secret configured\n",
    );
    assert_stdout(
        &s,
        &s.kubectl(&["apply", "-f", &green]),
        "secret/app-secret unchanged\n",
    );
    let out = jsonpath(&s, "secret/app-secret", "{.metadata.labels.team}");
    assert_stdout(&s, &out, "green");
    let out = jsonpath(&s, "secret/app-secret", "{.data.password}");
    assert_stdout(&s, &out, "aHVudGVyMg==");

    // kubectl-wire.md §3.7: one apply PATCH that creates when absent and merges when present.
    let out = s.kubectl(&["apply", "--server-side", "-f", &green]);
    assert_stdout(&s, &out, "secret/app-secret serverside-applied\n");
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-cm\ndata:\n  mode: ssa\n";
    let cm = s.write_file("ssa-cm.yaml", manifest);
    for _ in 0..2 {
        let out = s.kubectl(&["apply", "--server-side", "-f", &cm]);
        assert_stdout(&s, &out, "configmap/ssa-cm serverside-applied\n");
    }
    let out = jsonpath(&s, "cm/ssa-cm", "{.data.mode}");
    assert_stdout(&s, &out, "ssa");
}

#[test]
fn label_annotate_and_patch_of_every_type() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let sa = |verb: &str, rest: &[&str]| {
        let mut args = vec![verb, "sa", "example-sa"];
        args.extend_from_slice(rest);
        s.kubectl(&args)
    };
    assert_stdout(
        &s,
        &sa("label", &["team=blue"]),
        "serviceaccount/example-sa labeled\n",
    );
    assert_stdout(
        &s,
        &sa("annotate", &["note=hello"]),
        "serviceaccount/example-sa annotated\n",
    );
    let patched = "serviceaccount/example-sa patched\n";
    let strategic = r#"{"metadata":{"labels":{"env":"dev"}}}"#;
    assert_stdout(&s, &sa("patch", &["-p", strategic]), patched);
    let merge = r#"{"automountServiceAccountToken":false}"#;
    assert_stdout(&s, &sa("patch", &["--type=merge", "-p", merge]), patched);
    let json_patch = r#"[{"op":"add","path":"/metadata/labels/via","value":"json"}]"#;
    assert_stdout(
        &s,
        &sa("patch", &["--type=json", "-p", json_patch]),
        patched,
    );

    // kubectl-wire.md §3.11: an identical answer prints `(no change)`; the RV must not move.
    let rv = resource_version(&s, "sa/example-sa");
    let no_change = "serviceaccount/example-sa patched (no change)\n";
    assert_stdout(&s, &sa("patch", &["--type=merge", "-p", merge]), no_change);
    let same_label = r#"{"metadata":{"labels":{"team":"blue"}}}"#;
    assert_stdout(&s, &sa("patch", &["-p", same_label]), no_change);
    assert_eq!(
        resource_version(&s, "sa/example-sa"),
        rv,
        "a no-op patch moved the RV"
    );

    let out = s.kubectl(&["get", "sa", "example-sa", "-o", "json"]);
    let v = json(&s, &out);
    let labels = &v["metadata"]["labels"];
    let ok = labels["team"] == "blue"
        && labels["env"] == "dev"
        && labels["via"] == "json"
        && v["metadata"]["annotations"]["note"] == "hello"
        && v["automountServiceAccountToken"] == false;
    s.check(
        ok,
        "the labels, annotation or patched field are not all there",
        &out,
    );
}

#[test]
fn replace_with_a_stale_resource_version_conflicts() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let rv = resource_version(&s, "sa/example-sa");
    let manifest = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: example-sa\n  namespace: \
         default\n  resourceVersion: \"{rv}\"\n  labels:\n    replaced: \"yes\"\n"
    );
    let path = s.write_file("sa-rv.yaml", &manifest);
    let out = s.kubectl(&["replace", "-f", &path]);
    assert_stdout(&s, &out, "serviceaccount/example-sa replaced\n");
    // The same file now carries a stale resourceVersion. replace.go wraps the Status with
    // AddSourceToErr("replacing", …); the Conflict message is kubectl-wire.md §4's.
    let out = s.kubectl_err(&["replace", "-f", &path]);
    let expected = format!(
        "Error from server (Conflict): error when replacing \"{path}\": Operation cannot be \
         fulfilled on serviceaccounts \"example-sa\": the object has been modified; please apply \
         your changes to the latest version and try again"
    );
    assert_stderr_line(&s, &out, &expected);
    let out = jsonpath(&s, "sa/example-sa", "{.metadata.labels.replaced}");
    assert_stdout(&s, &out, "yes");
}

#[test]
fn errors_are_reported_as_kubernetes_does() {
    let s = Server::start();
    let out = s.kubectl_err(&["get", "sa", "nope"]);
    assert_stderr_line(
        &s,
        &out,
        r#"Error from server (NotFound): serviceaccounts "nope" not found"#,
    );
    assert_stdout(
        &s,
        &s.kubectl(&["create", "namespace", "x"]),
        "namespace/x created\n",
    );
    let out = s.kubectl_err(&["create", "namespace", "x"]);
    assert_stderr_line(
        &s,
        &out,
        r#"Error from server (AlreadyExists): namespaces "x" already exists"#,
    );

    // The Invalid message of apimachinery's NameIsDNSSubdomain. `create sa` wraps it with %v
    // (create_serviceaccount.go); apply hands the Status to CheckErr, which prints
    // `The <kind> "<name>" is invalid: <field>: <cause>` (cmd/util/helpers.go). Only the stable
    // start of the RFC 1123 text is asserted.
    let cause = concat!(
        r#"metadata.name: Invalid value: "Bad_Name": "#,
        "a lowercase RFC 1123 subdomain must consist of"
    );
    let out = s.kubectl_err(&["create", "sa", "Bad_Name"]);
    let wrapped = format!(
        r#"error: failed to create serviceaccount: ServiceAccount "Bad_Name" is invalid: {cause}"#
    );
    assert_stderr_line_starts(&s, &out, &wrapped);
    let bad = s.write_file(
        "bad-name.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: Bad_Name\n",
    );
    let out = s.kubectl_err(&["apply", "-f", &bad]);
    assert_stderr_line_starts(
        &s,
        &out,
        &format!(r#"The ServiceAccount "Bad_Name" is invalid: {cause}"#),
    );

    // Discovery is cached by now, so the list itself gets the 401 (kubectl-wire.md §4; the
    // wording is StandardErrorMessage's for reason Unauthorized).
    let out = s.kubectl_with_token("garbage", &["get", "sa"]);
    s.check(!out.success(), "a garbage token was accepted", &out);
    assert_stderr_line(
        &s,
        &out,
        "error: You must be logged in to the server (Unauthorized)",
    );

    let out = s.kubectl_err(&["create", "sa", "foo", "-n", "nope"]);
    assert_stderr_line(
        &s,
        &out,
        r#"error: failed to create serviceaccount: namespaces "nope" not found"#,
    );
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: foo\n  namespace: nope\n\
                    data:\n  a: b\n";
    let cm = s.write_file("cm-in-nope.yaml", manifest);
    let out = s.kubectl_err(&["apply", "-f", &cm]);
    let expected = format!(
        r#"Error from server (NotFound): error when creating "{cm}": namespaces "nope" not found"#
    );
    assert_stderr_line(&s, &out, &expected);
}

#[test]
fn delete_removes_objects_and_namespace_contents() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    let out = s.kubectl(&["delete", "sa", "example-sa"]);
    assert_stdout(&s, &out, "serviceaccount \"example-sa\" deleted\n");
    let not_found = r#"Error from server (NotFound): serviceaccounts "example-sa" not found"#;
    assert_stderr_line(&s, &s.kubectl_err(&["get", "sa", "example-sa"]), not_found);
    assert_stderr_line(
        &s,
        &s.kubectl_err(&["delete", "sa", "example-sa"]),
        not_found,
    );

    s.kubectl_ok(&["create", "namespace", "x"]);
    let out = s.kubectl(&[
        "create",
        "configmap",
        "inside",
        "-n",
        "x",
        "--from-literal=a=b",
    ]);
    assert_stdout(&s, &out, "configmap/inside created\n");
    assert_stdout(
        &s,
        &s.kubectl(&["delete", "ns", "x"]),
        "namespace \"x\" deleted\n",
    );
    let out = s.kubectl_err(&["get", "ns", "x"]);
    assert_stderr_line(
        &s,
        &out,
        r#"Error from server (NotFound): namespaces "x" not found"#,
    );
    assert_stdout(
        &s,
        &s.kubectl(&["create", "namespace", "x"]),
        "namespace/x created\n",
    );
    let out = s.kubectl_err(&["get", "cm", "inside", "-n", "x"]);
    assert_stderr_line(
        &s,
        &out,
        r#"Error from server (NotFound): configmaps "inside" not found"#,
    );
}

#[test]
fn watch_prints_added_modified_and_deleted() {
    let s = Server::start();
    let first_col = |name: &'static str| move |l: &str| l.split_whitespace().next() == Some(name);
    s.kubectl_ok(&["create", "sa", "pre-sa"]);
    // A list watch resumes from the list's resourceVersion, so nothing is lost between the
    // list and the watch request (kubectl-wire.md §3.4).
    let mut all = Streaming::kubectl(&s, &["get", "sa", "-w"]);
    let header = |l: &str| cols(l) == ["NAME", "SECRETS", "AGE"];
    all.wait_for(&s, "the header", header);
    all.wait_for(&s, "the pre-sa row", first_col("pre-sa"));
    s.kubectl_ok(&["create", "sa", "example-sa"]);

    // `get NAME -w` watches from resourceVersion 0: a change made before the watch request
    // is answered would be folded into the synthetic ADDED. -v=6 logs the response line of the
    // watch request, which arrives with that ADDED, so changes after it must be streamed.
    let args = [
        "get",
        "sa",
        "example-sa",
        "-w",
        "--output-watch-events",
        "-v=6",
    ];
    let mut one = Streaming::kubectl(&s, &args);
    let event = |kind: &'static str| move |l: &str| cols(l).starts_with(&[kind, "example-sa"]);
    one.wait_for(&s, "ADDED example-sa", event("ADDED"));
    let answered = |l: &str| l.contains("watch=true") && l.contains("200 OK");
    one.wait_for(&s, "the logged watch response", answered);

    all.wait_for(&s, "the row of ADDED", first_col("example-sa"));
    s.kubectl_ok(&["label", "sa", "example-sa", "team=blue"]);
    all.wait_for(&s, "the row of MODIFIED", first_col("example-sa"));
    one.wait_for(&s, "MODIFIED example-sa", event("MODIFIED"));
    s.kubectl_ok(&["delete", "sa", "example-sa"]);
    all.wait_for(&s, "the row of DELETED", first_col("example-sa"));
    one.wait_for(&s, "DELETED example-sa", event("DELETED"));
}

/// All `cm-N` ConfigMaps for N in 1..=count are listed once, with `data.k = N`.
#[track_caller]
fn assert_configmaps(s: &Server, count: usize) {
    let out = s.kubectl(&["get", "cm", "-o", "json"]);
    let v = json(s, &out);
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let ours: Vec<_> = items
        .iter()
        .filter(|i| {
            i["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("cm-"))
        })
        .collect();
    s.check(
        ours.len() == count,
        &format!("expected {count} cm-N ConfigMaps"),
        &out,
    );
    for n in 1..=count {
        let name = format!("cm-{n}");
        let found = ours
            .iter()
            .any(|i| i["metadata"]["name"] == *name && i["data"]["k"] == *n.to_string());
        s.check(found, &format!("{name} with data k={n} is missing"), &out);
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_and_restart() {
    let mut s = Server::start();
    // 40 documents in one multi-document YAML stream: one POST each, each acknowledged.
    // (A `kind: List` makes kubectl validate against /openapi/v2, which is not served.)
    let mut docs = String::new();
    for n in 1..=40 {
        let head = format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\n");
        docs.push_str(&format!("{head}data:\n  k: \"{n}\"\n"));
    }
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &docs);
    for n in 1..=40 {
        let ok = out.success() && has_line(&out.stdout, &format!("configmap/cm-{n} created"));
        s.check(ok, &format!("cm-{n} was not acknowledged"), &out);
    }
    s.kill9();
    s.start_again();
    assert_configmaps(&s, 40);
    let out = s.kubectl(&["create", "configmap", "cm-41", "--from-literal=k=41"]);
    assert_stdout(&s, &out, "configmap/cm-41 created\n");
    s.restart();
    assert_configmaps(&s, 41);
}

#[test]
fn pods_nodes_and_events_basics_through_the_dispatcher() {
    let s = Server::start();
    let pod = s.write_file("pod.yaml", POD);
    assert_stdout(
        &s,
        &s.kubectl_dispatcher(&["apply", "-f", &pod]),
        "pod/example created\n",
    );
    let out = s.kubectl_dispatcher(&["get", "pods"]);
    let header = out.stdout.lines().next().map(cols).unwrap_or_default();
    let row = row(&out.stdout, "example").unwrap_or_default();
    // No scheduler: the pod stays Pending (kube-1.32-observed.md, ServiceAccount admission).
    let ok = out.success()
        && header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        && row.len() == 5
        && row[..4] == ["example", "0/1", "Pending", "0"]
        && is_age(row[4]);
    s.check(
        ok,
        "expected `NAME READY STATUS RESTARTS AGE` and `example 0/1 Pending 0 <age>`",
        &out,
    );
    // get.go prints these on stderr when a list is empty: with the namespace for namespaced
    // kinds, without it for cluster-scoped ones.
    let out = s.kubectl_dispatcher(&["get", "events"]);
    let ok = out.success() && out.stdout.is_empty();
    s.check(ok, "expected no events", &out);
    assert_stderr_line(&s, &out, "No resources found in default namespace.");
    let out = s.kubectl_dispatcher(&["get", "nodes"]);
    s.check(
        out.success() && out.stdout.is_empty(),
        "expected no nodes",
        &out,
    );
    assert_stderr_line(&s, &out, "No resources found");
}

#[test]
fn raw_health_endpoints_and_anonymous_access() {
    let s = Server::start();
    // kubectl-wire.md §3.9: `get --raw` prints the body verbatim, without adding a newline.
    assert_stdout(&s, &s.kubectl(&["get", "--raw", "/readyz"]), "ok");
    // The contract: /readyz, /livez, /healthz and /version are open to anonymous requests.
    for path in ["/readyz", "/livez", "/healthz"] {
        let r = anonymous_get(&s, path);
        s.check(
            r.status == 200 && r.text() == "ok",
            "expected 200 `ok`",
            &r.out,
        );
    }
    let r = anonymous_get(&s, "/version");
    let (out, status, v) = (&r.out, r.status, r.json());
    let git = v["gitVersion"].as_str().unwrap_or_default();
    let ok = status == 200 && v["major"] == "1" && v["minor"] == "32" && git.starts_with("v1.32.");
    s.check(ok, "anonymous /version must report 1.32", out);
    // A real apiserver answers 403 Forbidden for system:anonymous; 401 is also a refusal. Either
    // way the body is a Status with the same code (kubectl-wire.md §4).
    let r = anonymous_get(&s, "/api/v1/namespaces/default/serviceaccounts");
    let (out, status, v) = (&r.out, r.status, r.json());
    let ok = (status == 401 || status == 403) && v["kind"] == "Status" && v["code"] == status;
    s.check(
        ok,
        "an anonymous list must be refused with a 401/403 Status",
        out,
    );
}

#[test]
fn label_and_field_selectors_all_namespaces_and_chunking() {
    let s = Server::start();
    for (name, team) in [("a", "blue"), ("b", "red")] {
        s.kubectl_ok(&["create", "sa", name]);
        s.kubectl_ok(&["label", "sa", name, &format!("team={team}")]);
    }
    s.kubectl_ok(&["create", "sa", "plain"]);
    let out = s.kubectl(&["get", "sa", "-l", "team=blue", "-o", "name"]);
    s.check(
        names(&out.stdout) == ["serviceaccount/a"],
        "-l team=blue",
        &out,
    );
    let out = s.kubectl(&["get", "sa", "-l", "team", "-o", "name"]);
    s.check(
        names(&out.stdout) == ["serviceaccount/a", "serviceaccount/b"],
        "-l team",
        &out,
    );

    for n in 1..=5 {
        s.kubectl_ok(&[
            "create",
            "configmap",
            &format!("cm-{n}"),
            "--from-literal=n=x",
        ]);
    }
    let out = s.kubectl(&["get", "cm", "--field-selector", "metadata.name=cm-1"]);
    let table: Vec<Vec<&str>> = out.stdout.lines().map(cols).collect();
    let ok = table.len() == 2
        && table[0] == ["NAME", "DATA", "AGE"]
        && table[1].len() == 3
        && table[1][..2] == ["cm-1", "1"];
    s.check(
        ok && is_age(table[1][2]),
        "expected only cm-1 under `NAME DATA AGE`",
        &out,
    );

    s.kubectl_ok(&["create", "namespace", "other"]);
    s.kubectl_ok(&["create", "sa", "c", "-n", "other"]);
    let out = s.kubectl(&["get", "sa", "-A"]);
    let table: Vec<Vec<&str>> = out.stdout.lines().map(cols).collect();
    let has_row = |ns: &str, name: &str| {
        table
            .iter()
            .any(|r| r.len() == 4 && r[..3] == [ns, name, "0"])
    };
    let ok = table
        .first()
        .is_some_and(|h| h == &["NAMESPACE", "NAME", "SECRETS", "AGE"])
        && has_row("default", "a")
        && has_row("default", "plain")
        && has_row("other", "c");
    s.check(
        ok,
        "-A must show a NAMESPACE column and both namespaces",
        &out,
    );
    let out = s.kubectl(&[
        "get",
        "sa",
        "-A",
        "--field-selector",
        "metadata.name=c",
        "-o",
        "name",
    ]);
    s.check(
        names(&out.stdout) == ["serviceaccount/c"],
        "-A with a field selector",
        &out,
    );

    // --chunk-size=2 makes kubectl follow `metadata.continue` (kubectl-wire.md §3.4). The
    // printer prints the header once while the columns stay the same.
    let out = s.kubectl(&["get", "cm", "--chunk-size=2"]);
    let firsts: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let once = |name: &str| firsts.iter().filter(|f| **f == name).count() == 1;
    let ok = out.success() && once("NAME") && (1..=5).all(|n| once(&format!("cm-{n}")));
    s.check(
        ok,
        "chunked list must hold every cm-N once under one header",
        &out,
    );
    let out = s.kubectl(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    let listed = names(&out.stdout);
    let ok = (1..=5).all(|n| {
        listed
            .iter()
            .filter(|l| **l == format!("configmap/cm-{n}"))
            .count()
            == 1
    });
    s.check(
        out.success() && ok,
        "chunked -o name must hold every cm-N once",
        &out,
    );
}
