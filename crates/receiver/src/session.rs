//! The SMTP session state machine (RFC 5321, 1869, 1652, 2920, 3030, 6531,
//! 3207, 4954, 6409): HELO/EHLO state, TLS and authentication state, the
//! envelope in progress, the body being received, and the reply to every
//! command. No I/O: the connection feeds it command lines and body bytes,
//! and performs the TLS handshake when a step says [`Next::StartTls`];
//! storage, logins and the inbound sender checks are reached only through
//! [`Backend`]. The AUTH command and its exchange live in the `auth`
//! submodule.

use crate::address;
use crate::authres;
use crate::backend::{Backend, RcptVerdict, SenderCheck, SenderVerdict};
use crate::command::{self, MAX_LINE};
use crate::data::{BodyBuffer, ChunkReader, Discard, DotDecoder};
use crate::header_edit;
use crate::mode::{Mode, SessionOptions};
use crate::received::{self, MAX_HOPS, TraceInfo};
use crate::reply::{self, Reply};
use crate::sasl::{self, Exchange, MAX_AUTH_LINE};
use postamt_config::Config;
use postamt_sender_auth::Action;
use postamt_spool::{NewMessage, QueueId};
use smtp_proto::{
    Error as ProtoError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_BY_NOTIFY,
    MAIL_BY_RETURN, MAIL_CONPERM, MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8,
    MailFrom, RcptTo, Request,
};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::{error, info, warn};

/// What the connection does after sending a step's replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Command,
    /// Feed body bytes with [`Session::feed_body`] until complete, then call
    /// [`Session::finish_body`].
    Body,
    /// Close the connection.
    Close,
    /// Send the replies (`220 Ready to start TLS`), drop every byte
    /// buffered after the STARTTLS line, run the TLS handshake, then call
    /// [`Session::tls_started`] and read commands over TLS.
    StartTls,
}

/// The replies to send (in order) and what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub replies: Vec<Reply>,
    pub next: Next,
}

impl Step {
    fn reply(r: Reply) -> Step {
        Step {
            replies: vec![r],
            next: Next::Command,
        }
    }
}

/// Progress of body reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyProgress {
    /// Input bytes that belonged to the body; the rest are commands.
    pub consumed: usize,
    /// The body (dot-stream or chunk) is complete.
    pub complete: bool,
}

/// Counters for the disconnect log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub commands: u64,
    pub messages: u64,
    pub recipients_accepted: u64,
    pub recipients_rejected: u64,
    /// Bad commands so far.
    pub errors: u32,
}

#[derive(Clone, Debug)]
struct Helo {
    name: String,
    esmtp: bool,
}

/// The envelope in progress, from MAIL to the end of the message.
#[derive(Debug)]
struct Transaction {
    mail_from: String,
    eight_bit: bool,
    smtputf8: bool,
    recipients: Vec<String>,
    /// A RCPT was tried (even if refused): DATA then says "no valid
    /// recipients" rather than "need RCPT".
    rcpt_attempted: bool,
    /// The body so far; set at DATA or the first accepted BDAT.
    buffer: Option<BodyBuffer>,
    /// BDAT started this body: DATA and RCPT are refused until the end.
    bdat: bool,
    queue_id: Option<QueueId>,
    /// `MAIL FROM ... SIZE=`, 0 when not declared.
    declared_size: u64,
    /// The smallest size limit of the lists among the recipients, when it
    /// is below the server's.
    list_limit: Option<ListLimit>,
}

/// A mailing list's own size limit, applied to the whole message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ListLimit {
    list: String,
    bytes: u64,
}

/// The body being read now.
#[derive(Debug)]
enum BodyMode {
    Data(DotDecoder),
    Chunk {
        reader: ChunkReader,
        size: u64,
        last: bool,
        /// The chunk is read and dropped, then this is the reply.
        reject: Option<Reply>,
    },
}

/// One SMTP session's state.
pub struct Session {
    config: Arc<Config>,
    peer: SocketAddr,
    mode: Mode,
    /// The transport is encrypted (implicit TLS, or after STARTTLS).
    tls_active: bool,
    /// A certificate is available for STARTTLS.
    tls_available: bool,
    helo: Option<Helo>,
    /// The account name after a successful AUTH.
    auth_user: Option<String>,
    /// An AUTH exchange waiting for the client's next response line.
    auth_exchange: Option<Exchange>,
    txn: Option<Transaction>,
    body: Option<BodyMode>,
    stats: SessionStats,
}

