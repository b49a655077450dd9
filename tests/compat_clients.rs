//! Black-box tests of issue 9's client and hardening items, against the real binary:
//! query parameters as apimachinery parses them (the real Python `kubernetes` 11.0.0 watching
//! with `watch=True`, odd boolean spellings, `sendInitialEvents`, the deprecated `/watch/`
//! paths, `pretty`), bad parameters answered 4xx naming the parameter, 414/431 with a
//! `Status`, the max-in-flight pools (429 with Retry-After), and hundreds of half-open
//! connections that do not keep a normal request waiting. Expected texts come from
//! apimachinery's source (named beside each assertion). Must not sleep to wait for the server
//! or assert on timing beyond "answered before a generous deadline".

mod support;

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::{
    Reply, Server, Streaming, assert_status, ensure, or_die, python, request, request_as,
};

const SAS: &str = "/api/v1/namespaces/default/serviceaccounts";

// The Python client's `Watch().stream` sends `watch=True` (Python's str(True)), 11.0.0 and
// the latest alike. Prints one `TYPE name` line per event and stops at the DELETED event of
// `watched`.
const PY_WATCH: &str = "import sys
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
for ev in watch.Watch().stream(v1.list_namespaced_service_account, 'default', timeout_seconds=60):
    print(ev['type'], ev['object'].metadata.name, flush=True)
    if ev['type'] == 'DELETED' and ev['object'].metadata.name == 'watched':
        break
";

/// #9 item 1: real Python client watches (11.0.0 and the latest, at once) see the initial
/// state, then ADDED and DELETED.
#[test]
fn python_clients_watch_with_watch_true_r9() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "before"]);
    let mut watches: Vec<Streaming> = ["py-11.0.0", "py-latest"]
        .iter()
        .map(|env| {
            let mut cmd = Command::new(python(env));
            cmd.args(["-c", PY_WATCH]).arg(s.kubeconfig());
            Streaming::start(cmd)
        })
        .collect();
    // The initial state arrives first (sendInitialEvents defaults on for a watch from "").
    for w in &mut watches {
        w.wait_for(&s, "the initial ADDED of `before`", |l| l == "ADDED before");
    }
    s.kubectl_ok(&["create", "sa", "watched"]);
    for w in &mut watches {
        w.wait_for(&s, "ADDED watched", |l| l == "ADDED watched");
    }
    s.kubectl_ok(&["delete", "sa", "watched"]);
    for w in &mut watches {
        w.wait_for(&s, "DELETED watched", |l| l == "DELETED watched");
        let status = w.wait_exit(&s);
        let out = w.output(Duration::from_millis(100));
        ensure(&s, status.success(), "the Python watch exited cleanly", out);
    }
}

/// The `type` of each event line of a watch body.
fn event_types(r: &Reply) -> Vec<String> {
    r.text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// #9 item 1: every spelling apimachinery reads as true starts a watch; false ones list.
#[test]
fn boolean_parameters_follow_apimachinery_r9() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "one"]);
    for spelling in ["True", "yes", "1", "TRUE", ""] {
        let r = request(
            &s,
            "GET",
            &format!("{SAS}?watch={spelling}&timeoutSeconds=1"),
            "",
            "",
        );
        let types = event_types(&r);
        s.check(
            r.status == 200 && types.iter().filter(|t| *t == "ADDED").count() >= 2,
            &format!("watch={spelling:?} is a watch (ADDED default and one)"),
            &r.out,
        );
    }
    for spelling in ["false", "False", "0"] {
        let r = request(&s, "GET", &format!("{SAS}?watch={spelling}"), "", "");
        s.check(
            r.json()["kind"] == "ServiceAccountList",
            &format!("watch={spelling:?} is a list"),
            &r.out,
        );
    }
    // The first value of a repeated key wins (url.Values).
    let r = request(&s, "GET", &format!("{SAS}?watch=false&watch=true"), "", "");
    s.check(
        r.json()["kind"] == "ServiceAccountList",
        "the first watch= wins",
        &r.out,
    );
    // The deprecated watch paths kube-apiserver still serves, for a collection and one name.
    let r = request(
        &s,
        "GET",
        "/api/v1/watch/namespaces/default/serviceaccounts?timeoutSeconds=1",
        "",
        "",
    );
    s.check(
        event_types(&r).len() >= 2,
        "/api/v1/watch/... streams events",
        &r.out,
    );
    let r = request(
        &s,
        "GET",
        "/api/v1/watch/namespaces/default/serviceaccounts/one?timeoutSeconds=1",
        "",
        "",
    );
    s.check(
        event_types(&r) == ["ADDED"] && r.text().contains("\"name\":\"one\""),
        "/api/v1/watch/.../one streams that object only",
        &r.out,
    );
}

