//! The POP3 session state machine (RFC 1939 AUTHORIZATION -> TRANSACTION ->
//! UPDATE, with RFC 2595 STLS in AUTHORIZATION): one command line in, one
//! [`Reply`] out. No sockets here; logins and mailbox access go through the
//! [`Backend`] and [`Mailbox`] traits, and the TLS handshake after an accepted
//! `STLS` is the connection's job ([`Session::wants_tls`],
//! [`Session::tls_established`]). `RETR`/`TOP` read the next few small
//! messages ahead in the same store trip (bounded by [`ReadAhead::DEFAULT`],
//! used at most once each and for [`READ_AHEAD_MAX_AGE`] at most).

use crate::backend::{Backend, Mailbox, ReadAhead};
use crate::capability::{SessionProps, capabilities, sasl_mechanisms};
use crate::command::{Command, parse};
use crate::dot_stuff::top_end;
use crate::response::Reply;
use crate::sasl::{PlainError, decode_plain};
use postamt_store::{MessageInfo, StoreError};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Longest ordinary command line, in octets without the CRLF. `AUTH` lines
/// and SASL continuation lines may be as long as the connection's line limit.
pub const MAX_COMMAND_LINE: usize = 1024;

pub const GREETING: &str = "Postamt POP3 server ready";
const SIGN_OFF: &str = "Postamt POP3 server signing off";

pub const MSG_PLAINTEXT_DISALLOWED: &str = "[AUTH] Plaintext authentication disallowed without TLS";
pub const MSG_AUTH_FAILED: &str = "[AUTH] Authentication failed";
pub const MSG_IN_USE: &str = "[IN-USE] Mailbox is locked by another session";
pub const MSG_NO_SUCH_MESSAGE: &str = "no such message";
pub const MSG_TOO_MANY_ERRORS: &str = "too many errors";
pub const MSG_BEGIN_TLS: &str = "Begin TLS negotiation";
pub const MSG_TLS_ACTIVE: &str = "TLS is already active";
pub const MSG_STLS_UNAVAILABLE: &str = "STLS is not available";
pub const MSG_STLS_AFTER_LOGIN: &str = "STLS is not permitted after login";

/// A client mistake: the text after `-ERR`, counted towards `max_errors`.
struct Fail(String);

impl Fail {
    fn new(text: impl Into<String>) -> Fail {
        Fail(text.into())
    }
}

type Step = Result<Reply, Fail>;

/// One message as this session sees it (numbers are fixed at login).
struct Slot {
    info: MessageInfo,
    deleted: bool,
    retrieved: bool,
}

/// Data read ahead is used only this long after it was read, so that a
/// message removed behind the session's back is not served for long.
pub const READ_AHEAD_MAX_AGE: Duration = Duration::from_secs(2);

/// The TRANSACTION state: the locked mailbox and its snapshot.
struct Transaction<M> {
    user: String,
    mailbox: M,
    slots: Vec<Slot>,
    /// Messages read ahead for the `RETR`/`TOP` expected next: slot index
    /// and data, indices ascending; bounded by [`ReadAhead::DEFAULT`].
    ahead: VecDeque<(usize, Vec<u8>)>,
    /// When `ahead` was read.
    ahead_read: Option<Instant>,
}

enum State<M> {
    Authorization {
        user: Option<String>,
    },
    /// `AUTH PLAIN` sent without an initial response; the next line is the
    /// client's base64 response (or `*`).
    SaslPlain,
    /// `STLS` was accepted: the connection must now run the TLS handshake
    /// and report it with [`Session::tls_established`]. No command is
    /// handled in this state.
    StartTls,
    Transaction(Transaction<M>),
    Closed,
}

/// One POP3 session.
pub struct Session<B: Backend> {
    backend: B,
    props: SessionProps,
    peer: String,
    max_errors: u32,
    errors: u32,
    state: State<B::Mailbox>,
}

