//! The embedded SQLite backend (the default store).
//!
//! # Schema
//!
//! ```sql
//! -- every write, in revision order (the history)
//! log(revision INTEGER PRIMARY KEY, key TEXT, deleted INTEGER,
//!     create_revision INTEGER, prev_revision INTEGER NULL, value BLOB)
//! INDEX log_key_revision ON log(key, revision)
//! -- every live key and the log row of its latest value (latest reads and
//! -- lists scan this and fetch values from `log` by revision)
//! current(key TEXT PRIMARY KEY, create_revision INTEGER, mod_revision INTEGER) WITHOUT ROWID
//! -- 'compacted' -> the compacted revision
//! meta(name TEXT PRIMARY KEY, value INTEGER)
//! ```
//!
//! A delete writes a tombstone row (`deleted = 1`, empty value) whose
//! `prev_revision` points at the deleted value; a put's `prev_revision` points at
//! the value it replaced (NULL for a create). `current` is maintained in the same
//! transaction as `log`.
//!
//! # Revisions
//!
//! An empty store is at revision 0; the first write gets revision 1, and every
//! create/update/delete gets the next one. Compaction never consumes a revision.
//! On open the current revision is `max(max(log.revision), compacted)`.
//!
//! # Concurrency
//!
//! One writer connection behind an async mutex; every write runs in
//! `spawn_blocking` and publishes its event to a broadcast channel while still
//! holding the mutex, so the channel carries every revision in commit order.
//! Reads use a small pool of separate connections (WAL mode: readers never wait
//! for the writer). An in-memory store (tests) uses its single connection for
//! everything.
//!
//! # Durability
//!
//! `journal_mode=WAL`, `synchronous=NORMAL`: an acknowledged write is in the
//! WAL file before the call returns, so it survives the process being killed
//! (not necessarily a power loss). A background thread runs PASSIVE
//! checkpoints so commits do not pay for them. Open each database file with one
//! `SqliteStore` only (revisions are assigned in memory by its writer).
//!
//! # Watches
//!
//! A watcher subscribes to the broadcast channel first and then catches up from
//! the `log` table (pages of [`WATCH_PAGE`] events, each page read in one
//! snapshot), then switches to the live channel, skipping what the snapshot
//! already covered. Because the channel carries *every* revision, a watcher
//! detects any gap (and the channel's `Lagged` error) and falls back to catching
//! up from the database, like etcd's unsynced watchers. So a slow watcher never
//! blocks writers, never loses or duplicates an event, and the stream only ends
//! with an error if the history it still needs got compacted
//! ([`Error::Compacted`]), or ends (`None`) when the store is dropped.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};

use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, ProgressRequests, ProgressWatchStream, Result, Revision, Store,
    WatchItem,
};

/// Events read per catch-up query of a watcher.
const WATCH_PAGE: usize = 512;
/// Writes between background WAL checkpoints.
const CHECKPOINT_EVERY: Revision = 64;
/// Revisions per compaction transaction (the writer lock is released between).
const COMPACT_CHUNK: Revision = 5_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             TEXT    NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER,
    value           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log(key, revision);
CREATE TABLE IF NOT EXISTS current (
    key             TEXT    PRIMARY KEY,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// `(current revision, compacted revision)` as seen by the enclosing snapshot.
const SQL_REVISIONS: &str = "
SELECT max(coalesce((SELECT max(revision) FROM log), 0), c.v), c.v
FROM (SELECT coalesce((SELECT value FROM meta WHERE name = 'compacted'), 0) AS v) AS c";

/// Tuning knobs for [`SqliteStore::open_with`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Events buffered per watcher before it falls back to catching up from
    /// the database (default 1024).
    pub watch_buffer: usize,
    /// Idle read connections kept open (default 4; more are opened on demand).
    pub read_pool: usize,
    /// SQLite page cache per connection, in KiB (default 16 MiB).
    pub cache_kib: i64,
    /// Bytes of the database file memory-mapped by each connection (default 256 MiB).
    pub mmap_bytes: i64,
    /// How long a connection waits for a lock held by another process (default 5 s).
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            watch_buffer: 1024,
            read_pool: 4,
            cache_kib: 16 * 1024,
            mmap_bytes: 256 << 20,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A point-in-time summary of the store (for metrics and debugging).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqliteStats {
    pub current_revision: Revision,
    pub compacted_revision: Revision,
    /// Live keys.
    pub keys: u64,
    /// Rows of history (including the latest value of every key and tombstones).
    pub log_rows: u64,
    /// Size of the main database file in bytes (the WAL file not included).
    pub db_bytes: u64,
    /// Open watch streams.
    pub watchers: usize,
    /// Times a watcher overflowed its buffer and caught up from the database
    /// (since open).
    pub watch_catch_ups: u64,
}

/// The SQLite-backed [`Store`]. Cheap to clone (all clones share the database);
/// open each database file with only one `SqliteStore` at a time.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
    events: broadcast::Sender<Arc<Event>>,
    /// Wakes the background checkpoint thread (which ends when every clone of
    /// this sender is gone). `None` in memory.
    checkpoints: Option<SyncSender<()>>,
}

