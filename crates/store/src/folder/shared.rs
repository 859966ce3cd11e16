//! What the sessions of one process share about a folder: one immutable
//! snapshot of its index records ([`Snap`], behind an `Arc`), brought up
//! to date incrementally when the index's HIGHESTMODSEQ moved, and the
//! directory stamp of the last scan that found the files in line with
//! the index (so a refresh with nothing changed costs two `stat`s and
//! one small query, and N sessions hold one copy of the records).
//!
//! The index stays the truth: a snapshot is used only while the
//! connection that read it ([`Generation`]), the folder's UIDVALIDITY and
//! its HIGHESTMODSEQ still match what the index says now, so changes by
//! other processes (another server, `postamt` CLI tools) are seen too.
//! Every change to a message bumps the folder's modseq (flags, expunge,
//! new mail); file renames alone do not, and are caught by the directory
//! scan (they change the directories' mtimes).
//!
//! Snapshots of folders no session has open are kept for the next
//! session, up to [`IDLE_MESSAGES`] messages in all (least recently used
//! dropped first).

use super::{Changes, MessageRecord};
use crate::StoreError;
use crate::index::folder_ops::{self, FolderRow};
use crate::index::messages::{self, Row};
use crate::index::sync::{self, Files, Stamp};
use crate::index::{Generation, Index};
use crate::meta::MessageMeta;
use crate::name::base_name;
use crate::place;
use crate::watch::ChangeSignal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Messages kept in snapshots of folders no session has open.
pub const IDLE_MESSAGES: usize = 20_000;
/// Snapshots kept of folders no session has open.
pub const IDLE_FOLDERS: usize = 64;

/// One consistent image of a folder's index: its counters and every
/// message, ascending by UID, with the file each one is in.
#[derive(Clone, Debug)]
pub struct Snap {
    /// The connection the records were read through.
    pub generation: Generation,
    pub uid_validity: u32,
    /// Every index change up to this modseq is in the snapshot.
    pub modseq: u64,
    pub uid_next: u32,
    pub messages: Vec<MessageRecord>,
    /// Parallel to `messages`: the relative file (`cur/...`, `new/...`).
    pub files: Vec<Arc<[u8]>>,
}

impl Snap {
    /// The position of `uid`.
    pub fn position(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// (base name, relative file) of every message.
    fn file_pairs(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> {
        self.files.iter().map(|f| (base_of(f), &f[..]))
    }

    /// Keeps the messages whose UID `keep` accepts (files alongside).
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        let kept: Vec<bool> = self.messages.iter().map(|m| keep(m.uid)).collect();
        let mut k = kept.iter();
        self.messages.retain(|_| k.next().copied().unwrap_or(true));
        let mut k = kept.iter();
        self.files.retain(|_| k.next().copied().unwrap_or(true));
    }
}

/// The base name of a relative file.
pub fn base_of(file: &[u8]) -> &[u8] {
    base_name(place::file_part(file))
}

/// What changed from snapshot `old` to snapshot `new` (of one folder):
/// UIDs gone, UIDs new, UIDs whose flags or modseq differ.
pub fn diff(old: &Snap, new: &Snap) -> Changes {
    let mut out = Changes::default();
    if std::ptr::eq(old, new) {
        return out;
    }
    let (a, b) = (&old.messages, &new.messages);
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (&a[i], &b[j]);
        match x.uid.cmp(&y.uid) {
            std::cmp::Ordering::Less => {
                out.expunged.push(x.uid);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.added.push(y.uid);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if x.modseq != y.modseq || x.flags != y.flags {
                    out.flags_changed.push(y.uid);
                }
                i += 1;
                j += 1;
            }
        }
    }
    out.expunged.extend(a[i..].iter().map(|m| m.uid));
    out.added.extend(b[j..].iter().map(|m| m.uid));
    out
}

/// A folder's shared state (see the module docs).
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    snap: Option<Arc<Snap>>,
    /// The directories' stamp at the last scan that matched `snap`'s files.
    stamp: Option<Stamp>,
    last_used: Option<Instant>,
}

