//! Test doubles: a [`Backend`] with one account (`alice`, password
//! `secret`) whose folders live in memory and behave like the store's
//! (UIDs, UIDVALIDITY, modseqs, snapshots refreshed on demand, expunge
//! history for QRESYNC, change signals), with switches to make calls fail.

use crate::backend::{AuthFailed, Backend, MailAccount, MailFolder};
use postamt_store::{
    ChangeSignal, Changes, CopyUids, FlagOp, Flags, FolderInfo, FolderStatus, MessageRecord,
    SpecialUse, StoreError, StoreOutcome,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";

/// One folder's true state.
#[derive(Default)]
pub struct FolderData {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub modseq: u64,
    pub messages: Vec<(MessageRecord, Vec<u8>)>,
    pub subscribed: bool,
    pub special_use: Option<SpecialUse>,
    /// (uid, modseq of the expunge).
    pub expunged: Vec<(u32, u64)>,
    /// UIDs at or above this are recent for the next opener.
    pub recent_from: u32,
    pub signal: Arc<ChangeSignal>,
}

/// Every folder of the account.
#[derive(Default)]
pub struct FakeStore {
    pub folders: Mutex<BTreeMap<String, FolderData>>,
    pub fail_list: AtomicBool,
    pub fail_read: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("test mutex")
}

impl FakeStore {
    /// INBOX and the special-use folders, empty.
    pub fn new() -> Arc<FakeStore> {
        let store = FakeStore::default();
        for (name, su) in [
            ("INBOX", None),
            ("Sent", Some(SpecialUse::Sent)),
            ("Drafts", Some(SpecialUse::Drafts)),
            ("Trash", Some(SpecialUse::Trash)),
        ] {
            store.make(name, su);
        }
        Arc::new(store)
    }

    pub fn make(&self, name: &str, special_use: Option<SpecialUse>) {
        let mut folders = lock(&self.folders);
        let validity = 1000 + folders.len() as u32;
        folders.insert(
            name.to_string(),
            FolderData {
                uid_validity: validity,
                uid_next: 1,
                modseq: 1,
                subscribed: true,
                special_use,
                recent_from: 1,
                ..Default::default()
            },
        );
    }

    /// Delivers a message into `folder` as another process would; returns its UID.
    pub fn deliver(&self, folder: &str, data: &[u8]) -> u32 {
        self.add(folder, data, Flags::default())
    }

    pub fn add(&self, folder: &str, data: &[u8], flags: Flags) -> u32 {
        let mut folders = lock(&self.folders);
        let f = folders.get_mut(folder).expect("folder exists");
        let uid = f.uid_next;
        f.uid_next += 1;
        f.modseq += 1;
        let mut rec = crate::fetch::testutil::record(data);
        rec.uid = uid;
        rec.modseq = f.modseq;
        rec.flags = flags;
        rec.queue_id = Some(format!("q{uid}").into());
        f.messages.push((rec, data.to_vec()));
        f.signal.bump();
        uid
    }

    /// Changes flags as another session would.
    pub fn set_flags(&self, folder: &str, uid: u32, flags: Flags) {
        let mut folders = lock(&self.folders);
        let f = folders.get_mut(folder).expect("folder exists");
        f.modseq += 1;
        let m = f.modseq;
        if let Some((rec, _)) = f.messages.iter_mut().find(|(r, _)| r.uid == uid) {
            rec.flags = flags;
            rec.modseq = m;
        }
        f.signal.bump();
    }

    /// Removes a message as another session (or POP3) would.
    pub fn remove(&self, folder: &str, uid: u32) {
        let mut folders = lock(&self.folders);
        let f = folders.get_mut(folder).expect("folder exists");
        f.modseq += 1;
        let m = f.modseq;
        f.messages.retain(|(r, _)| r.uid != uid);
        f.expunged.push((uid, m));
        f.signal.bump();
    }

    pub fn uids(&self, folder: &str) -> Vec<u32> {
        lock(&self.folders)
            .get(folder)
            .map(|f| f.messages.iter().map(|(r, _)| r.uid).collect())
            .unwrap_or_default()
    }

    pub fn flags(&self, folder: &str, uid: u32) -> Option<Flags> {
        lock(&self.folders).get(folder).and_then(|f| {
            f.messages
                .iter()
                .find(|(r, _)| r.uid == uid)
                .map(|(r, _)| r.flags.clone())
        })
    }

    pub fn exists(&self, folder: &str) -> bool {
        lock(&self.folders).contains_key(folder)
    }
}

pub struct FakeBackend {
    pub store: Arc<FakeStore>,
}

#[derive(Clone)]
pub struct FakeAccount {
    store: Arc<FakeStore>,
}

pub struct FakeFolder {
    store: Arc<FakeStore>,
    name: String,
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    first_recent: u32,
    snapshot: Vec<MessageRecord>,
}

impl Backend for FakeBackend {
    type Account = FakeAccount;

    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, AuthFailed>> + Send {
        let ok = user.eq_ignore_ascii_case(USER) && password == PASSWORD;
        async move {
            if ok {
                Ok(USER.to_string())
            } else {
                Err(AuthFailed)
            }
        }
    }

    fn account(&self, _user: &str) -> impl Future<Output = Result<FakeAccount, StoreError>> + Send {
        let store = self.store.clone();
        async move { Ok(FakeAccount { store }) }
    }
}

fn no_such(name: &str) -> StoreError {
    StoreError::NoSuchFolder(name.to_string())
}

impl MailAccount for FakeAccount {
    type Folder = FakeFolder;

    fn list(&self) -> Result<Vec<FolderInfo>, StoreError> {
        if self.store.fail_list.load(Ordering::SeqCst) {
            return Err(StoreError::Index("list failed".into()));
        }
        let folders = lock(&self.store.folders);
        let names: Vec<&String> = folders.keys().collect();
        let mut out: Vec<FolderInfo> = Vec::new();
        // INBOX first.
        let mut ordered: Vec<&String> = names.iter().copied().filter(|n| *n == "INBOX").collect();
        ordered.extend(names.iter().copied().filter(|n| *n != "INBOX"));
        for n in ordered {
            let f = &folders[n];
            let prefix = format!("{n}/");
            out.push(FolderInfo {
                name: n.clone(),
                special_use: f.special_use,
                has_children: names.iter().any(|c| c.starts_with(&prefix)),
                subscribed: f.subscribed,
                exists: true,
            });
        }
        Ok(out)
    }

    fn create(&self, name: &str) -> Result<(), StoreError> {
        if self.store.exists(name) {
            return Err(StoreError::FolderExists(name.to_string()));
        }
        self.store.make(name, None);
        lock(&self.store.folders)
            .get_mut(name)
            .expect("just made")
            .subscribed = false;
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        if name == "INBOX" {
            return Err(StoreError::NotAllowed("INBOX".into()));
        }
        lock(&self.store.folders)
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| no_such(name))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let mut folders = lock(&self.store.folders);
        if folders.contains_key(to) {
            return Err(StoreError::FolderExists(to.to_string()));
        }
        let f = folders.remove(from).ok_or_else(|| no_such(from))?;
        folders.insert(to.to_string(), f);
        Ok(())
    }

    fn subscribe(&self, name: &str, on: bool) -> Result<(), StoreError> {
        if let Some(f) = lock(&self.store.folders).get_mut(name) {
            f.subscribed = on;
        }
        Ok(())
    }

    fn status(&self, name: &str) -> Result<FolderStatus, StoreError> {
        let folders = lock(&self.store.folders);
        let f = folders.get(name).ok_or_else(|| no_such(name))?;
        Ok(FolderStatus {
            messages: f.messages.len() as u32,
            recent: f
                .messages
                .iter()
                .filter(|(r, _)| r.uid >= f.recent_from)
                .count() as u32,
            unseen: f.messages.iter().filter(|(r, _)| !r.flags.seen).count() as u32,
            uid_next: f.uid_next,
            uid_validity: f.uid_validity,
            highest_modseq: f.modseq,
            size: f.messages.iter().map(|(r, _)| r.size).sum(),
        })
    }

    fn open(&self, name: &str) -> Result<FakeFolder, StoreError> {
        let mut folders = lock(&self.store.folders);
        let f = folders.get_mut(name).ok_or_else(|| no_such(name))?;
        let first_recent = f.recent_from;
        f.recent_from = f.uid_next;
        Ok(FakeFolder {
            store: self.store.clone(),
            name: name.to_string(),
            uid_validity: f.uid_validity,
            uid_next: f.uid_next,
            highest_modseq: f.modseq,
            first_recent,
            snapshot: f.messages.iter().map(|(r, _)| r.clone()).collect(),
        })
    }

    fn append(
        &self,
        name: &str,
        data: &[u8],
        flags: &Flags,
        _internal_date: Option<i64>,
    ) -> Result<(u32, u32), StoreError> {
        let validity = {
            let folders = lock(&self.store.folders);
            folders.get(name).ok_or_else(|| no_such(name))?.uid_validity
        };
        let uid = self.store.add(name, data, flags.clone());
        Ok((validity, uid))
    }

    fn signal(&self, name: &str) -> Result<Arc<ChangeSignal>, StoreError> {
        lock(&self.store.folders)
            .get(name)
            .map(|f| f.signal.clone())
            .ok_or_else(|| no_such(name))
    }
}

