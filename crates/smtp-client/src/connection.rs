//! The SMTP client session after opening: mail transactions with or
//! without PIPELINING, RSET and QUIT. The protocol decisions live in the
//! pure modules; this one sequences them over a [`Session`].

use crate::ehlo::Capabilities;
use crate::open::{Mode, Opened, open};
use crate::session::{Session, stage};
use crate::stuffing::DotStuffer;
use crate::tls::TlsInfo;
use crate::transaction::{self, PIPELINE_BATCH, is_success};
use crate::{
    ClientConfig, ClientError, Credentials, Envelope, RecipientResult, Reply, Timeouts, TlsPolicy,
};
use std::net::SocketAddr;
use std::time::Duration;

/// Message bytes encoded and written at a time during DATA.
const DATA_CHUNK: usize = 64 * 1024;
/// Longest wait for the QUIT reply and the close, whatever `command` says.
const QUIT_LIMIT: Duration = Duration::from_secs(30);

/// An open SMTP session, after EHLO (and STARTTLS/AUTH as configured).
#[derive(Debug)]
pub struct Connection {
    session: Session,
    caps: Capabilities,
    remote_name: String,
    tls: Option<TlsInfo>,
    timeouts: Timeouts,
    /// MAIL was accepted and the transaction not finished (lazy RSET).
    transaction_open: bool,
    /// An error left the session in an unknown state.
    poisoned: bool,
}

impl Connection {
    fn new(opened: Opened, timeouts: Timeouts) -> Connection {
        Connection {
            session: opened.session,
            caps: opened.caps,
            remote_name: opened.remote_name,
            tls: opened.tls,
            timeouts,
            transaction_open: false,
            poisoned: false,
        }
    }

    /// Connects to `addr`, reads the greeting, says EHLO (HELO fallback),
    /// does STARTTLS per `policy` (verifying `server_name` when required),
    /// and AUTH when `credentials` is given.
    ///
    /// Errors worth telling apart:
    /// - [`ClientError::Connect`]: TCP failed (a connect timeout carries
    ///   [`std::io::ErrorKind::TimedOut`]); try the next address.
    /// - [`ClientError::Reply`] at [`stage::GREETING`]: the host refuses
    ///   service (554 is permanent *for this host*); try the next MX.
    /// - [`ClientError::Tls`] (only with [`TlsPolicy::Opportunistic`]): the
    ///   STARTTLS handshake failed; the same host may be retried without
    ///   TLS through [`Connection::open_plaintext`].
    /// - [`ClientError::TlsRequired`]: the policy demands TLS that the server
    ///   cannot give (not offered, refused, handshake or certificate
    ///   verification failed, or AUTH credentials on an unencrypted session);
    ///   temporary.
    pub async fn open(
        addr: SocketAddr,
        server_name: &str,
        policy: TlsPolicy,
        credentials: Option<&Credentials>,
        config: &ClientConfig,
    ) -> Result<Connection, ClientError> {
        match open(addr, server_name, Mode::from(policy), credentials, config).await {
            // RFC 7435: opportunistic TLS that fails falls back to what the
            // peer could do without it, on a fresh connection. Credentials
            // never travel in plaintext, so then the error stands.
            Err(ClientError::Tls(why))
                if policy == TlsPolicy::Opportunistic && credentials.is_none() =>
            {
                tracing::warn!(%addr, server = server_name, error = %why, "opportunistic STARTTLS failed; retrying without TLS");
                Connection::open_plaintext(addr, server_name, config).await
            }
            other => other.map(|opened| Connection::new(opened, config.timeouts)),
        }
    }

    /// Like [`Connection::open`], but never starts TLS even when offered:
    /// what `open` falls back to after an opportunistic STARTTLS handshake
    /// failed. No AUTH (credentials need TLS).
    pub async fn open_plaintext(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Connection, ClientError> {
        let opened = open(addr, server_name, Mode::Plaintext, None, config).await?;
        Ok(Connection::new(opened, config.timeouts))
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.session.is_tls()
    }

    /// The TLS session's version and cipher, when encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The server's greeting/EHLO name, for logs.
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }

    /// The address connected to.
    pub fn peer(&self) -> SocketAddr {
        self.session.peer()
    }

