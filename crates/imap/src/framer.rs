//! Splits client input into whole IMAP messages (a command line with its
//! literals), on imap-codec's fragmentizer (pure, no I/O). It reports each
//! literal announcement before the literal is read, so the caller can
//! check its size against the session's limits and answer a synchronising
//! literal with `+` (or refuse it); lines are bounded; and the buffers are
//! given back after a large message, so an idle connection stays small.
//!
//! Feed bytes with [`Framer::feed`] only after [`Framer::poll`] answered
//! [`Event::NeedMore`]: that keeps the unparsed input a suffix of what was
//! fed last, which is what lets the framer rebuild its buffers.

use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer};
use imap_codec::imap_types::core::{LiteralMode, Tag};

/// Buffers above this capacity are released after their message.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What [`Framer::poll`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Every byte fed has been framed; read more.
    NeedMore,
    /// A line announced a literal of `length` bytes. Bytes of this message
    /// so far: `so_far`. The caller accepts it (for a synchronising one,
    /// by sending a continuation request) and polls again, or refuses it
    /// with [`Framer::skip`] (synchronising only: the client has not sent
    /// it) or by closing the connection.
    Literal {
        length: u32,
        sync: bool,
        so_far: usize,
    },
    /// A whole message: [`Framer::message`]; then [`Framer::finish`].
    Message,
    /// A line longer than the limit (or a message beyond the framer's
    /// capacity): the stream cannot be trusted any more; close.
    TooLong,
}

/// The framing state of one connection.
pub struct Framer {
    frag: Fragmentizer,
    capacity: u32,
    max_line: usize,
    /// Bytes fed since the last `NeedMore` (the unparsed input is a suffix).
    tail: Vec<u8>,
    /// Bytes fed in all, and where the current message started.
    fed: u64,
    msg_start: u64,
    /// End (in message offsets) of the last complete fragment.
    consumed: usize,
    in_literal: bool,
}

impl Framer {
    /// A framer for messages of at most `capacity` bytes whose lines are at
    /// most `max_line` bytes (line end included).
    pub fn new(capacity: u32, max_line: usize) -> Framer {
        Framer {
            frag: Fragmentizer::new(capacity),
            capacity,
            max_line,
            tail: Vec::new(),
            fed: 0,
            msg_start: 0,
            consumed: 0,
            in_literal: false,
        }
    }

