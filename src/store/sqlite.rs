//! The embedded SQLite backend of [`Store`]: an append-only log of revisions in one file.
//!
//! Owns the schema, the durability settings, the write path, MVCC reads from the log, watch
//! fan-out and compaction. Must not know Kubernetes types or HTTP, and must never run SQLite
//! on an async worker thread: reads go through `spawn_blocking`, writes to the writer thread.
//!
//! The model is kine's (k3s-io/kine `pkg/logstructured/sqllog`, `pkg/drivers/generic`; see
//! `shared/reference/dependencies.md` §2.1), read for facts only:
//!
//! * every write appends one row to `kv`; the row id *is* the revision. A row records the
//!   key, whether it created the key or is a delete tombstone, the key's `create_revision`,
//!   the revision of the key's previous row (`prev_revision`) and the value (for a tombstone,
//!   the deleted value, so the delete event can carry it);
//! * the value of a key at revision `r` is its newest row with id `<= r`, unless that row is
//!   a tombstone;
//! * there is one writer (a thread that owns the write connection and assigns revisions), so
//!   the revision is gap-free by construction and kine's gap filling is not needed. The
//!   `AUTOINCREMENT` counter in `sqlite_sequence` is the head revision, even after compaction
//!   deleted the newest row (a trailing tombstone);
//! * `meta` holds the compacted revision and how far compaction has deleted rows.
//!
//! Writes are group-committed (issue 13). Callers queue their op on a channel and await a
//! reply; the writer thread takes every op already queued (no waiting for more), applies them
//! in arrival order in one IMMEDIATE transaction, each checked against the state left by the
//! ones before it and given the next revision if it passes, and commits once: one fsync for
//! the whole batch. Only after the commit does it advance the head, publish the events in
//! revision order and answer the callers, so an acknowledged write survives `kill -9`
//! exactly as before. A batch that hits a SQLite error is rolled back whole and every op in
//! it gets the error.

use std::collections::VecDeque;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior, params};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;

use super::{
    KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchSource, WatchStream,
    watch_stream,
};

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Live events buffered per watcher; a watcher that falls further behind is ended.
/// Small under test so that lagging is easy to provoke.
const WATCH_BUFFER: usize = if cfg!(test) { 16 } else { 4096 };
/// Rows read per replay query, so a long replay never holds a snapshot open for long.
const REPLAY_PAGE: usize = if cfg!(test) { 7 } else { 1000 };
/// Revisions handled per compaction transaction, so writes can run between batches.
const COMPACT_BATCH: Revision = if cfg!(test) { 5 } else { 1000 };

const COMPACTED: &str = "compacted";
const COMPACT_PROGRESS: &str = "compact_progress";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted', 0), ('compact_progress', 0);
";

const INSERT: &str =
    "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// The newest row of key `?1`.
const LIVE: &str = "SELECT id, deleted, create_revision, value FROM kv WHERE name = ?1
    ORDER BY id DESC LIMIT 1";

/// The newest row at or below revision `?3` of every key in `[?1, ?2)`, minus deleted keys.
/// It walks the `(name, id)` index in key order and stops at the limit, so a page costs
/// its own size (times history per key), not the size of the range.
const LIST: &str = "
SELECT k.name, k.value, k.create_revision, k.id FROM kv k
WHERE k.name >= ?1 AND k.name < ?2 AND k.deleted = 0
  AND k.id = (SELECT MAX(m.id) FROM kv m WHERE m.name = k.name AND m.id <= ?3)
ORDER BY k.name
LIMIT ?4";

/// One compaction batch: for the rows in `(?1, ?2]`, the rows they superseded (named as
/// `prev_revision`) and the rows that are tombstones.
const COMPACT: &str = "DELETE FROM kv WHERE id IN (
    SELECT prev_revision FROM kv WHERE id > ?1 AND id <= ?2
    UNION ALL SELECT id FROM kv WHERE id > ?1 AND id <= ?2 AND deleted = 1)";

const SET_META: &str = "UPDATE meta SET value = ?1 WHERE key = ?2";

/// Rows after `?1` for keys in `[?2, ?3)`, each with the value of the row it replaced.
const REPLAY: &str = "
SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.prev_revision, k.value, p.value
FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision AND k.created = 0 AND k.deleted = 0
WHERE k.id > ?1 AND k.name >= ?2 AND k.name < ?3
ORDER BY k.id
LIMIT ?4";

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The SQLite store. Cheap to share: all state lives behind one `Arc`.
pub(crate) struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The way to the writer thread. `None` once closed; dropping it lets the thread finish
    /// the jobs already queued and stop.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The writer thread, which hands its connection back when it stops. Taken by `close`.
    thread: Mutex<Option<std::thread::JoinHandle<Writer>>>,
    /// Reads run here, so they never wait for a write's fsync (WAL readers see the last
    /// commit). `None` once closed.
    reader: Mutex<Option<Connection>>,
    /// What the writer thread publishes.
    log: Arc<Log>,
    closed: AtomicBool,
    /// Compactions run one at a time, so their progress marker only moves forward.
    compacting: tokio::sync::Mutex<()>,
}

/// The state the writer thread shares with the store. It holds no way to reach the thread,
/// so a store dropped without `close` still stops the thread (its last sender is gone).
struct Log {
    /// The head revision, for `current_revision` without touching SQLite. Advanced only
    /// after a commit.
    head: AtomicI64,
    /// Committed writes, in revision order. Dropped by `close`, which ends live watches.
    events: Mutex<Option<broadcast::Sender<Arc<WatchEvent>>>>,
    /// Batches committed (fsyncs of write batches), so tests can see writes share them.
    commits: AtomicU64,
}

/// The write connection, owned by the writer thread.
struct Writer {
    conn: Connection,
    /// The last committed revision; the next write gets `rev + 1`.
    rev: Revision,
}

/// Work for the writer thread.
enum Job {
    /// A create, update or delete: group-committed with whatever else is queued.
    Write(Write),
    /// Anything else that needs the write connection (compaction), run between batches.
    Run(Box<dyn FnOnce(&mut Writer) + Send>),
}

struct Write {
    key: String,
    op: Op,
    reply: oneshot::Sender<Outcome>,
}

/// What a write's caller is answered: its event, or why it did not happen.
type Outcome = Result<WatchEvent, StoreError>;

enum Op {
    Create(Vec<u8>),
    Update(Vec<u8>, Option<Revision>),
    Delete(Option<Revision>),
}

