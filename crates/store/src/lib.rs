//! The local store: one Maildir++ per user (`tmp/` -> `new/`, folders as
//! `.Name`), created on first mail from the mailbox template. Delivery is
//! atomic and fsynced; POP3 (and later IMAP) read and change mail only here.
//!
//! Layout of one mailbox (readable by Dovecot, mutt, Python's `mailbox`):
//!
//! ```text
//! <template with %u, %d>/
//!   tmp/   being written        new/   delivered, unseen by any reader
//!   cur/   seen by a reader (name gets `:2,<flags>`)
//!   postamt-pop3.lock           the POP3 session lock (flock)
//! ```
//!
//! File names and UIDs are described in the `name` module: a message's
//! UID is its base name without flags and `,S=` fields, stable across a
//! move from `new/` to `cur/`, and valid as a POP3 UIDL.

mod deliver;
mod error;
mod fsio;
mod lock;
mod maildir;
mod name;
mod user;

pub use error::StoreError;
pub use lock::{LOCK_FILE, MailboxLock};
pub use maildir::{MAX_READ, Maildir};
pub use name::{MAX_UID_LEN, uid_for as uid_for_file_name};
pub use user::validate_user;

use std::path::PathBuf;

/// A message in a mailbox as POP3 sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// Stable unique id (the Maildir base name, without the `:2,` info part
    /// and `,S=` fields; a hash for names unfit as a POP3 UIDL).
    pub uid: String,
    /// Size in bytes of the file (the message as received, CRLF line ends).
    pub size: u64,
    pub path: PathBuf,
    /// The spool queue id the message was delivered from, when the
    /// unique name carries one (so POP3/IMAP logs can name it).
    pub queue_id: Option<String>,
}

/// All mailboxes, found through the template.
#[derive(Clone, Debug)]
pub struct MailStore {
    template: String,
    domain: String,
    create: bool,
    host: String,
}

impl MailStore {
    /// `template` contains `%u` (user) and may contain `%d` (the primary
    /// domain). A template without `%u` would put every user in one
    /// mailbox, so `/%u` is appended to it (and an error logged).
    pub fn new(template: &str, primary_domain: &str, create: bool) -> MailStore {
        let template = if template.contains("%u") {
            template.to_string()
        } else {
            tracing::error!(template, "mailbox template lacks %u; using <template>/%u");
            format!("{}/%u", template.trim_end_matches('/'))
        };
        MailStore {
            template,
            domain: primary_domain.to_ascii_lowercase(),
            create,
            host: name::host_tag(&hostname()),
        }
    }

    /// Whether mailboxes are created on first mail.
    pub fn creates_mailboxes(&self) -> bool {
        self.create
    }

    /// The directory of `user`'s mailbox; refuses names that could escape the root.
    pub fn mailbox_dir(&self, user: &str) -> Result<PathBuf, StoreError> {
        let user = user.to_ascii_lowercase();
        user::validate_user(&user)?;
        if self.template.contains("%d") && !user::valid_domain(&self.domain) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "primary domain `{}` is unusable in a mailbox path",
                    self.domain
                ),
            )
            .into());
        }
        Ok(PathBuf::from(user::expand_template(
            &self.template,
            &user,
            &self.domain,
        )))
    }

    /// Delivers `data` into `user`'s inbox (tmp -> new, fsync file and dir);
    /// returns the new message's unique name. `queue_id` (hex) is embedded in
    /// the unique name so retrieval logs can tie the message to its queue id.
    ///
    /// A missing mailbox is created (`cur/ new/ tmp/`, mode 0700) when
    /// automatic creation is on, else `StoreError::NoMailbox`; an existing
    /// one missing a subdirectory is repaired.
    pub fn deliver(&self, user: &str, data: &[u8], queue_id: &str) -> Result<String, StoreError> {
        let root = self.mailbox_dir(user)?;
        if !fsio::is_complete_maildir(&root) {
            if !self.create && !root.is_dir() {
                return Err(StoreError::NoMailbox(user.to_ascii_lowercase()));
            }
            fsio::create_maildir(&root)?;
            tracing::info!(user, path = %root.display(), "mailbox created");
        }
        let name = deliver::deliver_into(&root, data, queue_id, &self.host)?;
        tracing::debug!(user, queue_id, file = %name, size = data.len(), "delivered to maildir");
        Ok(name)
    }

    /// Opens `user`'s mailbox for reading. When it does not exist yet, it is
    /// created if automatic creation is on; otherwise the returned
    /// `Maildir` is an empty view (no messages) and nothing is created.
    pub fn open(&self, user: &str) -> Result<Maildir, StoreError> {
        let root = self.mailbox_dir(user)?;
        if self.create && !fsio::is_complete_maildir(&root) {
            fsio::create_maildir(&root)?;
        }
        Ok(Maildir::new(root))
    }
}

/// The host name, for unique file names.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and
    // gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