/// #9 item 1: `sendInitialEvents` (WatchList, on in 1.32): the state, then a bookmark marked
/// `k8s.io/initial-events-end`; with `false`, nothing from before.
#[test]
fn send_initial_events_ends_with_the_annotated_bookmark_r9() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "one"]);
    let q = "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1";
    let r = request(&s, "GET", &format!("{SAS}?{q}"), "", "");
    let events: Vec<Value> = r
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last = events.last().cloned().unwrap_or_default();
    s.check(
        events.len() >= 3
            && events[..events.len() - 1]
                .iter()
                .all(|e| e["type"] == "ADDED")
            && last["type"] == "BOOKMARK"
            && last["object"]["kind"] == "ServiceAccount"
            && last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true",
        "ADDED events, then the initial-events-end bookmark",
        &r.out,
    );
    let q = "watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&timeoutSeconds=1";
    let r = request(&s, "GET", &format!("{SAS}?{q}"), "", "");
    s.check(
        r.status == 200 && event_types(&r).is_empty(),
        "no initial events",
        &r.out,
    );
    // validateWatchOptions: sendInitialEvents needs resourceVersionMatch=NotOlderThan.
    let r = request(
        &s,
        "GET",
        &format!("{SAS}?watch=1&sendInitialEvents=true"),
        "",
        "",
    );
    assert_status(&s, &r, 422, "Invalid", "sendInitialEvents without a match");
    s.check(
        r.json()["message"]
            == "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        "kube-apiserver's message",
        &r.out,
    );
}

