//! The IMAP index of one mailbox: `postamt-index.sqlite` in the Maildir
//! root (with `-wal` and `-shm` beside it), one SQLite database for all of
//! the user's folders.
//!
//! Why SQLite: several sessions, in this process and in others, change
//! one folder at once, and SQLite's transactions (`BEGIN IMMEDIATE` for
//! every write) give that without lost updates and without a lock
//! protocol of our own; WAL mode lets readers go on while one writes.
//! `synchronous=NORMAL` makes a commit a `write()` to the WAL, no fsync;
//! automatic checkpoints are off and a background thread checkpoints
//! every [`CHECKPOINT_EVERY`] commits (PASSIVE: never waits), so the
//! delivery path does not wait for an fsync. A WAL that grew past
//! [`WAL_RESET_BYTES`] (passive checkpoints under steady writes never
//! reach its end, so it is never rewound) and every index written since
//! its last checkpoint once writes pause for [`IDLE_CHECKPOINT`] get a
//! TRUNCATE checkpoint: the WAL is emptied, readers read the database
//! file alone (a WAL of 100 MB after 10,000 deliveries made a restart
//! rebuild its index from the whole file, and cold reads scatter). Everything here can be rebuilt from the Maildir files: a
//! missing or damaged database is moved aside and made anew (folders get
//! new UIDVALIDITYs since their UIDs could not be kept).
//!
//! Tables (schema version [`schema::VERSION`] in `user_version`):
//! `folders` (per IMAP folder name: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
//! the first UID not yet claimed as `\Recent`, the modseq below which
//! expunge history was pruned), `messages` (per folder and UID: Maildir
//! base name, current relative file, flags and keywords, modseq, size,
//! internal date, queue id, the MessageMeta), `expunged` (per folder and
//! UID: the modseq of its expunge, for QRESYNC) and `settings`.
//!
//! The MessageMeta is stored with postcard (a compact, stable serde
//! format: varints, no field names; ~3x smaller than JSON and about as
//! fast to decode as a hand-written format), after a format byte so a
//! future layout can be told apart; a blob that does not decode is
//! reparsed from the file.
//!
//! Open handles are cached per mailbox (at most [`MAX_CACHED`]); one
//! handle's connection is shared by this process's sessions under a mutex.

pub mod batch;
pub mod folder_ops;
pub mod messages;
pub mod schema;
pub mod sync;

use crate::StoreError;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// The index database's file name in the Maildir root.
pub const INDEX_FILE: &str = "postamt-index.sqlite";
/// Most mailbox handles kept open.
pub const MAX_CACHED: usize = 128;
/// A checkpoint is requested after this many commits to one index.
pub const CHECKPOINT_EVERY: u32 = 256;
/// A WAL larger than this is emptied (TRUNCATE) after a checkpoint.
pub const WAL_RESET_BYTES: u64 = 8 * 1024 * 1024;
/// Indexes written since their last checkpoint get one after writes
/// paused this long.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(2);
/// How long a TRUNCATE checkpoint waits for readers (writers wait
/// meanwhile, so briefly).
const TRUNCATE_WAIT: Duration = Duration::from_millis(100);
/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One mailbox's open index.
#[derive(Debug)]
pub struct Index {
    root: PathBuf,
    /// The connection, the (device, inode) of the file it opened, and
    /// the connection's [`Generation`].
    conn: Mutex<Option<Open>>,
    commits: AtomicU32,
    /// `commits` when the last checkpoint started.
    checkpointed: AtomicU32,
}

/// An open connection: the connection, the (device, inode) of the file
/// it opened, and its [`Generation`].
type Open = (Connection, (u64, u64), Generation);

/// Which connection of this process read something: a number never
/// given out twice in the process, so data read through one connection
/// is never mistaken for data of a file opened later (a rebuilt or
/// replaced index) even when its counters happen to match.
pub type Generation = u64;

/// The last [`Generation`] given out.
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// The cache of open handles.
static CACHE: Mutex<Option<HashMap<PathBuf, Arc<Index>>>> = Mutex::new(None);

