//! The operator kit in `deploy/` (issue 14), checked against the real binary and real tools:
//! every `serve` flag that the systemd unit, its environment file, the Containerfile, the
//! static Pod manifest and the README's production commands pass is one `tokenwarden serve
//! --help` lists; the files agree on the data directory, port and user; the manifest's probes
//! answer 200 to anonymous requests on a running server; `systemd-analyze` verifies the unit and
//! rates its exposure; `systemd-sysusers` creates the user the unit runs as; and every metric,
//! label and label value the Prometheus alert rules read is in a real server's `/metrics` after
//! a stale, a legacy and two failed token uses (the rules themselves are tested by `promtool
//! test rules` in `.ci/run`).
//! Must not: skip when a tool is missing (fail with the package to install), or reach into the
//! server: only the binary, kubectl, curl and systemd's tools.

mod support;

use support::{Server, ensure, or_die, poll, request_as, tokenwarden_bin};

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

const UNIT: &str = "deploy/systemd/tokenwarden.service";
const SYSUSERS: &str = "deploy/systemd/tokenwarden.sysusers";
const ENV_FILE: &str = "deploy/systemd/tokenwarden.env";
const CONTAINERFILE: &str = "deploy/container/Containerfile";
const MANIFEST: &str = "deploy/kubernetes/tokenwarden.yaml";
const ALERTS: &str = "deploy/prometheus/tokenwarden-alerts.yaml";
/// The environment variable of the unit's ExecStart that the env file sets.
const ARGS_VARIABLE: &str = "TOKENWARDEN_ARGS";
/// `systemd-analyze security` exposure (0-100, printed divided by 10) the unit must stay under.
const MAX_EXPOSURE: &str = "20";

// ---------------------------------------------------------------------------------------------
// Reading the files

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_path(rel);
    or_die(
        fs::read_to_string(&path),
        format!("read {}", path.display()),
    )
}

fn yaml(rel: &str) -> Value {
    or_die(
        serde_saphyr::from_str(&read(rel)),
        format!("parse {rel} as YAML"),
    )
}

/// The value of the first `Key=` line of a unit file (or of an env file's `KEY=` line).
fn directive(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(str::to_owned)
}

#[track_caller]
fn unit_directive(key: &str) -> String {
    directive(&read(UNIT), key).unwrap_or_else(|| panic!("{UNIT} has no {key}="))
}

/// The JSON array of a Containerfile instruction (`CMD ["serve", ...]`).
#[track_caller]
fn containerfile_array(instruction: &str) -> Vec<String> {
    let text = read(CONTAINERFILE);
    let prefix = format!("{instruction} ");
    let Some(json) = text.lines().find_map(|l| l.strip_prefix(&prefix)) else {
        panic!("{CONTAINERFILE} has no {instruction} line");
    };
    or_die(
        serde_json::from_str(json),
        format!("parse {instruction} {json} as a JSON array of strings"),
    )
}

#[track_caller]
fn containerfile_word(instruction: &str) -> String {
    let text = read(CONTAINERFILE);
    let prefix = format!("{instruction} ");
    match text.lines().find_map(|l| l.strip_prefix(&prefix)) {
        Some(word) => word.trim().to_owned(),
        None => panic!("{CONTAINERFILE} has no {instruction} line"),
    }
}

