//! The spool's error type.

use thiserror::Error;

/// Spool failures.
#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("no such message {0} in the queue")]
    NotFound(String),
    #[error("corrupt queue file {0}: {1}")]
    Corrupt(String, String),
}
