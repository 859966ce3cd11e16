//! FETCH: renders the asked data items of one message from its index
//! record (FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY,
//! BODYSTRUCTURE, MODSEQ without touching the file) and from the message
//! bytes for body sections (BODY[...]<partial>, BINARY, RFC822*), loaded
//! only when one is asked for.

pub mod decode;
pub mod headers;
pub mod section;
pub mod strings;
pub mod structure;

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;

use chrono::DateTime as ChronoDateTime;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::core::{AString, Atom, IString, NString, NString8, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::Literal8;
use imap_codec::imap_types::fetch::{MessageDataItem, MessageDataItemName, Part, Section};
use imap_codec::imap_types::flag::{Flag, FlagFetch};
use postamt_store::{Flags, MessageRecord, StoreError};
use section::Span;
use std::num::{NonZeroU32, NonZeroU64};

/// One message as FETCH and SEARCH see it.
#[derive(Clone, Copy, Debug)]
pub struct MessageView<'a> {
    /// Message sequence number in the session's view.
    pub seq: u32,
    pub record: &'a MessageRecord,
    /// `\Recent` in this session.
    pub recent: bool,
}

/// Loads the whole message file (called at most once per message).
pub type Loader<'a> = &'a mut dyn FnMut() -> Result<Vec<u8>, StoreError>;

/// FETCH failures.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("message data unavailable: {0}")]
    Store(#[from] StoreError),
    /// A section that cannot be served (e.g. BINARY of an unknown
    /// encoding: `NO [UNKNOWN-CTE]`).
    #[error("unknown content transfer encoding")]
    UnknownCte,
}

/// Whether any of `items` is a non-PEEK body section (which sets `\Seen`
/// before the response is built).
pub fn implies_seen(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|item| {
        matches!(
            item,
            MessageDataItemName::BodyExt { peek: false, .. }
                | MessageDataItemName::Binary { peek: false, .. }
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Text
        )
    })
}

/// Whether any of `items` needs the message bytes.
pub fn needs_data(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|item| {
        matches!(
            item,
            MessageDataItemName::BodyExt { .. }
                | MessageDataItemName::Binary { .. }
                | MessageDataItemName::BinarySize { .. }
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Header
                | MessageDataItemName::Rfc822Text
        )
    })
}

/// The message bytes, loaded on first use.
pub(crate) struct LazyData<'l> {
    load: Loader<'l>,
    data: Option<Vec<u8>>,
}

impl<'l> LazyData<'l> {
    pub(crate) fn new(load: Loader<'l>) -> Self {
        LazyData { load, data: None }
    }

    pub(crate) fn get(&mut self) -> Result<&[u8], StoreError> {
        if self.data.is_none() {
            self.data = Some((self.load)()?);
        }
        Ok(self.data.as_deref().unwrap_or_default())
    }
}

