//! Message bodies: the DATA dot-stream decoder (RFC 5321 4.1.1.4, 4.5.2),
//! the BDAT chunk counter (RFC 3030) and the size-limited body buffer. Pure:
//! no I/O, fed with whatever bytes the connection has.
//!
//! We do not use smtp-proto's `DataReceiver`: it starts without the "line
//! start" state, so `.CRLF` as the very first line does not end the
//! message, and after `CRLF .` it ends on any later `CR LF` pair, so
//! `CRLF . CR CR LF` (a bare CR after the dot) ends the message too. Our rule
//! is strict: only `CRLF . CRLF` (or `. CRLF` as the first line) ends DATA.
//! A bare CR or LF never ends a message and never starts a line for
//! dot-unstuffing; every byte that is not part of the terminator or an
//! unstuffed dot is kept verbatim.

/// Where decoded message bytes go.
pub trait Sink {
    /// Takes the next decoded bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The decoder's position relative to lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DotState {
    /// Just after a real CRLF (or at the very start): a `.` here is special.
    LineStart,
    /// Inside a line; the last byte was not a CR.
    Text,
    /// Inside a line; the last byte was a CR (a LF now ends the line).
    TextCr,
    /// Saw `.` at a line start (held back).
    Dot,
    /// Saw `.` CR at a line start (both held back).
    DotCr,
    /// Saw the terminator; nothing more is consumed.
    Done,
}

/// Decodes the DATA dot-stream into the message bytes.
#[derive(Clone, Debug)]
pub struct DotDecoder {
    state: DotState,
}

impl Default for DotDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DotDecoder {
    /// A decoder right after the DATA command's CRLF.
    pub fn new() -> DotDecoder {
        DotDecoder {
            state: DotState::LineStart,
        }
    }

    /// Whether the end-of-data marker has been seen.
    pub fn is_done(&self) -> bool {
        self.state == DotState::Done
    }

    /// Decodes as much of `input` as belongs to the message, putting message
    /// bytes into `sink`. Returns how many input bytes were consumed: all of
    /// them unless the terminator was found, in which case the bytes after
    /// it (pipelined commands) are left to the caller.
    pub fn decode<S: Sink + ?Sized>(&mut self, input: &[u8], sink: &mut S) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                DotState::Done => return i,
                DotState::Text => {
                    // Fast path: copy up to and including the next CR.
                    let rest = &input[i..];
                    match memchr::memchr(b'\r', rest) {
                        Some(pos) => {
                            sink.put(&rest[..=pos]);
                            i += pos + 1;
                            self.state = DotState::TextCr;
                        }
                        None => {
                            sink.put(rest);
                            i = input.len();
                        }
                    }
                }
                DotState::TextCr => {
                    let b = input[i];
                    i += 1;
                    sink.put(&[b]);
                    self.state = match b {
                        b'\n' => DotState::LineStart,
                        b'\r' => DotState::TextCr,
                        _ => DotState::Text,
                    };
                }
                DotState::LineStart => {
                    let b = input[i];
                    if b == b'.' {
                        i += 1;
                        self.state = DotState::Dot;
                    } else {
                        self.state = DotState::Text;
                        if b == b'\r' {
                            i += 1;
                            sink.put(b"\r");
                            self.state = DotState::TextCr;
                        }
                    }
                }
                DotState::Dot => {
                    let b = input[i];
                    if b == b'\r' {
                        i += 1;
                        self.state = DotState::DotCr;
                    } else {
                        // A stuffed dot: drop it; the byte is ordinary text
                        // (a bare LF here does not start a new line).
                        self.state = DotState::Text;
                    }
                }
                DotState::DotCr => {
                    let b = input[i];
                    if b == b'\n' {
                        i += 1;
                        self.state = DotState::Done;
                        return i;
                    }
                    // `.` CR followed by something else: the dot was stuffed,
                    // the CR is text, and the byte is seen in the TextCr state.
                    sink.put(b"\r");
                    self.state = DotState::TextCr;
                }
            }
        }
        i
    }
}

/// Dot-stuffs `data` and appends the terminator, as a client does (RFC 5321
/// 4.5.2): a `.` is inserted before every `.` that starts a line (after a
/// real CRLF or at the start); if `data` does not end in CRLF one is added
/// first. Used by tests and tools.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 5);
    let mut line_start = true;
    let mut prev_cr = false;
    for &b in data {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = prev_cr && b == b'\n';
        prev_cr = b == b'\r';
    }
    if !data.is_empty() && !data.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The message being received: our `Received:` header first, then the
