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
}
