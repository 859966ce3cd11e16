//! Files -> index: a cheap scan of a folder's `new/` and `cur/` (two
//! readdirs, no stat of known files, no reading of indexed messages),
//! compared with what the index (or a session's snapshot) knows; when they
//! differ, one write transaction brings the index in line: new files get
//! UIDs (their meta parsed), vanished files are expunged, and flags changed
//! by another Maildir reader are taken over. Nothing is renamed here:
//! messages stay in `new/` until their flags change (Dovecot moves them to
//! `cur/` when a session sees them; for a big `new/` that is thousands of
//! renames in the first SELECT, and nothing in the protocol needs it).

use super::folder_ops::{self, FolderRow};
use super::messages::{self, FileRow, NewMessage};
use crate::StoreError;
use crate::flags::Flags;
use crate::maildir::MAX_READ;
use crate::name::{base_name, delivery_time, queue_id_of};
use crate::place::{self, SUBDIRS};
use rusqlite::Connection;
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most files read from one subdirectory.
const MAX_ENTRIES: usize = 1_000_000;
/// A directory whose mtime is this recent is rescanned even if unchanged
/// (a change within the same timestamp tick would otherwise be missed).
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// Base name -> relative path of every message file on disk.
pub type Files = HashMap<Vec<u8>, Vec<u8>>;

/// The modification times of `new/` and `cur/` at a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    mtimes: [Option<SystemTime>; 2],
    scanned: SystemTime,
}

impl Stamp {
    /// The current mtimes of `dir`'s subdirectories.
    pub fn take(dir: &Path) -> Stamp {
        let m = |sub: &str| {
            std::fs::metadata(dir.join(sub))
                .and_then(|m| m.modified())
                .ok()
        };
        Stamp {
            mtimes: [m(SUBDIRS[0]), m(SUBDIRS[1])],
            scanned: SystemTime::now(),
        }
    }

    /// Whether a scan at `self` is still good now (`now` = a fresh take).
    pub fn still_valid(&self, now: &Stamp) -> bool {
        self.mtimes == now.mtimes
            && self
                .mtimes
                .iter()
                .all(|m| m.is_some_and(|m| m + MTIME_SLACK < self.scanned))
    }
}

/// Lists the message files of the folder in `dir` (dotfiles, directories
/// and symlinks skipped; a base name in both subdirectories counts once,
/// the one in `cur/`).
pub fn scan(dir: &Path) -> Result<Files, StoreError> {
    let mut files = Files::new();
    for sub in SUBDIRS {
        let entries = match std::fs::read_dir(dir.join(sub)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries.take(MAX_ENTRIES) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let name = entry.file_name();
            let bytes = name.as_bytes();
            if bytes.starts_with(b".") {
                continue;
            }
            // From d_type where the file system has it: no stat.
            match entry.file_type() {
                Ok(t) if t.is_file() => {}
                _ => continue,
            }
            files.insert(base_name(bytes).to_vec(), place::rel(sub, bytes));
        }
    }
    Ok(files)
}

/// Whether the files differ from what is known (base name -> file): a
/// file unknown, a known one gone or renamed.
pub fn differs<'a>(
    files: &Files,
    known: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) -> bool {
    if files.len() != known.len() {
        return true;
    }
    for (base, file) in known {
        match files.get(base) {
            Some(f) if f.as_slice() == file => {}
            _ => return true,
        }
    }
    false
}

/// What a sync changed.
#[derive(Debug, Default)]
pub struct Synced {
    /// Something a session would report (new, expunged, flags).
    pub changed: bool,
    /// The files on disk after the sync.
    pub files: Files,
}

/// Brings the index of folder `name` (directory `dir`) in line with the
/// files, in one write transaction (the scan is made under the lock).
pub fn apply(conn: &mut Connection, name: &str, dir: &Path) -> Result<Synced, StoreError> {
    let out = super::write(conn, |tx| apply_locked(tx, name, dir))?;
    Ok(out)
}