    /// Adds bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.frag.enqueue_bytes(bytes);
        self.tail.extend_from_slice(bytes);
        self.fed += bytes.len() as u64;
    }

    /// Bytes fed but not yet part of a finished message.
    pub fn pending(&self) -> u64 {
        self.fed - self.msg_start
    }

    /// Frames on.
    pub fn poll(&mut self) -> Event {
        loop {
            match self.frag.progress() {
                None => {
                    self.tail.clear();
                    if self.tail.capacity() > KEEP_CAPACITY {
                        self.tail = Vec::new();
                    }
                    let partial = self.pending().saturating_sub(self.consumed as u64);
                    if !self.in_literal && partial > self.max_line as u64 {
                        return Event::TooLong;
                    }
                    return Event::NeedMore;
                }
                Some(FragmentInfo::Line {
                    start,
                    end,
                    announcement,
                    ..
                }) => {
                    self.consumed = end;
                    if end - start > self.max_line || self.frag.is_max_message_size_exceeded() {
                        return Event::TooLong;
                    }
                    match announcement {
                        Some(a) => {
                            self.in_literal = true;
                            return Event::Literal {
                                length: a.length,
                                sync: a.mode == LiteralMode::Sync,
                                so_far: end,
                            };
                        }
                        None => return Event::Message,
                    }
                }
                Some(FragmentInfo::Literal { end, .. }) => {
                    self.consumed = end;
                    self.in_literal = false;
                    if self.frag.is_max_message_size_exceeded() {
                        return Event::TooLong;
                    }
                }
            }
        }
    }

    /// The complete message (after [`Event::Message`]).
    pub fn message(&self) -> &[u8] {
        self.frag.message_bytes()
    }

    /// The tag of the current (possibly incomplete) message, if it has one.
    pub fn tag(&self) -> Option<String> {
        self.frag
            .decode_tag()
            .map(|t: Tag<'_>| t.inner().to_string())
    }

    /// Done with the current message: the next poll starts the next one.
    pub fn finish(&mut self) {
        self.finish_with_capacity(self.capacity);
    }

    /// Like [`Framer::finish`], and from now on messages may be up to
    /// `capacity` bytes (it grows at login).
    pub fn finish_with_capacity(&mut self, capacity: u32) {
        self.msg_start += self.consumed as u64;
        self.consumed = 0;
        self.in_literal = false;
        if self.frag.message_bytes().len() > KEEP_CAPACITY || capacity != self.capacity {
            self.capacity = capacity;
            self.rebuild();
        }
    }

    /// Drops the current message after a refused synchronising literal
    /// (the client will not send it): the next poll starts a new message.
    pub fn skip(&mut self) {
        self.frag.skip_message();
        self.msg_start += self.consumed as u64;
        self.consumed = 0;
        self.in_literal = false;
    }

    /// A fresh fragmentizer holding only the unparsed input, so the large
    /// buffers of the last message are freed.
    fn rebuild(&mut self) {
        // Progress has not run since the message ended, so the unparsed
        // input is exactly what was fed after the message's end.
        let leftover = usize::try_from(self.fed - self.msg_start).unwrap_or(usize::MAX);
        let keep = leftover.min(self.tail.len());
        let rest = self.tail.split_off(self.tail.len() - keep);
        let mut frag = Fragmentizer::new(self.capacity);
        frag.enqueue_bytes(&rest);
        self.frag = frag;
        self.tail = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(f: &mut Framer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match f.poll() {
                Event::Message => {
                    out.push(f.message().to_vec());
                    f.finish();
                }
                Event::Literal { .. } => continue,
                Event::NeedMore => return out,
                Event::TooLong => panic!("too long"),
            }
        }
    }

    #[test]
    fn splits_pipelined_commands() {
        let mut f = Framer::new(1 << 20, 1024);
        f.feed(b"a NOOP\r\nb CAPABILITY\r\nc LOG");
        assert_eq!(
            drain(&mut f),
            vec![b"a NOOP\r\n".to_vec(), b"b CAPABILITY\r\n".to_vec()]
        );
        f.feed(b"OUT\r\n");
        assert_eq!(drain(&mut f), vec![b"c LOGOUT\r\n".to_vec()]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn reports_literals_before_reading_them() {
        let mut f = Framer::new(1 << 20, 1024);
        f.feed(b"a LOGIN {5}\r\n");
        assert_eq!(
            f.poll(),
            Event::Literal {
                length: 5,
                sync: true,
                so_far: 13
            }
        );
        assert_eq!(f.poll(), Event::NeedMore);
        f.feed(b"alice {6+}\r\nsecret\r\n");
        assert_eq!(
            f.poll(),
            Event::Literal {
                length: 6,
                sync: false,
                so_far: 25
            }
        );
        assert_eq!(f.poll(), Event::Message);
        assert_eq!(f.message(), b"a LOGIN {5}\r\nalice {6+}\r\nsecret\r\n");
    }

    #[test]
    fn skip_drops_a_refused_literal() {
        let mut f = Framer::new(1 << 20, 1024);
        f.feed(b"a APPEND x {99999}\r\nb NOOP\r\n");
        assert!(matches!(f.poll(), Event::Literal { length: 99999, .. }));
        assert_eq!(f.tag().as_deref(), Some("a"));
        f.skip();
        assert_eq!(f.poll(), Event::Message);
        assert_eq!(f.message(), b"b NOOP\r\n");
    }

    #[test]
    fn long_lines_are_caught_before_their_end() {
        let mut f = Framer::new(1 << 20, 100);
        f.feed(&[b'x'; 150]);
        assert_eq!(f.poll(), Event::TooLong);
        let mut f = Framer::new(1 << 20, 100);
        let mut line = vec![b'y'; 120];
        line.extend_from_slice(b"\r\n");
        f.feed(&line);
        assert_eq!(f.poll(), Event::TooLong);
    }

    #[test]
    fn literal_bytes_do_not_count_as_a_line() {
        let mut f = Framer::new(1 << 20, 100);
        f.feed(b"a APPEND x {500}\r\n");
        assert!(matches!(f.poll(), Event::Literal { length: 500, .. }));
        f.feed(&[b'z'; 300]);
        assert_eq!(f.poll(), Event::NeedMore);
        f.feed(&[b'z'; 200]);
        f.feed(b"\r\n");
        assert_eq!(f.poll(), Event::Message);
        assert_eq!(f.message().len(), 18 + 500 + 2);
    }

    #[test]
    fn buffers_shrink_after_a_large_message_and_nothing_is_lost() {
        let mut f = Framer::new(1 << 20, 1024);
        let mut input = b"a APPEND x {100000+}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'q', 100_000));
        input.extend_from_slice(b"\r\nb NOOP\r\nc NO");
        f.feed(&input);
        assert!(matches!(
            f.poll(),
            Event::Literal {
                length: 100_000,
                ..
            }
        ));
        assert_eq!(f.poll(), Event::Message);
        assert_eq!(f.message().len(), 22 + 100_000 + 2);
        f.finish();
        assert!(f.tail.len() < 64, "tail kept only the unparsed bytes");
        assert_eq!(f.poll(), Event::Message);
        assert_eq!(f.message(), b"b NOOP\r\n");
        f.finish();
        assert_eq!(f.poll(), Event::NeedMore);
        f.feed(b"OP\r\n");
        assert_eq!(f.poll(), Event::Message);
        assert_eq!(f.message(), b"c NOOP\r\n");
    }

    #[test]
    fn capacity_can_grow_between_messages() {
        let mut f = Framer::new(64, 1024);
        f.feed(b"a LOGIN x y\r\nb APPEND x {100+}\r\n");
        assert_eq!(f.poll(), Event::Message);
        f.finish_with_capacity(1 << 20);
        assert!(matches!(f.poll(), Event::Literal { length: 100, .. }));
        assert_eq!(f.poll(), Event::NeedMore);
        f.feed(&[b'w'; 100]);
        f.feed(b"\r\n");
        assert_eq!(f.poll(), Event::Message);
        assert_eq!(f.message().len(), 19 + 100 + 2);
    }

    #[test]
    fn capacity_overflow_is_too_long() {
        let mut f = Framer::new(64, 1024);
        f.feed(b"a APPEND x {100+}\r\n");
        assert!(matches!(f.poll(), Event::Literal { .. }));
        f.feed(&[b'w'; 100]);
        assert_eq!(f.poll(), Event::TooLong);
    }
}