/// Everything shared by the store and its watchers (watchers do not hold the
/// broadcast sender, so dropping the store ends their streams).
struct Db {
    /// `None` for an in-memory database (then `writer` also serves reads).
    path: Option<PathBuf>,
    opts: SqliteOptions,
    writer: Arc<Mutex<Connection>>,
    readers: StdMutex<Vec<Connection>>,
    /// Revision of the last committed write (updated under the writer lock).
    current: AtomicI64,
    compacted: AtomicI64,
    watch_catch_ups: AtomicU64,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path)
            .field("current_revision", &self.db.current.load(Ordering::SeqCst))
            .field("compacted_revision", &self.db.compacted.load(Ordering::SeqCst))
            .finish()
    }
}

trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| Error::Sqlite { context, source })
    }
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend { context: "blocking task", message: e.to_string() })?
}

fn configure(conn: &Connection, opts: &SqliteOptions) -> Result<()> {
    conn.busy_timeout(opts.busy_timeout).ctx("set busy_timeout")?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "cache_size", -opts.cache_kib).ctx("set cache_size")?;
    // Returns the new value as a row; ignore it (mmap may be unavailable).
    conn.query_row(&format!("PRAGMA mmap_size = {}", opts.mmap_bytes), [], |_| Ok(()))
        .optional()
        .ctx("set mmap_size")?;
    Ok(())
}

fn open_writer(path: Option<&Path>, opts: &SqliteOptions) -> Result<Connection> {
    let conn = match path {
        Some(p) => Connection::open(p).ctx("open database")?,
        None => Connection::open_in_memory().ctx("open in-memory database")?,
    };
    configure(&conn, opts)?;
    if path.is_some() {
        // Only takes effect when the database is created (before WAL mode).
        conn.pragma_update(None, "page_size", 8192).ctx("set page_size")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).ctx("set journal_mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Backend {
                context: "set journal_mode",
                message: format!("database refused WAL mode (journal_mode is {mode:?})"),
            });
        }
        // In WAL mode NORMAL loses nothing on a process crash (only on power loss).
        conn.pragma_update(None, "synchronous", "NORMAL").ctx("set synchronous")?;
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20).ctx("set journal_size_limit")?;
        // The background checkpointer normally keeps the WAL far below this;
        // the writer only checkpoints itself if that thread falls behind.
        conn.pragma_update(None, "wal_autocheckpoint", 4000).ctx("set wal_autocheckpoint")?;
    }
    conn.execute_batch(SCHEMA).ctx("create schema")?;
    Ok(conn)
}

/// Start the thread that copies the WAL into the database file (PASSIVE
/// checkpoints never block readers or the writer), so commits do not pay for
/// checkpoints and the WAL stays small (reads of pages in the WAL are slower).
/// It runs every [`CHECKPOINT_EVERY`] writes and every second, and ends when
/// the returned sender and all its clones are dropped.
fn spawn_checkpointer(path: &Path, opts: &SqliteOptions) -> Result<SyncSender<()>> {
    let conn = Connection::open(path).ctx("open checkpoint connection")?;
    conn.busy_timeout(opts.busy_timeout).ctx("set busy_timeout")?;
    conn.pragma_update(None, "synchronous", "NORMAL").ctx("set synchronous")?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            // Runs on every wake-up and timeout; ends when the senders are gone.
            while let Ok(()) | Err(RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(1)) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "sqlite checkpoint failed");
                }
            }
        })
        .map_err(|e| Error::Backend { context: "spawn checkpoint thread", message: e.to_string() })?;
    Ok(tx)
}

