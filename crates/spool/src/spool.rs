//! `Spool`: the queue operations (enqueue with group commit, list, get,
//! read, update, remove) over the files described in the crate docs.

use crate::committer::{Committer, Job, SyncDir};
use crate::format::{self, DecodeError, MAX_ENVELOPE_LEN};
use crate::layout::{self, Layout};
use crate::recovery::{self, CleanupReport};
use crate::{Envelope, NewMessage, QueueId, SpoolError};
use postamt_fsutil::GroupSync;
use postamt_fsutil::{create_new, write_all_parts, write_new_synced};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Bound on queue directory entries one listing looks at.
const MAX_LISTED: usize = 10_000_000;
/// Finished queue files kept in `free/` for reuse, at most.
pub const MAX_FREE: usize = 128;
/// Larger finished queue files are unlinked, not kept (so `free/` holds at
/// most `MAX_FREE` times this).
pub const MAX_FREE_SIZE: u64 = 256 * 1024;

/// A queue entry `list()` had to skip (or could only partly read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptFile {
    /// The damaged file.
    pub path: PathBuf,
    /// The message it belongs to, when the name says.
    pub id: Option<QueueId>,
    /// What is wrong with it.
    pub reason: String,
    /// The message is still listed, with its initial envelope (a damaged
    /// state file costs at most a duplicate delivery, never the message).
    pub fell_back: bool,
}

/// A message as the delivery agent needs it: its current envelope and its
/// bytes, read with one pass over the queue file.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub envelope: Envelope,
    /// The message bytes as received.
    pub message: Vec<u8>,
    /// Whether a state file holds the envelope (it changed since arrival).
    /// `remove_finished` needs to unlink one only then.
    pub has_state: bool,
}

/// The queue as one scan found it.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Every readable message's envelope, oldest first.
    pub envelopes: Vec<Envelope>,
    /// Files that could not be read; see `CorruptFile`.
    pub corrupt: Vec<CorruptFile>,
}

/// The queue on disk. Cheap to share (`Arc<Spool>`); every method may be
/// called from many threads at once, and other processes (the CLI) may
/// open the same directory at the same time.
pub struct Spool {
    inner: Arc<Inner>,
    arrivals: Mutex<Option<UnboundedReceiver<QueueId>>>,
}

struct Inner {
    layout: Layout,
    /// Lazy fsyncs (updates, removals).
    committer: Committer,
    /// The `queue/` fsyncs new messages wait for.
    queue_sync: GroupSync,
    /// `queue/`'s file system commits renames after data written out
    /// (`postamt_fsutil::journal_orders_writes`): its fsync alone makes a
    /// new queue file durable.
    journalled: bool,
    /// Where new messages are announced once durable.
    arrivals: UnboundedSender<QueueId>,
    /// Files in `free/` this process may reuse (see `recycle`).
    free: Mutex<Vec<PathBuf>>,
}

