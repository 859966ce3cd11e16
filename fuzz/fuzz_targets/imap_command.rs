//! The IMAP command reader: arbitrary client bytes framed by imap-codec's
//! fragmentizer and decoded by `CommandCodec` (or, by mode, the
//! AUTHENTICATE continuation and IDLE `DONE` codecs), with the limits of
//! `postamt_imap::limits` applied the way the session applies them (line
//! length, literal size before/after login, literals per command; an
//! over-size synchronising literal is refused and its command skipped, an
//! over-size non-synchronising one or an over-long line closes the
//! connection). Decoded FETCH and SEARCH commands are then evaluated by
//! `postamt_imap::fetch` / `search` against a small two-part message, and
//! the FETCH response is encoded with `ResponseCodec`.
//!
//! Command input also goes through the session's own reader,
//! `postamt_imap::framer::Framer` (the fragmentizer with its buffer
//! recycling), with the connection's literal rules: a literal fits when it
//! is within the state's literal limit and the command within the
//! fragmentizer capacity; a refused synchronising literal after login skips
//! the command, anything else refused closes; a decoded LOGIN or
//! AUTHENTICATE switches to the authenticated limits (the framer is
//! rebuilt with the bigger capacity, as at a real login).
//!
//! Input: byte 0 = mode (bits 0-1: 0 command before login, 1 command after
//! login, 2 AUTHENTICATE data, 3 IDLE), byte 1 = read size (1..=64 bytes
//! per read), the rest = the client's bytes.
//!
//! Invariants: no panic; a message never exceeds the fragmentizer's limit;
//! the commands decoded (by either reader) do not depend on how the input
//! is split into reads.
#![no_main]

use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer};
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{LiteralMode, Vec1};
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec, ResponseCodec};
use libfuzzer_sys::fuzz_target;
use postamt_imap::fetch::{FetchError, MessageView, fetch_items};
use postamt_imap::framer::{Event, Framer};
use postamt_imap::limits::{self, LiteralVerdict};
use postamt_imap::search::{SearchContext, matches};
use postamt_store::{BodyPart, Envelope, Flags, MessageMeta, MessageRecord, PartKind};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

/// `[limits] max_message_size` default.
const MAX_MESSAGE_SIZE: u64 = 52_428_800;

const MESSAGE: &[u8] = b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\nFrom: A <a@example.org>\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nhello =3D world\r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
AAEC\r\n--b--\r\n";

fn find(pat: &[u8], from: usize) -> usize {
    MESSAGE[from..]
        .windows(pat.len())
        .position(|w| w == pat)
        .map_or(MESSAGE.len(), |i| from + i)
}