    /// What the server announced in its (last) EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether another transaction may be tried on this connection (no
    /// earlier I/O, timeout or protocol error, no 421 from the server).
    pub fn is_usable(&self) -> bool {
        !self.poisoned && !self.session.closing
    }

    /// One transaction: MAIL, RCPT per recipient, DATA (or nothing when no
    /// recipient was accepted). Returns one result per envelope recipient, in
    /// order. The message is dot-stuffed and any bare CR or LF is sent as
    /// CRLF. After an error the connection should not be reused.
    ///
    /// An 8-bit message for a server without 8BITMIME is converted to 7 bit
    /// (quoted-printable, RFC 6152 §3) and the converted bytes are sent
    /// and announced in `SIZE=`. Before MAIL it refuses a message that
    /// needs SMTPUTF8 from a server without it ([`ClientError::Unsupported`]),
    /// an 8-bit one it cannot convert for a server without 8BITMIME
    /// ([`ClientError::Unconvertible`]) or one that exceeds the announced
    /// SIZE ([`ClientError::TooLarge`]); the connection stays usable then. With PIPELINING, MAIL and the RCPTs (in groups of at
    /// most 100) go in one write each; DATA is sent only after some RCPT
    /// was accepted. An unfinished transaction from an earlier call (e.g. no
    /// recipient accepted) is reset with RSET first. An address that could
    /// inject commands (CR, LF, `<`, `>`...) is never sent: a recipient gets
    /// a local `553 5.1.3` rejection, a sender fails the transaction with a
    /// local `553 5.1.7` reply (texts say "refused locally").
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Vec<RecipientResult>, ClientError> {
        self.ensure_usable()?;
        let result = self.transaction(envelope, message).await;
        if let Err(e) = &result {
            self.poison_after(e);
        }
        result
    }

