//! One user's folder tree as IMAP sees it: INBOX plus Maildir++ folders
//! (`.Name` directories), with the SPECIAL-USE folders made for every new
//! mailbox, subscriptions, and the folder-level operations (create,
//! delete, rename, status, append). Folder names here are IMAP names after
//! modified-UTF-7 decoding, with `/` as the hierarchy delimiter; `INBOX` is
//! case-insensitive. Names with `..`, a leading `/` or `~`, empty
//! components or control characters are refused (`StoreError::BadFolderName`).

use crate::StoreError;
use crate::flags::Flags;
use crate::folder::Folder;
use crate::folders::{self, FolderName, SPECIAL_FOLDERS, subscriptions};
use crate::index::folder_ops;
use crate::index::messages::{self, NewMessage};
use crate::index::{self, sync};
use crate::place;
use crate::watch::{self, ChangeSignal};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The hierarchy delimiter of IMAP folder names.
pub const DELIMITER: char = '/';

/// SPECIAL-USE attributes (RFC 6154) of the folders made for every user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

/// One folder in a LIST answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// IMAP name (`INBOX`, `Sent`, `Projects/2026`).
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub has_children: bool,
    pub subscribed: bool,
    /// The name is only a parent of other folders and holds no messages
    /// (`\Noselect`/`\NonExistent` in LIST).
    pub exists: bool,
}

/// STATUS figures of a folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub recent: u32,
    pub unseen: u32,
    pub uid_next: u32,
    pub uid_validity: u32,
    pub highest_modseq: u64,
    /// Sum of the message sizes in bytes (STATUS SIZE).
    pub size: u64,
}

/// Where an APPEND, COPY or MOVE put its messages (UIDPLUS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyUids {
    pub uid_validity: u32,
    /// Source UIDs, in the order copied.
    pub source: Vec<u32>,
    /// The new UIDs in the destination, one per source UID.
    pub dest: Vec<u32>,
}

/// A user's mailbox tree (created with the special-use folders when
/// automatic mailbox creation is on).
#[derive(Clone, Debug)]
pub struct Account {
    pub(crate) root: PathBuf,
    pub(crate) user: String,
}

/// The `settings` key marking that the special-use folders were made.
const SPECIALS_DONE: &str = "special_folders_made";
/// The marker file Maildir++ puts in every folder directory.
const MAILDIRFOLDER: &str = "maildirfolder";

impl Account {
    /// Opens the account at `root` (an existing, complete Maildir) and
    /// makes the special-use folders once (new mailboxes, and mailboxes
    /// made before IMAP existed).
    pub(crate) fn load(root: PathBuf, user: String) -> Result<Account, StoreError> {
        let account = Account { root, user };
        account.ensure_special_folders()?;
        Ok(account)
    }

    fn ensure_special_folders(&self) -> Result<(), StoreError> {
        let idx = index::open(&self.root)?;
        let root = self.root.clone();
        let made = idx.write_txn(|tx| {
            if folder_ops::setting(tx, SPECIALS_DONE)?.is_some() {
                return Ok(false);
            }
            let mut names = Vec::new();
            for (name, _) in SPECIAL_FOLDERS {
                let f = folders::parse(name)?;
                let dir = f.path(&root);
                if !dir.is_dir() {
                    make_folder_dir(&dir)?;
                }
                names.push(name);
            }
            subscriptions::set(&root, &names, true)?;
            folder_ops::set_setting(tx, SPECIALS_DONE, "1")?;
            Ok(true)
        })?;
        if made {
            tracing::info!(user = %self.user, "special-use folders made");
        }
        Ok(())
    }