impl Spool {
    /// Opens (creating if needed) the spool under `dir` and cleans up
    /// half-written files left by a crash.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        let layout = Layout::new(dir);
        std::fs::create_dir_all(&layout.root)?;
        let mut created = false;
        for d in [&layout.tmp, &layout.queue, &layout.state, &layout.free] {
            created |= postamt_fsutil::ensure_dir(d)?;
        }
        if created {
            postamt_fsutil::sync_dir(&layout.root)?;
        }
        let report = recovery::cleanup(&layout, std::time::SystemTime::now())?;
        if report != CleanupReport::default() {
            tracing::info!(
                spool = %layout.root.display(),
                stale_tmp = report.stale_tmp,
                orphan_states = report.orphan_states,
                "spool recovered after an unclean stop"
            );
        }
        let (tx, rx) = unbounded_channel();
        let committer = Committer::start(layout.queue.clone(), layout.state.clone())?;
        let queue_sync = GroupSync::open(&layout.queue)?;
        let journalled = postamt_fsutil::journal_orders_writes(&layout.queue);
        let free = recovery::adopt_free(&layout.free, MAX_FREE)?;
        Ok(Spool {
            inner: Arc::new(Inner {
                layout,
                committer,
                queue_sync,
                journalled,
                arrivals: tx,
                free: Mutex::new(free),
            }),
            arrivals: Mutex::new(Some(rx)),
        })
    }

    /// The spool directory.
    pub fn path(&self) -> &Path {
        &self.inner.layout.root
    }

    /// Runs the crash cleanup again (stale temporary files, orphan state
    /// files); `open` does it once. Safe while other processes use the spool.
    pub fn cleanup(&self) -> Result<CleanupReport, SpoolError> {
        Ok(recovery::cleanup(
            &self.inner.layout,
            std::time::SystemTime::now(),
        )?)
    }

    /// Stores a message durably; returns its id once file and directory are fsynced.
    ///
    /// The file work runs on tokio's blocking pool, in one trip: the
    /// directory fsync is shared with every other enqueue in flight (group
    /// commit) and runs on the writer's own thread when nobody else's does.
    pub async fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, SpoolError> {
        let env = initial_envelope(msg, &data)?;
        let id = env.id.clone();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("enqueue needs a tokio runtime: {e}")))?;
        let inner = Arc::clone(&self.inner);
        handle
            .spawn_blocking(move || inner.store(&env, &data))
            .await
            .map_err(|e| io::Error::other(format!("spool writer task failed: {e}")))??;
        tracing::debug!(queue_id = %id, "message durable in spool");
        Ok(id)
    }

    /// Same, for synchronous callers (not on an async runtime thread).
    pub fn enqueue_blocking(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, SpoolError> {
        let env = initial_envelope(msg, &data)?;
        self.inner.store(&env, &data)?;
        tracing::debug!(queue_id = %env.id, "message durable in spool");
        Ok(env.id)
    }

    /// The receiver of new arrivals' ids; `None` after the first call
    /// (the delivery agent takes it). Ids are sent only once durable.
    pub fn take_arrivals(&self) -> Option<UnboundedReceiver<QueueId>> {
        self.arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Every queued message's envelope, oldest first. Unreadable files are
    /// logged and skipped; `scan` (or `corrupt`) names them.
    pub fn list(&self) -> Result<Vec<Envelope>, SpoolError> {
        Ok(self.scan()?.envelopes)
    }

    /// The files the last scan could not read (see `CorruptFile`).
    pub fn corrupt(&self) -> Result<Vec<CorruptFile>, SpoolError> {
        Ok(self.scan()?.corrupt)
    }

    /// Every queued message's envelope, oldest first, and the damaged files.
    pub fn scan(&self) -> Result<Listing, SpoolError> {
        let layout = &self.inner.layout;
        let mut ids = Vec::new();
        let mut listing = Listing::default();
        for entry in std::fs::read_dir(&layout.queue)?.take(MAX_LISTED) {
            let entry = entry?;
            let name = entry.file_name();
            match name.to_str().and_then(layout::queue_file_id) {
                Some(id) => ids.push(id),
                None => {
                    tracing::warn!(path = %entry.path().display(), "foreign file in the queue directory");
                    listing.corrupt.push(CorruptFile {
                        path: entry.path(),
                        id: None,
                        reason: "not a queue file name".into(),
                        fell_back: false,
                    });
                }
            }
        }
        ids.sort();
        for id in ids {
            match self.inner.load(&id) {
                Ok((env, state_problem)) => {
                    if let Some(problem) = state_problem {
                        listing.corrupt.push(problem);
                    }
                    listing.envelopes.push(env);
                }
                // Removed since we read the directory.
                Err(SpoolError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(queue_id = %id, error = %e, "unreadable queue file skipped");
                    listing.corrupt.push(CorruptFile {
                        path: layout.queue.join(&id.0),
                        id: Some(id),
                        reason: e.to_string(),
                        fell_back: false,
                    });
                }
            }
        }
        Ok(listing)
    }

    /// One message's current envelope.
    pub fn get(&self, id: &QueueId) -> Result<Envelope, SpoolError> {
        Ok(self.inner.load(id)?.0)
    }

    /// The message bytes as received (with the `Received:` header the receiver prepended).
    pub fn read_message(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError> {
        let path = self.inner.layout.queue_file(id)?;
        let file = open_existing(&path, id)?;
        let file_len = file.metadata()?.len();
        let mut reader = BufReader::new(file);
        let header = read_queue_header(&mut reader, &path)?;
        let env = header.envelope;
        let expected = file_len.saturating_sub(header.len);
        if expected != env.size {
            return Err(SpoolError::Corrupt(
                path.display().to_string(),
                format!("message is {expected} bytes, envelope says {}", env.size),
            ));
        }
        let mut data = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        reader.take(expected).read_to_end(&mut data)?;
        if data.len() as u64 != expected {
            return Err(SpoolError::Corrupt(
                path.display().to_string(),
                "message shorter than its file".into(),
            ));
        }
        corrupt_unless_intact(header.crc32, &data, &path)?;
        Ok(data)
    }

    /// The current envelope and the message bytes of `id`, reading the
    /// queue file once (one open, one read for a small message) instead
    /// of `get` then `read_message`.
    pub fn load(&self, id: &QueueId) -> Result<Loaded, SpoolError> {
        self.inner.load_with_message(id)
    }

    /// Saves a changed envelope atomically (temporary file, fsync, rename
    /// over `state/<id>.json`). The state directory's fsync is batched and
    /// not waited for: losing the newest state in a power cut only means an
    /// older state (at worst the initial envelope) is used, which may
    /// deliver again, never lose. When two processes update the same
    /// message, the last rename wins.
    pub fn update(&self, env: &Envelope) -> Result<(), SpoolError> {
        let layout = &self.inner.layout;
        let state = layout.state_file(&env.id)?;
        let queue = layout.queue_file(&env.id)?;
        if !exists(&queue)? {
            return Err(SpoolError::NotFound(env.id.0.clone()));
        }
        let json = serde_json::to_vec(env).map_err(io::Error::other)?;
        if json.len() as u64 > MAX_ENVELOPE_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "envelope too large").into());
        }
        let tmp = layout.tmp_file(&env.id)?;
        write_new_synced(&tmp, &[&json])?;
        if let Err(e) = std::fs::rename(&tmp, &state) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        self.inner.lazy_sync(SyncDir::State);
        Ok(())
    }

    /// Removes a message the delivery agent finished, knowing from its
    /// `load` whether a state file exists (without one, only the queue file
    /// goes: one system call) and the message's size. A small queue file
    /// is not unlinked but moved to `free/`, where the next `enqueue`
    /// takes it: no inode is freed and allocated again per message (on
    /// ext4 without a journal, allocating an inode scans past every one
    /// freed in the last half minute). A state file the CLI wrote in
    /// between (a hold during the attempt) is left as an orphan, which is
    /// never listed and is removed at the next `open`.
    pub fn remove_finished(
        &self,
        id: &QueueId,
        has_state: bool,
        size: u64,
    ) -> Result<(), SpoolError> {
        let queue = self.inner.layout.queue_file(id)?;
        match self.inner.retire(&queue, size) {
            Ok(()) => self.inner.lazy_sync(SyncDir::Queue),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SpoolError::NotFound(id.0.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        if has_state {
            let state = self.inner.layout.state_file(id)?;
            match std::fs::remove_file(&state) {
                Ok(()) => self.inner.lazy_sync(SyncDir::State),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(queue_id = %id, error = %e, "state file left behind; removed at next open");
                }
            }
        }
        Ok(())
    }

    /// Files kept in `free/` for reuse now (for tests and diagnostics).
    pub fn free_files(&self) -> usize {
        self.inner.free_list().len()
    }

    /// Removes a finished (or admin-deleted) message and its envelope.
    ///
    /// The queue file goes first: a crash right after leaves an orphan state
    /// file, which is never listed and is removed at the next `open`. (The
    /// other order could bring a delivered message back as undelivered.)
    /// `NotFound` when the message was not queued (any state file is
    /// removed all the same).
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        let layout = &self.inner.layout;
        let queue = layout.queue_file(id)?;
        let state = layout.state_file(id)?;
        let existed = match std::fs::remove_file(&queue) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        match std::fs::remove_file(&state) {
            Ok(()) => self.inner.lazy_sync(SyncDir::State),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if existed => {
                tracing::warn!(queue_id = %id, error = %e, "state file left behind; removed at next open");
            }
            Err(e) => return Err(e.into()),
        }
        if !existed {
            return Err(SpoolError::NotFound(id.0.clone()));
        }
        self.inner.lazy_sync(SyncDir::Queue);
        Ok(())
    }
}