/// Renders `items` for `msg` in the order asked (the session adds UID
/// when the command was UID FETCH and MODSEQ when CONDSTORE is on, by
/// putting them into `items`).
pub fn fetch_items(
    msg: &MessageView<'_>,
    items: &[MessageDataItemName<'_>],
    load: Loader<'_>,
) -> Result<Vec<MessageDataItem<'static>>, FetchError> {
    let mut data = LazyData::new(load);
    let record = msg.record;
    let root = &record.meta.body;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let rendered = match item {
            MessageDataItemName::Flags => {
                MessageDataItem::Flags(flag_list(&record.flags, msg.recent))
            }
            MessageDataItemName::Uid => MessageDataItem::Uid(nz_u32(record.uid)),
            MessageDataItemName::InternalDate => {
                MessageDataItem::InternalDate(internal_date(record.internal_date))
            }
            MessageDataItemName::Rfc822Size => {
                MessageDataItem::Rfc822Size(u32::try_from(record.size).unwrap_or(u32::MAX))
            }
            MessageDataItemName::Envelope => {
                MessageDataItem::Envelope(structure::envelope(&record.meta.envelope))
            }
            MessageDataItemName::Body => {
                MessageDataItem::Body(structure::body_structure(root, false))
            }
            MessageDataItemName::BodyStructure => {
                MessageDataItem::BodyStructure(structure::body_structure(root, true))
            }
            MessageDataItemName::ModSeq => {
                MessageDataItem::ModSeq(NonZeroU64::new(record.modseq).unwrap_or(NonZeroU64::MIN))
            }
            MessageDataItemName::Rfc822 => {
                MessageDataItem::Rfc822(strings::body_data(data.get()?.to_vec()))
            }
            MessageDataItemName::Rfc822Header => {
                let bytes = section::header_span(root).slice(data.get()?).to_vec();
                MessageDataItem::Rfc822Header(strings::body_data(bytes))
            }
            MessageDataItemName::Rfc822Text => {
                let bytes = section::body_span(root).slice(data.get()?).to_vec();
                MessageDataItem::Rfc822Text(strings::body_data(bytes))
            }
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let bytes = section_bytes(record, section.as_ref(), data.get()?);
                MessageDataItem::BodyExt {
                    section: section.as_ref().map(section_to_static),
                    origin: partial.map(|(offset, _)| offset),
                    data: match bytes {
                        Some(b) => strings::body_data(section::partial(b, *partial)),
                        None => NString(None),
                    },
                }
            }
            MessageDataItemName::Binary {
                section, partial, ..
            } => {
                let decoded = binary_bytes(record, section, data.get()?)?;
                MessageDataItem::Binary {
                    section: section.clone(),
                    value: binary_value(decoded.map(|d| section::partial(d, *partial))),
                }
            }
            MessageDataItemName::BinarySize { section } => {
                let decoded = binary_bytes(record, section, data.get()?)?;
                MessageDataItem::BinarySize {
                    section: section.clone(),
                    size: decoded.map_or(0, |d| u32::try_from(d.len()).unwrap_or(u32::MAX)),
                }
            }
        };
        out.push(rendered);
    }
    Ok(out)
}

/// FLAGS of a message, `\Recent` added for this session's view.
pub fn flag_list(flags: &Flags, recent: bool) -> Vec<FlagFetch<'static>> {
    let mut out = Vec::with_capacity(6 + flags.keywords.len());
    let system = [
        (flags.seen, Flag::Seen),
        (flags.answered, Flag::Answered),
        (flags.flagged, Flag::Flagged),
        (flags.deleted, Flag::Deleted),
        (flags.draft, Flag::Draft),
    ];
    for (set, flag) in system {
        if set {
            out.push(FlagFetch::Flag(flag));
        }
    }
    for keyword in &flags.keywords {
        // Keywords are atoms when stored; one that is not is skipped
        // rather than breaking the response.
        if let Ok(atom) = Atom::try_from(keyword.clone()) {
            out.push(FlagFetch::Flag(Flag::Keyword(atom)));
        }
    }
    if recent {
        out.push(FlagFetch::Recent);
    }
    out
}

/// INTERNALDATE for Unix seconds, in UTC (out-of-range values give the
/// epoch: IMAP dates need years 0..=9999).
pub fn internal_date(unix_seconds: i64) -> DateTime {
    ChronoDateTime::from_timestamp(unix_seconds, 0)
        .and_then(|d| DateTime::try_from(d.fixed_offset()).ok())
        .unwrap_or_else(|| DateTime::unvalidated(ChronoDateTime::UNIX_EPOCH.fixed_offset()))
}

fn nz_u32(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}

fn part_path(part: &Part) -> &[NonZeroU32] {
    part.0.as_ref()
}

