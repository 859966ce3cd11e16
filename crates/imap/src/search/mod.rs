//! SEARCH: evaluates every RFC 3501 search key (and CONDSTORE's MODSEQ)
//! against a message's index record, reading the message bytes only for
//! keys that need them (BODY, TEXT, HEADER of fields not in the envelope).
//! Text matching is case-insensitive substring matching on decoded text
//! (RFC 2047 words and transfer encodings decoded).

pub mod dates;
pub mod sequence;
pub mod text;

#[cfg(test)]
mod tests;

use crate::fetch::section::header_span;
use crate::fetch::{FetchError, LazyData, Loader, MessageView};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::search::SearchKey;

/// Session facts a search needs.
#[derive(Clone, Copy, Debug)]
pub struct SearchContext {
    /// Highest message sequence number (`*` in sequence sets).
    pub max_seq: u32,
    /// Highest UID in the view (`*` in UID sets).
    pub max_uid: u32,
}

/// Whether evaluating `key` may need the message bytes.
pub fn needs_data(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        SearchKey::Header(field, _) => {
            text::from_envelope(&Default::default(), field.as_ref()).is_none()
        }
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_data),
        SearchKey::Or(a, b) => needs_data(a) || needs_data(b),
        SearchKey::Not(k) => needs_data(k),
        _ => false,
    }
}

/// Whether `msg` matches `key` (the keys of a SEARCH command are ANDed by
/// the caller, or passed as one `SearchKey::And`).
pub fn matches(
    key: &SearchKey<'_>,
    msg: &MessageView<'_>,
    ctx: &SearchContext,
    load: Loader<'_>,
) -> Result<bool, FetchError> {
    let mut state = State {
        data: LazyData::new(load),
        header_text: None,
        body_text: None,
    };
    eval(key, msg, ctx, &mut state)
}

/// Per-message caches: the bytes and the decoded (lowercased) texts, each
/// made at most once whatever the number of keys asking for them.
struct State<'l> {
    data: LazyData<'l>,
    header_text: Option<String>,
    body_text: Option<String>,
}

impl State<'_> {
    fn header_bytes<'s>(&'s mut self, msg: &MessageView<'_>) -> Result<&'s [u8], FetchError> {
        let span = header_span(&msg.record.meta.body);
        Ok(span.slice(self.data.get()?))
    }

    fn header_text(&mut self, msg: &MessageView<'_>) -> Result<&str, FetchError> {
        if self.header_text.is_none() {
            let t = text::fold(&text::header_text(self.header_bytes(msg)?));
            self.header_text = Some(t);
        }
        Ok(self.header_text.as_deref().unwrap_or_default())
    }

    fn body_text(&mut self, msg: &MessageView<'_>) -> Result<&str, FetchError> {
        if self.body_text.is_none() {
            let data = self.data.get()?;
            let t = text::fold(&text::body_text(&msg.record.meta.body, data));
            self.body_text = Some(t);
        }
        Ok(self.body_text.as_deref().unwrap_or_default())
    }
}

fn needle(s: &AString<'_>) -> String {
    text::fold(&String::from_utf8_lossy(s.as_ref()))
}

/// A header field: from the envelope when it holds the field, else from
/// the header bytes. `Some(values)` when present (possibly several).
fn field_matches(
    field: &[u8],
    value: &AString<'_>,
    msg: &MessageView<'_>,
    state: &mut State<'_>,
) -> Result<bool, FetchError> {
    let n = needle(value);
    if let Some(known) = text::from_envelope(&msg.record.meta.envelope, field) {
        // An empty string matches every message that has the field.
        return Ok(known.is_some_and(|t| n.is_empty() || text::fold(&t).contains(&n)));
    }
    let values = text::header_values(state.header_bytes(msg)?, field);
    Ok(values
        .iter()
        .any(|v| n.is_empty() || text::fold(v).contains(&n)))
}

fn eval(
    key: &SearchKey<'_>,
    msg: &MessageView<'_>,
    ctx: &SearchContext,
    state: &mut State<'_>,
) -> Result<bool, FetchError> {
    let r = msg.record;
    let flags = &r.flags;
    Ok(match key {
        SearchKey::And(keys) => {
            for k in keys.as_ref() {
                if !eval(k, msg, ctx, state)? {
                    return Ok(false);
                }
            }
            true
        }
        SearchKey::Or(a, b) => eval(a, msg, ctx, state)? || eval(b, msg, ctx, state)?,
        SearchKey::Not(k) => !eval(k, msg, ctx, state)?,
        SearchKey::SequenceSet(set) => sequence::contains(set, msg.seq, ctx.max_seq),
        SearchKey::Uid(set) => sequence::contains(set, r.uid, ctx.max_uid),
        SearchKey::All => true,
        SearchKey::Answered => flags.answered,
        SearchKey::Unanswered => !flags.answered,
        SearchKey::Deleted => flags.deleted,
        SearchKey::Undeleted => !flags.deleted,
        SearchKey::Draft => flags.draft,
        SearchKey::Undraft => !flags.draft,
        SearchKey::Flagged => flags.flagged,
        SearchKey::Unflagged => !flags.flagged,
        SearchKey::Seen => flags.seen,
        SearchKey::Unseen => !flags.seen,
        SearchKey::Recent => msg.recent,
        SearchKey::New => msg.recent && !flags.seen,
        SearchKey::Old => !msg.recent,
        SearchKey::Keyword(k) => has_keyword(flags, k.inner()),
        SearchKey::Unkeyword(k) => !has_keyword(flags, k.inner()),
        SearchKey::Larger(n) => r.size > u64::from(*n),
        SearchKey::Smaller(n) => r.size < u64::from(*n),
        SearchKey::Before(d) => dates::internal_day(r) < *d.as_ref(),
        SearchKey::On(d) => dates::internal_day(r) == *d.as_ref(),
        SearchKey::Since(d) => dates::internal_day(r) >= *d.as_ref(),
        SearchKey::SentBefore(d) => dates::sent_day(r) < *d.as_ref(),
        SearchKey::SentOn(d) => dates::sent_day(r) == *d.as_ref(),
        SearchKey::SentSince(d) => dates::sent_day(r) >= *d.as_ref(),
        SearchKey::From(s) => field_matches(b"from", s, msg, state)?,
        SearchKey::To(s) => field_matches(b"to", s, msg, state)?,
        SearchKey::Cc(s) => field_matches(b"cc", s, msg, state)?,
        SearchKey::Bcc(s) => field_matches(b"bcc", s, msg, state)?,
        SearchKey::Subject(s) => field_matches(b"subject", s, msg, state)?,
        SearchKey::Header(field, value) => field_matches(field.as_ref(), value, msg, state)?,
        SearchKey::Body(s) => {
            let n = needle(s);
            contains_folded(state.body_text(msg)?, &n)
        }
        SearchKey::Text(s) => {
            let n = needle(s);
            contains_folded(state.header_text(msg)?, &n)
                || contains_folded(state.body_text(msg)?, &n)
        }
        SearchKey::ModSequence { modseq, .. } => r.modseq >= *modseq,
        // Keys of extensions this server does not announce (e.g. WITHIN's
        // OLDER/YOUNGER when another crate enables that codec feature).
        #[allow(unreachable_patterns)]
        _ => false,
    })
}

fn contains_folded(haystack: &str, needle: &str) -> bool {
    haystack.contains(needle)
}

fn has_keyword(flags: &postamt_store::Flags, keyword: &str) -> bool {
    flags
        .keywords
        .iter()
        .any(|k| k.eq_ignore_ascii_case(keyword))
}