/// Where a folder is, for [`Shared::current`].
pub struct Place<'a> {
    pub index: &'a Index,
    /// The IMAP name (the index's key).
    pub name: &'a str,
    pub dir: &'a Path,
    pub signal: &'a ChangeSignal,
    /// The caller has the folder open already: a missing index row means
    /// the folder was deleted (not "not indexed yet").
    pub was_open: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The folder's index row and a snapshot of its records as the index
    /// has them now, the index first brought in line with the files when
    /// the directories changed since the last scan.
    pub fn current(&self, at: &Place<'_>) -> Result<(FolderRow, Arc<Snap>), StoreError> {
        let mut st = self.lock();
        let mut loaded = load(at, st.snap.as_ref())?;
        let now = Stamp::take(at.dir);
        // A stamp vouches for the index it was checked against: not for
        // a file put in its place since (a restore may be older).
        let same_index = match (&loaded, &st.snap) {
            (Some((_, new)), Some(old)) => new.generation == old.generation,
            _ => false,
        };
        let fresh = same_index && st.stamp.as_ref().is_some_and(|s| s.still_valid(&now));
        if !fresh {
            if loaded.is_none() && at.was_open {
                return Err(StoreError::NoSuchFolder(at.name.to_string()));
            }
            let files = sync::scan(at.dir)?;
            let stale = match &loaded {
                Some((_, snap)) => sync::differs(&files, snap.file_pairs()),
                None => true,
            };
            if stale {
                let synced = at.index.with(|conn| sync::apply(conn, at.name, at.dir))?;
                at.index.committed();
                if synced.changed {
                    at.signal.bump();
                }
                let prev = loaded.as_ref().map(|(_, s)| s).or(st.snap.as_ref());
                loaded = load(at, prev)?.map(|(row, snap)| (row, adopt_files(snap, &synced.files)));
            }
            st.stamp = Some(now);
        }
        let Some((row, snap)) = loaded else {
            return Err(StoreError::NoSuchFolder(at.name.to_string()));
        };
        st.snap = Some(Arc::clone(&snap));
        st.last_used = Some(Instant::now());
        Ok((row, snap))
    }

    /// Messages in the kept snapshot (0 while another thread uses it).
    fn size(&self) -> usize {
        match self.state.try_lock() {
            Ok(st) => st.snap.as_ref().map_or(0, |s| s.messages.len()),
            Err(_) => 0,
        }
    }

    fn last_used(&self) -> Option<Instant> {
        self.state.try_lock().ok().and_then(|st| st.last_used)
    }
}

/// Reads the folder's row and brings `prev` up to it: the same snapshot
/// when nothing changed, an incremental update when only newer changes
/// are missing, a full load otherwise. `None`: the folder has no row.
fn load(
    at: &Place<'_>,
    prev: Option<&Arc<Snap>>,
) -> Result<Option<(FolderRow, Arc<Snap>)>, StoreError> {
    let mut broken = Vec::new();
    let out = at.index.read_txn_at(|tx, generation| {
        broken.clear();
        let Some(row) = folder_ops::get(tx, at.name)? else {
            return Ok(None);
        };
        let same_base =
            prev.filter(|p| p.generation == generation && p.uid_validity == row.uidvalidity);
        let snap = match same_base {
            Some(p) if p.modseq == row.modseq && p.uid_next == row.uidnext => Arc::clone(p),
            Some(p) if p.modseq < row.modseq => {
                Arc::new(update(tx, &row, p, generation, &mut broken)?)
            }
            _ => Arc::new(full(tx, &row, generation, &mut broken)?),
        };
        Ok(Some((row, snap)))
    })?;
    match out {
        Some((row, mut snap)) if !broken.is_empty() => {
            repair_metas(at, Arc::make_mut(&mut snap), &broken);
            Ok(Some((row, snap)))
        }
        other => Ok(other),
    }
}

