//! The etcd backend of [`Store`], on the `etcd-client` crate (etcd's v3 gRPC API).
//!
//! Owns the connection to etcd, the mapping of store keys to etcd keys, the transactions that
//! give create / conditional update / conditional delete their semantics, watch streams and
//! compaction. Must not know Kubernetes types or HTTP.
//!
//! **Layout in etcd** (as kube-apiserver lays it out under `--etcd-prefix`): a store key that
//! starts with [`Options::key_root`] (the registry's `/registry`) is stored under
//! [`Options::prefix`] instead of it, so `/registry/serviceaccounts/default/build` is the etcd
//! key `/registry/serviceaccounts/default/build` with the default prefix and
//! `/tw/serviceaccounts/default/build` with `--etcd-prefix=/tw`. The value is the same JSON
//! document the SQLite store holds in its `value` column (the object as the API serves it,
//! `metadata.resourceVersion` left out, as kube-apiserver stores it); kube-apiserver would
//! store protobuf here, so an etcd shared with a real kube-apiserver is not supported.
//!
//! **Revisions are etcd's**: `mod_revision`, `create_revision` and the response header's
//! revision are passed through unchanged, so resourceVersions are etcd revisions and a client
//! can move between replicas on one etcd. Writes are transactions
//! (`k8s.io/apiserver/pkg/storage/etcd3/store.go` does the same):
//!
//! * create: `if create_revision(key) == 0 then put else get`;
//! * update / delete: `if mod_revision(key) == expected` (or `create_revision(key) > 0`
//!   when unconditional) `then put/delete (with prev_kv) else get`, the `get` telling
//!   `NotFound` from `Conflict`.
//!
//! etcd has no call that returns its compacted revision; [`EtcdStore`] remembers the revision
//! it compacted to, checks it with one read at that revision, and when another client
//! compacted further finds the new one by bisecting with reads (a read below the compacted
//! revision fails with `ErrCompacted`, one at it succeeds).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse, WatchOptions,
};
use tokio::sync::watch;

use super::{
    KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchSource, WatchStream,
    watch_stream,
};

/// How long connecting to an etcd member may take before that member counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take (kube-apiserver's default `--request-timeout` is 60 s; a
/// store call is one round trip, so this is generous).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTP/2 pings that notice a dead connection to a member (kube-apiserver uses 30 s / 10 s;
/// shorter here so that a watch on a dead member ends sooner).
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));

/// etcd's error texts (`go.etcd.io/etcd/server/v3/mvcc/kvstore.go`, `rpctypes/error.go`).
/// How often, and how far apart (growing), a request that could not connect is tried again.
const CONNECT_RETRIES: u32 = 10;
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(50);

const ERR_COMPACTED: &str = "required revision has been compacted";
const ERR_FUTURE_REV: &str = "required revision is a future revision";

/// How to reach etcd and where the keys go.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Client URLs of the members (`--etcd-servers`), `http://` or `https://`.
    pub(crate) endpoints: Vec<String>,
    /// The start of every store key this store is given (the registry's key root); it is
    /// replaced by `prefix` in etcd. Keys outside it are refused.
    pub(crate) key_root: String,
    /// What `key_root` becomes in etcd (`--etcd-prefix`, without a trailing `/`).
    pub(crate) prefix: String,
    /// TLS to etcd (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
    pub(crate) tls: Option<TlsFiles>,
}

/// PEM files for TLS to etcd: the CA that signed the members' certificates (the system roots
/// when `None`), and a client certificate and key when etcd asks for one.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFiles {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
}

/// The etcd store. All calls share one client (one HTTP/2 connection per member).
pub(crate) struct EtcdStore {
    /// `None` once closed.
    client: Mutex<Option<Client>>,
    keys: KeyMap,
    /// The revision this store last saw etcd compacted to (a lower bound: another client
    /// may have compacted further).
    compacted: AtomicI64,
    /// Turns true on close; every watch stream ends when it does.
    closing: watch::Sender<bool>,
}

