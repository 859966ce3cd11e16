//! Message files of a folder as the index sees them: the relative path
//! (`new/<name>` or `cur/<name>:2,<flags>`), fresh unique names for
//! APPEND and COPY, writing a file into `cur/` with its flags, mirroring
//! flags into the name by renaming, and finding a file again by base name
//! when another reader moved or renamed it.

use crate::flags::Flags;
use crate::fsio::sync_dir;
use crate::name::{NameParts, base_name, unique_name};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Per-process counter of names made here (a clash with a delivery's
/// name in the same microsecond is caught by the no-replace link).
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Fresh names tried when a name is taken.
const NAME_ATTEMPTS: usize = 8;
/// Most directory entries looked at when searching for a moved file.
const MAX_SCAN: usize = 2_000_000;

/// The message subdirectories of a folder, in scan order (`new/` first,
/// so a file moved to `cur/` during a scan is still seen once).
pub const SUBDIRS: [&str; 2] = ["new", "cur"];

/// Where a message file was put: (base name, relative path).
pub type Placed = (Vec<u8>, Vec<u8>);

/// `sub/name` as bytes.
pub fn rel(sub: &str, name: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(sub.len() + 1 + name.len());
    r.extend_from_slice(sub.as_bytes());
    r.push(b'/');
    r.extend_from_slice(name);
    r
}

/// The file name part of a relative path.
pub fn file_part(rel: &[u8]) -> &[u8] {
    match rel.iter().position(|&b| b == b'/') {
        Some(i) => &rel[i + 1..],
        None => rel,
    }
}

/// The absolute path of a relative file in folder `dir`.
pub fn path_of(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(std::ffi::OsStr::from_bytes(rel))
}

/// The file name for `base` with `flags` in `cur/`.
pub fn cur_name(base: &[u8], flags: &Flags) -> Vec<u8> {
    let mut n = base.to_vec();
    n.extend_from_slice(b":2,");
    n.extend_from_slice(flags.maildir_letters().as_bytes());
    n
}

/// A unique name for a message made here.
pub fn fresh_name(queue_id: Option<&str>, size: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    unique_name(&NameParts {
        secs: now.as_secs(),
        micros: now.subsec_micros(),
        pid: std::process::id(),
        queue_id: queue_id.unwrap_or(""),
        counter: 5_000 + COUNTER.fetch_add(1, Ordering::Relaxed) % 5_000,
        host: crate::host(),
        size,
    })
}

/// Finds the file with base name `base` in `dir`'s `new/` or `cur/`.
pub fn locate(dir: &Path, base: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut seen = 0usize;
    for sub in SUBDIRS {
        let entries = match std::fs::read_dir(dir.join(sub)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            seen += 1;
            if seen > MAX_SCAN {
                return Ok(None);
            }
            let name = entry?.file_name();
            if base_name(name.as_bytes()) == base {
                return Ok(Some(rel(sub, name.as_bytes())));
            }
        }
    }
    Ok(None)
}

/// Renames the file at `rel` (found again by `base` if it moved) to
/// `cur/<base>:2,<flags>`; returns its new relative path, or `None` when
/// the file is gone.
pub fn mirror_flags(
    dir: &Path,
    rel_path: &[u8],
    base: &[u8],
    flags: &Flags,
) -> io::Result<Option<Vec<u8>>> {
    let target = rel("cur", &cur_name(base, flags));
    if rel_path == target.as_slice() && std::fs::symlink_metadata(path_of(dir, &target)).is_ok() {
        return Ok(Some(target));
    }
    match std::fs::rename(path_of(dir, rel_path), path_of(dir, &target)) {
        Ok(()) => return Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let Some(found) = locate(dir, base)? else {
        return Ok(None);
    };
    if found == target {
        return Ok(Some(target));
    }
    match std::fs::rename(path_of(dir, &found), path_of(dir, &target)) {
        Ok(()) => Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `data` into `dir/tmp`, fsyncs it, sets its mtime to
/// `internal_date`, links it into `cur/` with `flags` (never replacing a
/// file) and fsyncs `cur/`. Returns (base name, relative path).
pub fn write_message(
    dir: &Path,
    data: &[u8],
    flags: &Flags,
    internal_date: Option<i64>,
    queue_id: Option<&str>,
) -> io::Result<Placed> {
    let mut last = None;
    for _ in 0..NAME_ATTEMPTS {
        let base = fresh_name(queue_id, data.len() as u64);
        let tmp = dir.join("tmp").join(&base);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let written = write_all_synced(&mut file, data, internal_date);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let target = rel("cur", &cur_name(base.as_bytes(), flags));
        match link_or_rename(&tmp, &path_of(dir, &target)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                last = Some(e);
                continue;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        if let Err(e) = sync_dir(&dir.join("cur")) {
            let _ = std::fs::remove_file(path_of(dir, &target));
            return Err(e);
        }
        return Ok((base.into_bytes(), target));
    }
    Err(last.unwrap_or_else(|| io::Error::other("no unique maildir name")))
}

fn write_all_synced(file: &mut File, data: &[u8], internal_date: Option<i64>) -> io::Result<()> {
    file.write_all(data)?;
    if let Some(secs) = internal_date {
        let t = if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH
        };
        file.set_modified(t)?;
    }
    file.sync_data()
}

/// Hard-links `from` to `to` and removes `from`; renames where links are
/// not supported. `AlreadyExists` when `to` exists.
fn link_or_rename(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            let _ = std::fs::remove_file(from);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if to.exists() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "name taken"));
            }
            std::fs::rename(from, to)
        }
    }
}

