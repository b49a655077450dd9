//! Black-box tests of `tokenwarden diagnose` (issue 6) against the real server: a staged
//! cluster (an old Python client's stale use, a used manual legacy token Secret, a Pod mounting
//! a legacy Secret, an unused legacy Secret) must produce every finding in the text and the
//! JSON report and exit 1; a fresh server exits 0; an unreachable server exits 2 with a clear
//! message. The HTML and markdown reports (issue 14) must show the real findings and the
//! stale ServiceAccounts in their chart, escape a User-Agent that is markup, and parse
//! (python3's `html.parser`); progress is drawn on a terminal (python3's `pty`) and never
//! into a pipe.
//! Must not: install old clients (the old Python client is impersonated by its User-Agent,
//! `OpenAPI-Generator/11.0.0/python`, sent with curl) or wait for time to pass
//! (`--testing-clock-offset` makes the token stale; the only waiting is a bounded poll for
//! the legacy Secret to be populated and for audit lines to be written).

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::{Output, Reply, Server, ensure, request_as, run_on_terminal, tokenwarden_bin};

/// Runs diagnose with stdout and stderr piped, which must show no progress (issue 14).
fn diagnose(s: &Server, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(tokenwarden_bin());
    cmd.env_remove("KUBECONFIG")
        .arg("diagnose")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args);
    let out = s.run(cmd, None);
    s.check(
        !redraws(&out.stdout) && !redraws(&out.stderr),
        "no progress (carriage returns, escape codes) into a pipe",
        &out,
    );
    out
}

/// Whether `text` holds what a progress bar draws with.
fn redraws(text: &str) -> bool {
    text.contains('\r') || text.contains("\x1b[")
}

/// Polls `probe` for up to 30 s.
fn wait_for(s: &Server, what: &str, mut probe: impl FnMut() -> bool) {
    support::poll(s, what, Duration::from_secs(30), || {
        probe().then_some(()).ok_or_else(|| "not yet".to_string())
    });
}

fn legacy_secret(name: &str, sa: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  annotations:\n    \
         kubernetes.io/service-account.name: {sa}\ntype: kubernetes.io/service-account-token\n"
    )
}

/// `METHOD path` with a bearer token and a User-Agent, through the harness's raw client; a
/// POST sends a SelfSubjectReview.
fn call(s: &Server, token: &str, user_agent: &str, method: &str, path: &str) -> Reply {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token_file = s.write_file(&format!("call-{n}.token"), token);
    let headers = [
        ("User-Agent", user_agent),
        ("Content-Type", "application/json"),
    ];
    let body = if method == "POST" {
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#
    } else {
        ""
    };
    request_as(
        s,
        Some(Path::new(&token_file)),
        method,
        path,
        &headers,
        body,
    )
}

