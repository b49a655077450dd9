//! A real single-member etcd (`/usr/bin/etcd`, Debian's `etcd-server`) for tests: a free
//! loopback port, a temp data dir (in `/dev/shm` when there is one: etcd fsyncs every write),
//! killed and removed on drop. Used by the store's unit tests (through `#[path]`) and by the
//! integration tests, so it is self-contained: std, `tempfile` and `base64` only.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) const ETCD: &str = "/usr/bin/etcd";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One etcd process. Dropping it kills the process and removes its data.
pub(crate) struct Etcd {
    child: Option<Child>,
    name: String,
    url: String,
    peer_url: String,
    /// `--initial-cluster`: every member's `name=peer-url`.
    initial_cluster: String,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts a single-member etcd and waits until it serves its client port.
    pub(crate) fn start() -> Etcd {
        let mut etcd = Etcd::member("test");
        etcd.initial_cluster = format!("test={}", etcd.peer_url);
        etcd.spawn();
        etcd
    }

    /// A member not started yet, on its own ports and data dir.
    fn member(name: &str) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server package (.ci/run does)"
        );
        let shm = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        builder.prefix("tw-etcd-");
        let dir = match shm.is_dir() {
            true => builder.tempdir_in(shm),
            false => builder.tempdir(),
        }
        .unwrap_or_else(|e| panic!("cannot make a dir for etcd: {e}"));
        Etcd {
            child: None,
            name: name.to_owned(),
            url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            initial_cluster: String::new(),
            dir,
        }
    }

    /// The client URL, for `--etcd-servers`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Kills etcd (SIGKILL) and waits for it; its data stays for [`Etcd::restart`].
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    /// Starts the process without waiting: a cluster's members are healthy only once a
    /// quorum of them runs.
    fn launch(&mut self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("etcd.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err_file = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let child = Command::new(ETCD)
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={}", self.url))
            .arg(format!("--advertise-client-urls={}", self.url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"));
        self.child = Some(child);
    }

    /// Waits until `/health` says the member has a leader and serves reads.
    fn wait_ready(&mut self) {
        let start = Instant::now();
        let addr = self.url.trim_start_matches("http://").to_owned();
        while start.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited with {status}:\n{}", self.log());
            }
            if health(&addr) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "etcd was not healthy within {READY_TIMEOUT:?}:\n{}",
            self.log()
        );
    }

    /// The raw `RangeResponse` (JSON, through etcd's gRPC gateway) for `key`: what etcd
    /// itself holds, with keys and values base64-encoded as the gateway sends them.
    pub(crate) fn range(&self, key: &str) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let body = format!("{{\"key\":\"{b64}\"}}");
        let addr = self.url.trim_start_matches("http://");
        let request = format!(
            "POST /v3/kv/range HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut conn = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("cannot connect to etcd at {addr}: {e}"));
        std::io::Write::write_all(&mut conn, request.as_bytes())
            .unwrap_or_else(|e| panic!("cannot send to etcd: {e}"));
        let mut response = String::new();
        conn.read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("cannot read from etcd: {e}"));
        match response.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_owned(),
            None => panic!("etcd's answer has no body: {response}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

/// A cluster of etcd members on loopback (each killed and removed on drop).
pub(crate) struct EtcdCluster {
    members: Vec<Etcd>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one is healthy.
    pub(crate) fn start(n: usize) -> EtcdCluster {
        let mut members: Vec<Etcd> = (0..n).map(|i| Etcd::member(&format!("m{i}"))).collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial.clone();
            m.launch();
        }
        for m in &mut members {
            m.wait_ready();
        }
        EtcdCluster { members }
    }

    /// Every client URL, comma-separated, for `--etcd-servers`.
    pub(crate) fn urls(&self) -> String {
        let urls: Vec<&str> = self.members.iter().map(Etcd::url).collect();
        urls.join(",")
    }

    /// Kills member `i` (SIGKILL); its data stays for [`EtcdCluster::restart`].
    pub(crate) fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again and waits until it is healthy.
    pub(crate) fn restart(&mut self, i: usize) {
        self.members[i].spawn();
    }

    /// Starts member `i` again without waiting (it is healthy only with a quorum).
    pub(crate) fn relaunch(&mut self, i: usize) {
        self.members[i].launch();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET /health` over plain HTTP/1.0: `{"health":"true"}` once a leader is elected.
fn health(addr: &str) -> bool {
    let Ok(mut conn) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if std::io::Write::write_all(&mut conn, request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// A loopback port that was free a moment ago and that this process has not handed out
/// before: the kernel may give the same ephemeral port to two binds of port 0 in a row, and an
/// etcd cluster whose members share a port does not start. The one port allocator of the tests.
pub(crate) fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
            .port();
        if given.insert(port) {
            return port;
        }
    }
}