/// Every record of the folder.
fn full(
    tx: &rusqlite::Connection,
    row: &FolderRow,
    generation: Generation,
    broken: &mut Vec<u32>,
) -> Result<Snap, StoreError> {
    let mut snap = Snap {
        generation,
        uid_validity: row.uidvalidity,
        modseq: row.modseq,
        uid_next: row.uidnext,
        messages: Vec::new(),
        files: Vec::new(),
    };
    messages::load_all(tx, row.id, |r, meta| {
        if meta.is_none() {
            broken.push(r.uid);
        }
        let (rec, file) = r.into_record(Arc::new(meta.unwrap_or_default()));
        snap.messages.push(rec);
        snap.files.push(file);
    })?;
    Ok(snap)
}

/// `prev` with the index's changes after its modseq: expunged messages
/// removed, changed ones replaced (their meta kept), new ones added.
fn update(
    tx: &rusqlite::Connection,
    row: &FolderRow,
    prev: &Snap,
    generation: Generation,
    broken: &mut Vec<u32>,
) -> Result<Snap, StoreError> {
    let gone = messages::expunged_since(tx, row.id, prev.modseq)?;
    let changed = messages::changed_since(tx, row.id, prev.modseq)?;
    let mut metas: HashMap<u32, Option<MessageMeta>> =
        if changed.iter().any(|r| r.uid >= prev.uid_next) {
            messages::metas_from(tx, row.id, prev.uid_next)?
                .into_iter()
                .collect()
        } else {
            HashMap::new()
        };
    let mut snap = Snap {
        generation,
        uid_validity: row.uidvalidity,
        modseq: row.modseq,
        uid_next: row.uidnext,
        messages: Vec::with_capacity(prev.messages.len() + changed.len()),
        files: Vec::with_capacity(prev.messages.len() + changed.len()),
    };
    let mut changed = changed.into_iter().peekable();
    let mut put = |snap: &mut Snap, r: Row, old: Option<&MessageRecord>| {
        let meta = match old {
            Some(o) => Arc::clone(&o.meta),
            None => {
                let m = metas.remove(&r.uid).flatten();
                if m.is_none() {
                    broken.push(r.uid);
                }
                Arc::new(m.unwrap_or_default())
            }
        };
        let (rec, file) = r.into_record(meta);
        snap.messages.push(rec);
        snap.files.push(file);
    };
    for (old, file) in prev.messages.iter().zip(&prev.files) {
        while let Some(r) = changed.next_if(|r| r.uid < old.uid) {
            put(&mut snap, r, None);
        }
        if let Some(r) = changed.next_if(|r| r.uid == old.uid) {
            put(&mut snap, r, Some(old));
        } else if gone.binary_search(&old.uid).is_err() {
            snap.messages.push(old.clone());
            snap.files.push(Arc::clone(file));
        }
    }
    for r in changed {
        put(&mut snap, r, None);
    }
    Ok(snap)
}

/// `snap` with the file names found on disk (a file renamed by another
/// process without a flag change leaves the index's modseq alone).
fn adopt_files(snap: Arc<Snap>, files: &Files) -> Arc<Snap> {
    let differs = |(i, f): (usize, &Arc<[u8]>)| {
        files
            .get(base_of(f))
            .is_some_and(|on_disk| on_disk.as_slice() != &f[..])
            .then_some(i)
    };
    if snap.files.iter().enumerate().find_map(differs).is_none() {
        return snap;
    }
    let mut snap = snap;
    let s = Arc::make_mut(&mut snap);
    for f in &mut s.files {
        if let Some(on_disk) = files.get(base_of(f))
            && on_disk.as_slice() != &f[..]
        {
            *f = Arc::from(on_disk.as_slice());
        }
    }
    snap
}

