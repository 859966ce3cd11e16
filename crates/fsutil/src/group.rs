//! Group commit of directory fsyncs: many writers that each changed a
//! directory (a new name in the spool's `queue/`, in a Maildir's `new/`)
//! and must wait until the change is durable share one fsync.
//!
//! [`GroupSync`] serves one directory: the first caller runs the fsync on
//! its own thread (no hand-off, so a lone writer pays no wake-up);
//! callers arriving while it runs wait, and the next fsync, run by one of
//! them, covers them all. A change is covered only by an fsync that
//! started after the call, so on `Ok` the caller's change is durable.
//! [`sync_dir_shared`] does the same for any directory by path, keeping a
//! [`GroupSync`] only while callers are in it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

/// Failed rounds remembered for late waiters.
const FAILURES_KEPT: usize = 64;

/// The fsync a [`GroupSync`] runs.
type SyncFn = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

/// One directory's group commit (see the module doc).
pub struct GroupSync {
    sync: SyncFn,
    state: Mutex<RoundState>,
    done: Condvar,
}

#[derive(Default)]
struct RoundState {
    /// Tickets handed out (one per caller).
    issued: u64,
    /// Every ticket up to here is covered by a finished fsync.
    synced: u64,
    /// An fsync is running.
    running: bool,
    /// Failed rounds: tickets in `(from, to]`, and the error.
    failures: VecDeque<(u64, u64, io::ErrorKind, String)>,
    /// Failures older than the kept ones covered tickets up to here.
    forgotten_upto: u64,
    /// fsyncs run.
    rounds: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupSync {
    /// Group commit of the fsyncs of the directory `dir` (opened once, so
    /// that each round costs one system call).
    pub fn open(dir: &Path) -> io::Result<GroupSync> {
        let file = File::open(dir)?;
        Ok(GroupSync::with(Box::new(move || file.sync_all())))
    }

    /// Group commit over any fsync (tests inject failures with it).
    pub fn with(sync: SyncFn) -> GroupSync {
        GroupSync {
            sync,
            state: Mutex::new(RoundState::default()),
            done: Condvar::new(),
        }
    }

    /// Returns once an fsync that started after this call has finished:
    /// the caller's earlier change to the directory is durable on `Ok`.
    /// Every caller a failed round covered gets its error.
    pub fn sync(&self) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.issued += 1;
        let ticket = st.issued;
        loop {
            if st.synced >= ticket {
                return st.result_of(ticket);
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.running = true;
            let (from, upto) = (st.synced, st.issued);
            drop(st);
            let result = (self.sync)();
            st = lock(&self.state);
            st.running = false;
            st.rounds += 1;
            if let Err(e) = result {
                st.failures.push_back((from, upto, e.kind(), e.to_string()));
                while st.failures.len() > FAILURES_KEPT {
                    if let Some((_, to, _, _)) = st.failures.pop_front() {
                        st.forgotten_upto = st.forgotten_upto.max(to);
                    }
                }
            }
            st.synced = upto;
            self.done.notify_all();
        }
    }

    /// fsyncs run so far (for tests and diagnostics).
    pub fn rounds(&self) -> u64 {
        lock(&self.state).rounds
    }
}

impl RoundState {
    /// The outcome of the fsync that covered `ticket`.
    fn result_of(&self, ticket: u64) -> io::Result<()> {
        if let Some((_, _, kind, msg)) = self
            .failures
            .iter()
            .find(|(from, to, _, _)| *from < ticket && ticket <= *to)
        {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        if ticket <= self.forgotten_upto {
            // Too many failed rounds since: whether ours failed is unknown.
            return Err(io::Error::other("directory fsync outcome unknown"));
        }
        Ok(())
    }
}

/// A directory's group commit and the callers in it now.
struct Entry {
    group: Arc<GroupSync>,
    users: usize,
}

/// Directories with callers in `sync_dir_shared` now.
static SHARED: LazyLock<Mutex<HashMap<PathBuf, Entry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// fsyncs directory `path` for a change the caller made in it just before,
/// sharing the fsync with every other thread doing the same for the same
/// path (a [`GroupSync`] kept while callers are in it). On `Ok`, the
/// caller's change is durable.
pub fn sync_dir_shared(path: &Path) -> io::Result<()> {
    let group = {
        let mut map = lock(&SHARED);
        match map.get_mut(path) {
            Some(entry) => {
                entry.users += 1;
                Arc::clone(&entry.group)
            }
            None => {
                let group = Arc::new(GroupSync::open(path)?);
                map.insert(
                    path.to_path_buf(),
                    Entry {
                        group: Arc::clone(&group),
                        users: 1,
                    },
                );
                group
            }
        }
    };
    let result = group.sync();
    let mut map = lock(&SHARED);
    if let Some(entry) = map.get_mut(path) {
        entry.users -= 1;
        if entry.users == 0 {
            map.remove(path);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn a_lone_caller_runs_its_own_fsync() {
        let g = GroupSync::with(Box::new(|| Ok(())));
        g.sync().unwrap();
        g.sync().unwrap();
        assert_eq!(g.rounds(), 2);
    }

    #[test]
    fn a_round_covers_every_ticket_issued_before_it_started() {
        let g = GroupSync::with(Box::new(|| Ok(())));
        // Three callers registered while a round was running...
        lock(&g.state).issued = 3;
        // ...the next caller's round covers all four at once.
        g.sync().unwrap();
        let st = lock(&g.state);
        assert_eq!((st.synced, st.rounds), (4, 1));
        for t in 1..=4 {
            assert!(st.result_of(t).is_ok());
        }
    }

    #[test]
    fn a_failed_round_fails_exactly_its_tickets() {
        let fail = Arc::new(AtomicU64::new(1));
        let f = Arc::clone(&fail);
        let g = GroupSync::with(Box::new(move || {
            if f.fetch_sub(1, Ordering::SeqCst) == 1 {
                Err(io::Error::other("disk on fire"))
            } else {
                Ok(())
            }
        }));
        lock(&g.state).issued = 2;
        let e = g.sync().unwrap_err();
        assert!(e.to_string().contains("disk on fire"));
        g.sync().unwrap();
        let st = lock(&g.state);
        assert_eq!(st.rounds, 2);
        for t in 1..=3 {
            assert!(
                st.result_of(t).is_err(),
                "ticket {t} was in the failed round"
            );
        }
        assert!(st.result_of(4).is_ok());
    }

    #[test]
    fn forgotten_failures_are_reported_as_unknown() {
        let g = GroupSync::with(Box::new(|| Err(io::Error::other("bad"))));
        for _ in 0..FAILURES_KEPT + 2 {
            assert!(g.sync().is_err());
        }
        let st = lock(&g.state);
        assert_eq!(st.failures.len(), FAILURES_KEPT);
        let e = st.result_of(1).unwrap_err();
        assert!(e.to_string().contains("unknown"), "{e}");
    }

    #[test]
    fn callers_waiting_behind_a_running_fsync_share_the_next_one() {
        let gate = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let g = {
            let (gate, calls) = (Arc::clone(&gate), Arc::clone(&calls));
            Arc::new(GroupSync::with(Box::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                // The first fsync "takes long": until every caller waits.
                for _ in 0..10_000 {
                    if gate.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })))
        };
        let threads = 12;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let g = Arc::clone(&g);
                std::thread::spawn(move || g.sync())
            })
            .collect();
        for _ in 0..10_000 {
            if lock(&g.state).issued == threads {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(lock(&g.state).issued, threads, "every caller registered");
        gate.store(true, Ordering::SeqCst);
        for h in handles {
            h.join().unwrap().unwrap();
        }
        let rounds = calls.load(Ordering::SeqCst);
        assert_eq!(rounds, g.rounds());
        assert!(
            rounds <= 2,
            "the running fsync, then one for everybody who waited: {rounds}"
        );
    }

    #[test]
    fn shared_by_path_syncs_and_forgets_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads = 8;
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    std::fs::write(path.join(format!("f{i}")), b"x").unwrap();
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
        let e = sync_dir_shared(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!lock(&SHARED).contains_key(&dir.path().join("missing")));
    }
}
