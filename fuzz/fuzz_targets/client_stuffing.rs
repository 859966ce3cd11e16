//! The SMTP client's DATA encoder (`stuffing`): arbitrary message bytes,
//! encoded in arbitrary chunks.
//!
//! Invariants: no panic; the output never contains a bare CR or LF; it
//! ends with the end-of-data mark and contains no other; chunked encoding
//! equals one-shot encoding; the receiver's decoder gets back the message
//! with every line end (bare CR, bare LF, CRLF) made CRLF plus a final
//! CRLF, whose length is `normalized_size`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_fuzz::{assert_crlf_only, dot_decode_complete, normalize_lines};
use postamt_smtp_client::stuffing::{DotStuffer, encode_message, normalized_size};

fuzz_target!(|data: &[u8]| {
    let (cuts, message) = data.split_at(data.len().min(4));
    let wire = encode_message(message);
    assert_crlf_only(&wire, "DATA stream");
    assert!(wire.ends_with(b".\r\n"));
    assert!(wire.len() == 3 || wire.ends_with(b"\r\n.\r\n"));

    let mut chunked = Vec::new();
    let mut stuffer = DotStuffer::new();
    let mut pos = 0;
    for &c in cuts.iter().cycle().take(256) {
        if pos >= message.len() {
            break;
        }
        let end = (pos + usize::from(c)).min(message.len());
        stuffer.encode(&message[pos..end], &mut chunked);
        pos = end;
    }
    stuffer.encode(&message[pos..], &mut chunked);
    stuffer.finish(&mut chunked);
    assert_eq!(chunked, wire, "encoding depends on chunk boundaries");

    let back = dot_decode_complete(&wire, "DATA stream");
    assert_eq!(back, normalize_lines(message, true), "DATA round trip");
    assert_eq!(
        back.len() as u64,
        normalized_size(message),
        "normalized_size"
    );
});