/// The bytes of a BODY[section] (before `<partial>`); `None` (NIL) when
/// the section names no part.
pub fn section_bytes(
    record: &MessageRecord,
    section: Option<&Section<'_>>,
    data: &[u8],
) -> Option<Vec<u8>> {
    let root = &record.meta.body;
    let whole = || Span {
        start: 0,
        len: data.len() as u64,
    };
    let span_bytes = |s: Span| s.slice(data).to_vec();
    match section {
        None => Some(span_bytes(whole())),
        Some(Section::Part(part)) => {
            let p = section::resolve(root, part_path(part))?;
            Some(span_bytes(section::body_span(p)))
        }
        Some(Section::Mime(part)) => {
            let p = section::resolve(root, part_path(part))?;
            Some(span_bytes(section::header_span(p)))
        }
        Some(Section::Header(part)) => {
            let m = section::message_root(root, part.as_ref().map(part_path))?;
            Some(span_bytes(section::header_span(m)))
        }
        Some(Section::Text(part)) => {
            let m = section::message_root(root, part.as_ref().map(part_path))?;
            Some(span_bytes(section::body_span(m)))
        }
        Some(Section::HeaderFields(part, names)) | Some(Section::HeaderFieldsNot(part, names)) => {
            let keep = matches!(section, Some(Section::HeaderFields(..)));
            let m = section::message_root(root, part.as_ref().map(part_path))?;
            let header = section::header_span(m).slice(data);
            let names: Vec<&[u8]> = names.as_ref().iter().map(|n| n.as_ref()).collect();
            Some(headers::subset(header, &names, keep))
        }
    }
}

/// The decoded content of a BINARY[section]; `None` when the section
/// names no part (NIL).
pub fn binary_bytes(
    record: &MessageRecord,
    path: &[NonZeroU32],
    data: &[u8],
) -> Result<Option<Vec<u8>>, FetchError> {
    if path.is_empty() {
        // BINARY[]: the whole message (a message is never transfer-encoded).
        return Ok(Some(data.to_vec()));
    }
    let Some(part) = section::resolve(&record.meta.body, path) else {
        return Ok(None);
    };
    let body = section::body_span(part).slice(data);
    match decode::transfer_decode(body, decode::Cte::parse(&part.encoding)) {
        Some(decoded) => Ok(Some(decoded)),
        None => Err(FetchError::UnknownCte),
    }
}

fn binary_value(decoded: Option<Vec<u8>>) -> NString8<'static> {
    match decoded {
        None => NString8::NString(NString(None)),
        Some(bytes) if bytes.contains(&0) => NString8::Literal8(Literal8 {
            data: bytes.into(),
            mode: LiteralMode::Sync,
        }),
        Some(bytes) => NString8::NString(strings::body_data(bytes)),
    }
}

/// A copy of `section` that owns its field names (responses outlive the
/// command they answer).
pub fn section_to_static(section: &Section<'_>) -> Section<'static> {
    let names = |list: &Vec1<AString<'_>>| -> Vec1<AString<'static>> {
        let owned: Vec<AString<'static>> = list.as_ref().iter().map(astring_to_static).collect();
        Vec1::try_from(owned).unwrap_or_else(|_| {
            Vec1::from(AString::String(IString::Literal(strings::literal(
                Vec::new(),
            ))))
        })
    };
    match section {
        Section::Part(p) => Section::Part(p.clone()),
        Section::Header(p) => Section::Header(p.clone()),
        Section::Text(p) => Section::Text(p.clone()),
        Section::Mime(p) => Section::Mime(p.clone()),
        Section::HeaderFields(p, list) => Section::HeaderFields(p.clone(), names(list)),
        Section::HeaderFieldsNot(p, list) => Section::HeaderFieldsNot(p.clone(), names(list)),
    }
}

fn astring_to_static(s: &AString<'_>) -> AString<'static> {
    let bytes = s.as_ref().to_vec();
    match AString::try_from(bytes.clone()) {
        Ok(a) => a,
        Err(_) => AString::String(IString::Literal(strings::literal(bytes))),
    }
}