fn cache() -> MutexGuard<'static, Option<HashMap<PathBuf, Arc<Index>>>> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The index of the mailbox at `root` (opened or taken from the cache).
pub fn open(root: &Path) -> Result<Arc<Index>, StoreError> {
    if let Some(idx) = cache().as_ref().and_then(|m| m.get(root)) {
        return Ok(Arc::clone(idx));
    }
    let idx = Arc::new(Index {
        root: root.to_path_buf(),
        conn: Mutex::new(None),
        commits: AtomicU32::new(0),
        checkpointed: AtomicU32::new(0),
    });
    // Opens now so a broken index is found (and rebuilt) here.
    idx.with(|_| Ok(()))?;
    let mut guard = cache();
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(existing) = map.get(root) {
        return Ok(Arc::clone(existing));
    }
    if map.len() >= MAX_CACHED {
        // Drop handles nobody else holds; failing that, any one.
        map.retain(|_, v| Arc::strong_count(v) > 1);
        if map.len() >= MAX_CACHED
            && let Some(k) = map.keys().next().cloned()
        {
            map.remove(&k);
        }
    }
    map.insert(root.to_path_buf(), Arc::clone(&idx));
    Ok(idx)
}

/// Whether a SQLite error says the database file is damaged.
fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Maps a SQLite error into the store's.
pub fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Index(e.to_string())
}

impl Index {
    /// Runs `f` on the connection (opening it first if need be). A damaged
    /// database is moved aside, made anew, and `f` run once more.
    pub fn with<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_generation(|conn, _| f(conn))
    }

    /// [`Index::with`], also telling `f` the connection's [`Generation`].
    pub fn with_generation<T>(
        &self,
        mut f: impl FnMut(&mut Connection, Generation) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // The file was removed or replaced (by an admin, or a rebuild in
        // another process): reconnect to the one now at the path.
        let on_disk = file_id(&self.root.join(INDEX_FILE));
        if guard
            .as_ref()
            .is_some_and(|(_, id, _)| Some(*id) != on_disk)
        {
            *guard = None;
        }
        for attempt in 0..2 {
            if guard.is_none() {
                match self.connect() {
                    Ok(c) => *guard = Some(c),
                    Err(Reopen::Damaged(why)) if attempt == 0 => {
                        self.move_aside(&why);
                        continue;
                    }
                    Err(Reopen::Damaged(why)) => return Err(StoreError::Index(why)),
                    Err(Reopen::Other(e)) => return Err(e),
                }
            }
            let Some((conn, _, generation)) = guard.as_mut() else {
                continue;
            };
            match f(conn, *generation) {
                Err(StoreError::Index(why)) if attempt == 0 && why.starts_with(DAMAGED) => {
                    *guard = None;
                    self.move_aside(&why);
                }
                other => return other,
            }
        }
        Err(StoreError::Index("index could not be rebuilt".into()))
    }

    /// Notes a committed write; asks for a checkpoint now and then.
    pub fn committed(&self) {
        let n = self.commits.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if n.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpointed.store(n, Ordering::Relaxed);
            request_checkpoint(self.root.join(INDEX_FILE));
        }
    }

    /// Whether writes were committed since the last checkpoint started
    /// (and marks them as checkpointed).
    fn take_dirty(&self) -> bool {
        let n = self.commits.load(Ordering::Relaxed);
        self.checkpointed.swap(n, Ordering::Relaxed) != n
    }

    fn connect(&self) -> Result<Open, Reopen> {
        let path = self.root.join(INDEX_FILE);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(&path, flags).map_err(Reopen::from)?;
        configure(&conn).map_err(Reopen::from)?;
        schema::ensure(&conn).map_err(|e| match e {
            schema::SchemaError::Sql(e) => Reopen::from(e),
            schema::SchemaError::Unknown(v) => {
                Reopen::Damaged(format!("{DAMAGED}: unknown schema version {v}"))
            }
        })?;
        let id = file_id(&path).ok_or_else(|| {
            Reopen::Other(StoreError::Index(
                "index file vanished while opening".into(),
            ))
        })?;
        Ok((conn, id, GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1))
    }

    /// Renames a damaged database (and its WAL) aside so a fresh one is made.
    fn move_aside(&self, why: &str) {
        let path = self.root.join(INDEX_FILE);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let aside = self.root.join(format!("{INDEX_FILE}.damaged-{stamp}"));
        tracing::warn!(root = %self.root.display(), reason = why, aside = %aside.display(),
            "folder index damaged; rebuilding it from the Maildir");
        if let Err(e) = std::fs::rename(&path, &aside) {
            tracing::warn!(error = %e, "moving the damaged index aside failed; removing it");
            let _ = std::fs::remove_file(&path);
        }
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(self.root.join(format!("{INDEX_FILE}{suffix}")));
        }
    }
}

