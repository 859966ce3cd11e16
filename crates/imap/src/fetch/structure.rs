//! ENVELOPE, BODY and BODYSTRUCTURE built from the index's parsed shape of
//! the message (no file access): the store's meta types mapped onto
//! imap-types, with the RFC 3501 defaults for missing values.

use super::strings::{istring, istring_or, nstring};
use crate::limits::MAX_MIME_DEPTH;
use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, NString, Vec1};
use imap_codec::imap_types::envelope::{Address as ImapAddress, Envelope as ImapEnvelope};
use postamt_store::{Address, BodyPart, Envelope, PartKind};

/// The ENVELOPE of a message (or of an encapsulated message).
pub fn envelope(env: &Envelope) -> ImapEnvelope<'static> {
    ImapEnvelope {
        date: nstring(env.date.as_deref()),
        subject: nstring(env.subject.as_deref()),
        from: addresses(&env.from),
        sender: addresses(&env.sender),
        reply_to: addresses(&env.reply_to),
        to: addresses(&env.to),
        cc: addresses(&env.cc),
        bcc: addresses(&env.bcc),
        in_reply_to: nstring(env.in_reply_to.as_deref()),
        message_id: nstring(env.message_id.as_deref()),
    }
}

fn addresses(list: &[Address]) -> Vec<ImapAddress<'static>> {
    list.iter()
        .map(|a| ImapAddress {
            name: nstring(a.name.as_deref()),
            adl: nstring(a.adl.as_deref()),
            mailbox: nstring(a.mailbox.as_deref()),
            host: nstring(a.host.as_deref()),
        })
        .collect()
}

/// BODYSTRUCTURE (`extended` = true, with extension data) or BODY.
pub fn body_structure(part: &BodyPart, extended: bool) -> BodyStructure<'static> {
    build(part, extended, 0)
}

fn build(part: &BodyPart, extended: bool, depth: usize) -> BodyStructure<'static> {
    match &part.kind {
        PartKind::Multipart { parts } if depth < MAX_MIME_DEPTH => {
            let mut bodies: Vec<BodyStructure<'static>> = parts
                .iter()
                .map(|p| build(p, extended, depth + 1))
                .collect();
            if bodies.is_empty() {
                // A multipart without parts cannot be written in IMAP
                // syntax (body-type-mpart needs one); show an empty text part.
                bodies.push(empty_text_part(extended));
            }
            BodyStructure::Multi {
                bodies: Vec1::try_from(bodies)
                    .unwrap_or_else(|_| Vec1::from(empty_text_part(extended))),
                subtype: istring_or(&part.media_subtype, "mixed"),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: params(&part.params),
                    tail: Some(disposition_tail(part)),
                }),
            }
        }
        _ => single(part, extended, depth),
    }
}

fn single(part: &BodyPart, extended: bool, depth: usize) -> BodyStructure<'static> {
    let basic = BasicFields {
        parameter_list: params(&part.params),
        id: nstring(part.id.as_deref()),
        description: nstring(part.description.as_deref()),
        content_transfer_encoding: istring_or(&part.encoding, "7BIT"),
        size: clamp_u32(part.body_len),
    };
    let too_deep = depth >= MAX_MIME_DEPTH;
    let specific = match &part.kind {
        PartKind::Message {
            envelope: env,
            body,
        } if !too_deep => SpecificFields::Message {
            envelope: Box::new(envelope(env)),
            body_structure: Box::new(build(body, extended, depth + 1)),
            number_of_lines: clamp_u32(part.body_lines),
        },
        PartKind::Single if is_text(part) => SpecificFields::Text {
            subtype: istring_or(&part.media_subtype, "plain"),
            number_of_lines: clamp_u32(part.body_lines),
        },
        PartKind::Single => SpecificFields::Basic {
            r#type: istring_or(&part.media_type, "application"),
            subtype: istring_or(&part.media_subtype, "octet-stream"),
        },
        // Nesting beyond the limit: an opaque leaf.
        _ => SpecificFields::Basic {
            r#type: istring(b"application"),
            subtype: istring(b"octet-stream"),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstring(part.md5.as_deref()),
            tail: Some(disposition_tail(part)),
        }),
    }
}

fn is_text(part: &BodyPart) -> bool {
    part.media_type.is_empty() || part.media_type.eq_ignore_ascii_case(b"text")
}

fn empty_text_part(extended: bool) -> BodyStructure<'static> {
    single(
        &BodyPart {
            media_type: b"text".to_vec(),
            media_subtype: b"plain".to_vec(),
            ..BodyPart::default()
        },
        extended,
        0,
    )
}

fn params(list: &[(Vec<u8>, Vec<u8>)]) -> Vec<(IString<'static>, IString<'static>)> {
    list.iter().map(|(k, v)| (istring(k), istring(v))).collect()
}

fn disposition_tail(part: &BodyPart) -> Disposition<'static> {
    Disposition {
        disposition: part
            .disposition
            .as_ref()
            .map(|(value, p)| (istring(value), params(p))),
        tail: Some(Language {
            language: part.language.iter().map(|l| istring(l)).collect(),
            tail: Some(Location {
                location: NString(part.location.as_deref().map(istring)),
                extensions: Vec::new(),
            }),
        }),
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