impl<B: Backend> Session<B> {
    /// A new session in AUTHORIZATION. `peer` is only used in logs;
    /// `max_errors` bad commands close the session (at least 1).
    pub fn new(backend: B, props: SessionProps, peer: impl Into<String>, max_errors: u32) -> Self {
        Session {
            backend,
            props,
            peer: peer.into(),
            max_errors: max_errors.max(1),
            errors: 0,
            state: State::Authorization { user: None },
        }
    }

    /// The greeting sent when the connection opens.
    pub fn greeting(&self) -> Reply {
        Reply::ok(GREETING)
    }

    /// Logged in (TRANSACTION state).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// The session is over; the connection should close after the reply.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The next line is a SASL continuation, not a command.
    pub fn awaiting_sasl(&self) -> bool {
        matches!(self.state, State::SaslPlain)
    }

    /// `STLS` was accepted: the connection must discard any input it has
    /// buffered, run the TLS handshake, then call
    /// [`Session::tls_established`] (or end the session if it fails).
    pub fn wants_tls(&self) -> bool {
        matches!(self.state, State::StartTls)
    }

    /// The TLS handshake after `STLS` succeeded: the session continues in a
    /// fresh AUTHORIZATION state (anything learnt before TLS is forgotten,
    /// RFC 2595 §4) with `secure` set. Returns false, changing nothing, when
    /// no `STLS` was pending.
    pub fn tls_established(&mut self) -> bool {
        if !self.wants_tls() {
            return false;
        }
        self.state = State::Authorization { user: None };
        self.props.secure = true;
        true
    }

    /// The connection cannot run a TLS handshake: `STLS` is neither
    /// advertised nor accepted from now on.
    pub fn withdraw_tls(&mut self) {
        self.props.tls_available = false;
    }