/// #9 item 10: a bad parameter is the client's error, answered 4xx with the parameter named;
/// never a 500.
#[test]
fn bad_parameters_are_4xx_naming_the_parameter_r9() {
    let s = Server::start();
    for i in 0..3 {
        s.kubectl_ok(&["create", "sa", &format!("p{i}")]);
    }
    let forged = |json: &str| base64::engine::general_purpose::URL_SAFE.encode(json);
    let future = forged(r#"{"v":"meta.k8s.io/v1","rv":99999999,"start":"p0"}"#);
    let escape = forged(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"../../secrets/"}"#);
    let cases: Vec<(String, u16, &str)> = vec![
        ("limit=abc".into(), 400, "limit"),
        ("limit=-1".into(), 400, "limit"),
        ("resourceVersion=abc".into(), 400, "resourceVersion"),
        ("resourceVersion=-3".into(), 400, "resourceVersion"),
        ("continue=garbage".into(), 400, "continue"),
        (format!("limit=1&continue={future}"), 400, "continue"),
        (format!("limit=1&continue={escape}"), 400, "continue"),
        ("labelSelector=a%20in%20(b".into(), 400, "labelSelector"),
        ("labelSelector=%21%21".into(), 400, "labelSelector"),
        ("fieldSelector=spec.nope%3Dx".into(), 400, "fieldSelector"),
        ("fieldSelector=justtext".into(), 400, "fieldSelector"),
        ("watch=1&timeoutSeconds=soon".into(), 400, "timeoutSeconds"),
        (
            "resourceVersionMatch=Exact".into(),
            422,
            "resourceVersionMatch",
        ),
        (
            "resourceVersion=1&resourceVersionMatch=Newest".into(),
            422,
            "resourceVersionMatch",
        ),
    ];
    for (query, code, param) in cases {
        let r = request(&s, "GET", &format!("{SAS}?{query}"), "", "");
        let v = r.json();
        s.check(
            r.status == code
                && v["kind"] == "Status"
                && v["code"] == code
                && v["message"].as_str().is_some_and(|m| m.contains(param)),
            &format!("?{query}: {code} naming {param}"),
            &r.out,
        );
    }
    let r = request(
        &s,
        "POST",
        &format!("{SAS}?dryRun=Sometimes"),
        "application/json",
        r#"{"metadata":{"name":"dry"}}"#,
    );
    assert_status(&s, &r, 422, "Invalid", "dryRun=Sometimes");
    s.check(
        r.json()["message"]
            == "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Sometimes\"}: supported values: \"All\"",
        "ValidateDryRun's message",
        &r.out,
    );
    // A list at exactly an old revision, and paging still works after all of this.
    let page = request(&s, "GET", &format!("{SAS}?limit=2"), "", "");
    let token = page.json()["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let next = request(
        &s,
        "GET",
        &format!("{SAS}?limit=2&continue={token}"),
        "",
        "",
    );
    s.check(
        next.status == 200
            && next.json()["items"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
        "a real continue token pages on",
        &next.out,
    );
}

/// `pretty`: Go's ParseBool, and on by default for curl (`isPrettyPrint`).
#[test]
fn pretty_output_r9() {
    let s = Server::start();
    let token = s.data_dir().join("admin.token");
    let kubectl = [("User-Agent", "kubectl/v1.32.0")];
    let path = "/api/v1/namespaces/default";
    let r = request_as(
        &s,
        Some(&token),
        "GET",
        &format!("{path}?pretty=true"),
        &kubectl,
        "",
    );
    s.check(
        r.text().starts_with("{\n  \""),
        "pretty=true indents",
        &r.out,
    );
    let r = request_as(&s, Some(&token), "GET", path, &kubectl, "");
    s.check(
        r.text().starts_with("{\"") && !r.text().contains('\n'),
        "compact by default",
        &r.out,
    );
    let curl = [("User-Agent", "curl/8.5.0")];
    let r = request_as(
        &s,
        Some(&token),
        "GET",
        "/api/v1/namespaces/default",
        &curl,
        "",
    );
    s.check(
        r.text().starts_with("{\n"),
        "curl gets indented JSON",
        &r.out,
    );
    let r = request_as(
        &s,
        Some(&token),
        "GET",
        "/api/v1/namespaces/default?pretty=0",
        &curl,
        "",
    );
    s.check(
        !r.text().contains('\n'),
        "pretty=0 wins over the User-Agent",
        &r.out,
    );
}

// One raw HTTP/1.1 request over TLS with a URI of `uri_kib` KiB of `a`s and `headers` headers
// of 40 KiB each (curl refuses heads this large); prints the status line, then the body.
const BIG_HEAD: &str = "import socket, ssl, sys
port, ca, uri_kib, headers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(['http/1.1'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(port))), server_hostname='127.0.0.1')
head = 'GET /api/v1/namespaces/default/serviceaccounts?labelSelector=' + 'a' * (uri_kib << 10) + ' HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n'
head += ''.join(f'X-Big-{i}: ' + 'b' * (40 << 10) + '\\r\\n' for i in range(headers))
s.sendall((head + '\\r\\n').encode())
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
status, _, rest = data.partition(b'\\r\\n')
print(status.decode())
print(rest.partition(b'\\r\\n\\r\\n')[2].decode())
";

/// The status line and body of a [`BIG_HEAD`] request.
fn big_head(s: &Server, uri_kib: usize, headers: usize) -> (String, Value) {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", BIG_HEAD, &s.port().to_string()])
        .arg(s.data_dir().join("ca.crt"))
        .args([uri_kib.to_string(), headers.to_string()]);
    let out = s.run(cmd, None);
    s.check(out.success(), "the raw request", &out);
    let (status, body) = out.stdout.split_once('\n').unwrap_or_default();
    (
        status.to_string(),
        serde_json::from_str(body.trim()).unwrap_or_default(),
    )
}

/// #9 item 10: 414 and 431 carry a Status body (HTTP/1.1, where hyper parses the head).
#[test]
fn long_uris_and_heads_get_a_status_r9() {
    let s = Server::start();
    let (status, body) = big_head(&s, 62, 0);
    ensure(
        &s,
        status == "HTTP/1.1 414 URI Too Long" && body["kind"] == "Status" && body["code"] == 414,
        "a 62 KiB URI: 414 with a Status",
        format!("{status}\n{body}"),
    );
    let (status, body) = big_head(&s, 1, 30);
    ensure(
        &s,
        status == "HTTP/1.1 431 Request Header Fields Too Large"
            && body["kind"] == "Status"
            && body["code"] == 431,
        "1.2 MiB of headers: 431 with a Status",
        format!("{status}\n{body}"),
    );
    // The server is still there.
    s.kubectl_ok(&["get", "sa"]);
}

// Holds a mutating slot: a POST whose body never comes. Prints `sent` once the head is out,
// then holds the connection until killed.
const HOLD_POST: &str = "import socket, ssl, sys, time
port, ca, token = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(port))), server_hostname='127.0.0.1')
s.sendall(('POST /apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\\r\\nHost: x\\r\\n'
  'Authorization: Bearer ' + open(token).read().strip() + '\\r\\n'
  'Content-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n').encode())
