//! The directory: user accounts (argon2id password hashes), aliases with `*`
//! wildcards, mailing lists, forwards and auto-replies, and the resolution of an address to local users or remote
//! addresses. Stored in embedded SQLite (WAL), safe to share between the
//! running server and the CLI.
//!
//! Since schema version 2 it also holds mailing lists (options, members,
//! pending confirmations and held posts), per-user forwards and auto-replies,
//! and the auto-reply memory ("already answered this sender").
//!
//! Modules: `db` (connection, schema, migrations), `names` (validation of
//! names and addresses), `content` (validation of stored texts), `password`
//! (argon2id), `users`, `aliases`, `lists`, `pending`, `forwards`,
//! `autoreply`, `namespace` (one name, one owner: users, aliases and lists
//! never shadow each other), `resolve` (alias expansion and classification,
//! whose module documentation states the exact rules) and `auth` (logins
//! with a credential cache and failure delays).

mod aliases;
pub mod auth;
mod autoreply;
pub mod content;
mod db;
mod forwards;
mod lists;
pub mod names;
mod namespace;
mod password;
mod pending;
pub mod resolve;
mod users;

pub use autoreply::{Autoreply, AutoreplyRule, DEFAULT_AUTOREPLY_PERIOD};
pub use db::SCHEMA_VERSION;
pub use forwards::{Forward, MAX_FORWARD_TARGETS};
pub use lists::{
    ListInfo, ListMember, ListOptions, ListSummary, MAX_LIST_MEMBERS, PostPermission, Posting,
    ReplyTo,
};
pub use names::{ListRole, validate_user_name};
pub use pending::{MAX_PENDING_PER_LIST, Pending, PendingAction, TOKEN_LEN, looks_like_token};
pub use resolve::{Expansion, Target};

use rusqlite::Connection;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use thiserror::Error;

/// Directory failures.
#[derive(Debug, Error)]
pub enum DirectoryError {
    #[error("database error: {0}")]
    Db(String),
    #[error(
        "invalid user name `{0}`: use letters, digits, '.', '-', '_' (1-64 characters, not starting with '.' or '-')"
    )]
    InvalidUserName(String),
    #[error("invalid alias pattern `{0}`: {1}")]
    InvalidPattern(String, String),
    #[error("invalid alias target `{0}`: {1}")]
    InvalidTarget(String, String),
    #[error("user `{0}` already exists")]
    UserExists(String),
    #[error("no such user `{0}`")]
    NoSuchUser(String),
    #[error("no such alias `{0}`")]
    NoSuchAlias(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("invalid list name `{0}`: {1}")]
    InvalidListName(String, String),
    #[error("invalid address `{0}`: {1}")]
    InvalidAddress(String, String),
    /// A free text (auto-reply subject or body, list subject prefix, a
    /// pending entry's payload) that may not be stored: which one, and why.
    #[error("invalid {0}: {1}")]
    InvalidText(&'static str, String),
    #[error("invalid dates: {0}")]
    InvalidDates(String),
    /// A user, alias or list name that is already another thing's address.
    #[error("the name `{name}` is taken: {by}")]
    NameTaken { name: String, by: String },
    #[error("list `{0}` already exists")]
    ListExists(String),
    #[error("no such list `{0}`")]
    NoSuchList(String),
    #[error("`{address}` is already a member of list `{list}`")]
    AlreadyMember { list: String, address: String },
    #[error("`{address}` is not a member of list `{list}`")]
    NotMember { list: String, address: String },
    #[error("user `{0}` has no forward")]
    NoForward(String),
    #[error("user `{0}` has no auto-reply")]
    NoAutoreply(String),
    #[error("no such confirmation or moderation token")]
    NoSuchToken,
    #[error("the confirmation or moderation token has expired")]
    TokenExpired,
    /// A count limit was reached (members, forward targets, pending entries).
    #[error("{0}")]
    TooMany(String),
}

/// An account as shown to admins (never the hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// One alias rule: a pattern and the addresses or user names it expands to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// `local`, `local@domain`, or either with `*` wildcards (`sales-*`, `*@example.org`).
    pub pattern: String,
    pub targets: Vec<String>,
}

/// Where one recipient address ends up after alias expansion.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// A local account's mailbox.
    Local { user: String },
    /// An address outside our domains.
    Remote { address: String },
}