    /// The account name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The Maildir root (INBOX).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// All folders, INBOX first, parents before children.
    pub fn list(&self) -> Result<Vec<FolderInfo>, StoreError> {
        let on_disk = folders::scan(&self.root)?;
        let subs = subscriptions::read(&self.root)?;
        let existing: BTreeSet<String> = on_disk.into_iter().map(|f| f.imap).collect();
        let mut all: BTreeSet<String> = existing.clone();
        for name in &existing {
            let mut prefix = name.as_str();
            while let Some(i) = prefix.rfind('/') {
                prefix = &prefix[..i];
                all.insert(prefix.to_string());
            }
        }
        let has_children = |name: &str| {
            let p = format!("{name}/");
            all.range(p.clone()..)
                .next()
                .is_some_and(|n| n.starts_with(&p))
        };
        let mut out = Vec::with_capacity(all.len() + 1);
        out.push(FolderInfo {
            name: "INBOX".into(),
            special_use: None,
            has_children: has_children("INBOX"),
            subscribed: subs.contains("INBOX"),
            exists: true,
        });
        // `INBOX` itself may appear as the parent of `INBOX/...`.
        for name in all.iter().filter(|n| *n != "INBOX") {
            out.push(FolderInfo {
                special_use: folders::special_use(name),
                has_children: has_children(name),
                subscribed: subs.contains(name),
                exists: existing.contains(name),
                name: name.clone(),
            });
        }
        // INBOX first, then by name (a parent sorts before its children).
        out.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        Ok(out)
    }

