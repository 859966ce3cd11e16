//! The spool: the durable queue between the SMTP receiver and the delivery
//! agent. `enqueue` returns only when the message and its envelope are on
//! disk and fsynced (file and directory); everything unfinished is found
//! again after a crash. Delivery is at-least-once.
//!
//! SKELETON: signatures are the contract other crates code against; the
//! bodies are being written.

use serde::{Deserialize, Serialize};
use std::path::Path;
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

/// A queue id (UUID v7, simple lowercase hex): sortable by arrival.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub String);

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl QueueId {
    /// A new, unique id (UUID v7 as 32 lowercase hex digits).
    pub fn generate() -> QueueId {
        todo!()
    }
}

impl std::str::FromStr for QueueId {
    type Err = SpoolError;
    /// Accepts only ids the spool could have made (hex), so an id from the
    /// command line can never name a path outside the spool.
    fn from_str(s: &str) -> Result<Self, SpoolError> {
        let _ = s;
        todo!()
    }
}

/// What the receiver (or the delivery agent, for bounces) hands to the spool.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewMessage {
    /// The id to use (the receiver makes it before DATA so that the
    /// `Received:` header can name it); `None` = the spool makes one.
    pub id: Option<QueueId>,
    /// Envelope sender; empty for the null sender `<>`.
    pub mail_from: String,
    /// Envelope recipients as given in RCPT TO (already checked).
    pub recipients: Vec<String>,
    /// Client IP and HELO name, for logs and `queue show`.
    pub client: Option<String>,
    pub helo: Option<String>,
    /// Authenticated user, if any.
    pub auth_user: Option<String>,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
}

/// Per-recipient delivery state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    /// Not yet delivered (maybe deferred: see `last_error`).
    Pending,
    Delivered,
    /// Permanently failed; a bounce was (or will be) generated.
    Failed,
}

/// One envelope recipient and its fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    /// The last error or remote reply, for `queue list`, logs and bounces.
    pub last_error: Option<String>,
    /// Final destinations (user names or remote addresses) this recipient
    /// expanded to that already have the message, so a retry never
    /// delivers twice to them.
    #[serde(default)]
    pub delivered_to: Vec<String>,
}

/// A queued message's envelope and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: QueueId,
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    pub client: Option<String>,
    pub helo: Option<String>,
    pub auth_user: Option<String>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// Message size in bytes.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the next delivery attempt.
    pub next_attempt: i64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Held by the admin: not delivered until released.
    pub held: bool,
    /// A delay warning was sent already.
    pub delay_warned: bool,
    /// Bounce already generated for these failed recipients (addresses).
    pub bounced: Vec<String>,
}

impl Envelope {
    /// Whether no recipient is pending any more.
    pub fn is_done(&self) -> bool {
        self.recipients
            .iter()
            .all(|r| r.status != RecipientStatus::Pending)
    }
}

/// The queue on disk.
pub struct Spool {}

impl Spool {
    /// Opens (creating if needed) the spool under `dir` and cleans up
    /// half-written files left by a crash.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        let _ = dir;
        todo!()
    }
    /// Stores a message durably; returns its id once file and directory are fsynced.
    pub async fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, SpoolError> {
        let _ = (msg, data);
        todo!()
    }
    /// Same, for synchronous callers (not on an async runtime thread).
    pub fn enqueue_blocking(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, SpoolError> {
        let _ = (msg, data);
        todo!()
    }
    /// The receiver of new arrivals' ids; `None` after the first call
    /// (the delivery agent takes it).
    pub fn take_arrivals(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<QueueId>> {
        todo!()
    }
    /// Every queued message's envelope, oldest first.
    pub fn list(&self) -> Result<Vec<Envelope>, SpoolError> {
        todo!()
    }
    pub fn get(&self, id: &QueueId) -> Result<Envelope, SpoolError> {
        let _ = id;
        todo!()
    }
    /// The message bytes as received (with the `Received:` header the receiver prepended).
    pub fn read_message(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError> {
        let _ = id;
        todo!()
    }
    /// Saves a changed envelope atomically.
    pub fn update(&self, env: &Envelope) -> Result<(), SpoolError> {
        let _ = env;
        todo!()
    }
    /// Removes a finished (or admin-deleted) message and its envelope.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        let _ = id;
        todo!()
    }
}
