//! One user's Maildir as a reader sees it: the inbox's messages (`new/`
//! and `cur/`), reading and deleting them even after another reader moved
//! them (found again by UID), and the POP3 lock.

use crate::fsio::{open_no_follow, sync_dir};
use crate::lock::MailboxLock;
use crate::name::{base_name, delivery_time, hashed_uid, queue_id_of, uid_for};
use crate::{MessageInfo, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Subdirectories holding inbox messages, in listing order.
const INBOX_DIRS: [&str; 2] = ["new", "cur"];
/// Bound on entries read from one subdirectory.
const MAX_ENTRIES: usize = 1_000_000;
/// Largest message `read` loads into memory; `open_message` streams any size.
pub const MAX_READ: u64 = 1 << 30;

/// One user's Maildir++.
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
}

/// A message file found in a scan, before sorting.
struct Found {
    key: (u64, u32, Vec<u8>),
    info: MessageInfo,
}

impl Maildir {
    pub(crate) fn new(root: PathBuf) -> Maildir {
        Maildir { root }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether the Maildir exists on disk (a mailbox opened without
    /// automatic creation may not, and then it has no messages).
    pub fn exists(&self) -> bool {
        self.root.join("new").is_dir() || self.root.join("cur").is_dir()
    }

    /// Takes the exclusive POP3 lock, or `StoreError::InUse`.
    pub fn lock(&self) -> Result<MailboxLock, StoreError> {
        MailboxLock::acquire(&self.root)
    }

    /// The inbox's messages (new and cur), oldest first: by the delivery
    /// time in the name (seconds, microseconds), then by name; a name
    /// without a time sorts by its file's modification time. Dotfiles,
    /// directories and symlinks are not messages.
    pub fn messages(&self) -> Result<Vec<MessageInfo>, StoreError> {
        let mut found = Vec::new();
        for sub in INBOX_DIRS {
            scan_dir(&self.root.join(sub), &mut found)?;
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        let mut infos: Vec<MessageInfo> = found.into_iter().map(|f| f.info).collect();
        disambiguate(&mut infos);
        Ok(infos)
    }

    /// The message's bytes, exactly as delivered.
    pub fn read(&self, msg: &MessageInfo) -> Result<Vec<u8>, StoreError> {
        let (file, _) = self.open_message(msg)?;
        let len = file.metadata()?.len();
        if len > MAX_READ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message of {len} bytes is too large to load; stream it"),
            )
            .into());
        }
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(MAX_READ).read_to_end(&mut data)?;
        Ok(data)
    }

