//! Group commit: one thread fsyncs the spool's directories for many writers
//! at once.
//!
//! A writer first makes its file durable itself (write, fsync, link into
//! `queue/`), then hands the committer a `Job`. The committer takes every
//! job that is waiting, fsyncs each directory the batch touched once, and
//! only then completes the waiters and announces the new arrivals. While
//! one fsync runs, the next batch gathers, so under load one directory
//! fsync covers many messages.
//!
//! Jobs without a waiter ("lazy" jobs, from `update` and `remove`) only ask
//! for the directory to be fsynced soon; nobody waits for them.

use crate::QueueId;
use crate::fsio::clone_error;
use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

/// Most jobs completed by one directory fsync; the rest wait for the next.
const MAX_BATCH: usize = 4096;

/// Which spool directory a job needs fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SyncDir {
    Queue,
    State,
}

/// Who waits for a job.
pub enum Waiter {
    /// An async `enqueue`.
    Async(oneshot::Sender<io::Result<()>>),
    /// `enqueue_blocking` (a plain channel: never panics on any thread).
    Blocking(mpsc::SyncSender<io::Result<()>>),
    /// Nobody (a lazy fsync).
    Nobody,
}

impl Waiter {
    fn complete(self, result: io::Result<()>) {
        // A waiter that went away (a cancelled session) is no error: the
        // message is durable either way, and the arrival was announced.
        match self {
            Waiter::Async(tx) => {
                let _ = tx.send(result);
            }
            Waiter::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Waiter::Nobody => {}
        }
    }
}

/// One request to the committer.
pub struct Job {
    pub dir: SyncDir,
    pub waiter: Waiter,
    /// A new message whose queue entry this fsync makes durable: announced
    /// on the arrivals channel after the fsync, or unlinked if it failed.
    pub arrival: Option<QueueId>,
}

/// The handle writers submit jobs to. Dropping it stops the thread after
/// it finished the jobs already submitted.
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer thread for the given directories.
    pub fn start(
        queue_dir: PathBuf,
        state_dir: PathBuf,
        arrivals: UnboundedSender<QueueId>,
    ) -> io::Result<Committer> {
        // Open the directories once, so that each batch costs one fsync
        // syscall per directory and no open/close.
        let queue = File::open(&queue_dir)?;
        let state = File::open(&state_dir)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("spool-committer".into())
            .spawn(move || {
                let dirs = Dirs {
                    queue,
                    state,
                    queue_dir,
                };
                run(&rx, &dirs, &arrivals);
            })?;
        Ok(Committer { tx })
    }

    /// Hands a job to the committer. If the thread is gone (it never exits
    /// while this handle lives, but be safe) the job's waiter gets an error.
    pub fn submit(&self, job: Job) -> io::Result<()> {
        self.tx
            .send(job)
            .map_err(|_| io::Error::other("spool committer thread has stopped"))
    }
}

struct Dirs {
    queue: File,
    state: File,
    queue_dir: PathBuf,
}

fn run(rx: &mpsc::Receiver<Job>, dirs: &Dirs, arrivals: &UnboundedSender<QueueId>) {
    let sync = |dir: SyncDir| match dir {
        SyncDir::Queue => dirs.queue.sync_all(),
        SyncDir::State => dirs.state.sync_all(),
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(batch, &sync, &dirs.queue_dir, arrivals);
    }
    tracing::debug!("spool committer stopped");
}

/// Completes one batch: fsyncs each wanted directory once (through `sync`),
/// then completes every job with its directory's result.
fn commit(
    batch: Vec<Job>,
    sync: &dyn Fn(SyncDir) -> io::Result<()>,
    queue_dir: &Path,
    arrivals: &UnboundedSender<QueueId>,
) {
    let wanted: BTreeSet<SyncDir> = batch.iter().map(|j| j.dir).collect();
    let mut queue_result = Ok(());
    let mut state_result = Ok(());
    for dir in wanted {
        if let Err(e) = sync(dir) {
            tracing::error!(dir = ?dir, error = %e, "spool directory fsync failed");
            match dir {
                SyncDir::Queue => queue_result = Err(e),
                SyncDir::State => state_result = Err(e),
            }
        }
    }
    tracing::trace!(jobs = batch.len(), "spool group commit");
    for job in batch {
        let result = match job.dir {
            SyncDir::Queue => &queue_result,
            SyncDir::State => &state_result,
        };
        match (result, job.arrival) {
            (Ok(()), Some(id)) => {
                // The receiver may be gone (no delivery agent in the CLI):
                // that is fine, the queue directory is the truth.
                let _ = arrivals.send(id);
            }
            (Err(_), Some(id)) => {
                // Not acknowledged: make sure it is not delivered either,
                // since the client will send it again.
                if let Err(e) = std::fs::remove_file(queue_dir.join(&id.0)) {
                    tracing::warn!(queue_id = %id, error = %e, "could not withdraw unacknowledged message");
                }
            }
            _ => {}
        }
        job.waiter
            .complete(result.as_ref().map(|_| ()).map_err(clone_error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_waiters_and_announces_arrivals() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        let s = dir.path().join("state");
        std::fs::create_dir(&q).unwrap();
        std::fs::create_dir(&s).unwrap();
        let (atx, mut arx) = tokio::sync::mpsc::unbounded_channel();
        let c = Committer::start(q, s, atx).unwrap();
        let mut waits = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..50 {
            let (tx, rx) = mpsc::sync_channel(1);
            let id = QueueId::generate();
            ids.push(id.clone());
            c.submit(Job {
                dir: SyncDir::Queue,
                waiter: Waiter::Blocking(tx),
                arrival: Some(id),
            })
            .unwrap();
            c.submit(Job {
                dir: SyncDir::State,
                waiter: Waiter::Nobody,
                arrival: None,
            })
            .unwrap();
            waits.push(rx);
        }
        for rx in waits {
            rx.recv().unwrap().unwrap();
        }
        let mut got = Vec::new();
        while let Ok(id) = arx.try_recv() {
            got.push(id);
        }
        assert_eq!(got, ids, "arrivals announced in submission order");
    }

    #[test]
    fn failed_fsync_withdraws_message_and_reports_to_every_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let (atx, mut arx) = tokio::sync::mpsc::unbounded_channel();
        let ids: Vec<QueueId> = (0..3).map(|_| QueueId::generate()).collect();
        let mut batch = Vec::new();
        let mut waits = Vec::new();
        for id in &ids {
            std::fs::write(dir.path().join(&id.0), b"x").unwrap();
            let (tx, rx) = mpsc::sync_channel(1);
            batch.push(Job {
                dir: SyncDir::Queue,
                waiter: Waiter::Blocking(tx),
                arrival: Some(id.clone()),
            });
            waits.push(rx);
        }
        let (tx, state_rx) = mpsc::sync_channel(1);
        batch.push(Job {
            dir: SyncDir::State,
            waiter: Waiter::Blocking(tx),
            arrival: None,
        });
        let failing = |dir: SyncDir| match dir {
            SyncDir::Queue => Err(io::Error::other("disk on fire")),
            SyncDir::State => Ok(()),
        };
        commit(batch, &failing, dir.path(), &atx);
        for rx in waits {
            let e = rx.recv().unwrap().unwrap_err();
            assert!(e.to_string().contains("disk on fire"));
        }
        state_rx.recv().unwrap().unwrap();
        assert!(arx.try_recv().is_err(), "nothing announced");
        for id in &ids {
            assert!(
                !dir.path().join(&id.0).exists(),
                "unacknowledged message withdrawn"
            );
        }
    }
}
