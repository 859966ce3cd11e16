//! What an IMAP session needs from the rest of the server: checking a
//! login, and a user's folder tree with its open folders. The traits keep
//! the session state machine testable with an in-memory fake; the real
//! implementations are the directory's `Authenticator` and the store's
//! `Account`/`Folder` (whose blocking calls the session runs on
//! `spawn_blocking`, see [`blocking`]).

use crate::ImapContext;
use postamt_store::{
    Account, ChangeSignal, Changes, CopyUids, FlagOp, Flags, Folder, FolderInfo, FolderStatus,
    MessageRecord, StoreError, StoreOutcome,
};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

/// The login was refused (unknown user and wrong password look the same).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authentication failed")]
pub struct AuthFailed;

/// Logins and accounts for one connection.
pub trait Backend: Send + Sync + 'static {
    type Account: MailAccount;

    /// Checks `user`/`password`; returns the canonical account name.
    /// Failures come back only after the anti-guessing delay.
    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, AuthFailed>> + Send;

    /// The folder tree of `user` (created with the special-use folders
    /// on first use when automatic creation is on).
    fn account(&self, user: &str)
    -> impl Future<Output = Result<Self::Account, StoreError>> + Send;
}

/// A user's folder tree (blocking calls). Names are UTF-8 IMAP names with
/// `/` as delimiter; see `postamt_store::Account`.
pub trait MailAccount: Send + Sync + 'static {
    type Folder: MailFolder;

    fn list(&self) -> Result<Vec<FolderInfo>, StoreError>;
    fn create(&self, name: &str) -> Result<(), StoreError>;
    fn delete(&self, name: &str) -> Result<(), StoreError>;
    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError>;
    fn subscribe(&self, name: &str, on: bool) -> Result<(), StoreError>;
    fn status(&self, name: &str) -> Result<FolderStatus, StoreError>;
    fn open(&self, name: &str) -> Result<Self::Folder, StoreError>;
    fn append(
        &self,
        name: &str,
        data: &[u8],
        flags: &Flags,
        internal_date: Option<i64>,
    ) -> Result<(u32, u32), StoreError>;
    fn signal(&self, name: &str) -> Result<Arc<ChangeSignal>, StoreError>;
}

/// An open folder (blocking calls); see `postamt_store::Folder`.
pub trait MailFolder: Send + 'static {
    fn uid_validity(&self) -> u32;
    fn uid_next(&self) -> u32;
    fn highest_modseq(&self) -> u64;
    fn first_recent_uid(&self) -> u32;
    fn messages(&self) -> &[MessageRecord];
    fn refresh(&mut self) -> Result<Changes, StoreError>;
    fn read(&self, uid: u32) -> Result<Vec<u8>, StoreError>;
    fn store_flags(
        &mut self,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StoreError>;
    fn expunge(&mut self, only: Option<&[u32]>) -> Result<Vec<u32>, StoreError>;
    fn copy(&self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError>;
    fn move_to(&mut self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError>;
    fn vanished_since(&self, modseq: u64) -> Result<Vec<u32>, StoreError>;

    /// The record of `uid` (binary search in [`MailFolder::messages`]).
    fn record(&self, uid: u32) -> Option<&MessageRecord> {
        let msgs = self.messages();
        msgs.binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &msgs[i])
    }
}

impl MailAccount for Account {
    type Folder = Folder;

    fn list(&self) -> Result<Vec<FolderInfo>, StoreError> {
        Account::list(self)
    }
    fn create(&self, name: &str) -> Result<(), StoreError> {
        Account::create(self, name)
    }
    fn delete(&self, name: &str) -> Result<(), StoreError> {
        Account::delete(self, name)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        Account::rename(self, from, to)
    }
    fn subscribe(&self, name: &str, on: bool) -> Result<(), StoreError> {
        Account::subscribe(self, name, on)
    }
    fn status(&self, name: &str) -> Result<FolderStatus, StoreError> {
        Account::status(self, name)
    }
    fn open(&self, name: &str) -> Result<Folder, StoreError> {
        Account::open(self, name)
    }
    fn append(
        &self,
        name: &str,
        data: &[u8],
        flags: &Flags,
        internal_date: Option<i64>,
    ) -> Result<(u32, u32), StoreError> {
        Account::append(self, name, data, flags, internal_date)
    }
    fn signal(&self, name: &str) -> Result<Arc<ChangeSignal>, StoreError> {
        Account::signal(self, name)
    }
}

impl MailFolder for Folder {
    fn uid_validity(&self) -> u32 {
        Folder::uid_validity(self)
    }
    fn uid_next(&self) -> u32 {
        Folder::uid_next(self)
    }
    fn highest_modseq(&self) -> u64 {
        Folder::highest_modseq(self)
    }
    fn first_recent_uid(&self) -> u32 {
        Folder::first_recent_uid(self)
    }
    fn messages(&self) -> &[MessageRecord] {
        Folder::messages(self)
    }
    fn refresh(&mut self) -> Result<Changes, StoreError> {
        Folder::refresh(self)
    }
    fn read(&self, uid: u32) -> Result<Vec<u8>, StoreError> {
        Folder::read(self, uid)
    }
    fn store_flags(
        &mut self,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StoreError> {
        Folder::store_flags(self, uids, op, flags, unchanged_since)
    }
    fn expunge(&mut self, only: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        Folder::expunge(self, only)
    }
    fn copy(&self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError> {
        Folder::copy(self, uids, dest)
    }
    fn move_to(&mut self, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError> {
        Folder::move_to(self, uids, dest)
    }
    fn vanished_since(&self, modseq: u64) -> Result<Vec<u32>, StoreError> {
        Folder::vanished_since(self, modseq)
    }
}

/// Runs blocking store work off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Io(std::io::Error::other(format!(
            "store task failed: {e}"
        )))),
    }
}

/// The real backend for one connection from `ip`.
pub struct StoreBackend {
    pub ctx: Arc<ImapContext>,
    pub ip: IpAddr,
}

impl Backend for StoreBackend {
    type Account = Account;

    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, AuthFailed>> + Send {
        let auth = self.ctx.auth.clone();
        let (user, password, ip) = (user.to_owned(), password.to_owned(), self.ip);
        async move {
            auth.login(&user, &password, ip)
                .await
                .map(|info| info.name)
                .map_err(|_| AuthFailed)
        }
    }

    fn account(&self, user: &str) -> impl Future<Output = Result<Account, StoreError>> + Send {
        let store = self.ctx.store.clone();
        let user = user.to_owned();
        blocking(move || store.account(&user))
    }
}
