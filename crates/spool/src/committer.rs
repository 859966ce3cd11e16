//! The spool's lazy directory fsyncs.
//!
//! (The writers that wait, a new message's queue entry, share their
//! fsyncs of `queue/` through `postamt_fsutil::GroupSync`, see
//! `Spool::store`.) The `Committer` thread serves the jobs nobody waits for ("lazy" jobs,
//! from `update` and `remove`): they only mark their directory dirty, and
//! it is fsynced [`LAZY_DELAY`] after its first lazy job at the latest (and
//! when the spool closes), together with every later job of the same
//! directory. Losing such a change in a power cut only means an older
//! envelope (a repeated delivery), never a lost message.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Most lazy jobs taken in one go.
const MAX_BATCH: usize = 4096;
/// The longest a lazy job's directory stays without an fsync.
pub const LAZY_DELAY: Duration = Duration::from_millis(500);

/// Which spool directory a job needs fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SyncDir {
    Queue,
    State,
}

/// A lazy request to the committer: fsync `dir` soon.
pub struct Job {
    pub dir: SyncDir,
}

/// The handle lazy jobs are submitted to. Dropping it stops the thread
/// after it fsynced what is dirty.
pub struct Committer {
    tx: mpsc::Sender<Job>,
    /// Per directory: a job is on its way or the directory is marked
    /// dirty and not yet fsynced. Later jobs for it are then covered
    /// already and not sent: the thread wakes once per round, not once
    /// per removed message.
    pending: Arc<[AtomicBool; 2]>,
    /// Jobs sent to the thread (for tests and diagnostics).
    sent: AtomicU64,
}

fn slot(dir: SyncDir) -> usize {
    match dir {
        SyncDir::Queue => 0,
        SyncDir::State => 1,
    }
}

impl Committer {
    /// Starts the committer thread for the given directories.
    pub fn start(queue_dir: PathBuf, state_dir: PathBuf) -> io::Result<Committer> {
        // Open the directories once, so that each fsync costs one system
        // call and no open/close.
        let queue = File::open(&queue_dir)?;
        let state = File::open(&state_dir)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let pending: Arc<[AtomicBool; 2]> =
            Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let flags = Arc::clone(&pending);
        std::thread::Builder::new()
            .name("spool-committer".into())
            .spawn(move || {
                let sync = |dir: SyncDir| {
                    // Cleared before the fsync: a change after this point
                    // sends a new job; one before it is covered by this fsync.
                    flags[slot(dir)].store(false, Ordering::SeqCst);
                    match dir {
                        SyncDir::Queue => queue.sync_all(),
                        SyncDir::State => state.sync_all(),
                    }
                };
                run(&rx, &sync, LAZY_DELAY);
            })?;
        Ok(Committer {
            tx,
            pending,
            sent: AtomicU64::new(0),
        })
    }

    /// Hands a job to the committer (unless one for its directory is
    /// still pending: that one's fsync comes later and covers this change).
    pub fn submit(&self, job: Job) -> io::Result<()> {
        if self.pending[slot(job.dir)].swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.tx.send(job).map_err(|e| {
            self.pending[slot(e.0.dir)].store(false, Ordering::SeqCst);
            io::Error::other("spool committer thread has stopped")
        })
    }
}

/// The committer loop: lazy jobs mark their directory dirty; a dirty
/// directory is fsynced once `lazy_delay` passed since it became dirty.
fn run(rx: &mpsc::Receiver<Job>, sync: &dyn Fn(SyncDir) -> io::Result<()>, lazy_delay: Duration) {
    let mut dirty: BTreeSet<SyncDir> = BTreeSet::new();
    let mut dirty_since: Option<Instant> = None;
    loop {
        let first = match dirty_since {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(since) => rx.recv_timeout(lazy_delay.saturating_sub(since.elapsed())),
        };
        match first {
            Ok(job) => {
                dirty.insert(job.dir);
                for _ in 1..MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => {
                            dirty.insert(job.dir);
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let since = *dirty_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= lazy_delay {
            sync_lazy(&mut dirty, sync);
            dirty_since = None;
        }
    }
    sync_lazy(&mut dirty, sync);
    tracing::debug!("spool committer stopped");
}

/// fsyncs the directories lazy jobs left dirty.
fn sync_lazy(dirty: &mut BTreeSet<SyncDir>, sync: &dyn Fn(SyncDir) -> io::Result<()>) {
    for dir in std::mem::take(dirty) {
        if let Err(e) = sync(dir) {
            tracing::warn!(dir = ?dir, error = %e, "spool directory fsync failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    /// Runs the loop over `jobs` (then a closed channel) and returns the
    /// directories fsynced, in order.
    fn fsyncs_for(jobs: &[SyncDir], lazy_delay: Duration) -> Vec<SyncDir> {
        let (tx, rx) = mpsc::channel();
        for &dir in jobs {
            tx.send(Job { dir }).unwrap();
        }
        drop(tx);
        let synced = Mutex::new(Vec::new());
        let sync = |d: SyncDir| {
            synced.lock().unwrap().push(d);
            Ok(())
        };
        run(&rx, &sync, lazy_delay);
        synced.into_inner().unwrap()
    }

    #[test]
    fn lazy_jobs_share_one_fsync_per_directory() {
        let mut jobs = vec![SyncDir::Queue; 20];
        jobs.push(SyncDir::State);
        jobs.push(SyncDir::Queue);
        assert_eq!(
            fsyncs_for(&jobs, Duration::from_secs(3600)),
            [SyncDir::Queue, SyncDir::State],
            "22 jobs, one fsync per dirty directory (at the close here)"
        );
        assert_eq!(
            fsyncs_for(&[SyncDir::State; 5], Duration::ZERO),
            [SyncDir::State],
            "synced once old enough"
        );
        assert!(fsyncs_for(&[], Duration::ZERO).is_empty());
    }

    #[test]
    fn the_committer_thread_syncs_real_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (q, s) = (dir.path().join("queue"), dir.path().join("state"));
        std::fs::create_dir(&q).unwrap();
        std::fs::create_dir(&s).unwrap();
        let c = Committer::start(q, s).unwrap();
        c.submit(Job {
            dir: SyncDir::State,
        })
        .unwrap();
        drop(c);
        assert!(Committer::start(dir.path().join("x"), dir.path().join("y")).is_err());
    }

    #[test]
    fn jobs_for_a_pending_directory_are_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let (q, s) = (dir.path().join("queue"), dir.path().join("state"));
        std::fs::create_dir(&q).unwrap();
        std::fs::create_dir(&s).unwrap();
        let c = Committer::start(q, s).unwrap();
        for _ in 0..1000 {
            c.submit(Job {
                dir: SyncDir::Queue,
            })
            .unwrap();
        }
        c.submit(Job {
            dir: SyncDir::State,
        })
        .unwrap();
        // One job per directory and round went to the thread; the rest
        // were covered by a coming fsync (rounds are LAZY_DELAY apart, so
        // however slow the machine, far fewer than one per submit).
        let sent = c.sent.load(Ordering::SeqCst);
        assert!(
            (2..100).contains(&sent),
            "{sent} jobs sent for 1001 submits"
        );
        // After the round, the flags are clear: the next change sends again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.pending.iter().any(|p| p.load(Ordering::SeqCst)) {
            assert!(Instant::now() < deadline, "the committer never synced");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
