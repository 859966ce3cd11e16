//! Small durable-file helpers: directory fsync, directory creation with
//! private permissions (writing files: `postamt_fsutil`).

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// fsyncs a directory, making the entries created, renamed or removed in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Creates `path` with mode 0700 if it does not exist; returns whether it
/// was created.
pub fn ensure_dir(path: &Path) -> io::Result<bool> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// An `io::Error` that can be handed to several waiters.
pub fn clone_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ensure_dir_reports_creation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        assert!(ensure_dir(&p).unwrap());
        assert!(!ensure_dir(&p).unwrap());
        sync_dir(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(dir.path().join("file"), b"").unwrap();
        assert!(ensure_dir(&dir.path().join("file")).is_err());
    }
}
