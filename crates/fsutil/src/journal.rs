//! Whether a directory lives on a file system whose metadata journal
//! commits in order after file data already written: ext3/ext4 with a
//! journal, and XFS.
//!
//! On such a file system a file whose data was written out and waited for
//! ([`crate::write_out`]), then renamed, is durable as a whole once its
//! directory is fsynced: the rename is committed in a journal transaction
//! no earlier than the file's block allocation and size, and the commit
//! flushes the device cache after the data reached the device. One journal
//! commit then covers file and name, and the file's own fsync adds nothing.
//! Elsewhere (ext2, ext4 without a journal, btrfs, network and unknown file
//! systems) the file must be fsynced before its rename: a crash between the
//! directory's fsync and the file's could leave the name pointing at an
//! empty file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

/// Answers per device (`st_dev`): a file system cannot lose or gain its
/// journal while mounted.
static BY_DEVICE: LazyLock<Mutex<HashMap<u64, bool>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether `dir`'s file system journals its metadata after data written
/// out (see the module doc). `false` when unsure, and on errors.
pub fn journal_orders_writes(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(dir) else {
            return false;
        };
        let dev = meta.dev();
        let mut cache = BY_DEVICE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&known) = cache.get(&dev) {
            return known;
        }
        let answer = linux::probe(dir, dev);
        cache.insert(dev, answer);
        answer
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dir, &BY_DEVICE);
        false
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    /// `statfs` magic numbers (linux/magic.h).
    const EXT_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;

    pub(super) fn probe(dir: &Path, dev: u64) -> bool {
        match fs_type(dir) {
            Some(XFS_SUPER_MAGIC) => true,
            // ext2, ext3 and ext4 share the magic: ask the kernel whether
            // this device has a jbd2 journal.
            Some(EXT_SUPER_MAGIC) => block_device_name(dev)
                .is_some_and(|name| has_jbd2_journal(Path::new("/proc/fs/jbd2"), &name)),
            _ => false,
        }
    }

    fn fs_type(dir: &Path) -> Option<i64> {
        let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: a zeroed statfs is a valid out-parameter; the path is a
        // NUL-terminated string that outlives the call.
        let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(path.as_ptr(), &mut buf) };
        #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
        (rc == 0).then_some(buf.f_type as i64)
    }

    /// The kernel's name of block device `dev` ("vda", "loop0", "dm-1"),
    /// from sysfs.
    fn block_device_name(dev: u64) -> Option<String> {
        let link = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
        let target = std::fs::read_link(link).ok()?;
        Some(target.file_name()?.to_str()?.to_owned())
    }

    /// Whether `jbd2_dir` (`/proc/fs/jbd2`) lists a journal of device
    /// `name` (entries are `<device>-<journal inode>`).
    pub(super) fn has_jbd2_journal(jbd2_dir: &Path, name: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(jbd2_dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(name))
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|ino| !ino.is_empty() && ino.bytes().all(|b| b.is_ascii_digit()))
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn jbd2_entries_are_matched_by_whole_device_name() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["vda-8", "loop12-8", "dm-0-8"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        assert!(linux::has_jbd2_journal(dir.path(), "vda"));
        assert!(linux::has_jbd2_journal(dir.path(), "loop12"));
        assert!(linux::has_jbd2_journal(dir.path(), "dm-0"));
        assert!(
            !linux::has_jbd2_journal(dir.path(), "loop1"),
            "a prefix is not a match"
        );
        assert!(!linux::has_jbd2_journal(dir.path(), "vdb"));
        assert!(!linux::has_jbd2_journal(dir.path(), "dm"));
        assert!(!linux::has_jbd2_journal(&dir.path().join("missing"), "vda"));
    }

    #[test]
    fn answers_match_the_file_systems_here() {
        // Whatever the machine: a missing path is "unsure", and /proc
        // (procfs) never journals.
        let dir = tempfile::tempdir().unwrap();
        assert!(!journal_orders_writes(&dir.path().join("missing")));
        assert!(!journal_orders_writes(Path::new("/proc")));
        // The answer for a directory is stable (cached per device).
        let first = journal_orders_writes(dir.path());
        assert_eq!(journal_orders_writes(dir.path()), first);
    }
}