/// The (device, inode) of a file, if it exists.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Prefix of `StoreError::Index` messages that call for a rebuild.
pub const DAMAGED: &str = "index damaged";

/// Maps a SQLite error, marking damage so [`Index::with`] rebuilds.
pub fn check(e: rusqlite::Error) -> StoreError {
    if is_corrupt(&e) {
        StoreError::Index(format!("{DAMAGED}: {e}"))
    } else {
        err(e)
    }
}

enum Reopen {
    Damaged(String),
    Other(StoreError),
}

impl From<rusqlite::Error> for Reopen {
    fn from(e: rusqlite::Error) -> Reopen {
        if is_corrupt(&e) {
            Reopen::Damaged(format!("{DAMAGED}: {e}"))
        } else {
            Reopen::Other(err(e))
        }
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode answers with a row.
    let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL;
         PRAGMA wal_autocheckpoint=0;
         PRAGMA journal_size_limit=16777216;
         PRAGMA foreign_keys=OFF;
         PRAGMA cache_size=-2048;",
    )?;
    Ok(())
}

/// The background checkpointer's queue.
fn checkpointer() -> Option<&'static SyncSender<PathBuf>> {
    static TX: OnceLock<Option<SyncSender<PathBuf>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<PathBuf>(64);
        let spawned = std::thread::Builder::new()
            .name("postamt-index-checkpoint".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(IDLE_CHECKPOINT) {
                        Ok(path) => checkpoint(&path, false),
                        Err(RecvTimeoutError::Timeout) => checkpoint_idle(),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "no index checkpoint thread; checkpointing inline");
                None
            }
        }
    })
    .as_ref()
}

fn request_checkpoint(path: PathBuf) {
    match checkpointer() {
        Some(tx) => match tx.try_send(path) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(p)) => checkpoint(&p, false),
        },
        None => checkpoint(&path, false),
    }
}

/// Checkpoints (TRUNCATE) every open index written since its last
/// checkpoint: writes have paused.
fn checkpoint_idle() {
    let dirty: Vec<PathBuf> = cache()
        .as_ref()
        .map(|m| {
            m.values()
                .filter(|idx| idx.take_dirty())
                .map(|idx| idx.root.join(INDEX_FILE))
                .collect()
        })
        .unwrap_or_default();
    for path in dirty {
        checkpoint(&path, true);
    }
}

/// Copies the WAL into the database: PASSIVE (never waits), then, when
/// `empty` or the WAL is larger than [`WAL_RESET_BYTES`], TRUNCATE
/// (waits up to [`TRUNCATE_WAIT`] for readers; writers wait meanwhile).
fn checkpoint(path: &Path, empty: bool) {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let wal = wal_path(path);
    let result = Connection::open_with_flags(path, flags).and_then(|c| {
        c.busy_timeout(Duration::from_secs(1))?;
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size > 0 && (empty || size > WAL_RESET_BYTES) {
            c.busy_timeout(TRUNCATE_WAIT)?;
            // (busy, log frames, checkpointed frames); busy = readers stayed.
            let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            tracing::debug!(path = %path.display(), wal_bytes = size, busy, "index WAL truncated");
        }
        Ok(())
    });
    if let Err(e) = result {
        tracing::debug!(path = %path.display(), error = %e, "index checkpoint failed");
    }
}

/// The WAL file of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests;

/// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: waits for other
/// writers, in this process or others, so read-modify-write is safe).
/// An error rolls everything back.
pub fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(check)?;
    let out = f(&tx)?;
    tx.commit().map_err(check)?;
    Ok(out)
}

/// Runs `f` in a read transaction (one consistent snapshot).
pub fn read<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
        .map_err(check)?;
    let out = f(&tx)?;
    tx.commit().map_err(check)?;
    Ok(out)
}

impl Index {
    /// Runs `f` in a write transaction on this index (see [`write`]).
    pub fn write_txn<T>(
        &self,
        mut f: impl FnMut(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = self.with(|conn| write(conn, &mut f))?;
        self.committed();
        Ok(out)
    }

    /// Runs `f` in a read transaction on this index.
    pub fn read_txn<T>(
        &self,
        mut f: impl FnMut(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(|conn| read(conn, &mut f))
    }

    /// [`Index::read_txn`], also telling `f` the connection's [`Generation`].
    pub fn read_txn_at<T>(
        &self,
        mut f: impl FnMut(&rusqlite::Transaction<'_>, Generation) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_generation(|conn, g| read(conn, |tx| f(tx, g)))
    }
}
