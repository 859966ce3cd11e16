//! One open folder: its index (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and a
//! record per message) and the operations a selected IMAP session runs on
//! it. A `Folder` is a snapshot; [`Folder::refresh`] brings it up to date
//! with changes made by others (other sessions, delivery, POP3) and says
//! what changed, so the session can send EXISTS, EXPUNGE and FETCH FLAGS.
//!
//! The records come from the process-wide [`shared`] snapshot of the
//! folder: sessions hold the same `Arc` until one of them changes
//! something (its own copy then carries the change until its next
//! refresh), and a refresh when nothing changed costs two `stat`s and a
//! one-row query. Messages stay in `new/` until their flags change
//! (SELECT renames nothing); Maildir readers see them as new, which they
//! are, and POP3 and IMAP read both directories.

mod shared;

pub(crate) use shared::files_checked;

use crate::StoreError;
use crate::account::CopyUids;
use crate::flags::{FlagOp, Flags};
use crate::folders::{self, FolderName};
use crate::index::folder_ops::{self, FolderRow};
use crate::index::messages::{self, NewMessage};
use crate::index::{self, Index};
use crate::maildir::MAX_READ;
use crate::meta::MessageMeta;
use crate::place;
use crate::watch::{self, ChangeSignal};
use shared::{Place, Shared, Snap, base_of};
use std::collections::{BTreeSet, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One message in a folder's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub uid: u32,
    /// CONDSTORE mod-sequence of the last change to this message.
    pub modseq: u64,
    pub flags: Flags,
    /// Size in bytes of the file (RFC822.SIZE).
    pub size: u64,
    /// INTERNALDATE, Unix seconds (delivery/APPEND time).
    pub internal_date: i64,
    /// The spool queue id the message was delivered from, if any.
    pub queue_id: Option<Arc<str>>,
    pub meta: Arc<MessageMeta>,
}

/// What [`Folder::refresh`] found changed since the last snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// UIDs no longer in the folder.
    pub expunged: Vec<u32>,
    /// UIDs of messages new to this snapshot (ascending).
    pub added: Vec<u32>,
    /// UIDs whose flags (or modseq) changed.
    pub flags_changed: Vec<u32>,
}

/// The result of a STORE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// UIDs whose flags changed (with their new modseq in the snapshot).
    pub changed: Vec<u32>,
    /// UIDs not changed because their modseq was above UNCHANGEDSINCE.
    pub conflicts: Vec<u32>,
}

/// An open folder: a snapshot of its index that a session works on.
#[derive(Debug)]
pub struct Folder {
    pub(crate) name: String,
    root: PathBuf,
    dir: PathBuf,
    index: Arc<Index>,
    read_only: bool,
    first_recent: u32,
    /// This session's view (shared with other sessions until changed).
    snap: Arc<Snap>,
    shared: Arc<Shared>,
    signal: Arc<ChangeSignal>,
}

impl Drop for Folder {
    fn drop(&mut self) {
        // Keeps the idle snapshots within bounds as sessions end.
        shared::trim_releasing(Some((&self.dir, &self.shared)));
    }
}

/// The changes a write made, applied to the snapshot afterwards.
struct Written<T> {
    before: u64,
    after: u64,
    value: T,
}

impl Folder {
    /// Opens folder `name` of the mailbox at `root` and loads it.
    pub(crate) fn open(
        root: &Path,
        name: &FolderName,
        read_only: bool,
    ) -> Result<Folder, StoreError> {
        let dir = name.path(root);
        if !dir.join("cur").is_dir() && !name.is_inbox() {
            return Err(StoreError::NoSuchFolder(name.imap.clone()));
        }
        let index = index::open(root)?;
        let shared = shared::for_dir(&dir);
        let signal = watch::signal_for(&dir);
        let (row, snap) = shared.current(&Place {
            index: &index,
            name: &name.imap,
            dir: &dir,
            signal: &signal,
            was_open: false,
        })?;
        let folder = Folder {
            name: name.imap.clone(),
            root: root.to_path_buf(),
            dir,
            index,
            read_only,
            first_recent: row.recent_uid,
            snap,
            shared,
            signal,
        };
        folder.claim_recent(&row)?;
        tracing::debug!(folder = %folder.name, messages = folder.snap.messages.len(),
            uidvalidity = folder.snap.uid_validity, read_only, "folder opened");
        Ok(folder)
    }

