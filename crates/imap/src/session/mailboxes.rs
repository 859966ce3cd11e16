//! The authenticated state: ENABLE, SELECT/EXAMINE (with CONDSTORE and
//! QRESYNC), CREATE, DELETE, RENAME, SUBSCRIBE, LIST (with LIST-EXTENDED,
//! CHILDREN, SPECIAL-USE and LIST-STATUS), LSUB, STATUS and APPEND.

use super::{Reply, Selected, Session, Sink, lock, mailbox_bytes};
use crate::backend::{Backend, MailAccount, MailFolder, blocking};
use crate::extended::{ListCommand, StatusItem};
use crate::names;
use crate::pattern::Pattern;
use crate::response::{self, Status};
use crate::view::{View, set_contains, uid_set_string};
use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use postamt_store::{Flags, FolderInfo, FolderStatus, SpecialUse, StoreError};
use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex};
use tracing::{error, info};

/// Most keywords listed in a SELECT's FLAGS response.
const MAX_LISTED_KEYWORDS: usize = 64;
/// Longest keyword accepted in STORE/APPEND.
pub(super) const MAX_KEYWORD_LEN: usize = 128;
/// Most flags in one STORE/APPEND.
pub(super) const MAX_FLAGS: usize = 64;

/// A store failure as a tagged reply (`trycreate`: a missing destination
/// says `[TRYCREATE]`, RFC 3501 6.3.11 and 6.4.7).
pub(super) fn store_reply(e: &StoreError, trycreate: bool) -> Reply {
    match e {
        StoreError::BadFolderName(_) => Reply::no(Some("CANNOT"), "Invalid mailbox name"),
        StoreError::NoSuchFolder(_) if trycreate => {
            Reply::no(Some("TRYCREATE"), "Mailbox does not exist")
        }
        StoreError::NoSuchFolder(_) => Reply::no(Some("NONEXISTENT"), "Mailbox does not exist"),
        StoreError::FolderExists(_) => Reply::no(Some("ALREADYEXISTS"), "Mailbox already exists"),
        StoreError::NotAllowed(why) => Reply::no(Some("CANNOT"), why.clone()),
        StoreError::InUse => Reply::no(Some("INUSE"), "Mailbox is in use"),
        StoreError::Gone(_) => Reply::no(Some("EXPUNGEISSUED"), "Message was expunged"),
        StoreError::NoMailbox(_) => Reply::no(Some("UNAVAILABLE"), "No mailbox"),
        StoreError::Io(_) | StoreError::Index(_) | StoreError::InvalidUser(_) => {
            Reply::no(Some("SERVERBUG"), "Internal error, try again later")
        }
    }
}

/// IMAP flags to store flags; `\Recent` and unknown system flags are
/// refused, keywords bounded.
pub(super) fn store_flags(flags: &[Flag<'_>]) -> Result<Flags, Reply> {
    if flags.len() > MAX_FLAGS {
        return Err(Reply::bad("Too many flags"));
    }
    let mut out = Flags::default();
    for f in flags {
        match f {
            Flag::Seen => out.seen = true,
            Flag::Answered => out.answered = true,
            Flag::Flagged => out.flagged = true,
            Flag::Deleted => out.deleted = true,
            Flag::Draft => out.draft = true,
            Flag::Keyword(k) => {
                let k = k.inner();
                if k.len() > MAX_KEYWORD_LEN {
                    return Err(Reply::bad("Keyword too long"));
                }
                if !out.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    out.keywords.insert(k.to_string());
                }
            }
            Flag::Extension(_) => return Err(Reply::bad("Unknown system flag")),
        }
    }
    Ok(out)
}

fn special_use_attr(s: SpecialUse) -> &'static str {
    match s {
        SpecialUse::Sent => "\\Sent",
        SpecialUse::Drafts => "\\Drafts",
        SpecialUse::Trash => "\\Trash",
        SpecialUse::Junk => "\\Junk",
        SpecialUse::Archive => "\\Archive",
    }
}

