//! The store's error type.

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
    #[error("invalid folder name `{0}`")]
    BadFolderName(String),
    #[error("folder `{0}` does not exist")]
    NoSuchFolder(String),
    #[error("folder `{0}` already exists")]
    FolderExists(String),
    #[error("folder operation not allowed: {0}")]
    NotAllowed(String),
    #[error("folder index error: {0}")]
    Index(String),
}
