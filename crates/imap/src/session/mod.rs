//! The IMAP session state machine (RFC 3501 6: not authenticated ->
//! authenticated -> selected -> logout): one framed client message in,
//! responses out through a [`Sink`]. No sockets here: logins and folders
//! go through the [`Backend`] traits (blocking store calls on
//! `spawn_blocking`); literal continuation requests, the TLS handshake
//! after STARTTLS and the IDLE wait are the connection's job
//! ([`Session::wants_tls`], [`Session::idle_poll`]).
//!
//! After every command in the selected state the folder is refreshed and
//! other sessions' changes are announced (EXISTS, RECENT, FETCH FLAGS,
//! and EXPUNGE or VANISHED except after FETCH, STORE and SEARCH).

mod auth;
mod fetch_cmd;
mod mailboxes;
mod search_cmd;
mod selected;

#[cfg(test)]
mod tests;

use crate::SessionProps;
use crate::backend::{Backend, MailAccount, MailFolder, blocking};
use crate::capability::capability_line;
use crate::extended::{parse_list, split_search_return};
use crate::response::{self, Status};
use crate::view::View;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Tag;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use postamt_store::{ChangeSignal, Flags, StoreError};
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{error, info, warn};

/// Where a session writes its responses.
pub trait Sink: Send {
    /// Writes `bytes` (buffered; the connection flushes).
    fn send(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

impl Sink for Vec<u8> {
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Bounds of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// BAD responses before `* BYE` and close (at least 1).
    pub max_errors: u32,
    /// Failed logins on one connection before `* BYE`.
    pub max_login_failures: u32,
    /// Largest APPEND.
    pub max_message_size: u64,
    /// Commands on one connection before `* BYE`.
    pub max_commands: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_errors: 20,
            max_login_failures: 3,
            max_message_size: 50 * 1024 * 1024,
            max_commands: 1_000_000,
        }
    }
}

/// Extensions the client turned on with ENABLE (or implicitly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
    pub utf8: bool,
}

/// The tagged reply a command ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    status: Status,
    code: Option<String>,
    text: String,
}

impl Reply {
    fn ok(text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }
    fn ok_code(code: impl Into<String>, text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Ok,
            code: Some(code.into()),
            text: text.into(),
        }
    }
    fn no(code: Option<&str>, text: impl Into<String>) -> Reply {
        Reply {
            status: Status::No,
            code: code.map(str::to_owned),
            text: text.into(),
        }
    }
    fn bad(text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }
}

/// A logged-in user.
struct User<A> {
    name: String,
    account: Arc<A>,
}

/// The selected folder.
struct Selected<F> {
    name: String,
    folder: Arc<Mutex<F>>,
    read_only: bool,
    view: View,
    signal: Option<Arc<ChangeSignal>>,
    generation: u64,
    /// UIDs at or above this are `\Recent` in this session.
    recent_from: u32,
    /// The RECENT count last announced.
    recent_sent: u32,
}

impl<F> Selected<F> {
    fn is_recent(&self, uid: u32) -> bool {
        uid >= self.recent_from
    }

    fn recent_count(&self) -> u32 {
        let from = self.recent_from;
        let n = self.view.uids().len() - self.view.uids().partition_point(|&u| u < from);
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// Something the next client message answers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// AUTHENTICATE PLAIN waits for the client's response.
    Sasl(String),
    /// IDLE runs until DONE.
    Idle(String),
    /// STARTTLS was accepted; the connection runs the handshake.
    StartTls,
}

/// Locks a folder; its state stays consistent across a panic elsewhere
/// (each store call is one update), so a poisoned lock is taken over.
pub(crate) fn lock<F>(m: &Mutex<F>) -> MutexGuard<'_, F> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One IMAP session.
pub struct Session<B: Backend> {
    backend: B,
    props: SessionProps,
    peer: String,
    limits: SessionLimits,
    errors: u32,
    login_failures: u32,
    commands: u64,
    user: Option<User<B::Account>>,
    selected: Option<Selected<<B::Account as MailAccount>::Folder>>,
    enabled: Enabled,
    pending: Pending,
    closed: bool,
    /// A `* BYE` to send (and close) right after the current tagged reply.
    bye_after: Option<&'static str>,
}

/// What kind of command ran, for the refresh that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// No refresh (not selected, LOGOUT, STARTTLS...).
    Nothing,
    /// Refresh; expunges may be announced.
    Sync,
    /// Refresh, but no EXPUNGE (FETCH, STORE, SEARCH by sequence number).
    SyncNoExpunge,
}

