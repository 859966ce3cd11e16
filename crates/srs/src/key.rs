//! The SRS secret: 32 random bytes in a file of mode 0600, created on first
//! use without a window in which another process could see a partial key.

use crate::SrsError;
use rand::TryRngCore;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Length of the key in bytes.
pub const KEY_LEN: usize = 32;

/// Reads the key at `path`, or creates it with fresh random bytes.
///
/// Creation writes a temporary file in the same directory (mode 0600),
/// syncs it, then hard-links it to `path`, which fails if another process
/// got there first; in that case its key is read and used.
pub fn load_or_create(path: &Path) -> Result<[u8; KEY_LEN], SrsError> {
    match read_key(path) {
        Ok(key) => return Ok(key),
        Err(SrsError::Io(e)) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| SrsError::Io(std::io::Error::other(e.to_string())))?;
    let tmp = temp_path(path);
    let written = write_new(&tmp, &key);
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    // The temporary name goes in every case; failing to remove it only
    // leaves a stray file.
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path);
            tracing::info!(path = %path.display(), "created SRS key");
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(SrsError::Io(e)),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

fn write_new(tmp: &Path, key: &[u8]) -> std::io::Result<()> {
    // A stale temporary file of ours (crash) is replaced.
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(key)?;
    f.sync_all()
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN], SrsError> {
    let mut f = fs::File::open(path)?;
    let meta = f.metadata()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "SRS key file is readable by others; it should be mode 0600");
    }
    // Read one byte more than needed to notice a file that is too long.
    let mut buf = Vec::with_capacity(KEY_LEN + 1);
    (&mut f).take(KEY_LEN as u64 + 1).read_to_end(&mut buf)?;
    <[u8; KEY_LEN]>::try_from(buf.as_slice()).map_err(|_| {
        SrsError::Malformed(format!(
            "key file {} must hold exactly {KEY_LEN} bytes",
            path.display()
        ))
    })
}
