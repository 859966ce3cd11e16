//! File-system helpers for the store: private directories, fsync of
//! directories (alone, or shared by concurrent writers: `sync_dir_shared`),
//! no-follow opens, and the Maildir skeleton (`cur/ new/ tmp/`).

use std::collections::{HashMap, VecDeque};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

/// The three Maildir subdirectories.
pub const SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];

/// fsyncs a directory, making entries created, renamed or removed in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Failed rounds remembered per directory for late waiters.
const FAILURES_KEPT: usize = 64;

/// One directory's group commit (see `sync_dir_shared`).
#[derive(Default)]
struct SharedSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Tickets handed out (one per caller).
    issued: u64,
    /// Every ticket up to here is covered by a finished fsync.
    synced: u64,
    /// An fsync is running.
    running: bool,
    /// Failed rounds: tickets in `(from, to]` got `error`.
    failures: VecDeque<(u64, u64, io::ErrorKind, String)>,
    /// Failures older than the kept ones covered tickets up to here.
    forgotten_upto: u64,
    /// Callers inside `sync_dir_shared` (the entry goes when none is).
    users: usize,
    /// fsyncs run (for tests).
    rounds: u64,
}

/// Directories with callers in `sync_dir_shared` now.
static SHARED: LazyLock<Mutex<HashMap<PathBuf, Arc<SharedSync>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// fsyncs directory `path` for a change the caller made in it just before,
/// sharing the fsync with every other thread doing the same (group
/// commit): the first caller runs the fsync; callers arriving while it
/// runs wait, and the next fsync (run by one of them) covers them all. A
/// change is covered only by an fsync that starts after the call, so the
/// contract is that of `sync_dir`: on `Ok`, the caller's change is durable.
pub fn sync_dir_shared(path: &Path) -> io::Result<()> {
    let shared = {
        let mut map = lock(&SHARED);
        let entry = Arc::clone(map.entry(path.to_path_buf()).or_default());
        lock(&entry.state).users += 1;
        entry
    };
    let result = shared_round(&shared, path);
    let mut map = lock(&SHARED);
    let last = {
        let mut st = lock(&shared.state);
        st.users -= 1;
        st.users == 0
    };
    if last {
        map.remove(path);
    }
    result
}

/// Waits until an fsync that started after this call finished; runs it
/// when nobody else does.
fn shared_round(shared: &SharedSync, path: &Path) -> io::Result<()> {
    let mut st = lock(&shared.state);
    st.issued += 1;
    let ticket = st.issued;
    loop {
        if st.synced >= ticket {
            return round_result(&st, ticket);
        }
        if st.running {
            st = shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        st.running = true;
        let upto = st.issued;
        let from = st.synced;
        drop(st);
        let result = sync_dir(path);
        st = lock(&shared.state);
        st.running = false;
        st.rounds += 1;
        if let Err(e) = &result {
            st.failures.push_back((from, upto, e.kind(), e.to_string()));
            while st.failures.len() > FAILURES_KEPT {
                if let Some((_, to, _, _)) = st.failures.pop_front() {
                    st.forgotten_upto = st.forgotten_upto.max(to);
                }
            }
        }
        st.synced = upto;
        shared.done.notify_all();
    }
}

/// The outcome of the fsync that covered `ticket`.
fn round_result(st: &SyncState, ticket: u64) -> io::Result<()> {
    if let Some((_, _, kind, msg)) = st
        .failures
        .iter()
        .find(|(from, to, _, _)| *from < ticket && ticket <= *to)
    {
        return Err(io::Error::new(*kind, msg.clone()));
    }
    if ticket <= st.forgotten_upto {
        // Too many failed rounds since: whether ours failed is unknown.
        return Err(io::Error::other("directory fsync outcome unknown"));
    }
    Ok(())
}

/// Creates `path` with mode 0700 unless it is already a directory; returns
/// whether it was created.
pub fn ensure_dir(path: &Path) -> io::Result<bool> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `root` looks like a complete Maildir (fast path: two stats).
pub fn is_complete_maildir(root: &Path) -> bool {
    root.join("new").is_dir() && root.join("tmp").is_dir() && root.join("cur").is_dir()
}

/// Creates `root` (and its parents) and `cur/ new/ tmp/` as needed, each
/// mode 0700, and fsyncs what changed so the mailbox survives a crash.
pub fn create_maildir(root: &Path) -> io::Result<()> {
    let mut created_root = false;
    if !root.is_dir() {
        if let Some(parent) = root.parent() {
            std::fs::create_dir_all(parent)?;
        }
        created_root = ensure_dir(root)?;
    }
    let mut created_sub = false;
    for sub in SUBDIRS {
        created_sub |= ensure_dir(&root.join(sub))?;
    }
    if created_sub {
        sync_dir(root)?;
    }
    if created_root && let Some(parent) = root.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Opens an existing file for reading without following a symlink (a user
/// with shell access must not make the server read files for them).
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_maildir_with_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mailboxes").join("bob");
        assert!(!is_complete_maildir(&root));
        create_maildir(&root).unwrap();
        assert!(is_complete_maildir(&root));
        for sub in ["", "cur", "new", "tmp"] {
            let mode = std::fs::metadata(root.join(sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{sub}");
        }
        // Repairs a partial one.
        std::fs::remove_dir(root.join("cur")).unwrap();
        assert!(!is_complete_maildir(&root));
        create_maildir(&root).unwrap();
        assert!(is_complete_maildir(&root));
    }

    #[test]
    fn concurrent_callers_all_get_a_durable_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads = 16;
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    std::fs::write(path.join(format!("f{i}")), b"x").unwrap();
                    barrier.wait();
                    sync_dir_shared(&path)
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        assert!(
            !lock(&SHARED).contains_key(&path),
            "the entry goes with its last caller"
        );
        // How rounds cover tickets is checked below without threads.
        assert!(sync_dir_shared(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_round_covers_every_ticket_issued_before_it_started() {
        let shared = SharedSync::default();
        let dir = tempfile::tempdir().unwrap();
        {
            // Three callers registered while a round was running...
            let mut st = lock(&shared.state);
            st.issued = 3;
            st.synced = 0;
        }
        // ...the next caller's round covers all four at once.
        shared_round(&shared, dir.path()).unwrap();
        let st = lock(&shared.state);
        assert_eq!((st.synced, st.rounds), (4, 1));
        for t in 1..=4 {
            assert!(round_result(&st, t).is_ok());
        }
    }

    #[test]
    fn a_failed_round_fails_exactly_its_tickets() {
        let shared = SharedSync::default();
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        lock(&shared.state).issued = 2;
        assert!(shared_round(&shared, &gone).is_err());
        shared_round(&shared, dir.path()).unwrap();
        let st = lock(&shared.state);
        assert_eq!(st.rounds, 2);
        for t in 1..=3 {
            assert!(
                round_result(&st, t).is_err(),
                "ticket {t} was in the failed round"
            );
        }
        assert!(round_result(&st, 4).is_ok());
    }

    #[test]
    fn no_follow_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        std::fs::write(&target, b"s").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_no_follow(&link).is_err());
        assert!(open_no_follow(&target).is_ok());
    }
}
