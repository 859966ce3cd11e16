//! The SMTP receiver's pure parsers: the DATA dot-stream decoder
//! (`data.rs`), BDAT/SIZE parsing (`command.rs`), envelope address checks
//! (`address.rs`) and the SASL PLAIN/LOGIN exchanges (`sasl.rs`).
//!
//! Invariants: no panic; decoding is independent of how the input is split
//! into reads; `dot_stuff` then decode gives the message back (with a final
//! CRLF); the decoder consumes exactly through the terminator; BDAT/SIZE
//! values round-trip through their decimal text; `split` parts are
//! non-empty; a SASL step that finishes yields the credentials as sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_receiver::data::{BodyBuffer, ChunkReader, DotDecoder, Sink, dot_stuff};
use postamt_receiver::{address, command, sasl};

/// Decodes `input` in pieces cut at `cuts`; returns (message, consumed, done).
fn decode_split(input: &[u8], cuts: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut d = DotDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    for &c in cuts {
        if d.is_done() || pos >= input.len() {
            break;
        }
        let end = (pos + usize::from(c) + 1).min(input.len());
        let len = end - pos;
        let n = d.decode(&input[pos..end], &mut out);
        assert!(n <= len);
        // Stopping early happens only at the terminator.
        assert!(
            n == len || d.is_done(),
            "stopped early without a terminator"
        );
        pos += n;
    }
    if !d.is_done() && pos < input.len() {
        pos += d.decode(&input[pos..], &mut out);
    }
    (out, pos, d.is_done())
}

fn dot_decoder(input: &[u8], cuts: &[u8]) {
    let mut d = DotDecoder::new();
    let mut whole = Vec::new();
    let consumed = d.decode(input, &mut whole);
    assert!(consumed <= input.len());
    if d.is_done() {
        // Consumption ends right after a terminator.
        assert!(input[..consumed].ends_with(b".\r\n"));
        assert!(consumed == 3 || input[..consumed].ends_with(b"\r\n.\r\n"));
        // Nothing more is taken once done.
        assert_eq!(d.decode(b"more", &mut whole), 0);
    } else {
        assert_eq!(consumed, input.len(), "stopped early without a terminator");
    }
    // Never more output than input.
    assert!(whole.len() <= consumed);
    let split = decode_split(input, cuts);
    assert_eq!(
        split,
        (whole, consumed, d.is_done()),
        "result depends on read boundaries"
    );

    // Round trip through the client-side stuffing.
    let wire = dot_stuff(input);
    let mut d = DotDecoder::new();
    let mut back = Vec::new();
    let n = d.decode(&wire, &mut back);
    assert!(d.is_done(), "dot_stuff output has no terminator");
    assert_eq!(n, wire.len(), "terminator inside dot_stuff output");
    let mut expected = input.to_vec();
    if !input.is_empty() && !input.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    assert_eq!(back, expected, "dot_stuff/decode round trip");

    // The size-limited buffer keeps exactly the bytes while they fit.
    let limit = u64::from(cuts.first().copied().unwrap_or(0)) * 4;
    let mut buffer = BodyBuffer::new(b"Received: x\r\n".to_vec(), limit);
    for chunk in input.chunks(usize::from(cuts.get(1).copied().unwrap_or(0)) + 1) {
        buffer.put(chunk);
    }
    assert_eq!(buffer.size(), input.len() as u64);
    assert_eq!(buffer.overflowed(), input.len() as u64 > limit);
    if !buffer.overflowed() {
        assert_eq!(buffer.message(), input);
    } else {
        assert!(buffer.message().is_empty());
    }
    assert_eq!(buffer.prefix_len(), 13);

    // BDAT chunks take exactly their size.
    let size = u64::from(cuts.get(2).copied().unwrap_or(0));
    let mut reader = ChunkReader::new(size);
    let mut taken = Vec::new();
    let n = reader.read(input, &mut taken);
    assert_eq!(n as u64, size.min(input.len() as u64));
    assert_eq!(&taken[..], &input[..n]);
    assert_eq!(reader.remaining(), size - n as u64);
}

fn commands(line: &[u8]) {
    let verb = command::verb(line);
    assert!(line.starts_with(verb));
    assert!(
        !verb
            .iter()
            .any(|b| matches!(b, b' ' | b'\r' | b'\n' | b'\t'))
    );
    let _ = command::has_arguments(line);
    if let Some(size) = command::parse_size(line) {
        assert!((1..=20).contains(&line.len()) && line.iter().all(u8::is_ascii_digit));
        let zeros = line.iter().take_while(|&&b| b == b'0').count();
        let canonical: &[u8] = if zeros == line.len() {
            b"0"
        } else {
            &line[zeros..]
        };
        assert_eq!(
            size.to_string().as_bytes(),
            canonical,
            "parse_size round trip"
        );
    }
    if let Some(b) = command::parse_bdat(line) {
        assert!(line.ends_with(b"\n"));
        let text = String::from_utf8_lossy(line).to_ascii_uppercase();
        assert!(text.trim_start().starts_with("BDAT"));
        assert_eq!(b.last, text.trim_end().ends_with("LAST"));
    }
    let _ = command::declared_size(line);
    if let Some(content) = address::bracket_content(line) {
        assert!(!content.contains(&b'>'));
        assert_eq!(content, content.trim_ascii());
    }
    assert!(!(address::is_bare_postmaster(line) && address::is_null_path(line)));
}

fn sasl_exchange(line: &[u8], text: &str) {
    if let Some(cmd) = sasl::parse_auth(line) {
        assert!(!cmd.mechanism.is_empty());
        assert!(!cmd.mechanism.contains([' ', '\t']));
        if let Some(m) = sasl::Mechanism::from_name(cmd.mechanism) {
            assert!(m.name().eq_ignore_ascii_case(cmd.mechanism));
            check_step(sasl::start(m, cmd.initial_response), 0);
        }
    }
    for m in [sasl::Mechanism::Plain, sasl::Mechanism::Login] {
        check_step(sasl::start(m, Some(text)), 0);
    }
    for state in [
        sasl::Exchange::Plain,
        sasl::Exchange::LoginUser,
        sasl::Exchange::LoginPassword { user: "u".into() },
    ] {
        check_step(sasl::respond(state, line), 0);
    }
}

fn check_step(step: sasl::SaslStep, depth: u32) {
    match step {
        sasl::SaslStep::Done(c) => {
            // The password never shows in Debug output.
            if !c.password.is_empty() {
                let shown = format!("{c:?}");
                assert!(shown.contains("<redacted>"));
            }
        }
        sasl::SaslStep::Challenge { next, .. } if depth < 3 => {
            // Follow the exchange with a fixed valid response.
            check_step(sasl::respond(next, b"dXNlcgBwYXNz\r\n"), depth + 1);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are read boundaries and parameters, the rest the input.
    let (cuts, input) = data.split_at(data.len().min(8));
    dot_decoder(input, cuts);
    commands(input);
    let text = String::from_utf8_lossy(input);
    sasl_exchange(input, &text);
    if let Ok(s) = std::str::from_utf8(input) {
        if let Some((local, domain)) = address::split(s) {
            assert!(!local.is_empty() && !domain.is_empty());
            assert!(!domain.contains('@'));
            assert_eq!(format!("{local}@{domain}"), s);
        }
    }
});