/// The manifest's one container.
#[track_caller]
fn manifest_container(pod: &Value) -> &Value {
    let containers = pod["spec"]["containers"].as_array();
    match containers.map(Vec::as_slice) {
        Some([one]) => one,
        _ => panic!("{MANIFEST}: expected exactly one container: {pod}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Each `--flag` of a command line, with its value (`--f=v`, or `--f v` when the next word is
/// not a flag).
fn flags(words: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let Some(rest) = word.strip_prefix("--") else {
            continue;
        };
        match rest.split_once('=') {
            Some((name, value)) => out.push((format!("--{name}"), Some(value.to_owned()))),
            None => {
                let next = words.get(i + 1).filter(|w| !w.starts_with('-')).cloned();
                out.push((word.clone(), next));
            }
        }
    }
    out
}

#[track_caller]
fn flag_value(words: &[String], flag: &str, source: &str) -> String {
    let found = flags(words).into_iter().find(|(name, _)| name == flag);
    match found {
        Some((_, Some(value))) => value,
        _ => panic!("{source} passes no {flag} value: {words:?}"),
    }
}

/// The unit's ExecStart, split as systemd splits a line without quotes.
#[track_caller]
fn exec_start() -> Vec<String> {
    let line = unit_directive("ExecStart");
    assert!(
        !line.contains(['"', '\'', '\\']),
        "ExecStart has quoting this test does not split: {line}"
    );
    line.split_whitespace().map(str::to_owned).collect()
}

/// The values the env file gives TOKENWARDEN_ARGS, the commented-out examples included.
fn env_file_args() -> Vec<Vec<String>> {
    let prefix = format!("{ARGS_VARIABLE}=");
    read(ENV_FILE)
        .lines()
        .filter_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix(&prefix))
        .map(|v| {
            v.trim_matches('"')
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The `serve` command lines of the README's "Running in production" section: the words
/// after `serve` on each line that runs it.
fn readme_serve_lines() -> Vec<Vec<String>> {
    let readme = read("README.md");
    let Some(start) = readme.find("\n## Running in production\n") else {
        panic!("README.md has no \"## Running in production\" section");
    };
    let section = &readme[start + 1..];
    let section = section[3..]
        .find("\n## ")
        .map_or(section, |end| &section[..end + 3]);
    section
        .lines()
        .filter_map(|l| l.split_once(" serve "))
        .filter(|(before, _)| before.contains("tokenwarden"))
        .map(|(_, after)| after.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// What the binary under test prints for `serve --help`.
fn serve_help() -> String {
    let out = or_die(
        Command::new(tokenwarden_bin())
            .args(["serve", "--help"])
            .output(),
        "run tokenwarden serve --help",
    );
    assert!(out.status.success(), "serve --help: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The long flags `tokenwarden serve --help` lists.
fn serve_flags() -> BTreeSet<String> {
    let help = serve_help();
    let mut found = BTreeSet::new();
    for line in help.lines().map(str::trim_start) {
        // The option column: `-h, --help`, `--data-dir <DATA_DIR>`; the description follows.
        for word in line.split_whitespace() {
            if !word.starts_with(['-', '<']) {
                break;
            }
            if word.starts_with("--") {
                found.insert(word.trim_end_matches(',').to_owned());
            }
        }
    }
    assert!(
        found.contains("--data-dir") && found.contains("--secure-port") && found.len() > 20,
        "could not read the flags of serve --help:\n{help}"
    );
    found
}

/// `serve --help`'s `[default: X]` of a flag.
fn serve_default(flag: &str) -> String {
    let help = serve_help();
    let line = help
        .lines()
        .map(str::trim_start)
        .find(|l| l.split_whitespace().next() == Some(flag));
    let default = line
        .and_then(|l| l.split("[default: ").nth(1))
        .and_then(|d| d.split(']').next());
    match default {
        Some(d) => d.to_owned(),
        None => panic!("serve --help shows no default for {flag}:\n{help}"),
    }
}

/// Every `serve` command line the deploy files and the README give, by where it comes from.
fn serve_command_lines() -> Vec<(String, Vec<String>)> {
    let mut lines = Vec::new();
    let exec = exec_start();
    assert!(
        exec.first().is_some_and(|b| b.ends_with("/tokenwarden"))
            && exec.get(1).is_some_and(|s| s == "serve"),
        "ExecStart must run `<path>/tokenwarden serve`: {exec:?}"
    );
    let variable = format!("${ARGS_VARIABLE}");
    assert!(
        exec.contains(&variable),
        "ExecStart must pass {variable}: {exec:?}"
    );
    lines.push((format!("{UNIT} ExecStart"), exec[2..].to_vec()));
    let env = env_file_args();
    assert!(
        env.len() >= 2,
        "{ENV_FILE} should set {ARGS_VARIABLE} and show an example: {env:?}"
    );
    for (i, args) in env.into_iter().enumerate() {
        lines.push((format!("{ENV_FILE} {ARGS_VARIABLE} #{}", i + 1), args));
    }
    let cmd = containerfile_array("CMD");
    assert_eq!(
        cmd.first().map(String::as_str),
        Some("serve"),
        "CMD: {cmd:?}"
    );
    lines.push((format!("{CONTAINERFILE} CMD"), cmd[1..].to_vec()));
    let pod = yaml(MANIFEST);
    let c = manifest_container(&pod);
    let args = strings(&c["args"]);
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "args: {args:?}"
    );
    lines.push((format!("{MANIFEST} args"), args[1..].to_vec()));
    let readme = readme_serve_lines();
    assert!(
        readme.len() >= 2,
        "README's production section should run `tokenwarden serve` (container and binary): {readme:?}"
    );
    for (i, words) in readme.into_iter().enumerate() {
        lines.push((format!("README.md serve line #{}", i + 1), words));
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// The files against `serve --help` and each other

#[test]
fn every_flag_the_deploy_files_pass_is_a_serve_flag() {
    let known = serve_flags();
    let mut unknown = Vec::new();
    for (source, words) in serve_command_lines() {
        let named = flags(&words);
        assert!(!named.is_empty(), "{source}: no flags");
        for (flag, _) in named {
            if !known.contains(&flag) {
                unknown.push(format!("{source}: {flag}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags that `tokenwarden serve --help` does not list:\n{}\nknown: {known:?}",
        unknown.join("\n")
    );
}

#[test]
fn the_deploy_files_agree_on_data_dir_port_and_user() {
    // systemd: the data dir is the StateDirectory, and the user is the one sysusers creates.
    let exec = exec_start();
    let state = unit_directive("StateDirectory");
    assert_eq!(
        flag_value(&exec, "--data-dir", UNIT),
        format!("/var/lib/{state}"),
        "--data-dir must be the StateDirectory"
    );
    assert_eq!(unit_directive("StateDirectoryMode"), "0700");
    assert_eq!(
        unit_directive("Type"),
        "exec",
        "the server does not speak sd_notify"
    );
    assert_eq!(unit_directive("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(
        unit_directive("EnvironmentFile"),
        "-/etc/default/tokenwarden"
    );
    assert_eq!(unit_directive("CapabilityBoundingSet"), "");
    let sysusers = read(SYSUSERS);
    let user = unit_directive("User");
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", user.as_str()])),
        "{SYSUSERS} must create User={user}"
    );

    // Container: CMD's data dir is the VOLUME, the port its EXPOSE, the user numeric.
    let cmd = containerfile_array("CMD");
    let data_dir = flag_value(&cmd, "--data-dir", CONTAINERFILE);
    assert_eq!(containerfile_array("VOLUME"), [data_dir]);
    assert_eq!(containerfile_array("ENTRYPOINT"), ["tokenwarden"]);
    let default_port = serve_default("--secure-port");
    assert_eq!(containerfile_word("EXPOSE"), default_port);
    let bind = flag_value(&cmd, "--bind-address", CONTAINERFILE);
    assert!(
        ["0.0.0.0", "::"].contains(&bind.as_str()),
        "a container must listen beyond its own loopback: --bind-address {bind}"
    );
    let user = containerfile_word("USER");
    let Some((uid, gid)) = user.split_once(':') else {
        panic!("USER {user}: expected numeric uid:gid");
    };
    let uid: i64 = or_die(uid.parse(), format!("USER {user}: a numeric uid"));
    let gid: i64 = or_die(gid.parse(), format!("USER {user}: a numeric gid"));
    assert!(uid > 0, "USER must not be root");

    // Static Pod: a v1 Pod on the host network, non-root, locked down, probing HTTPS on the
    // port it serves, the data dir a hostPath mounted where --data-dir points.
    let pod = yaml(MANIFEST);
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["spec"]["hostNetwork"], true);
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], uid);
    assert_eq!(pod["spec"]["securityContext"]["runAsGroup"], gid);
    let c = manifest_container(&pod);
    assert_eq!(strings(&c["command"]), ["tokenwarden"]);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let args = strings(&c["args"]);
    let bind = flag_value(&args, "--bind-address", MANIFEST);
    assert!(
        ["0.0.0.0", "::"].contains(&bind.as_str()),
        "the kubelet probes the node's address: --bind-address {bind} must cover it"
    );
    let port = flags(&args)
        .into_iter()
        .find(|(f, _)| f == "--secure-port")
        .and_then(|(_, v)| v)
        .unwrap_or(default_port);
    let port: i64 = or_die(port.parse(), "parse --secure-port");
    assert_eq!(c["ports"][0]["containerPort"], port);
    let probes = probes(c);
    assert_eq!(
        probes.len(),
        3,
        "startup, liveness and readiness probes: {c}"
    );
    for (kind, probe) in &probes {
        assert_eq!(probe["scheme"], "HTTPS", "{kind}");
        assert_eq!(probe["port"], port, "{kind} must probe the --secure-port");
    }
    let data_dir = flag_value(&args, "--data-dir", MANIFEST);
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let Some(mount) = mounts.iter().find(|m| m["mountPath"] == data_dir.as_str()) else {
        panic!("nothing is mounted at --data-dir {data_dir}: {mounts:?}");
    };
    assert_eq!(
        mount["readOnly"],
        Value::Null,
        "the data dir must be writable"
    );
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let volume = volumes.iter().find(|v| v["name"] == mount["name"]);
    assert!(
        volume.is_some_and(|v| v["hostPath"]["path"].is_string()),
        "the data dir must be a hostPath volume: {volumes:?}"
    );
}

/// The container's probes that make HTTP requests, by kind.
fn probes(container: &Value) -> BTreeMap<&'static str, Value> {
    ["startupProbe", "livenessProbe", "readinessProbe"]
        .into_iter()
        .filter(|kind| container[*kind]["httpGet"].is_object())
        .map(|kind| (kind, container[kind]["httpGet"].clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The manifest's probes on a running server

#[test]
fn the_manifests_probes_answer_anonymously_on_a_running_server() {
    let pod = yaml(MANIFEST);
    let c = manifest_container(&pod);
    // The harness sets the data dir, address and port itself; the rest is passed as written.
    let harness = ["--data-dir", "--bind-address", "--secure-port"];
    let args = strings(&c["args"]);
    let extra: Vec<&str> = args[1..]
        .iter()
        .filter(|a| !harness.iter().any(|h| a.split('=').next() == Some(h)))
        .map(String::as_str)
        .collect();
    let s = Server::start_with(&extra);
    let probes = probes(c);
    assert!(!probes.is_empty(), "no HTTP probes in {MANIFEST}");
    for (kind, probe) in &probes {
        let path = probe["path"].as_str().unwrap_or_default();
        // The kubelet sends no credentials.
        let reply = support::anonymous_get(&s, path);
        ensure(
            &s,
            reply.status == 200 && reply.text() == "ok",
            &format!("{kind} GET {path} without credentials must answer 200 ok"),
            &reply.out,
        );
    }
    // The requests above were really anonymous: a path that needs a user is refused.
    let reply = support::anonymous_get(&s, "/metrics");
    ensure(
        &s,
        reply.status == 403,
        "anonymous GET /metrics must be forbidden",
        &reply.out,
    );
}

// ---------------------------------------------------------------------------------------------
// systemd's own tools

/// `program args`, which must be installed (Debian package `package`).
fn run_tool(program: &str, package: &str, args: &[&str]) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("{program} not runnable ({e}); install it: apt-get install -y {package}"),
    }
}

fn report(out: &std::process::Output) -> String {
    format!(
        "[{}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit with ExecStart's binary replaced by the one under test (there is no
/// /usr/local/bin/tokenwarden here), written to a temp dir under its own name.
fn unit_under_test(dir: &Path) -> PathBuf {
    let exec = exec_start();
    let unit = read(UNIT).replace(&exec[0], tokenwarden_bin());
    let path = dir.join("tokenwarden.service");
    or_die(fs::write(&path, unit), format!("write {}", path.display()));
    path
}

#[test]
fn systemd_analyze_verifies_the_unit_and_rates_it_hardened() {
    let dir = or_die(tempfile::tempdir(), "make a temp dir");
    let unit = unit_under_test(dir.path());
    let unit = unit.to_string_lossy();
    let out = run_tool("systemd-analyze", "systemd", &["verify", &unit]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {unit}\n{}",
        report(&out)
    );
    let threshold = format!("--threshold={MAX_EXPOSURE}");
    let args = ["security", "--offline=yes", &threshold, &unit];
    let out = run_tool("systemd-analyze", "systemd", &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Overall exposure level for tokenwarden.service"),
        "systemd-analyze security rates the unit above {MAX_EXPOSURE}/100\n{}",
        report(&out)
    );
    // The same check fails a unit without the hardening, so it measures something.
    let weak: String = read(UNIT)
        .replace(&exec_start()[0], tokenwarden_bin())
        .lines()
        .filter(|l| {
            ![
                "ProtectSystem=",
                "NoNewPrivileges=",
                "CapabilityBoundingSet=",
                "SystemCallFilter=",
                "PrivateUsers=",
            ]
            .iter()
            .any(|d| l.starts_with(d))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let weak_path = dir.path().join("weak.service");
    or_die(fs::write(&weak_path, weak), "write weak.service");
    let weak_path = weak_path.to_string_lossy();
    let out = run_tool(
        "systemd-analyze",
        "systemd",
        &["security", "--offline=yes", &threshold, &weak_path],
    );
    assert!(
        !out.status.success(),
        "an unhardened unit should exceed the threshold\n{}",
        report(&out)
    );
}

#[test]
fn systemd_sysusers_creates_the_units_user_and_group() {
    let root = or_die(tempfile::tempdir(), "make a temp dir");
    or_die(fs::create_dir(root.path().join("etc")), "make etc/");
    let root_arg = format!("--root={}", root.path().display());
    let file = repo_path(SYSUSERS);
    let file = file.to_string_lossy();
    let out = run_tool("systemd-sysusers", "systemd", &[&root_arg, &file]);
    assert!(out.status.success(), "systemd-sysusers\n{}", report(&out));
    let passwd = or_die(
        fs::read_to_string(root.path().join("etc/passwd")),
        "read passwd",
    );
    let group = or_die(
        fs::read_to_string(root.path().join("etc/group")),
        "read group",
    );
    let user = unit_directive("User");
    let entry: Vec<&str> = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(user.as_str()))
        .map(|l| l.split(':').collect())
        .unwrap_or_default();
    let data_dir = flag_value(&exec_start(), "--data-dir", UNIT);
    assert!(
        entry.len() == 7 && entry[5] == data_dir && entry[6] == "/usr/sbin/nologin",
        "passwd entry of {user} (home {data_dir}, no login shell): {passwd}"
    );
    let unit_group = unit_directive("Group");
    assert!(
        group
            .lines()
            .any(|l| l.split(':').next() == Some(unit_group.as_str())),
        "group {unit_group}: {group}"
    );
}

// ---------------------------------------------------------------------------------------------
// The alert rules against a real server's /metrics

/// What an alert expression reads: metric names, label matchers and grouping labels.
#[derive(Debug, Default)]
struct Reads {
    metrics: BTreeSet<String>,
    /// (metric, label, operator, value)
    matchers: Vec<(String, String, String, String)>,
    grouping: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(String),
}

/// PromQL's tokens, enough for the rules: identifiers, strings, numbers (dropped) and
/// punctuation; range selectors (`[5m]`) are dropped whole.
fn promql_tokens(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    s.push(ch);
                }
                i += 1;
            }
            i += 1;
            toks.push(Tok::Str(s));
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = ["=~", "!~", "!=", "==", ">=", "<="]
                .into_iter()
                .find(|op| two == *op)
                .map_or_else(|| c.to_string(), str::to_owned);
            i += op.chars().count();
            toks.push(Tok::Punct(op));
        }
    }
    toks
}

/// Binary operators and modifiers, and the aggregations, which need not be followed by `(`
/// (`sum without (x) (...)`).
const PROMQL_KEYWORDS: [&str; 20] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "atan2",
];
/// Keywords followed by a list of label names.
const PROMQL_LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn reads(expr: &str) -> Reads {
    let toks = promql_tokens(expr);
    let punct = |i: usize, p: &str| toks.get(i) == Some(&Tok::Punct(p.to_owned()));
    let mut r = Reads::default();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(word)
                if PROMQL_LABEL_LISTS.contains(&word.as_str()) && punct(i + 1, "(") =>
            {
                i += 2;
                while let Some(Tok::Ident(label)) = toks.get(i) {
                    r.grouping.insert(label.clone());
                    i += 1;
                    if punct(i, ",") {
                        i += 1;
                    }
                }
            }
            Tok::Ident(word)
                if punct(i + 1, "(")
                    || PROMQL_KEYWORDS.contains(&word.as_str())
                    || PROMQL_LABEL_LISTS.contains(&word.as_str()) => {}
            Tok::Ident(metric) => {
                r.metrics.insert(metric.clone());
                if punct(i + 1, "{") {
                    i += 2;
                    while let (
                        Some(Tok::Ident(label)),
                        Some(Tok::Punct(op)),
                        Some(Tok::Str(value)),
                    ) = (toks.get(i), toks.get(i + 1), toks.get(i + 2))
                    {
                        r.matchers
                            .push((metric.clone(), label.clone(), op.clone(), value.clone()));
                        i += 3;
                        if punct(i, ",") {
                            i += 1;
                        }
                    }
                    assert!(punct(i, "}"), "a matcher this test cannot read in {expr}");
                }
            }
            _ => {}
        }
        i += 1;
    }
    r
}

/// Sample lines of a Prometheus text exposition: (metric name, labels).
fn samples(exposition: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for line in exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_owned();
        let mut labels = BTreeMap::new();
        if line[end..].starts_with('{') {
            let mut rest = &line[end + 1..];
            while let Some((label, after)) = rest.split_once("=\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let mut close = after.len();
                while let Some((at, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            close = at;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                labels.insert(label.trim_start_matches(',').to_owned(), value);
                rest = &after[(close + 1).min(after.len())..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
        out.push((name, labels));
    }
    out
}

#[test]
fn the_promql_reader_finds_metrics_matchers_and_grouping() {
    let r = reads(
        r#"sum without (result) (rate(a_total{result=~"x|y", job!="j"}[5m])) / on (job) b > 0.1 and c"#,
    );
    assert_eq!(r.metrics, ["a_total", "b", "c"].map(String::from).into());
    assert_eq!(r.grouping, ["result", "job"].map(String::from).into());
    assert_eq!(
        r.matchers,
        [
            ("a_total", "result", "=~", "x|y"),
            ("a_total", "job", "!=", "j")
        ]
        .map(|(m, l, o, v)| (m.into(), l.into(), o.into(), v.into()))
    );
    let s = samples("# HELP a x\na_total{job=\"j\",result=\"x \\\"q\\\"\"} 1\nb 2\n");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].0, "a_total");
    assert_eq!(s[0].1["result"], "x \"q\"");
    assert_eq!(s[1], ("b".to_owned(), BTreeMap::new()));
}

/// Each alert's name and expression.
fn alert_expressions() -> Vec<(String, String)> {
    let rules = yaml(ALERTS);
    let groups = rules["groups"].as_array().cloned().unwrap_or_default();
    let alerts: Vec<(String, String)> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| {
            Some((
                r["alert"].as_str()?.to_owned(),
                r["expr"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert!(alerts.len() >= 3, "alerts of {ALERTS}: {alerts:?}");
    alerts
}

/// A manifest of a `kubernetes.io/service-account-token` Secret for `sa`.
fn legacy_secret(name: &str, sa: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\nmetadata:\n  \
         name: {name}\n  annotations:\n    kubernetes.io/service-account.name: {sa}\n"
    )
}

/// GET /version with this bearer token; returns the status.
fn use_token(s: &Server, name: &str, token: &str) -> u16 {
    let path = s.write_file(&format!("{name}.token"), token);
    request_as(s, Some(Path::new(&path)), "GET", "/version", &[], "").status
}

#[test]
fn every_metric_and_label_the_alert_rules_read_is_exported() {
    let mut s = Server::start();
    s.kubectl_ok(&["create", "sa", "example-sa"]);
    s.kubectl_ok(&["create", "sa", "gone"]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\nspec:\n  serviceAccountName: \
               example-sa\n  containers:\n  - name: example\n    image: nginx\n";
    let pod = s.write_file("p1.yaml", pod);
    s.kubectl_ok(&["create", "-f", &pod]);
    // The kubelet's request: 3607 s, bound to the Pod; stale one hour later.
    let bound = [
        "create",
        "token",
        "example-sa",
        "--duration=3607s",
        "--bound-object-kind=Pod",
        "--bound-object-name=p1",
    ];
    let stale = s.kubectl_ok(&bound).trim().to_owned();
    let secret = s.write_file(
        "secret.yaml",
        &legacy_secret("example-sa-token", "example-sa"),
    );
    s.kubectl_ok(&["create", "-f", &secret]);
    let legacy = poll(
        &s,
        "the legacy token in its Secret",
        Duration::from_secs(20),
        || {
            let out = s.kubectl(&[
                "get",
                "secret",
                "example-sa-token",
                "-o",
                "jsonpath={.data.token}",
            ]);
            let token = STANDARD.decode(out.stdout.trim()).unwrap_or_default();
            match String::from_utf8(token) {
                Ok(t) if out.success() && t.len() > 16 => Ok(t),
                _ => Err(out.to_string()),
            }
        },
    );
    let gone = s.token("default", "gone");
    s.kubectl_ok(&["delete", "sa", "gone"]);

    // Two hours later (the counters start again at the restart): one use of each.
    s.restart_with(&["--testing-clock-offset=2h"]);
    let uses = [
        ("stale", stale.as_str(), 200),
        ("legacy", legacy.as_str(), 200),
        ("gone", gone.as_str(), 401),
        ("garbage", "not-a-token", 401),
    ];
    for (name, token, want) in uses {
        let got = use_token(&s, name, token);
        ensure(
            &s,
            got == want,
            &format!("GET /version with the {name} token: {want}"),
            got,
        );
    }
    let exposition = s.kubectl_ok(&["get", "--raw", "/metrics"]);
    let samples = samples(&exposition);
    let has = |metric: &str, label: &str, value: Option<&str>| {
        samples.iter().any(|(name, labels)| {
            name == metric
                && labels
                    .get(label)
                    .is_some_and(|v| value.is_none_or(|want| v == want))
        })
    };

    let mut missing = Vec::new();
    for (alert, expr) in alert_expressions() {
        let r = reads(&expr);
        if r.metrics.is_empty() {
            missing.push(format!("{alert}: reads no metric ({expr})"));
        }
        for metric in &r.metrics {
            if !samples.iter().any(|(name, _)| name == metric) {
                missing.push(format!("{alert}: no sample of {metric}"));
            }
            for label in &r.grouping {
                if !has(metric, label, None) {
                    missing.push(format!(
                        "{alert}: {metric} has no label {label} to group by"
                    ));
                }
            }
        }
        for (metric, label, op, value) in &r.matchers {
            let wanted: Vec<&str> = match op.as_str() {
                "=" => vec![value.as_str()],
                // Only alternatives of plain words: each must be a value the server exports.
                "=~" if value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_|".contains(c)) =>
                {
                    value.split('|').collect()
                }
                _ => {
                    if !has(metric, label, None) {
                        missing.push(format!("{alert}: {metric} has no label {label}"));
                    }
                    continue;
                }
            };
            for want in wanted {
                if !has(metric, label, Some(want)) {
                    missing.push(format!("{alert}: no sample {metric}{{{label}=\"{want}\"}}"));
                }
            }
        }
    }
    let ours: Vec<&str> = exposition
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.contains("serviceaccount") || l.starts_with("authentication_attempts"))
        })
        .collect();
    ensure(
        &s,
        missing.is_empty(),
        &format!(
            "the alert rules read what the server does not export:\n{}",
            missing.join("\n")
        ),
        ours.join("\n"),
    );
    // The per-ServiceAccount series name the offender the alerts report.
    for metric in [
        "tokenwarden_serviceaccount_stale_tokens_total",
        "tokenwarden_serviceaccount_legacy_tokens_total",
    ] {
        let named = samples.iter().any(|(name, labels)| {
            name == metric
                && labels.get("namespace").map(String::as_str) == Some("default")
                && labels.get("serviceaccount").map(String::as_str) == Some("example-sa")
        });
        ensure(
            &s,
            named,
            &format!("{metric} must name default/example-sa"),
            ours.join("\n"),
        );
    }
}
