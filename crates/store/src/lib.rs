//! The local store: one Maildir++ per user (`tmp/` -> `new/`, folders as
//! `.Name`), created on first mail from the mailbox template. Delivery is
//! atomic and fsynced; POP3 and IMAP read and change mail only here.
//!
//! Layout of one mailbox (readable by Dovecot, mutt, Python's `mailbox`):
//!
//! ```text
//! <template with %u, %d>/
//!   tmp/   being written
//!   new/   delivered (IMAP leaves a message here until its flags change)
//!   cur/   flags set: the name gets `:2,<flags>` (D F R S T)
//!   .Sent/ .Drafts/ .Trash/ .Junk/ .Archive/   folders (Maildir++), each with
//!          cur/ new/ tmp/ and a `maildirfolder` marker; `A/B` is `.A.B`,
//!          names in modified UTF-7, a literal `.` written `\2e` (`folders`)
//!   subscriptions               IMAP subscriptions, one name per line
//!   postamt-index.sqlite        the IMAP index (+ `-wal`, `-shm`): UIDs,
//!                               UIDVALIDITY, flags, modseqs, parsed message
//!                               structure; rebuilt from the files when missing
//!                               or damaged (`index`)
//!   postamt-uidvalidity         the last UIDVALIDITY given out, so a rebuilt
//!                               index never repeats one
//!   postamt-pop3.lock           the POP3 session lock (flock)
//! ```
//!
//! File names and POP3 UIDs are described in the `name` module: a
//! message's POP3 UID is its base name without flags and `,S=` fields,
//! stable across a move from `new/` to `cur/`, and valid as a POP3 UIDL.
//! IMAP UIDs are numbers kept in the index per folder, keyed by the base
//! name (the part before `:`), so they survive moves, flag renames and
//! restarts.
//!
//! Module map: `account` (a user's folder tree: LIST, CREATE, DELETE,
//! RENAME, STATUS, APPEND, subscriptions), `folder` (a selected folder's
//! snapshot: refresh, read, STORE, EXPUNGE, COPY/MOVE, VANISHED; the
//! records shared by all sessions of the process, `folder::shared`),
//! `index` (the SQLite index and the files -> index sync), `parse`
//! (`MessageMeta` from bytes), `folders` (names and the folder tree on
//! disk), `place` (message files: naming, writing, flag renames, finding
//! moved ones), `watch` (in-process change signals for IDLE), `maildir`
//! (the POP3 view of INBOX), `deliver` and `fsio` (delivery, fsync).
//!
//! Delivery indexes each message into INBOX with its parsed meta right
//! away (one WAL write, no fsync; a failure there is logged and the
//! message is indexed by the next session's refresh instead).

mod account;
mod deliver;
mod error;
mod flags;
mod folder;
mod folders;
mod fsio;
mod index;
mod lock;
mod maildir;
mod meta;
mod name;
mod parse;
mod place;
mod user;
mod watch;