impl FakeFolder {
    fn with_data<T>(&self, f: impl FnOnce(&mut FolderData) -> T) -> Result<T, StoreError> {
        let mut folders = lock(&self.store.folders);
        let data = folders
            .get_mut(&self.name)
            .ok_or_else(|| no_such(&self.name))?;
        Ok(f(data))
    }

    fn resnap(&mut self) -> Result<(), StoreError> {
        let (msgs, next, modseq) = self.with_data(|d| {
            (
                d.messages
                    .iter()
                    .map(|(r, _)| r.clone())
                    .collect::<Vec<_>>(),
                d.uid_next,
                d.modseq,
            )
        })?;
        self.snapshot = msgs;
        self.uid_next = next;
        self.highest_modseq = modseq;
        Ok(())
    }
}

fn apply(flags: &mut Flags, op: FlagOp, given: &Flags) {
    match op {
        FlagOp::Replace => *flags = given.clone(),
        FlagOp::Add => {
            flags.seen |= given.seen;
            flags.answered |= given.answered;
            flags.flagged |= given.flagged;
            flags.deleted |= given.deleted;
            flags.draft |= given.draft;
            flags.keywords.extend(given.keywords.iter().cloned());
        }
        FlagOp::Remove => {
            flags.seen &= !given.seen;
            flags.answered &= !given.answered;
            flags.flagged &= !given.flagged;
            flags.deleted &= !given.deleted;
            flags.draft &= !given.draft;
            flags.keywords.retain(|k| !given.keywords.contains(k));
        }
    }
}