impl Op {
    /// The bytes this op adds to a batch.
    fn len(&self) -> usize {
        match self {
            Op::Create(value) | Op::Update(value, _) => value.len(),
            Op::Delete(_) => 0,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, a file readable by its owner only.
    pub(crate) fn open(path: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        create_private(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;

        // 1. The writer: WAL plus synchronous=FULL fsyncs the log on every commit, so a
        //    write that returned Ok survives kill -9 and power loss.
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "journal_mode is {mode}, not wal"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        let rev = head_revision(&conn)?;

        // 2. The reader, opened after the writer set up WAL and the schema.
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(BUSY_TIMEOUT)?;

        // 3. The writer thread, which owns the write connection from here on.
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let log = Arc::new(Log {
            head: AtomicI64::new(rev),
            events: Mutex::new(Some(events)),
            commits: AtomicU64::new(0),
        });
        let (jobs, queue) = mpsc::channel();
        let writer = Writer { conn, rev };
        let thread_log = Arc::clone(&log);
        let thread = std::thread::Builder::new()
            .name("tw-sqlite-writer".into())
            .spawn(move || writer.run(&queue, &thread_log))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;

        let inner = Inner {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
            reader: Mutex::new(Some(reader)),
            log,
            closed: AtomicBool::new(false),
            compacting: tokio::sync::Mutex::new(()),
        };
        Ok(Arc::new(SqliteStore {
            inner: Arc::new(inner),
        }))
    }
}

/// Creates the directory (0700) and the file (0600) ourselves: SQLite would use the umask,
/// and it gives the -wal and -shm files the database file's mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // An existing file may have been created with a looser mode.
    fs::set_permissions(path, Permissions::from_mode(0o600))
}

/// Locks a std mutex, ignoring poisoning: a panic inside a critical section leaves the
/// guarded state consistent (a reader's transaction rolls back when dropped; the other
/// guarded values are channel ends and a thread handle, only ever taken whole).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs blocking SQLite work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

/// What a caller gets when the writer thread died (it panicked) before answering. A write
/// that was in its batch may or may not have committed.
fn writer_gone() -> StoreError {
    StoreError::Backend("the SQLite writer thread has stopped".into())
}

impl Inner {
    fn check_open(&self) -> Result<(), StoreError> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(StoreError::Closed),
            false => Ok(()),
        }
    }

    /// Runs `f` in one read transaction: one consistent snapshot of rows, head and meta.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.check_open()?;
        let inner = Arc::clone(self);
        blocking(move || {
            let mut guard = lock(&inner.reader);
            let conn = guard.as_mut().ok_or(StoreError::Closed)?;
            let tx = conn.transaction()?;
            f(&tx)
        })
        .await
    }

    /// Queues `job` for the writer thread. Never blocks (the channel is unbounded: it holds
    /// at most one job per caller awaiting a reply).
    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.check_open()?;
        lock(&self.jobs)
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| writer_gone())
    }

    /// Runs `f` on the writer thread, between two batches of writes.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run(Box::new(move |w| {
            // An error only means the caller stopped waiting.
            let _ = reply.send(f(w));
        })))?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Commits one create, update or delete (in a batch with any others queued meanwhile)
    /// and returns its event once it is durable and published.
    async fn apply(&self, key: &str, op: Op) -> Result<WatchEvent, StoreError> {
        let (reply, answer) = oneshot::channel();
        let key = key.to_owned();
        self.send(Job::Write(Write { key, op, reply }))?;
        answer.await.map_err(|_| writer_gone())?
    }
}

/// The most ops in one batch. At most [`WATCH_BUFFER`], so that one batch alone never
/// overflows a watcher that had caught up.
const MAX_BATCH_OPS: usize = if cfg!(test) { 8 } else { 256 };
/// A batch stops taking ops once their values add up to this many bytes.
const MAX_BATCH_BYTES: usize = 8 << 20;
const _: () = assert!(MAX_BATCH_OPS <= WATCH_BUFFER);

impl Writer {
    /// The writer thread: runs jobs in arrival order until every sender is gone and the
    /// queue is empty, then hands the connection back.
    fn run(mut self, queue: &mpsc::Receiver<Job>, log: &Log) -> Writer {
        // A job taken off the queue while filling a batch, to run after that batch.
        let mut next = None;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match queue.recv() {
                    Ok(job) => job,
                    Err(mpsc::RecvError) => return self,
                },
            };
            let first = match job {
                Job::Run(f) => {
                    f(&mut self);
                    continue;
                }
                Job::Write(write) => write,
            };
            // Batch only what is already queued: a lone writer never waits for company.
            let mut bytes = first.op.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(Job::Write(write)) => {
                        bytes += write.op.len();
                        batch.push(write);
                    }
                    Ok(job) => {
                        next = Some(job);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch, log);
        }
    }

    /// Commits `batch` and answers every caller in it.
    fn commit_batch(&mut self, batch: Vec<Write>, log: &Log) {
        let (ops, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|w| ((w.key, w.op), w.reply)).unzip();
        let outcomes = match self.apply_batch(ops) {
            Ok((outcomes, committed)) => {
                log.commits
                    .fetch_add(u64::from(committed), Ordering::Relaxed);
                outcomes
            }
            Err(e) => {
                // Rolled back: nothing in the batch happened, so nobody may see success.
                let message = match e {
                    StoreError::Backend(message) => message,
                    other => other.to_string(),
                };
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(message.clone())));
                }
                return;
            }
        };
        // Durable now: advance the head, then publish, so a watcher that sees an event can
        // read its revision; then answer, so a caller's next read sees its own write.
        log.head.store(self.rev, Ordering::Release);
        if let Some(tx) = lock(&log.events).as_ref()
            && tx.receiver_count() > 0
        {
            for event in outcomes.iter().flatten() {
                // An error only means the last receiver left meanwhile: nobody to tell.
                let _ = tx.send(Arc::new(event.clone()));
            }
        }
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // An error only means the caller stopped waiting; the write stands.
            let _ = reply.send(outcome);
        }
    }

    /// Applies `ops` in order in one transaction and commits it. Each op gets its own
    /// outcome: a failed check (exists, missing, wrong revision) writes nothing and uses no
    /// revision. The outer error is a SQLite failure: then the whole batch is rolled back
    /// and `self.rev` is unchanged. Also returns whether a commit (an fsync) happened.
    fn apply_batch(&mut self, ops: Vec<(String, Op)>) -> Result<(Vec<Outcome>, bool), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rev = self.rev;
        let mut outcomes = Vec::with_capacity(ops.len());
        for (key, op) in ops {
            // Reads in `tx` see the rows of the earlier ops of this batch.
            let outcome = event_for(live_row(&tx, &key)?, key, op, rev + 1);
            if let Ok(event) = &outcome {
                insert_row(&tx, event)?;
                rev += 1;
            }
            outcomes.push(outcome);
        }
        if rev == self.rev {
            // Every check failed: nothing to make durable (dropping `tx` rolls back).
            return Ok((outcomes, false));
        }
        // Dropping `tx` on a failed COMMIT rolls back what is left of it.
        tx.commit()?;
        self.rev = rev;
        Ok((outcomes, true))
    }
}