pub use account::{Account, CopyUids, DELIMITER, FolderInfo, FolderStatus, SpecialUse};
pub use error::StoreError;
pub use flags::{FlagOp, Flags, valid_keyword};
pub use folder::{Changes, Folder, MessageRecord, StoreOutcome};
pub use folders::subscriptions::FILE as SUBSCRIPTIONS_FILE;
pub use index::INDEX_FILE;
pub use lock::{LOCK_FILE, MailboxLock};
pub use maildir::{MAX_READ, Maildir};
pub use meta::{Address, BodyPart, Envelope, MessageMeta, Params, PartKind};
pub use name::{MAX_UID_LEN, uid_for as uid_for_file_name};
pub use parse::parse_meta;
pub use user::validate_user;
pub use watch::ChangeSignal;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The folder quarantined messages are delivered to (one of the special
/// folders every mailbox gets).
pub const JUNK_FOLDER: &str = "Junk";

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

/// All mailboxes, found through the template. Clones share the layout,
/// which [`MailStore::reconfigure`] replaces on a config reload.
#[derive(Clone, Debug)]
pub struct MailStore {
    layout: Arc<RwLock<Arc<Layout>>>,
    host: String,
}

/// Where mailboxes are and whether they are made on first mail.
#[derive(Debug)]
struct Layout {
    template: String,
    domain: String,
    create: bool,
}

impl Layout {
    fn new(template: &str, primary_domain: &str, create: bool) -> Layout {
        let template = if template.contains("%u") {
            template.to_string()
        } else {
            tracing::error!(template, "mailbox template lacks %u; using <template>/%u");
            format!("{}/%u", template.trim_end_matches('/'))
        };
        Layout {
            template,
            domain: primary_domain.to_ascii_lowercase(),
            create,
        }
    }
}

impl MailStore {
    /// `template` contains `%u` (user) and may contain `%d` (the primary
    /// domain). A template without `%u` would put every user in one
    /// mailbox, so `/%u` is appended to it (and an error logged).
    pub fn new(template: &str, primary_domain: &str, create: bool) -> MailStore {
        MailStore {
            layout: Arc::new(RwLock::new(Arc::new(Layout::new(
                template,
                primary_domain,
                create,
            )))),
            host: name::host_tag(&hostname()),
        }
    }

    /// Replaces the template, primary domain and auto-creation (a config
    /// reload); every clone of this store sees the change at its next call.
    pub fn reconfigure(&self, template: &str, primary_domain: &str, create: bool) {
        let fresh = Arc::new(Layout::new(template, primary_domain, create));
        *self.layout.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    fn layout(&self) -> Arc<Layout> {
        Arc::clone(&self.layout.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether mailboxes are created on first mail.
    pub fn creates_mailboxes(&self) -> bool {
        self.layout().create
    }

    /// The directory of `user`'s mailbox; refuses names that could escape the root.
    pub fn mailbox_dir(&self, user: &str) -> Result<PathBuf, StoreError> {
        let user = user.to_ascii_lowercase();
        user::validate_user(&user)?;
        let layout = self.layout();
        if layout.template.contains("%d") && !user::valid_domain(&layout.domain) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "primary domain `{}` is unusable in a mailbox path",
                    layout.domain
                ),
            )
            .into());
        }
        Ok(PathBuf::from(user::expand_template(
            &layout.template,
            &user,
            &layout.domain,
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
            if !self.creates_mailboxes() && !root.is_dir() {
                return Err(StoreError::NoMailbox(user.to_ascii_lowercase()));
            }
            fsio::create_maildir(&root)?;
            tracing::info!(user, path = %root.display(), "mailbox created");
        }
        let name = deliver::deliver_into(&root, data, queue_id, &self.host)?;
        tracing::debug!(user, queue_id, file = %name, size = data.len(), "delivered to maildir");
        // The message is durable; indexing it is an optimisation (a
        // session's refresh would index it too): parsed here, written by
        // the index writer with the deliveries around it, which then
        // wakes IDLE sessions (see `index::batch`).
        index::batch::submit(index::batch::Delivered::new(&root, &name, data));
        Ok(name)
    }

    /// Delivers `data` into `user`'s `Junk` folder (a message a DMARC
    /// `p=quarantine` policy asked to treat with suspicion); returns the
    /// new message's unique name and whether it went to `Junk`. The
    /// mailbox and its special folders are created as for IMAP; when the
    /// user has deleted `Junk`, the message goes to the inbox instead
    /// (never lost, never a folder the user did not want).
    pub fn deliver_to_junk(
        &self,
        user: &str,
        data: &[u8],
        queue_id: &str,
    ) -> Result<(String, bool), StoreError> {
        let account = self.account(user)?;
        let junk = folders::parse(JUNK_FOLDER)?.path(account.root());
        if !fsio::is_complete_maildir(&junk) {
            return Ok((self.deliver(user, data, queue_id)?, false));
        }
        let name = deliver::deliver_into(&junk, data, queue_id, &self.host)?;
        tracing::debug!(user, queue_id, file = %name, size = data.len(), "delivered to the Junk folder");
        // Indexed by the folder's next refresh (the index writer serves
        // INBOX deliveries); IMAP sessions in the folder are woken now.
        watch::notify(&junk);
        Ok((name, true))
    }

    /// `user`'s folder tree for IMAP. When automatic creation is on, a
    /// missing mailbox is created with the SPECIAL-USE folders (Sent,
    /// Drafts, Trash, Junk, Archive); otherwise `StoreError::NoMailbox`.
    pub fn account(&self, user: &str) -> Result<Account, StoreError> {
        let root = self.mailbox_dir(user)?;
        if !fsio::is_complete_maildir(&root) {
            if !self.creates_mailboxes() && !root.is_dir() {
                return Err(StoreError::NoMailbox(user.to_ascii_lowercase()));
            }
            fsio::create_maildir(&root)?;
            tracing::info!(user, path = %root.display(), "mailbox created");
        }
        Account::load(root, user.to_ascii_lowercase())
    }

    /// Opens `user`'s mailbox for reading. When it does not exist yet, it is
    /// created if automatic creation is on; otherwise the returned
    /// `Maildir` is an empty view (no messages) and nothing is created.
    pub fn open(&self, user: &str) -> Result<Maildir, StoreError> {
        let root = self.mailbox_dir(user)?;
        if self.creates_mailboxes() && !fsio::is_complete_maildir(&root) {
            fsio::create_maildir(&root)?;
        }
        Ok(Maildir::new(root))
    }
}

/// Waits until every delivery made so far by this process is in its
/// mailbox's IMAP index (see `index::batch`); false if the index writer
/// did not answer in time. For the server's shutdown and for tests.
pub fn flush_index_writes() -> bool {
    index::batch::flush()
}

/// Indexes a message just delivered to `new/<name>` into INBOX now, as
/// the index writer does (for the cost report in the index tests).
#[cfg(test)]
fn index_delivery(root: &std::path::Path, name: &str, data: &[u8]) -> Result<(), StoreError> {
    index::batch::insert_all(root, &[index::batch::Delivered::new(root, name, data)]).map(|_| ())
}

/// This host's tag for unique file names (first label of the host name).
pub(crate) fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| name::host_tag(&hostname()))
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
