//! What a POP3 session needs from the rest of the server: checking a login
//! and owning a locked mailbox. [`Backend`] and [`Mailbox`] keep the session
//! state machine testable with fakes; [`StoreBackend`] is the real thing over
//! the directory's `Authenticator` and the local store (blocking store calls
//! run on `spawn_blocking`).

use crate::Pop3Context;
use postamt_store::{MailboxLock, Maildir, MessageInfo, StoreError};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

/// The login was refused (unknown user and wrong password look the same).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authentication failed")]
pub struct AuthFailed;

/// Logins and mailboxes for one connection.
pub trait Backend: Send + Sync {
    type Mailbox: Mailbox;

    /// Checks `user`/`password`; returns the canonical account name.
    /// Failures come back only after the anti-guessing delay.
    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, AuthFailed>> + Send;

    /// Opens `user`'s mailbox, takes the exclusive POP3 lock (or
    /// `StoreError::InUse`) and lists its messages, oldest first. The lock
    /// is held until the returned mailbox is dropped.
    fn open_mailbox(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<(Self::Mailbox, Vec<MessageInfo>), StoreError>> + Send;
}

/// A mailbox this session holds the lock on.
pub trait Mailbox: Send + Sync {
    /// The stored bytes of one message.
    fn read(&self, msg: &MessageInfo) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
    /// Removes messages; one already gone is not an error.
    fn delete(&self, msgs: &[MessageInfo]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The real backend for one connection from `ip`.
pub struct StoreBackend {
    pub ctx: Arc<Pop3Context>,
    pub ip: IpAddr,
}

/// A mailbox of the local store with its POP3 lock.
pub struct StoreMailbox {
    maildir: Arc<Maildir>,
    _lock: MailboxLock,
}

/// Runs blocking store work off the async threads.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
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

impl Backend for StoreBackend {
    type Mailbox = StoreMailbox;

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

    fn open_mailbox(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<(StoreMailbox, Vec<MessageInfo>), StoreError>> + Send {
        let store = self.ctx.store.clone();
        let user = user.to_owned();
        blocking(move || {
            let maildir = store.open(&user)?;
            let lock = maildir.lock()?;
            let messages = maildir.messages()?;
            Ok((
                StoreMailbox {
                    maildir: Arc::new(maildir),
                    _lock: lock,
                },
                messages,
            ))
        })
    }
}

impl Mailbox for StoreMailbox {
    fn read(&self, msg: &MessageInfo) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send {
        let maildir = self.maildir.clone();
        let msg = msg.clone();
        blocking(move || maildir.read(&msg))
    }

    fn delete(&self, msgs: &[MessageInfo]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let maildir = self.maildir.clone();
        let msgs = msgs.to_vec();
        blocking(move || maildir.delete(&msgs))
    }
}
