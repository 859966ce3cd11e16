//! File-system helpers for the store: the Maildir skeleton (`cur/ new/
//! tmp/`) and no-follow opens; directory creation and fsync (alone, or
//! shared by concurrent writers) come from `postamt_fsutil`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The three Maildir subdirectories.
pub const SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];

pub use postamt_fsutil::{ensure_dir, sync_dir, sync_dir_shared};

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
