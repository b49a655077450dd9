//! Two `tokenwarden serve` replicas on a real three-member etcd (issue 12), black-box: real
//! processes on loopback, each started once, and kubectl 1.32. Replica B joins A's cluster
//! with `--cluster-from A`; both run leader election with short durations so that failover
//! is quick.
//!
//! * a token issued by either replica authenticates on the other, and a Pod deleted through
//!   A makes its token fail on B (cache invalidation from etcd's watch, not a TTL);
//! * a watch on B sees A's writes in order, and a watch started on A's resourceVersion
//!   continues on B with no gap (resourceVersions are etcd revisions);
//! * under a write load on A, one etcd member and then A itself are killed (`kill -9`):
//!   every write A acknowledged is there;
//! * the controllers run on exactly one replica (the `kube-controller-manager` Lease) and move
//!   to the other when the leader is killed;
//! * `/readyz` names the failing `etcd` check while etcd has no quorum and recovers by itself.

mod support;

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::etcd::EtcdCluster;
use support::{Server, Streaming, ensure, poll};

/// Lease settings short enough for a test, in the proportions client-go requires.
const LEASE: [&str; 3] = [
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=1s",
];

fn replica(cluster: &EtcdCluster, first: Option<&Server>) -> Server {
    let etcd = format!("--etcd-servers={}", cluster.urls());
    let mut flags = vec![etcd];
    flags.extend(LEASE.iter().map(|f| f.to_string()));
    if let Some(a) = first {
        flags.push(format!("--cluster-from={}", a.data_dir().display()));
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_with(&flags)
}

fn replica_id(s: &Server) -> String {
    fs::read_to_string(s.data_dir().join("replica-id"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn lease_holder(s: &Server) -> String {
    let out = s.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    if out.success() {
        out.stdout
    } else {
        String::new()
    }
}

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn two_replicas_on_a_three_member_etcd() {
    let mut cluster = EtcdCluster::start(3);
    let mut a = replica(&cluster, None);
    let b = replica(&cluster, Some(&a));

    // Tokens of either replica work on the other.
    a.kubectl_ok(&["create", "namespace", "x"]);
    a.kubectl_ok(&["create", "serviceaccount", "app", "-n", "x"]);
    let from_a = a
        .kubectl_ok(&["create", "token", "app", "-n", "x"])
        .trim()
        .to_string();
    let from_b = b
        .kubectl_ok(&["create", "token", "app", "-n", "x"])
        .trim()
        .to_string();
    let user = "system:serviceaccount:x:app";
    ensure(
        &b,
        b.whoami(&from_a).as_deref() == Ok(user),
        "A's token on B",
        from_a.len(),
    );
    ensure(
        &a,
        a.whoami(&from_b).as_deref() == Ok(user),
        "B's token on A",
        from_b.len(),
    );

    // A Pod deleted through A: its token stops working on B.
    let pod = a.write_file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\n\
         spec: {serviceAccountName: app, containers: [{name: c, image: busybox}]}\n",
    );
    a.kubectl_ok(&["apply", "-f", &pod]);
    let bound = a
        .kubectl_ok(&[
            "create",
            "token",
            "app",
            "-n",
            "x",
            "--bound-object-kind=Pod",
            "--bound-object-name=p",
        ])
        .trim()
        .to_string();
    ensure(&b, b.whoami(&bound).is_ok(), "the pod's token on B", "");
    a.kubectl_ok(&[
        "delete",
        "pod",
        "p",
        "-n",
        "x",
        "--grace-period=0",
        "--force",
    ]);
    poll(
        &b,
        "the deleted pod's token refused on B",
        Duration::from_secs(3),
        || match b.whoami(&bound) {
            Ok(u) => Err(format!("still accepted as {u}")),
            Err(_) => Ok(()),
        },
    );

    // A watch on B sees A's writes, in order.
    let mut watch = Streaming::kubectl(&b, &["get", "configmaps", "-n", "x", "-w", "-o", "name"]);
    watch.wait_for(&b, "the watch's first list", |seen| {
        seen.contains("kube-root-ca.crt")
    });
    for i in 0..5 {
        a.kubectl_ok(&["create", "configmap", &format!("w{i}"), "-n", "x"]);
    }
    // Lines are consumed in order: waiting for each name in turn fails if one came early.
    for i in 0..5 {
        let name = format!("configmap/w{i}");
        watch.wait_for(&b, &format!("{name}, in order"), |line| line == name);
    }
    drop(watch);

    // A watch from A's resourceVersion, resumed on B: nothing missed.
    // (The list's own resourceVersion: `kubectl get -o jsonpath` would print its client-side
    // List's, which is empty.)
    let list = a.kubectl_ok(&["get", "--raw", "/api/v1/namespaces/x/configmaps"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure(&a, !rv.is_empty(), "the list's resourceVersion", &list);
    for name in ["after-1", "after-2"] {
        a.kubectl_ok(&["create", "configmap", name, "-n", "x"]);
    }
    let path = format!(
        "/api/v1/namespaces/x/configmaps?watch=1&resourceVersion={}&timeoutSeconds=2",
        rv.trim()
    );
    let events = b.kubectl_ok(&["get", "--raw", &path]);
    let first = events.find("\"after-1\"");
    let second = events.find("\"after-2\"");
    ensure(
        &b,
        first.is_some() && second.is_some() && first < second && !events.contains("\"w4\""),
        "the events after A's revision, in order, from B",
        &events,
    );

    // A write load on A; meanwhile one etcd member is killed, then A with `kill -9`. Every
    // write A acknowledged is there, read through B.
    let leader_was_a = lease_holder(&b).ends_with(&replica_id(&a));
    let a_pid = a.pid().to_string();
    let a_dead = AtomicBool::new(false);
    let acknowledged = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let name = format!("load-{i}");
                if a.kubectl(&["create", "configmap", &name, "-n", "x"])
                    .success()
                {
                    acknowledged.push(name);
                } else if a_dead.load(Ordering::SeqCst) {
                    break;
                }
            }
            acknowledged
        });
        std::thread::sleep(Duration::from_millis(1500));
        cluster.kill(2);
        std::thread::sleep(Duration::from_millis(1500));
        let killed = Command::new("kill").args(["-9", &a_pid]).status();
        a_dead.store(true, Ordering::SeqCst);
        ensure(&b, killed.is_ok_and(|s| s.success()), "A killed", "");
        writer.join().unwrap_or_default()
    });
    a.kill9();
    ensure(
        &b,
        acknowledged.len() >= 4,
        "writes acknowledged during the load",
        acknowledged.len(),
    );
    cluster.restart(2);
    let listed = b.kubectl_ok(&["get", "configmaps", "-n", "x", "-o", "name"]);
    for name in &acknowledged {
        ensure(
            &b,
            listed.lines().any(|l| l == format!("configmap/{name}")),
            "an acknowledged write",
            name,
        );
    }

    // The controllers move to B within the lease duration, and work there.
    ensure(&b, leader_was_a, "A, started first, led", lease_holder(&b));
    let b_id = replica_id(&b);
    poll(&b, "B holding the lease", WAIT, || {
        let holder = lease_holder(&b);
        holder.ends_with(&b_id).then_some(()).ok_or(holder)
    });
    b.kubectl_ok(&["create", "namespace", "after-failover"]);
    poll(
        &b,
        "the default ServiceAccount made by B's controllers",
        WAIT,
        || {
            let out = b.kubectl(&["get", "serviceaccount", "default", "-n", "after-failover"]);
            out.success().then_some(()).ok_or(out.to_string())
        },
    );

    // No quorum: B's readyz names etcd; quorum back: ready again, by itself.
    cluster.kill(0);
    cluster.kill(1);
    poll(&b, "readyz failing on etcd", WAIT, || {
        let r = b.https("GET", "/readyz?verbose", &[], None);
        (r.status != 200 && r.text().contains("[-]etcd failed"))
            .then_some(())
            .ok_or(r.text())
    });
    cluster.relaunch(0);
    cluster.restart(1);
    poll(&b, "readyz back", WAIT, || {
        let r = b.https("GET", "/readyz", &[], None);
        (r.status == 200).then_some(()).ok_or(r.text())
    });
    a.start_again();
    ensure(
        &a,
        a.whoami(&from_b).as_deref() == Ok(user),
        "A back, B's token on it",
        "",
    );
}
