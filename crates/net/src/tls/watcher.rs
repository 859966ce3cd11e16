//! Noticing that certificate files changed: a snapshot of each file's
//! identity (device, inode, size, mtime; symlinks followed, so a renewed
//! certbot link counts) compared between polls.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// What identifies one version of a file; `None` when it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// The stamps of a fixed list of files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot(Vec<(PathBuf, Option<Stamp>)>);

impl Snapshot {
    /// Stats every file in `paths` now (blocking, but only `stat` calls).
    pub(crate) fn take(paths: &[PathBuf]) -> Snapshot {
        Snapshot(
            paths
                .iter()
                .map(|p| {
                    let stamp = std::fs::metadata(p).ok().map(|m| Stamp {
                        dev: m.dev(),
                        ino: m.ino(),
                        len: m.len(),
                        mtime: m.mtime(),
                        mtime_nsec: m.mtime_nsec(),
                    });
                    (p.clone(), stamp)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_rewrite_replacement_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pem");
        let b = dir.path().join("b.pem");
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"two").unwrap();
        let paths = vec![a.clone(), b.clone()];
        let s0 = Snapshot::take(&paths);
        assert_eq!(s0, Snapshot::take(&paths), "nothing changed");

        // Same size, new file put in place by rename (new inode).
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"ONE").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        let s1 = Snapshot::take(&paths);
        assert_ne!(s0, s1);

        // Rewritten in place with another length.
        std::fs::write(&b, b"two, longer").unwrap();
        let s2 = Snapshot::take(&paths);
        assert_ne!(s1, s2);

        std::fs::remove_file(&b).unwrap();
        let s3 = Snapshot::take(&paths);
        assert_ne!(s2, s3);
        assert!(s3.0[1].1.is_none());
    }
}