print('sent', flush=True)
time.sleep(120)
";

/// #9 item 9: with one slot per pool, a held write makes the next write 429 + Retry-After,
/// reads have their own pool, watches and system:masters are never turned away.
#[test]
fn max_in_flight_answers_429_with_retry_after_r9() {
    let s = Server::start_with(&[
        "--max-requests-inflight=1",
        "--max-mutating-requests-inflight=1",
    ]);
    s.kubectl_ok(&["create", "sa", "app"]);
    let token = s.kubectl_ok(&["create", "token", "app"]);
    let token_file = s.write_file("app.token", token.trim());
    let mut hold = Command::new("python3");
    hold.args(["-c", HOLD_POST, &s.port().to_string()])
        .arg(s.data_dir().join("ca.crt"))
        .arg(&token_file);
    let mut holder = Streaming::start(hold);
    holder.wait_for(&s, "the held POST", |l| l == "sent");
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let json = [("Content-Type", "application/json")];
    let path = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let app = Some(Path::new(&token_file));
    // The held request may not have reached its handler when `sent` prints: retry briefly.
    let mut refused = None;
    for _ in 0..100 {
        let r = request_as(&s, app, "POST", path, &json, review);
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(r) = refused else {
        s.fail("no 429 while the only mutating slot was held");
    };
    assert_status(&s, &r, 429, "TooManyRequests", "the second write");
    s.check(r.header("Retry-After") == "1", "Retry-After: 1", &r.out);
    let r = request_as(&s, app, "GET", "/version", &[], "");
    s.check(r.status == 200, "reads have their own pool", &r.out);
    let r = request(&s, "POST", path, "application/json", review);
    s.check(
        r.status == 201,
        "system:masters is never turned away",
        &r.out,
    );
    drop(holder);
}

// Opens N connections that never finish: half of them send a partial TLS ClientHello, half
// complete TLS and send half a request head. Prints `open N` when all are open, then holds
// them until killed.
const HALF_OPEN: &str = "import socket, ssl, sys, time
port, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
held = []
for i in range(n):
    c = socket.create_connection(('127.0.0.1', int(port)))
    if i % 2 == 0:
        c.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))
    else:
        c = ctx.wrap_socket(c, server_hostname='127.0.0.1')
        c.sendall(b'GET /api/v1/namespaces HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: ')
    held.append(c)
print('open', len(held), flush=True)
time.sleep(120)
";