/// The event `op` on `key` makes at revision `rev`, given the key's live value; a failed
/// check is the op's error.
fn event_for(
    live: Option<KeyValue>,
    key: String,
    op: Op,
    rev: Revision,
) -> Result<WatchEvent, StoreError> {
    Ok(match op {
        Op::Create(value) => {
            if live.is_some() {
                return Err(StoreError::AlreadyExists(key));
            }
            WatchEvent::Put {
                kv: kv(key, value, rev, rev),
                prev: None,
            }
        }
        Op::Update(value, expected) => {
            let prev = check_expected(live, &key, expected)?;
            let kv = kv(key, value, prev.create_revision, rev);
            WatchEvent::Put {
                kv,
                prev: Some(prev),
            }
        }
        Op::Delete(expected) => {
            let prev = check_expected(live, &key, expected)?;
            WatchEvent::Delete {
                prev,
                revision: rev,
            }
        }
    })
}

/// Appends the row of `event`. The row is the event: replay turns it back into the same event.
fn insert_row(conn: &Connection, event: &WatchEvent) -> Result<(), StoreError> {
    let (created, deleted, kv, prev_revision) = match event {
        WatchEvent::Put { kv, prev } => (
            prev.is_none(),
            false,
            kv,
            prev.as_ref().map_or(0, |p| p.mod_revision),
        ),
        WatchEvent::Delete { prev, .. } => (false, true, prev, prev.mod_revision),
    };
    conn.prepare_cached(INSERT)?.execute(params![
        event.revision(),
        kv.key,
        created,
        deleted,
        kv.create_revision,
        prev_revision,
        kv.value
    ])?;
    Ok(())
}

/// The live value of `key` (its newest row, unless that is a tombstone).
fn live_row(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let row = conn
        .prepare_cached(LIVE)?
        .query_row([key], |r| {
            let kv = kv(key.to_owned(), r.get(3)?, r.get(2)?, r.get(0)?);
            Ok((r.get::<_, bool>(1)?, kv))
        })
        .optional()?;
    Ok(row.filter(|(deleted, _)| !deleted).map(|(_, kv)| kv))
}

/// Optimistic concurrency for update and delete: the key must be live and, when the caller
/// names a revision, still at it (kine's `Compare(mod_revision == N)`).
fn check_expected(
    live: Option<KeyValue>,
    key: &str,
    expected: Option<Revision>,
) -> Result<KeyValue, StoreError> {
    let kv = live.ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
    match expected {
        Some(expected) if expected != kv.mod_revision => Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual: kv.mod_revision,
        }),
        _ => Ok(kv),
    }
}

fn kv(key: String, value: Vec<u8>, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision,
        mod_revision,
    }
}

fn head_revision(conn: &Connection) -> Result<Revision, StoreError> {
    let sql = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'kv'), 0)";
    Ok(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
}

fn meta(conn: &Connection, key: &str) -> Result<Revision, StoreError> {
    let sql = "SELECT value FROM meta WHERE key = ?1";
    Ok(conn.prepare_cached(sql)?.query_row([key], |r| r.get(0))?)
}

/// etcd's rule for reads at, and watches after, a revision.
fn check_revision(
    requested: Revision,
    head: Revision,
    compacted: Revision,
) -> Result<(), StoreError> {
    if requested < compacted {
        Err(StoreError::Compacted {
            requested,
            compacted,
        })
    } else if requested > head {
        Err(StoreError::FutureRevision {
            requested,
            current: head,
        })
    } else {
        Ok(())
    }
}

/// A range bound passed as TEXT from raw bytes: names compare bytewise (the BINARY collation
/// is memcmp), but a bound need not be valid UTF-8.
struct TextBound(Vec<u8>);

