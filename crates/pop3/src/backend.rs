//! What a POP3 session needs from the rest of the server: checking a login
//! and owning a locked mailbox. [`Backend`] and [`Mailbox`] keep the session
//! state machine testable with fakes; [`StoreBackend`] is the real thing over
//! the directory's `Authenticator` and the local store (blocking store calls
//! run on `spawn_blocking`). A retrieval reads the next few small messages
//! in the same blocking trip ([`Mailbox::read_ahead`]): with one message
//! per command, the hop to a blocking thread and back costs more than
//! reading a small message.

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

/// Bounds of one [`Mailbox::read_ahead`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAhead {
    /// Most messages read ahead.
    pub max_messages: usize,
    /// Largest message read ahead; a larger one ends the read-ahead.
    pub max_message_size: u64,
    /// Most bytes read ahead in all.
    pub max_bytes: u64,
}

impl ReadAhead {
    /// What a session uses: up to 32 messages of at most 64 KiB, 128 KiB
    /// in all.
    pub const DEFAULT: ReadAhead = ReadAhead {
        max_messages: 32,
        max_message_size: 64 * 1024,
        max_bytes: 128 * 1024,
    };

    /// How many of `next` (a prefix) to read ahead, by their listed sizes.
    pub fn plan(&self, next: &[MessageInfo]) -> usize {
        let mut total = 0u64;
        next.iter()
            .take(self.max_messages)
            .take_while(|m| {
                total = total.saturating_add(m.size);
                m.size <= self.max_message_size && total <= self.max_bytes
            })
            .count()
    }
}

/// [`Mailbox::read_ahead`]'s answer: the message asked for, and the data
/// of a prefix of the messages that were expected next.
pub type ReadAheadResult = (Result<Vec<u8>, StoreError>, Vec<Vec<u8>>);

/// A mailbox this session holds the lock on.
pub trait Mailbox: Send + Sync {
    /// The stored bytes of one message.
    fn read(&self, msg: &MessageInfo) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Reads `first` like [`Mailbox::read`] and, since a client that
    /// retrieves one message usually asks for the following ones next, as
    /// many of `next` as `ahead` allows ([`ReadAhead::plan`]) in the same
    /// trip to the store. Returns `first`'s result and the data of
    /// `next[..k]`, in order. A message ahead that cannot be read (or turns
    /// out larger than its bounds) ends the prefix without an error: it is
    /// read again, and its error reported, when it is asked for. Nothing is
    /// read ahead when `first` fails. The default reads `first` only.
    fn read_ahead(
        &self,
        first: &MessageInfo,
        next: &[MessageInfo],
        ahead: ReadAhead,
    ) -> impl Future<Output = ReadAheadResult> + Send {
        let _ = (next, ahead);
        let read = self.read(first);
        async move { (read.await, Vec::new()) }
    }

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

    fn read_ahead(
        &self,
        first: &MessageInfo,
        next: &[MessageInfo],
        ahead: ReadAhead,
    ) -> impl Future<Output = ReadAheadResult> + Send {
        let maildir = self.maildir.clone();
        let first = first.clone();
        let next = next[..ahead.plan(next)].to_vec();
        let work = blocking(move || {
            let data = match maildir.read(&first) {
                Ok(data) => data,
                Err(e) => return Ok((Err(e), Vec::new())),
            };
            let mut extra = Vec::with_capacity(next.len());
            let mut left = ahead.max_bytes;
            for msg in &next {
                let limit = left.min(ahead.max_message_size);
                // Moved, gone, unreadable or larger than listed: read (and
                // any error reported) when asked for.
                let Ok(Some(d)) = maildir.read_limited(msg, limit) else {
                    break;
                };
                left = left.saturating_sub(d.len() as u64);
                extra.push(d);
            }
            Ok((Ok(data), extra))
        });
        async move {
            match work.await {
                Ok(answer) => answer,
                Err(e) => (Err(e), Vec::new()),
            }
        }
    }

