//! The exclusive per-mailbox lock of a POP3 session: `flock` on
//! `postamt-pop3.lock` inside the Maildir (other processes, and other open
//! files in this one), plus an in-process registry so the lock also holds
//! for a mailbox whose directory does not exist yet.

use crate::StoreError;
use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The lock file's name inside a Maildir.
pub const LOCK_FILE: &str = "postamt-pop3.lock";

static HELD: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn held() -> MutexGuard<'static, Option<HashSet<PathBuf>>> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Held while a POP3 session owns the mailbox; released on drop.
#[derive(Debug)]
pub struct MailboxLock {
    root: PathBuf,
    /// The locked file (unlocked when closed); `None` when the Maildir
    /// does not exist.
    _file: Option<File>,
}

impl MailboxLock {
    /// Takes the lock on the Maildir at `root`, or `StoreError::InUse`.
    pub(crate) fn acquire(root: &Path) -> Result<MailboxLock, StoreError> {
        if !held()
            .get_or_insert_with(HashSet::new)
            .insert(root.to_path_buf())
        {
            return Err(StoreError::InUse);
        }
        // From here on, dropping `lock` releases the registry entry.
        let mut lock = MailboxLock {
            root: root.to_path_buf(),
            _file: None,
        };
        if root.is_dir() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(root.join(LOCK_FILE))?;
            match file.try_lock() {
                Ok(()) => lock._file = Some(file),
                Err(TryLockError::WouldBlock) => return Err(StoreError::InUse),
                Err(TryLockError::Error(e)) => return Err(e.into()),
            }
        }
        Ok(lock)
    }

    /// The Maildir this lock is for.
    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for MailboxLock {
    fn drop(&mut self) {
        if let Some(set) = held().as_mut() {
            set.remove(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let a = MailboxLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            MailboxLock::acquire(dir.path()),
            Err(StoreError::InUse)
        ));
        drop(a);
        let _b = MailboxLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn flock_excludes_an_independent_holder() {
        // Another process is simulated by an independent open file
        // description holding the flock.
        let dir = tempfile::tempdir().unwrap();
        let other = File::create(dir.path().join(LOCK_FILE)).unwrap();
        other.try_lock().unwrap();
        assert!(matches!(
            MailboxLock::acquire(dir.path()),
            Err(StoreError::InUse)
        ));
        // The failed attempt did not leave a registry entry behind.
        other.unlock().unwrap();
        let _ok = MailboxLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn missing_mailbox_is_locked_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nobody");
        let a = MailboxLock::acquire(&root).unwrap();
        assert!(!root.exists(), "locking creates nothing");
        assert!(matches!(
            MailboxLock::acquire(&root),
            Err(StoreError::InUse)
        ));
        drop(a);
        assert!(MailboxLock::acquire(&root).is_ok());
    }

    #[test]
    fn symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let root = dir.path().join("mbox");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&target, root.join(LOCK_FILE)).unwrap();
        assert!(matches!(
            MailboxLock::acquire(&root),
            Err(StoreError::Io(_))
        ));
        // Again Io, not InUse: the failed attempt released its registry entry.
        assert!(matches!(
            MailboxLock::acquire(&root),
            Err(StoreError::Io(_))
        ));
    }
}
