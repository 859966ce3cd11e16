//! The session's view of storage: checking a recipient against the
//! directory, checking a login and who owns a sender address, the inbound
//! sender checks (SPF/DKIM/DMARC), and handing a message to the spool. A
//! trait, so that the
//! protocol state machine is tested with a fake; the real implementation
//! works over [`ReceiverContext`](crate::ReceiverContext).

use crate::ReceiverContext;
use crate::recipient::recipient_verdict;
use postamt_directory::auth::LoginFailed;
use postamt_directory::{Destination, LocalDomains, ResolveError, UserInfo};
use postamt_sender_auth::{Action, Verdict};
use postamt_spool::{NewMessage, QueueId};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use thiserror::Error;

/// What the directory says about a local recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    /// The address resolves to at least one destination (or is one of a
    /// list's service addresses, or a valid SRS bounce address).
    Accept,
    /// A mailing list that takes this post: anyone may post, the sender is
    /// a member, or the list is moderated (delivery holds the post).
    /// `max_message_size` in bytes, 0 = the server's limit: a bigger
    /// message is refused at the end of DATA (`552 5.3.4`).
    AcceptList { list: String, max_message_size: u64 },
    /// A members-only list and the sender is not a member: `550 5.7.1`.
    NotMember { list: String },
    /// Looks like one of our SRS addresses but is not valid (forged,
    /// damaged, expired): `550 5.1.1`. The reason is for the log.
    BadSrs(String),
    /// No such user or alias: `550 5.1.1`.
    Unknown,
    /// An alias loop or a chain too deep: `550 5.4.6`.
    Loop,
    /// The directory could not answer: `451 4.3.0`.
    TempFail(String),
}

/// Whether an authenticated user may use an address as envelope sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderVerdict {
    /// The address resolves to the user's own mailbox (the account itself,
    /// or an alias that includes it).
    Owned,
    /// Unknown, or someone else's: `553 5.7.1`.
    NotOwned,
    /// The directory could not answer: `451 4.3.0`.
    TempFail(String),
}

/// The inbound sender checks of one message and what to do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderCheck {
    pub verdict: Verdict,
    /// Per `[sender_auth] dmarc`.
    pub action: Action,
}

/// The spool could not take the message.
#[derive(Debug, Error)]
#[error("enqueue failed: {0}")]
pub struct EnqueueError(pub String);

/// Storage as seen by an SMTP session.
pub trait Backend: Send + Sync {
    /// Checks a recipient whose domain is ours (or the bare `postmaster`)
    /// for mail from `mail_from` (empty for the null sender; lists check
    /// who may post).
    fn check_recipient(
        &self,
        address: &str,
        mail_from: &str,
    ) -> impl Future<Output = RcptVerdict> + Send;

    /// Checks a login (SMTP AUTH). On failure returns only after the delay
    /// the client and the account have earned, the same for an unknown user
    /// and a wrong password.
    fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> impl Future<Output = Result<UserInfo, LoginFailed>> + Send;

    /// Whether `address` (at one of our domains) belongs to the account
    /// `user`: its resolution includes that user's mailbox.
    fn sender_owned_by(
        &self,
        address: &str,
        user: &str,
    ) -> impl Future<Output = SenderVerdict> + Send;

    /// Whether inbound sender checks are on (`[sender_auth] verify`).
    fn sender_checks_enabled(&self) -> bool {
        false
    }

