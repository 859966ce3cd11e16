//! SEARCH and UID SEARCH: charset check (UTF-8 and US-ASCII), the keys
//! evaluated by [`crate::search`] on a blocking thread, and the answer as
//! `* SEARCH` (with CONDSTORE's `(MODSEQ n)` when a MODSEQ key was used)
//! or, with `RETURN (...)`, as `* ESEARCH` (RFC 4731).

use super::{Reply, Session, Sink, lock};
use crate::backend::{Backend, MailFolder, blocking};
use crate::extended::SearchReturn;
use crate::fetch::MessageView;
use crate::search::{self, SearchContext};
use crate::view::uid_set_string;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::search::SearchKey;
use std::io;
use tracing::error;

/// Whether a MODSEQ key appears anywhere in `key`.
fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        _ => false,
    }
}

/// Charsets SEARCH accepts (text is matched as UTF-8).
fn charset_ok(c: &Charset<'_>) -> bool {
    let name: &str = c.as_ref();
    name.eq_ignore_ascii_case("UTF-8") || name.eq_ignore_ascii_case("US-ASCII")
}

/// `* ESEARCH (TAG "t") [UID] MIN .. MAX .. COUNT .. ALL ..`.
fn esearch_line(
    tag: &str,
    uid: bool,
    ret: SearchReturn,
    found: &[u32],
    modseq: Option<u64>,
) -> String {
    let mut s = format!("ESEARCH (TAG \"{tag}\")");
    if uid {
        s.push_str(" UID");
    }
    if let (true, Some(min)) = (ret.min, found.iter().min()) {
        s.push_str(&format!(" MIN {min}"));
    }
    if let (true, Some(max)) = (ret.max, found.iter().max()) {
        s.push_str(&format!(" MAX {max}"));
    }
    if ret.count {
        s.push_str(&format!(" COUNT {}", found.len()));
    }
    if ret.all && !found.is_empty() {
        s.push_str(&format!(" ALL {}", uid_set_string(found)));
    }
    if let Some(m) = modseq {
        s.push_str(&format!(" MODSEQ {m}"));
    }
    s
}

/// `* SEARCH 1 2 3 [(MODSEQ n)]`.
fn search_line(found: &[u32], modseq: Option<u64>) -> String {
    let mut s = String::from("SEARCH");
    for n in found {
        s.push(' ');
        s.push_str(&n.to_string());
    }
    if let Some(m) = modseq {
        s.push_str(&format!(" (MODSEQ {m})"));
    }
    s
}

impl<B: Backend> Session<B> {
    pub(super) async fn search<W: Sink>(
        &mut self,
        tag: &str,
        charset: Option<&Charset<'_>>,
        criteria: Vec1<SearchKey<'_>>,
        uid: bool,
        ret: Option<SearchReturn>,
        w: &mut W,
    ) -> io::Result<Reply> {
        if let Some(c) = charset
            && !charset_ok(c)
        {
            return Ok(Reply::no(
                Some("BADCHARSET (UTF-8 US-ASCII)"),
                "Unsupported charset",
            ));
        }
        let mut keys: Vec<SearchKey<'static>> = criteria
            .into_inner()
            .into_iter()
            .map(IntoStatic::into_static)
            .collect();
        let key = if keys.len() == 1 {
            match keys.pop() {
                Some(k) => k,
                None => return Ok(Reply::bad("Missing search criteria")),
            }
        } else {
            match Vec1::try_from(keys) {
                Ok(v) => SearchKey::And(v),
                Err(_) => return Ok(Reply::bad("Missing search criteria")),
            }
        };
        let modseq_wanted = uses_modseq(&key);
        if modseq_wanted {
            self.enabled.condstore = true;
        }
        let Some(sel) = &self.selected else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        let candidates: Vec<(u32, u32)> = sel
            .view
            .uids()
            .iter()
            .enumerate()
            .filter(|(_, u)| !sel.view.is_gone(**u))
            .map(|(i, &u)| (u32::try_from(i + 1).unwrap_or(u32::MAX), u))
            .collect();
        let ctx = SearchContext {
            max_seq: sel.view.len(),
            max_uid: sel.view.max_uid(),
        };
        let recent_from = sel.recent_from;
        let folder = sel.folder.clone();
        let result = blocking(move || {
            let f = lock(&folder);
            let mut found = Vec::new();
            let mut highest = 0u64;
            for (seq, uid) in candidates {
                let Some(rec) = f.record(uid) else { continue };
                let view = MessageView {
                    seq,
                    record: rec,
                    recent: uid >= recent_from,
                };
                let mut load = || f.read(uid);
                match search::matches(&key, &view, &ctx, &mut load) {
                    Ok(true) => {
                        found.push((seq, uid));
                        highest = highest.max(rec.modseq);
                    }
                    Ok(false) => {}
                    // A message removed behind our back matches nothing.
                    Err(crate::fetch::FetchError::Store(postamt_store::StoreError::Gone(_))) => {}
                    Err(e) => {
                        return Err(postamt_store::StoreError::Index(format!("search: {e}")));
                    }
                }
            }
            Ok((found, highest))
        })
        .await;
        let (found, highest) = match result {
            Ok(r) => r,
            Err(e) => {
                error!(user = self.user(), error = %e, "SEARCH failed");
                return Ok(Reply::no(
                    Some("SERVERBUG"),
                    "Internal error, try again later",
                ));
            }
        };
        let numbers: Vec<u32> = found
            .iter()
            .map(|&(s, u)| if uid { u } else { s })
            .collect();
        let modseq = (modseq_wanted && !numbers.is_empty()).then_some(highest);
        let line = match ret {
            Some(ret) => esearch_line(tag, uid, ret, &numbers, modseq),
            None => search_line(&numbers, modseq),
        };
        w.send(&crate::response::untagged(&line)).await?;
        Ok(Reply::ok("SEARCH completed"))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn esearch_lines() {
        let all = SearchReturn {
            min: true,
            max: true,
            count: true,
            all: true,
        };
        assert_eq!(
            esearch_line("a1", true, all, &[2, 3, 4, 9], None),
            "ESEARCH (TAG \"a1\") UID MIN 2 MAX 9 COUNT 4 ALL 2:4,9"
        );
        assert_eq!(
            esearch_line("a2", false, all, &[], None),
            "ESEARCH (TAG \"a2\") COUNT 0"
        );
        let count = SearchReturn {
            count: true,
            ..Default::default()
        };
        assert_eq!(
            esearch_line("a3", false, count, &[1], Some(7)),
            "ESEARCH (TAG \"a3\") COUNT 1 MODSEQ 7"
        );
    }

    #[test]
    fn search_lines() {
        assert_eq!(search_line(&[1, 5], None), "SEARCH 1 5");
        assert_eq!(search_line(&[], None), "SEARCH");
        assert_eq!(search_line(&[2], Some(9)), "SEARCH 2 (MODSEQ 9)");
    }

    #[test]
    fn modseq_keys_are_found_nested() {
        let k = SearchKey::Not(Box::new(SearchKey::ModSequence {
            entry: None,
            modseq: 5,
        }));
        assert!(uses_modseq(&k));
        assert!(!uses_modseq(&SearchKey::All));
    }
}