fn apply_locked(conn: &Connection, name: &str, dir: &Path) -> Result<Synced, StoreError> {
    let mut folder = folder_ops::get_or_create(conn, name)?;
    let mut files = scan(dir)?;
    let rows = messages::file_rows(conn, folder.id)?;
    let mut vanished: Vec<&FileRow> = rows
        .iter()
        .filter(|r| !files.contains_key(&r.base))
        .collect();
    if !vanished.is_empty() {
        // A file renamed by another reader during the readdir can be
        // missed once: look again before calling it gone.
        for (base, file) in scan(dir)? {
            files.entry(base).or_insert(file);
        }
        vanished.retain(|r| !files.contains_key(&r.base));
    }
    let mut changed = false;
    for row in &vanished {
        messages::expunge(conn, &mut folder, row.uid)?;
        changed = true;
    }
    if !vanished.is_empty() {
        messages::prune_history(conn, &mut folder)?;
        tracing::debug!(
            folder = name,
            count = vanished.len(),
            "vanished files expunged"
        );
    }

    // Renamed by another reader: its flags letters are news.
    for row in &rows {
        let Some(file) = files.get(&row.base) else {
            continue;
        };
        if *file == row.file {
            continue;
        }
        let on_disk = Flags::from_file_name(place::file_part(file));
        if !file.starts_with(b"new/") && !on_disk.same_system(&row.flags) {
            let flags = Flags {
                keywords: row.flags.keywords.clone(),
                ..on_disk
            };
            let modseq = folder.next_modseq();
            messages::set_flags(conn, folder.id, row.uid, &flags, modseq, file)?;
            changed = true;
        } else {
            messages::set_file(conn, folder.id, row.uid, file)?;
        }
    }

    // New files, oldest first.
    let known: std::collections::HashSet<&[u8]> = rows.iter().map(|r| r.base.as_slice()).collect();
    let mut fresh: Vec<(u64, u32, &[u8], &[u8])> = Vec::new();
    for (base, file) in &files {
        if known.contains(base.as_slice()) {
            continue;
        }
        let (secs, micros) = delivery_time(place::file_part(file)).unwrap_or((u64::MAX, 0));
        fresh.push((secs, micros, base, file));
    }
    fresh.sort();
    for (_, _, base, file) in fresh {
        if index_file(conn, &mut folder, dir, base, file)?.is_some() {
            changed = true;
        }
    }
    folder_ops::save(conn, &folder)?;
    Ok(Synced { changed, files })
}

/// Reads, parses and indexes one new file; returns its UID, or `None` if
/// it vanished meanwhile (or is indexed already).
fn index_file(
    conn: &Connection,
    folder: &mut FolderRow,
    dir: &Path,
    base: &[u8],
    file: &[u8],
) -> Result<Option<u32>, StoreError> {
    let path = place::path_of(dir, file);
    let (data, mtime) = match read_bounded(&path) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let name = place::file_part(file);
    let meta = crate::parse::parse_meta(&data);
    let blob = messages::encode_meta(&meta);
    let flags = Flags::from_file_name(name);
    let qid = queue_id_of(name);
    // The mtime is the delivery or APPEND date (APPEND sets it).
    let internal_date = if mtime > 0 {
        mtime
    } else {
        delivery_time(name).map_or(0, |(s, _)| s)
    };
    let added = messages::insert(
        conn,
        folder,
        &NewMessage {
            base,
            file,
            flags: &flags,
            size: data.len() as u64,
            internal_date: i64::try_from(internal_date).unwrap_or(0),
            queue_id: qid.as_deref(),
            meta: &blob,
        },
    )?;
    Ok(added.map(|(uid, _)| uid))
}

/// A message file's bytes (at most [`MAX_READ`]) and its mtime in seconds.
pub fn read_bounded(path: &Path) -> io::Result<(Vec<u8>, u64)> {
    let file = crate::fsio::open_no_follow(path)?;
    let meta = file.metadata()?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut data = Vec::with_capacity(usize::try_from(meta.len().min(MAX_READ)).unwrap_or(0));
    file.take(MAX_READ).read_to_end(&mut data)?;
    Ok((data, mtime))
}