/// Puts a copy of the file `src` into `dest_dir/cur` under a fresh name
/// with `flags`: a hard link when possible, else a copy (through `tmp/`,
/// fsynced). `cur/` is not fsynced here (the caller does it once per
/// batch). Returns (base name, relative path).
pub fn copy_file(
    src: &Path,
    dest_dir: &Path,
    size: u64,
    flags: &Flags,
    queue_id: Option<&str>,
) -> io::Result<Placed> {
    let mut last = None;
    for _ in 0..NAME_ATTEMPTS {
        let base = fresh_name(queue_id, size);
        let target = rel("cur", &cur_name(base.as_bytes(), flags));
        let to = path_of(dest_dir, &target);
        match std::fs::hard_link(src, &to) {
            Ok(()) => return Ok((base.into_bytes(), target)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = Some(e);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        // No hard links here (another file system, or not supported).
        let tmp = dest_dir.join("tmp").join(&base);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut input = crate::fsio::open_no_follow(src)?;
        let copied = io::copy(&mut input, &mut out).and_then(|_| out.sync_data());
        if let Err(e) = copied.and_then(|()| {
            let mtime = input.metadata()?.modified()?;
            out.set_modified(mtime)
        }) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        match link_or_rename(&tmp, &to) {
            Ok(()) => return Ok((base.into_bytes(), target)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                last = Some(e);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no unique maildir name")))
}

/// Moves the file at `src` (in another folder) into `dest_dir/cur` under
/// a fresh name with `flags` (a rename: same file system). Returns (base
/// name, relative path).
pub fn move_file(
    src: &Path,
    dest_dir: &Path,
    size: u64,
    flags: &Flags,
    queue_id: Option<&str>,
) -> io::Result<Placed> {
    let mut last = None;
    for _ in 0..NAME_ATTEMPTS {
        let base = fresh_name(queue_id, size);
        let target = rel("cur", &cur_name(base.as_bytes(), flags));
        let to = path_of(dest_dir, &target);
        if to.exists() {
            last = Some(io::Error::new(io::ErrorKind::AlreadyExists, "name taken"));
            continue;
        }
        std::fs::rename(src, &to)?;
        return Ok((base.into_bytes(), target));
    }
    Err(last.unwrap_or_else(|| io::Error::other("no unique maildir name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        crate::fsio::create_maildir(d.path()).unwrap();
        d
    }

    #[test]
    fn write_then_mirror_then_locate() {
        let d = folder();
        let mut flags = Flags {
            seen: true,
            ..Flags::default()
        };
        let (base, r) = write_message(d.path(), b"hello", &flags, Some(1_000_000), None).unwrap();
        assert!(r.starts_with(b"cur/") && r.ends_with(b":2,S"));
        let meta = std::fs::metadata(path_of(d.path(), &r)).unwrap();
        assert_eq!(
            meta.modified().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_000_000)
        );
        assert_eq!(std::fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        flags.flagged = true;
        let r2 = mirror_flags(d.path(), &r, &base, &flags).unwrap().unwrap();
        assert!(r2.ends_with(b":2,FS"));
        assert_eq!(std::fs::read(path_of(d.path(), &r2)).unwrap(), b"hello");
        // A stale path is found again by base name.
        flags.flagged = false;
        let r3 = mirror_flags(d.path(), &r, &base, &flags).unwrap().unwrap();
        assert!(r3.ends_with(b":2,S"));
        assert_eq!(locate(d.path(), &base).unwrap(), Some(r3.clone()));
        std::fs::remove_file(path_of(d.path(), &r3)).unwrap();
        assert_eq!(mirror_flags(d.path(), &r3, &base, &flags).unwrap(), None);
        assert_eq!(locate(d.path(), &base).unwrap(), None);
    }

    #[test]
    fn copy_and_move_make_fresh_names() {
        let a = folder();
        let b = folder();
        let (_, r) = write_message(a.path(), b"x", &Flags::default(), None, Some("abc")).unwrap();
        let src = path_of(a.path(), &r);
        let (b1, c1) = copy_file(&src, b.path(), 1, &Flags::default(), Some("abc")).unwrap();
        let (b2, _) = copy_file(&src, b.path(), 1, &Flags::default(), Some("abc")).unwrap();
        assert_ne!(b1, b2);
        assert_eq!(std::fs::read(path_of(b.path(), &c1)).unwrap(), b"x");
        assert!(String::from_utf8(b1).unwrap().contains("Qabc_"));
        let (_, m) = move_file(&src, b.path(), 1, &Flags::default(), None).unwrap();
        assert!(!src.exists());
        assert_eq!(std::fs::read(path_of(b.path(), &m)).unwrap(), b"x");
    }
}