    fn delete(&self, msgs: &[MessageInfo]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let maildir = self.maildir.clone();
        let msgs = msgs.to_vec();
        blocking(move || maildir.delete(&msgs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postamt_store::MailStore;
    use std::path::PathBuf;

    fn info(size: u64) -> MessageInfo {
        MessageInfo {
            uid: format!("u{size}"),
            size,
            path: PathBuf::from("/x/new/m"),
            queue_id: None,
        }
    }

    #[test]
    fn plan_keeps_to_every_bound() {
        let ahead = ReadAhead {
            max_messages: 3,
            max_message_size: 100,
            max_bytes: 250,
        };
        let small: Vec<MessageInfo> = (0..5).map(|_| info(10)).collect();
        assert_eq!(ahead.plan(&small), 3, "message count");
        assert_eq!(ahead.plan(&[info(100), info(100), info(100)]), 2, "bytes");
        assert_eq!(ahead.plan(&[info(10), info(101), info(10)]), 1, "size");
        assert_eq!(ahead.plan(&[]), 0);
        assert_eq!(ahead.plan(&[info(u64::MAX), info(1)]), 0);
        let none = ReadAhead {
            max_messages: 0,
            ..ReadAhead::DEFAULT
        };
        assert_eq!(none.plan(&small), 0);
    }

    fn mailbox(dir: &std::path::Path, bodies: &[&[u8]]) -> (StoreMailbox, Vec<MessageInfo>) {
        let store = MailStore::new(&format!("{}/%u", dir.display()), "example.org", true);
        for body in bodies {
            store.deliver("alice", body, "0a1b2c3d").expect("deliver");
        }
        let maildir = store.open("alice").expect("open");
        let lock = maildir.lock().expect("lock");
        let msgs = maildir.messages().expect("list");
        assert_eq!(msgs.len(), bodies.len());
        let mb = StoreMailbox {
            maildir: Arc::new(maildir),
            _lock: lock,
        };
        (mb, msgs)
    }

    #[tokio::test]
    async fn store_read_ahead_stops_at_a_large_or_missing_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let large = vec![b'x'; 70 * 1024];
        let bodies: [&[u8]; 5] = [b"m0\r\n", b"m1\r\n", &large, b"m3\r\n", b"m4\r\n"];
        let (mb, msgs) = mailbox(dir.path(), &bodies);

        let (first, extra) = mb
            .read_ahead(&msgs[0], &msgs[1..], ReadAhead::DEFAULT)
            .await;
        assert_eq!(first.expect("first"), b"m0\r\n");
        assert_eq!(extra, vec![b"m1\r\n".to_vec()], "stops before 70 KiB");

        let (first, extra) = mb
            .read_ahead(&msgs[2], &msgs[3..], ReadAhead::DEFAULT)
            .await;
        assert_eq!(first.expect("a large first message is read"), large);
        assert_eq!(extra, vec![b"m3\r\n".to_vec(), b"m4\r\n".to_vec()]);

        std::fs::remove_file(&msgs[4].path).expect("remove m4");
        let (first, extra) = mb
            .read_ahead(&msgs[3], &msgs[4..], ReadAhead::DEFAULT)
            .await;
        assert_eq!(first.expect("m3"), b"m3\r\n");
        assert!(extra.is_empty(), "a missing message ends the read-ahead");

        let (first, extra) = mb
            .read_ahead(&msgs[4], &msgs[..4], ReadAhead::DEFAULT)
            .await;
        assert!(matches!(first, Err(StoreError::Gone(_))), "{first:?}");
        assert!(extra.is_empty(), "nothing read ahead after a failure");
    }

    #[tokio::test]
    async fn store_read_ahead_keeps_to_the_byte_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = vec![b'y'; 1000];
        let (mb, msgs) = mailbox(dir.path(), &[b"m0", &body, &body, &body]);
        let ahead = ReadAhead {
            max_messages: 10,
            max_message_size: 5000,
            max_bytes: 2500,
        };
        let (first, extra) = mb.read_ahead(&msgs[0], &msgs[1..], ahead).await;
        assert_eq!(first.expect("m0"), b"m0");
        assert_eq!(extra.len(), 2);
        assert!(extra.iter().all(|d| *d == body));
    }
}
