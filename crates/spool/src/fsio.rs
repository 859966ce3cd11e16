//! Small durable-file helpers: write-and-fsync, directory fsync, directory
//! creation with private permissions.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `path` (a new file, never an existing one) with mode 0600, writes
/// `parts` one after the other and fsyncs the data. If writing fails, the
/// partial file is removed (best effort); an existing file is never touched.
pub fn write_new_synced(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let result = (|| {
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_data()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

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
    fn writes_new_file_and_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_new_synced(&p, &[b"ab", b"\0c"]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ab\0c");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = write_new_synced(&p, &[b"x"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"ab\0c",
            "existing file untouched"
        );
    }

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