impl Session {
    /// An MX session for a client at `peer`, without STARTTLS.
    pub fn new(config: Arc<Config>, peer: SocketAddr) -> Session {
        Session::with_options(config, peer, SessionOptions::mx(), false)
    }

    /// A session as `options` say; `tls_available` when a certificate is
    /// there for STARTTLS.
    pub fn with_options(
        config: Arc<Config>,
        peer: SocketAddr,
        options: SessionOptions,
        tls_available: bool,
    ) -> Session {
        Session {
            config,
            peer,
            mode: options.mode,
            tls_active: options.tls_active,
            tls_available,
            helo: None,
            auth_user: None,
            auth_exchange: None,
            txn: None,
            body: None,
            stats: SessionStats::default(),
        }
    }

    /// The service this session runs.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the transport is encrypted.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// The authenticated account, if any.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// Whether STARTTLS is offered now.
    pub fn starttls_offered(&self) -> bool {
        self.tls_available && !self.tls_active
    }

    /// Whether AUTH is offered now: on submission only, over TLS, or from
    /// loopback when `submission.allow_plaintext_on_loopback` says so.
    pub fn may_auth(&self) -> bool {
        self.mode == Mode::Submission
            && (self.tls_active
                || (self.config.submission.allow_plaintext_on_loopback
                    && self.peer.ip().to_canonical().is_loopback()))
    }

    /// Whether recipients outside our domains are accepted: only from an
    /// authenticated user on the submission port. The MX port never relays.
    fn may_relay(&self) -> bool {
        self.mode == Mode::Submission && self.auth_user.is_some()
    }

    /// The longest line accepted when the buffered input starts with
    /// `start`: longer for AUTH commands and responses on submission.
    pub fn line_limit(&self, start: &[u8]) -> usize {
        let auth_line = self.auth_exchange.is_some()
            || (self.mode == Mode::Submission
                && command::verb(start).eq_ignore_ascii_case(b"AUTH"));
        if auth_line { MAX_AUTH_LINE } else { MAX_LINE }
    }