fn open_reader(path: &Path, opts: &SqliteOptions) -> Result<Connection> {
    let conn = Connection::open(path).ctx("open read connection")?;
    configure(&conn, opts)?;
    conn.pragma_update(None, "query_only", true).ctx("set query_only")?;
    Ok(conn)
}

/// `(current, compacted)` in the snapshot of `conn`'s open transaction.
fn snapshot_revisions(conn: &Connection) -> Result<(Revision, Revision)> {
    conn.prepare_cached(SQL_REVISIONS)
        .ctx("prepare revisions")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("read revisions")
}

/// The smallest string greater than every string starting with `prefix`
/// (`None`: no bound). UTF-8 byte order, which SQLite's BINARY collation uses,
/// is code point order, so incrementing the last incrementable char works.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A range of keys: `lower` (inclusive unless `exclusive`) up to `upper` (exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyRange {
    lower: String,
    exclusive: bool,
    upper: Option<String>,
}

impl KeyRange {
    fn prefix(prefix: &str) -> Self {
        KeyRange { lower: prefix.to_owned(), exclusive: false, upper: prefix_end(prefix) }
    }

    /// Keys under `prefix` strictly after `start_after`.
    fn list(prefix: &str, start_after: Option<&str>) -> Self {
        let mut r = KeyRange::prefix(prefix);
        if let Some(sa) = start_after {
            if sa >= prefix {
                r.lower = sa.to_owned();
                r.exclusive = true;
            }
        }
        r
    }

    fn contains(&self, key: &str) -> bool {
        let above = if self.exclusive { key > self.lower.as_str() } else { key >= self.lower.as_str() };
        above && self.upper.as_deref().is_none_or(|u| key < u)
    }

    /// SQL condition on `col`, with the bounds bound as `?1` and `?2` (`?2` is
    /// always bound, see [`KeyRange::upper_param`]).
    fn sql(&self, col: &str) -> String {
        let op = if self.exclusive { ">" } else { ">=" };
        match self.upper {
            Some(_) => format!("{col} {op} ?1 AND {col} < ?2"),
            None => format!("{col} {op} ?1"),
        }
    }

    fn upper_param(&self) -> &str {
        self.upper.as_deref().unwrap_or("")
    }
}

fn limit_param(limit: Option<usize>) -> i64 {
    match limit {
        Some(n) if n > 0 => i64::try_from(n).unwrap_or(i64::MAX),
        _ => -1,
    }
}

fn count_param(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `(key, create_revision, mod_revision, value)` columns.
fn row_kv(r: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue { key: r.get(0)?, create_revision: r.get(1)?, mod_revision: r.get(2)?, value: r.get(3)? })
}

impl SqliteStore {
    /// Open (or create) the store at `path`, with default options.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Open (or create) the store at `path`.
    pub fn open_with(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        SqliteStore::build(Some(path.to_owned()), opts)
    }

    /// A fresh store that lives in memory only (for tests).
    pub fn open_in_memory() -> Result<SqliteStore> {
        SqliteStore::build(None, SqliteOptions::default())
    }

    fn build(path: Option<PathBuf>, opts: SqliteOptions) -> Result<SqliteStore> {
        let writer = open_writer(path.as_deref(), &opts)?;
        let (current, compacted) = snapshot_revisions(&writer)?;
        let mut readers = Vec::new();
        if let Some(p) = &path {
            // Fail early if read connections cannot be opened.
            readers.push(open_reader(p, &opts)?);
        }
        let checkpoints = match &path {
            Some(p) => Some(spawn_checkpointer(p, &opts)?),
            None => None,
        };
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        tracing::debug!(path = ?path, current, compacted, "opened sqlite store");
        Ok(SqliteStore {
            db: Arc::new(Db {
                path,
                opts,
                writer: Arc::new(Mutex::new(writer)),
                readers: StdMutex::new(readers),
                current: AtomicI64::new(current),
                compacted: AtomicI64::new(compacted),
                watch_catch_ups: AtomicU64::new(0),
            }),
            events,
            checkpoints,
        })
    }

    /// The database file (`None` when in memory).
    pub fn path(&self) -> Option<&Path> {
        self.db.path.as_deref()
    }