    /// RSET, to reuse the connection for another transaction.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        self.ensure_usable()?;
        let result = self.rset().await;
        if let Err(e) = &result {
            self.poison_after(e);
        }
        result
    }

    /// QUIT and close (errors ignored). Waits at most `command` or 30 s.
    pub async fn quit(mut self) {
        let limit = self.timeouts.command.min(QUIT_LIMIT);
        if self.is_usable() {
            let _ = self.session.command("QUIT", limit, stage::QUIT).await;
        }
        self.session.shutdown(limit).await;
        tracing::debug!(peer = %self.session.peer(), remote = %self.remote_name, "SMTP session closed");
    }

    fn ensure_usable(&self) -> Result<(), ClientError> {
        if self.is_usable() {
            Ok(())
        } else {
            Err(ClientError::Protocol(
                "the connection is unusable after an earlier error".into(),
            ))
        }
    }

    /// Marks the session unusable after errors that leave it in an unknown
    /// state (everything but replies and refusals before sending).
    fn poison_after(&mut self, e: &ClientError) {
        match e {
            ClientError::Reply { .. }
            | ClientError::Unsupported(_)
            | ClientError::Unconvertible(_)
            | ClientError::TooLarge { .. } => {}
            _ => self.poisoned = true,
        }
    }

    async fn rset(&mut self) -> Result<(), ClientError> {
        let reply = self
            .session
            .command("RSET", self.timeouts.command, stage::RSET)
            .await?;
        if !is_success(&reply) {
            return Err(ClientError::Reply {
                stage: stage::RSET,
                reply,
            });
        }
        self.transaction_open = false;
        Ok(())
    }

    async fn transaction(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Vec<RecipientResult>, ClientError> {
        if envelope.recipients.is_empty() {
            return Ok(Vec::new());
        }
        let plan = transaction::plan(envelope, message, &self.caps)?;
        if plan.downgraded {
            tracing::info!(
                peer = %self.session.peer(),
                remote = %self.remote_name,
                size = plan.size,
                "8-bit message converted to quoted-printable: the server does not announce 8BITMIME"
            );
        }
        if plan.rcpts.iter().all(|r| r.is_err()) {
            // Nothing to send: every recipient was refused locally.
            let refusals = plan.rcpts.into_iter().filter_map(|r| r.err());
            return Ok(refusals.map(RecipientResult::Rejected).collect());
        }
        if self.transaction_open {
            self.rset().await?;
        }
        let rcpt_replies = if self.caps.pipelining {
            self.mail_rcpt_pipelined(&plan).await?
        } else {
            self.mail_rcpt_sequential(&plan).await?
        };
        if !rcpt_replies.iter().any(is_success) {
            return Ok(transaction::results(rcpt_replies, None));
        }
        let t = self.timeouts;
        let data = self
            .session
            .command("DATA", t.data_init, stage::DATA)
            .await?;
        if data.code != 354 {
            if data.is_positive() {
                return Err(ClientError::Protocol(format!(
                    "unexpected reply to DATA: {data}"
                )));
            }
            return Ok(transaction::results(rcpt_replies, Some(&data)));
        }
        self.send_body(&plan.message).await?;
        let end = self.session.read_reply(t.data_end, stage::DATA_END).await?;
        self.transaction_open = false;
        Ok(transaction::results(rcpt_replies, Some(&end)))
    }

    /// MAIL and RCPTs one by one; the RCPT replies (local refusals kept).
    async fn mail_rcpt_sequential(
        &mut self,
        plan: &transaction::Plan<'_>,
    ) -> Result<Vec<Reply>, ClientError> {
        let limit = self.timeouts.command;
        let mail = self.session.command(&plan.mail, limit, stage::MAIL).await?;
        if !is_success(&mail) {
            return Err(ClientError::Reply {
                stage: stage::MAIL,
                reply: mail,
            });
        }
        self.transaction_open = true;
        let mut replies = Vec::with_capacity(plan.rcpts.len());
        for rcpt in &plan.rcpts {
            match rcpt {
                Ok(cmd) => replies.push(self.session.command(cmd, limit, stage::RCPT).await?),
                Err(local) => replies.push(local.clone()),
            }
        }
        Ok(replies)
    }

    /// MAIL and RCPTs pipelined (RFC 2920): MAIL with the first group of
    /// RCPTs in one write, further groups in one write each, replies read in
    /// order after each write.
    async fn mail_rcpt_pipelined(
        &mut self,
        plan: &transaction::Plan<'_>,
    ) -> Result<Vec<Reply>, ClientError> {
        let limit = self.timeouts.command;
        let mut replies = Vec::with_capacity(plan.rcpts.len());
        for (i, group) in plan.rcpts.chunks(PIPELINE_BATCH).enumerate() {
            let first = i == 0;
            let mut out = String::new();
            if first {
                out.push_str(&plan.mail);
                out.push_str("\r\n");
            }
            for cmd in group.iter().filter_map(|r| r.as_ref().ok()) {
                out.push_str(cmd);
                out.push_str("\r\n");
            }
            tracing::debug!(peer = %self.session.peer(), commands = %out.trim_end().replace("\r\n", " | "), "SMTP pipelined commands");
            let write_stage = if first { stage::MAIL } else { stage::RCPT };
            self.session
                .write(out.as_bytes(), limit, write_stage)
                .await?;
            if first {
                let mail = self.session.read_reply(limit, stage::MAIL).await?;
                if !is_success(&mail) {
                    // Read the RCPT replies so the session stays in step.
                    for _ in group.iter().filter(|r| r.is_ok()) {
                        if self.session.read_reply(limit, stage::RCPT).await.is_err() {
                            self.poisoned = true;
                            break;
                        }
                    }
                    return Err(ClientError::Reply {
                        stage: stage::MAIL,
                        reply: mail,
                    });
                }
                self.transaction_open = true;
            }
            for rcpt in group {
                match rcpt {
                    Ok(_) => replies.push(self.session.read_reply(limit, stage::RCPT).await?),
                    Err(local) => replies.push(local.clone()),
                }
            }
        }
        Ok(replies)
    }

    /// Streams the message, dot-stuffed and CRLF-normalised, and the end mark.
    async fn send_body(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let limit = self.timeouts.data_block;
        let mut stuffer = DotStuffer::new();
        let mut out = Vec::with_capacity(DATA_CHUNK + DATA_CHUNK / 4);
        for chunk in message.chunks(DATA_CHUNK) {
            out.clear();
            stuffer.encode(chunk, &mut out);
            self.session.write(&out, limit, stage::DATA_BLOCK).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.session.write(&out, limit, stage::DATA_BLOCK).await
    }
}