    /// The IMAP name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid_validity(&self) -> u32 {
        self.snap.uid_validity
    }

    pub fn uid_next(&self) -> u32 {
        self.snap.uid_next
    }

    /// The HIGHESTMODSEQ this snapshot is complete up to.
    pub fn highest_modseq(&self) -> u64 {
        self.snap.modseq.max(1)
    }

    /// UIDs at or above this are `\Recent` for this session (the first
    /// session to open the folder after they arrived claims them).
    pub fn first_recent_uid(&self) -> u32 {
        self.first_recent
    }

    /// The messages of the snapshot, ascending by UID.
    pub fn messages(&self) -> &[MessageRecord] {
        &self.snap.messages
    }

    /// Whether this snapshot was opened read-only (EXAMINE): it claims no
    /// `\Recent`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// This folder's change signal (see [`crate::Account::signal`]).
    pub fn signal(&self) -> Arc<ChangeSignal> {
        Arc::clone(&self.signal)
    }

    fn position(&self, uid: u32) -> Option<usize> {
        self.snap.position(uid)
    }

    /// Brings the snapshot up to date and reports the differences.
    pub fn refresh(&mut self) -> Result<Changes, StoreError> {
        let (row, latest) = self.shared.current(&Place {
            index: &self.index,
            name: &self.name,
            dir: &self.dir,
            signal: &self.signal,
            was_open: true,
        })?;
        if latest.uid_validity != self.snap.uid_validity {
            return Err(StoreError::Index(format!(
                "folder `{}` was rebuilt with a new UIDVALIDITY; select it again",
                self.name
            )));
        }
        let changes = if Arc::ptr_eq(&latest, &self.snap) {
            Changes::default()
        } else {
            shared::diff(&self.snap, &latest)
        };
        self.snap = latest;
        self.claim_recent(&row)?;
        Ok(changes)
    }

    /// Claims the messages that arrived since the last claim as
    /// `\Recent` for this session (unless read-only): later sessions
    /// will not see them as recent.
    fn claim_recent(&self, row: &FolderRow) -> Result<(), StoreError> {
        let upto = self.snap.uid_next;
        if self.read_only || row.recent_uid >= upto {
            return Ok(());
        }
        let name = self.name.as_str();
        self.index.write_txn(|tx| {
            if let Some(mut r) = folder_ops::get(tx, name)?
                && r.recent_uid < upto
            {
                r.recent_uid = upto;
                folder_ops::save(tx, &r)?;
            }
            Ok(())
        })
    }

    /// The whole message file of `uid`.
    pub fn read(&self, uid: u32) -> Result<Vec<u8>, StoreError> {
        let i = self
            .position(uid)
            .ok_or_else(|| StoreError::Gone(uid.to_string()))?;
        read_file(&self.dir, &self.snap.files[i], uid)
    }

    /// Applies a write's effect on the snapshot's completeness: when no
    /// one else wrote between our last load and this write, the snapshot
    /// (which the caller updated) is complete up to the write's modseq.
    fn advance<T>(&mut self, w: &Written<T>) {
        if w.before == self.snap.modseq && w.after != w.before {
            Arc::make_mut(&mut self.snap).modseq = w.after;
        }
    }

    /// Changes flags of `uids`; with `unchanged_since` (CONDSTORE) a
    /// message whose modseq is higher is left alone and reported in
    /// `conflicts`. Each changed message gets a new modseq.
    pub fn store_flags(
        &mut self,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StoreError> {
        let wanted: Vec<u32> = dedup(uids.iter().copied().filter(|&u| self.position(u).is_some()));
        if wanted.is_empty() {
            return Ok(StoreOutcome::default());
        }
        let (name, dir) = (self.name.clone(), self.dir.clone());
        let written = self.index.write_txn(|tx| {
            let mut row = folder_ops::get(tx, &name)?
                .ok_or_else(|| StoreError::NoSuchFolder(name.clone()))?;
            let before = row.modseq;
            let mut updates = Vec::new();
            let mut conflicts = Vec::new();
            for &uid in &wanted {
                let Some(fr) = messages::file_row(tx, row.id, uid)? else {
                    continue;
                };
                if unchanged_since.is_some_and(|u| fr.modseq > u) {
                    conflicts.push(uid);
                    continue;
                }
                let new = fr.flags.apply(op, flags);
                if new == fr.flags {
                    continue;
                }
                let modseq = row.next_modseq();
                let letters_same = new.same_system(&fr.flags) && !fr.file.starts_with(b"new/");
                let file = if letters_same {
                    fr.file.clone()
                } else {
                    place::mirror_flags(&dir, &fr.file, &fr.base, &new)?.unwrap_or(fr.file.clone())
                };
                messages::set_flags(tx, row.id, uid, &new, modseq, &file)?;
                updates.push((uid, new, modseq, file));
            }
            folder_ops::save(tx, &row)?;
            Ok(Written {
                before,
                after: row.modseq,
                value: (updates, conflicts),
            })
        })?;
        let mut outcome = StoreOutcome::default();
        if !written.value.0.is_empty() {
            let snap = Arc::make_mut(&mut self.snap);
            for (uid, new, modseq, file) in &written.value.0 {
                if let Some(i) = snap.position(*uid) {
                    snap.messages[i].flags = new.clone();
                    snap.messages[i].modseq = *modseq;
                    snap.files[i] = Arc::from(file.as_slice());
                }
                outcome.changed.push(*uid);
            }
        }
        outcome.conflicts = written.value.1.clone();
        self.advance(&written);
        if !outcome.changed.is_empty() {
            self.signal.bump();
            tracing::debug!(folder = %self.name, count = outcome.changed.len(), "flags stored");
        }
        Ok(outcome)
    }

    /// Removes the messages flagged `\Deleted` (all of them, or only those
    /// in `only` for UID EXPUNGE); returns the expunged UIDs ascending.
    pub fn expunge(&mut self, only: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        let only: Option<HashSet<u32>> = only.map(|o| o.iter().copied().collect());
        let candidates: Vec<u32> = self
            .snap
            .messages
            .iter()
            .filter(|m| only.as_ref().is_none_or(|o| o.contains(&m.uid)))
            .map(|m| m.uid)
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let (name, dir) = (self.name.clone(), self.dir.clone());
        let written = self.index.write_txn(|tx| {
            let mut row = folder_ops::get(tx, &name)?
                .ok_or_else(|| StoreError::NoSuchFolder(name.clone()))?;
            let before = row.modseq;
            let mut gone = Vec::new();
            for &uid in &candidates {
                let Some(fr) = messages::file_row(tx, row.id, uid)? else {
                    continue;
                };
                if !fr.flags.deleted {
                    continue;
                }
                remove_file(&dir, &fr.file, &fr.base)?;
                messages::expunge(tx, &mut row, uid)?;
                gone.push(uid);
            }
            if !gone.is_empty() {
                messages::prune_history(tx, &mut row)?;
            }
            folder_ops::save(tx, &row)?;
            Ok(Written {
                before,
                after: row.modseq,
                value: gone,
            })
        })?;
        if !written.value.is_empty() {
            sync_dirs(&self.dir)?;
            self.drop_uids(&written.value);
            self.signal.bump();
            tracing::info!(target: "retrieval", folder = %self.name, count = written.value.len(), "messages expunged");
        }
        self.advance(&written);
        let mut gone = written.value;
        gone.sort_unstable();
        Ok(gone)
    }

    fn drop_uids(&mut self, uids: &[u32]) {
        if uids.is_empty() {
            return;
        }
        let set: HashSet<u32> = uids.iter().copied().collect();
        Arc::make_mut(&mut self.snap).retain(|uid| !set.contains(&uid));
    }

    /// Copies `uids` into folder `dest` (flags kept); UIDPLUS data.
    pub fn copy(&self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError> {
        Ok(self.transfer(uids, dest, false)?.value)
    }

    /// Moves `uids` into `dest` (RFC 6851): copy, then expunge here.
    pub fn move_to(&mut self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError> {
        let written = self.transfer(uids, dest, true)?;
        self.drop_uids(&written.value.source);
        self.advance(&written);
        if !written.value.source.is_empty() {
            self.signal.bump();
        }
        Ok(written.value)
    }

    fn transfer(
        &self,
        uids: &[u32],
        dest: &str,
        remove: bool,
    ) -> Result<Written<CopyUids>, StoreError> {
        let dest = folders::parse(dest)?;
        let dest_dir = dest.path(&self.root);
        if !dest_dir.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder(dest.imap));
        }
        let same = dest.imap == self.name;
        if same && remove {
            return Err(StoreError::NotAllowed(
                "a message cannot be moved to its own folder".into(),
            ));
        }
        let wanted: Vec<u32> = dedup(uids.iter().copied().filter(|&u| self.position(u).is_some()));
        let (name, dir) = (self.name.clone(), self.dir.clone());
        let written = self.index.write_txn(|tx| {
            let mut src = folder_ops::get(tx, &name)?
                .ok_or_else(|| StoreError::NoSuchFolder(name.clone()))?;
            let before = src.modseq;
            let mut dst = if same {
                None
            } else {
                Some(folder_ops::get_or_create(tx, &dest.imap)?)
            };
            let mut out = CopyUids::default();
            for &uid in &wanted {
                let Some(fr) = messages::file_row(tx, src.id, uid)? else {
                    continue;
                };
                let Some((blob, size, internal_date, qid)) = messages::content(tx, src.id, uid)?
                else {
                    continue;
                };
                let Some((base, file)) =
                    place_copy(&dir, &fr, &dest_dir, size, qid.as_deref(), remove)?
                else {
                    continue;
                };
                let target = dst.as_mut().unwrap_or(&mut src);
                let new = NewMessage {
                    base: &base,
                    file: &file,
                    flags: &fr.flags,
                    size,
                    internal_date,
                    queue_id: qid.as_deref(),
                    meta: &blob,
                };
                let Some((new_uid, _)) = messages::insert(tx, target, &new)? else {
                    continue;
                };
                if remove {
                    messages::expunge(tx, &mut src, uid)?;
                }
                out.source.push(uid);
                out.dest.push(new_uid);
            }
            if remove && !out.source.is_empty() {
                messages::prune_history(tx, &mut src)?;
            }
            folder_ops::save(tx, &src)?;
            if let Some(d) = &dst {
                folder_ops::save(tx, d)?;
            }
            out.uid_validity = dst.as_ref().unwrap_or(&src).uidvalidity;
            // Copies into this very folder are not in the snapshot yet:
            // the next refresh loads them.
            let after = if same { before } else { src.modseq };
            Ok(Written {
                before,
                after,
                value: out,
            })
        })?;
        if !written.value.dest.is_empty() {
            crate::fsio::sync_dir(&dest_dir.join("cur"))?;
            if remove {
                sync_dirs(&self.dir)?;
            }
            watch::notify(&dest_dir);
            tracing::info!(target: "retrieval", folder = %self.name, dest = %dest.imap,
                count = written.value.dest.len(), moved = remove, "messages copied");
        }
        Ok(written)
    }

    /// UIDs expunged after mod-sequence `modseq` (QRESYNC VANISHED
    /// (EARLIER)); may return a superset when old history was pruned.
    pub fn vanished_since(&self, modseq: u64) -> Result<Vec<u32>, StoreError> {
        let name = self.name.clone();
        self.index.read_txn(|tx| {
            let row = folder_ops::get(tx, &name)?
                .ok_or_else(|| StoreError::NoSuchFolder(name.clone()))?;
            if modseq >= row.vanished_floor {
                return messages::expunged_since(tx, row.id, modseq);
            }
            // History pruned: every UID not present (bounded).
            let present: BTreeSet<u32> = messages::uids(tx, row.id)?.into_iter().collect();
            Ok((1..row.uidnext)
                .filter(|u| !present.contains(u))
                .take(MAX_VANISHED)
                .collect())
        })
    }
}