impl<B: Backend> Session<B> {
    /// A new session, not authenticated. `peer` is for logs.
    pub fn new(
        backend: B,
        props: SessionProps,
        peer: impl Into<String>,
        limits: SessionLimits,
    ) -> Self {
        Session {
            backend,
            props,
            peer: peer.into(),
            limits: SessionLimits {
                max_errors: limits.max_errors.max(1),
                max_login_failures: limits.max_login_failures.max(1),
                ..limits
            },
            errors: 0,
            login_failures: 0,
            commands: 0,
            user: None,
            selected: None,
            enabled: Enabled::default(),
            pending: Pending::None,
            closed: false,
            bye_after: None,
        }
    }

    /// The greeting (`* OK [CAPABILITY ...] ...`).
    pub fn greeting(&self) -> Vec<u8> {
        response::untagged_status(
            Status::Ok,
            Some(&capability_line(&self.props, false)),
            "Postamt IMAP server ready",
        )
    }

    pub fn props(&self) -> &SessionProps {
        &self.props
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }

    pub fn is_authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// The session is over; the connection closes after flushing.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// STARTTLS was accepted: the connection must drop buffered input,
    /// run the handshake, then call [`Session::tls_established`].
    pub fn wants_tls(&self) -> bool {
        self.pending == Pending::StartTls
    }

    /// The session is in IDLE (the connection polls [`Session::idle_poll`]).
    pub fn is_idling(&self) -> bool {
        matches!(self.pending, Pending::Idle(_))
    }

    /// The next message is an AUTHENTICATE response line.
    pub fn awaiting_sasl(&self) -> bool {
        matches!(self.pending, Pending::Sasl(_))
    }

    /// The change signal of the selected folder and the generation last
    /// seen, for IDLE.
    pub fn idle_signal(&self) -> Option<(Arc<ChangeSignal>, u64)> {
        let sel = self.selected.as_ref()?;
        Some((sel.signal.clone()?, sel.generation))
    }

    pub fn enabled(&self) -> Enabled {
        self.enabled
    }

    /// The TLS handshake after STARTTLS succeeded: the session goes on,
    /// not authenticated, with `secure` set (RFC 3501 6.2.1: forget what
    /// came before). False when no STARTTLS was pending.
    pub fn tls_established(&mut self) -> bool {
        if !self.wants_tls() {
            return false;
        }
        self.pending = Pending::None;
        self.props.secure = true;
        true
    }

    /// The connection cannot do TLS: STARTTLS is neither offered nor accepted.
    pub fn withdraw_tls(&mut self) {
        self.props.tls_available = false;
    }

    /// Ends the session without LOGOUT (connection lost, timeout, shutdown).
    pub fn abort(&mut self, reason: &str) {
        if !self.closed {
            self.closed = true;
            if let Some(u) = &self.user {
                info!(user = %u.name, peer = %self.peer, reason, "session closed without LOGOUT");
            }
        }
        self.selected = None;
    }