    /// SPF, DKIM and DMARC for a message received on the MX port from
    /// `client_ip` after `HELO/EHLO helo` and `MAIL FROM:<mail_from>`
    /// (empty for the null sender); `message` is what the client sent,
    /// without our `Received:` header. Called only when
    /// [`sender_checks_enabled`](Self::sender_checks_enabled); `None` when
    /// the checks are off all the same.
    /// The session bounds the wait ([`CHECK_TIMEOUT`](crate::authres::CHECK_TIMEOUT)).
    fn check_sender(
        &self,
        message: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> impl Future<Output = Option<SenderCheck>> + Send {
        let _ = (message, client_ip, helo, mail_from);
        async { None }
    }

    /// A fresh queue id, made before the body arrives so that our
    /// `Received:` header can name it.
    fn new_queue_id(&self) -> QueueId;

    /// Stores the message durably; returns only once it is fsynced.
    fn enqueue(
        &self,
        msg: NewMessage,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<QueueId, EnqueueError>> + Send;
}

/// The real backend: the directory (blocking SQLite, so on the blocking
/// pool) and the spool.
pub struct ContextBackend {
    ctx: Arc<ReceiverContext>,
    local: Arc<LocalDomains>,
}

impl ContextBackend {
    pub fn new(ctx: Arc<ReceiverContext>) -> ContextBackend {
        let local = LocalDomains::from_config(&ctx.config);
        ContextBackend {
            ctx,
            local: Arc::new(local),
        }
    }
}

impl Backend for ContextBackend {
    async fn check_recipient(&self, address: &str, mail_from: &str) -> RcptVerdict {
        let directory = Arc::clone(&self.ctx.directory);
        let local = Arc::clone(&self.local);
        let srs = self.ctx.srs.clone();
        let address = address.to_string();
        let mail_from = mail_from.to_string();
        let now = chrono::Utc::now().timestamp();
        let result = tokio::task::spawn_blocking(move || {
            recipient_verdict(
                &directory,
                &local,
                srs.as_deref(),
                &address,
                &mail_from,
                now,
            )
        })
        .await;
        result.unwrap_or_else(|join| {
            RcptVerdict::TempFail(format!("directory lookup task failed: {join}"))
        })
    }

    async fn login(&self, user: &str, password: &str, ip: IpAddr) -> Result<UserInfo, LoginFailed> {
        self.ctx.auth.login(user, password, ip).await
    }

    async fn sender_owned_by(&self, address: &str, user: &str) -> SenderVerdict {
        let directory = Arc::clone(&self.ctx.directory);
        let local = Arc::clone(&self.local);
        let address = address.to_string();
        let result = tokio::task::spawn_blocking(move || directory.resolve(&address, &local)).await;
        match result {
            Ok(Ok(destinations)) => sender_verdict(&destinations, user),
            Ok(Err(ResolveError::Unknown | ResolveError::Loop(_) | ResolveError::TooDeep(_))) => {
                SenderVerdict::NotOwned
            }
            Ok(Err(ResolveError::Db(e))) => SenderVerdict::TempFail(e),
            Err(join) => SenderVerdict::TempFail(format!("directory lookup task failed: {join}")),
        }
    }

    fn sender_checks_enabled(&self) -> bool {
        self.ctx.sender_auth.is_some()
    }

    async fn check_sender(
        &self,
        message: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> Option<SenderCheck> {
        let verifier = self.ctx.sender_auth.as_ref()?;
        let verdict = verifier.check(message, client_ip, helo, mail_from).await;
        let action = verifier.action(&verdict);
        Some(SenderCheck { verdict, action })
    }

    fn new_queue_id(&self) -> QueueId {
        QueueId::generate()
    }

    async fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, EnqueueError> {
        self.ctx
            .spool
            .enqueue(msg, data)
            .await
            .map_err(|e| EnqueueError(e.to_string()))
    }
}

/// Owned when one of the destinations is `user`'s mailbox (user names
/// compare case-insensitively).
pub fn sender_verdict(destinations: &[Destination], user: &str) -> SenderVerdict {
    let owned = destinations.iter().any(|d| match d {
        Destination::Local { user: u } => u.eq_ignore_ascii_case(user),
        Destination::Remote { .. } => false,
    });
    if owned {
        SenderVerdict::Owned
    } else {
        SenderVerdict::NotOwned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(u: &str) -> Destination {
        Destination::Local { user: u.into() }
    }

    #[test]
    fn owned_only_through_the_users_mailbox() {
        assert_eq!(
            sender_verdict(&[local("Alice")], "alice"),
            SenderVerdict::Owned
        );
        assert_eq!(
            sender_verdict(&[local("bob"), local("alice")], "ALICE"),
            SenderVerdict::Owned
        );
        assert_eq!(
            sender_verdict(&[local("bob")], "alice"),
            SenderVerdict::NotOwned
        );
        assert_eq!(
            sender_verdict(
                &[Destination::Remote {
                    address: "alice@elsewhere.net".into()
                }],
                "alice"
            ),
            SenderVerdict::NotOwned
        );
        assert_eq!(sender_verdict(&[], "alice"), SenderVerdict::NotOwned);
    }
}
