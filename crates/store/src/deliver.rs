//! Delivery into a Maildir: write `tmp/<unique>`, make its data durable
//! or at least written, rename it to `new/<unique>` (never replacing a
//! file, `postamt_fsutil`), fsync `new/`. A reader never sees a partial
//! message: it appears in `new/` complete or not at all. The fsync of
//! `new/` is shared by the deliveries to the same mailbox that run at the
//! same time (group commit, `postamt_fsutil::sync_dir_shared`). Delivery
//! is reported only after it; a message a crash took back before that is
//! still in the spool and is delivered again.
//!
//! Two orders, chosen per file system (`postamt_fsutil::journal_orders_writes`):
//! - ext3/ext4 with a journal, XFS: the file is written out and waited
//!   for (no journal commit), renamed, and `new/`'s fsync is the one
//!   commit that makes file and name durable together (the journal
//!   commits the rename after the file's blocks, and flushes the device
//!   cache after the data reached it).
//! - anything else: the file is fdatasynced before the rename, so a crash
//!   can never leave an empty or half-written file in `new/` (a Maildir
//!   file has no checksum to catch one, unlike a queue file).

use crate::fsio::sync_dir_shared;
use crate::name::{NameParts, unique_name};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Per-process delivery counter (part of the unique name).
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Fresh names tried when a name is taken (a clock step backwards).
const NAME_ATTEMPTS: usize = 8;

/// This process's id (asked once: `getpid` is a system call every time).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Writes `data` into the Maildir at `root` (which must have `tmp/` and
/// `new/`); returns the unique name under `new/`.
pub fn deliver_into(root: &Path, data: &[u8], queue_id: &str, host: &str) -> io::Result<String> {
    let journalled = postamt_fsutil::journal_orders_writes(&root.join("new"));
    deliver_in_order(root, data, queue_id, host, journalled)
}

/// `deliver_into` with the order chosen by the caller: `journalled` writes
/// the file out and lets `new/`'s fsync make it durable, otherwise the
/// file is fdatasynced before its rename (see the module doc).
fn deliver_in_order(
    root: &Path,
    data: &[u8],
    queue_id: &str,
    host: &str,
    journalled: bool,
) -> io::Result<String> {
    let tmp_dir = root.join("tmp");
    let new_dir = root.join("new");
    let mut last_clash = None;
    for _ in 0..NAME_ATTEMPTS {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = unique_name(&NameParts {
            secs: now.as_secs(),
            micros: now.subsec_micros(),
            pid: pid(),
            queue_id,
            counter: COUNTER.fetch_add(1, Ordering::Relaxed),
            host,
            size: data.len() as u64,
        });
        let tmp = tmp_dir.join(&name);
        let new = new_dir.join(&name);
        let mut file = match postamt_fsutil::create_new(&tmp) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last_clash = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let written = postamt_fsutil::write_all_parts(&mut file, &[data]).and_then(|()| {
            if journalled {
                postamt_fsutil::write_out(&file)
            } else {
                file.sync_data()
            }
        });
        drop(file);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        match postamt_fsutil::rename_noreplace(&tmp, &new) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                last_clash = Some(e);
                continue;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        if let Err(e) = sync_dir_shared(&new_dir) {
            // Not durable: take it back so a retry does not duplicate it.
            let _ = std::fs::remove_file(&new);
            return Err(e);
        }
        return Ok(name);
    }
    Err(last_clash.unwrap_or_else(|| io::Error::other("no unique maildir name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_complete_file_to_new_only() {
        for journalled in [false, true] {
            delivers_in_order(journalled);
        }
    }

    fn delivers_in_order(journalled: bool) {
        let dir = tempfile::tempdir().unwrap();
        crate::fsio::create_maildir(dir.path()).unwrap();
        let data = b"From: a\r\n\r\n\0\r\n.\r\nend";
        let qid = "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f";
        let name = deliver_in_order(dir.path(), data, qid, "mx", journalled).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("new").join(&name)).unwrap(),
            data
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("cur")).unwrap().count(),
            0
        );
        assert!(name.ends_with(&format!(",S={}", data.len())));
        let other = deliver_into(dir.path(), data, qid, "mx").unwrap();
        assert_ne!(name, other);
    }

    #[test]
    fn missing_new_dir_is_an_error_and_leaves_no_tmp() {
        for journalled in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("tmp")).unwrap();
            assert!(deliver_in_order(dir.path(), b"x", "q", "h", journalled).is_err());
            assert_eq!(
                std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
                0
            );
        }
    }
}
