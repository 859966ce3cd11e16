//! Batched indexing of delivered messages.
//!
//! A delivery parses its message (ENVELOPE, BODYSTRUCTURE: the meta every
//! IMAP session needs) on its own thread, then hands the result to one
//! writer thread per process, which lets the deliveries arriving within
//! [`GATHER`] join and inserts them in one write transaction per mailbox:
//! one WAL commit (and one write of each touched page) for many messages
//! instead of one each. Then it bumps the folder's change signal, so IDLE
//! sessions announce the new mail.
//!
//! Indexing at delivery is an optimisation: a session that refreshes a
//! folder indexes any file it finds unindexed, and the insert skips a
//! message indexed meanwhile (same base name) or no longer in `new/`
//! (fetched and deleted over POP3, moved by a session that indexed it).
//! So a queued entry lost in a crash costs a parse at the next refresh,
//! nothing else. When the writer is unavailable or its queue is full, the
//! delivery indexes inline, as it did before batching.

use super::{folder_ops, messages};
use crate::flags::Flags;
use crate::{StoreError, name, place, watch};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

/// How long the writer lets deliveries gather after the first one.
pub const GATHER: Duration = Duration::from_millis(2);
/// Most deliveries written in one go.
const MAX_BATCH: usize = 256;
/// Deliveries queued at most; past it, deliveries index inline.
const QUEUE_LEN: usize = 4096;
/// How long `flush` waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(30);

/// A delivered message, parsed and ready to index.
#[derive(Debug)]
pub struct Delivered {
    root: PathBuf,
    name: String,
    size: u64,
    internal_date: i64,
    meta: Vec<u8>,
}

impl Delivered {
    /// Parses `data`, delivered to `<root>/new/<name>`.
    pub fn new(root: &Path, name: &str, data: &[u8]) -> Delivered {
        let meta = messages::encode_meta(&crate::parse::parse_meta(data));
        let internal_date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        Delivered {
            root: root.to_path_buf(),
            name: name.to_owned(),
            size: data.len() as u64,
            internal_date,
            meta,
        }
    }
}

enum Job {
    Index(Delivered),
    /// Answered once every job sent before it is written.
    Flush(SyncSender<()>),
}

fn writer() -> Option<&'static SyncSender<Job>> {
    static TX: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_LEN);
        let spawned = std::thread::Builder::new()
            .name("postamt-index-writer".into())
            .spawn(move || run(&rx));
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "no index writer thread; indexing inline");
                None
            }
        }
    })
    .as_ref()
}

/// Queues `d` for the writer thread, or indexes it now when that is not
/// possible. Never fails: indexing errors are logged (see the module doc).
pub fn submit(d: Delivered) {
    let rejected = match writer() {
        Some(tx) => match tx.try_send(Job::Index(d)) {
            Ok(()) => return,
            Err(TrySendError::Full(Job::Index(d)) | TrySendError::Disconnected(Job::Index(d))) => d,
            Err(_) => return,
        },
        None => d,
    };
    let root = rejected.root.clone();
    write_mailbox(&root, &[rejected]);
}

/// Waits until every delivery queued before this call is indexed (tests,
/// and the server's shutdown). Returns false if the writer did not answer.
pub fn flush() -> bool {
    let Some(tx) = writer() else {
        return true;
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    if tx.send(Job::Flush(done_tx)).is_err() {
        return false;
    }
    done_rx.recv_timeout(FLUSH_WAIT).is_ok()
}

/// The writer thread: one batch after the other.
fn run(rx: &Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        if matches!(first, Job::Index(_)) {
            // Let the deliveries in flight join. A sleep, not a timed
            // receive: senders do not have to wake a sleeping thread.
            std::thread::sleep(GATHER);
        }
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Index(d) => batch.push(d),
                Job::Flush(done) => flushes.push(done),
            }
            // A flush is answered as soon as what came before it is written.
            if batch.len() >= MAX_BATCH || !flushes.is_empty() {
                break;
            }
            next = rx.try_recv().ok();
        }
        let mut by_root: BTreeMap<PathBuf, Vec<Delivered>> = BTreeMap::new();
        for d in batch {
            by_root.entry(d.root.clone()).or_default().push(d);
        }
        for (root, items) in &by_root {
            write_mailbox(root, items);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Indexes `items` (all delivered into INBOX of the mailbox at `root`) in
/// one write transaction, then announces them.
fn write_mailbox(root: &Path, items: &[Delivered]) {
    match insert_all(root, items) {
        Ok(n) => tracing::trace!(root = %root.display(), indexed = n, "deliveries indexed"),
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "indexing delivered messages failed");
        }
    }
    watch::notify(root);
}

/// Inserts `items` into INBOX of the mailbox at `root`, in one write
/// transaction; returns how many were new.
pub(crate) fn insert_all(root: &Path, items: &[Delivered]) -> Result<usize, StoreError> {
    let idx = super::open(root)?;
    let flags = Flags::default();
    let new_dir = root.join("new");
    idx.write_txn(|tx| {
        let mut row = folder_ops::get_or_create(tx, "INBOX")?;
        let mut added = 0;
        for d in items {
            // Gone already (POP3 DELE, or moved by a session, which
            // indexed it): the next refresh sees the folder as it is.
            if !new_dir.join(&d.name).exists() {
                continue;
            }
            let file = place::rel("new", d.name.as_bytes());
            let queue_id = name::queue_id_of(d.name.as_bytes());
            let m = messages::NewMessage {
                base: name::base_name(d.name.as_bytes()),
                file: &file,
                flags: &flags,
                size: d.size,
                internal_date: d.internal_date,
                queue_id: queue_id.as_deref(),
                meta: &d.meta,
            };
            if messages::insert(tx, &mut row, &m)?.is_some() {
                added += 1;
            }
        }
        if added > 0 {
            folder_ops::save(tx, &row)?;
        }
        Ok(added)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: &str) -> Vec<u8> {
        format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
    }

    #[test]
    fn concurrent_deliveries_all_indexed_with_distinct_uids() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::MailStore::new(
            &format!("{}/%u", dir.path().display()),
            "example.org",
            true,
        ));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..25 {
                        store
                            .deliver(
                                "bob",
                                &msg(&format!("t{t} m{i}")),
                                "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f",
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(flush());
        let root = store.mailbox_dir("bob").unwrap();
        let idx = super::super::open(&root).unwrap();
        let (n, distinct): (i64, i64) = idx
            .read_txn(|tx| {
                tx.query_row(
                    "SELECT count(*), count(DISTINCT uid) FROM messages",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(super::super::err)
            })
            .unwrap();
        assert_eq!((n, distinct), (100, 100));
    }

    #[test]
    fn a_message_gone_from_new_is_not_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bob");
        crate::fsio::create_maildir(&root).unwrap();
        let kept = "1700000000.M1P2Q0193f1c2a4b57c3d8e9f0a1b2c3d4e5f.mx,S=10";
        std::fs::write(root.join("new").join(kept), msg("kept")).unwrap();
        let items = [
            Delivered::new(&root, kept, &msg("kept")),
            // Fetched and deleted over POP3 before the writer got to it.
            Delivered::new(&root, "1700000000.M2P2.mx,S=10", &msg("gone")),
        ];
        assert_eq!(insert_all(&root, &items).unwrap(), 1);
        // Indexed already: a second insert adds nothing.
        assert_eq!(insert_all(&root, &items[..1]).unwrap(), 0);
    }
}
