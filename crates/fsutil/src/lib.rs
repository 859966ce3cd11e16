//! Durable-file primitives shared by the spool and the mail store:
//! creating a private file and writing it whole (fsynced or only written
//! out), and the never-replacing rename that makes its name appear
//! atomically.
//!
//! The spool's sequence (its `store`): write the file under a temporary
//! name, [`write_out`] (the kernel writes the data and allocates its
//! blocks, nothing is made durable yet), [`rename_noreplace`] it to its
//! final name (complete when it appears; never replacing a file), fsync
//! the directory (on a journalling file system: the one commit that makes
//! the group of files written meanwhile durable), fsync the file (its data
//! was written out before, so this costs a cache flush). The store's
//! Maildir delivery fdatasyncs the file before the rename instead (a
//! Maildir file has no checksum to catch a crash between the two).

mod group;
mod journal;

pub use group::{GroupSync, sync_dir_shared};
pub use journal::journal_orders_writes;

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

/// fsyncs a directory, making the entries created, renamed or removed in
/// it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Creates directory `path` with mode 0700 unless it is already a
/// directory; returns whether it was created.
pub fn ensure_dir(path: &Path) -> io::Result<bool> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
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

/// Writes the file's dirty data out and waits for it (Linux
/// `sync_file_range`): blocks allocated and written, nothing made durable
/// yet (no journal commit, no cache flush: an fsync must follow).
/// Elsewhere, an fdatasync.
pub fn write_out(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: a system call on a descriptor we own; offset and length
        // 0 mean the whole file.
        let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        file.sync_data()
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of
/// replacing an existing `to` (Linux `renameat2(RENAME_NOREPLACE)`: one
/// system call, one journal transaction). Where the file system or the
/// kernel lacks it: a hard link (which never replaces either) and an
/// unlink of `from`; on file systems without hard links, a plain rename.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        match renameat2_noreplace(from, to) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {}
            other => return other,
        }
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            let _ = std::fs::remove_file(from);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // No hard links here: the caller's names are unique.
        Err(_) => std::fs::rename(from, to),
    }
}

#[cfg(target_os = "linux")]
fn renameat2_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }

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
    fn rename_moves_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&a, b"first").unwrap();
        std::fs::write(&c, b"other").unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"first");
        // An existing target stays as it was, and so does the source.
        let e = rename_noreplace(&c, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&b).unwrap(), b"first");
        assert_eq!(std::fs::read(&c).unwrap(), b"other");
        assert!(rename_noreplace(&dir.path().join("missing"), &a).is_err());
    }

    #[test]
    fn write_out_keeps_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"0123456789").unwrap();
        write_out(&f).unwrap();
        f.sync_all().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
    }
}