    /// Counts and sizes, read in one snapshot.
    pub async fn stats(&self) -> Result<SqliteStats> {
        let watchers = self.events.receiver_count();
        let watch_catch_ups = self.db.watch_catch_ups.load(Ordering::Relaxed);
        self.db
            .read(move |conn| {
                let tx = conn.transaction().ctx("begin stats")?;
                let (current_revision, compacted_revision) = snapshot_revisions(&tx)?;
                let keys: i64 = tx.query_row("SELECT count(*) FROM current", [], |r| r.get(0)).ctx("count keys")?;
                let log_rows: i64 = tx.query_row("SELECT count(*) FROM log", [], |r| r.get(0)).ctx("count log rows")?;
                let pages: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0)).ctx("page_count")?;
                let page_size: i64 = tx.query_row("PRAGMA page_size", [], |r| r.get(0)).ctx("page_size")?;
                tx.commit().ctx("end stats")?;
                Ok(SqliteStats {
                    current_revision,
                    compacted_revision,
                    keys: count_param(keys),
                    log_rows: count_param(log_rows),
                    db_bytes: count_param(pages.saturating_mul(page_size)),
                    watchers,
                    watch_catch_ups,
                })
            })
            .await
    }

    /// Copy the whole write-ahead log into the database file and truncate it
    /// (waits up to the busy timeout for readers; holds up writes meanwhile).
    /// Not needed for durability: a background thread runs non-blocking
    /// checkpoints every [`CHECKPOINT_EVERY`] writes. Useful before copying
    /// the file or shutting down.
    pub async fn checkpoint(&self) -> Result<()> {
        if self.db.path.is_none() {
            return Ok(());
        }
        let guard = self.db.writer.clone().lock_owned().await;
        blocking(move || guard.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).ctx("checkpoint")).await
    }

    /// Run one write transaction `op(conn, new_revision)` under the writer
    /// lock; on success bump the revision and publish the event (still under the
    /// lock, so the channel sees commit order).
    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, Revision) -> Result<(T, Event)> + Send + 'static,
    {
        let mut guard = self.db.writer.clone().lock_owned().await;
        let db = self.db.clone();
        let events = self.events.clone();
        let checkpoints = self.checkpoints.clone();
        blocking(move || {
            let rev = db.current.load(Ordering::SeqCst) + 1;
            let (out, event) = op(&mut guard, rev)?;
            db.current.store(rev, Ordering::SeqCst);
            // No receivers is fine.
            let _ = events.send(Arc::new(event));
            drop(guard);
            if rev % CHECKPOINT_EVERY == 0 {
                if let Some(c) = checkpoints {
                    // Full: a checkpoint is already pending.
                    let _ = c.try_send(());
                }
            }
            Ok(out)
        })
        .await
    }
}

impl Db {
    /// Run `f` on a read connection (the writer's when in memory), off the runtime.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        if self.path.is_none() {
            let mut guard: OwnedMutexGuard<Connection> = self.writer.clone().lock_owned().await;
            return blocking(move || f(&mut guard)).await;
        }
        let db = self.clone();
        blocking(move || {
            let mut conn = db.take_reader()?;
            let out = f(&mut conn);
            db.put_reader(conn);
            out
        })
        .await
    }

    fn take_reader(&self) -> Result<Connection> {
        if let Some(c) = lock(&self.readers).pop() {
            return Ok(c);
        }
        match &self.path {
            Some(p) => open_reader(p, &self.opts),
            None => Err(Error::Backend {
                context: "open read connection",
                message: "in-memory store has no read connections".into(),
            }),
        }
    }

    fn put_reader(&self, conn: Connection) {
        let mut pool = lock(&self.readers);
        if pool.len() < self.opts.read_pool.max(1) {
            pool.push(conn);
        }
    }
}

/// A read at `requested` must be neither compacted nor in the future.
fn check_revision(requested: Revision, current: Revision, compacted: Revision) -> Result<()> {
    if requested < compacted {
        return Err(Error::Compacted { requested, compacted });
    }
    if requested > current {
        return Err(Error::FutureRevision { requested, current });
    }
    Ok(())
}

fn read_current(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    conn.prepare_cached(
        "SELECT c.key, c.create_revision, c.mod_revision, l.value
         FROM current AS c JOIN log AS l ON l.revision = c.mod_revision WHERE c.key = ?1",
    )
    .ctx("prepare get")?
    .query_row([key], row_kv)
    .optional()
    .ctx("get")
}

