//! The outbound SMTP client (RFC 5321) the delivery agent uses to hand mail
//! to remote MX hosts and to the smarthost: EHLO with HELO fallback,
//! STARTTLS by policy, AUTH for smarthosts, PIPELINING, SIZE/8BITMIME/
//! SMTPUTF8 checks, per-recipient results, bounded replies and timeouts.
//!
//! SKELETON: signatures are the contract other crates code against; the
//! bodies are being written.

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
    /// plaintext when not offered or when the handshake fails on a fresh
    /// connection.
    Opportunistic,
    /// STARTTLS required and the certificate verified for the host name;
    /// otherwise a temporary failure.
    RequireStartTls,
    /// TLS from the first byte (port 465), verified.
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
    #[error("message too large for the server ({size} > {limit} bytes)")]
    TooLarge { size: u64, limit: u64 },
}

impl ClientError {
    /// Whether retrying later cannot help (5xx replies, unsupported
    /// extensions the message needs, too large).
    pub fn is_permanent(&self) -> bool {
        todo!()
    }
}

/// An open SMTP session, after EHLO (and STARTTLS/AUTH as configured).
pub struct Connection {}

impl Connection {
    /// Connects to `addr`, reads the greeting, says EHLO (HELO fallback),
    /// does STARTTLS per `policy` (verifying `server_name` when required),
    /// and AUTH when `credentials` is given.
    pub async fn open(
        addr: SocketAddr,
        server_name: &str,
        policy: TlsPolicy,
        credentials: Option<&Credentials>,
        config: &ClientConfig,
    ) -> Result<Connection, ClientError> {
        let _ = (addr, server_name, policy, credentials, config);
        todo!()
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        todo!()
    }

    /// The server's greeting/EHLO name, for logs.
    pub fn remote_name(&self) -> &str {
        todo!()
    }

    /// One transaction: MAIL, RCPT per recipient, DATA (or nothing when no
    /// recipient was accepted). Returns one result per envelope recipient, in
    /// order. The message is dot-stuffed and any bare CR or LF is sent as
    /// CRLF. After an error the connection should not be reused.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Vec<RecipientResult>, ClientError> {
        let _ = (envelope, message);
        todo!()
    }

    /// RSET, to reuse the connection for another transaction.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        todo!()
    }

    /// QUIT and close (errors ignored).
    pub async fn quit(self) {
        todo!()
    }
}
