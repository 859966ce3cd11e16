//! The selected state's changing commands: CLOSE, UNSELECT, EXPUNGE and
//! UID EXPUNGE, STORE (with CONDSTORE's UNCHANGEDSINCE), COPY and MOVE
//! (with UIDPLUS's COPYUID).

use super::mailboxes::{store_flags, store_reply};
use super::{Reply, Session, Sink, lock, mailbox_bytes};
use crate::backend::{Backend, MailFolder, blocking};
use crate::response;
use crate::view::{Picked, uid_set_string};
use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use postamt_store::{CopyUids, FlagOp, Flags};
use std::io;
use tracing::{error, info};

impl<B: Backend> Session<B> {
    /// The messages a set names that the store still has.
    pub(super) fn pick(&self, set: &SequenceSet, uid: bool) -> Result<Vec<Picked>, Reply> {
        let Some(sel) = &self.selected else {
            return Err(Reply::bad("No mailbox selected"));
        };
        sel.view
            .resolve(set, uid)
            .map(|p| p.into_iter().filter(|p| !sel.view.is_gone(p.uid)).collect())
            .map_err(|e| Reply::bad(e.to_string()))
    }

    /// CLOSE (`expunge`: removes `\Deleted` messages silently when
    /// read-write) and UNSELECT.
    pub(super) async fn close(&mut self, expunge: bool) -> Reply {
        let Some(sel) = self.selected.take() else {
            return Reply::bad("No mailbox selected");
        };
        if expunge && !sel.read_only {
            let folder = sel.folder.clone();
            match blocking(move || lock(&folder).expunge(None)).await {
                Ok(gone) if !gone.is_empty() => {
                    info!(user = self.user(), peer = %self.peer, folder = %sel.name, expunged = gone.len(), "expunge on close");
                }
                Ok(_) => {}
                Err(e) => {
                    error!(user = self.user(), folder = %sel.name, error = %e, "expunge on close failed");
                    return store_reply(&e, false);
                }
            }
        }
        if expunge {
            Reply::ok("CLOSE completed")
        } else {
            Reply::ok("UNSELECT completed")
        }
    }

    /// EXPUNGE, or UID EXPUNGE of `only`.
    pub(super) async fn expunge<W: Sink>(
        &mut self,
        only: Option<&SequenceSet>,
        w: &mut W,
    ) -> io::Result<Reply> {
        let restrict = match only {
            Some(set) => match self.pick(set, true) {
                Ok(p) => Some(p.into_iter().map(|p| p.uid).collect::<Vec<u32>>()),
                Err(r) => return Ok(r),
            },
            None => None,
        };
        let Some(sel) = &mut self.selected else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if sel.read_only {
            return Ok(Reply::no(Some("READ-ONLY"), "Mailbox is read-only"));
        }
        let folder = sel.folder.clone();
        let gone = match blocking(move || lock(&folder).expunge(restrict.as_deref())).await {
            Ok(g) => g,
            Err(e) => return Ok(store_reply(&e, false)),
        };
        if !gone.is_empty() {
            info!(
                user = self.user.as_ref().map(|u| u.name.as_str()),
                peer = %self.peer,
                folder = %sel.name,
                uids = %uid_set_string(&gone),
                count = gone.len(),
                "expunge"
            );
        }
        sel.view.mark_gone(&gone);
        self.announce_expunges(w).await?;
        Ok(Reply::ok("EXPUNGE completed"))
    }