/// Events under `range` with revision > `after`, at most `limit`, plus the
/// snapshot's `(current, compacted)`.
fn read_events(
    conn: &mut Connection,
    range: &KeyRange,
    after: Revision,
    limit: usize,
) -> Result<(Vec<Event>, Revision, Revision)> {
    let tx = conn.transaction().ctx("begin watch read")?;
    let (current, compacted) = snapshot_revisions(&tx)?;
    let mut events = Vec::new();
    if after < current && compacted <= after {
        // `+l.key`: walk the revision order, do not sort by the key index.
        let sql = format!(
            "SELECT l.revision, l.key, l.deleted, l.create_revision, l.prev_revision, l.value,
                    p.create_revision, p.value
             FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision
             WHERE l.revision > ?3 AND {}
             ORDER BY l.revision LIMIT ?4",
            range.sql("+l.key")
        );
        let mut stmt = tx.prepare_cached(&sql).ctx("prepare watch read")?;
        let mut rows =
            stmt.query(params![range.lower, range.upper_param(), after, limit_param(Some(limit))]).ctx("watch read")?;
        while let Some(r) = rows.next().ctx("watch read row")? {
            events.push(row_event(r).ctx("watch read column")?);
        }
    }
    tx.commit().ctx("end watch read")?;
    Ok((events, current, compacted))
}

fn row_event(r: &Row<'_>) -> rusqlite::Result<Event> {
    let revision: Revision = r.get(0)?;
    let key: String = r.get(1)?;
    let deleted: bool = r.get(2)?;
    let create_revision: Revision = r.get(3)?;
    let prev_revision: Option<Revision> = r.get(4)?;
    let prev_create: Option<Revision> = r.get(6)?;
    let prev = match (prev_revision, prev_create) {
        (Some(mod_revision), Some(create_revision)) => {
            Some(KeyValue { key: key.clone(), value: r.get(7)?, create_revision, mod_revision })
        }
        // The previous value is gone (cannot happen above the compacted revision).
        _ => None,
    };
    if deleted {
        let prev = prev.unwrap_or_else(|| KeyValue {
            key,
            value: Vec::new(),
            create_revision,
            mod_revision: prev_revision.unwrap_or(revision),
        });
        Ok(Event::Delete { prev, revision })
    } else {
        let kv = KeyValue { key, value: r.get(5)?, create_revision, mod_revision: revision };
        Ok(Event::Put { kv, prev })
    }
}

fn list_at(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    let range = KeyRange::list(prefix, opts.start_after.as_deref());
    // Keys after the last one returned (the lower bound is bound at run time).
    let count_range = KeyRange { exclusive: true, ..range.clone() };
    let limit = limit_param(opts.limit);
    let tx = conn.transaction().ctx("begin list")?;
    let (current, compacted) = snapshot_revisions(&tx)?;
    let mut kvs = Vec::new();
    if let Some(rev) = opts.revision {
        check_revision(rev, current, compacted)?;
    }
    // At the current revision the `current` table is exact (and much cheaper).
    let historical = opts.revision.filter(|&rev| rev < current);
    let (list_sql, count_sql, revision) = match historical {
        None => (
            format!(
                "SELECT c.key, c.create_revision, c.mod_revision, l.value
                 FROM current AS c JOIN log AS l ON l.revision = c.mod_revision
                 WHERE {} ORDER BY c.key LIMIT ?3",
                range.sql("c.key")
            ),
            format!("SELECT count(*) FROM current WHERE {}", count_range.sql("key")),
            current,
        ),
        Some(rev) => {
            let live = "l.revision <= ?4 AND l.deleted = 0 AND NOT EXISTS (
                SELECT 1 FROM log AS n WHERE n.key = l.key AND n.revision > l.revision AND n.revision <= ?4)";
            (
                format!(
                    "SELECT l.key, l.create_revision, l.revision, l.value FROM log AS l
                     WHERE {} AND {live} ORDER BY l.key LIMIT ?3",
                    range.sql("l.key")
                ),
                format!("SELECT count(*) FROM log AS l WHERE {} AND {live}", count_range.sql("l.key")),
                rev,
            )
        }
    };
    {
        let mut stmt = tx.prepare_cached(&list_sql).ctx("prepare list")?;
        let mut rows = if historical.is_some() {
            stmt.query(params![range.lower, range.upper_param(), limit, revision])
        } else {
            stmt.query(params![range.lower, range.upper_param(), limit])
        }
        .ctx("list")?;
        while let Some(r) = rows.next().ctx("list row")? {
            kvs.push(row_kv(r).ctx("list column")?);
        }
    }
    let mut remaining = 0;
    if limit > 0 && i64::try_from(kvs.len()).unwrap_or(i64::MAX) >= limit {
        if let Some(last) = kvs.last() {
            let mut stmt = tx.prepare_cached(&count_sql).ctx("prepare list count")?;
            let n: i64 = if historical.is_some() {
                stmt.query_row(params![last.key, range.upper_param(), limit, revision], |r| r.get(0))
            } else {
                stmt.query_row(params![last.key, range.upper_param()], |r| r.get(0))
            }
            .ctx("list count")?;
            remaining = count_param(n);
        }
    }
    tx.commit().ctx("end list")?;
    Ok(ListResult { kvs, revision, more: remaining > 0, remaining })
}

