//! Small durable-file helpers: write-and-fsync, directory fsync, directory
//! creation with private permissions.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `path` (a new file, never an existing one) with mode 0600, writes
/// `parts` one after the other (one `writev` as a rule) and fsyncs the
/// data. If writing fails, the partial file is removed (best effort); an
/// existing file is never touched.
pub fn write_new_synced(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    write_synced(create_new(path)?, path, parts)
}

/// Creates `path` (a new file, never an existing one) with mode 0600.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `parts` into the empty `file` (at `path`) and fsyncs the data;
/// on failure the file is removed (best effort).
pub fn write_synced(mut file: File, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let result = write_all_parts(&mut file, parts).and_then(|()| file.sync_data());
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Writes every part, in order, with as few `writev` calls as the kernel
/// allows.
pub fn write_all_parts<W: Write>(out: &mut W, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write the whole file",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

    /// A writer that takes at most 3 bytes per call, from one slice only.
    struct Trickle(Vec<u8>, usize);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.1 += 1;
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_survive_short_writes() {
        let mut t = Trickle(Vec::new(), 0);
        write_all_parts(&mut t, &[b"head", b"", b"er\n", b"body bytes"]).unwrap();
        assert_eq!(t.0, b"header\nbody bytes");
        assert!(t.1 >= 6, "many short writes");
        let mut v = Vec::new();
        write_all_parts(&mut v, &[b"a", b"bc"]).unwrap();
        assert_eq!(v, b"abc");
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
