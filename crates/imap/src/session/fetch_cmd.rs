//! FETCH and UID FETCH: resolves the set, adds UID (UID FETCH) and MODSEQ
//! (CONDSTORE) to the items, sets `\Seen` first when a non-PEEK body
//! section is asked for, applies CHANGEDSINCE and VANISHED (RFC 7162),
//! and renders the messages with [`crate::fetch`] in bounded batches on a
//! blocking thread, so a large FETCH streams out instead of piling up.

use super::{Reply, Session, Sink, lock};
use crate::backend::{Backend, MailFolder, blocking};
use crate::fetch::{self, FetchError, MessageView};
use crate::response;
use crate::view::{Picked, set_contains, uid_set_string};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::sequence::SequenceSet;
use postamt_store::{FlagOp, Flags, StoreError};
use std::io;
use std::sync::Arc;
use tracing::{error, info, warn};

/// A batch ends after this many bytes of responses...
const BATCH_BYTES: usize = 256 * 1024;
/// ...or this many messages.
const BATCH_MESSAGES: usize = 500;

/// What one batch produced.
struct Batch {
    out: Vec<u8>,
    next: usize,
    /// Messages whose data was read: (uid, queue id), for the log.
    read: Vec<(u32, Option<Arc<str>>)>,
    failure: Option<FetchError>,
}

fn is_gone(e: &FetchError) -> bool {
    match e {
        FetchError::Store(StoreError::Gone(_)) => true,
        FetchError::Store(StoreError::Io(io)) => io.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

impl<B: Backend> Session<B> {
    pub(super) async fn fetch<W: Sink>(
        &mut self,
        set: &SequenceSet,
        names: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
        w: &mut W,
    ) -> io::Result<Reply> {
        let picked = match self.pick(set, uid) {
            Ok(p) => p,
            Err(r) => return Ok(r),
        };
        let mut items: Vec<MessageDataItemName<'static>> = match names {
            MacroOrMessageDataItemNames::Macro(m) => m
                .expand()
                .into_iter()
                .map(IntoStatic::into_static)
                .collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
                v.iter().cloned().map(IntoStatic::into_static).collect()
            }
        };
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(v) => {
                    changed_since = Some(v.get());
                    self.enabled.condstore = true;
                }
                FetchModifier::Vanished => vanished = true,
            }
        }
        if vanished && (!uid || !self.enabled.qresync || changed_since.is_none()) {
            return Ok(Reply::bad(
                "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled",
            ));
        }
        if items
            .iter()
            .any(|i| matches!(i, MessageDataItemName::ModSeq))
        {
            self.enabled.condstore = true;
        }
        // With QRESYNC every FETCH response carries the UID (RFC 7162 3.2.4).
        if (uid || self.enabled.qresync) && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        if self.enabled.condstore && !items.contains(&MessageDataItemName::ModSeq) {
            items.push(MessageDataItemName::ModSeq);
        }
        let Some(sel) = &self.selected else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        let sets_seen = !sel.read_only && fetch::implies_seen(&items);
        if sets_seen && !items.contains(&MessageDataItemName::Flags) {
            items.push(MessageDataItemName::Flags);
        }
        let needs_data = fetch::needs_data(&items);
        let folder = sel.folder.clone();
        let recent_from = sel.recent_from;
        let folder_name = sel.name.clone();

        if let (true, Some(since)) = (vanished, changed_since) {
            let f = folder.clone();
            let star = sel.view.max_uid();
            let set = set.clone();
            match blocking(move || lock(&f).vanished_since(since)).await {
                Ok(v) => {
                    let v: Vec<u32> = v
                        .into_iter()
                        .filter(|&u| set_contains(&set, u, star))
                        .collect();
                    if !v.is_empty() {
                        w.send(&response::untagged(&format!(
                            "VANISHED (EARLIER) {}",
                            uid_set_string(&v)
                        )))
                        .await?;
                    }
                }
                Err(e) => error!(user = self.user(), error = %e, "VANISHED lookup failed"),
            }
        }

        if sets_seen {
            let f = folder.clone();
            let unseen: Vec<u32> = picked.iter().map(|p| p.uid).collect();
            let done = blocking(move || {
                let mut f = lock(&f);
                let todo: Vec<u32> = unseen
                    .into_iter()
                    .filter(|&u| f.record(u).is_some_and(|r| !r.flags.seen))
                    .collect();
                if todo.is_empty() {
                    return Ok(());
                }
                let seen = Flags {
                    seen: true,
                    ..Default::default()
                };
                f.store_flags(&todo, FlagOp::Add, &seen, None).map(|_| ())
            })
            .await;
            if let Err(e) = done {
                warn!(user = self.user(), error = %e, "setting \\Seen before FETCH failed");
            }
        }

        let items = Arc::new(items);
        let picked = Arc::new(picked);
        let mut start = 0;
        while start < picked.len() {
            let (f, items, picked) = (folder.clone(), items.clone(), picked.clone());
            let batch = blocking(move || {
                Ok(render_batch(
                    &*lock(&f),
                    &picked,
                    start,
                    &items,
                    recent_from,
                    changed_since,
                    needs_data,
                ))
            })
            .await;
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    error!(user = self.user(), error = %e, "FETCH failed");
                    return Ok(Reply::no(
                        Some("SERVERBUG"),
                        "Internal error, try again later",
                    ));
                }
            };
            w.send(&batch.out).await?;
            for (uid, queue_id) in &batch.read {
                info!(
                    user = self.user(),
                    peer = %self.peer,
                    folder = %folder_name,
                    uid,
                    queue_id = queue_id.as_deref(),
                    "fetch body"
                );
            }
            if let Some(e) = batch.failure {
                return Ok(match e {
                    FetchError::UnknownCte => {
                        Reply::no(Some("UNKNOWN-CTE"), "Unknown content transfer encoding")
                    }
                    FetchError::Store(e) => {
                        error!(user = self.user(), error = %e, "reading a message for FETCH failed");
                        Reply::no(Some("SERVERBUG"), "Internal error, try again later")
                    }
                });
            }
            start = batch.next.max(start + 1);
        }
        Ok(Reply::ok("FETCH completed"))
    }
}

/// Renders messages from `picked[start..]` until a batch bound.
fn render_batch<F: MailFolder>(
    f: &F,
    picked: &[Picked],
    start: usize,
    items: &[MessageDataItemName<'static>],
    recent_from: u32,
    changed_since: Option<u64>,
    needs_data: bool,
) -> Batch {
    let mut batch = Batch {
        out: Vec::new(),
        next: start,
        read: Vec::new(),
        failure: None,
    };
    let mut j = start;
    while j < picked.len() && batch.out.len() < BATCH_BYTES && j - start < BATCH_MESSAGES {
        let p = picked[j];
        j += 1;
        let Some(rec) = f.record(p.uid) else {
            continue;
        };
        if changed_since.is_some_and(|cs| rec.modseq <= cs) {
            continue;
        }
        let view = MessageView {
            seq: p.seq,
            record: rec,
            recent: p.uid >= recent_from,
        };
        let mut load = || f.read(p.uid);
        match fetch::fetch_items(&view, items, &mut load) {
            Ok(data) => {
                if let Some(bytes) = response::fetch_data(p.seq, data) {
                    batch.out.extend_from_slice(&bytes);
                }
                if needs_data {
                    batch.read.push((p.uid, rec.queue_id.clone()));
                }
            }
            Err(e) if is_gone(&e) => continue,
            Err(e) => {
                batch.failure = Some(e);
                break;
            }
        }
    }
    batch.next = j;
    batch
}