    /// The peer, as given for logs.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    pub fn props(&self) -> &SessionProps {
        &self.props
    }

    /// Bad commands so far.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Ends the session without UPDATE (connection lost, timeout, shutdown):
    /// nothing is deleted and the mailbox lock is released.
    pub fn abort(&mut self, reason: &str) {
        if let State::Transaction(tx) = std::mem::replace(&mut self.state, State::Closed) {
            info!(
                user = %tx.user,
                peer = %self.peer,
                retrieved = tx.retrieved(),
                deleted = 0,
                reason,
                "logout without QUIT, no messages deleted"
            );
        }
    }

    /// Handles one line from the client (without its line end).
    pub async fn handle_line(&mut self, line: &[u8]) -> Reply {
        let step = match self.state {
            State::Closed => return Reply::err("session is closed"),
            // The connection never feeds lines here; plaintext pipelined
            // after STLS must not be executed, so refuse without counting.
            State::StartTls => return Reply::err("TLS negotiation in progress"),
            State::SaslPlain => {
                self.state = State::Authorization { user: None };
                self.sasl_response(line).await
            }
            _ if line.len() > MAX_COMMAND_LINE && !is_auth_line(line) => {
                Err(Fail::new("Command line too long"))
            }
            _ => match parse(line) {
                Err(e) => Err(Fail(e.to_string())),
                Ok(cmd) => self.command(cmd).await,
            },
        };
        match step {
            Ok(reply) => reply,
            Err(Fail(text)) => {
                self.errors += 1;
                if self.errors >= self.max_errors {
                    warn!(peer = %self.peer, errors = self.errors, "too many errors, closing");
                    self.abort("too many errors");
                    Reply::err(MSG_TOO_MANY_ERRORS)
                } else {
                    Reply::Err(text)
                }
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Step {
        if let Command::Capa = cmd {
            return Ok(Reply::Lines {
                status: "Capability list follows".into(),
                lines: capabilities(&self.props),
            });
        }
        if let (Command::Quit, State::Transaction(_)) = (&cmd, &self.state) {
            return Ok(self.update().await);
        }
        match &mut self.state {
            State::Transaction(tx) => tx.command(cmd, &self.peer).await,
            _ => self.authorization(cmd).await,
        }
    }

    async fn authorization(&mut self, cmd: Command) -> Step {
        match cmd {
            Command::Quit => {
                self.state = State::Closed;
                Ok(Reply::ok(SIGN_OFF))
            }
            Command::User(name) => {
                self.require_plaintext()?;
                self.state = State::Authorization { user: Some(name) };
                Ok(Reply::ok("Send PASS"))
            }
            Command::Pass(password) => {
                let pending = match &mut self.state {
                    State::Authorization { user } => user.take(),
                    _ => None,
                };
                self.require_plaintext()?;
                let Some(user) = pending else {
                    return Err(Fail::new("Send USER first"));
                };
                self.login(&user, &password, "USER").await
            }
            Command::Auth {
                mechanism: None, ..
            } => Ok(Reply::Lines {
                status: "Supported mechanisms follow".into(),
                lines: sasl_mechanisms(&self.props)
                    .into_iter()
                    .map(String::from)
                    .collect(),
            }),
            Command::Auth {
                mechanism: Some(mech),
                initial,
            } => {
                if mech != "PLAIN" {
                    return Err(Fail::new("Unsupported authentication mechanism"));
                }
                self.require_plaintext()?;
                match initial {
                    None => {
                        self.state = State::SaslPlain;
                        Ok(Reply::Continue(String::new()))
                    }
                    Some(response) => self.sasl_response(response.as_bytes()).await,
                }
            }
            Command::Stls => self.stls(),
            _ => Err(Fail::new("Command not valid before login")),
        }
    }

    /// `STLS` in AUTHORIZATION (RFC 2595 §4).
    fn stls(&mut self) -> Step {
        if self.props.secure {
            return Err(Fail::new(MSG_TLS_ACTIVE));
        }
        if !self.props.tls_available {
            return Err(Fail::new(MSG_STLS_UNAVAILABLE));
        }
        self.state = State::StartTls;
        Ok(Reply::ok(MSG_BEGIN_TLS))
    }

    fn require_plaintext(&self) -> Result<(), Fail> {
        if self.props.plaintext_allowed() {
            Ok(())
        } else {
            Err(Fail::new(MSG_PLAINTEXT_DISALLOWED))
        }
    }

    /// A PLAIN response, from `AUTH PLAIN <response>` or a continuation line.
    async fn sasl_response(&mut self, line: &[u8]) -> Step {
        if line == b"*" {
            return Err(Fail::new("AUTH cancelled"));
        }
        let text = std::str::from_utf8(line).map_err(|_| Fail::new("Invalid base64 data"))?;
        match decode_plain(text) {
            Ok(creds) => self.login(&creds.user, &creds.password, "PLAIN").await,
            Err(PlainError::Base64) => Err(Fail::new("Invalid base64 data")),
            Err(PlainError::AuthzidNotPermitted) => {
                warn!(peer = %self.peer, "AUTH PLAIN with a foreign authorization identity");
                Err(Fail::new("[AUTH] Authorization identity not permitted"))
            }
            Err(e) => Err(Fail(format!("Invalid AUTH PLAIN response: {e}"))),
        }
    }

    /// Checks the credentials, then opens and locks the mailbox.
    async fn login(&mut self, user: &str, password: &str, method: &'static str) -> Step {
        let account = match self.backend.authenticate(user, password).await {
            Ok(account) => account,
            Err(_) => {
                postamt_metrics::global().login_failed(postamt_metrics::Protocol::Pop3);
                warn!(user = ?user, peer = %self.peer, method, "login failed");
                return Err(Fail::new(MSG_AUTH_FAILED));
            }
        };
        match self.backend.open_mailbox(&account).await {
            Ok((mailbox, messages)) => {
                let tx = Transaction {
                    user: account,
                    mailbox,
                    slots: messages
                        .into_iter()
                        .map(|info| Slot {
                            info,
                            deleted: false,
                            retrieved: false,
                        })
                        .collect(),
                    ahead: VecDeque::new(),
                    ahead_read: None,
                };
                let (count, size) = tx.totals();
                info!(user = %tx.user, peer = %self.peer, method, messages = count, size, "login");
                self.state = State::Transaction(tx);
                Ok(Reply::ok(format!(
                    "Logged in, {count} messages ({size} octets)"
                )))
            }
            Err(StoreError::InUse) => {
                info!(user = %account, peer = %self.peer, "login refused: mailbox in use");
                Ok(Reply::err(MSG_IN_USE))
            }
            Err(e) => {
                error!(user = %account, peer = %self.peer, error = %e, "cannot open mailbox");
                Ok(Reply::err(
                    "[SYS/TEMP] Unable to open the mailbox, try again later",
                ))
            }
        }
    }

    /// QUIT in TRANSACTION: the UPDATE state. Removes the marked messages,
    /// ends the session and releases the lock.
    async fn update(&mut self) -> Reply {
        let State::Transaction(tx) = std::mem::replace(&mut self.state, State::Closed) else {
            return Reply::ok(SIGN_OFF);
        };
        let doomed: Vec<MessageInfo> = tx
            .slots
            .iter()
            .filter(|s| s.deleted)
            .map(|s| s.info.clone())
            .collect();
        let result = if doomed.is_empty() {
            Ok(())
        } else {
            tx.mailbox.delete(&doomed).await
        };
        let left = tx.slots.len() - doomed.len();
        match result {
            Ok(()) => {
                info!(
                    user = %tx.user,
                    peer = %self.peer,
                    retrieved = tx.retrieved(),
                    deleted = doomed.len(),
                    left,
                    "logout"
                );
                Reply::ok(format!(
                    "{SIGN_OFF} ({} messages deleted, {left} left)",
                    doomed.len()
                ))
            }
            Err(e) => {
                error!(
                    user = %tx.user,
                    peer = %self.peer,
                    retrieved = tx.retrieved(),
                    error = %e,
                    "logout: deleting messages failed"
                );
                Reply::err("[SYS/TEMP] Some deleted messages were not removed")
            }
        }
        // `tx` (the mailbox and its lock) is dropped here.
    }
}

fn is_auth_line(line: &[u8]) -> bool {
    line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"AUTH ")
}

impl<M: Mailbox> Transaction<M> {
    fn totals(&self) -> (usize, u64) {
        self.slots
            .iter()
            .filter(|s| !s.deleted)
            .fold((0, 0), |(n, size), s| (n + 1, size + s.info.size))
    }

    fn retrieved(&self) -> usize {
        self.slots.iter().filter(|s| s.retrieved).count()
    }

    /// The visible (not deleted) message numbered `n` (1-based).
    fn slot(&mut self, n: u32) -> Result<&mut Slot, Fail> {
        let i = (n as usize).checked_sub(1);
        match i.and_then(|i| self.slots.get_mut(i)) {
            Some(s) if !s.deleted => Ok(s),
            _ => Err(Fail::new(MSG_NO_SUCH_MESSAGE)),
        }
    }

    async fn command(&mut self, cmd: Command, peer: &str) -> Step {
        match cmd {
            Command::Stat => {
                let (n, size) = self.totals();
                Ok(Reply::ok(format!("{n} {size}")))
            }
            Command::List(None) => {
                let (n, size) = self.totals();
                Ok(Reply::Lines {
                    status: format!("{n} messages ({size} octets)"),
                    lines: self
                        .visible()
                        .map(|(i, s)| format!("{i} {}", s.info.size))
                        .collect(),
                })
            }
            Command::List(Some(n)) => {
                let s = self.slot(n)?;
                Ok(Reply::ok(format!("{n} {}", s.info.size)))
            }
            Command::Uidl(None) => Ok(Reply::Lines {
                status: "Unique-ID listing follows".into(),
                lines: self
                    .visible()
                    .map(|(i, s)| format!("{i} {}", s.info.uid))
                    .collect(),
            }),
            Command::Uidl(Some(n)) => {
                let s = self.slot(n)?;
                Ok(Reply::ok(format!("{n} {}", s.info.uid)))
            }
            Command::Retr(n) => {
                let info = self.slot(n)?.info.clone();
                let data = match self.load(n).await {
                    Ok(data) => data,
                    Err(e) => return Ok(read_error(&self.user, peer, &info, e)),
                };
                info!(
                    user = %self.user,
                    peer,
                    msg = n,
                    uid = %info.uid,
                    queue_id = info.queue_id.as_deref(),
                    size = data.len(),
                    "retr"
                );
                self.slot(n)?.retrieved = true;
                postamt_metrics::global()
                    .bytes_sent(postamt_metrics::Protocol::Pop3, data.len() as u64);
                Ok(Reply::Message {
                    status: format!("{} octets", data.len()),
                    end: data.len(),
                    data,
                })
            }
            Command::Top { msg, lines } => {
                let info = self.slot(msg)?.info.clone();
                let data = match self.load(msg).await {
                    Ok(data) => data,
                    Err(e) => return Ok(read_error(&self.user, peer, &info, e)),
                };
                let end = top_end(&data, lines);
                postamt_metrics::global().bytes_sent(postamt_metrics::Protocol::Pop3, end as u64);
                Ok(Reply::Message {
                    status: "top of message follows".into(),
                    end,
                    data,
                })
            }
            Command::Dele(n) => {
                let user = self.user.clone();
                let s = self.slot(n)?;
                s.deleted = true;
                info!(
                    user = %user,
                    peer,
                    msg = n,
                    uid = %s.info.uid,
                    queue_id = s.info.queue_id.as_deref(),
                    "dele"
                );
                Ok(Reply::ok(format!("message {n} deleted")))
            }
            Command::Rset => {
                for s in &mut self.slots {
                    s.deleted = false;
                }
                let (n, size) = self.totals();
                Ok(Reply::ok(format!(
                    "maildrop has {n} messages ({size} octets)"
                )))
            }
            Command::Noop => Ok(Reply::ok("")),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } => {
                Err(Fail::new("Already logged in"))
            }
            Command::Stls => Err(Fail::new(MSG_STLS_AFTER_LOGIN)),
            // CAPA and QUIT are handled by the session.
            Command::Capa | Command::Quit => Err(Fail::new("Command not valid here")),
        }
    }

    /// The data of message `n` (a visible slot): read ahead by an
    /// earlier command, or read now together with the visible messages
    /// after it ([`Mailbox::read_ahead`]).
    async fn load(&mut self, n: u32) -> Result<Vec<u8>, StoreError> {
        let i = (n as usize).saturating_sub(1);
        if self
            .ahead_read
            .is_some_and(|t| t.elapsed() > READ_AHEAD_MAX_AGE)
        {
            self.ahead.clear();
        }
        while self.ahead.front().is_some_and(|(j, _)| *j < i) {
            self.ahead.pop_front();
        }
        if self.ahead.front().is_some_and(|(j, _)| *j == i)
            && let Some((_, data)) = self.ahead.pop_front()
        {
            return Ok(data);
        }
        let Some(slot) = self.slots.get(i) else {
            return Err(StoreError::Gone(String::new()));
        };
        if !self.ahead.is_empty() {
            // Later messages are still waiting: read just this one.
            return self.mailbox.read(&slot.info).await;
        }
        let limits = ReadAhead::DEFAULT;
        let (indices, next): (Vec<usize>, Vec<MessageInfo>) = self.slots[i + 1..]
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.deleted)
            .take(limits.max_messages)
            .map(|(k, s)| (i + 1 + k, s.info.clone()))
            .unzip();
        let (result, extra) = self.mailbox.read_ahead(&slot.info, &next, limits).await;
        if result.is_ok() && !extra.is_empty() {
            self.ahead.extend(indices.into_iter().zip(extra));
            self.ahead_read = Some(Instant::now());
        }
        result
    }

    fn visible(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.deleted)
            .map(|(i, s)| (i + 1, s))
    }
}

fn read_error(user: &str, peer: &str, info: &MessageInfo, e: StoreError) -> Reply {
    let gone = match &e {
        StoreError::Gone(_) => true,
        StoreError::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    };
    if gone {
        warn!(user, peer, uid = %info.uid, queue_id = info.queue_id.as_deref(), "message vanished");
        Reply::err("Message no longer exists")
    } else {
        error!(user, peer, uid = %info.uid, error = %e, "reading message failed");
        Reply::err("[SYS/TEMP] Unable to read the message, try again later")
    }
}

#[cfg(test)]
pub(crate) mod tests;