/// Why an address does not resolve.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("no such user or alias")]
    Unknown,
    #[error("alias loop detected at `{0}`")]
    Loop(String),
    #[error("alias chain deeper than {0}")]
    TooDeep(usize),
    #[error("directory error: {0}")]
    Db(String),
}

/// The domains that are ours, used to tell a local alias target from a remote one.
#[derive(Clone, Debug)]
pub struct LocalDomains {
    /// Lowercase domains; the first is the primary one (bare targets like `bob` mean `bob@primary`).
    pub domains: Vec<String>,
    /// The configured postmaster address: `postmaster` (bare or at a local
    /// domain) resolves to it when no user or alias named postmaster exists.
    pub postmaster: String,
}

impl LocalDomains {
    /// Builds the set from the primary domain, the other local domains (the
    /// hostname among them) and the postmaster address: lowercased, trailing
    /// dots removed, duplicates dropped, the primary first.
    pub fn new<I, S>(primary: &str, others: I, postmaster: &str) -> LocalDomains
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let norm = |d: &str| d.trim_end_matches('.').to_ascii_lowercase();
        let mut domains = vec![norm(primary)];
        for d in others {
            let d = norm(d.as_ref());
            if !d.is_empty() && !domains.contains(&d) {
                domains.push(d);
            }
        }
        LocalDomains {
            domains,
            postmaster: postmaster.to_owned(),
        }
    }

    /// The set a configuration describes: its primary domain first, then
    /// the hostname and the other `domains`, and its postmaster address.
    pub fn from_config(config: &postamt_config::Config) -> LocalDomains {
        LocalDomains::new(
            &config.primary_domain(),
            config.local_domains(),
            &config.postmaster_address(),
        )
    }

    /// The primary domain (bare local parts and targets mean this one).
    pub fn primary(&self) -> Option<&str> {
        self.domains.first().map(String::as_str)
    }

    pub fn contains(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        self.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
    }
}

/// The alias expansion depth limit.
pub const MAX_ALIAS_DEPTH: usize = 10;

/// The directory handle; cheap to share behind an `Arc`. Every call is short
/// (an indexed SQLite lookup or a small write) except the argon2 work in
/// `add_user`, `set_password` and `verify_password`, which runs outside the
/// lock. Safe to open the same file from several handles and processes.
pub struct Directory {
    conn: Mutex<Connection>,
}

impl Directory {
    /// Opens (creating if needed) the SQLite database at `path`, WAL mode,
    /// and brings its schema up to date. The file is created mode 0600.
    pub fn open(path: &Path) -> Result<Directory, DirectoryError> {
        Ok(Directory {
            conn: Mutex::new(db::open(path)?),
        })
    }

    /// A private, empty, in-memory directory (for tests).
    pub fn open_in_memory() -> Result<Directory, DirectoryError> {
        Ok(Directory {
            conn: Mutex::new(db::open_in_memory()?),
        })
    }

    /// The connection. A panic while it was held leaves nothing half-done
    /// (an open transaction rolls back when dropped), so a poisoned lock is
    /// taken over rather than propagated.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expands `address` (`local@domain` with a local domain, or a bare local
    /// part) into its final destinations, deduplicated and sorted. The rules
    /// are documented in the `resolve` module; in short: exact alias on the
    /// full address, exact alias on the local part, user, most specific
    /// wildcard, postmaster fallback, else [`ResolveError::Unknown`]. A remote
    /// address resolves to itself.
    pub fn resolve(
        &self,
        address: &str,
        local: &LocalDomains,
    ) -> Result<Vec<Destination>, ResolveError> {
        let mut conn = self.lock();
        resolve::resolve(&mut conn, address, local)
    }

    /// Tells what a recipient address is, for the receiver (is it ours?) and
    /// the delivery agent (what to do with it): a list, one of a list's
    /// service addresses (`-request`, `-bounces`, `-owner`), or ordinary
    /// destinations with users' forwards applied and lists reached through
    /// aliases or forwards named. The exact rules are in the `resolve`
    /// module. Unlike [`Directory::resolve`], which knows nothing of lists
    /// and forwards, this is the call that decides acceptance at `RCPT`.
    pub fn classify(&self, address: &str, local: &LocalDomains) -> Result<Target, ResolveError> {
        let mut conn = self.lock();
        resolve::classify(&mut conn, address, local)
    }
}