/// Delete superseded history in `(lo, hi]`, keeping each key's latest value at
/// or below `rev` (unless it is a tombstone). Returns rows deleted.
fn compact_chunk(conn: &mut Connection, lo: Revision, hi: Revision, rev: Revision) -> Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin compact")?;
    let n = tx
        .prepare_cached(
            "DELETE FROM log WHERE revision > ?1 AND revision <= ?2 AND (deleted = 1 OR EXISTS (
                SELECT 1 FROM log AS n WHERE n.key = log.key AND n.revision > log.revision AND n.revision <= ?3))",
        )
        .ctx("prepare compact")?
        .execute(params![lo, hi, rev])
        .ctx("compact")?;
    tx.commit().ctx("commit compact")?;
    Ok(n)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.db.current.load(Ordering::SeqCst))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.db.compacted.load(Ordering::SeqCst))
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        let db = self.db.clone();
        match revision {
            None => self.db.read(move |conn| read_current(conn, &key)).await,
            Some(rev) => {
                check_revision(rev, Revision::MAX, db.compacted.load(Ordering::SeqCst))?;
                self.db
                    .read(move |conn| {
                        let tx = conn.transaction().ctx("begin get")?;
                        let (current, compacted) = snapshot_revisions(&tx)?;
                        check_revision(rev, current, compacted)?;
                        let row = tx
                            .prepare_cached(
                                "SELECT key, create_revision, revision, value, deleted FROM log
                                 WHERE key = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT 1",
                            )
                            .ctx("prepare get at revision")?
                            .query_row(params![key, rev], |r| Ok((row_kv(r)?, r.get::<_, bool>(4)?)))
                            .optional()
                            .ctx("get at revision")?;
                        tx.commit().ctx("end get")?;
                        Ok(row.and_then(|(kv, deleted)| (!deleted).then_some(kv)))
                    })
                    .await
            }
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        if let Some(rev) = opts.revision {
            // Fast path; the authoritative check runs in the read's snapshot.
            check_revision(rev, Revision::MAX, self.db.compacted.load(Ordering::SeqCst))?;
        }
        let prefix = prefix.to_owned();
        self.db.read(move |conn| list_at(conn, &prefix, &opts)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let key = key.to_owned();
        self.write(move |conn, rev| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin create")?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO current (key, create_revision, mod_revision) VALUES (?1, ?2, ?2)
                     ON CONFLICT (key) DO NOTHING",
                )
                .ctx("prepare create")?
                .execute(params![key, rev])
                .ctx("create current")?;
            if inserted == 0 {
                return Err(Error::AlreadyExists { key });
            }
            tx.prepare_cached(
                "INSERT INTO log (revision, key, deleted, create_revision, prev_revision, value)
                 VALUES (?1, ?2, 0, ?1, NULL, ?3)",
            )
            .ctx("prepare log create")?
            .execute(params![rev, key, value])
            .ctx("log create")?;
            tx.commit().ctx("commit create")?;
            let kv = KeyValue { key, value, create_revision: rev, mod_revision: rev };
            Ok((kv.clone(), Event::Put { kv, prev: None }))
        })
        .await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let key = key.to_owned();
        self.write(move |conn, rev| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin update")?;
            let prev = read_current(&tx, &key)?.ok_or_else(|| Error::NotFound { key: key.clone() })?;
            if prev.mod_revision != expected {
                return Err(Error::Conflict { key, expected, actual: prev.mod_revision });
            }
            tx.prepare_cached("UPDATE current SET mod_revision = ?2 WHERE key = ?1")
                .ctx("prepare update")?
                .execute(params![key, rev])
                .ctx("update current")?;
            tx.prepare_cached(
                "INSERT INTO log (revision, key, deleted, create_revision, prev_revision, value)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5)",
            )
            .ctx("prepare log update")?
            .execute(params![rev, key, prev.create_revision, prev.mod_revision, value])
            .ctx("log update")?;
            tx.commit().ctx("commit update")?;
            let kv = KeyValue { key, value, create_revision: prev.create_revision, mod_revision: rev };
            Ok((kv.clone(), Event::Put { kv, prev: Some(prev) }))
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let key = key.to_owned();
        self.write(move |conn, rev| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin delete")?;
            let prev = read_current(&tx, &key)?.ok_or_else(|| Error::NotFound { key: key.clone() })?;
            if let Some(expected) = expected {
                if prev.mod_revision != expected {
                    return Err(Error::Conflict { key, expected, actual: prev.mod_revision });
                }
            }
            tx.prepare_cached("DELETE FROM current WHERE key = ?1")
                .ctx("prepare delete")?
                .execute([&key])
                .ctx("delete current")?;
            tx.prepare_cached(
                "INSERT INTO log (revision, key, deleted, create_revision, prev_revision, value)
                 VALUES (?1, ?2, 1, ?3, ?4, x'')",
            )
            .ctx("prepare log delete")?
            .execute(params![rev, key, prev.create_revision, prev.mod_revision])
            .ctx("log delete")?;
            tx.commit().ctx("commit delete")?;
            Ok(((prev.clone(), rev), Event::Delete { prev, revision: rev }))
        })
        .await
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
        progress: ProgressRequests,
    ) -> Result<ProgressWatchStream> {
        // Subscribe before reading history: every event committed after the
        // first snapshot is then in the channel.
        let rx = self.events.subscribe();
        let compacted = self.db.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(Error::Compacted { requested: after, compacted });
        }
        let mut w = Watcher {
            db: self.db.clone(),
            rx,
            range: KeyRange::prefix(prefix),
            last: after,
            catching_up: true,
            pending: VecDeque::new(),
            done: false,
            progress,
            progress_target: None,
        };
        // First page now, so a compacted `after` fails the call itself.
        w.catch_up().await?;
        Ok(Box::pin(futures::stream::unfold(w, |mut w| async move { w.next().await.map(|item| (item, w)) })))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // Record the new compacted revision first (readers check it in their
        // snapshot), then delete history in chunks, releasing the writer lock
        // in between so writes are not held up.
        let mut guard = self.db.writer.clone().lock_owned().await;
        let db = self.db.clone();
        let start = blocking(move || {
            let current = db.current.load(Ordering::SeqCst);
            if revision > current {
                return Err(Error::FutureRevision { requested: revision, current });
            }
            if revision <= db.compacted.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let tx = guard.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin compact")?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [revision],
            )
            .ctx("record compacted revision")?;
            let lo: Revision = tx
                .query_row("SELECT coalesce(min(revision), 0) - 1 FROM log", [], |r| r.get(0))
                .ctx("oldest revision")?;
            tx.commit().ctx("commit compacted revision")?;
            db.compacted.store(revision, Ordering::SeqCst);
            Ok(Some(lo))
        })
        .await?;
        let Some(mut lo) = start else { return Ok(()) };
        let mut deleted = 0;
        while lo < revision {
            let hi = lo.saturating_add(COMPACT_CHUNK).min(revision);
            let mut guard = self.db.writer.clone().lock_owned().await;
            deleted += blocking(move || compact_chunk(&mut guard, lo, hi, revision)).await?;
            lo = hi;
        }
        tracing::debug!(revision, deleted, "compacted sqlite store");
        Ok(())
    }
}

