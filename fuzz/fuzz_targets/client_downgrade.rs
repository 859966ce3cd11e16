//! The SMTP client's 8BITMIME downgrade (`downgrade::to_seven_bit`):
//! arbitrary message bytes, with and without SMTPUTF8.
//!
//! Invariants: no panic; a message that needs no 8BITMIME comes back
//! unchanged; a converted message (without SMTPUTF8) has no byte that
//! needs 8BITMIME; the output stays within a bounded factor of the input
//! (quoted-printable at most triples a byte, plus soft breaks, and each
//! converted part gains a header field of ~45 bytes while it takes at
//! least ~8 bytes of input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_smtp_client::downgrade::{needs_8bitmime, to_seven_bit};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, message)) = data.split_first() else {
        return;
    };
    let utf8_headers = flags & 1 == 1;
    match to_seven_bit(message, utf8_headers) {
        Ok(out) => {
            if !needs_8bitmime(message) {
                assert_eq!(&out[..], message, "a 7-bit message must pass unchanged");
            }
            if !utf8_headers {
                assert!(!needs_8bitmime(&out), "8-bit bytes left after conversion");
            }
            assert!(
                out.len() <= message.len() * 8 + 1024,
                "output grew from {} to {} bytes",
                message.len(),
                out.len()
            );
        }
        Err(_) => assert!(needs_8bitmime(message), "a 7-bit message was refused"),
    }
});
