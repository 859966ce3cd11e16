//! The outbound SMTP client (RFC 5321) the delivery agent uses to hand mail
//! to remote MX hosts and to the smarthost: EHLO with HELO fallback,
//! STARTTLS by policy, AUTH for smarthosts, PIPELINING, SIZE/8BITMIME/
//! SMTPUTF8 checks, per-recipient results, bounded replies and timeouts.
//!
//! Modules: [`reply`] (bounded reply reader), [`ehlo`] (capabilities),
//! [`stuffing`] (DATA encoding), [`downgrade`] (8-bit messages converted to
//! 7 bit for servers without 8BITMIME), `transaction` (checks, commands, results),
//! `auth` (PLAIN/LOGIN), `tls` (opportunistic verifier), `stream`/`session`
//! (I/O with timeouts), `open` (connect, greeting, EHLO, TLS, AUTH) and
//! `connection` (transactions, RSET, QUIT).

mod auth;
mod connection;
pub mod downgrade;
pub mod ehlo;
mod open;
pub mod reply;
mod session;
mod stream;
pub mod stuffing;
mod tls;
mod transaction;

pub use connection::Connection;
pub use ehlo::Capabilities;
pub use session::stage;
pub use tls::TlsInfo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// An SMTP reply: code, enhanced status (if any) and text lines joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// e.g. `5.1.1`; `None` when the server sent no enhanced status.
    pub enhanced: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text.replace('\n', " ")),
            None => write!(f, "{} {}", self.code, self.text.replace('\n', " ")),
        }
    }
}

/// What to do about TLS on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered (certificate not verified, as RFC 7435 allows);
    /// plaintext when not offered. When the handshake fails, `open` returns
    /// [`ClientError::Tls`]; retry on a fresh connection without TLS with
    /// [`Connection::open_plaintext`].
    Opportunistic,
    /// STARTTLS required and the certificate verified for the host name;
    /// otherwise a temporary failure.
    RequireStartTls,
    /// TLS from the first byte (port 465), verified; failures are
    /// [`ClientError::TlsRequired`].
    Implicit,
}

/// Timeouts per stage (RFC 5321 §4.5.3.2 defaults).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub greeting: Duration,
    pub command: Duration,
    pub data_init: Duration,
    pub data_block: Duration,
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
        }
    }
}

/// Credentials for AUTH at a smarthost (PLAIN or LOGIN, only over TLS).
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// How the client behaves; shared by all connections.
#[derive(Clone)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    pub timeouts: Timeouts,
    /// Trust roots for verified TLS (system roots plus `tls_ca_file`).
    pub verified_tls: Arc<rustls::ClientConfig>,
}

/// One message's envelope for a transaction.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Empty for the null sender.
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// The message has 8-bit content (ask for BODY=8BITMIME).
    pub eight_bit: bool,
    /// The envelope or headers need SMTPUTF8.
    pub smtputf8: bool,
}

/// What happened to one recipient in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientResult {
    /// The server took the message for this recipient (the DATA reply).
    Accepted(Reply),
    /// Refused at RCPT, or the whole transaction failed for it.
    Rejected(Reply),
}

/// Why a connection or transaction failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("timeout while {0}")]
    Timeout(&'static str),
    #[error("connection lost while {0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("server said at {stage}: {reply}")]
    Reply { stage: &'static str, reply: Reply },
    #[error("TLS required but {0}")]
    TlsRequired(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("the server does not support {0}, which this message needs")]
    Unsupported(&'static str),
    /// The message has 8-bit content, the server lacks 8BITMIME and the
    /// message cannot be converted to 7 bit (RFC 6152 §3): not delivered.
    #[error(
        "the server does not support 8BITMIME and the message cannot be converted to 7 bit: {0}"
    )]
    Unconvertible(downgrade::Unconvertible),
    #[error("message too large for the server ({size} > {limit} bytes)")]
    TooLarge { size: u64, limit: u64 },
}

impl ClientError {
    /// Whether retrying later cannot help (5xx replies, unsupported
    /// extensions the message needs, an 8-bit message that cannot be
    /// converted, too large).
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Reply { reply, .. } => reply.is_permanent(),
            ClientError::Unsupported(_)
            | ClientError::Unconvertible(_)
            | ClientError::TooLarge { .. } => true,
            ClientError::Connect(..)
            | ClientError::Timeout(_)
            | ClientError::Io(..)
            | ClientError::Protocol(_)
            | ClientError::TlsRequired(_)
            | ClientError::Tls(_) => false,
        }
    }

    /// The server's reply, when the error is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Reply { reply, .. } => Some(reply),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Reply {
        Reply {
            code,
            enhanced: None,
            text: String::new(),
        }
    }

    #[test]
    fn permanence() {
        let r = |code| ClientError::Reply {
            stage: stage::RCPT,
            reply: reply(code),
        };
        assert!(r(550).is_permanent());
        assert!(r(554).is_permanent());
        assert!(!r(451).is_permanent());
        assert!(!r(421).is_permanent());
        assert!(ClientError::Unsupported("SMTPUTF8").is_permanent());
        assert!(ClientError::TooLarge { size: 2, limit: 1 }.is_permanent());
        assert!(ClientError::Unconvertible(downgrade::Unconvertible::Binary).is_permanent());
        assert!(!ClientError::Timeout(stage::DATA_END).is_permanent());
        assert!(!ClientError::Protocol("x".into()).is_permanent());
        assert!(!ClientError::TlsRequired("x".into()).is_permanent());
        assert!(!ClientError::Tls("x".into()).is_permanent());
        let io = std::io::Error::other("x");
        assert!(!ClientError::Io(stage::DATA, io).is_permanent());
        let addr = SocketAddr::from(([127, 0, 0, 1], 25));
        let io = std::io::Error::other("x");
        assert!(!ClientError::Connect(addr, io).is_permanent());
    }

    #[test]
    fn reply_display() {
        let r = Reply {
            code: 550,
            enhanced: Some("5.1.1".into()),
            text: "no such\nuser".into(),
        };
        assert_eq!(r.to_string(), "550 5.1.1 no such user");
        assert_eq!(
            ClientError::Reply {
                stage: stage::RCPT,
                reply: r.clone()
            }
            .reply(),
            Some(&r)
        );
    }
}
