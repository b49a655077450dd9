//! `tokenwarden serve --etcd-servers` on a real etcd (issue 12, first part), black-box: the
//! real binary, a real single-member etcd (`tests/support/etcd.rs`) and kubectl 1.32.
//!
//! * objects live in etcd under `--etcd-prefix` as kube-apiserver lays them out, their
//!   resourceVersion is etcd's `mod_revision`, and no SQLite database is created;
//! * create, get, list, watch and `kubectl create token` work as on SQLite;
//! * objects and tokens survive a restart of the server, a write acknowledged before
//!   `kill -9` of the server survives it, and a second server on another data dir sees them;
//! * `/readyz` names the failing `etcd` check while etcd is down and recovers by itself.

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::etcd::Etcd;
use support::{Server, Streaming, ensure};

fn json(s: &Server, text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| s.fail(format!("{what}: {e}:\n{text}")))
}

/// The value and `mod_revision` etcd itself holds for `key`.
fn etcd_object(s: &Server, etcd: &Etcd, key: &str) -> (Value, String) {
    let range = json(s, &etcd.range(key), "etcd's range response");
    let Some(kv) = range["kvs"].get(0) else {
        s.fail(format!("{key} is not in etcd: {range}"));
    };
    let value = base64::engine::general_purpose::STANDARD
        .decode(kv["value"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| s.fail(format!("etcd value of {key}: {e}")));
    let value = json(s, &String::from_utf8_lossy(&value), "the stored object");
    (
        value,
        kv["mod_revision"].as_str().unwrap_or_default().into(),
    )
}

#[test]
fn serve_keeps_objects_in_etcd_across_restarts_and_kill_9() {
    let etcd = Etcd::start();
    let servers = format!("--etcd-servers={}", etcd.url());
    let mut s = Server::start_with(&[&servers, "--etcd-prefix=/tw/"]);

    // 1. Create, get, list: the object is in etcd, at kube-apiserver's key, at its revision.
    s.kubectl_ok(&["create", "namespace", "ci"]);
    s.kubectl_ok(&["create", "sa", "build", "-n", "ci"]);
    let rv = s.kubectl_ok(&[
        "get",
        "sa",
        "build",
        "-n",
        "ci",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let (stored, mod_revision) = etcd_object(&s, &etcd, "/tw/serviceaccounts/ci/build");
    ensure(
        &s,
        rv == mod_revision,
        "resourceVersion is etcd's mod_revision",
        format!("{rv} vs {mod_revision}"),
    );
    ensure(
        &s,
        stored["metadata"]["name"] == "build",
        "the stored value is the object's JSON",
        &stored,
    );
    let db = s.data_dir().join("tokenwarden.db");
    ensure(&s, !db.exists(), "no SQLite database on etcd", db.display());
    let names = s.kubectl_ok(&["get", "sa", "-n", "ci", "-o", "name"]);
    ensure(
        &s,
        names.lines().any(|l| l == "serviceaccount/build"),
        "build is listed",
        &names,
    );

    // 2. A watch sees a create made after it started; a token of the ServiceAccount works.
    let mut watch = Streaming::kubectl(
        &s,
        &["get", "sa", "-n", "ci", "-w", "--output-watch-events"],
    );
    watch.wait_for(&s, "the build row", |l| l.contains("build"));
    s.kubectl_ok(&["create", "sa", "deployer", "-n", "ci"]);
    watch.wait_for(&s, "ADDED deployer", |l| {
        l.split_whitespace().take(2).eq(["ADDED", "deployer"])
    });
    drop(watch);
    let build_token = s.token("ci", "build");
    let user = "system:serviceaccount:ci:build";
    ensure(
        &s,
        s.whoami(&build_token).unwrap_or_else(|e| s.fail(e)) == user,
        "the token authenticates",
        user,
    );

    // 3. A clean restart: the objects and the token (same keys in the data dir) still work.
    s.restart();
    let names = s.kubectl_ok(&["get", "sa", "-n", "ci", "-o", "name"]);
    for sa in ["serviceaccount/build", "serviceaccount/deployer"] {
        ensure(
            &s,
            names.lines().any(|l| l == sa),
            "listed after a restart",
            &names,
        );
    }
    ensure(
        &s,
        s.whoami(&build_token).unwrap_or_else(|e| s.fail(e)) == user,
        "the token survives a restart",
        user,
    );

    // 4. kill -9 right after an acknowledged write: the write is in etcd.
    s.kubectl_ok(&["create", "sa", "acknowledged", "-n", "ci"]);
    s.kill9();
    etcd_object(&s, &etcd, "/tw/serviceaccounts/ci/acknowledged");
    s.start_again();
    s.kubectl_ok(&["get", "sa", "acknowledged", "-n", "ci"]);

    // 5. A second server with its own data dir on the same etcd serves the same objects (it
    //    joins with --cluster-from: it needs the key-encryption key that opens the signing keys).
    let from = format!("--cluster-from={}", s.data_dir().display());
    let other = Server::start_with(&[&servers, "--etcd-prefix=/tw", &from]);
    let names = other.kubectl_ok(&["get", "sa", "-n", "ci", "-o", "name"]);
    ensure(
        &other,
        names.lines().any(|l| l == "serviceaccount/acknowledged"),
        "seen by a second server",
        &names,
    );
}

#[test]
fn readyz_names_the_etcd_check_while_etcd_is_down() {
    let mut etcd = Etcd::start();
    let mut s = Server::start_with(&[&format!("--etcd-servers={}", etcd.url())]);
    let readyz = |s: &Server| s.https("GET", "/readyz?verbose", &[], None);
    let ready = readyz(&s);
    ensure(&s, ready.status == 200, "ready with etcd up", ready.text());
    ensure(
        &s,
        ready.text().contains("[+]etcd ok"),
        "the etcd check is listed",
        ready.text(),
    );

    etcd.kill();
    let down = support::poll(&s, "readyz failing", Duration::from_secs(20), || {
        let reply = readyz(&s);
        match reply.status {
            500 => Ok(reply.text()),
            _ => Err(reply.text()),
        }
    });
    ensure(
        &s,
        down.contains("[-]etcd failed"),
        "the failing check is named",
        &down,
    );
    ensure(
        &s,
        down.contains("readyz check failed"),
        "kube-apiserver's last line",
        &down,
    );
    let live = s.https("GET", "/livez", &[], None);
    ensure(
        &s,
        live.status == 200,
        "still live: a restart would not help",
        live.text(),
    );

    etcd.restart();
    support::poll(&s, "readyz recovering", Duration::from_secs(20), || {
        let reply = readyz(&s);
        match reply.status {
            200 => Ok(()),
            _ => Err(reply.text()),
        }
    });
    s.kubectl_ok(&["get", "sa"]);
    s.terminate();
}