/// #9 item 9: hundreds of half-sent connections do not keep a normal request waiting.
#[test]
fn half_open_connections_do_not_block_a_normal_request_r9() {
    let s = Server::start();
    let mut cmd = Command::new("python3");
    cmd.args(["-c", HALF_OPEN, &s.port().to_string()])
        .arg(s.data_dir().join("ca.crt"))
        .arg("400");
    let mut flood = Streaming::start(cmd);
    flood.wait_for(&s, "400 half-open connections", |l| l == "open 400");
    // kubectl's own 60 s client timeout would hide a stall; give it 10 s.
    let out = s.kubectl(&["get", "sa", "--request-timeout=10s"]);
    s.check(
        out.success(),
        "kubectl get sa while 400 connections hang",
        &out,
    );
    // A plain TCP connect still succeeds too (the listener is not stuck).
    let c = TcpStream::connect(("127.0.0.1", s.port()));
    let mut c = or_die(c, "connect");
    or_die(c.write_all(b"\x16\x03\x01"), "write");
    drop(flood);
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn without_ansi_colours(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// #9 item 5: `kubectl cluster-info` finds the control plane, and the `kubernetes` Service,
/// Endpoints and EndpointSlice point at this server, with kubectl's columns; they are
/// read-only.
#[test]
fn cluster_info_and_the_kubernetes_service_r9() {
    let s = Server::start();
    let url = format!("https://127.0.0.1:{}", s.port());
    for out in [
        s.kubectl(&["cluster-info"]),
        s.kubectl_127(&["cluster-info"]),
    ] {
        // kubectl 1.27 colours these words even when stdout is not a terminal.
        let plain = without_ansi_colours(&out.stdout);
        s.check(
            out.success()
                && plain.contains(&format!("Kubernetes control plane is running at {url}")),
            "cluster-info (kubectl 1.32 and 1.27) names the control plane",
            &out,
        );
    }
    // The controller may still be writing them just after start: wait for the Endpoints.
    let ep = format!("127.0.0.1:{}", s.port());
    let mut found = String::new();
    for _ in 0..100 {
        let out = s.kubectl(&["get", "endpoints", "kubernetes", "--no-headers"]);
        if out.success() && out.stdout.contains(&ep) {
            found = out.stdout;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure(
        &s,
        found.contains(&ep),
        "Endpoints kubernetes point here",
        &found,
    );
    let svc = s.kubectl_ok(&["get", "svc", "kubernetes", "-o", "wide", "--no-headers"]);
    let cells: Vec<&str> = svc.split_whitespace().collect();
    ensure(
        &s,
        cells.len() == 7
            && cells[..5] == ["kubernetes", "ClusterIP", "10.0.0.1", "<none>", "443/TCP"]
            && cells[6] == "<none>",
        "the Service's row",
        &svc,
    );
    let target = s.kubectl_ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.ports[0].targetPort}",
    ]);
    ensure(
        &s,
        target == s.port().to_string(),
        "targetPort is the API port",
        &target,
    );
    let slice = s.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=kubernetes",
        "--no-headers",
    ]);
    let cells: Vec<&str> = slice.split_whitespace().collect();
    ensure(
        &s,
        cells.len() >= 4
            && cells[..4] == ["kubernetes", "IPv4", &s.port().to_string(), "127.0.0.1"],
        "the EndpointSlice's row",
        &slice,
    );
    // Read-only: kube-apiserver would accept a Service here; this server owns them all.
    let out = s.kubectl_err(&["create", "service", "clusterip", "mine", "--tcp=80:8080"]);
    s.check(
        out.stderr.contains("MethodNotAllowed") || out.stderr.contains("not allow"),
        "creating a Service is refused",
        &out,
    );
    // `kubectl get all` lists the Service among the pods.
    let all = s.kubectl_ok(&["get", "all"]);
    ensure(
        &s,
        all.contains("service/kubernetes"),
        "get all shows the Service",
        &all,
    );
}

/// The impersonation filter: `system:masters` may act as another user (`kubectl --as`), and
/// anybody else is refused with kube-apiserver's message instead of being ignored.
#[test]
fn impersonation_is_applied_for_masters_and_refused_otherwise() {
    let s = Server::start();
    let out = s.kubectl_ok(&[
        "auth",
        "whoami",
        "--as=alice",
        "--as-group=devs",
        "-o",
        "json",
    ]);
    let v: Value = or_die(serde_json::from_str(&out), "parse whoami");
    ensure(
        &s,
        v["status"]["userInfo"]["username"] == "alice"
            && v["status"]["userInfo"]["groups"]
                == serde_json::json!(["devs", "system:authenticated"]),
        "whoami --as shows the impersonated user",
        &out,
    );
    s.kubectl_ok(&["create", "sa", "app"]);
    let token = s.kubectl_ok(&["create", "token", "app"]);
    let token_file = s.write_file("app.token", token.trim());
    let as_admin = [("Impersonate-User", "admin")];
    let r = request_as(&s, Some(Path::new(&token_file)), "GET", SAS, &as_admin, "");
    assert_status(
        &s,
        &r,
        403,
        "Forbidden",
        "a service account may not impersonate",
    );
    s.check(
        r.json()["message"]
            == "users \"admin\" is forbidden: User \"system:serviceaccount:default:app\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
        "kube-apiserver's impersonation message",
        &r.out,
    );
}