/// State of one watch stream.
struct Watcher {
    db: Arc<Db>,
    rx: broadcast::Receiver<Arc<Event>>,
    range: KeyRange,
    /// Every event with a revision up to here has been delivered or skipped.
    last: Revision,
    catching_up: bool,
    pending: VecDeque<Event>,
    done: bool,
    progress: ProgressRequests,
    /// A progress request is answered once `last` reaches this (the store's
    /// revision when the request came).
    progress_target: Option<Revision>,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchItem>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(WatchItem::Event(ev)));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                if let Err(e) = self.catch_up().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            if self.progress_target.is_some_and(|t| self.last >= t) {
                self.progress_target = None;
                return Some(Ok(WatchItem::Progress(self.last)));
            }
            let received = tokio::select! {
                r = self.rx.recv() => r,
                () = self.progress.requested() => {
                    // Every write up to the current revision is in the channel or
                    // about to be (it is published right after the revision moves).
                    self.progress_target = Some(self.db.current.load(Ordering::SeqCst));
                    continue;
                }
            };
            match received {
                Ok(ev) => {
                    let rev = ev.revision();
                    if rev <= self.last {
                        continue; // already covered by the database snapshot
                    }
                    if rev != self.last + 1 {
                        // Cannot happen (the channel carries every revision),
                        // but the database has what is missing.
                        self.db.watch_catch_ups.fetch_add(1, Ordering::Relaxed);
                        self.catching_up = true;
                        continue;
                    }
                    self.last = rev;
                    if self.range.contains(ev.key()) {
                        return Some(Ok(WatchItem::Event(Event::clone(&ev))));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, last = self.last, "watcher lagged, catching up from the database");
                    self.db.watch_catch_ups.fetch_add(1, Ordering::Relaxed);
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => self.done = true,
            }
        }
    }

    /// Read the next page of history after `last`; leave catch-up mode when
    /// the snapshot holds nothing more.
    async fn catch_up(&mut self) -> Result<()> {
        let (range, after) = (self.range.clone(), self.last);
        let (events, current, compacted) =
            self.db.read(move |conn| read_events(conn, &range, after, WATCH_PAGE)).await?;
        if after < compacted {
            return Err(Error::Compacted { requested: after, compacted });
        }
        if events.len() >= WATCH_PAGE {
            if let Some(ev) = events.last() {
                self.last = ev.revision();
            }
        } else {
            self.last = self.last.max(current);
            self.catching_up = false;
        }
        self.pending.extend(events);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_char() {
        assert_eq!(prefix_end("/registry/pods/"), Some("/registry/pods0".into()));
        assert_eq!(prefix_end("a"), Some("b".into()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end("x\u{D7FF}"), Some("x\u{E000}".into()));
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        for prefix in ["a", "/r/", "é", "a\u{D7FF}", "z\u{FFFF}"] {
            let end = prefix_end(prefix).expect("bounded");
            for suffix in ["", "\u{0}", "zzz", "\u{10FFFF}\u{10FFFF}", "é"] {
                let key = format!("{prefix}{suffix}");
                assert!(key.as_str() < end.as_str(), "{key:?} < {end:?}");
            }
            assert!(prefix < end.as_str());
        }
    }

    #[test]
    fn key_range_list_bounds() {
        let r = KeyRange::list("/a/", Some("/a/x"));
        assert!(r.exclusive);
        assert!(!r.contains("/a/x"));
        assert!(r.contains("/a/y"));
        assert!(!r.contains("/b"));
        // A start_after before the prefix does not widen the range.
        let r = KeyRange::list("/a/", Some("/0"));
        assert_eq!(r, KeyRange::prefix("/a/"));
        assert!(!r.contains("/0z"));
        assert!(KeyRange::prefix("").contains("anything"));
    }

    #[test]
    fn limits() {
        assert_eq!(limit_param(None), -1);
        assert_eq!(limit_param(Some(0)), -1);
        assert_eq!(limit_param(Some(7)), 7);
    }

    #[tokio::test]
    async fn in_memory_roundtrip() -> Result<()> {
        let s = SqliteStore::open_in_memory()?;
        assert_eq!(s.current_revision().await?, 0);
        let kv = s.create("/a", b"1".to_vec()).await?;
        assert_eq!((kv.create_revision, kv.mod_revision), (1, 1));
        let kv2 = s.update("/a", b"2".to_vec(), 1).await?;
        assert_eq!((kv2.create_revision, kv2.mod_revision), (1, 2));
        assert_eq!(s.get("/a", Some(1)).await?.map(|kv| kv.value), Some(b"1".to_vec()));
        let list = s.list("/", ListOptions::default()).await?;
        assert_eq!(list.kvs, vec![kv2]);
        assert_eq!(list.revision, 2);
        let stats = s.stats().await?;
        assert_eq!((stats.keys, stats.log_rows, stats.current_revision), (1, 2, 2));
        Ok(())
    }
}