impl EtcdStore {
    /// Connects to `options.endpoints`. The connection is lazy: a member that is down now is
    /// tried again by each call, and calls fail with [`StoreError::Unavailable`] meanwhile.
    pub(crate) async fn connect(options: &Options) -> Result<EtcdStore, StoreError> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoints given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
            // A member cut off from the quorum refuses instead of serving stale watches.
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        let client = Client::connect(&options.endpoints, Some(connect))
            .await
            .map_err(map_error)?;
        Ok(EtcdStore {
            client: Mutex::new(Some(client)),
            keys: KeyMap {
                root: options.key_root.clone(),
                prefix: options.prefix.clone(),
            },
            compacted: AtomicI64::new(0),
            closing: watch::channel(false).0,
        })
    }

    /// The client, or `Closed`. A clone shares the connection.
    fn client(&self) -> Result<Client, StoreError> {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// The etcd key range `[start, end)` of the store keys starting with `prefix`.
    fn range(&self, prefix: &str) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let start = self.keys.etcd_key(prefix)?;
        Ok((start.clone(), prefix_end(start)))
    }

    /// A read of one key at `revision` that returns nothing: it fails exactly when etcd
    /// cannot serve that revision (compacted or future).
    async fn probe(&self, revision: Revision) -> Result<(), StoreError> {
        let key = self.keys.etcd_key(&self.keys.root)?;
        let options = GetOptions::new().with_count_only().with_revision(revision);
        self.read(key, Some(options)).await?;
        Ok(())
    }

    /// `e` with the revisions etcd's error text leaves out filled in.
    async fn revision_error(&self, e: StoreError, requested: Revision) -> StoreError {
        match e {
            StoreError::Compacted { .. } => match self.compacted_revision().await {
                Ok(compacted) => StoreError::Compacted {
                    requested,
                    compacted,
                },
                Err(e) => e,
            },
            StoreError::FutureRevision { .. } => match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(e) => e,
            },
            other => other,
        }
    }

    /// Refuses a read at, or a watch after, a revision etcd cannot serve.
    async fn check_revision(&self, requested: Revision) -> Result<(), StoreError> {
        // etcd reads at revision 0 mean "now"; revision 1 is the empty store etcd starts at,
        // which has no history before it.
        match self.probe(requested.max(1)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.revision_error(e, requested).await),
        }
    }

    /// Runs `txn` and returns its response; `NotFound` and `Conflict` are the caller's to
    /// tell from the `else` branch's read.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let client = self.client()?;
        retry_connect(|| {
            let (mut client, txn) = (client.clone(), txn.clone());
            async move { client.txn(txn).await }
        })
        .await
        .map_err(map_error)
    }

    /// A range read (`Range`), tried again while no member can be reached.
    async fn read(
        &self,
        key: Vec<u8>,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let client = self.client()?;
        retry_connect(|| {
            let (mut client, key, options) = (client.clone(), key.clone(), options.clone());
            async move { client.get(key, options).await }
        })
        .await
        .map_err(map_error)
    }

    /// Update or delete: the write `op` when the key is live (and at `expected`, if given),
    /// else the error that says why not. Returns the header revision and the previous value.
    async fn write_existing(
        &self,
        key: &str,
        expected: Option<Revision>,
        op: TxnOp,
    ) -> Result<(Revision, KeyValue), StoreError> {
        let ekey = self.keys.etcd_key(key)?;
        let guard = match expected {
            Some(rev) => Compare::mod_revision(ekey.clone(), CompareOp::Equal, rev),
            None => Compare::create_revision(ekey.clone(), CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([op])
            .or_else([TxnOp::get(ekey, None)]);
        let resp = self.txn(txn).await?;
        let revision = header_revision(resp.header())?;
        let responses = resp.op_responses();
        if !resp.succeeded() {
            let current = match responses.first() {
                Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.mod_revision()),
                _ => None,
            };
            return Err(match (current, expected) {
                (Some(actual), Some(expected)) => StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual,
                },
                _ => StoreError::NotFound(key.to_owned()),
            });
        }
        let prev = match responses.first() {
            Some(TxnOpResponse::Put(put)) => put.prev_key().map(|kv| self.keys.kv(kv)),
            Some(TxnOpResponse::Delete(delete)) => {
                delete.prev_kvs().first().map(|kv| self.keys.kv(kv))
            }
            _ => None,
        };
        match prev {
            Some(prev) => Ok((revision, prev?)),
            None => Err(StoreError::Backend(format!(
                "etcd returned no previous value for {key:?}"
            ))),
        }
    }
}