/// message bytes, while they fit in the size limit. Once over the limit the
/// bytes are counted and dropped (memory stays bounded) and the transaction
/// ends with 552.
#[derive(Debug)]
pub struct BodyBuffer {
    data: Vec<u8>,
    prefix_len: usize,
    size: u64,
    limit: u64,
    overflow: bool,
}

impl BodyBuffer {
    /// A buffer that starts with `prefix` (our trace header) and accepts up
    /// to `limit` message bytes.
    pub fn new(prefix: Vec<u8>, limit: u64) -> BodyBuffer {
        let prefix_len = prefix.len();
        BodyBuffer {
            data: prefix,
            prefix_len,
            size: 0,
            limit,
            overflow: false,
        }
    }

    /// Message bytes received so far (counted even when dropped).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the message went over the limit.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The length of the prefix (our trace header) at the start.
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// The message bytes received (without the prefix).
    pub fn message(&self) -> &[u8] {
        &self.data[self.prefix_len..]
    }

    /// Prefix and message, for the spool.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }
}

impl Sink for BodyBuffer {
    fn put(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.overflow {
            return;
        }
        if self.size > self.limit {
            self.overflow = true;
            self.data.truncate(self.prefix_len);
            self.data.shrink_to_fit();
            return;
        }
        self.data.extend_from_slice(bytes);
    }
}

/// Drops everything (a rejected BDAT chunk).
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn put(&mut self, _: &[u8]) {}
}

/// Counts down one BDAT chunk: exactly `size` bytes, no dot handling.
#[derive(Clone, Debug)]
pub struct ChunkReader {
    remaining: u64,
}

impl ChunkReader {
    /// A reader for a chunk of `size` octets.
    pub fn new(size: u64) -> ChunkReader {
        ChunkReader { remaining: size }
    }

    /// Bytes of the chunk still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether the whole chunk has been read.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Takes up to the rest of the chunk from `input` into `sink`; returns
    /// the bytes consumed (the rest of `input` is the next command).
    pub fn read<S: Sink + ?Sized>(&mut self, input: &[u8], sink: &mut S) -> usize {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        sink.put(&input[..n]);
        self.remaining -= n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `input` fed in one piece; returns (message, consumed, done).
    fn decode_all(input: &[u8]) -> (Vec<u8>, usize, bool) {
        let mut d = DotDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out);
        (out, n, d.is_done())
    }

    /// Decodes `input` fed in the given pieces.
    fn decode_pieces(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool) {
        let mut d = DotDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        for cut in cuts {
            if cut < start {
                continue;
            }
            let n = d.decode(&input[start..cut], &mut out);
            consumed += n;
            if d.is_done() {
                return (out, consumed, true);
            }
            assert_eq!(n, cut - start, "an unfinished decoder consumes all input");
            start = cut;
        }
        (out, consumed, d.is_done())
    }

    /// Reference: the end of the first `CRLF . CRLF` in CRLF + input, as an
    /// index into input (the DATA line's CRLF counts as the first CRLF).
    fn reference_end(input: &[u8]) -> Option<usize> {
        let mut full = b"\r\n".to_vec();
        full.extend_from_slice(input);
        full.windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .map(|p| p + 5 - 2)
    }