/// Reads all of `file` (whose size `fstat` gave as `len`) with a bound:
/// a file that grew meanwhile is read to its end, never past the bound.
fn read_whole(file: &mut File, len: u64, path: &Path) -> Result<Vec<u8>, SpoolError> {
    let bound = len.saturating_add(MAX_ENVELOPE_LEN);
    let mut data = Vec::with_capacity(usize::try_from(len.saturating_add(1)).unwrap_or(0));
    file.take(bound.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > bound {
        return Err(SpoolError::Corrupt(
            path.display().to_string(),
            "queue file grew while being read".into(),
        ));
    }
    Ok(data)
}

impl Inner {
    fn free_list(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `queue` (a finished queue file) out of the queue: into
    /// `free/` for reuse when small and there is room, else unlinked.
    fn retire(&self, queue: &Path, size: u64) -> io::Result<()> {
        let room = size <= MAX_FREE_SIZE && self.free_list().len() < MAX_FREE;
        if room {
            let kept = self.layout.free_file();
            std::fs::rename(queue, &kept)?;
            let mut free = self.free_list();
            if free.len() < MAX_FREE {
                free.push(kept);
                return Ok(());
            }
            drop(free);
            return std::fs::remove_file(&kept);
        }
        std::fs::remove_file(queue)
    }

    /// Creates `tmp` for writing: a file from `free/` renamed there (its
    /// inode and its blocks reused: the new bytes overwrite the old ones,
    /// see `store`), or a new one; also returns the file's old length. The
    /// rename is atomic, so two processes never get the same free file.
    fn create_tmp(&self, tmp: &Path) -> io::Result<(File, u64)> {
        use std::os::unix::fs::OpenOptionsExt;
        for _ in 0..4 {
            let Some(kept) = self.free_list().pop() else {
                break;
            };
            if std::fs::rename(&kept, tmp).is_err() {
                continue; // taken by another process, or gone
            }
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(tmp)
                .and_then(|f| f.metadata().map(|m| (f, m.len())));
            match opened {
                Ok(found) => return Ok(found),
                Err(_) => {
                    let _ = std::fs::remove_file(tmp);
                }
            }
        }
        create_new(tmp).map(|f| (f, 0))
    }

    /// `Spool::load`: the state file if any, then the queue file in one read.
    fn load_with_message(&self, id: &QueueId) -> Result<Loaded, SpoolError> {
        let queue = self.layout.queue_file(id)?;
        let state = self.layout.state_file(id)?;
        let mut state_env = None;
        let mut has_state = true;
        match File::open(&state) {
            Ok(file) => match format::read_state(BufReader::new(file)) {
                Ok(env) if env.id == *id => state_env = Some(env),
                // Damaged: the initial envelope, as `load` does.
                _ => {
                    tracing::warn!(queue_id = %id, "unreadable state file; using the initial envelope");
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => has_state = false,
            Err(e) => {
                tracing::warn!(queue_id = %id, error = %e, "unreadable state file; using the initial envelope");
            }
        }
        let mut file = open_existing(&queue, id)?;
        let len = file.metadata()?.len();
        let bytes = read_whole(&mut file, len, &queue)?;
        let format::Header {
            envelope: initial,
            len: header_len,
            crc32,
        } = format::read_header(&mut io::Cursor::new(&bytes[..])).map_err(|e| match e {
            DecodeError::Io(e) => SpoolError::Io(e),
            DecodeError::Corrupt(why) => SpoolError::Corrupt(queue.display().to_string(), why),
        })?;
        if initial.id != *id {
            return Err(SpoolError::Corrupt(
                queue.display().to_string(),
                format!("queue file names message {}", initial.id),
            ));
        }
        let start = usize::try_from(header_len)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let size = (bytes.len() - start) as u64;
        if size != initial.size {
            return Err(SpoolError::Corrupt(
                queue.display().to_string(),
                format!("message is {size} bytes, envelope says {}", initial.size),
            ));
        }
        corrupt_unless_intact(crc32, &bytes[start..], &queue)?;
        // The header out, the message moved to the front: no second buffer.
        let mut message = bytes;
        message.drain(..start);
        Ok(Loaded {
            envelope: state_env.unwrap_or(initial),
            message,
            has_state,
        })
    }

    /// Writes the queue file and makes it durable, then announces the
    /// arrival:
    ///
    /// 1. write header and message into `tmp/` and wait until the kernel
    ///    has written the data out (its blocks allocated; no cache flush);
    /// 2. rename it into `queue/`, never replacing a file (complete:
    ///    nobody sees a partial file);
    /// 3. fsync `queue/`, shared with every writer in flight (group
    ///    commit): on a journalling file system this one commit carries the
    ///    new entries, the files' inodes and their block allocations;
    /// 4. only where the file system does not journal its metadata after
    ///    data written out (ext2, ext4 without a journal, btrfs...): fsync
    ///    the file (its data was written out before the rename, so this
    ///    costs one cache flush). With such a journal (ext3/ext4, XFS), 3
    ///    made it durable already: the commit that carried the rename came
    ///    after the file's blocks and size, and flushed the device cache
    ///    after its data reached the device.
    ///
    /// One journal commit per group of messages instead of two per
    /// message (file, then directory); see `postamt_fsutil`. Without a
    /// journal, a crash between 2 and 4 can leave an entry whose blocks
    /// never reached the disk; the header's CRC tells such a file from a
    /// good one (and nobody was told it was stored). If an fsync fails, the entry is withdrawn: the client gets
    /// an error and sends the message again, so it must not be delivered
    /// from here too.
    fn store(&self, env: &Envelope, data: &[u8]) -> Result<(), SpoolError> {
        let header = format::encode_header(env, data).map_err(io::Error::other)?;
        let tmp = self.layout.tmp_file(&env.id)?;
        let queue = self.layout.queue_file(&env.id)?;
        let (mut file, old_len) = self.create_tmp(&tmp)?;
        let new_len = (header.len() + data.len()) as u64;
        // A recycled file is overwritten in place (no blocks freed and
        // allocated again: less journal work), then cut to its new length.
        // A crash can leave old and new bytes mixed; the CRC and the id in
        // the header tell such a file apart, and it was never acknowledged.
        let written = write_all_parts(&mut file, &[&header, data])
            .and_then(|()| {
                if old_len > new_len {
                    file.set_len(new_len)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| postamt_fsutil::write_out(&file))
            // Never replaces an existing queue file (an id given twice
            // fails with AlreadyExists instead).
            .and_then(|()| postamt_fsutil::rename_noreplace(&tmp, &queue));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        let durable = self.queue_sync.sync().and_then(|()| {
            if self.journalled {
                Ok(())
            } else {
                file.sync_all()
            }
        });
        if let Err(e) = durable {
            tracing::error!(queue_id = %env.id, error = %e, "queue entry not made durable (fsync failed)");
            if let Err(e) = std::fs::remove_file(&queue) {
                tracing::warn!(queue_id = %env.id, error = %e, "could not withdraw unacknowledged message");
            }
            return Err(e.into());
        }
        // The receiver may be gone (no delivery agent in the CLI): that is
        // fine, the queue directory is the truth.
        let _ = self.arrivals.send(env.id.clone());
        Ok(())
    }

    /// Asks for a directory fsync soon, without waiting for it.
    fn lazy_sync(&self, dir: SyncDir) {
        let job = Job { dir };
        if let Err(e) = self.committer.submit(job) {
            tracing::warn!(error = %e, "spool directory fsync not scheduled");
        }
    }

    /// The current envelope of `id`: its state file, or the initial
    /// envelope when there is none. A damaged state file falls back to the
    /// initial envelope (reported as the second value).
    fn load(&self, id: &QueueId) -> Result<(Envelope, Option<CorruptFile>), SpoolError> {
        let queue = self.layout.queue_file(id)?;
        let state = self.layout.state_file(id)?;
        let mut problem = None;
        match File::open(&state) {
            Ok(file) => match format::read_state(BufReader::new(file)) {
                Ok(env) if env.id == *id => {
                    if !exists(&queue)? {
                        return Err(SpoolError::NotFound(id.0.clone()));
                    }
                    return Ok((env, None));
                }
                Ok(env) => problem = Some(format!("state file names message {}", env.id)),
                Err(DecodeError::Corrupt(why)) => problem = Some(why),
                Err(DecodeError::Io(e)) => problem = Some(e.to_string()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => problem = Some(e.to_string()),
        }
        let file = open_existing(&queue, id)?;
        let env = read_queue_header(&mut BufReader::new(file), &queue)?.envelope;
        if env.id != *id {
            return Err(SpoolError::Corrupt(
                queue.display().to_string(),
                format!("queue file names message {}", env.id),
            ));
        }
        let problem = problem.map(|reason| {
            tracing::warn!(queue_id = %id, reason = %reason, "unreadable state file; using the initial envelope");
            CorruptFile {
                path: state,
                id: Some(id.clone()),
                reason,
                fell_back: true,
            }
        });
        Ok((env, problem))
    }
}

/// The initial envelope of a message being enqueued.
fn initial_envelope(mut msg: NewMessage, data: &[u8]) -> Result<Envelope, SpoolError> {
    let id = match msg.id.take() {
        None => QueueId::generate(),
        Some(given) => given.0.parse::<QueueId>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid queue id given to enqueue",
            )
        })?,
    };
    let now = chrono::Utc::now().timestamp();
    Ok(Envelope::initial(id, msg, data.len() as u64, now))
}

/// `SpoolError::Corrupt` when the message bytes fail the header's CRC.
fn corrupt_unless_intact(
    crc32: Option<u32>,
    message: &[u8],
    path: &Path,
) -> Result<(), SpoolError> {
    format::verify_message(crc32, message).map_err(|e| match e {
        DecodeError::Io(e) => SpoolError::Io(e),
        DecodeError::Corrupt(why) => SpoolError::Corrupt(path.display().to_string(), why),
    })
}

fn read_queue_header(
    reader: &mut BufReader<File>,
    path: &Path,
) -> Result<format::Header, SpoolError> {
    format::read_header(reader).map_err(|e| match e {
        DecodeError::Io(e) => SpoolError::Io(e),
        DecodeError::Corrupt(why) => SpoolError::Corrupt(path.display().to_string(), why),
    })
}

fn open_existing(path: &Path, id: &QueueId) -> Result<File, SpoolError> {
    File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SpoolError::NotFound(id.0.clone()),
        _ => SpoolError::Io(e),
    })
}

fn exists(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