/// Store keys to etcd keys and back: `root` (the start of every store key) is `prefix` in etcd.
#[derive(Debug, Clone)]
struct KeyMap {
    root: String,
    prefix: String,
}

impl KeyMap {
    fn etcd_key(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let rest = key.strip_prefix(self.root.as_str()).ok_or_else(|| {
            StoreError::Backend(format!(
                "key {key:?} is outside the store's root {:?}",
                self.root
            ))
        })?;
        Ok([self.prefix.as_bytes(), rest.as_bytes()].concat())
    }

    fn store_key(&self, key: &[u8]) -> Result<String, StoreError> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .ok_or_else(|| {
                StoreError::Backend(format!(
                    "etcd key {:?} is outside the prefix {:?}",
                    String::from_utf8_lossy(key),
                    self.prefix
                ))
            })?;
        Ok(format!("{}{rest}", self.root))
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.store_key(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }
}

fn tls_options(files: &TlsFiles) -> Result<TlsOptions, StoreError> {
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| StoreError::Backend(format!("cannot read {}: {e}", path.display())))
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?)),
        (None, None) => {}
        _ => {
            return Err(StoreError::Backend(
                "a client certificate for etcd needs both a certificate and a key file".into(),
            ));
        }
    }
    Ok(tls)
}

/// etcd's end of the range of keys starting with `start`: the key with its last byte below
/// 0xFF bumped and the rest cut (clientv3's `GetPrefixRangeEnd`); `[0]` (every key) when
/// there is none.
fn prefix_end(mut start: Vec<u8>) -> Vec<u8> {
    while let Some(last) = start.pop() {
        if last < 0xFF {
            start.push(last + 1);
            return start;
        }
    }
    vec![0]
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Backend("etcd response without a header".into()))
}

/// etcd's errors as [`StoreError`]s. Revision errors come back without their revisions,
/// which [`EtcdStore::revision_error`] fills in. A member that is down, has no leader or
/// timed out is [`StoreError::Unavailable`]: the same call may succeed when retried.
/// Runs `op` again, a little later each time, while it fails to *connect* to a member: such
/// a request never reached etcd, so repeating it is safe, and the client's balanced channel
/// turns to a live member once the dead one's connection has failed. Any other outcome
/// returns at once.
async fn retry_connect<T, F, Fut>(mut op: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut tries: u32 = 0;
    loop {
        match op().await {
            Err(e) if tries < CONNECT_RETRIES && is_connect_error(&e) => {
                tries += 1;
                tokio::time::sleep(CONNECT_RETRY_DELAY * tries).await;
            }
            other => return other,
        }
    }
}

/// Whether `e` says the connection to a member could not be made (as opposed to a request
/// that reached etcd and failed, which must not be repeated blindly).
fn is_connect_error(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable
                && (status.message().contains("connect") || status.message().contains("refused"))
        }
        _ => false,
    }
}

