//! POP3's pure parsers and encoders: the command parser (`command.rs`),
//! SASL PLAIN decoding (`sasl.rs`), the line buffer (`line.rs`) and the
//! body dot-stuffing and TOP cut (`dot_stuff.rs`).
//!
//! Invariants: no panic; a parsed command's verb matches the line's first
//! word; numbers round-trip; PLAIN credentials are non-empty and never
//! shown in Debug output; line splitting does not depend on read
//! boundaries; the stuffed body has only CRLF line ends and decodes back to
//! the message with normalised line ends; `top_end` stays within the data
//! and only grows with the line count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_fuzz::{assert_crlf_only, dot_decode_complete, normalize_lines};
use postamt_pop3::command::{Command, parse};
use postamt_pop3::dot_stuff::{DotStuffed, dot_stuff_to_vec, top_end};
use postamt_pop3::line::LineBuffer;
use postamt_pop3::sasl::decode_plain;

fn command(line: &[u8]) {
    let Ok(cmd) = parse(line) else { return };
    let text = std::str::from_utf8(line).expect("parse accepted non-UTF-8");
    let first = text.trim_start_matches(' ').split(' ').next().unwrap_or("");
    assert!(
        first.eq_ignore_ascii_case(cmd.verb()),
        "verb {} from line {text:?}",
        cmd.verb()
    );
    let numbers: Vec<u32> = match &cmd {
        Command::List(Some(n)) | Command::Uidl(Some(n)) | Command::Retr(n) | Command::Dele(n) => {
            vec![*n]
        }
        Command::Top { msg, lines } => vec![*msg, *lines],
        Command::User(name) => {
            assert!(!name.is_empty() && !name.bytes().any(|b| b.is_ascii_whitespace()));
            vec![]
        }
        Command::Pass(p) => {
            assert!(!p.is_empty());
            vec![]
        }
        _ => vec![],
    };
    for n in numbers {
        assert!(text.contains(&n.to_string()), "number {n} not in {text:?}");
    }
}

fn plain(text: &str) {
    if let Ok(c) = decode_plain(text) {
        assert!(!c.user.is_empty() && !c.password.is_empty());
        assert!(!c.user.contains('\0') && !c.password.contains('\0'));
        assert!(format!("{c:?}").contains("password: \"<redacted>\""));
    }
}

fn line_buffer(input: &[u8], cuts: &[u8], max: usize) {
    let collect = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut buf = LineBuffer::new(max);
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend(piece);
            loop {
                match buf.next_line() {
                    Ok(Some(l)) => {
                        assert!(l.len() < max, "line over the limit returned");
                        assert!(!l.contains(&b'\n'));
                        out.push(Ok(l));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    };
    let whole = collect(&mut std::iter::once(input));
    let mut pieces = Vec::new();
    let mut pos = 0;
    for &c in cuts.iter().cycle().take(64) {
        if pos >= input.len() {
            break;
        }
        let end = (pos + usize::from(c)).min(input.len());
        pieces.push(&input[pos..end]);
        pos = end;
    }
    pieces.push(&input[pos..]);
    let split = collect(&mut pieces.into_iter());
    // An over-long partial line may be reported before its end arrives,
    // so compare only the lines before the first error.
    let ok = |v: &Vec<Result<Vec<u8>, _>>| -> Vec<Vec<u8>> {
        v.iter().map_while(|r| r.as_ref().ok().cloned()).collect()
    };
    let (a, b) = (ok(&whole), ok(&split));
    let n = a.len().min(b.len());
    assert_eq!(a[..n], b[..n], "lines depend on read boundaries");
    if whole.iter().all(Result::is_ok) && split.iter().all(Result::is_ok) {
        assert_eq!(a, b, "lines depend on read boundaries");
    }
}

fn stuffing(data: &[u8], lines: u32) {
    let wire = dot_stuff_to_vec(data);
    let pieces: Vec<u8> = DotStuffed::new(data).flatten().copied().collect();
    assert_eq!(pieces, wire);
    // Bare CRs pass through (they are not line ends); LFs are all CRLF.
    for (i, &b) in wire.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && wire[i - 1] == b'\r', "bare LF in stuffed body");
        }
    }
    if !data.contains(&b'\r') {
        assert_crlf_only(&wire, "POP3 stuffed body");
    }
    let back = dot_decode_complete(&wire, "POP3 stuffed body");
    assert_eq!(back, normalize_lines(data, false), "stuffing round trip");

    let end = top_end(data, lines);
    assert!(end <= data.len());
    assert!(top_end(data, lines.saturating_add(1)) >= end);
    assert!(top_end(data, 0) <= end);
}

fuzz_target!(|data: &[u8]| {
    let (params, input) = data.split_at(data.len().min(6));
    let lines = u32::from(params.first().copied().unwrap_or(0) % 16);
    let max = 2 + usize::from(params.get(1).copied().unwrap_or(0));
    command(input);
    plain(&String::from_utf8_lossy(input));
    line_buffer(input, params.get(2..).unwrap_or(&[]), max);
    stuffing(input, lines);
});