    /// Handles one complete client message (a command with its literals,
    /// an AUTHENTICATE response, or IDLE's DONE).
    pub async fn handle_message<W: Sink>(&mut self, msg: &[u8], w: &mut W) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.commands += 1;
        if self.commands > self.limits.max_commands {
            warn!(peer = %self.peer, user = self.user(), "too many commands, closing");
            w.send(&response::bye("Too many commands")).await?;
            self.abort("too many commands");
            return Ok(());
        }
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::Sasl(tag) => self.sasl_response(&tag, msg, w).await,
            Pending::Idle(tag) => self.idle_done(&tag, msg, w).await,
            Pending::StartTls => {
                // Never executed: plaintext after STARTTLS is dropped.
                self.pending = Pending::StartTls;
                Ok(())
            }
            Pending::None => self.command_message(msg, w).await,
        }
    }

    async fn command_message<W: Sink>(&mut self, msg: &[u8], w: &mut W) -> io::Result<()> {
        let tag = raw_tag(msg);
        let (search_ret, rewritten) = match split_search_return(msg) {
            Ok(Some((r, bytes))) => (Some(r), Some(bytes)),
            Ok(None) => (None, None),
            Err(e) => return self.finish(&tag, Reply::bad(e.0), After::Nothing, w).await,
        };
        let msg = rewritten.as_deref().unwrap_or(msg);
        match parse_list(msg) {
            Ok(Some(list)) => {
                let (reply, after) = match &self.user {
                    None => (Reply::bad("Log in first"), After::Nothing),
                    Some(_) => (self.list(list, w).await?, After::Sync),
                };
                return self.finish(&tag, reply, after, w).await;
            }
            Ok(None) => {}
            Err(e) => return self.finish(&tag, Reply::bad(e.0), After::Nothing, w).await,
        }
        match CommandCodec::default().decode(msg) {
            Ok((&[], cmd)) => {
                let tag = cmd.tag.inner().to_string();
                let (reply, after) = self.command(cmd, search_ret, w).await?;
                match reply {
                    Some(reply) => self.finish(&tag, reply, after, w).await,
                    None => Ok(()),
                }
            }
            _ => {
                let text = if tag == "*" {
                    "Invalid tag or command"
                } else {
                    "Unknown command or syntax error"
                };
                self.finish(&tag, Reply::bad(text), After::Nothing, w).await
            }
        }
    }

    /// Sends the refresh that follows a command, then its tagged reply;
    /// counts BADs and closes after too many.
    async fn finish<W: Sink>(
        &mut self,
        tag: &str,
        reply: Reply,
        after: After,
        w: &mut W,
    ) -> io::Result<()> {
        match after {
            After::Nothing => {}
            After::Sync => self.sync(w, true).await?,
            After::SyncNoExpunge => self.sync(w, false).await?,
        }
        if self.closed {
            return Ok(());
        }
        w.send(&response::tagged(
            tag,
            reply.status,
            reply.code.as_deref(),
            &reply.text,
        ))
        .await?;
        if let Some(text) = self.bye_after.take() {
            w.send(&response::bye(text)).await?;
            self.abort(text);
            return Ok(());
        }
        if reply.status == Status::Bad {
            self.errors += 1;
            if self.errors >= self.limits.max_errors {
                warn!(peer = %self.peer, user = self.user(), errors = self.errors, "too many errors, closing");
                w.send(&response::bye("Too many invalid commands")).await?;
                self.abort("too many errors");
            }
        }
        Ok(())
    }

    /// Runs one decoded command; `None` when the command already answered
    /// (LOGOUT, or a continuation request was sent).
    async fn command<W: Sink>(
        &mut self,
        cmd: Command<'_>,
        search_ret: Option<crate::extended::SearchReturn>,
        w: &mut W,
    ) -> io::Result<(Option<Reply>, After)> {
        let tag = cmd.tag.inner().to_string();
        let authed = self.user.is_some();
        let selected = self.selected.is_some();
        let sync = if selected {
            After::Sync
        } else {
            After::Nothing
        };
        let wrong_state = |what: &str| Ok((Some(Reply::bad(what.to_string())), After::Nothing));
        if search_ret.is_some() && !matches!(cmd.body, CommandBody::Search { .. }) {
            return Ok((
                Some(Reply::bad("RETURN is only valid with SEARCH")),
                After::Nothing,
            ));
        }
        match cmd.body {
            CommandBody::Capability => {
                let line = capability_line(&self.props, authed);
                w.send(&response::untagged(&line)).await?;
                Ok((Some(Reply::ok("CAPABILITY completed")), sync))
            }
            CommandBody::Noop => Ok((Some(Reply::ok("NOOP completed")), sync)),
            CommandBody::Logout => {
                w.send(&response::bye("Logging out")).await?;
                w.send(&response::tagged(
                    &tag,
                    Status::Ok,
                    None,
                    "LOGOUT completed",
                ))
                .await?;
                if let Some(u) = &self.user {
                    info!(user = %u.name, peer = %self.peer, "logout");
                }
                self.closed = true;
                self.selected = None;
                Ok((None, After::Nothing))
            }
            CommandBody::Id { parameters } => {
                if let Some(params) = &parameters {
                    let shown: Vec<String> = params
                        .iter()
                        .take(16)
                        .map(|(k, v)| {
                            let v =
                                v.0.as_ref()
                                    .map(|s| String::from_utf8_lossy(s.as_ref()).into_owned());
                            format!(
                                "{}={}",
                                String::from_utf8_lossy(k.as_ref()),
                                v.unwrap_or_else(|| "NIL".into())
                            )
                        })
                        .collect();
                    info!(peer = %self.peer, user = self.user(), client = %shown.join(" "), "client ID");
                }
                w.send(&response::untagged(
                    "ID (\"name\" \"Postamt\" \"vendor\" \"Postamt\" \"support-url\" \"https://postamt.invalid/\")",
                ))
                .await?;
                Ok((Some(Reply::ok("ID completed")), sync))
            }
            CommandBody::StartTLS => {
                if authed {
                    return wrong_state("Already logged in");
                }
                Ok((Some(self.starttls()), After::Nothing))
            }
            CommandBody::Login { username, password } => {
                if authed {
                    return wrong_state("Already logged in");
                }
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = password.declassify().as_ref().to_vec();
                let reply = self.login_plaintext(&user, &pass, "LOGIN", w).await?;
                Ok((Some(reply), After::Nothing))
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if authed {
                    return wrong_state("Already logged in");
                }
                let ir = initial_response.map(|s| s.declassify().to_vec());
                let reply = self.authenticate(&tag, mechanism.as_ref(), ir, w).await?;
                Ok((reply, After::Nothing))
            }
            _ if !authed => wrong_state("Log in first"),
            CommandBody::Enable { capabilities } => {
                let names: Vec<String> = capabilities
                    .as_ref()
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                let reply = self.enable(&names, w).await?;
                Ok((Some(reply), sync))
            }
            CommandBody::Namespace => {
                w.send(&response::untagged("NAMESPACE ((\"\" \"/\")) NIL NIL"))
                    .await?;
                Ok((Some(Reply::ok("NAMESPACE completed")), sync))
            }
            CommandBody::Select {
                mailbox,
                parameters,
            } => {
                let reply = self.select(&mailbox, &parameters, false, w).await?;
                Ok((Some(reply), After::Nothing))
            }
            CommandBody::Examine {
                mailbox,
                parameters,
            } => {
                let reply = self.select(&mailbox, &parameters, true, w).await?;
                Ok((Some(reply), After::Nothing))
            }
            CommandBody::Create { mailbox } => Ok((Some(self.create(&mailbox).await), sync)),
            CommandBody::Delete { mailbox } => Ok((Some(self.delete(&mailbox).await), sync)),
            CommandBody::Rename { from, to } => Ok((Some(self.rename(&from, &to).await), sync)),
            CommandBody::Subscribe { mailbox } => {
                Ok((Some(self.subscribe(&mailbox, true).await), sync))
            }
            CommandBody::Unsubscribe { mailbox } => {
                Ok((Some(self.subscribe(&mailbox, false).await), sync))
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                let list = crate::extended::ListCommand {
                    reference: mailbox_bytes(&reference),
                    patterns: vec![mailbox_wildcard_bytes(&mailbox_wildcard)],
                    ..Default::default()
                };
                Ok((Some(self.list(list, w).await?), sync))
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                let reference = mailbox_bytes(&reference);
                let pattern = mailbox_wildcard_bytes(&mailbox_wildcard);
                Ok((Some(self.lsub(&reference, &pattern, w).await?), sync))
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => Ok((Some(self.status(&mailbox, &item_names, w).await?), sync)),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => Ok((
                Some(self.append(&mailbox, &flags, date.as_ref(), &message).await),
                sync,
            )),
            CommandBody::Idle => {
                w.send(&response::continuation("idling")).await?;
                self.pending = Pending::Idle(tag);
                Ok((None, After::Nothing))
            }
            _ if !selected => wrong_state("No mailbox selected"),
            CommandBody::Check => Ok((Some(Reply::ok("CHECK completed")), After::Sync)),
            CommandBody::Close => Ok((Some(self.close(true).await), After::Nothing)),
            CommandBody::Unselect => Ok((Some(self.close(false).await), After::Nothing)),
            CommandBody::Expunge => Ok((Some(self.expunge(None, w).await?), After::Sync)),
            CommandBody::ExpungeUid { sequence_set } => Ok((
                Some(self.expunge(Some(&sequence_set), w).await?),
                After::Sync,
            )),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                let reply = self
                    .search(&tag, charset.as_ref(), criteria, uid, search_ret, w)
                    .await?;
                Ok((
                    Some(reply),
                    if uid {
                        After::Sync
                    } else {
                        After::SyncNoExpunge
                    },
                ))
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                let reply = self
                    .fetch(&sequence_set, &macro_or_item_names, uid, &modifiers, w)
                    .await?;
                Ok((
                    Some(reply),
                    if uid {
                        After::Sync
                    } else {
                        After::SyncNoExpunge
                    },
                ))
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let reply = self
                    .store(&sequence_set, kind, response, &flags, uid, &modifiers, w)
                    .await?;
                Ok((
                    Some(reply),
                    if uid {
                        After::Sync
                    } else {
                        After::SyncNoExpunge
                    },
                ))
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => Ok((
                Some(self.copy(&sequence_set, &mailbox, uid).await),
                After::Sync,
            )),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => Ok((
                Some(self.move_messages(&sequence_set, &mailbox, uid, w).await?),
                After::Sync,
            )),
            _ => Ok((Some(Reply::bad("Command not supported")), sync)),
        }
    }

    /// Refreshes the selected folder and announces others' changes:
    /// EXPUNGE/VANISHED (when `allow_expunge`), EXISTS, RECENT, FETCH FLAGS.
    async fn sync<W: Sink>(&mut self, w: &mut W, allow_expunge: bool) -> io::Result<()> {
        let user = self.user().map(str::to_owned);
        let Some(sel) = &mut self.selected else {
            return Ok(());
        };
        let folder = sel.folder.clone();
        let generation = sel.signal.as_ref().map(|s| s.generation());
        let res = blocking(move || {
            let mut f = lock(&folder);
            let changes = f.refresh()?;
            let flags: Vec<(u32, Flags, u64)> = changes
                .flags_changed
                .iter()
                .filter_map(|&u| f.record(u).map(|r| (u, r.flags.clone(), r.modseq)))
                .collect();
            Ok((changes, flags, f.first_recent_uid()))
        })
        .await;
        let (changes, flags, recent_from) = match res {
            Ok(r) => r,
            Err(StoreError::NoSuchFolder(_)) => {
                warn!(user = user.as_deref(), peer = %self.peer, folder = %sel.name, "selected folder was deleted");
                w.send(&response::bye("Selected mailbox was deleted"))
                    .await?;
                self.abort("selected folder deleted");
                return Ok(());
            }
            Err(e) => {
                error!(user = user.as_deref(), peer = %self.peer, folder = %sel.name, error = %e, "folder refresh failed");
                return Ok(());
            }
        };
        if let Some(g) = generation {
            sel.generation = g;
        }
        sel.view.mark_gone(&changes.expunged);
        if allow_expunge {
            self.announce_expunges(w).await?;
        }
        let Some(sel) = &mut self.selected else {
            return Ok(());
        };
        let added: Vec<u32> = changes
            .added
            .iter()
            .copied()
            .filter(|u| !changes.expunged.contains(u))
            .collect();
        sel.recent_from = sel.recent_from.min(recent_from.max(1)).max(1);
        let recent_before = sel.recent_sent;
        sel.recent_sent = sel.recent_count();
        if sel.view.add(&added) > 0 {
            w.send(&response::untagged(&format!("{} EXISTS", sel.view.len())))
                .await?;
            // RECENT goes with a size change caused by new mail.
            sel.recent_sent = sel.recent_count();
            if sel.recent_sent != recent_before {
                w.send(&response::untagged(&format!("{} RECENT", sel.recent_sent)))
                    .await?;
            }
        }
        let with_uid = self.enabled.qresync;
        let with_modseq = self.enabled.condstore;
        for (uid, f, modseq) in flags {
            if sel.view.is_gone(uid) {
                continue;
            }
            if let Some(seq) = sel.view.seq(uid) {
                let recent = sel.is_recent(uid);
                w.send(&response::fetch_flags(
                    seq,
                    &f,
                    recent,
                    with_uid.then_some(uid),
                    with_modseq.then_some(modseq),
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// Sends the pending expunges (EXPUNGE, or VANISHED with QRESYNC).
    async fn announce_expunges<W: Sink>(&mut self, w: &mut W) -> io::Result<()> {
        let Some(sel) = &mut self.selected else {
            return Ok(());
        };
        if !sel.view.has_pending_expunges() {
            return Ok(());
        }
        if self.enabled.qresync {
            let uids = sel.view.take_vanished();
            if !uids.is_empty() {
                let set = crate::view::uid_set_string(&uids);
                w.send(&response::untagged(&format!("VANISHED {set}")))
                    .await?;
            }
        } else {
            for seq in sel.view.take_expunges() {
                w.send(&response::untagged(&format!("{seq} EXPUNGE")))
                    .await?;
            }
        }
        Ok(())
    }

    /// IDLE: refreshes when the folder's change signal moved or `force`
    /// (a periodic full check for other processes' changes) and sends
    /// what changed.
    pub async fn idle_poll<W: Sink>(&mut self, w: &mut W, force: bool) -> io::Result<()> {
        if !self.is_idling() {
            return Ok(());
        }
        let moved = match &self.selected {
            Some(sel) => match &sel.signal {
                Some(s) => s.generation() != sel.generation,
                None => false,
            },
            None => return Ok(()),
        };
        if moved || force {
            self.sync(w, true).await?;
        }
        Ok(())
    }

    /// Ends IDLE from the server side (shutdown, timeout): nothing more is
    /// sent for it.
    pub fn end_idle(&mut self) {
        if self.is_idling() {
            self.pending = Pending::None;
        }
    }

    async fn idle_done<W: Sink>(&mut self, tag: &str, msg: &[u8], w: &mut W) -> io::Result<()> {
        match IdleDoneCodec::default().decode(msg) {
            Ok((&[], _)) => {
                let after = if self.selected.is_some() {
                    After::Sync
                } else {
                    After::Nothing
                };
                self.finish(tag, Reply::ok("IDLE terminated"), after, w)
                    .await
            }
            _ => {
                self.finish(tag, Reply::bad("Expected DONE"), After::Nothing, w)
                    .await
            }
        }
    }

    async fn sasl_response<W: Sink>(&mut self, tag: &str, msg: &[u8], w: &mut W) -> io::Result<()> {
        use imap_codec::imap_types::auth::AuthenticateData;
        let reply = match AuthenticateDataCodec::default().decode(msg) {
            Ok((&[], AuthenticateData::Continue(data))) => {
                let data = data.declassify().to_vec();
                self.plain_response(&data, w).await?
            }
            Ok((&[], AuthenticateData::Cancel)) => Reply::bad("AUTHENTICATE cancelled"),
            _ => Reply::bad("Invalid base64 data"),
        };
        self.finish(tag, reply, After::Nothing, w).await
    }
}

/// The tag of a message for a BAD reply: the bytes before the first
/// space when they form a valid tag, else `*`.
fn raw_tag(msg: &[u8]) -> String {
    let end = msg
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(msg.len());
    match Tag::try_from(&msg[..end]) {
        Ok(t) => t.inner().to_string(),
        Err(_) => "*".to_string(),
    }
}

/// The raw bytes of a mailbox argument (`INBOX` for the codec's Inbox).
pub(crate) fn mailbox_bytes(m: &imap_codec::imap_types::mailbox::Mailbox<'_>) -> Vec<u8> {
    use imap_codec::imap_types::mailbox::Mailbox;
    match m {
        Mailbox::Inbox => b"INBOX".to_vec(),
        Mailbox::Other(o) => o.as_ref().to_vec(),
    }
}

fn mailbox_wildcard_bytes(m: &imap_codec::imap_types::mailbox::ListMailbox<'_>) -> Vec<u8> {
    use imap_codec::imap_types::mailbox::ListMailbox;
    match m {
        ListMailbox::Token(t) => t.as_ref().to_vec(),
        ListMailbox::String(s) => s.as_ref().to_vec(),
    }
}
