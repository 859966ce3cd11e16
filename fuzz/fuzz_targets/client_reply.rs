//! The SMTP client's reply reader (`reply`) and EHLO parser (`ehlo`) fed
//! arbitrary server bytes, in arbitrary read sizes.
//!
//! Invariants: no panic; codes are 200-599; reply text is printable (no
//! control characters but the `\n` joining lines) and bounded by the line
//! and reply limits; the enhanced code's class matches the reply code; the
//! replies do not depend on read boundaries; EHLO parsing gives a bounded
//! name without whitespace and never a zero SIZE limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_smtp_client::reply::{MAX_LINES, MAX_REPLY, ReplyBuffer, parse_reply};
use postamt_smtp_client::{Capabilities, reply::ReplyError};

type Outcome = Vec<Result<postamt_smtp_client::Reply, ReplyError>>;

/// Feeds `pieces` in order, collecting replies until the first error.
fn read_all<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut buf = ReplyBuffer::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.feed(piece);
        loop {
            match buf.next_reply() {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fn check(r: &postamt_smtp_client::Reply) {
    assert!((200..=599).contains(&r.code), "code {}", r.code);
    assert!(
        !r.text.chars().any(|c| c.is_control() && c != '\n'),
        "control character in reply text {:?}",
        r.text
    );
    assert!(r.text.split('\n').count() <= MAX_LINES);
    assert!(r.text.len() <= MAX_REPLY * 3, "reply text unbounded");
    if let Some(e) = &r.enhanced {
        let class = e.split('.').next().unwrap_or("");
        assert_eq!(
            class,
            (r.code / 100).to_string(),
            "enhanced {e} for {}",
            r.code
        );
        assert_eq!(e.split('.').count(), 3);
    }
    let shown = r.to_string();
    assert!(
        !shown.contains('\n') && !shown.contains('\r'),
        "Display spans lines"
    );

    let (name, caps) = Capabilities::from_ehlo(r);
    assert!(name.chars().count() <= 255, "EHLO name unbounded");
    assert!(!name.contains(char::is_whitespace));
    assert!(caps.esmtp);
    assert_ne!(caps.max_size, Some(0), "SIZE 0 means no limit");
    if caps.max_size.is_some() {
        assert!(caps.size);
    }
}

fuzz_target!(|data: &[u8]| {
    let (cuts, input) = data.split_at(data.len().min(4));
    let whole = read_all(std::iter::once(input));
    for r in whole.iter().flatten() {
        check(r);
    }
    let mut pieces = Vec::new();
    let mut pos = 0;
    for &c in cuts.iter().cycle().take(256) {
        if pos >= input.len() {
            break;
        }
        let end = (pos + usize::from(c) + 1).min(input.len());
        pieces.push(&input[pos..end]);
        pos = end;
    }
    pieces.push(&input[pos..]);
    let split = read_all(pieces.into_iter());
    // Replies before any error are the same; an error in one is an error
    // in the other.
    let oks = |o: &Outcome| {
        o.iter()
            .map_while(|r| r.as_ref().ok().cloned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        oks(&whole),
        oks(&split),
        "replies depend on read boundaries"
    );
    assert_eq!(
        whole.last().is_some_and(Result::is_err),
        split.last().is_some_and(Result::is_err),
        "an error depends on read boundaries"
    );
    // parse_reply is the first reply of the stream.
    match (parse_reply(input), whole.first()) {
        (Ok(Some(r)), Some(Ok(w))) => assert_eq!(&r, w),
        (Ok(None), None) | (Err(_), Some(Err(_))) => {}
        (a, b) => panic!("parse_reply {a:?} but the buffer gave {b:?}"),
    }
});