impl MailFolder for FakeFolder {
    fn uid_validity(&self) -> u32 {
        self.uid_validity
    }
    fn uid_next(&self) -> u32 {
        self.uid_next
    }
    fn highest_modseq(&self) -> u64 {
        self.highest_modseq
    }
    fn first_recent_uid(&self) -> u32 {
        self.first_recent
    }
    fn messages(&self) -> &[MessageRecord] {
        &self.snapshot
    }

    fn refresh(&mut self) -> Result<Changes, StoreError> {
        let old = std::mem::take(&mut self.snapshot);
        self.resnap()?;
        let mut changes = Changes::default();
        for r in &old {
            match self.snapshot.iter().find(|n| n.uid == r.uid) {
                None => changes.expunged.push(r.uid),
                Some(n) if n.modseq != r.modseq => changes.flags_changed.push(r.uid),
                Some(_) => {}
            }
        }
        for n in &self.snapshot {
            if !old.iter().any(|r| r.uid == n.uid) {
                changes.added.push(n.uid);
            }
        }
        Ok(changes)
    }

    fn read(&self, uid: u32) -> Result<Vec<u8>, StoreError> {
        if self.store.fail_read.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other("read failed")));
        }
        self.with_data(|d| {
            d.messages
                .iter()
                .find(|(r, _)| r.uid == uid)
                .map(|(_, b)| b.clone())
        })?
        .ok_or_else(|| StoreError::Gone(uid.to_string()))
    }

    fn store_flags(
        &mut self,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StoreError> {
        let outcome = self.with_data(|d| {
            let mut out = StoreOutcome::default();
            for &uid in uids {
                let Some(i) = d.messages.iter().position(|(r, _)| r.uid == uid) else {
                    continue;
                };
                if unchanged_since.is_some_and(|u| d.messages[i].0.modseq > u) {
                    out.conflicts.push(uid);
                    continue;
                }
                let mut new = d.messages[i].0.flags.clone();
                apply(&mut new, op, flags);
                if new != d.messages[i].0.flags {
                    d.modseq += 1;
                    d.messages[i].0.flags = new;
                    d.messages[i].0.modseq = d.modseq;
                    out.changed.push(uid);
                }
            }
            if !out.changed.is_empty() {
                d.signal.bump();
            }
            out
        })?;
        // Own changes go straight into the snapshot (refresh does not report them).
        let fresh: Vec<MessageRecord> = self.with_data(|d| {
            d.messages
                .iter()
                .filter(|(r, _)| outcome.changed.contains(&r.uid))
                .map(|(r, _)| r.clone())
                .collect()
        })?;
        for r in fresh {
            if let Some(s) = self.snapshot.iter_mut().find(|s| s.uid == r.uid) {
                *s = r;
            }
        }
        Ok(outcome)
    }

    fn expunge(&mut self, only: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        let gone = self.with_data(|d| {
            let doomed: Vec<u32> = d
                .messages
                .iter()
                .filter(|(r, _)| r.flags.deleted && only.is_none_or(|o| o.contains(&r.uid)))
                .map(|(r, _)| r.uid)
                .collect();
            for &u in &doomed {
                d.modseq += 1;
                let m = d.modseq;
                d.expunged.push((u, m));
            }
            d.messages.retain(|(r, _)| !doomed.contains(&r.uid));
            if !doomed.is_empty() {
                d.signal.bump();
            }
            doomed
        })?;
        self.snapshot.retain(|r| !gone.contains(&r.uid));
        Ok(gone)
    }

    fn copy(&self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError> {
        let (validity, msgs) = {
            let folders = lock(&self.store.folders);
            let src = folders.get(&self.name).ok_or_else(|| no_such(&self.name))?;
            let d = folders.get(dest).ok_or_else(|| no_such(dest))?;
            let msgs: Vec<(u32, Vec<u8>, Flags)> = uids
                .iter()
                .filter_map(|u| {
                    src.messages
                        .iter()
                        .find(|(r, _)| r.uid == *u)
                        .map(|(r, b)| (*u, b.clone(), r.flags.clone()))
                })
                .collect();
            (d.uid_validity, msgs)
        };
        let mut out = CopyUids {
            uid_validity: validity,
            ..Default::default()
        };
        for (u, data, flags) in msgs {
            let new = self.store.add(dest, &data, flags);
            out.source.push(u);
            out.dest.push(new);
        }
        Ok(out)
    }

    fn move_to(&mut self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError> {
        let out = self.copy(uids, dest)?;
        for &u in &out.source {
            self.store.remove(&self.name, u);
        }
        self.snapshot.retain(|r| !out.source.contains(&r.uid));
        Ok(out)
    }

    fn vanished_since(&self, modseq: u64) -> Result<Vec<u32>, StoreError> {
        self.with_data(|d| {
            let mut v: Vec<u32> = d
                .expunged
                .iter()
                .filter(|(_, m)| *m > modseq)
                .map(|(u, _)| *u)
                .collect();
            v.sort_unstable();
            v
        })
    }
}