    /// For reading ahead, cheaply: the message's bytes if it is still at
    /// its listed path and has at most `limit` of them; `None` if it is
    /// larger or no longer there (unlike [`Maildir::read`], a moved message
    /// is not searched for: that takes a scan of the Maildir).
    pub fn read_limited(
        &self,
        msg: &MessageInfo,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.is_inbox_file(&msg.path) {
            return Ok(None);
        }
        let file = match open_no_follow(&msg.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        if len > limit {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // One byte past the limit tells a file that grew since the fstat.
        file.take(limit.saturating_add(1)).read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Ok(None);
        }
        Ok(Some(data))
    }

    /// Opens the message's file (found again by UID if another reader moved
    /// it); returns it with its current path.
    pub fn open_message(&self, msg: &MessageInfo) -> Result<(File, PathBuf), StoreError> {
        if self.is_inbox_file(&msg.path) {
            match open_no_follow(&msg.path) {
                Ok(f) => return Ok((f, msg.path.clone())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let path = match self.locate_moved(msg)? {
            Some(p) => p,
            None => self
                .find(&msg.uid)?
                .ok_or_else(|| StoreError::Gone(msg.uid.clone()))?,
        };
        match open_no_follow(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Gone(msg.uid.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes messages; one already gone is not an error. The directories
    /// touched are fsynced before returning.
    pub fn delete(&self, msgs: &[MessageInfo]) -> Result<(), StoreError> {
        let mut touched = BTreeSet::new();
        let mut moved = Vec::new();
        for msg in msgs {
            if self.is_inbox_file(&msg.path) {
                match std::fs::remove_file(&msg.path) {
                    Ok(()) => {
                        touched.extend(msg.path.parent().map(Path::to_path_buf));
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            moved.push(msg);
        }
        if !moved.is_empty() {
            // Moved by another reader: one scan finds them all again.
            let index = self.index()?;
            for msg in moved {
                let Some(path) = index.get(&msg.uid) else {
                    continue;
                };
                match std::fs::remove_file(path) {
                    Ok(()) => touched.extend(path.parent().map(Path::to_path_buf)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let changed = !touched.is_empty();
        for dir in touched {
            sync_dir(&dir)?;
        }
        if changed {
            // IMAP sessions on INBOX see the deletions at their next refresh.
            crate::watch::notify(&self.root);
        }
        Ok(())
    }

    /// A message moved or renamed by another reader (IMAP moves `new/`
    /// to `cur/` and renames files for flags): found by the base name of
    /// its listed path with two readdirs and no stat; `None` if not so found.
    fn locate_moved(&self, msg: &MessageInfo) -> Result<Option<PathBuf>, StoreError> {
        if !self.is_inbox_file(&msg.path) {
            return Ok(None);
        }
        let Some(name) = msg.path.file_name() else {
            return Ok(None);
        };
        let Some(rel) = crate::place::locate(&self.root, base_name(name.as_bytes()))? else {
            return Ok(None);
        };
        let found = crate::place::path_of(&self.root, &rel);
        let same = found
            .file_name()
            .is_some_and(|n| uid_for(n.as_bytes()) == msg.uid);
        Ok(same.then_some(found))
    }

    /// Whether `path` is directly inside this Maildir's `new/` or `cur/`
    /// (a caller-made `MessageInfo` must not point elsewhere).
    fn is_inbox_file(&self, path: &Path) -> bool {
        // Compares components without building `root/new` and `root/cur`.
        let in_inbox = path.parent().is_some_and(|dir| {
            dir.parent() == Some(self.root.as_path())
                && dir
                    .file_name()
                    .is_some_and(|d| INBOX_DIRS.iter().any(|sub| d == *sub))
        });
        let plain_name = path
            .file_name()
            .is_some_and(|n| !n.as_bytes().starts_with(b"."));
        in_inbox && plain_name
    }

    /// The current path of the message with `uid`, if it still exists.
    fn find(&self, uid: &str) -> Result<Option<PathBuf>, StoreError> {
        Ok(self.index()?.remove(uid))
    }

    /// UID -> current path, for every inbox message.
    fn index(&self) -> Result<HashMap<String, PathBuf>, StoreError> {
        Ok(self
            .messages()?
            .into_iter()
            .map(|m| (m.uid, m.path))
            .collect())
    }
}

fn scan_dir(dir: &Path, found: &mut Vec<Found>) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries.take(MAX_ENTRIES) {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if bytes.starts_with(b".") {
            continue;
        }
        // Does not follow symlinks: a symlink is not a message.
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Moved or deleted by another reader since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let (secs, micros) = delivery_time(bytes).unwrap_or_else(|| {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .unwrap_or_default();
            (mtime.as_secs(), mtime.subsec_micros())
        });
        found.push(Found {
            key: (secs, micros, bytes.to_vec()),
            info: MessageInfo {
                uid: uid_for(bytes),
                size: meta.len(),
                path: entry.path(),
                queue_id: queue_id_of(bytes),
            },
        });
    }
    Ok(())
}

/// Gives every message a distinct UID: when two files share one (a copy
/// in both `new/` and `cur/`, or foreign names differing only in `,S=`),
/// the later ones get a hash of their full path name instead.
fn disambiguate(infos: &mut [MessageInfo]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in infos.iter() {
        *count.entry(m.uid.clone()).or_default() += 1;
    }
    if count.values().all(|&n| n == 1) {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for m in infos.iter_mut() {
        if count.get(&m.uid).copied().unwrap_or(0) > 1 && !seen.insert(m.uid.clone()) {
            // Subdirectory and base name: unchanged by flag changes.
            let mut key = m
                .path
                .parent()
                .and_then(Path::file_name)
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default();
            key.push(b'/');
            let name = m.path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
            key.extend_from_slice(base_name(name));
            m.uid = hashed_uid(&key);
        }
    }
}