    /// Creates `name` (and missing parents). `AlreadyExists` when it exists.
    pub fn create(&self, name: &str) -> Result<(), StoreError> {
        // A trailing delimiter only says children will follow (RFC 3501).
        let trimmed = name.strip_suffix(crate::DELIMITER).unwrap_or(name);
        let folder = folders::parse(trimmed)?;
        let dir = folder.path(&self.root);
        if folder.is_inbox() || dir.exists() {
            return Err(StoreError::FolderExists(folder.imap));
        }
        if folders::scan(&self.root)?.len() >= folders::MAX_FOLDERS {
            return Err(StoreError::NotAllowed("too many folders".into()));
        }
        let mut prefix = String::new();
        for comp in folder.imap.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            let f = folders::parse(&prefix)?;
            let d = f.path(&self.root);
            if !f.is_inbox() && !d.is_dir() {
                // Rows left by a folder another tool removed are stale.
                let idx = index::open(&self.root)?;
                idx.write_txn(|tx| folder_ops::drop_folder(tx, &f.imap))?;
                make_folder_dir(&d)?;
            }
        }
        tracing::info!(target: "retrieval", user = %self.user, folder = %folder.imap, "folder created");
        Ok(())
    }

    /// Deletes `name` and its messages; INBOX cannot be deleted. A folder
    /// with children keeps existing as a `\Noselect` parent (RFC 3501).
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let folder = folders::parse(name)?;
        if folder.is_inbox() {
            return Err(StoreError::NotAllowed("INBOX cannot be deleted".into()));
        }
        let dir = folder.path(&self.root);
        if !dir.is_dir() {
            return Err(StoreError::NoSuchFolder(folder.imap));
        }
        // Out of sight first (one rename), then removed at leisure.
        let trash = self
            .root
            .join("tmp")
            .join(format!("postamt-deleted.{}", unique_suffix()));
        std::fs::rename(&dir, &trash)?;
        crate::fsio::sync_dir(&self.root)?;
        let idx = index::open(&self.root)?;
        idx.write_txn(|tx| folder_ops::drop_folder(tx, &folder.imap))?;
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            tracing::warn!(path = %trash.display(), error = %e, "removing a deleted folder failed");
        }
        watch::notify(&dir);
        tracing::info!(target: "retrieval", user = %self.user, folder = %folder.imap, "folder deleted");
        Ok(())
    }

    /// Renames `from` (with its children) to `to`. Renaming INBOX moves its
    /// messages into the new folder and leaves INBOX empty (RFC 3501).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let src = folders::parse(from)?;
        let dst = folders::parse(to.strip_suffix(crate::DELIMITER).unwrap_or(to))?;
        if dst.is_inbox() || dst.path(&self.root).exists() {
            return Err(StoreError::FolderExists(dst.imap));
        }
        if dst.imap.starts_with(&format!("{}/", src.imap)) {
            return Err(StoreError::NotAllowed(
                "a folder cannot move into itself".into(),
            ));
        }
        if src.is_inbox() {
            return self.rename_inbox(&dst);
        }
        // The folder and its children, with their new names, checked first.
        let prefix = format!("{}/", src.imap);
        let mut moves: Vec<(FolderName, FolderName)> = Vec::new();
        for f in folders::scan(&self.root)? {
            let new = if f.imap == src.imap {
                dst.imap.clone()
            } else if let Some(rest) = f.imap.strip_prefix(&prefix) {
                format!("{}/{rest}", dst.imap)
            } else {
                continue;
            };
            let new = folders::parse(&new)?;
            if new.path(&self.root).exists() {
                return Err(StoreError::FolderExists(new.imap));
            }
            moves.push((f, new));
        }
        if moves.is_empty() {
            return Err(StoreError::NoSuchFolder(src.imap));
        }
        self.make_parents(&dst)?;
        for (old, new) in &moves {
            std::fs::rename(old.path(&self.root), new.path(&self.root))?;
            watch::notify(&old.path(&self.root));
        }
        crate::fsio::sync_dir(&self.root)?;
        let idx = index::open(&self.root)?;
        idx.write_txn(|tx| folder_ops::rename(tx, &src.imap, &dst.imap))?;
        subscriptions::rename(&self.root, &src.imap, &dst.imap)?;
        tracing::info!(target: "retrieval", user = %self.user, from = %src.imap, to = %dst.imap, "folder renamed");
        Ok(())
    }

    /// Makes the missing parents of `folder` (as ordinary folders).
    fn make_parents(&self, folder: &FolderName) -> Result<(), StoreError> {
        if let Some(i) = folder.imap.rfind('/') {
            let parent = &folder.imap[..i];
            let p = folders::parse(parent)?;
            if !p.is_inbox() && !p.path(&self.root).is_dir() {
                self.create(parent)?;
            }
        }
        Ok(())
    }

    fn rename_inbox(&self, dst: &FolderName) -> Result<(), StoreError> {
        self.create(&dst.imap)?;
        let mut inbox = Folder::open(&self.root, &folders::parse("INBOX")?, true)?;
        let uids: Vec<u32> = inbox.messages().iter().map(|m| m.uid).collect();
        let moved = inbox.move_to(&uids, &dst.imap)?;
        tracing::info!(target: "retrieval", user = %self.user, to = %dst.imap,
            count = moved.source.len(), "INBOX renamed: messages moved");
        Ok(())
    }

    /// Sets or clears the subscription of `name` (the name need not exist).
    pub fn subscribe(&self, name: &str, on: bool) -> Result<(), StoreError> {
        let folder = folders::parse(name)?;
        subscriptions::set(&self.root, &[&folder.imap], on)?;
        Ok(())
    }

    /// STATUS of `name` (synchronises its index first, unless a session's
    /// scan found the files in line and the directories are unchanged).
    pub fn status(&self, name: &str) -> Result<FolderStatus, StoreError> {
        let folder = self.existing(name)?;
        let dir = folder.path(&self.root);
        let idx = index::open(&self.root)?;
        let checked = crate::folder::files_checked(&dir);
        // Scanned outside the transaction (the connection is shared).
        let files = match checked {
            Some(_) => None,
            None => Some(sync::scan(&dir)?),
        };
        let stale = idx.read_txn_at(|tx, generation| {
            let Some(row) = folder_ops::get(tx, &folder.imap)? else {
                return Ok(true);
            };
            if checked == Some(generation) {
                return Ok(false);
            }
            let scanned;
            let files = match &files {
                Some(f) => f,
                None => {
                    scanned = sync::scan(&dir)?;
                    &scanned
                }
            };
            let rows = messages::file_rows(tx, row.id)?;
            let known = rows.iter().map(|r| (r.base.as_slice(), r.file.as_slice()));
            Ok(sync::differs(files, known))
        })?;
        if stale {
            let synced = idx.with(|conn| sync::apply(conn, &folder.imap, &dir))?;
            idx.committed();
            if synced.changed {
                watch::notify(&dir);
            }
        }
        idx.read_txn(|tx| {
            let row = folder_ops::get(tx, &folder.imap)?
                .ok_or_else(|| StoreError::NoSuchFolder(folder.imap.clone()))?;
            let (messages, unseen, recent, size) = messages::status(tx, &row)?;
            Ok(FolderStatus {
                messages,
                recent,
                unseen,
                uid_next: row.uidnext,
                uid_validity: row.uidvalidity,
                highest_modseq: row.modseq,
                size,
            })
        })
    }

    /// The checked name of an existing folder, else `NoSuchFolder`.
    fn existing(&self, name: &str) -> Result<FolderName, StoreError> {
        let folder = folders::parse(name)?;
        if !folder.is_inbox() && !folder.path(&self.root).join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder(folder.imap));
        }
        Ok(folder)
    }

    /// Opens `name` for a session: synchronises the index with the files
    /// (new files get UIDs, vanished ones are expunged) and returns the
    /// folder's current state. `NoSuchFolder` when it does not exist.
    pub fn open(&self, name: &str) -> Result<Folder, StoreError> {
        Folder::open(&self.root, &self.existing(name)?, false)
    }

    /// Opens `name` read-only (EXAMINE): no `\Recent` is claimed.
    pub fn examine(&self, name: &str) -> Result<Folder, StoreError> {
        Folder::open(&self.root, &self.existing(name)?, true)
    }

    /// Appends a message (tmp -> cur/new, fsync, indexed with its parsed
    /// meta); returns (UIDVALIDITY, UID).
    pub fn append(
        &self,
        name: &str,
        data: &[u8],
        flags: &Flags,
        internal_date: Option<i64>,
    ) -> Result<(u32, u32), StoreError> {
        let folder = self.existing(name)?;
        let dir = folder.path(&self.root);
        let meta = crate::parse::parse_meta(data);
        let blob = messages::encode_meta(&meta);
        let (base, file) = place::write_message(&dir, data, flags, internal_date, None)?;
        let date = internal_date.unwrap_or_else(now_secs);
        let idx = index::open(&self.root)?;
        let added = idx.write_txn(|tx| {
            let mut row = folder_ops::get_or_create(tx, &folder.imap)?;
            let m = NewMessage {
                base: &base,
                file: &file,
                flags,
                size: data.len() as u64,
                internal_date: date,
                queue_id: None,
                meta: &blob,
            };
            let uid = messages::insert(tx, &mut row, &m)?;
            folder_ops::save(tx, &row)?;
            Ok(uid.map(|(uid, _)| (row.uidvalidity, uid)))
        })?;
        watch::notify(&dir);
        let (uidvalidity, uid) =
            added.ok_or_else(|| StoreError::Index("appended message already indexed".into()))?;
        tracing::info!(target: "retrieval", user = %self.user, folder = %folder.imap, uid,
            size = data.len(), "message appended");
        Ok((uidvalidity, uid))
    }

    /// The change signal of folder `name`: bumped by every change made in
    /// this process (delivery, APPEND, flags, expunge, POP3 deletions), so
    /// an IDLE session can wake within a second.
    pub fn signal(&self, name: &str) -> Result<Arc<ChangeSignal>, StoreError> {
        let folder = folders::parse(name)?;
        Ok(watch::signal_for(&folder.path(&self.root)))
    }
}

/// Makes a folder directory: `cur/ new/ tmp/` and the `maildirfolder`
/// marker, fsynced.
fn make_folder_dir(dir: &Path) -> Result<(), StoreError> {
    crate::fsio::create_maildir(dir)?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(MAILDIRFOLDER))
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{}.{}.{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests;