#[test]
fn staged_cluster_names_every_offender_r6() {
    let mut s = Server::start();
    // (1) an old client's stale use: a 3607 s pod-bound token, used two hours later.
    s.kubectl_ok(&["create", "sa", "old-py"]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p2\nspec:\n  serviceAccountName: \
               old-py\n  containers:\n  - name: app\n    image: python\n";
    let path = s.write_file("p2.yaml", pod);
    s.kubectl_ok(&["create", "-f", &path]);
    let token = s.kubectl_ok(&[
        "create",
        "token",
        "old-py",
        "--duration=3607s",
        "--bound-object-kind=Pod",
        "--bound-object-name=p2",
    ]);
    let token = token.trim().to_owned();
    // (2)-(4) legacy token Secrets: one used, one mounted by a Pod, one unused.
    s.kubectl_ok(&["create", "sa", "legacy-sa"]);
    for name in ["used-token", "mounted-token", "unused-token"] {
        let path = s.write_file(&format!("{name}.yaml"), &legacy_secret(name, "legacy-sa"));
        s.kubectl_ok(&["create", "-f", &path]);
    }
    let mounter = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: mounter\nspec:\n  \
                   serviceAccountName: legacy-sa\n  containers:\n  - name: app\n    image: busybox\n    \
                   volumeMounts:\n    - name: legacy\n      mountPath: /var/run/legacy\n  volumes:\n  \
                   - name: legacy\n    secret:\n      secretName: mounted-token\n";
    let path = s.write_file("mounter.yaml", mounter);
    s.kubectl_ok(&["create", "-f", &path]);
    let mut legacy = String::new();
    wait_for(&s, "the legacy token controller to fill used-token", || {
        let out = s.kubectl(&[
            "get",
            "secret",
            "used-token",
            "-o",
            "jsonpath={.data.token}",
        ]);
        legacy = out.stdout.trim().to_owned();
        out.success() && !legacy.is_empty()
    });
    let legacy = base64::engine::general_purpose::STANDARD
        .decode(&legacy)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();

    let audit = s.path("audit.log");
    let audit_arg = format!("--audit-log-path={}", audit.display());
    s.restart_with(&["--testing-clock-offset=2h", &audit_arg]);
    let r = call(
        &s,
        &token,
        "OpenAPI-Generator/11.0.0/python",
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    );
    s.check(
        r.text().contains("old-py"),
        "the stale token must still work",
        &r.out,
    );
    let r = call(&s, &legacy, "curl/8.5.0", "GET", "/api");
    s.check(
        r.status == 200 && r.text().contains("APIVersions"),
        "legacy use",
        &r.out,
    );
    wait_for(&s, "both uses in the audit log", || {
        let text = fs::read_to_string(&audit).unwrap_or_default();
        text.contains("authentication.k8s.io/stale-token") && text.contains("used-token")
    });

    let audit_path = audit.to_string_lossy().into_owned();
    let out = diagnose(&s, &s.kubeconfig(), &["--audit-log", &audit_path]);
    s.check(out.status.code() == Some(1), "findings must exit 1", &out);
    for needle in [
        "error    stale-token-use               ServiceAccount default/old-py, Pod default/p2",
        "\"OpenAPI-Generator/11.0.0/python\": 1 requests, 1 stale",
        "remedy:  upgrade client kubernetes (Python) 11.0.0 to ≥ 12.0.0",
        "legacy-token-in-use           Secret default/used-token",
        "kubectl create token legacy-sa -n default",
        "legacy-token-mounted          Secret default/mounted-token, Pod default/mounter",
        "- serviceAccountToken:",
        "legacy-token-unused           Secret default/unused-token",
        "kubectl delete secret -n default unused-token",
        "Kubernetes v1.32.0+tokenwarden",
    ] {
        s.check(
            out.stdout.contains(needle),
            &format!("missing {needle:?}"),
            &out,
        );
    }

    let out = diagnose(
        &s,
        &s.kubeconfig(),
        &["--audit-log", &audit_path, "-o", "json"],
    );
    s.check(
        out.status.code() == Some(1),
        "findings must exit 1 (json)",
        &out,
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    ensure(
        &s,
        v["kind"] == "DiagnoseReport",
        "a DiagnoseReport",
        &out.stdout,
    );
    let findings = v["findings"].as_array().cloned().unwrap_or_default();
    let has = |check: &str, kind: &str, name: &str| {
        findings.iter().any(|f| {
            f["check"] == check
                && f["objects"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|o| o["kind"] == kind && o["name"] == name))
        })
    };
    for (check, kind, name) in [
        ("stale-token-use", "ServiceAccount", "old-py"),
        ("stale-token-use", "Pod", "p2"),
        ("legacy-token-in-use", "Secret", "used-token"),
        ("legacy-token-mounted", "Pod", "mounter"),
        ("legacy-token-unused", "Secret", "unused-token"),
    ] {
        ensure(
            &s,
            has(check, kind, name),
            &format!("{check} {kind}/{name}"),
            &out.stdout,
        );
    }
    let stale = findings.iter().find(|f| f["check"] == "stale-token-use");
    let stale = stale.cloned().unwrap_or_default();
    ensure(
        &s,
        stale["severity"] == "error" && stale["clients"][0]["upgradeTo"] == "12.0.0",
        "the old Python client must be flagged",
        &stale,
    );
    ensure(
        &s,
        v["metrics"]["staleTokens"] == 1
            && v["metrics"]["staleByServiceAccount"][0]["serviceAccount"] == "old-py",
        "stale counters",
        &v["metrics"],
    );

    // Without the audit log the client is unknown, so the stale use is only a warning
    // (attributed by tokenwarden's metric), and --fail-on error passes.
    let out = diagnose(&s, &s.kubeconfig(), &["--fail-on", "error"]);
    s.check(
        out.status.code() == Some(0),
        "--fail-on error without an error",
        &out,
    );
    s.check(
        out.stdout
            .contains("warning  stale-token-use               ServiceAccount default/old-py"),
        "the metric alone attributes the stale use",
        &out,
    );
}

#[test]
fn healthy_cluster_exits_0_r6() {
    let s = Server::start();
    let out = diagnose(&s, &s.kubeconfig(), &[]);
    s.check(
        out.status.code() == Some(0),
        "a fresh server is clean",
        &out,
    );
    s.check(
        out.stdout
            .contains("Summary: 0 error(s), 0 warning(s), 1 info"),
        "only the cluster-version info",
        &out,
    );
    let out = diagnose(&s, &s.kubeconfig(), &["-o", "json"]);
    s.check(
        out.status.code() == Some(0),
        "a fresh server is clean (json)",
        &out,
    );
    // Without an audit log, the HTML and markdown reports say why they have no chart (r14).
    for format in ["html", "markdown"] {
        let out = diagnose(&s, &s.kubeconfig(), &["-o", format]);
        s.check(
            out.status.code() == Some(0)
                && out.stdout.contains("no audit log was given (--audit-log)")
                && !out.stdout.contains("<svg"),
            &format!("a clean {format} report without a chart"),
            &out,
        );
    }
}

#[test]
fn unreachable_server_exits_2_r6() {
    let s = Server::start();
    let kubeconfig = fs::read_to_string(s.kubeconfig()).unwrap_or_default();
    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let moved = kubeconfig.replace(
        &format!("127.0.0.1:{}", s.port()),
        &format!("127.0.0.1:{closed}"),
    );
    ensure(
        &s,
        moved != kubeconfig,
        "the kubeconfig names the server",
        &kubeconfig,
    );
    let path = s.write_file("closed.kubeconfig", &moved);
    let out = diagnose(&s, std::path::Path::new(&path), &[]);
    s.check(
        out.status.code() == Some(2),
        "unreachable must exit 2",
        &out,
    );
    s.check(
        out.stderr.contains("error: tokenwarden diagnose could not run: cannot reach the API server at https://127.0.0.1:"),
        "a clear message",
        &out,
    );
    let out = diagnose(&s, std::path::Path::new("/nonexistent/kubeconfig"), &[]);
    s.check(
        out.status.code() == Some(2),
        "a missing kubeconfig must exit 2",
        &out,
    );
}

/// A ServiceAccount without permissions: every list it may not make is a warning, the RBAC
/// lists among them (the RBAC checks are skipped), and the run still ends with a report
/// (issue 11).
#[test]
fn forbidden_rbac_lists_are_a_warning_r11() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "nobody"]);
    let token = s.kubectl_ok(&["create", "token", "nobody"]);
    let admin = fs::read_to_string(s.data_dir().join("admin.token")).unwrap_or_default();
    let kubeconfig = fs::read_to_string(s.kubeconfig()).unwrap_or_default();
    let swapped = kubeconfig.replace(admin.trim(), token.trim());
    ensure(
        &s,
        !admin.trim().is_empty() && swapped != kubeconfig,
        "the kubeconfig holds the admin token",
        &kubeconfig,
    );
    let path = s.write_file("nobody.kubeconfig", &swapped);
    let out = diagnose(&s, Path::new(&path), &["-o", "json"]);
    s.check(
        out.status.code() == Some(0),
        "missing permissions are not findings",
        &out,
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let warnings = v["warnings"].as_array().cloned().unwrap_or_default();
    let rbac = warnings.iter().filter_map(Value::as_str).find(|w| {
        w.starts_with("cannot list ClusterRoleBindings (403 Forbidden)")
            && w.ends_with(
                "ServiceAccounts bound to cluster-admin or wildcard roles are not checked",
            )
    });
    ensure(&s, rbac.is_some(), "the RBAC warning", &out.stdout);
    let findings = v["findings"].as_array().cloned().unwrap_or_default();
    ensure(
        &s,
        !findings.iter().any(|f| {
            f["check"]
                .as_str()
                .is_some_and(|c| c.starts_with("serviceaccount-"))
        }),
        "no RBAC finding without RBAC lists",
        &out.stdout,
    );
}