/// `(MESSAGES 3 UIDNEXT 9 ...)` for `items`.
fn status_items(st: &FolderStatus, items: &[StatusItem]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|i| match i {
            StatusItem::Messages => format!("MESSAGES {}", st.messages),
            StatusItem::Recent => format!("RECENT {}", st.recent),
            StatusItem::UidNext => format!("UIDNEXT {}", st.uid_next),
            StatusItem::UidValidity => format!("UIDVALIDITY {}", st.uid_validity),
            StatusItem::Unseen => format!("UNSEEN {}", st.unseen),
            StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", st.highest_modseq),
            StatusItem::Size => format!("SIZE {}", st.size),
        })
        .collect();
    format!("({})", parts.join(" "))
}

/// `* STATUS "name" (...)`.
fn status_response(name: &str, st: &FolderStatus, items: &[StatusItem], utf8: bool) -> Vec<u8> {
    let mut line = b"* STATUS ".to_vec();
    line.extend_from_slice(&response::mailbox(name, utf8));
    line.push(b' ');
    line.extend_from_slice(status_items(st, items).as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

impl<B: Backend> Session<B> {
    fn account(&self) -> Option<Arc<B::Account>> {
        self.user.as_ref().map(|u| u.account.clone())
    }

    /// Decodes and checks a folder name argument.
    pub(super) fn folder_name(&self, raw: &[u8]) -> Result<String, Reply> {
        let name = names::decode(raw, self.enabled.utf8)
            .map_err(|_| Reply::no(Some("CANNOT"), "Invalid mailbox name"))?;
        names::check(&name).map_err(|_| Reply::no(Some("CANNOT"), "Invalid mailbox name"))?;
        Ok(name)
    }

    /// ENABLE (RFC 5161).
    pub(super) async fn enable<W: Sink>(
        &mut self,
        names: &[String],
        w: &mut W,
    ) -> io::Result<Reply> {
        let mut newly = Vec::new();
        for n in names {
            let n = n.to_ascii_uppercase();
            match n.as_str() {
                "CONDSTORE" if !self.enabled.condstore => {
                    self.enabled.condstore = true;
                    newly.push("CONDSTORE");
                }
                "QRESYNC" if !self.enabled.qresync => {
                    self.enabled.qresync = true;
                    self.enabled.condstore = true;
                    newly.push("QRESYNC");
                }
                "UTF8=ACCEPT" if !self.enabled.utf8 => {
                    self.enabled.utf8 = true;
                    newly.push("UTF8=ACCEPT");
                }
                _ => {}
            }
        }
        let mut line = String::from("ENABLED");
        for n in newly {
            line.push(' ');
            line.push_str(n);
        }
        w.send(&response::untagged(&line)).await?;
        Ok(Reply::ok("ENABLE completed"))
    }

    /// SELECT and EXAMINE, with `(CONDSTORE)` and `(QRESYNC (...))`.
    pub(super) async fn select<W: Sink>(
        &mut self,
        mailbox: &Mailbox<'_>,
        params: &[SelectParameter],
        read_only: bool,
        w: &mut W,
    ) -> io::Result<Reply> {
        // A failed SELECT leaves no folder selected (RFC 3501 6.3.1).
        if self.selected.take().is_some() && self.enabled.qresync {
            w.send(&response::untagged_status(
                Status::Ok,
                Some("CLOSED"),
                "Previous mailbox closed",
            ))
            .await?;
        }
        let name = match self.folder_name(&mailbox_bytes(mailbox)) {
            Ok(n) => n,
            Err(r) => return Ok(r),
        };
        let mut qresync = None;
        for p in params {
            match p {
                SelectParameter::CondStore => self.enabled.condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.enabled.qresync {
                        return Ok(Reply::bad("QRESYNC is not enabled"));
                    }
                    qresync = Some((
                        uid_validity.get(),
                        mod_sequence_value.get(),
                        known_uids.clone(),
                    ));
                }
            }
        }
        let Some(account) = self.account() else {
            return Ok(Reply::bad("Log in first"));
        };
        let n = name.clone();
        let since = qresync.as_ref().map(|(v, m, _)| (*v, *m));
        let opened = blocking(move || {
            let folder = account.open(&n)?;
            let signal = account.signal(&n).ok();
            let vanished = match since {
                Some((v, m)) if v == folder.uid_validity() => Some(folder.vanished_since(m)?),
                _ => None,
            };
            Ok((folder, signal, vanished))
        })
        .await;
        let (folder, signal, vanished) = match opened {
            Ok(x) => x,
            Err(e) => {
                if !matches!(
                    e,
                    StoreError::NoSuchFolder(_) | StoreError::BadFolderName(_)
                ) {
                    error!(user = self.user(), peer = %self.peer, folder = %name, error = %e, "cannot open folder");
                }
                return Ok(store_reply(&e, false));
            }
        };
        let uids: Vec<u32> = folder.messages().iter().map(|m| m.uid).collect();
        let first_unseen = folder.messages().iter().position(|m| !m.flags.seen);
        let mut keywords: BTreeSet<&str> = BTreeSet::new();
        for m in folder.messages() {
            for k in &m.flags.keywords {
                if keywords.len() < MAX_LISTED_KEYWORDS {
                    keywords.insert(k.as_str());
                }
            }
        }
        let mut flag_names = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
        for k in &keywords {
            flag_names.push(' ');
            flag_names.push_str(k);
        }
        let uid_validity = folder.uid_validity();
        let uid_next = folder.uid_next();
        let highest_modseq = folder.highest_modseq();
        let recent_from = folder.first_recent_uid().max(1);
        let view = View::new(uids);
        let mut sel = Selected {
            name: name.clone(),
            folder: Arc::new(Mutex::new(folder)),
            read_only,
            view,
            generation: signal.as_ref().map_or(0, |s| s.generation()),
            signal,
            recent_from,
            recent_sent: 0,
        };
        sel.recent_sent = sel.recent_count();
        w.send(&response::untagged(&format!("FLAGS ({flag_names})")))
            .await?;
        let perm = if read_only {
            "PERMANENTFLAGS ()".to_string()
        } else {
            format!("PERMANENTFLAGS ({flag_names} \\*)")
        };
        w.send(&response::untagged_status(
            Status::Ok,
            Some(&perm),
            "Flags permitted",
        ))
        .await?;
        w.send(&response::untagged(&format!("{} EXISTS", sel.view.len())))
            .await?;
        w.send(&response::untagged(&format!("{} RECENT", sel.recent_sent)))
            .await?;
        if let Some(i) = first_unseen {
            w.send(&response::untagged_status(
                Status::Ok,
                Some(&format!("UNSEEN {}", i + 1)),
                "First unseen",
            ))
            .await?;
        }
        w.send(&response::untagged_status(
            Status::Ok,
            Some(&format!("UIDVALIDITY {uid_validity}")),
            "UIDs valid",
        ))
        .await?;
        w.send(&response::untagged_status(
            Status::Ok,
            Some(&format!("UIDNEXT {uid_next}")),
            "Predicted next UID",
        ))
        .await?;
        w.send(&response::untagged_status(
            Status::Ok,
            Some(&format!("HIGHESTMODSEQ {highest_modseq}")),
            "Highest",
        ))
        .await?;
        if let (Some((_, modseq, known)), Some(vanished)) = (qresync, vanished) {
            let star = sel.view.max_uid().max(uid_next.saturating_sub(1));
            let in_known = |u: u32| known.as_ref().is_none_or(|k| set_contains(k, u, star));
            let gone: Vec<u32> = vanished.into_iter().filter(|&u| in_known(u)).collect();
            if !gone.is_empty() {
                w.send(&response::untagged(&format!(
                    "VANISHED (EARLIER) {}",
                    uid_set_string(&gone)
                )))
                .await?;
            }
            let changed: Vec<(u32, Flags, u64)> = {
                let f = lock(&sel.folder);
                f.messages()
                    .iter()
                    .filter(|m| m.modseq > modseq && in_known(m.uid))
                    .map(|m| (m.uid, m.flags.clone(), m.modseq))
                    .collect()
            };
            for (uid, flags, ms) in changed {
                if let Some(seq) = sel.view.seq(uid) {
                    w.send(&response::fetch_flags(
                        seq,
                        &flags,
                        sel.is_recent(uid),
                        Some(uid),
                        Some(ms),
                    ))
                    .await?;
                }
            }
        }
        info!(
            user = self.user(),
            peer = %self.peer,
            folder = %name,
            messages = sel.view.len(),
            read_only,
            "select"
        );
        self.selected = Some(sel);
        Ok(if read_only {
            Reply::ok_code("READ-ONLY", "EXAMINE completed")
        } else {
            Reply::ok_code("READ-WRITE", "SELECT completed")
        })
    }

    /// CREATE (a trailing delimiter is dropped, RFC 3501 6.3.3).
    pub(super) async fn create(&mut self, mailbox: &Mailbox<'_>) -> Reply {
        let mut raw = mailbox_bytes(mailbox);
        if raw.len() > 1 && raw.last() == Some(&b'/') {
            raw.pop();
        }
        let name = match self.folder_name(&raw) {
            Ok(n) => n,
            Err(r) => return r,
        };
        if name == "INBOX" {
            return Reply::no(Some("ALREADYEXISTS"), "INBOX always exists");
        }
        let Some(account) = self.account() else {
            return Reply::bad("Log in first");
        };
        let n = name.clone();
        match blocking(move || account.create(&n)).await {
            Ok(()) => {
                info!(user = self.user(), peer = %self.peer, folder = %name, "create");
                Reply::ok("CREATE completed")
            }
            Err(e) => store_reply(&e, false),
        }
    }

    /// DELETE (not INBOX, not the selected folder).
    pub(super) async fn delete(&mut self, mailbox: &Mailbox<'_>) -> Reply {
        let name = match self.folder_name(&mailbox_bytes(mailbox)) {
            Ok(n) => n,
            Err(r) => return r,
        };
        if name == "INBOX" {
            return Reply::no(Some("CANNOT"), "INBOX cannot be deleted");
        }
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            return Reply::no(Some("INUSE"), "Close the mailbox before deleting it");
        }
        let Some(account) = self.account() else {
            return Reply::bad("Log in first");
        };
        let n = name.clone();
        match blocking(move || account.delete(&n)).await {
            Ok(()) => {
                info!(user = self.user(), peer = %self.peer, folder = %name, "delete");
                Reply::ok("DELETE completed")
            }
            Err(e) => store_reply(&e, false),
        }
    }

    /// RENAME (not onto INBOX, not the selected folder).
    pub(super) async fn rename(&mut self, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Reply {
        let (from, to) = match (
            self.folder_name(&mailbox_bytes(from)),
            self.folder_name(&mailbox_bytes(to)),
        ) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        if to == "INBOX" {
            return Reply::no(Some("ALREADYEXISTS"), "INBOX always exists");
        }
        if self.selected.as_ref().is_some_and(|s| s.name == from) {
            return Reply::no(Some("INUSE"), "Close the mailbox before renaming it");
        }
        let Some(account) = self.account() else {
            return Reply::bad("Log in first");
        };
        let (f, t) = (from.clone(), to.clone());
        match blocking(move || account.rename(&f, &t)).await {
            Ok(()) => {
                info!(user = self.user(), peer = %self.peer, from = %from, to = %to, "rename");
                Reply::ok("RENAME completed")
            }
            Err(e) => store_reply(&e, false),
        }
    }

    /// SUBSCRIBE / UNSUBSCRIBE.
    pub(super) async fn subscribe(&mut self, mailbox: &Mailbox<'_>, on: bool) -> Reply {
        let name = match self.folder_name(&mailbox_bytes(mailbox)) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let Some(account) = self.account() else {
            return Reply::bad("Log in first");
        };
        match blocking(move || account.subscribe(&name, on)).await {
            Ok(()) if on => Reply::ok("SUBSCRIBE completed"),
            Ok(()) => Reply::ok("UNSUBSCRIBE completed"),
            Err(e) => store_reply(&e, false),
        }
    }

    /// Decodes a reference or pattern (wildcards are plain ASCII, so
    /// modified UTF-7 decoding leaves them alone).
    fn pattern_text(&self, raw: &[u8]) -> Option<String> {
        if self.enabled.utf8 {
            String::from_utf8(raw.to_vec()).ok()
        } else {
            names::decode_mutf7(std::str::from_utf8(raw).ok()?).ok()
        }
    }

    /// LIST, basic (RFC 3501 6.3.8) or extended (RFC 5258, 5819, 6154).
    pub(super) async fn list<W: Sink>(&mut self, cmd: ListCommand, w: &mut W) -> io::Result<Reply> {
        let utf8 = self.enabled.utf8;
        if !cmd.extended && cmd.patterns.len() == 1 && cmd.patterns[0].is_empty() {
            w.send(b"* LIST (\\Noselect) \"/\" \"\"\r\n").await?;
            return Ok(Reply::ok("LIST completed"));
        }
        let Some(reference) = self.pattern_text(&cmd.reference) else {
            return Ok(Reply::bad("Invalid reference name"));
        };
        let mut patterns = Vec::new();
        for p in &cmd.patterns {
            let Some(text) = self.pattern_text(p) else {
                return Ok(Reply::bad("Invalid mailbox pattern"));
            };
            let Some(pat) = Pattern::new(&reference, &text) else {
                return Ok(Reply::bad("Mailbox pattern too long"));
            };
            patterns.push(pat);
        }
        let Some(account) = self.account() else {
            return Ok(Reply::bad("Log in first"));
        };
        let acc = account.clone();
        let folders = match blocking(move || acc.list()).await {
            Ok(f) => f,
            Err(e) => return Ok(store_reply(&e, false)),
        };
        let wanted = |f: &FolderInfo| {
            (!cmd.select.subscribed || f.subscribed)
                && (!cmd.select.special_use || f.special_use.is_some())
        };
        for f in &folders {
            if !patterns.iter().any(|p| p.matches(&f.name)) {
                continue;
            }
            let mut childinfo = false;
            if !wanted(f) {
                let prefix = format!("{}/", f.name);
                if cmd.select.recursive_match
                    && folders
                        .iter()
                        .any(|c| c.name.starts_with(&prefix) && wanted(c))
                {
                    childinfo = true;
                } else {
                    continue;
                }
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !f.exists {
                attrs.push(if cmd.extended {
                    "\\NonExistent"
                } else {
                    "\\Noselect"
                });
            }
            attrs.push(if f.has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if let Some(s) = f.special_use {
                attrs.push(special_use_attr(s));
            }
            if f.subscribed && (cmd.select.subscribed || cmd.ret.subscribed) {
                attrs.push("\\Subscribed");
            }
            let mut line = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
            line.extend_from_slice(&response::mailbox(&f.name, utf8));
            if childinfo {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            line.extend_from_slice(b"\r\n");
            w.send(&line).await?;
            if let Some(items) = &cmd.ret.status
                && f.exists
            {
                let acc = account.clone();
                let n = f.name.clone();
                match blocking(move || acc.status(&n)).await {
                    Ok(st) => w.send(&status_response(&f.name, &st, items, utf8)).await?,
                    Err(e) => {
                        error!(user = self.user(), folder = %f.name, error = %e, "LIST-STATUS failed");
                    }
                }
            }
        }
        Ok(Reply::ok("LIST completed"))
    }

    /// LSUB (RFC 3501 6.3.9).
    pub(super) async fn lsub<W: Sink>(
        &mut self,
        reference: &[u8],
        pattern: &[u8],
        w: &mut W,
    ) -> io::Result<Reply> {
        let utf8 = self.enabled.utf8;
        let (Some(reference), Some(pattern)) =
            (self.pattern_text(reference), self.pattern_text(pattern))
        else {
            return Ok(Reply::bad("Invalid mailbox pattern"));
        };
        let Some(pat) = Pattern::new(&reference, &pattern) else {
            return Ok(Reply::bad("Mailbox pattern too long"));
        };
        let Some(account) = self.account() else {
            return Ok(Reply::bad("Log in first"));
        };
        let folders = match blocking(move || account.list()).await {
            Ok(f) => f,
            Err(e) => return Ok(store_reply(&e, false)),
        };
        for f in folders
            .iter()
            .filter(|f| f.subscribed && pat.matches(&f.name))
        {
            let attrs = if f.exists { "" } else { "\\Noselect" };
            let mut line = format!("* LSUB ({attrs}) \"/\" ").into_bytes();
            line.extend_from_slice(&response::mailbox(&f.name, utf8));
            line.extend_from_slice(b"\r\n");
            w.send(&line).await?;
        }
        Ok(Reply::ok("LSUB completed"))
    }

    /// STATUS (RFC 3501 6.3.10, CONDSTORE's HIGHESTMODSEQ, STATUS=SIZE).
    pub(super) async fn status<W: Sink>(
        &mut self,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        w: &mut W,
    ) -> io::Result<Reply> {
        let name = match self.folder_name(&mailbox_bytes(mailbox)) {
            Ok(n) => n,
            Err(r) => return Ok(r),
        };
        let mut wanted = Vec::new();
        for i in items {
            wanted.push(match i {
                StatusDataItemName::Messages => StatusItem::Messages,
                StatusDataItemName::Recent => StatusItem::Recent,
                StatusDataItemName::UidNext => StatusItem::UidNext,
                StatusDataItemName::UidValidity => StatusItem::UidValidity,
                StatusDataItemName::Unseen => StatusItem::Unseen,
                StatusDataItemName::HighestModSeq => {
                    self.enabled.condstore = true;
                    StatusItem::HighestModSeq
                }
                StatusDataItemName::Size => StatusItem::Size,
                _ => return Ok(Reply::bad("Unsupported STATUS item")),
            });
        }
        let Some(account) = self.account() else {
            return Ok(Reply::bad("Log in first"));
        };
        let n = name.clone();
        match blocking(move || account.status(&n)).await {
            Ok(st) => {
                w.send(&status_response(&name, &st, &wanted, self.enabled.utf8))
                    .await?;
                Ok(Reply::ok("STATUS completed"))
            }
            Err(e) => Ok(store_reply(&e, false)),
        }
    }

    /// APPEND (RFC 3501 6.3.11, UIDPLUS's APPENDUID).
    pub(super) async fn append(
        &mut self,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        message: &LiteralOrLiteral8<'_>,
    ) -> Reply {
        let name = match self.folder_name(&mailbox_bytes(mailbox)) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let flags = match store_flags(flags) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let data: &[u8] = match message {
            LiteralOrLiteral8::Literal(l) => l.data(),
            LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
        };
        if data.len() as u64 > self.limits.max_message_size {
            return Reply::no(Some("TOOBIG"), "Message too large");
        }
        if data.is_empty() {
            return Reply::no(None, "Empty message");
        }
        let internal = date.map(|d| d.as_ref().timestamp());
        let Some(account) = self.account() else {
            return Reply::bad("Log in first");
        };
        let (n, size) = (name.clone(), data.len());
        let data = data.to_vec();
        match blocking(move || account.append(&n, &data, &flags, internal)).await {
            Ok((validity, uid)) => {
                info!(user = self.user(), peer = %self.peer, folder = %name, uid, size, "append");
                Reply::ok_code(format!("APPENDUID {validity} {uid}"), "APPEND completed")
            }
            Err(e) => {
                if matches!(e, StoreError::Io(_) | StoreError::Index(_)) {
                    error!(user = self.user(), folder = %name, error = %e, "append failed");
                }
                store_reply(&e, true)
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn flags_convert_and_refuse_system_extensions() {
        let f = store_flags(&[
            Flag::Seen,
            Flag::Draft,
            Flag::Keyword("$Label1".try_into().unwrap()),
            Flag::Keyword("$label1".try_into().unwrap()),
        ])
        .unwrap();
        assert!(f.seen && f.draft && !f.deleted);
        assert_eq!(f.keywords.len(), 1, "keywords compare case-insensitively");
        let ext = Flag::system("Recent".try_into().unwrap());
        assert!(store_flags(&[ext]).is_err());
    }

    #[test]
    fn status_items_render() {
        let st = FolderStatus {
            messages: 3,
            uid_next: 9,
            size: 100,
            ..Default::default()
        };
        assert_eq!(
            status_items(
                &st,
                &[StatusItem::Messages, StatusItem::UidNext, StatusItem::Size]
            ),
            "(MESSAGES 3 UIDNEXT 9 SIZE 100)"
        );
        assert_eq!(
            status_response("Entwürfe", &st, &[StatusItem::Messages], false),
            b"* STATUS \"Entw&APw-rfe\" (MESSAGES 3)\r\n"
        );
    }
}
