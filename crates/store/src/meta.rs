//! What IMAP needs to know about a message without reading it: the
//! envelope, the MIME body structure with byte offsets of every part, and
//! line counts. Parsed once (at delivery or APPEND, or when the index is
//! rebuilt) and kept in the folder index, so FETCH ENVELOPE/BODYSTRUCTURE
//! never reparses the message.
//!
//! Strings are raw header bytes (RFC 2047 encoded words left encoded, as
//! IMAP sends them); `None` is IMAP's NIL.

use serde::{Deserialize, Serialize};

/// MIME parameters (`name`, `value`), as written.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// The parsed shape of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// The RFC 5322 envelope of the top-level message.
    pub envelope: Envelope,
    /// The top-level body part (its `offset` is 0, its `header_len`
    /// covers the message header including the blank line).
    pub body: BodyPart,
}

/// RFC 3501 ENVELOPE fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// One address of an address list, in RFC 3501 form. A group is a start
/// marker (`mailbox` = group name, `host` = None) and an end marker (all
/// fields None), as IMAP sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// One MIME part (RFC 2045), with where it lies in the message file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// Media type and subtype as written (e.g. `text`, `plain`); defaults
    /// to text/plain (or message/rfc822 inside multipart/digest).
    pub media_type: Vec<u8>,
    pub media_subtype: Vec<u8>,
    /// Content-Type parameters (charset, boundary, name...).
    pub params: Params,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    /// Content-Transfer-Encoding (default `7BIT`).
    pub encoding: Vec<u8>,
    pub md5: Option<Vec<u8>>,
    /// Content-Disposition value and parameters.
    pub disposition: Option<(Vec<u8>, Params)>,
    pub language: Vec<Vec<u8>>,
    pub location: Option<Vec<u8>>,
    /// Byte offset of the part's header in the message file.
    pub offset: u64,
    /// Length of the part's header, including the blank line after it.
    pub header_len: u64,
    /// Length of the part's body (what BODY[n] / BODY[TEXT] returns).
    pub body_len: u64,
    /// Lines in the body (for text/* and message/rfc822 parts).
    pub body_lines: u64,
    pub kind: PartKind,
}

/// What a part contains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartKind {
    /// A leaf part (text/*, image/*, application/*...).
    #[default]
    Single,
    /// message/rfc822 (or message/global): the encapsulated message.
    Message {
        envelope: Box<Envelope>,
        body: Box<BodyPart>,
    },
    /// multipart/*: the child parts in order.
    Multipart { parts: Vec<BodyPart> },
}