    #[test]
    fn simple_message() {
        let (m, n, done) = decode_all(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert!(done);
        assert_eq!(m, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(n, 24);
    }

    #[test]
    fn dot_line_first_is_empty_message() {
        let (m, n, done) = decode_all(b".\r\nNOOP\r\n");
        assert!(done);
        assert!(m.is_empty());
        assert_eq!(n, 3);
    }

    #[test]
    fn unstuffs_only_after_real_crlf() {
        let (m, _, done) = decode_all(b"..a\r\n..\r\nb\n..c\r\n.\r\n");
        assert!(done);
        assert_eq!(m, b".a\r\n.\r\nb\n..c\r\n");
    }

    #[test]
    fn bare_cr_and_lf_never_end_the_message() {
        for tricky in [
            &b"a\n.\nb"[..],
            b"a\r.\rb",
            b"a\n.\r\nb",
            b"a\r\n.\nb",
            b"a\r.\r\nb",
            b"a\r\n.\rb",
            b"a\r\n.\r\rb",
            b"a\r\n.\r\r\nb",
            b"a\n\r.\r\nb",
            b"a\r\r.\r\nb",
            b".\n",
            b".\r\r\n",
            b"\n.\r\n",
        ] {
            let (_, n, done) = decode_all(tricky);
            assert!(!done, "{tricky:?} ended the message");
            assert_eq!(n, tricky.len());
            // And the real terminator afterwards still works.
            let mut with_end = tricky.to_vec();
            with_end.extend_from_slice(b"\r\n.\r\n");
            let (m, n, done) = decode_all(&with_end);
            assert!(done, "{tricky:?} + CRLF.CRLF did not end");
            assert_eq!(n, with_end.len());
            assert!(m.len() >= tricky.len() - 1);
        }
    }

    #[test]
    fn bytes_around_bare_dots_are_kept() {
        // `.` CR x at line start: the dot is stuffing, CR and x are text.
        let (m, _, done) = decode_all(b"\r\n.\rx\r\n.\r\n");
        assert!(done);
        assert_eq!(m, b"\r\n\rx\r\n");
        // `.` LF at line start: dot dropped, LF kept.
        let (m, _, _) = decode_all(b"\r\n.\nx\r\n.\r\n");
        assert_eq!(m, b"\r\n\nx\r\n");
        // `.` CR CR LF: dot dropped, both CRs and the LF kept.
        let (m, _, _) = decode_all(b"\r\n.\r\r\nx\r\n.\r\n");
        assert_eq!(m, b"\r\n\r\r\nx\r\n");
    }

    #[test]
    fn byte_at_a_time_matches_one_piece() {
        let input = b"a\r\n..b\r\n.\rc\n.\r\n\r\n.\r\nrest";
        let (m1, n1, d1) = decode_all(input);
        let cuts: Vec<usize> = (0..input.len()).collect();
        let (m2, n2, d2) = decode_pieces(input, &cuts);
        assert_eq!((m1, n1, d1), (m2, n2, d2));
    }

    #[test]
    fn body_buffer_limits_and_counts() {
        let mut b = BodyBuffer::new(b"Received: x\r\n".to_vec(), 10);
        b.put(b"0123456789");
        assert!(!b.overflowed());
        assert_eq!(b.message(), b"0123456789");
        b.put(b"x");
        assert!(b.overflowed());
        assert_eq!(b.size(), 11);
        assert!(b.message().is_empty(), "bytes are dropped once over");
        b.put(b"more");
        assert_eq!(b.size(), 15);
        assert_eq!(b.into_bytes(), b"Received: x\r\n");
    }

    #[test]
    fn chunk_reader_reads_exactly() {
        let mut c = ChunkReader::new(5);
        let mut out = Vec::new();
        assert_eq!(c.read(b"abc", &mut out), 3);
        assert!(!c.is_done());
        assert_eq!(c.read(b"de\r\nQUIT\r\n", &mut out), 2);
        assert!(c.is_done());
        assert_eq!(out, b"abcde");
        assert_eq!(c.read(b"x", &mut out), 0);
        let zero = ChunkReader::new(0);
        assert!(zero.is_done());
        let mut huge = ChunkReader::new(u64::MAX);
        assert_eq!(huge.read(b"xyz", &mut Discard), 3);
        assert_eq!(huge.remaining(), u64::MAX - 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes, dot-stuffed and terminated, decode back exactly (plus
        /// the CRLF a client adds when the data does not end in one), in any
        /// split, leaving what follows the terminator unconsumed.
        #[test]
        fn roundtrip_any_bytes(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut wire = dot_stuff(&data);
            let end = wire.len();
            wire.extend_from_slice(b"MAIL FROM:<x@y>\r\n");
            let mut expected = data.clone();
            if !data.is_empty() && !data.ends_with(b"\r\n") {
                expected.extend_from_slice(b"\r\n");
            }
            let (m, n, done) = decode_pieces(&wire, &cuts);
            prop_assert!(done);
            prop_assert_eq!(n, end);
            prop_assert_eq!(m, expected);
        }

        /// On any input the decoder ends exactly at the first CRLF.CRLF (the
        /// DATA line's CRLF counting as the first CRLF) and nowhere else: a
        /// bare CR or LF around a dot never ends the message.
        #[test]
        fn ends_only_at_crlf_dot_crlf(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a')], 0..64),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let (_, n, done) = decode_pieces(&input, &cuts);
            match reference_end(&input) {
                Some(end) => {
                    prop_assert!(done);
                    prop_assert_eq!(n, end);
                }
                None => {
                    prop_assert!(!done);
                    prop_assert_eq!(n, input.len());
                }
            }
        }
    }
}