    /// STORE and UID STORE.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store<W: Sink>(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        resp: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
        w: &mut W,
    ) -> io::Result<Reply> {
        let picked = match self.pick(set, uid) {
            Ok(p) => p,
            Err(r) => return Ok(r),
        };
        let flags = match store_flags(flags) {
            Ok(f) => f,
            Err(r) => return Ok(r),
        };
        let mut unchanged_since = None;
        for m in modifiers {
            let StoreModifier::UnchangedSince(v) = m;
            unchanged_since = Some(*v);
            self.enabled.condstore = true;
        }
        let condstore = self.enabled.condstore;
        let with_uid = uid || self.enabled.qresync;
        let Some(sel) = &mut self.selected else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if sel.read_only {
            return Ok(Reply::no(Some("READ-ONLY"), "Mailbox is read-only"));
        }
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let uids: Vec<u32> = picked.iter().map(|p| p.uid).collect();
        let folder = sel.folder.clone();
        let result = blocking(move || {
            let mut f = lock(&folder);
            let outcome = f.store_flags(&uids, op, &flags, unchanged_since)?;
            let after: Vec<(u32, Flags, u64)> = uids
                .iter()
                .filter(|u| !outcome.conflicts.contains(u))
                .filter_map(|&u| f.record(u).map(|r| (u, r.flags.clone(), r.modseq)))
                .collect();
            Ok((outcome, after))
        })
        .await;
        let (outcome, after) = match result {
            Ok(x) => x,
            Err(e) => return Ok(store_reply(&e, false)),
        };
        let silent = resp == StoreResponse::Silent;
        for (u, f, modseq) in &after {
            // With .SILENT, CONDSTORE still reports the new MODSEQ of
            // what changed (RFC 7162 3.2).
            if silent && !(condstore && outcome.changed.contains(u)) {
                continue;
            }
            let Some(seq) = sel.view.seq(*u) else {
                continue;
            };
            let shown = if silent { None } else { Some(f) };
            let line = match shown {
                Some(f) => response::fetch_flags(
                    seq,
                    f,
                    sel.is_recent(*u),
                    with_uid.then_some(*u),
                    condstore.then_some(*modseq),
                ),
                None => response::untagged(&format!(
                    "{seq} FETCH ({}MODSEQ ({modseq}))",
                    if uid {
                        format!("UID {u} ")
                    } else {
                        String::new()
                    }
                )),
            };
            w.send(&line).await?;
        }
        if !outcome.conflicts.is_empty() {
            let set: Vec<u32> = if uid {
                outcome.conflicts.clone()
            } else {
                outcome
                    .conflicts
                    .iter()
                    .filter_map(|&u| sel.view.seq(u))
                    .collect()
            };
            return Ok(Reply::ok_code(
                format!("MODIFIED {}", uid_set_string(&set)),
                "Conditional STORE failed for some messages",
            ));
        }
        Ok(Reply::ok("STORE completed"))
    }

    /// COPY and UID COPY.
    pub(super) async fn copy(
        &mut self,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
    ) -> Reply {
        let picked = match self.pick(set, uid) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let dest = match self.folder_name(&mailbox_bytes(mailbox)) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let Some(sel) = &self.selected else {
            return Reply::bad("No mailbox selected");
        };
        if picked.is_empty() {
            return Reply::ok("No messages copied");
        }
        let uids: Vec<u32> = picked.iter().map(|p| p.uid).collect();
        let folder = sel.folder.clone();
        let d = dest.clone();
        match blocking(move || lock(&folder).copy(&uids, &d)).await {
            Ok(c) => {
                info!(user = self.user(), peer = %self.peer, from = %sel.name, to = %dest, count = c.source.len(), "copy");
                match copyuid(&c) {
                    Some(code) => Reply::ok_code(code, "COPY completed"),
                    None => Reply::ok("COPY completed"),
                }
            }
            Err(e) => store_reply(&e, true),
        }
    }

    /// MOVE and UID MOVE (RFC 6851): COPYUID in an untagged OK, then the
    /// expunges.
    pub(super) async fn move_messages<W: Sink>(
        &mut self,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        w: &mut W,
    ) -> io::Result<Reply> {
        let picked = match self.pick(set, uid) {
            Ok(p) => p,
            Err(r) => return Ok(r),
        };
        let dest = match self.folder_name(&mailbox_bytes(mailbox)) {
            Ok(n) => n,
            Err(r) => return Ok(r),
        };
        let Some(sel) = &mut self.selected else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if sel.read_only {
            return Ok(Reply::no(Some("READ-ONLY"), "Mailbox is read-only"));
        }
        if picked.is_empty() {
            return Ok(Reply::ok("No messages moved"));
        }
        let uids: Vec<u32> = picked.iter().map(|p| p.uid).collect();
        let folder = sel.folder.clone();
        let d = dest.clone();
        let moved = match blocking(move || lock(&folder).move_to(&uids, &d)).await {
            Ok(c) => c,
            Err(e) => return Ok(store_reply(&e, true)),
        };
        info!(
            user = self.user.as_ref().map(|u| u.name.as_str()),
            peer = %self.peer,
            from = %sel.name,
            to = %dest,
            uids = %uid_set_string(&moved.source),
            count = moved.source.len(),
            "move"
        );
        if let Some(code) = copyuid(&moved) {
            w.send(&response::untagged_status(
                response::Status::Ok,
                Some(&code),
                "Moved",
            ))
            .await?;
        }
        sel.view.mark_gone(&moved.source);
        self.announce_expunges(w).await?;
        Ok(Reply::ok("MOVE completed"))
    }
}

/// `COPYUID v src dst`, when there is something to say.
fn copyuid(c: &CopyUids) -> Option<String> {
    if c.source.is_empty() || c.dest.is_empty() || c.uid_validity == 0 {
        return None;
    }
    Some(format!(
        "COPYUID {} {} {}",
        c.uid_validity,
        join_in_order(&c.source),
        join_in_order(&c.dest)
    ))
}

/// UIDs in the order given (COPYUID pairs source and destination by
/// position, so they are not sorted); runs of consecutive UIDs compress.
fn join_in_order(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.saturating_add(1) && end != u32::MAX {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn copyuid_keeps_the_pairing_order() {
        let c = CopyUids {
            uid_validity: 7,
            source: vec![4, 5, 6, 9],
            dest: vec![20, 21, 22, 23],
        };
        assert_eq!(copyuid(&c).unwrap(), "COPYUID 7 4:6,9 20:23");
        assert_eq!(join_in_order(&[9, 3, 4]), "9,3:4");
        assert!(copyuid(&CopyUids::default()).is_none());
    }
}