/// The findings of `check` in a JSON report, and the report.
fn findings_of(s: &Server, check: &str) -> (Output, Vec<Value>) {
    let out = diagnose(s, &s.kubeconfig(), &["-o", "json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    ensure(
        s,
        v["kind"] == "DiagnoseReport",
        "a DiagnoseReport",
        &out.stdout,
    );
    let found = v["findings"].as_array().cloned().unwrap_or_default();
    let found = found.into_iter().filter(|f| f["check"] == check).collect();
    (out, found)
}

/// A ServiceAccount bound to cluster-admin by a ClusterRoleBinding is an error finding that
/// names the binding; before the binding there is none (issue 11).
#[test]
fn service_account_bound_to_cluster_admin_is_an_error_r11() {
    let s = Server::start();
    s.kubectl_ok(&["create", "namespace", "ci"]);
    s.kubectl_ok(&["create", "sa", "deployer", "-n", "ci"]);
    let (out, found) = findings_of(&s, "serviceaccount-cluster-admin");
    s.check(
        out.status.code() == Some(0) && found.is_empty(),
        "no finding before the binding (the bootstrap binding to system:masters is ignored)",
        &out,
    );
    s.check(
        !out.stdout.contains("cannot list ClusterRoleBindings"),
        "the admin may list RBAC",
        &out,
    );

    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "bad",
        "--clusterrole=cluster-admin",
        "--serviceaccount=ci:deployer",
    ]);
    let (out, found) = findings_of(&s, "serviceaccount-cluster-admin");
    s.check(out.status.code() == Some(1), "a finding exits 1", &out);
    let [f] = found.as_slice() else {
        s.fail(format!("one cluster-admin finding expected\n{out}"));
    };
    ensure(
        &s,
        f["severity"] == "error"
            && f["objects"]
                == serde_json::json!([{"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}])
            && f["title"]
                .as_str()
                .is_some_and(|t| t.ends_with("by ClusterRoleBinding bad")),
        "the ServiceAccount, the binding and the severity",
        f,
    );
    let remedy = f["remedy"].as_str().unwrap_or_default();
    for needle in [
        "kubectl create rolebinding deployer-minimal -n ci --role=deployer-minimal --serviceaccount=ci:deployer",
        "kubectl delete clusterrolebinding bad",
    ] {
        ensure(&s, remedy.contains(needle), needle, remedy);
    }
}

/// A ServiceAccount `sa` with a Pod `pod`, and the 3607 s token the kubelet asks for it.
fn pod_token(s: &Server, sa: &str, pod: &str) -> String {
    s.kubectl_ok(&["create", "sa", sa]);
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\nspec:\n  serviceAccountName: \
         {sa}\n  containers:\n  - name: app\n    image: python\n"
    );
    let path = s.write_file(&format!("{pod}.yaml"), &yaml);
    s.kubectl_ok(&["create", "-f", &path]);
    let bound = format!("--bound-object-name={pod}");
    let token = s.kubectl_ok(&[
        "create",
        "token",
        sa,
        "--duration=3607s",
        "--bound-object-kind=Pod",
        &bound,
    ]);
    token.trim().to_owned()
}

/// The HTML page's problems as python3's `html.parser` reads it (a script element, an end tag
/// that does not close the open element, an element never closed), then `TEXT:` and the
/// text a browser would show.
const HTML_CHECK: &str = r#"
import sys
from html.parser import HTMLParser
VOID = {"meta", "br", "hr", "img", "input", "link"}
class Check(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open, self.problems, self.text = [], [], []
    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.problems.append("a script element")
        if tag not in VOID:
            self.open.append(tag)
    def handle_startendtag(self, tag, attrs):
        pass
    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.problems.append("</%s> does not close the open element" % tag)
    def handle_data(self, data):
        self.text.append(data)
check = Check()
check.feed(sys.stdin.read())
check.close()
if check.open:
    check.problems.append("never closed: %s" % check.open)
print("\n".join(check.problems) or "well-formed")
print("TEXT:" + "".join(check.text))
"#;

/// Two ServiceAccounts use stale tokens, one through a client whose User-Agent is markup: the
/// HTML and markdown reports name both in their chart and tables, with the findings of the
/// JSON report, and show the User-Agent as text (issue 14).
#[test]
fn html_and_markdown_reports_chart_the_stale_service_accounts_r14() {
    let mut s = Server::start();
    let old = pod_token(&s, "old-py", "p2");
    let other = pod_token(&s, "other-sa", "p3");
    let audit = s.path("audit.log");
    let audit_arg = format!("--audit-log-path={}", audit.display());
    s.restart_with(&["--testing-clock-offset=2h", &audit_arg]);
    let python = "OpenAPI-Generator/11.0.0/python";
    let hostile = "evil/1.0 <script>alert(1)</script> | x";
    for (token, sa, agent) in [
        (&old, "old-py", python),
        (&old, "old-py", python),
        (&other, "other-sa", hostile),
    ] {
        let path = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
        let r = call(&s, token, agent, "POST", path);
        s.check(
            r.text().contains(sa),
            "the stale token must still work",
            &r.out,
        );
    }
    wait_for(&s, "three stale uses in the audit log", || {
        let text = fs::read_to_string(&audit).unwrap_or_default();
        text.matches("authentication.k8s.io/stale-token").count() >= 3
    });
    let audit_path = audit.to_string_lossy().into_owned();

    let out = diagnose(
        &s,
        &s.kubeconfig(),
        &["--audit-log", &audit_path, "-o", "html"],
    );
    s.check(out.status.code() == Some(1), "findings exit 1 (html)", &out);
    let html = &out.stdout;
    for needle in [
        "<!DOCTYPE html>",
        "<code>stale-token-use</code>",
        "ServiceAccount default/old-py used stale tokens 2 time(s)",
        "upgrade client kubernetes (Python) 11.0.0 to ≥ 12.0.0",
        "<span class=\"swatch c0\"></span>default/old-py (2)</li>",
        "<span class=\"swatch c1\"></span>default/other-sa (1)</li>",
        "<code>evil/1.0 &lt;script&gt;alert(1)&lt;/script&gt; | x</code>",
    ] {
        s.check(html.contains(needle), &format!("missing {needle:?}"), &out);
    }
    let chart = html.split("<svg").nth(1).unwrap_or_default();
    let bars = chart.matches("<rect class=\"bar ").count();
    s.check(
        (2..=3).contains(&bars)
            && chart.contains("<title>default/old-py: ")
            && chart.contains("<title>default/other-sa: 1 stale use(s)"),
        "a bar for each stale ServiceAccount (old-py's two uses in one minute, or two)",
        &out,
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(HTML_CHECK);
    let parsed = s.run(cmd, Some(html));
    s.check(
        parsed.stdout.starts_with("well-formed\nTEXT:")
            && parsed.stdout.contains(hostile)
            && parsed
                .stdout
                .contains("ServiceAccount default/other-sa used stale tokens 1 time(s)"),
        "the page parses, and shows the User-Agent as text",
        &parsed,
    );

    let out = diagnose(
        &s,
        &s.kubeconfig(),
        &["--audit-log", &audit_path, "-o", "markdown"],
    );
    s.check(
        out.status.code() == Some(1),
        "findings exit 1 (markdown)",
        &out,
    );
    for needle in [
        "| 2 | error | stale-token-use | ServiceAccount default/old-py used stale tokens 2 time(s)",
        "| Time (UTC) | default/old-py | default/other-sa |",
        r"| evil/1.0 \<script\>alert(1)\</script\> \| x | 1 | 1 |",
        "upgrade client kubernetes (Python) 11.0.0 to ≥ 12.0.0",
    ] {
        s.check(
            out.stdout.contains(needle),
            &format!("missing {needle:?}"),
            &out,
        );
    }
    // Raw, the User-Agent appears only in the remedy's code block, which shows it as text.
    let raw = out
        .stdout
        .match_indices("<script")
        .filter(|(at, _)| !out.stdout[..*at].ends_with('\\'))
        .count();
    let fenced = out
        .stdout
        .matches("```text\nclient \"evil/1.0 <script>")
        .count();
    s.check(
        raw == 1 && fenced == 1,
        "no raw markup in markdown outside a code block",
        &out,
    );
}

/// On a terminal, diagnose draws its steps on stderr (and still prints the whole report); with
/// TERM=dumb it does not (issue 14). Pipes are checked by every `diagnose` call above.
#[test]
fn progress_is_drawn_on_a_terminal_only_r14() {
    let s = Server::start();
    let kubeconfig = s.kubeconfig().to_string_lossy().into_owned();
    let args = ["diagnose", "--kubeconfig", &kubeconfig, "-o", "json"];
    let timeout = Duration::from_secs(60);
    let (code, shown) = run_on_terminal(tokenwarden_bin(), &args, &[("TERM", "xterm")], timeout);
    let report = "\"kind\": \"DiagnoseReport\"";
    ensure(
        &s,
        code == Some(0) && shown.contains(report),
        "the report on a terminal",
        &shown,
    );
    ensure(
        &s,
        shown.contains("for /version") && redraws(&shown),
        "the first step drawn on the terminal",
        &shown,
    );
    let (code, shown) = run_on_terminal(tokenwarden_bin(), &args, &[("TERM", "dumb")], timeout);
    ensure(
        &s,
        code == Some(0) && shown.contains(report) && !shown.contains("for /version"),
        "no progress on a dumb terminal",
        &shown,
    );
}