impl ToSql for TextBound {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

/// The exclusive upper bound of the keys starting with `prefix`. Keys are UTF-8, which never
/// contains 0xFF and never ends in a byte above 0xBF, so bumping the last byte cannot
/// overflow, and `[0xFF]` is above every key.
fn prefix_end(prefix: &str) -> TextBound {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    TextBound(end)
}

fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Turns a `kv` row (as selected by [`REPLAY`]) back into the event that wrote it.
fn event_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<WatchEvent> {
    let (revision, key): (Revision, String) = (r.get(0)?, r.get(1)?);
    let (created, deleted): (bool, bool) = (r.get(2)?, r.get(3)?);
    let (create_revision, prev_revision): (Revision, Revision) = (r.get(4)?, r.get(5)?);
    let value: Vec<u8> = r.get(6)?;
    if deleted {
        let prev = kv(key, value, create_revision, prev_revision);
        return Ok(WatchEvent::Delete { prev, revision });
    }
    let prev = match created {
        true => None,
        // The replaced row is the key's newest at or below any revision a watch may start
        // after, so compaction has kept it; a NULL here fails loudly as corruption.
        false => Some(kv(key.clone(), r.get(7)?, create_revision, prev_revision)),
    };
    let kv = kv(key, value, create_revision, revision);
    Ok(WatchEvent::Put { kv, prev })
}

/// One page of replay: changes under `prefix` after `after`, and the head of the snapshot.
fn replay_page(
    conn: &Connection,
    prefix: &str,
    after: Revision,
) -> Result<(Vec<WatchEvent>, Revision), StoreError> {
    let head = head_revision(conn)?;
    // A compaction may overtake a watcher between pages; its next rows would be gone.
    check_revision(after, head, meta(conn, COMPACTED)?)?;
    let mut stmt = conn.prepare_cached(REPLAY)?;
    let rows = stmt.query_map(
        params![after, prefix, prefix_end(prefix), sql_limit(REPLAY_PAGE)],
        event_of,
    )?;
    Ok((rows.collect::<Result<_, _>>()?, head))
}

/// The state behind one watch stream: replay from the log page by page, then live events.
struct Watcher {
    inner: Arc<Inner>,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    prefix: String,
    /// Every change up to here was delivered or did not match the prefix.
    last: Revision,
    replaying: bool,
    /// The channel dropped events; whether any of them mattered is known at the next one.
    lagged: bool,
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
            if self.done {
                return None;
            }
            if self.replaying {
                let (prefix, after) = (self.prefix.clone(), self.last);
                match self
                    .inner
                    .read(move |c| replay_page(c, &prefix, after))
                    .await
                {
                    Ok((events, head)) => {
                        if events.len() < REPLAY_PAGE {
                            // Caught up with the snapshot: everything up to its head is
                            // replayed, and `rx` holds every write after our subscription.
                            self.replaying = false;
                            self.last = head;
                        } else if let Some(event) = events.last() {
                            self.last = event.revision();
                        }
                        self.pending.extend(events);
                    }
                    Err(StoreError::Closed) => self.done = true,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(event) => {
                    let revision = event.revision();
                    if revision <= self.last {
                        continue; // already replayed
                    }
                    // After a lag the channel resumes at its oldest kept event. Every
                    // revision is published, so a jump past `last + 1` means one was lost.
                    if std::mem::take(&mut self.lagged) && revision > self.last + 1 {
                        self.done = true;
                        return Some(Err(StoreError::WatchLagged));
                    }
                    self.last = revision;
                    if event.key().starts_with(&self.prefix) {
                        return Some(Ok(WatchEvent::clone(&event)));
                    }
                }
                Err(RecvError::Lagged(_)) => self.lagged = true,
                Err(RecvError::Closed) => self.done = true,
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        Ok(self.inner.log.head.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.inner.read(move |c| live_row(c, &key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        let (prefix, start_after) = (prefix.to_owned(), start_after.map(str::to_owned));
        self.inner
            .read(move |c| {
                let head = head_revision(c)?;
                let revision = at.unwrap_or(head);
                check_revision(revision, head, meta(c, COMPACTED)?)?;
                // One row beyond the limit tells whether more follow.
                let fetch = if limit == 0 {
                    -1
                } else {
                    sql_limit(limit).saturating_add(1)
                };
                // Strictly after `a` is at or after `a` + NUL, its successor in byte order.
                let from = match start_after {
                    Some(a) if a.as_str() >= prefix.as_str() => [a.as_bytes(), b"\0"].concat(),
                    _ => prefix.as_bytes().to_vec(),
                };
                let mut stmt = c.prepare_cached(LIST)?;
                let rows = stmt.query_map(
                    params![TextBound(from), prefix_end(&prefix), revision, fetch],
                    |r| Ok(kv(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                let mut items: Vec<KeyValue> = rows.collect::<Result<_, _>>()?;
                let more = limit > 0 && items.len() > limit;
                items.truncate(if more { limit } else { items.len() });
                Ok(ListResult {
                    items,
                    revision,
                    more,
                })
            })
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        put_kv(self.inner.apply(key, Op::Create(value)).await?)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        put_kv(self.inner.apply(key, Op::Update(value, expected)).await?)
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        match self.inner.apply(key, Op::Delete(expected)).await? {
            WatchEvent::Delete { prev, revision } => Ok((prev, revision)),
            WatchEvent::Put { .. } => {
                Err(StoreError::Backend("internal: delete wrote a put".into()))
            }
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.check_open()?;
        // 1. Subscribe first: every write committed from now on reaches `rx`, and the replay
        //    (which starts later) sees every write before, so nothing falls in between.
        let rx = lock(&self.inner.log.events)
            .as_ref()
            .ok_or(StoreError::Closed)?
            .subscribe();
        // 2. Refuse a compacted or future start now, rather than as the stream's first item.
        self.inner
            .read(move |c| check_revision(after, head_revision(c)?, meta(c, COMPACTED)?))
            .await?;
        let watcher = Watcher {
            inner: Arc::clone(&self.inner),
            rx,
            prefix: prefix.to_owned(),
            last: after,
            replaying: true,
            lagged: false,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(watch_stream(watcher))
    }

    /// Like etcd, a revision below the compacted one is `Compacted` and a future one
    /// `FutureRevision`; compacting at the compacted revision again is a no-op that also
    /// finishes a compaction interrupted by a crash.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let _one_at_a_time = self.inner.compacting.lock().await;
        // 1. Record the new compacted revision before deleting anything, so reads below it
        //    fail instead of seeing rows vanish.
        let mut done = self
            .inner
            .write(move |w| {
                let compacted = meta(&w.conn, COMPACTED)?;
                check_revision(revision, w.rev, compacted)?;
                w.conn.execute(SET_META, params![revision, COMPACTED])?;
                meta(&w.conn, COMPACT_PROGRESS)
            })
            .await?;
        // 2. Delete in short transactions. A row in (done, revision] supersedes the row it
        //    names as `prev_revision`, and a tombstone there is not needed at `revision`
        //    or later. The live row of a key is named by no row and is never a tombstone.
        //    Batches go up in id order, so a key's older rows go no later than its tombstone.
        while done < revision {
            let (lo, hi) = (done, revision.min(done.saturating_add(COMPACT_BATCH)));
            self.inner
                .write(move |w| {
                    let tx = w
                        .conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)?;
                    tx.execute(COMPACT, [lo, hi])?;
                    tx.execute(SET_META, params![hi, COMPACT_PROGRESS])?;
                    Ok(tx.commit()?)
                })
                .await?;
            done = hi;
        }
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.read(|c| meta(c, COMPACTED)).await
    }

    /// Finishes the writes already queued (later ones get `Closed`), stops the writer
    /// thread, closes both connections (checkpointing the WAL) and ends every watch.
    /// Closing twice is fine.
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.closed.store(true, Ordering::Release);
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            // 1. The reader first, so that no snapshot of ours pins the WAL.
            let reader = lock(&inner.reader).take();
            let closed_reader = reader.map_or(Ok(()), |r| r.close().map_err(|(_, e)| e));
            // 2. Dropping the only sender lets the thread run out the queue and return the
            //    connection. Every queued write is answered before it does.
            drop(lock(&inner.jobs).take());
            let thread = lock(&inner.thread).take();
            let writer = thread.map(|t| t.join().map_err(|_| writer_gone()));
            // 3. Dropping the only event sender ends every live watch stream; nothing more
            //    will be published.
            drop(lock(&inner.log.events).take());
            closed_reader?;
            if let Some(w) = writer.transpose()? {
                // 4. Copy every commit into the database file and cut the WAL to zero bytes:
                //    after a clean stop, the .db file alone holds everything (a copy of it is
                //    a complete database). Closing the last connection then removes the -wal.
                checkpoint_truncate(&w.conn)?;
                w.conn.close().map_err(|(_, e)| e)?;
            }
            Ok(())
        })
        .await
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`. Another process reading the database (a running
/// `tokenwarden backup`) can keep it from finishing; that is logged, not an error: the WAL
/// still holds the rest and the next open replays it.
fn checkpoint_truncate(conn: &Connection) -> Result<(), StoreError> {
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        tracing::warn!(
            "the WAL checkpoint at shutdown was blocked by another reader ({done} of {log} pages copied); the -wal file is kept and replayed on the next start"
        );
    }
    Ok(())
}

/// What [`backup`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackupSummary {
    /// The store's revision in the copy.
    pub(crate) revision: Revision,
    /// Live keys in the copy.
    pub(crate) keys: i64,
    /// Size of the copy in bytes.
    pub(crate) bytes: u64,
}

/// How long [`backup`] retries while the source is locked (a writer holding it exclusively
/// is rare in WAL mode: only a checkpoint that truncates does, and briefly).
const BACKUP_BUSY_FOR: Duration = Duration::from_secs(30);

/// Copies the database at `src` into `out` with SQLite's online backup API (sqlite.org/backup.html),
/// safe while a server writes to `src`: the copy is one consistent snapshot (one read
/// transaction over the WAL, which never blocks the writer). `out` is replaced atomically, is
/// created 0600 (it holds Secrets), and is a self-contained file in rollback-journal mode, so
/// it can be copied anywhere; a server opening it switches it back to WAL.
pub(crate) fn backup(src: &Path, out: &Path) -> Result<BackupSummary, StoreError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        StoreError::Backend(format!("cannot {what} {}: {e}", path.display()))
    };
    if !src.is_file() {
        return Err(StoreError::Backend(format!(
            "no database at {}",
            src.display()
        )));
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        // 1. The temp file, private from the start (SQLite would use the umask).
        let _ = fs::remove_file(&tmp);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create", &tmp, e))?;
        // 2. Read-only on the source: the backup never writes to the server's database.
        let from = Connection::open_with_flags(
            src,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        from.busy_timeout(BUSY_TIMEOUT)?;
        let mut to = Connection::open(&tmp)?;
        {
            // 3. All pages in one step (-1): one read transaction, so one snapshot. Smaller
            //    steps would restart whenever the server commits between them.
            let copy = rusqlite::backup::Backup::new(&from, &mut to)?;
            let deadline = std::time::Instant::now() + BACKUP_BUSY_FOR;
            loop {
                match copy.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    _ if std::time::Instant::now() > deadline => {
                        return Err(StoreError::Backend(format!(
                            "{} stayed locked for {BACKUP_BUSY_FOR:?}",
                            src.display()
                        )));
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        drop(from);
        // 4. One self-contained file, checked before it replaces anything.
        let _: String = to.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
        let check: String = to.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Backend(format!(
                "the copy failed its check: {check}"
            )));
        }
        let revision = head_revision(&to)?;
        let keys: i64 = to.query_row(
            "SELECT COUNT(*) FROM kv k WHERE k.deleted = 0
               AND k.id = (SELECT MAX(m.id) FROM kv m WHERE m.name = k.name)",
            [],
            |r| r.get(0),
        )?;
        to.close().map_err(|(_, e)| e)?;
        // 5. Durable, then in place: fsync the file, rename, fsync the directory.
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("sync", &tmp, e))?;
        fs::rename(&tmp, out).map_err(|e| io("rename to", out, e))?;
        fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("sync", dir, e))?;
        let bytes = fs::metadata(out).map_err(|e| io("inspect", out, e))?.len();
        Ok(BackupSummary {
            revision,
            keys,
            bytes,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The new value written by a create or an update.
fn put_kv(event: WatchEvent) -> Result<KeyValue, StoreError> {
    match event {
        WatchEvent::Put { kv, .. } => Ok(kv),
        WatchEvent::Delete { .. } => {
            Err(StoreError::Backend("internal: put wrote a delete".into()))
        }
    }
}

#[cfg(test)]
impl SqliteStore {
    /// Holds the writer thread (between batches) until the returned sender is dropped, so
    /// that the writes queued meanwhile are committed as one batch.
    fn pause_writer(&self) -> mpsc::Sender<()> {
        let (release, released) = mpsc::channel::<()>();
        let paused = Job::Run(Box::new(move |_| {
            // Err once the test drops `release`: that is the signal to go on.
            let _ = released.recv();
        }));
        self.inner.send(paused).expect("the store is open");
        release
    }

    /// Write batches committed so far (each one fsync).
    fn commits(&self) -> u64 {
        self.inner.log.commits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::pin::Pin;

    use super::*;
    use crate::store::conformance::{conformance_tests, next_event, next_item, with_guard};

    async fn fresh_store() -> Arc<dyn Store> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        with_guard(store, dir)
    }

    conformance_tests!(fresh_store);

    /// A store in a directory that does not exist yet.
    fn temp_store() -> (tempfile::TempDir, PathBuf, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/data/store.db");
        let store = SqliteStore::open(&path).unwrap();
        (dir, path, store)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Rows physically present in the log, read with a connection of our own.
    fn row_count(path: &Path) -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn every_acknowledged_write_survives_a_crash_and_a_drop() {
        let (_dir, path, s) = temp_store();
        for i in 0..6 {
            let key = format!("k/{i}");
            s.create(&key, vec![i]).await.unwrap();
            s.update(&key, vec![i, i], None).await.unwrap();
            if i % 2 == 1 {
                s.delete(&key, None).await.unwrap();
            }
        }
        let live = s.list("", None, 0, None).await.unwrap();
        let past = s.list("", None, 0, Some(4)).await.unwrap();
        assert_eq!((live.items.len(), past.items.len()), (3, 2));
        // Like kill -9: the connections are never closed, so the WAL is never checkpointed
        // into the database file and the next open must recover from it.
        std::mem::forget(s);
        let wal = path.with_file_name("store.db-wal");
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the writes sit in the WAL"
        );
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.list("", None, 0, None).await.unwrap().items, live.items);
        // Dropped without close.
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), live.revision);
        assert_eq!(s.list("", None, 0, None).await.unwrap().items, live.items);
        assert_eq!(
            s.list("", None, 0, Some(4)).await.unwrap().items,
            past.items
        );
        let next = s.create("new", vec![]).await.unwrap();
        assert_eq!(next.mod_revision, live.revision + 1);
    }

    #[tokio::test]
    async fn writes_are_fsynced_through_a_wal() {
        let (_dir, _, s) = temp_store();
        let (sync, journal) = s
            .inner
            .write(|w| {
                let sync: i64 = w
                    .conn
                    .pragma_query_value(None, "synchronous", |r| r.get(0))?;
                let journal: String = w
                    .conn
                    .pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                Ok((sync, journal))
            })
            .await
            .unwrap();
        assert_eq!((sync, journal.as_str()), (2, "wal"), "2 is FULL");
    }

    #[tokio::test]
    async fn files_are_owner_only() {
        let (_dir, path, s) = temp_store();
        s.create("k", vec![1]).await.unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&path.with_file_name("store.db-wal")), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        s.close().await.unwrap();
        // An existing file with a looser mode is tightened on open.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(s.get("k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn close_leaves_everything_in_the_database_file() {
        let (_dir, path, s) = temp_store();
        for i in 0..20 {
            s.create(&format!("k/{i}"), vec![i; 100]).await.unwrap();
        }
        let wal = path.with_file_name("store.db-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        s.close().await.unwrap();
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal_len, 0, "the WAL is checkpointed and emptied or removed");
        // The file alone (copied without its -wal/-shm) holds every write.
        let copy = path.with_file_name("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        assert_eq!(row_count(&copy), 20);
    }

    #[tokio::test]
    async fn backup_is_a_private_self_contained_snapshot() {
        let (dir, path, s) = temp_store();
        for i in 0..10 {
            s.create(&format!("k/{i}"), vec![i]).await.unwrap();
        }
        s.delete("k/3", None).await.unwrap();
        let out = dir.path().join("backup.db");
        // Taken while the store is open (a running server holds both connections).
        let summary = backup(&path, &out).unwrap();
        assert_eq!(summary.revision, 11);
        assert_eq!(summary.keys, 9);
        assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());
        assert_eq!(mode(&out), 0o600);
        assert!(!out.with_file_name("backup.db-wal").exists());
        s.create("k/after", vec![]).await.unwrap();
        // Opened as a store, it has the state of the moment it was taken, and takes writes.
        let restored = SqliteStore::open(&out).unwrap();
        assert_eq!(restored.current_revision().await.unwrap(), 11);
        let items = restored.list("k/", None, 0, None).await.unwrap().items;
        assert_eq!(items.len(), 9);
        assert!(restored.get("k/after").await.unwrap().is_none());
        assert_eq!(
            restored.create("k/new", vec![]).await.unwrap().mod_revision,
            12
        );
        // A second backup replaces the first atomically; a missing source is an error.
        restored.close().await.unwrap();
        assert_eq!(backup(&path, &out).unwrap().revision, 12);
        let missing = backup(&dir.path().join("nope.db"), &out).unwrap_err();
        assert!(missing.to_string().contains("no database at"), "{missing}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn revisions_are_gap_free() {
        let (_dir, _, s) = temp_store();
        assert_eq!(
            s.current_revision().await.unwrap(),
            0,
            "an empty store is at 0"
        );
        let mut revs = vec![s.create("a", vec![]).await.unwrap().mod_revision];
        assert!(s.create("a", vec![]).await.is_err());
        assert!(s.update("a", vec![], Some(99)).await.is_err());
        revs.push(s.update("a", vec![1], None).await.unwrap().mod_revision);
        assert!(s.delete("b", None).await.is_err());
        revs.push(s.delete("a", None).await.unwrap().1);
        revs.push(s.create("a", vec![]).await.unwrap().mod_revision);
        assert_eq!(revs, [1, 2, 3, 4], "failed writes use no revision");
    }

    #[tokio::test]
    async fn compaction_deletes_superseded_rows_and_keeps_the_head() {
        let (_dir, path, s) = temp_store();
        // More revisions than one compaction batch, ending in a delete.
        s.create("keep", vec![0]).await.unwrap();
        for i in 1..12 {
            s.update("keep", vec![i], None).await.unwrap();
        }
        s.create("gone", vec![]).await.unwrap();
        let (_, head) = s.delete("gone", None).await.unwrap();
        assert_eq!(row_count(&path), 14);
        s.compact(head - 2).await.unwrap();
        assert_eq!(
            row_count(&path),
            3,
            "keep's last row, gone's create and tombstone"
        );
        s.compact(head).await.unwrap();
        assert_eq!(row_count(&path), 1, "only the live row is left");
        assert_eq!(s.get("keep").await.unwrap().unwrap().value, vec![11]);
        drop(s);
        // The head is the AUTOINCREMENT counter, not the newest row (the tombstone is gone).
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), head);
        assert_eq!(s.compacted_revision().await.unwrap(), head);
        let next = s.create("gone", vec![]).await.unwrap();
        assert_eq!(next.mod_revision, head + 1);
    }

    #[tokio::test]
    async fn a_lagging_watcher_is_ended() {
        let (_dir, _, s) = temp_store();
        let mut w = s.watch("", 0).await.unwrap();
        s.create("first", vec![]).await.unwrap();
        assert_eq!(next_event(&mut w).await.key(), "first");
        for i in 0..(WATCH_BUFFER + 4) {
            s.create(&format!("k/{i}"), vec![]).await.unwrap();
        }
        let mut delivered = 0;
        loop {
            match next_item(&mut w).await {
                Some(Ok(_)) => delivered += 1,
                Some(Err(StoreError::WatchLagged)) => break,
                other => panic!("expected WatchLagged, got {other:?}"),
            }
        }
        assert!(delivered < WATCH_BUFFER + 4);
        assert!(
            next_item(&mut w).await.is_none(),
            "the error is the last item"
        );
    }

    #[tokio::test]
    async fn writes_before_the_first_poll_are_replayed_not_lagged() {
        // The stream replays lazily: a burst before its first poll overflows the channel,
        // but the log already holds every event the channel dropped.
        let (_dir, _, s) = temp_store();
        let mut w = s.watch("k/", 0).await.unwrap();
        let n = WATCH_BUFFER * 2;
        for i in 0..n {
            s.create(&format!("k/{i:03}"), vec![]).await.unwrap();
        }
        for i in 0..n {
            assert_eq!(next_event(&mut w).await.key(), format!("k/{i:03}"));
        }
        let live = s.create("k/live", vec![]).await.unwrap();
        assert_eq!(next_event(&mut w).await.revision(), live.mod_revision);
    }

    #[tokio::test]
    async fn compaction_overtaking_a_replay_ends_it() {
        let (_dir, _, s) = temp_store();
        for i in 0..20 {
            s.create(&format!("k/{i:02}"), vec![]).await.unwrap();
        }
        let mut w = s.watch("", 0).await.unwrap();
        for rev in 1..=REPLAY_PAGE as Revision {
            assert_eq!(next_event(&mut w).await.revision(), rev);
        }
        s.compact(15).await.unwrap();
        match next_item(&mut w).await {
            Some(Err(StoreError::Compacted {
                requested,
                compacted,
            })) => {
                assert_eq!((requested, compacted), (REPLAY_PAGE as Revision, 15));
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert!(next_item(&mut w).await.is_none());
    }

    /// A write that resolves to its revision, so creates, updates and deletes fit one list.
    type Queued<'a> = Pin<Box<dyn Future<Output = Result<Revision, StoreError>> + Send + 'a>>;

    fn put<'a>(
        write: impl Future<Output = Result<KeyValue, StoreError>> + Send + 'a,
    ) -> Queued<'a> {
        Box::pin(async move { write.await.map(|kv| kv.mod_revision) })
    }

    fn del<'a>(
        write: impl Future<Output = Result<(KeyValue, Revision), StoreError>> + Send + 'a,
    ) -> Queued<'a> {
        Box::pin(async move { write.await.map(|(_, revision)| revision) })
    }

    /// Polls each write once, in order: far enough to queue its op for the (paused) writer
    /// thread, which answers it later.
    async fn queue_in_order(writes: Vec<Queued<'_>>) -> Vec<Queued<'_>> {
        let mut queued = Vec::new();
        for mut write in writes {
            assert!(
                futures::poll!(write.as_mut()).is_pending(),
                "answered early"
            );
            queued.push(write);
        }
        queued
    }

    async fn answers(writes: Vec<Queued<'_>>) -> Vec<Result<Revision, StoreError>> {
        let all = futures::future::join_all(writes);
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("every write is answered")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn r13_concurrent_writers_get_gap_free_revisions_and_every_event_once_in_order() {
        const TASKS: usize = 64;
        const EACH: usize = 50;
        let total = (TASKS * EACH) as Revision;
        let (_dir, _, s) = temp_store();
        // The watcher runs alongside the writers. Batches arrive faster than a watcher with
        // this test-sized buffer may drain them; a lagged one resumes from its last revision
        // as a client does, so what it gets must still be every revision once, in order.
        let watched = {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let (mut last, mut resumed) = (0, 0);
                while last < total {
                    let mut w = s.watch("", last).await.unwrap();
                    loop {
                        match next_item(&mut w).await {
                            Some(Ok(event)) => {
                                assert_eq!(event.revision(), last + 1, "in order, once");
                                last += 1;
                                if last == total {
                                    break;
                                }
                            }
                            Some(Err(StoreError::WatchLagged)) => {
                                resumed += 1;
                                break;
                            }
                            other => panic!("at {last}: {other:?}"),
                        }
                    }
                }
                (last, resumed)
            })
        };
        let writers: Vec<_> = (0..TASKS)
            .map(|t| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let mut revisions = Vec::with_capacity(EACH);
                    for i in 0..EACH {
                        let kv = s.create(&format!("k/{t}/{i}"), vec![t as u8]).await;
                        revisions.push(kv.unwrap().mod_revision);
                    }
                    revisions
                })
            })
            .collect();
        let mut all = Vec::new();
        for writer in writers {
            let revisions = writer.await.unwrap();
            assert!(
                revisions.is_sorted(),
                "one writer's writes are in its order"
            );
            all.extend(revisions);
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=total).collect::<Vec<_>>(),
            "gap-free, none shared"
        );
        assert_eq!(s.current_revision().await.unwrap(), total);
        let (last, resumed) = watched.await.unwrap();
        assert_eq!(last, total);
        let commits = s.commits();
        assert!(
            commits < total as u64,
            "{total} writes took {commits} commits (watch resumed {resumed} times)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn r13_every_acknowledged_write_of_concurrent_batches_survives_a_crash() {
        let (_dir, path, s) = temp_store();
        let writers: Vec<_> = (0..32)
            .map(|t| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0..10 {
                        let key = format!("k/{t:02}/{i}");
                        let kv = s.create(&key, vec![i]).await.unwrap();
                        acked.push((key, kv.mod_revision));
                    }
                    acked
                })
            })
            .collect();
        let mut acked = Vec::new();
        for writer in writers {
            acked.extend(writer.await.unwrap());
        }
        assert!(s.commits() < acked.len() as u64, "the writes were batched");
        // Like kill -9: nothing is closed or checkpointed; the next open recovers the WAL.
        std::mem::forget(s);
        let s = SqliteStore::open(&path).unwrap();
        for (key, revision) in &acked {
            let kv = s
                .get(key)
                .await
                .unwrap()
                .expect("an acknowledged write is kept");
            assert_eq!(kv.mod_revision, *revision, "{key}");
        }
        assert_eq!(s.current_revision().await.unwrap(), acked.len() as Revision);
    }

    #[tokio::test]
    async fn r13_queued_writes_share_one_commit() {
        let (_dir, _, s) = temp_store();
        s.create("before", vec![]).await.unwrap();
        assert_eq!(s.commits(), 1, "a lone write commits at once");
        let release = s.pause_writer();
        let n = 8;
        assert!(n <= MAX_BATCH_OPS, "one batch");
        let keys: Vec<String> = (0..n).map(|i| format!("k/{i}")).collect();
        let writes = keys.iter().map(|k| put(s.create(k, vec![1]))).collect();
        let queued = queue_in_order(writes).await;
        drop(release);
        let revisions: Vec<Revision> = answers(queued)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            revisions,
            (2..=n as Revision + 1).collect::<Vec<_>>(),
            "in arrival order"
        );
        assert_eq!(s.commits(), 2, "{n} writes, one commit");
    }

    #[tokio::test]
    async fn r13_each_writer_in_a_batch_gets_its_own_answer_and_failures_use_no_revision() {
        let (_dir, _, s) = temp_store();
        let mut w = s.watch("", 0).await.unwrap();
        let release = s.pause_writer();
        // Later ops see the earlier ones of the same batch.
        let writes = vec![
            put(s.create("a", vec![1])),
            put(s.create("a", vec![2])),
            put(s.update("a", vec![3], Some(1))),
            put(s.update("a", vec![4], Some(1))),
            del(s.delete("b", None)),
            put(s.create("b", vec![5])),
            del(s.delete("b", Some(3))),
            put(s.update("c", vec![6], None)),
        ];
        assert!(writes.len() <= MAX_BATCH_OPS, "one batch");
        let queued = queue_in_order(writes).await;
        drop(release);
        let got = answers(queued).await;
        assert_eq!(s.commits(), 1);
        assert!(matches!(&got[0], Ok(1)), "{got:?}");
        assert!(
            matches!(&got[1], Err(StoreError::AlreadyExists(k)) if k == "a"),
            "{got:?}"
        );
        assert!(matches!(&got[2], Ok(2)), "{got:?}");
        assert!(
            matches!(
                &got[3],
                Err(StoreError::Conflict {
                    expected: 1,
                    actual: 2,
                    ..
                })
            ),
            "{got:?}"
        );
        assert!(
            matches!(&got[4], Err(StoreError::NotFound(k)) if k == "b"),
            "{got:?}"
        );
        assert!(matches!(&got[5], Ok(3)), "{got:?}");
        assert!(matches!(&got[6], Ok(4)), "{got:?}");
        assert!(
            matches!(&got[7], Err(StoreError::NotFound(k)) if k == "c"),
            "{got:?}"
        );
        assert_eq!(s.current_revision().await.unwrap(), 4);
        let a = s.get("a").await.unwrap().unwrap();
        assert_eq!(
            (a.value, a.create_revision, a.mod_revision),
            (vec![3], 1, 2)
        );
        assert!(s.get("b").await.unwrap().is_none());
        // The watch gets the four changes in order, each with the value it replaced.
        let mut events = Vec::new();
        for _ in 0..4 {
            events.push(next_event(&mut w).await);
        }
        let revisions: Vec<Revision> = events.iter().map(WatchEvent::revision).collect();
        assert_eq!(revisions, [1, 2, 3, 4]);
        match &events[1] {
            WatchEvent::Put {
                kv,
                prev: Some(prev),
            } => {
                assert_eq!(
                    (kv.value.as_slice(), prev.value.as_slice()),
                    ([3].as_slice(), [1].as_slice())
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&events[3], WatchEvent::Delete { prev, revision: 4 } if prev.key == "b"));
        // The next write follows on.
        assert_eq!(s.create("c", vec![]).await.unwrap().mod_revision, 5);
        // A batch whose every check fails needs no commit.
        let release = s.pause_writer();
        let queued =
            queue_in_order(vec![put(s.create("a", vec![])), del(s.delete("x", None))]).await;
        drop(release);
        assert!(answers(queued).await.iter().all(Result::is_err));
        assert_eq!(s.commits(), 2);
    }

    #[tokio::test]
    async fn r13_a_sqlite_error_fails_and_rolls_back_the_whole_batch() {
        let (_dir, path, s) = temp_store();
        // A row SQLite refuses to insert, in the middle of a batch.
        s.inner
            .write(|w| {
                let poison = "CREATE TEMP TRIGGER poison BEFORE INSERT ON kv
                    WHEN NEW.name = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END";
                Ok(w.conn.execute_batch(poison)?)
            })
            .await
            .unwrap();
        let release = s.pause_writer();
        let writes = vec![
            put(s.create("x", vec![])),
            put(s.create("poison", vec![])),
            put(s.create("y", vec![])),
        ];
        let queued = queue_in_order(writes).await;
        drop(release);
        for answer in answers(queued).await {
            match answer {
                Err(StoreError::Backend(e)) => assert!(e.contains("poisoned"), "{e}"),
                other => panic!("every write of the batch fails, got {other:?}"),
            }
        }
        assert_eq!((s.commits(), row_count(&path)), (0, 0));
        assert_eq!(s.current_revision().await.unwrap(), 0);
        assert!(s.get("x").await.unwrap().is_none());
        // The revision was not used up: the next write takes 1.
        assert_eq!(s.create("x", vec![]).await.unwrap().mod_revision, 1);
    }

    #[tokio::test]
    async fn r13_close_finishes_queued_writes_and_stops_the_writer() {
        let (_dir, path, s) = temp_store();
        let mut w = s.watch("", 0).await.unwrap();
        s.create("first", vec![]).await.unwrap();
        // Caught up: the rest comes from the channel, which outlives the closed reader.
        assert_eq!(next_event(&mut w).await.revision(), 1);
        let release = s.pause_writer();
        let queued =
            queue_in_order(vec![put(s.create("a", vec![])), put(s.create("b", vec![]))]).await;
        let closing = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.close().await })
        };
        while !s.inner.closed.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            s.create("late", vec![]).await,
            Err(StoreError::Closed)
        ));
        drop(release);
        let got = answers(queued).await;
        assert!(matches!(&got[..], [Ok(2), Ok(3)]), "{got:?}");
        tokio::time::timeout(Duration::from_secs(10), closing)
            .await
            .expect("close returns")
            .unwrap()
            .unwrap();
        assert!(lock(&s.inner.thread).is_none() && lock(&s.inner.jobs).is_none());
        // The watch got both queued writes, then ended.
        assert_eq!(next_event(&mut w).await.revision(), 2);
        assert_eq!(next_event(&mut w).await.revision(), 3);
        assert!(next_item(&mut w).await.is_none());
        s.close().await.unwrap();
        assert_eq!(row_count(&path), 3);
    }

    #[tokio::test]
    async fn r13_a_dead_writer_thread_is_an_error_not_a_hang() {
        let (_dir, _, s) = temp_store();
        let mut w = s.watch("", 0).await.unwrap();
        let (reply, answer) = oneshot::channel::<()>();
        let crash = Job::Run(Box::new(move |_| {
            let _reply = reply;
            panic!("the writer thread dies (on purpose, in a test)");
        }));
        s.inner.send(crash).unwrap();
        // The dropped reply tells us the thread has unwound.
        assert!(answer.await.is_err());
        for _ in 0..2 {
            match s.create("k", vec![]).await {
                Err(StoreError::Backend(e)) => assert!(e.contains("writer thread"), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        let closed = tokio::time::timeout(Duration::from_secs(10), s.close()).await;
        assert!(
            matches!(closed, Ok(Err(StoreError::Backend(_)))),
            "{closed:?}"
        );
        assert!(next_item(&mut w).await.is_none(), "watches end");
    }

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end("a/").0, b"a0");
        assert_eq!(prefix_end("").0, [0xFF]);
        assert_eq!(prefix_end("é").0, [0xC3, 0xAA], "bumps the last UTF-8 byte");
        let end = prefix_end("a/").0;
        for key in ["a/", "a/x", "a/\u{10FFFF}"] {
            assert!(key.as_bytes() < end.as_slice(), "{key} is in range");
        }
        assert!(b"ab".as_slice() >= end.as_slice());
    }
}