fn map_error(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error;
    use tonic::Code;
    match e {
        Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains(ERR_COMPACTED) {
                StoreError::Compacted {
                    requested: 0,
                    compacted: 0,
                }
            } else if message.contains(ERR_FUTURE_REV) {
                StoreError::FutureRevision {
                    requested: 0,
                    current: 0,
                }
            } else {
                match status.code() {
                    Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Aborted => StoreError::Unavailable(format!("etcd: {message}")),
                    // etcd's own errors carry codes (`rpctypes`); Unknown is tonic's for a
                    // connection that failed or broke ("transport error", "h2 protocol error").
                    Code::Unknown => StoreError::Unavailable(format!("etcd: {message}")),
                    code => StoreError::Backend(format!("etcd: {code:?}: {message}")),
                }
            }
        }
        Error::TransportError(e) => StoreError::Unavailable(format!("etcd: {e}")),
        Error::IoError(e) => StoreError::Unavailable(format!("etcd: {e}")),
        other => StoreError::Backend(format!("etcd: {other}")),
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let key = self.keys.etcd_key(&self.keys.root)?;
        let resp = self
            .read(key, Some(GetOptions::new().with_count_only()))
            .await?;
        header_revision(resp.header())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self.read(self.keys.etcd_key(key)?, None).await?;
        resp.kvs().first().map(|kv| self.keys.kv(kv)).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        let (start, end) = self.range(prefix)?;
        // Strictly after `a` is at or after `a` + NUL, its successor in byte order.
        let from = match start_after {
            Some(a) if a >= prefix => [self.keys.etcd_key(a)?, vec![0]].concat(),
            _ => start,
        };
        let mut options = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        if let Some(at) = at {
            options = options.with_revision(at);
        }
        let resp = match self.read(from, Some(options)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.revision_error(e, at.unwrap_or(0)).await),
        };
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.keys.kv(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ListResult {
            items,
            revision: match at {
                Some(at) => at,
                None => header_revision(resp.header())?,
            },
            more: resp.more(),
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let ekey = self.keys.etcd_key(key)?;
        let txn = Txn::new()
            .when([Compare::create_revision(ekey.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(ekey, value.clone(), None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        let revision = header_revision(resp.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let put = TxnOp::put(
            self.keys.etcd_key(key)?,
            value.clone(),
            Some(PutOptions::new().with_prev_key()),
        );
        let (revision, prev) = self.write_existing(key, expected, put).await?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        let delete = TxnOp::delete(
            self.keys.etcd_key(key)?,
            Some(DeleteOptions::new().with_prev_key()),
        );
        let (revision, prev) = self.write_existing(key, expected, delete).await?;
        Ok((prev, revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let (start, end) = self.range(prefix)?;
        let mut client = self.client()?;
        let closing = self.closing.subscribe();
        // 1. Refuse a compacted or future start now: etcd would accept a future one and
        //    report a compacted one only as the stream's first message.
        self.check_revision(after).await?;
        // 2. Watch from the next revision, with the value each change replaced.
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after + 1)
            .with_prev_key();
        let mut stream = client
            .watch(start, Some(options))
            .await
            .map_err(map_error)?;
        // 3. The first message confirms the watcher exists (or says why it does not).
        let first = stream.message().await.map_err(map_error)?;
        let mut watcher = Watcher {
            keys: self.keys.clone(),
            stream,
            closing,
            last: after,
            pending: VecDeque::new(),
            done: false,
        };
        match first {
            Some(resp) if resp.created() && !resp.canceled() => watcher.take(resp)?,
            Some(resp) => return Err(watcher.cancelled(&resp)),
            None => return Err(StoreError::Unavailable("etcd ended the watch".into())),
        }
        Ok(watch_stream(watcher))
    }

    /// etcd's own compaction (of every key, not just this store's prefix: etcd has one
    /// history). Compacting at the compacted revision again is a no-op, as in the trait.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let result = self
            .client()?
            .compact(revision, Some(CompactionOptions::new()))
            .await;
        match result.map_err(map_error) {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            Err(e @ StoreError::Compacted { .. }) => match self.revision_error(e, revision).await {
                StoreError::Compacted { compacted, .. } if compacted == revision => Ok(()),
                e => Err(e),
            },
            Err(e) => Err(self.revision_error(e, revision).await),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        let known = self.compacted.load(Ordering::Acquire);
        // 1. A read at the revision we know works unless someone compacted further.
        match self.probe(known.max(1)).await {
            Ok(()) => return Ok(known),
            Err(StoreError::Compacted { .. }) => {}
            Err(e) => return Err(e),
        }
        // 2. Bisect (known, head]: reads below the compacted revision fail, at it succeed.
        let (mut lo, mut hi) = (known.max(1), self.current_revision().await?);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self.probe(mid).await {
                Ok(()) => hi = mid,
                Err(StoreError::Compacted { .. }) => lo = mid,
                Err(e) => return Err(e),
            }
        }
        self.compacted.fetch_max(hi, Ordering::AcqRel);
        Ok(hi)
    }

    /// Drops the client (its connections close once the last call in flight returns) and
    /// ends every watch. Closing twice is fine.
    async fn close(&self) -> Result<(), StoreError> {
        drop(
            self.client
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.closing.send_replace(true);
        Ok(())
    }
}

/// The state behind one watch stream.
struct Watcher {
    keys: KeyMap,
    stream: etcd_client::WatchStream,
    closing: watch::Receiver<bool>,
    /// The revision of the last event taken from etcd.
    last: Revision,
    pending: VecDeque<WatchEvent>,
    done: bool,
}

#[async_trait::async_trait]
impl WatchSource for Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done || *self.closing.borrow() {
                return None;
            }
            let message = tokio::select! {
                // The sender lives in the store: both its drop and `close` end the watch.
                _ = self.closing.changed() => return None,
                message = self.stream.message() => message,
            };
            let result = match message {
                Ok(Some(resp)) if resp.canceled() => Err(self.cancelled(&resp)),
                Ok(Some(resp)) => self.take(resp),
                Ok(None) => Err(StoreError::Unavailable("etcd ended the watch".into())),
                Err(e) => Err(map_error(e)),
            };
            if let Err(e) = result {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

impl Watcher {
    /// Queues the events of one response.
    fn take(&mut self, resp: etcd_client::WatchResponse) -> Result<(), StoreError> {
        for event in resp.events() {
            let event = self.event(event)?;
            self.last = event.revision();
            self.pending.push_back(event);
        }
        Ok(())
    }

    /// Why etcd cancelled the watch: compaction overtook it, or something else.
    fn cancelled(&self, resp: &etcd_client::WatchResponse) -> StoreError {
        match resp.compact_revision() {
            0 => StoreError::Unavailable(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            )),
            compacted => StoreError::Compacted {
                requested: self.last,
                compacted,
            },
        }
    }

    fn event(&self, event: &etcd_client::Event) -> Result<WatchEvent, StoreError> {
        let kv = event
            .kv()
            .ok_or_else(|| StoreError::Backend("etcd watch event without a key".into()))?;
        let prev = event.prev_kv().map(|p| self.keys.kv(p)).transpose()?;
        match event.event_type() {
            EventType::Put => Ok(WatchEvent::Put {
                kv: self.keys.kv(kv)?,
                // A create has no previous value, even if etcd sent one from before a delete.
                prev: prev.filter(|_| kv.create_revision() != kv.mod_revision()),
            }),
            EventType::Delete => match prev {
                Some(prev) => Ok(WatchEvent::Delete {
                    prev,
                    revision: kv.mod_revision(),
                }),
                // kube-apiserver's watcher fails the same way ("etcd event received with
                // PrevKv=nil").
                None => Err(StoreError::Backend(
                    "etcd delete event without the deleted value".into(),
                )),
            },
        }
    }
}

#[cfg(test)]
#[path = "../../tests/support/etcd.rs"]
#[allow(dead_code)]
mod test_etcd;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::test_etcd::Etcd;
    use super::*;
    use crate::store::conformance::{conformance_tests, next_event, next_item, with_guard};

    fn options(etcd: &Etcd, key_root: &str, prefix: &str) -> Options {
        Options {
            endpoints: vec![etcd.url().to_owned()],
            key_root: key_root.to_owned(),
            prefix: prefix.to_owned(),
            tls: None,
        }
    }

    /// A store on an etcd of its own: the cases assert the global revision and compact the
    /// whole history, so they cannot share one etcd even under different prefixes.
    async fn fresh_store() -> Arc<dyn Store> {
        let etcd = Etcd::start();
        let store = EtcdStore::connect(&options(&etcd, "", "/conformance/"))
            .await
            .unwrap();
        with_guard(Arc::new(store), etcd)
    }

    conformance_tests!(fresh_store);

    #[tokio::test]
    async fn keys_are_laid_out_under_the_prefix_and_nothing_else_is_seen() {
        let etcd = Etcd::start();
        let s = EtcdStore::connect(&options(&etcd, "/registry", "/tw"))
            .await
            .unwrap();
        let kv = s
            .create("/registry/serviceaccounts/default/build", b"{}".to_vec())
            .await
            .unwrap();
        let mut raw = Client::connect([etcd.url()], None).await.unwrap();
        let got = raw
            .get("/tw/serviceaccounts/default/build", None)
            .await
            .unwrap();
        assert_eq!(got.kvs()[0].value(), b"{}");
        assert_eq!(got.kvs()[0].mod_revision(), kv.mod_revision);
        // Keys beside the prefix (another cluster's, "/twx") stay invisible.
        raw.put("/twx/serviceaccounts/a", "x", None).await.unwrap();
        raw.put("/registry/serviceaccounts/a", "x", None)
            .await
            .unwrap();
        let all = s.list("/registry/", None, 0, None).await.unwrap();
        assert_eq!(all.items, [kv]);
        assert!(matches!(
            s.get("/elsewhere").await,
            Err(StoreError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn compaction_by_another_client_is_found() {
        let etcd = Etcd::start();
        let s = EtcdStore::connect(&options(&etcd, "", "/a/"))
            .await
            .unwrap();
        let other = EtcdStore::connect(&options(&etcd, "", "/b/"))
            .await
            .unwrap();
        let mut revs = Vec::new();
        for i in 0..40 {
            revs.push(
                s.create(&format!("k{i}"), vec![])
                    .await
                    .unwrap()
                    .mod_revision,
            );
        }
        s.compact(revs[3]).await.unwrap();
        assert_eq!(s.compacted_revision().await.unwrap(), revs[3]);
        assert_eq!(other.compacted_revision().await.unwrap(), revs[3]);
        other.compact(revs[29]).await.unwrap();
        assert_eq!(s.compacted_revision().await.unwrap(), revs[29]);
        match s.list("", None, 0, Some(revs[10])).await {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (revs[10], revs[29])),
            other => panic!("expected Compacted, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_unavailable_and_a_watch_ends_with_an_error() {
        let mut etcd = Etcd::start();
        let s = EtcdStore::connect(&options(&etcd, "", "/u/"))
            .await
            .unwrap();
        let kv = s.create("k", vec![1]).await.unwrap();
        let mut w = s.watch("", kv.mod_revision).await.unwrap();
        etcd.kill();
        match s.get("k").await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("a down etcd is a retryable error, got {other:?}"),
        }
        match next_item(&mut w).await {
            Some(Err(StoreError::Unavailable(_))) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(
            next_item(&mut w).await.is_none(),
            "the error is the last item"
        );
        // The same store works again once etcd is back, without reconnecting by hand.
        etcd.restart();
        let mut got = None;
        for _ in 0..100 {
            match s.get("k").await {
                Ok(found) => {
                    got = found;
                    break;
                }
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(got, Some(kv.clone()), "the write survived etcd's kill -9");
        let mut w = s.watch("", 0).await.unwrap();
        assert_eq!(next_event(&mut w).await.key(), "k");
    }

    #[test]
    fn prefix_end_is_clientv3s() {
        assert_eq!(prefix_end(b"/a/".to_vec()), b"/a0");
        assert_eq!(prefix_end(vec![b'a', 0xFF]), b"b");
        assert_eq!(prefix_end(vec![0xFF]), [0]);
        assert_eq!(prefix_end(vec![]), [0]);
    }
}
