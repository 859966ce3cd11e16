//! Admin operations: the one place where users, aliases, mailing lists,
//! auto-replies, forwards and the queue are changed on an admin's behalf.
//! The CLI calls these today; the web admin and its JSON API call the same
//! functions, so neither has logic the other lacks.

pub mod control;
pub mod dnscheck;
mod lists;
pub mod logs;
mod queue;
pub mod settings;
pub mod stats;
mod user_rules;
pub mod web_ops;

pub use lists::{ListDeleted, ListOption};
/// The directory types the list, auto-reply and forward operations return.
pub use postamt_directory::{
    Autoreply, Forward, ListInfo, ListMember, ListOptions, ListSummary, Posting, ReplyTo,
};
pub use queue::{QueueEntry, QueueOps};
pub use user_rules::{AutoreplyState, autoreply_window};

use postamt_config::Config;
use postamt_directory::{Alias, Directory, DirectoryError, UserInfo};
use postamt_spool::{Spool, SpoolError};
use std::sync::Arc;

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    SenderAuth(#[from] postamt_sender_auth::SenderAuthError),
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written (the config file, a log).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The admin's handle on a Postamt installation.
pub struct Admin {
    pub config: Arc<Config>,
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
}

impl Admin {
    /// Opens the directory and spool named by `config`.
    pub fn open(config: Arc<Config>) -> Result<Admin, OpsError> {
        let directory = Arc::new(Directory::open(&config.directory_db())?);
        let spool = Arc::new(Spool::open(&config.spool_dir())?);
        Ok(Admin {
            config,
            directory,
            spool,
        })
    }

    /// Adds an account.
    pub fn add_user(&self, name: &str, password: &str, admin: bool) -> Result<(), OpsError> {
        check_password(password)?;
        self.directory.add_user(name, password, admin)?;
        tracing::info!(user = name, admin, "user added");
        Ok(())
    }

    /// Deletes an account (its mail stays on disk for the admin to archive).
    pub fn delete_user(&self, name: &str) -> Result<(), OpsError> {
        self.directory.delete_user(name)?;
        tracing::info!(user = name, "user deleted");
        Ok(())
    }

    /// Changes a password; cached logins with the old one stop working.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), OpsError> {
        check_password(password)?;
        self.directory.set_password(name, password)?;
        tracing::info!(user = name, "password changed");
        Ok(())
    }

    pub fn list_users(&self) -> Result<Vec<UserInfo>, OpsError> {
        Ok(self.directory.list_users()?)
    }

    /// Adds an alias or replaces its targets.
    pub fn add_alias(&self, pattern: &str, targets: &[String]) -> Result<(), OpsError> {
        if targets.is_empty() {
            return Err(OpsError::Invalid(
                "an alias needs at least one target".into(),
            ));
        }
        self.directory.add_alias(pattern, targets)?;
        tracing::info!(pattern, targets = ?targets, "alias set");
        Ok(())
    }

    pub fn delete_alias(&self, pattern: &str) -> Result<(), OpsError> {
        self.directory.delete_alias(pattern)?;
        tracing::info!(pattern, "alias deleted");
        Ok(())
    }

    pub fn list_aliases(&self) -> Result<Vec<Alias>, OpsError> {
        Ok(self.directory.list_aliases()?)
    }

    /// Makes a DKIM key for `domain` (refusing to replace one unless
    /// `force`) and returns the TXT record to publish.
    pub fn dkim_generate(
        &self,
        domain: &str,
        force: bool,
    ) -> Result<postamt_sender_auth::GeneratedKey, OpsError> {
        let key = postamt_sender_auth::generate_key(&self.config, domain, force)?;
        tracing::info!(domain, path = %key.path.display(), "DKIM key generated");
        Ok(key)
    }

    /// The MX, SPF, DKIM and DMARC records `domain` should publish.
    pub fn dns_records(
        &self,
        domain: &str,
    ) -> Result<Vec<postamt_sender_auth::DnsRecord>, OpsError> {
        Ok(postamt_sender_auth::dns_records(&self.config, domain)?)
    }

    /// Queue operations.
    pub fn queue(&self) -> QueueOps<'_> {
        QueueOps { admin: self }
    }
}

/// A password must be usable in every protocol: non-empty, no control characters.
fn check_password(p: &str) -> Result<(), OpsError> {
    if p.is_empty() {
        return Err(OpsError::Invalid("the password is empty".into()));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(OpsError::Invalid(
            "the password contains control characters".into(),
        ));
    }
    if p.len() > 1024 {
        return Err(OpsError::Invalid(
            "the password is longer than 1024 bytes".into(),
        ));
    }
    Ok(())
}