/// Reparses the files of messages whose stored meta did not decode and
/// stores the result (failures are logged: the placeholder stays).
fn repair_metas(at: &Place<'_>, snap: &mut Snap, broken: &[u32]) {
    for &uid in broken {
        let Some(i) = snap.position(uid) else {
            continue;
        };
        let Ok(data) = super::read_file(at.dir, &snap.files[i], uid) else {
            continue;
        };
        let meta = crate::parse::parse_meta(&data);
        let blob = messages::encode_meta(&meta);
        snap.messages[i].meta = Arc::new(meta);
        let saved = at.index.write_txn(|tx| {
            if let Some(r) = folder_ops::get(tx, at.name)? {
                messages::set_meta(tx, r.id, uid, &blob)?;
            }
            Ok(())
        });
        if let Err(e) = saved {
            tracing::warn!(folder = %at.name, uid, error = %e, "storing a reparsed meta failed");
        }
    }
}

/// When a scan of the folder in `dir` found its files in line with the
/// index and the directories have not changed since: the [`Generation`]
/// of the index connection that was (a caller such as STATUS may then
/// skip its own scan while the index is still read through it).
pub fn files_checked(dir: &Path) -> Option<Generation> {
    let shared = registry().as_ref().and_then(|m| m.get(dir)).cloned()?;
    let st = shared.lock();
    let snap = st.snap.as_ref()?;
    st.stamp
        .as_ref()
        .is_some_and(|s| s.still_valid(&Stamp::take(dir)))
        .then_some(snap.generation)
}

/// The shared state of every folder some session uses or used lately,
/// keyed by folder directory.
static REGISTRY: Mutex<Option<HashMap<PathBuf, Arc<Shared>>>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<HashMap<PathBuf, Arc<Shared>>>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shared state of the folder in `dir` (made on demand).
pub fn for_dir(dir: &Path) -> Arc<Shared> {
    trim();
    let mut guard = registry();
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(s) = map.get(dir) {
        return Arc::clone(s);
    }
    let s = Arc::new(Shared {
        state: Mutex::new(State::default()),
    });
    map.insert(dir.to_path_buf(), Arc::clone(&s));
    s
}

/// Drops the snapshots of folders no session has open beyond
/// [`IDLE_FOLDERS`] folders or [`IDLE_MESSAGES`] messages, least
/// recently used first.
pub fn trim() {
    trim_releasing(None);
}

/// [`trim`], counting the folder `releasing` (whose last holder is
/// about to let go of it) as idle already.
pub fn trim_releasing(releasing: Option<(&Path, &Arc<Shared>)>) {
    let mut guard = registry();
    let Some(map) = guard.as_mut() else {
        return;
    };
    let holders = |k: &Path, s: &Arc<Shared>| match releasing {
        Some((dir, mine)) if dir == k && Arc::ptr_eq(mine, s) => 2,
        _ => 1,
    };
    // Only the registry (and the releasing folder) hold these.
    let idle: Vec<(Option<Instant>, usize, PathBuf)> = map
        .iter()
        .filter(|(k, s)| Arc::strong_count(s) <= holders(k, s))
        .map(|(k, s)| (s.last_used(), s.size(), k.clone()))
        .collect();
    for key in evictions(idle, IDLE_FOLDERS, IDLE_MESSAGES) {
        map.remove(&key);
    }
}

/// Which of the `idle` snapshots (last use, messages, key) to drop so
/// that at most `max_folders` with at most `max_messages` in all stay,
/// the most recently used kept first.
fn evictions(
    mut idle: Vec<(Option<Instant>, usize, PathBuf)>,
    max_folders: usize,
    max_messages: usize,
) -> Vec<PathBuf> {
    let total: usize = idle.iter().map(|(_, n, _)| n).sum();
    if idle.len() <= max_folders && total <= max_messages {
        return Vec::new();
    }
    idle.sort_by_key(|e| std::cmp::Reverse(e.0));
    let (mut folders, mut messages) = (0usize, 0usize);
    let mut out = Vec::new();
    for (_, n, key) in idle {
        if folders < max_folders && messages + n <= max_messages {
            folders += 1;
            messages += n;
        } else {
            out.push(key);
        }
    }
    out
}

#[cfg(test)]
mod tests;