/// Most UIDs returned by a `vanished_since` superset.
const MAX_VANISHED: usize = 1_000_000;

/// Keeps the first occurrence of each UID, in order.
fn dedup(uids: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut seen = HashSet::new();
    uids.filter(|u| seen.insert(*u)).collect()
}

/// Removes a message file (found again by base name if moved); one
/// already gone is fine.
fn remove_file(dir: &Path, file: &[u8], base: &[u8]) -> Result<(), StoreError> {
    match std::fs::remove_file(place::path_of(dir, file)) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(found) = place::locate(dir, base)? {
        match std::fs::remove_file(place::path_of(dir, &found)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Copies or moves one message file into `dest_dir`; `None` when the
/// source is gone.
fn place_copy(
    dir: &Path,
    fr: &messages::FileRow,
    dest_dir: &Path,
    size: u64,
    qid: Option<&str>,
    remove: bool,
) -> Result<Option<place::Placed>, StoreError> {
    let mut file = fr.file.clone();
    for _ in 0..2 {
        let src = place::path_of(dir, &file);
        let done = if remove {
            place::move_file(&src, dest_dir, size, &fr.flags, qid)
        } else {
            place::copy_file(&src, dest_dir, size, &fr.flags, qid)
        };
        match done {
            Ok(x) => return Ok(Some(x)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match place::locate(dir, &fr.base)? {
                Some(found) if found != file => file = found,
                _ => return Ok(None),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// fsyncs a folder's `new/` and `cur/` (after removals).
fn sync_dirs(dir: &Path) -> Result<(), StoreError> {
    for sub in place::SUBDIRS {
        crate::fsio::sync_dir(&dir.join(sub))?;
    }
    Ok(())
}

/// The whole message file `file` (relative to folder `dir`) of `uid`,
/// found again by base name when another session renamed or moved it.
fn read_file(dir: &Path, file: &[u8], uid: u32) -> Result<Vec<u8>, StoreError> {
    let gone = || StoreError::Gone(uid.to_string());
    let f = match crate::fsio::open_no_follow(&place::path_of(dir, file)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let found = place::locate(dir, base_of(file))?.ok_or_else(gone)?;
            match crate::fsio::open_no_follow(&place::path_of(dir, &found)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let len = f.metadata()?.len();
    if len > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes is too large to load"),
        )
        .into());
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(MAX_READ).read_to_end(&mut data)?;
    Ok(data)
}
