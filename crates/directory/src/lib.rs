//! The directory: user accounts (argon2id password hashes), aliases with `*`
//! wildcards, and the resolution of an address to local users or remote
//! addresses. Stored in embedded SQLite (WAL), safe to share between the
//! running server and the CLI.
//!
//! SKELETON: signatures are the contract other crates code against; the
//! bodies are being written.

pub mod auth;

use std::path::Path;
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
    pub fn contains(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        self.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
    }
}

/// The alias expansion depth limit.
pub const MAX_ALIAS_DEPTH: usize = 10;

/// Checks a user name: it becomes a path component, so nothing may escape the mailbox root.
pub fn validate_user_name(name: &str) -> Result<(), DirectoryError> {
    let _ = name;
    todo!()
}

/// The directory handle; cheap to share behind an `Arc`.
pub struct Directory {}

impl Directory {
    /// Opens (creating if needed) the SQLite database at `path`, WAL mode.
    pub fn open(path: &Path) -> Result<Directory, DirectoryError> {
        let _ = path;
        todo!()
    }
    pub fn add_user(&self, name: &str, password: &str, admin: bool) -> Result<(), DirectoryError> {
        let _ = (name, password, admin);
        todo!()
    }
    pub fn delete_user(&self, name: &str) -> Result<(), DirectoryError> {
        let _ = name;
        todo!()
    }
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), DirectoryError> {
        let _ = (name, password);
        todo!()
    }
    pub fn list_users(&self) -> Result<Vec<UserInfo>, DirectoryError> {
        todo!()
    }
    /// Case-insensitive lookup.
    pub fn get_user(&self, name: &str) -> Result<Option<UserInfo>, DirectoryError> {
        let _ = name;
        todo!()
    }
    /// Verifies a password (argon2id). `Ok(None)` for unknown user or wrong
    /// password alike; costs the same hash work in both cases.
    pub fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserInfo>, DirectoryError> {
        let _ = (name, password);
        todo!()
    }
    /// Adds an alias, or replaces the targets of an existing pattern.
    pub fn add_alias(&self, pattern: &str, targets: &[String]) -> Result<(), DirectoryError> {
        let _ = (pattern, targets);
        todo!()
    }
    pub fn delete_alias(&self, pattern: &str) -> Result<(), DirectoryError> {
        let _ = pattern;
        todo!()
    }
    pub fn list_aliases(&self) -> Result<Vec<Alias>, DirectoryError> {
        todo!()
    }
    /// Expands `address` (`local@domain` with a local domain, or a bare local
    /// part) into its final destinations, deduplicated and sorted.
    pub fn resolve(
        &self,
        address: &str,
        local: &LocalDomains,
    ) -> Result<Vec<Destination>, ResolveError> {
        let _ = (address, local);
        todo!()
    }
}