    /// The TLS handshake after STARTTLS succeeded: everything learned
    /// before it is forgotten (RFC 3207 4.2), the client must EHLO again.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.auth_user = None;
        self.auth_exchange = None;
        self.txn = None;
        self.body = None;
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        reply::greeting(&self.config.hostname)
    }

    /// The reply when the client is idle too long.
    pub fn timeout_reply(&self) -> Reply {
        reply::timeout(&self.config.hostname)
    }

    /// The reply when the server shuts down.
    pub fn shutdown_reply(&self) -> Reply {
        reply::shutting_down(&self.config.hostname)
    }

    /// Counters so far.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The client's HELO/EHLO name, if given.
    pub fn helo_name(&self) -> Option<&str> {
        self.helo.as_ref().map(|h| h.name.as_str())
    }

    /// Whether a message body is being read (the connection must not stop
    /// for shutdown in the middle of it).
    pub fn in_body(&self) -> bool {
        self.body.is_some()
    }

    /// The capabilities listed in the EHLO reply, computed from the
    /// session's properties: STARTTLS when TLS is available and not yet
    /// active, AUTH when [`may_auth`](Self::may_auth).
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.limits.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
            "CHUNKING".to_string(),
        ];
        if self.starttls_offered() {
            caps.push("STARTTLS".to_string());
        }
        if self.may_auth() {
            caps.push(format!("AUTH {}", sasl::ADVERTISED));
        }
        caps
    }

    /// Handles one command line (ending in LF, at most the line limit).
    pub async fn command<B: Backend>(&mut self, line: &[u8], backend: &B) -> Step {
        self.stats.commands += 1;
        if self.body.is_some() {
            // The connection never does this; refuse rather than corrupt state.
            return self.respond(reply::bad_sequence("body in progress"));
        }
        if let Some(exchange) = self.auth_exchange.take() {
            return self.auth_response(exchange, line, backend).await;
        }
        if std::str::from_utf8(line).is_err() {
            return self.respond(reply::not_utf8());
        }
        if command::verb(line).eq_ignore_ascii_case(b"EXPN") {
            // Lists and aliases are never disclosed, whatever the argument.
            return self.respond(reply::expn());
        }
        if command::verb(line).eq_ignore_ascii_case(b"STARTTLS") {
            return self.starttls(line);
        }
        if command::verb(line).eq_ignore_ascii_case(b"AUTH") {
            return self.auth(line, backend).await;
        }
        if command::verb(line).eq_ignore_ascii_case(b"BDAT") {
            // Parsed here: smtp-proto's size parsing is not overflow-safe.
            return match command::parse_bdat(line) {
                Some(b) => self.bdat(b.size, b.last, backend),
                None => self.respond(reply::syntax("BDAT chunk-size [LAST]")),
            };
        }
        let request = Request::parse(&mut line.iter());
        match request {
            Ok(Request::Ehlo { host }) => self.hello(&host, true),
            Ok(Request::Helo { host }) => self.hello(&host, false),
            Ok(Request::Mail { from }) => {
                let r = self.mail(from, line, backend).await;
                self.respond(r)
            }
            Ok(Request::Rcpt { to }) => self.rcpt(to, line, backend).await,
            Ok(Request::Data) => self.data(backend),
            Ok(Request::Bdat { .. }) => self.respond(reply::syntax("BDAT chunk-size [LAST]")),
            Ok(Request::Rset) => {
                self.txn = None;
                Step::reply(reply::ok())
            }
            Ok(Request::Noop { .. }) => Step::reply(reply::ok()),
            Ok(Request::Quit) => Step {
                replies: vec![reply::bye()],
                next: Next::Close,
            },
            Ok(Request::Vrfy { .. }) => Step::reply(reply::vrfy()),
            Ok(Request::Help { .. }) => Step::reply(reply::help()),
            Ok(Request::Expn { .. }) => self.respond(reply::expn()),
            Ok(
                r @ (Request::Lhlo { .. }
                | Request::Auth { .. }
                | Request::Etrn { .. }
                | Request::Atrn { .. }
                | Request::Burl { .. }
                | Request::StartTls),
            ) => {
                let name = r.name();
                self.respond(reply::not_implemented(name))
            }
            Err(e) => {
                let r = proto_error_reply(&e);
                self.respond(r)
            }
        }
    }

    /// A command line over the limit was dropped.
    pub fn line_too_long(&mut self) -> Step {
        self.stats.commands += 1;
        // An over-long AUTH response ends the exchange.
        self.auth_exchange = None;
        self.respond(reply::line_too_long())
    }

    /// Feeds body bytes (DATA dot-stream or BDAT chunk).
    pub fn feed_body(&mut self, input: &[u8]) -> BodyProgress {
        let buffer = self.txn.as_mut().and_then(|t| t.buffer.as_mut());
        match (&mut self.body, buffer) {
            (None, _) => BodyProgress {
                consumed: 0,
                complete: true,
            },
            (Some(BodyMode::Data(decoder)), buffer) => {
                let consumed = match buffer {
                    Some(b) => decoder.decode(input, b),
                    None => decoder.decode(input, &mut Discard),
                };
                BodyProgress {
                    consumed,
                    complete: decoder.is_done(),
                }
            }
            (Some(BodyMode::Chunk { reader, reject, .. }), buffer) => {
                let consumed = match (reject.is_some(), buffer) {
                    (false, Some(b)) => reader.read(input, b),
                    _ => reader.read(input, &mut Discard),
                };
                BodyProgress {
                    consumed,
                    complete: reader.is_done(),
                }
            }
        }
    }

    /// Ends the body once [`feed_body`](Self::feed_body) said complete: the
    /// reply to DATA's end or to the BDAT chunk (enqueueing the message at
    /// the end of DATA or BDAT LAST).
    pub async fn finish_body<B: Backend>(&mut self, backend: &B) -> Step {
        match self.body.take() {
            None => self.respond(reply::bad_sequence("no body in progress")),
            Some(BodyMode::Data(_)) => self.finish_message(backend).await,
            Some(BodyMode::Chunk {
                reject: Some(r), ..
            }) => {
                if r.code == 552 {
                    // The transaction fails as a whole (RFC 3030 2).
                    self.txn = None;
                    info!(peer = %self.peer, reply = %r, "message rejected");
                }
                self.respond(r)
            }
            Some(BodyMode::Chunk {
                last: false, size, ..
            }) => Step::reply(reply::chunk_received(size)),
            Some(BodyMode::Chunk { last: true, .. }) => self.finish_message(backend).await,
        }
    }

    /// Counts bad commands; after `max_errors` adds the 421 and closes.
    fn respond(&mut self, r: Reply) -> Step {
        if !r.is_command_error() {
            return Step::reply(r);
        }
        self.stats.errors = self.stats.errors.saturating_add(1);
        if self.stats.errors >= self.config.limits.max_errors.max(1) {
            warn!(peer = %self.peer, errors = self.stats.errors, "too many errors, closing");
            Step {
                replies: vec![r, reply::too_many_errors(&self.config.hostname)],
                next: Next::Close,
            }
        } else {
            Step::reply(r)
        }
    }

    fn hello(&mut self, host: &str, esmtp: bool) -> Step {
        // HELO/EHLO also resets any transaction (RFC 5321 4.1.4).
        self.txn = None;
        self.helo = Some(Helo {
            name: host.to_string(),
            esmtp,
        });
        if esmtp {
            Step::reply(reply::ehlo(&self.config.hostname, self.capabilities()))
        } else {
            Step::reply(reply::helo(&self.config.hostname))
        }
    }

    /// STARTTLS (RFC 3207): offered on both modes while not yet in TLS.
    fn starttls(&mut self, line: &[u8]) -> Step {
        if self.tls_active {
            return self.respond(reply::bad_sequence("TLS already active"));
        }
        if !self.tls_available {
            return self.respond(reply::not_implemented("STARTTLS"));
        }
        if command::has_arguments(line) {
            return self.respond(reply::syntax("STARTTLS"));
        }
        Step {
            replies: vec![reply::starttls_ready()],
            next: Next::StartTls,
        }
    }

    async fn mail<B: Backend>(
        &mut self,
        from: MailFrom<Cow<'_, str>>,
        line: &[u8],
        backend: &B,
    ) -> Reply {
        let Some(esmtp) = self.helo.as_ref().map(|h| h.esmtp) else {
            return reply::bad_sequence("send HELO/EHLO first");
        };
        if self.mode == Mode::Submission && self.auth_user.is_none() {
            return reply::auth_required();
        }
        if self.txn.is_some() {
            return reply::bad_sequence("nested MAIL command");
        }
        // RFC 4954 5: a server offering AUTH accepts MAIL's AUTH=
        // parameter; the identity it claims is not trusted (ignored).
        let accept_auth_param = self.mode == Mode::Submission;
        if let Some(param) = unsupported_mail_param(&from, accept_auth_param) {
            return reply::unsupported_parameter(param);
        }
        let has_params = from.flags != 0 || from.size != 0 || from.auth.is_some();
        if has_params && !esmtp {
            return reply::unsupported_parameter("(ESMTP parameters need EHLO)");
        }
        let limit = self.config.limits.max_message_size;
        let declared = command::declared_size(line)
            .unwrap_or_else(|| u64::try_from(from.size).unwrap_or(u64::MAX));
        if declared > limit {
            return reply::message_too_big();
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let address = from.address.into_owned();
        if address.is_empty() {
            if !address::is_null_path(line) {
                // `<postmaster>` (parsed as empty) is not a valid reverse-path.
                return reply::bad_sender();
            }
        } else {
            if !address.is_ascii() && !smtputf8 {
                return reply::utf8_required();
            }
            if address::split(&address).is_none() {
                return reply::bad_sender();
            }
        }
        if let Some(refusal) = self.sender_refusal(&address, backend).await {
            return refusal;
        }
        self.txn = Some(Transaction {
            mail_from: address,
            eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
            smtputf8,
            recipients: Vec::new(),
            rcpt_attempted: false,
            buffer: None,
            bdat: false,
            queue_id: None,
            declared_size: declared,
            list_limit: None,
        });
        reply::sender_ok()
    }

    /// Why an authenticated user may not use `address` as sender, if so:
    /// it must be the null sender or an address at one of our domains
    /// that resolves to the user's own mailbox.
    async fn sender_refusal<B: Backend>(&self, address: &str, backend: &B) -> Option<Reply> {
        let user = self.auth_user.as_deref()?;
        if address.is_empty() {
            // Bounces and MDNs from mail clients.
            return None;
        }
        let local = address::split(address).is_some_and(|(_, d)| self.config.is_local_domain(d));
        let verdict = if local {
            backend.sender_owned_by(address, user).await
        } else {
            SenderVerdict::NotOwned
        };
        match verdict {
            SenderVerdict::Owned => None,
            SenderVerdict::NotOwned => {
                warn!(peer = %self.peer, %user, from = %address, "sender address not owned by the authenticated user");
                Some(reply::sender_not_owned(user))
            }
            SenderVerdict::TempFail(e) => {
                warn!(peer = %self.peer, %user, from = %address, error = %e, "sender lookup failed");
                Some(reply::sender_lookup_failed())
            }
        }
    }

    async fn rcpt<B: Backend>(
        &mut self,
        to: RcptTo<Cow<'_, str>>,
        line: &[u8],
        backend: &B,
    ) -> Step {
        let address = if to.address.is_empty() && address::is_bare_postmaster(line) {
            "postmaster".to_string()
        } else {
            // `user@example.org.` (root dot) is `user@example.org`.
            to.address.trim_end_matches('.').to_string()
        };
        let r = self.rcpt_reply(&to, &address, backend).await;
        if r.is_failure() {
            self.stats.recipients_rejected += 1;
            info!(peer = %self.peer, rcpt = %address, reply = %r, "recipient rejected");
        } else {
            self.stats.recipients_accepted += 1;
        }
        self.respond(r)
    }

    async fn rcpt_reply<B: Backend>(
        &mut self,
        to: &RcptTo<Cow<'_, str>>,
        address: &str,
        backend: &B,
    ) -> Reply {
        if self.helo.is_none() {
            return reply::bad_sequence("send HELO/EHLO first");
        }
        let max_recipients = self.config.limits.max_recipients;
        let may_relay = self.may_relay();
        let Some(txn) = self.txn.as_mut() else {
            return reply::bad_sequence("need MAIL before RCPT");
        };
        if txn.bdat {
            return reply::bad_sequence("RCPT after BDAT");
        }
        txn.rcpt_attempted = true;
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            return reply::unsupported_parameter("(DSN/RRVS/CONNEG are not offered)");
        }
        if address.is_empty() {
            return reply::bad_recipient();
        }
        if !address.is_ascii() && !txn.smtputf8 {
            return reply::utf8_required();
        }
        let domain = if address.eq_ignore_ascii_case("postmaster") {
            // RFC 5321 4.5.1: bare postmaster is always ours.
            None
        } else {
            match address::split(address) {
                Some((_, domain)) => Some(domain),
                None => return reply::bad_recipient(),
            }
        };
        if txn
            .recipients
            .iter()
            .any(|r| r.eq_ignore_ascii_case(address))
        {
            return reply::recipient_ok();
        }
        if txn.recipients.len() >= max_recipients {
            return reply::too_many_recipients();
        }
        if let Some(domain) = domain
            && !self.config.is_local_domain(domain)
        {
            if !may_relay {
                return reply::relay_denied(address);
            }
            // Submission: the delivery agent sends it on.
            txn.recipients.push(address.to_string());
            return reply::recipient_ok();
        }
        match backend.check_recipient(address, &txn.mail_from).await {
            RcptVerdict::Accept => {
                txn.recipients.push(address.to_string());
                reply::recipient_ok()
            }
            RcptVerdict::AcceptList {
                list,
                max_message_size,
            } => {
                let server_limit = self.config.limits.max_message_size;
                if max_message_size > 0 && max_message_size < server_limit {
                    // RFC 1870: a declared size over the limit is refused now.
                    if txn.declared_size > max_message_size {
                        return reply::list_message_too_big(address);
                    }
                    if txn
                        .list_limit
                        .as_ref()
                        .is_none_or(|l| max_message_size < l.bytes)
                    {
                        txn.list_limit = Some(ListLimit {
                            list: address.to_string(),
                            bytes: max_message_size,
                        });
                    }
                }
                info!(peer = %self.peer, rcpt = %address, %list, from = %txn.mail_from, "list post accepted");
                txn.recipients.push(address.to_string());
                reply::recipient_ok()
            }
            RcptVerdict::NotMember { list } => {
                info!(peer = %self.peer, rcpt = %address, %list, from = %txn.mail_from, "list post refused: sender is not a member");
                reply::not_list_member(address)
            }
            RcptVerdict::BadSrs(why) => {
                warn!(peer = %self.peer, rcpt = %address, from = %txn.mail_from, reason = %why, "invalid SRS address");
                reply::unknown_user(address)
            }
            RcptVerdict::Unknown => reply::unknown_user(address),
            RcptVerdict::Loop => reply::alias_loop(address),
            RcptVerdict::TempFail(e) => {
                warn!(peer = %self.peer, rcpt = %address, error = %e, "recipient lookup failed");
                reply::lookup_failed(address)
            }
        }
    }

    /// Why DATA or BDAT cannot start a body now, if it cannot.
    fn body_refusal(&self) -> Option<Reply> {
        if self.helo.is_none() {
            return Some(reply::bad_sequence("send HELO/EHLO first"));
        }
        let Some(txn) = &self.txn else {
            return Some(reply::bad_sequence("need MAIL command"));
        };
        if txn.recipients.is_empty() {
            return Some(if txn.rcpt_attempted {
                reply::no_valid_recipients()
            } else {
                reply::bad_sequence("need RCPT command")
            });
        }
        None
    }

    fn data<B: Backend>(&mut self, backend: &B) -> Step {
        if let Some(r) = self.body_refusal() {
            return self.respond(r);
        }
        if self.txn.as_ref().is_some_and(|t| t.bdat) {
            return self.respond(reply::bad_sequence("DATA after BDAT"));
        }
        self.start_buffer(backend);
        self.body = Some(BodyMode::Data(DotDecoder::new()));
        Step {
            replies: vec![reply::start_data()],
            next: Next::Body,
        }
    }

    fn bdat<B: Backend>(&mut self, size: u64, last: bool, backend: &B) -> Step {
        let mut reject = self.body_refusal();
        if reject.is_none() {
            let so_far = self
                .txn
                .as_ref()
                .and_then(|t| t.buffer.as_ref())
                .map_or(0, BodyBuffer::size);
            let limit = self.size_limit();
            if so_far.checked_add(size).is_none_or(|total| total > limit) {
                reject = Some(self.too_big_reply());
            }
        }
        if reject.is_none() {
            self.start_buffer(backend);
            if let Some(txn) = self.txn.as_mut() {
                txn.bdat = true;
            }
        }
        // The chunk is read even when refused, so the stream stays in sync.
        self.body = Some(BodyMode::Chunk {
            reader: ChunkReader::new(size),
            size,
            last,
            reject,
        });
        Step {
            replies: Vec::new(),
            next: Next::Body,
        }
    }

    /// The size limit of the message in progress: the server's, or a
    /// recipient list's when smaller.
    fn size_limit(&self) -> u64 {
        let server = self.config.limits.max_message_size;
        self.txn
            .as_ref()
            .and_then(|t| t.list_limit.as_ref())
            .map_or(server, |l| l.bytes.min(server))
    }

    /// `552 5.3.4`, naming the list when its limit is the one exceeded.
    fn too_big_reply(&self) -> Reply {
        match self.txn.as_ref().and_then(|t| t.list_limit.as_ref()) {
            Some(l) => reply::list_message_too_big(&l.list),
            None => reply::message_too_big(),
        }
    }

    /// Creates the body buffer (with our `Received:` header) if needed.
    fn start_buffer<B: Backend>(&mut self, backend: &B) {
        let limit = self.size_limit();
        let (Some(txn), Some(helo)) = (self.txn.as_mut(), self.helo.as_ref()) else {
            return;
        };
        if txn.buffer.is_some() {
            return;
        }
        let id = backend.new_queue_id();
        let single = match txn.recipients.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        let header = received::received_header(&TraceInfo {
            helo: &helo.name,
            ip: self.peer.ip(),
            hostname: &self.config.hostname,
            esmtp: helo.esmtp,
            tls: self.tls_active,
            authenticated: self.auth_user.is_some(),
            queue_id: &id.0,
            single_recipient: single,
            date: chrono::Local::now().fixed_offset(),
        });
        txn.buffer = Some(BodyBuffer::new(header, limit));
        txn.queue_id = Some(id);
    }

    /// The end of DATA or BDAT LAST: checks, enqueues, resets the envelope.
    async fn finish_message<B: Backend>(&mut self, backend: &B) -> Step {
        let Some(txn) = self.txn.take() else {
            return self.respond(reply::bad_sequence("no transaction"));
        };
        let Some(buffer) = txn.buffer else {
            return self.respond(reply::bad_sequence("no message"));
        };
        let peer = self.peer;
        let helo = self.helo_name().unwrap_or_default().to_string();
        if let Some(l) = &txn.list_limit
            && buffer.size() > l.bytes
        {
            let r = reply::list_message_too_big(&l.list);
            info!(%peer, from = %txn.mail_from, size = buffer.size(), list = %l.list, reply = %r, "message rejected");
            return Step::reply(r);
        }
        if buffer.overflowed() {
            let r = reply::message_too_big();
            info!(%peer, from = %txn.mail_from, size = buffer.size(), reply = %r, "message rejected");
            return Step::reply(r);
        }
        let hops = received::count_hops(buffer.message());
        if hops >= MAX_HOPS {
            let r = reply::too_many_hops();
            warn!(%peer, from = %txn.mail_from, hops, reply = %r, "message rejected: mail loop");
            return Step::reply(r);
        }
        let size = buffer.size();
        let nrcpt = txn.recipients.len();
        let from = if txn.mail_from.is_empty() {
            "<>".to_string()
        } else {
            txn.mail_from.clone()
        };
        let queue_id = txn
            .queue_id
            .as_ref()
            .map(|q| q.0.clone())
            .unwrap_or_default();
        let message_id = header_edit::message_id(buffer.message()).unwrap_or_default();
        let (data, quarantined) = match self
            .prepare_message(buffer, &txn.mail_from, &helo, &queue_id, backend)
            .await
        {
            Ok(prepared) => prepared,
            Err(refusal) => return Step::reply(refusal),
        };
        let msg = NewMessage {
            id: txn.queue_id,
            mail_from: txn.mail_from,
            recipients: txn.recipients,
            client: Some(peer.ip().to_canonical().to_string()),
            helo: Some(helo.clone()),
            auth_user: self.auth_user.clone(),
            eight_bit: txn.eight_bit,
            smtputf8: txn.smtputf8,
        };
        match backend.enqueue(msg, data).await {
            Ok(id) => {
                self.stats.messages += 1;
                postamt_metrics::global().message_received(self.mode.metrics_protocol(), size);
                let user = self.auth_user.as_deref().unwrap_or("");
                info!(queue_id = %id, %from, size, nrcpt, %peer, %helo, auth_user = %user, tls = self.tls_active, quarantine = quarantined, message_id = %message_id, "message queued");
                Step::reply(reply::queued(&id.0))
            }
            Err(e) => {
                error!(%peer, %from, size, error = %e, "enqueue failed");
                Step::reply(reply::queue_failed())
            }
        }
    }

    /// The bytes to spool. On the MX port the sender checks run first: their
    /// `Authentication-Results` goes on top, the quarantine mark below our
    /// `Received:`, or the message is refused (`Err`, the 550 reply). On
    /// both ports incoming fields that claim to come from us are dropped
    /// (RFC 8601 §5: a submission client is not a trusted MTA either).
    /// Returns the bytes and whether the message carries the quarantine mark.
    ///
    /// Order: RFC 8601 §4.1 asks a verifier to insert its header above any
    /// trace fields it prepends, so that the results known to be ours are
    /// the topmost ones, above our own `Received:`; RFC 5321 §4.4 only asks
    /// that `Received:` be prepended and earlier ones left untouched, which
    /// holds. The quarantine mark is not a trace field: it follows our trace
    /// block (RFC 5322 §3.6 `trace *optional-field`), above the older
    /// `Received:` fields, never splitting our trace block.
    async fn prepare_message<B: Backend>(
        &self,
        buffer: BodyBuffer,
        mail_from: &str,
        helo: &str,
        queue_id: &str,
        backend: &B,
    ) -> Result<(Vec<u8>, bool), Reply> {
        let (above, below) = if self.mode == Mode::Mx && backend.sender_checks_enabled() {
            self.sender_checks(&buffer, mail_from, helo, queue_id, backend)
                .await?
        } else {
            (String::new(), String::new())
        };
        let quarantined = !below.is_empty();
        let prefix_len = buffer.prefix_len();
        let mut data = buffer.into_bytes();
        let hostname = self.config.hostname.as_str();
        let removed = header_edit::edit(
            &mut data,
            prefix_len,
            above.as_bytes(),
            below.as_bytes(),
            |name, value| authres::must_remove(name, value, hostname),
        );
        if removed > 0 {
            info!(queue_id, peer = %self.peer, removed, "dropped incoming header fields claiming to be ours (Authentication-Results, quarantine mark)");
        }
        Ok((data, quarantined))
    }

    /// SPF, DKIM and DMARC through the backend, within
    /// [`CHECK_TIMEOUT`](authres::CHECK_TIMEOUT), logged with the queue id.
    /// Returns the `Authentication-Results` field and the quarantine mark
    /// (empty strings when there is none), or the refusal. When the checks
    /// do not answer in time the message is accepted with a `temperror`
    /// result ([`authres::timed_out`]): no verdict, so nothing to enforce.
    async fn sender_checks<B: Backend>(
        &self,
        buffer: &BodyBuffer,
        mail_from: &str,
        helo: &str,
        queue_id: &str,
        backend: &B,
    ) -> Result<(String, String), Reply> {
        let peer = self.peer;
        let from = if mail_from.is_empty() {
            "<>"
        } else {
            mail_from
        };
        // SPF needs the IPv4 address of an IPv4-mapped peer.
        let ip = peer.ip().to_canonical();
        let checked = tokio::time::timeout(
            authres::CHECK_TIMEOUT,
            backend.check_sender(buffer.message(), ip, helo, mail_from),
        )
        .await;
        let check = match checked {
            Ok(Some(check)) => check,
            // Turned off after all: as if never on.
            Ok(None) => return Ok((String::new(), String::new())),
            Err(_) => {
                warn!(
                    queue_id,
                    %peer,
                    %from,
                    timeout_secs = authres::CHECK_TIMEOUT.as_secs(),
                    action = "accept",
                    "sender authentication timed out, recorded as temperror"
                );
                return Ok((authres::timed_out(&self.config.hostname), String::new()));
            }
        };
        let SenderCheck { verdict, action } = check;
        info!(
            queue_id,
            %peer,
            %from,
            spf = authres::result_name(verdict.spf),
            dkim = authres::result_name(verdict.dkim),
            dmarc = authres::dmarc_name(verdict.dmarc),
            from_domain = verdict.from_domain.as_deref().unwrap_or(""),
            action = authres::action_name(&action),
            "sender authentication"
        );
        let results = authres::with_crlf(verdict.authentication_results);
        match action {
            Action::Accept => Ok((results, String::new())),
            Action::Quarantine => Ok((
                results,
                authres::quarantine_field(verdict.from_domain.as_deref()),
            )),
            Action::Reject(text) => {
                let r = reply::sender_rejected(&text);
                info!(queue_id, %peer, %from, reply = %r, "message rejected: sender domain's DMARC policy");
                Err(r)
            }
        }
    }
}

