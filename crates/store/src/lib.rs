//! The local store: one Maildir++ per user (`tmp/` -> `new/`, folders as
//! `.Name`), created on first mail from the mailbox template. Delivery is
//! atomic and fsynced; POP3 (and later IMAP) read and change mail only here.
//!
//! SKELETON: signatures are the contract other crates code against; the
//! bodies are being written.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// Store failures.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("mailbox I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("mailbox of `{0}` does not exist and automatic creation is off")]
    NoMailbox(String),
    #[error("invalid user name `{0}` for a mailbox path")]
    InvalidUser(String),
    #[error("mailbox is in use by another session")]
    InUse,
    #[error("message {0} is gone")]
    Gone(String),
}

/// A message in a mailbox as POP3 sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// Stable unique id (the Maildir base name, without the `:2,` info part).
    pub uid: String,
    /// Size in bytes of the file (the message as received, CRLF line ends).
    pub size: u64,
    pub path: PathBuf,
    /// The spool queue id the message was delivered from, when the
    /// unique name carries one (so POP3/IMAP logs can name it).
    pub queue_id: Option<String>,
}

/// All mailboxes, found through the template.
pub struct MailStore {}

impl MailStore {
    /// `template` contains `%u` (user) and may contain `%d` (the primary domain).
    pub fn new(template: &str, primary_domain: &str, create: bool) -> MailStore {
        let _ = (template, primary_domain, create);
        todo!()
    }
    /// The directory of `user`'s mailbox; refuses names that could escape the root.
    pub fn mailbox_dir(&self, user: &str) -> Result<PathBuf, StoreError> {
        let _ = user;
        todo!()
    }
    /// Delivers `data` into `user`'s inbox (tmp -> new, fsync file and dir);
    /// returns the new message's unique name. `queue_id` (hex) is embedded in
    /// the unique name so retrieval logs can tie the message to its queue id.
    pub fn deliver(&self, user: &str, data: &[u8], queue_id: &str) -> Result<String, StoreError> {
        let _ = (user, data, queue_id);
        todo!()
    }
    /// Opens `user`'s mailbox for reading, creating an empty one if it does not exist yet.
    pub fn open(&self, user: &str) -> Result<Maildir, StoreError> {
        let _ = user;
        todo!()
    }
}

/// One user's Maildir++.
pub struct Maildir {}

/// Held while a POP3 session owns the mailbox; released on drop.
pub struct MailboxLock {}

impl Maildir {
    pub fn path(&self) -> &Path {
        todo!()
    }
    /// Takes the exclusive POP3 lock, or `StoreError::InUse`.
    pub fn lock(&self) -> Result<MailboxLock, StoreError> {
        todo!()
    }
    /// The inbox's messages (new and cur), oldest first.
    pub fn messages(&self) -> Result<Vec<MessageInfo>, StoreError> {
        todo!()
    }
    pub fn read(&self, msg: &MessageInfo) -> Result<Vec<u8>, StoreError> {
        let _ = msg;
        todo!()
    }
    /// Removes messages; one already gone is not an error.
    pub fn delete(&self, msgs: &[MessageInfo]) -> Result<(), StoreError> {
        let _ = msgs;
        todo!()
    }
}