/// The index record of MESSAGE, offsets computed from its text.
fn record() -> &'static MessageRecord {
    static RECORD: OnceLock<MessageRecord> = OnceLock::new();
    RECORD.get_or_init(|| {
        let header_len = find(b"\r\n\r\n", 0) + 4;
        let leaf = |start: usize, ty: &str, sub: &str, cte: &str| {
            let hl = find(b"\r\n\r\n", start) + 4 - start;
            let end = find(b"\r\n--b", start);
            BodyPart {
                media_type: ty.into(),
                media_subtype: sub.into(),
                encoding: cte.into(),
                offset: start as u64,
                header_len: hl as u64,
                body_len: (end - start - hl) as u64,
                body_lines: 1,
                ..BodyPart::default()
            }
        };
        let p1 = find(b"--b\r\n", header_len) + 5;
        let p2 = find(b"--b\r\n", p1) + 5;
        let body = BodyPart {
            media_type: b"multipart".to_vec(),
            media_subtype: b"mixed".to_vec(),
            params: vec![(b"boundary".to_vec(), b"b".to_vec())],
            header_len: header_len as u64,
            body_len: (MESSAGE.len() - header_len) as u64,
            kind: PartKind::Multipart {
                parts: vec![
                    leaf(p1, "text", "plain", "quoted-printable"),
                    leaf(p2, "application", "octet-stream", "base64"),
                ],
            },
            ..BodyPart::default()
        };
        MessageRecord {
            uid: 7,
            modseq: 3,
            flags: Flags::default(),
            size: MESSAGE.len() as u64,
            internal_date: 1_700_000_000,
            queue_id: None,
            meta: Arc::new(MessageMeta {
                envelope: Envelope {
                    subject: Some(b"=?UTF-8?Q?caf=C3=A9?=".to_vec()),
                    ..Envelope::default()
                },
                body,
            }),
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    NotAuthenticated,
    Authenticated,
    AuthenticateData,
    Idle,
}

/// What the reader made of one message (compared across read sizes).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Decoded(String),
    Bad,
    TooLong,
    LiteralRefused,
    Closed,
}

fn run_fetch_and_search(body: &CommandBody<'_>) {
    let rec = record();
    let view = MessageView {
        seq: 1,
        record: rec,
        recent: true,
    };
    let mut load = || Ok(MESSAGE.to_vec());
    match body {
        CommandBody::Fetch {
            macro_or_item_names,
            ..
        } => {
            let names = match macro_or_item_names {
                MacroOrMessageDataItemNames::Macro(m) => m.expand(),
                MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
            };
            match fetch_items(&view, &names, &mut load) {
                Ok(items) => {
                    if let Ok(items) = Vec1::try_from(items) {
                        let seq = NonZeroU32::MIN;
                        let resp = Response::Data(Data::Fetch { seq, items });
                        let _ = ResponseCodec::new().encode(&resp).dump();
                    }
                }
                Err(FetchError::UnknownCte) => {}
                Err(e) => panic!("fetch of an in-memory message failed: {e}"),
            }
        }
        CommandBody::Search { criteria, .. } => {
            let ctx = SearchContext {
                max_seq: 1,
                max_uid: 7,
            };
            for key in criteria.as_ref() {
                let _ = matches(key, &view, &ctx, &mut load).expect("in-memory search");
            }
        }
        _ => {}
    }
}

/// Feeds `input` `chunk` bytes at a time, as the connection reads it.
fn read_all(mode: Mode, input: &[u8], chunk: usize) -> Vec<Outcome> {
    let authenticated = mode != Mode::NotAuthenticated;
    let capacity = match mode {
        Mode::AuthenticateData => limits::MAX_AUTHENTICATE_LINE,
        Mode::Idle => limits::MAX_IDLE_LINE,
        _ => limits::max_command_size(authenticated, MAX_MESSAGE_SIZE),
    };
    let mut frag = Fragmentizer::new(capacity);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut literals = 0usize;
    loop {
        let Some(fragment) = frag.progress() else {
            if pos >= input.len() {
                return out;
            }
            let end = (pos + chunk).min(input.len());
            frag.enqueue_bytes(&input[pos..end]);
            pos = end;
            continue;
        };
        assert!(frag.message_bytes().len() <= capacity as usize);
        if let FragmentInfo::Line {
            start,
            end,
            announcement,
            ..
        } = fragment
        {
            if end - start > limits::MAX_LINE_LEN {
                out.push(Outcome::Closed);
                return out;
            }
            if let Some(lit) = announcement {
                literals += 1;
                let too_many = literals > limits::MAX_LITERALS_PER_COMMAND;
                let verdict = limits::check_literal(lit.length, authenticated, MAX_MESSAGE_SIZE);
                if too_many || verdict == LiteralVerdict::TooBig {
                    if lit.mode == LiteralMode::Sync && mode != Mode::AuthenticateData {
                        // Refused before the client sends it: the command is dropped.
                        frag.skip_message();
                        literals = 0;
                        out.push(Outcome::LiteralRefused);
                        continue;
                    }
                    out.push(Outcome::Closed);
                    return out;
                }
            }
        }
        if !frag.is_message_complete() {
            continue;
        }
        literals = 0;
        let outcome = match mode {
            Mode::NotAuthenticated | Mode::Authenticated => {
                match frag.decode_message(&CommandCodec::default()) {
                    Ok(cmd) => {
                        run_fetch_and_search(&cmd.body);
                        Outcome::Decoded(format!("{} {}", cmd.tag.inner(), cmd.body.name()))
                    }
                    Err(DecodeMessageError::MessageTooLong { .. }) => Outcome::TooLong,
                    Err(_) => Outcome::Bad,
                }
            }
            Mode::AuthenticateData => {
                match frag.decode_message(&AuthenticateDataCodec::default()) {
                    Ok(data) => Outcome::Decoded(format!("{data:?}")),
                    Err(DecodeMessageError::MessageTooLong { .. }) => Outcome::TooLong,
                    Err(_) => Outcome::Bad,
                }
            }
            Mode::Idle => match frag.decode_message(&IdleDoneCodec::default()) {
                Ok(_) => Outcome::Decoded("DONE".to_owned()),
                Err(DecodeMessageError::MessageTooLong { .. }) => Outcome::TooLong,
                Err(_) => Outcome::Bad,
            },
        };
        out.push(outcome);
    }
}

/// Feeds `input` through the session's framer, `chunk` bytes per read.
fn read_with_framer(start_authenticated: bool, input: &[u8], chunk: usize) -> Vec<Outcome> {
    let mut authenticated = start_authenticated;
    let capacity = |authed| limits::max_command_size(authed, MAX_MESSAGE_SIZE);
    let mut framer = Framer::new(capacity(authenticated), limits::MAX_LINE_LEN);
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        match framer.poll() {
            Event::NeedMore => {
                if pos >= input.len() {
                    return out;
                }
                let end = (pos + chunk).min(input.len());
                framer.feed(&input[pos..end]);
                pos = end;
            }
            Event::TooLong => {
                out.push(Outcome::Closed);
                return out;
            }
            Event::Literal {
                length,
                sync,
                so_far,
            } => {
                let limit = if authenticated {
                    limits::max_literal_after_auth(MAX_MESSAGE_SIZE)
                } else {
                    limits::MAX_LITERAL_BEFORE_AUTH
                };
                let fits = length <= limit
                    && (so_far as u64).saturating_add(u64::from(length))
                        <= u64::from(capacity(authenticated));
                if fits {
                    continue;
                }
                if sync && authenticated {
                    framer.skip();
                    out.push(Outcome::LiteralRefused);
                    continue;
                }
                out.push(Outcome::Closed);
                return out;
            }
            Event::Message => {
                let message = framer.message();
                assert!(message.len() <= capacity(authenticated) as usize);
                let outcome = match CommandCodec::default().decode(message) {
                    Ok((rest, cmd)) if rest.is_empty() => {
                        if matches!(
                            cmd.body,
                            CommandBody::Login { .. } | CommandBody::Authenticate { .. }
                        ) {
                            authenticated = true;
                        }
                        run_fetch_and_search(&cmd.body);
                        Outcome::Decoded(format!("{} {}", cmd.tag.inner(), cmd.body.name()))
                    }
                    _ => Outcome::Bad,
                };
                out.push(outcome);
                framer.finish_with_capacity(capacity(authenticated));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, input @ ..] = data else {
        return;
    };
    let mode = match mode & 3 {
        0 => Mode::NotAuthenticated,
        1 => Mode::Authenticated,
        2 => Mode::AuthenticateData,
        _ => Mode::Idle,
    };
    let chunk = usize::from(chunk % 64) + 1;
    let split = read_all(mode, input, chunk);
    let whole = read_all(mode, input, input.len().max(1));
    assert_eq!(split, whole, "framing depends on read sizes");
    if matches!(mode, Mode::NotAuthenticated | Mode::Authenticated) {
        let authed = mode == Mode::Authenticated;
        let split = read_with_framer(authed, input, chunk);
        let whole = read_with_framer(authed, input, input.len().max(1));
        assert_eq!(split, whole, "the session's framer depends on read sizes");
    }
});