/// The reply to a parse error from smtp-proto.
fn proto_error_reply(e: &ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand => reply::unknown_command(),
        ProtoError::InvalidSenderAddress => reply::bad_sender(),
        ProtoError::InvalidRecipientAddress => reply::bad_recipient(),
        ProtoError::SyntaxError { syntax } => reply::syntax(syntax),
        ProtoError::InvalidParameter { param } => reply::invalid_parameter(param),
        ProtoError::UnsupportedParameter { param } => reply::unsupported_parameter(param),
        ProtoError::NeedsMoreData { .. }
        | ProtoError::ResponseTooLong
        | ProtoError::InvalidResponse { .. } => reply::unknown_command(),
    }
}

/// A MAIL parameter smtp-proto understood but we do not advertise
/// (`AUTH=` is accepted where AUTH is offered).
fn unsupported_mail_param(
    from: &MailFrom<Cow<'_, str>>,
    accept_auth_param: bool,
) -> Option<&'static str> {
    let flags = from.flags;
    let checks: [(bool, &'static str); 14] = [
        (flags & MAIL_BODY_BINARYMIME != 0, "BODY=BINARYMIME"),
        (flags & (MAIL_RET_FULL | MAIL_RET_HDRS) != 0, "RET"),
        (flags & MAIL_REQUIRETLS != 0, "REQUIRETLS"),
        (flags & MAIL_CONPERM != 0, "CONPERM"),
        (
            flags & (MAIL_BY_NOTIFY | MAIL_BY_RETURN) != 0 || from.by != 0,
            "BY",
        ),
        (from.env_id.is_some(), "ENVID"),
        (from.trans_id.is_some(), "TRANSID"),
        (from.solicit.is_some(), "SOLICIT"),
        (from.mtrk.is_some(), "MTRK"),
        (from.auth.is_some() && !accept_auth_param, "AUTH"),
        (from.hold_for != 0, "HOLDFOR"),
        (from.hold_until != 0, "HOLDUNTIL"),
        (from.mt_priority != 0, "MT-PRIORITY"),
        (
            flags & !(MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8) != 0,
            "(unknown)",
        ),
    ];
    checks
        .into_iter()
        .find(|(hit, _)| *hit)
        .map(|(_, name)| name)
}

mod auth;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod secure_tests;

#[cfg(test)]
mod sender_auth_tests;

#[cfg(test)]
mod list_tests;
